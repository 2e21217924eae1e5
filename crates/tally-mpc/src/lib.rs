//! `tally-mpc`: batch verification of secp256k1 signatures (BIP340 Schnorr and FROST
//! RFC 9591 signature shares) on `k256`, with multiscalar multiplication, precomputed
//! per-key tables and cheater identification.
//!
//! This crate is being built; its API lands with the `tally-mpc` issue.
#![forbid(unsafe_code)]
