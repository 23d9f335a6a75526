//! The lab runtime under programs that try to slip past it: loops of
//! await points that are ready at once, a spin that ignores its
//! checkpoint's `Err`, a blocking job that runs a runtime of its own, a
//! lab run inside a task, long solo stretches before PCT's picks, a
//! timer that fires and wakes nothing before a deadlock. Each was found
//! by review; each test fails on the code before its fix. The ones that
//! hung then run in a child process under the watchdog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use runtime_core::caps::{All, HasBlocking, HasSpawn, ambient_authority};
use runtime_core::channel::{mpsc, oneshot};
use runtime_core::lab::{LabRuntime, Strategy, Violation};
use runtime_core::time::{Duration, Instant};
use runtime_core::{CancelReason, Cx, Runtime};
use test_watchdog::isolate;

const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(60);

/// A lab runtime whose runs end at 1 000 steps.
fn lab_of_1000_steps() -> LabRuntime {
    LabRuntime::builder().max_steps(1_000).build()
}

/// Runs blocking jobs, each ready at once in the lab, until a task it
/// spawned says stop.
async fn blocking_jobs_until_told<C: HasSpawn + HasBlocking>(cx: Cx<C>) -> Result<bool, ()> {
    let stop = Arc::new(AtomicBool::new(false));
    let told = stop.clone();
    let _stopper = cx.spawn(move |_| async move { told.store(true, Ordering::SeqCst) });
    while !stop.load(Ordering::SeqCst) {
        cx.spawn_blocking(|| std::hint::black_box(1))
            .await
            .map_err(|_| ())?;
    }
    Ok(true)
}

/// A blocking job spends the turn's cooperative budget as the other
/// await points do: a loop of them yields, the other task runs, and the
/// loop ends, in the lab as on the real runtime (in the lab the job runs
/// in line, ready at its first poll: the loop never yielded, and the run
/// never returned).
#[test]
fn a_loop_of_blocking_jobs_yields_in_the_lab_as_on_the_real_runtime() {
    isolate(WATCHDOG, || {
        let rt = Runtime::builder()
            .current_thread()
            .build(ambient_authority())
            .unwrap();
        assert_eq!(rt.block_on(blocking_jobs_until_told).ok(), Some(true));
        let report = lab_of_1000_steps().block_on(blocking_jobs_until_told);
        assert!(report.is_clean(), "{:?}", report.violations);
        assert_eq!(report.outcome.unwrap().ok(), Some(true));
    });
}

/// A region whose body returns at its first poll spends the turn's budget
/// too: a loop of them that never awaits anything pending is a spin, which
/// the lab ends at its step limit, and on a current-thread runtime it lets
/// the other tasks run (both hung).
#[test]
fn a_loop_of_regions_ready_at_once_yields() {
    isolate(WATCHDOG, || {
        let report = lab_of_1000_steps().block_on(|cx| async move {
            loop {
                let _ = cx.region(|_| async { Ok::<_, ()>(()) }).await;
            }
            #[allow(unreachable_code)]
            Ok::<_, ()>(())
        });
        assert_eq!(
            report.violations.first(),
            Some(&Violation::StepLimit { steps: 1_000 }),
            "{:?}",
            report.violations
        );
        let rt = Runtime::builder()
            .current_thread()
            .build(ambient_authority())
            .unwrap();
        let regions = rt
            .block_on(|cx| async move {
                let stop = Arc::new(AtomicBool::new(false));
                let told = stop.clone();
                let _stopper = cx.spawn(move |_| async move { told.store(true, Ordering::SeqCst) });
                let mut regions = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let _ = cx.scope(|_| async {}).await;
                    regions += 1;
                }
                Ok::<_, ()>(regions)
            })
            .unwrap();
        assert!(
            regions <= 1_000,
            "{regions} regions before the other task ran"
        );
    });
}

/// A task that spins in one poll on checkpoints and ignores their `Err`
/// (`let _ = cx.checkpoint()`) is stopped by a panic at its next look
/// past the step limit, as a spin on the clock is; the run reports the
/// step limit (it never returned).
#[test]
fn a_spin_that_ignores_its_checkpoints_err_ends_at_the_step_limit() {
    isolate(WATCHDOG, || {
        let panics = count_panics();
        let report = lab_of_1000_steps().block_on(|cx| async move {
            let flag = Arc::new(AtomicBool::new(false));
            let set = flag.clone();
            let _setter = cx.spawn(move |_| async move { set.store(true, Ordering::SeqCst) });
            while !flag.load(Ordering::SeqCst) {
                let _ = cx.checkpoint();
            }
            Ok::<_, ()>(())
        });
        assert!(
            report
                .violations
                .iter()
                .any(|v| matches!(v, Violation::StepLimit { .. })),
            "{:?}",
            report.violations
        );
        assert_eq!(panics.load(Ordering::SeqCst), 1);
    });
}

/// A spin that returns at its checkpoint's `Err` still ends with the
/// step limit, and no panic (a task that stops spinning is not stopped).
#[test]
fn a_spin_that_returns_at_its_checkpoints_err_is_cancelled_not_panicked() {
    isolate(WATCHDOG, || {
        let panics = count_panics();
        let report = lab_of_1000_steps().block_on(|cx| async move {
            loop {
                cx.checkpoint().map_err(|_| ())?;
            }
            #[allow(unreachable_code)]
            Ok::<_, ()>(())
        });
        assert_eq!(
            report.violations.first(),
            Some(&Violation::StepLimit { steps: 1_000 })
        );
        assert_eq!(panics.load(Ordering::SeqCst), 0);
    });
}

/// Counts the panics of this (child) process from now on.
fn count_panics() -> Arc<std::sync::atomic::AtomicUsize> {
    let panics = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = panics.clone();
    std::panic::set_hook(Box::new(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    }));
    panics
}

/// Of 200 PCT seeds (depth 1: no change points), how many run the root
/// on (one yield) before the child it has just spawned, after the root
/// first yielded `solo` times with nothing else ready.
fn pct_root_first(solo: u32) -> u32 {
    let mut root_first = 0;
    for seed in 0..200 {
        let report = LabRuntime::builder()
            .seed(seed)
            .strategy(Strategy::Pct {
                depth: 1,
                steps: 100,
            })
            .build()
            .block_on(move |cx| async move {
                for _ in 0..solo {
                    cx.yield_now().await.ok();
                }
                let ran = Arc::new(AtomicBool::new(false));
                let set = ran.clone();
                let child = cx.spawn(move |_| async move { set.store(true, Ordering::SeqCst) });
                cx.yield_now().await.ok();
                let first = !ran.load(Ordering::SeqCst);
                child.await.unwrap();
                Ok::<_, ()>(first)
            });
        if report.outcome.unwrap().ok().unwrap() {
            root_first += 1;
        }
    }
    root_first
}

/// PCT demotes a task for a streak of steps it ran while others were
/// ready, not for steps it ran alone: after 40 solo yields the root still
/// runs before its new child in about half the seeds, as after 10 (it
/// did in none: demoted at the child's arrival, whatever the seed).
#[test]
fn pct_counts_only_the_steps_a_task_ran_while_others_were_ready() {
    let fresh = pct_root_first(10);
    let after_solo = pct_root_first(40);
    assert!((60..=140).contains(&fresh), "{fresh}");
    assert!(
        (60..=140).contains(&after_solo),
        "root first in {after_solo}/200 seeds after 40 solo yields, {fresh}/200 after 10"
    );
}

fn job_with_a_runtime_of_its_own() -> Option<u32> {
    let rt = Runtime::builder()
        .current_thread()
        .build(ambient_authority())
        .unwrap();
    rt.block_on(|cx| async move { Ok::<_, ()>(cx.spawn(|_| async { 42 }).await.unwrap()) })
        .ok()
}

/// A blocking job the lab runs in line runs as on a thread that polls no
/// task, as on the real runtime's pool: one that runs a runtime of its
/// own works (it was refused as a `block_on` from inside a task).
#[test]
fn a_blocking_job_with_a_runtime_of_its_own_runs_in_the_lab_as_on_the_real_runtime() {
    let rt = Runtime::builder()
        .worker_threads(2)
        .build(ambient_authority())
        .unwrap();
    let real = rt
        .block_on(|cx| async move {
            Ok::<_, ()>(format!(
                "{:?}",
                cx.spawn_blocking(job_with_a_runtime_of_its_own).await
            ))
        })
        .unwrap();
    assert_eq!(real, "Ok(Some(42))");
    let report = LabRuntime::new(1).block_on(|cx| async move {
        Ok::<_, ()>(format!(
            "{:?}",
            cx.spawn_blocking(job_with_a_runtime_of_its_own).await
        ))
    });
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.outcome.unwrap().ok().unwrap(), real);
}

/// A deadlock is reported at the time everything stopped, not at the
/// time of a later timer that fired and woke nothing (here the grace
/// timer of a task that finished its cleanup well within its grace).
#[test]
fn a_deadlock_is_reported_when_everything_stopped_not_at_a_stale_timer() {
    let report = LabRuntime::new(1).block_on(|cx| async move {
        let h = cx.spawn(|cx| async move {
            let _ = cx.sleep(Duration::from_secs(100)).await; // cancelled at 1 ms
            let _ = cx.masked(async { cx.yield_now().await }).await; // a cleanup poll more
        });
        cx.sleep(Duration::from_millis(1)).await.ok();
        h.cancel(CancelReason::user("stop"));
        let _ = h.await;
        let (_tx, mut rx) = oneshot::channel::<u8>();
        let _ = rx.recv(&cx).await; // nothing ever sends
        Ok::<_, ()>(())
    });
    let one_ms = Instant::ZERO + Duration::from_millis(1);
    assert!(
        matches!(report.violations.first(), Some(Violation::Deadlock { at, .. }) if *at == one_ms),
        "{:?}\n{}",
        report.violations,
        report.trace
    );
    assert_eq!(report.elapsed, Duration::from_millis(1));
}

/// A task that spins on ready channel operations until another task says
/// stop (the turn's budget makes it yield now and then); `lab_first`: it
/// runs a lab run first, inside its poll.
async fn ready_channel_spin_until_told(cx: Cx<All>, lab_first: bool) -> Result<u64, ()> {
    if lab_first {
        let report = LabRuntime::new(1).block_on(|_| async { Ok::<_, ()>(()) });
        assert!(report.is_clean());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let told = stop.clone();
    let _stopper = cx.spawn(move |_| async move { told.store(true, Ordering::SeqCst) });
    let (tx, mut rx) = mpsc::channel::<u8>(1).map_err(|_| ())?;
    let mut rounds = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tx.send(&cx, 1).await.map_err(|_| ())?;
        rx.recv(&cx).await.map_err(|_| ())?;
        rounds += 1;
    }
    Ok(rounds)
}

/// A lab run inside a task leaves the task's cooperative budget as it was
/// (it lifted it for the rest of the poll: the spin never yielded).
#[test]
fn a_lab_run_inside_a_task_leaves_its_coop_budget_alone() {
    isolate(WATCHDOG, || {
        let run = |lab_first| {
            let rt = Runtime::builder()
                .current_thread()
                .build(ambient_authority())
                .unwrap();
            rt.block_on(move |cx| ready_channel_spin_until_told(cx, lab_first))
                .ok()
                .unwrap()
        };
        let without = run(false);
        let with = run(true);
        assert!(without < 1_000, "{without}");
        assert!(
            with < 1_000,
            "{with} rounds after a lab run, {without} without"
        );
    });
}

/// Polls `fut` by hand, at most `tries` times (a job's own small
/// executor).
fn poll_by_hand<F: std::future::Future>(fut: F, tries: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    (0..tries).find_map(|_| match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    })
}

/// Blocking jobs that each poll, by hand, a channel whose value is
/// already there; how many never got it.
async fn jobs_polling_ready_values<C: HasBlocking>(cx: Cx<C>) -> Result<u32, ()> {
    let mut starved = 0;
    for i in 0..300u32 {
        let (tx, mut rx) = oneshot::channel::<u32>();
        tx.send(i).unwrap();
        let job_cx = cx.clone();
        let got = cx
            .spawn_blocking(move || poll_by_hand(rx.recv(&job_cx), 100_000).map(|r| r.ok()))
            .await
            .map_err(|_| ())?;
        if got != Some(Some(i)) {
            starved += 1;
        }
    }
    Ok(starved)
}

/// A blocking job the lab runs in line runs under no turn's budget, as on
/// the real runtime's pool (it ran under its task's, and one started at
/// the end of the turn found every ready value pending for ever).
#[test]
fn a_blocking_job_the_lab_runs_in_line_has_no_turn_budget() {
    let rt = Runtime::builder()
        .current_thread()
        .build(ambient_authority())
        .unwrap();
    assert_eq!(rt.block_on(jobs_polling_ready_values).ok(), Some(0));
    let report = LabRuntime::builder()
        .max_steps(100_000)
        .build()
        .block_on(jobs_polling_ready_values);
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.outcome.and_then(|o| o.ok()), Some(0));
}

/// The same job in a lab run made inside a task of a real runtime: it
/// runs as on a thread off every pool's workers too (it was refused as a
/// `block_on` from a worker thread).
#[test]
fn a_blocking_job_with_a_runtime_of_its_own_runs_in_a_lab_run_inside_a_task() {
    let rt = Runtime::builder()
        .current_thread()
        .build(ambient_authority())
        .unwrap();
    let in_lab = rt
        .block_on(|_| async move {
            let report = LabRuntime::new(1).block_on(|cx| async move {
                Ok::<_, ()>(format!(
                    "{:?}",
                    cx.spawn_blocking(job_with_a_runtime_of_its_own).await
                ))
            });
            Ok::<_, ()>(report.outcome.unwrap().ok().unwrap())
        })
        .unwrap();
    assert_eq!(in_lab, "Ok(Some(42))");
}
