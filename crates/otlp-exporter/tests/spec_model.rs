//! The OpenTelemetry spec's rules for a span's data, as the exported spans
//! show them: the status rules of `Span::set_status` (Trace API, Set
//! Status), unique and non-empty attribute keys in every attribute
//! collection (common spec, Attribute and Attribute Collections), and the
//! limits' rules for events' and links' attributes.

mod common;

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1 as pt;
use otlp_exporter::{
    Encoding, InMemory, KeyValue, Link, Pipeline, SharedAttributes, SpanData, SpanLimits, Status,
    StatusCode,
};

const WAIT: Duration = Duration::from_secs(10);

fn pipeline() -> (Pipeline, InMemory) {
    pipeline_with(SpanLimits::default(), Encoding::Protobuf)
}

fn pipeline_with(limits: SpanLimits, encoding: Encoding) -> (Pipeline, InMemory) {
    let memory = InMemory::new().with_encoding(encoding);
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .limits(limits)
        .build()
        .expect("valid settings");
    (pipeline, memory)
}

/// The one span named `name` that `memory` received.
fn exported(memory: &InMemory, name: &str) -> pt::Span {
    let mut spans: Vec<_> = common::received(memory)
        .into_iter()
        .filter(|s| s.name == name)
        .collect();
    assert_eq!(spans.len(), 1, "spans named {name}");
    spans.remove(0)
}

fn keys(attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> Vec<&str> {
    attributes.iter().map(|kv| kv.key.as_str()).collect()
}

fn int(kv: &opentelemetry_proto::tonic::common::v1::KeyValue) -> i64 {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::IntValue(i)) => *i,
        other => panic!("{}: not an int: {other:?}", kv.key),
    }
}

/// The status each sequence of `set_status` calls leaves, exported.
fn status_after(calls: &[Status]) -> Option<pt::Status> {
    let (pipeline, memory) = pipeline();
    let mut span = pipeline.tracer("status", "1").start("s");
    for status in calls {
        span.set_status(status.clone());
    }
    span.end();
    pipeline.shutdown(WAIT);
    exported(&memory, "s").status
}

fn code(status: &Option<pt::Status>) -> i32 {
    status.as_ref().map_or(0, |s| s.code)
}

#[test]
fn an_ok_status_loses_its_description() {
    let status = status_after(&[Status {
        code: StatusCode::Ok,
        message: "not kept".into(),
    }])
    .expect("a status");
    assert_eq!((status.code, status.message.as_str()), (1, ""));
}

#[test]
fn an_ok_status_is_final() {
    let status = status_after(&[Status::ok(), Status::error("later")]);
    assert_eq!(code(&status), 1, "{status:?}");
    assert_eq!(status.unwrap().message, "");
}

#[test]
fn setting_unset_is_ignored() {
    let status = status_after(&[Status::error("boom"), Status::default()]);
    assert_eq!(code(&status), 2, "{status:?}");
    assert_eq!(status.unwrap().message, "boom");
    // Nor does an unset status with a description make one.
    let status = status_after(&[Status {
        code: StatusCode::Unset,
        message: "nothing".into(),
    }]);
    assert_eq!(status, None);
}

#[test]
fn an_error_can_be_replaced_by_another_error_or_ok() {
    let status = status_after(&[Status::error("first"), Status::error("second")]).unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "second"));
    let status = status_after(&[Status::error("first"), Status::ok()]).unwrap();
    assert_eq!((status.code, status.message.as_str()), (1, ""));
}

/// A `SpanData` recorded directly (or encoded) is exported with no
/// description on an `Ok` or `Unset` status, in both encodings.
#[test]
fn a_recorded_span_exports_no_description_for_ok_or_unset() {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let (pipeline, memory) = pipeline_with(SpanLimits::default(), encoding);
        for (name, code) in [("ok", StatusCode::Ok), ("unset", StatusCode::Unset)] {
            let mut span = SpanData::new(name);
            span.status = Status {
                code,
                message: "dropped".into(),
            };
            pipeline.record(span);
        }
        pipeline.shutdown(WAIT);
        let ok = exported(&memory, "ok").status.expect("a status");
        assert_eq!((ok.code, ok.message.as_str()), (1, ""), "{encoding:?}");
        assert_eq!(exported(&memory, "unset").status, None, "{encoding:?}");
    }
}

fn link_to(span: &otlp_exporter::Span, attributes: Vec<KeyValue>) -> Link {
    Link {
        context: span.context().clone(),
        attributes,
        dropped_attributes_count: 0,
    }
}

/// An event's and a link's attributes have unique keys: a key given twice
/// is kept once, at its first place, with its last value (as
/// `set_attribute` does for the span's own).
#[test]
fn event_and_link_attribute_keys_are_unique() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("dup", "1");
    let other = tracer.start("other");
    let given = || {
        vec![
            KeyValue::new("a", 1),
            KeyValue::new("b", 2),
            KeyValue::new("a", 3),
            KeyValue::new("c", 4),
            KeyValue::new("b", 5),
        ]
    };
    let mut span = tracer
        .build("x")
        .link(other.context().clone(), given())
        .start();
    span.add_event("e", given());
    span.add_link(link_to(&other, given()));
    span.end();
    other.end();
    pipeline.shutdown(WAIT);
    let x = exported(&memory, "x");
    let event = &x.events[0];
    for attributes in [
        &event.attributes,
        &x.links[0].attributes,
        &x.links[1].attributes,
    ] {
        assert_eq!(keys(attributes), ["a", "b", "c"]);
        assert_eq!(attributes.iter().map(int).collect::<Vec<_>>(), [3, 5, 4]);
    }
    assert_eq!(event.dropped_attributes_count, 0);
    assert_eq!(x.links[0].dropped_attributes_count, 0);
}

/// Duplicates are removed before the count limit: they do not push
/// distinct keys out (nor are they counted as dropped).
#[test]
fn duplicate_keys_do_not_push_distinct_keys_out() {
    let limits = SpanLimits {
        attributes_per_event: 2,
        attributes_per_link: 2,
        ..SpanLimits::default()
    };
    let (pipeline, memory) = pipeline_with(limits, Encoding::Protobuf);
    let tracer = pipeline.tracer("dup", "1");
    let other = tracer.start("other");
    let given = || {
        vec![
            KeyValue::new("a", 1),
            KeyValue::new("a", 2),
            KeyValue::new("a", 3),
            KeyValue::new("b", 4),
            KeyValue::new("c", 5),
        ]
    };
    let mut span = tracer.start("x");
    span.add_event("e", given());
    span.add_link(link_to(&other, given()));
    span.end();
    // A span recorded directly: the limits cut its events and links too.
    let mut direct = SpanData::new("direct");
    direct.events.push(otlp_exporter::Event {
        name: "e".into(),
        time_unix_nano: 1,
        attributes: given(),
        dropped_attributes_count: 0,
    });
    direct.links.push(Link {
        context: other.context().clone(),
        attributes: given(),
        dropped_attributes_count: 1,
    });
    pipeline.record(direct);
    other.end();
    pipeline.shutdown(WAIT);
    for (name, link_dropped) in [("x", 1), ("direct", 2)] {
        let s = exported(&memory, name);
        let (event, link) = (&s.events[0], &s.links[0]);
        assert_eq!(keys(&event.attributes), ["a", "b"], "{name}");
        assert_eq!(int(&event.attributes[0]), 3, "{name}");
        assert_eq!(event.dropped_attributes_count, 1, "{name}: c only");
        assert_eq!(keys(&link.attributes), ["a", "b"], "{name}");
        assert_eq!(link.dropped_attributes_count, link_dropped, "{name}");
    }
}

/// Many attributes (past the quadratic scan): the same rule.
#[test]
fn many_duplicate_event_attributes_are_made_unique() {
    let (pipeline, memory) = pipeline();
    let mut span = pipeline.tracer("dup", "1").start("x");
    let mut given = Vec::new();
    for round in 0..3 {
        for k in (0..50).rev() {
            given.push(KeyValue::new(format!("k{k}"), round * 100 + k));
        }
        given.push(KeyValue::new("", round));
    }
    span.add_event("e", given);
    span.end();
    pipeline.shutdown(WAIT);
    let event = &exported(&memory, "x").events[0];
    let expected_keys: Vec<String> = (0..50).rev().map(|k| format!("k{k}")).collect();
    assert_eq!(keys(&event.attributes), expected_keys);
    let values: Vec<i64> = event.attributes.iter().map(int).collect();
    assert_eq!(values, (0..50).rev().map(|k| 200 + k).collect::<Vec<_>>());
    assert_eq!(event.dropped_attributes_count, 3, "the empty keys");
}

/// An attribute key must not be empty: one is dropped, and counted in its
/// collection's dropped attributes (the span's, an event's, a link's),
/// whether set through `Span` or carried by a `SpanData` recorded directly,
/// in both encodings.
#[test]
fn empty_attribute_keys_are_dropped_and_counted() {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let (pipeline, memory) = pipeline_with(SpanLimits::default(), encoding);
        let tracer = pipeline.tracer("empty", "1");
        let other = tracer.start("other");
        let mut span = tracer.build("x").attribute("", "from the builder").start();
        span.set_attribute("", 1).set_attribute("kept", 2);
        let given = || vec![KeyValue::new("", 1), KeyValue::new("kept", 2)];
        span.add_event("e", given());
        span.add_link(link_to(&other, given()));
        span.end();
        let mut direct = SpanData::new("direct");
        direct.attributes = given();
        direct.attributes.push(KeyValue::new(
            "",
            otlp_exporter::Value::Array(vec![otlp_exporter::Value::I64(1)]),
        ));
        pipeline.record(direct);
        other.end();
        pipeline.shutdown(WAIT);
        let x = exported(&memory, "x");
        assert_eq!(keys(&x.attributes), ["kept"], "{encoding:?}");
        assert_eq!(x.dropped_attributes_count, 2, "{encoding:?}");
        assert_eq!(keys(&x.events[0].attributes), ["kept"], "{encoding:?}");
        assert_eq!(x.events[0].dropped_attributes_count, 1, "{encoding:?}");
        assert_eq!(keys(&x.links[0].attributes), ["kept"], "{encoding:?}");
        assert_eq!(x.links[0].dropped_attributes_count, 1, "{encoding:?}");
        let direct = exported(&memory, "direct");
        assert_eq!(keys(&direct.attributes), ["kept"], "{encoding:?}");
        assert_eq!(direct.dropped_attributes_count, 2, "{encoding:?}");
    }
}

/// A shared attribute whose key the span's own attributes have is left out
/// of the export (the span's own value wins, nothing is counted as
/// dropped), in both encodings, and when the limits copy the shared ones
/// into the span's own list.
#[test]
fn a_spans_own_attribute_wins_over_a_shared_one_with_its_key() {
    let shared: &'static SharedAttributes = SharedAttributes::leak(vec![
        KeyValue::new("code.file.path", "src/main.rs"),
        KeyValue::new("code.line.number", 42),
        KeyValue::new("", "empty"),
    ]);
    let own = || {
        vec![
            KeyValue::new("code.line.number", 7),
            KeyValue::new("user.id", 1),
        ]
    };
    let tight = SpanLimits {
        attribute_count: 4,
        ..SpanLimits::default()
    };
    for limits in [SpanLimits::default(), tight] {
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let (pipeline, memory) = pipeline_with(limits, encoding);
            let mut span = SpanData::new("x");
            span.attributes = own();
            span.shared_attributes = Some(shared);
            pipeline.record(span);
            pipeline.shutdown(WAIT);
            let x = exported(&memory, "x");
            let what = format!("{encoding:?}, {limits:?}");
            assert_eq!(
                keys(&x.attributes),
                ["code.line.number", "user.id", "code.file.path"],
                "{what}"
            );
            assert_eq!(int(&x.attributes[0]), 7, "{what}");
            assert_eq!(x.dropped_attributes_count, 1, "{what}: the empty key");
        }
    }
}

/// An empty key is dropped and counted whoever holds it: a shared one is
/// not taken for one the span's own empty key replaces (found by review:
/// with an own empty key too, the shared one went uncounted). Both
/// encoders, and through the limits (which copy the shared set).
#[test]
fn a_shared_empty_key_is_counted_beside_an_own_one() {
    let shared: &'static SharedAttributes =
        SharedAttributes::leak(vec![KeyValue::new("", 1), KeyValue::new("s", 2)]);
    let tight = SpanLimits {
        attribute_count: 1,
        ..SpanLimits::default()
    };
    for limits in [SpanLimits::default(), tight] {
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let (pipeline, memory) = pipeline_with(limits, encoding);
            let mut span = SpanData::new("x");
            span.attributes = vec![KeyValue::new("", 0)];
            span.shared_attributes = Some(shared);
            pipeline.record(span);
            pipeline.shutdown(WAIT);
            let x = exported(&memory, "x");
            let what = format!("{encoding:?}, {limits:?}");
            assert_eq!(keys(&x.attributes), ["s"], "{what}");
            assert_eq!(x.dropped_attributes_count, 2, "{what}: both empty keys");
        }
    }
}

/// A reviewer's case: a `SpanData` recorded directly with a key twice and
/// nothing else over a limit took the limits' fast path and was exported
/// with both; a shared set with a key twice was exported with both too.
/// Each key now comes out once, at its first place, with its last value.
#[test]
fn a_span_recorded_directly_and_a_shared_set_export_each_key_once() {
    let (pipeline, memory) = pipeline();
    let mut own = SpanData::new("own");
    own.attributes.push(KeyValue::new("k", 1));
    own.attributes.push(KeyValue::new("other", 5));
    own.attributes.push(KeyValue::new("k", 2));
    pipeline.record(own);
    let shared: &'static SharedAttributes = SharedAttributes::leak(vec![
        KeyValue::new("s", 1),
        KeyValue::new("t", 7),
        KeyValue::new("s", 2),
    ]);
    assert_eq!(shared.len(), 2);
    let mut with_shared = SpanData::new("shared");
    with_shared.shared_attributes = Some(shared);
    pipeline.record(with_shared);
    assert!(pipeline.shutdown(WAIT).completed);
    let own = exported(&memory, "own");
    assert_eq!(keys(&own.attributes), ["k", "other"]);
    assert_eq!(int(&own.attributes[0]), 2);
    let shared = exported(&memory, "shared");
    assert_eq!(keys(&shared.attributes), ["s", "t"]);
    assert_eq!(int(&shared.attributes[0]), 2);
}

/// The ids a process draws: a trace and span id from `TraceId::random` /
/// `SpanId::random`, and a new root span's two ids.
#[cfg(unix)]
fn draw_ids(tracer: &otlp_exporter::Tracer) -> [u8; 48] {
    let mut out = [0u8; 48];
    out[..16].copy_from_slice(&otlp_exporter::TraceId::random().0);
    out[16..24].copy_from_slice(&otlp_exporter::SpanId::random().0);
    let span = tracer.start("request");
    out[24..40].copy_from_slice(&span.context().trace_id.0);
    out[40..].copy_from_slice(&span.context().span_id.0);
    // Not ended: in a forked child the pipeline's worker thread is gone.
    std::mem::forget(span);
    out
}

/// A reviewer's case (a pre-fork server): the generator's per-thread state
/// was copied by `fork`, so every forked worker drew its parent's next ids
/// (the same trace and span ids in every worker). A forked child now
/// reseeds: two children and their parent draw different ids. Runs in its
/// own process (the watchdog's child, one test thread) so that `fork` copies
/// no other test's threads.
#[cfg(unix)]
#[test]
fn forked_children_and_their_parent_draw_different_ids() {
    test_watchdog::isolate(Duration::from_secs(60), || {
        let (pipeline, _memory) = pipeline();
        let tracer = pipeline
            .tracer("app", "1")
            .with_sampler(otlp_exporter::Sampler::AlwaysOn);
        // The parent has drawn ids before it forks: its generator is seeded.
        tracer.start("startup").end();
        let _ = otlp_exporter::TraceId::random();
        let mut drawn = Vec::new();
        for _ in 0..2 {
            let mut fds = [0i32; 2];
            // SAFETY: a valid two-element array for the pipe's ends.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: the child only draws ids (no lock another thread could
            // hold), writes them to the pipe and `_exit`s.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let ids = draw_ids(&tracer);
                // SAFETY: writes 48 bytes from a live buffer, then exits
                // without running the test harness's exit path.
                unsafe {
                    let n = libc::write(fds[1], ids.as_ptr().cast(), ids.len());
                    libc::_exit(if n == 48 { 0 } else { 1 });
                }
            }
            // SAFETY: closes this process's copy of the write end.
            unsafe { libc::close(fds[1]) };
            let mut ids = [0u8; 48];
            let mut got = 0;
            while got < ids.len() {
                // SAFETY: reads into the unfilled rest of a live buffer.
                let n =
                    unsafe { libc::read(fds[0], ids[got..].as_mut_ptr().cast(), ids.len() - got) };
                assert!(n > 0, "the child wrote {got} of 48 bytes");
                got += n as usize;
            }
            let mut status = 0;
            // SAFETY: waits for the child this process forked.
            unsafe {
                libc::waitpid(pid, &mut status, 0);
                libc::close(fds[0]);
            }
            assert_eq!(status, 0, "the child's wait status");
            drawn.push(ids);
        }
        drawn.push(draw_ids(&tracer));
        pipeline.shutdown(WAIT);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut ids = std::collections::HashSet::new();
        for (who, d) in ["child 0", "child 1", "parent"].iter().zip(&drawn) {
            for (what, range) in [
                ("random trace id", 0..16),
                ("random span id", 16..24),
                ("root's trace id", 24..40),
                ("root's span id", 40..48),
            ] {
                let id = hex(&d[range]);
                assert!(
                    ids.insert(id.clone()),
                    "{who}'s {what} {id} was drawn twice"
                );
            }
        }
    });
}

/// The exported byte array of `kv` (its value must be one).
fn bytes(kv: &opentelemetry_proto::tonic::common::v1::KeyValue) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(V::BytesValue(b)) => b.clone(),
        other => panic!("not a byte array: {other:?}"),
    }
}

/// A reviewer's case: the value length limit cut strings and arrays of
/// strings but not byte arrays, so a byte array as large as a request made
/// its span too large to send, and the span was lost. Byte arrays are now
/// cut to the limit in bytes (the spec's attribute limits), on the span's
/// own attributes (`set_attribute` and a `SpanData` recorded directly), in
/// arrays, and on events; a string is cut to the limit in characters.
#[test]
fn the_value_length_limit_cuts_byte_arrays_in_bytes() {
    let limits = SpanLimits {
        attribute_value_length: Some(4),
        ..SpanLimits::default()
    };
    let (pipeline, memory) = pipeline_with(limits, Encoding::Protobuf);
    let tracer = pipeline
        .tracer("t", "1")
        .with_sampler(otlp_exporter::Sampler::AlwaysOn);
    let mut span = tracer.start("owned");
    span.set_attribute("b", vec![7u8; 100]);
    span.set_attribute("s", "ééééééé");
    span.set_attribute(
        "a",
        otlp_exporter::Value::Array(vec![otlp_exporter::Value::Bytes(vec![1; 9])]),
    );
    span.add_event("e", vec![KeyValue::new("eb", vec![2u8; 9])]);
    span.end();
    let mut direct = SpanData::new("direct");
    direct.attributes.push(KeyValue::new("b", vec![3u8; 9]));
    direct.shared_attributes = Some(SharedAttributes::leak(vec![KeyValue::new(
        "sb",
        vec![5u8; 9],
    )]));
    pipeline.record(direct);
    // As large as a request: lost as too large before.
    let mut huge = SpanData::new("huge");
    huge.attributes.push(KeyValue::new(
        "b",
        vec![0u8; otlp_exporter::MAX_REQUEST_BYTES + 1],
    ));
    pipeline.record(huge);
    assert!(pipeline.shutdown(WAIT).completed);
    let owned = exported(&memory, "owned");
    assert_eq!(keys(&owned.attributes), ["b", "s", "a"]);
    assert_eq!(bytes(&owned.attributes[0]), [7; 4]);
    {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        let s = owned.attributes[1].value.as_ref().unwrap().value.as_ref();
        assert_eq!(s, Some(&V::StringValue("éééé".into())));
        let Some(V::ArrayValue(a)) = owned.attributes[2].value.as_ref().unwrap().value.as_ref()
        else {
            panic!("not an array")
        };
        assert_eq!(a.values[0].value, Some(V::BytesValue(vec![1; 4])));
    }
    assert_eq!(bytes(&owned.events[0].attributes[0]), [2; 4]);
    let direct = exported(&memory, "direct");
    assert_eq!(keys(&direct.attributes), ["b", "sb"]);
    assert_eq!(bytes(&direct.attributes[0]), [3; 4]);
    assert_eq!(bytes(&direct.attributes[1]), [5; 4]);
    assert_eq!(bytes(&exported(&memory, "huge").attributes[0]), [0; 4]);
}

/// The requests `memory` received, decoded.
fn requests(
    memory: &InMemory,
) -> Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest> {
    memory
        .requests()
        .iter()
        .map(|r| match r.encoding {
            Encoding::Protobuf => prost::Message::decode(&r.body[..]).expect("protobuf"),
            Encoding::Json => serde_json::from_slice(&r.body).expect("OTLP JSON"),
        })
        .collect()
}

/// A reviewer's case: a resource's and a scope's attribute keys were
/// exported as given, a key twice included (through `Encoder::new`,
/// `Encoder::add_scope` and `Pipeline::scope`). Each key now comes out
/// once, at its first place, with its last value; an empty key is left out
/// and counted; and two scopes that differ only in a repeated key's earlier
/// value are one scope.
#[test]
fn resource_and_scope_attribute_keys_are_unique() {
    use otlp_exporter::{Encoder, InstrumentationScope, Resource};
    let mut resource = Resource::new("svc");
    resource.attributes.push(KeyValue::new("host", "a"));
    resource
        .attributes
        .push(KeyValue::new("service.name", "other"));
    let mut scope = InstrumentationScope::new("lib", "1");
    scope.attributes = vec![
        KeyValue::new("a", 1),
        KeyValue::new("b", 5),
        KeyValue::new("a", 2),
        KeyValue::new("", 3),
    ];
    let check =
        |req: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
         what: &str| {
            let rs = &req.resource_spans[0];
            let r = rs.resource.as_ref().expect("a resource");
            // A pipeline adds the SDK's attributes (the resource spec);
            // an encoder exports its resource as given.
            let sdk: &[&str] = if what.starts_with("Pipeline") {
                &[
                    "telemetry.sdk.language",
                    "telemetry.sdk.name",
                    "telemetry.sdk.version",
                ]
            } else {
                &[]
            };
            let mut want = vec!["service.name", "host"];
            want.extend(sdk);
            assert_eq!(keys(&r.attributes), want, "{what}");
            assert_eq!(
                r.attributes[0].value.as_ref().unwrap().value,
                Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        "other".into()
                    )
                ),
                "{what}"
            );
            let lib: Vec<_> = rs
                .scope_spans
                .iter()
                .filter_map(|ss| ss.scope.as_ref())
                .filter(|s| s.name == "lib")
                .collect();
            assert_eq!(lib.len(), 1, "{what}: one scope named lib");
            assert_eq!(keys(&lib[0].attributes), ["a", "b"], "{what}");
            assert_eq!(int(&lib[0].attributes[0]), 2, "{what}");
            assert_eq!(lib[0].dropped_attributes_count, 1, "{what}");
        };
    // The encoder on its own.
    let mut encoder = Encoder::new(resource.clone());
    let id = encoder.add_scope(scope.clone());
    let mut span = SpanData::new("s");
    span.scope = id;
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let out = encoder.encode(std::slice::from_ref(&span), encoding);
        let req = match encoding {
            Encoding::Protobuf => prost::Message::decode(&out.requests[0].body[..]).unwrap(),
            Encoding::Json => serde_json::from_slice(&out.requests[0].body).unwrap(),
        };
        check(&req, &format!("Encoder, {encoding:?}"));
    }
    // A pipeline: its resource and `Pipeline::scope`.
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let memory = InMemory::new().with_encoding(encoding);
        let pipeline = Pipeline::builder()
            .transport(memory.clone())
            .resource(resource.clone())
            .build()
            .expect("valid settings");
        let id = pipeline.scope(scope.clone());
        let mut same = scope.clone();
        same.attributes[0] = KeyValue::new("a", 7); // only the replaced value differs
        assert_eq!(pipeline.scope(same), id);
        let mut a = SpanData::new("a");
        a.scope = id;
        pipeline.record(a);
        assert!(pipeline.shutdown(WAIT).completed);
        let reqs = requests(&memory);
        assert_eq!(reqs.len(), 1);
        check(&reqs[0], &format!("Pipeline, {encoding:?}"));
    }
}

/// A reviewer's case: a link to an invalid context with no attributes and
/// no trace state was recorded and exported. The trace API records such a
/// link only if it carries attributes or a trace state: an empty one is now
/// ignored (by `Span::add_link` and `SpanBuilder::link`), and the others
/// are kept.
#[test]
fn an_empty_link_to_an_invalid_context_is_not_recorded() {
    use otlp_exporter::SpanContext;
    let (pipeline, memory) = pipeline();
    let tracer = pipeline
        .tracer("t", "1")
        .with_sampler(otlp_exporter::Sampler::AlwaysOn);
    let empty = || Link {
        context: SpanContext::INVALID,
        attributes: vec![],
        dropped_attributes_count: 0,
    };
    let with_attribute = Link {
        attributes: vec![KeyValue::new("why", 1)],
        ..empty()
    };
    let mut with_state = empty();
    with_state.context.trace_state = "vendor=x".into();
    let mut span = tracer
        .build("built")
        .link(SpanContext::INVALID, vec![])
        .link(SpanContext::INVALID, vec![KeyValue::new("why", 2)])
        .start();
    span.add_link(empty());
    span.add_link(with_attribute);
    span.add_link(with_state);
    span.end();
    assert!(pipeline.shutdown(WAIT).completed);
    let built = exported(&memory, "built");
    let kept: Vec<(i64, &str)> = built
        .links
        .iter()
        .map(|l| (l.attributes.first().map_or(0, int), l.trace_state.as_str()))
        .collect();
    assert_eq!(kept, [(2, ""), (1, ""), (0, "vendor=x")]);
    assert_eq!(built.dropped_links_count, 0);
}
