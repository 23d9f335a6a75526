//! From the OpenTelemetry SDK's span model to `otlp-exporter`'s: every
//! field OTLP carries, nothing lost, nothing that can panic.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace as api;
use opentelemetry_sdk::trace as sdk;
use otlp_exporter::{
    Event, InstrumentationScope, KeyValue, Link, Priority, Resource, ScopeId, SpanContext,
    SpanData, SpanId, SpanKind, Status, StatusCode, Str, TraceFlags, TraceId, Value,
};

/// Converts a span the SDK finished into the pipeline's model, under the
/// instrumentation scope `scope` (an id from
/// [`Pipeline::scope`](otlp_exporter::Pipeline::scope); the
/// [`OtlpSpanProcessor`](crate::OtlpSpanProcessor) finds it for you from
/// the span's own scope, see [`to_scope`]).
///
/// Field by field: trace and span ids, trace flags, `tracestate` (as its
/// header text), the parent span id, whether the parent is remote (OTLP
/// carries it in the span's flags, which our model writes from
/// `context.is_remote`), kind, name, start and end times (nanoseconds since
/// the Unix epoch; a time before the epoch becomes 0), attributes of every
/// value type (arrays included), events with their attributes and dropped
/// counts, links with their contexts (remote or not), attributes and
/// dropped counts, the span's dropped attribute, event and link counts, and
/// the status with its description.
///
/// ```
/// use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
/// use opentelemetry::{InstrumentationScope, KeyValue};
/// use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
/// use std::time::{Duration, UNIX_EPOCH};
///
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
///     span_kind: SpanKind::Server,
///     name: "GET /".into(),
///     start_time: UNIX_EPOCH + Duration::from_secs(1),
///     end_time: UNIX_EPOCH + Duration::from_secs(2),
///     attributes: vec![KeyValue::new("http.response.status_code", 200)],
///     dropped_attributes_count: 0,
///     events: SpanEvents::default(),
///     links: SpanLinks::default(),
///     status: Status::Ok,
///     instrumentation_scope: InstrumentationScope::builder("app").build(),
/// };
/// let ours = otlp_sdk_bridge::to_span_data(span, otlp_exporter::ScopeId::DEFAULT);
/// assert_eq!(ours.name, "GET /");
/// assert_eq!(ours.kind, otlp_exporter::SpanKind::Server);
/// assert_eq!(ours.end_time_unix_nano, 2_000_000_000);
/// assert_eq!(ours.attributes[0].value, otlp_exporter::Value::I64(200));
/// ```
pub fn to_span_data(span: sdk::SpanData, scope: ScopeId) -> SpanData {
    SpanData {
        context: to_context(&span.span_context),
        parent_span_id: SpanId(span.parent_span_id.to_bytes()),
        // OTLP's span flags say whether the *parent* is remote (bits 8, 9).
        parent_is_remote: span.parent_span_is_remote,
        name: span.name,
        kind: to_kind(&span.span_kind),
        start_time_unix_nano: unix_nanos(span.start_time),
        end_time_unix_nano: unix_nanos(span.end_time),
        attributes: span.attributes.into_iter().map(to_key_value).collect(),
        dropped_attributes_count: span.dropped_attributes_count,
        events: span.events.events.into_iter().map(to_event).collect(),
        dropped_events_count: span.events.dropped_count,
        links: span.links.links.into_iter().map(to_link).collect(),
        dropped_links_count: span.links.dropped_count,
        status: to_status(span.status),
        priority: Priority::Normal,
        scope,
        shared_attributes: None,
    }
}

/// Converts an SDK instrumentation scope (a tracer's name, version, schema
/// URL and attributes) into the pipeline's, for
/// [`Pipeline::scope`](otlp_exporter::Pipeline::scope). A missing version
/// or schema URL becomes the empty string (how OTLP writes "none").
///
/// ```
/// let sdk_scope = opentelemetry::InstrumentationScope::builder("checkout")
///     .with_version("1.2.0")
///     .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
///     .with_attributes([opentelemetry::KeyValue::new("team", "payments")])
///     .build();
/// let scope = otlp_sdk_bridge::to_scope(&sdk_scope);
/// assert_eq!(scope.name, "checkout");
/// assert_eq!(scope.version, "1.2.0");
/// assert_eq!(scope.schema_url, "https://opentelemetry.io/schemas/1.26.0");
/// assert_eq!(scope.attributes, vec![otlp_exporter::KeyValue::new("team", "payments")]);
/// ```
pub fn to_scope(scope: &opentelemetry::InstrumentationScope) -> InstrumentationScope {
    InstrumentationScope {
        name: Str::Owned(scope.name().to_owned()),
        version: owned_or_empty(scope.version()),
        attributes: scope.attributes().cloned().map(to_key_value).collect(),
        schema_url: owned_or_empty(scope.schema_url()),
    }
}

/// Converts an SDK resource into the pipeline's, attributes sorted by key
/// (the SDK keeps them in a hash map, in no order). Use it to give a
/// pipeline the same resource as an SDK provider: the
/// [`OtlpSpanProcessor`](crate::OtlpSpanProcessor) exports under the
/// *pipeline's* resource (see its docs for why, and for the
/// `telemetry.sdk.*` and `service.name` attributes the pipeline adds
/// where the resource has none).
///
/// ```
/// let sdk_resource = opentelemetry_sdk::Resource::builder_empty()
///     .with_service_name("checkout")
///     .with_attribute(opentelemetry::KeyValue::new("deployment.environment.name", "prod"))
///     .build();
/// let resource = otlp_sdk_bridge::to_resource(&sdk_resource);
/// assert_eq!(resource.get("service.name"), Some(&otlp_exporter::Value::from("checkout")));
/// assert_eq!(resource.attributes.len(), 2);
///
/// let pipeline = otlp_exporter::Pipeline::builder()
///     .transport(otlp_exporter::InMemory::new())
///     .resource(resource)
///     .build()
///     .unwrap();
/// # drop(pipeline);
/// ```
pub fn to_resource(resource: &opentelemetry_sdk::Resource) -> Resource {
    let mut attributes: Vec<KeyValue> = resource
        .iter()
        .map(|(k, v)| KeyValue {
            key: Str::Owned(k.as_str().to_owned()),
            value: to_value(v.clone()),
        })
        .collect();
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    Resource {
        attributes,
        dropped_attributes_count: 0,
        schema_url: owned_or_empty(resource.schema_url()),
    }
}

/// Converts one SDK attribute value. Every `opentelemetry::Value` type maps
/// to its OTLP type (arrays to arrays of the element type); a value type a
/// later `opentelemetry` adds (the enum is `non_exhaustive`) is carried as
/// its display string rather than lost.
///
/// ```
/// use opentelemetry::{Array, StringValue};
/// use otlp_exporter::Value;
///
/// assert_eq!(otlp_sdk_bridge::to_value(true.into()), Value::Bool(true));
/// assert_eq!(otlp_sdk_bridge::to_value(1.5.into()), Value::F64(1.5));
/// assert_eq!(
///     otlp_sdk_bridge::to_value(opentelemetry::Value::Array(Array::String(vec![
///         StringValue::from("a"),
///         StringValue::from("b"),
///     ]))),
///     Value::Array(vec![Value::from("a"), Value::from("b")]),
/// );
/// ```
pub fn to_value(value: opentelemetry::Value) -> Value {
    use opentelemetry::{Array, Value as V};
    match value {
        V::Bool(b) => Value::Bool(b),
        V::I64(i) => Value::I64(i),
        V::F64(f) => Value::F64(f),
        V::String(s) => Value::Str(Str::Owned(String::from(s))),
        V::Array(Array::Bool(items)) => Value::Array(items.into_iter().map(Value::Bool).collect()),
        V::Array(Array::I64(items)) => Value::Array(items.into_iter().map(Value::I64).collect()),
        V::Array(Array::F64(items)) => Value::Array(items.into_iter().map(Value::F64).collect()),
        V::Array(Array::String(items)) => Value::Array(
            items
                .into_iter()
                .map(|s| Value::Str(Str::Owned(String::from(s))))
                .collect(),
        ),
        // Kinds of array a later `opentelemetry` may add: kept as text.
        #[allow(unreachable_patterns)]
        V::Array(other) => Value::Str(Str::Owned(other.to_string())),
        #[allow(unreachable_patterns)]
        other => Value::Str(Str::Owned(other.to_string())),
    }
}

fn to_key_value(kv: opentelemetry::KeyValue) -> KeyValue {
    KeyValue {
        key: Str::Owned(String::from(kv.key)),
        value: to_value(kv.value),
    }
}

fn owned_or_empty(s: Option<&str>) -> Str {
    match s {
        Some(s) if !s.is_empty() => Str::Owned(s.to_owned()),
        _ => Str::Borrowed(""),
    }
}

fn to_context(c: &api::SpanContext) -> SpanContext {
    let header = c.trace_state().header();
    SpanContext {
        trace_id: TraceId(c.trace_id().to_bytes()),
        span_id: SpanId(c.span_id().to_bytes()),
        trace_flags: TraceFlags(c.trace_flags().to_u8()),
        trace_state: if header.is_empty() {
            Str::Borrowed("")
        } else {
            Str::Owned(header)
        },
        is_remote: c.is_remote(),
    }
}

fn to_kind(kind: &api::SpanKind) -> SpanKind {
    match kind {
        api::SpanKind::Client => SpanKind::Client,
        api::SpanKind::Server => SpanKind::Server,
        api::SpanKind::Producer => SpanKind::Producer,
        api::SpanKind::Consumer => SpanKind::Consumer,
        api::SpanKind::Internal => SpanKind::Internal,
    }
}

fn to_status(status: api::Status) -> Status {
    match status {
        api::Status::Unset => Status::default(),
        api::Status::Ok => Status::ok(),
        api::Status::Error { description } => Status {
            code: StatusCode::Error,
            message: description,
        },
    }
}

fn to_event(e: api::Event) -> Event {
    Event {
        name: e.name,
        time_unix_nano: unix_nanos(e.timestamp),
        attributes: e.attributes.into_iter().map(to_key_value).collect(),
        dropped_attributes_count: e.dropped_attributes_count,
    }
}

fn to_link(l: api::Link) -> Link {
    Link {
        context: to_context(&l.span_context),
        attributes: l.attributes.into_iter().map(to_key_value).collect(),
        dropped_attributes_count: l.dropped_attributes_count,
    }
}

/// Nanoseconds since the Unix epoch; 0 before it, `u64::MAX` past 2554.
fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_before_the_epoch_and_far_future_saturate() {
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(unix_nanos(UNIX_EPOCH + Duration::from_nanos(7)), 7);
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 2)) {
            assert_eq!(unix_nanos(far), u64::MAX);
        }
    }

    #[test]
    fn empty_version_and_schema_url_are_empty() {
        let s = to_scope(&opentelemetry::InstrumentationScope::builder("x").build());
        assert_eq!(s, InstrumentationScope::new("x", ""));
    }
}
