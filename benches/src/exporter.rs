//! Span pipelines end to end: N threads make spans with two attributes and
//! end them as fast as they can; the pipeline batches them and hands them
//! to an exporter that only counts. Ours encodes real OTLP protobuf on the
//! way; the baseline, the OpenTelemetry SDK's `BatchSpanProcessor`, hands
//! its exporter `SpanData`, which the plain baseline ([`CountingExporter`])
//! only counts and the like-for-like one ([`ProstExporter`]) encodes to an
//! OTLP protobuf request with `opentelemetry-proto` and `prost`, as an OTLP
//! exporter would. The method is the anchor bench's, so the figures compare
//! with it.
//!
//! Both sides get the same **total** queue: every entry point here takes
//! the total and gives ours [`ours_queue_setting`] of it.
//!
//! And the same work: a [`Workload`], either a number of spans per thread
//! (the anchor bench's method) or a time that every thread spends making
//! spans. The second is what a delivered-spans/s figure needs when a side
//! overflows its queue: dropping a span costs ours about 30 ns, so 60 000
//! spans per thread at 2048 spans of queue are over in 2 ms, shorter than
//! one scheduler slice, and what the exporter delivered in that time says
//! when the kernel first gave its thread a core (0.3 to 6 M spans/s from
//! one run to the next on the 2-core VM), not how fast it drains.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use otlp_exporter::{EncodedRequest, ExportResult, Pipeline, Resource, Transport};

/// Our `max_queue_size` setting that holds `total` spans in all, with
/// `threads` recording threads: the one place the harness turns a total
/// queue into our setting, so that every comparison gives both sides the
/// same total.
///
/// otlp-exporter's `max_queue_size` is the total across recording threads
/// (as `OTEL_BSP_MAX_QUEUE_SIZE` is in the OpenTelemetry spec; issue 13),
/// and each recording thread also holds a chunk of its own
/// ([`otlp_exporter::THREAD_CHUNK_SLOTS`] spans): the queue holds at most
/// `max_queue_size + THREAD_CHUNK_SLOTS x threads`. So the setting is the
/// total less the threads' chunks (at least one chunk's worth: below
/// that, ours holds more than `total`). (Before issue 13 the setting
/// bounded each thread's lane, and this returned `total / threads`; until
/// 2026-12-01 it returned `total`, giving ours 16 more spans a thread.)
///
/// ```
/// use benches::exporter::ours_queue_setting;
/// assert_eq!(ours_queue_setting(2048, 4), 2048 - 4 * otlp_exporter::THREAD_CHUNK_SLOTS);
/// ```
pub fn ours_queue_setting(total: usize, threads: usize) -> usize {
    let chunks = otlp_exporter::THREAD_CHUNK_SLOTS * threads;
    total
        .saturating_sub(chunks)
        .max(otlp_exporter::THREAD_CHUNK_SLOTS)
}

/// What each recording thread does, the same for every side compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Makes this many spans (the anchor bench's method).
    Spans(u64),
    /// Makes spans for this long (the clock is read every
    /// [`Workload::CLOCK_EVERY`] spans, the same loop on both sides): a
    /// sustained load, whose delivered rate does not hang on one scheduler
    /// slice.
    For(Duration),
}

impl Workload {
    /// Spans made between two clock reads in [`Workload::For`].
    pub const CLOCK_EVERY: u64 = 64;

    /// Runs `span(i)` for `i` = 0, 1, ... as the workload says; returns
    /// how many spans it made.
    ///
    /// ```
    /// use benches::exporter::Workload;
    /// use std::time::Duration;
    /// let mut n = 0;
    /// assert_eq!(Workload::Spans(10).each(|_| n += 1), 10);
    /// assert_eq!(n, 10);
    /// let made = Workload::For(Duration::from_millis(1)).each(|_| {});
    /// assert_eq!(made % Workload::CLOCK_EVERY, 0);
    /// ```
    #[inline]
    pub fn each(self, mut span: impl FnMut(u64)) -> u64 {
        match self {
            Workload::Spans(n) => {
                for i in 0..n {
                    span(i);
                }
                n
            }
            Workload::For(d) => {
                let t0 = Instant::now();
                let mut i = 0;
                loop {
                    for _ in 0..Self::CLOCK_EVERY {
                        span(i);
                        i += 1;
                    }
                    if t0.elapsed() >= d {
                        return i;
                    }
                }
            }
        }
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workload::Spans(n) => write!(f, "{n} spans per thread"),
            Workload::For(d) => write!(f, "spans for {} ms per thread", d.as_millis()),
        }
    }
}

/// The pipelines compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineCandidate {
    /// `otlp-exporter`, holding the total queue across its recording
    /// threads ([`ours_queue_setting`]).
    Ours,
    /// OpenTelemetry SDK `BatchSpanProcessor` with one queue of the total
    /// size, its exporter only counting `SpanData` (no encoding).
    OtelBsp,
    /// The same, its exporter encoding each batch to an OTLP protobuf
    /// request (`opentelemetry-proto` + `prost`) as an OTLP exporter does:
    /// the same work as ours.
    OtelBspProst,
}

impl PipelineCandidate {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            PipelineCandidate::Ours => "otlp-exporter",
            PipelineCandidate::OtelBsp => "otel-sdk BatchSpanProcessor",
            PipelineCandidate::OtelBspProst => "otel-sdk BatchSpanProcessor + prost encoding",
        }
    }
}

/// The figures of one run.
#[derive(Clone, Copy, Debug)]
pub struct PipelineResult {
    /// Spans made per second by all threads together (spans divided by the
    /// slowest thread's time).
    pub offered_per_s: f64,
    /// Spans the exporter received per second, from the start until the
    /// pipeline was shut down and drained.
    pub delivered_per_s: f64,
    /// Spans the exporter received.
    pub delivered: u64,
    /// Spans made.
    pub offered: u64,
    /// Encoded bytes the exporter received (0 for the plain baseline, which
    /// does not encode).
    pub bytes: u64,
    /// Our pipeline's final accounting (drops by reason); `None` for the
    /// baseline, which keeps none.
    pub stats: Option<otlp_exporter::ExportStats>,
}

impl PipelineResult {
    /// Spans not delivered.
    pub fn dropped(&self) -> u64 {
        self.offered - self.delivered
    }
}

/// Counts what it receives and throws it away (our transport side).
#[derive(Clone, Default)]
pub struct Counting {
    /// Spans received.
    pub spans: Arc<AtomicU64>,
    /// Encoded bytes received.
    pub bytes: Arc<AtomicU64>,
}

impl Transport for Counting {
    fn export(&self, request: &EncodedRequest, _deadline: Instant) -> ExportResult {
        self.spans
            .fetch_add(request.spans as u64, Ordering::Relaxed);
        self.bytes
            .fetch_add(request.body.len() as u64, Ordering::Relaxed);
        ExportResult::Success
    }
}

/// Counts the spans it receives (the OpenTelemetry SDK's side).
#[derive(Debug, Default)]
pub struct CountingExporter(pub Arc<AtomicU64>);

impl opentelemetry_sdk::trace::SpanExporter for CountingExporter {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Counts the spans it receives and encodes each batch to an OTLP
/// `ExportTraceServiceRequest` in protobuf, the way an OTLP exporter does
/// (`opentelemetry-proto`'s grouping by resource and scope, then `prost`),
/// then drops the bytes: the SDK side doing the same work as ours.
#[derive(Debug)]
pub struct ProstExporter {
    /// Spans received.
    pub spans: Arc<AtomicU64>,
    /// Encoded bytes produced.
    pub bytes: Arc<AtomicU64>,
    resource: opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema,
}

impl ProstExporter {
    /// An exporter that counts into `spans` and `bytes`.
    pub fn new(spans: Arc<AtomicU64>, bytes: Arc<AtomicU64>) -> Self {
        let resource = opentelemetry_sdk::Resource::builder_empty().build();
        ProstExporter {
            spans,
            bytes,
            resource: (&resource).into(),
        }
    }
}

impl opentelemetry_sdk::trace::SpanExporter for ProstExporter {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        use prost::Message as _;
        let n = batch.len() as u64;
        let resource_spans =
            opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope(
                batch,
                &self.resource,
            );
        let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
            resource_spans,
        };
        let body = request.encode_to_vec();
        self.spans.fetch_add(n, Ordering::Relaxed);
        self.bytes
            .fetch_add(std::hint::black_box(body).len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = resource.into();
    }
}

/// The pipelines at one thread count and total queue size, in `rounds`
/// interleaved rounds.
pub struct Comparison {
    /// Our run with the median delivered rate.
    pub ours: PipelineResult,
    /// The SDK's run (exporter only counting) with the median delivered rate.
    pub sdk: PipelineResult,
    /// Median over rounds of ours / the SDK's delivered spans/s.
    pub ratio: f64,
    /// The SDK encoding with prost ([`ProstExporter`]), when asked for.
    pub sdk_prost: Option<PipelineResult>,
    /// Median over rounds of ours / the prost-encoding SDK's delivered spans/s.
    pub ratio_prost: Option<f64>,
}

/// Runs the pipelines `rounds` times, in turn, each with `total_queue`
/// spans of queue in all, and takes medians. `with_prost`: the
/// prost-encoding SDK runs too.
pub fn compare(
    threads: usize,
    work: Workload,
    total_queue: usize,
    rounds: usize,
    with_prost: bool,
) -> Comparison {
    let mut ours = Vec::new();
    let mut sdk = Vec::new();
    let mut prost = Vec::new();
    for _ in 0..rounds.max(1) {
        ours.push(run(PipelineCandidate::Ours, threads, work, total_queue));
        sdk.push(run(PipelineCandidate::OtelBsp, threads, work, total_queue));
        if with_prost {
            prost.push(run(
                PipelineCandidate::OtelBspProst,
                threads,
                work,
                total_queue,
            ));
        }
    }
    let ratio = |base: &[PipelineResult]| {
        let mut ratios: Vec<f64> = ours
            .iter()
            .zip(base)
            .map(|(a, b)| a.delivered_per_s / b.delivered_per_s)
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    let (r, r_prost) = (ratio(&sdk), with_prost.then(|| ratio(&prost)));
    let mid = |mut rs: Vec<PipelineResult>| {
        rs.sort_by(|a, b| a.delivered_per_s.total_cmp(&b.delivered_per_s));
        rs[rs.len() / 2]
    };
    Comparison {
        ours: mid(ours),
        sdk: mid(sdk),
        ratio: r,
        sdk_prost: with_prost.then(|| mid(prost)),
        ratio_prost: r_prost,
    }
}

/// An OpenTelemetry SDK tracer provider with a `BatchSpanProcessor` set up
/// as in every comparison here: `max_queue_size`, batch 512 (or the queue
/// size if smaller), scheduled delay 100 ms.
pub fn otel_provider(
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    max_queue_size: usize,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    otel_provider_builder(exporter, max_queue_size).build()
}

/// The builder of [`otel_provider`], for a comparison that sets more (a
/// sampler).
pub fn otel_provider_builder(
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    max_queue_size: usize,
) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    let bsp = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_max_queue_size(max_queue_size)
                .with_max_export_batch_size(512.min(max_queue_size))
                .with_scheduled_delay(Duration::from_millis(100))
                .build(),
        )
        .build();
    opentelemetry_sdk::trace::SdkTracerProvider::builder().with_span_processor(bsp)
}

/// Runs one configuration, with `total_queue` spans of queue in all (ours:
/// [`ours_queue_setting`] of it).
///
/// # Panics
///
/// If our pipeline's accounting does not balance: a measurement of a
/// pipeline that loses spans unaccounted is worthless.
pub fn run(
    candidate: PipelineCandidate,
    threads: usize,
    work: Workload,
    total_queue: usize,
) -> PipelineResult {
    match candidate {
        PipelineCandidate::Ours => {
            run_ours(threads, work, ours_queue_setting(total_queue, threads))
        }
        PipelineCandidate::OtelBsp => run_otel(threads, work, total_queue, false),
        PipelineCandidate::OtelBspProst => run_otel(threads, work, total_queue, true),
    }
}

/// What [`drive`] measured.
pub(crate) struct Driven {
    /// The slowest thread's time.
    pub(crate) slowest: Duration,
    /// When the first thread started.
    pub(crate) t0: Instant,
    /// Spans made by all threads together.
    pub(crate) made: u64,
}

/// Starts `threads` threads that wait at a barrier, run `body(t)` (which
/// returns how many spans it made) and report how long it took.
pub(crate) fn drive(threads: usize, body: impl Fn(usize) -> u64 + Sync) -> Driven {
    let start = Barrier::new(threads + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (start, body) = (&start, &body);
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    let made = body(t);
                    (t0, t0.elapsed(), made)
                })
            })
            .collect();
        start.wait();
        // The run starts when the first thread starts (this one may be
        // descheduled right after the barrier on a busy machine).
        let mut first: Option<Instant> = None;
        let (mut slowest, mut made) = (Duration::ZERO, 0);
        for h in handles {
            let (t0, took, n) = h.join().expect("producer panicked");
            first = Some(first.map_or(t0, |f| f.min(t0)));
            slowest = slowest.max(took);
            made += n;
        }
        let t0 = first.unwrap_or_else(Instant::now);
        Driven { slowest, t0, made }
    })
}

fn run_ours(threads: usize, work: Workload, max_queue_size: usize) -> PipelineResult {
    let sink = Counting::default();
    let pipeline = Pipeline::builder()
        .transport(sink.clone())
        .resource(Resource::new("bench"))
        .max_queue_size(max_queue_size)
        .max_export_batch_size(512.min(max_queue_size))
        .scheduled_delay(Duration::from_millis(100))
        .build()
        .expect("valid settings");
    let tracer = pipeline.tracer("bench", "0");
    let Driven {
        slowest,
        t0,
        made: offered,
    } = drive(threads, |t| {
        work.each(|i| {
            let mut s = tracer.start("high_frequency_operation");
            s.set_attribute("thread_id", t as i64);
            s.set_attribute("i", i as i64);
            s.end();
        })
    });
    let report = pipeline.shutdown(Duration::from_secs(120));
    let wall = t0.elapsed().as_secs_f64();
    let stats = report.stats;
    assert!(report.completed, "shutdown did not complete");
    assert!(
        stats.is_balanced(),
        "accounting does not balance: {stats:?}"
    );
    assert_eq!(stats.accepted, offered);
    let delivered = sink.spans.load(Ordering::Relaxed);
    assert_eq!(delivered, stats.exported);
    PipelineResult {
        offered_per_s: offered as f64 / slowest.as_secs_f64().max(1e-9),
        delivered_per_s: delivered as f64 / wall.max(1e-9),
        delivered,
        offered,
        bytes: sink.bytes.load(Ordering::Relaxed),
        stats: Some(stats),
    }
}

fn run_otel(threads: usize, work: Workload, max_queue_size: usize, encode: bool) -> PipelineResult {
    use opentelemetry::trace::{Span, Tracer, TracerProvider};
    let got = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let provider = if encode {
        otel_provider(
            ProstExporter::new(got.clone(), bytes.clone()),
            max_queue_size,
        )
    } else {
        otel_provider(CountingExporter(got.clone()), max_queue_size)
    };
    let tracer = provider.tracer("bench");
    let Driven {
        slowest,
        t0,
        made: offered,
    } = drive(threads, |t| {
        work.each(|i| {
            let mut s = tracer.start("high_frequency_operation");
            s.set_attribute(opentelemetry::KeyValue::new("thread_id", t as i64));
            s.set_attribute(opentelemetry::KeyValue::new("i", i as i64));
            s.end();
        })
    });
    // A shutdown that gives up leaves spans undelivered: counted as such
    // (the baseline's own behaviour), not an error of the measurement.
    let _ = provider.shutdown();
    let wall = t0.elapsed().as_secs_f64();
    let delivered = got.load(Ordering::Relaxed);
    // A baseline that delivered nothing is broken, not slow: a ratio
    // against it would be infinite, and pass any threshold.
    assert!(
        delivered > 0,
        "the SDK's pipeline delivered none of {offered} spans: not a measurement"
    );
    PipelineResult {
        offered_per_s: offered as f64 / slowest.as_secs_f64().max(1e-9),
        delivered_per_s: delivered as f64 / wall.max(1e-9),
        delivered,
        offered,
        bytes: bytes.load(Ordering::Relaxed),
        stats: None,
    }
}
