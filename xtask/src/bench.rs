//! `cargo xtask bench`: runs the criterion benches of `tally-benches` and, with
//! `--instructions`, counts instructions per iteration of the `icount` kernels under
//! callgrind; writes one `tally-bench/1` results file.
//!
//! Criterion's own JSON (`<criterion home>/<id>/new/{benchmark,estimates}.json`) is read
//! instead of its terminal output; the benches with their own `main` write records files
//! into the directory named by [`records::RESULTS_DIR_ENV`] (see [`crate::records`]). Instruction counts use two callgrind runs of one kernel
//! at different iteration counts, so that start-up and set-up cancel.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::records::{self, RECORDS_DIR, RESULTS_DIR_ENV};
use crate::results::{BenchResult, Results, WallClock};
use crate::util::{self, Progress};

/// The package that holds the criterion benches and the `icount` binary.
pub const BENCH_PACKAGE: &str = "tally-benches";

/// What `bench` measures.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Only benches and kernels whose id contains this text.
    pub filter: Option<String>,
    /// Run the criterion benches (wall clock).
    pub wall: bool,
    /// Count instructions of the kernels.
    pub instructions: bool,
    /// Count exactly these kernels (the gate's list) instead of every listed kernel.
    pub kernels: Option<Vec<String>>,
}

/// Escapes `text` so that criterion's regex filter matches it literally (as a substring).
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Compiled bench executables of `tally-benches`, built in `root` (with
/// `CARGO_TARGET_DIR=target_dir` when given): `(bench name, executable)`.
///
/// # Errors
/// `Failed` when the build fails.
pub fn build_bench_exes(root: &Path, target_dir: Option<&Path>) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = util::cargo();
    cmd.current_dir(root).args([
        "bench",
        "--no-run",
        "--message-format=json-render-diagnostics",
        "-p",
        BENCH_PACKAGE,
        "--benches",
    ]);
    if let Some(t) = target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    artifacts(&mut cmd, "bench")
}

/// Builds the release `icount` binary in `root` and returns its path.
///
/// # Errors
/// `Failed` when the build fails or produces no `icount` executable.
pub fn build_icount(root: &Path, target_dir: Option<&Path>) -> Result<PathBuf> {
    let mut cmd = icount_build(root, target_dir);
    artifacts(&mut cmd, "bin")?
        .into_iter()
        .find(|(name, _)| name == "icount")
        .map(|(_, exe)| exe)
        .ok_or_else(|| {
            Error::failed(format!(
                "cargo built no `icount` executable; {BENCH_PACKAGE} needs its `[[bin]] name = \"icount\"` (benches/Cargo.toml, src/bin/icount.rs)"
            ))
        })
}

/// The `cargo build` command of the release `icount` binary, with rustflags pinned to
/// none: `CARGO_ENCODED_RUSTFLAGS=""` outranks `RUSTFLAGS` and every cargo config's
/// `rustflags`. Counts are compared with a committed baseline that CI builds without
/// extra flags, so a `RUSTFLAGS=-Ctarget-cpu=native` in the caller's environment must
/// not change the code that is counted (a baseline refreshed with it would record code
/// CI never builds).
fn icount_build(root: &Path, target_dir: Option<&Path>) -> Command {
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            eprintln!(
                "note: {var}={} is not used for `icount`: instruction counts are compared with a baseline built without extra rustflags",
                v.to_string_lossy()
            );
        }
    }
    let mut cmd = util::cargo();
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "");
    cmd.current_dir(root).args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
        "-p",
        BENCH_PACKAGE,
        "--bin",
        "icount",
    ]);
    if let Some(t) = target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    cmd
}

/// Runs a cargo build with JSON messages (stderr passes through, so the user sees
/// cargo's progress) and returns the executables of targets of `kind`.
fn artifacts(cmd: &mut Command, kind: &str) -> Result<Vec<(String, PathBuf)>> {
    eprintln!("$ {}", util::show(cmd));
    cmd.stderr(std::process::Stdio::inherit());
    let shown = util::show(cmd);
    let out = cmd
        .output()
        .map_err(|e| Error::failed(format!("cannot start `{shown}`: {e}")))?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "`{shown}` exited with {}: see cargo's errors above, fix the build, then rerun",
            out.status
        )));
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg.get("reason").and_then(Value::as_str) != Some("compiler-artifact") {
            continue;
        }
        let Some(exe) = msg.get("executable").and_then(Value::as_str) else {
            continue;
        };
        let target = msg.get("target");
        let is_kind = target
            .and_then(|t| t.get("kind"))
            .and_then(Value::as_array)
            .is_some_and(|k| k.iter().any(|x| x.as_str() == Some(kind)));
        let name = target.and_then(|t| t.get("name")).and_then(Value::as_str);
        if let (true, Some(name)) = (is_kind, name) {
            found.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    Ok(found)
}

/// Runs each bench executable in criterion's bench mode with `filter`, writing into
/// `criterion_home`; the benches with their own `main` write their records files into
/// `<criterion_home>/tally-bench-records` ([`RESULTS_DIR_ENV`]). `package_dir` is the
/// working directory (`cargo bench` uses the package directory).
///
/// # Errors
/// `Failed` when a bench executable fails.
pub fn run_criterion(
    exes: &[(String, PathBuf)],
    filter: Option<&str>,
    criterion_home: &Path,
    package_dir: &Path,
    progress: &mut Progress,
    label: &str,
) -> Result<()> {
    for (name, exe) in exes {
        progress.step(&format!("{label}criterion bench `{name}`"));
        let mut cmd = Command::new(exe);
        cmd.current_dir(package_dir)
            .env("CRITERION_HOME", criterion_home)
            .env(RESULTS_DIR_ENV, criterion_home.join(RECORDS_DIR))
            .arg("--bench");
        if let Some(f) = filter {
            cmd.arg(regex_escape(f));
        }
        util::run(&mut cmd)?;
    }
    Ok(())
}

/// Reads every `new/estimates.json` under `criterion_home` (only those written at or
/// after `since`, when given) into wall-clock results keyed by criterion's full id.
///
/// # Errors
/// `Failed` when a criterion file is unreadable or lacks the fields used.
pub fn collect_criterion(
    criterion_home: &Path,
    since: Option<SystemTime>,
) -> Result<Vec<BenchResult>> {
    let mut found = Vec::new();
    let mut stack = vec![criterion_home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let estimates = path.join("estimates.json");
            let benchmark = path.join("benchmark.json");
            // A bench may itself be called `new` (`ring/new/new/...`): a `new` directory
            // without criterion's files is searched like any other.
            if path.file_name().is_some_and(|n| n == "new")
                && estimates.is_file()
                && benchmark.is_file()
            {
                if let Some(since) = since {
                    let fresh = std::fs::metadata(&estimates)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t >= since);
                    if !fresh {
                        continue;
                    }
                }
                found.push(read_criterion(&benchmark, &estimates)?);
            } else {
                stack.push(path);
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::failed(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::failed(format!("{} is not valid JSON: {e}", path.display())))
}

fn read_criterion(benchmark: &Path, estimates: &Path) -> Result<BenchResult> {
    let b = read_json(benchmark)?;
    let id = b
        .get("full_id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::failed(format!("{} has no `full_id`", benchmark.display())))?
        .to_owned();
    let e = read_json(estimates)?;
    let median = e.get("median");
    let num = |v: Option<&Value>, what: &str| {
        v.and_then(Value::as_f64)
            .ok_or_else(|| Error::failed(format!("{} has no `{what}`", estimates.display())))
    };
    let ci = median.and_then(|m| m.get("confidence_interval"));
    let median_ns = num(
        median.and_then(|m| m.get("point_estimate")),
        "median.point_estimate",
    )?;
    let low_ns = num(
        ci.and_then(|c| c.get("lower_bound")),
        "median.confidence_interval.lower_bound",
    )?;
    let high_ns = num(
        ci.and_then(|c| c.get("upper_bound")),
        "median.confidence_interval.upper_bound",
    )?;
    Ok(BenchResult {
        id,
        wall: Some(WallClock::ns(
            median_ns,
            low_ns.min(median_ns),
            high_ns.max(median_ns),
        )),
        instructions: None,
    })
}

/// Kernel ids `icount --list` prints.
///
/// # Errors
/// `Failed` when `icount` fails.
pub fn list_kernels(icount: &Path) -> Result<Vec<String>> {
    let out = util::output(Command::new(icount).arg("--list"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Total instructions callgrind counts for `program args.. iters`.
///
/// # Errors
/// `Failed` when valgrind is missing, the program fails, or callgrind prints no total.
pub fn callgrind_total(program: &Path, args: &[OsString], iters: u64) -> Result<u64> {
    callgrind_total_with("valgrind".as_ref(), program, args, iters)
}

/// [`callgrind_total`] with the valgrind executable `valgrind`.
fn callgrind_total_with(
    valgrind: &std::ffi::OsStr,
    program: &Path,
    args: &[OsString],
    iters: u64,
) -> Result<u64> {
    let mut cmd = callgrind_command(valgrind, program, args, iters);
    let shown = util::show(&cmd);
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::failed(
                "valgrind is not installed; install it with `apt-get install -y valgrind`",
            )
        } else {
            Error::failed(format!("cannot start `{shown}`: {e}"))
        }
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Error::failed(format!(
            "`{shown}` exited with {}:\n{}",
            out.status,
            stderr.trim_end()
        )));
    }
    parse_collected(&stderr).ok_or_else(|| {
        Error::failed(format!(
            "callgrind printed no `Collected` total for `{shown}`:\n{stderr}"
        ))
    })
}

/// The callgrind command line that counts `program args.. iters`: the whole run, from
/// the first instruction, whatever the caller's valgrind settings say. `VALGRIND_OPTS` is
/// dropped, and so are the rc files `~/.valgrindrc` and `./.valgrindrc`: valgrind reads
/// them only with `HOME` set, which it is not here, and the run starts in `/`. Command-line
/// options do not override them all: a `--toggle-collect=<fn>` (or `--zero-before`) there
/// adds to ours and counts part of the run only, a count that passes the gate whatever the
/// rest of the code does.
fn callgrind_command(
    valgrind: &std::ffi::OsStr,
    program: &Path,
    args: &[OsString],
    iters: u64,
) -> Command {
    let program = std::path::absolute(program).unwrap_or_else(|_| program.to_path_buf());
    let mut cmd = Command::new(valgrind);
    cmd.env_remove("VALGRIND_OPTS")
        .env_remove("HOME")
        .current_dir("/")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--cache-sim=no",
            "--branch-sim=no",
            "--collect-atstart=yes",
            "--instr-atstart=yes",
        ])
        .arg(&program)
        .args(args)
        .arg(iters.to_string());
    cmd
}

/// The instruction total on callgrind's `==PID== Collected : N [more events]` line (Ir,
/// the first event, is the first number).
pub fn parse_collected(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .rev()
        .filter_map(|l| l.split_once("Collected :"))
        .find_map(|(_, n)| n.split_whitespace().next()?.parse().ok())
}

/// Iteration count of the first (reference) callgrind run.
const ITERS_REF: u64 = 10;
/// Instructions the second measured run should add on top of the reference run.
const TARGET_EXTRA_INSTRUCTIONS: u64 = 20_000_000;

/// Instructions per iteration of `program args.. ITERS`: callgrind at 10 and 20
/// iterations estimates the cost, then a third run at `10 + n` iterations (with `n` chosen
/// to add about 20 M instructions, 10 ≤ n ≤ 200 000) gives
/// `(I(10 + n) - I(10)) / n`, rounded. Start-up and set-up cancel in the difference.
///
/// # Errors
/// `Failed` when a run fails (a kernel exits non-zero when its checksum is wrong), the
/// counts shrink with more iterations (a kernel that is not deterministic), or an
/// iteration costs no instructions (work optimised away or skipped).
pub fn instructions_per_iter(program: &Path, args: &[OsString]) -> Result<u64> {
    let base = callgrind_total(program, args, ITERS_REF)?;
    let probe = callgrind_total(program, args, ITERS_REF * 2)?;
    let per = probe.checked_sub(base).ok_or_else(|| {
        Error::failed(format!(
            "{} {:?}: more iterations counted fewer instructions ({probe} < {base}); the kernel is not deterministic",
            program.display(),
            args
        ))
    })? / ITERS_REF;
    let n = (TARGET_EXTRA_INSTRUCTIONS / per.max(1)).clamp(10, 200_000);
    let total = callgrind_total(program, args, ITERS_REF + n)?;
    let extra = total.checked_sub(base).ok_or_else(|| {
        Error::failed(format!(
            "{} {:?}: more iterations counted fewer instructions; the kernel is not deterministic",
            program.display(),
            args
        ))
    })?;
    let per_iter = (extra + n / 2) / n;
    if per_iter == 0 {
        // A count of 0 would pass every comparison as "improved": the kernel's loop was
        // optimised away or skipped its work.
        return Err(Error::failed(format!(
            "{} {:?}: no instructions per iteration ({extra} over {n} iterations); the kernel's work was optimised away or skipped (feed its inputs through std::hint::black_box and return a checksum)",
            program.display(),
            args
        )));
    }
    Ok(per_iter)
}

/// Counts instructions of `kernels` with `icount`, one progress step each.
///
/// # Errors
/// As [`instructions_per_iter`].
pub fn count_kernels(
    icount: &Path,
    kernels: &[String],
    progress: &mut Progress,
    label: &str,
) -> Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for id in kernels {
        progress.step(&format!("{label}callgrind `{id}`"));
        let n = instructions_per_iter(icount, &[OsString::from(id)])?;
        eprintln!("    {id}: {n} instructions/iteration");
        counts.insert(id.clone(), n);
    }
    Ok(counts)
}

/// Merges instruction counts into wall-clock results (a kernel without a criterion twin
/// becomes an instruction-only result).
pub fn merge(mut wall: Vec<BenchResult>, counts: &BTreeMap<String, u64>) -> Vec<BenchResult> {
    for (id, n) in counts {
        if let Some(r) = wall.iter_mut().find(|r| &r.id == id) {
            r.instructions = Some(*n);
        } else {
            wall.push(BenchResult {
                id: id.clone(),
                wall: None,
                instructions: Some(*n),
            });
        }
    }
    wall.sort_by(|a, b| a.id.cmp(&b.id));
    wall
}

/// The kernels to count: the explicit list (each must exist) or every listed kernel
/// matching the filter.
///
/// # Errors
/// `BadInput` when an explicitly requested kernel is not in `icount --list`.
pub fn select_kernels(available: &[String], opts: &BenchOptions) -> Result<Vec<String>> {
    if let Some(wanted) = &opts.kernels {
        for id in wanted {
            if !available.contains(id) {
                return Err(Error::bad_input(format!(
                    "kernel {id:?} is not in `icount --list` ({}); fix the gate list in the config file",
                    if available.is_empty() {
                        "which is empty".to_owned()
                    } else {
                        available.join(", ")
                    }
                )));
            }
        }
        return Ok(wanted.clone());
    }
    Ok(available
        .iter()
        .filter(|id| opts.filter.as_deref().is_none_or(|f| id.contains(f)))
        .cloned()
        .collect())
}

/// Runs `cargo xtask bench` on the workspace at `root`.
///
/// # Errors
/// `Failed` when a build or run fails; `BadInput` for an unknown gate kernel.
pub fn bench(root: &Path, opts: &BenchOptions) -> Result<Results> {
    let target = util::target_dir(root)?;
    let mut wall = Vec::new();
    if opts.wall {
        let exes = build_bench_exes(root, None)?;
        let mut progress = Progress::new("bench", exes.len());
        wall = wall_results(
            &target,
            &exes,
            opts.filter.as_deref(),
            &root.join("benches"),
            &mut progress,
        )?;
    }
    let mut counts = BTreeMap::new();
    if opts.instructions {
        let icount = build_icount(root, None)?;
        let kernels = select_kernels(&list_kernels(&icount)?, opts)?;
        let mut progress = Progress::new("kernel", kernels.len());
        counts = count_kernels(&icount, &kernels, &mut progress, "")?;
    }
    let results = merge(wall, &counts);
    require_measured(&results, opts)?;
    Ok(Results {
        commit: util::commit_of(root),
        machine: util::machine(),
        created_unix_s: Some(util::now_unix_s()),
        results,
    })
}

/// Runs the criterion benches `exes` and returns the estimates they wrote, in a
/// criterion home of this process's own (`<target>/xtask-bench/criterion-<pid>`, removed
/// afterwards). Not the shared `<target>/criterion`: a `cargo bench` on the same target
/// directory would write its estimates there during the run, and no file time tells
/// them apart (file times come from a coarse clock, so even this run's first files can
/// look older than its start).
///
/// # Errors
/// As [`run_criterion_fresh`].
fn wall_results(
    target: &Path,
    exes: &[(String, PathBuf)],
    filter: Option<&str>,
    package_dir: &Path,
    progress: &mut Progress,
) -> Result<Vec<BenchResult>> {
    let home = target
        .join("xtask-bench")
        .join(format!("criterion-{}", std::process::id()));
    let found = run_criterion_fresh(exes, filter, &home, package_dir, progress, "");
    let _ = std::fs::remove_dir_all(&home);
    found
}

/// [`run_criterion`] into `home`, emptied first, then every estimate and record found
/// there: only this run's. Records are kept when their id contains `filter`.
///
/// # Errors
/// `Failed` when `home` cannot be emptied (its old estimates would be read as new), or
/// as [`run_criterion`], [`collect_criterion`], [`records::collect_records`] and
/// [`records::merge_figures`].
pub fn run_criterion_fresh(
    exes: &[(String, PathBuf)],
    filter: Option<&str>,
    home: &Path,
    package_dir: &Path,
    progress: &mut Progress,
    label: &str,
) -> Result<Vec<BenchResult>> {
    match std::fs::remove_dir_all(home) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot empty the criterion directory {}: {e}; remove it by hand (its estimates would be read as this run's)",
                home.display()
            )));
        }
    }
    run_criterion(exes, filter, home, package_dir, progress, label)?;
    let estimates = collect_criterion(home, None)?;
    let figures = records::collect_records(&home.join(RECORDS_DIR), filter)?;
    records::merge_figures(estimates, figures)
}

/// Refuses a run that measured nothing: an empty results file would only make a later
/// comparison vacuous.
///
/// # Errors
/// `BadInput` naming the filter when no bench or kernel was measured.
pub fn require_measured(results: &[BenchResult], opts: &BenchOptions) -> Result<()> {
    if !results.is_empty() {
        return Ok(());
    }
    Err(Error::bad_input(match opts.filter.as_deref() {
        Some(f) => format!(
            "nothing was measured: no bench or kernel id contains --filter {f:?} (`cargo run -p {BENCH_PACKAGE} --bin icount -- --list` lists the kernel ids)"
        ),
        None => "nothing was measured: there are no benches or kernels to run".to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::ScratchDir;

    #[test]
    fn parses_callgrind_total() {
        let stderr = "==1== Callgrind, a call-graph generating cache profiler\n==1== Events    : Ir\n==1== Collected : 1234567\n==1==\n==1== I   refs:      1,234,567\n";
        assert_eq!(parse_collected(stderr), Some(1_234_567));
        assert_eq!(parse_collected("nothing"), None);
        // Extra events (`--collect-systime=yes` from a ~/.valgrindrc) follow Ir on the
        // line: the total is still the first number, not "no total".
        let stderr = "==1== Events    : Ir sysCount sysTime\n==1== Collected : 127000 57 97\n";
        assert_eq!(parse_collected(stderr), Some(127_000));
    }

    /// What callgrind counts must not depend on the caller's valgrind settings:
    /// `VALGRIND_OPTS=--toggle-collect=<fn>` counts only part of the run (a partial count
    /// passes the gate whatever the rest of the code does) and `--collect-atstart=no`
    /// counts nothing. The environment variable is dropped, and so are the rc files
    /// (`~/.valgrindrc`, `./.valgrindrc`): a `--toggle-collect` there is not overridden by
    /// any command-line option (it counted 331,018 instead of 580,413 instructions of
    /// `icount ring_batch256/tally 100`), and valgrind reads neither without `HOME`.
    #[test]
    fn callgrind_ignores_the_callers_valgrind_options() {
        let cmd = callgrind_command("valgrind".as_ref(), Path::new("/bin/true"), &[], 10);
        for var in ["VALGRIND_OPTS", "HOME"] {
            let dropped = cmd.get_envs().any(|(k, v)| k == var && v.is_none());
            assert!(dropped, "{var} is passed on: {}", util::show(&cmd));
        }
        assert_eq!(
            cmd.get_current_dir(),
            Some(Path::new("/")),
            "a ./.valgrindrc of the caller's directory is read"
        );
        let args: Vec<_> = cmd.get_args().collect();
        for pinned in ["--collect-atstart=yes", "--instr-atstart=yes"] {
            assert!(
                args.iter().any(|a| *a == pinned),
                "{pinned} missing: {}",
                util::show(&cmd)
            );
        }
    }

    #[test]
    fn reads_criterion_estimates() {
        let scratch = ScratchDir::new("criterion").unwrap();
        let home = scratch.path();
        let write = |dir: &str, full_id: &str, median: f64| {
            let d = home.join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("benchmark.json"),
                format!(r#"{{"group_id":"g","function_id":"f","value_str":null,"throughput":null,"full_id":"{full_id}","directory_name":"{dir}","title":"{full_id}"}}"#),
            )
            .unwrap();
            std::fs::write(
                d.join("estimates.json"),
                format!(
                    r#"{{"mean":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0}},"point_estimate":1.5,"standard_error":0.1}},
                       "median":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{lo},"upper_bound":{hi}}},"point_estimate":{median},"standard_error":0.1}},
                       "median_abs_dev":null,"slope":null,"std_dev":null}}"#,
                    lo = median - 1.0,
                    hi = median + 2.0
                ),
            )
            .unwrap();
        };
        write("grp/fast/new", "grp/fast", 10.0);
        write("grp/param/64/new", "grp/param/64", 100.0);
        write("grp/fast/base", "grp/fast", 999.0); // criterion's previous run: ignored
        write("grp/new/new", "grp/new", 5.0); // a bench called `new`
        std::fs::create_dir_all(home.join("report")).unwrap();
        let found = collect_criterion(home, None).unwrap();
        let ids: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["grp/fast", "grp/new", "grp/param/64"]);
        assert_eq!(found[0].wall, Some(WallClock::ns(10.0, 9.0, 12.0)));
        // Only estimates written since a point in time.
        let later = SystemTime::now() + std::time::Duration::from_hours(1);
        assert!(collect_criterion(home, Some(later)).unwrap().is_empty());
    }

    /// Without valgrind the count fails (exit 1) with the install command, on CI or not:
    /// nothing in the gate turns a missing valgrind into a skip.
    #[test]
    fn missing_valgrind_fails_with_the_install_command() {
        let err = callgrind_total_with(
            "/nonexistent/valgrind".as_ref(),
            Path::new("/bin/true"),
            &[],
            10,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.to_string().contains("apt-get install -y valgrind"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_run_is_refused() {
        let opts = BenchOptions {
            filter: Some("typo/".into()),
            ..BenchOptions::default()
        };
        let err = require_measured(&[], &opts).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("typo/"), "{err}");
        let one = BenchResult {
            id: "g/x".into(),
            wall: None,
            instructions: Some(1),
        };
        assert!(require_measured(&[one], &opts).is_ok());
    }

    /// Counts are compared with a committed baseline that CI rebuilds without extra
    /// rustflags: a `RUSTFLAGS=-Ctarget-cpu=native` (or a `build.rustflags` in a user's
    /// cargo config) must not change the code that is counted, or a refreshed baseline
    /// records code CI never builds. `CARGO_ENCODED_RUSTFLAGS` outranks both.
    #[test]
    fn icount_is_built_without_the_callers_rustflags() {
        let cmd = icount_build(Path::new("/nonexistent"), None);
        let pinned = cmd
            .get_envs()
            .find(|(k, _)| *k == "CARGO_ENCODED_RUSTFLAGS")
            .and_then(|(_, v)| v);
        assert_eq!(
            pinned,
            Some(std::ffi::OsStr::new("")),
            "{}",
            util::show(&cmd)
        );
    }

    /// cargo's stderr goes to the terminal, so the error cannot quote it: it must say
    /// where the compiler errors are and what to do, not end in an empty quote.
    #[test]
    fn a_failed_build_points_at_cargos_errors() {
        let err = artifacts(&mut Command::new("false"), "bin").unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let msg = err.to_string();
        assert!(
            msg.contains("errors above") && !msg.trim_end().ends_with(':'),
            "{msg}"
        );
    }

    /// A stand-in bench executable: writes criterion's files for `g/mine` into its
    /// `CRITERION_HOME`, and, as a `cargo bench` of another engineer on the same target
    /// directory would meanwhile, `g/foreign` into `<target>/criterion`.
    fn fake_bench(dir: &Path, target: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let estimates = r#"{"median":{"point_estimate":5.0,"confidence_interval":{"lower_bound":4.0,"upper_bound":6.0}}}"#;
        let write = |home: &str, id: &str| {
            format!(
                "mkdir -p \"{home}/{id}/new\"\necho '{{\"full_id\":\"{id}\"}}' > \"{home}/{id}/new/benchmark.json\"\necho '{estimates}' > \"{home}/{id}/new/estimates.json\"\n"
            )
        };
        // And, as a bench with its own `main` does, a records file with a figure.
        let records = r#"{"schema":"tally-bench-records/1","bench":"own_main","records":[{"id":"own_main/figure","value":5,"low":4,"high":6,"unit":"rec/s","better":"higher"}]}"#;
        let script = format!(
            "#!/bin/sh\n{}{}mkdir -p \"$TALLY_BENCH_RESULTS_DIR\"\necho '{records}' > \"$TALLY_BENCH_RESULTS_DIR/own_main.json\"\n",
            write("$CRITERION_HOME", "g/mine"),
            write(&target.join("criterion").display().to_string(), "g/foreign")
        );
        let exe = dir.join("fake-bench");
        std::fs::write(&exe, script).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        exe
    }

    /// Only the estimates this run's executables wrote are its results: not those another
    /// process wrote into the shared `<target>/criterion` during the run, nor those an
    /// earlier run left.
    #[test]
    fn wall_results_are_this_runs_own() {
        let scratch = ScratchDir::new("wall").unwrap();
        let dir = scratch.path();
        let target = dir.join("target");
        std::fs::create_dir_all(&target).unwrap();
        let exe = fake_bench(dir, &target);
        let mut progress = Progress::new("bench", 2);
        let found = wall_results(
            &target,
            &[("fake".to_owned(), exe)],
            None,
            dir,
            &mut progress,
        )
        .unwrap();
        let ids: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["g/mine", "own_main/figure"]);
        // The figure keeps its unit and direction.
        assert_eq!(
            found[1].wall.as_ref().map(|w| w.unit.better()),
            Some(crate::results::Better::Higher)
        );
        // A home of its own that an earlier run filled (bench-compare's rounds reuse
        // theirs) is emptied first, records included.
        let home = dir.join("home");
        std::fs::create_dir_all(home.join(RECORDS_DIR)).unwrap();
        std::fs::write(
            home.join(RECORDS_DIR).join("stale.json"),
            r#"{"schema":"tally-bench-records/1","records":[{"id":"stale/figure","value":1,"low":1,"high":1,"unit":"us","better":"lower"}]}"#,
        )
        .unwrap();
        std::fs::create_dir_all(home.join("g/stale/new")).unwrap();
        for f in ["benchmark.json", "estimates.json"] {
            std::fs::copy(
                target.join("criterion/g/foreign/new").join(f),
                home.join("g/stale/new").join(f),
            )
            .unwrap();
        }
        let exe = dir.join("fake-bench");
        let found = run_criterion_fresh(
            &[("fake".to_owned(), exe)],
            None,
            &home,
            dir,
            &mut progress,
            "",
        )
        .unwrap();
        let ids: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["g/mine", "own_main/figure"]);
        // `--filter` reaches the records too (the bench itself runs whole).
        let exe = dir.join("fake-bench");
        let found = run_criterion_fresh(
            &[("fake".to_owned(), exe)],
            Some("g/"),
            &home,
            dir,
            &mut progress,
            "",
        )
        .unwrap();
        let ids: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["g/mine"]);
    }

    #[test]
    fn escapes_regex_metacharacters() {
        assert_eq!(regex_escape("ring/push.pop(8)"), r"ring/push\.pop\(8\)");
    }

    #[test]
    fn selects_kernels() {
        let avail = vec!["ring/a".to_owned(), "mpc/b".to_owned()];
        let opts = BenchOptions {
            filter: Some("ring".into()),
            ..BenchOptions::default()
        };
        assert_eq!(
            select_kernels(&avail, &opts).unwrap(),
            vec!["ring/a".to_owned()]
        );
        let opts = BenchOptions {
            kernels: Some(vec!["nope".into()]),
            ..BenchOptions::default()
        };
        assert_eq!(select_kernels(&avail, &opts).unwrap_err().exit_code(), 2);
    }
}
