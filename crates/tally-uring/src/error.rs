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
    #[error("invalid ring options: {reason}")]
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
    #[error(
        "io_uring_enter failed: {source}; if this is EEXIST, a ring set up with SINGLE_ISSUER was used from another thread than the one that created it"
    )]
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
    #[error("pool range {offset}+{len} lies outside the registered pool of {pool_len} bytes")]
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
        "provided buffer {bid} is not owned by the application (not delivered by a completion, or already recycled)"
    )]
    BufferNotDelivered {
        /// The buffer id.
        bid: u16,
    },
    /// A registered file index out of range.
    #[error("registered file index {index} is out of range: {registered} files are registered")]
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
    #[error("io_uring {op} failed: {errno}")]
    Op {
        /// Operation name.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
    /// A length does not fit the kernel's 32-bit length field.
    #[error("length {len} does not fit io_uring's 32-bit length field: split the operation")]
    TooLong {
        /// The length asked for.
        len: usize,
    },
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
            "not enough locked memory for the ring: raise RLIMIT_MEMLOCK (`ulimit -l`) or use smaller sq/cq sizes"
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
