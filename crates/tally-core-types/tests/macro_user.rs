//! `single_writer_stats!` expands in the *user's* crate, so it must not carry this
//! crate's own `cfg(tally_loom)`: a crate outside this workspace, which does not declare
//! that cfg, would get an `unexpected_cfgs` warning per use (an error under
//! `-D warnings`). This compiles such a user with `rustc --check-cfg cfg() -D warnings`
//! against the library built for this test.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![cfg(not(tally_loom))]

use std::path::PathBuf;
use std::process::Command;

/// The newest `libtally_core_types-*.rlib` next to this test's executable (cargo builds
/// the library into the same `deps` directory just before the test).
fn library() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let rlib = std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libtally_core_types-") && name.ends_with(".rlib")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .expect("the library's rlib next to the test executable")
        .path();
    (deps, rlib)
}

#[test]
fn stats_macro_is_warning_free_in_a_crate_that_does_not_know_tally_loom() {
    let (deps, rlib) = library();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("macro_user");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("user.rs");
    std::fs::write(
        &src,
        "//! A user crate.\n\
         tally_core_types::single_writer_stats! {\n\
         \x20   /// Stats.\n\
         \x20   pub struct S => Snap {\n\
         \x20       /// Packets.\n\
         \x20       packets,\n\
         \x20   }\n\
         }\n\
         /// Made at compile time: `new` is `const`.\n\
         pub static STATS: S = S::new();\n",
    )
    .unwrap();
    let out = Command::new("rustc")
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "lib",
            "--check-cfg",
            "cfg()",
        ])
        .args(["-D", "warnings", "-D", "missing_docs"])
        .arg("--extern")
        .arg(format!("tally_core_types={}", rlib.display()))
        .arg("-L")
        .arg(format!("dependency={}", deps.display()))
        .arg("--out-dir")
        .arg(&dir)
        .arg(&src)
        .output()
        .expect("run rustc");
    assert!(
        out.status.success(),
        "a user crate of single_writer_stats! does not compile cleanly:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
