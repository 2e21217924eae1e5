//! `--chart FILE`: the comparison as a small hand-written SVG bar chart (one horizontal
//! bar per bench showing its change in percent, the bench's threshold marked on both
//! sides, regressions red, improvements green). Hand-written because it is about a hundred
//! lines, where a plotting crate would be the heaviest dependency of `xtask`.

use std::fmt::Write as _;

use crate::compare::{Basis, Comparison, Row, Verdict};
use crate::results::Unit;

const ROW_H: f64 = 24.0;
const LABEL_W: f64 = 320.0;
const PLOT_W: f64 = 480.0;
const TEXT_W: f64 = 300.0;
const TOP: f64 = 56.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A commit id shortened to 12 hex digits (keeping a `-dirty` suffix) for the title.
fn short(commit: &str) -> String {
    let (sha, rest) = commit.split_once('-').unwrap_or((commit, ""));
    let head: String = sha.chars().take(12).collect();
    if rest.is_empty() {
        head
    } else {
        format!("{head}-{rest}")
    }
}

/// Renders the comparison as an SVG document.
pub fn to_svg(cmp: &Comparison) -> String {
    let rows: Vec<_> = cmp.rows.iter().collect();
    // Symmetric x range: the largest change or twice the largest threshold, whichever is
    // larger, capped at 200 % so one outlier does not flatten the rest (longer bars are
    // clipped and their text still gives the number).
    let max_threshold = rows.iter().map(|r| r.threshold_pct).fold(1.0_f64, f64::max);
    let max_change = rows
        .iter()
        .filter_map(|r| r.change_pct)
        .filter(|x| x.is_finite())
        .map(f64::abs)
        .fold(0.0_f64, f64::max);
    let range = (max_threshold * 2.0).max(max_change * 1.1).min(200.0);
    let x0 = LABEL_W + PLOT_W / 2.0;
    let scale = PLOT_W / 2.0 / range;
    let to_x = |pct: f64| x0 + pct.clamp(-range, range) * scale;
    #[allow(clippy::cast_precision_loss, reason = "a few hundred rows at most")]
    let height = TOP + ROW_H * rows.len().max(1) as f64 + 40.0;
    let width = LABEL_W + PLOT_W + TEXT_W;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">bench-compare: base {} vs head {}</text>"#,
        escape(&short(&cmp.base_commit)),
        escape(&short(&cmp.head_commit))
    );
    let _ = writeln!(
        svg,
        r##"<text x="10" y="40" fill="#555555">change in % (instructions where both sides have them, else wall-clock median); dashed: threshold</text>"##
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{}" stroke="#000000"/>"##,
        height - 30.0
    );
    for (i, row) in rows.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "a few hundred rows at most")]
        let y = TOP + ROW_H * i as f64;
        draw_row(&mut svg, row, y, x0, &to_x);
    }
    let axis_y = height - 16.0;
    for pct in [-range, -range / 2.0, 0.0, range / 2.0, range] {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{axis_y}" text-anchor="middle">{pct:+.0} %</text>"#,
            to_x(pct)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// One bench: label, threshold marks, bar and change text, at height `y`.
fn draw_row(svg: &mut String, row: &Row, y: f64, x0: f64, to_x: &dyn Fn(f64) -> f64) {
    let mid = y + ROW_H / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
        LABEL_W - 8.0,
        mid + 4.0,
        escape(&row.id)
    );
    for t in [-row.threshold_pct, row.threshold_pct] {
        let _ = writeln!(
            svg,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#999999" stroke-dasharray="3,3"/>"##,
            y + 2.0,
            y + ROW_H - 2.0,
            x = to_x(t)
        );
    }
    let color = match row.verdict {
        Verdict::Regressed => "#d62728",
        Verdict::Improved => "#2ca02c",
        Verdict::Noise => "#ff9f1c",
        _ => "#7f7f7f",
    };
    let text = match (row.change_pct, row.basis) {
        (Some(change), Some(basis)) => {
            let x = to_x(change);
            let (left, w) = if x >= x0 { (x0, x - x0) } else { (x, x0 - x) };
            let _ = writeln!(
                svg,
                r#"<rect x="{left}" y="{}" width="{}" height="{}" fill="{color}"/>"#,
                y + 5.0,
                w.max(1.0),
                ROW_H - 10.0
            );
            let unit = match (basis, row.base.as_ref().and_then(|b| b.wall.as_ref())) {
                (Basis::Instructions, _) => "instr".to_owned(),
                (Basis::WallClock, Some(w)) => match &w.unit {
                    Unit::NsPerIter => "time".to_owned(),
                    Unit::Figure { name, better } => {
                        format!("{name}, {} is better", better.as_str())
                    }
                },
                (Basis::WallClock, None) => "time".to_owned(),
            };
            format!("{change:+.1} % {unit}, {}", row.verdict.label())
        }
        _ => row.verdict.label().to_owned(),
    };
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
        LABEL_W + PLOT_W + 8.0,
        mid + 4.0,
        escape(&text)
    );
}
