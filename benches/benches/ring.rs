//! Criterion benches of Tally's SPSC ring against `rtrb` and `crossbeam-queue`, in the
//! same groups: single-thread push+pop pair, two pinned threads (one item per op and
//! batched), ping-pong round trip with a bare cache line as the floor.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tally_benches::ring::{
    PingPong, Queue, SingleVariant, expected_sum, pair_loop, ping_pong, throughput,
    throughput_variant,
};

fn check_correctness() {
    // Read the core list before any thread is pinned (see `ring::cores`).
    assert!(!tally_benches::ring::cores().is_empty(), "no cores visible");
    for q in Queue::ALL {
        assert_eq!(
            pair_loop(q, 10_000),
            expected_sum(10_000),
            "{} pair loop is wrong",
            q.name()
        );
        // `throughput` asserts order internally.
        throughput(q, 100_000, false);
        throughput(q, 100_000, true);
    }
}

fn pair(c: &mut Criterion) {
    check_correctness();
    let mut g = c.benchmark_group("ring_pair");
    g.throughput(Throughput::Elements(1));
    // `pair_loop` keeps each queue in locals, the way an application's loop holds it.
    // Capturing the halves in a `b.iter` closure instead put every index through memory
    // and measured store-to-load forwarding: 8.3 ns for Tally and 8.7 ns for rtrb,
    // against 1.0 and 2.2 ns here.
    for q in Queue::ALL {
        g.bench_function(q.name(), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                let sum = pair_loop(q, iters);
                let elapsed = t.elapsed();
                assert_eq!(sum, expected_sum(iters), "{} pair loop is wrong", q.name());
                elapsed
            });
        });
    }
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    for (group, batched) in [
        ("ring_throughput_single", false),
        ("ring_throughput_batch256", true),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(1));
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(4));
        for q in Queue::ALL {
            if batched && q == Queue::Crossbeam {
                continue; // ArrayQueue has no batch API.
            }
            g.bench_function(q.name(), |b| {
                b.iter_custom(|iters| throughput(q, iters.max(1), batched));
            });
        }
        if !batched {
            for v in SingleVariant::ALL {
                g.bench_function(v.name(), |b| {
                    b.iter_custom(|iters| throughput_variant(v, iters.max(1)).elapsed);
                });
            }
        }
        g.finish();
    }
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_ping_pong");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    for kind in PingPong::ALL {
        g.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| ping_pong(kind, iters.max(1), None));
        });
    }
    g.finish();
}

criterion_group!(benches, pair, two_threads, round_trip);
criterion_main!(benches);
