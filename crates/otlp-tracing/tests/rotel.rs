//! End to end through the layer against rotel, a real OpenTelemetry
//! collector (issue 14, item 6): spans made only with `tracing` macros on
//! several threads, recorded by `OtlpLayer` into a pipeline sending
//! OTLP/HTTP, reach the collector exactly once each (ids, names, trace
//! ids, parent ids, fields), and the collector logs exactly the exported
//! count.
//!
//! Here rather than beside otlp-exporter's rotel test: otlp-exporter
//! cannot have otlp-tracing (which depends on it) as a dev-dependency.
//! Needs the `rotel-agent` binary in `ROTEL_AGENT`; `cargo xtask test`
//! installs rotel (from PyPI) and runs this test. Run alone with
//! `ROTEL_AGENT=/path/to/rotel-agent cargo test -p otlp-tracing --test rotel -- --ignored`.

#[path = "../../otlp-exporter/tests/support/rotel.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::{Logged, Rotel};

use otlp_exporter::{HttpTransport, Pipeline, Resource, Sampler};
use otlp_tracing::{OtlpLayer, OtlpSpanExt};
use tracing_subscriber::layer::SubscriberExt;

/// What a thread sent: span id -> (name, trace id, parent span id or "").
type Sent = Vec<(String, (String, String, String))>;

#[test]
#[ignore = "needs the rotel collector: `cargo xtask test` installs it and runs this test"]
fn spans_made_with_tracing_reach_a_real_collector_exactly_once() {
    const THREADS: i64 = 3;
    const REQUESTS: i64 = 20;
    let rotel = Rotel::start();
    let transport = HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
        otlp_exporter::ambient_authority(),
    ))
    .endpoint(format!("http://127.0.0.1:{}", rotel.http))
    .build()
    .unwrap();
    let pipeline = Pipeline::builder()
        .transport(transport)
        .resource(Resource::new("rotel-layer-e2e"))
        .max_export_batch_size(16)
        .build()
        .unwrap();
    let layer = OtlpLayer::new(&pipeline)
        .with_scope("e2e", "1.0")
        .with_sampler(Sampler::AlwaysOn);
    let counters = layer.counters();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));

    let sent: Sent = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let dispatch = &dispatch;
                s.spawn(move || {
                    tracing::dispatcher::with_default(dispatch, || {
                        let mut sent = Sent::new();
                        for i in 0..REQUESTS {
                            let name = format!("request-{t}-{i}");
                            let request = tracing::info_span!(
                                "request",
                                otel.name = name.as_str(),
                                thread = t,
                                i = i,
                                status = tracing::field::Empty
                            );
                            let rc = request.span_context().expect("sampled, recorded");
                            request.in_scope(|| {
                                let query = tracing::debug_span!("query", rows = i * 10);
                                let qc = query.span_context().expect("sampled, recorded");
                                query.in_scope(|| tracing::info!(cached = i % 2 == 0, "done"));
                                sent.push((
                                    qc.span_id.to_string(),
                                    (
                                        "query".to_string(),
                                        qc.trace_id.to_string(),
                                        rc.span_id.to_string(),
                                    ),
                                ));
                            });
                            request.record("status", 200_i64);
                            drop(request);
                            sent.push((
                                rc.span_id.to_string(),
                                (name, rc.trace_id.to_string(), String::new()),
                            ));
                        }
                        sent
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("recording thread"))
            .collect()
    });
    drop(dispatch);
    let total = (THREADS * REQUESTS * 2) as u64;
    assert_eq!(sent.len() as u64, total);

    let report = pipeline.shutdown(Duration::from_secs(20));
    assert!(report.completed, "{report:?}");
    let s = report.stats;
    assert!(s.is_balanced(), "{s:?}");
    assert_eq!(
        (s.accepted, s.exported, s.dropped.total()),
        (total, total, 0),
        "{s:?}"
    );
    let layer = counters.snapshot();
    assert_eq!(
        (layer.started, layer.recorded, layer.open()),
        (total, total, 0),
        "{layer:?}"
    );

    // Rotel logs exactly the exported count, each span once.
    let end = Instant::now() + Duration::from_secs(20);
    let mut logged = rotel.logged();
    while (logged.len() as u64) < s.exported && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        logged = rotel.logged();
    }
    // A moment more: a span logged twice would show up now.
    std::thread::sleep(Duration::from_millis(300));
    logged = rotel.logged();
    assert_eq!(
        logged.len() as u64,
        s.exported,
        "rotel logged {} spans, the pipeline exported {}; its log:\n{}",
        logged.len(),
        s.exported,
        rotel.text()
    );
    let got: BTreeMap<String, Logged> = logged.into_iter().collect();
    assert_eq!(got.len() as u64, s.exported, "each span exactly once");
    let want: BTreeMap<String, (String, String, String)> = sent.into_iter().collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "span ids"
    );
    for (id, span) in &got {
        let (name, trace, parent) = &want[id];
        assert_eq!(
            (&span.name, &span.trace, &span.parent),
            (name, trace, parent),
            "span {id}: name, trace id, parent id"
        );
        if let Some(rest) = name.strip_prefix("request-") {
            // The creation fields, the one recorded later, and the location.
            let (t, i) = rest.split_once('-').unwrap();
            for want in [
                format!("thread: Int({t})"),
                format!("i: Int({i})"),
                "status: Int(200)".to_string(),
            ] {
                assert!(
                    span.attrs.contains(&want),
                    "{name}: {want} not in {:?}",
                    span.attrs
                );
            }
            assert!(
                span.attrs.iter().any(|a| a.starts_with("code.file.path")),
                "{name}: {:?}",
                span.attrs
            );
        } else {
            assert!(
                span.attrs.iter().any(|a| a.starts_with("rows: Int(")),
                "{name}: {:?}",
                span.attrs
            );
        }
    }
}
