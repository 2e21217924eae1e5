//! Ethernet II / IPv4 / UDP: zero-copy parsing and in-place building, with the IPv4 header
//! checksum and the UDP checksum (RFC 768, RFC 1071).
//!
//! [`parse_udp`] borrows a received frame and returns a [`UdpView`] whose payload is a
//! slice of that frame: nothing is copied. Every malformed input is a [`ParseError`]
//! variant (runt frame, truncated or lying lengths, bad checksums, fragments, oversize,
//! malformed or source-routing IPv4 options, a forged group source address), never a
//! panic; [`ParseStats`] counts them per kind.
//!
//! **UDP checksums from local senders.** A datagram sent by a local socket over a veth
//! carries `CHECKSUM_PARTIAL`: the checksum field holds only the folded pseudo-header sum,
//! because the "hardware" was supposed to finish it. AF_XDP copies the frame as it is.
//! [`UdpChecksumPolicy::VerifyOrPartial`] (the default) accepts such a field and reports
//! [`UdpChecksumState::Partial`]; anything else must verify. When you echo such a frame,
//! rewrite the checksum ([`reply_in_place`] does) or the peer drops it.
//!
//! [`build_udp`] writes a complete frame (headers, payload, both checksums) into a buffer,
//! for example a transmit frame of the UMEM.

#![forbid(unsafe_code)]

use core::net::{Ipv4Addr, SocketAddrV4};

/// Length of an Ethernet II header (no VLAN tag).
pub const ETH_HEADER_BYTES: usize = 14;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_BYTES: usize = 20;
/// Length of a UDP header.
pub const UDP_HEADER_BYTES: usize = 8;
/// Headers in front of the payload of a frame [`build_udp`] makes (14 + 20 + 8).
pub const UDP_FRAME_OVERHEAD_BYTES: usize = ETH_HEADER_BYTES + IPV4_HEADER_BYTES + UDP_HEADER_BYTES;
/// Length of an 802.1Q tag (its `EtherType` and TCI).
pub const VLAN_TAG_BYTES: usize = 4;
/// The largest frame [`parse_udp`] accepts: a 9000-byte jumbo MTU plus the Ethernet header
/// and a priority tag. Longer frames are [`ParseError::Oversize`].
pub const MAX_FRAME_BYTES: usize = 9000 + ETH_HEADER_BYTES + VLAN_TAG_BYTES;
/// The largest UDP payload [`build_udp`] writes (IPv4 total length is a `u16`).
pub const MAX_UDP_PAYLOAD_BYTES: usize = 65535 - IPV4_HEADER_BYTES - UDP_HEADER_BYTES;

/// `EtherType` of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// `EtherType` of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// The VLAN id bits of an 802.1Q TCI (the other four are priority and drop-eligible).
const VLAN_ID_MASK: u16 = 0x0fff;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl core::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl core::str::FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(MacParseError)?;
            if part.len() != 2 {
                return Err(MacParseError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacParseError);
        }
        Ok(Self(out))
    }
}

/// A MAC address string was not six `:`-separated hex bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address: write six hex bytes separated by ':', e.g. 02:00:00:00:00:01")]
pub struct MacParseError;

/// Why a frame is not a well-formed IPv4/UDP datagram. Each variant is counted by
/// [`ParseStats`]; none is fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Shorter than an Ethernet header plus a minimal IPv4 header and a UDP header.
    #[error("runt frame of {len} bytes: an IPv4/UDP frame has at least 42 bytes")]
    Runt {
        /// Frame length.
        len: usize,
    },
    /// Longer than [`MAX_FRAME_BYTES`].
    #[error("oversize frame of {len} bytes: the limit is {MAX_FRAME_BYTES} bytes")]
    Oversize {
        /// Frame length.
        len: usize,
    },
    /// The `EtherType` is not IPv4 (ARP, IPv6, VLAN-tagged ...).
    #[error("not IPv4: EtherType {ethertype:#06x}")]
    NotIpv4 {
        /// The `EtherType` found.
        ethertype: u16,
    },
    /// Version is not 4, or the header length is below 20 bytes.
    #[error("bad IPv4 header: version {version}, header length {ihl_bytes} bytes")]
    BadIpHeader {
        /// The version nibble.
        version: u8,
        /// The header length in bytes (IHL * 4).
        ihl_bytes: usize,
    },
    /// The IPv4 total length or header length claims more bytes than the frame holds, or
    /// the total length is smaller than the header.
    #[error("IPv4 length mismatch: header claims {claimed} bytes, frame holds {available}")]
    BadIpLength {
        /// Bytes the header claims.
        claimed: usize,
        /// Bytes available after the Ethernet header.
        available: usize,
    },
    /// The IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
    /// A fragment (MF set or non-zero offset): reassembly is the kernel's job.
    #[error("IPv4 fragment: not reassembled here")]
    Fragment,
    /// The IP protocol is not UDP.
    #[error("not UDP: IP protocol {protocol}")]
    NotUdp {
        /// The protocol number.
        protocol: u8,
    },
    /// The UDP length is below 8 or claims more than the IP payload holds.
    #[error("UDP length mismatch: header claims {claimed} bytes, IP payload holds {available}")]
    BadUdpLength {
        /// Bytes the header claims.
        claimed: usize,
        /// Bytes of IP payload.
        available: usize,
    },
    /// The UDP checksum does not verify (and is not an acceptable partial checksum).
    #[error("bad UDP checksum")]
    BadUdpChecksum,
    /// A group (multicast or broadcast) address where only a unicast one can be. From
    /// [`parse_udp`]: the source MAC or IPv4 address (no host sends from a group address:
    /// the frame is forged, and the kernel drops such a packet as a martian). From
    /// [`reply_in_place`]: the destination of the datagram being answered, which would be
    /// the reply's source.
    #[error(
        "the {what} is a group (multicast or broadcast) address, and no datagram can come from one: drop the frame, do not answer it"
    )]
    GroupAddress {
        /// Which address.
        what: &'static str,
    },
    /// The IPv4 options are malformed (an option running past the header, a length below
    /// 2) or route the datagram by source (loose or strict source route). The kernel
    /// drops both (source routes unless `accept_source_route` is on), and a reply would
    /// carry them back.
    #[error(
        "bad IPv4 options (option {kind} at byte {at} of the header): malformed or source-routed datagrams are dropped, as the kernel drops them"
    )]
    BadIpOptions {
        /// The option type found.
        kind: u8,
        /// Its offset in the IPv4 header.
        at: usize,
    },
}

impl ParseError {
    /// Number of variants (the length of [`ParseStats`]' counter set).
    pub const KINDS: usize = 12;

    /// A stable index `0..KINDS` per variant, for counting.
    pub const fn kind_index(&self) -> usize {
        match self {
            Self::Runt { .. } => 0,
            Self::Oversize { .. } => 1,
            Self::NotIpv4 { .. } => 2,
            Self::BadIpHeader { .. } => 3,
            Self::BadIpLength { .. } => 4,
            Self::BadIpChecksum => 5,
            Self::Fragment => 6,
            Self::NotUdp { .. } => 7,
            Self::BadUdpLength { .. } => 8,
            Self::BadUdpChecksum => 9,
            Self::GroupAddress { .. } => 10,
            Self::BadIpOptions { .. } => 11,
        }
    }
}

tally_core_types::single_writer_stats! {
    /// Frames rejected by [`parse_udp`], per reason (single writer: the receiving thread).
    pub struct ParseStats => ParseStatsSnapshot {
        /// [`ParseError::Runt`].
        runt,
        /// [`ParseError::Oversize`].
        oversize,
        /// [`ParseError::NotIpv4`].
        not_ipv4,
        /// [`ParseError::BadIpHeader`].
        bad_ip_header,
        /// [`ParseError::BadIpLength`].
        bad_ip_length,
        /// [`ParseError::BadIpChecksum`].
        bad_ip_checksum,
        /// [`ParseError::Fragment`].
        fragment,
        /// [`ParseError::NotUdp`].
        not_udp,
        /// [`ParseError::BadUdpLength`].
        bad_udp_length,
        /// [`ParseError::BadUdpChecksum`].
        bad_udp_checksum,
        /// [`ParseError::GroupAddress`].
        group_address,
        /// [`ParseError::BadIpOptions`].
        bad_ip_options,
    }
}

impl ParseStats {
    /// Counts one rejected frame.
    #[inline]
    pub fn count(&self, error: &ParseError) {
        let c = match error {
            ParseError::Runt { .. } => &self.runt,
            ParseError::Oversize { .. } => &self.oversize,
            ParseError::NotIpv4 { .. } => &self.not_ipv4,
            ParseError::BadIpHeader { .. } => &self.bad_ip_header,
            ParseError::BadIpLength { .. } => &self.bad_ip_length,
            ParseError::BadIpChecksum => &self.bad_ip_checksum,
            ParseError::Fragment => &self.fragment,
            ParseError::NotUdp { .. } => &self.not_udp,
            ParseError::BadUdpLength { .. } => &self.bad_udp_length,
            ParseError::BadUdpChecksum => &self.bad_udp_checksum,
            ParseError::GroupAddress { .. } => &self.group_address,
            ParseError::BadIpOptions { .. } => &self.bad_ip_options,
        };
        c.incr();
    }
}

impl ParseStatsSnapshot {
    /// Sum of all rejection counters.
    pub fn total(&self) -> u64 {
        let mut t = 0u64;
        self.for_each(|_, v| t = t.wrapping_add(v));
        t
    }
}

/// How [`parse_udp`] treats the UDP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpChecksumPolicy {
    /// A non-zero checksum must verify; zero means "none" (allowed for IPv4).
    Verify,
    /// Like `Verify`, but also accept a field holding only the pseudo-header sum, as
    /// frames from local senders with `CHECKSUM_PARTIAL` do (their payload is then not
    /// covered by any checksum).
    #[default]
    VerifyOrPartial,
    /// Do not look at the UDP checksum.
    Ignore,
}

/// What [`parse_udp`] found in the UDP checksum field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdpChecksumState {
    /// The full checksum verified.
    Valid,
    /// Zero: the sender computed none.
    Absent,
    /// Only the pseudo-header sum (`CHECKSUM_PARTIAL` from a local sender).
    Partial,
    /// Not checked ([`UdpChecksumPolicy::Ignore`]).
    Unchecked,
}

/// A parsed IPv4/UDP frame, borrowing the frame's bytes.
#[derive(Debug, Clone, Copy)]
pub struct UdpView<'a> {
    frame: &'a [u8],
    /// Offset of the IPv4 header in `frame`: 14, or 18 after a priority tag.
    l3: usize,
    /// Offset of the UDP payload in `frame`.
    payload_start: usize,
    /// Length of the UDP payload.
    payload_len: usize,
    checksum: UdpChecksumState,
}

impl<'a> UdpView<'a> {
    /// The UDP payload (a slice of the frame, not a copy).
    pub fn payload(&self) -> &'a [u8] {
        self.frame
            .get(self.payload_start..self.payload_start + self.payload_len)
            .unwrap_or(&[])
    }

    /// Destination MAC address.
    pub fn dst_mac(&self) -> MacAddr {
        MacAddr(arr6(self.frame, 0))
    }

    /// Source MAC address.
    pub fn src_mac(&self) -> MacAddr {
        MacAddr(arr6(self.frame, 6))
    }

    /// Source IPv4 address.
    pub fn src_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(arr4(self.frame, self.l3 + 12))
    }

    /// Destination IPv4 address.
    pub fn dst_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(arr4(self.frame, self.l3 + 16))
    }

    /// Source UDP port.
    pub fn src_port(&self) -> u16 {
        be16(self.frame, self.payload_start - UDP_HEADER_BYTES)
    }

    /// Destination UDP port.
    pub fn dst_port(&self) -> u16 {
        be16(self.frame, self.payload_start - UDP_HEADER_BYTES + 2)
    }

    /// Source address and port.
    pub fn src(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.src_ip(), self.src_port())
    }

    /// Destination address and port.
    pub fn dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.dst_ip(), self.dst_port())
    }

    /// What the UDP checksum field held.
    pub fn checksum_state(&self) -> UdpChecksumState {
        self.checksum
    }

    /// The whole frame.
    pub fn frame(&self) -> &'a [u8] {
        self.frame
    }

    /// Whether the frame carries a priority tag (802.1Q with VLAN id 0) before its IPv4
    /// header; its TCI (priority and drop-eligible bits) is then `frame()[14..16]`.
    pub fn priority_tagged(&self) -> bool {
        self.l3 != ETH_HEADER_BYTES
    }

    /// The flow a reply to this datagram uses (addresses and ports swapped).
    pub fn reply_flow(&self) -> UdpFlow {
        UdpFlow {
            src_mac: self.dst_mac(),
            dst_mac: self.src_mac(),
            src: self.dst(),
            dst: self.src(),
        }
    }
}

/// Offset of the IPv4 header of `frame`: after the Ethernet header, or after a priority
/// tag (802.1Q with VLAN id 0, which belongs to the untagged interface). `Err` holds the
/// `EtherType` of anything else: not IPv4, or a frame of another VLAN (`0x8100`), which
/// belongs to that VLAN's interface.
#[inline]
fn ipv4_offset(frame: &[u8]) -> Result<usize, u16> {
    let ethertype = be16(frame, 12);
    if ethertype == ETHERTYPE_IPV4 {
        return Ok(ETH_HEADER_BYTES);
    }
    if ethertype == ETHERTYPE_VLAN
        && be16(frame, ETH_HEADER_BYTES) & VLAN_ID_MASK == 0
        && be16(frame, ETH_HEADER_BYTES + 2) == ETHERTYPE_IPV4
    {
        return Ok(ETH_HEADER_BYTES + VLAN_TAG_BYTES);
    }
    Err(ethertype)
}

/// IPv4 option types of the loose and strict source routes (RFC 791).
const IPOPT_LSRR: u8 = 131;
const IPOPT_SSRR: u8 = 137;

/// Walks the options of an IPv4 `header` (longer than 20 bytes), checking the layout the
/// kernel's `ip_options_compile` checks first: end of list and no-op are one byte, every
/// other option has a length of at least 2 that stays inside the header. Source routes
/// are refused. (The contents of each option are not checked.)
#[cold]
fn check_ip_options(header: &[u8]) -> Result<(), ParseError> {
    let mut at = IPV4_HEADER_BYTES;
    while let Some(&kind) = header.get(at) {
        match kind {
            0 => return Ok(()),
            1 => at += 1,
            _ => {
                let len = header.get(at + 1).map_or(0, |l| usize::from(*l));
                if len < 2 || at + len > header.len() || kind == IPOPT_LSRR || kind == IPOPT_SSRR {
                    return Err(ParseError::BadIpOptions { kind, at });
                }
                at += len;
            }
        }
    }
    Ok(())
}

/// Whether the MAC address at `frame[at..]` is a group (multicast or broadcast) address.
#[inline]
fn is_group_mac(frame: &[u8], at: usize) -> bool {
    frame.get(at).is_some_and(|b| b & 1 != 0)
}

/// Whether an IPv4 address is multicast (224.0.0.0/4) or the limited broadcast address (a
/// subnet's broadcast address needs its prefix length, which a frame does not carry).
#[inline]
fn is_group_ip(ip: [u8; 4]) -> bool {
    ip[0] & 0xf0 == 0xe0 || ip == [0xff; 4]
}

/// The [`ParseError::GroupAddress`] for the `side` ("source" or "destination") whose MAC
/// address is at `frame[mac_at..]`: the MAC address when it is a group one, else the IPv4
/// address.
#[cold]
fn group_address(frame: &[u8], mac_at: usize, side: &str) -> ParseError {
    let mac = is_group_mac(frame, mac_at);
    let what = match (side, mac) {
        ("source", true) => "source MAC address",
        ("source", false) => "source IPv4 address",
        (_, true) => "destination MAC address (the reply's source)",
        (_, false) => "destination IPv4 address (the reply's source)",
    };
    ParseError::GroupAddress { what }
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

#[inline]
fn arr4(b: &[u8], at: usize) -> [u8; 4] {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 4])
}

#[inline]
fn arr6(b: &[u8], at: usize) -> [u8; 6] {
    b.get(at..at + 6)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 6])
}

/// Bytes [`checksum_add`] sums between two folds of its accumulator: 2^27 eight-byte
/// words of at most 2^33 each, on top of a folded accumulator below 2^33, stay below 2^64.
const CHECKSUM_BLOCK_BYTES: usize = 1 << 30;

/// Adds `data` as big-endian 16-bit words into a ones'-complement accumulator (RFC 1071).
/// An odd trailing byte is padded with zero. Any accumulator value is accepted, so calls
/// can be chained over any amount of data: the accumulator is folded (which keeps its
/// ones'-complement value) before it could overflow.
#[inline]
pub fn checksum_add(acc: u64, data: &[u8]) -> u64 {
    if acc < 1 << 33 && data.len() <= CHECKSUM_BLOCK_BYTES {
        checksum_add_block(acc, data)
    } else {
        checksum_add_large(acc, data)
    }
}

/// [`checksum_add`] for a large accumulator or more than [`CHECKSUM_BLOCK_BYTES`]: block
/// by block, folding the accumulator before each.
#[cold]
fn checksum_add_large(mut acc: u64, data: &[u8]) -> u64 {
    // An even block size keeps every block but the last 16-bit aligned.
    for block in data.chunks(CHECKSUM_BLOCK_BYTES) {
        // 2^32 is 1 modulo 0xffff: folding the halves keeps the sum and leaves < 2^33.
        acc = (acc & 0xffff_ffff) + (acc >> 32);
        acc = checksum_add_block(acc, block);
    }
    acc
}

/// [`checksum_add`] for at most [`CHECKSUM_BLOCK_BYTES`] bytes and `acc` below 2^33.
#[inline]
fn checksum_add_block(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes(c.try_into().unwrap_or([0; 8]));
        // Sum 32-bit halves: carries stay in the upper bits of the u64.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_be_bytes([
            c.first().copied().unwrap_or(0),
            c.get(1).copied().unwrap_or(0),
        ]));
    }
    if let Some(&last) = rest.remainder().first() {
        acc += u64::from(last) << 8;
    }
    acc
}

/// Folds an accumulator from [`checksum_add`] to 16 bits (not complemented).
#[inline]
pub fn checksum_fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves acc <= 0xffff.
    u16::try_from(acc).unwrap_or(0xffff)
}

/// The Internet checksum of `data` (complemented fold), as written into headers.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !checksum_fold(checksum_add(0, data))
}

fn pseudo_header_sum(src: [u8; 4], dst: [u8; 4], udp_len: u16) -> u64 {
    // Whole 32-bit words, as `checksum_add` sums them.
    u64::from(u32::from_be_bytes(src))
        + u64::from(u32::from_be_bytes(dst))
        + u64::from(IPPROTO_UDP)
        + u64::from(udp_len)
}

/// Parses an Ethernet II / IPv4 / UDP frame without copying. A priority tag (802.1Q with
/// VLAN id 0) between the Ethernet header and IPv4 is accepted and skipped; frames of
/// other VLANs are [`ParseError::NotIpv4`] with `EtherType` `0x8100`.
///
/// Trailing bytes after the IPv4 total length (Ethernet padding) are ignored.
///
/// # Errors
/// A [`ParseError`] naming the first problem found; see its variants.
#[inline]
pub fn parse_udp(frame: &[u8], policy: UdpChecksumPolicy) -> Result<UdpView<'_>, ParseError> {
    let len = frame.len();
    if len > MAX_FRAME_BYTES {
        return Err(ParseError::Oversize { len });
    }
    if len < UDP_FRAME_OVERHEAD_BYTES {
        // Classify short non-IPv4 frames (an ARP request is 42 bytes) as not IPv4 where
        // the EtherType is readable.
        if len >= ETH_HEADER_BYTES {
            let ethertype = be16(frame, 12);
            if ethertype != ETHERTYPE_IPV4 {
                return Err(ParseError::NotIpv4 { ethertype });
            }
        }
        return Err(ParseError::Runt { len });
    }
    let l3 = ipv4_offset(frame).map_err(|ethertype| ParseError::NotIpv4 { ethertype })?;
    let ip = frame.get(l3..).unwrap_or(&[]);
    let ver_ihl = ip.first().copied().unwrap_or(0);
    let version = ver_ihl >> 4;
    let ihl_bytes = usize::from(ver_ihl & 0x0f) * 4;
    if version != 4 || ihl_bytes < IPV4_HEADER_BYTES {
        return Err(ParseError::BadIpHeader { version, ihl_bytes });
    }
    let total = usize::from(be16(ip, 2));
    if total > ip.len() || total < ihl_bytes {
        return Err(ParseError::BadIpLength {
            claimed: total,
            available: ip.len(),
        });
    }
    let header = ip.get(..ihl_bytes).ok_or(ParseError::BadIpLength {
        claimed: ihl_bytes,
        available: ip.len(),
    })?;
    if checksum_fold(checksum_add(0, header)) != 0xffff {
        return Err(ParseError::BadIpChecksum);
    }
    if is_group_mac(frame, 6) || is_group_ip(arr4(ip, 12)) {
        return Err(group_address(frame, 6, "source"));
    }
    if ihl_bytes > IPV4_HEADER_BYTES {
        check_ip_options(header)?;
    }
    if be16(ip, 6) & 0x3fff != 0 {
        return Err(ParseError::Fragment);
    }
    let protocol = ip.get(9).copied().unwrap_or(0);
    if protocol != IPPROTO_UDP {
        return Err(ParseError::NotUdp { protocol });
    }
    let ip_payload = total - ihl_bytes;
    let udp = ip.get(ihl_bytes..total).unwrap_or(&[]);
    let udp_len = usize::from(be16(udp, 4));
    if udp.len() < UDP_HEADER_BYTES || udp_len < UDP_HEADER_BYTES || udp_len > ip_payload {
        return Err(ParseError::BadUdpLength {
            claimed: udp_len,
            available: ip_payload,
        });
    }
    let udp = udp.get(..udp_len).unwrap_or(&[]);
    let field = be16(udp, 6);
    let checksum = match policy {
        UdpChecksumPolicy::Ignore => UdpChecksumState::Unchecked,
        _ if field == 0 => UdpChecksumState::Absent,
        _ => {
            let src = arr4(ip, 12);
            let dst = arr4(ip, 16);
            // udp_len <= ip_payload < 65536.
            let len16 = u16::try_from(udp_len).unwrap_or(u16::MAX);
            let pseudo = pseudo_header_sum(src, dst, len16);
            if checksum_fold(checksum_add(pseudo, udp)) == 0xffff {
                UdpChecksumState::Valid
            } else if policy == UdpChecksumPolicy::VerifyOrPartial && field == checksum_fold(pseudo)
            {
                UdpChecksumState::Partial
            } else {
                return Err(ParseError::BadUdpChecksum);
            }
        }
    };
    Ok(UdpView {
        frame,
        l3,
        payload_start: l3 + ihl_bytes + UDP_HEADER_BYTES,
        payload_len: udp_len - UDP_HEADER_BYTES,
        checksum,
    })
}

/// Addresses and ports of one UDP flow, for [`build_udp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpFlow {
    /// Source MAC address.
    pub src_mac: MacAddr,
    /// Destination MAC address (the next hop's).
    pub dst_mac: MacAddr,
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
}

/// Why [`build_udp`] could not write a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The payload is larger than a UDP datagram can carry.
    #[error(
        "UDP payload of {len} bytes is too large: at most {MAX_UDP_PAYLOAD_BYTES} bytes fit an IPv4 datagram"
    )]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
    },
    /// The buffer (transmit frame) is too small for headers plus payload.
    #[error(
        "frame buffer of {capacity} bytes is too small for {needed} bytes: send a smaller payload or use larger frames"
    )]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        capacity: usize,
    },
}

/// Writes an Ethernet II / IPv4 / UDP frame carrying `payload` into the front of `buf`,
/// with the IPv4 header checksum and the full UDP checksum. `ip_id` goes into the IPv4
/// identification field. Returns the frame length.
///
/// # Errors
/// [`BuildError::PayloadTooLarge`] or [`BuildError::BufferTooSmall`]; `buf` is unchanged.
pub fn build_udp(
    buf: &mut [u8],
    flow: &UdpFlow,
    payload: &[u8],
    ip_id: u16,
) -> Result<usize, BuildError> {
    let n = write_udp_headers(buf, flow, payload.len(), ip_id)?;
    if let Some(dst) = buf.get_mut(UDP_FRAME_OVERHEAD_BYTES..n) {
        dst.copy_from_slice(payload);
    }
    set_udp_checksum(buf.get_mut(..n).unwrap_or(&mut []));
    Ok(n)
}

/// Writes the headers for a payload of `payload_len` bytes that the caller puts (or has
/// put) at `buf[UDP_FRAME_OVERHEAD_BYTES..]`, with the IPv4 checksum and a zero UDP
/// checksum ("none"; call [`set_udp_checksum`] after writing the payload to add one).
/// Returns the frame length.
///
/// # Errors
/// As [`build_udp`].
pub fn write_udp_headers(
    buf: &mut [u8],
    flow: &UdpFlow,
    payload_len: usize,
    ip_id: u16,
) -> Result<usize, BuildError> {
    if payload_len > MAX_UDP_PAYLOAD_BYTES {
        return Err(BuildError::PayloadTooLarge { len: payload_len });
    }
    let needed = UDP_FRAME_OVERHEAD_BYTES + payload_len;
    let capacity = buf.len();
    let Some(hdr) = buf
        .get_mut(..UDP_FRAME_OVERHEAD_BYTES)
        .filter(|_| capacity >= needed)
    else {
        return Err(BuildError::BufferTooSmall { needed, capacity });
    };
    // Both fit in u16: payload_len <= MAX_UDP_PAYLOAD_BYTES.
    let udp_len = u16::try_from(UDP_HEADER_BYTES + payload_len).unwrap_or(u16::MAX);
    let total =
        u16::try_from(IPV4_HEADER_BYTES + UDP_HEADER_BYTES + payload_len).unwrap_or(u16::MAX);
    let mut h = [0u8; UDP_FRAME_OVERHEAD_BYTES];
    h[0..6].copy_from_slice(&flow.dst_mac.0);
    h[6..12].copy_from_slice(&flow.src_mac.0);
    h[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    h[14] = 0x45;
    h[15] = 0;
    h[16..18].copy_from_slice(&total.to_be_bytes());
    h[18..20].copy_from_slice(&ip_id.to_be_bytes());
    h[20..22].copy_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
    h[22] = 64; // TTL
    h[23] = IPPROTO_UDP;
    h[26..30].copy_from_slice(&flow.src.ip().octets());
    h[30..34].copy_from_slice(&flow.dst.ip().octets());
    let ip_sum = internet_checksum(&h[14..34]);
    h[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    h[34..36].copy_from_slice(&flow.src.port().to_be_bytes());
    h[36..38].copy_from_slice(&flow.dst.port().to_be_bytes());
    h[38..40].copy_from_slice(&udp_len.to_be_bytes());
    hdr.copy_from_slice(&h);
    Ok(needed)
}

/// Computes and stores the full UDP checksum of a frame laid out as [`write_udp_headers`]
/// writes it (IPv4 header of any length, after an optional priority tag). Does nothing if `frame` is not IPv4/UDP with
/// consistent lengths. A computed checksum of zero is sent as `0xffff` (RFC 768).
pub fn set_udp_checksum(frame: &mut [u8]) {
    let Some((l3, udp_start, udp_len)) = udp_span(frame) else {
        return;
    };
    if let Some(ip) = frame.get_mut(l3..) {
        fill_udp_checksum(ip, udp_start - l3, udp_len);
    }
}

/// Stores the full UDP checksum of the datagram at `ip[udp_start..udp_start + udp_len]`,
/// `ip` starting at its IPv4 header (whose addresses the pseudo-header takes). Does
/// nothing if the span is out of bounds.
#[inline]
fn fill_udp_checksum(ip: &mut [u8], udp_start: usize, udp_len: usize) {
    let src = arr4(ip, 12);
    let dst = arr4(ip, 16);
    let Some(udp) = ip.get_mut(udp_start..udp_start + udp_len) else {
        return;
    };
    if let Some(c) = udp.get_mut(6..8) {
        c.copy_from_slice(&[0, 0]);
    }
    let pseudo = pseudo_header_sum(src, dst, u16::try_from(udp_len).unwrap_or(u16::MAX));
    let mut sum = !checksum_fold(checksum_add(pseudo, udp));
    if sum == 0 {
        sum = 0xffff;
    }
    if let Some(c) = udp.get_mut(6..8) {
        c.copy_from_slice(&sum.to_be_bytes());
    }
}

/// Offsets of the IPv4 header and of the UDP header+payload, and the UDP length, if the
/// IPv4 header is self-consistent (after an optional priority tag).
fn udp_span(frame: &[u8]) -> Option<(usize, usize, usize)> {
    let l3 = ipv4_offset(frame).ok()?;
    let ihl = usize::from(frame.get(l3)? & 0x0f) * 4;
    if ihl < IPV4_HEADER_BYTES || frame.get(l3 + 9).copied() != Some(IPPROTO_UDP) {
        return None;
    }
    let udp_start = l3 + ihl;
    let udp_len = usize::from(be16(frame, udp_start + 4));
    (udp_len >= UDP_HEADER_BYTES && udp_start + udp_len <= frame.len())
        .then_some((l3, udp_start, udp_len))
}

/// Turns a received IPv4/UDP frame into its reply in place: swaps the MAC addresses, the
/// IPv4 addresses and the UDP ports, resets the TTL, and rewrites both checksums (so a
/// partial checksum from a local sender becomes a valid one). A priority tag stays in
/// place, so the reply carries the request's priority. Returns the frame length (the
/// IPv4 total length plus the Ethernet header and tag; trailing padding is dropped).
///
/// # Errors
/// The [`ParseError`] of the frame if it is not well-formed IPv4/UDP (checked with
/// [`UdpChecksumPolicy::Ignore`]), and [`ParseError::GroupAddress`] for a datagram sent
/// to a group (multicast or broadcast) MAC or IPv4 address, whose reply would have that
/// address as its source (an invalid frame that receivers drop); the frame is then
/// unchanged.
pub fn reply_in_place(frame: &mut [u8]) -> Result<usize, ParseError> {
    let view = parse_udp(frame, UdpChecksumPolicy::Ignore)?;
    if is_group_mac(frame, 0) || is_group_ip(arr4(frame, view.l3 + 16)) {
        return Err(group_address(frame, 0, "destination"));
    }
    let l3 = view.l3;
    let ihl = view.payload_start - UDP_HEADER_BYTES - l3;
    let udp_len = view.payload_len + UDP_HEADER_BYTES;
    let total = l3 + usize::from(be16(frame, l3 + 2));
    // Offsets from here on are relative to the Ethernet header (`eth`) and to the IPv4
    // header (`ip`), as constants, whatever the tag: `parse_udp` checked every length.
    let (eth, ip) = frame
        .get_mut(..total)
        .and_then(|f| f.split_at_mut_checked(l3))
        .unwrap_or_default();
    if let Some((dst_mac, src_mac)) = eth.get_mut(..12).map(|m| m.split_at_mut(6)) {
        dst_mac.swap_with_slice(src_mac);
    }
    if let Some((src_ip, dst_ip)) = ip.get_mut(12..20).map(|a| a.split_at_mut(4)) {
        src_ip.swap_with_slice(dst_ip);
    }
    if let Some((sport, dport)) = ip.get_mut(ihl..ihl + 4).map(|p| p.split_at_mut(2)) {
        sport.swap_with_slice(dport);
    }
    if let Some(ttl) = ip.get_mut(8) {
        *ttl = 64;
    }
    if let Some(c) = ip.get_mut(10..12) {
        c.copy_from_slice(&[0, 0]);
    }
    let ip_sum = internet_checksum(ip.get(..ihl).unwrap_or(&[]));
    if let Some(c) = ip.get_mut(10..12) {
        c.copy_from_slice(&ip_sum.to_be_bytes());
    }
    fill_udp_checksum(ip, ihl, udp_len);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> UdpFlow {
        UdpFlow {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            src: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000),
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 9000),
        }
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let n = build_udp(&mut buf, &flow(), payload, 7).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn build_then_parse_round_trip() {
        let f = frame(b"hello tally");
        assert_eq!(f.len(), 42 + 11);
        let v = parse_udp(&f, UdpChecksumPolicy::Verify).unwrap();
        assert_eq!(v.payload(), b"hello tally");
        assert_eq!(v.src(), flow().src);
        assert_eq!(v.dst(), flow().dst);
        assert_eq!(v.src_mac(), flow().src_mac);
        assert_eq!(v.dst_mac(), flow().dst_mac);
        assert_eq!(v.checksum_state(), UdpChecksumState::Valid);
    }

    /// Published examples: RFC 1071 section 3 and the widely used IPv4 header example
    /// whose checksum is 0xb861.
    #[test]
    fn checksums_match_rfc1071_reference() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (complement 220d).
        assert_eq!(
            checksum_fold(checksum_add(
                0,
                &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
            )),
            0xddf2
        );
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // Odd length pads with a zero byte.
        assert_eq!(checksum_fold(checksum_add(0, &[0x12])), 0x1200);
        // The classic IPv4 header example (Wikipedia "IPv4 header checksum").
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&hdr), 0xb861);
    }

    #[test]
    fn checksum_accumulator_never_overflows() {
        // Any accumulator is accepted (it used to overflow: a panic in debug builds, a
        // wrong sum in release builds), with the same ones'-complement value: 2^64 is 1
        // modulo 0xffff, so u64::MAX is 0 and u64::MAX - 1 is 0xfffe.
        assert_eq!(checksum_fold(checksum_add(u64::MAX, &[0, 1])), 1);
        assert_eq!(checksum_fold(checksum_add(u64::MAX - 1, &[0, 1])), 0xffff);
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        for acc in [u64::MAX, u64::MAX - 7, 1 << 63, 0xffff_ffff_0000_0001] {
            let folded = u64::from(checksum_fold(acc));
            assert_eq!(
                checksum_fold(checksum_add(acc, &data)),
                checksum_fold(checksum_add(folded, &data)),
                "{acc:#x}"
            );
        }
        // Chained calls sum as one call over the concatenation, for as long as they go.
        let mut acc = 0;
        for _ in 0..4 {
            acc = checksum_add(acc, &data[..500]);
            acc = checksum_add(acc, &data[500..1000]);
        }
        let whole: Vec<u8> = data[..1000].repeat(4);
        assert_eq!(checksum_fold(acc), checksum_fold(checksum_add(0, &whole)));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let good = frame(b"0123456789");
        assert!(matches!(
            parse_udp(&good[..41], UdpChecksumPolicy::Verify),
            Err(ParseError::Runt { len: 41 })
        ));
        assert!(matches!(
            parse_udp(&[], UdpChecksumPolicy::Verify),
            Err(ParseError::Runt { len: 0 })
        ));
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(matches!(
            parse_udp(&arp, UdpChecksumPolicy::Verify),
            Err(ParseError::NotIpv4 { ethertype: 0x0806 })
        ));
        assert!(matches!(
            parse_udp(&arp[..30], UdpChecksumPolicy::Verify),
            Err(ParseError::NotIpv4 { .. })
        ));
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            parse_udp(&big, UdpChecksumPolicy::Verify),
            Err(ParseError::Oversize { .. })
        ));
        // Lying IPv4 total length (longer than the frame).
        let mut lie = good.clone();
        lie[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(
            parse_udp(&lie, UdpChecksumPolicy::Verify),
            Err(ParseError::BadIpLength { .. })
        ));
        // Truncated frame: total length says more than we have.
        assert!(matches!(
            parse_udp(&good[..good.len() - 1], UdpChecksumPolicy::Verify),
            Err(ParseError::BadIpLength { .. })
        ));
        // IHL claims 60 bytes of header.
        let mut ihl = good.clone();
        ihl[14] = 0x4f;
        assert!(matches!(
            parse_udp(&ihl, UdpChecksumPolicy::Verify),
            Err(ParseError::BadIpLength { .. })
        ));
        let mut v6 = good.clone();
        v6[14] = 0x65;
        assert!(matches!(
            parse_udp(&v6, UdpChecksumPolicy::Verify),
            Err(ParseError::BadIpHeader { version: 6, .. })
        ));
        let mut ipsum = good.clone();
        ipsum[24] ^= 1;
        assert!(matches!(
            parse_udp(&ipsum, UdpChecksumPolicy::Verify),
            Err(ParseError::BadIpChecksum)
        ));
        let mut udpsum = good.clone();
        udpsum[45] ^= 0x40; // payload byte
        assert!(matches!(
            parse_udp(&udpsum, UdpChecksumPolicy::Verify),
            Err(ParseError::BadUdpChecksum)
        ));
        assert!(parse_udp(&udpsum, UdpChecksumPolicy::Ignore).is_ok());
        // Lying UDP length.
        let mut ulen = good.clone();
        ulen[38..40].copy_from_slice(&100u16.to_be_bytes());
        assert!(matches!(
            parse_udp(&ulen, UdpChecksumPolicy::Ignore),
            Err(ParseError::BadUdpLength { claimed: 100, .. })
        ));
        ulen[38..40].copy_from_slice(&3u16.to_be_bytes());
        assert!(matches!(
            parse_udp(&ulen, UdpChecksumPolicy::Ignore),
            Err(ParseError::BadUdpLength { claimed: 3, .. })
        ));
        let stats = ParseStats::new();
        for f in [&good[..3], &arp[..], &ipsum[..], &udpsum[..]] {
            if let Err(e) = parse_udp(f, UdpChecksumPolicy::Verify) {
                stats.count(&e);
            }
        }
        let s = stats.snapshot();
        assert_eq!(
            (
                s.runt,
                s.not_ipv4,
                s.bad_ip_checksum,
                s.bad_udp_checksum,
                s.total()
            ),
            (1, 1, 1, 1, 4)
        );
    }

    #[test]
    fn fragments_and_other_protocols() {
        let good = frame(b"x");
        let mut frag = good.clone();
        frag[20..22].copy_from_slice(&0x2000u16.to_be_bytes()); // MF
        let sum = internet_checksum(&{
            let mut h = frag[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        frag[24..26].copy_from_slice(&sum.to_be_bytes());
        assert!(matches!(
            parse_udp(&frag, UdpChecksumPolicy::Verify),
            Err(ParseError::Fragment)
        ));
        let mut icmp = good.clone();
        icmp[23] = 1;
        icmp[24..26].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&icmp[14..34]);
        icmp[24..26].copy_from_slice(&sum.to_be_bytes());
        assert!(matches!(
            parse_udp(&icmp, UdpChecksumPolicy::Verify),
            Err(ParseError::NotUdp { protocol: 1 })
        ));
    }

    #[test]
    fn partial_checksum_accepted_only_when_asked() {
        let mut f = frame(b"partial");
        let pseudo = pseudo_header_sum([198, 18, 0, 1], [198, 18, 0, 2], 15);
        f[40..42].copy_from_slice(&checksum_fold(pseudo).to_be_bytes());
        assert_eq!(
            parse_udp(&f, UdpChecksumPolicy::VerifyOrPartial)
                .unwrap()
                .checksum_state(),
            UdpChecksumState::Partial
        );
        assert!(matches!(
            parse_udp(&f, UdpChecksumPolicy::Verify),
            Err(ParseError::BadUdpChecksum)
        ));
        f[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(
            parse_udp(&f, UdpChecksumPolicy::Verify)
                .unwrap()
                .checksum_state(),
            UdpChecksumState::Absent
        );
    }

    #[test]
    fn reply_in_place_swaps_and_fixes_checksums() {
        let mut f = frame(b"ping");
        // Give it a partial checksum like a local sender would.
        let pseudo = pseudo_header_sum([198, 18, 0, 1], [198, 18, 0, 2], 12);
        f[40..42].copy_from_slice(&checksum_fold(pseudo).to_be_bytes());
        f.extend_from_slice(&[0; 6]); // Ethernet padding
        let n = reply_in_place(&mut f).unwrap();
        assert_eq!(n, 46);
        let v = parse_udp(&f[..n], UdpChecksumPolicy::Verify).unwrap();
        assert_eq!(v.checksum_state(), UdpChecksumState::Valid);
        assert_eq!(v.src(), flow().dst);
        assert_eq!(v.dst(), flow().src);
        assert_eq!(v.src_mac(), flow().dst_mac);
        assert_eq!(v.payload(), b"ping");
        assert_eq!(v.reply_flow(), flow());
        let mut junk = vec![1u8; 10];
        assert!(reply_in_place(&mut junk).is_err());
        assert_eq!(junk, vec![1u8; 10]);
    }

    #[test]
    fn group_addresses_never_send_and_are_never_answered() {
        let with = |f: &dyn Fn(&mut UdpFlow)| {
            let mut fl = flow();
            f(&mut fl);
            let mut buf = vec![0u8; 256];
            let n = build_udp(&mut buf, &fl, b"group", 3).unwrap();
            buf.truncate(n);
            buf
        };
        let stats = ParseStats::new();
        // Forged sources: a group source MAC, a multicast or broadcast source address.
        for (bad, what) in [
            (
                with(&|f| f.src_mac = MacAddr([0xff; 6])),
                "source MAC address",
            ),
            (
                with(&|f| f.src_mac = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1])),
                "source MAC address",
            ),
            (
                with(&|f| f.src.set_ip(Ipv4Addr::new(224, 0, 0, 1))),
                "source IPv4 address",
            ),
            (
                with(&|f| f.src.set_ip(Ipv4Addr::BROADCAST)),
                "source IPv4 address",
            ),
        ] {
            for policy in [UdpChecksumPolicy::Verify, UdpChecksumPolicy::Ignore] {
                let e = parse_udp(&bad, policy).unwrap_err();
                assert_eq!(e, ParseError::GroupAddress { what }, "{e}");
                stats.count(&e);
            }
            let mut r = bad.clone();
            assert!(reply_in_place(&mut r).is_err());
            assert_eq!(r, bad, "unchanged");
        }
        assert_eq!(stats.snapshot().group_address, 8);
        assert_eq!(stats.snapshot().total(), 8);
        // Datagrams to group addresses are fine to receive, but not to answer: the reply
        // would come from the group address.
        for (to_group, what) in [
            (
                with(&|f| f.dst_mac = MacAddr([0xff; 6])),
                "destination MAC address (the reply's source)",
            ),
            (
                with(&|f| {
                    f.dst_mac = MacAddr([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);
                    f.dst.set_ip(Ipv4Addr::new(239, 1, 2, 3));
                }),
                "destination MAC address (the reply's source)",
            ),
            (
                with(&|f| f.dst.set_ip(Ipv4Addr::BROADCAST)),
                "destination IPv4 address (the reply's source)",
            ),
            (
                with(&|f| f.dst.set_ip(Ipv4Addr::new(224, 0, 0, 251))),
                "destination IPv4 address (the reply's source)",
            ),
        ] {
            let v = parse_udp(&to_group, UdpChecksumPolicy::Verify).unwrap();
            assert_eq!(v.payload(), b"group");
            let mut r = to_group.clone();
            assert_eq!(
                reply_in_place(&mut r).unwrap_err(),
                ParseError::GroupAddress { what }
            );
            assert_eq!(r, to_group, "unchanged");
        }
        // Unicast both ways, including the unspecified source (DHCP): answered.
        let mut ok = with(&|f| f.src.set_ip(Ipv4Addr::UNSPECIFIED));
        assert!(reply_in_place(&mut ok).is_ok());
    }

    /// `f` with the IPv4 options `opts` (a multiple of 4 bytes) after its 20-byte header,
    /// lengths and checksums fixed.
    fn with_options(f: &[u8], opts: &[u8]) -> Vec<u8> {
        let mut g = f[..34].to_vec();
        g.extend_from_slice(opts);
        g.extend_from_slice(&f[34..]);
        g[14] = 0x45 + u8::try_from(opts.len() / 4).unwrap();
        let total = u16::from_be_bytes([g[16], g[17]]) + u16::try_from(opts.len()).unwrap();
        g[16..18].copy_from_slice(&total.to_be_bytes());
        g[24..26].copy_from_slice(&[0, 0]);
        let ihl = 20 + opts.len();
        let sum = internet_checksum(&g[14..14 + ihl]);
        g[24..26].copy_from_slice(&sum.to_be_bytes());
        set_udp_checksum(&mut g);
        g
    }

    #[test]
    fn ip_options_are_checked_like_the_kernel_does() {
        let plain = frame(b"opts");
        // Well-formed options: no-ops, end of list, router alert (148, length 4), a
        // timestamp (68) with room: accepted, and the reply keeps them.
        for opts in [
            &[1, 1, 1, 0][..],
            &[0, 0, 0, 0],
            &[148, 4, 0, 0],
            &[1, 68, 6, 5, 0, 0, 0, 0],
        ] {
            let f = with_options(&plain, opts);
            let v = parse_udp(&f, UdpChecksumPolicy::Verify)
                .unwrap_or_else(|e| panic!("{opts:?}: {e}"));
            assert_eq!(v.payload(), b"opts");
            let mut r = f.clone();
            let n = reply_in_place(&mut r).unwrap();
            let v = parse_udp(&r[..n], UdpChecksumPolicy::Verify).unwrap();
            assert_eq!(v.dst(), flow().src);
        }
        // Malformed: a length below 2, a length running past the header, a type with no
        // room for its length byte; and the source routes. Each counted, never answered.
        let stats = ParseStats::new();
        for (opts, kind, at) in [
            (&[7, 0, 0, 0][..], 7, 20),
            (&[7, 1, 0, 0], 7, 20),
            (&[1, 7, 8, 4], 7, 21),
            (&[1, 1, 1, 7], 7, 23),
            (&[131, 7, 4, 198, 18, 0, 9, 0], 131, 20),
            (&[1, 137, 7, 4, 198, 18, 0, 9], 137, 21),
        ] {
            let f = with_options(&plain, opts);
            let e = parse_udp(&f, UdpChecksumPolicy::Verify).unwrap_err();
            assert_eq!(e, ParseError::BadIpOptions { kind, at }, "{opts:?}");
            stats.count(&e);
            let mut r = f.clone();
            assert_eq!(reply_in_place(&mut r).unwrap_err(), e);
            assert_eq!(r, f, "unchanged");
        }
        assert_eq!(stats.snapshot().bad_ip_options, 6);
        assert_eq!(stats.snapshot().total(), 6);
    }

    /// `f` with an 802.1Q tag (priority 5, VLAN `vid`) after the MAC addresses.
    fn tagged(f: &[u8], vid: u16) -> Vec<u8> {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00]);
        t.extend_from_slice(&(0xa000 | vid).to_be_bytes());
        t.extend_from_slice(&f[12..]);
        t
    }

    #[test]
    fn priority_tagged_frames_parse_and_reply_with_their_tag() {
        let f = tagged(&frame(b"prio"), 0);
        let v = parse_udp(&f, UdpChecksumPolicy::Verify).unwrap();
        assert!(v.priority_tagged());
        assert_eq!(v.payload(), b"prio");
        assert_eq!(v.src(), flow().src);
        assert_eq!(v.dst(), flow().dst);
        assert_eq!(v.checksum_state(), UdpChecksumState::Valid);
        assert!(
            !parse_udp(&frame(b"x"), UdpChecksumPolicy::Verify)
                .unwrap()
                .priority_tagged()
        );

        let mut r = f.clone();
        r.extend_from_slice(&[0; 3]); // padding
        let n = reply_in_place(&mut r).unwrap();
        assert_eq!(n, f.len());
        assert_eq!(&r[12..16], &f[12..16], "the tag stays, priority included");
        let v = parse_udp(&r[..n], UdpChecksumPolicy::Verify).unwrap();
        assert_eq!(v.checksum_state(), UdpChecksumState::Valid);
        assert_eq!(v.src(), flow().dst);
        assert_eq!(v.dst(), flow().src);
        assert_eq!(v.reply_flow(), flow());
        assert_eq!(v.payload(), b"prio");
    }

    #[test]
    fn other_vlans_and_bad_tags_are_not_ipv4() {
        let plain = frame(b"vlan");
        for vid in [1, 100, 4095] {
            let mut f = tagged(&plain, vid);
            assert_eq!(
                parse_udp(&f, UdpChecksumPolicy::Verify).unwrap_err(),
                ParseError::NotIpv4 { ethertype: 0x8100 },
                "VLAN {vid}"
            );
            let before = f.clone();
            assert!(reply_in_place(&mut f).is_err());
            assert_eq!(f, before, "unchanged");
        }
        // A priority tag in front of something other than IPv4 (here ARP).
        let mut f = tagged(&plain, 0);
        f[16..18].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(
            parse_udp(&f, UdpChecksumPolicy::Verify).unwrap_err(),
            ParseError::NotIpv4 { ethertype: 0x8100 }
        );
        // Tagged frames cut short anywhere: an error, never a panic.
        let f = tagged(&plain, 0);
        for len in 0..f.len() {
            assert!(
                parse_udp(&f[..len], UdpChecksumPolicy::Verify).is_err(),
                "{len}"
            );
        }
    }

    #[test]
    fn build_errors() {
        let mut small = [0u8; 50];
        assert!(matches!(
            build_udp(&mut small, &flow(), &[0; 9], 0),
            Err(BuildError::BufferTooSmall {
                needed: 51,
                capacity: 50
            })
        ));
        assert_eq!(small, [0u8; 50]);
        let huge = vec![0u8; MAX_UDP_PAYLOAD_BYTES + 1];
        let mut buf = vec![0u8; 70000];
        assert!(matches!(
            build_udp(&mut buf, &flow(), &huge, 0),
            Err(BuildError::PayloadTooLarge { .. })
        ));
        assert!(build_udp(&mut buf, &flow(), &huge[1..], 0).is_ok());
    }

    #[test]
    fn mac_parse_and_display() {
        let m: MacAddr = "02:0a:ff:00:10:01".parse().unwrap();
        assert_eq!(m.0, [2, 10, 255, 0, 16, 1]);
        assert_eq!(m.to_string(), "02:0a:ff:00:10:01");
        for bad in [
            "",
            "02:0a:ff:00:10",
            "02:0a:ff:00:10:01:02",
            "2:0a:ff:00:10:01",
            "zz:0a:ff:00:10:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
