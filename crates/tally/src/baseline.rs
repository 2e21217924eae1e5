//! `--baseline`: the same coordinator job built the way a team would without Tally.
//!
//! A blocking std UDP socket, one datagram per `recv_from`; each share verified on
//! arrival with `frost_core::verify_signature_share` (frost-secp256k1 3); complete
//! sessions aggregated with `frost_secp256k1::aggregate`; each outcome written to a plain
//! file with `write_all` + `sync_data` (fdatasync) before its reply is sent. Same wire
//! format and same load generator as the Tally pipeline, so the two are comparable.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use frost_secp256k1 as zf;

use crate::coordinator::CoordStats;
use crate::signer::Group;
use crate::wire::{self, Msg};

/// Why the baseline stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// Socket or file I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The group's keys could not be converted to frost-secp256k1's types.
    #[error("frost-secp256k1 rejected the group's keys: {0}")]
    Keys(String),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> BaselineError {
    move |source| BaselineError::Io { what, source }
}

struct Session {
    pkg: zf::SigningPackage,
    shares: BTreeMap<zf::Identifier, zf::round2::SignatureShare>,
    culprits: Vec<u16>,
    t: usize,
    opened: Instant,
}

/// Name of the baseline's log file inside its directory.
pub const LOG: &str = "baseline.log";

/// Counts the records in a baseline log (each is `len u16 || payload`).
///
/// # Errors
/// I/O errors reading the file.
pub fn count_records(dir: &Path) -> io::Result<u64> {
    let mut bytes = Vec::new();
    File::open(dir.join(LOG))?.read_to_end(&mut bytes)?;
    let mut at = 0usize;
    let mut n = 0;
    while let Some(len) = bytes.get(at..at + 2) {
        let len = usize::from(u16::from_be_bytes([
            len.first().copied().unwrap_or(0),
            len.get(1).copied().unwrap_or(0),
        ]));
        if at + 2 + len > bytes.len() {
            break;
        }
        at += 2 + len;
        n += 1;
    }
    Ok(n)
}

/// Runs the baseline coordinator on `sock` until `stop`.
///
/// # Errors
/// [`BaselineError`].
#[allow(
    clippy::too_many_lines,
    reason = "the whole baseline loop in one place"
)]
pub fn run(
    group: &Group,
    group_id: u16,
    sock: &UdpSocket,
    dir: &Path,
    stop: &AtomicBool,
) -> Result<CoordStats, BaselineError> {
    std::fs::create_dir_all(dir).map_err(io_err("creating the baseline directory"))?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG))
        .map_err(io_err("opening the baseline log"))?;
    let keys = |e: zf::Error| BaselineError::Keys(e.to_string());
    let vk = zf::VerifyingKey::deserialize(&group.key.to_bytes()).map_err(keys)?;
    let mut shares_map = BTreeMap::new();
    let mut vshares = HashMap::new();
    for s in &group.signers {
        let id = zf::Identifier::try_from(s.id).map_err(keys)?;
        let vs =
            zf::keys::VerifyingShare::deserialize(&s.verifying_share.to_bytes()).map_err(keys)?;
        shares_map.insert(id, vs);
        vshares.insert(s.id, (id, vs));
    }
    let pubkeys = zf::keys::PublicKeyPackage::new(shares_map, vk, Some(group.t));
    crate::sys::set_rcvbuf(sock, 8 << 20);
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(io_err("setting the socket timeout"))?;
    let mut stats = CoordStats::empty();
    let mut sessions: HashMap<u64, Session> = HashMap::new();
    let mut buf = [0u8; 2048];
    let mut out = [0u8; wire::MAX_DATAGRAM];
    let start = Instant::now();
    let mut last_expiry = start;
    let mut seq = 0u64;
    loop {
        let (len, from): (usize, SocketAddr) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            // A signal ends the wait too (`SA_RESTART` does not restart a receive with a
            // timeout).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                return Err(BaselineError::Io {
                    what: "receiving",
                    source: e,
                });
            }
        };
        stats.datagrams += 1;
        stats.net.rx_datagrams += 1;
        match wire::parse(buf.get(..len).unwrap_or(&[])) {
            Err(_) => stats.drops.malformed += 1,
            Ok(Msg::Signed(_) | Msg::Rejected(_)) => stats.drops.unexpected_type += 1,
            Ok(Msg::Package(p)) => {
                if p.group != group_id {
                    stats.drops.unknown_group += 1;
                    continue;
                }
                if sessions.contains_key(&p.session) {
                    stats.drops.duplicate_package += 1;
                    continue;
                }
                let mut commitments = BTreeMap::new();
                let mut ok = true;
                for (id, h, b) in p.commitments() {
                    let c = (|| -> Result<_, zf::Error> {
                        Ok((
                            zf::Identifier::try_from(id)?,
                            zf::round1::SigningCommitments::new(
                                zf::round1::NonceCommitment::deserialize(h)?,
                                zf::round1::NonceCommitment::deserialize(b)?,
                            ),
                        ))
                    })();
                    match c {
                        Ok((i, c)) if vshares.contains_key(&id) => {
                            commitments.insert(i, c);
                        }
                        _ => ok = false,
                    }
                }
                if !ok || commitments.len() != p.t() {
                    stats.drops.bad_package += 1;
                    continue;
                }
                stats.sessions_opened += 1;
                sessions.insert(
                    p.session,
                    Session {
                        pkg: zf::SigningPackage::new(commitments, p.msg),
                        shares: BTreeMap::new(),
                        culprits: Vec::new(),
                        t: p.t(),
                        opened: Instant::now(),
                    },
                );
            }
            Ok(Msg::Share(sh)) => {
                let Some(s) = sessions.get_mut(&sh.session) else {
                    stats.drops.unknown_session += 1;
                    continue;
                };
                let Some(&(id, vs)) = vshares.get(&sh.id) else {
                    stats.drops.wrong_identifier += 1;
                    continue;
                };
                if !s.pkg.signing_commitments().contains_key(&id) {
                    stats.drops.wrong_identifier += 1;
                    continue;
                }
                if s.shares.contains_key(&id) {
                    stats.drops.replayed_share += 1;
                    continue;
                }
                let Ok(share) = zf::round2::SignatureShare::deserialize(&sh.z) else {
                    stats.drops.bad_share_encoding += 1;
                    continue;
                };
                stats.shares_verified += 1;
                if frost_core::verify_signature_share(id, &vs, &share, &s.pkg, &vk).is_err() {
                    s.culprits.push(sh.id);
                }
                s.shares.insert(id, share);
                if s.shares.len() < s.t {
                    continue;
                }
                let Some(s) = sessions.remove(&sh.session) else {
                    continue;
                };
                // The record: what Tally journals, framed with a length.
                let mut rec = Vec::with_capacity(80);
                let reply_len;
                seq += 1;
                if s.culprits.is_empty() {
                    let sig = zf::aggregate(&s.pkg, &s.shares, &pubkeys)
                        .ok()
                        .and_then(|g| g.serialize().ok())
                        .and_then(|v| <[u8; 65]>::try_from(v.as_slice()).ok());
                    let Some(sig) = sig else {
                        stats.culprit_mismatches += 1;
                        continue;
                    };
                    rec.push(1);
                    rec.extend_from_slice(&sh.session.to_be_bytes());
                    rec.extend_from_slice(&sig);
                    reply_len = wire::write_signed(&mut out, sh.session, seq, &sig);
                    stats.sessions_signed += 1;
                } else {
                    rec.push(2);
                    rec.extend_from_slice(&sh.session.to_be_bytes());
                    rec.push(u8::try_from(s.culprits.len()).unwrap_or(u8::MAX));
                    for c in &s.culprits {
                        rec.extend_from_slice(&c.to_be_bytes());
                    }
                    stats.invalid_shares_detected += s.culprits.len() as u64;
                    stats.sessions_rejected += 1;
                    reply_len = wire::write_rejected(&mut out, sh.session, seq, &s.culprits);
                }
                let mut framed = Vec::with_capacity(rec.len() + 2);
                framed.extend_from_slice(&u16::try_from(rec.len()).unwrap_or(0).to_be_bytes());
                framed.extend_from_slice(&rec);
                log.write_all(&framed)
                    .map_err(io_err("writing the baseline log"))?;
                log.sync_data()
                    .map_err(io_err("fdatasync of the baseline log"))?;
                stats.journal_records += 1;
                stats.journal_commits += 1;
                match sock.send_to(out.get(..reply_len).unwrap_or(&[]), from) {
                    Ok(_) => {
                        stats.replies_sent += 1;
                        stats.net.tx_datagrams += 1;
                    }
                    Err(_) => stats.drops.reply_failed += 1,
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_expiry) > Duration::from_millis(100) {
            last_expiry = now;
            let before = sessions.len();
            sessions.retain(|_, s| now.duration_since(s.opened) < Duration::from_secs(2));
            stats.drops.expired += (before - sessions.len()) as u64;
        }
    }
    stats.drops.expired += sessions.len() as u64;
    stats.elapsed = start.elapsed();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::test_signal;

    /// A signal landing on the baseline's thread while it waits for a datagram ends the
    /// wait, not the run.
    #[test]
    fn a_signal_during_a_receive_wait_is_not_an_error() {
        test_signal::install();
        let group = Group::deal(2, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop2, path) = (std::sync::Arc::clone(&stop), dir.path().to_path_buf());
        let runner = std::thread::spawn(move || {
            tx.send(test_signal::tid()).unwrap();
            run(&group, 1, &sock, &path, &stop2).map_err(|e| e.to_string())
        });
        let tid = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..5 {
            test_signal::interrupt(tid);
            std::thread::sleep(Duration::from_millis(30));
        }
        stop.store(true, Ordering::Relaxed);
        let stats = runner.join().unwrap().unwrap();
        assert_eq!(stats.datagrams, 0);
    }
}
