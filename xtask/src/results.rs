//! The bench results file format `tally-bench/1`: reading (strict about what it uses,
//! lenient about extra fields) and writing. `docs/bench-format.md` is the user-facing
//! description of the same format; keep the two in step.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The schema string this `xtask` reads and writes.
pub const SCHEMA: &str = "tally-bench/1";

/// Which way a figure is better: a rate (records per second) is better higher, a
/// latency or a time per iteration lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Higher is better (rates, ratios to a peer).
    Higher,
    /// Lower is better (times, latencies, CPU cost).
    Lower,
}

impl Better {
    /// The spelling in files: `"higher"` or `"lower"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }

    /// Parses the spelling of [`Better::as_str`].
    pub fn parse(text: &str) -> Option<Better> {
        match text {
            "higher" => Some(Better::Higher),
            "lower" => Some(Better::Lower),
            _ => None,
        }
    }
}

/// What a [`WallClock`] measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// Criterion's nanoseconds per iteration (lower is better): the file fields
    /// `median_ns`, `low_ns` and `high_ns`.
    NsPerIter,
    /// A figure of a bench with its own `main` (a rate, a latency percentile, a ratio to
    /// a peer): the file fields `value`, `low`, `high`, `unit` and `better`.
    Figure {
        /// The unit as the bench wrote it (`rec/s`, `us`, `x`, ...), shown in tables.
        name: String,
        /// Which way is better.
        better: Better,
    },
}

impl Unit {
    /// Which way is better.
    pub fn better(&self) -> Better {
        match self {
            Unit::NsPerIter => Better::Lower,
            Unit::Figure { better, .. } => *better,
        }
    }
}

/// Wall-clock measurement of one bench: criterion's estimate of the time per iteration
/// (in nanoseconds), or a figure that a bench with its own `main` measured (a rate or a
/// latency, with its unit and direction).
#[derive(Debug, Clone, PartialEq)]
pub struct WallClock {
    /// Median (criterion's point estimate of the median; a figure's median over its
    /// repetitions).
    pub median: f64,
    /// Lower bound: of the median's confidence interval (criterion), of the repetitions
    /// (a figure).
    pub low: f64,
    /// Upper bound, as `low`.
    pub high: f64,
    /// What the numbers measure.
    pub unit: Unit,
}

impl WallClock {
    /// A criterion estimate in nanoseconds per iteration.
    pub fn ns(median: f64, low: f64, high: f64) -> WallClock {
        WallClock {
            median,
            low,
            high,
            unit: Unit::NsPerIter,
        }
    }
}

/// One bench of a results file.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Bench id, `group/name` (criterion's full id).
    pub id: String,
    /// Wall-clock measurement, when the criterion bench ran, or a figure of a bench with
    /// its own `main`.
    pub wall: Option<WallClock>,
    /// Instructions per iteration from callgrind, when the bench has a kernel twin and
    /// instructions were counted.
    pub instructions: Option<u64>,
}

/// A whole results file.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    /// Git commit the results were measured on (`-dirty` appended for uncommitted changes).
    pub commit: String,
    /// Free-form description of the machine (CPU model, cores, kernel).
    pub machine: String,
    /// When the results were written, seconds since the Unix epoch (optional on read).
    pub created_unix_s: Option<u64>,
    /// The benches, sorted by id, ids unique.
    pub results: Vec<BenchResult>,
}

impl Results {
    /// The bench with this id.
    pub fn get(&self, id: &str) -> Option<&BenchResult> {
        self.results.iter().find(|r| r.id == id)
    }

    /// Reads and validates a results file.
    ///
    /// # Errors
    /// `BadInput` naming the file when it cannot be read, is not JSON, has another schema,
    /// or a field is missing or out of range.
    pub fn load(path: &Path) -> Result<Results> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::bad_input(format!("cannot read results file {}: {e}", path.display()))
        })?;
        Results::parse(&text).map_err(|e| match e {
            Error::BadInput { message } => {
                Error::bad_input(format!("{}: {message}", path.display()))
            }
            other @ Error::Failed { .. } => other,
        })
    }

    /// Parses and validates the text of a results file.
    ///
    /// # Errors
    /// `BadInput` when the text is not JSON, has another schema, or a field is missing,
    /// of the wrong type or out of range (the message names the bench and field).
    pub fn parse(text: &str) -> Result<Results> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Error::bad_input(format!(
                "not valid JSON ({e}); is this a `cargo xtask bench --save` file?"
            ))
        })?;
        let Value::Object(top) = value else {
            return Err(Error::bad_input("the top level must be a JSON object"));
        };
        let schema = match top.get("schema") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(Error::bad_input("field `schema` must be a string")),
            None => {
                return Err(Error::bad_input(format!(
                    "no `schema` field; expected \"schema\": \"{SCHEMA}\""
                )));
            }
        };
        if schema != SCHEMA {
            return Err(Error::bad_input(format!(
                "unknown schema {schema:?}; this xtask reads {SCHEMA:?} (rerun `cargo xtask bench --save` to write a current file)"
            )));
        }
        let commit = string_field(&top, "commit", "the top level")?;
        let machine = string_field(&top, "machine", "the top level")?;
        let created_unix_s = match top.get("created_unix_s") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                Error::bad_input("field `created_unix_s` must be a whole number of seconds")
            })?),
        };
        let Some(Value::Array(items)) = top.get("results") else {
            return Err(Error::bad_input("field `results` must be an array"));
        };
        let mut results = Vec::with_capacity(items.len());
        let mut seen = BTreeSet::new();
        for (index, item) in items.iter().enumerate() {
            let r = parse_result(item, index)?;
            if !seen.insert(r.id.clone()) {
                return Err(Error::bad_input(format!(
                    "bench id {:?} appears twice in `results`",
                    r.id
                )));
            }
            results.push(r);
        }
        results.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Results {
            commit,
            machine,
            created_unix_s,
            results,
        })
    }

    /// The file text: pretty JSON with `schema` first and one bench per line, so that
    /// diffs of a committed baseline read well.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        out.push_str("{\n");
        let _ = writeln!(out, "  \"schema\": {},", json_str(SCHEMA));
        let _ = writeln!(out, "  \"commit\": {},", json_str(&self.commit));
        let _ = writeln!(out, "  \"machine\": {},", json_str(&self.machine));
        if let Some(t) = self.created_unix_s {
            let _ = writeln!(out, "  \"created_unix_s\": {t},");
        }
        out.push_str("  \"results\": [");
        let mut sorted: Vec<&BenchResult> = self.results.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for (i, r) in sorted.iter().enumerate() {
            out.push_str(if i == 0 { "\n    " } else { ",\n    " });
            let num = |x: f64| {
                serde_json::Number::from_f64(x)
                    .map_or(Value::Null, Value::Number)
                    .to_string()
            };
            let instructions = r.instructions.map_or(Value::Null, Value::from);
            let _ = write!(out, "{{\"id\": {}, ", json_str(&r.id));
            match &r.wall {
                None => out.push_str("\"median_ns\": null, \"low_ns\": null, \"high_ns\": null, "),
                Some(w) => match &w.unit {
                    Unit::NsPerIter => {
                        let _ = write!(
                            out,
                            "\"median_ns\": {}, \"low_ns\": {}, \"high_ns\": {}, ",
                            num(w.median),
                            num(w.low),
                            num(w.high)
                        );
                    }
                    Unit::Figure { name, better } => {
                        let _ = write!(
                            out,
                            "\"value\": {}, \"low\": {}, \"high\": {}, \"unit\": {}, \"better\": {}, ",
                            num(w.median),
                            num(w.low),
                            num(w.high),
                            json_str(name),
                            json_str(better.as_str())
                        );
                    }
                },
            }
            let _ = write!(out, "\"instructions\": {instructions}}}");
        }
        out.push_str(if sorted.is_empty() { "]\n" } else { "\n  ]\n" });
        out.push_str("}\n");
        out
    }

    /// Writes the file, creating parent directories.
    ///
    /// # Errors
    /// `Failed` when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::failed(format!("cannot create directory {}: {e}", parent.display()))
            })?;
        }
        std::fs::write(path, self.to_json())
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))
    }
}

fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn string_field(obj: &Map<String, Value>, key: &str, what: &str) -> Result<String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::bad_input(format!(
            "field `{key}` of {what} must be a string"
        ))),
        None => Err(Error::bad_input(format!("{what} has no `{key}` field"))),
    }
}

fn ns_field(obj: &Map<String, Value>, key: &str, id: &str) -> Result<Option<f64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
            _ => Err(Error::bad_input(format!(
                "bench {id:?}: `{key}` must be a non-negative number of nanoseconds or null, got {v}"
            ))),
        },
    }
}

/// The keys of a figure (a measurement of a bench with its own `main`), in a results
/// file's row and in a records file.
pub const FIGURE_KEYS: [&str; 5] = ["value", "low", "high", "unit", "better"];

/// Reads the figure of bench `id` from `obj`: `None` when none of [`FIGURE_KEYS`] is
/// there. Shared by results files and the records files of the benches with their own
/// `main`, so the message (an `Err`) names the field but not the file.
///
/// # Errors
/// A message saying which field is missing, of the wrong type or out of range.
pub fn parse_figure(obj: &Map<String, Value>, id: &str) -> Result<Option<WallClock>, String> {
    let given = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    if !FIGURE_KEYS.iter().any(|k| given(k)) {
        return Ok(None);
    }
    if let Some(missing) = FIGURE_KEYS.iter().find(|k| !given(k)) {
        return Err(format!(
            "bench {id:?}: a figure needs all of `value`, `low`, `high`, `unit` and `better`; `{missing}` is missing"
        ));
    }
    let num = |key: &str| -> Result<f64, String> {
        let v = obj.get(key).unwrap_or(&Value::Null);
        v.as_f64()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("bench {id:?}: `{key}` must be a non-negative number, got {v}"))
    };
    let (value, low, high) = (num("value")?, num("low")?, num("high")?);
    if !(low <= value && value <= high) {
        return Err(format!(
            "bench {id:?}: need low <= value <= high, got {low} / {value} / {high}"
        ));
    }
    let name = match obj.get("unit") {
        Some(Value::String(u)) if !u.trim().is_empty() => u.clone(),
        other => {
            return Err(format!(
                "bench {id:?}: `unit` must be a non-empty string such as \"rec/s\" or \"us\", got {}",
                other.unwrap_or(&Value::Null)
            ));
        }
    };
    let better = match obj.get("better") {
        Some(Value::String(b)) => Better::parse(b),
        _ => None,
    }
    .ok_or_else(|| {
        format!(
            "bench {id:?}: `better` must be \"higher\" (a rate) or \"lower\" (a latency), got {}",
            obj.get("better").unwrap_or(&Value::Null)
        )
    })?;
    Ok(Some(WallClock {
        median: value,
        low,
        high,
        unit: Unit::Figure { name, better },
    }))
}

fn parse_result(item: &Value, index: usize) -> Result<BenchResult> {
    let Value::Object(obj) = item else {
        return Err(Error::bad_input(format!(
            "results[{index}] must be an object"
        )));
    };
    let id = string_field(obj, "id", &format!("results[{index}]"))?;
    if id.trim().is_empty() {
        return Err(Error::bad_input(format!(
            "results[{index}] has an empty `id`"
        )));
    }
    let median = ns_field(obj, "median_ns", &id)?;
    let low = ns_field(obj, "low_ns", &id)?;
    let high = ns_field(obj, "high_ns", &id)?;
    let ns = match (median, low, high) {
        (None, None, None) => None,
        (Some(median_ns), Some(low_ns), Some(high_ns)) => {
            if median_ns <= 0.0 {
                return Err(Error::bad_input(format!(
                    "bench {id:?}: `median_ns` is 0, which is not a measurement (the bench's work was optimised away?); fix the bench and measure again"
                )));
            }
            if !(low_ns <= median_ns && median_ns <= high_ns) {
                return Err(Error::bad_input(format!(
                    "bench {id:?}: need low_ns <= median_ns <= high_ns, got {low_ns} / {median_ns} / {high_ns}"
                )));
            }
            Some(WallClock::ns(median_ns, low_ns, high_ns))
        }
        _ => {
            return Err(Error::bad_input(format!(
                "bench {id:?}: `median_ns`, `low_ns` and `high_ns` must be all numbers or all null"
            )));
        }
    };
    let figure = parse_figure(obj, &id).map_err(Error::bad_input)?;
    let wall = match (ns, figure) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_input(format!(
                "bench {id:?} has both criterion numbers (`median_ns`, ...) and a figure (`value`, `unit`, ...); a row is one or the other"
            )));
        }
        (ns, figure) => ns.or(figure),
    };
    let instructions = match obj.get("instructions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            Error::bad_input(format!(
                "bench {id:?}: `instructions` must be a whole number above 0 or null, got {v} (0 per iteration means the kernel's work was optimised away or skipped)"
            ))
        })?),
    };
    if wall.is_none() && instructions.is_none() {
        return Err(Error::bad_input(format!(
            "bench {id:?} has neither wall-clock numbers, nor a figure, nor an instruction count"
        )));
    }
    Ok(BenchResult {
        id,
        wall,
        instructions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Results {
        Results {
            commit: "abc123".into(),
            machine: "test \"box\"".into(),
            created_unix_s: Some(1_700_000_000),
            results: vec![
                BenchResult {
                    id: "a/one".into(),
                    wall: Some(WallClock::ns(10.5, 10.0, 11.0)),
                    instructions: Some(42),
                },
                BenchResult {
                    id: "a/uring_journal_pair8".into(),
                    wall: Some(WallClock {
                        median: 12_345.5,
                        low: 12_000.0,
                        high: 13_000.0,
                        unit: Unit::Figure {
                            name: "rec/s".into(),
                            better: Better::Higher,
                        },
                    }),
                    instructions: None,
                },
                BenchResult {
                    id: "b/two".into(),
                    wall: None,
                    instructions: Some(7),
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let r = sample();
        let back = Results::parse(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    /// A file written before figures existed (every row criterion numbers and/or an
    /// instruction count) loads as before: its wall clock is nanoseconds per iteration.
    #[test]
    fn reads_files_without_figures() {
        let text = r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[
            {"id":"ring/a","median_ns":4.2,"low_ns":4.1,"high_ns":4.3,"instructions":23},
            {"id":"uring/k","median_ns":null,"low_ns":null,"high_ns":null,"instructions":1870}]}"#;
        let r = Results::parse(text).unwrap();
        assert_eq!(r.results[0].wall, Some(WallClock::ns(4.2, 4.1, 4.3)));
        assert_eq!(
            r.results[0].wall.as_ref().unwrap().unit.better(),
            Better::Lower
        );
        assert_eq!(r.results[1].wall, None);
        // And writes it back unchanged in form: the criterion fields, no figure fields.
        let back = r.to_json();
        assert!(
            back.contains(r#""median_ns": 4.2, "low_ns": 4.1, "high_ns": 4.3"#),
            "{back}"
        );
        assert!(!back.contains("\"unit\""), "{back}");
    }

    #[test]
    fn reads_figures() {
        let text = r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[
            {"id":"uring_journal/tally1_64B/p99","value":310,"low":290,"high":400,"unit":"us","better":"lower","instructions":null}]}"#;
        let r = Results::parse(text).unwrap();
        let w = r.results[0].wall.clone().unwrap();
        assert_eq!((w.median, w.low, w.high), (310.0, 290.0, 400.0));
        assert_eq!(
            w.unit,
            Unit::Figure {
                name: "us".into(),
                better: Better::Lower
            }
        );
    }

    #[test]
    fn ignores_unknown_fields() {
        let text = r#"{"schema":"tally-bench/1","commit":"x","machine":"m","extra":{"a":1},
            "results":[{"id":"g/n","median_ns":1,"low_ns":0.5,"high_ns":2,"instructions":null,"note":"hi"}]}"#;
        let r = Results::parse(text).unwrap();
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.results[0].instructions, None);
    }

    #[test]
    fn rejects_bad_files() {
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "top level"),
            (
                r#"{"commit":"x","machine":"m","results":[]}"#,
                "no `schema`",
            ),
            (
                r#"{"schema":"tally-bench/2","commit":"x","machine":"m","results":[]}"#,
                "unknown schema",
            ),
            (
                r#"{"schema":"tally-bench/1","machine":"m","results":[]}"#,
                "`commit`",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m"}"#,
                "`results`",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","instructions":-1}]}"#,
                "`instructions`",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","median_ns":1}]}"#,
                "all numbers or all null",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","median_ns":1,"low_ns":2,"high_ns":3}]}"#,
                "low_ns <= median_ns",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a"}]}"#,
                "neither",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","instructions":1},{"id":"a","instructions":2}]}"#,
                "twice",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","value":1,"low":1,"high":1,"unit":"x"}]}"#,
                "`better` is missing",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","value":1,"low":1,"high":1,"unit":"x","better":"more"}]}"#,
                "\"higher\"",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","value":1,"low":2,"high":3,"unit":"x","better":"higher"}]}"#,
                "low <= value <= high",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","value":-1,"low":-1,"high":1,"unit":"x","better":"higher"}]}"#,
                "`value` must be a non-negative number",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","value":1,"low":1,"high":1,"unit":"","better":"higher"}]}"#,
                "`unit` must be a non-empty string",
            ),
            (
                r#"{"schema":"tally-bench/1","commit":"x","machine":"m","results":[{"id":"a","median_ns":1,"low_ns":1,"high_ns":1,"value":1,"low":1,"high":1,"unit":"x","better":"higher"}]}"#,
                "one or the other",
            ),
        ];
        for (text, needle) in cases {
            let err = Results::parse(text).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{text}");
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
