//! Runs the example application (`examples/instrumented.rs`) through the
//! layer and checks the OTLP it produces, decoded with
//! `opentelemetry-proto`: one trace per request continuing the caller's,
//! the parent ids of the `#[instrument]` tree, attributes, events, the
//! error status, and the `traceparent` sent on.

mod common;

#[allow(dead_code)]
#[path = "../examples/instrumented.rs"]
mod instrumented;

use common::*;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use otlp_exporter::SpanContext;
use otlp_tracing::OtlpLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_example_exports_the_tree_it_instruments() {
    let (pipeline, memory) = pipeline();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new("debug"))
        .with(OtlpLayer::new(&pipeline).with_scope("instrumented", "test"));
    let outcomes = tracing::subscriber::with_default(subscriber, instrumented::run);
    let spans = finish(&pipeline, &memory);

    assert_eq!(
        outcomes.iter().map(|o| o.status).collect::<Vec<_>>(),
        [200, 402]
    );
    // Per request: server, checkout, price, lookups (2, then 3), charge.
    assert_eq!(spans.len(), (4 + 2) + (4 + 3), "{:?}", names(&spans));

    for (i, traceparent) in instrumented::REQUEST_TRACEPARENTS.iter().enumerate() {
        let remote = SpanContext::from_traceparent(traceparent).expect("valid");
        let trace: Vec<Span> = spans
            .iter()
            .filter(|s| s.trace_id == remote.trace_id.0)
            .cloned()
            .collect();
        assert_eq!(
            trace.len(),
            if i == 0 { 6 } else { 7 },
            "request {i}: one trace"
        );

        // The tree.
        let server = named(&trace, "POST /checkout");
        let checkout = named(&trace, "checkout");
        let price = named(&trace, "price");
        let charge = named(&trace, "charge");
        assert_eq!(
            server.parent_span_id, remote.span_id.0,
            "remote parent honoured"
        );
        assert_eq!(checkout.parent_span_id, server.span_id);
        assert_eq!(price.parent_span_id, checkout.span_id);
        assert_eq!(charge.parent_span_id, checkout.span_id);
        let lookups: Vec<&Span> = trace.iter().filter(|s| s.name == "lookup").collect();
        assert_eq!(lookups.len(), if i == 0 { 2 } else { 3 });
        for l in &lookups {
            assert_eq!(l.parent_span_id, price.span_id);
            assert!(string(&l.attributes, "sku").is_some());
            assert_eq!(l.events.len(), 1, "the debug event");
            assert_eq!(l.events[0].name, "price found");
            assert_eq!(string(&l.events[0].attributes, "level"), Some("DEBUG"));
        }

        // Kinds and attributes.
        assert_eq!(server.kind, SpanKind::Server as i32);
        assert_eq!(charge.kind, SpanKind::Client as i32);
        assert_eq!(checkout.kind, SpanKind::Internal as i32);
        assert_eq!(
            string(&server.attributes, "http.request.method"),
            Some("POST")
        );
        let order_id = i64::try_from(i + 1).unwrap();
        assert_eq!(int(&checkout.attributes, "order.id"), Some(order_id));
        assert_eq!(int(&charge.attributes, "order_id"), Some(order_id));
        assert!(
            string(&checkout.attributes, "code.file.path")
                .is_some_and(|f| f.ends_with("examples/instrumented.rs"))
        );
        assert!(int(&checkout.attributes, "busy_ns").is_some());

        // The event inside checkout.
        let priced = &checkout.events[0];
        assert_eq!(priced.name, "order priced");
        let total = int(&priced.attributes, "total").expect("total");
        assert_eq!(int(&charge.attributes, "total"), Some(total));

        if i == 0 {
            assert_eq!(
                int(&server.attributes, "http.response.status_code"),
                Some(200)
            );
            for s in &trace {
                let code = s.status.as_ref().map_or(0, |st| st.code);
                assert_eq!(code, StatusCode::Unset as i32, "{} succeeded", s.name);
            }
            // The context sent on to the payment service is charge's.
            let sent = outcomes[0].downstream_traceparent.as_deref().expect("sent");
            assert_eq!(
                sent,
                format!("00-{}-{}-01", hex(&remote.trace_id.0), hex(&charge.span_id))
            );
        } else {
            assert_eq!(
                int(&server.attributes, "http.response.status_code"),
                Some(402)
            );
            // `#[instrument(err)]`: the error event sets charge's status.
            let status = charge.status.clone().expect("status");
            assert_eq!(status.code, StatusCode::Error as i32);
            assert_eq!(status.message, format!("payment of {total} declined"));
            let names: Vec<&str> = charge.events.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names[0], "over the card limit");
            // As tracing-opentelemetry names it: an exception event.
            assert_eq!(names[1], "exception");
            assert_eq!(string(&charge.events[1].attributes, "level"), Some("ERROR"));
            assert_eq!(
                string(&charge.events[1].attributes, "exception.message"),
                Some(format!("payment of {total} declined").as_str())
            );
            // `otel.status_code` recorded by checkout itself.
            let status = checkout.status.clone().expect("status");
            assert_eq!(status.code, StatusCode::Error as i32);
            assert_eq!(status.message, format!("payment of {total} declined"));
            assert!(outcomes[1].downstream_traceparent.is_none());
        }
    }
}
