//! Variable-time modular inversion by Bernstein–Yang "safegcd" divsteps: a port of
//! libsecp256k1's `secp256k1_modinv64_var` (`modinv64_impl.h`, MIT licence) for the field
//! modulus, with signed 62-bit limbs and i128 arithmetic. Always processes all five limbs
//! (libsecp256k1 shortens f and g as they shrink).

use super::Fe;

/// Five signed limbs of 62 bits, little-endian; the top limb carries the sign.
type Signed62 = [i64; 5];

const M62: u64 = u64::MAX >> 2;
/// p in signed-62 form: `-0x1000003D1 + 256 * 2^248`.
const MODULUS: Signed62 = [-0x1_0000_03D1, 0, 0, 0, 256];
/// `p^-1 mod 2^62`.
const MODULUS_INV62: u64 = 0x27C7_F6E2_2DDA_CACF;
/// Outer iterations (62 divsteps each) before giving up; 590 divsteps always suffice
/// for 256-bit inputs, so this bound is never reached.
const MAX_ROUNDS: usize = 12;

/// A 2x2 transition matrix `[u v; q r]`, scaled by `2^62`.
#[derive(Clone, Copy)]
struct Trans {
    u: i64,
    v: i64,
    q: i64,
    r: i64,
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "low 64 bits of an i128"
)]
#[inline]
fn lo(x: i128) -> u64 {
    x as u64
}

/// 62 divsteps on the low bits of `f` and `g` (`secp256k1_modinv64_divsteps_62_var`).
#[allow(
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_possible_truncation,
    clippy::many_single_char_names,
    reason = "two's-complement arithmetic as in libsecp256k1"
)]
fn divsteps_62_var(mut eta: i64, f0: u64, g0: u64) -> (i64, Trans) {
    let (mut u, mut v, mut q, mut r) = (1u64, 0u64, 0u64, 1u64);
    let (mut f, mut g) = (f0, g0);
    let mut i: u32 = 62;
    loop {
        // Count zeros only up to i (sentinel bit).
        let zeros = (g | (u64::MAX << i)).trailing_zeros();
        g >>= zeros;
        u <<= zeros;
        v <<= zeros;
        eta -= i64::from(zeros);
        i -= zeros;
        if i == 0 {
            break;
        }
        let w;
        if eta < 0 {
            eta = -eta;
            let tmp = f;
            f = g;
            g = tmp.wrapping_neg();
            let tmp = u;
            u = q;
            q = tmp.wrapping_neg();
            let tmp = v;
            v = r;
            r = tmp.wrapping_neg();
            // Cancel up to 6 bits of g (no more than i, nor than eta + 1).
            let limit = (eta + 1).min(i64::from(i)) as u32;
            let m = (u64::MAX >> (64 - limit)) & 63;
            w = f
                .wrapping_mul(g)
                .wrapping_mul(f.wrapping_mul(f).wrapping_sub(2))
                & m;
        } else {
            let limit = (eta + 1).min(i64::from(i)) as u32;
            let m = (u64::MAX >> (64 - limit)) & 15;
            let w0 = f.wrapping_add((f.wrapping_add(1) & 4) << 1);
            w = w0.wrapping_neg().wrapping_mul(g) & m;
        }
        g = g.wrapping_add(f.wrapping_mul(w));
        q = q.wrapping_add(u.wrapping_mul(w));
        r = r.wrapping_add(v.wrapping_mul(w));
    }
    (
        eta,
        Trans {
            u: u as i64,
            v: v as i64,
            q: q as i64,
            r: r as i64,
        },
    )
}

/// `[d, e] = t [d, e] / 2^62 (mod p)` (`secp256k1_modinv64_update_de_62`, with p's zero
/// middle limbs skipped).
#[allow(
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::similar_names,
    clippy::many_single_char_names,
    reason = "two's-complement arithmetic as in libsecp256k1"
)]
fn update_de(d: &mut Signed62, e: &mut Signed62, t: Trans) {
    let [d0, d1, d2, d3, d4] = *d;
    let [e0, e1, e2, e3, e4] = *e;
    let [p0, _, _, _, p4] = MODULUS;
    let (u, v, q, r) = (
        i128::from(t.u),
        i128::from(t.v),
        i128::from(t.q),
        i128::from(t.r),
    );
    // md, me start as zero, plus [u, q] if d is negative, plus [v, r] if e is negative.
    let sd = d4 >> 63;
    let se = e4 >> 63;
    let mut md = (t.u & sd) + (t.v & se);
    let mut me = (t.q & sd) + (t.r & se);
    let mut cd = u * i128::from(d0) + v * i128::from(e0);
    let mut ce = q * i128::from(d0) + r * i128::from(e0);
    // Make the low 62 bits of t [d, e] + p [md, me] zero.
    md -= (MODULUS_INV62.wrapping_mul(lo(cd)).wrapping_add(md as u64) & M62) as i64;
    me -= (MODULUS_INV62.wrapping_mul(lo(ce)).wrapping_add(me as u64) & M62) as i64;
    cd += i128::from(p0) * i128::from(md);
    ce += i128::from(p0) * i128::from(me);
    cd >>= 62;
    ce >>= 62;
    cd += u * i128::from(d1) + v * i128::from(e1);
    ce += q * i128::from(d1) + r * i128::from(e1);
    let n0 = (lo(cd) & M62) as i64;
    let m0 = (lo(ce) & M62) as i64;
    cd >>= 62;
    ce >>= 62;
    cd += u * i128::from(d2) + v * i128::from(e2);
    ce += q * i128::from(d2) + r * i128::from(e2);
    let n1 = (lo(cd) & M62) as i64;
    let m1 = (lo(ce) & M62) as i64;
    cd >>= 62;
    ce >>= 62;
    cd += u * i128::from(d3) + v * i128::from(e3);
    ce += q * i128::from(d3) + r * i128::from(e3);
    let n2 = (lo(cd) & M62) as i64;
    let m2 = (lo(ce) & M62) as i64;
    cd >>= 62;
    ce >>= 62;
    cd += u * i128::from(d4) + v * i128::from(e4);
    ce += q * i128::from(d4) + r * i128::from(e4);
    cd += i128::from(p4) * i128::from(md);
    ce += i128::from(p4) * i128::from(me);
    let n3 = (lo(cd) & M62) as i64;
    let m3 = (lo(ce) & M62) as i64;
    cd >>= 62;
    ce >>= 62;
    *d = [n0, n1, n2, n3, lo(cd) as i64];
    *e = [m0, m1, m2, m3, lo(ce) as i64];
}

/// `[f, g] = t [f, g] / 2^62` (`secp256k1_modinv64_update_fg_62_var` at full length).
#[allow(
    clippy::cast_possible_wrap,
    clippy::many_single_char_names,
    reason = "two's-complement arithmetic as in libsecp256k1"
)]
fn update_fg(f: &mut Signed62, g: &mut Signed62, t: Trans) {
    let (u, v, q, r) = (
        i128::from(t.u),
        i128::from(t.v),
        i128::from(t.q),
        i128::from(t.r),
    );
    let [f0, f1, f2, f3, f4] = f.map(i128::from);
    let [g0, g1, g2, g3, g4] = g.map(i128::from);
    let mut cf = (u * f0 + v * g0) >> 62;
    let mut cg = (q * f0 + r * g0) >> 62;
    let mut out_f = [0i64; 5];
    let mut out_g = [0i64; 5];
    for ((of, og), (fi, gi)) in
        out_f
            .iter_mut()
            .zip(out_g.iter_mut())
            .zip([(f1, g1), (f2, g2), (f3, g3), (f4, g4)])
    {
        cf += u * fi + v * gi;
        cg += q * fi + r * gi;
        *of = (lo(cf) & M62) as i64;
        *og = (lo(cg) & M62) as i64;
        cf >>= 62;
        cg >>= 62;
    }
    let [o0, o1, o2, o3, _] = out_f;
    *f = [o0, o1, o2, o3, lo(cf) as i64];
    let [o0, o1, o2, o3, _] = out_g;
    *g = [o0, o1, o2, o3, lo(cg) as i64];
}

/// Brings `r` from `(-2p, p)` to `[0, p)`, negating first if `sign < 0`
/// (`secp256k1_modinv64_normalize_62`).
#[allow(clippy::cast_possible_wrap, reason = "2^62 - 1 fits in i64")]
fn normalize(r: &Signed62, sign: i64) -> Signed62 {
    const MASK: i64 = (u64::MAX >> 2) as i64;
    let [mut r0, mut r1, mut r2, mut r3, mut r4] = *r;
    let [p0, p1, p2, p3, p4] = MODULUS;
    let add = r4 >> 63;
    r0 += p0 & add;
    r1 += p1 & add;
    r2 += p2 & add;
    r3 += p3 & add;
    r4 += p4 & add;
    let neg = sign >> 63;
    r0 = (r0 ^ neg) - neg;
    r1 = (r1 ^ neg) - neg;
    r2 = (r2 ^ neg) - neg;
    r3 = (r3 ^ neg) - neg;
    r4 = (r4 ^ neg) - neg;
    r1 += r0 >> 62;
    r0 &= MASK;
    r2 += r1 >> 62;
    r1 &= MASK;
    r3 += r2 >> 62;
    r2 &= MASK;
    r4 += r3 >> 62;
    r3 &= MASK;
    let add = r4 >> 63;
    r0 += p0 & add;
    r1 += p1 & add;
    r2 += p2 & add;
    r3 += p3 & add;
    r4 += p4 & add;
    r1 += r0 >> 62;
    r0 &= MASK;
    r2 += r1 >> 62;
    r1 &= MASK;
    r3 += r2 >> 62;
    r2 &= MASK;
    r4 += r3 >> 62;
    r3 &= MASK;
    [r0, r1, r2, r3, r4]
}

#[allow(
    clippy::cast_possible_wrap,
    reason = "62-bit limbs of a value below p fit in i64"
)]
fn to_signed62(a: &Fe) -> Signed62 {
    let [a0, a1, a2, a3] = a.normalize().0;
    [
        (a0 & M62) as i64,
        ((a0 >> 62 | a1 << 2) & M62) as i64,
        ((a1 >> 60 | a2 << 4) & M62) as i64,
        ((a2 >> 58 | a3 << 6) & M62) as i64,
        (a3 >> 56) as i64,
    ]
}

#[allow(
    clippy::cast_sign_loss,
    reason = "limbs of a normalised value are non-negative"
)]
fn from_signed62(r: &Signed62) -> Fe {
    let [v0, v1, v2, v3, v4] = r.map(|x| x as u64);
    Fe([
        v0 | v1 << 62,
        v1 >> 2 | v2 << 60,
        v2 >> 4 | v3 << 58,
        v3 >> 6 | v4 << 56,
    ])
}

/// `1 / a`; `None` if `a` is 0 (or, unreachably, if the iteration bound is hit).
#[allow(
    clippy::many_single_char_names,
    reason = "libsecp256k1's names d, e, f, g"
)]
pub(super) fn invert_var(a: &Fe) -> Option<Fe> {
    if a.is_zero() {
        return None;
    }
    let mut d: Signed62 = [0; 5];
    let mut e: Signed62 = [1, 0, 0, 0, 0];
    let mut f = MODULUS;
    let mut g = to_signed62(a);
    let mut eta: i64 = -1;
    for _ in 0..MAX_ROUNDS {
        let [f0, ..] = f;
        let [g0, ..] = g;
        #[allow(clippy::cast_sign_loss, reason = "low bits, two's complement")]
        let (next, t) = divsteps_62_var(eta, f0 as u64, g0 as u64);
        eta = next;
        update_de(&mut d, &mut e, t);
        update_fg(&mut f, &mut g, t);
        if g == [0; 5] {
            // f = +-1 now and d = +-1/a.
            let [.., sign] = f;
            return Some(from_signed62(&normalize(&d, sign)));
        }
    }
    None
}
