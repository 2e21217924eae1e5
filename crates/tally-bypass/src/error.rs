//! [`BypassError`], the error type of this crate.

use std::io;

/// Errors from opening and driving a kernel-bypass transport.
///
/// Each message says what failed and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BypassError {
    /// A `bpf(2)` call failed.
    #[error("{op} failed: {source}; bpf(2) needs root (CAP_BPF and CAP_NET_ADMIN)")]
    Bpf {
        /// The bpf command.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The verifier rejected the XDP program; `log` is its explanation.
    #[error("the BPF verifier rejected the XDP program ({source}); verifier log:\n{log}")]
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
    /// A socket call failed.
    #[error("{op} failed: {source}")]
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
    /// Mapping a kernel ring failed.
    #[error("mapping the {ring} ring failed: {source}")]
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
    #[error("invalid option: {what} = {value}")]
    InvalidOption {
        /// What was wrong, with the valid range.
        what: &'static str,
        /// The value given.
        value: u64,
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
    /// True when the kernel said "not permitted" (run as root, or with `CAP_NET_ADMIN`,
    /// `CAP_NET_RAW` and `CAP_BPF`): tests use this to skip with a printed reason.
    pub fn is_permission_denied(&self) -> bool {
        let io = match self {
            Self::Bpf { source, .. }
            | Self::Verifier { source, .. }
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
            _ => return false,
        };
        crate::bpf::is_permission(io)
    }
}

/// `Result` with [`BypassError`].
pub type Result<T, E = BypassError> = std::result::Result<T, E>;
