//! Regions at their cut-off and in their finalizers, under user code at its
//! worst: a body that hands out its own address, bodies nested in a body
//! that is cut off, a combinator inside a region that is cut off, a budget
//! of polls only, a finalizer that registers another for ever, a waker's
//! `clone` that cancels again, a child that fails while the body cleans up
//! after a timeout. Each case was found by review (2026-12-02) and fails
//! on the code before its fix; each runs in a child process under the
//! watchdog (they crashed, hung or gave a wrong outcome).
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use runtime_core::caps::{All, CapSet, ambient_authority};
use runtime_core::time::Duration;
use runtime_core::{
    CancelKind, CancelReason, Cancelled, CleanupBudget, Cx, Outcome, RegionError, RegionOptions,
    Runtime,
};
use test_watchdog::isolate;

const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn runtime(flavour: &str, budget: CleanupBudget) -> Runtime {
    let b = Runtime::builder().cleanup_budget(budget);
    if flavour == "current-thread" {
        b.current_thread()
    } else {
        b.worker_threads(2)
    }
    .build(ambient_authority())
    .unwrap()
}

fn short_grace(flavour: &str) -> Runtime {
    runtime(
        flavour,
        CleanupBudget {
            polls: Some(100),
            grace: Some(Duration::from_millis(50)),
        },
    )
}

const FLAVOURS: [&str; 2] = ["current-thread", "2 workers"];

/// A runtime whose cleanup budget is `polls` polls and no grace period.
fn polls_only(flavour: &str, polls: u32) -> Runtime {
    runtime(
        flavour,
        CleanupBudget {
            polls: Some(polls),
            grace: None,
        },
    )
}

/// A `!Unpin` future that publishes its own address at its first poll and
/// takes it back in `Drop`, as an intrusive waiter does (tokio's
/// `Notified`): sound only if it is dropped where it was pinned. Never
/// ready, it ignores its cancellation.
struct Waiter {
    list: Arc<Mutex<Vec<usize>>>,
    seen_at_drop: Arc<Mutex<Option<(usize, usize)>>>,
    me: usize,
    _pin: PhantomPinned,
}

impl Future for Waiter {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: nothing is moved out.
        let this = unsafe { self.get_unchecked_mut() };
        if this.me == 0 {
            this.me = this as *const Waiter as usize;
            this.list.lock().unwrap().push(this.me);
        }
        Poll::Pending
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let here = self as *const Waiter as usize;
        *self.seen_at_drop.lock().unwrap() = Some((self.me, here));
        self.list.lock().unwrap().retain(|&a| a != here);
    }
}

/// A region's body dropped at its cut-off is dropped where it was pinned
/// (it was moved to the stack first: a registration by address was left
/// dangling, and a tokio `Notify` waited on there crashed the process).
#[test]
fn a_cut_off_body_is_dropped_where_it_was_pinned() {
    isolate(WATCHDOG, || {
        for flavour in FLAVOURS {
            let rt = short_grace(flavour);
            let list = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::new(Mutex::new(None));
            let (l, s) = (list.clone(), seen.clone());
            let out = rt.block_on(move |cx| async move {
                let o = cx
                    .timeout(Duration::from_millis(10), move |_| async move {
                        Waiter {
                            list: l,
                            seen_at_drop: s,
                            me: 0,
                            _pin: PhantomPinned,
                        }
                        .await;
                        Ok::<_, ()>(())
                    })
                    .await;
                Ok::<_, ()>(o.is_cancelled())
            });
            assert_eq!(out.ok(), Some(true), "{flavour}");
            let (pinned_at, dropped_at) = seen.lock().unwrap().expect("dropped");
            assert_eq!(pinned_at, dropped_at, "{flavour}: moved before its drop");
            assert!(list.lock().unwrap().is_empty(), "{flavour}: left listed");
        }
    });
}

/// A boxed body's future.
type BoxedBody = Pin<Box<dyn Future<Output = Result<u64, ()>> + Send>>;

/// A body that spins through checkpoints (ignoring them) for a while, then
/// returns `k`.
fn spin(i: u64, k: u64) -> impl FnOnce(Cx<All>) -> BoxedBody {
    move |cx: Cx<All>| {
        Box::pin(async move {
            let until = std::time::Instant::now()
                + std::time::Duration::from_micros(1_500 + ((i * 7 + k * 13) % 40) * 50);
            while std::time::Instant::now() < until {
                let _ = cx.checkpoint();
                let _ = cx.yield_now().await;
            }
            Ok::<_, ()>(k)
        })
    }
}

/// `join_all` and `join!` in a body cut off with its region: the
/// combinators' own bodies only wait for their tasks (which the cut-off
/// ends) and must see each end (`join_all`'s body was dropped at its
/// cut-off: it returned an empty vector, and `join!` reached an
/// `unreachable!`). 2 workers: the cut-off lands while the tasks run.
#[test]
fn combinators_in_a_cut_off_region_give_every_outcome() {
    isolate(std::time::Duration::from_secs(120), || {
        let rt = runtime(
            "2 workers",
            CleanupBudget {
                polls: None,
                grace: Some(Duration::from_millis(2)),
            },
        );
        let seen = rt.block_on(move |cx| async move {
            let mut seen = std::collections::BTreeMap::<String, u32>::new();
            for i in 0..1500u64 {
                let all = cx
                    .timeout(Duration::from_millis(1), move |cx| async move {
                        let v = cx.join_all((0..3).map(|k| spin(i, k)).collect()).await;
                        Ok::<_, ()>(v.len())
                    })
                    .await;
                let both = cx
                    .timeout(Duration::from_millis(1), move |cx| async move {
                        let (a, b) = runtime_core::join!(cx, spin(i, 0), spin(i, 1)).await;
                        Ok::<_, ()>(usize::from(a.is_ok()) + usize::from(b.is_ok()))
                    })
                    .await;
                for (what, o) in [("join_all", all), ("join!", both)] {
                    let key = match o {
                        Outcome::Ok(3) if what == "join_all" => "Ok(all)".to_string(),
                        Outcome::Ok(_) if what == "join!" => "Ok(all)".to_string(),
                        Outcome::Cancelled(_) => "Cancelled".to_string(),
                        other => format!("{what}: {other:?}"),
                    };
                    *seen.entry(key).or_default() += 1;
                }
            }
            Ok::<_, ()>(seen)
        });
        let seen = seen.ok().expect("the loop ran");
        assert!(
            seen.keys().all(|k| k == "Ok(all)" || k == "Cancelled"),
            "{seen:?}"
        );
    });
}

/// A budget of polls only bounds a body as it bounds a task: the body
/// that ignores its cancellation is cut off after them (it never was: no
/// grace timer, and the polls were never counted for a body).
#[test]
fn a_budget_of_polls_only_bounds_a_timeouts_body() {
    isolate(WATCHDOG, || {
        for flavour in FLAVOURS {
            let rt = polls_only(flavour, 10);
            let out = rt.block_on(move |cx| async move {
                let o = cx
                    .timeout(Duration::from_millis(10), |cx| async move {
                        loop {
                            let _ = cx.checkpoint();
                            let _ = cx.yield_now().await;
                        }
                        #[allow(unreachable_code)]
                        Ok::<_, ()>(())
                    })
                    .await;
                Ok::<_, ()>(o.cancel_reason().map(CancelReason::kind))
            });
            assert_eq!(out.ok(), Some(Some(CancelKind::Timeout)), "{flavour}");
            assert_eq!(rt.stats().region_bodies_cut_off, 1, "{flavour}");
        }
    });
}

struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A body nested in a body, both cut off, the inner dropped with the
/// outer: each counted in `region_bodies_cut_off` (only the outer was).
#[test]
fn bodies_cut_off_together_are_each_counted() {
    isolate(WATCHDOG, || {
        for flavour in FLAVOURS {
            let rt = short_grace(flavour);
            let drops = Arc::new(AtomicUsize::new(0));
            let d = drops.clone();
            let out = rt.block_on(move |cx| async move {
                let o = cx
                    .timeout(Duration::from_millis(10), move |cx| async move {
                        let _outer = CountDrop(d.clone());
                        let inner = cx
                            .region(move |_| async move {
                                let _inner = CountDrop(d);
                                std::future::pending::<()>().await;
                                Ok::<_, ()>(())
                            })
                            .await;
                        Ok::<_, ()>(inner.is_ok())
                    })
                    .await;
                Ok::<_, ()>(o.is_cancelled())
            });
            assert_eq!(out.ok(), Some(true), "{flavour}");
            assert_eq!(drops.load(Ordering::SeqCst), 2, "{flavour}");
            assert_eq!(rt.stats().region_bodies_cut_off, 2, "{flavour}");
        }
    });
}

thread_local! {
    static ON_CLONE: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}

/// A waker around `inner` whose `clone` runs the hook armed in `ON_CLONE`
/// (once).
fn hooked(inner: Waker) -> Waker {
    // SAFETY (each function): `p` came from `Box::into_raw` of a `Waker`,
    // owned by the waker made from it.
    unsafe fn clone(p: *const ()) -> RawWaker {
        if let Some(hook) = ON_CLONE.with(|h| h.borrow_mut().take()) {
            hook();
        }
        // SAFETY: see above.
        let w = unsafe { &*(p as *const Waker) }.clone();
        RawWaker::new(Box::into_raw(Box::new(w)) as *const (), &VTABLE)
    }
    unsafe fn wake(p: *const ()) {
        // SAFETY: see above.
        unsafe { Box::from_raw(p as *mut Waker) }.wake();
    }
    unsafe fn wake_by_ref(p: *const ()) {
        // SAFETY: see above.
        unsafe { &*(p as *const Waker) }.wake_by_ref();
    }
    unsafe fn drop_w(p: *const ()) {
        // SAFETY: see above.
        drop(unsafe { Box::from_raw(p as *mut Waker) });
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_w);
    // SAFETY: the vtable owns the box.
    unsafe {
        Waker::from_raw(RawWaker::new(
            Box::into_raw(Box::new(inner)) as *const (),
            &VTABLE,
        ))
    }
}

/// A cancel that clones the body's poller's waker, whose `clone` cancels
/// the region again with a stronger reason: no deadlock (the clone ran
/// under the lock the second cancel took again).
#[test]
fn a_wakers_clone_that_cancels_the_region_again_does_not_deadlock() {
    isolate(WATCHDOG, || {
        let rt = runtime("current-thread", CleanupBudget::DEFAULT);
        let out = rt.block_on(|cx| async move {
            let slot = Arc::new(Mutex::new(None));
            let s2 = slot.clone();
            let mut region = Box::pin(cx.region(move |rcx| async move {
                *s2.lock().unwrap() = Some(rcx.clone());
                rcx.sleep(HOUR).await.map_err(|_| ())?;
                Ok::<_, ()>(())
            }));
            let mut armed = false;
            // A combinator of the user's, polling with a waker of its own.
            let r = std::future::poll_fn(|task| {
                let w = hooked(task.waker().clone());
                let p = region.as_mut().poll(&mut Context::from_waker(&w));
                if p.is_pending() && !armed {
                    armed = true;
                    let rcx: Cx<All> = slot.lock().unwrap().clone().expect("polled");
                    let again = rcx.clone();
                    ON_CLONE.with(|h| {
                        *h.borrow_mut() = Some(Box::new(move || {
                            again.cancel(CancelReason::new(CancelKind::Shutdown))
                        }))
                    });
                    rcx.cancel(CancelReason::user("stop"));
                }
                p
            })
            .await;
            Ok::<_, ()>(r.cancel_reason().map(CancelReason::kind))
        });
        assert_eq!(out.ok(), Some(Some(CancelKind::Shutdown)));
    });
}

/// Polls `region` once (with this task's waker), then drops it: the
/// region is abandoned to its tasks.
async fn abandon<F: Future>(mut region: Pin<Box<F>>) {
    let mut polled = false;
    std::future::poll_fn(|t| {
        if polled {
            return Poll::Ready(());
        }
        polled = true;
        let _ = region.as_mut().poll(t);
        t.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
    drop(region);
}

/// A region abandoned (its future dropped) with a finalizer that registers
/// another: both run, as at a close (the second was skipped).
#[test]
fn an_abandoned_regions_finalizer_registered_by_a_finalizer_runs() {
    isolate(WATCHDOG, || {
        let rt = runtime("current-thread", CleanupBudget::DEFAULT);
        let log = Arc::new(Mutex::new(Vec::<&'static str>::new()));
        let l = log.clone();
        let out = rt.block_on(move |cx| async move {
            let region = Box::pin(cx.region(move |cx| async move {
                // Keeps the region open past the drop of its future.
                let _sleeper = cx.spawn(|cx| async move {
                    let _ = cx.sleep(Duration::from_millis(20)).await;
                });
                let c = cx.clone();
                let (a, b) = (l.clone(), l.clone());
                cx.defer(move || {
                    a.lock().unwrap().push("outer");
                    c.defer(move || b.lock().unwrap().push("inner"));
                });
                cx.sleep(HOUR).await.map_err(|_| ())?;
                Ok::<_, ()>(())
            }));
            abandon(region).await;
            // The sleeper ends, and with it the abandoned region.
            cx.sleep(Duration::from_millis(100)).await.map_err(|_| ())?;
            Ok::<_, ()>(())
        });
        assert!(out.is_ok());
        assert_eq!(*log.lock().unwrap(), ["outer", "inner"]);
        assert_eq!(rt.stats().finalizers_skipped, 0);
    });
}

/// Registers a finalizer that registers another, for ever; counts them.
fn chain<C: CapSet>(cx: Cx<C>, n: Arc<AtomicUsize>) {
    let c = cx.clone();
    cx.defer(move || {
        n.fetch_add(1, Ordering::SeqCst);
        chain(c, n);
    });
}

/// A finalizer that registers another for ever is bounded by the cleanup
/// budget of the pass: by its polls, or by its grace period (the region
/// never closed), at a close and when the region is abandoned.
#[test]
fn a_chain_of_finalizers_is_bounded_by_the_cleanup_budget() {
    isolate(WATCHDOG, || {
        for (budget, bound) in [
            (
                CleanupBudget {
                    polls: Some(10),
                    grace: None,
                },
                Some(11),
            ),
            (
                CleanupBudget {
                    polls: None,
                    grace: Some(Duration::from_millis(50)),
                },
                None,
            ),
        ] {
            for abandoned in [false, true] {
                let rt = runtime("2 workers", CleanupBudget::DEFAULT);
                let n = Arc::new(AtomicUsize::new(0));
                let n2 = n.clone();
                let opts = RegionOptions::fail_fast().cleanup(budget);
                let out = rt.block_on(move |cx| async move {
                    let region = Box::pin(cx.region_with(opts, move |cx| async move {
                        chain(cx.clone(), n2);
                        if abandoned {
                            // Open past the drop of the region's future.
                            let _task = cx.spawn(|cx| async move {
                                let _ = cx.masked(cx.sleep(Duration::from_millis(20))).await;
                            });
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, ()>(())
                    }));
                    if !abandoned {
                        return Ok::<_, ()>(region.await.is_ok());
                    }
                    abandon(region).await;
                    Ok::<_, ()>(true)
                });
                assert_eq!(out.ok(), Some(true), "{budget:?}, abandoned: {abandoned}");
                // An abandoned region's finalizers run when its last task
                // ends, maybe after `block_on` returned.
                let t0 = std::time::Instant::now();
                while rt.stats().finalizers_cut_off == 0 && t0.elapsed() < WATCHDOG / 2 {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                let ran = n.load(Ordering::SeqCst);
                if let Some(bound) = bound {
                    assert_eq!(ran, bound, "{budget:?}, abandoned: {abandoned}");
                } else {
                    assert!(ran > 1, "{budget:?}, abandoned: {abandoned}: {ran}");
                }
                assert_eq!(
                    rt.stats().finalizers_cut_off,
                    1,
                    "{budget:?}, abandoned: {abandoned}"
                );
            }
        }
    });
}

/// A timeout whose body saw the timeout and, while it cleaned up, a child
/// failed: the outcome is the timeout (the body's answer, `Cancelled`,
/// outranks a child's `Err`), not the child's error (the failure's
/// stronger reason replaced the one the body saw).
#[test]
fn a_timeout_stays_a_timeout_when_a_child_fails_during_the_cleanup() {
    isolate(WATCHDOG, || {
        let rt = runtime("2 workers", CleanupBudget::DEFAULT);
        let out = rt.block_on(|cx| async move {
            let r = cx
                .timeout(Duration::from_millis(5), |cx| async move {
                    // Busy, no checkpoint, past the timeout; then fails.
                    let _busy = cx.try_spawn(|_| async {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Err::<(), _>("child failed")
                    });
                    let seen = cx.sleep(HOUR).await;
                    // Cleanup, within the grace, during which the child fails.
                    let _ = cx.masked(cx.sleep(Duration::from_millis(200))).await;
                    seen?;
                    Ok::<_, Cancelled>(())
                })
                .await;
            Ok::<_, ()>(match r {
                Outcome::Cancelled(r) => format!("Cancelled({:?})", r.kind()),
                Outcome::Err(RegionError::Child(f)) => format!("Err(Child {})", f.message),
                o => format!("{:?}", o.severity()),
            })
        });
        assert_eq!(out.ok().as_deref(), Some("Cancelled(Timeout)"));
    });
}

/// A timeout's body that drains its children after the timeout (awaiting
/// each handle, or through `join_all`): it is woken once for each child
/// that ends, and those polls are not cleanup polls of its own (the first
/// fix of the poll budget counted them, cut the body and every child
/// off, and lost the outcomes: found by review of that fix).
#[test]
fn a_body_draining_its_children_is_not_cut_off_by_the_poll_budget() {
    isolate(WATCHDOG, || {
        for flavour in FLAVOURS {
            for via_join_all in [false, true] {
                let rt = polls_only(flavour, 4);
                let cleaned = Arc::new(AtomicUsize::new(0));
                let c = cleaned.clone();
                let out = rt.block_on(move |cx| async move {
                    let r = cx
                        .timeout(Duration::from_millis(5), move |cx| async move {
                            // Each child cleans up (two polls, masked) at
                            // its own pace after the timeout.
                            let bodies: Vec<_> = (0..10u64)
                                .map(|i| {
                                    let c = c.clone();
                                    move |cx: Cx<All>| async move {
                                        let _ = cx.sleep(HOUR).await;
                                        let pace = Duration::from_millis(2 * i + 1);
                                        let _ = cx.masked(cx.sleep(pace)).await;
                                        c.fetch_add(1, Ordering::SeqCst);
                                        Ok::<_, ()>(i)
                                    }
                                })
                                .collect();
                            let ok = if via_join_all {
                                cx.join_all(bodies)
                                    .await
                                    .iter()
                                    .filter(|o| o.is_ok())
                                    .count()
                            } else {
                                let handles: Vec<_> =
                                    bodies.into_iter().map(|b| cx.try_spawn(b)).collect();
                                let mut ok = 0;
                                for h in handles {
                                    ok += usize::from(h.await.is_ok());
                                }
                                ok
                            };
                            Ok::<_, ()>(ok)
                        })
                        .await;
                    Ok::<_, ()>(r.ok())
                });
                let what = format!("{flavour}, join_all: {via_join_all}");
                assert_eq!(out.ok(), Some(Some(10)), "{what}: {:?}", rt.stats());
                assert_eq!(cleaned.load(Ordering::SeqCst), 10, "{what}");
                assert_eq!(rt.stats().tasks_cut_off, 0, "{what}");
            }
        }
    });
}

/// A chain of finalizers in a region whose future was dropped runs in
/// line where the region ends, with no await between its links: it is
/// bounded by a count even where the budget gives none (it spun for ever
/// on the lab's virtual clock, which does not move during a step, and
/// with an unlimited budget: found by review of the bound's first fix).
#[test]
fn an_abandoned_chain_of_finalizers_ends_under_any_budget() {
    isolate(WATCHDOG, || {
        let scenario = |n: Arc<AtomicUsize>, budget: CleanupBudget| {
            move |cx: Cx<runtime_core::lab::LabCaps>| async move {
                let opts = RegionOptions::fail_fast().cleanup(budget);
                let region = Box::pin(cx.region_with(opts, move |cx| async move {
                    chain(cx.clone(), n);
                    let _task = cx.spawn(|cx| async move {
                        let _ = cx.masked(cx.sleep(Duration::from_millis(20))).await;
                    });
                    std::future::pending::<()>().await;
                    Ok::<_, ()>(())
                }));
                abandon(region).await;
                cx.sleep(Duration::from_millis(100)).await.map_err(|_| ())?;
                Ok::<_, ()>(())
            }
        };
        let grace_only = CleanupBudget {
            polls: None,
            grace: Some(Duration::from_millis(50)),
        };
        let n = Arc::new(AtomicUsize::new(0));
        let lab = runtime_core::lab::LabRuntime::builder()
            .max_steps(10_000)
            .build();
        let report = lab.block_on({
            let n = n.clone();
            move |cx| scenario(n, grace_only)(cx)
        });
        assert_eq!(report.outcome.map(|o| o.is_ok()), Some(true));
        assert_eq!(n.load(Ordering::SeqCst), 1_001, "the first and 1 000 late");

        let n = Arc::new(AtomicUsize::new(0));
        let rt = runtime("current-thread", CleanupBudget::DEFAULT);
        let out = rt.block_on({
            let n = n.clone();
            move |cx| scenario(n, CleanupBudget::UNLIMITED)(cx.narrow())
        });
        assert!(out.is_ok());
        assert_eq!(n.load(Ordering::SeqCst), 1_001, "the first and 1 000 late");
    });
}

/// A late finalizer the pass's budget refuses is cut off, and the lab's
/// finalizer oracle counts it ended (it reported it as one that never
/// ran: found by review).
#[test]
fn a_refused_late_finalizer_counts_as_ended_for_the_lab() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let opts = RegionOptions::fail_fast().cleanup(CleanupBudget {
        polls: Some(2),
        grace: None,
    });
    let report = runtime_core::lab::LabRuntime::builder()
        .max_steps(10_000)
        .build()
        .block_on(move |cx| async move {
            let r = cx
                .region_with(opts, move |cx| async move {
                    chain(cx.clone(), n2);
                    Ok::<_, ()>(())
                })
                .await;
            Ok::<_, ()>(r.is_ok())
        });
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(n.load(Ordering::SeqCst), 3, "the first and 2 late");
}

/// Pending once, waking itself: a yield that is no checkpoint.
struct PlainYield(bool);

impl Future for PlainYield {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A region body polled by a task other than its owner, the owner
/// spinning on its own checkpoints meanwhile: the owner's sightings are
/// not the body's cleanup polls (they were counted, and a body that never
/// saw its cancellation was cut off: found by review).
#[test]
fn an_owners_checkpoints_are_not_its_region_bodys_cleanup_polls() {
    isolate(WATCHDOG, || {
        for round in 0..20 {
            let rt = runtime("2 workers", CleanupBudget::UNLIMITED);
            let out = rt.block_on(move |cx| async move {
                let r = cx
                    .timeout(Duration::from_millis(5), move |cx| async move {
                        let t = cx.spawn(move |cx| async move {
                            let opts = RegionOptions::fail_fast().cleanup(CleanupBudget {
                                polls: Some(1),
                                grace: None,
                            });
                            let region = cx.region_with(opts, |_cx| async move {
                                // Never checkpoints; spins 60 ms, then returns.
                                let until = std::time::Instant::now()
                                    + std::time::Duration::from_millis(60);
                                while std::time::Instant::now() < until {
                                    PlainYield(false).await;
                                }
                                Ok::<_, ()>(7u32)
                            });
                            // Polled by another task.
                            let x = cx.spawn(move |_| region);
                            let until =
                                std::time::Instant::now() + std::time::Duration::from_millis(80);
                            while std::time::Instant::now() < until {
                                let _ = cx.checkpoint();
                            }
                            cx.masked(x).await
                        });
                        Ok::<_, ()>(t.await)
                    })
                    .await;
                Ok::<_, ()>(format!("{r:?}"))
            });
            let stats = rt.stats();
            assert_eq!(
                stats.region_bodies_cut_off, 0,
                "round {round}: {out:?} {stats:?}"
            );
        }
    });
}

/// Forwards its wakes to the task's waker.
struct Forward(Waker);

impl std::task::Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.0.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake_by_ref();
    }
}

/// A user's combinator: polls `inner` with a waker of its own.
struct OwnWaker<F> {
    inner: Pin<Box<F>>,
    waker: Option<Waker>,
}

impl<F: Future> Future for OwnWaker<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let w = self
            .waker
            .get_or_insert_with(|| Waker::from(Arc::new(Forward(cx.waker().clone()))))
            .clone();
        self.inner.as_mut().poll(&mut Context::from_waker(&w))
    }
}

/// A body its own task polls through a combinator with a waker of its own,
/// seeing its cancellation at each poll and ignoring it: bounded by a
/// budget of polls only (those polls were not counted: found by review).
#[test]
fn a_budget_of_polls_only_bounds_a_body_its_owner_polls_through_a_combinator() {
    isolate(WATCHDOG, || {
        for flavour in FLAVOURS {
            let rt = polls_only(flavour, 10);
            let out = rt.block_on(move |cx| async move {
                let t = cx.timeout(Duration::from_millis(10), |cx| async move {
                    loop {
                        let _ = cx.checkpoint();
                        PlainYield(false).await;
                    }
                    #[allow(unreachable_code)]
                    Ok::<_, ()>(())
                });
                let o = OwnWaker {
                    inner: Box::pin(t),
                    waker: None,
                }
                .await;
                Ok::<_, ()>(o.cancel_reason().map(CancelReason::kind))
            });
            assert_eq!(out.ok(), Some(Some(CancelKind::Timeout)), "{flavour}");
            assert_eq!(rt.stats().region_bodies_cut_off, 1, "{flavour}");
        }
    });
}
