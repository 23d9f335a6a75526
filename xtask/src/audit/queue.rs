//! Audit 1: queue scaling. otlp-queue against `Mutex<VecDeque>` and
//! crossbeam's `ArrayQueue` over the thread sweep, lossless and shedding.

use std::fmt::Write as _;

use benches::queue::{Candidate, Mode, RunResult, run};
use serde_json::json;

use super::chart::Series;
use super::{Audit, Options, cores, m, median};

/// The ratio (otlp-queue / ArrayQueue, delivered items/s, lossless) the
/// audit requires at the highest producer count. A regression guard, not
/// the performance target: see docs/audits.md.
fn ratio_threshold() -> f64 {
    if cores() >= 8 { 5.0 } else { 1.5 }
}

/// The share of the 1-producer push rate each producer must keep at `t`
/// producers: 70 %, scaled down by the share of a core each thread can get
/// when producers and the consumer outnumber the cores.
pub(crate) fn scaling_floor(t: usize) -> f64 {
    let usable = (cores().saturating_sub(1)).max(1) as f64;
    0.7 * (usable / t as f64).min(1.0)
}

pub(crate) fn audit(o: &Options) -> (Audit, Vec<Series>) {
    let (items, rounds) = if o.quick {
        (500_000, 1)
    } else {
        (4_000_000, 3)
    };
    let capacity = 4096;
    // results[mode][thread index][candidate] = runs
    let mut lossless: Vec<[Vec<RunResult>; 3]> = Vec::new();
    let mut shedding: Vec<[Vec<RunResult>; 3]> = Vec::new();
    for &t in &o.threads {
        eprintln!("  queue-scaling: {t} producers");
        let mut l: [Vec<RunResult>; 3] = Default::default();
        let mut s: [Vec<RunResult>; 3] = Default::default();
        for _ in 0..rounds {
            for (i, c) in Candidate::ALL.into_iter().enumerate() {
                l[i].push(run(c, t, items, Mode::Lossless, capacity));
                s[i].push(run(c, t, items, Mode::Shedding, capacity));
            }
        }
        lossless.push(l);
        shedding.push(s);
    }
    let delivered = |runs: &[RunResult]| median(runs.iter().map(|r| r.delivered_per_s).collect());
    let per_producer =
        |runs: &[RunResult]| median(runs.iter().map(|r| r.per_producer_per_s).collect());
    let drop_frac =
        |runs: &[RunResult]| median(runs.iter().map(RunResult::drop_fraction).collect());

    let mut details = String::new();
    let _ = writeln!(
        details,
        "One consumer, N producers, `u64` items, total capacity {capacity}, {items} items per producer, \
         {rounds} round(s), medians.\n"
    );
    let _ = writeln!(
        details,
        "| producers | otlp-queue delivered/s | ArrayQueue | Mutex<VecDeque> | ratio to ArrayQueue | otlp-queue push/s per producer (shedding) | of 1-producer rate | floor | dropped |"
    );
    let _ = writeln!(details, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = shedding
        .first()
        .map(|s| per_producer(&s[0]))
        .unwrap_or(f64::NAN);
    let mut rows = Vec::new();
    for (k, &t) in o.threads.iter().enumerate() {
        let (l, s) = (&lossless[k], &shedding[k]);
        let ratio = median(
            l[0].iter()
                .zip(&l[1])
                .map(|(a, b)| a.delivered_per_s / b.delivered_per_s)
                .collect(),
        );
        let share = per_producer(&s[0]) / base;
        let _ = writeln!(
            details,
            "| {t} | {} | {} | {} | {ratio:.1}x | {} | {:.0} % | {:.0} % | {:.1} % |",
            m(delivered(&l[0])),
            m(delivered(&l[1])),
            m(delivered(&l[2])),
            m(per_producer(&s[0])),
            share * 100.0,
            scaling_floor(t) * 100.0,
            drop_frac(&s[0]) * 100.0
        );
        rows.push(json!({
            "producers": t,
            "delivered_per_s": {"otlp_queue": delivered(&l[0]), "array_queue": delivered(&l[1]), "mutex_vecdeque": delivered(&l[2])},
            "ratio_to_array_queue": ratio,
            "push_per_producer_per_s": {"otlp_queue": per_producer(&s[0]), "array_queue": per_producer(&s[1]), "mutex_vecdeque": per_producer(&s[2])},
            "share_of_one_producer_rate": share,
            "drop_fraction": {"otlp_queue": drop_frac(&s[0]), "array_queue": drop_frac(&s[1]), "mutex_vecdeque": drop_frac(&s[2])},
        }));
    }
    let top = o.threads.len() - 1;
    let t = o.threads[top];
    let ratio = rows[top]["ratio_to_array_queue"].as_f64().unwrap_or(0.0);
    let share = rows[top]["share_of_one_producer_rate"]
        .as_f64()
        .unwrap_or(0.0);
    let (rt, floor) = (ratio_threshold(), scaling_floor(t));
    let passed = ratio >= rt && share >= floor;
    let verdict = format!(
        "at {t} producers: {ratio:.1}x ArrayQueue (needs >= {rt:.1}x); push rate per producer {:.0} % of 1-producer (needs >= {:.0} %)",
        share * 100.0,
        floor * 100.0
    );
    let series = Candidate::ALL
        .into_iter()
        .enumerate()
        .map(|(i, c)| Series {
            name: c.name().to_string(),
            color: ["#d62728", "#1f77b4", "#7f7f7f"][i],
            points: o
                .threads
                .iter()
                .enumerate()
                .map(|(k, &t)| (t, delivered(&lossless[k][i])))
                .collect(),
        })
        .collect();
    (
        Audit {
            name: "queue-scaling",
            passed,
            verdict,
            details,
            json: json!({"rows": rows, "ratio_threshold": rt, "scaling_floor": floor}),
        },
        series,
    )
}
