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
    let mut child = Command::new("ip")
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
    // Send only once the example says its socket is bound (its first stderr line): on a
    // loaded machine a fixed pause was not always long enough.
    let stderr = child.stderr.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        if let Some(Ok(first)) = lines.next() {
            let _ = line_tx.send(first);
        }
        for l in lines.map_while(Result::ok) {
            rest.push_str(&l);
            rest.push('\n');
        }
        rest
    });
    let first = line_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the example printed nothing within 30 s");
    eprintln!("example: {first}");
    pair.run_in(Side::A, || {
        common::send_flows(cfg.ip_a, SocketAddrV4::new(cfg.ip_b, 9200), 1, 300, 64)
    })
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let rest = reader.join().unwrap();
    assert!(out.status.success(), "xsk failed: {first}\n{rest}");
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
