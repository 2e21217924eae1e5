//! An interface whose MTU is larger than one UMEM frame can receive (`frame_size -
//! headroom - 256`, for the MTU plus the Ethernet header and an 802.1Q tag) is refused at
//! open with `MtuTooLarge`: the socket used to open, and the kernel dropped every longer
//! frame, visible only in `rx_dropped`. `Transport::open(Auto)` returns the error rather
//! than falling back to AF_PACKET. An MTU that fits opens and receives full-size frames.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use std::net::{SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::Duration;

use tally_bypass::netns::{Side, VethConfig, VethPair};
use tally_bypass::transport::recv_until;
use tally_bypass::{
    BypassError, PacketTransport, RxBatch, Transport, TransportChoice, TransportKind,
    TransportOptions, XskConfig, XskSocket,
};

const PORT: u16 = 9530;

fn set_mtu(pair: &VethPair, side: Side, mtu: u32) {
    let out = Command::new("ip")
        .args([
            "-n",
            pair.netns(side).name(),
            "link",
            "set",
            pair.ifname(side),
            "mtu",
            &mtu.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn small(frame_size: usize) -> XskConfig {
    XskConfig {
        frame_size,
        rx_frames: 64,
        tx_frames: 64,
        rx_ring: 64,
        tx_ring: 64,
        ..XskConfig::udp_ports(&[PORT])
    }
}

#[test]
fn open_refuses_an_mtu_the_frames_cannot_receive() {
    let Some(pair) = common::veth_or_skip("xrmtu", VethConfig::default()) else {
        return;
    };
    set_mtu(&pair, Side::B, 9000);
    let ifb = pair.config().if_b.clone();
    pair.run_in(Side::B, || {
        for (frame, capacity) in [(2048, 1792), (4096, 3840)] {
            match XskSocket::open(&ifb, 0, small(frame)) {
                Err(e @ BypassError::MtuTooLarge { .. }) => {
                    let msg = e.to_string();
                    for part in [
                        "MTU 9000",
                        &format!("at most {capacity} bytes"),
                        "frame_size",
                        "lower the MTU",
                    ] {
                        assert!(msg.contains(part), "{part}: {msg}");
                    }
                }
                other => panic!("frame {frame}: {other:?}"),
            }
        }
        // A misconfiguration, not an unavailable AF_XDP: no silent AF_PACKET fallback.
        let mut opts = TransportOptions::udp_ports(&[PORT]);
        opts.xsk = small(2048);
        match Transport::open(&ifb, 0, &opts) {
            Err(BypassError::MtuTooLarge { mtu: 9000, .. }) => {}
            Ok(t) => panic!("opened {}", t.kind().as_str()),
            Err(e) => panic!("{e}"),
        }
        // AF_PACKET asked for deliberately still opens.
        opts.choice = TransportChoice::AfPacket;
        let t = Transport::open(&ifb, 0, &opts).unwrap();
        assert_eq!(t.kind(), TransportKind::AfPacket);
    })
    .unwrap();
    // Refused before anything was attached.
    assert!(!pair.xdp_attached(Side::B).unwrap());
}

#[test]
fn an_mtu_that_fits_opens_and_receives_full_frames() {
    let Some(pair) = common::veth_or_skip("xrmtuok", VethConfig::default()) else {
        return;
    };
    // 2048 - 256 = 1792 bytes per frame: MTU 1774 plus 14 plus a 4-byte tag fits.
    set_mtu(&pair, Side::A, 1774);
    set_mtu(&pair, Side::B, 1775);
    let cfg = pair.config().clone();
    pair.run_in(Side::B, || {
        assert!(matches!(
            XskSocket::open(&cfg.if_b, 0, small(2048)),
            Err(BypassError::MtuTooLarge { mtu: 1775, .. })
        ));
    })
    .unwrap();
    set_mtu(&pair, Side::B, 1774);
    pair.run_in(Side::B, || {
        let mut x = XskSocket::open(&cfg.if_b, 0, small(2048)).expect("MTU 1774 fits");
        // A datagram filling the MTU arrives whole (1774 + 14 bytes).
        let payload = vec![0x5a; 1774 - 28];
        pair.run_in(Side::A, || {
            let s = UdpSocket::bind((cfg.ip_a, 0)).unwrap();
            s.send_to(&payload, SocketAddrV4::new(cfg.ip_b, PORT))
                .unwrap();
        })
        .unwrap();
        let got = recv_until(&mut x, Duration::from_secs(5), |b| {
            (0..b.len()).any(|i| {
                b.frame(i).map(<[u8]>::len) == Some(1788)
                    && b.udp(i).is_some_and(|d| d.payload() == &payload[..])
            })
        })
        .unwrap();
        assert!(got, "the MTU-size frame did not arrive: {:?}", x.stats());
        assert_eq!(x.stats().rx_dropped, 0);
    })
    .unwrap();
}
