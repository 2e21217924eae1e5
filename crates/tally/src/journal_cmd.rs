//! `tally journal verify|dump DIR`, on `tally_uring::Journal::replay`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use tally_uring::{Journal, ReplayReport};

macro_rules! out {
    ($($t:tt)*) => {{
        // A closed pipe (`tally journal dump DIR | head`) is not an error.
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Describes a pipeline record: `1 || session || sig` or `2 || session || k || ids`.
fn describe(payload: &[u8]) -> String {
    let session = payload
        .get(1..9)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes);
    match (payload.first(), session) {
        (Some(1), Some(s)) if payload.len() == 74 => format!(
            "signed session {s} sig {}",
            hex(payload.get(9..).unwrap_or(&[]))
        ),
        (Some(2), Some(s)) => {
            let ids: Vec<String> = payload
                .get(10..)
                .unwrap_or(&[])
                .chunks_exact(2)
                .map(|c| {
                    u16::from_be_bytes([
                        c.first().copied().unwrap_or(0),
                        c.get(1).copied().unwrap_or(0),
                    ])
                    .to_string()
                })
                .collect();
            format!("rejected session {s} culprits [{}]", ids.join(", "))
        }
        _ => {
            let head = payload.get(..32).unwrap_or(payload);
            format!(
                "{}{}",
                hex(head),
                if payload.len() > 32 { "..." } else { "" }
            )
        }
    }
}

fn summary(report: &ReplayReport) {
    out!("segments: {}", report.segments);
    out!("records: {}", report.records);
    out!("payload bytes: {}", report.payload_bytes);
    match report.first_seq {
        Some(first) => out!("sequence numbers: {first}..={}", report.last_seq),
        None => out!("sequence numbers: none (empty journal)"),
    }
    match &report.torn_tail {
        Some(t) => out!(
            "torn tail: {} at offset {} ({} records of the unacknowledged last group); cut on next open",
            t.segment.display(),
            t.offset,
            t.discarded_records
        ),
        None => out!("torn tail: none"),
    }
}

fn finish(result: Result<ReplayReport, tally_uring::JournalError>) -> ExitCode {
    match result {
        Ok(report) => {
            summary(&report);
            out!("damage: none");
            ExitCode::SUCCESS
        }
        Err(e) => {
            out!("damage: {e}");
            ExitCode::from(1)
        }
    }
}

/// Whether `dir` looks like a journal: a directory holding at least one segment
/// (`seg-*.tjl`). Otherwise says why on stderr, so that a wrong path is not reported as an
/// intact empty journal (or as damage).
#[allow(clippy::print_stderr, reason = "command-line diagnostics")]
fn is_journal(dir: &Path) -> bool {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!(
                "tally: cannot read the journal directory {}: {e}; pass the directory that holds the seg-*.tjl files",
                dir.display()
            );
            return false;
        }
    };
    let has_segment = entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("seg-") && n.rsplit('.').next() == Some("tjl"))
    });
    if !has_segment {
        let hint = if dir.join("tally").is_dir() {
            format!(
                " (the pipeline writes its journal to {})",
                dir.join("tally").display()
            )
        } else {
            String::new()
        };
        eprintln!(
            "tally: no journal segments (seg-*.tjl) in {}{hint}; pass the directory that holds them",
            dir.display()
        );
    }
    has_segment
}

/// `tally journal verify DIR`: exit 0 when intact (a torn tail is not damage), 1 on damage,
/// 2 when `DIR` holds no journal.
pub fn verify(dir: &Path) -> ExitCode {
    if !is_journal(dir) {
        return ExitCode::from(2);
    }
    finish(Journal::replay(dir, |_, _| {}))
}

/// `tally journal dump DIR [--limit N]` (exit codes as `verify`).
pub fn dump(dir: &Path, limit: u64) -> ExitCode {
    if !is_journal(dir) {
        return ExitCode::from(2);
    }
    let mut printed = 0u64;
    let r = Journal::replay(dir, |seq, payload| {
        if printed < limit {
            out!("{seq}\t{}\t{}", payload.len(), describe(payload));
            printed += 1;
        }
    });
    finish(r)
}
