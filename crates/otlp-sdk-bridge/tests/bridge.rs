//! The bridge as an `opentelemetry` API user meets it: a provider with our
//! processor, spans made with the API, and the OTLP the transport received
//! decoded and compared field by field with what the SDK recorded.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Capture, by_span_id, expected_span, exported};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_sdk::trace::{
    SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample, SpanLimits,
};
use otlp_exporter::{Behavior, InMemory, Pipeline, Resource, Shedding};
use otlp_sdk_bridge::OtlpSpanProcessor;

fn pipeline(memory: &InMemory) -> Pipeline {
    Pipeline::builder()
        .transport(memory.clone())
        .resource(Resource::new("bridge-test"))
        .build()
        .expect("valid settings")
}

fn every_value_type() -> Vec<KeyValue> {
    vec![
        KeyValue::new("str.static", "static"),
        KeyValue::new(String::from("str.owned"), String::from("owned ✓ ключ")),
        KeyValue::new("str.empty", ""),
        KeyValue::new("bool", true),
        KeyValue::new("i64", -7_i64),
        KeyValue::new("i64.max", i64::MAX),
        KeyValue::new("f64", 2.5),
        KeyValue::new("f64.inf", f64::INFINITY),
        KeyValue::new("arr.bool", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("arr.i64", Value::Array(Array::I64(vec![1, -2, i64::MIN]))),
        KeyValue::new("arr.f64", Value::Array(Array::F64(vec![0.5, -1.25]))),
        KeyValue::new(
            "arr.str",
            Value::Array(Array::String(vec![
                StringValue::from("a"),
                StringValue::from(String::from("b")),
            ])),
        ),
        KeyValue::new("arr.empty", Value::Array(Array::I64(Vec::new()))),
    ]
}

fn str_attr(attrs: &[pc::KeyValue], key: &str) -> Option<String> {
    use pc::any_value::Value as A;
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            A::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[test]
fn every_field_reaches_the_collector() {
    let memory = InMemory::new();
    let pipeline = pipeline(&memory);
    let capture = Capture::default();
    // Tight SDK limits, so that every dropped count is non-zero and must
    // be carried.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .with_span_processor(capture.clone())
        .with_span_limits(SpanLimits {
            max_events_per_span: 2,
            max_attributes_per_span: every_value_type().len() as u32,
            max_links_per_span: 2,
            max_attributes_per_event: 1,
            max_attributes_per_link: 1,
        })
        .build();

    let library = provider.tracer_with_scope(
        InstrumentationScope::builder("library")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
            .with_attributes([KeyValue::new("scope.attr", "x"), KeyValue::new("n", 3)])
            .build(),
    );
    let app = provider.tracer("app");

    // A remote parent, as a propagator would hand it over.
    let remote = SpanContext::new(
        TraceId::from_bytes([0xab; 16]),
        SpanId::from_bytes([0xcd; 8]),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "v1"), ("other", "o2")]).unwrap(),
    );
    let linked = SpanContext::new(
        TraceId::from_bytes([0x11; 16]),
        SpanId::from_bytes([0x22; 8]),
        TraceFlags::NOT_SAMPLED,
        true,
        TraceState::default(),
    );
    let local_link = SpanContext::new(
        TraceId::from_bytes([0x33; 16]),
        SpanId::from_bytes([0x44; 8]),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );

    let mut root = library
        .span_builder("root")
        .with_kind(SpanKind::Server)
        .with_attributes(every_value_type())
        .with_links(vec![
            Link::new(
                linked,
                vec![KeyValue::new("link.attr", 1), KeyValue::new("cut", 2)],
                0,
            ),
            Link::with_context(local_link.clone()),
            Link::with_context(local_link), // over the limit
        ])
        .start_with_context(&library, &Context::new().with_remote_span_context(remote));
    root.add_event(
        "retrying",
        vec![KeyValue::new("attempt", 2), KeyValue::new("why", "timeout")],
    );
    root.add_event("bare", Vec::new());
    root.add_event("over the limit", Vec::new());
    root.set_attribute(KeyValue::new("over.the.limit", 1));
    root.set_status(Status::error("card declined"));
    let root_cx = Context::new().with_span(root);

    for (i, kind) in [
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
        SpanKind::Internal,
    ]
    .into_iter()
    .enumerate()
    {
        let mut child = app
            .span_builder(format!("child-{i}"))
            .with_kind(kind)
            .start_with_context(&app, &root_cx);
        child.set_attribute(KeyValue::new("index", i as i64));
        if i == 0 {
            child.set_status(Status::Ok);
            let child_cx = root_cx.with_span(child);
            let mut grandchild = app.start_with_context("grandchild", &child_cx);
            grandchild.update_name("grandchild renamed");
            grandchild.end();
            child_cx.span().end();
        } else {
            child.end();
        }
    }
    root_cx.span().end();
    provider.shutdown().expect("drained in time");

    let recorded = capture.spans();
    assert_eq!(recorded.len(), 6, "root, four children, one grandchild");
    let got = exported(&memory);
    assert_eq!(got.len(), recorded.len());
    let got = by_span_id(&got);

    for sdk in &recorded {
        let id = sdk.span_context.span_id().to_bytes().to_vec();
        let e = got
            .get(&id)
            .unwrap_or_else(|| panic!("span {} was not exported", sdk.name));
        assert_eq!(e.span, expected_span(sdk), "span {}", sdk.name);
        // Its tracer's scope, with version, schema URL and attributes.
        let scope = &sdk.instrumentation_scope;
        assert_eq!(e.scope.name, scope.name());
        assert_eq!(e.scope.version, scope.version().unwrap_or(""));
        assert_eq!(e.scope_schema_url, scope.schema_url().unwrap_or(""));
        let scope_attrs: Vec<KeyValue> = scope.attributes().cloned().collect();
        assert_eq!(e.scope.attributes, common::kvs(&scope_attrs));
        // The pipeline's resource.
        assert_eq!(
            str_attr(&e.resource, "service.name").as_deref(),
            Some("bridge-test")
        );
    }

    // The tree, read from the decoded output alone.
    let by_name = |name: &str| {
        got.values()
            .find(|e| e.span.name == name)
            .unwrap_or_else(|| panic!("no span {name}"))
            .span
            .clone()
    };
    let root = by_name("root");
    assert_eq!(root.trace_id, vec![0xab; 16], "the remote parent's trace");
    assert_eq!(root.parent_span_id, vec![0xcd; 8]);
    assert_eq!(root.flags & 0x300, 0x300, "parent known to be remote");
    assert_eq!(root.trace_state, "vendor=v1,other=o2");
    assert_eq!(root.kind, 2);
    assert_eq!(root.status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(root.status.as_ref().unwrap().message, "card declined");
    assert_eq!(root.attributes.len(), every_value_type().len());
    assert_eq!(root.events.len(), 2);
    assert_eq!(root.links.len(), 2);
    assert_eq!(root.links[0].flags, 0x300, "not sampled, remote");
    assert_eq!(root.links[1].flags, 0x101, "sampled, local");
    assert_eq!(root.dropped_attributes_count, 1);
    assert_eq!(root.dropped_events_count, 1);
    assert_eq!(root.dropped_links_count, 1);
    assert_eq!(root.events[0].attributes.len(), 1);
    assert_eq!(root.events[0].dropped_attributes_count, 1);
    assert_eq!(root.links[0].attributes.len(), 1);
    assert_eq!(root.links[0].dropped_attributes_count, 1);
    let child0 = by_name("child-0");
    assert_eq!(child0.parent_span_id, root.span_id);
    assert_eq!(child0.flags & 0x300, 0x100, "parent known to be local");
    assert_eq!(by_name("grandchild renamed").parent_span_id, child0.span_id);
    for e in got.values() {
        assert_eq!(e.span.trace_id, vec![0xab; 16], "one trace");
    }
    let kinds: HashSet<i32> = got.values().map(|e| e.span.kind).collect();
    assert_eq!(kinds, HashSet::from([1, 2, 3, 4, 5]));

    let stats = pipeline.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.accepted, 6);
    assert_eq!(stats.exported, 6);
    assert_eq!(stats.dropped.total(), 0);
}

#[test]
fn many_threads_every_span_accounted() {
    const THREADS: usize = 8;
    const PAIRS: usize = 1000;
    let memory = InMemory::new();
    // Room for every span: nothing may be shed, so every one is exported.
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .max_queue_size(4 * THREADS * PAIRS)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();

    std::thread::scope(|s| {
        for t in 0..THREADS {
            let tracer = provider.tracer(format!("worker-{}", t % 3));
            s.spawn(move || {
                for i in 0..PAIRS {
                    tracer.in_span(format!("request-{t}-{i}"), |cx| {
                        cx.span().set_attribute(KeyValue::new("thread", t as i64));
                        let mut child = tracer.start_with_context("query", &cx);
                        child.set_attribute(KeyValue::new("i", i as i64));
                        child.end();
                    });
                }
            });
        }
    });
    provider.shutdown().expect("drained in time");

    let stats = pipeline.stats();
    let total = (2 * THREADS * PAIRS) as u64;
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.accepted, total);
    assert_eq!(stats.exported, total, "{stats:?}");
    let got = exported(&memory);
    assert_eq!(got.len() as u64, total);
    let ids: HashSet<&[u8]> = got.iter().map(|e| &e.span.span_id[..]).collect();
    assert_eq!(ids.len() as u64, total, "every span exactly once");
    // Each child's parent is a request span of the same trace.
    let parents: HashSet<(&[u8], &[u8])> = got
        .iter()
        .filter(|e| e.span.name != "query")
        .map(|e| (&e.span.trace_id[..], &e.span.span_id[..]))
        .collect();
    for e in got.iter().filter(|e| e.span.name == "query") {
        assert!(parents.contains(&(&e.span.trace_id[..], &e.span.parent_span_id[..])));
        assert!(e.scope.name.starts_with("worker-"));
    }
}

#[test]
fn overload_is_shed_and_counted() {
    const THREADS: usize = 4;
    const SPANS: usize = 1000;
    // A collector that stops answering: the first batch hangs in flight,
    // the queue (64) fills, and the rest must be shed and counted.
    let memory = InMemory::new().with_behavior(Behavior::Hang);
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .max_queue_size(64)
        .scheduled_delay(Duration::ZERO)
        .shedding(Shedding::DropNewest)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let tracer = provider.tracer("load");
            s.spawn(move || {
                for _ in 0..SPANS {
                    tracer.start("burst").end();
                }
            });
        }
    });
    let during = pipeline.stats();
    assert_eq!(during.accepted, (THREADS * SPANS) as u64);
    assert!(during.dropped.queue_full > 0, "{during:?}");
    memory.release();
    provider
        .shutdown()
        .expect("drained after the collector let go");
    let stats = pipeline.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.accepted, (THREADS * SPANS) as u64);
    assert_eq!(stats.exported, memory.span_count());
}

/// Samples nothing but records everything: the SDK hands the processor
/// spans whose sampled flag is off.
#[derive(Clone, Debug)]
struct RecordOnly;

impl ShouldSample for RecordOnly {
    fn should_sample(
        &self,
        _parent: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        SamplingResult {
            decision: SamplingDecision::RecordOnly,
            attributes: Vec::new(),
            trace_state: TraceState::default(),
        }
    }
}

#[test]
fn recorded_but_unsampled_spans_are_counted_not_exported() {
    let memory = InMemory::new();
    let pipeline = pipeline(&memory);
    let provider = SdkTracerProvider::builder()
        .with_sampler(RecordOnly)
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    let tracer = provider.tracer("sampled-out");
    for _ in 0..5 {
        tracer.start("quiet").end();
    }
    provider.shutdown().unwrap();
    let stats = pipeline.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.accepted, 5);
    assert_eq!(stats.dropped.not_sampled, 5);
    assert_eq!(stats.exported, 0);
    assert_eq!(memory.span_count(), 0);
}

#[test]
fn force_flush_exports_what_was_queued() {
    let memory = InMemory::new();
    let pipeline = pipeline(&memory); // 5 s scheduled delay: only the flush exports
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    let tracer = provider.tracer("flush");
    for _ in 0..3 {
        tracer.start("before flush").end();
    }
    provider.force_flush().expect("flushed");
    assert_eq!(memory.span_count(), 3);
    provider.shutdown().unwrap();
    assert!(pipeline.stats().is_balanced());
}

#[test]
fn tracers_keep_their_scopes_past_the_thread_cache() {
    // More scopes than a thread remembers, used in turn: each span must
    // still be exported under its own tracer's scope.
    let memory = InMemory::new();
    let pipeline = pipeline(&memory);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&pipeline))
        .build();
    let tracers: Vec<_> = (0..40)
        .map(|i| {
            provider.tracer_with_scope(
                InstrumentationScope::builder(format!("scope-{i}"))
                    .with_version(format!("{i}.0"))
                    .build(),
            )
        })
        .collect();
    for round in 0..3 {
        for (i, tracer) in tracers.iter().enumerate() {
            let mut span = tracer.start(format!("span-{i}-{round}"));
            span.set_attribute(KeyValue::new("scope.index", i as i64));
            span.end();
        }
    }
    provider.shutdown().unwrap();
    let got = exported(&memory);
    assert_eq!(got.len(), 120);
    for e in &got {
        let i = e.span.name.split('-').nth(1).unwrap();
        assert_eq!(e.scope.name, format!("scope-{i}"), "{}", e.span.name);
        assert_eq!(e.scope.version, format!("{i}.0"));
    }
}

#[test]
fn two_pipelines_on_one_thread_keep_their_scope_ids_apart() {
    // The same SDK scope gets different ids in two pipelines; the thread's
    // scope cache must not hand one pipeline's id to the other.
    let (m1, m2) = (InMemory::new(), InMemory::new());
    let (p1, p2) = (pipeline(&m1), pipeline(&m2));
    // Shift p1's ids: "shared" is its third scope, p2's second.
    let _ = p1.scope(otlp_exporter::InstrumentationScope::new("other", ""));
    let prov1 = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&p1))
        .build();
    let prov2 = SdkTracerProvider::builder()
        .with_span_processor(OtlpSpanProcessor::new(&p2))
        .build();
    let (t1, t2) = (prov1.tracer("shared"), prov2.tracer("shared"));
    for _ in 0..3 {
        t1.start("one").end();
        t2.start("two").end();
    }
    prov1.shutdown().unwrap();
    prov2.shutdown().unwrap();
    for (memory, name) in [(&m1, "one"), (&m2, "two")] {
        let got = exported(memory);
        assert_eq!(got.len(), 3);
        for e in got {
            assert_eq!(e.span.name, name);
            assert_eq!(e.scope.name, "shared");
        }
    }
}

/// The recipe the processor's docs give for exporting under the provider's
/// resource: a provider's default resource (which has `service.name` and
/// `telemetry.sdk.*`) is exported exactly as the provider holds it; an
/// empty one gains what the pipeline fills in, as the docs say.
#[test]
fn the_providers_resource_is_exported_as_the_docs_say() {
    let export = |resource: &opentelemetry_sdk::Resource| {
        let memory = InMemory::new();
        let pipeline = Pipeline::builder()
            .transport(memory.clone())
            .resource(otlp_sdk_bridge::to_resource(resource))
            .build()
            .expect("valid settings");
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_span_processor(OtlpSpanProcessor::new(&pipeline))
            .build();
        provider.tracer("t").in_span("s", |_| {});
        provider.shutdown().expect("shuts down");
        let spans = exported(&memory);
        assert_eq!(spans.len(), 1);
        let mut keys: Vec<(String, Option<String>)> = spans[0]
            .resource
            .iter()
            .map(|kv| (kv.key.clone(), str_attr(&spans[0].resource, &kv.key)))
            .collect();
        keys.sort();
        keys
    };
    let as_sdk_holds = |resource: &opentelemetry_sdk::Resource| {
        let mut keys: Vec<(String, Option<String>)> = resource
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect();
        keys.sort();
        keys
    };

    let default = opentelemetry_sdk::Resource::builder()
        .with_attribute(KeyValue::new("deployment.environment.name", "prod"))
        .build();
    assert_eq!(export(&default), as_sdk_holds(&default));

    let empty = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name("checkout")
        .build();
    let got = export(&empty);
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "service.name",
            "telemetry.sdk.language",
            "telemetry.sdk.name",
            "telemetry.sdk.version"
        ]
    );
    assert_eq!(got[0].1.as_deref(), Some("checkout"));
    assert_eq!(got[2].1.as_deref(), Some("otlp-exporter"));
}
