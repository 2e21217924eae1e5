//! Property tests: the ring against a `VecDeque` model, single and batch operations,
//! across wrap-around.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
#![cfg(not(tally_loom))]

use std::collections::VecDeque;

use proptest::prelude::*;
use tally_core_types::SpscRing;

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

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u32>().prop_map(Op::Push),
        Just(Op::Pop),
        prop::collection::vec(any::<u32>(), 0..20).prop_map(Op::PushSlice),
        prop::collection::vec(any::<u32>(), 0..20).prop_map(Op::PushIter),
        (0usize..20).prop_map(Op::PopSlice),
        (0usize..20).prop_map(Op::PopEach),
        Just(Op::Resplit),
    ]
}

const N: usize = 16;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn ring_matches_vecdeque(ops in prop::collection::vec(op(), 1..200)) {
        let mut ring = SpscRing::<u32, N>::new();
        let mut model: VecDeque<u32> = VecDeque::new();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let (mut p, mut c) = ring.split();
            for op in ops.by_ref() {
                match op {
                    Op::Push(v) => {
                        let r = p.push(v);
                        if model.len() < N {
                            prop_assert_eq!(r, Ok(()));
                            model.push_back(v);
                        } else {
                            prop_assert_eq!(r, Err(v));
                        }
                    }
                    Op::Pop => prop_assert_eq!(c.pop(), model.pop_front()),
                    Op::PushSlice(vs) => {
                        let n = p.push_slice(&vs);
                        prop_assert_eq!(n, vs.len().min(N - model.len()));
                        model.extend(&vs[..n]);
                    }
                    Op::PushIter(vs) => {
                        let mut it = vs.iter().copied();
                        let n = p.push_iter(&mut it);
                        prop_assert_eq!(n, vs.len().min(N - model.len()));
                        model.extend(&vs[..n]);
                        prop_assert_eq!(it.next(), vs.get(n).copied());
                    }
                    Op::PopSlice(k) => {
                        let mut buf = vec![0u32; k];
                        let n = c.pop_slice(&mut buf);
                        prop_assert_eq!(n, k.min(model.len()));
                        let want: Vec<u32> = model.drain(..n).collect();
                        prop_assert_eq!(&buf[..n], &want[..]);
                    }
                    Op::PopEach(k) => {
                        let mut got = Vec::new();
                        let n = c.pop_each(k, |v| got.push(v));
                        prop_assert_eq!(n, k.min(model.len()));
                        let want: Vec<u32> = model.drain(..n).collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::Resplit => break,
                }
                prop_assert_eq!(c.len(), model.len());
                prop_assert_eq!(p.len(), model.len());
                prop_assert_eq!(c.is_empty(), model.is_empty());
            }
        }
        prop_assert_eq!(ring.len(), model.len());
    }
}
