//! 802.1Q-tagged frames belong to a VLAN interface, not to the untagged one: the XDP
//! program passes them to the kernel, and the AF_PACKET filter must drop them too (the
//! kernel strips the tag into metadata before AF_PACKET sees the frame, so a filter that
//! only looks at the bytes took VLAN 100's datagrams as the interface's own).
//! Priority-tagged frames (VLAN 0) belong to the untagged interface: both transports
//! deliver them (AF_XDP used to pass them to the kernel, so an XSK never saw them), and
//! both reply to them with the tag (AF_PACKET, whose kernel strips it, used to reply
//! untagged).
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
use tally_bypass::{
    PacketConfig, PacketSocket, PacketTransport, RxBatch, XdpFilter, XdpModeChoice, XskConfig,
    XskSocket,
};

const PORT: u16 = 9410;

/// Frames for the test: VLAN 100, priority-tagged (VLAN 0) and untagged, in that order,
/// each with its own payload.
fn frames(cfg: &tally_bypass::netns::VethConfig) -> [Vec<u8>; 3] {
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
    [tagged(b"vlan-100", 100), tagged(b"priority", 0), plain]
}

/// Sends `frames` from side A's interface, 20 ms apart.
fn send_from_a(pair: &tally_bypass::netns::VethPair, frames: [Vec<u8>; 3]) {
    let ifa = pair.config().if_a.clone();
    pair.run_in(Side::A, move || {
        let config = PacketConfig {
            udp_ports: vec![],
            reserve_ports: false,
            ..PacketConfig::default()
        };
        let mut tx = PacketSocket::open(&ifa, &config).expect("open sender");
        for f in &frames {
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
}

#[test]
fn xsk_delivers_priority_tagged_frames_and_passes_other_vlans() {
    for (tag, mode) in [
        ("xvlang", XdpModeChoice::Generic),
        ("xvlann", XdpModeChoice::Native),
    ] {
        let cfg0 = VethConfig {
            static_neighbours: true,
            ..VethConfig::default()
        };
        let Some(pair) = common::veth_or_skip(tag, cfg0) else {
            return;
        };
        let cfg = pair.config().clone();
        let sent = frames(&cfg);
        let prio_frame = sent[1].clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let ifb = cfg.if_b.clone();
        let rx = pair.spawn_in(Side::B, move || {
            let mut xsk = XskSocket::open(
                &ifb,
                0,
                XskConfig {
                    filter: XdpFilter::UdpDstPorts(vec![PORT]),
                    xdp_mode: mode,
                    ..XskConfig::default()
                },
            )
            .expect("open AF_XDP");
            ready_tx.send(()).unwrap();
            let mut got = Vec::new();
            let mut frames = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !got.iter().any(|p: &Vec<u8>| p == b"untagged") {
                xsk.wait(Duration::from_millis(20)).unwrap();
                let b = xsk.recv(64);
                for i in 0..b.len() {
                    if let Some(d) = b.udp(i) {
                        got.push(d.payload().to_vec());
                        frames.push(d.frame().to_vec());
                    }
                }
            }
            (got, frames)
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        send_from_a(&pair, sent);
        let (got, frames) = rx.join().unwrap().unwrap();
        assert_eq!(
            got,
            vec![b"priority".to_vec(), b"untagged".to_vec()],
            "{mode:?}: VLAN 100's datagram reached the XSK, or a priority-tagged one did not"
        );
        assert_eq!(
            frames[0], prio_frame,
            "{mode:?}: the tag is delivered as sent"
        );
    }
}

/// AF_PACKET on `PORT` with small blocks retired after 1 ms, so that a test sees each
/// datagram at once.
fn small_blocks() -> PacketConfig {
    PacketConfig {
        udp_ports: vec![PORT],
        block_size: 1 << 16,
        block_count: 4,
        retire_timeout_ms: 1,
        ..PacketConfig::default()
    }
}

#[test]
fn afpacket_filter_drops_vlan_tagged_frames() {
    let Some(pair) = common::veth_or_skip("pvlan", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let sent = frames(&cfg);

    let (ready_tx, ready_rx) = mpsc::channel();
    let ifb = cfg.if_b.clone();
    let rx = pair.spawn_in(Side::B, move || {
        let mut sock = PacketSocket::open(&ifb, &small_blocks()).expect("open AF_PACKET");
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
    send_from_a(&pair, sent);
    let got = rx.join().unwrap().unwrap();
    assert_eq!(
        got,
        vec![b"priority".to_vec(), b"untagged".to_vec()],
        "VLAN 100's datagram was delivered, or a priority-tagged one was not"
    );
}

/// AF_PACKET replies to a priority-tagged request with the request's tag, as AF_XDP
/// does: the kernel strips the tag before the ring (into `tp_vlan_tci`), and the reply
/// used to go back untagged. Untagged requests still get untagged replies.
#[test]
fn afpacket_replies_keep_the_priority_tag() {
    let cfg0 = VethConfig {
        static_neighbours: true,
        ..VethConfig::default()
    };
    let Some(pair) = common::veth_or_skip("pvlrep", cfg0) else {
        return;
    };
    let cfg = pair.config().clone();
    let sent = frames(&cfg);
    let (ready_tx, ready_rx) = mpsc::channel();
    let ifb = cfg.if_b.clone();
    let responder = pair.spawn_in(Side::B, move || {
        let mut sock = PacketSocket::open(&ifb, &small_blocks()).expect("open AF_PACKET");
        ready_tx.send(()).unwrap();
        let mut replied = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && replied < 2 {
            sock.wait(Duration::from_millis(20)).unwrap();
            let mut b = sock.recv(64);
            for i in 0..b.len() {
                b.reply(i, &mut |rx, tx| {
                    tx[..rx.len()].copy_from_slice(rx);
                    tally_bypass::packet::reply_in_place(&mut tx[..rx.len()]).unwrap()
                })
                .unwrap();
                replied += 1;
            }
            drop(b);
            sock.flush().unwrap();
        }
        replied
    });
    let (cap_ready_tx, cap_ready_rx) = mpsc::channel();
    let ifa = cfg.if_a.clone();
    let capture = pair.spawn_in(Side::A, move || {
        let mut xsk = XskSocket::open(
            &ifa,
            0,
            XskConfig {
                filter: XdpFilter::UdpDstPorts(vec![40000]),
                xdp_mode: XdpModeChoice::Generic,
                ..XskConfig::default()
            },
        )
        .expect("open AF_XDP capture");
        cap_ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && got.len() < 2 {
            xsk.wait(Duration::from_millis(20)).unwrap();
            let b = xsk.recv(64);
            for d in b.datagrams() {
                got.push((d.payload().to_vec(), d.frame().to_vec()));
            }
        }
        got
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    cap_ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    send_from_a(&pair, sent);
    assert_eq!(responder.join().unwrap().unwrap(), 2);
    let got = capture.join().unwrap().unwrap();
    let payloads: Vec<&[u8]> = got.iter().map(|(p, _)| &p[..]).collect();
    assert_eq!(payloads, [&b"priority"[..], &b"untagged"[..]]);
    assert_eq!(
        got[0].1[12..16],
        [0x81, 0x00, 0xa0, 0x00],
        "the reply to a priority-tagged request lost its tag"
    );
    assert_eq!(
        got[1].1[12..14],
        [0x08, 0x00],
        "an untagged request got a tag"
    );
}
