//! Property tests: [`BatchRing`] against a `VecDeque` model, single and batch operations,
//! across wrap-around and re-splits, for
//! `u32`, 24-byte, one-byte and zero-sized items.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
#![cfg(not(tally_loom))]

use std::collections::VecDeque;
use std::fmt::Debug;

use proptest::prelude::*;
use tally_core_types::BatchRing;

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
    Resplit,
}

/// Mostly batches of up to `max` items, so that runs cross the wrap often.
fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<u32>().prop_map(Op::Push),
        2 => Just(Op::Pop),
        4 => prop::collection::vec(any::<u32>(), 0..max).prop_map(Op::PushSlice),
        1 => prop::collection::vec(any::<u32>(), 0..max).prop_map(Op::PushIter),
        4 => (0usize..max).prop_map(Op::PopSlice),
        1 => (0usize..max).prop_map(Op::PopEach),
        1 => Just(Op::Resplit),
    ]
}

fn check<T, const N: usize>(ops: Vec<Op>) -> Result<(), TestCaseError>
where
    T: From<u32> + Copy + PartialEq + Debug + Default,
{
    let mut ring = BatchRing::<T, N>::new();
    let mut model = VecDeque::<T>::new();
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let (mut p, mut c) = ring.split();
        for op in ops.by_ref() {
            match op {
                Op::Push(v) => {
                    let r = p.push(T::from(v));
                    if model.len() < N {
                        prop_assert_eq!(r, Ok(()));
                        model.push_back(T::from(v));
                    } else {
                        prop_assert_eq!(r, Err(T::from(v)));
                    }
                }
                Op::Pop => prop_assert_eq!(c.pop(), model.pop_front()),
                Op::PushSlice(vs) => {
                    let vs: Vec<T> = vs.into_iter().map(T::from).collect();
                    let n = p.push_slice(&vs);
                    prop_assert_eq!(n, vs.len().min(N - model.len()));
                    model.extend(&vs[..n]);
                }
                Op::PushIter(vs) => {
                    let vs: Vec<T> = vs.into_iter().map(T::from).collect();
                    let mut it = vs.iter().copied();
                    let n = p.push_iter(&mut it);
                    prop_assert_eq!(n, vs.len().min(N - model.len()));
                    model.extend(&vs[..n]);
                    prop_assert_eq!(it.next(), vs.get(n).copied());
                }
                Op::PopSlice(k) => {
                    let mut buf = vec![T::default(); k];
                    let n = c.pop_slice(&mut buf);
                    prop_assert_eq!(n, k.min(model.len()));
                    let want: Vec<T> = model.drain(..n).collect();
                    prop_assert_eq!(&buf[..n], &want[..]);
                }
                Op::PopEach(k) => {
                    let mut got = Vec::new();
                    let n = c.pop_each(k, |v| got.push(v));
                    prop_assert_eq!(n, k.min(model.len()));
                    let want: Vec<T> = model.drain(..n).collect();
                    prop_assert_eq!(got, want);
                }
                Op::Resplit => break,
            }
            prop_assert_eq!(c.len(), model.len());
            prop_assert_eq!(p.len(), model.len());
            prop_assert_eq!(p.free_slots(), N - model.len());
            prop_assert_eq!(c.available(), model.len());
            prop_assert_eq!(c.is_empty(), model.is_empty());
        }
    }
    prop_assert_eq!(ring.len(), model.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batch_ring_matches_vecdeque_u32(ops in prop::collection::vec(op(40), 1..200)) {
        check::<u32, 32>(ops)?;
    }

    #[test]
    fn batch_ring_matches_vecdeque_wide(ops in prop::collection::vec(op(12), 1..200)) {
        check::<Triple, 8>(ops)?;
    }

    #[test]
    fn batch_ring_matches_vecdeque_bytes(ops in prop::collection::vec(op(300), 1..120)) {
        check::<Byte, 256>(ops)?;
    }

    #[test]
    fn batch_ring_matches_vecdeque_zero_sized(ops in prop::collection::vec(op(40), 1..120)) {
        check::<Unit, 16>(ops)?;
    }

    #[test]
    fn batch_ring_of_one_slot(ops in prop::collection::vec(op(3), 1..120)) {
        check::<u32, 1>(ops)?;
    }
}
