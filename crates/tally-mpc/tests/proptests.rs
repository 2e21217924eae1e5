#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::too_many_lines,
    reason = "test code"
)]
//! Property tests: tweak a valid input and expect rejection, and a fuzz harness over every
//! decoding entry point (arbitrary bytes never panic; what decodes re-encodes to itself).

use proptest::prelude::*;
use tally_mpc::Error;
use tally_mpc::bip340::{self, BatchVerifier, Signature, XOnlyPublicKey};
use tally_mpc::frost::{
    self, Identifier, MAX_SIGNERS, Signature as FrostSignature, SignatureShare, SigningCommitments,
    SigningPackage, VerifyingKey, VerifyingShare,
};

fn keypair(seed: [u8; 32]) -> secp256k1::Keypair {
    let mut s = seed;
    s[0] &= 0x7f;
    s[31] |= 1;
    secp256k1::Keypair::from_secret_key(&secp256k1::SecretKey::from_secret_bytes(s).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn tweaked_bip340_signatures_are_rejected(
        seed in any::<[u8; 32]>(),
        msg in proptest::collection::vec(any::<u8>(), 0..80),
        which in 0usize..3,
        bit in any::<u16>(),
    ) {
        let kp = keypair(seed);
        let mut sig = secp256k1::schnorr::sign_no_aux_rand(&msg, &kp).to_byte_array();
        let mut pk = kp.x_only_public_key().0.to_byte_array();
        let mut msg2 = msg.clone();
        {
            let pkv = XOnlyPublicKey::from_bytes(&pk).unwrap();
            let sigv = Signature::from_bytes(&sig).unwrap();
            prop_assert!(bip340::verify(&pkv, &msg, &sigv).is_ok());
        }
        match which {
            0 => sig[usize::from(bit % 512) / 8] ^= 1 << (bit % 8),
            1 => if msg2.is_empty() { msg2.push(1) } else { let i = usize::from(bit) % msg2.len(); msg2[i] ^= 1 << (bit % 8) },
            _ => pk[usize::from(bit % 256) / 8] ^= 1 << (bit % 8),
        }
        let result = XOnlyPublicKey::from_bytes(&pk)
            .and_then(|k| Signature::from_bytes(&sig).map(|s| (k, s)))
            .and_then(|(k, s)| bip340::verify(&k, &msg2, &s));
        prop_assert!(result.is_err());
        if let (Ok(k), Ok(s)) = (XOnlyPublicKey::from_bytes(&pk), Signature::from_bytes(&sig)) {
            let mut b = BatchVerifier::with_capacity(1);
            b.push(&k, &msg2, &s).unwrap();
            let err = b.verify().unwrap_err();
            prop_assert_eq!(err.invalid(), &[0]);
        }
    }

    #[test]
    fn decoders_never_panic_and_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(k) = XOnlyPublicKey::from_slice(&bytes) { prop_assert_eq!(k.to_bytes().to_vec(), bytes.clone()); }
        if let Ok(s) = Signature::from_slice(&bytes) { prop_assert_eq!(s.to_bytes().to_vec(), bytes.clone()); }
        if let Ok(k) = VerifyingKey::from_slice(&bytes) { prop_assert_eq!(k.to_bytes().to_vec(), bytes.clone()); }
        if let Ok(k) = VerifyingShare::from_slice(&bytes) { prop_assert_eq!(k.to_bytes().to_vec(), bytes.clone()); }
        if let Ok(s) = SignatureShare::from_slice(&bytes) { prop_assert_eq!(s.to_bytes().to_vec(), bytes.clone()); }
        if let Ok(s) = FrostSignature::from_slice(&bytes) { prop_assert_eq!(s.to_bytes().to_vec(), bytes.clone()); }
        if let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice())
            && let Ok(id) = Identifier::from_bytes(&arr)
        {
            prop_assert_eq!(id.to_bytes(), arr);
        }
        if bytes.len() >= 66 {
            let h: [u8; 33] = bytes[..33].try_into().unwrap();
            let b: [u8; 33] = bytes[33..66].try_into().unwrap();
            if let Ok(c) = SigningCommitments::from_bytes(&h, &b) {
                prop_assert_eq!(c.hiding_bytes(), h);
                prop_assert_eq!(c.binding_bytes(), b);
            }
        }
    }

    #[test]
    fn fuzzed_structured_points(tag in 0u8..6, x in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..40)) {
        // Valid-looking tags with random x: decode or fail with a typed error, then verify never panics.
        let mut enc = [0u8; 33];
        enc[0] = tag;
        enc[1..].copy_from_slice(&x);
        match VerifyingKey::from_bytes(&enc) {
            Ok(vk) => {
                let mut sig = [0u8; 65];
                sig[..33].copy_from_slice(&enc);
                sig[33..].copy_from_slice(&x);
                sig[33] &= 0x7f;
                if let Ok(s) = FrostSignature::from_bytes(&sig) {
                    prop_assert!(frost::verify(&vk, &msg, &s).is_err());
                }
            }
            Err(e) => {
                let typed = matches!(e, Error::InvalidPointTag { .. } | Error::NotOnCurve { .. } | Error::FieldElementOutOfRange { .. });
                prop_assert!(typed, "unexpected error {:?}", e);
            }
        }
        if let Ok(k) = XOnlyPublicKey::from_bytes(&x) {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&x);
            sig[32..].copy_from_slice(&x);
            sig[32] &= 0x7f;
            if let Ok(s) = Signature::from_bytes(&sig) {
                prop_assert!(bip340::verify(&k, &msg, &s).is_err());
            }
        }
    }
}

fn commitments(n: usize) -> Vec<(Identifier, SigningCommitments)> {
    let g = hex_arr("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798");
    (1..=n)
        .map(|i| {
            (
                Identifier::from_u16(u16::try_from(i).unwrap()).unwrap(),
                SigningCommitments::from_bytes(&g, &g).unwrap(),
            )
        })
        .collect()
}

fn hex_arr<const N: usize>(s: &str) -> [u8; N] {
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

#[test]
fn bad_inputs_get_typed_errors() {
    let p = hex_arr::<32>("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f");
    let n = hex_arr::<32>("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
    assert!(matches!(
        XOnlyPublicKey::from_bytes(&p),
        Err(Error::FieldElementOutOfRange { .. })
    ));
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&p);
    assert!(matches!(
        Signature::from_bytes(&sig),
        Err(Error::FieldElementOutOfRange { .. })
    ));
    sig[..32].copy_from_slice(&[1; 32]);
    sig[32..].copy_from_slice(&n);
    assert!(matches!(
        Signature::from_bytes(&sig),
        Err(Error::ScalarOutOfRange { .. })
    ));
    assert!(matches!(
        SignatureShare::from_bytes(&n),
        Err(Error::ScalarOutOfRange { .. })
    ));
    assert!(matches!(
        Identifier::from_bytes(&[0; 32]),
        Err(Error::ZeroIdentifier)
    ));
    assert!(matches!(
        Identifier::from_u16(0),
        Err(Error::ZeroIdentifier)
    ));
    assert!(matches!(
        Identifier::from_bytes(&n),
        Err(Error::ScalarOutOfRange { .. })
    ));
    let mut ident = [0u8; 33];
    assert!(matches!(
        VerifyingKey::from_bytes(&ident),
        Err(Error::InvalidPointTag { tag: 0, .. })
    ));
    ident[0] = 2;
    ident[1..].copy_from_slice(&p);
    assert!(matches!(
        VerifyingKey::from_bytes(&ident),
        Err(Error::FieldElementOutOfRange { .. })
    ));
    // x = 5: 5^3 + 7 = 132 is not a square mod p.
    let mut off = [0u8; 33];
    off[0] = 3;
    off[32] = 5;
    assert!(matches!(
        VerifyingShare::from_bytes(&off),
        Err(Error::NotOnCurve { .. })
    ));
    assert!(matches!(
        VerifyingShare::from_slice(&off[..32]),
        Err(Error::InvalidLength {
            expected: 33,
            got: 32,
            ..
        })
    ));
    assert!(matches!(
        XOnlyPublicKey::from_slice(&[0; 31]),
        Err(Error::InvalidLength { .. })
    ));

    let msg = b"m";
    assert!(matches!(
        SigningPackage::new(msg, &[]),
        Err(Error::NoSigners)
    ));
    let many = commitments(MAX_SIGNERS + 1);
    assert!(matches!(
        SigningPackage::new(msg, &many),
        Err(Error::TooManySigners { count: 65, max: 64 })
    ));
    let mut dup = commitments(3);
    dup[2].0 = dup[0].0;
    assert!(matches!(
        SigningPackage::new(msg, &dup),
        Err(Error::DuplicateIdentifier { .. })
    ));
    let ok = commitments(3);
    let pkg = SigningPackage::new(msg, &ok).unwrap();
    let vk = VerifyingKey::from_bytes(&hex_arr(
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ))
    .unwrap();
    let vs = VerifyingShare::from_bytes(&vk.to_bytes()).unwrap();
    let z = SignatureShare::from_bytes(&[1; 32]).unwrap();
    let stranger = Identifier::from_u16(9).unwrap();
    assert!(matches!(
        frost::verify_signature_share(&pkg, &vk, stranger, &vs, &z),
        Err(Error::MissingCommitment { .. })
    ));
    let id1 = Identifier::from_u16(1).unwrap();
    assert!(matches!(
        frost::verify_signature_share(&pkg, &vk, id1, &vs, &z),
        Err(Error::InvalidShare { .. })
    ));
    let err = frost::aggregate(&pkg, &vk, &[(id1, z, vs)]).unwrap_err();
    assert!(matches!(
        err,
        tally_mpc::AggregateError::Input(Error::MissingShare { .. })
    ));
    let err = frost::aggregate(&pkg, &vk, &[(id1, z, vs), (id1, z, vs)]).unwrap_err();
    assert!(matches!(
        err,
        tally_mpc::AggregateError::Input(Error::DuplicateIdentifier { .. })
    ));
    let mut full = frost::ShareBatchVerifier::with_capacity(1);
    full.push(&pkg, &vk, id1, &vs, &z).unwrap();
    assert!(matches!(
        full.push(&pkg, &vk, id1, &vs, &z),
        Err(Error::BatchFull { capacity: 1 })
    ));
    assert_eq!(full.verify().unwrap_err().invalid(), &[0]);
    // Every error message says what to do.
    assert!(Error::ZeroIdentifier.to_string().contains("non-zero"));
}
