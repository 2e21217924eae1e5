//! `cargo xtask`: the Tally workspace's automation, in Rust so that it runs wherever
//! cargo runs (matklad's xtask pattern; the alias is in `.cargo/config.toml`).
//!
//! | command | what it does |
//! |---|---|
//! | `lint` | fmt check, clippy `-D warnings`, rustdoc `-D warnings`, cargo-deny (required when `CI` is set), tidy |
//! | `tidy` | the tidy check alone (also the test `tidy::tests::workspace_is_tidy`) |
//! | `bench` | criterion benches and/or callgrind instruction counts into a `tally-bench/1` file |
//! | `bench-compare` | compares two result files or git refs; exit 0 / 1 (regression or failed step) / 2 (bad input, nothing compared) |
//! | `gate` | instruction counts of the configured hot paths against `bench-baseline/instructions.json` |
//! | `ci` | what `.ci/run` runs, with `CI` set as there (`${CI:-true}`) |
//!
//! The library half exists so that integration tests can drive the same code as the
//! binary; it is not meant for use outside this workspace.

pub mod bench;
pub mod chart;
pub mod ci;
pub mod compare;
pub mod config;
pub mod error;
pub mod lint;
pub mod records;
pub mod refs;
pub mod results;
pub mod tidy;
pub mod util;

use std::path::{Path, PathBuf};

use bench::BenchOptions;
use compare::Comparison;
use config::Config;
use error::{Error, Result};
use results::Results;

/// Usage text printed by `cargo xtask help` and on a usage error.
pub const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  lint                      fmt --check, clippy -D warnings, doc -D warnings,
                            cargo deny (required when CI is set), tidy
  tidy                      source policy checks only
  bench [--filter F] [--save FILE] [--instructions | --instructions-only]
                            run criterion benches (and/or count instructions of the
                            icount kernels under callgrind); write a tally-bench/1 file
                            (default FILE: <target>/xtask-bench/latest.json)
  bench-compare --base A --head B [--threshold PCT] [--config FILE]
                [--markdown FILE] [--chart FILE.svg]
                [--filter F] [--rounds N] [--instructions | --instructions-only]
                [--repo DIR]
                            A and B: result files or git refs (refs are built and
                            benched in worktrees, interleaved over N rounds, default 2;
                            refs of the repository DIR, default this workspace;
                            --filter applies to result files too)
                            exit 0: no regression, 1: regression or a failed step,
                            2: bad input (also: no bench measured on both sides)
  gate [--refresh] [--config FILE] [--baseline FILE] [--markdown FILE] [--chart FILE]
                            instruction-count gate against bench-baseline/instructions.json
                            (--refresh rewrites the baseline on purpose); exit codes as
                            bench-compare; never skips (no valgrind: exit 1)
  ci                        everything .ci/run runs, with CI set as there
                            (tests that need root must run: run it as root)
  help                      this text";

/// Pulls `--name VALUE` / `--flag` options out of an argument list.
#[derive(Debug)]
struct Args {
    rest: Vec<String>,
}

impl Args {
    fn value(&mut self, name: &str) -> Result<Option<String>> {
        let Some(i) = self.rest.iter().position(|a| a == name) else {
            if let Some(i) = self
                .rest
                .iter()
                .position(|a| a.starts_with(&format!("{name}=")))
            {
                let a = self.rest.remove(i);
                return Ok(a.split_once('=').map(|(_, v)| v.to_owned()));
            }
            return Ok(None);
        };
        self.rest.remove(i);
        if i < self.rest.len() {
            Ok(Some(self.rest.remove(i)))
        } else {
            Err(Error::bad_input(format!("{name} needs a value\n\n{USAGE}")))
        }
    }

    fn path(&mut self, name: &str) -> Result<Option<PathBuf>> {
        Ok(self.value(name)?.map(PathBuf::from))
    }

    fn flag(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|a| a != name);
        self.rest.len() != before
    }

    fn finish(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::bad_input(format!(
                "unexpected arguments: {}\n\n{USAGE}",
                self.rest.join(" ")
            )))
        }
    }

    /// `--instructions` / `--instructions-only` into (wall, instructions).
    fn modes(&mut self) -> Result<(bool, bool)> {
        let instr = self.flag("--instructions");
        let only = self.flag("--instructions-only");
        if instr && only {
            return Err(Error::bad_input(
                "give either --instructions or --instructions-only, not both",
            ));
        }
        Ok((!only, instr || only))
    }
}

/// Removes the report files an earlier run left at the `--markdown` / `--chart` paths,
/// before this run can stop without writing its own: a stale report (posted as a
/// pull-request comment, say) would show the earlier run's verdict as this one's.
///
/// # Errors
/// `BadInput` when a report path is one of the run's `inputs` (it would be removed, then
/// overwritten); `Failed` when an existing file cannot be removed.
pub fn clear_reports(
    markdown: Option<&Path>,
    chart: Option<&Path>,
    inputs: &[&Path],
) -> Result<()> {
    let same = |a: &Path, b: &Path| {
        std::fs::canonicalize(a)
            .ok()
            .is_some_and(|a| std::fs::canonicalize(b).ok() == Some(a))
    };
    for path in [markdown, chart].into_iter().flatten() {
        if inputs.iter().any(|input| same(input, path)) {
            return Err(Error::bad_input(format!(
                "the report path {} is also an input of this run; write the report to another file",
                path.display()
            )));
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::failed(format!(
                    "cannot remove the earlier report {}: {e}; remove it or pick another path",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Writes the optional Markdown and SVG renderings of a comparison.
///
/// # Errors
/// `Failed` when a file cannot be written.
pub fn write_reports(
    cmp: &Comparison,
    markdown: Option<&Path>,
    chart: Option<&Path>,
) -> Result<()> {
    let write = |path: &Path, text: String| {
        std::fs::write(path, text)
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))
    };
    if let Some(p) = markdown {
        write(p, compare::to_markdown(cmp))?;
        eprintln!("markdown written to {}", p.display());
    }
    if let Some(p) = chart {
        write(p, chart::to_svg(cmp))?;
        eprintln!("chart written to {}", p.display());
    }
    Ok(())
}

/// `bench-compare`: returns whether something regressed.
fn bench_compare(root: &Path, mut args: Args) -> Result<bool> {
    let base = args
        .value("--base")?
        .ok_or_else(|| Error::bad_input(format!("bench-compare needs --base\n\n{USAGE}")))?;
    let head = args
        .value("--head")?
        .ok_or_else(|| Error::bad_input(format!("bench-compare needs --head\n\n{USAGE}")))?;
    let threshold = args
        .value("--threshold")?
        .map(|t| {
            t.trim_end_matches('%')
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    Error::bad_input(format!(
                        "--threshold must be a non-negative percentage, got {t:?}"
                    ))
                })
        })
        .transpose()?;
    let config_path = args.path("--config")?;
    let markdown = args.path("--markdown")?;
    let chart = args.path("--chart")?;
    let filter = args.value("--filter")?;
    let rounds = args
        .value("--rounds")?
        .map(|r| {
            r.parse::<usize>()
                .ok()
                .filter(|n| (1..=50).contains(n))
                .ok_or_else(|| Error::bad_input(format!("--rounds must be 1..=50, got {r:?}")))
        })
        .transpose()?
        .unwrap_or(2);
    let repo = args.path("--repo")?;
    let (wall, instructions) = args.modes()?;
    args.finish()?;
    let inputs: Vec<&Path> = [Path::new(&base), Path::new(&head)]
        .into_iter()
        .chain(config_path.as_deref())
        .collect();
    clear_reports(markdown.as_deref(), chart.as_deref(), &inputs)?;
    let root = match &repo {
        Some(dir) if dir.is_dir() => dir.as_path(),
        Some(dir) => {
            return Err(Error::bad_input(format!(
                "--repo {} is not a directory",
                dir.display()
            )));
        }
        None => root,
    };

    let mut config = match &config_path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(t) = threshold {
        config.threshold_pct = t;
    }
    let base_side = refs::resolve(root, &base)?;
    let head_side = refs::resolve(root, &head)?;
    let opts = BenchOptions {
        filter,
        wall,
        instructions,
        kernels: None,
    };
    let [b, h] = refs::results_for(root, [&base_side, &head_side], &opts, rounds)?;
    // Results measured from refs go through the same checks as files (a zero median or
    // count is refused, not compared).
    let [b, h] = [b, h].map(|r| Results::parse(&r.to_json()));
    let (mut b, mut h) = (b?, h?);
    // Refs are benched with the filter already; result files are filtered here, so that
    // `--filter` means the same for both kinds of side.
    if let Some(f) = opts.filter.as_deref() {
        b.results.retain(|r| r.id.contains(f));
        h.results.retain(|r| r.id.contains(f));
    }
    let cmp = compare::compare(&b, &h, &config);
    print!("{}", compare::to_table(&cmp));
    write_reports(&cmp, markdown.as_deref(), chart.as_deref())?;
    compare::require_compared(&cmp, b.results.len(), h.results.len())?;
    Ok(cmp.has_regression())
}

/// What `command` prints when it exits 1 on a regression: where to look and what to do.
pub fn regression_message(command: &str) -> String {
    let next = if command == "gate" {
        "find the change that did it with `cargo xtask bench-compare --base <last good ref> \
         --head HEAD --instructions-only --filter <kernel>`; if the cost is intended, record it \
         with `cargo xtask gate --refresh` and commit bench-baseline/ saying why \
         (docs/bench-format.md)"
    } else {
        "rerun one bench with `--filter <id>` to confirm it; raise its threshold in a \
         `--config` file only when the cost is intended"
    };
    format!("regression found (exit 1): see the REGRESSED rows above; {next}")
}

/// Runs `cargo xtask ARGS...` and returns the process exit code (0 success / no
/// regression, 1 failure / regression, 2 bad input), after printing any error.
pub fn run(words: Vec<String>) -> u8 {
    let root = util::workspace_root();
    let mut args = Args { rest: words };
    let command = if args.rest.is_empty() {
        String::new()
    } else {
        args.rest.remove(0)
    };
    let outcome: Result<bool> = match command.as_str() {
        "lint" => args
            .finish()
            .and_then(|()| lint::lint(&root))
            .map(|()| false),
        "tidy" => args.finish().and_then(|()| {
            let v = tidy::check(&root);
            for x in &v {
                eprintln!("{x}");
            }
            if v.is_empty() {
                eprintln!("tidy: ok");
                Ok(false)
            } else {
                Err(Error::failed(format!("tidy: {} problems", v.len())))
            }
        }),
        "bench" => (|| {
            let filter = args.value("--filter")?;
            let save = args.path("--save")?;
            let (wall, instructions) = args.modes()?;
            args.finish()?;
            let results = bench::bench(
                &root,
                &BenchOptions {
                    filter,
                    wall,
                    instructions,
                    kernels: None,
                },
            )?;
            let save = match save {
                Some(p) => p,
                None => util::target_dir(&root)?
                    .join("xtask-bench")
                    .join("latest.json"),
            };
            results.save(&save)?;
            for r in &results.results {
                let wall = r
                    .wall
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), compare::fmt_median);
                let instr = r
                    .instructions
                    .map_or_else(|| "-".to_owned(), |i| format!("{i} instr"));
                println!("{:<48} {wall:>12} {instr:>16}", r.id);
            }
            eprintln!(
                "{} results written to {}",
                results.results.len(),
                save.display()
            );
            Ok(false)
        })(),
        "bench-compare" => bench_compare(&root, args),
        "gate" => (|| {
            let opts = ci::GateOptions {
                refresh: args.flag("--refresh"),
                config: args.path("--config")?,
                baseline: args.path("--baseline")?,
                markdown: args.path("--markdown")?,
                chart: args.path("--chart")?,
            };
            args.finish()?;
            ci::gate(&root, &opts)
        })(),
        "ci" => args.finish().and_then(|()| ci::ci(&root)).map(|()| false),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(false)
        }
        other => Err(Error::bad_input(format!(
            "unknown command {other:?}\n\n{USAGE}"
        ))),
    };
    match outcome {
        Ok(false) => 0,
        Ok(true) => {
            eprintln!("{}", regression_message(&command));
            1
        }
        Err(e) => {
            eprintln!("xtask: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regression exit says what to do next, not only that something regressed: for
    /// the gate (what CI runs) how to find the cause and how to record an intended cost.
    #[test]
    fn a_regression_says_what_to_do() {
        let gate = regression_message("gate");
        for needle in [
            "REGRESSED",
            "bench-compare",
            "--refresh",
            "bench-baseline/",
            "exit 1",
        ] {
            assert!(gate.contains(needle), "{needle:?} missing from: {gate}");
        }
        let cmp = regression_message("bench-compare");
        for needle in ["REGRESSED", "--filter", "exit 1"] {
            assert!(cmp.contains(needle), "{needle:?} missing from: {cmp}");
        }
    }
}
