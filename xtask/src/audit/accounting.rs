//! Audit 5: accounting under overload. Every shedding policy driven far
//! past capacity, with a transport that is slow or hangs; fails if any span
//! is unaccounted for.

use std::fmt::Write as _;
use std::thread;
use std::time::Duration;

use otlp_exporter::{Behavior, InMemory, Pipeline, Priority, Resource, Shedding, SpanData};
use serde_json::json;

use super::{Audit, Options};

pub(crate) fn audit(o: &Options) -> Audit {
    let threads = o.top();
    let per: u64 = if o.quick { 5_000 } else { 50_000 };
    let policies = [
        Shedding::DropNewest,
        Shedding::DropOldest,
        Shedding::Block {
            timeout: Duration::from_micros(100),
        },
        Shedding::Priority { high_water: 32 },
    ];
    let mut details = String::new();
    let _ = writeln!(
        details,
        "{threads} threads x {per} spans into a queue of `max_queue_size` 64 (drop oldest: a \
         64-span ring per thread; the other policies: a 64-span pool in all, plus each thread's \
         {}-span chunk); transport slow (1 ms per export) or hanging (shutdown deadline 200 ms).\n",
        otlp_exporter::THREAD_CHUNK_SLOTS
    );
    let _ = writeln!(
        details,
        "| policy | transport | accepted | exported | dropped | queued + in flight after shutdown | balanced |"
    );
    let _ = writeln!(details, "|---|---|---:|---:|---:|---:|---|");
    let mut rows = Vec::new();
    let mut passed = true;
    for policy in policies {
        for hang in [false, true] {
            eprintln!(
                "  accounting: {policy:?}, {}",
                if hang { "hanging" } else { "slow" }
            );
            let memory = if hang {
                InMemory::new().with_behavior(Behavior::Hang)
            } else {
                InMemory::new().with_latency(Duration::from_millis(1))
            };
            let pipeline = Pipeline::builder()
                .transport(memory.clone())
                .resource(Resource::new("audit"))
                .max_queue_size(64)
                .max_export_batch_size(32)
                .scheduled_delay(Duration::from_millis(5))
                .shedding(policy)
                .build()
                .expect("valid settings");
            thread::scope(|s| {
                for _ in 0..threads {
                    let pipeline = &pipeline;
                    s.spawn(move || {
                        for i in 0..per {
                            let mut span = SpanData::new("overload");
                            if i % 2 == 0 {
                                span.priority = Priority::Low;
                            }
                            pipeline.record(span);
                        }
                    });
                }
            });
            let report = pipeline.shutdown(Duration::from_millis(if hang { 200 } else { 30_000 }));
            memory.release();
            let s = report.stats;
            let ok = s.is_balanced()
                && s.accepted == threads as u64 * per
                && s.queued + s.in_flight == 0;
            passed &= ok;
            let transport = if hang { "hanging" } else { "slow" };
            let _ = writeln!(
                details,
                "| {policy:?} | {transport} | {} | {} | {} | {} | {} |",
                s.accepted,
                s.exported,
                s.dropped.total(),
                s.queued + s.in_flight,
                if ok { "yes" } else { "NO" }
            );
            rows.push(json!({
                "policy": format!("{policy:?}"),
                "transport": transport,
                "accepted": s.accepted,
                "exported": s.exported,
                "dropped": {
                    "queue_full": s.dropped.queue_full, "evicted": s.dropped.evicted,
                    "low_priority": s.dropped.low_priority, "export_failed": s.dropped.export_failed,
                    "timed_out_at_shutdown": s.dropped.timed_out_at_shutdown, "total": s.dropped.total(),
                },
                "balanced": ok,
            }));
        }
    }
    Audit {
        name: "accounting",
        passed,
        verdict: format!(
            "{} of 8 policy/transport runs account for every span (needs all)",
            rows.iter().filter(|r| r["balanced"] == true).count()
        ),
        details,
        json: json!({"rows": rows}),
    }
}
