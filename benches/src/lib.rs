//! Shared code for the Tally benches: the instruction-count kernels that
//! `cargo xtask bench --instructions` runs under callgrind, and helpers the criterion
//! benches share.
//!
//! A *kernel* is a deterministic loop `run(iters) -> checksum`. The `icount` binary runs
//! one kernel by id; `xtask` runs it under `valgrind --tool=callgrind` at two iteration
//! counts and divides the difference in instructions by the difference in iterations, so
//! set-up cost cancels and the result is instructions per iteration.
#![allow(
    clippy::missing_panics_doc,
    reason = "bench support code, not a library users call"
)]

pub mod harness;
pub mod kernels;
pub mod ring;
pub mod stats;
