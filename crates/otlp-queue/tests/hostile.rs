//! Hostile but legitimate use of the queue: capacities no machine can hold,
//! producers that take their items back while the consumer pops, and many
//! short-lived producers. Each case that could abort or hang runs in its own
//! process under a watchdog.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use otlp_queue::{CapacityError, MAX_CAPACITY, try_bounded};

const WATCHDOG: Duration = Duration::from_secs(60);

/// The cases: `try_bounded::<u8>(MAX_CAPACITY)` used to abort on the
/// allocation and `::<u64>` to panic on the size computation. Both are
/// errors now, and the process lives on.
#[test]
fn capacities_no_machine_holds_are_errors_not_aborts() {
    test_watchdog::isolate(WATCHDOG, || {
        // 4 EiB of u8: representable, not allocatable. (AddressSanitizer
        // aborts on a failed allocation instead of reporting it, unless told
        // `allocator_may_return_null=1`: skip this one there.)
        if allocation_failures_are_reported() {
            match try_bounded::<u8>(MAX_CAPACITY) {
                Err(CapacityError::OutOfMemory { requested, bytes }) => {
                    assert_eq!(requested, MAX_CAPACITY);
                    assert_eq!(bytes, MAX_CAPACITY);
                }
                other => panic!("expected OutOfMemory, got {:?}", other.map(|_| ())),
            }
        }
        // 32 EiB of u64: more than one allocation may be.
        match try_bounded::<u64>(MAX_CAPACITY) {
            Err(CapacityError::TooLarge { requested, max }) => {
                assert_eq!(requested, MAX_CAPACITY);
                assert!(max < MAX_CAPACITY && max.is_power_of_two(), "{max}");
                // The advertised maximum is itself representable (the check
                // is on the ring, rounded up to a power of two).
                assert!(matches!(
                    try_bounded::<u64>(max + 1),
                    Err(CapacityError::TooLarge { .. })
                ));
            }
            other => panic!("expected TooLarge, got {:?}", other.map(|_| ())),
        }
        // Large items: the product overflows `usize` before any allocation.
        assert!(matches!(
            try_bounded::<[u8; 4096]>(1 << 60),
            Err(CapacityError::TooLarge { .. })
        ));
        // A capacity that rounds up past the limit.
        assert!(matches!(
            try_bounded::<[u8; 256]>((1 << 55) + 1),
            Err(CapacityError::TooLarge { .. })
        ));
        // Zero-sized items never need memory for their slots.
        let (tx, mut rx) = try_bounded::<()>(1 << 20).expect("ZST lanes are free");
        tx.try_push(()).unwrap();
        assert_eq!(rx.pop(), Some(()));
        // And the queue still works after all those refusals.
        let (tx, mut rx) = try_bounded::<u64>(4).unwrap();
        tx.try_push(7).unwrap();
        assert_eq!(rx.pop(), Some(7));
        assert!(
            CapacityError::OutOfMemory {
                requested: 1,
                bytes: 2
            }
            .to_string()
            .contains("cannot allocate")
        );
    });
}

/// `try_clone` reports the same errors instead of aborting; a lane that can
/// be allocated still can.
#[test]
fn try_clone_gives_a_lane_of_its_own() {
    let (tx, mut rx) = try_bounded::<u32>(2).unwrap();
    let tx2 = tx.try_clone().unwrap();
    tx.try_push(1).unwrap();
    tx.try_push(2).unwrap();
    tx2.try_push(3).unwrap(); // its own lane: not full
    let mut got = Vec::new();
    rx.pop_batch(&mut got, 10);
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3]);
}

/// False under AddressSanitizer without `allocator_may_return_null=1`,
/// where an allocation that fails ends the process instead of returning an
/// error to `try_reserve`.
fn allocation_failures_are_reported() -> bool {
    match std::env::var("ASAN_OPTIONS") {
        Ok(options) => options.contains("allocator_may_return_null=1"),
        Err(_) => true,
    }
}

/// An item that counts its drops, to catch an item taken twice or lost.
struct Counted {
    producer: usize,
    seq: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops[self.producer * PER + self.seq].fetch_add(1, Ordering::SeqCst);
    }
}

const PRODUCERS: usize = 8;
const PER: usize = 20_000;

/// Producers push, take their items back at odd moments (as a thread does
/// when it exits and hands its backlog over) and go away, while the
/// consumer pops. Every item is dropped exactly once, each side sees each
/// producer's items in order, and the counters add up.
#[test]
fn take_back_keeps_exactly_once_and_order_under_stress() {
    test_watchdog::isolate(WATCHDOG, || {
        let drops: Arc<Vec<AtomicUsize>> =
            Arc::new((0..PRODUCERS * PER).map(|_| AtomicUsize::new(0)).collect());
        let (tx, mut rx) = try_bounded::<Counted>(64).unwrap();
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let tx = tx.clone();
                let drops = drops.clone();
                thread::spawn(move || {
                    let mut back: Vec<(usize, usize)> = Vec::new();
                    for seq in 0..PER {
                        let mut item = Counted {
                            producer: p,
                            seq,
                            drops: drops.clone(),
                        };
                        loop {
                            match tx.try_push(item) {
                                Ok(()) => break,
                                Err(e) => {
                                    item = e.into_inner();
                                    thread::yield_now();
                                }
                            }
                        }
                        if seq % 997 == 0 {
                            tx.take_back(|c| back.push((c.producer, c.seq)));
                        }
                    }
                    tx.take_back(|c| back.push((c.producer, c.seq)));
                    back
                })
            })
            .collect();
        drop(tx);
        let mut popped: Vec<(usize, usize)> = Vec::new();
        let mut batch = Vec::new();
        while !rx.is_closed() {
            rx.pop_batch(&mut batch, 256);
            popped.extend(batch.drain(..).map(|c| (c.producer, c.seq)));
        }
        let mut taken_back = 0;
        let mut seen: HashMap<usize, Vec<usize>> = HashMap::new();
        for (p, h) in handles.into_iter().enumerate() {
            let back = h.join().unwrap();
            taken_back += back.len();
            let seqs: Vec<usize> = back.iter().map(|(_, s)| *s).collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "taken back in order");
            seen.entry(p).or_default().extend(seqs);
        }
        for (p, s) in &popped {
            seen.entry(*p).or_default().push(*s);
        }
        for p in 0..PRODUCERS {
            let popped_p: Vec<usize> = popped
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, s)| *s)
                .collect();
            assert!(popped_p.windows(2).all(|w| w[0] < w[1]), "popped in order");
            let mut all = seen.remove(&p).unwrap_or_default();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..PER).collect::<Vec<_>>(),
                "producer {p}: each item once"
            );
        }
        for (i, d) in drops.iter().enumerate() {
            assert_eq!(d.load(Ordering::SeqCst), 1, "item {i} dropped once");
        }
        let c = rx.counters();
        assert_eq!(c.pushed, (PRODUCERS * PER) as u64);
        assert_eq!(c.popped, popped.len() as u64);
        assert_eq!(c.taken_back, taken_back as u64);
        assert_eq!(c.pushed, c.popped + c.taken_back + c.evicted);
        assert_eq!(rx.len(), 0);
    });
}

/// Thousands of producers that come and go while the consumer looks only
/// now and then: lanes of producers that left drained are retired by the
/// producers themselves, and the ones that left items are drained and
/// retired by the consumer; the counters keep every item.
#[test]
fn many_short_lived_producers_are_retired() {
    test_watchdog::isolate(WATCHDOG, || {
        let (tx, mut rx) = try_bounded::<u64>(16).unwrap();
        let mut got = Vec::new();
        for round in 0..50u64 {
            let handles: Vec<_> = (0..20u64)
                .map(|t| {
                    let tx = tx.clone();
                    thread::spawn(move || {
                        for i in 0..4 {
                            tx.try_push(round << 32 | t << 8 | i).unwrap();
                        }
                        if t % 2 == 0 {
                            // Half hand their items back (and so leave a
                            // drained lane behind).
                            let mut n = 0;
                            tx.take_back(|_| n += 1);
                            assert_eq!(n, 4);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            rx.pop_batch(&mut got, usize::MAX);
        }
        drop(tx);
        while !rx.is_closed() {
            rx.pop_batch(&mut got, usize::MAX);
        }
        assert_eq!(got.len(), 50 * 10 * 4);
        let c = rx.counters();
        assert_eq!(c.pushed, 50 * 20 * 4);
        assert_eq!(c.taken_back, 50 * 10 * 4);
        assert_eq!(c.popped, 50 * 10 * 4);
        assert_eq!(rx.producer_count(), 0);
    });
}

/// A mark taken while producers keep pushing is passed once the items that
/// were there are taken, not when the producers stop.
#[test]
fn a_mark_is_passed_under_sustained_pushes() {
    test_watchdog::isolate(WATCHDOG, || {
        let (tx, mut rx) = try_bounded::<u64>(128).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (tx, stop) = (tx.clone(), stop.clone());
                thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if tx.try_push(i).is_ok() {
                            i += 1;
                        } else {
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        for _ in 0..100 {
            rx.pop_batch(&mut out, 64);
        }
        let mark = rx.mark();
        let mut looks = 0u64;
        while !rx.passed(&mark) {
            out.clear();
            rx.pop_batch(&mut out, 64);
            looks += 1;
            assert!(looks < 10_000_000, "the mark was never passed");
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// Counts the drops of its values; `Bomb(n, n)` panics in its `Drop`.
struct Bomb(u32, u32);

static BOMB_DROPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for Bomb {
    fn drop(&mut self) {
        BOMB_DROPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.0 == self.1 {
            panic!("the drop of {} panics", self.0);
        }
    }
}

/// A sink that panics in the middle of a batch, and a `Drop` that panics
/// while the consumer drops what is left: every item is dropped exactly
/// once, the lane is released (it does not look full for ever, and a
/// `force_push` on it returns), and the queue keeps working (before: the
/// rest of the batch was neither delivered nor dropped, and the lane never
/// had room again).
#[test]
fn a_panic_in_the_middle_of_a_batch_loses_no_drop_and_no_room() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::atomic::Ordering;
    test_watchdog::isolate(std::time::Duration::from_secs(60), || {
        let before = BOMB_DROPS.load(Ordering::SeqCst);
        let (tx, mut rx) = otlp_queue::bounded::<Bomb>(4);
        for i in 0..4 {
            assert!(tx.try_push(Bomb(i, u32::MAX)).is_ok());
        }
        let sunk = catch_unwind(AssertUnwindSafe(|| {
            rx.pop_each(4, |v| {
                if v.0 == 1 {
                    panic!("the sink panics at 1");
                }
            })
        }));
        assert!(sunk.is_err());
        // 0 and 1 went to the sink; 2 and 3 were dropped by the queue.
        assert_eq!(BOMB_DROPS.load(Ordering::SeqCst) - before, 4);
        // The lane has room again, for try_push and force_push alike.
        for i in 10..14 {
            assert!(tx.try_push(Bomb(i, u32::MAX)).is_ok(), "room for {i}");
        }
        assert!(matches!(tx.force_push(Bomb(14, u32::MAX)), Ok(Some(_))));
        let got: Vec<u32> = std::iter::from_fn(|| rx.pop().map(|c| c.0)).collect();
        assert_eq!(got, [11, 12, 13, 14]);

        // A drop that panics while the consumer drops what is left.
        let before = BOMB_DROPS.load(Ordering::SeqCst);
        let (tx, rx) = otlp_queue::bounded::<Bomb>(8);
        for i in 0..6 {
            assert!(tx.try_push(Bomb(i, 1)).is_ok());
        }
        assert!(catch_unwind(AssertUnwindSafe(move || drop(rx))).is_err());
        drop(tx);
        assert_eq!(
            BOMB_DROPS.load(Ordering::SeqCst) - before,
            6,
            "each dropped once"
        );
    });
}

/// A `take_back` whose sink pushes to the same lane while the consumer
/// pops (a reviewer's case): the consumer's release used to jump past
/// positions `take_back` had claimed but not yet read, the next pushes
/// overwrote them, and one item came out twice (a double free of a `Box`)
/// while another was lost (the process aborted).
#[test]
fn take_back_with_a_sink_that_pushes_and_pops_keeps_exactly_once() {
    test_watchdog::isolate(WATCHDOG, || {
        let (tx, mut rx) = otlp_queue::bounded::<Box<u64>>(4);
        tx.try_push(Box::new(0)).unwrap();
        tx.try_push(Box::new(1)).unwrap();
        let mut first = true;
        let mut back = Vec::new();
        let n = tx.take_back(|v| {
            back.push(*v);
            if first {
                first = false;
                tx.try_push(Box::new(10)).unwrap();
                assert_eq!(rx.pop().map(|b| *b), Some(10));
                for v in 11..14 {
                    tx.try_push(Box::new(v)).unwrap();
                }
            }
        });
        assert_eq!(n, 2);
        assert_eq!(back, [0, 1], "taken back: the two items there at the call");
        let mut rest = Vec::new();
        while let Some(v) = rx.pop() {
            rest.push(*v);
        }
        assert_eq!(rest, [11, 12, 13], "the consumer: the sink's later pushes");
    });
}

/// A sink that panics: the items of the run not yet handed over are
/// dropped once each, the ones not yet claimed stay for the consumer, and
/// the lane is usable again (it used to stay full for ever, and a
/// `force_push` spun on it without end).
#[test]
fn take_back_with_a_panicking_sink_drops_once_and_frees_the_lane() {
    test_watchdog::isolate(WATCHDOG, || {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Item(#[allow(dead_code)] u32);
        impl Drop for Item {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (tx, mut rx) = otlp_queue::bounded::<Item>(4);
        for i in 0..4 {
            assert!(tx.try_push(Item(i)).is_ok());
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tx.take_back(|_| panic!("the sink fails"));
        }));
        assert!(r.is_err());
        assert_eq!(DROPS.load(Ordering::SeqCst), 4, "each item dropped once");
        assert!(rx.pop().is_none());
        assert_eq!(tx.lane_len(), 0, "the lane is free again");
        for i in 0..4 {
            assert!(tx.try_push(Item(10 + i)).is_ok());
        }
        assert!(tx.force_push(Item(20)).is_ok_and(|old| old.is_some()));
        assert_eq!(DROPS.load(Ordering::SeqCst), 5, "the evicted one");
        let mut seen = 0;
        while rx.pop().is_some() {
            seen += 1;
        }
        assert_eq!(seen, 4);
        assert_eq!(DROPS.load(Ordering::SeqCst), 9);
    });
}

/// `pop_batch` into a vector that cannot grow (`reserve` panics with a
/// capacity overflow): the panic comes before anything is claimed, so the
/// items stay in the lane and it does not look full for ever.
#[test]
fn pop_batch_whose_reserve_panics_claims_nothing() {
    test_watchdog::isolate(WATCHDOG, || {
        #[derive(Clone, Debug, PartialEq)]
        struct Z;
        let (tx, mut rx) = otlp_queue::bounded::<Z>(2);
        assert!(tx.try_push(Z).is_ok());
        assert!(tx.try_push(Z).is_ok());
        let mut full: Vec<Z> = Vec::new();
        // A zero-sized type has no bytes to leave uninitialised.
        #[allow(clippy::uninit_vec)]
        // SAFETY: a vector of a zero-sized type has room for `usize::MAX`
        // of them, and `Z` (a unit struct) is valid whatever its bytes.
        unsafe {
            full.set_len(usize::MAX)
        };
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rx.pop_batch(&mut full, 8)));
        assert!(r.is_err(), "capacity overflow");
        std::mem::forget(full);
        let mut out = Vec::new();
        assert_eq!(rx.pop_batch(&mut out, 8), 2, "both still there");
        assert_eq!(tx.lane_len(), 0);
        assert!(tx.force_push(Z).is_ok());
    });
}

/// A sink that panics in the middle of a batch: the batch (two lanes, the
/// second one's run cut short by the panic) left the queue, handed over or
/// dropped, and the consumer's count says so (`counters().popped`, `len`,
/// `is_empty`). Before, the whole call's items were counted only if every
/// lane's take returned, so `len()` reported items that were not there,
/// for good.
#[test]
fn a_panicking_sink_leaves_the_counts_right() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    test_watchdog::isolate(WATCHDOG, || {
        let (tx, mut rx) = otlp_queue::bounded::<u32>(4);
        let tx2 = tx.clone();
        for i in 0..4 {
            tx.try_push(i).unwrap();
            tx2.try_push(10 + i).unwrap();
        }
        let mut seen = Vec::new();
        let sunk = catch_unwind(AssertUnwindSafe(|| {
            rx.pop_each(8, |v| {
                seen.push(v);
                if seen.len() == 6 {
                    panic!("the sink panics in the second lane");
                }
            })
        }));
        assert!(sunk.is_err());
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert_eq!(rx.pop(), None, "both runs left the queue");
        let c = rx.counters();
        assert_eq!((c.pushed, c.popped), (8, 8), "{c:?}");
        assert_eq!(rx.len(), 0);
        assert!(rx.is_empty());
        // Later traffic is counted as before.
        for i in 0..100 {
            tx.try_push(i).unwrap();
            assert_eq!(rx.pop(), Some(i));
        }
        assert_eq!(rx.len(), 0);
        assert_eq!(rx.counters().popped, 108);
    });
}

/// A producer dropped while the consumer is inside a batch from its lane
/// (its sink held) leaves the lane to the consumer, which frees it after
/// the batch: every item is taken once and counted. (The drop used to spin
/// and yield up to 200 000 times, 85-130 ms, waiting for the batch, where
/// the docs said only `force_push` waits; now it returns at once. That is
/// speed, not asserted here: no wall-clock thresholds in tests.)
#[test]
fn a_producer_dropped_while_the_consumer_copies_its_lane_loses_nothing() {
    use std::sync::mpsc;
    test_watchdog::isolate(WATCHDOG, || {
        for _ in 0..5 {
            let (tx, mut rx) = otlp_queue::bounded::<u32>(8);
            let p = tx.clone();
            for i in 0..4 {
                p.try_push(i).unwrap();
            }
            let (in_sink, in_sink_rx) = mpsc::channel();
            let (go, go_rx) = mpsc::channel::<()>();
            let consumer = thread::spawn(move || {
                let mut n = 0;
                // One run of all four: the lane is drained (claimed) but
                // its copy is under way while the sink waits.
                rx.pop_each(10, |_| {
                    if n == 0 {
                        in_sink.send(()).unwrap();
                        go_rx.recv().unwrap();
                    }
                    n += 1;
                });
                (rx, n)
            });
            in_sink_rx.recv().unwrap();
            // It returns without waiting for the copy (which waits on
            // `go`): the lane is left to the consumer to free.
            drop(p);
            go.send(()).unwrap();
            let (mut rx, n) = consumer.join().unwrap();
            assert_eq!(n, 4);
            drop(tx);
            assert_eq!(rx.pop(), None);
            assert!(rx.is_closed());
            assert_eq!(rx.counters().popped, 4);
        }
    });
}

/// 16 KiB items.
type Big = [u8; 16 << 10];

/// Runs `f` on a thread with 24 (debug) or 10 (release) items' worth of
/// stack: room for what a push and a pop of a `Big` need, not for 16.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let items = if cfg!(debug_assertions) { 24 } else { 10 };
    thread::Builder::new()
        .stack_size(items * std::mem::size_of::<Big>())
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// A producer takes back items as large as a push and a pop can handle on
/// its stack (found by review: `take_back` buffered 16 on the stack
/// whatever their size, and the process aborted on a stack overflow).
#[test]
fn large_items_are_taken_back_on_a_stack_that_pushes_and_pops_them() {
    test_watchdog::isolate(WATCHDOG, || {
        let popped = on_small_stack(|| {
            let (tx, mut rx) = otlp_queue::bounded::<Big>(4);
            tx.try_push([1; 16 << 10]).unwrap();
            tx.try_push([2; 16 << 10]).unwrap();
            let mut sum = 0u64;
            let n = rx.pop_each(10, |v| sum += u64::from(v[0]));
            (n, sum)
        });
        assert_eq!(popped, (2, 3), "the control: push and pop fit");
        let taken = on_small_stack(|| {
            let (tx, _rx) = otlp_queue::bounded::<Big>(4);
            tx.try_push([1; 16 << 10]).unwrap();
            tx.try_push([2; 16 << 10]).unwrap();
            let mut sum = 0u64;
            let n = tx.take_back(|v| sum += u64::from(v[0]));
            (n, sum)
        });
        assert_eq!(taken, (2, 3));
    });
}

/// Counts its drops; panics in `drop` if `boom`.
struct Fragile {
    id: usize,
    boom: bool,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Fragile {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::SeqCst);
        if self.boom {
            panic!("a drop that panics ({})", self.id);
        }
    }
}

fn drop_counts(n: usize) -> Arc<Vec<AtomicUsize>> {
    Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect())
}

fn dropped(c: &[AtomicUsize]) -> Vec<usize> {
    c.iter().map(|a| a.load(Ordering::SeqCst)).collect()
}

/// The pooled queue's handles go with items whose `Drop` panics left in
/// it: every item is dropped once, as the ring queue does (found by
/// review: the items after the first that panicked were never dropped),
/// and a producer dropped after the consumer still frees its lane, items
/// and all (the consumer's teardown was cut short by the panic).
#[test]
fn pooled_items_whose_drop_panics_are_each_dropped_once_at_teardown() {
    use otlp_queue::pooled;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let c = drop_counts(4);
    let item = |id: usize, boom: bool| Fragile {
        id,
        boom,
        drops: c.clone(),
    };
    let (tx, rx) = pooled::try_with_chunk::<Fragile>(16, 4).unwrap();
    for id in 0..4 {
        assert!(tx.try_push(item(id, id < 2)).is_ok());
    }
    assert!(catch_unwind(AssertUnwindSafe(|| drop(rx))).is_err());
    drop(tx);
    assert_eq!(dropped(&c), [1, 1, 1, 1]);

    let c = drop_counts(2);
    let item = |id: usize, boom: bool| Fragile {
        id,
        boom,
        drops: c.clone(),
    };
    let (tx, rx) = pooled::try_with_chunk::<Fragile>(16, 4).unwrap();
    let other = tx.try_clone().unwrap();
    assert!(tx.try_push(item(0, true)).is_ok());
    assert!(other.try_push(item(1, false)).is_ok());
    assert!(catch_unwind(AssertUnwindSafe(|| drop(rx))).is_err());
    drop(other);
    assert_eq!(dropped(&c), [1, 1], "other's item dropped with its lane");
    assert_eq!(tx.lane_count(), 1, "other's lane freed with it");
}

/// An item whose `Drop` panics with a payload that counts its own drop.
struct Boom(Arc<BoomCounts>);

#[derive(Default)]
struct BoomCounts {
    items_dropped: AtomicUsize,
    payloads_dropped: AtomicUsize,
}

struct Payload(Arc<BoomCounts>);

impl Drop for Payload {
    fn drop(&mut self) {
        self.0.payloads_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Boom {
    fn drop(&mut self) {
        self.0.items_dropped.fetch_add(1, Ordering::SeqCst);
        std::panic::panic_any(Payload(self.0.clone()));
    }
}

/// The ring queue's teardown with items whose `Drop` panics, in several
/// lanes: every item dropped once, no abort (the consumer's drop stopped at
/// the first lane's panic, and the lanes left undrained were freed in one
/// `Vec`, the second's panic during the first's unwind: an abort), and
/// every panic's payload dropped (they were leaked), there and in a
/// `take_back` whose sink panics. Found by review.
#[test]
fn ring_teardowns_with_panicking_drops_drop_every_item_and_payload() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    test_watchdog::isolate(WATCHDOG, || {
        let c = Arc::new(BoomCounts::default());
        let (tx, rx) = otlp_queue::bounded::<Boom>(4);
        let (p, q) = (tx.clone(), tx.clone());
        for h in [&tx, &p, &q] {
            assert!(h.try_push(Boom(c.clone())).is_ok());
            assert!(h.try_push(Boom(c.clone())).is_ok());
        }
        assert!(catch_unwind(AssertUnwindSafe(move || drop(rx))).is_err());
        drop((p, q));
        drop(tx);
        assert_eq!(c.items_dropped.load(Ordering::SeqCst), 6);
        assert_eq!(c.payloads_dropped.load(Ordering::SeqCst), 6);

        let c = Arc::new(BoomCounts::default());
        let (tx, _rx) = otlp_queue::bounded::<Boom>(8);
        for _ in 0..4 {
            assert!(tx.try_push(Boom(c.clone())).is_ok());
        }
        let failed = catch_unwind(AssertUnwindSafe(|| {
            tx.take_back(|item| {
                // Dropped here, its panic caught; then the sink fails.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(item)));
                panic!("the sink fails");
            })
        }));
        assert!(failed.is_err());
        // The first by the sink; the rest of its run by `take_back`.
        assert_eq!(c.items_dropped.load(Ordering::SeqCst), 4);
        assert_eq!(c.payloads_dropped.load(Ordering::SeqCst), 4);
    });
}
