//! 100 000 tasks over deep region trees: after the root closes nothing is
//! alive, every task's future was dropped exactly once, every finalizer
//! ran exactly once — whether the tree finishes or is cancelled.

use runtime_core::caps::ambient_authority;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use runtime_core::time::Duration;
use runtime_core::{
    CancelKind, CancelReason, CleanupBudget, Cx, Outcome, RegionError, RegionOptions, Runtime,
};

#[derive(Default)]
struct Counters {
    dropped: AtomicUsize,
    finished: AtomicUsize,
    finalizers: AtomicUsize,
    regions: AtomicUsize,
    spawned: AtomicUsize,
}

/// Counts its drop: proves each task's future is dropped exactly once.
struct Token(Arc<Counters>);
impl Drop for Token {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

const DEPTH: u32 = 9;
const HOUR: Duration = Duration::from_secs(3600);
const LEAVES: usize = 195; // per region at the bottom: 2^9 * 195 ~ 100k

/// A binary tree of regions; every region registers a finalizer; bottom
/// regions spawn LEAVES tasks that either finish or sleep until cancelled.
fn tree(
    cx: Cx,
    depth: u32,
    c: Arc<Counters>,
    sleepers: bool,
) -> Pin<Box<dyn Future<Output = Outcome<(), RegionError<()>>> + Send>> {
    let fut = cx.region_with(RegionOptions::collect_all(), move |cx| async move {
        c.regions.fetch_add(1, Ordering::Relaxed);
        let f = c.clone();
        cx.defer(move || {
            f.finalizers.fetch_add(1, Ordering::Relaxed);
        });
        if depth == 0 {
            for i in 0..LEAVES {
                let c = c.clone();
                c.spawned.fetch_add(1, Ordering::Relaxed);
                cx.try_spawn(move |cx| async move {
                    let token = Token(c.clone());
                    if sleepers && i % 2 == 0 {
                        let r = cx.sleep(Duration::from_secs(3600)).await;
                        drop(token);
                        c.finished.fetch_add(1, Ordering::Relaxed);
                        return r.map_err(|_| ());
                    }
                    cx.yield_now().await.ok();
                    drop(token);
                    c.finished.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, ()>(())
                });
            }
        } else {
            for _ in 0..2 {
                let c = c.clone();
                cx.spawn(move |cx| async move {
                    tree(cx, depth - 1, c, sleepers).await;
                });
            }
        }
        Ok::<_, ()>(())
    });
    Box::pin(fut)
}

// Each test runs on a two-worker runtime and a current-thread one.
mod common;
use common::both_runtimes;

/// `tasks`: the tasks beyond the leaves and the subtrees' own (the
/// `block_on`'s root included).
fn check(rt: &Runtime, c: &Counters, tasks: u64) {
    let spawned = c.spawned.load(Ordering::Relaxed);
    assert!(spawned >= 99_000, "spawned {spawned}");
    assert_eq!(
        c.dropped.load(Ordering::Relaxed),
        spawned,
        "every leaf future dropped once"
    );
    assert_eq!(
        c.finished.load(Ordering::Relaxed),
        spawned,
        "every leaf ran its end"
    );
    let regions = c.regions.load(Ordering::Relaxed);
    assert_eq!(regions, (1 << (DEPTH + 1)) - 1);
    assert_eq!(
        c.finalizers.load(Ordering::Relaxed),
        regions,
        "every finalizer once"
    );
    let stats = rt.stats();
    assert_eq!(stats.tasks_alive(), 0, "{stats:?}");
    // Every task counted once as spawned and once as finished, whichever
    // worker's shard counted it: the leaves, a task for each region below
    // the top one, and `tasks`.
    assert_eq!(
        stats.tasks_spawned,
        (spawned + regions - 1) as u64 + tasks,
        "{stats:?}"
    );
    assert_eq!(stats.tasks_finished, stats.tasks_spawned, "{stats:?}");
    assert_eq!(stats.tasks_cut_off, 0);
}

#[test]
fn hundred_thousand_tasks_close_to_nothing() {
    for rt in both_runtimes() {
        let c = Arc::new(Counters::default());
        let c2 = c.clone();
        let out =
            rt.block_on(
                move |cx| async move { Ok::<_, ()>(tree(cx.narrow(), DEPTH, c2, false).await) },
            );
        assert!(out.ok().unwrap().is_ok());
        check(&rt, &c, 1);
    }
}

#[test]
fn hundred_thousand_tasks_cancelled_mid_way_drain_completely() {
    // No cleanup deadline: the drain of 100 000 tasks must complete however
    // slow the machine (AddressSanitizer, a loaded CI box), so the outcome
    // cannot depend on timing.
    let rt = Runtime::builder()
        .worker_threads(2)
        .cleanup_budget(CleanupBudget::UNLIMITED)
        .build(ambient_authority())
        .unwrap();
    let c = Arc::new(Counters::default());
    let c2 = c.clone();
    let out = rt.block_on(move |cx| async move {
        let c3 = c2.clone();
        let inner = cx.region(move |cx| async move {
            cx.spawn(move |cx| async move {
                tree(cx.narrow(), DEPTH, c3, true).await;
            });
            // Wait until every leaf is spawned, then cancel the lot.
            while c2.spawned.load(Ordering::Relaxed) < LEAVES << DEPTH {
                cx.sleep(Duration::from_millis(1)).await.map_err(|_| ())?;
            }
            cx.cancel(CancelReason::user("enough"));
            Ok::<_, ()>(())
        });
        Ok::<_, ()>(inner.await)
    });
    // The body returned Ok before observing; sleepers reported Cancelled,
    // which does not fail the region.
    assert!(out.ok().unwrap().is_ok());
    // The root and the task the tree runs in.
    check(&rt, &c, 2);
    let _ = CancelKind::User;
}

/// A waker that wakes another: a combinator's waker around the task's.
struct Wrapping(std::task::Waker);
impl std::task::Wake for Wrapping {
    fn wake(self: Arc<Self>) {
        self.0.wake_by_ref();
    }
}

/// 20 000 regions, from two owner tasks at once, each of whose bodies
/// spawns 0 to 4 children (asleep for an hour, finishing at once, or
/// yielding a few times), then cancels its own region and returns, the
/// region polled by its owner's own waker (the close then registers
/// nothing while the owner's re-poll is pending, `Region::poll_quiescent`)
/// or, every third region, through a combinator's waker: every region
/// closes `Ok`, every child's future is dropped once and its outcome
/// counted (`Ok` or `Cancelled`, nothing else), nothing stays alive.
#[test]
fn twenty_thousand_self_cancelled_regions_drain_and_count_every_child() {
    const REGIONS: usize = 10_000; // per owner task
    for rt in both_runtimes() {
        let c = Arc::new(Counters::default());
        let outcomes = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]); // ok, cancelled
        let (c2, o2) = (c.clone(), outcomes.clone());
        let closed = rt.block_on(move |cx| async move {
            let owners: Vec<_> = (0..2)
                .map(|owner| {
                    let (c, o) = (c2.clone(), o2.clone());
                    cx.spawn(move |cx| async move {
                        let mut closed_ok = 0usize;
                        for i in 0..REGIONS {
                            let (c, o) = (c.clone(), o.clone());
                            let region = cx.region(move |cx| async move {
                                let handles: Vec<_> = (0..(i + owner) % 5)
                                    .map(|j| {
                                        let token = Token(c.clone());
                                        c.spawned.fetch_add(1, Ordering::Relaxed);
                                        cx.try_spawn(move |cx| async move {
                                            let _token = token;
                                            match j % 3 {
                                                0 => cx.sleep(HOUR).await.map_err(|_| ()),
                                                1 => Ok(()),
                                                _ => {
                                                    for _ in 0..3 {
                                                        cx.yield_now().await.map_err(|_| ())?;
                                                    }
                                                    Ok(())
                                                }
                                            }
                                        })
                                    })
                                    .collect();
                                if i % 2 == 0 {
                                    cx.yield_now().await.map_err(|_| ())?;
                                }
                                cx.cancel(CancelReason::user("the body is done"));
                                // Their outcomes, counted after the close
                                // (the handles leave the body).
                                Ok::<_, ()>((handles, o))
                            });
                            let out = if i % 3 == 0 {
                                let mut region = std::pin::pin!(region);
                                std::future::poll_fn(|task| {
                                    let w = std::task::Waker::from(Arc::new(Wrapping(
                                        task.waker().clone(),
                                    )));
                                    region
                                        .as_mut()
                                        .poll(&mut std::task::Context::from_waker(&w))
                                })
                                .await
                            } else {
                                region.await
                            };
                            let Outcome::Ok((handles, o)) = out else {
                                continue;
                            };
                            closed_ok += 1;
                            for h in handles {
                                assert!(h.is_finished(), "a child outlived its region");
                                match h.await {
                                    Outcome::Ok(()) => o[0].fetch_add(1, Ordering::Relaxed),
                                    Outcome::Cancelled(_) => o[1].fetch_add(1, Ordering::Relaxed),
                                    other => panic!("a child ended {other:?}"),
                                };
                            }
                        }
                        closed_ok
                    })
                })
                .collect();
            let mut closed = 0;
            for h in owners {
                closed += h.await.ok().expect("the owner task finished");
            }
            Ok::<_, ()>(closed)
        });
        assert_eq!(closed.ok(), Some(2 * REGIONS), "every region closed Ok");
        let spawned = c.spawned.load(Ordering::Relaxed);
        assert_eq!(
            spawned,
            2 * REGIONS * 2,
            "0+1+2+3+4 children per five regions"
        );
        assert_eq!(
            c.dropped.load(Ordering::Relaxed),
            spawned,
            "every future dropped once"
        );
        let (ok, cancelled) = (
            outcomes[0].load(Ordering::Relaxed),
            outcomes[1].load(Ordering::Relaxed),
        );
        assert_eq!(ok + cancelled, spawned, "every outcome counted");
        let stats = rt.stats();
        assert_eq!(stats.tasks_alive(), 0, "{stats:?}");
    }
}
