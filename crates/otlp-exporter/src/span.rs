//! A small span-building API, so that users can produce spans without
//! another SDK: start a span, set attributes, add events, set a status,
//! end it (which records it).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::{
    Event, KeyValue, Link, Priority, ScopeId, SpanContext, SpanData, SpanId, SpanKind, SpanLimits,
    Status, Str, TraceId, Value, truncate_value,
};
use crate::pipeline::{Pipeline, Recorded};

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Starts spans for one instrumentation scope of one pipeline. Get one
/// from [`Pipeline::tracer`]; clone it freely.
///
/// ```
/// use otlp_exporter::{InMemory, Pipeline, Status};
/// use std::time::Duration;
///
/// let memory = InMemory::new();
/// let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
/// let tracer = pipeline.tracer("my-crate", "1.0.0");
///
/// let mut request = tracer.start("GET /users");
/// request.set_attribute("http.response.status_code", 200);
/// {
///     let mut query = tracer.start_child("SELECT users", request.context());
///     query.add_event("rows fetched", vec![otlp_exporter::KeyValue::new("rows", 3)]);
/// } // dropped: ended and recorded
/// request.set_status(Status::ok());
/// request.end();
///
/// pipeline.shutdown(Duration::from_secs(5));
/// assert_eq!(memory.span_count(), 2);
/// ```
#[derive(Clone)]
pub struct Tracer {
    pipeline: Pipeline,
    scope: ScopeId,
    limits: SpanLimits,
}

impl Tracer {
    pub(crate) fn new(pipeline: Pipeline, scope: ScopeId) -> Self {
        let limits = pipeline.limits();
        Tracer {
            pipeline,
            scope,
            limits,
        }
    }

    /// Starts a root span: a new trace.
    pub fn start(&self, name: impl Into<Str>) -> Span<'_> {
        self.build(name).start()
    }

    /// Starts a child of `parent` (in its trace, sampled as it is).
    pub fn start_child(&self, name: impl Into<Str>, parent: &SpanContext) -> Span<'_> {
        self.build(name).parent(parent).start()
    }

    /// A span with more settings before it starts.
    pub fn build(&self, name: impl Into<Str>) -> SpanBuilder<'_> {
        SpanBuilder {
            tracer: self,
            name: name.into(),
            kind: SpanKind::Internal,
            parent: None,
            start: None,
            attributes: Vec::new(),
            links: Vec::new(),
            priority: Priority::Normal,
        }
    }
}

/// Settings for a span that has not started yet.
#[must_use = "a span builder does nothing until `start`"]
pub struct SpanBuilder<'t> {
    tracer: &'t Tracer,
    name: Str,
    kind: SpanKind,
    parent: Option<SpanContext>,
    start: Option<u64>,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
    priority: Priority,
}

impl<'t> SpanBuilder<'t> {
    /// The span's kind (default `Internal`).
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = kind;
        self
    }

    /// Makes the span a child of `parent`. An invalid parent context is
    /// ignored (the span becomes a root).
    pub fn parent(mut self, parent: &SpanContext) -> Self {
        self.parent = parent.is_valid().then(|| parent.clone());
        self
    }

    /// Start time, in nanoseconds since the Unix epoch (default: now).
    pub fn start_time(mut self, unix_nanos: u64) -> Self {
        self.start = Some(unix_nanos);
        self
    }

    /// An attribute set from the start.
    pub fn attribute(mut self, key: impl Into<Str>, value: impl Into<Value>) -> Self {
        self.attributes.push(KeyValue::new(key, value));
        self
    }

    /// A link to another span.
    pub fn link(mut self, context: SpanContext, attributes: Vec<KeyValue>) -> Self {
        self.links.push(Link {
            context,
            attributes,
            dropped_attributes_count: 0,
        });
        self
    }

    /// Shedding priority (see [`Shedding::Priority`](crate::Shedding::Priority)).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Starts the span.
    pub fn start(self) -> Span<'t> {
        let (trace_id, parent_span_id, flags, state) = match &self.parent {
            Some(p) => (p.trace_id, p.span_id, p.trace_flags, p.trace_state.clone()),
            None => (
                TraceId::random(),
                SpanId::INVALID,
                crate::TraceFlags::SAMPLED,
                Str::Borrowed(""),
            ),
        };
        let context = SpanContext {
            trace_id,
            span_id: SpanId::random(),
            trace_flags: flags,
            trace_state: state,
            is_remote: false,
        };
        let mut data = SpanData::with_context(self.name, context);
        data.parent_span_id = parent_span_id;
        data.kind = self.kind;
        data.start_time_unix_nano = self.start.unwrap_or_else(now_unix_nanos);
        data.priority = self.priority;
        data.scope = self.tracer.scope;
        let mut span = Span {
            tracer: self.tracer,
            data: Some(data),
        };
        for kv in self.attributes {
            span.set_attribute(kv.key, kv.value);
        }
        for link in self.links {
            span.add_link(link);
        }
        span
    }
}

/// A span in progress. [`end`](Span::end) records it; dropping it without
/// `end` ends and records it too.
pub struct Span<'t> {
    tracer: &'t Tracer,
    data: Option<SpanData>,
}

impl Span<'_> {
    fn data(&mut self) -> &mut SpanData {
        // `data` is `None` only after `end`, which consumes the span.
        self.data.as_mut().expect("span already ended")
    }

    /// This span's context, to start children with or to propagate.
    pub fn context(&self) -> &SpanContext {
        &self.data.as_ref().expect("span already ended").context
    }

    /// Sets an attribute, replacing one with the same key. Past the
    /// attribute limit, new keys are dropped and counted; long string values
    /// are truncated to the value-length limit.
    pub fn set_attribute(&mut self, key: impl Into<Str>, value: impl Into<Value>) -> &mut Self {
        let limits = self.tracer.limits;
        let (key, mut value) = (key.into(), value.into());
        if let Some(limit) = limits.attribute_value_length {
            truncate_value(&mut value, limit);
        }
        let data = self.data();
        if let Some(kv) = data.attributes.iter_mut().find(|kv| kv.key == key) {
            kv.value = value;
        } else if data.attributes.len() < limits.attribute_count {
            data.attributes.push(KeyValue { key, value });
        } else {
            data.dropped_attributes_count = data.dropped_attributes_count.saturating_add(1);
        }
        self
    }

    /// Adds an event, timestamped now. Past the event limit it is dropped
    /// and counted; its attributes are cut to their own limits.
    pub fn add_event(&mut self, name: impl Into<Str>, attributes: Vec<KeyValue>) -> &mut Self {
        let limits = self.tracer.limits;
        let mut event = Event {
            name: name.into(),
            time_unix_nano: now_unix_nanos(),
            attributes,
            dropped_attributes_count: 0,
        };
        let data = self.data();
        if data.events.len() < limits.event_count {
            event.dropped_attributes_count =
                limits.cut_attributes(&mut event.attributes, limits.attributes_per_event);
            data.events.push(event);
        } else {
            data.dropped_events_count = data.dropped_events_count.saturating_add(1);
        }
        self
    }

    /// Adds a link. Past the link limit it is dropped and counted.
    pub fn add_link(&mut self, mut link: Link) -> &mut Self {
        let limits = self.tracer.limits;
        let data = self.data();
        if data.links.len() < limits.link_count {
            link.dropped_attributes_count = link.dropped_attributes_count.saturating_add(
                limits.cut_attributes(&mut link.attributes, limits.attributes_per_link),
            );
            data.links.push(link);
        } else {
            data.dropped_links_count = data.dropped_links_count.saturating_add(1);
        }
        self
    }

    /// Sets the status.
    pub fn set_status(&mut self, status: Status) -> &mut Self {
        self.data().status = status;
        self
    }

    /// Renames the span.
    pub fn update_name(&mut self, name: impl Into<Str>) -> &mut Self {
        self.data().name = name.into();
        self
    }

    /// Ends the span now and records it.
    pub fn end(mut self) -> Recorded {
        self.finish(None)
    }

    /// Ends the span at `unix_nanos` and records it.
    pub fn end_at(mut self, unix_nanos: u64) -> Recorded {
        self.finish(Some(unix_nanos))
    }

    fn finish(&mut self, at: Option<u64>) -> Recorded {
        let mut data = self.data.take().expect("span already ended");
        data.end_time_unix_nano = at
            .unwrap_or_else(now_unix_nanos)
            .max(data.start_time_unix_nano);
        // Built within the limits by the methods above.
        self.tracer.pipeline.record_span(data, false)
    }
}

impl Drop for Span<'_> {
    fn drop(&mut self) {
        if self.data.is_some() {
            self.finish(None);
        }
    }
}
