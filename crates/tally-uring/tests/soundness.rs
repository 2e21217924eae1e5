//! The engine against its kernel-facing promises: memory the kernel may still write is
//! never freed or handed out, linked entries stay linked, calls that could only block
//! forever return an error instead, and bad input is refused before it reaches the kernel.
//!
//! Each test skips with a printed reason when the kernel refuses io_uring, except on CI
//! (`CI` set: root on Linux 6.x), where a refusal fails the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod common;
use common::{ring, run_child, scratch_file, with_pool};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_core_types::{FramePool, FramePoolOptions};
use tally_uring::{
    Completion, Errno, OpKind, PoolRange, Ring, RingError, RingOptions, SqPoll, Target, TaskrunMode,
};

/// A pipe as (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0i32; 2];
    // SAFETY: `pipe2` writes two descriptors into the live array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (std::fs::File::from(r), std::fs::File::from(w))
}

/// Runs `f` on its own thread and fails if it does not finish within `limit` (the thread
/// is left behind: the test fails either way).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(e) => panic!("{what} did not return within {limit:?} ({e})"),
    }
}

/// Dropping a ring whose read was queued but never submitted, on a pipe nobody writes
/// to, returns promptly (the drop used to submit the read and then wait for it forever).
#[test]
fn drop_with_an_unsubmitted_read_that_never_completes_returns() {
    let sqpoll = Some(SqPoll {
        idle_ms: 50,
        cpu: None,
    });
    for opts in [
        RingOptions::new(8).mode(TaskrunMode::CoopTaskrun),
        RingOptions::new(8).mode(TaskrunMode::Plain).sqpoll(sqpoll),
    ] {
        let Some(mut r) = with_pool(opts, 2) else {
            return;
        };
        let (rd, wr) = pipe();
        r.read_fixed(Target::from(&rd), PoolRange::new(0, 4096), 0, 1)
            .unwrap();
        assert_eq!(r.in_flight(), 1);
        within(Duration::from_secs(20), "Ring::drop", move || drop(r));
        drop((rd, wr));
    }
    // A DeferTaskrun ring is dropped on its own thread (the test thread is its creator).
    let Some(mut r) = with_pool(RingOptions::new(8), 2) else {
        return;
    };
    let (rd, wr) = pipe();
    r.read_fixed(Target::from(&rd), PoolRange::new(0, 4096), 0, 1)
        .unwrap();
    let start = Instant::now();
    drop(r);
    assert!(start.elapsed() < Duration::from_secs(10));
    drop((rd, wr));
}

/// A `DeferTaskrun` ring dropped on another thread than its creator cannot wait for its
/// operations there: the drop returns promptly (the memory is leaked on purpose) and the
/// kernel's cancellation at close leaves the pipe's data unread.
#[test]
fn drop_on_a_foreign_thread_returns_and_the_read_is_cancelled() {
    let Some(mut r) = with_pool(RingOptions::new(8), 2) else {
        return;
    };
    let (mut rd, mut wr) = pipe();
    r.read_fixed(Target::from(&rd), PoolRange::new(0, 4096), 0, 1)
        .unwrap();
    r.submit().unwrap();
    within(Duration::from_secs(20), "Ring::drop", move || drop(r));
    std::thread::sleep(Duration::from_millis(50));
    wr.write_all(&[7; 100]).unwrap();
    drop(wr);
    let mut back = Vec::new();
    rd.read_to_end(&mut back).unwrap();
    assert_eq!(
        back.len(),
        100,
        "the dropped ring's read consumed pipe data"
    );
}

/// A read submitted on a pipe, the ring dropped, then the pipe written: the cancelled read
/// takes none of the data, and memory mapped afterwards (likely at the old pool's
/// address) is not written by the kernel.
#[test]
fn drop_with_a_submitted_read_cancels_it_and_writes_no_memory_later() {
    for mode in [TaskrunMode::DeferTaskrun, TaskrunMode::CoopTaskrun] {
        let Some(mut r) = with_pool(RingOptions::new(8).mode(mode), 4) else {
            return;
        };
        let (mut rd, mut wr) = pipe();
        for i in 0..4u64 {
            r.read_fixed(
                Target::from(&rd),
                PoolRange::new(i as usize * 4096, 4096),
                0,
                i,
            )
            .unwrap();
        }
        r.submit().unwrap();
        let start = Instant::now();
        drop(r);
        assert!(start.elapsed() < Duration::from_secs(10));
        let mut fresh = FramePool::new(FramePoolOptions::new(4096, 4).populate(true)).unwrap();
        fresh.as_mut_slice().fill(0xAA);
        wr.write_all(&[0x55; 4096]).unwrap();
        drop(wr);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            fresh.as_slice().iter().all(|b| *b == 0xAA),
            "memory mapped after the drop was written by a read of the dropped ring"
        );
        let mut back = Vec::new();
        rd.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 4096, "a cancelled read consumed pipe data");
    }
}

/// On an SQPOLL ring the kernel thread takes entries as soon as they are published: a
/// write and its linked fdatasync published one at a time could be taken apart, and the
/// sync then ran on its own (it succeeded after a failed write). Each must be cancelled.
#[test]
fn linked_write_and_sync_stay_linked_on_an_sqpoll_ring() {
    let Some(mut r) = with_pool(
        RingOptions::new(8)
            .mode(TaskrunMode::Plain)
            .sqpoll(Some(SqPoll {
                idle_ms: 50,
                cpu: None,
            })),
        2,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ro"), b"abc").unwrap();
    let ro = std::fs::File::open(dir.path().join("ro")).unwrap();
    let mut broken = 0;
    for i in 0..2000u64 {
        let (w, s) = r
            .write_fixed_then_fdatasync(Target::from(&ro), PoolRange::new(0, 10), 0, i)
            .unwrap();
        let mut write = None;
        let c = r.wait_for(s, |c| write = Some(c)).unwrap();
        if write.is_none() {
            write = Some(r.wait_for(w, |_| {}).unwrap());
        }
        assert_eq!(write.unwrap().result(), Err(Errno(libc::EBADF)));
        if c.result() != Err(Errno(libc::ECANCELED)) {
            broken += 1;
        }
    }
    assert_eq!(broken, 0, "{broken} of 2000 syncs ran without their write");
}

/// Waiting for an operation whose completion was already consumed, or for any completion
/// with nothing in flight, is an error (it used to block forever).
#[test]
fn waiting_for_nothing_is_an_error_not_a_hang() {
    let Some(mut r) = ring(RingOptions::new(8).mode(TaskrunMode::CoopTaskrun)) else {
        return;
    };
    let op = r.nop(1).unwrap();
    r.submit_and_wait(1).unwrap();
    let mut n = 0;
    while n == 0 {
        n = r.drain(|_| {}).unwrap();
    }
    let (r, run, one) = within(Duration::from_secs(20), "run/wait_one", move || {
        let run = r.run(op, |_| {});
        let one = r.wait_one();
        (r, run, one)
    });
    assert!(
        matches!(run, Err(RingError::NotInFlight { user_data }) if user_data == op.user_data()),
        "{run:?}"
    );
    assert!(matches!(one, Err(RingError::NothingInFlight)), "{one:?}");
    // A stale id never matches a later operation in the same slot.
    let mut r = r;
    let again = r.nop(2).unwrap();
    assert_ne!(again, op);
    assert!(matches!(
        r.run(op, |_| {}),
        Err(RingError::NotInFlight { .. })
    ));
    assert_eq!(r.run(again, |_| {}).unwrap(), 0);
}

/// An `OpId` names the ring that issued it: another ring refuses it instead of waiting
/// for, running or cancelling its own operation that happens to have the same slot and
/// generation (two fresh rings used to hand out identical ids).
#[test]
fn an_op_id_of_another_ring_is_refused() {
    let opts = RingOptions::new(8).mode(TaskrunMode::CoopTaskrun);
    let (Some(mut a), Some(mut b)) = (ring(opts), ring(opts)) else {
        return;
    };
    let op_a = a.nop(1).unwrap();
    let op_b = b.nop(2).unwrap();
    assert_ne!(op_a, op_b, "two rings issued the same id");
    assert!(a.is_in_flight(op_a) && b.is_in_flight(op_b));
    assert!(!b.is_in_flight(op_a) && !a.is_in_flight(op_b));
    let foreign = |e: Option<&RingError>| {
        matches!(e, Some(RingError::ForeignOp { user_data, issuer, ring })
            if *user_data == op_a.user_data() && issuer != ring)
    };
    let waited = b.wait_for(op_a, |_| {});
    assert!(foreign(waited.as_ref().err()), "{waited:?}");
    let ran = b.run(op_a, |_| {});
    assert!(foreign(ran.as_ref().err()), "{ran:?}");
    let cancelled = b.cancel(op_a, 3);
    assert!(foreign(cancelled.as_ref().err()), "{cancelled:?}");
    // Nothing was queued or consumed on `b` by the refusals; both operations still run.
    assert_eq!(b.in_flight(), 1);
    assert_eq!(b.run(op_b, |_| {}).unwrap(), 0);
    assert_eq!(a.run(op_a, |_| {}).unwrap(), 0);
    assert_eq!(b.in_flight(), 0);
}

/// Re-registering files while an operation names a registered slot would send that
/// operation to whatever file the slot holds next; it is refused instead.
#[test]
fn files_cannot_be_reregistered_under_operations_in_flight() {
    let Some(mut r) = with_pool(RingOptions::new(8), 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (scratch_file(dir.path(), "a"), scratch_file(dir.path(), "b"));
    r.register_files(&[a.as_raw_fd()]).unwrap();
    r.pool_bytes_mut(PoolRange::new(0, 5))
        .unwrap()
        .copy_from_slice(b"hello");
    let w = r
        .write_fixed(Target::Fixed(0), PoolRange::new(0, 5), 0, 1)
        .unwrap();
    let swapped = r.register_files(&[b.as_raw_fd()]);
    assert_eq!(r.run(w, |_| {}).unwrap(), 5);
    assert_eq!(
        std::fs::read(dir.path().join("b")).unwrap(),
        b"",
        "a write queued for file a went to file b"
    );
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"hello");
    assert!(
        matches!(swapped, Err(RingError::Busy { in_flight: 1 })),
        "{swapped:?}"
    );
    // Idle: re-registering works and the slot now names b.
    r.register_files(&[b.as_raw_fd()]).unwrap();
    let w = r
        .write_fixed(Target::Fixed(0), PoolRange::new(0, 5), 0, 2)
        .unwrap();
    assert_eq!(r.run(w, |_| {}).unwrap(), 5);
    assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"hello");
}

/// A `DeferTaskrun` ring moved to another thread cannot submit there (the kernel answers
/// EEXIST); a borrowed-buffer call used to retry forever, it now refuses at once.
#[test]
fn borrowed_io_from_a_foreign_thread_is_refused_not_spun_on() {
    let Some(r) = ring(RingOptions::new(8)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("f")).unwrap();
    let (mut r, res) = within(Duration::from_secs(20), "write_at", move || {
        let mut r = r;
        let res = r.write_at(Target::from(&file), b"data", 0);
        (r, res)
    });
    assert!(matches!(res, Err(RingError::WrongThread)), "{res:?}");
    assert_eq!(r.in_flight(), 0);
    // The creating thread still uses it.
    let op = r.nop(1).unwrap();
    assert_eq!(r.run(op, |_| {}).unwrap(), 0);
}

/// Sizes the kernel or the address space cannot hold are `InvalidOptions` (a huge
/// in-flight slab aborted the process; an oversized CQ looked like a kernel refusal).
#[test]
fn oversized_options_are_invalid_not_an_abort() {
    for opts in [
        RingOptions::new(8).max_in_flight(u32::MAX - 1),
        RingOptions::new(8).cq_entries(1 << 17),
    ] {
        let res = Ring::new(opts);
        assert!(
            matches!(res, Err(RingError::InvalidOptions { .. })),
            "{opts:?}: {res:?}"
        );
    }
}

/// An offset with the top bit set is refused: the kernel reads `u64::MAX` as "the file's
/// current position", so a wrapped offset silently read or wrote the wrong place.
#[test]
fn offsets_beyond_i64_max_are_refused() {
    let Some(mut r) = with_pool(RingOptions::new(8), 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"abcdef").unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("f"))
        .unwrap();
    let t = Target::from(&file);
    for off in [u64::MAX, 1 << 63] {
        let res = r.read_fixed(t, PoolRange::new(0, 6), off, 0);
        if let Ok(op) = res {
            let got = r.run(op, |_| {});
            panic!("offset {off:#x} was accepted and read {got:?}");
        }
        assert!(
            matches!(res, Err(RingError::OffsetTooLarge { offset }) if offset == off),
            "{res:?}"
        );
        assert!(matches!(
            r.write_fixed(t, PoolRange::new(0, 6), off, 0),
            Err(RingError::OffsetTooLarge { .. })
        ));
        let mut buf = [0u8; 6];
        assert!(matches!(
            r.read_at(t, &mut buf, off),
            Err(RingError::OffsetTooLarge { .. })
        ));
        assert_eq!(r.in_flight(), 0);
    }
    // The largest valid offset still reaches the kernel (and fails there).
    let op = r
        .read_fixed(t, PoolRange::new(0, 6), i64::MAX as u64, 0)
        .unwrap();
    let c: Completion = r.wait_for(op, |_| {}).unwrap();
    assert_eq!(c.kind, OpKind::ReadFixed);
    assert!(matches!(c.result(), Ok(0) | Err(_)));
}

/// A submission queue of one entry cannot hold a write and its linked fdatasync in one
/// batch: the pair was split over two submissions and the sync ran unlinked (it succeeded
/// after a failed write, acknowledging data that was never written). It is refused now.
#[test]
fn linked_write_and_sync_never_split_over_submissions() {
    let Some(mut r) = with_pool(RingOptions::new(1).mode(TaskrunMode::CoopTaskrun), 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ro"), b"abc").unwrap();
    let ro = std::fs::File::open(dir.path().join("ro")).unwrap();
    match r.write_fixed_then_fdatasync(Target::from(&ro), PoolRange::new(0, 10), 0, 1) {
        Err(RingError::InvalidOptions { .. }) => assert_eq!(r.in_flight(), 0),
        Ok((w, s)) => {
            let mut write = None;
            let c = r.wait_for(s, |c| write = Some(c)).unwrap();
            if write.is_none() {
                write = Some(r.wait_for(w, |_| {}).unwrap());
            }
            assert_eq!(write.unwrap().result(), Err(Errno(libc::EBADF)));
            assert_eq!(
                c.result(),
                Err(Errno(libc::ECANCELED)),
                "the fdatasync ran without its failed write"
            );
        }
        Err(e) => panic!("{e}"),
    }
    // The frames are free again either way.
    r.pool_bytes_mut(PoolRange::new(0, 10)).unwrap();
}

/// An entry the kernel rejects while preparing it (a timeout with a negative `tv_sec`)
/// stops that submission partway (no `SUBMIT_ALL`): the rejected one completes with its
/// error, the ones behind it stay queued and go in with the next enter, and every
/// operation completes exactly once.
#[test]
fn a_submission_stopped_partway_loses_no_operation() {
    let Some(mut r) = ring(RingOptions::new(16)) else {
        return;
    };
    r.nop(0).unwrap();
    let bad = r.timeout(Duration::MAX, 1).unwrap();
    for tag in 2..6 {
        r.nop(tag).unwrap();
    }
    let submitted = r.submit_and_wait(6).unwrap();
    assert!(submitted <= 6);
    let mut got = Vec::new();
    while r.in_flight() > 0 {
        got.push(r.wait_one().unwrap());
    }
    got.sort_by_key(|c| c.tag);
    assert_eq!(
        got.iter().map(|c| c.tag).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(got[1].op, bad);
    assert_eq!(got[1].result(), Err(Errno(libc::EINVAL)));
    assert!(
        got.iter()
            .filter(|c| c.tag != 1)
            .all(|c| c.result() == Ok(0))
    );
    assert!(matches!(r.wait_one(), Err(RingError::NothingInFlight)));
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// A signal that interrupts a thread blocked in `io_uring_enter` (EINTR) is retried, not
/// reported: the wait still ends with the timeout's own completion.
#[test]
fn a_signal_during_a_wait_is_retried() {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: installs a handler that does nothing, without SA_RESTART, for SIGUSR2 (no
    // other test of this binary uses it); the struct is zeroed and then filled in.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore_signal as *const () as usize;
        libc::sigemptyset(&raw mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &raw const sa, std::ptr::null_mut()),
            0
        );
    }
    if ring(RingOptions::new(8)).is_none() {
        return;
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut r = Ring::new(RingOptions::new(8)).unwrap();
        let t = r.timeout(Duration::from_millis(300), 1).unwrap();
        ready_tx.send(()).unwrap();
        let start = Instant::now();
        let c = r.wait_for(t, |_| {});
        (c, start.elapsed())
    });
    ready_rx.recv().unwrap();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(30));
        // SAFETY: the thread is alive until joined below; SIGUSR2 has a handler.
        unsafe { libc::pthread_kill(waiter.as_pthread_t(), libc::SIGUSR2) };
    }
    let (c, elapsed) = waiter.join().unwrap();
    let c = c.unwrap();
    assert_eq!(c.result(), Err(Errno(libc::ETIME)));
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
}

/// Out-of-range and degenerate arguments to every entry point are errors or harmless
/// operations, never a panic.
#[test]
#[allow(clippy::too_many_lines, reason = "one pass over every entry point")]
fn degenerate_arguments_never_panic() {
    let Some(mut r) = with_pool(RingOptions::new(8).mode(TaskrunMode::CoopTaskrun), 2) else {
        return;
    };
    let pool_len = 2 * 4096;
    let dir = tempfile::tempdir().unwrap();
    let file = scratch_file(dir.path(), "f");
    let t = Target::from(&file);
    // Ranges: empty at the end is fine, anything past it is refused.
    assert_eq!(
        r.pool_bytes(PoolRange::new(pool_len, 0)).unwrap(),
        &[] as &[u8]
    );
    for (off, len) in [
        (usize::MAX, 1),
        (usize::MAX, 0),
        (pool_len, 1),
        (pool_len - 1, u32::MAX),
        (1, u32::try_from(pool_len).unwrap()),
    ] {
        let range = PoolRange::new(off, len);
        assert!(matches!(
            r.pool_bytes(range),
            Err(RingError::RangeOutOfPool { .. })
        ));
        assert!(matches!(
            r.pool_bytes_mut(range),
            Err(RingError::RangeOutOfPool { .. })
        ));
        assert!(matches!(
            r.read_fixed(t, range, 0, 0),
            Err(RingError::RangeOutOfPool { .. })
        ));
        assert!(matches!(
            r.send(t, range, 0),
            Err(RingError::RangeOutOfPool { .. })
        ));
    }
    // Zero-length operations complete with 0.
    let op = r.read_fixed(t, PoolRange::new(pool_len, 0), 0, 1).unwrap();
    assert_eq!(r.run(op, |_| {}).unwrap(), 0);
    let op = r.write_fixed(t, PoolRange::new(0, 0), 0, 1).unwrap();
    assert_eq!(r.run(op, |_| {}).unwrap(), 0);
    assert_eq!(r.write_at(t, &[], 0).unwrap(), 0);
    assert_eq!(r.read_at(t, &mut [], 0).unwrap(), 0);
    r.rw_batch(t, &mut []).unwrap();
    let op = r.timeout(Duration::ZERO, 1).unwrap();
    assert!(r.run(op, |_| {}).is_err()); // ETIME
    let op = r.fallocate(t, 0, 0, 0, 1).unwrap();
    assert!(matches!(r.run(op, |_| {}), Err(RingError::Op { .. }))); // EINVAL
    // Registered files and provided buffers that do not exist.
    for index in [0, u32::MAX] {
        assert!(matches!(
            r.read_fixed(Target::Fixed(index), PoolRange::new(0, 1), 0, 0),
            Err(RingError::FileIndex { .. })
        ));
        assert!(matches!(
            r.sync(Target::Fixed(index), true, 0),
            Err(RingError::FileIndex { .. })
        ));
    }
    assert!(matches!(
        r.register_files(&[]),
        Err(RingError::Register { .. })
    ));
    assert!(matches!(
        r.provided_buffer(0, 1),
        Err(RingError::NoProvidedBuffers)
    ));
    assert!(matches!(
        r.recycle_buffer(0),
        Err(RingError::NoProvidedBuffers)
    ));
    for (count, size) in [(0u16, 2048usize), (3, 2048), (8, 1), (8, 3000)] {
        assert!(
            r.setup_provided_buffers(1, count, size).is_err(),
            "{count} x {size}"
        );
    }
    assert!(matches!(
        r.setup_provided_buffers(1, 1, 1 << 33),
        Err(RingError::TooLong { .. })
    ));
    r.setup_provided_buffers(1, 4, 2048).unwrap();
    for bid in [0, 3, 4, u16::MAX] {
        assert!(matches!(
            r.provided_buffer(bid, usize::MAX),
            Err(RingError::BufferNotDelivered { .. })
        ));
        assert!(matches!(
            r.recycle_buffer(bid),
            Err(RingError::BufferNotDelivered { .. })
        ));
    }
    // Cancelling an id that names nothing completes with ENOENT.
    let c = r.cancel(tally_uring::OpId::default(), 1).unwrap();
    assert_eq!(
        r.wait_for(c, |_| {}).unwrap().result(),
        Err(Errno(libc::ENOENT))
    );
    assert_eq!(r.in_flight(), 0);
}

/// Asking `submit_and_wait` for more completions than operations in flight used to block
/// forever (single-shot operations make one completion each); the wait is capped at the
/// operations in flight.
#[test]
fn waiting_for_more_completions_than_operations_returns() {
    for mode in [TaskrunMode::DeferTaskrun, TaskrunMode::CoopTaskrun] {
        let Some(mut r) = ring(RingOptions::new(8).mode(mode)) else {
            return;
        };
        // On its own thread for the DeferTaskrun ring: `within` moves it, so build there.
        let (n, got) = within(Duration::from_secs(20), "submit_and_wait(5)", move || {
            let mut r = Ring::new(RingOptions::new(8).mode(mode)).unwrap();
            r.nop(1).unwrap();
            r.nop(2).unwrap();
            let n = r.submit_and_wait(5).unwrap();
            let mut out = [Completion::default(); 8];
            let mut got = 0;
            while got < 2 {
                got += r.reap(&mut out).unwrap();
            }
            // Nothing in flight: returns at once.
            r.submit_and_wait(1).unwrap();
            (n, got)
        });
        assert_eq!((n, got), (2, 2));
        r.nop(3).unwrap();
        assert_eq!(r.submit_and_wait(usize::MAX).unwrap(), 1);
        assert_eq!(r.wait_one().unwrap().tag, 3);
    }
}

/// `run` on a zero-copy send returns the send's own result (bytes, or its error), not the
/// notification's 0: a failed send used to come back as `Ok(0)`.
#[test]
fn run_on_send_zc_reports_the_send_result() {
    let Some(mut r) = with_pool(RingOptions::new(8), 2) else {
        return;
    };
    if !r.probe().supports(io_uring::opcode::SendZc::CODE) {
        assert!(std::env::var_os("CI").is_none(), "SEND_ZC must work on CI");
        return;
    }
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Not connected: the send fails (no destination).
    let op = r
        .send_zc(Target::from(&tx), PoolRange::new(0, 100), 1)
        .unwrap();
    let res = r.run(op, |_| {});
    assert!(
        matches!(res, Err(RingError::Op { errno, .. }) if errno == Errno(libc::EDESTADDRREQ)),
        "{res:?}"
    );
    assert_eq!(r.in_flight(), 0);
    tx.connect(rx.local_addr().unwrap()).unwrap();
    let op = r
        .send_zc(Target::from(&tx), PoolRange::new(0, 100), 2)
        .unwrap();
    assert_eq!(r.run(op, |_| {}).unwrap(), 100);
    assert_eq!(r.in_flight(), 0);
    let mut buf = [0u8; 200];
    assert_eq!(rx.recv(&mut buf).unwrap(), 100);
}

/// A child process without `CAP_IPC_LOCK` (it switches to an unprivileged user) and with
/// a 64 KiB `RLIMIT_MEMLOCK` registers a 1 MiB pool: the kernel refuses with ENOMEM and
/// the error says to raise `RLIMIT_MEMLOCK`.
#[test]
fn buffer_registration_over_memlock_names_rlimit_memlock() {
    const ENV: &str = "TALLY_URING_MEMLOCK_CHILD";
    if std::env::var_os(ENV).is_some() {
        let lim = libc::rlimit {
            rlim_cur: 64 << 10,
            rlim_max: 64 << 10,
        };
        // SAFETY: plain system calls on live locals; this process is the test's child.
        unsafe {
            assert_eq!(libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const lim), 0);
            if libc::geteuid() == 0 {
                assert_eq!(libc::setgid(65534), 0);
                assert_eq!(libc::setuid(65534), 0);
            }
        }
        let mut r = match Ring::new(RingOptions::new(8)) {
            Ok(r) => r,
            Err(e) => {
                println!("CHILD-SKIP: {e}");
                return;
            }
        };
        let pool = FramePool::new(FramePoolOptions::new(4096, 256)).unwrap();
        match r.register_frame_pool(pool) {
            Err(e @ RingError::Register { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("RLIMIT_MEMLOCK"), "{msg}");
                println!("CHILD-OK: {msg}");
            }
            other => panic!("expected a registration error, got {other:?}"),
        }
        return;
    }
    let out = run_child("buffer_registration_over_memlock_names_rlimit_memlock", ENV);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.contains("CHILD-SKIP") && std::env::var_os("CI").is_none() {
        eprintln!("skipping: {stdout}");
        return;
    }
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
