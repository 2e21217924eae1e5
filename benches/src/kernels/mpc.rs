//! Instruction-count kernels and shared fixtures for `tally-mpc`, side by side with
//! libsecp256k1 (`secp256k1`), k256 0.14 and the Zcash Foundation's `frost-secp256k1` 3.
//!
//! Units: `bip340_verify/*` is one verification per iteration; `bip340_batch<n>/*` is one
//! whole batch of `n` (push + verify) per iteration, so divide by `n` for a per-signature
//! figure; `frost_share3/*` is one 3-of-5 session's three share checks per iteration
//! (Tally includes building the `SigningPackage`), divide by 3; `frost_batch258/*` is 86
//! sessions' 258 shares (packages included; `_prebuilt`: packages built before the loop)
//! per iteration, divide by 258; `frost_verify/*` is one FROST signature check per
//! iteration; `frost_coord32/*` is one coordinator batch of 32 sessions from wire bytes to
//! signatures per iteration (see [`frost_coord`]), divide by 32.
#![allow(
    clippy::missing_panics_doc,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::type_complexity,
    reason = "bench fixtures"
)]

use super::{Kernel, tells_apart};
use std::collections::BTreeMap;
use std::hint::black_box;
use tally_mpc::bip340;
use tally_mpc::frost;

/// One BIP340 fixture: key bytes, 32-byte message, signature bytes.
#[derive(Clone)]
pub struct Bip340Case {
    /// x-only key.
    pub pk: [u8; 32],
    /// Message.
    pub msg: [u8; 32],
    /// Signature.
    pub sig: [u8; 64],
}

/// `n` signatures by `n` distinct keys (or one key when `one_key`), made with libsecp256k1.
pub fn bip340_cases(n: usize, one_key: bool) -> Vec<Bip340Case> {
    let kp_of = |i: u64| {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&(i + 1).to_be_bytes());
        b[31] = 1;
        secp256k1::Keypair::from_secret_key(&secp256k1::SecretKey::from_secret_bytes(b).unwrap())
    };
    (0..n as u64)
        .map(|i| {
            let kp = kp_of(if one_key { 0 } else { i });
            let mut msg = [0u8; 32];
            msg[..8].copy_from_slice(&i.to_le_bytes());
            let sig = secp256k1::schnorr::sign_no_aux_rand(&msg, &kp).to_byte_array();
            Bip340Case {
                pk: kp.x_only_public_key().0.to_byte_array(),
                msg,
                sig,
            }
        })
        .collect()
}

/// Parsed Tally inputs.
pub fn tally_parse(cases: &[Bip340Case]) -> Vec<(bip340::XOnlyPublicKey, bip340::Signature)> {
    cases
        .iter()
        .map(|c| {
            (
                bip340::XOnlyPublicKey::from_bytes(&c.pk).unwrap(),
                bip340::Signature::from_bytes(&c.sig).unwrap(),
            )
        })
        .collect()
}

/// Parsed libsecp256k1 inputs.
pub fn libsecp_parse(
    cases: &[Bip340Case],
) -> Vec<(secp256k1::XOnlyPublicKey, secp256k1::schnorr::Signature)> {
    cases
        .iter()
        .map(|c| {
            (
                secp256k1::XOnlyPublicKey::from_byte_array(c.pk).unwrap(),
                secp256k1::schnorr::Signature::from_byte_array(c.sig),
            )
        })
        .collect()
}

/// Parsed k256 inputs.
pub fn k256_parse(
    cases: &[Bip340Case],
) -> Vec<(k256::schnorr::VerifyingKey, k256::schnorr::Signature)> {
    cases
        .iter()
        .map(|c| {
            (
                k256::schnorr::VerifyingKey::from_bytes(&c.pk.into()).unwrap(),
                k256::schnorr::Signature::try_from(c.sig.as_slice()).unwrap(),
            )
        })
        .collect()
}

const FIXTURES: usize = 64;

/// `msg` with one bit flipped: a message the signature does not sign.
fn flipped(msg: &[u8]) -> Vec<u8> {
    let mut m = msg.to_vec();
    if let Some(b) = m.first_mut() {
        *b ^= 1;
    }
    m
}

fn verify_tally_cold(iters: u64) -> u64 {
    let cases = bip340_cases(FIXTURES, false);
    let parsed = tally_parse(&cases);
    tally_mpc::warm_up();
    let bad = flipped(&cases[0].msg);
    if !tells_apart(|genuine| {
        let msg: &[u8] = if genuine { &cases[0].msg } else { &bad };
        bip340::verify(&parsed[0].0, msg, &parsed[0].1).is_ok()
    }) {
        return 0;
    }
    let mut ok = 0;
    for i in 0..iters as usize {
        let (pk, sig) = &parsed[i % FIXTURES];
        ok += u64::from(
            bip340::verify(black_box(pk), &cases[i % FIXTURES].msg, black_box(sig)).is_ok(),
        );
    }
    ok
}

fn verify_tally_precomputed(iters: u64) -> u64 {
    let cases = bip340_cases(FIXTURES, true);
    let parsed = tally_parse(&cases);
    let pre = bip340::PrecomputedKey::new(&parsed[0].0);
    tally_mpc::warm_up();
    let bad = flipped(&cases[0].msg);
    if !tells_apart(|genuine| {
        let msg: &[u8] = if genuine { &cases[0].msg } else { &bad };
        pre.verify(msg, &parsed[0].1).is_ok()
    }) {
        return 0;
    }
    let mut ok = 0;
    for i in 0..iters as usize {
        let (_, sig) = &parsed[i % FIXTURES];
        ok += u64::from(
            black_box(&pre)
                .verify(&cases[i % FIXTURES].msg, black_box(sig))
                .is_ok(),
        );
    }
    ok
}

fn verify_libsecp(iters: u64) -> u64 {
    let cases = bip340_cases(FIXTURES, false);
    let parsed = libsecp_parse(&cases);
    let mut ok = 0;
    for i in 0..iters as usize {
        let (pk, sig) = &parsed[i % FIXTURES];
        ok += u64::from(
            secp256k1::schnorr::verify(black_box(sig), &cases[i % FIXTURES].msg, black_box(pk))
                .is_ok(),
        );
    }
    ok
}

fn verify_k256(iters: u64) -> u64 {
    let cases = bip340_cases(FIXTURES, false);
    let parsed = k256_parse(&cases);
    let mut ok = 0;
    for i in 0..iters as usize {
        let (pk, sig) = &parsed[i % FIXTURES];
        ok += u64::from(
            black_box(pk)
                .verify_raw(&cases[i % FIXTURES].msg, black_box(sig))
                .is_ok(),
        );
    }
    ok
}

/// One batch of `n` (push + verify) per iteration.
pub fn batch_tally(n: usize, one_key: bool, iters: u64) -> u64 {
    let cases = bip340_cases(n, one_key);
    let parsed = tally_parse(&cases);
    tally_mpc::warm_up();
    // The last signature checked against another message: the whole batch must fail.
    let bad = cases.last().map(|c| flipped(&c.msg)).unwrap_or_default();
    if !tells_apart(|genuine| {
        let mut b = bip340::BatchVerifier::with_capacity(n);
        for (k, ((pk, sig), c)) in parsed.iter().zip(&cases).enumerate() {
            let msg: &[u8] = if !genuine && k + 1 == n { &bad } else { &c.msg };
            if b.push(pk, msg, sig).is_err() {
                return false;
            }
        }
        b.verify().is_ok()
    }) {
        return 0;
    }
    let mut batch = bip340::BatchVerifier::with_capacity(n);
    let mut ok = 0;
    for _ in 0..iters {
        batch.clear();
        for ((pk, sig), c) in parsed.iter().zip(&cases) {
            batch.push(pk, &c.msg, sig).unwrap();
        }
        ok += u64::from(batch.verify().is_ok());
    }
    ok
}

/// Indices of the `bad` entries [`batch_tally_culprits`] spoils in a batch of `n`: spread
/// evenly, the first at 0.
pub fn spoiled(n: usize, bad: usize) -> Vec<usize> {
    if bad == 0 {
        return Vec::new();
    }
    (0..bad).map(|k| k * n / bad).collect()
}

/// A batch of `n` BIP340 signatures of which `bad` are invalid (each checked against
/// another message, at [`spoiled`]): the cases, Tally's parsed keys and signatures, the
/// message each entry is checked against, and the spoiled indices.
pub struct CulpritBatch {
    /// The signatures, as libsecp256k1 made them.
    pub cases: Vec<Bip340Case>,
    /// Tally's parsed keys and signatures.
    pub parsed: Vec<(bip340::XOnlyPublicKey, bip340::Signature)>,
    /// The message each entry is checked against.
    pub msgs: Vec<Vec<u8>>,
    /// The invalid entries.
    pub spoilt: Vec<usize>,
}

impl CulpritBatch {
    /// The batch of `n` with `bad` invalid entries.
    pub fn new(n: usize, bad: usize) -> Self {
        let cases = bip340_cases(n, false);
        let parsed = tally_parse(&cases);
        let spoilt = spoiled(n, bad);
        let msgs = cases
            .iter()
            .enumerate()
            .map(|(k, c)| {
                if spoilt.contains(&k) {
                    flipped(&c.msg)
                } else {
                    c.msg.to_vec()
                }
            })
            .collect();
        Self {
            cases,
            parsed,
            msgs,
            spoilt,
        }
    }

    /// Pushes the batch into `batch` (cleared first), verifies it, and returns whether
    /// the culprits named are exactly the spoiled entries.
    pub fn run<'a>(&'a self, batch: &mut bip340::BatchVerifier<'a>) -> bool {
        batch.clear();
        for ((pk, sig), msg) in self.parsed.iter().zip(&self.msgs) {
            if batch.push(pk, msg, sig).is_err() {
                return false;
            }
        }
        match batch.verify() {
            Ok(()) => self.spoilt.is_empty(),
            Err(e) => e.invalid() == self.spoilt.as_slice(),
        }
    }
}

/// One batch of `n` with `bad` invalid entries ([`CulpritBatch`]) per iteration: push,
/// verify, and compare the culprits the error names with the spoiled indices. Returns
/// the number of iterations that named exactly those.
pub fn batch_tally_culprits(n: usize, bad: usize, iters: u64) -> u64 {
    let fixture = CulpritBatch::new(n, bad);
    tally_mpc::warm_up();
    let mut batch = bip340::BatchVerifier::with_capacity(n);
    (0..iters).map(|_| u64::from(fixture.run(&mut batch))).sum()
}

/// A FROST session's inputs in bytes, made with `frost-secp256k1`.
pub struct FrostSession {
    /// Message.
    pub msg: Vec<u8>,
    /// Group key.
    pub vk: [u8; 33],
    /// `(id, hiding, binding, share, verifying share)` per signer.
    pub signers: Vec<([u8; 32], [u8; 33], [u8; 33], [u8; 32], [u8; 33])>,
    /// frost-secp256k1 objects for the peer kernel.
    pub zf: (
        frost_secp256k1::SigningPackage,
        frost_secp256k1::keys::PublicKeyPackage,
        BTreeMap<frost_secp256k1::Identifier, frost_secp256k1::round2::SignatureShare>,
    ),
}

/// The threshold of the sessions' key (3-of-5).
const FROST_MIN_SIGNERS: u16 = 3;

/// `sessions` sessions of 3-of-5 under one key, each signed by a rotating 3-signer subset.
pub fn frost_sessions(sessions: usize) -> Vec<FrostSession> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let (shares, pubkeys) = frost_secp256k1::keys::generate_with_dealer(
        5,
        FROST_MIN_SIGNERS,
        frost_secp256k1::keys::IdentifierList::Default,
        &mut rng,
    )
    .unwrap();
    let kps: BTreeMap<_, _> = shares
        .into_iter()
        .map(|(id, s)| (id, frost_secp256k1::keys::KeyPackage::try_from(s).unwrap()))
        .collect();
    let ids: Vec<_> = kps.keys().copied().collect();
    (0..sessions)
        .map(|s| {
            let chosen: Vec<_> = (0..3).map(|k| ids[(s + k) % 5]).collect();
            let msg = format!("session {s}").into_bytes();
            let mut nonces = BTreeMap::new();
            let mut comms = BTreeMap::new();
            for id in &chosen {
                let (n, c) = frost_secp256k1::round1::commit(kps[id].signing_share(), &mut rng);
                nonces.insert(*id, n);
                comms.insert(*id, c);
            }
            let pkg = frost_secp256k1::SigningPackage::new(comms.clone(), &msg);
            let zshares: BTreeMap<_, _> = chosen
                .iter()
                .map(|id| {
                    (
                        *id,
                        frost_secp256k1::round2::sign(&pkg, &nonces[id], &kps[id]).unwrap(),
                    )
                })
                .collect();
            let signers = chosen
                .iter()
                .map(|id| {
                    (
                        id.serialize().try_into().unwrap(),
                        comms[id].hiding().serialize().unwrap().try_into().unwrap(),
                        comms[id].binding().serialize().unwrap().try_into().unwrap(),
                        zshares[id].serialize().try_into().unwrap(),
                        pubkeys.verifying_shares()[id]
                            .serialize()
                            .unwrap()
                            .try_into()
                            .unwrap(),
                    )
                })
                .collect();
            FrostSession {
                msg,
                vk: pubkeys
                    .verifying_key()
                    .serialize()
                    .unwrap()
                    .try_into()
                    .unwrap(),
                signers,
                zf: (pkg, pubkeys.clone(), zshares),
            }
        })
        .collect()
}

/// Decoded Tally inputs of one session.
pub struct TallySession {
    /// Group key.
    pub vk: frost::VerifyingKey,
    /// Commitments.
    pub commitments: Vec<(frost::Identifier, frost::SigningCommitments)>,
    /// `(id, share, verifying share)`.
    pub shares: Vec<(
        frost::Identifier,
        frost::SignatureShare,
        frost::VerifyingShare,
    )>,
}

/// Decodes sessions for Tally.
pub fn tally_sessions(sessions: &[FrostSession]) -> Vec<TallySession> {
    sessions
        .iter()
        .map(|s| TallySession {
            vk: frost::VerifyingKey::from_bytes(&s.vk).unwrap(),
            commitments: s
                .signers
                .iter()
                .map(|(id, h, b, _, _)| {
                    (
                        frost::Identifier::from_bytes(id).unwrap(),
                        frost::SigningCommitments::from_bytes(h, b).unwrap(),
                    )
                })
                .collect(),
            shares: s
                .signers
                .iter()
                .map(|(id, _, _, z, y)| {
                    (
                        frost::Identifier::from_bytes(id).unwrap(),
                        frost::SignatureShare::from_bytes(z).unwrap(),
                        frost::VerifyingShare::from_bytes(y).unwrap(),
                    )
                })
                .collect(),
        })
        .collect()
}

const FROST_FIXTURES: usize = 16;

/// Whether `verify(package, key, id, verifying share, share)` accepts the first share of
/// the first session and refuses the second signer's share under the first signer's id.
fn share_check_tells_apart(
    sessions: &[FrostSession],
    ts: &[TallySession],
    verify: impl Fn(
        &frost::SigningPackage<'_>,
        &frost::VerifyingKey,
        frost::Identifier,
        &frost::VerifyingShare,
        &frost::SignatureShare,
    ) -> bool,
) -> bool {
    let (s, t) = (&sessions[0], &ts[0]);
    let pkg = frost::SigningPackage::new(&s.msg, &t.commitments).unwrap();
    let (id, z, y) = &t.shares[0];
    let other = &t.shares[1].1;
    tells_apart(|genuine| verify(&pkg, &t.vk, *id, y, if genuine { z } else { other }))
}

fn frost_share3_tally(iters: u64) -> u64 {
    let sessions = frost_sessions(FROST_FIXTURES);
    let ts = tally_sessions(&sessions);
    tally_mpc::warm_up();
    if !share_check_tells_apart(&sessions, &ts, |pkg, vk, id, y, z| {
        frost::verify_signature_share(pkg, vk, id, y, z).is_ok()
    }) {
        return 0;
    }
    let mut ok = 0;
    for i in 0..iters as usize {
        let (s, t) = (&sessions[i % FROST_FIXTURES], &ts[i % FROST_FIXTURES]);
        let pkg = frost::SigningPackage::new(&s.msg, &t.commitments).unwrap();
        for (id, z, y) in &t.shares {
            ok +=
                u64::from(frost::verify_signature_share(black_box(&pkg), &t.vk, *id, y, z).is_ok());
        }
    }
    ok
}

fn frost_share3_zf(iters: u64) -> u64 {
    let sessions = frost_sessions(FROST_FIXTURES);
    let mut ok = 0;
    for i in 0..iters as usize {
        let (pkg, pubkeys, shares) = &sessions[i % FROST_FIXTURES].zf;
        for (id, z) in shares {
            let y = &pubkeys.verifying_shares()[id];
            ok += u64::from(
                frost_core::verify_signature_share(
                    *id,
                    y,
                    z,
                    black_box(pkg),
                    pubkeys.verifying_key(),
                )
                .is_ok(),
            );
        }
    }
    ok
}

/// Sessions in the batched FROST kernel (3 shares each).
pub const FROST_BATCH_SESSIONS: usize = 86;

/// One batch of every share of `sessions` (packages built inside) per iteration.
pub fn frost_batch_tally(sessions: &[FrostSession], ts: &[TallySession], iters: u64) -> u64 {
    let total: usize = ts.iter().map(|t| t.shares.len()).sum();
    let mut ok = 0;
    for _ in 0..iters {
        let pkgs: Vec<frost::SigningPackage<'_>> = sessions
            .iter()
            .zip(ts)
            .map(|(s, t)| frost::SigningPackage::new(&s.msg, &t.commitments).unwrap())
            .collect();
        let mut batch = frost::ShareBatchVerifier::with_capacity(total);
        for (p, t) in pkgs.iter().zip(ts) {
            for (id, z, y) in &t.shares {
                batch.push(p, &t.vk, *id, y, z).unwrap();
            }
        }
        ok += u64::from(batch.verify().is_ok());
    }
    ok
}

/// Shares only: packages built (and bound to the key) before the loop, as a coordinator
/// does once per session anyway to aggregate.
fn frost_batch258_prebuilt(iters: u64) -> u64 {
    let sessions = frost_sessions(FROST_BATCH_SESSIONS);
    let ts = tally_sessions(&sessions);
    tally_mpc::warm_up();
    let pkgs: Vec<frost::SigningPackage<'_>> = sessions
        .iter()
        .zip(&ts)
        .map(|(s, t)| frost::SigningPackage::with_key(&s.msg, &t.commitments, &t.vk).unwrap())
        .collect();
    let total: usize = ts.iter().map(|t| t.shares.len()).sum();
    let mut batch = frost::ShareBatchVerifier::with_capacity(total);
    let mut ok = 0;
    for _ in 0..iters {
        batch.clear();
        for (p, t) in pkgs.iter().zip(&ts) {
            for (id, z, y) in &t.shares {
                batch.push(p, &t.vk, *id, y, z).unwrap();
            }
        }
        ok += u64::from(batch.verify().is_ok());
    }
    ok
}

fn frost_batch258_tally(iters: u64) -> u64 {
    let sessions = frost_sessions(FROST_BATCH_SESSIONS);
    let ts = tally_sessions(&sessions);
    tally_mpc::warm_up();
    frost_batch_tally(&sessions, &ts, iters)
}

fn frost_share3_tally_precomputed(iters: u64) -> u64 {
    let sessions = frost_sessions(FROST_FIXTURES);
    let ts = tally_sessions(&sessions);
    tally_mpc::warm_up();
    // One table per signer (the same five verifying shares recur across sessions).
    let mut tables: BTreeMap<[u8; 33], frost::PrecomputedVerifyingShare> = BTreeMap::new();
    for t in &ts {
        for (_, _, y) in &t.shares {
            tables
                .entry(y.to_bytes())
                .or_insert_with(|| frost::PrecomputedVerifyingShare::new(y));
        }
    }
    if !share_check_tells_apart(&sessions, &ts, |pkg, vk, id, y, z| {
        tables[&y.to_bytes()].verify_share(pkg, vk, id, z).is_ok()
    }) {
        return 0;
    }
    let pre: Vec<Vec<&frost::PrecomputedVerifyingShare>> = ts
        .iter()
        .map(|t| {
            t.shares
                .iter()
                .map(|(_, _, y)| &tables[&y.to_bytes()])
                .collect()
        })
        .collect();
    let mut ok = 0;
    for i in 0..iters as usize {
        let (s, t) = (&sessions[i % FROST_FIXTURES], &ts[i % FROST_FIXTURES]);
        let pkg = frost::SigningPackage::new(&s.msg, &t.commitments).unwrap();
        for ((id, z, _), y) in t.shares.iter().zip(&pre[i % FROST_FIXTURES]) {
            ok += u64::from(y.verify_share(black_box(&pkg), &t.vk, *id, z).is_ok());
        }
    }
    ok
}

/// Aggregate signatures of the fixture sessions (made with `aggregate`).
pub fn frost_signatures(ts: &[TallySession], sessions: &[FrostSession]) -> Vec<frost::Signature> {
    sessions
        .iter()
        .zip(ts)
        .map(|(s, t)| {
            let pkg = frost::SigningPackage::new(&s.msg, &t.commitments).unwrap();
            frost::aggregate(&pkg, &t.vk, &t.shares).unwrap()
        })
        .collect()
}

fn frost_verify_tally(iters: u64) -> u64 {
    let sessions = frost_sessions(FROST_FIXTURES);
    let ts = tally_sessions(&sessions);
    let sigs = frost_signatures(&ts, &sessions);
    tally_mpc::warm_up();
    let bad = flipped(&sessions[0].msg);
    if !tells_apart(|genuine| {
        let msg = if genuine { &sessions[0].msg } else { &bad };
        frost::verify(&ts[0].vk, msg, &sigs[0]).is_ok()
    }) {
        return 0;
    }
    let mut ok = 0;
    for i in 0..iters as usize {
        let k = i % FROST_FIXTURES;
        ok += u64::from(frost::verify(black_box(&ts[k].vk), &sessions[k].msg, &sigs[k]).is_ok());
    }
    ok
}

fn frost_verify_tally_precomputed(iters: u64) -> u64 {
    let sessions = frost_sessions(FROST_FIXTURES);
    let ts = tally_sessions(&sessions);
    let sigs = frost_signatures(&ts, &sessions);
    let pre = frost::PrecomputedVerifyingKey::new(&ts[0].vk);
    tally_mpc::warm_up();
    let bad = flipped(&sessions[0].msg);
    if !tells_apart(|genuine| {
        let msg = if genuine { &sessions[0].msg } else { &bad };
        pre.verify(msg, &sigs[0]).is_ok()
    }) {
        return 0;
    }
    let mut ok = 0;
    for i in 0..iters as usize {
        let k = i % FROST_FIXTURES;
        ok += u64::from(black_box(&pre).verify(&sessions[k].msg, &sigs[k]).is_ok());
    }
    ok
}

fn frost_verify_zf(iters: u64) -> u64 {
    let sessions = frost_sessions(FROST_FIXTURES);
    let zsigs: Vec<frost_secp256k1::Signature> = sessions
        .iter()
        .map(|s| frost_secp256k1::aggregate(&s.zf.0, &s.zf.2, &s.zf.1).unwrap())
        .collect();
    let mut ok = 0;
    for i in 0..iters as usize {
        let k = i % FROST_FIXTURES;
        ok += u64::from(
            black_box(sessions[k].zf.1.verifying_key())
                .verify(&sessions[k].msg, &zsigs[k])
                .is_ok(),
        );
    }
    ok
}

/// Sessions per coordinator batch in the `frost_coord32` kernels.
pub const COORD_SESSIONS: usize = 32;

/// The coordinator's crypto for one batch of [`COORD_SESSIONS`] 3-of-5 sessions, from the
/// wire's bytes to the signatures, as `tally pipeline` does it: decode the commitments
/// and shares, build the packages and bind them to the key together (`bind_packages`),
/// then either (`signatures`) sum each session's shares
/// and verify the 32 aggregates in one `SignatureBatchVerifier` batch against the
/// precomputed group key, or (`shares`) verify the 96 shares in one `ShareBatchVerifier`
/// batch and sum them without a second check. Per iteration: one batch; divide by 32
/// for a per-session figure.
pub fn frost_coord(sessions: &[FrostSession], signatures: bool, iters: u64) -> u64 {
    if !coord_batches_tell_apart(sessions) {
        return 0;
    }
    Coord::new(sessions).run(signatures, iters)
}

/// Whether the coordinator's two batch verifications refuse a batch with one bad entry:
/// the first session's aggregate against another message (`SignatureBatchVerifier`, as
/// `tally_signatures` uses it), and its first signer's id with the second signer's share
/// (`ShareBatchVerifier`, as `tally_shares`). The kernels' checksum counts batches that
/// verified, which a batch that skipped its work and answered "valid" would pass too;
/// [`frost_coord`] checks this once, before its loop.
fn coord_batches_tell_apart(sessions: &[FrostSession]) -> bool {
    let ts = tally_sessions(sessions);
    let Some(first) = ts.first() else {
        return false;
    };
    let vk = &first.vk;
    let pre = frost::PrecomputedVerifyingKey::new(vk);
    let sigs = frost_signatures(&ts, sessions);
    let bad = flipped(&sessions[0].msg);
    let signatures = tells_apart(|genuine| {
        let mut b = frost::SignatureBatchVerifier::with_capacity(sessions.len());
        for (k, (s, sig)) in sessions.iter().zip(&sigs).enumerate() {
            let msg = if !genuine && k == 0 { &bad } else { &s.msg };
            if b.push_precomputed(&pre, msg, sig).is_err() {
                return false;
            }
        }
        b.verify().is_ok()
    });
    let pkgs: Vec<frost::SigningPackage<'_>> = sessions
        .iter()
        .zip(&ts)
        .map(|(s, t)| frost::SigningPackage::new(&s.msg, &t.commitments).unwrap())
        .collect();
    let shares = tells_apart(|genuine| {
        let mut b = frost::ShareBatchVerifier::with_capacity(3 * sessions.len());
        for (k, (p, t)) in pkgs.iter().zip(&ts).enumerate() {
            for (j, (id, z, y)) in t.shares.iter().enumerate() {
                let z = if !genuine && k == 0 && j == 0 {
                    &t.shares[1].1
                } else {
                    z
                };
                if b.push(p, vk, *id, y, z).is_err() {
                    return false;
                }
            }
        }
        b.verify().is_ok()
    });
    signatures && shares
}

/// The set-up of [`frost_coord`] (group key and its precomputed table, verifying shares,
/// batch buffers), made once so that a criterion bench times [`Coord::run`] alone: built
/// inside the timed closure, the precomputed key's table was timed with every sample.
pub struct Coord<'s> {
    sessions: &'s [FrostSession],
    vk: frost::VerifyingKey,
    pre_key: frost::PrecomputedVerifyingKey,
    shares: Vec<Vec<frost::VerifyingShare>>,
    sig_batch: Option<frost::SignatureBatchVerifier<'static>>,
    share_batch: Option<frost::ShareBatchVerifier<'static>>,
}

impl<'s> Coord<'s> {
    /// Decodes the key and verifying shares of `sessions` and sizes the batches.
    pub fn new(sessions: &'s [FrostSession]) -> Self {
        let vk = frost::VerifyingKey::from_bytes(&sessions[0].vk).unwrap();
        let pre_key = frost::PrecomputedVerifyingKey::new(&vk);
        let shares: Vec<Vec<frost::VerifyingShare>> = sessions
            .iter()
            .map(|s| {
                s.signers
                    .iter()
                    .map(|x| frost::VerifyingShare::from_bytes(&x.4).unwrap())
                    .collect()
            })
            .collect();
        tally_mpc::warm_up();
        Coord {
            sessions,
            vk,
            pre_key,
            shares,
            sig_batch: Some(frost::SignatureBatchVerifier::with_capacity(sessions.len())),
            share_batch: Some(frost::ShareBatchVerifier::with_capacity(
                sessions.len() * sessions[0].signers.len(),
            )),
        }
    }

    /// `iters` coordinator batches (see [`frost_coord`]); returns the checksum, `33` per
    /// batch when everything verified.
    pub fn run(&mut self, signatures: bool, iters: u64) -> u64 {
        let (sessions, vk, pre_key, shares) =
            (self.sessions, &self.vk, &self.pre_key, &self.shares);
        let mut sig_batch = self
            .sig_batch
            .take()
            .unwrap_or_else(|| frost::SignatureBatchVerifier::with_capacity(sessions.len()));
        let mut share_batch = self.share_batch.take().unwrap_or_else(|| {
            frost::ShareBatchVerifier::with_capacity(sessions.len() * sessions[0].signers.len())
        });
        let mut ok = 0u64;
        for _ in 0..iters {
            let decoded: Vec<(
                Vec<(frost::Identifier, frost::SigningCommitments)>,
                Vec<(
                    frost::Identifier,
                    frost::SignatureShare,
                    frost::VerifyingShare,
                )>,
            )> = sessions
                .iter()
                .zip(shares)
                .map(|(s, ys)| {
                    let mut c = Vec::with_capacity(s.signers.len());
                    let mut z = Vec::with_capacity(s.signers.len());
                    for ((id, h, b, zb, _), y) in s.signers.iter().zip(ys) {
                        let id = frost::Identifier::from_bytes(black_box(id)).unwrap();
                        c.push((id, frost::SigningCommitments::from_bytes(h, b).unwrap()));
                        z.push((id, frost::SignatureShare::from_bytes(zb).unwrap(), *y));
                    }
                    (c, z)
                })
                .collect();
            let pkgs: Vec<frost::SigningPackage<'_>> = sessions
                .iter()
                .zip(&decoded)
                .map(|(s, (c, _))| frost::SigningPackage::new(&s.msg, c).unwrap())
                .collect();
            let refs: Vec<&frost::SigningPackage<'_>> = pkgs.iter().collect();
            frost::bind_packages(&refs, vk);
            if signatures {
                let mut sigs = sig_batch.recycle();
                let mut out = Vec::with_capacity(pkgs.len());
                for ((s, (_, z)), p) in sessions.iter().zip(&decoded).zip(&pkgs) {
                    let sig = frost::aggregate_unverified(p, vk, z).unwrap();
                    sigs.push_precomputed(pre_key, &s.msg, &sig).unwrap();
                    out.push(sig);
                }
                ok += u64::from(sigs.verify().is_ok()) + out.len() as u64;
                sig_batch = sigs.recycle();
            } else {
                let mut batch = share_batch.recycle();
                for ((_, z), p) in decoded.iter().zip(&pkgs) {
                    for (id, share, y) in z {
                        batch.push(p, vk, *id, y, share).unwrap();
                    }
                }
                ok += u64::from(batch.verify().is_ok());
                for ((_, z), p) in decoded.iter().zip(&pkgs) {
                    ok += u64::from(
                        frost::aggregate_verified_shares(p, vk, usize::from(FROST_MIN_SIGNERS), z)
                            .is_ok(),
                    );
                }
                share_batch = batch.recycle();
            }
        }
        self.sig_batch = Some(sig_batch);
        self.share_batch = Some(share_batch);
        ok
    }
}

/// The kernels of this module.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        id: "mpc/bip340_verify/libsecp256k1",
        run: verify_libsecp,
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_verify/k256",
        run: verify_k256,
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_verify/tally_cold",
        run: verify_tally_cold,
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_verify/tally_precomputed",
        run: verify_tally_precomputed,
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch1/tally",
        run: |n| batch_tally(1, false, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch8/tally",
        run: |n| batch_tally(8, false, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch64/tally",
        run: |n| batch_tally(64, false, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch256/tally",
        run: |n| batch_tally(256, false, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch1024/tally",
        run: |n| batch_tally(1024, false, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch64_bad1/tally",
        run: |n| batch_tally_culprits(64, 1, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch64_bad8/tally",
        run: |n| batch_tally_culprits(64, 8, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch64_bad2/tally",
        run: |n| batch_tally_culprits(64, 2, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch64_bad64/tally",
        run: |n| batch_tally_culprits(64, 64, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch8_bad1/tally",
        run: |n| batch_tally_culprits(8, 1, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch8_bad8/tally",
        run: |n| batch_tally_culprits(8, 8, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch256_bad1/tally",
        run: |n| batch_tally_culprits(256, 1, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch256_bad256/tally",
        run: |n| batch_tally_culprits(256, 256, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/bip340_batch256_one_key/tally",
        run: |n| batch_tally(256, true, n),
        expect: |n| n,
    },
    Kernel {
        id: "mpc/frost_share3/frost_secp256k1",
        run: frost_share3_zf,
        expect: |n| 3 * n,
    },
    Kernel {
        id: "mpc/frost_share3/tally",
        run: frost_share3_tally,
        expect: |n| 3 * n,
    },
    Kernel {
        id: "mpc/frost_share3/tally_precomputed",
        run: frost_share3_tally_precomputed,
        expect: |n| 3 * n,
    },
    Kernel {
        id: "mpc/frost_verify/frost_secp256k1",
        run: frost_verify_zf,
        expect: |n| n,
    },
    Kernel {
        id: "mpc/frost_verify/tally",
        run: frost_verify_tally,
        expect: |n| n,
    },
    Kernel {
        id: "mpc/frost_verify/tally_precomputed",
        run: frost_verify_tally_precomputed,
        expect: |n| n,
    },
    Kernel {
        id: "mpc/frost_coord32/tally_signatures",
        run: |n| frost_coord(&frost_sessions(COORD_SESSIONS), true, n),
        expect: |n| (1 + COORD_SESSIONS as u64) * n,
    },
    Kernel {
        id: "mpc/frost_coord32/tally_shares",
        run: |n| frost_coord(&frost_sessions(COORD_SESSIONS), false, n),
        expect: |n| (1 + COORD_SESSIONS as u64) * n,
    },
    Kernel {
        id: "mpc/frost_batch258/tally",
        run: frost_batch258_tally,
        expect: |n| n,
    },
    Kernel {
        id: "mpc/frost_batch258_prebuilt/tally",
        run: frost_batch258_prebuilt,
        expect: |n| n,
    },
];
