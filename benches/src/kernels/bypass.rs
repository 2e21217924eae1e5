//! Instruction-count kernels for `tally-bypass`: the per-packet user-space work of the
//! receive and transmit paths (Ethernet/IPv4/UDP parse with checksum verification, frame
//! build with both checksums, in-place reply), on 64-byte payloads, next to the peer a
//! user would pick instead (`etherparse`: slicing without checksum checks, and its
//! `PacketBuilder`).

use std::net::{Ipv4Addr, SocketAddrV4};

use tally_bypass::packet::{
    MacAddr, UdpChecksumPolicy, UdpFlow, build_udp, parse_udp, reply_in_place,
};

use super::Kernel;

/// The kernels of this module.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        id: "bypass/parse_udp_verify_64",
        run: parse_verify,
        expect: |n| n * PARSED,
    },
    Kernel {
        id: "bypass/parse_udp_nocsum_64",
        run: parse_ignore,
        expect: |n| n * PARSED,
    },
    Kernel {
        id: "bypass/build_udp_64",
        run: build,
        expect: |n| n * BUILT,
    },
    Kernel {
        id: "bypass/reply_in_place_64",
        run: reply,
        expect: |n| n * FRAME_LEN,
    },
    Kernel {
        id: "bypass/etherparse_slice_64",
        run: etherparse_slice,
        expect: |n| n * PARSED,
    },
    Kernel {
        id: "bypass/etherparse_build_64",
        run: etherparse_build,
        expect: |n| n * BUILT,
    },
];

/// Length of the kernels' frame: Ethernet 14 + IPv4 20 + UDP 8 + the 64-byte payload.
const FRAME_LEN: u64 = 14 + 20 + 8 + 64;
/// [`FRAME_LEN`] as a length in bytes.
const FRAME_BYTES: usize = 14 + 20 + 8 + 64;
/// What a successful parse adds to the checksum: payload length plus source port.
const PARSED: u64 = 64 + 40000;
/// What a successful build adds: the frame length plus the byte at offset 40, the high
/// byte of the UDP checksum (computed independently by [`udp_checksum`]), so that a
/// builder that writes a wrong checksum fails the kernel.
const BUILT: u64 = FRAME_LEN + (udp_checksum() >> 8) as u64;

/// The UDP checksum (RFC 768) of the kernels' datagram, written out here from the
/// pseudo-header and the datagram rather than taken from the code under test.
const fn udp_checksum() -> u16 {
    const UDP_LEN: u32 = 8 + 64;
    // Pseudo-header: 198.18.0.1, 198.18.0.2, protocol 17, UDP length.
    let mut sum: u32 = 0xC612 + 0x0001 + 0xC612 + 0x0002 + 17 + UDP_LEN;
    // UDP header: ports 40000 and 9000, length, checksum 0.
    sum += 40000 + 9000 + UDP_LEN;
    // 64 bytes of 0x42: 32 words of 0x4242.
    sum += 32 * 0x4242;
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    // `sum` is at most 0xFFFF here, so the cast keeps every bit.
    #[allow(clippy::cast_possible_truncation, reason = "folded to 16 bits above")]
    let folded = sum as u16;
    match !folded {
        0 => 0xFFFF,
        c => c,
    }
}

/// Whether `frame` is the kernels' datagram, checked against values written out here
/// rather than taken from the code under test: the length, the addresses and ports, the
/// 64 payload bytes, a valid IPv4 header checksum (whatever the IP id) and the UDP
/// checksum of [`udp_checksum`]. The build kernels' per-iteration checksum adds the length
/// and one checksum byte only, which a builder that skipped the payload copy or the IPv4
/// checksum would still produce; they check their last frame with this, once per run, a
/// cost that cancels in the difference of two runs.
fn is_the_datagram(frame: &[u8]) -> bool {
    let ipv4_sum = frame.get(14..34).map_or(0, |h| {
        let mut sum = h.chunks_exact(2).fold(0u32, |s, w| match w {
            [a, b] => s + u32::from(u16::from_be_bytes([*a, *b])),
            _ => s,
        });
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        sum
    });
    frame.len() as u64 == FRAME_LEN
        && frame.get(..14) == Some(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00][..])
        && frame.get(14) == Some(&0x45)
        && frame.get(23) == Some(&17)
        && ipv4_sum == 0xFFFF
        && frame.get(26..34) == Some(&[198, 18, 0, 1, 198, 18, 0, 2][..])
        && frame.get(34..40) == Some(&[0x9C, 0x40, 0x23, 0x28, 0, 8 + 64][..])
        && frame.get(40..42) == Some(&udp_checksum().to_be_bytes()[..])
        && frame
            .get(42..)
            .is_some_and(|p| p.iter().all(|b| *b == 0x42))
}

/// `frame` (the kernels' datagram) as its reply: MAC addresses, IPv4 addresses and UDP
/// ports swapped, written out here. The TTL is already 64 and both checksums are sums that
/// swapping fields does not change, so the reply is otherwise the same bytes.
fn turned_round(frame: &[u8]) -> Vec<u8> {
    let mut r = frame.to_vec();
    for (a, b, len) in [(0, 6, 6), (26, 30, 4), (34, 36, 2)] {
        for k in 0..len {
            r.swap(a + k, b + k);
        }
    }
    r
}

/// Whether `reply` turns the kernels' datagram into its reply and that back into the
/// datagram (the reply kernel alternates between the two). Its per-iteration checksum
/// adds the returned length only, which a reply that changed nothing would return too;
/// it checks this once, before its loop, a cost that cancels in the difference of two
/// runs.
fn turns_round<E>(frame: &[u8], reply: impl Fn(&mut [u8]) -> Result<usize, E>) -> bool {
    let mut f = frame.to_vec();
    is_the_datagram(frame)
        && reply(&mut f).is_ok_and(|n| n == frame.len())
        && f == turned_round(frame)
        && reply(&mut f).is_ok_and(|n| n == frame.len())
        && f == frame
}

fn flow() -> UdpFlow {
    UdpFlow {
        src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
        src: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000),
        dst: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 9000),
    }
}

fn frame() -> ([u8; 256], usize) {
    let mut buf = [0u8; 256];
    let n = build_udp(&mut buf, &flow(), &[0x42; 64], 1).unwrap_or(0);
    (buf, n)
}

fn parse_with(iters: u64, policy: UdpChecksumPolicy) -> u64 {
    let (buf, n) = frame();
    let f = buf.get(..n).unwrap_or(&[]);
    let mut acc = 0u64;
    for _ in 0..iters {
        if let Ok(v) = parse_udp(std::hint::black_box(f), policy) {
            acc = acc.wrapping_add(v.payload().len() as u64 + u64::from(v.src_port()));
        }
    }
    acc
}

/// Whether `parse_udp` with `policy` refuses the kernels' datagram with one payload byte
/// changed. The verifying parse kernel's per-iteration checksum (payload length and source
/// port) is the same for a parse that skipped the checksum it was asked to verify; it
/// checks this once, before its loop, a cost that cancels in the difference of two runs.
fn refuses_a_damaged_payload(frame: &[u8], policy: UdpChecksumPolicy) -> bool {
    let mut damaged = frame.to_vec();
    if let Some(b) = damaged.get_mut(FRAME_BYTES - 1) {
        *b ^= 0x01;
    }
    parse_udp(frame, policy).is_ok() && parse_udp(&damaged, policy).is_err()
}

fn parse_verify(iters: u64) -> u64 {
    let (buf, n) = frame();
    if !refuses_a_damaged_payload(buf.get(..n).unwrap_or(&[]), UdpChecksumPolicy::Verify) {
        return 0;
    }
    parse_with(iters, UdpChecksumPolicy::Verify)
}

fn parse_ignore(iters: u64) -> u64 {
    parse_with(iters, UdpChecksumPolicy::Ignore)
}

fn build(iters: u64) -> u64 {
    let mut buf = [0u8; 256];
    let payload = [0x42u8; 64];
    let fl = flow();
    let mut acc = 0u64;
    for i in 0..iters {
        let n = build_udp(
            std::hint::black_box(&mut buf),
            &fl,
            &payload,
            (i & 0xffff) as u16,
        )
        .unwrap_or(0);
        acc = acc.wrapping_add(n as u64 + u64::from(buf[40]));
    }
    if iters > 0 && !buf.get(..FRAME_BYTES).is_some_and(is_the_datagram) {
        return 0;
    }
    acc
}

fn reply(iters: u64) -> u64 {
    let (mut buf, n) = frame();
    if !turns_round(buf.get(..n).unwrap_or(&[]), reply_in_place) {
        return 0;
    }
    let mut acc = 0u64;
    for _ in 0..iters {
        let f = buf.get_mut(..n).unwrap_or(&mut []);
        acc = acc.wrapping_add(reply_in_place(std::hint::black_box(f)).unwrap_or(0) as u64);
    }
    acc
}

/// Peer: `etherparse::SlicedPacket::from_ethernet` (zero-copy slicing, no checksum check).
fn etherparse_slice(iters: u64) -> u64 {
    let (buf, n) = frame();
    let f = buf.get(..n).unwrap_or(&[]);
    let mut acc = 0u64;
    for _ in 0..iters {
        if let Ok(p) = etherparse::SlicedPacket::from_ethernet(std::hint::black_box(f))
            && let Some(etherparse::TransportSlice::Udp(u)) = p.transport
        {
            acc = acc.wrapping_add(u.payload().len() as u64 + u64::from(u.source_port()));
        }
    }
    acc
}

/// Peer: `etherparse::PacketBuilder` writing Ethernet/IPv4/UDP with checksums into a buffer.
fn etherparse_build(iters: u64) -> u64 {
    let mut buf = [0u8; 256];
    let payload = [0x42u8; 64];
    let mut acc = 0u64;
    for _ in 0..iters {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(40000, 9000);
        let len = b.size(payload.len());
        let mut w = &mut std::hint::black_box(&mut buf)[..];
        if b.write(&mut w, &payload).is_ok() {
            acc = acc.wrapping_add(len as u64 + u64::from(buf[40]));
        }
    }
    if iters > 0 && !buf.get(..FRAME_BYTES).is_some_and(is_the_datagram) {
        return 0;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build kernels' last frame must be the whole datagram: a builder that skipped
    /// the payload copy or the IPv4 checksum kept its per-iteration checksum (length and
    /// one byte of the UDP checksum).
    #[test]
    fn a_frame_missing_work_is_not_the_datagram() {
        let (buf, n) = frame();
        let good = buf.get(..n).unwrap();
        assert!(is_the_datagram(good));
        for (at, what) in [
            (50, "payload byte"),
            (24, "IPv4 checksum"),
            (41, "UDP checksum"),
        ] {
            let mut bad = good.to_vec();
            bad[at] = 0;
            assert!(!is_the_datagram(&bad), "a frame without its {what} passed");
            // The build kernels' per-iteration checksum does not see the payload or the
            // IPv4 checksum.
            assert_eq!(bad.len() as u64 + u64::from(bad[40]), BUILT, "{what}");
        }
    }

    /// The verifying parse kernel refuses to count a parse that does not verify.
    #[test]
    fn a_parse_that_does_not_verify_is_refused() {
        let (buf, n) = frame();
        let f = buf.get(..n).unwrap();
        assert!(refuses_a_damaged_payload(f, UdpChecksumPolicy::Verify));
        assert!(!refuses_a_damaged_payload(f, UdpChecksumPolicy::Ignore));
    }

    /// The reply kernel's per-iteration checksum (the length) is the same for a reply
    /// that changes nothing; the check before its loop is not.
    #[test]
    fn a_reply_that_changes_nothing_is_refused() {
        let (buf, n) = frame();
        let f = buf.get(..n).unwrap();
        assert!(turns_round(f, reply_in_place));
        let no_op = |frame: &mut [u8]| Ok::<usize, ()>(frame.len());
        assert!(!turns_round(f, no_op));
        let macs_only = |frame: &mut [u8]| {
            let (a, b) = frame.split_at_mut(6);
            a.swap_with_slice(&mut b[..6]);
            Ok::<usize, ()>(frame.len())
        };
        assert!(!turns_round(f, macs_only));
    }
}
