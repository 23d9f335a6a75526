//! Shared test helpers: the expected `opentelemetry-proto` message for a set
//! of spans, written independently of the encoder under test.
#![allow(dead_code, unreachable_pub)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;
use otlp_exporter::{
    Event, InstrumentationScope, KeyValue, Link, Resource, SpanContext, SpanData, SpanId, SpanKind,
    Status, StatusCode, TraceFlags, TraceId, Value,
};

pub fn any(v: &Value) -> pc::AnyValue {
    use pc::any_value::Value as V;
    pc::AnyValue {
        value: Some(match v {
            Value::Str(s) => V::StringValue(s.to_string()),
            Value::Bool(b) => V::BoolValue(*b),
            Value::I64(i) => V::IntValue(*i),
            Value::F64(f) => V::DoubleValue(*f),
            Value::Bytes(b) => V::BytesValue(b.clone()),
            Value::Array(items) => V::ArrayValue(pc::ArrayValue {
                values: items.iter().map(any).collect(),
            }),
        }),
    }
}

pub fn kvs(attrs: &[KeyValue]) -> Vec<pc::KeyValue> {
    attrs
        .iter()
        .map(|kv| pc::KeyValue {
            key: kv.key.to_string(),
            value: Some(any(&kv.value)),
            ..Default::default()
        })
        .collect()
}

/// The attributes as exported (those with an empty key left out), and how
/// many were left out (added to the owner's dropped count).
pub fn kvs_counted(attrs: &[KeyValue]) -> (Vec<pc::KeyValue>, u32) {
    let kept: Vec<KeyValue> = attrs
        .iter()
        .filter(|kv| !kv.key.is_empty())
        .cloned()
        .collect();
    let left_out = (attrs.len() - kept.len()) as u32;
    (kvs(&kept), left_out)
}

/// OTLP flags: the W3C trace flags, and bits 8-9 for "remote is known"
/// and "is remote" (of the span's parent for a span, of the linked context
/// for a link).
fn flags(trace_flags: u8, remote: bool) -> u32 {
    u32::from(trace_flags) | 0x100 | if remote { 0x200 } else { 0 }
}

pub fn span(s: &SpanData) -> pt::Span {
    // A status is exported when set; its description for an error only.
    let status_set = s.status.code != StatusCode::Unset;
    let shared = s.shared_attributes.map_or(&[][..], |a| a.attributes());
    let attributes = kvs_counted(
        &s.attributes
            .iter()
            .chain(
                shared
                    .iter()
                    // An own attribute wins over a shared one with its
                    // key; an empty key, dropped and counted whoever
                    // holds it, replaces nothing.
                    .filter(|kv| {
                        kv.key.is_empty() || !s.attributes.iter().any(|o| o.key == kv.key)
                    }),
            )
            .cloned()
            .collect::<Vec<_>>(),
    );
    pt::Span {
        trace_id: s.context.trace_id.0.to_vec(),
        span_id: s.context.span_id.0.to_vec(),
        trace_state: s.context.trace_state.to_string(),
        parent_span_id: if s.parent_span_id.is_valid() {
            s.parent_span_id.0.to_vec()
        } else {
            Vec::new()
        },
        flags: flags(s.context.trace_flags.0, s.parent_is_remote),
        name: s.name.to_string(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        // A span's own attributes, then its shared ones but those whose
        // key the span's own have.
        attributes: attributes.0,
        dropped_attributes_count: s.dropped_attributes_count + attributes.1,
        events: s
            .events
            .iter()
            .map(|e| pt::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.to_string(),
                attributes: kvs_counted(&e.attributes).0,
                dropped_attributes_count: e.dropped_attributes_count + kvs_counted(&e.attributes).1,
            })
            .collect(),
        dropped_events_count: s.dropped_events_count,
        links: s
            .links
            .iter()
            .map(|l| pt::span::Link {
                trace_id: l.context.trace_id.0.to_vec(),
                span_id: l.context.span_id.0.to_vec(),
                trace_state: l.context.trace_state.to_string(),
                attributes: kvs_counted(&l.attributes).0,
                dropped_attributes_count: l.dropped_attributes_count + kvs_counted(&l.attributes).1,
                flags: flags(l.context.trace_flags.0, l.context.is_remote),
            })
            .collect(),
        dropped_links_count: s.dropped_links_count,
        status: status_set.then(|| pt::Status {
            message: if s.status.code == StatusCode::Error {
                s.status.message.to_string()
            } else {
                String::new()
            },
            code: s.status.code as i32,
        }),
    }
}

fn scope(s: &InstrumentationScope) -> pc::InstrumentationScope {
    pc::InstrumentationScope {
        name: s.name.to_string(),
        version: s.version.to_string(),
        attributes: kvs_counted(&s.attributes).0,
        dropped_attributes_count: kvs_counted(&s.attributes).1,
    }
}

/// The request the encoder should produce: one resource, one `ScopeSpans`
/// per scope in order of first appearance, spans in order within a scope.
pub fn expected(
    resource: &Resource,
    groups: &[(&InstrumentationScope, Vec<&SpanData>)],
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: Some(pr::Resource {
                attributes: kvs_counted(&resource.attributes).0,
                dropped_attributes_count: resource.dropped_attributes_count
                    + kvs_counted(&resource.attributes).1,
                ..Default::default()
            }),
            scope_spans: groups
                .iter()
                .map(|(sc, spans)| pt::ScopeSpans {
                    scope: Some(scope(sc)),
                    spans: spans.iter().map(|s| span(s)).collect(),
                    schema_url: sc.schema_url.to_string(),
                })
                .collect(),
            schema_url: resource.schema_url.to_string(),
        }],
    }
}

/// A span that uses every field OTLP has.
pub fn rich_span(i: u64) -> SpanData {
    let mut s = SpanData::new(format!("operation-{i}"));
    s.context.trace_id = TraceId([i as u8 + 1; 16]);
    s.context.span_id = SpanId([i as u8 + 2; 8]);
    s.context.trace_state = "vendor=a,other=b".into();
    s.parent_is_remote = i.is_multiple_of(2);
    s.parent_span_id = if i.is_multiple_of(3) {
        SpanId::INVALID
    } else {
        SpanId([9; 8])
    };
    s.kind = [
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Internal,
        SpanKind::Producer,
        SpanKind::Consumer,
    ][i as usize % 5];
    s.start_time_unix_nano = 1_700_000_000_000_000_000 + i;
    s.end_time_unix_nano = 1_700_000_000_000_001_000 + i;
    s.attributes = vec![
        KeyValue::new("str", "value"),
        KeyValue::new("owned", format!("owned-{i}")),
        KeyValue::new("bool", i % 2 == 1),
        KeyValue::new("int", -(i as i64) - 1),
        KeyValue::new("big", i64::MAX),
        KeyValue::new("float", 1.5 + i as f64),
        KeyValue::new("bytes", vec![0u8, 1, 2, 255]),
        KeyValue::new("empty", ""),
        KeyValue::new("array", vec![Value::from("a"), Value::from("b")]),
        KeyValue::new(
            "nested",
            vec![Value::I64(1), Value::Array(vec![Value::Bool(true)])],
        ),
        KeyValue::new("unicode ключ", "значение ✓"),
    ];
    s.dropped_attributes_count = 3;
    s.events = vec![
        Event {
            name: "retry".into(),
            time_unix_nano: 1_700_000_000_000_000_500,
            attributes: vec![KeyValue::new("attempt", 2)],
            dropped_attributes_count: 1,
        },
        Event {
            name: "".into(),
            time_unix_nano: 0,
            attributes: vec![],
            dropped_attributes_count: 0,
        },
    ];
    s.dropped_events_count = 4;
    s.links = vec![Link {
        context: SpanContext {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([8; 8]),
            trace_flags: TraceFlags::NOT_SAMPLED,
            trace_state: "".into(),
            is_remote: true,
        },
        attributes: vec![KeyValue::new("link.kind", "follows")],
        dropped_attributes_count: 2,
    }];
    s.dropped_links_count = 5;
    s.status = match i % 3 {
        0 => Status::default(),
        1 => Status::ok(),
        _ => Status::error("boom \"quoted\"\nnewline"),
    };
    s
}

/// Every span in the requests an in-memory transport accepted, decoded with
/// `opentelemetry-proto` (protobuf or JSON, as each request says).
pub fn received(memory: &otlp_exporter::InMemory) -> Vec<pt::Span> {
    use prost::Message;
    memory
        .requests()
        .iter()
        .flat_map(|r| {
            let req: ExportTraceServiceRequest = match r.encoding {
                otlp_exporter::Encoding::Protobuf => {
                    ExportTraceServiceRequest::decode(&r.body[..]).expect("protobuf")
                }
                otlp_exporter::Encoding::Json => {
                    serde_json::from_slice(&r.body).expect("OTLP JSON")
                }
            };
            assert_eq!(
                req.resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len())
                    .sum::<usize>(),
                r.spans,
                "request's span count"
            );
            req.resource_spans
                .into_iter()
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Polls `cond` every millisecond for up to 10 seconds.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
