//! Small helpers: running commands with an echo, locating the workspace and its target
//! directory, describing the commit and the machine, and a progress line for long runs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::error::{Error, Result};

/// The workspace root (the parent of the `xtask` crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// The `cargo` to run: the one that started us (`$CARGO`), else `cargo` from `PATH`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The command line as a shell would show it, for echoes and error messages.
pub fn show(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(shell_quote));
    parts.join(" ")
}

fn shell_quote(a: &OsStr) -> String {
    let s = a.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio after echoing it to stderr.
///
/// # Errors
/// `Failed` naming the command when it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    eprintln!("$ {shown}");
    let status = cmd
        .status()
        .map_err(|e| Error::failed(format!("cannot start `{shown}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::failed(format!("`{shown}` exited with {status}")))
    }
}

/// Runs `cmd` capturing stdout and stderr (nothing echoed); fails on a non-zero exit with
/// the command's stderr in the message.
///
/// # Errors
/// `Failed` when the command cannot start or exits non-zero.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let shown = show(cmd);
    let out = cmd
        .output()
        .map_err(|e| Error::failed(format!("cannot start `{shown}`: {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::failed(format!(
            "`{shown}` exited with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        )))
    }
}

/// The cargo target directory of the workspace at `root` (honours `CARGO_TARGET_DIR`
/// and config, as `cargo metadata` reports it).
///
/// # Errors
/// `Failed` when `cargo metadata` fails or prints something unexpected.
pub fn target_dir(root: &Path) -> Result<PathBuf> {
    let out = output(cargo().current_dir(root).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::failed(format!("`cargo metadata` printed invalid JSON: {e}")))?;
    v.get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| Error::failed("`cargo metadata` has no target_directory"))
}

/// `git rev-parse HEAD` of the tree at `root`, with `-dirty` when tracked files differ
/// from it, or `"unknown"` outside git.
pub fn commit_of(root: &Path) -> String {
    let Ok(out) = output(
        Command::new("git")
            .current_dir(root)
            .args(["rev-parse", "HEAD"]),
    ) else {
        return "unknown".to_owned();
    };
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let clean = Command::new("git")
        .current_dir(root)
        .args(["diff", "--quiet", "HEAD", "--"])
        .status()
        .is_ok_and(|s| s.success());
    if clean { sha } else { format!("{sha}-dirty") }
}

/// CPU model, logical CPU count and kernel release, e.g.
/// `"AMD EPYC 7B13 x2, Linux 6.8.0"`.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
        |_| std::env::consts::OS.to_owned(),
        |s| format!("Linux {}", s.trim()),
    );
    format!("{cpu} x{cpus}, {kernel}")
}

/// Seconds since the Unix epoch.
pub fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A `[3/8] label (1m05s elapsed, ~2m10s left)` line on stderr per step of a long run.
#[derive(Debug)]
pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    what: &'static str,
}

impl Progress {
    /// A progress counter over `total` steps of `what` (e.g. "bench run").
    pub fn new(what: &'static str, total: usize) -> Self {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            what,
        }
    }

    /// Announces the next step.
    pub fn step(&mut self, label: &str) {
        let elapsed = self.started.elapsed().as_secs();
        let eta = if self.done == 0 {
            String::new()
        } else {
            let left_steps = (self.total - self.done.min(self.total)) as u64;
            let left = elapsed * left_steps / self.done as u64;
            format!(", ~{} left", fmt_secs(left))
        };
        self.done += 1;
        eprintln!(
            "[{}/{} {}] {label} ({} elapsed{eta})",
            self.done,
            self.total,
            self.what,
            fmt_secs(elapsed)
        );
    }
}

fn fmt_secs(s: u64) -> String {
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A scratch directory `<temp dir>/xtask-<name>-<pid>-<n>`, created empty, and removed
/// with everything in it when dropped, also when a test fails and unwinds. Tests that
/// removed their directory on their last line left it behind whenever an assertion
/// failed first, and some never removed it at all.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a fresh, empty scratch directory (one per call, even for the same `name`).
    ///
    /// # Errors
    /// The I/O error when it cannot be created.
    pub fn new(name: &str) -> std::io::Result<ScratchDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("xtask-{name}-{}-{n}", std::process::id()));
        // A directory of a killed earlier process with the same id: start empty.
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&path)?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The directory goes with the guard, contents and all, also when the test that
    /// holds it panics: the leak this guard fixes was a failing (or simply finished)
    /// test leaving `/tmp/xtask-*` behind on every run.
    #[test]
    fn scratch_dirs_are_removed_on_drop_and_on_panic() {
        let dir = ScratchDir::new("util-scratch").unwrap();
        let path = dir.path().to_path_buf();
        std::fs::create_dir_all(path.join("a/b")).unwrap();
        std::fs::write(path.join("a/b/f"), "x").unwrap();
        let other = ScratchDir::new("util-scratch").unwrap();
        assert_ne!(other.path(), path, "two guards shared a directory");
        drop(dir);
        assert!(!path.exists(), "{} survived its guard", path.display());
        let other_path = other.path().to_path_buf();
        drop(other);
        assert!(!other_path.exists());

        let (tx, rx) = std::sync::mpsc::channel();
        let unwound = std::panic::catch_unwind(move || {
            let dir = ScratchDir::new("util-scratch-panic").unwrap();
            std::fs::write(dir.path().join("f"), "x").unwrap();
            tx.send(dir.path().to_path_buf()).unwrap();
            panic!("a failing assertion");
        });
        assert!(unwound.is_err());
        let path = rx.recv().unwrap();
        assert!(!path.exists(), "{} survived a panic", path.display());
    }
}
