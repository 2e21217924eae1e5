//! [`BatchRing`]: a bounded single-producer single-consumer ring for batch streams and
//! for items wider than a word, with no `Arc`.
//!
//! # When to use it instead of [`SpscRing`](crate::SpscRing)
//! [`SpscRing`](crate::SpscRing) puts a stamp in every cache line so that a single pop
//! reads one line per hand-over; that makes it the faster ring for one-word items moved
//! one at a time, and costs it room: 7 `u64`s per line instead of 8, and only 3, 1 or
//! less than 1 item per line for 16-, 32- and 64-byte items. `BatchRing` keeps its slots
//! dense (8 `u64`s per line, a 64-byte item per line), so a batch of 256 `u64`s fills 32
//! lines, not 37. Choose it when the producer and the consumer move items in batches
//! (the slice operations), or when the items are wider than a word.
//! `docs/benchmarks/tally-core-types.md` has both rings side by side with rtrb.
//!
//! # Design
//! - `N` slots, `N` a power of two checked at compile time, in one array aligned to a
//!   128-byte line pair; positions are free-running `usize` counters and a slot is
//!   `position & (N - 1)`.
//! - The consumer's `head` and the producer's `tail` live on separate
//!   [`CachePadded`] lines. Each side keeps its own position in a local field and a
//!   *cached* copy of the other side's, refreshed only when the cache says the ring is
//!   full (producer) or holds fewer items than a pop wants (consumer).
//! - Every operation publishes its index once, before it returns (or while unwinding
//!   from a caller's closure or iterator): a single push or pop once per item, a batch
//!   once per batch. So the published indices are always exact and the halves need no
//!   `Drop`: the next [`BatchRing::split`] picks up where the last halves stopped (also
//!   ones passed to `mem::forget`), and the ring's `Drop` drops the items left inside.
//! - The slice operations ([`BatchProducer::push_slice`],
//!   [`BatchConsumer::pop_slice`]) copy at most two runs of slots (before and after the
//!   wrap) with `copy_nonoverlapping`. After copying a batch out, `pop_slice` asks the
//!   CPU (`prefetcht0`, x86-64) for the lines of the items already published after it,
//!   up to as many as it just took, so that they move to the consumer's core while the
//!   caller works on the batch. With the prefetch switched at run time in one binary,
//!   batches of 256 ran at 1.03-1.07x rtrb's rate in `batch-report`, against 1.00-1.01x
//!   without (8 of 8 pairs); between builds, code placement moves the figure more
//!   (`docs/benchmarks/tally-core-types.md`).
//!
//! # Memory ordering
//! The producer writes values, then stores `tail` with `Release`; the consumer loads
//! `tail` with `Acquire` before reading the values below it. The consumer moves values
//! out, then stores `head` with `Release`; the producer loads `head` with `Acquire`
//! before overwriting slots below it. Checked by the loom tests (`tests/loom.rs`,
//! `--cfg tally_loom`).

use core::alloc::Layout;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crate::cache_padded::CachePadded;
use crate::sync::{AtomicUsize, Ordering, UnsafeCell};

/// The cell that holds one value.
type Cell<T> = UnsafeCell<MaybeUninit<T>>;

/// Bytes of a cache line.
#[cfg(all(target_arch = "x86_64", not(tally_loom)))]
const LINE: usize = 64;

/// Most lines a batch pop asks the CPU to bring in ahead of the next batch (4 KiB).
#[cfg(all(target_arch = "x86_64", not(tally_loom)))]
const PREFETCH_LINES: usize = 64;

/// Alignment of the slot array: a line pair, so that no other allocation shares its
/// first or last line (and the adjacent-line prefetcher pulls only ring lines).
const ARRAY_ALIGN: usize = 128;

/// A bounded single-producer single-consumer ring of `N` dense slots (`N` a power of
/// two), for batch streams and wide items (see the module docs).
///
/// ```
/// use tally_core_types::BatchRing;
///
/// let mut ring = BatchRing::<u64, 1024>::new();
/// let (mut tx, mut rx) = ring.split();
/// std::thread::scope(|s| {
///     s.spawn(move || {
///         let mut next = 0u64;
///         let mut batch = [0u64; 64];
///         while next < 10_000 {
///             for (k, v) in batch.iter_mut().enumerate() {
///                 *v = next + k as u64;
///             }
///             let n = (10_000 - next).min(64) as usize;
///             // Publishes once for the whole batch; returns how many fitted.
///             next += tx.push_slice(&batch[..n]) as u64;
///         }
///     });
///     let mut expected = 0u64;
///     let mut got = [0u64; 64];
///     while expected < 10_000 {
///         let n = rx.pop_slice(&mut got);
///         for v in &got[..n] {
///             assert_eq!(*v, expected);
///             expected += 1;
///         }
///     }
/// });
/// ```
pub struct BatchRing<T, const N: usize> {
    /// Consumer position: every item below it has been taken. Stored by the consumer
    /// only, at the end of every operation.
    head: CachePadded<AtomicUsize>,
    /// Producer position: every slot below it has been written. Stored by the producer
    /// only, at the end of every operation. Invariant (wrapping): `head <= tail <=
    /// head + N`.
    tail: CachePadded<AtomicUsize>,
    /// `N` cells allocated with `LAYOUT` in `new` (dangling when they take no bytes),
    /// all initialised as cells; slots `head..tail` (masked) hold initialised values.
    slots: NonNull<Cell<T>>,
    /// The ring owns `T` values and is invariant in `T` (see `SpscRing`).
    _owns: PhantomData<core::cell::UnsafeCell<T>>,
}

// SAFETY: the ring owns `T` values and its slot array, which nothing else points to;
// sound to send when `T: Send`.
unsafe impl<T: Send, const N: usize> Send for BatchRing<T, N> {}

// SAFETY: shared access only reaches slots through the one `BatchProducer` and the one
// `BatchConsumer` that `split(&mut self)` makes; the head/tail protocol gives each slot
// a single accessor at a time, and values move between threads only when `T: Send`.
unsafe impl<T: Send, const N: usize> Sync for BatchRing<T, N> {}

impl<T, const N: usize> BatchRing<T, N> {
    /// Compile-time check that `N` is a non-zero power of two and that `N` slots fit the
    /// address space.
    const CHECKS: () = assert!(
        N.is_power_of_two()
            && N <= usize::MAX / 2
            && match size_of::<Cell<T>>().checked_mul(N) {
                Some(bytes) => bytes <= isize::MAX as usize / 2,
                None => false,
            },
        "BatchRing capacity N must be a power of two, and N slots of T must fit in memory"
    );
    const MASK: usize = N - 1;
    const BYTES: usize = size_of::<Cell<T>>() * N;
    /// The slot array's layout: `CHECKS` bounds `BYTES` and the alignment is a power of
    /// two, so this cannot fail; if it ever did, the build would stop here.
    const LAYOUT: Layout = match Layout::from_size_align(
        Self::BYTES,
        if align_of::<Cell<T>>() > ARRAY_ALIGN {
            align_of::<Cell<T>>()
        } else {
            ARRAY_ALIGN
        },
    ) {
        Ok(layout) => layout,
        Err(_) => panic!("BatchRing slot layout does not fit: see BatchRing::CHECKS"),
    };

    /// An empty ring. This allocates the slot array once (on the heap); nothing
    /// allocates afterwards.
    pub fn new() -> Self {
        let () = Self::CHECKS;
        let slots = if Self::BYTES == 0 {
            NonNull::dangling()
        } else {
            // SAFETY: `LAYOUT` has a non-zero size.
            let raw = unsafe { std::alloc::alloc(Self::LAYOUT) };
            let Some(slots) = NonNull::new(raw.cast::<Cell<T>>()) else {
                std::alloc::handle_alloc_error(Self::LAYOUT)
            };
            for k in 0..N {
                // SAFETY: cell `k < N` lies inside the allocation, aligned for `Cell<T>`.
                unsafe { slots.add(k).write(UnsafeCell::new(MaybeUninit::uninit())) };
            }
            slots
        };
        Self {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            slots,
            _owns: PhantomData,
        }
    }

    /// Leaks a new ring so that its halves can live for the whole program (threads not
    /// bound to a scope). Meant for rings made once at start-up: the memory is never
    /// returned.
    pub fn leak() -> &'static mut Self {
        Box::leak(Box::new(Self::new()))
    }

    /// Splits the ring into its producer and consumer half. Items already in the ring
    /// stay there; the halves pick up where previous ones stopped (also forgotten ones).
    pub fn split(&mut self) -> (BatchProducer<'_, T, N>, BatchConsumer<'_, T, N>) {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let ring: &Self = self;
        (
            BatchProducer {
                ring,
                slots: Slots::of(ring),
                tail,
                head_cache: head,
                _not_sync: PhantomData,
            },
            BatchConsumer {
                ring,
                slots: Slots::of(ring),
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

    /// Number of items in the ring.
    pub fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        self.tail.load(Ordering::Acquire).wrapping_sub(head)
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T, const N: usize> Default for BatchRing<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Drop for BatchRing<T, N> {
    fn drop(&mut self) {
        /// Frees the slot array at the end of `drop`, also when an item's `Drop` panics.
        struct Free<T, const N: usize>(NonNull<Cell<T>>);
        impl<T, const N: usize> Drop for Free<T, N> {
            fn drop(&mut self) {
                if BatchRing::<T, N>::BYTES == 0 {
                    return;
                }
                // SAFETY: `new` wrote `N` cells here; dropping a cell does not drop its
                // `MaybeUninit` content (the items were dropped before), and nothing
                // uses the cells again.
                unsafe {
                    core::ptr::drop_in_place(core::ptr::slice_from_raw_parts_mut(
                        self.0.as_ptr(),
                        N,
                    ));
                }
                // SAFETY: allocated in `new` with this layout, and not used after this.
                unsafe {
                    std::alloc::dealloc(self.0.as_ptr().cast::<u8>(), BatchRing::<T, N>::LAYOUT);
                };
            }
        }
        let free = Free::<T, N>(self.slots);
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        if core::mem::needs_drop::<T>() {
            // SAFETY: slots `head..tail` hold initialised values (every operation
            // publishes its exact position before it returns or unwinds), and no half
            // exists any more (we have `&mut self`); `free` runs after them.
            unsafe { Slots::of(self).drop_items(head, tail.wrapping_sub(head)) };
        }
        drop(free);
    }
}

impl<T, const N: usize> core::fmt::Debug for BatchRing<T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BatchRing")
            .field("capacity", &N)
            .field("len", &self.len())
            .finish()
    }
}

/// A half's handle on the ring's slot array: the base pointer, valid for `'a`.
struct Slots<'a, T, const N: usize> {
    base: NonNull<Cell<T>>,
    _ring: PhantomData<&'a BatchRing<T, N>>,
}

impl<'a, T, const N: usize> Slots<'a, T, N> {
    fn of(ring: &'a BatchRing<T, N>) -> Self {
        Self {
            base: ring.slots,
            _ring: PhantomData,
        }
    }

    /// The cell of `position`.
    #[inline]
    fn cell(&self, position: usize) -> &'a Cell<T> {
        // SAFETY: the masked index is below `N`, inside the array `new` initialised,
        // which lives as long as the ring (`'a`).
        unsafe { self.base.add(position & BatchRing::<T, N>::MASK).as_ref() }
    }

    /// Drops the `count` items from `position` on. If one of them panics in its `Drop`,
    /// the rest are still dropped while unwinding (a second panic then aborts, as in a
    /// `Vec`).
    ///
    /// # Safety
    /// The `count` slots from `position` on hold initialised values that nothing else
    /// reads or drops, now or later.
    unsafe fn drop_items(&self, mut position: usize, mut count: usize) {
        /// Drops the items after the one being dropped if its `Drop` unwinds.
        struct Rest<'s, 'a, T, const N: usize>(&'s Slots<'a, T, N>, usize, usize);
        impl<T, const N: usize> Drop for Rest<'_, '_, T, N> {
            fn drop(&mut self) {
                // SAFETY: the slots after the one whose `Drop` panicked: the caller's
                // contract, less the slots already dropped.
                unsafe { self.0.drop_items(self.1, self.2) };
            }
        }
        while count > 0 {
            let at = position;
            position = position.wrapping_add(1);
            count -= 1;
            let rest = Rest(self, position, count);
            // SAFETY: the caller's contract; `rest` covers only the slots after this one.
            self.cell(at)
                .with_mut(|p| unsafe { (*p).assume_init_drop() });
            core::mem::forget(rest);
        }
    }
}

impl<T: Copy, const N: usize> Slots<'_, T, N> {
    /// Asks the CPU to bring the lines of the `count` slots from `position` on into this
    /// core's cache (`prefetcht0`; at most [`PREFETCH_LINES`] lines). A hint only: it
    /// reads and writes no memory, so it races with nothing, and it never faults.
    #[inline]
    fn prefetch(&self, position: usize, count: usize) {
        #[cfg(all(target_arch = "x86_64", not(tally_loom)))]
        {
            if size_of::<T>() == 0 {
                return;
            }
            // One prefetch per 64 bytes of the items, whatever their size: an item wider
            // than a line gets one for each of its lines.
            let bytes = count.saturating_mul(size_of::<T>());
            let mut at = 0;
            while at < bytes && at < PREFETCH_LINES * LINE {
                let item = position.wrapping_add(at / size_of::<T>()) & BatchRing::<T, N>::MASK;
                let line = self
                    .base
                    .as_ptr()
                    .wrapping_add(item)
                    .cast::<i8>()
                    .wrapping_add(at % size_of::<T>());
                // SAFETY: SSE is part of x86-64, and a prefetch has no effect on memory
                // (the address is inside the slot array anyway: byte `at % size` of the
                // masked item).
                unsafe {
                    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(line);
                }
                at += LINE;
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(tally_loom))))]
        let _ = (position, count);
    }

    /// Copies `src` into the slots from `position` on, in at most two runs (before and
    /// after the wrap).
    ///
    /// # Safety
    /// `src.len() <= N`, and the slots are free: the consumer does not read them before
    /// a `tail` store past them.
    #[inline]
    unsafe fn write(&self, position: usize, src: &[T]) {
        let at = position & BatchRing::<T, N>::MASK;
        let (first, second) = src
            .split_at_checked((N - at).min(src.len()))
            .unwrap_or_default();
        // SAFETY: `at + first.len() <= N` and `second.len() <= at`: both runs lie
        // inside the array; the caller's contract makes them ours to write.
        unsafe {
            self.write_run(at, first);
            self.write_run(0, second);
        }
    }

    /// Copies `src` into the slots from index `at` on.
    ///
    /// # Safety
    /// `at + src.len() <= N`, and the slots are ours to write (see `write`).
    #[cfg(not(tally_loom))]
    #[inline]
    unsafe fn write_run(&self, at: usize, src: &[T]) {
        // SAFETY: the caller's contract; `Cell<T>` is `repr(transparent)` over `T`'s
        // storage, and `src` (a borrowed slice) does not overlap the ring's array.
        unsafe {
            core::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.base.as_ptr().add(at).cast::<T>(),
                src.len(),
            );
        }
    }

    /// Copies `src` into the slots from index `at` on, a cell at a time (loom tracks
    /// each cell's accesses).
    ///
    /// # Safety
    /// As for the other `write_run`.
    #[cfg(tally_loom)]
    unsafe fn write_run(&self, at: usize, src: &[T]) {
        for (k, v) in src.iter().enumerate() {
            // SAFETY: the caller's contract.
            self.cell(at + k).with_mut(|p| unsafe { (*p).write(*v) });
        }
    }

    /// Copies the slots from `position` on into `dst`, in at most two runs.
    ///
    /// # Safety
    /// `dst.len() <= N`, and the slots hold values the producer published (below a
    /// `tail` we acquired) that nothing else reads.
    #[inline]
    unsafe fn read(&self, position: usize, dst: &mut [T]) {
        let at = position & BatchRing::<T, N>::MASK;
        // `None` cannot happen: the split point is at most `dst.len()`.
        let (first, second) = dst
            .split_at_mut_checked((N - at).min(dst.len()))
            .unwrap_or_default();
        // SAFETY: as in `write`.
        unsafe {
            self.read_run(at, first);
            self.read_run(0, second);
        }
    }

    /// Copies the slots from index `at` on into `dst`.
    ///
    /// # Safety
    /// `at + dst.len() <= N`, and the slots hold published values (see `read`).
    #[cfg(not(tally_loom))]
    #[inline]
    unsafe fn read_run(&self, at: usize, dst: &mut [T]) {
        // SAFETY: the caller's contract; see `write_run`.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(at).cast::<T>(),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }

    /// Copies the slots from index `at` on into `dst`, a cell at a time.
    ///
    /// # Safety
    /// As for the other `read_run`.
    #[cfg(tally_loom)]
    unsafe fn read_run(&self, at: usize, dst: &mut [T]) {
        for (k, d) in dst.iter_mut().enumerate() {
            // SAFETY: the caller's contract.
            *d = self
                .cell(at + k)
                .with_mut(|p| unsafe { (*p).assume_init_read() });
        }
    }
}

/// The writing half of a [`BatchRing`].
///
/// It is invariant in `T`: it cannot push a borrow that ends before the ring hands it
/// out.
///
/// ```compile_fail,E0597
/// use tally_core_types::{BatchProducer, BatchRing};
///
/// let mut ring = BatchRing::<&'static str, 4>::new();
/// let (p, mut c) = ring.split();
/// let short = String::from("short-lived");
/// let mut p: BatchProducer<'_, &str, 4> = p;
/// p.push(short.as_str()).unwrap();
/// drop(short);
/// let _dangling: &'static str = c.pop().unwrap();
/// ```
///
/// It is `Send` only when `T` is, and never `Sync`:
///
/// ```compile_fail,E0277
/// use tally_core_types::BatchRing;
/// fn send<S: Send>(_: S) {}
/// let mut ring = BatchRing::<std::rc::Rc<u8>, 4>::new();
/// let (p, _c) = ring.split();
/// send(p);
/// ```
///
/// ```compile_fail,E0277
/// use tally_core_types::BatchRing;
/// fn shared<S: Sync>(_: &S) {}
/// let mut ring = BatchRing::<u8, 4>::new();
/// let (p, _c) = ring.split();
/// shared(&p);
/// ```
pub struct BatchProducer<'a, T, const N: usize> {
    ring: &'a BatchRing<T, N>,
    /// `ring.slots`, copied so that a push does not load it through `ring`.
    slots: Slots<'a, T, N>,
    /// Our position; equal to `ring.tail` between operations.
    tail: usize,
    /// Last `ring.head` we loaded; `head_cache <= ring.head`.
    head_cache: usize,
    /// `Send` but not `Sync`: its methods take `&mut self` anyway.
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: a producer is the ring's only writer; moving it to another thread moves that
// role, and `BatchRing: Sync` (for `T: Send`) makes the shared reference sendable.
unsafe impl<T: Send, const N: usize> Send for BatchProducer<'_, T, N> {}

impl<T, const N: usize> BatchProducer<'_, T, N> {
    /// Appends `value`, or hands it back when the ring is full.
    ///
    /// # Errors
    /// `Err(value)` when all `N` slots are occupied.
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.reserve(1) == 0 {
            return Err(value);
        }
        // SAFETY: `tail - head < N`, so slot `tail` is outside `head..tail`: the consumer
        // does not read it and it holds no value.
        self.slots
            .cell(self.tail)
            .with_mut(|p| unsafe { (*p).write(value) });
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Free slots, refreshing the view of the consumer's position.
    pub fn free_slots(&mut self) -> usize {
        self.head_cache = self.ring.head.load(Ordering::Acquire);
        N - self.tail.wrapping_sub(self.head_cache)
    }

    /// Free slots according to the cached consumer position, refreshed only if the
    /// cache shows fewer than `want`.
    #[inline]
    fn reserve(&mut self, want: usize) -> usize {
        let free = N - self.tail.wrapping_sub(self.head_cache);
        if free >= want {
            free
        } else {
            self.free_slots()
        }
    }

    /// Pushes items from `iter` while there is room, publishing once at the end (or
    /// while unwinding, if `iter` panics). Returns how many were pushed; the rest stay
    /// in the iterator. The room counted is the cached view of the consumer's position,
    /// refreshed when it shows less than the iterator's `size_hint` lower bound, so an
    /// iterator that reports fewer items than it has may stop before the ring is full.
    pub fn push_iter<I: Iterator<Item = T>>(&mut self, iter: &mut I) -> usize {
        /// Publishes on drop: at the end of the run or while unwinding from `next`.
        struct Publish<'p, 'a, T, const N: usize>(&'p mut BatchProducer<'a, T, N>, usize);
        impl<T, const N: usize> Drop for Publish<'_, '_, T, N> {
            fn drop(&mut self) {
                if self.0.tail != self.1 {
                    self.0.ring.tail.store(self.0.tail, Ordering::Release);
                }
            }
        }
        // Refresh the consumer's position only when the cached one shows less room than
        // the iterator says it has items (at least one).
        let free = self.reserve(iter.size_hint().0.clamp(1, N));
        let from = self.tail;
        let run = Publish(self, from);
        let p = &mut *run.0;
        while p.tail.wrapping_sub(from) < free {
            let Some(value) = iter.next() else {
                break;
            };
            // SAFETY: among the `free` slots reserved above (see `push`).
            p.slots
                .cell(p.tail)
                .with_mut(|c| unsafe { (*c).write(value) });
            p.tail = p.tail.wrapping_add(1);
        }
        let n = p.tail.wrapping_sub(from);
        drop(run);
        n
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

impl<T: Copy, const N: usize> BatchProducer<'_, T, N> {
    /// Copies as many items from `items` as fit (at most two `memcpy`s), publishing
    /// once. Returns how many.
    #[inline]
    pub fn push_slice(&mut self, items: &[T]) -> usize {
        let n = self.reserve(items.len()).min(items.len());
        if n == 0 {
            return 0;
        }
        let now = items.get(..n).unwrap_or(&[]);
        // SAFETY: `n <= free`: the slots `tail..tail + n` are free (see `push`).
        unsafe { self.slots.write(self.tail, now) };
        self.tail = self.tail.wrapping_add(now.len());
        self.ring.tail.store(self.tail, Ordering::Release);
        now.len()
    }
}

impl<T, const N: usize> core::fmt::Debug for BatchProducer<'_, T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BatchProducer")
            .field("capacity", &N)
            .field("tail", &self.tail)
            .finish()
    }
}

/// The reading half of a [`BatchRing`].
///
/// It is `Send` only when `T` is, and never `Sync`:
///
/// ```compile_fail,E0277
/// use tally_core_types::BatchRing;
/// fn send<S: Send>(_: S) {}
/// let mut ring = BatchRing::<std::rc::Rc<u8>, 4>::new();
/// let (_p, c) = ring.split();
/// send(c);
/// ```
///
/// ```compile_fail,E0277
/// use tally_core_types::BatchRing;
/// fn shared<S: Sync>(_: &S) {}
/// let mut ring = BatchRing::<u8, 4>::new();
/// let (_p, c) = ring.split();
/// shared(&c);
/// ```
pub struct BatchConsumer<'a, T, const N: usize> {
    ring: &'a BatchRing<T, N>,
    /// `ring.slots`, copied so that a pop does not load it through `ring`.
    slots: Slots<'a, T, N>,
    /// Our position; equal to `ring.head` between operations.
    head: usize,
    /// Last `ring.tail` we loaded; `head <= tail_cache <= ring.tail`.
    tail_cache: usize,
    /// `Send` but not `Sync`.
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: a consumer is the ring's only reader; see `BatchProducer`.
unsafe impl<T: Send, const N: usize> Send for BatchConsumer<'_, T, N> {}

impl<T, const N: usize> BatchConsumer<'_, T, N> {
    /// Removes the oldest item, or `None` when the ring is empty.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.ready_for(1) == 0 {
            return None;
        }
        // SAFETY: `head < tail` for a `tail` we acquired: the slot holds the value the
        // producer wrote before publishing it; we move it out once and publish a `head`
        // past it, so the producer overwrites it only after that.
        let value = self
            .slots
            .cell(self.head)
            .with_mut(|p| unsafe { (*p).assume_init_read() });
        self.head = self.head.wrapping_add(1);
        self.ring.head.store(self.head, Ordering::Release);
        Some(value)
    }

    /// Items available, refreshing the view of the producer's position.
    pub fn available(&mut self) -> usize {
        self.tail_cache = self.ring.tail.load(Ordering::Acquire);
        self.tail_cache.wrapping_sub(self.head)
    }

    /// Items ready to take, at most `max`: from the cached `tail` when it shows `max`,
    /// else from a fresh load.
    #[inline]
    fn ready_for(&mut self, max: usize) -> usize {
        let cached = self.tail_cache.wrapping_sub(self.head);
        if cached >= max {
            return max;
        }
        self.available().min(max)
    }

    /// Moves up to `max` items out, calling `f` on each in order, publishing once at the
    /// end (or while unwinding, if `f` panics: the items it was given are gone, the rest
    /// stay). Returns how many. The slots go back to the producer only at the end, so a
    /// slow `f` holds them for the whole run: take fewer items at a time if the producer
    /// must not wait that long.
    pub fn pop_each(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        /// Publishes `head` on drop, if it moved: at the end of the run or while unwinding
        /// from `f`.
        struct Done<'c, 'a, T, const N: usize>(&'c mut BatchConsumer<'a, T, N>, usize);
        impl<T, const N: usize> Drop for Done<'_, '_, T, N> {
            fn drop(&mut self) {
                if self.0.head != self.1 {
                    self.0.ring.head.store(self.0.head, Ordering::Release);
                }
            }
        }
        let n = self.ready_for(max);
        let from = self.head;
        let done = Done(self, from);
        let c = &mut *done.0;
        for _ in 0..n {
            // SAFETY: the slot is below `head + n <= tail` for a `tail` we acquired
            // (see `pop`); `head` moves past it before `f` runs, so a panicking `f`
            // leaves a consistent consumer.
            let value = c
                .slots
                .cell(c.head)
                .with_mut(|p| unsafe { (*p).assume_init_read() });
            c.head = c.head.wrapping_add(1);
            f(value);
        }
        drop(done);
        n
    }

    /// Number of items in the ring as seen by the consumer: the producer's published
    /// position now, so it may be stale-low while a push is under way (as
    /// [`BatchConsumer::available`], which also refreshes the cache a batch pop uses).
    pub fn len(&self) -> usize {
        self.ring
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
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

impl<T: Copy, const N: usize> BatchConsumer<'_, T, N> {
    /// Copies up to `dst.len()` items into `dst` (at most two `memcpy`s), publishing
    /// once. Returns how many.
    #[inline]
    pub fn pop_slice(&mut self, dst: &mut [T]) -> usize {
        let n = self.ready_for(dst.len());
        if n == 0 {
            return 0;
        }
        let now = dst.get_mut(..n).unwrap_or(&mut []);
        // SAFETY: `n <= tail - head` for a `tail` we acquired (see `pop`).
        unsafe { self.slots.read(self.head, now) };
        self.head = self.head.wrapping_add(now.len());
        self.ring.head.store(self.head, Ordering::Release);
        // Items already published past this batch: start moving their lines to this core
        // now, so that they arrive while the caller works on this batch.
        let ahead = self.tail_cache.wrapping_sub(self.head).min(now.len());
        self.slots.prefetch(self.head, ahead);
        now.len()
    }
}

impl<T, const N: usize> core::fmt::Debug for BatchConsumer<'_, T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BatchConsumer")
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
        let mut ring = BatchRing::<u32, 4>::new();
        let (mut p, mut c) = ring.split();
        assert_eq!(c.pop(), None);
        for v in 0..4 {
            assert_eq!(p.push(v), Ok(()));
        }
        assert_eq!(p.push(9), Err(9), "all four slots are in use");
        assert_eq!(c.pop(), Some(0));
        assert_eq!(p.push(4), Ok(()), "the freed slot is usable at once");
        assert_eq!(
            (1..5).map(|_| c.pop()).collect::<Vec<_>>(),
            [1, 2, 3, 4].map(Some)
        );
        assert_eq!(c.pop(), None);
        assert!(c.is_empty() && p.is_empty());
    }

    #[test]
    fn slices_wrap_around_and_stop_at_capacity() {
        let mut ring = BatchRing::<u64, 8>::new();
        let (mut p, mut c) = ring.split();
        let mut next = 0u64;
        let mut expected = 0u64;
        for round in 0..200u64 {
            let want = usize::try_from(round % 11).unwrap();
            let items: Vec<u64> = (next..next + want as u64).collect();
            let free = p.free_slots();
            let pushed = p.push_slice(&items);
            assert_eq!(pushed, want.min(free));
            next += pushed as u64;
            let mut dst = vec![0u64; usize::try_from(round % 7).unwrap()];
            let popped = c.pop_slice(&mut dst);
            for v in &dst[..popped] {
                assert_eq!(*v, expected);
                expected += 1;
            }
            assert_eq!(c.len(), usize::try_from(next - expected).unwrap());
        }
        assert!(expected > 300, "the loop wrapped the ring many times");
    }

    #[test]
    fn positions_wrap_past_usize_max() {
        let mut ring = BatchRing::<u16, 4>::new();
        let start = usize::MAX - 5;
        *ring.head.get_mut() = start;
        *ring.tail.get_mut() = start;
        let (mut p, mut c) = ring.split();
        let mut dst = [0u16; 3];
        for round in 0..10u16 {
            assert_eq!(p.push_slice(&[round, round + 100, round + 200]), 3);
            assert_eq!(c.pop_slice(&mut dst), 3);
            assert_eq!(dst, [round, round + 100, round + 200]);
        }
        assert!(c.is_empty());
    }

    #[test]
    fn drops_items_left_inside_and_only_those() {
        let item = Rc::new(());
        {
            let mut ring = BatchRing::<Rc<()>, 4>::new();
            let (mut p, mut c) = ring.split();
            for _ in 0..4 {
                assert!(p.push(Rc::clone(&item)).is_ok());
            }
            drop(c.pop());
            assert_eq!(Rc::strong_count(&item), 4);
            assert_eq!(
                p.push_iter(&mut core::iter::repeat_n(Rc::clone(&item), 3)),
                1
            );
            assert_eq!(Rc::strong_count(&item), 5);
        }
        assert_eq!(
            Rc::strong_count(&item),
            1,
            "the ring dropped its four items"
        );
    }

    #[test]
    fn a_new_split_picks_up_where_the_last_halves_stopped() {
        let mut ring = BatchRing::<u32, 8>::new();
        {
            let (mut p, mut c) = ring.split();
            assert_eq!(p.push_slice(&[1, 2, 3, 4]), 4);
            assert_eq!(c.pop(), Some(1));
        }
        let (_p, mut c) = ring.split();
        let mut dst = [0u32; 8];
        assert_eq!(c.pop_slice(&mut dst), 3);
        assert_eq!(dst[..3], [2, 3, 4]);
    }

    #[test]
    fn a_panicking_pop_each_keeps_the_rest() {
        let mut ring = BatchRing::<u32, 8>::new();
        let (mut p, mut c) = ring.split();
        assert_eq!(p.push_slice(&[1, 2, 3, 4, 5]), 5);
        let mut seen = Vec::new();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.pop_each(5, |v| {
                assert!(v != 3, "stop at three");
                seen.push(v);
            })
        }));
        assert!(caught.is_err());
        assert_eq!(seen, [1, 2]);
        assert_eq!(c.pop_each(5, |_| {}), 2, "4 and 5 are still there");
        assert_eq!(p.free_slots(), 8);
    }

    #[test]
    fn a_panicking_iterator_publishes_what_it_gave() {
        let mut ring = BatchRing::<u32, 8>::new();
        let (mut p, mut c) = ring.split();
        let mut iter = (1..10u32).inspect(|v| assert!(*v != 4, "stop at four"));
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.push_iter(&mut iter)));
        assert!(caught.is_err());
        let mut dst = [0u32; 8];
        assert_eq!(c.pop_slice(&mut dst), 3);
        assert_eq!(dst[..3], [1, 2, 3]);
    }

    #[test]
    fn zero_sized_items_count() {
        let mut ring = BatchRing::<(), 16>::new();
        let (mut p, mut c) = ring.split();
        assert_eq!(p.push_slice(&[(); 20]), 16);
        assert_eq!(p.push(()), Err(()));
        let mut dst = [(); 5];
        assert_eq!(c.pop_slice(&mut dst), 5);
        assert_eq!(c.len(), 11);
    }

    #[test]
    fn wide_items_keep_their_bytes() {
        let mut ring = BatchRing::<[u64; 8], 16>::new();
        let (mut p, mut c) = ring.split();
        for round in 0..40u64 {
            let items: Vec<[u64; 8]> = (0..5).map(|k| [round * 8 + k; 8]).collect();
            assert_eq!(p.push_slice(&items), 5);
            let mut dst = [[0u64; 8]; 5];
            assert_eq!(c.pop_slice(&mut dst), 5);
            assert_eq!(dst.to_vec(), items);
        }
    }

    #[test]
    fn the_slot_array_is_line_pair_aligned() {
        let ring = BatchRing::<u8, 64>::new();
        assert_eq!(ring.slots.as_ptr().addr() % ARRAY_ALIGN, 0);
        assert_eq!(format!("{ring:?}"), "BatchRing { capacity: 64, len: 0 }");
    }
}
