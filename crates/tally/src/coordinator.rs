//! The FROST coordinator: receive -> parse -> collect a session's shares -> verify every
//! complete session of a batch across sessions -> journal group commit -> reply only once
//! durable. Verification ([`VerifyMode`]): by default the sessions' aggregate signatures
//! in one `SignatureBatchVerifier` batch, and the shares of the sessions whose signature
//! fails in one `ShareBatchVerifier` batch, then `aggregate` names the cheaters (RFC 9591
//! section 5.3); or every share in the `ShareBatchVerifier` batch, sessions whose shares
//! all pass summed without a second check (`aggregate_verified_shares`).
//!
//! Two shapes (`--stages`): run-to-completion on one thread, overlapping each group
//! commit's `fdatasync` with the next batch's receive and verification
//! ([`Journal::start_commit`] / [`Journal::wait_commit`]); or two threads, network and
//! crypto on one and the journal on the other, handing work over through two
//! `tally_core_types::SpscRing`s.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tally_core_types::SpscRing;
use tally_mpc::frost::{
    Identifier, PrecomputedVerifyingKey, PrecomputedVerifyingShare, ShareBatchVerifier,
    SignatureBatchVerifier, SignatureShare, SigningCommitments, SigningPackage, VerifyingKey,
    VerifyingShare, aggregate, aggregate_unverified, aggregate_verified_shares, bind_packages,
    verify_key_shares,
};
use tally_uring::{Journal, JournalError, JournalOptions};

use crate::net::{Addr, Net, NetStats};
use crate::wire::{self, MAX_T, Msg};

/// What the coordinator verifies in its cross-session batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum VerifyMode {
    /// Every session's aggregate signature in one `SignatureBatchVerifier` batch (one
    /// 128-bit base per session); the shares of a session whose signature fails go
    /// through a `ShareBatchVerifier` batch to name the cheaters (RFC 9591 section 5.3).
    #[default]
    Signatures,
    /// Every share in one `ShareBatchVerifier` batch (three bases per share); sessions
    /// whose shares all pass are aggregated without a second verification.
    Shares,
}

impl VerifyMode {
    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signatures => "signatures",
            Self::Shares => "shares",
        }
    }
}

/// The coordinator's configuration: the group it serves and its limits.
#[derive(Debug, Clone)]
pub struct CoordConfig {
    /// Group identifier carried in `PACKAGE` messages.
    pub group_id: u16,
    /// The group's verifying key.
    pub key: VerifyingKey,
    /// Verifying share of each signer, indexed by identifier (index 0 unused).
    pub verifying_shares: Vec<Option<VerifyingShare>>,
    /// The key's threshold (fewest signers of a session). When the verifying shares are
    /// checked against the key for it at start ([`verify_key_shares`]), sessions of at
    /// least this many signers whose shares all passed the batch are aggregated without
    /// verifying the signature again ([`aggregate_verified_shares`]).
    pub threshold: u16,
    /// Journal directory.
    pub journal_dir: PathBuf,
    /// Staged (two threads, `SpscRing` handoff) instead of run-to-completion.
    pub stages: bool,
    /// What the cross-session batch verifies.
    pub verify: VerifyMode,
    /// Most sessions verified in one batch.
    pub max_batch_sessions: usize,
    /// Incomplete sessions older than this are dropped (counted).
    pub session_timeout: Duration,
    /// Most incomplete sessions held at once.
    pub table_capacity: usize,
}

/// Why the coordinator stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordError {
    /// The journal failed (I/O error, no space, poisoned).
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The network receive failed.
    #[error("network receive failed: {0}; check the interface and permissions")]
    Net(#[from] std::io::Error),
    /// The journal thread of the staged shape panicked or failed to start.
    #[error(
        "the journal stage stopped unexpectedly: {0}; rerun without --stages to see the journal's own error"
    )]
    Stage(String),
    /// The coordinator's fixed set-up values could not be built (a bug, not bad input).
    #[error(
        "building the coordinator's set-up failed: {0}; report this with the command line used"
    )]
    Config(#[from] tally_mpc::Error),
}

/// Counted drops, by reason. Datagram-level reasons drop one datagram; `expired` and
/// `table_full` drop a whole session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Not a well-formed message (truncated, bad magic/version/type/length).
    pub malformed: u64,
    /// A reply-type message sent to the coordinator.
    pub unexpected_type: u64,
    /// `PACKAGE` for a group this coordinator does not serve.
    pub unknown_group: u64,
    /// `PACKAGE` with an invalid commitment list (bad point, duplicate or unknown signer,
    /// fewer signers than the key's threshold).
    pub bad_package: u64,
    /// `PACKAGE` for a session already open, or for one of the last
    /// [`CLOSED_MEMORY`] sessions completed (a replay).
    pub duplicate_package: u64,
    /// `PACKAGE` dropped because the session table was full.
    pub table_full: u64,
    /// `SHARE` for no open session.
    pub unknown_session: u64,
    /// `SHARE` from a signer not in the session.
    pub wrong_identifier: u64,
    /// `SHARE` from a signer whose share the session already has.
    pub replayed_share: u64,
    /// `SHARE` whose scalar is not below the group order.
    pub bad_share_encoding: u64,
    /// Sessions that never received all shares within the timeout.
    pub expired: u64,
    /// Replies that could not be sent.
    pub reply_failed: u64,
}

impl Drops {
    /// `(reason, count)` pairs.
    pub fn pairs(&self) -> [(&'static str, u64); 12] {
        [
            ("malformed", self.malformed),
            ("unexpected_type", self.unexpected_type),
            ("unknown_group", self.unknown_group),
            ("bad_package", self.bad_package),
            ("duplicate_package", self.duplicate_package),
            ("table_full", self.table_full),
            ("unknown_session", self.unknown_session),
            ("wrong_identifier", self.wrong_identifier),
            ("replayed_share", self.replayed_share),
            ("bad_share_encoding", self.bad_share_encoding),
            ("expired", self.expired),
            ("reply_failed", self.reply_failed),
        ]
    }
}

/// What the coordinator did.
#[derive(Debug, Clone)]
pub struct CoordStats {
    /// Network counters.
    pub net: NetStats,
    /// Datagrams parsed.
    pub datagrams: u64,
    /// Sessions opened by a `PACKAGE`.
    pub sessions_opened: u64,
    /// Shares verified (in batches).
    pub shares_verified: u64,
    /// Shares found invalid.
    pub invalid_shares_detected: u64,
    /// Sessions where the batch verifier and `aggregate`'s culprits disagreed (must be 0).
    pub culprit_mismatches: u64,
    /// Sessions answered with a signature.
    pub sessions_signed: u64,
    /// Sessions answered with culprits.
    pub sessions_rejected: u64,
    /// Journal records appended.
    pub journal_records: u64,
    /// Group commits (each one write + one `fdatasync`).
    pub journal_commits: u64,
    /// Replies sent.
    pub replies_sent: u64,
    /// Replies whose journal record was not yet durable when they were sent, checked
    /// against the journal's durable sequence number at send time (must be 0).
    pub replies_before_durable: u64,
    /// Drops by reason.
    pub drops: Drops,
    /// Sessions per verification batch.
    pub batch_sessions: Histogram<u64>,
    /// Time spent verifying and aggregating.
    pub verify_time: Duration,
    /// Time the coordinator spent blocked on group commits (writing and `fdatasync`, or
    /// waiting for an io_uring commit to become durable).
    pub commit_wait_time: Duration,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl CoordStats {
    /// All counters zero.
    pub(crate) fn empty() -> Self {
        Self {
            net: NetStats::default(),
            datagrams: 0,
            sessions_opened: 0,
            shares_verified: 0,
            invalid_shares_detected: 0,
            culprit_mismatches: 0,
            sessions_signed: 0,
            sessions_rejected: 0,
            journal_records: 0,
            journal_commits: 0,
            replies_sent: 0,
            replies_before_durable: 0,
            drops: Drops::default(),
            batch_sessions: crate::report::histogram(1, 1 << 20, 2),
            verify_time: Duration::ZERO,
            commit_wait_time: Duration::ZERO,
            elapsed: Duration::ZERO,
        }
    }
}

/// A session's outcome, to be journaled and answered.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Session identifier.
    pub session: u64,
    /// Where the answer goes.
    pub reply_to: Addr,
    /// Signature, or culprits.
    pub result: SessionResult,
}

/// Signature or culprits.
#[derive(Debug, Clone, Copy)]
pub enum SessionResult {
    /// `R || z`.
    Signed([u8; 65]),
    /// Culprit identifiers (first `n`).
    Rejected([u16; MAX_T], u8),
}

impl Outcome {
    /// The journal record: `1 || session || sig` or `2 || session || k || ids`.
    fn record(&self, buf: &mut [u8; 128]) -> usize {
        let mut at = 0;
        let mut put = |b: &[u8]| {
            if let Some(d) = buf.get_mut(at..at + b.len()) {
                d.copy_from_slice(b);
            }
            at += b.len();
        };
        match &self.result {
            SessionResult::Signed(sig) => {
                put(&[1]);
                put(&self.session.to_be_bytes());
                put(sig);
            }
            SessionResult::Rejected(ids, n) => {
                put(&[2]);
                put(&self.session.to_be_bytes());
                put(&[*n]);
                for id in ids.iter().take(usize::from(*n)) {
                    put(&id.to_be_bytes());
                }
            }
        }
        at
    }

    fn reply(&self, seq: u64, buf: &mut [u8; wire::MAX_DATAGRAM]) -> usize {
        match &self.result {
            SessionResult::Signed(sig) => wire::write_signed(buf, self.session, seq, sig),
            SessionResult::Rejected(ids, n) => wire::write_rejected(
                buf,
                self.session,
                seq,
                ids.get(..usize::from(*n)).unwrap_or(&[]),
            ),
        }
    }
}

/// How many completed session identifiers the coordinator remembers, so that a replayed
/// `PACKAGE` of a completed session is dropped instead of being verified, journaled and
/// answered a second time. Bounded (a few MiB at most); a replay of a session completed
/// longer ago than this many sessions is not recognised. An expired session was never
/// answered, so its identifier may open a session again.
pub const CLOSED_MEMORY: usize = 1 << 18;

/// The identifiers of the last [`CLOSED_MEMORY`] sessions completed, oldest first.
#[derive(Default)]
struct Closed {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Closed {
    fn contains(&self, session: u64) -> bool {
        self.set.contains(&session)
    }

    fn insert(&mut self, session: u64) {
        if !self.set.insert(session) {
            return;
        }
        self.order.push_back(session);
        if self.order.len() > CLOSED_MEMORY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }
}

/// One open session.
#[derive(Clone)]
struct Pending {
    session: u64,
    t: u8,
    msg: [u8; 32],
    ids: [u16; MAX_T],
    commitments: [(Identifier, SigningCommitments); MAX_T],
    shares: [Option<SignatureShare>; MAX_T],
    have: u8,
    reply_to: Addr,
    opened: Instant,
}

/// Network, parsing, session table and verification: everything but the journal.
struct Front<N: Net> {
    cfg: CoordConfig,
    net: N,
    table: HashMap<u64, Pending>,
    /// Recently completed sessions (replays of their `PACKAGE` are dropped).
    closed: Closed,
    /// Complete sessions for the next verification batch (at most `max_batch_sessions`).
    ready: Vec<Pending>,
    /// Complete sessions beyond the batch being verified, in order.
    held: Vec<Pending>,
    outcomes: Vec<Outcome>,
    placeholder: (Identifier, SigningCommitments),
    stats: CoordStats,
    last_expiry: Instant,
    /// The verifying shares belong to the key for `cfg.threshold` (checked once).
    key_shares_ok: bool,
    /// The batch verifiers, kept between batches so that their buffers are reused (the
    /// per-batch package and index lists are still allocated per batch).
    batch: Option<ShareBatchVerifier<'static>>,
    sig_batch: Option<SignatureBatchVerifier<'static>>,
    /// Comb tables of the group key and of each verifying share (by identifier), built
    /// once: their terms in a batch are table lookups.
    pre_key: PrecomputedVerifyingKey,
    pre_shares: Vec<Option<PrecomputedVerifyingShare>>,
}

/// The compressed generator, a valid point to fill unused commitment slots with.
const G: [u8; 33] = [
    0x02, 0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87, 0x0b,
    0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16, 0xf8, 0x17,
    0x98,
];

impl<N: Net> Front<N> {
    fn new(cfg: CoordConfig, net: N) -> Result<Self, CoordError> {
        let placeholder = (
            Identifier::from_u16(1)?,
            SigningCommitments::from_bytes(&G, &G)?,
        );
        let stats = CoordStats::empty();
        let shares: Vec<(Identifier, VerifyingShare)> = cfg
            .verifying_shares
            .iter()
            .enumerate()
            .filter_map(|(id, vs)| {
                let id = Identifier::from_u16(u16::try_from(id).ok()?).ok()?;
                Some((id, (*vs)?))
            })
            .collect();
        let key_shares_ok =
            verify_key_shares(&cfg.key, usize::from(cfg.threshold), &shares).is_ok();
        Ok(Self {
            key_shares_ok,
            batch: None,
            sig_batch: None,
            pre_key: PrecomputedVerifyingKey::new(&cfg.key),
            pre_shares: cfg
                .verifying_shares
                .iter()
                .map(|vs| vs.as_ref().map(PrecomputedVerifyingShare::new))
                .collect(),
            table: HashMap::with_capacity(cfg.table_capacity),
            closed: Closed::default(),
            ready: Vec::with_capacity(cfg.max_batch_sessions),
            held: Vec::with_capacity(cfg.max_batch_sessions),
            outcomes: Vec::with_capacity(cfg.max_batch_sessions),
            cfg,
            net,
            placeholder,
            stats,
            last_expiry: Instant::now(),
        })
    }

    /// Receives until `max_batch` sessions are ready or the socket is drained (waiting up
    /// to `wait` for the first datagram, reading at most `4 * max_batch` calls' worth),
    /// then verifies the ready sessions into `outcomes`. Returns the datagrams received.
    /// With `receive` false (stopping, the drain time is over) it only sleeps `wait` and
    /// verifies what is ready.
    fn receive_and_verify(
        &mut self,
        wait: Option<Duration>,
        max_batch: usize,
        receive: bool,
    ) -> Result<usize, CoordError> {
        let mut got = 0;
        if receive {
            loop {
                let n = self.receive(64, if got == 0 { wait } else { None })?;
                got += n;
                if n == 0 || self.ready.len() >= max_batch || got >= 4 * max_batch {
                    break;
                }
            }
        } else if let Some(w) = wait {
            std::thread::sleep(w);
        }
        // One `receive` call completes every session its datagrams finish, which can be
        // more than `max_batch`: verify them in order, at most `max_batch` at a time.
        let max = max_batch.max(1);
        while self.ready.len() > max {
            self.held.extend(self.ready.drain(max..));
            self.verify_ready();
            self.ready.append(&mut self.held);
        }
        self.verify_ready();
        Ok(got)
    }

    /// Receives up to `max` datagrams (waiting up to `wait` for the first); complete
    /// sessions move to `ready`.
    fn receive(&mut self, max: usize, wait: Option<Duration>) -> Result<usize, CoordError> {
        let Self {
            cfg,
            net,
            table,
            closed,
            ready,
            placeholder,
            stats,
            ..
        } = self;
        let n = net.recv(max, wait, &mut |payload, from| {
            handle(cfg, table, closed, ready, placeholder, stats, payload, from);
        })?;
        Ok(n)
    }

    fn expire(&mut self, now: Instant) {
        if now.duration_since(self.last_expiry) < Duration::from_millis(100) {
            return;
        }
        self.last_expiry = now;
        let timeout = self.cfg.session_timeout;
        let before = self.table.len();
        self.table
            .retain(|_, p| now.duration_since(p.opened) < timeout);
        self.stats.drops.expired += (before - self.table.len()) as u64;
    }

    /// Verifies every ready session's shares in one batch, aggregates, and appends
    /// outcomes to `self.outcomes`.
    #[allow(
        clippy::too_many_lines,
        reason = "batch, then per-session aggregation, in order"
    )]
    fn verify_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let t0 = Instant::now();
        let Self {
            cfg,
            ready,
            outcomes,
            stats,
            batch: batch_slot,
            sig_batch: sig_slot,
            key_shares_ok,
            pre_key,
            pre_shares,
            ..
        } = self;
        let key = &cfg.key;
        let pkgs: Vec<Option<SigningPackage<'_>>> = ready
            .iter()
            .map(|p| {
                SigningPackage::new(&p.msg, p.commitments.get(..usize::from(p.t)).unwrap_or(&[]))
                    .ok()
            })
            .collect();
        // Bind every package to the key at once (shared field inversions).
        let refs: Vec<&SigningPackage<'_>> = pkgs.iter().flatten().collect();
        bind_packages(&refs, key);
        // Sessions settled by their signature (signature mode); the others' shares go into
        // the share batch.
        let mut settled = vec![false; ready.len()];
        if cfg.verify == VerifyMode::Signatures {
            let mut sigs = match sig_slot.take() {
                Some(b) if b.capacity() >= ready.len() => b.recycle(),
                _ => SignatureBatchVerifier::with_capacity(ready.len().max(cfg.max_batch_sessions)),
            };
            // (session, signature) of each batch entry.
            let mut queued = Vec::with_capacity(ready.len());
            for (si, (p, pkg)) in ready.iter().zip(&pkgs).enumerate() {
                let Some(pkg) = pkg else { continue };
                let flat = share_list(cfg, p);
                if let Ok(sig) = aggregate_unverified(pkg, key, &flat)
                    && sigs.push_precomputed(pre_key, &p.msg, &sig).is_ok()
                {
                    queued.push((si, sig));
                }
            }
            let invalid = sigs.verify().err();
            let invalid = invalid.as_ref().map_or(&[][..], |e| e.invalid());
            for (i, (si, sig)) in queued.iter().enumerate() {
                if invalid.contains(&i) {
                    continue;
                }
                if let (Some(p), Some(done)) = (ready.get(*si), settled.get_mut(*si)) {
                    *done = true;
                    stats.shares_verified += u64::from(p.t);
                    stats.sessions_signed += 1;
                    outcomes.push(Outcome {
                        session: p.session,
                        reply_to: p.reply_to,
                        result: SessionResult::Signed(sig.to_bytes()),
                    });
                }
            }
            *sig_slot = Some(sigs.recycle());
        }
        let total: usize = ready
            .iter()
            .zip(&settled)
            .filter(|(_, s)| !**s)
            .map(|(p, _)| usize::from(p.t))
            .sum();
        let mut batch = match batch_slot.take() {
            Some(b) if b.capacity() >= total => b.recycle(),
            _ => ShareBatchVerifier::with_capacity(total.max(1)),
        };
        // Which (session, signer slot) each batch entry is.
        let mut index: Vec<(usize, usize)> = Vec::with_capacity(total);
        // Shares of each session that went into the batch.
        let mut pushed = vec![0u8; ready.len()];
        for (si, (p, pkg)) in ready.iter().zip(&pkgs).enumerate() {
            let Some(pkg) = pkg else { continue };
            if settled.get(si).copied().unwrap_or(false) {
                continue;
            }
            for k in 0..usize::from(p.t) {
                let (Some((id, _)), Some(Some(share)), Some(&sid)) =
                    (p.commitments.get(k), p.shares.get(k), p.ids.get(k))
                else {
                    continue;
                };
                let Some(Some(vs)) = pre_shares.get(usize::from(sid)) else {
                    continue;
                };
                if batch.push_precomputed(pkg, key, *id, vs, share).is_ok() {
                    index.push((si, k));
                    if let Some(n) = pushed.get_mut(si) {
                        *n += 1;
                    }
                }
            }
        }
        let mut bad = vec![0u32; ready.len()];
        stats.shares_verified += index.len() as u64;
        if let Err(e) = batch.verify() {
            for &i in e.invalid() {
                if let Some(&(si, k)) = index.get(i)
                    && let Some(b) = bad.get_mut(si)
                {
                    *b |= 1 << k;
                }
            }
        }
        *batch_slot = Some(batch.recycle());
        let _ = stats.batch_sessions.record(ready.len() as u64);
        for ((((p, pkg), mask), n_pushed), done) in
            ready.iter().zip(&pkgs).zip(&bad).zip(&pushed).zip(&settled)
        {
            if *done {
                continue;
            }
            let Some(pkg) = pkg else {
                stats.drops.bad_package += 1;
                continue;
            };
            let flat = share_list(cfg, p);
            // Every share passed the batch: the sum is a valid signature (see
            // `aggregate_verified_shares`), no second verification.
            let prechecked =
                *mask == 0 && *n_pushed == p.t && u16::from(p.t) >= cfg.threshold && *key_shares_ok;
            if prechecked
                && let Ok(sig) =
                    aggregate_verified_shares(pkg, key, usize::from(cfg.threshold), &flat)
            {
                stats.sessions_signed += 1;
                outcomes.push(Outcome {
                    session: p.session,
                    reply_to: p.reply_to,
                    result: SessionResult::Signed(sig.to_bytes()),
                });
                continue;
            }
            let result = match aggregate(pkg, key, &flat) {
                Ok(sig) => {
                    if *mask != 0 {
                        stats.culprit_mismatches += 1;
                    }
                    stats.sessions_signed += 1;
                    SessionResult::Signed(sig.to_bytes())
                }
                Err(e) => {
                    let mut ids = [0u16; MAX_T];
                    let mut n = 0u8;
                    let mut agg_mask = 0u32;
                    for c in e.culprits() {
                        if let Some(k) = p
                            .commitments
                            .iter()
                            .take(usize::from(p.t))
                            .position(|(i, _)| i == c)
                            && let (Some(slot), Some(&sid)) =
                                (ids.get_mut(usize::from(n)), p.ids.get(k))
                        {
                            *slot = sid;
                            n += 1;
                            agg_mask |= 1 << k;
                        }
                    }
                    if agg_mask != *mask {
                        stats.culprit_mismatches += 1;
                    }
                    stats.invalid_shares_detected += u64::from(n);
                    stats.sessions_rejected += 1;
                    SessionResult::Rejected(ids, n)
                }
            };
            outcomes.push(Outcome {
                session: p.session,
                reply_to: p.reply_to,
                result,
            });
        }
        ready.clear();
        stats.verify_time += t0.elapsed();
    }

    fn send_reply(&mut self, o: &Outcome, seq: u64) {
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        let n = o.reply(seq, &mut buf);
        if self.net.send(&o.reply_to, buf.get(..n).unwrap_or(&[])) {
            self.stats.replies_sent += 1;
        } else {
            self.stats.drops.reply_failed += 1;
        }
    }
}

/// `(identifier, share, verifying share)` of every signer of a complete session.
fn share_list(cfg: &CoordConfig, p: &Pending) -> Vec<(Identifier, SignatureShare, VerifyingShare)> {
    (0..usize::from(p.t))
        .filter_map(|k| {
            let (Some((id, _)), Some(Some(share)), Some(&sid)) =
                (p.commitments.get(k), p.shares.get(k), p.ids.get(k))
            else {
                return None;
            };
            let vs = (*cfg.verifying_shares.get(usize::from(sid))?)?;
            Some((*id, *share, vs))
        })
        .collect()
}

/// Parses one datagram and updates the session table.
#[allow(
    clippy::too_many_arguments,
    clippy::too_many_lines,
    reason = "split borrows of the front's fields; one arm per message type"
)]
fn handle(
    cfg: &CoordConfig,
    table: &mut HashMap<u64, Pending>,
    closed: &mut Closed,
    ready: &mut Vec<Pending>,
    placeholder: &(Identifier, SigningCommitments),
    stats: &mut CoordStats,
    payload: &[u8],
    from: Addr,
) {
    stats.datagrams += 1;
    let Ok(msg) = wire::parse(payload) else {
        stats.drops.malformed += 1;
        return;
    };
    match msg {
        Msg::Package(p) => {
            if p.group != cfg.group_id {
                stats.drops.unknown_group += 1;
                return;
            }
            // Fewer signers than the threshold can never make a signature: valid shares
            // would be verified, found valid, and the session rejected naming no one.
            if p.t() < usize::from(cfg.threshold) {
                stats.drops.bad_package += 1;
                return;
            }
            if table.contains_key(&p.session) || closed.contains(p.session) {
                stats.drops.duplicate_package += 1;
                return;
            }
            if table.len() >= cfg.table_capacity {
                stats.drops.table_full += 1;
                return;
            }
            let mut pending = Pending {
                session: p.session,
                t: u8::try_from(p.t()).unwrap_or(0),
                msg: *p.msg,
                ids: [0; MAX_T],
                commitments: [*placeholder; MAX_T],
                shares: [None; MAX_T],
                have: 0,
                reply_to: from,
                opened: Instant::now(),
            };
            for (k, (id, h, b)) in p.commitments().enumerate() {
                let known = cfg
                    .verifying_shares
                    .get(usize::from(id))
                    .is_some_and(Option::is_some);
                let (Ok(ident), Ok(c), true) = (
                    Identifier::from_u16(id),
                    SigningCommitments::from_bytes(h, b),
                    known,
                ) else {
                    stats.drops.bad_package += 1;
                    return;
                };
                if let (Some(si), Some(sc)) =
                    (pending.ids.get_mut(k), pending.commitments.get_mut(k))
                {
                    *si = id;
                    *sc = (ident, c);
                }
            }
            // Duplicate identifiers are rejected here (cheaply, on the small ids); the
            // package itself is built once, at verification time.
            let t = usize::from(pending.t);
            let ids = pending.ids.get(..t).unwrap_or(&[]);
            if ids
                .iter()
                .enumerate()
                .any(|(i, id)| ids.get(..i).unwrap_or(&[]).contains(id))
            {
                stats.drops.bad_package += 1;
                return;
            }
            stats.sessions_opened += 1;
            table.insert(p.session, pending);
        }
        Msg::Share(s) => {
            let Some(p) = table.get_mut(&s.session) else {
                stats.drops.unknown_session += 1;
                return;
            };
            let t = usize::from(p.t);
            let Some(k) = p.ids.iter().take(t).position(|&i| i == s.id) else {
                stats.drops.wrong_identifier += 1;
                return;
            };
            let Some(slot) = p.shares.get_mut(k) else {
                stats.drops.wrong_identifier += 1;
                return;
            };
            if slot.is_some() {
                stats.drops.replayed_share += 1;
                return;
            }
            let Ok(share) = SignatureShare::from_bytes(&s.z) else {
                stats.drops.bad_share_encoding += 1;
                return;
            };
            *slot = Some(share);
            p.have += 1;
            p.reply_to = from;
            if usize::from(p.have) == t
                && let Some(done) = table.remove(&s.session)
            {
                closed.insert(s.session);
                ready.push(done);
            }
        }
        Msg::Signed(_) | Msg::Rejected(_) => stats.drops.unexpected_type += 1,
    }
}

/// How long the coordinator keeps receiving after `stop` is set, to finish the sessions
/// whose datagrams are already queued. After that it stops receiving (so a steady stream
/// of datagrams cannot keep it from stopping), finishes the sessions that are complete
/// and counts the others as expired.
pub const STOP_DRAIN: Duration = Duration::from_millis(500);

/// Whether to keep receiving: not stopping, or stopping for less than [`STOP_DRAIN`].
fn still_receiving(stopping: bool, stop_seen: &mut Option<Instant>) -> bool {
    if !stopping {
        return true;
    }
    stop_seen.get_or_insert_with(Instant::now).elapsed() < STOP_DRAIN
}

/// Opens the journal, calls `ready` (the coordinator now takes traffic), and runs until
/// `stop` is set, then finishes what is in flight (receiving for at most [`STOP_DRAIN`]
/// more).
///
/// # Errors
/// [`CoordError`] when the journal or the network fails.
pub fn run<N: Net>(
    cfg: CoordConfig,
    net: N,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> Result<CoordStats, CoordError> {
    tally_mpc::warm_up();
    let journal = Journal::open(&cfg.journal_dir, journal_options(cfg.stages))?;
    ready();
    if cfg.stages {
        run_staged(cfg, net, journal, stop)
    } else {
        run_to_completion(cfg, net, journal, stop)
    }
}

/// Run-to-completion overlaps each group's write and `fdatasync` with the next batch
/// ([`Journal::start_commit`] submits them to io_uring and returns), which made 7,045-7,319
/// sessions/s against 6,262-6,378 with the journal's default direct commit (blocking
/// `pwrite` + `fdatasync`) in alternating 5 s runs. The staged journal thread blocks on
/// each commit either way, and both paths measured the same there (5,737 vs 5,720), so it
/// keeps the default.
fn journal_options(stages: bool) -> JournalOptions {
    JournalOptions::new()
        .segment_bytes(64 << 20)
        .direct_commit(stages)
}

fn run_to_completion<N: Net>(
    cfg: CoordConfig,
    net: N,
    mut journal: Journal,
    stop: &AtomicBool,
) -> Result<CoordStats, CoordError> {
    let max_batch = cfg.max_batch_sessions;
    let mut f = Front::new(cfg, net)?;
    let start = Instant::now();
    // Outcomes appended to the group being filled, and to the group in flight.
    let mut filling: Vec<(Outcome, u64)> = Vec::with_capacity(4096);
    let mut in_flight: Vec<(Outcome, u64)> = Vec::with_capacity(4096);
    let mut rec = [0u8; 128];
    let mut stop_seen = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let idle = f.ready.is_empty() && filling.is_empty() && in_flight.is_empty();
        let wait = (idle && !stopping).then_some(Duration::from_micros(500));
        let receiving = still_receiving(stopping, &mut stop_seen);
        let got = f.receive_and_verify(wait, max_batch, receiving)?;
        for o in f.outcomes.drain(..) {
            let len = o.record(&mut rec);
            let seq = journal.append(rec.get(..len).unwrap_or(&[]))?;
            f.stats.journal_records += 1;
            filling.push((o, seq));
        }
        // Answer the group in flight once it is durable, then start the next: when there
        // is a next group, when the wire is quiet, or when its commit has finished (so
        // that a steady stream of datagrams that complete no session, such as junk or
        // retransmissions, cannot hold back replies that are already durable).
        let in_flight_done = match in_flight.last() {
            Some(&(_, last)) if filling.is_empty() && got > 0 => journal.poll_commits()? >= last,
            _ => false,
        };
        if !in_flight.is_empty() && (!filling.is_empty() || got == 0 || in_flight_done) {
            let t0 = Instant::now();
            journal.wait_commit()?;
            f.stats.commit_wait_time += t0.elapsed();
            let durable = journal.durable_seq();
            for (o, seq) in in_flight.drain(..) {
                if seq > durable {
                    f.stats.replies_before_durable += 1;
                }
                f.send_reply(&o, seq);
            }
            f.net.flush();
        }
        if in_flight.is_empty() && !filling.is_empty() {
            // With the journal's default direct commit, the write and `fdatasync` happen
            // here, on this thread; count that as time blocked on the journal too.
            let t0 = Instant::now();
            journal.start_commit()?;
            f.stats.commit_wait_time += t0.elapsed();
            f.stats.journal_commits += 1;
            std::mem::swap(&mut in_flight, &mut filling);
        }
        let now = Instant::now();
        f.expire(now);
        if stopping && got == 0 && in_flight.is_empty() && filling.is_empty() && f.ready.is_empty()
        {
            break;
        }
    }
    journal.commit()?;
    f.stats.drops.expired += f.table.len() as u64;
    f.stats.net = f.net.stats();
    f.stats.elapsed = start.elapsed();
    Ok(f.stats)
}

const RING: usize = 4096;

#[allow(
    clippy::too_many_lines,
    reason = "two stages and their hand-off, in one place"
)]
fn run_staged<N: Net>(
    cfg: CoordConfig,
    net: N,
    mut journal: Journal,
    stop: &AtomicBool,
) -> Result<CoordStats, CoordError> {
    let max_batch = cfg.max_batch_sessions;
    let mut f = Front::new(cfg, net)?;
    let mut to_journal: Box<SpscRing<Outcome, RING>> = Box::new(SpscRing::new());
    let mut to_net: Box<SpscRing<(Outcome, u64), RING>> = Box::new(SpscRing::new());
    let (mut jp, mut jc) = to_journal.split();
    let (mut np, mut nc) = to_net.split();
    let front_done = Arc::new(AtomicBool::new(false));
    // The journal's durable sequence number, published by the journal thread after each
    // commit, so that the network thread can check every reply against it.
    let durable_cell = AtomicU64::new(0);
    let durable = &durable_cell;
    let start = Instant::now();
    let (records, commits, wait) =
        std::thread::scope(|s| -> Result<(u64, u64, Duration), CoordError> {
            let done = Arc::clone(&front_done);
            let journal_thread = s.spawn(move || -> Result<(u64, u64, Duration), CoordError> {
                let mut rec = [0u8; 128];
                let (mut records, mut commits, mut wait) = (0u64, 0u64, Duration::ZERO);
                let mut group: Vec<(Outcome, u64)> = Vec::with_capacity(RING);
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let mut err = None;
                    jc.pop_each(RING, |o| {
                        let len = o.record(&mut rec);
                        match journal.append(rec.get(..len).unwrap_or(&[])) {
                            Ok(seq) => group.push((o, seq)),
                            Err(e) => err = Some(e),
                        }
                    });
                    if let Some(e) = err {
                        return Err(e.into());
                    }
                    if group.is_empty() {
                        if finished && jc.is_empty() {
                            return Ok((records, commits, wait));
                        }
                        std::thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    let t0 = Instant::now();
                    journal.commit()?;
                    wait += t0.elapsed();
                    durable.store(journal.durable_seq(), Ordering::Release);
                    commits += 1;
                    records += group.len() as u64;
                    for item in group.drain(..) {
                        let mut item = item;
                        // The reply ring is as large as the request ring: wait for room,
                        // unless the network side has finished. It finishes with replies
                        // outstanding only on an error, and then nobody pops this ring
                        // again: the records are durable, so stop instead of spinning.
                        loop {
                            match np.push(item) {
                                Ok(()) => break,
                                Err(_) if done.load(Ordering::Acquire) => {
                                    return Ok((records, commits, wait));
                                }
                                Err(back) => {
                                    item = back;
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                }
            });
            let mut backlog: Vec<Outcome> = Vec::with_capacity(RING);
            let mut outstanding = 0usize;
            let mut stop_seen = None;
            let result = (|| -> Result<(), CoordError> {
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    let idle = f.ready.is_empty() && backlog.is_empty();
                    let wait = (idle && !stopping && outstanding == 0)
                        .then_some(Duration::from_micros(500))
                        .or((idle && outstanding > 0).then_some(Duration::from_micros(50)));
                    let receiving = still_receiving(stopping, &mut stop_seen);
                    let got = f.receive_and_verify(wait, max_batch, receiving)?;
                    backlog.append(&mut f.outcomes);
                    let mut pushed = 0;
                    for o in &backlog {
                        if jp.push(*o).is_err() {
                            break;
                        }
                        pushed += 1;
                    }
                    backlog.drain(..pushed);
                    outstanding += pushed;
                    let mut replies = 0;
                    while let Some((o, seq)) = nc.pop() {
                        if seq > durable.load(Ordering::Acquire) {
                            f.stats.replies_before_durable += 1;
                        }
                        f.send_reply(&o, seq);
                        replies += 1;
                    }
                    if replies > 0 {
                        f.net.flush();
                        outstanding -= replies;
                    }
                    f.expire(Instant::now());
                    if stopping
                        && got == 0
                        && backlog.is_empty()
                        && f.ready.is_empty()
                        && outstanding == 0
                    {
                        return Ok(());
                    }
                    if journal_thread.is_finished() && outstanding > 0 {
                        return Err(CoordError::Stage("journal thread exited early".into()));
                    }
                }
            })();
            front_done.store(true, Ordering::Release);
            let j = journal_thread
                .join()
                .map_err(|_| CoordError::Stage("journal thread panicked".into()))?;
            // The journal's own error first: when it failed, the network side only saw
            // "journal thread exited early".
            let counts = j?;
            result?;
            Ok(counts)
        })?;
    f.stats.journal_records = records;
    f.stats.journal_commits = commits;
    f.stats.commit_wait_time = wait;
    f.stats.drops.expired += f.table.len() as u64;
    f.stats.net = f.net.stats();
    f.stats.elapsed = start.elapsed();
    Ok(f.stats)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::sync::Mutex;

    use super::*;
    use crate::generator::{PoolEntry, build_pool};
    use crate::signer::Group;

    /// Replies the fake network sent: `(to, payload)`.
    type Sent = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A network that delivers queued datagrams, then (optionally) one junk datagram on
    /// every call until `flood_until`, and records what is sent.
    struct FakeNet {
        queue: VecDeque<Vec<u8>>,
        flood_until: Option<Instant>,
        sent: Sent,
    }

    fn from() -> Addr {
        Addr::Udp(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4242)))
    }

    impl Net for FakeNet {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn recv(
            &mut self,
            max: usize,
            _wait: Option<Duration>,
            f: &mut dyn FnMut(&[u8], Addr),
        ) -> std::io::Result<usize> {
            let mut n = 0;
            while n < max {
                let Some(d) = self.queue.pop_front() else {
                    break;
                };
                f(&d, from());
                n += 1;
            }
            if n == 0 && self.flood_until.is_some_and(|t| Instant::now() < t) {
                f(b"junk", from());
                n = 1;
            }
            Ok(n)
        }
        fn send(&mut self, _to: &Addr, payload: &[u8]) -> bool {
            self.sent.lock().unwrap().push(payload.to_vec());
            true
        }
        fn flush(&mut self) {}
        fn stats(&self) -> NetStats {
            NetStats::default()
        }
    }

    fn config(group: &Group, dir: &std::path::Path, stages: bool) -> CoordConfig {
        let mut vs = vec![None; usize::from(group.n) + 1];
        for s in &group.signers {
            vs[usize::from(s.id)] = Some(s.verifying_share);
        }
        CoordConfig {
            group_id: 1,
            key: group.key,
            verifying_shares: vs,
            threshold: group.t,
            journal_dir: dir.to_path_buf(),
            stages,
            verify: VerifyMode::Signatures,
            max_batch_sessions: 16,
            session_timeout: Duration::from_secs(2),
            table_capacity: 1024,
        }
    }

    /// The `PACKAGE` and good `SHARE` datagrams of one session.
    fn session_datagrams(e: &PoolEntry, session: u64) -> Vec<Vec<u8>> {
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        let n = wire::write_package(&mut buf, session, 1, &e.msg, &e.commitments);
        let mut out = vec![buf[..n].to_vec()];
        for (id, good, _) in &e.shares {
            let n = wire::write_share(&mut buf, session, *id, good);
            out.push(buf[..n].to_vec());
        }
        out
    }

    /// Runs the coordinator (stop already set) over `queue`; returns its stats, the
    /// replies it sent and the journal's record count.
    fn run_fake(
        group: &Group,
        stages: bool,
        queue: Vec<Vec<u8>>,
        flood: Option<Duration>,
    ) -> (CoordStats, Vec<Vec<u8>>, u64) {
        run_fake_verify(group, stages, VerifyMode::Signatures, queue, flood)
    }

    fn run_fake_verify(
        group: &Group,
        stages: bool,
        verify: VerifyMode,
        queue: Vec<Vec<u8>>,
        flood: Option<Duration>,
    ) -> (CoordStats, Vec<Vec<u8>>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let sent = Sent::default();
        let net = FakeNet {
            queue: queue.into(),
            flood_until: flood.map(|d| Instant::now() + d),
            sent: Arc::clone(&sent),
        };
        let stop = AtomicBool::new(true);
        let cfg = CoordConfig {
            verify,
            ..config(group, dir.path(), stages)
        };
        let stats = run(cfg, net, &stop, || {}).unwrap();
        let replay = Journal::replay(dir.path(), |_, _| {}).unwrap();
        let sent = sent.lock().unwrap().clone();
        (stats, sent, replay.records)
    }

    #[test]
    fn a_replayed_session_is_journaled_and_answered_once() {
        let group = Group::deal(2, 3).unwrap();
        let pool = build_pool(&group, 1, 1).unwrap();
        for stages in [false, true] {
            // The whole session, then the same datagrams again after it completed (an
            // attacker replaying what it saw on the wire).
            let mut q = session_datagrams(&pool[0], 7);
            q.extend(session_datagrams(&pool[0], 7));
            let (s, sent, records) = run_fake(&group, stages, q, None);
            assert_eq!(s.sessions_opened, 1, "stages {stages}: {:?}", s.drops);
            assert_eq!((s.sessions_signed, records, sent.len()), (1, 1, 1));
            assert_eq!(s.drops.duplicate_package, 1, "{:?}", s.drops);
            assert_eq!(s.drops.unknown_session, 2, "{:?}", s.drops);
        }
    }

    #[test]
    fn a_package_with_fewer_signers_than_the_threshold_is_dropped() {
        let group = Group::deal(3, 5).unwrap();
        let pool = build_pool(&group, 1, 1).unwrap();
        let mut e = pool[0].clone();
        // Two of the three signers: valid shares can never sum to a signature.
        e.commitments.truncate(2);
        e.shares.truncate(2);
        let (s, sent, records) = run_fake(&group, false, session_datagrams(&e, 9), None);
        assert_eq!(s.drops.bad_package, 1, "{:?}", s.drops);
        assert_eq!((s.sessions_opened, s.sessions_rejected, records), (0, 0, 0));
        assert!(sent.is_empty());
        assert_eq!(s.drops.unknown_session, 2, "{:?}", s.drops);
    }

    #[test]
    fn stop_returns_while_datagrams_keep_arriving() {
        let group = Group::deal(2, 3).unwrap();
        let pool = build_pool(&group, 1, 1).unwrap();
        for stages in [false, true] {
            let t0 = Instant::now();
            // A session in flight when asked to stop is still finished and answered.
            let q = session_datagrams(&pool[0], 3);
            let (s, sent, records) = run_fake(&group, stages, q, Some(Duration::from_secs(4)));
            let took = t0.elapsed();
            assert!(
                took < Duration::from_secs(3),
                "stages {stages}: stop took {took:?} under a steady stream of datagrams"
            );
            assert_eq!((s.sessions_signed, records, sent.len()), (1, 1, 1));
            assert!(s.drops.malformed > 0);
        }
    }

    /// A durable reply goes out while datagrams that complete no session keep arriving:
    /// run-to-completion answered the group in flight only when a next group was filling
    /// or the wire was quiet, so a steady stream of junk held a durable reply back until
    /// the stream stopped (here: past the 2 s deadline, until stop).
    #[test]
    fn a_durable_reply_is_not_held_back_by_a_steady_stream_of_junk() {
        let group = Group::deal(2, 3).unwrap();
        let pool = build_pool(&group, 1, 1).unwrap();
        for stages in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let sent = Sent::default();
            let net = FakeNet {
                queue: session_datagrams(&pool[0], 5).into(),
                flood_until: Some(Instant::now() + Duration::from_secs(30)),
                sent: Arc::clone(&sent),
            };
            let stop = AtomicBool::new(false);
            let cfg = config(&group, dir.path(), stages);
            let (replied, stats) = std::thread::scope(|s| {
                let coordinator = s.spawn(|| run(cfg, net, &stop, || {}).unwrap());
                let deadline = Instant::now() + Duration::from_secs(2);
                while sent.lock().unwrap().is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let replied = !sent.lock().unwrap().is_empty();
                stop.store(true, Ordering::Relaxed);
                (replied, coordinator.join().unwrap())
            });
            assert!(
                replied,
                "stages {stages}: no reply within 2 s while junk kept arriving"
            );
            assert_eq!(stats.sessions_signed, 1);
            assert!(stats.drops.malformed > 0, "the junk was not received");
        }
    }

    #[test]
    fn the_cheater_is_named_and_the_honest_signers_are_not() {
        let group = Group::deal(3, 5).unwrap();
        let pool = build_pool(&group, 1, 1).unwrap();
        let entry = &pool[0];
        let cheater = entry.shares[1].0;
        let mut queue = Vec::new();
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        // Session 1 honest, session 2 with the second signer's share wrong.
        queue.extend(session_datagrams(entry, 1));
        let n = wire::write_package(&mut buf, 2, 1, &entry.msg, &entry.commitments);
        queue.push(buf[..n].to_vec());
        for (k, (id, good, wrong)) in entry.shares.iter().enumerate() {
            let n = wire::write_share(&mut buf, 2, *id, if k == 1 { wrong } else { good });
            queue.push(buf[..n].to_vec());
        }
        for verify in [VerifyMode::Signatures, VerifyMode::Shares] {
            let (s, sent, records) = run_fake_verify(&group, false, verify, queue.clone(), None);
            assert_eq!((s.sessions_signed, s.sessions_rejected, records), (1, 1, 2));
            assert_eq!((s.invalid_shares_detected, s.culprit_mismatches), (1, 0));
            let mut culprits = Vec::new();
            for d in &sent {
                match wire::parse(d).unwrap() {
                    Msg::Signed(x) => assert_eq!((x.session, x.sig), (1, entry.sig)),
                    Msg::Rejected(r) => {
                        assert_eq!(r.session, 2);
                        culprits.extend_from_slice(r.culprits());
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(culprits, [cheater], "{verify:?}");
        }
    }

    #[test]
    fn the_completed_session_memory_is_bounded() {
        let mut c = Closed::default();
        for id in 0..=CLOSED_MEMORY as u64 {
            c.insert(id);
        }
        c.insert(5);
        assert_eq!((c.set.len(), c.order.len()), (CLOSED_MEMORY, CLOSED_MEMORY));
        assert!(!c.contains(0));
        assert!(c.contains(1) && c.contains(CLOSED_MEMORY as u64));
    }
}
