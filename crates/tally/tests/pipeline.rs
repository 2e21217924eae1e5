#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Runs `tally pipeline` end to end for a few seconds and checks the accounting. As root
//! (CI) it runs in its own namespace pair over AF_XDP (falling back to AF_PACKET only if the
//! kernel refuses AF_XDP); otherwise over UDP on loopback, and says so. Both verification
//! modes run: signatures first (shares only in failing sessions) and every share.

use std::process::Command;

fn tally() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tally"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

fn run_json(args: &[&str], dir: &std::path::Path) -> serde_json::Value {
    let out = tally()
        .args([
            "pipeline",
            "--json",
            "--quiet",
            "--pool",
            "256",
            "--journal-dir",
        ])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tally failed: {stderr}\n{stdout}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON {e}: {stdout}"))
}

fn check(v: &serde_json::Value, journal: &std::path::Path) {
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("missing {k} in {v}"))
    };
    assert!(n("sessions_sent") > 50, "too few sessions: {v}");
    // The coordinator's own counts (see `RunReport::accounting_ok`), checked here too so
    // that a failure names the count that is off.
    let c = |k: &str| {
        v["coordinator"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("missing coordinator.{k} in {v}"))
    };
    assert_eq!(
        c("replies_before_durable"),
        0,
        "a reply left before its record was durable: {v}"
    );
    assert_eq!(
        n("journal_records"),
        c("sessions_signed") + c("sessions_rejected"),
        "{v}"
    );
    assert!(n("sessions_completed") <= c("replies_sent"), "{v}");
    assert_eq!(v["accounting_ok"], true, "{v}");
    assert_eq!(
        n("sessions_completed") + n("drops"),
        n("sessions_sent"),
        "{v}"
    );
    assert_eq!(n("wrong_answers"), 0, "{v}");
    assert_eq!(n("culprit_mismatches"), 0, "{v}");
    assert!(n("invalid_shares_injected") > 0, "{v}");
    assert_eq!(
        n("invalid_shares_detected"),
        n("invalid_shares_injected"),
        "{v}"
    );
    assert_eq!(n("journal_replayed"), n("replies_received"), "{v}");
    assert_eq!(n("journal_records"), n("journal_replayed"), "{v}");
    assert!(v["latency_us"]["p99"].as_u64().is_some());
    assert_eq!(v["netns_left_behind"], false, "{v}");
    // The journal the run wrote verifies with `tally journal verify`.
    let out = tally()
        .args(["journal", "verify"])
        .arg(journal)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("records: {}", n("journal_records"))),
        "{text}"
    );
}

#[test]
fn pipeline_accounts_for_every_session_and_bad_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let v = run_json(
        &[
            "--duration",
            "3",
            "--invalid-ratio",
            "0.05",
            "--bad-wire-every",
            "50",
            "--window",
            "64",
        ],
        dir.path(),
    );
    let transport = v["transport"].as_str().unwrap().to_owned();
    if is_root() {
        assert_eq!(
            transport, "af_xdp",
            "as root the pipeline must use AF_XDP: {v}"
        );
    } else {
        eprintln!(
            "not root: pipeline ran over UDP on loopback ({})",
            v["transport_detail"]
        );
        assert_eq!(transport, "udp");
    }
    assert_eq!(v["verify"], "signatures");
    check(&v, &dir.path().join("tally"));
    // Bad datagrams: each injected kind is counted under its reason and dropped.
    let bad = &v["bad_datagrams_injected"];
    let got = &v["datagram_drops"];
    assert!(bad["truncated"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(got["malformed"], bad["truncated"], "{v}");
    assert_eq!(got["unknown_session"], bad["unknown_session"], "{v}");
    assert_eq!(got["wrong_identifier"], bad["wrong_identifier"], "{v}");
    assert_eq!(got["replayed_share"], bad["replayed_share"], "{v}");
}

#[test]
fn staged_pipeline_accounts_for_every_session() {
    let dir = tempfile::tempdir().unwrap();
    let v = run_json(
        &[
            "--duration",
            "2",
            "--stages",
            "--invalid-ratio",
            "0.02",
            "--verify",
            "shares",
            "--max-batch",
            "5",
        ],
        dir.path(),
    );
    assert_eq!(v["shape"], "staged");
    // `--max-batch` bounds every verification batch (one receive call can complete more
    // sessions than that; they wait for the next batch).
    let batches = &v["verify_batch_sessions"];
    assert!(batches["max"].as_u64().unwrap() <= 5, "{v}");
    assert!(batches["batches"].as_u64().unwrap() > 0, "{v}");
    // Every share in the batch (the other test covers the default, signatures first).
    assert_eq!(v["verify"], "shares");
    check(&v, &dir.path().join("tally"));
}

#[test]
fn ctrl_c_stops_drains_and_removes_the_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let child = tally()
        .args([
            "pipeline",
            "--json",
            "--quiet",
            "--pool",
            "128",
            "--duration",
            "60",
            "--journal-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        v["elapsed_s"].as_f64().unwrap() < 30.0,
        "did not stop on SIGINT: {v}"
    );
    check(&v, &dir.path().join("tally"));
    if is_root() {
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        let pid = format!(
            "tally-pipe-{}-",
            v["transport_detail"]
                .as_str()
                .unwrap()
                .split("tally-pipe-")
                .nth(1)
                .unwrap()
                .split('-')
                .next()
                .unwrap()
        );
        assert!(!list.contains(&pid), "namespaces left behind: {list}");
    }
}

/// Values the binary cannot honour exit with status 2 and a message naming the option,
/// before any work starts (no panic, no allocation failure).
#[test]
fn bad_values_exit_2_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["pipeline", "--duration", "1e20"], "--duration"),
        (&["pipeline", "--duration", "NaN"], "--duration"),
        (&["pipeline", "--duration", "0"], "--duration"),
        (&["pipeline", "--window", "0"], "--window"),
        (&["pipeline", "--window", "99999999999999"], "--window"),
        (&["pipeline", "--max-batch", "100000"], "--max-batch"),
        (&["pipeline", "--pool", "0"], "--pool"),
        (&["pipeline", "--invalid-ratio", "2"], "--invalid-ratio"),
        (&["pipeline", "--threshold", "0"], "--threshold"),
        (&["pipeline", "--signers", "65"], "--signers"),
        (&["pipeline", "--window", "16385"], "--window"),
        (&["pipeline", "--pool", "65537"], "--pool"),
    ];
    for (args, names) in cases {
        let out = tally().args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("tally: ") && stderr.contains(names),
            "{args:?}: {stderr}"
        );
    }
    // A directory that is not a journal (the pipeline writes to `DIR/tally`), and one
    // that does not exist: status 2 with a hint, never "damage: none".
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tally")).unwrap();
    for (path, hint) in [
        (dir.path().to_path_buf(), "tally"),
        (dir.path().join("missing"), "cannot read"),
    ] {
        for cmd in ["verify", "dump"] {
            let out = tally().args(["journal", cmd]).arg(&path).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd} {}: {stderr}",
                path.display()
            );
            assert!(stderr.contains(hint), "{stderr}");
            assert!(!String::from_utf8_lossy(&out.stdout).contains("damage"));
        }
    }
}
