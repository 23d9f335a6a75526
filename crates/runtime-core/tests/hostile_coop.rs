//! The cooperative budget (ready await points per task turn) against a
//! finalizer's first poll, which is never cut off: a finalizer that opens
//! a region (an await point that spends one unit before its body's first
//! poll) runs, whatever the turn it lands in had spent, at a region's
//! abandoned close and under a zero-poll cleanup budget. Both were cut off
//! (found by review of the region's unit); each runs in a child process
//! under the watchdog.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Waker};

use runtime_core::caps::ambient_authority;
use runtime_core::channel::oneshot;
use runtime_core::time::Duration;
use runtime_core::{CleanupBudget, Cx, RegionOptions, Runtime};
use test_watchdog::isolate;

const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(60);

fn current_thread() -> Runtime {
    Runtime::builder()
        .current_thread()
        .build(ambient_authority())
        .unwrap()
}

/// Spends the rest of this turn's cooperative budget: a ready oneshot
/// polled by hand is `Pending` only once the budget is spent.
fn spend_the_turns_budget<C: runtime_core::caps::CapSet>(cx: &Cx<C>) {
    loop {
        let (tx, mut rx) = oneshot::channel::<()>();
        tx.send(()).unwrap();
        let mut recv = Box::pin(rx.recv(cx));
        if recv
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            return;
        }
    }
}

/// A region whose future is dropped with a child still running: the
/// child's finish runs the finalizers, one poll each, in the child's turn
/// (whose budget the child spent).
#[test]
fn a_finalizer_opening_a_region_runs_after_an_abandoned_close() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let did = Arc::new(AtomicBool::new(false));
            let set = did.clone();
            let go = Arc::new(AtomicBool::new(false));
            let told = go.clone();
            let mut region = Box::pin(cx.region(move |rcx| async move {
                let fcx = rcx.clone();
                rcx.finalizer(async move {
                    let _ = fcx.scope(|_| async {}).await;
                    set.store(true, Ordering::SeqCst);
                });
                rcx.spawn(move |ccx| async move {
                    while !told.load(Ordering::SeqCst) {
                        let _ = ccx.yield_now().await;
                    }
                    spend_the_turns_budget(&ccx);
                });
                std::future::pending::<()>().await;
                Ok::<_, ()>(())
            }));
            assert!(
                region
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
            drop(region);
            go.store(true, Ordering::SeqCst);
            cx.sleep(Duration::from_millis(50)).await.map_err(|_| ())?;
            Ok::<_, ()>(did.load(Ordering::SeqCst))
        });
        assert_eq!(out.ok(), Some(true), "{:?}", rt.stats());
        assert_eq!(rt.stats().finalizers_cut_off, 0, "{:?}", rt.stats());
    });
}

/// A body that spent its turn's budget, then returns: the finalizer's
/// first poll comes in that turn, under a cleanup budget of zero polls.
#[test]
fn a_finalizer_opening_a_region_runs_under_a_zero_poll_cleanup_budget() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let did = Arc::new(AtomicBool::new(false));
            let set = did.clone();
            let opts = RegionOptions::fail_fast().cleanup(CleanupBudget {
                polls: Some(0),
                grace: None,
            });
            let closed = cx
                .region_with(opts, move |rcx| async move {
                    let fcx = rcx.clone();
                    rcx.finalizer(async move {
                        let _ = fcx.scope(|_| async {}).await;
                        set.store(true, Ordering::SeqCst);
                    });
                    spend_the_turns_budget(&rcx);
                    Ok::<_, ()>(())
                })
                .await;
            assert!(closed.is_ok(), "{closed:?}");
            Ok::<_, ()>(did.load(Ordering::SeqCst))
        });
        assert_eq!(out.ok(), Some(true), "{:?}", rt.stats());
        assert_eq!(rt.stats().finalizers_cut_off, 0, "{:?}", rt.stats());
    });
}

/// A finalizer whose first poll yields (`yield_now`) is polled again: the
/// fresh budget of its first poll does not swallow the yield's request.
#[test]
fn a_finalizer_that_yields_in_its_first_poll_is_polled_again() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(|cx| async move {
            let did = Arc::new(AtomicBool::new(false));
            let set = did.clone();
            let closed = cx
                .region(move |rcx| async move {
                    let fcx = rcx.clone();
                    rcx.finalizer(async move {
                        let _ = fcx.yield_now().await;
                        set.store(true, Ordering::SeqCst);
                    });
                    Ok::<_, ()>(())
                })
                .await;
            assert!(closed.is_ok(), "{closed:?}");
            Ok::<_, ()>(did.load(Ordering::SeqCst))
        });
        assert_eq!(out.ok(), Some(true), "{:?}", rt.stats());
    });
}

/// A finalizer that, until told to stop, passes two await points ready at
/// once and registers its successor (a "try again" cleanup).
fn retrying_finalizer(
    cx: Cx<runtime_core::caps::All>,
    stop: Arc<AtomicBool>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        for _ in 0..2 {
            let (tx, mut rx) = oneshot::channel::<u8>();
            tx.send(1).unwrap();
            let _ = rx.recv(&cx).await;
        }
        let next = retrying_finalizer(cx.clone(), stop);
        cx.finalizer(next);
    })
}

/// Each finalizer spends a unit of the turn's budget before its first
/// poll (as a region before its body's): a chain of finalizers, each
/// registering the next, yields now and then, and the task that tells it
/// to stop runs (with a fresh budget for each first poll and none spent
/// around it, the chain never yielded: the worker spun for ever).
#[test]
fn a_chain_of_finalizers_on_ready_await_points_yields() {
    isolate(WATCHDOG, || {
        let rt = current_thread();
        let out = rt.block_on(move |cx| async move {
            let stop = Arc::new(AtomicBool::new(false));
            let told = stop.clone();
            let _stopper = cx.spawn(move |_| async move { told.store(true, Ordering::SeqCst) });
            cx.region(move |cx| async move {
                cx.finalizer(retrying_finalizer(cx.clone(), stop));
                Ok::<_, ()>(())
            })
            .await
            .ok()
            .ok_or(())
        });
        assert!(out.is_ok(), "{out:?}");
        assert_eq!(rt.stats().finalizers_cut_off, 0, "{:?}", rt.stats());
    });
}
