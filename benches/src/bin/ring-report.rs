//! `ring-report`: a quick side-by-side report of Tally's SPSC rings (`SpscRing` as
//! `tally`, `BatchRing` as `tally-batch`) against `rtrb` and `crossbeam-queue` on this
//! machine (about 2 seconds a round). Competitors are interleaved
//! round by round (in their listed order in even rounds, reversed in odd ones, so that none
//! always runs after the same neighbour) and the report gives medians over rounds and
//! ratios against rtrb, so machine drift hits every queue alike. For publication-grade numbers use
//! `cargo bench -p tally-benches --bench ring` and the callgrind kernels.
//!
//! Usage: `ring-report [--rounds N]` (default 5).
use std::process::ExitCode;
use std::time::Instant;

use tally_benches::ring::{
    PingPong, Queue, SMALL_BATCH, SingleVariant, WIDE_WORDS, expected_sum, pair_loop, ping_pong,
    throughput, throughput_small_batches, throughput_variant, throughput_wide,
};
use tally_benches::stats::median;

const PAIRS: u64 = 20_000_000;
const MSGS: u64 = 20_000_000;
/// Items per wider-item stream (those run at a fraction of the `u64` streams' rate).
const WIDE_MSGS: u64 = 5_000_000;
const RTTS: u64 = 50_000;

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "index of a percentile"
    )]
    let i = (((sorted.len() - 1) as f64) * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |v| f64::from(*v))
}

/// A row's median and, against `base` round by round, the median, lowest and highest
/// per-round ratio.
fn row_stats(rounds: &[f64], base: &[f64]) -> (f64, f64, f64, f64) {
    let mut ratios: Vec<f64> = rounds.iter().zip(base).map(|(a, b)| a / b).collect();
    let per_round = median(&mut ratios);
    let lo = ratios.first().copied().unwrap_or(f64::NAN);
    let hi = ratios.last().copied().unwrap_or(f64::NAN);
    (median(&mut rounds.to_vec()), per_round, lo, hi)
}

/// Prints the one-item-per-op table: each queue's and cross-check's median, the ratio of
/// medians against rtrb and the median and range of the per-round ratios.
fn print_single(single: &[Vec<f64>], variant: &[Vec<f64>]) {
    let rtrb_rounds = single.get(1).cloned().unwrap_or_default();
    let rtrb_single = median(&mut rtrb_rounds.clone());
    println!(
        "\ntwo pinned threads, one item per op (M msgs/s, median; ratio of medians vs rtrb; \
         median and range of the per-round ratios; higher is better)"
    );
    let rows = Queue::ALL
        .into_iter()
        .enumerate()
        .map(|(k, q)| (q.name(), single.get(k).cloned().unwrap_or_default()))
        .chain(
            SingleVariant::ALL
                .into_iter()
                .enumerate()
                .filter(|(_, v)| *v == SingleVariant::RtrbRefill)
                .map(|(k, v)| (v.name(), variant.get(k).cloned().unwrap_or_default())),
        );
    for (name, rounds) in rows {
        let (v, r, lo, hi) = row_stats(&rounds, &rtrb_rounds);
        println!(
            "  {name:<17} {v:>8.1} M/s  {:>5.2}x   per round {r:.2}x [{lo:.2}-{hi:.2}]",
            v / rtrb_single
        );
    }
}

/// Prints the counting loops: Tally against rtrb in the same loops (per-round ratios),
/// and how often each side found the ring full or empty.
fn print_counted(
    title: &str,
    pair: [SingleVariant; 2],
    variant: &[Vec<f64>],
    full: &[Vec<f64>],
    empty: &[Vec<f64>],
) {
    let index = |want: SingleVariant| {
        SingleVariant::ALL
            .iter()
            .position(|v| *v == want)
            .unwrap_or(usize::MAX)
    };
    let [ours, peer] = pair.map(index);
    let peer_rounds = variant.get(peer).cloned().unwrap_or_default();
    let peer_median = median(&mut peer_rounds.clone());
    println!(
        "\none item per op, {title} (M msgs/s, median; ratio vs the rtrb row; per-round \
         ratios; % of pushes that found the ring full, % of pops that found it empty, \
         medians)"
    );
    for k in [ours, peer] {
        let Some(which) = SingleVariant::ALL.get(k) else {
            continue;
        };
        let rounds = variant.get(k).cloned().unwrap_or_default();
        let (rate, per_round, lo, hi) = row_stats(&rounds, &peer_rounds);
        let full_pct = median(&mut full.get(k).cloned().unwrap_or_default());
        let empty_pct = median(&mut empty.get(k).cloned().unwrap_or_default());
        println!(
            "  {:<20} {rate:>8.1} M/s  {:>5.2}x   per round {per_round:.2}x [{lo:.2}-{hi:.2}]   \
             full {full_pct:.2} %  empty {empty_pct:.2} %",
            which.name(),
            rate / peer_median
        );
    }
}

/// `items` with their indices, in order in even rounds and reversed in odd ones, so that
/// the competitors take turns going first.
fn in_turn<T, const N: usize>(items: [T; N], round: usize) -> Vec<(usize, T)> {
    let mut v: Vec<(usize, T)> = items.into_iter().enumerate().collect();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

/// One round of every [`SingleVariant`]: its rate and, as percentages, how often a push
/// found the ring full and a pop found it empty.
#[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn run_variants(
    round: usize,
    variant: &mut [Vec<f64>],
    full: &mut [Vec<f64>],
    empty: &mut [Vec<f64>],
) {
    for (k, v) in in_turn(SingleVariant::ALL, round) {
        let run = throughput_variant(v, MSGS);
        if let Some(x) = variant.get_mut(k) {
            x.push(MSGS as f64 / run.elapsed.as_secs_f64() / 1e6);
        }
        if let (Some(f), Some(e)) = (full.get_mut(k), empty.get_mut(k)) {
            // Pushes are the messages plus the failed attempts; so are pops.
            f.push(100.0 * run.full as f64 / (MSGS + run.full) as f64);
            e.push(100.0 * run.empty as f64 / (MSGS + run.empty) as f64);
        }
    }
}

/// The two tables of Tally against rtrb in the same variant loops.
fn print_variants(variant: &[Vec<f64>], full: &[Vec<f64>], empty: &[Vec<f64>]) {
    print_counted(
        "loops that count failed attempts",
        [SingleVariant::TallyCounted, SingleVariant::RtrbCounted],
        variant,
        full,
        empty,
    );
    print_counted(
        "a consumer that works on every item (ring nearly full)",
        [
            SingleVariant::TallySlowConsumer,
            SingleVariant::RtrbSlowConsumer,
        ],
        variant,
        full,
        empty,
    );
}

#[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = match args.as_slice() {
        [] => 5,
        [flag, n] if flag == "--rounds" => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("ring-report: --rounds takes a positive whole number");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: ring-report [--rounds N]");
            return ExitCode::from(2);
        }
    };
    let cores = tally_benches::ring::cores().len();
    println!(
        "tally ring report: {rounds} interleaved rounds, {cores} cores visible, capacity 1024, u64 items"
    );
    if cores < 2 {
        println!("note: fewer than 2 cores; two-thread numbers share one core");
    }

    let queues = Queue::ALL.len();
    let mut pair_ns: Vec<Vec<f64>> = vec![Vec::new(); queues];
    let mut single: Vec<Vec<f64>> = vec![Vec::new(); queues];
    let mut variant: Vec<Vec<f64>> = vec![Vec::new(); SingleVariant::ALL.len()];
    let mut full = variant.clone();
    let mut empty = variant.clone();
    // Indexed like `Queue::ALL` (crossbeam's stay empty: it has no slice API).
    let mut batch: Vec<Vec<f64>> = vec![Vec::new(); queues];
    let mut small: Vec<Vec<f64>> = vec![Vec::new(); queues];
    // Per width, per queue.
    let mut wide: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); queues]; WIDE_WORDS.len()];
    let kinds = PingPong::ALL.len();
    let mut p50: Vec<Vec<f64>> = vec![Vec::new(); kinds];
    let mut p99: Vec<Vec<f64>> = vec![Vec::new(); kinds];
    let mut mean: Vec<Vec<f64>> = vec![Vec::new(); kinds];
    let mut samples = vec![0u32; usize::try_from(RTTS).unwrap_or(0)];
    for round in 0..rounds {
        eprint!("\rround {}/{rounds}", round + 1);
        for (k, q) in in_turn(Queue::ALL, round) {
            let t = Instant::now();
            let sum = pair_loop(q, PAIRS);
            let ns = t.elapsed().as_nanos() as f64 / PAIRS as f64;
            if sum != expected_sum(PAIRS) {
                eprintln!("\n{} returned a wrong sum: the queue is broken", q.name());
                return ExitCode::FAILURE;
            }
            if let Some(v) = pair_ns.get_mut(k) {
                v.push(ns);
            }
            let d = throughput(q, MSGS, false);
            if let Some(v) = single.get_mut(k) {
                v.push(MSGS as f64 / d.as_secs_f64() / 1e6);
            }
            if q != Queue::Crossbeam {
                let d = throughput(q, MSGS, true);
                if let Some(v) = batch.get_mut(k) {
                    v.push(MSGS as f64 / d.as_secs_f64() / 1e6);
                }
            }
            if let (Some(d), Some(v)) = (throughput_small_batches(q, MSGS), small.get_mut(k)) {
                v.push(MSGS as f64 / d.as_secs_f64() / 1e6);
            }
            for (w, words) in WIDE_WORDS.into_iter().enumerate() {
                let cell = wide.get_mut(w).and_then(|row| row.get_mut(k));
                if let (Some(d), Some(v)) = (throughput_wide(q, words, WIDE_MSGS), cell) {
                    v.push(WIDE_MSGS as f64 / d.as_secs_f64() / 1e6);
                }
            }
        }
        run_variants(round, &mut variant, &mut full, &mut empty);
        for (k, kind) in in_turn(PingPong::ALL, round) {
            let total = ping_pong(kind, RTTS, Some(&mut samples));
            if let Some(m) = mean.get_mut(k) {
                m.push(total.as_secs_f64() * 1e9 / RTTS as f64);
            }
            samples.sort_unstable();
            if let (Some(a), Some(b)) = (p50.get_mut(k), p99.get_mut(k)) {
                a.push(percentile(&samples, 0.50));
                b.push(percentile(&samples, 0.99));
            }
        }
    }
    eprintln!();
    let med = |v: &mut Vec<Vec<f64>>, k: usize| v.get_mut(k).map_or(f64::NAN, |x| median(x));
    let rtrb_pair = med(&mut pair_ns, 1);
    println!("\nsingle thread push+pop pair (ns, median; ratio vs rtrb, lower is better)");
    for (k, q) in Queue::ALL.into_iter().enumerate() {
        let v = med(&mut pair_ns, k);
        println!("  {:<12} {v:>8.2} ns   {:>5.2}x", q.name(), v / rtrb_pair);
    }
    print_single(&single, &variant);
    print_variants(&variant, &full, &empty);
    print_tally_rtrb(&batch, &small, &wide);
    print_ping_pong(&mut p50, &mut p99, &mut mean);
    ExitCode::SUCCESS
}

/// Prints the tables that compare Tally's rings with rtrb alone: batches of 256 and of
/// [`SMALL_BATCH`], and one item per op with the wider items of [`WIDE_WORDS`].
fn print_tally_rtrb(batch: &[Vec<f64>], small: &[Vec<f64>], wide: &[Vec<Vec<f64>>]) {
    const COLUMNS: &str =
        "M msgs/s, median; ratio of medians vs rtrb; median and range of the per-round ratios";
    println!("\ntwo pinned threads, batches of 256 ({COLUMNS})");
    print_batch_rows(batch);
    println!("\ntwo pinned threads, batches of {SMALL_BATCH} ({COLUMNS})");
    print_batch_rows(small);
    for (words, rounds) in WIDE_WORDS.into_iter().zip(wide) {
        println!(
            "\ntwo pinned threads, one item per op, {}-byte items ({COLUMNS})",
            8 * words
        );
        print_batch_rows(rounds);
    }
}

/// Prints the rows of a batched or wider-item table (every queue but crossbeam, which has
/// no slice API), indexed like `Queue::ALL`: each one's median over rounds, the ratio of
/// medians against rtrb and the median and range of the per-round ratios.
fn print_batch_rows(rounds: &[Vec<f64>]) {
    let rtrb_rounds = rounds.get(1).cloned().unwrap_or_default();
    // Per-round order matters for the ratios: take the median of a copy.
    let rtrb = median(&mut rtrb_rounds.clone());
    for (k, q) in Queue::ALL.into_iter().enumerate() {
        if q == Queue::Crossbeam {
            continue;
        }
        let of_queue = rounds.get(k).cloned().unwrap_or_default();
        let (v, r, lo, hi) = row_stats(&of_queue, &rtrb_rounds);
        println!(
            "  {:<12} {v:>8.1} M/s  {:>5.2}x   per round {r:.2}x [{lo:.2}-{hi:.2}]",
            q.name(),
            v / rtrb
        );
    }
}

/// Prints the ping-pong rows: per queue the median over rounds of each round's p50, p99
/// and mean round trip, with the p50 and mean ratios to the bare cache line's.
fn print_ping_pong(p50: &mut [Vec<f64>], p99: &mut [Vec<f64>], mean: &mut [Vec<f64>]) {
    let med = |v: &mut [Vec<f64>], k: usize| v.get_mut(k).map_or(f64::NAN, |x| median(x));
    let floor = med(p50, 0);
    println!(
        "\nping-pong round trip (ns, median over rounds of each round's p50 / p99 / mean; p50 and mean ratios vs bare cache line)"
    );
    let floor_mean = med(mean, 0);
    for (k, kind) in PingPong::ALL.into_iter().enumerate() {
        let a = med(p50, k);
        let b = med(p99, k);
        let m = med(mean, k);
        println!(
            "  {:<16} p50 {a:>7.0}  p99 {b:>7.0}  mean {m:>7.0}   {:>5.2}x  mean {:>5.2}x",
            kind.name(),
            a / floor,
            m / floor_mean
        );
    }
}
