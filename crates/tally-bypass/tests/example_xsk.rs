//! Runs the `xsk` example inside a namespace and checks its `--json` output against the
//! traffic sent. `cargo test` builds the example next to this test, except when only some
//! test targets are selected (`--test example_xsk`): then the test builds it itself, with
//! the same cargo, target directory and profile. When the binary still cannot be had the
//! test fails on CI (`CI` set) and skips, saying why, elsewhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tally_bypass::netns::{Side, VethConfig};

/// The `xsk` example binary in this test's target directory and profile, built with
/// `cargo build --example xsk` when it is not there yet.
fn example_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // <target>[/<triple>]/<profile>/deps/example_xsk-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test binary path {}", exe.display()))?;
    let example = profile_dir.join("examples").join("xsk");
    if example.exists() {
        return Ok(example);
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("no profile directory in {}", exe.display()))?;
    let parent = profile_dir
        .parent()
        .ok_or_else(|| format!("no target directory above {}", profile_dir.display()))?;
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--example",
        "xsk",
        "-p",
        "tally-bypass",
    ]);
    // Cargo tags the target directory root; one level down is a `--target` triple.
    if parent.join("CACHEDIR.TAG").exists() {
        cmd.arg("--target-dir").arg(parent);
    } else {
        let root = parent
            .parent()
            .filter(|r| r.join("CACHEDIR.TAG").exists())
            .ok_or_else(|| format!("no cargo target directory above {}", exe.display()))?;
        let triple = parent.file_name().and_then(|n| n.to_str()).unwrap_or("");
        cmd.arg("--target-dir").arg(root).args(["--target", triple]);
    }
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("building the example: {cmd:?}");
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if example.exists() {
        Ok(example)
    } else {
        Err(format!(
            "{cmd:?} succeeded but {} is missing",
            example.display()
        ))
    }
}

#[test]
fn xsk_example_rxdrop_reports_json() {
    let Some(pair) = common::veth_or_skip("xex", VethConfig::default()) else {
        return;
    };
    let example = match example_binary() {
        Ok(p) => p,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("the xsk example is needed on CI and could not be built: {why}")
        }
        Err(why) => {
            eprintln!("SKIP: the xsk example could not be built (set CI=1 to fail instead): {why}");
            return;
        }
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
