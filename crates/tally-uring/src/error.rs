//! Error types: [`RingError`] for the io_uring engine, [`Errno`] for a failed operation.
//!
//! Journal errors live in [`crate::journal::JournalError`].

use std::fmt;
use std::io;

/// A negative `errno` returned by the kernel in a completion.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The equivalent `std::io::Error`.
    pub fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, self.to_io())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_io(), f)
    }
}

impl std::error::Error for Errno {}

/// Errors from [`crate::Ring`].
///
/// Each message says what went wrong and what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// `io_uring_setup` was refused.
    #[error("io_uring setup failed: {source}; {hint}")]
    Setup {
        /// The OS error.
        #[source]
        source: io::Error,
        /// Why this usually happens and what to do about it.
        hint: &'static str,
    },
    /// The options contradict each other or the kernel's limits.
    #[error("invalid ring options: {reason}; fix the value named and retry")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
    /// Registering buffers, files or a provided-buffer ring failed.
    #[error("registering {what} with io_uring failed: {source}; {hint}")]
    Register {
        /// What was being registered.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// `io_uring_enter` failed.
    #[error("io_uring_enter failed: {source}; {}", enter_hint(.source.raw_os_error()))]
    Enter {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Every in-flight slot is taken.
    #[error(
        "all {capacity} in-flight slots are taken: reap completions before queueing more, or build the ring with a larger max_in_flight"
    )]
    InFlightFull {
        /// The slab capacity.
        capacity: u32,
    },
    /// The kernel dropped completions (only possible without `IORING_FEAT_NODROP`).
    #[error(
        "the kernel dropped {dropped} completions because the completion queue overflowed: build the ring with more cq_entries or reap more often"
    )]
    CompletionsLost {
        /// Number of completions the kernel reports as dropped.
        dropped: u32,
    },
    /// The opcode is not supported by this kernel.
    #[error(
        "the kernel does not support io_uring operation {op}: upgrade the kernel or avoid this operation"
    )]
    Unsupported {
        /// Operation name.
        op: &'static str,
    },
    /// No frame pool is registered with the ring.
    #[error("no frame pool is registered: call Ring::register_frame_pool first")]
    NoFramePool,
    /// A frame range outside the registered pool.
    #[error(
        "pool range {offset}+{len} lies outside the registered pool of {pool_len} bytes: use a range with offset + len <= {pool_len}"
    )]
    RangeOutOfPool {
        /// Start offset in the pool.
        offset: usize,
        /// Length in bytes.
        len: usize,
        /// Pool size in bytes.
        pool_len: usize,
    },
    /// The frame is being used by an operation in flight.
    #[error(
        "frame {frame} is used by an operation in flight: wait for its completion before touching it"
    )]
    FrameInFlight {
        /// Frame index.
        frame: u32,
    },
    /// A frame pool error.
    #[error(transparent)]
    Pool(#[from] tally_core_types::CoreError),
    /// No provided-buffer ring is set up.
    #[error("no provided-buffer ring is set up: call Ring::setup_provided_buffers first")]
    NoProvidedBuffers,
    /// The provided buffer id is not one the kernel handed back.
    #[error(
        "provided buffer {bid} is not owned by the application (not delivered by a completion, or already recycled): read and recycle only buffer ids a completion delivered, once each"
    )]
    BufferNotDelivered {
        /// The buffer id.
        bid: u16,
    },
    /// A registered file index out of range.
    #[error(
        "registered file index {index} is out of range: {registered} files are registered; use an index below {registered} or register more files"
    )]
    FileIndex {
        /// The index asked for.
        index: u32,
        /// Number of registered files.
        registered: u32,
    },
    /// A synchronous call needs the ring to have nothing in flight.
    #[error("the ring has {in_flight} operations in flight: reap them before a synchronous call")]
    Busy {
        /// Operations in flight.
        in_flight: u32,
    },
    /// An operation completed with an error.
    #[error("io_uring {op} failed: {errno}; {}", op_hint(.errno.0))]
    Op {
        /// Operation name.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
    /// A wait for an operation that is not in flight on this ring (its final completion
    /// was already consumed, or the id belongs to another ring): nothing would ever
    /// complete it.
    #[error(
        "operation {user_data:#x} is not in flight on this ring (its final completion was already reaped, or it was never queued here): wait only for operations whose final completion you have not consumed"
    )]
    NotInFlight {
        /// The operation's `user_data`.
        user_data: u64,
    },
    /// An [`crate::OpId`] passed to a ring other than the one that issued it: its
    /// `user_data` could name an unrelated operation of this ring.
    #[error(
        "operation {user_data:#x} was issued by ring #{issuer}, not by this ring (#{ring}): pass an OpId only to the Ring whose method returned it"
    )]
    ForeignOp {
        /// The operation's `user_data`.
        user_data: u64,
        /// Number of the ring that issued it.
        issuer: u16,
        /// Number of the ring it was passed to.
        ring: u16,
    },
    /// Every ring number is taken: this many rings are alive in the process.
    #[error(
        "{limit} rings are already alive in this process: drop rings you no longer use, or share one ring between more operations"
    )]
    TooManyRings {
        /// The number of rings that may be alive at once.
        limit: u32,
    },
    /// A wait for any completion with no operation in flight: nothing would ever complete.
    #[error(
        "no operation is in flight, so no completion can arrive: queue an operation before waiting"
    )]
    NothingInFlight,
    /// A call that submits and waits was made from another thread than the one that built
    /// a [`crate::TaskrunMode::DeferTaskrun`] ring (the kernel answers `EEXIST`).
    #[error(
        "this ring was built with TaskrunMode::DeferTaskrun (SINGLE_ISSUER) and can only submit and wait on the thread that created it: call it from that thread, or build the ring with TaskrunMode::CoopTaskrun to move it between threads"
    )]
    WrongThread,
    /// A file offset above `i64::MAX`: the kernel reads `u64::MAX` as "the current file
    /// position" and refuses the others.
    #[error(
        "file offset {offset} is above i64::MAX (the kernel reads u64::MAX as the current file position): check the offset arithmetic for wrap-around"
    )]
    OffsetTooLarge {
        /// The offset asked for.
        offset: u64,
    },
    /// A length does not fit the kernel's 32-bit length field.
    #[error("length {len} does not fit io_uring's 32-bit length field: split the operation")]
    TooLong {
        /// The length asked for.
        len: usize,
    },
}

/// What to do about an `io_uring_enter` failure.
fn enter_hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::EEXIST) => {
            "a ring set up with SINGLE_ISSUER (TaskrunMode::DeferTaskrun) was used from another thread than the one that created it: use it from that thread or build it with TaskrunMode::CoopTaskrun"
        }
        Some(libc::EBUSY) => {
            "the completion queue is full: reap completions (Ring::drain or Ring::reap), then submit again"
        }
        Some(libc::EAGAIN | libc::ENOMEM) => {
            "the kernel could not allocate requests (EAGAIN is retried 64 times first): reap completions and retry, or keep fewer operations in flight"
        }
        Some(libc::EBADR) => {
            "the kernel dropped completions after a completion-queue overflow: rebuild the ring with more cq_entries"
        }
        Some(libc::EOWNERDEAD) => "the SQPOLL thread has exited: rebuild the ring",
        Some(libc::EPERM | libc::EACCES) => {
            "a seccomp filter or LSM denies io_uring_enter: allow it in the profile"
        }
        _ => "the ring is unusable: drop it and build a new one; check the kernel log",
    }
}

/// What to do about a failed operation, by its errno.
fn op_hint(errno: i32) -> &'static str {
    match errno {
        libc::EBADF => {
            "the descriptor is closed or not open for this operation (a write on a read-only file?): pass a descriptor opened for it"
        }
        libc::ENOSPC | libc::EDQUOT => "the file system or quota is full: free space and retry",
        libc::EIO => "the device reported an I/O error: check the kernel log and the disk",
        libc::ECANCELED => {
            "the operation was cancelled (Ring::cancel, a failed linked operation, or the ring's drop): retry it if it is still wanted"
        }
        libc::EINVAL => {
            "the kernel rejected the arguments: check offsets, lengths and alignment (O_DIRECT) and the file's open flags"
        }
        libc::EAGAIN => "the file or socket would block: retry later",
        libc::EFAULT => "the buffer address is not mapped: pass memory that stays valid",
        libc::ETIME => "the timeout expired: nothing to do unless it was not expected",
        libc::ENOBUFS => {
            "the provided-buffer ring ran out of buffers: recycle delivered buffers sooner or set up more, then re-arm the receive"
        }
        libc::EOPNOTSUPP | libc::ESPIPE | libc::ENODEV => {
            "the file does not support this operation: use another operation or file type"
        }
        libc::EFBIG => "the offset or length passes the file size limit: use a smaller offset",
        _ => "the operation did not complete: see the error and retry or give up on it",
    }
}

/// What a registration is for, to explain its errors.
#[derive(Clone, Copy)]
pub(crate) enum Registration {
    Buffers,
    Files,
    BufRing,
}

/// Explains a registration errno in words a user can act on.
pub(crate) fn register_hint(what: Registration, errno: i32) -> &'static str {
    match (what, errno) {
        (Registration::Buffers, libc::ENOMEM) => {
            "registered buffers are pinned and count against RLIMIT_MEMLOCK (unless the process has CAP_IPC_LOCK): raise `ulimit -l` (LimitMEMLOCK= for a systemd service) or register a smaller pool"
        }
        (Registration::Buffers, libc::EINVAL | libc::EOVERFLOW) => {
            "a registered buffer must be at most 1 GiB: register a smaller pool"
        }
        (Registration::Buffers, libc::EFAULT) => {
            "the pool's pages could not be pinned: use an anonymous FramePool mapping"
        }
        (Registration::BufRing, libc::ENOMEM) => {
            "the buffer ring counts against RLIMIT_MEMLOCK: raise `ulimit -l` or use fewer buffers"
        }
        (Registration::BufRing, libc::EEXIST) => {
            "this buffer group id is already used on the ring: pick another group id"
        }
        (Registration::BufRing, libc::EINVAL) => {
            "provided-buffer rings need Linux 5.19 and a power-of-two count of at most 32768: upgrade the kernel or fix the count"
        }
        (Registration::Files, libc::EBADF) => {
            "every descriptor passed must be open: pass open descriptors"
        }
        (Registration::Files, libc::EMFILE | libc::ENFILE) => {
            "more descriptors than RLIMIT_NOFILE allows: raise `ulimit -n` or register fewer files"
        }
        (Registration::Files, libc::EINVAL) => {
            "pass between 1 and RLIMIT_NOFILE descriptors (an empty list is refused)"
        }
        (_, libc::EBUSY) => "this ring already has such a registration: register once per ring",
        (_, libc::EPERM | libc::EACCES) => {
            "a seccomp filter or LSM denies io_uring_register: allow it in the profile"
        }
        (_, libc::ENOMEM) => "the kernel is out of memory for the registration: register less",
        _ => {
            "check the sizes passed and the kernel version (registered buffers and files need 5.1, buffer rings 5.19)"
        }
    }
}

/// Explains a setup errno in words a user can act on.
pub(crate) fn setup_hint(errno: i32, io_uring_disabled: Option<u8>) -> &'static str {
    match (errno, io_uring_disabled) {
        (libc::EPERM, Some(2)) => {
            "io_uring is disabled system-wide (/proc/sys/kernel/io_uring_disabled = 2): set it to 0 to allow io_uring"
        }
        (libc::EPERM, Some(1)) => {
            "io_uring is limited to privileged processes (/proc/sys/kernel/io_uring_disabled = 1): run with CAP_SYS_ADMIN, join kernel.io_uring_group, or set the sysctl to 0"
        }
        (libc::EPERM | libc::EACCES, _) => {
            "a seccomp filter or LSM denies io_uring (container runtimes such as Docker's default profile do): allow io_uring_setup/enter/register in the profile"
        }
        (libc::ENOSYS, _) => {
            "the kernel has no io_uring (CONFIG_IO_URING=n) or a seccomp filter answers ENOSYS: use a kernel with io_uring or relax the filter"
        }
        (libc::EINVAL, _) => {
            "the kernel rejected the setup flags or sizes: SINGLE_ISSUER/DEFER_TASKRUN need Linux 6.1, COOP_TASKRUN 5.19; use TaskrunMode::Plain or smaller queue sizes"
        }
        (libc::ENOMEM, _) => {
            "not enough memory for the ring (before Linux 5.12 rings count against RLIMIT_MEMLOCK: raise `ulimit -l`): use smaller sq/cq sizes or free memory"
        }
        (libc::EMFILE | libc::ENFILE, _) => "out of file descriptors: raise `ulimit -n`",
        _ => {
            "check the kernel version (io_uring needs 5.10+; these options 6.1+) and any seccomp filter"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant's message, for every errno its hint is keyed on, ends in something
    /// to do: it has a clause after a ':' or ';' that starts with an imperative verb.
    #[test]
    #[allow(clippy::too_many_lines, reason = "one list of every variant and errno")]
    fn every_message_says_what_to_do() {
        const VERBS: &[&str] = &[
            "use",
            "raise",
            "reap",
            "call",
            "wait",
            "build",
            "rebuild",
            "register",
            "pass",
            "pick",
            "check",
            "allow",
            "split",
            "queue",
            "retry",
            "free",
            "read",
            "drop",
            "upgrade",
            "avoid",
            "set",
            "run",
            "recycle",
            "nothing to do",
            "see",
            "fix",
        ];
        let says_what_to_do = |msg: &str| {
            msg.split([':', ';', '('])
                .skip(1)
                .any(|clause| VERBS.iter().any(|v| clause.trim_start().starts_with(v)))
        };
        let errnos = [
            0,
            libc::EPERM,
            libc::EACCES,
            libc::ENOSYS,
            libc::EINVAL,
            libc::ENOMEM,
            libc::EMFILE,
            libc::ENFILE,
            libc::EEXIST,
            libc::EBUSY,
            libc::EAGAIN,
            libc::EBADR,
            libc::EOWNERDEAD,
            libc::EBADF,
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EIO,
            libc::ECANCELED,
            libc::EFAULT,
            libc::ETIME,
            libc::ENOBUFS,
            libc::EOPNOTSUPP,
            libc::ESPIPE,
            libc::EFBIG,
            libc::EOVERFLOW,
        ];
        let mut all = vec![
            RingError::InvalidOptions {
                reason: "sq_entries must be a power of two in 1..=32768",
            },
            RingError::InFlightFull { capacity: 4 },
            RingError::CompletionsLost { dropped: 1 },
            RingError::Unsupported { op: "send_zc" },
            RingError::NoFramePool,
            RingError::RangeOutOfPool {
                offset: 1,
                len: 2,
                pool_len: 2,
            },
            RingError::FrameInFlight { frame: 0 },
            RingError::NoProvidedBuffers,
            RingError::BufferNotDelivered { bid: 3 },
            RingError::FileIndex {
                index: 1,
                registered: 1,
            },
            RingError::Busy { in_flight: 1 },
            RingError::NotInFlight { user_data: 7 },
            RingError::ForeignOp {
                user_data: 7,
                issuer: 1,
                ring: 2,
            },
            RingError::TooManyRings { limit: 1023 },
            RingError::NothingInFlight,
            RingError::WrongThread,
            RingError::OffsetTooLarge { offset: u64::MAX },
            RingError::TooLong { len: usize::MAX },
            RingError::Pool(
                tally_core_types::FramePool::new(tally_core_types::FramePoolOptions::new(3, 1))
                    .err()
                    .unwrap(),
            ),
        ];
        for e in errnos {
            let io = || io::Error::from_raw_os_error(e);
            for disabled in [None, Some(0), Some(1), Some(2)] {
                all.push(RingError::Setup {
                    source: io(),
                    hint: setup_hint(e, disabled),
                });
            }
            for what in [
                Registration::Buffers,
                Registration::Files,
                Registration::BufRing,
            ] {
                all.push(RingError::Register {
                    what: "x",
                    source: io(),
                    hint: register_hint(what, e),
                });
            }
            all.push(RingError::Enter { source: io() });
            all.push(RingError::Op {
                op: "read",
                errno: Errno(e),
            });
        }
        for e in &all {
            let msg = e.to_string();
            assert!(says_what_to_do(&msg), "no remedy in: {msg}");
        }
        // Keyed hints name the cause.
        assert!(register_hint(Registration::Buffers, libc::ENOMEM).contains("RLIMIT_MEMLOCK"));
        assert!(
            RingError::Enter {
                source: io::Error::from_raw_os_error(libc::EEXIST)
            }
            .to_string()
            .contains("SINGLE_ISSUER")
        );
    }

    #[test]
    fn hints_name_the_cause() {
        assert!(setup_hint(libc::EPERM, Some(2)).contains("io_uring_disabled = 2"));
        assert!(setup_hint(libc::EPERM, Some(1)).contains("CAP_SYS_ADMIN"));
        assert!(setup_hint(libc::EPERM, Some(0)).contains("seccomp"));
        assert!(setup_hint(libc::ENOSYS, None).contains("CONFIG_IO_URING"));
        assert!(setup_hint(libc::EINVAL, Some(0)).contains("6.1"));
        assert_eq!(
            Errno(libc::ENOSPC).to_io().kind(),
            io::ErrorKind::StorageFull
        );
    }
}
