//! AF_PACKET TPACKET_V3 on a veth pair in namespaces this test creates: filtered receive
//! with bytes, counts and order; transmit through the tx ring; the automatic fallback
//! from AF_XDP with the reason visible.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::packet::UdpFlow;
use tally_bypass::{
    PacketConfig, PacketSocket, PacketTransport, RxBatch, Transport, TransportKind,
    TransportOptions,
};

const PORT: u16 = 9100;

#[test]
fn tpacket_v3_receives_filtered_udp_and_transmits() {
    let Some(pair) = common::veth_or_skip("prx", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let names = pair.netns_names();
    let (ready_tx, ready_rx) = mpsc::channel();
    let c2 = cfg.clone();
    let receiver = pair.spawn_in(Side::B, move || {
        let config = PacketConfig {
            udp_ports: vec![PORT],
            block_size: 1 << 16,
            block_count: 8,
            ..PacketConfig::default()
        };
        let mut sock = PacketSocket::open(&c2.if_b, &config).expect("open AF_PACKET");
        ready_tx.send(()).unwrap();
        let mut seen: HashMap<SocketAddrV4, Vec<(u32, Vec<u8>)>> = HashMap::new();
        let mut total = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while total < 1000 && Instant::now() < deadline {
            sock.wait(Duration::from_millis(20)).unwrap();
            let batch = sock.recv(64);
            for i in 0..batch.len() {
                let d = batch
                    .udp(i)
                    .expect("only UDP to our port passes the filter");
                assert_eq!(d.dst_port(), PORT);
                let p = d.payload();
                seen.entry(d.src())
                    .or_default()
                    .push((u32::from_be_bytes(p[4..8].try_into().unwrap()), p.to_vec()));
                total += 1;
            }
        }
        let flow = UdpFlow {
            src_mac: c2.mac_b,
            dst_mac: c2.mac_a,
            src: SocketAddrV4::new(c2.ip_b, PORT),
            dst: SocketAddrV4::new(c2.ip_a, 7100),
        };
        for i in 0..100u32 {
            sock.send_udp(&flow, &common::payload(5, i, 80), i as u16)
                .unwrap();
        }
        sock.flush().unwrap();
        (seen, sock.stats())
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let flows = pair
        .run_in(Side::A, || {
            let sink = UdpSocket::bind((cfg.ip_a, 7100)).unwrap();
            sink.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            // A connected sender must not see ECONNREFUSED: the port is reserved on B.
            let conn = UdpSocket::bind((cfg.ip_a, 0)).unwrap();
            conn.connect((cfg.ip_b, PORT)).unwrap();
            let flows = common::send_flows(cfg.ip_a, SocketAddrV4::new(cfg.ip_b, PORT), 2, 500, 64);
            conn.send(b"probe-not-counted").unwrap();
            let mut buf = [0u8; 256];
            for i in 0..100u32 {
                let (n, _) = sink
                    .recv_from(&mut buf)
                    .expect("datagram from the AF_PACKET tx ring");
                assert_eq!(&buf[..n], &common::payload(5, i, 80)[..]);
            }
            conn.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let e = conn.recv(&mut buf).unwrap_err();
            assert_ne!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "ICMP port unreachable leaked"
            );
            flows
        })
        .unwrap();
    let (seen, stats) = receiver.join().unwrap().unwrap();
    eprintln!("af_packet stats {stats:?}");
    for (f, src) in flows.iter().enumerate() {
        let got = &seen[src];
        assert_eq!(got.len(), 500, "flow {f}: all datagrams");
        for (i, (seq, p)) in got.iter().enumerate() {
            assert_eq!(*seq as usize, i, "flow {f}: order");
            assert_eq!(p, &common::payload(f as u32, i as u32, 64));
        }
    }
    assert_eq!(stats.tx_packets, 100);
    drop(pair);
    common::assert_netns_gone(&names);
}

#[test]
fn transport_falls_back_to_af_packet_with_the_reason() {
    let Some(pair) = common::veth_or_skip("pfb", VethConfig::default()) else {
        return;
    };
    let ifb = pair.config().if_b.clone();
    let (kind, reason) = pair
        .run_in(Side::B, move || {
            // Queue 7 does not exist on a one-queue veth: the AF_XDP bind fails.
            let t =
                Transport::open(&ifb, 7, &TransportOptions::udp_ports(&[PORT])).expect("fallback");
            (t.kind(), t.fallback_reason().map(str::to_owned))
        })
        .unwrap();
    eprintln!("fell back: {reason:?}");
    assert_eq!(kind, TransportKind::AfPacket);
    assert!(reason.unwrap().contains("queue 7"));
    // And with a valid queue, AF_XDP is chosen.
    let ifb = pair.config().if_b.clone();
    let kind = pair
        .run_in(Side::B, move || {
            Transport::open(&ifb, 0, &TransportOptions::udp_ports(&[PORT]))
                .unwrap()
                .kind()
        })
        .unwrap();
    assert_eq!(kind, TransportKind::AfXdp);
}
