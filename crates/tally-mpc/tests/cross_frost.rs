#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::too_many_lines,
    reason = "test code"
)]
//! Cross-check against the Zcash Foundation's `frost-secp256k1` 3.x on random sessions:
//! honest and tampered shares, aggregation with culprits, and batches across sessions.

use frost_secp256k1 as zf;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use tally_mpc::frost::{
    self, Identifier, ShareBatchVerifier, SignatureShare, SigningCommitments, SigningPackage,
    VerifyingKey, VerifyingShare,
};

struct Session {
    msg: Vec<u8>,
    commitments: Vec<(Identifier, SigningCommitments)>,
    vk: VerifyingKey,
    /// (id, share, verifying share, zf says valid)
    shares: Vec<(Identifier, SignatureShare, VerifyingShare, bool)>,
    zf_sig: Option<Vec<u8>>,
}

fn id_of(id: &zf::Identifier) -> Identifier {
    Identifier::from_bytes(&id.serialize().try_into().unwrap()).unwrap()
}

fn session(rng: &mut StdRng, tamper: bool) -> Session {
    let (max, min) = [(3u16, 2u16), (5, 3), (7, 5)][rng.gen_range(0..3)];
    let (secret_shares, pubkeys) =
        zf::keys::generate_with_dealer(max, min, zf::keys::IdentifierList::Default, &mut *rng)
            .unwrap();
    let key_packages: BTreeMap<_, _> = secret_shares
        .into_iter()
        .map(|(id, s)| (id, zf::keys::KeyPackage::try_from(s).unwrap()))
        .collect();
    let mut ids: Vec<zf::Identifier> = key_packages.keys().copied().collect();
    // A random subset of `min` signers.
    while ids.len() > usize::from(min) {
        ids.remove(rng.gen_range(0..ids.len()));
    }
    let len = rng.gen_range(0..64);
    let msg: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
    let mut nonces = BTreeMap::new();
    let mut zf_commitments = BTreeMap::new();
    for id in &ids {
        let (n, c) = zf::round1::commit(key_packages[id].signing_share(), &mut *rng);
        nonces.insert(*id, n);
        zf_commitments.insert(*id, c);
    }
    let zf_pkg = zf::SigningPackage::new(zf_commitments.clone(), &msg);
    let mut zf_shares = BTreeMap::new();
    for id in &ids {
        zf_shares.insert(
            *id,
            zf::round2::sign(&zf_pkg, &nonces[id], &key_packages[id]).unwrap(),
        );
    }
    let victim = if tamper {
        Some(ids[rng.gen_range(0..ids.len())])
    } else {
        None
    };
    if let Some(v) = victim {
        let mut b = zf_shares[&v].serialize();
        let i = rng.gen_range(0..32);
        b[i] ^= 1 << rng.gen_range(0..8);
        // Keep it a valid scalar encoding (top bits below n): clear the top byte's high bit if needed.
        if let Ok(s) = zf::round2::SignatureShare::deserialize(&b) {
            zf_shares.insert(v, s);
        } else {
            b[0] &= 0x7f;
            zf_shares.insert(v, zf::round2::SignatureShare::deserialize(&b).unwrap());
        }
    }
    let zf_vk = pubkeys.verifying_key();
    let vk = VerifyingKey::from_bytes(&zf_vk.serialize().unwrap().try_into().unwrap()).unwrap();
    let mut shares = Vec::new();
    for id in &ids {
        let vs = &pubkeys.verifying_shares()[id];
        let ok =
            frost_core::verify_signature_share(*id, vs, &zf_shares[id], &zf_pkg, zf_vk).is_ok();
        shares.push((
            id_of(id),
            SignatureShare::from_bytes(&zf_shares[id].serialize().try_into().unwrap()).unwrap(),
            VerifyingShare::from_bytes(&vs.serialize().unwrap().try_into().unwrap()).unwrap(),
            ok,
        ));
    }
    let zf_sig = zf::aggregate(&zf_pkg, &zf_shares, &pubkeys)
        .ok()
        .map(|s| s.serialize().unwrap());
    let commitments = ids
        .iter()
        .map(|id| {
            let c = &zf_commitments[id];
            (
                id_of(id),
                SigningCommitments::from_bytes(
                    &c.hiding().serialize().unwrap().try_into().unwrap(),
                    &c.binding().serialize().unwrap().try_into().unwrap(),
                )
                .unwrap(),
            )
        })
        .collect();
    Session {
        msg,
        commitments,
        vk,
        shares,
        zf_sig,
    }
}

/// About 3.3 shares per session: over 10,000 share cases.
const SESSIONS: usize = 3_000;

#[test]
fn agrees_with_frost_secp256k1_on_random_sessions() {
    let mut rng = StdRng::seed_from_u64(0xf205);
    let sessions: Vec<Session> = (0..SESSIONS)
        .map(|i| session(&mut rng, i % 3 == 1))
        .collect();
    let pkgs: Vec<SigningPackage<'_>> = sessions
        .iter()
        .map(|s| SigningPackage::new(&s.msg, &s.commitments).unwrap())
        .collect();
    let mut checked = 0;
    for (s, pkg) in sessions.iter().zip(&pkgs) {
        for (id, share, vs, ok) in &s.shares {
            assert_eq!(
                frost::verify_signature_share(pkg, &s.vk, *id, vs, share).is_ok(),
                *ok
            );
            checked += 1;
        }
        let ours: Vec<_> = s
            .shares
            .iter()
            .map(|(id, sh, vs, _)| (*id, *sh, *vs))
            .collect();
        match (frost::aggregate(pkg, &s.vk, &ours), &s.zf_sig) {
            (Ok(sig), Some(zf_sig)) => {
                assert_eq!(sig.to_bytes().to_vec(), *zf_sig);
                frost::verify(&s.vk, &s.msg, &sig).unwrap();
            }
            (Err(e), None) => {
                let expected: Vec<Identifier> =
                    s.shares.iter().filter(|x| !x.3).map(|x| x.0).collect();
                assert_eq!(e.culprits(), expected.as_slice());
            }
            (a, b) => panic!("disagree: ours {a:?}, zf {b:?}"),
        }
    }
    assert!(checked >= 10_000, "only {checked} share cases");
    // One batch across all sessions: exactly the shares frost-secp256k1 rejects.
    let total: usize = sessions.iter().map(|s| s.shares.len()).sum();
    let mut batch = ShareBatchVerifier::with_capacity(total);
    let mut expected = Vec::new();
    let mut k = 0;
    for (s, pkg) in sessions.iter().zip(&pkgs) {
        for (id, share, vs, ok) in &s.shares {
            batch.push(pkg, &s.vk, *id, vs, share).unwrap();
            if !ok {
                expected.push(k);
            }
            k += 1;
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(batch.verify().unwrap_err().invalid(), expected.as_slice());
    // Small batches through the Straus path.
    for (s, pkg) in sessions.iter().zip(&pkgs).take(60) {
        let mut b = ShareBatchVerifier::with_capacity(s.shares.len());
        for (id, share, vs, _) in &s.shares {
            b.push(pkg, &s.vk, *id, vs, share).unwrap();
        }
        let exp: Vec<usize> = s
            .shares
            .iter()
            .enumerate()
            .filter(|(_, x)| !x.3)
            .map(|(i, _)| i)
            .collect();
        match b.verify() {
            Ok(()) => assert!(exp.is_empty()),
            Err(e) => assert_eq!(e.invalid(), exp.as_slice()),
        }
    }
}
