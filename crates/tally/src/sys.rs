//! The few raw system calls the binary needs (all `unsafe` lives here).

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs a SIGINT (Ctrl-C) handler that sets a flag; the pipeline polls
/// [`interrupted`], stops sending, drains, and removes its namespaces on the way out.
/// A second Ctrl-C while draining is also just recorded.
pub fn install_sigint_handler() {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: `sigaction` with a zeroed struct, an empty mask and a handler that only
    // stores to an atomic (async-signal-safe); the old action is not needed.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as libc::sighandler_t;
        libc::sigemptyset(&raw mut sa.sa_mask);
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGINT, &raw const sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &raw const sa, std::ptr::null_mut());
    }
}

/// Whether Ctrl-C (or SIGTERM) was received.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `RLIMIT_MEMLOCK` (soft, hard) in bytes (`u64::MAX` = unlimited).
pub fn memlock_limit() -> Option<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `r`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut r) };
    (rc == 0).then_some((r.rlim_cur, r.rlim_max))
}

/// Tries to create an AF_XDP socket: `Ok(())` when the kernel has AF_XDP and we may use it.
///
/// # Errors
/// The OS error (`EAFNOSUPPORT`: no AF_XDP in the kernel; `EPERM`: needs CAP_NET_RAW).
pub fn try_af_xdp_socket() -> std::io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor we own and close exactly once.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Asks for a receive buffer of `bytes` on a UDP socket (`SO_RCVBUFFORCE` as root, else
/// `SO_RCVBUF`, which the kernel caps at `net.core.rmem_max`), so that bursts that arrive
/// while the receiver is in `fdatasync` are queued instead of dropped.
pub fn set_rcvbuf(sock: &std::net::UdpSocket, bytes: i32) {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on a valid descriptor with a pointer to a live i32 and its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&raw const bytes).cast(),
                u32::try_from(std::mem::size_of::<i32>()).unwrap_or(4),
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// A veth pair in two new namespaces for a test (removed when dropped), or `None` with
/// the reason printed when not root; on CI (`CI` set), which runs as root, not being
/// root fails the test instead.
#[cfg(test)]
pub fn veth_or_skip(
    test: &str,
    config: tally_bypass::netns::VethConfig,
) -> Option<tally_bypass::netns::VethPair> {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: CI runs the tests as root"
        );
        eprintln!("SKIP {test}: not root (network namespaces)");
        return None;
    }
    Some(
        tally_bypass::netns::VethPair::new(test, config)
            .unwrap_or_else(|e| panic!("{test}: veth setup failed as root: {e}")),
    )
}

/// Signals for tests: a no-op `SIGUSR1` handler installed like the `SIGINT` one
/// (`SA_RESTART`), and a way to direct it at one thread.
#[cfg(test)]
pub mod test_signal {
    extern "C" fn noop(_sig: libc::c_int) {}

    /// Installs the no-op `SIGUSR1` handler.
    pub fn install() {
        let handler: extern "C" fn(libc::c_int) = noop;
        // SAFETY: as in `install_sigint_handler`; the handler does nothing.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as libc::sighandler_t;
            libc::sigemptyset(&raw mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGUSR1, &raw const sa, std::ptr::null_mut());
        }
    }

    /// The calling thread's kernel thread id.
    pub fn tid() -> libc::pid_t {
        // SAFETY: gettid has no preconditions and cannot fail.
        unsafe { libc::gettid() }
    }

    /// Sends `SIGUSR1` to thread `tid` of this process.
    pub fn interrupt(tid: libc::pid_t) {
        // SAFETY: tgkill with this process's id, a thread id and a signal whose handler
        // `install` set; no memory is passed.
        unsafe {
            libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1);
        }
    }
}
