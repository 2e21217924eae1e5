#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Command-line behaviour that needs no network: output into a closed pipe.

use std::process::{Command, Stdio};

/// `tally probe | head -1` style use: a reader that goes away is not a crash.
#[test]
fn probe_into_a_closed_pipe_exits_cleanly() {
    for args in [&["probe"][..], &["probe", "--json"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the probe writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// `tally pipeline ... | head -c 100` style use: the run's exit status still says whether
/// the accounting added up (0 here), instead of a panic on the closed pipe.
#[test]
fn pipeline_report_into_a_closed_pipe_keeps_its_exit_status() {
    let dir = std::env::temp_dir().join(format!("tally-cli-test-{}", std::process::id()));
    for json in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tally"));
        cmd.args([
            "pipeline",
            "--quiet",
            "--duration",
            "0.3",
            "--pool",
            "4",
            "--window",
            "2",
            "--journal-dir",
        ])
        .arg(&dir);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "json {json}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "json {json}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C while the session pool is being signed (before the timed run) stops the
/// command promptly, runs nothing, and removes the namespaces.
#[test]
fn ctrl_c_while_signing_the_pool_stops_promptly() {
    let dir = std::env::temp_dir().join(format!("tally-cli-int-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "pipeline",
            "--quiet",
            "--json",
            "--duration",
            "1",
            "--pool",
            "65536",
            "--journal-dir",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > std::time::Duration::from_mins(1) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let took = t0.elapsed();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        took < std::time::Duration::from_secs(5),
        "took {took:?} to stop after Ctrl-C: {stderr}"
    );
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(out.stdout.is_empty(), "ran anyway");
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.contains(&format!("tally-pipe-{pid}-")),
        "namespaces left behind: {list}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
