//! The shared journal's keep-awake thread, alone in its own test binary: it inspects
//! this process's threads by name, which other tests running in parallel would disturb.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use tally_uring::{JournalError, JournalOptions, RingError, SharedJournal, SharedOptions};

/// Opens a journal, or `None` (with the reason printed) when the kernel refuses io_uring;
/// any other error fails the test.
fn open(dir: &std::path::Path) -> Option<tally_uring::Journal> {
    match tally_uring::Journal::open(dir, JournalOptions::new().segment_bytes(1 << 20)) {
        Ok(j) => Some(j),
        Err(JournalError::Ring(e @ RingError::Setup { .. }))
            if std::env::var_os("CI").is_none() =>
        {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("opening the journal failed: {e}"),
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
    if !sched_idle_allowed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "on CI (root, Linux 6.x) this must run: this kernel refuses SCHED_IDLE, so the keep-awake thread exits"
        );
        eprintln!("skipping: this kernel refuses SCHED_IDLE, so the keep-awake thread exits");
        return;
    }
    let shared = SharedJournal::start(j, SharedOptions::new()).unwrap();
    let h = shared.handle();
    assert_eq!(h.append_durable(b"x").unwrap(), 1);
    // The thread names itself and then moves to `SCHED_IDLE` once it first runs, which
    // on a loaded machine can be a while after `start` returns: wait for both.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (tids, policy) = loop {
        let tids = threads_named("tally-journal-a"); // comm keeps 15 bytes
        let policy = tids.first().and_then(|t| policy_of(t));
        if policy == Some(5) || std::time::Instant::now() > deadline {
            break (tids, policy);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(tids.len(), 1, "{tids:?}");
    assert_eq!(
        policy,
        Some(5),
        "keep-awake thread {} is not SCHED_IDLE",
        tids[0]
    );
    shared.close().unwrap();
    assert!(threads_named("tally-journal-a").is_empty());

    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path()).unwrap();
    let shared = SharedJournal::start(j, SharedOptions::new().keep_awake(false)).unwrap();
    assert_eq!(shared.handle().append_durable(b"y").unwrap(), 1);
    assert!(threads_named("tally-journal-a").is_empty());
    shared.close().unwrap();
}

/// The scheduling policy of thread `tid` of this process (`/proc/.../stat` field 41).
fn policy_of(tid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after the parenthesised name; policy is field 41 overall, 39 after it.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    after.split(' ').nth(38)?.parse().ok()
}

/// Whether a thread of this machine may move itself to `SCHED_IDLE` (what the keep-awake
/// thread does first; it exits when refused).
fn sched_idle_allowed() -> bool {
    std::process::Command::new("chrt")
        .args(["-i", "0", "true"])
        .status()
        .is_ok_and(|s| s.success())
}
