//! The combinators (`race!`, `join!`, `join_all`, `timeout`) under user
//! code at its worst: a waker whose `clone` panics once, a loser's value
//! whose `Drop` panics, a body that ignores its cancellation. Each case
//! was found by review (2026-12-02) and fails on the code before its fix;
//! each runs in a child process under the watchdog (they hung or lost
//! outcomes).
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, RawWaker, RawWakerVTable, Waker};

use runtime_core::caps::ambient_authority;
use runtime_core::time::Duration;
use runtime_core::{CleanupBudget, Outcome, Runtime, race};
use test_watchdog::isolate;

const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(60);

fn multi() -> Runtime {
    Runtime::builder()
        .worker_threads(2)
        .build(ambient_authority())
        .unwrap()
}

/// A waker that runs `on_clone` at each clone and forwards wakes to the
/// polling task's waker (as a user combinator's waker would).
struct Hook {
    real: Mutex<Option<Waker>>,
    on_clone: Box<dyn Fn() + Send + Sync>,
}

fn hooked(h: Arc<Hook>) -> Waker {
    // SAFETY (each function): `p` came from `Arc::into_raw` of a `Hook`
    // and every waker holds one count of it.
    unsafe fn clone(p: *const ()) -> RawWaker {
        // SAFETY: see above.
        unsafe { ((*(p as *const Hook)).on_clone)() };
        // SAFETY: see above.
        unsafe { Arc::increment_strong_count(p as *const Hook) };
        RawWaker::new(p, &VTABLE)
    }
    unsafe fn wake(p: *const ()) {
        // SAFETY: see above.
        unsafe { wake_by_ref(p) };
        // SAFETY: see above.
        unsafe { drop_w(p) };
    }
    unsafe fn wake_by_ref(p: *const ()) {
        // SAFETY: see above.
        if let Some(w) = unsafe { &*(p as *const Hook) }
            .real
            .lock()
            .unwrap()
            .as_ref()
        {
            w.wake_by_ref();
        }
    }
    unsafe fn drop_w(p: *const ()) {
        // SAFETY: see above.
        unsafe { Arc::decrement_strong_count(p as *const Hook) };
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_w);
    // SAFETY: the vtable keeps the `Arc`'s counts.
    unsafe { Waker::from_raw(RawWaker::new(Arc::into_raw(h) as *const (), &VTABLE)) }
}

async fn poll_hooked<F: Future>(fut: F, hook: Arc<Hook>) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |task| {
        *hook.real.lock().unwrap() = Some(task.waker().clone());
        fut.as_mut()
            .poll(&mut Context::from_waker(&hooked(hook.clone())))
    })
    .await
}

/// Clone 1 is the region storing its body's poller (caught there); clone
/// 2 is the combinator's body registering at its first JoinHandle.
fn panics_at_second_clone() -> Arc<Hook> {
    let n = AtomicUsize::new(0);
    Arc::new(Hook {
        real: Mutex::new(None),
        on_clone: Box::new(move || {
            if n.fetch_add(1, Ordering::SeqCst) == 1 {
                panic!("a waker whose clone panics (once)");
            }
        }),
    })
}

#[test]
fn a_race_polled_by_a_waker_whose_clone_panics_cancels_its_losers() {
    isolate(WATCHDOG, || {
        let rt = multi();
        let started = std::time::Instant::now();
        let out = rt.block_on(move |cx| async move {
            let fut = race!(
                cx,
                |cx| async move {
                    cx.sleep(Duration::from_millis(10)).await.map_err(|_| ())?;
                    Ok::<_, ()>("fast")
                },
                |cx| async move {
                    cx.sleep(Duration::from_secs(20)).await.map_err(|_| ())?;
                    Ok::<_, ()>("twenty seconds")
                },
            );
            Ok::<_, ()>(format!(
                "{:?}",
                poll_hooked(fut, panics_at_second_clone()).await
            ))
        });
        let took = started.elapsed();
        // The clone's panic is caught and counted where the join handle
        // stores the waker; the fast racer wins, and the loser (20 s) is
        // cancelled, not waited for.
        assert_eq!(out.ok().as_deref(), Some("Ok(\"fast\")"));
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
        assert!(
            took < std::time::Duration::from_secs(10),
            "the race waited {took:?} for its loser to end on its own"
        );
    });
}

#[test]
fn join_all_polled_by_a_waker_whose_clone_panics_gives_every_outcome() {
    isolate(WATCHDOG, || {
        let rt = multi();
        let out = rt.block_on(move |cx| async move {
            let bodies = (0..3u32).map(|i| {
                move |cx: runtime_core::Cx<runtime_core::caps::All>| async move {
                    cx.sleep(Duration::from_millis(20)).await.map_err(|_| ())?;
                    Ok::<_, ()>(i)
                }
            });
            let v = poll_hooked(cx.join_all(bodies.collect()), panics_at_second_clone()).await;
            Ok::<_, ()>(v.into_iter().map(|o| o.ok()).collect::<Vec<_>>())
        });
        // Every outcome, in order (before: an empty vector).
        assert_eq!(out.ok(), Some(vec![Some(0), Some(1), Some(2)]));
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
    });
}

#[test]
fn join_macro_polled_by_a_waker_whose_clone_panics_gives_both_values() {
    isolate(WATCHDOG, || {
        let rt = multi();
        let out = rt.block_on(move |cx| async move {
            let fut = runtime_core::join!(
                cx,
                |cx| async move { cx.sleep(Duration::from_millis(10)).await.is_ok() },
                |cx| async move { cx.sleep(Duration::from_millis(10)).await.is_ok() },
            );
            let (a, b) = poll_hooked(fut, panics_at_second_clone()).await;
            Ok::<_, ()>((a.ok(), b.ok()))
        });
        // Both values (before: the join panicked with a message of ours).
        assert_eq!(out.ok(), Some((Some(true), Some(true))));
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
    });
}

/// A loser's value whose Drop panics. Racer 2 finishes first, racer 1
/// right after, while the race's body is between its look at "who
/// finished first" (nobody yet) and its poll of racer 1's handle: here a
/// waker clone that takes its time (as a preempted worker would) holds
/// the body at racer 0's handle until both have finished.
struct Noisy(bool);
impl Drop for Noisy {
    fn drop(&mut self) {
        if self.0 && !std::thread::panicking() {
            panic!("a loser's value whose Drop panics");
        }
    }
}

#[test]
fn a_losers_value_whose_drop_panics_never_replaces_the_winner() {
    isolate(WATCHDOG, || {
        let rt = multi();
        static R2_RETURNED: AtomicBool = AtomicBool::new(false);
        static R1_DONE: AtomicBool = AtomicBool::new(false);
        static R0_SLEEP_CANCELLED: Mutex<Option<bool>> = Mutex::new(None);
        let n = AtomicUsize::new(0);
        let hook = Arc::new(Hook {
            real: Mutex::new(None),
            on_clone: Box::new(move || {
                if n.fetch_add(1, Ordering::SeqCst) == 1 {
                    let t0 = std::time::Instant::now();
                    while !R1_DONE.load(Ordering::SeqCst) {
                        assert!(t0.elapsed().as_secs() < 10, "racers never ran");
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }),
        });
        let out = rt.block_on(move |cx| async move {
            let t = cx.now() + Duration::from_millis(100);
            let fut = race!(
                cx,
                |cx| async move {
                    // Long enough that only the race's cancel ends it,
                    // however long a loaded machine stalls the rest.
                    let r = cx.sleep(Duration::from_secs(60)).await;
                    *R0_SLEEP_CANCELLED.lock().unwrap() = Some(r.is_err());
                    r.map_err(|_| ())?;
                    Ok::<_, ()>(("r0", Noisy(false)))
                },
                move |cx| async move {
                    cx.sleep_until(t + Duration::from_millis(5))
                        .await
                        .map_err(|_| ())?;
                    while !R2_RETURNED.load(Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    // r2's task finishes (and claims first) meanwhile.
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    R1_DONE.store(true, Ordering::SeqCst);
                    Ok::<_, ()>(("r1", Noisy(true)))
                },
                move |cx| async move {
                    cx.sleep_until(t).await.map_err(|_| ())?;
                    R2_RETURNED.store(true, Ordering::SeqCst);
                    Ok::<_, ()>(("r2", Noisy(false)))
                },
            );
            Ok::<_, ()>(match poll_hooked(fut, hook).await {
                Outcome::Ok((name, _)) => format!("Ok({name})"),
                Outcome::Err(()) => "Err".into(),
                Outcome::Cancelled(r) => format!("Cancelled({r})"),
                Outcome::Panicked(p) => format!("Panicked({p})"),
            })
        });
        let desc = out.ok().unwrap();
        assert_eq!(desc, "Ok(r2)", "the winner's outcome was lost");
        // The loser's value's panic, caught and counted; the other loser
        // cancelled (its sleep ended by the cancellation, not run out).
        assert!(rt.stats().panics_caught >= 1, "{:?}", rt.stats());
        assert_eq!(*R0_SLEEP_CANCELLED.lock().unwrap(), Some(true));
    });
}

/// A body that ignores its cancellation: one that spins on `checkpoint`
/// and `yield_now` (their `Err` ignored), and one that waits for ever on a
/// future nobody wakes. Its region's grace period runs out and the region
/// is cut off; the body gets the poll that the cut-off wakes it for (to see
/// the cancellation, its masks lifted), and, still running after it, is
/// dropped where it lies, as a cut-off task's future is: the timeout
/// returns `Cancelled(Timeout)` (found by review: it never returned, its
/// cleanup budget notwithstanding). A body whose `Drop` panics there makes
/// the timeout `Panicked`, the panic caught and counted. On both flavours.
#[test]
fn a_timeout_whose_body_ignores_its_cancellation_returns_at_the_cut_off() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("a body whose drop panics");
        }
    }
    isolate(WATCHDOG, || {
        for flavour in ["current-thread", "2 workers"] {
            let b = Runtime::builder().cleanup_budget(CleanupBudget {
                polls: Some(100),
                grace: Some(Duration::from_millis(50)),
            });
            let rt = if flavour == "current-thread" {
                b.current_thread()
            } else {
                b.worker_threads(2)
            }
            .build(ambient_authority())
            .unwrap();
            let out = rt.block_on(|cx| async move {
                let spin = cx
                    .timeout(Duration::from_millis(10), |cx| async move {
                        loop {
                            let _ = cx.checkpoint();
                            let _ = cx.yield_now().await;
                        }
                        #[allow(unreachable_code)]
                        Ok::<_, ()>(())
                    })
                    .await;
                let parked = cx
                    .timeout(Duration::from_millis(10), |_| async move {
                        std::future::pending::<()>().await;
                        Ok::<_, ()>(())
                    })
                    .await;
                let bomb = cx
                    .timeout(Duration::from_millis(10), |_| async move {
                        let _bomb = PanicOnDrop;
                        std::future::pending::<()>().await;
                        Ok::<_, ()>(())
                    })
                    .await;
                Ok::<_, ()>((spin, parked, bomb))
            });
            let Outcome::Ok((spin, parked, bomb)) = out else {
                panic!("{flavour}: the root failed");
            };
            for (name, o) in [("spin", &spin), ("parked", &parked)] {
                match o {
                    Outcome::Cancelled(r) => {
                        assert_eq!(
                            r.kind(),
                            runtime_core::CancelKind::Timeout,
                            "{flavour} {name}"
                        )
                    }
                    other => panic!("{flavour} {name}: {other:?}"),
                }
            }
            assert!(matches!(bomb, Outcome::Panicked(_)), "{flavour}: {bomb:?}");
            let stats = rt.stats();
            assert_eq!(stats.region_bodies_cut_off, 3, "{flavour}: {stats:?}");
            assert!(stats.panics_caught >= 1, "{flavour}: {stats:?}");
        }
    });
}
