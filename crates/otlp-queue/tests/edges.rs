//! Edge cases and the single-threaded contract of every public operation.

mod common;

use std::time::Duration;

use common::Ledger;
use otlp_queue::{
    CapacityError, MAX_CAPACITY, PushError, PushTimeoutError, QueueCounters, TryPopError, bounded,
    try_bounded,
};

#[test]
fn zero_capacity_is_refused_with_a_clear_error() {
    let err = try_bounded::<u64>(0).unwrap_err();
    assert_eq!(err, CapacityError::Zero);
    assert_eq!(err.to_string(), "queue capacity must be at least 1");
}

#[test]
#[should_panic(expected = "otlp_queue::bounded(0): queue capacity must be at least 1")]
fn bounded_panics_on_zero_capacity_naming_the_argument() {
    let _ = bounded::<u64>(0);
}

#[test]
fn oversized_capacity_is_refused() {
    let err = try_bounded::<u8>(MAX_CAPACITY + 1).unwrap_err();
    assert_eq!(
        err,
        CapacityError::TooLarge {
            requested: MAX_CAPACITY + 1,
            max: MAX_CAPACITY
        }
    );
    assert!(err.to_string().contains("larger than the maximum"));
}

#[test]
fn capacity_one_holds_one_item_and_wraps() {
    let (tx, mut rx) = bounded(1);
    assert_eq!(tx.capacity(), 1);
    assert_eq!(rx.capacity(), 1);
    for i in 0..10 {
        tx.try_push(i).unwrap();
        assert_eq!(tx.try_push(100 + i), Err(PushError::Full(100 + i)));
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.pop(), Some(i));
        assert_eq!(rx.pop(), None);
    }
}

#[test]
fn capacity_one_force_push_evicts_the_single_item() {
    let (tx, mut rx) = bounded(1);
    assert_eq!(tx.force_push(1).unwrap(), None);
    assert_eq!(tx.force_push(2).unwrap(), Some(1));
    assert_eq!(tx.force_push(3).unwrap(), Some(2));
    assert_eq!(rx.pop(), Some(3));
    assert_eq!(tx.force_push(4).unwrap(), None);
    assert_eq!(rx.pop(), Some(4));
}

#[test]
fn non_power_of_two_capacity_keeps_fifo_over_many_laps() {
    for cap in [3usize, 5, 7, 1000] {
        let (tx, mut rx) = bounded(cap);
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        let mut out = Vec::new();
        for round in 0..50 {
            // Fill to the brim, then drain a varying amount.
            while tx.try_push(next_in).is_ok() {
                next_in += 1;
            }
            assert_eq!(rx.len(), cap);
            out.clear();
            let want = 1 + round % cap;
            assert_eq!(rx.pop_batch(&mut out, want), want);
            for v in &out {
                assert_eq!(*v, next_out);
                next_out += 1;
            }
        }
    }
}

#[test]
fn pop_batch_with_zero_max_takes_nothing() {
    let (tx, mut rx) = bounded(4);
    tx.try_push(1).unwrap();
    let mut out = Vec::new();
    assert_eq!(rx.pop_batch(&mut out, 0), 0);
    assert!(out.is_empty());
    assert_eq!(rx.pop(), Some(1));
}

#[test]
fn pop_batch_appends_and_visits_every_lane() {
    let (a, mut rx) = bounded(8);
    let b = a.clone();
    let c = a.clone();
    for i in 0..3 {
        a.try_push(("a", i)).unwrap();
        b.try_push(("b", i)).unwrap();
        c.try_push(("c", i)).unwrap();
    }
    let mut out = vec![("pre", 0)];
    assert_eq!(rx.pop_batch(&mut out, 100), 9);
    assert_eq!(out[0], ("pre", 0));
    for lane in ["a", "b", "c"] {
        let seq: Vec<_> = out
            .iter()
            .filter(|(l, _)| *l == lane)
            .map(|&(_, i)| i)
            .collect();
        assert_eq!(seq, [0, 1, 2], "lane {lane} out of order");
    }
}

#[test]
fn zero_sized_items_are_counted_like_any_other() {
    let (tx, mut rx) = bounded::<()>(3);
    for _ in 0..3 {
        tx.try_push(()).unwrap();
    }
    assert!(tx.try_push(()).unwrap_err().is_full());
    let mut out = Vec::new();
    assert_eq!(rx.pop_batch(&mut out, 10), 3);
    assert_eq!(rx.pop(), None);
}

#[test]
fn dropping_every_producer_closes_after_the_drain() {
    let (tx, mut rx) = bounded(4);
    let tx2 = tx.clone();
    tx.try_push(1).unwrap();
    tx2.try_push(2).unwrap();
    drop(tx);
    assert_eq!(rx.producer_count(), 1);
    assert!(!rx.is_closed());
    drop(tx2);
    assert_eq!(rx.producer_count(), 0);
    assert!(!rx.is_closed(), "items are still inside");
    let mut got = vec![rx.try_pop().unwrap(), rx.try_pop().unwrap()];
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
    assert_eq!(rx.try_pop(), Err(TryPopError::Closed));
    assert!(rx.is_closed());
}

#[test]
fn try_pop_says_empty_while_a_producer_lives() {
    let (tx, mut rx) = bounded::<u8>(4);
    assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    assert_eq!(TryPopError::Empty.to_string(), "queue is empty");
    drop(tx);
    assert_eq!(rx.try_pop(), Err(TryPopError::Closed));
}

#[test]
fn dropping_the_consumer_fails_pushes_and_drops_items_inside_once() {
    let ledger = Ledger::new(8);
    let (tx, rx) = bounded(4);
    let tx2 = tx.clone();
    for id in 0..3 {
        tx.try_push(ledger.item(id)).unwrap();
    }
    tx2.try_push(ledger.item(3)).unwrap();
    assert!(!tx.is_closed());
    drop(rx);
    assert!(tx.is_closed());
    // Items inside were dropped exactly once, by the consumer's drop.
    for id in 0..4 {
        assert_eq!(ledger.drops_of(id), 1, "item {id}");
    }
    // Later pushes fail and hand the value back.
    let err = tx.try_push(ledger.item(4)).unwrap_err();
    assert!(err.is_closed());
    assert_eq!(err.into_inner().id, 4);
    let err = tx2.force_push(ledger.item(5)).unwrap_err();
    assert_eq!(err.to_string(), "queue is closed: the consumer was dropped");
    drop(err);
    match tx.push_timeout(ledger.item(6), Duration::from_secs(1)) {
        Err(PushTimeoutError::Closed(v)) => assert_eq!(v.id, 6),
        other => panic!("expected Closed, got {other:?}"),
    }
    // A producer cloned after the consumer is gone is closed too.
    let tx3 = tx.clone();
    assert!(tx3.try_push(ledger.item(7)).unwrap_err().is_closed());
    drop((tx, tx2, tx3));
    ledger.assert_each_dropped_once(8);
}

#[test]
fn items_left_when_both_sides_drop_are_dropped_once() {
    let ledger = Ledger::new(6);
    let (tx, mut rx) = bounded(4);
    let tx2 = tx.clone();
    for id in 0..3 {
        tx.try_push(ledger.item(id)).unwrap();
    }
    for id in 3..6 {
        tx2.try_push(ledger.item(id)).unwrap();
    }
    drop(rx.pop());
    drop(tx);
    drop(tx2);
    drop(rx);
    ledger.assert_each_dropped_once(6);
}

#[test]
fn push_timeout_waits_then_hands_the_value_back() {
    let (tx, mut rx) = bounded(1);
    tx.push_timeout(1, Duration::from_millis(1)).unwrap();
    let err = tx.push_timeout(2, Duration::from_millis(5)).unwrap_err();
    assert_eq!(err, PushTimeoutError::Timeout(2));
    assert_eq!(err.to_string(), "queue lane stayed full until the timeout");
    assert_eq!(format!("{err:?}"), "Timeout(..)");
    assert_eq!(rx.pop(), Some(1));
    // A huge timeout (deadline overflow) is "wait without a deadline": it
    // succeeds at once when there is room.
    tx.push_timeout(3, Duration::MAX).unwrap();
    assert_eq!(rx.pop(), Some(3));
}

#[test]
fn push_timeout_succeeds_once_the_consumer_makes_room() {
    let (tx, mut rx) = bounded(1);
    tx.try_push(0u32).unwrap();
    let waiter = std::thread::spawn(move || tx.push_timeout(1, Duration::from_secs(60)));
    // Wait until the item is taken; the waiter then gets its slot.
    let mut got = Vec::new();
    while got.len() < 2 {
        rx.pop_batch(&mut got, 2);
        std::thread::yield_now();
    }
    assert_eq!(waiter.join().unwrap(), Ok(()));
    assert_eq!(got, [0, 1]);
}

#[test]
fn counters_and_len_track_every_operation() {
    let (tx, mut rx) = bounded(2);
    let tx2 = tx.clone();
    tx.try_push(1).unwrap();
    tx.try_push(2).unwrap();
    assert!(tx.try_push(3).is_err()); // rejected
    assert_eq!(tx.force_push(4).unwrap(), Some(1)); // evicted
    tx2.try_push(5).unwrap();
    assert!(tx.push_timeout(6, Duration::ZERO).is_err()); // rejected
    assert_eq!(rx.len(), 3);
    assert_eq!(tx.lane_len(), 2);
    assert_eq!(tx2.lane_len(), 1);
    assert!(rx.pop().is_some());
    assert_eq!(
        tx.counters(),
        rx.counters(),
        "every handle sees the same counters"
    );
    let c = rx.counters();
    assert_eq!(
        c,
        QueueCounters {
            pushed: 4,
            popped: 1,
            rejected_full: 2,
            evicted: 1,
            taken_back: 0,
        }
    );
    assert_eq!(rx.len(), 2);
    // A finished lane is retired but its counts are kept.
    let mut out = Vec::new();
    rx.pop_batch(&mut out, 10);
    drop(tx2);
    assert_eq!(rx.pop(), None); // notices the finished lane and retires it
    let c = rx.counters();
    assert_eq!(
        (c.pushed, c.popped, c.rejected_full, c.evicted),
        (4, 3, 2, 1)
    );
    assert!(rx.is_empty());
}

#[test]
fn many_short_lived_producers_are_retired() {
    let (tx, mut rx) = bounded(2);
    for round in 0..100u64 {
        let p = tx.clone();
        p.try_push(round).unwrap();
        drop(p);
        assert_eq!(rx.pop(), Some(round));
    }
    assert_eq!(rx.pop(), None);
    assert_eq!(rx.producer_count(), 1);
    assert!(format!("{rx:?}").contains("lanes: 1"), "{rx:?}");
    assert_eq!(rx.counters().pushed, 100);
}

#[test]
fn debug_output_never_requires_debug_items() {
    struct Opaque;
    let (tx, rx) = bounded(1);
    tx.try_push(Opaque).unwrap();
    let err = tx.try_push(Opaque).unwrap_err();
    assert_eq!(format!("{err:?}"), "Full(..)");
    assert_eq!(err.to_string(), "queue lane is full");
    assert!(format!("{tx:?}").starts_with("Producer"));
    assert!(format!("{rx:?}").starts_with("Consumer"));
}
