//! The pipeline's report: text, JSON and the latency plot.

use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::coordinator::CoordStats;
use crate::generator::GenResult;

/// A histogram with fixed, valid bounds.
#[allow(
    clippy::expect_used,
    reason = "callers pass constant bounds with low >= 1, high >= 2 * low, sigfig <= 5; \
              a 1-significant-digit histogram with default bounds cannot fail"
)]
pub fn histogram(low: u64, high: u64, sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(low, high, sigfig)
        .or_else(|_| Histogram::new(sigfig.min(5)))
        .expect("a histogram with valid constant bounds")
}

/// One run of one mode (Tally or the baseline).
#[derive(Debug, Clone)]
pub struct RunReport {
    /// `"tally"` or `"baseline"`.
    pub mode: &'static str,
    /// `"run_to_completion"`, `"staged"` or `"baseline"`.
    pub shape: &'static str,
    /// What the cross-session batch verifies: `"signatures"` or `"shares"` (Tally),
    /// `"each_share"` (the baseline, one share at a time).
    pub verify: &'static str,
    /// `"af_xdp"`, `"af_packet"` or `"udp"`.
    pub transport: &'static str,
    /// Details (XDP mode, bind mode) and why this transport.
    pub transport_why: String,
    /// Threshold and signers.
    pub t: u16,
    /// Signers.
    pub n: u16,
    /// Generator's view.
    pub load: GenResult,
    /// Coordinator's view.
    pub coord: CoordStats,
    /// Records found by replaying the journal after the run.
    pub journal_replayed: u64,
}

#[allow(clippy::cast_precision_loss, reason = "rates for display")]
fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

impl RunReport {
    /// Sessions completed per second of the run.
    pub fn sessions_per_sec(&self) -> f64 {
        per_sec(
            self.load.sessions_completed,
            self.load.elapsed.as_secs_f64(),
        )
    }

    /// Session-level drop reasons as the coordinator counted them, plus what is left.
    pub fn drop_reasons(&self) -> Vec<(&'static str, u64)> {
        let d = &self.coord.drops;
        let mut v = vec![
            ("expired_incomplete", d.expired),
            ("table_full", d.table_full),
            ("bad_package", d.bad_package),
            ("duplicate_package", d.duplicate_package),
            ("unknown_group", d.unknown_group),
            ("reply_failed", d.reply_failed),
        ];
        let explained: u64 = v.iter().map(|(_, c)| c).sum();
        v.push((
            "lost_datagram_or_late_reply",
            self.load.no_reply.saturating_sub(explained),
        ));
        v
    }

    /// Whether the generator's and the coordinator's counts agree:
    /// * the generator got an answer or gave up on every session it sent;
    /// * every session the coordinator opened was signed, rejected or expired, and every
    ///   signed or rejected one was journaled once and answered (or counted as a failed
    ///   reply);
    /// * replaying the journal after the run finds every record appended;
    /// * no reply left before its journal record was durable;
    /// * the generator received no more answers than the coordinator sent, none of them
    ///   wrong, and no detected invalid share that was not injected.
    pub fn accounting_ok(&self) -> bool {
        let g = &self.load;
        let c = &self.coord;
        let decided = c.sessions_signed + c.sessions_rejected;
        g.sessions_sent == g.sessions_completed + g.no_reply
            && c.sessions_opened == decided + c.drops.expired
            && c.journal_records == decided
            && self.journal_replayed == c.journal_records
            && c.replies_sent + c.drops.reply_failed == decided
            && c.replies_before_durable == 0
            && c.culprit_mismatches == 0
            && g.sessions_completed <= c.replies_sent
            && g.sessions_signed <= c.sessions_signed
            && g.sessions_rejected <= c.sessions_rejected
            && g.invalid_shares_detected <= g.invalid_shares_injected
            && g.wrong_answers == 0
    }

    /// The JSON object.
    #[allow(clippy::cast_precision_loss, reason = "rates for display")]
    pub fn json(&self) -> Value {
        let g = &self.load;
        let c = &self.coord;
        let h = &g.latency_ns;
        let us = |q: f64| h.value_at_quantile(q) / 1000;
        let secs = g.elapsed.as_secs_f64();
        let reasons: serde_json::Map<String, Value> = self
            .drop_reasons()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        let dgram: serde_json::Map<String, Value> = c
            .drops
            .pairs()
            .into_iter()
            .filter(|(k, _)| {
                matches!(
                    *k,
                    "malformed"
                        | "unexpected_type"
                        | "unknown_session"
                        | "wrong_identifier"
                        | "replayed_share"
                        | "bad_share_encoding"
                )
            })
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        json!({
            "mode": self.mode,
            "shape": self.shape,
            "verify": self.verify,
            "transport": self.transport,
            "transport_detail": self.transport_why,
            "threshold": self.t,
            "signers": self.n,
            "elapsed_s": secs,
            "sessions_sent": g.sessions_sent,
            "sessions_completed": g.sessions_completed,
            "sessions_signed": g.sessions_signed,
            "sessions_rejected": g.sessions_rejected,
            "sessions_per_sec": self.sessions_per_sec(),
            "wrong_answers": g.wrong_answers,
            "shares_verified": c.shares_verified,
            "invalid_shares_injected": g.invalid_shares_injected,
            "invalid_shares_detected": g.invalid_shares_detected,
            "invalid_shares_detected_by_coordinator": c.invalid_shares_detected,
            "culprit_mismatches": c.culprit_mismatches,
            "coordinator": {
                "sessions_opened": c.sessions_opened,
                "sessions_signed": c.sessions_signed,
                "sessions_rejected": c.sessions_rejected,
                "replies_sent": c.replies_sent,
                "replies_before_durable": c.replies_before_durable,
            },
            "drops": g.no_reply,
            "drop_reasons": reasons,
            "datagram_drops": dgram,
            "bad_datagrams_injected": {
                "truncated": g.bad.truncated,
                "unknown_session": g.bad.unknown_session,
                "wrong_identifier": g.bad.wrong_identifier,
                "replayed_share": g.bad.replayed_share,
            },
            "kernel_rx_dropped": c.net.rx_dropped,
            "link_down_events": c.net.link_down,
            "journal_records": c.journal_records,
            "journal_replayed": self.journal_replayed,
            "replies_received": g.replies_received,
            "journal_commits": c.journal_commits,
            "fsyncs_per_sec": per_sec(c.journal_commits, c.elapsed.as_secs_f64()),
            "records_per_commit": if c.journal_commits > 0 { c.journal_records as f64 / c.journal_commits as f64 } else { 0.0 },
            "latency_us": {
                "p50": us(0.5),
                "p99": us(0.99),
                "p999": us(0.999),
                "max": h.max() / 1000,
                "mean": h.mean() / 1000.0,
            },
            "verify_batch_sessions": {
                "mean": c.batch_sessions.mean(),
                "p50": c.batch_sessions.value_at_quantile(0.5),
                "max": c.batch_sessions.max(),
                "batches": c.batch_sessions.len(),
            },
            "verify_ms_total": c.verify_time.as_secs_f64() * 1e3,
            "commit_wait_ms_total": c.commit_wait_time.as_secs_f64() * 1e3,
            "accounting_ok": self.accounting_ok(),
        })
    }

    /// The human-readable report.
    #[allow(
        clippy::cast_precision_loss,
        clippy::too_many_lines,
        reason = "rates for display; one line per report item"
    )]
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let g = &self.load;
        let c = &self.coord;
        let h = &g.latency_ns;
        let ms = |v: u64| v as f64 / 1e6;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== {} ({}), FROST {}-of-{}, transport {} ==",
            self.mode, self.shape, self.t, self.n, self.transport
        );
        let _ = writeln!(s, "  transport:            {}", self.transport_why);
        let _ = writeln!(
            s,
            "  batch verification:   {}",
            match self.verify {
                "signatures" => "aggregate signatures across sessions; shares only where one fails",
                "shares" => "every share across sessions; no second check of the aggregate",
                _ => "each share on arrival (frost-secp256k1)",
            }
        );
        let _ = writeln!(
            s,
            "  sessions:             {} sent, {} completed ({} signed, {} rejected with culprits), {} dropped, {} wrong answers",
            g.sessions_sent,
            g.sessions_completed,
            g.sessions_signed,
            g.sessions_rejected,
            g.no_reply,
            g.wrong_answers
        );
        let _ = writeln!(
            s,
            "  throughput:           {:.0} sessions/s over {:.2} s",
            self.sessions_per_sec(),
            g.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "  shares:               {} verified; invalid injected {}, detected {} (culprit mismatches {})",
            c.shares_verified,
            g.invalid_shares_injected,
            g.invalid_shares_detected,
            c.culprit_mismatches
        );
        let reasons: Vec<String> = self
            .drop_reasons()
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "  session drops:        {} ({})",
            g.no_reply,
            if reasons.is_empty() {
                "none".to_owned()
            } else {
                reasons.join(", ")
            }
        );
        let dg: Vec<String> = c
            .drops
            .pairs()
            .iter()
            .filter(|(k, v)| {
                *v > 0
                    && !matches!(
                        *k,
                        "expired"
                            | "table_full"
                            | "bad_package"
                            | "duplicate_package"
                            | "unknown_group"
                            | "reply_failed"
                    )
            })
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "  datagram drops:       {} (kernel rx dropped {}{})",
            if dg.is_empty() {
                "none".to_owned()
            } else {
                dg.join(", ")
            },
            c.net.rx_dropped,
            if c.net.link_down > 0 {
                format!("; the interface went down {} times", c.net.link_down)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "  journal:              {} records, {} group commits ({:.0} fsyncs/s, {:.1} records/commit), replay finds {}; replies received {}",
            c.journal_records,
            c.journal_commits,
            per_sec(c.journal_commits, c.elapsed.as_secs_f64()),
            if c.journal_commits > 0 {
                c.journal_records as f64 / c.journal_commits as f64
            } else {
                0.0
            },
            self.journal_replayed,
            g.replies_received
        );
        let _ = writeln!(
            s,
            "  latency (last share -> durable reply): p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max())
        );
        if self.mode == "tally" {
            let _ = writeln!(
                s,
                "  coordinator time:     verify+aggregate {:.3} ms per batch, blocked on journal commits {:.3} ms per commit",
                if c.batch_sessions.is_empty() {
                    0.0
                } else {
                    c.verify_time.as_secs_f64() * 1e3 / c.batch_sessions.len() as f64
                },
                if c.journal_commits == 0 {
                    0.0
                } else {
                    c.commit_wait_time.as_secs_f64() * 1e3 / c.journal_commits as f64
                },
            );
        }
        if !c.batch_sessions.is_empty() {
            let _ = writeln!(
                s,
                "  verify batches:       {} batches, sessions per batch mean {:.1}, p50 {}, max {}",
                c.batch_sessions.len(),
                c.batch_sessions.mean(),
                c.batch_sessions.value_at_quantile(0.5),
                c.batch_sessions.max()
            );
        }
        let _ = writeln!(
            s,
            "  accounting:           {}",
            if self.accounting_ok() {
                "ok (generator and coordinator counts agree, no reply before its record was durable, no wrong answers)"
            } else {
                "MISMATCH (compare the counts in --json: sessions_sent, coordinator.*, journal_records, journal_replayed, drops)"
            }
        );
        s
    }
}

/// Writes the latency distributions as an SVG (one line per run).
///
/// # Errors
/// A message when drawing or writing fails.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "plot coordinates"
)]
pub fn plot(path: &Path, runs: &[&RunReport]) -> Result<(), String> {
    use plotters::prelude::*;
    const BINS: usize = 80;
    let hi_ns = runs
        .iter()
        .map(|r| r.load.latency_ns.value_at_quantile(0.999))
        .max()
        .unwrap_or(1_000)
        .max(1_000);
    let width = hi_ns.div_ceil(BINS as u64).max(1);
    let mut series = Vec::new();
    let mut ymax = 0.0f64;
    for r in runs {
        let total = r.load.latency_ns.len().max(1) as f64;
        let mut pts = Vec::with_capacity(BINS);
        for b in 0..BINS as u64 {
            let lo = b * width;
            let count = r.load.latency_ns.count_between(lo, lo + width - 1);
            let pct = 100.0 * count as f64 / total;
            ymax = ymax.max(pct);
            pts.push(((lo + width / 2) as f64 / 1e6, pct));
        }
        series.push((r, pts));
    }
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("plotting {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "FROST session latency: last share sent -> durable reply",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..hi_ns as f64 / 1e6, 0f64..ymax * 1.1 + 0.01)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms), up to p99.9")
        .y_desc("% of sessions per bin")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (r, pts)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let label = format!(
            "{} ({}, {}): p50 {:.2} ms, p99 {:.2} ms",
            r.mode,
            r.shape,
            r.transport,
            r.load.latency_ns.value_at_quantile(0.5) as f64 / 1e6,
            r.load.latency_ns.value_at_quantile(0.99) as f64 / 1e6
        );
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::generator::BadInjected;

    /// A way to break the accounting, and its name.
    type Break = (&'static str, fn(&mut RunReport));

    /// A run where 10 sessions were sent: 8 signed, 1 rejected, 1 expired.
    fn consistent() -> RunReport {
        let mut coord = CoordStats::empty();
        coord.sessions_opened = 10;
        coord.sessions_signed = 8;
        coord.sessions_rejected = 1;
        coord.drops.expired = 1;
        coord.journal_records = 9;
        coord.replies_sent = 9;
        let load = GenResult {
            sessions_sent: 10,
            sessions_completed: 9,
            sessions_signed: 8,
            sessions_rejected: 1,
            wrong_answers: 0,
            no_reply: 1,
            unexpected_replies: 0,
            invalid_shares_injected: 1,
            invalid_shares_detected: 1,
            replies_received: 9,
            max_journal_seq: 9,
            bad: BadInjected::default(),
            latency_ns: histogram(1_000, 60_000_000_000, 3),
            elapsed: Duration::from_secs(1),
        };
        RunReport {
            mode: "tally",
            shape: "run_to_completion",
            verify: "signatures",
            transport: "udp",
            transport_why: String::new(),
            t: 2,
            n: 3,
            load,
            coord,
            journal_replayed: 9,
        }
    }

    #[test]
    fn accounting_fails_on_every_kind_of_mismatch() {
        assert!(consistent().accounting_ok());
        assert!(consistent().text().contains("accounting:           ok"));
        let breaks: [Break; 9] = [
            ("a session neither answered nor given up", |r| {
                r.load.sessions_sent += 1;
            }),
            ("an opened session in no bucket", |r| {
                r.coord.sessions_opened += 1;
            }),
            ("a decided session not journaled", |r| {
                r.coord.journal_records -= 1;
            }),
            ("a journaled record the journal does not hold", |r| {
                r.journal_replayed -= 1;
            }),
            ("a decided session not answered", |r| {
                r.coord.replies_sent -= 1;
            }),
            ("a reply before its record was durable", |r| {
                r.coord.replies_before_durable = 1;
            }),
            ("a culprit mismatch", |r| r.coord.culprit_mismatches = 1),
            ("a wrong answer", |r| r.load.wrong_answers = 1),
            ("more answers received than sent", |r| {
                r.load.sessions_completed += 1;
                r.load.no_reply -= 1;
                r.coord.replies_sent -= 1;
                r.coord.drops.reply_failed += 1;
            }),
        ];
        for (what, f) in breaks {
            let mut r = consistent();
            f(&mut r);
            assert!(!r.accounting_ok(), "accounting ok despite {what}");
            assert!(r.text().contains("MISMATCH"), "{what}");
            assert_eq!(r.json()["accounting_ok"], false, "{what}");
        }
    }
}
