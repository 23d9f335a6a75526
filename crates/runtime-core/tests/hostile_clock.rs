//! A user's clock at its worst (it panics, it steps back) and deadlines
//! at the edges (one that passed before the first poll, one reached
//! through the context of a finished task). Each case was found by review
//! (2026-12-02) and fails on the code before its fix.
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use runtime_core::caps::ambient_authority;
use runtime_core::time::{Clock, Duration, Instant};
use runtime_core::{Budget, CancelKind, RegionOptions, Runtime};
use test_watchdog::isolate;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// A clock that moves only when told, and panics while `panic` is set.
#[derive(Default)]
struct Script {
    nanos: AtomicU64,
    panic: AtomicBool,
}

#[derive(Clone, Default)]
struct Scripted(Arc<Script>);

impl Scripted {
    fn set(&self, nanos: u64) {
        self.0.nanos.store(nanos, Ordering::SeqCst);
    }
    fn panics(&self, on: bool) {
        self.0.panic.store(on, Ordering::SeqCst);
    }
}

impl Clock for Scripted {
    fn now(&self) -> Instant {
        if self.0.panic.load(Ordering::SeqCst) {
            panic!("scripted clock failure");
        }
        Instant::from_nanos(self.0.nanos.load(Ordering::SeqCst))
    }
}

fn rt_with(clock: &Scripted) -> Runtime {
    Runtime::builder()
        .current_thread()
        .clock(clock.clone())
        .build(ambient_authority())
        .unwrap()
}

fn real_rt() -> Runtime {
    Runtime::builder()
        .current_thread()
        .build(ambient_authority())
        .unwrap()
}

/// A panicking clock reads as its last good reading (it read as the
/// wheel's last turn: with no timer due, 10 s back, and `Cx::now` went
/// backwards).
#[test]
fn a_panicking_clock_reads_as_its_last_good_reading() {
    let clock = Scripted::default();
    let rt = rt_with(&clock);
    let c = clock.clone();
    let out = rt.block_on(move |cx| async move {
        c.set(10 * SEC);
        let good = cx.now();
        c.panics(true);
        let fallback = cx.now();
        c.panics(false);
        Ok::<_, ()>((good, fallback))
    });
    let (good, fallback) = out.ok().unwrap();
    assert_eq!(good, Instant::from_nanos(10 * SEC));
    assert_eq!(fallback, good, "Cx::now went back");
}

/// A sleep made while the clock panics is counted from the last good
/// reading (it was counted from the wheel's last turn, 10 s back, and a
/// 5 s sleep ended at once).
#[test]
fn a_sleep_made_while_the_clock_panics_does_not_end_early() {
    let clock = Scripted::default();
    let rt = rt_with(&clock);
    let c = clock.clone();
    let out = rt.block_on(move |cx| async move {
        c.set(10 * SEC);
        let start = cx.now();
        c.panics(true);
        let sleep = cx.sleep(Duration::from_secs(5));
        c.panics(false);
        // The clock stays at 10 s: a 5 s sleep may not end; race it
        // against a yield loop that gives up after many turns.
        let mut sleep = std::pin::pin!(sleep);
        let mut ended = false;
        for _ in 0..1000 {
            if std::future::poll_fn(|t| std::task::Poll::Ready(sleep.as_mut().poll(t).is_ready()))
                .await
            {
                ended = true;
                break;
            }
            cx.yield_now().await.map_err(|_| ())?;
        }
        Ok::<_, ()>((ended, cx.now() - start))
    });
    let (ended, elapsed) = out.ok().unwrap();
    assert!(!ended, "a 5 s sleep ended after {elapsed:?} of clock time");
}

/// A clock that steps back (as one over `SystemTime` does when the
/// system's time is corrected) is held to its highest reading: a sleep
/// woken by its timer ends (it read the earlier time, found its deadline
/// not reached, kept its fired timer's handle and never woke again).
#[test]
fn a_sleep_woken_while_the_clock_has_stepped_back_still_ends() {
    isolate(std::time::Duration::from_secs(20), || {
        let clock = Scripted::default();
        let rt = rt_with(&clock);
        let c = clock.clone();
        let out = rt.block_on(move |cx| async move {
            let child =
                cx.spawn(
                    |cx| async move { cx.sleep_until(Instant::from_nanos(10 * MS)).await.is_ok() },
                );
            cx.yield_now().await.map_err(|_| ())?; // the child registers its timer
            c.set(10 * MS);
            // Look at the clock until a look turns the wheel (every 32nd).
            for _ in 0..64 {
                let _ = cx.now();
            }
            c.set(5 * MS); // steps back 5 ms
            for _ in 0..10 {
                cx.yield_now().await.map_err(|_| ())?; // the child polls: not yet
            }
            c.set(3600 * SEC); // an hour on
            Ok::<_, ()>(child.await.ok())
        });
        assert_eq!(out.ok(), Some(Some(true)));
    });
}

/// A cancellation requested while the clock panics keeps its whole grace
/// period (`CleanupBudget::grace`: "no earlier than this after the
/// request"): it was counted from the wheel's last turn, 100 s back, and
/// the task was cut off at once.
#[test]
fn a_cancellation_requested_while_the_clock_panics_keeps_its_grace() {
    isolate(std::time::Duration::from_secs(20), || {
        let clock = Scripted::default();
        let rt = Runtime::builder()
            .current_thread()
            .clock(clock.clone())
            .cleanup_budget(runtime_core::CleanupBudget {
                polls: None,
                grace: Some(Duration::from_secs(1)),
            })
            .build(ambient_authority())
            .unwrap();
        let c = clock.clone();
        let out = rt.block_on(move |cx| async move {
            c.set(100 * SEC);
            let last_good = cx.now(); // a good reading: 100 s
            assert_eq!(last_good, Instant::from_nanos(100 * SEC));
            let h = cx.spawn(|_| std::future::pending::<()>()); // ignores its cancellation
            cx.yield_now().await.map_err(|_| ())?;
            c.panics(true);
            h.cancel(runtime_core::CancelReason::user("stop"));
            c.panics(false);
            // The clock stays at 100 s: turn the wheel a while.
            for _ in 0..20 {
                for _ in 0..64 {
                    let _ = cx.now();
                }
                cx.yield_now().await.map_err(|_| ())?;
            }
            let cut_early = h.is_finished();
            c.set(200 * SEC);
            let _ = h.await;
            Ok::<_, ()>(cut_early)
        });
        assert_eq!(
            out.ok(),
            Some(false),
            "cut off with no clock time of its grace passed"
        );
    });
}

/// A region opened through the context of a task that has finished keeps
/// the task's deadline (its budget's): it had no timer (the open counted on
/// the owner's, which went when the owner finished), and ran past it.
#[test]
fn a_region_opened_through_a_finished_tasks_cx_keeps_the_tasks_deadline() {
    let rt = real_rt();
    let out = rt.block_on(|cx| async move {
        let deadline = cx.now() + Duration::from_millis(50);
        let t = cx.spawn_with(
            Budget::UNLIMITED.with_deadline(deadline),
            |cx| async move { cx },
        );
        let tcx = t.await.ok().unwrap();
        let start = cx.now();
        let r = tcx
            .region(|cx| async move {
                let seen = cx.budget().deadline;
                cx.sleep(Duration::from_secs(3)).await?;
                Ok::<_, runtime_core::Cancelled>(seen)
            })
            .await;
        Ok::<_, ()>((
            deadline,
            r.cancel_reason().map(|r| r.kind()),
            r.ok(),
            cx.now() - start,
        ))
    });
    let (deadline, kind, seen, took) = out.ok().unwrap();
    assert_eq!(
        kind,
        Some(CancelKind::Deadline),
        "the region ran {took:?}, to its end (budget said deadline {seen:?}, set {deadline:?})"
    );
}

/// A deadline already passed when the task is spawned (or the region
/// opened) is seen by the first checkpoint ("cancel with `Deadline` when
/// the clock reaches this"): the timer it got fired at the wheel's next
/// turn, up to a turn of checkpoints later.
#[test]
fn a_deadline_already_passed_is_seen_by_the_first_checkpoint() {
    let rt = real_rt();
    let out = rt.block_on(|cx| async move {
        let past = Instant::ZERO;
        let task = cx
            .spawn_with(Budget::UNLIMITED.with_deadline(past), |cx| async move {
                cx.checkpoint().is_err()
            })
            .await
            .ok();
        let region = cx
            .region_with(
                RegionOptions::fail_fast().budget(Budget::UNLIMITED.with_deadline(past)),
                |cx| async move { Ok::<_, ()>(cx.checkpoint().is_err()) },
            )
            .await
            .ok();
        Ok::<_, ()>((task, region))
    });
    assert_eq!(out.ok(), Some((Some(true), Some(true))));
}

/// A region whose future outlives the task that opened it (returned as its
/// output, or polled once and handed on) keeps the task's deadline: it
/// relied on the task's timer, which went when the task finished, and ran
/// past the deadline (found by review of the fix above, which covered only
/// a context used after its task finished).
#[test]
// The opener hands the region's future on, unawaited: on purpose.
#[allow(clippy::async_yields_async)]
fn a_region_future_that_outlives_its_opener_keeps_the_deadline() {
    isolate(std::time::Duration::from_secs(30), || {
        for polled_first in [false, true] {
            let rt = real_rt();
            let out = rt.block_on(move |cx| async move {
                let deadline = cx.now() + Duration::from_millis(50);
                let t = cx.spawn_with(
                    Budget::UNLIMITED.with_deadline(deadline),
                    move |cx| async move {
                        let mut fut = Box::pin(async move {
                            cx.region(|cx| async move {
                                cx.sleep(Duration::from_secs(3)).await?;
                                Ok::<_, runtime_core::Cancelled>(())
                            })
                            .await
                        });
                        if polled_first {
                            let ready = std::future::poll_fn(|t| {
                                std::task::Poll::Ready(fut.as_mut().poll(t).is_ready())
                            })
                            .await;
                            assert!(!ready);
                        }
                        fut
                    },
                );
                let fut = t.await.ok().expect("the opener finished");
                let r = fut.await;
                Ok::<_, ()>(r.cancel_reason().map(|r| r.kind()))
            });
            assert_eq!(
                out.ok(),
                Some(Some(CancelKind::Deadline)),
                "polled first: {polled_first}"
            );
        }
    });
}

/// A task spawned, and a region opened, after their region's deadline
/// passed (its timer not fired yet) see it at their first checkpoint (the
/// check for a deadline already passed skipped deadlines inherited from the
/// region: found by review).
#[test]
fn a_regions_deadline_already_passed_is_seen_by_the_first_checkpoint_below() {
    let rt = real_rt();
    let out = rt.block_on(|cx| async move {
        let deadline = cx.now() + Duration::from_millis(20);
        let r = cx
            .region_with(
                RegionOptions::fail_fast().budget(Budget::UNLIMITED.with_deadline(deadline)),
                |cx| async move {
                    // Past the deadline, no checkpoint (no timer turn).
                    std::thread::sleep(std::time::Duration::from_millis(40));
                    let task = cx.spawn(|cx| async move { cx.checkpoint().is_err() });
                    let scope = cx.scope(|cx| async move { cx.checkpoint().is_err() });
                    let scope = scope.await.ok();
                    Ok::<_, ()>((task.await.ok(), scope))
                },
            )
            .await;
        Ok::<_, ()>(r.ok())
    });
    assert_eq!(out.ok(), Some(Some((Some(true), Some(true)))));
}
