//! Criterion: spans delivered per second end to end (record, batch, encode,
//! export to a counting sink), otlp-exporter against the OpenTelemetry SDK's
//! `BatchSpanProcessor` (its exporter only counting, and encoding OTLP
//! protobuf with prost) in the same run, each with a 65 536-span queue in
//! all.
//! `cargo bench -p benches --bench exporter`.
//!
//! For offered load, drops and the full sweep use `cargo xtask sweep`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use benches::exporter::{PipelineCandidate, Workload, run};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Spans per thread in one criterion iteration.
const SPANS: u64 = 1_000;

fn delivered(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline_delivered");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for threads in [1usize, 2, 4] {
        group.throughput(Throughput::Elements(SPANS * threads as u64));
        for candidate in [
            PipelineCandidate::Ours,
            PipelineCandidate::OtelBsp,
            PipelineCandidate::OtelBspProst,
        ] {
            let id = BenchmarkId::new(candidate.name(), threads);
            group.bench_with_input(id, &threads, |b, &t| {
                b.iter_custom(|iters| {
                    let per = iters * SPANS;
                    let r = run(candidate, t, Workload::Spans(per), 65_536);
                    // Time per delivered-span-equivalent; drops make a
                    // pipeline look slower, as they should.
                    Duration::from_secs_f64((per * t as u64) as f64 / r.delivered_per_s.max(1.0))
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, delivered);
criterion_main!(benches);
