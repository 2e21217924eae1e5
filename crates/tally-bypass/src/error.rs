//! [`BypassError`], the error type of this crate.

use std::io;

/// Errors from opening and driving a kernel-bypass transport.
///
/// Each message says what failed and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BypassError {
    /// A `bpf(2)` call failed; the message's hint depends on the errno.
    #[error("{op} failed: {source}; {}", bpf_hint(.source))]
    Bpf {
        /// The bpf command.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The verifier rejected the XDP program; `log` is its explanation. This is a fault in
    /// the program (or a kernel too old for it), never a permissions problem.
    #[error(
        "the BPF verifier rejected the XDP program ({source}): the program is wrong for this kernel, not a permissions problem; use fewer filter ports or a newer kernel, or report the log below as a bug; verifier log:\n{log}"
    )]
    Verifier {
        /// The OS error (usually EACCES or EINVAL).
        #[source]
        source: io::Error,
        /// The verifier log.
        log: String,
    },
    /// The program is too large for 16-bit jump offsets.
    #[error("XDP program of {insns} instructions is too large: use fewer filter ports")]
    ProgramTooLarge {
        /// Instructions.
        insns: usize,
    },
    /// `BPF_LINK_CREATE` refused to attach the XDP program.
    #[error(
        "attaching the XDP program to interface index {ifindex} in {mode} mode failed: {source}; EBUSY means another XDP program is attached (remove it with `ip link set dev IF xdp off`)"
    )]
    Attach {
        /// The mode(s) tried.
        mode: &'static str,
        /// The interface.
        ifindex: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The interface does not exist in this network namespace.
    #[error(
        "network interface {name:?} not found: {source}; check `ip link` in the namespace you run in"
    )]
    Interface {
        /// The name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A socket call failed; the message's hint depends on the errno.
    #[error("{op} failed: {source}; {}", socket_hint(.source))]
    Socket {
        /// The call (for example `socket(AF_XDP)`).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `XDP_UMEM_REG` failed, usually because the UMEM is larger than `RLIMIT_MEMLOCK`
    /// allows.
    #[error(
        "registering a {bytes}-byte UMEM (XDP_UMEM_REG) failed: {source}; run with CAP_IPC_LOCK (root has it), raise RLIMIT_MEMLOCK (`ulimit -l`), or use fewer/smaller frames"
    )]
    UmemRegister {
        /// UMEM size.
        bytes: usize,
        /// The OS error (ENOBUFS or ENOMEM when over the memlock limit).
        #[source]
        source: io::Error,
    },
    /// Mapping a kernel ring failed; the message's hint depends on the error.
    #[error("mapping the {ring} ring failed: {source}; {}", ring_map_hint(.source))]
    RingMap {
        /// Which ring.
        ring: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `bind(AF_XDP)` failed.
    #[error(
        "binding the AF_XDP socket to {ifname} queue {queue} ({mode}) failed after {attempts} attempt(s): {source}; EBUSY means another socket holds the queue (or is still closing), EINVAL that the queue does not exist"
    )]
    Bind {
        /// Interface name.
        ifname: String,
        /// Queue id.
        queue: u32,
        /// The bind mode tried last.
        mode: &'static str,
        /// Attempts made (EBUSY is retried with a bounded backoff).
        attempts: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An option is out of range.
    #[error("invalid option: {what} = {value}; change it to a value in that range")]
    InvalidOption {
        /// What was wrong, with the valid range.
        what: &'static str,
        /// The value given (for a product of options, the product).
        value: u64,
    },
    /// The kernel answered a query with a structure of an unexpected size: its AF_XDP
    /// interface is older (or newer) than this crate understands.
    #[error(
        "{what} returned {got} bytes where {expected} were expected: this kernel's AF_XDP interface is not the one this crate supports (Linux 5.4 or newer is needed); upgrade the kernel or use AF_PACKET (TransportChoice::AfPacket)"
    )]
    KernelAbi {
        /// The call.
        what: &'static str,
        /// Bytes the kernel wrote.
        got: usize,
        /// Bytes of the structure we know.
        expected: usize,
    },
    /// Another AF_XDP socket of this process already steers this interface with a
    /// different filter. The sockets of one interface share its one XDP program (one per
    /// queue is the way to use several queues), so they must steer the same frames.
    #[error(
        "interface index {ifindex} is already steered by another AF_XDP socket of this process with filter {existing:?}, and the socket for queue {queue} asks for {requested:?}: open every socket of one interface with the same XskConfig::filter"
    )]
    SteeringConflict {
        /// The interface.
        ifindex: u32,
        /// The queue of the socket being opened.
        queue: u32,
        /// The filter of the attached program.
        existing: crate::bpf::XdpFilter,
        /// The filter asked for.
        requested: crate::bpf::XdpFilter,
    },
    /// Another AF_XDP socket of this process attached the interface's steering program in
    /// another XDP mode than this socket asks for (the sockets of one interface share its
    /// one program, so they run in its mode).
    #[error(
        "interface index {ifindex} is already steered in {} XDP mode by another AF_XDP socket of this process, and the socket for queue {queue} asks for {requested:?}: use XdpModeChoice::Auto (or the same mode) for every socket of one interface",
        existing.as_str()
    )]
    XdpModeConflict {
        /// The interface.
        ifindex: u32,
        /// The queue of the socket being opened.
        queue: u32,
        /// The mode the shared program runs in.
        existing: crate::bpf::XdpMode,
        /// The mode asked for.
        requested: crate::bpf::XdpModeChoice,
    },
    /// The interface's MTU is larger than one UMEM frame can receive: the kernel would drop
    /// every frame longer than `capacity` (AF_XDP has no way to split it without
    /// multi-buffer, which this crate does not use), counting it only in `rx_dropped`.
    /// Checked when the socket opens; a later MTU change is not noticed.
    #[error(
        "interface {ifname:?} has MTU {mtu}, so it delivers frames of up to {needed} bytes (MTU + 14-byte Ethernet header + 4-byte 802.1Q tag), but a UMEM frame receives at most {capacity} bytes (frame_size {frame_size} - headroom {headroom} - 256 bytes of kernel XDP headroom): the kernel would drop the larger frames, counting them only in rx_dropped; {}",
        mtu_hint(*.capacity, *.max_capacity)
    )]
    MtuTooLarge {
        /// Interface name.
        ifname: String,
        /// Its MTU.
        mtu: u32,
        /// The longest frame it delivers (MTU + Ethernet header + 802.1Q tag).
        needed: usize,
        /// Bytes one UMEM frame receives (`frame_size - headroom - 256`).
        capacity: usize,
        /// `XskConfig::frame_size`.
        frame_size: usize,
        /// `XskConfig::headroom`.
        headroom: u32,
        /// Bytes a frame of the largest allowed size (the page size) would receive with
        /// this headroom.
        max_capacity: usize,
    },
    /// A transmit failed (see [`crate::TxError`]).
    #[error(transparent)]
    Tx(#[from] crate::transport::TxError),
    /// The frame pool refused.
    #[error(transparent)]
    Core(#[from] tally_core_types::CoreError),
    /// A network-namespace or veth operation of the test harness failed.
    #[error(
        "network namespace setup: {what}: {detail}; this needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2"
    )]
    Netns {
        /// The step.
        what: String,
        /// The command output or OS error.
        detail: String,
    },
    /// The socket's interface went down (reported once per time it goes down). Not fatal:
    /// wait again, and frames arrive again once the interface is up.
    #[error(
        "the interface of this {socket} socket went down ({source}): wait again; frames arrive again once it is up (`ip link set dev IF up`)"
    )]
    LinkDown {
        /// `"AF_PACKET"`.
        socket: &'static str,
        /// The OS error (`ENETDOWN`).
        #[source]
        source: io::Error,
    },
    /// Neither AF_XDP nor AF_PACKET could be opened.
    #[error("no transport available: AF_XDP: {af_xdp}; AF_PACKET: {af_packet}")]
    NoTransport {
        /// Why AF_XDP failed.
        af_xdp: Box<BypassError>,
        /// Why AF_PACKET failed.
        af_packet: Box<BypassError>,
    },
}

impl BypassError {
    /// True for [`BypassError::LinkDown`]: the interface went down, the socket still works
    /// (wait again), as opposed to a socket that can no longer receive.
    pub fn is_link_down(&self) -> bool {
        matches!(self, Self::LinkDown { .. })
    }

    /// True when the kernel said "not permitted" (run as root, or with `CAP_NET_ADMIN`,
    /// `CAP_NET_RAW` and `CAP_BPF`): tests use this to skip with a printed reason.
    ///
    /// A verifier rejection ([`BypassError::Verifier`]) is never "not permitted", even
    /// though the kernel reports it as EACCES: it is a fault to fix, not to skip.
    pub fn is_permission_denied(&self) -> bool {
        let io = match self {
            Self::Bpf { source, .. }
            | Self::Attach { source, .. }
            | Self::Socket { source, .. }
            | Self::UmemRegister { source, .. }
            | Self::RingMap { source, .. }
            | Self::Bind { source, .. } => source,
            Self::Netns { detail, .. } => {
                return detail.contains("Operation not permitted")
                    || detail.contains("Permission denied");
            }
            Self::NoTransport { af_xdp, af_packet } => {
                return af_xdp.is_permission_denied() && af_packet.is_permission_denied();
            }
            // Notably `Verifier`: the kernel reports a rejected program as EACCES, but it
            // is a fault in the program, never a reason to skip.
            _ => return false,
        };
        crate::bpf::is_permission(io)
    }
}

/// What to do about a failed `bpf(2)` call, by errno.
fn bpf_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            "run as root, or grant CAP_BPF and CAP_NET_ADMIN (CAP_SYS_ADMIN before Linux 5.8), and check that kernel.unprivileged_bpf_disabled or a security module does not forbid it"
        }
        Some(libc::EINVAL) => {
            "the kernel rejected an argument: it may be older than this call needs (XDP through BPF links needs Linux 5.9, XDP live frames 5.18), or a value is out of range, such as a queue index beyond the XSKMAP's entries"
        }
        Some(libc::E2BIG) => {
            "the request is larger than this kernel accepts (too many entries, or a newer bpf_attr layout than it knows): use fewer ports or queues, or a newer kernel"
        }
        Some(libc::EBADF) => {
            "a descriptor passed to bpf(2) is closed or not the right kind of object: keep the XskMap, XdpProgram or socket it came from alive while it is in use"
        }
        Some(libc::ENOMEM) => {
            "the kernel is out of memory, or (before Linux 5.11) over RLIMIT_MEMLOCK: raise `ulimit -l` or free memory"
        }
        Some(libc::ENOSYS) => {
            "this kernel has no bpf(2) (CONFIG_BPF_SYSCALL is off): use AF_PACKET (TransportChoice::AfPacket)"
        }
        Some(libc::EOPNOTSUPP | 524) => {
            "this kernel or driver does not support the operation: try XdpModeChoice::Generic, or AF_PACKET"
        }
        _ => "see bpf(2) for what this error means for this command",
    }
}

/// What to do about a failed socket call, by errno.
fn socket_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            "run as root, or grant CAP_NET_RAW (AF_PACKET) and CAP_NET_ADMIN (AF_XDP)"
        }
        Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT) => {
            "this kernel lacks the socket family (CONFIG_XDP_SOCKETS for AF_XDP, CONFIG_PACKET for AF_PACKET): use the other transport (TransportChoice)"
        }
        Some(libc::ENOPROTOOPT) => {
            "this kernel does not know the socket option: it is too old for this transport; use the other one (TransportChoice)"
        }
        Some(libc::EADDRINUSE) => {
            "another socket already holds this UDP port: stop it, choose other ports, or set PacketConfig::reserve_ports = false"
        }
        Some(libc::ENOMEM | libc::ENOBUFS) => {
            "the kernel could not allocate this: use smaller rings (fewer or smaller blocks and frames) or free memory"
        }
        Some(libc::EINVAL) => {
            "the kernel rejected the value: check the ring and frame sizes in the configuration (powers of two, within the kernel's limits)"
        }
        Some(libc::EBUSY) => {
            "the socket's rings are already set up, or the queue is in use: open a new socket, or stop the other user"
        }
        Some(libc::ENODEV | libc::ENXIO | libc::ENETDOWN) => {
            "the interface is gone or down: check `ip link` in this network namespace"
        }
        _ => "see socket(7), packet(7) or the kernel's AF_XDP documentation for this error",
    }
}

/// What to do about an MTU too large for the UMEM frames: a larger frame when one would
/// do, otherwise a smaller MTU or AF_PACKET.
fn mtu_hint(capacity: usize, max_capacity: usize) -> String {
    let max_mtu = |cap: usize| cap.saturating_sub(crate::packet::ETH_HEADER_BYTES + 4);
    format!(
        "lower the MTU to at most {} (`ip link set dev IF mtu N`), or use a larger XskConfig::frame_size or a smaller XskConfig::headroom (with a page-size frame the MTU may be up to {}), or use AF_PACKET (TransportChoice::AfPacket) with PacketConfig sizes that fit the MTU",
        max_mtu(capacity),
        max_mtu(max_capacity)
    )
}

/// What to do about a failed ring mapping.
fn ring_map_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOMEM | libc::EAGAIN) => {
            "not enough memory or locked-memory allowance for the rings: use smaller rings or raise `ulimit -l`"
        }
        Some(libc::EPERM | libc::EACCES) => {
            "run as root, or grant CAP_NET_RAW (AF_PACKET) and CAP_NET_ADMIN (AF_XDP)"
        }
        Some(libc::EINVAL) => {
            "the kernel refused the mapping: the ring sizes it was set up with and the mapping disagree; open a new socket"
        }
        _ if e.kind() == io::ErrorKind::InvalidData => {
            "the kernel reported ring offsets outside the ring mapping: this kernel's AF_XDP layout is not supported; use AF_PACKET (TransportChoice::AfPacket)"
        }
        _ if e.kind() == io::ErrorKind::InvalidInput => {
            "a ring size is not a power of two: fix the ring sizes in the configuration"
        }
        _ => "see mmap(2) for this error",
    }
}

/// `Result` with [`BypassError`].
pub type Result<T, E = BypassError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn bpf_hint_follows_the_errno() {
        let msg = |errno| {
            BypassError::Bpf {
                op: "BPF_MAP_UPDATE_ELEM (XSKMAP)",
                source: os(errno),
            }
            .to_string()
        };
        assert!(msg(libc::EPERM).contains("root"));
        assert!(msg(libc::EACCES).contains("root"));
        for errno in [
            libc::EINVAL,
            libc::E2BIG,
            libc::EBADF,
            libc::ENOSYS,
            libc::EIO,
        ] {
            let m = msg(errno);
            assert!(!m.contains("root"), "{m}");
        }
        assert!(msg(libc::EINVAL).contains("out of range"));
        assert!(msg(libc::E2BIG).contains("larger than this kernel accepts"));
        assert!(msg(libc::EBADF).contains("alive"));
    }

    #[test]
    fn verifier_rejection_is_never_a_permission_skip() {
        for errno in [libc::EACCES, libc::EINVAL, libc::EPERM] {
            let e = BypassError::Verifier {
                source: os(errno),
                log: "0: R2 !read_ok".to_owned(),
            };
            assert!(!e.is_permission_denied(), "{errno}");
            assert!(e.to_string().contains("not a permissions problem"));
        }
        // Both halves of a fallback must be permission errors for the whole to be one.
        let both = BypassError::NoTransport {
            af_xdp: Box::new(BypassError::Verifier {
                source: os(libc::EACCES),
                log: "x".to_owned(),
            }),
            af_packet: Box::new(BypassError::Socket {
                op: "socket(AF_PACKET)",
                source: os(libc::EPERM),
            }),
        };
        assert!(!both.is_permission_denied());
        // Real permission errors still are.
        assert!(
            BypassError::Bpf {
                op: "BPF_MAP_CREATE (XSKMAP)",
                source: os(libc::EPERM)
            }
            .is_permission_denied()
        );
        assert!(
            BypassError::Socket {
                op: "socket(AF_XDP)",
                source: os(libc::EPERM)
            }
            .is_permission_denied()
        );
    }

    #[test]
    fn socket_and_ring_messages_say_what_to_do() {
        let sock = |errno| {
            BypassError::Socket {
                op: "setsockopt(PACKET_RX_RING)",
                source: os(errno),
            }
            .to_string()
        };
        assert!(sock(libc::EPERM).contains("CAP_NET_RAW"));
        assert!(sock(libc::ENOMEM).contains("smaller rings"));
        assert!(sock(libc::EADDRINUSE).contains("reserve_ports"));
        assert!(sock(libc::EAFNOSUPPORT).contains("TransportChoice"));
        let ring = |source| BypassError::RingMap { ring: "rx", source }.to_string();
        assert!(ring(os(libc::ENOMEM)).contains("ulimit -l"));
        assert!(ring(io::Error::from(io::ErrorKind::InvalidData)).contains("AF_PACKET"));
        let opt = BypassError::InvalidOption {
            what: "tx_frames (power of two >= 8)",
            value: 6,
        }
        .to_string();
        assert!(opt.contains("= 6") && opt.contains("change it"), "{opt}");
    }
}
