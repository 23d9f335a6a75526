//! [`OtlpSpanProcessor`]: the pipeline behind the SDK's `SpanProcessor`
//! trait.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource as SdkResource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span as SdkSpan, SpanData as SdkSpanData, SpanProcessor};
use otlp_exporter::{Pipeline, Recorded, ScopeId};

use crate::convert::{to_scope, to_span_data};

/// How long [`SpanProcessor::force_flush`] waits for the pipeline unless
/// [`OtlpSpanProcessorBuilder::flush_timeout`] says otherwise (the SDK's
/// `force_flush` takes no timeout).
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How many instrumentation scopes each thread remembers (per thread, for
/// all processors together): the scope of a span is found without a lock
/// when its tracer is among the last this many the thread used.
const SCOPE_CACHE: usize = 16;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The `otlp-exporter` [`Pipeline`] as an OpenTelemetry SDK
/// [`SpanProcessor`]: put it where the SDK's `BatchSpanProcessor` was, and
/// every span the SDK ends is converted (completely: see
/// [`to_span_data`](crate::to_span_data)) and recorded into the pipeline,
/// with its lock-free lanes, its shedding policy and its accounting
/// ([`Pipeline::stats`]).
///
/// ```
/// use opentelemetry::trace::{Tracer as _, TracerProvider as _};
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use otlp_exporter::{InMemory, Pipeline};
/// use otlp_sdk_bridge::OtlpSpanProcessor;
///
/// let memory = InMemory::new(); // use an HttpTransport in production
/// let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
///
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(OtlpSpanProcessor::new(&pipeline)) // was: .with_batch_exporter(exporter)
///     .build();
/// let tracer = provider.tracer("checkout");
/// tracer.in_span("charge card", |_cx| {
///     tracer.in_span("call bank", |_cx| {});
/// });
///
/// provider.shutdown().unwrap(); // shuts the pipeline down, exporting what is queued
/// let stats = pipeline.stats();
/// assert!(stats.is_balanced());
/// assert_eq!((stats.accepted, stats.exported), (2, 2));
/// assert_eq!(memory.span_count(), 2);
/// ```
///
/// # What each call does
///
/// * `on_start`: nothing (no per-span cost when a span starts).
/// * `on_end`: converts the span and [`Pipeline::record`]s it: no lock,
///   and no system call in steady state but the worker's wake-up (at most
///   one futex wake per nap of the worker, see [`Pipeline::record`]);
///   never blocks unless the pipeline's shedding is `Block`. The span's instrumentation scope (tracer name,
///   version, schema URL, attributes) becomes a pipeline scope
///   ([`Pipeline::scope`]), so spans are exported grouped under their
///   tracer's scope, as the SDK's exporters do; each thread remembers the
///   scopes it used last, so finding it takes no lock either. What the
///   pipeline does not queue is counted in its stats under a reason
///   (`not_sampled` for a span the SDK recorded without the sampled flag,
///   `queue_full`, `after_shutdown`, ...). The pipeline's span limits apply
///   on top of the SDK's; what they cut is added to the span's dropped
///   counts.
/// * `force_flush`: [`Pipeline::force_flush`] with the flush timeout
///   ([`DEFAULT_FLUSH_TIMEOUT`] unless set by the builder). `Ok` when
///   everything queued when it began was exported or dropped (and counted);
///   [`OTelSdkError::Timeout`] when the deadline passed first;
///   [`OTelSdkError::InternalFailure`] when it ended early without
///   completing (a collector outage: the kept batches were tried once and
///   are still kept; or a call from inside the pipeline's own transport);
///   [`OTelSdkError::AlreadyShutdown`] after `shutdown`.
/// * `shutdown_with_timeout` (and `shutdown`, 5 s): [`Pipeline::shutdown`],
///   which shuts the pipeline down **for every holder of it**, as the SDK's
///   batch processor shuts its exporter down. `Ok` when it drained in time
///   (spans it had to drop are in the stats, not in the result: a finished
///   shutdown is not an error); [`OTelSdkError::Timeout`] when the deadline
///   passed, this call's or that of another holder's shutdown that ended
///   the pipeline's first (what was pending is counted as
///   `timed_out_at_shutdown`);
///   [`OTelSdkError::InternalFailure`] when it could not wait (called from
///   inside the pipeline's transport) or the transport's own shutdown
///   failed (a final sync of a file; the message carries
///   `Pipeline::last_error`); a second call is
///   [`OTelSdkError::AlreadyShutdown`], never a panic.
///
/// # Spans ended after shutdown
///
/// A span that reaches `on_end` after the pipeline shut down (the processor
/// was shut down directly, or the pipeline by another holder) is counted as
/// `dropped.after_shutdown`. The SDK itself discards spans that end after
/// its *provider* was shut down before any processor sees them, so those
/// never reach the pipeline and cannot be counted.
///
/// # Resource
///
/// Spans are exported under the **pipeline's** resource (set with
/// [`PipelineBuilder::resource`](otlp_exporter::PipelineBuilder::resource),
/// or read from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`); the
/// resource the provider hands over (`set_resource`) is neither merged nor
/// used. The pipeline encodes its resource once, when it is built, into
/// every request, and it may be shared with other producers (its own
/// tracers, the `tracing` layer), which must not see it change under them.
/// To export under the provider's resource, build the pipeline with it:
/// `Pipeline::builder().resource(otlp_sdk_bridge::to_resource(&resource))`
/// (see [`to_resource`](crate::to_resource)). The pipeline fills in what
/// the resource lacks of `telemetry.sdk.*` (naming itself) and
/// `service.name` (from the environment, as
/// [`PipelineBuilder::resource`](otlp_exporter::PipelineBuilder::resource)
/// says): a provider's default resource (`Resource::builder().build()`)
/// has them all and is exported as it is; one built with
/// `Resource::builder_empty()` gains them.
pub struct OtlpSpanProcessor {
    pipeline: Pipeline,
    /// Names this processor in the per-thread scope cache.
    id: u64,
    flush_timeout: Duration,
    shut_down: AtomicBool,
}

/// Settings for an [`OtlpSpanProcessor`].
///
/// ```
/// use std::time::Duration;
///
/// let pipeline = otlp_exporter::Pipeline::builder()
///     .transport(otlp_exporter::InMemory::new())
///     .build()
///     .unwrap();
/// let processor = otlp_sdk_bridge::OtlpSpanProcessor::builder(&pipeline)
///     .flush_timeout(Duration::from_secs(1))
///     .build();
/// assert_eq!(processor.flush_timeout(), Duration::from_secs(1));
/// ```
#[must_use = "a builder does nothing until `build`"]
#[derive(Clone)]
pub struct OtlpSpanProcessorBuilder {
    pipeline: Pipeline,
    flush_timeout: Duration,
}

impl OtlpSpanProcessorBuilder {
    /// How long `force_flush` waits (default [`DEFAULT_FLUSH_TIMEOUT`]).
    /// Saturated to [`otlp_exporter::MAX_DURATION`].
    ///
    /// ```
    /// # let pipeline = otlp_exporter::Pipeline::builder()
    /// #     .transport(otlp_exporter::InMemory::new()).build().unwrap();
    /// let processor = otlp_sdk_bridge::OtlpSpanProcessor::builder(&pipeline)
    ///     .flush_timeout(std::time::Duration::MAX) // "no practical limit"
    ///     .build();
    /// assert_eq!(processor.flush_timeout(), otlp_exporter::MAX_DURATION);
    /// ```
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout.min(otlp_exporter::MAX_DURATION);
        self
    }

    /// The processor, ready for
    /// `SdkTracerProvider::builder().with_span_processor(..)`.
    ///
    /// ```
    /// # let pipeline = otlp_exporter::Pipeline::builder()
    /// #     .transport(otlp_exporter::InMemory::new()).build().unwrap();
    /// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
    ///     .with_span_processor(otlp_sdk_bridge::OtlpSpanProcessor::builder(&pipeline).build())
    ///     .build();
    /// # provider.shutdown().unwrap();
    /// ```
    pub fn build(self) -> OtlpSpanProcessor {
        OtlpSpanProcessor {
            pipeline: self.pipeline,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            flush_timeout: self.flush_timeout,
            shut_down: AtomicBool::new(false),
        }
    }
}

impl OtlpSpanProcessor {
    /// A processor that records into `pipeline` (a clone of the handle:
    /// keep yours to read [`Pipeline::stats`]).
    ///
    /// ```
    /// let pipeline = otlp_exporter::Pipeline::builder()
    ///     .transport(otlp_exporter::InMemory::new())
    ///     .build()
    ///     .unwrap();
    /// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
    ///     .with_span_processor(otlp_sdk_bridge::OtlpSpanProcessor::new(&pipeline))
    ///     .build();
    /// # provider.shutdown().unwrap();
    /// ```
    pub fn new(pipeline: &Pipeline) -> Self {
        Self::builder(pipeline).build()
    }

    /// A builder, for settings other than the defaults.
    ///
    /// ```
    /// # let pipeline = otlp_exporter::Pipeline::builder()
    /// #     .transport(otlp_exporter::InMemory::new()).build().unwrap();
    /// let processor = otlp_sdk_bridge::OtlpSpanProcessor::builder(&pipeline)
    ///     .flush_timeout(std::time::Duration::from_millis(500))
    ///     .build();
    /// # drop(processor);
    /// ```
    pub fn builder(pipeline: &Pipeline) -> OtlpSpanProcessorBuilder {
        OtlpSpanProcessorBuilder {
            pipeline: pipeline.clone(),
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
        }
    }

    /// The pipeline spans are recorded into.
    ///
    /// ```
    /// # let pipeline = otlp_exporter::Pipeline::builder()
    /// #     .transport(otlp_exporter::InMemory::new()).build().unwrap();
    /// let processor = otlp_sdk_bridge::OtlpSpanProcessor::new(&pipeline);
    /// assert_eq!(processor.pipeline().stats().accepted, 0);
    /// ```
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// How long `force_flush` waits.
    ///
    /// ```
    /// # let pipeline = otlp_exporter::Pipeline::builder()
    /// #     .transport(otlp_exporter::InMemory::new()).build().unwrap();
    /// let processor = otlp_sdk_bridge::OtlpSpanProcessor::new(&pipeline);
    /// assert_eq!(processor.flush_timeout(), otlp_sdk_bridge::DEFAULT_FLUSH_TIMEOUT);
    /// ```
    pub fn flush_timeout(&self) -> Duration {
        self.flush_timeout
    }

    /// Converts and records one finished span; what `on_end` does, with
    /// the pipeline's answer returned.
    ///
    /// ```
    /// # use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
    /// # use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    /// # use std::time::SystemTime;
    /// # let pipeline = otlp_exporter::Pipeline::builder()
    /// #     .transport(otlp_exporter::InMemory::new()).build().unwrap();
    /// let processor = otlp_sdk_bridge::OtlpSpanProcessor::new(&pipeline);
    /// let span = SpanData {
    ///     span_context: SpanContext::new(
    ///         TraceId::from_bytes([1; 16]),
    ///         SpanId::from_bytes([2; 8]),
    ///         TraceFlags::SAMPLED,
    ///         false,
    ///         TraceState::default(),
    ///     ),
    ///     parent_span_id: SpanId::INVALID,
    ///     parent_span_is_remote: false,
    ///     span_kind: SpanKind::Internal,
    ///     name: "job".into(),
    ///     start_time: SystemTime::now(),
    ///     end_time: SystemTime::now(),
    ///     attributes: Vec::new(),
    ///     dropped_attributes_count: 0,
    ///     events: SpanEvents::default(),
    ///     links: SpanLinks::default(),
    ///     status: Status::Unset,
    ///     instrumentation_scope: opentelemetry::InstrumentationScope::builder("jobs").build(),
    /// };
    /// assert_eq!(processor.record(span), otlp_exporter::Recorded::Queued);
    /// ```
    pub fn record(&self, span: SdkSpanData) -> Recorded {
        let scope = self.scope_of(&span.instrumentation_scope);
        self.pipeline.record(to_span_data(span, scope))
    }

    /// The pipeline's scope id for an SDK scope: from this thread's cache
    /// (no lock), else registered with the pipeline (its scope table's
    /// lock) and remembered.
    fn scope_of(&self, scope: &opentelemetry::InstrumentationScope) -> ScopeId {
        let cached = SCOPES.try_with(|cache| {
            // Borrowed already: a re-entrant record (a subscriber of the
            // pipeline's own logging that ends an SDK span). Skip the cache.
            let mut cache = cache.try_borrow_mut().ok()?;
            let i = cache
                .iter()
                .position(|e| e.processor == self.id && same_scope(&e.scope, scope))?;
            // Most recently used first, so the usual lookup is one compare.
            cache[..=i].rotate_right(1);
            Some(cache[0].id)
        });
        if let Ok(Some(id)) = cached {
            return id;
        }
        let id = self.pipeline.scope(to_scope(scope));
        let _ = SCOPES.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                cache.truncate(SCOPE_CACHE - 1);
                cache.insert(
                    0,
                    CachedScope {
                        processor: self.id,
                        scope: scope.clone(),
                        id,
                    },
                );
            }
        });
        id
    }
}

struct CachedScope {
    processor: u64,
    scope: opentelemetry::InstrumentationScope,
    id: ScopeId,
}

thread_local! {
    static SCOPES: RefCell<Vec<CachedScope>> = const { RefCell::new(Vec::new()) };
}

/// Equal name, version, schema URL and attributes (in order: a tracer's
/// scope is cloned into each of its spans as it is, so order-sensitive
/// equality finds it, without the sorting and allocating of the SDK's
/// order-free `==`). Floats are compared by their bits ([`same_value`]), so
/// a scope with a NaN attribute equals itself and its cache entry is hit
/// (found by review).
fn same_scope(
    a: &opentelemetry::InstrumentationScope,
    b: &opentelemetry::InstrumentationScope,
) -> bool {
    a.name() == b.name() && a.version() == b.version() && a.schema_url() == b.schema_url() && {
        let (mut x, mut y) = (a.attributes(), b.attributes());
        loop {
            match (x.next(), y.next()) {
                (None, None) => break true,
                (Some(x), Some(y)) if x.key == y.key && same_value(&x.value, &y.value) => {}
                _ => break false,
            }
        }
    }
}

/// `==`, but with floats compared by their bits (a total equality: NaN
/// equals the same NaN), as the pipeline's scope table compares them.
fn same_value(a: &opentelemetry::Value, b: &opentelemetry::Value) -> bool {
    use opentelemetry::{Array, Value};
    let bits = |x: &[f64], y: &[f64]| {
        x.len() == y.len() && x.iter().zip(y).all(|(x, y)| x.to_bits() == y.to_bits())
    };
    match (a, b) {
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(Array::F64(x)), Value::Array(Array::F64(y))) => bits(x, y),
        _ => a == b,
    }
}

impl fmt::Debug for OtlpSpanProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSpanProcessor")
            .field("id", &self.id)
            .field("flush_timeout", &self.flush_timeout)
            .field("shut_down", &self.shut_down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SpanProcessor for OtlpSpanProcessor {
    fn on_start(&self, _span: &mut SdkSpan, _cx: &Context) {}

    fn on_end(&self, span: SdkSpanData) {
        // The outcome is in the pipeline's stats.
        let _ = self.record(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Acquire: pairs with shutdown's swap, so a flush that sees the
        // flag also sees the shutdown that set it as begun.
        if self.shut_down.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let began = Instant::now();
        let report = self.pipeline.force_flush(self.flush_timeout);
        if report.completed {
            Ok(())
        } else if began.elapsed() >= self.flush_timeout {
            Err(OTelSdkError::Timeout(self.flush_timeout))
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "otlp-exporter: force_flush did not complete ({} spans still pending{})",
                report.pending,
                last_error(&self.pipeline),
            )))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let began = Instant::now();
        let report = self.pipeline.shutdown(timeout);
        if report.completed {
            Ok(())
        } else if began.elapsed() >= timeout || report.stats.dropped.timed_out_at_shutdown > 0 {
            // This call's deadline, or another holder's shutdown (ended
            // before this call, or alongside it with a shorter deadline)
            // that ran out of time: spans were left (found by review: that
            // case was reported as an internal failure with a cause that
            // had not happened).
            Err(OTelSdkError::Timeout(timeout))
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "otlp-exporter: shutdown did not complete (called from inside the \
                 pipeline's transport, or the transport's own shutdown failed){}",
                last_error(&self.pipeline),
            )))
        }
    }

    /// Not used: spans are exported under the pipeline's resource (see
    /// [the type's docs](OtlpSpanProcessor#resource)).
    fn set_resource(&mut self, _resource: &SdkResource) {}
}

fn last_error(pipeline: &Pipeline) -> String {
    pipeline
        .last_error()
        .map(|e| format!("; last export error: {e}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::{InstrumentationScope, KeyValue, Value};

    /// A scope with a NaN attribute (alone or in an array) is the same
    /// scope as its clone, so the per-thread cache finds it (with `==` it
    /// never did: the pipeline's table was asked for every span; found by
    /// review). `0.0` and `-0.0` differ, as in the pipeline's table.
    #[test]
    fn same_scope_compares_floats_by_bits() {
        let scope = |v: f64| {
            InstrumentationScope::builder("lib")
                .with_version("1")
                .with_attributes([
                    KeyValue::new("ratio", v),
                    KeyValue::new("ratios", Value::Array(vec![v, 1.5].into())),
                    KeyValue::new("name", "x"),
                ])
                .build()
        };
        let nan = scope(f64::NAN);
        assert!(same_scope(&nan, &nan.clone()));
        assert!(same_scope(&scope(0.5), &scope(0.5)));
        assert!(!same_scope(&scope(0.0), &scope(-0.0)));
        assert!(!same_scope(&scope(0.5), &scope(f64::NAN)));
        let fewer = InstrumentationScope::builder("lib")
            .with_version("1")
            .with_attributes([KeyValue::new("ratio", f64::NAN)])
            .build();
        assert!(!same_scope(&nan, &fewer));
        assert!(!same_scope(&fewer, &nan));
    }
}
