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

/// The `xsk` example binary in this test's target directory and profile, brought up to
/// date with `cargo build --example xsk` (a no-op when it is: `cargo test --test
/// example_xsk` alone does not build examples, and an old binary was used as it was).
fn example_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // <target>[/<triple>]/<profile>/deps/example_xsk-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test binary path {}", exe.display()))?;
    let example = profile_dir.join("examples").join("xsk");
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
    let Some(example) = example_or_skip() else {
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
    assert!(v.get("xdp_fallback_reason").is_some(), "{v}");
    assert_eq!(
        v["xdp_mode"] == "native",
        v["xdp_fallback_reason"].is_null(),
        "{v}"
    );
    assert_eq!(v["rx_packets"], 300);
    assert!(v["rx_pps"].as_f64().unwrap() > 0.0);
    assert_eq!(v["tx_packets"], 0);
    assert_eq!(v["rx_dropped"], 0);
}

/// The example binary, or `None` after saying why the test is skipped (a failure on CI).
fn example_or_skip() -> Option<PathBuf> {
    match example_binary() {
        Ok(p) => Some(p),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("the xsk example is needed on CI and could not be built: {why}")
        }
        Err(why) => {
            eprintln!("SKIP: the xsk example could not be built (set CI=1 to fail instead): {why}");
            None
        }
    }
}

/// A bad `--duration` is a usage error (exit status 2); `-1`, `NaN` and `1e30` used to
/// panic in `Duration::from_secs_f64` (exit status 101).
#[test]
fn xsk_example_refuses_a_bad_duration() {
    let Some(example) = example_or_skip() else {
        return;
    };
    for bad in ["-1", "NaN", "1e30"] {
        let out = Command::new(&example)
            .args(["--iface", "lo", "--duration", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--duration {bad}: {stderr}");
        assert!(
            stderr.contains("--duration") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

/// Echo mode counts the replies it queued, not the frames it was asked to answer: a
/// frame that is not well-formed IPv4/UDP (here a bad IPv4 header checksum, which the
/// steering program still redirects since it looks at the port only) gets no reply and
/// used to be counted in `tx_packets` all the same.
#[test]
fn xsk_example_echo_counts_only_the_replies_sent() {
    use tally_bypass::packet::{UdpFlow, build_udp};
    use tally_bypass::{PacketConfig, PacketSocket, PacketTransport};

    const GOOD: usize = 5;
    const BAD: usize = 4;
    let config = VethConfig {
        static_neighbours: true,
        ..VethConfig::default()
    };
    let Some(pair) = common::veth_or_skip("xecho", config) else {
        return;
    };
    let Some(example) = example_or_skip() else {
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
            "9210",
            "--mode",
            "echo",
            "--duration",
            "3",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    eprintln!("example: {first}");
    let flow = UdpFlow {
        src_mac: cfg.mac_a,
        dst_mac: cfg.mac_b,
        src: SocketAddrV4::new(cfg.ip_a, 40000),
        dst: SocketAddrV4::new(cfg.ip_b, 9210),
    };
    let ifa = cfg.if_a.clone();
    pair.run_in(Side::A, move || {
        let mut tx = PacketSocket::open(
            &ifa,
            &PacketConfig {
                block_size: 1 << 16,
                block_count: 1,
                reserve_ports: false,
                ..PacketConfig::default()
            },
        )
        .unwrap();
        for i in 0..GOOD + BAD {
            tx.send_frame(&mut |buf| {
                let n = build_udp(buf, &flow, b"echo me", 1).unwrap();
                if i >= GOOD {
                    buf[24] ^= 0xff; // the IPv4 header checksum
                }
                n
            })
            .unwrap();
            tx.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "xsk failed: {first}\n{rest}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{v}");
    assert_eq!(v["transport"], "af_xdp");
    assert_eq!(v["rx_packets"], GOOD + BAD);
    assert_eq!(
        v["tx_packets"], GOOD,
        "only well-formed datagrams are answered"
    );
}
