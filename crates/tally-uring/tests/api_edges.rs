//! Public-API edge cases of the journal: options changed between a journal's opens,
//! unrelated files in its directory, out-of-range shared-journal options.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::Path;

use tally_uring::{Journal, JournalError, JournalOptions, RingError};

fn small() -> JournalOptions {
    JournalOptions::new()
        .segment_bytes(64 << 10)
        .group_buffer_bytes(16 << 10)
        .max_record_bytes(1024)
        .prewrite(false)
}

/// Opens a journal or prints why io_uring is unavailable (never skips with `CI` set).
fn open(dir: &Path, o: JournalOptions) -> Option<Journal> {
    match Journal::open(dir, o) {
        Ok(j) => Some(j),
        Err(JournalError::Ring(e @ RingError::Setup { .. }))
            if std::env::var_os("CI").is_none() =>
        {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
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
