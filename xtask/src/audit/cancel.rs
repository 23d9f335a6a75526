//! Audit 9: cancel and drain of sleeping tasks, against tokio in the same
//! run (issue 15, item 2). `benches::runtime`'s `CancelDrain(k)`: a
//! region whose body spawns `k` tasks sleeping an hour, yields once, and
//! cancels the region, timed until every task is drained and the region
//! closed; tokio's side is the same `k` tasks in a `JoinSet`, timed
//! across `JoinSet::shutdown`, its code in a spawned task as ours is (the
//! like-for-like placement). Two workers on each side, rounds alternating
//! ours and tokio's, medians over the rounds (a preempted round is an
//! outlier a median leaves out).
//!
//! Two regression guards, both ratios within this run:
//! - at 10, 100, 1 000 and 4 000 tasks ours drains faster than tokio's by
//!   at least [`MIN_RATIO`] (measured 2-3x on the 2-core VM);
//! - ours scales with the task count as tokio's does: the cost per task at
//!   4 000 tasks, over the cost per task at 100, is at most
//!   [`MAX_SCALING`] times tokio's same quotient. A pass over the tasks
//!   that grows with their square shows here first. Commit 4b241c5 fixed
//!   one (a sweep's look for each new task in its list) that made the
//!   1 000-task drain twice as slow while 100 tasks still looked fine; on
//!   the 2-core VM this check measured 3.0-4.8 before the fix and
//!   1.00-1.17 after it (four `--quick` runs of each, 2026-12-01).

use std::fmt::Write as _;

use benches::runtime::{Op, Ours, Tokio};
use serde_json::json;

use super::{Audit, Options, median};

/// The task counts measured, smallest first; the scaling check compares
/// the last with [`SCALING_FROM`].
const TASKS: [usize; 4] = [10, 100, 1_000, 4_000];
/// The task count whose per-task cost the scaling check starts from.
const SCALING_FROM: usize = 100;
/// tokio's drain time over ours, at the median, at least.
const MIN_RATIO: f64 = 1.2;
/// Ours' per-task scaling from [`SCALING_FROM`] to the largest count,
/// over tokio's, at most.
const MAX_SCALING: f64 = 1.5;

/// One task count's medians: (ours, tokio), nanoseconds per drain.
fn measure(ours: &Ours, tokio: &Tokio, k: usize, rounds: usize) -> (f64, f64) {
    let op = Op::CancelDrain(k);
    // About 200 tasks per round, at least one drain.
    let reps = (200 / k).max(1) as u64;
    // Warm-up, off the record (first spawns grow the pools).
    ours.run(op, reps);
    tokio.run_in_task(op, reps);
    let (mut o, mut t) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        o.push(ours.run(op, reps).as_nanos() as f64 / reps as f64);
        t.push(tokio.run_in_task(op, reps).as_nanos() as f64 / reps as f64);
    }
    (median(o), median(t))
}

pub(crate) fn audit(o: &Options) -> Audit {
    let rounds = if o.quick { 60 } else { 300 };
    eprintln!("  cancel-drain: {TASKS:?} sleeping tasks, {rounds} rounds each");
    let ours = Ours::new(2);
    let tokio = Tokio::new(2);
    let rows: Vec<(usize, f64, f64)> = TASKS
        .iter()
        .map(|&k| {
            let (ours_ns, tokio_ns) = measure(&ours, &tokio, k, rounds);
            (k, ours_ns, tokio_ns)
        })
        .collect();
    let worst = rows
        .iter()
        .map(|&(k, o, t)| (k, t / o))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("task counts");
    let per_task = |i: usize| {
        let (k, o, t) = rows[i];
        (o / k as f64, t / k as f64)
    };
    let from = rows
        .iter()
        .position(|r| r.0 == SCALING_FROM)
        .expect("measured");
    let (big, small) = (per_task(rows.len() - 1), per_task(from));
    let (ours_scaling, tokio_scaling) = (big.0 / small.0, big.1 / small.1);
    let scaling = ours_scaling / tokio_scaling;
    let passed = worst.1 >= MIN_RATIO && scaling <= MAX_SCALING;

    let mut d = String::new();
    let _ = writeln!(
        d,
        "Cancel and drain of k tasks sleeping an hour (a region's cancel; tokio: `JoinSet::shutdown`, \
         its code in a spawned task), 2 workers each, {rounds} rounds alternating, medians.\n"
    );
    let _ = writeln!(
        d,
        "| tasks | ours | tokio | tokio / ours | ours per task | tokio per task |"
    );
    let _ = writeln!(d, "|---:|---:|---:|---:|---:|---:|");
    for &(k, o, t) in &rows {
        let _ = writeln!(
            d,
            "| {k} | {:.1} us | {:.1} us | {:.2}x | {:.0} ns | {:.0} ns |",
            o / 1e3,
            t / 1e3,
            t / o,
            o / k as f64,
            t / k as f64
        );
    }
    let _ = writeln!(
        d,
        "\nPer-task cost from {} to {} tasks: ours {ours_scaling:.2}x, tokio {tokio_scaling:.2}x \
         (ours over tokio's {scaling:.2}, at most {MAX_SCALING}).",
        rows[from].0,
        rows[rows.len() - 1].0,
    );
    Audit {
        name: "cancel-drain",
        passed,
        verdict: format!(
            "tokio/ours {:.2}x at its lowest ({} tasks; needs >= {MIN_RATIO}x); per-task scaling \
             {scaling:.2} of tokio's (needs <= {MAX_SCALING})",
            worst.1, worst.0
        ),
        details: d,
        json: json!({
            "rounds": rounds,
            "rows": rows.iter().map(|&(k, o, t)| json!({
                "tasks": k, "ours_ns": o, "tokio_ns": t, "tokio_over_ours": t / o,
            })).collect::<Vec<_>>(),
            "min_ratio": MIN_RATIO,
            "scaling_over_tokio": scaling,
            "max_scaling": MAX_SCALING,
        }),
    }
}
