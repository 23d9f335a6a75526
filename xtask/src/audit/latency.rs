//! Audit 3: record latency. Per-call latency of ending a span (ours:
//! `Span::end`, which records; the SDK's: `Span::end`, which calls the
//! batch processor's `on_end`) and of a queue push, with every thread of
//! the sweep's top count working at once. Percentiles from HDR histograms.
//!
//! Every timed call is one that succeeds: both pipelines hold the same
//! total queue, large enough for every span of the run (a span dropped
//! because the queue is full takes a shorter path, on both sides, and
//! whichever side dropped more would look faster), and the queues hold
//! every push; the audit checks that nothing was dropped or refused.
//! Rounds of the two sides alternate, and their histograms are merged.
//! Each pipeline first takes one untimed run of the same spans, then is
//! flushed, before its timed run: the steady state of a pipeline that has
//! run a while. (Without it, ours paid the first touch of its freshly
//! allocated queue, a page fault every 8 slots, in the timed calls: a p99
//! of 1.5 us against 0.16-0.45 us warm, on the 2-core AMD VM; the SDK
//! allocates each span from the allocator's warm caches.) fastrace (a span
//! recorded without encoding) is shown beside them as the record path's
//! floor, not judged.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use benches::exporter::{Counting, CountingExporter, ours_queue_setting};
use benches::record::{FastraceRoot, fastrace_span};
use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use otlp_exporter::{Pipeline, Resource};
use serde_json::{Value, json};

use super::{Audit, Options};

/// What is judged, and the most ours may be of the baseline's: the p99,
/// equal, where every thread has a core; where threads outnumber cores,
/// the p90, equal. There the 1 % tail of both sides is mostly scheduling
/// and swings from run to run: in the CI runs of 2026-12-01 on the 2-core
/// AMD VM (every call a successful record, warm pipelines) ours measured
/// a p99 of 0.16-0.31 us in some runs and 1.5-1.7 us in others, the SDK's
/// 0.64-2.5 us, while the p50s stayed at 90-130 ns against 360-550 ns;
/// the cause of ours' slow runs was not found (fastrace, with no queue,
/// showed a tail of the same size in one of them). This is no lock
/// check: a global lock planted on the record path about doubled ours'
/// p90 and still passed against the SDK's (review, 2026-12-02); the
/// lock-free audit is the one that finds locks (and allocations).
fn judged(threads: usize) -> (f64, &'static str, f64) {
    if threads < super::cores() {
        (0.99, "p99", 1.0)
    } else {
        (0.90, "p90", 1.0)
    }
}

/// Rounds of each side, alternating (their histograms merged).
const ROUNDS: usize = 3;

/// The total queue both pipelines hold for `threads` threads of `iters`
/// spans each: all of them, with room for each thread's partly filled
/// chunk (ours takes its queue in chunks of
/// [`otlp_exporter::THREAD_CHUNK_SLOTS`]).
fn total_queue(threads: usize, iters: u64) -> usize {
    threads * (iters as usize + 2 * otlp_exporter::THREAD_CHUNK_SLOTS)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Runs `threads` threads that each time `iters` calls of `call(t, i)`,
/// after `setup(t)`; returns the merged histogram of nanoseconds per call,
/// and how many calls said they succeeded (`call`'s `bool`).
fn measure<S>(
    threads: usize,
    iters: u64,
    setup: impl Fn(usize) -> S + Sync,
    call: impl Fn(&mut S, u64) -> (Option<Duration>, bool) + Sync,
) -> (Histogram<u64>, u64) {
    let start = Barrier::new(threads);
    let hists: Vec<(Histogram<u64>, u64)> = thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (start, setup, call) = (&start, &setup, &call);
                s.spawn(move || {
                    let mut state = setup(t);
                    let mut h = histogram();
                    let mut ok = 0;
                    start.wait();
                    for i in 0..iters {
                        let t0 = Instant::now();
                        // `Some`: the call timed its own part; `None`: time it all.
                        let (took, succeeded) = call(&mut state, i);
                        let took = took.unwrap_or_else(|| t0.elapsed());
                        let ns = took.as_nanos().clamp(1, 60_000_000_000) as u64;
                        let _ = h.record(ns);
                        ok += u64::from(succeeded);
                    }
                    (h, ok)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("latency thread"))
            .collect()
    });
    let mut all = histogram();
    let mut ok = 0;
    for (h, n) in &hists {
        let _ = all.add(h);
        ok += n;
    }
    (all, ok)
}

fn figures(h: &Histogram<u64>) -> Value {
    json!({
        "p50_ns": h.value_at_quantile(0.50),
        "p90_ns": h.value_at_quantile(0.90),
        "p99_ns": h.value_at_quantile(0.99),
        "p999_ns": h.value_at_quantile(0.999),
        "max_ns": h.max(),
        "count": h.len(),
    })
}

fn row(name: &str, h: &Histogram<u64>) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} |",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.90),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

pub(crate) fn audit(o: &Options) -> Audit {
    let threads = o.top();
    // Per thread, bounded so that the whole run fits our largest queue.
    let iters: u64 = (if o.quick { 20_000 } else { 100_000 }).min(
        (otlp_exporter::MAX_QUEUE_SIZE / threads)
            .saturating_sub(2 * otlp_exporter::THREAD_CHUNK_SLOTS)
            .max(1) as u64,
    );
    let total = total_queue(threads, iters);
    eprintln!("  record-latency: {threads} threads, {iters} calls each, {ROUNDS} rounds a side");

    // Spans with two attributes: built and ended (what a thread pays per
    // span), and ended only (ours records, encoding included; the SDK's
    // `on_end` hands `SpanData` on and encodes nothing on this thread).
    // Each run returns its histogram and how many spans got through.
    let (mut ours, mut sdk, mut ours_end, mut sdk_end) =
        (histogram(), histogram(), histogram(), histogram());
    let mut through = [0u64; 4];
    let add = |into: &mut Histogram<u64>, count: &mut u64, (h, n): (Histogram<u64>, u64)| {
        let _ = into.add(&h);
        *count += n;
    };
    for _ in 0..ROUNDS {
        let [a, b, c, d] = &mut through;
        add(&mut ours, a, ours_span(threads, iters, false, total));
        add(&mut sdk, b, sdk_span(threads, iters, false, total));
        add(&mut ours_end, c, ours_span(threads, iters, true, total));
        add(&mut sdk_end, d, sdk_span(threads, iters, true, total));
    }
    let fastrace = fastrace_spans(threads, iters);
    let spans = ROUNDS as u64 * threads as u64 * iters;

    // Queue push, with a consumer draining: ours against ArrayQueue, each
    // holding every push (counted: a refused push is a shorter path).
    let ours_push = {
        let (tx, mut rx) = otlp_queue::bounded::<u64>(iters as usize);
        let template = Mutex::new(tx);
        let mut out = Vec::with_capacity(4096);
        with_consumer(
            move || {
                out.clear();
                rx.pop_batch(&mut out, 4096)
            },
            || {
                measure(
                    threads,
                    iters,
                    |_| template.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    |tx, i| (None, tx.try_push(i).is_ok()),
                )
            },
        )
    };
    let aq_push = {
        let q = ArrayQueue::<u64>::new(threads * iters as usize);
        with_consumer(
            || usize::from(q.pop().is_some()),
            || measure(threads, iters, |_| (), |(), i| (None, q.push(i).is_ok())),
        )
    };
    let pushes = threads as u64 * iters;
    let (ours_push, ours_pushed) = ours_push;
    let (aq_push, aq_pushed) = aq_push;
    let complete = through == [spans; 4] && ours_pushed == pushes && aq_pushed == pushes;

    let mut details = String::new();
    let _ = writeln!(
        details,
        "{threads} threads at once, {iters} calls each; nanoseconds per call (clock reads included, \
         the same for both sides). Judged: building and ending a span (what a recording thread pays \
         per span) and the queue push; `end` alone, and fastrace (a local span with two \
         properties, no encoding: the floor), are shown for reference. Both pipelines hold \
         {total} spans of queue in all, room for every span of a run (ours: `max_queue_size` {}, \
         a total across threads, plus each thread's chunk), so that every timed call is one that \
         succeeds; {ROUNDS} rounds of each, alternating, histograms merged; each pipeline \
         timed after an untimed run of the same spans and a flush (its queue's memory touched).\n",
        ours_queue_setting(total, threads)
    );
    let _ = writeln!(details, "| call | p50 | p90 | p99 | p99.9 | max |");
    let _ = writeln!(details, "|---|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        details,
        "{}",
        row("otlp-exporter: build + end a span", &ours)
    );
    let _ = writeln!(
        details,
        "{}",
        row("OpenTelemetry SDK: build + end a span", &sdk)
    );
    let _ = writeln!(
        details,
        "{}",
        row(
            "fastrace: build + end a local span (no encoding)",
            &fastrace
        )
    );
    let _ = writeln!(
        details,
        "{}",
        row(
            "otlp-exporter: `end` alone (record, encoding included)",
            &ours_end
        )
    );
    let _ = writeln!(
        details,
        "{}",
        row(
            "OpenTelemetry SDK: `end` alone (on_end, no encoding)",
            &sdk_end
        )
    );
    let _ = writeln!(details, "{}", row("otlp-queue: try_push", &ours_push));
    let _ = writeln!(details, "{}", row("crossbeam ArrayQueue: push", &aq_push));
    let _ = writeln!(
        details,
        "\nCalls that got through (must be all): ours build + end {} of {spans}, `end` alone {} of \
         {spans}; the SDK's build + end {} of {spans}, `end` alone {} of {spans} (spans its exporter \
         received); otlp-queue pushes {ours_pushed} of {pushes}, ArrayQueue {aq_pushed} of {pushes}.",
        through[0], through[2], through[1], through[3]
    );
    let (q, qname, limit) = judged(threads);
    let span_ratio = ours.value_at_quantile(q) as f64 / sdk.value_at_quantile(q).max(1) as f64;
    let push_ratio =
        ours_push.value_at_quantile(q) as f64 / aq_push.value_at_quantile(q).max(1) as f64;
    Audit {
        name: "record-latency",
        passed: complete && span_ratio <= limit && push_ratio <= limit,
        verdict: format!(
            "{qname} span build+end {:.2}x the SDK's, {qname} push {:.2}x ArrayQueue's (each needs <= {limit:.2}x){}",
            span_ratio,
            push_ratio,
            if complete {
                ""
            } else {
                "; NOT every call got through (a dropped span or refused push is a shorter path: not like for like)"
            }
        ),
        details,
        json: json!({
            "threads": threads,
            "span_build_and_end": {"otlp_exporter": figures(&ours), "otel_sdk": figures(&sdk), "fastrace": figures(&fastrace)},
            "total_queue": total,
            "rounds": ROUNDS,
            "calls_through": {"ours_build_end": through[0], "sdk_build_end": through[1], "ours_end": through[2], "sdk_end": through[3], "of": spans, "ours_push": ours_pushed, "array_queue_push": aq_pushed, "of_pushes": pushes},
            "span_end_only": {"otlp_exporter": figures(&ours_end), "otel_sdk": figures(&sdk_end)},
            "queue_push": {"otlp_queue": figures(&ours_push), "array_queue": figures(&aq_push)},
            "judged_quantile": qname,
            "ratio_threshold": limit,
        }),
    }
}

/// Times `build` then `end` together, or (`end_only`) `end` alone.
fn time_span<S>(end_only: bool, build: impl FnOnce() -> S, end: impl FnOnce(S)) -> Duration {
    let t0 = Instant::now();
    let span = build();
    let t1 = Instant::now();
    end(span);
    if end_only { t1.elapsed() } else { t0.elapsed() }
}

/// `run` once untimed, `flush`, then `run` again, timed: the steady state
/// of a pipeline that has run a while (its queue's memory touched and
/// empty; see the module docs).
fn warm_then_timed(run: impl Fn() -> Histogram<u64>, flush: impl FnOnce()) -> Histogram<u64> {
    let _ = run();
    flush();
    run()
}

/// Our pipeline, holding `total` spans: per-call latency of making a span
/// (or, `end_only`, of ending one built just before), and how many spans
/// it exported (dropped ones are not).
fn ours_span(threads: usize, iters: u64, end_only: bool, total: usize) -> (Histogram<u64>, u64) {
    let setting = ours_queue_setting(total, threads);
    let pipeline = Pipeline::builder()
        .transport(Counting::default())
        .resource(Resource::new("audit"))
        .max_queue_size(setting)
        .max_export_batch_size(512.min(setting))
        .scheduled_delay(Duration::from_millis(100))
        .build()
        .expect("valid settings");
    let tracer = pipeline.tracer("audit", "0");
    let run = || {
        measure(
            threads,
            iters,
            |_| (),
            |(), i| {
                let took = time_span(
                    end_only,
                    || {
                        let mut span = tracer.start("op");
                        span.set_attribute("thread_id", 1)
                            .set_attribute("i", i as i64);
                        span
                    },
                    |span| {
                        span.end();
                    },
                );
                (Some(took), true)
            },
        )
        .0
    };
    let h = warm_then_timed(run, || {
        pipeline.force_flush(Duration::from_secs(30));
    });
    drop(tracer);
    let stats = pipeline.shutdown(Duration::from_secs(30)).stats;
    (h, stats.exported.saturating_sub(threads as u64 * iters))
}

/// The SDK with its batch processor, holding `total` spans: the same
/// spans; how many its exporter received.
fn sdk_span(threads: usize, iters: u64, end_only: bool, total: usize) -> (Histogram<u64>, u64) {
    use opentelemetry::trace::{Span, Tracer, TracerProvider};
    let got = CountingExporter::default();
    let received = got.0.clone();
    let provider = benches::exporter::otel_provider(got, total);
    let tracer = provider.tracer("audit");
    let run = || {
        measure(
            threads,
            iters,
            |_| (),
            |(), i| {
                let took = time_span(
                    end_only,
                    || {
                        let mut span = tracer.start("op");
                        span.set_attribute(opentelemetry::KeyValue::new("thread_id", 1));
                        span.set_attribute(opentelemetry::KeyValue::new("i", i as i64));
                        span
                    },
                    |mut span| span.end(),
                );
                (Some(took), true)
            },
        )
        .0
    };
    let h = warm_then_timed(run, || {
        let _ = provider.force_flush();
    });
    // A shutdown that gives up shows as spans not received, below.
    let _ = provider.shutdown();
    (
        h,
        received
            .load(Ordering::Relaxed)
            .saturating_sub(threads as u64 * iters),
    )
}

/// fastrace: a local span with two properties built and ended, per call,
/// under a root renewed every 1000 spans outside the timed part.
fn fastrace_spans(threads: usize, iters: u64) -> Histogram<u64> {
    measure(
        threads,
        iters,
        |_| FastraceRoot::new(),
        |root, i| {
            root.renew_if_due(i);
            let t0 = Instant::now();
            fastrace_span(i);
            (Some(t0.elapsed()), true)
        },
    )
    .0
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
