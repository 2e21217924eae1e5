#![doc = include_str!("../README.md")]

pub mod afpacket;
pub mod bpf;
pub mod error;
pub mod netns;
pub mod packet;
mod sys;
pub mod transport;
pub mod xsk;

pub use afpacket::{
    FanoutMode, PacketConfig, PacketFanout, PacketRxBatch, PacketSocket, PacketStats,
    PacketStatsSnapshot,
};
pub use bpf::{LiveFrameGenerator, XdpFilter, XdpLink, XdpMode, XdpModeChoice, XdpProgram, XskMap};
pub use error::{BypassError, Result};
pub use transport::{
    AnyRxBatch, PacketTransport, RxBatch, Transport, TransportChoice, TransportKind,
    TransportOptions, TransportStats, TxError, interface_driver, interface_mac,
};
pub use xsk::{
    BindChoice, BindMode, XskConfig, XskInfo, XskRxBatch, XskSocket, XskStats, XskStatsSnapshot,
};
