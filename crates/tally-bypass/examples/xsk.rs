//! `xsk`: an xdpsock-like tool on top of tally-bypass.
//!
//! ```text
//! cargo run --release -p tally-bypass --example xsk -- --iface IF [--queue Q] [--udp-port P]...
//!     [--mode rxdrop|echo|txonly] [--xdp-mode auto|native|generic]
//!     [--transport auto|af_xdp|af_packet] [--duration SECS] [--json]
//!     [--tx-dst IP:PORT --tx-dst-mac MAC [--tx-src IP:PORT] [--tx-src-mac MAC] [--size BYTES]]
//! ```
//! rxdrop counts and releases every frame; echo answers each UDP datagram to its sender
//! (addresses swapped, checksums rewritten); txonly sends UDP datagrams of `--size` bytes
//! to `--tx-dst` as fast as the ring allows. With `--json` it prints one JSON object.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    reason = "command-line tool"
)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tally_bypass::packet::{MacAddr, UdpFlow, reply_in_place};
use tally_bypass::{
    PacketTransport, RxBatch, Transport, TransportChoice, TransportOptions, XdpFilter,
    XdpModeChoice,
};

#[derive(Debug)]
struct Args {
    iface: String,
    queue: u32,
    ports: Vec<u16>,
    mode: String,
    xdp_mode: XdpModeChoice,
    transport: TransportChoice,
    duration: Duration,
    json: bool,
    tx_dst: Option<SocketAddrV4>,
    tx_dst_mac: Option<MacAddr>,
    tx_src: Option<SocketAddrV4>,
    tx_src_mac: Option<MacAddr>,
    size: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        iface: String::new(),
        queue: 0,
        ports: Vec::new(),
        mode: "rxdrop".into(),
        xdp_mode: XdpModeChoice::Auto,
        transport: TransportChoice::Auto,
        duration: Duration::from_secs(10),
        json: false,
        tx_dst: None,
        tx_dst_mac: None,
        tx_src: None,
        tx_src_mac: None,
        size: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--iface" => a.iface = val()?,
            "--queue" => a.queue = val()?.parse().map_err(|e| format!("--queue: {e}"))?,
            "--udp-port" => a
                .ports
                .push(val()?.parse().map_err(|e| format!("--udp-port: {e}"))?),
            "--mode" => a.mode = val()?,
            "--xdp-mode" => {
                a.xdp_mode = match val()?.as_str() {
                    "auto" => XdpModeChoice::Auto,
                    "native" => XdpModeChoice::Native,
                    "generic" => XdpModeChoice::Generic,
                    o => return Err(format!("--xdp-mode {o}: use auto, native or generic")),
                }
            }
            "--transport" => {
                a.transport = match val()?.as_str() {
                    "auto" => TransportChoice::Auto,
                    "af_xdp" => TransportChoice::AfXdp,
                    "af_packet" => TransportChoice::AfPacket,
                    o => return Err(format!("--transport {o}: use auto, af_xdp or af_packet")),
                }
            }
            "--duration" => {
                let secs: f64 = val()?.parse().map_err(|e| format!("--duration: {e}"))?;
                // A negative, NaN or huge value used to panic in `from_secs_f64`.
                a.duration = Duration::try_from_secs_f64(secs).map_err(|e| {
                    format!("--duration {secs}: {e}; give a number of seconds, 0 or more")
                })?;
            }
            "--json" => a.json = true,
            "--tx-dst" => a.tx_dst = Some(val()?.parse().map_err(|e| format!("--tx-dst: {e}"))?),
            "--tx-dst-mac" => {
                a.tx_dst_mac = Some(val()?.parse().map_err(|e| format!("--tx-dst-mac: {e}"))?);
            }
            "--tx-src" => a.tx_src = Some(val()?.parse().map_err(|e| format!("--tx-src: {e}"))?),
            "--tx-src-mac" => {
                a.tx_src_mac = Some(val()?.parse().map_err(|e| format!("--tx-src-mac: {e}"))?);
            }
            "--size" => a.size = val()?.parse().map_err(|e| format!("--size: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            o => return Err(format!("unknown argument {o}")),
        }
    }
    if a.iface.is_empty() {
        return Err("--iface is required".into());
    }
    if !["rxdrop", "echo", "txonly"].contains(&a.mode.as_str()) {
        return Err(format!("--mode {}: use rxdrop, echo or txonly", a.mode));
    }
    Ok(a)
}

fn iface_mac(iface: &str) -> Option<MacAddr> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\nusage: xsk --iface IF [--queue Q] [--udp-port P]... [--mode rxdrop|echo|txonly] [--xdp-mode auto|native|generic] [--transport auto|af_xdp|af_packet] [--duration SECS] [--json] [--tx-dst IP:PORT --tx-dst-mac MAC [--tx-src IP:PORT] [--tx-src-mac MAC] [--size BYTES]]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xsk: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = TransportOptions::udp_ports(&args.ports);
    opts.choice = args.transport;
    opts.xsk.xdp_mode = args.xdp_mode;
    if args.ports.is_empty() {
        opts.xsk.filter = XdpFilter::All;
    }
    let mut t = Transport::open(&args.iface, args.queue, &opts)?;
    let (xdp_mode, bind, fallback, xdp_fallback) = match &t {
        Transport::AfXdp(x) => (
            x.info().xdp_mode.as_str().to_owned(),
            x.info().bind_mode.as_str().to_owned(),
            x.info().bind_fallback_reason.clone(),
            x.info().xdp_fallback_reason.clone(),
        ),
        Transport::AfPacket(_, why) => {
            ("none".to_owned(), "af_packet".to_owned(), why.clone(), None)
        }
    };
    // Always on stderr (the JSON goes to stdout): it also tells a script that the socket
    // is bound and traffic may start.
    eprintln!(
        "{}: xdp {xdp_mode} (fallback: {xdp_fallback:?}), bind {bind} (fallback: {fallback:?})",
        t.kind().as_str()
    );
    let tx_flow = if args.mode == "txonly" {
        let dst = args.tx_dst.ok_or("--mode txonly needs --tx-dst IP:PORT")?;
        let dst_mac = args.tx_dst_mac.ok_or("--mode txonly needs --tx-dst-mac")?;
        let src_mac = args
            .tx_src_mac
            .or_else(|| iface_mac(&args.iface))
            .ok_or("--tx-src-mac needed")?;
        let src = args
            .tx_src
            .unwrap_or_else(|| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9));
        Some(UdpFlow {
            src_mac,
            dst_mac,
            src,
            dst,
        })
    } else {
        None
    };
    let payload = vec![0x5au8; args.size];
    let start = Instant::now();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let (mut rx, mut tx, mut seq) = (0u64, 0u64, 0u16);
    while start.elapsed() < args.duration {
        if let Some(flow) = &tx_flow {
            for _ in 0..64 {
                if t.send_udp(flow, &payload, seq).is_err() {
                    break;
                }
                seq = seq.wrapping_add(1);
                tx += 1;
            }
            t.flush()?;
            continue;
        }
        t.wait(Duration::from_millis(100))?;
        let mut batch = t.recv(64);
        let n = batch.len();
        if n == 0 {
            continue;
        }
        let now = Instant::now();
        first.get_or_insert(now);
        last = Some(now);
        // Frames only: a descriptor the batch refuses (counted in `invalid_descs`) is none.
        rx += (0..n).filter(|&i| batch.frame(i).is_some()).count() as u64;
        if args.mode == "echo" {
            for i in 0..n {
                // Count only replies that were queued: a frame that is not well-formed
                // IPv4/UDP (or an unreadable descriptor) gets none, and `reply` still
                // answers Ok.
                let mut queued = false;
                let r = batch.reply(i, &mut |rxf, txf| {
                    let Some(dst) = txf.get_mut(..rxf.len()) else {
                        return 0;
                    };
                    dst.copy_from_slice(rxf);
                    let len = reply_in_place(dst).unwrap_or(0);
                    queued = len > 0;
                    len
                });
                if r.is_ok() && queued {
                    tx += 1;
                }
            }
            drop(batch);
            t.flush()?;
        }
    }
    t.flush()?;
    let span = match (first, last) {
        (Some(f), Some(l)) if l > f => (l - f).as_secs_f64(),
        _ => 0.0,
    };
    let rx_pps = if span > 0.0 { rx as f64 / span } else { 0.0 };
    let s = t.stats();
    let out = serde_json::json!({
        "transport": t.kind().as_str(),
        "xdp_mode": xdp_mode,
        "bind": bind,
        "fallback_reason": fallback,
        "xdp_fallback_reason": xdp_fallback,
        "mode": args.mode,
        "rx_packets": rx,
        "rx_pps": rx_pps,
        "tx_packets": tx,
        "rx_dropped": s.rx_dropped,
        "rx_ring_full": s.rx_ring_full,
        "rx_fill_ring_empty": s.rx_fill_ring_empty,
        "invalid_descs": s.invalid_descs,
        "tx_ring_full": s.tx_ring_full,
        "rx_malformed": s.rx_malformed,
    });
    if args.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
