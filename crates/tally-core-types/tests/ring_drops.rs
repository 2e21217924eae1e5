//! Every item that enters the ring is dropped exactly once, or leaked only where the docs
//! say so (a consumer passed to `mem::forget`): a property test with items that record
//! their own drops, mixing single and batch operations, iterators and callbacks that
//! panic, `release`, re-splits, forgotten halves, and items whose `Drop` panics while the
//! ring itself is dropped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
#![cfg(not(tally_loom))]

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use proptest::prelude::*;
use tally_core_types::SpscRing;

thread_local! {
    /// Drops seen per id on this thread.
    static DROPS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// The next id to hand out.
    static NEXT: RefCell<usize> = const { RefCell::new(0) };
}

/// An item that counts its drops; `bomb` makes its `Drop` panic (once, not while
/// already unwinding).
#[derive(Debug)]
struct Tracked {
    id: usize,
    bomb: bool,
}

impl Tracked {
    fn new() -> Self {
        let id = NEXT.with(|n| {
            let mut n = n.borrow_mut();
            *n += 1;
            *n - 1
        });
        DROPS.with(|d| d.borrow_mut().push(0));
        Self { id, bomb: false }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPS.with(|d| d.borrow_mut()[self.id] += 1);
        assert!(
            !self.bomb || std::thread::panicking(),
            "Tracked {} panics in drop",
            self.id
        );
    }
}

fn reset() {
    DROPS.with(|d| d.borrow_mut().clear());
    NEXT.with(|n| *n.borrow_mut() = 0);
}

/// Ids dropped more than once, and the set of ids dropped exactly once.
fn drops() -> (Vec<usize>, BTreeSet<usize>) {
    DROPS.with(|d| {
        let d = d.borrow();
        let twice = (0..d.len()).filter(|&i| d[i] > 1).collect();
        let once = (0..d.len()).filter(|&i| d[i] == 1).collect();
        (twice, once)
    })
}

fn created() -> usize {
    NEXT.with(|n| *n.borrow())
}

/// Silences the panics this file causes on purpose; any other panic (a failed check)
/// still prints.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            let expected = ["iterator panics", "callback panics", "panics in drop"];
            if !expected.iter().any(|e| msg.contains(e)) {
                default(info);
            }
        }));
    });
}

#[derive(Debug, Clone)]
enum Op {
    Push,
    Pop,
    /// Pops up to `.0` items into a slice of fresh items, the one at `.1` (if given)
    /// panicking when it is dropped to make room.
    PopSlice(usize, Option<usize>),
    /// Pushes up to `.0` items from an iterator that panics instead of yielding item
    /// number `.1` (if given).
    PushIter(usize, Option<usize>),
    /// Pops up to `.0` items into a callback that panics on item number `.1` (if given).
    PopEach(usize, Option<usize>),
    Release,
    Resplit,
    ForgetConsumer,
    ForgetProducer,
    /// Forgets both halves: `split` must recover the producer's position from the stamps
    /// before it leaks what the consumer may have taken.
    ForgetBoth,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Push),
        3 => Just(Op::Pop),
        2 => (0usize..12, prop::option::of(0usize..12)).prop_map(|(k, b)| Op::PopSlice(k, b)),
        2 => (0usize..24, prop::option::of(0usize..12)).prop_map(|(k, p)| Op::PushIter(k, p)),
        2 => (0usize..24, prop::option::of(0usize..12)).prop_map(|(k, p)| Op::PopEach(k, p)),
        1 => Just(Op::Release),
        1 => Just(Op::Resplit),
        1 => Just(Op::ForgetConsumer),
        1 => Just(Op::ForgetProducer),
        1 => Just(Op::ForgetBoth),
    ]
}

/// Runs `ops` and checks FIFO order against a model, then drops the ring (with the
/// item at `bomb` of those left inside panicking in its `Drop`, if any) and checks that
/// every item was dropped exactly once except those a forgotten consumer leaked.
#[allow(clippy::too_many_lines, reason = "one match arm per operation")]
fn check<const N: usize>(ops: &[Op], bomb: Option<usize>) -> Result<(), TestCaseError> {
    reset();
    let mut leaked = BTreeSet::new();
    let mut model: VecDeque<usize> = VecDeque::new();
    let mut ring = SpscRing::<Tracked, N>::new();
    let mut ops = ops.iter().peekable();
    // Whether the last consumer was forgotten (then the ring's `len` also counts the items
    // it took without releasing them).
    let mut consumer_forgotten = false;
    while ops.peek().is_some() {
        if !consumer_forgotten {
            // Exact with no halves out, also after a forgotten producer whose last single
            // pushes stopped in the middle of a group.
            prop_assert_eq!(ring.len(), model.len());
        }
        consumer_forgotten = false;
        let (mut p, mut c) = ring.split();
        prop_assert_eq!(c.len(), model.len());
        for op in ops.by_ref() {
            match op {
                Op::Push => {
                    let item = Tracked::new();
                    let id = item.id;
                    if p.push(item).is_ok() {
                        model.push_back(id);
                    }
                }
                Op::Pop => {
                    // `None` only when the model is empty too: nothing pushed is hidden.
                    let got = c.pop().map(|t| t.id);
                    prop_assert_eq!(got, model.pop_front());
                }
                Op::PopSlice(k, bomb) => {
                    let mut dst: Vec<Tracked> = (0..*k).map(|_| Tracked::new()).collect();
                    let fresh: BTreeSet<usize> = dst.iter().map(|t| t.id).collect();
                    if let Some(t) = bomb.and_then(|b| dst.get_mut(b)) {
                        t.bomb = true;
                    }
                    let r = catch_unwind(AssertUnwindSafe(|| c.pop_slice(&mut dst)));
                    // The popped items are at the front of `dst`, in order (the one whose
                    // drop panicked was still replaced).
                    let popped: Vec<usize> = dst
                        .iter()
                        .map(|t| t.id)
                        .filter(|id| !fresh.contains(id))
                        .collect();
                    if let Ok(n) = r {
                        prop_assert_eq!(n, popped.len());
                    }
                    for id in popped {
                        prop_assert_eq!(Some(id), model.pop_front());
                    }
                    for t in &mut dst {
                        t.bomb = false;
                    }
                }
                Op::PushIter(k, panic_at) => {
                    let mut yielded = Vec::new();
                    let mut left = *k;
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        p.push_iter(&mut std::iter::from_fn(|| {
                            if left == 0 {
                                return None;
                            }
                            left -= 1;
                            assert!(Some(yielded.len()) != *panic_at, "iterator panics");
                            let t = Tracked::new();
                            yielded.push(t.id);
                            Some(t)
                        }))
                    }));
                    if let Ok(n) = r {
                        prop_assert_eq!(n, yielded.len());
                    }
                    // Every value the iterator yielded went into the ring.
                    model.extend(yielded);
                }
                Op::PopEach(k, panic_at) => {
                    let mut got = Vec::new();
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        c.pop_each(*k, |t| {
                            got.push(t.id);
                            assert!(Some(got.len() - 1) != *panic_at, "callback panics");
                        })
                    }));
                    if let Ok(n) = r {
                        prop_assert_eq!(n, got.len());
                    }
                    for id in got {
                        prop_assert_eq!(Some(id), model.pop_front());
                    }
                }
                Op::Release => c.release(),
                Op::Resplit => break,
                Op::ForgetConsumer => {
                    core::mem::forget(c);
                    // The docs: the items left inside leak, the next split starts empty.
                    leaked.extend(model.drain(..));
                    consumer_forgotten = true;
                    break;
                }
                Op::ForgetProducer => {
                    core::mem::forget(p);
                    break;
                }
                Op::ForgetBoth => {
                    core::mem::forget(p);
                    core::mem::forget(c);
                    leaked.extend(model.drain(..));
                    consumer_forgotten = true;
                    break;
                }
            }
            // Exact on one thread, whichever way the producer last published.
            prop_assert_eq!(c.len(), model.len());
        }
    }
    if !consumer_forgotten {
        prop_assert_eq!(ring.len(), model.len());
    }
    // Arm the bomb in one of the items left inside, by popping them all and pushing
    // them back in order.
    if let Some(b) = bomb.filter(|_| !model.is_empty()) {
        let (mut p, mut c) = ring.split();
        let mut items = Vec::new();
        while let Some(t) = c.pop() {
            items.push(t);
        }
        let armed = b % items.len();
        items[armed].bomb = true;
        for t in items {
            assert!(p.push(t).is_ok());
        }
    }
    let armed = bomb.is_some() && !model.is_empty();
    let r = catch_unwind(AssertUnwindSafe(move || drop(ring)));
    prop_assert_eq!(
        r.is_err(),
        armed,
        "the armed item's panic comes out of the drop"
    );
    let (twice, once) = drops();
    prop_assert!(twice.is_empty(), "dropped twice: {twice:?}");
    let expected: BTreeSet<usize> = (0..created()).filter(|i| !leaked.contains(i)).collect();
    let lost: Vec<_> = expected.difference(&once).collect();
    prop_assert!(lost.is_empty(), "never dropped: {lost:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `Tracked` is 16 bytes: groups of 3 in 8 slots (3, 3, 2).
    #[test]
    fn every_item_dropped_once(ops in prop::collection::vec(op(), 1..120), bomb in prop::option::of(0usize..64)) {
        quiet_panics();
        prop_assert_eq!(SpscRing::<Tracked, 8>::SLOTS_PER_GROUP, 3);
        check::<8>(&ops, bomb)?;
    }

    /// One group for the whole ring (4 slots of 16 bytes).
    #[test]
    fn every_item_dropped_once_one_group(ops in prop::collection::vec(op(), 1..120), bomb in prop::option::of(0usize..64)) {
        quiet_panics();
        prop_assert_eq!(SpscRing::<Tracked, 4>::SLOTS_PER_GROUP, 3);
        check::<4>(&ops, bomb)?;
    }
}

/// A zero-sized item with a `Drop`: each one left inside is dropped once.
#[test]
fn zero_sized_items_left_inside_are_dropped() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Unit;
    impl Drop for Unit {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut ring = SpscRing::<Unit, 128>::new();
    {
        let (mut p, mut c) = ring.split();
        for _ in 0..100 {
            assert!(p.push(Unit).is_ok());
        }
        assert_eq!(c.pop_each(30, drop), 30);
    }
    assert_eq!(DROPPED.load(Ordering::Relaxed), 30);
    drop(ring);
    assert_eq!(DROPPED.load(Ordering::Relaxed), 100);
}

/// Items aligned beyond a cache line, zero-sized and not: they come out in order, and
/// those left inside are dropped once.
#[test]
fn over_aligned_items() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    #[repr(align(4096))]
    struct Page(u64);
    impl Drop for Page {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    #[repr(align(4096))]
    struct AlignedUnit;
    assert_eq!(SpscRing::<Page, 8>::SLOTS_PER_GROUP, 1);
    let mut ring = SpscRing::<Page, 8>::new();
    {
        let (mut p, mut c) = ring.split();
        for i in 0..20u64 {
            assert!(p.push(Page(i)).is_ok());
            let v = c.pop().unwrap();
            assert_eq!(v.0, i);
        }
        for i in 0..5u64 {
            assert!(p.push(Page(i)).is_ok());
        }
    }
    drop(ring);
    assert_eq!(DROPPED.load(Ordering::Relaxed), 25);
    let mut units = SpscRing::<AlignedUnit, 128>::new();
    let (mut p, mut c) = units.split();
    for _ in 0..3 {
        for _ in 0..128 {
            assert!(p.push(AlignedUnit).is_ok());
        }
        assert!(p.push(AlignedUnit).is_err());
        assert_eq!(c.pop_each(usize::MAX, drop), 128);
    }
}

/// Zero-sized items with a `Drop` (groups of 64) pushed one at a time past a group into
/// the middle of the next, so the published `tail` lags by 36: after the producer is
/// forgotten, the consumer's batch pop, the ring's `len`, a `split` and the ring's
/// `Drop` all find the 36 by the stamp, and each item is dropped once.
#[test]
fn zero_sized_items_after_a_forgotten_producer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Unit;
    impl Drop for Unit {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    assert_eq!(SpscRing::<Unit, 128>::SLOTS_PER_GROUP, 64);
    let mut ring = SpscRing::<Unit, 128>::new();
    {
        let (mut p, mut c) = ring.split();
        for _ in 0..100 {
            assert!(p.push(Unit).is_ok());
        }
        core::mem::forget(p);
        assert_eq!(c.len(), 100);
        assert_eq!(c.pop_each(30, drop), 30);
    }
    assert_eq!(DROPPED.load(Ordering::Relaxed), 30);
    assert_eq!(ring.len(), 70);
    {
        let (mut p, mut c) = ring.split();
        assert_eq!(c.len(), 70);
        assert_eq!(p.free_slots(), 58);
        assert_eq!(c.pop_each(5, drop), 5);
        for _ in 0..10 {
            assert!(p.push(Unit).is_ok());
        }
        core::mem::forget(p);
    }
    assert_eq!(ring.len(), 75);
    drop(ring);
    assert_eq!(DROPPED.load(Ordering::Relaxed), 110);
}
