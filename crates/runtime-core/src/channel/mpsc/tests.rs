use super::chan::*;
use super::*;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::Cx;
use crate::loom::{Ordering, lock};
use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::thread;

use crate::channel::block_on;

/// Polls once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

fn queued_waiters<T>(tx: &Sender<T>) -> usize {
    lock(&tx.chan.waiters).waiting
}

fn cx() -> Cx<crate::caps::All> {
    Cx::detached_for_tests()
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<X: Send + Sync>() {}
    send_sync::<Sender<String>>();
    send_sync::<Receiver<String>>();
    send_sync::<Permit<'static, String>>();
    send_sync::<Reserve<'static, String>>();
    send_sync::<Recv<'static, String>>();
    fn send<X: Send>(_: &X) {}
    let cx = cx();
    let (tx, _rx) = channel::<String>(1).unwrap();
    send(&tx.send(&cx, String::new()));
}

#[test]
fn capacity_errors() {
    assert_eq!(channel::<u8>(0).unwrap_err(), CapacityError::Zero);
    assert!(matches!(
        channel::<u8>(MAX_CAPACITY + 1),
        Err(CapacityError::TooLarge { .. })
    ));
    // Countable but not allocatable: refused, not a panic or an abort
    // (neither case allocates anything to find out).
    assert!(matches!(
        channel::<u64>(MAX_CAPACITY),
        Err(CapacityError::CannotAllocate { .. })
    ));
    assert!(matches!(
        channel::<[u8; 64]>(isize::MAX as usize / 64),
        Err(CapacityError::CannotAllocate { .. })
    ));
    assert_eq!(
        CapacityError::Zero.to_string(),
        "channel capacity must be at least 1"
    );
    // The value-carrying errors are errors whatever the value type.
    struct Opaque;
    let errors: [Box<dyn std::error::Error>; 3] = [
        Box::new(SendError::Closed(Opaque)),
        Box::new(TrySendError::Full(Opaque)),
        Box::new(Closed(Opaque)),
    ];
    assert_eq!(errors[0].to_string(), "channel closed");
    assert_eq!(format!("{:?}", errors[1]), "Full(..)");
    assert_eq!(errors[2].to_string(), "receiver dropped");
}

#[test]
fn fifo_order() {
    let cx = cx();
    let (tx, mut rx) = channel(4).unwrap();
    for round in 0..3 {
        for i in 0..4 {
            block_on(tx.send(&cx, round * 10 + i)).unwrap();
        }
        assert_eq!(rx.len(), 4);
        for i in 0..4 {
            assert_eq!(block_on(rx.recv(&cx)), Ok(round * 10 + i));
        }
        assert!(rx.is_empty());
    }
}

#[test]
fn capacity_is_respected() {
    let (tx, mut rx) = channel::<u32>(2).unwrap();
    assert_eq!(tx.capacity(), 2);
    let a = tx.try_reserve().unwrap();
    tx.try_send(1).unwrap();
    assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
    assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
    drop(a); // the slot comes back
    let b = tx.try_reserve().unwrap();
    assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
    // A popped value frees its slot only after it is popped.
    assert_eq!(rx.try_recv(), Ok(1));
    b.send(2).unwrap();
    tx.try_send(3).unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn dropped_permit_wakes_a_waiting_reserver() {
    let (tx, mut rx) = channel::<u32>(1).unwrap();
    let tx2 = tx.clone();
    let permit = tx.try_reserve().unwrap();
    let waiter = thread::spawn(move || {
        let cx = Cx::detached_for_tests();
        let permit = block_on(tx2.reserve(&cx)).unwrap();
        permit.send(42).unwrap();
    });
    while queued_waiters(&tx) == 0 {
        thread::yield_now();
    }
    drop(permit);
    waiter.join().unwrap();
    assert_eq!(rx.try_recv(), Ok(42));
}

#[test]
fn received_value_wakes_a_waiting_sender() {
    let (tx, mut rx) = channel::<u32>(1).unwrap();
    tx.try_send(1).unwrap();
    let tx2 = tx.clone();
    let sender = thread::spawn(move || {
        let cx = Cx::detached_for_tests();
        block_on(tx2.send(&cx, 2)).unwrap();
    });
    while queued_waiters(&tx) == 0 {
        thread::yield_now();
    }
    assert_eq!(rx.try_recv(), Ok(1));
    sender.join().unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
}

/// Many senders wait on a full channel and most withdraw, in an order
/// that is neither first nor last in (from the middle out, then every
/// other one): each withdrawal finds its entry by binary search and leaves
/// it in place, and the queue stays within about twice the live waiters
/// even behind a first waiter that never leaves. The ones left are served
/// in arrival order, one slot each.
#[test]
fn senders_withdrawn_from_the_middle_of_a_long_queue_leave_the_rest_in_order() {
    let cx = cx();
    let (tx, mut rx) = channel::<usize>(1).unwrap();
    tx.try_send(usize::MAX).unwrap();
    let n = 1_000;
    let mut waiting: Vec<Option<_>> = (0..n)
        .map(|i| {
            let mut f = Box::pin(tx.send(&cx, i));
            assert!(poll_once(&mut f).is_pending());
            Some(f)
        })
        .collect();
    assert_eq!(queued_waiters(&tx), n);
    // From the middle out, all but the first 100 and the last 100.
    let mut gone = Vec::new();
    for d in 0..(n / 2 - 100) {
        gone.push(n / 2 - 1 - d);
        gone.push(n / 2 + d);
    }
    // Then every other one of those left, but the very first.
    gone.extend((1..100).step_by(2).chain((n - 100..n).step_by(2)));
    for (k, &i) in gone.iter().enumerate() {
        drop(waiting[i].take());
        let w = lock(&tx.chan.waiters);
        assert_eq!(w.waiting, n - k - 1);
        assert!(
            w.queue.len() <= 2 * w.waiting + 16,
            "{} entries for {} waiters",
            w.queue.len(),
            w.waiting
        );
    }
    let left: Vec<usize> = (0..n).filter(|&i| waiting[i].is_some()).collect();
    assert_eq!(left.len(), 100);
    // Each received value frees one slot for the oldest sender left.
    let mut got = Vec::new();
    assert_eq!(rx.try_recv(), Ok(usize::MAX));
    for &i in &left {
        let f = waiting[i].as_mut().expect("still waiting");
        assert!(
            matches!(poll_once(f), Poll::Ready(Ok(()))),
            "sender {i} served"
        );
        waiting[i] = None;
        got.push(rx.try_recv().expect("its value"));
    }
    assert_eq!(got, left, "served in arrival order");
    assert_eq!(queued_waiters(&tx), 0);
}

#[test]
fn dropped_reserve_future_loses_no_slot() {
    let cx = cx();
    let (tx, mut rx) = channel::<u32>(1).unwrap();
    let permit = tx.try_reserve().unwrap();
    let mut first = tx.reserve(&cx);
    let mut second = tx.reserve(&cx);
    assert!(poll_once(&mut first).is_pending());
    assert!(poll_once(&mut second).is_pending());
    assert_eq!(queued_waiters(&tx), 2);
    // Waiters are served in order: no barging while they wait.
    assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
    // The slot is handed to `first`, which is dropped unpolled: it
    // must go on to `second`.
    drop(permit);
    drop(first);
    let Poll::Ready(Ok(p)) = poll_once(&mut second) else {
        panic!("the slot was lost");
    };
    p.send(5).unwrap();
    drop(second);
    assert_eq!(rx.try_recv(), Ok(5));

    // A waiter dropped before any slot is freed leaves nothing behind.
    let permit = tx.try_reserve().unwrap();
    let mut third = tx.reserve(&cx);
    assert!(poll_once(&mut third).is_pending());
    drop(third);
    assert_eq!(queued_waiters(&tx), 0);
    drop(permit);
    tx.try_reserve().unwrap().send(6).unwrap();
    assert_eq!(rx.try_recv(), Ok(6));
}

#[test]
fn close_refuses_new_reservations_but_keeps_commits() {
    let cx = cx();
    let (tx, mut rx) = channel::<u32>(3).unwrap();
    tx.try_send(1).unwrap();
    let permit = tx.try_reserve().unwrap();
    let filler = tx.try_reserve().unwrap();
    let mut waiting = tx.reserve(&cx);
    assert!(poll_once(&mut waiting).is_pending());

    rx.close();
    assert!(rx.is_closed() && tx.is_closed());
    assert!(matches!(
        poll_once(&mut waiting),
        Poll::Ready(Err(SendError::Closed(())))
    ));
    assert!(matches!(tx.try_reserve(), Err(TrySendError::Closed(()))));
    assert_eq!(
        block_on(tx.send(&cx, 7)).unwrap_err().into_inner(),
        7,
        "a refused send returns the value"
    );
    // Queued values stay receivable, held permits may still commit.
    assert_eq!(rx.try_recv(), Ok(1));
    drop(filler);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    permit.send(2).unwrap();
    assert_eq!(block_on(rx.recv(&cx)), Ok(2));
    // Then it ends, though a sender is still alive.
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(block_on(rx.recv(&cx)), Err(RecvError::Disconnected));
    drop(waiting);
    drop(tx);
}

#[test]
fn close_wakes_receiver_when_last_permit_goes() {
    let (tx, mut rx) = channel::<u32>(2).unwrap();
    rx.close();
    let receiver = thread::spawn(move || {
        let cx = Cx::detached_for_tests();
        block_on(rx.recv(&cx))
    });
    // `tx` is alive throughout: only the closed channel ends the wait.
    thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(receiver.join().unwrap(), Err(RecvError::Disconnected));
    drop(tx);

    let (tx, mut rx) = channel::<u32>(2).unwrap();
    let tx2 = tx.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let holder = thread::spawn(move || {
        let permit = tx2.try_reserve().unwrap();
        ready_tx.send(()).unwrap();
        thread::sleep(std::time::Duration::from_millis(20));
        drop(permit);
        tx2
    });
    ready_rx.recv().unwrap();
    rx.close();
    let cx = cx();
    assert_eq!(block_on(rx.recv(&cx)), Err(RecvError::Disconnected));
    drop(holder.join().unwrap());
    drop(tx);
}

#[test]
fn disconnected_after_all_senders_and_permits_drop() {
    let cx = cx();
    let (tx, mut rx) = channel::<u32>(4).unwrap();
    let tx2 = tx.clone();
    tx.try_send(1).unwrap();
    tx2.try_send(2).unwrap();
    drop(tx);
    assert_eq!(rx.try_recv(), Ok(1));
    let permit = tx2.try_reserve().unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    permit.send(3).unwrap();
    drop(tx2);
    assert_eq!(block_on(rx.recv(&cx)), Ok(3));
    assert_eq!(block_on(rx.recv(&cx)), Err(RecvError::Disconnected));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));

    // A receiver waiting when the last sender goes is woken.
    let (tx, mut rx) = channel::<u32>(1).unwrap();
    let receiver = thread::spawn(move || {
        let cx = Cx::detached_for_tests();
        let first = block_on(rx.recv(&cx));
        (first, block_on(rx.recv(&cx)))
    });
    thread::sleep(std::time::Duration::from_millis(10));
    tx.try_send(9).unwrap();
    drop(tx);
    assert_eq!(
        receiver.join().unwrap(),
        (Ok(9), Err(RecvError::Disconnected))
    );
}

#[test]
fn dropped_receiver_counts_undelivered_and_returns_refused_values() {
    struct Counted(Arc<StdAtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let drops = Arc::new(StdAtomicUsize::new(0));
    let cx = cx();
    let (tx, rx) = channel::<Counted>(4).unwrap();
    for _ in 0..3 {
        tx.try_send(Counted(drops.clone())).unwrap();
    }
    let permit = tx.try_reserve().unwrap();
    let mut waiting = tx.reserve(&cx);
    assert!(poll_once(&mut waiting).is_pending());
    assert_eq!(tx.undelivered(), 0);

    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.undelivered(), 3);
    assert_eq!(drops.load(Ordering::Relaxed), 3, "dropped, not leaked");
    assert!(matches!(
        poll_once(&mut waiting),
        Poll::Ready(Err(SendError::Closed(())))
    ));
    // A permit held across the drop hands its value back.
    let Err(Closed(back)) = permit.send(Counted(drops.clone())) else {
        panic!("commit after the receiver's drop succeeded");
    };
    drop(back);
    assert!(matches!(
        tx.try_send(Counted(drops.clone())),
        Err(TrySendError::Closed(_))
    ));
    assert!(block_on(tx.send(&cx, Counted(drops.clone()))).is_err());
    assert_eq!(tx.undelivered(), 3);
    assert_eq!(drops.load(Ordering::Relaxed), 6);
}

#[test]
fn stress_four_producers_every_value_once() {
    const PRODUCERS: u64 = 4;
    const PER: u64 = 100_000;
    let (tx, mut rx) = channel::<u64>(8).unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                let cx = Cx::detached_for_tests();
                for i in 0..PER {
                    // Mix the waiting path with the non-waiting one.
                    if i % 3 == 0 {
                        match tx.try_reserve() {
                            Ok(permit) => permit.send(p * PER + i).unwrap(),
                            Err(_) => block_on(tx.send(&cx, p * PER + i)).unwrap(),
                        }
                    } else {
                        block_on(tx.send(&cx, p * PER + i)).unwrap();
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let cx = cx();
    let mut count = 0u64;
    let mut sum = 0u64;
    let mut next = [0u64; PRODUCERS as usize];
    loop {
        match block_on(rx.recv(&cx)) {
            Ok(v) => {
                let (p, i) = ((v / PER) as usize, v % PER);
                assert_eq!(i, next[p], "per-producer FIFO");
                next[p] += 1;
                count += 1;
                sum += v;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    let n = PRODUCERS * PER;
    assert_eq!(count, n);
    assert_eq!(sum, n * (n - 1) / 2);
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Reserve,
        Commit(usize),
        DropPermit(usize),
        Recv,
        Close,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Reserve),
            3 => any::<usize>().prop_map(Op::Commit),
            1 => any::<usize>().prop_map(Op::DropPermit),
            3 => Just(Op::Recv),
            1 => Just(Op::Close),
        ]
    }

    proptest! {
        /// Single-threaded ops against a model: a queue and a count of
        /// permits within the capacity.
        #[test]
        fn matches_model(cap in 1usize..5, ops in proptest::collection::vec(op(), 0..60)) {
            let (tx, mut rx) = channel::<u32>(cap).unwrap();
            let mut permits = Vec::new();
            let mut model = VecDeque::new();
            let mut closed = false;
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Reserve => {
                        let r = tx.try_reserve();
                        if closed {
                            prop_assert!(matches!(r, Err(TrySendError::Closed(()))));
                        } else if permits.len() + model.len() == cap {
                            prop_assert!(matches!(r, Err(TrySendError::Full(()))));
                        } else {
                            permits.push(r.unwrap());
                        }
                    }
                    Op::Commit(i) if !permits.is_empty() => {
                        let p = permits.swap_remove(i % permits.len());
                        prop_assert!(p.send(next).is_ok());
                        model.push_back(next);
                        next += 1;
                    }
                    Op::DropPermit(i) if !permits.is_empty() => {
                        drop(permits.swap_remove(i % permits.len()));
                    }
                    Op::Recv => {
                        let got = rx.try_recv();
                        match model.pop_front() {
                            Some(v) => prop_assert_eq!(got, Ok(v)),
                            None if closed && permits.is_empty() => {
                                prop_assert_eq!(got, Err(TryRecvError::Disconnected));
                            }
                            None => prop_assert_eq!(got, Err(TryRecvError::Empty)),
                        }
                    }
                    Op::Close => {
                        rx.close();
                        closed = true;
                    }
                    _ => {}
                }
                prop_assert_eq!(rx.len(), model.len());
            }
            drop(permits);
            drop(rx);
            prop_assert_eq!(tx.undelivered(), model.len() as u64);
        }
    }
}

/// Found by review: reservations that were handed a slot (the permits
/// ahead of them released) and then dropped from the middle out, unpolled,
/// each took their entry out of the handed list with a `remove` that
/// shifted the entries after it, under the waiters lock: quadratic in
/// their number (160 000 took a second, against 10-24 ms for as many still
/// queued). Now each is taken in place, found by binary search: the
/// entries around it stay where they are, and the list stays within about
/// twice its live entries (taken ones trimmed at the ends, or all at once
/// when they outnumber the live ones). The slots all come back.
#[test]
fn handed_reservations_dropped_from_the_middle_are_taken_in_place() {
    let cx = cx();
    let n = 1_000;
    let (tx, mut rx) = channel::<usize>(n).unwrap();
    let permits: Vec<_> = (0..n).map(|_| tx.try_reserve().unwrap()).collect();
    let mut reserves: Vec<Option<_>> = (0..n)
        .map(|_| {
            let mut f = Box::pin(tx.reserve(&cx));
            assert!(poll_once(&mut f).is_pending());
            Some(f)
        })
        .collect();
    // Each permit's slot is handed to the oldest reservation queued.
    drop(permits);
    {
        let w = lock(&tx.chan.waiters);
        assert_eq!((w.waiting, w.handed.len()), (0, n));
    }
    // The first one in the middle: taken in place, the rest unmoved.
    drop(reserves[n / 2].take());
    {
        let w = lock(&tx.chan.waiters);
        assert_eq!(w.handed.len(), n, "taken in place");
        assert_eq!(w.handed[n / 2].0, w.handed[0].0 + (n / 2) as u64);
    }
    // From the middle out, all but the first and last 50.
    let mut gone = Vec::new();
    for d in 1..(n / 2 - 50) {
        gone.push(n / 2 - d);
        gone.push(n / 2 + d);
    }
    for (k, &i) in gone.iter().enumerate() {
        drop(reserves[i].take());
        let live = n - 2 - k;
        let w = lock(&tx.chan.waiters);
        assert!(
            w.handed.len() <= 2 * live + 16,
            "{} entries for {live} handed",
            w.handed.len(),
        );
    }
    // The returned slots are free again, and the ones left pick theirs up.
    let left: Vec<usize> = (0..n).filter(|&i| reserves[i].is_some()).collect();
    assert_eq!(left.len(), 101);
    for &i in &left {
        let f = reserves[i].as_mut().expect("still held");
        let Poll::Ready(Ok(p)) = poll_once(f) else {
            panic!("reservation {i} lost its slot");
        };
        p.send(i).unwrap();
        reserves[i] = None;
    }
    {
        let w = lock(&tx.chan.waiters);
        assert_eq!(w.handed.len(), 0);
    }
    for &i in &left {
        assert_eq!(rx.try_recv(), Ok(i));
    }
    let free: Vec<_> = (0..n).map(|_| tx.try_reserve().unwrap()).collect();
    assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
    drop(free);
}
