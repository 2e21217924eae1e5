//! `cargo xtask gate` (the CI instruction-count gate against the committed baseline) and
//! `cargo xtask ci` (everything `.ci/run` runs, so CI can be reproduced locally).

use std::path::{Path, PathBuf};

use crate::bench::{self, BenchOptions};
use crate::compare::{self, Comparison};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lint;
use crate::results::Results;
use crate::util;

/// The committed gate config, relative to the workspace root.
pub const GATE_CONFIG: &str = "bench-baseline/gate.json";
/// The committed baseline, relative to the workspace root.
pub const GATE_BASELINE: &str = "bench-baseline/instructions.json";

/// Options of `cargo xtask gate`.
#[derive(Debug, Clone, Default)]
pub struct GateOptions {
    /// Config file (default [`GATE_CONFIG`]).
    pub config: Option<PathBuf>,
    /// Baseline file (default [`GATE_BASELINE`]).
    pub baseline: Option<PathBuf>,
    /// Write the measured counts as the new baseline instead of comparing.
    pub refresh: bool,
    /// Also write the comparison as Markdown here.
    pub markdown: Option<PathBuf>,
    /// Also write the comparison chart (SVG) here.
    pub chart: Option<PathBuf>,
}

/// Measures the gate's kernels and compares them with the baseline (or, with `refresh`,
/// rewrites the baseline). Returns whether a kernel regressed. Report files an earlier
/// run left at the `markdown` / `chart` paths are removed first.
///
/// # Errors
/// `BadInput` for a missing or malformed config or baseline, a config that gates no
/// kernel, a gate kernel that `icount --list` does not know, or a report path that is
/// the config or the baseline; `Failed` when a build,
/// a kernel or a callgrind run fails (valgrind missing included: the gate never skips).
pub fn gate(root: &Path, opts: &GateOptions) -> Result<bool> {
    let config_path = opts
        .config
        .clone()
        .unwrap_or_else(|| root.join(GATE_CONFIG));
    let baseline_path = opts
        .baseline
        .clone()
        .unwrap_or_else(|| root.join(GATE_BASELINE));
    crate::clear_reports(
        opts.markdown.as_deref(),
        opts.chart.as_deref(),
        &[&config_path, &baseline_path],
    )?;
    let config = Config::load(&config_path)?;
    // A gate without kernels passes whatever the code does.
    if config.gate.is_empty() {
        return Err(Error::bad_input(format!(
            "{} lists no kernels under `gate`, so the gate would pass whatever the code does; \
             add kernel ids (`cargo run -p tally-benches --bin icount -- --list`) and record \
             their counts with `cargo xtask gate --refresh`",
            config_path.display()
        )));
    }
    require_thresholds_apply(&config, &config_path)?;
    require_fewer_than_gated(&config, &config_path)?;
    // Read the baseline first: a broken baseline is bad input, found before the build.
    let baseline = if opts.refresh {
        None
    } else if baseline_path.is_file() {
        let base = Results::load(&baseline_path)?;
        require_baseline(&config, &base, &baseline_path)?;
        Some(base)
    } else {
        return Err(Error::bad_input(format!(
            "no baseline at {}; record one on purpose with `cargo xtask gate --refresh` (see docs/bench-format.md)",
            baseline_path.display()
        )));
    };
    let head = bench::bench(
        root,
        &BenchOptions {
            filter: None,
            wall: false,
            instructions: true,
            kernels: Some(kernels_to_measure(&config)),
        },
    )?;
    let head_path = util::target_dir(root)?.join("xtask-gate").join("head.json");
    head.save(&head_path)?;
    eprintln!("gate: measured counts written to {}", head_path.display());
    let Some(base) = baseline else {
        // Refreshing on another CPU kind than the one the old baseline came from records
        // counts CI (one machine kind) may not reproduce: say so while it can be undone.
        if let Ok(old) = Results::load(&baseline_path)
            && let Some(note) = machine_note(&old.machine, &head.machine)
        {
            eprintln!("{note}");
        }
        head.save(&baseline_path)?;
        eprintln!(
            "gate: baseline {} refreshed ({} kernels); review and commit it",
            baseline_path.display(),
            head.results.len()
        );
        return Ok(false);
    };
    let cmp = judge(&config, &base, &head)?;
    print!("{}", compare::to_table(&cmp));
    let not_fewer = not_fewer_than_peers(&config, &head)?;
    for line in &not_fewer {
        println!("{line}");
    }
    if let Some(note) = machine_note(&base.machine, &head.machine) {
        eprintln!("{note}");
    }
    if let Some(note) = stale_baseline_note(&cmp) {
        eprintln!("{note}");
    }
    crate::write_reports(&cmp, opts.markdown.as_deref(), opts.chart.as_deref())?;
    Ok(cmp.has_regression() || !not_fewer.is_empty())
}

/// The gated kernels and their `fewer_than` peers, each once, gated ones first.
fn kernels_to_measure(config: &Config) -> Vec<String> {
    let mut ids = config.gate.clone();
    for peer in config.fewer_than.values() {
        if !ids.contains(peer) {
            ids.push(peer.clone());
        }
    }
    ids
}

/// One line per `fewer_than` pair whose kernel did not count fewer instructions than its
/// peer in `measured` (empty: every pair holds). The lines say which claim broke.
///
/// # Errors
/// `Failed` when a kernel or its peer has no count in `measured`.
pub fn not_fewer_than_peers(config: &Config, measured: &Results) -> Result<Vec<String>> {
    let count = |id: &str| {
        measured.get(id).and_then(|r| r.instructions).ok_or_else(|| {
            Error::failed(format!(
                "`fewer_than` kernel {id} has no measured instruction count; rerun `cargo xtask gate` and read the callgrind output above"
            ))
        })
    };
    let mut broken = Vec::new();
    for (id, peer) in &config.fewer_than {
        let (n, p) = (count(id)?, count(peer)?);
        if n >= p {
            broken.push(format!(
                "gate: {id} counts {n} instructions, not fewer than {peer}'s {p} in the same run                  (bench-baseline/gate.json `fewer_than`); the claim that rests on it no longer holds"
            ));
        } else {
            println!("gate: {id} {n} < {peer} {p} instructions: holds");
        }
    }
    Ok(broken)
}

/// Every `fewer_than` key is a gated kernel: a pair on an ungated kernel (a typo) would
/// be measured and compared without the kernel's own count being held to its baseline.
fn require_fewer_than_gated(config: &Config, config_path: &Path) -> Result<()> {
    let ungated: Vec<&str> = config
        .fewer_than
        .keys()
        .filter(|id| !config.gate.contains(id))
        .map(String::as_str)
        .collect();
    if ungated.is_empty() {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "{}: `fewer_than` keys that are not under `gate`: {}; gate the kernel too, or fix its id",
        config_path.display(),
        ungated.join(", ")
    )))
}

/// A warning when `baseline` (the baseline file's `machine`) names another CPU than
/// `here`: counts are only comparable on the same CPU kind (runtime feature detection
/// picks code paths from the CPUID valgrind passes through), so a verdict across CPU
/// kinds may be about the machine rather than the code.
pub fn machine_note(baseline: &str, here: &str) -> Option<String> {
    let (b, h) = (cpu_of(baseline), cpu_of(here));
    (b != h).then(|| {
        format!(
            "note: the baseline was measured on {b:?}, this machine is {h:?}; instruction counts are \
             only comparable on the same CPU kind (code paths follow the CPU features), so judge \
             this verdict on the machine kind CI runs on, and refresh the baseline (`cargo xtask \
             gate --refresh`) only there"
        )
    })
}

/// The CPU model of a `machine` string as [`util::machine`] writes it
/// (`"<cpu> x<cpus>, <kernel>"`): without the CPU count and the kernel, which do not
/// change a count.
fn cpu_of(machine: &str) -> &str {
    let cpu = machine.rsplit_once(", ").map_or(machine, |(cpu, _)| cpu);
    match cpu.rsplit_once(" x") {
        Some((model, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => model,
        _ => cpu,
    }
}

/// A note naming the gated kernels that improved past their threshold: the baseline
/// still holds their old counts, so until it is refreshed a later regression of the same
/// size passes the gate unseen.
pub fn stale_baseline_note(cmp: &Comparison) -> Option<String> {
    let improved: Vec<String> = cmp
        .rows
        .iter()
        .filter(|r| r.verdict == compare::Verdict::Improved)
        .map(|r| format!("{} ({:+.1} %)", r.id, r.change_pct.unwrap_or(f64::NAN)))
        .collect();
    (!improved.is_empty()).then(|| {
        format!(
            "note: improved past the threshold: {}; the baseline still holds the old counts, so a \
             later regression back to them would pass unseen: record the gain with `cargo xtask \
             gate --refresh` and commit bench-baseline/ in this change",
            improved.join(", ")
        )
    })
}

/// Every per-kernel threshold of the gate config applies to a gated kernel. A key that
/// matches none (a misspelt id, a kernel renamed or taken off the gate, a prefix without
/// its `*`) would otherwise be ignored without a word, and the kernel it was meant for
/// judged under the default threshold: `ring_pair/tally`'s 3 % becoming 5 % lets one
/// more instruction (+3.7 %) through.
fn require_thresholds_apply(config: &Config, config_path: &Path) -> Result<()> {
    let unused: Vec<&str> = config
        .overrides
        .keys()
        .filter(|key| {
            !config.gate.iter().any(|id| match key.strip_suffix('*') {
                Some(prefix) => id.starts_with(prefix),
                None => id == *key,
            })
        })
        .map(String::as_str)
        .collect();
    if unused.is_empty() {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "{}: `thresholds` keys that match no kernel under `gate`: {}; fix the kernel id \
         (exact, or a prefix ending in `*`) or remove the key, so that each threshold \
         applies to the kernel it was written for",
        config_path.display(),
        unused.join(", ")
    )))
}

/// Every gated kernel needs an instruction count in the baseline. Without one it would
/// only be listed as "new", not gated at all: adding a kernel to the gate means
/// recording its baseline in the same change.
fn require_baseline(config: &Config, base: &Results, baseline_path: &Path) -> Result<()> {
    let missing = without_count(config, base);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "gate kernels without an instruction count in {}: {}; record them with `cargo xtask gate --refresh` and commit the baseline",
        baseline_path.display(),
        missing.join(", ")
    )))
}

/// The gated kernels that have no instruction count in `results`.
fn without_count<'c>(config: &'c Config, results: &Results) -> Vec<&'c str> {
    config
        .gate
        .iter()
        .filter(|id| results.get(id).and_then(|r| r.instructions).is_none())
        .map(String::as_str)
        .collect()
}

/// The gate's verdict: the gated kernels' counts in `measured` against `baseline`, under
/// the thresholds of `config`. Only gated kernels are rows (other baseline entries are
/// not reported as "removed"), and each must have a count on both sides.
///
/// # Errors
/// `BadInput` when a gated kernel has no count in the baseline; `Failed` when one has
/// none in the measurement.
pub fn judge(config: &Config, baseline: &Results, measured: &Results) -> Result<Comparison> {
    require_baseline(config, baseline, Path::new("the baseline"))?;
    let unmeasured = without_count(config, measured);
    if !unmeasured.is_empty() {
        return Err(Error::failed(format!(
            "gate kernels without a measured instruction count: {}; rerun `cargo xtask gate` and read the callgrind output above",
            unmeasured.join(", ")
        )));
    }
    let gated = |r: &Results| Results {
        results: r
            .results
            .iter()
            .filter(|b| config.gate.contains(&b.id))
            .cloned()
            .collect(),
        ..r.clone()
    };
    let cmp = compare::compare(&gated(baseline), &gated(measured), config);
    // Every gated kernel is now a row judged on instructions; anything else is a bug
    // here, and must not pass silently.
    if let Some(row) = cmp
        .rows
        .iter()
        .find(|r| r.basis != Some(compare::Basis::Instructions))
    {
        return Err(Error::failed(format!(
            "gate kernel {} was not compared on instructions ({})",
            row.id,
            row.verdict.label()
        )));
    }
    Ok(cmp)
}

/// One step of [`ci`].
#[derive(Debug)]
enum Step {
    /// A cargo command, with the line announcing it.
    Cargo(&'static str, Box<std::process::Command>),
    /// `cargo xtask lint`; `require_deny`: a missing cargo-deny fails it.
    Lint { require_deny: bool },
    /// `cargo xtask gate`.
    Gate,
}

/// The steps of [`ci`], in order: what `.ci/run` runs after installing its tools, with
/// `CI` set as `.ci/run` sets it (`export CI="${CI:-true}"`), so that tests which skip
/// elsewhere (no root, valgrind or io_uring) run or fail here as they do on CI.
fn steps(root: &Path) -> Vec<Step> {
    let ci = std::env::var_os("CI")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "true".into());
    let cargo = |args: &[&str]| {
        let mut cmd = util::cargo();
        cmd.current_dir(root).args(args).env("CI", &ci);
        cmd
    };
    let mut loom = cargo(&[
        "test",
        "-p",
        "tally-core-types",
        "--release",
        "--test",
        "loom",
    ]);
    // An inherited CARGO_ENCODED_RUSTFLAGS would win over RUSTFLAGS and drop the cfg.
    loom.env("RUSTFLAGS", "--cfg tally_loom")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", root.join("target/loom"));
    let mut loom_uring = cargo(&["test", "-p", "tally-uring", "--release", "--lib", "loom"]);
    loom_uring
        .env("RUSTFLAGS", "--cfg tally_uring_loom")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", root.join("target/loom-uring"));
    vec![
        // `cargo test` downloads this platform's crates only; cargo-deny (run offline by
        // the lint) reads the manifests of every crate in Cargo.lock, Windows-only ones
        // included, which a fresh machine does not have yet.
        Step::Cargo(
            "cargo fetch --locked",
            Box::new(cargo(&["fetch", "--locked"])),
        ),
        Step::Cargo(
            "cargo test --workspace",
            Box::new(cargo(&["test", "--workspace"])),
        ),
        Step::Lint { require_deny: true },
        Step::Cargo("loom model checks", Box::new(loom)),
        Step::Cargo("loom model checks of SharedJournal", Box::new(loom_uring)),
        Step::Gate,
    ]
}

/// Runs what `.ci/run` runs: a fetch of every locked crate, the workspace tests, lint, the
/// two loom suites, and the gate.
///
/// # Errors
/// `Failed` naming the first step that failed (steps after it do not run); the gate's
/// `BadInput` as is.
pub fn ci(root: &Path) -> Result<()> {
    for step in steps(root) {
        match step {
            Step::Cargo(what, mut cmd) => {
                eprintln!("== ci: {what}");
                util::run(&mut cmd)?;
            }
            Step::Lint { require_deny } => {
                eprintln!("== ci: cargo xtask lint");
                lint::lint_with(root, require_deny)?;
            }
            Step::Gate => {
                eprintln!("== ci: instruction-count gate");
                if gate(root, &GateOptions::default())? {
                    return Err(Error::failed(format!(
                        "instruction-count gate: {}",
                        crate::regression_message("gate")
                    )));
                }
            }
        }
    }
    eprintln!("ci: all steps passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::ScratchDir;

    /// Gate options pointing at a scratch config and baseline with these contents, and
    /// the scratch directory that holds them (removed when dropped: keep it alive while
    /// the options are used).
    fn scratch(name: &str, config: &str, baseline: Option<&str>) -> (ScratchDir, GateOptions) {
        let dir = ScratchDir::new(&format!("gate-{name}")).unwrap();
        let path = dir.path();
        std::fs::write(path.join("gate.json"), config).unwrap();
        if let Some(b) = baseline {
            std::fs::write(path.join("instructions.json"), b).unwrap();
        }
        let opts = GateOptions {
            config: Some(path.join("gate.json")),
            baseline: Some(path.join("instructions.json")),
            ..GateOptions::default()
        };
        (dir, opts)
    }

    const CONFIG: &str = r#"{"schema":"tally-bench-config/1","gate":["ring/a","ring/b"]}"#;

    #[test]
    fn gate_refuses_kernels_without_baseline() {
        let base = r#"{"schema":"tally-bench/1","commit":"c","machine":"m","results":[{"id":"ring/a","instructions":10}]}"#;
        let (_dir, opts) = scratch("missing-kernel", CONFIG, Some(base));
        let err = gate(Path::new("/nonexistent"), &opts).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("ring/b") && err.to_string().contains("--refresh"),
            "{err}"
        );
    }

    #[test]
    fn gate_refuses_missing_or_broken_inputs() {
        let (_dir, opts) = scratch("no-baseline", CONFIG, None);
        let err = gate(Path::new("/nonexistent"), &opts).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("no baseline"), "{err}");
        let (_dir, opts) = scratch("bad-baseline", CONFIG, Some("{"));
        let err = gate(Path::new("/nonexistent"), &opts).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let (_dir, opts) = scratch("bad-config", "{}", Some("{}"));
        let err = gate(Path::new("/nonexistent"), &opts).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    fn counts(rows: &[(&str, u64)]) -> Results {
        Results {
            commit: "c".into(),
            machine: "m".into(),
            created_unix_s: None,
            results: rows
                .iter()
                .map(|(id, n)| crate::results::BenchResult {
                    id: (*id).to_owned(),
                    wall: None,
                    instructions: Some(*n),
                })
                .collect(),
        }
    }

    /// A `fewer_than` pair fails the gate exactly when the kernel does not count fewer
    /// instructions than its peer; a missing count is an error, not a pass.
    #[test]
    fn fewer_than_pairs_hold_only_when_strictly_fewer() {
        let config = Config::parse(
            r#"{"schema":"tally-bench-config/1","gate":["ring/a"],"fewer_than":{"ring/a":"ring/peer"}}"#,
        )
        .unwrap();
        assert_eq!(kernels_to_measure(&config), ["ring/a", "ring/peer"]);
        let ok = not_fewer_than_peers(&config, &counts(&[("ring/a", 1407), ("ring/peer", 1432)]));
        assert!(ok.unwrap().is_empty());
        for a in [1432, 1470] {
            let broken =
                not_fewer_than_peers(&config, &counts(&[("ring/a", a), ("ring/peer", 1432)]))
                    .unwrap();
            assert_eq!(broken.len(), 1, "{a}");
            assert!(broken[0].contains("not fewer than ring/peer"), "{broken:?}");
        }
        let err = not_fewer_than_peers(&config, &counts(&[("ring/a", 1)])).unwrap_err();
        assert_eq!(err.exit_code(), 1, "{err}");
        // A pair on a kernel that is not gated is refused before anything is measured.
        let base = r#"{"schema":"tally-bench/1","commit":"c","machine":"m","results":[{"id":"ring/a","instructions":10}]}"#;
        let (_dir, opts) = scratch(
            "ungated-pair",
            r#"{"schema":"tally-bench-config/1","gate":["ring/a"],"fewer_than":{"ring/b":"ring/peer"}}"#,
            Some(base),
        );
        let err = gate(Path::new("/nonexistent"), &opts).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains("ring/b"), "{err}");
    }

    /// A report file from an earlier run must not survive a run that stopped before
    /// writing its own: posted as a pull-request comment it would show the old verdict.
    #[test]
    fn a_stopped_gate_leaves_no_earlier_report_behind() {
        let (_dir, mut opts) = scratch("stale-report", CONFIG, None);
        let dir = opts
            .config
            .as_ref()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let (md, svg) = (dir.join("gate.md"), dir.join("gate.svg"));
        std::fs::write(&md, "### Bench comparison: No performance regression\n").unwrap();
        std::fs::write(&svg, "<svg/>").unwrap();
        opts.markdown = Some(md.clone());
        opts.chart = Some(svg.clone());
        let err = gate(Path::new("/nonexistent"), &opts).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(
            !md.exists() && !svg.exists(),
            "an earlier report survived: {err}"
        );
    }

    /// A threshold whose key matches no gated kernel (a typo, a renamed kernel) would be
    /// ignored, and the kernel it was meant for gated at the default threshold instead.
    #[test]
    fn gate_refuses_thresholds_that_match_no_gated_kernel() {
        let base = r#"{"schema":"tally-bench/1","commit":"c","machine":"m","results":[{"id":"ring/a","instructions":10},{"id":"ring/b","instructions":10}]}"#;
        for (thresholds, unused) in [
            (r#"{"ring/c": 3}"#, Some("ring/c")),
            (r#"{"ring/": 3}"#, Some("ring/")),
            (r#"{"mpc/*": 3, "ring/a": 3}"#, Some("mpc/*")),
            (r#"{"ring/*": 3, "ring/a": 2}"#, None),
        ] {
            let config = format!(
                r#"{{"schema":"tally-bench-config/1","thresholds":{thresholds},"gate":["ring/a","ring/b"]}}"#
            );
            let (_dir, opts) = scratch("unused-threshold", &config, Some(base));
            let err = gate(Path::new("/nonexistent"), &opts).unwrap_err();
            match unused {
                Some(key) => {
                    assert_eq!(err.exit_code(), 2, "{thresholds}: {err}");
                    assert!(err.to_string().contains(key), "{thresholds}: {err}");
                    assert!(err.to_string().contains("thresholds"), "{err}");
                }
                // Keys that all apply get past the check (and then fail to build in a
                // workspace that does not exist).
                None => assert!(!err.to_string().contains("match no kernel"), "{err}"),
            }
        }
    }

    #[test]
    fn committed_gate_thresholds_apply_to_gated_kernels() {
        let root = crate::util::workspace_root();
        let config = Config::load(&root.join(GATE_CONFIG)).unwrap();
        require_thresholds_apply(&config, Path::new(GATE_CONFIG)).unwrap();
    }

    #[test]
    fn gate_refuses_an_empty_gate_list() {
        let base = r#"{"schema":"tally-bench/1","commit":"c","machine":"m","results":[{"id":"ring/a","instructions":10}]}"#;
        for refresh in [false, true] {
            let (_dir, mut opts) = scratch(
                "empty-gate",
                r#"{"schema":"tally-bench-config/1","gate":[]}"#,
                Some(base),
            );
            opts.refresh = refresh;
            let err = gate(Path::new("/nonexistent"), &opts).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(err.to_string().contains("lists no kernels"), "{err}");
        }
    }

    #[test]
    fn gate_verdict_fails_a_regression_and_passes_the_inverse() {
        let config = Config::parse(CONFIG).unwrap();
        let base = counts(&[("ring/a", 1000), ("ring/b", 50), ("other/x", 7)]);
        // ring/a 20 % more instructions: a regression past the 5 % default.
        let head = counts(&[("ring/a", 1200), ("ring/b", 50)]);
        let cmp = judge(&config, &base, &head).unwrap();
        assert!(cmp.has_regression());
        // Swapped, the same pair is an improvement and passes: an inverted comparison
        // fails this test.
        let cmp = judge(&config, &head, &base).unwrap();
        assert!(!cmp.has_regression());
        // Only gated kernels are judged: the baseline's other entries are not rows.
        assert!(
            cmp.rows.iter().all(|r| r.id.starts_with("ring/")),
            "{cmp:?}"
        );
        // Exactly at the threshold passes, one instruction past it fails.
        let cmp = judge(&config, &base, &counts(&[("ring/a", 1050), ("ring/b", 50)])).unwrap();
        assert!(!cmp.has_regression());
        let cmp = judge(&config, &base, &counts(&[("ring/a", 1051), ("ring/b", 50)])).unwrap();
        assert!(cmp.has_regression());
    }

    /// An improvement past the threshold passes, but leaves slack: the baseline keeps the
    /// old count, so a later regression back up to it (and 5 % beyond) would pass. The
    /// gate says so, naming the kernel and the refresh command.
    #[test]
    fn an_improvement_past_the_threshold_asks_for_a_refresh() {
        let config = Config::parse(CONFIG).unwrap();
        let base = counts(&[("ring/a", 1000), ("ring/b", 50)]);
        let cmp = judge(&config, &base, &counts(&[("ring/a", 800), ("ring/b", 50)])).unwrap();
        assert!(!cmp.has_regression());
        let note = stale_baseline_note(&cmp).unwrap();
        for needle in ["ring/a", "-20.0", "--refresh"] {
            assert!(note.contains(needle), "{needle:?} missing from: {note}");
        }
        assert!(!note.contains("ring/b"), "{note}");
        // Within the threshold, nothing to say.
        let cmp = judge(&config, &base, &counts(&[("ring/a", 960), ("ring/b", 50)])).unwrap();
        assert_eq!(stale_baseline_note(&cmp), None);
    }

    #[test]
    fn gate_verdict_refuses_a_gated_kernel_without_a_measurement() {
        let config = Config::parse(CONFIG).unwrap();
        let base = counts(&[("ring/a", 1000), ("ring/b", 50)]);
        let err = judge(&config, &base, &counts(&[("ring/a", 1000)])).unwrap_err();
        assert!(err.to_string().contains("ring/b"), "{err}");
        assert_ne!(err.exit_code(), 0);
        let err = judge(&config, &counts(&[("ring/a", 1000)]), &base).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
    }

    /// `cargo xtask ci` runs what `.ci/run` runs, the way it runs it: `.ci/run` exports
    /// `CI` (`${CI:-true}`), so tests that skip elsewhere (no root, no valgrind, no
    /// io_uring) must run and a missing cargo-deny fails the lint. Without `CI` in its
    /// steps, `cargo xtask ci` passed on a machine where `.ci/run` fails.
    #[test]
    fn ci_steps_run_as_on_ci() {
        let root = crate::util::workspace_root();
        let steps = steps(&root);
        let mut cargo_steps = 0;
        for step in &steps {
            match step {
                Step::Cargo(what, cmd) => {
                    cargo_steps += 1;
                    let ci = cmd
                        .get_envs()
                        .find(|(k, _)| *k == "CI")
                        .and_then(|(_, v)| v);
                    assert!(
                        ci.is_some_and(|v| !v.is_empty()),
                        "step {what:?} runs without CI set"
                    );
                }
                Step::Lint { require_deny } => {
                    assert!(*require_deny, "the lint skips a missing cargo-deny");
                }
                Step::Gate => {}
            }
        }
        assert_eq!(cargo_steps, 4, "{steps:?}");
        assert!(
            matches!(steps.first(), Some(Step::Cargo(what, _)) if what.starts_with("cargo fetch")),
            "the lint's offline cargo-deny needs every locked crate fetched first: {steps:?}"
        );
        assert!(matches!(steps.last(), Some(Step::Gate)), "{steps:?}");
    }

    #[test]
    fn another_cpu_than_the_baselines_is_pointed_out() {
        let base = "Intel(R) Xeon(R) Processor x2, Linux 6.18.44-fc-v669";
        // Same CPU kind, other core count or kernel: comparable, no note.
        assert_eq!(
            machine_note(base, "Intel(R) Xeon(R) Processor x4, Linux 6.8.0"),
            None
        );
        assert_eq!(machine_note(base, base), None);
        let note = machine_note(base, "AMD EPYC 7B13 x2, Linux 6.18.44-fc-v669").unwrap();
        for needle in ["Intel(R) Xeon(R) Processor", "AMD EPYC 7B13", "--refresh"] {
            assert!(note.contains(needle), "{needle:?} missing from: {note}");
        }
    }

    #[test]
    fn committed_gate_config_and_baseline_agree() {
        let root = crate::util::workspace_root();
        let config = Config::load(&root.join(GATE_CONFIG)).unwrap();
        let base = Results::load(&root.join(GATE_BASELINE)).unwrap();
        assert!(!config.gate.is_empty(), "the CI gate must gate something");
        for id in &config.gate {
            assert!(
                base.get(id).and_then(|r| r.instructions).is_some(),
                "{id} is gated but has no baseline count: run `cargo xtask gate --refresh`"
            );
        }
    }
}
