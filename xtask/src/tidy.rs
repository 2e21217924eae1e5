//! The tidy check: source policies that rustc and clippy do not enforce (or enforce only
//! where a target is compiled). Runs from `cargo xtask lint` and as the ordinary test
//! `tidy::tests::workspace_is_tidy`, so `cargo test --workspace` catches it too.
//!
//! Rules:
//! - every `.rs` file starts with a module doc (`//!` or `#![doc = ...]`), before any
//!   item (other inner attributes and plain comments may come first);
//! - no `dbg!` anywhere;
//! - no `todo!` or `unimplemented!` outside `tests/` directories;
//! - every member `Cargo.toml` opts in to the workspace lints (`[lints] workspace = true`).

use std::path::{Path, PathBuf};

/// One broken rule, with the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file, relative to the workspace root.
    pub path: PathBuf,
    /// 1-based line, 0 when the whole file is concerned.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

// Spelt in pieces so that this file does not flag itself.
const DBG: &str = concat!("dbg", "!(");
const TODO: &str = concat!("todo", "!(");
const UNIMPLEMENTED: &str = concat!("unimplemented", "!(");

/// Directories never searched: build output, VCS data, hidden directories.
fn skip_dir(name: &str) -> bool {
    name == "target" || name.starts_with("target-") || name.starts_with('.')
}

/// Every `.rs` file and member `Cargo.toml` under `root`, sorted.
pub fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !skip_dir(&name) {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                || (name == "Cargo.toml" && dir != root)
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Whether the file's leading lines (blank lines, plain comments and inner attributes,
/// possibly spanning lines) contain a `//!` line before the first item.
fn has_module_doc(text: &str) -> bool {
    let mut depth: i32 = 0;
    for line in text.lines() {
        let t = line.trim();
        if depth > 0 {
            depth += bracket_balance(t);
            continue;
        }
        if t.starts_with("//!") || t.starts_with("#![doc") {
            return true;
        }
        if t.is_empty() || (t.starts_with("//") && !t.starts_with("///")) {
            continue;
        }
        if t.starts_with("#![") {
            depth = bracket_balance(t);
            continue;
        }
        return false;
    }
    false
}

fn bracket_balance(line: &str) -> i32 {
    line.chars().fold(0, |n, c| match c {
        '[' => n + 1,
        ']' => n - 1,
        _ => n,
    })
}

fn in_tests_dir(rel: &Path) -> bool {
    rel.components().any(|c| c.as_os_str() == "tests")
}

/// Checks one file's text; `rel` is its path relative to the workspace root.
pub fn check_text(rel: &Path, text: &str) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut push = |line: usize, message: String| {
        v.push(Violation {
            path: rel.to_path_buf(),
            line,
            message,
        });
    };
    if rel.file_name().is_some_and(|n| n == "Cargo.toml") {
        let opted_in = text.split("\n[").any(|section| {
            section.trim_start_matches('[').starts_with("lints]")
                && section.contains("workspace = true")
        });
        if !opted_in {
            push(
                0,
                "member does not opt in to the workspace lints: add `[lints]\\nworkspace = true`"
                    .into(),
            );
        }
        return v;
    }
    if !has_module_doc(text) {
        push(
            1,
            "no module doc: start the file with a `//!` comment saying what it is for".into(),
        );
    }
    for (i, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        if code.contains(DBG) {
            push(
                i + 1,
                "`dbg!` left in: remove it (use a test assertion or `eprintln!`)".into(),
            );
        }
        if !in_tests_dir(rel) && (code.contains(TODO) || code.contains(UNIMPLEMENTED)) {
            push(
                i + 1,
                "`todo!`/`unimplemented!` in library code: finish it or return a typed error"
                    .into(),
            );
        }
    }
    v
}

/// Checks the whole workspace at `root`.
pub fn check(root: &Path) -> Vec<Violation> {
    files(root)
        .into_iter()
        .flat_map(|path| {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            match std::fs::read_to_string(&path) {
                Ok(text) => check_text(&rel, &text),
                Err(e) => vec![Violation {
                    path: rel,
                    line: 0,
                    message: format!("cannot read: {e}"),
                }],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_is_tidy() {
        let violations = check(&crate::util::workspace_root());
        let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(violations.is_empty(), "tidy found:\n{}", report.join("\n"));
    }

    #[test]
    fn module_doc_rules() {
        assert!(has_module_doc("//! Doc.\nfn f() {}"));
        assert!(has_module_doc(
            "#![allow(\n    clippy::unwrap_used,\n    reason = \"x\"\n)]\n\n//! Doc.\n"
        ));
        assert!(has_module_doc("// licence\n\n//! Doc.\n"));
        assert!(has_module_doc("#![doc = include_str!(\"../README.md\")]\n"));
        assert!(!has_module_doc("/// item doc\nfn f() {}\n//! late"));
        assert!(!has_module_doc("use std::io;\n//! late"));
        assert!(!has_module_doc(""));
    }

    #[test]
    fn flags_debug_leftovers_but_not_in_comments() {
        let src = format!(
            "//! Doc.\nfn f() {{ {DBG}1); }}\n// {DBG}in a comment)\nfn g() {{ {TODO}) }}\n"
        );
        let lib = check_text(Path::new("crates/a/src/lib.rs"), &src);
        assert_eq!(lib.iter().map(|v| v.line).collect::<Vec<_>>(), vec![2, 4]);
        let test = check_text(Path::new("crates/a/tests/t.rs"), &src);
        assert_eq!(test.iter().map(|v| v.line).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn cargo_toml_must_opt_in_to_lints() {
        let ok = "[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n";
        assert!(check_text(Path::new("a/Cargo.toml"), ok).is_empty());
        let bad = "[package]\nname = \"a\"\nworkspace = true\n";
        assert_eq!(check_text(Path::new("a/Cargo.toml"), bad).len(), 1);
    }
}
