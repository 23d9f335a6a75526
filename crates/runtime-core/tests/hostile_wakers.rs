//! Wakers that are user code at its worst, met where the runtime keeps a
//! waker of a region's body or of a sleep: a `Drop` that panics, a
//! `clone` that panics, a `clone` that makes a new allocation (so the
//! clone's identity is not the original's). Each case was found by
//! review and fails on the code before its fix; each runs in a child
//! process under the watchdog (they hung, crashed, or read freed memory:
//! `cargo xtask asan` runs them under AddressSanitizer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, RawWaker, RawWakerVTable, Waker};

use runtime_core::caps::ambient_authority;
use runtime_core::time::Duration;
use runtime_core::{CancelReason, Cancelled, CleanupBudget, RegionOptions, Runtime};
use test_watchdog::isolate;

const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(60);

/// While set, the wakers of [`fragile_waker`] panic when dropped.
static PANIC_ON_DROP: AtomicBool = AtomicBool::new(false);
/// While set, the wakers of [`fragile_waker`] panic when cloned (a waker
/// of an executor that is gone, say).
static PANIC_ON_CLONE: AtomicBool = AtomicBool::new(false);

/// An `Arc`-backed waker that does nothing when woken and panics when
/// dropped or cloned while the flags above say so.
fn fragile_waker() -> Waker {
    unsafe fn clone(p: *const ()) -> RawWaker {
        if PANIC_ON_CLONE.load(Ordering::SeqCst) {
            panic!("this waker cannot be cloned");
        }
        // SAFETY: `p` came from `Arc::into_raw` and is alive.
        unsafe { Arc::increment_strong_count(p.cast::<()>()) };
        RawWaker::new(p, &VTABLE)
    }
    unsafe fn wake(p: *const ()) {
        // SAFETY: as `drop_waker`.
        unsafe { drop_waker(p) };
    }
    unsafe fn wake_by_ref(_: *const ()) {}
    unsafe fn drop_waker(p: *const ()) {
        // SAFETY: each waker holds one count.
        drop(unsafe { Arc::from_raw(p.cast::<()>()) });
        if PANIC_ON_DROP.load(Ordering::SeqCst) {
            panic!("a waker whose drop panics");
        }
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);
    let data = Arc::into_raw(Arc::new(())).cast::<()>();
    // SAFETY: the vtable keeps the `Arc`'s counts.
    unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) }
}

/// A waker whose every clone is a new allocation (a new data pointer),
/// setting `flag` when woken.
fn boxed_waker(flag: Arc<AtomicBool>) -> Waker {
    unsafe fn clone(p: *const ()) -> RawWaker {
        // SAFETY: `p` is a live `Box<Arc<AtomicBool>>`.
        let flag = unsafe { &*p.cast::<Arc<AtomicBool>>() };
        RawWaker::new(Box::into_raw(Box::new(flag.clone())).cast(), &VTABLE)
    }
    unsafe fn wake(p: *const ()) {
        // SAFETY: as above.
        unsafe {
            wake_by_ref(p);
            drop_waker(p);
        }
    }
    unsafe fn wake_by_ref(p: *const ()) {
        // SAFETY: as above.
        unsafe { &*p.cast::<Arc<AtomicBool>>() }.store(true, Ordering::SeqCst);
    }
    unsafe fn drop_waker(p: *const ()) {
        // SAFETY: each waker owns its box.
        drop(unsafe { Box::from_raw(p.cast_mut().cast::<Arc<AtomicBool>>()) });
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);
    // SAFETY: the vtable owns the box.
    unsafe { Waker::from_raw(RawWaker::new(Box::into_raw(Box::new(flag)).cast(), &VTABLE)) }
}

fn current_thread() -> Runtime {
    Runtime::builder()
        .current_thread()
        .build(ambient_authority())
        .unwrap()
}

/// Region options with no poll limit on cleanup and `grace` of it.
fn with_grace(grace: Duration) -> RegionOptions {
    RegionOptions::fail_fast().cleanup(CleanupBudget {
        polls: None,
        grace: Some(grace),
    })
}

/// Polls `fut` once with `w`; it must stay pending.
fn poll_pending<F: Future + Unpin>(fut: &mut F, w: &Waker) {
    assert!(Pin::new(fut).poll(&mut Context::from_waker(w)).is_pending());
}

/// Polls `fut` once with `w` while `flag` is set (a waker's `clone` or
/// `Drop` then panics): what came of the poll, or that the panic escaped
/// it.
fn poll_armed<F: Future + Unpin>(
    fut: &mut F,
    w: &Waker,
    flag: &AtomicBool,
) -> Result<std::task::Poll<F::Output>, &'static str> {
    flag.store(true, Ordering::SeqCst);
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Pin::new(fut).poll(&mut Context::from_waker(w))
    }));
    flag.store(false, Ordering::SeqCst);
    polled.map_err(|_| "the waker's panic escaped the poll")
}

/// A future pending (waking nobody) at its first `n - 1` polls, ready at
/// the `n`th.
fn ready_at_poll(n: u32) -> impl Future<Output = ()> + Send {
    let mut polls = 0;
    std::future::poll_fn(move |_| {
        polls += 1;
        if polls < n {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
}

/// A region whose body was last polled by a waker that panics when
/// dropped, and which closes at that poll: the close drops the stored
/// waker. Its panic is caught and counted; the close is whole, so the
/// region around it closes (its parent waited for ever), and the owner
/// task's list of open regions does not keep a pointer to the freed node
/// (a later cancellation of the owner wrote into freed memory).
#[test]
fn a_region_closed_under_a_waker_whose_drop_panics_closes_whole() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let owner = cx.try_spawn(|cx| async move {
                let mut region = Box::pin(cx.region(|cx| async move {
                    cx.yield_now().await.map_err(|_| ())?;
                    Ok::<_, ()>(5)
                }));
                let w = fragile_waker();
                poll_pending(&mut region, &w);
                let closed = poll_armed(&mut region, &w, &PANIC_ON_DROP);
                assert!(matches!(closed, Ok(std::task::Poll::Ready(ref o)) if o.is_ok()));
                drop(region);
                drop(w);
                // Cancelled here: the request walks the task's open regions.
                cx.sleep(Duration::from_secs(3600)).await?;
                Ok::<_, Cancelled>(())
            });
            cx.sleep(Duration::from_millis(20)).await.map_err(|_| ())?;
            owner.cancel(CancelReason::user("stop"));
            Ok::<_, ()>(owner.await)
        });
        let owner = out.ok().expect("the root region closed");
        assert!(owner.is_cancelled(), "{owner:?}");
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
    });
}

/// A region's body polled by a waker whose `clone` panics at the time of
/// the region's cut-off (its cleanup grace period over): the cut-off
/// still reaches the task that ignores its cancellation (it never did:
/// the panic unwound out of the cut-off before it reached the tasks).
/// Since a later review the cut-off wakes the stored waker through a
/// shared count, without a clone: the panic is not even reached.
#[test]
fn a_cut_off_reaches_the_tasks_whatever_the_body_waker_does() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let dropped = Arc::new(AtomicBool::new(false));
            let set = dropped.clone();
            // A grace long enough that the waker is armed before it ends
            // on a loaded machine (a flaky-test hunt: a 30 ms one ended
            // before, under load 14 on 2 cores).
            let opts = with_grace(Duration::from_millis(500));
            let mut region = Box::pin(cx.region_with(opts, move |cx| async move {
                // Ignores its cancellation: only a cut-off ends it.
                cx.spawn(move |cx| async move {
                    let _set_when_dropped = SetOnDrop(set);
                    loop {
                        let _ = cx.sleep(Duration::from_millis(2)).await;
                    }
                });
                cx.yield_now().await.ok();
                cx.cancel(CancelReason::user("stop"));
                std::future::pending::<()>().await;
                Ok::<_, ()>(())
            }));
            let w = fragile_waker();
            for _ in 0..3 {
                poll_pending(&mut region, &w);
                cx.yield_now().await.map_err(|_| ())?;
            }
            PANIC_ON_CLONE.store(true, Ordering::SeqCst);
            // Until the cut-off task is dropped, or 10 s (not one fixed
            // sleep: a stall could fire the sleep's timer and the grace's
            // in one pass, and this look come before the drop).
            let mut waited = 0;
            while !dropped.load(Ordering::SeqCst) && waited < 1_000 {
                cx.sleep(Duration::from_millis(10)).await.map_err(|_| ())?;
                waited += 1;
            }
            PANIC_ON_CLONE.store(false, Ordering::SeqCst);
            let cut_off = dropped.load(Ordering::SeqCst);
            drop(region);
            Ok::<_, ()>(cut_off)
        });
        assert_eq!(
            out.ok(),
            Some(true),
            "the task that ignores its cancellation was cut off after its grace"
        );
    });
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The same waker met by a shutdown's forced cut-off: its panic does not
/// escape `ShutdownHandle::shutdown` (it did, leaving the root's sweep
/// half done).
#[test]
fn shutdown_survives_a_body_waker_whose_clone_panics() {
    isolate(WATCHDOG, || {
        let rt = Runtime::builder()
            .worker_threads(1)
            .build(ambient_authority())
            .unwrap();
        let handle = rt.shutdown_handle();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = rt.block_on(|cx| async move {
                let opts = RegionOptions::fail_fast().cleanup(CleanupBudget::UNLIMITED);
                let mut region = Box::pin(cx.region_with(opts, move |cx| async move {
                    cx.spawn(move |cx| async move {
                        loop {
                            let _ = cx.sleep(Duration::from_millis(2)).await;
                        }
                    });
                    std::future::pending::<()>().await;
                    Ok::<_, ()>(())
                }));
                let w = fragile_waker();
                for _ in 0..3 {
                    poll_pending(&mut region, &w);
                    cx.yield_now().await.map_err(|_| ())?;
                }
                PANIC_ON_CLONE.store(true, Ordering::SeqCst);
                let _ = ready_tx.send(());
                std::future::pending::<()>().await;
                drop(region);
                Ok::<_, ()>(())
            });
            // The runtime is shut down through the handle; its drop
            // (which would wait for the block_on's thread) is left out.
            std::mem::forget(rt);
        });
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        let shut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            handle.shutdown(std::time::Duration::from_millis(200))
        }));
        assert!(
            shut.is_ok(),
            "ShutdownHandle::shutdown panicked with the waker's panic"
        );
    });
}

/// Polls `fut` (pending both times) with one [`boxed_waker`], drops it,
/// then with another, whose allocation takes the first one's address (the
/// allocator gives the freed block back). Returns the second waker's flag
/// (set when it is woken) and whether it did take the address (the case
/// the bug needed: shown, so that a pass is not an accident of the
/// allocator).
fn poll_by_two_wakers_at_one_address<F: Future + Unpin>(fut: &mut F) -> (Arc<AtomicBool>, bool) {
    // Both flags made first: nothing else is allocated between the drop
    // of the first waker and the making of the second.
    let (first, last) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let a = boxed_waker(first);
    let first_address = a.data();
    assert!(
        Pin::new(&mut *fut)
            .poll(&mut Context::from_waker(&a))
            .is_pending()
    );
    drop(a);
    let b = boxed_waker(last.clone());
    let same_address = b.data() == first_address;
    assert!(
        Pin::new(&mut *fut)
            .poll(&mut Context::from_waker(&b))
            .is_pending()
    );
    (last, same_address)
}

/// The second waker of [`poll_by_two_wakers_at_one_address`] took the
/// first one's address (not checked under AddressSanitizer, whose
/// allocator keeps freed blocks in quarantine).
fn assert_took_the_address(same_address: bool) {
    assert!(
        same_address || cfg!(runtime_core_asan),
        "the second waker did not take the first one's address"
    );
}

/// A sleep polled by a waker, then (that waker dropped) by another whose
/// allocation took the first one's address: it wakes the waker of its
/// last poll. (It kept the first poll's identity but stored a clone with
/// another: the second poll looked like the same waker, and the timer
/// woke the dropped waker's clone.)
#[test]
fn a_sleep_wakes_the_waker_of_its_last_poll() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let mut sleep = cx.sleep(Duration::from_millis(20));
            let (last, same_address) = poll_by_two_wakers_at_one_address(&mut sleep);
            cx.sleep(Duration::from_millis(200)).await.map_err(|_| ())?;
            Ok::<_, ()>((same_address, last.load(Ordering::SeqCst)))
        });
        let (same_address, woken) = out.ok().unwrap();
        assert!(woken, "the waker of the last poll was never woken");
        assert_took_the_address(same_address);
    });
}

/// The same for a region's body, woken by its timeout through the waker
/// of its last poll.
#[test]
fn a_region_body_is_woken_through_the_waker_of_its_last_poll() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let mut timed = Box::pin(cx.timeout(Duration::from_millis(20), |cx| async move {
                cx.sleep(Duration::from_secs(3600)).await?;
                Ok::<_, Cancelled>(())
            }));
            let (last, same_address) = poll_by_two_wakers_at_one_address(&mut timed);
            cx.sleep(Duration::from_millis(300)).await.map_err(|_| ())?;
            let woken = last.load(Ordering::SeqCst);
            let mut closed = false;
            for _ in 0..100 {
                if timed
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_ready()
                {
                    closed = true;
                    break;
                }
                cx.sleep(Duration::from_millis(5)).await.map_err(|_| ())?;
            }
            Ok::<_, ()>((same_address, woken, closed))
        });
        let (same_address, woken, closed) = out.ok().unwrap();
        assert!(closed, "the timed-out region never closed");
        assert!(woken, "the timeout never woke the waker of the last poll");
        assert_took_the_address(same_address);
    });
}

/// A finalizer's grace timer wakes the waker of the region's last poll:
/// a region polled once by another waker (a combinator's, since gone),
/// then awaited by its task, is woken at the end of the grace period and
/// cuts its stuck finalizer off (the timer woke the first poll's waker
/// only, and the task slept for ever).
#[test]
fn a_finalizers_grace_period_wakes_the_waker_of_the_last_poll() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let opts = with_grace(Duration::from_millis(20));
            let mut region = Box::pin(cx.region_with(opts, |cx| async move {
                cx.finalizer(std::future::pending::<()>());
                Ok::<_, ()>(7)
            }));
            poll_pending(&mut region, Waker::noop());
            Ok::<_, ()>(region.await.ok())
        });
        assert_eq!(out.ok(), Some(Some(7)));
        assert_eq!(rt.stats().finalizers_cut_off, 1, "{:?}", rt.stats());
    });
}

/// The waker held by a finalizer's grace timer, whose `Drop` panics when
/// the close cancels that timer: the panic is caught and counted, and
/// the region's value comes out of its poll (the panic escaped the
/// region's poll, and the value was lost).
#[test]
fn a_finalizer_timers_waker_whose_drop_panics_is_caught() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let mut region = Box::pin(cx.region(|cx| async move {
                let mut first = true;
                // Two polls: the first arms the grace timer with the
                // polling waker.
                cx.finalizer(std::future::poll_fn(move |t| {
                    if std::mem::take(&mut first) {
                        t.waker().wake_by_ref();
                        std::task::Poll::Pending
                    } else {
                        std::task::Poll::Ready(())
                    }
                }));
                Ok::<_, ()>(3)
            }));
            let w = fragile_waker();
            poll_pending(&mut region, &w);
            let value = poll_armed(&mut region, &w, &PANIC_ON_DROP).map(|p| p.map(|o| o.ok()));
            drop(region);
            drop(w);
            Ok::<_, ()>(value)
        });
        assert_eq!(out.ok(), Some(Ok(std::task::Poll::Ready(Some(3)))));
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
    });
}

/// A finalizer's grace timer moving to a new polling waker whose `clone`
/// panics: the panic is caught and counted, the old timer stays, and the
/// region goes on to its value (the panic unwound out of the region's
/// poll, which poisoned its future: "`async fn` resumed after
/// panicking").
#[test]
fn a_finalizer_timers_new_waker_whose_clone_panics_is_caught() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let opts = with_grace(Duration::from_secs(3600));
            let mut region = Box::pin(cx.region_with(opts, |cx| async move {
                cx.finalizer(ready_at_poll(3));
                Ok::<_, ()>(3)
            }));
            let (a, b) = (fragile_waker(), fragile_waker());
            poll_pending(&mut region, &a);
            let second = poll_armed(&mut region, &b, &PANIC_ON_CLONE).map(|p| p.is_pending());
            Ok::<_, ()>((second, region.await.ok()))
        });
        assert_eq!(out.ok(), Some((Ok(true), Some(3))));
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
    });
}

/// A region's body polled by one waker, then by another while the first
/// one's `Drop` panics: the region lets the first one's clone go, catches
/// and counts the panic, and comes to its value (the panic poisoned the
/// region's future).
#[test]
fn a_region_body_waker_let_go_at_a_waker_change_whose_drop_panics_is_caught() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let mut region = Box::pin(cx.region(|_| async move {
                ready_at_poll(3).await;
                Ok::<_, ()>(4)
            }));
            let (a, b) = (fragile_waker(), fragile_waker());
            poll_pending(&mut region, &a);
            let second = poll_armed(&mut region, &b, &PANIC_ON_DROP).map(|p| p.is_pending());
            // Not poisoned: the next poll comes to the value.
            let third = Pin::new(&mut region)
                .poll(&mut Context::from_waker(Waker::noop()))
                .map(|o| o.ok());
            Ok::<_, ()>((second, third))
        });
        assert_eq!(out.ok(), Some((Ok(true), std::task::Poll::Ready(Some(4)))));
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
    });
}

/// While set, the next clone of a [`clone_fails_once`] waker panics (and
/// clears it).
static CLONE_FAILS_ONCE: AtomicBool = AtomicBool::new(false);

/// A waker forwarding to `inner`, whose next clone panics while
/// [`CLONE_FAILS_ONCE`] is set: a transient failure.
fn clone_fails_once(inner: Waker) -> Waker {
    unsafe fn clone(p: *const ()) -> RawWaker {
        if CLONE_FAILS_ONCE.swap(false, Ordering::SeqCst) {
            panic!("this clone fails once");
        }
        // SAFETY: `p` is a live `Box<Waker>`.
        let inner = unsafe { &*p.cast::<Waker>() }.clone();
        RawWaker::new(Box::into_raw(Box::new(inner)).cast(), &VTABLE)
    }
    unsafe fn wake(p: *const ()) {
        // SAFETY: each waker owns its box.
        unsafe { Box::from_raw(p.cast_mut().cast::<Waker>()) }.wake();
    }
    unsafe fn wake_by_ref(p: *const ()) {
        // SAFETY: as in `clone`.
        unsafe { &*p.cast::<Waker>() }.wake_by_ref();
    }
    unsafe fn drop_waker(p: *const ()) {
        // SAFETY: as in `wake`.
        drop(unsafe { Box::from_raw(p.cast_mut().cast::<Waker>()) });
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);
    // SAFETY: the vtable owns the box.
    unsafe {
        Waker::from_raw(RawWaker::new(
            Box::into_raw(Box::new(inner)).cast(),
            &VTABLE,
        ))
    }
}

/// Polls `region` with `b` until it is ready, or until a 3 s sleep of the
/// task is over: which came first.
async fn ready_or_backstop<F: Future + Unpin>(
    cx: &runtime_core::Cx,
    region: &mut F,
    b: &Waker,
    ready: &'static str,
) -> &'static str {
    let mut backstop = Box::pin(cx.sleep(Duration::from_secs(3)));
    std::future::poll_fn(|task| {
        if backstop.as_mut().poll(task).is_ready() {
            return std::task::Poll::Ready("only the 3 s backstop woke the task");
        }
        Pin::new(&mut *region)
            .poll(&mut Context::from_waker(b))
            .map(|_| ready)
    })
    .await
}

/// A region's body polled by one waker, then for good by the task's own
/// waker wrapped in one whose first clone panics: the panic is caught,
/// the new poller is asked to poll again (and the clone retried), so the
/// region's cancellation reaches it (the node kept the old poller's
/// waker, and only a later, unrelated wake-up of the task ended it).
#[test]
fn a_region_whose_new_pollers_clone_panicked_once_is_woken_for_its_cancellation() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let mut region = Box::pin(cx.region(|rcx| async move {
                let stopper = rcx.clone();
                let _h = rcx.spawn(move |ccx| async move {
                    let _ = ccx.sleep(Duration::from_millis(50)).await;
                    stopper.cancel(CancelReason::user("stop"));
                });
                std::future::poll_fn(|_| {
                    if rcx.is_cancel_requested() {
                        std::task::Poll::Ready(())
                    } else {
                        std::task::Poll::Pending
                    }
                })
                .await;
                Ok::<_, ()>(())
            }));
            poll_pending(&mut region, Waker::noop());
            let task = std::future::poll_fn(|t| std::task::Poll::Ready(t.waker().clone())).await;
            let b = clone_fails_once(task);
            CLONE_FAILS_ONCE.store(true, Ordering::SeqCst);
            let narrow = cx.narrow();
            Ok::<_, ()>(
                ready_or_backstop(&narrow, &mut region, &b, "the region saw its cancellation")
                    .await,
            )
        });
        assert_eq!(out.ok(), Some("the region saw its cancellation"));
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
    });
}

/// The same for a finalizer's grace timer: polled once by one waker,
/// then for good by the task's, whose first clone panics: the finalizer
/// is cut off at the end of its grace (the timer woke the old waker
/// only).
#[test]
fn a_finalizer_whose_new_pollers_clone_panicked_once_is_cut_off_at_its_grace() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let opts = with_grace(Duration::from_millis(100));
            let mut region = Box::pin(cx.region_with(opts, |rcx| async move {
                rcx.finalizer(std::future::pending::<()>());
                Ok::<_, ()>(())
            }));
            poll_pending(&mut region, Waker::noop());
            let task = std::future::poll_fn(|t| std::task::Poll::Ready(t.waker().clone())).await;
            let b = clone_fails_once(task);
            CLONE_FAILS_ONCE.store(true, Ordering::SeqCst);
            let narrow = cx.narrow();
            Ok::<_, ()>(
                ready_or_backstop(
                    &narrow,
                    &mut region,
                    &b,
                    "the finalizer was cut off at its grace",
                )
                .await,
            )
        });
        assert_eq!(out.ok(), Some("the finalizer was cut off at its grace"));
        assert_eq!(rt.stats().finalizers_cut_off, 1, "{:?}", rt.stats());
    });
}

/// A channel's receive (mpsc and oneshot, through the waker slot that
/// join handles and region closers share) polled with one waker, then
/// with another while the first one's `Drop` panics: the panic is caught
/// and counted, and the receive stays pending (found by review: it
/// escaped the poll).
#[test]
fn a_receivers_old_waker_whose_drop_panics_is_caught() {
    use runtime_core::channel::{mpsc, oneshot};
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let (_tx, mut rx) = mpsc::channel::<u8>(1).unwrap();
            let mut recv = Box::pin(rx.recv(&cx));
            let old = fragile_waker();
            poll_pending(&mut recv, &old);
            drop(old); // the slot's clone is the last one
            let mpsc = poll_armed(&mut recv, Waker::noop(), &PANIC_ON_DROP).map(|p| p.is_pending());
            let (_tx, mut rx) = oneshot::channel::<u8>();
            let mut recv = Box::pin(rx.recv(&cx));
            let old = fragile_waker();
            poll_pending(&mut recv, &old);
            drop(old);
            let oneshot =
                poll_armed(&mut recv, Waker::noop(), &PANIC_ON_DROP).map(|p| p.is_pending());
            Ok::<_, ()>((mpsc, oneshot))
        });
        assert_eq!(out.ok(), Some((Ok(true), Ok(true))));
        assert!(rt.stats().panics_caught >= 2, "{:?}", rt.stats());
    });
}

/// The same, with a send that meets the new registration (made from the
/// new waker's `clone`, as another thread's send would land): the waker
/// the send left to the registering receive is woken, although the old
/// waker's `Drop` panics right after (found by review: the panic skipped
/// that wake, and the value waited with nobody to be told).
#[test]
fn a_receivers_new_waker_is_woken_although_the_old_ones_drop_panics() {
    use runtime_core::channel::mpsc;
    use std::sync::Mutex;
    static TX: Mutex<Option<mpsc::Sender<u8>>> = Mutex::new(None);
    static SEND_ON_CLONE: AtomicBool = AtomicBool::new(false);
    static WOKEN: AtomicBool = AtomicBool::new(false);
    unsafe fn clone(p: *const ()) -> RawWaker {
        if SEND_ON_CLONE.swap(false, Ordering::SeqCst) {
            let tx = TX.lock().unwrap();
            tx.as_ref().unwrap().try_send(7).unwrap();
        }
        RawWaker::new(p, &VTABLE)
    }
    unsafe fn wake(_: *const ()) {
        WOKEN.store(true, Ordering::SeqCst);
    }
    unsafe fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, noop);
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let (tx, mut rx) = mpsc::channel::<u8>(1).unwrap();
            *TX.lock().unwrap() = Some(tx);
            let mut recv = Box::pin(rx.recv(&cx));
            let old = fragile_waker();
            poll_pending(&mut recv, &old);
            drop(old);
            // SAFETY: the vtable's functions hold nothing.
            let new = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
            SEND_ON_CLONE.store(true, Ordering::SeqCst);
            let polled = poll_armed(&mut recv, &new, &PANIC_ON_DROP).map(|p| p.is_pending());
            drop(recv);
            let queued = rx.len();
            drop(TX.lock().unwrap().take());
            Ok::<_, ()>((polled, queued, WOKEN.load(Ordering::SeqCst)))
        });
        // The poll came back: with the value (its look after registering
        // found it), or pending with the value queued and the poll's
        // waker told.
        let (polled, queued, woken) = out.ok().expect("the root's body returned");
        match polled {
            Ok(false) => assert_eq!(queued, 0, "the poll took the value"),
            Ok(true) => assert!(queued == 1 && woken, "queued {queued}, woken {woken}"),
            Err(e) => panic!("{e}"),
        }
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
    });
}
