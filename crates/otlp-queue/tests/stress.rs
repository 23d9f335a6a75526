//! Multi-threaded stress: every item is delivered exactly once or handed
//! back, per-producer order holds, and a counting `Drop` type proves that no
//! item leaks or is dropped twice, including when either side is dropped
//! while items are inside.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{Ledger, Tracked, assert_fifo_per_producer};
use otlp_queue::{PushError, PushTimeoutError, bounded};

const PRODUCERS: usize = 4;
/// Sized to finish in a few seconds in a debug build on 2 cores.
const PER_PRODUCER: usize = 50_000;

fn id(producer: usize, seq: usize) -> usize {
    producer * PER_PRODUCER + seq
}

#[test]
fn lossless_delivers_everything_in_order() {
    let ledger = Ledger::new(PRODUCERS * PER_PRODUCER);
    let (tx, mut rx) = bounded::<Tracked>(64);
    let start = Arc::new(Barrier::new(PRODUCERS));
    let workers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (tx, ledger, start) = (tx.clone(), ledger.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for seq in 0..PER_PRODUCER {
                    common::push_retrying(ledger.item(id(p, seq)), |i| tx.try_push(i));
                }
            })
        })
        .collect();
    drop(tx);
    let mut delivered = Vec::with_capacity(PRODUCERS * PER_PRODUCER);
    let mut batch = Vec::new();
    while !rx.is_closed() {
        batch.clear();
        if rx.pop_batch(&mut batch, 97) == 0 {
            thread::yield_now();
        }
        delivered.extend(batch.iter().map(|t| t.id));
    }
    drop(batch);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(delivered.len(), PRODUCERS * PER_PRODUCER);
    assert_fifo_per_producer(&delivered, PRODUCERS, PER_PRODUCER);
    let c = rx.counters();
    assert_eq!(c.pushed, (PRODUCERS * PER_PRODUCER) as u64);
    assert_eq!(c.popped, c.pushed);
    ledger.assert_each_dropped_once(PRODUCERS * PER_PRODUCER);
}

/// Producers mix every push flavour against a consumer that is sometimes
/// slow; every item ends up delivered, handed back full, handed back timed
/// out, or handed back evicted, and the counters agree.
#[test]
fn shedding_accounts_for_every_item() {
    let ledger = Ledger::new(PRODUCERS * PER_PRODUCER);
    let (tx, mut rx) = bounded::<Tracked>(16);
    let handed_back = Arc::new(AtomicU64::new(0));
    let (full, timed_out, evicted) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let workers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            let ledger = ledger.clone();
            let (handed_back, full, timed_out, evicted) = (
                handed_back.clone(),
                full.clone(),
                timed_out.clone(),
                evicted.clone(),
            );
            thread::spawn(move || {
                for seq in 0..PER_PRODUCER {
                    let item = ledger.item(id(p, seq));
                    // Each producer favours one flavour, with some of each.
                    match (seq + p) % 7 {
                        0..=2 => match tx.try_push(item) {
                            Ok(()) => {}
                            Err(PushError::Full(back)) => {
                                assert_eq!(back.id, id(p, seq));
                                full.fetch_add(1, Ordering::Relaxed);
                                handed_back.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(PushError::Closed(_)) => panic!("closed early"),
                        },
                        3..=4 => match tx.force_push(item) {
                            Ok(None) => {}
                            Ok(Some(old)) => {
                                assert_eq!(old.id / PER_PRODUCER, p, "evicted another lane's item");
                                assert!(old.id < id(p, seq));
                                evicted.fetch_add(1, Ordering::Relaxed);
                                handed_back.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => panic!("closed early"),
                        },
                        _ => match tx.push_timeout(item, Duration::from_micros(50)) {
                            Ok(()) => {}
                            Err(PushTimeoutError::Timeout(back)) => {
                                assert_eq!(back.id, id(p, seq));
                                timed_out.fetch_add(1, Ordering::Relaxed);
                                handed_back.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(PushTimeoutError::Closed(_)) => panic!("closed early"),
                        },
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let mut delivered = Vec::new();
    let mut batch = Vec::new();
    let mut round = 0u32;
    while !rx.is_closed() {
        round += 1;
        batch.clear();
        rx.pop_batch(&mut batch, 1 + (round as usize % 40));
        delivered.extend(batch.iter().map(|t| t.id));
        if round.is_multiple_of(64) {
            thread::sleep(Duration::from_micros(200)); // a slow consumer
        }
    }
    drop(batch);
    for w in workers {
        w.join().unwrap();
    }
    let total = (PRODUCERS * PER_PRODUCER) as u64;
    let back = handed_back.load(Ordering::Relaxed);
    assert_eq!(delivered.len() as u64 + back, total, "items unaccounted");
    assert!(back > 0, "the test never overloaded the queue");
    assert_fifo_per_producer(&delivered, PRODUCERS, PER_PRODUCER);
    let c = rx.counters();
    assert_eq!(c.popped, delivered.len() as u64);
    assert_eq!(
        c.rejected_full,
        full.load(Ordering::Relaxed) + timed_out.load(Ordering::Relaxed)
    );
    assert_eq!(c.evicted, evicted.load(Ordering::Relaxed));
    assert_eq!(c.pushed, c.popped + c.evicted);
    ledger.assert_each_dropped_once(PRODUCERS * PER_PRODUCER);
}

/// The consumer is dropped while producers are pushing and items are
/// inside: pushes start failing with `Closed`, and every item, whether
/// delivered, inside, or handed back, is dropped exactly once.
#[test]
fn consumer_dropped_mid_stream() {
    for round in 0..20 {
        let ledger = Ledger::new(PRODUCERS * PER_PRODUCER);
        let (tx, mut rx) = bounded::<Tracked>(32);
        let workers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (tx, ledger) = (tx.clone(), ledger.clone());
                thread::spawn(move || {
                    let mut created = 0;
                    for seq in 0..PER_PRODUCER {
                        created += 1;
                        match tx.force_push(ledger.item(id(p, seq))) {
                            Ok(_evicted_or_none) => {}
                            Err(closed) => {
                                // Handed back, then dropped here.
                                assert_eq!(closed.into_inner().id, id(p, seq));
                                break;
                            }
                        }
                    }
                    created
                })
            })
            .collect();
        drop(tx);
        // Take a little, then walk away with items inside.
        let mut taken = Vec::new();
        for _ in 0..(round * 3) {
            rx.pop_batch(&mut taken, 8);
        }
        drop(rx);
        drop(taken);
        let created: Vec<usize> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        for (p, &n) in created.iter().enumerate() {
            for seq in 0..n {
                assert_eq!(
                    ledger.drops_of(id(p, seq)),
                    1,
                    "round {round}: item {p}/{seq}"
                );
            }
            for seq in n..PER_PRODUCER {
                assert_eq!(ledger.drops_of(id(p, seq)), 0);
            }
        }
    }
}

/// Producers are dropped (one by one, at different times) with items
/// inside; the consumer still gets every item, in order, then `Closed`.
#[test]
fn producers_dropped_with_items_inside() {
    let ledger = Ledger::new(PRODUCERS * PER_PRODUCER);
    let (tx, mut rx) = bounded::<Tracked>(PER_PRODUCER);
    let workers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (tx, ledger) = (tx.clone(), ledger.clone());
            thread::spawn(move || {
                // Each lane is big enough for all of this producer's items,
                // so every push succeeds and the producer exits with its
                // whole lane possibly still full.
                for seq in 0..PER_PRODUCER {
                    assert!(tx.try_push(ledger.item(id(p, seq))).is_ok());
                }
            })
        })
        .collect();
    drop(tx);
    for w in workers {
        w.join().unwrap();
    }
    let mut delivered = Vec::new();
    loop {
        match rx.try_pop() {
            Ok(item) => delivered.push(item.id),
            Err(otlp_queue::TryPopError::Closed) => break,
            Err(otlp_queue::TryPopError::Empty) => {
                panic!("empty with producers gone and items left")
            }
        }
    }
    assert_eq!(delivered.len(), PRODUCERS * PER_PRODUCER);
    assert_fifo_per_producer(&delivered, PRODUCERS, PER_PRODUCER);
    ledger.assert_each_dropped_once(PRODUCERS * PER_PRODUCER);
}
