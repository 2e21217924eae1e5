//! FROST(secp256k1, SHA-256) per RFC 9591: the coordinator's side. Decodes commitments,
//! shares and signatures in the RFC encodings, computes a session's binding factors,
//! group commitment and challenge once ([`SigningPackage`]), verifies shares one at a time
//! or in batches across sessions ([`ShareBatchVerifier`]), aggregates with cheater
//! identification and verifies signatures.
//!
//! Encodings: points are 33-byte SEC1 compressed, scalars 32-byte big-endian,
//! identifiers are scalars, a signature is `R || z` (65 bytes).
//!
//! # Zero allocation
//!
//! [`SigningPackage::new`], [`verify_signature_share`] and [`verify`] allocate nothing for
//! sessions of up to [`MAX_SIGNERS`] signers; larger sessions are rejected with
//! [`Error::TooManySigners`].

use crate::Error;
use crate::batch::{Engine, Entry};
use crate::error::AggregateError;
use crate::msm::{Base, CombTable, STRAUS_TABLE, StrausScratch, generator_table, straus};
use crate::point::{Affine, Fe, Jacobian, PointDecodeError};
use crate::scalar::{WNAF_LEN, glv_split, scalar_from_bytes, scalar_reduce64, scalar_to_bytes};
use k256::Scalar;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

/// Largest number of signers in one [`SigningPackage`] (its per-signer data lives inline).
pub const MAX_SIGNERS: usize = 64;

/// Bases per Straus call when computing a group commitment (stack scratch).
const CHUNK: usize = 4;

const CONTEXT: &[u8] = b"FROST-secp256k1-SHA256-v1";

/// A signer's identifier: a non-zero scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identifier([u8; 32]);

impl Identifier {
    /// The identifier with this small integer value (1, 2, 3, ...).
    ///
    /// # Errors
    ///
    /// [`Error::ZeroIdentifier`] for 0.
    pub fn from_u16(n: u16) -> Result<Self, Error> {
        if n == 0 {
            return Err(Error::ZeroIdentifier);
        }
        let mut b = [0u8; 32];
        b[30..].copy_from_slice(&n.to_be_bytes());
        Ok(Self(b))
    }

    /// Decodes a 32-byte big-endian scalar.
    ///
    /// # Errors
    ///
    /// [`Error::ScalarOutOfRange`] if not below n, [`Error::ZeroIdentifier`] if zero.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        let s = scalar_from_bytes(bytes).ok_or(Error::ScalarOutOfRange {
            what: "FROST identifier",
        })?;
        if bool::from(s.is_zero()) {
            return Err(Error::ZeroIdentifier);
        }
        Ok(Self(*bytes))
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    fn scalar(&self) -> Scalar {
        scalar_from_bytes(&self.0).unwrap_or(Scalar::ONE)
    }
}

/// The number for identifiers below 2^64 (`1`, `2`, `3` ...), otherwise `0x` and the 64
/// hex digits of the scalar.
impl core::fmt::Display for Identifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (hi, lo) = self.0.split_at(24);
        if hi.iter().all(|b| *b == 0) {
            let mut w = [0u8; 8];
            w.copy_from_slice(lo);
            write!(f, "{}", u64::from_be_bytes(w))
        } else {
            // `0x`: a hex string of only decimal digits must not read as a number.
            write!(f, "0x")?;
            for b in &self.0 {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
}

impl PartialOrd for Identifier {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Identifier {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

fn decode_point(bytes: &[u8; 33], what: &'static str) -> Result<Affine, Error> {
    Affine::from_compressed(bytes).map_err(|e| match e {
        PointDecodeError::Tag(tag) => Error::InvalidPointTag { what, tag },
        PointDecodeError::XOutOfRange => Error::FieldElementOutOfRange { what },
        PointDecodeError::NotOnCurve => Error::NotOnCurve { what },
    })
}

fn slice_to<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], Error> {
    bytes.try_into().map_err(|_| Error::InvalidLength {
        what,
        expected: N,
        got: bytes.len(),
    })
}

macro_rules! point_type {
    ($(#[$doc:meta])* $name:ident, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            point: Affine,
            bytes: [u8; 33],
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.bytes == other.bytes
            }
        }
        impl Eq for $name {}

        impl $name {
            /// Decodes a 33-byte SEC1 compressed point (the identity has no such encoding).
            ///
            /// # Errors
            ///
            /// [`Error::InvalidPointTag`], [`Error::FieldElementOutOfRange`] or
            /// [`Error::NotOnCurve`].
            pub fn from_bytes(bytes: &[u8; 33]) -> Result<Self, Error> {
                Ok(Self { point: decode_point(bytes, $what)?, bytes: *bytes })
            }

            /// Decodes from a slice.
            ///
            /// # Errors
            ///
            /// [`Error::InvalidLength`] unless 33 bytes, then as [`Self::from_bytes`].
            pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
                Self::from_bytes(&slice_to::<33>(bytes, $what)?)
            }

            /// The 33-byte encoding.
            pub fn to_bytes(&self) -> [u8; 33] {
                self.bytes
            }
        }
    };
}

point_type!(
    /// The group public key of a FROST key.
    VerifyingKey,
    "FROST verifying key"
);
point_type!(
    /// A signer's public verifying share `Y_i = s_i G`.
    VerifyingShare,
    "FROST verifying share"
);

/// A signer's round-one commitments `(D_i, E_i)` (hiding, binding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningCommitments {
    hiding: Affine,
    binding: Affine,
    hiding_bytes: [u8; 33],
    binding_bytes: [u8; 33],
}

impl PartialEq for Affine {
    fn eq(&self, other: &Self) -> bool {
        Affine::eq(self, other)
    }
}
impl Eq for Affine {}

impl SigningCommitments {
    /// Decodes the hiding and binding nonce commitments (33-byte compressed points).
    ///
    /// # Errors
    ///
    /// As [`VerifyingKey::from_bytes`] for either point.
    pub fn from_bytes(hiding: &[u8; 33], binding: &[u8; 33]) -> Result<Self, Error> {
        Ok(Self {
            hiding: decode_point(hiding, "FROST hiding commitment")?,
            binding: decode_point(binding, "FROST binding commitment")?,
            hiding_bytes: *hiding,
            binding_bytes: *binding,
        })
    }

    /// The hiding commitment's encoding.
    pub fn hiding_bytes(&self) -> [u8; 33] {
        self.hiding_bytes
    }

    /// The binding commitment's encoding.
    pub fn binding_bytes(&self) -> [u8; 33] {
        self.binding_bytes
    }
}

/// A signer's round-two signature share `z_i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureShare(Scalar);

impl SignatureShare {
    /// Decodes a 32-byte big-endian scalar.
    ///
    /// # Errors
    ///
    /// [`Error::ScalarOutOfRange`] if not below n.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        scalar_from_bytes(bytes)
            .map(Self)
            .ok_or(Error::ScalarOutOfRange {
                what: "FROST signature share",
            })
    }

    /// Decodes from a slice.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLength`] unless 32 bytes, then as [`Self::from_bytes`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_bytes(&slice_to::<32>(bytes, "FROST signature share")?)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        scalar_to_bytes(&self.0)
    }
}

/// A FROST signature `(R, z)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    r: Affine,
    r_bytes: [u8; 33],
    z: Scalar,
}

impl Signature {
    /// Decodes `R || z` (33 + 32 bytes).
    ///
    /// # Errors
    ///
    /// As [`VerifyingKey::from_bytes`] for `R`, [`Error::ScalarOutOfRange`] for `z`.
    pub fn from_bytes(bytes: &[u8; 65]) -> Result<Self, Error> {
        let (rb, zb) = bytes.split_at(33);
        let r_bytes = slice_to::<33>(rb, "FROST signature R")?;
        let z_bytes = slice_to::<32>(zb, "FROST signature z")?;
        Ok(Self {
            r: decode_point(&r_bytes, "FROST signature R")?,
            r_bytes,
            z: scalar_from_bytes(&z_bytes).ok_or(Error::ScalarOutOfRange {
                what: "FROST signature z",
            })?,
        })
    }

    /// Decodes from a slice.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLength`] unless 65 bytes, then as [`Self::from_bytes`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_bytes(&slice_to::<65>(bytes, "FROST signature")?)
    }

    /// The 65-byte encoding `R || z`.
    pub fn to_bytes(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        let (r, z) = out.split_at_mut(33);
        r.copy_from_slice(&self.r_bytes);
        z.copy_from_slice(&scalar_to_bytes(&self.z));
        out
    }
}

/// `hash_to_field` with `expand_message_xmd(SHA-256)`, 48 bytes, reduced mod n
/// (RFC 9591 H1, H2, H3 for this suite; RFC 9380 section 5.3.1).
fn hash_to_scalar(dst_suffix: &[u8], parts: &[&[u8]]) -> Scalar {
    const LEN: u8 = 48;
    let dst_len = u8::try_from(CONTEXT.len() + dst_suffix.len()).unwrap_or(u8::MAX);
    let mut h0 = Sha256::new();
    h0.update([0u8; 64]);
    for p in parts {
        h0.update(p);
    }
    h0.update([0u8, LEN, 0u8]);
    h0.update(CONTEXT);
    h0.update(dst_suffix);
    h0.update([dst_len]);
    let b0: [u8; 32] = h0.finalize().into();
    let b1: [u8; 32] = Sha256::new()
        .chain_update(b0)
        .chain_update([1u8])
        .chain_update(CONTEXT)
        .chain_update(dst_suffix)
        .chain_update([dst_len])
        .finalize()
        .into();
    let mut x = [0u8; 32];
    for ((o, a), b) in x.iter_mut().zip(&b0).zip(&b1) {
        *o = a ^ b;
    }
    let b2: [u8; 32] = Sha256::new()
        .chain_update(x)
        .chain_update([2u8])
        .chain_update(CONTEXT)
        .chain_update(dst_suffix)
        .chain_update([dst_len])
        .finalize()
        .into();
    let mut wide = [0u8; 64];
    wide[16..48].copy_from_slice(&b1);
    wide[48..].copy_from_slice(&b2[..16]);
    scalar_reduce64(&wide)
}

fn hash_plain(suffix: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CONTEXT);
    h.update(suffix);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Key-dependent per-session values.
#[derive(Clone, Debug)]
struct Session {
    key: [u8; 33],
    /// Binding factor per signer (input order).
    rho: [Scalar; MAX_SIGNERS],
    /// `c * lambda_i` per signer (input order).
    c_lambda: [Scalar; MAX_SIGNERS],
    /// Group commitment.
    r: Affine,
    r_bytes: [u8; 33],
}

/// One signing session: the message and every signer's commitments, with the values all
/// share checks need computed once.
///
/// [`SigningPackage::new`] validates the commitment list and computes the Lagrange
/// coefficients; the binding factors, group commitment and challenge depend on the group
/// key and are computed once, on first use with a key (or eagerly with
/// [`SigningPackage::with_key`]), and cached.
#[derive(Debug)]
pub struct SigningPackage<'a> {
    msg: &'a [u8],
    commitments: &'a [(Identifier, SigningCommitments)],
    /// Input indices in ascending identifier order.
    order: [u8; MAX_SIGNERS],
    /// Lagrange coefficient per signer (input order).
    lambda: [Scalar; MAX_SIGNERS],
    msg_hash: [u8; 32],
    commitments_hash: [u8; 32],
    session: OnceLock<Session>,
}

impl<'a> SigningPackage<'a> {
    /// Validates a session's commitment list (any order) and prepares the session.
    /// Allocates nothing.
    ///
    /// # Errors
    ///
    /// [`Error::NoSigners`], [`Error::TooManySigners`] above [`MAX_SIGNERS`],
    /// [`Error::DuplicateIdentifier`]; [`Error::ArithmeticCheck`] if the Lagrange
    /// coefficients could not be computed, which distinct identifiers rule out.
    pub fn new(
        msg: &'a [u8],
        commitments: &'a [(Identifier, SigningCommitments)],
    ) -> Result<Self, Error> {
        let n = commitments.len();
        if n == 0 {
            return Err(Error::NoSigners);
        }
        if n > MAX_SIGNERS {
            return Err(Error::TooManySigners {
                count: n,
                max: MAX_SIGNERS,
            });
        }
        let mut order = [0u8; MAX_SIGNERS];
        for (i, o) in order.iter_mut().enumerate().take(n) {
            *o = u8::try_from(i).unwrap_or(u8::MAX);
        }
        let ids = |i: u8| commitments.get(usize::from(i)).map(|c| c.0);
        let sorted = order.get_mut(..n).unwrap_or(&mut []);
        sorted.sort_unstable_by_key(|&i| ids(i));
        for pair in sorted.windows(2) {
            if let [a, b] = pair
                && ids(*a) == ids(*b)
                && let Some(identifier) = ids(*a)
            {
                return Err(Error::DuplicateIdentifier { identifier });
            }
        }
        let mut h5 = Sha256::new();
        h5.update(CONTEXT);
        h5.update(b"com");
        for &i in sorted.iter() {
            if let Some((id, c)) = commitments.get(usize::from(i)) {
                h5.update(id.0);
                h5.update(c.hiding_bytes);
                h5.update(c.binding_bytes);
            }
        }
        let mut xs = [Scalar::ZERO; MAX_SIGNERS];
        for (x, (id, _)) in xs.iter_mut().zip(commitments) {
            *x = id.scalar();
        }
        let mut lambda = [Scalar::ZERO; MAX_SIGNERS];
        if !lagrange_at(
            xs.get(..n).unwrap_or(&[]),
            &Scalar::ZERO,
            lambda.get_mut(..n).unwrap_or(&mut []),
        ) {
            return Err(Error::ArithmeticCheck {
                what: "FROST Lagrange coefficients",
            });
        }
        Ok(Self {
            msg,
            commitments,
            order,
            lambda,
            msg_hash: hash_plain(b"msg", &[msg]),
            commitments_hash: h5.finalize().into(),
            session: OnceLock::new(),
        })
    }

    /// [`Self::new`] and then computes the key-dependent values for `key` at once.
    ///
    /// # Errors
    ///
    /// As [`Self::new`]; [`Error::IdentityPoint`] if the group commitment is the identity.
    pub fn with_key(
        msg: &'a [u8],
        commitments: &'a [(Identifier, SigningCommitments)],
        key: &VerifyingKey,
    ) -> Result<Self, Error> {
        let pkg = Self::new(msg, commitments)?;
        pkg.session(key)?;
        Ok(pkg)
    }

    /// The message being signed.
    pub fn message(&self) -> &'a [u8] {
        self.msg
    }

    /// The commitments, in the order given.
    pub fn commitments(&self) -> &'a [(Identifier, SigningCommitments)] {
        self.commitments
    }

    /// The binding factor `rho_i` of a signer for `key` (RFC 9591 section 4.4), as 32 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::MissingCommitment`] for an unknown signer; as [`Self::with_key`].
    pub fn binding_factor(&self, key: &VerifyingKey, id: Identifier) -> Result<[u8; 32], Error> {
        let i = self.index_of(id)?;
        let s = self.session(key)?;
        Ok(scalar_to_bytes(s.rho.get(i).unwrap_or(&Scalar::ZERO)))
    }

    /// `c * lambda_i` for a signer and `key`: the challenge times the signer's Lagrange
    /// coefficient, as 32 big-endian bytes. A signer's share is
    /// `z_i = d_i + e_i * rho_i + (c * lambda_i) * s_i` (RFC 9591 section 5.2), so this is
    /// what a signer built on this package multiplies its secret share by.
    ///
    /// # Errors
    ///
    /// [`Error::MissingCommitment`] for an unknown signer; as [`Self::with_key`].
    pub fn challenge_lambda(&self, key: &VerifyingKey, id: Identifier) -> Result<[u8; 32], Error> {
        let i = self.index_of(id)?;
        let s = self.session(key)?;
        Ok(scalar_to_bytes(s.c_lambda.get(i).unwrap_or(&Scalar::ZERO)))
    }

    /// The group commitment `R` for `key`, compressed.
    ///
    /// # Errors
    ///
    /// As [`Self::with_key`].
    pub fn group_commitment(&self, key: &VerifyingKey) -> Result<[u8; 33], Error> {
        Ok(self.session(key)?.r_bytes)
    }

    fn index_of(&self, id: Identifier) -> Result<usize, Error> {
        self.commitments
            .iter()
            .position(|(i, _)| *i == id)
            .ok_or(Error::MissingCommitment { identifier: id })
    }

    fn session(&self, key: &VerifyingKey) -> Result<&Session, Error> {
        if let Some(s) = self.session.get() {
            if s.key == key.bytes {
                return Ok(s);
            }
            return Err(Error::KeyMismatch);
        }
        let s = self.compute_session(key)?;
        // Another thread may have set the session first, for another key: compare again.
        let s = self.session.get_or_init(|| s);
        if s.key == key.bytes {
            Ok(s)
        } else {
            Err(Error::KeyMismatch)
        }
    }

    /// The binding factors `rho_i` for `key` (input order).
    fn binding_factors(&self, key: &VerifyingKey) -> [Scalar; MAX_SIGNERS] {
        let mut rho = [Scalar::ZERO; MAX_SIGNERS];
        for ((id, _), r) in self.commitments.iter().zip(rho.iter_mut()) {
            *r = hash_to_scalar(
                b"rho",
                &[&key.bytes, &self.msg_hash, &self.commitments_hash, &id.0],
            );
        }
        rho
    }

    fn compute_session(&self, key: &VerifyingKey) -> Result<Session, Error> {
        let rho = self.binding_factors(key);
        // R = sum D_i + rho_i E_i, four bases per Straus call on stack scratch.
        let mut acc = Jacobian::INFINITY;
        let mut jac = [Jacobian::INFINITY; CHUNK * STRAUS_TABLE];
        let mut prefix = [Fe::ZERO; CHUNK * STRAUS_TABLE];
        let mut tables = [Affine::PLACEHOLDER; CHUNK * STRAUS_TABLE];
        let mut wnafs = [[0i16; WNAF_LEN]; 2 * CHUNK];
        for (cs, rs) in self.commitments.chunks(CHUNK).zip(rho.chunks(CHUNK)) {
            let mut bases =
                [Base::half(Affine::PLACEHOLDER, crate::scalar::Half::default()); CHUNK];
            for ((b, (_, c)), r) in bases.iter_mut().zip(cs).zip(rs) {
                *b = Base::new(c.binding, r).ok_or(Error::ArithmeticCheck {
                    what: "FROST group commitment (GLV split)",
                })?;
                acc = acc.add_affine(&c.hiding);
            }
            let mut scratch = StrausScratch {
                jac: &mut jac,
                prefix: &mut prefix,
                tables: &mut tables,
                wnafs: &mut wnafs,
            };
            let part = straus(bases.get(..cs.len()).unwrap_or(&[]), None, &mut scratch).ok_or(
                Error::IdentityPoint {
                    what: "FROST group commitment",
                },
            )?;
            acc = acc.add(&part);
        }
        let r = acc.to_affine().ok_or(Error::IdentityPoint {
            what: "FROST group commitment",
        })?;
        Ok(self.finish_session(key, &rho, r))
    }

    /// The session from the binding factors and the group commitment.
    fn finish_session(
        &self,
        key: &VerifyingKey,
        rho: &[Scalar; MAX_SIGNERS],
        r: Affine,
    ) -> Session {
        let r_bytes = r.to_compressed();
        let c = hash_to_scalar(b"chal", &[&r_bytes, &key.bytes, self.msg]);
        let mut c_lambda = [Scalar::ZERO; MAX_SIGNERS];
        for (cl, l) in c_lambda
            .iter_mut()
            .zip(&self.lambda)
            .take(self.commitments.len())
        {
            *cl = c * l;
        }
        let _ = &self.order;
        Session {
            key: key.bytes,
            rho: *rho,
            c_lambda,
            r,
            r_bytes,
        }
    }
}

/// Binds many signing packages to `key` at once (binding factors, group commitment,
/// challenge: what [`SigningPackage::with_key`] does for one), sharing the field
/// inversions between them: one for all the window tables of the group commitments and
/// one for all the commitments' affine forms, instead of two per package (about 56,000
/// instructions saved per package). For a coordinator that builds one package per
/// session and verifies a batch of sessions together. Allocates scratch for the batch.
///
/// Packages already bound, with more than four signers, or whose group commitment is
/// the identity are left as they are: they bind on first use and report their own
/// errors then ([`Error::KeyMismatch`], [`Error::IdentityPoint`]).
pub fn bind_packages(packages: &[&SigningPackage<'_>], key: &VerifyingKey) {
    let todo: Vec<&SigningPackage<'_>> = packages
        .iter()
        .copied()
        .filter(|p| p.session.get().is_none() && p.commitments.len() <= CHUNK)
        .collect();
    let rhos: Vec<[Scalar; MAX_SIGNERS]> = todo.iter().map(|p| p.binding_factors(key)).collect();
    // Window tables of every package's binding commitments, normalised together.
    let mut bases: Vec<Base> = Vec::with_capacity(todo.len() * CHUNK);
    // `None`: a split failed; that package is left to single binding, which reports it.
    let mut offsets: Vec<Option<(usize, usize)>> = Vec::with_capacity(todo.len());
    for (p, rho) in todo.iter().zip(&rhos) {
        let start = bases.len();
        let mut complete = true;
        for ((_, c), r) in p.commitments.iter().zip(rho) {
            match Base::new(c.binding, r) {
                Some(b) => bases.push(b),
                None => complete = false,
            }
        }
        if complete {
            offsets.push(Some((start, bases.len())));
        } else {
            bases.truncate(start);
            offsets.push(None);
        }
    }
    let mut jac = vec![Jacobian::INFINITY; bases.len() * STRAUS_TABLE];
    crate::msm::fill_tables(&bases, &mut jac);
    let mut prefix = vec![Fe::ZERO; jac.len()];
    let mut tables = vec![Affine::PLACEHOLDER; jac.len()];
    if !crate::point::batch_normalize(&jac, &mut prefix, &mut tables) {
        return;
    }
    // Each group commitment in Jacobian form; identities are left to single binding.
    let mut wnafs = [[0i16; WNAF_LEN]; 2 * CHUNK];
    let mut rs: Vec<Jacobian> = Vec::with_capacity(todo.len());
    let mut which: Vec<usize> = Vec::with_capacity(todo.len());
    for (k, (p, &offsets)) in todo.iter().zip(&offsets).enumerate() {
        let Some((lo, hi)) = offsets else {
            continue;
        };
        let (Some(b), Some(t)) = (
            bases.get(lo..hi),
            tables.get(lo * STRAUS_TABLE..hi * STRAUS_TABLE),
        ) else {
            continue;
        };
        let Some(mut acc) = crate::msm::straus_with_tables(b, t, None, &mut wnafs, None) else {
            continue;
        };
        for (_, c) in p.commitments {
            acc = acc.add_affine(&c.hiding);
        }
        if !acc.is_infinity() {
            rs.push(acc);
            which.push(k);
        }
    }
    let mut rprefix = vec![Fe::ZERO; rs.len()];
    let mut raff = vec![Affine::PLACEHOLDER; rs.len()];
    if !crate::point::batch_normalize(&rs, &mut rprefix, &mut raff) {
        return;
    }
    for (k, r) in which.into_iter().zip(raff) {
        if let (Some(p), Some(rho)) = (todo.get(k), rhos.get(k)) {
            let s = p.finish_session(key, rho, r);
            let _ = p.session.get_or_init(|| s);
        }
    }
}

/// Lagrange coefficients at `at` of the nodes `xs` (distinct), into `out`:
/// `out[i] = prod_{j != i} (at - x_j) / (x_i - x_j)`. One scalar inversion for all of them
/// (Montgomery's trick: the denominators' prefix products are inverted once), instead of
/// one per node (each about 28,000 instructions). `xs` and `out` have at most
/// [`MAX_SIGNERS`] entries.
/// `false` (and `out` is meaningless) when the denominators have no inverse, which
/// distinct nodes rule out: callers fail closed then.
#[must_use]
fn lagrange_at(xs: &[Scalar], at: &Scalar, out: &mut [Scalar]) -> bool {
    let mut dens = [Scalar::ONE; MAX_SIGNERS];
    let mut prefix = [Scalar::ONE; MAX_SIGNERS];
    let mut acc = Scalar::ONE;
    for (i, (xi, ((o, pre), d))) in xs
        .iter()
        .zip(out.iter_mut().zip(prefix.iter_mut()).zip(dens.iter_mut()))
        .enumerate()
    {
        let mut num = Scalar::ONE;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                num *= *at - xj;
                *d *= *xi - xj;
            }
        }
        *o = num;
        *pre = acc;
        acc *= *d;
    }
    let Some(mut inv) = Option::<Scalar>::from(acc.invert_vartime()) else {
        out.fill(Scalar::ZERO);
        return false;
    };
    // Walking back, `inv` is `1 / (den_0 ... den_i)` at step `i`.
    for ((o, pre), d) in out.iter_mut().zip(&prefix).zip(&dens).rev() {
        *o *= inv * pre;
        inv *= d;
    }
    true
}

/// `sum k_j P_j` over any number of terms, [`CHUNK`] bases per Straus call on stack scratch;
/// `None` if a Straus call fails (callers treat that as a mismatch, never as a zero term).
fn lincomb(terms: impl Iterator<Item = (Affine, Scalar)>) -> Option<Jacobian> {
    let mut acc = Jacobian::INFINITY;
    let mut jac = [Jacobian::INFINITY; CHUNK * STRAUS_TABLE];
    let mut prefix = [Fe::ZERO; CHUNK * STRAUS_TABLE];
    let mut tables = [Affine::PLACEHOLDER; CHUNK * STRAUS_TABLE];
    let mut wnafs = [[0i16; WNAF_LEN]; 2 * CHUNK];
    let mut bases = [Base::half(Affine::PLACEHOLDER, crate::scalar::Half::default()); CHUNK];
    let mut k = 0;
    let mut complete = true;
    let mut flush = |bases: &[Base], acc: &mut Jacobian| {
        let mut scratch = StrausScratch {
            jac: &mut jac,
            prefix: &mut prefix,
            tables: &mut tables,
            wnafs: &mut wnafs,
        };
        match straus(bases, None, &mut scratch) {
            Some(part) => *acc = acc.add(&part),
            None => complete = false,
        }
    };
    for (p, s) in terms {
        if let Some(b) = bases.get_mut(k) {
            *b = Base::new(p, &s)?;
            k += 1;
        }
        if k == CHUNK {
            flush(&bases, &mut acc);
            k = 0;
        }
    }
    if k > 0 {
        flush(bases.get(..k).unwrap_or(&[]), &mut acc);
    }
    complete.then_some(acc)
}

/// Checks that `shares` are the verifying shares of `key` for a `min_signers`-of-n key:
/// that they lie on one polynomial of degree below `min_signers` whose value at zero is
/// `key` (`Y_j = f(x_j) G`, `Y = f(0) G`), as a correct dealer or DKG produces them.
/// Then for every set `S` of at least `min_signers` signers, `sum_{i in S} lambda_i Y_i = Y`,
/// which is what lets [`aggregate_verified_shares`] skip verifying the aggregate.
/// Run it once per key (it costs `n` small multiscalar multiplications).
///
/// # Errors
///
/// [`Error::NotEnoughShares`] if fewer than `min_signers` shares (or `min_signers` is 0),
/// [`Error::TooManySigners`] above [`MAX_SIGNERS`], [`Error::DuplicateIdentifier`],
/// [`Error::InconsistentVerifyingShares`] naming the one share that does not fit `key` and
/// the others, or none when no single share explains the misfit: several shares are
/// wrong, the shares belong to another key, or there are exactly `min_signers` of them
/// (no share to spare, so a wrong one cannot be told from a wrong key);
/// [`Error::ArithmeticCheck`] if the Lagrange coefficients could not be computed, which
/// distinct identifiers rule out.
///
/// The named share is certainly wrong when fewer than `n - min_signers + 1` shares are
/// wrong (`n` = `shares.len()`). That many wrong shares chosen together can lie with the
/// key on another polynomial and leave one honest share as the only misfit (with
/// `min_signers + 1` shares, two colluding shares suffice): the data cannot tell the two
/// cases apart, so treat the name as a suspect to check, not as proof.
pub fn verify_key_shares(
    key: &VerifyingKey,
    min_signers: usize,
    shares: &[(Identifier, VerifyingShare)],
) -> Result<(), Error> {
    let n = shares.len();
    if min_signers == 0 || n < min_signers {
        return Err(Error::NotEnoughShares {
            got: n,
            need: min_signers.max(1),
        });
    }
    if n > MAX_SIGNERS {
        return Err(Error::TooManySigners {
            count: n,
            max: MAX_SIGNERS,
        });
    }
    for (i, (id, _)) in shares.iter().enumerate() {
        if shares.get(..i).unwrap_or(&[]).iter().any(|(o, _)| o == id) {
            return Err(Error::DuplicateIdentifier { identifier: *id });
        }
    }
    if n == min_signers {
        // No share to spare: the polynomial is the one through all of them, and the only
        // check is its value at zero.
        let mut xs = [Scalar::ZERO; MAX_SIGNERS];
        for (x, (id, _)) in xs.iter_mut().zip(shares) {
            *x = id.scalar();
        }
        let mut lambda = [Scalar::ZERO; MAX_SIGNERS];
        let l = lambda.get_mut(..n).unwrap_or(&mut []);
        if !lagrange_at(xs.get(..n).unwrap_or(&[]), &Scalar::ZERO, l) {
            return Err(Error::ArithmeticCheck {
                what: "FROST Lagrange coefficients",
            });
        }
        if lincomb(shares.iter().zip(l.iter()).map(|((_, y), c)| (y.point, *c)))
            .is_some_and(|p| p.eq_affine(&key.point))
        {
            return Ok(());
        }
        return Err(Error::InconsistentVerifyingShares { identifier: None });
    }
    // The key is trusted: fit the polynomial through it (at zero) and `min_signers - 1`
    // shares, and check the others. When exactly one share is off, it is the culprit;
    // when more are, a share used for the fit may be the bad one, so refit without each
    // of them in turn.
    match off_polynomial(key, min_signers, shares, None) {
        Off::None => return Ok(()),
        Off::One(i) => {
            return Err(Error::InconsistentVerifyingShares {
                identifier: shares.get(i).map(|(id, _)| *id),
            });
        }
        Off::Several => {}
    }
    for skip in 0..min_signers.saturating_sub(1) {
        if let Off::None = off_polynomial(key, min_signers, shares, Some(skip)) {
            return Err(Error::InconsistentVerifyingShares {
                identifier: shares.get(skip).map(|(id, _)| *id),
            });
        }
    }
    Err(Error::InconsistentVerifyingShares { identifier: None })
}

/// Which shares lie off a fitted polynomial (see [`off_polynomial`]).
enum Off {
    None,
    One(usize),
    Several,
}

/// Fits the polynomial through `key` at zero and the first `min_signers - 1` shares other
/// than `skip` (an index into `shares`), and reports which other shares (except `skip`)
/// lie off it. `shares.len() > min_signers`, at most [`MAX_SIGNERS`].
fn off_polynomial(
    key: &VerifyingKey,
    min_signers: usize,
    shares: &[(Identifier, VerifyingShare)],
    skip: Option<usize>,
) -> Off {
    let fit = min_signers.saturating_sub(1);
    let mut xs = [Scalar::ZERO; MAX_SIGNERS];
    let mut points = [key.point; MAX_SIGNERS];
    let mut in_fit = [false; MAX_SIGNERS];
    let mut nodes = 1;
    for (i, (id, y)) in shares.iter().enumerate() {
        if nodes > fit {
            break;
        }
        if Some(i) == skip {
            continue;
        }
        if let (Some(x), Some(p), Some(f)) =
            (xs.get_mut(nodes), points.get_mut(nodes), in_fit.get_mut(i))
        {
            *x = id.scalar();
            *p = y.point;
            *f = true;
        }
        nodes += 1;
    }
    let xs = xs.get(..nodes).unwrap_or(&[]);
    let points = points.get(..nodes).unwrap_or(&[]);
    let mut lambda = [Scalar::ZERO; MAX_SIGNERS];
    let mut off = Off::None;
    for (i, ((id, y), fitted)) in shares.iter().zip(in_fit).enumerate() {
        if fitted || Some(i) == skip {
            continue;
        }
        let l = lambda.get_mut(..nodes).unwrap_or(&mut []);
        if !lagrange_at(xs, &id.scalar(), l)
            || !lincomb(points.iter().zip(l.iter()).map(|(p, c)| (*p, *c)))
                .is_some_and(|p| p.eq_affine(&y.point))
        {
            off = match off {
                Off::None => Off::One(i),
                Off::One(_) | Off::Several => return Off::Several,
            };
        }
    }
    off
}

fn small_straus(bases: &[Base], g: &Scalar) -> Option<Jacobian> {
    let mut jac = [Jacobian::INFINITY; 2 * STRAUS_TABLE];
    let mut prefix = [Fe::ZERO; 2 * STRAUS_TABLE];
    let mut tables = [Affine::PLACEHOLDER; 2 * STRAUS_TABLE];
    let mut wnafs = [[0i16; WNAF_LEN]; 4];
    let mut scratch = StrausScratch {
        jac: &mut jac,
        prefix: &mut prefix,
        tables: &mut tables,
        wnafs: &mut wnafs,
    };
    straus(bases, Some(glv_split(g)?), &mut scratch)
}

/// Verifies one signer's share: `z_i G = D_i + rho_i E_i + c lambda_i Y_i`. Allocates nothing.
///
/// # Errors
///
/// [`Error::MissingCommitment`] if the signer is not in the package, [`Error::InvalidShare`]
/// if the share is wrong, [`Error::ArithmeticCheck`] (reject the share) if an internal
/// check failed, which no valid input causes, and as [`SigningPackage::with_key`].
pub fn verify_signature_share(
    package: &SigningPackage<'_>,
    key: &VerifyingKey,
    id: Identifier,
    verifying_share: &VerifyingShare,
    share: &SignatureShare,
) -> Result<(), Error> {
    let i = package.index_of(id)?;
    let s = package.session(key)?;
    let (Some((_, c)), Some(rho), Some(cl)) =
        (package.commitments.get(i), s.rho.get(i), s.c_lambda.get(i))
    else {
        return Err(Error::MissingCommitment { identifier: id });
    };
    let (Some(b0), Some(b1)) = (
        Base::new(c.binding, &-*rho),
        Base::new(verifying_share.point, &-*cl),
    ) else {
        return Err(Error::ArithmeticCheck {
            what: "FROST share verification (GLV split)",
        });
    };
    match small_straus(&[b0, b1], &share.0) {
        Some(p) if p.eq_affine(&c.hiding) => Ok(()),
        _ => Err(Error::InvalidShare { identifier: id }),
    }
}

/// Verifies a FROST signature: `z G = R + c Y` with `c = H2(R || Y || msg)`. Allocates nothing.
///
/// # Errors
///
/// [`Error::InvalidSignature`] if it does not verify; [`Error::ArithmeticCheck`] (reject,
/// as for an invalid signature) if an internal check failed, which no valid input causes.
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> Result<(), Error> {
    let c = hash_to_scalar(b"chal", &[&sig.r_bytes, &key.bytes, msg]);
    let Some(base) = Base::new(key.point, &-c) else {
        return Err(Error::ArithmeticCheck {
            what: "FROST signature verification (GLV split)",
        });
    };
    match small_straus(&[base], &sig.z) {
        Some(p) if p.eq_affine(&sig.r) => Ok(()),
        _ => Err(Error::InvalidSignature),
    }
}

/// A group verifying key with a precomputed table of its multiples (the comb table of
/// [`crate::bip340::PrecomputedKey`]: 2,176 affine points, 136 KiB, built once with
/// about 2,200 point additions). A signature check against it needs no doubling: at most
/// 34 table additions for the key and 34 for the generator. For keys verified again and
/// again (a coordinator's group key). Cloning shares the table.
#[derive(Clone)]
pub struct PrecomputedVerifyingKey {
    key: VerifyingKey,
    table: Arc<CombTable>,
}

impl core::fmt::Debug for PrecomputedVerifyingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PrecomputedVerifyingKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PrecomputedVerifyingKey {
    /// Builds the table (allocates once).
    pub fn new(key: &VerifyingKey) -> Self {
        Self {
            key: *key,
            table: Arc::new(CombTable::new(&key.point)),
        }
    }

    /// The key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Verifies a signature against this key (same result as [`verify`]). Allocates nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSignature`] if it does not verify.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), Error> {
        let c = hash_to_scalar(b"chal", &[&sig.r_bytes, &self.key.bytes, msg]);
        let mut acc = Jacobian::INFINITY;
        let complete = generator_table().mul_add_scalar(&mut acc, &sig.z)
            && self.table.mul_add_scalar(&mut acc, &-c);
        if complete && acc.eq_affine(&sig.r) {
            Ok(())
        } else {
            Err(Error::InvalidSignature)
        }
    }
}

/// A signer's verifying share with a precomputed table of its multiples (as
/// [`PrecomputedVerifyingKey`]): a share check then spends its doublings only on the
/// binding commitment `E_i`. Cloning shares the table.
#[derive(Clone)]
pub struct PrecomputedVerifyingShare {
    share: VerifyingShare,
    table: Arc<CombTable>,
}

impl core::fmt::Debug for PrecomputedVerifyingShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PrecomputedVerifyingShare")
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

impl PrecomputedVerifyingShare {
    /// Builds the table (allocates once).
    pub fn new(share: &VerifyingShare) -> Self {
        Self {
            share: *share,
            table: Arc::new(CombTable::new(&share.point)),
        }
    }

    /// The verifying share.
    pub fn share(&self) -> &VerifyingShare {
        &self.share
    }

    /// Verifies one signer's share (same result as [`verify_signature_share`]):
    /// `z_i G - rho_i E_i - c lambda_i Y_i = D_i` with `Y_i` from the table. Allocates
    /// nothing.
    ///
    /// # Errors
    ///
    /// As [`verify_signature_share`].
    pub fn verify_share(
        &self,
        package: &SigningPackage<'_>,
        key: &VerifyingKey,
        id: Identifier,
        share: &SignatureShare,
    ) -> Result<(), Error> {
        let i = package.index_of(id)?;
        let s = package.session(key)?;
        let (Some((_, c)), Some(rho), Some(cl)) =
            (package.commitments.get(i), s.rho.get(i), s.c_lambda.get(i))
        else {
            return Err(Error::MissingCommitment { identifier: id });
        };
        let base = Base::new(c.binding, &-*rho).ok_or(Error::ArithmeticCheck {
            what: "FROST share verification (GLV split)",
        })?;
        let mut acc =
            small_straus(&[base], &share.0).ok_or(Error::InvalidShare { identifier: id })?;
        if self.table.mul_add_scalar(&mut acc, &-*cl) && acc.eq_affine(&c.hiding) {
            Ok(())
        } else {
            Err(Error::InvalidShare { identifier: id })
        }
    }
}

/// The signature `(R, sum z_i)` after checking that `shares` holds exactly one share per
/// signer of the package (no verification).
fn sum_shares(
    package: &SigningPackage<'_>,
    key: &VerifyingKey,
    shares: &[(Identifier, SignatureShare, VerifyingShare)],
) -> Result<Signature, Error> {
    let n = package.commitments.len();
    let mut seen = [false; MAX_SIGNERS];
    let mut z = Scalar::ZERO;
    for (id, share, _) in shares {
        let i = package.index_of(*id)?;
        match seen.get_mut(i) {
            Some(s) if *s => return Err(Error::DuplicateIdentifier { identifier: *id }),
            Some(s) => *s = true,
            None => return Err(Error::MissingCommitment { identifier: *id }),
        }
        z += share.0;
    }
    if let Some(i) = seen.iter().take(n).position(|s| !s)
        && let Some((identifier, _)) = package.commitments.get(i)
    {
        return Err(Error::MissingShare {
            identifier: *identifier,
        });
    }
    let s = package.session(key)?;
    Ok(Signature {
        r: s.r,
        r_bytes: s.r_bytes,
        z,
    })
}

/// Sums the shares into a signature and verifies it; if it does not verify, checks every
/// share and names the culprits.
///
/// # Errors
///
/// [`AggregateError::InvalidShares`] naming the signers whose shares are wrong;
/// [`AggregateError::SharesDoNotMatchKey`] when every share is valid but the sum is not (the
/// verifying shares belong to another key, or too few signers took part);
/// [`AggregateError::Input`] for shares from unknown signers, duplicates or missing shares.
pub fn aggregate(
    package: &SigningPackage<'_>,
    key: &VerifyingKey,
    shares: &[(Identifier, SignatureShare, VerifyingShare)],
) -> Result<Signature, AggregateError> {
    let sig = sum_shares(package, key, shares)?;
    if verify(key, package.msg, &sig).is_ok() {
        return Ok(sig);
    }
    let culprits: Vec<Identifier> = shares
        .iter()
        .filter(|(id, share, vs)| verify_signature_share(package, key, *id, vs, share).is_err())
        .map(|(id, _, _)| *id)
        .collect();
    if culprits.is_empty() {
        return Err(AggregateError::SharesDoNotMatchKey);
    }
    Err(AggregateError::InvalidShares { culprits })
}

/// Sums shares that have **already passed** a share check into a signature, without
/// verifying the signature again: the coordinator's fast path after
/// [`ShareBatchVerifier::verify`] (or [`verify_signature_share`]) accepted every share of
/// the session. It saves one verification (a two-base multiplication, about 540,000
/// instructions) per session. Allocates nothing.
///
/// # Why the result is valid
///
/// Each accepted share satisfies `z_i G = D_i + rho_i E_i + c lambda_i Y_i`. Summing over
/// the session's signers gives `z G = R + c sum_i lambda_i Y_i`, with `R` the group
/// commitment and `z = sum_i z_i`. When the verifying shares belong to `key`
/// (`Y_i = f(x_i) G` and `Y = f(0) G` for one polynomial `f` of degree below the number
/// of signers: what key generation produces, and what [`verify_key_shares`] checks once
/// per key), Lagrange interpolation at zero gives `sum_i lambda_i Y_i = Y`, so
/// `z G = R + c Y`: exactly the signature equation [`verify`] checks. A batch accepts an
/// invalid share with probability about 2^-128 (its random weights), the same bound as
/// the batch check itself.
///
/// `min_signers` is the key's threshold: fewer shares than that are refused, since valid
/// shares of too few signers sum to a value that is not a signature of the key.
///
/// Use [`aggregate`] when the shares were not checked, or when the verifying shares were
/// not checked against the key: this function does not look at the share values' validity
/// and sums a wrong share into a wrong signature.
///
/// # Errors
///
/// [`Error::TooFewSigners`] when `min_signers` is 0 or there are fewer shares than
/// `min_signers`; as [`AggregateError::Input`] of [`aggregate`]: shares from unknown
/// signers, duplicates or missing shares, a package bound to another key.
pub fn aggregate_verified_shares(
    package: &SigningPackage<'_>,
    key: &VerifyingKey,
    min_signers: usize,
    shares: &[(Identifier, SignatureShare, VerifyingShare)],
) -> Result<Signature, Error> {
    if min_signers == 0 || shares.len() < min_signers {
        return Err(Error::TooFewSigners {
            got: shares.len(),
            need: min_signers.max(1),
        });
    }
    sum_shares(package, key, shares)
}

/// Sums the shares into a signature **without verifying it**: for a coordinator that
/// verifies signatures in batches ([`SignatureBatchVerifier`]) and looks for culprits
/// (with [`ShareBatchVerifier`] or [`aggregate`]) only in the sessions whose signature
/// fails, the flow RFC 9591 section 5.3 describes. Allocates nothing.
///
/// The result is only a valid signature if every share is valid (or if invalid shares
/// cancel each other out, which a verified signature then shows harmless). Never release
/// it unverified.
///
/// # Errors
///
/// As [`AggregateError::Input`] of [`aggregate`]: shares from unknown signers, duplicates
/// or missing shares, a package bound to another key.
pub fn aggregate_unverified(
    package: &SigningPackage<'_>,
    key: &VerifyingKey,
    shares: &[(Identifier, SignatureShare, VerifyingShare)],
) -> Result<Signature, Error> {
    sum_shares(package, key, shares)
}

/// Batch verifier for FROST signatures (any keys, any messages) in one multiscalar
/// multiplication: `sum_i a_i (R_i + c_i Y_i - z_i G) = 0` with 128-bit weights `a_i`
/// derived from a hash of the whole batch (as [`crate::bip340::BatchVerifier`]). A group key
/// that signs many entries is one base. On failure the invalid entries are named by
/// splitting the batch.
///
/// A signature costs one 128-bit base here (about 35,000 instructions in a batch of 32)
/// where its three shares cost nine in a [`ShareBatchVerifier`]: a coordinator verifies
/// the aggregates of many sessions at once and checks shares only in the sessions that
/// fail, to name the cheaters.
pub struct SignatureBatchVerifier<'a> {
    engine: Engine,
    _marker: core::marker::PhantomData<&'a VerifyingKey>,
}

crate::batch::batch_verifier_common!(SignatureBatchVerifier, "signatures");

impl<'a> SignatureBatchVerifier<'a> {
    /// Queues a signature of `msg` under `key`; the challenge is hashed here.
    ///
    /// # Errors
    ///
    /// [`Error::BatchFull`] when `capacity` signatures are queued.
    pub fn push(
        &mut self,
        key: &'a VerifyingKey,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), Error> {
        if self.engine.len() >= self.engine.capacity() {
            return Err(Error::BatchFull {
                capacity: self.engine.capacity(),
            });
        }
        self.push_with(key, None, msg, sig)
    }

    /// [`Self::push`] with the key's precomputed table: the key's term of the batch is then
    /// a table lookup instead of a base of the multiplication (pays in small batches).
    ///
    /// # Errors
    ///
    /// [`Error::BatchFull`] when `capacity` signatures are queued.
    pub fn push_precomputed(
        &mut self,
        key: &'a PrecomputedVerifyingKey,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), Error> {
        self.push_with(&key.key, Some(&key.table), msg, sig)
    }

    fn push_with(
        &mut self,
        key: &VerifyingKey,
        table: Option<&Arc<CombTable>>,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), Error> {
        if self.engine.len() >= self.engine.capacity() {
            return Err(Error::BatchFull {
                capacity: self.engine.capacity(),
            });
        }
        let c = hash_to_scalar(b"chal", &[&sig.r_bytes, &key.bytes, msg]);
        let key_idx = self.engine.intern_key(&key.point, &key.bytes, table);
        let entry = Entry {
            points: [sig.r, Affine::PLACEHOLDER],
            coefs: [None, None],
            npoints: 1,
            key: key_idx,
            key_coef: c,
            g: sig.z,
            bad: false,
        };
        self.engine
            .push(&entry, &[&key.bytes, &sig.to_bytes(), &scalar_to_bytes(&c)])
    }
}

/// Batch verifier for FROST signature shares, from any number of sessions, in one
/// multiscalar multiplication. A verifying share that occurs in many entries (the same
/// signer across sessions) is one base of the multiplication.
pub struct ShareBatchVerifier<'a> {
    engine: Engine,
    _marker: core::marker::PhantomData<&'a SigningPackage<'a>>,
}

crate::batch::batch_verifier_common!(ShareBatchVerifier, "shares");

impl<'a> ShareBatchVerifier<'a> {
    /// Queues a share of `id` in the session `package`.
    ///
    /// # Errors
    ///
    /// [`Error::BatchFull`], [`Error::MissingCommitment`], and as [`SigningPackage::with_key`].
    pub fn push(
        &mut self,
        package: &'a SigningPackage<'a>,
        key: &'a VerifyingKey,
        id: Identifier,
        verifying_share: &VerifyingShare,
        share: &SignatureShare,
    ) -> Result<(), Error> {
        self.push_with(package, key, id, verifying_share, None, share)
    }

    /// [`Self::push`] with the signer's precomputed verifying share: its term of the batch
    /// is then a table lookup instead of a base of the multiplication (pays in small
    /// batches, where each verifying share would otherwise need its own window table).
    ///
    /// # Errors
    ///
    /// As [`Self::push`].
    pub fn push_precomputed(
        &mut self,
        package: &'a SigningPackage<'a>,
        key: &'a VerifyingKey,
        id: Identifier,
        verifying_share: &PrecomputedVerifyingShare,
        share: &SignatureShare,
    ) -> Result<(), Error> {
        self.push_with(
            package,
            key,
            id,
            &verifying_share.share,
            Some(&verifying_share.table),
            share,
        )
    }

    fn push_with(
        &mut self,
        package: &'a SigningPackage<'a>,
        key: &'a VerifyingKey,
        id: Identifier,
        verifying_share: &VerifyingShare,
        table: Option<&Arc<CombTable>>,
        share: &SignatureShare,
    ) -> Result<(), Error> {
        if self.engine.len() >= self.engine.capacity() {
            return Err(Error::BatchFull {
                capacity: self.engine.capacity(),
            });
        }
        let i = package.index_of(id)?;
        let s = package.session(key)?;
        let (Some((_, c)), Some(rho), Some(cl)) =
            (package.commitments.get(i), s.rho.get(i), s.c_lambda.get(i))
        else {
            return Err(Error::MissingCommitment { identifier: id });
        };
        let key_idx = self
            .engine
            .intern_key(&verifying_share.point, &verifying_share.bytes, table);
        let entry = Entry {
            points: [c.hiding, c.binding],
            coefs: [None, Some(*rho)],
            npoints: 2,
            key: key_idx,
            key_coef: *cl,
            g: share.0,
            bad: false,
        };
        self.engine.push(
            &entry,
            &[
                &c.hiding_bytes,
                &c.binding_bytes,
                &scalar_to_bytes(rho),
                &verifying_share.bytes,
                &scalar_to_bytes(cl),
                &scalar_to_bytes(&share.0),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::elliptic_curve::sec1::ToSec1Point;

    fn point_of(k: u64) -> [u8; 33] {
        let p = (k256::ProjectivePoint::GENERATOR * Scalar::from(k)).to_affine();
        p.to_sec1_point(true).as_bytes().try_into().unwrap()
    }

    /// Lagrange coefficients of distinct nodes interpolate (`sum lambda_i f(x_i) = f(at)`
    /// for a line); repeated nodes have no inverse, and `lagrange_at` says so instead
    /// of handing back zero coefficients (with which `c * lambda_i * Y_i` would vanish
    /// from a share check, so that a share made without the secret would pass).
    #[test]
    fn lagrange_at_fails_closed_on_repeated_nodes() {
        let f = |x: u64| Scalar::from(5u64) + Scalar::from(3u64) * Scalar::from(x);
        let xs = [Scalar::from(1u64), Scalar::from(2u64), Scalar::from(4u64)];
        let mut out = [Scalar::ZERO; 3];
        assert!(lagrange_at(&xs, &Scalar::from(7u64), &mut out));
        let sum = out
            .iter()
            .zip([1u64, 2, 4])
            .fold(Scalar::ZERO, |acc, (l, x)| acc + *l * f(x));
        assert_eq!(sum, f(7));
        let repeated = [Scalar::from(1u64), Scalar::from(2u64), Scalar::from(2u64)];
        assert!(!lagrange_at(&repeated, &Scalar::ZERO, &mut out));
    }

    /// `verify_key_shares` names a share only as the single share whose removal makes the
    /// rest fit the key. Fewer than `n - min_signers + 1` wrong shares can never make an
    /// honest share that one; that many wrong shares chosen together can (they lie with
    /// the key on another polynomial), so the name is only as good as that bound.
    #[test]
    fn key_share_blame_bound() {
        // A 2-of-n key: f(x) = 5 + 3x; a colluding f'(x) = 5 + 8x agrees only at zero.
        let y =
            |c0: u64, c1: u64, x: u64| VerifyingShare::from_bytes(&point_of(c0 + c1 * x)).unwrap();
        let key = VerifyingKey::from_bytes(&point_of(5)).unwrap();
        let id = |x: u16| Identifier::from_u16(x).unwrap();
        // n = 4: two colluding wrong shares (3 and 4) cannot frame signers 1 or 2.
        let four = [
            (id(1), y(5, 3, 1)),
            (id(2), y(5, 3, 2)),
            (id(3), y(5, 8, 3)),
            (id(4), y(5, 8, 4)),
        ];
        assert_eq!(
            verify_key_shares(&key, 2, &four),
            Err(Error::InconsistentVerifyingShares { identifier: None })
        );
        // One wrong share is named wherever it sits.
        for bad in 0..4 {
            let mut one = [
                (id(1), y(5, 3, 1)),
                (id(2), y(5, 3, 2)),
                (id(3), y(5, 3, 3)),
                (id(4), y(5, 3, 4)),
            ];
            one[bad].1 = y(6, 3, u64::try_from(bad).unwrap() + 1);
            assert_eq!(
                verify_key_shares(&key, 2, &one),
                Err(Error::InconsistentVerifyingShares {
                    identifier: Some(one[bad].0)
                })
            );
        }
        // n = 3 = min_signers + 1: two colluding wrong shares (2 and 3) fit the key with
        // each other, and honest signer 1 is the only misfit: the documented limit.
        let three = [
            (id(1), y(5, 3, 1)),
            (id(2), y(5, 8, 2)),
            (id(3), y(5, 8, 3)),
        ];
        assert_eq!(
            verify_key_shares(&key, 2, &three),
            Err(Error::InconsistentVerifyingShares {
                identifier: Some(id(1))
            })
        );
    }

    /// Comb tables that could not be built (here: from a point off the curve, which no
    /// public constructor accepts) must make verification fail, not drop the key's or the
    /// verifying share's term: with the term dropped, `R = zG` passed as a signature for
    /// any key and `z = d + rho e` as a share for any signer.
    #[test]
    fn broken_key_and_share_tables_fail_closed() {
        let broken = || Arc::new(CombTable::new(&Affine::PLACEHOLDER));
        let vk = VerifyingKey::from_bytes(&point_of(7)).unwrap();
        let pre_key = PrecomputedVerifyingKey {
            key: vk,
            table: broken(),
        };
        // R = zG: a signature only if the key's term is dropped.
        let z = Scalar::from(0x1234_5678_u64);
        let mut sig_bytes = [0u8; 65];
        sig_bytes[..33].copy_from_slice(&point_of(0x1234_5678));
        sig_bytes[33..].copy_from_slice(&scalar_to_bytes(&z));
        let sig = Signature::from_bytes(&sig_bytes).unwrap();
        let msg = b"message";
        assert!(verify(&vk, msg, &sig).is_err());
        assert!(pre_key.verify(msg, &sig).is_err());
        let mut batch = SignatureBatchVerifier::with_capacity(2);
        batch.push_precomputed(&pre_key, msg, &sig).unwrap();
        assert_eq!(batch.verify().unwrap_err().invalid(), &[0]);

        // A share z = d + rho e: valid only if the verifying share's term is dropped.
        let id = Identifier::from_u16(1).unwrap();
        let (d, e) = (Scalar::from(11u64), Scalar::from(13u64));
        let commitments = [(
            id,
            SigningCommitments::from_bytes(&point_of(11), &point_of(13)).unwrap(),
        )];
        let pkg = SigningPackage::new(msg, &commitments).unwrap();
        let rho = scalar_from_bytes(&pkg.binding_factor(&vk, id).unwrap()).unwrap();
        let share = SignatureShare(d + rho * e);
        let vs = VerifyingShare::from_bytes(&point_of(5)).unwrap();
        let pre_share = PrecomputedVerifyingShare {
            share: vs,
            table: broken(),
        };
        assert!(verify_signature_share(&pkg, &vk, id, &vs, &share).is_err());
        assert!(pre_share.verify_share(&pkg, &vk, id, &share).is_err());
        let mut batch = ShareBatchVerifier::with_capacity(2);
        batch
            .push_precomputed(&pkg, &vk, id, &pre_share, &share)
            .unwrap();
        assert_eq!(batch.verify().unwrap_err().invalid(), &[0]);
    }
}
