//! Many writers, one group commit: [`SharedJournal`] owns a [`Journal`] on its own
//! thread; cloneable [`JournalHandle`]s hand records over and wait for their own
//! durability.
//!
//! Writers copy their payload into a bounded inbox under a mutex and get a sequence
//! number at once. The journal thread swaps the inbox for an empty one, appends the
//! records, commits (one write + one `fdatasync`), publishes the durable sequence number
//! and wakes the waiters. While it flushes, writers fill the next inbox, so the next
//! group is ready when the flush ends. The thread may linger a little
//! ([`SharedOptions::linger`]) for as many records as the previous group had, so that
//! writers woken by one commit land in the next group together instead of trickling in.
//!
//! Any error of the journal thread stops the shared journal, including
//! [`JournalError::NoSpace`], which a plain [`Journal`] survives: writers hold their
//! sequence numbers already, so a group cannot be cut short without renumbering what
//! follows. Every waiter then gets the error, the records acknowledged before it are
//! durable, and [`SharedJournal::close`] returns it: free space, then reopen to go on.
//!
//! While records are in flight, a keep-awake thread in the `SCHED_IDLE` class polls on
//! whatever CPU would otherwise go idle ([`SharedOptions::keep_awake`]). On a virtual
//! machine an idle vCPU halts, and waking it again (for the flush's completion, or for a
//! writer whose record became durable) can take longer than the flush itself; a vCPU
//! that runs the keep-awake thread does not halt, and any other thread that wakes there
//! preempts it at once.
#![deny(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use self::sync::{
    Arc, AtomicBool, AtomicU64, Condvar, JoinHandle, Mutex, MutexGuard, Ordering, ThreadBuilder,
};
use super::{Journal, JournalError, JournalOptions};

/// The synchronisation the hand-over protocol uses, swapped for loom's under
/// `--cfg tally_uring_loom` so that the loom model checker can explore every interleaving
/// (see the `loom_models` tests below).
mod sync {
    #[cfg(tally_uring_loom)]
    pub(super) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    #[cfg(tally_uring_loom)]
    pub(super) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    #[cfg(tally_uring_loom)]
    pub(super) use loom::thread::{Builder as ThreadBuilder, JoinHandle};

    #[cfg(not(tally_uring_loom))]
    pub(super) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    #[cfg(not(tally_uring_loom))]
    pub(super) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    #[cfg(not(tally_uring_loom))]
    pub(super) use std::thread::{Builder as ThreadBuilder, JoinHandle};
}

/// Options of the shared front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedOptions {
    max_pending_bytes: usize,
    linger: Duration,
    keep_awake: bool,
}

impl Default for SharedOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedOptions {
    /// 4 MiB inbox, 100 µs linger, keep-awake thread on.
    pub const fn new() -> Self {
        Self {
            max_pending_bytes: 4 << 20,
            linger: Duration::from_micros(100),
            keep_awake: true,
        }
    }

    /// Bytes of payload (plus 4 per record) the inbox holds before writers block (4 to
    /// 1 GiB; the inbox and the journal thread's copy of it are allocated at start).
    #[must_use]
    pub const fn max_pending_bytes(mut self, n: usize) -> Self {
        self.max_pending_bytes = n;
        self
    }

    /// Longest time the journal thread waits for a fuller group (zero: never wait).
    #[must_use]
    pub const fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }

    /// Whether a keep-awake thread polls while records are in flight (default: on).
    ///
    /// The thread runs in the `SCHED_IDLE` class, so it gets almost only CPU time that no
    /// other thread wants (the class's weight is 3 against a normal thread's 1,024, and a
    /// normal thread that wakes preempts it at once), and it sleeps whenever every handed-over record is durable. While a
    /// flush is in flight it keeps one CPU from going idle. That pays where waking an idle
    /// CPU is slow: on the 2-vCPU VMs we measure on, with 8 writers each waiting for its
    /// own record, it raised the records per second by 7-44 % (to 1.24-1.57x okaywal's)
    /// and lowered p99 (see `docs/benchmarks/tally-uring.md`). The cost is that CPU's
    /// otherwise idle time while records are in flight and for 1 ms after: there about
    /// 0.9 of a CPU, 50-60 instead of 25 us of CPU time per record (power, and the sibling
    /// hyperthread of a busy core). If the kernel refuses `SCHED_IDLE`, the thread exits
    /// at once instead of polling at normal priority.
    #[must_use]
    pub const fn keep_awake(mut self, on: bool) -> Self {
        self.keep_awake = on;
        self
    }
}

impl SharedOptions {
    fn validate(&self) -> Result<(), JournalError> {
        if self.max_pending_bytes < 4 || self.max_pending_bytes > MAX_PENDING_BYTES {
            return Err(JournalError::InvalidOptions {
                reason: "max_pending_bytes must be between 4 (one empty record) and 1 GiB (the inbox and the journal thread's copy of it are allocated when the shared journal starts)",
            });
        }
        Ok(())
    }
}

/// Largest [`SharedOptions::max_pending_bytes`].
const MAX_PENDING_BYTES: usize = 1 << 30;

struct State {
    inbox: Vec<u8>,
    inbox_records: u64,
    /// Sequence number the next handed-over record gets.
    next_seq: u64,
    failed: Option<String>,
    closed: bool,
    /// Writers blocked because the inbox is full.
    space_waiters: u32,
    /// The journal thread is waiting on `work` (so an append must wake it); while it
    /// writes and flushes a group, appends skip the wake-up system call.
    worker_waiting: bool,
    /// Appends wake the waiting journal thread only once the inbox holds this many
    /// records: 1 while it waits for work, the previous group's size while it lingers.
    wake_at: u64,
    /// The keep-awake thread sleeps on `Inner::awake` (appends then wake it).
    awake_parked: bool,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when records arrive or on close.
    work: Condvar,
    /// Signalled when `durable` advances, inbox space frees, or on failure.
    done: Condvar,
    /// The highest durable sequence number. Written by the journal thread (also under
    /// the mutex, so that sleepers cannot miss the change); polled without it.
    durable: AtomicU64,
    /// The highest sequence number handed out (written under the mutex).
    handed: AtomicU64,
    /// Set (under the mutex) on failure or close.
    stopped: AtomicBool,
    /// Signalled when records arrive while the keep-awake thread sleeps, and on stop.
    awake: Condvar,
    opts: SharedOptions,
    max_record: u32,
}

impl Inner {
    fn new(next: u64, durable: u64, opts: SharedOptions, max_record: u32) -> Self {
        Self {
            state: Mutex::new(State {
                inbox: Vec::with_capacity(opts.max_pending_bytes),
                inbox_records: 0,
                next_seq: next,
                failed: None,
                closed: false,
                space_waiters: 0,
                worker_waiting: false,
                wake_at: 1,
                awake_parked: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            durable: AtomicU64::new(durable),
            handed: AtomicU64::new(next.saturating_sub(1)),
            stopped: AtomicBool::new(false),
            awake: Condvar::new(),
            opts,
            max_record,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records why the journal thread stopped (the first reason wins) and wakes every
    /// waiter: writers, the keep-awake thread and the journal thread itself.
    fn fail(&self, reason: String) {
        let mut st = self.lock();
        if st.failed.is_none() {
            st.failed = Some(reason);
        }
        self.stopped.store(true, Ordering::Release);
        drop(st);
        self.done.notify_all();
        self.awake.notify_all();
        self.work.notify_all();
    }
}

/// Why a panicked journal thread stopped (for waiters and for [`SharedJournal::close`]).
const PANICKED: &str = "the journal thread panicked (a bug: please report it); records acknowledged before are durable: reopen the journal to go on";

/// Marks the shared journal failed if the journal thread unwinds, so that no writer
/// waits forever for a commit that will never come.
struct FailOnUnwind<'a>(&'a Inner);

impl Drop for FailOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(PANICKED.into());
        }
    }
}

/// Starts the journal thread running `body`; if `body` panics, the shared journal is
/// marked failed and every waiter woken.
fn spawn_worker<T: Send + 'static>(
    inner: &Arc<Inner>,
    body: impl FnOnce(&Inner) -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    let worker = Arc::clone(inner);
    ThreadBuilder::new()
        .name("tally-journal".into())
        .spawn(move || {
            let _guard = FailOnUnwind(&worker);
            body(&worker)
        })
}

/// A journal on its own thread, shared by [`JournalHandle`]s.
pub struct SharedJournal {
    threads: Threads<Journal>,
}

impl std::fmt::Debug for SharedJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedJournal").finish_non_exhaustive()
    }
}

/// A cloneable handle for appending to a [`SharedJournal`] from any thread.
#[derive(Clone)]
pub struct JournalHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JournalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalHandle").finish_non_exhaustive()
    }
}

impl SharedJournal {
    /// Opens (recovering) the journal in `dir` and starts its thread.
    ///
    /// # Errors
    /// As [`Journal::open`]; [`JournalError::InvalidOptions`] for a `max_pending_bytes`
    /// out of range; [`JournalError::Stopped`] if the thread cannot start.
    pub fn open(
        dir: &Path,
        options: JournalOptions,
        shared: SharedOptions,
    ) -> Result<Self, JournalError> {
        shared.validate()?;
        let journal = Journal::open(dir, options)?;
        Self::start(journal, shared)
    }

    /// Moves an open journal onto its own thread. Records appended to `journal` and not
    /// yet committed are committed first, so that every sequence number a handle can wait
    /// for is durable or on its way.
    ///
    /// # Errors
    /// [`JournalError::InvalidOptions`] for a `max_pending_bytes` out of range (checked
    /// first, nothing is committed then); [`JournalError::Stopped`] if the thread cannot
    /// be spawned; as [`Journal::commit`]
    /// if the records already appended cannot be made durable.
    pub fn start(mut journal: Journal, shared: SharedOptions) -> Result<Self, JournalError> {
        shared.validate()?;
        // The journal thread commits only what arrives through its inbox; records appended
        // before the hand-over would otherwise never become durable, and their waiters
        // (and the keep-awake thread) would wait forever.
        if journal.durable_seq().saturating_add(1) < journal.next_seq() {
            journal.commit()?;
        }
        let inner = Arc::new(Inner::new(
            journal.next_seq(),
            journal.durable_seq(),
            shared,
            journal.opts.max_record_bytes,
        ));
        let poll = shared.keep_awake.then(WallPoll::new);
        Ok(Self {
            threads: Threads::start(inner, journal, WallClock, poll)?,
        })
    }

    /// A handle for appending.
    pub fn handle(&self) -> JournalHandle {
        self.threads.handle()
    }

    /// Commits what is pending, stops the thread and gives the journal back.
    ///
    /// # Errors
    /// The error that stopped the journal thread, if any.
    pub fn close(mut self) -> Result<Journal, JournalError> {
        self.threads.stop()
    }
}

/// The journal thread (committing into a `S`) and the keep-awake thread of one shared
/// journal; dropping it stops both.
struct Threads<S> {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<Result<S, JournalError>>>,
    awake: Option<JoinHandle<()>>,
}

impl<S: Sink> Threads<S> {
    /// Starts the journal thread committing into `sink` and, with `poll`, the keep-awake
    /// thread.
    fn start(
        inner: Arc<Inner>,
        sink: S,
        clock: impl Clock,
        poll: Option<impl Poll>,
    ) -> Result<Self, JournalError> {
        let awake = match poll {
            Some(poll) => {
                let poller = Arc::clone(&inner);
                Some(
                    ThreadBuilder::new()
                        .name("tally-journal-awake".into())
                        .spawn(move || keep_awake(&poller, poll))
                        .map_err(|e| JournalError::Stopped {
                            reason: format!("spawning the keep-awake thread failed: {e}"),
                        })?,
                )
            }
            None => None,
        };
        let thread = spawn_worker(&inner, move |worker| run(sink, worker, &clock));
        let mut this = Self {
            inner,
            thread: None,
            awake,
        };
        match thread {
            Ok(t) => this.thread = Some(t),
            Err(e) => {
                this.stop_awake();
                return Err(JournalError::Stopped {
                    reason: format!("spawning the journal thread failed: {e}"),
                });
            }
        }
        Ok(this)
    }
}

impl<S> Threads<S> {
    fn handle(&self) -> JournalHandle {
        JournalHandle {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Closes the inbox, lets the journal thread commit what is pending and joins it, then
    /// stops the keep-awake thread.
    fn stop(&mut self) -> Result<S, JournalError> {
        {
            let mut st = self.inner.lock();
            st.closed = true;
        }
        self.inner.work.notify_all();
        self.inner.done.notify_all();
        let result = match self.thread.take() {
            Some(t) => t.join().map_err(|_| {
                // Normally already done by the thread's unwind guard.
                self.inner.fail(PANICKED.into());
                JournalError::Stopped {
                    reason: PANICKED.into(),
                }
            }),
            None => Err(JournalError::Stopped {
                reason: "already closed".into(),
            }),
        };
        self.stop_awake();
        result?
    }

    /// Stops and joins the keep-awake thread (the journal thread has finished, or never
    /// started).
    fn stop_awake(&mut self) {
        {
            let mut st = self.inner.lock();
            st.closed = true;
            self.inner.stopped.store(true, Ordering::Release);
        }
        self.inner.awake.notify_all();
        if let Some(t) = self.awake.take() {
            let _ = t.join();
        }
    }
}

impl<S> Drop for Threads<S> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

impl JournalHandle {
    /// Hands a record to the journal and returns its sequence number without waiting for
    /// durability (see [`JournalHandle::wait_durable`]). Blocks while the inbox is full.
    ///
    /// # Errors
    /// [`JournalError::RecordTooLarge`] for payloads over `max_record_bytes`;
    /// [`JournalError::RecordExceedsInbox`] for payloads that do not fit the inbox
    /// ([`SharedOptions::max_pending_bytes`]);
    /// [`JournalError::Stopped`] after a failure or close.
    pub fn append(&self, payload: &[u8]) -> Result<u64, JournalError> {
        let need = payload.len() + 4;
        let len = u32::try_from(payload.len()).map_err(|_| JournalError::RecordTooLarge {
            len: payload.len(),
            max: self.inner.max_record,
        })?;
        if len > self.inner.max_record {
            return Err(JournalError::RecordTooLarge {
                len: payload.len(),
                max: self.inner.max_record,
            });
        }
        if need > self.inner.opts.max_pending_bytes {
            return Err(JournalError::RecordExceedsInbox {
                len: payload.len(),
                max_pending_bytes: self.inner.opts.max_pending_bytes,
            });
        }
        let mut st = self.inner.lock();
        loop {
            if let Some(reason) = &st.failed {
                return Err(JournalError::Stopped {
                    reason: reason.clone(),
                });
            }
            if st.closed {
                return Err(JournalError::Stopped {
                    reason: "the shared journal was closed".into(),
                });
            }
            if st.inbox.len() + need <= self.inner.opts.max_pending_bytes {
                break;
            }
            st.space_waiters += 1;
            if st.worker_waiting {
                // The journal thread lingers for a fuller group, which cannot come now.
                self.inner.work.notify_one();
            }
            st = wait(&self.inner.done, st);
            st.space_waiters -= 1;
        }
        st.inbox.extend_from_slice(&len.to_le_bytes());
        st.inbox.extend_from_slice(payload);
        st.inbox_records += 1;
        let seq = st.next_seq;
        st.next_seq += 1;
        self.inner.handed.store(seq, Ordering::Release);
        let wake = st.worker_waiting && st.inbox_records >= st.wake_at;
        let wake_awake = st.awake_parked;
        drop(st);
        if wake {
            self.inner.work.notify_one();
        }
        if wake_awake {
            self.inner.awake.notify_one();
        }
        Ok(seq)
    }

    /// Waits until record `seq` is durable; returns the highest durable sequence number.
    ///
    /// # Errors
    /// [`JournalError::NotAppended`] when `seq` was never handed out by
    /// [`JournalHandle::append`]; [`JournalError::Stopped`] if the journal failed (or its
    /// thread panicked) before `seq` became durable.
    pub fn wait_durable(&self, seq: u64) -> Result<u64, JournalError> {
        let inner = &*self.inner;
        let mut st = inner.lock();
        if seq >= st.next_seq {
            return Err(JournalError::NotAppended {
                seq,
                next: st.next_seq,
            });
        }
        loop {
            let durable = inner.durable.load(Ordering::Acquire);
            if durable >= seq {
                return Ok(durable);
            }
            if let Some(reason) = &st.failed {
                return Err(JournalError::Stopped {
                    reason: reason.clone(),
                });
            }
            // `seq` was handed out (checked above): the journal thread commits it before it
            // stops, or sets `failed`, also when it panics.
            st = wait(&self.inner.done, st);
        }
    }

    /// Appends a record and waits until it is durable; returns its sequence number.
    ///
    /// # Errors
    /// As [`JournalHandle::append`] and [`JournalHandle::wait_durable`].
    pub fn append_durable(&self, payload: &[u8]) -> Result<u64, JournalError> {
        let seq = self.append(payload)?;
        self.wait_durable(seq)?;
        Ok(seq)
    }

    /// The highest durable sequence number.
    pub fn durable_seq(&self) -> u64 {
        self.inner.durable.load(Ordering::Acquire)
    }
}

/// What the journal thread does with a group: the real [`Journal`] in the library, an
/// in-memory sink in the loom models.
trait Sink: Send + 'static {
    /// Appends the length-prefixed records in `group` and makes them durable; returns the
    /// highest durable sequence number.
    fn commit_group(&mut self, group: &[u8]) -> Result<u64, JournalError>;
}

impl Sink for Journal {
    fn commit_group(&mut self, group: &[u8]) -> Result<u64, JournalError> {
        for_each_record(group, |payload| self.append(payload).map(drop))?;
        self.commit()
    }
}

/// The linger's time: the wall clock in the library; in the loom models a deadline that
/// passes when a timer thread fires, at any point of the interleaving.
trait Clock: Send + 'static {
    /// When a linger ends.
    type Deadline: Copy;
    /// What is left of a linger, for one wait.
    type Left;
    /// The deadline of a linger starting now.
    fn deadline(&self, linger: Duration) -> Self::Deadline;
    /// What is left until `deadline`; `None` once it has passed.
    fn left(&self, deadline: Self::Deadline) -> Option<Self::Left>;
    /// Waits on `cv` until notified or until `left` has passed.
    fn wait_timeout<'a>(
        &self,
        cv: &Condvar,
        st: MutexGuard<'a, State>,
        left: Self::Left,
    ) -> MutexGuard<'a, State>;
}

/// [`Clock`] on [`Instant`].
struct WallClock;

impl Clock for WallClock {
    /// `None`: too far ahead for an [`Instant`], never.
    type Deadline = Option<Instant>;
    type Left = Duration;

    fn deadline(&self, linger: Duration) -> Option<Instant> {
        Instant::now().checked_add(linger)
    }

    fn left(&self, deadline: Option<Instant>) -> Option<Duration> {
        match deadline {
            Some(at) => at
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero()),
            None => Some(Duration::MAX),
        }
    }

    fn wait_timeout<'a>(
        &self,
        cv: &Condvar,
        st: MutexGuard<'a, State>,
        left: Duration,
    ) -> MutexGuard<'a, State> {
        cv.wait_timeout(st, left)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }
}

fn run<S: Sink, C: Clock>(mut sink: S, inner: &Inner, clock: &C) -> Result<S, JournalError> {
    let mut local: Vec<u8> = Vec::with_capacity(inner.opts.max_pending_bytes);
    let mut last_group = 1u64;
    loop {
        {
            let mut st = inner.lock();
            st.wake_at = 1;
            while st.inbox_records == 0 && !st.closed {
                st.worker_waiting = true;
                st = wait(&inner.work, st);
                st.worker_waiting = false;
            }
            if st.inbox_records == 0 && st.closed {
                return Ok(sink);
            }
            // Linger for a group as large as the last one, bounded in time, unless the
            // inbox is full (a writer waits for space).
            if !inner.opts.linger.is_zero() && st.inbox_records < last_group && !st.closed {
                let deadline = clock.deadline(inner.opts.linger);
                st.wake_at = last_group;
                while st.inbox_records < last_group && !st.closed && st.space_waiters == 0 {
                    let Some(left) = clock.left(deadline) else {
                        break;
                    };
                    st.worker_waiting = true;
                    st = clock.wait_timeout(&inner.work, st, left);
                    st.worker_waiting = false;
                }
            }
            std::mem::swap(&mut st.inbox, &mut local);
            last_group = st.inbox_records.max(1);
            st.inbox_records = 0;
            if st.space_waiters > 0 {
                inner.done.notify_all(); // inbox space is free again
            }
        }
        let result = sink.commit_group(&local);
        local.clear();
        match result {
            Ok(durable) => {
                // Under the mutex, so that a waiter cannot miss the change.
                let st = inner.lock();
                inner.durable.store(durable, Ordering::Release);
                drop(st);
                inner.done.notify_all();
            }
            Err(e) => {
                inner.fail(e.to_string());
                return Err(e);
            }
        }
    }
}

/// Waits on `cv`, taking the guard back even if another thread panicked while holding
/// the lock (the state stays consistent: every update is complete before a wait).
fn wait<'a>(cv: &Condvar, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    cv.wait(st)
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How the keep-awake thread polls: on the wall clock in `SCHED_IDLE` in the library; in
/// the loom models yielding, with a grace period that is over at once.
trait Poll: Send + 'static {
    /// Prepares the calling thread; `false`: it must not poll (the thread returns).
    fn enter(&mut self) -> bool;
    /// A polling phase begins (the grace period starts).
    fn start(&mut self);
    /// One poll's pause.
    fn spin(&mut self);
    /// Records were in flight at this poll, with `durable` the highest durable sequence
    /// number (the grace period starts again).
    fn busy(&mut self, durable: u64);
    /// Whether the grace period since the last busy poll is over.
    fn grace_over(&self) -> bool;
}

/// [`Poll`] in `SCHED_IDLE` on [`Instant`].
struct WallPoll {
    last_busy: Instant,
}

impl WallPoll {
    fn new() -> Self {
        Self {
            last_busy: Instant::now(),
        }
    }
}

impl Poll for WallPoll {
    fn enter(&mut self) -> bool {
        crate::sched::make_current_thread_idle().is_ok() // never poll at normal priority
    }

    fn start(&mut self) {
        self.last_busy = Instant::now();
    }

    fn spin(&mut self) {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
    }

    fn busy(&mut self, _durable: u64) {
        self.last_busy = Instant::now();
    }

    fn grace_over(&self) -> bool {
        self.last_busy.elapsed() >= KEEP_AWAKE_GRACE
    }
}

/// The keep-awake thread: in `SCHED_IDLE`, polls while records are handed over but not
/// yet durable (and for [`KEEP_AWAKE_GRACE`] after), sleeps otherwise; returns on close or
/// failure.
fn keep_awake(inner: &Inner, mut poll: impl Poll) {
    if !poll.enter() {
        return;
    }
    let in_flight = || inner.durable.load(Ordering::Acquire) < inner.handed.load(Ordering::Acquire);
    loop {
        {
            let mut st = inner.lock();
            loop {
                if st.closed || st.failed.is_some() {
                    return;
                }
                if in_flight() {
                    break;
                }
                st.awake_parked = true;
                st = wait(&inner.awake, st);
                st.awake_parked = false;
            }
        }
        // Poll while records are in flight and for a grace period after, which covers
        // the writers' wake-up after a commit and their next records.
        poll.start();
        while !inner.stopped.load(Ordering::Acquire) {
            poll.spin();
            let durable = inner.durable.load(Ordering::Acquire);
            if durable < inner.handed.load(Ordering::Acquire) {
                poll.busy(durable);
            } else if poll.grace_over() {
                break;
            }
        }
    }
}

/// How long the keep-awake thread goes on polling after the last record became durable.
const KEEP_AWAKE_GRACE: Duration = Duration::from_millis(1);

/// Calls `f` with each payload of a group of length-prefixed records.
fn for_each_record(
    mut buf: &[u8],
    mut f: impl FnMut(&[u8]) -> Result<(), JournalError>,
) -> Result<(), JournalError> {
    while let Some((len, rest)) = buf.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let (payload, rest) = rest.split_at_checked(len).unwrap_or((rest, &[]));
        f(payload)?;
        buf = rest;
    }
    Ok(())
}

#[cfg(all(test, not(tally_uring_loom)))]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "test code"
    )]

    use std::sync::mpsc;

    use super::*;

    /// A writer that waits for inbox space ends a linger, which otherwise waited for a
    /// group that cannot fit: forever with `linger(Duration::MAX)`, and the whole linger
    /// for every such group with a shorter one. The loom model
    /// `loom_a_writer_waiting_for_space_ends_the_linger` found it; this is the same case
    /// on a real journal.
    #[test]
    fn a_writer_waiting_for_space_ends_the_linger() {
        let dir = tempfile::tempdir().unwrap();
        let options = JournalOptions::new()
            .segment_bytes(64 << 10)
            .group_buffer_bytes(16 << 10)
            .max_record_bytes(4096);
        let journal = match Journal::open(dir.path(), options) {
            Ok(j) => j,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: the journal cannot open here: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let shared = SharedOptions::new()
            .max_pending_bytes(10)
            .linger(Duration::MAX)
            .keep_awake(false);
        let inner = Arc::new(Inner::new(
            journal.next_seq(),
            journal.durable_seq(),
            shared,
            journal.opts.max_record_bytes,
        ));
        let h = JournalHandle {
            inner: Arc::clone(&inner),
        };
        // Handed over before the journal thread starts, so its first group has both and
        // the next group lingers for two.
        assert_eq!(h.append(b"p").unwrap(), 1);
        assert_eq!(h.append(b"q").unwrap(), 2);
        let shared = SharedJournal {
            threads: Threads::start(inner, journal, WallClock, None::<WallPoll>).unwrap(),
        };
        let (tx, rx) = mpsc::channel();
        // 6 bytes each in a 10-byte inbox: one at a time.
        for payload in [b"aa", b"bb"] {
            let h = h.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(h.append_durable(payload));
            });
        }
        for _ in 0..2 {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("a writer waiting for inbox space hung behind the linger")
                .unwrap();
        }
        assert_eq!(shared.close().unwrap().durable_seq(), 4);
    }

    /// If the journal thread panics, a writer waiting for its record gets an error
    /// instead of waiting forever, later appends fail, and `close` reports the panic.
    #[test]
    fn a_panicking_journal_thread_releases_every_waiter() {
        let inner = Arc::new(Inner::new(
            1,
            0,
            SharedOptions::new().keep_awake(false),
            1024,
        ));
        let (go, go_rx) = mpsc::channel::<()>();
        let thread = spawn_worker(&inner, move |_| -> Result<Journal, JournalError> {
            let _ = go_rx.recv();
            panic!("injected panic in the journal thread (expected by this test)");
        })
        .unwrap();
        let shared = SharedJournal {
            threads: Threads {
                inner,
                thread: Some(thread),
                awake: None,
            },
        };
        let h = shared.handle();
        assert_eq!(h.append(b"x").unwrap(), 1);
        let (tx, rx) = mpsc::channel();
        let h2 = h.clone();
        std::thread::spawn(move || {
            let _ = tx.send(h2.wait_durable(1));
        });
        std::thread::sleep(Duration::from_millis(20)); // let it start waiting
        go.send(()).unwrap();
        let waited = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("wait_durable hung after the journal thread panicked");
        match waited {
            Err(JournalError::Stopped { reason }) => assert!(reason.contains("panicked")),
            other => panic!("expected Stopped, got {other:?}"),
        }
        assert!(matches!(h.append(b"y"), Err(JournalError::Stopped { .. })));
        match shared.close() {
            Err(JournalError::Stopped { reason }) => assert!(reason.contains("panicked")),
            other => panic!("expected Stopped, got {other:?}"),
        }
    }
}

/// Loom model checks of the hand-over protocol: the real `append`, `wait_durable`, journal
/// thread loop, keep-awake loop and close, on loom's mutexes, condition variables, atomics
/// and threads, with an in-memory sink in place of the journal's I/O and a timer thread in
/// place of the wall clock. Loom runs every interleaving (up to a preemption bound) and
/// reports a deadlock when every thread sleeps, so a lost wake-up fails a model. Run with
/// `RUSTFLAGS="--cfg tally_uring_loom" cargo test -p tally-uring --release --lib loom`.
#[cfg(all(test, tally_uring_loom))]
mod loom_models {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "test code"
    )]

    use loom::thread;

    use super::*;

    /// The records a model sink committed, in sequence order (index 0 holds record 1).
    /// A std mutex: it is held only across plain memory operations, never across a loom
    /// operation, so it neither blocks a loom thread nor adds interleavings.
    type Log = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

    /// In-memory [`Sink`]: commits by appending to the log; fails the `fail_at`-th group;
    /// with a gate, commits only once the keep-awake thread has polled during the group;
    /// with `hold`, commits the first group only once `hold.1` records were handed out.
    struct MemSink {
        log: Log,
        durable: u64,
        groups: u32,
        fail_at: Option<u32>,
        gate: Option<Arc<Gate>>,
        hold: Option<(Arc<Inner>, u64)>,
    }

    impl MemSink {
        fn new(fail_at: Option<u32>, gate: Option<Arc<Gate>>) -> (Self, Log) {
            let log = Log::default();
            let sink = Self {
                log: std::sync::Arc::clone(&log),
                durable: 0,
                groups: 0,
                fail_at,
                gate,
                hold: None,
            };
            (sink, log)
        }
    }

    impl Sink for MemSink {
        fn commit_group(&mut self, group: &[u8]) -> Result<u64, JournalError> {
            self.groups += 1;
            if let Some(gate) = &self.gate {
                gate.wait_for_poll_at(self.durable);
            }
            if let Some((inner, handed)) = self.hold.take() {
                // Records are handed out while this group is being committed: a writer
                // that waits for inbox space must be woken by the swap, not by the
                // commit. If it is not, this spins alone and loom reports it.
                while inner.handed.load(Ordering::Acquire) < handed {
                    thread::yield_now();
                }
            }
            if self.fail_at == Some(self.groups) {
                return Err(JournalError::Stopped {
                    reason: format!("injected failure of group {}", self.groups),
                });
            }
            let mut records = Vec::new();
            for_each_record(group, |p| {
                records.push(p.to_vec());
                Ok(())
            })?;
            assert!(
                !records.is_empty(),
                "the journal thread committed an empty group"
            );
            let mut log = self.log.lock().unwrap();
            log.extend(records);
            self.durable = log.len() as u64;
            Ok(self.durable)
        }
    }

    /// The model's wall clock: one deadline for every linger, passed once the timer
    /// thread has fired. The timer fires under the state mutex and then notifies `work`,
    /// as a timed wait would return, so a linger cannot sleep past it; it fires at any
    /// point of the interleaving, before, during or after a linger.
    struct TimerClock {
        fired: Arc<AtomicBool>,
    }

    impl Clock for TimerClock {
        type Deadline = ();
        type Left = ();

        fn deadline(&self, _linger: Duration) {}

        fn left(&self, (): ()) -> Option<()> {
            // Read under the state mutex (the caller holds it), written under it.
            (!self.fired.load(Ordering::Acquire)).then_some(())
        }

        fn wait_timeout<'a>(
            &self,
            cv: &Condvar,
            st: MutexGuard<'a, State>,
            (): (),
        ) -> MutexGuard<'a, State> {
            wait(cv, st)
        }
    }

    /// Starts the timer thread of a [`TimerClock`].
    fn timer(inner: &Arc<Inner>) -> (TimerClock, thread::JoinHandle<()>) {
        let fired = Arc::new(AtomicBool::new(false));
        let clock = TimerClock {
            fired: Arc::clone(&fired),
        };
        let inner = Arc::clone(inner);
        let t = thread::spawn(move || {
            let st = inner.lock();
            fired.store(true, Ordering::Release);
            drop(st);
            inner.work.notify_all();
        });
        (clock, t)
    }

    /// A linger longer than anything in the model (as with `linger(Duration::MAX)`): its
    /// deadline never passes, so only records, free space or close may end it.
    struct NeverClock;

    impl Clock for NeverClock {
        type Deadline = ();
        type Left = ();

        fn deadline(&self, _linger: Duration) {}

        fn left(&self, (): ()) -> Option<()> {
            Some(())
        }

        fn wait_timeout<'a>(
            &self,
            cv: &Condvar,
            st: MutexGuard<'a, State>,
            (): (),
        ) -> MutexGuard<'a, State> {
            wait(cv, st)
        }
    }

    /// A clock for models whose linger is off (never asked).
    struct NoClock;

    impl Clock for NoClock {
        type Deadline = ();
        type Left = ();

        fn deadline(&self, _linger: Duration) {
            unreachable!("linger is off in this model");
        }

        fn left(&self, (): ()) -> Option<()> {
            unreachable!("linger is off in this model");
        }

        fn wait_timeout<'a>(
            &self,
            _cv: &Condvar,
            _st: MutexGuard<'a, State>,
            (): (),
        ) -> MutexGuard<'a, State> {
            unreachable!("linger is off in this model");
        }
    }

    /// What the keep-awake thread has shown: the highest durable sequence number at which
    /// it polled with records in flight, and whether it has returned.
    struct Gate {
        seen: Mutex<(Option<u64>, bool)>,
        cv: Condvar,
    }

    impl Gate {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                seen: Mutex::new((None, false)),
                cv: Condvar::new(),
            })
        }

        /// Blocks until the keep-awake thread has polled while records after `durable`
        /// were in flight (or has returned). If it slept through the hand-over of a group
        /// with nobody to wake it, this never returns and loom reports the deadlock.
        fn wait_for_poll_at(&self, durable: u64) {
            let mut seen = self.seen.lock().unwrap();
            while !(seen.1 || seen.0 >= Some(durable)) {
                seen = self.cv.wait(seen).unwrap();
            }
        }
    }

    /// The model's [`Poll`]: yields instead of spinning, its grace period is over at once
    /// (the shortest poll, the one most likely to miss a hand-over), and it reports busy
    /// polls and its return to the gate.
    struct GatePoll {
        gate: Arc<Gate>,
        reported: Option<u64>,
    }

    impl Poll for GatePoll {
        fn enter(&mut self) -> bool {
            true
        }

        fn start(&mut self) {}

        fn spin(&mut self) {
            thread::yield_now();
        }

        fn busy(&mut self, durable: u64) {
            if self.reported != Some(durable) {
                self.reported = Some(durable);
                let mut seen = self.gate.seen.lock().unwrap();
                seen.0 = seen.0.max(Some(durable));
                drop(seen);
                self.gate.cv.notify_all();
            }
        }

        fn grace_over(&self) -> bool {
            true
        }
    }

    impl Drop for GatePoll {
        fn drop(&mut self) {
            self.gate.seen.lock().unwrap().1 = true;
            self.gate.cv.notify_all();
        }
    }

    /// Shared-journal options of a model: inbox of `max_pending_bytes`, linger on or off,
    /// keep-awake decided by whether a [`Poll`] is passed.
    fn options(max_pending_bytes: usize, linger: bool) -> SharedOptions {
        SharedOptions::new()
            .max_pending_bytes(max_pending_bytes)
            .linger(if linger {
                Duration::from_micros(100)
            } else {
                Duration::ZERO
            })
            .keep_awake(false)
    }

    fn inner(opts: SharedOptions) -> Arc<Inner> {
        Arc::new(Inner::new(1, 0, opts, 1024))
    }

    /// Runs `f` under loom, with the preemption bound from `LOOM_MAX_PREEMPTIONS` or
    /// `bound`, and prints how many interleavings it explored. One model at a time: run
    /// side by side, loom's per-iteration thread stacks made them 2-3x slower in all.
    fn check(bound: usize, f: impl Fn() + Sync + Send + 'static) {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _serial = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(bound);
        }
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&runs);
        let started = std::time::Instant::now();
        b.check(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f();
        });
        println!(
            "{}: {} interleavings (preemption bound {:?}) in {:.1?}",
            std::thread::current().name().unwrap_or("model"),
            runs.load(std::sync::atomic::Ordering::Relaxed),
            b.preemption_bound,
            started.elapsed()
        );
    }

    /// Spawns a writer thread calling `append_durable(payload)`.
    fn writer(
        h: &JournalHandle,
        payload: &'static [u8],
    ) -> thread::JoinHandle<Result<u64, JournalError>> {
        let h = h.clone();
        thread::spawn(move || h.append_durable(payload))
    }

    /// Every record acknowledged as durable is in the log at its sequence number.
    fn assert_committed(log: &Log, seq: u64, payload: &[u8]) {
        let log = log.lock().unwrap();
        let at = usize::try_from(seq - 1).unwrap();
        assert_eq!(
            log.get(at).map(Vec::as_slice),
            Some(payload),
            "record {seq} was acknowledged but not committed at its place"
        );
    }

    /// Two writers each `append_durable` one record through one journal thread: both get
    /// distinct sequence numbers, both records are committed once and in place, and the
    /// close gives the sink back.
    /// With `hold`, the first group is committed only once both records were handed out.
    fn two_writers(opts: SharedOptions, hold: bool) {
        let (mut sink, log) = MemSink::new(None, None);
        let inner = inner(opts);
        if hold {
            sink.hold = Some((Arc::clone(&inner), 2));
        }
        let mut threads = Threads::start(inner, sink, NoClock, None::<GatePoll>).unwrap();
        let h = threads.handle();
        let a = writer(&h, b"a");
        let b = writer(&h, b"b");
        let sa = a.join().unwrap().unwrap();
        let sb = b.join().unwrap().unwrap();
        assert_ne!(sa, sb);
        assert!(h.durable_seq() >= sa.max(sb));
        assert_committed(&log, sa, b"a");
        assert_committed(&log, sb, b"b");
        threads.stop().unwrap();
        assert_eq!(log.lock().unwrap().len(), 2);
    }

    /// Two writers, one journal thread, no deadlock in any interleaving.
    #[test]
    fn loom_two_writers_each_get_a_durable_distinct_seq() {
        check(3, || two_writers(options(64, false), false));
    }

    /// The inbox holds one record (4 + 1 bytes): the second writer waits for space, and
    /// its record is committed whenever it gets in (before, during or after the first
    /// commit); it wakes the journal thread if that waits by then.
    #[test]
    fn loom_a_writer_blocked_on_a_full_inbox_gets_its_record_committed() {
        check(3, || two_writers(options(5, false), false));
    }

    /// The inbox holds one record (4 + 1 bytes): the second writer waits for space and
    /// is woken when the journal thread swaps the inbox, so that its record is handed
    /// over while the first group is committed (the sink holds that commit until then).
    #[test]
    fn loom_a_writer_blocked_on_a_full_inbox_is_woken_by_the_swap() {
        check(3, || two_writers(options(5, false), true));
    }

    /// Starts a lingering journal thread whose first group has two records (appended
    /// before it starts), so that the next group lingers for two; with the timer thread.
    fn lingering() -> (Threads<MemSink>, JournalHandle, Log, thread::JoinHandle<()>) {
        let inner = inner(options(64, true));
        let h = JournalHandle {
            inner: Arc::clone(&inner),
        };
        assert_eq!(h.append(b"p").unwrap(), 1);
        assert_eq!(h.append(b"q").unwrap(), 2);
        let (clock, timer) = timer(&inner);
        let (sink, log) = MemSink::new(None, None);
        let threads = Threads::start(inner, sink, clock, None::<GatePoll>).unwrap();
        (threads, h, log, timer)
    }

    /// Linger after a group of two, one more record: it is committed when the linger's
    /// deadline passes (the timer fires before, during or after the linger), never left
    /// in the inbox with its writer asleep.
    #[test]
    fn loom_a_lingering_group_is_committed_at_the_deadline() {
        check(3, || {
            let (mut threads, h, log, timer) = lingering();
            let sa = writer(&h, b"a").join().unwrap().unwrap();
            assert_eq!(sa, 3);
            assert!(h.wait_durable(2).unwrap() >= 3);
            threads.stop().unwrap();
            timer.join().unwrap();
            assert_eq!(
                *log.lock().unwrap(),
                [&b"p"[..], b"q", b"a"].map(<[u8]>::to_vec)
            );
        });
    }

    /// Linger after a group of two, two writers: the second record wakes the lingering
    /// thread (`wake_at`), or the deadline passes; both are committed, nobody sleeps.
    #[test]
    fn loom_two_writers_fill_a_lingering_group() {
        check(2, || {
            let (mut threads, h, log, timer) = lingering();
            let a = writer(&h, b"a");
            let b = writer(&h, b"b");
            let sa = a.join().unwrap().unwrap();
            let sb = b.join().unwrap().unwrap();
            assert_committed(&log, sa, b"a");
            assert_committed(&log, sb, b"b");
            threads.stop().unwrap();
            timer.join().unwrap();
            assert_eq!(log.lock().unwrap().len(), 4);
        });
    }

    /// Linger for two records after a group of two, but the inbox (10 bytes) holds only
    /// one of the next records (6 bytes each): the writer that waits for space ends the
    /// linger instead of waiting for its deadline, here one that never passes.
    #[test]
    fn loom_a_writer_waiting_for_space_ends_the_linger() {
        check(3, || {
            let inner = inner(options(10, true));
            let h = JournalHandle {
                inner: Arc::clone(&inner),
            };
            assert_eq!(h.append(b"p").unwrap(), 1);
            assert_eq!(h.append(b"q").unwrap(), 2);
            let (sink, log) = MemSink::new(None, None);
            let mut threads = Threads::start(inner, sink, NeverClock, None::<GatePoll>).unwrap();
            let a = writer(&h, b"aa");
            let sb = h.append_durable(b"bb").unwrap();
            let sa = a.join().unwrap().unwrap();
            assert_committed(&log, sa, b"aa");
            assert_committed(&log, sb, b"bb");
            threads.stop().unwrap();
            assert_eq!(log.lock().unwrap().len(), 4);
        });
    }

    /// Close while a record fills the inbox (5 bytes) and a writer is appending, waiting
    /// for space or waiting for durability: the inbox is committed before the journal
    /// thread returns, and the writer either gets its record committed or is refused
    /// with "closed"; never a hang.
    #[test]
    fn loom_close_commits_the_inbox_or_refuses_the_record() {
        check(3, || {
            let (sink, log) = MemSink::new(None, None);
            let inner = inner(options(5, false));
            let mut threads = Threads::start(inner, sink, NoClock, None::<GatePoll>).unwrap();
            let h = threads.handle();
            assert_eq!(h.append(b"a").unwrap(), 1);
            let b = writer(&h, b"b");
            threads.stop().unwrap();
            assert_committed(&log, 1, b"a");
            match b.join().unwrap() {
                Ok(seq) => assert_committed(&log, seq, b"b"),
                Err(JournalError::Stopped { reason }) => {
                    assert!(reason.contains("closed"), "{reason}");
                    assert_eq!(log.lock().unwrap().len(), 1);
                }
                Err(e) => panic!("unexpected {e}"),
            }
            assert!(matches!(h.append(b"c"), Err(JournalError::Stopped { .. })));
        });
    }

    /// The sink fails its `failing`-th group while two writers wait: each writer gets its
    /// record committed or `Stopped` with the failure, later appends are refused with
    /// it, close reports it, and nobody hangs.
    fn failing_group(failing: u32) {
        check(3, move || {
            let (sink, log) = MemSink::new(Some(failing), None);
            let inner = inner(options(64, false));
            let mut threads = Threads::start(inner, sink, NoClock, None::<GatePoll>).unwrap();
            let h = threads.handle();
            let first = writer(&h, b"a");
            let second = writer(&h, b"b");
            let injected = |r: Result<u64, JournalError>| match r {
                Err(JournalError::Stopped { reason }) => {
                    assert!(reason.contains("injected failure"), "{reason}");
                }
                other => panic!("expected the injected failure, got {other:?}"),
            };
            for (w, payload) in [(first, b"a"), (second, b"b")] {
                match w.join().unwrap() {
                    Ok(seq) => assert_committed(&log, seq, payload),
                    other => injected(other),
                }
            }
            // Group k has failed by now, or this record's group is group k.
            injected(h.append_durable(b"c"));
            injected(h.append(b"d"));
            match threads.stop() {
                Err(JournalError::Stopped { reason }) => {
                    assert!(reason.contains("injected failure"), "{reason}");
                }
                Err(e) => panic!("expected the injected failure, got {e}"),
                Ok(_) => panic!("expected the injected failure, the close succeeded"),
            }
            assert!(log.lock().unwrap().len() < 2 + usize::try_from(failing).unwrap());
        });
    }

    #[test]
    fn loom_a_failed_first_group_releases_every_waiter() {
        failing_group(1);
    }

    #[test]
    fn loom_a_failed_second_group_releases_every_waiter() {
        failing_group(2);
    }

    /// Starts a journal thread with the keep-awake thread, whose sink commits a group
    /// only once the keep-awake thread has polled while it was in flight.
    fn keep_awake_threads(fail_at: Option<u32>) -> (Threads<MemSink>, Log) {
        let gate = Gate::new();
        let (sink, log) = MemSink::new(fail_at, Some(Arc::clone(&gate)));
        let poll = GatePoll {
            gate,
            reported: None,
        };
        let threads = Threads::start(inner(options(64, false)), sink, NoClock, Some(poll)).unwrap();
        (threads, log)
    }

    /// Two records one after the other: the keep-awake thread, parked or polling, is
    /// awake while each is in flight (the commit waits for it to poll), and returns on
    /// close.
    #[test]
    fn loom_keep_awake_polls_while_records_are_in_flight_and_exits_on_close() {
        check(3, || {
            let (mut threads, log) = keep_awake_threads(None);
            let h = threads.handle();
            assert_eq!(h.append_durable(b"a").unwrap(), 1);
            assert_eq!(h.append_durable(b"b").unwrap(), 2);
            threads.stop().unwrap();
            assert_eq!(log.lock().unwrap().len(), 2);
        });
    }

    /// Close while a record sits in the inbox and another writer hands one over, with the
    /// keep-awake thread: it polls while they are in flight or returns on close, the
    /// inbox is committed, and close joins both threads.
    #[test]
    fn loom_keep_awake_with_a_close_during_a_hand_over() {
        check(2, || {
            let (mut threads, log) = keep_awake_threads(None);
            let h = threads.handle();
            assert_eq!(h.append(b"a").unwrap(), 1);
            let b = writer(&h, b"b");
            threads.stop().unwrap();
            assert_committed(&log, 1, b"a");
            match b.join().unwrap() {
                Ok(seq) => assert_committed(&log, seq, b"b"),
                Err(JournalError::Stopped { reason }) => {
                    assert!(reason.contains("closed"), "{reason}");
                }
                Err(e) => panic!("unexpected {e}"),
            }
        });
    }

    /// The keep-awake thread returns when the journal thread fails.
    #[test]
    fn loom_keep_awake_exits_on_failure() {
        check(3, || {
            let (mut threads, _log) = keep_awake_threads(Some(1));
            let h = threads.handle();
            assert!(h.append_durable(b"a").is_err());
            // Joined before close, which would stop it anyway.
            threads.awake.take().unwrap().join().unwrap();
            assert!(threads.stop().is_err());
        });
    }
}
