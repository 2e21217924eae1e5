//! `tally-bypass`: kernel-bypass packet I/O on Linux. AF_XDP (UMEM, fill, completion, rx
//! and tx rings, an XDP program built from raw BPF instructions and loaded with `bpf(2)`)
//! with an AF_PACKET TPACKET_V3 fallback.
//!
//! This crate is being built; its API lands with the `tally-bypass` issue.
