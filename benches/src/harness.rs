//! Helpers for the benches with their own `main` (`harness = false` without criterion):
//! they take the same filter argument as the criterion benches, so that
//! `cargo bench -p tally-benches -- ring/` and `cargo xtask bench --filter ring/` do not
//! also run minutes of journal or veth benches whose ids cannot match; and they write
//! their headline figures for `cargo xtask bench` ([`write_records`]), which otherwise
//! sees only criterion's estimates.

use std::path::{Path, PathBuf};

/// Whether the bench `name` runs for this command line (program name excluded): yes
/// without a filter; with one (the first argument not starting with `-`, regex escapes
/// removed, as `cargo xtask bench` passes it), when `name` contains the filter or the
/// filter starts with `name`.
pub fn selected(name: &str, args: impl IntoIterator<Item = String>) -> bool {
    let Some(filter) = args.into_iter().find(|a| !a.starts_with('-')) else {
        return true;
    };
    let filter = filter.replace('\\', "");
    name.contains(&filter) || filter.starts_with(name)
}

/// The environment variable `cargo xtask bench` sets to the directory the benches with
/// their own `main` write their records file into (xtask's `records::RESULTS_DIR_ENV`).
pub const RESULTS_DIR_ENV: &str = "TALLY_BENCH_RESULTS_DIR";

/// The schema string of a records file (`docs/bench-format.md`).
pub const RECORDS_SCHEMA: &str = "tally-bench-records/1";

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// A rate, a ratio to a peer.
    Higher,
    /// A latency, a CPU cost.
    Lower,
}

impl Better {
    fn as_str(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }
}

/// One headline figure of a bench: the median of its repetitions, with their range.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `<bench name>/<figure>`, e.g. `uring_journal/pair8_tally8d_64B`.
    pub id: String,
    /// The unit, as tables show it (`rec/s`, `us`, `x`, ...).
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
    /// Median of the repetitions.
    pub value: f64,
    /// Smallest repetition.
    pub low: f64,
    /// Largest repetition.
    pub high: f64,
    /// Number of repetitions.
    pub samples: usize,
}

impl Record {
    /// The record of the repetitions `samples`: their median, smallest and largest.
    /// Values that are not measurements (NaN, infinite or negative: a ratio to a peer that
    /// measured nothing, the CPU per packet of a receiver that received none) are left
    /// out; `None` when none is left.
    pub fn from_samples(
        id: impl Into<String>,
        unit: &'static str,
        better: Better,
        samples: &[f64],
    ) -> Option<Record> {
        let mut kept: Vec<f64> = samples
            .iter()
            .copied()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .collect();
        let value = crate::stats::median(&mut kept);
        // `median` sorted `kept`.
        let (low, high) = (*kept.first()?, *kept.last()?);
        Some(Record {
            id: id.into(),
            unit,
            better,
            value,
            low,
            high,
            samples: kept.len(),
        })
    }
}

/// Why [`write_records`] could not write the records file.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write the bench records {path}: {source}; set {RESULTS_DIR_ENV} to a writable directory, or unset it to only print"
)]
pub struct RecordsError {
    /// The file (or directory) that could not be written.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// The records file of `bench` as JSON.
pub fn records_json(bench: &str, records: &[Record]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "value": r.value,
                "low": r.low,
                "high": r.high,
                "unit": r.unit,
                "better": r.better.as_str(),
                "samples": r.samples,
            })
        })
        .collect();
    serde_json::json!({
        "schema": RECORDS_SCHEMA,
        "bench": bench,
        "records": items,
    })
}

/// Writes `records` to `<dir>/<bench>.json` (creating `dir`), through a `.tmp` file that
/// is renamed into place, so that a reader never sees half a file.
///
/// # Errors
/// [`RecordsError`] when the directory or file cannot be written.
pub fn write_records_to(
    dir: &Path,
    bench: &str,
    records: &[Record],
) -> Result<PathBuf, RecordsError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecordsError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let path = dir.join(format!("{bench}.json"));
    let tmp = dir.join(format!("{bench}.json.tmp"));
    let text = format!("{:#}\n", records_json(bench, records));
    std::fs::write(&tmp, text).map_err(err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(err(&path))?;
    Ok(path)
}

/// Writes the figures of `bench` for `cargo xtask bench` when [`RESULTS_DIR_ENV`] names a
/// directory; nothing (`Ok(None)`) without it or without records.
///
/// # Errors
/// As [`write_records_to`].
pub fn write_records(bench: &str, records: &[Record]) -> Result<Option<PathBuf>, RecordsError> {
    match std::env::var_os(RESULTS_DIR_ENV) {
        Some(dir) if !dir.is_empty() && !records.is_empty() => {
            write_records_to(Path::new(&dir), bench, records).map(Some)
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::{Better, RECORDS_SCHEMA, Record, selected, write_records_to};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn filters_like_the_criterion_benches() {
        assert!(selected("uring_journal", args(&["--bench"])));
        assert!(selected("uring_journal", args(&[])));
        assert!(!selected("uring_journal", args(&["--bench", "ring/"])));
        assert!(!selected("bypass_veth", args(&["--bench", "mpc/bip340"])));
        assert!(selected("uring_journal", args(&["--bench", "uring"])));
        assert!(selected("bypass_veth", args(&["--bench", r"bypass\_veth"])));
        assert!(selected(
            "bypass_veth",
            args(&["--bench", "bypass_veth/live"])
        ));
    }

    #[test]
    fn a_record_is_the_median_and_range_of_its_samples() {
        let r = Record::from_samples("b/x", "rec/s", Better::Higher, &[30.0, 10.0, 20.0, 40.0])
            .unwrap();
        assert!((r.value - 25.0).abs() < 1e-12, "{r:?}");
        assert!(
            (r.low - 10.0).abs() < 1e-12 && (r.high - 40.0).abs() < 1e-12,
            "{r:?}"
        );
        assert_eq!(r.samples, 4);
        // Values that are not measurements are left out; none left, no record.
        let r = Record::from_samples("b/x", "x", Better::Higher, &[f64::NAN, 2.0, f64::INFINITY])
            .unwrap();
        assert_eq!((r.value, r.low, r.high, r.samples), (2.0, 2.0, 2.0, 1));
        assert!(Record::from_samples("b/x", "us", Better::Lower, &[f64::NAN]).is_none());
        assert!(Record::from_samples("b/x", "us", Better::Lower, &[]).is_none());
    }

    /// The file has the fields xtask's `records` module reads (`docs/bench-format.md`).
    #[test]
    fn writes_the_records_file_xtask_reads() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub");
        let rec = Record::from_samples("uring_journal/tally1_64B/p99", "us", Better::Lower, &[5.0])
            .unwrap();
        let path = write_records_to(&out, "uring_journal", &[rec]).unwrap();
        assert_eq!(path, out.join("uring_journal.json"));
        assert!(!out.join("uring_journal.json.tmp").exists());
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["schema"], RECORDS_SCHEMA);
        assert_eq!(v["bench"], "uring_journal");
        let r = &v["records"][0];
        assert_eq!(r["id"], "uring_journal/tally1_64B/p99");
        assert_eq!(r["unit"], "us");
        assert_eq!(r["better"], "lower");
        for key in ["value", "low", "high"] {
            assert_eq!(r[key].as_f64(), Some(5.0), "{key}");
        }
        // A directory that cannot be created: an error naming it and what to do.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let err = write_records_to(&blocker.join("x"), "b", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("TALLY_BENCH_RESULTS_DIR") && msg.contains("file"),
            "{msg}"
        );
    }
}
