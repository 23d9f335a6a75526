//! The cancellation protocol: request with a reason, drain to checkpoints
//! (level-triggered), finalize under a cleanup budget, masks, budgets.

use runtime_core::caps::ambient_authority;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use runtime_core::time::{Duration, Instant};
use runtime_core::{
    Budget, CancelKind, CancelReason, Cancelled, CleanupBudget, Cx, MAX_MASK_DEPTH, Outcome,
    RegionOptions, Runtime,
};

fn rt() -> Runtime {
    Runtime::builder()
        .worker_threads(2)
        .build(ambient_authority())
        .unwrap()
}

type Body = Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send>>;

/// One of many different await points, chosen by `i`.
fn await_point(cx: Cx, i: usize) -> Body {
    Box::pin(async move {
        match i % 7 {
            0 => cx.sleep(Duration::from_secs(3600 + i as u64)).await,
            1 => loop {
                cx.yield_now().await?;
            },
            2 => {
                let mut iv = cx.interval(Duration::from_millis(50 + i as u64));
                loop {
                    iv.tick(&cx).await?;
                }
            }
            3 => cx.sleep_until(Instant::MAX).await,
            4 => loop {
                cx.checkpoint()?;
                cx.yield_now().await?;
            },
            5 => {
                // Waiting on a child that sleeps: the child is cancelled
                // too; the parent then sees it at its own checkpoint.
                let child =
                    cx.try_spawn(|cx| async move { cx.sleep(Duration::from_secs(3600)).await });
                let _ = child.await;
                cx.checkpoint()
            }
            _ => {
                // Inside a nested region body.
                match cx
                    .region(|cx| async move { cx.sleep(Duration::from_secs(3600)).await })
                    .await
                {
                    Outcome::Cancelled(r) => Err(Cancelled(r)),
                    other => panic!("nested region ended {other:?}"),
                }
            }
        }
    })
}

#[test]
fn a_thousand_await_points_all_report_cancelled_with_the_reason() {
    let rt = rt();
    let cleanups = Arc::new(AtomicUsize::new(0));
    let c = cleanups.clone();
    let out = rt.block_on(move |cx| async move {
        let region = cx.region_with(RegionOptions::collect_all(), move |cx| async move {
            let mut handles = Vec::new();
            let started = Arc::new(AtomicUsize::new(0));
            for i in 0..1000 {
                let c = c.clone();
                let started = started.clone();
                handles.push(cx.try_spawn(move |cx| async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    let r = await_point(cx.narrow(), i).await;
                    // Cleanup: runs once, after observing the request.
                    c.fetch_add(1, Ordering::SeqCst);
                    r
                }));
            }
            // Let every task start (most then sit at their await point;
            // the outcome must not depend on how many got that far), then
            // cancel.
            while started.load(Ordering::SeqCst) < 1000 {
                cx.yield_now().await.unwrap();
            }
            cx.cancel(CancelReason::user("stop all"));
            let mut outcomes = Vec::new();
            for h in handles {
                outcomes.push(h.await);
            }
            Ok::<_, ()>(outcomes)
        });
        let outcomes = match region.await {
            Outcome::Cancelled(_) => panic!("the body does not observe: it returns Ok"),
            o => match o {
                Outcome::Ok(v) => v,
                other => panic!("region ended {:?}", other.map(|_| ())),
            },
        };
        Ok::<_, ()>(outcomes)
    });
    let outcomes = out.ok().unwrap();
    assert_eq!(outcomes.len(), 1000);
    for (i, o) in outcomes.iter().enumerate() {
        let r = o
            .cancel_reason()
            .unwrap_or_else(|| panic!("task {i} ended {o:?}"));
        assert_eq!(r.kind(), CancelKind::User, "task {i}");
        assert_eq!(r.message(), Some("stop all"));
    }
    assert_eq!(cleanups.load(Ordering::SeqCst), 1000);
    assert_eq!(rt.stats().tasks_alive(), 0);
    assert_eq!(rt.stats().tasks_cut_off, 0);
}

#[test]
fn nested_regions_see_parent_cancelled_with_the_cause() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let h = cx.try_spawn(|cx| async move {
            let inner = cx.region(|cx| async move {
                let t = cx.try_spawn(|cx| async move { cx.sleep(Duration::from_secs(3600)).await });
                Ok::<_, ()>(t.await)
            });
            Ok::<_, ()>(inner.await)
        });
        cx.sleep(Duration::from_millis(10)).await.unwrap();
        h.cancel(CancelReason::new(CancelKind::User).with_message("outer"));
        Ok::<_, ()>(h.await)
    });
    // The task itself returned Ok (it never checked), carrying the inner
    // region's outcome, whose sleeper saw ParentCancelled(User).
    let task = out.ok().unwrap().ok().unwrap();
    let sleeper = task.ok().unwrap();
    let r = sleeper.cancel_reason().unwrap();
    assert_eq!(r.kind(), CancelKind::ParentCancelled);
    assert_eq!(r.root_cause().kind(), CancelKind::User);
    assert_eq!(r.root_cause().message(), Some("outer"));
}

#[test]
fn checkpoints_are_level_triggered_and_reasons_only_strengthen() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        cx.cancel(CancelReason::user("first"));
        let a = cx.checkpoint().unwrap_err();
        let b = cx.checkpoint().unwrap_err();
        assert_eq!(a, b);
        cx.cancel(CancelReason::new(CancelKind::Shutdown));
        assert_eq!(
            cx.checkpoint().unwrap_err().reason().kind(),
            CancelKind::Shutdown
        );
        cx.cancel(CancelReason::user("weaker"));
        assert_eq!(
            cx.checkpoint().unwrap_err().reason().kind(),
            CancelKind::Shutdown
        );
        assert!(cx.yield_now().await.is_err());
        Ok::<_, ()>(())
    });
    assert!(out.is_ok(), "{out:?}");
}

#[test]
fn cleanup_that_ignores_cancellation_is_cut_off_by_poll_quota() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let spec = RegionOptions::collect_all().cleanup(CleanupBudget {
            polls: Some(10),
            grace: None,
        });
        let r = cx
            .region_with(spec, |cx| async move {
                let stubborn = cx.try_spawn(|cx| async move {
                    loop {
                        let _ = cx.yield_now().await; // ignores Cancelled
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), ()>(())
                });
                cx.yield_now().await.unwrap();
                stubborn.cancel(CancelReason::user("stop"));
                Ok::<_, ()>(stubborn.await)
            })
            .await;
        Ok::<_, ()>(r)
    });
    let stubborn = out.ok().unwrap().ok().unwrap();
    assert_eq!(
        stubborn.cancel_reason().map(|r| r.kind()),
        Some(CancelKind::User)
    );
    assert_eq!(rt.stats().tasks_cut_off, 1);
}

#[test]
fn cleanup_that_hangs_is_cut_off_by_grace_period() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let spec = RegionOptions::collect_all().cleanup(CleanupBudget {
            polls: None,
            grace: Some(Duration::from_millis(20)),
        });
        let r = cx
            .region_with(spec, |cx| async move {
                let hung = cx.try_spawn(|cx| async move {
                    let _ = cx.sleep(Duration::from_secs(3600)).await;
                    // "Cleanup" that never finishes and never checks.
                    std::future::pending::<()>().await;
                    Ok::<(), ()>(())
                });
                cx.yield_now().await.unwrap();
                let t0 = cx.now();
                hung.cancel(CancelReason::user("stop"));
                let o = hung.await;
                Ok::<_, ()>((o, cx.now() - t0))
            })
            .await;
        Ok::<_, ()>(r)
    });
    let (o, took) = out.ok().unwrap().ok().unwrap();
    assert!(o.is_cancelled());
    assert!(took >= Duration::from_millis(20), "cut off after {took:?}");
    assert_eq!(rt.stats().tasks_cut_off, 1);
}

#[test]
fn masked_sections_defer_cancellation() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let h = cx.spawn(|cx| async move {
            let inner = cx.masked(async {
                // The request arrives during this sleep; masked, it finishes.
                cx.sleep(Duration::from_millis(30)).await
            });
            let slept = inner.await.unwrap();
            let after = cx.checkpoint();
            (slept, after)
        });
        cx.sleep(Duration::from_millis(5)).await.unwrap();
        h.cancel(CancelReason::user("later"));
        Ok::<_, ()>(h.await)
    });
    let (slept, after) = out.ok().unwrap().ok().unwrap();
    assert!(slept.is_ok(), "masked sleep was interrupted: {slept:?}");
    assert_eq!(after.unwrap_err().reason().message(), Some("later"));
}

#[test]
fn mask_nesting_is_bounded() {
    let rt = rt();
    fn nest(cx: &Cx, depth: u32) -> Pin<Box<dyn Future<Output = u32> + Send + '_>> {
        Box::pin(async move {
            match cx.masked(async { nest(cx, depth + 1).await }).await {
                Ok(d) => d,
                Err(_) => depth,
            }
        })
    }
    let out = rt.block_on(|cx| async move { Ok::<_, ()>(nest(&cx.narrow(), 0).await) });
    assert_eq!(out.ok(), Some(MAX_MASK_DEPTH));
}

#[test]
fn budgets_turn_into_cancellation_with_the_matching_reason() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let polls = cx.try_spawn_with(Budget::UNLIMITED.with_poll_quota(5), |cx| async move {
            loop {
                cx.yield_now().await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), Cancelled>(())
        });
        let cost = cx.try_spawn_with(Budget::UNLIMITED.with_cost_quota(100), |cx| async move {
            loop {
                cx.charge(30)?;
                cx.yield_now().await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), Cancelled>(())
        });
        let deadline = cx.try_spawn_with(
            Budget::UNLIMITED.with_deadline(cx.now() + Duration::from_millis(10)),
            |cx| async move { cx.sleep(Duration::from_secs(3600)).await },
        );
        let region = cx
            .region_with(
                RegionOptions::fail_fast()
                    .budget(Budget::UNLIMITED.with_deadline(cx.now() + Duration::from_millis(10))),
                |cx| async move {
                    let t =
                        cx.try_spawn(|cx| async move { cx.sleep(Duration::from_secs(3600)).await });
                    Ok::<_, ()>(t.await)
                },
            )
            .await;
        Ok::<_, ()>((polls.await, cost.await, deadline.await, region))
    });
    let (polls, cost, deadline, region) = out.ok().unwrap();
    assert_eq!(
        polls.cancel_reason().map(|r| r.kind()),
        Some(CancelKind::PollQuota)
    );
    assert_eq!(
        cost.cancel_reason().map(|r| r.kind()),
        Some(CancelKind::CostBudget)
    );
    assert_eq!(
        deadline.cancel_reason().map(|r| r.kind()),
        Some(CancelKind::Deadline)
    );
    let inner = region.ok().unwrap();
    assert_eq!(
        inner.cancel_reason().map(|r| r.kind()),
        Some(CancelKind::Deadline)
    );
}

/// A task's budget reaches the regions it opens and the tasks spawned in
/// them (before: such a region took its parent region's budget alone, so a
/// task's quotas did not bind the tasks it spawned through a region).
#[test]
fn a_tasks_budget_reaches_the_tasks_spawned_in_a_region_it_opens() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let h = cx.spawn_with(
            Budget::UNLIMITED.with_cost_quota(10).with_poll_quota(5),
            |cx| async move {
                cx.region(|cx| async move {
                    let body = cx.budget();
                    let child = cx
                        .spawn(|cx| async move {
                            let over = cx.charge(1_000).is_err();
                            (cx.budget(), over)
                        })
                        .await
                        .ok()
                        .ok_or(())?;
                    Ok::<_, ()>((body, child))
                })
                .await
                .ok()
            },
        );
        Ok::<_, ()>(h.await.ok().flatten())
    });
    let (body, (child, over)) = out.ok().flatten().expect("the task ran");
    assert_eq!((body.cost_quota, body.poll_quota), (Some(10), Some(5)));
    assert_eq!((child.cost_quota, child.poll_quota), (Some(10), Some(5)));
    assert!(over, "charging past the quota is refused");
}

/// A region's poll quota holds on its body, as a task's on the task: the
/// body is cancelled with `PollQuota` before its poll past the quota
/// (before: it ran on, its `cx.budget()` saying the quota it ignored).
#[test]
fn a_regions_poll_quota_cancels_its_body() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let o = cx
            .region_with(
                RegionOptions::fail_fast().budget(Budget::UNLIMITED.with_poll_quota(3)),
                |cx| async move {
                    let mut n = 0u64;
                    while n < 100_000 {
                        if let Err(c) = cx.yield_now().await {
                            return Ok::<_, ()>((n, Some(c.reason().kind())));
                        }
                        n += 1;
                    }
                    Ok((n, None))
                },
            )
            .await;
        Ok::<_, ()>(o.ok())
    });
    let (polled, kind) = out.ok().flatten().expect("the body returned");
    assert_eq!(kind, Some(CancelKind::PollQuota));
    assert!(polled < 3, "{polled} yields");
}

#[test]
fn children_budgets_are_the_meet() {
    let rt = rt();
    let out = rt.block_on(|cx| async move {
        let r = cx
            .region_with(
                RegionOptions::fail_fast().budget(Budget::UNLIMITED.with_poll_quota(50)),
                |cx| async move {
                    let h = cx.try_spawn_with(
                        Budget::UNLIMITED.with_poll_quota(500).with_cost_quota(9),
                        |cx| async move { Ok::<_, ()>(cx.budget()) },
                    );
                    Ok::<_, ()>(h.await.ok().unwrap())
                },
            )
            .await;
        Ok::<_, ()>(r.ok().unwrap())
    });
    let b = out.ok().unwrap();
    assert_eq!(b.poll_quota, Some(50));
    assert_eq!(b.cost_quota, Some(9));
}

#[test]
fn finalizer_that_overruns_is_cut_off_and_counted() {
    let rt = rt();
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let out = rt.block_on(move |cx| async move {
        let spec = RegionOptions::fail_fast().cleanup(CleanupBudget {
            polls: None,
            grace: Some(Duration::from_millis(10)),
        });
        cx.region_with(spec, move |cx| async move {
            let r2 = r2.clone();
            cx.defer(move || {
                r2.fetch_add(1, Ordering::SeqCst);
            });
            cx.finalizer(std::future::pending());
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        Ok::<_, ()>(())
    });
    assert!(out.is_ok());
    // The hung finalizer ran first (reverse order), was cut off; the other
    // still ran.
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(rt.stats().finalizers_cut_off, 1);
}

/// A `defer` runs at its region's close whatever the cleanup budget, a zero
/// one included (before: a zero grace period or poll count cut it off
/// before its first poll, although nothing was cancelled).
#[test]
fn a_deferred_finalizer_runs_under_a_zero_cleanup_budget() {
    let rt = rt();
    for budget in [
        CleanupBudget {
            polls: Some(0),
            grace: None,
        },
        CleanupBudget {
            polls: None,
            grace: Some(Duration::ZERO),
        },
    ] {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let out = rt.block_on(move |cx| async move {
            cx.region_with(
                RegionOptions::fail_fast().cleanup(budget),
                move |cx| async move {
                    cx.defer(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                    });
                    Ok::<_, ()>(())
                },
            )
            .await
            .ok()
            .ok_or(())
        });
        assert!(out.is_ok());
        assert_eq!(ran.load(Ordering::SeqCst), 1, "{budget:?}");
    }
    assert_eq!(rt.stats().finalizers_cut_off, 0);
}
