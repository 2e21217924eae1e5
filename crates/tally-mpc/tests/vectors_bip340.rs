#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Every BIP340 vector from `tests/vectors/bip340-test-vectors.csv`, through single,
//! precomputed-key and batch verification.

use tally_mpc::bip340::{self, BatchVerifier, PrecomputedKey, Signature, XOnlyPublicKey};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

struct Row {
    index: usize,
    pk: Vec<u8>,
    msg: Vec<u8>,
    sig: Vec<u8>,
    valid: bool,
}

fn rows() -> Vec<Row> {
    let text = include_str!("vectors/bip340-test-vectors.csv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Row {
                index: f[0].parse().unwrap(),
                pk: hex(f[2]),
                msg: hex(f[4]),
                sig: hex(f[5]),
                valid: f[6] == "TRUE",
            }
        })
        .collect()
}

fn single(r: &Row) -> Result<(), tally_mpc::Error> {
    let pk = XOnlyPublicKey::from_slice(&r.pk)?;
    let sig = Signature::from_slice(&r.sig)?;
    bip340::verify(&pk, &r.msg, &sig)
}

#[test]
fn all_19_vectors_single_and_precomputed() {
    let rows = rows();
    assert_eq!(rows.len(), 19);
    for r in &rows {
        assert_eq!(single(r).is_ok(), r.valid, "vector {}", r.index);
        if let (Ok(pk), Ok(sig)) = (
            XOnlyPublicKey::from_slice(&r.pk),
            Signature::from_slice(&r.sig),
        ) {
            let pre = PrecomputedKey::new(&pk);
            assert_eq!(
                pre.verify(&r.msg, &sig).is_ok(),
                r.valid,
                "precomputed, vector {}",
                r.index
            );
        }
    }
}

#[test]
fn vector_errors_are_typed() {
    let rows = rows();
    // 5: public key not on the curve; 14: public key exceeds the field size.
    assert!(matches!(
        XOnlyPublicKey::from_slice(&rows[5].pk),
        Err(tally_mpc::Error::NotOnCurve { .. })
    ));
    assert!(matches!(
        XOnlyPublicKey::from_slice(&rows[14].pk),
        Err(tally_mpc::Error::FieldElementOutOfRange { .. })
    ));
    // 12: r equals p; 13: s equals n.
    assert!(matches!(
        Signature::from_slice(&rows[12].sig),
        Err(tally_mpc::Error::FieldElementOutOfRange { .. })
    ));
    assert!(matches!(
        Signature::from_slice(&rows[13].sig),
        Err(tally_mpc::Error::ScalarOutOfRange { .. })
    ));
}

#[test]
fn batch_names_exactly_the_invalid_vectors() {
    let rows = rows();
    let parsed: Vec<(usize, XOnlyPublicKey, Vec<u8>, Signature, bool)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.index,
                XOnlyPublicKey::from_slice(&r.pk).ok()?,
                r.msg.clone(),
                Signature::from_slice(&r.sig).ok()?,
                r.valid,
            ))
        })
        .collect();
    let mut batch = BatchVerifier::with_capacity(parsed.len());
    for (_, pk, msg, sig, _) in &parsed {
        batch.push(pk, msg, sig).unwrap();
    }
    let err = batch.verify().unwrap_err();
    let expected: Vec<usize> = parsed
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.4)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(err.invalid(), expected.as_slice());
    // Only the valid ones: passes.
    batch.clear();
    for (_, pk, msg, sig, valid) in &parsed {
        if *valid {
            batch.push(pk, msg, sig).unwrap();
        }
    }
    batch.verify().unwrap();
}
