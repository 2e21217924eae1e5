//! End to end: a tiny real bench is compiled, its instructions per iteration are counted
//! under callgrind by the same code `cargo xtask bench --instructions` uses, the results
//! are saved as `tally-bench/1` files, and the real `xtask bench-compare` binary judges
//! them: exit 1 when the head does more work per iteration on purpose, exit 0 when the
//! code is identical.
//!
//! Needs `valgrind` (and `rustc`). Without valgrind the test says why and passes, except
//! on CI (`CI` set), where it fails so that a missing install step cannot hide.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::bench::instructions_per_iter;
use xtask::results::{BenchResult, Results};

/// The tiny bench: `tiny WORK ITERS` runs ITERS iterations of WORK dependent
/// multiply-adds; WORK is the bench parameter that makes the head slower on purpose.
const TINY: &str = r#"
use std::hint::black_box;
fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (work, iters) = (args[0], args[1]);
    let mut acc = 1u64;
    for i in 0..iters {
        for j in 0..black_box(work) {
            acc = black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(i ^ j));
        }
    }
    println!("{acc}");
}
"#;

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether valgrind runs; off CI a missing valgrind prints why the test skips, on CI
/// (`CI` set) it fails the test.
fn valgrind_or_skip() -> bool {
    if valgrind_available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "valgrind is missing on CI: add `apt-get install -y valgrind` to .ci/run"
    );
    eprintln!("skipping: valgrind is not installed (apt-get install -y valgrind)");
    false
}

/// A "kernel" whose loop the compiler removes: no instructions per iteration.
const EMPTY: &str = r#"
fn main() {
    let iters: u64 = std::env::args().nth(2).unwrap().parse().unwrap();
    let mut acc = 0u64;
    for i in 0..iters {
        acc = acc.wrapping_add(i & 0);
    }
    println!("{acc}");
}
"#;

/// A kernel that reports a failure (a wrong checksum) through its exit status.
const FAILING: &str = r#"
fn main() {
    eprintln!("icount: kernel tiny/fail returned checksum 0, expected 10");
    std::process::exit(3);
}
"#;

fn build_tiny(dir: &Path) -> PathBuf {
    build_source(dir, "tiny", TINY)
}

fn build_source(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.rs"));
    std::fs::write(&src, source).unwrap();
    let exe = dir.join(name);
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2021", "-C", "opt-level=2", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success(), "rustc failed to build the tiny bench");
    exe
}

fn measure(exe: &Path, work: u64, commit: &str, path: &Path) -> u64 {
    let n = instructions_per_iter(exe, &[OsString::from(work.to_string())]).unwrap();
    let results = Results {
        commit: commit.to_owned(),
        machine: xtask::util::machine(),
        created_unix_s: Some(xtask::util::now_unix_s()),
        results: vec![BenchResult {
            id: "tiny/mul_add".to_owned(),
            wall: None,
            instructions: Some(n),
        }],
    };
    results.save(path).unwrap();
    n
}

fn compare(base: &Path, head: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("bench-compare")
        .arg("--base")
        .arg(base)
        .arg("--head")
        .arg(head)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn slower_head_fails_and_identical_code_passes() {
    if !valgrind_or_skip() {
        return;
    }
    let dir = xtask::util::ScratchDir::new("e2e").unwrap();
    let exe = build_tiny(&dir);

    let base = dir.join("base.json");
    let same = dir.join("same.json");
    let slower = dir.join("slower.json");
    let n_base = measure(&exe, 8, "base", &base);
    let n_same = measure(&exe, 8, "same", &same);
    let n_slow = measure(&exe, 12, "slower", &slower);
    eprintln!("instructions/iteration: base {n_base}, same {n_same}, slower {n_slow}");
    // Callgrind counts are deterministic: identical code, identical count.
    assert_eq!(n_base, n_same);
    // 1.5x the inner work: well past the 5 % threshold, but not an absurd ratio either
    // (the outer loop's own instructions do not scale).
    assert!(
        n_slow > n_base * 11 / 10 && n_slow < n_base * 2,
        "{n_base} -> {n_slow}"
    );

    let (code, out) = compare(&base, &slower);
    assert_eq!(code, 1, "slower head must fail:\n{out}");
    assert!(out.contains("REGRESSED"), "{out}");

    let (code, out) = compare(&base, &same);
    assert_eq!(code, 0, "identical code must pass:\n{out}");
    assert!(out.contains("unchanged"), "{out}");

    // And the other way round the slower file is an improvement, not a failure.
    let (code, out) = compare(&slower, &base);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("improved"), "{out}");
}

#[test]
fn a_kernel_without_work_or_with_a_failure_is_an_error_not_a_count() {
    if !valgrind_or_skip() {
        return;
    }
    let dir = xtask::util::ScratchDir::new("e2e-empty").unwrap();
    // Zero instructions per iteration means the work was optimised away (or skipped):
    // a count of 0 would pass every comparison as "improved".
    let exe = build_source(&dir, "empty", EMPTY);
    let err = instructions_per_iter(&exe, &[OsString::from("x")]).unwrap_err();
    assert!(
        err.to_string().contains("no instructions per iteration"),
        "{err}"
    );
    assert_ne!(err.exit_code(), 0);
    // A kernel that exits non-zero (icount's checksum check) fails the measurement.
    let exe = build_source(&dir, "failing", FAILING);
    let err = instructions_per_iter(&exe, &[OsString::from("x")]).unwrap_err();
    assert!(err.to_string().contains("expected 10"), "{err}");
}
