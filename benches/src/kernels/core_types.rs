//! Instruction-count kernels for `tally-core-types`: one single-thread push+pop pair per
//! iteration through Tally's rings and through the peers, in the same harness
//! ([`crate::ring::pair_loop`]), so their instruction counts compare directly; and one
//! batch of [`BATCH`] items pushed and popped through the slice APIs per iteration
//! ([`crate::ring::batch_loop`]).

use super::Kernel;
use crate::ring::{BATCH, Queue, batch_loop, batch_loop_of, expected_sum, pair_loop};

/// The kernels of this module.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        id: "ring_pair/tally",
        run: |n| pair_loop(Queue::Tally, n),
        expect: expected_sum,
    },
    Kernel {
        id: "ring_pair/rtrb",
        run: |n| pair_loop(Queue::Rtrb, n),
        expect: expected_sum,
    },
    Kernel {
        id: "ring_pair/tally-batch",
        run: |n| pair_loop(Queue::TallyBatch, n),
        expect: expected_sum,
    },
    Kernel {
        id: "ring_pair/crossbeam",
        run: |n| pair_loop(Queue::Crossbeam, n),
        expect: expected_sum,
    },
    Kernel {
        id: "ring_batch256/tally",
        run: |n| batch_loop(Queue::Tally, n),
        expect: batch_sum,
    },
    Kernel {
        id: "ring_batch256/rtrb",
        run: |n| batch_loop(Queue::Rtrb, n),
        expect: batch_sum,
    },
    Kernel {
        id: "ring_batch256/tally-batch",
        run: |n| batch_loop(Queue::TallyBatch, n),
        expect: batch_sum,
    },
    Kernel {
        id: "ring_batch256/crossbeam",
        run: |n| batch_loop(Queue::Crossbeam, n),
        expect: batch_sum,
    },
    Kernel {
        id: "ring_batch8/tally",
        run: |n| batch_loop_of::<8>(Queue::Tally, n),
        expect: batch8_sum,
    },
    Kernel {
        id: "ring_batch8/rtrb",
        run: |n| batch_loop_of::<8>(Queue::Rtrb, n),
        expect: batch8_sum,
    },
    Kernel {
        id: "ring_batch8/tally-batch",
        run: |n| batch_loop_of::<8>(Queue::TallyBatch, n),
        expect: batch8_sum,
    },
    Kernel {
        id: "ring_batch8/crossbeam",
        run: |n| batch_loop_of::<8>(Queue::Crossbeam, n),
        expect: batch8_sum,
    },
];

/// What [`batch_loop`] returns after `rounds` batches: the sum of `0..rounds * BATCH`.
fn batch_sum(rounds: u64) -> u64 {
    expected_sum(rounds.wrapping_mul(BATCH as u64))
}

/// What [`batch_loop_of`] with batches of 8 returns after `rounds` batches.
fn batch8_sum(rounds: u64) -> u64 {
    expected_sum(rounds.wrapping_mul(8))
}
