//! Shared test helpers: a pipeline into memory, a subscriber with the
//! layer, and the OTLP we produced decoded with `opentelemetry-proto`.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1 as pt;
use otlp_exporter::{InMemory, Pipeline, SpanLimits};
use otlp_tracing::OtlpLayer;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

pub use pt::Span;

/// A pipeline into memory with the given limits.
pub fn pipeline_with(limits: SpanLimits) -> (Pipeline, InMemory) {
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .limits(limits)
        .build()
        .expect("valid settings");
    (pipeline, memory)
}

pub fn pipeline() -> (Pipeline, InMemory) {
    pipeline_with(SpanLimits::default())
}

/// Runs `body` with a subscriber made of the registry and `layer`.
pub fn with_layer<R>(layer: OtlpLayer, body: impl FnOnce() -> R) -> R {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, body)
}

/// Shuts the pipeline down and returns every span it exported, decoded.
pub fn finish(pipeline: &Pipeline, memory: &InMemory) -> Vec<Span> {
    let report = pipeline.shutdown(Duration::from_secs(10));
    assert!(report.completed, "shutdown completed: {report:?}");
    assert!(report.stats.is_balanced(), "{:?}", report.stats);
    received(memory)
}

/// Every span in the requests the transport accepted, decoded from
/// protobuf with `opentelemetry-proto`.
pub fn received(memory: &InMemory) -> Vec<Span> {
    memory
        .requests()
        .iter()
        .flat_map(|r| {
            let req = ExportTraceServiceRequest::decode(&r.body[..]).expect("protobuf");
            req.resource_spans
                .into_iter()
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every request decoded (for scope checks).
pub fn requests(memory: &InMemory) -> Vec<ExportTraceServiceRequest> {
    memory
        .requests()
        .iter()
        .map(|r| ExportTraceServiceRequest::decode(&r.body[..]).expect("protobuf"))
        .collect()
}

/// The one span named `name`.
pub fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "one span named {name:?} in {:?}",
        names(spans)
    );
    found[0]
}

pub fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

pub fn value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

pub fn int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match value(attrs, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

pub fn string<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match value(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

pub fn keys(attrs: &[KeyValue]) -> Vec<&str> {
    attrs.iter().map(|kv| kv.key.as_str()).collect()
}
