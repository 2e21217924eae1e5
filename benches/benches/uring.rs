//! `tally_uring::Ring` against the raw `io-uring` crate (NOP floor) and against a `pread`
//! loop (4 KiB random reads from a page-cached file), in the same run.
//!
//! ```text
//! cargo bench -p tally-benches --bench uring
//! ```
//! The read file is `$TALLY_URING_BENCH_FILE` (default `/tmp/tally-uring-bench/read.dat`,
//! 256 MiB, created on first use); `benches/fio/run.sh` runs fio on the same file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code"
)]
#![allow(clippy::cast_possible_truncation, reason = "bench code")]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use io_uring::{IoUring, opcode};
use tally_core_types::{FramePool, FramePoolOptions};
use tally_uring::{Completion, PoolRange, Ring, RingOptions, Target};

const FILE_BYTES: u64 = 256 << 20;

fn raw_ring() -> IoUring {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(128)
        .build(64)
        .unwrap()
}

fn raw_nop_round(ring: &mut IoUring, batch: u32) -> u64 {
    for i in 0..batch {
        let e = opcode::Nop::new().build().user_data(u64::from(i));
        // SAFETY: a NOP references no memory.
        unsafe { ring.submission().push(&e).unwrap() };
    }
    ring.submit_and_wait(batch as usize).unwrap();
    let mut sum = 0;
    for c in ring.completion() {
        sum += c.user_data();
    }
    sum
}

fn tally_nop_round(ring: &mut Ring, out: &mut [Completion; 64], batch: u32) -> u64 {
    for i in 0..batch {
        ring.nop(u64::from(i)).unwrap();
    }
    ring.submit_and_wait(batch as usize).unwrap();
    let mut n = 0;
    while n < batch as usize {
        n += ring.reap(&mut out[n..]).unwrap();
    }
    out[..n].iter().map(|c| c.tag).sum()
}

fn tally_nop_drain(ring: &mut Ring, batch: u32) -> u64 {
    for i in 0..batch {
        ring.nop(u64::from(i)).unwrap();
    }
    ring.submit_and_wait(batch as usize).unwrap();
    let mut sum = 0;
    let mut n = 0;
    while n < batch as usize {
        n += ring.drain(|c| sum += c.tag).unwrap();
    }
    sum
}

fn nop(c: &mut Criterion) {
    let mut g = c.benchmark_group("uring/nop");
    g.measurement_time(Duration::from_secs(3));
    let mut raw = raw_ring();
    let mut ours = Ring::new(RingOptions::new(64)).unwrap();
    let mut out = [Completion::default(); 64];
    // Correctness first: both deliver every completion.
    assert_eq!(raw_nop_round(&mut raw, 32), (0..32u64).sum::<u64>());
    assert_eq!(
        tally_nop_round(&mut ours, &mut out, 32),
        (0..32u64).sum::<u64>()
    );
    assert_eq!(tally_nop_drain(&mut ours, 32), (0..32u64).sum::<u64>());
    for batch in [1u32, 32] {
        g.throughput(Throughput::Elements(u64::from(batch)));
        g.bench_with_input(BenchmarkId::new("io-uring", batch), &batch, |b, &n| {
            b.iter(|| black_box(raw_nop_round(&mut raw, n)));
        });
        // `Ring::drain`: completions handed over in place.
        g.bench_with_input(BenchmarkId::new("tally", batch), &batch, |b, &n| {
            b.iter(|| black_box(tally_nop_drain(&mut ours, n)));
        });
        // `Ring::reap`: completions copied into an array.
        g.bench_with_input(BenchmarkId::new("tally-reap", batch), &batch, |b, &n| {
            b.iter(|| black_box(tally_nop_round(&mut ours, &mut out, n)));
        });
    }
    g.finish();
}

fn bench_file() -> std::fs::File {
    let path = std::env::var("TALLY_URING_BENCH_FILE")
        .unwrap_or_else(|_| "/tmp/tally-uring-bench/read.dat".into());
    let path = std::path::PathBuf::from(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == FILE_BYTES);
    if !ok {
        let f = std::fs::File::create(&path).unwrap();
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7) as u8).collect();
        for i in 0..FILE_BYTES / chunk.len() as u64 {
            f.write_all_at(&chunk, i * chunk.len() as u64).unwrap();
        }
        f.sync_all().unwrap();
    }
    let f = std::fs::File::open(&path).unwrap();
    // Warm the page cache.
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..FILE_BYTES / (1 << 20) {
        f.read_exact_at(&mut buf, i << 20).unwrap();
    }
    f
}

/// Panics unless every completion read a whole 4 KiB page (the pread side's
/// `read_exact_at` fails on an error or a short read in the same way).
fn full_reads(done: &[Completion]) {
    for c in done {
        if c.raw_result != 4096 {
            failed_read(c.raw_result);
        }
    }
}

#[cold]
#[inline(never)]
fn failed_read(raw: i32) -> ! {
    panic!("a 4 KiB fixed read completed with {raw}, not 4096 bytes")
}

struct Offsets(u64);
impl Offsets {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % (FILE_BYTES / 4096)) * 4096
    }
}

fn read4k(c: &mut Criterion) {
    let file = bench_file();
    let mut g = c.benchmark_group("uring/read4k");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    let mut offs = Offsets(0x2545_F491_4F6C_DD1D);
    let mut buf = vec![0u8; 4096];
    g.bench_function("pread/1", |b| {
        b.iter(|| {
            file.read_exact_at(&mut buf, offs.next()).unwrap();
            black_box(buf[0])
        });
    });
    let mut ring = Ring::new(RingOptions::new(64)).unwrap();
    ring.register_frame_pool(
        FramePool::new(FramePoolOptions::new(4096, 64).populate(true)).unwrap(),
    )
    .unwrap();
    ring.register_files(&[std::os::fd::AsRawFd::as_raw_fd(&file)])
        .unwrap();
    let t = Target::Fixed(0);
    let mut out = [Completion::default(); 64];
    // Correctness: a fixed read returns the file's bytes.
    let op = ring
        .read_fixed(t, PoolRange::new(0, 4096), 8192, 0)
        .unwrap();
    assert_eq!(ring.run(op, |_| {}).unwrap(), 4096);
    file.read_exact_at(&mut buf, 8192).unwrap();
    assert_eq!(ring.pool_bytes(PoolRange::new(0, 4096)).unwrap(), &buf[..]);
    g.bench_function("tally_fixed/1", |b| {
        b.iter(|| {
            ring.read_fixed(t, PoolRange::new(0, 4096), offs.next(), 0)
                .unwrap();
            ring.submit_and_wait(1).unwrap();
            let n = ring.reap(&mut out).unwrap();
            // As `read_exact_at` does for pread: a failed or short read is an error, not
            // a fast iteration.
            full_reads(&out[..n]);
            black_box(n)
        });
    });
    // Depth 32: keep 32 reads in flight; each iteration reaps what completed and refills.
    g.bench_function("tally_fixed/32", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let mut issued = 0u64;
            let mut done = 0u64;
            let mut free: Vec<usize> = (0..64).collect();
            while done < iters {
                while ring.in_flight() < 32 && issued < iters {
                    let frame = free.pop().unwrap();
                    ring.read_fixed(
                        t,
                        PoolRange::new(frame * 4096, 4096),
                        offs.next(),
                        frame as u64,
                    )
                    .unwrap();
                    issued += 1;
                }
                ring.submit_and_wait(1).unwrap();
                let n = ring.reap(&mut out).unwrap();
                full_reads(&out[..n]);
                for c in &out[..n] {
                    free.push(c.tag as usize);
                }
                done += n as u64;
            }
            start.elapsed()
        });
    });
    g.finish();
}

criterion_group!(benches, nop, read4k);
criterion_main!(benches);
