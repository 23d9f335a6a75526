//! Hostile but legitimate use: shutdown twice and from many threads at
//! once, flush after shutdown, spans after shutdown, huge spans, a
//! transport that hangs or panics. Cases that could hang or crash run in a
//! child process under a watchdog.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{exported, sdk_span};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanProcessor};
use otlp_exporter::{
    Behavior, EncodedRequest, ExportResult, InMemory, Pipeline, Recorded, SpanLimits, Transport,
};
use otlp_sdk_bridge::OtlpSpanProcessor;

/// `assert!(matches!(..))` that shows what it got.
macro_rules! assert_matches {
    ($e:expr, $p:pat $(if $g:expr)?) => {{
        let got = $e;
        assert!(matches!(got, $p $(if $g)?), "got {got:?}");
    }};
}

const WATCHDOG: Duration = Duration::from_secs(20);

fn pipeline(memory: &InMemory) -> Pipeline {
    Pipeline::builder()
        .transport(memory.clone())
        .build()
        .expect("valid settings")
}

#[test]
fn shutdown_twice_is_an_error_not_a_panic() {
    let memory = InMemory::new();
    let pipeline = pipeline(&memory);
    let processor = OtlpSpanProcessor::new(&pipeline);
    processor.on_end(sdk_span("before", 1));
    assert_matches!(processor.shutdown(), Ok(()));
    assert_matches!(processor.shutdown(), Err(OTelSdkError::AlreadyShutdown));
    assert_matches!(
        processor.shutdown_with_timeout(Duration::ZERO),
        Err(OTelSdkError::AlreadyShutdown)
    );
    assert_matches!(processor.force_flush(), Err(OTelSdkError::AlreadyShutdown));
    assert!(memory.is_shut_down());
    let stats = pipeline.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.exported, 1);

    // Through the provider too.
    let memory = InMemory::new();
    let pipeline = self::pipeline(&memory);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    provider.tracer("t").start("s").end();
    assert_matches!(provider.shutdown(), Ok(()));
    assert!(provider.shutdown().is_err());
    assert!(provider.force_flush().is_err());
    assert_eq!(pipeline.stats().exported, 1);
}

#[test]
fn concurrent_shutdowns_succeed_once() {
    let memory = InMemory::new();
    let pipeline = pipeline(&memory);
    let processor = Arc::new(OtlpSpanProcessor::new(&pipeline));
    for i in 0..10 {
        processor.on_end(sdk_span("queued", i + 1));
    }
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = &processor;
                s.spawn(move || p.shutdown_with_timeout(Duration::from_secs(10)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(OTelSdkError::AlreadyShutdown)))
    );
    let stats = pipeline.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.exported, 10);
}

#[test]
fn spans_after_shutdown_are_counted() {
    // Straight to the processor after its shutdown.
    let memory = InMemory::new();
    let pipeline = pipeline(&memory);
    let processor = OtlpSpanProcessor::new(&pipeline);
    processor.shutdown().unwrap();
    for i in 0..3 {
        assert_eq!(
            processor.record(sdk_span("late", i + 1)),
            Recorded::Dropped(otlp_exporter::DropReason::Shutdown)
        );
    }
    processor.on_end(sdk_span("late", 9));
    let stats = pipeline.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.accepted, 4);
    assert_eq!(stats.dropped.after_shutdown, 4);

    // The pipeline shut down by another holder while the provider lives.
    let memory = InMemory::new();
    let pipeline = self::pipeline(&memory);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    let tracer = provider.tracer("t");
    let started = tracer.start("started before");
    assert!(pipeline.shutdown(Duration::from_secs(5)).completed);
    drop(started); // ends it
    tracer.start("started after").end();
    let stats = pipeline.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.dropped.after_shutdown, 2);
    // The provider's shutdown finds the pipeline already down: not an error.
    assert_matches!(provider.shutdown(), Ok(()));

    // After the *provider's* shutdown the SDK discards ended spans itself,
    // before any processor: they never reach the pipeline (documented).
    let memory = InMemory::new();
    let pipeline = self::pipeline(&memory);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    let span = provider.tracer("t").start("open at shutdown");
    provider.shutdown().unwrap();
    drop(span);
    let stats = pipeline.stats();
    assert_eq!(stats.accepted, 0);
    assert!(stats.is_balanced());
}

#[test]
fn huge_attributes_are_cut_and_counted() {
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .limits(SpanLimits {
            attribute_count: 4,
            attribute_value_length: Some(16),
            event_count: 2,
            link_count: 128,
            attributes_per_event: 1,
            attributes_per_link: 128,
        })
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    let tracer = provider.tracer("huge");
    let mut span = tracer.start("huge");
    span.set_attribute(KeyValue::new("big", "é".repeat(1 << 20))); // 2 MiB
    for i in 0..9 {
        span.set_attribute(KeyValue::new(format!("k{i}"), i));
    }
    for i in 0..5 {
        span.add_event(
            format!("e{i}"),
            vec![KeyValue::new("a", 1), KeyValue::new("b", 2)],
        );
    }
    span.end();
    provider.shutdown().unwrap();

    let got = exported(&memory);
    assert_eq!(got.len(), 1);
    let s = &got[0].span;
    assert_eq!(s.attributes.len(), 4);
    assert_eq!(s.dropped_attributes_count, 6);
    let big = match s.attributes[0]
        .value
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v)) => v,
        other => panic!("not a string: {other:?}"),
    };
    assert_eq!(big, &"é".repeat(16), "cut at 16 characters");
    assert_eq!(s.events.len(), 2);
    assert_eq!(s.dropped_events_count, 3);
    assert!(
        s.events
            .iter()
            .all(|e| e.attributes.len() == 1 && e.dropped_attributes_count == 1)
    );
    assert!(pipeline.stats().is_balanced());
}

#[test]
fn a_hung_transport_makes_flush_and_shutdown_time_out() {
    test_watchdog::isolate(WATCHDOG, || {
        let memory = InMemory::new().with_behavior(Behavior::Hang);
        let pipeline = Pipeline::builder()
            .transport(memory.clone())
            .build()
            .unwrap();
        let processor = OtlpSpanProcessor::builder(&pipeline)
            .flush_timeout(Duration::from_millis(200))
            .build();
        for i in 0..5 {
            processor.on_end(sdk_span("stuck", i + 1));
        }
        let began = Instant::now();
        assert_matches!(processor.force_flush(), Err(OTelSdkError::Timeout(d)) if d == Duration::from_millis(200));
        assert_matches!(processor.shutdown_with_timeout(Duration::from_millis(200)), Err(OTelSdkError::Timeout(d)) if d == Duration::from_millis(200));
        // Both returned (the watchdog bounds the test; this is only a
        // sanity bound against waiting for the export).
        assert!(began.elapsed() < Duration::from_secs(15));
        let stats = pipeline.stats();
        assert!(stats.is_balanced(), "{stats:?}");
        assert_eq!(stats.dropped.timed_out_at_shutdown, 5, "{stats:?}");
        memory.release();
    });
}

/// The pipeline's shutdown ran out of time in another holder's hands
/// (here, before this processor's call): the processor's shutdown is a
/// timeout too, not an internal failure naming causes that did not happen
/// (found by review).
#[test]
fn a_shutdown_after_another_holders_timed_out_one_is_a_timeout() {
    test_watchdog::isolate(WATCHDOG, || {
        let memory = InMemory::new().with_behavior(Behavior::Hang);
        let pipeline = pipeline(&memory);
        let processor = OtlpSpanProcessor::new(&pipeline);
        processor.on_end(sdk_span("stuck", 1));
        // Another holder of the pipeline.
        let report = pipeline.shutdown(Duration::from_millis(100));
        assert!(!report.completed);
        let timeout = Duration::from_secs(5);
        assert_matches!(processor.shutdown_with_timeout(timeout), Err(OTelSdkError::Timeout(d)) if d == timeout);
        memory.release();
        let stats = pipeline.stats();
        assert!(stats.is_balanced(), "{stats:?}");
        assert_eq!(stats.dropped.timed_out_at_shutdown, 1, "{stats:?}");
    });
}

#[test]
fn a_collector_outage_is_an_internal_failure_for_flush() {
    test_watchdog::isolate(WATCHDOG, || {
        let memory = InMemory::new().with_behavior(Behavior::Unavailable);
        let pipeline = pipeline(&memory);
        let processor = OtlpSpanProcessor::builder(&pipeline)
            .flush_timeout(Duration::from_secs(10))
            .build();
        processor.on_end(sdk_span("kept", 1));
        match processor.force_flush() {
            Err(OTelSdkError::InternalFailure(message)) => {
                assert!(message.contains("still pending"), "{message}")
            }
            other => panic!("expected an internal failure, got {other:?}"),
        }
        // The collector comes back: the kept span is delivered.
        memory.set_behavior(Behavior::Accept);
        assert_matches!(processor.shutdown(), Ok(()));
        let stats = pipeline.stats();
        assert!(stats.is_balanced(), "{stats:?}");
        assert_eq!(stats.exported, 1);
    });
}

/// A transport whose every export panics.
struct Panicking;

impl Transport for Panicking {
    fn export(&self, _request: &EncodedRequest, _deadline: Instant) -> ExportResult {
        panic!("the transport blew up");
    }
}

#[test]
fn a_panicking_transport_is_contained() {
    test_watchdog::isolate(WATCHDOG, || {
        let pipeline = Pipeline::builder().transport(Panicking).build().unwrap();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(OtlpSpanProcessor::new(&pipeline))
            .build();
        let tracer = provider.tracer("t");
        for _ in 0..4 {
            tracer.in_span("doomed", |_cx| {});
        }
        // The flush completes: the spans are dropped and counted.
        assert_matches!(provider.force_flush(), Ok(()));
        tracer.start("after the panic").end();
        assert_matches!(provider.shutdown(), Ok(()));
        let stats = pipeline.stats();
        assert!(stats.is_balanced(), "{stats:?}");
        assert_eq!(stats.accepted, 5);
        assert_eq!(stats.dropped.export_failed, 5);
        assert!(stats.transport_panics >= 1);
        assert!(
            pipeline
                .last_error()
                .is_some_and(|e| e.contains("the transport blew up"))
        );
    });
}

#[test]
fn ten_thousand_nested_spans() {
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .max_queue_size(16_384)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    let tracer = provider.tracer("deep");
    let mut cx = opentelemetry::Context::new();
    let mut contexts = Vec::new();
    for i in 0..10_000 {
        use opentelemetry::trace::TraceContextExt as _;
        let span = tracer.start_with_context(format!("level-{i}"), &cx);
        cx = cx.with_span(span);
        contexts.push(cx.clone());
    }
    // End innermost first.
    while let Some(cx) = contexts.pop() {
        use opentelemetry::trace::TraceContextExt as _;
        cx.span().end();
    }
    drop(cx);
    provider.shutdown().unwrap();
    let stats = pipeline.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.exported, 10_000);
    let got = exported(&memory);
    let trace = &got[0].span.trace_id;
    assert!(got.iter().all(|e| &e.span.trace_id == trace));
}

#[test]
fn bad_input_has_a_defined_outcome() {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use std::time::{SystemTime, UNIX_EPOCH};

    let memory = InMemory::new();
    let pipeline = pipeline(&memory);
    let processor = OtlpSpanProcessor::new(&pipeline);
    // Invalid (all-zero) ids: refused when recorded (invalid in OTLP) and
    // counted as `invalid_ids`.
    let mut zero = sdk_span("zero ids", 3);
    zero.span_context = SpanContext::new(
        TraceId::INVALID,
        SpanId::INVALID,
        TraceFlags::new(0xff),
        true,
        TraceState::default(),
    );
    processor.on_end(zero);
    // All trace flags set, an empty name and key, times before the
    // epoch and an end before the start, a NaN, an empty scope name: a
    // hand-built span the SDK itself would never make. Nothing panics and
    // the span is accounted for.
    let mut span = sdk_span("", 1);
    span.span_context = SpanContext::new(
        TraceId::from_bytes([1; 16]),
        SpanId::from_bytes([1; 8]),
        TraceFlags::new(0xff),
        true,
        TraceState::default(),
    );
    span.start_time = UNIX_EPOCH - Duration::from_secs(10);
    span.end_time = UNIX_EPOCH - Duration::from_secs(20);
    span.attributes = vec![
        KeyValue::new("", f64::NAN),
        KeyValue::new("neg.inf", f64::NEG_INFINITY),
    ];
    span.dropped_attributes_count = u32::MAX;
    span.instrumentation_scope = opentelemetry::InstrumentationScope::builder("").build();
    processor.on_end(span);
    let mut late = sdk_span("far future", 2);
    late.end_time = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 8);
    processor.on_end(late);
    assert_matches!(processor.shutdown(), Ok(()));

    let stats = pipeline.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.accepted, 3);
    // The pipeline exports what it is given, as it is (its bad-input
    // rule), but for an empty attribute key, which the spec forbids, and
    // a span with an all-zero id, which OTLP calls invalid.
    assert_eq!(stats.dropped.invalid_ids, 1, "{stats:?}");
    assert_eq!(stats.exported, 2, "{stats:?}");
    let got = exported(&memory);
    assert_eq!(got.len(), 2);
    for e in got {
        if e.span.name.is_empty() {
            assert_eq!(e.span.start_time_unix_nano, 0, "before the epoch is 0");
            assert_eq!(e.span.dropped_attributes_count, u32::MAX, "saturated");
            // The empty key is left out (the spec: a key MUST be
            // non-empty), counted in the saturated dropped count.
            assert_eq!(e.span.attributes.len(), 1);
            assert_eq!(e.span.attributes[0].key, "neg.inf");
        } else {
            // About 1100 years on: past what u64 nanoseconds can hold.
            assert_eq!(e.span.end_time_unix_nano, u64::MAX, "saturated");
        }
    }
}

/// A tracer whose scope has a NaN attribute: its spans are one scope, one
/// `ScopeSpans` (the scope table compared with `==`, NaN != NaN, so every
/// span registered the scope again, 200 spans gave 200 `ScopeSpans`, and
/// once the table was full later tracers lost their scope; found by
/// review). A tracer made after it keeps its own scope.
#[test]
fn a_nan_scope_attribute_is_one_scope() {
    let memory = InMemory::new();
    let pipeline = pipeline(&memory);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("ratio-lib")
            .with_attributes([
                KeyValue::new("sample.ratio", f64::NAN),
                KeyValue::new(
                    "ratios",
                    opentelemetry::Value::Array(vec![f64::NAN, -0.0].into()),
                ),
            ])
            .build(),
    );
    for _ in 0..200 {
        tracer.start("op").end();
    }
    let other = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("payments")
            .with_version("2.0")
            .build(),
    );
    other.start("charge").end();
    assert_matches!(provider.shutdown(), Ok(()));
    assert_eq!(pipeline.stats().exported, 201);
    let mut scope_spans = 0;
    for r in memory.requests() {
        use prost::Message;
        let req =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                &r.body[..],
            )
            .unwrap();
        for ss in req.resource_spans.iter().flat_map(|rs| &rs.scope_spans) {
            scope_spans += 1;
            let name = &ss.scope.as_ref().unwrap().name;
            assert!(
                ss.spans
                    .iter()
                    .all(|s| (s.name == "op") == (name == "ratio-lib")),
                "{name}"
            );
        }
    }
    assert_eq!(scope_spans, 2, "one ScopeSpans per tracer");
    let charge = exported(&memory)
        .into_iter()
        .find(|e| e.span.name == "charge")
        .unwrap();
    assert_eq!(charge.scope.name, "payments");
}
