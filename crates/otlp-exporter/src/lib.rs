//! A span export pipeline that does not fall over under load.
//!
//! Spans are recorded from any number of threads into per-thread lanes of a
//! lock-free queue whose slots come from one shared pool of
//! `max_queue_size` ([`otlp_queue::pooled`]: the setting is the total, as
//! the OpenTelemetry spec says): `record` takes no lock and never blocks
//! under the default policy, and a span that fits its 512-byte slot costs
//! no system call and no locked (atomic read-modify-write) instruction
//! (on Linux, where `membarrier` lets the handshake with shutdown be a
//! compiler fence; elsewhere it is one fence per record).
//! The exceptions come once per many spans: a thread's first record sets
//! up its lane (allocations, a short lock); claiming a chunk of 16 slots
//! from the shared pool is one compare-and-swap; and the record that
//! claims a chunk leaving a batch's worth of spans in the pool, or finds
//! the queue full, while the worker naps, wakes it: one swap and one futex
//! wake (`Thread::unpark`), at most one per nap, none while the worker is
//! awake (a plain load then). A span larger than a slot is boxed and
//! charged to a byte budget (an allocation and a compare-and-swap). One worker thread
//! batches them, and hands OTLP requests (protobuf or JSON, encoded on the
//! recording threads) to a [`Transport`]: [`HttpTransport`] for any
//! OpenTelemetry collector (OTLP/HTTP, with the spec's retries), a
//! [`FileTransport`] of OTLP JSON lines, or [`InMemory`] for tests. Every
//! span that is not delivered is counted under a reason, so that at any
//! moment, and after shutdown, [`Pipeline::stats`] says where every span
//! went.
//!
//! ```
//! use otlp_exporter::{InMemory, Pipeline, Shedding, Status};
//! use std::time::Duration;
//!
//! let memory = InMemory::new(); // a test double; use a real transport in production
//! let pipeline = Pipeline::builder()
//!     .transport(memory.clone())
//!     .shedding(Shedding::DropOldest)
//!     .build()
//!     .expect("valid settings");
//! let tracer = pipeline.tracer("checkout", env!("CARGO_PKG_VERSION"));
//!
//! std::thread::scope(|s| {
//!     for worker in 0..4 {
//!         let tracer = &tracer;
//!         s.spawn(move || {
//!             for i in 0..100 {
//!                 let mut span = tracer.start("charge card");
//!                 span.set_attribute("worker", worker).set_attribute("attempt", i);
//!                 span.set_status(Status::ok());
//!                 span.end();
//!             }
//!         });
//!     }
//! });
//!
//! let report = pipeline.shutdown(Duration::from_secs(5));
//! assert!(report.completed);
//! let stats = report.stats;
//! assert!(stats.is_balanced()); // accepted = exported + queued + in flight + dropped
//! assert_eq!(stats.accepted, 400);
//! assert_eq!(stats.exported + stats.dropped.total(), 400);
//! ```
//!
//! # Promises, and the tests that check them
//!
//! * **Every span is accounted for**: exported, queued, in flight, or
//!   dropped under exactly one reason ([`Dropped`]), at every quiet snapshot
//!   and after shutdown (`tests/pipeline.rs`, under overload from 8 threads
//!   for every shedding policy, with slow, failing and hanging transports).
//! * **Flush and shutdown never run past their deadlines**, even when the
//!   transport hangs; what is still pending at shutdown's deadline is
//!   counted as timed out (`tests/pipeline.rs`).
//! * **The encoding is OTLP**: protobuf byte-identical to `prost`'s
//!   encoding of the `opentelemetry-proto` message, JSON that decodes to the
//!   same message (`tests/encode.rs`).
//! * **OTLP/HTTP as collectors expect it**: retries only on 429, 502, 503,
//!   504 and connection failures, with backoff, jitter and `Retry-After`
//!   (never sooner than the backoff, so a `Retry-After: 0` is no retry
//!   storm), never past the export's deadline (counted from when the
//!   export starts, not from when its batch was made), a failing batch
//!   given up after [`PipelineBuilder::retry_max_elapsed`]; partial
//!   success counted, even at the start of an answer too long to read
//!   whole; a large request refused from its headers (a `413` answered
//!   before the body is read) or part-way through its body (a `413`, then
//!   a reset) failed at once, not re-sent; headers the
//!   transport writes itself refused; header values and an endpoint's
//!   password never logged (`tests/http.rs`, `tests/outage.rs`, against
//!   fault-injecting servers;
//!   `tests/rotel.rs`, against the rotel collector, run by `cargo xtask
//!   test`).
//! * **Bad input has a defined outcome** (`tests/bad_input.rs`): empty
//!   names are exported as they are; attribute counts and value lengths are
//!   cut to the limits and counted; non-finite floats are encoded as OTLP
//!   says; an empty batch sends nothing; a span recorded after shutdown is
//!   counted as `after_shutdown`; a span whose trace or span id is all
//!   zeroes (invalid in OTLP) is refused and counted as
//!   [`Dropped::invalid_ids`]. None of them panics.
//! * **User code cannot take the pipeline down** (`tests/hostile_pipeline.rs`,
//!   each case in its own process under a watchdog): every call into the
//!   transport (`export`, `shutdown`, `encoding`, `attempts`, its `Drop`)
//!   runs under `catch_unwind`; a panicking export counts as a failed
//!   export with its message ([`ExportStats::transport_panics`],
//!   [`Pipeline::last_error`]) and the worker and every export thread keep
//!   working; a panic in `Transport::shutdown` does not stop shutdown from
//!   completing. A transport may record into, flush, shut down or drop its
//!   own pipeline: records go to later batches and never make a batch due
//!   by themselves (never a loop, at any `scheduled_delay`; never a wait
//!   for the worker, even under [`Shedding::Block`]), and flush and
//!   shutdown called there return at once instead of waiting for
//!   themselves.
//! * **A flush covers what was queued when it began**, so it completes
//!   under sustained load (`force_flush_completes_under_sustained_load`).
//! * **Settings are checked or saturated at the boundary**: sizes out of
//!   range ([`MAX_QUEUE_SIZE`], [`MAX_CONCURRENT_EXPORTS`], from the builder
//!   or `OTEL_BSP_*`) are a [`ConfigError`] naming the range; durations
//!   saturate at [`MAX_DURATION`]; counters saturate
//!   (`sizes_out_of_range_are_errors_that_name_the_range`,
//!   `durations_at_their_maximum_work`, `dropped_counts_near_u32_max_saturate`).
//! * **Memory is bounded by the queue size plus a chunk per recording
//!   thread**: the queue is one pool of `max_queue_size` 512-byte slots
//!   plus a 16-slot chunk (8 KiB) per recording thread; 256 threads
//!   recording while the export is blocked hold the pool plus about 10
//!   KiB each (`memory_is_bounded_by_the_total_not_by_the_thread_count`).
//!   Spans whose encoding is larger than a slot (488 bytes) travel boxed,
//!   and the boxes share a byte budget of the pool's size (`max_queue_size
//!   x 512` bytes, 1 MiB at the default): a span that would overspend it
//!   is counted as `queue_full` (under `Block`, after waiting for it), so
//!   the queue holds at most twice the pool plus 16 KiB per recording
//!   thread whatever the spans' sizes, and a span larger than the whole
//!   budget is never queued (raise `max_queue_size`, or set
//!   [`SpanLimits::attribute_value_length`], for spans that large)
//!   (`spans_larger_than_a_slot_are_bounded_in_bytes_not_only_in_number`).
//!   A thread that exits leaves its spans to the worker and its lane is
//!   freed once they are taken. While the worker takes nothing from the
//!   queue for a while (failed batches held for a retry, a collector that
//!   is down; or an export that hangs, the worker inside the transport or
//!   waiting for a free export thread), what exited threads left is moved
//!   into the pipeline's adopted spans and their lanes are freed: by the
//!   worker during an outage, by each exiting thread itself once the
//!   worker has been inside an export for 100 ms, or at once past 64 thread
//!   exits during one export (during a healthy export with fewer exits
//!   those lanes wait for the worker; either way adopted spans keep their
//!   pool slots and are delivered,
//!   `threads_that_exit_during_a_healthy_export_lose_no_span`)
//!   (`threads_that_come_and_go_during_an_outage_do_not_keep_their_lanes`,
//!   `threads_that_come_and_go_during_a_hung_export_do_not_keep_their_lanes`:
//!   2 000 threads of one span each hold under 2 MiB, 11 MiB before).
//!   Adopted spans keep holding their slots of the pool until the worker
//!   takes them (`otlp_queue::pooled::Consumer::adopt_exited_each`), so
//!   the queue stays full for new records, which are refused at record
//!   time (`queue_full`; `Block` waits), not admitted past
//!   `max_queue_size` (`block_with_threads_that_come_and_go_orphans_nothing`).
//!   Only spans exited threads held in their own chunks while the pool
//!   was all taken go beyond it: at most [`HANDED_OVER_LANES`] times
//!   `max_queue_size` of those, the oldest beyond counted as
//!   [`Dropped::orphaned`]; adopted spans count toward the priority
//!   policy's high-water mark. With [`Shedding::DropOldest`], whose lanes are
//!   per thread, an exiting thread hands its spans over and at most
//!   [`HANDED_OVER_LANES`] lanes' worth are kept, the rest
//!   [`Dropped::orphaned`]. The scope table is a hash index (of the whole
//!   scope, attributes included, floats by their bits) of at most
//!   [`MAX_SCOPES`] entries (`tests/hostile_pipeline.rs`,
//!   `exited_threads_during_an_outage_keep_a_bounded_backlog`,
//!   `twenty_thousand_tracers_each_keep_their_scope`).
//! * **Spans are owned** (`tests/span_owned.rs`): a [`Tracer`] is
//!   `Clone + Send + Sync + 'static`; a [`Span`] may end on another thread,
//!   after its tracer is dropped, or after shutdown (counted as
//!   `after_shutdown`), and starting or ending one changes no reference
//!   count shared between threads (see [`Tracer`]'s per-thread handles).
//!   Dropping every pipeline, tracer and span handle still shuts the
//!   pipeline down.
//! * **W3C Trace Context** (`tests/traceparent.rs`, with property tests):
//!   [`SpanContext::from_traceparent`] accepts what the spec accepts
//!   (later versions by its forward-compatibility rules) and gives a
//!   [`TraceparentError`] for everything else, never a panic;
//!   [`TraceState`] follows the list rules and the 32-member limit.
//! * **Ids unique, not secret** (`tests/spec_model.rs`,
//!   `forked_children_and_their_parent_draw_different_ids`): trace and
//!   span ids come from a per-thread SplitMix64 generator, never all zero;
//!   threads and processes draw different sequences (a child made by
//!   `fork` reseeds on Unix). One id seen (an outgoing `traceparent`)
//!   tells the ids its thread draws next: do not rely on them being
//!   unguessable.
//! * **Sampling as the OpenTelemetry spec defines it**
//!   (`tests/sampling.rs`): [`Sampler`]'s `TraceIdRatioBased` decides as the
//!   other SDKs do (the trace id's lower 8 bytes), `ParentBased` has the
//!   spec's default delegates, and an unsampled span stores nothing, reads
//!   no clock, is neither encoded nor queued, and is counted as
//!   [`Dropped::not_sampled`].
//!
//! # Continuing a trace, and sampling
//!
//! ```
//! use otlp_exporter::{InMemory, Pipeline, Sampler, SpanContext, SpanKind};
//! use std::time::Duration;
//!
//! let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
//! // Keep 10 % of new traces; follow the caller's decision for the rest.
//! let tracer = pipeline
//!     .tracer("frontend", "1.0")
//!     .with_sampler(Sampler::parent_based(Sampler::TraceIdRatioBased(0.1)));
//!
//! // An incoming request's headers (a malformed traceparent is an error:
//! // start a new trace then).
//! let parent = SpanContext::from_w3c_headers(
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
//!     Some("vendor=opaque"),
//! );
//! let span = match &parent {
//!     Ok(parent) => tracer.build("GET /cart").kind(SpanKind::Server).parent(parent).start(),
//!     Err(_) => tracer.build("GET /cart").kind(SpanKind::Server).start(),
//! };
//! // The caller sampled the trace, so this span is sampled too.
//! assert!(span.is_recording());
//!
//! // An outgoing request carries the trace on.
//! let traceparent = span.context().to_traceparent();
//! let tracestate = span.context().trace_state.clone();
//! assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! assert_eq!(tracestate, "vendor=opaque");
//!
//! // A span is owned: it may end on another thread.
//! std::thread::spawn(move || span.end()).join().unwrap();
//! pipeline.shutdown(Duration::from_secs(5));
//! ```
//!
//! # Configuration
//!
//! Builder settings win over the environment, which wins over the
//! OpenTelemetry SDK spec's defaults: `OTEL_BSP_MAX_QUEUE_SIZE` (2048, the
//! total across recording threads), `OTEL_BSP_SCHEDULE_DELAY` (5000 ms),
//! `OTEL_BSP_EXPORT_TIMEOUT` (30000 ms), `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`
//! (512); the resource from `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES`, merged over the SDK's own attributes
//! (`telemetry.sdk.*`, and `service.name` `unknown_service:` plus the
//! executable's file name when none is set: [`Resource::with_sdk_defaults`],
//! also applied to a resource given to the builder, which, if it has no
//! `service.name`, takes the environment's from `OTEL_SERVICE_NAME` or
//! `OTEL_RESOURCE_ATTRIBUTES` first, and only that attribute:
//! [`PipelineBuilder::resource`]); span limits from `OTEL_SPAN_*_LIMIT`,
//! `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT` and `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`,
//! the attribute limits falling back to the general
//! `OTEL_ATTRIBUTE_COUNT_LIMIT` / `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`
//! ([`SpanLimits::from_env`]); the
//! collector from `OTEL_EXPORTER_OTLP_ENDPOINT`, `..._TRACES_ENDPOINT`,
//! `..._HEADERS` (a name repeated within one variable is sent once, with
//! its last value, as the official SDKs read it), `..._TIMEOUT`, `..._COMPRESSION`, `..._PROTOCOL`, and
//! for `https` `..._CERTIFICATE`, `..._CLIENT_CERTIFICATE` and
//! `..._CLIENT_KEY` (PEM files, each also in its `..._TRACES_...` form,
//! read with the file-system access given to the pipeline, and checked
//! when the transport is built whatever the scheme; see
//! [`HttpTransport`][http-tls]), through the proxy that
//! `HTTP_PROXY` (for an `http` endpoint), `HTTPS_PROXY` (for `https`) or
//! `ALL_PROXY` names, never for a loopback collector nor one `NO_PROXY`
//! names (see [`HttpTransport`][http-proxies]) (a
//! pipeline with no transport and no file set that is given network
//! access with [`PipelineBuilder::network`] sends to it, or to the spec's
//! default `http://localhost:4318` when no endpoint is set; given only
//! file-system access with [`PipelineBuilder::filesystem`] it writes
//! `otlp-traces.jsonl`; without the access it needs, `build` fails with
//! [`ConfigError::NoNetworkAccess`] or [`ConfigError::NoFileAccess`], and
//! without the `http` feature a pipeline that would send to a collector
//! fails with [`ConfigError::NoHttpFeature`]);
//! each tracer's sampler from
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` ([`Sampler::from_env`]:
//! a bad value is warned about and ignored, as the spec says;
//! [`Tracer::with_sampler`] wins over it). `OTEL_SDK_DISABLED=true` (any
//! case) makes the pipeline a no-op whatever else is set: no span is
//! recording and nothing is exported (see [`PipelineBuilder::build`]; a
//! value other than `true` or `false` is warned about and taken as
//! `false`).
//!
//! # Features
//!
//! * `http` (default): [`HttpTransport`] (ureq, rustls with the *ring*
//!   provider, flate2). Without it the crate has no network code at all.
#![doc = ""]
#![cfg_attr(feature = "http", doc = "[`HttpTransport`]: HttpTransport")]
#![cfg_attr(feature = "http", doc = "[http-tls]: HttpTransport#tls")]
#![cfg_attr(feature = "http", doc = "[http-proxies]: HttpTransport#proxies")]
#![cfg_attr(not(feature = "http"), doc = "[`HttpTransport`]: #features")]
#![cfg_attr(not(feature = "http"), doc = "[http-tls]: #features")]
#![cfg_attr(not(feature = "http"), doc = "[http-proxies]: #features")]

pub mod clock;
mod config;
mod encode;
#[cfg(feature = "http")]
mod http;
mod id;
mod model;
mod outstanding;
mod pipeline;
mod propagation;
mod sampling;
mod span;
mod stats;
mod transport;

pub use clock::now_unix_nanos;
pub use config::ConfigError;
pub use encode::{Encoded, EncodedRequest, Encoder, Encoding, MAX_REQUEST_BYTES};
#[cfg(feature = "http")]
pub use http::{
    Compression, DEFAULT_ENDPOINT, DEFAULT_TIMEOUT, HttpTransport, HttpTransportBuilder,
    MAX_RETRY_AFTER, RetryPolicy,
};
pub use model::{
    Event, InstrumentationScope, KeyValue, Link, Priority, Resource, ScopeId, SharedAttributes,
    SpanContext, SpanData, SpanId, SpanKind, SpanLimits, Status, StatusCode, Str, TraceFlags,
    TraceId, Value, push_attribute, truncate_chars,
};
pub use pipeline::{
    DEFAULT_DROP_TIMEOUT, DEFAULT_EXPORT_TIMEOUT, DEFAULT_FILE, DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE, DEFAULT_RETRY_MAX_ELAPSED, DEFAULT_SCHEDULED_DELAY, DropReason,
    HANDED_OVER_LANES, MAX_CONCURRENT_EXPORTS, MAX_DURATION, MAX_QUEUE_SIZE, MAX_SCOPES, Pipeline,
    PipelineBuilder, Recorded, Shedding, THREAD_CHUNK_SLOTS,
};
pub use propagation::{TraceState, TraceStateError, TraceparentError};
/// The capabilities (from `runtime-cap`): [`HttpTransport::builder`] and
/// [`PipelineBuilder::network`] take network access,
/// [`FileTransport::open`] and [`PipelineBuilder::filesystem`] file-system
/// access; both are made from [`ambient_authority`] outside the runtime.
#[doc = ""]
#[cfg_attr(
    feature = "http",
    doc = "[`HttpTransport::builder`]: HttpTransport::builder"
)]
#[cfg_attr(
    not(feature = "http"),
    doc = "[`HttpTransport::builder`]: crate#features"
)]
pub use runtime_cap::{AmbientAuthority, FsAccess, NetAccess, ambient_authority};
pub use sampling::{Sampler, SamplingDecision};
pub use span::{Span, SpanBuilder, Tracer};
pub use stats::{Dropped, ExportStats, FlushReport, ShutdownReport};
pub use transport::{
    AttemptStats, Behavior, ExportResult, FileTransport, InMemory, TraceExporter, Transport,
};

/// A batch of spans handed over in one call (the seed's vocabulary); see
/// [`Pipeline::record_batch`].
pub type SpanBatch = Vec<SpanData>;
