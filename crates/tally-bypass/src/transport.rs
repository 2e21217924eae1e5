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
    /// The closure wrote a length larger than the frame.
    #[error("frame length {len} exceeds the transmit frame size {capacity}")]
    FrameTooLong {
        /// Length returned.
        len: usize,
        /// Frame capacity.
        capacity: usize,
    },
    /// The kernel refused the transmit kick.
    #[error("transmit kick failed: {0}")]
    Kick(#[source] std::io::Error),
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
    pub rx_dropped: u64,
    /// AF_XDP: frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// AF_XDP: frames dropped because the fill ring was empty.
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

    /// Parses frame `i` as IPv4/UDP; rejects are counted in the transport's
    /// [`ParseStats`].
    fn udp(&self, i: usize) -> Option<UdpView<'_>> {
        let frame = self.frame(i)?;
        let (policy, stats) = self.parse_context();
        match parse_udp(frame, policy) {
            Ok(v) => Some(v),
            Err(e) => {
                stats.count(&e);
                None
            }
        }
    }

    /// Writes a reply to frame `i` into a transmit frame: `f(rx_frame, tx_frame)` returns
    /// the length it wrote into `tx_frame` (0 to send nothing). The reply is queued;
    /// `flush` sends it.
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
    /// The OS error of `poll`.
    fn wait(&mut self, timeout: Duration) -> Result<bool>;

    /// Queues one frame written by `f` (which returns its length) for transmission.
    ///
    /// # Errors
    /// See [`TxError`].
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
