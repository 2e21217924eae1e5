#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::too_many_lines,
    clippy::many_single_char_names,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "test code in the usual notation (d, k, r, s, e)"
)]
//! Adversarial differential tests: structured edge inputs (field and scalar values at the
//! range limits, points whose x is near p, signatures built with the wrong parity of `R`
//! or of the key, negated and shifted `s`, keyless `R = sG` forgeries, pairs of invalid
//! signatures built to cancel, duplicated entries) through single, precomputed and batch
//! verification, against libsecp256k1 (BIP340) and frost-core (FROST shares).
//!
//! `TALLY_MPC_ADVERSARIAL_ROUNDS` scales the number of rounds (default 1).

use frost_secp256k1 as zf;
use k256::elliptic_curve::PrimeField;
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::sec1::ToSec1Point;
use k256::{FieldBytes, ProjectivePoint, Scalar};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tally_mpc::bip340::{self, BatchVerifier, PrecomputedKey, Signature, XOnlyPublicKey};
use tally_mpc::frost::{
    self, Identifier, PrecomputedVerifyingShare, ShareBatchVerifier, SignatureShare,
    SigningCommitments, SigningPackage, VerifyingKey, VerifyingShare,
};

fn rounds() -> usize {
    std::env::var("TALLY_MPC_ADVERSARIAL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// p and n, big-endian.
const P: [u8; 32] = hex32("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f");
const N: [u8; 32] = hex32("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nib(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

/// `a + d` on 256-bit big-endian values (wrapping).
fn add_small(a: &[u8; 32], d: i64) -> [u8; 32] {
    let mut out = *a;
    let mut carry = i128::from(d);
    for byte in out.iter_mut().rev() {
        let v = i128::from(*byte) + carry;
        *byte = v.rem_euclid(256) as u8;
        carry = v.div_euclid(256);
    }
    out
}

fn scalar(b: &[u8; 32]) -> Scalar {
    <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*b))
}

fn sbytes(s: &Scalar) -> [u8; 32] {
    s.to_repr().into()
}

/// x (32 bytes) and y parity of `k G`; `None` for the identity.
fn xonly(p: &ProjectivePoint) -> Option<([u8; 32], bool)> {
    let enc = p.to_affine().to_sec1_point(true);
    let b = enc.as_bytes();
    (b.len() == 33).then(|| (b[1..].try_into().unwrap(), b[0] == 3))
}

fn compressed(p: &ProjectivePoint) -> Option<[u8; 33]> {
    let enc = p.to_affine().to_sec1_point(true);
    enc.as_bytes().try_into().ok()
}

fn challenge(r: &[u8; 32], pk: &[u8; 32], msg: &[u8]) -> Scalar {
    let tag = Sha256::digest(b"BIP0340/challenge");
    let h: [u8; 32] = Sha256::new()
        .chain_update(tag)
        .chain_update(tag)
        .chain_update(r)
        .chain_update(pk)
        .chain_update(msg)
        .finalize()
        .into();
    scalar(&h)
}

/// Field values at the edges, including x coordinates near p that are on the curve and
/// small ones whose `x + p` still fits 256 bits.
fn edge_field_values() -> Vec<[u8; 32]> {
    let mut v = vec![
        [0u8; 32],
        add_small(&[0u8; 32], 1),
        add_small(&[0u8; 32], 2),
        add_small(&P, -1),
        add_small(&P, -2),
        P,
        add_small(&P, 1),
        add_small(&P, 2),
        [0xff; 32],
        add_small(&[0xff; 32], -1),
        hex32("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
        // beta * x(G) and beta^2 * x(G): lambda G and lambda^2 G share G's y.
        hex32("c994b69768832bcbff5e9ab39ae8d1d3763bbf1e531bed98fe51de5ee84f50fb"),
        hex32("bcace2e99da01887ab0102b696902325872844067f15e98da7bba04400b88fcb"),
    ];
    // On-curve x values just below p, and small ones (x and x + p both below 2^256).
    let mut found = 0;
    let mut d = 1;
    while found < 4 {
        let x = add_small(&P, -d);
        if XOnlyPublicKey::from_bytes(&x).is_ok() {
            v.push(x);
            found += 1;
        }
        d += 1;
    }
    found = 0;
    d = 0;
    while found < 4 {
        let x = add_small(&[0u8; 32], d);
        if XOnlyPublicKey::from_bytes(&x).is_ok() {
            v.push(x);
            v.push(add_small(&P, d)); // the same x plus p: out of range
            found += 1;
        }
        d += 1;
    }
    v
}

fn edge_scalar_values() -> Vec<[u8; 32]> {
    let half = {
        // (n - 1) / 2
        let mut h = N;
        let mut carry = 0u8;
        for byte in &mut h {
            let v = *byte;
            *byte = (v >> 1) | (carry << 7);
            carry = v & 1;
        }
        h
    };
    let lambda = hex32("5363ad4cc05c30e0a5261c028812645a122e22ea20816678df02967c1b23bd72");
    let mut two128 = [0u8; 32];
    two128[15] = 1;
    vec![
        [0u8; 32],
        add_small(&[0u8; 32], 1),
        add_small(&N, -1),
        add_small(&N, -2),
        N,
        add_small(&N, 1),
        [0xff; 32],
        half,
        add_small(&half, 1),
        lambda,
        add_small(&lambda, 1),
        two128,
        add_small(&two128, -1),
    ]
}

struct Case {
    pk: [u8; 32],
    msg: Vec<u8>,
    sig: [u8; 64],
}

fn libsecp_ok(c: &Case) -> bool {
    let Ok(pk) = secp256k1::XOnlyPublicKey::from_byte_array(c.pk) else {
        return false;
    };
    secp256k1::schnorr::verify(
        &secp256k1::schnorr::Signature::from_byte_array(c.sig),
        &c.msg,
        &pk,
    )
    .is_ok()
}

/// A raw Schnorr signature with secret `d` and nonce `k`; `even_key` / `even_r` apply
/// BIP340's negations (without them the signature is valid only when the parity was even
/// already).
fn sign_raw(d: Scalar, k: Scalar, msg: &[u8], even_key: bool, even_r: bool) -> Option<Case> {
    let (pk, odd_p) = xonly(&(ProjectivePoint::GENERATOR * d))?;
    let d = if odd_p && even_key { -d } else { d };
    let (r, odd_r) = xonly(&(ProjectivePoint::GENERATOR * k))?;
    let k = if odd_r && even_r { -k } else { k };
    let e = challenge(&r, &pk, msg);
    let s = k + e * d;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(&sbytes(&s));
    Some(Case {
        pk,
        msg: msg.to_vec(),
        sig,
    })
}

fn random_scalar(rng: &mut StdRng) -> Scalar {
    scalar(&rng.r#gen())
}

/// One adversarial BIP340 case of kind `kind`.
fn bip340_case(rng: &mut StdRng, kind: usize, fields: &[[u8; 32]], scalars: &[[u8; 32]]) -> Case {
    let msg: Vec<u8> = match rng.gen_range(0..4) {
        0 => Vec::new(),
        1 => (0..32).map(|_| rng.r#gen()).collect(),
        2 => (0..rng.gen_range(0..300)).map(|_| rng.r#gen()).collect(),
        _ => vec![0xff; 1000],
    };
    let d = match rng.gen_range(0..6) {
        0 => Scalar::ONE,
        1 => -Scalar::ONE,
        2 => scalar(&scalars[rng.gen_range(0..scalars.len())]),
        _ => random_scalar(rng),
    };
    let d = if bool::from(d.is_zero()) {
        Scalar::ONE
    } else {
        d
    };
    let k = match rng.gen_range(0..5) {
        0 => d,
        1 => -d,
        2 => scalar(&scalars[rng.gen_range(0..scalars.len())]),
        _ => random_scalar(rng),
    };
    let k = if bool::from(k.is_zero()) {
        Scalar::ONE
    } else {
        k
    };
    let valid = sign_raw(d, k, &msg, true, true).unwrap();
    match kind {
        0 => valid,
        // R or key with odd y, not negated.
        1 => sign_raw(d, k, &msg, true, false).unwrap(),
        2 => sign_raw(d, k, &msg, false, true).unwrap(),
        3 => sign_raw(d, k, &msg, false, false).unwrap(),
        // s negated, shifted.
        4 | 5 => {
            let mut c = valid;
            let s = scalar(&c.sig[32..].try_into().unwrap());
            let s = if kind == 4 { -s } else { s + Scalar::ONE };
            c.sig[32..].copy_from_slice(&sbytes(&s));
            c
        }
        // r or s replaced by an edge value.
        6 => {
            let mut c = valid;
            c.sig[..32].copy_from_slice(&fields[rng.gen_range(0..fields.len())]);
            c
        }
        7 => {
            let mut c = valid;
            c.sig[32..].copy_from_slice(&scalars[rng.gen_range(0..scalars.len())]);
            c
        }
        // Key replaced by an edge value (with a random or edge signature).
        8 => {
            let mut c = valid;
            c.pk = fields[rng.gen_range(0..fields.len())];
            if rng.gen_bool(0.5) {
                c.sig[..32].copy_from_slice(&fields[rng.gen_range(0..fields.len())]);
                c.sig[32..].copy_from_slice(&scalars[rng.gen_range(0..scalars.len())]);
            }
            c
        }
        // Keyless forgery: R = sG (even y) under any key.
        9 => {
            let s = random_scalar(rng);
            let (r, odd) = xonly(&(ProjectivePoint::GENERATOR * s)).unwrap();
            let s = if odd { -s } else { s };
            let mut c = valid;
            c.sig[..32].copy_from_slice(&r);
            c.sig[32..].copy_from_slice(&sbytes(&s));
            c
        }
        // R = -eP + sG chosen for the real e of another r: a "signature" with the right
        // relation for a different challenge.
        10 => {
            let k2 = k + Scalar::ONE;
            let k2 = if bool::from(k2.is_zero()) { k + k } else { k2 };
            let other = sign_raw(d, k2, &msg, true, true).unwrap();
            let mut c = valid;
            c.sig[32..].copy_from_slice(&other.sig[32..]);
            c
        }
        // r = x of R + p (out of range) for small x.
        _ => {
            let mut c = valid;
            let small = &fields[fields.len() - 1];
            c.sig[..32].copy_from_slice(small);
            c
        }
    }
}

const BIP340_KINDS: usize = 12;

/// BIP340: every case through single, precomputed and batch verification; batches of
/// mixed sizes (Straus and Pippenger paths) name exactly libsecp256k1's rejections.
#[test]
fn bip340_edge_cases_agree_with_libsecp256k1() {
    let fields = edge_field_values();
    let scalars = edge_scalar_values();
    let mut rng = StdRng::seed_from_u64(0xad7e_5a41);
    let mut cases = Vec::new();
    for _ in 0..rounds() {
        for kind in 0..BIP340_KINDS {
            for _ in 0..40 {
                cases.push(bip340_case(&mut rng, kind, &fields, &scalars));
            }
        }
        // Pairs built to cancel in a batch: s + t and s - t under one key and message.
        for _ in 0..20 {
            let d = random_scalar(&mut rng);
            let k = random_scalar(&mut rng);
            let msg = b"cancelling pair".to_vec();
            let c = sign_raw(d, k, &msg, true, true).unwrap();
            let s = scalar(&c.sig[32..].try_into().unwrap());
            let t = random_scalar(&mut rng);
            for s2 in [s + t, s - t] {
                let mut x = sign_raw(d, k, &msg, true, true).unwrap();
                x.sig[32..].copy_from_slice(&sbytes(&s2));
                cases.push(x);
            }
        }
    }
    let expected: Vec<bool> = cases.iter().map(libsecp_ok).collect();
    let valid = expected.iter().filter(|v| **v).count();
    assert!(valid > cases.len() / 10 && valid < cases.len() * 9 / 10);
    // Single and precomputed verification.
    let parsed: Vec<Option<(XOnlyPublicKey, Signature)>> = cases
        .iter()
        .map(|c| {
            Some((
                XOnlyPublicKey::from_bytes(&c.pk).ok()?,
                Signature::from_bytes(&c.sig).ok()?,
            ))
        })
        .collect();
    for (i, (c, p)) in cases.iter().zip(&parsed).enumerate() {
        let ours = p
            .as_ref()
            .is_some_and(|(k, s)| bip340::verify(k, &c.msg, s).is_ok());
        assert_eq!(
            ours, expected[i],
            "case {i}: pk {:02x?} sig {:02x?}",
            c.pk, c.sig
        );
    }
    // Precomputed verification of every parsed case (one table per distinct key, keys
    // at edge values included).
    let mut tables: BTreeMap<[u8; 32], PrecomputedKey> = BTreeMap::new();
    let mut checked = 0;
    for (j, q) in parsed.iter().enumerate() {
        let Some((k, s)) = q else { continue };
        let pre = tables
            .entry(cases[j].pk)
            .or_insert_with(|| PrecomputedKey::new(k));
        assert_eq!(
            pre.verify(&cases[j].msg, s).is_ok(),
            expected[j],
            "case {j} (precomputed): pk {:02x?} sig {:02x?}",
            cases[j].pk,
            cases[j].sig
        );
        checked += 1;
    }
    eprintln!(
        "precomputed: {checked} of {} cases under {} keys",
        cases.len(),
        tables.len()
    );
    assert!(
        checked > cases.len() / 2,
        "only {checked} of {} cases reached precomputed verification",
        cases.len()
    );
    // Batches in shuffled order, sizes from 1 to past the Straus limit, with repeats.
    let mut order: Vec<usize> = (0..cases.len()).filter(|i| parsed[*i].is_some()).collect();
    for round in 0..2 {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        let mut start = 0;
        let mut size = 1 + round;
        while start < order.len() {
            let end = (start + size).min(order.len());
            let mut idx: Vec<usize> = order[start..end].to_vec();
            if size % 2 == 0 {
                // Duplicates of the first entry, valid or not.
                idx.push(idx[0]);
                idx.push(idx[0]);
            }
            let mut batch = BatchVerifier::with_capacity(idx.len());
            for &i in &idx {
                let (k, s) = parsed[i].as_ref().unwrap();
                batch.push(k, &cases[i].msg, s).unwrap();
            }
            let want: Vec<usize> = idx
                .iter()
                .enumerate()
                .filter(|(_, i)| !expected[**i])
                .map(|(k, _)| k)
                .collect();
            match batch.verify() {
                Ok(()) => assert!(want.is_empty(), "batch accepted {want:?}"),
                Err(e) => assert_eq!(e.invalid(), want.as_slice()),
            }
            start = end;
            size = if size > 80 { 1 } else { size * 2 + 1 };
        }
    }
}

/// A FROST session with chosen secrets: signers' (identifier, secret share, hiding
/// nonce, binding nonce), the key, and the verifying shares (possibly not matching).
struct FrostCase {
    msg: Vec<u8>,
    ids: Vec<Scalar>,
    hiding: Vec<Scalar>,
    binding: Vec<Scalar>,
    secrets: Vec<Scalar>,
    key: Scalar,
}

/// A share to check: (signer index, share bytes, verifying share's secret).
type ShareCase = (usize, [u8; 32], Scalar);

fn zf_id(x: &Scalar) -> zf::Identifier {
    zf::Identifier::deserialize(&sbytes(x)).unwrap()
}

fn frost_case(rng: &mut StdRng, scalars: &[[u8; 32]]) -> FrostCase {
    let n = rng.gen_range(1..=5);
    let pick = |rng: &mut StdRng| -> Scalar {
        let s = match rng.gen_range(0..4) {
            0 => scalar(&scalars[rng.gen_range(0..scalars.len())]),
            _ => random_scalar(rng),
        };
        if bool::from(s.is_zero()) {
            Scalar::ONE
        } else {
            s
        }
    };
    // Distinct identifiers, edge ones included.
    let mut ids: Vec<Scalar> = Vec::new();
    while ids.len() < n {
        let id = match rng.gen_range(0..3) {
            0 => Scalar::from(rng.gen_range(1u64..6)),
            1 => pick(rng),
            _ => -Scalar::from(rng.gen_range(1u64..4)),
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    // Nonces: random, edge, repeated across signers, hiding = +-binding.
    let mut hiding = Vec::new();
    let mut binding = Vec::new();
    for i in 0..n {
        let h = pick(rng);
        let b = match rng.gen_range(0..5) {
            0 => h,
            1 => -h,
            2 if i > 0 => binding[0],
            _ => pick(rng),
        };
        let h = if rng.gen_range(0..6) == 0 && i > 0 {
            hiding[0]
        } else {
            h
        };
        hiding.push(h);
        binding.push(b);
    }
    // A polynomial of degree n - 1 through the key, or independent secrets.
    let coeffs: Vec<Scalar> = (0..n).map(|_| pick(rng)).collect();
    let key = coeffs[0];
    let secrets: Vec<Scalar> = ids
        .iter()
        .map(|x| coeffs.iter().rev().fold(Scalar::ZERO, |acc, c| acc * x + c))
        .collect();
    let msg: Vec<u8> = (0..rng.gen_range(0..70)).map(|_| rng.r#gen()).collect();
    FrostCase {
        msg,
        ids,
        hiding,
        binding,
        secrets,
        key,
    }
}

fn point_bytes(s: &Scalar) -> [u8; 33] {
    compressed(&(ProjectivePoint::GENERATOR * s)).unwrap()
}

/// FROST shares with chosen (edge) identifiers, repeated and opposite nonces, honest
/// shares and shares tampered in structured ways, against frost-core's
/// `verify_signature_share`: single, precomputed and batched across sessions.
#[test]
fn frost_edge_shares_agree_with_frost_core() {
    let scalars = edge_scalar_values();
    let mut rng = StdRng::seed_from_u64(0xf2_0575);
    let mut sessions = Vec::new();
    for _ in 0..(60 * rounds()) {
        sessions.push(frost_case(&mut rng, &scalars));
    }
    // Commitments and packages (tally side).
    let commitments: Vec<Vec<(Identifier, SigningCommitments)>> = sessions
        .iter()
        .map(|s| {
            s.ids
                .iter()
                .zip(s.hiding.iter().zip(&s.binding))
                .map(|(id, (h, b))| {
                    (
                        Identifier::from_bytes(&sbytes(id)).unwrap(),
                        SigningCommitments::from_bytes(&point_bytes(h), &point_bytes(b)).unwrap(),
                    )
                })
                .collect()
        })
        .collect();
    let keys: Vec<VerifyingKey> = sessions
        .iter()
        .map(|s| VerifyingKey::from_bytes(&point_bytes(&s.key)).unwrap())
        .collect();
    let packages: Vec<SigningPackage<'_>> = sessions
        .iter()
        .zip(&commitments)
        .map(|(s, c)| SigningPackage::new(&s.msg, c).unwrap())
        .collect();
    // Shares: honest ones from the package's rho and c * lambda, then tampered.
    let mut all_shares: Vec<Vec<ShareCase>> = Vec::new();
    for ((s, pkg), key) in sessions.iter().zip(&packages).zip(&keys) {
        let mut list = Vec::new();
        if pkg.group_commitment(key).is_err() {
            all_shares.push(list);
            continue;
        }
        let n = s.ids.len();
        for i in 0..n {
            let id = Identifier::from_bytes(&sbytes(&s.ids[i])).unwrap();
            let rho = scalar(&pkg.binding_factor(key, id).unwrap());
            let cl = scalar(&pkg.challenge_lambda(key, id).unwrap());
            let z = s.hiding[i] + s.binding[i] * rho + cl * s.secrets[i];
            let kind = rng.gen_range(0..9);
            let (z, vs) = match kind {
                0 | 1 => (z, s.secrets[i]),
                2 => (-z, s.secrets[i]),
                3 => (z + Scalar::ONE, s.secrets[i]),
                // The right equation for the wrong verifying share (negated, other signer).
                4 => (z, -s.secrets[i]),
                5 => (z, s.secrets[(i + 1) % n]),
                // Hiding and binding swapped.
                6 => (
                    s.binding[i] + s.hiding[i] * rho + cl * s.secrets[i],
                    s.secrets[i],
                ),
                // z from an edge value.
                7 => (
                    scalar(&scalars[rng.gen_range(0..scalars.len())]),
                    s.secrets[i],
                ),
                // The share that would be right with rho = 1.
                _ => (s.hiding[i] + s.binding[i] + cl * s.secrets[i], s.secrets[i]),
            };
            let vs = if bool::from(vs.is_zero()) {
                Scalar::ONE
            } else {
                vs
            };
            list.push((i, sbytes(&z), vs));
        }
        all_shares.push(list);
    }
    // frost-core's verdicts.
    let mut checked = 0;
    let mut valid = 0;
    let mut batch = ShareBatchVerifier::with_capacity(sessions.len() * 5);
    let mut want = Vec::new();
    let vss: Vec<Vec<VerifyingShare>> = all_shares
        .iter()
        .map(|list| {
            list.iter()
                .map(|(_, _, v)| VerifyingShare::from_bytes(&point_bytes(v)).unwrap())
                .collect()
        })
        .collect();
    for (si, s) in sessions.iter().enumerate() {
        let zf_commitments: BTreeMap<zf::Identifier, zf::round1::SigningCommitments> = s
            .ids
            .iter()
            .zip(s.hiding.iter().zip(&s.binding))
            .map(|(id, (h, b))| {
                (
                    zf_id(id),
                    zf::round1::SigningCommitments::new(
                        zf::round1::NonceCommitment::deserialize(&point_bytes(h)).unwrap(),
                        zf::round1::NonceCommitment::deserialize(&point_bytes(b)).unwrap(),
                    ),
                )
            })
            .collect();
        let zf_pkg = zf::SigningPackage::new(zf_commitments, &s.msg);
        let zf_vk = zf::VerifyingKey::deserialize(&point_bytes(&s.key)).unwrap();
        let pkg = &packages[si];
        let key = &keys[si];
        for ((i, z, vsec), vs) in all_shares[si].iter().zip(&vss[si]) {
            let id = zf_id(&s.ids[*i]);
            let zf_share = zf::round2::SignatureShare::deserialize(z).unwrap();
            let share_point = zf::keys::VerifyingShare::deserialize(&point_bytes(vsec)).unwrap();
            let expected =
                frost_core::verify_signature_share(id, &share_point, &zf_share, &zf_pkg, &zf_vk)
                    .is_ok();
            let tid = Identifier::from_bytes(&sbytes(&s.ids[*i])).unwrap();
            let share = SignatureShare::from_bytes(z).unwrap();
            let ours = frost::verify_signature_share(pkg, key, tid, vs, &share).is_ok();
            assert_eq!(ours, expected, "session {si} signer {i}");
            let pre = PrecomputedVerifyingShare::new(vs);
            assert_eq!(
                pre.verify_share(pkg, key, tid, &share).is_ok(),
                expected,
                "precomputed, session {si} signer {i}"
            );
            if !expected {
                want.push(batch.len());
            }
            if si % 3 == 0 {
                batch.push_precomputed(pkg, key, tid, &pre, &share).unwrap();
            } else {
                batch.push(pkg, key, tid, vs, &share).unwrap();
            }
            checked += 1;
            valid += usize::from(expected);
        }
        // Aggregation of the session: frost-core's signature iff ours verifies.
        let shares: Vec<(Identifier, SignatureShare, VerifyingShare)> = all_shares[si]
            .iter()
            .zip(&vss[si])
            .map(|((i, z, _), vs)| {
                (
                    Identifier::from_bytes(&sbytes(&s.ids[*i])).unwrap(),
                    SignatureShare::from_bytes(z).unwrap(),
                    *vs,
                )
            })
            .collect();
        if !shares.is_empty() {
            // Culprits: frost-core's AllCheaters detection names the same signers.
            let zf_shares: BTreeMap<zf::Identifier, zf::round2::SignatureShare> = all_shares[si]
                .iter()
                .map(|(i, z, _)| {
                    (
                        zf_id(&s.ids[*i]),
                        zf::round2::SignatureShare::deserialize(z).unwrap(),
                    )
                })
                .collect();
            let zf_vss: BTreeMap<zf::Identifier, zf::keys::VerifyingShare> = all_shares[si]
                .iter()
                .map(|(i, _, v)| {
                    (
                        zf_id(&s.ids[*i]),
                        zf::keys::VerifyingShare::deserialize(&point_bytes(v)).unwrap(),
                    )
                })
                .collect();
            let pubkeys = zf::keys::PublicKeyPackage::new(zf_vss, zf_vk, None);
            let theirs = frost_core::aggregate_custom(
                &zf_pkg,
                &zf_shares,
                &pubkeys,
                frost_core::CheaterDetection::AllCheaters,
            );
            match (frost::aggregate(pkg, key, &shares), theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a.to_bytes().to_vec(), b.serialize().unwrap()),
                (Err(e), Err(frost_core::Error::InvalidSignatureShare { culprits })) => {
                    let mut ours: Vec<[u8; 32]> =
                        e.culprits().iter().map(Identifier::to_bytes).collect();
                    ours.sort_unstable();
                    let mut want: Vec<[u8; 32]> = culprits
                        .iter()
                        .map(|c| c.serialize().try_into().unwrap())
                        .collect();
                    want.sort_unstable();
                    assert_eq!(ours, want, "culprits of session {si}");
                }
                (Err(tally_mpc::AggregateError::SharesDoNotMatchKey), Err(_)) => {}
                (a, b) => panic!("aggregate of session {si}: ours {a:?}, frost-core {b:?}"),
            }
            let sig = frost::aggregate_unverified(pkg, key, &shares).unwrap();
            let zf_sig = zf::Signature::deserialize(&sig.to_bytes()).unwrap();
            assert_eq!(
                frost::verify(key, &s.msg, &sig).is_ok(),
                zf_vk.verify(&s.msg, &zf_sig).is_ok(),
                "aggregate of session {si}"
            );
        }
    }
    assert!(
        valid > checked / 5 && valid < checked,
        "{valid} of {checked}"
    );
    match batch.verify() {
        Ok(()) => assert!(want.is_empty()),
        Err(e) => assert_eq!(e.invalid(), want.as_slice()),
    }
}

/// Invalid entries built to cancel under equal or small weights: `s + t` and `s - t`
/// for one signature, `s + t, s + t, s - 2t`, and the same with FROST shares and FROST
/// signatures. A batch whose weights were constant or small integers would accept them;
/// every one must be named.
#[test]
fn entries_built_to_cancel_are_all_named() {
    let mut rng = StdRng::seed_from_u64(0x00ca_9ce1);
    let d = random_scalar(&mut rng);
    let msg = b"cancel".to_vec();
    let base = sign_raw(d, random_scalar(&mut rng), &msg, true, true).unwrap();
    assert!(libsecp_ok(&base));
    let s = scalar(&base.sig[32..].try_into().unwrap());
    let t = random_scalar(&mut rng);
    let with_s = |s: Scalar| {
        let mut sig = base.sig;
        sig[32..].copy_from_slice(&sbytes(&s));
        Signature::from_bytes(&sig).unwrap()
    };
    let key = XOnlyPublicKey::from_bytes(&base.pk).unwrap();
    let valid = with_s(s);
    let two = Scalar::from(2u64);
    for (set, padding) in [
        (vec![s + t, s - t], 0usize),
        (vec![s + t, s + t, s - two * t], 0),
        (vec![s + t, s - t], 30),
        (vec![s + t, s + t, s - two * t], 30),
    ] {
        let sigs: Vec<Signature> = set.iter().map(|x| with_s(*x)).collect();
        let mut batch = BatchVerifier::with_capacity(sigs.len() + padding);
        let mut want = Vec::new();
        for sig in &sigs {
            for _ in 0..padding / sigs.len() {
                batch.push(&key, &msg, &valid).unwrap();
            }
            want.push(batch.len());
            batch.push(&key, &msg, sig).unwrap();
        }
        assert_eq!(batch.verify().unwrap_err().invalid(), want.as_slice());
    }

    // FROST: one signer's share as z + t and z - t, in one batch.
    let ids = [Scalar::ONE, Scalar::from(2u64)];
    let secrets_poly = [random_scalar(&mut rng), random_scalar(&mut rng)];
    let secrets: Vec<Scalar> = ids
        .iter()
        .map(|x| secrets_poly[0] + secrets_poly[1] * x)
        .collect();
    let hiding = [random_scalar(&mut rng), random_scalar(&mut rng)];
    let binding = [random_scalar(&mut rng), random_scalar(&mut rng)];
    let commitments: Vec<(Identifier, SigningCommitments)> = (0..2)
        .map(|i| {
            (
                Identifier::from_bytes(&sbytes(&ids[i])).unwrap(),
                SigningCommitments::from_bytes(&point_bytes(&hiding[i]), &point_bytes(&binding[i]))
                    .unwrap(),
            )
        })
        .collect();
    let key = VerifyingKey::from_bytes(&point_bytes(&secrets_poly[0])).unwrap();
    let pkg = SigningPackage::new(&msg, &commitments).unwrap();
    let vss: Vec<VerifyingShare> = secrets
        .iter()
        .map(|s| VerifyingShare::from_bytes(&point_bytes(s)).unwrap())
        .collect();
    let zs: Vec<Scalar> = (0..2)
        .map(|i| {
            let id = commitments[i].0;
            let rho = scalar(&pkg.binding_factor(&key, id).unwrap());
            let cl = scalar(&pkg.challenge_lambda(&key, id).unwrap());
            hiding[i] + binding[i] * rho + cl * secrets[i]
        })
        .collect();
    let share = |z: Scalar| SignatureShare::from_bytes(&sbytes(&z)).unwrap();
    let mut batch = ShareBatchVerifier::with_capacity(4);
    batch
        .push(&pkg, &key, commitments[0].0, &vss[0], &share(zs[0] + t))
        .unwrap();
    batch
        .push(&pkg, &key, commitments[1].0, &vss[1], &share(zs[1]))
        .unwrap();
    batch
        .push(&pkg, &key, commitments[0].0, &vss[0], &share(zs[0] - t))
        .unwrap();
    assert_eq!(batch.verify().unwrap_err().invalid(), &[0, 2]);
    // The honest aggregate, then its signature with z + t and z - t.
    let shares: Vec<(Identifier, SignatureShare, VerifyingShare)> = (0..2)
        .map(|i| (commitments[i].0, share(zs[i]), vss[i]))
        .collect();
    let sig = frost::aggregate(&pkg, &key, &shares).unwrap();
    let sig_bytes = sig.to_bytes();
    let z = scalar(&sig_bytes[33..].try_into().unwrap());
    let with_z = |z: Scalar| {
        let mut b = sig_bytes;
        b[33..].copy_from_slice(&sbytes(&z));
        frost::Signature::from_bytes(&b).unwrap()
    };
    let mut batch = frost::SignatureBatchVerifier::with_capacity(3);
    batch.push(&key, &msg, &with_z(z + t)).unwrap();
    batch.push(&key, &msg, &sig).unwrap();
    batch.push(&key, &msg, &with_z(z - t)).unwrap();
    assert_eq!(batch.verify().unwrap_err().invalid(), &[0, 2]);
}

/// FROST signatures (single-key Schnorr in the FROST ciphersuite) with `R` or the key
/// negated (the other SEC1 tag), `z` negated, shifted or at the range edges, `R`
/// replaced by points whose x is near p, and keys at edge secrets: single, precomputed
/// and batch verification against frost-core's `VerifyingKey::verify`.
#[test]
fn frost_edge_signatures_agree_with_frost_core() {
    let scalars = edge_scalar_values();
    let fields: Vec<[u8; 32]> = edge_field_values()
        .into_iter()
        .filter(|x| XOnlyPublicKey::from_bytes(x).is_ok())
        .collect();
    let mut rng = StdRng::seed_from_u64(0x5167_0f05);
    let mut cases: Vec<([u8; 33], Vec<u8>, [u8; 65])> = Vec::new();
    for _ in 0..(300 * rounds()) {
        let y = match rng.gen_range(0..4) {
            0 => scalar(&scalars[rng.gen_range(0..scalars.len())]),
            _ => random_scalar(&mut rng),
        };
        let y = if bool::from(y.is_zero()) {
            Scalar::ONE
        } else {
            y
        };
        let sk = zf::SigningKey::deserialize(&sbytes(&y)).unwrap();
        let msg: Vec<u8> = (0..rng.gen_range(0..50)).map(|_| rng.r#gen()).collect();
        let mut sig: [u8; 65] = sk
            .sign(&mut rng, &msg)
            .serialize()
            .unwrap()
            .try_into()
            .unwrap();
        let mut key = point_bytes(&y);
        match rng.gen_range(0..9) {
            0 | 1 => {}
            2 => sig[0] ^= 1,
            3 => key[0] ^= 1,
            4 => {
                let z = scalar(&sig[33..].try_into().unwrap());
                sig[33..].copy_from_slice(&sbytes(&-z));
            }
            5 => {
                let z = scalar(&sig[33..].try_into().unwrap());
                sig[33..].copy_from_slice(&sbytes(&(z + Scalar::ONE)));
            }
            6 => sig[33..].copy_from_slice(&scalars[rng.gen_range(0..scalars.len())]),
            7 => {
                sig[1..33].copy_from_slice(&fields[rng.gen_range(0..fields.len())]);
                sig[0] = 2 + rng.gen_range(0..2);
            }
            _ => {
                // Both R and the key negated: z G = -R - c' Y' for another challenge.
                sig[0] ^= 1;
                key[0] ^= 1;
            }
        }
        cases.push((key, msg, sig));
    }
    let mut parsed = Vec::new();
    for (key, msg, sig) in &cases {
        let theirs = zf::VerifyingKey::deserialize(key)
            .ok()
            .zip(zf::Signature::deserialize(sig).ok())
            .is_some_and(|(k, s)| k.verify(msg, &s).is_ok());
        let ours = VerifyingKey::from_bytes(key)
            .ok()
            .zip(frost::Signature::from_bytes(sig).ok());
        let single = ours
            .as_ref()
            .is_some_and(|(k, s)| frost::verify(k, msg, s).is_ok());
        assert_eq!(single, theirs, "key {key:02x?} sig {sig:02x?}");
        if let Some((k, s)) = ours {
            parsed.push((k, s, msg, theirs));
        }
    }
    // Every 25th key with a table, used for its own signature and for the batch.
    let pres: Vec<frost::PrecomputedVerifyingKey> = parsed
        .iter()
        .step_by(25)
        .map(|(k, _, _, _)| frost::PrecomputedVerifyingKey::new(k))
        .collect();
    let mut batch = frost::SignatureBatchVerifier::with_capacity(cases.len());
    let mut want = Vec::new();
    for (i, (k, s, msg, ok)) in parsed.iter().enumerate() {
        if !ok {
            want.push(batch.len());
        }
        if i % 25 == 0 {
            let pre = &pres[i / 25];
            assert_eq!(pre.verify(msg, s).is_ok(), *ok, "precomputed {i}");
            batch.push_precomputed(pre, msg, s).unwrap();
        } else {
            batch.push(k, msg, s).unwrap();
        }
    }
    match batch.verify() {
        Ok(()) => assert!(want.is_empty()),
        Err(e) => assert_eq!(e.invalid(), want.as_slice()),
    }
}
