//! Atomics and cells used by the ring and the counters, swapped for loom's under `--cfg tally_loom` so
//! that the loom model checker can explore every interleaving (the shim pattern used by
//! crossbeam).

#[cfg(tally_loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(tally_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(tally_loom))]
pub(crate) use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// `core::cell::UnsafeCell` with loom's closure-based access API.
#[cfg(not(tally_loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(tally_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
