#![doc = include_str!("../README.md")]

#[cfg(feature = "baseline")]
mod baseline;
mod coordinator;
mod generator;
mod journal_cmd;
mod net;
mod pipeline;
mod probe;
mod report;
mod signer;
mod sys;
mod wire;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::coordinator::VerifyMode;
use crate::pipeline::{Env, Settings, TransportArg, Workload};

/// Tally: FROST signing coordinator pipeline over kernel bypass, batch verification and a
/// group-commit journal; and a probe of the machine's low-latency settings.
#[derive(Debug, Parser)]
#[command(name = "tally", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the end-to-end FROST coordinator pipeline against a built-in load generator.
    Pipeline(PipelineArgs),
    /// Report what this machine offers for low latency, and what to change.
    Probe {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check or print a journal directory.
    Journal {
        #[command(subcommand)]
        cmd: JournalCmd,
    },
}

#[derive(Debug, Subcommand)]
enum JournalCmd {
    /// Check every record (exit status 1 on damage, 2 when the directory holds no journal).
    Verify {
        /// Journal directory.
        dir: PathBuf,
    },
    /// Print records (sequence number, length, first bytes).
    Dump {
        /// Journal directory.
        dir: PathBuf,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Debug, clap::Args)]
#[allow(clippy::struct_excessive_bools, reason = "command-line flags")]
struct PipelineArgs {
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Signing threshold t.
    #[arg(long, default_value_t = 3)]
    threshold: u16,
    /// Number of signers n.
    #[arg(long, default_value_t = 5)]
    signers: u16,
    /// Signing sessions in flight at once (the generator is closed-loop: median latency is
    /// about window / throughput). The default keeps three verification batches in flight,
    /// so the coordinator verifies one while the previous is journaled and answered.
    #[arg(long, default_value_t = 48)]
    window: usize,
    /// Fraction of signature shares replaced by invalid ones (0..=1).
    #[arg(long, default_value_t = 0.01)]
    invalid_ratio: f64,
    /// Coordinator as two threads (network+crypto, journal) handing off through `SpscRing`,
    /// instead of run-to-completion on one thread.
    #[arg(long)]
    stages: bool,
    /// What the coordinator verifies across sessions in one batch: every session's
    /// aggregate signature, checking shares only where it fails (default), or every share.
    #[arg(long, value_enum, default_value_t = VerifyMode::Signatures)]
    verify: VerifyMode,
    /// Run the baseline (std sockets, frost-secp256k1 per share, fdatasync per signature)
    /// instead of Tally.
    #[arg(long, conflicts_with = "compare")]
    baseline: bool,
    /// Run Tally and then the baseline with the same workload, and compare.
    #[arg(long)]
    compare: bool,
    /// Transport.
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    transport: TransportArg,
    /// Pre-signed sessions in the pool (reused under fresh session identifiers).
    #[arg(long, default_value_t = 4096)]
    pool: usize,
    /// Most sessions verified in one batch.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Journal directory (its `tally/` and `baseline/` subdirectories are replaced);
    /// default: a temporary directory removed afterwards.
    #[arg(long)]
    journal_dir: Option<PathBuf>,
    /// Keep the temporary journal directory.
    #[arg(long)]
    keep_journal: bool,
    /// Every N sessions, also send four bad datagrams (truncated, unknown session,
    /// non-member signer, replayed share); 0 = never.
    #[arg(long, default_value_t = 0)]
    bad_wire_every: u64,
    /// Do not pin threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Write the latency distribution(s) as SVG to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

/// Longest `--duration` (seconds): about 11.6 days, far inside what `Instant` can add.
const MAX_DURATION_S: f64 = 1e6;
/// Most sessions in flight (`--window`). The coordinator reserves a table of four times
/// this many sessions of a few KiB each up front: 16,384 keeps that under 1 GiB.
const MAX_WINDOW: usize = 1 << 14;
/// Most sessions per verification batch (`--max-batch`).
const MAX_BATCH: usize = 4096;
/// Most pre-signed sessions (`--pool`), all signed before the timed run (a few KiB each).
const MAX_POOL: usize = 1 << 16;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Pipeline(a) => pipeline_cmd(&a),
        Cmd::Probe { json } => probe::run(json),
        Cmd::Journal { cmd } => match cmd {
            JournalCmd::Verify { dir } => journal_cmd::verify(&dir),
            JournalCmd::Dump { dir, limit } => journal_cmd::dump(&dir, limit.unwrap_or(u64::MAX)),
        },
    }
}

#[allow(
    clippy::print_stderr,
    clippy::too_many_lines,
    clippy::many_single_char_names,
    clippy::cast_precision_loss,
    reason = "command-line output, validated in order"
)]
fn pipeline_cmd(a: &PipelineArgs) -> ExitCode {
    if !(0.0..=1.0).contains(&a.invalid_ratio) {
        eprintln!(
            "tally: --invalid-ratio must be between 0 and 1, got {}",
            a.invalid_ratio
        );
        return ExitCode::from(2);
    }
    if !(a.duration > 0.0 && a.duration <= MAX_DURATION_S) {
        eprintln!(
            "tally: --duration must be a number of seconds above 0 and at most {MAX_DURATION_S}, got {}",
            a.duration
        );
        return ExitCode::from(2);
    }
    if a.threshold == 0
        || a.threshold > a.signers
        || usize::from(a.threshold) > wire::MAX_T
        || usize::from(a.signers) > tally_mpc::frost::MAX_SIGNERS
    {
        eprintln!(
            "tally: need 1 <= --threshold <= --signers, --threshold <= {} and --signers <= {}",
            wire::MAX_T,
            tally_mpc::frost::MAX_SIGNERS
        );
        return ExitCode::from(2);
    }
    for (name, value, max) in [
        ("--window", a.window, MAX_WINDOW),
        ("--max-batch", a.max_batch, MAX_BATCH),
        ("--pool", a.pool, MAX_POOL),
    ] {
        if value == 0 || value > max {
            eprintln!("tally: {name} must be between 1 and {max}, got {value}");
            return ExitCode::from(2);
        }
    }
    #[cfg(not(feature = "baseline"))]
    if a.baseline || a.compare {
        eprintln!("tally: built without the `baseline` feature; rebuild with default features");
        return ExitCode::from(2);
    }
    sys::install_sigint_handler();
    let s = Settings {
        duration: Duration::from_secs_f64(a.duration),
        window: a.window,
        invalid_ratio: a.invalid_ratio,
        stages: a.stages,
        verify: a.verify,
        transport: a.transport,
        journal_dir: a.journal_dir.clone(),
        keep_journal: a.keep_journal,
        bad_wire_every: a.bad_wire_every,
        pin: !a.no_pin,
        progress: !a.quiet,
        max_batch: a.max_batch,
    };
    let (env, why) = Env::new(a.transport);
    if !a.json {
        eprintln!("tally pipeline: {why}");
        eprintln!(
            "tally pipeline: dealing a {}-of-{} FROST key and signing {} sessions before the timed run...",
            a.threshold, a.signers, a.pool
        );
    }
    let w = match Workload::new(a.threshold, a.signers, a.pool) {
        Ok(w) => w,
        Err(e @ pipeline::PipelineError::Interrupted) => {
            eprintln!("tally: {e}");
            // The shell's status for a command ended by SIGINT.
            return ExitCode::from(130);
        }
        Err(e) => {
            eprintln!("tally: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut runs = Vec::new();
    if !a.baseline {
        match pipeline::run_tally(&s, &w, &env, &why) {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("tally: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    #[cfg(feature = "baseline")]
    if (a.baseline || a.compare) && !sys::interrupted() {
        match pipeline::run_baseline(&s, &w, &env, &why) {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("tally: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let names = env.netns_names();
    drop(env);
    let netns_left = names
        .iter()
        .flatten()
        .any(|n| tally_bypass::netns::NetnsGuard::exists(n));
    if let Some(path) = &a.plot {
        let refs: Vec<&report::RunReport> = runs.iter().collect();
        if let Err(e) = report::plot(path, &refs) {
            eprintln!("tally: {e}");
            return ExitCode::FAILURE;
        }
    }
    // A closed stdout (`tally pipeline | head`) loses the report, not the exit status.
    let mut stdout = std::io::stdout().lock();
    let ratio = match runs.as_slice() {
        [t, b] if b.sessions_per_sec() > 0.0 => Some(t.sessions_per_sec() / b.sessions_per_sec()),
        _ => None,
    };
    if a.json {
        let out = match runs.as_slice() {
            [one] => {
                let mut v = one.json();
                if let Some(o) = v.as_object_mut() {
                    o.insert("netns_left_behind".into(), serde_json::json!(netns_left));
                }
                v
            }
            many => serde_json::json!({
                "runs": many.iter().map(report::RunReport::json).collect::<Vec<_>>(),
                "speedup_sessions_per_sec": ratio,
                "netns_left_behind": netns_left,
            }),
        };
        let _ = writeln!(stdout, "{out}");
    } else {
        for r in &runs {
            let _ = write!(stdout, "{}", r.text());
        }
        if let (Some(x), [t, b]) = (ratio, runs.as_slice()) {
            let p99 =
                |r: &report::RunReport| r.load.latency_ns.value_at_quantile(0.99) as f64 / 1e6;
            let _ = writeln!(
                stdout,
                "== tally vs baseline: {:.1}x sessions/s ({:.0} vs {:.0}); p99 {:.2} ms vs {:.2} ms ==",
                x,
                t.sessions_per_sec(),
                b.sessions_per_sec(),
                p99(t),
                p99(b)
            );
        }
        if let Some([na, nb]) = &names {
            let _ = writeln!(
                stdout,
                "network namespaces {na} and {nb}: {}",
                if netns_left {
                    "STILL PRESENT"
                } else {
                    "removed"
                }
            );
        }
        if let Some(p) = &a.plot {
            let _ = writeln!(stdout, "latency plot written to {}", p.display());
        }
    }
    let ok = runs.iter().all(report::RunReport::accounting_ok) && !netns_left;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
