//! A bridge for users of the `opentelemetry` API: the `otlp-exporter`
//! [`Pipeline`](otlp_exporter::Pipeline) as an OpenTelemetry SDK
//! [`SpanProcessor`](opentelemetry_sdk::trace::SpanProcessor).
//!
//! Keep the `SdkTracerProvider` and every call site; replace the SDK's
//! `BatchSpanProcessor` (`.with_batch_exporter(exporter)`) with
//! [`OtlpSpanProcessor`], and the spans go through the pipeline: lock-free
//! recording lanes, load shedding by policy, and an account of every span
//! that was not delivered ([`Pipeline::stats`](otlp_exporter::Pipeline::stats)),
//! where the SDK's batch processor drops spans without a trace under load.
//!
//! ```
//! use opentelemetry::KeyValue;
//! use opentelemetry::trace::{Span as _, Status, Tracer as _, TracerProvider as _};
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use otlp_exporter::{InMemory, Pipeline, Resource};
//! use otlp_sdk_bridge::OtlpSpanProcessor;
//!
//! let memory = InMemory::new(); // a test double: use HttpTransport for a collector
//! let pipeline = Pipeline::builder()
//!     .transport(memory.clone())
//!     .resource(Resource::new("checkout"))
//!     .build()
//!     .expect("valid settings");
//!
//! let provider = SdkTracerProvider::builder()
//!     .with_span_processor(OtlpSpanProcessor::new(&pipeline)) // the one line
//!     .build();
//!
//! let tracer = provider.tracer("checkout");
//! let mut span = tracer.start("charge card");
//! span.set_attribute(KeyValue::new("amount", 42));
//! span.set_status(Status::error("card declined"));
//! span.end();
//!
//! provider.shutdown().expect("drained in time");
//! let stats = pipeline.stats();
//! assert!(stats.is_balanced()); // accepted = exported + queued + in flight + dropped
//! assert_eq!(stats.exported, 1);
//! assert_eq!(memory.span_count(), 1);
//! ```
//!
//! It lives in its own crate so that no user of the pipeline, or of the
//! `tracing` layer, gets the OpenTelemetry SDK in their dependency tree
//! unless they ask for this bridge. It depends on the SDK's `trace`
//! feature only (not its metrics or logs).
//!
//! # Promises, and the tests that check them
//!
//! * **Every field is carried** (`tests/bridge.rs`,
//!   `every_field_reaches_the_collector`): ids, parent, flags, trace state,
//!   remote parent, kind, name, times, attributes of every value type
//!   (arrays too), events and links with their attributes and dropped
//!   counts, status, the span's dropped counts, and the tracer's
//!   instrumentation scope (name, version, schema URL, attributes), checked
//!   field by field in the decoded OTLP the transport received.
//! * **Every span is accounted for** (`tests/bridge.rs`,
//!   `many_threads_every_span_accounted`, `overload_is_shed_and_counted`):
//!   the pipeline's stats balance, from many threads and under overload.
//! * **Shutdown and flush are idempotent and never panic**
//!   (`tests/hostile.rs`): shutdown twice is `AlreadyShutdown`; a flush
//!   after shutdown is `AlreadyShutdown`; spans that reach the processor
//!   after shutdown are counted as `after_shutdown`; a hung transport makes
//!   shutdown return `Timeout` on time; a panicking transport is contained
//!   (each in its own process under a watchdog).
//! * **Limits are applied and counted** (`tests/hostile.rs`,
//!   `huge_attributes_are_cut_and_counted`): the pipeline's span limits
//!   on top of the SDK's, what they cut added to the dropped counts.
//! * **Bad input has a defined outcome** (`tests/hostile.rs`,
//!   `bad_input_has_a_defined_outcome`, `ten_thousand_nested_spans`):
//!   a span whose trace or span id is all zeroes (invalid in OTLP) is not
//!   exported: it is dropped and counted as `Dropped::invalid_ids`; an
//!   attribute with an empty key (the spec forbids it) is left out and
//!   counted in the span's dropped attributes (saturating); times before
//!   the epoch become 0 and times past what `u64` nanoseconds hold
//!   saturate; empty names and non-finite float values (NaN, infinities)
//!   are exported as given. None panics.
//! * **Scopes stay apart** (`tests/bridge.rs`,
//!   `tracers_keep_their_scopes_past_the_thread_cache`,
//!   `two_pipelines_on_one_thread_keep_their_scope_ids_apart`), and a
//!   scope is one scope whatever its attributes (a NaN one included:
//!   `tests/hostile.rs`, `a_nan_scope_attribute_is_one_scope`).
//!
//! See [`OtlpSpanProcessor`] for what each `SpanProcessor` call maps to,
//! and for the resource (the pipeline's is used).

mod convert;
mod processor;

pub use convert::{to_resource, to_scope, to_span_data, to_value};
pub use processor::{DEFAULT_FLUSH_TIMEOUT, OtlpSpanProcessor, OtlpSpanProcessorBuilder};
