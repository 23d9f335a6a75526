//! The lab runtime itself: determinism, virtual time, no wall clock or OS
//! randomness, exploration and replay, and one deliberately broken program
//! per oracle that trips it with a message naming it.
//!
//! Every run here is bounded by the lab (its step limit, virtual time);
//! the cases that plant a bug in the runtime run in a child process under
//! the watchdog, since a planted bug is the runtime being wrong.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use runtime_core::channel::{mpsc, oneshot};
use runtime_core::lab::{self, LabCaps, LabRuntime, PlantedBug, Strategy, TraceEvent, Violation};
use runtime_core::time::{Duration, Instant};
use runtime_core::{Budget, CancelKind, CancelReason, CleanupBudget, Cx, RegionOptions};
use test_watchdog::isolate;

const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(120);

/// Ten tasks, each yielding a few times and sleeping a random while.
async fn busy(cx: Cx<LabCaps>) -> Result<Vec<u64>, ()> {
    let hs: Vec<_> = (0..10)
        .map(|i| {
            cx.spawn(move |cx| async move {
                for _ in 0..3 {
                    cx.yield_now().await.ok();
                }
                let ms = cx.random_below(5);
                cx.sleep(Duration::from_millis(ms)).await.ok();
                i * 100 + ms
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in hs {
        out.push(h.await.unwrap());
    }
    Ok(out)
}

#[test]
fn equal_seeds_give_equal_schedules_and_values() {
    for seed in 0..20 {
        let a = LabRuntime::new(seed).block_on(busy);
        let b = LabRuntime::new(seed).block_on(busy);
        assert!(a.is_clean(), "{:?}", a.failure());
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.trace, b.trace);
        assert_eq!(a.elapsed, b.elapsed);
        assert_eq!(a.outcome.unwrap().ok(), b.outcome.unwrap().ok());
    }
}

#[test]
fn different_seeds_give_different_schedules() {
    let fingerprints: std::collections::BTreeSet<u64> = (0..50)
        .map(|seed| LabRuntime::new(seed).block_on(busy).fingerprint)
        .collect();
    // Ten tasks, each with several choices: collisions are rare.
    assert!(fingerprints.len() >= 45, "{} distinct", fingerprints.len());
}

#[test]
fn a_thirty_second_timeout_is_exactly_thirty_virtual_seconds() {
    let report = LabRuntime::new(1).block_on(|cx| async move {
        let start = cx.now();
        let out = cx
            .timeout(Duration::from_secs(30), |cx| async move {
                cx.sleep(Duration::from_secs(3600)).await.map_err(|_| ())?;
                Ok::<_, ()>(())
            })
            .await;
        Ok::<_, ()>((start, out.cancel_reason().map(|r| r.kind()), cx.now()))
    });
    let (start, kind, end) = report.outcome.unwrap().ok().unwrap();
    assert_eq!(start, Instant::ZERO);
    assert_eq!(kind, Some(CancelKind::Timeout));
    assert_eq!(end, Instant::ZERO + Duration::from_secs(30));
    assert_eq!(report.elapsed, Duration::from_secs(30));
    assert!(report.violations.is_empty());
}

#[test]
fn sleep_interval_and_deadlines_run_on_virtual_time() {
    let report = LabRuntime::new(2).block_on(|cx| async move {
        // An interval: five ticks of 200 ms.
        let mut every = cx.interval(Duration::from_millis(200));
        for _ in 0..5 {
            every.tick(&cx).await.map_err(|_| ())?;
        }
        let after_ticks = cx.now();
        // A budget deadline 2 s from now cancels a task sleeping an hour.
        let deadline = cx.now() + Duration::from_secs(2);
        let h = cx.spawn_with(Budget::UNLIMITED.with_deadline(deadline), |cx| async move {
            cx.sleep(Duration::from_secs(3600)).await
        });
        let slept = h.await;
        Ok::<_, ()>((
            after_ticks,
            slept.ok().and_then(|r| r.err()).map(|c| c.reason().kind()),
            cx.now(),
        ))
    });
    let (ticks, kind, end) = report.outcome.unwrap().ok().unwrap();
    assert_eq!(ticks, Instant::ZERO + Duration::from_millis(1000));
    assert_eq!(kind, Some(CancelKind::Deadline));
    assert_eq!(end, Instant::ZERO + Duration::from_millis(3000));
    assert_eq!(report.elapsed, Duration::from_millis(3000));
}

#[test]
fn a_grace_period_cuts_off_cleanup_at_its_virtual_end() {
    let grace = CleanupBudget {
        polls: None,
        grace: Some(Duration::from_millis(50)),
    };
    let report = LabRuntime::builder()
        .cleanup(grace)
        .build()
        .block_on(|cx| async move {
            let r = cx
                .region(|cx| async move {
                    let stubborn = cx.spawn(|cx| async move {
                        // Ignores cancellation: each sleep masked.
                        for _ in 0..1000 {
                            let _ = cx.masked(cx.sleep(Duration::from_millis(1))).await;
                        }
                    });
                    cx.sleep(Duration::from_millis(10)).await.ok();
                    cx.cancel(CancelReason::user("stop"));
                    Ok::<_, ()>(stubborn.await.is_cancelled())
                })
                .await;
            Ok::<_, ()>((r.ok(), cx.now()))
        });
    assert!(report.is_clean(), "{:?}", report.failure());
    let (cut, end) = report.outcome.unwrap().ok().unwrap();
    assert_eq!(cut, Some(true));
    // Cancelled at 10 ms, cut off when its 50 ms grace ran out.
    assert_eq!(end, Instant::ZERO + Duration::from_millis(60));
    assert_eq!(report.stats.tasks_cut_off, 1);
}

#[test]
fn randomness_and_blocking_jobs_are_deterministic() {
    let run = |seed| {
        LabRuntime::new(seed)
            .block_on(|cx| async move {
                let r = cx.random_u64();
                let child = cx.spawn(|cx| async move { cx.random_u64() }).await.unwrap();
                let job = cx.spawn_blocking(|| 6 * 7).await.unwrap();
                Ok::<_, ()>((r, child, job))
            })
            .outcome
            .unwrap()
            .ok()
            .unwrap()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5).0, run(6).0);
    assert_eq!(run(5).2, 42);
    // A blocking job runs inline, on the lab's own thread: no thread is
    // started.
    let here = std::thread::current().id();
    let report = LabRuntime::new(1).block_on(move |cx| async move {
        Ok::<_, ()>(cx.spawn_blocking(|| std::thread::current().id()).await.ok())
    });
    assert_eq!(report.outcome.unwrap().ok(), Some(Some(here)));
}

/// Code written against the capabilities it needs runs on the real runtime
/// and on the lab unchanged, with the same result.
async fn pipeline<C>(cx: Cx<C>) -> Result<u64, ()>
where
    C: runtime_core::caps::HasSpawn + runtime_core::caps::HasTime,
{
    let (tx, mut rx) = mpsc::channel::<u64>(2).map_err(|_| ())?;
    let producer = cx.spawn(move |cx| async move {
        for i in 1..=10 {
            cx.sleep(Duration::from_millis(1)).await.ok();
            tx.send(&cx, i).await.ok();
        }
    });
    let slow = cx
        .timeout(Duration::from_millis(5), |cx| async move {
            cx.sleep(Duration::from_secs(60)).await.map_err(|_| ())
        })
        .await;
    let mut sum = 0;
    while let Ok(v) = rx.recv(&cx).await {
        sum += v;
    }
    producer.await.unwrap();
    Ok(sum + u64::from(slow.is_cancelled()))
}

#[test]
fn the_same_code_runs_on_the_real_runtime_and_on_the_lab() {
    use runtime_core::{Runtime, caps::ambient_authority};
    let rt = Runtime::builder()
        .current_thread()
        .build(ambient_authority())
        .unwrap();
    let real = rt.block_on(pipeline).ok();
    let lab = LabRuntime::new(4).block_on(pipeline);
    assert!(lab.is_clean(), "{:?}", lab.failure());
    assert_eq!(real, Some(56));
    assert_eq!(lab.outcome.unwrap().ok(), real);
    // Values 1 and 2 fill the channel at 1 and 2 ms; 3 waits from 3 ms
    // until the receiver starts at 5 ms (the timeout); then one a ms.
    assert_eq!(lab.elapsed, Duration::from_millis(12));
}

/// The check that nothing the lab runs reads the machine's clock or its
/// randomness: every source file of the crate that may run under the lab
/// is free of them. The exceptions are the real runtime's own: the
/// `Runtime` (shutdown deadlines on the wall clock), the pool (parking),
/// the blocking pool (its threads' keep-alive), and `SystemClock`, which
/// only the ambient-authority token makes, and which the lab never holds.
#[test]
fn nothing_the_lab_runs_reads_the_wall_clock_or_os_randomness() {
    const REAL_RUNTIME_ONLY: &[&str] = &[
        "runtime.rs",
        "sched/pool.rs",
        "sched/idle.rs",
        "sched/detached.rs",
        "blocking.rs",
        "time/mod.rs",
        "loom.rs",
        "loom_tests.rs",
    ];
    const FORBIDDEN: &[&str] = &[
        "Instant::now",
        "SystemTime",
        "RandomState",
        // Their default hasher is `RandomState`, whatever the line says
        // (`HashMap::new()`, `collect()`, `Default::default()`).
        "HashMap",
        "HashSet",
        "thread_rng",
        "getrandom",
        "elapsed()",
    ];
    fn scan(root: &Path, dir: &Path, hits: &mut Vec<String>, files: &mut usize) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                scan(root, &path, hits, files);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if !rel.ends_with(".rs") || REAL_RUNTIME_ONLY.contains(&rel.as_str()) {
                continue;
            }
            *files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                // Unit tests at the bottom of a file do not run in the lab.
                if line.starts_with("#[cfg(test)]") || line.starts_with("#[cfg(all(test") {
                    break;
                }
                let code = line.split("//").next().unwrap_or("");
                for f in FORBIDDEN {
                    if code.contains(f) {
                        hits.push(format!("{rel}:{}: {}", i + 1, line.trim()));
                    }
                }
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mut hits, mut files) = (Vec::new(), 0);
    scan(&src, &src, &mut hits, &mut files);
    assert!(files > 30, "the scan found only {files} files");
    assert!(
        hits.is_empty(),
        "wall clock or OS randomness:\n{}",
        hits.join("\n")
    );
    // And `SystemClock::new` takes the token, which `lab/` never names.
    let lab = std::fs::read_dir(src.join("lab")).unwrap();
    for entry in lab {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("ambient_authority()") && !text.contains("SystemClock::new"));
    }
}

// ---- exploration and replay ------------------------------------------------

/// Two tasks read, yield, then write: a lost update under some schedules.
async fn lost_update(cx: Cx<LabCaps>) -> Result<(), String> {
    let n = Arc::new(Mutex::new(0));
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let n = n.clone();
            cx.spawn(move |cx| async move {
                let seen = *n.lock().unwrap();
                cx.yield_now().await.ok();
                *n.lock().unwrap() = seen + 1;
            })
        })
        .collect();
    for h in hs {
        h.await.unwrap();
    }
    let total = *n.lock().unwrap();
    if total == 2 {
        Ok(())
    } else {
        Err(format!("lost update: total {total}"))
    }
}

#[test]
fn exploration_stops_at_the_first_failure_and_its_seed_replays_it() {
    let found = lab::explore(0..1000, lost_update);
    let f = found.failure.clone().expect("the lost update is found");
    assert!(f.reason.contains("lost update"), "{}", f.reason);
    assert_eq!(found.runs, f.runs_before + 1);
    assert!(f.to_string().contains(&format!("seed {} fails", f.seed)));
    // Replay: the same trace, fingerprint and failure, every time.
    for _ in 0..3 {
        let again = LabRuntime::new(f.seed).block_on(lost_update);
        assert_eq!(again.trace, f.trace);
        assert_eq!(again.fingerprint, f.fingerprint);
        assert_eq!(again.failure().as_deref(), Some(f.reason.as_str()));
    }
    // The seeds before it pass.
    for seed in 0..f.seed {
        assert!(LabRuntime::new(seed).block_on(lost_update).is_clean());
    }
}

#[test]
fn pct_explores_and_replays_too() {
    let lab = LabRuntime::builder().strategy(Strategy::Pct {
        depth: 2,
        steps: 20,
    });
    let found = lab.explore(0..1000, lost_update);
    let f = found.failure.expect("PCT finds the lost update");
    let again = lab.clone().seed(f.seed).build().block_on(lost_update);
    assert_eq!(again.trace, f.trace);
}

#[test]
fn an_escaped_panic_fails_the_run() {
    let found = lab::explore(0..10, |cx| async move {
        cx.spawn(|_| async { panic!("deliberate") }).await;
        Ok::<_, ()>(())
    });
    let f = found.failure.expect("found");
    assert_eq!(f.seed, 0);
    assert!(f.reason.contains("a panic escaped"), "{}", f.reason);
}

// ---- one broken program per oracle -------------------------------------------

fn first_violation<T, E: std::fmt::Debug>(r: &lab::LabReport<T, E>) -> (Violation, String) {
    let v = r.violations.first().cloned().expect("a violation");
    (v.clone(), v.to_string())
}

/// A context leaked out of its region (returned as its value) opens a
/// region after that region closed (an orphan), polled once (it spawns a
/// task that never finishes) and forgotten: the region never closes.
async fn forgotten_orphan(cx: Cx<LabCaps>) -> Result<(), ()> {
    let leaked = cx
        .region(|cx| async move { Ok::<_, ()>(cx) })
        .await
        .unwrap();
    let orphan = leaked.region(|cx| async move {
        let _h = cx.spawn(|_| std::future::pending::<()>());
        std::future::pending::<Result<(), ()>>().await
    });
    let mut orphan = Box::pin(orphan);
    std::future::poll_fn(|t| {
        let _ = orphan.as_mut().poll(t);
        Poll::Ready(())
    })
    .await;
    std::mem::forget(orphan);
    Ok(())
}

#[test]
fn oracle_live_tasks_and_open_regions() {
    // The runtime counts the orphan in the nearest ancestor still open,
    // which then never closes (a deadlock: the next test); with that
    // planted away, the orphan is waited for by nobody and the task
    // outlives the root, which these two oracles catch.
    let report = LabRuntime::builder()
        .seed(1)
        .plant(lab::PlantedBug::OrphansNotAdopted)
        .build()
        .block_on(forgotten_orphan);
    let msgs: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert!(
        report
            .violations
            .iter()
            .any(|v| matches!(v, Violation::TasksAlive { alive: 1 })),
        "{msgs:?}"
    );
    assert!(
        report
            .violations
            .iter()
            .any(|v| matches!(v, Violation::RegionsOpen { regions } if regions.len() == 1)),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("live tasks: 1 task(s) still alive"))
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("open regions: 1 region(s) never closed"))
    );
}

/// The same program without the planted bug: the orphan is counted in the
/// nearest ancestor still open (the body's region), which cannot close
/// while the forgotten orphan is open: the lab reports a deadlock, and no
/// task outlives the root.
#[test]
fn a_forgotten_orphan_region_holds_its_adoptive_ancestor_open() {
    let report = LabRuntime::new(1).block_on(forgotten_orphan);
    let msgs: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert!(msgs.iter().any(|m| m.starts_with("deadlock:")), "{msgs:?}");
    assert!(
        !report
            .violations
            .iter()
            .any(|v| matches!(v, Violation::TasksAlive { .. })),
        "{msgs:?}"
    );
}

/// A slot handed to a queued `Reserve` that is then leaked is a forgotten
/// permit too: reported (it was missed: the slot entered the oracle's
/// ledger only when the `Reserve` made its `Permit`). A `Reserve` that
/// picks its handed slot up and sends, or is dropped, leaves the run clean.
#[test]
fn oracle_sees_a_reserve_leaked_after_it_was_handed_a_slot() {
    use std::task::{Context, Waker};
    // 0: forget the Reserve; 1: poll it, forget the Permit; 2: poll it and
    // send; 3: drop it.
    for how in 0..4 {
        let report = LabRuntime::new(1).block_on(move |cx: Cx<LabCaps>| async move {
            let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
            let permit = tx.try_reserve().unwrap();
            let mut reserve = Box::pin(tx.reserve(&cx));
            let mut ctx = Context::from_waker(Waker::noop());
            assert!(reserve.as_mut().poll(&mut ctx).is_pending(), "queued");
            drop(permit); // the slot is handed to the queued reservation
            match how {
                0 => std::mem::forget(reserve),
                1 | 2 => match reserve.as_mut().poll(&mut ctx) {
                    Poll::Ready(Ok(p)) if how == 1 => std::mem::forget(p),
                    Poll::Ready(Ok(p)) => drop(p.send(7)),
                    _ => unreachable!("the handed slot"),
                },
                _ => drop(reserve),
            }
            rx.close();
            Ok::<_, ()>(rx.try_recv().ok())
        });
        let leaked = how < 2;
        assert_eq!(
            report
                .violations
                .contains(&Violation::PermitsUnresolved { permits: 1 }),
            leaked,
            "case {how}: {:?}",
            report.violations
        );
        if !leaked {
            assert!(report.is_clean(), "case {how}: {:?}", report.violations);
        }
    }
}

#[test]
fn oracle_unresolved_reservation() {
    let report = LabRuntime::new(1).block_on(|_cx| async move {
        let (tx, _rx) = mpsc::channel::<u32>(2).unwrap();
        std::mem::forget(tx.try_reserve().unwrap()); // a slot taken for ever
        Ok::<_, ()>(())
    });
    let (v, msg) = first_violation(&report);
    assert_eq!(v, Violation::PermitsUnresolved { permits: 1 });
    assert!(
        msg.starts_with("unresolved reservations: 1 two-phase permit"),
        "{msg}"
    );
}

#[test]
fn oracle_finalizer_never_run() {
    // A finalizer registered through a context whose region has closed
    // can never run.
    let report = LabRuntime::new(1).block_on(|cx| async move {
        let leaked = cx
            .region(|cx| async move { Ok::<_, ()>(cx) })
            .await
            .unwrap();
        leaked.defer(|| ());
        Ok::<_, ()>(())
    });
    let (v, msg) = first_violation(&report);
    assert_eq!(v, Violation::Finalizers { added: 1, ended: 0 });
    assert!(msg.contains("1 registered, 0 ran: 1 never ran"), "{msg}");
}

#[test]
fn oracle_deadlock() {
    // Waits for a value its own task holds the sender of.
    let report = LabRuntime::new(1).block_on(|cx| async move {
        let (tx, mut rx) = oneshot::channel::<u32>();
        let v = rx.recv(&cx).await;
        drop(tx);
        Ok::<_, ()>(v.ok())
    });
    let (v, msg) = first_violation(&report);
    assert!(matches!(v, Violation::Deadlock { alive: 1, .. }), "{v:?}");
    assert!(msg.starts_with("deadlock: 1 task(s) alive"), "{msg}");
    assert!(report.outcome.is_none());
}

#[test]
fn oracle_step_limit() {
    let report = LabRuntime::builder()
        .max_steps(500)
        .build()
        .block_on(|cx| async move {
            loop {
                let _ = cx.yield_now().await;
            }
            #[allow(unreachable_code)]
            Ok::<_, ()>(())
        });
    let (v, msg) = first_violation(&report);
    assert_eq!(v, Violation::StepLimit { steps: 500 });
    assert!(msg.starts_with("step limit"), "{msg}");
}

/// The cleanup-budget oracle cannot be tripped from safe code (the runtime
/// cuts a task off when its budget runs out); a planted bug (no cut-off
/// timer) lets a stubborn task run past its grace period.
#[test]
fn oracle_cleanup_budget() {
    isolate(WATCHDOG, || {
        let grace = CleanupBudget {
            polls: None,
            grace: Some(Duration::from_millis(5)),
        };
        let report = LabRuntime::builder()
            .cleanup(grace)
            .plant(PlantedBug::SkipGraceTimers)
            .build()
            .block_on(|cx| async move {
                cx.region(|cx| async move {
                    let _h = cx.spawn(|cx| async move {
                        for _ in 0..20 {
                            let _ = cx.masked(cx.sleep(Duration::from_millis(1))).await;
                        }
                    });
                    cx.yield_now().await.ok();
                    cx.cancel(CancelReason::user("stop"));
                    Ok::<_, ()>(())
                })
                .await;
                Ok::<_, ()>(())
            });
        let (v, msg) = first_violation(&report);
        assert!(matches!(v, Violation::PolledPastCleanup { .. }), "{v:?}");
        assert!(msg.starts_with("cleanup budget: task"), "{msg}");
        assert!(msg.contains("it should have been cut off"), "{msg}");
    });
}

/// The lattice oracle cannot be tripped from safe code either (the close
/// joins outcomes); a planted bug makes a close forget its children's
/// failures.
#[test]
fn oracle_lattice() {
    isolate(WATCHDOG, || {
        let report = LabRuntime::builder()
            .plant(PlantedBug::IgnoreChildFailure)
            .build()
            .block_on(|cx| async move {
                let r = cx
                    .region_with(RegionOptions::collect_all(), |cx| async move {
                        let h = cx.try_spawn(|_| async { Err::<(), _>("child failed") });
                        let _ = h.await;
                        Ok::<_, ()>(())
                    })
                    .await;
                Ok::<_, ()>(r.is_ok())
            });
        let (v, msg) = first_violation(&report);
        assert!(
            matches!(
                v,
                Violation::Lattice {
                    children: runtime_core::Severity::Err,
                    outcome: runtime_core::Severity::Ok,
                    ..
                }
            ),
            "{v:?}"
        );
        assert!(msg.starts_with("outcome lattice: region"), "{msg}");
    });
}

#[test]
fn a_clean_program_trips_no_oracle() {
    let report = LabRuntime::new(3).block_on(|cx| async move {
        let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
        cx.defer(|| ());
        let p = cx.spawn(move |cx| async move {
            for i in 0..5 {
                tx.send(&cx, i).await.ok();
            }
        });
        let mut sum = 0;
        while let Ok(v) = rx.recv(&cx).await {
            sum += v;
        }
        p.await.unwrap();
        Ok::<_, ()>(sum)
    });
    assert!(report.is_clean(), "{:?}", report.failure());
    assert_eq!(report.outcome.unwrap().ok(), Some(10));
    assert!(
        report
            .trace
            .events()
            .iter()
            .any(|e| matches!(e, TraceEvent::Poll { .. }))
    );
}

/// A sleep whose deadline no clock reading reaches (`Duration::MAX`, or a
/// deadline in the last millisecond before `Instant::MAX`) is "for ever":
/// cancelled, the run ends clean; waited on alone, the lab reports the
/// deadlock at once (before, virtual time jumped to the timer's tick, found
/// it not due, and jumped again until the step limit).
#[test]
fn a_sleep_for_ever_is_cancelled_or_reported_as_a_deadlock() {
    let report = LabRuntime::new(1).block_on(|cx| async move {
        let forever = cx.spawn(|cx| async move { cx.sleep(Duration::MAX).await.is_ok() });
        cx.yield_now().await.ok();
        forever.cancel(CancelReason::user("done waiting"));
        // The sleep ends with the cancellation (an error), not a wake.
        Ok::<_, ()>(forever.await.ok())
    });
    assert!(report.is_clean(), "{:?}", report.failure());
    assert_eq!(report.outcome.unwrap().ok(), Some(Some(false)));
    assert!(report.steps < 100, "{} steps", report.steps);

    let report = LabRuntime::new(1).block_on(|cx| async move {
        let _ = cx.sleep_until(Instant::from_nanos(u64::MAX - 1)).await;
        Ok::<_, ()>(())
    });
    let (v, _) = first_violation(&report);
    assert!(matches!(v, Violation::Deadlock { alive: 1, .. }), "{v:?}");
    assert!(report.steps < 100, "{} steps", report.steps);
}

// ---- found by review (session 16) ---------------------------------------------

/// Found by review: virtual time stopped at the timer wheel's level
/// boundaries, where nothing fires (a sleep of 30 s + 7 ms made three
/// jumps and a step each; an hour's four more), and a run waiting on a
/// sleep for ever was reported deadlocked 584 years on. Time now jumps
/// once, to the timer that fires; a deadlock is reported when everything
/// stopped.
#[test]
fn virtual_time_jumps_once_to_the_timer_that_fires() {
    for secs in [30_u64, 3600, 86_400 * 365] {
        let d = Duration::from_secs(secs) + Duration::from_millis(7);
        let report =
            LabRuntime::new(1).block_on(move |cx| async move { cx.sleep(d).await.map_err(|_| ()) });
        assert!(report.is_clean(), "{:?}", report.failure());
        let advances: Vec<_> = report
            .trace
            .events()
            .iter()
            .filter_map(|e| match e {
                TraceEvent::Advance { to } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(advances, [Instant::ZERO + d], "{secs} s");
        assert_eq!(report.elapsed, d);
    }
    let report = LabRuntime::new(1).block_on(|cx| async move {
        let _ = cx.sleep(Duration::MAX).await;
        Ok::<_, ()>(())
    });
    let (v, _) = first_violation(&report);
    assert!(
        matches!(v, Violation::Deadlock { at, .. } if at == Instant::ZERO),
        "{v:?}"
    );
    assert_eq!(report.elapsed, Duration::ZERO);
}

/// Found by review: the count of checkpoints to the next clock look was
/// the thread's, left by whatever ran there before, so the same seed could
/// let a poll that checkpoints near the step limit pass in one run and
/// stop it in the next. The count starts afresh at every poll.
#[test]
fn the_same_seed_judges_a_busy_poll_the_same_whatever_ran_before() {
    fn report(n: u32) -> String {
        let r = LabRuntime::builder().seed(1).max_steps(3).build().block_on(
            move |cx: Cx<LabCaps>| async move {
                for _ in 0..n {
                    if cx.checkpoint().is_err() {
                        return Ok(false);
                    }
                }
                Ok::<_, ()>(true)
            },
        );
        format!("{:?} {:?}", r.violations, r.outcome.map(|o| o.ok()))
    }
    for n in [104, 124] {
        let fresh = std::thread::spawn(move || report(n)).join().unwrap();
        let after = std::thread::spawn(move || {
            let r = LabRuntime::new(5).block_on(|cx| async move {
                for _ in 0..27 {
                    let _ = cx.checkpoint();
                }
                Ok::<_, ()>(())
            });
            assert!(r.is_clean());
            report(n)
        })
        .join()
        .unwrap();
        let (twice_a, twice_b) = std::thread::spawn(move || (report(n), report(n)))
            .join()
            .unwrap();
        assert_eq!(fresh, after, "{n} checkpoints");
        assert_eq!(twice_a, twice_b, "{n} checkpoints");
    }
}

// ---- found by review (session 14) ---------------------------------------------

/// Found by review: an interval checked the cancellation of the task that
/// made it, so moved into a child it never reported the child's
/// cancellation (it ticked on until the grace period cut the child off).
#[test]
fn an_interval_moved_into_a_task_is_a_checkpoint_of_that_task() {
    let report = LabRuntime::new(1).block_on(|cx| async move {
        let mut iv = cx.interval(Duration::from_millis(1));
        let out = cx
            .region(move |rcx| async move {
                let child = rcx.spawn(move |cx| async move {
                    let mut ticks = 0u32;
                    loop {
                        match iv.tick(&cx).await {
                            Ok(_) => ticks += 1,
                            Err(_) => return ticks,
                        }
                    }
                });
                rcx.sleep(Duration::from_millis(5)).await.map_err(|_| ())?;
                rcx.cancel(CancelReason::user("stop the child"));
                Ok::<_, ()>(child.await.ok())
            })
            .await;
        // The interval made here goes on ticking for this task.
        let mut mine = cx.interval(Duration::from_millis(1));
        let still = mine.tick(&cx).await.is_ok();
        Ok::<_, ()>((out.ok().flatten(), still))
    });
    assert!(report.is_clean(), "{:?}", report.failure());
    assert_eq!(report.stats.tasks_cut_off, 0, "it saw the request itself");
    let (ticks, still) = report.outcome.unwrap().ok().unwrap();
    assert!(
        matches!(ticks, Some(t) if (3..=5).contains(&t)),
        "{ticks:?}"
    );
    assert!(still);
    assert!(
        report.elapsed < Duration::from_millis(50),
        "{:?}",
        report.elapsed
    );
}

/// Found by review: `explore` unwound with no seed named when the run's
/// output or error panicked in `Drop`, or the error in `Debug`.
#[test]
fn explore_reports_a_panicking_drop_or_debug_of_the_outcome_with_its_seed() {
    struct BadDrop;
    impl Drop for BadDrop {
        fn drop(&mut self) {
            panic!("drop of the output panics");
        }
    }
    struct BadDebug;
    impl std::fmt::Debug for BadDebug {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            panic!("Debug of the error panics");
        }
    }
    isolate(WATCHDOG, || {
        let found = lab::explore(5..8, |_| async { Ok::<_, ()>(BadDrop) });
        let f = found.failure.expect("a failure");
        assert_eq!(f.seed, 5);
        assert!(
            f.reason.contains("drop of the output panics"),
            "{}",
            f.reason
        );
        let found = lab::explore(0..3, |_| async { Err::<(), _>(BadDebug) });
        let f = found.failure.expect("a failure");
        assert!(f.reason.contains("Debug panicked"), "{}", f.reason);
    });
}

/// Found by review: the reservation oracle counted permits resolved in a
/// run, not permits taken in it: one taken before the run and sent inside
/// it failed a clean run, and one taken in the run and sent on another
/// thread did too.
#[test]
fn the_reservation_oracle_counts_the_permits_taken_in_the_run() {
    // Taken before the run, sent inside it: clean.
    let (tx, mut rx) = mpsc::channel::<u32>(4).unwrap();
    let tx: &'static mpsc::Sender<u32> = Box::leak(Box::new(tx));
    let permit = tx.try_reserve().unwrap();
    let report = LabRuntime::new(1).block_on(move |_| async move {
        permit.send(1).map_err(|_| ())?;
        Ok::<_, ()>(())
    });
    assert!(report.is_clean(), "{:?}", report.failure());
    assert_eq!(rx.try_recv().ok(), Some(1));
    // Taken in the run, sent on another thread before the run ends: clean.
    let report = LabRuntime::new(1).block_on(move |_| async move {
        let permit = tx.try_reserve().map_err(|_| ())?;
        std::thread::scope(|s| {
            s.spawn(move || permit.send(2).unwrap());
        });
        Ok::<_, ()>(())
    });
    assert!(report.is_clean(), "{:?}", report.failure());
    assert_eq!(rx.try_recv().ok(), Some(2));
    // Taken before, leaked inside: still clean for this run (not its own);
    // one taken in the run and leaked is found, not hidden by the other.
    let before = tx.try_reserve().unwrap();
    let report = LabRuntime::new(1).block_on(move |_| async move {
        std::mem::forget(before);
        std::mem::forget(tx.try_reserve().map_err(|_| ())?);
        Ok::<_, ()>(())
    });
    assert!(
        report
            .violations
            .contains(&Violation::PermitsUnresolved { permits: 1 }),
        "{:?}",
        report.violations
    );
}

/// Found by review: a budget's deadline set a timer for a context without
/// the time capability (a `Cx<Nothing>` could sleep until any instant).
#[test]
fn a_deadline_budget_needs_the_time_capability() {
    use runtime_core::caps::{Capability, Nothing};
    let report = LabRuntime::new(1).block_on(|cx| async move {
        let at = Instant::ZERO + Duration::from_secs(30);
        let budget = Budget::UNLIMITED.with_deadline(at);
        let weak: Cx<Nothing> = cx.narrow();
        let region = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(
                weak.region_with(RegionOptions::fail_fast().budget(budget), |_| async {
                    Ok::<_, ()>(())
                }),
            )
        }));
        let masked = cx.restrict(Capability::Time);
        let spawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(masked.spawn_with(budget, |_| async {}))
        }));
        // A grace period of its own is a timer too.
        let grace = RegionOptions::fail_fast().cleanup(CleanupBudget {
            polls: None,
            grace: Some(Duration::from_millis(300)),
        });
        let graced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(weak.region_with(grace, |_| async { Ok::<_, ()>(()) }))
        }));
        assert!(graced.is_err(), "a grace period needs the time capability");
        // With the capability, the same budget is fine.
        let fine = cx
            .region_with(RegionOptions::fail_fast().budget(budget), |_| async {
                Ok::<_, ()>(())
            })
            .await
            .is_ok();
        Ok::<_, ()>((region.is_err(), spawn.is_err(), fine, cx.now()))
    });
    assert_eq!(
        report.outcome.unwrap().ok(),
        Some((true, true, true, Instant::ZERO))
    );
}

// ---- found by review (2026-12-01) ------------------------------------------

/// The run ended at its step limit of `steps`.
fn assert_step_limit(violations: &[Violation], steps: u64) {
    assert!(
        violations
            .iter()
            .any(|v| matches!(v, Violation::StepLimit { steps: s } if *s == steps)),
        "{violations:?}"
    );
}

/// A task that spins in one poll, checkpointing but never awaiting, under
/// a timeout: virtual time stands still while it runs, so the timeout
/// could never fire and the run never ended (the step limit was checked
/// only between polls). Its clock looks now count against the run's steps:
/// at the limit it is cancelled at a checkpoint, and the run reports the
/// step limit.
#[test]
fn a_task_spinning_in_one_poll_ends_the_run_at_the_step_limit() {
    isolate(WATCHDOG, || {
        let report = LabRuntime::builder()
            .max_steps(1_000)
            .build()
            .block_on(|cx| async move {
                let r = cx
                    .timeout(Duration::from_millis(50), |cx| async move {
                        loop {
                            if cx.checkpoint().is_err() {
                                return Err::<(), ()>(());
                            }
                        }
                    })
                    .await;
                Ok::<_, ()>(r.is_ok())
            });
        assert_step_limit(&report.violations, 1_000);
    });
}

/// A task that busy-waits on the lab's clock (`while cx.now() < until`),
/// which stands still while it runs: no checkpoint, no await, so the run
/// never ended. Its looks at the clock count against the steps left, as a
/// checkpoint's do, and past them the task is stopped by a panic; the run
/// reports the step limit.
#[test]
fn a_task_spinning_on_the_clock_ends_the_run_at_the_step_limit() {
    isolate(WATCHDOG, || {
        let report = LabRuntime::builder()
            .max_steps(1_000)
            .build()
            .block_on(|cx| async move {
                let until = cx.now() + Duration::from_millis(1);
                while cx.now() < until {
                    std::hint::spin_loop();
                }
                Ok::<_, ()>(())
            });
        assert_step_limit(&report.violations, 1_000);
    });
}

/// A run that takes exactly `max_steps` steps is clean, with its
/// outcome: the limit was checked before looking whether anything was
/// left to do, and tripped (the outcome lost) with nothing left.
#[test]
fn a_run_of_exactly_max_steps_steps_is_clean() {
    let prog = |cx: Cx<LabCaps>| async move {
        let a = cx.spawn(|cx| async move { cx.sleep(Duration::from_millis(3)).await.is_ok() });
        let b = cx.spawn(|cx| async move { cx.yield_now().await.is_ok() });
        Ok::<_, ()>((a.await.ok(), b.await.ok()))
    };
    let free = LabRuntime::new(9).block_on(prog);
    assert!(free.is_clean(), "{:?}", free.violations);
    let n = free.steps;
    for limit in [n, n + 1] {
        let r = LabRuntime::builder()
            .seed(9)
            .max_steps(limit)
            .build()
            .block_on(prog);
        assert!(
            r.is_clean(),
            "max_steps({limit}) of a {n}-step run: {:?}",
            r.violations
        );
        assert_eq!(r.outcome.unwrap().ok(), Some((Some(true), Some(true))));
    }
    // A last poll that reads the clock many times (a finite loop, no spin)
    // at the limit is clean too.
    let stamps = |cx: Cx<LabCaps>| async move {
        let h = cx.spawn(|cx| async move { cx.yield_now().await.is_ok() });
        let _ = h.await;
        let stamped: Vec<_> = (0..5_000).map(|_| cx.now()).collect();
        Ok::<_, ()>(stamped.len())
    };
    let m = LabRuntime::new(9).block_on(stamps).steps;
    let r = LabRuntime::builder()
        .seed(9)
        .max_steps(m)
        .build()
        .block_on(stamps);
    assert!(r.is_clean(), "{:?}", r.violations);
    assert_eq!(r.outcome.unwrap().ok(), Some(5_000));
    let short = LabRuntime::builder()
        .seed(9)
        .max_steps(n - 1)
        .build()
        .block_on(prog);
    assert_step_limit(&short.violations, n - 1);
    let one = LabRuntime::builder()
        .max_steps(1)
        .build()
        .block_on(|_| async { Ok::<_, ()>(()) });
    assert!(one.is_clean(), "{:?}", one.violations);
    assert_eq!(one.outcome.unwrap().ok(), Some(()));
}

/// A PCT depth far past any use (`u32::MAX`) asked for that many change
/// points (32 GiB: the process aborted). It is capped.
#[test]
fn a_huge_pct_depth_is_capped() {
    isolate(WATCHDOG, || {
        let report = LabRuntime::builder()
            .strategy(lab::Strategy::Pct {
                depth: u32::MAX,
                steps: u64::MAX,
            })
            .build()
            .block_on(|cx| async move {
                cx.spawn(|_| async {}).await;
                Ok::<_, ()>(())
            });
        assert!(report.is_clean(), "{:?}", report.violations);
    });
}

/// A run that cannot finish with more than 100 000 tasks alive: the
/// teardown ran at most 100 000 of them and let go of the rest, whose
/// futures (and all they held) were never dropped.
#[test]
fn a_run_torn_down_drops_every_task() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DROPS: AtomicU64 = AtomicU64::new(0);
    struct CountDrop;
    impl Drop for CountDrop {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let n = 120_000u64;
    let report = LabRuntime::builder()
        .max_steps(50)
        .build()
        .block_on(move |cx| async move {
            for _ in 0..n {
                let g = CountDrop;
                cx.spawn(move |cx| async move {
                    let _g = g;
                    loop {
                        cx.yield_now().await.ok();
                    }
                });
            }
            loop {
                cx.yield_now().await.ok();
            }
            #[allow(unreachable_code)]
            Ok::<_, ()>(())
        });
    drop(report);
    assert_eq!(DROPS.load(Ordering::SeqCst), n);
}

/// The same inside a masked section (a spin-wait on a flag that another
/// task sets, legitimate on the real runtime): the mask deferred the
/// cancellation, so the run still never ended. The checkpoint that finds
/// the step limit passed returns `Err` whatever the mask.
#[test]
fn a_masked_spin_in_one_poll_ends_the_run_at_the_step_limit() {
    isolate(WATCHDOG, || {
        use std::sync::atomic::{AtomicBool, Ordering};
        let report =
            LabRuntime::builder()
                .max_steps(1_000)
                .build()
                .block_on(move |cx| async move {
                    let flag = Arc::new(AtomicBool::new(false));
                    let f2 = flag.clone();
                    let _h = cx.spawn(move |_| async move { f2.store(true, Ordering::SeqCst) });
                    let wait = async {
                        while !flag.load(Ordering::SeqCst) {
                            if cx.checkpoint().is_err() {
                                return false;
                            }
                        }
                        true
                    };
                    Ok::<_, ()>(cx.masked(wait).await.ok())
                });
        assert_step_limit(&report.violations, 1_000);
    });
}

/// A context kept past its lab run: a sleep or a spawn through it waited
/// for ever (nothing runs the run's tasks or fires its timers any more).
/// Both fail at once, as on the real runtime.
#[test]
fn a_context_kept_past_its_lab_run_fails_fast() {
    isolate(WATCHDOG, || {
        let cx = LabRuntime::new(1)
            .block_on(|cx| async move { Ok::<_, ()>(cx) })
            .outcome
            .expect("finished")
            .ok()
            .expect("the body returns its context");
        let waker = std::task::Waker::noop();
        let mut sleep = std::pin::pin!(cx.sleep(Duration::from_millis(10)));
        match sleep
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
        {
            Poll::Ready(Err(c)) => assert_eq!(c.0.kind(), CancelKind::Shutdown),
            other => panic!("{other:?}"),
        }
        let h = cx.spawn(|_| async { 2 });
        let mut h = std::pin::pin!(h);
        match h.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            Poll::Ready(o) => assert!(o.is_cancelled(), "{o:?}"),
            Poll::Pending => panic!("a spawn after the run waits for ever"),
        }
    });
}
