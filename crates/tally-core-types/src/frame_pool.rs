//! [`FramePool`]: one page-aligned anonymous mapping cut into fixed-size frames.
//!
//! The pool is made once at start-up and never allocates afterwards: the free list is a
//! fixed-capacity stack of frame ids, so [`FramePool::alloc`] and [`FramePool::free`] are
//! O(1) and allocation-free, and a bitmap catches double frees while the frame is still
//! free (ids carry no generation: once the frame has been allocated again, a stale copy
//! of its id is taken for the new allocation).
//!
//! The same region is meant to be registered with the kernel (AF_XDP UMEM, io_uring
//! registered buffers): [`FramePool::as_mut_ptr`] and [`FramePool::len_bytes`] give the
//! address range, [`FramePool::offset_of`] and [`FramePool::id_at_offset`] convert between
//! frame ids and the byte offsets the kernel puts in its descriptors.

use memmap2::{MmapMut, MmapOptions};

use crate::error::{CoreError, Result};

/// The smallest frame size a pool accepts (an AF_XDP UMEM frame is at least 2048 bytes).
pub const MIN_FRAME_SIZE_BYTES: usize = 2048;

/// log2 of the 2 MiB huge page size used with [`FramePoolOptions::huge_pages`].
const HUGE_PAGE_SHIFT: u8 = 21;

/// The id of one frame in a [`FramePool`]: its index, `0..frame_count`.
///
/// An id is only an index: it does not record which pool made it, nor which allocation.
/// A pool rejects ids beyond its own frames, but an in-range id from another pool is
/// taken as its own, and a stale copy of an id freed and allocated again (the free list
/// hands the last freed frame out first) frees the new allocation: keep ids with the
/// pool they came from and drop them when you free the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameId(u32);

impl FrameId {
    /// The frame's index in its pool.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// How to build a [`FramePool`].
///
/// ```
/// use tally_core_types::FramePoolOptions;
/// let opts = FramePoolOptions::new(4096, 64).populate(true);
/// assert_eq!(opts.frame_size_bytes(), 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePoolOptions {
    frame_size_bytes: usize,
    frame_count: u32,
    huge_pages: bool,
    populate: bool,
    mlock: bool,
}

impl FramePoolOptions {
    /// `frame_count` frames of `frame_size_bytes` each (a power of two, at least 2048),
    /// ordinary pages, not populated, not locked.
    pub const fn new(frame_size_bytes: usize, frame_count: u32) -> Self {
        Self {
            frame_size_bytes,
            frame_count,
            huge_pages: false,
            populate: false,
            mlock: false,
        }
    }

    /// Back the pool with 2 MiB huge pages (`MAP_HUGETLB`); the mapping is rounded up to
    /// a whole number of huge pages. Needs pages reserved in `/proc/sys/vm/nr_hugepages`.
    #[must_use]
    pub const fn huge_pages(mut self, on: bool) -> Self {
        self.huge_pages = on;
        self
    }

    /// Pre-fault every page at creation (`MAP_POPULATE`) so that the hot path takes no
    /// page faults.
    #[must_use]
    pub const fn populate(mut self, on: bool) -> Self {
        self.populate = on;
        self
    }

    /// Lock the pool in memory (`mlock`), so it is never swapped out. Needs CAP_IPC_LOCK or
    /// enough `RLIMIT_MEMLOCK`.
    #[must_use]
    pub const fn mlock(mut self, on: bool) -> Self {
        self.mlock = on;
        self
    }

    /// Bytes per frame.
    pub const fn frame_size_bytes(&self) -> usize {
        self.frame_size_bytes
    }

    /// Number of frames.
    pub const fn frame_count(&self) -> u32 {
        self.frame_count
    }
}

/// A page-aligned region of fixed-size frames with an O(1), allocation-free free list.
///
/// ```
/// use tally_core_types::{FramePool, FramePoolOptions};
/// # fn main() -> Result<(), tally_core_types::CoreError> {
/// let mut pool = FramePool::new(FramePoolOptions::new(2048, 8))?;
/// let id = pool.alloc()?;
/// pool.frame_mut(id)?[..5].copy_from_slice(b"hello");
/// assert_eq!(&pool.frame(id)?[..5], b"hello");
/// pool.free(id)?;
/// assert_eq!(pool.free_count(), 8);
/// # Ok(()) }
/// ```
pub struct FramePool {
    map: MmapMut,
    /// log2 of the frame size.
    frame_shift: u32,
    /// Number of frames; ids are `0..frame_count`.
    frame_count: u32,
    /// Stack of free frame ids; `free[..free_len]` are free. Capacity `frame_count`.
    free: Box<[u32]>,
    /// Number of valid entries in `free`, `0..=frame_count`.
    free_len: u32,
    /// One bit per frame, set while the frame is allocated.
    in_use: Box<[u64]>,
}

impl FramePool {
    /// Maps the region and puts every frame on the free list.
    ///
    /// # Errors
    /// [`CoreError::InvalidFrameSize`], [`CoreError::ZeroFrames`] and
    /// [`CoreError::PoolTooLarge`] for bad options; [`CoreError::HugePages`],
    /// [`CoreError::Map`] or [`CoreError::Mlock`] when the kernel refuses.
    pub fn new(options: FramePoolOptions) -> Result<Self> {
        let frame_size = options.frame_size_bytes;
        if frame_size < MIN_FRAME_SIZE_BYTES || !frame_size.is_power_of_two() {
            return Err(CoreError::InvalidFrameSize {
                frame_size_bytes: frame_size,
            });
        }
        if options.frame_count == 0 {
            return Err(CoreError::ZeroFrames);
        }
        let too_large = || CoreError::PoolTooLarge {
            frame_count: u64::from(options.frame_count),
            frame_size_bytes: frame_size,
        };
        let bytes = usize::try_from(options.frame_count)
            .ok()
            .and_then(|n| n.checked_mul(frame_size))
            .filter(|b| isize::try_from(*b).is_ok())
            .ok_or_else(too_large)?;
        let map_bytes = if options.huge_pages {
            let huge = 1usize << HUGE_PAGE_SHIFT;
            bytes.div_ceil(huge) * huge
        } else {
            bytes
        };
        let mut mmap_options = MmapOptions::new();
        mmap_options.len(map_bytes);
        if options.populate {
            mmap_options.populate();
        }
        if options.huge_pages {
            mmap_options.huge(Some(HUGE_PAGE_SHIFT));
        }
        let map = mmap_options.map_anon().map_err(|source| {
            if options.huge_pages {
                CoreError::HugePages {
                    bytes: map_bytes,
                    source,
                }
            } else {
                CoreError::Map {
                    bytes: map_bytes,
                    source,
                }
            }
        })?;
        if options.mlock {
            map.lock().map_err(|source| CoreError::Mlock {
                bytes: map_bytes,
                source,
            })?;
        }
        // Pop order: lowest id first (the stack top is the end of the slice). The
        // bookkeeping is reserved fallibly: with `vm.overcommit_memory=1` a huge mapping
        // can succeed while its free list (4 bytes per frame) cannot be allocated.
        let words = usize::try_from(options.frame_count.div_ceil(64)).unwrap_or(0);
        let mut free = Vec::new();
        let mut in_use = Vec::new();
        free.try_reserve_exact(usize::try_from(options.frame_count).unwrap_or(usize::MAX))
            .and_then(|()| in_use.try_reserve_exact(words))
            .map_err(|_| too_large())?;
        free.extend((0..options.frame_count).rev());
        in_use.resize(words, 0u64);
        let free = free.into_boxed_slice();
        Ok(Self {
            map,
            frame_shift: frame_size.trailing_zeros(),
            frame_count: options.frame_count,
            free,
            free_len: options.frame_count,
            in_use: in_use.into_boxed_slice(),
        })
    }

    /// Takes a free frame.
    ///
    /// # Errors
    /// [`CoreError::PoolExhausted`] when every frame is in use.
    #[inline]
    pub fn alloc(&mut self) -> Result<FrameId> {
        let Some(top) = self.free_len.checked_sub(1) else {
            return Err(CoreError::PoolExhausted {
                capacity: self.frame_count,
            });
        };
        let id = *self
            .free
            .get(top as usize)
            .ok_or(CoreError::PoolExhausted {
                capacity: self.frame_count,
            })?;
        self.free_len = top;
        if let Some(word) = self.in_use.get_mut((id >> 6) as usize) {
            *word |= 1u64 << (id & 63);
        }
        Ok(FrameId(id))
    }

    /// Returns a frame to the pool.
    ///
    /// # Errors
    /// [`CoreError::FrameOutOfRange`] for an id beyond this pool's frames, [`CoreError::DoubleFree`]
    /// when the frame is already free (a second free after the frame was allocated again
    /// cannot be told from a free of the new allocation: see [`FrameId`]). The pool is
    /// unchanged on error.
    #[inline]
    pub fn free(&mut self, id: FrameId) -> Result<()> {
        let raw = id.0;
        let capacity = self.frame_count;
        let word = self
            .in_use
            .get_mut((raw >> 6) as usize)
            .filter(|_| raw < capacity)
            .ok_or(CoreError::FrameOutOfRange {
                id: u64::from(raw),
                capacity,
            })?;
        let bit = 1u64 << (raw & 63);
        if *word & bit == 0 {
            return Err(CoreError::DoubleFree { id: raw });
        }
        let slot = self
            .free
            .get_mut(self.free_len as usize)
            .ok_or(CoreError::DoubleFree { id: raw })?;
        *word &= !bit;
        *slot = raw;
        self.free_len += 1;
        Ok(())
    }

    /// Whether the frame is currently allocated.
    ///
    /// # Errors
    /// [`CoreError::FrameOutOfRange`] for an id beyond this pool's frames.
    pub fn is_allocated(&self, id: FrameId) -> Result<bool> {
        let raw = id.0;
        self.in_use
            .get((raw >> 6) as usize)
            .filter(|_| raw < self.frame_count)
            .map(|w| w & (1u64 << (raw & 63)) != 0)
            .ok_or(CoreError::FrameOutOfRange {
                id: u64::from(raw),
                capacity: self.frame_count,
            })
    }

    /// The id for `index`, checked against this pool.
    ///
    /// # Errors
    /// [`CoreError::FrameOutOfRange`] when `index >= frame_count`.
    pub fn id(&self, index: u32) -> Result<FrameId> {
        if index < self.frame_count {
            Ok(FrameId(index))
        } else {
            Err(CoreError::FrameOutOfRange {
                id: u64::from(index),
                capacity: self.frame_count,
            })
        }
    }

    /// The bytes of one frame.
    ///
    /// # Errors
    /// [`CoreError::FrameOutOfRange`] for an id beyond this pool's frames.
    #[inline]
    pub fn frame(&self, id: FrameId) -> Result<&[u8]> {
        let range = self.range(id)?;
        self.map.get(range).ok_or(CoreError::FrameOutOfRange {
            id: u64::from(id.0),
            capacity: self.frame_count,
        })
    }

    /// The bytes of one frame, writable.
    ///
    /// # Errors
    /// [`CoreError::FrameOutOfRange`] for an id beyond this pool's frames.
    #[inline]
    pub fn frame_mut(&mut self, id: FrameId) -> Result<&mut [u8]> {
        let range = self.range(id)?;
        let capacity = self.frame_count;
        self.map.get_mut(range).ok_or(CoreError::FrameOutOfRange {
            id: u64::from(id.0),
            capacity,
        })
    }

    #[inline]
    fn range(&self, id: FrameId) -> Result<core::ops::Range<usize>> {
        if id.0 >= self.frame_count {
            return Err(CoreError::FrameOutOfRange {
                id: u64::from(id.0),
                capacity: self.frame_count,
            });
        }
        let start = (id.0 as usize) << self.frame_shift;
        Ok(start..start + self.frame_size_bytes())
    }

    /// Byte offset of a frame from the start of the region (the address a kernel
    /// descriptor uses for it). Unchecked: an id beyond this pool's frames (one from
    /// another pool) gives an offset at or past [`FramePool::len_bytes`].
    pub fn offset_of(&self, id: FrameId) -> u64 {
        u64::from(id.0) << self.frame_shift
    }

    /// The frame containing byte `offset` of the region (offsets inside a frame, past a
    /// headroom, map to that frame).
    ///
    /// # Errors
    /// [`CoreError::FrameOutOfRange`] when the offset lies outside the pool's frames.
    pub fn id_at_offset(&self, offset: u64) -> Result<FrameId> {
        let index = offset >> self.frame_shift;
        u32::try_from(index)
            .ok()
            .filter(|i| *i < self.frame_count)
            .map(FrameId)
            .ok_or(CoreError::FrameOutOfRange {
                id: index,
                capacity: self.frame_count,
            })
    }

    /// Bytes per frame.
    pub fn frame_size_bytes(&self) -> usize {
        1usize << self.frame_shift
    }

    /// Number of frames.
    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// Number of frames currently free.
    pub fn free_count(&self) -> u32 {
        self.free_len
    }

    /// Length of the frame area in bytes (`frame_count * frame_size_bytes`).
    pub fn len_bytes(&self) -> usize {
        (self.frame_count as usize) << self.frame_shift
    }

    /// Start of the region (page aligned; 2 MiB aligned with huge pages).
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// Start of the region, writable, for registering it with the kernel. The kernel may
    /// write frames through it; keep the pool alive while it is registered.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The whole frame area.
    pub fn as_slice(&self) -> &[u8] {
        self.map.get(..self.len_bytes()).unwrap_or(&[])
    }

    /// The whole frame area, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len_bytes();
        self.map.get_mut(..len).unwrap_or(&mut [])
    }
}

impl core::fmt::Debug for FramePool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FramePool")
            .field("frame_size_bytes", &self.frame_size_bytes())
            .field("frame_count", &self.frame_count)
            .field("free", &self.free_len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u32) -> FramePool {
        FramePool::new(FramePoolOptions::new(2048, n)).unwrap()
    }

    #[test]
    fn alloc_all_then_exhausted_then_free() {
        let mut p = pool(130);
        let ids: Vec<_> = (0..130).map(|_| p.alloc().unwrap()).collect();
        let mut sorted: Vec<u32> = ids.iter().map(|i| i.index()).collect();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..130).collect::<Vec<_>>());
        assert!(matches!(
            p.alloc(),
            Err(CoreError::PoolExhausted { capacity: 130 })
        ));
        for id in ids {
            p.free(id).unwrap();
        }
        assert_eq!(p.free_count(), 130);
    }

    #[test]
    fn double_free_and_out_of_range_are_errors() {
        let mut p = pool(4);
        let id = p.alloc().unwrap();
        p.free(id).unwrap();
        assert!(matches!(p.free(id), Err(CoreError::DoubleFree { .. })));
        let never = p.id(3).unwrap();
        assert!(matches!(
            p.free(never),
            Err(CoreError::DoubleFree { id: 3 })
        ));
        assert!(matches!(
            p.id(4),
            Err(CoreError::FrameOutOfRange { id: 4, capacity: 4 })
        ));
        assert!(matches!(
            p.free(FrameId(64)),
            Err(CoreError::FrameOutOfRange { .. })
        ));
        assert!(matches!(
            p.frame(FrameId(4)),
            Err(CoreError::FrameOutOfRange { .. })
        ));
        assert!(matches!(
            p.id_at_offset(4 * 2048),
            Err(CoreError::FrameOutOfRange { .. })
        ));
        assert_eq!(p.free_count(), 4);
    }

    proptest::proptest! {
        /// Against a model (a set of allocated ids): every free of an id that is not
        /// allocated is an error (out of range or double free) that leaves the pool
        /// unchanged, `alloc` fails only when every frame is taken, never hands out a
        /// taken frame, and no input panics.
        #[test]
        fn matches_a_model(
            count in 1u32..150,
            ops in proptest::collection::vec(proptest::option::of(0u32..300), 1..400),
        ) {
            let mut p = pool(count);
            let mut taken = std::collections::BTreeSet::new();
            for op in ops {
                match op {
                    None => match p.alloc() {
                        Ok(id) => proptest::prop_assert!(taken.insert(id.index())),
                        Err(CoreError::PoolExhausted { capacity }) => {
                            proptest::prop_assert_eq!(capacity, count);
                            proptest::prop_assert_eq!(taken.len(), count as usize);
                        }
                        Err(e) => proptest::prop_assert!(false, "alloc: {e}"),
                    },
                    Some(raw) => {
                        let r = p.free(FrameId(raw));
                        if raw >= count {
                            proptest::prop_assert!(
                                matches!(r, Err(CoreError::FrameOutOfRange { .. })),
                                "{r:?}"
                            );
                            proptest::prop_assert!(p.is_allocated(FrameId(raw)).is_err());
                            proptest::prop_assert!(p.frame(FrameId(raw)).is_err());
                        } else if taken.remove(&raw) {
                            proptest::prop_assert!(r.is_ok(), "{r:?}");
                        } else {
                            proptest::prop_assert!(
                                matches!(r, Err(CoreError::DoubleFree { id }) if id == raw),
                                "{r:?}"
                            );
                        }
                    }
                }
                proptest::prop_assert_eq!(p.free_count() as usize, count as usize - taken.len());
                for &id in &taken {
                    proptest::prop_assert!(p.is_allocated(FrameId(id)).unwrap());
                }
            }
        }
    }

    #[test]
    fn stale_id_after_reallocation_is_not_a_double_free() {
        // What the `FrameId` docs warn about: the last freed frame is handed out first,
        // and an id carries no generation.
        let mut p = pool(4);
        let a = p.alloc().unwrap();
        p.free(a).unwrap();
        let b = p.alloc().unwrap();
        assert_eq!(a, b);
        p.free(a).unwrap();
        assert!(matches!(p.free(b), Err(CoreError::DoubleFree { .. })));
        assert_eq!(p.free_count(), 4);
    }

    #[test]
    fn bad_options_are_errors() {
        for size in [0, 1, 1024, 2047, 3000, 4095] {
            assert!(matches!(
                FramePool::new(FramePoolOptions::new(size, 1)),
                Err(CoreError::InvalidFrameSize { .. })
            ));
        }
        assert!(matches!(
            FramePool::new(FramePoolOptions::new(2048, 0)),
            Err(CoreError::ZeroFrames)
        ));
        assert!(matches!(
            FramePool::new(FramePoolOptions::new(1 << 62, u32::MAX)),
            Err(CoreError::PoolTooLarge { .. })
        ));
        // 4 PiB fits `isize` but no address space: the kernel refuses, the pool says so.
        for huge in [false, true] {
            let opts = FramePoolOptions::new(1 << 20, u32::MAX).huge_pages(huge);
            match FramePool::new(opts) {
                Err(e @ CoreError::Map { .. }) if !huge => {
                    assert!(e.to_string().contains("reduce the pool size"), "{e}");
                }
                Err(e @ CoreError::HugePages { .. }) if huge => {
                    assert!(
                        e.to_string().contains("2147483648 free 2 MiB huge pages"),
                        "{e}"
                    );
                }
                other => panic!("a 4 PiB pool: {other:?}"),
            }
        }
    }

    #[test]
    fn kernel_refusals_say_what_to_change() {
        let io = || std::io::Error::from_raw_os_error(libc::ENOMEM);
        let huge = CoreError::HugePages {
            bytes: 5 << 20,
            source: io(),
        }
        .to_string();
        assert!(huge.contains("needs 3 free 2 MiB huge pages"), "{huge}");
        assert!(huge.contains("/proc/sys/vm/nr_hugepages) + 3 ))"), "{huge}");
        let mlock = CoreError::Mlock {
            bytes: 4096,
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        }
        .to_string();
        assert!(
            mlock.contains("RLIMIT_MEMLOCK") && mlock.contains("CAP_IPC_LOCK"),
            "{mlock}"
        );
        let map = CoreError::Map {
            bytes: 4096,
            source: io(),
        }
        .to_string();
        assert!(map.contains("reduce the pool size"), "{map}");
    }

    #[test]
    fn frames_are_disjoint_and_page_aligned() {
        let mut p = FramePool::new(FramePoolOptions::new(4096, 3).populate(true)).unwrap();
        assert_eq!(p.as_ptr() as usize % 4096, 0);
        assert_eq!(p.len_bytes(), 3 * 4096);
        for i in 0..3u8 {
            let id = p.id(u32::from(i)).unwrap();
            p.frame_mut(id).unwrap().fill(i + 1);
        }
        for i in 0..3u32 {
            let id = p.id(i).unwrap();
            assert_eq!(p.offset_of(id), u64::from(i) * 4096);
            assert_eq!(p.id_at_offset(p.offset_of(id) + 256).unwrap(), id);
            assert!(p.frame(id).unwrap().iter().all(|b| u32::from(*b) == i + 1));
        }
    }

    #[test]
    fn huge_pages_error_names_nr_hugepages_when_refused() {
        match FramePool::new(FramePoolOptions::new(2048, 16).huge_pages(true)) {
            Ok(p) => assert_eq!(p.as_ptr() as usize % (2 << 20), 0),
            Err(e) => {
                assert!(matches!(e, CoreError::HugePages { .. }));
                assert!(e.to_string().contains("/proc/sys/vm/nr_hugepages"));
            }
        }
    }

    #[test]
    fn mlock_small_pool_works_or_names_the_limit() {
        match FramePool::new(FramePoolOptions::new(2048, 4).mlock(true)) {
            Ok(p) => assert_eq!(p.frame_count(), 4),
            Err(e) => assert!(e.to_string().contains("RLIMIT_MEMLOCK")),
        }
    }
}
