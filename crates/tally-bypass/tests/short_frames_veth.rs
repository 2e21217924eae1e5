//! Both transports refuse a transmit frame shorter than an Ethernet header with
//! `TxError::FrameTooShort`, before it reaches the ring: AF_XDP used to queue and send
//! it, while AF_PACKET's kernel rejected it at the kick. A 14-byte frame is accepted by
//! both.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::{
    PacketConfig, PacketTransport, Transport, TransportChoice, TransportKind, TransportOptions,
    TxError, XskConfig,
};

#[test]
fn both_transports_refuse_frames_shorter_than_an_ethernet_header() {
    let Some(pair) = common::veth_or_skip("xshort", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    pair.run_in(Side::B, || {
        for choice in [TransportChoice::AfXdp, TransportChoice::AfPacket] {
            let opts = TransportOptions {
                choice,
                xsk: XskConfig {
                    rx_frames: 64,
                    tx_frames: 64,
                    rx_ring: 64,
                    tx_ring: 64,
                    ..XskConfig::udp_ports(&[9540])
                },
                packet: PacketConfig {
                    udp_ports: vec![9540],
                    block_size: 1 << 16,
                    block_count: 4,
                    tx_frames: 64,
                    ..PacketConfig::default()
                },
            };
            let mut t = Transport::open(&cfg.if_b, 0, &opts).unwrap();
            let kind = t.kind();
            assert_eq!(
                kind,
                match choice {
                    TransportChoice::AfXdp => TransportKind::AfXdp,
                    _ => TransportKind::AfPacket,
                }
            );
            let frame = |len: usize| {
                move |buf: &mut [u8]| {
                    buf[..len].fill(0);
                    if len >= 6 {
                        buf[..6].copy_from_slice(&cfg.mac_a.0);
                    }
                    len
                }
            };
            for len in [1, 6, 13] {
                match t.send_frame(&mut frame(len)) {
                    Err(TxError::FrameTooShort { len: l, min: 14 }) => assert_eq!(l, len),
                    other => panic!("{kind:?} {len}: {other:?}"),
                }
            }
            assert_eq!(t.stats().tx_packets, 0, "{kind:?}: a refused frame counted");
            t.flush()
                .unwrap_or_else(|e| panic!("{kind:?}: flush after refusals: {e}"));
            // Nothing was queued, and nothing wedged: a header-only frame still goes.
            t.send_frame(&mut frame(14)).unwrap();
            t.flush()
                .unwrap_or_else(|e| panic!("{kind:?}: flush of a 14-byte frame: {e}"));
            let s = t.stats();
            assert_eq!((s.tx_packets, s.invalid_descs), (1, 0), "{kind:?}: {s:?}");
        }
    })
    .unwrap();
}
