//! Loom models of the queue: every interleaving (up to the preemption bound)
//! of small cases of push, pop, pop_batch, close and eviction.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p otlp-queue --test loom --release
//! ```
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use otlp_queue::{PushError, TryPopError, bounded};

/// Runs a model with the preemption bound CI uses unless the caller set one.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

/// Pushes with retry, yielding to loom while the lane is full.
fn push_lossless<T>(tx: &otlp_queue::Producer<T>, mut v: T) {
    loop {
        match tx.try_push(v) {
            Ok(()) => return,
            Err(PushError::Full(back)) => {
                v = back;
                thread::yield_now();
            }
            Err(PushError::Closed(_)) => panic!("closed while consumer alive"),
        }
    }
}

/// Pops until the queue is closed.
fn drain_until_closed<T>(rx: &mut otlp_queue::Consumer<T>) -> Vec<T> {
    let mut got = Vec::new();
    loop {
        match rx.try_pop() {
            Ok(v) => got.push(v),
            Err(TryPopError::Closed) => return got,
            Err(TryPopError::Empty) => thread::yield_now(),
        }
    }
}

#[test]
fn two_producers_then_close() {
    model(|| {
        let (tx, mut rx) = bounded::<u32>(2);
        let tx2 = tx.clone();
        let a = thread::spawn(move || {
            tx.try_push(1).unwrap();
            tx.try_push(2).unwrap();
        });
        let b = thread::spawn(move || {
            tx2.try_push(10).unwrap();
        });
        let got = drain_until_closed(&mut rx);
        a.join().unwrap();
        b.join().unwrap();
        let lane_a: Vec<_> = got.iter().copied().filter(|v| *v < 10).collect();
        assert_eq!(lane_a, [1, 2], "per-producer order");
        assert_eq!(got.len(), 3);
        assert!(got.contains(&10));
    });
}

#[test]
fn capacity_one_wraps_under_pop_batch() {
    model(|| {
        let (tx, mut rx) = bounded::<u32>(1);
        let p = thread::spawn(move || {
            for v in 0..3 {
                push_lossless(&tx, v);
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            if rx.pop_batch(&mut got, 2) == 0 {
                thread::yield_now();
            }
        }
        p.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(rx.try_pop(), Err(TryPopError::Closed));
    });
}

/// The slot freed by a pop is written again by the next lap's push: the
/// consumer's read must happen before that write.
#[test]
fn slot_reuse_after_a_pop() {
    model(|| {
        let (tx, mut rx) = bounded::<u32>(1);
        tx.try_push(1).unwrap();
        let c = thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 2 {
                if rx.pop_batch(&mut got, 1) == 0 {
                    thread::yield_now();
                }
            }
            got
        });
        push_lossless(&tx, 2);
        drop(tx);
        assert_eq!(c.join().unwrap(), [1, 2]);
    });
}

/// An eviction, then a plain push into the room it made, then pops.
#[test]
fn push_after_eviction_races_pops() {
    model(|| {
        let (tx, mut rx) = bounded::<u32>(1);
        tx.try_push(1).unwrap();
        let c = thread::spawn(move || drain_until_closed(&mut rx));
        let evicted = tx.force_push(2).unwrap();
        push_lossless(&tx, 3);
        drop(tx);
        let got = c.join().unwrap();
        let mut all = got.clone();
        all.extend(evicted);
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3], "delivered {got:?}, evicted {evicted:?}");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    });
}

#[test]
fn eviction_races_pop_batch() {
    model(|| {
        let (tx, mut rx) = bounded::<u32>(1);
        tx.try_push(1).unwrap();
        let p = thread::spawn(move || {
            // Either the consumer took 1 already (nothing to evict) or 1 is
            // evicted and handed back: never both, never neither.
            tx.force_push(2).unwrap()
        });
        let mut got = Vec::new();
        rx.pop_batch(&mut got, 2);
        let evicted = p.join().unwrap();
        got.extend(drain_until_closed(&mut rx));
        let mut all = got.clone();
        all.extend(evicted);
        all.sort_unstable();
        assert_eq!(all, [1, 2], "delivered {got:?}, evicted {evicted:?}");
        assert_eq!(got.last(), Some(&2), "the forced item is always delivered");
        let c = rx.counters();
        assert_eq!(c.evicted, u64::from(evicted.is_some()));
        assert_eq!(c.pushed, 2);
    });
}

#[test]
fn eviction_races_pop_of_a_longer_lane() {
    model(|| {
        let (tx, mut rx) = bounded::<u32>(2);
        tx.try_push(1).unwrap();
        tx.try_push(2).unwrap();
        let p = thread::spawn(move || tx.force_push(3).unwrap());
        let first = rx.pop();
        let evicted = p.join().unwrap();
        let mut got: Vec<u32> = first.into_iter().collect();
        got.extend(drain_until_closed(&mut rx));
        // Order within the lane survives eviction.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        let mut all = got.clone();
        all.extend(evicted);
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3]);
        if let Some(e) = evicted {
            assert_eq!(e, 1, "only the oldest is evicted");
        }
    });
}

/// An item that counts its drops.
struct Counted(usize, Arc<[AtomicUsize; 3]>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.1[self.0].fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn consumer_drop_races_pushes() {
    model(|| {
        let drops: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let (tx, mut rx) = bounded::<Counted>(2);
        let d = drops.clone();
        let p = thread::spawn(move || {
            for i in 0..2 {
                // Full cannot happen (capacity 2); Closed hands it back and
                // it is dropped right here.
                if let Err(e) = tx.try_push(Counted(i, d.clone())) {
                    assert!(e.is_closed());
                }
            }
        });
        // The consumer takes at most one item, then goes away.
        drop(rx.pop());
        drop(rx);
        p.join().unwrap();
        for i in 0..2 {
            assert_eq!(drops[i].load(Ordering::SeqCst), 1, "item {i}");
        }
    });
}

#[test]
fn producer_drop_races_consumer_with_items_inside() {
    model(|| {
        let drops: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let (tx, mut rx) = bounded::<Counted>(2);
        let tx2 = tx.clone();
        let d = drops.clone();
        let p = thread::spawn(move || {
            tx2.try_push(Counted(0, d.clone())).unwrap();
            tx2.try_push(Counted(1, d)).unwrap();
        });
        let q = thread::spawn(move || {
            let _ = rx.pop();
            rx // move the consumer back out with what is left inside
        });
        drop(tx);
        p.join().unwrap();
        let rx = q.join().unwrap();
        drop(rx);
        for i in 0..2 {
            assert_eq!(drops[i].load(Ordering::SeqCst), 1, "item {i}");
        }
    });
}

/// A producer takes its lane's items back while the consumer pops: every
/// item is taken exactly once (by one side or the other), in order on each
/// side, and the counters add up.
#[test]
fn take_back_races_pop_batch() {
    model(|| {
        let (tx, mut rx) = bounded::<u32>(2);
        tx.try_push(1).unwrap();
        tx.try_push(2).unwrap();
        let q = thread::spawn(move || {
            let mut got = Vec::new();
            rx.pop_batch(&mut got, 1);
            let _ = rx.pop_batch(&mut got, 2);
            (rx, got)
        });
        let mut back = Vec::new();
        tx.take_back(|v| back.push(v));
        // The producer may push again after taking back (its lane is empty
        // for it now) and nothing is lost.
        push_lossless(&tx, 3);
        let (mut rx, mut got) = q.join().unwrap();
        drop(tx);
        got.extend(drain_until_closed(&mut rx));
        let mut all: Vec<u32> = got.iter().chain(&back).copied().collect();
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3], "each item exactly once");
        let popped_old: Vec<u32> = got.iter().copied().filter(|v| *v < 3).collect();
        assert!(
            popped_old.iter().all(|v| back.iter().all(|b| v < b)),
            "the consumer took a prefix, the producer the rest: {got:?} {back:?}"
        );
        let c = rx.counters();
        assert_eq!(c.pushed, 3);
        assert_eq!(c.popped + c.taken_back, 3, "{c:?}");
    });
}

/// A producer that goes away with its lane drained frees the lane's ring
/// while the consumer may still be copying the last run out of it: the
/// free must not race that copy (it leaves the ring to the consumer then;
/// loom checks the ring accesses), and the items are each delivered once.
#[test]
fn producer_drop_frees_the_ring_after_the_last_copy() {
    model(|| {
        let drops: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let (tx, mut rx) = bounded::<Counted>(2);
        let tx2 = tx.clone();
        tx2.try_push(Counted(0, drops.clone())).unwrap();
        tx2.try_push(Counted(1, drops.clone())).unwrap();
        let q = thread::spawn(move || {
            let mut got = Vec::new();
            rx.pop_batch(&mut got, 2);
            (rx, got.len())
        });
        // Take back what the consumer has not claimed, then go away: the
        // drop frees the ring unless the consumer's copy is under way.
        let mut back = Vec::new();
        tx2.take_back(|v| back.push(v));
        let taken_back = back.len();
        drop(back);
        drop(tx2);
        let (rx, popped) = q.join().unwrap();
        assert_eq!(popped + taken_back, 2);
        drop(tx);
        drop(rx);
        for i in 0..2 {
            assert_eq!(drops[i].load(Ordering::SeqCst), 1, "item {i}");
        }
    });
}

/// A flush mark is passed exactly when every item present at the mark has
/// been taken, whatever is pushed after it.
#[test]
fn mark_is_passed_once_marked_items_are_taken() {
    model(|| {
        let (tx, mut rx) = bounded::<u32>(2);
        tx.try_push(1).unwrap();
        let mark = rx.mark();
        let p = thread::spawn(move || {
            push_lossless(&tx, 2);
        });
        assert!(!rx.passed(&mark));
        let mut got = Vec::new();
        while got.is_empty() {
            rx.pop_batch(&mut got, 1);
            thread::yield_now();
        }
        assert_eq!(got, [1]);
        assert!(rx.passed(&mark), "item 2 came after the mark");
        p.join().unwrap();
    });
}

// ---------------------------------------------------------------------
// `otlp_queue::pooled`: lanes whose chunks come from a shared pool.
// Chunks of one slot make every push after the first a chunk claim, and
// every pop a chunk return, so these small cases cover the pool's free
// stack, the home chunk's return and reuse, and the links between chunks.
// ---------------------------------------------------------------------

fn pooled_push_lossless<T>(tx: &otlp_queue::pooled::Producer<T>, mut v: T) {
    loop {
        match tx.try_push(v) {
            Ok(()) => return,
            Err(PushError::Full(back)) => {
                v = back;
                thread::yield_now();
            }
            Err(PushError::Closed(_)) => panic!("closed while consumer alive"),
        }
    }
}

fn pooled_drain_until_closed<T>(rx: &mut otlp_queue::pooled::Consumer<T>) -> Vec<T> {
    let mut got = Vec::new();
    loop {
        match rx.try_pop() {
            Ok(v) => got.push(v),
            Err(TryPopError::Closed) => return got,
            Err(TryPopError::Empty) => thread::yield_now(),
        }
    }
}

/// Two producers share a pool of one chunk (plus their home chunks) while
/// the consumer returns chunks and a producer starts its chunk over: every
/// item once, in per-producer order, and every chunk back in the pool at
/// the end. (Sized to the branch budget: three producer pushes in all.)
#[test]
fn pooled_two_producers_share_the_pool() {
    model(|| {
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(1, 1).unwrap();
        let tx2 = tx.clone();
        let a = thread::spawn(move || {
            for v in [1, 2] {
                pooled_push_lossless(&tx, v);
            }
        });
        let b = thread::spawn(move || {
            pooled_push_lossless(&tx2, 10);
        });
        let got = pooled_drain_until_closed(&mut rx);
        a.join().unwrap();
        b.join().unwrap();
        let lane_a: Vec<_> = got.iter().copied().filter(|v| *v < 10).collect();
        assert_eq!(lane_a, [1, 2], "per-producer order");
        assert_eq!(got.len(), 3);
        assert_eq!(rx.chunks_in_use(), 0, "every pool chunk returned");
        assert_eq!(rx.lane_count(), 0, "finished lanes retired");
    });
}

/// A producer's fallible in-place push refuses at the first slot of a pool
/// chunk it had to take (the chunk is unlinked and pushed back onto the
/// free stack) while the consumer pops and gives chunks back: the items
/// arrive once, in order, and every chunk is back in the pool.
#[test]
fn pooled_refused_push_gives_back_its_chunk_against_pops() {
    model(|| {
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(1, 1).unwrap();
        let a = thread::spawn(move || {
            pooled_push_lossless(&tx, 1);
            // The home chunk is full unless the consumer took item 1 (then
            // it is started over): either way, refused, and nothing shows.
            // SAFETY: the closure refuses.
            match unsafe { tx.try_push_in_place_or(|_| Err(())) } {
                Ok(Err(())) | Err(PushError::Full(())) => {}
                other => panic!("{other:?}"),
            }
            pooled_push_lossless(&tx, 2);
        });
        let got = pooled_drain_until_closed(&mut rx);
        a.join().unwrap();
        assert_eq!(got, [1, 2]);
        assert_eq!(rx.chunks_in_use(), 0, "every pool chunk returned");
        assert_eq!(rx.lane_count(), 0, "finished lanes retired");
    });
}

/// One producer pushes across its home chunk, a pool chunk and a start
/// over, against the consumer: in order, nothing lost, the pool refilled.
#[test]
fn pooled_one_producer_across_chunks() {
    model(|| {
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(1, 1).unwrap();
        let a = thread::spawn(move || {
            for v in [1, 2, 3] {
                pooled_push_lossless(&tx, v);
            }
        });
        let got = pooled_drain_until_closed(&mut rx);
        a.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(rx.chunks_in_use(), 0);
    });
}

/// A producer that fills its home chunk and a pool chunk, then goes away
/// while the consumer is popping: nothing lost, and the pool chunk comes
/// back once the lane is drained.
#[test]
fn pooled_producer_drop_races_pops() {
    model(|| {
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(2, 1).unwrap();
        let p = thread::spawn(move || {
            for v in 0..3 {
                pooled_push_lossless(&tx, v);
            }
            drop(tx);
        });
        let got = pooled_drain_until_closed(&mut rx);
        p.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(rx.chunks_in_use(), 0);
    });
}

/// A producer goes away after two pushes (across its home chunk and a
/// pool chunk) while the consumer takes only from lanes whose producer is
/// gone (`pop_exited_each`), as an exporter does during an outage, and a
/// live producer's item waits: the gone producer's items come out once,
/// in order, its lane is retired and its chunk back in the pool; the live
/// one's item is never taken by it.
#[test]
fn pooled_pop_exited_races_a_producer_leaving() {
    model(|| {
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(2, 1).unwrap();
        let gone = tx.try_clone().unwrap();
        tx.try_push(100).unwrap();
        let p = thread::spawn(move || {
            for v in [1, 2] {
                pooled_push_lossless(&gone, v);
            }
            drop(gone);
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            if rx.pop_exited_each(usize::MAX, |v| got.push(v)) == 0 {
                thread::yield_now();
            }
        }
        p.join().unwrap();
        assert_eq!(got, [1, 2], "the gone producer's items, once, in order");
        // The lane is retired at the look that finds it drained.
        assert_eq!(rx.pop_exited_each(usize::MAX, |v| got.push(v)), 0);
        assert_eq!(rx.lane_count(), 1, "only the live producer's lane is left");
        assert_eq!(rx.chunks_in_use(), 0, "the gone lane's pool chunk returned");
        assert_eq!(rx.try_pop(), Ok(100));
        drop(tx);
    });
}

/// The consumer goes away while a producer pushes across chunks: every
/// item is dropped exactly once (popped, dropped by the consumer's drop,
/// handed back as `Closed`, or dropped with the lane).
#[test]
fn pooled_consumer_drop_races_pushes() {
    model(|| {
        let drops: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        struct D(usize, Arc<[AtomicUsize; 3]>);
        impl Drop for D {
            fn drop(&mut self) {
                self.1[self.0].fetch_add(1, Ordering::SeqCst);
            }
        }
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<D>(1, 1).unwrap();
        let d = drops.clone();
        let p = thread::spawn(move || {
            for i in 0..3 {
                // Full or closed: the value comes back and is dropped here.
                let _ = tx.try_push(D(i, d.clone()));
            }
        });
        drop(rx.pop());
        drop(rx);
        p.join().unwrap();
        for i in 0..3 {
            assert_eq!(drops[i].load(Ordering::SeqCst), 1, "item {i}");
        }
    });
}

/// A mark is passed once the items present at the mark are taken.
#[test]
fn pooled_mark_is_passed_once_marked_items_are_taken() {
    model(|| {
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(1, 1).unwrap();
        tx.try_push(1).unwrap();
        let mark = rx.mark();
        let p = thread::spawn(move || {
            pooled_push_lossless(&tx, 2);
        });
        assert!(!rx.passed(&mark));
        let mut got = Vec::new();
        while got.is_empty() {
            rx.pop_batch(&mut got, 1);
            thread::yield_now();
        }
        assert_eq!(got, [1]);
        assert!(rx.passed(&mark), "item 2 came after the mark");
        p.join().unwrap();
    });
}

/// Items adopted from a gone producer's lane keep their slots: the pool
/// chunks they were in are held (not freed) until the consumer releases
/// them, while a live producer pushes; then every item comes out once, in
/// order, and every chunk goes back.
#[test]
fn pooled_adopted_items_hold_their_slots_until_released() {
    model(|| {
        // Two pool chunks of one slot; each lane has a home chunk of one.
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(2, 1).unwrap();
        let gone = tx.try_clone().unwrap();
        for v in [1, 2, 3] {
            gone.try_push(v).unwrap(); // home, then both pool chunks
        }
        let p = thread::spawn(move || drop(gone));
        let live = thread::spawn(move || {
            // The live producer's home chunk, then it waits for the pool.
            tx.try_push(100).unwrap();
            pooled_push_lossless(&tx, 101);
            drop(tx);
        });
        let mut adopted = Vec::new();
        while adopted.len() < 3 {
            if rx.adopt_exited_each(usize::MAX, |v| adopted.push(v)) == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(
            adopted,
            [1, 2, 3],
            "the gone producer's items, once, in order"
        );
        // Three adopted: the two pool chunks are held (the live producer
        // cannot have one), and one item (from the home chunk) is uncovered.
        assert_eq!(rx.adopted(), 3);
        p.join().unwrap();
        rx.adopt_exited_each(usize::MAX, drop); // retires the gone lane
        assert_eq!(rx.chunks_in_use(), 2, "both pool chunks held");
        let mut got = Vec::new();
        let mut released = false;
        while got.len() < 2 {
            if rx.pop_each(usize::MAX, |v| got.push(v)) == 0 {
                if !released {
                    rx.release(3);
                    released = true;
                }
                thread::yield_now();
            }
        }
        live.join().unwrap();
        assert_eq!(got, [100, 101]);
        // Both popped at the first look (the live producer restarted its
        // home chunk for 101): the adopted items are still held (found by
        // review, at 3 preemptions).
        if !released {
            rx.release(3);
        }
        assert_eq!(rx.adopted(), 0);
        assert_eq!(rx.try_pop(), Err(TryPopError::Closed));
        assert_eq!(rx.chunks_in_use(), 0, "every chunk back");
    });
}

fn pooled_refuse<T>(tx: &otlp_queue::pooled::Producer<T>) {
    // SAFETY: the closure refuses.
    match unsafe { tx.try_push_in_place_or(|_| Err(())) } {
        Ok(Err(())) | Err(PushError::Full(())) => {}
        other => panic!("{other:?}"),
    }
}

/// A push refused at the first slot of the pool chunk it had just taken
/// gives the chunk back while the consumer retires an adopted lane (its
/// home chunk goes, so the adopted item needs a pool chunk, and the
/// consumer may find the pool empty because the refused push has it): the
/// chunk ends up held for the adopted item, never free, whichever way the
/// refusal's give-back and the consumer's cover interleave.
#[test]
fn pooled_refused_push_against_adopt_holds_the_chunk() {
    model(|| {
        // One pool chunk of one slot; home chunks of one slot.
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(1, 1).unwrap();
        let gone = tx.try_clone().unwrap();
        gone.try_push(100).unwrap(); // its home chunk
        drop(gone);
        tx.try_push(1).unwrap(); // tx's home chunk: full
        let a = thread::spawn(move || {
            pooled_refuse(&tx); // takes the pool's chunk (unless held), gives it back
            tx
        });
        // The first call adopts the item (covered by the gone lane's home
        // chunk); the second retires the lane, and holds a pool chunk.
        let mut adopted = Vec::new();
        rx.adopt_exited_each(10, |v| adopted.push(v));
        rx.adopt_exited_each(10, |v| adopted.push(v));
        assert_eq!(adopted, [100]);
        assert_eq!(rx.lane_count(), 1, "the gone lane retired");
        let tx = a.join().unwrap();
        assert_eq!(rx.uncovered(), 0, "the pool's chunk is held, not free");
        assert_eq!(rx.chunks_in_use(), 1);
        assert_eq!(tx.try_push(2), Err(PushError::Full(2)));
        rx.release(1);
        assert_eq!(rx.chunks_in_use(), 0);
        tx.try_push(2).unwrap();
        drop(tx);
        assert_eq!(pooled_drain_until_closed(&mut rx), [1, 2]);
        assert_eq!(rx.chunks_in_use(), 0, "every chunk back");
    });
}

/// Refusals at chunk boundaries where the chunk taken may be the home
/// chunk (given back by the consumer at the same time), racing pops.
#[test]
fn pooled_refusals_taking_the_home_chunk_against_pops() {
    model(|| {
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(1, 1).unwrap();
        let a = thread::spawn(move || {
            pooled_push_lossless(&tx, 1); // home
            pooled_push_lossless(&tx, 2); // pool chunk (or home started over)
            pooled_refuse(&tx); // may take the home chunk back, refused
            pooled_push_lossless(&tx, 3);
        });
        let got = pooled_drain_until_closed(&mut rx);
        a.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(rx.chunks_in_use(), 0, "every pool chunk returned");
        assert_eq!(rx.lane_count(), 0);
    });
}

/// The consumer's drop races a producer's drop and a clone: whichever
/// comes first, no lane is left behind (the consumer's drop frees the lanes
/// of producers already gone, a producer dropped after it frees its own,
/// and a clone made after it gets none), and every item is dropped once.
#[test]
fn pooled_producer_drop_races_consumer_drop() {
    model(|| {
        let drops: Arc<[AtomicUsize; 2]> = Arc::new(Default::default());
        struct D(usize, Arc<[AtomicUsize; 2]>);
        impl Drop for D {
            fn drop(&mut self) {
                self.1[self.0].fetch_add(1, Ordering::SeqCst);
            }
        }
        let (tx, rx) = otlp_queue::pooled::try_with_chunk::<D>(1, 1).unwrap();
        let p = tx.clone();
        let d = drops.clone();
        let t = thread::spawn(move || {
            // Pushed, or handed back as closed and dropped here.
            let _ = p.try_push(D(0, d.clone()));
            let late = p.clone();
            drop(p);
            let _ = late.try_push(D(1, d));
        });
        drop(rx);
        t.join().unwrap();
        assert_eq!(tx.lane_count(), 1, "only the last handle's lane is left");
        drop(tx);
        for i in 0..2 {
            assert_eq!(drops[i].load(Ordering::SeqCst), 1, "item {i}");
        }
    });
}

/// A work item that carries a producer of its own queue (to queue
/// follow-up work): dropping it drops that producer, which takes the
/// registry's lock.
struct Job(#[allow(dead_code)] Option<otlp_queue::pooled::Producer<Job>>);

/// The consumer's drop frees a lane whose producer cloned after the drop's
/// last look, pushed and went: its items are dropped outside the registry's
/// lock (found by review: under it, a `Job`'s producer took the lock again,
/// a deadlock).
#[test]
fn pooled_consumer_drop_frees_a_late_lane_outside_the_lock() {
    loom::model(|| {
        let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<Job>(1, 1).unwrap();
        let _ = rx.pop(); // the consumer has looked at the lanes once
        let t = thread::spawn(move || {
            let p = tx.clone();
            // Queued, or handed back as closed and dropped here.
            let _ = p.try_push(Job(Some(tx.clone())));
            drop(p);
            drop(tx);
        });
        drop(rx);
        t.join().unwrap();
    });
}
