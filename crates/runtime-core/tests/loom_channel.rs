//! Loom models of the channels: every interleaving (up to
//! `LOOM_MAX_PREEMPTIONS`) of small races that must lose no value and no
//! wake-up. A lost wake-up shows as a deadlock: every thread parked in
//! `block_on`.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom_channel`
#![cfg(loom)]

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use loom::thread;
use runtime_core::Cx;
use runtime_core::channel::{mpsc, oneshot};

/// Drives `fut` to completion on this loom thread, blocking (in loom) while
/// it is pending: what `loom::future::block_on` does, which needs loom's
/// `futures` feature (the workspace does not enable it). The waker
/// notifies a `loom::sync::Notify` of its own (not the thread's park
/// token, which would also wake a `join`). A wake-up the channel loses
/// leaves the thread blocked, and loom reports the deadlock.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Notifier(loom::sync::Notify);
    impl Wake for Notifier {
        fn wake(self: Arc<Self>) {
            self.0.notify();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.notify();
        }
    }
    let notifier = Arc::new(Notifier(loom::sync::Notify::new()));
    let waker = Waker::from(Arc::clone(&notifier));
    let mut task = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut task) {
            return out;
        }
        notifier.0.wait();
    }
}

/// Polls once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

/// (a) Two senders reserve and commit through a channel of capacity 1
/// while the receiver takes both values: each arrives exactly once, then
/// the channel ends (the last sender's drop wakes the receiver).
#[test]
fn two_senders_capacity_one() {
    loom::model(|| {
        let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
        let senders: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|v| {
                let tx = tx.clone();
                thread::spawn(move || {
                    let cx = Cx::detached_for_tests();
                    let permit = block_on(tx.reserve(&cx)).unwrap();
                    permit.send(v).unwrap();
                })
            })
            .collect();
        drop(tx);
        let cx = Cx::detached_for_tests();
        let a = block_on(rx.recv(&cx)).unwrap();
        let b = block_on(rx.recv(&cx)).unwrap();
        assert_eq!(a + b, 3);
        assert_ne!(a, b);
        // May wait for the senders to drop: the last one wakes it.
        assert_eq!(block_on(rx.recv(&cx)), Err(mpsc::RecvError::Disconnected));
        for s in senders {
            s.join().unwrap();
        }
    });
}

/// (b) A permit dropped unused while another sender waits in `reserve`:
/// the waiter gets the slot (no lost wake-up, no lost slot).
#[test]
fn dropped_permit_wakes_waiting_reserver() {
    loom::model(|| {
        let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
        let tx2 = tx.clone();
        let permit = tx.try_reserve().unwrap();
        let waiter = thread::spawn(move || {
            let cx = Cx::detached_for_tests();
            let permit = block_on(tx2.reserve(&cx)).unwrap();
            permit.send(2).unwrap();
        });
        drop(permit);
        waiter.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
    });
}

/// (b') A pending `Reserve` future dropped around the release of a slot,
/// while another sender waits: the slot reaches the other sender whatever
/// the order (handed to the dropped one and passed on, or never handed to
/// it).
#[test]
fn dropped_reserve_future_passes_the_slot_on() {
    loom::model(|| {
        let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
        let tx2 = tx.clone();
        let permit = tx.try_reserve().unwrap();
        let waiter = thread::spawn(move || {
            let cx = Cx::detached_for_tests();
            let permit = block_on(tx2.reserve(&cx)).unwrap();
            permit.send(2).unwrap();
        });
        let cx = Cx::detached_for_tests();
        let mut mine = tx.reserve(&cx);
        let first = poll_once(&mut mine);
        drop(permit);
        if let Poll::Ready(got) = first {
            // Only possible if the waiter already came and went: it can't,
            // the only slot was ours.
            panic!("reserved a second slot of one: {got:?}");
        }
        drop(mine);
        waiter.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty));
    });
}

/// (c) The receiver is dropped while a sender commits: the value is either
/// handed back to the sender or counted undelivered, and dropped (not
/// leaked) exactly once.
#[test]
fn receiver_drop_races_commit() {
    loom::model(|| {
        let token = Arc::new(());
        let (tx, rx) = mpsc::channel::<Arc<()>>(1).unwrap();
        let tx2 = tx.clone();
        let value = token.clone();
        let sender = thread::spawn(move || {
            let permit = tx2.try_reserve();
            match permit {
                Ok(p) => match p.send(value) {
                    Ok(()) => true,
                    Err(mpsc::Closed(back)) => {
                        drop(back);
                        false
                    }
                },
                Err(mpsc::TrySendError::Closed(())) => false,
                Err(mpsc::TrySendError::Full(())) => unreachable!("capacity 1, nothing sent"),
            }
        });
        drop(rx);
        let committed = sender.join().unwrap();
        assert_eq!(tx.undelivered(), u64::from(committed));
        assert_eq!(Arc::strong_count(&token), 1, "value leaked");
    });
}

/// (c') The receiver closes while a sender sends (waiting if it must): the
/// value is either received or returned with `Closed`, and the receiver
/// then ends with `Disconnected` though the sender is still alive.
#[test]
fn close_races_send() {
    loom::model(|| {
        let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let sender = thread::spawn(move || {
            let cx = Cx::detached_for_tests();
            let sent = block_on(tx.send(&cx, 7));
            // Keep the sender alive until the receiver is done.
            let mut done_rx = done_rx;
            let _ = block_on(done_rx.recv(&cx));
            drop(tx);
            sent
        });
        rx.close();
        let cx = Cx::detached_for_tests();
        let mut received = Vec::new();
        loop {
            match block_on(rx.recv(&cx)) {
                Ok(v) => received.push(v),
                Err(mpsc::RecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        done_tx.send(()).unwrap();
        match sender.join().unwrap() {
            Ok(()) => assert_eq!(received, [7]),
            Err(e) => {
                assert!(received.is_empty());
                assert_eq!(e, mpsc::SendError::Closed(7));
            }
        }
    });
}

/// (c'') The receiver closes and waits while a sender holds a permit and
/// drops it unused: the last permit's release wakes the receiver, which
/// ends with `Disconnected` though the sender is still alive.
#[test]
fn close_then_last_permit_dropped() {
    loom::model(|| {
        let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
        let permit = tx.try_reserve().unwrap();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let receiver = thread::spawn(move || {
            rx.close();
            let cx = Cx::detached_for_tests();
            let end = block_on(rx.recv(&cx));
            done_tx.send(()).unwrap();
            end
        });
        drop(permit);
        let cx = Cx::detached_for_tests();
        let mut done_rx = done_rx;
        block_on(done_rx.recv(&cx)).unwrap();
        assert_eq!(receiver.join().unwrap(), Err(mpsc::RecvError::Disconnected));
        drop(tx);
    });
}

/// (c''') The receiver closes while a sender waits for a slot of a full
/// channel: the waiter is woken and gets its value back with `Closed`; the
/// queued value is still received, then the channel ends.
#[test]
fn close_wakes_waiting_reserver() {
    loom::model(|| {
        let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
        tx.try_send(1).unwrap();
        let tx2 = tx.clone();
        let sender = thread::spawn(move || {
            let cx = Cx::detached_for_tests();
            block_on(tx2.send(&cx, 2))
        });
        rx.close();
        assert_eq!(sender.join().unwrap(), Err(mpsc::SendError::Closed(2)));
        let cx = Cx::detached_for_tests();
        assert_eq!(block_on(rx.recv(&cx)), Ok(1));
        assert_eq!(block_on(rx.recv(&cx)), Err(mpsc::RecvError::Disconnected));
        drop(tx);
    });
}

/// (d) oneshot: a send races the receiver's drop: the value comes back to
/// the sender, or, delivered, is dropped by the receiver: exactly once,
/// and never by a send that returned `Ok` (its `Drop` is the receiver's
/// to run, and to catch).
#[test]
fn oneshot_send_races_receiver_drop() {
    /// Records the thread that drops it.
    struct Value(Arc<std::sync::Mutex<Vec<thread::ThreadId>>>);
    impl Drop for Value {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(thread::current().id());
        }
    }
    loom::model(|| {
        let dropped = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = oneshot::channel::<Value>();
        let value = Value(dropped.clone());
        let sender = thread::spawn(move || {
            let sent = match tx.send(value) {
                Ok(()) => true,
                Err(back) => {
                    drop(back);
                    false
                }
            };
            (sent, thread::current().id())
        });
        drop(rx);
        let (sent, sender_id) = sender.join().unwrap();
        let dropped = dropped.lock().unwrap();
        assert_eq!(dropped.len(), 1, "dropped exactly once");
        if sent {
            assert_ne!(
                dropped[0], sender_id,
                "a send that delivered dropped the value"
            );
        }
    });
}

/// (d') oneshot: a waiting `recv` gets the value, or `Closed` if the sender
/// is dropped instead; never hangs.
#[test]
fn oneshot_recv_races_send_or_drop() {
    loom::model(|| {
        for send in [true, false] {
            let (tx, mut rx) = oneshot::channel::<u32>();
            let sender = thread::spawn(move || {
                if send {
                    tx.send(1).unwrap();
                } else {
                    drop(tx);
                }
            });
            let cx = Cx::detached_for_tests();
            let got = block_on(rx.recv(&cx));
            if send {
                assert_eq!(got, Ok(1));
            } else {
                assert_eq!(got, Err(oneshot::RecvError::Closed));
            }
            sender.join().unwrap();
        }
    });
}
