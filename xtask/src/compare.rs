//! The regression rules of `bench-compare`, and the table they print.
//!
//! A bench that has an instruction count on both sides is judged on instructions alone
//! (deterministic, so any growth past the threshold is real). Otherwise it is judged on
//! wall clock, and only regresses when the two confidence intervals do not overlap *and*
//! the median grew past the threshold: a noisy shared machine moves medians by tens of
//! percent, but rarely moves a whole interval clear of the other. Figures of the benches
//! with their own `main` (rates, latencies) are judged the same way in the direction
//! their unit says is worse: a rate regresses when it falls, a latency when it grows.

use std::fmt::Write as _;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::results::{BenchResult, Better, Results, Unit, WallClock};

/// What the comparison measured for one bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Callgrind instructions per iteration on both sides.
    Instructions,
    /// Criterion wall-clock median and confidence interval on both sides, or a figure
    /// (median and range of the repetitions) in the same unit on both sides.
    WallClock,
}

/// The verdict on one bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Grew past its threshold (and, on wall clock, the intervals do not overlap).
    Regressed,
    /// Shrank past its threshold (and, on wall clock, the intervals do not overlap).
    Improved,
    /// Changed less than the threshold.
    Unchanged,
    /// Wall-clock median moved past the threshold but the intervals overlap.
    Noise,
    /// Only in head.
    New,
    /// Only in base.
    Removed,
    /// On both sides, but with no measure in common (wall clock on one side,
    /// instructions on the other, or figures in different units).
    NotComparable,
}

impl Verdict {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Regressed => "REGRESSED",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::Noise => "noise (CIs overlap)",
            Verdict::New => "new",
            Verdict::Removed => "removed",
            Verdict::NotComparable => "not comparable",
        }
    }
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Bench id.
    pub id: String,
    /// The base side, if the bench is there.
    pub base: Option<BenchResult>,
    /// The head side, if the bench is there.
    pub head: Option<BenchResult>,
    /// What was compared, when both sides share a measure.
    pub basis: Option<Basis>,
    /// `(head - base) / base` in percent, on the basis measure (whichever way is better:
    /// a rate that fell 10 % is -10 %).
    pub change_pct: Option<f64>,
    /// The threshold that applied, percent.
    pub threshold_pct: f64,
    /// The verdict.
    pub verdict: Verdict,
}

/// The full comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Base commit, from the base file.
    pub base_commit: String,
    /// Head commit, from the head file.
    pub head_commit: String,
    /// One row per bench id found on either side, sorted by id.
    pub rows: Vec<Row>,
}

impl Comparison {
    /// Whether any bench regressed: `bench-compare` exits 1 exactly when this is true.
    pub fn has_regression(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Regressed)
    }

    /// Whether at least one bench had a measure on both sides. Without one, "no
    /// regression" backs nothing ([`require_compared`] makes that exit 2).
    pub fn compared_any(&self) -> bool {
        self.rows.iter().any(|r| r.basis.is_some())
    }

    /// Number of rows with this verdict.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == verdict).count()
    }
}

/// Refuses a comparison in which no bench had a measure on both sides: "no regression"
/// would then be a pass that nothing backs (a `--filter` that matches nothing, files from
/// different bench sets, wall clock on one side and instructions on the other).
///
/// # Errors
/// `BadInput` saying how many benches each side had and what to check.
pub fn require_compared(cmp: &Comparison, base_len: usize, head_len: usize) -> Result<()> {
    if cmp.compared_any() {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "nothing was compared: base has {base_len} benches, head has {head_len}, and none has \
         a measure (instructions or wall clock) on both sides; check --filter, and that both \
         sides come from the same benches and modes (--instructions on both, or neither)"
    )))
}

fn change_pct(base: f64, head: f64) -> f64 {
    if base == 0.0 {
        if head == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        (head - base) / base * 100.0
    }
}

/// Compares `head` against `base` with the thresholds of `config`.
pub fn compare(base: &Results, head: &Results, config: &Config) -> Comparison {
    let mut ids: Vec<&str> = base
        .results
        .iter()
        .chain(&head.results)
        .map(|r| r.id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = ids
        .into_iter()
        .map(|id| judge(id, base.get(id), head.get(id), config.threshold_for(id)))
        .collect();
    Comparison {
        base_commit: base.commit.clone(),
        head_commit: head.commit.clone(),
        rows,
    }
}

fn judge(
    id: &str,
    base: Option<&BenchResult>,
    head: Option<&BenchResult>,
    threshold_pct: f64,
) -> Row {
    let mut row = Row {
        id: id.to_owned(),
        base: base.cloned(),
        head: head.cloned(),
        basis: None,
        change_pct: None,
        threshold_pct,
        verdict: Verdict::NotComparable,
    };
    let (Some(b), Some(h)) = (base, head) else {
        row.verdict = if base.is_some() {
            Verdict::Removed
        } else {
            Verdict::New
        };
        return row;
    };
    if let (Some(bi), Some(hi)) = (b.instructions, h.instructions) {
        #[allow(
            clippy::cast_precision_loss,
            reason = "instruction counts are far below 2^52"
        )]
        let change = change_pct(bi as f64, hi as f64);
        row.basis = Some(Basis::Instructions);
        row.change_pct = Some(change);
        row.verdict = if change > threshold_pct {
            Verdict::Regressed
        } else if change < -threshold_pct {
            Verdict::Improved
        } else {
            Verdict::Unchanged
        };
    } else if let (Some(bw), Some(hw)) = (&b.wall, &h.wall) {
        if bw.unit != hw.unit {
            // A rate against a latency, or a unit that changed: no ratio means anything.
            return row;
        }
        let change = change_pct(bw.median, hw.median);
        row.basis = Some(Basis::WallClock);
        row.change_pct = Some(change);
        // `worse`: the change in the bad direction, in percent; `worse_apart` /
        // `better_apart`: the head's interval lies wholly on that side of the base's.
        let (worse, worse_apart, better_apart) = match bw.unit.better() {
            Better::Lower => (change, hw.low > bw.high, hw.high < bw.low),
            Better::Higher => (-change, hw.high < bw.low, hw.low > bw.high),
        };
        row.verdict = if worse > threshold_pct {
            if worse_apart {
                Verdict::Regressed
            } else {
                Verdict::Noise
            }
        } else if worse < -threshold_pct {
            if better_apart {
                Verdict::Improved
            } else {
                Verdict::Noise
            }
        } else {
            Verdict::Unchanged
        };
    }
    row
}

/// Formats nanoseconds with a unit that keeps three or four significant digits.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.2} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Formats a figure with three or four significant digits (no unit).
pub fn fmt_figure(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The median of a wall-clock measurement with its unit, for the `bench` listing.
pub fn fmt_median(w: &WallClock) -> String {
    match &w.unit {
        Unit::NsPerIter => fmt_ns(w.median),
        Unit::Figure { name, .. } => format!("{} {name}", fmt_figure(w.median)),
    }
}

/// A wall-clock measurement as `median [low, high]` with its unit.
pub fn fmt_wall(w: &WallClock) -> String {
    match &w.unit {
        Unit::NsPerIter => format!(
            "{} [{}, {}]",
            fmt_ns(w.median),
            fmt_ns(w.low),
            fmt_ns(w.high)
        ),
        Unit::Figure { name, .. } => format!(
            "{} {name} [{}, {}]",
            fmt_figure(w.median),
            fmt_figure(w.low),
            fmt_figure(w.high)
        ),
    }
}

fn fmt_side(r: Option<&BenchResult>, basis: Option<Basis>) -> String {
    let Some(r) = r else { return "-".to_owned() };
    let instr = r.instructions.map(|i| format!("{i} instr"));
    let wall = r.wall.as_ref().map(fmt_wall);
    let shown = match basis {
        Some(Basis::WallClock) => wall,
        Some(Basis::Instructions) | None => instr.or(wall),
    };
    shown.unwrap_or_else(|| "-".to_owned())
}

/// Whether the row was judged on a figure whose better direction is up (a rate): the
/// change column and the chart say so, since a positive change is good there.
pub fn higher_is_better(row: &Row) -> bool {
    row.basis == Some(Basis::WallClock)
        && row
            .base
            .as_ref()
            .and_then(|b| b.wall.as_ref())
            .is_some_and(|w| w.unit.better() == Better::Higher)
}

fn fmt_change(row: &Row) -> String {
    let direction = if higher_is_better(row) {
        ", higher is better"
    } else {
        ""
    };
    match row.change_pct {
        Some(c) if c.is_infinite() => format!(
            "+inf %{}",
            if direction.is_empty() {
                ""
            } else {
                " (higher is better)"
            }
        ),
        Some(c) => format!("{c:+.2} % (limit {:.1} %{direction})", row.threshold_pct),
        None => "-".to_owned(),
    }
}

fn cells(row: &Row) -> [String; 5] {
    [
        row.id.clone(),
        fmt_side(row.base.as_ref(), row.basis),
        fmt_side(row.head.as_ref(), row.basis),
        fmt_change(row),
        row.verdict.label().to_owned(),
    ]
}

const HEADER: [&str; 5] = ["bench", "base", "head", "change", "verdict"];

fn summary(c: &Comparison) -> String {
    format!(
        "{} regressed, {} improved, {} unchanged, {} noise, {} new, {} removed, {} not comparable",
        c.count(Verdict::Regressed),
        c.count(Verdict::Improved),
        c.count(Verdict::Unchanged),
        c.count(Verdict::Noise),
        c.count(Verdict::New),
        c.count(Verdict::Removed),
        c.count(Verdict::NotComparable),
    )
}

/// The comparison as an aligned plain-text table for the terminal.
pub fn to_table(c: &Comparison) -> String {
    let rows: Vec<[String; 5]> = c.rows.iter().map(cells).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "base {}  vs  head {}", c.base_commit, c.head_commit);
    let line = |out: &mut String, cells: &[String]| {
        let mut parts = Vec::with_capacity(cells.len());
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w.saturating_sub(cell.chars().count());
            parts.push(format!("{cell}{}", " ".repeat(pad)));
        }
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &HEADER.map(str::to_owned));
    line(&mut out, &widths.map(|w| "-".repeat(w)));
    for r in &rows {
        line(&mut out, r);
    }
    let _ = writeln!(out, "{}", summary(c));
    if !c.compared_any() {
        let _ = writeln!(out, "{NOTHING_COMPARED}");
    }
    out
}

/// The table's and the report's line for a comparison without a bench measured on both
/// sides.
const NOTHING_COMPARED: &str =
    "nothing compared: no bench has a measure (instructions or wall clock) on both sides";

/// The comparison as a Markdown table, for a pull-request comment.
pub fn to_markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let verdict = if c.has_regression() {
        "**Performance regression**"
    } else if !c.compared_any() {
        "**Nothing compared** (no bench measured on both sides)"
    } else {
        "No performance regression"
    };
    let _ = writeln!(
        out,
        "### Bench comparison: {verdict}\n\nbase `{}` vs head `{}`\n",
        c.base_commit, c.head_commit
    );
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    for row in &c.rows {
        let [id, b, h, ch, v] = cells(row);
        let v = if row.verdict == Verdict::Regressed {
            format!("**{v}**")
        } else {
            v
        };
        let _ = writeln!(out, "| `{id}` | {b} | {h} | {ch} | {v} |");
    }
    let _ = writeln!(out, "\n{}", summary(c));
    let _ = writeln!(
        out,
        "\nInstruction counts (callgrind) decide where both sides have them; otherwise a bench regresses only when its wall-clock confidence intervals do not overlap and the median moved past the limit in the worse direction (up for times and latencies, down for rates)."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(id: &str, median: f64, low: f64, high: f64, unit: &str, better: Better) -> Results {
        Results {
            commit: "c".into(),
            machine: "m".into(),
            created_unix_s: None,
            results: vec![BenchResult {
                id: id.into(),
                wall: Some(WallClock {
                    median,
                    low,
                    high,
                    unit: Unit::Figure {
                        name: unit.into(),
                        better,
                    },
                }),
                instructions: None,
            }],
        }
    }

    fn verdict(base: &Results, head: &Results) -> Row {
        let cmp = compare(base, head, &Config::default());
        assert_eq!(cmp.rows.len(), 1, "{cmp:?}");
        cmp.rows.into_iter().next().unwrap()
    }

    /// A rate regresses when it falls and improves when it rises; a latency the other way
    /// round. Judging a rate like a time (up = worse) passed every throughput regression.
    #[test]
    fn figures_are_judged_in_their_better_direction() {
        let rate = |m: f64| figure("j/rate", m, m * 0.99, m * 1.01, "rec/s", Better::Higher);
        let row = verdict(&rate(1000.0), &rate(800.0));
        assert_eq!(row.verdict, Verdict::Regressed, "{row:?}");
        assert_eq!(row.basis, Some(Basis::WallClock));
        assert!((row.change_pct.unwrap() + 20.0).abs() < 1e-9, "{row:?}");
        assert_eq!(
            verdict(&rate(800.0), &rate(1000.0)).verdict,
            Verdict::Improved
        );
        assert_eq!(
            verdict(&rate(1000.0), &rate(990.0)).verdict,
            Verdict::Unchanged
        );

        let lat = |m: f64| figure("j/p99", m, m * 0.99, m * 1.01, "us", Better::Lower);
        assert_eq!(
            verdict(&lat(100.0), &lat(130.0)).verdict,
            Verdict::Regressed
        );
        assert_eq!(verdict(&lat(130.0), &lat(100.0)).verdict, Verdict::Improved);

        // Past the threshold, but the ranges of the repetitions overlap: noise.
        let wide = |m: f64| figure("j/rate", m, m * 0.5, m * 1.5, "rec/s", Better::Higher);
        assert_eq!(verdict(&wide(1000.0), &wide(800.0)).verdict, Verdict::Noise);

        // The tables say which way is better where up is good.
        let row = verdict(&rate(1000.0), &rate(800.0));
        let table = to_table(&compare(&rate(1000.0), &rate(800.0), &Config::default()));
        assert!(higher_is_better(&row));
        assert!(table.contains("higher is better"), "{table}");
        assert!(table.contains("1000 rec/s [990.0, 1010]"), "{table}");
        assert!(table.contains("REGRESSED"), "{table}");
    }

    /// Criterion rows keep their rules: a time that grows regresses.
    #[test]
    fn criterion_times_still_regress_upwards() {
        let t = |m: f64| Results {
            results: vec![BenchResult {
                id: "ring/x".into(),
                wall: Some(WallClock::ns(m, m * 0.99, m * 1.01)),
                instructions: None,
            }],
            ..figure("ring/x", 1.0, 1.0, 1.0, "x", Better::Lower)
        };
        assert_eq!(verdict(&t(10.0), &t(12.0)).verdict, Verdict::Regressed);
        assert_eq!(verdict(&t(12.0), &t(10.0)).verdict, Verdict::Improved);
        let row = verdict(&t(10.0), &t(12.0));
        assert!(!higher_is_better(&row));
    }

    /// Figures in different units (a bench that changed what it reports) are not
    /// compared: a ratio of a rate to a latency means nothing.
    #[test]
    fn figures_in_different_units_are_not_comparable() {
        let base = figure("j/x", 10.0, 10.0, 10.0, "rec/s", Better::Higher);
        let head = figure("j/x", 10.0, 10.0, 10.0, "us", Better::Lower);
        let row = verdict(&base, &head);
        assert_eq!(row.verdict, Verdict::NotComparable);
        assert_eq!(row.basis, None);
        let mut ns = base.clone();
        ns.results[0].wall = Some(WallClock::ns(10.0, 10.0, 10.0));
        assert_eq!(verdict(&ns, &base).verdict, Verdict::NotComparable);
    }
}
