//! Proves that the ring's hot path (queue, submit, wait, reap) and the journal's append
//! and commit paths allocate nothing, with a counting global allocator.
//!
//! The count is per thread: the paths under test run on the test's own thread, and
//! libtest's main thread may allocate at any moment while it waits for the test (it did
//! on CI once: 4 allocations from its channel wait, counted by a process-wide counter).
#![allow(
    clippy::many_single_char_names,
    clippy::cast_possible_truncation,
    reason = "test code"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;
use common::{ring, scratch_file};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::time::Duration;
use tally_core_types::{FramePool, FramePoolOptions};

use tally_uring::{
    Completion, Journal, JournalError, JournalOptions, PoolRange, Ring, RingError, RingOptions,
    Target, TaskrunMode,
};

struct Counting;
thread_local! {
    // Const-initialised and without a destructor, so reading it never allocates.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: an allocation during thread teardown is not ours to count.
    let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
}

/// Allocations made so far by the calling thread.
fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn submit_and_complete_and_journal_commits_do_not_allocate() {
    // The harness must be able to fail: a Vec allocates, and this thread sees it.
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 10]);
    assert_eq!(
        allocs() - before,
        1,
        "the counting allocator missed an allocation"
    );
    drop(v);
    for mode in [TaskrunMode::DeferTaskrun, TaskrunMode::CoopTaskrun] {
        ring_round_trips(mode);
    }
    overflow_flushes();
    network_round_trips();
    journal_append_and_commits();
}

/// Every queueing, submitting and completing path of the ring: NOPs (the drain's fast
/// path), fixed reads and writes (frames, bytes), a write linked to an fdatasync, an
/// fsync, a timeout and its cancellation, a full SQ submitted early, `reap`, `drain`,
/// `wait_one`, `wait_for`, `run`, and the borrowed-buffer `write_at`/`read_at`.
#[allow(clippy::too_many_lines, reason = "one round through every path")]
fn ring_round_trips(mode: TaskrunMode) {
    let Some(mut ring) = ring(RingOptions::new(64).mode(mode)) else {
        return;
    };
    ring.register_frame_pool(
        FramePool::new(FramePoolOptions::new(4096, 32).populate(true)).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = scratch_file(dir.path(), "z");
    file.set_len(1 << 20).unwrap();
    let t = Target::from(&file);
    let mut out = [Completion::default(); 64];
    let round = |ring: &mut Ring, out: &mut [Completion; 64]| {
        for i in 0..32u64 {
            ring.nop(i).unwrap();
        }
        ring.submit_and_wait(32).unwrap();
        let mut n = 0;
        while n < 32 {
            n += ring.reap(&mut out[n..]).unwrap();
        }
        for i in 0..16u32 {
            let range = PoolRange::new(i as usize * 4096, 4096);
            ring.read_fixed(t, range, u64::from(i) * 4096, u64::from(i))
                .unwrap();
        }
        ring.submit_and_wait(16).unwrap();
        let mut n = 0;
        while n < 16 {
            n += ring.reap(&mut out[n..]).unwrap();
        }
        assert!(out[..16].iter().all(|c| c.result() == Ok(4096)));
        for i in 0..32u64 {
            ring.nop(i).unwrap();
        }
        ring.submit_and_wait(32).unwrap();
        let mut n = 0;
        while n < 32 {
            n += ring.drain(|c| assert!(c.tag < 32)).unwrap();
        }
        ring.nop(999).unwrap();
        assert_eq!(ring.wait_one().unwrap().tag, 999);
        // A write linked to its fdatasync, then an fsync.
        let (w, s) = ring
            .write_fixed_then_fdatasync(t, PoolRange::new(0, 4096), 8192, 5)
            .unwrap();
        let mut wrote = None;
        let c = ring.wait_for(s, |c| wrote = Some(c)).unwrap();
        assert_eq!(c.result(), Ok(0));
        assert_eq!(wrote.map(|c| (c.op, c.result())), Some((w, Ok(4096))));
        let f = ring.sync(t, false, 6).unwrap();
        assert_eq!(ring.run(f, |_| {}).unwrap(), 0);
        let w = ring
            .write_fixed(t, PoolRange::new(4096, 100), 0, 7)
            .unwrap();
        assert_eq!(ring.run(w, |_| {}).unwrap(), 100);
        // A timeout cancelled before it fires.
        let long = ring.timeout(Duration::from_mins(1), 8).unwrap();
        let cancel = ring.cancel(long, 9).unwrap();
        let mut cancel_seen = false;
        let c = ring
            .wait_for(long, |c| cancel_seen |= c.op == cancel)
            .unwrap();
        assert!(c.result().is_err());
        if !cancel_seen {
            ring.wait_for(cancel, |_| {}).unwrap();
        }
        // More NOPs than the SQ holds: the full SQ is submitted early.
        for i in 0..100u64 {
            ring.nop(i).unwrap();
        }
        ring.submit().unwrap();
        let mut n = 0;
        while n < 100 {
            let got = ring.reap(&mut out[..]).unwrap();
            if got == 0 {
                ring.submit_and_wait(1).unwrap();
            }
            n += got;
        }
        // Borrowed buffers (the calls wait for their completions).
        let mut buf = [0u8; 64];
        assert_eq!(ring.write_at(t, &buf, 65_536).unwrap(), 64);
        assert_eq!(ring.read_at(t, &mut buf, 65_536).unwrap(), 64);
        assert_eq!(ring.in_flight(), 0);
    };
    // Warm up (first-use lazy initialisation in std), then count.
    for i in 0..3u64 {
        ring.nop(i).unwrap();
    }
    ring.submit_and_wait(3).unwrap();
    let _ = ring.reap(&mut out);
    round(&mut ring, &mut out);
    let before = allocs();
    for _ in 0..100 {
        round(&mut ring, &mut out);
    }
    let after = allocs();
    assert!(
        ring.stats().snapshot().sq_full >= 100,
        "the SQ was never full"
    );
    assert_eq!(
        after - before,
        0,
        "the hot path ({mode:?}) allocated {} times",
        after - before
    );
}

/// UDP over loopback: `send` and `send_zc` from pool frames (result and notification), a
/// multishot receive into provided buffers, `provided_buffer` and `recycle_buffer`.
fn network_round_trips() {
    let Some(mut ring) = ring(RingOptions::new(64)) else {
        return;
    };
    ring.register_frame_pool(
        FramePool::new(FramePoolOptions::new(4096, 4).populate(true)).unwrap(),
    )
    .unwrap();
    ring.setup_provided_buffers(3, 16, 2048).unwrap();
    let zc = ring.probe().supports(io_uring::opcode::SendZc::CODE);
    assert!(
        zc || std::env::var_os("CI").is_none(),
        "SEND_ZC must work on CI"
    );
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(rx.local_addr().unwrap()).unwrap();
    let (rt, tt) = (Target::from(&rx), Target::from(&tx));
    let recv = ring.recv_multishot(rt, 1).unwrap();
    ring.pool_bytes_mut(PoolRange::new(0, 8192))
        .unwrap()
        .fill(9);
    let round = |ring: &mut Ring| {
        let a = ring.send(tt, PoolRange::new(0, 64), 2).unwrap();
        let b = if zc {
            ring.send_zc(tt, PoolRange::new(4096, 128), 3).unwrap()
        } else {
            ring.send(tt, PoolRange::new(4096, 128), 3).unwrap()
        };
        let (mut datagrams, mut sends) = (0, 0);
        while datagrams < 2 || sends < 2 {
            let c = ring.wait_one().unwrap();
            if c.op == recv {
                assert!(c.more, "the multishot receive ended: {c:?}");
                let bid = c.buffer.unwrap();
                let len = c.result().unwrap() as usize;
                assert!(
                    ring.provided_buffer(bid, len)
                        .unwrap()
                        .iter()
                        .all(|x| *x == 9)
                );
                ring.recycle_buffer(bid).unwrap();
                datagrams += 1;
            } else if (c.op == a || c.op == b) && !c.more {
                sends += 1;
            }
        }
        assert_eq!(ring.in_flight(), 1);
    };
    round(&mut ring);
    let before = allocs();
    for _ in 0..50 {
        round(&mut ring);
    }
    let after = allocs();
    assert_eq!(
        after - before,
        0,
        "sends and the multishot receive allocated {} times",
        after - before
    );
}

/// A CQ of 4 entries with 48 completions pending: `drain` and `reap` flush the kernel's
/// overflow backlog (an enter with GETEVENTS) without allocating.
fn overflow_flushes() {
    let Some(mut ring) = ring(RingOptions::new(4).cq_entries(4).max_in_flight(64)) else {
        return;
    };
    let round = |ring: &mut Ring, use_drain: bool| {
        for i in 0..48u64 {
            ring.nop(i).unwrap();
            if i % 4 == 3 {
                ring.submit().unwrap();
            }
        }
        let mut n = 0;
        let mut out = [Completion::default(); 3];
        while n < 48 {
            let got = if use_drain {
                ring.drain(|c| assert!(c.tag < 48)).unwrap()
            } else {
                ring.reap(&mut out).unwrap()
            };
            if got == 0 {
                ring.submit_and_wait(1).unwrap();
            }
            n += got;
        }
        assert_eq!(ring.in_flight(), 0);
    };
    round(&mut ring, true);
    let before_overflows = ring.stats().snapshot().cq_overflow;
    let before = allocs();
    for i in 0..20 {
        round(&mut ring, i % 2 == 0);
    }
    let after = allocs();
    assert!(
        ring.stats().snapshot().cq_overflow > before_overflows,
        "the CQ never overflowed"
    );
    assert_eq!(
        after - before,
        0,
        "the overflow flush allocated {} times",
        after - before
    );
}

fn journal_append_and_commits() {
    let payload = [7u8; 100];
    // Both blocking commits and commits in flight; the segment (64 MiB) never rotates here.
    for pipelined in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let opts = if pipelined {
            JournalOptions::new().commits_in_flight(4)
        } else {
            JournalOptions::new()
        };
        let mut j = match Journal::open(dir.path(), opts) {
            Ok(j) => j,
            Err(JournalError::Ring(e @ RingError::Setup { .. }))
                if std::env::var_os("CI").is_none() =>
            {
                eprintln!("skipping: {e}");
                return;
            }
            Err(e) => panic!("opening the journal failed: {e}"),
        };
        let round = |j: &mut Journal| {
            for _ in 0..64 {
                j.append(&payload).unwrap();
            }
            if pipelined {
                let last = j.start_commit().unwrap();
                j.poll_commits().unwrap();
                if last.is_multiple_of(256) {
                    assert_eq!(j.wait_durable(last).unwrap(), last);
                }
            } else {
                let last = j.next_seq() - 1;
                assert_eq!(j.commit().unwrap(), last);
            }
        };
        round(&mut j);
        let before = allocs();
        for _ in 0..200 {
            round(&mut j);
        }
        let last = j.next_seq() - 1;
        assert_eq!(j.wait_durable(last).unwrap(), last);
        let after = allocs();
        assert_eq!(
            after - before,
            0,
            "journal append/commit (pipelined: {pipelined}) allocated {} times",
            after - before
        );
        assert_eq!(j.durable_seq(), 201 * 64);
    }
}
