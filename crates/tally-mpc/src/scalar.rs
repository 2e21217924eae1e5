//! Scalars mod n: parsing, the GLV endomorphism split and digit recodings.
//!
//! The GLV split writes `k = k1 + k2 * lambda (mod n)` with `|k1|, |k2| < 2^128`, where
//! `lambda * (x, y) = (beta * x, y)`. It halves the number of doublings in a
//! multiplication. k256 keeps its split private, so it is reimplemented here with the
//! constants and rounding of libsecp256k1 (`secp256k1_scalar_split_lambda`) and k256.

use k256::elliptic_curve::ff::PrimeField;
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::scalar::IsHigh;
use k256::{FieldBytes, Scalar, WideBytes};

/// A 128-bit magnitude with a sign: the value `(-1)^neg * mag`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Half {
    pub(crate) mag: u128,
    pub(crate) neg: bool,
}

/// Parses 32 big-endian bytes as a scalar below n.
pub(crate) fn scalar_from_bytes(bytes: &[u8; 32]) -> Option<Scalar> {
    Option::from(Scalar::from_repr(FieldBytes::from(*bytes)))
}

/// Reduces 32 big-endian bytes mod n.
pub(crate) fn scalar_reduce32(bytes: &[u8; 32]) -> Scalar {
    <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*bytes))
}

/// Reduces 64 big-endian bytes mod n.
pub(crate) fn scalar_reduce64(bytes: &[u8; 64]) -> Scalar {
    <Scalar as Reduce<WideBytes>>::reduce(&WideBytes::from(*bytes))
}

/// Scalar to 32 big-endian bytes.
pub(crate) fn scalar_to_bytes(s: &Scalar) -> [u8; 32] {
    s.to_bytes().into()
}

fn limbs(s: &Scalar) -> [u64; 4] {
    let b = scalar_to_bytes(s);
    let mut out = [0u64; 4];
    // out[0] is the least significant limb.
    for (limb, chunk) in out.iter_mut().rev().zip(b.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(w);
    }
    out
}

const fn be_limbs(hi: u128, lo: u128) -> [u64; 4] {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "splitting u128 into u64 limbs"
    )]
    [lo as u64, (lo >> 64) as u64, hi as u64, (hi >> 64) as u64]
}

const G1: [u64; 4] = be_limbs(
    0x3086_d221_a7d4_6bcd_e86c_90e4_9284_eb15,
    0x3daa_8a14_71e8_ca7f_e893_209a_45db_b031,
);
const G2: [u64; 4] = be_limbs(
    0xe443_7ed6_010e_8828_6f54_7fa9_0abf_e4c4,
    0x2212_08ac_9df5_06c6_1571_b4ae_8ac4_7f71,
);

/// `round(k * g / 2^384)` as a u128 (the result is below 2^128 for these constants).
fn mul_shift_384(k: &[u64; 4], g: &[u64; 4]) -> u128 {
    let mut wide = [0u64; 8];
    for (i, &a) in k.iter().enumerate() {
        let mut carry: u128 = 0;
        for (j, &b) in g.iter().enumerate() {
            if let Some(slot) = wide.get_mut(i + j) {
                let t = u128::from(a) * u128::from(b) + u128::from(*slot) + carry;
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "low limb of a 128-bit product"
                )]
                {
                    *slot = t as u64;
                }
                carry = t >> 64;
            }
        }
        if let Some(slot) = wide.get_mut(i + 4) {
            #[allow(clippy::cast_possible_truncation, reason = "carry fits a limb")]
            {
                *slot = carry as u64;
            }
        }
    }
    let [_, _, _, _, _, l5, l6, l7] = wide;
    let r = (u128::from(l7) << 64) | u128::from(l6);
    r.wrapping_add(u128::from(l5 >> 63))
}

fn scalar_from_hex_be(hi: u128, lo: u128) -> Scalar {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&hi.to_be_bytes());
    b[16..].copy_from_slice(&lo.to_be_bytes());
    scalar_reduce32(&b)
}

/// Splits a scalar into its sign and 128-bit magnitude; `None` when it does not fit.
fn to_half(s: &Scalar) -> Option<Half> {
    let neg = bool::from(s.is_high());
    let m = if neg { -*s } else { *s };
    let l = limbs(&m);
    let [l0, l1, l2, l3] = l;
    if l2 != 0 || l3 != 0 {
        return None;
    }
    Some(Half {
        mag: (u128::from(l1) << 64) | u128::from(l0),
        neg,
    })
}

/// GLV split constants as scalars.
struct Split {
    b1_neg: Scalar,
    b2_neg: Scalar,
    minus_lambda: Scalar,
}

fn split_consts() -> &'static Split {
    static S: std::sync::OnceLock<Split> = std::sync::OnceLock::new();
    S.get_or_init(|| Split {
        b1_neg: scalar_from_hex_be(0, 0xe443_7ed6_010e_8828_6f54_7fa9_0abf_e4c3),
        b2_neg: scalar_from_hex_be(
            0xffff_ffff_ffff_ffff_ffff_ffff_ffff_fffe,
            0x8a28_0ac5_0774_346d_d765_cda8_3db1_562c,
        ),
        minus_lambda: scalar_from_hex_be(
            0xac9c_52b3_3fa3_cf1f_5ad9_e3fd_77ed_9ba4,
            0xa880_b9fc_8ec7_39c2_e0cf_c810_b512_83cf,
        ),
    })
}

/// `k = k1 + k2 * lambda (mod n)` with both halves below 2^128 in magnitude; `None` if a
/// half does not fit, which the bound proof rules out (callers fail the check then).
pub(crate) fn glv_split(k: &Scalar) -> Option<(Half, Half)> {
    let c = split_consts();
    let kl = limbs(k);
    let c1 = Scalar::from(mul_shift_384(&kl, &G1)) * c.b1_neg;
    let c2 = Scalar::from(mul_shift_384(&kl, &G2)) * c.b2_neg;
    let r2 = c1 + c2;
    let r1 = *k + r2 * c.minus_lambda;
    // The bound proof (k256 `glv.rs`, libsecp256k1 `scalar_impl.h`) guarantees both fit.
    // Were it ever wrong, `None` makes the caller reject: a half replaced by zero would
    // check a different equation.
    Some((to_half(&r1)?, to_half(&r2)?))
}

/// The scalar `(-1)^neg * mag`.
#[cfg(test)]
pub(crate) fn half_to_scalar(h: Half) -> Scalar {
    let s = Scalar::from(h.mag);
    if h.neg { -s } else { s }
}

/// Scalars at the edges of every representation the multiplications use: 0, 1, n - 1,
/// n / 2, lambda and its neighbours, powers of two around the 128-bit halves.
#[cfg(test)]
pub(crate) fn edge_scalars() -> Vec<Scalar> {
    let lambda = -split_consts().minus_lambda;
    let two = Scalar::from(2u64);
    let half = (-Scalar::ONE) * two.invert().unwrap_or(Scalar::ONE); // (n - 1) / 2
    let p2 = |k: u32| -> Scalar {
        let mut x = Scalar::ONE;
        for _ in 0..k {
            x = x + x;
        }
        x
    };
    let mut v = vec![
        Scalar::ZERO,
        Scalar::ONE,
        two,
        Scalar::from(3u64),
        -Scalar::ONE,
        -two,
        half,
        half + Scalar::ONE,
        half - Scalar::ONE,
        lambda,
        -lambda,
        lambda + Scalar::ONE,
        lambda - Scalar::ONE,
        lambda * lambda,
        split_consts().b1_neg,
        split_consts().b2_neg,
        -split_consts().b1_neg,
        -split_consts().b2_neg,
        scalar_reduce32(&[0xff; 32]),
    ];
    for k in [127u32, 128, 129, 255] {
        let x = p2(k);
        v.extend([x, x - Scalar::ONE, x + Scalar::ONE, -x, -x + Scalar::ONE]);
        v.extend([x * lambda, -(x * lambda), (x - Scalar::ONE) * lambda]);
    }
    v
}

/// Number of wNAF digits for a 128-bit magnitude.
pub(crate) const WNAF_LEN: usize = 130;

/// Width-`w` non-adjacent form of `k`: digits are 0 or odd with `|d| < 2^(w-1)`, at most
/// one non-zero digit in any `w` consecutive positions. Returns the index one past the
/// highest non-zero digit.
pub(crate) fn wnaf(k: u128, w: u32, out: &mut [i16; WNAF_LEN]) -> usize {
    *out = [0; WNAF_LEN];
    // The value is `hi * 2^128 + lo`; `hi` is set only transiently by a negative digit.
    let mut lo = k;
    let mut hi = false;
    let mut top = 0usize;
    let window = 1u128 << w;
    let half = 1i32 << (w - 1);
    for (i, slot) in out.iter_mut().enumerate() {
        if lo == 0 && !hi {
            break;
        }
        if lo & 1 == 1 {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_possible_wrap,
                reason = "w <= 15 bits"
            )]
            let mut d = (lo & (window - 1)) as i32;
            if d >= half {
                d -= 1i32 << w;
            }
            if d > 0 {
                lo -= u128::from(d.unsigned_abs());
            } else {
                let (sum, overflow) = lo.overflowing_add(u128::from(d.unsigned_abs()));
                lo = sum;
                hi |= overflow;
            }
            #[allow(clippy::cast_possible_truncation, reason = "|d| < 2^14")]
            {
                *slot = d as i16;
            }
            top = i + 1;
        }
        lo = (lo >> 1) | (u128::from(hi) << 127);
        hi = false;
    }
    top
}

/// Signed radix-`2^w` digits of `k`, `digits[i]` in `[-2^(w-1), 2^(w-1)]`, least
/// significant first. Returns the number of digits written.
pub(crate) fn signed_digits(k: u128, w: u32, out: &mut [i16]) -> usize {
    let mask = (1u128 << w) - 1;
    let half = 1i32 << (w - 1);
    let mut carry = 0i32;
    let mut k = k;
    let mut n = 0;
    for slot in out.iter_mut() {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_possible_wrap,
            reason = "w <= 8 bits"
        )]
        let mut d = (k & mask) as i32 + carry;
        k >>= w;
        carry = 0;
        if d > half {
            d -= 1 << w;
            carry = 1;
        }
        #[allow(clippy::cast_possible_truncation, reason = "|d| <= 2^(w-1)")]
        {
            *slot = d as i16;
        }
        n += 1;
        if k == 0 && carry == 0 {
            break;
        }
    }
    n
}

#[cfg(test)]
#[allow(
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_possible_truncation,
    reason = "test arithmetic on known-small values"
)]
mod tests {
    use super::*;

    fn eval_digits(d: &[i16], radix_bits: u32) -> i128 {
        d.iter()
            .rev()
            .fold(0i128, |acc, &x| (acc << radix_bits) + i128::from(x))
    }

    #[test]
    fn glv_split_recombines() {
        let lambda = -split_consts().minus_lambda;
        let mut s = Scalar::from(0x1234_5678_9abc_def0_u64);
        for _ in 0..200 {
            s = s * s + Scalar::from(3u64);
            let (a, b) = glv_split(&s).unwrap();
            assert_eq!(half_to_scalar(a) + half_to_scalar(b) * lambda, s);
        }
        let (a, b) = glv_split(&-Scalar::ONE).unwrap();
        assert_eq!(half_to_scalar(a) + half_to_scalar(b) * lambda, -Scalar::ONE);
    }

    /// GLV split of the edge scalars (and of a sweep across `[0, n)`) recombines and
    /// both halves fit 128 bits (a half that did not fit would come back as `None`).
    #[test]
    fn glv_split_of_edge_scalars_recombines() {
        let lambda = -split_consts().minus_lambda;
        let mut all = edge_scalars();
        // i * n / 4096 and i * lambda / 4096-ish points across the range.
        let step = -Scalar::ONE * Scalar::from(4096u64).invert().unwrap();
        let mut k = Scalar::ZERO;
        for _ in 0..4096 {
            k += step;
            all.push(k);
            all.push(k * lambda);
        }
        for k in all {
            let (a, b) = glv_split(&k).unwrap();
            assert_eq!(half_to_scalar(a) + half_to_scalar(b) * lambda, k, "{k:?}");
        }
    }

    /// A half wider than 128 bits is refused, not truncated or zeroed: `glv_split` then
    /// returns `None` and every caller fails the check (a zeroed half would make the
    /// check verify a different equation).
    #[test]
    fn halves_past_128_bits_are_refused() {
        let two_128 = Scalar::from(u128::MAX) + Scalar::ONE;
        assert!(to_half(&two_128).is_none());
        assert!(to_half(&-two_128).is_none());
        let max = to_half(&Scalar::from(u128::MAX)).unwrap();
        assert_eq!((max.mag, max.neg), (u128::MAX, false));
        let neg = to_half(&-Scalar::from(u128::MAX)).unwrap();
        assert_eq!((neg.mag, neg.neg), (u128::MAX, true));
    }

    #[test]
    fn wnaf_and_signed_digits_recombine() {
        let mut x: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for round in 0..500 {
            x = x
                .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                .wrapping_add(round);
            for w in [2u32, 4, 5, 8, 14] {
                let mut out = [0i16; WNAF_LEN];
                let top = wnaf(x, w, &mut out);
                let mut acc: u128 = 0;
                for (i, &d) in out.iter().enumerate().take(128) {
                    if d != 0 {
                        assert!(d % 2 != 0 && i32::from(d).abs() < (1 << (w - 1)));
                        acc = acc.wrapping_add((i128::from(d) as u128).wrapping_shl(i as u32));
                    }
                }
                assert_eq!(acc, x, "w={w}");
                assert!(top <= WNAF_LEN);
            }
            let small = x >> 8;
            for w in [4u32, 7, 8] {
                let mut out = [0i16; 40];
                let n = signed_digits(small, w, &mut out);
                assert_eq!(eval_digits(&out[..n], w), small as i128);
            }
        }
    }
}
