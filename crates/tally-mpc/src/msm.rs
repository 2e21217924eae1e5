//! Multiscalar multiplication over secp256k1: Straus with wNAF for small inputs,
//! Pippenger buckets for large ones, fixed-base comb tables for the generator and for
//! [`PrecomputedKey`](crate::bip340::PrecomputedKey)s.
//!
//! # Cost model
//!
//! Costs are counted in field multiplications (M, about 150-170 instructions with the
//! crate's 4x64-limb field; squarings S about 105-120), mixed additions (A, 8M + 3S, about
//! 1,770 instructions), doublings (D, 3M + 4S, about 1,060) and inversions (I, about
//! 11,600, safegcd). Every scalar is first split with the GLV endomorphism into two halves
//! below 2^128, so an `n`-point product with 256-bit scalars becomes a `2n`-point product
//! with 128-bit scalars and only 128 doublings.
//!
//! * **Straus** (up to 24 bases): 128 shared D, plus per point half
//!   about `128 / (w + 1)` A with `w = 5` (a table of 8 odd multiples per base, built with
//!   mixed additions on an isomorphic curve; the tables of all bases share one implied
//!   Jacobian `Z`, so they need no inversion and the sum is accumulated in coordinates
//!   scaled by that `Z`). The generator uses window 13 against a table of 2,048 odd
//!   multiples (128 KiB, built once), about `128 / 14` additions per half, each 1M dearer
//!   because its points are scaled by `1/Z` on the fly.
//! * **Pippenger** (larger `n`): signed digits of `c` bits, `2^(c-1)` buckets per window;
//!   one bucket addition per point half and window plus two additions per bucket for the
//!   sums. Bucket additions are affine (`lambda = (y2 - y1) / (x2 - x1)`, 5M + 1S) in
//!   rounds where each bucket of every window takes at most one addition and all
//!   denominators share one inversion; when a round would hold fewer than 24 additions
//!   (the top window's few buckets), the rest go into Jacobian buckets. `c` is chosen per
//!   call from the point count.
//! * **Comb** (generator, precomputed keys): for each of the 17 signed base-256 digits of a
//!   128-bit half the table holds `m * 256^j * P` for `m = 1..=128`; a full 256-bit
//!   multiplication is at most 34 A and no doublings. A table holds 2,176 affine points
//!   of 64 bytes (136 KiB).
//!
//! Measured (callgrind, release build; `docs/benchmarks/tally-mpc.md`): a cold BIP340
//! verification is 303k instructions (libsecp256k1 398k), one against a `PrecomputedKey`
//! 140k, and a batch of 256 145k per signature (the table in that file gives the split of
//! a cold verification).

use crate::point::{Affine, Fe, Jacobian, batch_normalize, consts, odd_multiples_globalz};
use crate::scalar::{Half, WNAF_LEN, glv_split, signed_digits, wnaf};
use k256::Scalar;
use std::sync::OnceLock;

/// Window of the per-call Straus tables (8 odd multiples).
const STRAUS_W: u32 = 5;
/// Number of entries of a Straus table.
pub(crate) const STRAUS_TABLE: usize = 1 << (STRAUS_W - 2);
/// Inputs with at most this many variable bases go through Straus.
pub(crate) const STRAUS_MAX_BASES: usize = 24;
/// Comb digit width in bits.
const COMB_W: u32 = 8;
/// Entries per comb row: `m = 1..=128`.
const COMB_ROW: usize = 1 << (COMB_W - 1);
/// Rows: signed base-256 digits of a value below 2^128 (one extra for the carry).
const COMB_ROWS: usize = 17;
/// Largest Pippenger window.
pub(crate) const PIPPENGER_MAX_C: u32 = 10;
/// Smallest Pippenger window (bounds the digit buffer).
const PIPPENGER_MIN_C: u32 = 4;
/// Digits per point half at the smallest window.
pub(crate) const PIPPENGER_MAX_WINDOWS: usize = 33;

/// One variable base with its scalar already GLV-split: `k1 * P + k2 * lambda(P)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Base {
    pub(crate) p: Affine,
    pub(crate) k1: Half,
    pub(crate) k2: Half,
}

impl Base {
    /// `k * p`, split; `None` if the split fails (see [`glv_split`]): callers fail the
    /// verification then.
    pub(crate) fn new(p: Affine, k: &Scalar) -> Option<Self> {
        let (k1, k2) = glv_split(k)?;
        Some(Self { p, k1, k2 })
    }

    /// `k * p` for `|k| < 2^128` given directly (no split).
    pub(crate) fn half(p: Affine, k1: Half) -> Self {
        Self {
            p,
            k1,
            k2: Half::default(),
        }
    }
}

/// A fixed-base comb table (see the module docs).
pub(crate) struct CombTable {
    points: Vec<Affine>,
}

impl CombTable {
    /// Builds the table for `p` (about 2,200 Jacobian additions and one inversion).
    pub(crate) fn new(p: &Affine) -> Self {
        let total = COMB_ROWS * COMB_ROW;
        let mut jac: Vec<Jacobian> = Vec::with_capacity(total);
        let mut row_base = Jacobian::from_affine(p);
        for _ in 0..COMB_ROWS {
            let mut cur = row_base;
            for _ in 0..COMB_ROW {
                jac.push(cur);
                cur = cur.add(&row_base);
            }
            // cur = 129 * base here; next base = 256 * base.
            for _ in 0..COMB_W {
                row_base = row_base.double();
            }
        }
        let mut prefix = vec![Fe::ZERO; total];
        let mut points = vec![Affine::PLACEHOLDER; total];
        if !batch_normalize(&jac, &mut prefix, &mut points) {
            points.clear();
        }
        Self { points }
    }

    fn entry(&self, row: usize, m: usize) -> Option<&Affine> {
        self.points.get(row * COMB_ROW + m.checked_sub(1)?)
    }

    /// Adds `k * P` (or `k * lambda(P)` when `endo`) to `acc`: at most 17 mixed additions.
    /// `false` (and `acc` is then meaningless) when the table lacks an entry the digits
    /// need: a table that could not be built (its point was not a curve point of order
    /// n) is empty. Callers must fail the verification then, not skip the term.
    #[must_use]
    pub(crate) fn mul_add(&self, acc: &mut Jacobian, k: Half, endo: bool, beta: &Fe) -> bool {
        if self.points.len() != COMB_ROWS * COMB_ROW {
            return false;
        }
        let mut digits = [0i16; COMB_ROWS];
        let n = signed_digits(k.mag, COMB_W, &mut digits);
        for (row, &d) in digits.iter().enumerate().take(n) {
            if d == 0 {
                continue;
            }
            let Some(p) = self.entry(row, usize::from(d.unsigned_abs())) else {
                return false;
            };
            let mut q = if endo { p.endo(beta) } else { *p };
            if (d < 0) != k.neg {
                q = q.neg();
            }
            *acc = acc.add_affine(&q);
        }
        true
    }

    /// Adds `k * P` to `acc` for a full scalar (GLV split, at most 34 mixed additions);
    /// `false` as [`Self::mul_add`].
    #[must_use]
    pub(crate) fn mul_add_scalar(&self, acc: &mut Jacobian, k: &Scalar) -> bool {
        let Some((k1, k2)) = glv_split(k) else {
            return false;
        };
        let beta = consts().beta;
        self.mul_add(acc, k1, false, &beta) && self.mul_add(acc, k2, true, &beta)
    }
}

/// The generator's comb table, built on first use (once per process; it is most of the
/// 13.4 million instructions `crate::warm_up` costs that the window-13 table does not). Call `crate::warm_up` to build it ahead of time.
pub(crate) fn generator_table() -> &'static CombTable {
    static TABLE: OnceLock<CombTable> = OnceLock::new();
    TABLE.get_or_init(|| CombTable::new(&consts().g))
}

/// wNAF window of the generator in Straus.
const G_WINDOW: u32 = 13;
/// Entries of the generator's odd-multiples table: `G, 3G, ..., (2^G_WINDOW - 1) G`.
const G_TABLE: usize = 1 << (G_WINDOW - 2);

/// The generator's odd multiples for Straus (window 13: 2,048 affine points, 128 KiB),
/// built on first use (about 6 million instructions, once per process).
pub(crate) fn generator_odd_table() -> &'static [Affine] {
    static TABLE: OnceLock<Vec<Affine>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let g = consts().g;
        let mut jac = Vec::with_capacity(G_TABLE);
        if let Some(d) = Jacobian::from_affine(&g).double().to_affine() {
            let mut cur = Jacobian::from_affine(&g);
            for _ in 0..G_TABLE {
                jac.push(cur);
                cur = cur.add_affine(&d);
            }
        }
        let mut prefix = vec![Fe::ZERO; jac.len()];
        let mut out = vec![Affine::PLACEHOLDER; jac.len()];
        if !batch_normalize(&jac, &mut prefix, &mut out) {
            out.clear();
        }
        out
    })
}

/// Looks up `d * T` in a table of odd multiples (`T[i] = (2i + 1) P`) or of all multiples
/// (`T[i] = (i + 1) P`), applying the endomorphism and the sign.
#[inline]
fn lookup(
    table: &[Affine],
    d: i16,
    all_multiples: bool,
    neg: bool,
    endo: bool,
    beta: &Fe,
) -> Option<Affine> {
    let m = usize::from(d.unsigned_abs());
    let idx = if all_multiples { m - 1 } else { m / 2 };
    let p = table.get(idx)?;
    let mut q = if endo { p.endo(beta) } else { *p };
    if (d < 0) != neg {
        q = q.neg();
    }
    Some(q)
}

/// Straus scratch space: borrowed slices so that callers can use the stack or vectors.
pub(crate) struct StrausScratch<'s> {
    /// `STRAUS_TABLE` per base.
    pub(crate) jac: &'s mut [Jacobian],
    /// `STRAUS_TABLE` per base.
    pub(crate) prefix: &'s mut [Fe],
    /// `STRAUS_TABLE` per base.
    pub(crate) tables: &'s mut [Affine],
    /// Two per base.
    pub(crate) wnafs: &'s mut [[i16; WNAF_LEN]],
}

/// `sum(bases) + g * G` with Straus' method. `g` is the GLV-split generator scalar.
/// Returns `None` when the scratch is too small.
pub(crate) fn straus(
    bases: &[Base],
    g: Option<(Half, Half)>,
    s: &mut StrausScratch<'_>,
) -> Option<Jacobian> {
    let nb = bases.len();
    let tables = s.tables.get_mut(..nb * STRAUS_TABLE)?;
    let mut points = [Affine::PLACEHOLDER; STRAUS_MAX_BASES];
    if nb <= STRAUS_MAX_BASES {
        for (slot, b) in points.iter_mut().zip(bases) {
            *slot = b.p;
        }
        let points = points.get(..nb)?;
        let ratios = s.prefix.get_mut(..nb * STRAUS_TABLE)?;
        if let Some(z) = odd_multiples_globalz(points, STRAUS_TABLE, tables, ratios) {
            return straus_with_tables(bases, tables, g, s.wnafs, Some(&z));
        }
    }
    // More bases than the stack buffer holds (or a degenerate table): true affine
    // tables, normalised with one inversion.
    let jac = s.jac.get_mut(..nb * STRAUS_TABLE)?;
    fill_tables(bases, jac);
    if !batch_normalize(jac, s.prefix.get_mut(..nb * STRAUS_TABLE)?, tables) {
        return None;
    }
    straus_with_tables(bases, tables, g, s.wnafs, None)
}

/// The Jacobian odd multiples `P, 3P, ..., 15P` of every base, [`STRAUS_TABLE`] per base,
/// into `jac` (to be normalised, possibly together with other calls' tables).
pub(crate) fn fill_tables(bases: &[Base], jac: &mut [Jacobian]) {
    for (chunk, b) in jac.chunks_exact_mut(STRAUS_TABLE).zip(bases) {
        fill_odd_multiples(&b.p, chunk);
    }
}

/// [`straus`] with the bases' tables already built (`tables`, as [`fill_tables`] lays
/// them out); `wnafs` holds two per base. With `zg = None` the tables are affine; with
/// `Some(z)` they are affine up to the common Jacobian `z` (see
/// [`odd_multiples_globalz`]): the sum is then accumulated in coordinates scaled by `z`,
/// the generator's points are added through [`Jacobian::add_affine_zinv`], and the
/// result is scaled back.
pub(crate) fn straus_with_tables(
    bases: &[Base],
    tables: &[Affine],
    g: Option<(Half, Half)>,
    wnafs: &mut [[i16; WNAF_LEN]],
    zg: Option<&Fe>,
) -> Option<Jacobian> {
    let beta = consts().beta;
    let nb = bases.len();
    let tables = tables.get(..nb * STRAUS_TABLE)?;
    let wnafs = wnafs.get_mut(..2 * nb)?;
    let mut top = 0;
    for (pair, b) in wnafs.chunks_exact_mut(2).zip(bases) {
        if let [w1, w2] = pair {
            top = top
                .max(wnaf(b.k1.mag, STRAUS_W, w1))
                .max(wnaf(b.k2.mag, STRAUS_W, w2));
        }
    }
    let gtab = generator_odd_table();
    let mut gw = [[0i16; WNAF_LEN]; 2];
    let (g1, g2) = g.unwrap_or_default();
    let [gw1, gw2] = &mut gw;
    top = top
        .max(wnaf(g1.mag, G_WINDOW, gw1))
        .max(wnaf(g2.mag, G_WINDOW, gw2));
    let mut acc = Jacobian::INFINITY;
    for i in (0..top).rev() {
        acc = acc.double();
        for ((pair, b), table) in wnafs
            .chunks_exact(2)
            .zip(bases)
            .zip(tables.chunks_exact(STRAUS_TABLE))
        {
            if let [w1, w2] = pair {
                if let Some(&d) = w1.get(i).filter(|d| **d != 0) {
                    acc = acc.add_affine(&lookup(table, d, false, b.k1.neg, false, &beta)?);
                }
                if let Some(&d) = w2.get(i).filter(|d| **d != 0) {
                    acc = acc.add_affine(&lookup(table, d, false, b.k2.neg, true, &beta)?);
                }
            }
        }
        if let Some(&d) = gw1.get(i).filter(|d| **d != 0) {
            let q = lookup(gtab, d, false, g1.neg, false, &beta)?;
            acc = zg.map_or_else(|| acc.add_affine(&q), |z| acc.add_affine_zinv(&q, z));
        }
        if let Some(&d) = gw2.get(i).filter(|d| **d != 0) {
            let q = lookup(gtab, d, false, g2.neg, true, &beta)?;
            acc = zg.map_or_else(|| acc.add_affine(&q), |z| acc.add_affine_zinv(&q, z));
        }
    }
    if let Some(z) = zg {
        acc.scale_z(z);
    }
    Some(acc)
}

fn fill_odd_multiples(p: &Affine, out: &mut [Jacobian]) {
    // `odd_multiples` appends to a Vec; do the same steps into the slice.
    let d = Jacobian::from_affine(p).double();
    crate::point::odd_multiples_into(p, &d, out);
}

/// Pippenger scratch (vectors reserved once, resized within capacity).
#[derive(Default)]
pub(crate) struct PippengerScratch {
    /// Flattened point halves: the point (with endomorphism and sign applied) and magnitude.
    pub(crate) points: Vec<(Affine, u128)>,
    digits: Vec<i16>,
    buckets: Vec<Jacobian>,
    /// Affine buckets, all windows side by side (`window * nb + index`).
    abuckets: Vec<Affine>,
    /// Whether a bucket holds a point.
    aset: Vec<bool>,
    /// Whether a bucket already has an addition in the current round.
    sched: Vec<bool>,
    /// Pending additions `(bucket, point index, negate)`; compacted in place.
    items: Vec<(u32, u32, bool)>,
    /// The current round: `(bucket, point index, negate)`.
    round: Vec<(u32, u32, bool)>,
    /// Denominators and prefix products of the round.
    denom: Vec<Fe>,
    prefix: Vec<Fe>,
}

impl PippengerScratch {
    /// Reserves what [`pippenger_affine`] needs for up to `halves` point halves, so that
    /// it never allocates: the buckets of the widest window it picks for that many
    /// (2,176 at 8 bits, 264 at 4: each a Jacobian and an affine point), and one pending
    /// addition per non-zero digit. (The reference [`pippenger`], used by tests only,
    /// may grow the vectors.)
    pub(crate) fn with_capacity(halves: usize) -> Self {
        let buckets = if halves == 0 {
            0
        } else {
            affine_buckets(affine_window(halves))
        };
        let items = affine_items_bound(halves);
        Self {
            points: Vec::with_capacity(halves),
            digits: Vec::new(),
            buckets: Vec::with_capacity(buckets),
            abuckets: Vec::with_capacity(buckets),
            aset: Vec::with_capacity(buckets),
            sched: Vec::with_capacity(buckets),
            items: Vec::with_capacity(items),
            round: Vec::with_capacity(buckets.min(items)),
            denom: Vec::with_capacity(buckets.min(items)),
            prefix: Vec::with_capacity(buckets.min(items)),
        }
    }

    /// Clears the point list.
    pub(crate) fn clear(&mut self) {
        self.points.clear();
    }

    /// Appends `k1 * P + k2 * lambda(P)` as up to two point halves.
    pub(crate) fn push_base(&mut self, b: &Base, beta: &Fe) {
        if b.k1.mag != 0 {
            let p = if b.k1.neg { b.p.neg() } else { b.p };
            self.points.push((p, b.k1.mag));
        }
        if b.k2.mag != 0 {
            let p = b.p.endo(beta);
            let p = if b.k2.neg { p.neg() } else { p };
            self.points.push((p, b.k2.mag));
        }
    }
}

/// Largest window of the batched-affine Pippenger.
const AFFINE_MAX_C: u32 = 8;
/// Below this many additions a round's shared inversion no longer pays.
const AFFINE_MIN_ROUND: usize = 24;

/// Windows of `c`-bit signed digits for a magnitude below 2^128 (one for the carry).
fn affine_windows(c: u32) -> usize {
    129usize.div_ceil(c as usize)
}

/// Buckets over all windows at window `c`.
fn affine_buckets(c: u32) -> usize {
    affine_windows(c) * (1usize << (c - 1))
}

/// Most pending additions [`pippenger_affine`] queues for at most `halves` point halves:
/// one per non-zero digit, at most `affine_windows(c)` per half, where `c` is the window it
/// picks for the actual count. The window grows with the count, so each window's worst
/// case is at the largest count that still picks it (found by bisection).
fn affine_items_bound(halves: usize) -> usize {
    let mut bound = 0usize;
    for c in PIPPENGER_MIN_C..=affine_window(halves) {
        // Largest n <= halves with affine_window(n) <= c.
        let (mut lo, mut hi) = (0usize, halves);
        while lo < hi {
            let mid = hi - (hi - lo) / 2;
            if affine_window(mid) <= c {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        bound = bound.max(lo.saturating_mul(affine_windows(c)));
    }
    bound
}

/// Window for the batched-affine Pippenger (about 1,650 instructions per bucket addition,
/// 7,800 per bucket in the sums). Never decreases as `n` grows (a wider window costs
/// fewer rounds per point), which [`affine_items_bound`] relies on.
fn affine_window(n: usize) -> u32 {
    let mut best = PIPPENGER_MIN_C;
    let mut best_cost = u128::MAX;
    for c in PIPPENGER_MIN_C..=AFFINE_MAX_C {
        // In u128: `with_capacity` asks for any count, absurd ones included (33 windows
        // times 2^65 fit).
        let cost = (affine_windows(c) as u128) * (2 * n as u128 + 8 * (1u128 << (c - 1)));
        if cost < best_cost {
            best_cost = cost;
            best = c;
        }
    }
    best
}

/// `sum(points)` with Pippenger's bucket method, bucket additions done in affine
/// coordinates in rounds that share one field inversion (Montgomery's trick) across all
/// windows at once; a bucket takes at most one addition per round.
#[allow(
    clippy::too_many_lines,
    clippy::many_single_char_names,
    reason = "one algorithm in the usual notation; splitting it would scatter the scratch borrows"
)]
/// `None` when an internal check fails (a bucket or point index past `u32`, a product of
/// non-zero denominators with no inverse): unreachable for inputs that fit in memory and
/// field arithmetic that is correct, and the caller fails the verification rather than
/// use a sum with a term left out.
pub(crate) fn pippenger_affine(s: &mut PippengerScratch) -> Option<Jacobian> {
    let n = s.points.len();
    let c = affine_window(n);
    let windows = affine_windows(c);
    let nb = 1usize << (c - 1);
    let total = affine_buckets(c);
    s.abuckets.clear();
    s.abuckets.resize(total, Affine::PLACEHOLDER);
    s.aset.clear();
    s.aset.resize(total, false);
    s.sched.clear();
    s.sched.resize(total, false);
    s.buckets.clear();
    s.buckets.resize(total, Jacobian::INFINITY);
    s.items.clear();
    for (i, (_, mag)) in s.points.iter().enumerate() {
        let mut tmp = [0i16; PIPPENGER_MAX_WINDOWS];
        signed_digits(*mag, c, &mut tmp);
        for (w, &d) in tmp.iter().enumerate().take(windows) {
            if d != 0 {
                let b = w * nb + usize::from(d.unsigned_abs()) - 1;
                let (Ok(b), Ok(i)) = (u32::try_from(b), u32::try_from(i)) else {
                    return None;
                };
                s.items.push((b, i, d < 0));
            }
        }
    }
    let point = |pts: &[(Affine, u128)], i: u32, neg: bool| -> Affine {
        let p = pts.get(i as usize).map_or(Affine::PLACEHOLDER, |x| x.0);
        if neg { p.neg() } else { p }
    };
    while !s.items.is_empty() {
        // Schedule: fill empty buckets directly, one addition per bucket per round, the
        // rest compacted to the front of `items` for the next round.
        s.round.clear();
        let mut keep = 0usize;
        for r in 0..s.items.len() {
            let Some(&(b, i, neg)) = s.items.get(r) else {
                break;
            };
            let bi = b as usize;
            match (s.aset.get(bi).copied(), s.sched.get(bi).copied()) {
                (Some(false), _) => {
                    if let (Some(slot), Some(set)) = (s.abuckets.get_mut(bi), s.aset.get_mut(bi)) {
                        *slot = point(&s.points, i, neg);
                        *set = true;
                    }
                }
                (Some(true), Some(false)) => {
                    if let Some(sc) = s.sched.get_mut(bi) {
                        *sc = true;
                    }
                    s.round.push((b, i, neg));
                }
                _ => {
                    if let Some(slot) = s.items.get_mut(keep) {
                        *slot = (b, i, neg);
                    }
                    keep += 1;
                }
            }
        }
        s.items.truncate(keep);
        if s.round.len() < AFFINE_MIN_ROUND {
            // Few buckets left busy (the top window has only a few digit values): finish
            // them with Jacobian mixed additions rather than one inversion per round.
            for &(b, i, neg) in s.round.iter().chain(s.items.iter()) {
                if let Some(j) = s.buckets.get_mut(b as usize) {
                    *j = j.add_affine(&point(&s.points, i, neg));
                }
            }
            s.items.clear();
            break;
        }
        // Denominators x_p - x_b; equal x (doubling or cancellation) handled apart.
        s.denom.clear();
        s.prefix.clear();
        let mut acc = Fe::ONE;
        for &(b, i, neg) in &s.round {
            let bkt = s
                .abuckets
                .get(b as usize)
                .copied()
                .unwrap_or(Affine::PLACEHOLDER);
            let p = point(&s.points, i, neg);
            let d = p.x.sub(&bkt.x);
            let d = if d.is_zero() { Fe::ONE } else { d };
            s.prefix.push(acc);
            acc = acc.mul(&d);
            s.denom.push(d);
        }
        // Every denominator is non-zero, so their product is invertible.
        let mut inv = acc.invert()?;
        for ((&(b, i, neg), d), pre) in s.round.iter().zip(&s.denom).zip(&s.prefix).rev() {
            let dinv = inv.mul(pre);
            inv = inv.mul(d);
            let bi = b as usize;
            let bkt = s.abuckets.get(bi).copied().unwrap_or(Affine::PLACEHOLDER);
            let p = point(&s.points, i, neg);
            let same_x = p.x.eq(&bkt.x);
            let new = if same_x {
                // Doubling or cancellation (rare): do it in Jacobian coordinates.
                Jacobian::from_affine(&bkt).add_affine(&p).to_affine()
            } else {
                let lambda = p.y.sub(&bkt.y).mul(&dinv);
                let x3 = lambda.square().sub(&bkt.x).sub(&p.x);
                let y3 = lambda.mul(&bkt.x.sub(&x3)).sub(&bkt.y);
                Some(Affine { x: x3, y: y3 })
            };
            match new {
                Some(q) => {
                    if let Some(slot) = s.abuckets.get_mut(bi) {
                        *slot = q;
                    }
                }
                None => {
                    if let Some(set) = s.aset.get_mut(bi) {
                        *set = false;
                    }
                }
            }
            if let Some(sc) = s.sched.get_mut(bi) {
                *sc = false;
            }
        }
    }
    let mut acc = Jacobian::INFINITY;
    for w in (0..windows).rev() {
        for _ in 0..c {
            acc = acc.double();
        }
        let mut running = Jacobian::INFINITY;
        let mut sum = Jacobian::INFINITY;
        let range = w * nb..(w + 1) * nb;
        let (Some(bk), Some(set), Some(jb)) = (
            s.abuckets.get(range.clone()),
            s.aset.get(range.clone()),
            s.buckets.get(range),
        ) else {
            continue;
        };
        for ((b, &is_set), j) in bk.iter().zip(set).zip(jb).rev() {
            if is_set {
                running = running.add_affine(b);
            }
            if !j.is_infinity() {
                running = running.add(j);
            }
            sum = sum.add(&running);
        }
        acc = acc.add(&sum);
    }
    Some(acc)
}

/// Pippenger window for `n` point halves (minimises rounds x (n + 1.5 * 2^c)).
fn pippenger_window(n: usize) -> u32 {
    let mut best = PIPPENGER_MIN_C;
    let mut best_cost = usize::MAX;
    for c in PIPPENGER_MIN_C..=PIPPENGER_MAX_C {
        let rounds = 129usize.div_ceil(c as usize);
        let cost = rounds * (2 * n + 3 * (1usize << c));
        if cost < best_cost {
            best_cost = cost;
            best = c;
        }
    }
    best
}

/// `sum(points)` with Pippenger's bucket method and Jacobian buckets (the reference the
/// tests check [`pippenger_affine`] against).
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "reference implementation, used by the tests")
)]
pub(crate) fn pippenger(s: &mut PippengerScratch) -> Jacobian {
    let n = s.points.len();
    let c = pippenger_window(n);
    let windows = 129usize.div_ceil(c as usize);
    s.digits.clear();
    s.digits.resize(n * windows, 0);
    for (i, (_, mag)) in s.points.iter().enumerate() {
        let mut tmp = [0i16; PIPPENGER_MAX_WINDOWS];
        signed_digits(*mag, c, &mut tmp);
        // Window-major layout.
        for (w, &d) in tmp.iter().enumerate().take(windows) {
            if let Some(slot) = s.digits.get_mut(w * n + i) {
                *slot = d;
            }
        }
    }
    let nbuckets = 1usize << (c - 1);
    let mut acc = Jacobian::INFINITY;
    for w in (0..windows).rev() {
        for _ in 0..c {
            acc = acc.double();
        }
        s.buckets.clear();
        s.buckets.resize(nbuckets, Jacobian::INFINITY);
        let Some(row) = s.digits.get(w * n..(w + 1) * n) else {
            continue;
        };
        for (&d, (p, _)) in row.iter().zip(&s.points) {
            if d == 0 {
                continue;
            }
            let idx = usize::from(d.unsigned_abs()) - 1;
            if let Some(bucket) = s.buckets.get_mut(idx) {
                *bucket = if d < 0 {
                    bucket.add_affine(&p.neg())
                } else {
                    bucket.add_affine(p)
                };
            }
        }
        let mut running = Jacobian::INFINITY;
        let mut sum = Jacobian::INFINITY;
        for b in s.buckets.iter().rev() {
            running = running.add(b);
            sum = sum.add(&running);
        }
        acc = acc.add(&sum);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::scalar_reduce32;

    /// Plain double-and-add, the reference.
    fn reference(terms: &[(Affine, Scalar)]) -> Jacobian {
        let mut acc = Jacobian::INFINITY;
        for (p, k) in terms {
            let bytes = crate::scalar::scalar_to_bytes(k);
            let mut r = Jacobian::INFINITY;
            for byte in bytes {
                for bit in (0..8).rev() {
                    r = r.double();
                    if (byte >> bit) & 1 == 1 {
                        r = r.add_affine(p);
                    }
                }
            }
            acc = acc.add(&r);
        }
        acc
    }

    fn same(a: &Jacobian, b: &Jacobian) -> bool {
        match (a.to_affine(), b.to_affine()) {
            (None, None) => true,
            (Some(x), Some(y)) => x.eq(&y),
            _ => false,
        }
    }

    fn scalar(seed: u64) -> Scalar {
        let mut b = [0u8; 32];
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for chunk in b.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_be_bytes());
        }
        scalar_reduce32(&b)
    }

    /// `k * P` as k256 computes it, compressed (`None` for the identity).
    fn k256_mul(p: &Affine, k: &Scalar) -> Option<[u8; 33]> {
        use k256::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
        let enc = p.to_compressed();
        let kp = Option::<k256::AffinePoint>::from(k256::AffinePoint::from_sec1_point(
            &k256::Sec1Point::from_bytes(enc).unwrap(),
        ))
        .unwrap();
        let r = (k256::ProjectivePoint::from(kp) * k).to_affine();
        let out = r.to_sec1_point(true);
        (out.as_bytes().len() == 33).then(|| out.as_bytes().try_into().unwrap())
    }

    fn ours(j: &Jacobian) -> Option<[u8; 33]> {
        j.to_affine().map(Affine::to_compressed)
    }

    /// Edge scalars (0, n - 1, lambda, powers of two around the GLV halves ...) through
    /// every multiplication path against k256: Straus (global-Z and affine fallback, with
    /// and without the generator), both Pippengers and the comb tables.
    #[test]
    #[allow(
        clippy::many_single_char_names,
        reason = "points and scalars in the usual notation"
    )]
    fn edge_scalars_in_every_path_match_k256() {
        use crate::scalar::edge_scalars;
        let g = consts().g;
        let beta = consts().beta;
        let p = Jacobian::from_affine(&g)
            .double()
            .add_affine(&g)
            .to_affine()
            .unwrap();
        let q = p.endo(&beta);
        let comb_p = CombTable::new(&p);
        let ks = edge_scalars();
        for (i, k) in ks.iter().enumerate() {
            let want_p = k256_mul(&p, k);
            let want_g = k256_mul(&g, k);
            // Straus, one base, generator term zero and the generator alone.
            let mut jac = vec![Jacobian::INFINITY; 30 * STRAUS_TABLE];
            let mut prefix = vec![Fe::ZERO; 30 * STRAUS_TABLE];
            let mut tables = vec![Affine::PLACEHOLDER; 30 * STRAUS_TABLE];
            let mut wnafs = vec![[0i16; WNAF_LEN]; 60];
            let mut s = StrausScratch {
                jac: &mut jac,
                prefix: &mut prefix,
                tables: &mut tables,
                wnafs: &mut wnafs,
            };
            let got = straus(&[Base::new(p, k).unwrap()], None, &mut s).unwrap();
            assert_eq!(ours(&got), want_p, "straus {i}");
            let got = straus(&[], Some(glv_split(k).unwrap()), &mut s).unwrap();
            assert_eq!(ours(&got), want_g, "straus G {i}");
            // k P + (-k) P with G: cancels to the generator term only.
            let other = ks[(i + 7) % ks.len()];
            let got = straus(
                &[
                    Base::new(p, k).unwrap(),
                    Base::new(p, &-*k).unwrap(),
                    Base::new(q, &other).unwrap(),
                ],
                Some(glv_split(k).unwrap()),
                &mut s,
            )
            .unwrap();
            let mut want = Jacobian::INFINITY;
            assert!(generator_table().mul_add_scalar(&mut want, k));
            let oq = k256_mul(&q, &other);
            // Compare (got - k G) with other * q through k256.
            let mut minus_kg = Jacobian::INFINITY;
            assert!(generator_table().mul_add_scalar(&mut minus_kg, &-*k));
            assert_eq!(ours(&got.add(&minus_kg)), oq, "straus cancel {i}");
            // Past the stack buffer: the affine fallback, 26 bases summing to k P.
            let mut many = vec![Base::new(p, k).unwrap()];
            for j in 0..25u64 {
                let c = Scalar::from(j + 1) * other;
                many.push(Base::new(q, &c).unwrap());
                many.push(Base::new(q, &-c).unwrap());
            }
            let many = &many[..26];
            let got = straus(many, None, &mut s).unwrap();
            let mut pip = PippengerScratch::with_capacity(2 * many.len());
            for b in many {
                pip.push_base(b, &beta);
            }
            let jp = pippenger(&mut pip);
            let ja = pippenger_affine(&mut pip).unwrap();
            assert_eq!(ours(&got), ours(&jp), "straus fallback vs pippenger {i}");
            assert_eq!(ours(&ja), ours(&jp), "pippenger affine {i}");
            // One base in Pippenger: exactly k P.
            let mut pip = PippengerScratch::with_capacity(2);
            pip.push_base(&Base::new(p, k).unwrap(), &beta);
            assert_eq!(ours(&pippenger(&mut pip)), want_p, "pippenger {i}");
            assert_eq!(
                ours(&pippenger_affine(&mut pip).unwrap()),
                want_p,
                "pippenger affine {i}"
            );
            // Comb tables.
            let mut acc = Jacobian::INFINITY;
            assert!(comb_p.mul_add_scalar(&mut acc, k));
            assert_eq!(ours(&acc), want_p, "comb {i}");
            assert_eq!(ours(&want), want_g, "generator comb {i}");
        }
    }

    /// The sizes the docs give (`PrecomputedKey`, `PrecomputedVerifyingKey`,
    /// `warm_up`, the README): a comb table of 136 KiB, the generator's window-13 table of
    /// 128 KiB. The docs said 174 KiB, the size with the 5x52-limb field element of
    /// earlier versions (80-byte affine points).
    #[test]
    fn table_sizes_match_the_docs() {
        let comb = CombTable::new(&consts().g);
        assert_eq!(
            comb.points.len() * core::mem::size_of::<Affine>(),
            136 * 1024
        );
        assert_eq!(generator_table().points.len(), comb.points.len());
        assert_eq!(core::mem::size_of_val(generator_odd_table()), 128 * 1024);
    }

    /// The Pippenger scratch reserves enough for any count up to its capacity (the
    /// batch verifiers' zero-allocation promise): the window never narrows as the count
    /// grows, and the bound on pending additions covers every smaller count, whose
    /// narrower window has more digits per half.
    #[test]
    fn pippenger_scratch_bounds_cover_every_smaller_count() {
        let mut worst = 0usize;
        let mut prev = affine_window(0);
        for n in 0..20_000usize {
            let c = affine_window(n);
            assert!(c >= prev, "window narrowed at {n}");
            prev = c;
            worst = worst.max(n * affine_windows(c));
            assert_eq!(affine_items_bound(n), worst, "items bound at {n}");
        }
        for n in [1usize, 100, 1000, 20_000] {
            let s = PippengerScratch::with_capacity(n);
            assert!(s.buckets.capacity() >= affine_buckets(affine_window(n)));
            assert!(s.items.capacity() >= affine_items_bound(n));
        }
        // Absurd counts saturate instead of overflowing.
        assert_eq!(affine_window(usize::MAX), AFFINE_MAX_C);
        assert!(affine_items_bound(usize::MAX / 2) > 0);
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        clippy::many_single_char_names,
        reason = "one scenario: every multiplication path against the same references"
    )]
    fn straus_pippenger_and_comb_agree_with_double_and_add() {
        let g = consts().g;
        let beta = consts().beta;
        // Points: multiples of G, with repeats and negations to hit the doubling and
        // cancellation branches.
        let mut pts = Vec::new();
        let mut cur = Jacobian::from_affine(&g);
        for i in 0..12 {
            cur = cur.add_affine(&g).double();
            let p = cur.to_affine().unwrap();
            pts.push(p);
            if i % 3 == 0 {
                pts.push(p);
                pts.push(p.neg());
            }
        }
        for n in [1usize, 2, 5, pts.len()] {
            let terms: Vec<(Affine, Scalar)> = pts
                .iter()
                .take(n)
                .enumerate()
                .map(|(i, p)| (*p, scalar(i as u64 + 7 * n as u64)))
                .collect();
            let want = reference(&terms);
            let bases: Vec<Base> = terms
                .iter()
                .map(|(p, k)| Base::new(*p, k).unwrap())
                .collect();
            let mut jac = vec![Jacobian::INFINITY; n * STRAUS_TABLE];
            let mut prefix = vec![Fe::ZERO; n * STRAUS_TABLE];
            let mut tables = vec![Affine::PLACEHOLDER; n * STRAUS_TABLE];
            let mut wnafs = vec![[0i16; WNAF_LEN]; 2 * n];
            let mut s = StrausScratch {
                jac: &mut jac,
                prefix: &mut prefix,
                tables: &mut tables,
                wnafs: &mut wnafs,
            };
            let got = straus(&bases, None, &mut s).unwrap();
            assert!(same(&got, &want), "straus n={n}");
            // With a generator term too (global-Z tables plus `1/Z`-scaled G points).
            let gk = scalar(1000 + n as u64);
            let mut with_g = terms.clone();
            with_g.push((g, gk));
            let got = straus(&bases, Some(glv_split(&gk).unwrap()), &mut s).unwrap();
            assert!(same(&got, &reference(&with_g)), "straus with G n={n}");
            let mut pip = PippengerScratch::with_capacity(2 * n);
            for b in &bases {
                pip.push_base(b, &beta);
            }
            assert!(same(&pippenger(&mut pip), &want), "pippenger n={n}");
            assert!(
                same(&pippenger_affine(&mut pip).unwrap(), &want),
                "pippenger_affine n={n}"
            );
        }
        // Large inputs (full affine rounds), with repeated and opposite points: the
        // batched-affine Pippenger against the Jacobian one.
        let mut big = Vec::new();
        let mut cur = Jacobian::from_affine(&g);
        for i in 0..300u64 {
            cur = cur.add_affine(&g);
            let p = cur.to_affine().unwrap();
            big.push(Base::new(p, &scalar(1000 + i)).unwrap());
            if i % 10 == 0 {
                big.push(Base::new(p, &scalar(5000 + i)).unwrap());
                big.push(Base::new(p.neg(), &scalar(1000 + i)).unwrap());
            }
        }
        let mut a = PippengerScratch::with_capacity(2 * big.len());
        for b in &big {
            a.push_base(b, &beta);
        }
        let jac = pippenger(&mut a);
        assert!(same(&pippenger_affine(&mut a).unwrap(), &jac));
        // More bases than Straus' stack buffer: the fallback with one inversion, against
        // Pippenger, with and without a generator term.
        let many = big.get(..STRAUS_MAX_BASES + 6).unwrap();
        let n = many.len();
        let mut jac_s = vec![Jacobian::INFINITY; n * STRAUS_TABLE];
        let mut prefix = vec![Fe::ZERO; n * STRAUS_TABLE];
        let mut tables = vec![Affine::PLACEHOLDER; n * STRAUS_TABLE];
        let mut wnafs = vec![[0i16; WNAF_LEN]; 2 * n];
        let mut s = StrausScratch {
            jac: &mut jac_s,
            prefix: &mut prefix,
            tables: &mut tables,
            wnafs: &mut wnafs,
        };
        let mut pip = PippengerScratch::with_capacity(2 * n);
        for b in many {
            pip.push_base(b, &beta);
        }
        let want = pippenger(&mut pip);
        assert!(same(&straus(many, None, &mut s).unwrap(), &want));
        let gk = scalar(77);
        let mut want_g = want;
        assert!(generator_table().mul_add_scalar(&mut want_g, &gk));
        assert!(same(
            &straus(many, Some(glv_split(&gk).unwrap()), &mut s).unwrap(),
            &want_g
        ));
        // Generator paths: Straus' window-13 generator and the comb.
        let k = scalar(99);
        let want = reference(&[(g, k)]);
        let mut s = StrausScratch {
            jac: &mut [],
            prefix: &mut [],
            tables: &mut [],
            wnafs: &mut [],
        };
        assert!(same(
            &straus(&[], Some(glv_split(&k).unwrap()), &mut s).unwrap(),
            &want
        ));
        let mut acc = Jacobian::INFINITY;
        assert!(generator_table().mul_add_scalar(&mut acc, &k));
        assert!(same(&acc, &want));
        // k and -k cancel.
        let mut acc = Jacobian::INFINITY;
        assert!(generator_table().mul_add_scalar(&mut acc, &k));
        assert!(generator_table().mul_add_scalar(&mut acc, &-k));
        assert!(acc.is_infinity());
    }
}
