//! `batch-report`: batch streams (batches of 256 and of 8 `u64`s, two pinned threads)
//! through Tally's `SpscRing` (`tally`), Tally's `BatchRing` (`tally-batch`) and `rtrb`,
//! measured in several processes.
//!
//! Why several processes: on the AMD EPYC host the same binary's batch rates moved by
//! 30 % and more from one process to the next while staying steady within one, for
//! every queue, rtrb included (rtrb 1,050-1,560 M/s for batches of 256 in runs minutes
//! apart). Each process gets another memory layout (address-space randomisation moves the
//! heap and the main thread's stack), so one process is one sample of layouts, and the
//! comparison that holds is over many. Each child interleaves the queues round by round
//! (order reversed every other round) and reports its median per-round ratio against
//! rtrb; the parent prints the median and range of those ratios over the processes.
//!
//! Usage: `batch-report [--processes P] [--rounds R]` (defaults 9 and 5).
use std::process::{Command, ExitCode};

use tally_benches::ring::{Queue, SMALL_BATCH, throughput, throughput_small_batches};
use tally_benches::stats::median;

const MSGS: u64 = 20_000_000;
/// The queues compared: rtrb first, the base of every ratio.
const QUEUES: [Queue; 3] = [Queue::Rtrb, Queue::Tally, Queue::TallyBatch];

/// Per batch size, per queue: the rate of each round (M msgs/s).
type Rates = [[Vec<f64>; 3]; 2];

/// Runs `rounds` interleaved rounds in this process.
#[allow(clippy::cast_precision_loss, reason = "message counts far below 2^52")]
fn measure(rounds: usize) -> Rates {
    let mut rates: Rates = Default::default();
    for round in 0..rounds {
        let mut order: Vec<(usize, Queue)> = QUEUES.into_iter().enumerate().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (k, q) in order {
            let big = throughput(q, MSGS, true);
            let small = throughput_small_batches(q, MSGS);
            if let Some(v) = rates[0].get_mut(k) {
                v.push(MSGS as f64 / big.as_secs_f64() / 1e6);
            }
            if let (Some(v), Some(d)) = (rates[1].get_mut(k), small) {
                v.push(MSGS as f64 / d.as_secs_f64() / 1e6);
            }
        }
    }
    rates
}

/// The median per-round ratio of `rounds` against `base`.
fn per_round_ratio(rounds: &[f64], base: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = rounds.iter().zip(base).map(|(a, b)| a / b).collect();
    median(&mut ratios)
}

/// Child mode: one line per batch size and queue, `size queue median_rate ratio`.
fn child(rounds: usize) {
    let rates = measure(rounds);
    for (size, per_queue) in [256, SMALL_BATCH].into_iter().zip(&rates) {
        let base = per_queue.first().cloned().unwrap_or_default();
        for (q, rounds) in QUEUES.into_iter().zip(per_queue) {
            println!(
                "{size} {} {:.1} {:.4}",
                q.name(),
                median(&mut rounds.clone()),
                per_round_ratio(rounds, &base)
            );
        }
    }
}

/// One child's result line.
struct Sample {
    size: usize,
    queue: String,
    rate: f64,
    ratio: f64,
}

fn parse(line: &str) -> Option<Sample> {
    let mut it = line.split_whitespace();
    Some(Sample {
        size: it.next()?.parse().ok()?,
        queue: it.next()?.to_owned(),
        rate: it.next()?.parse().ok()?,
        ratio: it.next()?.parse().ok()?,
    })
}

fn flag(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => match args.get(i + 1).map(|v| v.parse::<usize>()) {
            Some(Ok(n)) if n > 0 => Ok(n),
            _ => Err(format!("{name} takes a positive whole number")),
        },
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (processes, rounds) = match (flag(&args, "--processes", 9), flag(&args, "--rounds", 5)) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("batch-report: {e}\nusage: batch-report [--processes P] [--rounds R]");
            return ExitCode::from(2);
        }
    };
    if args.iter().any(|a| a == "--child") {
        child(rounds);
        return ExitCode::SUCCESS;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("batch-report: cannot find its own executable to run children: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "batch report: {processes} processes x {rounds} interleaved rounds, two pinned threads, \
         capacity 1024, u64 items"
    );
    let mut samples = Vec::new();
    for p in 0..processes {
        eprint!("\rprocess {}/{processes}", p + 1);
        let out = Command::new(&exe)
            .args(["--child", "--rounds", &rounds.to_string()])
            .output();
        match out {
            Ok(out) if out.status.success() => {
                samples.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter_map(parse),
                );
            }
            Ok(out) => {
                eprintln!(
                    "\nbatch-report: a child failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("\nbatch-report: cannot run a child: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!();
    for size in [256, SMALL_BATCH] {
        println!(
            "\nbatches of {size} (M msgs/s: median over processes of each process's median; \
             ratio vs rtrb: median over processes of each process's median per-round ratio, \
             [lowest-highest process])"
        );
        for q in QUEUES {
            let of = |f: fn(&Sample) -> f64| -> Vec<f64> {
                samples
                    .iter()
                    .filter(|s| s.size == size && s.queue == q.name())
                    .map(f)
                    .collect()
            };
            let mut rates = of(|s| s.rate);
            let mut ratios = of(|s| s.ratio);
            let rate = median(&mut rates);
            let ratio = median(&mut ratios);
            let lo = ratios.first().copied().unwrap_or(f64::NAN);
            let hi = ratios.last().copied().unwrap_or(f64::NAN);
            println!(
                "  {:<12} {rate:>8.1} M/s   {ratio:.2}x [{lo:.2}-{hi:.2}]",
                q.name()
            );
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::{flag, parse};

    #[test]
    fn a_child_line_parses_and_a_broken_one_does_not() {
        let s = parse("256 tally-batch 1193.0 1.0512").unwrap();
        assert_eq!((s.size, s.queue.as_str()), (256, "tally-batch"));
        assert!((s.rate - 1193.0).abs() < 1e-9 && (s.ratio - 1.0512).abs() < 1e-9);
        assert!(parse("256 tally-batch 1193.0").is_none());
        assert!(parse("x tally 1 1").is_none());
    }

    #[test]
    fn flags_take_positive_numbers() {
        let args: Vec<String> = ["--rounds", "3"].map(String::from).to_vec();
        assert_eq!(flag(&args, "--rounds", 5), Ok(3));
        assert_eq!(flag(&args, "--processes", 9), Ok(9));
        let bad: Vec<String> = ["--rounds", "0"].map(String::from).to_vec();
        assert!(flag(&bad, "--rounds", 5).is_err());
        let missing: Vec<String> = vec!["--rounds".into()];
        assert!(flag(&missing, "--rounds", 5).is_err());
    }
}
