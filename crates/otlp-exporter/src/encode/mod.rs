//! Encoding batches of spans as OTLP `ExportTraceServiceRequest`s, in
//! protobuf or JSON, split so that no request exceeds a size cap.

pub(crate) mod json;
pub(crate) mod proto;

use crate::model::{InstrumentationScope, Resource, ScopeId, SpanData};
use proto::ScopeGroup;

/// The largest request the exporter ever builds: OTLP receivers commonly
/// refuse bodies over 64 MiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Room kept in each request for the resource and scope headers, so that the
/// span budget can be checked span by span.
const HEADER_ALLOWANCE: usize = 64 * 1024;

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
    /// fit.
    pub requests: Vec<EncodedRequest>,
    /// Spans that alone exceed the size cap: not encoded (count them as
    /// dropped, too large).
    pub too_large: usize,
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
    scopes: Vec<InstrumentationScope>,
    max_request_bytes: usize,
}

impl Encoder {
    /// An encoder for `resource`, with the default scope (named after this
    /// crate) as [`ScopeId::DEFAULT`].
    pub fn new(resource: Resource) -> Self {
        Encoder {
            resource,
            scopes: vec![InstrumentationScope::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            )],
            max_request_bytes: MAX_REQUEST_BYTES,
        }
    }

    /// Adds a scope (or finds an equal one) and returns its id.
    pub fn add_scope(&mut self, scope: InstrumentationScope) -> ScopeId {
        if let Some(i) = self.scopes.iter().position(|s| *s == scope) {
            return ScopeId(i as u32);
        }
        self.scopes.push(scope);
        ScopeId((self.scopes.len() - 1) as u32)
    }

    /// The scope behind an id (the default scope for an unknown id).
    pub fn scope(&self, id: ScopeId) -> &InstrumentationScope {
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

    /// Encodes `spans`, grouped by scope (order kept within a scope), into
    /// as few requests under the size cap as it can. An empty slice gives
    /// no request (OTLP forbids empty requests).
    pub fn encode(&self, spans: &[SpanData], encoding: Encoding) -> Encoded {
        let budget = self
            .max_request_bytes
            .saturating_sub(HEADER_ALLOWANCE)
            .max(1);
        let mut out = Encoded::default();
        let mut chunk: Vec<&SpanData> = Vec::new();
        let mut chunk_bytes = 0;
        // Chunks are sized by the exact protobuf size. JSON is larger by a
        // factor that depends on the content, so a JSON request over the cap
        // is split again after encoding (see `flush`).
        for s in spans {
            let size = proto::span_framed_len(s);
            if size > budget {
                out.too_large += 1;
                continue;
            }
            if chunk_bytes + size > budget && !chunk.is_empty() {
                self.flush(&mut chunk, encoding, &mut out);
                chunk_bytes = 0;
            }
            chunk.push(s);
            chunk_bytes += size;
        }
        if !chunk.is_empty() {
            self.flush(&mut chunk, encoding, &mut out);
        }
        out
    }

    fn flush(&self, chunk: &mut Vec<&SpanData>, encoding: Encoding, out: &mut Encoded) {
        self.encode_chunk(chunk, encoding, out);
        chunk.clear();
    }

    /// Encodes one chunk; if the body is over the cap, halves the chunk and
    /// tries again (a single span over the cap is counted as too large).
    fn encode_chunk(&self, chunk: &[&SpanData], encoding: Encoding, out: &mut Encoded) {
        let groups = self.group(chunk);
        let body = match encoding {
            Encoding::Protobuf => {
                let mut buf = Vec::new();
                proto::encode_request(&mut buf, &self.resource, &groups);
                buf
            }
            Encoding::Json => {
                let mut s = String::new();
                json::encode_request(&mut s, &self.resource, &groups);
                s.into_bytes()
            }
        };
        if body.len() > self.max_request_bytes {
            if chunk.len() == 1 {
                out.too_large += 1;
            } else {
                let (a, b) = chunk.split_at(chunk.len() / 2);
                self.encode_chunk(a, encoding, out);
                self.encode_chunk(b, encoding, out);
            }
            return;
        }
        out.requests.push(EncodedRequest {
            body,
            encoding,
            spans: chunk.len(),
        });
    }

    /// Groups spans by scope, keeping their order within each scope.
    fn group<'a>(&'a self, spans: &[&'a SpanData]) -> Vec<ScopeGroup<'a>> {
        let mut groups: Vec<ScopeGroup<'a>> = Vec::new();
        for s in spans {
            let scope = self.scope(s.scope);
            match groups.iter_mut().find(|g| std::ptr::eq(g.scope, scope)) {
                Some(g) => g.spans.push(s),
                None => groups.push(ScopeGroup {
                    scope,
                    spans: vec![s],
                }),
            }
        }
        groups
    }
}
