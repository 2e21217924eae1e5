//! SIGKILL crash test: a child process (this test binary, re-executed) appends and
//! commits records and reports each durable sequence number to the parent through a
//! pipe (its stderr); the parent kills it with SIGKILL at a random moment, then replays. Every
//! acknowledged record must come back intact, and nothing else may be delivered as a
//! record (every delivered record must be one the child appended, byte for byte).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
#![allow(clippy::cast_possible_truncation, reason = "test code")]

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tally_uring::{Journal, JournalError, JournalOptions, RingError};

const CHILD_ENV: &str = "TALLY_URING_CRASH_CHILD";
const ROUNDS: u32 = 200;

fn payload(seq: u64) -> Vec<u8> {
    let len = (seq.wrapping_mul(2_654_435_761) % 700) as usize;
    (0..len).map(|i| (seq as usize ^ (i * 13)) as u8).collect()
}

fn options() -> JournalOptions {
    // Small segments and buffers so that rotation and buffer write-outs happen often.
    JournalOptions::new()
        .segment_bytes(512 << 10)
        .group_buffer_bytes(16 << 10)
        .max_record_bytes(1024)
        .prewrite(false)
}

/// The commit path a child takes for `seed`: 0 direct (pwrite + fdatasync), 1 linked
/// io_uring write + fdatasync, 2 pipelined (pwrite, then up to 4 io_uring fdatasyncs in
/// flight, acked as they finish).
fn commit_path(seed: u64) -> usize {
    if seed % 3 == 2 {
        2
    } else {
        usize::from(!seed.is_multiple_of(2))
    }
}

fn child(dir: &Path, seed: u64) {
    let path = commit_path(seed);
    let pipelined = path == 2;
    let opts = if pipelined {
        options().commits_in_flight(4)
    } else {
        options().direct_commit(path == 0)
    };
    let mut j = Journal::open(dir, opts).unwrap();
    let mut acked = 0u64;
    let mut out = std::io::stderr().lock(); // libtest writes its own lines to stdout
    let mut x = seed | 1;
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = 1 + x % 60;
        for _ in 0..n {
            let s = j.next_seq();
            assert_eq!(j.append(&payload(s)).unwrap(), s);
        }
        let durable = if pipelined {
            j.start_commit().unwrap();
            if x.is_multiple_of(5) {
                j.wait_durable(j.next_seq() - 1).unwrap()
            } else {
                j.poll_commits().unwrap()
            }
        } else {
            j.commit().unwrap()
        };
        if durable > acked || !pipelined {
            acked = durable;
            out.write_all(&durable.to_le_bytes()).unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
#[allow(clippy::too_many_lines, reason = "one SIGKILL round, checked in place")]
fn sigkill_never_loses_an_acknowledged_record() {
    if let Some(v) = std::env::var_os(CHILD_ENV) {
        let v = v.into_string().unwrap();
        let (dir, seed) = v.split_once('|').unwrap();
        child(Path::new(dir), seed.parse().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Probe io_uring once (prints why it skips when the kernel refuses it; any other
    // error fails the test).
    match Journal::open(dir.path(), options()) {
        Ok(j) => drop(j),
        Err(JournalError::Ring(e @ RingError::Setup { .. }))
            if std::env::var_os("CI").is_none() =>
        {
            eprintln!("skipping: {e}");
            return;
        }
        Err(e) => panic!("opening the journal failed: {e}"),
    }
    let exe = std::env::current_exe().unwrap();
    let mut acked_max = 0u64;
    let mut torn_seen = 0;
    // Rounds whose child acknowledged at least one commit, per commit path (direct,
    // linked io_uring, pipelined), as the child picks it from its seed.
    let mut acked_rounds = [0u32; 3];
    let mut rng = 0x1234_5678_9abc_def1u64;
    let start = Instant::now();
    for round in 0..ROUNDS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut c = Command::new(&exe)
            .args([
                "sigkill_never_loses_an_acknowledged_record",
                "--exact",
                "--test-threads=1",
                "--nocapture",
                "-q",
            ])
            .env(CHILD_ENV, format!("{}|{}", dir.path().display(), rng))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the first acknowledgement (the child is up), then a random delay.
        let mut stdout = c.stderr.take().unwrap();
        let mut first = [0u8; 8];
        let mut acks = Vec::new();
        if stdout.read_exact(&mut first).is_ok() {
            acks.push(u64::from_le_bytes(first));
        }
        std::thread::sleep(Duration::from_micros(rng % 8000));
        c.kill().unwrap(); // SIGKILL
        let status = c.wait().unwrap();
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
        let whole = rest.len() / 8 * 8;
        acks.extend(
            rest[..whole]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
        );
        let mut rest_text = String::from_utf8_lossy(&rest).into_owned();
        rest_text.truncate(2000);
        // The child runs until killed: any other end (a panic, an exit) is a failure, not
        // a round that checks nothing.
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the child ended on its own ({status}) before the kill: {rest_text}"
        );
        if !acks.is_empty() {
            acked_rounds[commit_path(rng)] += 1;
        }
        for a in &acks {
            assert!(
                *a >= acked_max || *a == 0,
                "round {round}: durable sequence went backwards"
            );
        }
        acked_max = acked_max.max(acks.iter().copied().max().unwrap_or(0));
        // Replay: every acknowledged record intact, every delivered record genuine.
        let mut next = 1u64;
        let rep = Journal::replay(dir.path(), |s, p| {
            assert_eq!(s, next, "round {round}: sequence gap");
            assert_eq!(
                p,
                payload(s).as_slice(),
                "round {round}: record {s} delivered with wrong bytes"
            );
            next += 1;
        })
        .unwrap_or_else(|e| panic!("round {round}: replay failed: {e}"));
        assert!(
            rep.last_seq >= acked_max,
            "round {round}: acknowledged {acked_max} but only {} replayed",
            rep.last_seq
        );
        torn_seen += u32::from(rep.torn_tail.is_some());
    }
    eprintln!(
        "{ROUNDS} SIGKILL rounds in {:?}: {acked_max} records acknowledged, all replayed; {torn_seen} torn tails cut; rounds with acknowledgements per path (direct, io_uring, pipelined): {acked_rounds:?}",
        start.elapsed()
    );
    assert!(
        acked_max > u64::from(ROUNDS),
        "the children made too little progress to test anything"
    );
    // Every commit path was exercised: each has about a third of the rounds.
    assert!(
        acked_rounds.iter().all(|n| *n >= ROUNDS / 10),
        "rounds with acknowledgements per path (direct, io_uring, pipelined): {acked_rounds:?}"
    );
}
