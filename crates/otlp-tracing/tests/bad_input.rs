//! Bad input and hostile use (issue 14 item 7). Cases that could crash or
//! hang run in a child process under a watchdog.

mod common;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use otlp_exporter::{InMemory, Pipeline, SpanLimits};
use otlp_tracing::{OtlpLayer, OtlpSpanExt, PANICKED_VALUE};
use tracing_subscriber::layer::SubscriberExt;

const WATCHDOG: Duration = Duration::from_secs(60);

fn big_pipeline() -> (Pipeline, InMemory) {
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .max_queue_size(1 << 15)
        .build()
        .expect("valid settings");
    (pipeline, memory)
}

/// Checks that `spans` is one chain `depth` deep in one trace.
fn assert_chain(spans: &[Span], depth: usize) {
    assert_eq!(spans.len(), depth);
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (&s.span_id[..], s)).collect();
    assert_eq!(by_id.len(), depth, "distinct ids");
    let leaf = named(spans, &format!("level {}", depth - 1));
    let (mut here, mut steps) = (leaf, 1);
    while !here.parent_span_id.is_empty() {
        here = by_id[&here.parent_span_id[..]];
        assert_eq!(here.trace_id, leaf.trace_id);
        steps += 1;
    }
    assert_eq!(here.name, "level 0");
    assert_eq!(steps, depth);
}

#[test]
fn ten_thousand_nested_spans_closed_innermost_first() {
    test_watchdog::isolate(WATCHDOG, || {
        const DEPTH: usize = 10_000;
        let (pipeline, memory) = big_pipeline();
        let layer = OtlpLayer::new(&pipeline);
        let counters = layer.counters();
        with_layer(layer, || {
            let mut stack = Vec::with_capacity(DEPTH);
            for level in 0..DEPTH {
                stack.push(
                    tracing::info_span!("nested", otel.name = format!("level {level}")).entered(),
                );
            }
            tracing::info!("at the bottom");
            while let Some(span) = stack.pop() {
                drop(span);
            }
        });
        let spans = finish(&pipeline, &memory);
        assert_chain(&spans, DEPTH);
        assert_eq!(named(&spans, "level 9999").events.len(), 1);
        let stats = counters.snapshot();
        assert_eq!(
            (stats.started, stats.recorded, stats.open()),
            (10_000, 10_000, 0)
        );
    });
}

#[test]
fn ten_thousand_nested_spans_closed_outermost_first() {
    // Dropping the outermost handle first leaves every span alive through
    // its child; closing the innermost then closes the whole chain, one
    // level inside the other: tracing-subscriber's registry closes a parent
    // from inside its child's close (a registry with a no-op layer
    // overflows a 2 MiB stack below 2 000 levels in a debug build; the
    // layer's `on_close` returns before the registry closes the parent, so
    // it adds no recursion of its own). Such a chain needs a thread with
    // room for the registry's recursion; the layer then records all of it.
    test_watchdog::isolate(WATCHDOG, || {
        const DEPTH: usize = 10_000;
        let (pipeline, memory) = big_pipeline();
        let layer = OtlpLayer::new(&pipeline);
        let counters = layer.counters();
        let subscriber = Arc::new(tracing_subscriber::registry().with(layer));
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || {
                tracing::subscriber::with_default(subscriber, || {
                    let mut handles = Vec::with_capacity(DEPTH);
                    let mut parent = tracing::Span::none();
                    for level in 0..DEPTH {
                        let span = tracing::info_span!(parent: &parent, "nested", otel.name = format!("level {level}"));
                        parent = span.clone();
                        handles.push(span);
                    }
                    drop(parent);
                    // Outermost first: nothing closes until the last.
                    for span in handles {
                        drop(span);
                    }
                });
            })
            .expect("spawn")
            .join()
            .expect("no panic");
        let spans = finish(&pipeline, &memory);
        assert_chain(&spans, DEPTH);
        assert_eq!(counters.snapshot().recorded, 10_000);
    });
}

#[test]
fn one_span_entered_on_many_threads_at_once() {
    test_watchdog::isolate(WATCHDOG, || {
        const THREADS: usize = 8;
        const ROUNDS: usize = 500;
        let (pipeline, memory) = big_pipeline();
        let layer = OtlpLayer::new(&pipeline);
        let counters = layer.counters();
        let subscriber = Arc::new(tracing_subscriber::registry().with(layer));
        let dispatch = tracing::Dispatch::from(subscriber);
        let shared = tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("shared", hits = tracing::field::Empty)
        });
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (shared, dispatch) = (shared.clone(), dispatch.clone());
                s.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for i in 0..ROUNDS {
                            let _in = shared.enter();
                            tracing::info!(thread = t as u64, i = i as u64, "hit");
                            shared.record("hits", i as u64);
                            tracing::info_span!("child", thread = t as u64).in_scope(|| {
                                let cx = tracing::Span::current().span_context();
                                assert!(cx.is_some_and(|c| c.trace_flags.is_sampled()));
                            });
                        }
                    });
                });
            }
        });
        drop(shared);
        let spans = finish(&pipeline, &memory);
        assert_eq!(spans.len(), 1 + THREADS * ROUNDS);
        let shared = named(&spans, "shared");
        let limit = SpanLimits::default().event_count;
        assert_eq!(shared.events.len(), limit);
        assert_eq!(
            shared.dropped_events_count as usize,
            THREADS * ROUNDS - limit
        );
        assert!(int(&shared.attributes, "busy_ns").is_some());
        assert!(int(&shared.attributes, "idle_ns").is_some());
        assert!(int(&shared.attributes, "hits").is_some_and(|h| (0..ROUNDS as i64).contains(&h)));
        for child in spans.iter().filter(|s| s.name == "child") {
            assert_eq!(child.parent_span_id, shared.span_id);
            assert_eq!(child.trace_id, shared.trace_id);
        }
        let stats = counters.snapshot();
        assert_eq!(stats.started as usize, 1 + THREADS * ROUNDS);
        assert_eq!(stats.recorded, stats.started);
    });
}

#[test]
fn a_span_never_closed_is_never_recorded_and_stays_counted_as_open() {
    let (pipeline, memory) = pipeline();
    let layer = OtlpLayer::new(&pipeline);
    let counters = layer.counters();
    with_layer(layer, || {
        let leaked = tracing::info_span!("leaked");
        leaked.in_scope(|| tracing::info_span!("closed child").in_scope(|| {}));
        std::mem::forget(leaked);
    });
    let spans = finish(&pipeline, &memory);
    assert_eq!(names(&spans), ["closed child"]);
    let after = pipeline.stats();
    assert_eq!(after.accepted, 1, "the pipeline never saw the open span");
    let stats = counters.snapshot();
    assert_eq!((stats.started, stats.recorded, stats.open()), (2, 1, 1));
}

/// A `Debug` value that would write forever unless its writer refuses.
struct Endless;

impl std::fmt::Debug for Endless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        loop {
            f.write_str("endless ")?;
        }
    }
}

#[test]
fn huge_values_and_too_many_things_are_cut_to_the_limits_and_counted() {
    test_watchdog::isolate(WATCHDOG, || {
        let limits = SpanLimits {
            attribute_count: 4,
            attribute_value_length: Some(63),
            event_count: 3,
            link_count: 1,
            attributes_per_event: 2,
            attributes_per_link: 128,
        };
        let (pipeline, memory) = pipeline_with(limits);
        let huge = "é".repeat(5 << 20); // 10 MiB of two-byte characters
        with_layer(OtlpLayer::new(&pipeline), || {
            let a = tracing::info_span!("a");
            let b = tracing::info_span!("b");
            let span = tracing::info_span!(
                "huge",
                text = huge.as_str(),
                endless = ?Endless,
                recorded = tracing::field::Empty,
                n1 = 1_i64,
                n2 = 2_i64,
                n3 = 3_i64,
            );
            span.record("recorded", huge.as_str());
            span.follows_from(&a);
            span.follows_from(&b);
            span.in_scope(|| {
                for i in 0..5_i64 {
                    tracing::info!(
                        i,
                        x = 1_i64,
                        y = 2_i64,
                        "event with {} and more",
                        huge.len()
                    );
                }
            });
            drop(span);
        });
        let spans = finish(&pipeline, &memory);
        let span = named(&spans, "huge");
        // text, endless, n1, n2 kept; n3, `recorded` (recorded later),
        // 3 location attributes and busy_ns/idle_ns dropped.
        assert_eq!(keys(&span.attributes), ["text", "endless", "n1", "n2"]);
        assert_eq!(span.dropped_attributes_count, 1 + 1 + 3 + 2);
        let text = string(&span.attributes, "text").unwrap();
        assert_eq!(text, "é".repeat(63), "cut at 63 characters");
        let endless = string(&span.attributes, "endless").unwrap();
        assert_eq!(endless.len(), 63);
        assert!(endless.starts_with("endless endless"));
        assert_eq!(span.events.len(), 3);
        assert_eq!(span.dropped_events_count, 2);
        for e in &span.events {
            assert_eq!(keys(&e.attributes), ["level", "i"]);
            // x, y and 3 location attributes.
            assert_eq!(e.dropped_attributes_count, 5);
            assert!(e.name.len() <= 63);
        }
        assert_eq!(span.links.len(), 1);
        assert_eq!(span.dropped_links_count, 1);
    });
}

#[test]
fn a_layer_used_after_its_pipeline_shut_down_counts_after_shutdown() {
    let (pipeline, memory) = pipeline();
    let layer = OtlpLayer::new(&pipeline);
    let counters = layer.counters();
    with_layer(layer, || {
        let open = tracing::info_span!("open across shutdown");
        tracing::info_span!("before").in_scope(|| {});
        let report = pipeline.shutdown(Duration::from_secs(10));
        assert!(report.completed);
        assert_eq!(report.stats.exported, 1);
        for i in 0..10_i64 {
            tracing::info_span!("after", i).in_scope(|| tracing::error!("still fine"));
        }
        open.in_scope(|| tracing::info!("late event"));
        drop(open);
        assert!(tracing::Span::none().span_context().is_none());
    });
    let stats = pipeline.stats();
    assert_eq!(stats.dropped.after_shutdown, 11);
    assert_eq!(stats.exported, 1);
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(names(&received(&memory)), ["before"]);
    let layer_stats = counters.snapshot();
    assert_eq!((layer_stats.recorded, layer_stats.open()), (12, 0));
}

struct DebugBomb;

impl std::fmt::Debug for DebugBomb {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Debug bomb");
    }
}

struct DisplayBomb;

impl std::fmt::Display for DisplayBomb {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Display bomb");
    }
}

#[derive(Debug)]
struct ErrorBomb;

impl std::fmt::Display for ErrorBomb {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Error bomb");
    }
}

impl std::error::Error for ErrorBomb {}

#[test]
fn a_panicking_debug_value_gives_a_marker_and_the_layer_keeps_working() {
    test_watchdog::isolate(WATCHDOG, || {
        let (pipeline, memory) = pipeline();
        let layer = OtlpLayer::new(&pipeline);
        let counters = layer.counters();
        let user_saw = with_layer(layer, || {
            catch_unwind(AssertUnwindSafe(|| {
                let span = tracing::info_span!(
                    "bombs",
                    dbg = ?DebugBomb,
                    disp = %DisplayBomb,
                    later = tracing::field::Empty,
                    ok = 1_i64
                );
                span.record("later", tracing::field::debug(DebugBomb));
                span.in_scope(|| {
                    tracing::info!(field = ?DebugBomb, "event with a bomb");
                    tracing::info!("{}", DisplayBomb);
                    let err = ErrorBomb;
                    tracing::error!(error = &err as &(dyn std::error::Error + 'static));
                });
                // The same span is still usable: enter, record, events.
                span.record("ok", 2_i64);
                span.in_scope(|| tracing::info!("after the bombs"));
                assert!(span.span_context().is_some());
                drop(span);
                tracing::info_span!("next").in_scope(|| tracing::info!("fine"));
            }))
            .is_ok()
        });
        assert!(user_saw, "no panic reached the instrumented code");
        let spans = finish(&pipeline, &memory);
        let bombs = named(&spans, "bombs");
        for key in ["dbg", "disp", "later"] {
            assert_eq!(
                string(&bombs.attributes, key),
                Some(PANICKED_VALUE),
                "{key}"
            );
        }
        assert_eq!(int(&bombs.attributes, "ok"), Some(2));
        let events: Vec<&str> = bombs.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(events[0], "event with a bomb");
        assert_eq!(
            string(&bombs.events[0].attributes, "field"),
            Some(PANICKED_VALUE)
        );
        assert_eq!(events[1], PANICKED_VALUE);
        assert_eq!(
            string(&bombs.events[2].attributes, "exception.message"),
            Some(PANICKED_VALUE)
        );
        assert_eq!(events[3], "after the bombs");
        let status = bombs.status.clone().expect("status");
        assert_eq!(status.message, PANICKED_VALUE);
        assert_eq!(named(&spans, "next").events.len(), 1);
        let stats = counters.snapshot();
        assert_eq!((stats.started, stats.recorded), (2, 2));
    });
}

#[test]
fn two_layers_in_one_subscriber_record_each_span_once() {
    let (first, first_memory) = pipeline();
    let (second, second_memory) = pipeline();
    let (a, b) = (OtlpLayer::new(&first), OtlpLayer::new(&second));
    let (a_counts, b_counts) = (a.counters(), b.counters());
    let subscriber = tracing_subscriber::registry().with(a).with(b);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("once", n = 1_i64, later = tracing::field::Empty);
        span.record("later", 2_i64);
        span.in_scope(|| {
            tracing::info!("one event");
            tracing::info_span!("child").in_scope(|| {});
        });
        assert!(span.span_context().is_some());
    });
    let spans = finish(&first, &first_memory);
    assert!(finish(&second, &second_memory).is_empty());
    let once = named(&spans, "once");
    assert_eq!(once.events.len(), 1, "not duplicated");
    assert_eq!(
        keys(&once.attributes)
            .iter()
            .filter(|k| **k == "later")
            .count(),
        1
    );
    assert_eq!(named(&spans, "child").parent_span_id, once.span_id);
    assert_eq!(
        (a_counts.snapshot().recorded, b_counts.snapshot().started),
        (2, 0)
    );
}

#[test]
fn a_span_that_follows_from_itself_or_is_entered_twice_on_one_thread() {
    test_watchdog::isolate(WATCHDOG, || {
        let (pipeline, memory) = pipeline();
        with_layer(OtlpLayer::new(&pipeline), || {
            let span = tracing::info_span!("loop");
            span.follows_from(&span);
            let outer = span.enter();
            let inner = span.enter();
            tracing::info!("twice inside");
            drop(inner);
            drop(outer);
            drop(span);
        });
        let spans = finish(&pipeline, &memory);
        let span = named(&spans, "loop");
        assert_eq!(span.links.len(), 1);
        assert_eq!(span.links[0].span_id, span.span_id);
        assert_eq!(span.events.len(), 1);
        assert!(int(&span.attributes, "busy_ns").is_some());
    });
}

/// `OTEL_SDK_DISABLED=true`: the layer records nothing, whatever sampler it
/// is given (found by review: `with_sampler` brought recording back, and
/// handed out sampled contexts the pipeline then counted as not sampled).
#[test]
fn a_disabled_pipeline_records_nothing_whatever_the_layer_sampler() {
    test_watchdog::isolate(WATCHDOG, || {
        // SAFETY: a child process running this one test on one thread.
        unsafe { std::env::set_var("OTEL_SDK_DISABLED", "true") };
        let (pipeline, memory) = pipeline();
        assert!(pipeline.is_disabled());
        let layer = OtlpLayer::new(&pipeline).with_sampler(otlp_exporter::Sampler::AlwaysOn);
        let counters = layer.counters();
        let (root, child) = with_layer(layer, || {
            let root = tracing::info_span!("root", a = 1_i64);
            let _entered = root.enter();
            let child =
                tracing::info_span!("child").in_scope(|| tracing::Span::current().span_context());
            (root.span_context(), child)
        });
        // A root has no context to send on (as the API without an SDK).
        assert_eq!(root, None);
        assert_eq!(child, None);
        let stats = pipeline.shutdown(Duration::from_secs(10)).stats;
        assert!(stats.is_balanced(), "{stats:?}");
        assert_eq!(stats.dropped.not_sampled, 2);
        let layer_stats = counters.snapshot();
        assert_eq!(layer_stats.recorded, 0, "{layer_stats:?}");
        assert_eq!(layer_stats.not_sampled, 2, "{layer_stats:?}");
        assert_eq!(memory.span_count(), 0);
    });
}

/// `OTEL_SDK_DISABLED=true` behaves as the trace API without an SDK: a
/// span carries its parent's context unchanged, so that the incoming
/// `traceparent` goes on as it came (found by review: a new span id with
/// the sampled flag cleared made the next service's `ParentBased` sampler
/// drop the trace).
#[test]
fn a_disabled_pipeline_propagates_the_incoming_context_unchanged() {
    test_watchdog::isolate(WATCHDOG, || {
        // SAFETY: a child process running this one test on one thread.
        unsafe { std::env::set_var("OTEL_SDK_DISABLED", "true") };
        let (pipeline, memory) = pipeline();
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let remote = otlp_exporter::SpanContext::from_traceparent(header)
            .expect("valid")
            .with_trace_state(otlp_exporter::TraceState::parse("k=v").expect("valid"));
        let (server, client, linked) = with_layer(OtlpLayer::new(&pipeline), || {
            let server = tracing::info_span!("server", otel.kind = "server");
            assert!(server.set_parent(remote.clone()));
            let _entered = server.enter();
            let client = tracing::info_span!("client", otel.kind = "client")
                .in_scope(|| tracing::Span::current().span_context());
            let explicit = tracing::info_span!(parent: &server, "explicit");
            (server.span_context(), client, explicit.span_context())
        });
        for cx in [&server, &client, &linked] {
            let cx = cx.as_ref().expect("the incoming context");
            assert_eq!(cx.to_traceparent(), header);
            assert!(cx.trace_state == "k=v", "{:?}", cx.trace_state);
        }
        let stats = pipeline.shutdown(Duration::from_secs(10)).stats;
        assert!(stats.is_balanced(), "{stats:?}");
        assert_eq!(stats.dropped.not_sampled, 3);
        assert_eq!(memory.span_count(), 0);
    });
}
