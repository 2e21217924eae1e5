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
