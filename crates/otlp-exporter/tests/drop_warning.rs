//! The worker's periodic "spans dropped" warning names every drop reason
//! that `ExportStats::dropped` counts (but `not_sampled`, which is not a
//! loss): a reason added to [`Dropped`] and left out of the warning made
//! it report new drops with no reason for them (found by review with
//! `invalid_ids`; `timed_out_at_shutdown` and `after_shutdown` were
//! missing too). Its own test binary: it installs a global subscriber.

use std::sync::Mutex;
use std::time::Duration;

use otlp_exporter::{
    Dropped, InMemory, Pipeline, SpanContext, SpanData, SpanId, TraceFlags, TraceId,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The events seen: each its fields' names and values.
static EVENTS: Mutex<Vec<Vec<(String, String)>>> = Mutex::new(Vec::new());

struct Capture;

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.push((f.name().to_string(), format!("{v:?}")));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut f = Fields(Vec::new());
        e.record(&mut f);
        EVENTS.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The field names of `Dropped`, read from its `Debug` output.
fn drop_reasons() -> Vec<String> {
    let debug = format!("{:?}", Dropped::default());
    let inner = debug
        .strip_prefix("Dropped { ")
        .and_then(|s| s.strip_suffix(" }"))
        .expect("Dropped's derived Debug");
    inner
        .split(", ")
        .map(|kv| kv.split(": ").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_drop_warning_names_every_reason_counted() {
    tracing::subscriber::set_global_default(Capture).unwrap();
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .build()
        .unwrap();
    // Five spans refused for their all-zero trace id: the warning must say
    // why.
    for _ in 0..5 {
        let mut ctx = SpanContext::new(TraceId([0; 16]), SpanId([1; 8]));
        ctx.trace_flags = TraceFlags::SAMPLED;
        pipeline.record(SpanData::with_context("zero trace id", ctx));
    }
    pipeline.record(SpanData::new("ok"));
    assert!(pipeline.force_flush(Duration::from_secs(10)).completed);
    assert_eq!(pipeline.stats().dropped.invalid_ids, 5);
    pipeline.shutdown(Duration::from_secs(10));

    let events = EVENTS.lock().unwrap();
    let warning = events
        .iter()
        .find(|fields| fields.iter().any(|(k, _)| k == "new_drops"))
        .expect("a drop warning");
    let named: Vec<&str> = warning.iter().map(|(k, _)| k.as_str()).collect();
    let reasons = drop_reasons();
    assert!(reasons.len() >= 12, "{reasons:?}");
    for reason in reasons.iter().filter(|r| *r != "not_sampled") {
        assert!(
            named.contains(&reason.as_str()),
            "the warning leaves out `{reason}`: {warning:?}"
        );
    }
    let value = |k: &str| warning.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(value("new_drops").as_deref(), Some("5"));
    assert_eq!(value("invalid_ids").as_deref(), Some("5"));
}
