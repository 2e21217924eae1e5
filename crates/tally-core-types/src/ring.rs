//! [`SpscRing`]: a bounded single-producer single-consumer ring with no `Arc`.
//!
//! # Design
//! - `N` slots, `N` a power of two checked at compile time; positions are free-running
//!   `usize` counters and a slot is `position & (N - 1)`.
//! - The consumer's `head` and the producer's `tail` live on separate
//!   [`CachePadded`] lines. Each side keeps its own position in a local field (it is the
//!   only writer) and a *cached* copy of the other side's position, refreshed only when
//!   the cache says the ring is full (producer) or empty (consumer).
//! - Each slot also carries a *stamp*: `position + 1` of the value it holds, written by
//!   the producer right after the value (same cache line) and before `tail`.
//!   [`Consumer::pop`] checks the stamp of the slot it wants instead of loading `tail`,
//!   so handing over one item moves **one** cache line between the cores (the slot's,
//!   which the consumer must read anyway) instead of two (the `tail` line, then the
//!   slot's). This puts the ping-pong round trip near the bare cache-line floor and keeps
//!   the `tail` line out of the consumer's way while streaming one item per op. Stamps
//!   are never cleared: the next lap's stamp differs by `N`.
//! - The price: a slot is a `usize` wider, so batches of small items move more bytes
//!   (16 instead of 8 per `u64`); `docs/benchmarks/tally-core-types.md` has the numbers.
//! - [`SpscRing::split`] borrows the ring mutably and hands out a [`Producer`] and a
//!   [`Consumer`] bound to that borrow. Both are `Send`, so they move into
//!   `std::thread::scope` threads; the borrow checker guarantees one producer and one
//!   consumer at a time without reference counting. For threads that outlive a scope,
//!   [`SpscRing::leak`] makes a `'static` ring once at start-up.
//! - Batch operations ([`Producer::push_slice`], [`Producer::push_iter`],
//!   [`Consumer::pop_slice`], [`Consumer::pop_each`]) publish their index once per batch.
//!
//! # Memory ordering
//! The producer writes a slot's value, then its stamp with `Release`, and after the whole
//! push or batch stores `tail` with `Release`; the consumer loads `tail` (batch pops) or
//! the stamp (single pops) with `Acquire` before reading the value. A batch's cache lines
//! are thus complete before `tail` tells a batch consumer to read them. A consumer that
//! took an item by its stamp may briefly be ahead of the published `tail`, so every
//! `tail - head` is clamped at zero. Symmetrically the consumer moves
//! a value out of a slot, then stores `head` with `Release`; the producer loads `head`
//! with `Acquire` before overwriting slots below it. This is checked by the loom tests
//! (`tests/loom.rs`, `--cfg tally_loom`).
//!
//! This module and `sync` hold the crate's only `unsafe` that touches ring slots.

use core::marker::PhantomData;
use core::mem::MaybeUninit;

use crate::cache_padded::CachePadded;
use crate::sync::{AtomicUsize, Ordering, UnsafeCell};

/// Items between `head` and a `tail` that may lag behind it: a consumer that took items
/// by their stamps can be ahead of the last published (or cached) `tail`, which then
/// counts as nothing ready rather than wrapping to a huge number.
#[inline]
const fn ready<const N: usize>(head: usize, tail: usize) -> usize {
    let n = tail.wrapping_sub(head);
    if n <= N { n } else { 0 }
}

/// One ring slot: the value cell and the stamp that says which position it holds.
struct Slot<T> {
    /// `position + 1` once the value for `position` is written (`index + 1 - N` before
    /// the first lap, as if the lap before had been stamped).
    /// Stored by the producer only.
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded single-producer single-consumer ring of `N` slots (`N` a power of two).
///
/// ```
/// use tally_core_types::SpscRing;
///
/// let mut ring = SpscRing::<u64, 1024>::new();
/// let (mut tx, mut rx) = ring.split();
/// std::thread::scope(|s| {
///     s.spawn(move || {
///         for i in 0..10_000u64 {
///             while tx.push(i).is_err() {
///                 std::hint::spin_loop();
///             }
///         }
///     });
///     let mut expected = 0;
///     while expected < 10_000 {
///         if let Some(v) = rx.pop() {
///             assert_eq!(v, expected);
///             expected += 1;
///         }
///     }
/// });
/// ```
pub struct SpscRing<T, const N: usize> {
    /// Consumer position: the next slot to read. Stored by the consumer only.
    head: CachePadded<AtomicUsize>,
    /// Producer position: the next slot to write. Stored by the producer only.
    /// Invariant: `head <= tail <= head + N` (in wrapping arithmetic).
    tail: CachePadded<AtomicUsize>,
    /// Slots `head..tail` (masked) hold initialised values; the others are uninitialised.
    slots: Box<[Slot<T>; N]>,
}

// SAFETY: the ring owns `T` values and hands them from one thread to another, which is
// sound when `T: Send`. Shared access (`&SpscRing`) only reaches slots through a
// `Producer` or `Consumer`, of which `split(&mut self)` makes exactly one each; the
// head/tail protocol gives each slot a single accessor at a time.
unsafe impl<T: Send, const N: usize> Sync for SpscRing<T, N> {}

impl<T, const N: usize> SpscRing<T, N> {
    /// Compile-time check that `N` is a non-zero power of two small enough for the stamps
    /// (see `Consumer::pop`).
    const POWER_OF_TWO: () = assert!(
        N.is_power_of_two() && N <= usize::MAX / 4,
        "SpscRing capacity N must be a power of two no larger than usize::MAX / 4"
    );
    const MASK: usize = N - 1;

    /// An empty ring. This allocates the slot array once (on the heap, so that large rings
    /// do not live on the stack); nothing allocates afterwards.
    pub fn new() -> Self {
        let () = Self::POWER_OF_TWO;
        let slots: Box<[Slot<T>]> = (0..N)
            .map(|i| Slot {
                // As if position `i - N` (the lap before the first) had been stamped.
                stamp: AtomicUsize::new(i.wrapping_add(1).wrapping_sub(N)),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        let Ok(slots) = slots.try_into() else {
            unreachable!("the iterator yields exactly N slots")
        };
        Self {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            slots,
        }
    }

    /// Leaks a new ring so that its producer and consumer can live for the whole program
    /// (threads not bound to a scope). Meant for rings made once at start-up: the memory is
    /// never returned.
    pub fn leak() -> &'static mut Self {
        Box::leak(Box::new(Self::new()))
    }

    /// Splits the ring into its producer and consumer half. Items already in the ring
    /// stay there; the halves pick up where previous ones stopped.
    pub fn split(&mut self) -> (Producer<'_, T, N>, Consumer<'_, T, N>) {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let ring: &Self = self;
        (
            Producer {
                ring,
                tail,
                head_cache: head,
                _not_sync: PhantomData,
            },
            Consumer {
                ring,
                head,
                tail_cache: tail,
                _not_sync: PhantomData,
            },
        )
    }

    /// Number of slots.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Number of items in the ring (a snapshot when the halves are in use).
    pub fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        ready::<N>(head, self.tail.load(Ordering::Acquire))
    }

    /// Whether the ring is empty (a snapshot when the halves are in use).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `value` into the slot of `position`, then stamps it `position + 1` with
    /// `Release` so that a consumer polling the stamp may take it.
    ///
    /// # Safety
    /// Only the producer calls this, and only for a free slot: `position - head < N` for
    /// a `head` it acquired, and `position >= tail` (nothing the consumer may read).
    #[inline]
    unsafe fn fill(&self, position: usize, value: T) {
        let slot = self.slot(position);
        // SAFETY: the caller guarantees the slot is free: no value to leak, and the
        // consumer neither reads it (its stamp is a lap old) nor will before the stamp.
        slot.value.with_mut(|p| unsafe { (*p).write(value) });
        slot.stamp
            .store(position.wrapping_add(1), Ordering::Release);
    }

    /// Calls `f(slots, k)` for the slots of positions `from..from + n` in at most two
    /// contiguous runs (before and after the wrap), in order; `k` is the run's offset from
    /// `from`. `f` returns how many of its slots it used; the walk stops at a short run.
    /// Returns the total used.
    #[inline]
    fn runs(&self, from: usize, n: usize, mut f: impl FnMut(&[Slot<T>], usize) -> usize) -> usize {
        let start = from & Self::MASK;
        let first = n.min(N - start);
        let a = self.slots.get(start..start + first).unwrap_or(&[]);
        let used = f(a, 0);
        if used < first || first == n {
            return used;
        }
        used + f(self.slots.get(..n - first).unwrap_or(&[]), first)
    }

    #[inline]
    fn slot(&self, position: usize) -> &Slot<T> {
        // `position & MASK < N`, so this is always `Some`; the compiler removes the branch.
        match self.slots.get(position & Self::MASK) {
            Some(slot) => slot,
            None => unreachable!("masked position is below N"),
        }
    }
}

impl<T, const N: usize> Default for SpscRing<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Drop for SpscRing<T, N> {
    fn drop(&mut self) {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let mut pos = head;
        while pos != tail {
            // SAFETY: slots `head..tail` hold initialised values (ring invariant) and no
            // producer or consumer exists any more (we have `&mut self`).
            self.slot(pos)
                .value
                .with_mut(|p| unsafe { (*p).assume_init_drop() });
            pos = pos.wrapping_add(1);
        }
    }
}

impl<T, const N: usize> core::fmt::Debug for SpscRing<T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpscRing")
            .field("capacity", &N)
            .field("len", &self.len())
            .finish()
    }
}

/// The writing half of an [`SpscRing`].
pub struct Producer<'a, T, const N: usize> {
    ring: &'a SpscRing<T, N>,
    /// Our position; equal to `ring.tail` after each publish.
    tail: usize,
    /// Last `ring.head` we loaded; `head_cache <= ring.head`.
    head_cache: usize,
    /// Producer is `Send` but not `Sync`: its methods take `&mut self` anyway.
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: a Producer is the ring's only writer; moving it to another thread moves that
// role, and `SpscRing: Sync` (for `T: Send`) makes the shared reference sendable.
unsafe impl<T: Send, const N: usize> Send for Producer<'_, T, N> {}

impl<T, const N: usize> Producer<'_, T, N> {
    /// Appends `value`, or hands it back when the ring is full.
    ///
    /// # Errors
    /// `Err(value)` when all `N` slots are occupied.
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.tail.wrapping_sub(self.head_cache) == N {
            self.head_cache = self.ring.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_cache) == N {
                return Err(value);
            }
        }
        // SAFETY: `tail - head < N`, so slot `tail` is outside `head..tail`: the consumer
        // does not read it and it holds no value (it was never written or was moved out
        // before the consumer published the `head` we acquired).
        unsafe { self.ring.fill(self.tail, value) };
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Free slots, refreshing the view of the consumer's position.
    pub fn free_slots(&mut self) -> usize {
        self.head_cache = self.ring.head.load(Ordering::Acquire);
        N - self.tail.wrapping_sub(self.head_cache)
    }

    /// Free slots according to the cached consumer position, refreshed only if the cache
    /// shows fewer than `want`.
    #[inline]
    fn reserve(&mut self, want: usize) -> usize {
        let free = N - self.tail.wrapping_sub(self.head_cache);
        if free >= want {
            free
        } else {
            self.free_slots()
        }
    }

    /// Pushes items from `iter` while there is room, publishing once at the end. Returns
    /// how many were pushed; the rest stay in the iterator.
    pub fn push_iter<I: Iterator<Item = T>>(&mut self, iter: &mut I) -> usize {
        let free = self.reserve(N);
        let from = self.tail;
        let pushed = self.ring.runs(from, free, |slots, k| {
            let mut pos = from.wrapping_add(k);
            for slot in slots {
                let Some(value) = iter.next() else { break };
                // SAFETY: below `free`, so the slot is free (see `push`).
                slot.value.with_mut(|p| unsafe { (*p).write(value) });
                pos = pos.wrapping_add(1);
                slot.stamp.store(pos, Ordering::Release);
            }
            pos.wrapping_sub(from.wrapping_add(k))
        });
        if pushed > 0 {
            self.tail = self.tail.wrapping_add(pushed);
            self.ring.tail.store(self.tail, Ordering::Release);
        }
        pushed
    }

    /// Number of items in the ring as seen by the producer (may be stale-high).
    pub fn len(&self) -> usize {
        self.tail
            .wrapping_sub(self.ring.head.load(Ordering::Acquire))
    }

    /// Whether the ring is empty as seen by the producer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of slots.
    pub const fn capacity(&self) -> usize {
        N
    }
}

impl<T: Copy, const N: usize> Producer<'_, T, N> {
    /// Copies as many items from `items` as fit, publishing once. Returns how many.
    pub fn push_slice(&mut self, items: &[T]) -> usize {
        let n = self.reserve(items.len()).min(items.len());
        let from = self.tail;
        let n = self.ring.runs(from, n, |slots, k| {
            let src = items.get(k..k + slots.len()).unwrap_or(&[]);
            let mut pos = from.wrapping_add(k);
            for (slot, v) in slots.iter().zip(src) {
                // SAFETY: below `n <= free`, so the slot is free (see `push`).
                slot.value.with_mut(|p| unsafe { (*p).write(*v) });
                pos = pos.wrapping_add(1);
                slot.stamp.store(pos, Ordering::Release);
            }
            src.len()
        });
        if n > 0 {
            self.tail = self.tail.wrapping_add(n);
            self.ring.tail.store(self.tail, Ordering::Release);
        }
        n
    }
}

impl<T, const N: usize> core::fmt::Debug for Producer<'_, T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &N)
            .field("tail", &self.tail)
            .finish()
    }
}

/// The reading half of an [`SpscRing`].
pub struct Consumer<'a, T, const N: usize> {
    ring: &'a SpscRing<T, N>,
    /// Our position; equal to `ring.head` after each publish.
    head: usize,
    /// Last `ring.tail` we loaded; `tail_cache <= ring.tail`. Single pops do not
    /// refresh it, so it may fall behind `head` (see `cached_available`).
    tail_cache: usize,
    /// Consumer is `Send` but not `Sync`.
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: a Consumer is the ring's only reader; see `Producer`.
unsafe impl<T: Send, const N: usize> Send for Consumer<'_, T, N> {}

impl<T, const N: usize> Consumer<'_, T, N> {
    /// Removes the oldest item, or `None` when the ring is empty.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let slot = self.ring.slot(self.head);
        // Ask the slot itself rather than the producer's `tail` line (see the module
        // docs). The stamp is `head + 1` when ready and `head + 1 - N` (the previous lap,
        // which we consumed after acquiring that stamp or a `tail` stored after it)
        // otherwise, so "ahead of `head`" is exact. An ordering test rather than `==` keeps the compiler from deriving the
        // next `head` from the loaded stamp, which would chain every pop's load to the
        // previous one.
        let ahead = slot
            .stamp
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
            .cast_signed();
        if ahead <= 0 {
            return None;
        }
        // SAFETY: the slot's acquired stamp says it holds the value for position `head`,
        // written by the producer before its release store of the stamp; we move it out
        // and then publish `head`, so it is never read twice.
        let value = slot.value.with_mut(|p| unsafe { (*p).assume_init_read() });
        self.head = self.head.wrapping_add(1);
        self.ring.head.store(self.head, Ordering::Release);
        Some(value)
    }

    /// Items known to be ready from the cached `tail`, without touching shared memory.
    /// [`Consumer::pop`] moves `head` past the cache without refreshing it.
    #[inline]
    fn cached_available(&self) -> usize {
        ready::<N>(self.head, self.tail_cache)
    }

    /// Items available, refreshing the view of the producer's position.
    pub fn available(&mut self) -> usize {
        self.tail_cache = self.ring.tail.load(Ordering::Acquire);
        self.cached_available()
    }

    /// Moves up to `dst.len()` items into `dst` (dropping what `dst` held there),
    /// publishing once. Returns how many.
    pub fn pop_slice(&mut self, dst: &mut [T]) -> usize {
        let mut n = self.cached_available();
        if n < dst.len() {
            n = self.available();
        }
        let n = n.min(dst.len());
        let n = self.ring.runs(self.head, n, |slots, k| {
            let out = dst.get_mut(k..k + slots.len()).unwrap_or(&mut []);
            for (d, slot) in out.iter_mut().zip(slots) {
                // SAFETY: below `n <= tail - head`: the slot holds an initialised value,
                // read once (we publish `head` past it below).
                *d = slot.value.with_mut(|p| unsafe { (*p).assume_init_read() });
            }
            out.len()
        });
        if n > 0 {
            self.head = self.head.wrapping_add(n);
            self.ring.head.store(self.head, Ordering::Release);
        }
        n
    }

    /// Moves up to `max` items out, calling `f` on each in order, publishing once.
    /// Returns how many.
    pub fn pop_each(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut n = self.cached_available();
        if n < max {
            n = self.available();
        }
        let n = n.min(max);
        let n = self.ring.runs(self.head, n, |slots, _| {
            for slot in slots {
                // SAFETY: as in `pop_slice`.
                f(slot.value.with_mut(|p| unsafe { (*p).assume_init_read() }));
            }
            slots.len()
        });
        if n > 0 {
            self.head = self.head.wrapping_add(n);
            self.ring.head.store(self.head, Ordering::Release);
        }
        n
    }

    /// Number of items in the ring as seen by the consumer.
    pub fn len(&self) -> usize {
        ready::<N>(self.head, self.ring.tail.load(Ordering::Acquire))
    }

    /// Whether the ring is empty as seen by the consumer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of slots.
    pub const fn capacity(&self) -> usize {
        N
    }
}

impl<T, const N: usize> core::fmt::Debug for Consumer<'_, T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &N)
            .field("head", &self.head)
            .finish()
    }
}

#[cfg(all(test, not(tally_loom)))]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn fifo_full_empty() {
        let mut ring = SpscRing::<u32, 4>::new();
        let (mut p, mut c) = ring.split();
        assert_eq!(c.pop(), None);
        for i in 0..4 {
            p.push(i).unwrap();
        }
        assert_eq!(p.push(9), Err(9));
        assert_eq!(p.len(), 4);
        assert_eq!(c.pop(), Some(0));
        p.push(4).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(got, [1, 2, 3, 4]);
        assert!(c.is_empty());
    }

    #[test]
    fn items_left_inside_are_dropped_once() {
        let marker = Rc::new(());
        {
            let mut ring = SpscRing::<Rc<()>, 8>::new();
            let (mut p, mut c) = ring.split();
            for _ in 0..6 {
                p.push(Rc::clone(&marker)).unwrap();
            }
            drop(c.pop());
            assert_eq!(Rc::strong_count(&marker), 6);
        }
        assert_eq!(Rc::strong_count(&marker), 1);
    }

    #[test]
    fn resplit_continues() {
        let mut ring = SpscRing::<u8, 2>::new();
        {
            let (mut p, _c) = ring.split();
            p.push(1).unwrap();
        }
        assert_eq!(ring.len(), 1);
        let (mut p, mut c) = ring.split();
        p.push(2).unwrap();
        assert!(p.push(3).is_err());
        assert_eq!((c.pop(), c.pop(), c.pop()), (Some(1), Some(2), None));
    }

    #[test]
    fn batch_wraps() {
        let mut ring = SpscRing::<u16, 8>::new();
        let (mut p, mut c) = ring.split();
        assert_eq!(p.push_slice(&[1, 2, 3, 4, 5]), 5);
        let mut out = [0u16; 3];
        assert_eq!(c.pop_slice(&mut out), 3);
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(p.push_slice(&[6, 7, 8, 9, 10, 11, 12]), 6);
        let mut it = 100..;
        assert_eq!(p.push_iter(&mut it), 0);
        let mut all = Vec::new();
        assert_eq!(c.pop_each(100, |v| all.push(v)), 8);
        assert_eq!(all, [4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(p.push_iter(&mut it), 8);
        assert_eq!(it.next(), Some(108));
    }
}
