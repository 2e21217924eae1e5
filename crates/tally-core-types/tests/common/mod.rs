//! Item types shared by the ring model tests (`ring_model.rs`, `batch_ring_model.rs`):
//! each made from a `u32` so that one generated sequence of operations drives any of
//! them.

/// A 24-byte item (groups of two in an `SpscRing`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Triple(pub [u64; 3]);

impl From<u32> for Triple {
    fn from(v: u32) -> Self {
        let v = u64::from(v);
        Self([v, !v, v << 7])
    }
}

/// A one-byte item.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Byte(pub u8);

impl From<u32> for Byte {
    fn from(v: u32) -> Self {
        Self(v.to_le_bytes()[0])
    }
}

/// A zero-sized item: the model checks counts only.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Unit;

impl From<u32> for Unit {
    fn from(_: u32) -> Self {
        Self
    }
}
