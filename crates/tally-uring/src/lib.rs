//! `tally-uring`: an io_uring engine on the `io-uring` crate (registered buffers and
//! files, batched submission, network and file operations) and a crash-safe group-commit
//! journal.
//!
//! This crate is being built; its API lands with the `tally-uring` issue.
