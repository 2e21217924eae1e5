//! [`Ring`]: the io_uring engine. **One of the two modules of this crate with `unsafe` code**
//! (the other is the SSE4.2 CRC32C of the journal's record frames).
//!
//! The `io-uring` crate makes its caller promise that every pointer in a submission
//! entry stays valid until the kernel is done with it. This module keeps that promise
//! for its callers:
//!
//! * fixed-buffer operations name a [`PoolRange`] of the [`FramePool`] the ring owns
//!   after [`Ring::register_frame_pool`]; every frame in the range is marked busy until
//!   the completion (for send-zc: the notification) arrives, and [`Ring::pool_bytes`] /
//!   [`Ring::pool_bytes_mut`] refuse busy frames, so no Rust reference ever aliases memory
//!   the kernel may write ([`Ring::pool`] shows sizes only, never the bytes);
//! * plain reads and writes from borrowed slices ([`Ring::read_at`], [`Ring::write_at`],
//!   [`Ring::rw_batch`]) wait for their completions before they return, so the borrow
//!   outlives the kernel's use;
//! * timeouts keep their `timespec` in the slab's per-slot array, which never moves (it is
//!   a boxed slice allocated once);
//! * the provided-buffer ring and its buffers are owned by the ring, a buffer is readable
//!   only between the completion that delivered it and [`Ring::recycle_buffer`];
//! * dropping the ring submits what is queued, cancels every operation and waits for them
//!   (bounded); if some are still running then, the pool, the provided buffers and the
//!   timeout values are leaked on purpose, never freed under the kernel.
//!
//! In-flight operations live in a fixed-capacity slab keyed by `user_data`
//! (`generation << 21 | slot`); an [`OpId`] is that `user_data` and the number of the
//! ring that issued it. Queueing, submitting and reaping allocate nothing.

#![allow(
    clippy::inline_always,
    reason = "measured with callgrind: without forcing, the queue/complete hot path is outlined and a NOP costs about 60 more instructions"
)]

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};
use tally_core_types::{FramePool, FramePoolOptions};

use crate::error::{Errno, Registration, RingError, register_hint, setup_hint};

tally_core_types::single_writer_stats! {
    /// Ring statistics, written by the thread that owns the [`Ring`], readable from any
    /// thread through [`Ring::stats_handle`].
    pub struct RingStats => RingStatsSnapshot {
        /// Submission entries handed to the kernel.
        submitted,
        /// Completions reaped (each CQE counts, including multishot and notifications).
        completed,
        /// Completions with a negative result.
        errors,
        /// Bytes moved by successful read/write/send/recv completions.
        bytes,
        /// Times an operation found the submission queue full (the ring then submitted early).
        sq_full,
        /// Times the kernel signalled a completion-queue overflow (the ring flushed it).
        cq_overflow,
        /// `io_uring_enter` system calls made.
        enter_syscalls,
        /// `io_uring_enter` calls retried because the kernel could not allocate requests
        /// (`EAGAIN`); see [`Ring::submit_and_wait`].
        enter_retries,
        /// Operations refused because every in-flight slot was taken.
        in_flight_full,
    }
}

/// How the kernel runs completion work for this ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskrunMode {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1): completion work runs only when this
    /// thread enters the kernel to wait. Fastest (about 10 % less per NOP round trip here);
    /// the ring must then be used only from the thread that created it (elsewhere the
    /// kernel refuses submissions with `EEXIST`, the borrowed-buffer calls return
    /// [`RingError::WrongThread`], and a drop there leaks the memory of operations still
    /// in flight).
    DeferTaskrun,
    /// `COOP_TASKRUN | TASKRUN_FLAG` (Linux 5.19): no interrupting IPIs for completion
    /// work; the ring may move between threads.
    CoopTaskrun,
    /// No taskrun flags (oldest kernels).
    Plain,
}

/// Kernel SQ polling thread. **Usually harmful on small shared machines:** the polling
/// thread competes with the application for a CPU. On a 2-vCPU VM it made NOP round trips
/// and fio's page-cache reads much slower (measured outside this repository, in the team
/// note `../shared/notes/measured-sys.md`; no benchmark here reproduces it). Measure your
/// own workload before turning it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqPoll {
    /// Idle time before the kernel thread sleeps, in milliseconds.
    pub idle_ms: u32,
    /// CPU to pin the polling thread to.
    pub cpu: Option<u32>,
}

/// How to build a [`Ring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingOptions {
    sq_entries: u32,
    cq_entries: u32,
    max_in_flight: u32,
    mode: TaskrunMode,
    sqpoll: Option<SqPoll>,
}

impl RingOptions {
    /// `sq_entries` submission entries (a power of two), a completion queue twice that
    /// size, as many in-flight slots as completion entries, [`TaskrunMode::DeferTaskrun`],
    /// no SQPOLL.
    pub const fn new(sq_entries: u32) -> Self {
        let cq = sq_entries.saturating_mul(2);
        Self {
            sq_entries,
            cq_entries: cq,
            max_in_flight: cq,
            mode: TaskrunMode::DeferTaskrun,
            sqpoll: None,
        }
    }

    /// Completion queue size (a power of two, at least `sq_entries`). Keep
    /// `max_in_flight <= cq_entries` so that single-shot operations can never overflow it.
    #[must_use]
    pub const fn cq_entries(mut self, n: u32) -> Self {
        self.cq_entries = n;
        self
    }

    /// Capacity of the in-flight slab (operations queued or submitted but not completed),
    /// at most [`MAX_IN_FLIGHT`].
    #[must_use]
    pub const fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Completion work mode.
    #[must_use]
    pub const fn mode(mut self, mode: TaskrunMode) -> Self {
        self.mode = mode;
        self
    }

    /// Enables SQPOLL (see [`SqPoll`] for why this is usually a bad idea on small machines).
    /// Needs [`TaskrunMode::CoopTaskrun`] or [`TaskrunMode::Plain`].
    #[must_use]
    pub const fn sqpoll(mut self, sqpoll: Option<SqPoll>) -> Self {
        self.sqpoll = sqpoll;
        self
    }
}

/// What the kernel supports, probed once when the ring is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent kernel feature flags, reported as read"
)]
pub struct ProbeReport {
    opcodes: [bool; 64],
    /// `IORING_FEAT_NODROP`: overflowing completions are kept by the kernel, not dropped.
    pub nodrop: bool,
    /// `IORING_FEAT_SUBMIT_STABLE`.
    pub submit_stable: bool,
    /// `IORING_FEAT_FAST_POLL`.
    pub fast_poll: bool,
    /// `IORING_FEAT_EXT_ARG` (timeouts on wait).
    pub ext_arg: bool,
    /// `IORING_FEAT_LINKED_FILE`.
    pub linked_file: bool,
    /// Submission queue entries granted.
    pub sq_entries: u32,
    /// Completion queue entries granted.
    pub cq_entries: u32,
}

impl ProbeReport {
    /// Whether the kernel supports opcode `op` (an `IORING_OP_*` number, e.g.
    /// `io_uring::opcode::SendZc::CODE`).
    pub fn supports(&self, op: u8) -> bool {
        self.opcodes.get(usize::from(op)).copied().unwrap_or(false)
    }

    /// Number of supported opcodes.
    pub fn supported_count(&self) -> usize {
        self.opcodes.iter().filter(|b| **b).count()
    }
}

/// Which file an operation targets: a plain descriptor or an index into the ring's
/// registered files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A plain file descriptor. It must stay open until the operation completes.
    Fd(RawFd),
    /// Index into the files registered with [`Ring::register_files`].
    Fixed(u32),
}

impl From<BorrowedFd<'_>> for Target {
    fn from(fd: BorrowedFd<'_>) -> Self {
        Self::Fd(fd.as_raw_fd())
    }
}

impl From<&std::fs::File> for Target {
    fn from(f: &std::fs::File) -> Self {
        Self::Fd(f.as_raw_fd())
    }
}

impl From<&std::net::UdpSocket> for Target {
    fn from(s: &std::net::UdpSocket) -> Self {
        Self::Fd(s.as_raw_fd())
    }
}

/// A byte range of the registered frame pool (it may span several adjacent frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolRange {
    /// Start, in bytes from the beginning of the pool.
    pub offset: usize,
    /// Length in bytes.
    pub len: u32,
}

impl PoolRange {
    /// `len` bytes starting at `offset`.
    pub const fn new(offset: usize, len: u32) -> Self {
        Self { offset, len }
    }
}

/// Sizes and allocation state of the frame pool registered with a [`Ring`], without access
/// to its bytes (see [`Ring::pool`]).
#[derive(Debug, Clone, Copy)]
pub struct PoolView<'a> {
    pool: &'a FramePool,
}

impl PoolView<'_> {
    /// Size of one frame in bytes.
    pub fn frame_size_bytes(&self) -> usize {
        self.pool.frame_size_bytes()
    }

    /// Number of frames.
    pub fn frame_count(&self) -> u32 {
        self.pool.frame_count()
    }

    /// Frames not allocated.
    pub fn free_count(&self) -> u32 {
        self.pool.free_count()
    }

    /// Length of the pool in bytes.
    pub fn len_bytes(&self) -> usize {
        self.pool.len_bytes()
    }

    /// Byte offset of frame `id` in the pool (for a [`PoolRange`]).
    pub fn offset_of(&self, id: tally_core_types::FrameId) -> u64 {
        self.pool.offset_of(id)
    }

    /// Whether frame `id` is allocated.
    ///
    /// # Errors
    /// [`RingError::Pool`] when `id` is not a frame of this pool.
    pub fn is_allocated(&self, id: tally_core_types::FrameId) -> Result<bool, RingError> {
        Ok(self.pool.is_allocated(id)?)
    }
}

/// Handle of a queued or in-flight operation: its `user_data` and the number of the
/// [`Ring`] that issued it (pass it only to that ring's methods, the others refuse it
/// with [`RingError::ForeignOp`]). [`OpId::default`] names no operation of any ring (its
/// ring number, 0, is never handed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OpId {
    /// `generation << 21 | slot`, as submitted to the kernel.
    user_data: u64,
    /// Number of the ring that issued it (see [`RingNumber`]).
    ring: u16,
}

impl OpId {
    /// The raw `user_data` value.
    pub const fn user_data(self) -> u64 {
        self.user_data
    }
}

/// What kind of operation a completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OpKind {
    /// `IORING_OP_NOP`.
    #[default]
    Nop,
    /// Read into a borrowed slice.
    Read,
    /// Write from a borrowed slice.
    Write,
    /// Read into the registered pool.
    ReadFixed,
    /// Write from the registered pool.
    WriteFixed,
    /// `fsync`.
    Fsync,
    /// `fdatasync`.
    Fdatasync,
    /// `fallocate`.
    Fallocate,
    /// A timeout.
    Timeout,
    /// A cancel request.
    Cancel,
    /// Multishot receive into provided buffers.
    RecvMulti,
    /// Send from the registered pool.
    Send,
    /// Zero-copy send from the registered pool (result completion).
    SendZc,
    /// Zero-copy send: the notification that the kernel released the buffer.
    SendZcNotif,
}

impl OpKind {
    const fn name(self) -> &'static str {
        match self {
            Self::Nop => "nop",
            Self::Read => "read",
            Self::Write => "write",
            Self::ReadFixed => "read_fixed",
            Self::WriteFixed => "write_fixed",
            Self::Fsync => "fsync",
            Self::Fdatasync => "fdatasync",
            Self::Fallocate => "fallocate",
            Self::Timeout => "timeout",
            Self::Cancel => "cancel",
            Self::RecvMulti => "recv_multishot",
            Self::Send => "send",
            Self::SendZc => "send_zc",
            Self::SendZcNotif => "send_zc_notif",
        }
    }

    const fn moves_bytes(self) -> bool {
        matches!(
            self,
            Self::Read
                | Self::Write
                | Self::ReadFixed
                | Self::WriteFixed
                | Self::RecvMulti
                | Self::Send
                | Self::SendZc
        )
    }
}

/// One typed completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completion {
    /// The operation.
    pub op: OpId,
    /// The caller's tag given when the operation was queued.
    pub tag: u64,
    /// The operation kind.
    pub kind: OpKind,
    /// The raw result: bytes or 0 on success, `-errno` on failure.
    pub raw_result: i32,
    /// More completions will follow for this operation (multishot, or send-zc before its
    /// notification).
    pub more: bool,
    /// The provided buffer the kernel filled (multishot receive).
    pub buffer: Option<u16>,
}

impl Completion {
    /// The result as bytes transferred (or 0), or the kernel's error.
    ///
    /// # Errors
    /// The negative result as an [`Errno`].
    pub fn result(&self) -> Result<u32, Errno> {
        u32::try_from(self.raw_result).map_err(|_| Errno(self.raw_result.saturating_neg()))
    }
}

const NONE: u32 = u32::MAX;

/// Largest in-flight slab [`Ring::new`] accepts (48 bytes of bookkeeping per slot).
pub const MAX_IN_FLIGHT: u32 = 1 << 20;

/// How many times [`Ring::submit_and_wait`] retries an `io_uring_enter` that failed with
/// `EAGAIN` (the kernel could not allocate requests) before it reports the error.
pub const ENTER_EAGAIN_RETRIES: u32 = 64;

/// Largest completion queue the kernel sets up without clamping (`IORING_MAX_CQ_ENTRIES`).
const MAX_CQ_ENTRIES: u32 = 65_536;

/// Low bits of a `user_data` that hold the slot index; the bits above hold the slot's
/// generation (43 bits: a slot is reused 2^42 times before an old `user_data` of it
/// comes back, days at one reuse per 100 ns). The ring number is not in the `user_data`
/// but beside it in the [`OpId`].
const SLOT_BITS: u32 = 21;
/// Mask of the slot index in a `user_data`.
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// Number of ring numbers (see [`RingNumber`]): at most this many rings, less one, are
/// alive at once in a process (number 0 is reserved for [`OpId::default`]).
const RING_NUMBERS: u32 = 1 << 10;
/// One step of a slot's generation, in `user_data` units.
const GENERATION_STEP: u64 = 1 << SLOT_BITS;
const _: () = assert!(
    (MAX_IN_FLIGHT as u64) < SLOT_MASK,
    "slot indexes must fit below the all-ones index"
);

/// One bit per ring number, set while a [`Ring`] holds it. Number 0 is never handed
/// out: it is the ring of [`OpId::default`], which names no operation of any ring.
static RING_NUMBERS_TAKEN: [std::sync::atomic::AtomicU64; (RING_NUMBERS / 64) as usize] =
    numbers_taken_initially();

const fn numbers_taken_initially() -> [std::sync::atomic::AtomicU64; (RING_NUMBERS / 64) as usize] {
    let mut words = [const { std::sync::atomic::AtomicU64::new(0) }; (RING_NUMBERS / 64) as usize];
    words[0] = std::sync::atomic::AtomicU64::new(1);
    words
}
/// Where the next search for a free ring number starts: numbers are handed out round
/// robin, so a released number comes back only after every other one was used.
static NEXT_RING_NUMBER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The number of a live [`Ring`], unique among the live rings of the process, carried by
/// every [`OpId`] it issues; released when the ring drops.
#[derive(Debug)]
struct RingNumber(u16);

impl RingNumber {
    /// Takes the next free number, or `None` when `RING_NUMBERS - 1` rings are alive.
    fn acquire() -> Option<Self> {
        take_number(&RING_NUMBERS_TAKEN, &NEXT_RING_NUMBER).map(Self)
    }
}

impl Drop for RingNumber {
    fn drop(&mut self) {
        let n = u32::from(self.0);
        if let Some(word) = RING_NUMBERS_TAKEN.get((n / 64) as usize) {
            word.fetch_and(!(1u64 << (n % 64)), Ordering::AcqRel);
        }
    }
}

/// Sets the first clear bit of `taken` at or after `next` (round robin) and returns its
/// index, or `None` when every bit is set.
fn take_number(
    taken: &[std::sync::atomic::AtomicU64],
    next: &std::sync::atomic::AtomicU32,
) -> Option<u16> {
    let count = u32::try_from(taken.len()).ok()?.checked_mul(64)?;
    let start = next.fetch_add(1, Ordering::Relaxed);
    for i in 0..count {
        let n = start.wrapping_add(i) % count;
        let bit = 1u64 << (n % 64);
        let word = taken.get((n / 64) as usize)?;
        if word.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
            next.store(n.wrapping_add(1), Ordering::Relaxed);
            return u16::try_from(n).ok();
        }
    }
    None
}

/// `user_data` of the entries [`Ring`]'s drop queues itself: its slot index (all ones in
/// the slot bits) never exists, so their completions are foreign to the slab.
const DROP_USER_DATA: u64 = u64::MAX;

/// How long [`Ring`]'s drop waits for cancelled operations before it leaks their memory.
const DROP_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
struct Slot {
    /// The `user_data` of the slot's operation: `generation << SLOT_BITS | index`. The
    /// generation is odd while the slot holds an operation and even while it is free:
    /// taking and releasing each add one ([`GENERATION_STEP`]), so the `user_data` of an
    /// earlier operation never matches a free or reused slot (until the generation wraps
    /// after 2^43 steps).
    user_data: u64,
    /// Next free slot while free; `NONE` at the end of the list.
    next_free: u32,
    kind: OpKind,
    multishot: bool,
    /// The operation uses pool frames or is multishot: release has more to undo.
    extra: bool,
    tag: u64,
    /// Busy frames `frame_lo..frame_hi` (empty when the op uses no pool memory).
    frame_lo: u32,
    frame_hi: u32,
}

impl Slot {
    fn empty(index: u32, next: u32) -> Self {
        Self {
            user_data: u64::from(index),
            next_free: next,
            kind: OpKind::Nop,
            multishot: false,
            extra: false,
            tag: 0,
            frame_lo: 0,
            frame_hi: 0,
        }
    }

    const fn busy(&self) -> bool {
        self.user_data & GENERATION_STEP != 0
    }

    /// Whether a completion of `kind` with the `more` flag leaves this slot in use
    /// (multishot operations, and a send-zc result awaiting its notification).
    fn busy_after_more(&self, kind: OpKind) -> bool {
        self.multishot || kind == OpKind::SendZc
    }
}

/// The in-flight operations: a fixed array of slots with an intrusive free list.
struct Slab {
    slots: Box<[Slot]>,
    /// Timeout values, one per slot (kept apart so that `Slot` stays 32 bytes).
    timespecs: Box<[types::Timespec]>,
    free_head: u32,
    in_flight: u32,
}

impl Slab {
    /// Takes a free slot for a new operation: (slot index, `user_data`).
    #[inline(always)]
    fn take(&mut self, kind: OpKind, tag: u64) -> Option<(u32, u64)> {
        let idx = self.free_head;
        let slot = self.slots.get_mut(idx as usize)?;
        self.free_head = slot.next_free;
        // Free slots always have no frames and no multishot flag (see `release`).
        slot.kind = kind;
        slot.tag = tag;
        slot.user_data = slot.user_data.wrapping_add(GENERATION_STEP);
        self.in_flight += 1;
        Some((idx, slot.user_data))
    }

    /// Frees slot `idx` if it is busy (and the frames its operation used).
    #[inline]
    fn release(&mut self, idx: u32, pool: &mut Option<Registered>) {
        if self.slots.get(idx as usize).is_some_and(Slot::busy) {
            self.release_busy(idx, pool);
        }
    }

    /// Frees slot `idx`, known to be busy.
    #[inline(always)]
    fn release_busy(&mut self, idx: u32, pool: &mut Option<Registered>) {
        let Self {
            slots,
            free_head,
            in_flight,
            ..
        } = self;
        let Some(slot) = slots.get_mut(idx as usize) else {
            return;
        };
        Self::free(slot, idx, free_head, in_flight, pool);
    }

    #[inline(always)]
    fn free(
        slot: &mut Slot,
        idx: u32,
        free_head: &mut u32,
        in_flight: &mut u32,
        pool: &mut Option<Registered>,
    ) {
        *in_flight -= 1;
        Self::free_kept(slot, idx, free_head, pool);
    }

    /// Frees a busy slot, leaving the in-flight count to the caller (a drain adjusts it
    /// once per batch).
    #[inline(always)]
    fn free_kept(slot: &mut Slot, idx: u32, free_head: &mut u32, pool: &mut Option<Registered>) {
        slot.user_data = slot.user_data.wrapping_add(GENERATION_STEP);
        slot.next_free = *free_head;
        *free_head = idx;
        if slot.extra {
            Self::undo_extra(slot, pool);
        }
    }

    /// Releases the frames and the multishot flag of a slot being freed.
    #[cold]
    #[inline(never)]
    fn undo_extra(slot: &mut Slot, pool: &mut Option<Registered>) {
        let (lo, hi) = (slot.frame_lo, slot.frame_hi);
        slot.frame_lo = 0;
        slot.frame_hi = 0;
        slot.multishot = false;
        slot.extra = false;
        release_frames(pool, lo, hi);
    }

    /// Converts every CQE of `cqes` into a typed completion handed to `f`, and updates the
    /// slab. The caller finishes with [`Slab::settle`].
    ///
    /// The fast path (a single-shot completion with result 0 and no flags of an operation
    /// without pool frames, such as a NOP, an fsync or a timeout) runs in a tight loop
    /// with no call and no counter: the free-list head stays in a register and is written
    /// back once, and how many CQEs were consumed is the caller's count. At the first CQE
    /// that needs more (foreign `user_data`, flags, an error, bytes, frames to release),
    /// the rest of the batch goes to [`Slab::complete_general`], out of line.
    #[inline(always)]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "the slot index is masked to 21 bits; the result's bits are only tested for zero"
    )]
    fn complete_all<I: Iterator<Item = cqueue::Entry>>(
        slots: &mut [Slot],
        t: &mut Tally,
        mut cqes: I,
        pool: &mut Option<Registered>,
        provided: &mut Option<BufRing>,
        f: &mut impl FnMut(Completion),
    ) -> I {
        let mut free_head = t.free_head;
        let ring = t.ring;
        let mut pending = None;
        for cqe in &mut cqes {
            let ud = cqe.user_data();
            let idx = (ud & SLOT_MASK) as u32;
            // A free slot has an even generation, a `user_data` always an odd one, so a
            // stale or foreign completion never matches.
            let Some(slot) = slots
                .get_mut(idx as usize)
                .filter(|s| s.user_data == ud && !s.extra)
            else {
                pending = Some(cqe);
                break;
            };
            if (cqe.flags() | cqe.result() as u32) != 0 {
                pending = Some(cqe);
                break;
            }
            let (kind, tag) = (slot.kind, slot.tag);
            slot.user_data = ud.wrapping_add(GENERATION_STEP);
            slot.next_free = free_head;
            free_head = idx;
            f(Completion {
                op: OpId {
                    user_data: ud,
                    ring,
                },
                tag,
                kind,
                raw_result: 0,
                more: false,
                buffer: None,
            });
        }
        t.free_head = free_head;
        match pending {
            Some(first) => Self::complete_general(slots, t, first, cqes, pool, provided, f),
            None => cqes,
        }
    }

    /// [`Slab::complete_all`] for any CQE: errors, bytes, flags, frames, foreign
    /// `user_data`.
    #[inline(never)]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the slot index is masked to 21 bits"
    )]
    fn complete_general<I: Iterator<Item = cqueue::Entry>>(
        slots: &mut [Slot],
        t: &mut Tally,
        first: cqueue::Entry,
        mut cqes: I,
        pool: &mut Option<Registered>,
        provided: &mut Option<BufRing>,
        f: &mut impl FnMut(Completion),
    ) -> I {
        t.general = true;
        for cqe in std::iter::once(first).chain(&mut cqes) {
            let ud = cqe.user_data();
            let idx = (ud & SLOT_MASK) as u32;
            let Some(slot) = slots.get_mut(idx as usize).filter(|s| s.user_data == ud) else {
                t.foreign += 1;
                continue;
            };
            let c = Self::complete_slow(slot, t, provided, ud, cqe.result(), cqe.flags());
            if c.more && slot.busy_after_more(c.kind) {
                t.kept += 1;
            } else {
                Self::free_kept(slot, idx, &mut t.free_head, pool);
            }
            f(c);
        }
        cqes
    }

    /// Writes a drain's totals back: `consumed` CQEs were read. Returns how many
    /// completions were delivered.
    #[inline(always)]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "consumed <= the CQ size, a u32"
    )]
    fn settle(&mut self, t: &Tally, consumed: usize, stats: &RingStats) -> usize {
        self.free_head = t.free_head;
        stats.completed.add(consumed as u64);
        if !t.general {
            // Every CQE took the fast path: delivered, slot freed, nothing else to count.
            self.in_flight = self.in_flight.wrapping_sub(consumed as u32);
            return consumed;
        }
        // Every consumed CQE is foreign or delivered; every delivered one freed its slot
        // unless it was kept (multishot, send-zc awaiting its notification).
        let delivered = consumed.saturating_sub(t.foreign as usize);
        let freed = u32::try_from(delivered.saturating_sub(t.kept)).unwrap_or(u32::MAX);
        self.in_flight = self.in_flight.saturating_sub(freed);
        if t.errors != 0 {
            stats.errors.add(t.errors);
        }
        if t.bytes != 0 {
            stats.bytes.add(t.bytes);
        }
        delivered
    }

    /// Builds a completion of any kind and counts its errors and bytes.
    #[inline(always)]
    fn complete_slow(
        slot: &Slot,
        t: &mut Tally,
        provided: &mut Option<BufRing>,
        ud: u64,
        res: i32,
        flags: u32,
    ) -> Completion {
        let more = cqueue::more(flags);
        let kind = if slot.kind == OpKind::SendZc && cqueue::notif(flags) {
            OpKind::SendZcNotif
        } else {
            slot.kind
        };
        if res != 0 {
            t.result(kind, res);
        }
        let buffer = cqueue::buffer_select(flags);
        if let (Some(bid), Some(br)) = (buffer, provided.as_mut())
            && let Some(w) = br.delivered.get_mut(usize::from(bid >> 6))
        {
            *w |= 1 << (bid & 63);
        }
        Completion {
            op: OpId {
                user_data: ud,
                ring: t.ring,
            },
            tag: slot.tag,
            kind,
            raw_result: res,
            more,
            buffer,
        }
    }
}

/// A drain's running totals, written back to the slab and the stats once per batch.
#[derive(Default)]
struct Tally {
    free_head: u32,
    /// The ring's number, for the [`OpId`]s of the completions.
    ring: u16,
    /// Some CQE went through [`Slab::complete_general`]: the counts below apply.
    general: bool,
    /// Delivered completions whose slot stays busy.
    kept: usize,
    errors: u64,
    bytes: u64,
    foreign: u64,
}

impl Tally {
    /// Counts a non-zero result: an error, or bytes moved by a data operation.
    #[inline(always)]
    fn result(&mut self, kind: OpKind, res: i32) {
        if res < 0 {
            self.errors += 1;
        } else if kind.moves_bytes() {
            self.bytes += u64::from(res.unsigned_abs());
        }
    }
}

/// Drops the busy count of frames `lo..hi`.
fn release_frames(pool: &mut Option<Registered>, lo: u32, hi: u32) {
    if let Some(reg) = pool.as_mut() {
        for b in reg
            .busy
            .get_mut(lo as usize..hi as usize)
            .unwrap_or(&mut [])
        {
            *b = b.saturating_sub(1);
        }
    }
}

struct Registered {
    pool: FramePool,
    /// Number of in-flight operations using each frame. A `u32`, like the slab's
    /// capacity: each operation counts at most once per frame and at most
    /// `max_in_flight < u32::MAX` operations are in flight, so the saturating increments
    /// never saturate and a busy frame never reads as idle. (A narrower counter would:
    /// more operations on one frame than it can count, and `pool_bytes` would hand out
    /// memory the kernel still uses.)
    busy: Box<[u32]>,
    frame_shift: u32,
}

struct BufRing {
    /// Page-aligned ring of `entries` `io_uring_buf` descriptors.
    ring_mem: FramePool,
    bufs: FramePool,
    entries: u16,
    tail: u16,
    group: u16,
    /// One bit per buffer: set while the application owns it.
    delivered: Box<[u64]>,
}

/// An io_uring instance with a fixed-capacity in-flight slab, owned registered buffers,
/// typed completions and single-writer statistics.
///
/// ```
/// use tally_uring::{Completion, Ring, RingError, RingOptions};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut ring = match Ring::new(RingOptions::new(64)) {
///     Ok(r) => r,
///     // Only the kernel's refusal of io_uring skips; any other error fails.
///     Err(e @ RingError::Setup { .. }) => { eprintln!("skip: {e}"); return Ok(()) }
///     Err(e) => return Err(e.into()),
/// };
/// for tag in 0..8 {
///     ring.nop(tag)?;
/// }
/// ring.submit_and_wait(8)?; // one io_uring_enter for the batch
/// let mut out = [Completion::default(); 8];
/// let n = ring.reap(&mut out)?;
/// assert_eq!(n, 8);
/// assert!(out.iter().all(|c| c.result().is_ok()));
/// # Ok(()) }
/// ```
pub struct Ring {
    uring: IoUring,
    slab: Slab,
    pool: Option<Registered>,
    files_registered: u32,
    provided: Option<BufRing>,
    stats: Arc<RingStats>,
    probe: ProbeReport,
    last_dropped: u32,
    /// The thread that built a `SINGLE_ISSUER` ring: the only one that may submit to it.
    issuer: Option<std::thread::ThreadId>,
    /// This ring's number, in every `user_data` it issues.
    number: RingNumber,
    /// Test hook: errors the next `io_uring_enter` calls return instead of entering.
    #[cfg(test)]
    inject_enter: Vec<i32>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("in_flight", &self.slab.in_flight)
            .field("capacity", &self.slab.slots.len())
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

#[allow(
    clippy::cast_ptr_alignment,
    reason = "the ring memory is a page-aligned FramePool mapping"
)]
fn ring_base(mem: &mut FramePool) -> *mut types::BufRingEntry {
    mem.as_mut_ptr().cast()
}

/// Refuses file offsets the kernel would misread: `u64::MAX` means "the current file
/// position" to io_uring's read and write, and other values above `i64::MAX` are negative
/// `loff_t`s.
#[inline(always)]
fn check_offset(offset: u64) -> Result<(), RingError> {
    if offset > i64::MAX as u64 {
        return Err(offset_too_large(offset));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn offset_too_large(offset: u64) -> RingError {
    RingError::OffsetTooLarge { offset }
}

/// An `fsync` entry of `target` (`fdatasync` with [`types::FsyncFlags::DATASYNC`]),
/// without its `user_data`.
fn fsync_entry(target: Target, flags: types::FsyncFlags) -> squeue::Entry {
    match target {
        Target::Fd(fd) => opcode::Fsync::new(types::Fd(fd)).flags(flags).build(),
        Target::Fixed(i) => opcode::Fsync::new(types::Fixed(i)).flags(flags).build(),
    }
}

fn io_uring_disabled_sysctl() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Ring {
    /// Sets up the ring, probes the kernel and allocates the in-flight slab.
    ///
    /// # Errors
    /// [`RingError::InvalidOptions`] for bad sizes; [`RingError::Setup`] when the kernel, a
    /// seccomp filter or `kernel.io_uring_disabled` refuses io_uring (the message says
    /// which and what to do); [`RingError::TooManyRings`] when 1,023 rings are alive in
    /// the process.
    pub fn new(options: RingOptions) -> Result<Self, RingError> {
        if options.sq_entries == 0
            || !options.sq_entries.is_power_of_two()
            || options.sq_entries > 32768
        {
            return Err(RingError::InvalidOptions {
                reason: "sq_entries must be a power of two in 1..=32768",
            });
        }
        if options.cq_entries < options.sq_entries
            || !options.cq_entries.is_power_of_two()
            || options.cq_entries > MAX_CQ_ENTRIES
        {
            return Err(RingError::InvalidOptions {
                reason: "cq_entries must be a power of two >= sq_entries and at most 65536",
            });
        }
        if options.max_in_flight == 0 || options.max_in_flight > MAX_IN_FLIGHT {
            return Err(RingError::InvalidOptions {
                reason: "max_in_flight must be in 1..=1048576 (MAX_IN_FLIGHT)",
            });
        }
        let number = RingNumber::acquire().ok_or(RingError::TooManyRings {
            limit: RING_NUMBERS - 1,
        })?;
        let mut builder = IoUring::builder();
        builder.setup_cqsize(options.cq_entries);
        match options.mode {
            TaskrunMode::DeferTaskrun => {
                if options.sqpoll.is_some() {
                    return Err(RingError::InvalidOptions {
                        reason: "SQPOLL cannot be combined with DEFER_TASKRUN: use TaskrunMode::CoopTaskrun or Plain",
                    });
                }
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            TaskrunMode::CoopTaskrun => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            TaskrunMode::Plain => {}
        }
        if let Some(sq) = options.sqpoll {
            builder.setup_sqpoll(sq.idle_ms);
            if let Some(cpu) = sq.cpu {
                builder.setup_sqpoll_cpu(cpu);
            }
        }
        let uring = builder.build(options.sq_entries).map_err(|source| {
            let hint = setup_hint(
                source.raw_os_error().unwrap_or(0),
                io_uring_disabled_sysctl(),
            );
            RingError::Setup { source, hint }
        })?;
        let mut probe = Probe::new();
        let mut opcodes = [false; 64];
        if uring.submitter().register_probe(&mut probe).is_ok() {
            for (i, slot) in (0u8..).zip(opcodes.iter_mut()) {
                *slot = probe.is_supported(i);
            }
        }
        let params = uring.params();
        let report = ProbeReport {
            opcodes,
            nodrop: params.is_feature_nodrop(),
            submit_stable: params.is_feature_submit_stable(),
            fast_poll: params.is_feature_fast_poll(),
            ext_arg: params.is_feature_ext_arg(),
            linked_file: params.is_feature_linked_file(),
            sq_entries: params.sq_entries(),
            cq_entries: params.cq_entries(),
        };
        let cap = options.max_in_flight;
        let slots: Box<[Slot]> = (0..cap)
            .map(|i| Slot::empty(i, if i + 1 < cap { i + 1 } else { NONE }))
            .collect();
        Ok(Self {
            uring,
            slab: Slab {
                timespecs: vec![types::Timespec::new(); slots.len()].into_boxed_slice(),
                slots,
                free_head: 0,
                in_flight: 0,
            },
            pool: None,
            files_registered: 0,
            provided: None,
            stats: Arc::new(RingStats::new()),
            probe: report,
            last_dropped: 0,
            issuer: (options.mode == TaskrunMode::DeferTaskrun)
                .then(|| std::thread::current().id()),
            number,
            #[cfg(test)]
            inject_enter: Vec::new(),
        })
    }

    /// What the kernel supports.
    pub fn probe(&self) -> &ProbeReport {
        &self.probe
    }

    /// The statistics (update only by this ring; read from anywhere).
    pub fn stats(&self) -> &RingStats {
        &self.stats
    }

    /// A shared handle to the statistics for a monitoring thread.
    pub fn stats_handle(&self) -> Arc<RingStats> {
        Arc::clone(&self.stats)
    }

    /// Operations queued or submitted and not yet fully completed.
    pub fn in_flight(&self) -> u32 {
        self.slab.in_flight
    }

    /// Capacity of the in-flight slab.
    pub fn capacity(&self) -> u32 {
        u32::try_from(self.slab.slots.len()).unwrap_or(NONE)
    }

    // ----- registration -------------------------------------------------------------

    /// Registers the whole pool as one fixed buffer (buffer index 0) and takes ownership
    /// of it; fixed operations then address it with [`PoolRange`]s, and the same frames
    /// can be handed to other kernel interfaces later.
    ///
    /// # Errors
    /// [`RingError::Register`] when the kernel refuses (usually `RLIMIT_MEMLOCK`).
    pub fn register_frame_pool(&mut self, mut pool: FramePool) -> Result<(), RingError> {
        if self.pool.is_some() {
            return Err(RingError::InvalidOptions {
                reason: "a frame pool is already registered with this ring",
            });
        }
        let iov = libc::iovec {
            iov_base: pool.as_mut_ptr().cast(),
            iov_len: pool.len_bytes(),
        };
        // SAFETY: the iovec covers exactly the pool's mapping; the ring owns the pool from
        // here on (it is dropped after the ring is unregistered, see `Drop`), so the memory
        // stays valid while registered.
        unsafe {
            self.uring
                .submitter()
                .register_buffers(std::slice::from_ref(&iov))
        }
        .map_err(|source| RingError::Register {
            what: "frame pool buffers",
            hint: register_hint(Registration::Buffers, source.raw_os_error().unwrap_or(0)),
            source,
        })?;
        let frames = pool.frame_count() as usize;
        let frame_shift = pool.frame_size_bytes().trailing_zeros();
        self.pool = Some(Registered {
            pool,
            busy: vec![0u32; frames].into_boxed_slice(),
            frame_shift,
        });
        Ok(())
    }

    /// Sizes and allocation state of the registered pool. Its bytes are reachable only
    /// through [`Ring::pool_bytes`] and [`Ring::pool_bytes_mut`], which refuse frames an
    /// operation in flight uses (the pool itself is not handed out: its `as_slice` would
    /// read memory the kernel may be writing):
    ///
    /// ```compile_fail
    /// # fn f(ring: &tally_uring::Ring) -> Result<(), tally_uring::RingError> {
    /// let bytes: &[u8] = ring.pool()?.as_slice();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`RingError::NoFramePool`] before [`Ring::register_frame_pool`].
    pub fn pool(&self) -> Result<PoolView<'_>, RingError> {
        self.pool
            .as_ref()
            .map(|r| PoolView { pool: &r.pool })
            .ok_or(RingError::NoFramePool)
    }

    /// Allocates a frame of the registered pool (its bytes are reached through
    /// [`Ring::pool_bytes_mut`] at [`PoolView::offset_of`], which checks that no
    /// operation uses them).
    ///
    /// # Errors
    /// [`RingError::NoFramePool`] before [`Ring::register_frame_pool`]; [`RingError::Pool`]
    /// when every frame is allocated.
    pub fn pool_alloc(&mut self) -> Result<tally_core_types::FrameId, RingError> {
        let reg = self.pool.as_mut().ok_or(RingError::NoFramePool)?;
        Ok(reg.pool.alloc()?)
    }

    /// Returns a frame to the pool.
    ///
    /// # Errors
    /// [`RingError::FrameInFlight`] while an operation uses it; pool errors.
    pub fn pool_free(&mut self, id: tally_core_types::FrameId) -> Result<(), RingError> {
        let reg = self.pool.as_mut().ok_or(RingError::NoFramePool)?;
        if reg.busy.get(id.index() as usize).copied().unwrap_or(0) != 0 {
            return Err(RingError::FrameInFlight { frame: id.index() });
        }
        Ok(reg.pool.free(id)?)
    }

    fn check_range(reg: &Registered, range: PoolRange) -> Result<(u32, u32), RingError> {
        let pool_len = reg.pool.len_bytes();
        let len = range.len as usize;
        let end = range
            .offset
            .checked_add(len)
            .filter(|e| *e <= pool_len)
            .ok_or(RingError::RangeOutOfPool {
                offset: range.offset,
                len,
                pool_len,
            })?;
        let lo = u32::try_from(range.offset >> reg.frame_shift).unwrap_or(NONE);
        let hi = if len == 0 {
            lo
        } else {
            u32::try_from(((end - 1) >> reg.frame_shift) + 1).unwrap_or(NONE)
        };
        Ok((lo, hi))
    }

    fn range_idle(reg: &Registered, lo: u32, hi: u32) -> Result<(), RingError> {
        let busy = reg.busy.get(lo as usize..hi as usize).unwrap_or(&[]);
        if let Some(i) = busy.iter().position(|b| *b != 0) {
            return Err(RingError::FrameInFlight {
                frame: lo + u32::try_from(i).unwrap_or(0),
            });
        }
        Ok(())
    }

    /// Bytes of the registered pool, if no in-flight operation uses them.
    ///
    /// # Errors
    /// [`RingError::NoFramePool`], [`RingError::RangeOutOfPool`], [`RingError::FrameInFlight`].
    pub fn pool_bytes(&self, range: PoolRange) -> Result<&[u8], RingError> {
        let reg = self.pool.as_ref().ok_or(RingError::NoFramePool)?;
        let (lo, hi) = Self::check_range(reg, range)?;
        Self::range_idle(reg, lo, hi)?;
        Ok(reg
            .pool
            .as_slice()
            .get(range.offset..range.offset + range.len as usize)
            .unwrap_or(&[]))
    }

    /// Writable bytes of the registered pool, if no in-flight operation uses them.
    ///
    /// # Errors
    /// [`RingError::NoFramePool`], [`RingError::RangeOutOfPool`], [`RingError::FrameInFlight`].
    pub fn pool_bytes_mut(&mut self, range: PoolRange) -> Result<&mut [u8], RingError> {
        let reg = self.pool.as_mut().ok_or(RingError::NoFramePool)?;
        let (lo, hi) = Self::check_range(reg, range)?;
        Self::range_idle(reg, lo, hi)?;
        Ok(reg
            .pool
            .as_mut_slice()
            .get_mut(range.offset..range.offset + range.len as usize)
            .unwrap_or(&mut []))
    }

    /// Registers files; operations then use [`Target::Fixed`] with their index. Replacing
    /// registered files needs an idle ring.
    ///
    /// # Errors
    /// [`RingError::Busy`] when files are already registered and operations are in flight
    /// (they may name the old slots); [`RingError::Register`] when the kernel refuses.
    pub fn register_files(&mut self, fds: &[RawFd]) -> Result<(), RingError> {
        if self.files_registered > 0 {
            // A queued or linked operation resolves its `Target::Fixed` slot when it is
            // issued: swapping the table under it would send its I/O to another file.
            if self.slab.in_flight != 0 {
                return Err(RingError::Busy {
                    in_flight: self.slab.in_flight,
                });
            }
            self.uring
                .submitter()
                .unregister_files()
                .map_err(|source| RingError::Register {
                    what: "files (unregister)",
                    hint: register_hint(Registration::Files, source.raw_os_error().unwrap_or(0)),
                    source,
                })?;
            self.files_registered = 0;
        }
        self.uring
            .submitter()
            .register_files(fds)
            .map_err(|source| RingError::Register {
                what: "files",
                hint: register_hint(Registration::Files, source.raw_os_error().unwrap_or(0)),
                source,
            })?;
        self.files_registered = u32::try_from(fds.len()).unwrap_or(NONE);
        Ok(())
    }

    /// Sets up a provided-buffer ring of `count` buffers (a power of two, at most 32768)
    /// of `buf_size_bytes` each (a power of two, at least 2048), as buffer group `group`,
    /// for [`Ring::recv_multishot`].
    ///
    /// # Errors
    /// [`RingError::InvalidOptions`] for bad sizes; [`RingError::Register`] when refused.
    pub fn setup_provided_buffers(
        &mut self,
        group: u16,
        count: u16,
        buf_size_bytes: usize,
    ) -> Result<(), RingError> {
        if self.provided.is_some() {
            return Err(RingError::InvalidOptions {
                reason: "a provided-buffer ring is already set up",
            });
        }
        if count == 0 || !count.is_power_of_two() || count > 32768 {
            return Err(RingError::InvalidOptions {
                reason: "provided buffer count must be a power of two in 1..=32768",
            });
        }
        // The kernel's buffer length field is 32 bits: refuse before mapping (and
        // populating) the buffers.
        let len = u32::try_from(buf_size_bytes).map_err(|_| RingError::TooLong {
            len: buf_size_bytes,
        })?;
        let ring_bytes = (usize::from(count) * size_of::<types::BufRingEntry>())
            .max(4096)
            .next_power_of_two();
        let mut ring_mem = FramePool::new(FramePoolOptions::new(ring_bytes, 1).populate(true))?;
        let bufs =
            FramePool::new(FramePoolOptions::new(buf_size_bytes, u32::from(count)).populate(true))?;
        {
            let base = ring_base(&mut ring_mem);
            for bid in 0..count {
                // SAFETY: `base` is the page-aligned start of a zeroed mapping of at least
                // `count * 16` bytes, so entry `bid < count` is in bounds and properly aligned;
                // the kernel does not know the ring yet, so nobody else accesses it.
                let entry = unsafe { &mut *base.add(usize::from(bid)) };
                entry.set_addr(bufs.as_ptr() as u64 + u64::from(bid) * u64::from(len));
                entry.set_len(len);
                entry.set_bid(bid);
            }
        }
        // SAFETY: the ring memory is owned by `self.provided` below and lives until the
        // ring is dropped (the kernel's registration ends when the io_uring fd closes,
        // before `buf_ring` is dropped: see the field order in `Drop`).
        unsafe {
            self.uring.submitter().register_buf_ring_with_flags(
                ring_mem.as_ptr() as u64,
                count,
                group,
                0,
            )
        }
        .map_err(|source| RingError::Register {
            what: "provided-buffer ring",
            hint: register_hint(Registration::BufRing, source.raw_os_error().unwrap_or(0)),
            source,
        })?;
        let words = usize::from(count).div_ceil(64);
        let mut br = BufRing {
            ring_mem,
            bufs,
            entries: count,
            tail: 0,
            group,
            delivered: vec![0; words].into_boxed_slice(),
        };
        // Publish all buffers.
        br.tail = count;
        Self::publish_tail(&mut br);
        self.provided = Some(br);
        Ok(())
    }

    fn publish_tail(br: &mut BufRing) {
        let base = ring_base(&mut br.ring_mem);
        // SAFETY: `base` points at entry 0 of the initialised ring; `tail` returns the
        // address of its `resv` field, which the kernel reads as the ring's tail. The field
        // is 2-byte aligned and shared with the kernel, so it is accessed atomically.
        let tail = unsafe { &*types::BufRingEntry::tail(base).cast::<AtomicU16>() };
        tail.store(br.tail, Ordering::Release);
    }

    /// The bytes of provided buffer `bid` (delivered by a receive completion), `len` long.
    ///
    /// # Errors
    /// [`RingError::NoProvidedBuffers`], [`RingError::BufferNotDelivered`].
    pub fn provided_buffer(&self, bid: u16, len: usize) -> Result<&[u8], RingError> {
        let br = self.provided.as_ref().ok_or(RingError::NoProvidedBuffers)?;
        let word = br
            .delivered
            .get(usize::from(bid >> 6))
            .copied()
            .unwrap_or(0);
        if bid >= br.entries || word & (1 << (bid & 63)) == 0 {
            return Err(RingError::BufferNotDelivered { bid });
        }
        let size = br.bufs.frame_size_bytes();
        let start = usize::from(bid) * size;
        Ok(br
            .bufs
            .as_slice()
            .get(start..start + len.min(size))
            .unwrap_or(&[]))
    }

    /// Gives provided buffer `bid` back to the kernel.
    ///
    /// # Errors
    /// [`RingError::NoProvidedBuffers`], [`RingError::BufferNotDelivered`] (double recycle).
    pub fn recycle_buffer(&mut self, bid: u16) -> Result<(), RingError> {
        let br = self.provided.as_mut().ok_or(RingError::NoProvidedBuffers)?;
        let word = br
            .delivered
            .get_mut(usize::from(bid >> 6))
            .filter(|_| bid < br.entries);
        let Some(word) = word.filter(|w| **w & (1 << (bid & 63)) != 0) else {
            return Err(RingError::BufferNotDelivered { bid });
        };
        *word &= !(1 << (bid & 63));
        let size = u32::try_from(br.bufs.frame_size_bytes()).unwrap_or(u32::MAX);
        let addr = br.bufs.as_ptr() as u64 + u64::from(bid) * u64::from(size);
        let index = usize::from(br.tail & (br.entries - 1));
        let base = ring_base(&mut br.ring_mem);
        // SAFETY: `index < entries`, inside the ring mapping. The kernel only reads entries
        // between its head and our published tail; this slot is past the tail, so only we
        // access it until `publish_tail` (a release store) hands it over.
        let entry = unsafe { &mut *base.add(index) };
        entry.set_addr(addr);
        entry.set_len(size);
        entry.set_bid(bid);
        br.tail = br.tail.wrapping_add(1);
        Self::publish_tail(br);
        Ok(())
    }

    // ----- slab ---------------------------------------------------------------------

    #[inline(always)]
    fn take_slot(&mut self, kind: OpKind, tag: u64) -> Result<(u32, u64), RingError> {
        match self.slab.take(kind, tag) {
            Some(v) => Ok(v),
            None => Err(self.in_flight_full()),
        }
    }

    #[cold]
    #[inline(never)]
    fn in_flight_full(&self) -> RingError {
        self.stats.in_flight_full.incr();
        RingError::InFlightFull {
            capacity: self.capacity(),
        }
    }

    #[inline]
    fn release_slot(&mut self, idx: u32) {
        self.slab.release(idx, &mut self.pool);
    }

    fn mark_frames(&mut self, idx: u32, lo: u32, hi: u32) {
        if let Some(reg) = self.pool.as_mut() {
            for b in reg
                .busy
                .get_mut(lo as usize..hi as usize)
                .unwrap_or(&mut [])
            {
                *b = b.saturating_add(1);
            }
        }
        if let Some(slot) = self.slab.slots.get_mut(idx as usize) {
            slot.frame_lo = lo;
            slot.frame_hi = hi;
            slot.extra = true;
        }
    }

    /// Pushes one entry; when the SQ is full, submits what is queued first.
    ///
    /// The slow path gets no reference to `entry` (measured: when it did, the entry had
    /// to be built in a stack temporary and copied into the SQ with loads that straddle
    /// the stores which built it, a store-forwarding stall on every operation); the
    /// entry is built straight into the SQ slot instead.
    #[inline(always)]
    fn push(&mut self, entry: &squeue::Entry) -> Result<(), RingError> {
        loop {
            // SAFETY: every entry built by this module points only at memory that
            // outlives the operation: pool ranges marked busy until completion,
            // slot-resident timespecs, ring-owned provided buffers, or borrowed slices
            // whose calls wait for completion before returning (see the module docs).
            if unsafe { self.uring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.make_room()?;
        }
    }

    /// The slow path of [`Ring::push`]: the SQ is full, submit what is queued.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self) -> Result<(), RingError> {
        self.stats.sq_full.incr();
        self.submit()?;
        Ok(())
    }

    fn check_target(&self, target: Target) -> Result<(), RingError> {
        if let Target::Fixed(index) = target
            && index >= self.files_registered
        {
            return Err(RingError::FileIndex {
                index,
                registered: self.files_registered,
            });
        }
        Ok(())
    }

    #[inline(always)]
    fn queue(
        &mut self,
        kind: OpKind,
        tag: u64,
        build: impl FnOnce(u64) -> squeue::Entry,
    ) -> Result<OpId, RingError> {
        let (idx, ud) = self.take_slot(kind, tag)?;
        let entry = build(ud);
        if let Err(e) = self.push(&entry) {
            self.release_slot(idx);
            return Err(e);
        }
        Ok(self.op_id(ud))
    }

    // ----- operations ---------------------------------------------------------------

    /// Queues a no-op.
    ///
    /// # Errors
    /// [`RingError::InFlightFull`]; [`RingError::Enter`] if an early submit fails.
    #[inline]
    pub fn nop(&mut self, tag: u64) -> Result<OpId, RingError> {
        self.queue(OpKind::Nop, tag, |ud| {
            opcode::Nop::new().build().user_data(ud)
        })
    }

    /// Checks a pool-range operation, takes its slot, marks its frames busy and builds its
    /// entry (not pushed: on a push failure the caller releases the slot, which releases
    /// the frames).
    #[inline(always)]
    fn fixed_entry(
        &mut self,
        kind: OpKind,
        target: Target,
        range: PoolRange,
        file_offset: u64,
        tag: u64,
    ) -> Result<(u32, squeue::Entry), RingError> {
        self.check_target(target)?;
        check_offset(file_offset)?;
        let reg = self.pool.as_ref().ok_or(RingError::NoFramePool)?;
        let (lo, hi) = Self::check_range(reg, range)?;
        if kind == OpKind::ReadFixed {
            // The kernel will write these frames: nobody else may use them meanwhile.
            Self::range_idle(reg, lo, hi)?;
        }
        let base = reg.pool.as_ptr();
        // Address arithmetic only; the pointer is dereferenced by the kernel.
        let ptr = base.wrapping_add(range.offset);
        let len = range.len;
        let (idx, ud) = self.take_slot(kind, tag)?;
        let entry = match (kind, target) {
            (OpKind::ReadFixed, Target::Fd(fd)) => {
                opcode::ReadFixed::new(types::Fd(fd), ptr.cast_mut(), len, 0)
                    .offset(file_offset)
                    .build()
            }
            (OpKind::ReadFixed, Target::Fixed(i)) => {
                opcode::ReadFixed::new(types::Fixed(i), ptr.cast_mut(), len, 0)
                    .offset(file_offset)
                    .build()
            }
            (OpKind::Send, Target::Fd(fd)) => opcode::Send::new(types::Fd(fd), ptr, len).build(),
            (OpKind::Send, Target::Fixed(i)) => {
                opcode::Send::new(types::Fixed(i), ptr, len).build()
            }
            (OpKind::SendZc, Target::Fd(fd)) => opcode::SendZc::new(types::Fd(fd), ptr, len)
                .buf_index(Some(0))
                .build(),
            (OpKind::SendZc, Target::Fixed(i)) => opcode::SendZc::new(types::Fixed(i), ptr, len)
                .buf_index(Some(0))
                .build(),
            (_, Target::Fd(fd)) => opcode::WriteFixed::new(types::Fd(fd), ptr, len, 0)
                .offset(file_offset)
                .build(),
            (_, Target::Fixed(i)) => opcode::WriteFixed::new(types::Fixed(i), ptr, len, 0)
                .offset(file_offset)
                .build(),
        };
        self.mark_frames(idx, lo, hi);
        Ok((idx, entry.user_data(ud)))
    }

    fn fixed_rw(
        &mut self,
        kind: OpKind,
        target: Target,
        range: PoolRange,
        file_offset: u64,
        tag: u64,
    ) -> Result<OpId, RingError> {
        let (idx, entry) = self.fixed_entry(kind, target, range, file_offset, tag)?;
        if let Err(e) = self.push(&entry) {
            self.release_slot(idx);
            return Err(e);
        }
        Ok(self.op_id(entry.get_user_data()))
    }

    /// Queues a read of `range.len` bytes at `file_offset` into the pool range (registered
    /// buffer). The frames stay busy until the completion is reaped.
    ///
    /// # Errors
    /// [`RingError::NoFramePool`], [`RingError::RangeOutOfPool`], [`RingError::FrameInFlight`],
    /// [`RingError::FileIndex`], [`RingError::OffsetTooLarge`] (above `i64::MAX`),
    /// [`RingError::InFlightFull`], [`RingError::Enter`].
    #[inline]
    pub fn read_fixed(
        &mut self,
        target: Target,
        range: PoolRange,
        file_offset: u64,
        tag: u64,
    ) -> Result<OpId, RingError> {
        self.fixed_rw(OpKind::ReadFixed, target, range, file_offset, tag)
    }

    /// Queues a write of the pool range at `file_offset` (registered buffer).
    ///
    /// # Errors
    /// As [`Ring::read_fixed`].
    #[inline]
    pub fn write_fixed(
        &mut self,
        target: Target,
        range: PoolRange,
        file_offset: u64,
        tag: u64,
    ) -> Result<OpId, RingError> {
        self.fixed_rw(OpKind::WriteFixed, target, range, file_offset, tag)
    }

    /// Queues a write of the pool range linked to an `fdatasync` of the same file: the sync
    /// starts only after the write completed in full (a short or failed write cancels it
    /// with `ECANCELED`). Returns (write, sync).
    ///
    /// Both entries are published to the kernel together (a link only holds within one
    /// submission: an SQPOLL thread taking the write alone would run the sync on its own).
    ///
    /// # Errors
    /// As [`Ring::read_fixed`]; [`RingError::InvalidOptions`] on a ring whose submission
    /// queue has a single entry (it cannot hold the pair).
    pub fn write_fixed_then_fdatasync(
        &mut self,
        target: Target,
        range: PoolRange,
        file_offset: u64,
        tag: u64,
    ) -> Result<(OpId, OpId), RingError> {
        if self.uring.submission().capacity() < 2 {
            return Err(RingError::InvalidOptions {
                reason: "a write linked to an fdatasync needs a submission queue of at least 2 entries",
            });
        }
        if self.slab.in_flight.saturating_add(2) > self.capacity() {
            return Err(self.in_flight_full());
        }
        let (w_idx, write) =
            self.fixed_entry(OpKind::WriteFixed, target, range, file_offset, tag)?;
        let (s_idx, s_ud) = match self.take_slot(OpKind::Fdatasync, tag) {
            Ok(v) => v,
            Err(e) => {
                self.release_slot(w_idx);
                return Err(e);
            }
        };
        let sync = fsync_entry(target, types::FsyncFlags::DATASYNC).user_data(s_ud);
        let pair = [write.flags(squeue::Flags::IO_LINK), sync];
        let pushed = loop {
            // SAFETY: the write names pool frames marked busy until its completion (see
            // `push`); the fdatasync names no memory.
            if unsafe { self.uring.submission().push_multiple(&pair) }.is_ok() {
                break Ok(());
            }
            if let Err(e) = self.make_room() {
                break Err(e);
            }
        };
        if let Err(e) = pushed {
            self.release_slot(s_idx);
            self.release_slot(w_idx);
            return Err(e);
        }
        Ok((self.op_id(pair[0].get_user_data()), self.op_id(s_ud)))
    }

    /// Queues an `fsync` (`data_only = false`) or `fdatasync` (`data_only = true`).
    ///
    /// # Errors
    /// [`RingError::FileIndex`], [`RingError::InFlightFull`], [`RingError::Enter`].
    pub fn sync(&mut self, target: Target, data_only: bool, tag: u64) -> Result<OpId, RingError> {
        self.check_target(target)?;
        let (kind, flags) = if data_only {
            (OpKind::Fdatasync, types::FsyncFlags::DATASYNC)
        } else {
            (OpKind::Fsync, types::FsyncFlags::empty())
        };
        self.queue(kind, tag, |ud| fsync_entry(target, flags).user_data(ud))
    }

    /// Queues an `fallocate(fd, mode, offset, len)`.
    ///
    /// # Errors
    /// [`RingError::FileIndex`], [`RingError::InFlightFull`], [`RingError::Enter`].
    pub fn fallocate(
        &mut self,
        target: Target,
        offset: u64,
        len: u64,
        mode: i32,
        tag: u64,
    ) -> Result<OpId, RingError> {
        self.check_target(target)?;
        self.queue(OpKind::Fallocate, tag, |ud| {
            match target {
                Target::Fd(fd) => opcode::Fallocate::new(types::Fd(fd), len)
                    .offset(offset)
                    .mode(mode)
                    .build(),
                Target::Fixed(i) => opcode::Fallocate::new(types::Fixed(i), len)
                    .offset(offset)
                    .mode(mode)
                    .build(),
            }
            .user_data(ud)
        })
    }

    /// Queues a timeout that completes with `-ETIME` after `after` (or 0 if removed by
    /// completion count, never used here).
    ///
    /// # Errors
    /// [`RingError::InFlightFull`], [`RingError::Enter`].
    pub fn timeout(&mut self, after: Duration, tag: u64) -> Result<OpId, RingError> {
        let (idx, ud) = self.take_slot(OpKind::Timeout, tag)?;
        let Some(slot_ts) = self.slab.timespecs.get_mut(idx as usize) else {
            self.release_slot(idx);
            return Err(RingError::InFlightFull { capacity: 0 });
        };
        *slot_ts = types::Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos());
        let ts: *const types::Timespec = &raw const *slot_ts;
        let entry = opcode::Timeout::new(ts).build().user_data(ud);
        if let Err(e) = self.push(&entry) {
            self.release_slot(idx);
            return Err(e);
        }
        Ok(self.op_id(ud))
    }

    /// Queues a cancellation of `target_op`. The target then completes with `-ECANCELED`
    /// (or normally, if it finished first); the cancel itself completes with 0, `-ENOENT`
    /// or `-EALREADY`.
    ///
    /// # Errors
    /// [`RingError::ForeignOp`] when `target_op` was issued by another ring (the kernel
    /// would cancel whichever operation of this ring has the same `user_data`);
    /// [`RingError::InFlightFull`], [`RingError::Enter`].
    pub fn cancel(&mut self, target_op: OpId, tag: u64) -> Result<OpId, RingError> {
        self.check_own(target_op)?;
        self.queue(OpKind::Cancel, tag, |ud| {
            opcode::AsyncCancel::new(target_op.user_data)
                .build()
                .user_data(ud)
        })
    }

    /// Queues a multishot receive on `socket` into the provided-buffer ring: one entry,
    /// one completion per datagram with [`Completion::buffer`] set, until a completion
    /// arrives with `more == false` (re-arm then).
    ///
    /// # Errors
    /// [`RingError::NoProvidedBuffers`], [`RingError::FileIndex`], [`RingError::InFlightFull`].
    pub fn recv_multishot(&mut self, socket: Target, tag: u64) -> Result<OpId, RingError> {
        self.check_target(socket)?;
        let group = self
            .provided
            .as_ref()
            .ok_or(RingError::NoProvidedBuffers)?
            .group;
        let (idx, ud) = self.take_slot(OpKind::RecvMulti, tag)?;
        if let Some(slot) = self.slab.slots.get_mut(idx as usize) {
            slot.multishot = true;
            slot.extra = true;
        }
        let entry = match socket {
            Target::Fd(fd) => opcode::RecvMulti::new(types::Fd(fd), group).build(),
            Target::Fixed(i) => opcode::RecvMulti::new(types::Fixed(i), group).build(),
        }
        .user_data(ud);
        if let Err(e) = self.push(&entry) {
            self.release_slot(idx);
            return Err(e);
        }
        Ok(self.op_id(ud))
    }

    /// Queues a send of the pool range on a connected socket.
    ///
    /// # Errors
    /// As [`Ring::read_fixed`].
    pub fn send(&mut self, socket: Target, range: PoolRange, tag: u64) -> Result<OpId, RingError> {
        self.fixed_rw(OpKind::Send, socket, range, 0, tag)
    }

    /// Queues a zero-copy send of the pool range (registered buffer). Two completions
    /// arrive: the result (`more == true`) and a [`OpKind::SendZcNotif`] once the kernel
    /// no longer reads the frames; the frames stay busy until then.
    ///
    /// # Errors
    /// [`RingError::Unsupported`] on kernels without `SEND_ZC`; as [`Ring::read_fixed`].
    pub fn send_zc(
        &mut self,
        socket: Target,
        range: PoolRange,
        tag: u64,
    ) -> Result<OpId, RingError> {
        if !self.probe.supports(opcode::SendZc::CODE) {
            return Err(RingError::Unsupported { op: "send_zc" });
        }
        self.fixed_rw(OpKind::SendZc, socket, range, 0, tag)
    }

    // ----- submission and completion ------------------------------------------------

    /// Hands every queued entry to the kernel with one `io_uring_enter`.
    ///
    /// # Errors
    /// [`RingError::Enter`].
    #[inline]
    pub fn submit(&mut self) -> Result<usize, RingError> {
        self.submit_and_wait(0)
    }

    /// Submits every queued entry and waits until at least `want` completions are ready,
    /// in one `io_uring_enter`. `want` is capped at the number of operations in flight:
    /// waiting for more could never end when each makes one completion (operations that
    /// make several, multishot receives and send-zc, may then need another call).
    ///
    /// `EINTR` is retried. So is `EAGAIN` (the kernel could not allocate requests, under
    /// memory pressure; nothing was submitted, the entries are still queued), up to
    /// [`ENTER_EAGAIN_RETRIES`] times with a `yield` between tries, counted in
    /// [`RingStats::enter_retries`]: a transient shortage does not fail the caller (a
    /// journal would be poisoned by it).
    ///
    /// # Errors
    /// [`RingError::Enter`], including `EAGAIN` that outlasts the retries.
    #[inline]
    pub fn submit_and_wait(&mut self, want: usize) -> Result<usize, RingError> {
        let want = want.min(self.slab.in_flight as usize);
        let mut retries = 0u32;
        loop {
            self.stats.enter_syscalls.incr();
            match self.enter(want) {
                Ok(n) => {
                    self.stats.submitted.add(n as u64);
                    return Ok(n);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::EAGAIN) && retries < ENTER_EAGAIN_RETRIES =>
                {
                    retries += 1;
                    self.stats.enter_retries.incr();
                    std::thread::yield_now();
                }
                // EBUSY: the CQ is full of unreaped completions; the caller must reap.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && want > 0 => return Ok(0),
                Err(source) => return Err(RingError::Enter { source }),
            }
        }
    }

    /// One `io_uring_enter` submitting the queue and waiting for `want` completions.
    #[inline(always)]
    fn enter(&mut self, want: usize) -> std::io::Result<usize> {
        #[cfg(test)]
        if let Some(errno) = self.inject_enter.pop() {
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        self.uring.submitter().submit_and_wait(want)
    }

    /// Test hook: the next `io_uring_enter` calls fail with `errnos` (last first) without
    /// entering the kernel.
    #[cfg(test)]
    pub(crate) fn inject_enter_errors(&mut self, errnos: &[i32]) {
        self.inject_enter.extend_from_slice(errnos);
    }

    /// Hands every ready completion to `f`, in order, and returns how many. The fastest
    /// way to consume completions: nothing is staged or copied, the slab and the stats
    /// are updated as each completion is read. Flushes completions the kernel kept back
    /// after a CQ overflow (`IORING_FEAT_NODROP`), so none are lost.
    ///
    /// # Errors
    /// [`RingError::CompletionsLost`] if the kernel dropped completions (kernels without
    /// NODROP); [`RingError::Enter`] if the flush fails.
    #[inline]
    pub fn drain(&mut self, mut f: impl FnMut(Completion)) -> Result<usize, RingError> {
        let mut n = 0usize;
        loop {
            let Self {
                uring,
                slab,
                pool,
                provided,
                stats,
                number,
                ..
            } = self;
            let cq = uring.completion();
            if cq.overflow() != self.last_dropped {
                drop(cq);
                return self.lost_or(n);
            }
            let mut t = Tally {
                free_head: slab.free_head,
                ring: number.0,
                ..Tally::default()
            };
            let ready = cq.len();
            // The queue goes in and comes back by value (two registers), so that its head
            // stays in a register through the loop.
            let cq = Slab::complete_all(&mut slab.slots, &mut t, cq, pool, provided, &mut f);
            let consumed = ready - cq.len();
            drop(cq);
            n += slab.settle(&t, consumed, stats);
            if self.uring.submission().cq_overflow() {
                self.stats.cq_overflow.incr();
                // An enter with GETEVENTS moves the kernel's overflow list into the CQ.
                self.submit()?;
                continue;
            }
            return Ok(n);
        }
    }

    /// Moves ready completions into `out` and returns how many. Flushes completions the
    /// kernel kept back after a CQ overflow (`IORING_FEAT_NODROP`), so none are lost.
    ///
    /// # Errors
    /// [`RingError::CompletionsLost`] if the kernel dropped completions (kernels without
    /// NODROP); [`RingError::Enter`] if the flush fails.
    #[inline]
    pub fn reap(&mut self, out: &mut [Completion]) -> Result<usize, RingError> {
        let mut slots = out.iter_mut();
        self.drain_up_to(slots.len(), &mut |c| {
            if let Some(o) = slots.next() {
                *o = c;
            }
        })
    }

    /// Reads up to `max` completions, each handed to `f` as it is read.
    #[inline]
    fn drain_up_to(
        &mut self,
        max: usize,
        f: &mut impl FnMut(Completion),
    ) -> Result<usize, RingError> {
        let mut n = 0usize;
        loop {
            let Self {
                uring,
                slab,
                pool,
                provided,
                stats,
                number,
                ..
            } = self;
            let mut cq = uring.completion();
            if cq.overflow() != self.last_dropped {
                drop(cq);
                return self.lost_or(n);
            }
            let mut t = Tally {
                free_head: slab.free_head,
                ring: number.0,
                ..Tally::default()
            };
            let ready = cq.len();
            // What is left of the `take` adapter is not needed: `cq` itself advanced.
            let _rest = Slab::complete_all(
                &mut slab.slots,
                &mut t,
                cq.by_ref().take(max - n),
                pool,
                provided,
                f,
            );
            let consumed = ready - cq.len();
            n += slab.settle(&t, consumed, stats);
            let more_ready = !cq.is_empty();
            drop(cq);
            if n >= max {
                return Ok(n);
            }
            if more_ready {
                continue;
            }
            if self.uring.submission().cq_overflow() {
                self.stats.cq_overflow.incr();
                // An enter with GETEVENTS moves the kernel's overflow list into the CQ.
                self.submit()?;
                continue;
            }
            return Ok(n);
        }
    }

    /// The kernel's dropped-completions counter moved: returns the `n` completions this
    /// call already delivered (the loss is reported by the next call, before it consumes
    /// anything), or the loss when nothing was delivered. Returning the error after
    /// delivering completions would lose their count: `reap`'s caller could not tell
    /// which entries of its array were filled.
    #[cold]
    #[inline(never)]
    fn lost_or(&mut self, n: usize) -> Result<usize, RingError> {
        if n > 0 {
            return Ok(n);
        }
        let dropped = self.uring.completion().overflow();
        let lost = dropped.wrapping_sub(self.last_dropped);
        self.last_dropped = dropped;
        Err(RingError::CompletionsLost { dropped: lost })
    }

    /// Waits for one completion of any operation (submitting queued entries first).
    ///
    /// # Errors
    /// [`RingError::NothingInFlight`] when no operation is in flight (nothing could
    /// complete); [`RingError::Enter`], [`RingError::CompletionsLost`].
    pub fn wait_one(&mut self) -> Result<Completion, RingError> {
        let mut out = [Completion::default()];
        loop {
            if self.reap(&mut out)? == 1 {
                return Ok(out[0]);
            }
            if self.slab.in_flight == 0 {
                return Err(RingError::NothingInFlight);
            }
            self.submit_and_wait(1)?;
        }
    }

    /// The [`OpId`] of this ring's operation with `user_data`.
    #[inline(always)]
    const fn op_id(&self, user_data: u64) -> OpId {
        OpId {
            user_data,
            ring: self.number.0,
        }
    }

    /// Refuses an [`OpId`] issued by another ring: its `user_data` could name an
    /// operation of this one. [`OpId::default`] (ring 0, which no ring holds) is let
    /// through: its `user_data`, 0, is that of a free slot, never of a submitted entry,
    /// so it names nothing on any ring.
    #[inline]
    fn check_own(&self, op: OpId) -> Result<(), RingError> {
        let issuer = op.ring;
        if issuer == self.number.0 || issuer == 0 {
            Ok(())
        } else {
            Err(self.foreign_op(op, issuer))
        }
    }

    #[cold]
    #[inline(never)]
    fn foreign_op(&self, op: OpId, issuer: u16) -> RingError {
        RingError::ForeignOp {
            user_data: op.user_data,
            issuer,
            ring: self.number.0,
        }
    }

    /// Whether `op` is queued or in flight on this ring (its final completion not yet
    /// consumed). Always `false` for an [`OpId`] issued by another ring.
    pub fn is_in_flight(&self, op: OpId) -> bool {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the slot index is masked to 21 bits"
        )]
        let idx = (op.user_data & SLOT_MASK) as u32;
        op.ring == self.number.0
            && self
                .slab
                .slots
                .get(idx as usize)
                .is_some_and(|s| s.busy() && s.user_data == op.user_data)
    }

    /// Waits until `op` completes (its final completion) and returns it. Completions of
    /// other operations that arrive meanwhile are handed to `other`.
    ///
    /// # Errors
    /// [`RingError::ForeignOp`] when `op` was issued by another ring;
    /// [`RingError::NotInFlight`] when `op` is not in flight on this ring (its final
    /// completion was already consumed); [`RingError::Enter`],
    /// [`RingError::CompletionsLost`].
    pub fn wait_for(
        &mut self,
        op: OpId,
        mut other: impl FnMut(Completion),
    ) -> Result<Completion, RingError> {
        self.check_own(op)?;
        loop {
            if !self.is_in_flight(op) {
                return Err(RingError::NotInFlight {
                    user_data: op.user_data,
                });
            }
            let c = self.wait_one()?;
            if c.op == op && !c.more {
                return Ok(c);
            }
            other(c);
        }
    }

    // ----- borrowed-buffer I/O (waits before returning) -----------------------------

    /// Reads and writes with borrowed buffers in one batch: queues every request, submits
    /// once, waits for all of them and stores each result in `req.result`. Needs an idle
    /// ring (the borrows must outlive every operation, so the call returns only when all
    /// are done).
    ///
    /// # Errors
    /// [`RingError::Busy`] when other operations are in flight; [`RingError::InFlightFull`]
    /// when the batch is larger than the slab; [`RingError::OffsetTooLarge`];
    /// [`RingError::WrongThread`] for a [`TaskrunMode::DeferTaskrun`] ring used from
    /// another thread than its creator; [`RingError::Enter`].
    pub fn rw_batch(&mut self, target: Target, reqs: &mut [IoReq<'_>]) -> Result<(), RingError> {
        if self.slab.in_flight != 0 {
            return Err(RingError::Busy {
                in_flight: self.slab.in_flight,
            });
        }
        self.check_target(target)?;
        if self.foreign_thread() {
            // The kernel would refuse every submission with EEXIST while the entries,
            // naming borrowed memory, stay queued: refuse before queueing any.
            return Err(RingError::WrongThread);
        }
        for req in reqs.iter() {
            check_offset(req.offset)?;
        }
        if reqs.len() > self.slab.slots.len() {
            self.stats.in_flight_full.incr();
            return Err(RingError::InFlightFull {
                capacity: self.capacity(),
            });
        }
        let mut queued = 0usize;
        let mut failure = None;
        for (i, req) in reqs.iter_mut().enumerate() {
            req.result = None;
            let len = u32::try_from(req.buf.len()).unwrap_or(u32::MAX);
            let (kind, ptr, off) = match &mut req.buf {
                IoBuf::Read(b) => (OpKind::Read, b.as_mut_ptr(), req.offset),
                IoBuf::Write(b) => (OpKind::Write, b.as_ptr().cast_mut(), req.offset),
            };
            let r = self.queue(kind, i as u64, |ud| {
                match (kind, target) {
                    (OpKind::Read, Target::Fd(fd)) => opcode::Read::new(types::Fd(fd), ptr, len)
                        .offset(off)
                        .build(),
                    (OpKind::Read, Target::Fixed(f)) => {
                        opcode::Read::new(types::Fixed(f), ptr, len)
                            .offset(off)
                            .build()
                    }
                    (_, Target::Fd(fd)) => opcode::Write::new(types::Fd(fd), ptr, len)
                        .offset(off)
                        .build(),
                    (_, Target::Fixed(f)) => opcode::Write::new(types::Fixed(f), ptr, len)
                        .offset(off)
                        .build(),
                }
                .user_data(ud)
            });
            match r {
                Ok(_) => queued += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Whatever happened, every queued operation must finish before the borrows end.
        let mut out = [Completion::default(); 32];
        let mut done = 0usize;
        let mut enter_error = None;
        while done < queued {
            match self.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) => {
                    // Keep waiting: returning now would end the borrows early.
                    if enter_error.is_none() {
                        enter_error = Some(e);
                    }
                    std::thread::yield_now();
                }
            }
            let n = self.reap(&mut out).unwrap_or(0);
            for c in out.iter().take(n) {
                if let Some(req) = reqs.get_mut(usize::try_from(c.tag).unwrap_or(usize::MAX)) {
                    req.result = Some(c.result());
                }
            }
            done += n;
        }
        match (failure, enter_error) {
            (Some(e), _) | (None, Some(e)) => Err(e),
            (None, None) => Ok(()),
        }
    }

    /// Reads into `buf` at `offset` (one operation, waits for it).
    ///
    /// # Errors
    /// [`RingError::Op`] with the kernel's errno, or as [`Ring::rw_batch`].
    pub fn read_at(
        &mut self,
        target: Target,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<usize, RingError> {
        let mut req = [IoReq::read(buf, offset)];
        self.rw_batch(target, &mut req)?;
        Self::single_result(&req, "read")
    }

    /// Writes `buf` at `offset` (one operation, waits for it).
    ///
    /// # Errors
    /// [`RingError::Op`] with the kernel's errno, or as [`Ring::rw_batch`].
    pub fn write_at(
        &mut self,
        target: Target,
        buf: &[u8],
        offset: u64,
    ) -> Result<usize, RingError> {
        let mut req = [IoReq::write(buf, offset)];
        self.rw_batch(target, &mut req)?;
        Self::single_result(&req, "write")
    }

    fn single_result(req: &[IoReq<'_>; 1], op: &'static str) -> Result<usize, RingError> {
        match req[0].result {
            Some(Ok(n)) => Ok(n as usize),
            Some(Err(errno)) => Err(RingError::Op { op, errno }),
            None => Err(RingError::Op {
                op,
                errno: Errno(libc::EIO),
            }),
        }
    }

    /// Runs one queued operation to completion and maps a negative result to an error.
    /// For a zero-copy send the result is the send's (bytes or its error), returned once
    /// its notification has released the frames.
    ///
    /// # Errors
    /// [`RingError::Op`], [`RingError::ForeignOp`], [`RingError::NotInFlight`],
    /// [`RingError::Enter`].
    pub fn run(&mut self, op: OpId, mut other: impl FnMut(Completion)) -> Result<u32, RingError> {
        let mut sent = None;
        let last = self.wait_for(op, |c| {
            if c.op == op && c.kind == OpKind::SendZc {
                sent = Some(c);
            } else {
                other(c);
            }
        })?;
        let c = match (last.kind, sent) {
            (OpKind::SendZcNotif, Some(s)) => s,
            _ => last,
        };
        c.result().map_err(|errno| RingError::Op {
            op: c.kind.name(),
            errno,
        })
    }
}

/// The buffer of one borrowed-buffer request.
#[derive(Debug)]
pub enum IoBuf<'a> {
    /// Read into this slice.
    Read(&'a mut [u8]),
    /// Write this slice.
    Write(&'a [u8]),
}

impl IoBuf<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Read(b) => b.len(),
            Self::Write(b) => b.len(),
        }
    }
}

/// One request of [`Ring::rw_batch`].
#[derive(Debug)]
pub struct IoReq<'a> {
    /// The buffer.
    pub buf: IoBuf<'a>,
    /// File offset.
    pub offset: u64,
    /// Filled in by [`Ring::rw_batch`]: bytes transferred or the kernel's error.
    pub result: Option<Result<u32, Errno>>,
}

impl<'a> IoReq<'a> {
    /// A read into `buf` at `offset`.
    pub fn read(buf: &'a mut [u8], offset: u64) -> Self {
        Self {
            buf: IoBuf::Read(buf),
            offset,
            result: None,
        }
    }

    /// A write of `buf` at `offset`.
    pub fn write(buf: &'a [u8], offset: u64) -> Self {
        Self {
            buf: IoBuf::Write(buf),
            offset,
            result: None,
        }
    }
}

impl Ring {
    /// Whether this is a `SINGLE_ISSUER` ring and the calling thread is not the one that
    /// built it (the kernel refuses its submissions with `EEXIST`).
    fn foreign_thread(&self) -> bool {
        self.issuer
            .is_some_and(|t| t != std::thread::current().id())
    }

    /// Cancels every operation and waits (at most [`DROP_WAIT`]) until the slab is empty.
    /// Returns whether it is: only then may the memory the operations name be freed.
    fn quiesce(&mut self) -> bool {
        if self.foreign_thread() {
            // A SINGLE_ISSUER ring cannot submit or wait from this thread.
            return false;
        }
        let deadline = std::time::Instant::now() + DROP_WAIT;
        let mut out = [Completion::default(); 32];
        loop {
            // Entries still in the SQ are invisible to cancellation: hand them over first
            // (an SQPOLL thread may take them a little later, hence the repeated rounds).
            let _ = self.uring.submitter().submit();
            self.cancel_everything();
            let waited = if self.probe.ext_arg {
                let tick = types::Timespec::new().nsec(10_000_000);
                let args = types::SubmitArgs::new().timespec(&tick);
                self.uring.submitter().submit_with_args(1, &args)
            } else {
                std::thread::sleep(Duration::from_millis(1));
                self.uring.submitter().submit()
            };
            if let Err(e) = waited
                && !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                )
            {
                return false;
            }
            // A lost completion leaves its operation unaccounted for: give up waiting.
            if self.reap(&mut out).is_err() {
                return false;
            }
            if self.slab.in_flight == 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Asks the kernel to cancel every submitted operation of this ring: synchronously
    /// (bounded by 100 ms), or with a queued asynchronous cancel on kernels before 6.0.
    fn cancel_everything(&mut self) {
        let timeout = types::Timespec::new().nsec(100_000_000);
        match self
            .uring
            .submitter()
            .register_sync_cancel(Some(timeout), types::CancelBuilder::any())
        {
            // Cancelled, nothing left to cancel, or some operation outlasted the timeout.
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ETIME)) => {}
            Err(_) => {
                let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(DROP_USER_DATA);
                // SAFETY: a cancel request names no memory.
                let _ = unsafe { self.uring.submission().push(&cancel) };
            }
        }
    }
}

impl Drop for Ring {
    /// Cancels the operations in flight and waits for them (bounded), so that no memory
    /// they name is freed under the kernel. If they do not all complete (an operation
    /// that ignores cancellation, a `DeferTaskrun` ring dropped on another thread), the
    /// frame pool, the provided buffers and the timeout values are leaked on purpose.
    fn drop(&mut self) {
        if self.slab.in_flight == 0 || self.quiesce() {
            return;
        }
        if let Some(reg) = self.pool.take() {
            std::mem::forget(reg);
        }
        if let Some(br) = self.provided.take() {
            std::mem::forget(br);
        }
        std::mem::forget(std::mem::take(&mut self.slab.timespecs));
        // The io_uring fd closes when `uring` drops; the kernel then cancels what is left,
        // and the leaked memory stays mapped for whatever it still does.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slab(n: u32) -> Slab {
        Slab {
            slots: (0..n)
                .map(|i| Slot::empty(i, if i + 1 < n { i + 1 } else { NONE }))
                .collect(),
            timespecs: vec![types::Timespec::new(); n as usize].into_boxed_slice(),
            free_head: 0,
            in_flight: 0,
        }
    }

    fn ring_or_skip(entries: u32) -> Option<Ring> {
        match Ring::new(RingOptions::new(entries).mode(TaskrunMode::CoopTaskrun)) {
            Ok(r) => Some(r),
            Err(e @ RingError::Setup { .. }) if std::env::var_os("CI").is_none() => {
                eprintln!("skipping: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// `EAGAIN` from `io_uring_enter` (no request memory; nothing submitted) is retried:
    /// the queued entries go in on a later try and complete, and the retries are counted.
    /// `EAGAIN` past the retry budget, and other errors, are reported.
    #[test]
    fn enter_retries_eagain_then_reports_it() {
        let Some(mut ring) = ring_or_skip(8) else {
            return;
        };
        let op = ring.nop(7).unwrap();
        ring.inject_enter_errors(&[libc::EAGAIN; 3]);
        assert_eq!(ring.run(op, |_| {}).unwrap(), 0);
        assert_eq!(ring.stats().enter_retries(), 3);
        assert_eq!(ring.in_flight(), 0);

        let op = ring.nop(8).unwrap();
        ring.inject_enter_errors(&[libc::EAGAIN; ENTER_EAGAIN_RETRIES as usize + 1]);
        match ring.submit() {
            Err(RingError::Enter { source }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EAGAIN));
            }
            other => panic!("expected EAGAIN after the retries, got {other:?}"),
        }
        assert_eq!(
            ring.stats().enter_retries(),
            3 + u64::from(ENTER_EAGAIN_RETRIES)
        );
        // The entry is still queued and goes in with the next call.
        assert_eq!(ring.run(op, |_| {}).unwrap(), 0);

        ring.inject_enter_errors(&[libc::EBADF]);
        let op = ring.nop(9).unwrap();
        assert!(matches!(ring.submit(), Err(RingError::Enter { .. })));
        assert_eq!(ring.run(op, |_| {}).unwrap(), 0);
    }

    #[test]
    fn slot_is_at_most_32_bytes() {
        assert!(size_of::<Slot>() <= 32, "{}", size_of::<Slot>());
    }

    #[test]
    fn user_data_keeps_its_slot_and_never_repeats_across_reuses() {
        let mut s = slab(3);
        let mut pool = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (idx, ud) = s.take(OpKind::Nop, 0).unwrap();
            assert_eq!(ud & SLOT_MASK, u64::from(idx));
            assert!(s.slots[idx as usize].busy());
            assert!(seen.insert(ud), "user_data {ud:#x} handed out twice");
            s.release(idx, &mut pool);
            assert!(!s.slots[idx as usize].busy());
            assert_ne!(
                s.slots[idx as usize].user_data, ud,
                "a released slot still matches"
            );
        }
        assert_eq!(s.in_flight, 0);
    }

    #[test]
    fn generation_wraps_at_the_top_keeping_index_and_parity() {
        let mut s = slab(2);
        let mut pool = None;
        // The generation has every bit above the slot index: 2^43 steps, two per reuse,
        // before a slot's `user_data` comes back.
        assert_eq!(GENERATION_STEP, 1 << SLOT_BITS);
        assert_eq!((u64::MAX >> SLOT_BITS) + 1, 1 << 43);
        // Slot 0 one full generation step below the wrap, free (even generation).
        s.slots[0].user_data = u64::MAX - SLOT_MASK - GENERATION_STEP;
        assert!(!s.slots[0].busy());
        let (idx, last) = s.take(OpKind::Nop, 0).unwrap();
        assert_eq!((idx, last & SLOT_MASK), (0, 0));
        assert!(s.slots[0].busy());
        s.release(0, &mut pool);
        assert_eq!(s.slots[0].user_data, 0, "wrapped to generation 0, slot 0");
        assert!(!s.slots[0].busy());
        let (idx, first) = s.take(OpKind::Nop, 0).unwrap();
        assert_eq!((idx, first), (0, GENERATION_STEP));
        assert_ne!(first, last);
    }

    #[test]
    fn live_rings_get_distinct_numbers_and_a_released_one_comes_back_last() {
        let held: Vec<RingNumber> = (0..8).map(|_| RingNumber::acquire().unwrap()).collect();
        let mut numbers: Vec<u16> = held.iter().map(|n| n.0).collect();
        assert!(!numbers.contains(&0), "number 0 belongs to OpId::default");
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(
            numbers.len(),
            held.len(),
            "a live number was handed out twice"
        );
        let first = held[0].0;
        drop(held);
        // Other tests take numbers concurrently; still, the one just released is not the
        // next one handed out (round robin).
        let next = RingNumber::acquire().unwrap();
        assert_ne!(next.0, first);
        assert_ne!(next.0, OpId::default().ring);
    }

    #[test]
    fn ring_numbers_run_out_and_come_back_round_robin() {
        use std::sync::atomic::{AtomicU32, AtomicU64};
        let taken = [AtomicU64::new(0), AtomicU64::new(0)];
        let next = AtomicU32::new(0);
        let all: Vec<u16> = (0..128)
            .map(|_| take_number(&taken, &next).unwrap())
            .collect();
        assert_eq!(all, (0..128).collect::<Vec<u16>>());
        assert_eq!(take_number(&taken, &next), None, "every number is taken");
        // Free 5 and 70: the search goes on from where it stopped, so 5 comes first
        // (wrapping), then 70; the last one handed out is never the one just freed if
        // another is free.
        taken[0].fetch_and(!(1 << 5), Ordering::Relaxed);
        taken[1].fetch_and(!(1 << 6), Ordering::Relaxed);
        assert_eq!(take_number(&taken, &next), Some(5));
        taken[0].fetch_and(!(1 << 5), Ordering::Relaxed);
        assert_eq!(take_number(&taken, &next), Some(70));
        assert_eq!(take_number(&taken, &next), Some(5));
        assert_eq!(take_number(&taken, &next), None);
    }

    #[test]
    fn drop_user_data_never_names_a_slot() {
        assert!(DROP_USER_DATA & SLOT_MASK >= u64::from(MAX_IN_FLIGHT));
    }
}
