//! [`XskSocket`]: an AF_XDP socket with its UMEM, four rings and steering XDP program.
//!
//! Frames: the UMEM ([`FramePool`]) holds `rx_frames + tx_frames` frames. The `rx_frames`
//! circulate between the fill ring, the kernel, the rx ring and the caller's
//! [`XskRxBatch`], which returns them to the fill ring when dropped; the fill ring has at
//! least `rx_frames` slots, so that return never fails. The `tx_frames` stay on the pool's
//! free list until a send takes one; the completion ring gives them back.
//!
//! The kernel's rings are checked, not trusted: every descriptor must lie inside one
//! frame, an rx descriptor must name a receive frame the kernel holds and a completion a
//! frame that is on the tx ring (the socket keeps one ownership state per frame), and an
//! impossible ring index (more than a ring ahead, or behind) yields no entries until the
//! kernel's index is sane again (receive frames that could not go back to the fill ring
//! meanwhile go back then, with the next `recv`). Rejected entries are counted (`rx_invalid_descs`,
//! `tx_bad_completions`, `ring_index_anomalies`) and skipped; an rx descriptor that names
//! a receive frame the kernel held but fails the bounds check is unreadable, and its frame
//! still goes back to the fill ring with its batch. Still
//! trusted: that the kernel has stopped writing a receive frame once an rx descriptor
//! names it, and has stopped reading a transmit frame once a completion names it.

mod owner;
mod ring;
mod steer;
mod umem;

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

use tally_core_types::{FramePool, FramePoolOptions};

use self::owner::FrameOwners;
use self::ring::{ConsRing, ProdRing, XdpDesc};
use self::steer::SteeringHandle;
use self::umem::UmemArea;
use crate::bpf::{XdpFilter, XdpLink, XdpMode, XdpModeChoice, XskMap};
use crate::error::{BypassError, Result};
use crate::packet::{ParseStats, UdpChecksumPolicy};
use crate::sys;
use crate::transport::{
    BatchFlags, PacketTransport, RxBatch, TransportKind, TransportStats, TxError,
};

/// Frames a copy-mode `sendto` kick processes before returning EAGAIN.
const COPY_MODE_TX_BATCH: u32 = 32;
/// Queued transmit frames that trigger an automatic flush.
const AUTO_FLUSH_FRAMES: u32 = 32;
/// The operation named in the error of [`XskSocket::wait`] once the interface is gone.
const UNBOUND: &str = "poll(AF_XDP): the socket's interface was deleted; open a new socket";
/// Bytes of an 802.1Q tag, allowed on top of the MTU.
const VLAN_HLEN: usize = 4;
/// Bind attempts when the queue is still busy (EBUSY) from a socket that just closed.
const BIND_ATTEMPTS: u32 = 40;

/// Which AF_XDP bind mode to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BindChoice {
    /// Zero-copy, falling back to copy mode when the driver refuses (veth always does).
    #[default]
    Auto,
    /// Zero-copy only.
    ZeroCopy,
    /// Copy mode only.
    Copy,
}

/// The AF_XDP bind mode in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindMode {
    /// `XDP_ZEROCOPY`: the NIC DMAs straight into the UMEM.
    ZeroCopy,
    /// `XDP_COPY`: the kernel copies each frame into the UMEM.
    Copy,
}

impl BindMode {
    /// `"zerocopy"` or `"copy"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZeroCopy => "zerocopy",
            Self::Copy => "copy",
        }
    }
}

/// Options of [`XskSocket::open`]. Ring sizes are powers of two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XskConfig {
    /// Bytes per UMEM frame (power of two, at least 2048, at most the page size).
    pub frame_size: usize,
    /// Bytes the kernel leaves free in front of each received packet (UMEM headroom).
    pub headroom: u32,
    /// Frames that circulate through the fill and rx rings (also the fill ring size).
    pub rx_frames: u32,
    /// Frames for transmission (also the completion ring size).
    pub tx_frames: u32,
    /// Rx ring entries.
    pub rx_ring: u32,
    /// Tx ring entries.
    pub tx_ring: u32,
    /// Which frames the XDP program steers to this socket.
    pub filter: XdpFilter,
    /// XDP mode to ask for.
    pub xdp_mode: XdpModeChoice,
    /// AF_XDP bind mode to ask for.
    pub bind: BindChoice,
    /// Use `XDP_USE_NEED_WAKEUP` (the kernel says when a wake-up syscall is needed).
    pub need_wakeup: bool,
    /// How received UDP checksums are checked by [`RxBatch::udp`].
    pub checksum_policy: UdpChecksumPolicy,
    /// Pre-fault the UMEM at start-up.
    pub populate: bool,
    /// Back the UMEM with 2 MiB huge pages (needs pages reserved in
    /// `/proc/sys/vm/nr_hugepages`).
    pub huge_pages: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_size: 2048,
            headroom: 0,
            rx_frames: 4096,
            tx_frames: 2048,
            rx_ring: 4096,
            tx_ring: 2048,
            filter: XdpFilter::All,
            xdp_mode: XdpModeChoice::Auto,
            bind: BindChoice::Auto,
            need_wakeup: true,
            checksum_policy: UdpChecksumPolicy::VerifyOrPartial,
            populate: true,
            huge_pages: false,
        }
    }
}

impl XskConfig {
    /// Defaults, steering the given UDP destination ports.
    pub fn udp_ports(ports: &[u16]) -> Self {
        Self {
            filter: XdpFilter::UdpDstPorts(ports.to_vec()),
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("rx_frames (power of two >= 8)", self.rx_frames),
            ("tx_frames (power of two >= 8)", self.tx_frames),
            ("rx_ring (power of two >= 8)", self.rx_ring),
            ("tx_ring (power of two >= 8)", self.tx_ring),
        ] {
            if !v.is_power_of_two() || v < 8 {
                return Err(BypassError::InvalidOption {
                    what,
                    value: u64::from(v),
                });
            }
        }
        if self.frame_size > sys::page_size() {
            return Err(BypassError::InvalidOption {
                what: "frame_size (an AF_XDP UMEM frame is at most the page size, 4096 bytes on x86-64: the kernel refuses larger chunks)",
                value: self.frame_size as u64,
            });
        }
        if u64::from(self.headroom) + 256 + 64 > self.frame_size as u64 {
            return Err(BypassError::InvalidOption {
                what: "headroom (must leave room for 256 bytes of XDP headroom and a packet)",
                value: u64::from(self.headroom),
            });
        }
        Ok(())
    }
}

tally_core_types::single_writer_stats! {
    /// Our own AF_XDP counters (single writer: the thread driving the socket).
    pub struct XskStats => XskStatsSnapshot {
        /// Frames received.
        rx_packets,
        /// Bytes received.
        rx_bytes,
        /// Non-empty receive batches.
        rx_batches,
        /// Rx descriptors pointing outside the UMEM or past their frame, or naming a frame
        /// the kernel does not hold (a transmit frame, or one already in the same batch):
        /// skipped (unreadable). A frame the kernel did hold goes back to the fill ring
        /// with the batch; any other frame is left to its owner.
        rx_invalid_descs,
        /// Fill-ring wake-ups issued (need_wakeup set).
        fill_wakeups,
        /// Frames queued for transmission.
        tx_packets,
        /// Bytes queued for transmission.
        tx_bytes,
        /// Sends refused because no tx frame or tx ring slot was free.
        tx_ring_full,
        /// `sendto` kicks.
        tx_kicks,
        /// Kicks answered with EAGAIN/EBUSY/ENOBUFS (kicked again).
        tx_kick_again,
        /// Completed tx frames returned to the pool.
        tx_completed,
        /// Completion-ring addresses that do not name a frame on the tx ring (not ours,
        /// a receive frame, never sent, or completed twice): ignored.
        tx_bad_completions,
        /// Times a ring index of the kernel was impossible: an rx or completion producer
        /// index more than a ring ahead of our consumer index (or behind it), or a fill
        /// or tx consumer index past our producer index (or more than a ring behind it).
        /// Nothing was taken (no room was assumed), and the index is read again on the
        /// next call.
        ring_index_anomalies,
    }
}

/// How the socket ended up configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XskInfo {
    /// Interface name.
    pub ifname: String,
    /// Interface index.
    pub ifindex: u32,
    /// Queue id.
    pub queue: u32,
    /// XDP mode of the steering program.
    pub xdp_mode: XdpMode,
    /// Why native XDP was not used, if it was refused.
    pub xdp_fallback_reason: Option<String>,
    /// AF_XDP bind mode.
    pub bind_mode: BindMode,
    /// Why zero-copy was not used, if it was refused.
    pub bind_fallback_reason: Option<String>,
    /// Bind attempts made (more than one after EBUSY).
    pub bind_attempts: u32,
    /// Whether `XDP_USE_NEED_WAKEUP` is on.
    pub need_wakeup: bool,
}

/// An AF_XDP socket bound to one interface queue, with its UMEM, rings and steering
/// XDP program.
///
/// ```no_run
/// use tally_bypass::{PacketTransport, RxBatch, XskConfig, XskSocket};
/// # fn main() -> Result<(), tally_bypass::BypassError> {
/// let mut xsk = XskSocket::open("veth0", 0, XskConfig::udp_ports(&[9000]))?;
/// println!("{} XDP, {} bind", xsk.info().xdp_mode.as_str(), xsk.info().bind_mode.as_str());
/// loop {
///     xsk.wait(std::time::Duration::from_millis(100))?;
///     let batch = xsk.recv(64);
///     for i in 0..batch.len() {
///         if let Some(d) = batch.udp(i) {
///             println!("{} bytes from {}", d.payload().len(), d.src());
///         }
///     }
/// } // the batch's frames go back to the fill ring here
/// # }
/// ```
pub struct XskSocket {
    // Drop order: the steering first (this queue's XSKMAP slot, and the XDP link when
    // this is the last socket on the interface), then the rings, the socket, and the
    // UMEM last.
    steer: SteeringHandle,
    fill: ProdRing<u64>,
    comp: ConsRing<u64>,
    rx: ConsRing<XdpDesc>,
    tx: ProdRing<XdpDesc>,
    fd: OwnedFd,
    umem: UmemArea,
    pool: FramePool,
    /// Who owns each UMEM frame (see [`owner`]).
    owners: FrameOwners,
    /// The frame taken and the validated span of each descriptor of the current rx
    /// batch; as many entries as the rx ring.
    rx_spans: Box<[RxSlot]>,
    /// The frames of the current rx batch whose parse reject was counted.
    rx_rejects: BatchFlags,
    /// Receive frames a dropped batch could not give back (the fill ring had no room
    /// because its consumer index was bogus): still `Rx`, returned by the next `recv`.
    rx_stranded: u32,
    /// Frames pushed on the tx ring but not yet submitted/kicked.
    tx_queued: u32,
    /// The longest untagged frame the interface carries (MTU plus the Ethernet header):
    /// longer ones are refused, since the kernel would complete them and the link drop
    /// them. Re-read before refusing, so that a raised MTU counts.
    tx_max_len: usize,
    /// An `AF_INET` socket of the interface's namespace, for `SIOCGIFMTU` (AF_XDP
    /// sockets do not answer interface ioctls).
    mtu_sock: OwnedFd,
    /// The errno the kernel left in `SO_ERROR` when the interface was deleted (the
    /// socket is then unbound for good and `poll` never reports anything again).
    unbound: Option<i32>,
    stats: XskStats,
    parse_stats: ParseStats,
    config: XskConfig,
    info: XskInfo,
}

impl core::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XskSocket")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn sock_err(op: &'static str) -> impl FnOnce(std::io::Error) -> BypassError {
    move |source| BypassError::Socket { op, source }
}

impl XskSocket {
    /// Opens an AF_XDP socket on `ifname` queue `queue`: registers the UMEM, maps the
    /// rings, binds (zero-copy, else copy, as configured; EBUSY is retried with a bounded
    /// backoff), loads and attaches the steering program and puts the socket in its
    /// XSKMAP.
    ///
    /// Sockets of this process on other queues of the same interface share one steering
    /// program and XSKMAP (an interface takes one XDP link): the first one attaches it,
    /// with its [`XskConfig::xdp_mode`], and the last one to close detaches it. They must
    /// ask for the same [`XskConfig::filter`] (the same ports, in any order), and for the
    /// mode it runs in or [`XdpModeChoice::Auto`].
    ///
    /// # Errors
    /// [`BypassError::InvalidOption`], [`BypassError::Interface`],
    /// [`BypassError::MtuTooLarge`] (the interface's MTU plus the Ethernet header and an
    /// 802.1Q tag is more than `frame_size - headroom - 256`, what one UMEM frame
    /// receives: the kernel would drop the longer frames),
    /// [`BypassError::UmemRegister`] (memlock), [`BypassError::RingMap`],
    /// [`BypassError::Bind`], [`BypassError::SteeringConflict`] (another socket of this
    /// process steers the interface with another filter),
    /// [`BypassError::XdpModeConflict`] (or in another mode), and the XDP errors
    /// ([`BypassError::Verifier`], [`BypassError::Attach`], [`BypassError::Bpf`]).
    #[allow(
        clippy::too_many_lines,
        reason = "one linear set-up sequence, each step a few lines"
    )]
    pub fn open(ifname: &str, queue: u32, config: XskConfig) -> Result<Self> {
        config.validate()?;
        let ifindex = sys::if_nametoindex(ifname).map_err(|source| BypassError::Interface {
            name: ifname.to_owned(),
            source,
        })?;
        let mtu_sock = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .map_err(sock_err("socket(AF_INET) for SIOCGIFMTU"))?;
        // Before anything is set up: an MTU the UMEM frames cannot receive is a
        // configuration error, not something to discover in `rx_dropped`.
        if let Ok(mtu) = sys::if_mtu(mtu_sock.as_raw_fd(), ifname) {
            check_rx_mtu(ifname, mtu, &config)?;
        }
        let fd =
            sys::socket(libc::AF_XDP, libc::SOCK_RAW, 0).map_err(sock_err("socket(AF_XDP)"))?;
        let raw = fd.as_raw_fd();

        let frames =
            config
                .rx_frames
                .checked_add(config.tx_frames)
                .ok_or(BypassError::InvalidOption {
                    what: "rx_frames + tx_frames",
                    value: u64::from(config.rx_frames) + u64::from(config.tx_frames),
                })?;
        let mut pool = FramePool::new(
            FramePoolOptions::new(config.frame_size, frames)
                .populate(config.populate)
                .huge_pages(config.huge_pages),
        )?;
        let base = NonNull::new(pool.as_mut_ptr()).ok_or(BypassError::InvalidOption {
            what: "UMEM address (the frame pool mapped nothing; report this as a bug)",
            value: 0,
        })?;
        let umem = UmemArea::new(base, pool.len_bytes(), config.frame_size);

        let mut reg: libc::xdp_umem_reg = sys::Pod::zeroed();
        reg.addr = base.as_ptr() as u64;
        reg.len = pool.len_bytes() as u64;
        reg.chunk_size =
            u32::try_from(config.frame_size).map_err(|_| BypassError::InvalidOption {
                what: "frame_size",
                value: config.frame_size as u64,
            })?;
        reg.headroom = config.headroom;
        sys::setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg).map_err(|source| {
            BypassError::UmemRegister {
                bytes: pool.len_bytes(),
                source,
            }
        })?;
        for (opt, size, op) in [
            (
                libc::XDP_UMEM_FILL_RING,
                config.rx_frames,
                "setsockopt(XDP_UMEM_FILL_RING)",
            ),
            (
                libc::XDP_UMEM_COMPLETION_RING,
                config.tx_frames,
                "setsockopt(XDP_UMEM_COMPLETION_RING)",
            ),
            (libc::XDP_RX_RING, config.rx_ring, "setsockopt(XDP_RX_RING)"),
            (libc::XDP_TX_RING, config.tx_ring, "setsockopt(XDP_TX_RING)"),
        ] {
            sys::setsockopt(raw, libc::SOL_XDP, opt, &size).map_err(sock_err(op))?;
        }
        let (off, off_len) =
            sys::getsockopt::<libc::xdp_mmap_offsets>(raw, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS)
                .map_err(sock_err("getsockopt(XDP_MMAP_OFFSETS)"))?;
        // An older kernel answers with the shorter layout without the `flags` offsets,
        // which would leave them zero (pointing at the producer index).
        check_optlen(
            "getsockopt(XDP_MMAP_OFFSETS)",
            off_len,
            size_of::<libc::xdp_mmap_offsets>(),
        )?;
        let ring_err = |ring| move |source| BypassError::RingMap { ring, source };
        let mut fill = ProdRing::<u64>::map(
            &fd,
            &off.fr,
            config.rx_frames,
            libc::XDP_UMEM_PGOFF_FILL_RING,
        )
        .map_err(ring_err("fill"))?;
        let comp = ConsRing::<u64>::map(
            &fd,
            &off.cr,
            config.tx_frames,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )
        .map_err(ring_err("completion"))?;
        let rx =
            ConsRing::<XdpDesc>::map(&fd, &off.rx, config.rx_ring, libc::XDP_PGOFF_RX_RING as u64)
                .map_err(ring_err("rx"))?;
        let tx =
            ProdRing::<XdpDesc>::map(&fd, &off.tx, config.tx_ring, libc::XDP_PGOFF_TX_RING as u64)
                .map_err(ring_err("tx"))?;

        // Hand every rx frame to the kernel before binding.
        let stats = XskStats::new();
        let mut owners = FrameOwners::new(frames);
        for _ in 0..config.rx_frames {
            let id = pool.alloc()?;
            if fill.free(1, &stats.ring_index_anomalies) == 0 || !owners.give_to_fill(id.index()) {
                return Err(BypassError::InvalidOption {
                    what: "rx_frames (the kernel's fill ring has fewer slots than rx_frames; use a smaller power of two)",
                    value: u64::from(config.rx_frames),
                });
            }
            fill.push(pool.offset_of(id));
        }
        fill.submit();

        let (bind_mode, bind_fallback_reason, bind_attempts) =
            bind_with_fallback(&fd, ifname, ifindex, queue, &config)?;

        let tx_max_len = read_tx_max_len(&mtu_sock, ifname);
        let steer = SteeringHandle::acquire(ifindex, queue, &config.filter, config.xdp_mode)?;
        steer.insert(raw)?;
        let link = &steer.steering().link;

        let info = XskInfo {
            ifname: ifname.to_owned(),
            ifindex,
            queue,
            xdp_mode: link.mode(),
            xdp_fallback_reason: link.fallback_reason().map(str::to_owned),
            bind_mode,
            bind_fallback_reason,
            bind_attempts,
            need_wakeup: config.need_wakeup,
        };
        Ok(Self {
            steer,
            fill,
            comp,
            rx,
            tx,
            fd,
            umem,
            pool,
            owners,
            rx_spans: vec![RxSlot::default(); config.rx_ring as usize].into_boxed_slice(),
            rx_rejects: BatchFlags::new(config.rx_ring as usize),
            rx_stranded: 0,
            tx_queued: 0,
            tx_max_len,
            mtu_sock,
            unbound: None,
            stats,
            parse_stats: ParseStats::new(),
            config,
            info,
        })
    }

    /// How the socket is configured (XDP mode, bind mode, fallback reasons).
    pub fn info(&self) -> &XskInfo {
        &self.info
    }

    /// Our own counters.
    pub fn xsk_stats(&self) -> XskStatsSnapshot {
        self.stats.snapshot()
    }

    /// Parse rejects of [`RxBatch::udp`].
    pub fn parse_stats(&self) -> &ParseStats {
        &self.parse_stats
    }

    /// The kernel's `XDP_STATISTICS` for this socket.
    ///
    /// # Errors
    /// [`BypassError::Socket`].
    pub fn kernel_stats(&self) -> Result<libc::xdp_statistics> {
        sys::getsockopt::<libc::xdp_statistics>(
            self.fd.as_raw_fd(),
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
        )
        .map(|(s, _)| s)
        .map_err(sock_err("getsockopt(XDP_STATISTICS)"))
    }

    /// The socket's file descriptor (for `poll` in an event loop).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// The XSKMAP the steering program redirects through (shared with the sockets of
    /// this process on other queues of the interface).
    pub fn xsk_map(&self) -> &XskMap {
        &self.steer.steering().map
    }

    /// The attached steering program's link (shared like [`XskSocket::xsk_map`]).
    pub fn xdp_link(&self) -> &XdpLink {
        &self.steer.steering().link
    }

    /// Frames for transmission that are free right now.
    pub fn tx_frames_free(&self) -> u32 {
        self.pool.free_count()
    }

    /// Gives the fill ring the receive frames that dropped batches could not return
    /// (still `Rx` with no batch alive), as far as it has room.
    fn return_stranded(&mut self) {
        let frame_size = self.umem.frame_size() as u64;
        for idx in 0..self.pool.frame_count() {
            if self.rx_stranded == 0 {
                break;
            }
            if self.owners.get(idx) != Some(owner::Owner::Rx) {
                continue;
            }
            if self.fill.free(1, &self.stats.ring_index_anomalies) == 0 {
                break;
            }
            if self.owners.return_rx(idx) {
                self.fill.push(u64::from(idx) * frame_size);
                self.rx_stranded -= 1;
            }
        }
        self.fill.submit();
    }

    /// Returns completed transmit frames to the pool: only frames that are on the tx ring
    /// (a completion naming anything else is counted and ignored).
    fn reclaim(&mut self) {
        let n = self
            .comp
            .available(self.config.tx_frames, &self.stats.ring_index_anomalies);
        for i in 0..n {
            let addr = self.comp.peek(i);
            let freed = match self.pool.id_at_offset(addr) {
                Ok(id)
                    if self.pool.offset_of(id) == addr && self.owners.complete_tx(id.index()) =>
                {
                    self.pool.free(id).is_ok()
                }
                _ => false,
            };
            if freed {
                self.stats.tx_completed.incr();
            } else {
                self.stats.tx_bad_completions.incr();
            }
        }
        if n > 0 {
            self.comp.release(n);
        }
    }

    fn queue_tx(&mut self, f: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        /// Frees `id` when dropped while still set (the caller's closure panicked).
        struct FreeOnUnwind<'p> {
            pool: &'p mut FramePool,
            id: Option<tally_core_types::FrameId>,
        }
        impl Drop for FreeOnUnwind<'_> {
            fn drop(&mut self) {
                if let Some(id) = self.id {
                    let _ = self.pool.free(id);
                }
            }
        }

        if self.tx_queued >= AUTO_FLUSH_FRAMES {
            self.flush()?;
        }
        let anomalies = &self.stats.ring_index_anomalies;
        if self.pool.free_count() == 0 || self.tx.free(1, anomalies) == 0 {
            self.flush()?;
            let anomalies = &self.stats.ring_index_anomalies;
            if self.pool.free_count() == 0 || self.tx.free(1, anomalies) == 0 {
                self.stats.tx_ring_full.incr();
                return Err(TxError::RingFull);
            }
        }
        let id = self.pool.alloc().map_err(|_| TxError::RingFull)?;
        let off = self.pool.offset_of(id);
        let cap = self.umem.frame_size();
        let Some((o, l)) = self.umem.check(off, u32::try_from(cap).unwrap_or(0)) else {
            let _ = self.pool.free(id);
            return Err(TxError::RingFull);
        };
        // SAFETY: `id` was just taken from the pool's free list, so no descriptor refers to
        // it and the kernel does not touch it until we push it on the tx ring below.
        let tx_buf = unsafe { self.umem.bytes_mut(o, l) };
        let len = {
            // A panicking `f` gives the frame back instead of leaking it: 8 panics on an
            // 8-frame socket used to leave every later send `RingFull`.
            let mut guard = FreeOnUnwind {
                pool: &mut self.pool,
                id: Some(id),
            };
            let len = f(tx_buf);
            guard.id = None;
            len
        };
        let vlan = tx_buf.get(12..14) == Some(&[0x81, 0x00][..]);
        if len == 0 || len > cap {
            let _ = self.pool.free(id);
            return if len == 0 {
                Ok(())
            } else {
                Err(TxError::FrameTooLong { len, capacity: cap })
            };
        }
        if len < crate::packet::ETH_HEADER_BYTES {
            // No link carries it, and AF_PACKET refuses it: refuse it here as well.
            let _ = self.pool.free(id);
            return Err(TxError::FrameTooShort {
                len,
                min: crate::packet::ETH_HEADER_BYTES,
            });
        }
        let limit = |max: usize| max.saturating_add(if vlan { VLAN_HLEN } else { 0 });
        if len > limit(self.tx_max_len) {
            // Longer than the link carries: the kernel would take and complete it, and the
            // link drop it. Refuse it, unless the MTU was raised since we last looked.
            self.tx_max_len = read_tx_max_len(&self.mtu_sock, &self.info.ifname);
            let max = limit(self.tx_max_len);
            if len > max {
                let _ = self.pool.free(id);
                return Err(TxError::FrameTooLong { len, capacity: max });
            }
        }
        if !self.owners.send_tx(id.index()) {
            // The pool handed out a frame we do not count as free: keep it out of
            // circulation (still allocated) rather than let two owners share it.
            self.stats.tx_ring_full.incr();
            return Err(TxError::RingFull);
        }
        self.tx.push(XdpDesc {
            addr: off,
            len: u32::try_from(len).unwrap_or(0),
            options: 0,
        });
        self.tx_queued += 1;
        self.stats.tx_packets.incr();
        self.stats.tx_bytes.add(len as u64);
        Ok(())
    }
}

/// Bytes the kernel keeps in front of every received packet (`XDP_PACKET_HEADROOM`), on
/// top of [`XskConfig::headroom`].
const XDP_PACKET_HEADROOM: usize = 256;

/// Bytes of a received frame one UMEM frame of `frame_size` holds: the kernel's rule
/// (`xsk_pool_get_rx_frame_size`, the same in copy and zero-copy mode) is the chunk size
/// minus the UMEM headroom minus `XDP_PACKET_HEADROOM`; a longer frame is dropped (copy
/// mode, counted in `rx_dropped`) or refused by the driver (zero-copy), since this crate
/// does not ask for multi-buffer (`XDP_USE_SG`).
fn rx_frame_capacity(frame_size: usize, headroom: u32) -> usize {
    frame_size
        .saturating_sub(headroom as usize)
        .saturating_sub(XDP_PACKET_HEADROOM)
}

/// Refuses an interface whose largest frame (MTU, Ethernet header and an 802.1Q tag) does
/// not fit the receive capacity of one UMEM frame.
fn check_rx_mtu(ifname: &str, mtu: u32, config: &XskConfig) -> Result<()> {
    let needed = (mtu as usize)
        .saturating_add(crate::packet::ETH_HEADER_BYTES)
        .saturating_add(VLAN_HLEN);
    let capacity = rx_frame_capacity(config.frame_size, config.headroom);
    if needed <= capacity {
        return Ok(());
    }
    Err(BypassError::MtuTooLarge {
        ifname: ifname.to_owned(),
        mtu,
        needed,
        capacity,
        frame_size: config.frame_size,
        headroom: config.headroom,
        max_capacity: rx_frame_capacity(sys::page_size(), config.headroom),
    })
}

/// The interface MTU plus the Ethernet header (no limit when the MTU cannot be read).
fn read_tx_max_len(sock: &OwnedFd, ifname: &str) -> usize {
    sys::if_mtu(sock.as_raw_fd(), ifname).map_or(usize::MAX, |mtu| {
        (mtu as usize).saturating_add(crate::packet::ETH_HEADER_BYTES)
    })
}

/// Checks the length a `getsockopt` wrote against the structure we asked for.
fn check_optlen(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(BypassError::KernelAbi {
            what,
            got,
            expected,
        })
    }
}

fn bind_with_fallback(
    fd: &OwnedFd,
    ifname: &str,
    ifindex: u32,
    queue: u32,
    config: &XskConfig,
) -> Result<(BindMode, Option<String>, u32)> {
    let wake = if config.need_wakeup {
        libc::XDP_USE_NEED_WAKEUP
    } else {
        0
    };
    let mut attempts = 0u32;
    let mut try_bind = |flags: u16| -> std::io::Result<()> {
        let mut addr: libc::sockaddr_xdp = sys::Pod::zeroed();
        addr.sxdp_family = u16::try_from(libc::AF_XDP).unwrap_or(0);
        addr.sxdp_flags = flags | wake;
        addr.sxdp_ifindex = ifindex;
        addr.sxdp_queue_id = queue;
        let mut delay = Duration::from_millis(5);
        loop {
            attempts += 1;
            match sys::bind(fd.as_raw_fd(), &addr) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempts < BIND_ATTEMPTS => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
                r => return r,
            }
        }
    };
    let bind_err = |mode: &'static str, attempts: u32, source| BypassError::Bind {
        ifname: ifname.to_owned(),
        queue,
        mode,
        attempts,
        source,
    };
    match config.bind {
        BindChoice::Copy => match try_bind(libc::XDP_COPY) {
            Ok(()) => Ok((BindMode::Copy, None, attempts)),
            Err(e) => Err(bind_err("copy", attempts, e)),
        },
        BindChoice::ZeroCopy => match try_bind(libc::XDP_ZEROCOPY) {
            Ok(()) => Ok((BindMode::ZeroCopy, None, attempts)),
            Err(e) => Err(bind_err("zero-copy", attempts, e)),
        },
        BindChoice::Auto => match try_bind(libc::XDP_ZEROCOPY) {
            Ok(()) => Ok((BindMode::ZeroCopy, None, attempts)),
            Err(zc) if zc.raw_os_error() == Some(libc::EBUSY) => {
                Err(bind_err("zero-copy", attempts, zc))
            }
            Err(zc) => match try_bind(libc::XDP_COPY) {
                Ok(()) => Ok((
                    BindMode::Copy,
                    Some(format!("zero-copy bind refused: {zc}")),
                    attempts,
                )),
                Err(e) => Err(bind_err("zero-copy then copy", attempts, e)),
            },
        },
    }
}

/// What one rx descriptor of a batch gave us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct RxSlot {
    /// The UMEM offset of the frame the descriptor named, when that frame was held by the
    /// kernel (`Fill`) and is now ours (`Rx`): the batch gives it back to the fill ring.
    chunk: Option<u64>,
    /// The readable `(offset, len)`: the frame is ours and the descriptor lies inside it.
    span: Option<(usize, usize)>,
}

/// Checks one rx descriptor: takes its frame when the kernel held it (`Fill` -> `Rx`),
/// even when the descriptor's length runs past the frame (so the frame is not lost), and
/// makes it readable only when it also lies inside that frame.
fn take_rx_desc(umem: &UmemArea, owners: &mut FrameOwners, d: XdpDesc) -> RxSlot {
    let chunk = umem.chunk_of(d.addr);
    if !owners.take_rx(umem.frame_index(chunk)) {
        return RxSlot::default();
    }
    RxSlot {
        chunk: Some(chunk),
        // `check` accepts only ranges inside the frame that holds `d.addr`.
        span: umem.check(d.addr, d.len),
    }
}

/// Received frames borrowed from an [`XskSocket`]; dropped, they go back to the fill ring.
pub struct XskRxBatch<'a> {
    sock: &'a mut XskSocket,
    count: u32,
}

impl XskRxBatch<'_> {
    /// The span of descriptor `i`, validated (bounds and ownership) and copied when the
    /// batch was taken: the ring entry is not read again.
    fn span(&self, i: usize) -> Option<(usize, usize)> {
        self.sock
            .rx_spans
            .get(..self.count as usize)?
            .get(i)
            .and_then(|slot| slot.span)
    }
}

impl RxBatch for XskRxBatch<'_> {
    fn len(&self) -> usize {
        self.count as usize
    }

    fn frame(&self, i: usize) -> Option<&[u8]> {
        let (off, len) = self.span(i)?;
        // SAFETY: `span` is `Some` only for a descriptor inside one frame whose frame moved
        // from `Fill` (held by the kernel) to `Rx` when the batch was taken, so it is ours
        // until this batch returns it to the fill ring on drop; no transmit frame and no
        // other descriptor of the batch names it; the batch borrows the socket, so nothing
        // else can return or reuse it meanwhile.
        Some(unsafe { self.sock.umem.bytes(off, len) })
    }

    fn parse_context(&self) -> (UdpChecksumPolicy, &ParseStats) {
        (self.sock.config.checksum_policy, &self.sock.parse_stats)
    }

    fn first_reject(&self, i: usize) -> bool {
        i < self.count as usize && self.sock.rx_rejects.set(i)
    }

    fn reply(
        &mut self,
        i: usize,
        f: &mut dyn FnMut(&[u8], &mut [u8]) -> usize,
    ) -> Result<(), TxError> {
        let Some((off, len)) = self.span(i) else {
            return Ok(());
        };
        let rx = self.sock.umem.frame_ref(off, len);
        self.sock.queue_tx(&mut |tx: &mut [u8]| {
            // SAFETY: the rx frame is in state `Rx`, owned by this batch until it is dropped
            // (it is not on the fill ring); the tx frame was just taken from the pool's free
            // list, which holds only `TxFree` frames, so the two are different frames.
            let rx = unsafe { rx.get() };
            f(rx, tx)
        })
    }
}

impl Drop for XskRxBatch<'_> {
    fn drop(&mut self) {
        if self.count == 0 {
            return;
        }
        let sock = &mut *self.sock;
        for slot in sock.rx_spans.get(..self.count as usize).unwrap_or(&[]) {
            // Rejected descriptors that named no frame the kernel held: nothing to give back.
            let Some(chunk) = slot.chunk else {
                continue;
            };
            // The fill ring has a slot for every receive frame, and only frames leaving
            // `Rx` are pushed, so it has room unless the kernel's consumer index is bogus
            // (counted). Look before changing the state: a frame marked `Fill` must be on
            // the fill ring; without room it stays `Rx` (out of circulation, never shared).
            if sock.fill.free(1, &sock.stats.ring_index_anomalies) == 0 {
                // Returned by the next `recv`, once the index is sane again.
                sock.rx_stranded = sock.rx_stranded.saturating_add(1);
                continue;
            }
            if sock.owners.return_rx(sock.umem.frame_index(chunk)) {
                sock.fill.push(chunk);
            }
        }
        sock.fill.submit();
        sock.rx.release(self.count);
        if sock.config.need_wakeup && sock.fill.needs_wakeup() {
            sock.stats.fill_wakeups.incr();
            sys::wake_rx(sock.fd.as_raw_fd());
        }
    }
}

impl PacketTransport for XskSocket {
    type Batch<'a> = XskRxBatch<'a>;

    fn recv(&mut self, max: usize) -> XskRxBatch<'_> {
        if self.rx_stranded > 0 {
            self.return_stranded();
        }
        // `available` never exceeds the rx ring size, the length of `rx_spans`.
        let max = u32::try_from(max)
            .unwrap_or(u32::MAX)
            .min(u32::try_from(self.rx_spans.len()).unwrap_or(u32::MAX));
        let n = self.rx.available(max, &self.stats.ring_index_anomalies);
        self.rx_rejects.clear(n as usize);
        if n > 0 {
            let (mut bytes, mut good) = (0u64, 0u64);
            for i in 0..n {
                let d = self.rx.peek(i);
                let taken = take_rx_desc(&self.umem, &mut self.owners, d);
                if taken.span.is_some() {
                    bytes += u64::from(d.len);
                    good += 1;
                } else {
                    self.stats.rx_invalid_descs.incr();
                }
                if let Some(slot) = self.rx_spans.get_mut(i as usize) {
                    *slot = taken;
                }
            }
            self.stats.rx_packets.add(good);
            self.stats.rx_bytes.add(bytes);
            self.stats.rx_batches.incr();
        } else if self.config.need_wakeup && self.fill.needs_wakeup() {
            self.stats.fill_wakeups.incr();
            sys::wake_rx(self.fd.as_raw_fd());
        }
        XskRxBatch {
            sock: self,
            count: n,
        }
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        if self.rx.available(1, &self.stats.ring_index_anomalies) > 0 {
            return Ok(true);
        }
        if let Some(errno) = self.unbound {
            return Err(sock_err(UNBOUND)(std::io::Error::from_raw_os_error(errno)));
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let ready = sys::poll_one(self.fd.as_raw_fd(), libc::POLLIN, ms)
            .map_err(sock_err("poll(AF_XDP)"))?;
        if !ready {
            // When its interface is unregistered, the kernel unbinds the socket and leaves
            // ENETDOWN in SO_ERROR, but `poll` on an unbound AF_XDP socket reports nothing:
            // without this check every wait would just time out, forever.
            if let Some(e) =
                sys::take_socket_error(self.fd.as_raw_fd()).map_err(sock_err("poll(AF_XDP)"))?
            {
                self.unbound = Some(e.raw_os_error().unwrap_or(libc::ENETDOWN));
                return Err(sock_err(UNBOUND)(e));
            }
        }
        Ok(ready)
    }

    fn send_frame(&mut self, f: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        self.queue_tx(f)
    }

    fn flush(&mut self) -> Result<(), TxError> {
        if self.tx_queued > 0 {
            self.tx.submit();
            self.tx_queued = 0;
        }
        // Copy mode handles at most 32 frames per kick and answers EAGAIN while more are
        // left: kick until the kernel has taken everything, with a bound.
        let mut rounds = self.tx.size() / COPY_MODE_TX_BATCH + 4;
        while self.tx.outstanding() > 0 && rounds > 0 {
            rounds -= 1;
            if self.config.need_wakeup
                && !self.tx.needs_wakeup()
                && self.info.bind_mode == BindMode::ZeroCopy
            {
                break;
            }
            self.stats.tx_kicks.incr();
            match sys::kick_tx(self.fd.as_raw_fd()) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS)
                    ) =>
                {
                    self.stats.tx_kick_again.incr();
                    self.reclaim();
                }
                Err(e) => return Err(TxError::Kick(e)),
            }
        }
        self.reclaim();
        Ok(())
    }

    fn kind(&self) -> TransportKind {
        TransportKind::AfXdp
    }

    fn stats(&self) -> TransportStats {
        let s = self.stats.snapshot();
        let k = self.kernel_stats().unwrap_or(sys::Pod::zeroed());
        TransportStats {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_dropped: k.rx_dropped,
            rx_ring_full: k.rx_ring_full,
            rx_fill_ring_empty: k.rx_fill_ring_empty_descs,
            invalid_descs: k.rx_invalid_descs + k.tx_invalid_descs + s.rx_invalid_descs,
            tx_ring_full: s.tx_ring_full,
            tx_kicks: s.tx_kicks,
            rx_malformed: self.parse_stats.snapshot().total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::owner::Owner;
    use super::*;
    use crate::netns::{Side, VethConfig, VethPair};

    /// Opens a small socket in namespace B of a fresh veth pair and runs `f` on it, or
    /// prints why it cannot (not root, kernel refuses) and returns; on CI (`CI` set: root,
    /// Linux 6.x) a refusal fails the test instead of skipping it.
    fn with_socket(tag: &str, f: impl FnOnce(&mut XskSocket) + Send) {
        let on_ci = std::env::var_os("CI").is_some();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(!on_ci, "{tag}: CI must run the AF_XDP tests as root");
            eprintln!("SKIP {tag}: not root (network namespaces and AF_XDP need root)");
            return;
        }
        let pair = match VethPair::new(tag, VethConfig::default()) {
            Ok(p) => p,
            Err(e) if e.is_permission_denied() && !on_ci => {
                eprintln!("SKIP {tag}: not permitted: {e}");
                return;
            }
            Err(e) => panic!("veth setup failed as root: {e}"),
        };
        let ifb = pair.config().if_b.clone();
        pair.run_in(Side::B, move || {
            let config = XskConfig {
                rx_frames: 8,
                tx_frames: 8,
                rx_ring: 8,
                tx_ring: 8,
                // A port nobody sends to: the kernel leaves the rx ring to us.
                filter: XdpFilter::UdpDstPorts(vec![9599]),
                ..XskConfig::default()
            };
            match XskSocket::open(&ifb, 0, config) {
                Ok(mut sock) => f(&mut sock),
                Err(e) if e.is_permission_denied() && !on_ci => {
                    eprintln!("SKIP {tag}: the kernel refused AF_XDP: {e}");
                }
                Err(e) => panic!("AF_XDP open failed as root: {e}"),
            }
        })
        .unwrap();
    }

    fn frames_in(sock: &XskSocket, state: Owner) -> Vec<u32> {
        (0..sock.pool.frame_count())
            .filter(|i| sock.owners.get(*i) == Some(state))
            .collect()
    }

    fn addr(sock: &XskSocket, frame: u32) -> u64 {
        u64::from(frame) * sock.config.frame_size as u64
    }

    #[test]
    fn rx_descriptors_for_frames_we_hold_are_rejected() {
        with_socket("xown", |sock| {
            let rx = frames_in(sock, Owner::Fill);
            let tx = frames_in(sock, Owner::TxFree);
            assert_eq!((rx.len(), tx.len()), (8, 8));
            let (r, t) = (rx[0], tx[0]);
            let desc = |addr, len| XdpDesc {
                addr,
                len,
                options: 0,
            };
            // The kernel takes the first two fill entries (frames rx[0] and rx[1]).
            sock.fill.kernel_consume(2);
            let fill_before = sock.fill.produced();
            sock.rx.inject(desc(addr(sock, r) + 256, 60));
            sock.rx.inject(desc(addr(sock, r) + 512, 60)); // the same frame again
            sock.rx.inject(desc(addr(sock, t), 60)); // a transmit frame
            sock.rx.inject(desc(addr(sock, 1000), 60)); // outside the UMEM
            {
                let mut batch = sock.recv(64);
                assert_eq!(batch.len(), 4);
                assert_eq!(batch.frame(0).map(<[u8]>::len), Some(60));
                assert!(batch.frame(1).is_none(), "duplicate frame accepted");
                assert!(batch.frame(2).is_none(), "transmit frame accepted as rx");
                assert!(batch.frame(3).is_none());
                let mut called = false;
                batch
                    .reply(2, &mut |_, _| {
                        called = true;
                        0
                    })
                    .unwrap();
                assert!(!called, "reply to a rejected descriptor");
                assert_eq!(batch.sock.owners.get(r), Some(Owner::Rx));
                assert_eq!(batch.sock.owners.get(t), Some(Owner::TxFree));
            }
            let s = sock.xsk_stats();
            assert_eq!((s.rx_packets, s.rx_invalid_descs), (1, 3));
            assert_eq!(
                sock.fill.produced().wrapping_sub(fill_before),
                1,
                "the fill ring gets the frame back exactly once"
            );
            assert_eq!(sock.owners.get(r), Some(Owner::Fill));

            // A producer index far ahead (or behind): nothing taken, counted, and read
            // again on every call rather than cached.
            sock.fill.kernel_consume(7);
            let cons = sock.rx.consumer_index();
            let fill_before = sock.fill.produced();
            for (bogus, round) in [(cons.wrapping_add(1000), 1u32), (cons.wrapping_sub(1), 2)] {
                sock.rx.set_producer(bogus);
                let before = sock.xsk_stats();
                for _ in 0..round {
                    assert_eq!(sock.recv(64).len(), 0, "entries taken from a bogus index");
                    // poll() may report POLLIN (the kernel compares the same bogus
                    // indices); what matters is that nothing is taken.
                    let _ = sock.wait(Duration::ZERO);
                }
                let d = sock.xsk_stats().delta(&before);
                assert_eq!(d.ring_index_anomalies, 2 * u64::from(round), "{d:?}");
                assert_eq!((d.rx_packets, d.rx_invalid_descs, d.rx_batches), (0, 0, 0));
                assert_eq!(sock.rx.consumer_index(), cons, "the consumer index moved");
            }
            assert_eq!(sock.fill.produced(), fill_before);
            assert!(frames_in(sock, Owner::Rx).is_empty());
            assert_eq!(frames_in(sock, Owner::Fill).len(), 8);

            // The real index restored: the socket works again, no more anomalies.
            sock.rx.set_producer(cons);
            let before = sock.xsk_stats();
            assert_eq!(sock.recv(64).len(), 0);
            let fill = frames_in(sock, Owner::Fill);
            sock.rx.inject(desc(addr(sock, fill[0]) + 256, 60));
            {
                let batch = sock.recv(64);
                assert_eq!(batch.len(), 1);
                assert_eq!(batch.frame(0).map(<[u8]>::len), Some(60));
            }
            let d = sock.xsk_stats().delta(&before);
            assert_eq!((d.ring_index_anomalies, d.rx_packets), (0, 1), "{d:?}");
            assert_eq!(sock.fill.produced().wrapping_sub(fill_before), 1);
            assert_eq!(frames_in(sock, Owner::Fill).len(), 8);
        });
    }

    #[test]
    fn frames_a_batch_could_not_return_go_back_once_the_fill_index_is_sane() {
        with_socket("xstrand", |sock| {
            let rx = frames_in(sock, Owner::Fill);
            let desc = |addr| XdpDesc {
                addr,
                len: 60,
                options: 0,
            };
            // The kernel takes every fill entry and hands two frames back.
            sock.fill.kernel_consume(8);
            sock.rx.inject(desc(addr(sock, rx[0]) + 256));
            sock.rx.inject(desc(addr(sock, rx[1]) + 256));
            let sane = sock.fill.consumer_index();
            let produced = sock.fill.produced();
            {
                let batch = sock.recv(64);
                assert_eq!(batch.len(), 2);
                // While the batch is out, the fill ring's consumer index goes bogus
                // (past our producer index): the batch cannot give its frames back.
                batch.sock.fill.set_consumer(produced.wrapping_add(100));
            }
            assert_eq!(sock.fill.produced(), produced, "pushed on a bogus ring");
            assert_eq!(frames_in(sock, Owner::Rx), vec![rx[0], rx[1]]);
            assert!(sock.xsk_stats().ring_index_anomalies > 0);
            // Still bogus: nothing moves, nothing is lost.
            assert_eq!(sock.recv(64).len(), 0);
            assert_eq!(frames_in(sock, Owner::Rx).len(), 2);
            // Sane again: the next recv returns them (they used to stay out for good,
            // and rx stopped once every frame was lost this way).
            sock.fill.set_consumer(sane);
            assert_eq!(sock.recv(64).len(), 0);
            assert!(frames_in(sock, Owner::Rx).is_empty());
            assert_eq!(frames_in(sock, Owner::Fill).len(), rx.len());
            assert_eq!(sock.fill.produced().wrapping_sub(produced), 2);
            // And once only.
            assert_eq!(sock.recv(64).len(), 0);
            assert_eq!(sock.fill.produced().wrapping_sub(produced), 2);
        });
    }

    #[test]
    fn rx_descriptor_too_long_for_its_frame_still_returns_the_frame() {
        with_socket("xlong", |sock| {
            let rx = frames_in(sock, Owner::Fill);
            let r = rx[0];
            let frame = u32::try_from(sock.config.frame_size).unwrap();
            sock.fill.kernel_consume(8);
            // More rounds than rx frames: before the fix each one lost its frame, and rx
            // stopped for good once every frame was lost.
            for round in 0..3 * rx.len() {
                let before = sock.xsk_stats();
                let fill_before = sock.fill.produced();
                sock.rx.inject(XdpDesc {
                    addr: addr(sock, r) + 256,
                    len: frame, // runs past the end of its frame
                    options: 0,
                });
                {
                    let batch = sock.recv(64);
                    assert_eq!(batch.len(), 1);
                    assert!(
                        batch.frame(0).is_none(),
                        "an out-of-frame span was readable"
                    );
                    assert_eq!(batch.sock.owners.get(r), Some(Owner::Rx), "round {round}");
                }
                let d = sock.xsk_stats().delta(&before);
                assert_eq!((d.rx_packets, d.rx_invalid_descs), (0, 1), "{d:?}");
                assert_eq!(sock.owners.get(r), Some(Owner::Fill), "frame lost");
                assert_eq!(
                    sock.fill.produced().wrapping_sub(fill_before),
                    1,
                    "the frame is back on the fill ring"
                );
                sock.fill.kernel_consume(1);
            }
            assert_eq!(frames_in(sock, Owner::Fill).len(), rx.len());
        });
    }

    #[test]
    fn rx_descriptor_takes_a_kernel_held_frame_even_when_unreadable() {
        const FRAME: usize = 2048;
        let umem = UmemArea::new(NonNull::dangling(), 4 * FRAME, FRAME);
        let mut owners = FrameOwners::new(4);
        assert!(owners.give_to_fill(0) && owners.give_to_fill(1));
        let d = |addr: u64, len| XdpDesc {
            addr,
            len,
            options: 0,
        };
        let f = FRAME as u64;
        // Inside its frame: taken and readable.
        let ok = take_rx_desc(&umem, &mut owners, d(256, 60));
        assert_eq!((ok.chunk, ok.span), (Some(0), Some((256, 60))));
        // Runs past its frame: still taken (it must go back to the fill ring), unreadable.
        let long = take_rx_desc(&umem, &mut owners, d(f + 256, 2048));
        assert_eq!((long.chunk, long.span), (Some(f), None));
        assert_eq!(owners.get(1), Some(Owner::Rx));
        // The same frame again, a transmit frame, outside the UMEM: nothing taken.
        for (addr, len) in [(f + 512, 60), (2 * f, 60), (4 * f, 60), (u64::MAX, 1)] {
            assert_eq!(
                take_rx_desc(&umem, &mut owners, d(addr, len)),
                RxSlot::default(),
                "{addr:#x}"
            );
        }
        assert_eq!(owners.get(2), Some(Owner::TxFree));
        assert!(owners.return_rx(0) && owners.return_rx(1));
    }

    #[test]
    fn completions_for_frames_not_sent_are_rejected() {
        with_socket("xcomp", |sock| {
            let rx = frames_in(sock, Owner::Fill);
            let tx = frames_in(sock, Owner::TxFree);
            let free = sock.pool.free_count();
            sock.comp.inject(addr(sock, rx[0])); // a receive frame
            sock.comp.inject(addr(sock, tx[0])); // a transmit frame never sent
            sock.comp.inject(addr(sock, 1 << 20)); // outside the UMEM
            sock.reclaim();
            let s = sock.xsk_stats();
            assert_eq!((s.tx_completed, s.tx_bad_completions), (0, 3));
            assert_eq!(sock.pool.free_count(), free, "a frame freed twice");
            assert_eq!(sock.owners.get(rx[0]), Some(Owner::Fill));

            // A frame on the tx ring is accepted once, inside its frame only at its start.
            sock.send_frame(&mut |buf| {
                buf[..60].fill(0xab);
                60
            })
            .unwrap();
            let sent = frames_in(sock, Owner::TxKernel);
            assert_eq!(sent.len(), 1);
            sock.comp.inject(addr(sock, sent[0]) + 64);
            sock.comp.inject(addr(sock, sent[0]));
            sock.comp.inject(addr(sock, sent[0]));
            sock.reclaim();
            let s = sock.xsk_stats();
            assert_eq!((s.tx_completed, s.tx_bad_completions), (1, 5));
            assert_eq!(sock.pool.free_count(), free);
            assert_eq!(sock.owners.get(sent[0]), Some(Owner::TxFree));
        });
    }

    #[test]
    fn frames_larger_than_a_page_are_refused_up_front() {
        // The kernel refuses UMEM chunks above the page size with EINVAL, which used to
        // surface as a UMEM registration error blaming RLIMIT_MEMLOCK.
        let page = sys::page_size();
        for ok in [2048, page] {
            let c = XskConfig {
                frame_size: ok,
                ..XskConfig::default()
            };
            assert!(c.validate().is_ok(), "{ok}");
        }
        for big in [2 * page, 16 * page] {
            let c = XskConfig {
                frame_size: big,
                ..XskConfig::default()
            };
            match c.validate() {
                Err(e @ BypassError::InvalidOption { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("frame_size") && msg.contains(&big.to_string()),
                        "{msg}"
                    );
                }
                other => panic!("frame_size {big}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_mtu_the_frames_cannot_receive_is_refused() {
        let cfg = |frame_size, headroom| XskConfig {
            frame_size,
            headroom,
            ..XskConfig::default()
        };
        // 2048 - 256 = 1792 bytes: an MTU of 1774 (+14 +4) fits, 1775 does not.
        assert!(check_rx_mtu("v", 1500, &cfg(2048, 0)).is_ok());
        assert!(check_rx_mtu("v", 1774, &cfg(2048, 0)).is_ok());
        // The configured headroom counts too: 2048 - 256 - 256 = 1536.
        assert!(check_rx_mtu("v", 1518, &cfg(2048, 256)).is_ok());
        for (mtu, frame, headroom, capacity) in [
            (1775, 2048, 0, 1792),
            (1519, 2048, 256, 1536),
            (9000, 4096, 0, 3840),
        ] {
            match check_rx_mtu("veth9", mtu, &cfg(frame, headroom)) {
                Err(e @ BypassError::MtuTooLarge { .. }) => {
                    let msg = e.to_string();
                    for part in [
                        format!("MTU {mtu}"),
                        format!("at most {capacity} bytes"),
                        "frame_size".to_owned(),
                        "lower the MTU".to_owned(),
                        "AF_PACKET".to_owned(),
                    ] {
                        assert!(msg.contains(&part), "{part}: {msg}");
                    }
                    assert!(!e.is_permission_denied());
                }
                other => panic!("{mtu}/{frame}/{headroom}: {other:?}"),
            }
        }
    }

    #[test]
    fn mmap_offsets_must_have_the_full_length() {
        let full = size_of::<libc::xdp_mmap_offsets>();
        assert!(check_optlen("x", full, full).is_ok());
        // The pre-5.4 layout (no flags offsets) and anything else is refused.
        for got in [0, full - 4 * 8, full - 1, full + 8] {
            match check_optlen("getsockopt(XDP_MMAP_OFFSETS)", got, full) {
                Err(e @ BypassError::KernelAbi { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&got.to_string()) && msg.contains("AF_PACKET"),
                        "{msg}"
                    );
                    assert!(!e.is_permission_denied());
                }
                other => panic!("{got}: {other:?}"),
            }
        }
    }
}
