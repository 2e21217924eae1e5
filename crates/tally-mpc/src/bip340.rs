//! BIP340 Schnorr signatures over secp256k1: parsing, single verification, verification
//! against a [`PrecomputedKey`], and batch verification with cheater identification.
//!
//! Verification follows BIP340 exactly, including messages of any length:
//! `e = int(hash_BIP0340/challenge(bytes(r) || bytes(P) || m)) mod n`,
//! `R = s G - e P`, and the signature is valid iff `R` is not the identity, `y(R)` is even
//! and `x(R) = r`.
//!
//! # Batch results and single verification
//!
//! [`BatchVerifier::verify`] accepts a batch iff every entry would pass [`verify`], except
//! with probability about 2^-128 per batch (a random linear combination of invalid
//! equations vanishing). It lifts each `r` to the point with even `y`, exactly the point a
//! single verification must reach, so a signature that single verification rejects
//! because `y(R)` is odd is rejected by the batch too. When the batch fails, the indices
//! it reports are exactly the entries single verification rejects (up to the same 2^-128).

use crate::Error;
use crate::batch::{Engine, Entry};
use crate::msm::{Base, CombTable, STRAUS_TABLE, StrausScratch, generator_table, straus};
use crate::point::{Affine, Fe, Jacobian};
use crate::scalar::{WNAF_LEN, glv_split, scalar_from_bytes, scalar_reduce32, scalar_to_bytes};
use k256::Scalar;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// A BIP340 x-only public key: a curve point with even `y`, stored decoded.
#[derive(Clone, Copy, Debug)]
pub struct XOnlyPublicKey {
    point: Affine,
    bytes: [u8; 32],
}

impl PartialEq for XOnlyPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for XOnlyPublicKey {}

impl XOnlyPublicKey {
    /// Decodes a 32-byte x-only key (`lift_x`: the point with this x and even y).
    ///
    /// # Errors
    ///
    /// [`Error::FieldElementOutOfRange`] if `x >= p`, [`Error::NotOnCurve`] if no point
    /// has this x coordinate.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        const WHAT: &str = "BIP340 public key";
        let x = Affine::fe_from_bytes(bytes).ok_or(Error::FieldElementOutOfRange { what: WHAT })?;
        let point = Affine::lift_x(&x, false).ok_or(Error::NotOnCurve { what: WHAT })?;
        Ok(Self {
            point,
            bytes: *bytes,
        })
    }

    /// Decodes from a slice.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLength`] unless the slice has 32 bytes, then as [`Self::from_bytes`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let arr: &[u8; 32] = bytes.try_into().map_err(|_| Error::InvalidLength {
            what: "BIP340 public key",
            expected: 32,
            got: bytes.len(),
        })?;
        Self::from_bytes(arr)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }

    fn id(&self) -> [u8; 33] {
        let mut id = [0u8; 33];
        id.get_mut(1..)
            .unwrap_or(&mut [])
            .copy_from_slice(&self.bytes);
        id
    }
}

/// A BIP340 signature `(r, s)`, range-checked.
#[derive(Clone, Copy, Debug)]
pub struct Signature {
    r: Fe,
    r_bytes: [u8; 32],
    s: Scalar,
}

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}
impl Eq for Signature {}

impl Signature {
    /// Decodes a 64-byte signature `bytes(r) || bytes(s)`.
    ///
    /// # Errors
    ///
    /// [`Error::FieldElementOutOfRange`] if `r >= p`, [`Error::ScalarOutOfRange`] if `s >= n`.
    pub fn from_bytes(bytes: &[u8; 64]) -> Result<Self, Error> {
        let (rb, sb) = bytes.split_at(32);
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(rb);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(sb);
        let r = Affine::fe_from_bytes(&r_bytes).ok_or(Error::FieldElementOutOfRange {
            what: "BIP340 signature r",
        })?;
        let s = scalar_from_bytes(&s_bytes).ok_or(Error::ScalarOutOfRange {
            what: "BIP340 signature s",
        })?;
        Ok(Self { r, r_bytes, s })
    }

    /// Decodes from a slice.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLength`] unless the slice has 64 bytes, then as [`Self::from_bytes`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let arr: &[u8; 64] = bytes.try_into().map_err(|_| Error::InvalidLength {
            what: "BIP340 signature",
            expected: 64,
            got: bytes.len(),
        })?;
        Self::from_bytes(arr)
    }

    /// The 64-byte encoding.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        let (r, s) = out.split_at_mut(32);
        r.copy_from_slice(&self.r_bytes);
        s.copy_from_slice(&scalar_to_bytes(&self.s));
        out
    }
}

fn challenge_prefix() -> &'static Sha256 {
    static PREFIX: OnceLock<Sha256> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let tag = Sha256::digest(b"BIP0340/challenge");
        let mut h = Sha256::new();
        h.update(tag);
        h.update(tag);
        h
    })
}

/// `int(hash_BIP0340/challenge(r || P || m)) mod n`.
fn challenge(r: &[u8; 32], pk: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = challenge_prefix().clone();
    h.update(r);
    h.update(pk);
    h.update(msg);
    scalar_reduce32(&h.finalize().into())
}

fn check_r(r: Option<Affine>, sig: &Signature) -> Result<(), Error> {
    let r = r.ok_or(Error::InvalidSignature)?;
    if r.y.is_odd() || !r.x.eq(&sig.r) {
        return Err(Error::InvalidSignature);
    }
    Ok(())
}

/// Verifies a BIP340 signature on a message of any length. Allocates nothing.
///
/// # Errors
///
/// [`Error::InvalidSignature`] if the signature does not verify;
/// [`Error::ArithmeticCheck`] (reject, as for an invalid signature) if an internal check
/// failed, which no valid input causes.
pub fn verify(key: &XOnlyPublicKey, msg: &[u8], sig: &Signature) -> Result<(), Error> {
    let e = challenge(&sig.r_bytes, &key.bytes, msg);
    let (Some(base), Some(g)) = (Base::new(key.point, &-e), glv_split(&sig.s)) else {
        return Err(Error::ArithmeticCheck {
            what: "BIP340 verification (GLV split)",
        });
    };
    let bases = [base];
    let mut jac = [Jacobian::INFINITY; STRAUS_TABLE];
    let mut prefix = [Fe::ZERO; STRAUS_TABLE];
    let mut tables = [Affine::PLACEHOLDER; STRAUS_TABLE];
    let mut wnafs = [[0i16; WNAF_LEN]; 2];
    let mut scratch = StrausScratch {
        jac: &mut jac,
        prefix: &mut prefix,
        tables: &mut tables,
        wnafs: &mut wnafs,
    };
    let r = straus(&bases, Some(g), &mut scratch).ok_or(Error::InvalidSignature)?;
    check_r(r.to_affine(), sig)
}

/// A public key with a precomputed comb table (136 KiB), for keys that verify many
/// signatures: verification needs no doublings and about 68 mixed additions.
pub struct PrecomputedKey {
    key: XOnlyPublicKey,
    table: CombTable,
}

impl core::fmt::Debug for PrecomputedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PrecomputedKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PrecomputedKey {
    /// Builds the table (about 2,200 point additions; allocates once).
    pub fn new(key: &XOnlyPublicKey) -> Self {
        Self {
            key: *key,
            table: CombTable::new(&key.point),
        }
    }

    /// The key.
    pub fn key(&self) -> &XOnlyPublicKey {
        &self.key
    }

    /// Verifies a signature against this key (same result as [`verify`]). Allocates nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSignature`] if the signature does not verify.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), Error> {
        let e = challenge(&sig.r_bytes, &self.key.bytes, msg);
        let mut acc = Jacobian::INFINITY;
        if !(generator_table().mul_add_scalar(&mut acc, &sig.s)
            && self.table.mul_add_scalar(&mut acc, &-e))
        {
            return Err(Error::InvalidSignature);
        }
        check_r(acc.to_affine(), sig)
    }
}

/// Batch verifier for BIP340 signatures (see the module docs for how results relate to
/// [`verify`]). All memory is reserved by [`BatchVerifier::with_capacity`].
pub struct BatchVerifier<'a> {
    engine: Engine,
    _marker: core::marker::PhantomData<&'a XOnlyPublicKey>,
}

crate::batch::batch_verifier_common!(BatchVerifier, "signatures");

impl<'a> BatchVerifier<'a> {
    /// Queues a signature. The challenge is hashed and `r` lifted here, so `msg` need not
    /// outlive the call (a message built per push can be a temporary); a signature whose
    /// `r` is not on the curve is queued as invalid and reported by [`Self::verify`].
    ///
    /// # Errors
    ///
    /// [`Error::BatchFull`] when `capacity` signatures are queued.
    pub fn push(
        &mut self,
        key: &'a XOnlyPublicKey,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), Error> {
        if self.engine.len() >= self.engine.capacity() {
            return Err(Error::BatchFull {
                capacity: self.engine.capacity(),
            });
        }
        let e = challenge(&sig.r_bytes, &key.bytes, msg);
        let r = Affine::lift_x(&sig.r, false);
        let key_idx = self.engine.intern_key(&key.point, &key.id(), None);
        let entry = Entry {
            points: [r.unwrap_or(Affine::PLACEHOLDER), Affine::PLACEHOLDER],
            coefs: [None, None],
            npoints: 1,
            key: key_idx,
            key_coef: e,
            g: sig.s,
            bad: r.is_none(),
        };
        let e_bytes = scalar_to_bytes(&e);
        self.engine
            .push(&entry, &[&key.bytes, &sig.to_bytes(), &e_bytes])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::elliptic_curve::sec1::ToSec1Point;

    /// A "signature" that needs no secret key: `R = sG` with `R`'s `y` made even. It
    /// satisfies `sG = R` but not `sG = R + eP`, so only a check that drops the key's
    /// term accepts it.
    fn keyless_forgery() -> Signature {
        let mut s = Scalar::from(0x1234_5678_9abc_def0_u64);
        let mut r = (k256::ProjectivePoint::GENERATOR * s).to_affine();
        let enc = r.to_sec1_point(true);
        if enc.as_bytes().first() == Some(&3) {
            s = -s;
            r = (k256::ProjectivePoint::GENERATOR * s).to_affine();
        }
        let enc = r.to_sec1_point(true);
        assert_eq!(enc.as_bytes()[0], 2);
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&enc.as_bytes()[1..33]);
        bytes[32..].copy_from_slice(&s.to_bytes());
        Signature::from_bytes(&bytes).unwrap()
    }

    fn some_key() -> XOnlyPublicKey {
        let p = (k256::ProjectivePoint::GENERATOR * Scalar::from(7u64)).to_affine();
        let enc = p.to_sec1_point(true);
        XOnlyPublicKey::from_slice(&enc.as_bytes()[1..33]).unwrap()
    }

    /// A comb table that could not be built (here: from a point off the curve, which no
    /// public constructor accepts) must make verification fail, not drop the key's term:
    /// with the term dropped, the keyless forgery `R = sG` passed.
    #[test]
    fn a_broken_key_table_fails_closed() {
        let key = some_key();
        let sig = keyless_forgery();
        let broken = PrecomputedKey {
            key,
            table: CombTable::new(&Affine::PLACEHOLDER),
        };
        assert!(broken.verify(b"message", &sig).is_err());
        // The same key with a good table rejects it too.
        assert!(PrecomputedKey::new(&key).verify(b"message", &sig).is_err());
    }

    /// `n` signatures by distinct keys (libsecp256k1), with the messages they sign.
    fn signed(n: usize) -> Vec<(XOnlyPublicKey, [u8; 32], Signature)> {
        (0..n as u64)
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&(i + 1).to_be_bytes());
                secret[31] = 1;
                let kp = secp256k1::Keypair::from_secret_key(
                    &secp256k1::SecretKey::from_secret_bytes(secret).unwrap(),
                );
                let mut msg = [0u8; 32];
                msg[..8].copy_from_slice(&i.to_le_bytes());
                let sig = secp256k1::schnorr::sign_no_aux_rand(&msg, &kp).to_byte_array();
                let pk = kp.x_only_public_key().0.to_byte_array();
                (
                    XOnlyPublicKey::from_slice(&pk).unwrap(),
                    msg,
                    Signature::from_bytes(&sig).unwrap(),
                )
            })
            .collect()
    }

    /// Verifies `sigs` with the entries in `bad` checked against another message (with
    /// `pointless`, every third of them gets an `r` with no curve point instead); returns
    /// the culprits named and the number of weighted sums computed.
    fn culprits(
        sigs: &[(XOnlyPublicKey, [u8; 32], Signature)],
        bad: &[usize],
        pointless: bool,
    ) -> (Vec<usize>, u64) {
        let mut batch = BatchVerifier::with_capacity(sigs.len());
        let flipped: Vec<[u8; 32]> = sigs
            .iter()
            .map(|(_, m, _)| {
                let mut m = *m;
                m[0] ^= 1;
                m
            })
            .collect();
        // Every third invalid entry is invalid at push time instead: its `r` is the x of
        // no curve point, so it has no term and no range holding it has a sum.
        let no_point = (5u8..=u8::MAX)
            .map(|x| {
                let mut b = [0u8; 32];
                b[31] = x;
                b
            })
            .find(|b| Affine::lift_x(&Affine::fe_from_bytes(b).unwrap(), false).is_none())
            .unwrap();
        let no_r_point: Vec<Signature> = sigs
            .iter()
            .map(|(_, _, sig)| {
                let mut bytes = [0u8; 64];
                bytes[..32].copy_from_slice(&no_point);
                bytes[32..].copy_from_slice(&sig.to_bytes()[32..]);
                Signature::from_bytes(&bytes).unwrap()
            })
            .collect();
        for (i, (pk, msg, sig)) in sigs.iter().enumerate() {
            match bad.iter().position(|&b| b == i) {
                Some(k) if pointless && k % 3 == 2 => batch.push(pk, msg, &no_r_point[i]).unwrap(),
                Some(_) => batch.push(pk, &flipped[i], sig).unwrap(),
                None => batch.push(pk, msg, sig).unwrap(),
            }
        }
        let named = match batch.verify() {
            Ok(()) => Vec::new(),
            Err(e) => e.invalid().to_vec(),
        };
        (named, batch.engine.checks)
    }

    /// Every pattern of invalid entries in a batch of 7 is named exactly, also with entries
    /// that are invalid at push time among them.
    #[test]
    fn every_pattern_of_culprits_is_named() {
        let sigs = signed(7);
        for mask in 0u32..1 << sigs.len() {
            let bad: Vec<usize> = (0..sigs.len()).filter(|i| mask >> i & 1 == 1).collect();
            for pointless in [false, true] {
                assert_eq!(
                    culprits(&sigs, &bad, pointless).0,
                    bad,
                    "mask {mask:#09b}, pointless {pointless}"
                );
            }
        }
    }

    /// The search for culprits computes one weighted sum per level for one invalid entry
    /// (the other half's sum is a subtraction), and about one per entry when most
    /// entries are invalid (it stops splitting once both halves of a range whose halves
    /// both failed fail too). Splitting down to single entries, as the search once did,
    /// took `2n - 1` sums for an all-invalid batch, each of a larger sub-batch: 5x the
    /// cost of checking every signature alone for 64 entries; and `2 log2 n` for one
    /// invalid entry at the front.
    #[test]
    fn the_search_checks_each_entry_about_once_when_most_are_invalid() {
        let n = 32;
        let sigs = signed(n);
        let all: Vec<usize> = (0..n).collect();
        let (named, checks) = culprits(&sigs, &all, false);
        assert_eq!(named, all);
        // The whole batch, a half of it, a half of each half, then each entry.
        assert_eq!(checks, 1 + 1 + 2 + n as u64);
        let every_fourth: Vec<usize> = (0..n).step_by(4).collect();
        let (named, checks) = culprits(&sigs, &every_fourth, false);
        assert_eq!(named, every_fourth);
        assert_eq!(checks, 1 + 1 + 2 + n as u64);
        // Two invalid entries, one in each half: each half is searched by splitting.
        let (named, checks) = culprits(&sigs, &[3, 20], false);
        assert_eq!(named, [3, 20]);
        assert_eq!(checks, 1 + 1 + 2 * 4);
        for one in [0, 13, n - 1] {
            let (named, checks) = culprits(&sigs, &[one], false);
            assert_eq!(named, [one]);
            // The whole batch, then one half at each of log2(32) = 5 levels.
            assert_eq!(checks, 1 + 5, "culprit {one}");
        }
        assert_eq!(culprits(&sigs, &[], false), (Vec::new(), 1));
    }

    /// Messages built per push need not outlive the batch: the challenge is hashed at
    /// push time. (`push` once took `msg: &'a [u8]`, so this did not compile: every
    /// message had to be kept alive until `verify`.)
    #[test]
    fn messages_may_be_temporaries() {
        let sigs = signed(5);
        let mut batch = BatchVerifier::with_capacity(sigs.len());
        for (i, (pk, msg, sig)) in sigs.iter().enumerate() {
            let mut owned = msg.to_vec();
            if i == 3 {
                owned[0] ^= 1;
            }
            batch.push(pk, &owned, sig).unwrap();
        }
        assert_eq!(batch.verify().unwrap_err().invalid(), &[3]);
    }

    /// The engine marks each key once per check with a check counter; when that counter
    /// wrapped to the value new keys start with, the key terms were skipped and a
    /// keyless forgery passed. Every counter value must still reject it.
    #[test]
    fn a_keyless_forgery_fails_at_every_check_counter() {
        let key = some_key();
        let sig = keyless_forgery();
        let msg = b"message";
        assert!(verify(&key, msg, &sig).is_err());
        for generation in [0, 1, u32::MAX - 1, u32::MAX] {
            let mut batch = BatchVerifier::with_capacity(4);
            batch.engine.set_generation(generation);
            for _ in 0..3 {
                batch.push(&key, msg, &sig).unwrap();
                assert!(
                    batch.verify().is_err(),
                    "forgery accepted at check counter {generation}"
                );
                batch.clear();
            }
        }
    }
}
