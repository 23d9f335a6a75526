//! A direct OTLP protobuf encoder: writes `ExportTraceServiceRequest` bytes
//! straight from [`SpanData`], without building the generated message types
//! (no allocation per field). `tests/encode.rs` proves it byte-identical to
//! `prost`'s encoding of the `opentelemetry-proto` message, field by field
//! and byte for byte.
//!
//! One pass: every nested message is written after a one-byte length
//! placeholder, and the body is shifted along in the rare case its length
//! needs more than one byte of varint. The output is canonical (minimal
//! varints, default-valued fields left out), as `prost` writes it.

use crate::model::{
    Event, InstrumentationScope, KeyValue, Link, Resource, SpanData, SpanId, Status, StatusCode,
    Value,
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

#[inline(always)]
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    if v < 0x80 {
        buf.push(v as u8);
        return;
    }
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        bytes[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    buf.extend_from_slice(&bytes[..=n]);
}

#[inline(always)]
fn put_key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(buf, u64::from((field << 3) | wire));
}

/// Writes a length-delimited field whose body `body` writes, filling in the
/// length afterwards.
#[inline]
fn put_message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put_key(buf, field, LEN);
    let at = buf.len();
    buf.push(0);
    body(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
    } else {
        // The length needs `n` bytes: shift the body along to make room.
        let n = varint_len(len as u64);
        let end = buf.len();
        buf.resize(end + n - 1, 0);
        buf.copy_within(at + 1..end, at + n);
        let mut v = len as u64;
        for b in &mut buf[at..at + n] {
            *b = (v as u8) | 0x80;
            v >>= 7;
        }
        buf[at + n - 1] &= 0x7f;
    }
}

#[inline]
fn put_bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    if !b.is_empty() {
        put_key(buf, field, LEN);
        put_varint(buf, b.len() as u64);
        buf.extend_from_slice(b);
    }
}

#[inline]
fn put_uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(buf, field, VARINT);
        put_varint(buf, v);
    }
}

#[inline]
fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(buf, field, FIXED64);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

#[inline]
fn put_fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        put_key(buf, field, FIXED32);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// `AnyValue` body (a oneof: the set member is always written). Recurses
/// once per array level: callers check the depth first (`too_deep`).
fn put_any_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            put_key(buf, 1, LEN);
            put_varint(buf, s.len() as u64);
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
        Value::Array(items) => put_message(buf, 5, |buf| {
            for i in items {
                put_message(buf, 1, |buf| put_any_value(buf, i));
            }
        }),
        Value::Bytes(b) => {
            put_key(buf, 7, LEN);
            put_varint(buf, b.len() as u64);
            buf.extend_from_slice(b);
        }
    }
}

/// Writes the attributes whose values are not nested too deep (see
/// [`MAX_VALUE_DEPTH`](super::MAX_VALUE_DEPTH)); returns how many were left
/// out, for the owner's `dropped_attributes_count`.
#[must_use]
fn put_attributes(buf: &mut Vec<u8>, field: u32, attrs: &[KeyValue]) -> u32 {
    let mut left_out = 0u32;
    for kv in attrs {
        if super::too_deep(&kv.value) {
            left_out = left_out.saturating_add(1);
            continue;
        }
        put_message(buf, field, |buf| {
            put_bytes(buf, 1, kv.key.as_bytes());
            put_message(buf, 2, |buf| put_any_value(buf, &kv.value));
        });
    }
    left_out
}

fn put_event(buf: &mut Vec<u8>, e: &Event) {
    put_fixed64(buf, 1, e.time_unix_nano);
    put_bytes(buf, 2, e.name.as_bytes());
    let left_out = put_attributes(buf, 3, &e.attributes);
    put_uint(
        buf,
        4,
        e.dropped_attributes_count.saturating_add(left_out).into(),
    );
}

/// OTLP `flags` of a span or link: trace flags plus the is-remote bits.
pub(crate) fn flags(trace_flags: u8, is_remote: bool) -> u32 {
    u32::from(trace_flags) | FLAG_HAS_IS_REMOTE | if is_remote { FLAG_IS_REMOTE } else { 0 }
}

fn put_link(buf: &mut Vec<u8>, l: &Link) {
    put_bytes(buf, 1, &l.context.trace_id.0);
    put_bytes(buf, 2, &l.context.span_id.0);
    put_bytes(buf, 3, l.context.trace_state.as_bytes());
    let left_out = put_attributes(buf, 4, &l.attributes);
    put_uint(
        buf,
        5,
        l.dropped_attributes_count.saturating_add(left_out).into(),
    );
    put_fixed32(buf, 6, flags(l.context.trace_flags.0, l.context.is_remote));
}

fn put_status(buf: &mut Vec<u8>, s: &Status) {
    // An unset status is the default message: left out, as prost does.
    if s.code != StatusCode::Unset || !s.message.is_empty() {
        put_message(buf, 15, |buf| {
            put_bytes(buf, 2, s.message.as_bytes());
            put_uint(buf, 3, s.code as u64);
        });
    }
}

fn parent_bytes(p: &SpanId) -> &[u8] {
    if p.is_valid() { &p.0 } else { &[] }
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
    let left_out = put_attributes(buf, 9, &s.attributes);
    put_uint(
        buf,
        10,
        s.dropped_attributes_count.saturating_add(left_out).into(),
    );
    for e in &s.events {
        put_message(buf, 11, |buf| put_event(buf, e));
    }
    put_uint(buf, 12, s.dropped_events_count.into());
    for l in &s.links {
        put_message(buf, 13, |buf| put_link(buf, l));
    }
    put_uint(buf, 14, s.dropped_links_count.into());
    put_status(buf, &s.status);
    // The span's flags say whether its *parent* is remote; a link's, whether
    // the linked context is.
    put_fixed32(buf, 16, flags(s.context.trace_flags.0, s.parent_is_remote));
}

/// Appends one span as a framed `ScopeSpans.spans` field (tag 2), ready to
/// be concatenated with others of its scope.
pub(crate) fn put_framed_span(buf: &mut Vec<u8>, s: &SpanData) {
    put_message(buf, 2, |buf| put_span(buf, s));
}

/// The `Resource` message body.
pub(crate) fn resource_message(r: &Resource) -> Vec<u8> {
    let mut buf = Vec::new();
    let left_out = put_attributes(&mut buf, 1, &r.attributes);
    put_uint(
        &mut buf,
        2,
        r.dropped_attributes_count.saturating_add(left_out).into(),
    );
    buf
}

/// The `InstrumentationScope` message body.
pub(crate) fn scope_message(s: &InstrumentationScope) -> Vec<u8> {
    let mut buf = Vec::new();
    put_bytes(&mut buf, 1, s.name.as_bytes());
    put_bytes(&mut buf, 2, s.version.as_bytes());
    let left_out = put_attributes(&mut buf, 3, &s.attributes);
    put_uint(&mut buf, 4, left_out.into());
    buf
}

/// One scope's pre-encoded spans within a request.
pub(crate) struct Group<'a> {
    /// The `InstrumentationScope` message body.
    pub(crate) scope: &'a [u8],
    pub(crate) schema_url: &'a str,
    /// Framed spans (see [`put_framed_span`]).
    pub(crate) spans: Vec<&'a [u8]>,
}

/// Writes one `ExportTraceServiceRequest` holding one `ResourceSpans`
/// (`resource`: the message body) with a `ScopeSpans` per group.
pub(crate) fn write_request(
    buf: &mut Vec<u8>,
    resource: &[u8],
    resource_schema: &str,
    groups: &[Group<'_>],
) {
    put_message(buf, 1, |buf| {
        put_bytes_always(buf, 1, resource);
        for g in groups {
            put_message(buf, 2, |buf| {
                put_bytes_always(buf, 1, g.scope);
                for s in &g.spans {
                    buf.extend_from_slice(s);
                }
                put_bytes(buf, 3, g.schema_url.as_bytes());
            });
        }
        put_bytes(buf, 3, resource_schema.as_bytes());
    });
}

/// A present (even if empty) sub-message whose body is already encoded.
fn put_bytes_always(buf: &mut Vec<u8>, field: u32, body: &[u8]) {
    put_key(buf, field, LEN);
    put_varint(buf, body.len() as u64);
    buf.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_minimal() {
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

    #[test]
    fn long_messages_get_their_length_shifted_in() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut buf = vec![0xAA];
            put_message(&mut buf, 3, |b| b.extend(std::iter::repeat_n(7u8, len)));
            let mut want = vec![0xAA];
            put_key(&mut want, 3, LEN);
            put_varint(&mut want, len as u64);
            want.extend(std::iter::repeat_n(7u8, len));
            assert_eq!(buf, want, "{len}");
        }
    }
}
