#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code"
)]
//! Criterion benches for `tally-mpc` side by side with libsecp256k1 (`secp256k1`), k256 0.14
//! and `frost-secp256k1` 3, in the same run. Each bench checks its result before measuring.
//! Fixtures come from `tally_benches::kernels::mpc`, shared with the callgrind kernels.

#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use tally_benches::kernels::mpc as fx;
use tally_mpc::{bip340, frost};

fn bip340_single(c: &mut Criterion) {
    let cases = fx::bip340_cases(64, false);
    let tally = fx::tally_parse(&cases);
    let libsecp = fx::libsecp_parse(&cases);
    let k256 = fx::k256_parse(&cases);
    let hot = fx::bip340_cases(64, true);
    let hot_parsed = fx::tally_parse(&hot);
    let pre = bip340::PrecomputedKey::new(&hot_parsed[0].0);
    tally_mpc::warm_up();
    for (i, c) in cases.iter().enumerate() {
        bip340::verify(&tally[i].0, &c.msg, &tally[i].1).unwrap();
        secp256k1::schnorr::verify(&libsecp[i].1, &c.msg, &libsecp[i].0).unwrap();
        k256[i].0.verify_raw(&c.msg, &k256[i].1).unwrap();
        pre.verify(&hot[i].msg, &hot_parsed[i].1).unwrap();
    }
    let mut g = c.benchmark_group("mpc/bip340_verify");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("libsecp256k1", |b| {
        b.iter(|| {
            i = (i + 1) % 64;
            secp256k1::schnorr::verify(black_box(&libsecp[i].1), &cases[i].msg, &libsecp[i].0)
                .is_ok()
        });
    });
    g.bench_function("k256", |b| {
        b.iter(|| {
            i = (i + 1) % 64;
            black_box(&k256[i].0)
                .verify_raw(&cases[i].msg, &k256[i].1)
                .is_ok()
        });
    });
    g.bench_function("tally_cold", |b| {
        b.iter(|| {
            i = (i + 1) % 64;
            bip340::verify(black_box(&tally[i].0), &cases[i].msg, &tally[i].1).is_ok()
        });
    });
    g.bench_function("tally_precomputed", |b| {
        b.iter(|| {
            i = (i + 1) % 64;
            black_box(&pre)
                .verify(&hot[i].msg, &hot_parsed[i].1)
                .is_ok()
        });
    });
    g.finish();
}

fn bip340_batch(c: &mut Criterion) {
    tally_mpc::warm_up();
    let mut g = c.benchmark_group("mpc/bip340_batch");
    for n in [1usize, 8, 64, 256, 1024] {
        let cases = fx::bip340_cases(n, false);
        let tally = fx::tally_parse(&cases);
        let libsecp = fx::libsecp_parse(&cases);
        let mut batch = bip340::BatchVerifier::with_capacity(n);
        for ((pk, sig), c) in tally.iter().zip(&cases) {
            batch.push(pk, &c.msg, sig).unwrap();
        }
        batch.verify().unwrap();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("tally", n), &n, |b, _| {
            b.iter(|| {
                batch.clear();
                for ((pk, sig), c) in tally.iter().zip(&cases) {
                    batch.push(pk, &c.msg, sig).unwrap();
                }
                batch.verify().is_ok()
            });
        });
        g.bench_with_input(
            BenchmarkId::new("libsecp256k1_one_by_one", n),
            &n,
            |b, _| {
                b.iter(|| {
                    libsecp
                        .iter()
                        .zip(&cases)
                        .all(|((pk, sig), c)| secp256k1::schnorr::verify(sig, &c.msg, pk).is_ok())
                });
            },
        );
    }
    g.finish();
}

/// Batches of 64 with 0, 1, 2, 8 or 64 invalid signatures: Tally's batch verifier,
/// which names the invalid ones, against libsecp256k1 checking each signature alone
/// (which tells them apart by itself).
fn bip340_culprits(c: &mut Criterion) {
    tally_mpc::warm_up();
    let mut g = c.benchmark_group("mpc/bip340_batch64_culprits");
    let n = 64;
    g.throughput(Throughput::Elements(n as u64));
    for bad in [0usize, 1, 2, 8, 64] {
        let fixture = fx::CulpritBatch::new(n, bad);
        let libsecp = fx::libsecp_parse(&fixture.cases);
        let mut batch = bip340::BatchVerifier::with_capacity(n);
        assert!(fixture.run(&mut batch));
        let one_by_one = || {
            libsecp
                .iter()
                .zip(&fixture.msgs)
                .filter(|((pk, sig), msg)| secp256k1::schnorr::verify(sig, msg, pk).is_err())
                .count()
        };
        assert_eq!(one_by_one(), bad);
        g.bench_with_input(BenchmarkId::new("tally", bad), &bad, |b, _| {
            b.iter(|| fixture.run(black_box(&mut batch)));
        });
        g.bench_with_input(
            BenchmarkId::new("libsecp256k1_one_by_one", bad),
            &bad,
            |b, _| b.iter(one_by_one),
        );
    }
    g.finish();
}

fn frost_shares(c: &mut Criterion) {
    tally_mpc::warm_up();
    let sessions = fx::frost_sessions(fx::FROST_BATCH_SESSIONS);
    let ts = fx::tally_sessions(&sessions);
    assert_eq!(fx::frost_batch_tally(&sessions, &ts, 1), 1);
    let mut g = c.benchmark_group("mpc/frost_share");
    g.throughput(Throughput::Elements(3));
    let mut i = 0usize;
    g.bench_function("frost_secp256k1_3of5", |b| {
        b.iter(|| {
            i = (i + 1) % sessions.len();
            let (pkg, pubkeys, shares) = &sessions[i].zf;
            shares.iter().all(|(id, z)| {
                frost_core::verify_signature_share(
                    *id,
                    &pubkeys.verifying_shares()[id],
                    z,
                    black_box(pkg),
                    pubkeys.verifying_key(),
                )
                .is_ok()
            })
        });
    });
    g.bench_function("tally_single_3of5", |b| {
        b.iter(|| {
            i = (i + 1) % sessions.len();
            let pkg = frost::SigningPackage::new(&sessions[i].msg, &ts[i].commitments).unwrap();
            ts[i].shares.iter().all(|(id, z, y)| {
                frost::verify_signature_share(black_box(&pkg), &ts[i].vk, *id, y, z).is_ok()
            })
        });
    });
    let pre: Vec<Vec<frost::PrecomputedVerifyingShare>> = ts
        .iter()
        .map(|t| {
            t.shares
                .iter()
                .map(|(_, _, y)| frost::PrecomputedVerifyingShare::new(y))
                .collect()
        })
        .collect();
    g.bench_function("tally_single_precomputed_3of5", |b| {
        b.iter(|| {
            i = (i + 1) % sessions.len();
            let pkg = frost::SigningPackage::new(&sessions[i].msg, &ts[i].commitments).unwrap();
            ts[i]
                .shares
                .iter()
                .zip(&pre[i])
                .all(|((id, z, _), y)| y.verify_share(black_box(&pkg), &ts[i].vk, *id, z).is_ok())
        });
    });
    let total: u64 = ts.iter().map(|t| t.shares.len() as u64).sum();
    g.throughput(Throughput::Elements(total));
    g.bench_function(BenchmarkId::new("tally_batched", total), |b| {
        b.iter(|| fx::frost_batch_tally(&sessions, &ts, 1));
    });
    g.finish();
}

fn frost_signatures(c: &mut Criterion) {
    tally_mpc::warm_up();
    let sessions = fx::frost_sessions(16);
    let ts = fx::tally_sessions(&sessions);
    let sigs = fx::frost_signatures(&ts, &sessions);
    let zsigs: Vec<frost_secp256k1::Signature> = sessions
        .iter()
        .map(|s| frost_secp256k1::aggregate(&s.zf.0, &s.zf.2, &s.zf.1).unwrap())
        .collect();
    let pre = frost::PrecomputedVerifyingKey::new(&ts[0].vk);
    let mut g = c.benchmark_group("mpc/frost_verify");
    let mut i = 0usize;
    g.bench_function("frost_secp256k1", |b| {
        b.iter(|| {
            i = (i + 1) % sessions.len();
            black_box(sessions[i].zf.1.verifying_key())
                .verify(&sessions[i].msg, &zsigs[i])
                .is_ok()
        });
    });
    g.bench_function("tally", |b| {
        b.iter(|| {
            i = (i + 1) % sessions.len();
            frost::verify(black_box(&ts[i].vk), &sessions[i].msg, &sigs[i]).is_ok()
        });
    });
    g.bench_function("tally_precomputed", |b| {
        b.iter(|| {
            i = (i + 1) % sessions.len();
            black_box(&pre).verify(&sessions[i].msg, &sigs[i]).is_ok()
        });
    });
    g.finish();
    // The coordinator's crypto per batch of 32 sessions (wire bytes to signatures).
    let sessions = fx::frost_sessions(fx::COORD_SESSIONS);
    let mut g = c.benchmark_group("mpc/frost_coord32");
    g.throughput(Throughput::Elements(fx::COORD_SESSIONS as u64));
    // The key's precomputed table and the decoded shares are built once, outside the
    // timed closure (inside it they were timed with every sample).
    let mut coord = fx::Coord::new(&sessions);
    assert_eq!(
        coord.run(true, 1) + coord.run(false, 1),
        2 * (1 + fx::COORD_SESSIONS as u64)
    );
    for (name, signatures) in [("tally_signatures", true), ("tally_shares", false)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t0 = std::time::Instant::now();
                black_box(coord.run(signatures, iters));
                t0.elapsed()
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bip340_single, bip340_batch, bip340_culprits, frost_shares, frost_signatures
}
criterion_main!(benches);
