//! Power-loss test: the journal runs on `crashfs` (an in-memory FUSE file system that logs
//! every write, sync and directory operation in order; see `common/crashfs.rs` for the
//! crash model), then for every operation index K of that log, several crash images of the
//! state at K (what a power loss at that moment may leave: synced data and directory
//! entries, plus a random subset of the unsynced writes, torn at sector granularity, a
//! random prefix of each directory's unsynced entry operations, either file size) are
//! written to an ordinary directory and recovered. Every record acknowledged durable at an
//! op count <= K must come back with its exact payload; the recovered records must be a
//! gap-free run from the first unreleased one, each beyond the acknowledged ones exactly
//! what was appended with that sequence number; and the recovered journal must take new
//! records.
//!
//! Seeds: each workload prints its seed; `TALLY_POWER_LOSS_SEED=<n>` overrides all of them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
#![allow(clippy::cast_possible_truncation, reason = "test code")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::crashfs::{CrashKind, Handle, Model, Mount, Op, Rng, WriteFault};
use common::open_journal as open_or_skip;
use tally_uring::journal::format::SegmentHeader;
use tally_uring::{Journal, JournalError, JournalOptions, SharedJournal, SharedOptions};

/// Crash images per crash point: the synced state only, everything (the live tree, what
/// a process kill leaves) and this many random ones.
const RANDOM_IMAGES: usize = 14;
/// Commit rounds per workload.
const ROUNDS: u32 = 160;
/// Torn crash images per workload that are recovered again on the crash file system, with
/// a power loss at every step of that recovery and of the rounds after it.
const SEEDS: usize = 6;
/// Commit rounds after each of those recoveries.
const SEED_ROUNDS: u32 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `commit` with `pwrite` + `fdatasync` (the default).
    Direct,
    /// `direct_commit(false)`: a linked io_uring write + fdatasync, sometimes split into
    /// `start_commit` / `wait_commit` with appends in between.
    Uring,
    /// `commits_in_flight(4)`: `start_commit` + `poll_commits` / `wait_durable`.
    Pipelined,
    /// A `SharedJournal`: three threads calling `append_durable`; between phases it is
    /// closed, `release_through` runs on the journal, and it is started again.
    Shared,
}

fn options(mode: Mode) -> JournalOptions {
    // Small segments and buffers: several rotations, recycled segments and groups larger
    // than a buffer (written out before their commit).
    let base = JournalOptions::new()
        .segment_bytes(64 << 10)
        .group_buffer_bytes(16 << 10)
        .max_record_bytes(2048)
        .max_free_segments(1);
    match mode {
        Mode::Direct | Mode::Shared => base,
        Mode::Uring => base.direct_commit(false).prewrite(false).spare_segments(1),
        Mode::Pipelined => base.commits_in_flight(4),
    }
}

/// The workload's seed: `TALLY_POWER_LOSS_SEED` (decimal or `0x` hex) when set and not
/// empty, else `default`.
fn seed_for(default: u64) -> u64 {
    let Ok(s) = std::env::var("TALLY_POWER_LOSS_SEED") else {
        return default;
    };
    let s = s.trim();
    if s.is_empty() {
        return default;
    }
    s.strip_prefix("0x")
        .map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16))
        .unwrap_or_else(|e| panic!("TALLY_POWER_LOSS_SEED={s:?} is not a u64: {e}"))
}

/// The payload appended with sequence number `seq`: 0-8 bytes (30 %), 9-408 (40 %) or
/// 513-2048 (30 %, more than a sector), random bytes.
fn payload(seed: u64, seq: u64) -> Vec<u8> {
    let mut r = Rng::new(seed ^ seq.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let len = match r.below(10) {
        0..=2 => r.below(9),
        3..=6 => 9 + r.below(400),
        _ => 513 + r.below(1536),
    };
    (0..len).map(|_| r.next_u64() as u8).collect()
}

struct Release {
    /// Op count before the call (its renames come after).
    start: usize,
    /// Op count after it returned.
    end: usize,
    /// The sequence number released through.
    arg: u64,
    /// First sequence number of the oldest live segment when it returned.
    live_first: u64,
}

#[derive(Default)]
struct Trace {
    /// `payloads[seq - 1]`.
    payloads: Vec<Vec<u8>>,
    /// (op count after the call returned, durable sequence number it reported).
    acks: Vec<(usize, u64)>,
    releases: Vec<Release>,
    /// Groups larger than a buffer, written out before their commit (journal statistics).
    write_outs: u64,
}

/// First sequence number of the oldest live segment in the daemon's live tree.
fn live_first(h: &Handle) -> u64 {
    h.heads("j", 64)
        .into_iter()
        .filter(|(n, _)| n.starts_with("seg-"))
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, head)| SegmentHeader::decode(&head).unwrap().first_seq)
        .unwrap()
}

/// Mounts a fresh crash file system on `dir/mnt` (holding a durable copy of `seed`, if
/// given), or prints why it cannot (off CI).
fn mount_or_skip(dir: &Path, seed: Option<&Path>) -> Option<Mount> {
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    match Mount::new(&mnt, seed) {
        Ok(m) => Some(m),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: cannot mount the FUSE crash file system: {e}");
            None
        }
        Err(e) => panic!("mounting the FUSE crash file system failed (on CI it must work): {e}"),
    }
}

fn append(j: &mut Journal, t: &mut Trace, seed: u64, n: u64) {
    for _ in 0..n {
        let seq = j.next_seq();
        let p = payload(seed, seq);
        assert_eq!(j.append(&p).unwrap(), seq);
        assert_eq!(
            t.payloads.len() as u64,
            seq - 1,
            "sequence numbers are contiguous"
        );
        t.payloads.push(p);
    }
}

/// Runs `rounds` rounds of the workload on the mounted file system (on top of `t`, what
/// the journal there already holds) and returns what was acknowledged when. `None` when
/// the journal cannot run here (io_uring refused, off CI).
fn workload(
    mode: Mode,
    seed: u64,
    mnt: &Path,
    h: &Handle,
    rounds: u32,
    mut t: Trace,
) -> Option<Trace> {
    if mode == Mode::Shared {
        return shared_workload(seed, mnt, h, rounds.div_ceil(16), t);
    }
    let dir = mnt.join("j");
    let opts = options(mode);
    let mut rng = Rng::new(seed);
    let mut j = open_or_skip(&dir, opts)?;
    let ack = |t: &mut Trace, j: &Journal| {
        let d = j.durable_seq();
        if let Some(&(_, prev)) = t.acks.last() {
            assert!(d >= prev, "the durable sequence number went back");
        }
        t.acks.push((h.ops(), d));
    };
    for round in 0..rounds {
        // Mostly small groups; now and then one larger than a group buffer.
        let n = if rng.percent(10) {
            24 + rng.below(24)
        } else {
            1 + rng.below(8)
        };
        append(&mut j, &mut t, seed, n);
        match mode {
            Mode::Direct | Mode::Shared => {
                j.commit().unwrap();
                ack(&mut t, &j);
            }
            Mode::Uring => {
                if rng.percent(50) {
                    j.commit().unwrap();
                    ack(&mut t, &j);
                } else {
                    // The next group fills while this one's write + fdatasync run.
                    j.start_commit().unwrap();
                    ack(&mut t, &j);
                    append(&mut j, &mut t, seed, 1 + rng.below(4));
                    if rng.percent(50) {
                        // Finishes the commit if its fdatasync has completed.
                        j.poll_commits().unwrap();
                        ack(&mut t, &j);
                    }
                    j.wait_commit().unwrap();
                    ack(&mut t, &j);
                }
            }
            Mode::Pipelined => {
                let last = j.start_commit().unwrap();
                ack(&mut t, &j);
                match rng.below(3) {
                    0 => {
                        j.wait_durable(last).unwrap();
                        ack(&mut t, &j);
                    }
                    1 => {
                        j.poll_commits().unwrap();
                        ack(&mut t, &j);
                    }
                    _ => {}
                }
            }
        }
        if round % 8 == 7 && rng.percent(60) {
            let arg = j.durable_seq().saturating_sub(rng.below(150));
            let start = h.ops();
            j.release_through(arg).unwrap();
            t.releases.push(Release {
                start,
                end: h.ops(),
                arg,
                live_first: live_first(h),
            });
        }
        if round == rounds / 2 {
            // A clean close and a reopen on the live file system: the open's own writes
            // and syncs are crash-tested too.
            j.wait_durable(j.next_seq() - 1).unwrap();
            ack(&mut t, &j);
            t.write_outs += j.stats().snapshot().write_outs;
            drop(j);
            j = Journal::open(&dir, opts).unwrap();
        }
    }
    // A last group whose commit is started and never acknowledged (the drop waits for
    // whatever is in flight), and records appended after it that are never written.
    append(&mut j, &mut t, seed, 3);
    j.start_commit().unwrap();
    append(&mut j, &mut t, seed, 2);
    t.write_outs += j.stats().snapshot().write_outs;
    drop(j);
    Some(t)
}

/// The [`Mode::Shared`] workload: `phases` phases of three writer threads, each calling
/// `append_durable` 24 times; the journal is closed between phases and, after every
/// second one, `release_through` runs on it. A record's payload is chosen before its
/// sequence number is known, so the payloads are collected by sequence number as the
/// appends return.
fn shared_workload(
    seed: u64,
    mnt: &Path,
    daemon: &Handle,
    phases: u32,
    mut trace: Trace,
) -> Option<Trace> {
    const WRITERS: u64 = 3;
    const PER_WRITER: u64 = 24;
    let dir = mnt.join("j");
    let opts = options(Mode::Shared);
    let mut rng = Rng::new(seed);
    let mut journal = open_or_skip(&dir, opts)?;
    let mut got: std::collections::BTreeMap<u64, Vec<u8>> = std::collections::BTreeMap::new();
    let base_seq = trace.payloads.len() as u64;
    for phase in 0..u64::from(phases) {
        let shared = SharedJournal::start(journal, SharedOptions::new().keep_awake(false)).unwrap();
        let results = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for writer in 0..WRITERS {
                let handle = shared.handle();
                let results = &results;
                scope.spawn(move || {
                    for i in 0..PER_WRITER {
                        let bytes = payload(seed ^ (phase << 40 | writer << 32 | 0xABC), i);
                        let seq = handle.append_durable(&bytes).unwrap();
                        // The durable sequence number first, then the op count: every
                        // sync that made it durable is in the log by then.
                        let durable = handle.durable_seq();
                        assert!(durable >= seq);
                        results
                            .lock()
                            .unwrap()
                            .push((seq, bytes, daemon.ops(), durable));
                    }
                });
            }
        });
        for (seq, bytes, ops, durable) in results.into_inner().unwrap() {
            assert!(
                got.insert(seq, bytes).is_none(),
                "sequence number {seq} handed out twice"
            );
            trace.acks.push((ops, durable));
        }
        journal = shared.close().unwrap();
        if phase % 2 == 0 {
            continue;
        }
        let arg = journal.durable_seq().saturating_sub(rng.below(100));
        let start = daemon.ops();
        journal.release_through(arg).unwrap();
        trace.releases.push(Release {
            start,
            end: daemon.ops(),
            arg,
            live_first: live_first(daemon),
        });
    }
    trace.write_outs += journal.stats().snapshot().write_outs;
    drop(journal);
    for (i, (seq, bytes)) in got.into_iter().enumerate() {
        assert_eq!(
            seq,
            base_seq + 1 + i as u64,
            "sequence numbers are contiguous"
        );
        trace.payloads.push(bytes);
    }
    Some(trace)
}

/// What recovery at crash point K must deliver.
#[derive(Debug)]
struct Expect {
    /// Every record up to this one was acknowledged durable at an op count <= K.
    acked: u64,
    /// A `release_through` up to this sequence number had started by K: records up to it
    /// may be gone.
    released: u64,
    /// A `release_through` that returned by K left the oldest segment starting here: no
    /// earlier record may come back.
    floor: u64,
}

impl Expect {
    fn at(t: &Trace, k: usize) -> Self {
        Self {
            acked: t
                .acks
                .iter()
                .filter(|(c, _)| *c <= k)
                .map(|a| a.1)
                .max()
                .unwrap_or(0),
            released: t
                .releases
                .iter()
                .filter(|r| r.start < k)
                .map(|r| r.arg)
                .max()
                .unwrap_or(0),
            floor: t
                .releases
                .iter()
                .filter(|r| r.end <= k)
                .map(|r| r.live_first)
                .max()
                .unwrap_or(1),
        }
    }
}

/// Recovered records: (sequence number, payload).
type Records = Vec<(u64, Vec<u8>)>;

/// Every record `replay` delivers, and whether it reported a torn tail.
fn replay_all(dir: &Path) -> Result<(Records, bool), String> {
    let mut got = Vec::new();
    let report = Journal::replay(dir, |s, p| got.push((s, p.to_vec())))
        .map_err(|e| format!("replay failed: {e}"))?;
    Ok((got, report.torn_tail.is_some()))
}

/// What one recovered crash image held.
struct Outcome {
    records: u64,
    /// Recovery cut a torn tail.
    torn: bool,
    /// Records beyond the acknowledged ones came back.
    beyond_acked: bool,
    /// The image, copied before recovery (see `check_image`'s `keep`).
    kept: Option<Seeded>,
}

/// A torn crash image kept to be recovered on the crash file system.
struct Seeded {
    /// Holds the journal directory `j`.
    root: PathBuf,
    /// First and last record it holds.
    first: u64,
    last: u64,
}

/// Counts over every crash image of a workload.
#[derive(Default)]
struct Totals {
    points: usize,
    images: usize,
    records: u64,
    torn: usize,
    beyond_acked: usize,
}

/// Recovers one crash image and checks it. With `keep`, an image with a torn tail and
/// records is first copied there (to be recovered again on the crash file system).
fn check_image(
    dir: &Path,
    opts: JournalOptions,
    t: &Trace,
    exp: &Expect,
    keep: Option<&Path>,
) -> Result<Outcome, String> {
    let mut got = Vec::new();
    let mut kept = None;
    if dir.exists() {
        let (records, torn) = replay_all(dir)?;
        got = records;
        if let (Some(to), true, Some(first), Some(last)) = (keep, torn, got.first(), got.last()) {
            let j = to.join("j");
            std::fs::create_dir_all(&j).unwrap();
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), j.join(e.file_name())).unwrap();
            }
            kept = Some(Seeded {
                root: to.to_path_buf(),
                first: first.0,
                last: last.0,
            });
        }
    } else if exp.acked > exp.released {
        return Err("the journal directory is gone although records were acknowledged".into());
    }
    let last = check_records(&got, t, exp)?;
    let (records, torn) = recover_and_extend(dir, opts, t, got)?;
    Ok(Outcome {
        records,
        torn,
        beyond_acked: last > exp.acked,
        kept,
    })
}

/// Checks what replay delivered against what was appended and acknowledged; returns the
/// last sequence number delivered (0 if none).
fn check_records(got: &Records, t: &Trace, exp: &Expect) -> Result<u64, String> {
    for (i, (seq, p)) in got.iter().enumerate() {
        if *seq != got[0].0 + i as u64 {
            return Err(format!(
                "recovered sequence numbers have a gap: {} follows {}",
                seq,
                got[i - 1].0
            ));
        }
        match t.payloads.get(*seq as usize - 1) {
            Some(want) if want == p => {}
            Some(want) => {
                return Err(format!(
                    "record {seq} came back with {} bytes that are not the {} bytes appended with it",
                    p.len(),
                    want.len()
                ));
            }
            None => return Err(format!("record {seq} was never appended")),
        }
    }
    let (first, last) = match (got.first(), got.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => (0, 0),
    };
    if exp.acked > exp.released && (got.is_empty() || first > exp.released + 1 || last < exp.acked)
    {
        return Err(format!(
            "acknowledged records {}..={} are not all recovered (recovered {first}..={last}, {} records)",
            exp.released + 1,
            exp.acked,
            got.len()
        ));
    }
    if !got.is_empty() && first < exp.floor {
        return Err(format!(
            "record {first} came back although its segment's release was acknowledged (oldest live segment then started at {})",
            exp.floor
        ));
    }
    Ok(last)
}

/// Recovery proper (`open_with_report`), which must agree with what replay delivered
/// (`got`); then the recovered journal must take three new records, and replay must
/// deliver exactly `got` and them. Returns (records recovered, torn tail cut).
fn recover_and_extend(
    dir: &Path,
    opts: JournalOptions,
    t: &Trace,
    got: Records,
) -> Result<(u64, bool), String> {
    let last = got.last().map_or(0, |r| r.0);
    let (mut j, report) =
        Journal::open_with_report(dir, opts).map_err(|e| format!("open failed: {e}"))?;
    if report.records != got.len() as u64 || (!got.is_empty() && report.last_seq != last) {
        return Err(format!(
            "open recovered {} records through {}, replay delivered {} through {last}",
            report.records,
            report.last_seq,
            got.len()
        ));
    }
    let next = j.next_seq();
    if !got.is_empty() && next != last + 1 {
        return Err(format!(
            "after recovering through {last} the next record gets {next}"
        ));
    }
    // The payloads first appended with these sequence numbers, where there were any (a
    // client retrying what it never saw acknowledged): same sizes, so the new frames land
    // exactly where the lost ones were, and a leftover of the torn group that recovery
    // failed to wipe would line up and be replayed as a record after them.
    let fresh: Vec<Vec<u8>> = (0..3u64)
        .map(|i| {
            t.payloads
                .get((next - 1 + i) as usize)
                .cloned()
                .unwrap_or_else(|| format!("after the crash {i}").into_bytes())
        })
        .collect();
    for p in &fresh {
        j.append(p)
            .map_err(|e| format!("append after recovery failed: {e}"))?;
    }
    j.commit()
        .map_err(|e| format!("commit after recovery failed: {e}"))?;
    drop(j);
    let (again, _) = replay_all(dir).map_err(|e| format!("after recovery and 3 appends: {e}"))?;
    let want: Records = got
        .into_iter()
        .chain(
            fresh
                .into_iter()
                .enumerate()
                .map(|(i, p)| (next + i as u64, p)),
        )
        .collect();
    if again != want {
        return Err(format!(
            "after recovery and 3 appends, replay delivered {} records ({:?}..{:?}), expected {} ({:?}..{:?})",
            again.len(),
            again.first().map(|r| r.0),
            again.last().map(|r| r.0),
            want.len(),
            want.first().map(|r| r.0),
            want.last().map(|r| r.0),
        ));
    }
    Ok((report.records, report.torn_tail.is_some()))
}

fn describe(op: &Op) -> String {
    match op {
        Op::Write { ino, off, data } => {
            format!("write ino {ino} [{off}, {})", off + data.len() as u64)
        }
        other => format!("{other:?}"),
    }
}

/// Where crash images are written: tmpfs when there is one (fast, and its fsync is free).
fn scratch_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("tally-power-loss-")
            .tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

/// Checks every crash point of `log` from op `from` on. With `keep`, up to [`SEEDS`] torn
/// images spread over the log are kept there.
fn check_all(
    mode: Mode,
    seed: u64,
    log: &[Op],
    t: &Trace,
    from: usize,
    keep: Option<&Path>,
) -> (Totals, Vec<Seeded>) {
    let opts = options(mode);
    let mut model = Model::new();
    let mut rng = Rng::new(seed ^ 0x5EED_C4A5_4000_0000);
    let scratch = scratch_root();
    let mut totals = Totals {
        points: log.len() + 1 - from,
        ..Totals::default()
    };
    let mut seeds = Vec::new();
    let mut next_keep = 0;
    for k in 0..=log.len() {
        if k > 0 {
            model.apply(&log[k - 1]);
        }
        if k < from {
            continue;
        }
        let exp = Expect::at(t, k);
        for img in 0..2 + RANDOM_IMAGES {
            let kind = match img {
                0 => CrashKind::DurableOnly,
                1 => CrashKind::Everything,
                _ => CrashKind::Random,
            };
            let root: PathBuf = scratch.path().join(format!("k{k}-{img}"));
            std::fs::create_dir(&root).unwrap();
            model.materialise(kind, &mut rng, &root);
            let keep_to = keep
                .filter(|_| seeds.len() < SEEDS && k >= next_keep)
                .map(|d| d.join(format!("k{k}-{img}")));
            match check_image(&root.join("j"), opts, t, &exp, keep_to.as_deref()) {
                Ok(o) => {
                    if let Some(s) = o.kept {
                        seeds.push(s);
                        next_keep = k + log.len() / SEEDS;
                    }
                    totals.records += o.records;
                    totals.torn += usize::from(o.torn);
                    totals.beyond_acked += usize::from(o.beyond_acked);
                }
                Err(msg) => {
                    let kept = scratch.keep();
                    let from = k.saturating_sub(12);
                    let recent: Vec<String> = log[from..k]
                        .iter()
                        .enumerate()
                        .map(|(i, op)| format!("  op {}: {}", from + i + 1, describe(op)))
                        .collect();
                    panic!(
                        "{mode:?} workload, seed {seed} (TALLY_POWER_LOSS_SEED={seed}): crash after op {k} of {}, image {img} ({kind:?}): {msg}\nexpected: {exp:?}\nimage kept in {}\nlast ops:\n{}",
                        log.len(),
                        kept.join(format!("k{k}-{img}")).display(),
                        recent.join("\n")
                    );
                }
            }
            std::fs::remove_dir_all(&root).unwrap();
            totals.images += 1;
        }
    }
    (totals, seeds)
}

/// Recovers the torn image `seeded` on a crash file system holding it as durable state
/// and runs [`SEED_ROUNDS`] more rounds; checks every crash point from the recovery's
/// first operation on. The records the image held count as acknowledged from the start.
fn after_recovery(mode: Mode, seed: u64, seeded: &Seeded, t: &Trace) -> Totals {
    let base = tempfile::tempdir().unwrap();
    let mount = Mount::new(
        &{
            let m = base.path().join("mnt");
            std::fs::create_dir(&m).unwrap();
            m
        },
        Some(&seeded.root),
    )
    .unwrap();
    let h = mount.handle();
    let from = h.ops();
    let held = Trace {
        payloads: t.payloads[..seeded.last as usize].to_vec(),
        write_outs: 0,
        acks: vec![(from, seeded.last)],
        releases: vec![Release {
            start: 0,
            end: from,
            arg: seeded.first - 1,
            live_first: seeded.first,
        }],
    };
    // Another payload seed: a record of the torn group that came back after the new
    // records were written would not match.
    let seed = seed ^ 0x0A17_E4C4_A500_0000;
    let t = workload(mode, seed, mount.path(), &h, SEED_ROUNDS, held).unwrap();
    let log = h.log();
    drop(mount);
    check_all(mode, seed, &log, &t, from, None).0
}

fn power_loss(mode: Mode, default_seed: u64) {
    let seed = seed_for(default_seed);
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_or_skip(base.path(), None) else {
        return;
    };
    let h = mount.handle();
    let started = Instant::now();
    let Some(trace) = workload(mode, seed, mount.path(), &h, ROUNDS, Trace::default()) else {
        return;
    };
    let log = h.log();
    drop(mount);
    let ran = started.elapsed();
    let syncs = log.iter().filter(|o| o.is_sync()).count();
    let started = Instant::now();
    let keep = base.path().join("torn");
    let (totals, seeds) = check_all(mode, seed, &log, &trace, 0, Some(&keep));
    let acked = trace.acks.last().map_or(0, |a| a.1);
    let count = |f: fn(&Op) -> bool| log.iter().filter(|o| f(o)).count();
    let renames = count(|o| matches!(o, Op::Rename { .. }));
    let creates = count(|o| matches!(o, Op::Create { .. }));
    let deletes = count(|o| matches!(o, Op::Unlink { .. }));
    let reused = count(
        |o| matches!(o, Op::Rename { name, .. } if name.to_string_lossy().starts_with("free-")),
    );
    eprintln!(
        "{mode:?} (seed {seed}, override with TALLY_POWER_LOSS_SEED): {} records appended, {acked} acknowledged, {} releases; {} logged ops ({} writes, {syncs} syncs, {creates} creates, {renames} renames of which {reused} reuse a released segment, {deletes} deletes; {} groups written out before their commit) in {ran:.1?}; {} crash points x {} images = {} crash images recovered and checked ({} with a torn tail cut, {} with unacknowledged records recovered; {} records recovered) in {:.1?}",
        trace.payloads.len(),
        trace.releases.len(),
        log.len(),
        count(|o| matches!(o, Op::Write { .. })),
        trace.write_outs,
        totals.points,
        2 + RANDOM_IMAGES,
        totals.images,
        totals.torn,
        totals.beyond_acked,
        totals.records,
        started.elapsed()
    );
    // The workload must have reached what it is meant to test.
    assert!(acked > 0 && syncs > 0, "nothing was acknowledged");
    assert!(renames >= 4, "too few segment renames: {renames}");
    // (The shared workload's releases follow its threads' timing: one of each suffices.)
    let single = usize::from(mode != Mode::Shared);
    assert!(
        reused > single,
        "too few released segments reused: {reused}"
    );
    assert!(deletes + 1 > single, "no released segment was deleted");
    assert!(
        trace.write_outs + 1 > single as u64,
        "no group was larger than a buffer"
    );
    assert!(totals.torn > 0, "no crash image had a torn tail");
    assert!(
        totals.beyond_acked > 0,
        "no crash image kept unacknowledged records"
    );
    assert!(
        seeds.len() >= SEEDS / 2,
        "too few torn images kept: {}",
        seeds.len()
    );

    // A power loss during (and after) the recovery of a torn image.
    let started = Instant::now();
    let mut again = Totals::default();
    for s in &seeds {
        let t = after_recovery(mode, seed, s, &trace);
        again.points += t.points;
        again.images += t.images;
        again.torn += t.torn;
        again.records += t.records;
    }
    eprintln!(
        "{mode:?}: {} torn images recovered again on the crash file system, {} more rounds each: {} crash points, {} crash images checked ({} with a torn tail cut) in {:.1?}",
        seeds.len(),
        SEED_ROUNDS,
        again.points,
        again.images,
        again.torn,
        started.elapsed()
    );
}

#[test]
fn power_loss_direct_commits() {
    power_loss(Mode::Direct, 0x7A11_0001);
}

#[test]
fn power_loss_io_uring_commits() {
    power_loss(Mode::Uring, 0x7A11_0002);
}

#[test]
fn power_loss_pipelined_commits() {
    power_loss(Mode::Pipelined, 0x7A11_0003);
}

#[test]
fn power_loss_shared_journal() {
    power_loss(Mode::Shared, 0x7A11_0004);
}

/// Opens a journal at `dir` (`None`: io_uring refused, the test skips), commits one
/// record, then appends 39 more of 1,000 bytes without a commit: more than one 16 KiB
/// group buffer, so the first part is written out but not synced. Then drops it without
/// a commit, as a killed writer leaves it: the written-out records stay in the page cache.
fn kill_a_writer_after_write_outs(dir: &Path) -> Option<()> {
    let mut j = open_or_skip(dir, options(Mode::Direct))?;
    j.append(b"committed").unwrap();
    j.commit().unwrap();
    for seq in 2..=40u64 {
        j.append(&[seq as u8; 1000]).unwrap();
    }
    assert!(j.stats().write_outs() > 0, "nothing was written out");
    drop(j);
    Some(())
}

/// The last sequence number a power loss right now would keep: the operations the file
/// system under `mount` has seen so far, with only what was synced kept.
fn last_seq_after_a_power_loss(mount: &Mount) -> u64 {
    let handle = mount.handle();
    let op_count = handle.ops();
    let log = handle.log();
    let mut model = Model::new();
    for op in log.iter().take(op_count) {
        model.apply(op);
    }
    let image = tempfile::tempdir().unwrap();
    model.materialise(CrashKind::DurableOnly, &mut Rng::new(1), image.path());
    let (got, _) = replay_all(&image.path().join("j")).unwrap();
    got.last().map_or(0, |r| r.0)
}

/// Records a killed writer wrote out (a group larger than a buffer) but never synced are
/// recovered by the next `open` from the page cache, and `durable_seq` then covers them:
/// they must be on disk by the time `open` returns, or a power loss right after takes
/// records the reopened journal reported durable.
#[test]
fn records_reported_durable_by_open_survive_a_power_loss() {
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_or_skip(base.path(), None) else {
        return;
    };
    let dir = mount.path().join("j");
    if kill_a_writer_after_write_outs(&dir).is_none() {
        return;
    }
    let j = Journal::open(&dir, options(Mode::Direct)).unwrap();
    let durable = j.durable_seq();
    assert!(durable > 1, "open recovered no written-out record");
    let last = last_seq_after_a_power_loss(&mount);
    assert!(
        last >= durable,
        "open reported records up to {durable} durable, a power loss right after it kept {last}"
    );
    drop(j);
}

/// `replay` delivers only durable records: records a killed writer wrote out (a group
/// larger than a buffer) but never synced are in the page cache, and `replay` used to
/// deliver them as they were, so a power loss right after it took records a reader had
/// already acted on (and a later writer would reuse their sequence numbers for other
/// payloads). It syncs each segment before delivering the records read from it.
#[test]
fn records_delivered_by_replay_survive_a_power_loss() {
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_or_skip(base.path(), None) else {
        return;
    };
    let dir = mount.path().join("j");
    if kill_a_writer_after_write_outs(&dir).is_none() {
        return;
    }
    let (delivered, _) = replay_all(&dir).unwrap();
    let last_delivered = delivered.last().map_or(0, |r| r.0);
    assert!(last_delivered > 1, "replay delivered no written-out record");
    let last = last_seq_after_a_power_loss(&mount);
    assert!(
        last >= last_delivered,
        "replay delivered records up to {last_delivered}, a power loss right after it kept {last}"
    );
}

/// A crash file system mounted under `base` holding a new journal (in its `j`) opened
/// with `opts`; `None` when the test skips.
fn journal_on_fuse(base: &Path, opts: JournalOptions) -> Option<(Mount, PathBuf, Journal)> {
    let mount = mount_or_skip(base, None)?;
    let dir = mount.path().join("j");
    let j = open_or_skip(&dir, opts)?;
    Some((mount, dir, j))
}

/// Appends the next record of `want` (sequence number `want.len() + 1`): `len` bytes
/// cycling through [`payload`]`(seed, seq)`.
fn append_cycled(j: &mut Journal, want: &mut Records, seed: u64, len: usize) {
    let seq = want.len() as u64 + 1;
    let p: Vec<u8> = payload(seed, seq).into_iter().cycle().take(len).collect();
    assert_eq!(j.append(&p).unwrap(), seq);
    want.push((seq, p));
}

/// The options of the release tests: no prewrite, up to four free segments.
fn release_options() -> JournalOptions {
    options(Mode::Direct).prewrite(false).max_free_segments(4)
}

/// A crash file system mounted under `base` holding a journal (in its `j`) with
/// [`release_options`] that has created four segments; `None` when the test skips.
fn four_segments_on_fuse(base: &Path) -> Option<(Mount, PathBuf, Journal)> {
    let (mount, dir, mut j) = journal_on_fuse(base, release_options())?;
    while j.stats().segments_created() < 4 {
        j.append(&[1u8; 1000]).unwrap();
        j.commit().unwrap();
    }
    Some((mount, dir, j))
}

/// For every crash point of `log` from op `start` on: the crash images replay, hold the
/// records up to `acked` (durable before op `start`) and none past `last`, and open with
/// [`release_options`].
fn recovers_at_every_crash_point(log: &[Op], start: usize, seed: u64, acked: u64, last: u64) {
    for_each_crash_point(log, start, seed, |k, kind, jdir| {
        let (got, _) =
            replay_all(jdir).unwrap_or_else(|e| panic!("crash after op {k} ({kind:?}): {e}"));
        let end = got.last().map_or(0, |r| r.0);
        assert!(
            (acked..=last).contains(&end),
            "op {k} ({kind:?}): records end at {end}, not in {acked}..={last}"
        );
        Journal::open(jdir, release_options())
            .unwrap_or_else(|e| panic!("crash after op {k} ({kind:?}): open: {e}"));
    });
}

/// A `release_through` whose second rename fails (a directory is in the way of its free
/// name) still syncs the directory for the rename it did. It returned at once: the first
/// released segment was on the free list under a rename that was not durable, the next
/// rotation wrote a new header into it (synced), and a power loss before the rotation's
/// own directory sync brought back `seg-0` holding segment N's header: the journal no
/// longer opened (`Corrupt`, the header does not match the file name).
#[test]
fn a_release_that_fails_part_way_keeps_the_journal_recoverable() {
    let base = tempfile::tempdir().unwrap();
    let Some((mount, dir, mut j)) = four_segments_on_fuse(base.path()) else {
        return;
    };
    // A non-empty directory where segment 1's free name goes: its rename fails.
    std::fs::create_dir_all(dir.join("free-0000000000000001.tjl").join("x")).unwrap();
    let handle = mount.handle();
    let start = handle.ops();
    let acked = j.durable_seq();
    let released = j.release_through(acked);
    assert!(released.is_err(), "the release did not fail: {released:?}");
    // The next rotation recycles segment 0, the one segment that was released.
    while j.stats().segments_recycled() == 0 {
        j.append(&[2u8; 1000]).unwrap();
        j.commit().unwrap();
    }
    let last = j.durable_seq();
    drop(j);
    let log = handle.log();
    drop(mount);
    recovers_at_every_crash_point(&log, start, 9, acked, last);
}

/// A release whose directory sync fails keeps the journal recoverable. Its renames of
/// released segments to free names may then not be durable, so the segments must not be
/// recycled: a rotation writing a new header into one, then a power loss before the
/// rotation's own directory sync, brought back `seg-N` holding another segment's header
/// (`Corrupt`: the journal no longer opened). The released segments are recycled again
/// after the journal is reopened.
#[test]
fn a_release_whose_directory_sync_fails_keeps_the_journal_recoverable() {
    let base = tempfile::tempdir().unwrap();
    let Some((mount, dir, mut j)) = four_segments_on_fuse(base.path()) else {
        return;
    };
    let handle = mount.handle();
    let start = handle.ops();
    let acked = j.durable_seq();
    handle.inject_fsyncdir_faults(&[libc::EIO]);
    let released = j.release_through(acked);
    let err = released.expect_err("the release did not fail");
    assert!(
        err.to_string().contains("fsync the journal directory"),
        "{err}"
    );
    // Three more rotations: none may reuse a segment of the failed release.
    let created = j.stats().segments_created();
    while j.stats().segments_created() < created + 3 {
        j.append(&[2u8; 1000]).unwrap();
        j.commit().unwrap();
    }
    assert_eq!(
        j.stats().segments_recycled(),
        0,
        "a segment whose release was not synced was recycled"
    );
    let last = j.durable_seq();
    drop(j);
    // Reopened, the journal finds the released segments under their free names and
    // recycles them.
    let mut j = Journal::open(&dir, release_options()).unwrap();
    let created = j.stats().segments_created();
    while j.stats().segments_recycled() == 0 {
        j.append(&[3u8; 1000]).unwrap();
        j.commit().unwrap();
    }
    assert_eq!(
        j.stats().segments_created(),
        created,
        "a segment was created, not recycled"
    );
    let last = last.max(j.durable_seq());
    drop(j);
    let log = handle.log();
    drop(mount);
    recovers_at_every_crash_point(&log, start, 11, acked, last);
}

/// A rotation whose directory sync fails, then a commit: the group that was to move to
/// the new segment is written to the old one, and the new segment, whose header claimed
/// that group's first record, must not stay behind: a clean close then reopened with a
/// "torn tail" (the leftover segment numbered before the end of the log). Every crash
/// point recovers.
#[test]
fn a_rotation_whose_directory_sync_fails_leaves_no_stray_segment() {
    let base = tempfile::tempdir().unwrap();
    let Some((mount, dir, mut j)) = journal_on_fuse(base.path(), release_options()) else {
        return;
    };
    let handle = mount.handle();
    let start = handle.ops();
    handle.inject_fsyncdir_faults(&[libc::EIO]);
    let mut appended = 0u32;
    let err = loop {
        if appended.is_multiple_of(7) {
            j.commit().unwrap();
        }
        match j.append(&[appended as u8; 1000]) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 1000, "no rotation");
    };
    assert!(
        err.to_string().contains("fsync the journal directory"),
        "{err}"
    );
    assert_eq!(
        j.stats().segments_created(),
        1,
        "the failed rotation counted"
    );
    assert_eq!(j.commit().unwrap(), u64::from(appended));
    drop(j);
    let (mut j, report) = Journal::open_with_report(&dir, release_options()).unwrap();
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert_eq!(report.last_seq, u64::from(appended));
    // The journal goes on: the next append rotates.
    j.append(&[1u8; 1000]).unwrap();
    let last = j.commit().unwrap();
    assert_eq!(j.stats().segments_created(), 1);
    drop(j);
    let log = handle.log();
    drop(mount);
    recovers_at_every_crash_point(&log, start, 13, 0, last);
}

/// On a file system without `fallocate` (it answers `EOPNOTSUPP`) the journal opens,
/// rotates and recovers: segments are pre-written with zeros instead (it used to fail
/// `open` with "preallocate a segment (fallocate)"), also with `prewrite(false)`.
#[test]
fn a_file_system_without_fallocate_gets_pre_written_segments() {
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_or_skip(base.path(), None) else {
        return;
    };
    let handle = mount.handle();
    handle.refuse_fallocate();
    let dir = mount.path().join("j");
    let mut want: Records = Vec::new();
    let Some(mut j) = open_or_skip(&dir, release_options()) else {
        return;
    };
    // Crash points from the first append on (the journal directory exists from here).
    let start = handle.ops();
    while j.stats().segments_created() < 3 {
        append_cycled(&mut j, &mut want, 0xfa11, 1000);
        if want.len().is_multiple_of(5) {
            j.commit().unwrap();
        }
    }
    let last = j.commit().unwrap();
    drop(j);
    let (got, _) = replay_all(&dir).unwrap();
    assert_eq!(got, want);
    let log = handle.log();
    let fallocated = log.iter().any(|op| matches!(op, Op::Fallocate { .. }));
    assert!(!fallocated, "a fallocate got through");
    drop(mount);
    recovers_at_every_crash_point(&log, start, 17, 0, last);
}

/// A crash at any step of an `open` that prepares spare segments recovers: each spare was
/// created under a live segment's name (`seg-N`) and then renamed to `free-N`, so a crash
/// between the two renames left a live-looking segment past the end of the log, and for
/// the second spare on, past a gap (`MissingSegment`: the journal no longer opened).
#[test]
fn a_crash_while_open_prepares_spare_segments_recovers() {
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_or_skip(base.path(), None) else {
        return;
    };
    let dir = mount.path().join("j");
    let opts = options(Mode::Direct).prewrite(false).max_free_segments(4);
    let Some(mut j) = open_or_skip(&dir, opts) else {
        return;
    };
    j.append(b"committed").unwrap();
    j.commit().unwrap();
    drop(j);
    let handle = mount.handle();
    let start = handle.ops();
    drop(open_or_skip(&dir, opts.spare_segments(3)).unwrap());
    let log = handle.log();
    drop(mount);
    assert!(log.len() > start, "the reopen logged nothing");
    one_record_survives_every_crash_point(&log, start, opts, 3);
}

/// Recovery that recycles several segments past the end of the log survives a crash at
/// every step: they were renamed to free names lowest first, so a crash after the first
/// rename left a hole in the live numbering (`MissingSegment`: the journal no longer
/// opened). Two segments with valid headers past the end are what a crash left while an
/// earlier version prepared spare segments.
#[test]
fn a_crash_while_recovery_recycles_trailing_segments_recovers() {
    let src = tempfile::tempdir().unwrap();
    let jsrc = src.path().join("j");
    let opts = options(Mode::Direct).prewrite(false).max_free_segments(4);
    let Some(mut j) = open_or_skip(&jsrc, opts.spare_segments(2)) else {
        return;
    };
    j.append(b"committed").unwrap();
    j.commit().unwrap();
    drop(j);
    for i in 1..=2u64 {
        std::fs::rename(
            jsrc.join(format!("free-{i:016x}.tjl")),
            jsrc.join(format!("seg-{i:016x}.tjl")),
        )
        .unwrap();
    }
    std::fs::remove_file(jsrc.join("LOCK")).unwrap();
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_or_skip(base.path(), Some(src.path())) else {
        return;
    };
    let handle = mount.handle();
    let start = handle.ops();
    let (j, report) = Journal::open_with_report(&mount.path().join("j"), opts).unwrap();
    assert!(report.torn_tail.is_some(), "{report:?}");
    drop(j);
    let log = handle.log();
    drop(mount);
    one_record_survives_every_crash_point(&log, start, opts, 5);
}

/// At every crash point of `log` from op `start` on (what was synced, and what a process
/// kill leaves), the journal in `j` replays its one committed record, opens, and takes
/// record 2.
fn one_record_survives_every_crash_point(
    log: &[Op],
    start: usize,
    opts: JournalOptions,
    seed: u64,
) {
    for_each_crash_point(log, start, seed, |k, kind, jdir| {
        let (got, _) =
            replay_all(jdir).unwrap_or_else(|e| panic!("crash after op {k} ({kind:?}): {e}"));
        assert_eq!(got.len(), 1, "crash after op {k} ({kind:?})");
        let mut j = Journal::open(jdir, opts)
            .unwrap_or_else(|e| panic!("crash after op {k} ({kind:?}): open: {e}"));
        assert_eq!(j.append(b"next").unwrap(), 2);
        j.commit().unwrap();
    });
}

/// Calls `check(k, kind, dir)` at every crash point of `log` from op `start` on: after op
/// `k`, with what was synced (`DurableOnly`) and with what a process kill leaves
/// (`Everything`), `dir` being the journal directory `j` of that image.
fn for_each_crash_point(
    log: &[Op],
    start: usize,
    seed: u64,
    mut check: impl FnMut(usize, CrashKind, &Path),
) {
    let mut model = Model::new();
    let mut rng = Rng::new(seed);
    for (k, op) in log.iter().enumerate() {
        model.apply(op);
        if k + 1 < start {
            continue;
        }
        for kind in [CrashKind::DurableOnly, CrashKind::Everything] {
            let image = tempfile::tempdir().unwrap();
            model.materialise(kind, &mut rng, image.path());
            check(k, kind, &image.path().join("j"));
        }
    }
}

/// `flock` works on a FUSE file system without lock operations (the kernel locks
/// locally): a second writer on the same directory is refused.
#[test]
fn the_directory_lock_holds_on_fuse() {
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_or_skip(base.path(), None) else {
        return;
    };
    let dir = mount.path().join("j");
    let Some(j) = open_or_skip(&dir, options(Mode::Direct)) else {
        return;
    };
    match Journal::open(&dir, options(Mode::Direct)) {
        Err(JournalError::Locked { .. }) => {}
        other => panic!("a second writer was not refused: {other:?}"),
    }
    drop(j);
    drop(Journal::open(&dir, options(Mode::Direct)).unwrap());
}

/// The harness itself: crashfs logs each mutating request once, in order, and the model
/// makes durable exactly what the crash model says.
#[test]
fn crashfs_logs_in_order_and_models_durability() {
    use std::os::unix::fs::FileExt;

    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_or_skip(base.path(), None) else {
        return;
    };
    let handle = mount.handle();
    let root = mount.path();
    let a = root.join("a");
    let af = std::fs::File::create(&a).unwrap();
    af.write_all_at(b"hello", 0).unwrap();
    af.sync_data().unwrap();
    std::fs::rename(&a, root.join("b")).unwrap();
    std::fs::File::open(root).unwrap().sync_all().unwrap();
    // Pending: a write past the synced size, and a new file whose entry is never synced.
    af.write_all_at(b"world", 5).unwrap();
    drop(af);
    let cf = std::fs::File::create(root.join("c")).unwrap();
    cf.write_all_at(&[7u8; 1500], 0).unwrap();
    cf.sync_all().unwrap();
    drop(cf);
    let log = handle.log();
    drop(mount);
    let kinds: Vec<&str> = log
        .iter()
        .map(|o| match o {
            Op::Create { .. } => "create",
            Op::Write { .. } => "write",
            Op::Fsync { .. } => "fsync",
            Op::Rename { .. } => "rename",
            Op::FsyncDir { .. } => "fsyncdir",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "create", "write", "fsync", "rename", "fsyncdir", "write", "create", "write", "fsync"
        ],
        "{log:?}"
    );
    let mut model = Model::new();
    for op in &log {
        model.apply(op);
    }
    let image = |kind: CrashKind, rng: &mut Rng| {
        let d = tempfile::tempdir().unwrap();
        model.materialise(kind, rng, d.path());
        let b = std::fs::read(d.path().join("b")).unwrap();
        let c = std::fs::read(d.path().join("c")).ok();
        assert!(!d.path().join("a").exists());
        (b, c)
    };
    let mut rng = Rng::new(1);
    assert_eq!(
        image(CrashKind::DurableOnly, &mut rng),
        (b"hello".to_vec(), None)
    );
    assert_eq!(
        image(CrashKind::Everything, &mut rng),
        (b"helloworld".to_vec(), Some(vec![7u8; 1500]))
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let (b, c) = image(CrashKind::Random, &mut rng);
        // The synced "hello" always; the unsynced "world" whole, not at all (zeros if the
        // longer size survived), or, its sector torn, random bytes.
        let tail = match b.get(5..) {
            _ if !b.starts_with(b"hello") => panic!("synced data damaged: {b:?}"),
            Some([]) => "short",
            Some(b"world") => "world",
            Some([0, 0, 0, 0, 0]) => "zeros",
            Some(t) if t.len() == 5 => "noise",
            _ => panic!("impossible size: {b:?}"),
        };
        // c's data was synced: if its entry survived, all of it did.
        assert!(c.as_ref().is_none_or(|c| c == &vec![7u8; 1500]));
        seen.insert((tail, c.is_some()));
    }
    assert_eq!(seen.len(), 8, "not every allowed image was drawn: {seen:?}");
}

/// A short write of a commit group on the io_uring path, whose completions
/// `poll_commits` collects: the rest is written and synced, as by `wait_commit`.
#[test]
fn a_short_write_seen_by_poll_commits_is_completed() {
    let base = tempfile::tempdir().unwrap();
    let Some((mount, dir, mut j)) = journal_on_fuse(base.path(), options(Mode::Uring)) else {
        return;
    };
    let handle = mount.handle();
    let mut want: Records = Vec::new();
    for _ in 0..5 {
        append_cycled(&mut j, &mut want, 0x5408, 900);
    }
    handle.inject_write_faults(&[WriteFault::Short(700)]);
    let last = j.start_commit().unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while j
        .poll_commits()
        .expect("a short write seen by poll_commits is completed")
        < last
    {
        assert!(
            Instant::now() < deadline,
            "poll_commits never saw the commit"
        );
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    assert_eq!(last, 5);
    assert_eq!(j.wait_commit().unwrap(), 5);
    assert_eq!(handle.pending_write_faults(), 0, "the fault was not hit");
    drop(j);
    let (got, _) = replay_all(&dir).unwrap();
    assert_eq!(got, want);
}

/// A write to a regular file may complete short (here the FUSE file system writes only
/// the first 700 bytes of a group, and io_uring reports that count). The journal writes
/// the rest before the `fdatasync` (it used to poison itself with "short write"), on the
/// io_uring commit path (a linked write + fdatasync, whose sync the short write cancels)
/// and on a group's write-out. When writing the rest fails, that error is reported.
#[test]
fn a_short_group_write_is_completed_not_fatal() {
    let base = tempfile::tempdir().unwrap();
    let Some((mount, dir, mut j)) = journal_on_fuse(base.path(), options(Mode::Uring)) else {
        return;
    };
    let handle = mount.handle();
    let short = [WriteFault::Short(700)];
    let mut want: Records = Vec::new();
    let append = |j: &mut Journal, want: &mut Records, len: usize| {
        append_cycled(j, want, 0x5407, len);
    };
    // The linked io_uring write of a commit group.
    for _ in 0..5 {
        append(&mut j, &mut want, 900);
    }
    handle.inject_write_faults(&short);
    let durable = j
        .commit()
        .expect("a short write of a commit group is completed");
    assert_eq!(durable, want.len() as u64);
    assert_eq!(handle.pending_write_faults(), 0, "the faults were not hit");
    // A group larger than a buffer: its first part is written out by `append`.
    handle.inject_write_faults(&short);
    let before = j.stats().write_outs();
    while j.stats().write_outs() == before {
        append(&mut j, &mut want, 1500);
    }
    assert_eq!(handle.pending_write_faults(), 0, "the faults were not hit");
    assert_eq!(j.commit().unwrap(), want.len() as u64);
    // Writing the rest fails: the journal reports that error (a full disk), not a
    // "short write", and keeps what was committed.
    append(&mut j, &mut want.clone(), 900);
    handle.inject_write_faults(&[WriteFault::Short(700), WriteFault::Fail(libc::ENOSPC)]);
    let full = j.commit();
    assert!(
        matches!(full, Err(JournalError::NoSpace { .. })),
        "{full:?}"
    );
    assert_eq!(handle.pending_write_faults(), 0, "the faults were not hit");
    drop(j);
    let (got, _) = replay_all(&dir).unwrap();
    assert!(
        got.starts_with(&want),
        "the committed records read back differ from those appended"
    );
}
