//! Journal tests: round trips, rotation and recycling, recovery rules, bit flips and
//! truncations, format-version refusal, ENOSPC, the shared front end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
#![allow(
    clippy::cast_possible_truncation,
    clippy::type_complexity,
    reason = "test code"
)]

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::open_journal as open;
use tally_uring::journal::format::{HEADER_BYTES, SegmentHeader};
use tally_uring::{Journal, JournalError, JournalOptions, SharedJournal, SharedOptions};

/// Deterministic payload for a sequence number (length 0..=300).
fn payload(seq: u64) -> Vec<u8> {
    let len = (seq * 37 % 301) as usize;
    (0..len)
        .map(|i| (seq as usize * 31 + i * 7) as u8)
        .collect()
}

fn small() -> JournalOptions {
    JournalOptions::new()
        .segment_bytes(64 << 10)
        .group_buffer_bytes(16 << 10)
        .max_record_bytes(4096)
}

fn replay_all(
    dir: &Path,
) -> Result<(Vec<(u64, Vec<u8>)>, tally_uring::ReplayReport), JournalError> {
    let mut v = Vec::new();
    let r = Journal::replay(dir, |s, p| v.push((s, p.to_vec())))?;
    Ok((v, r))
}

fn segs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("seg-"))
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_reopen_continue() {
    round_trip(small());
}

#[test]
fn round_trip_with_io_uring_commits() {
    round_trip(small().direct_commit(false));
}

#[test]
fn round_trip_with_commits_in_flight() {
    round_trip(small().commits_in_flight(4));
}

/// With one commit in flight on the io_uring path, `poll_commits` finishes a commit whose
/// `fdatasync` has completed without waiting, and `wait_commit` afterwards has nothing
/// left to wait for.
#[test]
fn poll_commits_finishes_an_io_uring_commit() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small().direct_commit(false)) else {
        return;
    };
    for round in 0..20u64 {
        for k in 1..=10 {
            assert_eq!(j.append(&payload(round * 10 + k)).unwrap(), round * 10 + k);
        }
        let last = j.start_commit().unwrap();
        assert_eq!(last, round * 10 + 10);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while j.poll_commits().unwrap() < last {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: never durable"
            );
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        assert_eq!(j.durable_seq(), last);
        assert_eq!(j.wait_commit().unwrap(), last);
    }
    drop(j);
    let (recs, rep) = replay_all(dir.path()).unwrap();
    assert_eq!(recs.len(), 200);
    assert!(rep.torn_tail.is_none());
}

#[test]
fn commits_in_flight_ack_in_order_and_wait_durable() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small().commits_in_flight(3)) else {
        return;
    };
    let mut last_durable = 0;
    let mut started = 0;
    for s in 1..=2000u64 {
        assert_eq!(j.append(&payload(s)).unwrap(), s);
        if s % 50 == 0 {
            assert_eq!(j.start_commit().unwrap(), s);
            started += 1;
            let d = j.poll_commits().unwrap();
            assert!(
                d >= last_durable && d <= s,
                "durable {d} after {last_durable}"
            );
            last_durable = d;
        }
        if s % 450 == 0 {
            let d = j.wait_durable(s - 10).unwrap();
            assert!(d >= s - 10, "wait_durable({}) returned {d}", s - 10);
            last_durable = d;
        }
    }
    assert!(matches!(
        j.wait_durable(2001),
        Err(JournalError::NotAppended {
            seq: 2001,
            next: 2001
        })
    ));
    j.append(&payload(2001)).unwrap();
    // Appended but not committed: wait_durable starts the commit itself.
    assert_eq!(j.wait_durable(2001).unwrap(), 2001);
    assert_eq!(j.commit().unwrap(), 2001);
    assert!(j.stats().snapshot().commits > started);
    drop(j);
    let (recs, rep) = replay_all(dir.path()).unwrap();
    assert_eq!(recs.len(), 2001);
    assert!(rep.torn_tail.is_none());
    for n in [0, 65] {
        let bad = Journal::open(dir.path(), small().commits_in_flight(n)).unwrap_err();
        assert!(
            matches!(bad, JournalError::InvalidOptions { .. })
                && bad.to_string().contains("commits_in_flight"),
            "{bad}"
        );
    }
}

/// With commits in flight, a group can reach the disk while an earlier one has not: after
/// a power loss the earlier group is missing and the later one intact. Neither was
/// acknowledged, so recovery must treat both as one torn tail, not as corruption.
#[test]
fn group_written_behind_a_pending_flush_is_a_torn_tail_when_that_flush_is_lost() {
    for attempt in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let Some(mut j) = open(dir.path(), small().commits_in_flight(4)) else {
            return;
        };
        for s in 1..=10 {
            j.append(&payload(s)).unwrap();
        }
        assert_eq!(j.commit().unwrap(), 10);
        for s in 11..=20 {
            j.append(&payload(s)).unwrap();
        }
        j.start_commit().unwrap(); // group B = 11..=20, its flush pending
        for s in 21..=30 {
            j.append(&payload(s)).unwrap();
        }
        assert_eq!(j.commit().unwrap(), 30); // group C = 21..=30
        drop(j);
        let seg = segs(dir.path()).pop().unwrap();
        let bytes = std::fs::read(&seg).unwrap();
        let frame = |s: u64| tally_uring::journal::format::frame_bytes(payload(s).len()) as u64;
        let b_start = HEADER_BYTES + (1..=10).map(frame).sum::<u64>();
        let b_len = (11..=20).map(frame).sum::<u64>();
        let c_start = (b_start + b_len) as usize;
        let (_, _, seq, back) =
            tally_uring::journal::format::peek_header(&bytes[c_start..]).unwrap();
        assert_eq!(seq, 21);
        if back == 0 {
            // B's flush finished before C opened: C points at itself. Try again.
            assert!(attempt < 49, "B's flush always finished before C opened");
            continue;
        }
        assert_eq!(
            back, 10,
            "C must point back at the first record not yet durable"
        );
        // Simulate the power loss: B never reached the disk (zeros), C did.
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&vec![0u8; b_len as usize], b_start).unwrap();
        drop(f);
        let (recs, rep) = replay_all(dir.path()).unwrap();
        assert_eq!(recs.len(), 10);
        let t = rep
            .torn_tail
            .expect("the lost group must be reported as a torn tail");
        assert_eq!((t.offset, t.discarded_records), (b_start, 10));
        // Reopen cuts it and continues at 11.
        let mut j = open(dir.path(), small().commits_in_flight(4)).unwrap();
        assert_eq!(j.append(b"eleven").unwrap(), 11);
        j.commit().unwrap();
        drop(j);
        let (recs, rep) = replay_all(dir.path()).unwrap();
        assert_eq!(recs.len(), 11);
        assert!(rep.torn_tail.is_none());
        return;
    }
}

#[test]
fn rotation_moves_the_open_group_to_the_new_segment() {
    // Groups of 40 x 100 B (~4.8 KiB framed) into 64 KiB segments: many groups straddle a
    // segment end. They move whole to the next segment (no write-out, no extra sync of
    // the old one), for both commit paths and with pipelined commits.
    for (direct, pipelined) in [(true, false), (false, false), (false, true)] {
        let dir = tempfile::tempdir().unwrap();
        let Some(mut j) = open(dir.path(), small().direct_commit(direct)) else {
            return;
        };
        let mut next = 1u64;
        for _group in 0..60 {
            for _ in 0..40 {
                let p = vec![(next % 251) as u8; 100];
                assert_eq!(j.append(&p).unwrap(), next);
                next += 1;
            }
            if pipelined {
                j.start_commit().unwrap();
            } else {
                assert_eq!(j.commit().unwrap(), next - 1);
            }
        }
        assert_eq!(j.commit().unwrap(), next - 1);
        let st = j.stats().snapshot();
        assert!(st.segments_created >= 4, "{st:?}");
        assert_eq!(st.write_outs, 0, "no group was written out early: {st:?}");
        // Appends continue after reopen, into the segment the last group moved to.
        drop(j);
        let mut j = open(dir.path(), small().direct_commit(direct)).unwrap();
        assert_eq!(j.append(&[7u8; 100]).unwrap(), next);
        j.commit().unwrap();
        drop(j);
        let (recs, rep) = replay_all(dir.path()).unwrap();
        assert_eq!(recs.len() as u64, next);
        assert!(rep.torn_tail.is_none());
        for (i, (seq, p)) in recs.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            let want = if *seq == next { 7 } else { (*seq % 251) as u8 };
            assert_eq!(p, &vec![want; 100]);
        }
        // Every segment but the last ends exactly where the next one starts.
        assert_eq!(rep.segments as usize, segs(dir.path()).len());
    }
}

fn round_trip(opts: JournalOptions) {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), opts) else {
        return;
    };
    assert_eq!(j.append(&payload(1)).unwrap(), 1);
    for s in 2..=500 {
        assert_eq!(j.append(&payload(s)).unwrap(), s);
        if s % 97 == 0 {
            assert_eq!(j.commit().unwrap(), s);
        }
    }
    assert_eq!(j.commit().unwrap(), 500);
    assert_eq!(j.commit().unwrap(), 500, "empty commit");
    let st = j.stats().snapshot();
    assert!(
        st.segments_created > 1,
        "64 KiB segments must rotate: {st:?}"
    );
    drop(j);
    let (recs, rep) = replay_all(dir.path()).unwrap();
    assert_eq!(recs.len(), 500);
    for (i, (s, p)) in recs.iter().enumerate() {
        assert_eq!(*s, i as u64 + 1);
        assert_eq!(*p, payload(*s));
    }
    assert_eq!(
        (rep.first_seq, rep.last_seq, rep.torn_tail.clone()),
        (Some(1), 500, None)
    );
    let mut j = open(dir.path(), opts).unwrap();
    assert_eq!(j.next_seq(), 501);
    assert_eq!(j.append(&payload(501)).unwrap(), 501);
    assert_eq!(j.commit().unwrap(), 501);
    drop(j);
    assert_eq!(replay_all(dir.path()).unwrap().0.len(), 501);
}

#[test]
fn second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_j) = open(dir.path(), small()) else {
        return;
    };
    let e = Journal::open(dir.path(), small()).unwrap_err();
    assert!(matches!(e, JournalError::Locked { .. }), "{e}");
}

#[test]
fn big_groups_pipelined_commits_release_and_recycle() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small().max_free_segments(2).spare_segments(1)) else {
        return;
    };
    let mut seq = 0;
    for _round in 0..20 {
        // Groups larger than one 16 KiB buffer are written out in pieces.
        for _ in 0..150 {
            seq = j.append(&payload(seq + 1)).unwrap();
        }
        j.start_commit().unwrap();
        // Fill the next group while the previous flushes.
        for _ in 0..10 {
            seq = j.append(&payload(seq + 1)).unwrap();
        }
        assert!(j.wait_commit().unwrap() >= seq - 10);
        j.release_through(j.durable_seq().saturating_sub(200))
            .unwrap();
    }
    assert_eq!(j.commit().unwrap(), seq);
    let st = j.stats().snapshot();
    assert!(st.write_outs > 0 && st.segments_recycled > 0, "{st:?}");
    drop(j);
    let (recs, rep) = replay_all(dir.path()).unwrap();
    let first = rep.first_seq.unwrap();
    assert!(first > 1 && first <= seq - 200, "first {first}");
    assert_eq!(rep.last_seq, seq);
    for (i, (s, p)) in recs.iter().enumerate() {
        assert_eq!(*s, first + i as u64);
        assert_eq!(*p, payload(*s));
    }
    // Reopen after recycling and keep going.
    let mut j = open(dir.path(), small()).unwrap();
    assert_eq!(j.append(&payload(seq + 1)).unwrap(), seq + 1);
    j.commit().unwrap();
}

/// A record whose header says "next sequence number" but whose bytes are half written:
/// cut off on open, reported, and appends reuse its number.
#[test]
fn torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small().prewrite(false)) else {
        return;
    };
    for s in 1..=10 {
        j.append(&payload(s)).unwrap();
    }
    j.commit().unwrap();
    drop(j);
    let seg = segs(dir.path()).pop().unwrap();
    let (recs, _) = replay_all(dir.path()).unwrap();
    let end: u64 = HEADER_BYTES
        + recs
            .iter()
            .map(|(_, p)| tally_uring::journal::format::frame_bytes(p.len()) as u64)
            .sum::<u64>();
    // Torn record 11: valid header fields, payload cut short (no CRC match).
    let mut torn = vec![0u8; 64];
    tally_uring::journal::format::encode_record(&mut torn, 1, 11, 0, &[9u8; 40]);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&torn[..30], end).unwrap();
    let (recs, rep) = replay_all(dir.path()).unwrap();
    assert_eq!(recs.len(), 10);
    let t = rep.torn_tail.unwrap();
    assert_eq!((t.segment, t.offset), (seg.clone(), end));
    let (mut j, rep) = Journal::open_with_report(dir.path(), small()).unwrap();
    assert!(rep.torn_tail.is_some());
    assert_eq!(j.append(b"eleven").unwrap(), 11);
    j.commit().unwrap();
    drop(j);
    let (recs, rep) = replay_all(dir.path()).unwrap();
    assert_eq!(recs.len(), 11);
    assert_eq!(recs[10].1, b"eleven");
    assert!(rep.torn_tail.is_none());
}

/// A damaged record followed by records of a later commit group is corruption, named by
/// segment and offset, and nothing past it is delivered.
#[test]
fn mid_log_damage_is_an_error_naming_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small()) else {
        return;
    };
    for s in 1..=20 {
        j.append(&payload(s)).unwrap();
        if s % 5 == 0 {
            j.commit().unwrap();
        }
    }
    drop(j);
    let seg = segs(dir.path())[0].clone();
    let off =
        HEADER_BYTES + tally_uring::journal::format::frame_bytes(payload(1).len()) as u64 + 21;
    flip(&seg, off, 0);
    let mut seen = Vec::new();
    let e = Journal::replay(dir.path(), |s, _| seen.push(s)).unwrap_err();
    match &e {
        JournalError::Corrupt {
            segment, offset, ..
        } => {
            assert_eq!(segment, &seg);
            assert_eq!(*offset, off - 21);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains(&seg.display().to_string()));
    assert_eq!(seen, [1], "records after the damage were delivered");
    assert!(matches!(
        Journal::open(dir.path(), small()),
        Err(JournalError::Corrupt { .. })
    ));
}

fn flip(path: &Path, off: u64, bit: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    b[0] ^= 1 << bit;
    f.write_all_at(&b, off).unwrap();
}

/// xorshift64* for reproducible random offsets.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Random bit flips and zeroed tails anywhere in the written area: replay either fails
/// with a clear error or delivers an exact prefix of the original records. Never a
/// modified record.
#[test]
fn bit_flips_and_truncations_never_replay_as_data() {
    let master = tempfile::tempdir().unwrap();
    let Some(mut j) = open(master.path(), small().prewrite(false)) else {
        return;
    };
    for s in 1..=400 {
        j.append(&payload(s)).unwrap();
        if s % 23 == 0 {
            j.commit().unwrap();
        }
    }
    j.commit().unwrap();
    drop(j);
    let files = segs(master.path());
    let written: Vec<u64> = {
        let (_, rep) = replay_all(master.path()).unwrap();
        assert_eq!(rep.last_seq, 400);
        files
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect()
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut errors, mut prefixes) = (0, 0);
    for round in 0..120 {
        let work = tempfile::tempdir().unwrap();
        for f in &files {
            std::fs::copy(f, work.path().join(f.file_name().unwrap())).unwrap();
        }
        let wf = segs(work.path());
        let k = (rng.next() % wf.len() as u64) as usize;
        // Damage only the written area of the file (header included).
        let (_, rep) = replay_all(master.path()).unwrap();
        let limit = if k + 1 == wf.len() {
            last_end(master.path())
        } else {
            written[k]
        };
        let off = rng.next() % limit;
        if round % 3 == 2 {
            // Truncation: zero everything from `off` to the end of the file.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&wf[k])
                .unwrap();
            f.write_all_at(&vec![0u8; (written[k] - off) as usize], off)
                .unwrap();
        } else {
            flip(&wf[k], off, (rng.next() % 8) as u8);
        }
        match replay_all(work.path()) {
            Ok((recs, _)) => {
                prefixes += 1;
                for (i, (s, p)) in recs.iter().enumerate() {
                    assert_eq!(*s, i as u64 + 1, "round {round}");
                    assert_eq!(*p, payload(*s), "round {round}: damaged record delivered");
                }
            }
            Err(e) => {
                errors += 1;
                assert!(
                    matches!(
                        e,
                        JournalError::Corrupt { .. } | JournalError::UnsupportedVersion { .. }
                    ),
                    "{e}"
                );
            }
        }
        let _ = rep;
    }
    assert!(
        errors > 10 && prefixes > 10,
        "errors {errors} prefixes {prefixes}"
    );
    // A file cut short is refused clearly.
    let work = tempfile::tempdir().unwrap();
    for f in &files {
        std::fs::copy(f, work.path().join(f.file_name().unwrap())).unwrap();
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segs(work.path())[0])
        .unwrap()
        .set_len(10_000)
        .unwrap();
    assert!(matches!(
        replay_all(work.path()),
        Err(JournalError::Corrupt { .. })
    ));
}

fn last_end(dir: &Path) -> u64 {
    let (recs, rep) = replay_all(dir).unwrap();
    let first_in_last = {
        let last = segs(dir).pop().unwrap();
        let mut b = [0u8; 64];
        std::fs::File::open(&last)
            .unwrap()
            .read_exact_at(&mut b, 0)
            .unwrap();
        SegmentHeader::decode(&b).unwrap().first_seq
    };
    let _ = rep;
    HEADER_BYTES
        + recs
            .iter()
            .filter(|(s, _)| *s >= first_in_last)
            .map(|(_, p)| tally_uring::journal::format::frame_bytes(p.len()) as u64)
            .sum::<u64>()
}

#[test]
fn journal_from_another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small()) else {
        return;
    };
    j.append(b"x").unwrap();
    j.commit().unwrap();
    drop(j);
    let seg = segs(dir.path())[0].clone();
    let mut b = [0u8; 64];
    std::fs::File::open(&seg)
        .unwrap()
        .read_exact_at(&mut b, 0)
        .unwrap();
    let h = SegmentHeader::decode(&b).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .write_all_at(&h.encode_version(0), 0)
        .unwrap();
    let e = Journal::open(dir.path(), small()).unwrap_err();
    assert!(
        matches!(
            e,
            JournalError::UnsupportedVersion {
                found: 0,
                supported: 1,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("version 0")
            && msg.contains("reads version 1")
            && msg.contains("move the directory aside"),
        "{msg}"
    );
    assert!(matches!(
        Journal::replay(dir.path(), |_, _| {}),
        Err(JournalError::UnsupportedVersion { found: 0, .. })
    ));
}

/// Unmounts on drop.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A journal in a fresh 1 MiB tmpfs (unmounted when the guards drop), with 256 KiB
/// segments and records up to 1 KiB; `None` with the reason printed when mounting (or
/// opening) is refused.
fn journal_on_small_tmpfs() -> Option<(Journal, PathBuf, Mount, tempfile::TempDir)> {
    let (mnt, base) = small_tmpfs()?;
    let dir = mnt.0.join("j");
    let opts = JournalOptions::new()
        .segment_bytes(256 << 10)
        .group_buffer_bytes(16 << 10)
        .max_record_bytes(1024);
    let j = open(&dir, opts)?;
    Some((j, dir, mnt, base))
}

/// A 1 MiB tmpfs in a temporary directory (unmounted on drop), or `None` with the reason
/// printed when mounting is refused.
fn small_tmpfs() -> Option<(Mount, tempfile::TempDir)> {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tally-enospc"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "on CI (root, Linux 6.x) this must run: cannot mount a 1 MiB tmpfs (needs root / CAP_SYS_ADMIN)"
        );
        eprintln!("skipping: cannot mount a 1 MiB tmpfs (needs root / CAP_SYS_ADMIN)");
        return None;
    }
    Some((Mount(mnt), base))
}

#[test]
fn enospc_is_a_clear_error_and_keeps_committed_records() {
    let Some((mut j, dir, _mnt, _base)) = journal_on_small_tmpfs() else {
        return;
    };
    let mut committed = 0;
    let err = loop {
        match j.append(&[7u8; 1000]) {
            Ok(s) => {
                if s % 50 == 0 {
                    committed = j.commit().unwrap();
                }
            }
            Err(e) => break e,
        }
        assert!(committed < 10_000, "tmpfs never filled up");
    };
    assert!(matches!(err, JournalError::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("no space left"), "{err}");
    // The journal is still usable for what fits, and committed records are intact.
    let durable = j.commit().unwrap();
    assert!(durable >= committed && committed > 0);
    drop(j);
    let (recs, _) = replay_all(&dir).unwrap();
    assert!(recs.len() as u64 >= durable);
    assert!(recs.iter().all(|(_, p)| p == &[7u8; 1000]));
}

#[test]
fn many_writers_share_group_commits() {
    many_writers(small(), SharedOptions::new(), true);
}

/// An inbox of 64 bytes holds 7 of these records: writers block for space and go on.
#[test]
fn many_writers_with_a_tiny_inbox() {
    many_writers(small(), SharedOptions::new().max_pending_bytes(64), true);
}

#[test]
fn many_writers_without_keep_awake() {
    many_writers(small(), SharedOptions::new().keep_awake(false), true);
}

/// A shared journal that runs out of space stops (with and without its keep-awake
/// thread), every waiting writer gets `Stopped` naming the cause, and every record acknowledged before is replayed.
#[test]
fn shared_journal_enospc_reaches_every_waiter() {
    for keep_awake in [true, false] {
        let Some((j, dir, _mnt, _base)) = journal_on_small_tmpfs() else {
            return;
        };
        let shared = SharedJournal::start(j, SharedOptions::new().keep_awake(keep_awake)).unwrap();
        let acked: Vec<u64> = std::thread::scope(|s| {
            writers_until_error(s, &shared, 1000, |e| {
                assert!(matches!(e, JournalError::Stopped { .. }), "{e}");
                assert!(e.to_string().contains("no space left"), "{e}");
            })
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
        });
        assert!(!acked.is_empty());
        let err = shared.close().unwrap_err();
        assert!(matches!(err, JournalError::NoSpace { .. }), "{err}");
        let (recs, _) = replay_all(&dir).unwrap();
        let replayed: std::collections::HashSet<u64> = recs.iter().map(|(s, _)| *s).collect();
        assert!(
            acked.iter().all(|s| replayed.contains(s)),
            "keep_awake {keep_awake}"
        );
        assert!(recs.iter().all(|(_, p)| p.len() == 1000));
    }
}

#[test]
fn many_writers_with_commits_in_flight() {
    many_writers(small().commits_in_flight(4), SharedOptions::new(), false);
    // Appends after the writers are gone, then close: everything handed over is durable.
    let dir = tempfile::tempdir().unwrap();
    let Some(j) = open(dir.path(), small().commits_in_flight(4)) else {
        return;
    };
    let shared = SharedJournal::start(j, SharedOptions::new()).unwrap();
    let h = shared.handle();
    let seqs: Vec<u64> = (0..50u8).map(|i| h.append(&[i]).unwrap()).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    let j = shared.close().unwrap();
    assert_eq!(j.durable_seq(), 50);
    assert!(matches!(
        h.append(b"late"),
        Err(JournalError::Stopped { .. })
    ));
    drop(j);
    assert_eq!(replay_all(dir.path()).unwrap().0.len(), 50);
}

fn many_writers(opts: JournalOptions, shared: SharedOptions, expect_grouping: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some(j) = open(dir.path(), opts) else {
        return;
    };
    let shared = SharedJournal::start(j, shared).unwrap();
    let mut all: Vec<(u64, Vec<u8>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8u8)
            .map(|t| {
                let h = shared.handle();
                s.spawn(move || {
                    (0..100u32)
                        .map(|i| {
                            let p = [vec![t], i.to_le_bytes().to_vec()].concat();
                            let seq = h.append_durable(&p).unwrap();
                            assert!(h.durable_seq() >= seq);
                            (seq, p)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let j = shared.close().unwrap();
    let st = j.stats().snapshot();
    assert!(
        st.commits <= 800 && (!expect_grouping || st.commits < 800),
        "no grouping happened: {st:?}"
    );
    assert_eq!(j.durable_seq(), 800);
    drop(j);
    all.sort();
    assert_eq!(
        all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=800).collect::<Vec<_>>()
    );
    let (recs, _) = replay_all(dir.path()).unwrap();
    assert_eq!(recs, all);
}

/// Closing a shared journal while writers are appending and waiting never hangs: every
/// writer ends with its records acknowledged or with `Stopped`, and every acknowledged
/// record is replayed (with and without the keep-awake thread, 40 rounds each, closing
/// after 0-2 ms).
#[test]
fn close_while_writers_wait_never_hangs_or_loses_acks() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..80u32 {
        let keep_awake = round % 2 == 0;
        let dir = tempfile::tempdir().unwrap();
        let Some(j) = open(dir.path(), small().prewrite(false)) else {
            return;
        };
        let shared = SharedJournal::start(j, SharedOptions::new().keep_awake(keep_awake)).unwrap();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = std::time::Duration::from_micros(state % 2000);
        let (acked, j) = std::thread::scope(|s| {
            let hs = writers_until_error(s, &shared, 16, |e| {
                assert!(matches!(e, JournalError::Stopped { .. }), "{e}");
            });
            std::thread::sleep(delay);
            let j = shared.close().unwrap();
            let acked: Vec<u64> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
            (acked, j)
        });
        let durable = j.durable_seq();
        drop(j);
        assert!(acked.iter().all(|&s| s <= durable), "round {round}");
        let (recs, _) = replay_all(dir.path()).unwrap();
        let replayed: std::collections::HashSet<u64> = recs.iter().map(|(s, _)| *s).collect();
        assert!(
            acked.iter().all(|s| replayed.contains(s)),
            "round {round}: an acknowledged record is missing"
        );
    }
}

/// Spawns 4 writers in `s` that append `len`-byte records with `append_durable` until it
/// fails; each returns the sequence numbers acknowledged to it, after `check` has seen
/// its error.
fn writers_until_error<'s, 'e>(
    s: &'s std::thread::Scope<'s, 'e>,
    shared: &SharedJournal,
    len: usize,
    check: fn(&JournalError),
) -> Vec<std::thread::ScopedJoinHandle<'s, Vec<u64>>> {
    (0..4u8)
        .map(|t| {
            let h = shared.handle();
            s.spawn(move || {
                let mut acked = Vec::new();
                loop {
                    match h.append_durable(&vec![t; len]) {
                        Ok(seq) => acked.push(seq),
                        Err(e) => {
                            check(&e);
                            break acked;
                        }
                    }
                    assert!(acked.len() < 1_000_000, "the writer never stopped");
                }
            })
        })
        .collect()
}

/// Whether this process may lock `bytes` of memory (io_uring pins registered buffers):
/// with `CAP_IPC_LOCK` always, otherwise up to `RLIMIT_MEMLOCK`.
fn can_lock(bytes: u64) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_ipc_lock = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 14) != 0);
    if cap_ipc_lock {
        return true;
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .and_then(|l| l.split_whitespace().nth(3))
        .is_some_and(|soft| soft == "unlimited" || soft.parse::<u64>().is_ok_and(|n| n >= bytes))
}

/// A payload of `len` bytes that differs per `seed`.
fn big(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 12) as u8 ^ seed)
        .collect()
}

/// Records of the largest size the options allow, with 8 MiB group buffers (twice the
/// reader's initial 4 MiB window), survive reopen and replay: as the very last record
/// (once mistaken for a torn tail and overwritten), in the middle of the log and at the end
/// of a segment.
#[test]
fn largest_allowed_records_round_trip() {
    let group = 8usize << 20;
    // The frame of the largest payload (20-byte header, rounded up to 8) fills the buffer.
    let max = u32::try_from(group - 20).unwrap();
    let opts = JournalOptions::new()
        .segment_bytes(32 << 20)
        .group_buffer_bytes(group)
        .max_record_bytes(max)
        .prewrite(false);
    let dir = tempfile::tempdir().unwrap();
    let too_big = Journal::open(dir.path(), opts.max_record_bytes(max + 1)).unwrap_err();
    assert!(
        matches!(too_big, JournalError::InvalidOptions { .. }),
        "{too_big}"
    );
    if !can_lock(2 * group as u64 + (1 << 20)) {
        assert!(
            std::env::var_os("CI").is_none(),
            "on CI (root, Linux 6.x) this must run: RLIMIT_MEMLOCK is too low to register two 8 MiB group buffers"
        );
        eprintln!("skipping: RLIMIT_MEMLOCK is too low to register two 8 MiB group buffers");
        return;
    }
    let Some(mut j) = open(dir.path(), opts) else {
        return;
    };
    let len = max as usize;
    assert!(matches!(
        j.append(&vec![0; len + 1]),
        Err(JournalError::RecordTooLarge { .. })
    ));
    assert_eq!(j.append(&big(len, 1)).unwrap(), 1);
    assert_eq!(j.commit().unwrap(), 1);
    drop(j);

    // The largest record is the last one: intact, not a torn tail.
    let (mut j, rep) = Journal::open_with_report(dir.path(), opts).unwrap();
    assert!(rep.torn_tail.is_none(), "{rep:?}");
    assert_eq!((rep.records, rep.last_seq, j.next_seq()), (1, 1, 2));
    assert_eq!(j.append(b"small").unwrap(), 2);
    assert_eq!(j.append(&big(len, 3)).unwrap(), 3);
    assert_eq!(j.append(&big(len, 4)).unwrap(), 4);
    assert_eq!(j.commit().unwrap(), 4);
    // The segment (32 MiB) holds three of them: the next one rotates.
    assert_eq!(j.append(&big(len, 5)).unwrap(), 5);
    assert_eq!(j.commit().unwrap(), 5);
    drop(j);

    let expect = |s: u64| -> Vec<u8> {
        if s == 2 {
            b"small".to_vec()
        } else {
            big(len, s as u8)
        }
    };
    let (recs, rep) = replay_all(dir.path()).unwrap();
    assert!(rep.torn_tail.is_none(), "{rep:?}");
    assert_eq!(rep.segments, 2);
    assert_eq!(recs.len(), 5);
    for (s, p) in &recs {
        assert!(*p == expect(*s), "record {s} came back different");
    }
    // And once more through recovery, then an append after the last large record.
    let mut j = open(dir.path(), opts).unwrap();
    assert_eq!(j.next_seq(), 6);
    assert_eq!(j.append(b"after").unwrap(), 6);
    assert_eq!(j.commit().unwrap(), 6);
    drop(j);
    let (recs, _) = replay_all(dir.path()).unwrap();
    assert_eq!(recs.len(), 6);
    assert!(recs[4].1 == expect(5));
}

/// Both group buffers are registered with io_uring as one buffer, which the kernel limits
/// to 1 GiB: larger group buffers are refused up front, the largest accepted size opens.
#[test]
fn group_buffers_above_512_mib_are_refused_and_512_mib_opens() {
    let dir = tempfile::tempdir().unwrap();
    let small_seg = JournalOptions::new().segment_bytes(1 << 20).prewrite(false);
    let bad = Journal::open(dir.path(), small_seg.group_buffer_bytes(1 << 30)).unwrap_err();
    assert!(
        matches!(bad, JournalError::InvalidOptions { .. }) && bad.to_string().contains("512 MiB"),
        "{bad}"
    );
    if !can_lock(1 << 30) {
        assert!(
            std::env::var_os("CI").is_none(),
            "on CI (root, Linux 6.x) this must run: RLIMIT_MEMLOCK is below 1 GiB"
        );
        eprintln!("skipping the 512 MiB open: RLIMIT_MEMLOCK is below 1 GiB");
        return;
    }
    let Some(mut j) = open(dir.path(), small_seg.group_buffer_bytes(512 << 20)) else {
        return;
    };
    assert_eq!(j.append(b"x").unwrap(), 1);
    assert_eq!(j.commit().unwrap(), 1);
}

/// Runs `f` on its own thread and fails the test if it does not return within 30 s.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the call hung")
}

#[test]
fn shared_wait_durable_refuses_a_sequence_number_never_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let Some(j) = open(dir.path(), small()) else {
        return;
    };
    let shared = SharedJournal::start(j, SharedOptions::new().keep_awake(false)).unwrap();
    let h = shared.handle();
    let w = h.clone();
    assert!(matches!(
        within(move || w.wait_durable(1)),
        Err(JournalError::NotAppended { seq: 1, next: 1 })
    ));
    assert_eq!(h.append_durable(b"a").unwrap(), 1);
    let w = h.clone();
    assert!(matches!(
        within(move || w.wait_durable(7)),
        Err(JournalError::NotAppended { seq: 7, next: 2 })
    ));
    assert_eq!(h.wait_durable(1).unwrap(), 1);
    assert_eq!(h.wait_durable(0).unwrap(), 1);
    shared.close().unwrap();
}

/// Records appended to a `Journal` before it moves onto its thread are committed by
/// `SharedJournal::start`: their waiters return instead of waiting forever (the journal
/// thread commits only what arrives through its inbox).
#[test]
fn shared_start_makes_records_appended_before_it_durable() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small()) else {
        return;
    };
    assert_eq!(j.append(b"before").unwrap(), 1);
    assert_eq!(j.append(b"before, too").unwrap(), 2);
    assert_eq!(j.durable_seq(), 0);
    let shared = SharedJournal::start(j, SharedOptions::new().keep_awake(false)).unwrap();
    let w = shared.handle();
    assert_eq!(within(move || w.wait_durable(2)).unwrap(), 2);
    shared.close().unwrap();
    let mut seen = Vec::new();
    Journal::replay(dir.path(), |seq, p| seen.push((seq, p.to_vec()))).unwrap();
    assert_eq!(
        seen,
        vec![(1, b"before".to_vec()), (2, b"before, too".to_vec())]
    );
}

/// A segment is created only after every record before its first sequence number is
/// synced. So damage to records of segment N, when segment N+1 starts at a later
/// sequence number, is damage to durable (acknowledged) records: corruption, never a torn
/// tail. Recovery used to cut it as a torn tail (segment N+1 was empty, so no later group
/// gave the damage away): `replay` reported the acknowledged record as never written and
/// `open` recycled segment N+1 and went on from the damaged record, silently dropping it.
#[test]
fn damage_before_a_later_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small().prewrite(false)) else {
        return;
    };
    // One record per commit until an append rotates; that record is never committed,
    // so the new segment holds no record.
    loop {
        let created = j.stats().snapshot().segments_created;
        let seq = j.append(&[3u8; 900]).unwrap();
        if j.stats().snapshot().segments_created > created {
            break;
        }
        assert_eq!(j.commit().unwrap(), seq);
    }
    let acked = j.durable_seq();
    drop(j);
    let files = segs(dir.path());
    assert_eq!(files.len(), 2);
    let (recs, rep) = replay_all(dir.path()).unwrap();
    assert_eq!(rep.last_seq, acked);
    assert!(rep.torn_tail.is_none());
    // Damage the payload of the last (acknowledged) record of the first segment.
    let frame = tally_uring::journal::format::frame_bytes(900) as u64;
    let last_off = HEADER_BYTES + frame * (recs.len() as u64 - 1);
    flip(&files[0], last_off + 100, 3);
    let before: Vec<_> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    match replay_all(dir.path()) {
        Err(JournalError::Corrupt {
            segment, offset, ..
        }) => assert_eq!((segment, offset), (files[0].clone(), last_off)),
        Ok((recs, rep)) => panic!(
            "damage to acknowledged record {acked} was not reported: {} records, {rep:?}",
            recs.len()
        ),
        Err(e) => panic!("{e}"),
    }
    assert!(matches!(
        Journal::open(dir.path(), small()),
        Err(JournalError::Corrupt { .. })
    ));
    let after: Vec<_> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(before == after, "a failed open changed the segment files");
}
