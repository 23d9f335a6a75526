//! Audit 6: the runtime's task wake path stays lock-free (guarantee 8).
//! Pairs of tasks ping-pong over two capacity-1 `runtime_core` channels:
//! every round is two wake-ups through the channels' wakers and the
//! scheduler. One pair per worker, all at once, on a runtime with more
//! workers than cores, so that the OS preempts workers mid-wake: a lock
//! on the wake path is then sometimes held by a preempted worker, and the
//! workers that wake meanwhile go to sleep on it (voluntary context
//! switches). Counted around each pair's steady-state rounds, on the
//! worker that ran them: allocations (counting global allocator),
//! voluntary switches and preemptions.
//!
//! One pair on a 2-worker runtime (until 2026-12-02) could not fail: both
//! tasks ran on one worker (the woken task goes to the waking worker's
//! LIFO slot), so a lock there was never contended and never slept; a
//! planted global lock on every wake passed (found by review).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use runtime_core::caps::{All, ambient_authority};
use runtime_core::channel::mpsc;
use runtime_core::{Cx, Runtime};
use serde_json::json;

use super::alloc::allocations;
use super::lockfree::{involuntary_switches, preempted_slack, voluntary_switches};
use super::{Audit, Options};

/// One pair's measured rounds: (allocations, voluntary switches,
/// preemptions, rounds), summed over the chunks of rounds that ran on one
/// worker from start to end (a chunk whose task moved between threads
/// does not count: the thread-local counters would not compare).
type Pair = (u64, Option<u64>, Option<u64>, u64);

/// Pairs warmed up and measuring: every pair waits for all before its
/// first measured chunk (a pair still starting allocates on the worker
/// another pair measures on).
static READY: AtomicUsize = AtomicUsize::new(0);

/// Pairs done measuring: every pair goes on, unmeasured, until all are (a
/// pair that ends frees its tasks, and the body that waits for it runs,
/// on a worker another pair may still measure on).
static DONE: AtomicUsize = AtomicUsize::new(0);

/// One ping-pong pair, measured for `run` after a warm-up, in chunks of
/// 1 000 rounds.
async fn pair(cx: Cx<All>, run: Duration, pairs: usize) -> Result<Pair, ()> {
    let (tx1, mut rx1) = mpsc::channel::<u64>(1).map_err(|_| ())?;
    let (tx2, mut rx2) = mpsc::channel::<u64>(1).map_err(|_| ())?;
    cx.try_spawn(move |cx| async move {
        while let Ok(v) = rx1.recv(&cx).await {
            if tx2.send(&cx, v).await.is_err() {
                break;
            }
        }
        Ok::<_, ()>(())
    });
    // Warm up: first polls register wakers, queues reach their size.
    for i in 0..1_000 {
        tx1.send(&cx, i).await.map_err(|_| ())?;
        rx2.recv(&cx).await.map_err(|_| ())?;
    }
    READY.fetch_add(1, Ordering::SeqCst);
    // (A pair that failed to start never counts: the others give up after
    // 30 s rather than wait for it for ever.)
    let gate = Instant::now();
    while READY.load(Ordering::SeqCst) < pairs {
        if gate.elapsed() > Duration::from_secs(30) {
            return Err(());
        }
        tx1.send(&cx, 0).await.map_err(|_| ())?;
        rx2.recv(&cx).await.map_err(|_| ())?;
    }
    let d = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b - a);
    let add = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a + b);
    let mut total: Pair = (0, Some(0), Some(0), 0);
    let t0 = Instant::now();
    while t0.elapsed() < run {
        let thread = std::thread::current().id();
        // (Reading /proc allocates nothing: another pair on this worker
        // may be counting its allocations.)
        let (v0, i0) = (voluntary_switches(), involuntary_switches());
        let a0 = allocations();
        for i in 0..1_000 {
            tx1.send(&cx, i).await.map_err(|_| ())?;
            rx2.recv(&cx).await.map_err(|_| ())?;
        }
        let a1 = allocations();
        let (v1, i1) = (voluntary_switches(), involuntary_switches());
        if std::thread::current().id() == thread {
            total.0 += a1 - a0;
            total.1 = add(total.1, d(v0, v1));
            total.2 = add(total.2, d(i0, i1));
            total.3 += 1_000;
        }
    }
    DONE.fetch_add(1, Ordering::SeqCst);
    let gate = Instant::now();
    while DONE.load(Ordering::SeqCst) < pairs && gate.elapsed() < Duration::from_secs(30) {
        tx1.send(&cx, 0).await.map_err(|_| ())?;
        rx2.recv(&cx).await.map_err(|_| ())?;
    }
    drop(tx1);
    Ok(total)
}

pub(crate) fn audit(o: &Options) -> Audit {
    let run = if o.quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    // More workers than cores (the OS preempts them), one pair each.
    let workers = 4 * super::cores();
    eprintln!("  task-wake: {workers} ping-pong pairs on {workers} workers, {run:?} each");
    let rt = Runtime::builder()
        .worker_threads(workers)
        .thread_name("audit-runtime")
        .build(ambient_authority())
        .expect("runtime");
    READY.store(0, Ordering::SeqCst);
    DONE.store(0, Ordering::SeqCst);
    let measured: Vec<Pair> = rt
        .block_on(move |cx| async move {
            let hs: Vec<_> = (0..workers)
                .map(|_| cx.try_spawn(move |cx| pair(cx, run, workers)))
                .collect();
            let mut out = Vec::with_capacity(hs.len());
            for h in hs {
                out.extend(h.await.ok());
            }
            Ok::<_, ()>(out)
        })
        .ok()
        .unwrap_or_default();
    let allocs: u64 = measured.iter().map(|m| m.0).sum();
    let sum = |f: fn(&Pair) -> Option<u64>| {
        measured
            .iter()
            .map(f)
            .try_fold(0u64, |a, b| b.map(|b| a + b))
    };
    let (voluntary, preemptions) = (sum(|m| m.1), sum(|m| m.2));
    let rounds: u64 = measured.iter().map(|m| m.3).sum();
    // Every pair ran, and most of the rounds stayed on one worker per
    // chunk (a chunk that moved is not counted).
    let enough = measured.len() == workers && rounds > 0;
    let slack = preemptions.map(preempted_slack);
    let passed = enough
        && allocs == 0
        && match (voluntary, slack) {
            (Some(v), Some(s)) => v <= s,
            _ => true,
        };
    let show = |v: Option<u64>| v.map_or("not measured (no /proc)".to_string(), |v| v.to_string());
    let mut d = String::new();
    let _ = writeln!(
        d,
        "{workers} ping-pong pairs over two capacity-1 channels each, one per worker, all at once on {workers} workers ({} cores: the OS preempts workers mid-wake), {run:?} of steady-state rounds each, counted on the worker that ran them. {} of {workers} pairs ran; counted in chunks of 1 000 rounds that stayed on one worker ({rounds} rounds, {} wake-ups).\n",
        super::cores(),
        measured.len(),
        rounds * 2
    );
    let _ = writeln!(
        d,
        "| allocations | preemptions | voluntary context switches | allowed |"
    );
    let _ = writeln!(d, "|---:|---:|---:|---:|");
    let _ = writeln!(
        d,
        "| {allocs} | {} | {} | {} |",
        show(preemptions),
        show(voluntary),
        show(slack)
    );
    let verdict = if enough {
        format!(
            "{allocs} allocations, {} voluntary switches over {} preemptions, {} wake-ups in {} pairs (needs 0, <= {})",
            show(voluntary),
            show(preemptions),
            rounds * 2,
            measured.len(),
            show(slack)
        )
    } else {
        format!(
            "only {} of {workers} pairs ran, {rounds} rounds counted: no comparable count",
            measured.len()
        )
    };
    let _ = rt.shutdown(Duration::from_secs(5));
    Audit {
        name: "task-wake",
        passed,
        verdict,
        details: d,
        json: json!({"workers": workers, "pairs_measured": measured.len(), "rounds": rounds, "allocations": allocs, "voluntary_switches": voluntary, "preemptions": preemptions, "switch_slack": slack}),
    }
}
