//! [`CachePadded`]: a value alone on its own cache line(s).
//!
//! 128-byte alignment on x86_64 and aarch64, because their spatial prefetchers pull
//! cache lines in pairs (the same choice and reasoning as crossbeam-utils'
//! `CachePadded`); 64 bytes elsewhere.

use core::fmt;
use core::ops::{Deref, DerefMut};

/// Pads and aligns `T` so that nothing else shares its cache line pair, which prevents
/// false sharing between a value written by one core and a neighbour written by another.
///
/// ```
/// use tally_core_types::CachePadded;
/// use std::sync::atomic::AtomicUsize;
///
/// let head = CachePadded::new(AtomicUsize::new(0));
/// assert_eq!(core::mem::align_of_val(&head) % 64, 0);
/// ```
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    repr(align(64))
)]
#[derive(Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CachePadded<T> {
    value: T,
}

/// The alignment of [`CachePadded`] on this target, in bytes.
pub const CACHE_PAD_BYTES: usize = core::mem::align_of::<CachePadded<u8>>();

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const _: () = assert!(CACHE_PAD_BYTES == 128);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const _: () = assert!(CACHE_PAD_BYTES == 64);
const _: () = assert!(core::mem::size_of::<CachePadded<u64>>() == CACHE_PAD_BYTES);
const _: () = assert!(core::mem::size_of::<[CachePadded<u8>; 2]>() == 2 * CACHE_PAD_BYTES);

impl<T> CachePadded<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self { value }
    }

    /// Returns the inner value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for CachePadded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachePadded")
            .field("value", &self.value)
            .finish()
    }
}

impl<T> From<T> for CachePadded<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_do_not_share_a_line() {
        let pair = [CachePadded::new(1u8), CachePadded::new(2u8)];
        let a = core::ptr::from_ref(&pair[0]) as usize;
        let b = core::ptr::from_ref(&pair[1]) as usize;
        assert_eq!(b - a, CACHE_PAD_BYTES);
        assert_eq!(a % CACHE_PAD_BYTES, 0);
        assert_eq!(*pair[1], 2);
    }
}
