//! OTLP JSON: the protobuf JSON mapping as the OTLP specification adjusts it
//! (ids as lowercase hex, enums as integers, 64-bit integers as decimal
//! strings, bytes as base64, field names in lowerCamelCase). Every field is
//! written, defaults included, so strict readers need no defaults of their
//! own; the one exception is an unset span status, left out as protobuf
//! leaves it.
//!
//! Non-finite doubles: an attribute value of NaN, +Infinity or -Infinity is
//! written as the *string* value `"NaN"`, `"Infinity"` or `"-Infinity"`
//! (`{"stringValue":"NaN"}`). The protobuf JSON mapping's own form,
//! `{"doubleValue":"NaN"}`, is refused by common readers, which then lose
//! the whole request, every span in it: `opentelemetry-proto`'s serde
//! types read `doubleValue` as a JSON number only, and the rotel collector
//! answers such a request with 400; `null` would be refused by the
//! Collector's reader. The string form is read by all of them and keeps
//! the value's text. Protobuf carries the exact bits.
//!
//! Values nested deeper than
//! [`MAX_VALUE_DEPTH`](super::MAX_VALUE_DEPTH) arrays are left out and
//! counted, as in protobuf: see there.

use std::fmt::Write as _;

use crate::encode::proto::{Group, flags};
use crate::model::{
    Event, InstrumentationScope, KeyValue, Link, Resource, SpanContext, SpanData, StatusCode, Value,
};

/// Appends `s` as a JSON string literal.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('"');
}

fn base64(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.push('"');
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.push('"');
}

/// A finite double as a JSON number.
fn double(out: &mut String, f: f64) {
    debug_assert!(f.is_finite());
    // `{:?}` prints the shortest text that reads back to the same f64, in
    // a form JSON accepts (`1.0`, `1e-7`).
    let _ = write!(out, "{f:?}");
}

fn any_value(out: &mut String, v: &Value) {
    match v {
        Value::Str(s) => {
            out.push_str("{\"stringValue\":");
            string(out, s);
        }
        Value::Bool(b) => {
            let _ = write!(out, "{{\"boolValue\":{b}");
        }
        Value::I64(i) => {
            let _ = write!(out, "{{\"intValue\":\"{i}\"");
        }
        Value::F64(f) if f.is_finite() => {
            out.push_str("{\"doubleValue\":");
            double(out, *f);
        }
        Value::F64(f) => {
            // See the module docs: the string form every reader takes.
            out.push_str(if f.is_nan() {
                "{\"stringValue\":\"NaN\""
            } else if *f > 0.0 {
                "{\"stringValue\":\"Infinity\""
            } else {
                "{\"stringValue\":\"-Infinity\""
            });
        }
        Value::Bytes(b) => {
            out.push_str("{\"bytesValue\":");
            base64(out, b);
        }
        Value::Array(items) => {
            out.push_str("{\"arrayValue\":{\"values\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                any_value(out, item);
            }
            out.push_str("]}");
        }
    }
    out.push('}');
}

/// Writes the attributes whose values are not nested too deep (see
/// [`MAX_VALUE_DEPTH`](super::MAX_VALUE_DEPTH)) and whose keys are not
/// empty; returns how many were left out, for the owner's
/// `droppedAttributesCount`.
#[must_use]
fn attributes(out: &mut String, attrs: &[KeyValue]) -> u32 {
    attributes_of_two(out, attrs, &[], false)
}

/// [`attributes`] of `first` followed by `then`, in one list (a span's own
/// and its shared attributes). With `unique`, one of `then` whose key is
/// among `first`'s is left out (and not counted: the span's own value
/// replaces it).
#[must_use]
fn attributes_of_two(out: &mut String, first: &[KeyValue], then: &[KeyValue], unique: bool) -> u32 {
    out.push('[');
    let mut left_out = 0u32;
    let then = then
        .iter()
        .filter(|kv| !unique || kv.key.is_empty() || !first.iter().any(|f| f.key == kv.key));
    for kv in first.iter().chain(then) {
        if kv.key.is_empty() || super::too_deep(&kv.value) {
            left_out = left_out.saturating_add(1);
            continue;
        }
        if !out.ends_with('[') {
            out.push(',');
        }
        out.push_str("{\"key\":");
        string(out, &kv.key);
        out.push_str(",\"value\":");
        any_value(out, &kv.value);
        out.push('}');
    }
    out.push(']');
    left_out
}

fn list<T>(out: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, item);
    }
    out.push(']');
}

fn event(out: &mut String, e: &Event) {
    let _ = write!(out, "{{\"timeUnixNano\":\"{}\",\"name\":", e.time_unix_nano);
    string(out, &e.name);
    out.push_str(",\"attributes\":");
    let left_out = attributes(out, &e.attributes);
    let _ = write!(
        out,
        ",\"droppedAttributesCount\":{}}}",
        e.dropped_attributes_count.saturating_add(left_out)
    );
}

/// Opens an object with the ids and trace state of a span or link.
fn open_with_context(out: &mut String, c: &SpanContext) {
    out.push_str("{\"traceId\":");
    hex(out, &c.trace_id.0);
    out.push_str(",\"spanId\":");
    hex(out, &c.span_id.0);
    out.push_str(",\"traceState\":");
    string(out, &c.trace_state);
}

fn link(out: &mut String, l: &Link) {
    open_with_context(out, &l.context);
    out.push_str(",\"attributes\":");
    let left_out = attributes(out, &l.attributes);
    let flags = flags(l.context.trace_flags.0, l.context.is_remote);
    let _ = write!(
        out,
        ",\"droppedAttributesCount\":{},\"flags\":{flags}}}",
        l.dropped_attributes_count.saturating_add(left_out)
    );
}

fn span(out: &mut String, s: &SpanData) {
    open_with_context(out, &s.context);
    out.push_str(",\"parentSpanId\":");
    if s.parent_span_id.is_valid() {
        hex(out, &s.parent_span_id.0);
    } else {
        out.push_str("\"\"");
    }
    // Whether the *parent* is remote (see the protobuf encoder).
    let flags = flags(s.context.trace_flags.0, s.parent_is_remote);
    let _ = write!(out, ",\"flags\":{flags},\"name\":");
    string(out, &s.name);
    let _ = write!(
        out,
        ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":",
        s.kind as i32, s.start_time_unix_nano, s.end_time_unix_nano
    );
    let shared = s.shared_attributes.map_or(&[][..], |a| a.attributes());
    let overlap = s
        .shared_attributes
        .is_some_and(|a| a.overlaps(&s.attributes));
    let left_out = attributes_of_two(out, &s.attributes, shared, overlap);
    let _ = write!(
        out,
        ",\"droppedAttributesCount\":{},\"events\":",
        s.dropped_attributes_count.saturating_add(left_out)
    );
    list(out, &s.events, event);
    let _ = write!(
        out,
        ",\"droppedEventsCount\":{},\"links\":",
        s.dropped_events_count
    );
    list(out, &s.links, link);
    let _ = write!(out, ",\"droppedLinksCount\":{}", s.dropped_links_count);
    // An unset status is left out, as in protobuf (the message is
    // optional), and the message is an error's only (see the protobuf
    // encoder's `put_status`).
    if s.status.code != StatusCode::Unset {
        out.push_str(",\"status\":{\"message\":");
        string(out, super::proto::status_message(&s.status));
        let _ = write!(out, ",\"code\":{}}}", s.status.code as i32);
    }
    out.push('}');
}

/// Appends one span as a JSON object.
pub(crate) fn put_span(out: &mut Vec<u8>, s: &SpanData) {
    let mut text = String::new();
    span(&mut text, s);
    out.extend_from_slice(text.as_bytes());
}

/// The `"resource"` object.
pub(crate) fn resource_object(r: &Resource) -> String {
    let mut out = String::from("{\"attributes\":");
    let left_out = attributes(&mut out, &r.attributes);
    let _ = write!(
        out,
        ",\"droppedAttributesCount\":{}}}",
        r.dropped_attributes_count.saturating_add(left_out)
    );
    out
}

/// The `"scope"` object.
pub(crate) fn scope_object(s: &InstrumentationScope) -> String {
    let mut out = String::from("{\"name\":");
    string(&mut out, &s.name);
    out.push_str(",\"version\":");
    string(&mut out, &s.version);
    out.push_str(",\"attributes\":");
    let left_out = attributes(&mut out, &s.attributes);
    let _ = write!(out, ",\"droppedAttributesCount\":{left_out}}}");
    out
}

/// Writes one `ExportTraceServiceRequest` as one line of OTLP JSON (no
/// newline). `resource` and each group's `scope` are the objects made by
/// [`resource_object`] and [`scope_object`]; spans are objects made by
/// [`put_span`].
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    resource: &[u8],
    resource_schema: &str,
    groups: &[Group<'_>],
) {
    let mut text = String::new();
    out.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":");
    out.extend_from_slice(resource);
    out.extend_from_slice(b",\"scopeSpans\":[");
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"scope\":");
        out.extend_from_slice(g.scope);
        out.extend_from_slice(b",\"spans\":[");
        for (j, s) in g.spans.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(s);
        }
        out.extend_from_slice(b"],\"schemaUrl\":");
        text.clear();
        string(&mut text, g.schema_url);
        out.extend_from_slice(text.as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"schemaUrl\":");
    text.clear();
    string(&mut text, resource_schema);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"}]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = String::new();
            base64(&mut out, input.as_bytes());
            assert_eq!(out, format!("\"{want}\""));
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }
}
