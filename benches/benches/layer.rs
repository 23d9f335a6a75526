//! Criterion: the cost of one `tracing` span on one thread (issue 14, item
//! 6): an `info_span!` with two fields, entered, exited and closed
//! (`benches::layer::span`), with tracing-subscriber's registry alone (the
//! floor), the registry with otlp-tracing's `OtlpLayer` (our pipeline, a
//! counting transport), and the registry with tracing-opentelemetry's layer
//! over the OpenTelemetry SDK's `BatchSpanProcessor` (a counting
//! exporter), in the same run. The layer's cost is its median minus the
//! registry's. Last, a diagnostic (not like for like): ours with location
//! and busy/idle time off. `cargo bench -p benches --bench layer`.
//!
//! Both pipelines get a 65 536-span queue in all and a 100 ms delay so that
//! a worker that keeps up never makes the recording thread drop (a drop is
//! cheaper than a record); our pipeline's accounting is checked at the end
//! of each (it panics if it does not balance) and its drops, if any, are
//! printed.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use benches::layer::{LayerCandidate, Stack, span};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const QUEUE: usize = 65_536;

fn one_span(c: &mut Criterion) {
    let mut group = c.benchmark_group("tracing_one_span");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    for candidate in [
        LayerCandidate::Registry,
        LayerCandidate::Ours,
        LayerCandidate::TracingOtel,
        LayerCandidate::OursMinimal,
    ] {
        let stack = Stack::new(candidate, 1, QUEUE);
        group.bench_function(candidate.name(), |b| {
            tracing::dispatcher::with_default(&stack.dispatch, || {
                let mut i = 0u64;
                b.iter(|| {
                    i += 1;
                    span(0, i);
                });
            });
        });
        // Ours: panics if the accounting does not balance. Drops (a worker
        // starved of a core on a busy machine lets the queue fill) make the
        // figure a mix of records and cheaper drops: say so.
        let finished = stack.finish();
        if let Some(s) = finished.stats {
            eprintln!(
                "{}: {} spans accepted, {} exported, {} dropped (queue full: {}); balanced",
                candidate.name(),
                s.accepted,
                s.exported,
                s.dropped.total(),
                s.dropped.queue_full
            );
        }
    }
    group.finish();
}

criterion_group!(benches, one_span);
criterion_main!(benches);
