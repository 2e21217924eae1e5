//! One AF_XDP socket per receive queue of one interface, the usual way to scale AF_XDP:
//! the sockets share one steering program and XSKMAP (an interface takes one XDP link),
//! the program stays attached while any of them is open, and is gone with the last one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::{BypassError, XdpFilter, XdpMode, XdpModeChoice, XskConfig, XskSocket};

fn small(ports: &[u16]) -> XskConfig {
    XskConfig {
        rx_frames: 64,
        tx_frames: 64,
        rx_ring: 64,
        tx_ring: 64,
        ..XskConfig::udp_ports(ports)
    }
}

#[test]
fn sockets_on_two_queues_of_one_interface_share_the_program() {
    let config = VethConfig {
        queues: 2,
        ..VethConfig::default()
    };
    let Some(pair) = common::veth_or_skip("xmq", config) else {
        return;
    };
    let ifb = pair.config().if_b.clone();
    let (q0, q1) = pair
        .run_in(Side::B, move || {
            let q0 = XskSocket::open(&ifb, 0, small(&[9304])).expect("queue 0");
            // A socket that wants other frames steered cannot share the program.
            match XskSocket::open(&ifb, 1, small(&[9305])) {
                Err(e @ BypassError::SteeringConflict { .. }) => {
                    assert!(e.to_string().contains("same XskConfig::filter"), "{e}");
                }
                other => panic!("a different filter on a steered interface: {other:?}"),
            }
            let q1 =
                XskSocket::open(&ifb, 1, small(&[9304])).expect("queue 1 of the same interface");
            assert_eq!(q0.info().xdp_mode, q1.info().xdp_mode);
            (q0, q1)
        })
        .unwrap();
    drop(q0);
    assert!(
        pair.xdp_attached(Side::B).unwrap(),
        "the program left with the first socket while the second is open"
    );
    drop(q1);
    assert!(common::xdp_detached_soon(&pair, Side::B));
    // And the interface can be steered again afterwards, with another filter.
    let ifb = pair.config().if_b.clone();
    pair.run_in(Side::B, move || {
        let f = small(&[9306]).filter;
        assert_eq!(f, XdpFilter::UdpDstPorts(vec![9306]));
        XskSocket::open(&ifb, 1, small(&[9306])).expect("reopen");
    })
    .unwrap();
}

/// Port lists are sets: sockets whose lists name the same ports in another order, or
/// repeat one, share the program. Lists built from a `HashSet` per socket come out in a
/// different order each time, and used to fail with `SteeringConflict`.
#[test]
fn the_same_ports_in_another_order_share_the_program() {
    let config = VethConfig {
        queues: 2,
        ..VethConfig::default()
    };
    let Some(pair) = common::veth_or_skip("xmqo", config) else {
        return;
    };
    let ifb = pair.config().if_b.clone();
    pair.run_in(Side::B, move || {
        let q0 = XskSocket::open(&ifb, 0, small(&[9308, 9309])).expect("queue 0");
        let q1 = XskSocket::open(&ifb, 1, small(&[9309, 9308, 9309]))
            .expect("queue 1, the same ports in another order");
        assert_eq!(
            q0.xsk_map().raw_fd(),
            q1.xsk_map().raw_fd(),
            "one shared map"
        );
        // Another set still conflicts.
        drop(q1);
        assert!(matches!(
            XskSocket::open(&ifb, 1, small(&[9309])),
            Err(BypassError::SteeringConflict { .. })
        ));
    })
    .unwrap();
}

/// A socket that asks for an explicit XDP mode gets that mode or an error. It used to
/// share a program attached in the other mode by an earlier socket, silently.
#[test]
fn an_explicit_mode_is_not_silently_replaced_by_the_shared_one() {
    let config = VethConfig {
        queues: 2,
        ..VethConfig::default()
    };
    let Some(pair) = common::veth_or_skip("xmqm", config) else {
        return;
    };
    let ifb = pair.config().if_b.clone();
    pair.run_in(Side::B, move || {
        let with_mode = |mode| XskConfig {
            xdp_mode: mode,
            ..small(&[9312])
        };
        let q0 = XskSocket::open(&ifb, 0, with_mode(XdpModeChoice::Generic)).expect("queue 0");
        assert_eq!(q0.info().xdp_mode, XdpMode::Generic);
        match XskSocket::open(&ifb, 1, with_mode(XdpModeChoice::Native)) {
            Err(e @ BypassError::XdpModeConflict { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("generic") && msg.contains("Auto"), "{msg}");
            }
            Ok(s) => panic!("asked for native, got {:?}", s.info().xdp_mode),
            Err(e) => panic!("{e}"),
        }
        let q1 = XskSocket::open(&ifb, 1, with_mode(XdpModeChoice::Auto)).expect("Auto shares");
        assert_eq!(q1.info().xdp_mode, XdpMode::Generic);
    })
    .unwrap();
}

#[test]
fn a_high_queue_joins_the_map_a_low_queue_created() {
    // The first socket sizes the shared XSKMAP; a later one on queue 65 must still fit.
    let config = VethConfig {
        queues: 66,
        ..VethConfig::default()
    };
    let Some(pair) = common::veth_or_skip("xhq", config) else {
        return;
    };
    let ifb = pair.config().if_b.clone();
    pair.run_in(Side::B, move || {
        let q0 = XskSocket::open(&ifb, 0, small(&[9307])).expect("queue 0");
        let q65 = XskSocket::open(&ifb, 65, small(&[9307])).expect("queue 65");
        assert_eq!(
            q0.xsk_map().raw_fd(),
            q65.xsk_map().raw_fd(),
            "one shared map"
        );
        assert!(q65.xsk_map().entries() > 65);
    })
    .unwrap();
}
