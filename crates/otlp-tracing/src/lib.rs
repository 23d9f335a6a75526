//! A [`tracing_subscriber::Layer`] that records `tracing` spans into an
//! [`otlp_exporter::Pipeline`].
//!
//! Code instrumented with `tracing` (`#[instrument]`, `info_span!`, events)
//! keeps every call site; the subscriber gets one layer:
//!
//! ```
//! use otlp_exporter::{InMemory, Pipeline};
//! use otlp_tracing::OtlpLayer;
//! use std::time::Duration;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let memory = InMemory::new(); // a test double; `Pipeline::builder().network(net).build()` sends to OTEL_EXPORTER_OTLP_ENDPOINT (else localhost:4318)
//! let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
//! let subscriber = tracing_subscriber::registry()
//!     // .with(tracing_subscriber::EnvFilter::from_default_env())
//!     .with(OtlpLayer::new(&pipeline));
//!
//! tracing::subscriber::with_default(subscriber, || {
//!     let request = tracing::info_span!("GET /users", otel.kind = "server", http.response.status_code = tracing::field::Empty);
//!     let _entered = request.enter();
//!     tracing::info_span!("SELECT users", rows = 3_u64).in_scope(|| {
//!         tracing::info!(cached = false, "query done");
//!     });
//!     request.record("http.response.status_code", 200_i64);
//! });
//!
//! // The spans of a global subscriber are recorded until the pipeline
//! // shuts down: shut it down before the process exits.
//! assert!(pipeline.shutdown(Duration::from_secs(5)).completed);
//! assert_eq!(memory.span_count(), 2);
//! ```
//!
//! # From tracing-opentelemetry
//!
//! ```text
//! - let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
//! - let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("app"));
//! + let pipeline = otlp_exporter::Pipeline::builder().network(net).build()?; // net: a NetAccess
//! + let layer = otlp_tracing::OtlpLayer::new(&pipeline).with_scope("app", "");
//!   tracing_subscriber::registry().with(EnvFilter::from_default_env()).with(layer).init();
//! - use tracing_opentelemetry::OpenTelemetrySpanExt; span.set_parent(cx); span.context()
//! + use otlp_tracing::OtlpSpanExt;                   span.set_parent(sc); span.span_context()
//! ```
//!
//! # The mapping
//!
//! * **Span**: name is the `tracing` span's name (`#[instrument]`: the
//!   function's), or the `otel.name` field. Its parent is the span's
//!   explicit parent or the current span; under a per-layer filter that
//!   leaves that parent out, its nearest ancestor that this layer records
//!   (on any thread: a `debug_span!` task span, left out, run on a worker
//!   thread, keeps its `info_span!` children in the caller's trace); a
//!   span without one is a new trace (random ids from a per-thread
//!   generator). (A span that no layer enables does not exist: `parent:
//!   &it` makes an explicit root, in `tracing` itself.) An *event* is
//!   placed as `tracing-subscriber` places it for a filtered layer
//!   (`Context::event_span`), as tracing-opentelemetry's are: under its
//!   explicit parent, or the nearest span on this thread's stack that the
//!   filter lets through; an event whose explicit parent the filter leaves
//!   out, or whose thread's stack holds no span the filter lets through
//!   (inside the left-out task span above), is counted as outside any
//!   span ([`LayerStats::events_outside_spans`]): the layer cannot see a
//!   left-out span's ancestors from an event. It is recorded into the
//!   pipeline when it closes (its last handle is dropped), with start and
//!   end times in nanoseconds since the Unix epoch.
//! * **Fields** become attributes, typed where OTLP has the type: `i64`,
//!   `f64`, `bool`, `&str`; `u64`, `i128` and `u128` as `i64` when they
//!   fit and as their decimal string otherwise; `Debug` (`?x`) and
//!   `Display` (`%x`) values and errors as strings. Fields recorded later
//!   with `Span::record` are added, or replace the value of the same key
//!   (a location key, below, too: `code.namespace = Empty` then recorded
//!   replaces the callsite's value, and takes no new place under the
//!   attribute count limit).
//!   Keys are unique, as OTLP wants them: a field named twice in one
//!   callsite (`info_span!("x", a = 1, a = 2)`) is one attribute with the
//!   last value, in the place of the first, and `Span::record("a", ..)`
//!   replaces that value; a field with an empty name is dropped and counted
//!   in `dropped_attributes_count`. Neither takes a place under the
//!   attribute count limit. The same holds for events' fields.
//!   A `Debug`/`Display` implementation that panics gives the value
//!   [`PANICKED_VALUE`]; the panic does not leave the layer.
//! * **`otel.*` fields** with a string value (`&str`, `%x`, `?x`), as
//!   tracing-opentelemetry reads them (not kept as attributes; one with a
//!   number or a bool value is an attribute like any other field, as
//!   there): `otel.name` renames the span; `otel.kind` (`server`,
//!   `client`, `producer`, `consumer`, `internal`, any case) sets its
//!   kind (default `internal`); `otel.status_code` (`ok`, `error`,
//!   `unset`, any case) sets its status code, and
//!   `otel.status_description` (tracing-opentelemetry 0.34's name; its
//!   older `otel.status_message` too) makes it an error with that
//!   description. The status follows the trace API's `Span::set_status`
//!   (as tracing-opentelemetry's, once its span is built): once `ok`, it is
//!   final (a later code, description or error event changes nothing, and
//!   `ok` carries no description); `unset` changes nothing (an error stays
//!   an error, and a later error event still sets the status); an `error`
//!   replaces an earlier error (an `error` code without a description
//!   keeps the one the span has). These fields are names, not attributes:
//!   the value-length limit does not cut them.
//! * **Events** inside a span become span events, timestamped when
//!   emitted: the name is the `message` (the macro's format string, e.g.
//!   `info!("cart priced")`; a `message` field of any type, `info!(message
//!   = 42)` is named `42`, as tracing-opentelemetry names it), or the
//!   event's `tracing` name
//!   (`event file.rs:42`) when it has none; the attributes are `level`
//!   (`"INFO"`), the fields (as above), and the location (below). An
//!   `error` field given as a `&dyn Error` adds `exception.message`.
//! * **`error` fields**, as tracing-opentelemetry 0.34 maps them: an event
//!   with an `error` field and no message before it (`#[instrument(err)]`'s
//!   event at any `err(level = ..)`, `warn!(error = %e)`, `error = ?e`) is
//!   an *exception*: it is named `exception`, the error's text is its
//!   `exception.message` attribute (instead of `error`; a `&dyn Error`
//!   value keeps both), and it sets the span's status to `Error` with that
//!   text, at any level. With a message (`warn!(error = %e, "retrying")`)
//!   the `error` field is an ordinary attribute and only an `ERROR` event
//!   sets the status. (tracing-opentelemetry renames only `Debug`,
//!   `Display` and string values, and quotes a string's text in the
//!   status; here a `&dyn Error` in an `error` field is an exception too,
//!   and no text is quoted.)
//!   **Events outside any span are dropped** (a span event needs a span;
//!   tracing-opentelemetry drops them too) and counted in
//!   [`LayerStats::events_outside_spans`]: send them to logs with another
//!   layer (`tracing_subscriber::fmt`).
//! * **Errors and status**: an `ERROR`-level event inside a span sets the
//!   span's status to `Error` (as tracing-opentelemetry's default
//!   `error_events_to_status`), with the event's message, or its `error`
//!   field when it has no message, as the status message
//!   (tracing-opentelemetry leaves it empty); an exception event (above),
//!   at any level, sets it with the error's text. An event sets the status
//!   only while it is unset: the first such event wins, and a status set
//!   with `otel.status_code`/`otel.status_description` stays.
//!   `#[instrument(err)]` (at any level) therefore marks the span as failed
//!   with the error. [`OtlpLayer::with_error_events_to_status`] turns this
//!   off (events are still named `exception`). The message and the error's
//!   text are kept whole (the value-length limit cuts attributes only).
//! * **`follows_from`** becomes a link to the other span's context (none
//!   when this layer does not record that span, or it closed meanwhile on
//!   another thread: a link names that span or nothing, as in
//!   tracing-opentelemetry); [`OtlpSpanExt::add_link`] adds one to any
//!   context.
//! * **Location**: the semantic conventions' `code.file.path` and
//!   `code.line.number` (current since semconv 1.30; the older
//!   `code.filepath` and `code.lineno` are deprecated) and the module path
//!   as `code.namespace` (its replacement, `code.function.name`, needs a
//!   function's name, which `tracing` does not give); `target` when it is
//!   not the module path. [`OtlpLayer::with_location`] turns them off.
//!   An event of a `log` record bridged by tracing-log (`LogTracer`,
//!   `format_trace`) has the record's location, as tracing-opentelemetry
//!   gives it: tracing-log's metadata says only `log`, and the record's
//!   target, module, file and line come in its `log.target`,
//!   `log.module_path`, `log.file` and `log.line` fields, which become the
//!   `target` and `code.*` attributes instead of attributes of their own
//!   (an event whose metadata's target is `log` and which has a
//!   `log.target` field is taken for one).
//!   A callsite's set is made and encoded once
//!   ([`SharedAttributes`](otlp_exporter::SharedAttributes), kept for the
//!   rest of the program: one per callsite that made a span) and copied
//!   into each of its spans' encoding, after the span's own attributes.
//! * **Busy and idle time**: `busy_ns` and `idle_ns` attributes, as
//!   tracing-opentelemetry names them ([`OtlpLayer::with_tracked_inactivity`]).
//! * **Limits**: the pipeline's span limits apply while the span is
//!   built: attributes, events and links past their counts are dropped and
//!   counted in the span's `dropped_*_count`; string values of attributes
//!   are cut to the value-length limit as they are formatted. What becomes
//!   a name, a kind or a status (`otel.*` fields, an event's message, an
//!   error's text in a status) is not an attribute and is kept whole.
//!
//! # Context propagation and sampling
//!
//! [`OtlpSpanExt::set_parent`] continues a remote trace (a context from
//! [`SpanContext::from_traceparent`](otlp_exporter::SpanContext::from_traceparent)
//! or `from_w3c_headers`), and [`OtlpSpanExt::span_context`] gives the
//! current span's context to send on (`to_traceparent`, and its
//! `trace_state` as the `tracestate` header).
//!
//! Spans are sampled by the layer's [`Sampler`](otlp_exporter::Sampler)
//! (from `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, default
//! `ParentBased` with an `AlwaysOn` root; [`OtlpLayer::with_sampler`]), as
//! the spec says: a child asks it with its parent's context (by default it
//! follows the parent's sampled flag), and the sampled flag propagates to
//! children and, through `span_context`, to other services. A child the
//! sampler drops keeps no fields, events or links, reads no clock for busy
//! and idle time, and when it closes is handed to the pipeline only to be
//! counted as `not_sampled` (no encoding, no queue; also
//! [`LayerStats::not_sampled`]). The sampler sees a child before its fields
//! are read: its `tracing` name and kind `Internal`.
//!
//! A child the sampler dropped and then given a sampled remote parent with
//! `set_parent` is recorded from then on (its start time, later fields and
//! events); the fields given when it was created are gone.
//!
//! A root span (no parent) is sampled after its fields are read (so the
//! sampler sees `otel.name` and `otel.kind`), and keeps its fields,
//! events and links even when dropped, until its context is first handed
//! out (a child starts, a link, `span_context`): until then a remote parent
//! set with `set_parent` decides anew (with `ParentBased`, a sampled caller
//! samples it, creation fields included). When its context is handed out
//! unsampled, it lets go of what it kept.
//!
//! # A disabled pipeline
//!
//! On a pipeline built with `OTEL_SDK_DISABLED=true`
//! ([`Pipeline::is_disabled`](otlp_exporter::Pipeline::is_disabled)) the
//! layer records nothing, whatever sampler it is given
//! ([`OtlpLayer::with_sampler`] changes nothing there), and behaves as the
//! OpenTelemetry trace API without an SDK: a span reads no field and no
//! clock, and carries its parent's context unchanged: the current span's,
//! or a remote one given with [`OtlpSpanExt::set_parent`]. So
//! [`OtlpSpanExt::span_context`] hands the incoming `traceparent` on as it
//! came (the caller's trace id, span id and sampled flag, and its trace
//! state), and the next service samples as if this one were not there. A
//! span without a parent has no context (the API's invalid one):
//! `span_context` is `None`, and nothing is to be sent on. Spans are
//! counted as `not_sampled` by the layer ([`LayerStats::not_sampled`]) and
//! the pipeline.
//!
//! # Spans never closed, and shutdown
//!
//! A span is recorded when it closes. One that never closes (a handle
//! leaked, or still open when the process ends) is never recorded: the
//! pipeline never sees it, and [`LayerStats::open`] counts it. After the
//! pipeline shut down, spans that close are handed to it and counted there
//! as `after_shutdown` ([`otlp_exporter::Dropped`]); nothing panics.
//!
//! A layer replaced through a `tracing_subscriber::reload` handle lets go
//! of the spans it had open: the new layer is another layer (its own
//! states), so those spans are not recorded when they close, and the old
//! layer's [`LayerStats::open`] keeps counting them; their children, made
//! by the new layer, name them as parent. Swap the layer only when no span
//! is open, or keep one layer and change its filter instead. (And a layer
//! inside a `reload::Layer` is hidden from [`OtlpSpanExt`]: `set_parent`
//! and `span_context` do nothing there.)
//!
//! # One layer per subscriber
//!
//! A subscriber with two `OtlpLayer`s (two pipelines, say) records each
//! span once, through the first layer in the stack (the innermost); the
//! others leave it. Nothing panics and nothing is recorded twice
//! (`two_layers_in_one_subscriber_record_each_span_once`).
//! [`OtlpSpanExt`]'s `set_parent` and `add_link` reach a span through the
//! outermost `OtlpLayer` of the subscriber, whose sampler and link limit
//! they then apply, whichever layer records the span: give layers that
//! share a subscriber the same sampler and limits.
//!
//! # Deep trees
//!
//! The layer keeps nothing per nesting level beyond the span itself, and
//! its callbacks never recurse: 10 000 nested spans are recorded as one
//! chain (`tests/bad_input.rs`). One pattern is deep on its own: when the
//! handles of a chain of nested spans are dropped outermost first, every
//! span stays alive through its child, and closing the innermost closes
//! the whole chain, each parent from inside its child's close, in
//! tracing-subscriber's registry (with any layer: a no-op layer overflows a
//! 2 MiB stack below 2 000 levels in a debug build). Spans closed as
//! scopes end (innermost first) never do this.
//!
//! # Cost
//!
//! A recorded span reads the clock when it starts, ends, and each time a
//! first thread enters it or a last thread leaves it, through the
//! pipeline's clock ([`otlp_exporter::clock`]): where the kernel keeps
//! time with the CPU's time-stamp counter, a read is the counter, scaled by
//! a rate measured once against the monotonic clock; Unix timestamps are
//! derived from those reads and a per-thread anchor to the wall clock
//! renewed every half second (a step of the system clock shows in the
//! timestamps within that time). Busy and idle times are differences of
//! those reads. A dropped child reads no clock; a dropped root does (its
//! start, enters and exits) until its context is handed out (to a child,
//! or through [`OtlpSpanExt::span_context`]), since a remote parent set meanwhile
//! ([`OtlpSpanExt::set_parent`]) may make it sampled, with its times.
//!
//! One registry extension per span holds a boxed state with the span's
//! `SpanData`, built where it lies; the thread that closes the span keeps
//! the box for its next span (no allocation of it, no copy of the state in
//! steady state). Static names and keys are borrowed, not copied. Nothing
//! is shared between spans: the span's own lock (the registry's
//! extensions) is the only one taken in steady state, ids come from a
//! per-thread generator, and the layer's counters are per thread. User
//! formatting code (`Debug`, `Display`) runs before that lock is taken.

mod ext;
mod layer;
mod location;
mod stats;
mod visit;

pub use ext::OtlpSpanExt;
pub use layer::OtlpLayer;
pub use stats::{LayerCounters, LayerStats};
pub use visit::PANICKED_VALUE;
