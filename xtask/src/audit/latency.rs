//! Audit 3: record latency. Per-call latency of ending a span (ours:
//! `Span::end`, which records; the SDK's: `Span::end`, which calls the
//! batch processor's `on_end`) and of a queue push, with every thread of
//! the sweep's top count working at once. Percentiles from HDR histograms.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use benches::exporter::{Counting, CountingExporter};
use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use otlp_exporter::{Pipeline, Resource};
use serde_json::{Value, json};

use super::{Audit, Options};

/// Ours may be at most this many times the baseline's p99.
const P99_RATIO: f64 = 1.0;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Runs `threads` threads that each time `iters` calls of `call(t, i)`,
/// after `setup(t)`; returns the merged histogram of nanoseconds per call.
fn measure<S>(
    threads: usize,
    iters: u64,
    setup: impl Fn(usize) -> S + Sync,
    call: impl Fn(&mut S, u64) + Sync,
) -> Histogram<u64> {
    let start = Barrier::new(threads);
    let hists: Vec<Histogram<u64>> = thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (start, setup, call) = (&start, &setup, &call);
                s.spawn(move || {
                    let mut state = setup(t);
                    let mut h = histogram();
                    start.wait();
                    for i in 0..iters {
                        let t0 = Instant::now();
                        call(&mut state, i);
                        let ns = t0.elapsed().as_nanos().clamp(1, 60_000_000_000) as u64;
                        let _ = h.record(ns);
                    }
                    h
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("latency thread"))
            .collect()
    });
    let mut all = histogram();
    for h in &hists {
        let _ = all.add(h);
    }
    all
}

fn figures(h: &Histogram<u64>) -> Value {
    json!({
        "p50_ns": h.value_at_quantile(0.50),
        "p99_ns": h.value_at_quantile(0.99),
        "p999_ns": h.value_at_quantile(0.999),
        "max_ns": h.max(),
        "count": h.len(),
    })
}

fn row(name: &str, h: &Histogram<u64>) -> String {
    format!(
        "| {name} | {} | {} | {} | {} |",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

pub(crate) fn audit(o: &Options) -> Audit {
    let threads = o.top();
    let iters: u64 = if o.quick { 50_000 } else { 200_000 };
    eprintln!("  record-latency: {threads} threads, {iters} calls each");

    // Ours: end (= record) of a span with two attributes.
    let pipeline = Pipeline::builder()
        .transport(Counting::default())
        .resource(Resource::new("audit"))
        .scheduled_delay(Duration::from_millis(100))
        .build()
        .expect("valid settings");
    let tracer = pipeline.tracer("audit", "0");
    let ours = measure(
        threads,
        iters,
        |_| (),
        |(), i| {
            let mut span = tracer.start("op");
            span.set_attribute("thread_id", 1)
                .set_attribute("i", i as i64);
            // Only `end` is timed in spirit; building is outside `record`
            // in both pipelines alike, so it is left in both measurements.
            span.end();
        },
    );
    drop(tracer);
    pipeline.shutdown(Duration::from_secs(30));

    // The SDK: the same span through `BatchSpanProcessor::on_end`.
    let sdk = {
        use opentelemetry::trace::{Span, Tracer, TracerProvider};
        let provider = benches::exporter::otel_provider(CountingExporter::default(), 2048);
        let tracer = provider.tracer("audit");
        let h = measure(
            threads,
            iters,
            |_| (),
            |(), i| {
                let mut span = tracer.start("op");
                span.set_attribute(opentelemetry::KeyValue::new("thread_id", 1));
                span.set_attribute(opentelemetry::KeyValue::new("i", i as i64));
                span.end();
            },
        );
        let _ = provider.shutdown();
        h
    };

    // Queue push, with a consumer draining: ours against ArrayQueue.
    let ours_push = {
        let (tx, mut rx) = otlp_queue::bounded::<u64>((4096 / threads).max(1));
        let template = Mutex::new(tx);
        with_consumer(
            move || {
                let mut out = Vec::with_capacity(4096);
                out.clear();
                rx.pop_batch(&mut out, 4096)
            },
            || {
                measure(
                    threads,
                    iters,
                    |_| template.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    |tx, i| {
                        let _ = tx.try_push(i);
                    },
                )
            },
        )
    };
    let aq_push = {
        let q = ArrayQueue::<u64>::new(4096);
        with_consumer(
            || usize::from(q.pop().is_some()),
            || {
                measure(
                    threads,
                    iters,
                    |_| (),
                    |(), i| {
                        let _ = q.push(i);
                    },
                )
            },
        )
    };

    let mut details = String::new();
    let _ = writeln!(
        details,
        "{threads} threads at once, {iters} calls each; nanoseconds per call (clock reads included, \
         the same for both sides).\n"
    );
    let _ = writeln!(details, "| call | p50 | p99 | p99.9 | max |");
    let _ = writeln!(details, "|---|---:|---:|---:|---:|");
    let _ = writeln!(
        details,
        "{}",
        row("otlp-exporter: build + end a span (record)", &ours)
    );
    let _ = writeln!(
        details,
        "{}",
        row("OpenTelemetry SDK: build + end a span (on_end)", &sdk)
    );
    let _ = writeln!(details, "{}", row("otlp-queue: try_push", &ours_push));
    let _ = writeln!(details, "{}", row("crossbeam ArrayQueue: push", &aq_push));
    let span_ratio =
        ours.value_at_quantile(0.99) as f64 / sdk.value_at_quantile(0.99).max(1) as f64;
    let push_ratio =
        ours_push.value_at_quantile(0.99) as f64 / aq_push.value_at_quantile(0.99).max(1) as f64;
    Audit {
        name: "record-latency",
        passed: span_ratio <= P99_RATIO && push_ratio <= P99_RATIO,
        verdict: format!(
            "p99 span end {:.2}x the SDK's, p99 push {:.2}x ArrayQueue's (each needs <= {P99_RATIO:.1}x)",
            span_ratio, push_ratio
        ),
        details,
        json: json!({
            "threads": threads,
            "span_end": {"otlp_exporter": figures(&ours), "otel_sdk": figures(&sdk)},
            "queue_push": {"otlp_queue": figures(&ours_push), "array_queue": figures(&aq_push)},
            "p99_ratio_threshold": P99_RATIO,
        }),
    }
}

/// Runs `work` while another thread keeps calling `drain` (which returns
/// how many items it took), yielding when it finds nothing.
fn with_consumer<R: Send>(mut drain: impl FnMut() -> usize + Send, work: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if drain() == 0 {
                    thread::yield_now();
                }
            }
        });
        let r = work();
        stop.store(true, Ordering::Relaxed);
        r
    })
}
