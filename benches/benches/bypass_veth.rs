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
//! Latency: ping-pong round trips of one 64-byte UDP payload between a client in A and an
//! echo server in B, every end busy polling: UDP sockets at both ends (the baseline),
//! `XskSocket`s at both ends (generic and native XDP), and the mixed pairs. Ratios are to
//! UDP at both ends, from medians over the rounds.
//!
//! Criterion does not fit (multi-thread, multi-namespace, packet counts rather than
//! iterations), so this is a `harness = false` bench with its own main:
//! `cargo bench -p tally-benches --bench bypass_veth` (env: `TALLY_BYPASS_ROUNDS`,
//! `TALLY_BYPASS_LIVE_FRAMES` (0 skips the throughput rounds), `TALLY_BYPASS_UDP_PACKETS`
//! (0 skips the UDP-sender rows),
//! `TALLY_BYPASS_RTTS` (0 skips the ping-pong)).
//!
//! With `TALLY_BENCH_RESULTS_DIR` set (as `cargo xtask bench` sets it), the headline
//! figures also go to `bypass_veth.json` there, for `cargo xtask bench-compare`:
//! `bypass_veth/<generator>_<receiver>/rx_pps` and `/cpu_ns_per_pkt` per throughput row,
//! `bypass_veth/rtt_<client>_<server>/p50` and `/p99` per ping-pong setup (medians over
//! the rounds, with their range); see `docs/bench-format.md`.
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

use tally_benches::harness::{Better, Record};
use tally_bypass::netns::{Side, VethConfig, VethPair};
use tally_bypass::packet::{UdpChecksumPolicy, UdpFlow, build_udp, parse_udp, reply_in_place};
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

impl Gen {
    /// The generator's part of a figure's id.
    fn slug(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Udp => "udp",
        }
    }
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

    /// The receiver's part of a figure's id.
    fn slug(self) -> &'static str {
        match self {
            Self::AfXdp => "af_xdp",
            Self::AfPacket => "af_packet",
            Self::Recvmmsg => "recvmmsg",
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

/// One end of the ping-pong: a busy-polling UDP socket, or an `XskSocket` (busy polling
/// its rx ring) whose steering program runs in the given XDP mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Udp,
    AfXdp(XdpModeChoice),
}

impl End {
    fn name(self) -> &'static str {
        match self {
            Self::Udp => "UDP socket",
            Self::AfXdp(XdpModeChoice::Generic) => "AF_XDP, generic XDP",
            Self::AfXdp(XdpModeChoice::Native) => "AF_XDP, native XDP",
            Self::AfXdp(XdpModeChoice::Auto) => "AF_XDP, auto XDP",
        }
    }

    /// This end's part of a figure's id.
    fn slug(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::AfXdp(XdpModeChoice::Generic) => "xdp_generic",
            Self::AfXdp(XdpModeChoice::Native) => "xdp_native",
            Self::AfXdp(XdpModeChoice::Auto) => "xdp_auto",
        }
    }
}

/// The client's UDP port; on the A side, the XDP program steers it to the client's
/// `XskSocket`.
const CLIENT_PORT: u16 = 9200;

fn xsk_config(port: u16, mode: XdpModeChoice) -> XskConfig {
    XskConfig {
        xdp_mode: mode,
        ..XskConfig::udp_ports(&[port])
    }
}

/// Waits up to a second for `got_reply`; `false` on time-out.
fn spin_until(t: Instant, mut got_reply: impl FnMut() -> bool) -> bool {
    let deadline = t + Duration::from_secs(1);
    loop {
        if got_reply() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

/// The client's round trips in namespace A, in microseconds, after 1,000 warm-up ones:
/// send one 64-byte payload, busy-poll for the echo, check it, repeat.
fn client_rtts(cfg: &VethConfig, client: End, rtts: u32) -> Vec<f64> {
    let payload = [0x17u8; PAYLOAD];
    let mut out = Vec::with_capacity(rtts as usize);
    let mut record = |i: u32, t: Instant, ok: bool| {
        if ok && i >= 1000 {
            out.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
    };
    match client {
        End::Udp => {
            let c = UdpSocket::bind((cfg.ip_a, CLIENT_PORT)).unwrap();
            c.connect((cfg.ip_b, ECHO_PORT)).unwrap();
            c.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 2048];
            for i in 0..(rtts + 1000) {
                let t = Instant::now();
                c.send(&payload).unwrap();
                let ok = spin_until(t, || match c.recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(&buf[..n], &payload[..], "echoed payload differs");
                        true
                    }
                    Err(_) => false,
                });
                record(i, t, ok);
            }
        }
        End::AfXdp(mode) => {
            let mut sock = XskSocket::open(&cfg.if_a, 0, xsk_config(CLIENT_PORT, mode)).unwrap();
            let flow = UdpFlow {
                src_mac: cfg.mac_a,
                dst_mac: cfg.mac_b,
                src: SocketAddrV4::new(cfg.ip_a, CLIENT_PORT),
                dst: SocketAddrV4::new(cfg.ip_b, ECHO_PORT),
            };
            let mut frame = [0u8; 256];
            let len = build_udp(&mut frame, &flow, &payload, 1).unwrap();
            let frame = &frame[..len];
            for i in 0..(rtts + 1000) {
                let start = Instant::now();
                sock.send_frame(&mut |tx| {
                    tx[..len].copy_from_slice(frame);
                    len
                })
                .unwrap();
                sock.flush().unwrap();
                let ok = spin_until(start, || {
                    let batch = sock.recv(16);
                    if batch.len() == 0 {
                        return false;
                    }
                    let reply = batch.frame(0).expect("the reply's descriptor is valid");
                    let view =
                        parse_udp(reply, UdpChecksumPolicy::Ignore).expect("the reply parses");
                    assert_eq!(view.payload(), &payload[..], "echoed payload differs");
                    true
                });
                record(i, start, ok);
            }
        }
    }
    out
}

/// The echo server in namespace B, busy polling until `stop`.
fn echo_server(cfg: &VethConfig, server: End, ready: &mpsc::Sender<()>, stop: &AtomicBool) {
    match server {
        End::AfXdp(mode) => {
            let mut s = XskSocket::open(&cfg.if_b, 0, xsk_config(ECHO_PORT, mode)).unwrap();
            ready.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
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
        End::Udp => {
            let s = UdpSocket::bind((cfg.ip_b, ECHO_PORT)).unwrap();
            s.set_nonblocking(true).unwrap();
            ready.send(()).unwrap();
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        }
    }
}

/// p50, p99 (microseconds) and the count of round trips between `client` in A and
/// `server` in B.
fn ping_pong(pair: &VethPair, client: End, server: End, rtts: u32) -> (f64, f64, f64) {
    let cfg = pair.config().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (c2, stop2) = (cfg.clone(), stop.clone());
    let h = pair.spawn_in(Side::B, move || echo_server(&c2, server, &ready_tx, &stop2));
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let mut rtt = pair
        .run_in(Side::A, move || client_rtts(&cfg, client, rtts))
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

/// The receive-throughput rounds and their table and ratios; returns the figures (receive
/// rate and CPU per packet of every generator and receiver).
fn throughput(
    pair: &VethPair,
    frame: &[u8],
    rounds: u32,
    live_frames: u32,
    udp_packets: u32,
) -> Vec<Record> {
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
            let s = measure(pair, frame, *g, *r, live_frames, udp_packets);
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
    let mut records = Vec::new();
    for (k, (g, r)) in combos.iter().enumerate() {
        let s = &samples[k];
        let pps: Vec<f64> = s.iter().map(|x| x.rx_pps).collect();
        let id = format!("bypass_veth/{}_{}", g.slug(), r.slug());
        records.extend(Record::from_samples(
            format!("{id}/rx_pps"),
            "pkt/s",
            Better::Higher,
            &pps,
        ));
        let cpu: Vec<f64> = s.iter().map(|x| x.cpu_ns_per_pkt).collect();
        records.extend(Record::from_samples(
            format!("{id}/cpu_ns_per_pkt"),
            "ns/pkt",
            Better::Lower,
            &cpu,
        ));
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
    records
}

/// Writes the figures for `cargo xtask bench` (when it asked for them), or exits 1.
fn write_records(records: &[Record]) {
    match tally_benches::harness::write_records("bypass_veth", records) {
        Ok(Some(path)) => eprintln!("{} figures written to {}", records.len(), path.display()),
        Ok(None) => {}
        Err(e) => {
            eprintln!("bypass_veth: {e}");
            std::process::exit(1);
        }
    }
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
    let mut records = Vec::new();
    if live_frames > 0 {
        records = throughput(&pair, &frame, rounds, live_frames, udp_packets);
    }
    if rtts == 0 {
        write_records(&records);
        return;
    }

    println!();
    // The transport comparison is AF_XDP at both ends against UDP sockets at both ends,
    // in both XDP modes; the mixed rows show what each end contributes. All ends busy-poll.
    let (generic, native) = (
        End::AfXdp(XdpModeChoice::Generic),
        End::AfXdp(XdpModeChoice::Native),
    );
    let setups = [
        (End::Udp, End::Udp),
        (generic, generic),
        (native, native),
        (End::Udp, generic),
        (End::Udp, native),
        (generic, End::Udp),
        (native, End::Udp),
    ];
    println!();
    println!("| client | echo server | run | p50 us | p99 us | round trips |");
    println!("|---|---|---|---|---|---|");
    let mut p50 = vec![Vec::new(); setups.len()];
    let mut p99 = vec![Vec::new(); setups.len()];
    for run in 0..rounds {
        for k in in_turn(setups.len(), run as usize) {
            let (cl, srv) = setups[k];
            let (a, b, n) = ping_pong(&pair, cl, srv, rtts);
            println!(
                "| {} | {} | {run} | {a:.1} | {b:.1} | {n:.0} |",
                cl.name(),
                srv.name()
            );
            p50[k].push(a);
            p99[k].push(b);
        }
    }
    println!();
    println!(
        "| client | echo server | p50 us (median) | p99 us (median) | p50 / UDP both ends | p99 / UDP both ends |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let (u50, u99) = (median(p50[0].clone()), median(p99[0].clone()));
    for (k, (cl, srv)) in setups.iter().enumerate() {
        let id = format!("bypass_veth/rtt_{}_{}", cl.slug(), srv.slug());
        for (q, v) in [("p50", &p50[k]), ("p99", &p99[k])] {
            records.extend(Record::from_samples(
                format!("{id}/{q}"),
                "us",
                Better::Lower,
                v,
            ));
        }
        let (m50, m99) = (median(p50[k].clone()), median(p99[k].clone()));
        println!(
            "| {} | {} | {m50:.1} | {m99:.1} | {:.2} | {:.2} |",
            cl.name(),
            srv.name(),
            m50 / u50,
            m99 / u99
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("# loadavg at end {}", load.trim());
    write_records(&records);
}
