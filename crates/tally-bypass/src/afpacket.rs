//! [`PacketSocket`]: AF_PACKET with a TPACKET_V3 receive ring and a transmit ring
//! (`PACKET_QDISC_BYPASS`), the fallback when AF_XDP is unavailable.
//!
//! Receive: the kernel fills blocks of the mapped `PACKET_RX_RING` and hands a whole block
//! to us (`TP_STATUS_USER`) when it is full or its retire timeout expires; we read the
//! packets in place and give the block back (`TP_STATUS_KERNEL`) when the last batch from
//! it is dropped. A classic BPF socket filter keeps only IPv4/UDP to the configured
//! ports. Unlike AF_XDP, AF_PACKET cannot steal packets: the kernel stack still sees them,
//! so the socket also binds ordinary UDP sockets to those ports ("port reservations",
//! tiny receive buffers, never read) so that the stack does not answer with ICMP port
//! unreachable.
//!
//! Transmit: frames of the mapped `PACKET_TX_RING` are filled in place, marked
//! `TP_STATUS_SEND_REQUEST` and sent with one `send` per flush.

use core::sync::atomic::{AtomicU32, Ordering};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::error::{BypassError, Result};
use crate::packet::{ParseStats, UdpChecksumPolicy};
use crate::sys::{self, Mapping};
use crate::transport::{PacketTransport, RxBatch, TransportKind, TransportStats, TxError};

/// Offset of `hdr.bh1.block_status` in `struct tpacket_block_desc`.
const BLOCK_STATUS_OFF: usize = 8;
const BLOCK_NUM_PKTS_OFF: usize = 12;
const BLOCK_FIRST_PKT_OFF: usize = 16;
/// `struct tpacket3_hdr` field offsets.
const PKT_NEXT_OFF: usize = 0;
const PKT_SNAPLEN_OFF: usize = 12;
const PKT_LEN_OFF: usize = 16;
const PKT_STATUS_OFF: usize = 20;
const PKT_MAC_OFF: usize = 24;
/// Where transmit data starts in a tx frame: `TPACKET3_HDRLEN - sizeof(sockaddr_ll)`.
const TX_DATA_OFF: usize = 48;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// The most packets one batch holds (the per-batch offset table is allocated once).
pub const MAX_BATCH: usize = 256;

/// Options of [`PacketSocket::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketConfig {
    /// Bytes per receive block (power of two, multiple of the page size).
    pub block_size: u32,
    /// Receive blocks.
    pub block_count: u32,
    /// Milliseconds after which a partly filled block is handed to user space. This
    /// bounds receive latency: AF_PACKET v3 is a throughput path, not a latency path.
    pub retire_timeout_ms: u32,
    /// Bytes per transmit frame (power of two, at least 2048).
    pub tx_frame_size: u32,
    /// Transmit frames (power of two).
    pub tx_frames: u32,
    /// UDP destination ports to receive; empty means every frame on the interface.
    pub udp_ports: Vec<u16>,
    /// Reserve the ports with ordinary UDP sockets (see the module docs).
    pub reserve_ports: bool,
    /// `PACKET_QDISC_BYPASS` on transmit.
    pub qdisc_bypass: bool,
    /// How received UDP checksums are checked.
    pub checksum_policy: UdpChecksumPolicy,
}

impl Default for PacketConfig {
    fn default() -> Self {
        Self {
            block_size: 1 << 20,
            block_count: 16,
            retire_timeout_ms: 10,
            tx_frame_size: 2048,
            tx_frames: 1024,
            udp_ports: Vec::new(),
            reserve_ports: true,
            qdisc_bypass: true,
            checksum_policy: UdpChecksumPolicy::VerifyOrPartial,
        }
    }
}

tally_core_types::single_writer_stats! {
    /// AF_PACKET counters (single writer: the thread driving the socket).
    pub struct PacketStats => PacketStatsSnapshot {
        /// Frames received.
        rx_packets,
        /// Bytes received.
        rx_bytes,
        /// Blocks returned to the kernel.
        rx_blocks,
        /// Packet headers pointing outside their block (the rest of the block is skipped).
        rx_invalid,
        /// Drops the kernel reported (`PACKET_STATISTICS` `tp_drops`, accumulated).
        rx_kernel_drops,
        /// Frames queued for transmission.
        tx_packets,
        /// Bytes queued for transmission.
        tx_bytes,
        /// Sends refused because no tx frame was free.
        tx_ring_full,
        /// Frames the kernel rejected (`TP_STATUS_WRONG_FORMAT`).
        tx_wrong_format,
        /// `send` kicks.
        tx_kicks,
    }
}

/// An AF_PACKET socket with TPACKET_V3 receive and transmit rings.
pub struct PacketSocket {
    map: Mapping,
    fd: OwnedFd,
    _reservations: Vec<UdpSocket>,
    rx_bytes_total: usize,
    block_size: usize,
    block_count: u32,
    tx_frame_size: usize,
    tx_frames: u32,
    /// Current receive block and how many of its packets were consumed.
    block: u32,
    block_consumed: u32,
    /// Offset (in the block) of the next unconsumed packet, 0 when not started.
    next_pkt: usize,
    /// The current block's last packet has been taken.
    block_exhausted: bool,
    /// Offsets and lengths of the current batch's packets (absolute in the mapping).
    batch: Box<[(usize, usize)]>,
    tx_next: u32,
    tx_queued: u32,
    stats: PacketStats,
    parse_stats: ParseStats,
    checksum_policy: UdpChecksumPolicy,
    ifindex: u32,
}

impl core::fmt::Debug for PacketSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketSocket")
            .field("ifindex", &self.ifindex)
            .finish_non_exhaustive()
    }
}

fn sock_err(op: &'static str) -> impl FnOnce(std::io::Error) -> BypassError {
    move |source| BypassError::Socket { op, source }
}

/// A classic BPF program accepting IPv4/UDP (not fragmented) to one of `ports`.
fn udp_port_filter(ports: &[u16]) -> Result<Vec<libc::sock_filter>> {
    if ports.is_empty() || ports.len() > 64 {
        return Err(BypassError::InvalidOption {
            what: "UDP ports in the AF_PACKET filter (1..=64)",
            value: ports.len() as u64,
        });
    }
    let n = ports.len();
    let drop_at = 8 + n;
    let accept_at = drop_at + 1;
    let rel = |from: usize, to: usize| u8::try_from(to - from - 1).unwrap_or(0);
    let ins = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let mut p = vec![
        ins(0x28, 0, 0, 12),                   // ldh [12]
        ins(0x15, 0, rel(1, drop_at), 0x0800), // jeq IPv4
        ins(0x30, 0, 0, 23),                   // ldb [23]
        ins(0x15, 0, rel(3, drop_at), 17),     // jeq UDP
        ins(0x28, 0, 0, 20),                   // ldh [20]
        ins(0x45, rel(5, drop_at), 0, 0x3fff), // jset fragment -> drop
        ins(0xb1, 0, 0, 14),                   // ldxb 4*([14]&0xf)
        ins(0x48, 0, 0, 16),                   // ldh [x+16]
    ];
    for (i, port) in ports.iter().enumerate() {
        p.push(ins(0x15, rel(8 + i, accept_at), 0, u32::from(*port)));
    }
    p.push(ins(0x06, 0, 0, 0)); // drop
    p.push(ins(0x06, 0, 0, 0x0004_0000)); // accept
    Ok(p)
}

impl PacketSocket {
    /// Opens an AF_PACKET socket on `ifname` with the rings and filter of `config`.
    ///
    /// # Errors
    /// [`BypassError::Interface`], [`BypassError::InvalidOption`],
    /// [`BypassError::Socket`] (needs `CAP_NET_RAW`), [`BypassError::RingMap`].
    #[allow(
        clippy::too_many_lines,
        reason = "one linear set-up sequence, each step a few lines"
    )]
    pub fn open(ifname: &str, config: &PacketConfig) -> Result<Self> {
        let ifindex = sys::if_nametoindex(ifname).map_err(|source| BypassError::Interface {
            name: ifname.to_owned(),
            source,
        })?;
        for (what, v, min) in [
            ("block_size (power of two >= 4096)", config.block_size, 4096),
            ("block_count (power of two)", config.block_count, 1),
            (
                "tx_frame_size (power of two >= 2048)",
                config.tx_frame_size,
                2048,
            ),
            ("tx_frames (power of two >= 8)", config.tx_frames, 8),
        ] {
            if !v.is_power_of_two() || v < min {
                return Err(BypassError::InvalidOption {
                    what,
                    value: u64::from(v),
                });
            }
        }
        // Protocol 0: receive nothing until the filter is in place and we bind.
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
            .map_err(sock_err("socket(AF_PACKET)"))?;
        let raw = fd.as_raw_fd();
        sys::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as libc::c_int),
        )
        .map_err(sock_err("setsockopt(PACKET_VERSION, TPACKET_V3)"))?;
        if !config.udp_ports.is_empty() {
            let filter = udp_port_filter(&config.udp_ports)?;
            let prog = libc::sock_fprog {
                len: u16::try_from(filter.len()).unwrap_or(0),
                filter: filter.as_ptr().cast_mut(),
            };
            // `prog` points at `filter`, which outlives the call.
            sys::setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
                .map_err(sock_err("setsockopt(SO_ATTACH_FILTER)"))?;
        }
        let one: libc::c_int = 1;
        // Do not see our own transmissions.
        let _ = sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one);
        if config.qdisc_bypass {
            sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one)
                .map_err(sock_err("setsockopt(PACKET_QDISC_BYPASS)"))?;
        }
        let mut rx: libc::tpacket_req3 = sys::Pod::zeroed();
        rx.tp_block_size = config.block_size;
        rx.tp_block_nr = config.block_count;
        rx.tp_frame_size = 2048;
        rx.tp_frame_nr = config.block_size / 2048 * config.block_count;
        rx.tp_retire_blk_tov = config.retire_timeout_ms;
        sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx)
            .map_err(sock_err("setsockopt(PACKET_RX_RING)"))?;
        let tx_block = config.tx_frame_size.max(1 << 16);
        let mut tx: libc::tpacket_req3 = sys::Pod::zeroed();
        tx.tp_block_size = tx_block;
        tx.tp_frame_size = config.tx_frame_size;
        tx.tp_block_nr = (config.tx_frames * config.tx_frame_size).div_ceil(tx_block);
        tx.tp_frame_nr = tx.tp_block_nr * (tx_block / config.tx_frame_size);
        sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx)
            .map_err(sock_err("setsockopt(PACKET_TX_RING)"))?;
        let rx_bytes_total = config.block_size as usize * config.block_count as usize;
        let tx_bytes_total = tx_block as usize * tx.tp_block_nr as usize;
        let map = Mapping::new(&fd, rx_bytes_total + tx_bytes_total, 0).map_err(|source| {
            BypassError::RingMap {
                ring: "PACKET_RX_RING + PACKET_TX_RING",
                source,
            }
        })?;

        let mut reservations = Vec::new();
        if config.reserve_ports {
            for port in &config.udp_ports {
                let s = UdpSocket::bind(("0.0.0.0", *port))
                    .map_err(sock_err("bind(UDP port reservation)"))?;
                let small: libc::c_int = 1;
                let _ = sys::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &small);
                reservations.push(s);
            }
        }

        let mut sll: libc::sockaddr_ll = sys::Pod::zeroed();
        sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(0);
        sll.sll_protocol = u16::try_from(libc::ETH_P_ALL).unwrap_or(0).to_be();
        sll.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
        sys::bind(raw, &sll).map_err(sock_err("bind(AF_PACKET)"))?;

        Ok(Self {
            map,
            fd,
            _reservations: reservations,
            rx_bytes_total,
            block_size: config.block_size as usize,
            block_count: config.block_count,
            tx_frame_size: config.tx_frame_size as usize,
            tx_frames: tx.tp_frame_nr,
            block: 0,
            block_consumed: 0,
            next_pkt: 0,
            block_exhausted: false,
            batch: vec![(0usize, 0usize); MAX_BATCH].into_boxed_slice(),
            tx_next: 0,
            tx_queued: 0,
            stats: PacketStats::new(),
            parse_stats: ParseStats::new(),
            checksum_policy: config.checksum_policy,
            ifindex,
        })
    }

    /// Our counters (call [`PacketTransport::stats`] first to fold in the kernel's drops).
    pub fn packet_stats(&self) -> PacketStatsSnapshot {
        self.stats.snapshot()
    }

    /// Parse rejects of [`RxBatch::udp`].
    pub fn parse_stats(&self) -> &ParseStats {
        &self.parse_stats
    }

    /// The socket's file descriptor.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        static OUT_OF_RANGE: AtomicU32 = AtomicU32::new(0);
        if !off.is_multiple_of(4) || off + 4 > self.map.len() {
            debug_assert!(false, "ring word offset {off} out of range");
            return &OUT_OF_RANGE;
        }
        #[allow(
            clippy::cast_ptr_alignment,
            reason = "offset checked 4-byte aligned; mapping page aligned"
        )]
        let ptr = self.map.as_ptr().wrapping_add(off).cast::<AtomicU32>();
        // SAFETY: `off` is 4-byte aligned and inside the mapping (checked above); the
        // kernel accesses these header words concurrently, hence the atomic.
        unsafe { &*ptr }
    }

    fn u16_at(&self, off: usize) -> u16 {
        let w = self.word(off & !3).load(Ordering::Relaxed).to_ne_bytes();
        let i = off & 2;
        u16::from_ne_bytes([
            w.get(i).copied().unwrap_or(0),
            w.get(i + 1).copied().unwrap_or(0),
        ])
    }

    fn block_base(&self) -> usize {
        self.block as usize * self.block_size
    }

    /// Fills `self.batch` from the current block; returns the count.
    fn fill_batch(&mut self, max: usize) -> usize {
        let base = self.block_base();
        if self.word(base + BLOCK_STATUS_OFF).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return 0;
        }
        let num = self.word(base + BLOCK_NUM_PKTS_OFF).load(Ordering::Relaxed);
        if self.next_pkt == 0 {
            self.next_pkt = self
                .word(base + BLOCK_FIRST_PKT_OFF)
                .load(Ordering::Relaxed) as usize;
        }
        let max = max.min(MAX_BATCH);
        let mut n = 0;
        while n < max && !self.block_exhausted && self.block_consumed as usize + n < num as usize {
            let pkt = self.next_pkt;
            if !pkt.is_multiple_of(4) || pkt + TX_DATA_OFF > self.block_size {
                self.stats.rx_invalid.incr();
                break;
            }
            let h = base + pkt;
            let snap = self.word(h + PKT_SNAPLEN_OFF).load(Ordering::Relaxed) as usize;
            let mac = usize::from(self.u16_at(h + PKT_MAC_OFF));
            let next = self.word(h + PKT_NEXT_OFF).load(Ordering::Relaxed) as usize;
            let _ = (self.word(h + PKT_LEN_OFF), self.word(h + PKT_STATUS_OFF));
            if pkt + mac + snap > self.block_size {
                self.stats.rx_invalid.incr();
                break;
            }
            if let Some(slot) = self.batch.get_mut(n) {
                *slot = (h + mac, snap);
            }
            self.stats.rx_bytes.add(snap as u64);
            n += 1;
            self.next_pkt = pkt + next;
            if next == 0 {
                self.block_exhausted = true;
            }
        }
        if n == 0 {
            // An empty or corrupt block: give it back now.
            self.release_block();
        }
        n
    }

    fn release_block(&mut self) {
        let base = self.block_base();
        self.word(base + BLOCK_STATUS_OFF)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.stats.rx_blocks.incr();
        self.block = (self.block + 1) % self.block_count;
        self.block_consumed = 0;
        self.next_pkt = 0;
        self.block_exhausted = false;
    }

    fn tx_frame_off(&self, i: u32) -> usize {
        self.rx_bytes_total + i as usize * self.tx_frame_size
    }
}

/// Received frames borrowed from a [`PacketSocket`]; dropped, they are consumed (and the
/// block returned to the kernel when its last packet was consumed).
pub struct PacketRxBatch<'a> {
    sock: &'a mut PacketSocket,
    count: usize,
}

impl RxBatch for PacketRxBatch<'_> {
    fn len(&self) -> usize {
        self.count
    }

    fn frame(&self, i: usize) -> Option<&[u8]> {
        let (off, len) = *self.sock.batch.get(..self.count)?.get(i)?;
        // SAFETY: the block holding this packet has TP_STATUS_USER, so the kernel does not
        // write it until we release it on drop; bounds were checked in `fill_batch`.
        Some(unsafe { core::slice::from_raw_parts(self.sock.map.as_ptr().add(off), len) })
    }

    fn parse_context(&self) -> (UdpChecksumPolicy, &ParseStats) {
        (self.sock.checksum_policy, &self.sock.parse_stats)
    }

    fn reply(
        &mut self,
        i: usize,
        f: &mut dyn FnMut(&[u8], &mut [u8]) -> usize,
    ) -> Result<(), TxError> {
        let Some(&(off, len)) = self.sock.batch.get(..self.count).and_then(|b| b.get(i)) else {
            return Ok(());
        };
        let rx_ptr = self.sock.map.as_ptr().wrapping_add(off).cast_const();
        self.sock.send_frame(&mut |tx: &mut [u8]| {
            // SAFETY: the rx block is ours until this batch is dropped, and it lies in the rx
            // part of the mapping, disjoint from the tx frame being written.
            let rx = unsafe { core::slice::from_raw_parts(rx_ptr, len) };
            f(rx, tx)
        })
    }
}

impl Drop for PacketRxBatch<'_> {
    fn drop(&mut self) {
        if self.count == 0 {
            return;
        }
        let sock = &mut *self.sock;
        sock.block_consumed += u32::try_from(self.count).unwrap_or(0);
        let num = sock
            .word(sock.block_base() + BLOCK_NUM_PKTS_OFF)
            .load(Ordering::Relaxed);
        if sock.block_consumed >= num || sock.block_exhausted {
            sock.release_block();
        }
    }
}

impl PacketTransport for PacketSocket {
    type Batch<'a> = PacketRxBatch<'a>;

    fn recv(&mut self, max: usize) -> PacketRxBatch<'_> {
        let mut count = self.fill_batch(max);
        if count == 0 {
            // The block may have been empty: try the next one once.
            count = self.fill_batch(max);
        }
        self.stats.rx_packets.add(count as u64);
        PacketRxBatch { sock: self, count }
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        if self
            .word(self.block_base() + BLOCK_STATUS_OFF)
            .load(Ordering::Acquire)
            & TP_STATUS_USER
            != 0
        {
            return Ok(true);
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        sys::poll_one(self.fd.as_raw_fd(), libc::POLLIN, ms).map_err(sock_err("poll(AF_PACKET)"))
    }

    fn send_frame(&mut self, f: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        let hdr = self.tx_frame_off(self.tx_next);
        let status = self.word(hdr + PKT_STATUS_OFF).load(Ordering::Acquire);
        if status == TP_STATUS_WRONG_FORMAT {
            self.stats.tx_wrong_format.incr();
        } else if status != TP_STATUS_KERNEL {
            self.flush()?;
            if self.word(hdr + PKT_STATUS_OFF).load(Ordering::Acquire)
                & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING)
                != 0
            {
                self.stats.tx_ring_full.incr();
                return Err(TxError::RingFull);
            }
        }
        let cap = self.tx_frame_size - TX_DATA_OFF;
        // SAFETY: this tx frame is available (status checked above), so the kernel does not
        // read it until we set TP_STATUS_SEND_REQUEST; it lies inside the tx part of the
        // mapping, disjoint from every rx block.
        let buf = unsafe {
            core::slice::from_raw_parts_mut(self.map.as_ptr().add(hdr + TX_DATA_OFF), cap)
        };
        let len = f(buf);
        if len == 0 {
            return Ok(());
        }
        if len > cap {
            return Err(TxError::FrameTooLong { len, capacity: cap });
        }
        self.word(hdr + PKT_NEXT_OFF).store(0, Ordering::Relaxed);
        self.word(hdr + PKT_LEN_OFF)
            .store(u32::try_from(len).unwrap_or(0), Ordering::Relaxed);
        self.word(hdr + PKT_SNAPLEN_OFF)
            .store(u32::try_from(len).unwrap_or(0), Ordering::Relaxed);
        self.word(hdr + PKT_STATUS_OFF)
            .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.tx_next = (self.tx_next + 1) % self.tx_frames;
        self.tx_queued += 1;
        self.stats.tx_packets.incr();
        self.stats.tx_bytes.add(len as u64);
        if self.tx_queued >= 64 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TxError> {
        if self.tx_queued == 0 {
            return Ok(());
        }
        self.tx_queued = 0;
        self.stats.tx_kicks.incr();
        // SAFETY: send with no buffer tells the kernel to transmit the ring's requests.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), core::ptr::null(), 0, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) {
                return Err(TxError::Kick(e));
            }
        }
        Ok(())
    }

    fn kind(&self) -> TransportKind {
        TransportKind::AfPacket
    }

    /// Reading `PACKET_STATISTICS` resets the kernel's counters, so this folds them into
    /// our own: call it from the thread that drives the socket.
    fn stats(&self) -> TransportStats {
        if let Ok((k, _)) = sys::getsockopt::<libc::tpacket_stats_v3>(
            self.fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
        ) {
            self.stats.rx_kernel_drops.add(u64::from(k.tp_drops));
        }
        let s = self.stats.snapshot();
        TransportStats {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_dropped: s.rx_kernel_drops,
            invalid_descs: s.rx_invalid + s.tx_wrong_format,
            tx_ring_full: s.tx_ring_full,
            tx_kicks: s.tx_kicks,
            rx_malformed: self.parse_stats.snapshot().total(),
            ..TransportStats::default()
        }
    }
}
