//! Shared test helpers: a processor that keeps the SDK's own `SpanData`,
//! the OTLP message each SDK span should become (written from the SDK's
//! model directly, independently of the bridge's conversion), and the
//! decoding of what the in-memory transport received.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext as ApiContext, SpanId as ApiSpanId, SpanKind as ApiKind, Status as ApiStatus,
    TraceFlags as ApiFlags, TraceId as ApiTraceId, TraceState,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::trace::v1 as pt;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks, SpanProcessor};
use otlp_exporter::InMemory;
use prost::Message;

/// Keeps a copy of every span the SDK ends (beside the bridge, on the same
/// provider), so tests compare what was recorded with what was exported.
#[derive(Debug, Default, Clone)]
pub struct Capture(pub Arc<Mutex<Vec<SpanData>>>);

impl Capture {
    pub fn spans(&self) -> Vec<SpanData> {
        self.0.lock().unwrap().clone()
    }
}

impl SpanProcessor for Capture {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap().push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// One exported span with the scope (and its schema URL) and the resource
/// attributes it was exported under.
#[derive(Debug, Clone)]
pub struct Exported {
    pub span: pt::Span,
    pub scope: pc::InstrumentationScope,
    pub scope_schema_url: String,
    pub resource: Vec<pc::KeyValue>,
}

/// Every span the transport received, decoded from protobuf.
pub fn exported(memory: &InMemory) -> Vec<Exported> {
    let mut out = Vec::new();
    for request in memory.requests() {
        let decoded =
            ExportTraceServiceRequest::decode(&request.body[..]).expect("valid OTLP protobuf");
        for rs in decoded.resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                let scope = ss.scope.clone().unwrap_or_default();
                for span in ss.spans {
                    out.push(Exported {
                        span,
                        scope: scope.clone(),
                        scope_schema_url: ss.schema_url.clone(),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The exported spans by span id.
pub fn by_span_id(exported: &[Exported]) -> HashMap<Vec<u8>, Exported> {
    exported
        .iter()
        .map(|e| (e.span.span_id.clone(), e.clone()))
        .collect()
}

pub fn any(v: &opentelemetry::Value) -> pc::AnyValue {
    use opentelemetry::{Array, Value as V};
    use pc::any_value::Value as A;
    let array = |values: Vec<pc::AnyValue>| A::ArrayValue(pc::ArrayValue { values });
    let one = |v: A| pc::AnyValue { value: Some(v) };
    one(match v {
        V::Bool(b) => A::BoolValue(*b),
        V::I64(i) => A::IntValue(*i),
        V::F64(f) => A::DoubleValue(*f),
        V::String(s) => A::StringValue(s.as_str().to_owned()),
        V::Array(Array::Bool(items)) => {
            array(items.iter().map(|b| one(A::BoolValue(*b))).collect())
        }
        V::Array(Array::I64(items)) => array(items.iter().map(|i| one(A::IntValue(*i))).collect()),
        V::Array(Array::F64(items)) => {
            array(items.iter().map(|f| one(A::DoubleValue(*f))).collect())
        }
        V::Array(Array::String(items)) => array(
            items
                .iter()
                .map(|s| one(A::StringValue(s.as_str().to_owned())))
                .collect(),
        ),
        other => panic!("a value type this test does not know: {other:?}"),
    })
}

pub fn kvs(attrs: &[opentelemetry::KeyValue]) -> Vec<pc::KeyValue> {
    attrs
        .iter()
        .map(|kv| pc::KeyValue {
            key: kv.key.as_str().to_owned(),
            value: Some(any(&kv.value)),
            ..Default::default()
        })
        .collect()
}

pub fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn kind(k: &ApiKind) -> i32 {
    match k {
        ApiKind::Internal => 1,
        ApiKind::Server => 2,
        ApiKind::Client => 3,
        ApiKind::Producer => 4,
        ApiKind::Consumer => 5,
    }
}

/// OTLP flags: the W3C flags, bit 8 "remote-ness known", bit 9 "remote".
fn flags(trace_flags: ApiFlags, remote: bool) -> u32 {
    u32::from(trace_flags.to_u8()) | 0x100 | if remote { 0x200 } else { 0 }
}

/// The OTLP span an SDK span must become (OTLP's rules, from the SDK's
/// fields; not through the bridge).
pub fn expected_span(s: &SpanData) -> pt::Span {
    let c = &s.span_context;
    pt::Span {
        trace_id: c.trace_id().to_bytes().to_vec(),
        span_id: c.span_id().to_bytes().to_vec(),
        trace_state: c.trace_state().header(),
        parent_span_id: if s.parent_span_id == ApiSpanId::INVALID {
            Vec::new()
        } else {
            s.parent_span_id.to_bytes().to_vec()
        },
        flags: flags(c.trace_flags(), s.parent_span_is_remote),
        name: s.name.to_string(),
        kind: kind(&s.span_kind),
        start_time_unix_nano: nanos(s.start_time),
        end_time_unix_nano: nanos(s.end_time),
        attributes: kvs(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .iter()
            .map(|e| pt::span::Event {
                time_unix_nano: nanos(e.timestamp),
                name: e.name.to_string(),
                attributes: kvs(&e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.events.dropped_count,
        links: s
            .links
            .iter()
            .map(|l| pt::span::Link {
                trace_id: l.span_context.trace_id().to_bytes().to_vec(),
                span_id: l.span_context.span_id().to_bytes().to_vec(),
                trace_state: l.span_context.trace_state().header(),
                attributes: kvs(&l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: flags(l.span_context.trace_flags(), l.span_context.is_remote()),
            })
            .collect(),
        dropped_links_count: s.links.dropped_count,
        status: match &s.status {
            ApiStatus::Unset => None,
            ApiStatus::Ok => Some(pt::Status {
                message: String::new(),
                code: 1,
            }),
            ApiStatus::Error { description } => Some(pt::Status {
                message: description.to_string(),
                code: 2,
            }),
        },
    }
}

/// An SDK span built by hand (for calling the processor directly).
pub fn sdk_span(name: &'static str, seed: u8) -> SpanData {
    let now = SystemTime::now();
    SpanData {
        span_context: ApiContext::new(
            ApiTraceId::from_bytes([seed.max(1); 16]),
            ApiSpanId::from_bytes([seed.max(1); 8]),
            ApiFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: ApiSpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: ApiKind::Internal,
        name: name.into(),
        start_time: now,
        end_time: now,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: ApiStatus::Unset,
        instrumentation_scope: opentelemetry::InstrumentationScope::builder("hand-made").build(),
    }
}
