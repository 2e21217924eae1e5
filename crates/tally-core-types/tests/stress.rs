//! Two-thread stress test: 50 million messages through the ring, order and checksum
//! checked, mixing single and batch operations on both sides.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
#![cfg(not(tally_loom))]

use tally_core_types::{BatchRing, SpscRing};

const MESSAGES: u64 = 50_000_000;

fn mix(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

#[test]
fn fifty_million_messages_in_order_with_checksum() {
    let mut ring = SpscRing::<u64, 1024>::new();
    let (mut tx, mut rx) = ring.split();
    let sent_sum = std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut sum = 0u64;
            let mut next = 0u64;
            let mut batch = [0u64; 64];
            while next < MESSAGES {
                if next.is_multiple_of(3) {
                    // Batch push of up to 64 values.
                    let n = (MESSAGES - next).min(64) as usize;
                    for (k, b) in batch[..n].iter_mut().enumerate() {
                        *b = next + k as u64;
                    }
                    let pushed = tx.push_slice(&batch[..n]);
                    for v in &batch[..pushed] {
                        sum = sum.wrapping_add(mix(*v));
                    }
                    next += pushed as u64;
                } else if tx.push(next).is_ok() {
                    sum = sum.wrapping_add(mix(next));
                    next += 1;
                }
                if tx.len() == tx.capacity() {
                    std::hint::spin_loop();
                }
            }
            sum
        });
        let mut expected = 0u64;
        let mut sum = 0u64;
        let mut buf = [0u64; 48];
        let mut round = 0u64;
        while expected < MESSAGES {
            round += 1;
            if round.is_multiple_of(2) {
                let n = rx.pop_slice(&mut buf);
                for v in &buf[..n] {
                    assert_eq!(*v, expected, "out of order");
                    sum = sum.wrapping_add(mix(*v));
                    expected += 1;
                }
            } else if let Some(v) = rx.pop() {
                assert_eq!(v, expected, "out of order");
                sum = sum.wrapping_add(mix(v));
                expected += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        assert_eq!(rx.pop(), None);
        assert_eq!(producer.join().unwrap(), sum, "checksum mismatch");
        sum
    });
    assert_ne!(sent_sum, 0);
}

/// [`BatchRing`]: 50 million messages, batches of varying length on both sides mixed
/// with single operations, order and checksum checked.
#[test]
fn batch_ring_fifty_million_messages_in_order_with_checksum() {
    let mut ring = BatchRing::<u64, 1024>::new();
    let (mut tx, mut rx) = ring.split();
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut sum = 0u64;
            let mut next = 0u64;
            let mut batch = [0u64; 256];
            let mut round = 0u64;
            while next < MESSAGES {
                round += 1;
                if round.is_multiple_of(7) {
                    if tx.push(next).is_ok() {
                        sum = sum.wrapping_add(mix(next));
                        next += 1;
                    }
                    continue;
                }
                // 1 to 256 values: batches start and end anywhere in the ring.
                let want = usize::try_from(mix(round) % 256 + 1).unwrap();
                let n = usize::try_from((MESSAGES - next).min(want as u64)).unwrap();
                for (k, b) in batch[..n].iter_mut().enumerate() {
                    *b = next + k as u64;
                }
                let pushed = tx.push_slice(&batch[..n]);
                for v in &batch[..pushed] {
                    sum = sum.wrapping_add(mix(*v));
                }
                next += pushed as u64;
                if pushed == 0 {
                    std::hint::spin_loop();
                }
            }
            sum
        });
        let mut expected = 0u64;
        let mut sum = 0u64;
        let mut buf = [0u64; 200];
        let mut round = 0u64;
        while expected < MESSAGES {
            round += 1;
            let got = if round.is_multiple_of(5) {
                rx.pop().map(|v| {
                    buf[0] = v;
                    1
                })
            } else {
                let want = usize::try_from(mix(round) % 200 + 1).unwrap();
                Some(rx.pop_slice(&mut buf[..want]))
            };
            let n = got.unwrap_or(0);
            for v in &buf[..n] {
                assert_eq!(*v, expected, "out of order");
                sum = sum.wrapping_add(mix(*v));
                expected += 1;
            }
            if n == 0 {
                std::hint::spin_loop();
            }
        }
        assert_eq!(rx.pop(), None);
        assert_eq!(producer.join().unwrap(), sum, "checksum mismatch");
    });
}

#[test]
fn static_ring_outlives_a_scope() {
    let ring: &'static mut SpscRing<String, 8> = SpscRing::leak();
    let (mut tx, mut rx) = ring.split();
    let handle = std::thread::spawn(move || {
        for i in 0..1000 {
            let mut v = format!("m{i}");
            while let Err(back) = tx.push(v) {
                v = back;
                std::thread::yield_now();
            }
        }
    });
    for i in 0..1000 {
        loop {
            if let Some(v) = rx.pop() {
                assert_eq!(v, format!("m{i}"));
                break;
            }
            std::thread::yield_now();
        }
    }
    handle.join().unwrap();
}

/// Items with a `Drop` cross threads through mixed single and batch operations; the
/// consumer stops early, and dropping the ring drops the rest: every item exactly once.
#[test]
fn items_with_drop_are_dropped_once_across_threads() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static MADE: AtomicUsize = AtomicUsize::new(0);
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Item(u64);
    impl Item {
        fn new(v: u64) -> Self {
            MADE.fetch_add(1, Ordering::Relaxed);
            Self(v)
        }
    }
    impl Drop for Item {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    const ITEMS: u64 = 200_000;
    for round in 0..4u64 {
        let mut ring = SpscRing::<Item, 64>::new();
        // Leave at most a ring's worth behind, so that the producer can finish.
        let stop_at = ITEMS - 1 - round * 17;
        let (mut tx, mut rx) = ring.split();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut next = 0u64;
                while next < ITEMS {
                    if next.is_multiple_of(5) {
                        let end = (next + 9).min(ITEMS);
                        let mut it = (next..end).map(Item::new);
                        // The iterator makes an item only when the ring has room.
                        next += tx.push_iter(&mut it) as u64;
                    } else if let Err(back) = tx.push(Item::new(next)) {
                        drop(back);
                        std::hint::spin_loop();
                    } else {
                        next += 1;
                    }
                }
            });
            let mut expected = 0u64;
            while expected < stop_at {
                if expected.is_multiple_of(3) {
                    let mut ok = true;
                    let max = usize::try_from(stop_at - expected).unwrap().min(7);
                    rx.pop_each(max, |v| {
                        ok &= v.0 == expected;
                        expected += 1;
                    });
                    assert!(ok, "out of order");
                } else if let Some(v) = rx.pop() {
                    assert_eq!(v.0, expected);
                    expected += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
            // Stop popping with items left: dropping the consumer hands its slots back,
            // so the producer, which may be waiting for room, can push the rest.
            drop(rx);
        });
        drop(ring);
        assert_eq!(
            DROPPED.load(Ordering::Relaxed),
            MADE.load(Ordering::Relaxed),
            "round {round}"
        );
    }
}
