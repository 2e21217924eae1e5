//! An AF_XDP transmit frame longer than the interface MTU plus the Ethernet header is
//! refused with `FrameTooLong`, as on AF_PACKET: the kernel took such frames, completed
//! them, and the peer dropped them, so `send` and `flush` said Ok and nothing arrived.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use std::net::SocketAddrV4;
use std::process::Command;

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::packet::UdpFlow;
use tally_bypass::{PacketTransport, TxError, XskConfig, XskSocket};

#[test]
fn xsk_refuses_frames_over_the_mtu() {
    let Some(pair) = common::veth_or_skip("xmtu", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let ns = pair.netns(Side::B).name().to_owned();
    pair.run_in(Side::B, move || {
        let mut x = XskSocket::open(
            &cfg.if_b,
            0,
            XskConfig {
                rx_frames: 64,
                tx_frames: 64,
                rx_ring: 64,
                tx_ring: 64,
                ..XskConfig::udp_ports(&[9511])
            },
        )
        .expect("open AF_XDP");
        let flow = UdpFlow {
            src_mac: cfg.mac_b,
            dst_mac: cfg.mac_a,
            src: SocketAddrV4::new(cfg.ip_b, 9511),
            dst: SocketAddrV4::new(cfg.ip_a, 9510),
        };
        let free = x.tx_frames_free();
        // 1472 bytes of payload make a 1514-byte frame: the most a 1500 MTU carries.
        x.send_udp(&flow, &[7; 1472], 1)
            .expect("a frame of MTU size");
        x.flush().unwrap();
        let sent = x.xsk_stats().tx_packets;
        for payload in [1473, 1558, 2000] {
            match x.send_udp(&flow, &vec![7; payload], 1) {
                Err(TxError::FrameTooLong { len, capacity }) => {
                    assert_eq!((len, capacity), (payload + 42, 1514));
                }
                other => panic!("payload {payload}: {other:?}"),
            }
        }
        assert_eq!(
            x.xsk_stats().tx_packets,
            sent,
            "a refused frame was counted"
        );
        x.flush().unwrap();
        assert_eq!(x.tx_frames_free(), free, "a refused frame left the pool");
        // A raised MTU is honoured without reopening.
        let out = Command::new("ip")
            .args(["-n", &ns, "link", "set", &cfg.if_b, "mtu", "2000"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        x.send_udp(&flow, &[7; 1558], 1)
            .expect("within the raised MTU");
        x.flush().unwrap();
    })
    .unwrap();
}
