//! [`CoreError`], the error type of this crate, and the [`Result`] alias.

use std::io;

/// Errors from the shared fixed-size types.
///
/// Each message says what was wrong and what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The frame size is not a power of two of at least [`crate::frame_pool::MIN_FRAME_SIZE_BYTES`].
    #[error(
        "frame size {frame_size_bytes} bytes is invalid: use a power of two of at least 2048 bytes (for example 2048 or 4096)"
    )]
    InvalidFrameSize {
        /// The size that was asked for.
        frame_size_bytes: usize,
    },
    /// A frame pool needs at least one frame.
    #[error("frame count is 0: a frame pool needs at least one frame")]
    ZeroFrames,
    /// `frame_count * frame_size` does not fit the address space or the frame id type.
    #[error(
        "frame pool of {frame_count} frames of {frame_size_bytes} bytes is too large: reduce the frame count or the frame size"
    )]
    PoolTooLarge {
        /// Frames asked for.
        frame_count: u64,
        /// Bytes per frame.
        frame_size_bytes: usize,
    },
    /// Every frame is in use.
    #[error(
        "frame pool exhausted: all {capacity} frames are in use; free frames you are done with or create the pool with more frames"
    )]
    PoolExhausted {
        /// Number of frames in the pool.
        capacity: u32,
    },
    /// The frame was freed while already free.
    #[error("frame {id} is already free (double free): each allocated frame may be freed once")]
    DoubleFree {
        /// The frame id.
        id: u32,
    },
    /// A frame id from an earlier allocation of its frame (kept after the frame was
    /// freed), or from another pool.
    #[error(
        "frame id {index} is stale: it names generation {generation} of frame {index}, which is now at generation {current} (it was freed since this id was made, or the id is from another pool); drop an id when you free its frame and use ids only with the pool that made them"
    )]
    StaleFrame {
        /// The frame's index.
        index: u32,
        /// The generation the id names.
        generation: u32,
        /// The frame's current generation.
        current: u32,
    },
    /// A frame id or offset outside the pool.
    #[error(
        "frame id {id} is out of range: this pool has frames 0..{capacity}; use only ids and offsets that this pool handed out (an id or offset from another pool, or a corrupted descriptor, lands here)"
    )]
    FrameOutOfRange {
        /// The offending id.
        id: u64,
        /// Number of frames in the pool.
        capacity: u32,
    },
    /// The anonymous mapping could not be created.
    #[error(
        "mapping {bytes} bytes for the frame pool failed: {source}; reduce the pool size or free memory"
    )]
    Map {
        /// Size of the mapping.
        bytes: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A huge-page mapping was refused, usually because none are reserved.
    #[error(
        "huge-page mapping of {bytes} bytes failed ({source}): it needs {pages} free 2 MiB huge pages (HugePages_Free in /proc/meminfo); as root, raise /proc/sys/vm/nr_hugepages by at least {pages} (e.g. `echo $(( $(cat /proc/sys/vm/nr_hugepages) + {pages} )) > /proc/sys/vm/nr_hugepages`), or create the pool without huge pages",
        pages = .bytes.div_ceil(2 << 20)
    )]
    HugePages {
        /// Size of the mapping.
        bytes: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `mlock` was refused.
    #[error(
        "locking {bytes} bytes in memory failed ({source}): raise RLIMIT_MEMLOCK (`ulimit -l`), run with CAP_IPC_LOCK, or create the pool without mlock"
    )]
    Mlock {
        /// Size of the mapping.
        bytes: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// `Result` with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
