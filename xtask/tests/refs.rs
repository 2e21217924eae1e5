//! `bench-compare` on git refs, end to end: a scratch git repository holds a minimal
//! workspace with a `tally-benches` package whose `icount` kernel does more work per
//! iteration in its second commit. `xtask bench-compare --repo DIR --base C1 --head C2
//! --instructions-only` checks both commits out in worktrees, builds them, counts
//! instructions under callgrind, and must exit 1; comparing C1 with itself exits 0; an
//! unknown ref and a ref that does not build exit 2. The worktrees must be gone afterwards.
//!
//! Needs `git`, `valgrind` and `cargo` (no registry access: the scratch crate has no
//! dependencies). Without valgrind the test says why and passes, except on CI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::Path;
use std::process::Command;

const WORKSPACE: &str = "[workspace]\nmembers = [\"benches\"]\nresolver = \"2\"\n";

const PACKAGE: &str = "[package]\nname = \"tally-benches\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[[bin]]\nname = \"icount\"\npath = \"src/bin/icount.rs\"\n";

/// The scratch `icount`: one kernel whose inner loop runs `WORK` times per iteration.
fn icount_source(work: u64) -> String {
    format!(
        r#"use std::hint::black_box;
const WORK: u64 = {work};
fn main() {{
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {{
        println!("tiny/mul_add");
        return;
    }}
    let iters: u64 = args[1].parse().unwrap();
    let mut acc = 1u64;
    for i in 0..iters {{
        for j in 0..black_box(WORK) {{
            acc = black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(i ^ j));
        }}
    }}
    println!("{{acc}}");
}}
"#
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=xtask test",
            "-c",
            "user.email=xtask@test.invalid",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit_with_work(repo: &Path, work: u64) -> String {
    std::fs::write(repo.join("benches/src/bin/icount.rs"), icount_source(work)).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", &format!("work {work}")]);
    git(repo, &["rev-parse", "HEAD"])
}

/// A fresh git repository at `repo` holding the bench workspace in two commits, whose
/// kernel does 8 and then 12 units of work per iteration; returns both commit ids.
fn two_commit_repo(repo: &Path) -> (String, String) {
    let _ = std::fs::remove_dir_all(repo);
    std::fs::create_dir_all(repo.join("benches/src/bin")).unwrap();
    std::fs::write(repo.join("Cargo.toml"), WORKSPACE).unwrap();
    std::fs::write(repo.join("benches/Cargo.toml"), PACKAGE).unwrap();
    std::fs::write(repo.join(".gitignore"), "/target\n").unwrap();
    git(repo, &["init", "-q"]);
    (commit_with_work(repo, 8), commit_with_work(repo, 12))
}

fn compare(repo: &Path, base: &str, head: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .env_remove("CARGO_TARGET_DIR")
        .args(["bench-compare", "--instructions-only", "--repo"])
        .arg(repo)
        .args(["--base", base, "--head", head])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn refs_are_built_in_worktrees_and_compared() {
    if !Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind is missing on CI: add `apt-get install -y valgrind` to .ci/run"
        );
        eprintln!("skipping: valgrind is not installed (apt-get install -y valgrind)");
        return;
    }
    let repo = xtask::util::ScratchDir::new("refs").unwrap();
    let (c1, c2) = two_commit_repo(&repo);

    let (code, out) = compare(&repo, &c1, &c2);
    assert_eq!(code, 1, "head does 1.5x the work per iteration:\n{out}");
    assert!(
        out.contains("tiny/mul_add") && out.contains("REGRESSED"),
        "{out}"
    );
    assert!(
        out.contains("[1/2 kernel]") && out.contains("[2/2 kernel]"),
        "progress lines:\n{out}"
    );

    let (code, out) = compare(&repo, "HEAD~1", &c1);
    assert_eq!(code, 0, "same commit on both sides:\n{out}");
    assert!(out.contains("unchanged"), "{out}");

    let (code, out) = compare(&repo, "no-such-branch", &c1);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("neither a results file nor a git ref"),
        "{out}"
    );

    // A ref whose benches do not build is bad input (exit 2), and its worktree goes too.
    std::fs::write(
        repo.join("benches/src/bin/icount.rs"),
        "fn main() { this does not compile }\n",
    )
    .unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "broken"]);
    let (code, out) = compare(&repo, &c1, "HEAD");
    assert_eq!(code, 2, "a head that does not build:\n{out}");
    assert!(out.contains("does not build"), "{out}");

    let worktrees = git(&repo, &["worktree", "list"]);
    assert_eq!(
        worktrees.lines().count(),
        1,
        "temporary worktrees left behind:\n{worktrees}"
    );
}

/// Ctrl-C during a `bench-compare` of refs (most likely during the long bench runs) must
/// not leave the temporary worktrees behind: the terminal sends SIGINT to the whole
/// foreground process group, which kills `xtask` without running its drop handlers.
#[test]
fn ctrl_c_leaves_no_worktree_behind() {
    use std::os::unix::process::CommandExt as _;
    use std::time::{Duration, Instant};

    let repo = xtask::util::ScratchDir::new("refs-ctrl-c").unwrap();
    let (c1, c2) = two_commit_repo(&repo);

    // In a process group of its own, as a shell runs a foreground job.
    let mut xtask = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .env_remove("CARGO_TARGET_DIR")
        .args(["bench-compare", "--instructions-only", "--repo"])
        .arg(repo.path())
        .args(["--base", &c1, "--head", &c2])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let work = repo.join("target/bench-compare");
    let started = Instant::now();
    while !work.join("base/.git").exists() {
        assert!(
            xtask.try_wait().unwrap().is_none(),
            "bench-compare ended before its base worktree appeared"
        );
        assert!(
            started.elapsed() < Duration::from_mins(3),
            "no base worktree after 3 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ctrl-C: SIGINT to the whole process group (xtask, git, cargo, ...).
    // The shell's `kill` builtin: a minimal image may have no kill executable.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -s INT -- -{}", xtask.id())])
        .status()
        .unwrap();
    assert!(status.success(), "kill failed");
    let _ = xtask.wait().unwrap();

    let started = Instant::now();
    loop {
        let worktrees = git(&repo, &["worktree", "list"]);
        let left = ["base", "head"].map(|side| work.join(side).exists());
        if worktrees.lines().count() == 1 && left == [false, false] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "worktrees left behind 30 s after Ctrl-C (base, head dirs exist: {left:?}):\n{worktrees}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
