//! `cargo xtask lint`: formatting, clippy, rustdoc, cargo-deny (when installed) and the
//! tidy check, each run even when an earlier one failed, with a summary at the end.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::tidy;
use crate::util;

/// The one-line hint printed when cargo-deny is missing.
pub const DENY_HINT: &str = "cargo-deny is not installed, skipping `cargo deny check licenses bans sources` (install: `cargo install cargo-deny --locked`)";

/// Whether `cargo deny` runs here.
pub fn deny_installed() -> bool {
    util::cargo()
        .args(["deny", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs every lint step in the workspace at `root`; a missing cargo-deny fails the lint
/// when `CI` is set to something (`.ci/run` installs it) and is skipped with a hint
/// otherwise.
///
/// # Errors
/// `Failed` listing the steps that failed.
pub fn lint(root: &Path) -> Result<()> {
    lint_with(root, on_ci(std::env::var_os("CI").as_deref()))
}

/// Whether a `CI` variable with this value means "on CI": set and not empty, as
/// `cargo xtask ci` and `.ci/run` (`${CI:-true}`) read it.
fn on_ci(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// [`lint`], with `require_deny` deciding whether a missing cargo-deny fails it.
///
/// # Errors
/// `Failed` listing the steps that failed.
pub fn lint_with(root: &Path, require_deny: bool) -> Result<()> {
    let mut failed: Vec<String> = Vec::new();
    let mut step = |name: &str, mut cmd: Command| {
        eprintln!("== lint: {name}");
        if let Err(e) = util::run(cmd.current_dir(root)) {
            eprintln!("{e}");
            failed.push(name.to_owned());
        }
    };

    let mut fmt = util::cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    step("fmt", fmt);

    let mut clippy = util::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    step("clippy", clippy);

    let mut doc = util::cargo();
    doc.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    step("doc", doc);

    if deny_installed() {
        let mut deny = util::cargo();
        deny.args(["deny", "--offline", "check", "licenses", "bans", "sources"]);
        step("deny", deny);
    } else if require_deny {
        // CI installs it (`.ci/run`): a missing cargo-deny there is a broken set-up, not
        // a reason to skip the check.
        eprintln!(
            "== lint: deny\ncargo-deny is missing, and CI needs it: install it with `cargo install cargo-deny --version 0.20.2 --locked` (as `.ci/run` does)"
        );
        failed.push("deny".to_owned());
    } else {
        eprintln!("== lint: deny\n{DENY_HINT}");
    }

    eprintln!("== lint: tidy");
    let violations = tidy::check(root);
    for v in &violations {
        eprintln!("{v}");
    }
    if !violations.is_empty() {
        failed.push("tidy".to_owned());
    }

    if failed.is_empty() {
        eprintln!("lint: all checks passed");
        Ok(())
    } else {
        Err(Error::failed(format!(
            "lint steps failed: {} (rerun one with `cargo xtask lint` after fixing; `cargo fmt --all` fixes formatting)",
            failed.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::on_ci;
    use std::ffi::OsStr;

    /// An empty `CI=` is unset, as for `cargo xtask ci` and `.ci/run`; it used to make the
    /// lint require cargo-deny where those two did not.
    #[test]
    fn empty_ci_is_not_ci() {
        assert!(!on_ci(None));
        assert!(!on_ci(Some(OsStr::new(""))));
        assert!(on_ci(Some(OsStr::new("true"))));
        assert!(on_ci(Some(OsStr::new("1"))));
    }
}
