//! Round trips: spans encoded by our direct encoder, decoded with
//! `opentelemetry-proto` (protobuf through prost, JSON through its serde
//! mapping), compared field by field and, for protobuf, byte for byte with
//! prost's own encoding of the same message.

mod common;

use common::{expected, rich_span};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as PV;
use otlp_exporter::{Encoder, Encoding, InstrumentationScope, KeyValue, Resource, SpanData, Value};
use prost::Message;

fn resource() -> Resource {
    let mut r = Resource::new("round-trip");
    r.set(KeyValue::new("deployment.environment", "test"));
    r.dropped_attributes_count = 1;
    r
}

#[test]
fn protobuf_is_byte_identical_to_prost() {
    let encoder = Encoder::new(resource());
    let spans: Vec<SpanData> = (0..12).map(rich_span).collect();
    let out = encoder.encode(&spans, Encoding::Protobuf);
    assert_eq!(out.too_large, 0);
    assert_eq!(out.requests.len(), 1);
    let body = &out.requests[0].body;
    let want = expected(
        encoder.resource(),
        &[(encoder.scope(Default::default()), spans.iter().collect())],
    );
    let decoded = ExportTraceServiceRequest::decode(&body[..]).expect("decodes");
    assert_eq!(decoded, want);
    assert_eq!(*body, want.encode_to_vec(), "not the canonical encoding");
}

/// Attributes on both sides of every bound the encoder writes differently
/// (a one-byte length for the key and value together, a key under 128
/// bytes, the widest integers), each in a span of its own and all in one:
/// byte-identical to prost.
#[test]
fn attributes_across_the_encoders_size_bounds_are_byte_identical_to_prost() {
    let encoder = Encoder::new(resource());
    let mut spans = Vec::new();
    let mut all = SpanData::new("all");
    for key_len in [1, 2, 50, 97, 98, 99, 100, 101, 126, 127, 128, 129] {
        let key = "k".repeat(key_len);
        let mut values: Vec<Value> = [i64::MIN, -1, 0, 1, 127, 128, i64::MAX]
            .into_iter()
            .map(Value::I64)
            .chain([Value::Bool(true), Value::Bool(false)])
            .collect();
        for text_len in 0..=110usize.saturating_sub(key_len).max(3) {
            if key_len + text_len + 3 >= 97 || text_len < 3 {
                values.push(Value::from("v".repeat(text_len)));
            }
        }
        for value in values {
            let kv = KeyValue::new(key.clone(), value);
            let mut one = SpanData::new("one");
            one.attributes.push(kv.clone());
            spans.push(one);
            all.attributes.push(kv);
        }
    }
    spans.push(all);
    for chunk in spans.chunks(64) {
        let out = encoder.encode(chunk, Encoding::Protobuf);
        assert_eq!(out.too_large, 0);
        let want = expected(
            encoder.resource(),
            &[(encoder.scope(Default::default()), chunk.iter().collect())],
        );
        let body: Vec<u8> = out.requests.iter().flat_map(|r| r.body.clone()).collect();
        assert_eq!(out.requests.len(), 1);
        assert_eq!(body, want.encode_to_vec());
    }
}

#[test]
fn json_decodes_to_the_same_message() {
    let encoder = Encoder::new(resource());
    let spans: Vec<SpanData> = (0..12).map(rich_span).collect();
    let out = encoder.encode(&spans, Encoding::Json);
    assert_eq!(out.requests.len(), 1);
    let text = std::str::from_utf8(&out.requests[0].body).expect("JSON is UTF-8");
    assert!(!text.contains('\n'), "one request per line");
    let decoded: ExportTraceServiceRequest = serde_json::from_str(text).expect("valid OTLP JSON");
    let want = expected(
        encoder.resource(),
        &[(encoder.scope(Default::default()), spans.iter().collect())],
    );
    assert_eq!(decoded, want);
    // The spec's JSON rules, checked on the text itself.
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][1];
    assert_eq!(
        span["traceId"], "02020202020202020202020202020202",
        "ids as lowercase hex"
    );
    assert_eq!(span["kind"], 3, "enums as integers");
    assert_eq!(
        span["startTimeUnixNano"], "1700000000000000001",
        "64-bit integers as strings"
    );
    assert_eq!(span["attributes"][3]["value"]["intValue"], "-2");
    assert_eq!(span["attributes"][6]["value"]["bytesValue"], "AAEC/w==");
}

#[test]
fn spans_are_grouped_by_scope_in_order() {
    let mut encoder = Encoder::new(resource());
    let db = encoder.add_scope(InstrumentationScope::new("db", "1.0"));
    let http = encoder.add_scope(InstrumentationScope::new("http", "2.0"));
    assert_eq!(
        encoder.add_scope(InstrumentationScope::new("db", "1.0")),
        db,
        "deduplicated"
    );
    let mut spans: Vec<SpanData> = (0..6).map(rich_span).collect();
    for (i, s) in spans.iter_mut().enumerate() {
        s.scope = if i % 2 == 0 { db } else { http };
    }
    let out = encoder.encode(&spans, Encoding::Protobuf);
    let decoded = ExportTraceServiceRequest::decode(&out.requests[0].body[..]).unwrap();
    let want = expected(
        encoder.resource(),
        &[
            (encoder.scope(db), spans.iter().step_by(2).collect()),
            (
                encoder.scope(http),
                spans.iter().skip(1).step_by(2).collect(),
            ),
        ],
    );
    assert_eq!(decoded, want);
}

#[test]
fn non_finite_floats_survive_both_encodings() {
    let encoder = Encoder::new(resource());
    let mut s = SpanData::new("floats");
    s.attributes = vec![
        KeyValue::new("nan", f64::NAN),
        KeyValue::new("inf", f64::INFINITY),
        KeyValue::new("-inf", f64::NEG_INFINITY),
        KeyValue::new("tiny", 1e-300),
    ];
    // Protobuf carries the bits.
    let out = encoder.encode(std::slice::from_ref(&s), Encoding::Protobuf);
    let decoded = ExportTraceServiceRequest::decode(&out.requests[0].body[..]).unwrap();
    let attrs = &decoded.resource_spans[0].scope_spans[0].spans[0].attributes;
    let f = |i: usize| match attrs[i].value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(PV::DoubleValue(f)) => *f,
        other => panic!("not a double: {other:?}"),
    };
    assert!(f(0).is_nan());
    assert_eq!(f(1), f64::INFINITY);
    assert_eq!(f(2), f64::NEG_INFINITY);
    assert_eq!(f(3), 1e-300);
    // JSON writes non-finite values as strings (see `encode/json.rs`), so
    // that opentelemetry-proto's serde types read the line back: the
    // mapping's `{"doubleValue":"NaN"}` made that reader lose the whole
    // request.
    let out = encoder.encode(std::slice::from_ref(&s), Encoding::Json);
    let decoded: ExportTraceServiceRequest = serde_json::from_slice(&out.requests[0].body)
        .expect("opentelemetry-proto's serde reads it");
    let attrs = &decoded.resource_spans[0].scope_spans[0].spans[0].attributes;
    let v = |i: usize| attrs[i].value.as_ref().and_then(|v| v.value.clone());
    assert_eq!(v(0), Some(PV::StringValue("NaN".into())));
    assert_eq!(v(1), Some(PV::StringValue("Infinity".into())));
    assert_eq!(v(2), Some(PV::StringValue("-Infinity".into())));
    assert_eq!(v(3), Some(PV::DoubleValue(1e-300)));
    assert_eq!(
        decoded.resource_spans[0].scope_spans[0].spans[0].name,
        "floats"
    );
}

#[test]
fn non_finite_floats_in_events_links_and_arrays_keep_the_json_line_readable() {
    let mut resource = resource();
    resource.set(KeyValue::new("res.nan", f64::NAN));
    let encoder = Encoder::new(resource);
    let mut s = SpanData::new("deep-floats");
    s.attributes = vec![KeyValue::new(
        "arr",
        vec![
            Value::F64(f64::INFINITY),
            Value::F64(2.5),
            Value::F64(f64::NAN),
        ],
    )];
    s.events.push(otlp_exporter::Event {
        name: "e".into(),
        time_unix_nano: 1,
        attributes: vec![KeyValue::new("e.inf", f64::NEG_INFINITY)],
        dropped_attributes_count: 0,
    });
    let out = encoder.encode(std::slice::from_ref(&s), Encoding::Json);
    let decoded: ExportTraceServiceRequest =
        serde_json::from_slice(&out.requests[0].body).expect("readable");
    let rs = &decoded.resource_spans[0];
    let span = &rs.scope_spans[0].spans[0];
    let val = |kv: &opentelemetry_proto::tonic::common::v1::KeyValue| {
        kv.value.as_ref().and_then(|v| v.value.clone())
    };
    let res = rs.resource.as_ref().unwrap();
    let nan = res
        .attributes
        .iter()
        .find(|kv| kv.key == "res.nan")
        .unwrap();
    assert_eq!(val(nan), Some(PV::StringValue("NaN".into())));
    let Some(PV::ArrayValue(arr)) = val(&span.attributes[0]) else {
        panic!("{:?}", span.attributes[0]);
    };
    let items: Vec<_> = arr.values.iter().map(|v| v.value.clone()).collect();
    assert_eq!(
        items,
        [
            Some(PV::StringValue("Infinity".into())),
            Some(PV::DoubleValue(2.5)),
            Some(PV::StringValue("NaN".into()))
        ]
    );
    assert_eq!(
        val(&span.events[0].attributes[0]),
        Some(PV::StringValue("-Infinity".into()))
    );
}

#[test]
fn empty_input_gives_no_request() {
    let encoder = Encoder::new(resource());
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let out = encoder.encode(&[], encoding);
        assert!(out.requests.is_empty());
        assert_eq!(out.too_large, 0);
    }
}

#[test]
fn batches_over_the_cap_are_split_and_oversized_spans_counted() {
    let encoder = Encoder::new(resource()).with_max_request_bytes(20 * 1024);
    let mut spans: Vec<SpanData> = (0..40)
        .map(|i| {
            let mut s = rich_span(i);
            s.attributes
                .push(KeyValue::new("payload", "x".repeat(1000)));
            s
        })
        .collect();
    let mut huge = SpanData::new("huge");
    huge.attributes
        .push(KeyValue::new("blob", Value::Bytes(vec![0; 200 * 1024])));
    spans.insert(7, huge);
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let out = encoder.encode(&spans, encoding);
        assert_eq!(out.too_large, 1, "{encoding:?}");
        assert!(out.requests.len() > 1, "{encoding:?}: not split");
        let mut names = Vec::new();
        for r in &out.requests {
            assert!(
                r.body.len() <= 70 * 1024,
                "{encoding:?}: request of {} bytes",
                r.body.len()
            );
            let decoded: ExportTraceServiceRequest = match encoding {
                Encoding::Protobuf => ExportTraceServiceRequest::decode(&r.body[..]).unwrap(),
                Encoding::Json => serde_json::from_slice(&r.body).unwrap(),
            };
            let spans = &decoded.resource_spans[0].scope_spans[0].spans;
            assert_eq!(spans.len(), r.spans);
            names.extend(spans.iter().map(|s| s.name.clone()));
        }
        let want: Vec<String> = (0..40).map(|i| format!("operation-{i}")).collect();
        assert_eq!(names, want, "{encoding:?}: every span once, in order");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            // Long strings and byte runs too: their lengths (and those of
            // the messages around them) take a second varint byte.
            prop_oneof![3 => ".{0,12}", 1 => "[a-z]{120,300}"].prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::I64),
            // Non-finite values are JSON strings: tested on their own.
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::F64),
            prop_oneof![
                3 => prop::collection::vec(any::<u8>(), 0..8),
                1 => prop::collection::vec(any::<u8>(), 120..300),
            ]
            .prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(Value::Array)
        })
    }

    fn span() -> impl Strategy<Value = SpanData> {
        (
            ".{0,16}",
            any::<[u8; 16]>(),
            any::<[u8; 8]>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(
                (prop_oneof![4 => ".{0,8}", 1 => "[a-z]{126,140}"], value()),
                0..6,
            ),
            any::<u32>(),
            (
                0usize..6,
                prop::option::of(any::<[u8; 8]>()),
                prop_oneof![Just(String::new()), "[a-z]{1,8}=[a-z0-9]{1,12}"],
                prop_oneof![Just(0u64), any::<u64>()],
                prop_oneof![Just(0u32), any::<u32>()],
                prop_oneof![Just(0u32), any::<u32>()],
                // How many of the attributes (from the end) are shared.
                prop_oneof![2 => Just(0usize), 1 => 1usize..6],
            ),
        )
            .prop_map(|(name, t, sp, start, end, attrs, dropped, more)| {
                let (
                    kind,
                    parent,
                    trace_state,
                    start_or_zero,
                    dropped_events,
                    dropped_links,
                    shared,
                ) = more;
                let mut s = SpanData::new(name);
                s.context.trace_id = otlp_exporter::TraceId(t);
                s.context.span_id = otlp_exporter::SpanId(sp);
                s.context.trace_state = trace_state.into();
                s.dropped_events_count = dropped_events;
                s.dropped_links_count = dropped_links;
                s.kind = [
                    otlp_exporter::SpanKind::Unspecified,
                    otlp_exporter::SpanKind::Internal,
                    otlp_exporter::SpanKind::Server,
                    otlp_exporter::SpanKind::Client,
                    otlp_exporter::SpanKind::Producer,
                    otlp_exporter::SpanKind::Consumer,
                ][kind];
                if let Some(p) = parent {
                    s.parent_span_id = otlp_exporter::SpanId(p);
                }
                let start = if start_or_zero == 0 { 0 } else { start };
                s.start_time_unix_nano = start;
                s.end_time_unix_nano = end;
                s.attributes = attrs
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect();
                if shared > 0 {
                    // Encoded once, copied into the span's encoding: the
                    // same bytes as if the span held them itself.
                    let own = s.attributes.len().saturating_sub(shared);
                    let tail = s.attributes.split_off(own);
                    s.shared_attributes = Some(otlp_exporter::SharedAttributes::leak(tail));
                }
                s.dropped_attributes_count = dropped;
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_spans_round_trip(spans in prop::collection::vec(span(), 1..6)) {
            let encoder = Encoder::new(Resource::new("prop"));
            let want = expected(encoder.resource(), &[(encoder.scope(Default::default()), spans.iter().collect())]);
            let pb = encoder.encode(&spans, Encoding::Protobuf);
            prop_assert_eq!(&pb.requests[0].body, &want.encode_to_vec());
            let js = encoder.encode(&spans, Encoding::Json);
            let decoded: ExportTraceServiceRequest = serde_json::from_slice(&js.requests[0].body).unwrap();
            prop_assert_eq!(decoded, want);
        }
    }
}
