//! Instruction-count kernels for `tally-core-types`: one single-thread push+pop pair per
//! iteration through Tally's ring and through the peers, in the same harness
//! ([`crate::ring::pair_loop`]), so their instruction counts compare directly.

use super::Kernel;
use crate::ring::{Queue, expected_sum, pair_loop};

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
        id: "ring_pair/crossbeam",
        run: |n| pair_loop(Queue::Crossbeam, n),
        expect: expected_sum,
    },
];
