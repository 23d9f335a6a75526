//! Runtimes inside runtimes: a current-thread runtime driven in place by a
//! task of another (its shutdown or drop from there), and a blocking job
//! that the lab runs in line inside a task. A call that would wait for the
//! thread it runs on is refused there as at the top level, and the outer
//! task's cooperative state survives the inner runtime's turns. Each case
//! was found by review (2026-12-02) and fails (or hangs, caught by the
//! watchdog) on the code before its fix.
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use runtime_core::caps::ambient_authority;
use runtime_core::time::Duration;
use runtime_core::{Cx, Runtime, caps::All, lab::LabRuntime};
use test_watchdog::isolate;

fn multi(n: usize) -> Runtime {
    Runtime::builder()
        .worker_threads(n)
        .build(ambient_authority())
        .unwrap()
}
fn current() -> Runtime {
    Runtime::builder()
        .current_thread()
        .build(ambient_authority())
        .unwrap()
}

/// A context of `rt` kept past its block_on.
fn kept_cx(rt: &Runtime) -> Cx<All> {
    let slot = Arc::new(Mutex::new(None));
    let s = slot.clone();
    let _ = rt.block_on(move |cx| async move {
        *s.lock().unwrap() = Some(cx.clone());
        Ok::<_, ()>(())
    });
    slot.lock().unwrap().take().unwrap()
}

/// Polls `f` on this plain thread until it is ready.
fn poll_here<F: Future>(f: F) -> F::Output {
    struct W(std::thread::Thread);
    impl std::task::Wake for W {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let w = std::task::Waker::from(Arc::new(W(std::thread::current())));
    let mut cx = Context::from_waker(&w);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(10));
    }
}

/// A current-thread runtime A, idle (its core free), with one task queued:
/// spawned into a region opened, on a plain thread, through a context of A
/// kept from an earlier block_on. `task` is what the task runs.
fn current_with_a_queued_task<F>(task: impl FnOnce(Cx<All>) -> F + Send + 'static) -> Runtime
where
    F: Future<Output = ()> + Send + 'static,
{
    let a = current();
    let cx_a = kept_cx(&a);
    std::thread::spawn(move || {
        poll_here(cx_a.region(move |cx| async move {
            cx.spawn(task);
            Ok::<_, ()>(())
        }))
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    a
}

// ---- a shutdown from inside its runtime, at any depth, is refused ----------

/// A task of B calls the shutdown handle of A (allowed: not inside A); the
/// handle drives A's core in place, on B's worker, inside B's task. A's
/// task, run there, calls B's shutdown handle: that is inside B, and is
/// refused (it waited its whole timeout for the very task that called it,
/// and for ever with the longest timeout).
#[test]
fn a_shutdown_inside_its_runtime_through_a_nested_drive_is_refused() {
    isolate(std::time::Duration::from_secs(60), || {
        for timeout in [Duration::from_secs(5), Duration::MAX] {
            let b = multi(1);
            let hb = b.shutdown_handle();
            let refused = Arc::new(Mutex::new(None));
            let r = refused.clone();
            let a = current_with_a_queued_task(move |_| async move {
                let out =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hb.shutdown(timeout)));
                *r.lock().unwrap() = Some(out.is_err());
            });
            let ha = a.shutdown_handle();
            let _ =
                b.block_on(
                    move |_| async move { Ok::<_, ()>(ha.shutdown(Duration::from_secs(30))) },
                );
            assert_eq!(*refused.lock().unwrap(), Some(true), "{timeout:?}");
        }
    });
}

/// The same through a lab run inside B's task: the lab runs a blocking job
/// in line, marked off every worker and task (`task::outside_tasks`), not
/// off B (it was not refused).
#[test]
fn a_shutdown_from_a_lab_blocking_job_inside_its_runtime_is_refused() {
    isolate(std::time::Duration::from_secs(60), || {
        let b = multi(1);
        let hb = b.shutdown_handle();
        let out = b.block_on(move |_| async move {
            let report = LabRuntime::new(1).block_on(move |cx| async move {
                let refused = cx
                    .spawn_blocking(move || {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            hb.shutdown(Duration::from_secs(5))
                        }))
                        .is_err()
                    })
                    .await;
                Ok::<_, ()>(refused.ok())
            });
            Ok::<_, ()>(report.outcome.and_then(|o| o.ok()).flatten())
        });
        assert_eq!(
            out.ok(),
            Some(Some(true)),
            "B's shutdown handle was not refused inside B"
        );
    });
}

// ---- a re-entrant block_on, at any depth, is refused -------------------------

/// `Runtime::block_on` of B from inside B's own task panics ("would wait
/// for work this thread may be needed for, a deadlock"), also from a lab
/// blocking job run in line inside B's task (it was not refused, and
/// deadlocked: B's only worker was the thread that waited).
#[test]
fn a_reentrant_block_on_through_a_lab_blocking_job_is_refused() {
    isolate(std::time::Duration::from_secs(20), || {
        let b = Arc::new(multi(1));
        let inner = b.clone();
        let out = b.block_on(move |_| async move {
            let report = LabRuntime::new(1).block_on(move |cx| async move {
                let refused = cx
                    .spawn_blocking(move || {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            inner.block_on(|_| async { Ok::<_, ()>(1) }).ok()
                        }))
                        .is_err()
                    })
                    .await;
                Ok::<_, ()>(refused.ok())
            });
            Ok::<_, ()>(report.outcome.and_then(|o| o.ok()).flatten())
        });
        assert_eq!(out.ok(), Some(Some(true)));
    });
}

// ---- a drive in place leaves the enclosing task's yield alone ---------------

/// Polls `a` then `b` each time (a two-branch join).
fn join2<A, B>(a: A, b: B) -> impl Future<Output = ()> + Send
where
    A: Future<Output = ()> + Send,
    B: Future<Output = ()> + Send,
{
    let (mut a, mut b) = (Box::pin(a), Box::pin(b));
    let (mut da, mut db) = (false, false);
    std::future::poll_fn(move |c| {
        if !da {
            da = a.as_mut().poll(c).is_ready();
        }
        if !db {
            db = b.as_mut().poll(c).is_ready();
        }
        if da && db {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// B's task joins `cx.yield_now()` with a call to A's shutdown handle
/// (allowed). The yield records its request in a thread-local for B's
/// `Task::run` to read after the poll; the handle drives A in place. A's
/// task's `Task::run` took (cleared) the request as its own, and B's task
/// returned Pending with no wake-up pending, never polled again: block_on
/// hung. The drive now puts B's cooperative state back.
#[test]
fn a_yield_beside_a_nested_drive_is_not_lost() {
    isolate(std::time::Duration::from_secs(20), || {
        for (name, b) in [
            ("current", current()),
            ("1 worker", multi(1)),
            ("2 workers", multi(2)),
        ] {
            let a = current_with_a_queued_task(|cx| async move {
                let _ = cx.sleep(Duration::from_secs(3600)).await;
            });
            let ha = a.shutdown_handle();
            let out = b.block_on(move |cx| async move {
                let y = cx.yield_now();
                join2(
                    async move {
                        let _ = y.await;
                    },
                    async move {
                        ha.shutdown(Duration::from_millis(200));
                    },
                )
                .await;
                Ok::<_, ()>(())
            });
            assert!(out.is_ok(), "{name}");
        }
    });
}

/// The same through a plain drop: B's task drops A (a current-thread
/// runtime with a task queued) beside a yield; A's shutdown drives A in
/// place.
#[test]
fn a_yield_beside_dropping_a_runtime_is_not_lost() {
    isolate(std::time::Duration::from_secs(20), || {
        let b = multi(1);
        let a = current_with_a_queued_task(|cx| async move {
            let _ = cx.sleep(Duration::from_secs(3600)).await;
        });
        let out = b.block_on(move |cx| async move {
            let y = cx.yield_now();
            join2(
                async move {
                    let _ = y.await;
                },
                async move {
                    drop(a);
                },
            )
            .await;
            Ok::<_, ()>(())
        });
        assert!(out.is_ok());
    });
}
