//! Instruction-count kernels for `tally-uring`: the NOP submit+complete path of
//! `tally_uring::Ring` against the raw `io-uring` crate, at batch 1 and 32. Callgrind
//! counts user-space instructions only, so these measure the engine's own overhead
//! (slab, typed completions, stats) on top of the kernel round trip. `nop_tally_*`
//! consume completions with `Ring::drain` (in place), `nop_tally_reap_*` with `Ring::reap`
//! (copied into an array).

use io_uring::{IoUring, opcode};
use tally_uring::{Completion, Journal, JournalOptions, Ring, RingOptions};

use super::Kernel;

/// The kernels of this module.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        id: "uring/nop_tally_b1",
        run: |n| tally_nop(n, 1),
        expect: |n| n * tags(1),
    },
    Kernel {
        id: "uring/nop_tally_b32",
        run: |n| tally_nop(n, 32),
        expect: |n| n * tags(32),
    },
    Kernel {
        id: "uring/nop_tally_reap_b1",
        run: |n| tally_nop_reap(n, 1),
        expect: |n| n * tags(1),
    },
    Kernel {
        id: "uring/nop_tally_reap_b32",
        run: |n| tally_nop_reap(n, 32),
        expect: |n| n * tags(32),
    },
    Kernel {
        id: "uring/journal_group64",
        run: |n| journal_groups(n, 64),
        expect: |n| n * (GROUP_RECORDS + 1),
    },
    Kernel {
        id: "uring/journal_group1k",
        run: |n| journal_groups(n, 1024),
        expect: |n| n * (GROUP_RECORDS + 1),
    },
    Kernel {
        id: "uring/nop_raw_b1",
        run: |n| raw_nop(n, 1),
        expect: |n| n * tags(1),
    },
    Kernel {
        id: "uring/nop_raw_b32",
        run: |n| raw_nop(n, 32),
        expect: |n| n * tags(32),
    },
];

/// What a NOP's completion adds to its kernel's checksum: its tag when it succeeded, 0
/// when the kernel failed it (so that a ring whose NOPs fail does not pass for a fast one).
#[inline]
fn ok_tag(tag: u64, result: i32) -> u64 {
    if result == 0 { tag } else { 0 }
}

/// What one round of `batch` NOPs adds to a NOP kernel's checksum: the tags
/// `1..=batch` (never 0, so that a ring that was refused, which returns 0, fails).
const fn tags(batch: u64) -> u64 {
    batch * (batch + 1) / 2
}

/// Records per commit group in the journal kernels.
const GROUP_RECORDS: u64 = 1024;

/// `iters` rounds of `batch` NOPs through `Ring` (one enter per round), completions
/// consumed in place with [`Ring::drain`]. Returns early (0 when io_uring is refused), so
/// that the checksum misses the rounds not run and `icount` refuses the count.
fn tally_nop(iters: u64, batch: u32) -> u64 {
    let Ok(mut ring) = Ring::new(RingOptions::new(64)) else {
        return 0;
    };
    let mut sum = 0u64;
    for _ in 0..iters {
        for i in 0..batch {
            if ring.nop(u64::from(i) + 1).is_err() {
                return sum;
            }
        }
        if ring.submit_and_wait(batch as usize).is_err() {
            return sum;
        }
        let mut got = 0;
        while got < batch as usize {
            match ring.drain(|c| sum = sum.wrapping_add(ok_tag(c.tag, c.raw_result))) {
                Ok(n) => got += n,
                Err(_) => return sum,
            }
        }
    }
    sum
}

/// As [`tally_nop`], with completions copied out by [`Ring::reap`].
fn tally_nop_reap(iters: u64, batch: u32) -> u64 {
    let Ok(mut ring) = Ring::new(RingOptions::new(64)) else {
        return 0;
    };
    let mut out = [Completion::default(); 64];
    let mut sum = 0u64;
    for _ in 0..iters {
        for i in 0..batch {
            if ring.nop(u64::from(i) + 1).is_err() {
                return sum;
            }
        }
        if ring.submit_and_wait(batch as usize).is_err() {
            return sum;
        }
        let mut got = 0;
        while got < batch as usize {
            match ring.reap(out.get_mut(got..).unwrap_or(&mut [])) {
                Ok(n) => got += n,
                Err(_) => return sum,
            }
        }
        sum = sum.wrapping_add(
            out.iter()
                .take(got)
                .map(|c| ok_tag(c.tag, c.raw_result))
                .sum::<u64>(),
        );
    }
    sum
}

/// The same with the raw `io-uring` crate (same setup flags).
fn raw_nop(iters: u64, batch: u32) -> u64 {
    let Ok(mut ring) = IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(128)
        .build(64)
    else {
        return 0;
    };
    let mut sum = 0u64;
    for _ in 0..iters {
        for i in 0..batch {
            let e = opcode::Nop::new().build().user_data(u64::from(i) + 1);
            // SAFETY: a NOP references no memory.
            if unsafe { ring.submission().push(&e) }.is_err() {
                return sum;
            }
        }
        if ring.submit_and_wait(batch as usize).is_err() {
            return sum;
        }
        for c in ring.completion() {
            sum = sum.wrapping_add(ok_tag(c.user_data(), c.result()));
        }
    }
    sum
}

/// `iters` groups of 1024 records of `size` bytes appended to a [`Journal`] and committed
/// (`direct_commit`: the write and the fdatasync are system calls, which callgrind does not
/// count, so this is the journal's own CPU cost per group: framing, CRC, the pre-write
/// check). The journal lives in a fresh directory under the temp dir, removed afterwards.
fn journal_groups(iters: u64, size: usize) -> u64 {
    let dir = std::env::temp_dir().join(format!(
        "tally-icount-journal-{}-{size}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    // One 64 MiB segment holds every group `cargo xtask bench --instructions` runs (at most
    // about 70 x 88 KiB or 25 x 1.05 MiB); no pre-write, so a run writes only its groups
    // (the pre-write is system calls and one memset at open, which the difference of two
    // runs cancels anyway).
    let opts = JournalOptions::new()
        .segment_bytes(64 << 20)
        .group_buffer_bytes(2 << 20)
        .max_record_bytes(4096)
        .prewrite(false)
        .direct_commit(true);
    let Ok(mut j) = Journal::open(&dir, opts) else {
        return 0;
    };
    let payload: Vec<u8> = (0..size).map(|i| (i * 31).to_le_bytes()[0]).collect();
    let mut sum = 0u64;
    for _ in 0..iters {
        for _ in 0..GROUP_RECORDS {
            match j.append(&payload) {
                Ok(seq) => sum += u64::from(std::hint::black_box(seq) != u64::MAX),
                Err(_) => return sum,
            }
        }
        match j.commit() {
            Ok(d) => sum += u64::from(std::hint::black_box(d) != u64::MAX),
            Err(_) => return sum,
        }
    }
    drop(j);
    let _ = std::fs::remove_dir_all(&dir);
    sum
}
