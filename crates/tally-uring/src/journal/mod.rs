//! A crash-safe, segmented, group-commit journal on the [`Ring`].
//!
//! * [`Journal::append`] frames a record (length, sequence number, CRC32C) into a
//!   registered buffer and returns its sequence number (the first record ever gets 1;
//!   numbers are contiguous).
//! * [`Journal::commit`] writes the whole group with one write and one `fdatasync`
//!   (by default `pwrite` + `fdatasync` on the calling thread; with
//!   `JournalOptions::direct_commit(false)` a write linked to an `fdatasync` in one
//!   io_uring submission, and [`Journal::start_commit`] / [`Journal::wait_commit`] split
//!   it so the next group can fill while the previous one flushes), and returns the
//!   highest durable sequence number. With `JournalOptions::commits_in_flight(n)`,
//!   [`Journal::start_commit`] writes the group and queues its `fdatasync` on io_uring,
//!   keeping up to `n` flushes in the device at once; [`Journal::poll_commits`] and
//!   [`Journal::wait_durable`] collect the acks. Records written while earlier flushes
//!   are pending carry, in `group_back`, the distance to the first record not yet
//!   durable, so that recovery cuts everything after a lost flush as one torn tail.
//!   Acks are published in the order the flushes started, each flush runs on its own open
//!   file description of the segment (so that it sees every writeback error since that
//!   description's previous flush), and any failed flush poisons the journal.
//! * Segments are preallocated with `fallocate` and, by default, pre-written with zeros
//!   once (always, on a file system without `fallocate`), so that commits overwrite
//!   already-written blocks and an `fdatasync` carries no extent metadata;
//!   [`Journal::release_through`] recycles segments whose records are no longer needed,
//!   so steady-state commits never allocate blocks.
//! * [`Journal::open`] recovers: a torn final commit group is cut off (and reported), a
//!   damaged record followed by records of a later commit group is corruption and an
//!   error naming the segment and offset. [`Journal::replay`] delivers every intact record
//!   in order; a record is delivered only if its CRC and sequence number check out, and
//!   each group is re-checked in memory before it is written.
//! * [`SharedJournal`] runs a journal on its own thread and hands out cloneable
//!   [`JournalHandle`]s, so that many threads share one group commit.
//!
//! Memory is bounded: two group buffers of [`JournalOptions::group_buffer_bytes`] plus a
//! read window during recovery (4 MiB, or one frame of [`JournalOptions::max_record_bytes`]
//! when that is larger).
#![deny(unsafe_code)]

pub mod format;
mod scan;
mod shared;

use std::collections::hash_map::RandomState;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tally_core_types::{FramePool, FramePoolOptions};

use crate::error::RingError;
use crate::ring::{OpId, PoolRange, Ring, RingOptions, Target, TaskrunMode};
use format::{HEADER_BYTES, SegmentHeader, check_record, encode_record, frame_bytes};
pub use shared::{JournalHandle, SharedJournal, SharedOptions};

/// Errors from the journal. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file-system call failed. The message ends in what to do about the OS error.
    #[error("{op} failed for {path}: {source}; {}", io_hint(.source))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file system is full.
    #[error(
        "no space left for the journal in {dir} ({op}): free disk space or release old records with release_through; records committed before this error are intact"
    )]
    NoSpace {
        /// The journal directory.
        dir: PathBuf,
        /// What needed space.
        op: &'static str,
    },
    /// The io_uring engine failed.
    #[error("journal I/O engine: {0}")]
    Ring(#[from] RingError),
    /// A damaged record followed by intact ones, or a damaged segment header.
    #[error(
        "journal corruption in {segment} at offset {offset}: {reason}; the records before it are intact (use `journal dump` to inspect); restore the segment from a replica or backup"
    )]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset in that file.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The journal was written by another format version.
    #[error(
        "{segment} was written with journal format version {found}; this build reads version {supported}: replay it with the Tally version that wrote it, or move the directory aside"
    )]
    UnsupportedVersion {
        /// The segment file.
        segment: PathBuf,
        /// Version found in the header.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },
    /// A segment in the middle of the log is missing.
    #[error(
        "segment {index} is missing from {dir}: the log has a hole; restore the file or move the directory aside"
    )]
    MissingSegment {
        /// The journal directory.
        dir: PathBuf,
        /// Index of the missing segment.
        index: u64,
    },
    /// A payload larger than the configured maximum.
    #[error(
        "record of {len} bytes exceeds max_record_bytes = {max}: split it or raise JournalOptions::max_record_bytes"
    )]
    RecordTooLarge {
        /// Payload length.
        len: usize,
        /// Configured maximum.
        max: u32,
    },
    /// A record (plus its 4-byte length) larger than a [`SharedJournal`]'s whole inbox.
    #[error(
        "record of {len} bytes plus its 4-byte length does not fit the shared journal's inbox of max_pending_bytes = {max_pending_bytes}: split it or raise SharedOptions::max_pending_bytes"
    )]
    RecordExceedsInbox {
        /// Payload length.
        len: usize,
        /// Configured [`SharedOptions::max_pending_bytes`].
        max_pending_bytes: usize,
    },
    /// Another process (or journal) holds the directory.
    #[error(
        "{dir} is locked by another journal writer: close it first (only one writer per directory)"
    )]
    Locked {
        /// The journal directory.
        dir: PathBuf,
    },
    /// Bad options.
    #[error("invalid journal options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
    /// An earlier write or sync failed; the durable state is unknown past the last commit.
    #[error(
        "the journal stopped after an I/O failure ({reason}); records up to sequence {durable} are durable; reopen the journal to recover"
    )]
    Poisoned {
        /// The failure.
        reason: String,
        /// Highest durable sequence number.
        durable: u64,
    },
    /// [`Journal::wait_durable`] was asked for a record that was never appended.
    #[error(
        "record {seq} was never appended (the next append gets {next}): wait only for sequence numbers returned by append"
    )]
    NotAppended {
        /// The sequence number asked for.
        seq: u64,
        /// The sequence number the next append gets.
        next: u64,
    },
    /// The shared journal's thread has stopped.
    #[error("the journal thread has stopped: {reason}")]
    Stopped {
        /// Why.
        reason: String,
    },
}

/// What to do about a failed file-system call, keyed on its errno.
fn io_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => {
            "permission denied: check the owner and permissions of the journal directory and its files (the journal reads, writes and creates files there)"
        }
        Some(libc::EROFS) => {
            "the file system is read-only: remount it read-write or put the journal on another file system"
        }
        Some(libc::ENOENT) => {
            "the path does not exist: check the path (Journal::open creates a missing journal directory; replay needs an existing one)"
        }
        Some(libc::ENOTDIR) => {
            "a component of the path is not a directory: choose a path whose parents are all directories"
        }
        Some(libc::EEXIST) => {
            "the path exists but is not a directory: choose another path or move the file aside"
        }
        Some(libc::EISDIR) => {
            "a directory is in the way of a journal file: move it out of the journal directory"
        }
        Some(libc::EMFILE | libc::ENFILE) => {
            "too many open files: raise `ulimit -n` or lower commits_in_flight (each segment holds one descriptor per commit in flight)"
        }
        Some(libc::ENOSPC | libc::EDQUOT) => {
            "the file system is full: free disk space or release old records with release_through"
        }
        Some(libc::EFBIG) => {
            "the file would be larger than the file system allows: lower JournalOptions::segment_bytes"
        }
        Some(libc::EIO) => {
            "the device reported an I/O error: check the disk and the kernel log (dmesg) before reopening; records not yet acknowledged may be lost even if they still read back (the kernel can keep data it failed to write in its cache, and a second fsync does not report the error again), so reopen after a reboot, or restore from a replica"
        }
        _ => "check the path, its permissions and the file system, then retry",
    }
}

impl JournalError {
    pub(crate) fn io(path: &Path, op: &'static str, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    fn from_io(dir: &Path, path: &Path, op: &'static str, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.raw_os_error() == Some(libc::EDQUOT)
        {
            Self::NoSpace {
                dir: dir.to_path_buf(),
                op,
            }
        } else {
            Self::io(path, op, source)
        }
    }
}

/// Largest [`JournalOptions::group_buffer_bytes`]: the two buffers are registered as one
/// io_uring fixed buffer, and the kernel refuses a buffer over 1 GiB.
const MAX_GROUP_BUFFER_BYTES: usize = 512 << 20;

/// How to open a [`Journal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    segment_bytes: u64,
    group_buffer_bytes: usize,
    max_record_bytes: u32,
    prewrite: bool,
    max_free_segments: u32,
    spare_segments: u32,
    direct_commit: bool,
    commits_in_flight: u32,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl JournalOptions {
    /// 64 MiB segments, 1 MiB group buffers, records up to 64 KiB, segments pre-written,
    /// up to 4 released segments kept for reuse, commits with `pwrite` + `fdatasync` on the
    /// calling thread ([`JournalOptions::direct_commit`]).
    pub const fn new() -> Self {
        Self {
            segment_bytes: 64 << 20,
            group_buffer_bytes: 1 << 20,
            max_record_bytes: 64 << 10,
            prewrite: true,
            max_free_segments: 4,
            spare_segments: 0,
            direct_commit: true,
            commits_in_flight: 1,
        }
    }

    /// Segment file size (a multiple of 4096, at least 64 KiB, below 2^63; the file
    /// system may allow less, which `open` reports). Applies to new segments.
    #[must_use]
    pub const fn segment_bytes(mut self, n: u64) -> Self {
        self.segment_bytes = n;
        self
    }

    /// Size of each of the two group buffers (a power of two, 8 KiB to 512 MiB: both are
    /// registered with io_uring as one buffer, which the kernel limits to 1 GiB). A group
    /// larger than this is written out in pieces before its commit.
    #[must_use]
    pub const fn group_buffer_bytes(mut self, n: usize) -> Self {
        self.group_buffer_bytes = n;
        self
    }

    /// Largest payload [`Journal::append`] accepts. Its frame (a 20-byte record header
    /// plus the payload, rounded up to a multiple of 8) must fit one group buffer and one
    /// segment after the segment's 4 KiB header; recovery reads back a record of any size
    /// accepted here. Each segment records the limit it was written with: a journal
    /// reopened with a larger limit starts a new segment instead of continuing the last.
    #[must_use]
    pub const fn max_record_bytes(mut self, n: u32) -> Self {
        self.max_record_bytes = n;
        self
    }

    /// Write zeros over each new segment once (and sync) so that commits overwrite
    /// written blocks instead of converting unwritten extents (one metadata journal
    /// commit less per `fdatasync` on ext4/XFS). Costs one extra write of each new segment.
    /// On a file system without `fallocate` segments are pre-written either way: that is
    /// how their blocks get allocated.
    #[must_use]
    pub const fn prewrite(mut self, on: bool) -> Self {
        self.prewrite = on;
        self
    }

    /// How many released segments to keep for reuse (the rest are deleted).
    #[must_use]
    pub const fn max_free_segments(mut self, n: u32) -> Self {
        self.max_free_segments = n;
        self
    }

    /// Segments to prepare (preallocate and pre-write) when the journal opens, so the
    /// first rotations recycle a ready file instead of preparing one while appends wait.
    #[must_use]
    pub const fn spare_segments(mut self, n: u32) -> Self {
        self.spare_segments = n;
        self
    }

    /// Commit with `pwrite` + `fdatasync` system calls on the calling thread (`true`, the
    /// default) or with a linked io_uring write + fdatasync (`false`, which lets
    /// [`Journal::start_commit`] return before the flush). Buffered io_uring writes and
    /// syncs run on the kernel's io-wq worker threads; on a small, loaded machine every
    /// hand-off to a worker waits for the scheduler. Measured on the 2-vCPU VM, groups of
    /// 1024 taking turns with okaywal in one run (`pair:*` in the `uring_journal` bench):
    /// the direct path made 3-22 % more records/s than the io_uring path in every run.
    #[must_use]
    pub const fn direct_commit(mut self, on: bool) -> Self {
        self.direct_commit = on;
        self
    }

    /// How many commits may be in flight at once (1 to 64; default 1). With more than
    /// one, [`Journal::start_commit`] writes the group with `pwrite` on the calling thread,
    /// queues an io_uring `fdatasync` for it and returns at once; the next group fills and
    /// starts its own flush while earlier ones are still in the device, and the writer
    /// never sleeps in `fdatasync` itself. Measured on the 2-vCPU VM, one writer, groups
    /// of 1024, depth 4, taking turns with okaywal in 200 ms slices (`pairp:*` in the
    /// `uring_journal` bench, five runs): 1.76-14.6x okaywal's records/s at 64 B and
    /// 1.84-2.9x at 1 KiB, the low ends on a quiet disk where okaywal's flushes do not wait
    /// for the 4 ms tick. At 1 KiB four queued 1 MiB groups raise the median ack to
    /// 2.7-3 ms against okaywal's 1.4-1.7 ms. [`Journal::poll_commits`],
    /// [`Journal::wait_durable`] and [`Journal::wait_commit`] collect the acks.
    ///
    /// Acks are published strictly in the order the commits started: a flush that
    /// finished early is acknowledged only after every earlier one succeeded, and a failed
    /// flush poisons the journal before anything started after it is acknowledged. Each
    /// flush runs on its own open file description of the segment (so the journal holds
    /// up to `n` more descriptors), opened before any record was written to the segment:
    /// Linux reports a writeback error once per open file description, so on one shared
    /// description an error could be reported to one of several overlapping flushes only,
    /// and a flush whose pages failed could return success.
    ///
    /// Overrides [`JournalOptions::direct_commit`] when above 1. A
    /// [`SharedJournal`] commits one group at a time whatever this says: with 8 writers
    /// each waiting for its own record, overlapping flushes (tried both from the journal
    /// thread and led by the writers) made 0.45-0.8x the records/s of one group at a time,
    /// because each flush then carried fewer records.
    #[must_use]
    pub const fn commits_in_flight(mut self, n: u32) -> Self {
        self.commits_in_flight = n;
        self
    }

    fn validate(&self) -> Result<(), JournalError> {
        let bad = |reason| Err(JournalError::InvalidOptions { reason });
        if self.commits_in_flight == 0 || self.commits_in_flight > 64 {
            return bad("commits_in_flight must be between 1 and 64");
        }
        if self.segment_bytes < (64 << 10)
            || !self.segment_bytes.is_multiple_of(4096)
            || i64::try_from(self.segment_bytes).is_err()
        {
            return bad(
                "segment_bytes must be a multiple of 4096, at least 64 KiB and below 2^63 (the largest file size Linux accepts)",
            );
        }
        if self.group_buffer_bytes < (8 << 10)
            || !self.group_buffer_bytes.is_power_of_two()
            || self.group_buffer_bytes > MAX_GROUP_BUFFER_BYTES
        {
            return bad(
                "group_buffer_bytes must be a power of two between 8 KiB and 512 MiB (the two group buffers are registered with io_uring as one buffer, which the kernel limits to 1 GiB)",
            );
        }
        let frame = frame_bytes(self.max_record_bytes as usize) as u64;
        if frame > self.group_buffer_bytes as u64 || frame > self.segment_bytes - HEADER_BYTES {
            return bad(
                "max_record_bytes plus its 20-byte record header, rounded up to a multiple of 8, must fit one group buffer and one segment after its 4 KiB header: lower max_record_bytes or raise group_buffer_bytes / segment_bytes",
            );
        }
        Ok(())
    }
}

/// What [`Journal::replay`] (or recovery in [`Journal::open`]) found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayReport {
    /// Live segment files.
    pub segments: u32,
    /// Records delivered.
    pub records: u64,
    /// Payload bytes delivered.
    pub payload_bytes: u64,
    /// Sequence number of the first delivered record (records before it were released).
    pub first_seq: Option<u64>,
    /// Sequence number of the last delivered record (0 if none).
    pub last_seq: u64,
    /// A torn final commit group that was (on open) or would be (on replay) cut off.
    pub torn_tail: Option<TornTail>,
}

/// Where a torn tail was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Offset of the first damaged record.
    pub offset: u64,
    /// Intact records of the torn, never-acknowledged group found after the damage and
    /// discarded with it.
    pub discarded_records: u64,
}

tally_core_types::single_writer_stats! {
    /// Journal statistics (written by the journal's thread).
    pub struct JournalStats => JournalStatsSnapshot {
        /// Records appended.
        records,
        /// Payload bytes appended.
        payload_bytes,
        /// Commits that wrote something.
        commits,
        /// Buffer write-outs before a commit (groups larger than a buffer).
        write_outs,
        /// Segments created (new files).
        segments_created,
        /// Segments reused from the free list.
        segments_recycled,
    }
}

struct Segment {
    file: File,
    path: PathBuf,
    index: u64,
    salt: u64,
    /// File offset where the fill buffer's first byte goes.
    buf_file_off: u64,
    /// Segment size.
    bytes: u64,
    /// With [`JournalOptions::commits_in_flight`] above 1: one open file description of
    /// this segment per commit slot, opened before any record was written to it. Each
    /// pipelined `fdatasync` runs on its slot's description, so that it reports every
    /// writeback error of the file since that description's previous sync (the kernel
    /// reports an error once per open file description: on a shared one, an error could
    /// go to an earlier sync only and a later sync could succeed without seeing it).
    sync_files: Vec<File>,
}

/// A commit whose `fdatasync` is in flight.
struct InFlight {
    sync: OpId,
    write: Option<OpId>,
    last_seq: u64,
    /// Index into [`Segment::sync_files`] (pipelined commits; 0 otherwise).
    slot: usize,
    /// The sync's result once its completion arrived (pipelined commits are published in
    /// submission order, so a finished one may wait here for earlier ones; one commit in
    /// flight: collected by [`Journal::poll_commits`] before [`Journal::wait_commit`]).
    result: Option<Result<(), crate::Errno>>,
    /// The write's result once its completion arrived, if [`Journal::poll_commits`]
    /// collected it (one commit in flight).
    write_result: Option<Result<u32, crate::Errno>>,
    /// What `write` writes: the pool range and its file offset (to finish a short write).
    group: Option<(PoolRange, u64)>,
}

impl InFlight {
    fn new(sync: OpId, write: Option<OpId>, last_seq: u64, slot: usize) -> Self {
        Self {
            sync,
            write,
            last_seq,
            slot,
            result: None,
            write_result: None,
            group: None,
        }
    }
}

/// Most writes [`Journal::write_rest`] makes to finish one short group write (each must
/// also make progress): a file system that keeps writing a little at a time is given up
/// on, poisoning the journal, rather than followed forever.
const MAX_WRITE_RESUMES: u32 = 8;

/// Publishes finished commits strictly in submission order: pops the finished, successful
/// commits at the front of `in_flight` and raises `durable` to the last one's sequence
/// number. Returns the error of the first failed commit still queued, if any; nothing
/// after a failed commit is ever published, even if its own sync succeeded (the caller
/// poisons the journal).
fn publish_in_order(
    in_flight: &mut std::collections::VecDeque<InFlight>,
    durable: &mut u64,
) -> Result<(), crate::Errno> {
    while let Some(f) = in_flight.front() {
        if f.result != Some(Ok(())) {
            break;
        }
        *durable = (*durable).max(f.last_seq);
        in_flight.pop_front();
    }
    match in_flight
        .iter()
        .find_map(|f| f.result.and_then(Result::err))
    {
        Some(errno) => Err(errno),
        None => Ok(()),
    }
}

/// A single-writer, crash-safe group-commit journal. See the [module docs](self).
pub struct Journal {
    // Field order is drop order. The ring goes first: its `Drop` waits for every operation
    // still in flight (a commit's write and `fdatasync`), which name the segment's
    // descriptors, so those must still be open; and the directory lock goes last, so that
    // no other writer can open the directory while our last write is still landing.
    ring: Ring,
    seg: Segment,
    dir: PathBuf,
    dir_file: File,
    opts: JournalOptions,
    free: Vec<(u64, PathBuf)>,
    /// Released segments renamed to free names by a [`Journal::release_through`] whose
    /// directory sync failed: the renames may not be durable, so these are never recycled
    /// by this journal (a rotation writing a header into one could, after a power loss,
    /// bring it back under its old live name holding another segment's header). Their
    /// names stay taken; the next `open` finds them as free segments.
    unsynced_free: Vec<(u64, PathBuf)>,
    /// Live segments (index, first seq), oldest first.
    live: std::collections::VecDeque<(u64, u64)>,
    /// Which half of the pool is filling (0 or 1).
    fill_half: usize,
    /// Bytes framed into the fill half.
    filled: usize,
    next_seq: u64,
    group_first: u64,
    durable: u64,
    /// Highest sequence number covered by a started commit.
    submitted: u64,
    /// Commits started and not yet reaped, oldest first.
    in_flight: std::collections::VecDeque<InFlight>,
    /// The current segment holds written but not yet synced records (a write-out of a
    /// group larger than a buffer, before its commit).
    seg_unsynced: bool,
    poisoned: Option<String>,
    stats: JournalStats,
    salt_state: RandomState,
    /// The `flock` on `LOCK`: declared last, so dropped after every other field (above).
    _lock: File,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("segment", &self.seg.index)
            .field("next_seq", &self.next_seq)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

fn fsync_dir(dir_file: &File, dir: &Path) -> Result<(), JournalError> {
    dir_file
        .sync_all()
        .map_err(|source| JournalError::io(dir, "fsync the journal directory", source))
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and recovers it: a torn final group
    /// is cut off and its space cleaned; appends continue after the last durable record.
    /// Every recovered record is synced before this returns, so [`Journal::durable_seq`]
    /// covers exactly the records that survive a power loss from then on. One writer per
    /// directory: `dir` and its `LOCK` file are `flock`ed until the journal is dropped.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`], [`JournalError::UnsupportedVersion`],
    /// [`JournalError::MissingSegment`], [`JournalError::Locked`], I/O and ring errors.
    pub fn open(dir: &Path, options: JournalOptions) -> Result<Self, JournalError> {
        Self::open_with_report(dir, options).map(|(j, _)| j)
    }

    /// As [`Journal::open`], also returning what recovery found.
    ///
    /// # Errors
    /// As [`Journal::open`].
    #[allow(
        clippy::too_many_lines,
        reason = "the recovery steps read best in order"
    )]
    pub fn open_with_report(
        dir: &Path,
        options: JournalOptions,
    ) -> Result<(Self, ReplayReport), JournalError> {
        options.validate()?;
        create_dir_durably(dir)?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| {
                JournalError::from_io(dir, &lock_path, "create the lock file", source)
            })?;
        let locked = |path: &Path, e: std::fs::TryLockError| match e {
            std::fs::TryLockError::WouldBlock => JournalError::Locked {
                dir: dir.to_path_buf(),
            },
            std::fs::TryLockError::Error(source) => {
                JournalError::io(path, "lock the journal directory (flock)", source)
            }
        };
        lock.try_lock().map_err(|e| locked(&lock_path, e))?;
        let dir_file = File::open(dir)
            .map_err(|source| JournalError::io(dir, "open the journal directory", source))?;
        // The directory itself is locked too: a `LOCK` file deleted while its writer runs
        // (say, taken for a stale lock) would let a second writer create and lock a new
        // one. The directory cannot be replaced while it is open here. A file system that
        // cannot lock a directory (NFS emulates `flock` with POSIX locks, which a read-only
        // descriptor cannot take) keeps the `LOCK` file's lock alone.
        if let Err(std::fs::TryLockError::WouldBlock) = dir_file.try_lock() {
            return Err(JournalError::Locked {
                dir: dir.to_path_buf(),
            });
        }
        remove_leftover_tmp(dir);
        let scan = scan::scan(dir, scan::Deliver::AsRead, |_, _| {})?;
        let report = report_of(&scan);

        let mut ring = Ring::new(
            RingOptions::new(64)
                .cq_entries(128)
                .max_in_flight(128)
                .mode(TaskrunMode::CoopTaskrun),
        )?;
        let frames = u32::try_from(options.group_buffer_bytes * 2 / 4096).map_err(|_| {
            JournalError::InvalidOptions {
                reason: "group_buffer_bytes too large",
            }
        })?;
        ring.register_frame_pool(
            FramePool::new(FramePoolOptions::new(4096, frames).populate(true))
                .map_err(RingError::from)?,
        )?;

        let mut free: Vec<(u64, PathBuf)> = scan
            .free
            .iter()
            .map(|f| (f.index, f.path.clone()))
            .collect();
        let mut live: std::collections::VecDeque<(u64, u64)> = scan
            .live
            .iter()
            .map(|s| (s.index, s.header.first_seq))
            .collect();
        // Apply the recovery decision.
        let mut current: Option<(scan::LiveSeg, u64)> = None;
        if let Some(torn) = &scan.torn {
            // Segments after the torn one hold only the torn group: recycle them, highest
            // first, so that a crash between two renames leaves no hole in the live
            // numbering (which would stop the journal from opening).
            for sf in scan.all.iter().skip(torn.seg_pos + 1).rev() {
                let (free_index, to) = free_slot(dir, &free, &[], sf.index);
                std::fs::rename(&sf.path, &to).map_err(|source| {
                    JournalError::io(&sf.path, "recycle a torn segment", source)
                })?;
                free.push((free_index, to));
                live.retain(|(i, _)| *i != sf.index);
            }
            if let Some(ls) = scan.live.get(torn.seg_pos) {
                current = Some((ls.clone(), torn.zero_until));
            }
            fsync_dir(&dir_file, dir)?;
        }
        if current.is_none()
            && let Some(ls) = scan.live.last()
            && live.back().is_some_and(|(i, _)| *i == ls.index)
        {
            current = Some((ls.clone(), ls.end_off));
        }
        let salt_state = RandomState::new();
        let stats = JournalStats::new();
        let continued = match current {
            Some((ls, zero_until)) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&ls.path)
                    .map_err(|source| {
                        JournalError::io(&ls.path, "open the last segment", source)
                    })?;
                // Before the wipe below and any new record.
                let sync_files = open_sync_files(&ls.path, sync_slots(&options))?;
                let seg = Segment {
                    file,
                    path: ls.path.clone(),
                    index: ls.index,
                    salt: ls.header.salt,
                    buf_file_off: ls.end_off,
                    bytes: ls.header.segment_bytes,
                    sync_files,
                };
                if zero_until > ls.end_off {
                    // Wipe the intact records of the torn group so they can never be
                    // mistaken for new ones.
                    let zeros = vec![0u8; usize::try_from(zero_until - ls.end_off).unwrap_or(0)];
                    seg.file
                        .write_all_at(&zeros, ls.end_off)
                        .map_err(|source| {
                            JournalError::from_io(dir, &ls.path, "wipe a torn tail", source)
                        })?;
                }
                // Records a killed writer wrote but never synced are still in the page
                // cache and were recovered above: sync them before they are reported
                // durable (`durable_seq`) and before any later record depends on them.
                seg.file.sync_data().map_err(|source| {
                    JournalError::io(&ls.path, "sync the last segment on open", source)
                })?;
                // A segment whose header caps records below `max_record_bytes` (the journal
                // was reopened with a larger limit) cannot take every record accepted now:
                // recovery reads a segment's records only up to its header's limit. Such a
                // segment is closed as it is and the records go to a new one.
                (ls.header.max_record >= options.max_record_bytes).then_some(seg)
            }
            None => None,
        };
        #[allow(
            clippy::single_match_else,
            reason = "two real cases: continue a segment or create a new one"
        )]
        let (seg, next_seq) = match continued {
            Some(seg) => (seg, scan.next_seq),
            None => {
                // Right after the last live segment: live numbers must stay contiguous,
                // whatever numbers free segments carry (their names are `free-N`, so
                // they never collide with it).
                let index = match live.back() {
                    Some((last, _)) => last + 1,
                    None => free.iter().map(|(i, _)| i + 1).max().unwrap_or(0),
                };
                let seg = create_segment(
                    dir,
                    &dir_file,
                    &mut ring,
                    &options,
                    &mut free,
                    &stats,
                    &salt_state,
                    index,
                    scan.next_seq,
                    1,
                    sync_slots(&options),
                    false,
                )?;
                live.push_back((index, scan.next_seq));
                (seg, scan.next_seq)
            }
        };
        let mut next_free_index = free
            .iter()
            .map(|(i, _)| i + 1)
            .chain(live.back().map(|(i, _)| i + 1))
            .max()
            .unwrap_or(1)
            .max(seg.index + 1);
        while free.len() < options.spare_segments.min(options.max_free_segments) as usize {
            let spare = create_segment(
                dir,
                &dir_file,
                &mut ring,
                &options,
                &mut Vec::new(),
                &stats,
                &salt_state,
                next_free_index,
                1,
                1,
                0,
                true,
            )?;
            free.push((next_free_index, spare.path));
            next_free_index += 1;
        }
        let j = Self {
            ring,
            seg,
            dir: dir.to_path_buf(),
            dir_file,
            opts: options,
            free,
            unsynced_free: Vec::new(),
            live,
            fill_half: 0,
            filled: 0,
            next_seq,
            group_first: next_seq,
            durable: next_seq - 1,
            submitted: next_seq - 1,
            in_flight: std::collections::VecDeque::with_capacity(
                options.commits_in_flight as usize,
            ),
            seg_unsynced: false,
            poisoned: None,
            stats,
            salt_state,
            _lock: lock,
        };
        Ok((j, report))
    }

    /// Delivers every durable record in order to `f(seq, payload)` (a torn tail is
    /// reported, not cut; nothing is written). The segment a killed writer may have left
    /// records in that it never synced (still in the page cache) is `fdatasync`ed before
    /// any of them is delivered, so that a power loss cannot take back a delivered record.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] (with segment and offset) for mid-log damage,
    /// [`JournalError::UnsupportedVersion`], [`JournalError::MissingSegment`], I/O errors.
    pub fn replay(dir: &Path, f: impl FnMut(u64, &[u8])) -> Result<ReplayReport, JournalError> {
        let scan = scan::scan(dir, scan::Deliver::Durable, f)?;
        Ok(report_of(&scan))
    }

    /// The sequence number the next appended record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The highest durable sequence number (0 if none).
    pub fn durable_seq(&self) -> u64 {
        self.durable
    }

    /// Statistics.
    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    /// The ring's statistics (syscalls, bytes, errors).
    pub fn ring_stats(&self) -> crate::ring::RingStatsSnapshot {
        self.ring.stats().snapshot()
    }

    fn check_poison(&self) -> Result<(), JournalError> {
        match &self.poisoned {
            Some(reason) => Err(JournalError::Poisoned {
                reason: reason.clone(),
                durable: self.durable,
            }),
            None => Ok(()),
        }
    }

    /// Poisons the journal with an I/O error on the current segment.
    fn poison_io<T>(&mut self, what: &'static str, source: io::Error) -> Result<T, JournalError> {
        let e = JournalError::from_io(&self.dir, &self.seg.path, what, source);
        self.poison(e)
    }

    /// Poisons with a ring error: an operation's errno as an I/O error of the segment
    /// (`what` failed), anything else as it is.
    fn poison_ring<T>(&mut self, what: &'static str, e: RingError) -> Result<T, JournalError> {
        match e {
            RingError::Op { errno, .. } => self.poison_io(what, errno.to_io()),
            e => self.poison(e.into()),
        }
    }

    fn poison<T>(&mut self, e: JournalError) -> Result<T, JournalError> {
        self.poisoned = Some(e.to_string());
        Err(e)
    }

    fn half_offset(&self, half: usize) -> usize {
        half * self.opts.group_buffer_bytes
    }

    /// The framed records of the fill half, in the registered pool.
    fn fill_range(&self) -> PoolRange {
        PoolRange::new(
            self.half_offset(self.fill_half),
            u32::try_from(self.filled).unwrap_or(0),
        )
    }

    /// Appends one record to the current group and returns its sequence number. The
    /// record is durable after the next [`Journal::commit`].
    ///
    /// # Errors
    /// [`JournalError::RecordTooLarge`]; [`JournalError::NoSpace`] when a new segment
    /// cannot be allocated (the journal stays usable, earlier commits are intact);
    /// [`JournalError::Poisoned`] after an earlier I/O failure.
    #[inline]
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, JournalError> {
        self.check_poison()?;
        if payload.len() > self.opts.max_record_bytes as usize {
            return Err(JournalError::RecordTooLarge {
                len: payload.len(),
                max: self.opts.max_record_bytes,
            });
        }
        let frame = frame_bytes(payload.len());
        if self.seg.buf_file_off + (self.filled + frame) as u64 > self.seg.bytes {
            self.rotate(frame)?;
        }
        if self.filled + frame > self.opts.group_buffer_bytes {
            self.write_out()?;
        }
        let seq = self.next_seq;
        let back = u32::try_from(seq - self.group_first).unwrap_or(u32::MAX);
        let at = self.half_offset(self.fill_half) + self.filled;
        let salt = self.seg.salt;
        let dst = self
            .ring
            .pool_bytes_mut(PoolRange::new(at, u32::try_from(frame).unwrap_or(u32::MAX)))?;
        encode_record(dst, salt, seq, back, payload);
        self.filled += frame;
        self.next_seq += 1;
        self.stats.records.incr();
        self.stats.payload_bytes.add(payload.len() as u64);
        Ok(seq)
    }

    /// Re-checks every framed record in the fill half (paired with the check on read).
    fn verify_fill(&self) -> Result<(), JournalError> {
        let base = self.half_offset(self.fill_half);
        let bytes = self.ring.pool_bytes(PoolRange::new(
            base,
            u32::try_from(self.filled).unwrap_or(0),
        ))?;
        let mut at = 0usize;
        let mut expect = self.next_seq - self.records_in_fill(bytes);
        while at < bytes.len() {
            let rec = bytes.get(at..).and_then(|b| {
                check_record(b, self.seg.salt, self.opts.max_record_bytes, |s| {
                    s == expect
                })
            });
            let Some(rec) = rec else {
                return Err(JournalError::Corrupt {
                    segment: self.seg.path.clone(),
                    offset: self.seg.buf_file_off + at as u64,
                    reason: "a framed record failed its check before being written (memory corruption)",
                });
            };
            at += frame_bytes(rec.len as usize);
            expect += 1;
        }
        Ok(())
    }

    fn records_in_fill(&self, bytes: &[u8]) -> u64 {
        // The fill half's first record carries its own sequence number.
        format::peek_header(bytes).map_or(0, |(_, _, seq, _)| self.next_seq - seq)
    }

    /// Writes the fill half out (no sync) so it can be refilled: for groups larger than
    /// a buffer. Waits for any commit in flight first (ordering rule for recovery).
    fn write_out(&mut self) -> Result<(), JournalError> {
        self.wait_commit()?;
        if self.filled == 0 {
            return Ok(());
        }
        self.verify_fill()?;
        let range = self.fill_range();
        let op = self.ring.write_fixed(
            Target::Fd(self.seg.file.as_raw_fd()),
            range,
            self.seg.buf_file_off,
            0,
        )?;
        match self.ring.run(op, |_| {}) {
            Ok(n) if n as usize == self.filled => {}
            Ok(n) => self.write_rest(range, self.seg.buf_file_off, n as usize, "write a group")?,
            Err(e) => return self.poison_ring("write a group", e),
        }
        self.seg.buf_file_off += self.filled as u64;
        self.filled = 0;
        self.seg_unsynced = true;
        self.stats.write_outs.incr();
        Ok(())
    }

    /// Finishes a write of `range` at `file_off` that completed short, after `done`
    /// bytes: writes the rest, at most [`MAX_WRITE_RESUMES`] more writes, each of which
    /// must make progress. A short write to a regular file is legal (a file system may
    /// write less than asked, e.g. FUSE, or the device fills part way), and the rest must
    /// reach the file before the `fdatasync` that makes the group durable. Any failure
    /// poisons the journal, with the error of the write that failed (so a disk that is
    /// full is reported as [`JournalError::NoSpace`], not as a short write).
    fn write_rest(
        &mut self,
        range: PoolRange,
        file_off: u64,
        mut done: usize,
        what: &'static str,
    ) -> Result<(), JournalError> {
        let len = range.len as usize;
        let mut resumes = 0;
        while done < len {
            if resumes == MAX_WRITE_RESUMES {
                return self.poison(JournalError::io(
                    &self.seg.path,
                    what,
                    io::Error::from(io::ErrorKind::WriteZero),
                ));
            }
            resumes += 1;
            let rest = PoolRange::new(range.offset + done, u32::try_from(len - done).unwrap_or(0));
            let target = Target::Fd(self.seg.file.as_raw_fd());
            let written = self
                .ring
                .write_fixed(target, rest, file_off + done as u64, 0)
                .and_then(|op| self.ring.run(op, |_| {}));
            match written {
                Ok(0) => {
                    return self.poison(JournalError::io(
                        &self.seg.path,
                        what,
                        io::Error::from(io::ErrorKind::WriteZero),
                    ));
                }
                Ok(n) => done += n as usize,
                Err(e) => return self.poison_ring(what, e),
            }
        }
        Ok(())
    }

    /// Starts committing every appended record and returns the sequence number that will
    /// be durable once the commit completes. With one commit in flight (the default) this is
    /// one write of the group linked to one `fdatasync`, submitted together (with
    /// [`JournalOptions::direct_commit`], the default, it is done before returning);
    /// appends may continue meanwhile (into the other buffer) and a commit already in
    /// flight is waited for first. With [`JournalOptions::commits_in_flight`] above 1 the
    /// group is written with `pwrite` and its `fdatasync` queued, waiting only when that
    /// many commits are already in flight.
    ///
    /// # Errors
    /// As [`Journal::commit`].
    pub fn start_commit(&mut self) -> Result<u64, JournalError> {
        self.check_poison()?;
        if self.opts.commits_in_flight > 1 {
            return self.start_pipelined();
        }
        self.wait_commit()?;
        let last = self.next_seq - 1;
        if last == self.durable {
            return Ok(last);
        }
        if self.opts.direct_commit {
            return self.direct_commit(last);
        }
        let target = Target::Fd(self.seg.file.as_raw_fd());
        let inflight = if self.filled > 0 {
            self.verify_fill()?;
            let range = self.fill_range();
            let (w, s) =
                self.ring
                    .write_fixed_then_fdatasync(target, range, self.seg.buf_file_off, last)?;
            let mut f = InFlight::new(s, Some(w), last, 0);
            f.group = Some((range, self.seg.buf_file_off));
            f
        } else {
            InFlight::new(self.ring.sync(target, true, last)?, None, last, 0)
        };
        if let Err(e) = self.ring.submit() {
            // The queued write and sync may or may not reach the kernel later (the next
            // `io_uring_enter` would submit them), and a retry would queue them a second
            // time: nothing they cover can be acknowledged, as in `start_pipelined`.
            return self.poison(e.into());
        }
        self.seg_unsynced = false;
        self.seg.buf_file_off += self.filled as u64;
        self.filled = 0;
        self.fill_half ^= 1;
        self.group_first = self.next_seq;
        self.submitted = last;
        self.in_flight.push_back(inflight);
        self.stats.commits.incr();
        Ok(last)
    }

    /// Writes the fill half to the segment with `pwrite` on this thread.
    fn pwrite_fill(&mut self, what: &'static str) -> Result<(), JournalError> {
        if self.filled == 0 {
            return Ok(());
        }
        self.verify_fill()?;
        let range = self.fill_range();
        let written = self
            .ring
            .pool_bytes(range)
            .map(|b| self.seg.file.write_all_at(b, self.seg.buf_file_off));
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => self.poison_io(what, source),
            Err(e) => self.poison(e.into()),
        }
    }

    /// The pipelined commit of [`JournalOptions::commits_in_flight`] > 1: `pwrite` the
    /// group (so every later flush covers it), queue its `fdatasync`, return.
    ///
    /// Records of the next group are framed with `group_back` pointing at the first
    /// sequence number not yet known durable (instead of the group's own first record),
    /// so recovery treats everything written while earlier flushes were pending as one
    /// torn tail, never as mid-log corruption.
    fn start_pipelined(&mut self) -> Result<u64, JournalError> {
        let last = self.next_seq - 1;
        if last == self.submitted && !self.seg_unsynced {
            return Ok(last);
        }
        while self.in_flight.len() >= self.opts.commits_in_flight as usize {
            self.reap_commits(true)?;
        }
        self.pwrite_fill("write a commit group")?;
        // The lowest slot no queued commit holds (fewer than `commits_in_flight` are
        // queued, and each segment has that many sync descriptors).
        let used = self.in_flight.iter().fold(0u64, |m, f| {
            m | u32::try_from(f.slot)
                .ok()
                .and_then(|b| 1u64.checked_shl(b))
                .unwrap_or(0)
        });
        let slot = (!used).trailing_zeros() as usize;
        let Some(sync_file) = self.seg.sync_files.get(slot) else {
            return self.poison_io(
                "find a free commit slot (internal error: report this bug)",
                io::Error::other("every sync descriptor of the segment is in use"),
            );
        };
        // The sync runs on the slot's own open file description: see `Segment::sync_files`.
        let target = Target::Fd(sync_file.as_raw_fd());
        let sync = self.ring.sync(target, true, last)?;
        self.in_flight
            .push_back(InFlight::new(sync, None, last, slot));
        if let Err(e) = self.ring.submit() {
            // The sync may or may not reach the kernel later; nothing it covers can be
            // acknowledged now.
            return self.poison(e.into());
        }
        self.seg_unsynced = false;
        self.seg.buf_file_off += self.filled as u64;
        self.filled = 0;
        self.fill_half ^= 1;
        self.submitted = last;
        self.stats.commits.incr();
        // Collect whatever already finished, then open the next group.
        self.reap_commits(false)?;
        self.group_first = self.durable + 1;
        Ok(last)
    }

    /// The synchronous commit path of [`JournalOptions::direct_commit`].
    fn direct_commit(&mut self, last: u64) -> Result<u64, JournalError> {
        self.pwrite_fill("write a commit group")?;
        if let Err(source) = self.seg.file.sync_data() {
            return self.poison_io("fdatasync a commit group", source);
        }
        self.seg_unsynced = false;
        self.seg.buf_file_off += self.filled as u64;
        self.filled = 0;
        self.fill_half ^= 1;
        self.group_first = self.next_seq;
        self.durable = last;
        self.submitted = last;
        self.stats.commits.incr();
        Ok(last)
    }

    /// Collects finished commits without waiting and returns the highest durable sequence
    /// number: a caller that started a commit with [`Journal::start_commit`] learns here
    /// when it is durable, without blocking. With one commit in flight (the default
    /// [`JournalOptions::commits_in_flight`]), a commit whose `fdatasync` has completed is
    /// finished here as [`Journal::wait_commit`] would (after a short write, that writes
    /// the rest and syncs again, which waits); with [`JournalOptions::direct_commit`]
    /// commits finish inside [`Journal::start_commit`].
    ///
    /// # Errors
    /// As [`Journal::commit`].
    pub fn poll_commits(&mut self) -> Result<u64, JournalError> {
        self.check_poison()?;
        if self.opts.commits_in_flight > 1 {
            self.reap_commits(false)?;
            return Ok(self.durable);
        }
        let Some(inf) = self.in_flight.front_mut() else {
            return Ok(self.durable);
        };
        let drained = self.ring.drain(|c| {
            if c.op == inf.sync {
                inf.result = Some(c.result().map(|_| ()));
            } else if Some(c.op) == inf.write {
                inf.write_result = Some(c.result());
            }
        });
        if let Err(e) = drained {
            return self.poison(e.into());
        }
        if self.in_flight.front().is_some_and(|f| f.result.is_some()) {
            self.wait_commit()?;
        }
        Ok(self.durable)
    }

    /// Waits until record `seq` is durable (starting a commit if `seq` was appended but not
    /// yet committed) and returns the highest durable sequence number.
    ///
    /// # Errors
    /// [`JournalError::NotAppended`] when `seq` was never appended; as [`Journal::commit`].
    pub fn wait_durable(&mut self, seq: u64) -> Result<u64, JournalError> {
        self.check_poison()?;
        if seq >= self.next_seq {
            return Err(JournalError::NotAppended {
                seq,
                next: self.next_seq,
            });
        }
        if seq > self.submitted {
            self.start_commit()?;
        }
        while self.durable < seq {
            if self.in_flight.is_empty() {
                // Nothing left to wait for: only a new commit can cover `seq`.
                self.start_commit()?;
                if self.in_flight.is_empty() && self.durable < seq {
                    return self.poison(JournalError::Stopped {
                        reason: format!("record {seq} was appended but no commit covers it"),
                    });
                }
            } else if self.opts.commits_in_flight > 1 {
                self.reap_commits(true)?;
            } else {
                self.wait_commit()?;
            }
        }
        Ok(self.durable)
    }

    /// Reaps finished commits; with `block`, waits for at least one completion first.
    /// Commits are published in the order they were started: a flush that finished is
    /// acknowledged only once every earlier one has succeeded, and any failure poisons the
    /// journal before anything started after it is acknowledged.
    fn reap_commits(&mut self, block: bool) -> Result<(), JournalError> {
        // A failure seen earlier is still queued (and reported again); otherwise the
        // front commit has not finished, so a completion is still to come for `block`.
        if let Err(errno) = publish_in_order(&mut self.in_flight, &mut self.durable) {
            return self.poison_io("fdatasync a commit group", errno.to_io());
        }
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let in_flight = &mut self.in_flight;
        let mut on = |c: crate::ring::Completion| {
            if let Some(f) = in_flight
                .iter_mut()
                .find(|f| f.sync == c.op && f.result.is_none())
            {
                f.result = Some(c.result().map(|_| ()));
            }
        };
        let drained = if block {
            self.ring.wait_one().map(|c| {
                on(c);
                1
            })
        } else {
            self.ring.drain(&mut on)
        };
        if let Err(e) = drained {
            return self.poison(e.into());
        }
        if let Err(errno) = publish_in_order(&mut self.in_flight, &mut self.durable) {
            return self.poison_io("fdatasync a commit group", errno.to_io());
        }
        Ok(())
    }

    /// Waits for every commit started by [`Journal::start_commit`] and returns the highest
    /// durable sequence number.
    ///
    /// # Errors
    /// As [`Journal::commit`].
    pub fn wait_commit(&mut self) -> Result<u64, JournalError> {
        if self.opts.commits_in_flight > 1 {
            while !self.in_flight.is_empty() {
                self.reap_commits(true)?;
            }
            return Ok(self.durable);
        }
        let Some(inf) = self.in_flight.pop_front() else {
            return Ok(self.durable);
        };
        let mut write_result = inf.write_result;
        let write = inf.write;
        // The sync's result, unless `poll_commits` collected it already.
        let sync = if let Some(result) = inf.result {
            result
        } else {
            let sync = self.ring.wait_for(inf.sync, |c| {
                if Some(c.op) == write {
                    write_result = Some(c.result());
                }
            });
            match sync {
                Ok(c) => c.result().map(|_| ()),
                Err(e) => return self.poison(e.into()),
            }
        };
        if let Some(Err(errno)) = write_result {
            let e = JournalError::from_io(
                &self.dir,
                &self.seg.path,
                "write a commit group",
                errno.to_io(),
            );
            return self.poison(e);
        }
        // A short write breaks the link: its fdatasync is cancelled without running. Write
        // the rest and sync here. (Only then: a sync that ran and failed is never retried,
        // since a second fdatasync may succeed although the data of the first were lost.)
        if let (Some(Ok(n)), Some((range, off))) = (write_result, inf.group)
            && (n as usize) < range.len as usize
            && matches!(sync, Ok(()) | Err(crate::Errno(libc::ECANCELED)))
        {
            self.write_rest(range, off, n as usize, "write a commit group")?;
            let target = Target::Fd(self.seg.file.as_raw_fd());
            let synced = self
                .ring
                .sync(target, true, inf.last_seq)
                .and_then(|op| self.ring.run(op, |_| {}));
            if let Err(e) = synced {
                return self.poison_ring("fdatasync a commit group", e);
            }
            self.durable = inf.last_seq;
            return Ok(self.durable);
        }
        if let Err(errno) = sync {
            let e = if errno.0 == libc::ECANCELED {
                JournalError::io(
                    &self.seg.path,
                    "write a commit group (short write)",
                    io::Error::from(io::ErrorKind::WriteZero),
                )
            } else {
                JournalError::from_io(
                    &self.dir,
                    &self.seg.path,
                    "fdatasync a commit group",
                    errno.to_io(),
                )
            };
            return self.poison(e);
        }
        self.durable = inf.last_seq;
        Ok(self.durable)
    }

    /// Makes every appended record durable (one write and one `fdatasync` for the whole
    /// group) and returns the highest durable sequence number.
    ///
    /// # Errors
    /// [`JournalError::NoSpace`], I/O and ring errors; after a failed write or sync the
    /// journal is poisoned ([`JournalError::Poisoned`]) and must be reopened.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        self.start_commit()?;
        self.wait_commit()
    }

    /// Moves to a new segment. The records of the group being filled (not written yet)
    /// move with it: they are re-framed with the new segment's salt and written there by
    /// the next commit, so the old segment holds only committed, synced records and needs
    /// no extra `fdatasync`. (If part of the group was already written out to the old
    /// segment, or the group does not fit the new one, the old way: write the rest out,
    /// sync the old segment, start the new one empty.)
    fn rotate(&mut self, next_frame: usize) -> Result<(), JournalError> {
        self.wait_commit()?;
        let fits = HEADER_BYTES + (self.filled + next_frame) as u64 <= self.opts.segment_bytes;
        if self.seg_unsynced || !fits {
            self.write_out()?;
            let target = Target::Fd(self.seg.file.as_raw_fd());
            let op = self.ring.sync(target, true, 0)?;
            if let Err(e) = self.ring.run(op, |_| {}) {
                return self.poison(e.into());
            }
            self.seg_unsynced = false;
        }
        let moved = self.records_in_fill_half()?;
        let old_salt = self.seg.salt;
        let index = self.seg.index + 1;
        let first_seq = self.next_seq - moved;
        let seg = create_segment(
            &self.dir,
            &self.dir_file,
            &mut self.ring,
            &self.opts,
            &mut self.free,
            &self.stats,
            &self.salt_state,
            index,
            first_seq,
            self.fill_half ^ 1,
            sync_slots(&self.opts),
            false,
        );
        let seg = match seg {
            Ok(seg) => seg,
            // An operation that failed to finish may still name a descriptor of the
            // abandoned segment (kept open for it): nothing more may be queued behind it.
            Err(e) if self.ring.in_flight() > 0 => return self.poison(e),
            Err(e) => return Err(e),
        };
        self.seg = seg;
        self.live.push_back((index, first_seq));
        if moved > 0 {
            self.reframe_fill(old_salt)?;
        }
        Ok(())
    }

    /// Records framed in the fill half (0 when it is empty).
    fn records_in_fill_half(&self) -> Result<u64, JournalError> {
        if self.filled == 0 {
            return Ok(0);
        }
        let bytes = self.ring.pool_bytes(PoolRange::new(
            self.half_offset(self.fill_half),
            u32::try_from(self.filled).unwrap_or(0),
        ))?;
        Ok(self.records_in_fill(bytes))
    }

    /// Re-frames every record of the fill half with the current segment's salt (after a
    /// rotation moved them), checking each old frame first.
    fn reframe_fill(&mut self, old_salt: u64) -> Result<(), JournalError> {
        let base = self.half_offset(self.fill_half);
        let salt = self.seg.salt;
        let max = self.opts.max_record_bytes;
        let filled = self.filled;
        let bytes = self
            .ring
            .pool_bytes_mut(PoolRange::new(base, u32::try_from(filled).unwrap_or(0)))?;
        let mut at = 0usize;
        while at < filled {
            let rec = bytes
                .get(at..)
                .and_then(|b| check_record(b, old_salt, max, |_| true));
            let Some(rec) = rec else {
                return Err(JournalError::Corrupt {
                    segment: self.seg.path.clone(),
                    offset: self.seg.buf_file_off + at as u64,
                    reason: "a framed record failed its check before being moved to a new segment (memory corruption)",
                });
            };
            let frame = frame_bytes(rec.len as usize);
            let back = u32::try_from(rec.seq - rec.group_first).unwrap_or(u32::MAX);
            if let Some(dst) = bytes.get_mut(at..at + frame) {
                format::reframe_record(dst, salt, rec.seq, back);
            }
            at += frame;
        }
        Ok(())
    }

    /// Declares every record up to `seq` no longer needed: whole segments before the
    /// current one whose records are all `<= seq` are recycled (kept for reuse, up to
    /// [`JournalOptions::max_free_segments`], else deleted) and no longer replayed.
    /// Returns the number of segments released.
    ///
    /// # Errors
    /// I/O errors renaming segments or syncing the directory. Segments released before a
    /// failed rename stay released. When the directory sync fails, the segments this call
    /// renamed are not recycled while this journal is open (their new names may not be
    /// durable); the next [`Journal::open`] finds them as free segments.
    pub fn release_through(&mut self, seq: u64) -> Result<u32, JournalError> {
        let seq = seq.min(self.durable);
        let mut released = 0;
        let mut failed = None;
        let free_before = self.free.len();
        while self.live.len() > 1 {
            let (Some(&(index, _)), Some(&(_, next_first))) = (self.live.front(), self.live.get(1))
            else {
                break;
            };
            if next_first - 1 > seq {
                break;
            }
            let from = self.dir.join(scan::seg_name(index));
            let done = if self.free.len() < self.opts.max_free_segments as usize {
                let (free_index, to) = free_slot(&self.dir, &self.free, &self.unsynced_free, index);
                std::fs::rename(&from, &to)
                    .map(|()| self.free.push((free_index, to)))
                    .map_err(|source| JournalError::io(&from, "recycle a released segment", source))
            } else {
                std::fs::remove_file(&from)
                    .map_err(|source| JournalError::io(&from, "delete a released segment", source))
            };
            if let Err(e) = done {
                failed = Some(e);
                break;
            }
            self.live.pop_front();
            released += 1;
        }
        // Also when a later rename failed: the segments renamed before it are on the free
        // list, and a rotation writes a new header into one of them. If its rename were
        // not durable, a power loss after that header write would bring back `seg-N`
        // holding another segment's header, and the journal would no longer open.
        let synced = if released > 0 {
            fsync_dir(&self.dir_file, &self.dir)
        } else {
            Ok(())
        };
        if synced.is_err() {
            // The renames of this call may not be durable: never recycle these segments
            // (see `unsynced_free`). The segments deleted instead are no concern: one
            // that comes back after a power loss holds its old, released records.
            let start = free_before.min(self.free.len());
            self.unsynced_free.extend(self.free.drain(start..));
        }
        match failed {
            Some(e) => Err(e),
            None => synced.map(|()| released),
        }
    }
}

/// Creates `dir` and any missing parents, then fsyncs the parent of every directory it
/// created (outermost first), so that after a power loss the journal directory's entry
/// is not missing while records in it were acknowledged. (Entries inside `dir` are synced
/// as segments are created.) Returns the directories it synced.
fn create_dir_durably(dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let mut missing: Vec<&Path> = Vec::new();
    for a in dir.ancestors() {
        if a.as_os_str().is_empty() || std::fs::metadata(a).is_ok() {
            break;
        }
        missing.push(a);
    }
    std::fs::create_dir_all(dir).map_err(|source| {
        JournalError::from_io(dir, dir, "create the journal directory", source)
    })?;
    let mut synced = Vec::with_capacity(missing.len());
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(|source| {
                JournalError::io(
                    parent,
                    "fsync a directory after creating the journal directory in it",
                    source,
                )
            })?;
        synced.push(parent.to_path_buf());
    }
    Ok(synced)
}

/// The free name for a released or recycled segment numbered `index`: `free-<index>`,
/// unless a free segment already has that name (a spare prepared at open is numbered past
/// the live segments of the time, and the live numbering catches up with it while it
/// waits): then a number past every free segment's, including those held back in
/// `unsynced_free`, so that the rename never replaces (destroys) a free segment.
fn free_slot(
    dir: &Path,
    free: &[(u64, PathBuf)],
    unsynced_free: &[(u64, PathBuf)],
    index: u64,
) -> (u64, PathBuf) {
    let taken = || free.iter().chain(unsynced_free).map(|(f, _)| *f);
    let i = if taken().any(|f| f == index) {
        taken()
            .map(|f| f.saturating_add(1))
            .fold(index.saturating_add(1), u64::max)
    } else {
        index
    };
    (i, dir.join(scan::free_name(i)))
}

/// Removes segments whose creation was interrupted before their rename: files named
/// exactly as `create_segment` names them (`new-<16 lowercase hex digits>.tmp`), never
/// another file that happens to share the prefix and suffix.
fn remove_leftover_tmp(dir: &Path) {
    let is_leftover = |name: &str| {
        name.strip_prefix("new-")
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .is_some_and(|hex| {
                hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
    };
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_str().is_some_and(is_leftover) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn report_of(scan: &scan::Scan) -> ReplayReport {
    ReplayReport {
        segments: u32::try_from(scan.live.len()).unwrap_or(u32::MAX),
        records: scan.records,
        payload_bytes: scan.payload_bytes,
        first_seq: scan.first_seq.filter(|_| scan.records > 0),
        last_seq: scan.next_seq - 1,
        torn_tail: scan.torn.as_ref().map(|t| TornTail {
            segment: t.path.clone(),
            offset: t.offset,
            discarded_records: t.orphans,
        }),
    }
}

/// How many sync descriptors each segment gets (see [`Segment::sync_files`]).
fn sync_slots(opts: &JournalOptions) -> usize {
    if opts.commits_in_flight > 1 {
        opts.commits_in_flight as usize
    } else {
        0
    }
}

/// Opens `n` more file descriptions of segment `path`, one per pipelined commit slot
/// (see [`Segment::sync_files`]). Call before any record is written to the segment.
fn open_sync_files(path: &Path, n: usize) -> Result<Vec<File>, JournalError> {
    (0..n)
        .map(|_| {
            File::open(path).map_err(|source| {
                JournalError::io(
                    path,
                    "open a segment for commit syncs (one descriptor per commits_in_flight: raise `ulimit -n` or lower commits_in_flight)",
                    source,
                )
            })
        })
        .collect()
}

/// Waits until the ring has nothing in flight (after an error left operations queued or
/// running). Returns `false` if it could not get there.
fn settle_ring(ring: &mut Ring) -> bool {
    for _ in 0..10_000 {
        if ring.in_flight() == 0 {
            return true;
        }
        let _ = ring.submit_and_wait(1);
        let _ = ring.drain(|_| {});
    }
    ring.in_flight() == 0
}

/// After a failed io_uring operation on `file`: waits until no operation may still use its
/// descriptor, so that closing it cannot redirect a queued operation to whatever file
/// gets the same number next. If the ring cannot be settled, the descriptor is leaked
/// instead (kept open for good); the caller then sees operations still in flight and
/// poisons the journal.
fn release_after_error(ring: &mut Ring, file: File) {
    if !settle_ring(ring) {
        std::mem::forget(file);
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "internal helper shared by open and rotate"
)]
fn create_segment(
    dir: &Path,
    dir_file: &File,
    ring: &mut Ring,
    opts: &JournalOptions,
    free: &mut Vec<(u64, PathBuf)>,
    stats: &JournalStats,
    salt_state: &RandomState,
    index: u64,
    first_seq: u64,
    scratch_half: usize,
    sync_slots: usize,
    spare: bool,
) -> Result<Segment, JournalError> {
    // A spare goes straight to its free name: created as a live segment and renamed
    // afterwards, a crash between the renames left a live-looking segment past the end of
    // the log (past a gap, from the second spare on, and the journal no longer opened).
    let path = dir.join(if spare {
        scan::free_name(index)
    } else {
        scan::seg_name(index)
    });
    let mut hasher = salt_state.build_hasher();
    hasher.write_u64(index);
    hasher.write_u64(first_seq);
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let salt = hasher.finish() | 1;
    // Reuse a released segment of the right size if there is one.
    while let Some((free_index, from)) = free.pop() {
        let size_ok = std::fs::metadata(&from).is_ok_and(|m| m.len() == opts.segment_bytes);
        if !size_ok {
            let _ = std::fs::remove_file(&from);
            continue;
        }
        // Header first (under the free name), then rename: a crash leaves either a free
        // file or a complete segment.
        let recycled = (|| -> Result<Segment, JournalError> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&from)
                .map_err(|source| JournalError::io(&from, "open a free segment", source))?;
            write_header(dir, &file, &from, index, first_seq, salt, opts)?;
            let sync_files = open_sync_files(&from, sync_slots)?;
            std::fs::rename(&from, &path)
                .map_err(|source| JournalError::io(&from, "rename a recycled segment", source))?;
            fsync_dir(dir_file, dir).map_err(|e| remove_unsynced(&path, e))?;
            Ok(Segment {
                file,
                path: path.clone(),
                index,
                salt,
                buf_file_off: HEADER_BYTES,
                bytes: opts.segment_bytes,
                sync_files,
            })
        })();
        return match recycled {
            Ok(segment) => {
                stats.segments_recycled.incr();
                Ok(segment)
            }
            Err(e) => {
                // Still a free file (the rename did not happen): keep it for the next
                // rotation instead of forgetting it until the journal is reopened.
                if from.exists() {
                    free.push((free_index, from));
                }
                Err(e)
            }
        };
    }
    let tmp = dir.join(format!("new-{index:016x}.tmp"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|source| JournalError::from_io(dir, &tmp, "create a segment", source))?;
    let cleanup = |e: JournalError| {
        let _ = std::fs::remove_file(&tmp);
        e
    };
    if let Err(e) = fill_segment(ring, &file, opts, scratch_half) {
        release_after_error(ring, file);
        return Err(cleanup(match e {
            RingError::Op { op, errno } => JournalError::from_io(
                dir,
                &tmp,
                if op == "fallocate" {
                    "preallocate a segment (fallocate)"
                } else {
                    "pre-write a segment"
                },
                errno.to_io(),
            ),
            e => e.into(),
        }));
    }
    write_header(dir, &file, &tmp, index, first_seq, salt, opts).map_err(cleanup)?;
    let sync_files = open_sync_files(&tmp, sync_slots).map_err(cleanup)?;
    std::fs::rename(&tmp, &path)
        .map_err(|source| cleanup(JournalError::io(&tmp, "rename a new segment", source)))?;
    fsync_dir(dir_file, dir).map_err(|e| remove_unsynced(&path, e))?;
    stats.segments_created.incr();
    Ok(Segment {
        file,
        path,
        index,
        salt,
        buf_file_off: HEADER_BYTES,
        bytes: opts.segment_bytes,
        sync_files,
    })
}

/// Removes a segment that `create_segment` renamed into place but whose directory sync
/// failed, and returns `e`. Left there, it claimed to start at the first record of the
/// group being filled; a commit after the failed rotation writes that group to the old
/// segment, so at the next `open` the leftover, numbered before the end of the log, was
/// reported as a torn tail of a cleanly closed journal. (A power loss may still bring it
/// back: then it is the torn tail of a crash.)
fn remove_unsynced(path: &Path, e: JournalError) -> JournalError {
    let _ = std::fs::remove_file(path);
    e
}

/// Preallocates a new segment file and, with [`JournalOptions::prewrite`], writes zeros
/// over it (then syncs). Where the file system has no `fallocate`, it writes the zeros
/// whatever `prewrite` says.
fn fill_segment(
    ring: &mut Ring,
    file: &File,
    opts: &JournalOptions,
    scratch_half: usize,
) -> Result<(), RingError> {
    let t = Target::Fd(file.as_raw_fd());
    let op = ring.fallocate(t, 0, opts.segment_bytes, 0, 0)?;
    match ring.run(op, |_| {}) {
        Ok(_) => {}
        // A file system without `fallocate` (NFSv3, FUSE file systems that do not
        // implement it): writing zeros over the segment allocates its blocks instead, so
        // commits still never extend the file.
        Err(RingError::Op {
            errno: crate::Errno(libc::EOPNOTSUPP),
            ..
        }) => return prewrite(ring, t, opts, scratch_half),
        Err(e) => return Err(e),
    }
    if opts.prewrite {
        prewrite(ring, t, opts, scratch_half)?;
    }
    Ok(())
}

fn write_header(
    dir: &Path,
    file: &File,
    path: &Path,
    index: u64,
    first_seq: u64,
    salt: u64,
    opts: &JournalOptions,
) -> Result<(), JournalError> {
    let h = SegmentHeader {
        index,
        first_seq,
        salt,
        segment_bytes: opts.segment_bytes,
        max_record: opts.max_record_bytes,
    };
    let mut block = vec![0u8; usize::try_from(HEADER_BYTES).unwrap_or(4096)];
    if let Some(dst) = block.get_mut(..64) {
        dst.copy_from_slice(&h.encode());
    }
    file.write_all_at(&block, 0)
        .map_err(|source| JournalError::from_io(dir, path, "write a segment header", source))?;
    file.sync_all()
        .map_err(|source| JournalError::from_io(dir, path, "sync a segment header", source))
}

/// Writes zeros over the whole segment with fixed writes from the (zeroed) second half
/// of the pool, then syncs. On an error, writes may still be queued or running: the
/// caller must settle the ring before closing the file ([`release_after_error`]).
fn prewrite(
    ring: &mut Ring,
    t: Target,
    opts: &JournalOptions,
    scratch_half: usize,
) -> Result<(), RingError> {
    const DEPTH: usize = 32;
    let chunk = opts.group_buffer_bytes;
    // The half that is not filling (idle: rotation waits for commits first); the fill half
    // may hold records that move to the new segment.
    let range_off = chunk * (scratch_half & 1);
    ring.pool_bytes_mut(PoolRange::new(range_off, u32::try_from(chunk).unwrap_or(0)))?
        .fill(0);
    let mut off = 0u64;
    // The writes in flight. A completion counts only if it is one of them, so a stray
    // completion cannot upset the count (which is never kept separately).
    let mut ours = [None::<OpId>; DEPTH];
    let mut out = [crate::ring::Completion::default(); DEPTH];
    let mut first_err = None;
    while off < opts.segment_bytes || ours.iter().any(Option::is_some) {
        while off < opts.segment_bytes {
            let Some(free) = ours.iter_mut().find(|o| o.is_none()) else {
                break;
            };
            let len = u32::try_from((opts.segment_bytes - off).min(chunk as u64)).unwrap_or(0);
            *free = Some(ring.write_fixed(t, PoolRange::new(range_off, len), off, 0)?);
            off += u64::from(len);
        }
        ring.submit_and_wait(1)?;
        let n = ring.reap(&mut out)?;
        for c in out.iter().take(n) {
            if let Some(mine) = ours.iter_mut().find(|o| **o == Some(c.op)) {
                *mine = None;
                if let Err(errno) = c.result() {
                    first_err.get_or_insert(RingError::Op { op: "write", errno });
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let op = ring.sync(t, true, 0)?;
    ring.run(op, |_| {}).map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "test code"
    )]

    use std::collections::VecDeque;

    use super::*;

    fn commit(last_seq: u64, result: Option<Result<(), crate::Errno>>) -> InFlight {
        let mut f = InFlight::new(OpId::default(), None, last_seq, 0);
        f.result = result;
        f
    }

    const OK: Option<Result<(), crate::Errno>> = Some(Ok(()));
    const EIO: Option<Result<(), crate::Errno>> = Some(Err(crate::Errno(libc::EIO)));

    /// An I/O error's advice does not send the user straight back to `open`: after a
    /// failed writeback the kernel can keep the unwritten data in its cache and report
    /// the error only once, so a reopen in the same boot could read back, sync "fine" and
    /// build on records that are not on the disk.
    #[test]
    fn the_eio_advice_warns_against_reopening_at_once() {
        let e = JournalError::io(
            Path::new("/j/seg-0000000000000000.tjl"),
            "fdatasync a commit group",
            io::Error::from_raw_os_error(libc::EIO),
        )
        .to_string();
        assert!(e.contains("dmesg") && e.contains("reboot"), "{e}");
        assert!(!e.contains("then reopen the journal to recover"), "{e}");
    }

    #[test]
    fn commits_are_published_in_order_and_never_past_a_failure() {
        // A later flush finished first: nothing is published until the earlier one is.
        let mut q: VecDeque<InFlight> = [commit(10, None), commit(20, OK)].into();
        let mut durable = 5;
        assert_eq!(publish_in_order(&mut q, &mut durable), Ok(()));
        assert_eq!((durable, q.len()), (5, 2));
        q[0].result = OK;
        assert_eq!(publish_in_order(&mut q, &mut durable), Ok(()));
        assert_eq!((durable, q.len()), (20, 0));

        // An earlier flush fails after a later one succeeded: the failure is reported and
        // nothing after it is published (only what finished before it).
        let mut q: VecDeque<InFlight> = [commit(30, OK), commit(40, EIO), commit(50, OK)].into();
        assert_eq!(
            publish_in_order(&mut q, &mut durable),
            Err(crate::Errno(libc::EIO))
        );
        assert_eq!(durable, 30);

        // A later flush fails while an earlier one is still running: reported at once,
        // nothing published.
        let mut q: VecDeque<InFlight> = [commit(60, None), commit(70, EIO)].into();
        assert_eq!(
            publish_in_order(&mut q, &mut durable),
            Err(crate::Errno(libc::EIO))
        );
        assert_eq!(durable, 30);
    }

    /// Small segments and groups, no pre-writing, `in_flight` commits at a time.
    fn small_opts(in_flight: u32) -> JournalOptions {
        JournalOptions::new()
            .segment_bytes(1 << 20)
            .group_buffer_bytes(16 << 10)
            .max_record_bytes(1024)
            .prewrite(false)
            .commits_in_flight(in_flight)
    }

    fn open_or_skip(dir: &Path, opts: JournalOptions) -> Option<Journal> {
        match Journal::open(dir, opts) {
            Ok(j) => Some(j),
            Err(JournalError::Ring(e @ RingError::Setup { .. }))
                if std::env::var_os("CI").is_none() =>
            {
                eprintln!("skipping: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// A pipelined flush that fails (its slot's descriptor is swapped for `/dev/null`,
    /// which has no `fsync`: EINVAL) poisons the journal, and no later group is
    /// acknowledged, even one whose own flush succeeds.
    #[test]
    fn a_failed_pipelined_sync_poisons_and_acknowledges_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let Some(mut j) = open_or_skip(dir.path(), small_opts(4)) else {
            return;
        };
        assert_eq!(j.seg.sync_files.len(), 4);
        // The first commit takes slot 0 (the lowest free one).
        j.seg.sync_files[0] = File::open("/dev/null").unwrap();
        assert_eq!(j.append(b"one").unwrap(), 1);
        let first = j.start_commit();
        // The failure may already have been reaped (then the journal is poisoned); if
        // not, a second group goes to slot 1, a real descriptor, and its flush succeeds.
        let second = j.append(b"two").and_then(|_| j.start_commit());
        let waited = j.wait_durable(1);
        assert!(
            first.is_err() || second.is_err() || waited.is_err(),
            "the failed flush was never reported"
        );
        assert_eq!(
            j.durable_seq(),
            0,
            "a group was acknowledged past a failed flush"
        );
        // Waiting for what is still queued reports the failure again (it never waits for
        // a completion that will not come).
        assert!(j.wait_commit().is_err());
        assert!(j.poll_commits().is_err());
        assert_eq!(j.durable_seq(), 0);
        match j.commit() {
            Err(JournalError::Poisoned { durable: 0, reason }) => {
                assert!(reason.contains("fdatasync"), "{reason}");
            }
            other => panic!("expected a poisoned journal, got {other:?}"),
        }
    }

    /// A transient `EAGAIN` from `io_uring_enter` (no request memory) while a group is
    /// committed through io_uring, with one commit in flight (`direct_commit(false)`) and
    /// pipelined, is retried by the ring: the journal is not poisoned, and the records
    /// are durable and replay.
    #[test]
    fn eagain_from_io_uring_enter_does_not_poison_the_journal() {
        for in_flight in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let opts = small_opts(in_flight).direct_commit(false);
            let Some(mut j) = open_or_skip(dir.path(), opts) else {
                return;
            };
            for round in 0..4u64 {
                j.append(&round.to_le_bytes()).unwrap();
                j.ring.inject_enter_errors(&[libc::EAGAIN; 2]);
                assert_eq!(j.commit().unwrap(), round + 1, "in flight {in_flight}");
            }
            assert_eq!(j.ring.stats().enter_retries(), 8);
            drop(j);
            let mut seen = Vec::new();
            let report =
                Journal::replay(dir.path(), |seq, rec| seen.push((seq, rec.to_vec()))).unwrap();
            assert_eq!(report.records, 4);
            assert_eq!(seen.last().unwrap(), &(4, 3u64.to_le_bytes().to_vec()));
        }
    }

    #[test]
    fn pipelined_commits_sync_on_their_own_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let opts = JournalOptions::new()
            .segment_bytes(64 << 10)
            .group_buffer_bytes(16 << 10)
            .max_record_bytes(1024)
            .prewrite(false);
        let Some(j) = open_or_skip(dir.path(), opts.commits_in_flight(3)) else {
            return;
        };
        assert_eq!(j.seg.sync_files.len(), 3);
        drop(j);
        // Blocking commits need none.
        let j = open_or_skip(dir.path(), opts).unwrap();
        assert!(j.seg.sync_files.is_empty());
        drop(j);
        // Every new segment gets its own (rotation).
        let mut j = open_or_skip(dir.path(), opts.commits_in_flight(2)).unwrap();
        assert_eq!(j.seg.sync_files.len(), 2);
        let first = j.seg.index;
        while j.seg.index == first {
            j.append(&[7u8; 1000]).unwrap();
            j.start_commit().unwrap();
        }
        assert_eq!(j.seg.sync_files.len(), 2);
        let last = j.next_seq() - 1;
        assert_eq!(j.wait_durable(last).unwrap(), last);
    }

    #[test]
    fn group_buffers_are_limited_to_what_the_kernel_registers() {
        assert!(
            JournalOptions::new()
                .group_buffer_bytes(512 << 20)
                .validate()
                .is_ok()
        );
        let e = JournalOptions::new()
            .group_buffer_bytes(1 << 30)
            .validate()
            .unwrap_err();
        assert!(
            matches!(e, JournalError::InvalidOptions { .. }) && e.to_string().contains("512 MiB"),
            "{e}"
        );
    }

    #[test]
    fn new_directories_are_made_durable_in_their_parents() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a").join("b").join("journal");
        let synced = create_dir_durably(&dir).unwrap();
        assert!(dir.is_dir());
        assert_eq!(
            synced,
            [
                base.path().to_path_buf(),
                base.path().join("a"),
                base.path().join("a").join("b"),
            ]
        );
        // Nothing new, nothing to sync.
        assert!(create_dir_durably(&dir).unwrap().is_empty());
    }

    /// After an error, operations still queued on a segment's descriptor are finished
    /// before the descriptor can be closed.
    #[test]
    fn an_abandoned_segment_is_closed_only_when_no_operation_names_it() {
        let mut ring = match Ring::new(RingOptions::new(8).mode(TaskrunMode::CoopTaskrun)) {
            Ok(r) => r,
            Err(e @ RingError::Setup { .. }) if std::env::var_os("CI").is_none() => {
                eprintln!("skipping: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        ring.register_frame_pool(
            FramePool::new(FramePoolOptions::new(4096, 1).populate(true)).unwrap(),
        )
        .unwrap();
        let file = tempfile::tempfile().unwrap();
        let check = file.try_clone().unwrap();
        for i in 0..4u64 {
            // Queued, not submitted: as a failed submit leaves them.
            ring.write_fixed(Target::from(&file), PoolRange::new(0, 4096), i * 4096, 0)
                .unwrap();
        }
        assert_eq!(ring.in_flight(), 4);
        release_after_error(&mut ring, file);
        assert_eq!(ring.in_flight(), 0);
        assert_eq!(check.metadata().unwrap().len(), 4 * 4096);
    }
}
