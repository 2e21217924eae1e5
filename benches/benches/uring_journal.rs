//! Durable journal throughput and ack latency, side by side in one run:
//! `tally_uring::Journal` against okaywal 0.3 and against `write` + `fdatasync` per record.
//!
//! ```text
//! cargo bench -p tally-benches --bench uring_journal            # 3 reps x 2 s per cell
//! TALLY_JOURNAL_BENCH_SECS=1 TALLY_JOURNAL_BENCH_REPS=1 cargo bench -p tally-benches --bench uring_journal
//! ```
//! Modes (every call returns only when its records are durable):
//! * `plain1`: one writer, `write_all` + `sync_data` per record on an `O_APPEND` file;
//! * `tally1`: one writer, 1024 `append`s then one `commit` (one linked io_uring write +
//!   fdatasync: `direct_commit(false)`);
//! * `tally1p`: the same with pipelined commits (`start_commit`, fill the next group,
//!   `wait_commit`): the ack of group k arrives while group k+1 fills;
//! * `tally1d`: as `tally1` with the default `JournalOptions::direct_commit(true)`
//!   (`pwrite` + `fdatasync` on the calling thread instead of io_uring's io-wq workers);
//! * `okay1`: okaywal, `begin_entry`, 1024 `write_chunk`s, `commit`;
//! * `tally8`: 8 threads on one `SharedJournal` (default, direct commits), each
//!   `append_durable` of one record;
//! * `okay8`: 8 threads, each `begin_entry` / `write_chunk` / `commit` of one record;
//! * `pair:*`: `tally1`, `tally1d` and `okay1` taking turns group by group in one cell of
//!   3x the duration (same disk conditions for all three; the ratio column compares with
//!   `pair:okay1`).
//!
//! * `pairp:*`: one writer in 200 ms slices taking turns: `tally1q` (groups of 1024
//!   with up to 4 commits in flight, `JournalOptions::commits_in_flight(4)`: `pwrite`,
//!   queue the `fdatasync`, fill the next group; every slice ends with all of its
//!   groups durable, and that wait counts), `tally1d` and `okay1` as above. Latency is
//!   per group, from its first append to the moment its ack is seen.
//!
//! * `pair8:*`: 8 writers switching every 200 ms between a default `SharedJournal`
//!   (`tally8d`: direct commits, a keep-awake thread), one without the keep-awake thread
//!   (`tally8s`: `SharedOptions::keep_awake(false)`) and okaywal (`okay8`),
//!   3x the duration in all (the ratio column compares with `pair8:okay8`).
//!
//! `TALLY_JOURNAL_BENCH_MODES=pair,pair8,tally8` runs only the listed modes (`pair` and
//! `pair8` name all three journals of a paired cell).
//!
//! With `TALLY_BENCH_RESULTS_DIR` set (as `cargo xtask bench` sets it), the headline
//! figures also go to `uring_journal.json` there, for `cargo xtask bench-compare`: per
//! mode and record size the rate (`uring_journal/<mode>_<size>B`, `:` written `_`), the
//! p50 and p99 latency (`/p50`, `/p99`) and the ratio to okaywal with the same writers
//! (`/x_okaywal`); see `docs/bench-format.md`.
//!
//! Both journals recycle their segments: okaywal checkpoints (no-op checkpointer) and
//! reuses segment files; tally releases everything durable after each commit
//! (`release_through`), so its 64 MiB segments (two spares prepared at open) are reused. Latency: per group of 1024 for
//! the one-writer group modes, per record otherwise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code"
)]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines,
    clippy::many_single_char_names,
    clippy::similar_names,
    reason = "bench code"
)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use okaywal::{Entry, EntryId, LogManager, SegmentReader, WriteAheadLog};
use tally_benches::harness::{Better, Record};
use tally_uring::{Journal, JournalOptions, SharedJournal, SharedOptions};

const GROUP: usize = 1024;
const THREADS: usize = 8;

#[derive(Debug)]
struct NoCheckpoint;

impl LogManager for NoCheckpoint {
    fn recover(&mut self, _entry: &mut Entry<'_>) -> std::io::Result<()> {
        Ok(())
    }
    fn checkpoint_to(
        &mut self,
        _last: EntryId,
        _entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

struct Run {
    records: u64,
    secs: f64,
    hist: Histogram<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.records as f64 / self.secs
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

fn records(size: usize, n: usize) -> Vec<Vec<u8>> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

fn tally_opts(size: usize) -> JournalOptions {
    let _ = size;
    // Default 64 MiB segments; 2 MiB group buffers so that a group of 1024 x 1 KiB
    // (1.05 MiB framed) is one write.
    JournalOptions::new()
        .group_buffer_bytes(2 << 20)
        .max_record_bytes(4096)
        .max_free_segments(4)
        .spare_segments(2)
}

fn plain1(dir: &Path, recs: &[Vec<u8>], dur: Duration) -> Run {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("plain.log"))
        .unwrap();
    let mut h = hist();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        let t = Instant::now();
        f.write_all(&recs[n as usize % recs.len()]).unwrap();
        f.sync_data().unwrap();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
        n += 1;
    }
    Run {
        records: n,
        secs: start.elapsed().as_secs_f64(),
        hist: h,
    }
}

fn tally1(dir: &Path, recs: &[Vec<u8>], dur: Duration, pipelined: bool, direct: bool) -> Run {
    let mut j = Journal::open(dir, tally_opts(recs[0].len()).direct_commit(direct)).unwrap();
    settle(); // let the host absorb the segments prepared at open
    let mut h = hist();
    let start = Instant::now();
    let mut n = 0u64;
    let mut pending: Option<Instant> = None;
    while start.elapsed() < dur {
        let t = Instant::now();
        for i in 0..GROUP {
            j.append(&recs[i % recs.len()]).unwrap();
        }
        if pipelined {
            if let Some(t0) = pending.take() {
                j.wait_commit().unwrap();
                h.record(t0.elapsed().as_nanos() as u64).unwrap();
                n += GROUP as u64;
            }
            let d = j.start_commit().unwrap();
            pending = Some(t);
            j.release_through(d.saturating_sub(GROUP as u64)).unwrap();
        } else {
            let d = j.commit().unwrap();
            h.record(t.elapsed().as_nanos() as u64).unwrap();
            n += GROUP as u64;
            j.release_through(d).unwrap();
        }
    }
    if let Some(t0) = pending {
        j.wait_commit().unwrap();
        h.record(t0.elapsed().as_nanos() as u64).unwrap();
        n += GROUP as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(j.durable_seq(), n, "every counted record must be durable");
    if std::env::var_os("TALLY_JOURNAL_BENCH_STATS").is_some() {
        eprintln!(
            "    journal {:?}\n    ring {:?}",
            j.stats().snapshot(),
            j.ring_stats()
        );
    }
    Run {
        records: n,
        secs,
        hist: h,
    }
}

/// One okaywal entry of `GROUP` chunks, committed.
fn okay_group(wal: &WriteAheadLog, recs: &[Vec<u8>]) {
    let mut w = wal.begin_entry().unwrap();
    for i in 0..GROUP {
        w.write_chunk(&recs[i % recs.len()]).unwrap();
    }
    w.commit().unwrap();
}

fn okay1(dir: &Path, recs: &[Vec<u8>], dur: Duration) -> Run {
    let wal = WriteAheadLog::recover(dir, NoCheckpoint).unwrap();
    settle();
    let mut h = hist();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        let t = Instant::now();
        okay_group(&wal, recs);
        h.record(t.elapsed().as_nanos() as u64).unwrap();
        n += GROUP as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    wal.shutdown().unwrap();
    Run {
        records: n,
        secs,
        hist: h,
    }
}

/// One writer, groups of 1024, with `tally1`, `tally1d` and `okay1` taking turns group by
/// group in the same cell (the starting journal rotates each cycle), so that all three
/// see the same disk: this shared VM's flush latency changes by 10x within seconds, which
/// separate 2 s cells cannot average out. Each journal's rate is its records over the
/// time spent in its own groups.
fn pair1(dir: &Path, recs: &[Vec<u8>], dur: Duration) -> [Run; 3] {
    let (da, db, dc) = (dir.join("t"), dir.join("d"), dir.join("o"));
    let mut ja = Journal::open(&da, tally_opts(recs[0].len()).direct_commit(false)).unwrap();
    let mut jd = Journal::open(&db, tally_opts(recs[0].len()).direct_commit(true)).unwrap();
    let wal = WriteAheadLog::recover(&dc, NoCheckpoint).unwrap();
    settle();
    let mut runs = three_runs();
    let start = Instant::now();
    let mut cycle = 0usize;
    while start.elapsed() < dur * 3 {
        for k in 0..3 {
            let which = (cycle + k) % 3;
            let t = Instant::now();
            match which {
                0 | 1 => {
                    let j = if which == 0 { &mut ja } else { &mut jd };
                    for i in 0..GROUP {
                        j.append(&recs[i % recs.len()]).unwrap();
                    }
                    let d = j.commit().unwrap();
                    let el = t.elapsed();
                    j.release_through(d).unwrap();
                    record(&mut runs[which], el);
                }
                _ => {
                    okay_group(&wal, recs);
                    record(&mut runs[which], t.elapsed());
                }
            }
        }
        cycle += 1;
    }
    assert_eq!(ja.durable_seq(), runs[0].records);
    assert_eq!(jd.durable_seq(), runs[1].records);
    wal.shutdown().unwrap();
    runs
}

/// One writer in 200 ms slices: `tally1q` (pipelined, 4 commits in flight), `tally1d`
/// and `okay1` take turns, the starting one rotating each cycle, for 3x the duration.
fn pairp(dir: &Path, recs: &[Vec<u8>], dur: Duration) -> [Run; 3] {
    use std::collections::VecDeque;
    let (dq, dd, dc) = (dir.join("q"), dir.join("d"), dir.join("o"));
    let mut jq = Journal::open(&dq, tally_opts(recs[0].len()).commits_in_flight(4)).unwrap();
    let mut jd = Journal::open(&dd, tally_opts(recs[0].len())).unwrap();
    let wal = WriteAheadLog::recover(&dc, NoCheckpoint).unwrap();
    settle();
    let mut runs = three_runs();
    let slice = Duration::from_millis(200);
    let start = Instant::now();
    let mut cycle = 0usize;
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::with_capacity(16);
    while start.elapsed() < dur * 3 {
        for k in 0..3 {
            let which = (cycle + k) % 3;
            let t_slice = Instant::now();
            let run = &mut runs[which];
            match which {
                0 => {
                    let done = |d: u64, pending: &mut VecDeque<(u64, Instant)>, run: &mut Run| {
                        while let Some(&(last, t0)) = pending.front() {
                            if last > d {
                                break;
                            }
                            run.hist.record(t0.elapsed().as_nanos() as u64).unwrap();
                            run.records += GROUP as u64;
                            pending.pop_front();
                        }
                    };
                    while t_slice.elapsed() < slice {
                        let t = Instant::now();
                        for i in 0..GROUP {
                            jq.append(&recs[i % recs.len()]).unwrap();
                        }
                        pending.push_back((jq.start_commit().unwrap(), t));
                        let d = jq.poll_commits().unwrap();
                        done(d, &mut pending, run);
                        jq.release_through(d).unwrap();
                    }
                    let d = jq.wait_commit().unwrap();
                    done(d, &mut pending, run);
                    assert!(pending.is_empty());
                }
                1 => {
                    while t_slice.elapsed() < slice {
                        let t = Instant::now();
                        for i in 0..GROUP {
                            jd.append(&recs[i % recs.len()]).unwrap();
                        }
                        let d = jd.commit().unwrap();
                        run.hist.record(t.elapsed().as_nanos() as u64).unwrap();
                        run.records += GROUP as u64;
                        jd.release_through(d).unwrap();
                    }
                }
                _ => {
                    while t_slice.elapsed() < slice {
                        let t = Instant::now();
                        okay_group(&wal, recs);
                        run.hist.record(t.elapsed().as_nanos() as u64).unwrap();
                        run.records += GROUP as u64;
                    }
                }
            }
            run.secs += t_slice.elapsed().as_secs_f64();
        }
        cycle += 1;
    }
    assert_eq!(jq.durable_seq(), runs[0].records);
    assert_eq!(jd.durable_seq(), runs[1].records);
    wal.shutdown().unwrap();
    runs
}

fn three_runs() -> [Run; 3] {
    [(), (), ()].map(|()| Run {
        records: 0,
        secs: 0.0,
        hist: hist(),
    })
}

fn record(run: &mut Run, el: Duration) {
    run.hist.record(el.as_nanos() as u64).unwrap();
    run.records += GROUP as u64;
    run.secs += el.as_secs_f64();
}

fn threaded(
    dur: Duration,
    work: impl Fn(usize, &AtomicBool) -> (u64, Histogram<u64>) + Sync,
) -> Run {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let results: Vec<(u64, Histogram<u64>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (work, stop) = (&work, &stop);
                s.spawn(move || work(t, stop))
            })
            .collect();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut hist = hist();
    let mut records = 0;
    for (n, h) in results {
        records += n;
        hist.add(h).unwrap();
    }
    Run {
        records,
        secs,
        hist,
    }
}

fn tally8(dir: &Path, recs: &[Vec<u8>], dur: Duration) -> Run {
    let shared = SharedJournal::open(dir, tally_opts(recs[0].len()), SharedOptions::new()).unwrap();
    settle();
    let run = threaded(dur, |t, stop| {
        let h = shared.handle();
        let mut hist = hist();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            h.append_durable(&recs[(t + n as usize) % recs.len()])
                .unwrap();
            hist.record(t0.elapsed().as_nanos() as u64).unwrap();
            n += 1;
        }
        (n, hist)
    });
    let j = shared.close().unwrap();
    assert!(j.durable_seq() >= run.records);
    run
}

/// 8 writers, each waiting for its own record, switching every 200 ms between a
/// default `SharedJournal`, one without the keep-awake thread, and okaywal (3x the
/// duration in all), so that the three see the same disk. A record counts for the journal
/// it was handed to; each journal's rate is its records over the time of its own slices.
fn pair8(dir: &Path, recs: &[Vec<u8>], dur: Duration) -> [Run; 3] {
    use std::sync::atomic::AtomicUsize;
    let sd = SharedJournal::open(
        &dir.join("d"),
        tally_opts(recs[0].len()),
        SharedOptions::new(),
    )
    .unwrap();
    let sr = SharedJournal::open(
        &dir.join("s"),
        tally_opts(recs[0].len()),
        SharedOptions::new().keep_awake(false),
    )
    .unwrap();
    let wal = WriteAheadLog::recover(dir.join("o"), NoCheckpoint).unwrap();
    settle();
    let phase = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut secs = [0f64; 3];
    let mut cpu = [0f64; 3];
    let per_thread: Vec<([u64; 3], [Histogram<u64>; 3])> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (phase, stop, sd, sr, wal) = (&phase, &stop, &sd, &sr, &wal);
                s.spawn(move || {
                    let (hd, hr) = (sd.handle(), sr.handle());
                    let mut n = [0u64; 3];
                    let mut h = [hist(), hist(), hist()];
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let which = phase.load(Ordering::Relaxed) % 3;
                        let rec = &recs[i % recs.len()];
                        i += 1;
                        let t0 = Instant::now();
                        match which {
                            0 => {
                                hd.append_durable(rec).unwrap();
                            }
                            1 => {
                                hr.append_durable(rec).unwrap();
                            }
                            _ => {
                                let mut w = wal.begin_entry().unwrap();
                                w.write_chunk(rec).unwrap();
                                w.commit().unwrap();
                            }
                        }
                        h[which].record(t0.elapsed().as_nanos() as u64).unwrap();
                        n[which] += 1;
                    }
                    (n, h)
                })
            })
            .collect();
        let slice = Duration::from_millis(200);
        let start = Instant::now();
        let mut k = 0usize;
        while start.elapsed() < dur * 3 {
            let t = Instant::now();
            let c = process_cpu_secs();
            std::thread::sleep(slice);
            secs[k % 3] += t.elapsed().as_secs_f64();
            cpu[k % 3] += process_cpu_secs() - c;
            k += 1;
            phase.store(k, Ordering::Relaxed);
        }
        stop.store(true, Ordering::Relaxed);
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut runs = [0, 1, 2].map(|k| Run {
        records: 0,
        secs: secs[k],
        hist: hist(),
    });
    for (n, h) in per_thread {
        for (k, hk) in h.into_iter().enumerate() {
            runs[k].records += n[k];
            runs[k].hist.add(hk).unwrap();
        }
    }
    sd.close().unwrap();
    sr.close().unwrap();
    wal.shutdown().unwrap();
    // CPU time of the whole process (writers, journal threads, keep-awake thread) per
    // wall-clock second of each journal's slices: how many CPUs it kept busy.
    println!(
        "  {} B pair8 CPUs busy: tally8d {:.2}, tally8s {:.2}, okay8 {:.2}; CPU us per record: {:.1}, {:.1}, {:.1}",
        recs[0].len(),
        cpu[0] / secs[0],
        cpu[1] / secs[1],
        cpu[2] / secs[2],
        cpu[0] * 1e6 / runs[0].records as f64,
        cpu[1] * 1e6 / runs[1].records as f64,
        cpu[2] * 1e6 / runs[2].records as f64,
    );
    runs
}

/// CPU time used by this process so far, in seconds.
fn process_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &raw mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn okay8(dir: &Path, recs: &[Vec<u8>], dur: Duration) -> Run {
    let wal = WriteAheadLog::recover(dir, NoCheckpoint).unwrap();
    settle();
    let run = threaded(dur, |t, stop| {
        let mut hist = hist();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            let mut w = wal.begin_entry().unwrap();
            w.write_chunk(&recs[(t + n as usize) % recs.len()]).unwrap();
            w.commit().unwrap();
            hist.record(t0.elapsed().as_nanos() as u64).unwrap();
            n += 1;
        }
        (n, hist)
    });
    wal.shutdown().unwrap();
    run
}

/// `sync` and a pause, so that a run does not pay for earlier writeback.
fn settle() {
    std::process::Command::new("sync").status().ok();
    std::thread::sleep(Duration::from_millis(300));
}

/// Median of the rounds (the mean of the middle two for an even count, NaN when empty):
/// the upper middle value alone made a run of two rounds report the better one.
fn median(mut v: Vec<f64>) -> f64 {
    tally_benches::stats::median(&mut v)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`, and a filter when one was given.
    if !tally_benches::harness::selected("uring_journal", std::env::args().skip(1)) {
        return;
    }
    let secs = env_or("TALLY_JOURNAL_BENCH_SECS", 2);
    let reps = env_or("TALLY_JOURNAL_BENCH_REPS", 3);
    let base = std::env::var("TALLY_JOURNAL_BENCH_DIR")
        .map_or_else(|_| std::env::temp_dir(), std::path::PathBuf::from);
    let dur = Duration::from_secs(secs);
    let modes = [
        "plain1",
        "tally1",
        "tally1p",
        "tally1d",
        "okay1",
        "tally8",
        "okay8",
        "pair:tally1",
        "pair:tally1d",
        "pair:okay1",
        "pairp:tally1q",
        "pairp:tally1d",
        "pairp:okay1",
        "pair8:tally8d",
        "pair8:tally8s",
        "pair8:okay8",
    ];
    let only = std::env::var("TALLY_JOURNAL_BENCH_MODES").ok();
    let wanted = |mode: &str| {
        only.as_deref().is_none_or(|o| {
            o.split(',')
                .any(|w| w == mode || mode.starts_with(&format!("{w}:")))
        })
    };
    println!(
        "journal bench: {reps} reps x {secs} s per cell, dir {}",
        base.display()
    );
    let mut figures = Vec::new();
    for size in [64usize, 1024] {
        let recs = records(size, 4096);
        // results[mode] = Vec of (rate, p50, p99, p999) per rep
        let mut results: Vec<Vec<(f64, f64, f64, f64)>> = vec![Vec::new(); modes.len()];
        for _rep in 0..reps {
            for (m, mode) in modes.iter().enumerate() {
                if !wanted(mode)
                    || matches!(
                        *mode,
                        "pair:tally1d"
                            | "pair:okay1"
                            | "pairp:tally1d"
                            | "pairp:okay1"
                            | "pair8:tally8s"
                            | "pair8:okay8"
                    )
                {
                    continue;
                }
                let dir = tempfile::Builder::new()
                    .prefix("tally-journal-bench")
                    .tempdir_in(&base)
                    .unwrap();
                let runs = match *mode {
                    "plain1" => vec![plain1(dir.path(), &recs, dur)],
                    "tally1" => vec![tally1(dir.path(), &recs, dur, false, false)],
                    "tally1d" => vec![tally1(dir.path(), &recs, dur, false, true)],
                    "tally1p" => vec![tally1(dir.path(), &recs, dur, true, false)],
                    "okay1" => vec![okay1(dir.path(), &recs, dur)],
                    "tally8" => vec![tally8(dir.path(), &recs, dur)],
                    "okay8" => vec![okay8(dir.path(), &recs, dur)],
                    "pair8:tally8d" => pair8(dir.path(), &recs, dur).into(),
                    "pairp:tally1q" => pairp(dir.path(), &recs, dur).into(),
                    _ => pair1(dir.path(), &recs, dur).into(),
                };
                for (k, run) in runs.iter().enumerate() {
                    let q = |p: f64| run.hist.value_at_quantile(p) as f64 / 1000.0;
                    results[m + k].push((run.rate(), q(0.5), q(0.99), q(0.999)));
                    eprintln!(
                        "  {size} B {}: {:.0} rec/s p50 {:.0} us p99 {:.0} us",
                        modes[m + k],
                        run.rate(),
                        q(0.5),
                        q(0.99)
                    );
                }
            }
        }
        println!();
        println!(
            "| mode | rec B | durable rec/s median [min-max] | p50 us | p99 us | p99.9 us | x okaywal (same writers) | x plain1 | latency unit |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let rate_of = |m: usize, rep: usize| results[m][rep].0;
        for (m, mode) in modes.iter().enumerate() {
            if results[m].is_empty() {
                continue;
            }
            let rates: Vec<f64> = results[m].iter().map(|r| r.0).collect();
            let peer = match *mode {
                "tally1" | "tally1p" | "tally1d" | "okay1" => Some(4),
                "tally8" | "okay8" => Some(6),
                _ if mode.starts_with("pair:") => Some(9),
                _ if mode.starts_with("pairp:") => Some(12),
                _ if mode.starts_with("pair8:") => Some(15),
                _ => None,
            }
            .filter(|p| !results[*p].is_empty());
            let x_peer = peer.map_or_else(
                || "-".to_string(),
                |p| {
                    format!(
                        "{:.2}",
                        median(
                            (0..results[m].len())
                                .map(|r| rate_of(m, r) / rate_of(p, r))
                                .collect()
                        )
                    )
                },
            );
            let x_plain = if results[0].is_empty() {
                f64::NAN
            } else {
                median(
                    (0..results[m].len())
                        .map(|r| rate_of(m, r) / rate_of(0, r))
                        .collect(),
                )
            };
            let id = format!("uring_journal/{}_{size}B", mode.replace(':', "_"));
            figures.extend(Record::from_samples(&id, "rec/s", Better::Higher, &rates));
            for (suffix, k) in [("p50", 1), ("p99", 2)] {
                let lat: Vec<f64> = results[m]
                    .iter()
                    .map(|r| if k == 1 { r.1 } else { r.2 })
                    .collect();
                figures.extend(Record::from_samples(
                    format!("{id}/{suffix}"),
                    "us",
                    Better::Lower,
                    &lat,
                ));
            }
            if let Some(p) = peer.filter(|p| *p != m) {
                let ratios: Vec<f64> = (0..results[m].len())
                    .map(|r| rate_of(m, r) / rate_of(p, r))
                    .collect();
                figures.extend(Record::from_samples(
                    format!("{id}/x_okaywal"),
                    "x",
                    Better::Higher,
                    &ratios,
                ));
            }
            let (mn, mx) = rates
                .iter()
                .fold((f64::MAX, 0f64), |(a, b), r| (a.min(*r), b.max(*r)));
            println!(
                "| {mode} | {size} | {:.0} [{:.0}-{:.0}] | {:.0} | {:.0} | {:.0} | {x_peer} | {x_plain:.1} | {} |",
                median(rates.clone()),
                mn,
                mx,
                median(results[m].iter().map(|r| r.1).collect()),
                median(results[m].iter().map(|r| r.2).collect()),
                median(results[m].iter().map(|r| r.3).collect()),
                if matches!(*mode, "plain1" | "tally8" | "okay8") || mode.starts_with("pair8:") {
                    "record"
                } else {
                    "group of 1024"
                },
            );
        }
    }
    match tally_benches::harness::write_records("uring_journal", &figures) {
        Ok(Some(path)) => eprintln!("{} figures written to {}", figures.len(), path.display()),
        Ok(None) => {}
        Err(e) => {
            eprintln!("uring_journal: {e}");
            std::process::exit(1);
        }
    }
}
