//! The figures of the benches with their own `main` (no criterion: `uring_journal`,
//! `bypass_veth`, and the latency percentiles of `pipeline`): `cargo xtask bench` names a
//! directory in [`RESULTS_DIR_ENV`], each such bench writes one records file
//! (`tally-bench-records/1`) there through `tally_benches::harness`, and this module
//! reads them into wall-clock results with a unit and a direction, next to criterion's.
//! `docs/bench-format.md` describes the format; keep the two in step.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::results::{self, BenchResult};

/// The environment variable that names the directory a bench with its own `main` writes
/// its records file into (`tally_benches::harness::RESULTS_DIR_ENV` is the same name).
pub const RESULTS_DIR_ENV: &str = "TALLY_BENCH_RESULTS_DIR";

/// The schema string of a records file.
pub const RECORDS_SCHEMA: &str = "tally-bench-records/1";

/// The records directory inside a criterion home of `cargo xtask bench`: emptied with the
/// home before each run, so only this run's records are read.
pub const RECORDS_DIR: &str = "tally-bench-records";

/// What every records error ends with: who writes the file and what to do.
const FIX: &str = "it is written by a bench with its own main (benches/benches/*.rs, through \
     tally_benches::harness::write_records); fix that bench, then rerun `cargo xtask bench`";

fn malformed(path: &Path, what: &str) -> Error {
    Error::failed(format!("records file {}: {what}; {FIX}", path.display()))
}

/// Reads every `*.json` records file in `dir` (none when `dir` does not exist) and
/// returns its figures as results, sorted by id, keeping only ids that contain `filter`
/// when one is given (the benches run whole once selected, as criterion's filter does
/// not reach inside them).
///
/// # Errors
/// `Failed` naming the file and what to fix when a file cannot be read, is not a records
/// file, a record is malformed, or an id appears twice.
pub fn collect_records(dir: &Path, filter: Option<&str>) -> Result<Vec<BenchResult>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot list the records directory {}: {e}",
                dir.display()
            )));
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    for path in files {
        for r in read_records(&path)? {
            if !seen.insert(r.id.clone()) {
                return Err(malformed(
                    &path,
                    &format!("bench id {:?} was already written by another record", r.id),
                ));
            }
            found.push(r);
        }
    }
    found.retain(|r| filter.is_none_or(|f| r.id.contains(f)));
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

/// The figures of one records file.
///
/// # Errors
/// As [`collect_records`].
pub fn read_records(path: &Path) -> Result<Vec<BenchResult>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::failed(format!("cannot read records file {}: {e}", path.display())))?;
    parse_records(&text).map_err(|what| malformed(path, &what))
}

/// Parses the text of a records file; the `Err` says what is wrong (without the path).
///
/// # Errors
/// A message naming the record and field.
pub fn parse_records(text: &str) -> Result<Vec<BenchResult>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let Value::Object(top) = value else {
        return Err("the top level must be a JSON object".to_owned());
    };
    match top.get("schema") {
        Some(Value::String(s)) if s == RECORDS_SCHEMA => {}
        other => {
            return Err(format!(
                "`schema` must be {RECORDS_SCHEMA:?}, got {}",
                other.unwrap_or(&Value::Null)
            ));
        }
    }
    let Some(Value::Array(items)) = top.get("records") else {
        return Err("field `records` must be an array".to_owned());
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(format!("records[{index}] must be an object"));
        };
        let id = match obj.get("id") {
            Some(Value::String(id)) if !id.trim().is_empty() && id.contains('/') => id.clone(),
            other => {
                return Err(format!(
                    "records[{index}]: `id` must be a `group/name` string, got {}",
                    other.unwrap_or(&Value::Null)
                ));
            }
        };
        let wall = results::parse_figure(obj, &id)?.ok_or_else(|| {
            format!("bench {id:?}: a record needs `value`, `low`, `high`, `unit` and `better`")
        })?;
        out.push(BenchResult {
            id,
            wall: Some(wall),
            instructions: None,
        });
    }
    Ok(out)
}

/// Adds the benches' figures to criterion's results (sorted by id).
///
/// # Errors
/// `Failed` when a figure has the id of a criterion bench (one of the two benches must
/// rename it: a results file holds one row per id).
pub fn merge_figures(
    mut criterion: Vec<BenchResult>,
    figures: Vec<BenchResult>,
) -> Result<Vec<BenchResult>> {
    for f in figures {
        if criterion.iter().any(|c| c.id == f.id) {
            return Err(Error::failed(format!(
                "bench id {:?} is both a criterion bench and a record of a bench with its own main; rename the record (benches/benches/*.rs)",
                f.id
            )));
        }
        criterion.push(f);
    }
    criterion.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(criterion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Better, Unit, WallClock};
    use crate::util::ScratchDir;

    const JOURNAL: &str = r#"{"schema":"tally-bench-records/1","bench":"uring_journal","records":[
        {"id":"uring_journal/pair8_okay8_64B","value":2000,"low":1900,"high":2100,"unit":"rec/s","better":"higher","samples":3},
        {"id":"uring_journal/pair8_okay8_64B/p99","value":800,"low":700,"high":900,"unit":"us","better":"lower","samples":3}]}"#;

    #[test]
    fn reads_the_records_of_every_bench() {
        let dir = ScratchDir::new("records-read").unwrap();
        std::fs::write(dir.path().join("uring_journal.json"), JOURNAL).unwrap();
        std::fs::write(
            dir.path().join("bypass_veth.json"),
            r#"{"schema":"tally-bench-records/1","bench":"bypass_veth","records":[
                {"id":"bypass_veth/live_af_xdp/rx_pps","value":1.5e6,"low":1.4e6,"high":1.6e6,"unit":"pkt/s","better":"higher"}]}"#,
        )
        .unwrap();
        // A file the bench is still writing (renamed into place when complete) is not read.
        std::fs::write(dir.path().join("uring_journal.json.tmp"), "{").unwrap();
        let found = collect_records(dir.path(), None).unwrap();
        let ids: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "bypass_veth/live_af_xdp/rx_pps",
                "uring_journal/pair8_okay8_64B",
                "uring_journal/pair8_okay8_64B/p99"
            ]
        );
        assert_eq!(
            found[1].wall,
            Some(WallClock {
                median: 2000.0,
                low: 1900.0,
                high: 2100.0,
                unit: Unit::Figure {
                    name: "rec/s".into(),
                    better: Better::Higher
                }
            })
        );
        // `--filter` keeps the matching ids only.
        let found = collect_records(dir.path(), Some("/p99")).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "uring_journal/pair8_okay8_64B/p99");
        // No directory (no such bench ran): no records, no error.
        assert!(
            collect_records(&dir.path().join("absent"), None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_records_are_errors_that_say_what_to_do() {
        let cases = [
            ("", "not valid JSON"),
            ("[]", "top level"),
            (r#"{"records":[]}"#, "`schema` must be"),
            (
                r#"{"schema":"tally-bench/1","records":[]}"#,
                "`schema` must be",
            ),
            (
                r#"{"schema":"tally-bench-records/1"}"#,
                "`records` must be an array",
            ),
            (
                r#"{"schema":"tally-bench-records/1","records":[1]}"#,
                "records[0] must be an object",
            ),
            (
                r#"{"schema":"tally-bench-records/1","records":[{"id":"noslash","value":1,"low":1,"high":1,"unit":"x","better":"higher"}]}"#,
                "`group/name`",
            ),
            (
                r#"{"schema":"tally-bench-records/1","records":[{"id":"g/a"}]}"#,
                "a record needs",
            ),
            (
                r#"{"schema":"tally-bench-records/1","records":[{"id":"g/a","value":null,"low":1,"high":1,"unit":"x","better":"higher"}]}"#,
                "`value` is missing",
            ),
            (
                r#"{"schema":"tally-bench-records/1","records":[{"id":"g/a","value":1,"low":1,"high":1,"unit":"x","better":"up"}]}"#,
                "`better` must be",
            ),
            (
                r#"{"schema":"tally-bench-records/1","records":[{"id":"g/a","value":5,"low":1,"high":2,"unit":"x","better":"lower"}]}"#,
                "low <= value <= high",
            ),
        ];
        let dir = ScratchDir::new("records-bad").unwrap();
        for (text, needle) in cases {
            let path = dir.path().join("bad.json");
            std::fs::write(&path, text).unwrap();
            let err = collect_records(dir.path(), None).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.exit_code(), 1, "{text}: {msg}");
            assert!(msg.contains(needle), "{text}: {msg}");
            assert!(
                msg.contains("bad.json") && msg.contains("fix that bench"),
                "{text}: {msg}"
            );
        }
        // The same id in two files.
        std::fs::write(dir.path().join("bad.json"), JOURNAL).unwrap();
        std::fs::write(dir.path().join("copy.json"), JOURNAL).unwrap();
        let err = collect_records(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("already written"), "{err}");
    }

    #[test]
    fn figures_join_the_criterion_results() {
        let criterion = vec![BenchResult {
            id: "uring/nop/1".into(),
            wall: Some(WallClock::ns(10.0, 9.0, 11.0)),
            instructions: None,
        }];
        let figures = parse_records(JOURNAL).unwrap();
        let merged = merge_figures(criterion.clone(), figures).unwrap();
        let ids: Vec<&str> = merged.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "uring/nop/1",
                "uring_journal/pair8_okay8_64B",
                "uring_journal/pair8_okay8_64B/p99"
            ]
        );
        let clash = vec![BenchResult {
            id: "uring/nop/1".into(),
            ..merged[1].clone()
        }];
        let err = merge_figures(criterion, clash).unwrap_err();
        assert!(err.to_string().contains("rename the record"), "{err}");
    }
}
