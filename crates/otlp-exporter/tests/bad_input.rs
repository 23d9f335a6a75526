//! Bad input: each case has a defined, documented outcome, and none panics.

mod common;

use std::time::Duration;

use common::received;
use opentelemetry_proto::tonic::common::v1::any_value::Value as PV;
use otlp_exporter::{
    DropReason, InMemory, KeyValue, Pipeline, Recorded, Resource, SpanData, SpanLimits, Value,
};

fn pipeline(memory: &InMemory, limits: SpanLimits) -> Pipeline {
    Pipeline::builder()
        .transport(memory.clone())
        .resource(Resource::new("bad-input"))
        .limits(limits)
        .build()
        .unwrap()
}

#[test]
fn an_empty_name_is_exported_as_it_is() {
    let memory = InMemory::new();
    let p = pipeline(&memory, SpanLimits::default());
    assert_eq!(p.record(SpanData::new("")), Recorded::Queued);
    p.shutdown(Duration::from_secs(5));
    assert_eq!(received(&memory)[0].name, "");
}

#[test]
fn long_values_are_truncated_and_extra_attributes_counted() {
    let memory = InMemory::new();
    let limits = SpanLimits {
        attribute_count: 3,
        attribute_value_length: Some(8),
        event_count: 1,
        ..SpanLimits::default()
    };
    let p = pipeline(&memory, limits);
    let mut s = SpanData::new("limited");
    s.attributes = (0..5)
        .map(|i| KeyValue::new(format!("k{i}"), "ééééééééé"))
        .collect();
    s.attributes[1].value = Value::Array(vec!["0123456789".into(), 7.into()]);
    s.events = vec![
        otlp_exporter::Event {
            name: "kept".into(),
            time_unix_nano: 1,
            attributes: vec![],
            dropped_attributes_count: 0,
        };
        3
    ];
    p.record(s);
    p.shutdown(Duration::from_secs(5));
    let got = &received(&memory)[0];
    assert_eq!(got.attributes.len(), 3);
    assert_eq!(got.dropped_attributes_count, 2);
    assert_eq!(got.events.len(), 1);
    assert_eq!(got.dropped_events_count, 2);
    match got.attributes[0]
        .value
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        // The limit counts characters, as the specification says (it
        // counted bytes: "éééé", found by review): eight of the nine kept.
        Some(PV::StringValue(v)) => assert_eq!(v, "éééééééé"),
        other => panic!("{other:?}"),
    }
    match got.attributes[1]
        .value
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(PV::ArrayValue(a)) => {
            assert_eq!(a.values[0].value, Some(PV::StringValue("01234567".into())));
            assert_eq!(
                a.values[1].value,
                Some(PV::IntValue(7)),
                "non-strings untouched"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A span larger than the largest request is queued only if the byte
/// budget of spans too large for a slot (`max_queue_size x 512` bytes) has
/// room for it (a queue of 2^18 spans: 128 MiB), and the encoder then
/// leaves it out as `too_large`; with the default queue (a 1 MiB budget)
/// it is refused at record, as queue-full.
#[test]
fn a_span_larger_than_any_request_is_counted_too_large() {
    let huge = || {
        let mut s = SpanData::new("huge");
        s.attributes.push(KeyValue::new(
            "blob",
            Value::Bytes(vec![7; otlp_exporter::MAX_REQUEST_BYTES]),
        ));
        s
    };
    let memory = InMemory::new();
    let p = Pipeline::builder()
        .transport(memory.clone())
        .resource(Resource::new("bad-input"))
        .max_queue_size(1 << 18)
        .build()
        .unwrap();
    assert_eq!(p.record(huge()), Recorded::Queued);
    p.record(SpanData::new("small"));
    let st = p.shutdown(Duration::from_secs(30)).stats;
    assert_eq!(st.dropped.too_large, 1);
    assert_eq!(st.exported, 1);
    assert!(st.is_balanced());

    let p = pipeline(&memory, SpanLimits::default());
    assert_eq!(
        p.record(huge()),
        Recorded::Dropped(otlp_exporter::DropReason::QueueFull)
    );
    let st = p.shutdown(Duration::from_secs(30)).stats;
    assert_eq!((st.dropped.queue_full, st.dropped.too_large), (1, 0));
    assert!(st.is_balanced());
}

#[test]
fn non_finite_floats_are_exported() {
    let memory = InMemory::new();
    let p = pipeline(&memory, SpanLimits::default());
    let mut s = SpanData::new("floats");
    s.attributes = vec![
        KeyValue::new("nan", f64::NAN),
        KeyValue::new("inf", f64::INFINITY),
    ];
    p.record(s);
    p.shutdown(Duration::from_secs(5));
    let got = &received(&memory)[0];
    assert!(
        matches!(got.attributes[0].value.as_ref().and_then(|v| v.value.as_ref()), Some(PV::DoubleValue(f)) if f.is_nan())
    );
}

#[test]
fn an_empty_batch_sends_nothing() {
    let memory = InMemory::new();
    let p = pipeline(&memory, SpanLimits::default());
    assert_eq!(p.record_batch(Vec::new()), 0);
    let flush = p.force_flush(Duration::from_secs(5));
    assert!(flush.completed);
    assert_eq!(flush.exported, 0);
    p.shutdown(Duration::from_secs(5));
    assert_eq!(memory.calls(), 0, "no empty request");
}

#[test]
fn a_span_recorded_after_shutdown_is_counted() {
    let memory = InMemory::new();
    let p = pipeline(&memory, SpanLimits::default());
    p.shutdown(Duration::from_secs(5));
    assert_eq!(
        p.record(SpanData::new("late")),
        Recorded::Dropped(DropReason::Shutdown)
    );
    assert_eq!(
        p.record_batch(vec![SpanData::new("late"), SpanData::new("late")]),
        0
    );
    let st = p.stats();
    assert_eq!((st.accepted, st.dropped.after_shutdown), (3, 3));
    assert!(st.is_balanced());
    // Flush after shutdown has nothing to do and says so at once.
    assert!(p.force_flush(Duration::from_secs(5)).completed);
}

#[test]
fn a_batch_of_spans_is_recorded_in_one_call() {
    let memory = InMemory::new();
    let p = pipeline(&memory, SpanLimits::default());
    let batch: otlp_exporter::SpanBatch = (0..10).map(|i| SpanData::new(format!("b{i}"))).collect();
    assert_eq!(p.record_batch(batch), 10);
    p.shutdown(Duration::from_secs(5));
    let names: Vec<_> = received(&memory).into_iter().map(|s| s.name).collect();
    assert_eq!(names, (0..10).map(|i| format!("b{i}")).collect::<Vec<_>>());
}

#[test]
fn the_span_builder_applies_the_limits_as_it_goes() {
    let memory = InMemory::new();
    let limits = SpanLimits {
        attribute_count: 2,
        attribute_value_length: Some(3),
        event_count: 1,
        attributes_per_event: 1,
        ..SpanLimits::default()
    };
    let p = pipeline(&memory, limits);
    let tracer = p.tracer("limits", "1");
    let mut span = tracer.start("limited");
    span.set_attribute("a", "abcdef")
        .set_attribute("b", 2)
        .set_attribute("c", 3);
    span.set_attribute("a", "xyz123"); // replacing a key never counts as a drop
    span.add_event("e1", vec![KeyValue::new("x", 1), KeyValue::new("y", 2)]);
    span.add_event("e2", vec![]);
    span.end();
    p.shutdown(Duration::from_secs(5));
    let got = &received(&memory)[0];
    assert_eq!(got.attributes.len(), 2);
    assert_eq!(got.dropped_attributes_count, 1);
    assert_eq!(
        got.attributes[0].value.as_ref().unwrap().value,
        Some(PV::StringValue("xyz".into()))
    );
    assert_eq!((got.events.len(), got.dropped_events_count), (1, 1));
    assert_eq!(
        (
            got.events[0].attributes.len(),
            got.events[0].dropped_attributes_count
        ),
        (1, 1)
    );
}

#[test]
fn many_attributes_under_a_raised_limit_keep_one_value_per_key() {
    // Past the first few attributes, keys are found through an index
    // rather than a scan; every key, however many there are, is still
    // replaced rather than repeated, and the limit still counts.
    let memory = InMemory::new();
    let limits = SpanLimits {
        attribute_count: 3_000,
        ..SpanLimits::default()
    };
    let p = pipeline(&memory, limits);
    let tracer = p.tracer("many", "1");
    let mut span = tracer.start("many attributes");
    // Owned and borrowed keys, set in one order and replaced in another.
    for i in 0..3_500_i64 {
        span.set_attribute(format!("k{i}"), i);
    }
    span.set_attribute("static", "first");
    for i in (0..3_500_i64).rev() {
        span.set_attribute(format!("k{i}"), -i);
    }
    span.set_attribute("static", "second");
    span.end();
    // The next span on this thread reuses the storage: nothing of the
    // first span's keys is found there.
    let mut next = tracer.start("next");
    for i in 0..40_i64 {
        next.set_attribute(format!("k{}", i % 20), i);
    }
    next.end();
    p.shutdown(Duration::from_secs(5));
    let got = received(&memory);
    let first = &got[0];
    assert_eq!(first.attributes.len(), 3_000);
    // Each set of a key past the limit is a drop (500 and "static", twice);
    // replacing a kept key is not.
    assert_eq!(first.dropped_attributes_count, 1_002);
    for (i, kv) in first.attributes.iter().enumerate() {
        assert_eq!(kv.key, format!("k{i}"));
        assert_eq!(
            kv.value.as_ref().unwrap().value,
            Some(PV::IntValue(-(i as i64))),
            "{}",
            kv.key
        );
    }
    let next = &got[1];
    let keys: Vec<_> = next.attributes.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, (0..20).map(|i| format!("k{i}")).collect::<Vec<_>>());
    for (i, kv) in next.attributes.iter().enumerate() {
        assert_eq!(
            kv.value.as_ref().unwrap().value,
            Some(PV::IntValue(i as i64 + 20))
        );
    }
}

/// A reviewer's case: a span with an all-zero trace or span id (invalid in
/// OTLP's `trace.proto`; a collector may refuse the whole request) was
/// queued and exported. It is now refused at record time and counted as
/// `invalid_ids`, and the accounting balances; an unsampled one stays
/// `not_sampled`.
#[test]
fn a_span_with_an_all_zero_id_is_refused_and_counted() {
    use otlp_exporter::{Shedding, SpanContext, SpanId, TraceFlags, TraceId};
    for shedding in [Shedding::DropNewest, Shedding::DropOldest] {
        let memory = InMemory::new();
        let p = Pipeline::builder()
            .transport(memory.clone())
            .shedding(shedding)
            .build()
            .unwrap();
        let (t, s) = (TraceId([1; 16]), SpanId([2; 8]));
        for (name, cx) in [
            ("zero trace id", SpanContext::new(TraceId::INVALID, s)),
            ("zero span id", SpanContext::new(t, SpanId::INVALID)),
            ("both zero", SpanContext::INVALID),
        ] {
            let mut cx = cx;
            cx.trace_flags = TraceFlags::SAMPLED;
            let span = SpanData::with_context(name, cx);
            assert_eq!(
                p.record(span),
                Recorded::Dropped(DropReason::InvalidIds),
                "{name}, {shedding:?}"
            );
        }
        let mut unsampled = SpanContext::INVALID;
        unsampled.trace_flags = TraceFlags::NOT_SAMPLED;
        assert_eq!(
            p.record(SpanData::with_context("unsampled", unsampled)),
            Recorded::Dropped(DropReason::NotSampled)
        );
        let mut valid = SpanData::with_context("valid", SpanContext::new(t, s));
        assert!(matches!(
            p.record_in_place(&mut valid),
            Recorded::Queued | Recorded::QueuedEvicting
        ));
        let report = p.shutdown(Duration::from_secs(5));
        assert!(report.completed);
        let stats = report.stats;
        assert!(stats.is_balanced(), "{stats:?}");
        assert_eq!(stats.accepted, 5, "{stats:?}");
        assert_eq!(stats.dropped.invalid_ids, 3, "{stats:?}");
        assert_eq!(stats.dropped.not_sampled, 1, "{stats:?}");
        assert_eq!(stats.exported, 1, "{stats:?}");
        let names: Vec<String> = received(&memory).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["valid"], "{shedding:?}");
    }
}
