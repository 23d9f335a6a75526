//! Audit 2: exporter throughput. otlp-exporter end to end (record, encode,
//! export into a counting transport) against the OpenTelemetry SDK's
//! `BatchSpanProcessor` with a counting exporter, same run, with the same
//! total queue on both sides (`benches::exporter::ours_queue_setting`:
//! our `max_queue_size` is the total across recording threads, less each
//! thread's own chunk), at two totals, the spec's default 2048 and
//! 65 536, both judged. Every recording thread makes spans for the same
//! time on both sides (`benches::exporter::Workload::For`). The full
//! audit adds the SDK encoding OTLP protobuf with prost (the same work as
//! ours), not judged.

use std::fmt::Write as _;

use std::time::Duration;

use benches::exporter::{Workload, compare};
use serde_json::json;

use super::{Audit, Options, m};

/// Ours must deliver at least this many times the SDK's spans/s in every
/// row (each thread count, each total queue, the same total for both).
const RATIO: f64 = 1.5;
/// Issue 13's goal on the 2-core machine: at least this many times at
/// [`GOAL_THREADS`] threads, both totals. Reported in the verdict, not
/// judged: on a quiet 2-core VM ours is at 5.8-9.6x there, but with the
/// machine shared (load average 6 on 2 cores, other builds running) 2.8x
/// was seen, and a gate that fails on a neighbour's build is noise. The
/// gate is [`RATIO`].
const GOAL: f64 = 3.0;
/// The thread count of [`GOAL`] (reported when it is among the counts run).
const GOAL_THREADS: usize = 4;
/// The total queues measured, the same for both sides, both judged.
/// (Until 2026-12-01 only 65 536 was: with a fixed number of spans per
/// thread, ours at 2048 swung between 0.3x and 9x from run to run, its
/// run over in 2 ms; a sustained load of the same time on both sides
/// measures the drain, not the first scheduler slice: see
/// `benches::exporter::Workload`.)
const QUEUES: [usize; 2] = [2048, 65_536];

pub(crate) fn audit(o: &Options) -> Audit {
    // Every thread makes spans for the same time on both sides (a
    // sustained load: see `benches::exporter::Workload`). Quick: three
    // short rounds (see queue.rs).
    let (work, rounds) = if o.quick {
        (Workload::For(Duration::from_millis(250)), 3)
    } else {
        (Workload::For(Duration::from_secs(1)), 3)
    };
    let with_prost = !o.quick;
    let mut details = String::new();
    let _ = writeln!(
        details,
        "N threads each make {work} (the same time for both), each span with two attributes; \
         the same total queue for both \
         (ours: `max_queue_size` = the total less a 16-span chunk per recording thread, which \
         each thread also holds: all threads together hold at most the total; the SDK: one \
         queue of the total; batch 512 for both), delay 100 ms; {rounds} round(s) \
         interleaved, medians. Our drops are by reason (the SDK's are silent). Judged: both \
         totals, against the SDK whose exporter only counts `SpanData`: every row >= \
         {RATIO:.1}x (issue 13's goal, >= {GOAL:.1}x at {GOAL_THREADS} threads, is reported, \
         not judged){}.\n",
        if with_prost {
            "; the last columns are the SDK whose exporter encodes OTLP protobuf with prost, \
             the same work as ours"
        } else {
            " (the prost-encoding SDK runs in the full audit)"
        }
    );
    let _ = writeln!(
        details,
        "| threads | total queue | ours offered/s | ours delivered/s | ours dropped (queue full / other) | SDK offered/s | SDK delivered/s | SDK dropped | delivered ratio | SDK+prost delivered/s | ratio to SDK+prost |"
    );
    let _ = writeln!(
        details,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut rows = Vec::new();
    // The lowest ratio of every row, and of the goal's rows: (ratio,
    // threads, total).
    let mut lowest: Option<(f64, usize, usize)> = None;
    let mut at_goal: Option<(f64, usize, usize)> = None;
    let lower = |cur: &mut Option<(f64, usize, usize)>, row: (f64, usize, usize)| {
        if cur.is_none_or(|c| row.0 < c.0) {
            *cur = Some(row);
        }
    };
    for (&t, queue) in o
        .threads
        .iter()
        .flat_map(|t| QUEUES.iter().map(move |q| (t, *q)))
    {
        eprintln!("  exporter-throughput: {t} threads, total queue {queue}");
        let benches::exporter::Comparison {
            ours: a,
            sdk: b,
            ratio,
            sdk_prost,
            ratio_prost,
        } = compare(t, work, queue, rounds, with_prost);
        let stats = a.stats.unwrap_or_default();
        let other = stats.dropped.total() - stats.dropped.queue_full;
        let _ = writeln!(
            details,
            "| {t} | {queue} | {} | {} | {} / {other} | {} | {} | {} | {ratio:.1}x | {} | {} |",
            m(a.offered_per_s),
            m(a.delivered_per_s),
            stats.dropped.queue_full,
            m(b.offered_per_s),
            m(b.delivered_per_s),
            b.dropped(),
            sdk_prost.map_or("-".into(), |p| m(p.delivered_per_s)),
            ratio_prost.map_or("-".into(), |r| format!("{r:.1}x")),
        );
        rows.push(json!({
            "threads": t,
            "total_queue": queue,
            "ours": {"offered_per_s": a.offered_per_s, "delivered_per_s": a.delivered_per_s, "offered": a.offered,
                     "delivered": a.delivered, "dropped_queue_full": stats.dropped.queue_full, "dropped_other": other,
                     "balanced": stats.is_balanced()},
            "sdk": {"offered_per_s": b.offered_per_s, "delivered_per_s": b.delivered_per_s, "offered": b.offered,
                    "delivered": b.delivered, "dropped": b.dropped()},
            "delivered_ratio": ratio,
            "sdk_prost_delivered_per_s": sdk_prost.map(|p| p.delivered_per_s),
            "delivered_ratio_to_sdk_prost": ratio_prost,
            "ours_max_queue_size": benches::exporter::ours_queue_setting(queue, t),
        }));
        lower(&mut lowest, (ratio, t, queue));
        if t == GOAL_THREADS {
            lower(&mut at_goal, (ratio, t, queue));
        }
    }
    let (low, low_t, low_q) = lowest.expect("at least one thread count");
    let passed = low >= RATIO;
    let mut verdict = format!(
        "lowest: {low:.1}x the SDK's delivered spans/s (at {low_t} thread{}, total queue \
         {low_q}; every row needs >= {RATIO:.1}x)",
        if low_t == 1 { "" } else { "s" }
    );
    if let Some((r, t, q)) = at_goal {
        let _ = write!(
            verdict,
            "; at {t} threads {r:.1}x at its lowest (total {q}): issue 13's goal of >= \
             {GOAL:.1}x {}",
            if r >= GOAL {
                "met"
            } else {
                "not met in this run"
            }
        );
    }
    Audit {
        name: "exporter-throughput",
        passed,
        verdict,
        details,
        json: json!({"rows": rows, "ratio_threshold": RATIO, "goal": GOAL,
                     "goal_threads": GOAL_THREADS, "judged_total_queues": QUEUES}),
    }
}
