#![doc = include_str!("../README.md")]

pub mod batch_ring;
pub mod cache_padded;
pub mod error;
pub mod frame_pool;
pub mod ring;
pub mod stats;
mod sync;

pub use batch_ring::{BatchConsumer, BatchProducer, BatchRing};
pub use cache_padded::{CACHE_PAD_BYTES, CachePadded};
pub use error::{CoreError, Result};
pub use frame_pool::{FrameId, FramePool, FramePoolOptions, MIN_FRAME_SIZE_BYTES};
pub use ring::{Consumer, Producer, SpscRing};
pub use stats::Counter;
