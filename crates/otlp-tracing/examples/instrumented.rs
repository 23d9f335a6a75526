//! An application instrumented only with `tracing`, exporting through
//! `otlp-tracing`: nested `#[instrument]` functions, events, an error
//! status, and a remote parent taken from a `traceparent` header.
//!
//! ```text
//! cargo run -p otlp-tracing --example instrumented
//! RUST_LOG=debug OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run -p otlp-tracing --example instrumented
//! ```
//!
//! Without `OTEL_EXPORTER_OTLP_ENDPOINT` the pipeline writes OTLP JSON
//! lines to `otlp-traces.jsonl`. `tests/example_tree.rs` runs [`run`] and
//! checks the OTLP it produces.

use std::time::Duration;

use otlp_exporter::{FsAccess, NetAccess, Pipeline, SpanContext, ambient_authority};
use otlp_tracing::{OtlpLayer, OtlpSpanExt};
use tracing::{Span, field, instrument};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// An order to check out.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    /// Its id.
    pub(crate) id: u64,
    /// Stock-keeping units, one per item.
    pub(crate) skus: Vec<&'static str>,
}

/// The card was declined.
#[derive(Debug)]
pub(crate) struct PaymentDeclined {
    /// What was asked.
    pub(crate) total: u64,
}

impl std::fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "payment of {} declined", self.total)
    }
}

impl std::error::Error for PaymentDeclined {}

/// What one request produced: its response code and the `traceparent` it
/// sent to the payment service.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The HTTP status code answered.
    pub(crate) status: u16,
    /// The `traceparent` header of the call to the payment service.
    pub(crate) downstream_traceparent: Option<String>,
}

/// Handles `POST /checkout` for a request that carried `traceparent`.
pub(crate) fn serve(traceparent: Option<&str>, order: &Order) -> Outcome {
    let span = tracing::info_span!(
        "POST /checkout",
        otel.kind = "server",
        http.request.method = "POST",
        http.response.status_code = field::Empty,
    );
    // Continue the caller's trace (a malformed header starts a new one).
    if let Some(parent) = traceparent.and_then(|h| SpanContext::from_traceparent(h).ok()) {
        span.set_parent(parent);
    }
    let _entered = span.enter();
    let (status, downstream_traceparent) = match checkout(order) {
        Ok(sent) => (200, Some(sent)),
        Err(_) => (402, None),
    };
    span.record("http.response.status_code", status);
    Outcome {
        status,
        downstream_traceparent,
    }
}

/// Prices the order and charges it; returns the `traceparent` sent to the
/// payment service.
#[instrument(skip(order), fields(order.id = order.id, items = order.skus.len(), otel.status_code = field::Empty, otel.status_message = field::Empty))]
fn checkout(order: &Order) -> Result<String, PaymentDeclined> {
    let total = price(order);
    tracing::info!(total, "order priced");
    match charge(order.id, total) {
        Ok(sent) => Ok(sent),
        Err(e) => {
            let span = Span::current();
            span.record("otel.status_code", "error");
            span.record("otel.status_message", e.to_string());
            Err(e)
        }
    }
}

#[instrument(skip(order), fields(order.id = order.id))]
fn price(order: &Order) -> u64 {
    order.skus.iter().map(|sku| lookup(sku)).sum()
}

#[instrument]
fn lookup(sku: &str) -> u64 {
    let cents = 10 * sku.len() as u64;
    tracing::debug!(cents, "price found");
    cents
}

/// Calls the payment service, sending the current context on.
#[instrument(err, fields(otel.kind = "client"))]
fn charge(order_id: u64, total: u64) -> Result<String, PaymentDeclined> {
    let traceparent = Span::current()
        .span_context()
        .map(|cx| cx.to_traceparent())
        .unwrap_or_default();
    if total > 100 {
        tracing::warn!(total, limit = 100_u64, "over the card limit");
        return Err(PaymentDeclined { total });
    }
    Ok(traceparent)
}

/// The application's work: two requests from a caller that sent a
/// `traceparent`, one that succeeds and one whose payment is declined.
pub(crate) fn run() -> Vec<Outcome> {
    let ok = Order {
        id: 1,
        skus: vec!["tea", "cups"],
    };
    let declined = Order {
        id: 2,
        skus: vec!["teapot", "samovar", "kettle"],
    };
    vec![
        serve(Some(REQUEST_TRACEPARENTS[0]), &ok),
        serve(Some(REQUEST_TRACEPARENTS[1]), &declined),
    ]
}

/// The `traceparent` headers the two requests of [`run`] arrive with.
pub(crate) const REQUEST_TRACEPARENTS: [&str; 2] = [
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
];

fn main() {
    // The pipeline: OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT when set,
    // OTLP JSON lines in otlp-traces.jsonl otherwise (given network access
    // and no file, the pipeline would send to http://localhost:4318, the
    // spec's default). This is a `main`: its network and file-system
    // access (the latter also for an `https` collector's PEM files) come
    // from ambient authority.
    let endpoint_set = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()));
    let builder = Pipeline::builder().filesystem(FsAccess::from_ambient(ambient_authority()));
    let builder = if endpoint_set {
        builder.network(NetAccess::from_ambient(ambient_authority()))
    } else {
        builder.file("otlp-traces.jsonl")
    };
    let pipeline = match builder.build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bad pipeline settings: {e}");
            std::process::exit(2);
        }
    };
    // The one line that changes when coming from tracing-opentelemetry.
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug")))
        .with(OtlpLayer::new(&pipeline).with_scope("instrumented", env!("CARGO_PKG_VERSION")))
        .init();

    for outcome in run() {
        println!(
            "answered {}, sent traceparent {:?}",
            outcome.status, outcome.downstream_traceparent
        );
    }
    let report = pipeline.shutdown(Duration::from_secs(10));
    println!(
        "exported {} spans, dropped {} (shutdown completed: {})",
        report.stats.exported,
        report.stats.dropped.total(),
        report.completed
    );
}
