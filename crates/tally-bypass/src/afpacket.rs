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
//! `TP_STATUS_SEND_REQUEST` and handed to the kernel by a non-blocking `send` kick
//! (`MSG_DONTWAIT`) per flush. Frames the kernel has not taken yet (a kick answered with
//! ENOBUFS or EAGAIN, a kick that failed, a partial kick) stay marked and are tracked, so
//! the next flush kicks again; and a send that finds its slot still busy always kicks
//! before it reports [`TxError::RingFull`].
//!
//! A frame longer than the interface MTU plus its Ethernet header (the MTU is read when
//! the socket opens, and again after a rejection) is refused with
//! [`TxError::FrameTooLong`] before it reaches the ring. The kernel stops at a frame it
//! still rejects as malformed (`TP_STATUS_WRONG_FORMAT`, for example after the MTU was
//! lowered; counted once per rejection in `tx_wrong_format`) until that slot is written
//! again: the frames queued behind it wait, and the next send writes its frame into that
//! very slot, so the kernel resumes with it and then sends the frames that waited. A
//! rejected frame therefore delays the frames behind it until the next send, and never
//! wedges the ring.

use core::sync::atomic::{AtomicU32, Ordering};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::error::{BypassError, Result};
use crate::packet::{ParseStats, UdpChecksumPolicy};
use crate::sys::{self, Mapping};
use crate::transport::{
    BatchFlags, PacketTransport, RxBatch, TransportKind, TransportStats, TxError,
};

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
/// The lowest offset a packet can have in a receive block (past the block descriptor
/// words we read); the kernel puts the first one at 48.
const MIN_PKT_OFF: usize = BLOCK_FIRST_PKT_OFF + 4;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// Receive status: the frame had an 802.1Q (or 802.1ad) tag, stripped into `tp_vlan_tci`.
const TP_STATUS_VLAN_VALID: u32 = 0x10;
/// Receive status: `tp_vlan_tpid` says which tag it was (older kernels: 802.1Q).
const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;
/// `struct tpacket3_hdr` offsets of `hv1.tp_vlan_tci` and `hv1.tp_vlan_tpid`.
const PKT_VLAN_TCI_OFF: usize = 32;
const PKT_VLAN_TPID_OFF: usize = 36;
/// The 802.1Q tag protocol identifier.
const ETH_P_8021Q: u16 = 0x8100;
/// The most packets one batch holds (the per-batch offset table is allocated once).
pub const MAX_BATCH: usize = 256;
/// Frames marked for transmission since the last kick that make the next send kick first.
const AUTO_KICK_FRAMES: u32 = 64;
/// Bytes of an Ethernet header, which the kernel allows on top of the MTU.
const ETH_HLEN: usize = 14;
/// Bytes of an 802.1Q tag, which the kernel also allows on a frame that carries one.
const VLAN_HLEN: usize = 4;

/// Options of [`PacketSocket::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketConfig {
    /// Bytes per receive block (power of two, multiple of the page size).
    pub block_size: u32,
    /// Receive blocks.
    pub block_count: u32,
    /// Milliseconds after which a partly filled block is handed to user space. This
    /// bounds receive latency: AF_PACKET v3 is a throughput path, not a latency path.
    ///
    /// 0 does not mean "no timeout" or "immediately": it asks for the kernel's default,
    /// which the kernel computes once when the ring is set up: 8 ms when the link speed is
    /// unknown or below 1 Gb/s (veth, for example), otherwise the time one block takes
    /// to fill at line rate plus 1 ms (9 ms for a 1 MiB block at 1 Gb/s, 1 ms at
    /// 10 Gb/s and above).
    pub retire_timeout_ms: u32,
    /// Bytes per transmit frame (power of two, at least 2048).
    pub tx_frame_size: u32,
    /// Transmit frames (power of two).
    pub tx_frames: u32,
    /// UDP destination ports to receive (in untagged or priority-tagged frames: other
    /// VLANs' frames are dropped); empty means every frame on the interface, tagged or not.
    pub udp_ports: Vec<u16>,
    /// Reserve the ports with ordinary UDP sockets (see the module docs).
    pub reserve_ports: bool,
    /// `PACKET_QDISC_BYPASS` on transmit.
    pub qdisc_bypass: bool,
    /// How received UDP checksums are checked.
    pub checksum_policy: UdpChecksumPolicy,
    /// Join a `PACKET_FANOUT` group: the sockets of one group on one interface share its
    /// frames, each frame going to one of them (one receive thread per socket, like one
    /// AF_XDP socket per queue). `None`: this socket receives every matching frame.
    pub fanout: Option<PacketFanout>,
}

/// A `PACKET_FANOUT` group ([`PacketConfig::fanout`]). Every socket of a group must use
/// the same interface, mode and ports; their port reservations are shared
/// (`SO_REUSEPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFanout {
    /// The group's id, unique per network namespace.
    pub group: u16,
    /// How frames are spread over the group's sockets.
    pub mode: FanoutMode,
}

/// How a [`PacketFanout`] group spreads frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FanoutMode {
    /// By the flow's hash (`PACKET_FANOUT_HASH`): all frames of one flow go to one
    /// socket, so per-flow order holds.
    Hash,
    /// In turn (`PACKET_FANOUT_LB`): even load, no per-flow order across sockets.
    RoundRobin,
    /// By the CPU that received the frame (`PACKET_FANOUT_CPU`).
    Cpu,
}

impl FanoutMode {
    fn kernel_value(self) -> u32 {
        match self {
            Self::Hash => 0,
            Self::RoundRobin => 1,
            Self::Cpu => 2,
        }
    }
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
            fanout: None,
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
        /// Receive blocks with a packet header pointing outside the block (counted once
        /// per block; the rest of that block is skipped and the block returned).
        rx_invalid,
        /// Drops the kernel reported (`PACKET_STATISTICS` `tp_drops`, accumulated).
        rx_kernel_drops,
        /// Frames queued for transmission.
        tx_packets,
        /// Bytes queued for transmission.
        tx_bytes,
        /// Sends refused because no tx frame was free.
        tx_ring_full,
        /// Frames the kernel rejected (`TP_STATUS_WRONG_FORMAT`, for example longer than
        /// an MTU lowered after the socket opened): they are not sent, and the next send
        /// takes their slot (see the module docs).
        tx_wrong_format,
        /// `send` kicks.
        tx_kicks,
        /// Kicks answered with ENOBUFS or EAGAIN (device queue full, socket send buffer
        /// full): the frames stay queued in the ring and the next flush or send retries
        /// them.
        tx_kick_again,
    }
}

/// Transmit-ring bookkeeping, kept apart from the mapping so that it can be tested alone.
///
/// Slots are written in ring order, as the kernel sends them, starting at `next`. The
/// kernel keeps its own head, the slot it sends next, and advances it only past frames it
/// took; `head` mirrors it: the `pending` slots from `head` on were marked
/// `TP_STATUS_SEND_REQUEST` and had not been taken when we last looked. The kernel takes
/// frames only inside a kick, in order, so looking after each kick keeps this exact.
///
/// A frame the kernel rejects (`TP_STATUS_WRONG_FORMAT`) leaves its head on that slot
/// until the slot is marked again. So once the slot at `head` is seen rejected, the next
/// send writes `head` instead of `next` (the kernel resumes there), rather than waiting
/// one ring lap for `next` to come round, which would never happen if the ring behind the
/// rejected slot is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TxCursor {
    /// Slots in the ring (at least 1).
    frames: u32,
    /// The next slot to write in ring order.
    next: u32,
    /// The oldest marked slot not yet seen taken: the kernel's head (equal to `next`
    /// when nothing is pending).
    head: u32,
    /// Marked slots not yet seen taken: `pending` slots from `head` on.
    pending: u32,
    /// The slot at `head` was seen rejected (and counted): the kernel stays on it until it
    /// is marked again, which the next send does.
    head_rejected: bool,
    /// Slots marked since the last kick.
    unkicked: u32,
}

impl TxCursor {
    fn new(frames: u32) -> Self {
        Self {
            frames: frames.max(1),
            next: 0,
            head: 0,
            pending: 0,
            head_rejected: false,
            unkicked: 0,
        }
    }

    /// The slot after `slot`.
    fn after(&self, slot: u32) -> u32 {
        if slot.saturating_add(1) >= self.frames {
            0
        } else {
            slot + 1
        }
    }

    /// The slot the next send writes: the rejected head slot if there is one, else `next`.
    fn write_slot(&self) -> u32 {
        if self.head_rejected {
            self.head
        } else {
            self.next
        }
    }

    /// Marked frames the kernel has not taken, not counting a rejected one.
    fn waiting(&self) -> u32 {
        self.pending - u32::from(self.head_rejected && self.pending > 0)
    }

    /// Slot [`TxCursor::write_slot`] was just marked for sending.
    fn marked(&mut self) {
        self.unkicked = self.unkicked.saturating_add(1);
        if self.head_rejected {
            // The rejected head slot was written again: the kernel resumes from it, and
            // it stays pending.
            self.head_rejected = false;
            return;
        }
        if self.pending == 0 {
            self.head = self.next;
        } else if self.pending >= self.frames {
            // `next` was the oldest pending slot, and it was free (taken after we last
            // looked): it is the newest now.
            self.head = self.after(self.head);
        }
        self.next = self.after(self.next);
        self.pending = self.pending.saturating_add(1).min(self.frames);
    }

    /// Drops from `pending` the oldest slots the kernel has taken (`status(slot)` no
    /// longer has `TP_STATUS_SEND_REQUEST`); returns how many newly rejected frames
    /// (`TP_STATUS_WRONG_FORMAT`) it found. The kernel stops at a rejected slot, so
    /// `head` stays on it (see [`TxCursor::write_slot`]).
    fn reap(&mut self, mut status: impl FnMut(u32) -> u32) -> u32 {
        let mut wrong_format = 0;
        while self.pending > 0 {
            let st = status(self.head);
            if st & TP_STATUS_SEND_REQUEST != 0 {
                break;
            }
            if st & TP_STATUS_WRONG_FORMAT != 0 {
                if !self.head_rejected {
                    wrong_format += 1;
                    self.head_rejected = true;
                }
                // The kernel stays here, unless it has taken the next marked slot anyway
                // (then it moved on, and so do we).
                let moved_on =
                    self.pending > 1 && status(self.after(self.head)) & TP_STATUS_SEND_REQUEST == 0;
                if !moved_on {
                    break;
                }
            }
            self.head = self.after(self.head);
            self.pending -= 1;
            self.head_rejected = false;
        }
        wrong_format
    }
}

/// Whether a transmit slot with this status may not be written (the kernel still owns it).
fn tx_slot_busy(status: u32) -> bool {
    status & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0
}

/// Ring sizes derived from a [`PacketConfig`], validated and overflow-checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    rx_frame_nr: u32,
    tx_block: u32,
    tx_block_nr: u32,
    tx_frame_nr: u32,
    rx_bytes: usize,
    tx_bytes: usize,
}

impl Geometry {
    fn new(config: &PacketConfig) -> Result<Self> {
        for (what, v, min) in [
            (
                "block_size (power of two >= 4096; set PacketConfig::block_size)",
                config.block_size,
                4096,
            ),
            (
                "block_count (power of two >= 1; set PacketConfig::block_count)",
                config.block_count,
                1,
            ),
            (
                "tx_frame_size (power of two >= 2048; set PacketConfig::tx_frame_size)",
                config.tx_frame_size,
                2048,
            ),
            (
                "tx_frames (power of two >= 8; set PacketConfig::tx_frames)",
                config.tx_frames,
                8,
            ),
        ] {
            if !v.is_power_of_two() || v < min {
                return Err(BypassError::InvalidOption {
                    what,
                    value: u64::from(v),
                });
            }
        }
        // The kernel refuses rings of 4 GiB or more (EINVAL): say so up front.
        let rx_total = config
            .block_size
            .checked_mul(config.block_count)
            .ok_or(BypassError::InvalidOption {
                what: "block_size * block_count (receive ring bytes, below 4 GiB; use smaller or fewer blocks)",
                value: u64::from(config.block_size) * u64::from(config.block_count),
            })?;
        let rx_frame_nr = rx_total / 2048;
        let tx_total = config
            .tx_frames
            .checked_mul(config.tx_frame_size)
            .ok_or(BypassError::InvalidOption {
                what: "tx_frames * tx_frame_size (transmit ring bytes, below 4 GiB; use fewer or smaller frames)",
                value: u64::from(config.tx_frames) * u64::from(config.tx_frame_size),
            })?;
        let tx_block = config.tx_frame_size.max(1 << 16);
        let tx_block_nr = tx_total.div_ceil(tx_block);
        let tx_frame_nr = tx_block_nr
            .checked_mul(tx_block / config.tx_frame_size)
            .ok_or(BypassError::InvalidOption {
                what: "tx_frames (transmit frames after rounding up to 64 KiB blocks, below 2^32)",
                value: u64::from(config.tx_frames),
            })?;
        let tx_bytes = usize::try_from(u64::from(tx_block) * u64::from(tx_block_nr)).map_err(
            |_| BypassError::InvalidOption {
                what: "tx_frames * tx_frame_size (transmit ring bytes; use fewer or smaller frames)",
                value: u64::from(tx_total),
            },
        )?;
        let rx_bytes = usize::try_from(rx_total).map_err(|_| BypassError::InvalidOption {
            what: "block_size * block_count (receive ring bytes; use smaller or fewer blocks)",
            value: u64::from(rx_total),
        })?;
        rx_bytes
            .checked_add(tx_bytes)
            .ok_or(BypassError::InvalidOption {
                what: "receive plus transmit ring bytes (too large to map; shrink the rings)",
                value: u64::from(rx_total) + u64::from(tx_total),
            })?;
        Ok(Self {
            rx_frame_nr,
            tx_block,
            tx_block_nr,
            tx_frame_nr,
            rx_bytes,
            tx_bytes,
        })
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
    /// Current receive block and how many of its packets were consumed.
    block: u32,
    block_consumed: u32,
    /// Offset (in the block) of the next unconsumed packet, 0 when not started.
    next_pkt: usize,
    /// The current block's last packet has been taken.
    block_exhausted: bool,
    /// Offsets and lengths of the current batch's packets (absolute in the mapping), and
    /// the TCI of the 802.1Q tag the kernel stripped from each, if it had one.
    batch: Box<[(usize, usize, Option<u16>)]>,
    /// The frames of the current batch whose parse reject was counted.
    rx_rejects: BatchFlags,
    tx: TxCursor,
    /// The longest frame the kernel accepts for transmission without a VLAN tag: the
    /// interface MTU plus the Ethernet header (re-read after a rejection).
    tx_max_len: usize,
    /// The interface name, to re-read its MTU.
    ifname: String,
    stats: PacketStats,
    parse_stats: ParseStats,
    checksum_policy: UdpChecksumPolicy,
    ifindex: u32,
    /// The interface was deleted: the socket is bound to nothing, for good.
    unbound: bool,
}

impl core::fmt::Debug for PacketSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketSocket")
            .field("ifindex", &self.ifindex)
            .finish_non_exhaustive()
    }
}

/// The operation named in the error of `wait` once the interface is gone.
const UNBOUND: &str = "poll(AF_PACKET): the socket's interface was deleted; open a new socket";

fn sock_err(op: &'static str) -> impl FnOnce(std::io::Error) -> BypassError {
    move |source| BypassError::Socket { op, source }
}

/// `SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT`: classic BPF's "the frame had an 802.1Q tag".
const SKF_VLAN_TAG_PRESENT: u32 = (-0x1000i32 + 48).cast_unsigned();
/// `SKF_AD_OFF + SKF_AD_VLAN_TAG`: the tag's TCI.
const SKF_VLAN_TAG: u32 = (-0x1000i32 + 44).cast_unsigned();

/// A classic BPF program accepting IPv4/UDP (not fragmented) to one of `ports`, untagged
/// or priority-tagged (VLAN 0). Frames of other VLANs are dropped: they belong to a VLAN
/// interface, and the kernel has moved their tag out of the bytes the filter reads.
/// Repeated ports are compared once.
fn udp_port_filter(ports: &[u16]) -> Result<Vec<libc::sock_filter>> {
    let ports = crate::bpf::port_set(ports);
    if ports.is_empty() || ports.len() > 64 {
        return Err(BypassError::InvalidOption {
            what: "distinct UDP ports in the AF_PACKET filter (1..=64)",
            value: ports.len() as u64,
        });
    }
    let n = ports.len();
    let drop_at = 12 + n;
    let accept_at = drop_at + 1;
    let rel = |from: usize, to: usize| u8::try_from(to - from - 1).unwrap_or(0);
    let ins = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let mut p = vec![
        ins(0x20, 0, 0, SKF_VLAN_TAG_PRESENT), // ld vlan_avail
        ins(0x15, rel(1, 4), 0, 0),            // jeq 0 -> untagged
        ins(0x20, 0, 0, SKF_VLAN_TAG),         // ld vlan_tci
        ins(0x45, rel(3, drop_at), 0, 0x0fff), // jset VLAN id -> drop
        ins(0x28, 0, 0, 12),                   // ldh [12]
        ins(0x15, 0, rel(5, drop_at), 0x0800), // jeq IPv4
        ins(0x30, 0, 0, 23),                   // ldb [23]
        ins(0x15, 0, rel(7, drop_at), 17),     // jeq UDP
        ins(0x28, 0, 0, 20),                   // ldh [20]
        ins(0x45, rel(9, drop_at), 0, 0x3fff), // jset fragment -> drop
        ins(0xb1, 0, 0, 14),                   // ldxb 4*([14]&0xf)
        ins(0x48, 0, 0, 16),                   // ldh [x+16]
    ];
    for (i, port) in ports.iter().enumerate() {
        p.push(ins(0x15, rel(12 + i, accept_at), 0, u32::from(*port)));
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
        let geo = Geometry::new(config)?;
        let ifindex = sys::if_nametoindex(ifname).map_err(|source| BypassError::Interface {
            name: ifname.to_owned(),
            source,
        })?;
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
        rx.tp_frame_nr = geo.rx_frame_nr;
        rx.tp_retire_blk_tov = config.retire_timeout_ms;
        sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx)
            .map_err(sock_err("setsockopt(PACKET_RX_RING)"))?;
        let mut tx: libc::tpacket_req3 = sys::Pod::zeroed();
        tx.tp_block_size = geo.tx_block;
        tx.tp_frame_size = config.tx_frame_size;
        tx.tp_block_nr = geo.tx_block_nr;
        tx.tp_frame_nr = geo.tx_frame_nr;
        sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx)
            .map_err(sock_err("setsockopt(PACKET_TX_RING)"))?;
        // `Geometry::new` checked that the sum fits.
        let map_bytes = geo.rx_bytes.saturating_add(geo.tx_bytes);
        let map = Mapping::new(&fd, map_bytes, 0).map_err(|source| BypassError::RingMap {
            ring: "PACKET_RX_RING + PACKET_TX_RING",
            source,
        })?;

        let mut reservations = Vec::new();
        if config.reserve_ports {
            // Each port once: a repeated port would collide with its own reservation.
            for port in crate::bpf::port_set(&config.udp_ports) {
                // The sockets of a fanout group share their reservations.
                let s = sys::udp_bound(port, config.fanout.is_some())
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
        if let Some(f) = config.fanout {
            // Only a bound socket can join; the kernel checks that the group's sockets
            // match (interface, protocol, mode).
            const PACKET_FANOUT: libc::c_int = 18;
            let arg = u32::from(f.group) | (f.mode.kernel_value() << 16);
            sys::setsockopt(raw, libc::SOL_PACKET, PACKET_FANOUT, &arg)
                .map_err(sock_err("setsockopt(PACKET_FANOUT)"))?;
        }
        let mtu = sys::if_mtu(raw, ifname).map_err(sock_err("ioctl(SIOCGIFMTU)"))?;

        Ok(Self {
            map,
            fd,
            _reservations: reservations,
            rx_bytes_total: geo.rx_bytes,
            block_size: config.block_size as usize,
            block_count: config.block_count,
            tx_frame_size: config.tx_frame_size as usize,
            block: 0,
            block_consumed: 0,
            next_pkt: 0,
            block_exhausted: false,
            batch: vec![(0usize, 0usize, None); MAX_BATCH].into_boxed_slice(),
            rx_rejects: BatchFlags::new(MAX_BATCH),
            tx: TxCursor::new(geo.tx_frame_nr),
            tx_max_len: (mtu as usize).saturating_add(ETH_HLEN),
            ifname: ifname.to_owned(),
            stats: PacketStats::new(),
            parse_stats: ParseStats::new(),
            checksum_policy: config.checksum_policy,
            ifindex,
            unbound: false,
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

    /// Fills `self.batch` with up to `max` packets of the current block; returns the
    /// count. Gives the block back only when it turns out to be fully consumed already
    /// (or empty), or corrupt from its first unread packet on (counted).
    fn fill_batch(&mut self, max: usize) -> usize {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return 0;
        }
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
        let mut n = 0;
        while n < max && !self.block_exhausted && (self.block_consumed as usize) + n < num as usize
        {
            let pkt = self.next_pkt;
            if !self.packet_in_block(pkt) {
                self.block_corrupt();
                break;
            }
            let h = base + pkt;
            let snap = self.word(h + PKT_SNAPLEN_OFF).load(Ordering::Relaxed) as usize;
            let mac = usize::from(self.u16_at(h + PKT_MAC_OFF));
            let next = self.word(h + PKT_NEXT_OFF).load(Ordering::Relaxed) as usize;
            let _ = (self.word(h + PKT_LEN_OFF), self.word(h + PKT_STATUS_OFF));
            if pkt
                .checked_add(mac)
                .and_then(|e| e.checked_add(snap))
                .is_none_or(|end| end > self.block_size)
            {
                self.block_corrupt();
                break;
            }
            let tag = self.stripped_tag(h);
            if let Some(slot) = self.batch.get_mut(n) {
                *slot = (h + mac, snap, tag);
            }
            self.stats.rx_bytes.add(snap as u64);
            n += 1;
            if next == 0 {
                self.block_exhausted = true;
            } else {
                self.next_pkt = pkt.saturating_add(next);
            }
        }
        if n == 0 {
            // Nothing left to read here: every packet was consumed (or there were none),
            // or the next one is corrupt (counted). Give the block back.
            self.release_block();
        }
        n
    }

    /// The TCI of the 802.1Q tag the kernel stripped from the packet whose header is at
    /// `h` (checked to lie inside its block), if it had one. An 802.1ad tag is not
    /// reported: the kernel allows only 802.1Q tags on top of the MTU on transmit.
    fn stripped_tag(&self, h: usize) -> Option<u16> {
        let status = self.word(h + PKT_STATUS_OFF).load(Ordering::Relaxed);
        if status & TP_STATUS_VLAN_VALID == 0 {
            return None;
        }
        if status & TP_STATUS_VLAN_TPID_VALID != 0
            && self.u16_at(h + PKT_VLAN_TPID_OFF) != ETH_P_8021Q
        {
            return None;
        }
        let tci = self.word(h + PKT_VLAN_TCI_OFF).load(Ordering::Relaxed);
        u16::try_from(tci & 0xffff).ok()
    }

    /// Whether a packet header at block offset `pkt` is aligned and lies inside the block.
    fn packet_in_block(&self, pkt: usize) -> bool {
        pkt.is_multiple_of(4)
            && pkt >= MIN_PKT_OFF
            && pkt
                .checked_add(TX_DATA_OFF)
                .is_some_and(|end| end <= self.block_size)
    }

    /// The current block has a bad packet header: count it once and skip the rest.
    fn block_corrupt(&mut self) {
        self.stats.rx_invalid.incr();
        self.block_exhausted = true;
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

    fn tx_status(&self, slot: u32) -> u32 {
        self.word(self.tx_frame_off(slot) + PKT_STATUS_OFF)
            .load(Ordering::Acquire)
    }

    /// A non-blocking transmit kick (`MSG_DONTWAIT`), then a look at which frames the
    /// kernel took. ENOBUFS and EAGAIN leave the frames queued (counted in
    /// `tx_kick_again`); the next flush or send kicks again.
    fn kick(&mut self) -> Result<(), TxError> {
        self.tx.unkicked = 0;
        self.stats.tx_kicks.incr();
        let r = sys::kick_tx(self.fd.as_raw_fd());
        let mut tx = self.tx;
        let wrong = tx.reap(|slot| self.tx_status(slot));
        self.tx = tx;
        if wrong > 0 {
            self.stats.tx_wrong_format.add(u64::from(wrong));
            // Perhaps the MTU was lowered: refuse such frames up front from now on.
            if let Ok(mtu) = sys::if_mtu(self.fd.as_raw_fd(), &self.ifname) {
                self.tx_max_len = (mtu as usize).saturating_add(ETH_HLEN);
            }
        }
        match r {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR)
                ) =>
            {
                self.stats.tx_kick_again.incr();
                Ok(())
            }
            Err(e) => Err(TxError::Kick(e)),
        }
    }

    /// Frames marked for transmission that the kernel had not taken at the last kick (not
    /// counting a frame it rejected).
    pub fn tx_pending(&self) -> u32 {
        self.tx.waiting()
    }

    /// The longest frame [`PacketTransport::send_frame`] accepts: the interface MTU plus
    /// the Ethernet header (4 bytes more for a frame with an 802.1Q tag), at most the
    /// transmit frame's data area.
    pub fn tx_max_frame_len(&self) -> usize {
        self.tx_max_len
            .min(self.tx_frame_size.saturating_sub(TX_DATA_OFF))
    }
}

/// Inserts the 802.1Q tag `tci` after the MAC addresses of the untagged Ethernet frame
/// of `len` bytes in `buf`, and returns the new length. A frame that is already tagged,
/// shorter than an Ethernet header, or not inside `buf` is left alone (its length is
/// returned, for `send_frame` to judge); when the tag does not fit in `buf`, the length
/// it would need is returned, which `send_frame` refuses as too long.
fn retag(buf: &mut [u8], len: usize, tci: u16) -> usize {
    if len < ETH_HLEN || len > buf.len() {
        return len;
    }
    if matches!(buf.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8])) {
        return len;
    }
    let tagged = len + VLAN_HLEN;
    if tagged > buf.len() {
        return tagged;
    }
    buf.copy_within(12..len, 12 + VLAN_HLEN);
    let [tpid_hi, tpid_lo] = ETH_P_8021Q.to_be_bytes();
    let [hi, lo] = tci.to_be_bytes();
    if let Some(tag) = buf.get_mut(12..12 + VLAN_HLEN) {
        tag.copy_from_slice(&[tpid_hi, tpid_lo, hi, lo]);
    }
    tagged
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
        let (off, len, _) = *self.sock.batch.get(..self.count)?.get(i)?;
        // SAFETY: the block holding this packet has TP_STATUS_USER, so the kernel does not
        // write it until we release it on drop; bounds were checked in `fill_batch`.
        Some(unsafe { core::slice::from_raw_parts(self.sock.map.as_ptr().add(off), len) })
    }

    fn parse_context(&self) -> (UdpChecksumPolicy, &ParseStats) {
        (self.sock.checksum_policy, &self.sock.parse_stats)
    }

    fn first_reject(&self, i: usize) -> bool {
        i < self.count && self.sock.rx_rejects.set(i)
    }

    fn reply(
        &mut self,
        i: usize,
        f: &mut dyn FnMut(&[u8], &mut [u8]) -> usize,
    ) -> Result<(), TxError> {
        let Some(&(off, len, tag)) = self.sock.batch.get(..self.count).and_then(|b| b.get(i))
        else {
            return Ok(());
        };
        let rx_ptr = self.sock.map.as_ptr().wrapping_add(off).cast_const();
        self.sock.send_frame(&mut |tx: &mut [u8]| {
            // SAFETY: the rx block is ours until this batch is dropped, and it lies in the rx
            // part of the mapping, disjoint from the tx frame being written.
            let rx = unsafe { core::slice::from_raw_parts(rx_ptr, len) };
            let n = f(rx, tx);
            // The kernel stripped the request's tag before the ring; AF_XDP keeps it in
            // the frame, so its replies go back tagged: put it back here too.
            tag.map_or(n, |tci| retag(tx, n, tci))
        })
    }
}

impl Drop for PacketRxBatch<'_> {
    fn drop(&mut self) {
        if self.count == 0 {
            return;
        }
        let sock = &mut *self.sock;
        sock.block_consumed = sock
            .block_consumed
            .saturating_add(u32::try_from(self.count).unwrap_or(u32::MAX));
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
        if max == 0 {
            // Asking for nothing must not touch the blocks.
            return PacketRxBatch {
                sock: self,
                count: 0,
            };
        }
        let mut count = self.fill_batch(max);
        if count == 0 {
            // The block may have been empty: try the next one once.
            count = self.fill_batch(max);
        }
        self.stats.rx_packets.add(count as u64);
        self.rx_rejects.clear(count);
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
        if self.unbound {
            return Err(sock_err(UNBOUND)(std::io::Error::from_raw_os_error(
                libc::ENODEV,
            )));
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        match sys::poll_one(self.fd.as_raw_fd(), libc::POLLIN, ms) {
            // The kernel reports ENETDOWN once, both when the interface goes down (the
            // socket receives again when it is up) and when it is deleted (never again:
            // the socket is then bound to index -1).
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                let bound = sys::packet_bound_ifindex(self.fd.as_raw_fd());
                if bound.is_ok_and(|i| i64::from(i) != i64::from(self.ifindex)) {
                    self.unbound = true;
                    return Err(sock_err(UNBOUND)(e));
                }
                Err(BypassError::LinkDown {
                    socket: "AF_PACKET",
                    source: e,
                })
            }
            r => r.map_err(sock_err("poll(AF_PACKET)")),
        }
    }

    fn send_frame(&mut self, f: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        if self.tx.unkicked >= AUTO_KICK_FRAMES {
            // Kick before taking the frame, so that an error leaves nothing half-queued.
            self.kick()?;
        }
        let mut slot = self.tx.write_slot();
        if tx_slot_busy(self.tx_status(slot)) {
            // The kernel still has this slot. Kick regardless of what we think is
            // pending: an earlier kick may have failed or stopped early (or stopped at a
            // rejected frame, whose slot the cursor then offers instead).
            self.kick()?;
            slot = self.tx.write_slot();
            if tx_slot_busy(self.tx_status(slot)) {
                self.stats.tx_ring_full.incr();
                return Err(TxError::RingFull);
            }
        }
        let hdr = self.tx_frame_off(slot);
        let cap = self.tx_frame_size.saturating_sub(TX_DATA_OFF);
        // SAFETY: this tx frame is not busy (status checked above), so the kernel does not
        // read it until we set TP_STATUS_SEND_REQUEST; it lies inside the tx part of the
        // mapping (slot < tp_frame_nr), disjoint from every rx block.
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
        if len < ETH_HLEN {
            // The kernel rejects it (TP_STATUS_WRONG_FORMAT) and stops the ring there:
            // refuse it here, as AF_XDP does.
            return Err(TxError::FrameTooShort { len, min: ETH_HLEN });
        }
        // The kernel rejects a frame longer than the MTU plus the Ethernet header (plus
        // an 802.1Q tag when it has one) and then stops at it: refuse it here instead.
        let vlan = buf.get(12..14) == Some(&[0x81, 0x00][..]);
        let max = self
            .tx_max_len
            .saturating_add(if vlan { VLAN_HLEN } else { 0 })
            .min(cap);
        if len > max {
            return Err(TxError::FrameTooLong { len, capacity: max });
        }
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        self.word(hdr + PKT_NEXT_OFF).store(0, Ordering::Relaxed);
        self.word(hdr + PKT_LEN_OFF).store(len32, Ordering::Relaxed);
        self.word(hdr + PKT_SNAPLEN_OFF)
            .store(len32, Ordering::Relaxed);
        self.word(hdr + PKT_STATUS_OFF)
            .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.tx.marked();
        self.stats.tx_packets.incr();
        self.stats.tx_bytes.add(len as u64);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TxError> {
        if self.tx.waiting() == 0 {
            return Ok(());
        }
        self.kick()
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

#[cfg(test)]
mod tests {
    use std::os::fd::FromRawFd;

    use super::*;

    const BLOCK: usize = 4096;

    /// A socket whose "rings" are a memfd mapping we play the kernel on: exercises the
    /// block walking without AF_PACKET. Its descriptor is no socket, so no kicks.
    fn fake(blocks: u32, tx_frames: u32) -> PacketSocket {
        // SAFETY: a valid NUL-terminated name; plain syscall.
        let raw = unsafe { libc::memfd_create(c"tally-afpacket-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(
            raw >= 0,
            "memfd_create: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the kernel just returned this descriptor; nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let rx = BLOCK * blocks as usize;
        let len = rx + 2048 * tx_frames as usize;
        // SAFETY: our descriptor; plain syscall.
        let r = unsafe { libc::ftruncate(raw, libc::off_t::try_from(len).unwrap()) };
        assert_eq!(r, 0, "ftruncate: {}", std::io::Error::last_os_error());
        let map = Mapping::new(&fd, len, 0).unwrap();
        PacketSocket {
            map,
            fd,
            _reservations: Vec::new(),
            rx_bytes_total: rx,
            block_size: BLOCK,
            block_count: blocks,
            tx_frame_size: 2048,
            block: 0,
            block_consumed: 0,
            next_pkt: 0,
            block_exhausted: false,
            batch: vec![(0usize, 0usize, None); MAX_BATCH].into_boxed_slice(),
            rx_rejects: BatchFlags::new(MAX_BATCH),
            tx: TxCursor::new(tx_frames),
            tx_max_len: usize::MAX,
            ifname: String::new(),
            stats: PacketStats::new(),
            parse_stats: ParseStats::new(),
            checksum_policy: UdpChecksumPolicy::VerifyOrPartial,
            ifindex: 0,
            unbound: false,
        }
    }

    fn put(s: &PacketSocket, off: usize, v: u32) {
        s.word(off).store(v, Ordering::SeqCst);
    }

    fn status(s: &PacketSocket, block: usize) -> u32 {
        s.word(block * BLOCK + BLOCK_STATUS_OFF)
            .load(Ordering::SeqCst)
    }

    /// Hands block `b` to "user space" with packets at `offs` (each 64 bytes of snap,
    /// mac offset 32, the first word of the frame = `marker + i`).
    fn fill_block(s: &PacketSocket, b: usize, offs: &[usize], marker: u32) {
        let base = b * BLOCK;
        put(
            s,
            base + BLOCK_NUM_PKTS_OFF,
            u32::try_from(offs.len()).unwrap(),
        );
        put(
            s,
            base + BLOCK_FIRST_PKT_OFF,
            u32::try_from(offs[0]).unwrap(),
        );
        for (i, &off) in offs.iter().enumerate() {
            let h = base + off;
            let next = offs.get(i + 1).map_or(0, |n| n - off);
            put(s, h + PKT_NEXT_OFF, u32::try_from(next).unwrap());
            put(s, h + PKT_SNAPLEN_OFF, 64);
            put(s, h + PKT_LEN_OFF, 64);
            put(s, h + PKT_MAC_OFF, 32);
            put(s, h + 32, marker + u32::try_from(i).unwrap());
        }
        put(s, base + BLOCK_STATUS_OFF, TP_STATUS_USER);
    }

    fn markers(b: &PacketRxBatch<'_>) -> Vec<u32> {
        (0..b.len())
            .map(|i| {
                let f = b.frame(i).unwrap();
                assert_eq!(f.len(), 64);
                u32::from_ne_bytes(f[..4].try_into().unwrap())
            })
            .collect()
    }

    /// Writes `bytes` at the 4-byte aligned offset `off` of the mapping.
    fn put_bytes(s: &PacketSocket, off: usize, bytes: &[u8]) {
        for (i, c) in bytes.chunks(4).enumerate() {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            put(s, off + 4 * i, u32::from_ne_bytes(w));
        }
    }

    /// `len` bytes at the 4-byte aligned offset `off` of the mapping.
    fn get_bytes(s: &PacketSocket, off: usize, len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len.div_ceil(4))
            .flat_map(|i| s.word(off + 4 * i).load(Ordering::SeqCst).to_ne_bytes())
            .collect();
        v.truncate(len);
        v
    }

    #[test]
    fn replies_get_back_the_tag_the_kernel_stripped() {
        use crate::packet::{MacAddr, UdpFlow, build_udp, reply_in_place};
        let flow = UdpFlow {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "198.18.0.2:9000".parse().unwrap(),
        };
        let mut req = vec![0u8; 128];
        let req_len = build_udp(&mut req, &flow, b"ping", 1).unwrap();
        req.truncate(req_len);
        let mut want_untagged = req.clone();
        let reply_len = reply_in_place(&mut want_untagged).unwrap();
        want_untagged.truncate(reply_len);
        let mut want_tagged = want_untagged[..12].to_vec();
        want_tagged.extend_from_slice(&[0x81, 0x00, 0xa0, 0x00]);
        want_tagged.extend_from_slice(&want_untagged[12..]);
        let echo = |rx: &[u8], tx: &mut [u8]| {
            tx[..rx.len()].copy_from_slice(rx);
            reply_in_place(&mut tx[..rx.len()]).unwrap()
        };
        // (status, tpid): priority tag 5 on VLAN 0 stripped; an 802.1ad tag; no tag.
        let cases = [
            (
                TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID,
                0x8100,
                &want_tagged,
            ),
            (TP_STATUS_VLAN_VALID, 0, &want_tagged),
            (
                TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID,
                0x88a8,
                &want_untagged,
            ),
            (0, 0, &want_untagged),
        ];
        for (round, (st, tpid, want)) in cases.into_iter().enumerate() {
            let mut s = fake(1, 8);
            let h = 48;
            put(&s, BLOCK_NUM_PKTS_OFF, 1);
            put(&s, BLOCK_FIRST_PKT_OFF, 48);
            put(&s, h + PKT_SNAPLEN_OFF, u32::try_from(req_len).unwrap());
            put(&s, h + PKT_LEN_OFF, u32::try_from(req_len).unwrap());
            put(&s, h + PKT_STATUS_OFF, TP_STATUS_USER | st);
            put(&s, h + PKT_MAC_OFF, 64);
            put(&s, h + PKT_VLAN_TCI_OFF, 0xa000);
            put(&s, h + PKT_VLAN_TPID_OFF, tpid);
            put_bytes(&s, h + 64, &req);
            put(&s, BLOCK_STATUS_OFF, TP_STATUS_USER);
            {
                let mut b = s.recv(64);
                assert_eq!(b.len(), 1);
                assert_eq!(b.frame(0), Some(&req[..]), "the ring frame is untagged");
                b.reply(0, &mut |rx, tx| echo(rx, tx)).unwrap();
            }
            let tx = s.tx_frame_off(0);
            let len = s.word(tx + PKT_LEN_OFF).load(Ordering::SeqCst) as usize;
            assert_eq!(
                get_bytes(&s, tx + TX_DATA_OFF, len),
                *want,
                "case {round}: status {st:#x}, tpid {tpid:#x}"
            );
        }
    }

    #[test]
    fn retag_leaves_tagged_short_and_oversized_frames_alone() {
        let mut buf = [0u8; 64];
        buf[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(retag(&mut buf, 60, 0), 60, "already tagged");
        buf[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(retag(&mut buf, 0, 0), 0);
        assert_eq!(retag(&mut buf, 13, 0), 13);
        assert_eq!(retag(&mut buf, 65, 0), 65, "longer than its buffer");
        assert_eq!(buf[12..14], [0x08, 0x00], "written although left alone");
        // No room for the tag: the length it would need, for send_frame to refuse.
        assert_eq!(retag(&mut buf, 62, 0), 66);
        assert_eq!(buf[12..14], [0x08, 0x00]);
        assert_eq!(retag(&mut buf, 60, 0x2005), 64);
        assert_eq!(buf[12..18], [0x81, 0x00, 0x20, 0x05, 0x08, 0x00]);
    }

    #[test]
    fn recv_zero_takes_nothing_and_releases_no_block() {
        let mut s = fake(4, 8);
        fill_block(&s, 0, &[48, 160], 100);
        fill_block(&s, 1, &[48], 200);
        for _ in 0..3 {
            assert!(s.recv(0).is_empty());
        }
        assert_eq!(status(&s, 0), TP_STATUS_USER, "recv(0) released block 0");
        assert_eq!(status(&s, 1), TP_STATUS_USER, "recv(0) released block 1");
        assert_eq!(s.packet_stats().rx_blocks, 0);
        let b = s.recv(64);
        assert_eq!(markers(&b), [100, 101]);
        drop(b);
        assert_eq!(status(&s, 0), TP_STATUS_KERNEL);
        assert_eq!(status(&s, 1), TP_STATUS_USER);
        assert_eq!(markers(&s.recv(64)), [200]);
        let st = s.packet_stats();
        assert_eq!((st.rx_blocks, st.rx_packets, st.rx_invalid), (2, 3, 0));
    }

    #[test]
    fn a_rejected_frame_is_counted_once_per_batch() {
        let mut s = fake(2, 8);
        // The markers are no IPv4/UDP frames: every parse rejects them.
        fill_block(&s, 0, &[48, 160], 10);
        fill_block(&s, 1, &[48], 20);
        {
            let b = s.recv(64);
            assert_eq!(b.len(), 2);
            for _ in 0..3 {
                assert!(b.udp(0).is_none());
                assert_eq!(b.datagrams().count(), 0);
            }
            assert!(b.udp(1).is_none());
            assert!(b.udp(7).is_none(), "out of range: nothing to count");
        }
        assert_eq!(
            s.parse_stats().snapshot().total(),
            2,
            "parsed 7 times, 2 frames"
        );
        // A new batch counts its own frames again.
        let b = s.recv(64);
        assert!(b.udp(0).is_none() && b.udp(0).is_none());
        drop(b);
        assert_eq!(s.parse_stats().snapshot().total(), 3);
    }

    #[test]
    fn block_is_released_only_when_fully_consumed() {
        let mut s = fake(2, 8);
        fill_block(&s, 0, &[48, 160, 272], 10);
        assert_eq!(markers(&s.recv(1)), [10]);
        assert_eq!(status(&s, 0), TP_STATUS_USER);
        assert_eq!(markers(&s.recv(1)), [11]);
        assert_eq!(status(&s, 0), TP_STATUS_USER);
        assert_eq!(markers(&s.recv(5)), [12]);
        assert_eq!(status(&s, 0), TP_STATUS_KERNEL);
        assert!(s.recv(5).is_empty());
        assert_eq!(s.packet_stats().rx_blocks, 1);
    }

    #[test]
    fn corrupt_packet_releases_block_once_and_counts_once() {
        let mut s = fake(2, 8);
        fill_block(&s, 0, &[48, 160, 272], 10);
        // The second packet claims more bytes than the block holds.
        put(&s, 160 + PKT_SNAPLEN_OFF, 1 << 20);
        fill_block(&s, 1, &[48], 20);
        let b = s.recv(64);
        assert_eq!(markers(&b), [10]);
        drop(b);
        assert_eq!(status(&s, 0), TP_STATUS_KERNEL, "corrupt block kept");
        assert_eq!(markers(&s.recv(64)), [20]);
        let st = s.packet_stats();
        assert_eq!((st.rx_invalid, st.rx_blocks, st.rx_packets), (1, 2, 2));
    }

    #[test]
    fn corrupt_first_packet_offset_is_counted_and_skipped() {
        for first in [0u32, 4, 6, 4096 - 8, u32::MAX] {
            let mut s = fake(2, 8);
            fill_block(&s, 0, &[48], 10);
            put(&s, BLOCK_FIRST_PKT_OFF, first);
            fill_block(&s, 1, &[48], 20);
            // Block 0 is given back unread (counted) and block 1 read in the same call.
            assert_eq!(markers(&s.recv(64)), [20], "first packet at {first}");
            assert_eq!(status(&s, 0), TP_STATUS_KERNEL);
            assert_eq!(s.packet_stats().rx_invalid, 1, "first packet at {first}");
        }
    }

    #[test]
    fn empty_block_is_given_back() {
        let mut s = fake(2, 8);
        put(&s, BLOCK_FIRST_PKT_OFF, 48);
        put(&s, BLOCK_STATUS_OFF, TP_STATUS_USER);
        assert!(s.recv(64).is_empty());
        assert_eq!(status(&s, 0), TP_STATUS_KERNEL);
        assert_eq!(s.packet_stats().rx_invalid, 0);
    }

    #[test]
    fn geometry_overflow_is_an_invalid_option_with_the_real_value() {
        let big_rx = PacketConfig {
            block_size: 1 << 31,
            block_count: 1 << 20,
            ..PacketConfig::default()
        };
        match Geometry::new(&big_rx) {
            Err(BypassError::InvalidOption { what, value }) => {
                assert!(what.contains("block_size * block_count"), "{what}");
                assert_eq!(value, 1 << 51);
            }
            other => panic!("{other:?}"),
        }
        let big_tx = PacketConfig {
            tx_frames: 1 << 20,
            tx_frame_size: 1 << 20,
            ..PacketConfig::default()
        };
        match Geometry::new(&big_tx) {
            Err(BypassError::InvalidOption { what, value }) => {
                assert!(what.contains("tx_frames * tx_frame_size"), "{what}");
                assert_eq!(value, 1 << 40);
            }
            other => panic!("{other:?}"),
        }
        let not_pow2 = PacketConfig {
            block_count: 3,
            ..PacketConfig::default()
        };
        match Geometry::new(&not_pow2) {
            Err(BypassError::InvalidOption { value, .. }) => assert_eq!(value, 3),
            other => panic!("{other:?}"),
        }
        // Within range: the kernel request the old arithmetic computed.
        let g = Geometry::new(&PacketConfig::default()).unwrap();
        assert_eq!(g.rx_frame_nr, (1 << 20) / 2048 * 16);
        assert_eq!(
            (g.tx_block, g.tx_block_nr, g.tx_frame_nr),
            (1 << 16, 32, 1024)
        );
        assert_eq!((g.rx_bytes, g.tx_bytes), (16 << 20, 2 << 20));
        // The largest ring the kernel accepts still passes.
        let edge = PacketConfig {
            block_size: 1 << 31,
            block_count: 2,
            tx_frames: 1 << 20,
            tx_frame_size: 1 << 11,
            ..PacketConfig::default()
        };
        assert!(
            Geometry::new(&edge).is_err(),
            "2 GiB * 2 is 4 GiB: over the limit"
        );
        let edge = PacketConfig {
            block_count: 1,
            ..edge
        };
        assert_eq!(Geometry::new(&edge).unwrap().rx_frame_nr, 1 << 20);
    }

    #[test]
    fn tx_cursor_tracks_pending_slots_across_the_wrap() {
        let mut c = TxCursor::new(4);
        let mut st = [TP_STATUS_KERNEL; 4];
        for slot in 0..3 {
            assert_eq!(c.write_slot(), slot);
            st[slot as usize] = TP_STATUS_SEND_REQUEST;
            c.marked();
        }
        assert_eq!((c.pending, c.head, c.unkicked), (3, 0, 3));
        // The kernel took slots 0 and 1 (one sent, one still sending), not 2.
        st[0] = TP_STATUS_KERNEL;
        st[1] = TP_STATUS_SENDING;
        assert_eq!(c.reap(|s| st[s as usize]), 0);
        assert_eq!((c.pending, c.head), (1, 2));
        // Nothing taken: a failed kick leaves everything pending.
        assert_eq!(c.reap(|s| st[s as usize]), 0);
        assert_eq!(c.pending, 1);
        st[3] = TP_STATUS_SEND_REQUEST;
        c.marked();
        st[0] = TP_STATUS_SEND_REQUEST;
        c.marked();
        assert_eq!((c.next, c.pending, c.head), (1, 3, 2));
        st[2] = TP_STATUS_KERNEL;
        st[3] = TP_STATUS_SENDING;
        assert_eq!(c.reap(|s| st[s as usize]), 0);
        assert_eq!((c.pending, c.head), (1, 0));
        st[0] = TP_STATUS_KERNEL;
        assert_eq!(c.reap(|s| st[s as usize]), 0);
        assert_eq!((c.pending, c.head, c.waiting()), (0, 1, 0));
        // A full ring: every slot pending, the oldest is `next` itself.
        for _ in 0..4 {
            c.marked();
        }
        assert_eq!((c.pending, c.head), (4, c.next));
        // Writing `next` again (the kernel finished it after the last look) makes the
        // slot after it the oldest.
        c.marked();
        assert_eq!(c.pending, 4, "pending never exceeds the ring");
        assert_eq!(c.head, c.next);
    }

    /// Plays the kernel's transmit loop (`tpacket_snd` without `PACKET_LOSS`) on `st`:
    /// from `head`, sends every marked slot in order and stops at the first slot that is
    /// not marked; a marked slot `bad` says to reject is marked `TP_STATUS_WRONG_FORMAT` and the
    /// head stays on it.
    fn kernel_kick(st: &mut [u32], head: &mut u32, bad: impl Fn(u32) -> bool) {
        while st[*head as usize] == TP_STATUS_SEND_REQUEST {
            if bad(*head) {
                st[*head as usize] = TP_STATUS_WRONG_FORMAT;
                return;
            }
            st[*head as usize] = TP_STATUS_KERNEL;
            *head = (*head + 1) % u32::try_from(st.len()).unwrap();
        }
    }

    #[test]
    fn tx_cursor_rewrites_a_rejected_slot_and_never_wedges() {
        const N: u32 = 4;
        let mut c = TxCursor::new(N);
        let mut st = [TP_STATUS_KERNEL; N as usize];
        let mut kernel_head = 0u32;
        // Which slot writes carry a malformed frame.
        let mut bad = [false; N as usize];
        let mut rejected = 0;
        let send = |c: &mut TxCursor, st: &mut [u32], bad: &mut [bool], is_bad: bool| {
            let slot = c.write_slot();
            assert!(!tx_slot_busy(st[slot as usize]), "slot {slot} busy: {c:?}");
            st[slot as usize] = TP_STATUS_SEND_REQUEST;
            bad[slot as usize] = is_bad;
            c.marked();
            slot
        };
        // Slot 0 is malformed, 1 and 2 fine.
        assert_eq!(send(&mut c, &mut st, &mut bad, true), 0);
        send(&mut c, &mut st, &mut bad, false);
        send(&mut c, &mut st, &mut bad, false);
        kernel_kick(&mut st, &mut kernel_head, |s| bad[s as usize]);
        assert_eq!(kernel_head, 0, "the kernel stops at the rejected frame");
        rejected += c.reap(|s| st[s as usize]);
        assert_eq!(rejected, 1);
        assert_eq!((c.head, c.pending, c.waiting()), (0, 3, 2));
        assert!(c.head_rejected);
        // Looking again does not count the same rejection twice.
        assert_eq!(c.reap(|s| st[s as usize]), 0);
        // The next send takes the rejected slot (the kernel's head), not slot 3; and that
        // frame is malformed again.
        assert_eq!(send(&mut c, &mut st, &mut bad, true), 0);
        assert_eq!((c.next, c.pending), (3, 3));
        kernel_kick(&mut st, &mut kernel_head, |s| bad[s as usize]);
        rejected += c.reap(|s| st[s as usize]);
        assert_eq!(
            rejected, 2,
            "the second rejection of the same slot is counted"
        );
        assert_eq!(c.head, kernel_head);
        // The slot is offered again, not slot 3.
        assert_eq!(c.write_slot(), 0);
        // A good frame into the rejected slot: the kernel sends it and everything behind.
        assert_eq!(send(&mut c, &mut st, &mut bad, false), 0);
        kernel_kick(&mut st, &mut kernel_head, |s| bad[s as usize]);
        rejected += c.reap(|s| st[s as usize]);
        assert_eq!(rejected, 2);
        assert_eq!((c.pending, c.waiting(), c.head), (0, 0, kernel_head));
        assert!(!c.head_rejected);

        // A full ring whose oldest frame is rejected, and rejected again when rewritten:
        // the old cursor wedged here for good (every other slot busy, the rejected one
        // never coming round as `next`).
        assert_eq!(send(&mut c, &mut st, &mut bad, true), 3);
        for _ in 0..3 {
            send(&mut c, &mut st, &mut bad, false);
        }
        assert_eq!((c.pending, c.head, c.next), (4, 3, 3));
        for round in 1..=2 {
            kernel_kick(&mut st, &mut kernel_head, |s| bad[s as usize]);
            rejected += c.reap(|s| st[s as usize]);
            assert_eq!(rejected, 2 + round);
            assert_eq!((c.head, c.pending, c.waiting()), (3, 4, 3));
            assert_eq!(c.write_slot(), 3, "round {round}: {c:?}");
            // Rewritten: malformed in round 1, good in round 2.
            send(&mut c, &mut st, &mut bad, round == 1);
        }
        kernel_kick(&mut st, &mut kernel_head, |s| bad[s as usize]);
        assert_eq!(c.reap(|s| st[s as usize]), 0);
        assert_eq!((c.pending, c.head, kernel_head), (0, 3, 3));
        assert_eq!(st, [TP_STATUS_KERNEL; N as usize], "everything was sent");
        // And the ring goes on in order, in step with the kernel.
        for _ in 0..3 * N {
            let slot = send(&mut c, &mut st, &mut bad, false);
            assert_eq!(slot, kernel_head);
            kernel_kick(&mut st, &mut kernel_head, |s| bad[s as usize]);
            assert_eq!(c.reap(|s| st[s as usize]), 0);
            assert_eq!((c.pending, c.head), (0, kernel_head));
        }
    }

    #[test]
    fn tx_cursor_follows_a_kernel_that_moved_past_a_rejected_slot() {
        // Not what the kernel does without PACKET_LOSS, but if it ever takes the frames
        // after a rejected one, the cursor must not stay behind.
        let mut c = TxCursor::new(4);
        let mut st = [TP_STATUS_KERNEL; 4];
        for s in &mut st[..3] {
            *s = TP_STATUS_SEND_REQUEST;
            c.marked();
        }
        st = [
            TP_STATUS_WRONG_FORMAT,
            TP_STATUS_KERNEL,
            TP_STATUS_SEND_REQUEST,
            TP_STATUS_KERNEL,
        ];
        assert_eq!(c.reap(|s| st[s as usize]), 1);
        assert_eq!((c.head, c.pending, c.head_rejected), (2, 1, false));
    }

    #[test]
    fn over_mtu_frames_are_refused_before_the_ring() {
        let mut s = fake(1, 8);
        s.tx_max_len = 1500 + ETH_HLEN;
        assert_eq!(s.tx_max_frame_len(), 1514);
        let frame = |len: usize, vlan: bool| {
            move |buf: &mut [u8]| {
                buf[..len].fill(0);
                if vlan {
                    buf[12..14].copy_from_slice(&[0x81, 0x00]);
                }
                len
            }
        };
        for (len, vlan) in [(1515, false), (1519, true), (2000, false)] {
            match s.send_frame(&mut frame(len, vlan)) {
                Err(e @ TxError::FrameTooLong { capacity, .. }) => {
                    assert_eq!(capacity, if vlan { 1518 } else { 1514 });
                    let msg = e.to_string();
                    assert!(
                        msg.contains("MTU") && msg.contains(&len.to_string()),
                        "{msg}"
                    );
                }
                other => panic!("{len}: {other:?}"),
            }
        }
        // Nothing was queued: the slot is still free, nothing pending.
        assert_eq!((s.tx.pending, s.tx.next, s.tx.unkicked), (0, 0, 0));
        assert_eq!(s.tx_status(0), TP_STATUS_KERNEL);
        assert_eq!(s.packet_stats().tx_packets, 0);
        // At the limit: queued.
        s.send_frame(&mut frame(1514, false)).unwrap();
        s.send_frame(&mut frame(1518, true)).unwrap();
        assert_eq!((s.tx.pending, s.tx_status(0)), (2, TP_STATUS_SEND_REQUEST));
    }

    #[test]
    fn repeated_filter_ports_are_compared_once() {
        let key = |p: Vec<libc::sock_filter>| -> Vec<(u16, u8, u8, u32)> {
            p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
        };
        let distinct: Vec<u16> = (9000..9064).collect();
        let repeated: Vec<u16> = distinct.iter().chain(&distinct).rev().copied().collect();
        assert_eq!(
            key(udp_port_filter(&repeated).unwrap()),
            key(udp_port_filter(&distinct).unwrap())
        );
        let too_many: Vec<u16> = (9000..9065).collect();
        assert!(udp_port_filter(&too_many).is_err());
    }

    #[test]
    fn busy_means_send_request_or_sending() {
        assert!(!tx_slot_busy(TP_STATUS_KERNEL));
        assert!(!tx_slot_busy(TP_STATUS_WRONG_FORMAT));
        assert!(tx_slot_busy(TP_STATUS_SEND_REQUEST));
        assert!(tx_slot_busy(TP_STATUS_SENDING));
        // Timestamp flags on a finished frame do not make it busy.
        assert!(!tx_slot_busy(1 << 29));
    }
}
