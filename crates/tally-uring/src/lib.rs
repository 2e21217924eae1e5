#![doc = include_str!("../README.md")]

mod crc;
pub mod error;
pub mod journal;
pub mod ring;
mod sched;

pub use error::{Errno, RingError};
pub use journal::{
    Journal, JournalError, JournalHandle, JournalOptions, JournalStats, JournalStatsSnapshot,
    ReplayReport, SharedJournal, SharedOptions, TornTail,
};
pub use ring::{
    Completion, ENTER_EAGAIN_RETRIES, IoBuf, IoReq, MAX_IN_FLIGHT, OpId, OpKind, PoolRange,
    PoolView, ProbeReport, Ring, RingOptions, RingStats, RingStatsSnapshot, SqPoll, Target,
    TaskrunMode,
};
