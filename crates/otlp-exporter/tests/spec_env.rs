//! The SDK environment spec's variables for the span model: `OTEL_SDK_DISABLED`
//! (a no-op pipeline) and the general `OTEL_ATTRIBUTE_COUNT_LIMIT` as the
//! default of events' and links' attribute limits. Each test runs in its
//! own child process (test-watchdog), so changing the environment there
//! races with nothing.

use std::time::Duration;

use otlp_exporter::{
    DropReason, InMemory, Pipeline, Recorded, Sampler, SpanContext, SpanData, SpanLimits,
};

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

/// A disabled pipeline is the trace API without an SDK: a child carries
/// its parent's context on unchanged (the caller's trace, with the
/// caller's sampling decision), a root has an invalid context (nothing to
/// send on), and nothing is exported (found by review: children got a new
/// span id with the sampled flag cleared, and roots a new unsampled trace,
/// so the next service's `ParentBased` sampler dropped the caller's trace).
#[test]
fn sdk_disabled_passes_the_incoming_context_on_unchanged() {
    test_watchdog::isolate(WATCHDOG, || {
        set("OTEL_SDK_DISABLED", "true");
        let memory = InMemory::new();
        let pipeline = Pipeline::builder()
            .transport(memory.clone())
            .build()
            .expect("builds");
        let tracer = pipeline.tracer("t", "1");
        for incoming in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ] {
            let remote = SpanContext::from_traceparent(incoming).unwrap();
            let built = tracer.build("handle").parent(&remote).start();
            let child = tracer.start_child("call", &remote);
            let grandchild = tracer.start_child("deeper", child.context());
            for span in [&built, &child, &grandchild] {
                assert!(!span.is_recording());
                assert_eq!(span.context().to_traceparent(), incoming);
                assert_eq!(span.context(), &remote);
            }
            grandchild.end();
            child.end();
            built.end();
        }
        let root = tracer.start("root");
        assert!(!root.context().is_valid(), "{:?}", root.context());
        let child_of_root = tracer.start_child("under root", root.context());
        assert!(!child_of_root.context().is_valid());
        child_of_root.end();
        root.end();
        let report = pipeline.shutdown(WAIT);
        assert_eq!(memory.span_count(), 0);
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
        assert_eq!(report.stats.dropped.not_sampled, 8);
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

/// A value that is not UTF-8 is a malformed value, never taken as unset
/// (found by review: `std::env::var(..).ok()` read it as unset, so a span
/// limit silently became the default, and the resource variables were
/// dropped whole without the warning their docs promise). A span limit is
/// then an error that shows it; the resource keeps its entries that are
/// UTF-8 and leaves out the one that is not.
#[cfg(unix)]
#[test]
fn a_value_that_is_not_utf8_is_malformed_not_unset() {
    use std::os::unix::ffi::OsStrExt;
    fn set_bytes(var: &str, value: &[u8]) {
        // SAFETY: as `set`.
        unsafe { std::env::set_var(var, std::ffi::OsStr::from_bytes(value)) }
    }
    test_watchdog::isolate(WATCHDOG, || {
        set_bytes("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", b"1\xff");
        match SpanLimits::from_env() {
            Err(otlp_exporter::ConfigError::InvalidEnv { var, value, .. }) => {
                assert_eq!(var, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT");
                assert_eq!(value, "1\u{fffd}");
            }
            other => panic!("taken as {other:?}"),
        }
        set_bytes(
            "OTEL_RESOURCE_ATTRIBUTES",
            b"deployment.environment=prod,bad=\xff,team=core",
        );
        let r = otlp_exporter::Resource::from_env();
        let v = |k| r.get(k).cloned();
        assert_eq!(v("deployment.environment"), Some("prod".into()));
        assert_eq!(v("team"), Some("core".into()));
        assert_eq!(v("bad"), None, "the entry that is not UTF-8 is left out");
        // One value, not a list: not cut at a comma (found by review: a
        // name read as entries became its first part's).
        set_bytes("OTEL_SERVICE_NAME", b"checkout,eu-w\xe9st");
        let r = otlp_exporter::Resource::from_env();
        assert_ne!(r.get("service.name").cloned(), Some("checkout".into()));
    });
}
