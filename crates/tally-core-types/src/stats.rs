//! Single-writer statistics counters.
//!
//! A [`Counter`] is bumped by exactly one thread, its owner, with a relaxed load and a
//! relaxed store: no atomic read-modify-write, so no `lock` prefix (the line still
//! moves to a reader's core when one reads it, and back on the owner's next bump). Any
//! thread may read it at any time and sees a recent value, never an older one than it
//! saw before (each counter individually: a snapshot of several counters is not atomic
//! across counters, so two counters bumped together may be read one bump apart).
//!
//! **Who may write.** The counters of a
//! [`single_writer_stats!`](crate::single_writer_stats) struct are private fields: only
//! the module that declares the struct (and its submodules) can bump them, every other
//! module and crate reads them through a getter per counter and `snapshot()`. So the
//! owner's code, typically methods that take `&mut self` of the type that holds the
//! stats, is the only writer, and a reader handed the stats (for example through an
//! `Arc`) cannot bump them (`compile_fail` example below). A standalone `Counter` is
//! `Sync` and [`Counter::add`] takes `&self`: two threads bumping one counter at once do
//! not cause undefined behaviour, but increments can be lost, so keep a standalone
//! counter where one thread writes it.
//!
//! ```compile_fail,E0616
//! mod owner {
//!     tally_core_types::single_writer_stats! {
//!         /// Receive statistics.
//!         pub struct RxStats => RxSnapshot {
//!             /// Packets received.
//!             packets,
//!         }
//!     }
//! }
//! let stats = owner::RxStats::new();
//! assert_eq!(stats.packets(), 0); // reading is fine
//! stats.packets.incr(); // error: the field is private to `owner`
//! ```
//!
//! [`single_writer_stats!`](crate::single_writer_stats) declares a stats struct of named
//! counters together with a plain `Copy` snapshot struct; the other Tally crates use it for
//! their ring, socket and journal statistics.

use crate::sync::{AtomicU64, Ordering};

/// A `u64` written by one thread and read by any: a count that only goes up (wrapping
/// past `u64::MAX`) through [`Counter::add`] and [`Counter::incr`], or a gauge that
/// [`Counter::set`] may also lower. A reader never sees an older value than one it saw
/// before, which for a gauge is not always a smaller one.
///
/// ```
/// use tally_core_types::Counter;
/// static RX: Counter = Counter::new();
/// RX.incr();
/// RX.add(2);
/// assert_eq!(RX.get(), 3);
/// ```
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    #[cfg(not(tally_loom))]
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// A counter at zero (not `const` under loom, whose atomics are not).
    #[cfg(tally_loom)]
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Adds `n` (wrapping). Call from the owning thread only.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one. Call from the owning thread only.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// Sets the value (for gauges such as "frames in flight"). Owning thread only.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value, from any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Declares a struct of single-writer [`Counter`]s and its `Copy` snapshot struct.
///
/// The stats struct gets `new()` (const), `snapshot()`; the snapshot gets `delta(&earlier)`
/// and `for_each(|name, value| ..)` for reports.
///
/// ```
/// tally_core_types::single_writer_stats! {
///     /// Receive statistics.
///     pub struct RxStats => RxSnapshot {
///         /// Packets received.
///         packets,
///         /// Packets dropped because they were malformed.
///         malformed,
///     }
/// }
/// let stats = RxStats::new();
/// stats.packets.add(3);
/// let before = stats.snapshot();
/// stats.packets.incr();
/// let d = stats.snapshot().delta(&before);
/// assert_eq!((d.packets, d.malformed), (1, 0));
/// let mut names = Vec::new();
/// d.for_each(|name, _| names.push(name));
/// assert_eq!(names, ["packets", "malformed"]);
/// ```
#[macro_export]
macro_rules! single_writer_stats {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident => $snap:ident {
            $( $(#[$fmeta:meta])* $field:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $( $(#[$fmeta])* $field: $crate::Counter, )*
        }

        #[doc = concat!("A point-in-time copy of [`", stringify!($name), "`].")]
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
        $vis struct $snap {
            $( $(#[$fmeta])* pub $field: u64, )*
        }

        #[allow(dead_code, reason = "generated API: not every user calls every method")]
        impl $name {
            $crate::__single_writer_stats_new!($($field),*);

            /// Reads every counter (each one individually; any thread).
            pub fn snapshot(&self) -> $snap {
                $snap { $( $field: self.$field.get(), )* }
            }

            $(
                $(#[$fmeta])*
                ///
                /// The counter's current value (any thread).
                pub fn $field(&self) -> u64 {
                    self.$field.get()
                }
            )*
        }

        #[allow(dead_code, reason = "generated API: not every user calls every method")]
        impl $snap {
            /// What was counted since `earlier` (wrapping).
            #[must_use]
            pub fn delta(&self, earlier: &Self) -> Self {
                Self { $( $field: self.$field.wrapping_sub(earlier.$field), )* }
            }

            /// Calls `f(name, value)` for each counter, in declaration order.
            pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
                $( f(stringify!($field), self.$field); )*
            }
        }
    };
}

// `new` of a `single_writer_stats!` struct, `const` unless this crate is built for loom.
// The choice is made here, where `tally_loom` is known: a `cfg` inside
// `single_writer_stats!` would be evaluated in the user's crate, which neither declares
// nor sets it (an `unexpected_cfgs` warning per use; `tests/macro_user.rs`).
#[cfg(not(tally_loom))]
#[doc(hidden)]
#[macro_export]
macro_rules! __single_writer_stats_new {
    ($($field:ident),*) => {
        /// Every counter at zero.
        pub const fn new() -> Self {
            Self { $( $field: $crate::Counter::new(), )* }
        }
    };
}

#[cfg(tally_loom)]
#[doc(hidden)]
#[macro_export]
macro_rules! __single_writer_stats_new {
    ($($field:ident),*) => {
        /// Every counter at zero (not `const` under loom, whose atomics are not).
        pub fn new() -> Self {
            Self { $( $field: $crate::Counter::new(), )* }
        }
    };
}

#[cfg(all(test, not(tally_loom)))]
mod tests {
    crate::single_writer_stats! {
        /// Test stats.
        pub struct S => Snap { /// a
            a, /// b
            b }
    }

    #[test]
    fn owner_writes_reader_reads() {
        let s = S::new();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..100_000 {
                    s.a.incr();
                }
                s.b.add(7);
            });
            let mut last = 0;
            for _ in 0..1000 {
                let now = s.snapshot().a;
                assert!(now >= last, "a counter read went backwards");
                last = now;
            }
        });
        assert_eq!(s.snapshot(), Snap { a: 100_000, b: 7 });
        s.a.set(5);
        let d = s.snapshot().delta(&Snap { a: 2, b: 7 });
        assert_eq!(d, Snap { a: 3, b: 0 });
        let mut seen = Vec::new();
        d.for_each(|name, v| seen.push((name, v)));
        assert_eq!(seen, [("a", 3), ("b", 0)]);
    }
}
