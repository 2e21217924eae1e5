//! Public-API edge cases of the journal: options changed between a journal's opens,
//! unrelated files in its directory, out-of-range shared-journal options.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
#![allow(clippy::cast_possible_truncation, reason = "test code")]

mod common;

use std::path::Path;

use common::open_journal as open;

use tally_uring::{Journal, JournalError, JournalOptions, RingError, SharedJournal, SharedOptions};

fn small() -> JournalOptions {
    JournalOptions::new()
        .segment_bytes(64 << 10)
        .group_buffer_bytes(16 << 10)
        .max_record_bytes(1024)
        .prewrite(false)
}

fn replay_all(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut v = Vec::new();
    Journal::replay(dir, |s, p| v.push((s, p.to_vec()))).unwrap();
    v
}

/// A journal reopened with a larger `max_record_bytes` continues the last segment, whose
/// header still carries the old limit: a record above that limit was acknowledged but
/// recovery rejected it (its length exceeds the header's `max_record`), so an
/// acknowledged record was lost.
#[test]
fn raising_max_record_bytes_on_reopen_keeps_the_larger_records() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small()) else {
        return;
    };
    j.append(b"small").unwrap();
    j.commit().unwrap();
    drop(j);
    let mut j = open(dir.path(), small().max_record_bytes(4096)).unwrap();
    let big = vec![0xA5u8; 3000];
    let seq = j.append(&big).unwrap();
    assert_eq!(j.commit().unwrap(), seq);
    let after = j.append(b"after").unwrap();
    j.commit().unwrap();
    drop(j);
    let got = replay_all(dir.path());
    assert_eq!(
        got,
        [
            (1, b"small".to_vec()),
            (seq, big.clone()),
            (after, b"after".to_vec())
        ],
        "acknowledged records lost after raising max_record_bytes"
    );
    // And the journal reopens with them (no torn tail, no corruption).
    let (j, report) =
        Journal::open_with_report(dir.path(), small().max_record_bytes(4096)).unwrap();
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert_eq!(j.durable_seq(), after);
}

/// The segment `open` starts when the last one cannot take the larger records follows the
/// last live segment, also when free segments (spares, released or recycled ones) carry
/// higher numbers. It was numbered past the highest free segment: `seg-0` then `seg-2`,
/// a hole, and the journal no longer opened or replayed (`MissingSegment`).
#[test]
fn raising_max_record_bytes_with_free_segments_leaves_no_hole() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small().spare_segments(2)) else {
        return;
    };
    j.append(b"small").unwrap();
    j.commit().unwrap();
    drop(j);
    let mut j = open(dir.path(), small().max_record_bytes(4096)).unwrap();
    let big = vec![0x5Au8; 3000];
    let seq = j.append(&big).unwrap();
    assert_eq!(j.commit().unwrap(), seq);
    drop(j);
    let mut got = Vec::new();
    let replayed = Journal::replay(dir.path(), |s, p| got.push((s, p.to_vec())));
    assert!(replayed.is_ok(), "{replayed:?}");
    assert_eq!(got, [(1, b"small".to_vec()), (seq, big)]);
    let j = Journal::open(dir.path(), small().max_record_bytes(4096)).unwrap();
    assert_eq!(j.durable_seq(), seq);
}

/// Opening a journal cleans up only its own interrupted segment creations
/// (`new-<16 hex digits>.tmp`): a user's file that merely starts with `new-` and ends in
/// `.tmp` was deleted.
#[test]
fn open_keeps_unrelated_files_in_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mine = ["new-orders.tmp", "new-.tmp", "notes.txt", "seg-1.tjl"];
    for name in mine {
        std::fs::write(dir.path().join(name), b"user data").unwrap();
    }
    // A leftover of an interrupted segment creation is removed.
    std::fs::write(dir.path().join("new-0000000000000007.tmp"), b"").unwrap();
    let Some(mut j) = open(dir.path(), small()) else {
        return;
    };
    j.append(b"x").unwrap();
    j.commit().unwrap();
    drop(j);
    for name in mine {
        assert_eq!(
            std::fs::read(dir.path().join(name)).ok().as_deref(),
            Some(&b"user data"[..]),
            "{name} was removed or changed by Journal::open"
        );
    }
    assert!(!dir.path().join("new-0000000000000007.tmp").exists());
    assert_eq!(replay_all(dir.path()), [(1, b"x".to_vec())]);
}

/// An inbox size that cannot be allocated is a typed error, not a panic in
/// `SharedJournal::start` (`Vec::with_capacity` overflow); an inbox that cannot hold even an
/// empty record is refused too (every append would fail).
#[test]
fn shared_inbox_sizes_out_of_range_are_refused() {
    for bad in [usize::MAX, 1 << 62, 0, 3] {
        let dir = tempfile::tempdir().unwrap();
        let Some(j) = open(dir.path(), small()) else {
            return;
        };
        // A panic here (the bug) fails the test.
        match SharedJournal::start(j, SharedOptions::new().max_pending_bytes(bad)) {
            Err(JournalError::InvalidOptions { reason }) => {
                assert!(reason.contains("max_pending_bytes"), "{reason}");
            }
            Err(e) => panic!("max_pending_bytes({bad}): unexpected error {e}"),
            Ok(_) => panic!("max_pending_bytes({bad}) was accepted"),
        }
    }
}

/// A file-system error says what to do about it, not only the OS error: a journal path
/// under a regular file, a missing directory to replay, a read-only directory.
#[test]
fn io_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let e = Journal::open(&file.join("j"), small()).unwrap_err();
    assert!(matches!(e, JournalError::Io { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("not a directory: choose"),
        "no advice in: {msg}"
    );

    let e = Journal::replay(&dir.path().join("missing"), |_, _| {}).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("does not exist: check the path"),
        "no advice in: {msg}"
    );

    // A read-only directory (as root, permissions do not stop us: a read-only bind mount does).
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let c = std::ffi::CString::new(ro.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the calls; bind-mounting
    // it onto itself and remounting it read-only touches only this test's directory.
    let bound = unsafe {
        libc::mount(
            c.as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ) == 0
    };
    if !bound {
        assert!(
            std::env::var_os("CI").is_none(),
            "a bind mount was refused on CI: {}",
            std::io::Error::last_os_error()
        );
        eprintln!(
            "skipping the read-only case: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let _unmount = Unmount(c.clone());
    // SAFETY: as above.
    let ro_ok = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        ) == 0
    };
    assert!(
        ro_ok,
        "read-only remount: {}",
        std::io::Error::last_os_error()
    );
    let msg = Journal::open(&ro, small()).unwrap_err().to_string();
    assert!(
        msg.contains("read-only") && msg.contains("remount"),
        "no advice in: {msg}"
    );
}

/// Detaches a test's bind mount, also while a failing test unwinds.
struct Unmount(std::ffi::CString);

impl Drop for Unmount {
    fn drop(&mut self) {
        // SAFETY: a valid NUL-terminated path; detaches only the mount this test made.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A record too large for the shared journal's inbox names the option that limits it:
/// it was reported as exceeding `max_record_bytes` (with the inbox size as that maximum),
/// so raising `max_record_bytes`, as the message said, could not help.
#[test]
fn a_record_larger_than_the_inbox_names_max_pending_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(j) = open(dir.path(), small()) else {
        return;
    };
    let shared = SharedJournal::start(j, SharedOptions::new().max_pending_bytes(64)).unwrap();
    let h = shared.handle();
    let e = h.append(&[7u8; 100]).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            JournalError::RecordExceedsInbox {
                len: 100,
                max_pending_bytes: 64
            }
        ) && msg.contains("raise SharedOptions::max_pending_bytes"),
        "{msg}"
    );
    // The largest record that fits (64 bytes minus its 4-byte length) is taken.
    let seq = h.append_durable(&[7u8; 60]).unwrap();
    drop(h);
    drop(shared.close().unwrap());
    assert_eq!(replay_all(dir.path()), [(seq, vec![7u8; 60])]);
}

/// Segment sizes the file system cannot hold are a typed error that says what to do, never a
/// panic or a hang.
#[test]
fn huge_segment_sizes_are_a_clear_error() {
    for bytes in [1u64 << 50, !4095u64] {
        let dir = tempfile::tempdir().unwrap();
        match Journal::open(dir.path(), small().segment_bytes(bytes)) {
            Ok(_) => panic!("a {bytes}-byte segment was created"),
            Err(JournalError::Ring(e @ RingError::Setup { .. }))
                if std::env::var_os("CI").is_none() =>
            {
                eprintln!("skipping: {e}");
                return;
            }
            // A file system that takes files this large may run out of space instead.
            Err(JournalError::NoSpace { .. }) => {}
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("segment_bytes"), "{bytes}: {msg}");
            }
        }
        // Nothing is left behind but the lock file.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "LOCK")
            .collect();
        assert!(names.is_empty(), "{bytes}: {names:?}");
    }
}

/// Empty records round-trip in every commit mode, also when they move with their group to
/// a new segment; `release_through` with a sequence number in the future releases only
/// what is durable, and a second call with the same number releases nothing more.
#[test]
fn empty_records_and_release_through_arguments() {
    for mode in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let opts = match mode {
            0 => small(),
            1 => small().direct_commit(false),
            _ => small().commits_in_flight(3),
        };
        let Some(mut j) = open(dir.path(), opts) else {
            return;
        };
        let mut expect = Vec::new();
        // About 5 segments of 64 KiB: records of 0 and 1000 bytes, a commit every 7.
        for i in 0..330u64 {
            let p = if i % 3 == 0 {
                Vec::new()
            } else {
                vec![i as u8; 1000]
            };
            let seq = j.append(&p).unwrap();
            expect.push((seq, p));
            if i % 7 == 6 {
                j.commit().unwrap();
            }
        }
        let durable = j.durable_seq();
        assert!(
            durable < j.next_seq() - 1,
            "mode {mode}: the tail should be uncommitted"
        );
        // A future sequence number: only segments whose records are all durable go.
        let released = j.release_through(u64::MAX).unwrap();
        assert!(released >= 3, "mode {mode}: released {released}");
        assert_eq!(j.release_through(u64::MAX).unwrap(), 0, "mode {mode}");
        assert_eq!(j.release_through(durable).unwrap(), 0, "mode {mode}");
        let last = j.commit().unwrap();
        assert_eq!(last, expect.last().unwrap().0);
        drop(j);
        let got = replay_all(dir.path());
        assert!(!got.is_empty(), "mode {mode}");
        let first = got[0].0;
        assert!(
            first <= durable + 1,
            "mode {mode}: a non-durable record was released"
        );
        assert_eq!(got, expect[(first - 1) as usize..], "mode {mode}");
    }
}

/// Deleting the `LOCK` file of an open journal (an operator's reflex after a `Locked`
/// error) must not let a second writer in: it opened the directory next to the first one,
/// and both appended into the same segment.
#[test]
fn a_deleted_lock_file_does_not_let_a_second_writer_in() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut first) = open(dir.path(), small()) else {
        return;
    };
    first.append(b"first").unwrap();
    first.commit().unwrap();
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    match Journal::open(dir.path(), small()) {
        Err(JournalError::Locked { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a second writer opened the directory while the first held it"),
    }
    drop(first);
    // Once the first writer is gone the directory opens again.
    let j = open(dir.path(), small()).unwrap();
    assert_eq!(j.durable_seq(), 1);
}

/// A journal of three segments (records 1..=n), closed cleanly.
fn three_segments(dir: &Path) -> Option<Vec<std::path::PathBuf>> {
    let mut j = open(dir, small())?;
    while j.stats().segments_created() < 3 {
        j.append(&[5u8; 900]).unwrap();
        j.commit().unwrap();
    }
    j.append(b"last").unwrap();
    j.commit().unwrap();
    drop(j);
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("seg-"))
        .collect();
    segs.sort();
    assert_eq!(segs.len(), 3);
    Some(segs)
}

/// Damage to the set of segment files is refused by `replay` and by `open` with a typed
/// error naming the file (never a panic, never a journal that silently restarts or drops
/// records): a gap in the numbering, a zero-length segment, a damaged header, a segment
/// renamed to another number.
#[test]
fn damaged_segment_sets_are_refused_by_replay_and_open() {
    type Damage = fn(&[std::path::PathBuf]);
    let cases: [(&str, Damage); 5] = [
        ("gap", |s| std::fs::remove_file(&s[1]).unwrap()),
        ("zero-length last", |s| {
            std::fs::File::create(&s[2]).unwrap();
        }),
        ("zero-length middle", |s| {
            std::fs::File::create(&s[1]).unwrap();
        }),
        ("bad header crc", |s| {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&s[2]).unwrap();
            f.write_all_at(&[0xFF], 30).unwrap();
        }),
        ("renamed", |s| {
            std::fs::remove_file(&s[2]).unwrap();
            std::fs::rename(&s[1], &s[2]).unwrap();
        }),
    ];
    for (name, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let Some(segs) = three_segments(dir.path()) else {
            return;
        };
        damage(&segs);
        let before: Vec<_> = segs.iter().map(|p| std::fs::read(p).ok()).collect();
        let report = Journal::replay(dir.path(), |_, _| {});
        let Err(e) = report else {
            panic!("{name}: replay succeeded: {report:?}");
        };
        assert!(
            matches!(
                e,
                JournalError::MissingSegment { .. } | JournalError::Corrupt { .. }
            ),
            "{name}: replay gave {e}"
        );
        let Err(e) = Journal::open(dir.path(), small()) else {
            panic!("{name}: open succeeded");
        };
        assert!(
            matches!(
                e,
                JournalError::MissingSegment { .. } | JournalError::Corrupt { .. }
            ),
            "{name}: open gave {e}"
        );
        let after: Vec<_> = segs.iter().map(|p| std::fs::read(p).ok()).collect();
        assert!(
            before == after,
            "{name}: a failed open changed the segment files"
        );
    }
}

/// `replay` and `open` both refuse the journal in `dir` as `Corrupt` (`replay` naming
/// `segment`), neither of them panicking.
fn assert_replay_and_open_refuse_as_corrupt(dir: &Path, segment: &Path) {
    let replayed = std::panic::catch_unwind(|| Journal::replay(dir, |_, _| {}));
    match replayed {
        Ok(Err(JournalError::Corrupt { segment: named, .. })) => assert_eq!(named, segment),
        Ok(other) => panic!("replay gave {other:?}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
    let opened = std::panic::catch_unwind(|| Journal::open(dir, small()).map(drop));
    assert!(
        matches!(opened, Ok(Err(JournalError::Corrupt { .. }))),
        "open gave {opened:?}"
    );
}

/// A segment header whose first sequence number is near `u64::MAX` (a crafted or
/// damaged file whose header checksum was recomputed) is refused as `Corrupt` by `replay`
/// and `open`. Recovery counted sequence numbers up from it and overflowed: a panic in
/// debug builds, and wrapped sequence numbers (the next record numbered 0) in release.
#[test]
fn a_header_with_a_first_seq_near_the_limit_is_refused() {
    use std::os::unix::fs::FileExt;
    use tally_uring::journal::format::{HEADER_BYTES, SegmentHeader, encode_record, frame_bytes};

    let dir = tempfile::tempdir().unwrap();
    let Some(mut j) = open(dir.path(), small()) else {
        return;
    };
    j.append(b"x").unwrap();
    j.commit().unwrap();
    drop(j);
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("seg-"))
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut b = [0u8; 64];
    f.read_exact_at(&mut b, 0).unwrap();
    let mut h = SegmentHeader::decode(&b).unwrap();
    h.first_seq = u64::MAX;
    f.write_all_at(&h.encode(), 0).unwrap();
    let mut rec = vec![0u8; frame_bytes(1)];
    encode_record(&mut rec, h.salt, u64::MAX, 0, b"x");
    f.write_all_at(&rec, HEADER_BYTES).unwrap();
    drop(f);
    assert_replay_and_open_refuse_as_corrupt(dir.path(), &seg);
}

/// File names with a segment number near `u64::MAX` do not make `open` overflow while it
/// numbers the next segment (a panic in debug builds, a wrap to segment 0 in release): a
/// stray `free-` name is left alone, and a `seg-` name is `Corrupt` for `replay` and
/// `open`.
#[test]
fn segment_numbers_near_the_limit_do_not_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let stray = dir.path().join("free-ffffffffffffffff.tjl");
    std::fs::write(&stray, b"not a segment").unwrap();
    let opened = std::panic::catch_unwind(|| {
        let mut j = open(dir.path(), small().spare_segments(1))?;
        let seq = j.append(b"x").unwrap();
        j.commit().unwrap();
        Some(seq)
    });
    match opened {
        Ok(seq) => assert!(seq.is_none_or(|s| s == 1)),
        Err(panic) => std::panic::resume_unwind(panic),
    }
    assert_eq!(std::fs::read(&stray).unwrap(), b"not a segment");
    assert_eq!(replay_all(dir.path()), [(1, b"x".to_vec())]);

    let live = dir.path().join("seg-ffffffffffffffff.tjl");
    std::fs::write(&live, b"not a segment").unwrap();
    assert_replay_and_open_refuse_as_corrupt(dir.path(), &live);
}

/// Releasing a segment whose free name a spare still holds keeps both files. Spares are
/// numbered past the live segments of the time; once the live numbering caught up with an
/// unused spare, `release_through` renamed the released segment onto the spare's name,
/// silently destroying the prepared file, and the free list held the one remaining file
/// twice (so `max_free_segments` counted a segment that did not exist).
#[test]
fn a_release_never_overwrites_an_unused_spare() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small().spare_segments(2).max_free_segments(4);
    let Some(mut j) = open(dir.path(), opts) else {
        return;
    };
    let free_files = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_str().unwrap().starts_with("free-")
            })
            .count()
    };
    assert_eq!(free_files(dir.path()), 2);
    for recycled in 1..=2 {
        while j.stats().segments_recycled() < recycled {
            j.append(&[7u8; 900]).unwrap();
            j.commit().unwrap();
        }
        assert_eq!(j.release_through(j.durable_seq()).unwrap(), 1);
    }
    // Two spares, two rotations that each took one free file, two releases that each
    // gave one back.
    assert_eq!(
        free_files(dir.path()),
        2,
        "a released segment overwrote a spare"
    );
    let created = j.stats().segments_created();
    for recycled in 3..=4 {
        while j.stats().segments_recycled() < recycled {
            j.append(&[8u8; 900]).unwrap();
            j.commit().unwrap();
        }
    }
    assert_eq!(
        j.stats().segments_created(),
        created,
        "a free segment was missing"
    );
}
