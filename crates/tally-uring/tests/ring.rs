//! Ring tests against the real kernel. Each test skips with a printed reason when the
//! kernel refuses io_uring, except on CI (`CI` set: root on Linux 6.x), where a refusal
//! fails the test.
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
use common::{ring, run_child, scratch_file, with_pool};
use std::io::{Read, Seek, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tally_core_types::{FramePool, FramePoolOptions};
use tally_uring::{
    Completion, OpKind, PoolRange, Ring, RingError, RingOptions, Target, TaskrunMode,
};

#[test]
fn nop_batch_is_one_enter_and_typed() {
    for mode in [
        TaskrunMode::DeferTaskrun,
        TaskrunMode::CoopTaskrun,
        TaskrunMode::Plain,
    ] {
        let Some(mut r) = ring(RingOptions::new(64).mode(mode)) else {
            return;
        };
        assert!(r.probe().supported_count() > 10);
        assert!(r.probe().supports(io_uring::opcode::Nop::CODE));
        let before = r.stats().snapshot();
        for tag in 0..32 {
            r.nop(tag).unwrap();
        }
        assert_eq!(r.in_flight(), 32);
        r.submit_and_wait(32).unwrap();
        let mut out = [Completion::default(); 64];
        let n = r.reap(&mut out).unwrap();
        assert_eq!(n, 32);
        let mut tags: Vec<u64> = out[..n].iter().map(|c| c.tag).collect();
        tags.sort_unstable();
        assert_eq!(tags, (0..32).collect::<Vec<_>>());
        assert!(
            out[..n]
                .iter()
                .all(|c| c.kind == OpKind::Nop && c.result() == Ok(0))
        );
        let d = r.stats().snapshot().delta(&before);
        assert_eq!(
            (d.submitted, d.completed, d.enter_syscalls, d.errors),
            (32, 32, 1, 0)
        );
        assert_eq!(r.in_flight(), 0);
    }
}

#[test]
fn slab_full_is_an_error_not_a_crash() {
    let Some(mut r) = ring(RingOptions::new(8).max_in_flight(4)) else {
        return;
    };
    for t in 0..4 {
        r.nop(t).unwrap();
    }
    assert!(matches!(
        r.nop(9),
        Err(RingError::InFlightFull { capacity: 4 })
    ));
    assert_eq!(r.stats().snapshot().in_flight_full, 1);
    r.submit_and_wait(4).unwrap();
    let mut out = [Completion::default(); 8];
    assert_eq!(r.reap(&mut out).unwrap(), 4);
    r.nop(10).unwrap();
}

/// More operations in flight on one frame than a 16-bit counter holds: the frame must
/// stay busy until the very last of them is reaped (a saturating `u16` count reached 0
/// one completion early and handed out memory the kernel still used).
#[test]
fn a_frame_stays_busy_under_more_than_65535_operations() {
    const OPS: usize = 65_536; // u16::MAX + 1, and exactly the largest CQ: no overflow
    let Some(mut r) = ring(
        RingOptions::new(4096)
            .cq_entries(65_536)
            .max_in_flight(OPS as u32 + 8),
    ) else {
        return;
    };
    r.register_frame_pool(FramePool::new(FramePoolOptions::new(4096, 2).populate(true)).unwrap())
        .unwrap();
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let t = Target::from(&null);
    for i in 0..OPS {
        // One byte of frame 0 each; a full SQ is submitted early.
        r.write_fixed(t, PoolRange::new(0, 1), 0, i as u64).unwrap();
    }
    r.submit().unwrap();
    assert_eq!(r.in_flight() as usize, OPS);
    let mut out = vec![Completion::default(); 4096];
    let mut reaped = 0usize;
    let mut reap_until = |r: &mut Ring, target: usize| {
        while reaped < target {
            let want = (target - reaped).min(out.len());
            let n = r.reap(&mut out[..want]).unwrap();
            assert!(out[..n].iter().all(|c| c.result() == Ok(1)));
            reaped += n;
            if n == 0 {
                r.submit_and_wait(1).unwrap();
            }
        }
    };
    reap_until(&mut r, OPS - 1);
    assert_eq!(r.in_flight(), 1);
    assert!(
        matches!(
            r.pool_bytes(PoolRange::new(0, 1)),
            Err(RingError::FrameInFlight { frame: 0 })
        ),
        "frame 0 reads as idle while a write from it is still in flight"
    );
    assert!(r.pool_bytes_mut(PoolRange::new(0, 1)).is_err());
    // The other frame was never used.
    assert!(r.pool_bytes(PoolRange::new(4096, 1)).is_ok());
    reap_until(&mut r, OPS);
    assert_eq!(r.in_flight(), 0);
    assert!(r.pool_bytes_mut(PoolRange::new(0, 1)).is_ok());
}

#[test]
fn sq_full_submits_early() {
    let Some(mut r) = ring(RingOptions::new(4).cq_entries(64).max_in_flight(64)) else {
        return;
    };
    for t in 0..20 {
        r.nop(t).unwrap();
    }
    assert!(r.stats().snapshot().sq_full >= 4);
    let mut seen = 0;
    let mut out = [Completion::default(); 64];
    while seen < 20 {
        r.submit_and_wait(1).unwrap();
        seen += r.reap(&mut out).unwrap();
    }
    assert_eq!(seen, 20);
}

#[test]
fn cq_overflow_loses_nothing() {
    // CQ of 4 entries, 48 operations completed before anything is reaped.
    let Some(mut r) = ring(RingOptions::new(4).cq_entries(4).max_in_flight(64)) else {
        return;
    };
    assert!(r.probe().nodrop, "kernel without NODROP");
    for round in 0..12u64 {
        for t in 0..4 {
            r.nop(round * 4 + t).unwrap();
        }
        r.submit().unwrap();
    }
    let mut out = [Completion::default(); 64];
    let mut tags = Vec::new();
    for _ in 0..100 {
        let n = r.reap(&mut out).unwrap();
        tags.extend(out[..n].iter().map(|c| c.tag));
        if tags.len() == 48 {
            break;
        }
        r.submit_and_wait(0).unwrap();
    }
    tags.sort_unstable();
    assert_eq!(tags, (0..48).collect::<Vec<_>>());
    assert!(
        r.stats().snapshot().cq_overflow >= 1,
        "overflow was not observed"
    );
    assert_eq!(r.in_flight(), 0);
}

#[test]
fn drain_delivers_in_place_frees_slots_and_frames_and_survives_overflow() {
    let Some(mut r) = with_pool(RingOptions::new(64), 8) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut file = scratch_file(dir.path(), "d");
    let data: Vec<u8> = (0..8 * 4096u32).map(|i| (i % 251) as u8).collect();
    file.write_all(&data).unwrap();
    let t = Target::from(&file);
    let before = r.stats().snapshot();
    for i in 0..8u32 {
        r.read_fixed(
            t,
            PoolRange::new(i as usize * 4096, 4096),
            u64::from(i) * 4096,
            100 + u64::from(i),
        )
        .unwrap();
    }
    for tag in 0..8 {
        r.nop(tag).unwrap();
    }
    // Frames of in-flight reads are refused until their completions are drained.
    assert!(matches!(
        r.pool_bytes(PoolRange::new(0, 4096)),
        Err(RingError::FrameInFlight { frame: 0 })
    ));
    r.submit_and_wait(16).unwrap();
    let mut got = Vec::new();
    while got.len() < 16 {
        r.drain(|c| got.push(c)).unwrap();
        if got.len() < 16 {
            r.submit_and_wait(1).unwrap();
        }
    }
    got.sort_by_key(|c| c.tag);
    for c in &got {
        if c.tag >= 100 {
            assert_eq!((c.kind, c.result()), (OpKind::ReadFixed, Ok(4096)));
        } else {
            assert_eq!((c.kind, c.result()), (OpKind::Nop, Ok(0)));
        }
    }
    assert_eq!(r.in_flight(), 0);
    assert_eq!(
        r.pool_bytes(PoolRange::new(0, 8 * 4096)).unwrap(),
        &data[..]
    );
    let d = r.stats().snapshot().delta(&before);
    assert_eq!((d.completed, d.bytes, d.errors), (16, 8 * 4096, 0));
    // A failing op is counted as an error and still frees its slot.
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    r.read_fixed(Target::Fd(-1), PoolRange::new(0, 4096), 0, 7)
        .unwrap();
    r.submit_and_wait(1).unwrap();
    let mut errs = 0;
    r.drain(|c| {
        assert_eq!(c.tag, 7);
        assert!(c.result().is_err());
        errs += 1;
    })
    .unwrap();
    assert_eq!((errs, r.in_flight()), (1, 0));
    assert_eq!(r.stats().snapshot().delta(&before).errors, 1);
    // CQ overflow: drain flushes the kernel's backlog, nothing is lost.
    let Some(mut small) = ring(RingOptions::new(4).cq_entries(4).max_in_flight(64)) else {
        return;
    };
    for round in 0..12u64 {
        for t in 0..4 {
            small.nop(round * 4 + t).unwrap();
        }
        small.submit().unwrap();
    }
    let mut tags = Vec::new();
    for _ in 0..100 {
        small.drain(|c| tags.push(c.tag)).unwrap();
        if tags.len() == 48 {
            break;
        }
        small.submit_and_wait(0).unwrap();
    }
    tags.sort_unstable();
    assert_eq!(tags, (0..48).collect::<Vec<_>>());
    assert_eq!(small.in_flight(), 0);
}

#[test]
fn fixed_write_read_fdatasync_fallocate_registered_files() {
    let Some(mut r) = with_pool(RingOptions::new(64), 8) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut file = scratch_file(dir.path(), "f");
    let t = Target::from(&file);
    // fallocate 1 MiB.
    let op = r.fallocate(t, 0, 1 << 20, 0, 1).unwrap();
    assert_eq!(r.run(op, |_| {}).unwrap(), 0);
    assert_eq!(file.metadata().unwrap().len(), 1 << 20);
    // write frame 0 linked to fdatasync.
    let range = PoolRange::new(0, 8192);
    r.pool_bytes_mut(range)
        .unwrap()
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i % 251) as u8);
    let (w, s) = r.write_fixed_then_fdatasync(t, range, 4096, 2).unwrap();
    // While in flight the frames are off limits.
    assert!(matches!(
        r.pool_bytes(range),
        Err(RingError::FrameInFlight { frame: 0 })
    ));
    assert!(matches!(
        r.pool_bytes_mut(PoolRange::new(4096, 10)),
        Err(RingError::FrameInFlight { frame: 1 })
    ));
    let mut kinds = Vec::new();
    let c = r
        .wait_for(s, |c| kinds.push((c.op, c.kind, c.raw_result)))
        .unwrap();
    assert_eq!(c.kind, OpKind::Fdatasync);
    assert_eq!(c.result(), Ok(0));
    assert_eq!(kinds, [(w, OpKind::WriteFixed, 8192)]);
    let mut back = vec![0u8; 8192];
    file.seek(std::io::SeekFrom::Start(4096)).unwrap();
    file.read_exact(&mut back).unwrap();
    assert_eq!(back, r.pool_bytes(range).unwrap());
    // Registered file + read_fixed into frames 4..6.
    r.register_files(&[file.as_raw_fd()]).unwrap();
    assert!(matches!(
        r.read_fixed(Target::Fixed(1), range, 0, 0),
        Err(RingError::FileIndex {
            index: 1,
            registered: 1
        })
    ));
    let into = PoolRange::new(4 * 4096, 8192);
    let op = r.read_fixed(Target::Fixed(0), into, 4096, 3).unwrap();
    assert_eq!(r.run(op, |_| {}).unwrap(), 8192);
    assert_eq!(r.pool_bytes(into).unwrap(), &back[..]);
    // Out-of-pool ranges are refused.
    assert!(matches!(
        r.read_fixed(t, PoolRange::new(7 * 4096, 8192), 0, 0),
        Err(RingError::RangeOutOfPool { .. })
    ));
    // Borrowed-buffer batch.
    let a = [7u8; 100];
    let mut b = [0u8; 100];
    assert_eq!(r.write_at(t, &a, 100_000).unwrap(), 100);
    assert_eq!(r.read_at(t, &mut b, 100_000).unwrap(), 100);
    assert_eq!(a, b);
    let st = r.stats().snapshot();
    assert!(st.bytes >= 8192 * 2 + 200);
    file.write_all(b"x").unwrap();
}

#[test]
fn linked_sync_is_cancelled_when_the_write_fails() {
    let Some(mut r) = with_pool(RingOptions::new(64), 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ro = {
        std::fs::write(dir.path().join("ro"), b"abc").unwrap();
        std::fs::File::open(dir.path().join("ro")).unwrap()
    };
    let (w, s) = r
        .write_fixed_then_fdatasync(Target::from(&ro), PoolRange::new(0, 10), 0, 0)
        .unwrap();
    let mut first = None;
    let c = r.wait_for(s, |c| first = Some(c)).unwrap();
    let first = first.unwrap();
    assert_eq!(first.op, w);
    assert_eq!(first.result(), Err(tally_uring::Errno(libc::EBADF)));
    assert_eq!(c.result(), Err(tally_uring::Errno(libc::ECANCELED)));
    assert_eq!(r.stats().snapshot().errors, 2);
    // The frame is free again.
    r.pool_bytes_mut(PoolRange::new(0, 10)).unwrap()[0] = 1;
}

#[test]
fn timeout_fires_and_cancel_works() {
    let Some(mut r) = ring(RingOptions::new(16)) else {
        return;
    };
    let start = Instant::now();
    let t = r.timeout(Duration::from_millis(20), 5).unwrap();
    let c = r.wait_for(t, |_| {}).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(19));
    assert_eq!(c.result(), Err(tally_uring::Errno(libc::ETIME)));
    // Cancel a long timeout.
    let long = r.timeout(Duration::from_secs(30), 6).unwrap();
    r.submit().unwrap();
    let cancel = r.cancel(long, 7).unwrap();
    let mut got = Vec::new();
    let c = r.wait_for(long, |c| got.push(c)).unwrap();
    assert_eq!(c.result(), Err(tally_uring::Errno(libc::ECANCELED)));
    if got.is_empty() {
        got.push(r.wait_for(cancel, |_| {}).unwrap());
    }
    assert_eq!(got[0].op, cancel);
    assert_eq!(got[0].result(), Ok(0));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn udp_recv_multishot_send_and_send_zc() {
    let Some(mut r) = with_pool(RingOptions::new(64), 4) else {
        return;
    };
    r.setup_provided_buffers(1, 8, 2048).unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(rx.local_addr().unwrap()).unwrap();
    let recv = r.recv_multishot(Target::from(&rx), 1).unwrap();
    r.submit().unwrap();
    let zc = r.probe().supports(io_uring::opcode::SendZc::CODE);
    assert!(
        zc || std::env::var_os("CI").is_none(),
        "SEND_ZC must be supported on CI (Linux 6.x)"
    );
    // Send three datagrams through the ring: plain send, send, send-zc.
    for (i, len) in [(0u8, 64u32), (1, 200), (2, 1000)] {
        let range = PoolRange::new(usize::from(i) * 4096, len);
        r.pool_bytes_mut(range).unwrap().fill(i + 1);
        if i == 2 && zc {
            r.send_zc(Target::from(&tx), range, 100 + u64::from(i))
                .unwrap();
        } else {
            r.send(Target::from(&tx), range, 100 + u64::from(i))
                .unwrap();
        }
    }
    let mut datagrams = Vec::new();
    let mut sends = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (datagrams.len() < 3 || sends.len() < 3 || r.in_flight() > 1) && Instant::now() < deadline
    {
        let c = r.wait_one().unwrap();
        match c.kind {
            OpKind::RecvMulti => {
                assert_eq!(c.op, recv);
                assert!(c.more, "multishot ended early: {c:?}");
                let bid = c.buffer.unwrap();
                let data = r
                    .provided_buffer(bid, c.result().unwrap() as usize)
                    .unwrap()
                    .to_vec();
                r.recycle_buffer(bid).unwrap();
                assert!(matches!(
                    r.recycle_buffer(bid),
                    Err(RingError::BufferNotDelivered { .. })
                ));
                datagrams.push(data);
            }
            OpKind::Send | OpKind::SendZc => sends.push(c.result().unwrap()),
            OpKind::SendZcNotif => assert!(!c.more),
            k => panic!("unexpected {k:?}"),
        }
    }
    assert_eq!(sends.len(), 3);
    datagrams.sort_by_key(Vec::len);
    assert_eq!(
        datagrams.iter().map(Vec::len).collect::<Vec<_>>(),
        [64, 200, 1000]
    );
    for (i, d) in datagrams.iter().enumerate() {
        assert!(d.iter().all(|b| usize::from(*b) == i + 1));
    }
    // Every send frame is free again; the receive is still armed.
    r.pool_bytes_mut(PoolRange::new(0, 3 * 4096)).unwrap();
    assert_eq!(r.in_flight(), 1);
    let cancel = r.cancel(recv, 0).unwrap();
    let mut cancel_done = false;
    let c = r.wait_for(recv, |c| cancel_done |= c.op == cancel).unwrap();
    assert!(!c.more);
    if !cancel_done {
        r.wait_for(cancel, |_| {}).unwrap();
    }
    assert_eq!(r.in_flight(), 0);
}

#[test]
fn sqpoll_ring_works_when_asked() {
    let Some(mut r) = ring(RingOptions::new(8).mode(TaskrunMode::Plain).sqpoll(Some(
        tally_uring::SqPoll {
            idle_ms: 10,
            cpu: None,
        },
    ))) else {
        return;
    };
    r.nop(1).unwrap();
    let c = r.wait_one().unwrap();
    assert_eq!(c.tag, 1);
    assert!(matches!(
        Ring::new(RingOptions::new(8).sqpoll(Some(tally_uring::SqPoll {
            idle_ms: 1,
            cpu: None
        }))),
        Err(RingError::InvalidOptions { .. })
    ));
}

#[test]
fn bad_options_are_refused() {
    assert!(matches!(
        Ring::new(RingOptions::new(3)),
        Err(RingError::InvalidOptions { .. })
    ));
    assert!(matches!(
        Ring::new(RingOptions::new(8).cq_entries(4)),
        Err(RingError::InvalidOptions { .. })
    ));
    assert!(matches!(
        Ring::new(RingOptions::new(8).max_in_flight(0)),
        Err(RingError::InvalidOptions { .. })
    ));
}

/// A child process installs a seccomp filter that refuses `io_uring_setup` with EPERM
/// (as container profiles do) and checks that `Ring::new` explains it.
#[test]
fn refused_io_uring_gives_a_clear_error() {
    const ENV: &str = "TALLY_URING_SECCOMP_CHILD";
    if std::env::var_os(ENV).is_some() {
        seccomp_deny_io_uring_setup();
        match Ring::new(RingOptions::new(8)) {
            Err(e @ RingError::Setup { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("seccomp") || msg.contains("io_uring_disabled"),
                    "{msg}"
                );
                println!("CHILD-OK: {msg}");
            }
            other => panic!("expected a setup error, got {other:?}"),
        }
        return;
    }
    let out = run_child("refused_io_uring_gives_a_clear_error", ENV);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(target_arch = "x86_64")]
fn seccomp_deny_io_uring_setup() {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let nr = u32::try_from(libc::SYS_io_uring_setup).unwrap();
    let ret_errno = 0x0005_0000u32 | u32::try_from(libc::EPERM).unwrap();
    let filter = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 4,
        }, // ld arch
        libc::sock_filter {
            code: 0x15,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        }, // jeq
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }, // ret allow
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        }, // ld nr
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: nr,
        }, // jeq io_uring_setup
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: ret_errno,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        },
    ];
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap(),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls with a valid, live filter program.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const prog
            ),
            0
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn seccomp_deny_io_uring_setup() {
    println!("CHILD-OK: seccomp test only on x86_64");
    std::process::exit(0);
}

/// One batch mixing completions the drain's fast path takes (NOPs) with ones it hands to
/// the general path (an error, reads moving bytes and releasing frames), consumed by
/// `drain` and by `reap` into arrays smaller than the batch: every tag arrives once, the
/// stats count exactly the errors and bytes, and the free list is intact afterwards (the
/// slab takes exactly its capacity again).
#[test]
fn mixed_batch_fast_and_general_paths_keep_the_slab_consistent() {
    let Some(mut r) = ring(RingOptions::new(64).max_in_flight(32)) else {
        return;
    };
    r.register_frame_pool(FramePool::new(FramePoolOptions::new(4096, 8).populate(true)).unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create_new(dir.path().join("m")).unwrap();
    file.write_all(&[7u8; 4 * 4096]).unwrap();
    let t = Target::from(&file);
    for use_reap in [false, true] {
        let before = r.stats().snapshot();
        let mut expected = Vec::new();
        for i in 0..24u64 {
            match i % 6 {
                // An error in the middle of NOPs: `Target::Fd(-1)` fails with EBADF.
                2 => {
                    let frame = 4 + (i / 6) as usize;
                    r.read_fixed(Target::Fd(-1), PoolRange::new(frame * 4096, 4096), 0, i)
                        .unwrap();
                }
                4 => {
                    let frame = (i / 6) as usize;
                    r.read_fixed(t, PoolRange::new(frame * 4096, 4096), 0, i)
                        .unwrap();
                }
                _ => {
                    r.nop(i).unwrap();
                }
            }
            expected.push(i);
        }
        r.submit_and_wait(24).unwrap();
        let mut got = Vec::new();
        let mut rounds = 0;
        while got.len() < 24 && rounds < 1000 {
            rounds += 1;
            if use_reap {
                let mut out = [Completion::default(); 5];
                let n = r.reap(&mut out).unwrap();
                got.extend_from_slice(&out[..n]);
            } else {
                r.drain(|c| got.push(c)).unwrap();
            }
            if got.len() < 24 {
                r.submit_and_wait(1).unwrap();
            }
        }
        let mut tags: Vec<u64> = got.iter().map(|c| c.tag).collect();
        tags.sort_unstable();
        assert_eq!(tags, expected);
        for c in &got {
            match c.tag % 6 {
                2 => assert_eq!(c.result(), Err(tally_uring::Errno(libc::EBADF))),
                4 => assert_eq!((c.kind, c.result()), (OpKind::ReadFixed, Ok(4096))),
                _ => assert_eq!((c.kind, c.result()), (OpKind::Nop, Ok(0))),
            }
        }
        let d = r.stats().snapshot().delta(&before);
        assert_eq!((d.completed, d.errors, d.bytes), (24, 4, 4 * 4096));
        assert_eq!(r.in_flight(), 0);
        // Every frame is idle again and the free list holds exactly 32 slots.
        assert_eq!(
            r.pool_bytes(PoolRange::new(0, 8 * 4096)).unwrap().len(),
            8 * 4096
        );
        for i in 0..32 {
            r.nop(1000 + i).unwrap();
        }
        assert!(matches!(
            r.nop(2000),
            Err(RingError::InFlightFull { capacity: 32 })
        ));
        r.submit_and_wait(32).unwrap();
        let mut n = 0;
        while n < 32 {
            n += r.drain(|_| {}).unwrap();
            if n < 32 {
                r.submit_and_wait(1).unwrap();
            }
        }
        assert_eq!(r.in_flight(), 0);
    }
}
