//! The four AF_XDP rings, mapped from the kernel at the offsets `XDP_MMAP_OFFSETS` gives.
//!
//! Each ring is a power-of-two array of descriptors plus a producer and a consumer index
//! (free-running `u32`s) and a flags word, all in one shared mapping. We are the producer
//! of the fill and tx rings and the consumer of the completion and rx rings. Each side
//! keeps a cached copy of the other side's index and refreshes it only when the cache
//! says the ring is full (producer) or empty (consumer), as libxdp's `xsk.h` does.
//!
//! Ordering: a producer writes descriptors, then stores `producer` with `Release`; the
//! consumer loads `producer` with `Acquire` before reading descriptors below it, and
//! stores `consumer` with `Release` after it is done with them.
//!
//! The kernel's indices are not trusted to be sane. An index that is impossible (the
//! producer more than a ring ahead of the consumer, which includes a producer behind it)
//! gives no entries at all: a consumer takes nothing (the slots hold no descriptors
//! published in this lap) and a producer sees no room. The impossible count is not cached,
//! so the next call reads the kernel's index again, and the socket recovers as soon as
//! the index is sane again. Each such read is counted (`ring_index_anomalies`).
//!
//! This module holds the only `unsafe` that touches ring memory.

use core::sync::atomic::{AtomicU32, Ordering};
use std::io;
use std::os::fd::OwnedFd;

use tally_core_types::Counter;

use crate::sys::Mapping;

/// Entries between our consumer index `cons` and the producer index `prod` of a ring of
/// `size` entries. `(0, true)` when `prod` is impossible (more than a ring ahead of
/// `cons`, or behind it): none of the slots can be trusted to hold an entry of this lap.
pub(crate) fn ready_entries(prod: u32, cons: u32, size: u32) -> (u32, bool) {
    let n = prod.wrapping_sub(cons);
    if n > size { (0, true) } else { (n, false) }
}

/// Free entries for a producer at `prod` when the consumer index plus `size` is
/// `cons_plus_size`; `(0, true)` when the consumer index is impossible (past our producer
/// index, or more than a ring behind it).
pub(crate) fn free_entries(cons_plus_size: u32, prod: u32, size: u32) -> (u32, bool) {
    ready_entries(cons_plus_size, prod, size)
}

/// `off` as a `usize` when `[off, off + n)` lies inside a mapping of `len` bytes (`None`
/// for any offset the kernel reports that does not, however large).
fn offset_within(off: u64, n: usize, len: usize) -> Option<usize> {
    usize::try_from(off)
        .ok()
        .filter(|o| o.checked_add(n).is_some_and(|end| end <= len))
}

/// One rx/tx descriptor (`struct xdp_desc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub(crate) struct XdpDesc {
    pub(crate) addr: u64,
    pub(crate) len: u32,
    pub(crate) options: u32,
}

const _: () = assert!(size_of::<XdpDesc>() == 16);

/// The raw parts of one mapped ring.
#[derive(Debug)]
struct RingMem<T> {
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    /// Entries; a power of two.
    size: u32,
}

// SAFETY: the pointers point into `_map`, which moves with the struct; the kernel side is
// synchronised through the atomics.
unsafe impl<T: Send> Send for RingMem<T> {}

impl<T: Copy> RingMem<T> {
    fn map(fd: &OwnedFd, off: &libc::xdp_ring_offset, size: u32, pgoff: u64) -> io::Result<Self> {
        let bad = || io::Error::from(io::ErrorKind::InvalidData);
        if !size.is_power_of_two() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let desc_off = usize::try_from(off.desc).map_err(|_| bad())?;
        let len = (size as usize)
            .checked_mul(size_of::<T>())
            .and_then(|descs| descs.checked_add(desc_off))
            .ok_or_else(bad)?;
        let map = Mapping::new(fd, len, pgoff)?;
        let fits = |o: u64, n: usize| offset_within(o, n, map.len());
        let prod = fits(off.producer, 4).ok_or_else(bad)?;
        let cons = fits(off.consumer, 4).ok_or_else(bad)?;
        let flags = fits(off.flags, 4).ok_or_else(bad)?;
        if [prod, cons, flags, desc_off].iter().any(|o| o % 4 != 0)
            || desc_off % align_of::<T>() != 0
        {
            return Err(bad());
        }
        let base = map.as_ptr();
        #[allow(
            clippy::cast_ptr_alignment,
            reason = "offsets checked to be 4-byte aligned above; mmap is page aligned"
        )]
        // SAFETY: every offset was checked to lie inside the mapping (with its size) and to
        // be aligned for the type; the kernel keeps these locations fixed while mapped.
        unsafe {
            Ok(Self {
                producer: base.add(prod).cast::<AtomicU32>(),
                consumer: base.add(cons).cast::<AtomicU32>(),
                flags: base.add(flags).cast::<AtomicU32>(),
                descs: base.add(desc_off).cast::<T>(),
                size,
                _map: map,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping, aligned (checked in `map`).
        unsafe { &*self.producer }
    }
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }
    fn flags(&self) -> u32 {
        // SAFETY: as above.
        unsafe { &*self.flags }.load(Ordering::Relaxed)
    }
    fn read(&self, idx: u32) -> T {
        let slot = (idx & (self.size - 1)) as usize;
        // SAFETY: slot < size, inside the descriptor array; the caller owns this entry
        // (it lies between the consumer and producer indices on our side).
        unsafe { self.descs.add(slot).read_volatile() }
    }
    fn write(&self, idx: u32, v: T) {
        let slot = (idx & (self.size - 1)) as usize;
        // SAFETY: slot < size; the caller owns this entry (reserved, not yet published).
        unsafe { self.descs.add(slot).write_volatile(v) }
    }
}

/// A ring we produce into (fill: frame addresses; tx: descriptors).
#[derive(Debug)]
pub(crate) struct ProdRing<T> {
    mem: RingMem<T>,
    /// Our producer index (entries below it are written, maybe not yet published).
    cached_prod: u32,
    /// The kernel's consumer index plus `size`: we may write up to here.
    cached_cons: u32,
}

impl<T: Copy> ProdRing<T> {
    pub(crate) fn map(
        fd: &OwnedFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> io::Result<Self> {
        let mem = RingMem::map(fd, off, size, pgoff)?;
        let prod = mem.producer().load(Ordering::Relaxed);
        let cons = mem.consumer().load(Ordering::Acquire);
        Ok(Self {
            cached_prod: prod,
            cached_cons: cons.wrapping_add(size),
            mem,
        })
    }

    /// Free entries (at most the ring size), refreshing the cached consumer index only if
    /// fewer than `want`. An impossible consumer index gives no room and is counted in
    /// `anomalies`; it is not kept, so the next call reads the index again.
    pub(crate) fn free(&mut self, want: u32, anomalies: &Counter) -> u32 {
        let (free, _) = free_entries(self.cached_cons, self.cached_prod, self.mem.size);
        if free >= want {
            return free;
        }
        self.cached_cons = self
            .mem
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.mem.size);
        let (free, bogus) = free_entries(self.cached_cons, self.cached_prod, self.mem.size);
        if bogus {
            anomalies.incr();
            // Cache "no room": the next call re-reads the consumer index.
            self.cached_cons = self.cached_prod;
        }
        free
    }

    /// Writes one entry at the producer position; the caller checked `free() >= 1`.
    pub(crate) fn push(&mut self, v: T) {
        debug_assert!(self.cached_cons.wrapping_sub(self.cached_prod) >= 1);
        self.mem.write(self.cached_prod, v);
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Publishes every pushed entry to the kernel.
    pub(crate) fn submit(&mut self) {
        self.mem
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    /// Entries published or pushed that the kernel has not consumed yet.
    pub(crate) fn outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.mem.consumer().load(Ordering::Acquire))
    }

    pub(crate) fn needs_wakeup(&self) -> bool {
        self.mem.flags() & libc::XDP_RING_NEED_WAKEUP != 0
    }

    pub(crate) fn size(&self) -> u32 {
        self.mem.size
    }
}

/// A ring we consume from (completion: frame addresses; rx: descriptors).
#[derive(Debug)]
pub(crate) struct ConsRing<T> {
    mem: RingMem<T>,
    /// The kernel's producer index as last read.
    cached_prod: u32,
    /// Our consumer index (entries below it are taken, maybe not yet released).
    cached_cons: u32,
}

impl<T: Copy> ConsRing<T> {
    pub(crate) fn map(
        fd: &OwnedFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> io::Result<Self> {
        let mem = RingMem::map(fd, off, size, pgoff)?;
        let cons = mem.consumer().load(Ordering::Relaxed);
        Ok(Self {
            cached_prod: mem.producer().load(Ordering::Acquire),
            cached_cons: cons,
            mem,
        })
    }

    /// Entries ready to take (at most `max` and at most the ring size), refreshing the
    /// producer index when the cache is empty. An impossible producer index (more than
    /// a ring ahead of ours, or behind it) gives no entries and is counted in
    /// `anomalies`; it is not kept, so the next call reads the index again.
    pub(crate) fn available(&mut self, max: u32, anomalies: &Counter) -> u32 {
        let (mut n, _) = ready_entries(self.cached_prod, self.cached_cons, self.mem.size);
        if n == 0 {
            let prod = self.mem.producer().load(Ordering::Acquire);
            let bogus;
            (n, bogus) = ready_entries(prod, self.cached_cons, self.mem.size);
            if bogus {
                anomalies.incr();
                // Cache "empty": the next call re-reads the producer index.
                self.cached_prod = self.cached_cons;
            } else {
                self.cached_prod = prod;
            }
        }
        n.min(max)
    }

    /// The entry `i` places past the consumer position (`i < available()`).
    pub(crate) fn peek(&self, i: u32) -> T {
        self.mem.read(self.cached_cons.wrapping_add(i))
    }

    /// Takes `n` entries and hands them back to the kernel.
    pub(crate) fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.mem
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }
}

/// Test hooks that play the kernel's side of a ring.
#[cfg(test)]
impl<T: Copy> ConsRing<T> {
    /// Writes `v` at the producer index and publishes it, as the kernel would.
    pub(crate) fn inject(&self, v: T) {
        let p = self.mem.producer().load(Ordering::Acquire);
        self.mem.write(p, v);
        self.mem
            .producer()
            .store(p.wrapping_add(1), Ordering::Release);
    }

    /// Stores a (possibly bogus) producer index.
    pub(crate) fn set_producer(&self, p: u32) {
        self.mem.producer().store(p, Ordering::Release);
    }

    /// Our consumer index.
    pub(crate) fn consumer_index(&self) -> u32 {
        self.cached_cons
    }
}

/// Test hooks.
#[cfg(test)]
impl<T: Copy> ProdRing<T> {
    /// Our producer index (entries pushed so far).
    pub(crate) fn produced(&self) -> u32 {
        self.cached_prod
    }

    /// The kernel's consumer index.
    pub(crate) fn consumer_index(&self) -> u32 {
        self.mem.consumer().load(Ordering::Acquire)
    }

    /// Stores a (possibly bogus) consumer index, as a faulty kernel would.
    pub(crate) fn set_consumer(&self, c: u32) {
        self.mem.consumer().store(c, Ordering::Release);
    }

    /// Advances the consumer index by `n`, as the kernel would after taking entries.
    pub(crate) fn kernel_consume(&self, n: u32) {
        let c = self.mem.consumer().load(Ordering::Acquire);
        self.mem
            .consumer()
            .store(c.wrapping_add(n), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_producer_index_gives_no_entries() {
        assert_eq!(ready_entries(5, 5, 8), (0, false));
        assert_eq!(ready_entries(13, 5, 8), (8, false));
        // Free-running indices wrap.
        assert_eq!(ready_entries(3, u32::MAX - 2, 8), (6, false));
        // More than a ring ahead: a bogus index; nothing is taken.
        assert_eq!(ready_entries(14, 5, 8), (0, true));
        assert_eq!(ready_entries(5 + (1 << 31), 5, 8), (0, true));
        // Behind our consumer: just as bogus (it used to read as a full ring).
        assert_eq!(ready_entries(4, 5, 8), (0, true));
        assert_eq!(ready_entries(u32::MAX, 0, 8), (0, true));
    }

    #[test]
    fn ring_offsets_outside_the_mapping_are_refused_not_a_panic() {
        assert_eq!(offset_within(0, 4, 64), Some(0));
        assert_eq!(offset_within(60, 4, 64), Some(60));
        assert_eq!(offset_within(61, 4, 64), None);
        // Offsets near the top of the address space used to overflow `o + n` (a panic
        // in debug builds, a wrapped sum that passed the check in release builds).
        assert_eq!(offset_within(u64::MAX, 4, 64), None);
        assert_eq!(offset_within(u64::MAX - 2, 4, 64), None);
        assert_eq!(offset_within(usize::MAX as u64 - 1, 4, usize::MAX), None);
    }

    #[test]
    fn impossible_consumer_index_gives_no_room() {
        // Consumer at 0, producer at 0: the whole ring is free.
        assert_eq!(free_entries(8, 0, 8), (8, false));
        assert_eq!(free_entries(8, 8, 8), (0, false));
        // Consumer at MAX - 3, producer wrapped to 0: 4 outstanding, 4 free.
        assert_eq!(
            free_entries((u32::MAX - 3).wrapping_add(8), 0, 8),
            (4, false)
        );
        // A consumer index past our producer: bogus, no room.
        assert_eq!(free_entries(20, 4, 8), (0, true));
        // A consumer index more than a ring behind our producer: bogus too.
        assert_eq!(free_entries(8, 9, 8), (0, true));
    }
}
