//! Encoding values a user may legitimately build but no reader should have
//! to survive (issue 12, item 10): attribute values nested arbitrarily deep.
//! Whatever is exported decodes with `prost` and with
//! `opentelemetry-proto`'s serde types at their default limits; what is too
//! deep is left out and counted; nothing recurses without bound.

mod common;

use std::time::Duration;

use common::expected;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1 as pt;
use otlp_exporter::{
    Encoder, Encoding, Event, InMemory, InstrumentationScope, KeyValue, Link, Pipeline, Resource,
    SpanContext, SpanData, SpanId, TraceId, Value,
};
use prost::Message;

/// The documented limit (`encode::MAX_VALUE_DEPTH`).
const MAX_DEPTH: usize = 32;

/// An array nested `depth` deep (`depth` 0: a scalar), built in a loop.
fn nested(depth: usize) -> Value {
    let mut v = Value::from("leaf");
    for i in 0..depth {
        v = Value::Array(vec![Value::I64(i as i64), v]);
    }
    v
}

/// Drops a value of any depth without recursion (the derived drop recurses
/// once per level; that is the user's own business, not the encoder's).
fn dismantle(v: Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        if let Value::Array(items) = v {
            stack.extend(items);
        }
    }
}

fn dismantle_span(mut s: SpanData) {
    for kv in s.attributes.drain(..) {
        dismantle(kv.value);
    }
    for e in &mut s.events {
        for kv in e.attributes.drain(..) {
            dismantle(kv.value);
        }
    }
    for l in &mut s.links {
        for kv in l.attributes.drain(..) {
            dismantle(kv.value);
        }
    }
}

/// A span with a value nested `depth` deep in its attributes, an event's
/// and a link's, beside a plain attribute in each.
fn span_with(depth: usize) -> SpanData {
    let mut s = SpanData::new("deep");
    s.attributes = vec![
        KeyValue::new("plain", 1),
        KeyValue::new("deep", nested(depth)),
    ];
    s.dropped_attributes_count = 2;
    s.events.push(Event {
        name: "e".into(),
        time_unix_nano: 5,
        attributes: vec![
            KeyValue::new("deep", nested(depth)),
            KeyValue::new("plain", true),
        ],
        dropped_attributes_count: 0,
    });
    s.links.push(Link {
        context: SpanContext::new(TraceId([3; 16]), SpanId([4; 8])),
        attributes: vec![KeyValue::new("deep", nested(depth))],
        dropped_attributes_count: u32::MAX,
    });
    s
}

fn resource_with(depth: usize) -> Resource {
    let mut r = Resource::new("hostile-encode");
    r.set(KeyValue::new("res.deep", nested(depth)));
    r
}

fn scope_with(depth: usize) -> InstrumentationScope {
    let mut sc = InstrumentationScope::new("deep-scope", "1");
    sc.attributes = vec![KeyValue::new("scope.deep", nested(depth))];
    sc
}

/// Decodes a request both ways (default limits) and checks they agree.
fn decode_both(encoder: &Encoder, spans: &[SpanData]) -> ExportTraceServiceRequest {
    let pb = encoder.encode(spans, Encoding::Protobuf);
    let from_pb = ExportTraceServiceRequest::decode(&pb.requests[0].body[..])
        .expect("prost decodes the protobuf");
    let js = encoder.encode(spans, Encoding::Json);
    let from_js: ExportTraceServiceRequest =
        serde_json::from_slice(&js.requests[0].body).expect("serde decodes the JSON");
    assert_eq!(from_pb, from_js, "both encodings carry the same request");
    from_pb
}

#[test]
fn values_nested_to_the_limit_are_exported_and_decode_everywhere() {
    let mut encoder = Encoder::new(resource_with(MAX_DEPTH));
    let scope = encoder.add_scope(scope_with(MAX_DEPTH));
    let mut s = span_with(MAX_DEPTH);
    s.scope = scope;
    let want = expected(encoder.resource(), &[(encoder.scope(scope), vec![&s])]);
    let pb = encoder.encode(std::slice::from_ref(&s), Encoding::Protobuf);
    assert_eq!(
        pb.requests[0].body,
        want.encode_to_vec(),
        "byte-identical to prost"
    );
    assert_eq!(decode_both(&encoder, std::slice::from_ref(&s)), want);
}

#[test]
fn values_nested_past_the_limit_are_left_out_and_counted() {
    let mut encoder = Encoder::new(resource_with(MAX_DEPTH + 1));
    let scope = encoder.add_scope(scope_with(MAX_DEPTH + 1));
    let mut s = span_with(MAX_DEPTH + 1);
    s.scope = scope;
    let got = decode_both(&encoder, std::slice::from_ref(&s));

    // What a reader sees: the span as if the deep attributes had been cut
    // by a limit, each counted where it was (saturating at u32::MAX).
    let mut cut = s.clone();
    cut.attributes.remove(1);
    cut.dropped_attributes_count = 3;
    cut.events[0].attributes.remove(0);
    cut.events[0].dropped_attributes_count = 1;
    cut.links[0].attributes.clear();
    let mut resource = encoder.resource().clone();
    resource.attributes.retain(|kv| kv.key != "res.deep");
    resource.dropped_attributes_count = 1;
    let mut scope_cut = encoder.scope(scope).clone();
    scope_cut.attributes.clear();
    let mut want = expected(&resource, &[(&scope_cut, vec![&cut])]);
    want.resource_spans[0].scope_spans[0]
        .scope
        .as_mut()
        .unwrap()
        .dropped_attributes_count = 1;
    assert_eq!(got, want);
    let span: &pt::Span = &got.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.links[0].dropped_attributes_count, u32::MAX);
}

/// Runs `f` on a thread with a 256 KiB stack, in a child process under a
/// watchdog: the encoders must use a fixed, small stack whatever a value
/// holds.
fn on_a_small_stack(f: impl FnOnce() + Send + 'static) {
    test_watchdog::isolate(Duration::from_secs(120), || {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no stack overflow");
    });
}

/// Shared attributes (encoded once, see `SharedAttributes`) nested past the
/// limit are left out and counted as the span's own are, in both
/// encodings; a million levels are measured and encoded in a small stack.
#[test]
fn shared_attributes_nested_too_deep_are_left_out_and_counted() {
    on_a_small_stack(|| {
        let encoder = Encoder::new(Resource::new("shared-deep"));
        for depth in [MAX_DEPTH + 1, 1_000_000] {
            let shared = otlp_exporter::SharedAttributes::leak(vec![
                KeyValue::new("shared.deep", nested(depth)),
                KeyValue::new("shared.plain", "kept"),
            ]);
            let mut s = SpanData::new("shared");
            s.attributes = vec![KeyValue::new("own", 1)];
            s.dropped_attributes_count = 2;
            s.shared_attributes = Some(shared);
            let got = decode_both(&encoder, std::slice::from_ref(&s));
            let span = &got.resource_spans[0].scope_spans[0].spans[0];
            let keys: Vec<&str> = span.attributes.iter().map(|kv| &*kv.key).collect();
            assert_eq!(keys, ["own", "shared.plain"], "depth {depth}");
            assert_eq!(span.dropped_attributes_count, 3, "depth {depth}");
            // Past a limit the set is copied into the span's own
            // list: the deep one is counted, not copied.
            let limits = otlp_exporter::SpanLimits {
                attribute_value_length: Some(3),
                ..Default::default()
            };
            limits.apply(&mut s);
            assert!(s.shared_attributes.is_none());
            assert_eq!(
                s.attributes,
                [
                    KeyValue::new("own", 1),
                    KeyValue::new("shared.plain", "kep")
                ]
            );
            assert_eq!(s.dropped_attributes_count, 3, "depth {depth}");
        }
    });
}

/// A million levels, encoded on a thread with a 256 KiB stack: the encoders
/// use a fixed, small stack whatever the value holds.
#[test]
fn a_value_nested_a_million_deep_is_encoded_in_a_small_stack() {
    on_a_small_stack(|| {
        let encoder = Encoder::new(Resource::new("million"));
        let s = span_with(1_000_000);
        let got = decode_both(&encoder, std::slice::from_ref(&s));
        let span = &got.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.attributes.len(), 1);
        assert_eq!(span.attributes[0].key, "plain");
        assert_eq!(span.dropped_attributes_count, 3);
        assert_eq!(span.events[0].dropped_attributes_count, 1);
        assert_eq!(span.events[0].attributes[0].key, "plain");
        dismantle_span(s);
    });
}

/// Through the pipeline (encoding on the recording thread), both
/// encodings: the depths (14 000 overflowed protobuf, 20 000 JSON)
/// on a thread whose 8 MiB stack is enough for the user's own drop of the
/// value, which the pipeline does after encoding.
#[test]
fn deep_values_recorded_through_a_pipeline_are_exported_without_them() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let memory = InMemory::new().with_encoding(encoding);
            let p = Pipeline::builder()
                .transport(memory.clone())
                .build()
                .unwrap();
            let p2 = p.clone();
            std::thread::Builder::new()
                .stack_size(8 * 1024 * 1024)
                .spawn(move || {
                    for depth in [14_000, 20_000] {
                        let mut s = SpanData::new(format!("deep-{depth}"));
                        s.attributes = vec![
                            KeyValue::new("deep", nested(depth)),
                            KeyValue::new("plain", "kept"),
                        ];
                        p2.record(s);
                    }
                })
                .unwrap()
                .join()
                .expect("no overflow while recording");
            let stats = p.shutdown(Duration::from_secs(10)).stats;
            assert_eq!(stats.exported, 2, "{encoding:?}: {stats:?}");
            assert!(stats.is_balanced());
            for r in memory.requests() {
                let req: ExportTraceServiceRequest = match encoding {
                    Encoding::Protobuf => ExportTraceServiceRequest::decode(&r.body[..]).unwrap(),
                    Encoding::Json => serde_json::from_slice(&r.body).unwrap(),
                };
                for span in &req.resource_spans[0].scope_spans[0].spans {
                    assert_eq!(span.attributes.len(), 1, "{}", span.name);
                    assert_eq!(span.attributes[0].key, "plain");
                    assert_eq!(span.dropped_attributes_count, 1);
                }
            }
        }
    });
}

/// Wide is not deep: a value with a million elements at depth 2 is kept.
#[test]
fn wide_shallow_values_are_kept() {
    let encoder = Encoder::new(Resource::new("wide"));
    let mut s = SpanData::new("wide");
    s.attributes = vec![KeyValue::new(
        "wide",
        Value::Array(vec![Value::Array(vec![Value::I64(1); 10]); 100_000]),
    )];
    let got = decode_both(&encoder, std::slice::from_ref(&s));
    assert_eq!(
        got.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .len(),
        1
    );
}

/// Schema URLs that JSON must escape (each control byte takes six) still
/// leave every request under the size cap.
#[test]
fn escaped_schema_urls_never_push_a_request_over_the_cap() {
    let mut resource = Resource::new("escapes");
    resource.schema_url = "\u{1}".repeat(5_000).into();
    let mut encoder = Encoder::new(resource).with_max_request_bytes(64 * 1024);
    let mut scope = InstrumentationScope::new("s", "1");
    scope.schema_url = "\"".repeat(3_000).into();
    let id = encoder.add_scope(scope);
    let spans: Vec<SpanData> = (0..2_000)
        .map(|i| {
            let mut s = SpanData::new(format!("span-{i}"));
            s.scope = id;
            s
        })
        .collect();
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let out = encoder.encode(&spans, encoding);
        assert_eq!(out.too_large, 0);
        assert_eq!(out.requests.iter().map(|r| r.spans).sum::<usize>(), 2_000);
        for r in &out.requests {
            assert!(r.body.len() <= 64 * 1024, "{encoding:?}: {}", r.body.len());
        }
    }
}

/// Many scopes with large headers: a request pays only for the scopes it
/// carries, so spans are not counted too large because of scopes they do
/// not use (the encoder once reserved room for every scope it knew).
#[test]
fn many_large_scopes_do_not_crowd_out_the_spans() {
    let mut encoder = Encoder::new(Resource::new("scopes")).with_max_request_bytes(1 << 20);
    let mut ids = Vec::new();
    for i in 0..100 {
        let mut sc = InstrumentationScope::new(format!("scope-{i}"), "1");
        sc.attributes = vec![KeyValue::new("blob", "x".repeat(20 * 1024))];
        ids.push(encoder.add_scope(sc));
    }
    let spans: Vec<SpanData> = (0..1_000)
        .map(|i| {
            let mut s = SpanData::new(format!("span-{i}"));
            s.scope = ids[i % ids.len()];
            s
        })
        .collect();
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let out = encoder.encode(&spans, encoding);
        assert_eq!(out.too_large, 0, "{encoding:?}");
        let mut names = Vec::new();
        for r in &out.requests {
            assert!(r.body.len() <= 1 << 20, "{encoding:?}: {}", r.body.len());
            let req: ExportTraceServiceRequest = match encoding {
                Encoding::Protobuf => ExportTraceServiceRequest::decode(&r.body[..]).unwrap(),
                Encoding::Json => serde_json::from_slice(&r.body).unwrap(),
            };
            let carried: usize = req.resource_spans[0]
                .scope_spans
                .iter()
                .map(|ss| ss.spans.len())
                .sum();
            assert_eq!(carried, r.spans);
            names.extend(
                req.resource_spans[0]
                    .scope_spans
                    .iter()
                    .flat_map(|ss| ss.spans.iter().map(|s| s.name.clone())),
            );
        }
        names.sort();
        let mut want: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
        want.sort();
        assert_eq!(names, want, "{encoding:?}: every span once");
    }
    // A scope whose header alone is over the cap makes its spans too large,
    // and only those.
    let mut huge = InstrumentationScope::new("huge", "1");
    huge.attributes = vec![KeyValue::new("blob", "x".repeat(2 << 20))];
    let huge = encoder.add_scope(huge);
    let mut s = SpanData::new("in-huge");
    s.scope = huge;
    let out = encoder.encode(&[s, SpanData::new("default")], Encoding::Protobuf);
    assert_eq!((out.too_large, out.requests.len()), (1, 1));
}

/// Adding scopes stays cheap however many there are (it was a linear search
/// per scope: 20 000 tracers took seconds), and equal scopes keep one id.
#[test]
fn a_hundred_thousand_scopes_are_added_and_found_again() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        let mut encoder = Encoder::new(Resource::new("scopes"));
        let ids: Vec<_> = (0..100_000)
            .map(|i| encoder.add_scope(InstrumentationScope::new(format!("s-{i}"), "1")))
            .collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 100_000);
        for (i, id) in ids.iter().enumerate().step_by(997) {
            assert_eq!(
                encoder.add_scope(InstrumentationScope::new(format!("s-{i}"), "1")),
                *id
            );
        }
        // Same name and version, other attributes: another scope.
        let mut other = InstrumentationScope::new("s-5", "1");
        other.attributes = vec![KeyValue::new("k", 1)];
        let id = encoder.add_scope(other.clone());
        assert_ne!(id, ids[5]);
        assert_eq!(encoder.add_scope(other), id);
        assert_eq!(encoder.scope(id).attributes.len(), 1);
    });
}

/// The value-length limit walks values without recursion too (it is applied
/// on the recording thread, before encoding).
#[test]
fn the_value_length_limit_handles_a_value_nested_a_million_deep() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let limits = otlp_exporter::SpanLimits {
                    attribute_value_length: Some(2),
                    ..Default::default()
                };
                let mut s = span_with(1_000_000);
                s.attributes.push(KeyValue::new(
                    "shallow",
                    vec![Value::from("abcdef"), Value::from(vec![Value::from("ééé")])],
                ));
                limits.apply(&mut s);
                assert_eq!(
                    s.attributes[2].value,
                    // Two characters: "éé" is within the limit.
                    Value::from(vec![
                        Value::from("ab"),
                        Value::from(vec![Value::from("éé")])
                    ])
                );
                // The leaf a million levels down was cut too.
                let mut v = &s.attributes[1].value;
                while let Value::Array(items) = v {
                    v = &items[1];
                }
                assert_eq!(*v, Value::from("le"));
                dismantle_span(s);
            })
            .unwrap()
            .join()
            .expect("no overflow");
    });
}
