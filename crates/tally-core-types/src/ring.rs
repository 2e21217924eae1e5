//! [`SpscRing`]: a bounded single-producer single-consumer ring with no `Arc`.
//!
//! # Design
//! - `N` slots, `N` a power of two checked at compile time; positions are free-running
//!   `usize` counters and a slot is `position & (N - 1)` (all position arithmetic wraps:
//!   a unit test runs the ring across `usize::MAX`).
//! - Slots are laid out in *groups*: one 64-byte cache line holds a *stamp* followed by
//!   as many values as fit ([`SpscRing::SLOTS_PER_GROUP`]; on 64-bit targets 7 for a
//!   `u64`, 14 for a `u32`, and one for values over 28 bytes, where a group is one stamp
//!   and one value). Groups of one slot are not padded to a line: they follow each other
//!   at the stamp's and the value's alignment (48 bytes apart for a 40-byte value), so
//!   such a group may straddle two lines and share them with its neighbours; the
//!   one-line hand-over below holds for groups of several slots and for values aligned
//!   to a line.
//!   The stamp is the producer's position after the last value it wrote into the group.
//!   [`Consumer::pop`] checks the stamp of the group it reads instead of loading the
//!   producer's `tail`, so handing over one item moves **one** cache line between the
//!   cores (the group's, which the consumer must read anyway) instead of two (the `tail`
//!   line, then the slot's). This keeps the ping-pong round trip near the bare
//!   cache-line floor. Stamps are never cleared: the next lap's stamps are `N` higher.
//! - The consumer's `head` and the producer's `tail` live on separate
//!   [`CachePadded`] lines. Each side keeps its own position in a local field (it is the
//!   only writer) and a *cached* copy of the other side's position, refreshed only when
//!   the cache says the ring is full (producer) or empty (consumer).
//! - **Slots go back to the producer a group at a time.** A single pop publishes `head`
//!   only when it finishes a group, when it finds the ring empty, and when the
//!   [`Consumer`] is dropped; a batch pop publishes once at its end, and
//!   [`Consumer::release`] publishes on demand. Between those points the producer sees
//!   up to `SLOTS_PER_GROUP - 1` slots that the consumer has emptied as still occupied,
//!   so [`Producer::push`] may report a full ring that has that many free slots. The
//!   reason: a consumer that stores `head` on every pop pays for the `head` line on
//!   every pop whenever the producer is polling it (a full ring), and a stream of one
//!   item per op is limited by exactly that consumer
//!   (`docs/benchmarks/tally-core-types.md`).
//! - [`SpscRing::split`] borrows the ring mutably and hands out a [`Producer`] and a
//!   [`Consumer`] bound to that borrow. Both are `Send` when `T: Send`, so they move into
//!   `std::thread::scope` threads; the borrow checker guarantees one producer and one
//!   consumer at a time without reference counting. For threads that outlive a scope,
//!   [`SpscRing::leak`] makes a `'static` ring once at start-up.
//! - Batch operations ([`Producer::push_slice`], [`Producer::push_iter`],
//!   [`Consumer::pop_slice`], [`Consumer::pop_each`]) store one stamp per group and
//!   publish their index once per batch. The slice operations move a whole group at a
//!   time in a loop of constant length (a few wide moves, no `memcpy` call, no per-slot
//!   cursor step), and the group parts at a batch's ends in a few fixed-size pieces:
//!   8.1 instructions per item for a batch of 256 pushed and popped, against 28.6 slot
//!   by slot, and 329 instructions for a batch of 8, against 510 with `memcpy` calls for
//!   the parts (`ring_batch256/tally`, `ring_batch8/tally`, gated in CI). A batch pop
//!   reads the stamp past `tail` only when `tail` shows fewer items than it wants. The
//!   whole-group loops come in three
//!   copies, chosen at run time by the CPU's features: portable, AVX2 (two 32-byte
//!   moves per group and side) and, for values that are one 64-bit lane, AVX-512F (one
//!   64-byte load and one 64-byte store per group and side, the producer's masked to
//!   leave the stamp alone, in inline assembly).
//! - A [`Consumer`] passed to `mem::forget` never publishes its last position, so the
//!   ring cannot tell which of the items after the published `head` it took: it leaks
//!   all the items left inside (never drops them twice), and a later `split` starts
//!   empty. A forgotten [`Producer`] loses nothing: its last single pushes, past the
//!   published `tail`, are in the stamp of the group at `tail`, which `split`, `len`
//!   and the ring's `Drop` read.
//!
//! # Memory ordering
//! The producer writes a value, then the group's stamp with `Release`; it stores `tail`
//! with `Release` when a single push fills its group, at the end of a batch and when
//! the [`Producer`] is dropped, so `tail` may lag the producer by up to
//! `SLOTS_PER_GROUP - 1` items, all in the group at `tail`. A single push therefore
//! makes two stores: on a CPU whose stores wait in order behind the one to the line the
//! consumer reads, a third (`tail` on every push) held a one-item stream to 0.8-0.9x
//! rtrb's rate (`docs/benchmarks/tally-core-types.md`). The consumer loads the stamp
//! (single pops), or `tail` and then, unless `tail` already shows every item a batch
//! pop wants, the stamp of the group at `tail`, or at `head` when the consumer is past
//! `tail` (batch pops, `len`, `split`, the ring's `Drop`), with
//! `Acquire` before reading values; any stamp ahead of `head` is a position the
//! producer reached after writing every value below it. A consumer that took items by
//! their stamps may be ahead of the published `tail`, so every `tail - head` is clamped
//! at zero. Symmetrically the consumer moves values out, then
//! stores `head` with `Release`; the producer loads `head` with `Acquire` before
//! overwriting slots below it. This is checked by the loom tests (`tests/loom.rs`,
//! `--cfg tally_loom`).
//!
//! This module and `batch_ring.rs` hold all of the crate's `unsafe`.

use core::alloc::Layout;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering as CoreOrdering};

use crate::cache_padded::CachePadded;
use crate::sync::{AtomicUsize, Ordering, UnsafeCell};

/// The cell that holds one value.
type Cell<T> = UnsafeCell<MaybeUninit<T>>;

/// Bytes of a group of several slots: one cache line.
const LINE: usize = 64;

/// Items between `head` and a `tail` that may lag behind it: a consumer that took items
/// by their stamps can be ahead of the last published (or cached) `tail`, which then
/// counts as nothing ready rather than wrapping to a huge number.
#[inline]
const fn ready<const N: usize>(head: usize, tail: usize) -> usize {
    let n = tail.wrapping_sub(head);
    if n <= N { n } else { 0 }
}

/// Which copy of the whole-group loops the slice operations run.
#[cfg(all(target_arch = "x86_64", not(tally_loom)))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moves {
    /// Plain x86-64: the compiler's SSE2 moves.
    Portable,
    /// AVX2: 32-byte moves.
    Wide,
    /// AVX-512F (with AVX2): one 64-byte load and one 64-byte store per group, for
    /// values that are one 64-bit lane each (`SpscRing::LANES`); other types run `Wide`.
    Lanes,
}

/// The best copy this CPU runs (detected once, then cached loads), or a lower one that a
/// test on this thread asked for ([`with_moves`]).
#[cfg(all(target_arch = "x86_64", not(tally_loom)))]
#[inline]
fn moves() -> Moves {
    let best = if !std::arch::is_x86_feature_detected!("avx2") {
        Moves::Portable
    } else if std::arch::is_x86_feature_detected!("avx512f") {
        Moves::Lanes
    } else {
        Moves::Wide
    };
    #[cfg(test)]
    if let Some(cap) = MOVES_CAP.with(core::cell::Cell::get) {
        return best.min(cap);
    }
    best
}

/// Clears the upper halves of the vector registers (`vzeroupper`) after the inline
/// assembly of the AVX-512F copies: the compiler adds this after its own wide code but not
/// after assembly, and the portable code the copies return to would otherwise run its SSE
/// instructions against dirty upper halves, which costs on Intel cores.
///
/// # Safety
/// The CPU has AVX.
#[cfg(all(target_arch = "x86_64", not(tally_loom)))]
#[inline]
#[target_feature(enable = "avx")]
unsafe fn clean_upper_halves() {
    // SAFETY: `vzeroupper` changes only the vector registers' upper halves; the C ABI's
    // clobbers include every vector register, so the compiler keeps nothing in them
    // across it. The CPU has AVX (the caller's contract).
    unsafe {
        core::arch::asm!(
            "vzeroupper",
            clobber_abi("C"),
            options(nostack, nomem, preserves_flags)
        );
    }
}

#[cfg(all(test, target_arch = "x86_64", not(tally_loom)))]
std::thread_local! {
    /// Set by [`with_moves`]: the highest copy this thread's slice operations run.
    static MOVES_CAP: core::cell::Cell<Option<Moves>> = const { core::cell::Cell::new(None) };
}

/// Runs `f` with this thread's slice operations on copy `cap` at most, so that tests cover
/// every copy of the whole-group loops on a CPU that has the best one.
#[cfg(all(test, target_arch = "x86_64", not(tally_loom)))]
fn with_moves<R>(cap: Moves, f: impl FnOnce() -> R) -> R {
    MOVES_CAP.with(|m| m.set(Some(cap)));
    let r = f();
    MOVES_CAP.with(|m| m.set(None));
    r
}

/// Copies `len` values from `src` to `dst`, `len` below `limit` (a group's slot count,
/// at most 64): in pieces of 32, 16, 8, 4, 2 and 1 values, each of a length known at
/// compile time, so that each is a few moves in line; pieces of `limit` values or more
/// are never needed and compile away.
///
/// # Safety
/// `len < limit <= 64`; `src` is valid for reads and `dst` for writes of `len` values,
/// both aligned for `T`, and the two do not overlap.
#[cfg(not(tally_loom))]
#[allow(
    clippy::inline_always,
    reason = "the AVX2 copies of the group loops must compile this into their own bodies"
)]
#[inline(always)]
unsafe fn copy_short<T>(src: *const T, dst: *mut T, len: usize, limit: usize) {
    let mut at = 0;
    macro_rules! piece {
        ($k:literal) => {
            if limit > $k && len & $k != 0 {
                // SAFETY: `at + $k <= len`: `at` sums the larger pieces already copied,
                // the bits of `len` above `$k`; the caller's contract covers `..len`.
                unsafe { core::ptr::copy_nonoverlapping(src.add(at), dst.add(at), $k) };
                at += $k;
            }
        };
    }
    piece!(32);
    piece!(16);
    piece!(8);
    piece!(4);
    piece!(2);
    piece!(1);
    debug_assert_eq!(at, len, "copy_short takes fewer values than 64");
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Where a side of the ring is: byte offsets of its group and of its next slot in the
/// group array, and how many slots of the group are left (including that slot).
#[derive(Debug, Clone, Copy)]
struct Cursor {
    group: usize,
    value: usize,
    left: usize,
}

/// A half's handle on the ring's group array: the base pointer, valid for `'a`.
struct Groups<'a, T, const N: usize> {
    base: NonNull<u8>,
    _ring: PhantomData<&'a SpscRing<T, N>>,
}

impl<'a, T, const N: usize> Groups<'a, T, N> {
    fn of(ring: &'a SpscRing<T, N>) -> Self {
        Self {
            base: ring.groups,
            _ring: PhantomData,
        }
    }

    /// The stamp of the group under `cursor`.
    #[inline]
    fn stamp(&self, cursor: &Cursor) -> &'a AtomicUsize {
        // SAFETY: `base` is the group array of the ring borrowed for `'a`; cursors only
        // hold group offsets below `BYTES`, where `new` wrote an `AtomicUsize`.
        unsafe { self.base.add(cursor.group).cast::<AtomicUsize>().as_ref() }
    }

    /// The cell of the slot under `cursor`.
    #[inline]
    fn cell(&self, cursor: &Cursor) -> &'a Cell<T> {
        // SAFETY: as in `stamp`; cursors only hold value offsets of slots that exist,
        // where `new` wrote a `Cell<T>`.
        unsafe { self.base.add(cursor.value).cast::<Cell<T>>().as_ref() }
    }

    /// Writes `src` into the slots from `cursor` on. A whole group is a loop of constant
    /// length, which compiles to a few wide moves; a part of one goes out of line, so
    /// that the compiler does not merge both into a `memcpy` call of variable length.
    ///
    /// # Safety
    /// `src.len() <= cursor.left`, and those slots hold no value the consumer may read.
    #[inline]
    unsafe fn write_run(&self, cursor: &Cursor, src: &[T])
    where
        T: Copy,
    {
        if src.len() == SpscRing::<T, N>::SLOTS_PER_GROUP {
            for k in 0..SpscRing::<T, N>::SLOTS_PER_GROUP {
                if let Some(&value) = src.get(k) {
                    // SAFETY: `k < src.len() <= cursor.left`; the caller's contract.
                    unsafe { self.cell_after(cursor, k) }
                        .with_mut(|c| unsafe { (*c).write(value) });
                }
            }
        } else {
            // SAFETY: the caller's contract.
            unsafe { self.write_part(cursor, src) };
        }
    }

    /// [`Groups::write_run`] for part of a group: fewer values than a group holds, copied
    /// in a few fixed-size pieces ([`copy_short`]) rather than by a `memcpy` call of
    /// variable length, which cost a batch of 8 more than its values' moves.
    ///
    /// # Safety
    /// As for `write_run`.
    #[inline]
    unsafe fn write_part(&self, cursor: &Cursor, src: &[T])
    where
        T: Copy,
    {
        #[cfg(not(tally_loom))]
        if src.len() < SpscRing::<T, N>::SLOTS_PER_GROUP {
            // SAFETY: the `src.len() <= cursor.left` slots from the cursor's are
            // consecutive cells of its group (`cell_after`), laid out as `T`s
            // (`UnsafeCell<MaybeUninit<T>>` is `repr(transparent)` over `T`'s layout),
            // free for the producer (the caller's contract), and not in `src`, which the
            // caller borrows; fewer than a group's slots, as `copy_short` needs.
            unsafe {
                copy_short::<T>(
                    src.as_ptr(),
                    self.base.add(cursor.value).cast::<T>().as_ptr(),
                    src.len(),
                    SpscRing::<T, N>::SLOTS_PER_GROUP,
                );
            }
            return;
        }
        for (k, &value) in src.iter().enumerate() {
            // SAFETY: `k < src.len() <= cursor.left`; the caller's contract.
            unsafe { self.cell_after(cursor, k) }.with_mut(|c| unsafe { (*c).write(value) });
        }
    }

    /// Moves the values from `cursor` on into `dst` (dropping what it held), adding one
    /// to `head` before each move, so that a panicking `Drop` of an old value in `dst`
    /// leaves `head` past every value already taken. Whole groups and parts of one as in
    /// [`Groups::write_run`].
    ///
    /// # Safety
    /// `dst.len() <= cursor.left`, and those slots hold initialised values that nothing
    /// else reads or drops, now or later.
    #[inline]
    unsafe fn read_run(&self, cursor: &Cursor, dst: &mut [T], head: &mut usize) {
        if dst.len() == SpscRing::<T, N>::SLOTS_PER_GROUP {
            for k in 0..SpscRing::<T, N>::SLOTS_PER_GROUP {
                if let Some(d) = dst.get_mut(k) {
                    // SAFETY: `k < dst.len() <= cursor.left`; the caller's contract.
                    let value = unsafe { self.cell_after(cursor, k) }
                        .with_mut(|p| unsafe { (*p).assume_init_read() });
                    *head = head.wrapping_add(1);
                    *d = value;
                }
            }
        } else {
            // SAFETY: the caller's contract.
            unsafe { self.read_part(cursor, dst, head) };
        }
    }

    /// Writes `body`, whole groups, from the group under `at` on, stamping each group
    /// after its values, and returns the cursor at the first slot after them and the
    /// position after the last. The loop runs in a copy compiled for AVX2 where the CPU
    /// has it: a group of seven `u64`s then moves in two overlapping 32-byte loads and
    /// stores instead of four of each. On one thread a batch of 256 `u64`s pushed and
    /// popped took 2,157 instructions instead of 2,495 (2,079 since the ends of a batch
    /// move in pieces, [`copy_short`]); two threads streaming batches
    /// gained about a tenth on an AMD EPYC host (`docs/benchmarks/tally-core-types.md`).
    /// Values that are one 64-bit lane take [`Groups::write_groups_lanes`] on a CPU with
    /// AVX-512F, which took that stream from about 0.6x to about 0.8x rtrb's rate.
    ///
    /// # Safety
    /// `at` is at the start of a group that is not the last, `body.len()` is a multiple
    /// of the group length no larger than [`SpscRing::whole_groups`] allows, and those
    /// slots hold no value the consumer may read.
    #[inline]
    unsafe fn write_groups(&self, at: Cursor, tail: usize, body: &[T]) -> (Cursor, usize)
    where
        T: Copy,
    {
        #[cfg(all(target_arch = "x86_64", not(tally_loom)))]
        match moves() {
            Moves::Lanes if SpscRing::<T, N>::LANES => {
                // SAFETY: the CPU has AVX-512F and AVX2 (`moves`) and `T` is one lane
                // (`LANES`); the rest is the caller's contract.
                return unsafe { self.write_groups_lanes(at, tail, body) };
            }
            Moves::Lanes | Moves::Wide => {
                // SAFETY: the CPU has AVX2 (`moves`); the rest is the caller's contract.
                return unsafe { self.write_groups_avx2(at, tail, body) };
            }
            Moves::Portable => {}
        }
        // SAFETY: the caller's contract.
        unsafe { self.write_groups_portable(at, tail, body) }
    }

    /// [`Groups::write_groups`] compiled for AVX2.
    ///
    /// # Safety
    /// As for `write_groups`, and the CPU has AVX2.
    #[cfg(all(target_arch = "x86_64", not(tally_loom)))]
    #[target_feature(enable = "avx2")]
    unsafe fn write_groups_avx2(&self, at: Cursor, tail: usize, body: &[T]) -> (Cursor, usize)
    where
        T: Copy,
    {
        // SAFETY: the caller's contract.
        unsafe { self.write_groups_portable(at, tail, body) }
    }

    /// The loop of [`Groups::write_groups`], inlined into each of its callers.
    ///
    /// # Safety
    /// As for `write_groups`.
    #[allow(
        clippy::inline_always,
        reason = "the AVX2 copy must compile this loop into its own body; a call would run it as portable code"
    )]
    #[inline(always)]
    unsafe fn write_groups_portable(
        &self,
        at: Cursor,
        mut tail: usize,
        body: &[T],
    ) -> (Cursor, usize)
    where
        T: Copy,
    {
        let spg = SpscRing::<T, N>::SLOTS_PER_GROUP;
        // One offset in a register: a `Cursor` updated in place went to memory once per
        // group (it arrives by reference), a store queued behind the ring's.
        let mut group = at.group;
        for chunk in body.chunks_exact(spg) {
            let here = SpscRing::<T, N>::group_cursor(group);
            // SAFETY: `here` is at the start of a group before the last (the caller's
            // contract, then one group further per loop), so `chunk.len()` is its length.
            unsafe { self.write_run(&here, chunk) };
            tail = tail.wrapping_add(spg);
            self.stamp(&here).store(tail, Ordering::Release);
            group += SpscRing::<T, N>::STRIDE;
        }
        (SpscRing::<T, N>::group_cursor(group), tail)
    }

    /// Moves whole groups from the group under `cursor` on into `body` as
    /// [`Groups::read_run`] does, and returns the cursor at the first slot after them.
    /// Compiled for AVX2 where the CPU has it, as [`Groups::write_groups`].
    ///
    /// # Safety
    /// `cursor` is at the start of a group that is not the last, `body.len()` is a
    /// multiple of the group length no larger than [`SpscRing::whole_groups`] allows, and
    /// those slots hold initialised values that nothing else reads or drops.
    #[inline]
    unsafe fn read_groups(&self, cursor: Cursor, body: &mut [T], head: &mut usize) -> Cursor {
        #[cfg(all(target_arch = "x86_64", not(tally_loom)))]
        match moves() {
            Moves::Lanes if SpscRing::<T, N>::LANES => {
                // SAFETY: the CPU has AVX-512F and AVX2 (`moves`) and `T` is one lane
                // (`LANES`); the rest is the caller's contract.
                return unsafe { self.read_groups_lanes(cursor, body, head) };
            }
            Moves::Lanes | Moves::Wide => {
                // SAFETY: the CPU has AVX2 (`moves`); the rest is the caller's contract.
                return unsafe { self.read_groups_avx2(cursor, body, head) };
            }
            Moves::Portable => {}
        }
        // SAFETY: the caller's contract.
        unsafe { self.read_groups_portable(cursor, body, head) }
    }

    /// [`Groups::read_groups`] compiled for AVX2.
    ///
    /// # Safety
    /// As for `read_groups`, and the CPU has AVX2.
    #[cfg(all(target_arch = "x86_64", not(tally_loom)))]
    #[target_feature(enable = "avx2")]
    unsafe fn read_groups_avx2(&self, cursor: Cursor, body: &mut [T], head: &mut usize) -> Cursor {
        // SAFETY: the caller's contract.
        unsafe { self.read_groups_portable(cursor, body, head) }
    }

    /// The loop of [`Groups::read_groups`], inlined into each of its callers.
    ///
    /// # Safety
    /// As for `read_groups`.
    #[allow(
        clippy::inline_always,
        reason = "the AVX2 copy must compile this loop into its own body; a call would run it as portable code"
    )]
    #[inline(always)]
    unsafe fn read_groups_portable(&self, at: Cursor, body: &mut [T], head: &mut usize) -> Cursor {
        let mut group = at.group;
        for chunk in body.chunks_exact_mut(SpscRing::<T, N>::SLOTS_PER_GROUP) {
            let here = SpscRing::<T, N>::group_cursor(group);
            // SAFETY: `here` is at the start of a group before the last (the caller's
            // contract, then one group further per loop), so `chunk.len()` is its length.
            unsafe { self.read_run(&here, chunk, head) };
            group += SpscRing::<T, N>::STRIDE;
        }
        SpscRing::<T, N>::group_cursor(group)
    }

    /// [`Groups::write_groups`] for values that are one 64-bit lane each
    /// ([`SpscRing::LANES`]) on AVX-512F: a group is one 64-byte load from the caller's
    /// slice, starting one value before the group's first, and one store of lanes 1 to 7
    /// into the line under a mask that leaves the stamp's lane 0 alone. The first group
    /// has no value before it in the slice and moves as the other copies move it. The moves are
    /// inline assembly rather than vector intrinsics so that values move as bytes, as a
    /// copy of `T` does: padding, uninitialised bytes and pointer provenance included.
    ///
    /// # Safety
    /// As for `write_groups`, `T` is one lane (`LANES`), and the CPU has AVX-512F and AVX2.
    #[cfg(all(target_arch = "x86_64", not(tally_loom)))]
    #[target_feature(enable = "avx512f,avx2")]
    unsafe fn write_groups_lanes(&self, at: Cursor, mut tail: usize, body: &[T]) -> (Cursor, usize)
    where
        T: Copy,
    {
        let groups = body.len() / 7;
        let src = body.as_ptr();
        let mut group = at.group;
        if let Some(first) = body.get(..7) {
            let here = SpscRing::<T, N>::group_cursor(group);
            // SAFETY: `here` is at the start of a group before the last (the caller's
            // contract), and `first` is one group of 7 (`LANES`).
            unsafe { self.write_run(&here, first) };
            tail = tail.wrapping_add(7);
            self.stamp(&here).store(tail, Ordering::Release);
            group += SpscRing::<T, N>::STRIDE;
        }
        for g in 1..groups {
            // SAFETY: `group` is the byte offset of group `g` of the batch, a group before
            // the last (the caller's contract), inside the group array; lines are 64-byte
            // aligned (`LANES`), so `line` and the 64 bytes after it are the group's line.
            let line = unsafe { self.base.add(group) }.as_ptr();
            // SAFETY: `7 * g < body.len()`, so `src + 7 * g` and the value before it are
            // in `body`, and the 64 bytes from that value (8 bytes, `LANES`) end at the
            // group's last value, inside `body`. The store writes lanes 1 to 7 of the
            // line (mask 0xFE), its 7 slots, which hold no value the consumer may read
            // (the caller's contract); lane 0, the stamp, which a consumer may be
            // loading, is not written. The CPU has AVX-512F (the caller's contract).
            unsafe {
                core::arch::asm!(
                    "vmovdqu64 {v}, zmmword ptr [{src} - 8]",
                    "vmovdqa64 zmmword ptr [{line}] {{{k}}}, {v}",
                    src = in(reg) src.add(7 * g),
                    line = in(reg) line,
                    k = in(kreg) 0xFE_u16,
                    v = out(zmm_reg) _,
                    options(nostack, preserves_flags),
                );
            }
            tail = tail.wrapping_add(7);
            self.stamp(&SpscRing::<T, N>::group_cursor(group))
                .store(tail, Ordering::Release);
            group += SpscRing::<T, N>::STRIDE;
        }
        // SAFETY: the CPU has AVX (the caller's contract).
        unsafe { clean_upper_halves() };
        (SpscRing::<T, N>::group_cursor(group), tail)
    }

    /// [`Groups::read_groups`] for values that are one 64-bit lane each
    /// ([`SpscRing::LANES`]) on AVX-512F: a group is one aligned 64-byte load of its
    /// line and one store into `body` starting one value before the group's place, so
    /// that the line's lane 0 (its stamp) lands on the last value of the group before.
    /// The groups go from the last to the first, each overwriting that lane with its own
    /// last value; the first group moves as the other copies move it. Inline assembly, as in
    /// [`Groups::write_groups_lanes`].
    ///
    /// # Safety
    /// As for `read_groups`, `T` is one lane (`LANES`), and the CPU has AVX-512F and AVX2.
    #[cfg(all(target_arch = "x86_64", not(tally_loom)))]
    #[target_feature(enable = "avx512f,avx2")]
    unsafe fn read_groups_lanes(&self, at: Cursor, body: &mut [T], head: &mut usize) -> Cursor {
        let groups = body.len() / 7;
        let dst = body.as_mut_ptr();
        for g in (1..groups).rev() {
            let group = at.group + g * SpscRing::<T, N>::STRIDE;
            // SAFETY: group `g < groups` of the batch is a group before the last (the
            // caller's contract), inside the group array, 64-byte aligned (`LANES`).
            let line = unsafe { self.base.add(group) }.as_ptr();
            // SAFETY: `7 * g < body.len()`, so `dst + 7 * g` is in `body`, and the 64
            // bytes from one value (8 bytes, `LANES`) before it end at the group's last
            // value, inside `body`. The load reads the whole line: the group's 7 values,
            // initialised and ours to move (the caller's contract), and its stamp, whose
            // last store the producer made before the `tail` or later stamp that showed
            // us the group (acquired), and which it does not store again before we
            // release the group. The stamp's bytes land on value `7 * g - 1`, which the move of
            // group `g - 1` overwrites next (`T` has no drop glue, `LANES`, so nothing
            // reads or drops it in between). The CPU has AVX-512F (the caller's contract).
            unsafe {
                core::arch::asm!(
                    "vmovdqa64 {v}, zmmword ptr [{line}]",
                    "vmovdqu64 zmmword ptr [{dst} - 8], {v}",
                    line = in(reg) line,
                    dst = in(reg) dst.add(7 * g),
                    v = out(zmm_reg) _,
                    options(nostack, preserves_flags),
                );
            }
        }
        if let Some(first) = body.get_mut(..7) {
            let here = SpscRing::<T, N>::group_cursor(at.group);
            // SAFETY: `here` is at the start of the batch's first group, before the last
            // (the caller's contract), and `first` is one group of 7 (`LANES`).
            unsafe { self.read_run(&here, first, head) };
        }
        *head = head.wrapping_add(groups.saturating_sub(1) * 7);
        // SAFETY: the CPU has AVX (the caller's contract).
        unsafe { clean_upper_halves() };
        SpscRing::<T, N>::group_cursor(at.group + groups * SpscRing::<T, N>::STRIDE)
    }

    /// [`Groups::read_run`] for part of a group; for values without drop glue, in pieces
    /// as [`Groups::write_part`].
    ///
    /// # Safety
    /// As for `read_run`.
    #[inline]
    unsafe fn read_part(&self, cursor: &Cursor, dst: &mut [T], head: &mut usize) {
        #[cfg(not(tally_loom))]
        if !core::mem::needs_drop::<T>() && dst.len() < SpscRing::<T, N>::SLOTS_PER_GROUP {
            // SAFETY: the `dst.len() <= cursor.left` slots from the cursor's are
            // consecutive cells of its group laid out as `T`s (see `write_part`), holding
            // initialised values that nothing else reads or drops (the caller's
            // contract), and not in `dst`, which the caller borrows mutably. The values
            // in `dst` are overwritten without being dropped, which for a `T` without
            // drop glue is what dropping them would do; `head` moves past the values
            // moved out, so none is read twice.
            unsafe {
                copy_short::<T>(
                    self.base.add(cursor.value).cast::<T>().as_ptr(),
                    dst.as_mut_ptr(),
                    dst.len(),
                    SpscRing::<T, N>::SLOTS_PER_GROUP,
                );
            }
            *head = head.wrapping_add(dst.len());
            return;
        }
        for (k, d) in dst.iter_mut().enumerate() {
            // SAFETY: `k < dst.len() <= cursor.left`; the caller's contract.
            let value = unsafe { self.cell_after(cursor, k) }
                .with_mut(|p| unsafe { (*p).assume_init_read() });
            *head = head.wrapping_add(1);
            *d = value;
        }
    }

    /// The cell `k` slots after the one under `cursor`, in the same group.
    ///
    /// # Safety
    /// `k < cursor.left`.
    #[inline]
    unsafe fn cell_after(&self, cursor: &Cursor, k: usize) -> &'a Cell<T> {
        // SAFETY: the `left` slots from the cursor's are slots of its group, which exist
        // (see `cell`), and the caller keeps `k` below `left`.
        unsafe {
            self.base
                .add(cursor.value + k * size_of::<Cell<T>>())
                .cast::<Cell<T>>()
                .as_ref()
        }
    }
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
    /// Consumer position as last published: the consumer has taken every item below it.
    /// Stored by the consumer only (see the module docs for when).
    head: CachePadded<AtomicUsize>,
    /// Producer position as last published: the producer has written every slot below
    /// it. Stored by the producer only, when a single push fills a group, at the end of
    /// a batch push and when the [`Producer`] is dropped; the producer may be up to
    /// `SLOTS_PER_GROUP - 1` slots further on (see [`SpscRing::seen_tail`]).
    /// Invariant (in wrapping arithmetic): `head <= seen_tail(head) <= head + N`, and
    /// `tail <= head + N`; `head` may be past `tail` (a consumer takes items by their
    /// stamps), by at most `SLOTS_PER_GROUP`.
    tail: CachePadded<AtomicUsize>,
    /// Set by `split`, cleared when the [`Consumer`] is dropped: still set afterwards
    /// means the consumer was forgotten and `head` may be behind what it took.
    consumer_out: AtomicBool,
    /// Set by `split`, cleared when the [`Producer`] is dropped (after it published its
    /// exact position): still set afterwards means the producer was forgotten and
    /// `tail` may be behind what it wrote.
    producer_out: AtomicBool,
    /// `GROUPS` groups of `STRIDE` bytes, allocated with `layout()` in `new`: each a stamp
    /// (`AtomicUsize`) at offset 0 and `Cell<T>`s from `VALUES_AT`, all initialised.
    /// Slots `head..seen_tail(head)` (masked) hold initialised values; the others are
    /// uninitialised.
    groups: NonNull<u8>,
    /// The ring owns `T` values, and is invariant in `T` (as a cell of `T` is): a
    /// producer writes `T`s through a shared reference, so it must not be able to
    /// shorten the lifetimes inside `T`.
    _owns: PhantomData<core::cell::UnsafeCell<T>>,
}

// SAFETY: the ring owns `T` values (moving it moves them) and its group array, which
// nothing else points to; sound to send when `T: Send`.
unsafe impl<T: Send, const N: usize> Send for SpscRing<T, N> {}

// SAFETY: the ring hands `T` values from one thread to another, which is sound when
// `T: Send`. Shared access (`&SpscRing`) only reaches slots through a `Producer` or
// `Consumer`, of which `split(&mut self)` makes exactly one each; the head/tail and
// stamp protocol gives each slot a single accessor at a time.
unsafe impl<T: Send, const N: usize> Sync for SpscRing<T, N> {}

impl<T, const N: usize> SpscRing<T, N> {
    /// Compile-time check that `N` is a non-zero power of two small enough for the stamps
    /// (see `Consumer::pop`) and that the group array fits the address space.
    const CHECKS: () = assert!(
        N.is_power_of_two() && N <= usize::MAX / 4 && Self::BYTES <= isize::MAX as usize / 2,
        "SpscRing capacity N must be a power of two no larger than usize::MAX / 4, and N slots of T must fit in memory"
    );
    const MASK: usize = N - 1;

    const CELL_SIZE: usize = size_of::<Cell<T>>();
    const CELL_ALIGN: usize = align_of::<Cell<T>>();
    /// Offset of the first value in a group, after the stamp.
    const VALUES_AT: usize = size_of::<AtomicUsize>().next_multiple_of(Self::CELL_ALIGN);

    /// Number of slots that share one cache line and one stamp: as many values as fit in
    /// a 64-byte line after the stamp (at least one, at most `N`). The consumer hands
    /// slots back to the producer a group at a time (see [`Consumer::release`]).
    pub const SLOTS_PER_GROUP: usize = {
        let fit = if Self::CELL_SIZE == 0 {
            LINE
        } else if Self::VALUES_AT >= LINE {
            1
        } else {
            (LINE - Self::VALUES_AT) / Self::CELL_SIZE
        };
        let fit = if fit == 0 { 1 } else { fit };
        if fit > N { N } else { fit }
    };
    const GROUP_ALIGN: usize = max(
        max(align_of::<AtomicUsize>(), Self::CELL_ALIGN),
        if Self::SLOTS_PER_GROUP > 1 { LINE } else { 1 },
    );
    /// Bytes from one group to the next: a whole line when a group holds several slots.
    const STRIDE: usize = (Self::VALUES_AT + Self::SLOTS_PER_GROUP * Self::CELL_SIZE)
        .next_multiple_of(Self::GROUP_ALIGN);
    /// Alignment of the group array: line pairs (128 bytes) when groups are lines.
    const ALLOC_ALIGN: usize = if Self::SLOTS_PER_GROUP > 1 {
        max(Self::GROUP_ALIGN, 2 * LINE)
    } else {
        Self::GROUP_ALIGN
    };
    const GROUPS: usize = N.div_ceil(Self::SLOTS_PER_GROUP);
    /// Slots in the last group (fewer than the others when they do not divide `N`).
    const LAST_LEN: usize = N - (Self::GROUPS - 1) * Self::SLOTS_PER_GROUP;
    const LAST_GROUP: usize = (Self::GROUPS - 1) * Self::STRIDE;
    const BYTES: usize = Self::GROUPS * Self::STRIDE;
    /// Whether a value is one 64-bit lane of a 64-byte aligned line that holds the stamp
    /// in lane 0 and 7 values in lanes 1 to 7, with no drop glue: then the slice
    /// operations may move whole groups as lanes (`Groups::write_groups_lanes`).
    #[cfg(all(target_arch = "x86_64", not(tally_loom)))]
    const LANES: bool = Self::CELL_SIZE == 8
        && Self::CELL_ALIGN == 8
        && Self::SLOTS_PER_GROUP == 7
        && Self::VALUES_AT == 8
        && Self::STRIDE == LINE
        && Self::GROUP_ALIGN == LINE
        && Self::ALLOC_ALIGN.is_multiple_of(LINE)
        && !core::mem::needs_drop::<T>();

    /// An empty ring. This allocates the group array once (on the heap, so that large rings
    /// do not live on the stack); nothing allocates afterwards.
    pub fn new() -> Self {
        let () = Self::CHECKS;
        let layout = Self::layout();
        // SAFETY: `layout` has a non-zero size (every group holds a stamp).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(groups) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        for g in 0..Self::GROUPS {
            let at = g * Self::STRIDE;
            let first = g * Self::SLOTS_PER_GROUP;
            let len = Self::group_len(g);
            // As if the lap before the first had filled the group: a stamp at or below
            // every position of the group in the first lap.
            let stamp = AtomicUsize::new(first.wrapping_add(len).wrapping_sub(N));
            // SAFETY: `at` is a group offset inside the allocation, aligned for a stamp
            // (`STRIDE` and the allocation are multiples of `GROUP_ALIGN`).
            unsafe { groups.add(at).cast::<AtomicUsize>().write(stamp) };
            for k in 0..len {
                let cell: Cell<T> = UnsafeCell::new(MaybeUninit::uninit());
                // SAFETY: slot `k < len` of the group lies inside the allocation and is
                // aligned for `Cell<T>` (`VALUES_AT` and `CELL_SIZE` are multiples of
                // its alignment).
                unsafe {
                    groups
                        .add(at + Self::VALUES_AT + k * Self::CELL_SIZE)
                        .cast::<Cell<T>>()
                        .write(cell);
                }
            }
        }
        Self {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            consumer_out: AtomicBool::new(false),
            producer_out: AtomicBool::new(false),
            groups,
            _owns: PhantomData,
        }
    }

    /// The group array's layout, computed at compile time: `CHECKS` bounds `BYTES` and
    /// `ALLOC_ALIGN` is a power of two, so this cannot fail, and if it ever did the build
    /// would stop here rather than a program at run time.
    const LAYOUT: Layout = match Layout::from_size_align(Self::BYTES, Self::ALLOC_ALIGN) {
        Ok(layout) => layout,
        Err(_) => panic!("SpscRing group layout does not fit: see SpscRing::CHECKS"),
    };

    #[inline]
    fn layout() -> Layout {
        let () = Self::CHECKS;
        Self::LAYOUT
    }

    /// Leaks a new ring so that its producer and consumer can live for the whole program
    /// (threads not bound to a scope). Meant for rings made once at start-up: the memory is
    /// never returned.
    pub fn leak() -> &'static mut Self {
        Box::leak(Box::new(Self::new()))
    }

    /// Splits the ring into its producer and consumer half. Items already in the ring
    /// stay there; the halves pick up where previous ones stopped, also after a forgotten
    /// producer (unless the previous consumer was forgotten: see the module docs).
    pub fn split(&mut self) -> (Producer<'_, T, N>, Consumer<'_, T, N>) {
        let tail = if self.producer_out.load(CoreOrdering::Relaxed) {
            // The last producer was forgotten: its last single pushes may be past the
            // published `tail`, in the group its stamp shows. Publish them.
            let tail = self.seen_tail(self.head.load(Ordering::Acquire));
            self.tail.store(tail, Ordering::Release);
            tail
        } else {
            self.tail.load(Ordering::Acquire)
        };
        self.producer_out.store(true, CoreOrdering::Relaxed);
        if self.consumer_out.load(CoreOrdering::Relaxed) {
            // The last consumer was forgotten: the items after `head` may have been taken.
            // Leak them all rather than hand any out twice.
            self.head.store(tail, Ordering::Release);
        }
        let head = self.head.load(Ordering::Acquire);
        self.consumer_out.store(true, CoreOrdering::Relaxed);
        let ring: &Self = self;
        (
            Producer {
                ring,
                groups: Groups::of(ring),
                tail,
                head_cache: head,
                cursor: Self::cursor(tail),
                _not_sync: PhantomData,
            },
            Consumer {
                ring,
                groups: Groups::of(ring),
                head,
                released: head,
                tail_cache: tail,
                cursor: Self::cursor(head),
                _not_sync: PhantomData,
            },
        )
    }

    /// Number of slots.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Number of items in the ring, counting items a consumer took but has not yet
    /// released.
    pub fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        ready::<N>(head, self.seen_tail(head))
    }

    /// The producer's position as far as a reader at `head` can see it: the published
    /// `tail`, or the stamp of the group at `tail` (or at `head`, if that is further on)
    /// when it shows more. A single push publishes `tail` only when it fills its group,
    /// so the producer may be up to `SLOTS_PER_GROUP - 1` items past `tail`, all inside
    /// the group at `tail`, whose stamp has them. Exact when no producer is running.
    ///
    /// Any stamp is a position the producer once reached after its release store of the
    /// values below it, so a stamp ahead of `head` (and at most `N` ahead, as every
    /// position the producer reaches is) counts every item up to it as ready; a stamp
    /// from an earlier lap is at or below `head` and counts nothing.
    fn seen_tail(&self, head: usize) -> usize {
        self.seen_tail_from(head, self.tail.load(Ordering::Acquire))
    }

    /// [`SpscRing::seen_tail`] with `tail` already loaded (with `Acquire`).
    fn seen_tail_from(&self, head: usize, tail: usize) -> usize {
        let from = if ready::<N>(head, tail) == 0 {
            head
        } else {
            tail
        };
        let stamp = Groups::of(self)
            .stamp(&Self::cursor(from))
            .load(Ordering::Acquire);
        head.wrapping_add(max(ready::<N>(head, tail), ready::<N>(head, stamp)))
    }

    /// Whether the ring is empty (see [`SpscRing::len`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots in group `g`.
    const fn group_len(g: usize) -> usize {
        Self::len_at(g * Self::STRIDE)
    }

    /// The cursor of `position`.
    #[inline]
    fn cursor(position: usize) -> Cursor {
        let index = position & Self::MASK;
        let g = index / Self::SLOTS_PER_GROUP;
        let k = index % Self::SLOTS_PER_GROUP;
        let len = Self::group_len(g);
        let group = g * Self::STRIDE;
        Cursor {
            group,
            value: group + Self::VALUES_AT + k * Self::CELL_SIZE,
            left: len - k,
        }
    }

    /// Moves `cursor` past one slot. Returns whether that finished its group.
    #[inline]
    fn advance(cursor: &mut Cursor) -> bool {
        Self::advance_by(cursor, 1)
    }

    /// Moves `cursor` past `run` slots of its group (`run <= cursor.left`). Returns
    /// whether that finished the group.
    #[inline]
    fn advance_by(cursor: &mut Cursor, run: usize) -> bool {
        cursor.value += run * Self::CELL_SIZE;
        cursor.left -= run;
        if cursor.left != 0 {
            return false;
        }
        cursor.group = if cursor.group == Self::LAST_GROUP {
            0
        } else {
            cursor.group + Self::STRIDE
        };
        cursor.value = cursor.group + Self::VALUES_AT;
        cursor.left = Self::len_at(cursor.group);
        true
    }

    /// How many whole groups a batch of `items` can fill or empty from `cursor` in the
    /// fast loop of the slice operations: none unless the cursor is at the start of a
    /// group; never the last group, whose length may differ (the general step handles it).
    #[inline]
    fn whole_groups(cursor: &Cursor, items: usize) -> usize {
        if cursor.left != Self::SLOTS_PER_GROUP || cursor.group >= Self::LAST_GROUP {
            return 0;
        }
        (items / Self::SLOTS_PER_GROUP).min((Self::LAST_GROUP - cursor.group) / Self::STRIDE)
    }

    /// The cursor at the first slot of the group at byte offset `group`.
    #[inline]
    fn group_cursor(group: usize) -> Cursor {
        Cursor {
            group,
            value: group + Self::VALUES_AT,
            left: Self::len_at(group),
        }
    }

    /// Slots in the group at byte offset `group`.
    #[inline]
    const fn len_at(group: usize) -> usize {
        if group == Self::LAST_GROUP {
            Self::LAST_LEN
        } else {
            Self::SLOTS_PER_GROUP
        }
    }
}

impl<T, const N: usize> Default for SpscRing<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> SpscRing<T, N> {
    /// Drops the `count` items from `cursor` on. If one of them panics in its `Drop`, the
    /// rest are still dropped while unwinding (a second panic then aborts, as in a `Vec`).
    ///
    /// # Safety
    /// The `count` slots from `cursor` on hold initialised values that nothing else reads
    /// or drops, now or later.
    unsafe fn drop_items(&self, mut cursor: Cursor, mut count: usize) {
        /// Drops the items after the one being dropped if its `Drop` unwinds.
        struct Rest<'r, T, const N: usize> {
            ring: &'r SpscRing<T, N>,
            cursor: Cursor,
            count: usize,
        }
        impl<T, const N: usize> Drop for Rest<'_, T, N> {
            fn drop(&mut self) {
                // SAFETY: the slots after the one whose `Drop` panicked: the caller's
                // contract, less the slots already dropped.
                unsafe { self.ring.drop_items(self.cursor, self.count) };
            }
        }
        let groups = Groups::of(self);
        while count > 0 {
            let at = cursor;
            Self::advance(&mut cursor);
            count -= 1;
            let rest = Rest {
                ring: self,
                cursor,
                count,
            };
            // SAFETY: the caller's contract; `rest` covers only the slots after this one.
            groups
                .cell(&at)
                .with_mut(|p| unsafe { (*p).assume_init_drop() });
            core::mem::forget(rest);
        }
    }
}

impl<T, const N: usize> Drop for SpscRing<T, N> {
    fn drop(&mut self) {
        /// Frees the group array at the end of `drop`, also when an item's `Drop` panics.
        struct Free<T, const N: usize>(NonNull<u8>, PhantomData<T>);
        impl<T, const N: usize> Drop for Free<T, N> {
            fn drop(&mut self) {
                let base = self.0;
                for g in 0..SpscRing::<T, N>::GROUPS {
                    let at = g * SpscRing::<T, N>::STRIDE;
                    for k in 0..SpscRing::<T, N>::group_len(g) {
                        let cell =
                            at + SpscRing::<T, N>::VALUES_AT + k * SpscRing::<T, N>::CELL_SIZE;
                        // SAFETY: `new` wrote a `Cell<T>` here; dropping the cell does not
                        // drop its `MaybeUninit` content (the ring's items were dropped or
                        // leaked before), and nothing uses it again.
                        unsafe {
                            core::ptr::drop_in_place(base.add(cell).cast::<Cell<T>>().as_ptr());
                        };
                    }
                    // SAFETY: `new` wrote an `AtomicUsize` at each group offset; nothing
                    // uses it again.
                    unsafe {
                        core::ptr::drop_in_place(base.add(at).cast::<AtomicUsize>().as_ptr());
                    }
                }
                // SAFETY: allocated in `new` with this layout, and not used after this.
                unsafe { std::alloc::dealloc(base.as_ptr(), SpscRing::<T, N>::layout()) };
            }
        }
        let free = Free::<T, N>(self.groups, PhantomData);
        let head = self.head.load(Ordering::Acquire);
        let tail = self.seen_tail(head);
        if !self.consumer_out.load(CoreOrdering::Relaxed) {
            // `ready` rather than `head != tail`: a `head` past `tail` counts as empty.
            // SAFETY: slots `head..tail` hold initialised values (ring invariant: the last
            // consumer published its exact position when dropped, and `seen_tail` is the
            // last producer's exact position: every producer operation stamps the values
            // it wrote and stores `tail` whenever it fills a group, before it returns or
            // unwinds) and no producer or consumer exists any more (we have `&mut self`);
            // `free` runs after them.
            unsafe { self.drop_items(Self::cursor(head), ready::<N>(head, tail)) };
        }
        drop(free);
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
///
/// It is invariant in `T`: it cannot shorten the lifetimes inside `T`, so it cannot
/// push a borrow that ends before the ring hands it out.
///
/// ```compile_fail,E0597
/// use tally_core_types::{Producer, SpscRing};
///
/// let mut ring = SpscRing::<&'static str, 4>::new();
/// let (p, mut c) = ring.split();
/// let short = String::from("short-lived");
/// let mut p: Producer<'_, &str, 4> = p;
/// p.push(short.as_str()).unwrap();
/// drop(short);
/// let _dangling: &'static str = c.pop().unwrap();
/// ```
///
/// It is `Send` only when `T` is, and never `Sync`:
///
/// ```compile_fail,E0277
/// use tally_core_types::SpscRing;
/// fn send<S: Send>(_: S) {}
/// let mut ring = SpscRing::<std::rc::Rc<u8>, 4>::new();
/// let (p, _c) = ring.split();
/// send(p);
/// ```
///
/// ```compile_fail,E0277
/// use tally_core_types::SpscRing;
/// fn shared<S: Sync>(_: &S) {}
/// let mut ring = SpscRing::<u8, 4>::new();
/// let (p, _c) = ring.split();
/// shared(&p);
/// ```
pub struct Producer<'a, T, const N: usize> {
    ring: &'a SpscRing<T, N>,
    /// `ring.groups`, copied so that a push does not load it through `ring`.
    groups: Groups<'a, T, N>,
    /// Our position; equal to `ring.tail` after each publish.
    tail: usize,
    /// Last `ring.head` we loaded; `head_cache <= ring.head`.
    head_cache: usize,
    /// The slot of `tail`.
    cursor: Cursor,
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
    /// `Err(value)` when all `N` slots are occupied, counting up to
    /// `SLOTS_PER_GROUP - 1` slots the consumer has emptied but not yet released (see
    /// [`Consumer::release`]).
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
        self.groups
            .cell(&self.cursor)
            .with_mut(|p| unsafe { (*p).write(value) });
        let tail = self.tail.wrapping_add(1);
        self.groups
            .stamp(&self.cursor)
            .store(tail, Ordering::Release);
        self.tail = tail;
        // `tail` only when the group is full: the stamp just stored already tells a
        // single pop, and whoever needs the exact position reads the stamp of the group
        // past `tail` too (`SpscRing::seen_tail`). A `tail` store on every push cost
        // 40 % of a one-item stream on AMD Zen 4 (docs/benchmarks/tally-core-types.md).
        if SpscRing::<T, N>::advance(&mut self.cursor) {
            self.ring.tail.store(tail, Ordering::Release);
        }
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

    /// Writes up to `max` values from `next` into free slots (the caller checked they are
    /// free), stamping each group once after its last value, then publishes. Stops early
    /// when `next` returns `None`. Returns how many were written. If `next` panics, the
    /// guard publishes the values written so far while unwinding, so the ring stays
    /// consistent even if the producer is then forgotten.
    #[inline]
    fn write_run(&mut self, max: usize, mut next: impl FnMut(usize) -> Option<T>) -> usize {
        /// Publishes on drop: at the end of the run or while unwinding from `next`.
        struct Publish<'p, 'a, T, const N: usize>(&'p mut Producer<'a, T, N>, usize);
        impl<T, const N: usize> Drop for Publish<'_, '_, T, N> {
            fn drop(&mut self) {
                if self.0.tail != self.1 {
                    self.0.publish();
                }
            }
        }
        let from = self.tail;
        let run = Publish(self, from);
        let p = &mut *run.0;
        while p.tail.wrapping_sub(from) < max {
            let Some(value) = next(p.tail.wrapping_sub(from)) else {
                break;
            };
            // SAFETY: the caller reserved `max` free slots after `from` (see `push`).
            p.groups
                .cell(&p.cursor)
                .with_mut(|c| unsafe { (*c).write(value) });
            p.tail = p.tail.wrapping_add(1);
            let at = p.cursor;
            if SpscRing::<T, N>::advance(&mut p.cursor) {
                p.groups.stamp(&at).store(p.tail, Ordering::Release);
            }
        }
        let n = p.tail.wrapping_sub(from);
        drop(run);
        n
    }

    /// Stamps the group we stopped in if values there are unstamped, then stores `tail`.
    fn publish(&mut self) {
        if self.cursor.left != SpscRing::<T, N>::len_at(self.cursor.group) {
            self.groups
                .stamp(&self.cursor)
                .store(self.tail, Ordering::Release);
        }
        self.ring.tail.store(self.tail, Ordering::Release);
    }

    /// Pushes items from `iter` while there is room, publishing once at the end. Returns
    /// how many were pushed; the rest stay in the iterator.
    pub fn push_iter<I: Iterator<Item = T>>(&mut self, iter: &mut I) -> usize {
        let free = self.reserve(N);
        self.write_run(free, |_| iter.next())
    }

    /// Number of items in the ring as seen by the producer (may be stale-high, and counts
    /// items the consumer took but has not yet released).
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
    ///
    /// Copies a group's run of slots at a time (a plain loop over consecutive cells that
    /// the compiler turns into wide moves) and stamps each group once.
    pub fn push_slice(&mut self, items: &[T]) -> usize {
        let n = self.reserve(items.len()).min(items.len());
        let spg = SpscRing::<T, N>::SLOTS_PER_GROUP;
        let mut rest = items.get(..n).unwrap_or(&[]);
        while !rest.is_empty() {
            // The wide loop for two whole groups or more; a single group is one run below
            // (a batch of 8 `u64`s spent a fifth of its instructions deciding otherwise).
            let whole = if rest.len() >= 2 * spg {
                SpscRing::<T, N>::whole_groups(&self.cursor, rest.len())
            } else {
                0
            };
            if whole > 1 {
                let (body, later) = rest.split_at_checked(whole * spg).unwrap_or((rest, &[]));
                // SAFETY: the cursor is at the start of a group that is not the last, and
                // `body` is `whole` groups long (`whole_groups`); its slots are among the
                // `n` free slots reserved above (see `push`).
                let (at, tail) = unsafe { self.groups.write_groups(self.cursor, self.tail, body) };
                self.tail = tail;
                self.cursor = at;
                rest = later;
                continue;
            }
            let run = self.cursor.left.min(rest.len());
            let (now, later) = rest.split_at_checked(run).unwrap_or((rest, &[]));
            // SAFETY: `now.len() = run <= cursor.left`, and its slots are among the `n`
            // free slots reserved above (see `push`).
            unsafe { self.groups.write_run(&self.cursor, now) };
            self.tail = self.tail.wrapping_add(now.len());
            let at = self.cursor;
            if SpscRing::<T, N>::advance_by(&mut self.cursor, now.len()) {
                self.groups.stamp(&at).store(self.tail, Ordering::Release);
            }
            rest = later;
        }
        if n > 0 {
            self.publish();
        }
        n
    }
}

impl<T, const N: usize> Drop for Producer<'_, T, N> {
    /// Publishes the exact position, so that the next [`SpscRing::split`] and the ring's
    /// `len` and `Drop` find every item from the last single pushes by `tail` alone.
    fn drop(&mut self) {
        self.ring.tail.store(self.tail, Ordering::Release);
        self.ring.producer_out.store(false, CoreOrdering::Relaxed);
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
///
/// It is `Send` only when `T` is, and never `Sync`, so a `&Consumer` cannot reach a
/// second thread:
///
/// ```compile_fail,E0277
/// use tally_core_types::SpscRing;
/// fn send<S: Send>(_: S) {}
/// let mut ring = SpscRing::<std::rc::Rc<u8>, 4>::new();
/// let (_p, c) = ring.split();
/// send(c);
/// ```
///
/// ```compile_fail,E0277
/// use tally_core_types::SpscRing;
/// fn shared<S: Sync>(_: &S) {}
/// let mut ring = SpscRing::<u8, 4>::new();
/// let (_p, c) = ring.split();
/// shared(&c);
/// ```
pub struct Consumer<'a, T, const N: usize> {
    ring: &'a SpscRing<T, N>,
    /// `ring.groups`, copied so that a pop does not load it through `ring`.
    groups: Groups<'a, T, N>,
    /// Our position: every item below it has been taken.
    head: usize,
    /// The last position we stored in `ring.head`; `released <= head`.
    released: usize,
    /// The last producer position we saw ([`SpscRing::seen_tail`]), or a `head` we
    /// reached by single pops: at most the producer's position. Single pops do not
    /// refresh it, so it may fall behind `head` (by less than a group: see `pop`), which
    /// `cached_available` counts as nothing.
    tail_cache: usize,
    /// The slot of `head`.
    cursor: Cursor,
    /// Consumer is `Send` but not `Sync`.
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: a Consumer is the ring's only reader; see `Producer`.
unsafe impl<T: Send, const N: usize> Send for Consumer<'_, T, N> {}

impl<T, const N: usize> Consumer<'_, T, N> {
    /// Removes the oldest item, or `None` when the ring is empty.
    ///
    /// The emptied slot goes back to the producer when this pop finishes its group of
    /// [`SpscRing::SLOTS_PER_GROUP`] slots, when a pop finds the ring empty, at the end
    /// of a batch pop, at [`Consumer::release`], or when the consumer is dropped,
    /// whichever comes first.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        // Ask the group's stamp rather than the producer's `tail` line (see the module
        // docs). The stamp is at least `head + 1` when slot `head` is ready, and at most
        // `head` otherwise (this lap's earlier slots, or the previous lap's, `N` lower),
        // so "ahead of `head`" is exact. An ordering test rather than `==` keeps the
        // compiler from deriving the next `head` from the loaded stamp, which would chain
        // every pop's load to the previous one.
        let ahead = self
            .groups
            .stamp(&self.cursor)
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
            .cast_signed();
        if ahead <= 0 {
            self.release();
            return None;
        }
        // SAFETY: the group's acquired stamp says it holds the value for position `head`,
        // written by the producer before its release store of the stamp; we move it out
        // and move `head` past it, so it is never read twice, and the producer does not
        // overwrite it before we publish a `head` past it.
        let value = self
            .groups
            .cell(&self.cursor)
            .with_mut(|p| unsafe { (*p).assume_init_read() });
        self.head = self.head.wrapping_add(1);
        if SpscRing::<T, N>::advance(&mut self.cursor) {
            self.publish();
            // Single pops move `head` past `tail_cache`; pull the cache along so that
            // `tail_cache - head` cannot wrap around (after 2^32 pops on a 32-bit target)
            // into a count that looks ready to a batch pop.
            if self.tail_cache.wrapping_sub(self.head).cast_signed() < 0 {
                self.tail_cache = self.head;
            }
        }
        Some(value)
    }

    /// Hands the slots of the items taken so far back to the producer now. Single pops
    /// do this a group at a time; call it when the consumer stops popping for a while
    /// with items still in the ring and the producer may be waiting for room.
    #[inline]
    pub fn release(&mut self) {
        if self.released != self.head {
            self.publish();
        }
    }

    #[inline]
    fn publish(&mut self) {
        self.ring.head.store(self.head, Ordering::Release);
        self.released = self.head;
    }

    /// Items known to be ready from the cached `tail`, without touching shared memory.
    /// [`Consumer::pop`] moves `head` past the cache without refreshing it.
    #[inline]
    fn cached_available(&self) -> usize {
        ready::<N>(self.head, self.tail_cache)
    }

    /// Items available, refreshing the view of the producer's position.
    pub fn available(&mut self) -> usize {
        self.tail_cache = self.ring.seen_tail(self.head);
        self.cached_available()
    }

    /// Items ready to take, at most `max`: from the cached `tail` when it shows `max`,
    /// else from a fresh load.
    #[inline]
    fn ready_for(&mut self, max: usize) -> usize {
        let n = self.cached_available();
        if n >= max {
            return max;
        }
        // `tail` first: when it shows `max` items (a batch producer publishes each batch
        // there), the stamp of the group at `tail` cannot add to what we take, and not
        // reading it keeps us off the line the producer is writing.
        let tail = self.ring.tail.load(Ordering::Acquire);
        if ready::<N>(self.head, tail) >= max {
            self.tail_cache = tail;
            return max;
        }
        self.tail_cache = self.ring.seen_tail_from(self.head, tail);
        self.cached_available().min(max)
    }

    /// Moves up to `max` ready items out through `f`, then publishes `head`. Returns how
    /// many.
    #[inline]
    fn take_run(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let n = self.ready_for(max);
        let done = Done(self);
        let c = &mut *done.0;
        let mut cursor = c.cursor;
        let mut k = 0;
        while k < n {
            let run = cursor.left.min(n - k);
            for j in 0..run {
                // SAFETY: `j < run <= cursor.left`, and the slot is below
                // `n <= tail - head` for a `tail` we acquired: it holds an initialised
                // value, read once (`head` moves past it before `f` runs, so a panicking
                // `f` leaves a consistent consumer).
                let value = unsafe { c.groups.cell_after(&cursor, j) }
                    .with_mut(|p| unsafe { (*p).assume_init_read() });
                c.head = c.head.wrapping_add(1);
                f(value);
            }
            SpscRing::<T, N>::advance_by(&mut cursor, run);
            k += run;
        }
        drop(done);
        n
    }

    /// Moves up to `dst.len()` items into `dst` (dropping what `dst` held there),
    /// publishing once. Returns how many.
    ///
    /// Moves a group's run of slots at a time (whole groups in loops of constant length)
    /// and publishes once.
    pub fn pop_slice(&mut self, dst: &mut [T]) -> usize {
        let n = self.ready_for(dst.len());
        let spg = SpscRing::<T, N>::SLOTS_PER_GROUP;
        let done = Done(self);
        let c = &mut *done.0;
        let mut cursor = c.cursor;
        let mut rest = dst.get_mut(..n).unwrap_or(&mut []);
        while !rest.is_empty() {
            // As in `push_slice`: the wide loop for two whole groups or more.
            let whole = if rest.len() >= 2 * spg {
                SpscRing::<T, N>::whole_groups(&cursor, rest.len())
            } else {
                0
            };
            if whole > 1 {
                let Some((body, later)) =
                    core::mem::take(&mut rest).split_at_mut_checked(whole * spg)
                else {
                    break;
                };
                // SAFETY: the cursor is at the start of a group that is not the last, and
                // `body` is `whole` groups long (`whole_groups`); its slots are below
                // `n <= tail - head` for a `tail` we acquired (see below).
                cursor = unsafe { c.groups.read_groups(cursor, body, &mut c.head) };
                rest = later;
                continue;
            }
            let run = cursor.left.min(rest.len());
            let Some((now, later)) = core::mem::take(&mut rest).split_at_mut_checked(run) else {
                break;
            };
            // SAFETY: `now.len() = run <= cursor.left`, and its slots are below
            // `n <= tail - head` for a `tail` we acquired, so they hold initialised values;
            // `head` moves past each before it is moved out (`read_run`), so none is read
            // twice.
            unsafe { c.groups.read_run(&cursor, now, &mut c.head) };
            SpscRing::<T, N>::advance_by(&mut cursor, run);
            rest = later;
        }
        // No panic: `cursor` is at `head` (every move above advanced both), so the guard,
        // which derives the cursor from `head` for the unwinding case, is not needed.
        c.cursor = cursor;
        c.release();
        core::mem::forget(done);
        n
    }

    /// Moves up to `max` items out, calling `f` on each in order, publishing once.
    /// Returns how many.
    pub fn pop_each(&mut self, max: usize, f: impl FnMut(T)) -> usize {
        self.take_run(max, f)
    }

    /// Number of items in the ring as seen by the consumer.
    pub fn len(&self) -> usize {
        ready::<N>(self.head, self.ring.seen_tail(self.head))
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

/// Puts a consumer's cursor back on its `head` and publishes: at the end of a batch pop,
/// or while unwinding from a panic between two items of a group's run (in a caller's
/// closure or an old value's `Drop`).
struct Done<'c, 'a, T, const N: usize>(&'c mut Consumer<'a, T, N>);

impl<T, const N: usize> Drop for Done<'_, '_, T, N> {
    fn drop(&mut self) {
        self.0.cursor = SpscRing::<T, N>::cursor(self.0.head);
        self.0.release();
    }
}

impl<T, const N: usize> Drop for Consumer<'_, T, N> {
    fn drop(&mut self) {
        self.release();
        self.ring.consumer_out.store(false, CoreOrdering::Relaxed);
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
        // One group of four: the slot goes back at the end of the group or on release.
        assert_eq!(p.push(4), Err(4));
        c.release();
        p.push(4).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(got, [1, 2, 3, 4]);
        assert!(c.is_empty());
        assert!(p.is_empty(), "an empty pop releases");
    }

    #[test]
    fn group_layout() {
        assert_eq!(SpscRing::<u64, 1024>::SLOTS_PER_GROUP, 7);
        assert_eq!(SpscRing::<u32, 1024>::SLOTS_PER_GROUP, 14);
        assert_eq!(SpscRing::<u8, 16>::SLOTS_PER_GROUP, 16);
        assert_eq!(SpscRing::<[u8; 40], 16>::SLOTS_PER_GROUP, 1);
        assert_eq!(SpscRing::<(), 1024>::SLOTS_PER_GROUP, 64);
        assert_eq!(SpscRing::<CachePadded<u8>, 8>::SLOTS_PER_GROUP, 1);
        assert_eq!(SpscRing::<u64, 1024>::STRIDE, 64);
        // One-slot groups are not padded to a line (the module docs).
        assert_eq!(SpscRing::<[u8; 40], 16>::STRIDE, 48);
        assert_eq!(SpscRing::<u64, 1024>::GROUPS, 147);
        assert_eq!(SpscRing::<u64, 1024>::LAST_LEN, 2);
    }

    #[test]
    fn slots_return_a_group_at_a_time() {
        // Groups of 7, 7 and 2 slots.
        let mut ring = SpscRing::<u64, 16>::new();
        let (mut p, mut c) = ring.split();
        for i in 0..16 {
            p.push(i).unwrap();
        }
        for i in 0..6 {
            assert_eq!(c.pop(), Some(i));
        }
        assert_eq!(p.push(99), Err(99));
        assert_eq!(p.free_slots(), 0);
        assert_eq!(c.pop(), Some(6));
        assert_eq!(p.free_slots(), 7);
        for i in 16..23 {
            p.push(i).unwrap();
        }
        assert_eq!(p.push(99), Err(99));
        for i in 7..23 {
            assert_eq!(c.pop(), Some(i));
        }
        assert_eq!(c.pop(), None);
        assert_eq!(p.free_slots(), 16);
    }

    #[test]
    fn many_laps_over_uneven_groups() {
        let mut ring = SpscRing::<u64, 16>::new();
        let (mut p, mut c) = ring.split();
        let mut next = 0u64;
        for lap in 0..200u64 {
            let k = 1 + lap % 16;
            for _ in 0..k {
                p.push(next).unwrap();
                next += 1;
            }
            let base = next - k;
            for i in 0..k {
                assert_eq!(c.pop(), Some(base + i));
            }
            assert_eq!(c.pop(), None);
        }
    }

    #[test]
    fn large_aligned_and_zero_sized_items() {
        let mut ring = SpscRing::<CachePadded<u64>, 4>::new();
        let (mut p, mut c) = ring.split();
        for i in 0..10 {
            p.push(CachePadded::new(i)).unwrap();
            assert_eq!(c.pop().map(CachePadded::into_inner), Some(i));
        }
        let mut units = SpscRing::<(), 128>::new();
        let (mut p, mut c) = units.split();
        for _ in 0..128 {
            p.push(()).unwrap();
        }
        assert_eq!(p.push(()), Err(()));
        assert_eq!(c.pop_each(usize::MAX, drop), 128);
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
    fn forgotten_consumer_leaks_instead_of_dropping_twice() {
        let marker = Rc::new(());
        let mut ring = SpscRing::<Rc<()>, 8>::new();
        {
            let (mut p, mut c) = ring.split();
            for _ in 0..5 {
                p.push(Rc::clone(&marker)).unwrap();
            }
            drop((c.pop(), c.pop()));
            core::mem::forget(c);
        }
        assert_eq!(Rc::strong_count(&marker), 4);
        {
            let (mut p, mut c) = ring.split();
            assert_eq!(
                c.pop(),
                None,
                "a split after a forgotten consumer starts empty"
            );
            p.push(Rc::clone(&marker)).unwrap();
        }
        drop(ring);
        // The three left behind by the forgotten consumer leak; the last one is dropped.
        assert_eq!(Rc::strong_count(&marker), 4);
    }

    #[test]
    fn panicking_callbacks_leave_a_consistent_ring() {
        let marker = Rc::new(());
        let mut ring = SpscRing::<Rc<()>, 16>::new();
        {
            let (mut p, mut c) = ring.split();
            let mut made = 0;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                p.push_iter(&mut std::iter::from_fn(|| {
                    made += 1;
                    assert!(made <= 9, "iterator fails");
                    Some(Rc::clone(&marker))
                }))
            }));
            assert!(r.is_err());
            assert_eq!(c.available(), 9, "published while unwinding");
            // The ring must not need the producer's help any more.
            core::mem::forget(p);
            let mut seen = 0;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.pop_each(usize::MAX, |v| {
                    seen += 1;
                    assert!(seen < 4, "callback fails");
                    drop(v);
                })
            }));
            assert!(r.is_err());
            assert_eq!(c.len(), 5);
            assert_eq!(c.pop().map(|v| Rc::ptr_eq(&v, &marker)), Some(true));
        }
        {
            let (mut p, mut c) = ring.split();
            p.push(Rc::clone(&marker)).unwrap();
            assert_eq!(c.len(), 5);
            assert_eq!(c.pop_each(2, drop), 2);
        }
        assert_eq!(Rc::strong_count(&marker), 4);
        drop(ring);
        assert_eq!(Rc::strong_count(&marker), 1);
    }

    #[test]
    fn zero_sized_batches_are_visible_to_single_pops() {
        let mut ring = SpscRing::<(), 128>::new();
        let (mut p, mut c) = ring.split();
        for round in 0..300 {
            let k = 1 + round % 70;
            if round % 2 == 0 {
                assert_eq!(p.push_slice(&vec![(); k]), k);
            } else {
                assert_eq!(p.push_iter(&mut std::iter::repeat_n((), k)), k);
            }
            for _ in 0..k {
                assert_eq!(c.pop(), Some(()));
            }
            assert_eq!(c.pop(), None);
        }
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

    #[test]
    fn batch_push_is_visible_to_single_pops() {
        // Groups of 7, 7, 2: a batch stamps each group once.
        let mut ring = SpscRing::<u64, 16>::new();
        let (mut p, mut c) = ring.split();
        for round in 0..50u64 {
            let items: Vec<u64> = (0..=(round % 16)).map(|i| round * 100 + i).collect();
            assert_eq!(p.push_slice(&items), items.len());
            for &v in &items {
                assert_eq!(c.pop(), Some(v));
            }
            assert_eq!(c.pop(), None);
        }
    }
}

#[cfg(all(test, not(tally_loom)))]
mod wrap_tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// A ring whose positions start at `p`, as if `p` items had passed through it: the
    /// stamps are those a producer leaves after writing `p - N .. p`.
    fn at_position<T, const N: usize>(p: usize) -> SpscRing<T, N> {
        let ring = SpscRing::<T, N>::new();
        ring.head.store(p, Ordering::Relaxed);
        ring.tail.store(p, Ordering::Relaxed);
        let groups = Groups::of(&ring);
        for i in 0..N {
            let pos = p.wrapping_sub(N).wrapping_add(i);
            let cursor = SpscRing::<T, N>::cursor(pos);
            groups
                .stamp(&cursor)
                .store(pos.wrapping_add(1), Ordering::Relaxed);
        }
        ring
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push,
        Pop,
        PushIter(usize),
        PopEach(usize),
        PushSlice(usize),
        PopSlice(usize),
        Release,
        Resplit,
        ForgetProducer,
        ForgetConsumer,
        ForgetBoth,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Push),
            4 => Just(Op::Pop),
            1 => (0usize..40).prop_map(Op::PushIter),
            1 => (0usize..40).prop_map(Op::PopEach),
            1 => (0usize..40).prop_map(Op::PushSlice),
            1 => (0usize..40).prop_map(Op::PopSlice),
            1 => Just(Op::Release),
            1 => Just(Op::Resplit),
            1 => Just(Op::ForgetProducer),
            1 => Just(Op::ForgetConsumer),
            1 => Just(Op::ForgetBoth),
        ]
    }

    /// Each half's cursor is the one of its position (every path leaves them in step).
    fn in_step<T, const N: usize>(
        p: &Producer<'_, T, N>,
        c: &Consumer<'_, T, N>,
    ) -> Result<(), TestCaseError> {
        for (cursor, position) in [(p.cursor, p.tail), (c.cursor, c.head)] {
            let want = SpscRing::<T, N>::cursor(position);
            prop_assert_eq!(
                (cursor.group, cursor.value, cursor.left),
                (want.group, want.value, want.left),
                "cursor of position {}",
                position
            );
        }
        Ok(())
    }

    /// Runs `ops` on a ring starting `before` positions below `usize::MAX + 1` and checks
    /// it against a `VecDeque`: every item comes out once, in order, across the wrap of the
    /// position counters, also through `split`s after forgotten halves (a forgotten
    /// consumer's items leak: the model drops them).
    /// Returns the producer's final position.
    fn check<const N: usize>(before: usize, ops: &[Op]) -> Result<usize, TestCaseError> {
        let mut ring = at_position::<u64, N>(0usize.wrapping_sub(before));
        let mut model = VecDeque::new();
        let mut next = 0u64;
        let mut ops = ops.iter().peekable();
        // The ring's `len` also counts what a forgotten consumer took.
        let mut consumer_forgotten = false;
        while ops.peek().is_some() {
            if !consumer_forgotten {
                prop_assert_eq!(ring.len(), model.len());
            }
            consumer_forgotten = false;
            let (mut p, mut c) = ring.split();
            in_step(&p, &c)?;
            prop_assert_eq!(c.len(), model.len());
            for op in ops.by_ref() {
                match op {
                    Op::Push => {
                        if p.push(next).is_ok() {
                            model.push_back(next);
                            next += 1;
                        } else {
                            prop_assert!(model.len() + SpscRing::<u64, N>::SLOTS_PER_GROUP > N);
                        }
                    }
                    Op::Pop => prop_assert_eq!(c.pop(), model.pop_front()),
                    Op::PushIter(k) => {
                        let mut it = next..next + *k as u64;
                        let n = p.push_iter(&mut it);
                        model.extend(next..next + n as u64);
                        next += n as u64;
                    }
                    Op::PopEach(k) => {
                        let mut got = Vec::new();
                        let n = c.pop_each(*k, |v| got.push(v));
                        prop_assert_eq!(n, got.len());
                        let want: Vec<u64> = model.drain(..n.min(model.len())).collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::PushSlice(k) => {
                        let items: Vec<u64> = (next..next + *k as u64).collect();
                        let n = p.push_slice(&items);
                        model.extend(next..next + n as u64);
                        next += n as u64;
                    }
                    Op::PopSlice(k) => {
                        let mut got = vec![0u64; *k];
                        let n = c.pop_slice(&mut got);
                        got.truncate(n);
                        let want: Vec<u64> = model.drain(..n.min(model.len())).collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::Release => c.release(),
                    Op::Resplit => break,
                    Op::ForgetProducer => {
                        core::mem::forget(p);
                        break;
                    }
                    Op::ForgetConsumer | Op::ForgetBoth => {
                        if matches!(op, Op::ForgetBoth) {
                            core::mem::forget(p);
                        }
                        core::mem::forget(c);
                        model.clear();
                        consumer_forgotten = true;
                        break;
                    }
                }
                in_step(&p, &c)?;
                prop_assert_eq!(c.len(), model.len());
                prop_assert!(p.len() >= model.len() && p.len() <= N);
            }
        }
        if !consumer_forgotten {
            prop_assert_eq!(ring.len(), model.len());
        }
        // The published `tail` may lag the last single pushes; the stamps have them.
        Ok(ring.seen_tail(ring.head.load(Ordering::Relaxed)))
    }

    /// One run that surely crosses the wrap: 5 positions below it, 20 items through.
    #[test]
    fn a_fixed_run_crosses_usize_max() {
        let ops: Vec<Op> = (0..20).flat_map(|_| [Op::Push, Op::Pop]).collect();
        for end in [check::<16>(5, &ops), check::<4>(5, &ops)] {
            assert_eq!(end.unwrap(), 15, "20 pushes from usize::MAX - 4 end at 15");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn positions_wrap_around_usize(before in 0usize..100, ops in prop::collection::vec(op(), 1..200)) {
            check::<16>(before, &ops)?;
            check::<32>(before, &ops)?;
            check::<4>(before, &ops)?;
            check::<64>(before, &ops)?;
        }

        /// The same runs with the slice operations on each lower copy of their
        /// whole-group loops, which a CPU with a better one (the default here) never
        /// takes otherwise.
        #[cfg(target_arch = "x86_64")]
        #[test]
        fn every_copy_wraps_around_usize(before in 0usize..100, ops in prop::collection::vec(op(), 1..200)) {
            for cap in [Moves::Portable, Moves::Wide] {
                with_moves(cap, || -> Result<(), TestCaseError> {
                    check::<16>(before, &ops)?;
                    check::<4>(before, &ops)?;
                    check::<64>(before, &ops)?;
                    Ok(())
                })?;
            }
        }
    }

    /// `with_moves` caps this thread's copy and lifts the cap after; the best copy is
    /// the one the CPU's features allow.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn with_moves_caps_the_copy() {
        let best = if !std::arch::is_x86_feature_detected!("avx2") {
            Moves::Portable
        } else if std::arch::is_x86_feature_detected!("avx512f") {
            Moves::Lanes
        } else {
            Moves::Wide
        };
        assert_eq!(moves(), best);
        assert_eq!(with_moves(Moves::Portable, moves), Moves::Portable);
        assert_eq!(with_moves(Moves::Wide, moves), best.min(Moves::Wide));
        assert_eq!(moves(), best);
    }
}
