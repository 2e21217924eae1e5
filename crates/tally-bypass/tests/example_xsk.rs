//! Runs the `xsk` example (built by `cargo test` next to this test) inside a namespace and
//! checks its `--json` output against the traffic sent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use std::net::SocketAddrV4;
use std::process::Command;
use std::time::Duration;

use tally_bypass::netns::{Side, VethConfig};

#[test]
fn xsk_example_rxdrop_reports_json() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("xsk");
    if !example.exists() {
        eprintln!("SKIP: example binary not built at {}", example.display());
        return;
    }
    let Some(pair) = common::veth_or_skip("xex", VethConfig::default()) else {
        return;
    };
    let cfg = pair.config().clone();
    let child = Command::new("ip")
        .args(["netns", "exec", pair.netns(Side::B).name()])
        .arg(&example)
        .args([
            "--iface",
            &cfg.if_b,
            "--udp-port",
            "9200",
            "--duration",
            "3",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    pair.run_in(Side::A, || {
        common::send_flows(cfg.ip_a, SocketAddrV4::new(cfg.ip_b, 9200), 1, 300, 64)
    })
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "xsk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{v}");
    assert_eq!(v["transport"], "af_xdp");
    assert_eq!(v["bind"], "copy");
    assert!(v["xdp_mode"] == "native" || v["xdp_mode"] == "generic");
    assert_eq!(v["rx_packets"], 300);
    assert!(v["rx_pps"].as_f64().unwrap() > 0.0);
    assert_eq!(v["tx_packets"], 0);
    assert_eq!(v["rx_dropped"], 0);
}
