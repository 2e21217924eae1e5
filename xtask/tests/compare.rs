//! `cargo xtask bench-compare` on synthetic result files: the regression rules, the
//! exit codes (0 / 1 / 2) and the reports, through the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use xtask::util::ScratchDir;

/// A fresh scratch directory for one test, removed when the test ends (also on failure).
fn scratch() -> ScratchDir {
    ScratchDir::new("compare").unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `(median, low, high)` in ns.
type Wall = Option<(f64, f64, f64)>;

/// A results file with `(id, wall clock, instructions)` rows.
fn results(commit: &str, rows: &[(&str, Wall, Option<u64>)]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|(id, wall, instr)| {
            let (m, l, h) = wall.map_or(
                ("null".into(), "null".into(), "null".into()),
                |(m, l, h)| (m.to_string(), l.to_string(), h.to_string()),
            );
            let i = instr.map_or("null".into(), |i| i.to_string());
            format!(
                r#"{{"id":"{id}","median_ns":{m},"low_ns":{l},"high_ns":{h},"instructions":{i}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"schema":"tally-bench/1","commit":"{commit}","machine":"test","results":[{}]}}"#,
        items.join(",")
    )
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn compare(base: &Path, head: &Path, extra: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("bench-compare")
        .arg("--base")
        .arg(base)
        .arg("--head")
        .arg(head)
        .args(extra)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The table line of bench `id`.
fn line<'a>(run: &'a Run, id: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("no line for {id} in\n{}", run.stdout))
}

#[test]
fn wall_clock_regression_fails() {
    let d = scratch();
    let base = write(
        &d,
        "base.json",
        &results("a", &[("g/x", Some((100.0, 98.0, 102.0)), None)]),
    );
    let head = write(
        &d,
        "head.json",
        &results("b", &[("g/x", Some((120.0, 118.0, 122.0)), None)]),
    );
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(line(&run, "g/x").contains("REGRESSED"));
    assert!(line(&run, "g/x").contains("+20.00 %"));
    // The exit says what to do next, not only that something regressed.
    assert!(
        run.stderr.contains("REGRESSED rows above") && run.stderr.contains("--filter"),
        "{}",
        run.stderr
    );
}

#[test]
fn improvement_passes() {
    let d = scratch();
    let base = write(
        &d,
        "base.json",
        &results("a", &[("g/x", Some((100.0, 98.0, 102.0)), None)]),
    );
    let head = write(
        &d,
        "head.json",
        &results("b", &[("g/x", Some((50.0, 49.0, 51.0)), None)]),
    );
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(line(&run, "g/x").contains("improved"));
}

#[test]
fn noise_inside_confidence_interval_passes() {
    let d = scratch();
    // Median +20 %, but the head interval reaches down into the base interval.
    let base = write(
        &d,
        "base.json",
        &results("a", &[("g/x", Some((100.0, 80.0, 125.0)), None)]),
    );
    let head = write(
        &d,
        "head.json",
        &results("b", &[("g/x", Some((120.0, 95.0, 150.0)), None)]),
    );
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(line(&run, "g/x").contains("noise"));
    // Disjoint intervals but a change under the threshold: unchanged.
    let base = write(
        &d,
        "b2.json",
        &results("a", &[("g/x", Some((100.0, 99.9, 100.1)), None)]),
    );
    let head = write(
        &d,
        "h2.json",
        &results("b", &[("g/x", Some((103.0, 102.9, 103.1)), None)]),
    );
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(line(&run, "g/x").contains("unchanged"));
}

#[test]
fn instruction_regression_under_flat_wall_clock_fails() {
    let d = scratch();
    let base = write(
        &d,
        "base.json",
        &results("a", &[("g/x", Some((100.0, 90.0, 110.0)), Some(1000))]),
    );
    let head = write(
        &d,
        "head.json",
        &results("b", &[("g/x", Some((99.0, 89.0, 109.0)), Some(1100))]),
    );
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let l = line(&run, "g/x");
    assert!(
        l.contains("REGRESSED") && l.contains("1100 instr") && l.contains("+10.00 %"),
        "{l}"
    );
}

#[test]
fn instruction_change_under_threshold_passes_even_if_wall_clock_jumps() {
    let d = scratch();
    let base = write(
        &d,
        "base.json",
        &results("a", &[("g/x", Some((100.0, 99.0, 101.0)), Some(1000))]),
    );
    let head = write(
        &d,
        "head.json",
        &results("b", &[("g/x", Some((150.0, 149.0, 151.0)), Some(1040))]),
    );
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(line(&run, "g/x").contains("unchanged"));
}

#[test]
fn thresholds_from_flag_and_config() {
    let d = scratch();
    let base = write(
        &d,
        "base.json",
        &results("a", &[("g/x", None, Some(1000)), ("h/y", None, Some(1000))]),
    );
    let head = write(
        &d,
        "head.json",
        &results("b", &[("g/x", None, Some(1080)), ("h/y", None, Some(1080))]),
    );
    assert_eq!(compare(&base, &head, &[]).code, 1);
    assert_eq!(compare(&base, &head, &["--threshold", "10"]).code, 0);
    let cfg = write(
        &d,
        "cfg.json",
        r#"{"schema":"tally-bench-config/1","threshold_pct":10,"thresholds":{"h/*":5}}"#,
    );
    let run = compare(&base, &head, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(line(&run, "g/x").contains("unchanged"));
    assert!(line(&run, "h/y").contains("REGRESSED"));
}

#[test]
fn new_and_removed_benches_are_listed_not_failed() {
    let d = scratch();
    let base = write(
        &d,
        "base.json",
        &results(
            "a",
            &[("g/old", None, Some(10)), ("g/same", None, Some(10))],
        ),
    );
    let head = write(
        &d,
        "head.json",
        &results(
            "b",
            &[("g/new", None, Some(99)), ("g/same", None, Some(10))],
        ),
    );
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(line(&run, "g/old").contains("removed"));
    assert!(line(&run, "g/new").contains("new"));
    assert!(run.stdout.contains("1 new, 1 removed"));
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let d = scratch();
    let good = write(&d, "good.json", &results("a", &[("g/x", None, Some(10))]));
    let malformed = write(
        &d,
        "malformed.json",
        "{\"schema\": \"tally-bench/1\", \"results\": [",
    );
    let wrong_schema = write(
        &d,
        "schema.json",
        r#"{"schema":"criterion/9","commit":"a","machine":"m","results":[]}"#,
    );
    let bad_field = write(&d, "field.json", &results("a", &[("g/x", None, None)]));
    let missing = d.join("does-not-exist.json");
    for (file, needle) in [
        (&malformed, "not valid JSON"),
        (&wrong_schema, "unknown schema \"criterion/9\""),
        (&bad_field, "neither wall-clock"),
        (&missing, "neither a results file nor a git ref"),
    ] {
        for (b, h) in [(file, &good), (&good, file)] {
            let run = compare(b, h, &[]);
            assert_eq!(run.code, 2, "{}: {}", file.display(), run.stderr);
            assert!(
                run.stderr.contains(needle),
                "{}: {}",
                file.display(),
                run.stderr
            );
        }
    }
    let run = compare(&good, &good, &["--threshold", "-3"]);
    assert_eq!(run.code, 2);
    let bad_cfg = write(
        &d,
        "cfg.json",
        r#"{"schema":"tally-bench-config/1","treshold":3}"#,
    );
    let run = compare(&good, &good, &["--config", bad_cfg.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("unknown key"), "{}", run.stderr);
    let run = compare(&good, &good, &["--bogus"]);
    assert_eq!(run.code, 2);
}

#[test]
fn markdown_and_chart_reports() {
    let d = scratch();
    let base = write(
        &d,
        "base.json",
        &results(
            "a",
            &[
                ("g/x", None, Some(1000)),
                ("g/<y>", Some((10.0, 9.0, 11.0)), None),
            ],
        ),
    );
    let head = write(
        &d,
        "head.json",
        &results(
            "b",
            &[
                ("g/x", None, Some(2000)),
                ("g/<y>", Some((5.0, 4.5, 5.5)), None),
            ],
        ),
    );
    let md = d.join("out.md");
    let svg = d.join("out.svg");
    let run = compare(
        &base,
        &head,
        &[
            "--markdown",
            md.to_str().unwrap(),
            "--chart",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1);
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("**Performance regression**"), "{md}");
    assert!(
        md.contains(
            "| `g/x` | 1000 instr | 2000 instr | +100.00 % (limit 5.0 %) | **REGRESSED** |"
        ),
        "{md}"
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("g/&lt;y&gt;") && svg.contains("#d62728") && svg.contains("#2ca02c"));
}

#[test]
fn nothing_in_common_is_bad_input_not_a_pass() {
    // Two files that share no measured bench (a typo in --filter, files from different
    // bench sets): nothing was compared, so "no regression" would be a vacuous pass.
    let d = scratch();
    let base = write(&d, "base.json", &results("a", &[("g/old", None, Some(10))]));
    let head = write(&d, "head.json", &results("b", &[("g/new", None, Some(99))]));
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("nothing was compared"),
        "{}",
        run.stderr
    );
    // Wall clock on one side and instructions on the other: not comparable either.
    let base = write(
        &d,
        "b2.json",
        &results("a", &[("g/x", Some((10.0, 9.0, 11.0)), None)]),
    );
    let head = write(&d, "h2.json", &results("b", &[("g/x", None, Some(10))]));
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    // A filter that matches nothing.
    let base = write(&d, "b3.json", &results("a", &[("g/x", None, Some(10))]));
    let head = write(&d, "h3.json", &results("b", &[("g/x", None, Some(20))]));
    let run = compare(&base, &head, &["--filter", "typo/"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_stopped_comparison_leaves_no_earlier_report_behind() {
    // The run stops before writing its report (here: a head that is neither a file nor a
    // ref); the report of an earlier run at the same path must not pass for this one's.
    let d = scratch();
    let base = write(&d, "base.json", &results("a", &[("g/x", None, Some(10))]));
    let md = write(
        &d,
        "pr.md",
        "### Bench comparison: No performance regression\n",
    );
    let svg = write(&d, "pr.svg", "<svg/>");
    let run = compare(
        &base,
        &d.join("missing.json"),
        &[
            "--markdown",
            md.to_str().unwrap(),
            "--chart",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(!md.exists() && !svg.exists(), "{}", run.stderr);
}

#[test]
fn a_report_path_that_is_an_input_is_refused_and_kept() {
    let d = scratch();
    let text = results("a", &[("g/x", None, Some(10))]);
    let base = write(&d, "base.json", &text);
    let head = write(&d, "head.json", &results("b", &[("g/x", None, Some(10))]));
    let run = compare(&base, &head, &["--markdown", base.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("also an input"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&base).unwrap(), text);
}

#[test]
fn a_report_of_nothing_compared_does_not_say_no_regression() {
    // A pull-request comment posted from --markdown must not read "No performance
    // regression" when the run exited 2 because no bench was measured on both sides.
    let d = scratch();
    let base = write(&d, "base.json", &results("a", &[("g/old", None, Some(10))]));
    let head = write(&d, "head.json", &results("b", &[("g/new", None, Some(99))]));
    let md = d.join("pr.md");
    let run = compare(&base, &head, &["--markdown", md.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let text = std::fs::read_to_string(&md).unwrap_or_default();
    assert!(!text.contains("No performance regression"), "{text}");
    assert!(text.contains("Nothing compared"), "{text}");
    // And the table says so too.
    assert!(run.stdout.contains("nothing compared"), "{}", run.stdout);
}

#[test]
fn filter_applies_to_result_files() {
    let d = scratch();
    let base = write(
        &d,
        "base.json",
        &results("a", &[("g/x", None, Some(1000)), ("h/y", None, Some(1000))]),
    );
    let head = write(
        &d,
        "head.json",
        &results("b", &[("g/x", None, Some(1200)), ("h/y", None, Some(1000))]),
    );
    // Without a filter the g/x regression fails the comparison ...
    assert_eq!(compare(&base, &head, &[]).code, 1);
    // ... with `--filter h/` only h/y is compared, as documented.
    let run = compare(&base, &head, &["--filter", "h/"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("g/x"), "{}", run.stdout);
    assert!(line(&run, "h/y").contains("unchanged"));
    let run = compare(&base, &head, &["--filter", "g/"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
}

#[test]
fn instruction_regression_of_20_percent_fails_and_the_inverse_passes() {
    // A test that fails if the comparison is inverted: +20 % instructions is exit 1,
    // the same pair swapped (-16.7 %) is exit 0 and "improved".
    let d = scratch();
    let base = write(&d, "base.json", &results("a", &[("g/x", None, Some(1000))]));
    let head = write(&d, "head.json", &results("b", &[("g/x", None, Some(1200))]));
    let run = compare(&base, &head, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(line(&run, "g/x").contains("+20.00 %"));
    let run = compare(&head, &base, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(line(&run, "g/x").contains("improved"));
}

#[test]
fn zero_measurements_are_bad_input_not_unchanged() {
    // A bench whose work was optimised away measures 0: compared with another 0 it would
    // be "unchanged" (0/0), and as a base it would turn any head into "+inf". Neither is
    // a measurement.
    let d = scratch();
    let good = write(&d, "good.json", &results("a", &[("g/x", None, Some(10))]));
    let zero_instr = write(&d, "zi.json", &results("a", &[("g/x", None, Some(0))]));
    let zero_wall = write(
        &d,
        "zw.json",
        &results("a", &[("g/x", Some((0.0, 0.0, 0.0)), None)]),
    );
    for (file, needle) in [(&zero_instr, "instructions"), (&zero_wall, "median_ns")] {
        for (b, h) in [(file, file), (file, &good), (&good, file)] {
            let run = compare(b, h, &[]);
            assert_eq!(
                run.code,
                2,
                "{}: {}{}",
                file.display(),
                run.stdout,
                run.stderr
            );
            assert!(run.stderr.contains(needle), "{}", run.stderr);
        }
    }
}
