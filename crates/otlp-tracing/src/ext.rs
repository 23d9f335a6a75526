//! Reading and setting a `tracing` span's OTLP context: remote parents in,
//! context out for injection.

use otlp_exporter::SpanContext;

use crate::OtlpLayer;
use crate::layer::{SpanState, WithContext};

/// OTLP context on [`tracing::Span`]: what tracing-opentelemetry's
/// `OpenTelemetrySpanExt::set_parent` and `context()` do, for spans this
/// crate's [`OtlpLayer`] records.
///
/// Both need the span to be enabled and the current subscriber to contain
/// an [`OtlpLayer`] that it can find by downcasting (as
/// tracing-opentelemetry's extension does); otherwise they do nothing
/// (`false`, `None`). A layer wrapped in `tracing_subscriber::reload::Layer`
/// cannot be found that way (`reload` passes no downcast on): reload the
/// filter in front of it instead, or wrap the layer in an `Option`, which
/// passes it on.
///
/// ```
/// use otlp_exporter::{InMemory, Pipeline, SpanContext, SpanId, TraceId};
/// use otlp_tracing::{OtlpLayer, OtlpSpanExt};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
/// let subscriber = tracing_subscriber::registry().with(OtlpLayer::new(&pipeline));
/// tracing::subscriber::with_default(subscriber, || {
///     // From an incoming request's `traceparent` header, say.
///     let mut remote = SpanContext::new(TraceId([7; 16]), SpanId([9; 8]));
///     remote.is_remote = true;
///
///     let span = tracing::info_span!("handle request");
///     assert!(span.set_parent(remote.clone()));
///     let _entered = span.enter();
///
///     // For an outgoing request: the current span's context.
///     let current = tracing::Span::current().span_context().unwrap();
///     assert_eq!(current.trace_id, remote.trace_id);
///     assert_ne!(current.span_id, remote.span_id);
/// });
/// ```
pub trait OtlpSpanExt {
    /// Makes `parent` (typically remote, from a `traceparent` header) the
    /// parent of this span: the span joins `parent`'s trace, carries its
    /// trace state, and follows its sampled flag.
    ///
    /// Call it right after creating the span, before the span's context is
    /// handed out (before a child span starts, a link is made to it, or
    /// [`span_context`](Self::span_context) is read): children started
    /// earlier already belong to the span's first trace. Returns `false`,
    /// changing nothing, when it is too late, when `parent` is invalid
    /// (all-zero ids), or when the span is disabled or not recorded by an
    /// [`OtlpLayer`].
    ///
    /// ```
    /// # use otlp_exporter::{InMemory, Pipeline};
    /// # use otlp_tracing::{OtlpLayer, OtlpSpanExt};
    /// # use tracing_subscriber::layer::SubscriberExt;
    /// use otlp_exporter::SpanContext;
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// # let subscriber = tracing_subscriber::registry().with(OtlpLayer::new(&pipeline));
    /// # tracing::subscriber::with_default(subscriber, || {
    /// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// let span = tracing::info_span!("GET /orders", otel.kind = "server");
    /// if let Ok(parent) = SpanContext::from_traceparent(header) {
    ///     assert!(span.set_parent(parent));
    /// }
    /// # });
    /// ```
    fn set_parent(&self, parent: SpanContext) -> bool;

    /// This span's context (trace id, span id, sampled flag, trace state),
    /// to inject into an outgoing request; `None` when the span is disabled
    /// or not recorded by an [`OtlpLayer`], or has no context (a span
    /// without a parent on a disabled pipeline: see [A disabled
    /// pipeline](crate#a-disabled-pipeline), where a span's context is its
    /// parent's). Reading it fixes the span's trace (a later
    /// [`set_parent`](Self::set_parent) returns `false`).
    ///
    /// ```
    /// # use otlp_exporter::{InMemory, Pipeline};
    /// # use otlp_tracing::{OtlpLayer, OtlpSpanExt};
    /// # use tracing_subscriber::layer::SubscriberExt;
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// # let subscriber = tracing_subscriber::registry().with(OtlpLayer::new(&pipeline));
    /// # tracing::subscriber::with_default(subscriber, || {
    /// let _call = tracing::info_span!("call inventory", otel.kind = "client").entered();
    /// let cx = tracing::Span::current().span_context().expect("recorded by the layer");
    /// let traceparent = cx.to_traceparent(); // the outgoing request's header
    /// assert!(traceparent.ends_with("-01")); // sampled
    /// # });
    /// ```
    fn span_context(&self) -> Option<SpanContext>;

    /// Adds a link from this span to `context` (a span of this trace or of
    /// another), as tracing-opentelemetry's `add_link`. Returns whether the
    /// span took the link: `false`, changing nothing, when `context` is
    /// invalid (all-zero ids), when the span is disabled or not recorded by
    /// an [`OtlpLayer`], or when the span keeps nothing (one the sampler
    /// dropped: a child of an unsampled span, say). Past the pipeline's
    /// link limit the link is dropped and counted in the span's
    /// `dropped_links_count` (`true`: the span has it, as a count).
    ///
    /// ```
    /// # use otlp_exporter::{InMemory, Pipeline};
    /// # use otlp_tracing::{OtlpLayer, OtlpSpanExt};
    /// # use tracing_subscriber::layer::SubscriberExt;
    /// use otlp_exporter::SpanContext;
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// # let subscriber = tracing_subscriber::registry().with(OtlpLayer::new(&pipeline));
    /// # tracing::subscriber::with_default(subscriber, || {
    /// // The message being processed was produced in another trace.
    /// let producer = SpanContext::from_traceparent(
    ///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    /// ).unwrap();
    /// let span = tracing::info_span!("process message", otel.kind = "consumer");
    /// assert!(span.add_link(producer));
    /// # });
    /// ```
    fn add_link(&self, context: SpanContext) -> bool;
}

/// Runs `f` on the span's state, under the span's own lock (never user
/// code inside).
fn with_state<R>(
    span: &tracing::Span,
    f: impl FnOnce(&mut SpanState, &OtlpLayer) -> R,
) -> Option<R> {
    span.with_subscriber(|(id, dispatch)| {
        let hook = dispatch.downcast_ref::<WithContext>()?;
        let mut f = Some(f);
        let mut out = None;
        (hook.0)(dispatch, id, &mut |state, layer| {
            if let Some(f) = f.take() {
                out = Some(f(state, layer));
            }
        });
        out
    })
    .flatten()
}

impl OtlpSpanExt for tracing::Span {
    fn set_parent(&self, parent: SpanContext) -> bool {
        let meta = self.metadata();
        // Entered on this thread now: a span that starts keeping here (and
        // timing) is busy from now, not idle (found by review).
        let entered = self.id().is_some() && tracing::Span::current().id() == self.id();
        with_state(self, |state, layer| {
            state.set_parent(layer, &parent, meta, entered)
        })
        .unwrap_or(false)
    }

    fn span_context(&self) -> Option<SpanContext> {
        // A root of a disabled pipeline has no context (invalid, as the
        // API without an SDK gives): nothing to send on.
        with_state(self, |state, _| state.context()).filter(SpanContext::is_valid)
    }

    fn add_link(&self, context: SpanContext) -> bool {
        if !context.is_valid() {
            return false;
        }
        // Whether the span took it (found by review: `true` was returned
        // for a span that keeps nothing, the link dropped).
        with_state(self, |state, layer| state.add_link(layer, context)).unwrap_or(false)
    }
}
