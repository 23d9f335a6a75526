//! A direct OTLP protobuf encoder: writes `ExportTraceServiceRequest` bytes
//! straight from [`SpanData`], without building the generated message types
//! (no allocation per field). `tests/encode.rs` proves it byte-compatible by
//! decoding its output with `opentelemetry-proto` and comparing field by
//! field.
//!
//! Sizes are computed before writing (protobuf prefixes every nested message
//! with its length), so the output is canonical: the same bytes `prost`
//! writes, with default-valued fields left out.

use crate::model::{
    Event, InstrumentationScope, KeyValue, Link, Resource, SpanData, SpanId, Status, Value,
};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// OTLP span flags: bit 8 says the is-remote bit (9) is known.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least 1.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn key_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(buf, u64::from((field << 3) | wire));
}

/// Length of a length-delimited field holding `len` bytes.
fn len_field(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

fn put_len_prefix(buf: &mut Vec<u8>, field: u32, len: usize) {
    put_key(buf, field, LEN);
    put_varint(buf, len as u64);
}

fn bytes_field(field: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        len_field(field, b.len())
    }
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    if !b.is_empty() {
        put_len_prefix(buf, field, b.len());
        buf.extend_from_slice(b);
    }
}

fn uint_field(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + varint_len(v)
    }
}

fn put_uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(buf, field, VARINT);
        put_varint(buf, v);
    }
}

fn fixed64_field(field: u32, v: u64) -> usize {
    if v == 0 { 0 } else { key_len(field) + 8 }
}

fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(buf, field, FIXED64);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32_field(field: u32, v: u32) -> usize {
    if v == 0 { 0 } else { key_len(field) + 4 }
}

fn put_fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        put_key(buf, field, FIXED32);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

// --- AnyValue, KeyValue -------------------------------------------------

/// `AnyValue` body length (a oneof: the set member is always written).
fn any_value_len(v: &Value) -> usize {
    match v {
        Value::Str(s) => len_field(1, s.len()),
        Value::Bool(_) => key_len(2) + 1,
        Value::I64(i) => key_len(3) + varint_len(*i as u64),
        Value::F64(_) => key_len(4) + 8,
        Value::Array(items) => len_field(5, array_len(items)),
        Value::Bytes(b) => len_field(7, b.len()),
    }
}

fn array_len(items: &[Value]) -> usize {
    items.iter().map(|i| len_field(1, any_value_len(i))).sum()
}

fn put_any_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            put_len_prefix(buf, 1, s.len());
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Bool(b) => {
            put_key(buf, 2, VARINT);
            buf.push(u8::from(*b));
        }
        Value::I64(i) => {
            put_key(buf, 3, VARINT);
            put_varint(buf, *i as u64);
        }
        Value::F64(f) => {
            put_key(buf, 4, FIXED64);
            buf.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Array(items) => {
            put_len_prefix(buf, 5, array_len(items));
            for i in items {
                put_len_prefix(buf, 1, any_value_len(i));
                put_any_value(buf, i);
            }
        }
        Value::Bytes(b) => {
            put_len_prefix(buf, 7, b.len());
            buf.extend_from_slice(b);
        }
    }
}

fn key_value_len(kv: &KeyValue) -> usize {
    bytes_field(1, kv.key.as_bytes()) + len_field(2, any_value_len(&kv.value))
}

fn put_key_value(buf: &mut Vec<u8>, kv: &KeyValue) {
    put_bytes(buf, 1, kv.key.as_bytes());
    put_len_prefix(buf, 2, any_value_len(&kv.value));
    put_any_value(buf, &kv.value);
}

fn attributes_len(field: u32, attrs: &[KeyValue]) -> usize {
    attrs
        .iter()
        .map(|kv| len_field(field, key_value_len(kv)))
        .sum()
}

fn put_attributes(buf: &mut Vec<u8>, field: u32, attrs: &[KeyValue]) {
    for kv in attrs {
        put_len_prefix(buf, field, key_value_len(kv));
        put_key_value(buf, kv);
    }
}

// --- Span and its parts ---------------------------------------------------

fn event_len(e: &Event) -> usize {
    fixed64_field(1, e.time_unix_nano)
        + bytes_field(2, e.name.as_bytes())
        + attributes_len(3, &e.attributes)
        + uint_field(4, e.dropped_attributes_count.into())
}

fn put_event(buf: &mut Vec<u8>, e: &Event) {
    put_fixed64(buf, 1, e.time_unix_nano);
    put_bytes(buf, 2, e.name.as_bytes());
    put_attributes(buf, 3, &e.attributes);
    put_uint(buf, 4, e.dropped_attributes_count.into());
}

fn link_flags(l: &Link) -> u32 {
    u32::from(l.context.trace_flags.0)
        | FLAG_HAS_IS_REMOTE
        | if l.context.is_remote {
            FLAG_IS_REMOTE
        } else {
            0
        }
}

fn link_len(l: &Link) -> usize {
    bytes_field(1, &l.context.trace_id.0)
        + bytes_field(2, &l.context.span_id.0)
        + bytes_field(3, l.context.trace_state.as_bytes())
        + attributes_len(4, &l.attributes)
        + uint_field(5, l.dropped_attributes_count.into())
        + fixed32_field(6, link_flags(l))
}

fn put_link(buf: &mut Vec<u8>, l: &Link) {
    put_bytes(buf, 1, &l.context.trace_id.0);
    put_bytes(buf, 2, &l.context.span_id.0);
    put_bytes(buf, 3, l.context.trace_state.as_bytes());
    put_attributes(buf, 4, &l.attributes);
    put_uint(buf, 5, l.dropped_attributes_count.into());
    put_fixed32(buf, 6, link_flags(l));
}

fn status_len(s: &Status) -> usize {
    bytes_field(2, s.message.as_bytes()) + uint_field(3, s.code as u64)
}

fn put_status(buf: &mut Vec<u8>, s: &Status) {
    put_bytes(buf, 2, s.message.as_bytes());
    put_uint(buf, 3, s.code as u64);
}

fn parent_bytes(p: &SpanId) -> &[u8] {
    if p.is_valid() { &p.0 } else { &[] }
}

fn span_flags(s: &SpanData) -> u32 {
    u32::from(s.context.trace_flags.0)
        | FLAG_HAS_IS_REMOTE
        | if s.context.is_remote {
            FLAG_IS_REMOTE
        } else {
            0
        }
}

/// The body length of one `Span` message.
pub(crate) fn span_len(s: &SpanData) -> usize {
    let status = status_len(&s.status);
    bytes_field(1, &s.context.trace_id.0)
        + bytes_field(2, &s.context.span_id.0)
        + bytes_field(3, s.context.trace_state.as_bytes())
        + bytes_field(4, parent_bytes(&s.parent_span_id))
        + bytes_field(5, s.name.as_bytes())
        + uint_field(6, s.kind as u64)
        + fixed64_field(7, s.start_time_unix_nano)
        + fixed64_field(8, s.end_time_unix_nano)
        + attributes_len(9, &s.attributes)
        + uint_field(10, s.dropped_attributes_count.into())
        + s.events
            .iter()
            .map(|e| len_field(11, event_len(e)))
            .sum::<usize>()
        + uint_field(12, s.dropped_events_count.into())
        + s.links
            .iter()
            .map(|l| len_field(13, link_len(l)))
            .sum::<usize>()
        + uint_field(14, s.dropped_links_count.into())
        + if status == 0 {
            0
        } else {
            len_field(15, status)
        }
        + fixed32_field(16, span_flags(s))
}

fn put_span(buf: &mut Vec<u8>, s: &SpanData) {
    put_bytes(buf, 1, &s.context.trace_id.0);
    put_bytes(buf, 2, &s.context.span_id.0);
    put_bytes(buf, 3, s.context.trace_state.as_bytes());
    put_bytes(buf, 4, parent_bytes(&s.parent_span_id));
    put_bytes(buf, 5, s.name.as_bytes());
    put_uint(buf, 6, s.kind as u64);
    put_fixed64(buf, 7, s.start_time_unix_nano);
    put_fixed64(buf, 8, s.end_time_unix_nano);
    put_attributes(buf, 9, &s.attributes);
    put_uint(buf, 10, s.dropped_attributes_count.into());
    for e in &s.events {
        put_len_prefix(buf, 11, event_len(e));
        put_event(buf, e);
    }
    put_uint(buf, 12, s.dropped_events_count.into());
    for l in &s.links {
        put_len_prefix(buf, 13, link_len(l));
        put_link(buf, l);
    }
    put_uint(buf, 14, s.dropped_links_count.into());
    let status = status_len(&s.status);
    if status != 0 {
        put_len_prefix(buf, 15, status);
        put_status(buf, &s.status);
    }
    put_fixed32(buf, 16, span_flags(s));
}

// --- Resource, scope, request ---------------------------------------------

fn resource_len(r: &Resource) -> usize {
    attributes_len(1, &r.attributes) + uint_field(2, r.dropped_attributes_count.into())
}

fn scope_len(s: &InstrumentationScope) -> usize {
    bytes_field(1, s.name.as_bytes())
        + bytes_field(2, s.version.as_bytes())
        + attributes_len(3, &s.attributes)
}

/// One scope's spans within a request.
pub(crate) struct ScopeGroup<'a> {
    pub(crate) scope: &'a InstrumentationScope,
    pub(crate) spans: Vec<&'a SpanData>,
}

/// Encodes one `ExportTraceServiceRequest` holding one `ResourceSpans` with
/// a `ScopeSpans` per group, appending to `buf`.
pub(crate) fn encode_request(buf: &mut Vec<u8>, resource: &Resource, groups: &[ScopeGroup<'_>]) {
    // Each span's length is needed twice (for its scope's length and for
    // its own prefix): compute it once.
    let span_lens: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| g.spans.iter().map(|s| span_len(s)).collect())
        .collect();
    let scope_spans_len = |g: &ScopeGroup<'_>, lens: &[usize]| {
        len_field(1, scope_len(g.scope))
            + lens.iter().map(|&l| len_field(2, l)).sum::<usize>()
            + bytes_field(3, g.scope.schema_url.as_bytes())
    };
    let rlen = resource_len(resource);
    let resource_spans_len = len_field(1, rlen)
        + groups
            .iter()
            .zip(&span_lens)
            .map(|(g, lens)| len_field(2, scope_spans_len(g, lens)))
            .sum::<usize>()
        + bytes_field(3, resource.schema_url.as_bytes());

    buf.reserve(len_field(1, resource_spans_len));
    put_len_prefix(buf, 1, resource_spans_len);
    put_len_prefix(buf, 1, rlen);
    put_attributes(buf, 1, &resource.attributes);
    put_uint(buf, 2, resource.dropped_attributes_count.into());
    for (g, lens) in groups.iter().zip(&span_lens) {
        put_len_prefix(buf, 2, scope_spans_len(g, lens));
        put_len_prefix(buf, 1, scope_len(g.scope));
        put_bytes(buf, 1, g.scope.name.as_bytes());
        put_bytes(buf, 2, g.scope.version.as_bytes());
        put_attributes(buf, 3, &g.scope.attributes);
        for (s, &l) in g.spans.iter().zip(lens) {
            put_len_prefix(buf, 2, l);
            put_span(buf, s);
        }
        put_bytes(buf, 3, g.scope.schema_url.as_bytes());
    }
    put_bytes(buf, 3, resource.schema_url.as_bytes());
}

/// The encoded size of one span inside a request, framing included (used to
/// split batches under the size cap).
pub(crate) fn span_framed_len(s: &SpanData) -> usize {
    len_field(2, span_len(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_the_encoding() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u32::MAX.into(),
            u64::MAX,
            (-1i64) as u64,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }
}
