//! The blocking pool and the timers at their edges: jobs that wait for each
//! other, job results racing their waiter, jobs and timers whose runtime
//! shuts down under a waiter that is not one of its tasks, deadline timers
//! of timeouts dropped early, an interval's late tick.
//!
//! The cases that hang when the runtime is wrong run in a child process
//! under a watchdog (`test_watchdog`), which alone bounds them: no case
//! asserts a duration. The timer cases whose point is *when* something
//! fires run in the lab runtime (virtual time, exact).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};

use runtime_core::caps::{All, ambient_authority};
use runtime_core::lab::{LabRuntime, TraceEvent};
use runtime_core::time::{Duration, Instant, Interval};
use runtime_core::{BlockingError, CancelKind, Cx, Runtime};
use test_watchdog::isolate;

const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` to its end on this thread (no runtime), calling `pending`
/// once, after its first poll that returned `Pending` (the waker is then
/// registered wherever `f` waits).
fn block_on_here<F: Future>(f: F, pending: impl FnOnce()) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let mut pending = Some(pending);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        if let Some(p) = pending.take() {
            p();
        }
        std::thread::park();
    }
}

/// `f`, calling `pending` once after its first `Pending` poll.
async fn signal_when_pending<F: Future>(f: F, pending: impl FnOnce()) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut pending = Some(pending);
    std::future::poll_fn(move |cx| match f.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(v),
        Poll::Pending => {
            if let Some(p) = pending.take() {
                p();
            }
            Poll::Pending
        }
    })
    .await
}

// ---- the blocking pool ---------------------------------------------------------

/// Two jobs that meet at a barrier, spawned back to back while the pool
/// has one idle thread and room for more: each needs a thread of its own.
/// (Both spawns saw the one idle thread, both woke it, none started a
/// second: the first job waited at the barrier for ever.)
#[test]
fn two_jobs_spawned_together_with_one_idle_thread_each_get_a_thread() {
    isolate(WATCHDOG, || {
        for _ in 0..10 {
            let rt = Runtime::builder()
                .worker_threads(1)
                .max_blocking_threads(8)
                .build(ambient_authority())
                .unwrap();
            let out = rt.block_on(|cx| async move {
                // One blocking thread, then idle (its job is over).
                cx.spawn_blocking(|| ()).await.unwrap();
                cx.sleep(Duration::from_millis(20)).await.unwrap();
                let meet = Arc::new(Barrier::new(2));
                let (m1, m2) = (meet.clone(), meet);
                let a = cx.spawn_blocking(move || m1.wait().is_leader());
                let b = cx.spawn_blocking(move || m2.wait().is_leader());
                let (a, b) = (a.await.unwrap(), b.await.unwrap());
                Ok::<_, ()>(a ^ b)
            });
            assert_eq!(out.ok(), Some(true), "one of the two leads the barrier");
        }
    });
}

/// A finished job's value is never taken for a shutdown: `Blocking::poll`
/// read the slot, then took "only I hold the slot" for "the job was
/// dropped unrun", and a job that stored its value and let go of the slot
/// between the two came back `Err(Shutdown)` on a live runtime (about one
/// in 30 000 jobs polled in a tight loop). Jobs polled by hand on several
/// threads at once, each poll racing its job's end.
#[test]
fn a_finished_job_is_never_reported_as_shutdown() {
    const THREADS: usize = 4;
    const JOBS: u64 = 100_000;
    let rt = Runtime::builder()
        .worker_threads(1)
        .max_blocking_threads(THREADS * 2)
        .build(ambient_authority())
        .unwrap();
    let cx: Cx<All> = rt
        .block_on(|cx| async move { Ok::<_, ()>(cx) })
        .ok()
        .unwrap();
    let cx = Arc::new(cx);
    let shut = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cx, shut) = (cx.clone(), shut.clone());
            std::thread::spawn(move || {
                let mut task = Context::from_waker(Waker::noop());
                for i in 0..JOBS {
                    let mut job = cx.spawn_blocking(move || i);
                    let r = loop {
                        if let Poll::Ready(r) = Pin::new(&mut job).poll(&mut task) {
                            break r;
                        }
                        // Let the blocking threads run: four threads
                        // spinning here starved them on two cores (10 s
                        // alone, up to 78 s under load).
                        std::thread::yield_now();
                    };
                    match r {
                        Ok(v) => assert_eq!(v, i),
                        Err(BlockingError::Shutdown) => {
                            shut.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(
        shut.load(Ordering::Relaxed),
        0,
        "finished jobs reported Err(Shutdown) on a live runtime"
    );
}

/// A job still queued when its runtime shuts down resolves to
/// `Err(Shutdown)`, and its waiter is woken: here a plain thread, which
/// nothing else would ever poll again (the job was dropped, the waker
/// with it, unwoken).
#[test]
fn a_queued_job_dropped_at_shutdown_wakes_its_waiter_with_shutdown() {
    isolate(WATCHDOG, || {
        let rt = Runtime::builder()
            .worker_threads(1)
            .max_blocking_threads(1)
            .build(ambient_authority())
            .unwrap();
        let (release, held) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let queued = rt
            .block_on(move |cx| async move {
                // Holds the only blocking thread until released.
                let busy = cx.spawn_blocking(move || {
                    started_tx.send(()).unwrap();
                    held.recv().ok();
                });
                drop(busy);
                started.recv().unwrap();
                // Queued behind it.
                Ok::<_, ()>(cx.spawn_blocking(|| 42u32))
            })
            .ok()
            .unwrap();
        let (waiting_tx, waiting) = mpsc::channel();
        let waiter =
            std::thread::spawn(move || block_on_here(queued, move || waiting_tx.send(()).unwrap()));
        waiting.recv().unwrap();
        let report = rt.shutdown(Duration::from_millis(100));
        assert_eq!(report.blocking_jobs_running, 1);
        assert_eq!(waiter.join().unwrap(), Err(BlockingError::Shutdown));
        release.send(()).unwrap();
    });
}

/// The same with a job whose captured value's `Drop` panics: the panic is
/// caught, and the waiter is still woken.
#[test]
fn a_queued_job_whose_capture_panics_in_drop_still_wakes_its_waiter() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("a Drop that panics");
        }
    }
    isolate(WATCHDOG, || {
        let rt = Runtime::builder()
            .worker_threads(1)
            .max_blocking_threads(1)
            .build(ambient_authority())
            .unwrap();
        let (release, held) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let queued = rt
            .block_on(move |cx| async move {
                drop(cx.spawn_blocking(move || {
                    started_tx.send(()).unwrap();
                    held.recv().ok();
                }));
                started.recv().unwrap();
                let bomb = PanicOnDrop;
                Ok::<_, ()>(cx.spawn_blocking(move || {
                    let _keep = &bomb;
                    1u8
                }))
            })
            .ok()
            .unwrap();
        let (waiting_tx, waiting) = mpsc::channel();
        let waiter =
            std::thread::spawn(move || block_on_here(queued, move || waiting_tx.send(()).unwrap()));
        waiting.recv().unwrap();
        // The panic is caught in the shutdown (which returns).
        rt.shutdown(Duration::from_millis(100));
        assert_eq!(waiter.join().unwrap(), Err(BlockingError::Shutdown));
        release.send(()).unwrap();
    });
}

// ---- a runtime's timers, awaited by another runtime's task ---------------------

/// Runs `wait(cx of A)` in a task of runtime B, shuts A down once that
/// task is waiting on A's timer wheel, and returns what the task got.
fn wait_on_a_then_shut_a_down<T: std::fmt::Debug + Send + 'static>(
    wait: impl FnOnce(Cx<All>) -> Pin<Box<dyn Future<Output = T> + Send>> + Send + 'static,
) -> T {
    let a = Runtime::builder()
        .worker_threads(1)
        .build(ambient_authority())
        .unwrap();
    let acx: Cx<All> = a
        .block_on(|cx| async move { Ok::<_, ()>(cx) })
        .ok()
        .unwrap();
    let (waiting_tx, waiting) = mpsc::channel();
    let b_thread = std::thread::spawn(move || {
        let b = Runtime::builder()
            .worker_threads(1)
            .build(ambient_authority())
            .unwrap();
        let out = b.block_on(move |_| async move {
            let fut = wait(acx);
            Ok::<_, ()>(signal_when_pending(fut, move || waiting_tx.send(()).unwrap()).await)
        });
        out.ok().unwrap()
    });
    waiting.recv().unwrap();
    a.shutdown(Duration::from_millis(100));
    b_thread.join().unwrap()
}

/// An interval made on runtime A and ticked by a task of runtime B ends
/// (`Cancelled(Shutdown)`) when A shuts down. A's clearing of its wheel
/// woke no task waker at all, B's included: B's task waited for ever.
#[test]
fn an_interval_ticked_by_another_runtimes_task_ends_when_its_runtime_shuts_down() {
    isolate(WATCHDOG, || {
        let r = wait_on_a_then_shut_a_down(|acx| {
            let mut every: Interval = acx.interval(HOUR);
            Box::pin(async move {
                // Ticked as a checkpoint of A's context: B's task has none
                // to give that outlives this future.
                every.tick(&acx).await
            })
        });
        let reason = r.expect_err("A's shutdown ends the tick").0;
        assert_eq!(reason.kind(), CancelKind::Shutdown);
    });
}

/// The same for a sleep on a context of A.
#[test]
fn a_sleep_awaited_by_another_runtimes_task_ends_when_its_runtime_shuts_down() {
    isolate(WATCHDOG, || {
        let r = wait_on_a_then_shut_a_down(|acx| Box::pin(async move { acx.sleep(HOUR).await }));
        let reason = r.expect_err("A's shutdown ends the sleep").0;
        assert_eq!(reason.kind(), CancelKind::Shutdown);
    });
}

// ---- a timeout's deadline timer ------------------------------------------------

/// The virtual instants the lab's clock jumped to.
fn advances<T, E>(report: &runtime_core::lab::LabReport<T, E>) -> Vec<Instant> {
    report
        .trace
        .events()
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Advance { to } => Some(*to),
            TraceEvent::Poll { .. } => None,
        })
        .collect()
}

/// A `timeout` future dropped before its region closed (never polled, or
/// polled once) takes its deadline timer with it. The timer stayed in the
/// wheel until the deadline, holding the region node's memory: the lab's
/// clock, which jumps to the next timer, stopped at each dropped one's
/// deadline on its way to the sleep's.
#[test]
fn a_dropped_timeout_leaves_no_deadline_timer() {
    let report = LabRuntime::new(7).block_on(|cx| async move {
        let never_polled = cx.timeout(Duration::from_secs(1), |_| async { Ok::<_, ()>(()) });
        drop(never_polled);
        // Boxed, so that its drop below drops it (not a pinned borrow).
        let mut polled_once = Box::pin(cx.timeout(Duration::from_secs(2), |cx| async move {
            cx.sleep(HOUR).await.map_err(|_| ())
        }));
        std::future::poll_fn(|task| {
            assert!(polled_once.as_mut().poll(task).is_pending());
            Poll::Ready(())
        })
        .await;
        drop(polled_once);
        cx.sleep(Duration::from_secs(10)).await.map_err(|_| ())?;
        Ok::<_, ()>(())
    });
    assert_eq!(report.failure(), None);
    let stops = advances(&report);
    let early: Vec<_> = stops
        .iter()
        .filter(|&&t| t <= Instant::ZERO + Duration::from_secs(2))
        .collect();
    // (The wheel's levels make the clock stop at a level's boundary on
    // its way to a far timer: 8.192 s, 9.984 s on the way to 10 s.)
    assert!(
        early.is_empty(),
        "the clock stopped for the dropped timeouts' deadlines: {stops:?}"
    );
    assert_eq!(
        stops.last(),
        Some(&(Instant::ZERO + Duration::from_secs(10)))
    );
}

// ---- an interval's late tick ---------------------------------------------------

/// An interval whose period is under 2 ms (less than twice the wheel's
/// millisecond rounding) keeps its rate: every tick fires up to 1 ms after
/// its instant, which used to count as late (more than half the period)
/// and restart the schedule from each tick, about half the ticks.
#[test]
fn a_short_period_interval_keeps_its_rate_despite_the_wheel_s_rounding() {
    for (us, expected) in [
        (1001u64, 999u64),
        (1200, 833),
        (1400, 714),
        (1900, 526),
        (2500, 400),
    ] {
        let report = LabRuntime::new(1).block_on(move |cx| async move {
            let mut every = cx.interval(Duration::from_micros(us));
            let end = cx.now() + Duration::from_secs(1);
            let mut n = 0u64;
            while cx.now() < end {
                every.tick(&cx).await.map_err(|_| ())?;
                n += 1;
            }
            Ok::<_, ()>(n)
        });
        assert_eq!(report.failure(), None);
        let n = report.outcome.unwrap().ok().unwrap();
        assert!(
            n.abs_diff(expected) <= 2,
            "period {us} us: {n} ticks in a second of virtual time, not about {expected}"
        );
    }
    // And a tick late by more than half of a short period is late: at
    // 3 ms, the tick due at 6 ms fires at 8 ms (the task was busy), and
    // the next a period after it, at 11 ms, not 1 ms later on the old
    // schedule (as a 2 ms floor on lateness had it).
    let report = LabRuntime::new(1).block_on(|cx| async move {
        let t0 = cx.now();
        let mut every = cx.interval(Duration::from_millis(3));
        let mut log = Vec::new();
        for busy in [0u64, 5, 0, 0] {
            cx.sleep(Duration::from_millis(busy))
                .await
                .map_err(|_| ())?;
            let due = every.tick(&cx).await.map_err(|_| ())?;
            log.push(((due - t0).as_millis(), (cx.now() - t0).as_millis()));
        }
        Ok::<_, ()>(log)
    });
    assert_eq!(report.failure(), None);
    assert_eq!(
        report.outcome.unwrap().ok().unwrap(),
        [(3, 3), (6, 8), (11, 11), (14, 14)],
        "(due, fired) in ms"
    );
}

/// A tick that is late fires at once, and the next one a period after it
/// (it fired 30 ms after the late one, on the old schedule: 70 ms late
/// of a 100 ms period); a tick late by no more than the timers' jitter
/// keeps the schedule (no drift).
#[test]
fn an_intervals_late_tick_puts_the_next_a_period_after_it() {
    let ms = Duration::from_millis;
    let at = |d: Duration| Instant::ZERO + d;
    let report = LabRuntime::new(3).block_on(move |cx| async move {
        let mut every = cx.interval(ms(100));
        let mut ticks = Vec::new();
        let mut fired = Vec::new();
        for busy in [ms(0), ms(170), ms(0), ms(102), ms(0)] {
            // Busy (asleep, in virtual time) before asking for the tick.
            cx.sleep(busy).await.map_err(|_| ())?;
            ticks.push(every.tick(&cx).await.map_err(|_| ())?);
            fired.push(cx.now());
        }
        Ok::<_, ()>((ticks, fired))
    });
    assert_eq!(report.failure(), None);
    let (ticks, fired) = report.outcome.unwrap().ok().unwrap();
    // Made at 0: the first tick is due at 100. Then 170 ms busy: the
    // second (due 200) fires late, at once, at 270; the third a period
    // after it, at 370. Then 102 ms busy: the fourth (due 470) fires at 472,
    // within the jitter: the fifth keeps the schedule, at 570.
    assert_eq!(
        ticks,
        [ms(100), ms(200), ms(370), ms(470), ms(570)].map(at),
        "scheduled instants"
    );
    assert_eq!(
        fired,
        [ms(100), ms(270), ms(370), ms(472), ms(570)].map(at),
        "when each tick came"
    );
}

/// Found by review: a `Blocking` dropped while its job still ran left the
/// waker of its last poll in the job's slot until the job ended, keeping
/// the awaiting task's allocation alive as long as a detached job ran.
/// The drop now lets the waker go at once.
#[test]
fn a_dropped_blocking_lets_its_waker_go_while_the_job_runs() {
    isolate(WATCHDOG, || {
        struct Flag;
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {}
        }
        let rt = Runtime::builder()
            .worker_threads(1)
            .build(ambient_authority())
            .unwrap();
        let (go, gate) = mpsc::channel::<()>();
        let out = rt.block_on(move |cx| async move {
            let flag = Arc::new(Flag);
            let waker = Waker::from(flag.clone());
            let mut job = Box::pin(cx.spawn_blocking(move || gate.recv().is_ok()));
            assert!(
                job.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            drop(waker);
            let registered = Arc::strong_count(&flag);
            drop(job); // the job still runs, detached
            let after_drop = Arc::strong_count(&flag);
            Ok::<_, ()>((registered, after_drop))
        });
        assert_eq!(out.ok(), Some((2, 1)));
        go.send(()).unwrap();
        rt.shutdown(Duration::from_secs(10));
    });
}

/// Found by review: a region body (here a timeout's) awaiting a blocking
/// job waited for it past its cleanup budget: a region body runs inside
/// its owner task, its cut-off lifts its masks and wakes it (for one last
/// poll, after which a body still running is dropped), and the
/// job's `Blocking` is not a checkpoint, so a job that never ended held
/// the region open for ever. Now the wait ends at the cut-off with
/// `BlockingError::CutOff` (the region's reason), the job detached; and
/// a body that propagates it with `?` ends `Cancelled`, as at any
/// checkpoint. (The job here ends after 10 s at most, well within the
/// watchdog, so that the old behaviour fails the assertions instead of
/// hanging.)
#[test]
fn a_region_body_awaiting_a_job_is_cut_off_at_its_cleanup_budget() {
    use runtime_core::{CleanupBudget, Outcome, RegionOptions};
    isolate(WATCHDOG, || {
        let rt = Runtime::builder()
            .worker_threads(2)
            .build(ambient_authority())
            .unwrap();
        let (go, gate) = mpsc::channel::<()>();
        let (go2, gate2) = mpsc::channel::<()>();
        let long = std::time::Duration::from_secs(10);
        let out = rt.block_on(move |cx| async move {
            let cleanup = CleanupBudget {
                polls: None,
                grace: Some(Duration::from_millis(50)),
            };
            let opts = RegionOptions::collect_all().cleanup(cleanup);
            let kept = cx
                .region_with(opts, move |cx| async move {
                    // The job's result, as the body sees it.
                    let seen = cx
                        .timeout(Duration::from_millis(20), move |cx| async move {
                            let r = cx.spawn_blocking(move || gate.recv_timeout(long)).await;
                            Ok::<_, ()>(r.map(|r| r.is_ok()))
                        })
                        .await;
                    // The same, the error propagated with `?`.
                    let propagated = cx
                        .timeout(Duration::from_millis(20), move |cx| async move {
                            cx.spawn_blocking(move || gate2.recv_timeout(long))
                                .await
                                .map_err(|_| ())?
                                .map_err(|_| ())
                        })
                        .await;
                    Ok::<_, ()>((seen, propagated))
                })
                .await;
            Ok::<_, ()>(kept)
        });
        // The jobs end now, whatever the runtime did with their waiters.
        let _ = go.send(());
        let _ = go2.send(());
        let Some(Outcome::Ok((seen, propagated))) = out.ok() else {
            panic!("the region around the timeouts failed");
        };
        match seen {
            Outcome::Ok(Err(BlockingError::CutOff(reason))) => {
                assert_eq!(reason.kind(), CancelKind::Timeout);
            }
            other => panic!("the wait was not cut off: {other:?}"),
        }
        match propagated {
            Outcome::Cancelled(reason) => assert_eq!(reason.kind(), CancelKind::Timeout),
            other => panic!("the wait was not cut off: {other:?}"),
        }
        rt.shutdown(Duration::from_secs(10));
    });
}
