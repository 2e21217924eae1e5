#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    reason = "test code"
)]
//! Proves the hot paths allocate nothing, with a counting global allocator. The count is
//! per thread: every path under test runs on the test's own thread, and libtest's main
//! thread may allocate at any moment while it waits for the test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tally_mpc::bip340::{self, BatchVerifier, PrecomputedKey, Signature, XOnlyPublicKey};
use tally_mpc::frost::{
    self, Identifier, ShareBatchVerifier, SignatureShare, SigningCommitments, SigningPackage,
    VerifyingKey, VerifyingShare,
};

struct Counting;
thread_local! {
    // Const-initialised and without a destructor, so reading it never allocates.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn count_one(bytes: usize) {
    // `try_with`: an allocation during thread teardown is not ours to count.
    let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    let _ = BYTES.try_with(|b| b.set(b.get() + bytes));
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Bytes allocated by `f` on this thread.
fn bytes<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = BYTES.with(Cell::get);
    let r = f();
    (r, BYTES.with(Cell::get) - before)
}

/// A verifier reserves only the scratch of the paths its capacity can take. Every one
/// reserved the widest Pippenger buckets (about 420 KiB), so a coordinator holding a
/// `ShareBatchVerifier` of 3 per session spent 440 KiB on each; small batches never
/// reach Pippenger (below 8 entries). Capacities around that threshold and larger ones,
/// with invalid entries (the culprit search's sub-sums), still allocate nothing after
/// `with_capacity`.
#[test]
fn verifiers_reserve_what_their_capacity_needs() {
    tally_mpc::warm_up();
    let (shares, n) = bytes(|| ShareBatchVerifier::with_capacity(3));
    assert!(n < 64 * 1024, "ShareBatchVerifier of 3 reserved {n} bytes");
    drop(shares);
    let (one, n) = bytes(|| BatchVerifier::with_capacity(1));
    assert!(n < 32 * 1024, "BatchVerifier of 1 reserved {n} bytes");
    drop(one);
    let (big, n) = bytes(|| BatchVerifier::with_capacity(1024));
    assert!(
        n < 4 * 1024 * 1024,
        "BatchVerifier of 1024 reserved {n} bytes"
    );
    drop(big);

    let keys: Vec<secp256k1::Keypair> = (1..=100u8)
        .map(|i| {
            secp256k1::Keypair::from_secret_key(
                &secp256k1::SecretKey::from_secret_bytes([i; 32]).unwrap(),
            )
        })
        .collect();
    let pks: Vec<XOnlyPublicKey> = keys
        .iter()
        .map(|kp| XOnlyPublicKey::from_bytes(&kp.x_only_public_key().0.to_byte_array()).unwrap())
        .collect();
    let msgs: Vec<[u8; 4]> = (0..100u32).map(u32::to_be_bytes).collect();
    let sigs: Vec<Signature> = keys
        .iter()
        .zip(&msgs)
        .map(|(kp, m)| {
            Signature::from_bytes(&secp256k1::schnorr::sign_no_aux_rand(m, kp).to_byte_array())
                .unwrap()
        })
        .collect();
    for size in [7usize, 8, 9, 25, 100] {
        let mut batch = BatchVerifier::with_capacity(size);
        // Every third entry signed by the next key: invalid.
        let bad: Vec<usize> = (0..size).step_by(3).collect();
        let (r, n) = count(|| {
            for i in 0..size {
                let key = if i % 3 == 0 { (i + 1) % size } else { i };
                batch.push(&pks[key], &msgs[i], &sigs[i])?;
            }
            Ok::<_, tally_mpc::Error>(batch.verify())
        });
        assert_eq!(r.unwrap().unwrap_err().invalid(), bad.as_slice());
        assert_eq!(n, 0, "BatchVerifier of {size} allocated");
    }
}

#[test]
fn hot_paths_do_not_allocate() {
    // The harness must be able to fail: a Vec allocates, and this thread sees it.
    let (v, n) = count(|| std::hint::black_box(vec![1u8; 10]));
    assert_eq!(n, 1, "the counting allocator missed an allocation");
    drop(v);
    tally_mpc::warm_up();
    // BIP340 vector 1, and libsecp-made signatures over one key.
    let pk = XOnlyPublicKey::from_slice(&hex(
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
    ))
    .unwrap();
    let msg = hex("243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89");
    let sig = Signature::from_slice(&hex("6896BD60EEAE296DB48A229FF71DFE071BDE413E6D43F917DC8DCF8C78DE33418906D11AC976ABCCB20B091292BFF4EA897EFCB639EA871CFA95F6DE339E4B0A")).unwrap();
    let (r, n) = count(|| bip340::verify(&pk, &msg, &sig));
    r.unwrap();
    assert_eq!(n, 0, "bip340::verify allocated");
    let pre = PrecomputedKey::new(&pk);
    let (r, n) = count(|| pre.verify(&msg, &sig));
    r.unwrap();
    assert_eq!(n, 0, "PrecomputedKey::verify allocated");

    let sk = secp256k1::SecretKey::from_secret_bytes([7u8; 32]).unwrap();
    let kp = secp256k1::Keypair::from_secret_key(&sk);
    let pk2 = XOnlyPublicKey::from_bytes(&kp.x_only_public_key().0.to_byte_array()).unwrap();
    let msgs: Vec<Vec<u8>> = (0..64u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let sigs: Vec<Signature> = msgs
        .iter()
        .map(|m| {
            Signature::from_bytes(&secp256k1::schnorr::sign_no_aux_rand(m, &kp).to_byte_array())
                .unwrap()
        })
        .collect();
    for size in [1usize, 8, 64] {
        let mut batch = BatchVerifier::with_capacity(size);
        let (r, n) = count(|| {
            for i in 0..size {
                batch.push(
                    if i % 2 == 0 { &pk2 } else { &pk },
                    &msgs[i],
                    if i % 2 == 0 { &sigs[i] } else { &sig },
                )?;
            }
            Ok::<_, tally_mpc::Error>(())
        });
        r.unwrap();
        assert_eq!(n, 0, "BatchVerifier::push allocated (size {size})");
        let (r, n) = count(|| batch.verify());
        // Odd entries pair `pk` with vector 1's `sig` on a 4-byte message it does not
        // sign: exactly they are invalid. A failing batch hands its index buffer to the
        // error and allocates nothing (`clear` replaces the buffer, outside the count).
        let odd: Vec<usize> = (1..size).step_by(2).collect();
        match r {
            Ok(()) => assert!(odd.is_empty(), "size {size}: bad entries passed"),
            Err(e) => assert_eq!(e.invalid(), odd.as_slice(), "size {size}"),
        }
        assert_eq!(
            n, 0,
            "a failing BatchVerifier::verify allocated (size {size})"
        );
        batch.clear();
        for i in (0..size).step_by(2) {
            batch.push(&pk2, &msgs[i], &sigs[i]).unwrap();
        }
        let (r, n2) = count(|| batch.verify());
        r.unwrap();
        assert_eq!(n2, 0, "BatchVerifier::verify allocated (size {size})");
    }

    // FROST: the RFC vector session.
    let vk = VerifyingKey::from_bytes(
        &hex("02f37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b4f")
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let fmsg = hex("74657374");
    let commitments = vec![
        (
            Identifier::from_u16(1).unwrap(),
            SigningCommitments::from_bytes(
                &hex("03c699af97d26bb4d3f05232ec5e1938c12f1e6ae97643c8f8f11c9820303f1904")
                    .try_into()
                    .unwrap(),
                &hex("02fa2aaccd51b948c9dc1a325d77226e98a5a3fe65fe9ba213761a60123040a45e")
                    .try_into()
                    .unwrap(),
            )
            .unwrap(),
        ),
        (
            Identifier::from_u16(3).unwrap(),
            SigningCommitments::from_bytes(
                &hex("03077507ba327fc074d2793955ef3410ee3f03b82b4cdc2370f71d865beb926ef6")
                    .try_into()
                    .unwrap(),
                &hex("02ad53031ddfbbacfc5fbda3d3b0c2445c8e3e99cbc4ca2db2aa283fa68525b135")
                    .try_into()
                    .unwrap(),
            )
            .unwrap(),
        ),
    ];
    let secret = |h: &str| {
        let sk = secp256k1::SecretKey::from_secret_bytes(hex(h).try_into().unwrap()).unwrap();
        VerifyingShare::from_bytes(&secp256k1::PublicKey::from_secret_key(&sk).serialize()).unwrap()
    };
    let vs1 = secret("08f89ffe80ac94dcb920c26f3f46140bfc7f95b493f8310f5fc1ea2b01f4254c");
    let vs3 = secret("00e95d59dd0d46b0e303e500b62b7ccb0e555d49f5b849f5e748c071da8c0dbc");
    let z1 = SignatureShare::from_bytes(
        &hex("c4fce1775a1e141fb579944166eab0d65eefe7b98d480a569bbbfcb14f91c197")
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let z3 = SignatureShare::from_bytes(
        &hex("0160fd0d388932f4826d2ebcd6b9eaba734f7c71cf25b4279a4ca2581e47b18d")
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let (pkg, n) = count(|| SigningPackage::with_key(&fmsg, &commitments, &vk));
    let pkg = pkg.unwrap();
    assert_eq!(n, 0, "SigningPackage::with_key allocated");
    let id1 = Identifier::from_u16(1).unwrap();
    let id3 = Identifier::from_u16(3).unwrap();
    let (r, n) = count(|| {
        frost::verify_signature_share(&pkg, &vk, id1, &vs1, &z1)
            .and(frost::verify_signature_share(&pkg, &vk, id3, &vs3, &z3))
    });
    r.unwrap();
    assert_eq!(n, 0, "verify_signature_share allocated");
    let sig = frost::aggregate(&pkg, &vk, &[(id1, z1, vs1), (id3, z3, vs3)]).unwrap();
    let (r, n) =
        count(|| frost::aggregate_verified_shares(&pkg, &vk, 2, &[(id1, z1, vs1), (id3, z3, vs3)]));
    assert_eq!(r.unwrap(), sig);
    assert_eq!(n, 0, "aggregate_verified_shares allocated");
    let (r, n) = count(|| frost::verify(&vk, &fmsg, &sig));
    r.unwrap();
    assert_eq!(n, 0, "frost::verify allocated");
    let mut batch = ShareBatchVerifier::with_capacity(2);
    let (r, n) = count(|| {
        batch.push(&pkg, &vk, id1, &vs1, &z1)?;
        batch.push(&pkg, &vk, id3, &vs3, &z3)
    });
    r.unwrap();
    assert_eq!(n, 0, "ShareBatchVerifier::push allocated");
    let (r, n) = count(|| batch.verify());
    r.unwrap();
    assert_eq!(n, 0, "ShareBatchVerifier::verify allocated");
    let mut batch = batch.recycle();
    let (r, n) = count(|| batch.push(&pkg, &vk, id1, &vs1, &z1));
    r.unwrap();
    assert_eq!(n, 0, "a recycled ShareBatchVerifier allocated");
    let (r, n) =
        count(|| frost::aggregate_unverified(&pkg, &vk, &[(id1, z1, vs1), (id3, z3, vs3)]));
    assert_eq!(r.unwrap(), sig);
    assert_eq!(n, 0, "aggregate_unverified allocated");
    let mut sigs = frost::SignatureBatchVerifier::with_capacity(4);
    let (r, n) = count(|| {
        for _ in 0..4 {
            sigs.push(&vk, &fmsg, &sig)?;
        }
        Ok::<_, tally_mpc::Error>(())
    });
    r.unwrap();
    assert_eq!(n, 0, "SignatureBatchVerifier::push allocated");
    let (r, n) = count(|| sigs.verify());
    r.unwrap();
    assert_eq!(n, 0, "SignatureBatchVerifier::verify allocated");
    // Precomputed keys and shares: single checks and batch pushes.
    let pre_vk = frost::PrecomputedVerifyingKey::new(&vk);
    let pre1 = frost::PrecomputedVerifyingShare::new(&vs1);
    let pre3 = frost::PrecomputedVerifyingShare::new(&vs3);
    let (r, n) = count(|| {
        pre_vk.verify(&fmsg, &sig)?;
        pre1.verify_share(&pkg, &vk, id1, &z1)?;
        pre3.verify_share(&pkg, &vk, id3, &z3)
    });
    r.unwrap();
    assert_eq!(n, 0, "precomputed verify / verify_share allocated");
    let mut sigs = sigs.recycle();
    let mut batch = batch.recycle();
    let (r, n) = count(|| {
        sigs.push_precomputed(&pre_vk, &fmsg, &sig)?;
        batch.push_precomputed(&pkg, &vk, id1, &pre1, &z1)?;
        batch.push_precomputed(&pkg, &vk, id3, &pre3, &z3)
    });
    r.unwrap();
    assert_eq!(n, 0, "push_precomputed allocated");
    let (r, n) = count(|| sigs.verify().and(batch.verify()));
    r.unwrap();
    assert_eq!(n, 0, "batches with precomputed keys allocated");
}

/// A scalar made from `seed` (reduced mod n).
fn seeded_scalar(seed: u64) -> k256::Scalar {
    use k256::elliptic_curve::ops::Reduce;
    let mut b = [0u8; 32];
    for (i, c) in b.chunks_mut(8).enumerate() {
        let word = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(i as u32 * 13)
            ^ (i as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1);
        c.copy_from_slice(&word.to_be_bytes());
    }
    <k256::Scalar as Reduce<k256::FieldBytes>>::reduce(&k256::FieldBytes::from(b))
}

/// `s * G`, compressed.
fn point_of(s: &k256::Scalar) -> [u8; 33] {
    use k256::elliptic_curve::sec1::ToSec1Point;
    (k256::ProjectivePoint::GENERATOR * s)
        .to_affine()
        .to_sec1_point(true)
        .as_bytes()
        .try_into()
        .unwrap()
}

/// The paths `hot_paths_do_not_allocate` leaves out: a `ShareBatchVerifier` of 40
/// sessions (Pippenger) with invalid shares, whose culprit search must name them; a
/// failing `SignatureBatchVerifier` of 40 signatures; and `aggregate` of a good session.
/// (Contributed by a review, which found them allocation-free.)
#[test]
fn share_and_signature_batches_with_culprits_and_aggregate_do_not_allocate() {
    const SESSIONS: usize = 40;
    use k256::Scalar;
    use k256::elliptic_curve::ops::Reduce;
    let reduce = |b: [u8; 32]| <Scalar as Reduce<k256::FieldBytes>>::reduce(&b.into());
    tally_mpc::warm_up();
    let (c0, c1) = (seeded_scalar(1), seeded_scalar(2));
    let secrets: Vec<Scalar> = (1..=3u64).map(|x| c0 + c1 * Scalar::from(x)).collect();
    let key = VerifyingKey::from_bytes(&point_of(&c0)).unwrap();
    let shares_of: Vec<VerifyingShare> = secrets
        .iter()
        .map(|s| VerifyingShare::from_bytes(&point_of(s)).unwrap())
        .collect();
    let msgs: Vec<Vec<u8>> = (0..SESSIONS as u32)
        .map(|i| i.to_be_bytes().to_vec())
        .collect();
    let nonces: Vec<Vec<(Scalar, Scalar)>> = (0..SESSIONS as u64)
        .map(|s| {
            (0..3)
                .map(|i| {
                    (
                        seeded_scalar(100 + s * 7 + i),
                        seeded_scalar(900 + s * 7 + i),
                    )
                })
                .collect()
        })
        .collect();
    let id = |i: usize| Identifier::from_u16(i as u16 + 1).unwrap();
    let comms: Vec<Vec<(Identifier, SigningCommitments)>> = nonces
        .iter()
        .map(|ns| {
            ns.iter()
                .enumerate()
                .map(|(i, (h, b))| {
                    (
                        id(i),
                        SigningCommitments::from_bytes(&point_of(h), &point_of(b)).unwrap(),
                    )
                })
                .collect()
        })
        .collect();
    let pkgs: Vec<SigningPackage<'_>> = msgs
        .iter()
        .zip(&comms)
        .map(|(m, c)| SigningPackage::with_key(m, c, &key).unwrap())
        .collect();
    // Every fifth session's second share is off by one.
    let shares: Vec<Vec<(Identifier, SignatureShare, VerifyingShare)>> = pkgs
        .iter()
        .enumerate()
        .map(|(s, pkg)| {
            (0..3)
                .map(|i| {
                    let rho = reduce(pkg.binding_factor(&key, id(i)).unwrap());
                    let cl = reduce(pkg.challenge_lambda(&key, id(i)).unwrap());
                    let mut z = nonces[s][i].0 + nonces[s][i].1 * rho + cl * secrets[i];
                    if s % 5 == 0 && i == 1 {
                        z += Scalar::ONE;
                    }
                    let z = SignatureShare::from_bytes(&z.to_bytes().into()).unwrap();
                    (id(i), z, shares_of[i])
                })
                .collect()
        })
        .collect();
    let mut batch = ShareBatchVerifier::with_capacity(SESSIONS * 3);
    let (r, n) = count(|| {
        for (pkg, sh) in pkgs.iter().zip(&shares) {
            for (i, z, vs) in sh {
                batch.push(pkg, &key, *i, vs, z)?;
            }
        }
        Ok::<_, tally_mpc::Error>(batch.verify())
    });
    let bad: Vec<usize> = (0..SESSIONS)
        .filter(|s| s % 5 == 0)
        .map(|s| s * 3 + 1)
        .collect();
    assert_eq!(r.unwrap().unwrap_err().invalid(), bad.as_slice());
    assert_eq!(n, 0, "a failing ShareBatchVerifier (Pippenger) allocated");
    let (r, n) = count(|| frost::aggregate(&pkgs[1], &key, &shares[1]));
    r.unwrap();
    assert_eq!(n, 0, "aggregate of a good session allocated");
    let sigs: Vec<frost::Signature> = pkgs
        .iter()
        .zip(&shares)
        .map(|(p, s)| frost::aggregate_unverified(p, &key, s).unwrap())
        .collect();
    let mut sig_batch = frost::SignatureBatchVerifier::with_capacity(SESSIONS);
    let (r, n) = count(|| {
        for (m, s) in msgs.iter().zip(&sigs) {
            sig_batch.push(&key, m, s)?;
        }
        Ok::<_, tally_mpc::Error>(sig_batch.verify())
    });
    let bad: Vec<usize> = (0..SESSIONS).filter(|s| s % 5 == 0).collect();
    assert_eq!(r.unwrap().unwrap_err().invalid(), bad.as_slice());
    assert_eq!(n, 0, "a failing SignatureBatchVerifier allocated");
}
