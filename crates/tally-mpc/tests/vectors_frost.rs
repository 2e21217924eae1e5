#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! RFC 9591 appendix E.5 FROST(secp256k1, SHA-256) vector from
//! `tests/vectors/rfc9591-frost-secp256k1-sha256.json`.

use serde_json::Value;
use tally_mpc::frost::{
    self, Identifier, ShareBatchVerifier, SignatureShare, SigningCommitments, SigningPackage,
    VerifyingKey, VerifyingShare,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex(s).try_into().unwrap()
}

/// Public key of a secret scalar, via libsecp256k1 (compressed).
fn public(secret: &str) -> [u8; 33] {
    let sk = secp256k1::SecretKey::from_secret_bytes(arr::<32>(secret)).unwrap();
    secp256k1::PublicKey::from_secret_key(&sk).serialize()
}

/// The vector's JSON, group key, message and round-one commitments.
fn vector() -> (
    Value,
    VerifyingKey,
    Vec<u8>,
    Vec<(Identifier, SigningCommitments)>,
) {
    let v: Value =
        serde_json::from_str(include_str!("vectors/rfc9591-frost-secp256k1-sha256.json")).unwrap();
    let inputs = &v["inputs"];
    let vk = VerifyingKey::from_bytes(&arr(inputs["group_public_key"].as_str().unwrap())).unwrap();
    let msg = hex(inputs["message"].as_str().unwrap());
    let commitments = v["round_one_outputs"]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let id =
                Identifier::from_u16(u16::try_from(o["identifier"].as_u64().unwrap()).unwrap())
                    .unwrap();
            let c = SigningCommitments::from_bytes(
                &arr(o["hiding_nonce_commitment"].as_str().unwrap()),
                &arr(o["binding_nonce_commitment"].as_str().unwrap()),
            )
            .unwrap();
            (id, c)
        })
        .collect();
    (v, vk, msg, commitments)
}

#[test]
fn rfc9591_secp256k1_sha256_vector() {
    let (v, vk, msg, commitments) = vector();
    let inputs = &v["inputs"];
    let r1 = v["round_one_outputs"]["outputs"].as_array().unwrap();
    let pkg = SigningPackage::new(&msg, &commitments).unwrap();
    for o in r1 {
        let id = Identifier::from_u16(u16::try_from(o["identifier"].as_u64().unwrap()).unwrap())
            .unwrap();
        assert_eq!(
            pkg.binding_factor(&vk, id).unwrap().to_vec(),
            hex(o["binding_factor"].as_str().unwrap())
        );
    }
    let shares_json = inputs["participant_shares"].as_array().unwrap();
    let vshare = |id: u64| {
        let s = shares_json
            .iter()
            .find(|s| s["identifier"].as_u64() == Some(id))
            .unwrap();
        VerifyingShare::from_bytes(&public(s["participant_share"].as_str().unwrap())).unwrap()
    };
    let mut shares = Vec::new();
    for o in v["round_two_outputs"]["outputs"].as_array().unwrap() {
        let idn = o["identifier"].as_u64().unwrap();
        let id = Identifier::from_u16(u16::try_from(idn).unwrap()).unwrap();
        let share = SignatureShare::from_bytes(&arr(o["sig_share"].as_str().unwrap())).unwrap();
        frost::verify_signature_share(&pkg, &vk, id, &vshare(idn), &share).unwrap();
        shares.push((id, share, vshare(idn)));
    }
    let sig = frost::aggregate(&pkg, &vk, &shares).unwrap();
    assert_eq!(
        sig.to_bytes().to_vec(),
        hex(v["final_output"]["sig"].as_str().unwrap())
    );
    frost::verify(&vk, &msg, &sig).unwrap();
    assert!(frost::verify(&vk, b"other", &sig).is_err());

    // Batch of the two shares passes; tamper one and the batch names it.
    let mut batch = ShareBatchVerifier::with_capacity(2);
    for (id, share, vs) in &shares {
        batch.push(&pkg, &vk, *id, vs, share).unwrap();
    }
    batch.verify().unwrap();
    batch.clear();
    let mut bad = shares[1].1.to_bytes();
    bad[31] ^= 1;
    let bad = SignatureShare::from_bytes(&bad).unwrap();
    batch
        .push(&pkg, &vk, shares[0].0, &shares[0].2, &shares[0].1)
        .unwrap();
    batch
        .push(&pkg, &vk, shares[1].0, &shares[1].2, &bad)
        .unwrap();
    assert_eq!(batch.verify().unwrap_err().invalid(), &[1]);
    let err =
        frost::aggregate(&pkg, &vk, &[shares[0], (shares[1].0, bad, shares[1].2)]).unwrap_err();
    assert_eq!(err.culprits(), &[shares[1].0]);
}

/// A package binds to the first key it is used with; every other key gets
/// `KeyMismatch`, also when two threads race to use a fresh package with different keys
/// (the loser once received the winner's session).
#[test]
fn a_package_serves_only_the_key_it_was_first_used_with() {
    let (_, vk, msg, commitments) = vector();
    let other = VerifyingKey::from_bytes(&public(
        "0000000000000000000000000000000000000000000000000000000000000007",
    ))
    .unwrap();

    let pkg = SigningPackage::new(&msg, &commitments).unwrap();
    let r_vk = pkg.group_commitment(&vk).unwrap();
    assert!(matches!(
        pkg.group_commitment(&other),
        Err(tally_mpc::Error::KeyMismatch)
    ));
    assert_eq!(pkg.group_commitment(&vk).unwrap(), r_vk);
    let r_other = SigningPackage::new(&msg, &commitments)
        .unwrap()
        .group_commitment(&other)
        .unwrap();
    assert_ne!(r_vk, r_other);

    for _ in 0..300 {
        let pkg = SigningPackage::new(&msg, &commitments).unwrap();
        let barrier = std::sync::Barrier::new(2);
        let (first, second) = std::thread::scope(|scope| {
            let one = scope.spawn(|| {
                barrier.wait();
                pkg.group_commitment(&vk)
            });
            let two = scope.spawn(|| {
                barrier.wait();
                pkg.group_commitment(&other)
            });
            (one.join().unwrap(), two.join().unwrap())
        });
        match (first, second) {
            (Ok(got), Err(tally_mpc::Error::KeyMismatch)) => assert_eq!(got, r_vk),
            (Err(tally_mpc::Error::KeyMismatch), Ok(got)) => assert_eq!(got, r_other),
            (first, second) => {
                panic!("both keys served by one package: {first:?} / {second:?}")
            }
        }
    }
}
