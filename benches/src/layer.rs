//! `tracing` spans through a subscriber stack, end to end (issue 14, item
//! 6): tracing-subscriber's registry with otlp-tracing's `OtlpLayer` (our
//! pipeline, its transport only counting) against the same registry with
//! tracing-opentelemetry's layer and the OpenTelemetry SDK's
//! `BatchSpanProcessor` (its exporter only counting `SpanData`), and the
//! registry alone (the floor: what `tracing` costs before any layer).
//!
//! Every candidate makes the same span the same way ([`span`]): an
//! `info_span!` with two integer fields, entered, exited and closed, on
//! the same stack (`tracing_subscriber::registry().with(layer)`), installed
//! the same way (a scoped default dispatcher on every recording thread).
//! Both layers run with their defaults for location (`code.*` attributes)
//! and busy/idle time (on in both); tracing-opentelemetry's thread
//! attributes (`thread.id`, `thread.name`, which ours does not add) and
//! its `target` attribute (ours adds `target` only where it differs from
//! `code.module.name`, as it does not here) are turned off so that both
//! export the same attributes, and so is its context activation (on each
//! enter it makes the span's OpenTelemetry `Context` current, for other
//! OpenTelemetry instrumentation on the thread; ours has no such work: on
//! before 2026-12-01, it cost theirs 110-130 ns a span of recording
//! thread CPU, 12-17 % of the ratio, in a reviewer's measurement). Both sample every
//! span (`AlwaysOn`, whatever `OTEL_TRACES_SAMPLER` says). Both get the
//! same **total** queue: ours `max_queue_size` =
//! [`ours_queue_setting`] of it, the
//! SDK one queue of it; batch 512 (or the queue if smaller), delay 100 ms,
//! as in [`exporter`](crate::exporter).
//!
//! ```
//! use benches::layer::{LayerCandidate, run};
//! let r = run(LayerCandidate::Ours, 2, 1_000, 65_536);
//! assert_eq!((r.offered, r.delivered), (2_000, 2_000));
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use otlp_exporter::{Pipeline, Resource, Sampler};
use otlp_tracing::{LayerCounters, OtlpLayer};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::exporter::{Counting, CountingExporter, PipelineResult, ours_queue_setting};

/// The stacks compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCandidate {
    /// `tracing_subscriber::registry()` alone: spans are made, entered,
    /// exited and closed, and go nowhere (the floor; nothing delivered).
    Registry,
    /// The registry with `otlp_tracing::OtlpLayer` over our pipeline.
    Ours,
    /// Ours with location (`code.*`) and busy/idle time off: not like for
    /// like (theirs keeps both), a diagnostic of what those cost in ours.
    OursMinimal,
    /// The registry with `tracing_opentelemetry::layer()` over an SDK
    /// tracer whose provider has a `BatchSpanProcessor`.
    TracingOtel,
}

impl LayerCandidate {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            LayerCandidate::Registry => "registry alone",
            LayerCandidate::Ours => "registry + OtlpLayer",
            LayerCandidate::OursMinimal => "registry + OtlpLayer, no location, no busy-idle",
            LayerCandidate::TracingOtel => "registry + tracing-opentelemetry + BatchSpanProcessor",
        }
    }
}

/// The span every candidate makes: an `info_span!` with two fields,
/// entered, exited, and closed (its only handle dropped).
#[inline]
pub fn span(thread_id: usize, i: u64) {
    let s = tracing::info_span!(
        "high_frequency_operation",
        thread_id = thread_id as i64,
        i = i as i64
    );
    drop(s.enter());
    drop(s);
}

/// A subscriber stack, installed per thread with
/// `tracing::dispatcher::with_default`, and what it takes to end it and
/// count what it delivered.
pub struct Stack {
    /// The subscriber (registry and layer).
    pub dispatch: Dispatch,
    end: End,
}

enum End {
    Registry,
    Ours {
        pipeline: Pipeline,
        sink: Counting,
        counters: LayerCounters,
    },
    Sdk {
        provider: opentelemetry_sdk::trace::SdkTracerProvider,
        got: Arc<AtomicU64>,
    },
}

/// What [`Stack::finish`] found.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    /// Spans the transport or exporter received (0 for the registry).
    pub delivered: u64,
    /// Encoded bytes our transport received (0 otherwise).
    pub bytes: u64,
    /// Our pipeline's final accounting (ours only).
    pub stats: Option<otlp_exporter::ExportStats>,
}

impl Stack {
    /// The stack of `candidate` with `total_queue` spans of queue in all,
    /// for `threads` recording threads.
    pub fn new(candidate: LayerCandidate, threads: usize, total_queue: usize) -> Stack {
        match candidate {
            LayerCandidate::Registry => Stack {
                dispatch: Dispatch::new(tracing_subscriber::registry()),
                end: End::Registry,
            },
            LayerCandidate::Ours | LayerCandidate::OursMinimal => {
                let max_queue_size = ours_queue_setting(total_queue, threads);
                let sink = Counting::default();
                let pipeline = Pipeline::builder()
                    .transport(sink.clone())
                    .resource(Resource::new("bench"))
                    .max_queue_size(max_queue_size)
                    .max_export_batch_size(512.min(max_queue_size))
                    .scheduled_delay(Duration::from_millis(100))
                    .build()
                    .expect("valid settings");
                let full = candidate == LayerCandidate::Ours;
                let layer = OtlpLayer::new(&pipeline)
                    .with_scope("bench", "0")
                    .with_sampler(Sampler::AlwaysOn)
                    .with_location(full)
                    .with_tracked_inactivity(full);
                let counters = layer.counters();
                Stack {
                    dispatch: Dispatch::new(tracing_subscriber::registry().with(layer)),
                    end: End::Ours {
                        pipeline,
                        sink,
                        counters,
                    },
                }
            }
            LayerCandidate::TracingOtel => {
                use opentelemetry::trace::TracerProvider as _;
                let got = Arc::new(AtomicU64::new(0));
                let provider = sdk_provider(CountingExporter(got.clone()), total_queue);
                // The same work as ours (module doc): no thread or target
                // attributes, no context made current on enter.
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("bench"))
                    .with_threads(false)
                    .with_target(false)
                    .with_context_activation(false);
                Stack {
                    dispatch: Dispatch::new(tracing_subscriber::registry().with(layer)),
                    end: End::Sdk { provider, got },
                }
            }
        }
    }

    /// Drops the subscriber, shuts the pipeline down (draining it) and
    /// counts what was delivered.
    ///
    /// # Panics
    ///
    /// For ours: if the shutdown does not complete, the pipeline's
    /// accounting does not balance (accepted = exported + dropped by
    /// reason), the transport's count differs from the exported count, or
    /// the layer still has spans open or handed fewer spans to the
    /// pipeline than it recorded: a run that loses spans unaccounted is not
    /// a measurement.
    pub fn finish(self) -> Finished {
        drop(self.dispatch);
        match self.end {
            End::Registry => Finished {
                delivered: 0,
                bytes: 0,
                stats: None,
            },
            End::Ours {
                pipeline,
                sink,
                counters,
            } => {
                let report = pipeline.shutdown(Duration::from_secs(120));
                let stats = report.stats;
                assert!(report.completed, "shutdown did not complete: {stats:?}");
                assert!(
                    stats.is_balanced(),
                    "accounting does not balance: {stats:?}"
                );
                let layer = counters.snapshot();
                assert_eq!(layer.open(), 0, "spans left open: {layer:?}");
                assert_eq!(
                    (layer.recorded, layer.not_sampled),
                    (layer.started, 0),
                    "every span recorded: {layer:?}"
                );
                assert_eq!(
                    stats.accepted, layer.recorded,
                    "the pipeline accepted every span the layer recorded: {stats:?} {layer:?}"
                );
                let delivered = sink.spans.load(Ordering::Relaxed);
                assert_eq!(delivered, stats.exported, "{stats:?}");
                Finished {
                    delivered,
                    bytes: sink.bytes.load(Ordering::Relaxed),
                    stats: Some(stats),
                }
            }
            End::Sdk { provider, got } => {
                // A shutdown that gives up leaves spans undelivered: the
                // baseline's own behaviour, counted as such.
                let _ = provider.shutdown();
                let delivered = got.load(Ordering::Relaxed);
                // A baseline that delivered nothing is broken, not slow (a
                // ratio against it would pass any threshold).
                assert!(
                    delivered > 0,
                    "the SDK delivered no span: not a measurement"
                );
                Finished {
                    delivered,
                    bytes: 0,
                    stats: None,
                }
            }
        }
    }
}

/// An SDK tracer provider as [`crate::exporter::otel_provider`] sets it up
/// (queue `max_queue_size`, batch 512 or the queue, delay 100 ms), sampling
/// every span (`AlwaysOn`, as our layer here).
pub fn sdk_provider(
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    max_queue_size: usize,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    crate::exporter::otel_provider_builder(exporter, max_queue_size)
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .build()
}

/// Runs one configuration: `threads` threads, each with the stack as its
/// default subscriber, make `per_thread` spans ([`span`]) as fast as they
/// can; the pipeline is then shut down and drained. Delivered spans/s is
/// delivered spans over the time from the first thread's start to the end
/// of the drain (0 for the registry, which delivers nothing; its offered
/// rate is the floor).
///
/// # Panics
///
/// As [`Stack::finish`]: if our accounting does not balance.
pub fn run(
    candidate: LayerCandidate,
    threads: usize,
    per_thread: u64,
    total_queue: usize,
) -> PipelineResult {
    let stack = Stack::new(candidate, threads, total_queue);
    let dispatch = &stack.dispatch;
    // Each thread makes the stack its default (a few nanoseconds, inside
    // the timed region) and records its spans.
    let crate::exporter::Driven { slowest, t0, .. } = crate::exporter::drive(threads, |t| {
        tracing::dispatcher::with_default(dispatch, || {
            for i in 0..per_thread {
                span(t, i);
            }
        });
        per_thread
    });
    let finished = stack.finish();
    let wall = t0.elapsed().as_secs_f64();
    let offered = per_thread * threads as u64;
    if let Some(stats) = finished.stats {
        assert_eq!(
            stats.accepted, offered,
            "every span made reached the pipeline"
        );
    }
    PipelineResult {
        offered_per_s: offered as f64 / slowest.as_secs_f64().max(1e-9),
        delivered_per_s: finished.delivered as f64 / wall.max(1e-9),
        delivered: finished.delivered,
        offered,
        bytes: finished.bytes,
        stats: finished.stats,
    }
}

/// Ours against tracing-opentelemetry at one thread count and total queue,
/// in `rounds` interleaved rounds.
#[derive(Clone, Copy, Debug)]
pub struct LayerComparison {
    /// Our run with the median delivered rate.
    pub ours: PipelineResult,
    /// tracing-opentelemetry's run with the median delivered rate.
    pub theirs: PipelineResult,
    /// Median over rounds of ours / theirs delivered spans/s, within a
    /// round.
    pub ratio: f64,
    /// The lowest of the per-round ratios.
    pub min_ratio: f64,
}

/// Runs both layers `rounds` times, in turn (a slow spell of a shared
/// machine then hits both alike), each with `total_queue` spans of queue in
/// all, and takes medians.
pub fn compare(
    threads: usize,
    per_thread: u64,
    total_queue: usize,
    rounds: usize,
) -> LayerComparison {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..rounds.max(1) {
        ours.push(run(LayerCandidate::Ours, threads, per_thread, total_queue));
        theirs.push(run(
            LayerCandidate::TracingOtel,
            threads,
            per_thread,
            total_queue,
        ));
    }
    let mut ratios: Vec<f64> = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| a.delivered_per_s / b.delivered_per_s)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let mid = |mut rs: Vec<PipelineResult>| {
        rs.sort_by(|a, b| a.delivered_per_s.total_cmp(&b.delivered_per_s));
        rs[rs.len() / 2]
    };
    LayerComparison {
        ours: mid(ours),
        theirs: mid(theirs),
        ratio: ratios[ratios.len() / 2],
        min_ratio: ratios[0],
    }
}
