//! The layer: one registry extension per span holding the span's
//! [`SpanData`], filled in as `tracing` reports fields, events, links,
//! entries and exits, and recorded into the pipeline when the span closes.

use std::any::TypeId;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use otlp_exporter::{
    Event, InstrumentationScope, KeyValue, Link, Pipeline, Sampler, SamplingDecision, ScopeId,
    SpanContext, SpanData, SpanId, SpanLimits, Status, StatusCode, Str, TraceFlags, TraceId, Value,
    push_attribute,
};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::location::LogLocation;
use crate::stats::{Count, LayerCounters};
use crate::visit::{EventFields, OtelFields, SpanFields};
use otlp_exporter::clock::{mono_nanos as mono, unix_nanos_of as unix_of};

static NEXT_LAYER: AtomicUsize = AtomicUsize::new(1);

/// A [`tracing_subscriber::Layer`] that records `tracing` spans into a
/// [`Pipeline`]. See the [crate documentation](crate) for the mapping.
///
/// ```
/// use otlp_exporter::{InMemory, Pipeline};
/// use otlp_tracing::OtlpLayer;
/// use std::time::Duration;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let memory = InMemory::new(); // a test double; use a real transport in production
/// let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
/// let subscriber = tracing_subscriber::registry().with(OtlpLayer::new(&pipeline));
///
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("checkout", order = 42_i64);
///     span.in_scope(|| tracing::info!(items = 3_i64, "cart priced"));
/// });
///
/// assert!(pipeline.shutdown(Duration::from_secs(5)).completed);
/// assert_eq!(memory.span_count(), 1);
/// ```
pub struct OtlpLayer {
    pipeline: Pipeline,
    scope: ScopeId,
    limits: SpanLimits,
    location: bool,
    inactivity: bool,
    error_events_to_status: bool,
    sampler: Sampler,
    /// The pipeline is disabled (`OTEL_SDK_DISABLED=true`): spans record
    /// nothing and carry their parent's context (see `on_new_span`).
    disabled: bool,
    counters: LayerCounters,
    /// Tells this layer's span states from another `OtlpLayer`'s in the
    /// same subscriber.
    id: usize,
}

impl OtlpLayer {
    /// A layer recording into `pipeline` (a clone of the handle: the layer
    /// keeps the pipeline alive), under the instrumentation scope
    /// `otlp-tracing` (see [`with_scope`](Self::with_scope)), with the
    /// pipeline's span limits and the pipeline's sampler
    /// ([`Pipeline::sampler`]: the one set with
    /// `PipelineBuilder::sampler`, else the one `OTEL_TRACES_SAMPLER` /
    /// `OTEL_TRACES_SAMPLER_ARG` name, by default the spec's `ParentBased`
    /// with an `AlwaysOn` root), as [`Pipeline::tracer`] does. On a
    /// disabled pipeline ([`Pipeline::is_disabled`]) the layer records
    /// nothing: see [A disabled pipeline](crate#a-disabled-pipeline).
    ///
    /// ```
    /// use otlp_exporter::{InMemory, Pipeline};
    /// use otlp_tracing::OtlpLayer;
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let _subscriber = tracing_subscriber::registry().with(OtlpLayer::new(&pipeline));
    /// ```
    pub fn new(pipeline: &Pipeline) -> Self {
        let scope = pipeline.scope(InstrumentationScope::new(
            "otlp-tracing",
            env!("CARGO_PKG_VERSION"),
        ));
        OtlpLayer {
            pipeline: pipeline.clone(),
            scope,
            limits: pipeline.limits(),
            location: true,
            inactivity: true,
            error_events_to_status: true,
            sampler: if pipeline.is_disabled() {
                Sampler::AlwaysOff
            } else {
                pipeline.sampler().clone()
            },
            disabled: pipeline.is_disabled(),
            id: NEXT_LAYER.fetch_add(1, Ordering::Relaxed),
            counters: LayerCounters::new(),
        }
    }

    /// Exports the spans under the instrumentation scope `name`/`version`
    /// (as `TracerProvider::tracer(name)` names it for tracing-opentelemetry
    /// users) instead of `otlp-tracing`.
    ///
    /// ```
    /// # use otlp_exporter::{InMemory, Pipeline};
    /// # use otlp_tracing::OtlpLayer;
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let layer = OtlpLayer::new(&pipeline).with_scope("checkout", "1.4.0");
    /// ```
    pub fn with_scope(mut self, name: impl Into<Str>, version: impl Into<Str>) -> Self {
        self.scope = self
            .pipeline
            .scope(InstrumentationScope::new(name, version));
        self
    }

    /// Whether spans and events carry their source location as
    /// `code.file.path`, `code.line.number` and `code.namespace` (default
    /// on, as tracing-opentelemetry's `with_location`).
    ///
    /// ```
    /// # use otlp_exporter::{InMemory, Pipeline};
    /// # use otlp_tracing::OtlpLayer;
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let layer = OtlpLayer::new(&pipeline).with_location(false);
    /// ```
    pub fn with_location(mut self, yes: bool) -> Self {
        self.location = yes;
        self
    }

    /// Whether spans carry `busy_ns` and `idle_ns` (default on, as
    /// tracing-opentelemetry's `with_tracked_inactivity`). Busy time is
    /// time during which at least one thread was inside the span; idle time
    /// is the rest, from the span's creation to its close.
    ///
    /// ```
    /// # use otlp_exporter::{InMemory, Pipeline};
    /// # use otlp_tracing::OtlpLayer;
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let layer = OtlpLayer::new(&pipeline).with_tracked_inactivity(false);
    /// ```
    pub fn with_tracked_inactivity(mut self, yes: bool) -> Self {
        self.inactivity = yes;
        self
    }

    /// Whether an `ERROR`-level event inside a span, or an exception event
    /// (an `error` field and no message, as `#[instrument(err)]` emits, at
    /// any level), sets the span's status to `Error` (default on, as
    /// tracing-opentelemetry's `with_error_events_to_status`). See the
    /// [crate documentation](crate) for the message it carries.
    ///
    /// ```
    /// # use otlp_exporter::{InMemory, Pipeline};
    /// # use otlp_tracing::OtlpLayer;
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let layer = OtlpLayer::new(&pipeline).with_error_events_to_status(false);
    /// ```
    pub fn with_error_events_to_status(mut self, yes: bool) -> Self {
        self.error_events_to_status = yes;
        self
    }

    /// Samples spans with `sampler` instead of the pipeline's
    /// ([`Pipeline::sampler`]). See [Context propagation and
    /// sampling](crate#context-propagation-and-sampling). On a disabled
    /// pipeline ([`Pipeline::is_disabled`]) it changes nothing: nothing is
    /// recorded, whatever the sampler (as the pipeline's own
    /// `Tracer::with_sampler`).
    ///
    /// ```
    /// # use otlp_exporter::{InMemory, Pipeline};
    /// # use otlp_tracing::OtlpLayer;
    /// use otlp_exporter::Sampler;
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// // Keep a tenth of new traces; follow the caller's decision otherwise.
    /// let layer = OtlpLayer::new(&pipeline)
    ///     .with_sampler(Sampler::parent_based(Sampler::TraceIdRatioBased(0.1)));
    /// ```
    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        // Found by review: it brought recording back on a disabled
        // pipeline (sampled contexts handed out, fields read, spans the
        // pipeline then counted as not sampled).
        if !self.disabled {
            self.sampler = sampler;
        }
        self
    }

    /// A handle on the layer's counts (spans started, recorded, not
    /// sampled, still open; events outside spans), to keep before the
    /// layer moves into the subscriber. See [`LayerStats`](crate::LayerStats).
    ///
    /// ```
    /// # use otlp_exporter::{InMemory, Pipeline};
    /// # use otlp_tracing::OtlpLayer;
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let layer = OtlpLayer::new(&pipeline);
    /// let counters = layer.counters();
    /// assert_eq!(counters.snapshot().open(), 0);
    /// ```
    pub fn counters(&self) -> LayerCounters {
        self.counters.clone()
    }

    /// The sampler's decision for a span of `data`'s trace, kind and name
    /// with this `parent`.
    fn decide(&self, parent: Option<&SpanContext>, data: &SpanData) -> SamplingDecision {
        self.sampler
            .should_sample(parent, data.context.trace_id, &data.name, data.kind)
    }

    fn push_attribute(&self, data: &mut SpanData, kv: KeyValue) {
        if data.attributes_len() < self.limits.attribute_count {
            data.attributes.push(kv);
        } else {
            data.dropped_attributes_count = data.dropped_attributes_count.saturating_add(1);
        }
    }

    /// The span's location attributes: its callsite's set, encoded once
    /// (see [`location`](crate::location)), when the span has room for it
    /// within the limits; else pushed one by one, as far as they fit.
    ///
    /// A span whose own fields already hold a `code.*` or `target` key
    /// keeps its value: the location's attributes are then pushed one by
    /// one, each only if its key is not there (an OTLP span's keys are
    /// unique; with the set shared, a key in both would be counted twice
    /// under the limit, found by review).
    fn push_location(&self, data: &mut SpanData, meta: &'static Metadata<'static>) {
        let own_code = data
            .attributes
            .iter()
            .any(|kv| kv.key.starts_with("code.") || kv.key == "target");
        if !own_code
            && let Some(set) = crate::location::shared(meta)
            && data.attributes.len() + set.len() <= self.limits.attribute_count
            && set.within_value_length(&self.limits)
        {
            data.shared_attributes = Some(set);
        } else {
            self.location_attributes(meta, &mut |kv| {
                if !data.attributes.iter().any(|a| a.key == kv.key) {
                    self.push_attribute(data, kv);
                }
            });
        }
    }

    /// Puts a new span's state into its extensions, unless another
    /// `OtlpLayer` of this subscriber already records the span (the first
    /// one in the stack records it, the others leave it).
    #[inline(always)]
    fn insert<S>(&self, span: &SpanRef<'_, S>, mut state: Box<SpanState>)
    where
        S: for<'a> LookupSpan<'a>,
    {
        let mut ext = span.extensions_mut();
        if ext.get_mut::<Slot>().is_none() {
            ext.insert(Slot(state));
            drop(ext);
            self.counters.count(Count::Started);
        } else {
            drop(ext);
            state.data = blank_data();
            recycle(state);
        }
    }

    fn location_attributes(
        &self,
        meta: &'static Metadata<'static>,
        push: &mut dyn FnMut(KeyValue),
    ) {
        if self.location {
            crate::location::attributes_of(meta, push);
        }
    }
}

impl std::fmt::Debug for OtlpLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpLayer")
            .field("scope", &self.scope)
            .field("limits", &self.limits)
            .field("location", &self.location)
            .field("inactivity", &self.inactivity)
            .field("error_events_to_status", &self.error_events_to_status)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// Busy and idle time of a span.
#[derive(Clone, Copy)]
struct Timing {
    /// When the span was last entered by a first thread, or last left by
    /// the last thread inside it (or created): a [`mono`] read.
    last: u64,
    busy_ns: u64,
    idle_ns: u64,
    /// Threads inside the span now.
    inside: u32,
}

impl Timing {
    fn starting_at(now: u64) -> Timing {
        Timing {
            last: now,
            busy_ns: 0,
            idle_ns: 0,
            inside: 0,
        }
    }
}

/// The registry extension of a span this layer tracks: its state, boxed,
/// the box recycled by the thread that closes the span (see [`spare`]), so
/// that the state is built and recorded where it lies instead of being
/// moved into and out of the extension.
pub(crate) struct Slot(Box<SpanState>);

/// How many closed spans' state boxes a thread keeps for its next spans.
const SPARE_STATES: usize = 8;

thread_local! {
    /// State boxes of spans this thread closed, blank, for its next spans.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<SpanState>>> = const { RefCell::new(Vec::new()) };
}

/// A blank state box: a recycled one if this thread has one.
fn spare() -> Box<SpanState> {
    SPARE
        .try_with(|spare| spare.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Box::new(SpanState::blank()))
}

/// Keeps `state`'s box for this thread's next span, once its data has
/// been recorded and cleared.
fn recycle(mut state: Box<SpanState>) {
    let s = &mut *state;
    s.owner = 0;
    (s.recording, s.keep, s.frozen) = (false, false, false);
    s.timing = None;
    let _ = SPARE.try_with(move |spare| {
        if let Ok(mut spare) = spare.try_borrow_mut()
            && spare.len() < SPARE_STATES
        {
            spare.push(state);
        }
    });
}

fn blank_data() -> SpanData {
    SpanData::with_context(Str::Borrowed(""), SpanContext::INVALID)
}

/// Copies the span's shared location set into its own attributes (after
/// them, where the encoders put it), those of a key the span already has
/// left out (the span's own value wins, as when the set is encoded): the
/// span's keys, and its count, stay as they would be exported. For a
/// `Span::record` of one of the set's keys, which then replaces that value.
#[cold]
fn unshare(data: &mut SpanData) {
    if let Some(set) = data.shared_attributes.take() {
        let own = data.attributes.len();
        for kv in set.attributes() {
            if !data.attributes[..own].iter().any(|a| a.key == kv.key) {
                data.attributes.push(kv.clone());
            }
        }
    }
}

/// What the layer keeps for one span, in the registry's extensions.
pub(crate) struct SpanState {
    pub(crate) data: SpanData,
    /// The layer that made it (`OtlpLayer::id`).
    owner: usize,
    /// The sampler's decision was to record (the sampled flag, in the
    /// context, says whether it is exported).
    recording: bool,
    /// Whether fields, events and links are kept: the span is recording,
    /// or it is a root whose sampling a remote parent may still decide
    /// (see `set_parent`).
    keep: bool,
    /// Set once the span's context has been handed out (to a child, a
    /// link, or `span_context`): from then on its ids and sampling decision
    /// stay as they are.
    frozen: bool,
    timing: Option<Timing>,
}

impl SpanState {
    fn blank() -> SpanState {
        SpanState {
            data: blank_data(),
            owner: 0,
            recording: false,
            keep: false,
            frozen: false,
            timing: None,
        }
    }

    fn apply_otel(&mut self, otel: OtelFields) {
        if let Some(name) = otel.name {
            self.data.name = name;
        }
        if let Some(kind) = otel.kind {
            self.data.kind = kind;
        }
        // As the trace API's `Span::set_status` (found by review: an `ok`
        // span became an error, and `unset` erased an error): once `Ok`,
        // the status is final; `unset` changes nothing; `ok` carries no
        // description. As tracing-opentelemetry reads the fields, a
        // description (with an `error` code, or alone) makes the status an
        // error with it; an `error` code without one keeps the description
        // the span has, if any.
        let status = &mut self.data.status;
        if status.code == StatusCode::Ok {
            return;
        }
        match (otel.status_code, otel.status_message) {
            (Some(StatusCode::Ok), _) => *status = Status::ok(),
            (Some(StatusCode::Error) | Some(StatusCode::Unset) | None, Some(message)) => {
                *status = Status::error(message);
            }
            (Some(StatusCode::Error), None) => status.code = StatusCode::Error,
            (Some(StatusCode::Unset) | None, None) => {}
        }
    }

    /// This span's context, handed out: the span's ids and sampling
    /// decision are final from now on (an unrecorded root lets go of what
    /// it kept in case a remote parent sampled it).
    pub(crate) fn context(&mut self) -> SpanContext {
        if !self.frozen {
            self.frozen = true;
            if !self.recording && self.keep {
                self.keep = false;
                self.timing = None;
                let d = &mut self.data;
                (d.attributes, d.events, d.links) = (Vec::new(), Vec::new(), Vec::new());
            }
        }
        self.data.context.clone()
    }

    /// Makes `parent` (usually remote) this span's parent, if the span's
    /// context has not been handed out yet.
    /// `meta`: the span's callsite, for the location attributes of a span
    /// that starts keeping here; `entered`: the span is entered on the
    /// calling thread (its busy time then starts now; an enter on another
    /// thread at this moment counts from its next enter).
    pub(crate) fn set_parent(
        &mut self,
        layer: &OtlpLayer,
        parent: &SpanContext,
        meta: Option<&'static Metadata<'static>>,
        entered: bool,
    ) -> bool {
        if self.frozen || !parent.is_valid() {
            return false;
        }
        if layer.disabled {
            // As the API without an SDK: the parent's context, unchanged.
            self.data.context.clone_from(parent);
            return true;
        }
        let c = &mut self.data.context;
        c.trace_id = parent.trace_id;
        c.trace_state = parent.trace_state.clone();
        self.data.parent_span_id = parent.span_id;
        self.data.parent_is_remote = parent.is_remote;
        let decision = layer.decide(Some(parent), &self.data);
        self.data.context.trace_flags = flags(decision);
        self.recording = decision.is_recording();
        // A span that kept nothing (a child of an unrecorded span) starts
        // keeping from here, and its clock starts now.
        if !self.keep && self.recording {
            self.keep = true;
            // Its location, as a span kept from its creation has (found
            // by review: it was exported without `code.*`).
            if layer.location
                && let Some(meta) = meta
            {
                layer.push_location(&mut self.data, meta);
            }
            let now = mono();
            self.data.start_time_unix_nano = unix_of(now);
            if layer.inactivity {
                let mut timing = Timing::starting_at(now);
                timing.inside = u32::from(entered);
                self.timing = Some(timing);
            }
        }
        true
    }

    /// Adds a link to `context` (kept within the link limit, counted as
    /// dropped past it). `false` when the span keeps nothing (not sampled):
    /// the link is gone.
    pub(crate) fn add_link(&mut self, layer: &OtlpLayer, context: SpanContext) -> bool {
        if !self.keep {
            return false;
        }
        if self.data.links.len() < layer.limits.link_count {
            self.data.links.push(Link {
                context,
                attributes: Vec::new(),
                dropped_attributes_count: 0,
            });
        } else {
            self.data.dropped_links_count = self.data.dropped_links_count.saturating_add(1);
        }
        true
    }
}

fn flags(decision: SamplingDecision) -> TraceFlags {
    if decision.is_sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::NOT_SAMPLED
    }
}

/// The context of `span`, or of its nearest ancestor this layer tracks
/// (one without a state: made before this layer was reloaded in, say),
/// marking it handed out. For a parent.
fn context_of<S>(span: SpanRef<'_, S>) -> Option<SpanContext>
where
    S: for<'a> LookupSpan<'a>,
{
    span.scope().find_map(|ancestor| own_context(&ancestor))
}

/// The context of `span` itself, marking it handed out; `None` when it has
/// no state: one this layer does not track, or one closing on another
/// thread (its state already taken to be recorded). For a link, which must
/// name that span or nothing (found by review: a `follows_from` racing the
/// close of the span it names linked to that span's parent).
fn own_context<S>(span: &SpanRef<'_, S>) -> Option<SpanContext>
where
    S: for<'a> LookupSpan<'a>,
{
    {
        let ext = span.extensions();
        match ext.get::<Slot>() {
            Some(Slot(state)) if state.frozen => return Some(state.data.context.clone()),
            Some(_) => {}
            None => return None,
        }
    }
    // Gone in between if the span closed meanwhile.
    span.extensions_mut()
        .get_mut::<Slot>()
        .map(|Slot(state)| state.context())
}

/// The hook [`OtlpSpanExt`](crate::OtlpSpanExt) reaches the span's state
/// through: found with `Dispatch::downcast_ref`, it knows the subscriber's
/// type.
pub(crate) struct WithContext(pub(crate) StateFn);

/// Runs a closure on the state of the span `Id` of the subscriber behind
/// the `Dispatch`.
type StateFn = fn(&Dispatch, &Id, &mut dyn FnMut(&mut SpanState, &OtlpLayer));

struct ContextFn<S>(PhantomData<fn(S)>);

impl<S> ContextFn<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    const WITH: WithContext = WithContext(with_state::<S>);
}

fn with_state<S>(dispatch: &Dispatch, id: &Id, f: &mut dyn FnMut(&mut SpanState, &OtlpLayer))
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let (Some(registry), Some(layer)) = (
        dispatch.downcast_ref::<S>(),
        dispatch.downcast_ref::<OtlpLayer>(),
    ) else {
        return;
    };
    let Some(span) = registry.span(id) else {
        return;
    };
    let mut ext = span.extensions_mut();
    if let Some(Slot(state)) = ext.get_mut::<Slot>() {
        f(state, layer);
    }
}

impl<S> tracing_subscriber::Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let meta = attrs.metadata();
        // The registry has linked the new span to its parent (the explicit
        // one, or the current span); up those links, `parent` gives the
        // nearest ancestor this layer sees, under a per-layer filter too.
        // Not `Context::lookup_current`, which gives the nearest span on
        // this thread's stack that the filter lets through: under a span
        // the filter leaves out, one that is not an ancestor, or none
        // (found by review: a `debug_span!` task run on another thread
        // made its `info_span!` children new traces).
        let parent_ref = if attrs.is_root() { None } else { span.parent() };
        let parent = parent_ref.and_then(context_of);
        // Built where it will stay: a blank box (recycled), filled in place.
        let mut state = spare();
        state.owner = self.id;
        if self.disabled {
            // A disabled pipeline is the trace API without an SDK: the span
            // records nothing and carries its parent's context unchanged
            // (found by review: a new span id with the sampled flag cleared
            // went on to the next service, whose `ParentBased` sampler then
            // dropped the trace); a root has none (invalid: nothing to send
            // on). The box is blank: its context is invalid.
            if let Some(p) = parent.filter(SpanContext::is_valid) {
                state.data.context = p;
            }
            self.insert(&span, state);
            return;
        }
        let data = &mut state.data;
        data.name = Str::Borrowed(meta.name());
        data.scope = self.scope;
        match &parent {
            Some(p) => {
                data.context.trace_id = p.trace_id;
                data.context.span_id = SpanId::random();
                data.context.trace_state.clone_from(&p.trace_state);
                data.parent_span_id = p.span_id;
                data.parent_is_remote = p.is_remote;
            }
            None => {
                data.context.trace_id = TraceId::random();
                data.context.span_id = SpanId::random();
            }
        }
        // A child is sampled before its fields are read (the sampler sees
        // its `tracing` name and kind `Internal`), so that a dropped child
        // reads nothing. A root keeps its fields whatever the sampler says,
        // because a remote parent set next (`set_parent`) may sample it; it
        // is sampled after its fields are read (`otel.name`, `otel.kind`).
        let decision = parent.as_ref().map(|p| self.decide(Some(p), &state.data));
        let keep = decision.is_none_or(SamplingDecision::is_recording);
        state.recording = keep;
        state.keep = keep;
        if keep {
            let extra = if self.location { 4 } else { 0 } + if self.inactivity { 2 } else { 0 };
            let wanted = (attrs.fields().len() + extra).min(self.limits.attribute_count);
            state.data.attributes.reserve_exact(wanted);
            let mut fields = SpanFields {
                attributes: &mut state.data.attributes,
                max: self.limits.attribute_count,
                dropped: 0,
                limit: self.limits.attribute_value_length,
                otel: OtelFields::default(),
            };
            attrs.record(&mut fields);
            let (dropped, otel) = (fields.dropped, fields.otel);
            state.data.dropped_attributes_count = dropped;
            state.apply_otel(otel);
            if self.location {
                self.push_location(&mut state.data, meta);
            }
            // A span that keeps nothing reads no clock.
            let now = mono();
            state.data.start_time_unix_nano = unix_of(now);
            if self.inactivity {
                state.timing = Some(Timing::starting_at(now));
            }
        }
        let decision = decision.unwrap_or_else(|| self.decide(None, &state.data));
        state.data.context.trace_flags = flags(decision);
        state.recording = decision.is_recording();
        self.insert(&span, state);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        if !span
            .extensions()
            .get::<Slot>()
            .is_some_and(|Slot(s)| s.keep && s.owner == self.id)
        {
            return;
        }
        // Formatted before the span's lock is taken: user code runs here.
        let mut attributes = Vec::new();
        let mut fields = SpanFields {
            attributes: &mut attributes,
            max: usize::MAX,
            dropped: 0,
            limit: self.limits.attribute_value_length,
            otel: OtelFields::default(),
        };
        values.record(&mut fields);
        let (otel, dropped) = (fields.otel, fields.dropped);
        let mut ext = span.extensions_mut();
        let Some(state) = ext
            .get_mut::<Slot>()
            .map(|Slot(s)| &mut **s)
            .filter(|s| s.owner == self.id)
        else {
            return;
        };
        state.apply_otel(otel);
        // Fields without a name (dropped, counted).
        let d = &mut state.data.dropped_attributes_count;
        *d = d.saturating_add(dropped);
        // The span's keys are unique (`SpanFields`): the one of that name.
        // A key of the callsite's shared location set (`code.*`, `target`)
        // is the span's too: the set is copied into the span's own
        // attributes first, and the value replaced there, taking no new
        // place (found by review: at the attribute limit the value was
        // dropped, the callsite's kept).
        for kv in attributes {
            if state
                .data
                .shared_attributes
                .is_some_and(|set| set.attributes().iter().any(|a| a.key == kv.key))
            {
                unshare(&mut state.data);
            }
            match state.data.attributes.iter_mut().find(|a| a.key == kv.key) {
                Some(existing) => existing.value = kv.value,
                None => self.push_attribute(&mut state.data, kv),
            }
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let (Some(span), Some(follows)) = (ctx.span(id), ctx.span(follows)) else {
            return;
        };
        if !span
            .extensions()
            .get::<Slot>()
            .is_some_and(|Slot(s)| s.keep && s.owner == self.id)
        {
            return;
        }
        // That span's own context, not an ancestor's (as
        // tracing-opentelemetry: a span closed meanwhile gives no link).
        let Some(context) = own_context(&follows) else {
            return;
        };
        let mut ext = span.extensions_mut();
        if let Some(state) = ext
            .get_mut::<Slot>()
            .map(|Slot(s)| &mut **s)
            .filter(|s| s.owner == self.id)
        {
            // Dropped when the span keeps nothing (nothing to tell).
            let _ = state.add_link(self, context);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            self.counters.count(Count::EventOutsideSpan);
            return;
        };
        if !span
            .extensions()
            .get::<Slot>()
            .is_some_and(|Slot(s)| s.keep && s.owner == self.id)
        {
            return;
        }
        let meta = event.metadata();
        let time_unix_nano = unix_of(mono());
        // Formatted before the span's lock is taken: user code runs here.
        let mut fields = EventFields {
            message: None,
            error: None,
            exception: false,
            attributes: Vec::with_capacity(
                (meta.fields().len() + 5).min(self.limits.attributes_per_event),
            ),
            max: self.limits.attributes_per_event,
            dropped: 0,
            limit: self.limits.attribute_value_length,
            // A `log` record's event (tracing-log): its location is in its
            // `log.*` fields, not in its metadata (found by review: such
            // events had the target `log` and no `code.*`).
            log: LogLocation::is_log_event(meta).then(LogLocation::default),
        };
        // `level` first (kept first under the attribute limit); an event
        // field of that name replaces it, and the location's `code.*` are
        // added only where the event has no field of that name (an OTLP
        // event's keys are unique).
        fields.record_static(
            Str::Borrowed("level"),
            Value::Str(Str::Borrowed(meta.level().as_str())),
        );
        event.record(&mut fields);
        match fields.log.take() {
            Some(log) if self.location => {
                let limit = fields.limit;
                log.attributes(limit, &mut |kv| fields.record_static(kv.key, kv.value));
            }
            Some(_) => {}
            None => {
                self.location_attributes(meta, &mut |kv| fields.record_static(kv.key, kv.value));
            }
        }
        // The status an event sets, if the span's is unset: as
        // tracing-opentelemetry 0.34, an `error` field before any message
        // (an exception event, at any level) gives an error with its text,
        // and an `ERROR` event an error, described by its message or else
        // its error's text.
        let status_message = if !self.error_events_to_status {
            None
        } else if fields.exception {
            fields.error.clone()
        } else if *meta.level() == Level::ERROR {
            Some(
                fields
                    .message
                    .clone()
                    .or_else(|| fields.error.clone())
                    .unwrap_or_default(),
            )
        } else {
            None
        };
        let name = match fields.message {
            Some(message) => Str::Owned(message),
            None if fields.exception => Str::Borrowed("exception"),
            None => Str::Borrowed(meta.name()),
        };
        let mut ext = span.extensions_mut();
        let Some(state) = ext
            .get_mut::<Slot>()
            .map(|Slot(s)| &mut **s)
            .filter(|s| s.owner == self.id)
        else {
            return;
        };
        // The first error wins; one set with `otel.status_code` (or `Ok`)
        // stays.
        if let Some(message) = status_message
            && state.data.status.code == StatusCode::Unset
        {
            state.data.status = Status::error(message);
        }
        if state.data.events.len() < self.limits.event_count {
            state.data.events.push(Event {
                name,
                time_unix_nano,
                attributes: fields.attributes,
                dropped_attributes_count: fields.dropped,
            });
        } else {
            state.data.dropped_events_count = state.data.dropped_events_count.saturating_add(1);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.inactivity {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        if let Some(t) = ext
            .get_mut::<Slot>()
            .filter(|Slot(s)| s.owner == self.id)
            .and_then(|Slot(s)| s.timing.as_mut())
        {
            if t.inside == 0 {
                let now = mono();
                t.idle_ns = t.idle_ns.saturating_add(now.saturating_sub(t.last));
                t.last = now;
            }
            t.inside = t.inside.saturating_add(1);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.inactivity {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        if let Some(t) = ext
            .get_mut::<Slot>()
            .filter(|Slot(s)| s.owner == self.id)
            .and_then(|Slot(s)| s.timing.as_mut())
        {
            t.inside = t.inside.saturating_sub(1);
            if t.inside == 0 {
                let now = mono();
                t.busy_ns = t.busy_ns.saturating_add(now.saturating_sub(t.last));
                t.last = now;
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let slot = {
            let mut ext = span.extensions_mut();
            match ext.get_mut::<Slot>() {
                Some(Slot(s)) if s.owner == self.id => ext.remove::<Slot>(),
                _ => None,
            }
        };
        let Some(Slot(mut state)) = slot else {
            return;
        };
        // Recording, not only the flag: a span of a disabled pipeline
        // carries its parent's flag and records nothing.
        let sampled = state.recording && state.data.context.trace_flags.is_sampled();
        if sampled {
            let now = mono();
            let data = &mut state.data;
            data.end_time_unix_nano = unix_of(now).max(data.start_time_unix_nano);
            if let Some(t) = state.timing {
                let (mut busy, mut idle) = (t.busy_ns, t.idle_ns);
                let since = now.saturating_sub(t.last);
                if t.inside > 0 {
                    busy = busy.saturating_add(since);
                } else {
                    idle = idle.saturating_add(since);
                }
                let as_i64 = |n: u64| Value::I64(i64::try_from(n).unwrap_or(i64::MAX));
                // A field of the span's own with either name keeps its
                // value (an OTLP span's keys are unique).
                let own = |key: &str| data.attributes.iter().any(|kv| kv.key == key);
                let (busy_own, idle_own) = (own("busy_ns"), own("idle_ns"));
                if !busy_own
                    && !idle_own
                    && data.attributes_len() + 2 <= self.limits.attribute_count
                {
                    push_attribute(&mut data.attributes, Str::Borrowed("busy_ns"), as_i64(busy));
                    push_attribute(&mut data.attributes, Str::Borrowed("idle_ns"), as_i64(idle));
                } else {
                    if !busy_own {
                        self.push_attribute(data, KeyValue::new("busy_ns", as_i64(busy)));
                    }
                    if !idle_own {
                        self.push_attribute(data, KeyValue::new("idle_ns", as_i64(idle)));
                    }
                }
            }
        }
        // The span's data is recorded where it lies (encoded into the
        // queue, never moved), then cleared: the box, and its vectors'
        // capacity, stay with this thread for its next span. An unsampled
        // span is handed over for the count only: the pipeline counts it as
        // `not_sampled` (a counter, no encoding, no queue), as it does for
        // its own tracer's spans. The pipeline counts what becomes of a
        // sampled one (after shutdown included).
        self.pipeline.record_in_place(&mut state.data);
        state.data.clear();
        recycle(state);
        self.counters.count(if sampled {
            Count::Recorded
        } else {
            Count::NotSampled
        });
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(std::ptr::from_ref(self).cast())
        } else if id == TypeId::of::<WithContext>() {
            // A promoted constant: lives for the whole program.
            let with: &'static WithContext = &ContextFn::<S>::WITH;
            Some(std::ptr::from_ref(with).cast())
        } else {
            None
        }
    }
}
