//! Encoding batches of spans as OTLP `ExportTraceServiceRequest`s, in
//! protobuf or JSON, split so that no request exceeds a size cap.
//!
//! Encoding happens in two steps, so that the expensive one can run on the
//! threads that record spans, in parallel: [`encode_span`] turns one span
//! into its bytes (a framed protobuf `Span`, or a JSON object), and
//! [`Encoder::assemble`] concatenates such bytes, grouped by scope, under
//! the resource into requests.

pub(crate) mod json;
pub(crate) mod proto;

use std::collections::HashMap;
use std::mem::MaybeUninit;

use crate::model::{InstrumentationScope, Resource, ScopeId, SpanData, Value, last_value_wins};
use proto::Group;

/// The largest request the exporter ever builds: OTLP receivers commonly
/// refuse bodies over 64 MiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The deepest nesting of arrays an attribute value may have to be
/// exported: `Value::Array(vec![Value::I64(1)])` is nested 1 deep. An
/// attribute (of a span, event, link, resource or scope) whose value is
/// nested deeper is left out of the request and counted in its owner's
/// `dropped_attributes_count`.
///
/// Why 32: the encoders recurse once per level, so the bound keeps their
/// stack use small and fixed whatever a value holds; and common readers
/// have nesting limits of their own (`prost` decodes 100 messages deep, two
/// per array level; `serde_json` parses 128 JSON levels deep, three per
/// array level), so a deeper value would make the whole request unreadable
/// to them. At 32 levels, an event attribute (the deepest place) is 70
/// messages and 108 JSON levels deep. The depth is measured without
/// recursion.
pub(crate) const MAX_VALUE_DEPTH: usize = 32;

/// True if `v` nests arrays more than [`MAX_VALUE_DEPTH`] deep. Iterative,
/// no allocation: the walk stops as soon as it passes the limit, so its
/// stack is a fixed array.
pub(crate) fn too_deep(v: &Value) -> bool {
    let Value::Array(items) = v else {
        return false;
    };
    // stack[d]: the rest of the array at nesting d + 1 still to look at.
    let mut stack: [&[Value]; MAX_VALUE_DEPTH] = [&[]; MAX_VALUE_DEPTH];
    stack[0] = items;
    let mut depth = 1;
    while depth > 0 {
        let Some((first, rest)) = stack[depth - 1].split_first() else {
            depth -= 1;
            continue;
        };
        stack[depth - 1] = rest;
        if let Value::Array(inner) = first {
            if depth == MAX_VALUE_DEPTH {
                return true;
            }
            stack[depth] = inner;
            depth += 1;
        }
    }
    false
}

/// The wire format of a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// `application/x-protobuf`: the default, smallest and fastest.
    #[default]
    Protobuf,
    /// `application/json`: OTLP JSON, one request per line in files.
    Json,
}

impl Encoding {
    /// The HTTP `Content-Type` for this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// One encoded `ExportTraceServiceRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRequest {
    /// The request body.
    pub body: Vec<u8>,
    /// Its format.
    pub encoding: Encoding,
    /// How many spans it carries.
    pub spans: usize,
}

/// What [`Encoder::encode`] produced.
#[derive(Debug, Default)]
pub struct Encoded {
    /// Requests, each under the size cap, together carrying every span that
    /// fit, in order within each scope.
    pub requests: Vec<EncodedRequest>,
    /// Spans that alone exceed the size cap: not encoded (count them as
    /// dropped, too large).
    pub too_large: usize,
}

/// [`SharedAttributes`](crate::SharedAttributes)' encoding: `attributes`
/// as `Span.attributes` fields, and how many were left out (nested too
/// deep).
pub(crate) fn shared_attributes(attributes: &[crate::KeyValue]) -> (Vec<u8>, u32) {
    let mut out = Vec::new();
    let left_out = proto::span_attributes(&mut out, attributes);
    (out, left_out)
}

/// Appends one span's bytes in `encoding`: a framed protobuf `Span` field,
/// or a JSON object.
pub(crate) fn encode_span(span: &SpanData, encoding: Encoding, out: &mut Vec<u8>) {
    match encoding {
        Encoding::Protobuf => proto::put_framed_span(out, span),
        Encoding::Json => json::put_span(out, span),
    }
}

/// [`encode_span`] as the record path does it: a protobuf span that fits in
/// `INLINE` bytes is encoded into a fixed buffer first (no capacity checks,
/// no allocation: see [`proto::put_framed_span_fixed`]), the rest into a
/// `Vec`. The public [`Encoder::encode`] goes this way too, so every test
/// that compares its output with `prost`'s checks both encoders.
fn encode_span_as_recorded(span: &SpanData, encoding: Encoding, out: &mut Vec<u8>) {
    if encoding == Encoding::Protobuf {
        let mut buf = [MaybeUninit::uninit(); SMALL_SPAN];
        if let Some(range) = proto::put_framed_span_fixed(&mut buf, span) {
            // SAFETY: `put_framed_span_fixed` wrote every byte of `range`.
            out.extend_from_slice(unsafe { proto::written(&buf, range) });
            return;
        }
    }
    encode_span(span, encoding, out);
}

/// The size of the fixed buffer [`encode_span_as_recorded`] tries first:
/// the record path's inline slot buffer.
const SMALL_SPAN: usize = crate::pipeline::INLINE;

/// A span already encoded by [`encode_span`].
#[derive(Clone, Copy)]
pub(crate) struct SpanRef<'a> {
    pub(crate) scope: ScopeId,
    pub(crate) bytes: &'a [u8],
}

/// A scope's header in both encodings, encoded once.
#[derive(Clone, Debug)]
struct ScopeEntry {
    scope: InstrumentationScope,
    protobuf: Vec<u8>,
    json: Vec<u8>,
}

impl ScopeEntry {
    fn new(scope: InstrumentationScope) -> Self {
        ScopeEntry {
            protobuf: proto::scope_message(&scope),
            json: json::scope_object(&scope).into_bytes(),
            scope,
        }
    }

    fn header(&self, encoding: Encoding) -> &[u8] {
        match encoding {
            Encoding::Protobuf => &self.protobuf,
            Encoding::Json => &self.json,
        }
    }
}

/// Turns batches of spans into OTLP requests for one resource and a table
/// of instrumentation scopes.
///
/// ```
/// use otlp_exporter::{Encoder, Encoding, Resource, SpanData};
/// let encoder = Encoder::new(Resource::new("checkout"));
/// let spans = vec![SpanData::new("GET /cart"), SpanData::new("SELECT cart")];
/// let out = encoder.encode(&spans, Encoding::Protobuf);
/// assert_eq!(out.requests.len(), 1);
/// assert_eq!(out.requests[0].spans, 2);
/// ```
#[derive(Clone, Debug)]
pub struct Encoder {
    resource: Resource,
    resource_protobuf: Vec<u8>,
    resource_json: Vec<u8>,
    scopes: Vec<ScopeEntry>,
    /// Ids of `scopes` by [`InstrumentationScope::table_hash`] (the
    /// pipeline's scope table's hash and equality too: a pipeline's worker
    /// adds the pipeline's scopes here in order, and the ids of both tables
    /// must correspond).
    scope_index: HashMap<u64, Vec<u32>>,
    max_request_bytes: usize,
}

impl Encoder {
    /// An encoder for `resource`, with the default scope (named after this
    /// crate) as [`ScopeId::DEFAULT`]. The resource's keys are made unique
    /// (each once, at its first place, with its last value).
    pub fn new(mut resource: Resource) -> Self {
        resource.attributes = last_value_wins(std::mem::take(&mut resource.attributes));
        let default = InstrumentationScope::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
        Encoder {
            resource_protobuf: proto::resource_message(&resource),
            resource_json: json::resource_object(&resource).into_bytes(),
            resource,
            scope_index: HashMap::from([(default.table_hash(), vec![0])]),
            scopes: vec![ScopeEntry::new(default)],
            max_request_bytes: MAX_REQUEST_BYTES,
        }
    }

    /// Adds a scope (or finds an equal one) and returns its id. The
    /// scope's keys are made unique first (each once, at its first place,
    /// with its last value).
    ///
    /// Constant time on average, however many scopes there are: an index
    /// by a hash of the whole scope (attributes included). Attribute values
    /// are compared with floats by their bits, so a scope with a NaN
    /// attribute is found again (one scope, not one per call).
    pub fn add_scope(&mut self, mut scope: InstrumentationScope) -> ScopeId {
        scope.attributes = last_value_wins(std::mem::take(&mut scope.attributes));
        let key = scope.table_hash();
        let candidates = self.scope_index.entry(key).or_default();
        if let Some(&i) = candidates
            .iter()
            .find(|&&i| self.scopes[i as usize].scope.same(&scope))
        {
            return ScopeId(i);
        }
        let id = u32::try_from(self.scopes.len()).unwrap_or(u32::MAX);
        if id == u32::MAX {
            // 4 billion scopes: the rest share the default.
            return ScopeId::DEFAULT;
        }
        candidates.push(id);
        self.scopes.push(ScopeEntry::new(scope));
        ScopeId(id)
    }

    /// The scope behind an id (the default scope for an unknown id).
    pub fn scope(&self, id: ScopeId) -> &InstrumentationScope {
        &self.entry(id).scope
    }

    fn entry(&self, id: ScopeId) -> &ScopeEntry {
        self.scopes.get(id.0 as usize).unwrap_or(&self.scopes[0])
    }

    /// The resource.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Lowers the size cap (for tests of splitting; the default is
    /// [`MAX_REQUEST_BYTES`], and larger values are clamped to it).
    pub fn with_max_request_bytes(mut self, max: usize) -> Self {
        self.max_request_bytes = max.min(MAX_REQUEST_BYTES);
        self
    }

    /// A schema URL's largest size in a request: as it is in protobuf (its
    /// framing is in the fixed slack), escaped in JSON, where one byte can
    /// take six (`\u0001`).
    fn url_cost(u: &str, encoding: Encoding) -> usize {
        match encoding {
            Encoding::Protobuf => u.len(),
            Encoding::Json => u.len().saturating_mul(6),
        }
    }

    /// The most bytes of scopes and spans one request may carry: the cap
    /// less the resource and the request's framing.
    fn request_budget(&self, encoding: Encoding) -> usize {
        let resource = match encoding {
            Encoding::Protobuf => self.resource_protobuf.len(),
            Encoding::Json => self.resource_json.len(),
        };
        let envelope = 64 + resource + Self::url_cost(&self.resource.schema_url, encoding);
        self.max_request_bytes.saturating_sub(envelope)
    }

    /// What a scope's group costs in a request besides its spans: its
    /// header, schema URL and framing.
    fn scope_cost(&self, id: ScopeId, encoding: Encoding) -> usize {
        let e = self.entry(id);
        64 + e.header(encoding).len() + Self::url_cost(&e.scope.schema_url, encoding)
    }

    /// An id of this encoder's table (unknown ids are the default scope).
    fn known(&self, id: ScopeId) -> ScopeId {
        if (id.0 as usize) < self.scopes.len() {
            id
        } else {
            ScopeId::DEFAULT
        }
    }

    /// Encodes `spans`, grouped by scope (order kept within a scope), into
    /// as few requests under the size cap as it can. An empty slice gives
    /// no request (OTLP forbids empty requests).
    pub fn encode(&self, spans: &[SpanData], encoding: Encoding) -> Encoded {
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(spans.len());
        for s in spans {
            encode_span_as_recorded(s, encoding, &mut bytes);
            ends.push(bytes.len());
        }
        let refs: Vec<SpanRef<'_>> = spans
            .iter()
            .zip(&ends)
            .scan(0, |start, (s, &end)| {
                let r = SpanRef {
                    scope: s.scope,
                    bytes: &bytes[*start..end],
                };
                *start = end;
                Some(r)
            })
            .collect();
        let mut out = Encoded::default();
        self.assemble(&refs, encoding, &mut out);
        out
    }

    /// Builds requests from pre-encoded spans, each under the size cap; a
    /// span that does not fit alone (with its scope's header) is counted in
    /// `too_large`. A request pays for the headers of the scopes it
    /// carries, not for every scope the encoder knows.
    pub(crate) fn assemble(&self, spans: &[SpanRef<'_>], encoding: Encoding, out: &mut Encoded) {
        let budget = self.request_budget(encoding);
        let mut chunk: Vec<SpanRef<'_>> = Vec::new();
        // The scopes in `chunk`.
        let mut chunk_scopes = Scopes::default();
        let mut chunk_bytes = 0;
        for s in spans {
            let id = self.known(s.scope);
            // +1: the comma between JSON objects.
            let size = s.bytes.len() + 1;
            let scope_cost = self.scope_cost(id, encoding);
            if size.saturating_add(scope_cost) > budget {
                out.too_large += 1;
                continue;
            }
            let new_scope = chunk_scopes.find(id).is_none();
            let cost = size + if new_scope { scope_cost } else { 0 };
            if chunk_bytes + cost > budget {
                self.write(&chunk, encoding, out);
                chunk.clear();
                chunk_scopes.clear();
                chunk_bytes = 0;
                chunk_scopes.push(id);
                chunk_bytes += size + scope_cost;
            } else {
                if new_scope {
                    chunk_scopes.push(id);
                }
                chunk_bytes += cost;
            }
            chunk.push(*s);
        }
        if !chunk.is_empty() {
            self.write(&chunk, encoding, out);
        }
    }

    /// [`assemble`](Self::assemble) for `spans` protobuf spans of one
    /// scope whose framed bytes lie back to back in `bytes`, when they fit
    /// one request together: written as one run (what `assemble` writes
    /// for them, without its per-span grouping and copying). False, and
    /// nothing written, for JSON (its spans need separators) or spans that
    /// need more than one request (then use `assemble`).
    pub(crate) fn assemble_run(
        &self,
        scope: ScopeId,
        bytes: &[u8],
        spans: usize,
        encoding: Encoding,
        out: &mut Encoded,
    ) -> bool {
        if encoding != Encoding::Protobuf || spans == 0 {
            return false;
        }
        let id = self.known(scope);
        // `assemble`'s own test for one request: every span's size plus one,
        // and the scope's cost, within the budget.
        let cost = bytes
            .len()
            .saturating_add(spans)
            .saturating_add(self.scope_cost(id, encoding));
        if cost > self.request_budget(encoding) {
            return false;
        }
        let entry = self.entry(id);
        let group = Group {
            scope: entry.header(encoding),
            schema_url: &entry.scope.schema_url,
            spans: vec![bytes],
        };
        let mut body = Vec::with_capacity(bytes.len() + 1024);
        proto::write_request(
            &mut body,
            &self.resource_protobuf,
            &self.resource.schema_url,
            std::slice::from_ref(&group),
        );
        out.requests.push(EncodedRequest {
            body,
            encoding,
            spans,
        });
        true
    }

    fn write(&self, spans: &[SpanRef<'_>], encoding: Encoding, out: &mut Encoded) {
        // Group by scope, keeping the order of spans within each scope.
        let mut groups: Vec<Group<'_>> = Vec::new();
        let mut scopes = Scopes::default();
        for s in spans {
            let id = self.known(s.scope);
            match scopes.find(id) {
                Some(i) => groups[i].spans.push(s.bytes),
                None => {
                    scopes.push(id);
                    let entry = self.entry(id);
                    groups.push(Group {
                        scope: entry.header(encoding),
                        schema_url: &entry.scope.schema_url,
                        spans: vec![s.bytes],
                    });
                }
            }
        }
        let total: usize = spans.iter().map(|s| s.bytes.len() + 1).sum();
        let mut body = Vec::with_capacity(total + 1024);
        match encoding {
            Encoding::Protobuf => proto::write_request(
                &mut body,
                &self.resource_protobuf,
                &self.resource.schema_url,
                &groups,
            ),
            Encoding::Json => json::write_request(
                &mut body,
                &self.resource_json,
                &self.resource.schema_url,
                &groups,
            ),
        }
        out.requests.push(EncodedRequest {
            body,
            encoding,
            spans: spans.len(),
        });
    }
}

/// The scopes of a chunk or request, in the order they came, each found
/// by its index: by a scan while they are few (the usual batch has one or
/// two), through a map once there are many (a batch of spans from many
/// tracers), so that grouping `n` spans costs `n` lookups in constant
/// time, not a scan of every scope so far per span.
#[derive(Default)]
struct Scopes {
    ids: Vec<ScopeId>,
    /// `ids`' indices, built once there are more than [`Scopes::SCAN`].
    at: HashMap<ScopeId, usize>,
}

impl Scopes {
    const SCAN: usize = 8;

    /// The index of `id`, if pushed.
    fn find(&self, id: ScopeId) -> Option<usize> {
        let n = self.ids.len();
        if n > 0 && self.ids[n - 1] == id {
            return Some(n - 1);
        }
        if n <= Self::SCAN {
            self.ids.iter().position(|&s| s == id)
        } else {
            self.at.get(&id).copied()
        }
    }

    fn push(&mut self, id: ScopeId) {
        self.ids.push(id);
        if self.ids.len() > Self::SCAN {
            if self.at.is_empty() {
                self.at
                    .extend(self.ids.iter().enumerate().map(|(i, &s)| (s, i)));
            } else {
                self.at.insert(id, self.ids.len() - 1);
            }
        }
    }

    fn clear(&mut self) {
        self.ids.clear();
        self.at.clear();
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    fn nested(depth: usize) -> Value {
        let mut v = Value::I64(7);
        for _ in 0..depth {
            v = Value::Array(vec![Value::Bool(true), v, Value::from("s")]);
        }
        v
    }

    #[test]
    fn depth_is_measured_to_the_limit_and_no_further() {
        assert!(!too_deep(&Value::I64(1)));
        assert!(!too_deep(&nested(0)));
        assert!(!too_deep(&nested(1)));
        assert!(!too_deep(&nested(MAX_VALUE_DEPTH)));
        assert!(too_deep(&nested(MAX_VALUE_DEPTH + 1)));
        // The deep branch last, after wide shallow ones.
        let mut wide = vec![nested(3); 1000];
        wide.push(nested(MAX_VALUE_DEPTH));
        assert!(too_deep(&Value::Array(wide.clone())));
        wide.pop();
        assert!(!too_deep(&Value::Array(wide)));
        // Empty arrays count as a level.
        let mut v = Value::Array(vec![]);
        for _ in 1..MAX_VALUE_DEPTH {
            v = Value::Array(vec![v]);
        }
        assert!(!too_deep(&v));
        assert!(too_deep(&Value::Array(vec![v])));
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;
    use crate::model::{KeyValue, SpanData};

    /// Spans of one scope, framed back to back, as the worker's batch holds
    /// them.
    fn batch(n: usize, pad: usize) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for i in 0..n {
            let mut s = SpanData::new(format!("span-{i}"));
            s.attributes.push(KeyValue::new("pad", "p".repeat(pad)));
            encode_span_as_recorded(&s, Encoding::Protobuf, &mut bytes);
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    fn refs<'a>(bytes: &'a [u8], ends: &[usize], scope: ScopeId) -> Vec<SpanRef<'a>> {
        let mut start = 0;
        ends.iter()
            .map(|&end| {
                let r = SpanRef {
                    scope,
                    bytes: &bytes[start..end],
                };
                start = end;
                r
            })
            .collect()
    }

    /// Spans of many scopes, interleaved (each scope comes back after
    /// others, past the scan's few): one request with one `ScopeSpans` per
    /// scope, in the order the scopes first came, each holding its own
    /// spans in their order.
    #[test]
    fn interleaved_scopes_are_grouped_in_order() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let mut encoder = Encoder::new(crate::model::Resource::new("scopes"));
        let ids: Vec<ScopeId> = (0..30)
            .map(|i| {
                encoder.add_scope(crate::model::InstrumentationScope::new(
                    format!("s{i}"),
                    "1",
                ))
            })
            .collect();
        let spans: Vec<SpanData> = (0..300)
            .map(|i| {
                let mut s = SpanData::new(format!("{}", i));
                // Scope of span i: i * 7 mod 30, so each scope recurs every
                // 30 spans, after all the others.
                s.scope = ids[(i * 7) % 30];
                s
            })
            .collect();
        let out = encoder.encode(&spans, Encoding::Protobuf);
        assert_eq!(out.requests.len(), 1);
        let req = ExportTraceServiceRequest::decode(&out.requests[0].body[..]).unwrap();
        let scope_spans = &req.resource_spans[0].scope_spans;
        assert_eq!(scope_spans.len(), 30);
        for (k, ss) in scope_spans.iter().enumerate() {
            // The k-th scope to come is span k's: (k * 7) mod 30.
            let scope = (k * 7) % 30;
            assert_eq!(ss.scope.as_ref().unwrap().name, format!("s{scope}"));
            let names: Vec<usize> = ss.spans.iter().map(|s| s.name.parse().unwrap()).collect();
            let expected: Vec<usize> = (0..300).filter(|i| (i * 7) % 30 == scope).collect();
            assert_eq!(names, expected, "scope s{scope}");
        }
    }

    /// One scope that fits one request: the run gives `assemble`'s bytes,
    /// for the default scope and another; over the cap, or in JSON, the run
    /// declines and writes nothing.
    #[test]
    fn a_run_of_one_scope_is_what_assemble_writes_or_nothing() {
        let mut encoder = Encoder::new(crate::model::Resource::new("run"));
        let other = encoder.add_scope(crate::model::InstrumentationScope::new("lib", "1"));
        for scope in [ScopeId::DEFAULT, other] {
            for (n, pad) in [(1, 0), (7, 10), (512, 100), (40, 3000)] {
                let (bytes, ends) = batch(n, pad);
                let mut run = Encoded::default();
                assert!(encoder.assemble_run(scope, &bytes, n, Encoding::Protobuf, &mut run));
                let mut each = Encoded::default();
                encoder.assemble(&refs(&bytes, &ends, scope), Encoding::Protobuf, &mut each);
                assert_eq!(run.requests.len(), 1);
                assert_eq!(each.requests.len(), 1);
                assert_eq!(run.requests[0].body, each.requests[0].body, "{n} spans");
                assert_eq!(run.requests[0].spans, n);
                assert_eq!(run.too_large, 0);
            }
        }
        let (bytes, ends) = batch(64, 1000);
        let small = encoder.clone().with_max_request_bytes(16 * 1024);
        let mut run = Encoded::default();
        assert!(!small.assemble_run(ScopeId::DEFAULT, &bytes, 64, Encoding::Protobuf, &mut run));
        assert!(run.requests.is_empty());
        let mut each = Encoded::default();
        small.assemble(
            &refs(&bytes, &ends, ScopeId::DEFAULT),
            Encoding::Protobuf,
            &mut each,
        );
        assert!(each.requests.len() > 1, "split by assemble");
        assert!(!encoder.assemble_run(ScopeId::DEFAULT, &bytes, 64, Encoding::Json, &mut run));
        assert!(run.requests.is_empty());
    }

    /// Scopes that differ only in an attribute hash apart in the encoder's
    /// index too (one bucket of 2000 before; found by review), and a scope
    /// with a NaN attribute is found again: the same equality as the
    /// pipeline's table, whose scopes a worker adds here (ids correspond).
    #[test]
    fn scopes_differing_only_in_attributes_hash_apart() {
        let mut encoder = Encoder::new(crate::model::Resource::new("tenants"));
        let tenant = |i: i64| {
            let mut s = crate::model::InstrumentationScope::new("db", "1");
            s.attributes = vec![KeyValue::new("tenant", i), KeyValue::new("r", f64::NAN)];
            s
        };
        for i in 0..2000 {
            assert_eq!(encoder.add_scope(tenant(i)), ScopeId(i as u32 + 1));
        }
        let largest = encoder.scope_index.values().map(Vec::len).max().unwrap();
        assert!(largest <= 2, "a bucket of {largest} ids");
        for i in 0..2000 {
            assert_eq!(encoder.add_scope(tenant(i)), ScopeId(i as u32 + 1));
        }
        assert_eq!(encoder.scopes.len(), 2001);
    }
}
