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
    },
    Kernel {
        id: "bypass/parse_udp_nocsum_64",
        run: parse_ignore,
    },
    Kernel {
        id: "bypass/build_udp_64",
        run: build,
    },
    Kernel {
        id: "bypass/reply_in_place_64",
        run: reply,
    },
    Kernel {
        id: "bypass/etherparse_slice_64",
        run: etherparse_slice,
    },
    Kernel {
        id: "bypass/etherparse_build_64",
        run: etherparse_build,
    },
];

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

fn parse_verify(iters: u64) -> u64 {
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
    acc
}

fn reply(iters: u64) -> u64 {
    let (mut buf, n) = frame();
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
    acc
}
