//! Audit 7: memory held per recording thread (issue 13: `max_queue_size`
//! bounds the spans held across all recording threads). 1, 64 and 1024 threads each record a few thousand
//! spans into a pipeline whose transport hangs (a collector that stopped
//! answering), so nothing leaves the queue; while every thread is still
//! alive, the bytes the process holds on the heap (the counting global
//! allocator, which sees every allocation of the pipeline) are compared
//! with the bound issue 13 sets: `max_queue_size x slot size`, plus at
//! most 16 KiB per recording thread, plus a fixed allowance for the
//! worker's batch, the request in flight and the pipeline's tables.
//! The process's resident growth (`VmRSS`) is shown beside it, not judged
//! (it also counts each thread's stack and the C allocator's per-thread
//! arenas, which are not the pipeline's).

use std::fmt::Write as _;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use otlp_exporter::{Behavior, DEFAULT_MAX_QUEUE_SIZE, InMemory, Pipeline, Resource};
use serde_json::json;

use super::alloc::{live_bytes, track_bytes};
use super::{Audit, Options};

/// Bytes one queued span takes: the queue's slot (an encoded span inline,
/// up to 488 bytes, with its scope and length; see
/// `PipelineBuilder::max_queue_size`).
const SLOT_BYTES: u64 = 512;
/// What a recording thread may hold beyond its share of the queue (issue
/// 13, item 1).
const PER_THREAD: u64 = 16 * 1024;
/// The fixed allowance: the worker's batch (at most 512 encoded spans),
/// the encoded request in flight to the hung transport, the scope table
/// and the pipeline's own structures.
const FIXED: u64 = 4 * 1024 * 1024;
/// Spans each thread records (more than a lane of the default size holds).
const SPANS: u64 = 3000;
/// Stack of each recording thread: small, so 1024 of them stay cheap.
const STACK: usize = 256 * 1024;

/// This process's resident memory, in bytes (`VmRSS`, Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

struct Held {
    threads: usize,
    heap: i64,
    rss: Option<i64>,
    bound: u64,
    balanced: bool,
}

/// `threads` threads each record [`SPANS`] spans into a pipeline with the
/// default `max_queue_size` and a hung transport; the heap and resident
/// growth from before the pipeline was built until all of them are alive
/// and done recording.
fn measure(threads: usize) -> Held {
    // From before the pipeline is built: what it allocates up front (a
    // shared pool, say) counts too.
    track_bytes(true);
    let (heap0, rss0) = (live_bytes(), rss_bytes());
    let transport = InMemory::new().with_behavior(Behavior::Hang);
    let pipeline = Pipeline::builder()
        .transport(transport.clone())
        .resource(Resource::new("audit"))
        .scheduled_delay(Duration::from_millis(50))
        .build()
        .expect("valid settings");
    let tracer = pipeline.tracer("audit", "0");
    let recorded = Barrier::new(threads + 1);
    let measured = Barrier::new(threads + 1);
    let (heap, rss) = thread::scope(|s| {
        for t in 0..threads {
            let (tracer, recorded, measured) = (&tracer, &recorded, &measured);
            thread::Builder::new()
                .stack_size(STACK)
                .spawn_scoped(s, move || {
                    for i in 0..SPANS {
                        let mut span = tracer.start("op");
                        span.set_attribute("thread_id", t as i64)
                            .set_attribute("i", i as i64);
                        span.end();
                    }
                    recorded.wait();
                    // Alive (lane and all) until the figures are read.
                    measured.wait();
                })
                .expect("spawn a recording thread");
        }
        recorded.wait();
        // Let the worker take what it will (it is stuck on the hung export).
        thread::sleep(Duration::from_millis(300));
        let figures = (
            live_bytes() - heap0,
            rss_bytes()
                .zip(rss0)
                .map(|(now, before)| now as i64 - before as i64),
        );
        measured.wait();
        figures
    });
    track_bytes(false);
    transport.release();
    drop(tracer);
    let report = pipeline.shutdown(Duration::from_secs(10));
    Held {
        threads,
        heap,
        rss,
        bound: DEFAULT_MAX_QUEUE_SIZE as u64 * SLOT_BYTES + PER_THREAD * threads as u64 + FIXED,
        balanced: report.stats.is_balanced(),
    }
}

fn kib(b: i64) -> String {
    if b.abs() >= 10 * 1024 * 1024 {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KiB", b / 1024)
    }
}

pub(crate) fn audit(o: &Options) -> Audit {
    // The same counts in `--quick`: 1024 threads of 3000 spans take about
    // a second.
    let _ = o.quick;
    let counts: &[usize] = &[1, 64, 1024];
    let mut details = String::new();
    let _ = writeln!(
        details,
        "N threads each record {SPANS} spans (two attributes) into one pipeline with the default \
         `max_queue_size` ({DEFAULT_MAX_QUEUE_SIZE}) whose transport hangs, then wait, alive, while \
         the process's heap growth since before the pipeline was built is read (counting allocator: \
         every allocation of the pipeline). \
         Bound (issue 13): `max_queue_size` x {SLOT_BYTES} B + 16 KiB per recording thread + \
         {} fixed. Resident growth (VmRSS) for reference: it also counts thread stacks and the C \
         allocator's arenas.\n",
        kib(FIXED as i64)
    );
    let _ = writeln!(
        details,
        "| threads | heap held | per thread | bound | resident growth | per thread | accounting balanced |"
    );
    let _ = writeln!(details, "|---:|---:|---:|---:|---:|---:|---|");
    let mut rows = Vec::new();
    let mut passed = true;
    // The verdict names the highest failing count, or the highest count.
    let mut shown: Option<(bool, Held)> = None;
    for &n in counts {
        eprintln!("  memory: {n} recording threads");
        let h = measure(n);
        let _ = writeln!(
            details,
            "| {n} | {} | {} | {} | {} | {} | {} |",
            kib(h.heap),
            kib(h.heap / n as i64),
            kib(h.bound as i64),
            h.rss.map_or("-".into(), kib),
            h.rss.map_or("-".into(), |r| kib(r / n as i64)),
            if h.balanced { "yes" } else { "NO" },
        );
        rows.push(json!({
            "threads": n, "heap_bytes": h.heap, "rss_bytes": h.rss, "bound_bytes": h.bound,
            "balanced": h.balanced,
        }));
        let ok = h.heap <= h.bound as i64 && h.balanced;
        passed &= ok;
        if shown.as_ref().is_none_or(|(shown_ok, _)| *shown_ok || !ok) {
            shown = Some((ok, h));
        }
    }
    let (_, w) = shown.expect("at least one thread count");
    let verdict = format!(
        "at {} threads: heap held {} ({} per thread) against a bound of {} ({} queue + 16 KiB per \
         thread + {} fixed){}",
        w.threads,
        kib(w.heap),
        kib(w.heap / w.threads as i64),
        kib(w.bound as i64),
        kib((DEFAULT_MAX_QUEUE_SIZE as u64 * SLOT_BYTES) as i64),
        kib(FIXED as i64),
        if w.balanced {
            ""
        } else {
            "; accounting does not balance"
        }
    );
    Audit {
        name: "memory",
        passed,
        verdict,
        details,
        json: json!({"rows": rows, "slot_bytes": SLOT_BYTES, "per_thread_allowance": PER_THREAD,
                     "fixed_allowance": FIXED, "spans_per_thread": SPANS}),
    }
}
