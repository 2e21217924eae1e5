//! Shared helpers of the kernel tests: root probe, veth pair, senders, ICMP ping.
#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(clippy::cast_possible_truncation, reason = "test payload patterns")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use tally_bypass::netns::{VethConfig, VethPair};

/// The veth pair, or `None` after printing why the test is skipped; on CI (`CI` set:
/// root, Linux 6.x) a refusal fails the test instead.
pub fn veth_or_skip(tag: &str, config: VethConfig) -> Option<VethPair> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tag}: CI must run the veth tests as root"
        );
        eprintln!("SKIP {tag}: not root (network namespaces, XDP and AF_XDP need root)");
        return None;
    }
    match VethPair::new(tag, config) {
        Ok(p) => Some(p),
        Err(e) if e.is_permission_denied() && std::env::var_os("CI").is_none() => {
            eprintln!("SKIP {tag}: not permitted: {e}");
            None
        }
        Err(e) => panic!("veth setup failed as root: {e}"),
    }
}

/// Payload `flow:u32 seq:u32` followed by a pattern byte, `len` bytes (>= 8).
pub fn payload(flow: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(8)];
    p[..4].copy_from_slice(&flow.to_be_bytes());
    p[4..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(8) {
        *b = (seq as usize + i) as u8;
    }
    p
}

/// Sends `count` datagrams per flow from `flows` sockets (interleaved) to `dst`.
pub fn send_flows(
    src_ip: Ipv4Addr,
    dst: SocketAddrV4,
    flows: u32,
    count: u32,
    len: usize,
) -> Vec<SocketAddrV4> {
    let socks: Vec<UdpSocket> = (0..flows)
        .map(|_| UdpSocket::bind((src_ip, 0)).unwrap())
        .collect();
    for seq in 0..count {
        for (f, s) in socks.iter().enumerate() {
            let p = payload(f as u32, seq, len);
            // Retry on ENOBUFS (veth tx queue momentarily full).
            while let Err(e) = s.send_to(&p, dst) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "send: {e}");
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        if seq % 256 == 255 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    socks
        .iter()
        .map(|s| match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => unreachable!(),
        })
        .collect()
}

/// Sends one ICMP echo request to `dst` from a raw socket and waits for the reply.
pub fn ping(dst: Ipv4Addr, timeout: Duration) -> bool {
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(
        fd >= 0,
        "raw ICMP socket: {}",
        std::io::Error::last_os_error()
    );
    let id: u16 = (std::process::id() & 0xffff) as u16;
    let mut req = [0u8; 16];
    req[0] = 8;
    req[4..6].copy_from_slice(&id.to_be_bytes());
    req[6..8].copy_from_slice(&1u16.to_be_bytes());
    req[8..].copy_from_slice(b"tallypng");
    let sum = tally_bypass::packet::internet_checksum(&req);
    req[2..4].copy_from_slice(&sum.to_be_bytes());
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid buffer and sockaddr.
    let r = unsafe {
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    assert_eq!(r, 16, "ICMP send: {}", std::io::Error::last_os_error());
    let deadline = Instant::now() + timeout;
    let mut ok = false;
    while Instant::now() < deadline {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        if unsafe { libc::poll(&raw mut p, 1, 50) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 256];
        // SAFETY: valid buffer.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 28 {
            continue;
        }
        let ihl = usize::from(buf[0] & 0xf) * 4;
        if buf[ihl] == 0 && buf[ihl + 4..ihl + 6] == id.to_be_bytes() {
            ok = true;
            break;
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    ok
}

/// Asserts that both namespaces of a dropped pair are gone.
pub fn assert_netns_gone(names: &[String; 2]) {
    for n in names {
        assert!(
            !tally_bypass::netns::NetnsGuard::exists(n),
            "namespace {n} left behind"
        );
    }
}

/// Whether the XDP program on `side` is gone within a second (link release and device
/// update can complete just after the descriptor is closed).
pub fn xdp_detached_soon(
    pair: &tally_bypass::netns::VethPair,
    side: tally_bypass::netns::Side,
) -> bool {
    for _ in 0..40 {
        if !pair.xdp_attached(side).unwrap() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}
