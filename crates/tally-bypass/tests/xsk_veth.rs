//! AF_XDP on a veth pair between two namespaces this test creates: UDP from a std socket
//! in namespace A arrives through the XSK in namespace B with the right bytes, counts and
//! per-flow order; ARP, ping and a UDP port outside the filter still reach B's kernel;
//! transmit and echo work, also between two XSKs (generic and native XDP); a starved fill
//! ring gives counted drops, not a hang; nothing is left behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::similar_names,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::packet::{UdpChecksumState, UdpFlow, reply_in_place};
use tally_bypass::{
    BindMode, PacketTransport, RxBatch, XdpFilter, XdpModeChoice, XskConfig, XskSocket,
};

const PORT: u16 = 9000;
const OTHER_PORT: u16 = 9001;

#[test]
fn xsk_receives_filtered_udp_and_kernel_keeps_the_rest() {
    let Some(pair) = common::veth_or_skip("xrx", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let names = pair.netns_names();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let ifb = cfg.if_b.clone();
    let ipb = cfg.ip_b;
    let receiver = pair.spawn_in(Side::B, move || {
        let mut xsk = XskSocket::open(&ifb, 0, XskConfig::udp_ports(&[PORT])).expect("open xsk");
        let info = xsk.info().clone();
        assert_eq!(info.bind_mode, BindMode::Copy, "veth has no zero-copy");
        assert!(
            info.bind_fallback_reason
                .as_deref()
                .unwrap_or("")
                .contains("zero-copy")
        );
        let other = UdpSocket::bind((ipb, OTHER_PORT)).unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        ready_tx.send(info).unwrap();
        let mut seen: HashMap<SocketAddrV4, Vec<(u32, Vec<u8>)>> = HashMap::new();
        let mut states = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut total = 0;
        while total < 2 * 1000 && Instant::now() < deadline {
            xsk.wait(Duration::from_millis(50)).unwrap();
            let batch = xsk.recv(64);
            assert_eq!(
                batch.datagrams().count(),
                batch.len(),
                "only valid UDP for our port arrives"
            );
            for i in 0..batch.len() {
                let d = batch.udp(i).expect("only valid UDP for our port arrives");
                assert_eq!(d.dst_port(), PORT);
                *states.entry(d.checksum_state()).or_insert(0) += 1;
                let p = d.payload();
                let seq = u32::from_be_bytes(p[4..8].try_into().unwrap());
                seen.entry(d.src()).or_default().push((seq, p.to_vec()));
                total += 1;
            }
        }
        // The other port went to the kernel's socket, not to us.
        let mut buf = [0u8; 64];
        let mut other_count = 0;
        for _ in 0..10 {
            let (n, _) = other
                .recv_from(&mut buf)
                .expect("UDP to the other port reaches the kernel");
            assert_eq!(n, 32);
            other_count += 1;
        }
        done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let stats = xsk.stats();
        (seen, states, other_count, stats, xsk.xsk_stats())
    });
    let info = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("receiver ready");
    eprintln!("xsk: {info:?}");
    assert!(pair.xdp_attached(Side::B).unwrap());
    let (flows, pinged) = pair
        .run_in(Side::A, || {
            let flows =
                common::send_flows(cfg.ip_a, SocketAddrV4::new(cfg.ip_b, PORT), 2, 1000, 64);
            common::send_flows(cfg.ip_a, SocketAddrV4::new(cfg.ip_b, OTHER_PORT), 1, 10, 32);
            let pinged = common::ping(cfg.ip_b, Duration::from_secs(5));
            (flows, pinged)
        })
        .unwrap();
    done_tx.send(()).unwrap();
    let (seen, states, other_count, stats, own) = receiver.join().unwrap().unwrap();
    eprintln!("checksum states {states:?}; stats {stats:?}; own {own:?}");
    assert!(pinged, "ICMP echo must still be answered by B's kernel");
    assert_eq!(other_count, 10);
    assert_eq!(seen.len(), 2);
    for (f, src) in flows.iter().enumerate() {
        let got = &seen[src];
        assert_eq!(got.len(), 1000, "flow {f}: all datagrams");
        for (i, (seq, p)) in got.iter().enumerate() {
            assert_eq!(*seq as usize, i, "flow {f}: in order");
            assert_eq!(
                p,
                &common::payload(f as u32, i as u32, 64),
                "flow {f}: bytes"
            );
        }
    }
    assert_eq!(stats.rx_packets, 2000);
    assert_eq!(stats.rx_malformed, 0);
    // The socket was dropped with the thread: no program may remain.
    assert!(
        !pair.xdp_attached(Side::B).unwrap(),
        "XDP program left attached"
    );
    drop(pair);
    common::assert_netns_gone(&names);
}

/// Echoes what `xsk` has received (addresses swapped, checksums fixed) and flushes;
/// returns how many it echoed and how many of them carried a partial UDP checksum.
fn echo_received(xsk: &mut XskSocket) -> (u32, u32) {
    let (mut echoed, mut partial) = (0, 0);
    let mut batch = xsk.recv(64);
    for i in 0..batch.len() {
        if batch.udp(i).unwrap().checksum_state() == UdpChecksumState::Partial {
            partial += 1;
        }
        batch
            .reply(i, &mut |rx, tx| {
                tx[..rx.len()].copy_from_slice(rx);
                reply_in_place(&mut tx[..rx.len()]).unwrap()
            })
            .unwrap();
        echoed += 1;
    }
    drop(batch);
    xsk.flush().unwrap();
    (echoed, partial)
}

#[test]
fn xsk_transmits_udp_and_echoes_with_fixed_checksums() {
    let Some(pair) = common::veth_or_skip("xtx", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let c2 = cfg.clone();
    let server = pair.spawn_in(Side::B, move || {
        let mut xsk = XskSocket::open(&c2.if_b, 0, XskConfig::udp_ports(&[PORT])).unwrap();
        assert_eq!(tally_bypass::interface_mac(&c2.if_b).unwrap(), c2.mac_b);
        assert!(tally_bypass::interface_mac("no-such-if0").is_err());
        ready_tx.send(()).unwrap();
        // First: 100 datagrams built from scratch to A's port 7000.
        let flow = UdpFlow {
            src_mac: c2.mac_b,
            dst_mac: c2.mac_a,
            src: SocketAddrV4::new(c2.ip_b, PORT),
            dst: SocketAddrV4::new(c2.ip_a, 7000),
        };
        std::thread::sleep(Duration::from_millis(200));
        for i in 0..100u32 {
            xsk.send_udp(&flow, &common::payload(9, i, 100), i as u16)
                .unwrap();
        }
        xsk.flush().unwrap();
        // Then echo 50 datagrams.
        let mut echoed = 0;
        let mut partial = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while echoed < 50 && Instant::now() < deadline {
            xsk.wait(Duration::from_millis(50)).unwrap();
            let (n, p) = echo_received(&mut xsk);
            echoed += n;
            partial += p;
        }
        (echoed, partial, xsk.stats())
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let replies = pair
        .run_in(Side::A, || {
            let sink = UdpSocket::bind((cfg.ip_a, 7000)).unwrap();
            sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 256];
            for i in 0..100u32 {
                let (n, from) = sink.recv_from(&mut buf).expect("datagram from the XSK");
                assert_eq!(
                    from,
                    std::net::SocketAddr::V4(SocketAddrV4::new(cfg.ip_b, PORT))
                );
                assert_eq!(&buf[..n], &common::payload(9, i, 100)[..]);
            }
            let c = UdpSocket::bind((cfg.ip_a, 0)).unwrap();
            c.connect((cfg.ip_b, PORT)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut ok = 0;
            for i in 0..50u32 {
                let p = common::payload(1, i, 48);
                c.send(&p).unwrap();
                let n = c
                    .recv(&mut buf)
                    .expect("echo reply (checksum must be valid)");
                assert_eq!(&buf[..n], &p[..]);
                ok += 1;
            }
            ok
        })
        .unwrap();
    let (echoed, partial, stats) = server.join().unwrap().unwrap();
    eprintln!("echoed {echoed} (partial checksums {partial}), stats {stats:?}");
    assert_eq!((replies, echoed), (50, 50));
    assert_eq!(stats.tx_packets, 150);
}

#[test]
fn starved_fill_ring_counts_drops_and_recovers() {
    let Some(pair) = common::veth_or_skip("xstarve", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<u32>();
    let ifb = cfg.if_b.clone();
    let receiver = pair.spawn_in(Side::B, move || {
        let config = XskConfig {
            rx_frames: 64,
            rx_ring: 64,
            filter: XdpFilter::UdpDstPorts(vec![PORT]),
            xdp_mode: XdpModeChoice::Auto,
            ..XskConfig::default()
        };
        let mut xsk = XskSocket::open(&ifb, 0, config).unwrap();
        ready_tx.send(()).unwrap();
        // Do not receive while the burst arrives.
        let sent = go_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let mut got = 0u64;
        loop {
            let b = xsk.recv(64);
            if b.is_empty() {
                break;
            }
            got += b.len() as u64;
        }
        let k = xsk.kernel_stats().unwrap();
        let lost = xsk.stats().rx_lost();
        // Recovery: frames went back to the fill ring, new traffic arrives.
        let after = go_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let mut got2 = 0u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got2 < u64::from(after) && Instant::now() < deadline {
            xsk.wait(Duration::from_millis(50)).unwrap();
            got2 += xsk.recv(64).len() as u64;
        }
        (sent, got, k, lost, got2)
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let c = cfg.clone();
    let sent = pair
        .run_in(Side::A, move || {
            let s = UdpSocket::bind((c.ip_a, 0)).unwrap();
            (0..3000u32)
                .filter(|i| {
                    s.send_to(&common::payload(0, *i, 64), (c.ip_b, PORT))
                        .is_ok()
                })
                .count()
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    go_tx.send(u32::try_from(sent).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let c = cfg.clone();
    pair.run_in(Side::A, move || {
        let s = UdpSocket::bind((c.ip_a, 0)).unwrap();
        for i in 0..20u32 {
            s.send_to(&common::payload(1, i, 64), (c.ip_b, PORT))
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .unwrap();
    go_tx.send(20).unwrap();
    let (sent, got, k, lost, got2) = receiver.join().unwrap().unwrap();
    let drops = k.rx_dropped + k.rx_ring_full + k.rx_fill_ring_empty_descs;
    eprintln!(
        "sent {sent}, received {got}, rx_dropped {}, rx_ring_full {}, fill_ring_empty {}, after {got2}",
        k.rx_dropped, k.rx_ring_full, k.rx_fill_ring_empty_descs
    );
    assert!(got <= 64, "at most the 64 rx frames can be outstanding");
    assert!(drops > 0, "drops must be counted");
    assert!(sent > 64, "the burst must exceed the rx frames");
    assert_eq!(
        got + k.rx_dropped + k.rx_ring_full,
        u64::from(sent),
        "every datagram received or counted"
    );
    // Each lost datagram counted once (the fill-ring-empty count repeats the drops).
    assert_eq!(got + lost, u64::from(sent), "TransportStats::rx_lost");
    assert!(
        k.rx_fill_ring_empty_descs > 0,
        "the fill ring never ran empty"
    );
    assert_eq!(got2, 20, "recovers after the burst");
}

/// `XskSocket`s at both ends of the veth: A sends, B echoes, A receives every echo with
/// the same payload, in order; once with generic and once with native XDP at both ends
/// (the pairing `bypass_veth` times against UDP sockets).
#[test]
fn xsk_to_xsk_round_trips_in_both_xdp_modes() {
    use tally_bypass::XdpMode;
    use tally_bypass::packet::{UdpChecksumPolicy, build_udp, parse_udp};
    const CLIENT_PORT: u16 = 9200;
    for (tag, choice, mode) in [
        ("xxg", XdpModeChoice::Generic, XdpMode::Generic),
        ("xxn", XdpModeChoice::Native, XdpMode::Native),
    ] {
        let Some(pair) = common::veth_or_skip(tag, VethConfig::default()) else {
            return;
        };
        let cfg = pair.config().clone();
        let config = move |port: u16| XskConfig {
            xdp_mode: choice,
            ..XskConfig::udp_ports(&[port])
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let c2 = cfg.clone();
        let server = pair.spawn_in(Side::B, move || {
            let mut xsk = XskSocket::open(&c2.if_b, 0, config(PORT)).unwrap();
            assert_eq!(xsk.info().xdp_mode, mode);
            ready_tx.send(()).unwrap();
            let mut echoed = 0u32;
            while done_rx.try_recv().is_err() {
                xsk.wait(Duration::from_millis(20)).unwrap();
                echoed += echo_received(&mut xsk).0;
            }
            echoed
        });
        ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let c3 = cfg.clone();
        let got = pair
            .run_in(Side::A, move || {
                let mut xsk = XskSocket::open(&c3.if_a, 0, config(CLIENT_PORT)).unwrap();
                assert_eq!(xsk.info().xdp_mode, mode);
                let flow = UdpFlow {
                    src_mac: c3.mac_a,
                    dst_mac: c3.mac_b,
                    src: SocketAddrV4::new(c3.ip_a, CLIENT_PORT),
                    dst: SocketAddrV4::new(c3.ip_b, PORT),
                };
                let mut frame = [0u8; 256];
                let mut got = 0u32;
                for i in 0..200u32 {
                    let p = common::payload(5, i, 64);
                    let len = build_udp(&mut frame, &flow, &p, i as u16).unwrap();
                    xsk.send_frame(&mut |tx| {
                        tx[..len].copy_from_slice(&frame[..len]);
                        len
                    })
                    .unwrap();
                    xsk.flush().unwrap();
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        xsk.wait(Duration::from_millis(20)).unwrap();
                        let batch = xsk.recv(64);
                        if batch.len() > 0 {
                            assert_eq!(batch.len(), 1, "one echo per datagram");
                            let v = parse_udp(batch.frame(0).unwrap(), UdpChecksumPolicy::Verify)
                                .expect("the echo parses with valid checksums");
                            assert_eq!(v.payload(), &p[..], "echo {i} differs");
                            assert_eq!(v.src(), flow.dst);
                            assert_eq!(v.dst(), flow.src);
                            got += 1;
                            break;
                        }
                        drop(batch);
                        assert!(Instant::now() < deadline, "{tag}: no echo for datagram {i}");
                    }
                }
                got
            })
            .unwrap();
        done_tx.send(()).unwrap();
        let echoed = server.join().unwrap().unwrap();
        assert_eq!((got, echoed), (200, 200), "{tag}");
    }
}

/// A send closure that panics gives its UMEM transmit frame back: eight panics on an
/// 8-frame socket used to leave every later send `RingFull`.
#[test]
fn a_panicking_send_closure_does_not_leak_its_frame() {
    let Some(pair) = common::veth_or_skip("xleak", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    pair.run_in(Side::B, move || {
        let config = XskConfig {
            rx_frames: 8,
            tx_frames: 8,
            rx_ring: 8,
            tx_ring: 8,
            ..XskConfig::udp_ports(&[PORT])
        };
        let mut xsk = XskSocket::open(&cfg.if_b, 0, config).unwrap();
        let before = xsk.tx_frames_free();
        assert_eq!(before, 8);
        for _ in 0..16 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = xsk.send_frame(&mut |_| panic!("a bug in the caller's closure"));
            }));
            assert!(r.is_err());
        }
        assert_eq!(xsk.tx_frames_free(), before, "transmit frames leaked");
        xsk.send_frame(&mut |buf| {
            buf[..60].fill(0xab);
            60
        })
        .unwrap();
        xsk.flush().unwrap();
    })
    .unwrap();
}

/// `interface_driver` names a veth's driver from inside its namespace, and refuses an
/// interface that does not exist.
#[test]
fn interface_driver_names_the_veth_driver() {
    let Some(pair) = common::veth_or_skip("xdrv", VethConfig::default()) else {
        return;
    };
    let ifb = pair.config().if_b.clone();
    let (driver, missing) = pair
        .run_in(Side::B, move || {
            (
                tally_bypass::interface_driver(&ifb),
                tally_bypass::interface_driver("tally-nonesuch"),
            )
        })
        .unwrap();
    assert_eq!(driver.unwrap(), "veth");
    assert!(
        matches!(missing, Err(tally_bypass::BypassError::Interface { .. })),
        "{missing:?}"
    );
}
