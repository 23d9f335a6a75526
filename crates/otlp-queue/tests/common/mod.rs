//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Records how many times each item id was dropped, so a test can check
/// that every item created was dropped exactly once (no leak, no double drop).
pub struct Ledger {
    drops: Vec<AtomicU8>,
}

impl Ledger {
    pub fn new(items: usize) -> Arc<Self> {
        Arc::new(Ledger {
            drops: (0..items).map(|_| AtomicU8::new(0)).collect(),
        })
    }

    pub fn item(self: &Arc<Self>, id: usize) -> Tracked {
        Tracked {
            id,
            ledger: self.clone(),
        }
    }

    pub fn drops_of(&self, id: usize) -> u8 {
        self.drops[id].load(Ordering::SeqCst)
    }

    /// Asserts that items `0..created` were each dropped exactly once and
    /// that no other id was dropped.
    pub fn assert_each_dropped_once(&self, created: usize) {
        for (id, d) in self.drops.iter().enumerate() {
            let d = d.load(Ordering::SeqCst);
            let want = u8::from(id < created);
            assert_eq!(d, want, "item {id} dropped {d} times, expected {want}");
        }
    }
}

/// An item that reports its own drop to a [`Ledger`].
pub struct Tracked {
    pub id: usize,
    ledger: Arc<Ledger>,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracked({})", self.id)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.ledger.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

/// Pushes `item` through `try_push`, yielding and retrying while the queue
/// is full (a lossless producer); panics if the queue is closed.
pub fn push_retrying<T>(
    mut item: T,
    mut try_push: impl FnMut(T) -> Result<(), otlp_queue::PushError<T>>,
) {
    loop {
        match try_push(item) {
            Ok(()) => return,
            Err(otlp_queue::PushError::Full(back)) => {
                item = back;
                std::thread::yield_now();
            }
            Err(otlp_queue::PushError::Closed(_)) => panic!("closed early"),
        }
    }
}

/// Checks per-producer FIFO over delivered ids of the form
/// `producer * per_producer + seq`: within each producer the sequence
/// numbers must increase.
pub fn assert_fifo_per_producer(delivered: &[usize], producers: usize, per_producer: usize) {
    let mut last = vec![None::<usize>; producers];
    for &id in delivered {
        let (p, seq) = (id / per_producer, id % per_producer);
        if let Some(prev) = last[p] {
            assert!(seq > prev, "producer {p}: {seq} came after {prev}");
        }
        last[p] = Some(seq);
    }
}
