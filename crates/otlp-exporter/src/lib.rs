//! A span export pipeline that does not fall over under load.
//!
//! (Being built: the span model and OTLP encoding are here; the pipeline
//! follows.)

mod config;
mod encode;
mod id;
mod model;

pub use config::ConfigError;
pub use encode::{Encoded, EncodedRequest, Encoder, Encoding, MAX_REQUEST_BYTES};
pub use model::{
    Event, InstrumentationScope, KeyValue, Link, Priority, Resource, ScopeId, SpanContext,
    SpanData, SpanId, SpanKind, SpanLimits, Status, StatusCode, Str, TraceFlags, TraceId, Value,
};
