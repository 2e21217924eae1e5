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

/// Wall-clock estimate of one bench, in nanoseconds per iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WallClock {
    /// Median (criterion's point estimate of the median).
    pub median_ns: f64,
    /// Lower bound of the confidence interval of the median.
    pub low_ns: f64,
    /// Upper bound of the confidence interval of the median.
    pub high_ns: f64,
}

/// One bench of a results file.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Bench id, `group/name` (criterion's full id).
    pub id: String,
    /// Wall-clock estimate, when the criterion bench ran.
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
            let num = |x: Option<f64>| {
                x.and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
                    .to_string()
            };
            let instructions = r.instructions.map_or(Value::Null, Value::from);
            let _ = write!(
                out,
                "{{\"id\": {}, \"median_ns\": {}, \"low_ns\": {}, \"high_ns\": {}, \"instructions\": {instructions}}}",
                json_str(&r.id),
                num(r.wall.map(|w| w.median_ns)),
                num(r.wall.map(|w| w.low_ns)),
                num(r.wall.map(|w| w.high_ns)),
            );
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
    let wall = match (median, low, high) {
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
            Some(WallClock {
                median_ns,
                low_ns,
                high_ns,
            })
        }
        _ => {
            return Err(Error::bad_input(format!(
                "bench {id:?}: `median_ns`, `low_ns` and `high_ns` must be all numbers or all null"
            )));
        }
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
            "bench {id:?} has neither wall-clock numbers nor an instruction count"
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
                    wall: Some(WallClock {
                        median_ns: 10.5,
                        low_ns: 10.0,
                        high_ns: 11.0,
                    }),
                    instructions: Some(42),
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
        ];
        for (text, needle) in cases {
            let err = Results::parse(text).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{text}");
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
