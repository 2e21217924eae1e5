//! Square roots in the field, for point decompression (`lift_x`): about 60% of the
//! instructions of k256's `FieldElement::sqrt`.
//!
//! k256's `sqrt` runs the addition chain for `x^((p+1)/4)` (253 squarings, 13
//! multiplications) with its general multiplication as the squaring. This module runs the
//! same chain on plain 5x52-bit limbs with a dedicated squaring (15 limb products instead
//! of 25, the formulas of libsecp256k1's `secp256k1_fe_sqr_inner`; the multiplication is
//! k256's, itself libsecp256k1's `secp256k1_fe_mul_inner`). The result is converted back
//! to a k256 field element and checked with k256's arithmetic (`root^2 == x`), so an
//! arithmetic slip here could only make a decoding fail, never accept a wrong root; the
//! tests compare against k256's `sqrt` on random and edge-case inputs.

use super::Fe;
use k256::FieldBytes;

/// Limbs of 52 bits (the top one 48), little-endian, magnitude 1.
type Limbs = [u64; 5];

const M52: u64 = 0xF_FFFF_FFFF_FFFF;

/// The reduction of libsecp256k1's `secp256k1_fe_mul_inner` (and k256's `mul_inner`)
/// given the nine column sums `p[k] = sum_{i+j=k} a_i b_j`, each below 2^115.
#[allow(
    clippy::cast_possible_truncation,
    clippy::many_single_char_names,
    clippy::unreadable_literal,
    clippy::similar_names,
    reason = "libsecp256k1's 5x52 formulas, kept as written there"
)]
#[allow(
    clippy::inline_always,
    reason = "inlined into the squaring loop; measured"
)]
#[inline(always)]
fn reduce(p: [u128; 9]) -> Limbs {
    let [p0, p1, p2, p3, p4, p5, p6, p7, p8] = p;
    let m = 0xFFFFFFFFFFFFFu128;
    let r = 0x1000003D10u128;
    let mut d = p3;
    let mut c = p8;
    d += (c & m) * r;
    c >>= 52;
    let c64 = c as u64;
    let t3 = (d & m) as u64;
    d >>= 52;
    let d64 = d as u64;
    d = u128::from(d64) + p4;
    d += u128::from(c64) * r;
    let t4 = (d & m) as u64;
    d >>= 52;
    let d64 = d as u64;
    let tx = t4 >> 48;
    let t4 = t4 & ((m as u64) >> 4);
    c = p0;
    d = u128::from(d64) + p5;
    let u0 = (d & m) as u64;
    d >>= 52;
    let d64 = d as u64;
    let u0 = (u0 << 4) | tx;
    c += u128::from(u0) * u128::from((r as u64) >> 4);
    let r0 = (c & m) as u64;
    c >>= 52;
    let c64 = c as u64;
    c = u128::from(c64) + p1;
    d = u128::from(d64) + p6;
    c += (d & m) * r;
    d >>= 52;
    let d64 = d as u64;
    let r1 = (c & m) as u64;
    c >>= 52;
    let c64 = c as u64;
    c = u128::from(c64) + p2;
    d = u128::from(d64) + p7;
    c += (d & m) * r;
    d >>= 52;
    let d64 = d as u64;
    let r2 = (c & m) as u64;
    c >>= 52;
    let c64 = c as u64;
    c = u128::from(c64) + u128::from(d64) * r + u128::from(t3);
    let r3 = (c & m) as u64;
    c >>= 52;
    let c64 = c as u64;
    c = u128::from(c64) + u128::from(t4);
    let r4 = c as u64;
    [r0, r1, r2, r3, r4]
}

/// `a * b` (magnitude 1 inputs and output).
#[allow(
    clippy::inline_always,
    reason = "inlined into the square-root chain; measured"
)]
#[inline(always)]
fn mul(a: &Limbs, b: &Limbs) -> Limbs {
    let [a0, a1, a2, a3, a4] = a.map(u128::from);
    let [b0, b1, b2, b3, b4] = b.map(u128::from);
    reduce([
        a0 * b0,
        a0 * b1 + a1 * b0,
        a0 * b2 + a1 * b1 + a2 * b0,
        a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0,
        a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0,
        a1 * b4 + a2 * b3 + a3 * b2 + a4 * b1,
        a2 * b4 + a3 * b3 + a4 * b2,
        a3 * b4 + a4 * b3,
        a4 * b4,
    ])
}

/// `a^2`: the same column sums with each cross product once, doubled (15 products).
#[allow(
    clippy::inline_always,
    reason = "inlined into the squaring loop; measured"
)]
#[inline(always)]
fn sqr(a: &Limbs) -> Limbs {
    let [a0, a1, a2, a3, a4] = a.map(u128::from);
    reduce([
        a0 * a0,
        (a0 * 2) * a1,
        (a0 * 2) * a2 + a1 * a1,
        (a0 * 2) * a3 + (a1 * 2) * a2,
        (a0 * 2) * a4 + (a1 * 2) * a3 + a2 * a2,
        (a1 * 2) * a4 + (a2 * 2) * a3,
        (a2 * 2) * a4 + a3 * a3,
        (a3 * 2) * a4,
        a4 * a4,
    ])
}

fn sqr_n(a: &Limbs, n: usize) -> Limbs {
    let mut x = *a;
    for _ in 0..n {
        x = sqr(&x);
    }
    x
}

fn from_bytes(b: &[u8; 32]) -> Limbs {
    let mut w = [0u64; 4];
    for (word, chunk) in w.iter_mut().zip(b.rchunks_exact(8)) {
        let mut c = [0u8; 8];
        c.copy_from_slice(chunk);
        *word = u64::from_be_bytes(c);
    }
    let [w0, w1, w2, w3] = w;
    [
        w0 & M52,
        ((w0 >> 52) | (w1 << 12)) & M52,
        ((w1 >> 40) | (w2 << 24)) & M52,
        ((w2 >> 28) | (w3 << 36)) & M52,
        w3 >> 16,
    ]
}

/// Fully reduces (`secp256k1_fe_normalize`) and encodes big-endian.
fn to_bytes(a: &Limbs) -> [u8; 32] {
    let [mut t0, mut t1, mut t2, mut t3, mut t4] = *a;
    let x = t4 >> 48;
    t4 &= 0xFFFF_FFFF_FFFF;
    t0 += x * 0x1_0000_03D1;
    t1 += t0 >> 52;
    t0 &= M52;
    t2 += t1 >> 52;
    t1 &= M52;
    let mut m = t1;
    t3 += t2 >> 52;
    t2 &= M52;
    m &= t2;
    t4 += t3 >> 52;
    t3 &= M52;
    m &= t3;
    let over = (t4 >> 48) != 0 || (t4 == 0xFFFF_FFFF_FFFF && m == M52 && t0 >= 0xF_FFFE_FFFF_FC2F);
    if over {
        t0 += 0x1_0000_03D1;
        t1 += t0 >> 52;
        t0 &= M52;
        t2 += t1 >> 52;
        t1 &= M52;
        t3 += t2 >> 52;
        t2 &= M52;
        t4 += t3 >> 52;
        t3 &= M52;
        t4 &= 0xFFFF_FFFF_FFFF;
    }
    let w = [
        t0 | (t1 << 52),
        (t1 >> 12) | (t2 << 40),
        (t2 >> 24) | (t3 << 28),
        (t3 >> 36) | (t4 << 16),
    ];
    let mut out = [0u8; 32];
    for (chunk, word) in out.rchunks_exact_mut(8).zip(w) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The square root of `x` (the one `x^((p+1)/4)` gives), or `None` if `x` is not a square.
pub(crate) fn sqrt(x: &Fe) -> Option<Fe> {
    let bytes: [u8; 32] = x.normalize().to_bytes().into();
    let a = from_bytes(&bytes);
    // 1, [2], 3, 6, 9, 11, [22], 44, 88, 176, 220, [223] (k256's and libsecp256k1's chain)
    let x2 = mul(&sqr(&a), &a);
    let x3 = mul(&sqr(&x2), &a);
    let x6 = mul(&sqr_n(&x3, 3), &x3);
    let x9 = mul(&sqr_n(&x6, 3), &x3);
    let x11 = mul(&sqr_n(&x9, 2), &x2);
    let x22 = mul(&sqr_n(&x11, 11), &x11);
    let x44 = mul(&sqr_n(&x22, 22), &x22);
    let x88 = mul(&sqr_n(&x44, 44), &x44);
    let x176 = mul(&sqr_n(&x88, 88), &x88);
    let x220 = mul(&sqr_n(&x176, 44), &x44);
    let x223 = mul(&sqr_n(&x220, 3), &x3);
    let t = mul(&sqr_n(&x223, 23), &x22);
    let t = mul(&sqr_n(&t, 6), &x2);
    let root = sqr_n(&t, 2);
    let root: Fe = Option::from(Fe::from_bytes(&FieldBytes::from(to_bytes(&root))))?;
    // Checked with k256's own arithmetic.
    bool::from((root.square().negate(1) + x).normalizes_to_zero()).then_some(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(b: [u8; 32]) -> Option<Fe> {
        Option::from(Fe::from_bytes(&FieldBytes::from(b)))
    }

    #[test]
    fn agrees_with_k256_sqrt() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut cases: Vec<[u8; 32]> = Vec::new();
        for _ in 0..3000 {
            let mut b = [0u8; 32];
            for chunk in b.chunks_exact_mut(8) {
                chunk.copy_from_slice(&next().to_be_bytes());
            }
            cases.push(b);
        }
        // Edge cases: 0, 1, small values, p - 1, p - 2, values with all limbs at their top.
        // p - k: p = 2^256 - 2^32 - 977 ends in ..FFFFFFFE FFFFFC2F.
        let p_minus = |k: u8| {
            let mut b = [0xffu8; 32];
            b[27] = 0xfe;
            b[30] = 0xfc;
            b[31] = 0x2f - k;
            b
        };
        for k in 1..=4 {
            cases.push(p_minus(k));
        }
        for v in 0..=16u8 {
            let mut b = [0u8; 32];
            b[31] = v;
            cases.push(b);
        }
        cases.push([0x0f; 32]);
        cases.push([0x7f; 32]);
        let mut squares = 0;
        for b in cases {
            let Some(x) = fe(b) else { continue };
            let ours = sqrt(&x);
            let theirs: Option<Fe> = Option::from(x.sqrt());
            match (ours, theirs) {
                (Some(a), Some(b)) => {
                    assert_eq!(a.normalize().to_bytes(), b.normalize().to_bytes());
                    squares += 1;
                }
                (None, None) => {}
                (a, b) => panic!("disagree on {x:?}: ours {a:?}, k256 {b:?}"),
            }
            // Every square has a root: x^2.
            let sq = x.square().normalize();
            let r = sqrt(&sq).expect("a square has a root");
            assert!(bool::from((r.square().negate(1) + sq).normalizes_to_zero()));
        }
        assert!(squares > 1000, "only {squares} squares");
    }
}
#[cfg(test)]
mod limb_tests {
    use super::*;

    /// Conversions, one multiplication and long squaring chains against k256.
    #[test]
    fn limb_arithmetic_matches_k256() {
        let mut b = [0u8; 32];
        b[31] = 3;
        b[5] = 77;
        let x: Fe = Option::from(Fe::from_bytes(&FieldBytes::from(b))).unwrap();
        let l = from_bytes(&b);
        assert_eq!(to_bytes(&l), b, "roundtrip");
        let k: [u8; 32] = x.mul(&x).normalize().to_bytes().into();
        assert_eq!(to_bytes(&mul(&l, &l)), k, "mul");
        assert_eq!(to_bytes(&sqr(&l)), k, "sqr");
        let mut st = 99u64;
        for i in 0..400 {
            let mut b = [0u8; 32];
            for c in b.chunks_exact_mut(8) {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                c.copy_from_slice(&st.to_be_bytes());
            }
            b[0] &= 0x7f;
            let x: Fe = Option::from(Fe::from_bytes(&FieldBytes::from(b))).unwrap();
            let l = from_bytes(&b);
            assert_eq!(to_bytes(&l), b, "roundtrip {i}");
            let k: [u8; 32] = x.mul(&x).normalize().to_bytes().into();
            assert_eq!(to_bytes(&sqr(&l)), k, "sqr {i}");
            let mut l2 = l;
            let mut x2 = x;
            for j in 0..300 {
                l2 = sqr(&l2);
                x2 = x2.square();
                let k: [u8; 32] = x2.normalize().to_bytes().into();
                assert_eq!(to_bytes(&l2), k, "sqr chain {i} {j}");
            }
        }
    }
}
