//! Audit 1: queue scaling. otlp-queue (its per-producer rings, and its
//! pooled queue, the one the exporter's pipeline uses under every
//! shedding policy but drop-oldest) against `Mutex<VecDeque>` and
//! crossbeam's `ArrayQueue` over the thread sweep, lossless (producers
//! retry when full, so every figure counts items pushed once and
//! delivered; a push that fails fast on a full queue is never counted as
//! throughput). The shedding mode's attempt rates are in `cargo xtask
//! sweep`, not judged.

use std::fmt::Write as _;

use benches::queue::{Candidate, Mode, RunResult, run};
use serde_json::json;

use super::chart::Series;
use super::{Audit, Options, cores, m, median};

/// How the ratio (otlp-queue / ArrayQueue, delivered items/s, lossless) is
/// judged. A regression guard, not the performance target (docs/audits.md):
///
/// * where the highest producer count and the consumer fit on the cores,
///   the ratio at that count must reach 5x (8 cores or more) or 1.5x;
/// * where they do not (a 2-core CI machine), which threads run at a given
///   moment is the scheduler's choice and the ratio at any one count swings
///   from run to run (1.1x to 3.5x at 8 producers on 2 cores): the
///   geometric mean of the ratios at 2 producers and up must reach 1.2x.
///   This is a throughput guard, not a lock check: a `Mutex<VecDeque>`
///   scored 0.28x-1.31x against ArrayQueue there, and a lock planted in
///   our push failed 10 runs of 11 (review, 2026-12-02); the lock-free
///   audit is the one that finds locks.
fn judge(threads: &[usize], ratios: &[f64]) -> (f64, f64, String) {
    let top = threads.iter().copied().max().unwrap_or(1);
    if top < cores() {
        let need = if cores() >= 8 { 5.0 } else { 1.5 };
        let got = ratios.last().copied().unwrap_or(0.0);
        (
            got,
            need,
            format!("at {top} producers: {got:.1}x ArrayQueue (needs >= {need:.1}x)"),
        )
    } else {
        let picked: Vec<f64> = threads
            .iter()
            .zip(ratios)
            .filter(|(t, _)| **t >= 2 || threads.len() == 1)
            .map(|(_, r)| *r)
            .collect();
        let gm = (picked.iter().map(|r| r.ln()).sum::<f64>() / picked.len().max(1) as f64).exp();
        (
            gm,
            1.2,
            format!(
                "{gm:.1}x ArrayQueue, geometric mean over 2+ producers (needs >= 1.2x: {} cores, threads share them)",
                cores()
            ),
        )
    }
}

/// The share of the 1-producer push rate (lossless: items pushed and
/// delivered per second of the producer's time) each producer must keep
/// at `t` producers: 70 %. Judged only where the producers and the
/// consumer have a core each (`None` elsewhere; there each thread has a
/// whole core, so no share of a core scales the floor down): where they outnumber the cores, a lossless
/// producer that finds the queue full yields its slice until the
/// consumer, which then shares the cores with every producer, has made
/// room, so the rate per producer is set by the scheduler and by how fast
/// one producer alone is, not by the queue: 9-51 % of the 1-producer rate
/// at 8 producers on the 2-core Intel VM, same code, and 4 % on a 2-core
/// AMD EPYC VM whose single producer pushes 820 M items/s (2026-12-01),
/// while otlp-queue delivered 7.3x ArrayQueue's items there. The ratio to
/// ArrayQueue is the regression guard there.
pub(crate) fn scaling_floor(t: usize) -> Option<f64> {
    (t < cores()).then_some(0.7)
}

pub(crate) fn audit(o: &Options) -> (Audit, Vec<Series>) {
    // Quick: shorter runs, but still three rounds, so one noisy run on a
    // shared CI machine cannot decide the verdict alone; and not too short:
    // runs of a few milliseconds favour the single-head queues, whose
    // threads then barely overlap.
    let (items, rounds) = if o.quick {
        (300_000, 3)
    } else {
        (4_000_000, 3)
    };
    let capacity = 4096;
    // results[thread index][candidate] = runs
    let mut lossless: Vec<[Vec<RunResult>; 4]> = Vec::new();
    for &t in &o.threads {
        eprintln!("  queue-scaling: {t} producers");
        let mut l: [Vec<RunResult>; 4] = Default::default();
        for _ in 0..rounds {
            for c in Candidate::ALL {
                l[c.index()].push(run(c, t, items, Mode::Lossless, capacity));
            }
        }
        lossless.push(l);
    }
    let delivered = |runs: &[RunResult]| median(runs.iter().map(|r| r.delivered_per_s).collect());
    // Lossless: every item is pushed once and delivered, so this is the
    // rate of successful pushes per producer (retries are not counted).
    let per_producer =
        |runs: &[RunResult]| median(runs.iter().map(|r| r.per_producer_per_s).collect());

    let mut details = String::new();
    let _ = writeln!(
        details,
        "One consumer, N producers, `u64` items, total capacity {capacity} (otlp-queue: {capacity} / N \
         per lane; pooled: a pool of {capacity} less a {}-item chunk per producer, which each \
         producer also holds), {items} items per producer, lossless (producers retry when full), \
         {rounds} round(s), medians. Per producer: items pushed and delivered per second of that \
         producer's time (a push that finds the queue full is retried, not counted). Both of \
         otlp-queue's queues are judged against ArrayQueue.\n",
        otlp_queue::pooled::chunk_len::<u64>()
    );
    let _ = writeln!(
        details,
        "| producers | otlp-queue delivered/s | pooled | ArrayQueue | Mutex<VecDeque> | otlp-queue / ArrayQueue | pooled / ArrayQueue | otlp-queue per producer | of 1-producer rate | floor |"
    );
    let _ = writeln!(
        details,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let [ours, pooled, aq, mx] = Candidate::ALL.map(Candidate::index);
    let base = lossless
        .first()
        .map(|l| per_producer(&l[ours]))
        .unwrap_or(f64::NAN);
    let ratio_of = |l: &[Vec<RunResult>; 4], c: usize| {
        median(
            l[c].iter()
                .zip(&l[aq])
                .map(|(a, b)| a.delivered_per_s / b.delivered_per_s)
                .collect(),
        )
    };
    let mut rows = Vec::new();
    for (k, &t) in o.threads.iter().enumerate() {
        let l = &lossless[k];
        let (ratio, pooled_ratio) = (ratio_of(l, ours), ratio_of(l, pooled));
        let share = per_producer(&l[ours]) / base;
        let _ = writeln!(
            details,
            "| {t} | {} | {} | {} | {} | {ratio:.1}x | {pooled_ratio:.1}x | {} | {:.0} % | {} |",
            m(delivered(&l[ours])),
            m(delivered(&l[pooled])),
            m(delivered(&l[aq])),
            m(delivered(&l[mx])),
            m(per_producer(&l[ours])),
            share * 100.0,
            scaling_floor(t).map_or("not judged".into(), |f| format!("{:.0} %", f * 100.0)),
        );
        rows.push(json!({
            "producers": t,
            "delivered_per_s": {"otlp_queue": delivered(&l[ours]), "otlp_queue_pooled": delivered(&l[pooled]), "array_queue": delivered(&l[aq]), "mutex_vecdeque": delivered(&l[mx])},
            "ratio_to_array_queue": ratio,
            "pooled_ratio_to_array_queue": pooled_ratio,
            "lossless_per_producer_per_s": {"otlp_queue": per_producer(&l[ours]), "otlp_queue_pooled": per_producer(&l[pooled]), "array_queue": per_producer(&l[aq]), "mutex_vecdeque": per_producer(&l[mx])},
            "share_of_one_producer_rate": share,
        }));
    }
    let top = o.threads.len() - 1;
    let t = o.threads[top];
    let ratios_of = |key: &str| -> Vec<f64> {
        rows.iter()
            .map(|r| r[key].as_f64().unwrap_or(0.0))
            .collect()
    };
    let (got, rt, ratio_verdict) = judge(&o.threads, &ratios_of("ratio_to_array_queue"));
    let (pooled_got, _, pooled_verdict) =
        judge(&o.threads, &ratios_of("pooled_ratio_to_array_queue"));
    let ratio_verdict = format!("rings: {ratio_verdict}; pooled: {pooled_verdict}");
    let share = rows[top]["share_of_one_producer_rate"]
        .as_f64()
        .unwrap_or(0.0);
    let floor = scaling_floor(t);
    let passed = got >= rt && pooled_got >= rt && floor.is_none_or(|f| share >= f);
    let verdict = match floor {
        Some(f) => format!(
            "{ratio_verdict}; lossless push rate per producer at {t}: {:.0} % of 1-producer (needs >= {:.0} %)",
            share * 100.0,
            f * 100.0
        ),
        None => format!(
            "{ratio_verdict}; lossless push rate per producer at {t}: {:.0} % of 1-producer (not judged: \
             {t} producers and the consumer on {} cores)",
            share * 100.0,
            cores()
        ),
    };
    let series = Candidate::ALL
        .into_iter()
        .enumerate()
        .map(|(i, c)| Series {
            name: c.name().to_string(),
            color: ["#d62728", "#ff7f0e", "#1f77b4", "#7f7f7f"][i],
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
