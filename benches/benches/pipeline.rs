//! `tally pipeline` end to end against its `--baseline`, in the same bench run: criterion
//! reports sessions per second (one "element" is one signing session; each sample is one
//! short pipeline run, timed as its elapsed time per completed session), and the bench
//! prints the latency percentiles of every run and the medians with the Tally/baseline ratio.
//! Tally and the baseline run in back-to-back pairs that alternate which goes first (each
//! criterion sample of either bench is one pair), so that machine drift lands on both;
//! the bench also prints the median of the pairs' ratios.
//!
//! It drives the release `tally` binary, which must be built first:
//! `cargo build --release -p tally && cargo bench -p tally-benches --bench pipeline`,
//! exactly as `tally pipeline --json` runs from the command line: a 3-of-5 FROST workload
//! over a veth pair between two namespaces it creates, AF_XDP for Tally and a std UDP
//! socket with frost-secp256k1 and `fdatasync` per signature for the baseline. Needs root
//! (it prints why it skips otherwise). Env: `TALLY_PIPELINE_SECS` (seconds per run,
//! default 2), `TALLY_PIPELINE_STAGES=1` (staged coordinator),
//! `TALLY_PIPELINE_VERIFY` (`signatures` or `shares`).
//!
//! Criterion records the time per session; with `TALLY_BENCH_RESULTS_DIR` set (as
//! `cargo xtask bench` sets it) the figures criterion does not see also go to
//! `pipeline.json` there, for `cargo xtask bench-compare`: `pipeline/{tally,baseline}/p50`
//! and `/p99` (ms, medians over the runs) and `pipeline/tally_vs_baseline` (the median of
//! the back-to-back pairs' sessions/s ratios); see `docs/bench-format.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "bench code"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tally_benches::harness::{Better, Record};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The release `tally` binary next to this bench's executable (`target/release/tally`),
/// or why it is not there. Cargo cannot build it from inside `cargo bench` (the build
/// directory is locked), so it is built first: `cargo build --release -p tally`.
fn tally_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/release/deps/pipeline-<hash> -> target/release/tally
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|release| release.join("tally"))
        .ok_or("no target directory above the bench executable")?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found; build it first with `cargo build --release -p tally`",
            bin.display()
        ))
    }
}

/// One run's numbers.
#[derive(Clone, Copy, Debug)]
struct Run {
    per_session: Duration,
    sessions_per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

fn run(bin: &PathBuf, baseline: bool) -> Run {
    let secs = std::env::var("TALLY_PIPELINE_SECS").unwrap_or_else(|_| "2".to_owned());
    let mut cmd = Command::new(bin);
    cmd.args([
        "pipeline",
        "--json",
        "--quiet",
        "--pool",
        "512",
        "--duration",
        &secs,
    ]);
    if baseline {
        cmd.arg("--baseline");
    } else {
        if std::env::var("TALLY_PIPELINE_STAGES").is_ok_and(|v| v == "1") {
            cmd.arg("--stages");
        }
        if let Ok(v) = std::env::var("TALLY_PIPELINE_VERIFY") {
            cmd.args(["--verify", &v]);
        }
    }
    let out = cmd.output().expect("running tally pipeline");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tally pipeline failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("pipeline JSON");
    assert_eq!(v["accounting_ok"], true, "accounting failed: {v}");
    assert_eq!(
        v["invalid_shares_detected"], v["invalid_shares_injected"],
        "{v}"
    );
    let completed = v["sessions_completed"].as_u64().unwrap().max(1);
    let elapsed = v["elapsed_s"].as_f64().unwrap();
    Run {
        per_session: Duration::from_secs_f64(elapsed / completed as f64),
        sessions_per_s: completed as f64 / elapsed,
        p50_us: v["latency_us"]["p50"].as_u64().unwrap(),
        p99_us: v["latency_us"]["p99"].as_u64().unwrap(),
    }
}

/// Median of the runs (the mean of the middle two for an even count, NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    tally_benches::stats::median(&mut v)
}

fn bench(c: &mut Criterion) {
    if !is_root() {
        println!(
            "pipeline bench skipped: not root, so no network namespaces, veth pair or AF_XDP \
             (run `sudo -E cargo bench -p tally-benches --bench pipeline`)"
        );
        return;
    }
    let bin = match tally_binary() {
        Ok(b) => b,
        Err(why) => {
            println!("pipeline bench skipped: {why}");
            return;
        }
    };
    println!("pipeline bench: driving {}", bin.display());
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    // Tally and the baseline run in back-to-back pairs, taking turns going first, so that
    // a machine drifting over the minutes of runs lands on both alike (criterion would
    // otherwise run every Tally sample before every baseline sample). Every sample of
    // either bench runs one pair and reports its own side. (Replaying the Tally samples'
    // baseline runs does not work: criterion's warm-up repeats the routine until a
    // millisecond of wall clock has passed, and a replay takes none, so the warm-up
    // would use up every replayed run.)
    let runs: Mutex<Vec<(&str, Run)>> = Mutex::new(Vec::new());
    let pairs: Mutex<Vec<(Run, Run)>> = Mutex::new(Vec::new());
    let pair = || {
        let tally_first = pairs.lock().unwrap().len().is_multiple_of(2);
        let (t, base) = if tally_first {
            let t = run(&bin, false);
            (t, run(&bin, true))
        } else {
            let base = run(&bin, true);
            (run(&bin, false), base)
        };
        runs.lock()
            .unwrap()
            .extend([("tally", t), ("baseline", base)]);
        pairs.lock().unwrap().push((t, base));
        (t, base)
    };
    let scale = |r: Run, iters: u64| r.per_session * u32::try_from(iters).unwrap_or(u32::MAX);
    g.bench_function("tally", |b| b.iter_custom(|iters| scale(pair().0, iters)));
    g.bench_function("baseline", |b| {
        b.iter_custom(|iters| scale(pair().1, iters));
    });
    g.finish();
    let pairs = pairs.into_inner().unwrap();
    let runs = runs.into_inner().unwrap();
    let summary = |name: &str| {
        let mine: Vec<Run> = runs
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, r)| *r)
            .collect();
        for r in &mine {
            println!(
                "pipeline/{name}: {:.0} sessions/s, p50 {:.2} ms, p99 {:.2} ms",
                r.sessions_per_s,
                r.p50_us as f64 / 1e3,
                r.p99_us as f64 / 1e3
            );
        }
        (
            median(mine.iter().map(|r| r.sessions_per_s).collect()),
            median(mine.iter().map(|r| r.p50_us as f64 / 1e3).collect()),
            median(mine.iter().map(|r| r.p99_us as f64 / 1e3).collect()),
            mine.len(),
        )
    };
    let (t, tp50, tp99, tn) = summary("tally");
    let (b, bp50, bp99, bn) = summary("baseline");
    let ratios: Vec<f64> = pairs
        .iter()
        .map(|(tally, base)| tally.sessions_per_s / base.sessions_per_s.max(f64::MIN_POSITIVE))
        .collect();
    let paired = median(ratios.clone());
    write_figures(&runs, &ratios);
    println!(
        "pipeline medians: tally {t:.0} sessions/s (p50 {tp50:.2} ms, p99 {tp99:.2} ms, {tn} runs); \
         baseline {b:.0} sessions/s (p50 {bp50:.2} ms, p99 {bp99:.2} ms, {bn} runs); \
         ratio {:.1}x sessions/s; median of the {} back-to-back pairs' ratios {paired:.1}x",
        t / b.max(f64::MIN_POSITIVE),
        pairs.len()
    );
}

/// Writes the figures criterion does not record (latency percentiles of each side, the
/// paired ratio) for `cargo xtask bench`, when it asked for them.
fn write_figures(runs: &[(&str, Run)], ratios: &[f64]) {
    let mut records = Vec::new();
    for name in ["tally", "baseline"] {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, run)| run)
            .collect();
        for (quantile, p99) in [("p50", false), ("p99", true)] {
            let ms: Vec<f64> = mine
                .iter()
                .map(|run| if p99 { run.p99_us } else { run.p50_us } as f64 / 1e3)
                .collect();
            records.extend(Record::from_samples(
                format!("pipeline/{name}/{quantile}"),
                "ms",
                Better::Lower,
                &ms,
            ));
        }
    }
    records.extend(Record::from_samples(
        "pipeline/tally_vs_baseline",
        "x",
        Better::Higher,
        ratios,
    ));
    match tally_benches::harness::write_records("pipeline", &records) {
        Ok(Some(path)) => println!("{} figures written to {}", records.len(), path.display()),
        Ok(None) => {}
        Err(e) => panic!("pipeline: {e}"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
