//! `otlp_queue::pooled`: stress with counting (every item delivered or
//! handed back exactly once, per-producer order, every chunk back in the
//! pool) and the bound on what the queue holds, whatever the number of
//! producers. Cases that could hang run under a watchdog.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{Ledger, Tracked, assert_fifo_per_producer};
use otlp_queue::pooled::{try_bounded_total, try_with_chunk};
use otlp_queue::{PushError, PushTimeoutError};

const WATCHDOG: Duration = Duration::from_secs(60);
const PRODUCERS: usize = 8;
/// Sized to finish in a few seconds in a debug build on 2 cores.
const PER_PRODUCER: usize = 20_000;

fn id(producer: usize, seq: usize) -> usize {
    producer * PER_PRODUCER + seq
}

/// Lossless producers through a small pool of small chunks: everything
/// arrives once and in order, every chunk goes back, every lane retires.
#[test]
fn lossless_delivers_everything_in_order_and_returns_every_chunk() {
    test_watchdog::isolate(WATCHDOG, || {
        let ledger = Ledger::new(PRODUCERS * PER_PRODUCER);
        let (tx, mut rx) = try_with_chunk::<Tracked>(64, 4).unwrap();
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
        // One more look retires the last drained lanes.
        assert_eq!(rx.pop().map(|t| t.id), None);
        assert_eq!(delivered.len(), PRODUCERS * PER_PRODUCER);
        assert_fifo_per_producer(&delivered, PRODUCERS, PER_PRODUCER);
        let c = rx.counters();
        assert_eq!(c.pushed, (PRODUCERS * PER_PRODUCER) as u64);
        assert_eq!(c.popped, c.pushed);
        assert_eq!(rx.chunks_in_use(), 0, "every pool chunk returned");
        assert_eq!(rx.lane_count(), 0, "every lane retired");
        ledger.assert_each_dropped_once(PRODUCERS * PER_PRODUCER);
    });
}

/// Shedding producers (`try_push` once, `push_timeout`) against a slow
/// consumer: every item is delivered or handed back, and the counters
/// agree with what the producers saw.
#[test]
fn shedding_accounts_for_every_item() {
    test_watchdog::isolate(WATCHDOG, || {
        let ledger = Ledger::new(PRODUCERS * PER_PRODUCER);
        let (tx, mut rx) = try_with_chunk::<Tracked>(32, 4).unwrap();
        let handed_back = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (tx, ledger, handed_back) = (tx.clone(), ledger.clone(), handed_back.clone());
                thread::spawn(move || {
                    for seq in 0..PER_PRODUCER {
                        let item = ledger.item(id(p, seq));
                        if seq.is_multiple_of(5) {
                            match tx.push_timeout(item, Duration::from_micros(20)) {
                                Ok(()) => {}
                                Err(PushTimeoutError::Timeout(back)) => {
                                    assert_eq!(back.id, id(p, seq));
                                    handed_back.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(PushTimeoutError::Closed(_)) => panic!("closed early"),
                            }
                        } else {
                            match tx.try_push(item) {
                                Ok(()) => {}
                                Err(PushError::Full(back)) => {
                                    assert_eq!(back.id, id(p, seq));
                                    handed_back.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(PushError::Closed(_)) => panic!("closed early"),
                            }
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
            batch.clear();
            rx.pop_batch(&mut batch, 7);
            delivered.extend(batch.iter().map(|t| t.id));
            round += 1;
            if round.is_multiple_of(3) {
                thread::yield_now();
            }
        }
        drop(batch);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(rx.pop().map(|t| t.id), None);
        let back = handed_back.load(Ordering::Relaxed);
        assert_eq!(
            delivered.len() as u64 + back,
            (PRODUCERS * PER_PRODUCER) as u64
        );
        assert_fifo_per_producer(&delivered, PRODUCERS, PER_PRODUCER);
        let c = rx.counters();
        assert_eq!(c.pushed, delivered.len() as u64);
        assert_eq!(c.rejected_full, back);
        assert_eq!(rx.chunks_in_use(), 0);
        ledger.assert_each_dropped_once(PRODUCERS * PER_PRODUCER);
    });
}

/// With nobody popping, producers can hold exactly the pool plus one home
/// chunk each, whatever their number: the bound is the total, not
/// `producers x total`.
#[test]
fn holds_the_total_plus_one_chunk_per_producer() {
    for producers in [1usize, 4, 64] {
        let (total, chunk) = (100usize, 8usize);
        let (tx, rx) = try_with_chunk::<u64>(total, chunk).unwrap();
        let handles: Vec<_> = (0..producers).map(|_| tx.clone()).collect();
        drop(tx);
        let mut accepted = 0usize;
        // Round robin until every producer is refused: the pool is shared.
        let mut refused = vec![false; producers];
        while refused.iter().any(|r| !r) {
            for (p, h) in handles.iter().enumerate() {
                if !refused[p] {
                    match h.try_push(1) {
                        Ok(()) => accepted += 1,
                        Err(PushError::Full(_)) => refused[p] = true,
                        Err(PushError::Closed(_)) => panic!("closed"),
                    }
                }
            }
        }
        assert_eq!(accepted, total + chunk * producers, "{producers} producers");
        assert_eq!(rx.chunks_in_use(), total.div_ceil(chunk));
        drop(rx);
    }
}

/// One busy producer may use the whole pool (one thread is not limited to
/// a share of it).
#[test]
fn one_producer_can_use_the_whole_pool() {
    let (tx, _rx) = try_with_chunk::<u32>(1000, 16).unwrap();
    let idle: Vec<_> = (0..10).map(|_| tx.clone()).collect();
    let mut n = 0;
    while tx.try_push(n).is_ok() {
        n += 1;
    }
    assert_eq!(n, 1000 + 16);
    drop(idle);
}

/// Threads that come and go (each records a little and exits) while the
/// consumer drains: nothing lost, and the memory of exited threads (their
/// lanes and chunks) comes back.
#[test]
fn many_short_lived_producers_return_their_memory() {
    test_watchdog::isolate(WATCHDOG, || {
        const THREADS: usize = 256;
        const EACH: usize = 100;
        let (tx, mut rx) = try_bounded_total::<u64>(512).unwrap();
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..EACH {
                        let mut v = (t * EACH + i) as u64;
                        while let Err(e) = tx.try_push(v) {
                            v = e.into_inner();
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut got = Vec::new();
        while !rx.is_closed() {
            if rx.pop_batch(&mut got, 256) == 0 {
                thread::yield_now();
            }
        }
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(rx.pop(), None);
        got.sort_unstable();
        assert_eq!(got, (0..(THREADS * EACH) as u64).collect::<Vec<_>>());
        assert_eq!(rx.chunks_in_use(), 0);
        assert_eq!(rx.lane_count(), 0);
    });
}

/// Dropping the consumer while producers push, and producers with items
/// inside: every item is dropped exactly once.
#[test]
fn either_side_dropped_with_items_inside() {
    test_watchdog::isolate(WATCHDOG, || {
        let ledger = Ledger::new(PRODUCERS * PER_PRODUCER);
        let (tx, mut rx) = try_with_chunk::<Tracked>(256, 8).unwrap();
        let workers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (tx, ledger) = (tx.clone(), ledger.clone());
                thread::spawn(move || {
                    for seq in 0..PER_PRODUCER {
                        // Full or closed: the value comes back and is dropped.
                        let _ = tx.try_push(ledger.item(id(p, seq)));
                    }
                })
            })
            .collect();
        drop(tx);
        let mut batch = Vec::new();
        for _ in 0..50 {
            rx.pop_batch(&mut batch, 10);
            thread::yield_now();
        }
        drop(batch);
        drop(rx);
        for w in workers {
            w.join().unwrap();
        }
        ledger.assert_each_dropped_once(PRODUCERS * PER_PRODUCER);
    });
}

/// A mark covers what was queued when it was taken.
#[test]
fn mark_covers_what_was_queued() {
    let (tx, mut rx) = try_with_chunk::<u32>(8, 2).unwrap();
    for i in 0..5 {
        tx.try_push(i).unwrap();
    }
    let mark = rx.mark();
    tx.try_push(5).unwrap();
    let mut out = Vec::new();
    rx.pop_batch(&mut out, 4);
    assert!(!rx.passed(&mark));
    rx.pop_batch(&mut out, 1);
    assert!(rx.passed(&mark));
    assert_eq!(out, [0, 1, 2, 3, 4]);
    assert_eq!(tx.lane_len(), 1);
}

/// `try_push_in_place` from several producers, with a panicking `init`
/// among the pushes: what the closures wrote arrives exactly once and in
/// order per producer, the panics publish nothing (the slot is reused, no
/// partial value is ever read or dropped), and a full queue never runs
/// `init`.
#[test]
fn in_place_pushes_count_every_item_and_a_panicking_init_publishes_nothing() {
    test_watchdog::isolate(WATCHDOG, || {
        const N: usize = 5_000;
        let ledger = Ledger::new(PRODUCERS * N);
        let (tx, mut rx) = try_with_chunk::<Tracked>(64, 4).unwrap();
        let inits = Arc::new(AtomicU64::new(0));
        let start = Arc::new(Barrier::new(PRODUCERS));
        let workers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (tx, ledger, start, inits) =
                    (tx.clone(), ledger.clone(), start.clone(), inits.clone());
                thread::spawn(move || {
                    start.wait();
                    let mut seq = 0;
                    while seq < N {
                        if seq % 97 == 0 {
                            // A panic before the slot is written.
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                // SAFETY: the closure never returns normally.
                                unsafe { tx.try_push_in_place(|_| panic!("init fails")) }
                            }));
                            assert!(
                                matches!(r, Err(_) | Ok(Err(PushError::Full(())))),
                                "a panicking init published: {r:?}"
                            );
                        }
                        let the_id = p * N + seq;
                        // SAFETY: the closure writes the slot.
                        let pushed = unsafe {
                            tx.try_push_in_place(|slot| {
                                inits.fetch_add(1, Ordering::Relaxed);
                                slot.write(ledger.item(the_id));
                            })
                        };
                        match pushed {
                            Ok(()) => seq += 1,
                            Err(PushError::Full(())) => thread::yield_now(),
                            Err(PushError::Closed(())) => panic!("closed early"),
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut delivered = Vec::with_capacity(PRODUCERS * N);
        let mut out = Vec::new();
        while delivered.len() < PRODUCERS * N {
            out.clear();
            if rx.pop_batch(&mut out, 256) == 0 {
                thread::yield_now();
            }
            delivered.extend(out.drain(..).map(|t| t.id));
        }
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(rx.pop_batch(&mut out, 1), 0, "nothing more");
        // `init` ran once per item delivered: never for a full queue.
        assert_eq!(inits.load(Ordering::Relaxed), (PRODUCERS * N) as u64);
        assert_fifo_per_producer(&delivered, PRODUCERS, N);
        ledger.assert_each_dropped_once(PRODUCERS * N);
    });
}

/// `try_push_in_place_or` from several producers, with an `init` that
/// writes part of the slot and then refuses every few pushes (at every
/// position of a chunk, its first slots included): the refusals publish
/// nothing, the accepted items arrive exactly once and in order per
/// producer, and every chunk a refused push had just taken goes back (the
/// pool is whole once the lanes retire).
#[test]
fn fallible_in_place_pushes_publish_nothing_on_refusal_and_return_the_chunk() {
    test_watchdog::isolate(WATCHDOG, || {
        const N: usize = 5_000;
        let ledger = Ledger::new(PRODUCERS * N);
        let (tx, mut rx) = try_with_chunk::<Tracked>(64, 4).unwrap();
        let refused = Arc::new(AtomicU64::new(0));
        let start = Arc::new(Barrier::new(PRODUCERS));
        let workers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (tx, ledger, start, refused) =
                    (tx.clone(), ledger.clone(), start.clone(), refused.clone());
                thread::spawn(move || {
                    start.wait();
                    let mut seq = 0;
                    let mut attempt = 0usize;
                    while seq < N {
                        attempt += 1;
                        let the_id = p * N + seq;
                        // SAFETY: the closure writes the slot, or refuses
                        // (having scribbled over it).
                        let pushed = unsafe {
                            tx.try_push_in_place_or(|slot| {
                                if attempt.is_multiple_of(3) {
                                    slot.cast::<u8>().write_bytes(0xA5, 8);
                                    return Err(the_id);
                                }
                                slot.write(ledger.item(the_id));
                                Ok(())
                            })
                        };
                        match pushed {
                            Ok(Ok(())) => seq += 1,
                            Ok(Err(id)) => {
                                assert_eq!(id, the_id);
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(PushError::Full(())) => thread::yield_now(),
                            Err(PushError::Closed(())) => panic!("closed early"),
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut delivered = Vec::with_capacity(PRODUCERS * N);
        let mut out = Vec::new();
        while delivered.len() < PRODUCERS * N {
            out.clear();
            if rx.pop_batch(&mut out, 256) == 0 {
                thread::yield_now();
            }
            delivered.extend(out.drain(..).map(|t| t.id));
        }
        for w in workers {
            w.join().unwrap();
        }
        assert!(rx.is_closed());
        assert_eq!(rx.pop_batch(&mut out, 1), 0, "nothing more");
        assert!(refused.load(Ordering::Relaxed) > 0);
        assert_fifo_per_producer(&delivered, PRODUCERS, N);
        ledger.assert_each_dropped_once(PRODUCERS * N);
        assert_eq!(rx.chunks_in_use(), 0, "every chunk back in the pool");
        assert_eq!(rx.lane_count(), 0, "every lane retired");
    });
}

/// A refused push at the first slot of a chunk it had to take (a pool
/// chunk, or the lane's home chunk) gives that chunk straight back: the
/// producer takes it again on its next push, and the pool is not short of
/// it even if the producer goes away without another push. (Pool of two
/// one-slot chunks, home chunk of one slot: every push past the first is
/// at a chunk boundary.)
#[test]
fn a_refused_push_at_a_chunk_boundary_gives_the_chunk_back() {
    let (tx, mut rx) = try_with_chunk::<u64>(2, 1).unwrap();
    let push = |v: u64| {
        // SAFETY: the closure writes the slot.
        unsafe {
            tx.try_push_in_place_or(|slot| {
                slot.write(v);
                Ok::<_, ()>(())
            })
        }
    };
    // SAFETY: the closure refuses.
    let refuse = || unsafe { tx.try_push_in_place_or(|_| Err(())) };
    let mut out = Vec::new();
    assert_eq!(push(0), Ok(Ok(()))); // the home chunk
    // Home full: a pool chunk is taken, refused, given back.
    assert_eq!(refuse(), Ok(Err(())));
    assert_eq!(rx.chunks_in_use(), 0, "the pool chunk went back");
    assert_eq!(push(1), Ok(Ok(()))); // pool chunk A after all
    assert_eq!(rx.chunks_in_use(), 1);
    rx.pop_batch(&mut out, 10); // 0, 1: the home chunk back to the lane
    assert_eq!(push(2), Ok(Ok(()))); // A, started over
    // A full, the home chunk free: taken, refused, given back.
    assert_eq!(refuse(), Ok(Err(())));
    assert_eq!(push(3), Ok(Ok(()))); // the home chunk after all
    assert_eq!(push(4), Ok(Ok(()))); // pool chunk B
    assert_eq!(rx.chunks_in_use(), 2);
    // No room: `init` does not run.
    // SAFETY: never called.
    let full = unsafe { tx.try_push_in_place_or(|_| -> Result<(), ()> { unreachable!() }) };
    assert_eq!(full, Err(PushError::Full(())));
    rx.pop_batch(&mut out, 10); // 2, 3, 4: A back to the pool, home to the lane
    assert_eq!(rx.chunks_in_use(), 1);
    assert_eq!(push(5), Ok(Ok(()))); // B, started over
    assert_eq!(push(6), Ok(Ok(()))); // the home chunk
    // Home full, B not read: pool chunk A is taken, refused, given back;
    // then the producer goes away.
    assert_eq!(refuse(), Ok(Err(())));
    assert_eq!(rx.chunks_in_use(), 1);
    drop(tx);
    rx.pop_batch(&mut out, 10);
    assert_eq!(out, [0, 1, 2, 3, 4, 5, 6]);
    // The next look retires the drained lane.
    assert_eq!(rx.pop_batch(&mut out, 10), 0);
    assert!(rx.is_closed());
    assert_eq!(rx.lane_count(), 0);
    assert_eq!(rx.chunks_in_use(), 0, "nothing kept for the refusal");
}

/// `pop_each_mut` lends items where they lie and drops each there exactly
/// once, in order per producer, from 8 producers at once; a sink that
/// panics still has its item dropped, counted as taken, and never lent
/// again, and the items after it stay queued for the next call.
#[test]
fn popping_in_place_drops_every_item_once_even_when_the_sink_panics() {
    test_watchdog::isolate(WATCHDOG, || {
        const N: usize = 5_000;
        let ledger = Ledger::new(PRODUCERS * N);
        let (tx, mut rx) = try_with_chunk::<Tracked>(64, 4).unwrap();
        let start = Arc::new(Barrier::new(PRODUCERS));
        let workers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (tx, ledger, start) = (tx.clone(), ledger.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    for seq in 0..N {
                        common::push_retrying(ledger.item(p * N + seq), |v| tx.try_push(v));
                    }
                })
            })
            .collect();
        drop(tx);
        let mut lent = Vec::with_capacity(PRODUCERS * N);
        let (mut calls, mut panics) = (0u64, 0u64);
        while lent.len() < PRODUCERS * N {
            calls += 1;
            let before = lent.len();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rx.pop_each_mut(256, |t| {
                    lent.push(t.id);
                    // Every 7th call panics at its third item.
                    if calls % 7 == 0 && lent.len() == before + 3 {
                        panic!("sink fails");
                    }
                })
            }));
            match r {
                Ok(n) => {
                    assert_eq!(n, lent.len() - before, "the count is what was lent");
                    if n == 0 {
                        thread::yield_now();
                    }
                }
                Err(_) => {
                    panics += 1;
                    assert_eq!(lent.len(), before + 3, "stopped at the panic");
                    let last = *lent.last().unwrap();
                    assert_eq!(ledger.drops_of(last), 1, "the panicking item is dropped");
                }
            }
        }
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(rx.pop_each_mut(1, |_| panic!("nothing more")), 0);
        assert!(panics > 0, "the sink panicked at least once");
        assert_fifo_per_producer(&lent, PRODUCERS, N);
        ledger.assert_each_dropped_once(PRODUCERS * N);
    });
}

/// Pushes `tx` until the queue is full for it (at most `max`); how many
/// went in.
fn fill(tx: &otlp_queue::pooled::Producer<u32>, max: u32) -> u32 {
    let mut n = 0;
    while n < max {
        match tx.try_push(n) {
            Ok(()) => n += 1,
            Err(PushError::Full(_)) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    n
}

/// A sink that panics in the middle of an adoption: only the items handed
/// to it (the one it panicked on included) are owed, the rest stay in the
/// lane and are owed once, when adopted later; releasing everything
/// handed to the sinks gives the whole pool back.
#[test]
fn adopt_owes_only_what_the_sink_was_handed_when_it_panics() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    // Pool of 4 one-slot chunks; every lane has a one-slot home chunk.
    let (tx, mut rx) = try_with_chunk::<u32>(4, 1).unwrap();
    let gone = tx.try_clone().unwrap();
    for v in 0..5 {
        gone.try_push(v).unwrap(); // the home chunk, then the 4 pool chunks
    }
    drop(gone);
    let mut handed = 0;
    let mut got = Vec::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        rx.adopt_exited_each(10, |v| {
            handed += 1; // counted before anything that may panic
            assert_ne!(v, 1, "the sink fails on item 1");
            got.push(v);
        })
    }));
    assert!(r.is_err());
    assert_eq!(handed, 2);
    assert_eq!(rx.adopted(), 2, "items 0 and 1 were taken, no more");
    // Item 0 was in the home chunk (given back: no pool chunk was free to
    // hold for it), item 1 is covered by its own chunk, still the lane's.
    assert_eq!(rx.uncovered(), 1);
    assert_eq!(
        rx.adopt_exited_each(10, |v| {
            handed += 1;
            got.push(v);
        }),
        3
    );
    assert_eq!(got, [0, 2, 3, 4], "each once, in order");
    assert_eq!(rx.adopted(), 5);
    rx.release(handed);
    assert_eq!(rx.adopted(), 0);
    rx.adopt_exited_each(10, drop); // retires the drained lane
    assert_eq!(rx.lane_count(), 1);
    assert_eq!(rx.chunks_in_use(), 0, "every chunk back");
    assert_eq!(fill(&tx, 10), 5, "the home chunk and the whole pool");
}

/// As above, with the panic in an item's `Drop` inside the sink.
#[test]
fn adopt_owes_only_what_the_sink_was_handed_when_a_drop_panics() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    struct Bomb(u32);
    impl Drop for Bomb {
        fn drop(&mut self) {
            if self.0 == 1 && !thread::panicking() {
                panic!("the drop of item 1 panics");
            }
        }
    }
    let (tx, mut rx) = try_with_chunk::<Bomb>(4, 1).unwrap();
    let gone = tx.try_clone().unwrap();
    for v in 0..5 {
        assert!(gone.try_push(Bomb(v)).is_ok());
    }
    drop(gone);
    let mut handed = 0;
    let r = catch_unwind(AssertUnwindSafe(|| {
        rx.adopt_exited_each(10, |b| {
            handed += 1;
            drop(b)
        })
    }));
    assert!(r.is_err());
    assert_eq!((handed, rx.adopted()), (2, 2));
    let n = rx.adopt_exited_each(10, |b| {
        handed += 1;
        drop(b)
    });
    assert_eq!((n, handed, rx.adopted()), (3, 5, 5));
    rx.release(handed);
    rx.adopt_exited_each(10, drop);
    assert_eq!(rx.adopted(), 0);
    assert_eq!(rx.uncovered(), 0);
    assert_eq!(rx.chunks_in_use(), 0);
    drop(tx);
}

/// A push refused at the first slot of a pool chunk it had just taken
/// gives the chunk back the way the consumer does: held, not freed, while
/// adopted items are short of cover.
#[test]
fn a_refused_push_holds_its_chunk_while_adopted_items_are_uncovered() {
    // Pool of 2 one-slot chunks; home chunks of one slot.
    let (a, mut rx) = try_with_chunk::<u32>(2, 1).unwrap();
    let gone = a.try_clone().unwrap();
    gone.try_push(900).unwrap(); // gone's home chunk
    drop(gone);
    a.try_push(0).unwrap(); // a's home chunk
    a.try_push(1).unwrap(); // pool chunk P0
    let mut adopted = Vec::new();
    // SAFETY: the closure refuses, and pushes through no producer.
    let r = unsafe {
        a.try_push_in_place_or(|_slot| {
            // `a` holds P1 now (taken for this push): the pool is empty
            // when the gone lane is adopted and then retired (its home
            // chunk freed), so the adopted item is short of cover.
            rx.adopt_exited_each(10, |v| adopted.push(v));
            rx.adopt_exited_each(10, |v| adopted.push(v));
            assert_eq!(rx.lane_count(), 1, "the gone lane retired");
            assert_eq!(rx.uncovered(), 1);
            Err(())
        })
    };
    assert_eq!(r, Ok(Err(())));
    assert_eq!(adopted, [900]);
    assert_eq!(rx.uncovered(), 0, "P1 is held for it");
    assert_eq!(rx.chunks_in_use(), 2);
    let b = a.try_clone().unwrap();
    assert_eq!(fill(&b, 10), 1, "b's home chunk only: P1 is held");
    rx.release(1);
    assert_eq!(fill(&b, 10), 1, "P1, free again");
}

/// An adoption that stops inside a gone lane's chunk (`max` reached) does
/// not hold a free chunk for the items taken from it: their own chunk,
/// still the lane's, covers them until it is given back (then it is held
/// for them). Had they stayed in the lane, a live producer could fill its
/// home chunk and the free pool chunk: so it can after the adoption.
#[test]
fn an_adoption_stopping_inside_a_chunk_holds_no_free_chunk_for_it() {
    for max in [1, 3, 4] {
        // Pool: 2 chunks of 4 (P, Q). Home chunks of 4.
        let (a, mut rx) = try_with_chunk::<u32>(8, 4).unwrap();
        let g = a.try_clone().unwrap();
        assert_eq!(fill(&g, 8), 8); // g's home chunk, then P
        let mut out = Vec::new();
        assert_eq!(rx.pop_batch(&mut out, 4), 4); // g's home chunk
        drop(g);
        let mut adopted = Vec::new();
        assert_eq!(rx.adopt_exited_each(max, |v| adopted.push(v)), max);
        assert_eq!(rx.adopted(), max);
        assert_eq!(rx.uncovered(), 0);
        assert_eq!(rx.chunks_in_use(), 1, "max {max}: P only, Q free");
        assert_eq!(fill(&a, 100), 8, "max {max}: a's home chunk and Q");
        // The rest, then the look that retires the lane: P is held.
        rx.adopt_exited_each(10, |v| adopted.push(v));
        rx.adopt_exited_each(10, |v| adopted.push(v));
        assert_eq!(adopted, (4..8).collect::<Vec<_>>());
        assert_eq!(rx.lane_count(), 1, "the gone lane retired");
        assert_eq!(rx.adopted(), 4);
        assert_eq!(rx.uncovered(), 0);
        assert_eq!(rx.chunks_in_use(), 2, "max {max}: P held, Q a's");
        rx.release(4);
        assert_eq!(rx.chunks_in_use(), 1, "P free again");
        rx.pop_batch(&mut out, 100);
        assert_eq!(rx.chunks_in_use(), 1, "Q, a's current chunk");
        assert_eq!(fill(&a, 100), 12, "Q started over, a's home chunk and P");
    }
}

/// The same with the adoption stopping inside the lane's home chunk: its
/// own slots cover the items until the lane is retired; then a free chunk
/// is held for them.
#[test]
fn an_adoption_stopping_inside_the_home_chunk_holds_no_free_chunk_for_it() {
    let (a, mut rx) = try_with_chunk::<u32>(8, 4).unwrap();
    let g = a.try_clone().unwrap();
    assert_eq!(fill(&g, 4), 4); // g's home chunk
    drop(g);
    assert_eq!(rx.adopt_exited_each(2, drop), 2);
    assert_eq!(
        (rx.adopted(), rx.uncovered(), rx.chunks_in_use()),
        (2, 0, 0)
    );
    // The rest; the sweep goes on to the live lane (empty), so the drained
    // lane is retired in this call: its home chunk goes.
    assert_eq!(rx.adopt_exited_each(10, drop), 2);
    assert_eq!(rx.lane_count(), 1);
    assert_eq!(
        (rx.adopted(), rx.uncovered(), rx.chunks_in_use()),
        (4, 0, 1)
    );
    assert_eq!(fill(&a, 100), 8, "a's home chunk and one pool chunk");
    rx.release(4);
    assert_eq!(rx.chunks_in_use(), 1, "a's");
}

/// Releasing more than was adopted is the caller's error: a debug build
/// says so.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "adopted items are not yet released")]
fn releasing_more_than_was_adopted_is_caught_in_debug_builds() {
    let (tx, mut rx) = try_with_chunk::<u32>(4, 1).unwrap();
    let gone = tx.try_clone().unwrap();
    gone.try_push(1).unwrap();
    drop(gone);
    assert_eq!(rx.adopt_exited_each(10, drop), 1);
    rx.release(2);
}

/// Once the consumer is gone nobody retires lanes, so each producer frees
/// its own when it is dropped, and producers made after that get none:
/// threads that come and go after an exporter's shutdown left a lane and
/// a home chunk each behind, for good (+85 MB after 10 000 of them). Also
/// when producers go away while the consumer's drop runs.
#[test]
fn lanes_are_freed_by_their_producers_once_the_consumer_is_gone() {
    test_watchdog::isolate(WATCHDOG, || {
        let (tx, rx) = try_with_chunk::<Tracked>(64, 4).unwrap();
        let ledger = Ledger::new(3);
        let early = tx.clone();
        early.try_push(ledger.item(0)).unwrap();
        let gone = tx.clone();
        gone.try_push(ledger.item(1)).unwrap();
        drop(gone); // its lane is the consumer's to retire
        assert_eq!(tx.lane_count(), 3);
        drop(rx);
        assert_eq!(
            tx.lane_count(),
            2,
            "the consumer's drop freed the gone lane"
        );
        drop(early);
        assert_eq!(tx.lane_count(), 1, "a producer's drop frees its lane");
        for _ in 0..1_000 {
            let p = tx.try_clone().unwrap();
            let q = p.clone();
            match q.try_push(ledger.item(2)) {
                Err(PushError::Closed(item)) => drop(item),
                _ => panic!("a push after the consumer's drop was not refused as closed"),
            }
            assert_eq!(
                tx.lane_count(),
                1,
                "a producer made after the consumer has no lane"
            );
            drop((p, q));
        }
        drop(tx);
        assert_eq!((ledger.drops_of(0), ledger.drops_of(1)), (1, 1));

        // Producers dropped while the consumer's drop runs: every lane but
        // the last handle's is freed, and every item dropped once.
        for _ in 0..50 {
            const EACH: usize = 100;
            let ledger = Ledger::new(PRODUCERS * (EACH + 1));
            let (tx, mut rx) = try_with_chunk::<Tracked>(64, 4).unwrap();
            let start = Arc::new(Barrier::new(PRODUCERS + 1));
            let workers: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let (tx, ledger, start) = (tx.clone(), ledger.clone(), start.clone());
                    thread::spawn(move || {
                        let id = |seq| p * (EACH + 1) + seq;
                        start.wait();
                        for seq in 0..EACH {
                            let _ = tx.try_push(ledger.item(id(seq)));
                        }
                        let late = tx.clone();
                        drop(tx);
                        let _ = late.try_push(ledger.item(id(EACH)));
                    })
                })
                .collect();
            start.wait();
            drop(rx.pop());
            drop(rx);
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(tx.lane_count(), 1, "only the last handle's lane is left");
            drop(tx);
            ledger.assert_each_dropped_once(PRODUCERS * (EACH + 1));
        }
    });
}

/// `pop_each_mut` whose sink panics on an item whose `Drop` panics too:
/// the item is dropped during the unwind with its panic caught, so the
/// sink's panic reaches the caller (the process aborted: a panic while
/// panicking), the item counts as taken and the next stays queued.
#[test]
fn popping_in_place_survives_a_drop_that_panics_during_the_sinks_panic() {
    use std::sync::atomic::AtomicUsize;
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Bad(u32);
    impl Drop for Bad {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            if self.0 == 1 {
                panic!("the drop of item 1 panics");
            }
        }
    }
    test_watchdog::isolate(WATCHDOG, || {
        let (tx, mut rx) = try_with_chunk::<Bad>(8, 4).unwrap();
        for i in 1..=2 {
            assert!(tx.try_push(Bad(i)).is_ok());
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rx.pop_each_mut(10, |_| panic!("the sink panics"))
        }));
        let payload = r.expect_err("the sink's panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"the sink panics"));
        assert_eq!(DROPS.load(Ordering::SeqCst), 1, "item 1 dropped once");
        assert_eq!(rx.counters().popped, 1);
        let mut next = Vec::new();
        assert_eq!(rx.pop_each_mut(10, |v| next.push(v.0)), 1);
        assert_eq!(next, [2]);
        assert_eq!(DROPS.load(Ordering::SeqCst), 2);
    });
}
