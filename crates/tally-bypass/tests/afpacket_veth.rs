//! AF_PACKET TPACKET_V3 on a veth pair in namespaces this test creates: filtered receive
//! with bytes, counts and order; transmit through the tx ring; the automatic fallback
//! from AF_XDP with the reason visible.
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

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::packet::UdpFlow;
use tally_bypass::{
    BypassError, FanoutMode, PacketConfig, PacketFanout, PacketSocket, PacketTransport, RxBatch,
    Transport, TransportKind, TransportOptions,
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

/// `Auto` falls back to AF_PACKET when AF_XDP is unavailable, not when the AF_XDP options
/// are wrong. An empty port list used to open AF_PACKET, where an empty list means every
/// frame on the interface; a bad ring size or a filter conflicting with another socket of
/// the process silently gave AF_PACKET too.
#[test]
fn transport_does_not_fall_back_on_bad_options() {
    let config = VethConfig {
        queues: 2,
        ..VethConfig::default()
    };
    let Some(pair) = common::veth_or_skip("pfbo", config) else {
        return;
    };
    let ifb = pair.config().if_b.clone();
    pair.run_in(Side::B, move || {
        let kind = |r: &Result<Transport, BypassError>| match r {
            Ok(t) => format!("opened {}", t.kind().as_str()),
            Err(e) => format!("{e}"),
        };
        let r = Transport::open(&ifb, 0, &TransportOptions::udp_ports(&[]));
        assert!(
            matches!(r, Err(BypassError::InvalidOption { .. })),
            "no ports: {}",
            kind(&r)
        );
        let mut bad_ring = TransportOptions::udp_ports(&[PORT]);
        bad_ring.xsk.rx_ring = 100;
        let r = Transport::open(&ifb, 0, &bad_ring);
        assert!(
            matches!(r, Err(BypassError::InvalidOption { .. })),
            "rx_ring 100: {}",
            kind(&r)
        );
        let first = Transport::open(&ifb, 0, &TransportOptions::udp_ports(&[PORT])).unwrap();
        assert_eq!(first.kind(), TransportKind::AfXdp);
        let r = Transport::open(&ifb, 1, &TransportOptions::udp_ports(&[PORT + 1]));
        assert!(
            matches!(r, Err(BypassError::SteeringConflict { .. })),
            "conflicting filter: {}",
            kind(&r)
        );
        // Unavailable AF_XDP (queue 7 does not exist) still falls back.
        let t = Transport::open(&ifb, 7, &TransportOptions::udp_ports(&[PORT + 2])).unwrap();
        assert_eq!(t.kind(), TransportKind::AfPacket);
    })
    .unwrap();
}

/// A port listed twice (as port lists merged from several places are) is reserved and
/// filtered once: the second reservation used to collide with the first, and the socket
/// failed to open with EADDRINUSE, "another socket already holds this UDP port".
#[test]
fn repeated_ports_open_and_receive() {
    const PORT_R: u16 = 9160;
    let Some(pair) = common::veth_or_skip("pdup", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let ifb = cfg.if_b.clone();
    let receiver = pair.spawn_in(Side::B, move || {
        let config = PacketConfig {
            udp_ports: vec![PORT_R, PORT_R + 1, PORT_R],
            block_size: 1 << 16,
            block_count: 4,
            retire_timeout_ms: 2,
            ..PacketConfig::default()
        };
        let mut sock = PacketSocket::open(&ifb, &config).expect("open with a repeated port");
        ready_tx.send(()).unwrap();
        let mut ports = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ports.len() < 20 && Instant::now() < deadline {
            sock.wait(Duration::from_millis(20)).unwrap();
            let batch = sock.recv(64);
            ports.extend(batch.datagrams().map(|d| d.dst_port()));
        }
        ports
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    pair.run_in(Side::A, || {
        for port in [PORT_R, PORT_R + 1] {
            common::send_flows(cfg.ip_a, SocketAddrV4::new(cfg.ip_b, port), 1, 10, 32);
        }
    })
    .unwrap();
    let mut ports = receiver.join().unwrap().unwrap();
    ports.sort_unstable();
    let want: Vec<u16> = [[PORT_R; 10], [PORT_R + 1; 10]].concat();
    assert_eq!(ports, want);
}

/// `ip -n NS link set IF up|down`.
fn set_link(ns: &str, ifname: &str, state: &str) {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "link", "set", ifname, state])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip link set {state}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tx ring filled while every kick fails (the peer is down: the kernel answers
/// ENOBUFS and leaves the frames marked) must start sending again once the peer is back:
/// the stuck frames go out and new sends are accepted. It used to stay `RingFull` forever,
/// because the failed flush had forgotten the queued frames.
#[test]
fn tx_ring_recovers_after_failed_kicks() {
    const PORT_W: u16 = 9150;
    const MORE: u32 = 300;
    let Some(pair) = common::veth_or_skip("ptxw", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let ns_b = pair.netns(Side::B).name().to_owned();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (ip_b, deadline_b) = (cfg.ip_b, Instant::now() + Duration::from_mins(1));
    // How many frames the sender handed to the kernel, once it is done (0 before): the
    // receiver waits for exactly that many, so a slow (loaded) sender cannot make it stop
    // early.
    let sent_total = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sent_seen = std::sync::Arc::clone(&sent_total);
    let receiver = pair.spawn_in(Side::B, move || {
        let s = UdpSocket::bind((ip_b, PORT_W)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // The stuck frames and the rest arrive in one burst; the default receive buffer
        // (about 200 KiB of skb truesize) drops part of it, which would look like lost
        // frames. Root may force a larger one.
        let bytes: libc::c_int = 8 << 20;
        // SAFETY: `s` owns an open socket descriptor, and the option value is a `c_int`
        // that outlives the call, with its size passed alongside.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const bytes).cast(),
                libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap(),
            )
        };
        assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        ready_tx.send(()).unwrap();
        let mut seqs = Vec::new();
        let mut buf = [0u8; 256];
        // Quiet periods after the sender finished (a lost datagram would otherwise keep
        // the receiver waiting until the deadline).
        let mut idle_after_done = 0;
        while Instant::now() < deadline_b && idle_after_done < 25 {
            let total = sent_seen.load(std::sync::atomic::Ordering::Acquire);
            if total != 0 && seqs.len() >= total as usize {
                break;
            }
            match s.recv_from(&mut buf) {
                Ok((n, _)) if n >= 8 => {
                    seqs.push(u32::from_be_bytes(buf[4..8].try_into().unwrap()));
                }
                Ok(_) => {}
                Err(_) => idle_after_done += u32::from(total != 0),
            }
        }
        seqs
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let c2 = cfg.clone();
    let (stuck, stats) = pair
        .run_in(Side::A, move || {
            let config = PacketConfig {
                tx_frames: 8,
                reserve_ports: false,
                ..PacketConfig::default()
            };
            let mut sock = PacketSocket::open(&c2.if_a, &config).expect("open AF_PACKET");
            let flow = UdpFlow {
                src_mac: c2.mac_a,
                dst_mac: c2.mac_b,
                src: SocketAddrV4::new(c2.ip_a, 40000),
                dst: SocketAddrV4::new(c2.ip_b, PORT_W),
            };
            let mut seq = 0u32;
            let send = |sock: &mut PacketSocket, seq: &mut u32| {
                let r = sock.send_udp(&flow, &common::payload(9, *seq, 64), *seq as u16);
                if r.is_ok() {
                    *seq += 1;
                }
                r
            };
            // Peer down: fill the ring. Each kick fails, nothing leaves.
            set_link(&ns_b, &c2.if_b, "down");
            loop {
                match send(&mut sock, &mut seq) {
                    Ok(()) => assert!(seq <= 4096, "the ring never filled"),
                    Err(tally_bypass::TxError::RingFull) => break,
                    Err(e) => panic!("send with the peer down: {e}"),
                }
            }
            let stuck = seq;
            for _ in 0..3 {
                sock.flush().unwrap();
                assert!(matches!(
                    send(&mut sock, &mut seq),
                    Err(tally_bypass::TxError::RingFull)
                ));
            }
            assert_eq!(sock.tx_pending(), stuck, "frames still marked for sending");
            let down = sock.packet_stats();
            assert!(down.tx_kick_again > 0, "ENOBUFS kicks counted: {down:?}");
            // Peer up: sending must resume, the stuck frames first.
            set_link(&ns_b, &c2.if_b, "up");
            let deadline = Instant::now() + Duration::from_secs(10);
            while seq < stuck + MORE {
                match send(&mut sock, &mut seq) {
                    Ok(()) => {}
                    Err(tally_bypass::TxError::RingFull) => {
                        assert!(
                            Instant::now() < deadline,
                            "tx ring still full 10 s after the peer came back: {:?}",
                            sock.packet_stats()
                        );
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("send after the peer came back: {e}"),
                }
            }
            while sock.tx_pending() > 0 {
                assert!(Instant::now() < deadline, "frames left pending");
                sock.flush().unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            (stuck, sock.packet_stats())
        })
        .unwrap();
    sent_total.store(stuck + MORE, std::sync::atomic::Ordering::Release);
    let seqs = receiver.join().unwrap().unwrap();
    eprintln!("stuck {stuck}, received {}, stats {stats:?}", seqs.len());
    assert!(
        stuck >= 8,
        "the ring held at least tx_frames frames: {stuck}"
    );
    assert_eq!(stats.tx_packets, u64::from(stuck + MORE));
    // Every frame, the stuck ones included, arrived once and in order.
    let want: Vec<u32> = (0..stuck + MORE).collect();
    assert_eq!(seqs, want);
}

/// A frame longer than the MTU plus the Ethernet header is refused before it reaches the
/// ring (the kernel would reject it and stop there). When the MTU is lowered after the
/// socket opened, the kernel does reject a queued frame: it is counted, the MTU is read
/// again, and the next send takes the rejected slot, so the ring keeps working.
#[test]
fn over_mtu_frames_are_refused_and_a_rejected_frame_does_not_wedge_the_ring() {
    let Some(pair) = common::veth_or_skip("pmtu", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let ns_a = pair.netns(Side::A).name().to_owned();
    let stats = pair
        .run_in(Side::A, move || {
            let config = PacketConfig {
                tx_frames: 8,
                reserve_ports: false,
                ..PacketConfig::default()
            };
            let mut sock = PacketSocket::open(&cfg.if_a, &config).expect("open AF_PACKET");
            assert_eq!(sock.tx_max_frame_len(), 1500 + 14, "veth MTU 1500");
            let (mac_a, mac_b) = (cfg.mac_a, cfg.mac_b);
            let frame = move |len: usize| {
                move |buf: &mut [u8]| {
                    buf[..len].fill(0);
                    buf[..6].copy_from_slice(&mac_b.0);
                    buf[6..12].copy_from_slice(&mac_a.0);
                    buf[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental
                    len
                }
            };
            match sock.send_frame(&mut frame(1515)) {
                Err(
                    e @ tally_bypass::TxError::FrameTooLong {
                        len: 1515,
                        capacity: 1514,
                    },
                ) => {
                    assert!(e.to_string().contains("MTU"), "{e}");
                }
                other => panic!("over-MTU frame: {other:?}"),
            }
            assert_eq!(sock.tx_pending(), 0, "nothing queued");
            sock.send_frame(&mut frame(1514)).unwrap();
            sock.flush().unwrap();
            assert_eq!(sock.packet_stats().tx_wrong_format, 0);

            // Lower the MTU under a queued full-size frame: the kernel rejects it.
            sock.send_frame(&mut frame(1514)).unwrap();
            sock.send_frame(&mut frame(100)).unwrap();
            let out = std::process::Command::new("ip")
                .args(["-n", &ns_a, "link", "set", &cfg.if_a, "mtu", "1400"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // The kick reports the rejection (EMSGSIZE) after counting it.
            match sock.flush() {
                Err(tally_bypass::TxError::Kick(e)) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
                }
                other => panic!("flush of a rejected frame: {other:?}"),
            }
            let s = sock.packet_stats();
            assert_eq!(s.tx_wrong_format, 1, "{s:?}");
            assert_eq!(sock.tx_max_frame_len(), 1414, "MTU read again");
            assert_eq!(
                sock.tx_pending(),
                1,
                "the frame behind the rejected one waits"
            );
            assert!(matches!(
                sock.send_frame(&mut frame(1414 + 1)),
                Err(tally_bypass::TxError::FrameTooLong { .. })
            ));
            // Many more sends than the ring holds: all go out.
            for _ in 0..40 {
                sock.send_frame(&mut frame(200)).unwrap();
                sock.flush().unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while sock.tx_pending() > 0 {
                assert!(Instant::now() < deadline, "frames left pending");
                sock.flush().unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            sock.packet_stats()
        })
        .unwrap();
    assert_eq!(stats.tx_wrong_format, 1, "{stats:?}");
}

/// Two sockets in one `PACKET_FANOUT` group share the interface's frames: every datagram
/// arrives at exactly one of them. By hash, all datagrams of a flow go to the same socket
/// and stay in order; in turn (round robin), both sockets get a share. Their port
/// reservations share the port (`SO_REUSEPORT`).
#[test]
fn fanout_sockets_share_the_frames() {
    let Some(pair) = common::veth_or_skip("pfan", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    for (k, mode) in [FanoutMode::Hash, FanoutMode::RoundRobin]
        .into_iter()
        .enumerate()
    {
        let port = PORT + 20 + k as u16;
        let (ready_tx, ready_rx) = mpsc::channel();
        let ifb = cfg.if_b.clone();
        let receiver = pair.spawn_in(Side::B, move || {
            let config = PacketConfig {
                udp_ports: vec![port],
                block_size: 1 << 16,
                block_count: 8,
                retire_timeout_ms: 1,
                fanout: Some(PacketFanout {
                    group: 0x7a11 + k as u16,
                    mode,
                }),
                ..PacketConfig::default()
            };
            let mut socks = [
                PacketSocket::open(&ifb, &config).expect("first member"),
                PacketSocket::open(&ifb, &config).expect("second member"),
            ];
            ready_tx.send(()).unwrap();
            // Per socket: (flow source, seq) in arrival order.
            let mut got: [Vec<(SocketAddrV4, u32)>; 2] = [Vec::new(), Vec::new()];
            let deadline = Instant::now() + Duration::from_secs(20);
            while got[0].len() + got[1].len() < 8 * 100 && Instant::now() < deadline {
                for (s, g) in socks.iter_mut().zip(got.iter_mut()) {
                    s.wait(Duration::from_millis(5)).unwrap();
                    let batch = s.recv(64);
                    for i in 0..batch.len() {
                        let d = batch.udp(i).expect("only UDP to our port passes");
                        let p = d.payload();
                        g.push((d.src(), u32::from_be_bytes(p[4..8].try_into().unwrap())));
                    }
                }
            }
            got
        });
        ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let (ip_a, ip_b) = (cfg.ip_a, cfg.ip_b);
        let flows = pair
            .run_in(Side::A, move || {
                common::send_flows(ip_a, SocketAddrV4::new(ip_b, port), 8, 100, 64)
            })
            .unwrap();
        let got = receiver.join().unwrap().unwrap();
        let counts = [got[0].len(), got[1].len()];
        eprintln!("{mode:?}: {counts:?} datagrams per socket");
        let mut all: Vec<(SocketAddrV4, u32)> = got.iter().flatten().copied().collect();
        all.sort_unstable();
        let mut want: Vec<(SocketAddrV4, u32)> = flows
            .iter()
            .flat_map(|f| (0..100).map(move |seq| (*f, seq)))
            .collect();
        want.sort_unstable();
        assert_eq!(all, want, "{mode:?}: each datagram exactly once");
        match mode {
            FanoutMode::Hash => {
                for f in &flows {
                    let on: Vec<usize> = (0..2)
                        .filter(|&s| got[s].iter().any(|(src, _)| src == f))
                        .collect();
                    assert_eq!(on.len(), 1, "flow {f} on sockets {on:?}");
                    let seqs: Vec<u32> = got[on[0]]
                        .iter()
                        .filter(|(src, _)| src == f)
                        .map(|(_, seq)| *seq)
                        .collect();
                    assert_eq!(seqs, (0..100).collect::<Vec<u32>>(), "flow {f}: order");
                }
            }
            _ => assert!(counts.iter().all(|&n| n > 0), "{counts:?}"),
        }
    }
}
