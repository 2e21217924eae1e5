//! The signers' side of FROST(secp256k1, SHA-256) (RFC 9591), for the load generator:
//! trusted-dealer key generation with Shamir shares (RFC 9591 appendix C), round-one
//! nonces and commitments (section 5.1) and round-two signature shares (section 5.2):
//! `z_i = d_i + e_i * rho_i + lambda_i * s_i * c`.
//!
//! The coordinator's side (binding factors, group commitment, verification) is
//! `tally_mpc::frost`; this module reuses it for `rho_i` and `c * lambda_i` and is tested against its
//! verifier, so a share this module makes is exactly what the coordinator must accept.
//! Secrets here are test material for the load generator: they are generated with the
//! operating system's random source but not zeroised or handled in constant time.

use k256::elliptic_curve::group::GroupEncoding;
use k256::elliptic_curve::ops::Reduce;
use k256::{ProjectivePoint, Scalar, WideBytes};
use tally_mpc::frost::{
    Identifier, SignatureShare, SigningCommitments, SigningPackage, VerifyingKey, VerifyingShare,
};

/// Why a signer operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The operating system's random source failed.
    #[error("the OS random source failed ({0}); check /dev/urandom or getrandom(2)")]
    Random(getrandom::Error),
    /// Threshold and signer count are inconsistent.
    #[error(
        "threshold {t} of {n} signers is invalid; use 1 <= t <= n <= {max}",
        max = tally_mpc::frost::MAX_SIGNERS
    )]
    Threshold {
        /// Threshold.
        t: u16,
        /// Signers.
        n: u16,
    },
    /// The coordinator library rejected an encoding this module produced.
    #[error("FROST encoding rejected: {0}")]
    Frost(#[from] tally_mpc::Error),
    /// The signer is not part of the session's commitment list.
    #[error("signer {id} has no commitment in this session; sign only sessions you committed to")]
    NotInSession {
        /// The signer.
        id: u16,
    },
}

fn random_scalar() -> Result<Scalar, SignerError> {
    let mut wide = [0u8; 64];
    getrandom::getrandom(&mut wide).map_err(SignerError::Random)?;
    Ok(<Scalar as Reduce<WideBytes>>::reduce(&WideBytes::from(
        wide,
    )))
}

fn scalar_from_32(bytes: &[u8; 32]) -> Scalar {
    let mut wide = [0u8; 64];
    if let Some(lo) = wide.get_mut(32..) {
        lo.copy_from_slice(bytes);
    }
    <Scalar as Reduce<WideBytes>>::reduce(&WideBytes::from(wide))
}

fn point_bytes(p: &ProjectivePoint) -> [u8; 33] {
    let enc = p.to_affine().to_bytes();
    let mut out = [0u8; 33];
    out.copy_from_slice(enc.as_slice());
    out
}

/// One signer's long-term key share.
#[derive(Clone, Debug)]
pub struct SignerKey {
    /// The signer's identifier (1..=n).
    pub id: u16,
    secret: Scalar,
    /// The public verifying share `Y_i = s_i G`.
    pub verifying_share: VerifyingShare,
}

/// A FROST group made by a trusted dealer: the group key and every signer's share.
#[derive(Clone, Debug)]
pub struct Group {
    /// Threshold.
    pub t: u16,
    /// Number of signers.
    pub n: u16,
    /// The group verifying key `Y`.
    pub key: VerifyingKey,
    /// Signers `1..=n`, in order.
    pub signers: Vec<SignerKey>,
}

impl Group {
    /// Trusted-dealer key generation: a random secret `s`, a random polynomial `f` of
    /// degree `t - 1` with `f(0) = s`, and share `s_i = f(i)` for `i = 1..=n`.
    ///
    /// # Errors
    /// [`SignerError::Threshold`], [`SignerError::Random`].
    pub fn deal(t: u16, n: u16) -> Result<Self, SignerError> {
        if t == 0 || t > n || usize::from(n) > tally_mpc::frost::MAX_SIGNERS {
            return Err(SignerError::Threshold { t, n });
        }
        let coefs = (0..t)
            .map(|_| random_scalar())
            .collect::<Result<Vec<_>, _>>()?;
        let secret = coefs.first().copied().unwrap_or(Scalar::ZERO);
        let key =
            VerifyingKey::from_bytes(&point_bytes(&ProjectivePoint::mul_by_generator(&secret)))?;
        let mut signers = Vec::with_capacity(usize::from(n));
        for id in 1..=n {
            let x = Scalar::from(u64::from(id));
            // Horner: f(x) = c0 + x (c1 + x (c2 + ...)).
            let s = coefs.iter().rev().fold(Scalar::ZERO, |acc, c| acc * x + c);
            let vs =
                VerifyingShare::from_bytes(&point_bytes(&ProjectivePoint::mul_by_generator(&s)))?;
            signers.push(SignerKey {
                id,
                secret: s,
                verifying_share: vs,
            });
        }
        Ok(Self { t, n, key, signers })
    }

    /// The signer with identifier `id`.
    pub fn signer(&self, id: u16) -> Option<&SignerKey> {
        self.signers.iter().find(|s| s.id == id)
    }
}

/// A signer's round-one nonces (secret) and commitments (public).
#[derive(Clone, Debug)]
pub struct Nonces {
    hiding: Scalar,
    binding: Scalar,
    /// `D_i = d_i G`, compressed.
    pub hiding_commitment: [u8; 33],
    /// `E_i = e_i G`, compressed.
    pub binding_commitment: [u8; 33],
}

impl Nonces {
    /// Round one: fresh random nonces `(d_i, e_i)` and their commitments.
    ///
    /// # Errors
    /// [`SignerError::Random`].
    pub fn generate() -> Result<Self, SignerError> {
        let hiding = random_scalar()?;
        let binding = random_scalar()?;
        Ok(Self {
            hiding,
            binding,
            hiding_commitment: point_bytes(&ProjectivePoint::mul_by_generator(&hiding)),
            binding_commitment: point_bytes(&ProjectivePoint::mul_by_generator(&binding)),
        })
    }

    /// The commitments in `tally_mpc`'s type.
    ///
    /// # Errors
    /// Never for commitments made by [`Nonces::generate`].
    pub fn commitments(&self) -> Result<SigningCommitments, SignerError> {
        Ok(SigningCommitments::from_bytes(
            &self.hiding_commitment,
            &self.binding_commitment,
        )?)
    }
}

/// Round two: the signature share of `signer` for the session `(msg, commitments)`, whose
/// round-one nonces were `nonces`.
///
/// # Errors
/// [`SignerError::NotInSession`], or the package's errors (duplicate identifiers).
pub fn sign(
    group: &Group,
    signer: &SignerKey,
    nonces: &Nonces,
    msg: &[u8],
    commitments: &[(Identifier, SigningCommitments)],
) -> Result<SignatureShare, SignerError> {
    let me = Identifier::from_u16(signer.id)?;
    if !commitments.iter().any(|(i, _)| *i == me) {
        return Err(SignerError::NotInSession { id: signer.id });
    }
    let package = SigningPackage::new(msg, commitments)?;
    let rho = scalar_from_32(&package.binding_factor(&group.key, me)?);
    let c_lambda = scalar_from_32(&package.challenge_lambda(&group.key, me)?);
    let z = nonces.hiding + nonces.binding * rho + c_lambda * signer.secret;
    let mut out = [0u8; 32];
    out.copy_from_slice(z.to_bytes().as_slice());
    Ok(SignatureShare::from_bytes(&out)?)
}

/// A share that is wrong by one (`z_i + 1`): what a cheating or faulty signer sends.
pub fn corrupt(share: &SignatureShare) -> SignatureShare {
    let z = scalar_from_32(&share.to_bytes()) + Scalar::ONE;
    let mut out = [0u8; 32];
    out.copy_from_slice(z.to_bytes().as_slice());
    SignatureShare::from_bytes(&out).unwrap_or(*share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_mpc::frost::{ShareBatchVerifier, aggregate, verify, verify_signature_share};

    fn session(
        group: &Group,
        ids: &[u16],
        msg: &[u8],
    ) -> Vec<(
        Identifier,
        SigningCommitments,
        SignatureShare,
        VerifyingShare,
    )> {
        let nonces: Vec<Nonces> = ids.iter().map(|_| Nonces::generate().unwrap()).collect();
        let commitments: Vec<(Identifier, SigningCommitments)> = ids
            .iter()
            .zip(&nonces)
            .map(|(id, n)| (Identifier::from_u16(*id).unwrap(), n.commitments().unwrap()))
            .collect();
        ids.iter()
            .zip(&nonces)
            .map(|(id, n)| {
                let s = group.signer(*id).unwrap();
                let share = sign(group, s, n, msg, &commitments).unwrap();
                (
                    Identifier::from_u16(*id).unwrap(),
                    commitments[ids.iter().position(|x| x == id).unwrap()].1,
                    share,
                    s.verifying_share,
                )
            })
            .collect()
    }

    #[test]
    fn shares_verify_and_aggregate_with_tally_mpc() {
        for (t, n, ids) in [
            (3u16, 5u16, vec![1u16, 3, 5]),
            (2, 3, vec![3, 2]),
            (5, 7, vec![7, 1, 2, 6, 4]),
            (1, 1, vec![1]),
        ] {
            let group = Group::deal(t, n).unwrap();
            let msg = b"tally signer test";
            let parts = session(&group, &ids, msg);
            let commitments: Vec<_> = parts.iter().map(|p| (p.0, p.1)).collect();
            let pkg = SigningPackage::new(msg, &commitments).unwrap();
            for (id, _, share, vs) in &parts {
                verify_signature_share(&pkg, &group.key, *id, vs, share).unwrap();
            }
            let shares: Vec<_> = parts.iter().map(|p| (p.0, p.2, p.3)).collect();
            let sig = aggregate(&pkg, &group.key, &shares).unwrap();
            verify(&group.key, msg, &sig).unwrap();
            // A corrupted share is named as the culprit, by aggregate and by the batch.
            let mut bad = shares.clone();
            bad[0].1 = corrupt(&bad[0].1);
            let err = aggregate(&pkg, &group.key, &bad).unwrap_err();
            assert_eq!(err.culprits(), &[bad[0].0]);
            let mut batch = ShareBatchVerifier::with_capacity(bad.len());
            for (id, share, vs) in &bad {
                batch.push(&pkg, &group.key, *id, vs, share).unwrap();
            }
            assert_eq!(batch.verify().unwrap_err().invalid(), &[0]);
        }
    }

    #[test]
    fn rejects_bad_thresholds_and_foreign_signers() {
        assert!(matches!(
            Group::deal(0, 3),
            Err(SignerError::Threshold { .. })
        ));
        assert!(matches!(
            Group::deal(4, 3),
            Err(SignerError::Threshold { .. })
        ));
        let group = Group::deal(2, 3).unwrap();
        let n1 = Nonces::generate().unwrap();
        let commitments = vec![(Identifier::from_u16(1).unwrap(), n1.commitments().unwrap())];
        let s3 = group.signer(3).unwrap();
        assert!(matches!(
            sign(&group, s3, &n1, b"m", &commitments),
            Err(SignerError::NotInSession { id: 3 })
        ));
    }
}
