//! The shared journal's keep-awake thread, alone in its own test binary: it inspects
//! this process's threads by name, which other tests running in parallel would disturb.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use tally_uring::{JournalOptions, SharedJournal, SharedOptions};

fn open(dir: &std::path::Path) -> Option<tally_uring::Journal> {
    match tally_uring::Journal::open(dir, JournalOptions::new().segment_bytes(1 << 20)) {
        Ok(j) => Some(j),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// The ids of this process's threads named `name`.
fn threads_named(name: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let tid = e.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            (comm.trim_end() == name).then_some(tid)
        })
        .collect()
}

/// The keep-awake thread runs in `SCHED_IDLE` (policy 5 in `/proc/.../stat`), only when
/// asked for, and is gone after close.
#[test]
fn keep_awake_thread_is_sched_idle_and_stops_with_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let Some(j) = open(dir.path()) else {
        return;
    };
    let shared = SharedJournal::start(j, SharedOptions::new()).unwrap();
    let h = shared.handle();
    assert_eq!(h.append_durable(b"x").unwrap(), 1);
    let tids = threads_named("tally-journal-a"); // comm keeps 15 bytes
    if tids.is_empty() && !sched_idle_allowed() {
        eprintln!("skipping: this kernel refuses SCHED_IDLE, so the keep-awake thread exits");
        shared.close().unwrap();
        return;
    }
    assert_eq!(tids.len(), 1, "{tids:?}");
    let stat = std::fs::read_to_string(format!("/proc/self/task/{}/stat", tids[0])).unwrap();
    // Fields after the parenthesised name; policy is field 41 overall, 39 after it.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let policy: u32 = after.split(' ').nth(38).unwrap().parse().unwrap();
    assert_eq!(policy, 5, "keep-awake thread is not SCHED_IDLE: {stat}");
    shared.close().unwrap();
    assert!(threads_named("tally-journal-a").is_empty());

    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path()).unwrap();
    let shared = SharedJournal::start(j, SharedOptions::new().keep_awake(false)).unwrap();
    assert_eq!(shared.handle().append_durable(b"y").unwrap(), 1);
    assert!(threads_named("tally-journal-a").is_empty());
    shared.close().unwrap();
}

/// Whether a thread of this machine may move itself to `SCHED_IDLE` (what the keep-awake
/// thread does first; it exits when refused).
fn sched_idle_allowed() -> bool {
    std::process::Command::new("chrt")
        .args(["-i", "0", "true"])
        .status()
        .is_ok_and(|s| s.success())
}
