#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Cross-check against libsecp256k1 (`secp256k1` crate) on 10,000 random cases, a third of
//! them tampered (signature bit, message, key), through single, batch and precomputed
//! verification.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secp256k1::{Keypair, SecretKey, schnorr};
use tally_mpc::bip340::{self, BatchVerifier, PrecomputedKey, Signature, XOnlyPublicKey};

const CASES: usize = 10_000;

struct Case {
    pk: [u8; 32],
    msg: Vec<u8>,
    sig: [u8; 64],
}

fn keypair(rng: &mut StdRng) -> Keypair {
    loop {
        let b: [u8; 32] = rng.r#gen();
        if let Ok(sk) = SecretKey::from_secret_bytes(b) {
            return Keypair::from_secret_key(&sk);
        }
    }
}

fn libsecp_ok(c: &Case) -> bool {
    let Ok(pk) = secp256k1::XOnlyPublicKey::from_byte_array(c.pk) else {
        return false;
    };
    schnorr::verify(&schnorr::Signature::from_byte_array(c.sig), &c.msg, &pk).is_ok()
}

fn ours(c: &Case) -> Result<(), tally_mpc::Error> {
    let pk = XOnlyPublicKey::from_bytes(&c.pk)?;
    let sig = Signature::from_bytes(&c.sig)?;
    bip340::verify(&pk, &c.msg, &sig)
}

fn make_case(rng: &mut StdRng, kp: &Keypair, other: &Keypair) -> Case {
    let len = rng.gen_range(0..100);
    let mut msg: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
    let aux: [u8; 32] = rng.r#gen();
    let mut sig = schnorr::sign_with_aux_rand(&msg, kp, &aux).to_byte_array();
    let mut pk = kp.x_only_public_key().0.to_byte_array();
    match rng.gen_range(0..9) {
        0 => {
            let bit = rng.gen_range(0..512);
            sig[bit / 8] ^= 1 << (bit % 8);
        }
        1 => {
            if msg.is_empty() {
                msg.push(0);
            } else {
                let i = rng.gen_range(0..msg.len());
                msg[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        2 => {
            if rng.gen_bool(0.5) {
                pk = other.x_only_public_key().0.to_byte_array();
            } else {
                pk[rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8);
            }
        }
        _ => {}
    }
    Case { pk, msg, sig }
}

#[test]
fn agrees_with_libsecp256k1_on_10000_cases() {
    let mut rng = StdRng::seed_from_u64(0x7a11_7a11);
    let mut cases = Vec::with_capacity(CASES);
    let mut invalid = 0;
    for _ in 0..CASES {
        let kp = keypair(&mut rng);
        let other = keypair(&mut rng);
        let c = make_case(&mut rng, &kp, &other);
        let expected = libsecp_ok(&c);
        assert_eq!(
            ours(&c).is_ok(),
            expected,
            "pk {:02x?} sig {:02x?} msg {:02x?}",
            c.pk,
            c.sig,
            c.msg
        );
        invalid += usize::from(!expected);
        cases.push((c, expected));
    }
    assert!(
        invalid > CASES / 5,
        "tampering must produce many invalid cases, got {invalid}"
    );

    // Batches of varied sizes: the reported indices are exactly libsecp's rejections.
    let parsed: Vec<Option<(XOnlyPublicKey, Signature)>> = cases
        .iter()
        .map(|(c, _)| {
            Some((
                XOnlyPublicKey::from_bytes(&c.pk).ok()?,
                Signature::from_bytes(&c.sig).ok()?,
            ))
        })
        .collect();
    let mut start = 0;
    let mut size = 1;
    while start < cases.len() {
        let end = (start + size).min(cases.len());
        let mut batch = BatchVerifier::with_capacity(end - start);
        let mut map = Vec::new();
        for i in start..end {
            if let Some((pk, sig)) = &parsed[i] {
                batch.push(pk, &cases[i].0.msg, sig).unwrap();
                map.push(i);
            }
        }
        let expected: Vec<usize> = map
            .iter()
            .enumerate()
            .filter(|(_, i)| !cases[**i].1)
            .map(|(k, _)| k)
            .collect();
        match batch.verify() {
            Ok(()) => assert!(
                expected.is_empty(),
                "batch {start}..{end} accepted invalid entries"
            ),
            Err(e) => assert_eq!(e.invalid(), expected.as_slice(), "batch {start}..{end}"),
        }
        start = end;
        size = if size >= 300 { 1 } else { size * 3 + 1 };
    }
}

#[test]
fn precomputed_key_agrees_with_libsecp256k1() {
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..4 {
        let kp = keypair(&mut rng);
        let other = keypair(&mut rng);
        let pk = XOnlyPublicKey::from_bytes(&kp.x_only_public_key().0.to_byte_array()).unwrap();
        let pre = PrecomputedKey::new(&pk);
        for _ in 0..100 {
            let c = make_case(&mut rng, &kp, &other);
            let expected = libsecp_ok(&c);
            let got = match (c.pk == pk.to_bytes(), Signature::from_bytes(&c.sig)) {
                (true, Ok(sig)) => pre.verify(&c.msg, &sig).is_ok(),
                (false, Ok(sig)) => XOnlyPublicKey::from_bytes(&c.pk)
                    .is_ok_and(|k| bip340::verify(&k, &c.msg, &sig).is_ok()),
                (_, Err(_)) => false,
            };
            assert_eq!(got, expected);
        }
    }
}

#[test]
fn batch_with_one_hot_key_and_many_bad() {
    // Many signatures by one key (merged into one base) with a few invalid ones.
    let mut rng = StdRng::seed_from_u64(5);
    let kp = keypair(&mut rng);
    let pk = XOnlyPublicKey::from_bytes(&kp.x_only_public_key().0.to_byte_array()).unwrap();
    let msgs: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_le_bytes().to_vec()).collect();
    let mut sigs: Vec<Signature> = msgs
        .iter()
        .map(|m| Signature::from_bytes(&schnorr::sign_no_aux_rand(m, &kp).to_byte_array()).unwrap())
        .collect();
    let bad = [3usize, 4, 77, 150, 199];
    for &b in &bad {
        sigs[b] = sigs[(b + 1) % 200];
    }
    let mut batch = BatchVerifier::with_capacity(200);
    for (m, s) in msgs.iter().zip(&sigs) {
        batch.push(&pk, m, s).unwrap();
    }
    assert_eq!(batch.verify().unwrap_err().invalid(), &bad);
    assert!(matches!(
        batch.push(&pk, &msgs[0], &sigs[0]),
        Err(tally_mpc::Error::BatchFull { capacity: 200 })
    ));
}

#[test]
fn batch_of_identical_entries_hits_doubling_paths() {
    // The same signature 300 times: equal R points meet in Pippenger buckets.
    let mut rng = StdRng::seed_from_u64(11);
    let kp = keypair(&mut rng);
    let pk = XOnlyPublicKey::from_bytes(&kp.x_only_public_key().0.to_byte_array()).unwrap();
    let msg = b"same message".to_vec();
    let sig = Signature::from_bytes(&schnorr::sign_no_aux_rand(&msg, &kp).to_byte_array()).unwrap();
    let wrong = b"other message".to_vec();
    let mut batch = BatchVerifier::with_capacity(301);
    for _ in 0..150 {
        batch.push(&pk, &msg, &sig).unwrap();
    }
    batch.push(&pk, &wrong, &sig).unwrap();
    for _ in 0..150 {
        batch.push(&pk, &msg, &sig).unwrap();
    }
    assert_eq!(batch.verify().unwrap_err().invalid(), &[150]);
    batch.clear();
    for _ in 0..300 {
        batch.push(&pk, &msg, &sig).unwrap();
    }
    batch.verify().unwrap();
}
