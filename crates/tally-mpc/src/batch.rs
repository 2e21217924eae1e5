//! The batch-verification engine shared by BIP340 signatures and FROST shares.
//!
//! Every entry states an equation `sum_j c_j P_j + c_k K - g G = 0` (for BIP340:
//! `R + e P - s G`; for a FROST share: `D + rho E + c lambda Y - z G`). The batch checks
//! one random linear combination `sum_i a_i (entry_i) = 0` with 128-bit weights `a_i` in a
//! single multiscalar multiplication. Points that several entries share (a signer's key,
//! a FROST verifying share) are merged: their scalars are summed first, so a key that
//! signs many entries costs one base, not one per entry.
//!
//! # Weights
//!
//! The weights are derived, as BIP340 suggests, from a hash of the whole batch: SHA-256
//! over every entry's encoding (points, challenges, `s`/`z`) gives a seed, and
//! `a_i` is 128 bits of `SHA-256(seed || i)`. An attacker who wants invalid entries to
//! cancel must guess the weights before choosing the entries, but any change to an
//! entry changes every weight, so a forged batch passes with probability about 2^-128.
//! No randomness source is needed and results are reproducible.
//!
//! # Finding the invalid entries
//!
//! When the whole batch fails, it is split in halves (group testing). Every check
//! computes the weighted sum of its entries' equations as a point, so only the left
//! half's sum is computed: the right half's is the whole range's sum minus the left's,
//! one point addition. A half whose sum is the identity holds no invalid entry; the
//! search goes on in each half that fails. One invalid entry among `n` costs one sum of
//! `n/2`, `n/4`, ... entries: about one more batch of `n`.
//!
//! Splitting pays only while invalid entries are rare. When both halves of a range fail,
//! and then both halves of one of those halves fail too (about four or more invalid
//! entries in it), each of them is checked entry by entry instead, each entry alone with
//! weight one. On a batch of 64 BIP340 signatures (`mpc/bip340_batch64_bad*`, callgrind):
//! all invalid costs 3.6x a valid batch, about 2.2x checking each signature alone
//! (splitting down to single entries cost 8.4x a valid batch); one invalid entry costs
//! 2.0x a valid batch (2.9x when both halves were multiplied at every level).
//!
use crate::msm::{
    Base, CombTable, PippengerScratch, STRAUS_MAX_BASES, STRAUS_TABLE, StrausScratch,
    pippenger_affine, straus,
};
use crate::point::{Affine, Fe, Jacobian, consts};
use crate::scalar::{Half, WNAF_LEN, glv_split};
use k256::Scalar;
use sha2::{Digest, Sha256};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// Largest number of non-key points per entry.
pub(crate) const MAX_POINTS: usize = 2;

/// One entry's equation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    /// Points with coefficients `coefs` (`None` = coefficient one).
    pub(crate) points: [Affine; MAX_POINTS],
    pub(crate) coefs: [Option<Scalar>; MAX_POINTS],
    pub(crate) npoints: usize,
    /// Index of the shared key in `keys`.
    pub(crate) key: usize,
    pub(crate) key_coef: Scalar,
    /// Coefficient of the generator (subtracted).
    pub(crate) g: Scalar,
    /// Known invalid at push time (for example `r` has no curve point).
    pub(crate) bad: bool,
}

/// Engine state; every buffer is reserved in `with_capacity`.
pub(crate) struct Engine {
    capacity: usize,
    entries: Vec<Entry>,
    weights: Vec<u128>,
    keys: Vec<Affine>,
    /// A precomputed table of the key, if the caller has one: its term is then added with
    /// at most 34 table lookups instead of being a base of the multiplication.
    key_tables: Vec<Option<Arc<CombTable>>>,
    key_ids: Vec<[u8; 33]>,
    /// Open-addressing table of `key index + 1`, size a power of two.
    key_slots: Vec<u32>,
    /// Hashes key ids into `key_slots` with `SipHash` under keys drawn at random for each
    /// verifier, so that a caller pushing attacker-chosen keys cannot aim them all at one
    /// slot (a fixed hash of the key's bytes made pushes quadratic in the key count).
    key_hasher: RandomState,
    /// Slots looked at by `intern_key`, for the flooding test.
    #[cfg(test)]
    key_probes: u64,
    /// Weighted sums checked since construction, for the search-cost tests.
    #[cfg(test)]
    pub(crate) checks: u64,
    key_acc: Vec<Scalar>,
    /// Per key: the last check (by `generation`) that added the key's term; 0 for none.
    key_mark: Vec<u32>,
    /// Counts checks, from 1; never 0 (see `check`).
    generation: u32,
    transcript: Sha256,
    bases: Vec<Base>,
    pip: PippengerScratch,
    s_jac: Vec<Jacobian>,
    s_prefix: Vec<Fe>,
    s_tables: Vec<Affine>,
    s_wnafs: Vec<[i16; WNAF_LEN]>,
    invalid: Vec<usize>,
}

fn transcript_start() -> Sha256 {
    let mut h = Sha256::new();
    h.update(b"tally-mpc/batch-weights/v1");
    h
}

impl Engine {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        // Saturating: an absurd capacity fails in `Vec::with_capacity` (documented on the
        // public constructors), never in this arithmetic.
        let max_bases = (MAX_POINTS + 1).saturating_mul(capacity).saturating_add(1);
        let slots = capacity
            .max(1)
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX);
        // Scratch only for the paths this capacity can take: `sum` uses Straus below
        // `STRAUS_MAX_BASES` bases, Pippenger (whose buckets alone are 360 KiB at its
        // widest window) from there on.
        let straus_bases = STRAUS_MAX_BASES.min(max_bases);
        let pippenger_halves = if max_bases > STRAUS_MAX_BASES {
            max_bases.saturating_mul(2)
        } else {
            0
        };
        Self {
            capacity,
            entries: Vec::with_capacity(capacity),
            weights: Vec::with_capacity(capacity),
            keys: Vec::with_capacity(capacity),
            key_tables: Vec::with_capacity(capacity),
            key_ids: Vec::with_capacity(capacity),
            key_slots: vec![0; slots],
            key_hasher: RandomState::new(),
            #[cfg(test)]
            key_probes: 0,
            #[cfg(test)]
            checks: 0,
            key_acc: Vec::with_capacity(capacity),
            key_mark: Vec::with_capacity(capacity),
            generation: 0,
            transcript: transcript_start(),
            bases: Vec::with_capacity(max_bases),
            pip: PippengerScratch::with_capacity(pippenger_halves),
            s_jac: vec![Jacobian::INFINITY; straus_bases * STRAUS_TABLE],
            s_prefix: vec![Fe::ZERO; straus_bases * STRAUS_TABLE],
            s_tables: vec![Affine::PLACEHOLDER; straus_bases * STRAUS_TABLE],
            s_wnafs: vec![[0; WNAF_LEN]; 2 * straus_bases],
            invalid: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Moves the check counter, so that a test can reach its wrap-around without 2^32
    /// checks.
    #[cfg(test)]
    pub(crate) fn set_generation(&mut self, generation: u32) {
        self.generation = generation;
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.keys.clear();
        self.key_tables.clear();
        self.key_ids.clear();
        self.key_acc.clear();
        self.key_mark.clear();
        self.key_slots.iter_mut().for_each(|s| *s = 0);
        self.transcript = transcript_start();
        if self.invalid.capacity() < self.capacity {
            // A failed batch handed its index buffer to the error; replace it once.
            self.invalid = Vec::with_capacity(self.capacity);
        }
        self.invalid.clear();
    }

    /// Index of `key` (identified by `id`), adding it if new, with its precomputed table if
    /// one is given.
    pub(crate) fn intern_key(
        &mut self,
        key: &Affine,
        id: &[u8; 33],
        table: Option<&Arc<CombTable>>,
    ) -> usize {
        let mask = self.key_slots.len() - 1;
        // Truncating the 64-bit hash on 32-bit targets is fine: only its low bits are used.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the mask keeps only low bits"
        )]
        let mut slot = (self.key_hasher.hash_one(id) as usize) & mask;
        loop {
            #[cfg(test)]
            {
                self.key_probes += 1;
            }
            match self.key_slots.get(slot).copied() {
                Some(0) | None => break,
                Some(k) => {
                    let idx = (k - 1) as usize;
                    if self.key_ids.get(idx) == Some(id) {
                        return idx;
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
        let idx = self.keys.len();
        self.keys.push(*key);
        self.key_tables.push(table.cloned());
        self.key_ids.push(*id);
        self.key_acc.push(Scalar::ZERO);
        self.key_mark.push(0);
        if let (Some(s), Ok(v)) = (self.key_slots.get_mut(slot), u32::try_from(idx + 1)) {
            *s = v;
        }
        idx
    }

    /// Appends an entry whose encoding `transcript` is absorbed into the weight seed.
    pub(crate) fn push(&mut self, entry: &Entry, transcript: &[&[u8]]) -> Result<(), crate::Error> {
        if self.entries.len() >= self.capacity {
            return Err(crate::Error::BatchFull {
                capacity: self.capacity,
            });
        }
        for part in transcript {
            self.transcript.update(part);
        }
        self.entries.push(*entry);
        Ok(())
    }

    fn derive_weights(&mut self) {
        let seed: [u8; 32] = self.transcript.clone().finalize().into();
        self.weights.clear();
        let n = self.entries.len();
        let mut i = 0u64;
        while (self.weights.len()) < n {
            let mut h = Sha256::new();
            h.update(seed);
            h.update(i.to_le_bytes());
            let out: [u8; 32] = h.finalize().into();
            let mut lo = [0u8; 16];
            let mut hi = [0u8; 16];
            lo.copy_from_slice(out.get(..16).unwrap_or(&[0; 16]));
            hi.copy_from_slice(out.get(16..).unwrap_or(&[0; 16]));
            for w in [u128::from_le_bytes(lo), u128::from_le_bytes(hi)] {
                if self.weights.len() < n {
                    self.weights.push(w.max(1));
                }
            }
            i += 1;
        }
    }

    /// Checks the weighted sum of entries `lo..hi`; `true` when it is zero.
    fn check(&mut self, lo: usize, hi: usize) -> bool {
        self.sum(lo, hi).is_some_and(|s| s.is_infinity())
    }

    /// The weighted sum of the equations of entries `lo..hi` (the identity when all
    /// hold), or `None` when it cannot be computed: an entry known invalid at push time,
    /// a key table that failed, or an internal arithmetic check that failed (a GLV split
    /// or a Pippenger index); all count as a failed check, never as a term left out.
    fn sum(&mut self, lo: usize, hi: usize) -> Option<Jacobian> {
        #[cfg(test)]
        {
            self.checks += 1;
        }
        let beta = consts().beta;
        // Keys enter with mark 0, so 0 never names a check: when the counter would wrap
        // to it, every mark is reset and counting restarts at 1. (A wrap to 0 once made
        // the first check after it skip every key term, so that `R = sG` passed for any
        // key; `a_keyless_forgery_fails_at_every_check_counter` guards this.)
        self.generation = if let Some(next) = self.generation.checked_add(1) {
            next
        } else {
            self.key_mark.iter_mut().for_each(|m| *m = 0);
            1
        };
        let gen_ = self.generation;
        self.bases.clear();
        let mut gsum = Scalar::ZERO;
        let (Some(entries), Some(weights)) = (self.entries.get(lo..hi), self.weights.get(lo..hi))
        else {
            return None;
        };
        for e in entries {
            if let Some(acc) = self.key_acc.get_mut(e.key) {
                *acc = Scalar::ZERO;
            }
        }
        for (e, &w) in entries.iter().zip(weights) {
            if e.bad {
                return None;
            }
            let a = Scalar::from(w);
            for (p, c) in e.points.iter().zip(&e.coefs).take(e.npoints) {
                match c {
                    None => self.bases.push(Base::half(*p, Half { mag: w, neg: false })),
                    Some(c) => self.bases.push(Base::new(*p, &(a * c))?),
                }
            }
            if let Some(acc) = self.key_acc.get_mut(e.key) {
                *acc += a * e.key_coef;
            }
            gsum += a * e.g;
        }
        let mut comb = Jacobian::INFINITY;
        for e in entries {
            if let (Some(mark), Some(key), Some(acc), Some(table)) = (
                self.key_mark.get_mut(e.key),
                self.keys.get(e.key),
                self.key_acc.get(e.key),
                self.key_tables.get(e.key),
            ) && *mark != gen_
            {
                *mark = gen_;
                match table {
                    Some(t) => {
                        if !t.mul_add_scalar(&mut comb, acc) {
                            return None;
                        }
                    }
                    None => self.bases.push(Base::new(*key, acc)?),
                }
            }
        }
        let result = if self.bases.len() < STRAUS_MAX_BASES {
            let mut scratch = StrausScratch {
                jac: &mut self.s_jac,
                prefix: &mut self.s_prefix,
                tables: &mut self.s_tables,
                wnafs: &mut self.s_wnafs,
            };
            straus(&self.bases, Some(glv_split(&-gsum)?), &mut scratch)
        } else {
            self.pip.clear();
            for b in &self.bases {
                self.pip.push_base(b, &beta);
            }
            self.pip.push_base(&Base::new(consts().g, &-gsum)?, &beta);
            pippenger_affine(&mut self.pip)
        };
        result.map(|r: Jacobian| r.add(&comb))
    }

    /// Finds the invalid entries of `lo..hi`, a range known to hold at least one, whose
    /// weighted sum is `sum` (`None`: unknown). `dense`: the range is one of two halves
    /// that both failed.
    ///
    /// Computes the left half's sum; the right half's is the range's sum minus the left's,
    /// one point addition instead of a multiplication. A half whose sum is the identity
    /// holds no invalid entry. When both halves fail, the search goes on in each; when
    /// both halves of a `dense` range fail too (about four or more invalid entries in it),
    /// each half is checked entry by entry, which then costs less than splitting further
    /// (see the module docs).
    fn find_invalid(&mut self, lo: usize, hi: usize, sum: Option<Jacobian>, dense: bool) {
        if hi <= lo {
            return;
        }
        if hi - lo == 1 {
            self.invalid.push(lo);
            return;
        }
        let mid = lo + (hi - lo) / 2;
        let left = self.sum(lo, mid);
        let right = match (sum, left) {
            (Some(s), Some(l)) => Some(s.add(&l.neg())),
            _ => self.sum(mid, hi),
        };
        let fails = |s: &Option<Jacobian>| !s.as_ref().is_some_and(Jacobian::is_infinity);
        match (fails(&left), fails(&right)) {
            (false, _) => self.find_invalid(mid, hi, right, false),
            (true, false) => self.find_invalid(lo, mid, left, false),
            (true, true) if dense => {
                self.check_each(lo, mid);
                self.check_each(mid, hi);
            }
            (true, true) => {
                self.find_invalid(lo, mid, left, true);
                self.find_invalid(mid, hi, right, true);
            }
        }
    }

    /// Records every invalid entry of `lo..hi`, a range known to hold at least one, by
    /// checking each entry alone (a range of one is not checked again).
    fn check_each(&mut self, lo: usize, hi: usize) {
        if hi.saturating_sub(lo) == 1 {
            self.invalid.push(lo);
            return;
        }
        for i in lo..hi {
            if !self.check_alone(i) {
                self.invalid.push(i);
            }
        }
    }

    /// Checks entry `i` alone. One equation needs no random weight, so it is checked with
    /// weight one, which spares the multiplication of its points by a 128-bit weight.
    fn check_alone(&mut self, i: usize) -> bool {
        let Some(w) = self.weights.get_mut(i) else {
            return false;
        };
        let weight = core::mem::replace(w, 1);
        let valid = self.check(i, i + 1);
        if let Some(w) = self.weights.get_mut(i) {
            *w = weight;
        }
        valid
    }

    /// Verifies every entry; on failure returns the invalid indices.
    pub(crate) fn verify(&mut self) -> Result<(), crate::BatchError> {
        let n = self.entries.len();
        if n == 0 {
            return Ok(());
        }
        self.derive_weights();
        let sum = self.sum(0, n);
        if sum.as_ref().is_some_and(Jacobian::is_infinity) {
            return Ok(());
        }
        self.invalid.clear();
        self.find_invalid(0, n, sum, false);
        Err(crate::BatchError::new(std::mem::take(&mut self.invalid)))
    }
}

/// The methods every batch verifier type shares; the type has two fields, `engine:
/// Engine` and `_marker: PhantomData<..>` (the lifetime of what its pushes borrow).
macro_rules! batch_verifier_common {
    ($name:ident, $items:literal) => {
        impl core::fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("len", &self.engine.len())
                    .field("capacity", &self.engine.capacity())
                    .finish_non_exhaustive()
            }
        }

        impl<'a> $name<'a> {
            #[doc = concat!("A verifier for up to `capacity` ", $items, "; this is the only")]
            /// allocation: about 3 KiB per entry, plus the buckets of the multiplication
            /// that batches of more than 7 entries use (up to 360 KiB). Measured: 9 KiB
            /// for a capacity of 1, 52 KiB for 7, 400 KiB for 64, 3.1 MiB for 1,024.
            ///
            /// # Panics
            ///
            /// Like `Vec::with_capacity`, if the memory for `capacity` entries cannot be
            /// reserved.
            pub fn with_capacity(capacity: usize) -> Self {
                Self {
                    engine: $crate::batch::Engine::with_capacity(capacity),
                    _marker: core::marker::PhantomData,
                }
            }

            #[doc = concat!("Number of queued ", $items, ".")]
            pub fn len(&self) -> usize {
                self.engine.len()
            }

            /// Whether nothing is queued.
            pub fn is_empty(&self) -> bool {
                self.engine.len() == 0
            }

            #[doc = concat!("Most ", $items, " this verifier holds.")]
            pub fn capacity(&self) -> usize {
                self.engine.capacity()
            }

            #[doc = concat!("Verifies every queued entry (", $items, ") with one multiscalar")]
            /// multiplication; allocates nothing. A failure hands the verifier's index
            /// buffer to the error: the next [`Self::clear`] or [`Self::recycle`]
            /// reserves a new one (`capacity` indices), and a second failing `verify`
            /// before that allocates its own.
            ///
            /// # Errors
            ///
            /// [`crate::BatchError`] naming exactly the invalid entries (push order).
            pub fn verify(&mut self) -> Result<(), crate::BatchError> {
                self.engine.verify()
            }

            /// Empties the batch, keeping its memory (after a failed [`Self::verify`],
            /// whose error took the index buffer, it reserves a new one).
            pub fn clear(&mut self) {
                self.engine.clear();
            }

            /// Empties the batch and returns it for borrows of another lifetime, keeping
            /// its memory: a caller that builds its inputs per batch reuses one verifier
            /// instead of allocating one per batch. (The verifier keeps copies of the
            /// points and scalars it needs, not references.)
            pub fn recycle<'b>(mut self) -> $name<'b> {
                self.engine.clear();
                $name {
                    engine: self.engine,
                    _marker: core::marker::PhantomData,
                }
            }
        }
    };
}
pub(crate) use batch_verifier_common;

#[cfg(test)]
mod key_table_tests {
    use super::Engine;
    use crate::point::Affine;

    /// Keys an attacker picks to share the bytes a fixed hash would read (here the first
    /// 8 bytes of x, which the old hash used) still spread over the slots: the probes per
    /// key stay small instead of growing with the key count.
    #[test]
    fn chosen_keys_do_not_pile_up_in_one_slot() {
        let keys = 2048usize;
        let mut engine = Engine::with_capacity(keys);
        let mut added = 0usize;
        let mut counter = 0u64;
        while added < keys {
            counter += 1;
            let mut xb = [0u8; 32];
            xb[..8].copy_from_slice(&[0x5a; 8]);
            xb[24..].copy_from_slice(&counter.to_be_bytes());
            let Some(x) = Affine::fe_from_bytes(&xb) else {
                continue;
            };
            let Some(point) = Affine::lift_x(&x, false) else {
                continue;
            };
            let id = point.to_compressed();
            assert_eq!(engine.intern_key(&point, &id, None), added);
            // Interning again finds the same key.
            assert_eq!(engine.intern_key(&point, &id, None), added);
            added += 1;
        }
        let lookups = 2 * keys as u64;
        // At load 1/2, linear probing needs about 2.5 probes per miss and 1.5 per hit on
        // average; all keys in one chain would need about keys / 2.
        assert!(
            engine.key_probes < 8 * lookups,
            "{} probes in {lookups} lookups",
            engine.key_probes
        );
    }
}
