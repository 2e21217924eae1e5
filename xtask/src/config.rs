//! The comparison config file (`--config FILE`, schema `tally-bench-config/1`): default
//! threshold, per-bench threshold overrides, and the list of kernels the CI instruction
//! gate counts. `bench-baseline/gate.json` is the committed instance.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The schema string of config files.
pub const CONFIG_SCHEMA: &str = "tally-bench-config/1";

/// Default regression threshold, percent.
pub const DEFAULT_THRESHOLD_PCT: f64 = 5.0;

/// Comparison settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Threshold for benches without an override, percent growth.
    pub threshold_pct: f64,
    /// Per-bench thresholds, percent: key is an exact id, or a prefix ending in `*`
    /// (`"mpc/*"`). An exact id wins over a prefix; a longer prefix wins over a shorter one.
    pub overrides: BTreeMap<String, f64>,
    /// Kernel ids the instruction-count gate measures (`cargo xtask gate`).
    pub gate: Vec<String>,
    /// Gated kernel id -> peer kernel id: the gate also measures the peer and fails when
    /// the kernel does not count fewer instructions than the peer in the same run (a
    /// README claim such as "fewer instructions than rtrb", checked rather than trusted).
    pub fewer_than: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold_pct: DEFAULT_THRESHOLD_PCT,
            overrides: BTreeMap::new(),
            gate: Vec::new(),
            fewer_than: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The threshold, percent, that applies to bench `id`.
    pub fn threshold_for(&self, id: &str) -> f64 {
        if let Some(t) = self.overrides.get(id) {
            return *t;
        }
        self.overrides
            .iter()
            .filter_map(|(k, t)| {
                let prefix = k.strip_suffix('*')?;
                id.starts_with(prefix).then_some((prefix.len(), *t))
            })
            .max_by_key(|(len, _)| *len)
            .map_or(self.threshold_pct, |(_, t)| t)
    }

    /// Reads and validates a config file.
    ///
    /// # Errors
    /// `BadInput` naming the file and the field when it cannot be read or is invalid.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::bad_input(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Config::parse(&text).map_err(|e| match e {
            Error::BadInput { message } => {
                Error::bad_input(format!("config {}: {message}", path.display()))
            }
            other @ Error::Failed { .. } => other,
        })
    }

    /// Parses and validates config text. Unlike results files, unknown top-level keys are
    /// rejected (a misspelt `thresholds` would silently change the gate); keys starting
    /// with `_` are comments.
    ///
    /// # Errors
    /// `BadInput` when the text is not JSON, has another schema or an invalid field.
    pub fn parse(text: &str) -> Result<Config> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_input(format!("not valid JSON ({e})")))?;
        let Value::Object(top) = value else {
            return Err(Error::bad_input("the top level must be a JSON object"));
        };
        match top.get("schema") {
            Some(Value::String(s)) if s == CONFIG_SCHEMA => {}
            other => {
                return Err(Error::bad_input(format!(
                    "expected \"schema\": \"{CONFIG_SCHEMA}\", got {}",
                    other.map_or_else(|| "nothing".to_owned(), Value::to_string)
                )));
            }
        }
        let mut config = Config::default();
        for (key, v) in &top {
            match key.as_str() {
                "schema" => {}
                k if k.starts_with('_') => {}
                "threshold_pct" => config.threshold_pct = pct(v, "threshold_pct")?,
                "thresholds" => {
                    let Value::Object(map) = v else {
                        return Err(Error::bad_input(
                            "`thresholds` must be an object {\"bench/id\": percent, \"prefix/*\": percent}",
                        ));
                    };
                    for (id, t) in map {
                        config
                            .overrides
                            .insert(id.clone(), pct(t, &format!("thresholds.{id}"))?);
                    }
                }
                "gate" => {
                    let Value::Array(items) = v else {
                        return Err(Error::bad_input("`gate` must be an array of kernel ids"));
                    };
                    for item in items {
                        let Value::String(id) = item else {
                            return Err(Error::bad_input(format!(
                                "`gate` entries must be kernel id strings, got {item}"
                            )));
                        };
                        config.gate.push(id.clone());
                    }
                }
                "fewer_than" => {
                    let Value::Object(map) = v else {
                        return Err(Error::bad_input(
                            "`fewer_than` must be an object {\"gated/kernel\": \"peer/kernel\"}",
                        ));
                    };
                    for (id, peer) in map {
                        let Value::String(peer) = peer else {
                            return Err(Error::bad_input(format!(
                                "`fewer_than.{id}` must be a peer kernel id string, got {peer}"
                            )));
                        };
                        config.fewer_than.insert(id.clone(), peer.clone());
                    }
                }
                other => {
                    return Err(Error::bad_input(format!(
                        "unknown key {other:?} (known: schema, threshold_pct, thresholds, gate, fewer_than; `_` keys are comments)"
                    )));
                }
            }
        }
        Ok(config)
    }
}

fn pct(v: &Value, what: &str) -> Result<f64> {
    match v.as_f64() {
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(Error::bad_input(format!(
            "`{what}` must be a non-negative percentage, got {v}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_resolve_exact_then_longest_prefix() {
        let c = Config::parse(
            r#"{"schema":"tally-bench-config/1","threshold_pct":5,"_why":"x",
                "thresholds":{"mpc/*":10,"mpc/sign/*":20,"mpc/sign/fast":1},"gate":["ring/a"]}"#,
        )
        .unwrap();
        assert!((c.threshold_for("ring/a") - 5.0).abs() < 1e-9);
        assert!((c.threshold_for("mpc/keygen") - 10.0).abs() < 1e-9);
        assert!((c.threshold_for("mpc/sign/slow") - 20.0).abs() < 1e-9);
        assert!((c.threshold_for("mpc/sign/fast") - 1.0).abs() < 1e-9);
        assert_eq!(c.gate, vec!["ring/a".to_owned()]);
        assert!(c.fewer_than.is_empty());
        let c = Config::parse(
            r#"{"schema":"tally-bench-config/1","gate":["ring/a"],"fewer_than":{"ring/a":"ring/peer"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.fewer_than.get("ring/a").map(String::as_str),
            Some("ring/peer")
        );
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        for (text, needle) in [
            (
                r#"{"schema":"tally-bench-config/1","treshold_pct":5}"#,
                "unknown key",
            ),
            (
                r#"{"schema":"tally-bench-config/1","threshold_pct":-1}"#,
                "non-negative",
            ),
            (r#"{"schema":"other"}"#, "expected"),
            (
                r#"{"schema":"tally-bench-config/1","gate":[1]}"#,
                "kernel id",
            ),
            (
                r#"{"schema":"tally-bench-config/1","fewer_than":{"ring/a":1}}"#,
                "peer kernel id",
            ),
        ] {
            let err = Config::parse(text).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
