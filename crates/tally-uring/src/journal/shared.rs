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
//! While records are in flight, a keep-awake thread in the `SCHED_IDLE` class polls on
//! whatever CPU would otherwise go idle ([`SharedOptions::keep_awake`]). On a virtual
//! machine an idle vCPU halts, and waking it again (for the flush's completion, or for a
//! writer whose record became durable) can take longer than the flush itself; a vCPU
//! that runs the keep-awake thread does not halt, and any other thread that wakes there
//! preempts it at once.
#![deny(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Journal, JournalError, JournalOptions};

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

    /// Bytes of payload (plus 4 per record) the inbox holds before writers block.
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
fn spawn_worker(
    inner: &Arc<Inner>,
    body: impl FnOnce(&Inner) -> Result<Journal, JournalError> + Send + 'static,
) -> std::io::Result<JoinHandle<Result<Journal, JournalError>>> {
    let worker = Arc::clone(inner);
    std::thread::Builder::new()
        .name("tally-journal".into())
        .spawn(move || {
            let _guard = FailOnUnwind(&worker);
            body(&worker)
        })
}

/// A journal on its own thread, shared by [`JournalHandle`]s.
pub struct SharedJournal {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<Result<Journal, JournalError>>>,
    awake: Option<JoinHandle<()>>,
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
    /// As [`Journal::open`]; [`JournalError::Stopped`] if the thread cannot start.
    pub fn open(
        dir: &Path,
        options: JournalOptions,
        shared: SharedOptions,
    ) -> Result<Self, JournalError> {
        let journal = Journal::open(dir, options)?;
        Self::start(journal, shared)
    }

    /// Moves an open journal onto its own thread. Records appended to `journal` and not
    /// yet committed are committed first, so that every sequence number a handle can wait
    /// for is durable or on its way.
    ///
    /// # Errors
    /// [`JournalError::Stopped`] if the thread cannot be spawned; as [`Journal::commit`]
    /// if the records already appended cannot be made durable.
    pub fn start(mut journal: Journal, shared: SharedOptions) -> Result<Self, JournalError> {
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
        let awake = if shared.keep_awake {
            let poller = Arc::clone(&inner);
            Some(
                std::thread::Builder::new()
                    .name("tally-journal-awake".into())
                    .spawn(move || keep_awake(&poller))
                    .map_err(|e| JournalError::Stopped {
                        reason: format!("spawning the keep-awake thread failed: {e}"),
                    })?,
            )
        } else {
            None
        };
        let thread = spawn_worker(&inner, move |worker| run(journal, worker));
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

    /// A handle for appending.
    pub fn handle(&self) -> JournalHandle {
        JournalHandle {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Commits what is pending, stops the thread and gives the journal back.
    ///
    /// # Errors
    /// The error that stopped the journal thread, if any.
    pub fn close(mut self) -> Result<Journal, JournalError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<Journal, JournalError> {
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

impl Drop for SharedJournal {
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
    /// [`JournalError::RecordTooLarge`] for payloads over the inbox size or 4 GiB;
    /// [`JournalError::Stopped`] after a failure or close.
    pub fn append(&self, payload: &[u8]) -> Result<u64, JournalError> {
        let need = payload.len() + 4;
        let len = u32::try_from(payload.len()).map_err(|_| JournalError::RecordTooLarge {
            len: payload.len(),
            max: u32::MAX,
        })?;
        if len > self.inner.max_record {
            return Err(JournalError::RecordTooLarge {
                len: payload.len(),
                max: self.inner.max_record,
            });
        }
        if need > self.inner.opts.max_pending_bytes {
            return Err(JournalError::RecordTooLarge {
                len: payload.len(),
                max: u32::try_from(self.inner.opts.max_pending_bytes).unwrap_or(u32::MAX),
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

fn run(mut journal: Journal, inner: &Inner) -> Result<Journal, JournalError> {
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
                return Ok(journal);
            }
            // Linger for a group as large as the last one, bounded in time.
            if !inner.opts.linger.is_zero() && st.inbox_records < last_group && !st.closed {
                let deadline = Instant::now() + inner.opts.linger;
                st.wake_at = last_group;
                while st.inbox_records < last_group && !st.closed {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    st.worker_waiting = true;
                    st = inner
                        .work
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
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
        let result = append_all(&mut journal, &local).and_then(|()| journal.commit());
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

/// The keep-awake thread: in `SCHED_IDLE`, polls while records are handed over but not
/// yet durable (and for [`KEEP_AWAKE_GRACE`] after), sleeps otherwise; returns on close or
/// failure.
fn keep_awake(inner: &Inner) {
    if crate::sched::make_current_thread_idle().is_err() {
        return; // never poll at normal priority
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
        let mut last_busy = Instant::now();
        while !inner.stopped.load(Ordering::Acquire) {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            if in_flight() {
                last_busy = Instant::now();
            } else if last_busy.elapsed() >= KEEP_AWAKE_GRACE {
                break;
            }
        }
    }
}

/// How long the keep-awake thread goes on polling after the last record became durable.
const KEEP_AWAKE_GRACE: Duration = Duration::from_millis(1);

fn append_all(journal: &mut Journal, mut buf: &[u8]) -> Result<(), JournalError> {
    while let Some((len, rest)) = buf.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let (payload, rest) = rest.split_at_checked(len).unwrap_or((rest, &[]));
        journal.append(payload)?;
        buf = rest;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "test code"
    )]

    use std::sync::mpsc;

    use super::*;

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
            inner,
            thread: Some(thread),
            awake: None,
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
