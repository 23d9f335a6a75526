//! Channels on the real runtime: nothing lost when waits are cancelled.

use runtime_core::caps::ambient_authority;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;

use runtime_core::channel::{mpsc, oneshot};
use runtime_core::time::Duration;
use runtime_core::{CancelKind, CancelReason, Outcome, RegionOptions, Runtime};

fn rt() -> Runtime {
    Runtime::builder()
        .worker_threads(2)
        .build(ambient_authority())
        .unwrap()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Senders cancelled at random points while waiting for capacity or
/// between sends: every value is received or handed back to its sender,
/// and none twice.
#[test]
fn cancelled_senders_lose_nothing() {
    let mut handed_back = 0;
    for seed in 1..=20u64 {
        let rt = rt();
        let out = rt.block_on(move |cx| async move {
            let (tx, mut rx) = mpsc::channel::<u64>(2).unwrap();
            let returned = Arc::new(Mutex::new(Vec::new()));
            let attempted = Arc::new(Mutex::new(0u64));
            let (ret, att) = (returned.clone(), attempted.clone());
            let senders = cx.region_with(RegionOptions::collect_all(), move |cx| async move {
                let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for s in 0..4u64 {
                    let tx = tx.clone();
                    let (ret, att) = (ret.clone(), att.clone());
                    let pauses: Vec<u64> = (0..200).map(|_| rng.next(3)).collect();
                    cx.try_spawn(move |cx| async move {
                        for (i, pause) in pauses.into_iter().enumerate() {
                            *att.lock().unwrap() += 1;
                            let v = s * 1_000 + i as u64;
                            match tx.send(&cx, v).await {
                                Ok(()) => {}
                                Err(mpsc::SendError::Cancelled(_, v)) => {
                                    ret.lock().unwrap().push(v);
                                    return Ok::<_, ()>(());
                                }
                                Err(mpsc::SendError::Closed(v)) => {
                                    ret.lock().unwrap().push(v);
                                    return Ok(());
                                }
                            }
                            for _ in 0..pause {
                                if cx.yield_now().await.is_err() {
                                    return Ok(());
                                }
                            }
                        }
                        Ok(())
                    });
                }
                drop(tx);
                // Cancel the senders after a random number of turns.
                for _ in 0..rng.next(300) {
                    cx.yield_now().await.map_err(|_| ())?;
                }
                cx.cancel(CancelReason::user("stop sending"));
                Ok::<_, ()>(())
            });
            let receiver = cx.try_spawn(move |cx| async move {
                let mut got = Vec::new();
                loop {
                    match rx.recv(&cx).await {
                        Ok(v) => got.push(v),
                        Err(mpsc::RecvError::Disconnected) => return Ok::<_, ()>(got),
                        Err(e) => panic!("receiver: {e:?}"),
                    }
                    // A slow receiver keeps the channel full.
                    cx.yield_now().await.map_err(|_| ())?;
                }
            });
            let s = senders.await;
            assert!(!matches!(s, Outcome::Panicked(_)), "{:?}", s.map(|_| ()));
            let got = receiver.await.unwrap();
            let attempted = *attempted.lock().unwrap();
            let returned = returned.lock().unwrap().clone();
            Ok::<_, ()>((got, returned, attempted))
        });
        let (got, returned, attempted) = out.ok().unwrap();
        let unique: HashSet<_> = got.iter().chain(returned.iter()).collect();
        assert_eq!(
            unique.len(),
            got.len() + returned.len(),
            "seed {seed}: a value twice"
        );
        assert_eq!(
            attempted,
            (got.len() + returned.len()) as u64,
            "seed {seed}: sent = received + returned"
        );
        handed_back += returned.len();
    }
    // The workload did cancel senders mid-send (else it proves nothing).
    assert!(handed_back > 0);
}

#[test]
fn dropping_a_permit_returns_its_slot() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let (tx, mut rx) = mpsc::channel::<u8>(1).unwrap();
        let p = tx.reserve(&cx).await.unwrap();
        assert!(matches!(
            tx.try_reserve(),
            Err(mpsc::TrySendError::Full(()))
        ));
        drop(p);
        tx.reserve(&cx).await.unwrap().send(9).unwrap();
        Ok::<_, ()>(rx.recv(&cx).await.unwrap())
    });
    assert_eq!(out.ok(), Some(9));
}

#[test]
fn a_cancelled_receive_leaves_the_value_queued() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let (tx, mut rx) = mpsc::channel::<u8>(4).unwrap();
        let h = cx.spawn(move |cx| async move {
            let first = rx.recv(&cx).await;
            (first, rx)
        });
        cx.sleep(Duration::from_millis(5)).await.unwrap();
        h.cancel(CancelReason::user("stop waiting"));
        let (first, mut rx) = h.await.ok().unwrap();
        tx.try_send(1).unwrap();
        Ok::<_, ()>((first, rx.try_recv()))
    });
    let (first, later) = out.ok().unwrap();
    assert!(
        matches!(first, Err(mpsc::RecvError::Cancelled(ref r)) if r.kind() == CancelKind::User)
    );
    assert_eq!(later, Ok(1));
}

#[test]
fn ping_pong_between_tasks() {
    for rt in [
        rt(),
        Runtime::builder()
            .current_thread()
            .build(ambient_authority())
            .unwrap(),
    ] {
        let out = rt.block_on(|cx| async move {
            let (tx1, mut rx1) = mpsc::channel::<u64>(1).unwrap();
            let (tx2, mut rx2) = mpsc::channel::<u64>(1).unwrap();
            cx.try_spawn(move |cx| async move {
                while let Ok(v) = rx1.recv(&cx).await {
                    tx2.send(&cx, v + 1).await.map_err(|_| ())?;
                }
                Ok::<_, ()>(())
            });
            let mut v = 0;
            for _ in 0..1_000 {
                tx1.send(&cx, v).await.map_err(|_| ())?;
                v = rx2.recv(&cx).await.map_err(|_| ())?;
            }
            Ok::<_, ()>(v)
        });
        assert_eq!(out.ok(), Some(1_000));
    }
}

#[test]
fn oneshot_delivers_or_reports_closed() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let (tx, mut rx) = oneshot::channel::<&str>();
        cx.try_spawn(move |_| async move { tx.send("hello").map_err(|_| ()) });
        let got = rx.recv(&cx).await;
        let (tx2, mut rx2) = oneshot::channel::<&str>();
        drop(tx2);
        let closed = rx2.recv(&cx).await;
        Ok::<_, ()>((got, closed))
    });
    let (got, closed) = out.ok().unwrap();
    assert_eq!(got, Ok("hello"));
    assert_eq!(closed, Err(oneshot::RecvError::Closed));
}

// ---- found by review (2026-12-01) ------------------------------------------

/// A message whose `Drop` panics, left in the channel when the receiver
/// goes: the drain stopped at the panic (which unwound out of the
/// receiver's drop, or out of a late send) and the rest went uncounted.
/// Each drop is caught and counted, and every message is counted
/// undelivered.
#[test]
fn undelivered_messages_whose_drop_panics_are_all_counted() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct PanicDrop(bool);
    impl Drop for PanicDrop {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            if self.0 {
                panic!("a message's drop panics");
            }
        }
    }
    let (tx, rx) = mpsc::channel::<PanicDrop>(4).unwrap();
    let (p1, p2, p3) = (
        tx.try_reserve().unwrap(),
        tx.try_reserve().unwrap(),
        tx.try_reserve().unwrap(),
    );
    assert!(p1.send(PanicDrop(true)).is_ok());
    assert!(p2.send(PanicDrop(false)).is_ok());
    drop(rx); // does not unwind
    assert!(p3.send(PanicDrop(false)).is_err(), "the receiver is gone");
    assert_eq!(tx.undelivered(), 2, "both committed messages counted");
    assert_eq!(DROPS.load(Ordering::SeqCst), 3, "each dropped once");
}

/// A queued reservation polled again with another waker, the old one
/// owning the channel's last permit: the old waker was dropped while the
/// waiters' lock was held, the permit's return took the lock again, and
/// the thread (and then every user of the channel) deadlocked. The old
/// waker is now dropped after the lock is let go.
#[test]
fn a_queued_reservation_whose_old_waker_holds_a_permit_does_not_deadlock() {
    test_watchdog::isolate(std::time::Duration::from_secs(60), || {
        use std::future::Future;
        use std::task::{Context, Wake, Waker};
        // Holds the permit only to drop it with the waker.
        struct HoldPermit(#[allow(dead_code)] Mutex<Option<mpsc::Permit<'static, u8>>>);
        impl Wake for HoldPermit {
            fn wake(self: Arc<Self>) {}
        }
        let rt = Runtime::builder()
            .current_thread()
            .build(ambient_authority())
            .unwrap();
        let out = rt.block_on(|cx| async move {
            let (tx, rx) = mpsc::channel::<u8>(1).unwrap();
            let tx: &'static mpsc::Sender<u8> = Box::leak(Box::new(tx));
            let p = tx.try_reserve().unwrap(); // the channel is full
            let w1 = Waker::from(Arc::new(HoldPermit(Mutex::new(Some(p)))));
            let mut fut = Box::pin(tx.reserve(&cx));
            assert!(
                fut.as_mut()
                    .poll(&mut Context::from_waker(&w1))
                    .is_pending()
            );
            drop(w1); // the queue's clone is the permit's last owner
            // Polled with another waker: the old one goes, and its permit
            // with it, which hands the slot to this very reservation.
            let polled = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            let got = match polled {
                std::task::Poll::Ready(Ok(permit)) => {
                    drop(permit);
                    true
                }
                _ => {
                    // Not yet handed: the next poll finds it.
                    matches!(
                        fut.as_mut().poll(&mut Context::from_waker(Waker::noop())),
                        std::task::Poll::Ready(Ok(_))
                    )
                }
            };
            drop(fut);
            drop(rx);
            Ok::<_, ()>(got)
        });
        assert_eq!(out.ok(), Some(true));
    });
}

/// Found by review: a dropped oneshot `Receiver` left the waker its last
/// `recv` registered in the channel, and a `Sender` kept alive elsewhere
/// kept it, and with it the whole allocation of the task that waited (a
/// thousand such tasks, each with 16 KiB, stayed live until their
/// senders went). The receiver's drop now lets its waker go, as mpsc's
/// does.
#[test]
fn a_dropped_oneshot_receiver_lets_its_waker_go() {
    use std::future::Future;
    use std::task::{Context, Wake, Waker};
    struct Flag;
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {}
    }
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let flag = Arc::new(Flag);
        let waker = Waker::from(flag.clone());
        let (tx, mut rx) = oneshot::channel::<u8>();
        {
            let mut recv = Box::pin(rx.recv(&cx));
            assert!(
                recv.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        drop(waker);
        let registered = Arc::strong_count(&flag);
        drop(rx);
        let after_drop = Arc::strong_count(&flag);
        // The sender is still alive, and must not hold the waker.
        let closed = tx.is_closed();
        drop(tx);
        Ok::<_, ()>((registered, after_drop, closed))
    });
    // The channel held one clone while the receiver lived; none after.
    assert_eq!(out.ok(), Some((2, 1, true)));
}

// ---- found by review (2026-12-02) ------------------------------------------

/// A value whose `Drop` panics.
struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("a value whose drop panics");
    }
}

/// A task that panics holding a receiver with a value it never read,
/// whose `Drop` panics: the receiver drops the value during the task's
/// unwind, its panic caught and counted; the task's own panic is its
/// outcome (found by review: with a oneshot receiver, which left the
/// value to the last `Arc`, the process aborted; mpsc's was caught).
#[test]
fn a_task_that_panics_holding_a_receiver_with_an_unread_value_whose_drop_panics() {
    test_watchdog::isolate(std::time::Duration::from_secs(60), || {
        let rt = rt();
        let out = rt.block_on(|cx| async move {
            let (tx, rx) = oneshot::channel::<Bomb>();
            assert!(tx.send(Bomb).is_ok());
            let one = cx.spawn(move |_| async move {
                let _rx = rx;
                panic!("the receiving task fails");
            });
            let (tx, rx) = mpsc::channel::<Bomb>(1).unwrap();
            assert!(tx.try_send(Bomb).is_ok());
            let many = cx.spawn(move |_| async move {
                let _rx = rx;
                panic!("the receiving task fails");
            });
            let (one, many) = (one.await, many.await);
            Ok::<_, ()>((
                matches!(one, Outcome::Panicked(_)),
                matches!(many, Outcome::Panicked(_)),
            ))
        });
        // The children's panics fail the fail-fast root region after its
        // body's value: both were caught, reported, and the process lives.
        assert!(matches!(out, Outcome::Panicked(_)), "{out:?}");
        assert!(rt.stats().panics_caught >= 2, "{:?}", rt.stats());
    });
}

/// A oneshot receiver dropped while a send is under way (here by the
/// receive's waker, which the send wakes): the send has delivered, so it
/// returns `Ok` and the value is the receiver's to drop, on its side
/// (found by review: the send's own last `Arc` dropped the value, and the
/// panic of its `Drop` came out of a send that had succeeded; between
/// threads, 1 to 10 sends in 100 000 dropped the value they delivered).
#[test]
fn a_oneshot_send_that_delivers_never_drops_the_value() {
    use std::future::Future;
    use std::task::{Context, RawWaker, RawWakerVTable, Waker};
    static RX: Mutex<Option<oneshot::Receiver<Bomb>>> = Mutex::new(None);
    unsafe fn clone(p: *const ()) -> RawWaker {
        RawWaker::new(p, &VTABLE)
    }
    unsafe fn wake(_: *const ()) {
        // The receiver goes at the send's wake: caught inside it.
        let rx = RX.lock().unwrap().take();
        drop(rx);
    }
    unsafe fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, noop);
    test_watchdog::isolate(std::time::Duration::from_secs(60), || {
        let rt = Runtime::builder()
            .current_thread()
            .build(ambient_authority())
            .unwrap();
        let out = rt.block_on(|cx| async move {
            let (tx, mut rx) = oneshot::channel::<Bomb>();
            {
                let mut recv = Box::pin(rx.recv(&cx));
                // SAFETY: the vtable's functions hold nothing.
                let w = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
                assert!(
                    recv.as_mut()
                        .poll(&mut Context::from_waker(&w))
                        .is_pending()
                );
            }
            *RX.lock().unwrap() = Some(rx);
            let sent =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tx.send(Bomb).is_ok()));
            Ok::<_, ()>(sent.map_err(|_| "the send panicked with the value's drop"))
        });
        assert_eq!(out.ok(), Some(Ok(true)));
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
    });
}
