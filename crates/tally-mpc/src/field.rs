//! The secp256k1 base field `p = 2^256 - 2^32 - 977` on four 64-bit limbs.
//!
//! Verification only handles public data, so this field is variable-time where that
//! saves instructions (rare carries take a branch). Representation: four little-endian
//! 64-bit limbs holding any value below `2^256` (so `p..2^256` are second encodings of
//! `0..2^256 - p`); every operation accepts and returns such values, and only
//! [`Fe::normalize`], [`Fe::to_bytes`], [`Fe::is_odd`], [`Fe::is_zero`] and
//! [`Fe::eq`] reduce fully.
//!
//! A product is 16 (a square 10) 64x64 -> 128-bit multiplications, then the high half is
//! folded with `2^256 = 0x1000003D1 (mod p)`: four more multiplications and one small
//! fold. Sums and differences fold their carry or borrow the same way.

mod modinv;

/// `2^256 mod p`.
const K: u64 = 0x1_0000_03D1;
/// p's limbs.
const P: [u64; 4] = [
    0xFFFF_FFFE_FFFF_FC2F,
    0xFFFF_FFFF_FFFF_FFFF,
    0xFFFF_FFFF_FFFF_FFFF,
    0xFFFF_FFFF_FFFF_FFFF,
];

/// A field element (see the module docs for the representation).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fe(pub(crate) [u64; 4]);

/// `x * y + add1 + add2` as (low, high); never overflows.
#[allow(
    clippy::inline_always,
    reason = "the limb step of every product; must inline"
)]
#[inline(always)]
fn mac(x: u64, y: u64, add1: u64, add2: u64) -> (u64, u64) {
    let t = u128::from(x) * u128::from(y) + u128::from(add1) + u128::from(add2);
    #[allow(clippy::cast_possible_truncation, reason = "splitting a u128")]
    (t as u64, (t >> 64) as u64)
}

/// `x * b` as five limbs (no carry out: the top limb is at most `2^64 - 1`).
#[allow(
    clippy::inline_always,
    reason = "the rows of every product; must inline"
)]
#[inline(always)]
fn mul_row(x: u64, b: &[u64; 4]) -> [u64; 5] {
    let [b0, b1, b2, b3] = *b;
    let (l0, h0) = mac(x, b0, 0, 0);
    let (l1, h1) = mac(x, b1, 0, 0);
    let (l2, h2) = mac(x, b2, 0, 0);
    let (l3, h3) = mac(x, b3, 0, 0);
    let (s1, c) = adc(l1, h0, false);
    let (s2, c) = adc(l2, h1, c);
    let (s3, c) = adc(l3, h2, c);
    [l0, s1, s2, s3, h3 + u64::from(c)]
}

/// `a + b + carry` as (sum, carry out).
#[allow(clippy::inline_always, reason = "carry chains; must inline")]
#[inline(always)]
fn adc(a: u64, b: u64, carry: bool) -> (u64, bool) {
    let (s, c1) = a.overflowing_add(b);
    let (s, c2) = s.overflowing_add(u64::from(carry));
    (s, c1 | c2)
}

/// `a - b - borrow` as (difference, borrow out).
#[allow(clippy::inline_always, reason = "borrow chains; must inline")]
#[inline(always)]
fn sbb(a: u64, b: u64, borrow: bool) -> (u64, bool) {
    let (s, c1) = a.overflowing_sub(b);
    let (s, c2) = s.overflowing_sub(u64::from(borrow));
    (s, c1 | c2)
}

/// Reduces `lo + hi * 2^256` below `2^256` (`hi` any 256-bit value).
#[allow(clippy::inline_always, reason = "the tail of mul and square")]
#[inline(always)]
fn reduce_wide(lo: [u64; 4], hi: [u64; 4]) -> Fe {
    let [r0, r1, r2, r3] = lo;
    let [r4, r5, r6, r7] = hi;
    let [x0, x1, x2, x3, x4] = mul_row(K, &[r4, r5, r6, r7]);
    let (t0, c) = adc(r0, x0, false);
    let (t1, c) = adc(r1, x1, c);
    let (t2, c) = adc(r2, x2, c);
    let (t3, c) = adc(r3, x3, c);
    let c = x4 + u64::from(c);
    // c < 2^34: fold c * 2^256 = c * K once more.
    let (t0, hi) = mac(c, K, t0, 0);
    let (t1, o) = t1.overflowing_add(hi);
    if o {
        return fold_carry([t0, t1, t2, t3]);
    }
    Fe([t0, t1, t2, t3])
}

/// The rare end of [`reduce_wide`]: `t1` overflowed, propagate and fold.
#[cold]
#[inline(never)]
fn fold_carry(t: [u64; 4]) -> Fe {
    let [t0, t1, t2, t3] = t;
    let (t2, o) = t2.overflowing_add(1);
    let (t3, o) = t3.overflowing_add(u64::from(o));
    if o {
        // The value wrapped: what is left is below 2^68, add 2^256 = K.
        let (t0, c) = t0.overflowing_add(K);
        return Fe([t0, t1 + u64::from(c), t2, t3]);
    }
    Fe([t0, t1, t2, t3])
}

/// Folds a carry out of the top limb: `t + carry * 2^256 = t + carry * K`.
#[allow(
    clippy::inline_always,
    reason = "tail of add and small multiplications"
)]
#[inline(always)]
fn fold_small(t: [u64; 4], c: u64) -> Fe {
    // c * K < 2^64 for c < 2^31.
    let [t0, t1, t2, t3] = t;
    let (t0, o) = t0.overflowing_add(c * K);
    if o {
        let (t1, o) = t1.overflowing_add(1);
        let (t2, o) = t2.overflowing_add(u64::from(o));
        let (t3, o) = t3.overflowing_add(u64::from(o));
        // On a second wrap the value is below 2^64 - 1 + K... only t0 remains: add K.
        return Fe([t0 + u64::from(o) * K, t1, t2, t3]);
    }
    Fe([t0, t1, t2, t3])
}

impl Fe {
    /// 0.
    pub(crate) const ZERO: Self = Self([0; 4]);
    /// 1.
    pub(crate) const ONE: Self = Self([1, 0, 0, 0]);

    /// A small constant.
    pub(crate) const fn from_u64(v: u64) -> Self {
        Self([v, 0, 0, 0])
    }

    /// Decodes 32 big-endian bytes; `None` unless the value is below p.
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        let v = Self::from_bytes_wide(bytes);
        v.is_canonical().then_some(v)
    }

    /// Decodes 32 big-endian bytes as any value below 2^256.
    pub(crate) fn from_bytes_wide(bytes: &[u8; 32]) -> Self {
        let mut l = [0u64; 4];
        for (limb, chunk) in l.iter_mut().zip(bytes.rchunks_exact(8)) {
            let mut c = [0u8; 8];
            c.copy_from_slice(chunk);
            *limb = u64::from_be_bytes(c);
        }
        Self(l)
    }

    /// 32 big-endian bytes of the canonical value.
    pub(crate) fn to_bytes(self) -> [u8; 32] {
        let n = self.normalize();
        let mut out = [0u8; 32];
        for (chunk, limb) in out.rchunks_exact_mut(8).zip(n.0) {
            chunk.copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    fn is_canonical(&self) -> bool {
        let [l0, l1, l2, l3] = self.0;
        !(l3 == u64::MAX && l2 == u64::MAX && l1 == u64::MAX && l0 >= P[0])
    }

    /// The canonical representative (below p).
    #[inline]
    pub(crate) fn normalize(&self) -> Self {
        if self.is_canonical() {
            *self
        } else {
            // self - p = self + K - 2^256; self >= p so no carry reaches past limb 0.
            let [l0, ..] = self.0;
            Self([l0.wrapping_add(K), 0, 0, 0])
        }
    }

    /// Whether the value is 0 mod p (0 or p).
    #[inline]
    pub(crate) fn is_zero(&self) -> bool {
        let [l0, l1, l2, l3] = self.0;
        (l0 | l1 | l2 | l3) == 0 || (l0 == P[0] && (l1 & l2 & l3) == u64::MAX)
    }

    /// Whether the canonical value is odd.
    #[inline]
    pub(crate) fn is_odd(&self) -> bool {
        let [l0, ..] = self.normalize().0;
        l0 & 1 == 1
    }

    /// Equality mod p.
    #[inline]
    pub(crate) fn eq(&self, other: &Self) -> bool {
        self.normalize().0 == other.normalize().0
    }

    /// `self + rhs`.
    #[allow(clippy::inline_always, reason = "a few instructions; must inline")]
    #[inline(always)]
    #[must_use]
    pub(crate) fn add(&self, rhs: &Self) -> Self {
        let [a0, a1, a2, a3] = self.0;
        let [b0, b1, b2, b3] = rhs.0;
        let (t0, c) = adc(a0, b0, false);
        let (t1, c) = adc(a1, b1, c);
        let (t2, c) = adc(a2, b2, c);
        let (t3, c) = adc(a3, b3, c);
        fold_small([t0, t1, t2, t3], u64::from(c))
    }

    /// `self - rhs`.
    #[allow(clippy::inline_always, reason = "a few instructions; must inline")]
    #[inline(always)]
    #[must_use]
    pub(crate) fn sub(&self, rhs: &Self) -> Self {
        let [a0, a1, a2, a3] = self.0;
        let [b0, b1, b2, b3] = rhs.0;
        let (t0, b) = sbb(a0, b0, false);
        let (t1, b) = sbb(a1, b1, b);
        let (t2, b) = sbb(a2, b2, b);
        let (t3, b) = sbb(a3, b3, b);
        // Borrowed 2^256 = K (mod p): subtract K.
        let (t0, o) = t0.overflowing_sub(u64::from(b) * K);
        if o {
            let (t1, o) = t1.overflowing_sub(1);
            let (t2, o) = t2.overflowing_sub(u64::from(o));
            let (t3, o) = t3.overflowing_sub(u64::from(o));
            // A second wrap leaves t1..t3 all ones and t0 >= 2^64 - 2K: subtract K again.
            return Self([t0 - u64::from(o) * K, t1, t2, t3]);
        }
        Self([t0, t1, t2, t3])
    }

    /// `-self`.
    #[allow(clippy::inline_always, reason = "a few instructions; must inline")]
    #[inline(always)]
    #[must_use]
    pub(crate) fn neg(&self) -> Self {
        Self::ZERO.sub(self)
    }

    /// `2 * self`.
    #[allow(clippy::inline_always, reason = "a few instructions; must inline")]
    #[inline(always)]
    #[must_use]
    pub(crate) fn double(&self) -> Self {
        self.add(self)
    }

    /// `self * k` for `k < 2^16`.
    #[allow(clippy::inline_always, reason = "a few instructions; must inline")]
    #[inline(always)]
    #[must_use]
    pub(crate) fn mul_small(&self, k: u32) -> Self {
        debug_assert!(k < 1 << 16, "mul_small takes k < 2^16");
        let k = u64::from(k);
        let [a0, a1, a2, a3] = self.0;
        let (t0, c) = mac(a0, k, 0, 0);
        let (t1, c) = mac(a1, k, 0, c);
        let (t2, c) = mac(a2, k, 0, c);
        let (t3, c) = mac(a3, k, 0, c);
        fold_small([t0, t1, t2, t3], c)
    }

    /// `self * rhs`: one row `a_i * rhs` of five limbs at a time, added into the product
    /// with a carry chain (measured: fewer register spills than a multiply-accumulate per
    /// limb product).
    #[allow(
        clippy::inline_always,
        reason = "measured: the core of every point formula"
    )]
    #[inline(always)]
    #[must_use]
    pub(crate) fn mul(&self, rhs: &Self) -> Self {
        let [a0, a1, a2, a3] = self.0;
        let b = rhs.0;
        let [r0, r1, r2, r3, r4] = mul_row(a0, &b);
        let [x0, x1, x2, x3, x4] = mul_row(a1, &b);
        let (r1, c) = adc(r1, x0, false);
        let (r2, c) = adc(r2, x1, c);
        let (r3, c) = adc(r3, x2, c);
        let (r4, c) = adc(r4, x3, c);
        let r5 = x4 + u64::from(c);
        let [x0, x1, x2, x3, x4] = mul_row(a2, &b);
        let (r2, c) = adc(r2, x0, false);
        let (r3, c) = adc(r3, x1, c);
        let (r4, c) = adc(r4, x2, c);
        let (r5, c) = adc(r5, x3, c);
        let r6 = x4 + u64::from(c);
        let [x0, x1, x2, x3, x4] = mul_row(a3, &b);
        let (r3, c) = adc(r3, x0, false);
        let (r4, c) = adc(r4, x1, c);
        let (r5, c) = adc(r5, x2, c);
        let (r6, c) = adc(r6, x3, c);
        let r7 = x4 + u64::from(c);
        reduce_wide([r0, r1, r2, r3], [r4, r5, r6, r7])
    }

    /// `self^2`.
    #[allow(
        clippy::inline_always,
        reason = "measured: the core of every point formula"
    )]
    #[inline(always)]
    #[must_use]
    pub(crate) fn square(&self) -> Self {
        let [a0, a1, a2, a3] = self.0;
        // Cross products a_i a_j, i < j.
        let (r1, c) = mac(a0, a1, 0, 0);
        let (r2, c) = mac(a0, a2, 0, c);
        let (r3, r4) = mac(a0, a3, 0, c);
        let (r3, c) = mac(a1, a2, r3, 0);
        let (r4, r5) = mac(a1, a3, r4, c);
        let (r5, r6) = mac(a2, a3, r5, 0);
        // Doubled.
        let r7 = r6 >> 63;
        let r6 = (r6 << 1) | (r5 >> 63);
        let r5 = (r5 << 1) | (r4 >> 63);
        let r4 = (r4 << 1) | (r3 >> 63);
        let r3 = (r3 << 1) | (r2 >> 63);
        let r2 = (r2 << 1) | (r1 >> 63);
        let r1 = r1 << 1;
        // Plus the squares a_i^2.
        let (r0, h0) = mac(a0, a0, 0, 0);
        let (s1, h1) = mac(a1, a1, 0, 0);
        let (s2, h2) = mac(a2, a2, 0, 0);
        let (s3, h3) = mac(a3, a3, 0, 0);
        let (r1, c) = adc(r1, h0, false);
        let (r2, c) = adc(r2, s1, c);
        let (r3, c) = adc(r3, h1, c);
        let (r4, c) = adc(r4, s2, c);
        let (r5, c) = adc(r5, h2, c);
        let (r6, c) = adc(r6, s3, c);
        let (r7, _) = adc(r7, h3, c);
        reduce_wide([r0, r1, r2, r3], [r4, r5, r6, r7])
    }

    /// `self^(2^n)`.
    #[must_use]
    pub(crate) fn pow2k(&self, n: u32) -> Self {
        let mut x = *self;
        for _ in 0..n {
            x = x.square();
        }
        x
    }

    /// `self^(2^n) * m`.
    fn sqn_mul(&self, n: u32, m: &Self) -> Self {
        self.pow2k(n).mul(m)
    }

    /// The chain shared by the square root and the inverse: `(x2, x22, x223)` where
    /// `xk = self^(2^k - 1)`.
    fn chain_223(&self) -> (Self, Self, Self) {
        // 1, [2], 3, 6, 9, 11, [22], 44, 88, 176, 220, [223] (libsecp256k1's chain)
        let x2 = self.square().mul(self);
        let x3 = x2.square().mul(self);
        let x6 = x3.sqn_mul(3, &x3);
        let x9 = x6.sqn_mul(3, &x3);
        let x11 = x9.sqn_mul(2, &x2);
        let x22 = x11.sqn_mul(11, &x11);
        let x44 = x22.sqn_mul(22, &x22);
        let x88 = x44.sqn_mul(44, &x44);
        let x176 = x88.sqn_mul(88, &x88);
        let x220 = x176.sqn_mul(44, &x44);
        let x223 = x220.sqn_mul(3, &x3);
        (x2, x22, x223)
    }

    /// The square root `self^((p+1)/4)` if `self` is a square, else `None`.
    pub(crate) fn sqrt(&self) -> Option<Self> {
        let (x2, x22, x223) = self.chain_223();
        let t = x223.sqn_mul(23, &x22);
        let t = t.sqn_mul(6, &x2);
        let root = t.pow2k(2);
        root.square().eq(self).then_some(root)
    }

    /// `1 / self` (variable time, safegcd), `None` for 0.
    pub(crate) fn invert(&self) -> Option<Self> {
        modinv::invert_var(self)
    }

    /// `1 / self` by Fermat (`self^(p-2)`; 0 for 0), the tests' reference for
    /// [`Fe::invert`].
    #[cfg(test)]
    #[must_use]
    pub(crate) fn invert_fermat(&self) -> Self {
        let (x2, x22, x223) = self.chain_223();
        let t = x223.sqn_mul(23, &x22);
        let t = t.sqn_mul(5, self);
        let t = t.sqn_mul(3, &x2);
        t.sqn_mul(2, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::elliptic_curve::hazmat::FieldArithmetic;
    use proptest::prelude::*;

    type KFe = <k256::Secp256k1 as FieldArithmetic>::FieldElement;

    fn bytes_of(l: [u64; 4]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, limb) in out.rchunks_exact_mut(8).zip(l) {
            chunk.copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    /// k256's value of any 256-bit `l` (reduced by hand: `l - p = l + K mod 2^256`).
    fn reference(limbs: [u64; 4]) -> KFe {
        let canon = if Fe(limbs).is_canonical() {
            limbs
        } else {
            let mut out = limbs;
            let (low, first) = out[0].overflowing_add(K);
            out[0] = low;
            let mut carry = first;
            for limb in out.iter_mut().skip(1) {
                let (sum, next) = limb.overflowing_add(u64::from(carry));
                *limb = sum;
                carry = next;
            }
            out
        };
        Option::from(KFe::from_bytes(&bytes_of(canon).into())).unwrap()
    }

    fn kbytes(k: &KFe) -> [u8; 32] {
        k.normalize().to_bytes().into()
    }

    /// Limbs biased towards the edges: 0, 1, all ones, p's low limb and neighbours.
    fn limb() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1u64),
            Just(u64::MAX),
            Just(u64::MAX - 1),
            Just(P[0]),
            Just(P[0] - 1),
            Just(P[0] + 1),
            Just(P[0] + 2),
            Just(u64::MAX - K),
            Just(K),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ]
    }

    fn fe() -> impl Strategy<Value = [u64; 4]> {
        [limb(), limb(), limb(), limb()]
    }

    fn check(what: &str, got: Fe, want: &KFe) {
        assert_eq!(got.to_bytes(), kbytes(want), "{what}");
    }

    /// Every operation on `a`, `b` against k256.
    fn check_all(a: [u64; 4], b: [u64; 4], k: u16) {
        let (fa, fb) = (Fe(a), Fe(b));
        let (ka, kb) = (reference(a), reference(b));
        check("identity", fa, &ka);
        check("add", fa.add(&fb), &(ka + kb));
        check("sub", fa.sub(&fb), &(ka - kb));
        check("neg", fa.neg(), &(-ka));
        check("double", fa.double(), &ka.double());
        check("mul", fa.mul(&fb), &(ka * kb));
        check("square", fa.square(), &ka.square());
        check(
            "mul_small",
            fa.mul_small(u32::from(k)),
            &(ka * KFe::from_u64(u64::from(k))),
        );
        assert_eq!(
            fa.is_zero(),
            bool::from(ka.normalize().is_zero()),
            "is_zero"
        );
        assert_eq!(fa.is_odd(), bool::from(ka.normalize().is_odd()), "is_odd");
        assert_eq!(fa.eq(&fb), kbytes(&ka) == kbytes(&kb), "eq");
        assert!(fa.normalize().is_canonical(), "normalize");
        assert_eq!(fa.normalize().0, Fe::from_bytes(&kbytes(&ka)).unwrap().0);
        // Results stay below 2^256 by construction; sums of results too.
        check(
            "chain",
            fa.mul(&fb).add(&fa).sub(&fb.square()),
            &(ka * kb + ka - kb.square()),
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn ops_match_k256(a in fe(), b in fe(), k in any::<u16>()) {
            check_all(a, b, k);
        }

        #[test]
        fn sqrt_and_inverse_match_k256(a in fe()) {
            let fa = Fe(a);
            let ka = reference(a);
            let ours = fa.sqrt();
            let theirs: Option<KFe> = Option::from(ka.sqrt());
            match (ours, theirs) {
                (Some(r), Some(t)) => {
                    assert_eq!(r.to_bytes(), kbytes(&t));
                }
                (None, None) => {}
                (r, t) => panic!("sqrt disagrees on {a:x?}: {r:?} vs {t:?}"),
            }
            let sq = fa.square();
            let r = sq.sqrt().expect("a square has a root");
            assert!(r.square().eq(&sq));
            let inv = fa.invert();
            let kinv: Option<KFe> = Option::from(ka.invert());
            match (inv, kinv) {
                (Some(i), Some(k)) => {
                    assert_eq!(i.to_bytes(), kbytes(&k));
                    assert_eq!(fa.invert_fermat().to_bytes(), kbytes(&k));
                }
                (None, None) => assert!(fa.invert_fermat().is_zero()),
                (i, k) => panic!("invert disagrees on {a:x?}: {i:?} vs {k:?}"),
            }
        }
    }

    /// Every value whose four limbs each come from `0, 1, 2^64 - 1, 2^64 - 2` and p's low
    /// limb and its neighbours (2,401 values, including p, p + 1, 2^256 - 1 and every
    /// mixture of all-ones and zero limbs), each against eight partners and through the
    /// square root and inverse, against k256.
    #[test]
    fn structured_limbs_match_k256() {
        let set = [0, 1, u64::MAX, u64::MAX - 1, P[0] - 1, P[0], P[0] + 1];
        let mut values = Vec::new();
        for a in set {
            for b in set {
                for c in set {
                    for d in set {
                        values.push([a, b, c, d]);
                    }
                }
            }
        }
        for (i, a) in values.iter().enumerate() {
            for j in 0..8 {
                let b = values[(i * 7919 + j * 104_729) % values.len()];
                check_all(*a, b, u16::try_from(j * 9001 % 65_536).unwrap());
            }
            check_all(*a, *a, 3);
            let fa = Fe(*a);
            let ka = reference(*a);
            let theirs: Option<KFe> = Option::from(ka.sqrt());
            assert_eq!(
                fa.sqrt().map(Fe::to_bytes),
                theirs.map(|t| kbytes(&t)),
                "sqrt {a:x?}"
            );
            let kinv: Option<KFe> = Option::from(ka.invert());
            assert_eq!(
                fa.invert().map(Fe::to_bytes),
                kinv.map(|t| kbytes(&t)),
                "invert {a:x?}"
            );
        }
    }

    /// Random limbs mixed with edge limbs against k256: 20,000 pairs, or
    /// `TALLY_MPC_FIELD_CASES` for a longer run.
    #[test]
    fn mixed_limbs_match_k256_in_a_long_run() {
        let cases: u64 = std::env::var("TALLY_MPC_FIELD_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let edges = [
            0,
            1,
            u64::MAX,
            u64::MAX - 1,
            P[0] - 1,
            P[0],
            P[0] + 1,
            K,
            u64::MAX - K,
        ];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..cases {
            let mut limbs = [[0u64; 4]; 2];
            for l in limbs.iter_mut().flatten() {
                let r = next();
                *l = if r % 3 == 0 {
                    edges[usize::try_from(r >> 40).unwrap() % edges.len()]
                } else {
                    next()
                };
            }
            let k = u16::try_from(next() >> 48).unwrap();
            check_all(limbs[0], limbs[1], k);
        }
    }

    #[test]
    fn edge_values() {
        let edges: Vec<[u64; 4]> = vec![
            [0; 4],
            [1, 0, 0, 0],
            P,
            [P[0] - 1, P[1], P[2], P[3]],
            [P[0] + 1, P[1], P[2], P[3]],
            [u64::MAX; 4],
            [u64::MAX - K + 1, u64::MAX, u64::MAX, u64::MAX],
            [u64::MAX - 1, u64::MAX, u64::MAX, u64::MAX],
            [K, 0, 0, 0],
            [K - 1, 0, 0, 0],
            [0, 0, 0, 1 << 63],
        ];
        for a in &edges {
            for b in &edges {
                for k in [0u16, 1, 2, 3, 4, 8, u16::MAX] {
                    check_all(*a, *b, k);
                }
            }
        }
        assert!(Fe(P).is_zero());
        assert!(Fe::from_bytes(&bytes_of(P)).is_none());
        assert!(Fe::from_bytes(&bytes_of([P[0] - 1, P[1], P[2], P[3]])).is_some());
        assert!(Fe::ZERO.invert().is_none());
        assert!(Fe(P).invert().is_none());
    }
}
