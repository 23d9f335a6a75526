//! Where work goes: which wake-ups rouse a parked worker
//! (`RuntimeStats::workers_woken`, `sched/pool.rs`'s `schedule`).
//!
//! A parked worker is woken when a worker has more queued than it can
//! start right away, never by a yield: a yield adds no work, and a worker
//! woken by it would take the yielder (or what it just spawned) to another
//! core for a hand-off the yielding worker makes in one poll.

use std::sync::Arc;

use runtime_core::Runtime;
use runtime_core::caps::ambient_authority;
use runtime_core::time::Duration;

/// A two-worker runtime, and a reader of its `workers_woken` that a task
/// can call (it holds the runtime shared).
fn two_workers() -> (Arc<Runtime>, impl Fn() -> u64 + Send + Sync + 'static) {
    let rt = Arc::new(
        Runtime::builder()
            .worker_threads(2)
            .build(ambient_authority())
            .unwrap(),
    );
    let shared = rt.clone();
    (rt, move || shared.stats().workers_woken)
}

#[test]
fn a_yield_wakes_no_parked_worker() {
    let (rt, woken) = two_workers();
    let out = rt.block_on(|cx| async move {
        // Long enough for the other worker to park.
        cx.sleep(Duration::from_millis(2)).await.ok();
        let before = woken();
        // One task queued behind this one: each yield below leaves two
        // queued on this worker (the child and the yielder), and the other
        // worker is parked.
        let child = cx.spawn(|cx| async move {
            for _ in 0..200 {
                cx.yield_now().await.ok();
            }
        });
        for _ in 0..200 {
            cx.yield_now().await.ok();
        }
        child.await;
        Ok::<_, ()>(woken() - before)
    });
    assert_eq!(out.ok(), Some(0), "a yield woke a parked worker");
}

#[test]
fn spawning_more_than_a_worker_can_start_wakes_a_parked_one() {
    // The counter the test above reads does count: spawns that leave more
    // than one task queued wake the parked worker. The other worker may be
    // between two parks at the moment of a spawn (it then finds the work
    // itself, uncounted), so the test tries a few times.
    let (rt, woken) = two_workers();
    let out = rt.block_on(|cx| async move {
        for _ in 0..50 {
            // Long enough for the other worker to park.
            cx.sleep(Duration::from_millis(2)).await.ok();
            let before = woken();
            let tasks: Vec<_> = (0..4).map(|_| cx.spawn(|_| async {})).collect();
            let after = woken();
            for t in tasks {
                t.await;
            }
            if after > before {
                return Ok::<_, ()>(true);
            }
        }
        Ok(false)
    });
    assert_eq!(out.ok(), Some(true), "no spawn ever woke the parked worker");
}
