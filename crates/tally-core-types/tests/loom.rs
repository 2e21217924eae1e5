//! Loom model checks of the ring's memory ordering and of the single-writer counters. Run
//! with
//! `RUSTFLAGS="--cfg tally_loom" cargo test -p tally-core-types --release --test loom`.
#![cfg(tally_loom)]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use loom::thread;
use tally_core_types::{
    BatchConsumer, BatchProducer, BatchRing, Consumer, Counter, Producer, SpscRing,
};

/// A 2-slot ring leaked for the model's threads (so that 3 items must wrap).
fn ring<T: Send + 'static>() -> &'static mut SpscRing<T, 2> {
    Box::leak(Box::new(SpscRing::new()))
}

/// Pushes every item one at a time, yielding while the ring is full.
fn push_each<T, const N: usize>(p: &mut Producer<'_, T, N>, items: impl IntoIterator<Item = T>) {
    for mut v in items {
        loop {
            match p.push(v) {
                Ok(()) => break,
                Err(back) => {
                    v = back;
                    thread::yield_now();
                }
            }
        }
    }
}

/// Pops `n` items one at a time, yielding while the ring is empty.
fn pop_each<T, const N: usize>(c: &mut Consumer<'_, T, N>, n: usize) -> Vec<T> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.pop() {
            Some(v) => got.push(v),
            None => thread::yield_now(),
        }
    }
    got
}

/// Pushes 0, 1, 2 in batches (`push_slice` of up to two when `slice`, else
/// `push_iter`), yielding while the ring is full.
fn push_batches(p: &mut Producer<'_, u32, 2>, slice: bool) {
    let mut sent = 0u32;
    while sent < 3 {
        let n = if slice {
            let items = [sent, sent + 1];
            p.push_slice(&items[..if sent == 2 { 1 } else { 2 }])
        } else {
            p.push_iter(&mut (sent..3))
        };
        sent += u32::try_from(n).unwrap();
        if sent < 3 {
            thread::yield_now();
        }
    }
}

/// Pushes each chunk whole with `push_slice` (several calls while the ring is full,
/// yielding between them), chunk after chunk.
fn push_chunks<const N: usize>(p: &mut Producer<'_, u32, N>, chunks: &[&[u32]]) {
    for chunk in chunks {
        let mut sent = 0;
        while sent < chunk.len() {
            sent += p.push_slice(&chunk[sent..]);
            if sent < chunk.len() {
                thread::yield_now();
            }
        }
    }
}

/// Pops `n` items, with a single pop when `single(items so far)` and a batch pop of up
/// to two otherwise, yielding while the ring is empty; the consumer's view of `len` must
/// never go negative (wrap to a huge value) while the producer is mid-push.
fn pop_mixed(c: &mut Consumer<'_, u32, 2>, n: usize, single: impl Fn(usize) -> bool) -> Vec<u32> {
    let mut got = Vec::new();
    let mut buf = [0u32; 2];
    while got.len() < n {
        assert!(c.len() <= 2, "consumer saw len {}", c.len());
        let k = if single(got.len()) {
            usize::from(c.pop().map(|v| buf[0] = v).is_some())
        } else {
            c.pop_slice(&mut buf)
        };
        got.extend_from_slice(&buf[..k]);
        if k == 0 {
            thread::yield_now();
        }
    }
    got
}

/// Producer pushes 3 values through a 2-slot ring (so it must observe the consumer's
/// progress to wrap); the consumer sees them in order, each exactly once.
#[test]
fn single_push_pop_wraps_in_order() {
    loom::model(|| {
        let (mut p, mut c) = ring::<loom::sync::Arc<u32>>().split();
        let t = thread::spawn(move || push_each(&mut p, (0..3).map(loom::sync::Arc::new)));
        let got: Vec<u32> = pop_each(&mut c, 3).into_iter().map(|v| *v).collect();
        assert_eq!(got, [0, 1, 2]);
        t.join().unwrap();
        assert!(c.pop().is_none());
    });
}

/// How the model's producer pushes 0, 1, 2.
#[derive(Clone, Copy)]
enum Push {
    Single,
    Iter,
    Slice,
}

/// Runs the producer in a loom thread and pops three items on the model's main thread
/// (a single pop when `single(items so far)`, else a batch pop); they arrive in order.
fn model(push: Push, single: fn(usize) -> bool) {
    loom::model(move || {
        let (mut p, mut c) = ring::<u32>().split();
        let t = thread::spawn(move || match push {
            Push::Single => push_each(&mut p, 0..3),
            Push::Iter => push_batches(&mut p, false),
            Push::Slice => push_batches(&mut p, true),
        });
        assert_eq!(pop_mixed(&mut c, 3, single), [0, 1, 2]);
        t.join().unwrap();
        assert!(c.pop().is_none());
    });
}

/// Batch operations publish once per batch; a concurrent consumer never sees a slot
/// before its value is written.
#[test]
fn batch_push_pop() {
    model(Push::Iter, |_| false);
}

/// Single pushes (which stamp each slot, and publish `tail` only when they fill the
/// group) read back by alternating single pops (stamps) and batch pops (`tail` and the
/// stamp of the group past it); the consumer's view of `len` never goes negative while
/// the producer is mid-push.
#[test]
fn single_push_mixed_pop() {
    model(Push::Single, |k| k % 2 == 0);
}

/// Batch pushes (values, then each group's stamp, then `tail`) read back by single pops that
/// may see a stamp before or after the batch's `tail`.
#[test]
fn batch_push_single_pop() {
    model(Push::Slice, |_| true);
}

/// Under loom the cells are larger, but a 2-slot ring of `u32` still forms one group, so
/// the models above also check the group stamp and the consumer's release a group at a
/// time (the producer's third push waits for the consumer to finish the group).
#[test]
fn models_cover_a_shared_group() {
    assert_eq!(SpscRing::<u32, 2>::SLOTS_PER_GROUP, 2);
    assert_eq!(SpscRing::<loom::sync::Arc<u32>, 2>::SLOTS_PER_GROUP, 2);
}

/// A 4-slot ring of `u32` forms two groups of uneven size under loom (3 and 1 slots).
/// Started at position 3 (set up before the model's threads), three items cross the short
/// group and wrap into the first one, whose stamps are a lap old: the consumer must take
/// them in order, and the producer must wait for the consumer to release each group.
#[test]
fn uneven_groups_wrap() {
    assert_eq!(SpscRing::<u32, 4>::SLOTS_PER_GROUP, 3);
    loom::model(|| {
        let ring = Box::leak(Box::new(SpscRing::<u32, 4>::new()));
        {
            let (mut p, mut c) = ring.split();
            for v in 0..3 {
                p.push(v).unwrap();
            }
            assert_eq!(c.pop_each(3, drop), 3);
        }
        let (mut p, mut c) = ring.split();
        let t = thread::spawn(move || push_each(&mut p, [10, 11, 12]));
        assert_eq!(pop_each(&mut c, 3), [10, 11, 12]);
        t.join().unwrap();
        assert!(c.pop().is_none());
    });
}

/// Single pushes across groups of uneven size (3 and 1 slots under loom), read by batch
/// pops only. Started at position 3 (set up before the model's threads): the first push
/// fills the short group and publishes `tail` = 4, where the group holds stamps a lap
/// old, so a batch pop that loads that `tail` reads the item at 3 by `tail` alone (the
/// stamp it reads tells nothing); the next two stop mid-group, where only the stamp has
/// them. Every item must arrive, in order, each value written before it is read (it
/// fails, for one, if a push stores `tail` with `Relaxed`). The one-group models above
/// never read a stamp of another group than the one `tail` is in. Bounded to two
/// preemptions to keep the run short (the `Relaxed` store fails within it).
#[test]
fn single_pushes_batch_pops_across_groups() {
    assert_eq!(SpscRing::<u32, 4>::SLOTS_PER_GROUP, 3);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let ring = Box::leak(Box::new(SpscRing::<u32, 4>::new()));
        {
            let (mut p, mut c) = ring.split();
            push_each(&mut p, 0..3);
            assert_eq!(c.pop_each(3, drop), 3);
        }
        let (mut p, mut c) = ring.split();
        let t = thread::spawn(move || push_each(&mut p, 10..13));
        let mut got = Vec::new();
        let mut buf = [0u32; 3];
        while got.len() < 3 {
            let k = c.pop_slice(&mut buf);
            got.extend_from_slice(&buf[..k]);
            if k == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, [10, 11, 12]);
        t.join().unwrap();
        assert!(c.pop().is_none());
    });
}

/// The whole-group loops of `push_slice` and `pop_slice`. A 4-slot ring of `u32`
/// (groups of 3 and 1 under loom) is started at position 4 (set up before the model's
/// threads), so the first group holds stamps a lap old; the producer then pushes a
/// slice of 3, which fills that group whole, and a slice of 1, while the consumer takes
/// the first item by a single pop (polling the stamp the whole-group loop stores) and
/// the rest by batch pops of up to 3.
#[test]
fn whole_group_slices_after_a_lap() {
    assert_eq!(SpscRing::<u32, 4>::SLOTS_PER_GROUP, 3);
    loom::model(|| {
        let ring = Box::leak(Box::new(SpscRing::<u32, 4>::new()));
        {
            let (mut p, mut c) = ring.split();
            assert_eq!(p.push_slice(&[0, 1, 2, 3]), 4);
            assert_eq!(c.pop_slice(&mut [0; 4]), 4);
        }
        let (mut p, mut c) = ring.split();
        let t = thread::spawn(move || {
            push_chunks(&mut p, &[&[10u32, 11, 12][..], &[13]]);
        });
        let mut got = Vec::new();
        let mut buf = [0u32; 3];
        while got.len() < 4 {
            let k = if got.is_empty() {
                usize::from(c.pop().map(|v| buf[0] = v).is_some())
            } else {
                c.pop_slice(&mut buf)
            };
            got.extend_from_slice(&buf[..k]);
            if k == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, [10, 11, 12, 13]);
        t.join().unwrap();
        assert!(c.pop().is_none());
    });
}

/// The wrap after [`whole_group_slices_after_a_lap`]: the producer pushes 0..7 in
/// slices of 3, 1 and 3 into the same ring from position 0, so the last slice fills the
/// first group whole again only once the consumer has released it. The consumer takes
/// batch pops of up to 3 (the first empties the first group whole) but a single pop at
/// 4, which polls the stamp of the group the last slice fills. Bounded to three
/// preemptions to keep the run short (both an early stamp in the push loop and an early
/// `head` in the pop loop fail within it).
#[test]
fn whole_group_slices_wrap() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let ring = Box::leak(Box::new(SpscRing::<u32, 4>::new()));
        let (mut p, mut c) = ring.split();
        let t = thread::spawn(move || {
            push_chunks(&mut p, &[&[0u32, 1, 2][..], &[3], &[4, 5, 6]]);
        });
        let mut got = Vec::new();
        let mut buf = [0u32; 3];
        while got.len() < 7 {
            let k = if got.len() == 4 {
                usize::from(c.pop().map(|v| buf[0] = v).is_some())
            } else {
                c.pop_slice(&mut buf)
            };
            got.extend_from_slice(&buf[..k]);
            if k == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, [0, 1, 2, 3, 4, 5, 6]);
        t.join().unwrap();
        assert!(c.pop().is_none());
    });
}

/// Items too wide to share a line: each group is one stamp and one slot (the layout
/// for values over 28 bytes), so every single pop publishes `head`. Single pushes, then
/// single and batch pops in turn.
#[test]
fn one_slot_groups() {
    assert_eq!(SpscRing::<[u64; 8], 2>::SLOTS_PER_GROUP, 1);
    loom::model(|| {
        let ring = Box::leak(Box::new(SpscRing::<[u64; 8], 2>::new()));
        let (mut p, mut c) = ring.split();
        let t = thread::spawn(move || push_each(&mut p, (0..3).map(|v| [v; 8])));
        let mut got = Vec::new();
        while got.len() < 3 {
            let k = if got.len() % 2 == 0 {
                c.pop().map(|v| got.push(v)).is_some()
            } else {
                c.pop_each(2, |v| got.push(v)) > 0
            };
            if !k {
                thread::yield_now();
            }
        }
        assert_eq!(got, [[0; 8], [1; 8], [2; 8]]);
        t.join().unwrap();
        assert!(c.pop().is_none());
    });
}

/// A [`Counter`] bumped by its owner with a relaxed load and store while another thread
/// reads it: every read is a value the owner stored (0, 1, 3 or 4 here: `add(2)` is one
/// store), a later read never goes back, and after the join every increment is seen.
/// The owner runs on the model's main thread: with the reader there instead, loom ran a
/// single interleaving.
#[test]
fn counter_reads_are_stored_values_in_order() {
    loom::model(|| {
        let c = loom::sync::Arc::new(Counter::new());
        let reader = loom::sync::Arc::clone(&c);
        let t = thread::spawn(move || (reader.get(), reader.get()));
        c.incr();
        c.add(2);
        c.incr();
        let (first, second) = t.join().unwrap();
        assert!([0, 1, 3, 4].contains(&first), "read {first}");
        assert!([0, 1, 3, 4].contains(&second), "read {second}");
        assert!(second >= first, "went back from {first} to {second}");
        assert_eq!(c.get(), 4);
    });
}

tally_core_types::single_writer_stats! {
    /// Stats declared with the macro under loom (where `new` is not `const`).
    struct LoomStats => LoomSnapshot {
        /// A counter.
        hits,
    }
}

/// The macro's loom variant builds and counts.
#[test]
fn stats_macro_under_loom() {
    loom::model(|| {
        let s = LoomStats::new();
        s.hits.add(2);
        assert_eq!(s.snapshot().hits, 2);
    });
}

/// How the producer of a [`BatchRing`] model pushes 0, 1, 2: one at a time, in slices
/// of up to two, or from an iterator.
fn batch_push(p: &mut BatchProducer<'_, u32, 2>, push: Push) {
    let mut sent = 0u32;
    while sent < 3 {
        let n = match push {
            Push::Single => usize::from(p.push(sent).is_ok()),
            Push::Slice => {
                let items = [sent, sent + 1];
                p.push_slice(&items[..if sent == 2 { 1 } else { 2 }])
            }
            Push::Iter => p.push_iter(&mut (sent..3)),
        };
        sent += u32::try_from(n).unwrap();
        if sent < 3 {
            thread::yield_now();
        }
    }
}

/// Pops three items from a [`BatchRing`]: single pops when `single(items so far)`, else
/// slices of up to two (or `pop_each` when `each`).
fn batch_pop(c: &mut BatchConsumer<'_, u32, 2>, single: fn(usize) -> bool, each: bool) -> Vec<u32> {
    let mut got = Vec::new();
    let mut buf = [0u32; 2];
    while got.len() < 3 {
        let n = if single(got.len()) {
            c.pop().map(|v| got.push(v)).map_or(0, |()| 1)
        } else if each {
            c.pop_each(2, |v| got.push(v))
        } else {
            let n = c.pop_slice(&mut buf);
            got.extend_from_slice(&buf[..n]);
            n
        };
        if n == 0 {
            thread::yield_now();
        }
    }
    got
}

/// Runs a 2-slot [`BatchRing`] model (3 items must wrap): a producer thread pushes 0,
/// 1, 2 in the `push` style while the main thread pops them in the given style. The
/// consumer never reads a slot before its value is written, nor does the producer
/// overwrite one before it is read. Bounded to three preemptions.
fn batch_model(push: Push, single: fn(usize) -> bool, each: bool) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let ring = Box::leak(Box::new(BatchRing::<u32, 2>::new()));
        let (mut p, mut c) = ring.split();
        let t = thread::spawn(move || batch_push(&mut p, push));
        assert_eq!(batch_pop(&mut c, single, each), [0, 1, 2]);
        t.join().unwrap();
        assert!(c.pop().is_none());
    });
}

#[test]
fn batch_ring_single_push_single_pop() {
    batch_model(Push::Single, |_| true, false);
}

#[test]
fn batch_ring_slice_push_slice_pop() {
    batch_model(Push::Slice, |_| false, false);
}

#[test]
fn batch_ring_iter_push_each_pop() {
    batch_model(Push::Iter, |_| false, true);
}

#[test]
fn batch_ring_slice_push_mixed_pop() {
    batch_model(Push::Slice, |n| n % 2 == 0, false);
}

#[test]
fn batch_ring_single_push_slice_pop() {
    batch_model(Push::Single, |_| false, false);
}

/// Items with drop glue: the ring's `Drop` drops what is left after a producer thread
/// pushed and the consumer took some, exactly once.
#[test]
fn batch_ring_drops_what_is_left() {
    loom::model(|| {
        let item = loom::sync::Arc::new(());
        let raw = Box::into_raw(Box::new(BatchRing::<loom::sync::Arc<()>, 2>::new()));
        {
            // SAFETY: `raw` is a live box, and this borrow ends (both halves are gone)
            // before `Box::from_raw` below takes it back.
            let ring = unsafe { &mut *raw };
            let (mut p, mut c) = ring.split();
            let mine = loom::sync::Arc::clone(&item);
            let t = thread::spawn(move || {
                for _ in 0..2 {
                    while p.push(loom::sync::Arc::clone(&mine)).is_err() {
                        thread::yield_now();
                    }
                }
            });
            while c.pop().is_none() {
                thread::yield_now();
            }
            t.join().unwrap();
        }
        assert_eq!(
            loom::sync::Arc::strong_count(&item),
            2,
            "one item left inside"
        );
        // SAFETY: from `Box::into_raw` above; nothing borrows it any more.
        drop(unsafe { Box::from_raw(raw) });
        assert_eq!(loom::sync::Arc::strong_count(&item), 1);
    });
}
