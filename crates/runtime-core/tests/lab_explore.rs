//! The runtime's own region, cancellation, channel and shutdown cases,
//! under the lab across many seeds each (uniform random and PCT), with
//! every oracle checked after every run; and a planted race that
//! exploration finds and the seed replays.
//!
//! `LAB_SEEDS` (default 1000) sets how many seeds each case runs:
//! `cargo xtask lab --seeds N` runs these with more, in release.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use runtime_core::channel::mpsc;
use runtime_core::lab::{Exploration, LabBuilder, LabCaps, LabRuntime, PlantedBug, Strategy};
use runtime_core::time::Duration;
use runtime_core::{CancelKind, CancelReason, CleanupBudget, Cx, Outcome, RegionOptions};
use test_watchdog::isolate;

const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(300);

fn seeds() -> u64 {
    std::env::var("LAB_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// Runs `scenario` across the seeds with uniform random choice, then with
/// PCT, and fails with the first failing seed's report.
fn explore_both<S, F, T>(scenario: S)
where
    S: Fn(Cx<LabCaps>) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let n = seeds();
    let random = LabRuntime::builder().explore(0..n, scenario.clone());
    report(&random, n, "uniform");
    let pct = LabRuntime::builder()
        .strategy(Strategy::Pct {
            depth: 3,
            steps: 100,
        })
        .explore(0..n, scenario);
    report(&pct, n, "PCT(3, 100)");
}

fn report(e: &Exploration, n: u64, strategy: &str) {
    e.assert_clean();
    assert_eq!(e.runs, n);
    if std::env::var_os("LAB_VERBOSE").is_some() {
        let test = std::thread::current().name().unwrap_or("?").to_string();
        eprintln!(
            "{test}, {strategy}: {} seeds clean, {} distinct schedules",
            e.runs, e.distinct_schedules
        );
    }
}

// ---- regions -------------------------------------------------------------------

/// Nested regions with tasks that yield and sleep: a region returns only
/// when its tasks have finished, and finalizers run after them, in reverse
/// order of registration.
async fn regions(cx: Cx<LabCaps>) -> Result<(), String> {
    let done = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (d, o) = (done.clone(), order.clone());
    let r = cx
        .region(move |cx| async move {
            let (o1, o2) = (o.clone(), o.clone());
            cx.defer(move || o1.lock().unwrap().push("first registered"));
            cx.defer(move || o2.lock().unwrap().push("second registered"));
            for i in 0..3u64 {
                let d = d.clone();
                cx.spawn(move |cx| async move {
                    cx.yield_now().await.ok();
                    cx.sleep(Duration::from_millis(i)).await.ok();
                    let inner = cx
                        .region(|cx| async move {
                            let h = cx.spawn(|cx| async move {
                                cx.yield_now().await.ok();
                                7
                            });
                            Ok::<_, ()>(h.await.unwrap())
                        })
                        .await;
                    assert_eq!(inner.ok(), Some(7));
                    d.fetch_add(1, Ordering::SeqCst);
                });
            }
            Ok::<_, ()>(())
        })
        .await;
    if !r.is_ok() {
        return Err(format!("region failed: {r:?}"));
    }
    let n = done.load(Ordering::SeqCst);
    if n != 3 {
        return Err(format!("region returned with {n} of 3 tasks done"));
    }
    let order = order.lock().unwrap().clone();
    if order != ["second registered", "first registered"] {
        return Err(format!("finalizers ran as {order:?}"));
    }
    Ok(())
}

#[test]
fn lab_regions_across_seeds() {
    explore_both(regions);
}

// ---- cancellation --------------------------------------------------------------

/// A region cancelled while its tasks sleep, yield or clean up: every task
/// sees the request, cleanup in a masked section finishes, the region's
/// outcome is the cancellation (a child's failure is not invented), and
/// the request reaches nested regions.
async fn cancellation(cx: Cx<LabCaps>) -> Result<(), String> {
    let cleaned = Arc::new(AtomicUsize::new(0));
    let c = cleaned.clone();
    let r = cx
        .region(move |cx| async move {
            let mut hs = Vec::new();
            for i in 0..4u64 {
                let c = c.clone();
                hs.push(cx.spawn(move |cx| async move {
                    let r = if i % 2 == 0 {
                        cx.sleep(Duration::from_secs(3600)).await
                    } else {
                        loop {
                            if let Err(e) = cx.yield_now().await {
                                break Err(e);
                            }
                        }
                    };
                    // Cleanup: one more await, masked.
                    let _ = cx.masked(cx.yield_now()).await;
                    c.fetch_add(1, Ordering::SeqCst);
                    r.is_err()
                }));
            }
            let nested = cx.spawn(|cx| async move {
                cx.region(|cx| async move {
                    cx.sleep(Duration::from_secs(3600)).await.map_err(|_| ())?;
                    Ok::<_, ()>(())
                })
                .await
                .is_cancelled()
            });
            let spins = cx.random_below(4);
            for _ in 0..spins {
                cx.yield_now().await.ok();
            }
            cx.cancel(CancelReason::user("stop"));
            let mut all = true;
            for h in hs {
                all &= h.await.unwrap();
            }
            all &= nested.await.unwrap();
            Ok::<_, ()>(all)
        })
        .await;
    // The body returned after every task it awaited saw the request.
    if !matches!(r, Outcome::Ok(true)) {
        return Err(format!("the region ended {r:?}"));
    }
    let n = cleaned.load(Ordering::SeqCst);
    if n != 4 {
        return Err(format!("{n} of 4 tasks finished their cleanup"));
    }
    Ok(())
}

#[test]
fn lab_cancellation_across_seeds() {
    explore_both(cancellation);
}

// ---- channels -----------------------------------------------------------------

/// Three producers send through a bounded channel while the consumer is
/// cancelled part-way by a timeout: every value is received, or still
/// queued, or returned to its sender; none is lost, none duplicated.
async fn channels(cx: Cx<LabCaps>) -> Result<(), String> {
    let (tx, mut rx) = mpsc::channel::<u64>(2).map_err(|e| e.to_string())?;
    let returned = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for p in 0..3u64 {
        let tx = tx.clone();
        let returned = returned.clone();
        producers.push(cx.spawn(move |cx| async move {
            for i in 0..4 {
                if tx.send(&cx, p * 10 + i).await.is_err() {
                    returned.fetch_add(1, Ordering::SeqCst);
                }
                if cx.random_below(2) == 0 {
                    cx.yield_now().await.ok();
                }
            }
        }));
    }
    // Kept to read the undelivered count if the receiver is dropped.
    let probe = tx.clone();
    drop(tx);
    let limit = Duration::from_millis(cx.random_below(3));
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let first = cx
        .timeout(limit, move |cx| async move {
            // Receive until cancelled (or closed). A body that returns
            // `Ok` keeps the receiver; cancelled, it is dropped.
            while let Ok(v) = rx.recv(&cx).await {
                g.lock().unwrap().push(v);
                cx.sleep(Duration::from_micros(500)).await.ok();
            }
            Ok::<_, ()>(rx)
        })
        .await;
    let undelivered = match first {
        Outcome::Ok(mut rx) => {
            // The receiver survived: drain it until every sender is gone.
            drop(probe);
            while let Ok(v) = rx.recv(&cx).await {
                got.lock().unwrap().push(v);
            }
            0
        }
        _ => {
            for h in producers.drain(..) {
                h.await.unwrap();
            }
            probe.undelivered()
        }
    };
    for h in producers {
        h.await.unwrap();
    }
    let got = got.lock().unwrap().clone();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != got.len() {
        return Err(format!("a value arrived twice: {got:?}"));
    }
    let returned = returned.load(Ordering::SeqCst) as u64;
    if got.len() as u64 + returned + undelivered != 12 {
        return Err(format!(
            "{} received + {returned} returned + {undelivered} undelivered != 12",
            got.len()
        ));
    }
    Ok(())
}

#[test]
fn lab_channels_across_seeds() {
    explore_both(channels);
}

// ---- shutdown ------------------------------------------------------------------

/// A service under a region being shut down (the reason the runtime's
/// shutdown uses): workers mid-request, a worker whose cleanup overruns
/// its grace period (cut off), finalizers run once each, the drain ends
/// at the grace period's end in virtual time.
async fn shutdown(cx: Cx<LabCaps>) -> Result<(), String> {
    let finalized = Arc::new(AtomicUsize::new(0));
    let f = finalized.clone();
    let opts = RegionOptions::collect_all().cleanup(CleanupBudget {
        polls: Some(100),
        grace: Some(Duration::from_millis(20)),
    });
    let start = cx.now();
    let r = cx
        .region_with(opts, move |cx| async move {
            for w in 0..3u64 {
                let f = f.clone();
                cx.spawn(move |cx| async move {
                    let f2 = f.clone();
                    cx.defer(move || {
                        f2.fetch_add(1, Ordering::SeqCst);
                    });
                    loop {
                        if cx.sleep(Duration::from_millis(1 + w)).await.is_err() {
                            break;
                        }
                    }
                    if w == 2 {
                        // A cleanup that never ends: cut off at 20 ms.
                        loop {
                            let _ = cx.masked(cx.sleep(Duration::from_millis(1))).await;
                        }
                    }
                });
            }
            cx.defer({
                let f = f.clone();
                move || {
                    f.fetch_add(1, Ordering::SeqCst);
                }
            });
            cx.sleep(Duration::from_millis(cx.random_below(5)))
                .await
                .ok();
            cx.cancel(CancelReason::new(CancelKind::Shutdown).with_message("the service stops"));
            Ok::<_, ()>(())
        })
        .await;
    // The body itself returned `Ok` after its request.
    if !r.is_ok() {
        return Err(format!("the region ended {r:?}"));
    }
    // Region finalizers (one: the tasks' `defer` registered on the
    // region they run in) all ran once.
    let n = finalized.load(Ordering::SeqCst);
    if n != 4 {
        return Err(format!("{n} of 4 finalizers ran"));
    }
    let took = cx.now() - start;
    if took > Duration::from_millis(4 + 20 + 1) {
        return Err(format!("the drain took {took:?} of virtual time"));
    }
    Ok(())
}

#[test]
fn lab_shutdown_across_seeds() {
    explore_both(shutdown);
}

// ---- a planted race ---------------------------------------------------------

/// A region whose body does more work of its own (20 yields) than its two
/// children (3 each): the body nearly always outlasts them, and it waits
/// for the close only when a child is still running, which needs a
/// schedule that starves that child for most of the body's turns (rare
/// under uniform choice; one low priority under PCT). With the planted
/// lost wake-up in the close, that schedule deadlocks.
async fn close_race(cx: Cx<LabCaps>) -> Result<(), String> {
    let r = cx
        .region(|cx| async move {
            for _ in 0..2 {
                cx.spawn(|cx| async move {
                    for _ in 0..3 {
                        cx.yield_now().await.ok();
                    }
                });
            }
            for _ in 0..20 {
                cx.yield_now().await.ok();
            }
            Ok::<_, ()>(())
        })
        .await;
    r.ok().ok_or_else(|| "region failed".to_string())
}

fn find_planted(strategy: Strategy, seeds: u64) -> (u64, u64) {
    let lab = LabRuntime::builder()
        .strategy(strategy)
        .plant(PlantedBug::LostCloseWake);
    let found = lab.explore(0..seeds, close_race);
    let f = found
        .failure
        .clone()
        .unwrap_or_else(|| panic!("{strategy:?}: the planted race was not found in {seeds} seeds"));
    assert!(f.reason.starts_with("deadlock"), "{}", f.reason);
    // The seed replays it: the same schedule, the same deadlock.
    let again = replay(&lab, f.seed);
    assert_eq!(again.0, f.trace.events().len());
    assert_eq!(again.1, f.fingerprint);
    assert_eq!(again.2.as_deref(), Some(f.reason.as_str()));
    (f.seed, found.runs)
}

fn replay(lab: &LabBuilder, seed: u64) -> (usize, u64, Option<String>) {
    let r = lab.clone().seed(seed).build().block_on(close_race);
    (r.trace.events().len(), r.fingerprint, r.failure())
}

/// Without the planted bug, the scenario is clean on every seed; with it,
/// both strategies find the deadlock within the stated number of seeds
/// (measured: see `docs/runtime-performance.md`, "Lab runtime"), and the
/// failing seed replays the same schedule.
#[test]
fn exploration_finds_the_planted_close_race_and_replays_it() {
    isolate(WATCHDOG, || {
        report(
            &LabRuntime::builder().explore(0..seeds(), close_race),
            seeds(),
            "uniform, nothing planted",
        );
        // Measured: uniform random finds it at seed 759, PCT at seed 15;
        // the bounds leave room for changes in the runtime's internals
        // (which move the schedules).
        let (seed, runs) = find_planted(Strategy::Random, 10_000);
        let (pseed, pruns) = find_planted(
            Strategy::Pct {
                depth: 2,
                steps: 20,
            },
            200,
        );
        eprintln!(
            "planted close race: uniform random found it at seed {seed} ({runs} runs), PCT at seed {pseed} ({pruns} runs)"
        );
    });
}

// ---- hostile cases ------------------------------------------------------------

/// An error whose `Debug` panics.
struct PanicOnDebug;
impl std::fmt::Debug for PanicOnDebug {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Debug panicked on purpose")
    }
}

/// A value whose `Drop` panics.
struct PanicOnDrop;
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("Drop panicked on purpose")
    }
}

/// Hostile but legitimate code under the lab (as in `tests/hostile.rs`):
/// a panicking finalizer, an error whose `Debug` panics, a task whose
/// future panics in its `Drop` while siblings sleep and yield. Each
/// outcome is what the real runtime gives, and every oracle holds, on
/// every seed (a panic the runtime catches is not a failure of the run).
async fn hostile(cx: Cx<LabCaps>) -> Result<(), String> {
    let fin = cx
        .region(|cx| async move {
            cx.defer(|| panic!("finalizer panicked on purpose"));
            cx.spawn(|cx| async move { cx.yield_now().await.ok() });
            Ok::<_, ()>(())
        })
        .await;
    if !matches!(fin, Outcome::Panicked(_)) {
        return Err(format!("panicking finalizer: {:?}", fin.map(|_| ())));
    }
    let dbg = cx
        .region_with(RegionOptions::collect_all(), |cx| async move {
            let h = cx.try_spawn(|_| async { Err::<(), _>(PanicOnDebug) });
            let _ = h.await;
            Ok::<_, ()>(())
        })
        .await;
    match dbg {
        Outcome::Err(runtime_core::RegionError::Child(f))
            if f.message.contains("Debug panicked") => {}
        other => return Err(format!("panicking Debug: {:?}", other.map(|_| ()))),
    }
    let dropped = cx
        .region_with(RegionOptions::collect_all(), |cx| async move {
            let sleeper = cx.spawn(|cx| async move {
                cx.sleep(Duration::from_millis(cx.random_below(3)))
                    .await
                    .ok();
                1
            });
            let bomb = cx.spawn(|cx| async move {
                let _bomb = PanicOnDrop;
                cx.yield_now().await.ok();
            });
            let _ = bomb.await;
            Ok::<_, ()>(sleeper.await.ok())
        })
        .await;
    if !matches!(dropped, Outcome::Panicked(_)) {
        return Err(format!("panicking Drop: {:?}", dropped.map(|_| ())));
    }
    Ok(())
}

#[test]
fn lab_hostile_cases_across_seeds() {
    isolate(WATCHDOG, || explore_both(hostile));
}
