//! Property tests of the Ethernet/IPv4/UDP parser: arbitrary bytes never panic, every
//! valid frame round-trips, and every single-byte corruption of a valid frame's headers
//! or checksummed bytes is either rejected or still self-consistent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::prelude::*;
use tally_bypass::packet::{
    MacAddr, ParseError, ParseStats, UdpChecksumPolicy, UdpFlow, build_udp, parse_udp,
    reply_in_place,
};

fn flow_strategy() -> impl Strategy<Value = UdpFlow> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(mut a, b, s, d, sp, dp)| {
            // A group (multicast or broadcast) source is forged: `parse_udp` rejects it.
            a[0] &= !1;
            let s = match Ipv4Addr::from(s) {
                ip if ip.is_multicast() || ip.is_broadcast() => Ipv4Addr::from(s & 0x0fff_ffff),
                ip => ip,
            };
            UdpFlow {
                src_mac: MacAddr(a),
                dst_mac: MacAddr(b),
                src: SocketAddrV4::new(s, sp),
                dst: SocketAddrV4::new(Ipv4Addr::from(d), dp),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let stats = ParseStats::new();
        let mut want = [0u64; ParseError::KINDS];
        for policy in [UdpChecksumPolicy::Verify, UdpChecksumPolicy::VerifyOrPartial, UdpChecksumPolicy::Ignore] {
            match parse_udp(&bytes, policy) {
                Ok(v) => {
                    // A view never reaches outside the frame.
                    prop_assert!(v.payload().len() + 42 <= bytes.len());
                }
                Err(e) => {
                    want[e.kind_index()] += 1;
                    stats.count(&e);
                }
            }
        }
        // Every rejection is counted once, under its own reason.
        let mut got = Vec::with_capacity(ParseError::KINDS);
        stats.snapshot().for_each(|_, v| got.push(v));
        prop_assert_eq!(got, want.to_vec());
        let mut copy = bytes.clone();
        let _ = reply_in_place(&mut copy);
    }

    #[test]
    fn ipv4_udp_shaped_garbage_never_panics(
        flow in flow_strategy(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        pos in 12usize..42,
        byte in any::<u8>(),
        cut in 0usize..110,
    ) {
        let mut buf = vec![0u8; 256];
        let n = build_udp(&mut buf, &flow, &payload, 1).unwrap();
        buf.truncate(n);
        buf[pos] = byte;
        let cut = cut.min(buf.len());
        let _ = parse_udp(&buf[..cut], UdpChecksumPolicy::Verify);
        let _ = parse_udp(&buf, UdpChecksumPolicy::Ignore);
        let _ = reply_in_place(&mut buf);
    }

    #[test]
    fn valid_frames_round_trip(flow in flow_strategy(), payload in proptest::collection::vec(any::<u8>(), 0..1500), id in any::<u16>()) {
        let mut buf = vec![0u8; 2048];
        let n = build_udp(&mut buf, &flow, &payload, id).unwrap();
        let v = parse_udp(&buf[..n], UdpChecksumPolicy::Verify).unwrap();
        prop_assert_eq!(v.payload(), &payload[..]);
        prop_assert_eq!(v.src(), flow.src);
        prop_assert_eq!(v.dst(), flow.dst);
        prop_assert_eq!(v.reply_flow().dst_mac, flow.src_mac);
    }

    /// A reply never comes from a group (multicast or broadcast) address, whatever the
    /// request was sent to: receivers drop such frames as forged.
    #[test]
    fn replies_come_from_unicast_addresses(flow in flow_strategy(), group_mac in any::<bool>(), group_ip in 0u8..3, payload in proptest::collection::vec(any::<u8>(), 0..32)) {
        let mut flow = flow;
        if group_mac {
            flow.dst_mac.0[0] |= 1;
        }
        match group_ip {
            1 => flow.dst.set_ip(Ipv4Addr::BROADCAST),
            2 => flow.dst.set_ip(Ipv4Addr::from(0xe000_0000 | (u32::from(*flow.dst.ip()) & 0x0fff_ffff))),
            _ => {}
        }
        let mut buf = vec![0u8; 128];
        let n = build_udp(&mut buf, &flow, &payload, 1).unwrap();
        buf.truncate(n);
        match reply_in_place(&mut buf) {
            Ok(len) => {
                let v = parse_udp(&buf[..len], UdpChecksumPolicy::Verify).unwrap();
                prop_assert_eq!(v.src_mac().0[0] & 1, 0);
                prop_assert!(!v.src_ip().is_multicast() && !v.src_ip().is_broadcast());
                prop_assert_eq!(v.dst(), flow.src);
            }
            Err(e) => {
                let to_group = flow.dst_mac.0[0] & 1 != 0
                    || flow.dst.ip().is_multicast()
                    || flow.dst.ip().is_broadcast();
                prop_assert!(to_group, "unicast request refused: {}", e);
                let group = matches!(e, ParseError::GroupAddress { .. });
                prop_assert!(group, "{}", e);
            }
        }
    }

    /// Flipping any bit of the IPv4 header or the UDP header/payload is caught by a
    /// checksum or a length check (RFC 1071 detects every single-bit error), except in the
    /// UDP checksum field itself when it becomes zero ("no checksum").
    #[test]
    fn single_bit_flips_are_rejected(flow in flow_strategy(), payload in proptest::collection::vec(any::<u8>(), 1..100), bit in 0usize..8, pos_seed in any::<usize>()) {
        let mut buf = vec![0u8; 256];
        let n = build_udp(&mut buf, &flow, &payload, 9).unwrap();
        buf.truncate(n);
        let pos = 14 + pos_seed % (n - 14);
        buf[pos] ^= 1 << bit;
        let r = parse_udp(&buf, UdpChecksumPolicy::Verify);
        if let Ok(v) = r {
            prop_assert!(matches!(v.checksum_state(), tally_bypass::packet::UdpChecksumState::Absent), "flip at {} accepted", pos);
        } else {
            let e = r.unwrap_err();
            prop_assert!(e.kind_index() < ParseError::KINDS);
        }
    }
}
