//! Criterion: the cost of one span with two attributes built and ended on
//! one thread (issue 13, item 2): otlp-exporter (ids, two clock reads,
//! limits, OTLP encoding, the push into its lane), the OpenTelemetry SDK
//! (its `BatchSpanProcessor`'s `on_end`; no encoding on this thread) and
//! fastrace (a local span, no encoding: the floor), in the same run.
//! `cargo bench -p benches --bench record`.
//!
//! Both pipelines get a 65 536-span queue and a 100 ms delay so that a
//! worker that keeps up never makes the recording thread drop (a drop is
//! cheaper than a record); the drops, if any, are printed at the end.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::{Duration, Instant};

use benches::exporter::{Counting, CountingExporter, otel_provider};
use benches::record::{FastraceRoot, fastrace_span, ours_span, sdk_span};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otlp_exporter::{Pipeline, Resource};

const QUEUE: usize = 65_536;

fn record(c: &mut Criterion) {
    use opentelemetry::trace::TracerProvider as _;
    let mut group = c.benchmark_group("record_one_span");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));

    let pipeline = Pipeline::builder()
        .transport(Counting::default())
        .resource(Resource::new("bench"))
        .max_queue_size(QUEUE)
        .scheduled_delay(Duration::from_millis(100))
        .build()
        .expect("valid settings");
    let tracer = pipeline.tracer("bench", "0");
    group.bench_function("otlp-exporter", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            ours_span(&tracer, i);
        });
    });

    let provider = otel_provider(CountingExporter::default(), QUEUE);
    let sdk = provider.tracer("bench");
    group.bench_function("opentelemetry-sdk", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            sdk_span(&sdk, i);
        });
    });

    group.bench_function("fastrace", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            let mut root = FastraceRoot::new();
            for i in 0..iters {
                root.renew_if_due(i);
                fastrace_span(i);
            }
            drop(root);
            t.elapsed()
        });
    });
    group.finish();

    drop(tracer);
    let report = pipeline.shutdown(Duration::from_secs(30));
    let s = report.stats;
    eprintln!(
        "otlp-exporter: {} spans accepted, {} exported, {} dropped (balanced: {})",
        s.accepted,
        s.exported,
        s.dropped.total(),
        s.is_balanced()
    );
    let _ = provider.shutdown();
}

criterion_group!(benches, record);
criterion_main!(benches);
