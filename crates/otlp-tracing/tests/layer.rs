//! The mapping from `tracing` to OTLP, checked on the OTLP we export
//! (decoded with `opentelemetry-proto`).

mod common;

use common::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use otlp_exporter::{Sampler, SpanContext, SpanId, Str, TraceFlags, TraceId};
use otlp_tracing::{OtlpLayer, OtlpSpanExt};
use tracing::field;

#[test]
fn the_span_tree_becomes_one_trace_with_parent_ids() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        let root = tracing::info_span!("root");
        let _r = root.enter();
        let child = tracing::info_span!("child");
        child.in_scope(|| {
            tracing::info_span!("grandchild").in_scope(|| {});
        });
        let explicit = tracing::info_span!(parent: &child, "explicit child");
        drop(explicit);
        drop(child);
        tracing::info_span!(parent: None, "detached root").in_scope(|| {});
    });
    let spans = finish(&pipeline, &memory);
    assert_eq!(spans.len(), 5, "{:?}", names(&spans));
    let (root, child, grandchild, explicit, detached) = (
        named(&spans, "root"),
        named(&spans, "child"),
        named(&spans, "grandchild"),
        named(&spans, "explicit child"),
        named(&spans, "detached root"),
    );
    assert!(root.parent_span_id.is_empty(), "root has no parent");
    assert_eq!(child.parent_span_id, root.span_id);
    assert_eq!(grandchild.parent_span_id, child.span_id);
    assert_eq!(explicit.parent_span_id, child.span_id);
    for s in [child, grandchild, explicit] {
        assert_eq!(s.trace_id, root.trace_id, "{} in the root's trace", s.name);
    }
    assert!(detached.parent_span_id.is_empty());
    assert_ne!(detached.trace_id, root.trace_id, "a new trace");
    let mut ids: Vec<&Vec<u8>> = spans.iter().map(|s| &s.span_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "distinct span ids");
    for s in &spans {
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id.len(), 8);
        assert_eq!(s.flags & 0xff, 1, "sampled flag on {}", s.name);
        assert!(s.start_time_unix_nano > 0 && s.end_time_unix_nano >= s.start_time_unix_nano);
        assert_eq!(s.kind, SpanKind::Internal as i32);
    }
    assert!(grandchild.start_time_unix_nano >= child.start_time_unix_nano);
    assert!(grandchild.end_time_unix_nano <= child.end_time_unix_nano);
}

#[derive(Debug)]
#[allow(dead_code)]
struct Order {
    id: u32,
}

#[derive(Debug)]
struct Failure;

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk full")
    }
}

impl std::error::Error for Failure {}

#[test]
fn fields_become_typed_attributes_and_later_records_add_or_replace() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        let err = Failure;
        let span = tracing::info_span!(
            "typed",
            int = -5_i64,
            small_u = 7_u64,
            big_u = u64::MAX,
            float = 1.5_f64,
            flag = true,
            text = "hello",
            dbg = ?Order { id: 3 },
            disp = %"shown",
            big_i128 = i128::MIN,
            small_u128 = 9_u128,
            error = &err as &(dyn std::error::Error + 'static),
            later = field::Empty,
            replaced = 1_i64,
        );
        span.record("later", "filled in");
        span.record("replaced", 2_i64);
        drop(span);
    });
    let spans = finish(&pipeline, &memory);
    let a = &named(&spans, "typed").attributes;
    assert_eq!(int(a, "int"), Some(-5));
    assert_eq!(int(a, "small_u"), Some(7));
    assert_eq!(string(a, "big_u"), Some("18446744073709551615"));
    assert_eq!(value(a, "float"), Some(&V::DoubleValue(1.5)));
    assert_eq!(value(a, "flag"), Some(&V::BoolValue(true)));
    assert_eq!(string(a, "text"), Some("hello"));
    assert_eq!(string(a, "dbg"), Some("Order { id: 3 }"));
    assert_eq!(string(a, "disp"), Some("shown"));
    assert_eq!(string(a, "big_i128"), Some(i128::MIN.to_string().as_str()));
    assert_eq!(int(a, "small_u128"), Some(9));
    assert_eq!(string(a, "error"), Some("disk full"));
    assert_eq!(string(a, "later"), Some("filled in"));
    assert_eq!(int(a, "replaced"), Some(2));
    assert_eq!(
        keys(a).iter().filter(|k| **k == "replaced").count(),
        1,
        "a record replaces the value, it does not add a key"
    );
}

/// The status fields as tracing-opentelemetry 0.34 reads them:
/// `otel.status_description` alone is an error with that description (and
/// no attribute), as is its older name `otel.status_message`; a code of
/// `ok` set later clears a description an error event left.
#[test]
fn otel_status_fields_read_as_tracing_opentelemetry_reads_them() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        tracing::info_span!(
            "a",
            otel.status_code = "error",
            otel.status_description = "boom"
        )
        .in_scope(|| {});
        let b = tracing::info_span!("b", otel.status_code = field::Empty);
        b.in_scope(|| tracing::error!("failed once"));
        b.record("otel.status_code", "ok");
        drop(b);
        tracing::info_span!("c", otel.status_message = "why").in_scope(|| {});
        tracing::info_span!("d", otel.status_description = "alone").in_scope(|| {});
    });
    let spans = finish(&pipeline, &memory);
    let status = |name: &str| {
        let s = named(&spans, name);
        assert!(
            !keys(&s.attributes).iter().any(|k| k.starts_with("otel.")),
            "{name}: {:?}",
            keys(&s.attributes)
        );
        let st = s.status.clone().expect("status");
        (st.code, st.message)
    };
    assert_eq!(status("a"), (StatusCode::Error as i32, "boom".to_owned()));
    assert_eq!(status("b"), (StatusCode::Ok as i32, String::new()));
    assert_eq!(status("c"), (StatusCode::Error as i32, "why".to_owned()));
    assert_eq!(status("d"), (StatusCode::Error as i32, "alone".to_owned()));
}

#[test]
fn otel_fields_set_name_kind_and_status_and_are_not_attributes() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        tracing::info_span!(
            "tracing name",
            otel.name = "GET /users",
            otel.kind = "SERVER",
            otel.status_code = "ERROR",
            otel.status_message = "upstream refused"
        )
        .in_scope(|| {});
        let later = tracing::info_span!(
            "renamed later",
            otel.name = field::Empty,
            otel.kind = "client",
            otel.status_code = field::Empty
        );
        later.record("otel.name", "POST /orders");
        later.record("otel.status_code", "Ok");
        drop(later);
        tracing::info_span!("odd kind", otel.kind = "sideways").in_scope(|| {});
    });
    let spans = finish(&pipeline, &memory);
    let server = named(&spans, "GET /users");
    assert_eq!(server.kind, SpanKind::Server as i32);
    let status = server.status.as_ref().expect("status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "upstream refused");
    assert!(
        !keys(&server.attributes)
            .iter()
            .any(|k| k.starts_with("otel.")),
        "{:?}",
        keys(&server.attributes)
    );
    let client = named(&spans, "POST /orders");
    assert_eq!(client.kind, SpanKind::Client as i32);
    assert_eq!(
        client.status.as_ref().map(|s| s.code),
        Some(StatusCode::Ok as i32)
    );
    assert_eq!(named(&spans, "odd kind").kind, SpanKind::Internal as i32);
}

#[test]
fn events_become_span_events_with_level_fields_and_location() {
    let (pipeline, memory) = pipeline();
    let line = with_layer(OtlpLayer::new(&pipeline), || {
        let span = tracing::info_span!("with events");
        let _e = span.enter();
        let line = line!() + 1;
        tracing::info!(items = 3_i64, user = "ann", "cart priced");
        tracing::warn!(retry = true);
        line
    });
    let spans = finish(&pipeline, &memory);
    let span = named(&spans, "with events");
    assert_eq!(span.events.len(), 2);
    let priced = &span.events[0];
    assert_eq!(priced.name, "cart priced");
    assert_eq!(string(&priced.attributes, "level"), Some("INFO"));
    assert_eq!(int(&priced.attributes, "items"), Some(3));
    assert_eq!(string(&priced.attributes, "user"), Some("ann"));
    assert!(!keys(&priced.attributes).contains(&"message"));
    assert_eq!(
        int(&priced.attributes, "code.line.number"),
        Some(i64::from(line))
    );
    assert!(string(&priced.attributes, "code.file.path").is_some_and(|f| f.ends_with("layer.rs")));
    assert!(priced.time_unix_nano >= span.start_time_unix_nano);
    assert!(priced.time_unix_nano <= span.end_time_unix_nano);
    let retry = &span.events[1];
    assert!(
        retry.name.starts_with("event "),
        "tracing's name: {}",
        retry.name
    );
    assert_eq!(string(&retry.attributes, "level"), Some("WARN"));
    assert_eq!(value(&retry.attributes, "retry"), Some(&V::BoolValue(true)));
    assert_eq!(
        span.status.as_ref().map_or(0, |s| s.code),
        StatusCode::Unset as i32,
        "a warning leaves the status"
    );
}

#[test]
fn an_error_event_sets_the_status_once_and_never_over_an_explicit_one() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        tracing::info_span!("fails").in_scope(|| {
            tracing::error!("payment declined");
            tracing::error!("second error");
        });
        tracing::info_span!("error field").in_scope(|| {
            let err = Failure;
            tracing::error!(error = &err as &(dyn std::error::Error + 'static));
        });
        tracing::info_span!("explicit ok", otel.status_code = "ok").in_scope(|| {
            tracing::error!("ignored for status");
        });
    });
    let spans = finish(&pipeline, &memory);
    let fails = named(&spans, "fails").status.clone().expect("status");
    assert_eq!(fails.code, StatusCode::Error as i32);
    assert_eq!(fails.message, "payment declined", "the first error wins");
    let field = named(&spans, "error field");
    let status = field.status.clone().expect("status");
    assert_eq!(
        (status.code, status.message.as_str()),
        (StatusCode::Error as i32, "disk full")
    );
    assert_eq!(
        string(&field.events[0].attributes, "exception.message"),
        Some("disk full")
    );
    assert_eq!(
        string(&field.events[0].attributes, "error"),
        Some("disk full")
    );
    let ok = named(&spans, "explicit ok");
    assert_eq!(
        ok.status.as_ref().map(|s| s.code),
        Some(StatusCode::Ok as i32)
    );
    assert_eq!(ok.events.len(), 1, "the event is still recorded");
}

#[test]
fn error_events_to_status_can_be_turned_off() {
    let (pipeline, memory) = pipeline();
    with_layer(
        OtlpLayer::new(&pipeline).with_error_events_to_status(false),
        || {
            tracing::info_span!("quiet").in_scope(|| tracing::error!("not a status"));
        },
    );
    let spans = finish(&pipeline, &memory);
    let quiet = named(&spans, "quiet");
    assert_eq!(
        quiet.status.as_ref().map_or(0, |s| s.code),
        StatusCode::Unset as i32
    );
    assert_eq!(quiet.events.len(), 1);
}

#[test]
fn events_outside_spans_are_dropped_and_counted() {
    let (pipeline, memory) = pipeline();
    let layer = OtlpLayer::new(&pipeline);
    let counters = layer.counters();
    with_layer(layer, || {
        tracing::info!("alone");
        tracing::error!("alone and failing");
        tracing::info_span!("a span").in_scope(|| tracing::info!("inside"));
    });
    let spans = finish(&pipeline, &memory);
    assert_eq!(names(&spans), ["a span"]);
    assert_eq!(spans[0].events.len(), 1);
    let stats = counters.snapshot();
    assert_eq!(stats.events_outside_spans, 2);
    assert_eq!((stats.started, stats.recorded, stats.open()), (1, 1, 0));
}

#[test]
fn follows_from_and_add_link_become_links() {
    let (pipeline, memory) = pipeline();
    let remote = SpanContext::new(TraceId([3; 16]), SpanId([4; 8]));
    with_layer(OtlpLayer::new(&pipeline), || {
        let cause = tracing::info_span!("cause");
        let effect = tracing::info_span!("effect");
        effect.follows_from(&cause);
        assert!(effect.add_link(remote.clone()));
        assert!(
            !effect.add_link(SpanContext::default()),
            "an invalid context"
        );
        drop(effect);
        drop(cause);
    });
    let spans = finish(&pipeline, &memory);
    let (cause, effect) = (named(&spans, "cause"), named(&spans, "effect"));
    assert_eq!(effect.links.len(), 2);
    assert_eq!(effect.links[0].span_id, cause.span_id);
    assert_eq!(effect.links[0].trace_id, cause.trace_id);
    assert_eq!(effect.links[1].trace_id, remote.trace_id.0.to_vec());
    assert_eq!(effect.links[1].span_id, remote.span_id.0.to_vec());
}

#[test]
fn location_attributes_follow_current_semantic_conventions() {
    let (pipeline, memory) = pipeline();
    let line = with_layer(OtlpLayer::new(&pipeline), || {
        let line = line!() + 1;
        tracing::info_span!("here").in_scope(|| {});
        tracing::info_span!(target: "custom_target", "elsewhere").in_scope(|| {});
        line
    });
    let spans = finish(&pipeline, &memory);
    let here = &named(&spans, "here").attributes;
    assert_eq!(int(here, "code.line.number"), Some(i64::from(line)));
    assert!(string(here, "code.file.path").is_some_and(|f| f.ends_with("tests/layer.rs")));
    assert_eq!(string(here, "code.namespace"), Some(module_path!()));
    assert_eq!(
        string(here, "target"),
        None,
        "the target is the module path"
    );
    let elsewhere = &named(&spans, "elsewhere").attributes;
    assert_eq!(string(elsewhere, "target"), Some("custom_target"));
    for old in ["code.filepath", "code.lineno"] {
        assert!(!keys(here).contains(&old), "deprecated {old}");
    }

    let (pipeline2, memory2) = common::pipeline();
    with_layer(OtlpLayer::new(&pipeline2).with_location(false), || {
        tracing::info_span!("nowhere").in_scope(|| tracing::info!("event"));
    });
    let spans = finish(&pipeline2, &memory2);
    let nowhere = named(&spans, "nowhere");
    assert!(
        !keys(&nowhere.attributes)
            .iter()
            .any(|k| k.starts_with("code."))
    );
    assert!(
        !keys(&nowhere.events[0].attributes)
            .iter()
            .any(|k| k.starts_with("code."))
    );
}

#[test]
fn busy_and_idle_time_are_recorded() {
    let pause = std::time::Duration::from_millis(5);
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        let span = tracing::info_span!("timed");
        std::thread::sleep(pause); // idle
        span.in_scope(|| std::thread::sleep(pause)); // busy
        std::thread::sleep(pause); // idle
    });
    with_layer(
        OtlpLayer::new(&pipeline).with_tracked_inactivity(false),
        || tracing::info_span!("untimed").in_scope(|| {}),
    );
    let spans = finish(&pipeline, &memory);
    let timed = named(&spans, "timed");
    let (busy, idle) = (
        int(&timed.attributes, "busy_ns").expect("busy_ns"),
        int(&timed.attributes, "idle_ns").expect("idle_ns"),
    );
    let pause_ns = i64::try_from(pause.as_nanos()).unwrap();
    // Sleeps last at least as long as asked: lower bounds, not speed.
    assert!(busy >= pause_ns, "busy {busy}");
    assert!(idle >= 2 * pause_ns, "idle {idle}");
    let untimed = named(&spans, "untimed");
    assert_eq!(int(&untimed.attributes, "busy_ns"), None);
    assert_eq!(int(&untimed.attributes, "idle_ns"), None);
}

#[test]
fn a_remote_parent_continues_its_trace_with_its_state() {
    let (pipeline, memory) = pipeline();
    let mut remote = SpanContext::new(TraceId([0xab; 16]), SpanId([0xcd; 8]));
    remote.trace_state = Str::Borrowed("vendor=value");
    remote.is_remote = true;
    let (context, late) = with_layer(OtlpLayer::new(&pipeline), || {
        let server = tracing::info_span!("server");
        assert!(server.set_parent(remote.clone()));
        let _e = server.enter();
        tracing::info_span!("inner").in_scope(|| {
            let current = tracing::Span::current().span_context().expect("context");
            let late = tracing::Span::current().set_parent(remote.clone());
            (current, late)
        })
    });
    assert!(
        !late,
        "set_parent after the context was handed out is refused"
    );
    let spans = finish(&pipeline, &memory);
    let (server, inner) = (named(&spans, "server"), named(&spans, "inner"));
    assert_eq!(server.trace_id, remote.trace_id.0.to_vec());
    assert_eq!(server.parent_span_id, remote.span_id.0.to_vec());
    assert_eq!(server.trace_state, "vendor=value");
    assert_eq!(inner.trace_id, remote.trace_id.0.to_vec());
    assert_eq!(inner.parent_span_id, server.span_id);
    assert_eq!(inner.trace_state, "vendor=value");
    assert_eq!(context.span_id.0.to_vec(), inner.span_id);
    assert_eq!(context.trace_id, remote.trace_id);
    assert!(context.trace_flags.is_sampled());
    assert!(!context.is_remote);
}

#[test]
fn an_unsampled_remote_parent_propagates_and_records_nothing() {
    let (pipeline, memory) = pipeline();
    let mut remote = SpanContext::new(TraceId([0x11; 16]), SpanId([0x22; 8]));
    remote.trace_flags = TraceFlags::NOT_SAMPLED;
    let layer = OtlpLayer::new(&pipeline);
    let counters = layer.counters();
    let flags = with_layer(layer, || {
        let server = tracing::info_span!("server", big = "x");
        assert!(server.set_parent(remote.clone()));
        let _e = server.enter();
        let flags = tracing::info_span!("child").in_scope(|| {
            tracing::info!("not kept");
            tracing::Span::current()
                .span_context()
                .expect("context")
                .trace_flags
        });
        tracing::info_span!(parent: None, "sampled root").in_scope(|| {});
        flags
    });
    assert!(!flags.is_sampled(), "the child carries the flag on");
    let spans = finish(&pipeline, &memory);
    assert_eq!(names(&spans), ["sampled root"]);
    let stats = counters.snapshot();
    assert_eq!(
        (stats.started, stats.not_sampled, stats.recorded),
        (3, 2, 1)
    );
    let pipeline_stats = pipeline.stats();
    assert_eq!(
        pipeline_stats.dropped.not_sampled, 2,
        "counted where the accounting says"
    );
    assert_eq!(pipeline_stats.accepted, 3);
}

#[test]
fn the_layer_sampler_decides_roots_and_children_follow() {
    let (pipeline, memory) = pipeline();
    let layer = OtlpLayer::new(&pipeline).with_sampler(Sampler::AlwaysOff);
    let counters = layer.counters();
    let flags = with_layer(layer, || {
        let root = tracing::info_span!("dropped root", field = "kept until handed out");
        let _e = root.enter();
        tracing::info_span!("dropped child").in_scope(|| {
            tracing::info!("nothing");
            tracing::Span::current()
                .span_context()
                .map(|c| c.trace_flags)
        })
    });
    assert_eq!(flags, Some(TraceFlags::NOT_SAMPLED));
    assert!(finish(&pipeline, &memory).is_empty());
    assert_eq!(counters.snapshot().not_sampled, 2);
    assert_eq!(pipeline.stats().dropped.not_sampled, 2);
}

#[test]
fn a_sampled_remote_parent_samples_a_root_the_root_sampler_dropped() {
    let (pipeline, memory) = pipeline();
    let remote =
        SpanContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid traceparent");
    let sampler = Sampler::parent_based(Sampler::AlwaysOff);
    with_layer(OtlpLayer::new(&pipeline).with_sampler(sampler), || {
        let server = tracing::info_span!("server", method = "GET");
        assert!(server.set_parent(remote.clone()));
        server.in_scope(|| tracing::info_span!("child").in_scope(|| {}));
        tracing::info_span!("unrelated root").in_scope(|| {});
    });
    let spans = finish(&pipeline, &memory);
    assert_eq!(spans.len(), 2, "{:?}", names(&spans));
    let server = named(&spans, "server");
    assert_eq!(
        string(&server.attributes, "method"),
        Some("GET"),
        "creation fields kept"
    );
    assert_eq!(server.trace_id, remote.trace_id.0.to_vec());
    assert_eq!(named(&spans, "child").parent_span_id, server.span_id);
}

#[test]
fn trace_id_ratio_sampling_agrees_with_the_sampler_for_every_root() {
    let (pipeline, memory) = pipeline();
    let sampler = Sampler::TraceIdRatioBased(0.5);
    let contexts = with_layer(
        OtlpLayer::new(&pipeline).with_sampler(sampler.clone()),
        || {
            (0..400)
                .map(|_| {
                    let span = tracing::info_span!("root");
                    let cx = span.span_context().expect("context");
                    span.in_scope(|| tracing::info_span!("child").in_scope(|| {}));
                    cx
                })
                .collect::<Vec<_>>()
        },
    );
    let spans = finish(&pipeline, &memory);
    let expected: Vec<&SpanContext> = contexts
        .iter()
        .filter(|c| {
            sampler.should_sample(None, c.trace_id, "root", otlp_exporter::SpanKind::Internal)
                == otlp_exporter::SamplingDecision::RecordAndSample
        })
        .collect();
    assert!(!expected.is_empty() && expected.len() < contexts.len());
    for c in &contexts {
        let sampled = expected.contains(&c);
        assert_eq!(c.trace_flags.is_sampled(), sampled);
        let exported = spans.iter().filter(|s| s.trace_id == c.trace_id.0).count();
        assert_eq!(
            exported,
            if sampled { 2 } else { 0 },
            "root and child together"
        );
    }
}

#[test]
fn traceparent_round_trips_through_a_span() {
    let (pipeline, memory) = pipeline();
    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let outgoing = with_layer(OtlpLayer::new(&pipeline), || {
        let span = tracing::info_span!("hop");
        span.set_parent(SpanContext::from_traceparent(incoming).expect("valid"));
        span.in_scope(|| {
            tracing::Span::current()
                .span_context()
                .map(|c| c.to_traceparent())
        })
    })
    .expect("a context");
    let spans = finish(&pipeline, &memory);
    let hop = named(&spans, "hop");
    let span_id: String = hop.span_id.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        outgoing,
        format!("00-0af7651916cd43dd8448eb211c80319c-{span_id}-01")
    );
}

#[test]
fn span_context_is_none_without_the_layer_or_for_a_disabled_span() {
    let remote = SpanContext::new(TraceId([1; 16]), SpanId([1; 8]));
    let span = tracing::info_span!("no subscriber");
    assert_eq!(span.span_context(), None);
    assert!(!span.set_parent(remote.clone()));
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        assert_eq!(tracing::Span::none().span_context(), None);
        assert!(!tracing::Span::none().set_parent(remote));
        assert_eq!(
            tracing::Span::current().span_context(),
            None,
            "no current span"
        );
    });
    assert!(finish(&pipeline, &memory).is_empty());
}

#[test]
fn spans_carry_the_layer_scope() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        tracing::info_span!("default scope").in_scope(|| {})
    });
    with_layer(
        OtlpLayer::new(&pipeline).with_scope("checkout", "1.4.0"),
        || tracing::info_span!("named scope").in_scope(|| {}),
    );
    pipeline.shutdown(std::time::Duration::from_secs(10));
    let mut scopes: Vec<(String, String, String)> = requests(&memory)
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| {
            let scope = ss.scope.unwrap_or_default();
            ss.spans
                .into_iter()
                .map(move |s| (s.name, scope.name.clone(), scope.version.clone()))
        })
        .collect();
    scopes.sort();
    assert_eq!(
        scopes,
        [
            (
                "default scope".into(),
                "otlp-tracing".into(),
                env!("CARGO_PKG_VERSION").into()
            ),
            ("named scope".into(), "checkout".into(), "1.4.0".into()),
        ]
    );
}

/// A layer that wants every span (as a `fmt` layer at DEBUG would).
struct Everything;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Everything {}

/// The registry with [`Everything`] beside `layer` under a per-layer
/// INFO filter: the usual logs-at-DEBUG, OTLP-at-INFO set-up.
fn beside_everything_at_info(layer: OtlpLayer) -> impl tracing::Subscriber + Send + Sync {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry()
        .with(Everything)
        .with(layer.with_filter(LevelFilter::INFO))
}

/// An explicit parent (`parent: &span`) that this layer's per-layer filter
/// leaves out, but another layer records (so the span exists): the span's
/// parent is that parent's nearest ancestor this layer records, in its
/// trace (before: no parent, a new trace). (A span no layer enables does
/// not exist at all: `parent: &it` is then an explicit root, as in
/// `tracing` itself.)
#[test]
fn under_a_per_layer_filter_an_explicit_parent_left_out_gives_its_nearest_recorded_ancestor() {
    let (pipeline, memory) = pipeline();
    let subscriber = beside_everything_at_info(OtlpLayer::new(&pipeline));
    tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!("root");
        let middle = root.in_scope(|| tracing::debug_span!("middle"));
        // Not entered anywhere: only the explicit parent links it.
        tracing::info_span!(parent: &middle, "explicit leaf").in_scope(|| {});
        tracing::info_span!(parent: None, "explicit root").in_scope(|| {});
    });
    let spans = finish(&pipeline, &memory);
    let (root, leaf) = (named(&spans, "root"), named(&spans, "explicit leaf"));
    assert_eq!(leaf.parent_span_id, root.span_id);
    assert_eq!(leaf.trace_id, root.trace_id);
    assert!(named(&spans, "explicit root").parent_span_id.is_empty());
}

#[test]
fn under_a_per_layer_filter_the_nearest_recorded_ancestor_is_the_parent() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;

    let (pipeline, memory) = pipeline();
    let remote = SpanContext::new(TraceId([5; 16]), SpanId([6; 8]));
    let subscriber = tracing_subscriber::registry()
        .with(OtlpLayer::new(&pipeline).with_filter(LevelFilter::INFO));
    let context = tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!("root");
        assert!(
            root.set_parent(remote.clone()),
            "the extension works through the filter"
        );
        root.in_scope(|| {
            tracing::debug_span!("filtered out").in_scope(|| {
                tracing::info_span!("leaf").in_scope(|| tracing::Span::current().span_context())
            })
        })
    });
    let spans = finish(&pipeline, &memory);
    assert_eq!(names(&spans).len(), 2, "{:?}", names(&spans));
    let (root, leaf) = (named(&spans, "root"), named(&spans, "leaf"));
    assert_eq!(leaf.parent_span_id, root.span_id);
    assert_eq!(root.trace_id, remote.trace_id.0.to_vec());
    assert_eq!(
        context.map(|c| c.span_id.0.to_vec()),
        Some(leaf.span_id.clone())
    );
}

/// The usual set-up: logs at DEBUG, OTLP at INFO, and a `debug_span!`
/// task made under a request span and run on another thread (an
/// executor's worker). The task's `info_span!` child belongs under the
/// request, its nearest recorded ancestor, in the request's trace (found
/// by review: it was a new trace, its parent taken from the worker
/// thread's stack, which holds only the left-out task span). An event in
/// the task, placed from that stack as `tracing-subscriber` places it
/// (documented), is outside any span.
#[test]
fn under_a_per_layer_filter_a_span_left_out_on_another_thread_keeps_the_trace() {
    let (pipeline, memory) = pipeline();
    let layer = OtlpLayer::new(&pipeline);
    let counters = layer.counters();
    let dispatch = tracing::Dispatch::new(beside_everything_at_info(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        let request = tracing::info_span!("request");
        let task = request.in_scope(|| tracing::debug_span!("task"));
        let dispatch = dispatch.clone();
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                task.in_scope(|| {
                    tracing::info_span!("work").in_scope(|| tracing::info!("in work"));
                    tracing::info!("in the task");
                });
                // Under the dispatcher: the registry closes a parent whose
                // last child closes through the thread's default one.
                drop(task);
            });
        })
        .join()
        .unwrap();
    });
    let spans = finish(&pipeline, &memory);
    let (request, work) = (named(&spans, "request"), named(&spans, "work"));
    assert_eq!(work.parent_span_id, request.span_id);
    assert_eq!(work.trace_id, request.trace_id);
    assert_eq!(work.events.len(), 1, "the event in work is work's");
    assert_eq!(counters.snapshot().events_outside_spans, 1);
}

/// On one thread: a span left out by the filter, with an explicit parent,
/// entered inside another recorded span. A child of the left-out span
/// goes under its explicit parent's side of the tree, not under the span
/// that happens to be on the stack (found by review: it went under that
/// span, which is not its ancestor, in that span's trace).
#[test]
fn under_a_per_layer_filter_a_child_never_goes_under_a_span_that_is_not_its_ancestor() {
    let (pipeline, memory) = pipeline();
    let subscriber = beside_everything_at_info(OtlpLayer::new(&pipeline));
    tracing::subscriber::with_default(subscriber, || {
        let z = tracing::info_span!("z");
        let x = tracing::info_span!("x");
        let _x = x.enter();
        let y = tracing::debug_span!(parent: &z, "y");
        let _y = y.enter();
        // tracing's tree: c -> y -> z; x is not an ancestor of c.
        tracing::info_span!("c").in_scope(|| {});
    });
    let spans = finish(&pipeline, &memory);
    let (z, c) = (named(&spans, "z"), named(&spans, "c"));
    assert_eq!(c.parent_span_id, z.span_id);
    assert_eq!(c.trace_id, z.trace_id);
}

#[test]
fn a_dropped_child_given_a_sampled_remote_parent_is_recorded_from_then_on() {
    let (pipeline, memory) = pipeline();
    let remote =
        SpanContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid traceparent");
    let before = otlp_exporter::now_unix_nanos();
    with_layer(
        OtlpLayer::new(&pipeline).with_sampler(Sampler::parent_based(Sampler::AlwaysOff)),
        || {
            tracing::info_span!("dropped root").in_scope(|| {
                let child =
                    tracing::info_span!("child", lost = 1_i64, later = tracing::field::Empty);
                assert!(child.set_parent(remote.clone()));
                child.record("later", 2_i64);
                child.in_scope(|| tracing::info!("kept"));
            });
        },
    );
    let spans = finish(&pipeline, &memory);
    assert_eq!(names(&spans), ["child"]);
    let child = &spans[0];
    assert!(
        child.start_time_unix_nano >= before,
        "its clock started at set_parent"
    );
    assert_eq!(
        int(&child.attributes, "lost"),
        None,
        "creation fields of a dropped child are not kept"
    );
    assert_eq!(int(&child.attributes, "later"), Some(2));
    assert_eq!(child.events.len(), 1);
    assert!(int(&child.attributes, "busy_ns").is_some());
    // Its location too, as a span kept from its creation has (found by
    // review: it was exported without `code.*`).
    assert!(
        int(&child.attributes, "code.line.number").is_some(),
        "{:?}",
        child.attributes.iter().map(|a| &a.key).collect::<Vec<_>>()
    );
}

/// A span's location attributes are its callsite's set, encoded once, when
/// they fit its limits (exported after its own attributes); when they do
/// not, they are pushed one by one as before, as far as the count limit
/// goes, and cut to the value length: the same attributes either way.
#[test]
fn location_attributes_fit_the_limits_however_they_are_carried() {
    use otlp_exporter::SpanLimits;
    let run = |limits: SpanLimits| {
        let (pipeline, memory) = pipeline_with(limits);
        with_layer(OtlpLayer::new(&pipeline), || {
            // Two spans of one callsite: the second finds the set cached.
            for _ in 0..2 {
                tracing::info_span!(target: "elsewhere", "located", field = 1_i64).in_scope(|| {});
            }
        });
        let spans = finish(&pipeline, &memory);
        assert_eq!(spans.len(), 2);
        assert_eq!(keys(&spans[0].attributes), keys(&spans[1].attributes));
        spans[0].clone()
    };
    let location = [
        "code.file.path",
        "code.line.number",
        "code.namespace",
        "target",
    ];

    // Room for all: the shared set, after the span's own.
    let span = run(SpanLimits::default());
    let mut want = vec!["field", "busy_ns", "idle_ns"];
    want.extend(location);
    assert_eq!(keys(&span.attributes), want);
    assert_eq!(span.dropped_attributes_count, 0);
    assert!(
        string(&span.attributes, "code.file.path").is_some_and(|f| f.ends_with("tests/layer.rs"))
    );
    assert_eq!(string(&span.attributes, "target"), Some("elsewhere"));

    // No room for the set: one by one, as far as the count goes.
    let span = run(SpanLimits {
        attribute_count: 3,
        ..SpanLimits::default()
    });
    assert_eq!(
        keys(&span.attributes),
        ["field", "code.file.path", "code.line.number"]
    );
    assert_eq!(
        span.dropped_attributes_count,
        2 + 2,
        "namespace, target, busy, idle"
    );

    // Strings over the value length: one by one, cut.
    let span = run(SpanLimits {
        attribute_value_length: Some(5),
        ..SpanLimits::default()
    });
    let mut want = vec!["field"];
    want.extend(location);
    want.extend(["busy_ns", "idle_ns"]);
    assert_eq!(keys(&span.attributes), want);
    assert_eq!(
        string(&span.attributes, "code.file.path").map(str::len),
        Some(5)
    );
    assert_eq!(string(&span.attributes, "target"), Some("elsew"));
}

/// A span's or an event's own field with the name of an attribute the
/// layer adds (`busy_ns`, `idle_ns`, `code.*`; `level` on events) was
/// exported twice under one key (an OTLP span's keys are unique), each
/// copy taking a slot of the attribute limit. The field keeps its value;
/// the layer's is not added. (Found by review.)
#[test]
fn fields_named_as_the_layers_own_attributes_are_not_duplicated() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        let _s = tracing::info_span!(
            "dups",
            code.file.path = "mine",
            busy_ns = 5_i64,
            code.namespace = "ns"
        )
        .entered();
        tracing::info!(level = "custom", code.line.number = 1_i64, "ev");
    });
    let spans = finish(&pipeline, &memory);
    let span = named(&spans, "dups");
    let unique = |k: &[&str]| {
        let mut sorted = k.to_vec();
        sorted.sort_unstable();
        sorted.windows(2).all(|w| w[0] != w[1])
    };
    let span_keys = keys(&span.attributes);
    assert!(unique(&span_keys), "{span_keys:?}");
    assert_eq!(string(&span.attributes, "code.file.path"), Some("mine"));
    assert_eq!(int(&span.attributes, "busy_ns"), Some(5));
    assert!(
        int(&span.attributes, "idle_ns").is_some(),
        "the other one added"
    );
    assert!(span_keys.contains(&"code.line.number"), "{span_keys:?}");
    let event_keys = keys(&span.events[0].attributes);
    assert!(unique(&event_keys), "{event_keys:?}");
    assert_eq!(string(&span.events[0].attributes, "level"), Some("custom"));
    assert_eq!(int(&span.events[0].attributes, "code.line.number"), Some(1));
}

/// A child dropped with its unsampled parent, given a sampled remote
/// parent while it is entered: it starts keeping (and timing) there, and
/// the time it stays entered is busy, not idle. (Its clock started with
/// no thread counted inside it: the re-enter that followed counted the
/// whole wait as idle. Found by review.)
#[test]
fn a_span_that_starts_keeping_while_entered_is_busy_from_then_on() {
    let (pipeline, memory) = pipeline();
    let unsampled =
        SpanContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
            .expect("valid traceparent");
    let sampled =
        SpanContext::from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .expect("valid traceparent");
    with_layer(
        OtlpLayer::new(&pipeline).with_sampler(Sampler::parent_based(Sampler::AlwaysOn)),
        || {
            let parent = tracing::info_span!("parent");
            assert!(parent.set_parent(unsampled));
            let _p = parent.enter();
            let child = tracing::info_span!("child");
            let _a = child.enter();
            assert!(child.set_parent(sampled));
            std::thread::sleep(std::time::Duration::from_millis(30));
            let _b = child.enter();
            std::thread::sleep(std::time::Duration::from_millis(30));
        },
    );
    let spans = finish(&pipeline, &memory);
    let child = named(&spans, "child");
    let busy = int(&child.attributes, "busy_ns").expect("busy_ns");
    let idle = int(&child.attributes, "idle_ns").expect("idle_ns");
    // Entered all the time since set_parent: idle is next to nothing (it
    // was about half: the wait before the re-enter counted idle).
    assert!(idle * 4 < busy, "busy {busy} ns, idle {idle} ns");
}

/// `otel.status_code` and `otel.status_description` follow the trace API's
/// `Span::set_status` (found by review): `Ok` is final, `unset` changes
/// nothing (it neither clears an error nor keeps a later error event out),
/// and a description alone never turns an `Ok` span into an error.
#[test]
fn otel_status_fields_follow_the_set_status_rules() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        let s = tracing::info_span!("ok then error", otel.status_code = "ok");
        s.record("otel.status_code", "error");
        drop(s);
        let s = tracing::info_span!("error event then unset", otel.status_code = field::Empty);
        s.in_scope(|| tracing::error!("boom"));
        s.record("otel.status_code", "unset");
        drop(s);
        let s = tracing::info_span!(
            "error then unset",
            otel.status_code = "error",
            otel.status_description = "bad"
        );
        s.record("otel.status_code", "unset");
        drop(s);
        let s = tracing::info_span!(
            "ok then description",
            otel.status_code = "ok",
            otel.status_description = field::Empty
        );
        s.record("otel.status_description", "late");
        drop(s);
        tracing::info_span!("unset then error event", otel.status_code = "unset")
            .in_scope(|| tracing::error!("boom2"));
        tracing::info_span!(
            "ok with description",
            otel.status_code = "ok",
            otel.status_description = "ignored"
        )
        .in_scope(|| {});
        let s = tracing::info_span!(
            "error then error",
            otel.status_code = "error",
            otel.status_description = field::Empty
        );
        s.record("otel.status_description", "second");
        drop(s);
    });
    let spans = finish(&pipeline, &memory);
    let status = |name: &str| {
        let st = named(&spans, name).status.clone().unwrap_or_default();
        (st.code, st.message)
    };
    let ok = (StatusCode::Ok as i32, String::new());
    let error = |m: &str| (StatusCode::Error as i32, m.to_owned());
    assert_eq!(status("ok then error"), ok);
    assert_eq!(status("error event then unset"), error("boom"));
    assert_eq!(status("error then unset"), error("bad"));
    assert_eq!(status("ok then description"), ok);
    assert_eq!(status("unset then error event"), error("boom2"));
    assert_eq!(status("ok with description"), ok);
    assert_eq!(status("error then error"), error("second"));
}

/// The value-length limit applies to attributes only (found by review: it
/// cut `otel.name`, `otel.kind`, the status description and the event
/// message used as event name and status description).
#[test]
fn the_value_length_limit_cuts_attributes_only() {
    let limits = otlp_exporter::SpanLimits {
        attribute_value_length: Some(4),
        ..otlp_exporter::SpanLimits::default()
    };
    let (pipeline, memory) = pipeline_with(limits);
    with_layer(OtlpLayer::new(&pipeline).with_location(false), || {
        tracing::info_span!(
            "tracing name",
            otel.name = "GET /users/{id}/orders",
            otel.kind = "server",
            otel.status_code = "error",
            otel.status_description = "upstream refused",
            route = "/users/{id}/orders"
        )
        .in_scope(|| {});
        let later = tracing::info_span!(
            "later",
            otel.name = field::Empty,
            otel.kind = %"client",
            otel.status_description = field::Empty,
        );
        later.record("otel.name", "POST /orders");
        later.record("otel.status_description", field::debug("timed out"));
        drop(later);
        tracing::info_span!("events").in_scope(|| {
            tracing::error!(detail = "abcdefgh", "a long error message");
            tracing::warn!(error = %"connection reset");
        });
    });
    let spans = finish(&pipeline, &memory);
    let server = named(&spans, "GET /users/{id}/orders");
    assert_eq!(server.kind, SpanKind::Server as i32);
    let st = server.status.clone().expect("status");
    assert_eq!(
        (st.code, st.message.as_str()),
        (StatusCode::Error as i32, "upstream refused")
    );
    assert_eq!(string(&server.attributes, "route"), Some("/use"));
    let later = named(&spans, "POST /orders");
    assert_eq!(later.kind, SpanKind::Client as i32);
    assert_eq!(
        later.status.as_ref().map(|s| s.message.as_str()),
        Some("\"timed out\"")
    );
    let events = named(&spans, "events");
    assert_eq!(events.events[0].name, "a long error message");
    assert_eq!(string(&events.events[0].attributes, "detail"), Some("abcd"));
    let st = events.status.clone().expect("status");
    assert_eq!(st.message, "a long error message");
    assert_eq!(
        string(&events.events[1].attributes, "exception.message"),
        Some("conn"),
        "an attribute: cut"
    );
}

/// A callsite naming a field twice gives one attribute, the last value in
/// the first place, which `Span::record` then updates (found by review: it
/// updated the first, which the exporter's deduplication then dropped);
/// empty keys are dropped and counted. Neither uses up the attribute count
/// limit (it left out a field that fits).
#[test]
fn repeated_and_empty_field_names_give_unique_keys_within_the_limit() {
    let limits = otlp_exporter::SpanLimits {
        attribute_count: 2,
        ..otlp_exporter::SpanLimits::default()
    };
    let (pipeline, memory) = pipeline_with(limits);
    let layer = OtlpLayer::new(&pipeline)
        .with_location(false)
        .with_tracked_inactivity(false);
    with_layer(layer, || {
        tracing::info_span!("empty key", "" = 1_i64, a = 2_i64, b = 3_i64).in_scope(|| {});
        tracing::info_span!("repeated", a = 1_i64, a = 2_i64, b = 3_i64).in_scope(|| {});
        let s = tracing::info_span!("recorded", a = 1_i64, a = 2_i64, "" = field::Empty);
        s.record("a", 3_i64);
        s.record("", 4_i64);
        drop(s);
        tracing::info_span!("event").in_scope(|| {
            tracing::info!("" = 5_i64, x = 1_i64, x = 2_i64, "message");
        });
    });
    let spans = finish(&pipeline, &memory);
    let pairs = |s: &Span| {
        s.attributes
            .iter()
            .map(|kv| (kv.key.clone(), int(std::slice::from_ref(kv), &kv.key)))
            .collect::<Vec<_>>()
    };
    let empty = named(&spans, "empty key");
    assert_eq!(
        pairs(empty),
        [("a".to_owned(), Some(2)), ("b".to_owned(), Some(3))]
    );
    assert_eq!(empty.dropped_attributes_count, 1);
    let repeated = named(&spans, "repeated");
    assert_eq!(
        pairs(repeated),
        [("a".to_owned(), Some(2)), ("b".to_owned(), Some(3))]
    );
    assert_eq!(repeated.dropped_attributes_count, 0);
    let recorded = named(&spans, "recorded");
    assert_eq!(pairs(recorded), [("a".to_owned(), Some(3))]);
    assert_eq!(recorded.dropped_attributes_count, 1);
    let event = &named(&spans, "event").events[0];
    assert_eq!(keys(&event.attributes), ["level", "x"]);
    assert_eq!(int(&event.attributes, "x"), Some(2));
    assert_eq!(event.dropped_attributes_count, 1);
}

#[derive(Debug)]
struct DiskFull;

impl std::fmt::Display for DiskFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk full")
    }
}

impl std::error::Error for DiskFull {}

#[tracing::instrument(err(level = "warn"))]
fn fails_with_a_warning() -> Result<(), DiskFull> {
    Err(DiskFull)
}

#[tracing::instrument(err)]
fn fails_with_an_error() -> Result<(), DiskFull> {
    Err(DiskFull)
}

#[tracing::instrument(err(Debug, level = "info"))]
fn fails_with_debug() -> Result<(), DiskFull> {
    Err(DiskFull)
}

/// As tracing-opentelemetry 0.34 (found by review: a migration lost the
/// status): an event without a message and with an `error` field, at any
/// level, sets the span's status to `Error` with the error's text and is
/// named `exception`, the text as `exception.message`; with a message, the
/// `error` field is an attribute, and only an `ERROR` event sets the status.
#[test]
fn an_event_with_an_error_field_sets_the_status_as_tracing_opentelemetry() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        let _ = fails_with_a_warning();
        let _ = fails_with_an_error();
        let _ = fails_with_debug();
        tracing::info_span!("warn error field").in_scope(|| tracing::warn!(error = %DiskFull));
        tracing::info_span!("error value").in_scope(|| {
            tracing::info!(error = &DiskFull as &(dyn std::error::Error + 'static));
        });
        tracing::info_span!("with a message")
            .in_scope(|| tracing::warn!(error = %DiskFull, "retrying"));
        tracing::info_span!("first wins").in_scope(|| {
            tracing::warn!(error = "first");
            tracing::error!(error = "second");
        });
        tracing::info_span!("explicit ok", otel.status_code = "ok")
            .in_scope(|| tracing::warn!(error = %DiskFull));
    });
    let spans = finish(&pipeline, &memory);
    let status = |name: &str| {
        let st = named(&spans, name).status.clone().unwrap_or_default();
        (st.code, st.message)
    };
    let disk_full = (StatusCode::Error as i32, "disk full".to_owned());
    for name in [
        "fails_with_a_warning",
        "fails_with_an_error",
        "warn error field",
        "error value",
    ] {
        assert_eq!(status(name), disk_full, "{name}");
        let event = &named(&spans, name).events[0];
        assert_eq!(event.name, "exception", "{name}");
        assert_eq!(
            string(&event.attributes, "exception.message"),
            Some("disk full"),
            "{name}"
        );
    }
    assert_eq!(
        status("fails_with_debug"),
        (StatusCode::Error as i32, "DiskFull".to_owned())
    );
    let warned = &named(&spans, "warn error field").events[0];
    assert_eq!(string(&warned.attributes, "level"), Some("WARN"));
    assert!(!keys(&warned.attributes).contains(&"error"), "renamed");
    let value = &named(&spans, "error value").events[0];
    assert_eq!(string(&value.attributes, "error"), Some("disk full"));
    assert_eq!(
        status("with a message"),
        (StatusCode::Unset as i32, String::new())
    );
    let retry = &named(&spans, "with a message").events[0];
    assert_eq!(retry.name, "retrying");
    assert_eq!(string(&retry.attributes, "error"), Some("disk full"));
    assert_eq!(
        status("first wins"),
        (StatusCode::Error as i32, "first".to_owned())
    );
    assert_eq!(
        status("explicit ok"),
        (StatusCode::Ok as i32, String::new())
    );
}

#[test]
fn error_fields_set_no_status_when_error_events_to_status_is_off() {
    let (pipeline, memory) = pipeline();
    with_layer(
        OtlpLayer::new(&pipeline).with_error_events_to_status(false),
        || {
            tracing::info_span!("quiet").in_scope(|| tracing::warn!(error = %DiskFull));
        },
    );
    let spans = finish(&pipeline, &memory);
    let quiet = named(&spans, "quiet");
    assert_eq!(
        quiet.status.as_ref().map_or(0, |s| s.code),
        StatusCode::Unset as i32
    );
    assert_eq!(quiet.events[0].name, "exception");
}

/// `Span::record` of a key of the callsite's shared location set replaces
/// the location's value and takes no new place, at the attribute limit too
/// (found by review: the span held the callsite's set, counted under the
/// limit, so the recorded value was dropped and counted, the callsite's
/// kept).
#[test]
fn recording_a_location_key_at_the_attribute_limit_replaces_its_value() {
    let (pipeline, memory) = pipeline_with(otlp_exporter::SpanLimits {
        attribute_count: 4,
        ..otlp_exporter::SpanLimits::default()
    });
    with_layer(
        OtlpLayer::new(&pipeline).with_tracked_inactivity(false),
        || {
            let s = tracing::info_span!(
                "s",
                a = 1_i64,
                code.namespace = field::Empty,
                code.line.number = field::Empty
            );
            s.record("code.namespace", "mine");
            s.record("code.line.number", 7_i64);
        },
    );
    let spans = finish(&pipeline, &memory);
    let s = named(&spans, "s");
    assert_eq!(string(&s.attributes, "code.namespace"), Some("mine"));
    assert_eq!(int(&s.attributes, "code.line.number"), Some(7));
    assert_eq!(int(&s.attributes, "a"), Some(1));
    assert!(string(&s.attributes, "code.file.path").is_some());
    assert_eq!(s.dropped_attributes_count, 0);
    let mut k = keys(&s.attributes);
    assert_eq!(k.len(), 4, "{k:?}");
    k.sort_unstable();
    k.dedup();
    assert_eq!(k.len(), 4, "unique keys");
}

/// A span field named `target`, of a callsite whose location set has a
/// `target` too, counts once under the attribute limit (found by review:
/// the set was shared and both counted, so `idle_ns` was dropped while
/// there was room for it).
#[test]
fn a_span_field_named_target_counts_once_under_the_limit() {
    let (pipeline, memory) = pipeline_with(otlp_exporter::SpanLimits {
        attribute_count: 6,
        ..otlp_exporter::SpanLimits::default()
    });
    with_layer(OtlpLayer::new(&pipeline), || {
        tracing::info_span!(target: "elsewhere", "t", target = "own").in_scope(|| {});
    });
    let spans = finish(&pipeline, &memory);
    let t = named(&spans, "t");
    assert_eq!(string(&t.attributes, "target"), Some("own"));
    assert!(int(&t.attributes, "busy_ns").is_some());
    assert!(
        int(&t.attributes, "idle_ns").is_some(),
        "{:?}",
        keys(&t.attributes)
    );
    assert_eq!(t.dropped_attributes_count, 0);
    assert_eq!(t.attributes.len(), 6, "{:?}", keys(&t.attributes));
}

/// An event of a `log` record bridged by tracing-log carries the record's
/// target and location, as tracing-opentelemetry gives them, not
/// tracing-log's placeholder callsite (target `log`, no `code.*`), and its
/// `log.*` fields are not attributes (found by review).
#[test]
fn log_records_bridged_by_tracing_log_carry_their_own_location() {
    use tracing_log::log;
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline), || {
        tracing::info_span!("span").in_scope(|| {
            let record = |target: &'static str| {
                tracing_log::format_trace(
                    &log::Record::builder()
                        .args(format_args!("from the log crate"))
                        .level(log::Level::Warn)
                        .target(target)
                        .module_path_static(Some("my_lib::db"))
                        .file_static(Some("src/db.rs"))
                        .line(Some(42))
                        .build(),
                )
                .expect("dispatched");
            };
            record("my_lib::sql");
            record("my_lib::db");
        });
    });
    let spans = finish(&pipeline, &memory);
    let events = &named(&spans, "span").events;
    assert_eq!(events.len(), 2);
    for (event, target) in events.iter().zip([Some("my_lib::sql"), None]) {
        let a = &event.attributes;
        assert_eq!(event.name, "from the log crate");
        assert_eq!(string(a, "level"), Some("WARN"));
        assert_eq!(string(a, "code.file.path"), Some("src/db.rs"));
        assert_eq!(int(a, "code.line.number"), Some(42));
        assert_eq!(string(a, "code.namespace"), Some("my_lib::db"));
        // The module path is the target: no `target` attribute.
        assert_eq!(string(a, "target"), target, "{:?}", keys(a));
        assert!(
            !keys(a).iter().any(|k| k.starts_with("log.")),
            "{:?}",
            keys(a)
        );
    }
}

/// A `message` field of any type names the event, as tracing-opentelemetry
/// names it (found by review: a number or a bool was an attribute named
/// `message`, and the event was named after its callsite).
#[test]
fn a_message_of_any_type_names_the_event() {
    let (pipeline, memory) = pipeline();
    with_layer(OtlpLayer::new(&pipeline).with_location(false), || {
        tracing::info_span!("span").in_scope(|| {
            tracing::info!(message = 42_i64);
            tracing::info!(message = 7_u64);
            tracing::info!(message = 1.5_f64);
            tracing::info!(message = true);
            tracing::info!(message = -3_i128);
            tracing::info!(message = u128::MAX);
            // An error too (found by review: it was the attributes
            // `message` and `exception.message`, the event unnamed).
            tracing::info!(message = &DiskFull as &(dyn std::error::Error + 'static));
        });
    });
    let spans = finish(&pipeline, &memory);
    let events = &named(&spans, "span").events;
    let u128_max = u128::MAX.to_string();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "42",
            "7",
            "1.5",
            "true",
            "-3",
            u128_max.as_str(),
            "disk full"
        ]
    );
    for e in events {
        assert_eq!(keys(&e.attributes), ["level"], "{}", e.name);
    }
}

/// `add_link` says whether the span took the link: `false` on a span that
/// keeps nothing (not sampled), where the link is gone (found by review:
/// it returned `true`).
#[test]
fn add_link_on_a_span_that_keeps_nothing_returns_false() {
    let (pipeline, memory) = pipeline();
    let unsampled =
        SpanContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
            .expect("valid traceparent");
    let other =
        SpanContext::from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .expect("valid traceparent");
    with_layer(OtlpLayer::new(&pipeline), || {
        let kept = tracing::info_span!("kept");
        assert!(kept.add_link(other.clone()));
        let parent = tracing::info_span!("parent");
        assert!(parent.set_parent(unsampled));
        let child = tracing::info_span!(parent: &parent, "child");
        assert!(
            !child.add_link(other.clone()),
            "a child of an unsampled span"
        );
        assert!(
            !parent.add_link(other.clone()),
            "an unsampled root, handed out"
        );
    });
    let spans = finish(&pipeline, &memory);
    assert_eq!(names(&spans), ["kept"]);
    assert_eq!(named(&spans, "kept").links.len(), 1);
}

/// A `follows_from` that names a span while it closes (on another thread,
/// between the layer taking its state and the registry letting it go;
/// here from a later layer's `on_close`, which runs in that window) makes
/// no link, not one to that span's parent (found by review).
#[test]
fn follows_from_a_span_closing_links_to_nothing_else() {
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    /// Makes its span follow the span named `closing` as that one closes.
    struct FollowsOnClose(Arc<Mutex<Option<tracing::Span>>>);
    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for FollowsOnClose {
        fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
            if ctx.span(&id).is_some_and(|s| s.name() == "closing") {
                let linker = self.0.lock().unwrap().take();
                if let Some(linker) = linker {
                    linker.follows_from(id);
                }
            }
        }
    }

    let (pipeline, memory) = pipeline();
    let hook = Arc::new(Mutex::new(None));
    let subscriber = tracing_subscriber::registry()
        .with(OtlpLayer::new(&pipeline))
        .with(FollowsOnClose(hook.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let linker = tracing::info_span!("linker");
        let parent = tracing::info_span!("parent");
        let closing = tracing::info_span!(parent: &parent, "closing");
        *hook.lock().unwrap() = Some(linker.clone());
        drop(closing);
        assert!(hook.lock().unwrap().is_none(), "the hook ran");
    });
    let spans = finish(&pipeline, &memory);
    let (linker, parent) = (named(&spans, "linker"), named(&spans, "parent"));
    assert!(
        !linker.links.iter().any(|l| l.span_id == parent.span_id),
        "linked to the closing span's parent"
    );
    assert!(linker.links.is_empty());
}
