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
#![deny(unsafe_code)]

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Journal, JournalError, JournalOptions};

/// Options of the shared front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedOptions {
    max_pending_bytes: usize,
    linger: Duration,
}

impl Default for SharedOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedOptions {
    /// 4 MiB inbox, 100 µs linger.
    pub const fn new() -> Self {
        Self {
            max_pending_bytes: 4 << 20,
            linger: Duration::from_micros(100),
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
}

struct State {
    inbox: Vec<u8>,
    inbox_records: u64,
    /// Sequence number the next handed-over record gets.
    next_seq: u64,
    durable: u64,
    failed: Option<String>,
    closed: bool,
    /// Writers blocked because the inbox is full.
    space_waiters: u32,
    /// The journal thread is waiting on `work` (so an append must wake it); while it
    /// writes and flushes a group, appends skip the wake-up system call.
    worker_waiting: bool,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when records arrive or on close.
    work: Condvar,
    /// Signalled when `durable` advances, inbox space frees, or on failure.
    done: Condvar,
    opts: SharedOptions,
    max_record: u32,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A journal on its own thread, shared by [`JournalHandle`]s.
pub struct SharedJournal {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<Result<Journal, JournalError>>>,
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

    /// Moves an open journal onto its own thread.
    ///
    /// # Errors
    /// [`JournalError::Stopped`] if the thread cannot be spawned.
    pub fn start(journal: Journal, shared: SharedOptions) -> Result<Self, JournalError> {
        let next = journal.next_seq();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                inbox: Vec::with_capacity(shared.max_pending_bytes),
                inbox_records: 0,
                next_seq: next,
                durable: journal.durable_seq(),
                failed: None,
                closed: false,
                space_waiters: 0,
                worker_waiting: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            opts: shared,
            max_record: journal.opts.max_record_bytes,
        });
        let worker = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("tally-journal".into())
            .spawn(move || run(journal, &worker))
            .map_err(|e| JournalError::Stopped {
                reason: format!("spawning the journal thread failed: {e}"),
            })?;
        Ok(Self {
            inner,
            thread: Some(thread),
        })
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
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| JournalError::Stopped {
                reason: "the journal thread panicked".into(),
            })?,
            None => Err(JournalError::Stopped {
                reason: "already closed".into(),
            }),
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
            st = self
                .inner
                .done
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st.inbox.extend_from_slice(&len.to_le_bytes());
        st.inbox.extend_from_slice(payload);
        st.inbox_records += 1;
        let seq = st.next_seq;
        st.next_seq += 1;
        let wake = st.worker_waiting;
        drop(st);
        if wake {
            self.inner.work.notify_one();
        }
        Ok(seq)
    }

    /// Waits until record `seq` is durable; returns the highest durable sequence number.
    ///
    /// # Errors
    /// [`JournalError::Stopped`] if the journal failed before `seq` became durable.
    pub fn wait_durable(&self, seq: u64) -> Result<u64, JournalError> {
        let mut st = self.inner.lock();
        loop {
            if st.durable >= seq {
                return Ok(st.durable);
            }
            if let Some(reason) = &st.failed {
                return Err(JournalError::Stopped {
                    reason: reason.clone(),
                });
            }
            if st.closed && st.inbox_records == 0 && st.durable < seq && st.next_seq <= seq {
                return Err(JournalError::Stopped {
                    reason: "the shared journal was closed".into(),
                });
            }
            st = self
                .inner
                .done
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        self.inner.lock().durable
    }
}

fn run(mut journal: Journal, inner: &Inner) -> Result<Journal, JournalError> {
    let mut local: Vec<u8> = Vec::with_capacity(inner.opts.max_pending_bytes);
    let mut last_group = 1u64;
    loop {
        {
            let mut st = inner.lock();
            while st.inbox_records == 0 && !st.closed {
                st.worker_waiting = true;
                st = inner
                    .work
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                st.worker_waiting = false;
            }
            if st.inbox_records == 0 && st.closed {
                return Ok(journal);
            }
            // Linger for a group as large as the last one, bounded in time.
            if !inner.opts.linger.is_zero() && st.inbox_records < last_group && !st.closed {
                let deadline = Instant::now() + inner.opts.linger;
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
        let mut st = inner.lock();
        match result {
            Ok(durable) => st.durable = durable,
            Err(e) => {
                st.failed = Some(e.to_string());
                drop(st);
                inner.done.notify_all();
                return Err(e);
            }
        }
        drop(st);
        inner.done.notify_all();
    }
}

fn append_all(journal: &mut Journal, mut buf: &[u8]) -> Result<(), JournalError> {
    while let Some((len, rest)) = buf.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let (payload, rest) = rest.split_at_checked(len).unwrap_or((rest, &[]));
        journal.append(payload)?;
        buf = rest;
    }
    Ok(())
}
