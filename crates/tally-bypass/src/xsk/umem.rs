//! Byte access to UMEM frames by offset, for frames the socket owns at that moment.
//!
//! The UMEM is a [`FramePool`](tally_core_types::FramePool) registered with the kernel,
//! which writes received frames into it (and reads transmitted ones) concurrently with us.
//! A reference to the whole region would therefore alias kernel writes; instead this
//! module hands out slices of single frames, and its callers only ask for frames that
//! are theirs: an rx descriptor taken from the rx ring and not yet returned to the fill
//! ring, or a tx frame taken from the pool's free list and not yet on the tx ring.
//! This module holds the only `unsafe` that touches UMEM bytes.

use core::ptr::NonNull;

/// The UMEM address range, frame geometry, and checked frame slicing.
#[derive(Debug)]
pub(crate) struct UmemArea {
    base: NonNull<u8>,
    len: usize,
    frame_shift: u32,
}

// SAFETY: a plain address range; ownership of frames is tracked by the socket.
unsafe impl Send for UmemArea {}

impl UmemArea {
    pub(crate) fn new(base: NonNull<u8>, len: usize, frame_size: usize) -> Self {
        Self {
            base,
            len,
            frame_shift: frame_size.trailing_zeros(),
        }
    }

    pub(crate) fn frame_size(&self) -> usize {
        1usize << self.frame_shift
    }

    /// Start offset of the frame containing `addr`.
    pub(crate) fn chunk_of(&self, addr: u64) -> u64 {
        addr & !((1u64 << self.frame_shift) - 1)
    }

    /// The number of the frame containing `addr` (`u32::MAX` when far out of range,
    /// which no frame has).
    pub(crate) fn frame_index(&self, addr: u64) -> u32 {
        u32::try_from(addr >> self.frame_shift).unwrap_or(u32::MAX)
    }

    /// `(offset, len)` when `[addr, addr + len)` lies inside one frame of the UMEM.
    pub(crate) fn check(&self, addr: u64, len: u32) -> Option<(usize, usize)> {
        let off = usize::try_from(addr).ok()?;
        let len = len as usize;
        let end = off.checked_add(len)?;
        let frame_end = (off >> self.frame_shift).checked_add(1)? << self.frame_shift;
        (end <= self.len && end <= frame_end).then_some((off, len))
    }

    /// The bytes `[off, off + len)` of a frame the caller owns.
    ///
    /// # Safety
    /// The range came from [`UmemArea::check`], and the frame is owned by the caller for
    /// the returned lifetime (the kernel is not writing it: it is neither on the fill ring
    /// nor on the tx ring).
    pub(crate) unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        // SAFETY: in bounds per `check`; not concurrently written per the contract.
        unsafe { core::slice::from_raw_parts(self.base.as_ptr().add(off), len) }
    }

    /// A raw handle to bytes of an owned frame, for reading them while the socket is
    /// borrowed mutably for a transmit (the bytes live in the UMEM mapping, not in the
    /// socket).
    pub(crate) fn frame_ref(&self, off: usize, len: usize) -> FrameRef {
        // `off + len <= self.len` is the caller's `check` result.
        FrameRef {
            ptr: self.base.as_ptr().wrapping_add(off),
            len,
        }
    }

    /// The bytes of a frame the caller owns, writable.
    ///
    /// # Safety
    /// As [`UmemArea::bytes`], and no other slice of this frame is alive.
    #[allow(
        clippy::mut_from_ref,
        reason = "frames are disjoint; exclusivity is the caller's contract"
    )]
    pub(crate) unsafe fn bytes_mut(&self, off: usize, len: usize) -> &mut [u8] {
        // SAFETY: in bounds per `check`; exclusive per the contract.
        unsafe { core::slice::from_raw_parts_mut(self.base.as_ptr().add(off), len) }
    }
}

/// Bytes of an owned UMEM frame, by address (see [`UmemArea::frame_ref`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameRef {
    ptr: *const u8,
    len: usize,
}

impl FrameRef {
    /// The bytes.
    ///
    /// # Safety
    /// The range came from [`UmemArea::check`], the UMEM is still mapped, and the frame is
    /// owned by the caller and not written by anyone for the returned lifetime.
    pub(crate) unsafe fn get<'a>(self) -> &'a [u8] {
        // SAFETY: per the contract.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}
