//! The SDK environment spec's variables for the span model: `OTEL_SDK_DISABLED`
//! (a no-op pipeline) and the general `OTEL_ATTRIBUTE_COUNT_LIMIT` as the
//! default of events' and links' attribute limits. Each test runs in its
//! own child process (test-watchdog), so changing the environment there
//! races with nothing.

use std::time::Duration;

use otlp_exporter::{DropReason, InMemory, Pipeline, Recorded, Sampler, SpanData, SpanLimits};

const WATCHDOG: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(10);

fn set(var: &str, value: &str) {
    // SAFETY: this runs in a child process that runs this one test on one
    // thread; nothing else reads the environment meanwhile.
    unsafe { std::env::set_var(var, value) }
}

#[test]
fn sdk_disabled_makes_a_no_op_pipeline() {
    test_watchdog::isolate(WATCHDOG, || {
        for value in ["true", "TRUE", " True "] {
            set("OTEL_SDK_DISABLED", value);
            let memory = InMemory::new();
            let pipeline = Pipeline::builder()
                .transport(memory.clone())
                .sampler(Sampler::AlwaysOn)
                .build()
                .expect("builds");
            assert!(pipeline.is_disabled(), "{value:?}");
            let tracer = pipeline.tracer("t", "1");
            let span = tracer.start("x");
            assert!(!span.is_recording(), "{value:?}");
            span.end();
            // Another sampler does not bring it back.
            let span = tracer.with_sampler(Sampler::AlwaysOn).start("y");
            assert!(!span.is_recording(), "{value:?}");
            span.end();
            // Nor does recording a span directly.
            assert_eq!(
                pipeline.record(SpanData::new("direct")),
                Recorded::Dropped(DropReason::NotSampled)
            );
            let mut kept = SpanData::new("in place");
            assert_eq!(
                pipeline.record_in_place(&mut kept),
                Recorded::Dropped(DropReason::NotSampled)
            );
            assert_eq!(kept.name, "in place", "the caller's span is left alone");
            let report = pipeline.shutdown(WAIT);
            assert_eq!(memory.span_count(), 0, "{value:?}");
            assert!(report.stats.is_balanced(), "{:?}", report.stats);
            assert_eq!(report.stats.dropped.not_sampled, 4);
        }
    });
}

#[test]
fn sdk_disabled_needs_no_file_or_network_access() {
    test_watchdog::isolate(WATCHDOG, || {
        set("OTEL_SDK_DISABLED", "true");
        set("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9");
        let pipeline = Pipeline::builder().build().expect("a no-op pipeline");
        assert!(pipeline.is_disabled());
        pipeline.shutdown(WAIT);
    });
}

#[test]
fn sdk_disabled_false_or_invalid_is_the_usual_pipeline() {
    test_watchdog::isolate(WATCHDOG, || {
        for value in ["false", "FALSE", "", "1", "yes"] {
            set("OTEL_SDK_DISABLED", value);
            let memory = InMemory::new();
            let pipeline = Pipeline::builder()
                .transport(memory.clone())
                .build()
                .expect("builds");
            assert!(!pipeline.is_disabled(), "{value:?}");
            let span = pipeline.tracer("t", "1").start("x");
            assert!(span.is_recording(), "{value:?}");
            span.end();
            pipeline.shutdown(WAIT);
            assert_eq!(memory.span_count(), 1, "{value:?}");
        }
    });
}

#[test]
fn the_general_attribute_count_limit_applies_to_events_and_links() {
    test_watchdog::isolate(WATCHDOG, || {
        set("OTEL_ATTRIBUTE_COUNT_LIMIT", "3");
        let l = SpanLimits::from_env().expect("valid");
        assert_eq!(
            (
                l.attribute_count,
                l.attributes_per_event,
                l.attributes_per_link
            ),
            (3, 3, 3)
        );
        // The model-specific ones win over it.
        set("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "5");
        set("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "7");
        set("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "9");
        let l = SpanLimits::from_env().expect("valid");
        assert_eq!(
            (
                l.attribute_count,
                l.attributes_per_event,
                l.attributes_per_link
            ),
            (9, 5, 7)
        );
    });
}
