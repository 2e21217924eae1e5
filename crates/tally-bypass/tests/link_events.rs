//! The interface goes down, comes back, or is deleted while a socket is open: `wait`
//! reports it as an error instead of spinning (AF_PACKET kept answering "ready" forever
//! after one link flap) or timing out silently forever (AF_XDP on a deleted interface).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::{PacketConfig, PacketSocket, PacketTransport, RxBatch, XskConfig, XskSocket};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

#[test]
fn afpacket_wait_reports_link_down_then_blocks_again() {
    let Some(pair) = common::veth_or_skip("plink", VethConfig::default()) else {
        return;
    };
    let ns = pair.netns(Side::B).name().to_owned();
    let ifb = pair.config().if_b.clone();
    pair.run_in(Side::B, move || {
        let config = PacketConfig {
            udp_ports: vec![9301],
            block_size: 1 << 16,
            block_count: 4,
            ..PacketConfig::default()
        };
        let mut sock = PacketSocket::open(&ifb, &config).expect("open AF_PACKET");
        assert!(!sock.wait(Duration::from_millis(20)).unwrap());
        ip(&["-n", &ns, "link", "set", &ifb, "down"]);
        let err = sock
            .wait(Duration::from_millis(200))
            .expect_err("wait on a downed interface must report it");
        assert!(err.to_string().contains("down"), "{err}");
        assert!(err.is_link_down(), "{err:?}");
        ip(&["-n", &ns, "link", "set", &ifb, "up"]);
        // Back up with nothing to receive: wait blocks for its timeout again instead of
        // answering "ready" at once with an empty batch (a busy loop).
        for _ in 0..3 {
            let t = Instant::now();
            let ready = sock.wait(Duration::from_millis(60)).unwrap();
            assert!(
                !ready && t.elapsed() >= Duration::from_millis(50),
                "wait returned {ready} after {:?} with nothing to receive",
                t.elapsed()
            );
            assert_eq!(sock.recv(64).len(), 0);
        }
    })
    .unwrap();
}

#[test]
fn xsk_wait_reports_a_deleted_interface() {
    let Some(pair) = common::veth_or_skip("xdel", VethConfig::default()) else {
        return;
    };
    let ns = pair.netns(Side::B).name().to_owned();
    let ifb = pair.config().if_b.clone();
    pair.run_in(Side::B, move || {
        let config = XskConfig {
            rx_frames: 64,
            tx_frames: 64,
            rx_ring: 64,
            tx_ring: 64,
            ..XskConfig::udp_ports(&[9302])
        };
        let mut sock = XskSocket::open(&ifb, 0, config).expect("open AF_XDP");
        assert!(!sock.wait(Duration::from_millis(20)).unwrap());
        ip(&["-n", &ns, "link", "del", &ifb]);
        // Every later wait says so too: the socket is unbound for good.
        for _ in 0..2 {
            let err = sock
                .wait(Duration::from_millis(50))
                .expect_err("wait on a deleted interface must report it");
            assert!(err.to_string().contains("gone"), "{err}");
        }
        assert_eq!(sock.recv(64).len(), 0);
    })
    .unwrap();
}

#[test]
fn afpacket_wait_reports_a_deleted_interface_every_time() {
    let Some(pair) = common::veth_or_skip("pdel", VethConfig::default()) else {
        return;
    };
    let ns = pair.netns(Side::B).name().to_owned();
    let ifb = pair.config().if_b.clone();
    pair.run_in(Side::B, move || {
        let config = PacketConfig {
            udp_ports: vec![9303],
            block_size: 1 << 16,
            block_count: 4,
            ..PacketConfig::default()
        };
        let mut sock = PacketSocket::open(&ifb, &config).expect("open AF_PACKET");
        ip(&["-n", &ns, "link", "del", &ifb]);
        // Unlike a downed interface, a deleted one never comes back to this socket:
        // every wait says so, not only the first.
        for _ in 0..3 {
            let err = sock
                .wait(Duration::from_millis(50))
                .expect_err("wait on a deleted interface must report it");
            assert!(err.to_string().contains("deleted"), "{err}");
            assert!(!err.is_link_down(), "{err:?}");
        }
        assert_eq!(sock.recv(64).len(), 0);
    })
    .unwrap();
}
