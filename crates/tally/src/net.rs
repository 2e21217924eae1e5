//! The coordinator's network side: kernel bypass (`tally-bypass`: AF_XDP or AF_PACKET) or,
//! without privileges, a plain UDP socket. Both hand the coordinator datagram payloads
//! with a reply address and send its replies.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tally_bypass::packet::UdpFlow;
use tally_bypass::{PacketTransport, RxBatch, Transport, TxError};

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// A UDP socket address (the `udp` transport).
    Udp(SocketAddr),
    /// A full Ethernet/IPv4/UDP flow (the bypass transports).
    Flow(UdpFlow),
}

/// Counters of a [`Net`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Frames the kernel dropped before we saw them (ring full, fill ring empty).
    pub rx_dropped: u64,
    /// Frames that were not well-formed IPv4/UDP (counted by the transport).
    pub rx_malformed: u64,
    /// Replies sent.
    pub tx_datagrams: u64,
    /// Replies that could not be queued even after a flush.
    pub tx_failed: u64,
    /// Times the interface went down while receiving (the receive went on).
    pub link_down: u64,
}

/// A datagram transport for the coordinator.
pub trait Net {
    /// `"af_xdp"`, `"af_packet"` or `"udp"`.
    fn kind(&self) -> &'static str;
    /// Delivers up to `max` received datagrams to `f`, waiting up to `wait` for the first.
    /// Returns how many were delivered.
    ///
    /// # Errors
    /// The OS error of the receive or wait call.
    fn recv(
        &mut self,
        max: usize,
        wait: Option<Duration>,
        f: &mut dyn FnMut(&[u8], Addr),
    ) -> io::Result<usize>;
    /// Queues (or sends) one reply. Returns false when it could not be sent (counted).
    fn send(&mut self, to: &Addr, payload: &[u8]) -> bool;
    /// Pushes queued replies to the kernel.
    fn flush(&mut self);
    /// Counters.
    fn stats(&self) -> NetStats;
}

/// The unprivileged fallback: one non-blocking UDP socket.
#[derive(Debug)]
pub struct UdpNet {
    sock: UdpSocket,
    blocking: bool,
    buf: Vec<u8>,
    stats: NetStats,
}

impl UdpNet {
    /// Wraps a bound socket.
    ///
    /// # Errors
    /// The OS error of `fcntl`/`setsockopt`.
    pub fn new(sock: UdpSocket) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        crate::sys::set_rcvbuf(&sock, 8 << 20);
        Ok(Self {
            sock,
            blocking: false,
            buf: vec![0u8; 2048],
            stats: NetStats::default(),
        })
    }
}

impl Net for UdpNet {
    fn kind(&self) -> &'static str {
        "udp"
    }

    fn recv(
        &mut self,
        max: usize,
        wait: Option<Duration>,
        f: &mut dyn FnMut(&[u8], Addr),
    ) -> io::Result<usize> {
        let mut n = 0;
        if let Some(t) = wait {
            self.sock.set_nonblocking(false)?;
            self.sock
                .set_read_timeout(Some(t.max(Duration::from_micros(1))))?;
            self.blocking = true;
        }
        while n < max {
            match self.sock.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    n += 1;
                    self.stats.rx_datagrams += 1;
                    f(self.buf.get(..len).unwrap_or(&[]), Addr::Udp(from));
                }
                // Nothing (yet), or a signal ended the wait (`SA_RESTART` does not restart
                // a receive with a timeout): no datagram this time.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    break;
                }
                // An ICMP error from an earlier send to a closed port: not ours to handle.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
            if self.blocking {
                self.sock.set_nonblocking(true)?;
                self.blocking = false;
            }
        }
        if self.blocking {
            self.sock.set_nonblocking(true)?;
            self.blocking = false;
        }
        Ok(n)
    }

    fn send(&mut self, to: &Addr, payload: &[u8]) -> bool {
        let Addr::Udp(to) = to else {
            self.stats.tx_failed += 1;
            return false;
        };
        for _ in 0..1000 {
            match self.sock.send_to(payload, to) {
                Ok(_) => {
                    self.stats.tx_datagrams += 1;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(_) => break,
            }
        }
        self.stats.tx_failed += 1;
        false
    }

    fn flush(&mut self) {}

    fn stats(&self) -> NetStats {
        self.stats
    }
}

/// Kernel bypass through `tally-bypass`'s [`Transport`] (AF_XDP, or AF_PACKET).
#[derive(Debug)]
pub struct BypassNet {
    t: Transport,
    ip_id: u16,
    stats: NetStats,
}

impl BypassNet {
    /// Wraps an open transport.
    pub fn new(t: Transport) -> Self {
        Self {
            t,
            ip_id: 0,
            stats: NetStats::default(),
        }
    }
}

impl Net for BypassNet {
    fn kind(&self) -> &'static str {
        self.t.kind().as_str()
    }

    fn recv(
        &mut self,
        max: usize,
        wait: Option<Duration>,
        f: &mut dyn FnMut(&[u8], Addr),
    ) -> io::Result<usize> {
        if let Some(t) = wait {
            match self.t.wait(t) {
                Ok(_) => {}
                // A link flap is not the end of the run: wait again next time; frames
                // arrive again once the interface is up.
                Err(e) if e.is_link_down() => {
                    self.stats.link_down += 1;
                    return Ok(0);
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let batch = self.t.recv(max);
        let mut n = 0;
        for i in 0..batch.len() {
            if let Some(v) = batch.udp(i) {
                n += 1;
                f(v.payload(), Addr::Flow(v.reply_flow()));
            }
        }
        self.stats.rx_datagrams += n as u64;
        Ok(n)
    }

    fn send(&mut self, to: &Addr, payload: &[u8]) -> bool {
        let Addr::Flow(flow) = to else {
            self.stats.tx_failed += 1;
            return false;
        };
        self.ip_id = self.ip_id.wrapping_add(1);
        for _ in 0..100 {
            match self.t.send_udp(flow, payload, self.ip_id) {
                Ok(()) => {
                    self.stats.tx_datagrams += 1;
                    return true;
                }
                Err(TxError::RingFull) => {
                    if self.t.flush().is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        self.stats.tx_failed += 1;
        false
    }

    fn flush(&mut self) {
        let _ = self.t.flush();
    }

    fn stats(&self) -> NetStats {
        let s = self.t.stats();
        NetStats {
            rx_dropped: s.rx_lost(),
            rx_malformed: s.rx_malformed,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::test_signal;

    /// A signal that lands on the coordinator's thread while it waits for a datagram (a
    /// Ctrl-C, `SA_RESTART` does not restart a receive with a timeout) is not a network
    /// failure: the wait ends with no datagram.
    #[test]
    fn a_signal_during_a_receive_wait_is_not_an_error() {
        test_signal::install();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut net = UdpNet::new(sock).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            tx.send(test_signal::tid()).unwrap();
            net.recv(1, Some(Duration::from_secs(2)), &mut |_, _| {})
                .map_err(|e| e.to_string())
        });
        let tid = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        test_signal::interrupt(tid);
        assert_eq!(waiter.join().unwrap(), Ok(0));
    }

    /// A link flap under an AF_PACKET receive is not fatal: the wait that sees the
    /// interface go down returns no datagram and counts it, and the datagram sent once
    /// the interface is up again is received. (It used to end the coordinator's run.)
    #[test]
    fn a_link_flap_does_not_end_an_af_packet_receive() {
        use tally_bypass::netns::{Side, VethConfig};
        use tally_bypass::{TransportChoice, TransportOptions};
        let config = VethConfig {
            static_neighbours: true,
            ..VethConfig::default()
        };
        let Some(pair) = crate::sys::veth_or_skip("flap", config) else {
            return;
        };
        let cfg = pair.config().clone();
        let ns = pair.netns(Side::B).name().to_owned();
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        let ifb = cfg.if_b.clone();
        let mut net = pair
            .run_in(Side::B, move || {
                let mut opts = TransportOptions::udp_ports(&[9311]);
                opts.choice = TransportChoice::AfPacket;
                BypassNet::new(tally_bypass::Transport::open(&ifb, 0, &opts).unwrap())
            })
            .unwrap();
        ip(&["-n", &ns, "link", "set", &cfg.if_b, "down"]);
        let mut got = Vec::new();
        let n = net
            .recv(8, Some(Duration::from_millis(200)), &mut |p, _| {
                got.push(p.to_vec());
            })
            .expect("a downed interface must not end the receive");
        assert_eq!((n, net.stats().link_down), (0, 1));
        ip(&["-n", &ns, "link", "set", &cfg.if_b, "up"]);
        let dst = std::net::SocketAddrV4::new(cfg.ip_b, 9311);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing received after the flap"
            );
            pair.run_in(Side::A, move || {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.send_to(b"after the flap", dst).unwrap();
            })
            .unwrap();
            net.recv(8, Some(Duration::from_millis(100)), &mut |p, _| {
                got.push(p.to_vec());
            })
            .unwrap();
        }
        assert_eq!(got[0], b"after the flap");
    }
}
