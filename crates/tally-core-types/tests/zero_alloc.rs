//! Proves that the hot paths allocate nothing: ring push/pop and batch operations (both
//! rings), frame
//! alloc/free and frame access, counters. A counting global allocator wraps `System`; each
//! check resets the count on this thread, runs the path many times and expects zero.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
#![cfg(not(tally_loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tally_core_types::{BatchRing, Counter, FramePool, FramePoolOptions, SpscRing};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to `System` unchanged; only counts calls on the current thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn counting_allocator_sees_allocations() {
    // The harness must be able to fail: a Vec allocates.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 16]))) > 0);
}

#[test]
fn ring_hot_paths_allocate_nothing() {
    let mut ring = SpscRing::<u64, 256>::new();
    let (mut p, mut c) = ring.split();
    let mut buf = [0u64; 32];
    let src = [7u64; 32];
    let n = allocations_during(|| {
        for i in 0..100_000u64 {
            p.push(i).unwrap();
            assert_eq!(c.pop(), Some(i));
            assert_eq!(p.push_slice(&src), 32);
            assert_eq!(c.pop_slice(&mut buf), 32);
            let mut it = 0..16u64;
            assert_eq!(p.push_iter(&mut it), 16);
            assert_eq!(c.pop_each(16, |v| assert!(v < 16)), 16);
            assert_eq!(p.push(1).and_then(|()| p.push(2)), Ok(()));
            assert_eq!(c.pop_each(usize::MAX, drop), 2);
            p.push(3).unwrap();
            assert_eq!(c.pop(), Some(3));
            c.release();
        }
        // Full ring hands the value back without allocating.
        while p.push(0).is_ok() {}
        assert_eq!(p.push(5), Err(5));
    });
    assert_eq!(n, 0, "ring hot paths allocated {n} times");
}

#[test]
fn batch_ring_hot_paths_allocate_nothing() {
    let mut ring = BatchRing::<u64, 256>::new();
    let (mut p, mut c) = ring.split();
    let mut buf = [0u64; 100];
    let src = [7u64; 100];
    let n = allocations_during(|| {
        for i in 0..100_000u64 {
            p.push(i).unwrap();
            assert_eq!(c.pop(), Some(i));
            // 100 items: every few rounds a slice runs across the wrap.
            assert_eq!(p.push_slice(&src), 100);
            assert_eq!(c.pop_slice(&mut buf), 100);
            let mut it = 0..16u64;
            assert_eq!(p.push_iter(&mut it), 16);
            assert_eq!(c.pop_each(16, |v| assert!(v < 16)), 16);
            assert_eq!(c.available(), 0);
            assert_eq!(p.free_slots(), 256);
        }
        // Full ring hands the value back without allocating.
        while p.push(0).is_ok() {}
        assert_eq!(p.push(5), Err(5));
        assert_eq!(p.push_slice(&src), 0);
    });
    assert_eq!(n, 0, "batch ring hot paths allocated {n} times");
}

#[test]
fn frame_pool_and_counters_allocate_nothing() {
    let mut pool = FramePool::new(FramePoolOptions::new(2048, 512)).unwrap();
    let counter = Counter::new();
    let n = allocations_during(|| {
        for round in 0..1000u32 {
            let a = pool.alloc().unwrap();
            let b = pool.alloc().unwrap();
            let byte = round.to_le_bytes()[0];
            pool.frame_mut(a).unwrap()[0] = byte;
            assert_eq!(pool.frame(a).unwrap()[0], byte);
            let off = pool.offset_of(b);
            assert_eq!(pool.id_at_offset(off + 64).unwrap(), b);
            pool.free(a).unwrap();
            pool.free(b).unwrap();
            assert!(pool.free(b).is_err());
            counter.incr();
        }
        while pool.alloc().is_ok() {}
        assert!(pool.alloc().is_err());
    });
    assert_eq!(n, 0, "frame pool / counters allocated {n} times");
    assert_eq!(counter.get(), 1000);
}
