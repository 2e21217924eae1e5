//! The transport trait shared by AF_XDP ([`XskSocket`](crate::XskSocket)) and AF_PACKET
//! ([`PacketSocket`](crate::PacketSocket)), and [`Transport`], which picks one.
//!
//! # Frame ownership
//! [`PacketTransport::recv`] returns a batch that borrows the transport mutably: its frames
//! are views into kernel-shared memory (the UMEM or the `PACKET_RX_RING`), valid while the
//! batch lives, and handed back to the kernel (fill ring / block status) when the batch is
//! dropped. No frame can be used after its release and none can be forgotten: the borrow
//! checker enforces it. Replies are written into separate transmit frames
//! ([`RxBatch::reply`]) or sent with [`PacketTransport::send_udp`].

use std::cell::Cell;
use std::time::Duration;

use crate::error::Result;
use crate::packet::{
    BuildError, ParseStats, UdpChecksumPolicy, UdpFlow, UdpView, build_udp, parse_udp,
};

/// Which kernel interface a transport uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// AF_XDP socket with an XDP steering program.
    AfXdp,
    /// AF_PACKET socket with TPACKET_V3 rings.
    AfPacket,
}

impl TransportKind {
    /// `"af_xdp"` or `"af_packet"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AfXdp => "af_xdp",
            Self::AfPacket => "af_packet",
        }
    }
}

/// Why a frame could not be queued for transmission. Nothing is lost: the caller still
/// holds its data and may flush and retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// No free transmit frame or ring slot; call `flush()` (which reclaims completed
    /// frames) and retry, or use larger rings.
    #[error("transmit ring full: flush and retry, or configure a larger tx ring")]
    RingFull,
    /// The frame could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The closure wrote a length larger than the frame, or larger than the interface
    /// MTU plus the Ethernet header (and an 802.1Q tag when the frame has one), which
    /// AF_PACKET rejects and AF_XDP sends only for the link to drop. Nothing was queued.
    #[error(
        "frame length {len} exceeds the transmit capacity {capacity} (the transmit frame, or the interface MTU plus the 14-byte Ethernet header, 18 with an 802.1Q tag): nothing was queued; send a smaller frame, raise the interface MTU (`ip link set dev IF mtu N`), or configure larger frames (XskConfig::frame_size, PacketConfig::tx_frame_size)"
    )]
    FrameTooLong {
        /// Length returned.
        len: usize,
        /// Frame capacity.
        capacity: usize,
    },
    /// The closure wrote a frame shorter than an Ethernet header (14 bytes), which no
    /// link carries: AF_PACKET's kernel rejects it (and stops its ring there), and AF_XDP
    /// would hand it to the driver. Nothing was queued.
    #[error(
        "frame length {len} is shorter than the {min}-byte Ethernet header: nothing was queued; write the destination and source MAC addresses and the EtherType before the payload"
    )]
    FrameTooShort {
        /// Length returned.
        len: usize,
        /// The shortest frame accepted (the Ethernet header).
        min: usize,
    },
    /// The kernel refused the transmit kick. Frames already queued stay queued: the next
    /// flush retries them.
    #[error("transmit kick failed: {0}; {hint}", hint = kick_hint(.0))]
    Kick(#[source] std::io::Error),
}

/// What to do about a failed transmit kick, by errno.
fn kick_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENETDOWN) => {
            "the interface is down: bring it up (`ip link set dev IF up`); queued frames stay queued and the next flush sends them"
        }
        Some(libc::ENXIO | libc::ENODEV) => {
            "the interface is gone: reopen the transport on an existing interface"
        }
        Some(libc::EMSGSIZE | libc::EINVAL) => {
            "the kernel rejected a queued frame (longer than the interface MTU, or shorter than an Ethernet header): send frames within the MTU"
        }
        Some(libc::EPERM | libc::EACCES) => {
            "not permitted: run as root, or grant CAP_NET_RAW and CAP_NET_ADMIN"
        }
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS) => {
            "the device queue is full: flush again later"
        }
        _ => "queued frames stay queued: call flush again, or reopen the transport",
    }
}

/// Counters common to every transport (snapshot; see the transports for details).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames queued for transmission.
    pub tx_packets: u64,
    /// Bytes queued for transmission.
    pub tx_bytes: u64,
    /// Frames the kernel dropped on receive (AF_XDP `rx_dropped`; AF_PACKET `tp_drops`).
    /// In AF_XDP copy mode this includes the frames dropped because the fill ring was
    /// empty. All frames lost on receive: [`TransportStats::rx_lost`].
    pub rx_dropped: u64,
    /// AF_XDP: frames dropped because the rx ring was full (not in `rx_dropped`).
    pub rx_ring_full: u64,
    /// AF_XDP: times the kernel found the fill ring empty (`rx_fill_ring_empty_descs`).
    /// Not a separate drop count: in copy mode each such drop is also in `rx_dropped`,
    /// and in zero-copy mode the driver tries again later.
    pub rx_fill_ring_empty: u64,
    /// Invalid rx/tx descriptors (kernel-reported plus our own checks).
    pub invalid_descs: u64,
    /// `send_*` calls refused with [`TxError::RingFull`].
    pub tx_ring_full: u64,
    /// Transmit kicks (`sendto`) issued.
    pub tx_kicks: u64,
    /// Frames rejected by the UDP parser (see [`ParseStats`] for reasons).
    pub rx_malformed: u64,
}

impl TransportStats {
    /// Frames lost on receive, each counted once: `rx_dropped + rx_ring_full`. (Adding
    /// `rx_fill_ring_empty` as well counted every copy-mode drop for an empty fill ring
    /// twice.)
    #[must_use]
    pub const fn rx_lost(&self) -> u64 {
        self.rx_dropped.wrapping_add(self.rx_ring_full)
    }
}

/// A batch of received frames, borrowed from the transport until dropped.
pub trait RxBatch {
    /// Number of frames in the batch.
    fn len(&self) -> usize;

    /// True when the batch holds no frame.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of frame `i` (from the Ethernet header), or `None` when `i` is out of
    /// range or the kernel's descriptor was invalid (counted).
    fn frame(&self, i: usize) -> Option<&[u8]>;

    /// The UDP checksum policy and parse-reject counters of the transport.
    fn parse_context(&self) -> (UdpChecksumPolicy, &ParseStats);

    /// Whether a parse reject of frame `i` is to be counted now. The default says yes
    /// every time; the batches of this crate say yes the first time only, so that a
    /// frame parsed again (with [`RxBatch::udp`] and [`RxBatch::datagrams`] both, say)
    /// is counted once.
    fn first_reject(&self, i: usize) -> bool {
        let _ = i;
        true
    }

    /// Parses frame `i` as IPv4/UDP; a reject is counted in the transport's
    /// [`ParseStats`], once per frame of the batch however often it is parsed.
    fn udp(&self, i: usize) -> Option<UdpView<'_>> {
        let frame = self.frame(i)?;
        let (policy, stats) = self.parse_context();
        match parse_udp(frame, policy) {
            Ok(v) => Some(v),
            Err(e) => {
                if self.first_reject(i) {
                    stats.count(&e);
                }
                None
            }
        }
    }

    /// Every frame of the batch that parses as IPv4/UDP, in order (rejects are counted
    /// in the transport's [`ParseStats`] and skipped). Each view borrows the batch: copy
    /// out what must outlive it (payload bytes, [`UdpView::reply_flow`]).
    fn datagrams(&self) -> impl Iterator<Item = UdpView<'_>> {
        (0..self.len()).filter_map(move |i| self.udp(i))
    }

    /// Writes a reply to frame `i` into a transmit frame: `f(rx_frame, tx_frame)` returns
    /// the length it wrote into `tx_frame` (0 to send nothing). The reply is queued;
    /// `flush` sends it.
    ///
    /// VLAN tags: AF_XDP shows `f` the frame with its 802.1Q tag, so a reply built from it
    /// keeps the tag. AF_PACKET's kernel strips the tag before the ring, so `f` sees the
    /// frame untagged there; when the request had an 802.1Q tag and `f` writes an
    /// untagged frame, the batch inserts the request's tag into it (4 bytes more), so
    /// that the reply goes back tagged on both transports.
    ///
    /// # Errors
    /// [`TxError::RingFull`] when no transmit frame is free; [`TxError::FrameTooLong`].
    fn reply(
        &mut self,
        i: usize,
        f: &mut dyn FnMut(&[u8], &mut [u8]) -> usize,
    ) -> Result<(), TxError>;
}

/// A packet transport bound to one interface queue.
pub trait PacketTransport {
    /// The batch type [`PacketTransport::recv`] returns.
    type Batch<'a>: RxBatch
    where
        Self: 'a;

    /// Takes up to `max` received frames without blocking (possibly none).
    fn recv(&mut self, max: usize) -> Self::Batch<'_>;

    /// Waits up to `timeout` for frames to arrive; `Ok(true)` when some are ready.
    ///
    /// # Errors
    /// The OS error of `poll`, or the socket's pending error:
    /// [`crate::BypassError::LinkDown`] once when an AF_PACKET socket's interface goes
    /// down (waiting again is fine: it receives again once the interface is up), and an
    /// error on every call once the socket's interface was deleted (open a new socket).
    fn wait(&mut self, timeout: Duration) -> Result<bool>;

    /// Queues one frame written by `f` (which returns its length, from the Ethernet
    /// header on) for transmission; 0 queues nothing.
    ///
    /// # Errors
    /// See [`TxError`]: notably [`TxError::FrameTooShort`] for a length from 1 to 13 and
    /// [`TxError::FrameTooLong`], on both transports.
    fn send_frame(&mut self, f: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError>;

    /// Queues a UDP datagram, building its Ethernet/IPv4/UDP headers (with checksums).
    ///
    /// # Errors
    /// See [`TxError`].
    fn send_udp(&mut self, flow: &UdpFlow, payload: &[u8], ip_id: u16) -> Result<(), TxError> {
        let mut err = None;
        self.send_frame(&mut |buf| match build_udp(buf, flow, payload, ip_id) {
            Ok(n) => n,
            Err(e) => {
                err = Some(e);
                0
            }
        })?;
        match err {
            Some(e) => Err(TxError::Build(e)),
            None => Ok(()),
        }
    }

    /// Hands every queued frame to the kernel and reclaims completed ones.
    ///
    /// # Errors
    /// [`TxError::Kick`].
    fn flush(&mut self) -> Result<(), TxError>;

    /// Which kernel interface this is.
    fn kind(&self) -> TransportKind;

    /// Current counters.
    fn stats(&self) -> TransportStats;
}

/// The Ethernet address of interface `ifname` in the calling thread's network namespace
/// (the source MAC for [`UdpFlow::src_mac`]).
///
/// # Errors
/// [`crate::BypassError::Interface`] when the interface does not exist.
pub fn interface_mac(ifname: &str) -> Result<crate::packet::MacAddr> {
    crate::sys::if_hwaddr(ifname)
        .map(crate::packet::MacAddr)
        .map_err(|source| crate::BypassError::Interface {
            name: ifname.to_owned(),
            source,
        })
}

/// The kernel driver behind interface `ifname` in the calling thread's network namespace
/// (`ETHTOOL_GDRVINFO`, no ethtool binary needed): `veth`, `ice`, `mlx5_core`, ... It
/// decides whether XDP can run natively and whether AF_XDP can bind zero-copy.
///
/// # Errors
/// [`crate::BypassError::Interface`] when the interface does not exist;
/// [`crate::BypassError::Socket`] when its driver reports no name (the loopback device,
/// for one: `EOPNOTSUPP`).
pub fn interface_driver(ifname: &str) -> Result<String> {
    crate::sys::driver_name(ifname).map_err(|source| {
        if source.raw_os_error() == Some(libc::ENODEV) {
            crate::BypassError::Interface {
                name: ifname.to_owned(),
                source,
            }
        } else {
            crate::BypassError::Socket {
                op: "ioctl(SIOCETHTOOL, ETHTOOL_GDRVINFO)",
                source,
            }
        }
    })
}

/// One flag per frame of a batch, set through a shared reference (batches are read
/// through `&self`): which frames' parse rejects were counted.
#[derive(Debug)]
pub(crate) struct BatchFlags {
    words: Box<[Cell<u64>]>,
}

impl BatchFlags {
    /// Flags for batches of up to `frames` frames, all clear.
    pub(crate) fn new(frames: usize) -> Self {
        Self {
            words: (0..frames.div_ceil(64)).map(|_| Cell::new(0)).collect(),
        }
    }

    /// Clears the flags of frames `0..frames` (a new batch of that many).
    pub(crate) fn clear(&self, frames: usize) {
        for w in self.words.iter().take(frames.div_ceil(64)) {
            w.set(0);
        }
    }

    /// Sets the flag of frame `i`; true when it was clear (false past the end).
    pub(crate) fn set(&self, i: usize) -> bool {
        let Some(w) = self.words.get(i / 64) else {
            return false;
        };
        let bit = 1u64 << (i % 64);
        let old = w.get();
        w.set(old | bit);
        old & bit == 0
    }
}

/// Blocks until `done` or the timeout, calling `recv` with `wait` in between: a helper
/// for tests and examples.
///
/// # Errors
/// The errors of [`PacketTransport::wait`].
pub fn recv_until<T: PacketTransport>(
    t: &mut T,
    timeout: Duration,
    mut each: impl FnMut(&T::Batch<'_>) -> bool,
) -> Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        {
            let batch = t.recv(64);
            if !batch.is_empty() && each(&batch) {
                return Ok(true);
            }
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        t.wait((deadline - now).min(Duration::from_millis(50)))?;
    }
}

/// Which transport [`Transport::open`] should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransportChoice {
    /// AF_XDP, falling back to AF_PACKET when AF_XDP cannot be opened.
    #[default]
    Auto,
    /// AF_XDP only.
    AfXdp,
    /// AF_PACKET only.
    AfPacket,
}

/// Options of [`Transport::open`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransportOptions {
    /// Which transport.
    pub choice: TransportChoice,
    /// AF_XDP options (its `filter` is what is steered).
    pub xsk: crate::XskConfig,
    /// AF_PACKET options (its `udp_ports` is what is captured).
    pub packet: crate::PacketConfig,
}

impl TransportOptions {
    /// Receive IPv4/UDP to `ports` on either transport, defaults otherwise.
    pub fn udp_ports(ports: &[u16]) -> Self {
        Self {
            choice: TransportChoice::Auto,
            xsk: crate::XskConfig::udp_ports(ports),
            packet: crate::PacketConfig {
                udp_ports: ports.to_vec(),
                ..crate::PacketConfig::default()
            },
        }
    }
}

/// AF_XDP or AF_PACKET, chosen at open time.
///
/// ```no_run
/// use tally_bypass::{PacketTransport, RxBatch, Transport, TransportOptions};
/// # fn main() -> Result<(), tally_bypass::BypassError> {
/// let mut t = Transport::open("veth0", 0, &TransportOptions::udp_ports(&[9000]))?;
/// if let Some(why) = t.fallback_reason() {
///     eprintln!("using AF_PACKET: {why}");
/// }
/// let batch = t.recv(32);
/// for i in 0..batch.len() {
///     if let Some(d) = batch.udp(i) {
///         println!("{} -> {}: {:?}", d.src(), d.dst(), d.payload());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per thread, opened once; no box on the hot path"
)]
pub enum Transport {
    /// AF_XDP.
    AfXdp(crate::XskSocket),
    /// AF_PACKET, with why AF_XDP was not used (when it was tried).
    AfPacket(crate::PacketSocket, Option<String>),
}

impl Transport {
    /// Opens the chosen transport on `ifname` (queue `queue` for AF_XDP).
    ///
    /// [`TransportChoice::Auto`] falls back to AF_PACKET when AF_XDP cannot be opened
    /// here (no kernel support, no permission, a driver or queue that refuses), not when
    /// the options are wrong: an invalid [`TransportOptions::xsk`] option, or a filter
    /// that conflicts with another socket of this process on the interface, or UMEM
    /// frames too small for the interface's MTU, is returned as the error, since AF_PACKET
    /// would then quietly receive something else (or hide the misconfiguration); ask for
    /// [`TransportChoice::AfPacket`] to use it deliberately.
    ///
    /// # Errors
    /// With [`TransportChoice::Auto`], [`crate::BypassError::NoTransport`] carrying both
    /// reasons, or the AF_XDP options error ([`crate::BypassError::InvalidOption`],
    /// [`crate::BypassError::SteeringConflict`], [`crate::BypassError::XdpModeConflict`],
    /// [`crate::BypassError::MtuTooLarge`]); otherwise the chosen transport's error.
    pub fn open(ifname: &str, queue: u32, options: &TransportOptions) -> Result<Self> {
        match options.choice {
            TransportChoice::AfXdp => Ok(Self::AfXdp(crate::XskSocket::open(
                ifname,
                queue,
                options.xsk.clone(),
            )?)),
            TransportChoice::AfPacket => Ok(Self::AfPacket(
                crate::PacketSocket::open(ifname, &options.packet)?,
                None,
            )),
            TransportChoice::Auto => {
                match crate::XskSocket::open(ifname, queue, options.xsk.clone()) {
                    Ok(x) => Ok(Self::AfXdp(x)),
                    Err(xdp) if is_options_error(&xdp) => Err(xdp),
                    Err(xdp) => match crate::PacketSocket::open(ifname, &options.packet) {
                        Ok(p) => Ok(Self::AfPacket(p, Some(xdp.to_string()))),
                        Err(pkt) => Err(crate::BypassError::NoTransport {
                            af_xdp: Box::new(xdp),
                            af_packet: Box::new(pkt),
                        }),
                    },
                }
            }
        }
    }

    /// Why AF_XDP was not used, when [`TransportChoice::Auto`] fell back to AF_PACKET.
    pub fn fallback_reason(&self) -> Option<&str> {
        match self {
            Self::AfXdp(_) => None,
            Self::AfPacket(_, why) => why.as_deref(),
        }
    }
}

/// Whether an AF_XDP open failed because of the options asked for, not because AF_XDP is
/// unavailable: [`Transport::open`] does not fall back to AF_PACKET then.
fn is_options_error(e: &crate::BypassError) -> bool {
    matches!(
        e,
        crate::BypassError::InvalidOption { .. }
            | crate::BypassError::SteeringConflict { .. }
            | crate::BypassError::XdpModeConflict { .. }
            | crate::BypassError::MtuTooLarge { .. }
            | crate::BypassError::Core(tally_core_types::CoreError::InvalidFrameSize { .. })
    )
}

/// The batch type of [`Transport`].
pub enum AnyRxBatch<'a> {
    /// From AF_XDP.
    AfXdp(crate::XskRxBatch<'a>),
    /// From AF_PACKET.
    AfPacket(crate::PacketRxBatch<'a>),
}

impl RxBatch for AnyRxBatch<'_> {
    fn len(&self) -> usize {
        match self {
            Self::AfXdp(b) => b.len(),
            Self::AfPacket(b) => b.len(),
        }
    }
    fn frame(&self, i: usize) -> Option<&[u8]> {
        match self {
            Self::AfXdp(b) => b.frame(i),
            Self::AfPacket(b) => b.frame(i),
        }
    }
    fn parse_context(&self) -> (UdpChecksumPolicy, &ParseStats) {
        match self {
            Self::AfXdp(b) => b.parse_context(),
            Self::AfPacket(b) => b.parse_context(),
        }
    }
    fn first_reject(&self, i: usize) -> bool {
        match self {
            Self::AfXdp(b) => b.first_reject(i),
            Self::AfPacket(b) => b.first_reject(i),
        }
    }
    fn reply(
        &mut self,
        i: usize,
        f: &mut dyn FnMut(&[u8], &mut [u8]) -> usize,
    ) -> Result<(), TxError> {
        match self {
            Self::AfXdp(b) => b.reply(i, f),
            Self::AfPacket(b) => b.reply(i, f),
        }
    }
}

impl PacketTransport for Transport {
    type Batch<'a> = AnyRxBatch<'a>;

    fn recv(&mut self, max: usize) -> AnyRxBatch<'_> {
        match self {
            Self::AfXdp(x) => AnyRxBatch::AfXdp(x.recv(max)),
            Self::AfPacket(p, _) => AnyRxBatch::AfPacket(p.recv(max)),
        }
    }
    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        match self {
            Self::AfXdp(x) => x.wait(timeout),
            Self::AfPacket(p, _) => p.wait(timeout),
        }
    }
    fn send_frame(&mut self, f: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        match self {
            Self::AfXdp(x) => x.send_frame(f),
            Self::AfPacket(p, _) => p.send_frame(f),
        }
    }
    fn flush(&mut self) -> Result<(), TxError> {
        match self {
            Self::AfXdp(x) => x.flush(),
            Self::AfPacket(p, _) => p.flush(),
        }
    }
    fn kind(&self) -> TransportKind {
        match self {
            Self::AfXdp(_) => TransportKind::AfXdp,
            Self::AfPacket(..) => TransportKind::AfPacket,
        }
    }
    fn stats(&self) -> TransportStats {
        match self {
            Self::AfXdp(x) => x.stats(),
            Self::AfPacket(p, _) => p.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_error_messages_say_what_to_do() {
        let kick = |errno| TxError::Kick(std::io::Error::from_raw_os_error(errno)).to_string();
        assert!(kick(libc::ENETDOWN).contains("ip link set dev IF up"));
        assert!(kick(libc::EMSGSIZE).contains("MTU"));
        assert!(kick(libc::ENXIO).contains("reopen"));
        assert!(kick(libc::EIO).contains("flush again"));
        let long = TxError::FrameTooLong {
            len: 3000,
            capacity: 2000,
        }
        .to_string();
        assert!(long.contains("3000") && long.contains("2000"), "{long}");
        assert!(long.contains("PacketConfig::tx_frame_size"), "{long}");
        let short = TxError::FrameTooShort { len: 10, min: 14 }.to_string();
        assert!(short.contains("10") && short.contains("14-byte"), "{short}");
    }
}
