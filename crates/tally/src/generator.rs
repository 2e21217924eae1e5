//! The load generator: plays the t signers of many concurrent FROST sessions.
//!
//! Before the timed run it signs a pool of sessions for real (RFC 9591 commitments and
//! shares from [`crate::signer`], each checked by `tally_mpc`'s aggregate). During the run
//! it keeps `window` sessions in flight: for each, one `PACKAGE` and `t` `SHARE` datagrams
//! (a configurable fraction of the shares replaced by wrong ones), and it measures the
//! latency from the last share sent to the durable reply received. Pool entries are
//! reused under fresh session identifiers.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tally_mpc::frost::{Identifier, SigningPackage, aggregate};

use crate::signer::{Group, Nonces, SignerError, corrupt, sign};
use crate::wire::{self, Msg};

/// One pre-signed session.
#[derive(Debug, Clone)]
pub struct PoolEntry {
    /// The message.
    pub msg: [u8; 32],
    /// `(id, hiding, binding)` per signer.
    pub commitments: Vec<(u16, [u8; 33], [u8; 33])>,
    /// `(id, good share, wrong share)` per signer.
    pub shares: Vec<(u16, [u8; 32], [u8; 32])>,
    /// The aggregate signature of the good shares.
    pub sig: [u8; 65],
}

/// Signs `size` sessions with random signer subsets of size `group.t`, on `threads` threads.
/// Stops early (returning fewer entries) on Ctrl-C ([`crate::sys::interrupted`]).
///
/// # Errors
/// [`SignerError`] (random source or encoding failures).
pub fn build_pool(
    group: &Group,
    size: usize,
    threads: usize,
) -> Result<Vec<PoolEntry>, SignerError> {
    let threads = threads.max(1);
    let per = size.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let n = per.min(size.saturating_sub(k * per));
                s.spawn(move || {
                    (0..n)
                        .map_while(|_| (!crate::sys::interrupted()).then(|| pool_entry(group)))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(size);
        for h in handles {
            match h.join() {
                Ok(r) => out.extend(r?),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        Ok(out)
    })
}

fn pool_entry(group: &Group) -> Result<PoolEntry, SignerError> {
    // A random subset of t of the n signers (partial Fisher-Yates on random bytes).
    let mut ids: Vec<u16> = (1..=group.n).collect();
    let mut rnd = [0u8; 64];
    getrandom::getrandom(&mut rnd).map_err(SignerError::Random)?;
    for i in 0..usize::from(group.t) {
        let left = ids.len() - i;
        let r = usize::from(rnd.get(i % 64).copied().unwrap_or(0)) % left;
        ids.swap(i, i + r);
    }
    ids.truncate(usize::from(group.t));
    let mut msg = [0u8; 32];
    getrandom::getrandom(&mut msg).map_err(SignerError::Random)?;
    let nonces = ids
        .iter()
        .map(|_| Nonces::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let mut commitments = Vec::with_capacity(ids.len());
    for (id, n) in ids.iter().zip(&nonces) {
        commitments.push((Identifier::from_u16(*id)?, n.commitments()?));
    }
    let mut shares = Vec::with_capacity(ids.len());
    let mut agg = Vec::with_capacity(ids.len());
    for ((id, n), (ident, _)) in ids.iter().zip(&nonces).zip(&commitments) {
        let signer = group
            .signer(*id)
            .ok_or(SignerError::NotInSession { id: *id })?;
        let share = sign(group, signer, n, &msg, &commitments)?;
        shares.push((*id, share.to_bytes(), corrupt(&share).to_bytes()));
        agg.push((*ident, share, signer.verifying_share));
    }
    let pkg = SigningPackage::new(&msg, &commitments)?;
    let sig = aggregate(&pkg, &group.key, &agg).map_err(|e| {
        SignerError::Frost(
            e.culprits()
                .first()
                .map_or(tally_mpc::Error::InvalidSignature, |c| {
                    tally_mpc::Error::InvalidShare { identifier: *c }
                }),
        )
    })?;
    Ok(PoolEntry {
        msg,
        commitments: ids
            .iter()
            .zip(&nonces)
            .map(|(id, n)| (*id, n.hiding_commitment, n.binding_commitment))
            .collect(),
        shares,
        sig: sig.to_bytes(),
    })
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Coordinator address.
    pub target: SocketAddr,
    /// Local address to bind.
    pub bind: SocketAddr,
    /// Group identifier.
    pub group_id: u16,
    /// Group size (to pick a non-member for wrong-identifier datagrams).
    pub n: u16,
    /// Sessions in flight.
    pub window: usize,
    /// How long to send.
    pub duration: Duration,
    /// Fraction of shares replaced by wrong ones.
    pub invalid_ratio: f64,
    /// Every this many sessions, also send four bad datagrams (0 = never).
    pub bad_wire_every: u64,
    /// How long to wait for a reply before counting the session as dropped.
    pub reply_timeout: Duration,
    /// First session identifier.
    pub first_session: u64,
}

/// Live counters for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Sessions sent.
    pub sent: AtomicU64,
    /// Sessions completed.
    pub completed: AtomicU64,
    /// p99 latency so far, microseconds.
    pub p99_us: AtomicU64,
}

/// Bad datagrams the generator injected, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BadInjected {
    /// Shares cut short.
    pub truncated: u64,
    /// Shares for a session that does not exist.
    pub unknown_session: u64,
    /// Shares from a signer not in the session.
    pub wrong_identifier: u64,
    /// A share sent twice.
    pub replayed_share: u64,
}

/// What the generator saw.
#[derive(Debug, Clone)]
pub struct GenResult {
    /// Sessions whose every datagram was sent.
    pub sessions_sent: u64,
    /// Sessions answered (signed or rejected).
    pub sessions_completed: u64,
    /// Answered with a signature equal to the expected one.
    pub sessions_signed: u64,
    /// Answered with exactly the injected culprits.
    pub sessions_rejected: u64,
    /// Answers that were wrong (bad signature, wrong culprits, signature where culprits were due).
    pub wrong_answers: u64,
    /// Sessions without an answer within the reply timeout.
    pub no_reply: u64,
    /// Answers for sessions not outstanding (late or duplicate).
    pub unexpected_replies: u64,
    /// Invalid shares sent.
    pub invalid_shares_injected: u64,
    /// Invalid shares named by the coordinator (in correct answers).
    pub invalid_shares_detected: u64,
    /// Replies received (every kind).
    pub replies_received: u64,
    /// Highest journal sequence number seen in a reply.
    pub max_journal_seq: u64,
    /// Bad datagrams injected.
    pub bad: BadInjected,
    /// Latency from last share sent to reply received, nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// From the first datagram sent to the last answer received.
    pub elapsed: Duration,
}

struct Outstanding {
    sent: Instant,
    pool: usize,
    bad_mask: u32,
}

/// A tiny xorshift for the injection decisions (not cryptographic).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    #[allow(clippy::cast_precision_loss, reason = "53 random bits are plenty")]
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

fn send(sock: &UdpSocket, to: SocketAddr, buf: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match sock.send_to(buf, to) {
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
}

fn new_hist() -> Histogram<u64> {
    crate::report::histogram(1_000, 60_000_000_000, 3)
}

/// Runs the generator until the duration is over or `stop` is set, then waits for the
/// outstanding answers (up to the reply timeout).
///
/// # Errors
/// Socket errors.
#[allow(clippy::too_many_lines, reason = "one loop, read top to bottom")]
pub fn run(
    cfg: &GenConfig,
    pool: &[PoolEntry],
    stop: &AtomicBool,
    progress: &Progress,
) -> io::Result<GenResult> {
    let sock = UdpSocket::bind(cfg.bind)?;
    sock.set_nonblocking(true)?;
    crate::sys::set_rcvbuf(&sock, 8 << 20);
    let mut r = GenResult {
        sessions_sent: 0,
        sessions_completed: 0,
        sessions_signed: 0,
        sessions_rejected: 0,
        wrong_answers: 0,
        no_reply: 0,
        unexpected_replies: 0,
        invalid_shares_injected: 0,
        invalid_shares_detected: 0,
        replies_received: 0,
        max_journal_seq: 0,
        bad: BadInjected::default(),
        latency_ns: new_hist(),
        elapsed: Duration::ZERO,
    };
    if pool.is_empty() {
        return Ok(r);
    }
    let mut out: HashMap<u64, Outstanding> = HashMap::with_capacity(cfg.window * 2);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ cfg.first_session);
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let mut rbuf = [0u8; 2048];
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let mut next = cfg.first_session;
    let mut last_reply = start;
    let mut last_progress = start;
    let mut last_timeout_scan = start;
    let mut sending = true;
    let mut drain_deadline = None;
    loop {
        let now = Instant::now();
        if sending && (now >= deadline || stop.load(Ordering::Relaxed)) {
            sending = false;
            drain_deadline = Some(now + cfg.reply_timeout);
        }
        let mut progressed = false;
        // Send new sessions while the window has room (bounded per turn, to keep receiving).
        let mut budget = 16;
        while sending && out.len() < cfg.window && budget > 0 {
            budget -= 1;
            let session = next;
            next += 1;
            let pi = usize::try_from(session % pool.len() as u64).unwrap_or(0);
            let Some(e) = pool.get(pi) else { break };
            let n = wire::write_package(&mut buf, session, cfg.group_id, &e.msg, &e.commitments);
            send(&sock, cfg.target, buf.get(..n).unwrap_or(&[]))?;
            let bad_wire = cfg.bad_wire_every > 0 && session.is_multiple_of(cfg.bad_wire_every);
            let mut mask = 0u32;
            for (k, (id, good, wrong)) in e.shares.iter().enumerate() {
                let invalid = cfg.invalid_ratio > 0.0 && rng.chance(cfg.invalid_ratio);
                if invalid {
                    mask |= 1 << k;
                    r.invalid_shares_injected += 1;
                }
                let n =
                    wire::write_share(&mut buf, session, *id, if invalid { wrong } else { good });
                let share = buf.get(..n).unwrap_or(&[]);
                send(&sock, cfg.target, share)?;
                if bad_wire && k == 0 && e.shares.len() > 1 {
                    // Before the session can complete: a replay of this share, the same share cut
                    // short, for a session that does not exist, and from a non-member.
                    send(&sock, cfg.target, share)?;
                    r.bad.replayed_share += 1;
                    send(&sock, cfg.target, share.get(..n / 2).unwrap_or(&[]))?;
                    r.bad.truncated += 1;
                    let mut b2 = [0u8; wire::SHARE_LEN];
                    let n2 = wire::write_share(&mut b2, session | (1 << 63), *id, good);
                    send(&sock, cfg.target, b2.get(..n2).unwrap_or(&[]))?;
                    r.bad.unknown_session += 1;
                    let members: Vec<u16> = e.shares.iter().map(|s| s.0).collect();
                    let outsider = (1..=cfg.n)
                        .find(|i| !members.contains(i))
                        .unwrap_or(u16::MAX);
                    let n3 = wire::write_share(&mut b2, session, outsider, good);
                    send(&sock, cfg.target, b2.get(..n3).unwrap_or(&[]))?;
                    r.bad.wrong_identifier += 1;
                }
            }
            out.insert(
                session,
                Outstanding {
                    sent: Instant::now(),
                    pool: pi,
                    bad_mask: mask,
                },
            );
            r.sessions_sent += 1;
            progressed = true;
        }
        // Receive answers.
        loop {
            match sock.recv_from(&mut rbuf) {
                Ok((len, _)) => {
                    progressed = true;
                    let now = Instant::now();
                    last_reply = now;
                    r.replies_received += 1;
                    let (session, seq, ok, detected) =
                        match wire::parse(rbuf.get(..len).unwrap_or(&[])) {
                            Ok(Msg::Signed(s)) => {
                                let ok = out.get(&s.session).is_some_and(|o| {
                                    o.bad_mask == 0
                                        && pool.get(o.pool).is_some_and(|e| e.sig == s.sig)
                                });
                                (s.session, s.seq, ok, 0)
                            }
                            Ok(Msg::Rejected(j)) => {
                                let ok = out.get(&j.session).is_some_and(|o| {
                                    let e = pool.get(o.pool);
                                    let mut m = 0u32;
                                    for c in j.culprits() {
                                        if let Some(k) =
                                            e.and_then(|e| e.shares.iter().position(|s| s.0 == *c))
                                        {
                                            m |= 1 << k;
                                        }
                                    }
                                    m == o.bad_mask
                                        && j.culprits().len() == o.bad_mask.count_ones() as usize
                                });
                                (j.session, j.seq, ok, j.culprits().len() as u64)
                            }
                            _ => {
                                r.unexpected_replies += 1;
                                continue;
                            }
                        };
                    r.max_journal_seq = r.max_journal_seq.max(seq);
                    let Some(o) = out.remove(&session) else {
                        r.unexpected_replies += 1;
                        continue;
                    };
                    r.sessions_completed += 1;
                    let ns =
                        u64::try_from(now.duration_since(o.sent).as_nanos()).unwrap_or(u64::MAX);
                    let _ = r.latency_ns.record(ns.max(1_000));
                    if !ok {
                        r.wrong_answers += 1;
                    } else if detected > 0 {
                        r.sessions_rejected += 1;
                        r.invalid_shares_detected += detected;
                    } else {
                        r.sessions_signed += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        if now.duration_since(last_timeout_scan) >= Duration::from_millis(50) {
            last_timeout_scan = now;
            let before = out.len();
            out.retain(|_, o| now.duration_since(o.sent) < cfg.reply_timeout);
            r.no_reply += (before - out.len()) as u64;
        }
        if now.duration_since(last_progress) >= Duration::from_millis(250) {
            last_progress = now;
            progress.sent.store(r.sessions_sent, Ordering::Relaxed);
            progress
                .completed
                .store(r.sessions_completed, Ordering::Relaxed);
            progress.p99_us.store(
                r.latency_ns.value_at_quantile(0.99) / 1000,
                Ordering::Relaxed,
            );
        }
        if !sending && (out.is_empty() || drain_deadline.is_some_and(|d| now >= d)) {
            break;
        }
        if !progressed {
            // Nothing to send and nothing arrived: block briefly for an answer.
            sock.set_nonblocking(false)?;
            sock.set_read_timeout(Some(Duration::from_micros(200)))?;
            let mut peek = [0u8; 1];
            let _ = sock.peek_from(&mut peek);
            sock.set_nonblocking(true)?;
        }
    }
    r.no_reply += out.len() as u64;
    r.elapsed = last_reply.duration_since(start);
    progress.sent.store(r.sessions_sent, Ordering::Relaxed);
    progress
        .completed
        .store(r.sessions_completed, Ordering::Relaxed);
    Ok(r)
}
