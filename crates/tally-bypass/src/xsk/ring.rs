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
//! This module holds the only `unsafe` that touches ring memory.

use core::sync::atomic::{AtomicU32, Ordering};
use std::io;
use std::os::fd::OwnedFd;

use crate::sys::Mapping;

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
        let len = desc_off + size as usize * size_of::<T>();
        let map = Mapping::new(fd, len, pgoff)?;
        let fits = |o: u64, n: usize| usize::try_from(o).ok().filter(|o| o + n <= map.len());
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

    /// Free entries, refreshing the cached consumer index only if fewer than `want`.
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        self.cached_cons = self
            .mem
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.mem.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
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

    /// Entries ready to take (at most `max`), refreshing the producer index when the
    /// cache is empty.
    pub(crate) fn available(&mut self, max: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n == 0 {
            self.cached_prod = self.mem.producer().load(Ordering::Acquire);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
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
