//! Malformed frames sent over a real veth (from an AF_PACKET transmit ring in namespace
//! A) into an AF_XDP socket steering all traffic in namespace B: each is counted under its
//! reason by the parser, none panics, and a good frame after them still arrives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::too_many_lines,
    reason = "test code"
)]

mod common;

use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::packet::{UdpFlow, build_udp, internet_checksum};
use tally_bypass::{
    PacketConfig, PacketSocket, PacketTransport, RxBatch, XdpFilter, XskConfig, XskSocket,
};

#[test]
fn malformed_frames_are_counted_not_fatal() {
    let cfg0 = VethConfig {
        static_neighbours: true,
        ..VethConfig::default()
    };
    let Some(pair) = common::veth_or_skip("xbad", cfg0) else {
        return;
    };
    let cfg = pair.config().clone();
    let flow = UdpFlow {
        src_mac: cfg.mac_a,
        dst_mac: cfg.mac_b,
        src: SocketAddrV4::new(cfg.ip_a, 40000),
        dst: SocketAddrV4::new(cfg.ip_b, 9400),
    };
    let mut good = vec![0u8; 256];
    let n = build_udp(&mut good, &flow, &[1; 32], 1).unwrap();
    good.truncate(n);
    let fix_ip = |f: &mut Vec<u8>| {
        f[24] = 0;
        f[25] = 0;
        let s = internet_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&s.to_be_bytes());
    };
    let mut frames: Vec<(&str, Vec<u8>)> = Vec::new();
    frames.push(("runt", good[..30].to_vec()));
    let mut f = good.clone();
    f[25] ^= 0xff;
    frames.push(("bad_ip_checksum", f));
    let mut f = good.clone();
    f[16..18].copy_from_slice(&1400u16.to_be_bytes());
    fix_ip(&mut f);
    frames.push(("bad_ip_length", f));
    let mut f = good.clone();
    f[50] ^= 0x55;
    frames.push(("bad_udp_checksum", f));
    let mut f = good.clone();
    f[38..40].copy_from_slice(&200u16.to_be_bytes());
    frames.push(("bad_udp_length", f));
    let mut f = good.clone();
    f[23] = 6;
    fix_ip(&mut f);
    frames.push(("not_udp", f));
    let mut f = good.clone();
    f[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
    fix_ip(&mut f);
    frames.push(("fragment", f));
    let mut f = good.clone();
    f[14] = 0x65;
    frames.push(("bad_ip_header", f));
    let total = frames.len() + 1;

    let (ready_tx, ready_rx) = mpsc::channel();
    let ifb = cfg.if_b.clone();
    let rx = pair.spawn_in(Side::B, move || {
        let mut xsk = XskSocket::open(
            &ifb,
            0,
            XskConfig {
                filter: XdpFilter::All,
                ..XskConfig::default()
            },
        )
        .unwrap();
        ready_tx.send(()).unwrap();
        let mut good_payloads = 0;
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen < total && Instant::now() < deadline {
            xsk.wait(Duration::from_millis(20)).unwrap();
            let b = xsk.recv(64);
            for i in 0..b.len() {
                // IPv6 router solicitations etc. from A's kernel also arrive: count only our IPv4 frames.
                let Some(frame) = b.frame(i) else { continue };
                if frame.len() < 14 || frame[6..12] != c_mac_a() || frame[12..14] != [0x08, 0x00] {
                    continue;
                }
                seen += 1;
                // Parsing a frame again must not count its reject again.
                let _ = b.udp(i);
                if let Some(d) = b.udp(i) {
                    assert_eq!(d.payload(), &[1; 32]);
                    good_payloads += 1;
                }
            }
        }
        (seen, good_payloads, xsk.parse_stats().snapshot())
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let ifa = cfg.if_a.clone();
    let to_send: Vec<Vec<u8>> = frames
        .iter()
        .map(|(_, f)| f.clone())
        .chain(std::iter::once(good.clone()))
        .collect();
    pair.run_in(Side::A, move || {
        let mut tx = PacketSocket::open(
            &ifa,
            &PacketConfig {
                block_size: 1 << 16,
                block_count: 1,
                ..PacketConfig::default()
            },
        )
        .unwrap();
        for f in &to_send {
            tx.send_frame(&mut |buf| {
                buf[..f.len()].copy_from_slice(f);
                f.len()
            })
            .unwrap();
            tx.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
    let (seen, good_payloads, s) = rx.join().unwrap().unwrap();
    eprintln!("seen {seen}, good {good_payloads}, parse stats {s:?}");
    assert_eq!(seen, total);
    assert_eq!(good_payloads, 1);
    assert_eq!(
        (
            s.runt,
            s.bad_ip_checksum,
            s.bad_ip_length,
            s.bad_udp_checksum,
            s.bad_udp_length,
            s.not_udp,
            s.fragment,
            s.bad_ip_header
        ),
        (1, 1, 1, 1, 1, 1, 1, 1)
    );
    assert_eq!(s.total(), frames.len() as u64);
}

/// The MAC of namespace A's interface in the default [`VethConfig`].
fn c_mac_a() -> [u8; 6] {
    VethConfig::default().mac_a.0
}
