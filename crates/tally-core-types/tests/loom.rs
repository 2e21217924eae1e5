//! Loom model checks of the ring's memory ordering. Run with
//! `RUSTFLAGS="--cfg tally_loom" cargo test -p tally-core-types --release --test loom`.
#![cfg(tally_loom)]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use loom::thread;
use tally_core_types::SpscRing;

/// Producer pushes 3 values through a 2-slot ring (so it must observe the consumer's
/// progress to wrap); the consumer sees them in order, each exactly once.
#[test]
fn single_push_pop_wraps_in_order() {
    loom::model(|| {
        let ring: &'static mut SpscRing<loom::sync::Arc<u32>, 2> =
            Box::leak(Box::new(SpscRing::new()));
        let (mut p, mut c) = ring.split();
        let t = thread::spawn(move || {
            for i in 0..3u32 {
                let mut v = loom::sync::Arc::new(i);
                loop {
                    match p.push(v) {
                        Ok(()) => break,
                        Err(back) => {
                            v = back;
                            thread::yield_now();
                        }
                    }
                }
            }
        });
        let mut next = 0;
        while next < 3 {
            if let Some(v) = c.pop() {
                assert_eq!(*v, next);
                next += 1;
            } else {
                thread::yield_now();
            }
        }
        t.join().unwrap();
        assert!(c.pop().is_none());
    });
}

/// Batch operations publish once per batch; a concurrent consumer never sees a slot
/// before its value is written.
#[test]
fn batch_push_pop() {
    loom::model(|| {
        let ring: &'static mut SpscRing<u32, 2> = Box::leak(Box::new(SpscRing::new()));
        let (mut p, mut c) = ring.split();
        let t = thread::spawn(move || {
            let mut sent = 0u32;
            while sent < 3 {
                let mut it = sent..3;
                sent += p.push_iter(&mut it) as u32;
                if sent < 3 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        let mut buf = [0u32; 2];
        while got.len() < 3 {
            let n = c.pop_slice(&mut buf);
            got.extend_from_slice(&buf[..n]);
            if n == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, [0, 1, 2]);
        t.join().unwrap();
    });
}
