//! 802.1Q-tagged frames belong to a VLAN interface, not to the untagged one: the XDP
//! program passes them to the kernel, and the AF_PACKET filter must drop them too (the
//! kernel strips the tag into metadata before AF_PACKET sees the frame, so a filter that
//! only looks at the bytes took VLAN 100's datagrams as the interface's own).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::packet::{UdpFlow, build_udp};
use tally_bypass::{PacketConfig, PacketSocket, PacketTransport, RxBatch};

const PORT: u16 = 9410;

#[test]
fn afpacket_filter_drops_vlan_tagged_frames() {
    let Some(pair) = common::veth_or_skip("pvlan", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let flow = UdpFlow {
        src_mac: cfg.mac_a,
        dst_mac: cfg.mac_b,
        src: SocketAddrV4::new(cfg.ip_a, 40000),
        dst: SocketAddrV4::new(cfg.ip_b, PORT),
    };
    let mut plain = vec![0u8; 256];
    let n = build_udp(&mut plain, &flow, b"untagged", 1).unwrap();
    plain.truncate(n);
    // An 802.1Q tag (priority 5, VLAN `vid`) after the MAC addresses.
    let tagged = |payload: &[u8], vid: u8| {
        let mut src = vec![0u8; 256];
        let n = build_udp(&mut src, &flow, payload, 2).unwrap();
        let mut f = src[..12].to_vec();
        f.extend_from_slice(&[0x81, 0x00, 0xa0, vid]);
        f.extend_from_slice(&src[12..n]);
        f
    };
    let vlan100 = tagged(b"vlan-100", 100);
    // Priority-tagged (VLAN 0) frames belong to the untagged interface.
    let prio = tagged(b"priority", 0);

    let (ready_tx, ready_rx) = mpsc::channel();
    let ifb = cfg.if_b.clone();
    let rx = pair.spawn_in(Side::B, move || {
        let config = PacketConfig {
            udp_ports: vec![PORT],
            block_size: 1 << 16,
            block_count: 4,
            retire_timeout_ms: 1,
            ..PacketConfig::default()
        };
        let mut sock = PacketSocket::open(&ifb, &config).expect("open AF_PACKET");
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !got.iter().any(|p: &Vec<u8>| p == b"untagged") {
            sock.wait(Duration::from_millis(20)).unwrap();
            let b = sock.recv(64);
            for d in b.datagrams() {
                got.push(d.payload().to_vec());
            }
        }
        got
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let ifa = cfg.if_a.clone();
    pair.run_in(Side::A, move || {
        let config = PacketConfig {
            udp_ports: vec![],
            reserve_ports: false,
            ..PacketConfig::default()
        };
        let mut tx = PacketSocket::open(&ifa, &config).expect("open sender");
        for f in [&vlan100, &prio, &plain] {
            tx.send_frame(&mut |buf| {
                buf[..f.len()].copy_from_slice(f);
                f.len()
            })
            .unwrap();
            tx.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .unwrap();
    let got = rx.join().unwrap().unwrap();
    assert_eq!(
        got,
        vec![b"priority".to_vec(), b"untagged".to_vec()],
        "VLAN 100's datagram was delivered, or a priority-tagged one was not"
    );
}
