//! Property tests: the ring against a `VecDeque` model, single and batch operations,
//! across wrap-around, for groups of several slots that divide `N` unevenly and for
//! one-slot groups. The model also tracks when the consumer hands slots back to the
//! producer (the end of a group, an empty pop, a batch pop, `release`, a dropped
//! consumer), so the producer's "full" is checked exactly.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
#![cfg(not(tally_loom))]

use std::collections::VecDeque;
use std::fmt::Debug;

use proptest::prelude::*;
use tally_core_types::SpscRing;

mod common;
use common::{Byte, Triple, Unit};

#[derive(Debug, Clone)]
enum Op {
    Push(u32),
    Pop,
    PushSlice(Vec<u32>),
    PushIter(Vec<u32>),
    PopSlice(usize),
    PopEach(usize),
    Release,
    Resplit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u32>().prop_map(Op::Push),
        4 => Just(Op::Pop),
        1 => prop::collection::vec(any::<u32>(), 0..20).prop_map(Op::PushSlice),
        1 => prop::collection::vec(any::<u32>(), 0..20).prop_map(Op::PushIter),
        1 => (0usize..20).prop_map(Op::PopSlice),
        1 => (0usize..20).prop_map(Op::PopEach),
        1 => Just(Op::Release),
        1 => Just(Op::Resplit),
    ]
}

/// Batches up to `max` items, several groups long, mostly slices: the whole-group loops
/// of `push_slice` and `pop_slice`, entered mid-group and at group starts, running into
/// the shorter last group and across the wrap to the first, for a ring refilled often
/// enough to be near full.
fn long_op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<u32>().prop_map(Op::Push),
        2 => Just(Op::Pop),
        4 => prop::collection::vec(any::<u32>(), 0..max).prop_map(Op::PushSlice),
        1 => prop::collection::vec(any::<u32>(), 0..max).prop_map(Op::PushIter),
        4 => (0usize..max).prop_map(Op::PopSlice),
        1 => (0usize..max).prop_map(Op::PopEach),
        1 => Just(Op::Release),
        1 => Just(Op::Resplit),
    ]
}

/// A 40-byte item: one slot per group.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Wide([u32; 10]);

impl From<u32> for Wide {
    fn from(v: u32) -> Self {
        Self([v; 10])
    }
}

/// The model: the items, the consumer's position, and the position it last released.
struct Model<T> {
    items: VecDeque<T>,
    head: usize,
    released: usize,
}

impl<T: Copy> Model<T> {
    fn occupied(&self) -> usize {
        self.items.len() + (self.head - self.released)
    }
    fn take(&mut self, n: usize) -> Vec<T> {
        self.head += n;
        self.items.drain(..n).collect()
    }
}

fn check<T, const N: usize>(ops: Vec<Op>) -> Result<(), TestCaseError>
where
    T: From<u32> + Copy + PartialEq + Debug + Default,
{
    let group = SpscRing::<T, N>::SLOTS_PER_GROUP;
    let mut ring = SpscRing::<T, N>::new();
    let mut model = Model {
        items: VecDeque::new(),
        head: 0,
        released: 0,
    };
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let (mut p, mut c) = ring.split();
        for op in ops.by_ref() {
            match op {
                Op::Push(v) => {
                    let r = p.push(T::from(v));
                    if model.occupied() < N {
                        prop_assert_eq!(r, Ok(()));
                        model.items.push_back(T::from(v));
                    } else {
                        prop_assert_eq!(r, Err(T::from(v)));
                    }
                }
                Op::Pop => {
                    let got = c.pop();
                    prop_assert_eq!(got, model.items.front().copied());
                    if got.is_some() {
                        model.take(1);
                        // Finished a group: groups start at multiples of `group` within
                        // the lap (the last one may be shorter).
                        if (model.head % N).is_multiple_of(group) {
                            model.released = model.head;
                        }
                    } else {
                        model.released = model.head;
                    }
                }
                Op::PushSlice(vs) => {
                    let vs: Vec<T> = vs.into_iter().map(T::from).collect();
                    let n = p.push_slice(&vs);
                    prop_assert_eq!(n, vs.len().min(N - model.occupied()));
                    model.items.extend(&vs[..n]);
                }
                Op::PushIter(vs) => {
                    let vs: Vec<T> = vs.into_iter().map(T::from).collect();
                    let mut it = vs.iter().copied();
                    let n = p.push_iter(&mut it);
                    prop_assert_eq!(n, vs.len().min(N - model.occupied()));
                    model.items.extend(&vs[..n]);
                    prop_assert_eq!(it.next(), vs.get(n).copied());
                }
                Op::PopSlice(k) => {
                    let mut buf = vec![T::default(); k];
                    let n = c.pop_slice(&mut buf);
                    prop_assert_eq!(n, k.min(model.items.len()));
                    let want = model.take(n);
                    model.released = model.head;
                    prop_assert_eq!(&buf[..n], &want[..]);
                }
                Op::PopEach(k) => {
                    let mut got = Vec::new();
                    let n = c.pop_each(k, |v| got.push(v));
                    prop_assert_eq!(n, k.min(model.items.len()));
                    let want = model.take(n);
                    model.released = model.head;
                    prop_assert_eq!(got, want);
                }
                Op::Release => {
                    c.release();
                    model.released = model.head;
                }
                Op::Resplit => break,
            }
            prop_assert_eq!(c.len(), model.items.len());
            prop_assert_eq!(p.len(), model.occupied());
            prop_assert_eq!(c.is_empty(), model.items.is_empty());
        }
        // Dropping the consumer releases.
        model.released = model.head;
    }
    prop_assert_eq!(ring.len(), model.items.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// `u32` in 16 slots: groups of 14 and 2.
    #[test]
    fn ring_matches_vecdeque(ops in prop::collection::vec(op(), 1..300)) {
        prop_assert_eq!(SpscRing::<u32, 16>::SLOTS_PER_GROUP, 14);
        check::<u32, 16>(ops)?;
    }

    /// `u64` in 32 slots: groups of 7, 7, 7, 7 and 4.
    #[test]
    fn ring_matches_vecdeque_u64(ops in prop::collection::vec(op(), 1..300)) {
        prop_assert_eq!(SpscRing::<u64, 32>::SLOTS_PER_GROUP, 7);
        check::<u64, 32>(ops)?;
    }

    /// 40-byte items in 8 slots: one slot per group, so every pop releases.
    #[test]
    fn ring_matches_vecdeque_wide(ops in prop::collection::vec(op(), 1..300)) {
        prop_assert_eq!(SpscRing::<Wide, 8>::SLOTS_PER_GROUP, 1);
        check::<Wide, 8>(ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Long batches of `u64` in 32 slots (groups 7, 7, 7, 7, 4) and in 64 slots (nine
    /// groups of 7 and one of 1).
    #[test]
    fn long_batches_u64(ops in prop::collection::vec(long_op(80), 1..120)) {
        prop_assert_eq!(SpscRing::<u64, 64>::SLOTS_PER_GROUP, 7);
        check::<u64, 32>(ops.clone())?;
        check::<u64, 64>(ops)?;
    }

    /// Long batches of `u32` in 64 slots: groups of 14, 14, 14, 14 and 8.
    #[test]
    fn long_batches_u32(ops in prop::collection::vec(long_op(80), 1..120)) {
        prop_assert_eq!(SpscRing::<u32, 64>::SLOTS_PER_GROUP, 14);
        check::<u32, 64>(ops)?;
    }

    /// Long batches of 24-byte items (groups of two) and of one-slot groups.
    #[test]
    fn long_batches_wide(ops in prop::collection::vec(long_op(40), 1..120)) {
        prop_assert_eq!(SpscRing::<Triple, 16>::SLOTS_PER_GROUP, 2);
        check::<Triple, 16>(ops.clone())?;
        check::<Wide, 16>(ops)?;
    }

    /// Zero-sized items: two groups of 64, and one group smaller than a line's 64.
    #[test]
    fn long_batches_zero_sized(ops in prop::collection::vec(long_op(300), 1..120)) {
        prop_assert_eq!(SpscRing::<Unit, 128>::SLOTS_PER_GROUP, 64);
        prop_assert_eq!(SpscRing::<Unit, 32>::SLOTS_PER_GROUP, 32);
        check::<Unit, 128>(ops.clone())?;
        check::<Unit, 32>(ops)?;
    }

    /// Bytes, 56 to a group: parts of a group are copied in pieces of up to 32 values,
    /// each piece size in use (the largest groups of values with data).
    #[test]
    fn long_batches_bytes(ops in prop::collection::vec(long_op(200), 1..120)) {
        prop_assert_eq!(SpscRing::<Byte, 256>::SLOTS_PER_GROUP, 56);
        check::<Byte, 256>(ops)?;
    }

    /// `N` below a group: `u8` in 8 slots, one group of 8.
    #[test]
    fn long_batches_one_small_group(ops in prop::collection::vec(long_op(20), 1..120)) {
        prop_assert_eq!(SpscRing::<Byte, 8>::SLOTS_PER_GROUP, 8);
        check::<Byte, 8>(ops)?;
    }
}
