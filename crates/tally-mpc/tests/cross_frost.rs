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

fn vk_of(p: &zf::keys::PublicKeyPackage) -> VerifyingKey {
    let bytes: [u8; 33] = p.verifying_key().serialize().unwrap().try_into().unwrap();
    VerifyingKey::from_bytes(&bytes).unwrap()
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

impl Session {
    /// A fresh package for this session.
    fn package(&self) -> SigningPackage<'_> {
        SigningPackage::new(&self.msg, &self.commitments).unwrap()
    }

    /// `(id, share, verifying share)` for `aggregate`.
    fn plain_shares(&self) -> Vec<(Identifier, SignatureShare, VerifyingShare)> {
        self.shares
            .iter()
            .map(|(id, sh, vs, _)| (*id, *sh, *vs))
            .collect()
    }

    /// Indices of the shares frost-secp256k1 rejects.
    fn invalid_indices(&self) -> Vec<usize> {
        self.shares
            .iter()
            .enumerate()
            .filter(|(_, x)| !x.3)
            .map(|(i, _)| i)
            .collect()
    }
}

/// A batch result names exactly `want` (passes when `want` is empty).
fn assert_names(result: Result<(), tally_mpc::BatchError>, want: &[usize]) {
    match result {
        Ok(()) => assert!(want.is_empty(), "batch passed, expected {want:?} invalid"),
        Err(e) => assert_eq!(e.invalid(), want),
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
    let pkgs: Vec<SigningPackage<'_>> = sessions.iter().map(Session::package).collect();
    let mut checked = 0;
    for (s, pkg) in sessions.iter().zip(&pkgs) {
        for (id, share, vs, ok) in &s.shares {
            assert_eq!(
                frost::verify_signature_share(pkg, &s.vk, *id, vs, share).is_ok(),
                *ok
            );
            checked += 1;
        }
        let ours = s.plain_shares();
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
        assert_names(b.verify(), &s.invalid_indices());
    }
}

/// The coordinator's fast path: shares accepted by the batch are summed without verifying
/// the aggregate again; the result equals frost-secp256k1's signature and verifies. A
/// session with a bad share is still caught by the batch and named, by the batch and by
/// `aggregate`.
#[test]
fn verified_shares_aggregate_without_reverification() {
    let mut rng = StdRng::seed_from_u64(0xa66);
    let sessions: Vec<Session> = (0..200).map(|i| session(&mut rng, i % 4 == 1)).collect();
    let pkgs: Vec<SigningPackage<'_>> = sessions.iter().map(Session::package).collect();
    let total: usize = sessions.iter().map(|s| s.shares.len()).sum();
    let mut batch = ShareBatchVerifier::with_capacity(total);
    let mut owner = Vec::new();
    for (si, (s, pkg)) in sessions.iter().zip(&pkgs).enumerate() {
        for (k, (id, share, vs, _)) in s.shares.iter().enumerate() {
            batch.push(pkg, &s.vk, *id, vs, share).unwrap();
            owner.push((si, k));
        }
    }
    let invalid = batch.verify().unwrap_err().invalid().to_vec();
    let mut bad_sessions = 0;
    for (si, (s, pkg)) in sessions.iter().zip(&pkgs).enumerate() {
        let named: Vec<Identifier> = invalid
            .iter()
            .filter(|&&i| owner[i].0 == si)
            .map(|&i| s.shares[owner[i].1].0)
            .collect();
        let expected: Vec<Identifier> = s.shares.iter().filter(|x| !x.3).map(|x| x.0).collect();
        assert_eq!(named, expected, "batch culprits of session {si}");
        let ours = s.plain_shares();
        if named.is_empty() {
            let vs: Vec<_> = s.shares.iter().map(|(id, _, vs, _)| (*id, *vs)).collect();
            frost::verify_key_shares(&s.vk, vs.len(), &vs).unwrap();
            let sig = frost::aggregate_verified_shares(pkg, &s.vk, ours.len(), &ours).unwrap();
            assert_eq!(sig.to_bytes().to_vec(), *s.zf_sig.as_ref().unwrap());
            frost::verify(&s.vk, &s.msg, &sig).unwrap();
        } else {
            bad_sessions += 1;
            assert!(s.zf_sig.is_none());
            // `aggregate` (which verifies) names the same signers.
            assert_eq!(
                frost::aggregate(pkg, &s.vk, &ours).unwrap_err().culprits(),
                expected.as_slice()
            );
            // Summing a bad share without the check gives a signature that does not verify.
            let sig = frost::aggregate_verified_shares(pkg, &s.vk, ours.len(), &ours).unwrap();
            assert!(frost::verify(&s.vk, &s.msg, &sig).is_err());
        }
        // Input errors are still reported.
        assert!(matches!(
            frost::aggregate_verified_shares(pkg, &s.vk, ours.len() - 1, &ours[1..]),
            Err(tally_mpc::Error::MissingShare { .. })
        ));
        // Fewer shares than the threshold are refused before anything is summed.
        assert!(matches!(
            frost::aggregate_verified_shares(pkg, &s.vk, ours.len(), &ours[1..]),
            Err(tally_mpc::Error::TooFewSigners { got, need }) if got + 1 == need
        ));
        assert!(matches!(
            frost::aggregate_verified_shares(pkg, &s.vk, 0, &ours),
            Err(tally_mpc::Error::TooFewSigners { need: 1, .. })
        ));
    }
    assert!(bad_sessions >= 40, "only {bad_sessions} tampered sessions");
}

/// `verify_key_shares` accepts a dealer's key package and rejects a share swapped for
/// another signer's, a share of another key, and a wrong group key.
#[test]
fn key_shares_are_checked_against_the_key() {
    let mut rng = StdRng::seed_from_u64(0x6e1);
    for (max, min) in [(5u16, 3u16), (7, 5), (3, 2), (4, 2), (3, 3)] {
        let (_, pubkeys) =
            zf::keys::generate_with_dealer(max, min, zf::keys::IdentifierList::Default, &mut rng)
                .unwrap();
        let (_, other) =
            zf::keys::generate_with_dealer(max, min, zf::keys::IdentifierList::Default, &mut rng)
                .unwrap();
        let conv = |p: &zf::keys::PublicKeyPackage| -> Vec<(Identifier, VerifyingShare)> {
            p.verifying_shares()
                .iter()
                .map(|(id, vs)| {
                    (
                        id_of(id),
                        VerifyingShare::from_bytes(&vs.serialize().unwrap().try_into().unwrap())
                            .unwrap(),
                    )
                })
                .collect()
        };
        let vk = vk_of(&pubkeys);
        let other_vk = vk_of(&other);
        let shares = conv(&pubkeys);
        let min = usize::from(min);
        frost::verify_key_shares(&vk, min, &shares).unwrap();
        assert!(matches!(
            frost::verify_key_shares(&other_vk, min, &shares),
            Err(tally_mpc::Error::InconsistentVerifyingShares { identifier: None })
        ));
        // One share replaced by the other key's share of the same signer, at every
        // position (also among the first `min`, those a naive check would interpolate
        // from): it is named whenever there is a share to spare.
        let last = shares.len() - 1;
        for pos in 0..shares.len() {
            let mut bad = shares.clone();
            bad[pos].1 = conv(&other)[pos].1;
            let expect = if min < shares.len() {
                Some(bad[pos].0)
            } else {
                None
            };
            assert_eq!(
                frost::verify_key_shares(&vk, min, &bad).unwrap_err(),
                tally_mpc::Error::InconsistentVerifyingShares { identifier: expect },
                "{min}-of-{max}, wrong share at {pos}"
            );
        }
        // Two wrong shares: no single one is to blame.
        if shares.len() >= 2 {
            let mut bad = shares.clone();
            bad[0].1 = conv(&other)[0].1;
            bad[last].1 = conv(&other)[last].1;
            assert_eq!(
                frost::verify_key_shares(&vk, min, &bad).unwrap_err(),
                tally_mpc::Error::InconsistentVerifyingShares { identifier: None },
                "{min}-of-{max}, two wrong shares"
            );
        }
        assert!(matches!(
            frost::verify_key_shares(&vk, shares.len() + 1, &shares),
            Err(tally_mpc::Error::NotEnoughShares { .. })
        ));
        assert!(matches!(
            frost::verify_key_shares(&vk, 0, &shares),
            Err(tally_mpc::Error::NotEnoughShares { .. })
        ));
    }
}

/// Signatures summed without verification, checked in batches: exactly the sessions with a
/// bad share (or a wrong message) fail, as single `verify` says, through the Straus path
/// (small batches) and the Pippenger path (a batch over every session).
#[test]
fn signature_batches_name_exactly_the_bad_signatures() {
    let mut rng = StdRng::seed_from_u64(0x51b);
    let sessions: Vec<Session> = (0..150).map(|i| session(&mut rng, i % 5 == 2)).collect();
    let pkgs: Vec<SigningPackage<'_>> = sessions.iter().map(Session::package).collect();
    let sigs: Vec<frost::Signature> = sessions
        .iter()
        .zip(&pkgs)
        .map(|(s, pkg)| {
            let ours = s.plain_shares();
            frost::aggregate_unverified(pkg, &s.vk, &ours).unwrap()
        })
        .collect();
    let wrong_msg = b"another message".to_vec();
    let msg_of = |i: usize| -> &[u8] {
        if i % 7 == 3 {
            &wrong_msg
        } else {
            &sessions[i].msg
        }
    };
    let expected: Vec<usize> = (0..sessions.len())
        .filter(|&i| frost::verify(&sessions[i].vk, msg_of(i), &sigs[i]).is_err())
        .collect();
    for &i in &expected {
        let tampered = sessions[i].shares.iter().any(|x| !x.3);
        assert!(tampered || i % 7 == 3, "session {i} fails without a reason");
    }
    assert!(expected.len() >= 40, "only {} bad", expected.len());
    let mut batch = frost::SignatureBatchVerifier::with_capacity(sessions.len());
    for (i, (s, sig)) in sessions.iter().zip(&sigs).enumerate() {
        batch.push(&s.vk, msg_of(i), sig).unwrap();
    }
    assert_eq!(batch.verify().unwrap_err().invalid(), expected.as_slice());
    for chunk in (0..sessions.len()).collect::<Vec<_>>().chunks(5) {
        let mut small = frost::SignatureBatchVerifier::with_capacity(chunk.len());
        for &i in chunk {
            small.push(&sessions[i].vk, msg_of(i), &sigs[i]).unwrap();
        }
        let want: Vec<usize> = chunk
            .iter()
            .enumerate()
            .filter(|(_, i)| expected.contains(i))
            .map(|(k, _)| k)
            .collect();
        match small.verify() {
            Ok(()) => assert!(want.is_empty()),
            Err(e) => assert_eq!(e.invalid(), want.as_slice()),
        }
    }
    let mut full = frost::SignatureBatchVerifier::with_capacity(1);
    full.push(&sessions[0].vk, msg_of(0), &sigs[0]).unwrap();
    assert!(matches!(
        full.push(&sessions[0].vk, msg_of(0), &sigs[0]),
        Err(tally_mpc::Error::BatchFull { capacity: 1 })
    ));
}

/// Precomputed verifying shares and keys give the same answers as the plain ones: single
/// share checks, signature checks, and batches (Straus and Pippenger paths) naming the same
/// invalid entries.
#[test]
fn precomputed_shares_and_keys_agree_with_plain_ones() {
    let mut rng = StdRng::seed_from_u64(0x9c0);
    let sessions: Vec<Session> = (0..24).map(|i| session(&mut rng, i % 3 == 0)).collect();
    let pkgs: Vec<SigningPackage<'_>> = sessions.iter().map(Session::package).collect();
    let pre_keys: Vec<frost::PrecomputedVerifyingKey> = sessions
        .iter()
        .map(|s| frost::PrecomputedVerifyingKey::new(&s.vk))
        .collect();
    let pre_shares: Vec<Vec<frost::PrecomputedVerifyingShare>> = sessions
        .iter()
        .map(|s| {
            s.shares
                .iter()
                .map(|(_, _, vs, _)| frost::PrecomputedVerifyingShare::new(vs))
                .collect()
        })
        .collect();
    let mut expected_shares = Vec::new();
    let mut expected_sigs = Vec::new();
    let mut sigs = Vec::new();
    let mut k = 0;
    for (si, (s, pkg)) in sessions.iter().zip(&pkgs).enumerate() {
        for ((id, share, vs, ok), pre) in s.shares.iter().zip(&pre_shares[si]) {
            assert_eq!(pre.share(), vs);
            assert_eq!(pre.verify_share(pkg, &s.vk, *id, share).is_ok(), *ok);
            assert_eq!(
                frost::verify_signature_share(pkg, &s.vk, *id, vs, share).is_ok(),
                *ok
            );
            if !ok {
                expected_shares.push(k);
            }
            k += 1;
        }
        let ours = s.plain_shares();
        let sig = frost::aggregate_unverified(pkg, &s.vk, &ours).unwrap();
        let ok = frost::verify(&s.vk, &s.msg, &sig).is_ok();
        assert_eq!(pre_keys[si].verify(&s.msg, &sig).is_ok(), ok);
        assert!(pre_keys[si].verify(b"other", &sig).is_err());
        if !ok {
            expected_sigs.push(si);
        }
        sigs.push(sig);
    }
    assert!(!expected_shares.is_empty() && !expected_sigs.is_empty());
    // Whole batches (Pippenger) and one session at a time (Straus), mixing plain and
    // precomputed pushes.
    let mut shares = ShareBatchVerifier::with_capacity(k);
    let mut sig_batch = frost::SignatureBatchVerifier::with_capacity(sessions.len());
    for (si, (s, pkg)) in sessions.iter().zip(&pkgs).enumerate() {
        for (j, ((id, share, vs, _), pre)) in s.shares.iter().zip(&pre_shares[si]).enumerate() {
            if (si + j) % 4 == 0 {
                shares.push(pkg, &s.vk, *id, vs, share).unwrap();
            } else {
                shares
                    .push_precomputed(pkg, &s.vk, *id, pre, share)
                    .unwrap();
            }
        }
        if si % 2 == 0 {
            sig_batch
                .push_precomputed(&pre_keys[si], &s.msg, &sigs[si])
                .unwrap();
        } else {
            sig_batch.push(&s.vk, &s.msg, &sigs[si]).unwrap();
        }
        let mut one = ShareBatchVerifier::with_capacity(s.shares.len());
        for ((id, share, _, _), pre) in s.shares.iter().zip(&pre_shares[si]) {
            one.push_precomputed(pkg, &s.vk, *id, pre, share).unwrap();
        }
        assert_names(one.verify(), &s.invalid_indices());
    }
    assert_eq!(
        shares.verify().unwrap_err().invalid(),
        expected_shares.as_slice()
    );
    assert_eq!(
        sig_batch.verify().unwrap_err().invalid(),
        expected_sigs.as_slice()
    );
}

/// `bind_packages` gives every package the same binding factors, group commitment and
/// `c * lambda_i` as binding it alone, leaves already bound packages alone, and the shares
/// and signatures check the same afterwards.
#[test]
fn bind_packages_matches_binding_one_by_one() {
    let mut rng = StdRng::seed_from_u64(0xb1d);
    let sessions: Vec<Session> = (0..40).map(|i| session(&mut rng, i % 4 == 3)).collect();
    // One key per batch call: group the sessions by key (each random session has its own
    // key, so bind each key's packages together, plus one call over mixed keys).
    let together: Vec<SigningPackage<'_>> = sessions.iter().map(Session::package).collect();
    let alone: Vec<SigningPackage<'_>> = sessions
        .iter()
        .map(|s| SigningPackage::with_key(&s.msg, &s.commitments, &s.vk).unwrap())
        .collect();
    // Bind the first package alone first: bind_packages must leave it bound as it was.
    together[0].group_commitment(&sessions[0].vk).unwrap();
    for (s, p) in sessions.iter().zip(&together) {
        frost::bind_packages(&[p, &together[0]], &s.vk);
    }
    // A call over many packages with one key binds all whose key it is (the others are
    // bound to their own keys already and are left alone).
    let refs: Vec<&SigningPackage<'_>> = together.iter().collect();
    frost::bind_packages(&refs, &sessions[1].vk);
    for ((s, t), a) in sessions.iter().zip(&together).zip(&alone) {
        assert_eq!(
            t.group_commitment(&s.vk).unwrap(),
            a.group_commitment(&s.vk).unwrap()
        );
        for (id, share, vs, ok) in &s.shares {
            assert_eq!(
                t.binding_factor(&s.vk, *id).unwrap(),
                a.binding_factor(&s.vk, *id).unwrap()
            );
            assert_eq!(
                t.challenge_lambda(&s.vk, *id).unwrap(),
                a.challenge_lambda(&s.vk, *id).unwrap()
            );
            assert_eq!(
                frost::verify_signature_share(t, &s.vk, *id, vs, share).is_ok(),
                *ok
            );
        }
    }
    // Many packages under one key in one call.
    let (_, pubkeys) =
        zf::keys::generate_with_dealer(5, 3, zf::keys::IdentifierList::Default, &mut rng).unwrap();
    let vk = vk_of(&pubkeys);
    let pkgs: Vec<SigningPackage<'_>> = sessions.iter().map(Session::package).collect();
    let refs: Vec<&SigningPackage<'_>> = pkgs.iter().collect();
    frost::bind_packages(&refs, &vk);
    for (s, p) in sessions.iter().zip(&pkgs) {
        let single = SigningPackage::with_key(&s.msg, &s.commitments, &vk).unwrap();
        assert_eq!(
            p.group_commitment(&vk).unwrap(),
            single.group_commitment(&vk).unwrap()
        );
        let id = s.commitments[0].0;
        assert_eq!(
            p.challenge_lambda(&vk, id).unwrap(),
            single.challenge_lambda(&vk, id).unwrap()
        );
    }
}

/// Shares that are each valid but do not add up to a signature for the key (here one
/// signer of a 2-of-3 key signs alone, which frost-secp256k1 allows once its key package
/// says 1-of-3): `aggregate` names no culprit, because none cheated, and says so with
/// `SharesDoNotMatchKey` instead of an empty culprit list.
#[test]
fn valid_shares_below_the_threshold_are_no_culprits() {
    let mut rng = StdRng::seed_from_u64(0x7e5);
    let (secret_shares, pubkeys) =
        zf::keys::generate_with_dealer(3, 2, zf::keys::IdentifierList::Default, &mut rng).unwrap();
    let (zf_id, secret) = secret_shares.into_iter().next().unwrap();
    let full = zf::keys::KeyPackage::try_from(secret).unwrap();
    let alone = zf::keys::KeyPackage::new(
        zf_id,
        *full.signing_share(),
        *full.verifying_share(),
        *full.verifying_key(),
        1,
    );
    let msg = b"one signer of two".to_vec();
    let (nonces, zf_commitment) = zf::round1::commit(alone.signing_share(), &mut rng);
    let zf_pkg = zf::SigningPackage::new(BTreeMap::from([(zf_id, zf_commitment)]), &msg);
    let zf_share = zf::round2::sign(&zf_pkg, &nonces, &alone).unwrap();

    let id = id_of(&zf_id);
    let commitments = vec![(
        id,
        SigningCommitments::from_bytes(
            &zf_commitment
                .hiding()
                .serialize()
                .unwrap()
                .try_into()
                .unwrap(),
            &zf_commitment
                .binding()
                .serialize()
                .unwrap()
                .try_into()
                .unwrap(),
        )
        .unwrap(),
    )];
    let pkg = SigningPackage::new(&msg, &commitments).unwrap();
    let vk = vk_of(&pubkeys);
    let share = SignatureShare::from_bytes(&zf_share.serialize().try_into().unwrap()).unwrap();
    let vshare = VerifyingShare::from_bytes(
        &pubkeys.verifying_shares()[&zf_id]
            .serialize()
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .unwrap();
    frost::verify_signature_share(&pkg, &vk, id, &vshare, &share).unwrap();
    let err = frost::aggregate(&pkg, &vk, &[(id, share, vshare)]).unwrap_err();
    assert_eq!(err, tally_mpc::AggregateError::SharesDoNotMatchKey);
    assert!(err.culprits().is_empty());
    assert!(err.to_string().contains("threshold"));
}
