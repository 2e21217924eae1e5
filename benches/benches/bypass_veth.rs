//! Receive throughput and ping-pong latency on a veth pair between two namespaces this
//! bench creates (needs root; prints why it skips otherwise).
//!
//! Throughput: for each generator (the kernel-side live-frames generator, and a plain UDP
//! socket sender) and each receiver (AF_XDP via `XskSocket`, AF_PACKET TPACKET_V3 via
//! `PacketSocket`, and a UDP socket with `recvmmsg` batch 32), interleaved over several
//! rounds (listed order in even rounds, reversed in odd ones; medians over rounds, the
//! mean of the middle two for an even count): received packets/s (first to last packet), delivered fraction, and receiver
//! thread CPU time per packet. 64-byte UDP payloads (106-byte frames).
//!
//! Latency: UDP ping-pong round trips from a busy-polling UDP client, against an AF_XDP
//! echo server (`XskSocket`, busy polling) and a busy-polling UDP echo server.
//!
//! Criterion does not fit (multi-thread, multi-namespace, packet counts rather than
//! iterations), so this is a `harness = false` bench with its own main:
//! `cargo bench -p tally-benches --bench bypass_veth` (env: `TALLY_BYPASS_ROUNDS`,
//! `TALLY_BYPASS_LIVE_FRAMES`, `TALLY_BYPASS_UDP_PACKETS` (0 skips the UDP-sender rows),
//! `TALLY_BYPASS_RTTS` (0 skips the ping-pong)).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines,
    reason = "bench code"
)]

use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_bypass::netns::{Side, VethConfig, VethPair};
use tally_bypass::packet::{UdpFlow, build_udp, reply_in_place};
use tally_bypass::{
    LiveFrameGenerator, PacketConfig, PacketSocket, PacketTransport, RxBatch, XdpModeChoice,
    XskConfig, XskSocket,
};

const PORT: u16 = 9000;
const ECHO_PORT: u16 = 9100;
const PAYLOAD: usize = 64;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gen {
    Live,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rx {
    AfXdp,
    AfPacket,
    Recvmmsg,
}

impl Rx {
    fn name(self) -> &'static str {
        match self {
            Self::AfXdp => "AF_XDP (XskSocket, native XDP, copy)",
            Self::AfPacket => "AF_PACKET TPACKET_V3 (PacketSocket)",
            Self::Recvmmsg => "UDP socket, recvmmsg batch 32",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    sent: u64,
    offered_pps: f64,
    received: u64,
    rx_pps: f64,
    cpu_ns_per_pkt: f64,
}

/// Receiver loop state shared by the three receivers.
struct Tally {
    count: u64,
    first: Option<Instant>,
    last: Instant,
}

impl Tally {
    fn new() -> Self {
        Self {
            count: 0,
            first: None,
            last: Instant::now(),
        }
    }
    fn add(&mut self, n: usize) {
        if n > 0 {
            let now = Instant::now();
            self.first.get_or_insert(now);
            self.last = now;
            self.count += n as u64;
        }
    }
    fn idle(&self, stop: &AtomicBool) -> bool {
        stop.load(Ordering::Acquire) && self.last.elapsed() > Duration::from_millis(300)
    }
}

fn receive(
    rx: Rx,
    ifname: &str,
    ip_b: std::net::Ipv4Addr,
    ready: &mpsc::Sender<()>,
    stop: &AtomicBool,
) -> (u64, f64, u64) {
    let mut tally = Tally::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let cpu0;
    match rx {
        Rx::AfXdp => {
            let cfg = XskConfig {
                rx_frames: 8192,
                rx_ring: 8192,
                xdp_mode: XdpModeChoice::Native,
                ..XskConfig::udp_ports(&[PORT])
            };
            let mut s = XskSocket::open(ifname, 0, cfg).unwrap();
            ready.send(()).unwrap();
            cpu0 = thread_cpu_ns();
            while !tally.idle(stop) && Instant::now() < deadline {
                s.wait(Duration::from_millis(50)).unwrap();
                loop {
                    let n = s.recv(64).len();
                    tally.add(n);
                    if n == 0 {
                        break;
                    }
                }
            }
        }
        Rx::AfPacket => {
            let cfg = PacketConfig {
                udp_ports: vec![PORT],
                ..PacketConfig::default()
            };
            let mut s = PacketSocket::open(ifname, &cfg).unwrap();
            ready.send(()).unwrap();
            cpu0 = thread_cpu_ns();
            while !tally.idle(stop) && Instant::now() < deadline {
                s.wait(Duration::from_millis(50)).unwrap();
                loop {
                    let n = s.recv(256).len();
                    tally.add(n);
                    if n == 0 {
                        break;
                    }
                }
            }
        }
        Rx::Recvmmsg => {
            let sock = UdpSocket::bind((ip_b, PORT)).unwrap();
            let size: libc::c_int = 32 << 20;
            // SAFETY: valid option pointer and length.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&raw const size).cast(),
                    size_of::<libc::c_int>() as u32,
                );
            }
            let mut bufs = vec![[0u8; 2048]; 32];
            let mut iovs: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: mmsghdr is plain data; zero is valid.
            let mut msgs: Vec<libc::mmsghdr> =
                (0..32).map(|_| unsafe { core::mem::zeroed() }).collect();
            for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
            }
            ready.send(()).unwrap();
            cpu0 = thread_cpu_ns();
            while !tally.idle(stop) && Instant::now() < deadline {
                let mut p = libc::pollfd {
                    fd: sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd.
                unsafe { libc::poll(&raw mut p, 1, 50) };
                loop {
                    // SAFETY: msgs/iovs/bufs stay alive and sized as declared.
                    let n = unsafe {
                        libc::recvmmsg(
                            sock.as_raw_fd(),
                            msgs.as_mut_ptr(),
                            32,
                            libc::MSG_DONTWAIT,
                            core::ptr::null_mut(),
                        )
                    };
                    if n <= 0 {
                        break;
                    }
                    tally.add(n as usize);
                }
            }
        }
    }
    let cpu = thread_cpu_ns() - cpu0;
    let span = tally.first.map_or(0.0, |f| (tally.last - f).as_secs_f64());
    let pps = if span > 0.0 {
        tally.count as f64 / span
    } else {
        0.0
    };
    (tally.count, pps, cpu)
}

fn measure(
    pair: &VethPair,
    frame: &[u8],
    gen_kind: Gen,
    rx: Rx,
    live_frames: u32,
    udp_packets: u32,
) -> Sample {
    let cfg = pair.config().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (ifb, ipb, stop2) = (cfg.if_b.clone(), cfg.ip_b, stop.clone());
    let h = pair.spawn_in(Side::B, move || receive(rx, &ifb, ipb, &ready_tx, &stop2));
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let frame = frame.to_vec();
    let (sent, secs) = pair
        .run_in(Side::A, move || match gen_kind {
            Gen::Live => {
                let g = LiveFrameGenerator::new(&cfg.if_a).unwrap();
                let t = Instant::now();
                g.send(&frame, live_frames).unwrap();
                (u64::from(live_frames), t.elapsed().as_secs_f64())
            }
            Gen::Udp => {
                let s = UdpSocket::bind((cfg.ip_a, 0)).unwrap();
                let payload = [0x42u8; PAYLOAD];
                let t = Instant::now();
                let mut sent = 0u64;
                for _ in 0..udp_packets {
                    if s.send_to(&payload, (cfg.ip_b, PORT)).is_ok() {
                        sent += 1;
                    }
                }
                (sent, t.elapsed().as_secs_f64())
            }
        })
        .unwrap();
    stop.store(true, Ordering::Release);
    let (received, rx_pps, cpu) = h.join().unwrap().unwrap();
    Sample {
        sent,
        offered_pps: sent as f64 / secs,
        received,
        rx_pps,
        cpu_ns_per_pkt: if received > 0 {
            cpu as f64 / received as f64
        } else {
            f64::NAN
        },
    }
}

/// Indices `0..n` in order in even rounds and reversed in odd ones.
fn in_turn(n: usize, round: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

/// Median of the rounds (the mean of the middle two for an even count, NaN when empty):
/// the upper middle value alone made a run of two rounds report the better one.
fn median(mut v: Vec<f64>) -> f64 {
    tally_benches::stats::median(&mut v)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    AfXdpEcho,
    UdpSpin,
}

fn ping_pong(pair: &VethPair, server: Server, rtts: u32) -> (f64, f64, f64) {
    let cfg = pair.config().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (c2, stop2) = (cfg.clone(), stop.clone());
    let h = pair.spawn_in(Side::B, move || match server {
        Server::AfXdpEcho => {
            let mut s = XskSocket::open(&c2.if_b, 0, XskConfig::udp_ports(&[ECHO_PORT])).unwrap();
            ready_tx.send(()).unwrap();
            while !stop2.load(Ordering::Relaxed) {
                let mut b = s.recv(16);
                for i in 0..b.len() {
                    let _ = b.reply(i, &mut |rx, tx| {
                        let Some(d) = tx.get_mut(..rx.len()) else {
                            return 0;
                        };
                        d.copy_from_slice(rx);
                        reply_in_place(d).unwrap_or(0)
                    });
                }
                let n = b.len();
                drop(b);
                if n > 0 {
                    s.flush().unwrap();
                }
            }
        }
        Server::UdpSpin => {
            let s = UdpSocket::bind((c2.ip_b, ECHO_PORT)).unwrap();
            s.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let mut rtt = pair
        .run_in(Side::A, move || {
            let c = UdpSocket::bind((cfg.ip_a, 0)).unwrap();
            c.connect((cfg.ip_b, ECHO_PORT)).unwrap();
            c.set_nonblocking(true).unwrap();
            let payload = [0x17u8; PAYLOAD];
            let mut buf = [0u8; 2048];
            let mut out = Vec::with_capacity(rtts as usize);
            for i in 0..(rtts + 1000) {
                let t = Instant::now();
                c.send(&payload).unwrap();
                let deadline = t + Duration::from_secs(1);
                let ok = loop {
                    if c.recv(&mut buf).is_ok() {
                        break true;
                    }
                    if Instant::now() > deadline {
                        break false;
                    }
                };
                if ok && i >= 1000 {
                    out.push(t.elapsed().as_nanos() as f64 / 1000.0);
                }
            }
            out
        })
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap().unwrap();
    rtt.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if rtt.is_empty() {
            f64::NAN
        } else {
            rtt[((rtt.len() - 1) as f64 * p) as usize]
        }
    };
    (q(0.5), q(0.99), rtt.len() as f64)
}

fn main() {
    // `cargo bench` passes `--bench`, and a filter when one was given.
    if !tally_benches::harness::selected("bypass_veth", std::env::args().skip(1)) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP bypass_veth: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let rounds = env_u32("TALLY_BYPASS_ROUNDS", 3);
    let live_frames = env_u32("TALLY_BYPASS_LIVE_FRAMES", 2_000_000);
    let udp_packets = env_u32("TALLY_BYPASS_UDP_PACKETS", 300_000);
    let rtts = env_u32("TALLY_BYPASS_RTTS", 20_000);
    let pair = match VethPair::new(
        "bench",
        VethConfig {
            static_neighbours: true,
            ..VethConfig::default()
        },
    ) {
        Ok(p) => p,
        Err(e) => {
            println!("SKIP bypass_veth: {e}");
            return;
        }
    };
    // GRO on the receiving veth: frames XDP_TX'ed by the generator need veth NAPI.
    pair.set_gro(Side::B, true).unwrap();
    let cfg = pair.config().clone();
    let flow = UdpFlow {
        src_mac: cfg.mac_a,
        dst_mac: cfg.mac_b,
        src: SocketAddrV4::new(cfg.ip_a, 40000),
        dst: SocketAddrV4::new(cfg.ip_b, PORT),
    };
    let mut frame = vec![0u8; 256];
    let n = build_udp(&mut frame, &flow, &[0x42; PAYLOAD], 1).unwrap();
    frame.truncate(n);

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# bypass_veth: {rounds} rounds, live {live_frames} frames, udp {udp_packets} packets; loadavg {}",
        load.trim()
    );
    let gens: &[Gen] = if udp_packets == 0 {
        &[Gen::Live]
    } else {
        &[Gen::Live, Gen::Udp]
    };
    let combos: Vec<(Gen, Rx)> = gens
        .iter()
        .copied()
        .flat_map(|g| {
            [Rx::AfXdp, Rx::AfPacket, Rx::Recvmmsg]
                .into_iter()
                .map(move |r| (g, r))
        })
        .collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); combos.len()];
    for round in 0..rounds {
        // Receivers take turns going first: listed order in even rounds, reversed in odd
        // ones, so that none always runs after the same neighbour.
        for k in in_turn(combos.len(), round as usize) {
            let (g, r) = &combos[k];
            let s = measure(&pair, &frame, *g, *r, live_frames, udp_packets);
            println!(
                "round {round} {g:?} -> {}: sent {} offered {:.0} pps, received {} ({:.1} %), rx {:.0} pps, {:.0} ns CPU/pkt",
                r.name(),
                s.sent,
                s.offered_pps,
                s.received,
                100.0 * s.received as f64 / s.sent as f64,
                s.rx_pps,
                s.cpu_ns_per_pkt
            );
            samples[k].push(s);
        }
    }
    println!();
    println!(
        "| generator | receiver | offered pps | rx pps (median) | rx pps min..max | delivered % | CPU ns/pkt (median) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut med_pps = Vec::new();
    for (k, (g, r)) in combos.iter().enumerate() {
        let s = &samples[k];
        let pps: Vec<f64> = s.iter().map(|x| x.rx_pps).collect();
        let (lo, hi) = pps
            .iter()
            .fold((f64::MAX, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
        let m = median(pps.clone());
        med_pps.push(m);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0}..{:.0} | {:.1} | {:.0} |",
            match g {
                Gen::Live => "live frames (BPF_PROG_TEST_RUN)",
                Gen::Udp => "UDP socket send_to",
            },
            r.name(),
            median(s.iter().map(|x| x.offered_pps).collect()),
            m,
            lo,
            hi,
            median(
                s.iter()
                    .map(|x| 100.0 * x.received as f64 / x.sent as f64)
                    .collect()
            ),
            median(s.iter().map(|x| x.cpu_ns_per_pkt).collect()),
        );
    }
    println!();
    println!(
        "ratio AF_XDP / recvmmsg (live generator, medians): {:.2}x",
        med_pps[0] / med_pps[2]
    );
    println!(
        "ratio AF_PACKET / recvmmsg (live generator, medians): {:.2}x",
        med_pps[1] / med_pps[2]
    );
    if med_pps.len() == 6 {
        println!(
            "ratio AF_XDP / recvmmsg (UDP sender, medians): {:.2}x",
            med_pps[3] / med_pps[5]
        );
    }
    if rtts == 0 {
        return;
    }

    println!();
    println!("| echo server (client: busy-polling UDP) | run | p50 us | p99 us | round trips |");
    println!("|---|---|---|---|---|");
    let mut p50 = [Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new()];
    for run in 0..rounds {
        for k in in_turn(2, run as usize) {
            let srv = [Server::AfXdpEcho, Server::UdpSpin][k];
            let (a, b, n) = ping_pong(&pair, srv, rtts);
            println!("| {srv:?} | {run} | {a:.1} | {b:.1} | {n:.0} |");
            p50[k].push(a);
            p99[k].push(b);
        }
    }
    let (x50, u50) = (median(p50[0].clone()), median(p50[1].clone()));
    let (x99, u99) = (median(p99[0].clone()), median(p99[1].clone()));
    println!();
    println!(
        "ping-pong medians: AF_XDP echo p50 {x50:.1} us p99 {x99:.1} us; UDP busy-poll echo p50 {u50:.1} us p99 {u99:.1} us; ratio p50 {:.2}, p99 {:.2}",
        x50 / u50,
        x99 / u99
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("# loadavg at end {}", load.trim());
}
