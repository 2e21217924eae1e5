//! `journal verify DIR` / `journal dump DIR [LIMIT]`: check a journal directory or print
//! its records.
//!
//! ```text
//! cargo run -p tally-uring --example journal -- verify /var/lib/tally/journal
//! cargo run -p tally-uring --example journal -- dump /var/lib/tally/journal 20
//! ```
//! Exit status: 0 intact (a torn tail is reported but is not damage), 1 damage found,
//! 2 usage error.
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use tally_uring::Journal;

/// Prints a line, ignoring a closed pipe (`journal dump DIR | head`).
macro_rules! out {
    ($($t:tt)*) => {{
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir, limit) = match args.as_slice() {
        [cmd, dir] => (cmd.as_str(), dir, u64::MAX),
        [cmd, dir, n] if cmd == "dump" => {
            let Ok(n) = n.parse() else {
                eprintln!("journal: LIMIT must be a whole number, got {n:?}");
                return ExitCode::from(2);
            };
            (cmd.as_str(), dir, n)
        }
        _ => {
            eprintln!("usage: journal verify DIR | journal dump DIR [LIMIT]");
            return ExitCode::from(2);
        }
    };
    let mut printed = 0u64;
    let result = match cmd {
        "verify" => Journal::replay(Path::new(dir), |_, _| {}),
        "dump" => Journal::replay(Path::new(dir), |seq, payload| {
            if printed < limit {
                let head = payload.get(..32).unwrap_or(payload);
                out!(
                    "{seq}\t{}\t{}{}",
                    payload.len(),
                    hex(head),
                    if payload.len() > 32 { "..." } else { "" }
                );
                printed += 1;
            }
        }),
        other => {
            eprintln!("journal: unknown command {other:?}; use verify or dump");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(report) => {
            out!("segments: {}", report.segments);
            out!("records: {}", report.records);
            out!("payload bytes: {}", report.payload_bytes);
            match report.first_seq {
                Some(first) => out!("sequence numbers: {first}..={}", report.last_seq),
                None => out!("sequence numbers: none (empty journal)"),
            }
            match report.torn_tail {
                Some(t) => out!(
                    "torn tail: {} at offset {} ({} orphaned records of the unacknowledged last group); cut on next open",
                    t.segment.display(),
                    t.offset,
                    t.discarded_records
                ),
                None => out!("torn tail: none"),
            }
            out!("damage: none");
            ExitCode::SUCCESS
        }
        Err(e) => {
            out!("damage: {e}");
            ExitCode::from(1)
        }
    }
}
