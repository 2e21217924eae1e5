//! Typed errors. Every message says what was wrong and what to do about it.

use crate::frost::Identifier;

/// Why an input was rejected or a signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A byte string had the wrong length.
    #[error("{what}: expected {expected} bytes, got {got}; pass the exact encoding")]
    InvalidLength {
        /// The item being decoded.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A field element (an x coordinate or a signature's `r`) was not below the field prime p.
    #[error("{what}: value is not below the field prime p, so the encoding is invalid; reject it")]
    FieldElementOutOfRange {
        /// The item being decoded.
        what: &'static str,
    },
    /// A scalar was not below the group order n.
    #[error("{what}: scalar is not below the group order n, so the encoding is invalid; reject it")]
    ScalarOutOfRange {
        /// The item being decoded.
        what: &'static str,
    },
    /// No curve point has the given x coordinate.
    #[error(
        "{what}: no secp256k1 point has this x coordinate (the key or signature is forged or corrupted); reject it"
    )]
    NotOnCurve {
        /// The item being decoded.
        what: &'static str,
    },
    /// A compressed point did not start with 0x02 or 0x03.
    #[error("{what}: SEC1 tag {tag:#04x} is not 0x02 or 0x03; pass a 33-byte compressed point")]
    InvalidPointTag {
        /// The item being decoded.
        what: &'static str,
        /// The first byte seen.
        tag: u8,
    },
    /// A point was the identity where the protocol forbids it.
    #[error(
        "{what}: the identity point is not allowed here; reject this input (for a FROST group commitment: discard the session's nonces and restart from round one with fresh ones)"
    )]
    IdentityPoint {
        /// The item being decoded or computed.
        what: &'static str,
    },
    /// An internal consistency check failed: a GLV split half wider than 128 bits, a
    /// multiscalar multiplication with more terms than its indices hold, or a Lagrange
    /// denominator with no inverse. Valid arithmetic cannot produce these; the input was
    /// rejected (fail closed) rather than checked with a wrong value.
    #[error(
        "{what}: an internal arithmetic check failed, which no valid input should cause, so the check failed closed; reject the input and report it to the tally-mpc maintainers"
    )]
    ArithmeticCheck {
        /// The computation whose check failed.
        what: &'static str,
    },
    /// The signature does not verify against this key and message.
    #[error("signature is invalid for this public key and message; reject it")]
    InvalidSignature,
    /// A batch was full.
    #[error(
        "batch is full (capacity {capacity}); call verify() and clear(), or create the verifier with a larger capacity"
    )]
    BatchFull {
        /// The capacity given to `with_capacity`.
        capacity: usize,
    },
    /// A FROST identifier was zero.
    #[error("FROST identifier is zero; use non-zero identifiers (1, 2, 3, ...)")]
    ZeroIdentifier,
    /// A FROST identifier occurred twice.
    #[error("FROST identifier {identifier} occurs twice; pass each signer once per session")]
    DuplicateIdentifier {
        /// The repeated identifier.
        identifier: Identifier,
    },
    /// More signers than a `SigningPackage` can hold.
    #[error(
        "{count} signers exceed the maximum of {max} (per signing session, and per key for verify_key_shares); sign with at most {max} signers, any subset of at least the threshold"
    )]
    TooManySigners {
        /// Signers given.
        count: usize,
        /// `frost::MAX_SIGNERS`.
        max: usize,
    },
    /// A signing session had no signers.
    #[error(
        "the commitment list is empty; pass the round-one commitments of at least the threshold of signers"
    )]
    NoSigners,
    /// A share came from a signer with no commitment in the session.
    #[error(
        "signer {identifier} has no commitment in this signing package (it did not take part in round one); drop its share, or rebuild the package with its commitment"
    )]
    MissingCommitment {
        /// The signer.
        identifier: Identifier,
    },
    /// A signer of the session sent no share.
    #[error(
        "signer {identifier} committed in round one but sent no signature share; collect every share"
    )]
    MissingShare {
        /// The signer.
        identifier: Identifier,
    },
    /// A signing package was used with a different group key than the one it was bound to.
    #[error(
        "this signing package was first used with a different group verifying key; use one package per session and key"
    )]
    KeyMismatch,
    /// Fewer verifying shares than the threshold (or a threshold of zero).
    #[error(
        "{got} verifying shares given for a threshold of {need}; pass every signer's verifying share and the key's threshold (at least 1)"
    )]
    NotEnoughShares {
        /// Shares given.
        got: usize,
        /// The threshold (at least 1).
        need: usize,
    },
    /// Fewer signature shares than the key's threshold (or a threshold of zero) given to
    /// [`crate::frost::aggregate_verified_shares`]: their sum cannot be a signature of the key.
    #[error(
        "{got} signature shares given for a threshold of {need}; collect shares from at least the key's threshold of signers (and pass the real threshold, at least 1)"
    )]
    TooFewSigners {
        /// Shares given.
        got: usize,
        /// The threshold (at least 1).
        need: usize,
    },
    /// Verifying shares that do not belong to the group key: `identifier` is the one share
    /// that does not fit the key and the other shares, or `None` when no single share
    /// explains it (several are wrong, they belong to another key, or there are only
    /// threshold many, so a wrong share cannot be told from a wrong key). The named share
    /// is certainly wrong only while fewer than `n - threshold + 1` shares are (see
    /// [`crate::frost::verify_key_shares`]).
    #[error(
        "the verifying shares do not belong to this group verifying key ({}); check the key package from key generation",
        identifier.map_or_else(|| "no single share is to blame: several are wrong, or they belong to another key".to_owned(), |i| format!("signer {i}'s share does not fit the key and the other shares"))
    )]
    InconsistentVerifyingShares {
        /// The one share that does not fit, when a single share explains the misfit.
        identifier: Option<Identifier>,
    },
    /// A FROST signature share is invalid.
    #[error(
        "signature share of signer {identifier} is invalid (that signer cheated or the share was corrupted); exclude that signer and restart the session"
    )]
    InvalidShare {
        /// The signer.
        identifier: Identifier,
    },
}

/// `a, b, c` with each item's `Display`.
fn join<T: core::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn batch_message(invalid: &[usize]) -> String {
    match invalid {
        [one] => format!("batch entry {one} is invalid; reject it and accept the others"),
        _ => format!(
            "{} batch entries are invalid (indices {}); reject them and accept the others",
            invalid.len(),
            join(invalid)
        ),
    }
}

/// Signers by their identifiers' `Display` (a number, or `0x` and 64 hex digits), not
/// by `Debug` (32 decimal bytes each).
fn culprits_message(culprits: &[Identifier]) -> String {
    match culprits {
        [one] => format!(
            "invalid signature share from signer {one}; exclude that signer and restart the session"
        ),
        _ => format!(
            "invalid signature shares from signers {}; exclude them and restart the session",
            join(culprits)
        ),
    }
}

/// A failed batch verification: the indices (in push order) of the invalid entries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", batch_message(invalid))]
pub struct BatchError {
    invalid: Vec<usize>,
}

impl BatchError {
    pub(crate) fn new(invalid: Vec<usize>) -> Self {
        Self { invalid }
    }

    /// Indices, in push order and ascending, of exactly the entries that are invalid.
    pub fn invalid(&self) -> &[usize] {
        &self.invalid
    }
}

/// A failed FROST aggregation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// Some signature shares are invalid; `culprits` names their signers.
    #[error("{}", culprits_message(culprits))]
    InvalidShares {
        /// Signers whose shares failed verification.
        culprits: Vec<Identifier>,
    },
    /// Every share verifies against its signer's verifying share, yet their sum is no
    /// signature for the key: no signer cheated, but the verifying shares belong to
    /// another key or fewer signers than the key's threshold took part.
    #[error(
        "every signature share is valid for its signer, but together they do not sign for this key: the verifying shares belong to another key, or fewer signers than the key's threshold took part; check the verifying shares with verify_key_shares and sign with at least the threshold"
    )]
    SharesDoNotMatchKey,
    /// The inputs were inconsistent (missing shares, unknown signers).
    #[error(transparent)]
    Input(#[from] Error),
}

impl AggregateError {
    /// The signers whose shares were invalid (empty when no share is).
    pub fn culprits(&self) -> &[Identifier] {
        match self {
            Self::InvalidShares { culprits } => culprits,
            Self::SharesDoNotMatchKey | Self::Input(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AggregateError, BatchError, Error};
    use crate::frost::Identifier;

    /// One value of every variant. The exhaustive `match` in `every_message_says_what_to_do`
    /// stops the build when a variant is added without being listed here.
    fn every_error() -> Vec<Error> {
        let id = Identifier::from_u16(3).ok();
        let Some(identifier) = id else {
            return Vec::new();
        };
        vec![
            Error::InvalidLength {
                what: "x",
                expected: 32,
                got: 31,
            },
            Error::FieldElementOutOfRange { what: "x" },
            Error::ScalarOutOfRange { what: "x" },
            Error::NotOnCurve { what: "x" },
            Error::InvalidPointTag { what: "x", tag: 4 },
            Error::IdentityPoint { what: "x" },
            Error::InvalidSignature,
            Error::BatchFull { capacity: 8 },
            Error::ZeroIdentifier,
            Error::DuplicateIdentifier { identifier },
            Error::TooManySigners { count: 65, max: 64 },
            Error::NoSigners,
            Error::MissingCommitment { identifier },
            Error::MissingShare { identifier },
            Error::KeyMismatch,
            Error::NotEnoughShares { got: 1, need: 2 },
            Error::TooFewSigners { got: 1, need: 2 },
            Error::InconsistentVerifyingShares { identifier: None },
            Error::InconsistentVerifyingShares {
                identifier: Some(identifier),
            },
            Error::InvalidShare { identifier },
            Error::ArithmeticCheck {
                what: "FROST Lagrange coefficients",
            },
        ]
    }

    /// The remedy after the last "; " starts with one of these verbs.
    const ACTIONS: &[&str] = &[
        "pass", "reject", "call", "use", "sign", "collect", "exclude", "check", "drop",
    ];

    fn says_what_to_do(message: &str) -> bool {
        message
            .rsplit_once("; ")
            .and_then(|(_, remedy)| remedy.split_whitespace().next())
            .is_some_and(|verb| ACTIONS.contains(&verb))
    }

    #[test]
    fn every_message_says_what_to_do() {
        let errors = every_error();
        assert_eq!(errors.len(), 21);
        for e in &errors {
            match e {
                Error::InvalidLength { .. }
                | Error::FieldElementOutOfRange { .. }
                | Error::ScalarOutOfRange { .. }
                | Error::NotOnCurve { .. }
                | Error::InvalidPointTag { .. }
                | Error::IdentityPoint { .. }
                | Error::InvalidSignature
                | Error::BatchFull { .. }
                | Error::ZeroIdentifier
                | Error::DuplicateIdentifier { .. }
                | Error::TooManySigners { .. }
                | Error::NoSigners
                | Error::MissingCommitment { .. }
                | Error::MissingShare { .. }
                | Error::KeyMismatch
                | Error::NotEnoughShares { .. }
                | Error::TooFewSigners { .. }
                | Error::InconsistentVerifyingShares { .. }
                | Error::InvalidShare { .. }
                | Error::ArithmeticCheck { .. } => {}
            }
            assert!(says_what_to_do(&e.to_string()), "{e}");
        }
        let identifier = Identifier::from_u16(3).unwrap_or_else(|_| unreachable!());
        let aggregate = [
            AggregateError::InvalidShares { culprits: vec![] },
            AggregateError::InvalidShares {
                culprits: vec![identifier],
            },
            AggregateError::InvalidShares {
                culprits: vec![identifier, identifier],
            },
            AggregateError::SharesDoNotMatchKey,
        ];
        for e in &aggregate {
            match e {
                AggregateError::InvalidShares { .. }
                | AggregateError::SharesDoNotMatchKey
                | AggregateError::Input(_) => {}
            }
            assert!(says_what_to_do(&e.to_string()), "{e}");
        }
        for invalid in [vec![], vec![4], vec![1, 3]] {
            let batch = BatchError::new(invalid);
            assert!(says_what_to_do(&batch.to_string()), "{batch}");
        }
        // And the check itself tells a remedy from a diagnosis.
        assert!(!says_what_to_do(
            "the share is invalid; that signer cheated"
        ));
    }

    /// Culprits and batch entries are named as a person reads them: identifiers by
    /// `Display` (the number, or `0x` and hex for large ones), indices as a plain list, in
    /// the singular for one. The culprits were once printed with `Debug`, 32 decimal bytes
    /// per signer (`[Identifier([0, 0, ..., 3])]`).
    #[test]
    fn culprits_and_entries_read_as_numbers() {
        let id = |n| Identifier::from_u16(n).unwrap_or_else(|_| unreachable!());
        let two = AggregateError::InvalidShares {
            culprits: vec![id(3), id(17)],
        };
        assert_eq!(
            two.to_string(),
            "invalid signature shares from signers 3, 17; exclude them and restart the session"
        );
        let one = AggregateError::InvalidShares {
            culprits: vec![id(3)],
        };
        assert_eq!(
            one.to_string(),
            "invalid signature share from signer 3; exclude that signer and restart the session"
        );
        // A large identifier whose hex digits are all decimal digits.
        let mut bytes = [0u8; 32];
        bytes[23] = 0x10;
        let large = Identifier::from_bytes(&bytes).unwrap_or_else(|_| unreachable!());
        let want = format!("0x{}", "00".repeat(23) + "10" + &"00".repeat(8));
        assert_eq!(large.to_string(), want);
        let e = AggregateError::InvalidShares {
            culprits: vec![large],
        };
        assert!(e.to_string().contains(&format!("signer {want};")), "{e}");
        assert_eq!(
            BatchError::new(vec![1, 3]).to_string(),
            "2 batch entries are invalid (indices 1, 3); reject them and accept the others"
        );
        assert_eq!(
            BatchError::new(vec![4]).to_string(),
            "batch entry 4 is invalid; reject it and accept the others"
        );
    }
}
