//! SPSC ring workloads shared by the criterion bench (`benches/ring.rs`), the
//! instruction-count kernels and the `ring-report` binary: Tally's [`SpscRing`] and
//! [`BatchRing`] against `rtrb` and `crossbeam-queue`'s `ArrayQueue`, plus a bare cache
//! line as the floor.
//!
//! Every workload checks what it receives (order and a sum), so a broken queue fails the
//! bench instead of producing a fast number.

#![allow(
    clippy::too_many_lines,
    clippy::similar_names,
    reason = "each queue's loop is spelled out so that it is measured as written"
)]
#![allow(
    clippy::panic,
    reason = "a bench whose consumer thread failed must stop, not report a number"
)]

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tally_core_types::{
    BatchConsumer, BatchProducer, BatchRing, CachePadded, Consumer, Producer, SpscRing,
};

/// Ring capacity used by every workload (the same as the peers' measurements in
/// `shared/notes/measured-sys.md`).
pub const CAPACITY: usize = 1024;
/// Items per batch in the batched workloads.
pub const BATCH: usize = 256;
/// Items per batch in the small-batch workloads (`ring_batch8/*`,
/// [`throughput_small_batches`]).
pub const SMALL_BATCH: usize = 8;

/// The queues compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// `tally_core_types::SpscRing`.
    Tally,
    /// `rtrb::RingBuffer`.
    Rtrb,
    /// `crossbeam_queue::ArrayQueue`.
    Crossbeam,
    /// `tally_core_types::BatchRing` (dense slots, for batch streams and wide items).
    TallyBatch,
}

impl Queue {
    /// All queues, in report order (the three of the first reports first, so that their
    /// indices stay put).
    pub const ALL: [Queue; 4] = [
        Queue::Tally,
        Queue::Rtrb,
        Queue::Crossbeam,
        Queue::TallyBatch,
    ];

    /// Short name used in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Queue::Tally => "tally",
            Queue::Rtrb => "rtrb",
            Queue::Crossbeam => "crossbeam",
            Queue::TallyBatch => "tally-batch",
        }
    }
}

/// Single thread: `iters` push+pop pairs through a fresh ring; returns the sum popped.
pub fn pair_loop(queue: Queue, iters: u64) -> u64 {
    let mut sum = 0u64;
    match queue {
        Queue::Tally => {
            // A local ring split in place: the documented way to use `SpscRing` (rtrb's
            // constructor always allocates, so its ring is on the heap). Boxing ours here
            // costs 35 instead of 23 instructions per pair (the CI gate caught it).
            let mut ring = SpscRing::<u64, CAPACITY>::new();
            let (mut p, mut c) = ring.split();
            for i in 0..iters {
                if p.push(black_box(i)).is_err() {
                    return u64::MAX;
                }
                sum = sum.wrapping_add(c.pop().unwrap_or(u64::MAX));
            }
        }
        Queue::TallyBatch => {
            let mut ring = BatchRing::<u64, CAPACITY>::new();
            let (mut p, mut c) = ring.split();
            for i in 0..iters {
                if p.push(black_box(i)).is_err() {
                    return u64::MAX;
                }
                sum = sum.wrapping_add(c.pop().unwrap_or(u64::MAX));
            }
        }
        Queue::Rtrb => {
            let (mut p, mut c) = rtrb::RingBuffer::<u64>::new(CAPACITY);
            for i in 0..iters {
                if p.push(black_box(i)).is_err() {
                    return u64::MAX;
                }
                sum = sum.wrapping_add(c.pop().unwrap_or(u64::MAX));
            }
        }
        Queue::Crossbeam => {
            let q = ArrayQueue::<u64>::new(CAPACITY);
            for i in 0..iters {
                if q.push(black_box(i)).is_err() {
                    return u64::MAX;
                }
                sum = sum.wrapping_add(q.pop().unwrap_or(u64::MAX));
            }
        }
    }
    sum
}

/// Single thread: `iters` rounds of one batch of [`BATCH`] values (`round * BATCH + k`)
/// pushed with the queue's slice API and popped into a slice; returns the sum popped
/// (the sum of `0..iters * BATCH` when every item went through), or `u64::MAX` when a
/// push or pop moved fewer than [`BATCH`] items or the last batch did not come out item
/// for item in the order it went in. crossbeam's `ArrayQueue` has no slice API, so its
/// batch is a loop of single pushes and pops.
///
/// The sum proves that each round popped that round's values (a pop that wrote nothing
/// leaves the previous round's, a stale slot an earlier lap's, and either changes the
/// sum), but not their order: a batch whose items came out swapped, or a whole line of
/// slots copied to the wrong place, adds up the same. So the last round's batch, still in
/// `src` and `dst` when the loop ends, is compared item by item: once per run, a cost
/// that cancels in the difference of two runs, so the per-iteration count is still that
/// of the loop alone.
pub fn batch_loop(queue: Queue, iters: u64) -> u64 {
    batch_loop_of::<BATCH>(queue, iters)
}

/// [`batch_loop`] with batches of `B` items (the values are `round * B + k`): small
/// batches show what a slice call costs besides its items' moves.
pub fn batch_loop_of<const B: usize>(queue: Queue, iters: u64) -> u64 {
    let mut src = [0u64; B];
    let mut dst = [0u64; B];
    let mut sum = 0u64;
    let fill = |src: &mut [u64; B], round: u64| {
        for (k, v) in (0u64..).zip(src.iter_mut()) {
            *v = round * B as u64 + k;
        }
    };
    match queue {
        Queue::Tally => {
            let mut ring = SpscRing::<u64, CAPACITY>::new();
            let (mut p, mut c) = ring.split();
            for round in 0..iters {
                fill(&mut src, round);
                if p.push_slice(black_box(&src)) != B || c.pop_slice(black_box(&mut dst)) != B {
                    return u64::MAX;
                }
                sum = dst.iter().fold(sum, |s, v| s.wrapping_add(*v));
            }
        }
        Queue::TallyBatch => {
            let mut ring = BatchRing::<u64, CAPACITY>::new();
            let (mut p, mut c) = ring.split();
            for round in 0..iters {
                fill(&mut src, round);
                if p.push_slice(black_box(&src)) != B || c.pop_slice(black_box(&mut dst)) != B {
                    return u64::MAX;
                }
                sum = dst.iter().fold(sum, |s, v| s.wrapping_add(*v));
            }
        }
        Queue::Rtrb => {
            let (mut p, mut c) = rtrb::RingBuffer::<u64>::new(CAPACITY);
            for round in 0..iters {
                fill(&mut src, round);
                let (pushed, _) = p.push_partial_slice(black_box(&src));
                if pushed.len() != B || c.pop_partial_slice(black_box(&mut dst)).0.len() != B {
                    return u64::MAX;
                }
                sum = dst.iter().fold(sum, |s, v| s.wrapping_add(*v));
            }
        }
        Queue::Crossbeam => {
            let q = ArrayQueue::<u64>::new(CAPACITY);
            for round in 0..iters {
                fill(&mut src, round);
                for v in black_box(&src) {
                    if q.push(*v).is_err() {
                        return u64::MAX;
                    }
                }
                for d in black_box(&mut dst).iter_mut() {
                    *d = q.pop().unwrap_or(u64::MAX);
                }
                sum = dst.iter().fold(sum, |s, v| s.wrapping_add(*v));
            }
        }
    }
    if !batch_in_order(&src, &dst) {
        return u64::MAX;
    }
    sum
}

/// Whether `popped` holds the items of `pushed`, each one in its place.
#[inline(never)]
pub fn batch_in_order(pushed: &[u64], popped: &[u64]) -> bool {
    pushed == popped
}

/// Called on every failed attempt of a spin loop: a PAUSE, and once every 1,024
/// failures a `yield_now`, so that a bench on an oversubscribed machine (more runnable
/// threads than cores) still makes progress instead of spinning out whole time slices.
#[inline]
pub fn relax(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(1024) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Panics with `what` unless a consumer received `expected`. Takes the values by value
/// so that they stay in registers: `assert_eq!` takes references, and in the two-thread
/// loops that made the compiler store both to the stack on every pop, two stores per item
/// that queue up behind the ring's own stores in the consumer's store buffer.
#[inline]
fn check(got: u64, expected: u64, what: &'static str) {
    if got != expected {
        mismatch(got, expected, what);
    }
}

#[cold]
#[inline(never)]
fn mismatch(got: u64, expected: u64, what: &'static str) -> ! {
    panic!("{what}: got {got}, expected {expected}")
}

/// The cores this process may run on, read once. `core_affinity::get_core_ids` reads the
/// *calling thread's* affinity mask, and a thread inherits its creator's mask, so asking
/// again after pinning one thread would see only that core and pin every later thread
/// onto it.
pub fn cores() -> &'static [core_affinity::CoreId] {
    static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
}

/// Pins the calling thread to the `index`-th core, if there is one.
pub fn pin(index: usize) {
    if let Some(id) = cores().get(index).copied() {
        core_affinity::set_for_current(id);
    }
}

/// Sum of `0..n` modulo 2^64, what a consumer of the values `0..n` must add up to with
/// `wrapping_add`.
pub fn expected_sum(n: u64) -> u64 {
    let n = u128::from(n);
    // n (n - 1) / 2 < 2^127 for n < 2^64; the cast keeps the low 64 bits, as wrapping
    // additions would.
    #[allow(clippy::cast_possible_truncation, reason = "modulo 2^64 on purpose")]
    let sum = (n * n.saturating_sub(1) / 2) as u64;
    sum
}

/// Two threads pinned to cores 0 (producer) and 1 (consumer) move the values `0..msgs`;
/// returns the time from the common start until the consumer has seen the last one.
/// `batched` uses the queue's slice API with [`BATCH`] items (crossbeam has none and
/// moves items one at a time). One item at a time, every producer retries `push` and
/// every consumer retries `pop`, calling [`relax`] after each failure;
/// [`throughput_variant`] has a cross-check with another wait policy. Panics if the
/// consumer sees a wrong sequence.
///
/// The loops are written out per queue on purpose: folding them into one generic loop
/// over a small producer/consumer trait slowed rtrb's one-item-per-op loop from 139-160
/// to 110-112 M/s in alternating runs (2026-11-21), which would bias the comparison.
/// Checked again on 2026-11-22 with the generic loop in a monomorphised function of its
/// own: from the same process, rtrb 151 and Tally 164 M/s, against 199 and 276 M/s for
/// loops written out per queue.
/// Each queue and mode also has a function of its own (`tally_single`, `rtrb_batched`,
/// ...), never inlined into this `match`: when all the loops were inlined into one large
/// function, the compiler kept the queue halves' fields in stack memory and every
/// queue's one-item stream ran 25-35 % slower (rtrb 142-154 against 196-207 M/s, Tally
/// 146-194 against 246-278 M/s, in the same process, 2026-11-22).
pub fn throughput(queue: Queue, msgs: u64, batched: bool) -> Duration {
    let start = Barrier::new(2);
    match queue {
        Queue::Tally if batched => tally_batched::<BATCH>(&start, msgs),
        Queue::Tally => tally_single(&start, msgs),
        Queue::TallyBatch if batched => batch_ring_batched::<BATCH>(&start, msgs),
        Queue::TallyBatch => batch_ring_single(&start, msgs),
        Queue::Rtrb if batched => rtrb_batched::<BATCH>(&start, msgs),
        Queue::Rtrb => rtrb_single(&start, msgs),
        Queue::Crossbeam => throughput_crossbeam(&start, msgs),
    }
}

/// [`throughput`] in batches of [`SMALL_BATCH`] through the slice APIs, for the two
/// queues that have them (crossbeam's `ArrayQueue` has none: `None`). Small batches
/// show the cost of a slice call itself, which batches of [`BATCH`] spread thin.
pub fn throughput_small_batches(queue: Queue, msgs: u64) -> Option<Duration> {
    let start = Barrier::new(2);
    match queue {
        Queue::Tally => Some(tally_batched::<SMALL_BATCH>(&start, msgs)),
        Queue::TallyBatch => Some(batch_ring_batched::<SMALL_BATCH>(&start, msgs)),
        Queue::Rtrb => Some(rtrb_batched::<SMALL_BATCH>(&start, msgs)),
        Queue::Crossbeam => None,
    }
}

/// An item of `W` `u64`s (`8 * W` bytes) for the wider-item workloads
/// ([`throughput_wide`]); the consumer checks its last word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WideItem<const W: usize>(pub [u64; W]);

/// Item sizes of the wider-item workloads, in `u64`s: 16-, 32- and 64-byte items, the
/// size of a typical market-data or order event.
pub const WIDE_WORDS: [usize; 3] = [2, 4, 8];

/// [`throughput`] one item per op, with items of `words` `u64`s (one of [`WIDE_WORDS`])
/// instead of one, for Tally's ring and rtrb (`None` for crossbeam or another width).
/// Both loops are the same generic code, so neither queue gets a hand-tuned loop.
pub fn throughput_wide(queue: Queue, words: usize, msgs: u64) -> Option<Duration> {
    let start = Barrier::new(2);
    match (queue, words) {
        (Queue::Tally, 2) => Some(tally_wide::<2>(&start, msgs)),
        (Queue::Tally, 4) => Some(tally_wide::<4>(&start, msgs)),
        (Queue::Tally, 8) => Some(tally_wide::<8>(&start, msgs)),
        (Queue::TallyBatch, 2) => Some(batch_ring_wide::<2>(&start, msgs)),
        (Queue::TallyBatch, 4) => Some(batch_ring_wide::<4>(&start, msgs)),
        (Queue::TallyBatch, 8) => Some(batch_ring_wide::<8>(&start, msgs)),
        (Queue::Rtrb, 2) => Some(rtrb_wide::<2>(&start, msgs)),
        (Queue::Rtrb, 4) => Some(rtrb_wide::<4>(&start, msgs)),
        (Queue::Rtrb, 8) => Some(rtrb_wide::<8>(&start, msgs)),
        _ => None,
    }
}

/// The producer and consumer of a wider-item stream, for one queue's halves: the
/// producer pushes `WideItem([i; W])` for `i` in `0..msgs`, the consumer checks the last
/// word of each. Generic over the halves' types so that both queues run the same code.
macro_rules! wide_sides {
    ($produce:ident, $consume:ident, $tx:ty, $rx:ty, $ok:ident, $what:literal) => {
        #[inline(never)]
        fn $produce<const W: usize>(p: $tx, msgs: u64) {
            let mut p = p;
            let mut next = 0u64;
            let mut spins = 0u32;
            while next < msgs {
                if p.push(WideItem([next; W])).is_ok() {
                    next += 1;
                } else {
                    relax(&mut spins);
                }
            }
        }

        #[inline(never)]
        fn $consume<const W: usize>(c: $rx, msgs: u64) {
            let mut c = c;
            let mut expected = 0u64;
            let mut spins = 0u32;
            while expected < msgs {
                if let $ok(v) = c.pop() {
                    check(v.0.last().copied().unwrap_or(u64::MAX), expected, $what);
                    expected += 1;
                } else {
                    relax(&mut spins);
                }
            }
        }
    };
}

wide_sides!(
    tally_wide_produce,
    tally_wide_consume,
    Producer<'_, WideItem<W>, CAPACITY>,
    Consumer<'_, WideItem<W>, CAPACITY>,
    Some,
    "tally: wrong wide item"
);
wide_sides!(
    rtrb_wide_produce,
    rtrb_wide_consume,
    rtrb::Producer<WideItem<W>>,
    rtrb::Consumer<WideItem<W>>,
    Ok,
    "rtrb: wrong wide item"
);

wide_sides!(
    batch_ring_wide_produce,
    batch_ring_wide_consume,
    BatchProducer<'_, WideItem<W>, CAPACITY>,
    BatchConsumer<'_, WideItem<W>, CAPACITY>,
    Some,
    "tally-batch: wrong wide item"
);

/// [`throughput_wide`] for Tally's [`BatchRing`].
#[inline(never)]
fn batch_ring_wide<const W: usize>(start: &Barrier, msgs: u64) -> Duration {
    let mut ring = Box::new(BatchRing::<WideItem<W>, CAPACITY>::new());
    let (p, c) = ring.split();
    run_pair(
        start,
        move || batch_ring_wide_produce::<W>(p, msgs),
        move || batch_ring_wide_consume::<W>(c, msgs),
    )
}

/// [`throughput_wide`] for Tally's ring.
#[inline(never)]
fn tally_wide<const W: usize>(start: &Barrier, msgs: u64) -> Duration {
    let mut ring = Box::new(SpscRing::<WideItem<W>, CAPACITY>::new());
    let (p, c) = ring.split();
    run_pair(
        start,
        move || tally_wide_produce::<W>(p, msgs),
        move || tally_wide_consume::<W>(c, msgs),
    )
}

/// [`throughput_wide`] for rtrb.
#[inline(never)]
fn rtrb_wide<const W: usize>(start: &Barrier, msgs: u64) -> Duration {
    let (p, c) = rtrb::RingBuffer::<WideItem<W>>::new(CAPACITY);
    run_pair(
        start,
        move || rtrb_wide_produce::<W>(p, msgs),
        move || rtrb_wide_consume::<W>(c, msgs),
    )
}

/// The one-item loops of one queue: the producer and consumer of [`throughput`] and the
/// two sides of [`ping_pong`] (`$echo` takes an item from the first queue and sends it
/// back on the second; `$ping` sends `i`, waits for the echo and records the round trip
/// through `record`). Each is a function of its own that moves its queue halves into
/// locals (see [`run_pair`]), written out per queue by the macro so that each holds
/// exactly the loop it would hold written by hand (a loop generic over a small trait
/// compiled differently; see [`throughput`]). `$ok` is what a successful pop returns
/// (`Some` or `Ok`); `$what` names the queue in the panic of a wrong item.
///
/// The ping-pong sides got functions of their own for the same reason as the throughput
/// loops. Inlined into [`ping_pong`], the echo thread kept its halves in the heap block
/// of its closure and stored their fields on every operation. (Criterion's ping-pong
/// figures on the AMD EPYC host swing between 110-160 and 450-600 ns for any queue, the
/// bare line included, from run to run: the host's placement of the vCPUs, not the
/// loops; `ring-report` interleaves the queues.)
macro_rules! queue_loops {
    ($produce:ident, $consume:ident, $echo:ident, $ping:ident, $tx:ty, $rx:ty, $ok:ident, $what:literal) => {
        #[inline(never)]
        #[allow(unused_mut, reason = "crossbeam's halves are shared references")]
        fn $produce(p: $tx, msgs: u64) {
            let mut p = p;
            let mut next = 0u64;
            let mut spins = 0u32;
            while next < msgs {
                if p.push(next).is_ok() {
                    next += 1;
                } else {
                    relax(&mut spins);
                }
            }
        }

        #[inline(never)]
        #[allow(unused_mut, reason = "crossbeam's halves are shared references")]
        fn $consume(c: $rx, msgs: u64) {
            let mut c = c;
            let mut expected = 0u64;
            let mut spins = 0u32;
            while expected < msgs {
                if let $ok(v) = c.pop() {
                    check(v, expected, $what);
                    expected += 1;
                } else {
                    relax(&mut spins);
                }
            }
        }

        #[inline(never)]
        #[allow(unused_mut, reason = "crossbeam's halves are shared references")]
        fn $echo(rx: $rx, tx: $tx, rounds: u64) {
            let (mut rx, mut tx) = (rx, tx);
            for _ in 0..rounds {
                let mut spins = 0u32;
                let v = loop {
                    if let $ok(v) = rx.pop() {
                        break v;
                    }
                    relax(&mut spins);
                };
                let mut spins = 0u32;
                while tx.push(v).is_err() {
                    relax(&mut spins);
                }
            }
        }

        #[inline(never)]
        #[allow(unused_mut, reason = "crossbeam's halves are shared references")]
        fn $ping(tx: $tx, rx: $rx, rounds: u64, record: &mut impl FnMut(u64, Duration)) {
            let (mut tx, mut rx) = (tx, rx);
            for i in 0..rounds {
                let t = Instant::now();
                let mut spins = 0u32;
                while tx.push(i).is_err() {
                    relax(&mut spins);
                }
                let mut spins = 0u32;
                let v = loop {
                    if let $ok(v) = rx.pop() {
                        break v;
                    }
                    relax(&mut spins);
                };
                record(i, t.elapsed());
                check(v, i, $what);
            }
        }
    };
}

queue_loops!(
    tally_produce,
    tally_consume,
    tally_echo,
    tally_ping,
    Producer<'_, u64, CAPACITY>,
    Consumer<'_, u64, CAPACITY>,
    Some,
    "tally: wrong item"
);
queue_loops!(
    batch_ring_produce,
    batch_ring_consume,
    batch_ring_echo,
    batch_ring_ping,
    BatchProducer<'_, u64, CAPACITY>,
    BatchConsumer<'_, u64, CAPACITY>,
    Some,
    "tally-batch: wrong item"
);
queue_loops!(
    rtrb_produce,
    rtrb_consume,
    rtrb_echo,
    rtrb_ping,
    rtrb::Producer<u64>,
    rtrb::Consumer<u64>,
    Ok,
    "rtrb: wrong item"
);
queue_loops!(
    crossbeam_produce,
    crossbeam_consume,
    crossbeam_echo,
    crossbeam_ping,
    &ArrayQueue<u64>,
    &ArrayQueue<u64>,
    Some,
    "crossbeam: wrong item"
);

/// [`throughput`] for Tally's ring, one item per op.
#[inline(never)]
fn tally_single(start: &Barrier, msgs: u64) -> Duration {
    let mut ring = Box::new(SpscRing::<u64, CAPACITY>::new());
    let (p, c) = ring.split();
    run_pair(
        start,
        move || tally_produce(p, msgs),
        move || tally_consume(c, msgs),
    )
}

/// [`throughput`] in batches of `B` ([`BATCH`] or [`SMALL_BATCH`]) through one of
/// Tally's rings, whose halves' slice calls have the same names and types: `$name` makes
/// the ring, splits it and runs its own producer and consumer, written out per ring (see
/// [`throughput`] for why the loops are not generic).
macro_rules! tally_batch_loops {
    ($name:ident, $ring:ident, $tx:ident, $rx:ident, $what:literal) => {
        #[inline(never)]
        fn $name<const B: usize>(start: &Barrier, msgs: u64) -> Duration {
            #[inline(never)]
            fn produce<const B: usize>(p: $tx<'_, u64, CAPACITY>, msgs: u64) {
                let mut p = p;
                let mut next = 0u64;
                let mut spins = 0u32;
                let mut buf = [0u64; B];
                while next < msgs {
                    let n = usize::try_from(msgs - next).unwrap_or(B).min(B);
                    for (k, b) in buf.iter_mut().take(n).enumerate() {
                        *b = next + k as u64;
                    }
                    let done = p.push_slice(buf.get(..n).unwrap_or(&[]));
                    if done == 0 {
                        relax(&mut spins);
                    }
                    next += done as u64;
                }
            }
            #[inline(never)]
            fn consume<const B: usize>(c: $rx<'_, u64, CAPACITY>, msgs: u64) {
                let mut c = c;
                let mut expected = 0u64;
                let mut spins = 0u32;
                let mut buf = [0u64; B];
                while expected < msgs {
                    let n = c.pop_slice(&mut buf);
                    if n == 0 {
                        relax(&mut spins);
                    }
                    for v in buf.iter().take(n) {
                        check(*v, expected, $what);
                        expected += 1;
                    }
                }
            }
            let mut ring = Box::new($ring::<u64, CAPACITY>::new());
            let (p, c) = ring.split();
            run_pair(
                start,
                move || produce::<B>(p, msgs),
                move || consume::<B>(c, msgs),
            )
        }
    };
}

tally_batch_loops!(
    tally_batched,
    SpscRing,
    Producer,
    Consumer,
    "tally: out of order"
);
tally_batch_loops!(
    batch_ring_batched,
    BatchRing,
    BatchProducer,
    BatchConsumer,
    "tally-batch: out of order"
);

/// [`throughput`] for Tally's [`BatchRing`], one item per op.
#[inline(never)]
fn batch_ring_single(start: &Barrier, msgs: u64) -> Duration {
    let mut ring = Box::new(BatchRing::<u64, CAPACITY>::new());
    let (p, c) = ring.split();
    run_pair(
        start,
        move || batch_ring_produce(p, msgs),
        move || batch_ring_consume(c, msgs),
    )
}

/// [`throughput`] for rtrb, one item per op.
#[inline(never)]
fn rtrb_single(start: &Barrier, msgs: u64) -> Duration {
    let (p, c) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    run_pair(
        start,
        move || rtrb_produce(p, msgs),
        move || rtrb_consume(c, msgs),
    )
}

/// [`throughput`] for rtrb, in batches of `B` ([`BATCH`] or [`SMALL_BATCH`]).
#[inline(never)]
fn rtrb_batched<const B: usize>(start: &Barrier, msgs: u64) -> Duration {
    #[inline(never)]
    fn produce<const B: usize>(p: rtrb::Producer<u64>, msgs: u64) {
        let mut p = p;
        let mut next = 0u64;
        let mut spins = 0u32;
        let mut buf = [0u64; B];
        while next < msgs {
            let n = usize::try_from(msgs - next).unwrap_or(B).min(B);
            for (k, b) in buf.iter_mut().take(n).enumerate() {
                *b = next + k as u64;
            }
            let (done, _) = p.push_partial_slice(buf.get(..n).unwrap_or(&[]));
            if done.is_empty() {
                relax(&mut spins);
            }
            next += done.len() as u64;
        }
    }
    #[inline(never)]
    fn consume<const B: usize>(c: rtrb::Consumer<u64>, msgs: u64) {
        let mut c = c;
        let mut expected = 0u64;
        let mut spins = 0u32;
        let mut buf = [0u64; B];
        while expected < msgs {
            let (got, _) = c.pop_partial_slice(&mut buf);
            if got.is_empty() {
                relax(&mut spins);
            }
            for v in got.iter() {
                check(*v, expected, "rtrb: out of order");
                expected += 1;
            }
        }
    }
    let (p, c) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    run_pair(
        start,
        move || produce::<B>(p, msgs),
        move || consume::<B>(c, msgs),
    )
}

/// [`throughput`] for crossbeam's `ArrayQueue` (one item at a time).
#[inline(never)]
fn throughput_crossbeam(start: &Barrier, msgs: u64) -> Duration {
    let q = ArrayQueue::<u64>::new(CAPACITY);
    let q = &q;
    run_pair(
        start,
        move || crossbeam_produce(q, msgs),
        move || crossbeam_consume(q, msgs),
    )
}

/// One-item-per-op cross-checks run beside [`throughput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleVariant {
    /// rtrb with a refill wait: after a failed `push` the producer waits until `slots()`
    /// reports half the ring free before pushing again, so that it does not write into
    /// the cache line the consumer is reading. A user of rtrb can write this loop; it
    /// shows what a dense ring reaches with that policy.
    RtrbRefill,
    /// Tally's ring in loops that also count failed pushes and pops, as a caller that
    /// watches back-pressure would. A small change to the retry paths can change where
    /// the two threads settle (in one scratch harness it left the ring full on 1-5 % of
    /// pushes); `ring-report` prints how often each side found the ring full or empty.
    TallyCounted,
    /// rtrb in the same counting loops.
    RtrbCounted,
    /// Tally's ring with a consumer that does some work on every item (a chain of
    /// multiplies, [`consumer_work`]), so that it is slower than the producer and the
    /// ring stays nearly full: the producer waits and refills slots as they come back.
    TallySlowConsumer,
    /// rtrb with the same slow consumer.
    RtrbSlowConsumer,
}

/// The per-item work of the slow-consumer variants: a dependent chain of four multiplies
/// and rotates (with the pop, about 5 ns per item on the benchmark machine), folded into
/// `acc`, which the consumer hands to `black_box`.
#[inline]
pub fn consumer_work(acc: u64, v: u64) -> u64 {
    let mut x = acc ^ v;
    for _ in 0..4 {
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    x
}

impl SingleVariant {
    /// Every variant, in report order.
    pub const ALL: [SingleVariant; 5] = [
        SingleVariant::RtrbRefill,
        SingleVariant::TallyCounted,
        SingleVariant::RtrbCounted,
        SingleVariant::TallySlowConsumer,
        SingleVariant::RtrbSlowConsumer,
    ];

    /// Short name used in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            SingleVariant::RtrbRefill => "rtrb_refill",
            SingleVariant::TallyCounted => "tally_counted",
            SingleVariant::RtrbCounted => "rtrb_counted",
            SingleVariant::TallySlowConsumer => "tally_slow_consumer",
            SingleVariant::RtrbSlowConsumer => "rtrb_slow_consumer",
        }
    }
}

/// What a one-item-per-op variant measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantRun {
    /// From the common start until the consumer saw the last item.
    pub elapsed: Duration,
    /// Pushes that found the ring full (0 for `rtrb_refill`, which does not count).
    pub full: u64,
    /// Pops that found the ring empty (0 for `rtrb_refill`, which does not count).
    pub empty: u64,
}

/// [`throughput`] one item at a time for a [`SingleVariant`]; the consumer is the same
/// as there, plus failure counts (and per-item work in the slow-consumer variants).
pub fn throughput_variant(variant: SingleVariant, msgs: u64) -> VariantRun {
    let start = Barrier::new(2);
    match variant {
        SingleVariant::TallyCounted => tally_counted::<false>(&start, msgs),
        SingleVariant::RtrbCounted => rtrb_counted::<false>(&start, msgs),
        SingleVariant::TallySlowConsumer => tally_counted::<true>(&start, msgs),
        SingleVariant::RtrbSlowConsumer => rtrb_counted::<true>(&start, msgs),
        SingleVariant::RtrbRefill => VariantRun {
            elapsed: rtrb_refill(&start, msgs),
            full: 0,
            empty: 0,
        },
    }
}

/// The counting two-thread loops for one queue, written out by a macro so that each
/// queue's function holds exactly the loop it would hold written by hand (a generic loop
/// compiles differently; see [`throughput`]). `$p` and `$c` are the queue's halves;
/// `$ready` matches what a successful pop returns, binding `$v`; `$work` says whether
/// the consumer runs [`consumer_work`] on each item.
macro_rules! counted_loops {
    ($start:expr, $msgs:expr, $work:expr, $p:ident: $pt:ty, $c:ident: $ct:ty, $ready:pat => $v:ident, $what:literal) => {{
        #[inline(never)]
        fn produce($p: $pt, msgs: u64, full: &AtomicU64) {
            let mut $p = $p;
            let mut next = 0u64;
            let mut spins = 0u32;
            let mut failed = 0u64;
            while next < msgs {
                if $p.push(next).is_ok() {
                    next += 1;
                } else {
                    failed += 1;
                    relax(&mut spins);
                }
            }
            full.store(failed, Ordering::Relaxed);
        }
        #[inline(never)]
        fn consume<const WORK: bool>($c: $ct, msgs: u64, empty: &AtomicU64) {
            let mut $c = $c;
            let mut expected = 0u64;
            let mut spins = 0u32;
            let mut failed = 0u64;
            let mut acc = 0u64;
            while expected < msgs {
                if let $ready = $c.pop() {
                    check($v, expected, $what);
                    if WORK {
                        acc = consumer_work(acc, $v);
                    }
                    expected += 1;
                } else {
                    failed += 1;
                    relax(&mut spins);
                }
            }
            black_box(acc);
            empty.store(failed, Ordering::Relaxed);
        }
        let (full, empty) = (AtomicU64::new(0), AtomicU64::new(0));
        let (full_ref, empty_ref) = (&full, &empty);
        let msgs = $msgs;
        let elapsed = run_pair(
            $start,
            move || produce($p, msgs, full_ref),
            move || consume::<$work>($c, msgs, empty_ref),
        );
        VariantRun {
            elapsed,
            full: full.into_inner(),
            empty: empty.into_inner(),
        }
    }};
}

/// [`SingleVariant::TallyCounted`], or with `WORK` [`SingleVariant::TallySlowConsumer`]
/// (one function per `WORK`, so each loop is compiled on its own).
#[inline(never)]
fn tally_counted<const WORK: bool>(start: &Barrier, msgs: u64) -> VariantRun {
    let mut ring = Box::new(SpscRing::<u64, CAPACITY>::new());
    let (p, c) = ring.split();
    counted_loops!(start, msgs, WORK, p: Producer<'_, u64, CAPACITY>, c: Consumer<'_, u64, CAPACITY>, Some(v) => v, "tally: out of order")
}

/// [`SingleVariant::RtrbCounted`], or with `WORK` [`SingleVariant::RtrbSlowConsumer`].
#[inline(never)]
fn rtrb_counted<const WORK: bool>(start: &Barrier, msgs: u64) -> VariantRun {
    let (p, c) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    counted_loops!(start, msgs, WORK, p: rtrb::Producer<u64>, c: rtrb::Consumer<u64>, Ok(v) => v, "rtrb: out of order")
}

/// [`SingleVariant::RtrbRefill`].
#[inline(never)]
fn rtrb_refill(start: &Barrier, msgs: u64) -> Duration {
    #[inline(never)]
    fn produce(p: rtrb::Producer<u64>, msgs: u64) {
        let mut p = p;
        let mut next = 0u64;
        let mut spins = 0u32;
        while next < msgs {
            if p.push(next).is_ok() {
                next += 1;
            } else {
                relax(&mut spins);
                while p.slots() < CAPACITY / 2 {
                    relax(&mut spins);
                }
            }
        }
    }
    let (p, c) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    run_pair(
        start,
        move || produce(p, msgs),
        move || rtrb_consume(c, msgs),
    )
}

fn run_pair(
    start: &Barrier,
    producer: impl FnOnce() + Send,
    consumer: impl FnOnce() + Send,
) -> Duration {
    std::thread::scope(|s| {
        let cons = s.spawn(move || {
            pin(1);
            start.wait();
            consumer();
            Instant::now()
        });
        pin(0);
        start.wait();
        let t0 = Instant::now();
        producer();
        let end = cons
            .join()
            .unwrap_or_else(|_| panic!("consumer thread panicked"));
        end.duration_since(t0)
    })
}

/// What the ping-pong round trips are measured through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingPong {
    /// One of the queues: two rings, A→B and B→A.
    Queue(Queue),
    /// The floor: two 128-byte aligned atomics bounced between the threads.
    BareCacheLine,
}

impl PingPong {
    /// All variants, floor first.
    pub const ALL: [PingPong; 5] = [
        PingPong::BareCacheLine,
        PingPong::Queue(Queue::Tally),
        PingPong::Queue(Queue::Rtrb),
        PingPong::Queue(Queue::Crossbeam),
        PingPong::Queue(Queue::TallyBatch),
    ];

    /// Short name used in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            PingPong::Queue(q) => q.name(),
            PingPong::BareCacheLine => "bare_cache_line",
        }
    }
}

/// Runs `rounds` round trips between two threads pinned to cores 0 and 1. When
/// `samples` is `Some`, each round trip's nanoseconds are written into it (it must hold
/// `rounds` entries); returns the total time.
pub fn ping_pong(kind: PingPong, rounds: u64, mut samples: Option<&mut [u32]>) -> Duration {
    let start = Barrier::new(2);
    // Each thread's queue halves move into that thread (as in real use): halves captured
    // by reference would all sit in this thread's stack frame, where a half that one
    // thread writes on every operation can share a cache line with the other thread's.
    let start = &start;
    let mut total = Duration::ZERO;
    let mut record = |k: u64, t: Duration| {
        total += t;
        if let Some(s) = samples
            .as_deref_mut()
            .and_then(|s| s.get_mut(usize::try_from(k).unwrap_or(usize::MAX)))
        {
            *s = u32::try_from(t.as_nanos()).unwrap_or(u32::MAX);
        }
    };
    match kind {
        PingPong::BareCacheLine => {
            let ping = CachePadded::new(AtomicU64::new(0));
            let pong = CachePadded::new(AtomicU64::new(0));
            let (ping, pong) = (&ping, &pong);
            std::thread::scope(|s| {
                s.spawn(move || {
                    pin(1);
                    start.wait();
                    for i in 1..=rounds {
                        {
                            let mut spins = 0u32;
                            while ping.load(Ordering::Acquire) != i {
                                relax(&mut spins);
                            }
                        }
                        pong.store(i, Ordering::Release);
                    }
                });
                pin(0);
                start.wait();
                for i in 1..=rounds {
                    let t = Instant::now();
                    ping.store(i, Ordering::Release);
                    {
                        let mut spins = 0u32;
                        while pong.load(Ordering::Acquire) != i {
                            relax(&mut spins);
                        }
                    }
                    record(i - 1, t.elapsed());
                }
            });
        }
        PingPong::Queue(Queue::Tally) => {
            let mut a = Box::new(SpscRing::<u64, CAPACITY>::new());
            let mut b = Box::new(SpscRing::<u64, CAPACITY>::new());
            let (a_tx, a_rx) = a.split();
            let (b_tx, b_rx) = b.split();
            std::thread::scope(|s| {
                s.spawn(move || {
                    pin(1);
                    start.wait();
                    tally_echo(a_rx, b_tx, rounds);
                });
                pin(0);
                start.wait();
                tally_ping(a_tx, b_rx, rounds, &mut record);
            });
        }
        PingPong::Queue(Queue::TallyBatch) => {
            let mut a = Box::new(BatchRing::<u64, CAPACITY>::new());
            let mut b = Box::new(BatchRing::<u64, CAPACITY>::new());
            let (a_tx, a_rx) = a.split();
            let (b_tx, b_rx) = b.split();
            std::thread::scope(|s| {
                s.spawn(move || {
                    pin(1);
                    start.wait();
                    batch_ring_echo(a_rx, b_tx, rounds);
                });
                pin(0);
                start.wait();
                batch_ring_ping(a_tx, b_rx, rounds, &mut record);
            });
        }
        PingPong::Queue(Queue::Rtrb) => {
            let (a_tx, a_rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
            let (b_tx, b_rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
            std::thread::scope(|s| {
                s.spawn(move || {
                    pin(1);
                    start.wait();
                    rtrb_echo(a_rx, b_tx, rounds);
                });
                pin(0);
                start.wait();
                rtrb_ping(a_tx, b_rx, rounds, &mut record);
            });
        }
        PingPong::Queue(Queue::Crossbeam) => {
            let a = ArrayQueue::<u64>::new(CAPACITY);
            let b = ArrayQueue::<u64>::new(CAPACITY);
            let (a, b) = (&a, &b);
            std::thread::scope(|s| {
                s.spawn(move || {
                    pin(1);
                    start.wait();
                    crossbeam_echo(a, b, rounds);
                });
                pin(0);
                start.wait();
                crossbeam_ping(a, b, rounds, &mut record);
            });
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::{
        BATCH, PingPong, Queue, SingleVariant, WIDE_WORDS, batch_in_order, batch_loop,
        expected_sum, pair_loop, ping_pong, throughput, throughput_small_batches,
        throughput_variant, throughput_wide,
    };

    /// Every workload runs a few thousand items through every queue: each one checks
    /// what it receives and panics on a wrong item, so a broken queue or loop fails here
    /// before it can produce a benchmark figure. A consumer that panics leaves its
    /// producer spinning on a full ring, so the workloads run on a thread of their own
    /// and the test fails if they have not finished within two minutes (they take well
    /// under a second).
    #[test]
    fn every_workload_moves_its_items_in_order() {
        const MSGS: u64 = 20_000;
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for q in Queue::ALL {
                assert_eq!(pair_loop(q, MSGS), expected_sum(MSGS), "{}", q.name());
                throughput(q, MSGS, false);
                throughput(q, MSGS, true);
                throughput_small_batches(q, MSGS);
                for words in WIDE_WORDS {
                    throughput_wide(q, words, MSGS);
                }
            }
            for v in SingleVariant::ALL {
                let run = throughput_variant(v, MSGS);
                assert!(run.elapsed.as_nanos() > 0, "{}", v.name());
            }
            let mut samples = vec![0u32; 200];
            for kind in PingPong::ALL {
                ping_pong(kind, 200, Some(&mut samples));
                assert!(samples.iter().all(|ns| *ns > 0), "{}", kind.name());
            }
            done.send(()).unwrap();
        });
        if let Err(e) = finished.recv_timeout(std::time::Duration::from_mins(2)) {
            panic!("the workloads did not finish ({e}): a check failed or a queue lost an item");
        }
    }

    /// The batch kernels move every item for every queue, also once the positions wrap
    /// around the ring (more than `CAPACITY / BATCH` rounds), and 0 rounds sum to 0.
    #[test]
    fn every_batch_loop_moves_its_items() {
        for q in Queue::ALL {
            for iters in [0u64, 1, 3, 4, 5, 9, 17] {
                assert_eq!(
                    batch_loop(q, iters),
                    expected_sum(iters * BATCH as u64),
                    "{} after {iters} rounds",
                    q.name()
                );
            }
        }
    }

    /// A batch whose items came out in another order adds up to the same sum; the order
    /// check refuses it.
    #[test]
    fn a_batch_out_of_order_adds_up_but_is_refused() {
        let pushed: [u64; BATCH] = std::array::from_fn(|k| 3 * BATCH as u64 + k as u64);
        let mut popped = pushed;
        popped.swap(3, 200);
        let sum = |b: &[u64; BATCH]| b.iter().fold(0u64, |s, v| s.wrapping_add(*v));
        assert_eq!(sum(&popped), sum(&pushed));
        assert!(!batch_in_order(&pushed, &popped));
        popped.rotate_left(7);
        assert_eq!(sum(&popped), sum(&pushed));
        assert!(!batch_in_order(&pushed, &popped));
        assert!(batch_in_order(&pushed, &pushed));
    }

    #[test]
    fn expected_sum_matches_wrapping_additions() {
        for n in [0u64, 1, 2, 3, 10_000] {
            assert_eq!(
                expected_sum(n),
                (0..n).fold(0u64, u64::wrapping_add),
                "n = {n}"
            );
        }
        // 2^33 (2^33 - 1) / 2 = 2^65 - 2^32, which is 2^64 - 2^32 modulo 2^64.
        assert_eq!(expected_sum(1 << 33), 0xFFFF_FFFF_0000_0000);
    }
}
