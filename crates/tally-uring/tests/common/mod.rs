//! Helpers shared by the ring tests: building a ring that skips with a printed reason when
//! the kernel refuses io_uring, except on CI (`CI` set: root on Linux 6.x), where a
//! refusal fails the test.
#![allow(dead_code, reason = "each test binary uses the helpers it needs")]
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use tally_core_types::{FramePool, FramePoolOptions};
use tally_uring::{Journal, JournalError, JournalOptions, Ring, RingError, RingOptions};

/// A ring, or `None` (with the reason printed) when the kernel refuses io_uring off CI;
/// any other error fails the test.
pub fn ring(opts: RingOptions) -> Option<Ring> {
    match Ring::new(opts) {
        Ok(r) => Some(r),
        Err(e @ RingError::Setup { .. }) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("building the ring failed: {e}"),
    }
}

/// A journal opened in `dir`, or `None` (with the reason printed) when the kernel refuses
/// io_uring off CI; any other error fails the test.
pub fn open_journal(dir: &std::path::Path, opts: JournalOptions) -> Option<Journal> {
    match Journal::open(dir, opts) {
        Ok(j) => Some(j),
        Err(JournalError::Ring(e @ RingError::Setup { .. }))
            if std::env::var_os("CI").is_none() =>
        {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("opening the journal in {}: {e}", dir.display()),
    }
}

/// A fresh read-write file `name` in `dir`.
pub fn scratch_file(dir: &std::path::Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(name))
        .unwrap()
}

/// Runs the test `name` of this test binary alone in a child process with `env` set to
/// "1" (the child takes its own branch of the test), and returns its output.
pub fn run_child(name: &str, env: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .output()
        .unwrap()
}

/// [`ring`] with a registered pool of `frames` populated 4 KiB frames.
pub fn with_pool(opts: RingOptions, frames: u32) -> Option<Ring> {
    let mut r = ring(opts)?;
    r.register_frame_pool(
        FramePool::new(FramePoolOptions::new(4096, frames).populate(true)).unwrap(),
    )
    .unwrap();
    Some(r)
}

/// The FUSE crash file system and power-loss model of the power-loss test.
pub mod crashfs;
