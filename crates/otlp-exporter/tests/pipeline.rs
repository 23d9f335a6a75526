//! The pipeline end to end: recorded spans arrive field for field, every
//! span is accounted for under overload with every shedding policy and
//! every kind of bad transport, and flush and shutdown keep their deadlines.

mod common;

use std::collections::HashMap;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, received, rich_span, span as proto_span};
use otlp_exporter::{
    Behavior, DropReason, Encoding, InMemory, Pipeline, Priority, Recorded, Resource, Shedding,
    SpanData, SpanId, TraceFlags, TraceId,
};

fn builder(memory: &InMemory) -> otlp_exporter::PipelineBuilder {
    Pipeline::builder()
        .transport(memory.clone())
        .resource(Resource::new("pipeline-test"))
}

#[test]
fn recorded_spans_arrive_field_for_field() {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let memory = InMemory::new().with_encoding(encoding);
        let pipeline = builder(&memory).max_export_batch_size(7).build().unwrap();
        let spans: Vec<SpanData> = (0..50).map(rich_span).collect();
        for s in &spans {
            assert_eq!(pipeline.record(s.clone()), Recorded::Queued);
        }
        let report = pipeline.shutdown(Duration::from_secs(10));
        assert!(report.completed, "{encoding:?}");
        assert_eq!(report.stats.exported, 50);
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
        let got = received(&memory);
        assert_eq!(got.len(), 50, "{encoding:?}");
        for (want, got) in spans.iter().zip(&got) {
            assert_eq!(*got, proto_span(want), "{encoding:?}: span {}", want.name);
        }
        assert!(
            memory.requests().iter().all(|r| r.spans <= 7),
            "batch size respected"
        );
        assert!(memory.is_shut_down(), "transport shut down");
    }
}

/// A span's shared attributes arrive after its own, in both encodings and
/// through both record calls, and count with them against the limits: past
/// the count the last ones are dropped and counted, past the value length
/// their strings are cut, like the span's own.
#[test]
fn shared_attributes_arrive_after_the_spans_own_and_obey_the_limits() {
    use otlp_exporter::{KeyValue, SharedAttributes, SpanLimits};
    let location = SharedAttributes::leak(vec![
        KeyValue::new("code.file.path", "src/server/handler.rs"),
        KeyValue::new("code.line.number", 42),
    ]);
    let make = || {
        let mut s = SpanData::new("handle");
        s.attributes.push(KeyValue::new("user.id", 7));
        s.attributes.push(KeyValue::new("route", "/api/items"));
        s.shared_attributes = Some(location);
        s
    };
    let cases = [
        // (limits, the attributes that arrive, dropped)
        (
            SpanLimits::default(),
            vec![
                KeyValue::new("user.id", 7),
                KeyValue::new("route", "/api/items"),
                KeyValue::new("code.file.path", "src/server/handler.rs"),
                KeyValue::new("code.line.number", 42),
            ],
            0,
        ),
        (
            SpanLimits {
                attribute_count: 3,
                ..SpanLimits::default()
            },
            vec![
                KeyValue::new("user.id", 7),
                KeyValue::new("route", "/api/items"),
                KeyValue::new("code.file.path", "src/server/handler.rs"),
            ],
            1,
        ),
        (
            SpanLimits {
                attribute_value_length: Some(6),
                ..SpanLimits::default()
            },
            vec![
                KeyValue::new("user.id", 7),
                KeyValue::new("route", "/api/i"),
                KeyValue::new("code.file.path", "src/se"),
                KeyValue::new("code.line.number", 42),
            ],
            0,
        ),
    ];
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        for (limits, want, dropped) in &cases {
            let memory = InMemory::new().with_encoding(encoding);
            let pipeline = builder(&memory).limits(*limits).build().unwrap();
            assert_eq!(pipeline.record(make()), Recorded::Queued);
            let mut kept = make();
            assert_eq!(pipeline.record_in_place(&mut kept), Recorded::Queued);
            assert!(pipeline.shutdown(Duration::from_secs(10)).completed);
            let got = received(&memory);
            assert_eq!(got.len(), 2);
            for span in &got {
                let mut expected = make();
                expected.shared_attributes = None;
                expected.attributes = want.clone();
                let want_span = proto_span(&expected);
                assert_eq!(
                    span.attributes, want_span.attributes,
                    "{encoding:?} {limits:?}"
                );
                assert_eq!(
                    span.dropped_attributes_count, *dropped,
                    "{encoding:?} {limits:?}"
                );
            }
        }
    }
}

/// Spans of every size the record path treats differently arrive field for
/// field, in both encodings and whatever the shedding policy's record path
/// (in place, or encoded then pushed): inline in the 512-byte slot (up to
/// 488 bytes), encoded in the lane's scratch with the fixed-buffer encoder
/// and boxed (up to 16 KiB - 1 of body), and past that with the `Vec`
/// encoder; the sizes step across each boundary, and the lane's scratch
/// grows and is reused between them.
#[test]
fn spans_of_every_size_arrive_field_for_field() {
    let sizes: Vec<usize> = (0..40)
        .map(|i| i * 13)
        .chain([470, 480, 488, 500, 1000, 1024, 1100, 5000])
        .chain((16_300..16_420).step_by(7))
        .chain([20_000, 3, 40_000, 400])
        .collect();
    let spans: Vec<SpanData> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let mut s = rich_span(i as u64);
            s.events.clear();
            s.links.clear();
            s.attributes.truncate(4);
            s.attributes
                .push(otlp_exporter::KeyValue::new("pad", "p".repeat(n)));
            s
        })
        .collect();
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        for shedding in [Shedding::DropNewest, Shedding::DropOldest] {
            let memory = InMemory::new().with_encoding(encoding);
            let pipeline = builder(&memory)
                .shedding(shedding)
                .max_queue_size(4096)
                .build()
                .unwrap();
            for s in &spans {
                assert_eq!(pipeline.record(s.clone()), Recorded::Queued);
            }
            let report = pipeline.shutdown(Duration::from_secs(10));
            assert!(report.completed, "{encoding:?} {shedding:?}");
            assert!(report.stats.is_balanced(), "{:?}", report.stats);
            assert_eq!(report.stats.exported, spans.len() as u64);
            let got = received(&memory);
            assert_eq!(got.len(), spans.len(), "{encoding:?} {shedding:?}");
            for ((want, got), n) in spans.iter().zip(&got).zip(&sizes) {
                assert_eq!(
                    *got,
                    proto_span(want),
                    "{encoding:?} {shedding:?}: span with {n} bytes of padding"
                );
            }
        }
    }
}

/// 8 threads record far more than the queue holds, into a transport that is
/// slow, failing or hanging, under every shedding policy. Every span must
/// be accounted for at a quiet snapshot and after shutdown, and what the
/// transport holds must be what the pipeline says it exported.
#[test]
fn accounting_holds_under_overload_for_every_policy_and_transport() {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 3_000;
    let policies = [
        Shedding::DropNewest,
        Shedding::DropOldest,
        Shedding::Block {
            timeout: Duration::from_micros(200),
        },
        Shedding::Priority { high_water: 16 },
    ];
    type MakeTransport = fn() -> InMemory;
    let transports: [(&str, MakeTransport); 4] = [
        ("fast", InMemory::new),
        ("slow", || {
            InMemory::new().with_latency(Duration::from_millis(2))
        }),
        ("failing", || {
            InMemory::new().with_behavior(Behavior::FailEvery(3))
        }),
        ("hanging", || InMemory::new().with_behavior(Behavior::Hang)),
    ];
    for policy in policies {
        for (kind, make) in transports {
            let memory = make();
            let pipeline = builder(&memory)
                .max_queue_size(64)
                .max_export_batch_size(32)
                .scheduled_delay(Duration::from_millis(5))
                .export_timeout(Duration::from_millis(50))
                .shedding(policy)
                .build()
                .unwrap();
            let start = Barrier::new(THREADS);
            thread::scope(|s| {
                for t in 0..THREADS {
                    let (pipeline, start) = (&pipeline, &start);
                    s.spawn(move || {
                        start.wait();
                        for i in 0..PER_THREAD {
                            let mut span = SpanData::new("load");
                            span.priority = if i % 2 == 0 {
                                Priority::Low
                            } else {
                                Priority::Normal
                            };
                            if i % 10 == 0 {
                                span.context.trace_flags = TraceFlags::NOT_SAMPLED;
                            }
                            span.context.span_id = SpanId(((t as u64) << 32 | i).to_be_bytes());
                            pipeline.record(span);
                        }
                    });
                }
            });
            let what = format!("{policy:?} / {kind}");
            let total = THREADS as u64 * PER_THREAD;
            // Quiet (no thread records); the worker may still be exporting,
            // so look once it has nothing in flight or is stuck in a hang.
            let stats = pipeline.stats();
            assert_eq!(stats.accepted, total, "{what}");
            assert_eq!(stats.dropped.not_sampled, total / 10, "{what}");
            if kind != "hanging" {
                let report = pipeline.force_flush(Duration::from_secs(10));
                assert!(report.completed, "{what}: flush");
                let s = pipeline.stats();
                assert!(s.is_balanced(), "{what}: after flush {s:?}");
                assert_eq!((s.queued, s.in_flight), (0, 0), "{what}: flushed");
            }
            if let Shedding::Priority { .. } = policy {
                let s = pipeline.stats();
                assert_eq!(s.dropped.evicted, 0, "{what}");
            }
            let report = pipeline.shutdown(Duration::from_millis(500));
            let s = report.stats;
            assert!(s.is_balanced(), "{what}: after shutdown {s:?}");
            assert_eq!((s.queued, s.in_flight), (0, 0), "{what}: after shutdown");
            assert_eq!(s.accepted, total, "{what}");
            assert_eq!(
                s.exported,
                memory.span_count(),
                "{what}: transport holds what was exported"
            );
            match kind {
                "hanging" => {
                    assert!(!report.completed, "{what}");
                    assert_eq!(s.exported, 0, "{what}");
                    assert!(s.dropped.timed_out_at_shutdown > 0, "{what}");
                    memory.release();
                }
                "failing" => {
                    assert!(report.completed, "{what}");
                    assert!(s.dropped.export_failed > 0, "{what}: failures counted");
                    assert!(s.exported > 0, "{what}");
                }
                _ => {
                    assert!(report.completed, "{what}");
                    assert!(s.exported > 0, "{what}");
                    assert_eq!(s.dropped.export_failed, 0, "{what}");
                }
            }
            match policy {
                Shedding::DropOldest => {
                    assert_eq!(s.dropped.queue_full, 0, "{what}: drop-oldest never refuses")
                }
                Shedding::DropNewest => assert_eq!(s.dropped.evicted, 0, "{what}"),
                _ => {}
            }
            // Stats never change after shutdown, and later calls return the
            // same accounting at once.
            let again = pipeline.shutdown(Duration::from_secs(5));
            assert_eq!(again.stats, s, "{what}");
        }
    }
}

#[test]
fn flush_and_shutdown_keep_their_deadlines_when_the_transport_hangs() {
    let memory = InMemory::new().with_behavior(Behavior::Hang);
    let pipeline = builder(&memory).max_export_batch_size(10).build().unwrap();
    for _ in 0..100 {
        pipeline.record(SpanData::new("stuck"));
    }
    let t0 = Instant::now();
    let flush = pipeline.force_flush(Duration::from_millis(200));
    let flush_took = t0.elapsed();
    assert!(!flush.completed);
    assert_eq!(
        flush.pending, 100,
        "nothing is lost by a flush that times out"
    );
    assert!(flush_took >= Duration::from_millis(200));
    assert!(
        flush_took < Duration::from_secs(3),
        "flush overran its deadline: {flush_took:?}"
    );

    let t0 = Instant::now();
    let report = pipeline.shutdown(Duration::from_millis(300));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "shutdown overran its deadline: {took:?}"
    );
    assert!(!report.completed);
    assert_eq!(report.stats.dropped.timed_out_at_shutdown, 100);
    assert_eq!(report.dropped.timed_out_at_shutdown, 100);
    assert!(report.stats.is_balanced());
    // A span recorded now is refused and counted.
    assert_eq!(
        pipeline.record(SpanData::new("late")),
        Recorded::Dropped(DropReason::Shutdown)
    );
    let s = pipeline.stats();
    assert_eq!(s.dropped.after_shutdown, 1);
    assert!(s.is_balanced());
    memory.release();
}

#[test]
fn a_collector_that_comes_back_gets_the_queued_spans() {
    let memory = InMemory::new().with_behavior(Behavior::Fail);
    let pipeline = builder(&memory)
        .max_export_batch_size(5)
        .scheduled_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    for _ in 0..10 {
        pipeline.record(SpanData::new("lost"));
    }
    pipeline.force_flush(Duration::from_secs(5));
    assert_eq!(pipeline.stats().dropped.export_failed, 10);
    memory.set_behavior(Behavior::Accept);
    for _ in 0..10 {
        pipeline.record(SpanData::new("kept"));
    }
    let report = pipeline.shutdown(Duration::from_secs(5));
    assert_eq!(report.stats.exported, 10);
    assert_eq!(memory.span_count(), 10);
    assert!(report.stats.is_balanced());
}

#[test]
fn partial_success_counts_rejected_spans() {
    let memory = InMemory::new().with_behavior(Behavior::RejectSpans(2));
    let pipeline = builder(&memory).max_export_batch_size(5).build().unwrap();
    for _ in 0..10 {
        pipeline.record(SpanData::new("partly"));
    }
    let s = pipeline.shutdown(Duration::from_secs(5)).stats;
    assert_eq!(s.dropped.rejected, 4, "2 per request, 2 requests");
    assert_eq!(s.exported, 6);
    assert!(s.is_balanced());
}

#[test]
fn exports_when_the_batch_is_full_without_a_flush() {
    let memory = InMemory::new();
    let pipeline = builder(&memory)
        .max_export_batch_size(10)
        .scheduled_delay(Duration::from_secs(3600))
        .build()
        .unwrap();
    for _ in 0..10 {
        pipeline.record(SpanData::new("batch"));
    }
    eventually("a full batch is exported", || memory.span_count() == 10);
}

#[test]
fn exports_when_the_scheduled_delay_elapses() {
    let memory = InMemory::new();
    let pipeline = builder(&memory)
        .max_export_batch_size(512)
        .scheduled_delay(Duration::from_millis(20))
        .build()
        .unwrap();
    pipeline.record(SpanData::new("lonely"));
    eventually("a partial batch is exported after the delay", || {
        memory.span_count() == 1
    });
}

#[test]
fn unsampled_spans_are_counted_and_never_exported() {
    let memory = InMemory::new();
    let pipeline = builder(&memory).build().unwrap();
    let mut s = SpanData::new("unsampled");
    s.context.trace_flags = TraceFlags::NOT_SAMPLED;
    assert_eq!(
        pipeline.record(s),
        Recorded::Dropped(DropReason::NotSampled)
    );
    let st = pipeline.shutdown(Duration::from_secs(5)).stats;
    assert_eq!(
        (st.accepted, st.exported, st.dropped.not_sampled),
        (1, 0, 1)
    );
    assert_eq!(memory.calls(), 0, "no empty request is sent");
}

#[test]
fn priority_shedding_sheds_low_priority_first() {
    let memory = InMemory::new().with_behavior(Behavior::Hang);
    let pipeline = builder(&memory)
        .max_queue_size(8)
        .max_export_batch_size(8)
        .scheduled_delay(Duration::from_secs(3600))
        .shedding(Shedding::Priority { high_water: 4 })
        .build()
        .unwrap();
    // The worker may take a first batch into its hands; count from the lane.
    let mut outcomes = HashMap::new();
    for i in 0..40 {
        let mut s = SpanData::new("p");
        s.priority = if i % 2 == 0 {
            Priority::Low
        } else {
            Priority::Normal
        };
        *outcomes
            .entry((s.priority, pipeline.record(s)))
            .or_insert(0) += 1;
    }
    let low_dropped = outcomes
        .get(&(Priority::Low, Recorded::Dropped(DropReason::LowPriority)))
        .copied()
        .unwrap_or(0);
    assert!(low_dropped > 0, "{outcomes:?}");
    assert_eq!(
        outcomes.get(&(Priority::Normal, Recorded::Dropped(DropReason::LowPriority))),
        None,
        "normal spans are never shed as low priority"
    );
    let s = pipeline.stats();
    assert_eq!(s.dropped.low_priority, low_dropped);
    assert!(s.is_balanced(), "{s:?}");
    pipeline.shutdown(Duration::from_millis(100));
    memory.release();
}

#[test]
fn priority_high_water_counts_every_threads_spans() {
    // The high-water mark is over the whole queue: four threads that each
    // hold fewer spans than the mark, together above it, make a fifth
    // thread's first low-priority span shed.
    let memory = InMemory::new().with_behavior(Behavior::Hang);
    let pipeline = builder(&memory)
        .max_queue_size(1024)
        .max_export_batch_size(8)
        .scheduled_delay(Duration::from_millis(1))
        .shedding(Shedding::Priority { high_water: 96 })
        .build()
        .unwrap();
    for _ in 0..8 {
        assert_eq!(pipeline.record(SpanData::new("first")), Recorded::Queued);
    }
    // The worker now hangs in the export of those eight.
    while memory.calls() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..40 {
                    assert_eq!(pipeline.record(SpanData::new("n")), Recorded::Queued);
                }
            });
        }
    });
    let (low, normal) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut low = SpanData::new("low");
            low.priority = Priority::Low;
            (
                pipeline.record(low),
                pipeline.record(SpanData::new("normal")),
            )
        })
        .join()
        .unwrap()
    });
    assert_eq!(low, Recorded::Dropped(DropReason::LowPriority));
    assert_eq!(normal, Recorded::Queued);
    let s = pipeline.stats();
    assert_eq!(s.dropped.low_priority, 1);
    assert!(s.is_balanced(), "{s:?}");
    pipeline.shutdown(Duration::from_millis(100));
    memory.release();
}

#[test]
fn dropping_the_last_handle_shuts_down() {
    let memory = InMemory::new();
    {
        let pipeline = builder(&memory).build().unwrap();
        let clone = pipeline.clone();
        clone.record(SpanData::new("on drop"));
        drop(pipeline);
        assert!(!memory.is_shut_down(), "a clone is still alive");
    }
    assert!(memory.is_shut_down());
    assert_eq!(memory.span_count(), 1, "queued spans are exported on drop");
}

#[test]
fn spans_from_a_tracer_keep_parentage_and_scope() {
    let memory = InMemory::new();
    let pipeline = builder(&memory).build().unwrap();
    let tracer = pipeline.tracer("scope-a", "1.2.3");
    let (parent_ctx, child_ctx);
    {
        let parent = tracer.start("parent");
        parent_ctx = parent.context().clone();
        let child = tracer.start_child("child", &parent_ctx);
        child_ctx = child.context().clone();
        child.end();
        parent.end();
    }
    pipeline.shutdown(Duration::from_secs(5));
    let requests = memory.requests();
    let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
        prost::Message::decode(&requests[0].body[..]).unwrap();
    let ss = &req.resource_spans[0].scope_spans[0];
    let scope = ss.scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("scope-a", "1.2.3")
    );
    let by_name: HashMap<_, _> = ss.spans.iter().map(|s| (s.name.as_str(), s)).collect();
    assert_eq!(by_name["child"].parent_span_id, parent_ctx.span_id.0);
    assert_eq!(by_name["child"].trace_id, parent_ctx.trace_id.0);
    assert_eq!(by_name["child"].span_id, child_ctx.span_id.0);
    assert!(by_name["parent"].parent_span_id.is_empty());
    assert!(by_name["parent"].end_time_unix_nano >= by_name["child"].end_time_unix_nano);
    assert_ne!(parent_ctx.trace_id, TraceId::INVALID);
}

#[test]
fn random_ids_are_valid_and_distinct_across_threads() {
    let ids: Vec<(TraceId, SpanId)> = thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..1000)
                        .map(|_| (TraceId::random(), SpanId::random()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|(t, s)| t.is_valid() && s.is_valid()));
    let traces: std::collections::HashSet<_> = ids.iter().map(|(t, _)| *t).collect();
    let spans: std::collections::HashSet<_> = ids.iter().map(|(_, s)| *s).collect();
    assert_eq!(traces.len(), ids.len());
    assert_eq!(spans.len(), ids.len());
}

#[test]
fn concurrent_exports_overlap_and_account_for_everything() {
    for (n, want_overlap) in [(1usize, false), (4, true)] {
        let memory = InMemory::new().with_latency(Duration::from_millis(20));
        let pipeline = builder(&memory)
            .max_export_batch_size(10)
            .max_concurrent_exports(n)
            .build()
            .unwrap();
        for i in 0..200 {
            pipeline.record(SpanData::new(format!("c{i}")));
        }
        let report = pipeline.shutdown(Duration::from_secs(30));
        assert!(report.completed, "{n}");
        assert_eq!(report.stats.exported, 200, "{n}");
        assert!(report.stats.is_balanced());
        let mut names: Vec<String> = received(&memory).into_iter().map(|s| s.name).collect();
        names.sort();
        let mut want: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
        want.sort();
        assert_eq!(names, want, "{n}: every span once");
        if want_overlap {
            assert!(memory.max_concurrent() > 1, "exports never overlapped");
            assert!(memory.max_concurrent() <= n);
        } else {
            assert_eq!(
                memory.max_concurrent(),
                1,
                "export must never be called concurrently by default"
            );
        }
    }
}

#[test]
fn concurrent_exports_keep_deadlines_when_the_transport_hangs() {
    let memory = InMemory::new().with_behavior(Behavior::Hang);
    let pipeline = builder(&memory)
        .max_export_batch_size(5)
        .max_concurrent_exports(3)
        .build()
        .unwrap();
    for _ in 0..50 {
        pipeline.record(SpanData::new("stuck"));
    }
    let t0 = Instant::now();
    let report = pipeline.shutdown(Duration::from_millis(300));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "overran: {:?}",
        t0.elapsed()
    );
    assert!(!report.completed);
    assert_eq!(report.stats.dropped.timed_out_at_shutdown, 50);
    assert!(report.stats.is_balanced());
    memory.release();
}

#[test]
fn spans_recorded_from_thread_local_destructors_are_kept() {
    struct RecordOnDrop(Pipeline);
    impl Drop for RecordOnDrop {
        fn drop(&mut self) {
            self.0.record(SpanData::new("from a destructor"));
        }
    }
    thread_local! {
        static GUARD: std::cell::RefCell<Option<RecordOnDrop>> = const { std::cell::RefCell::new(None) };
    }
    let memory = InMemory::new();
    let pipeline = builder(&memory).build().unwrap();
    for _ in 0..3 {
        let p = pipeline.clone();
        thread::spawn(move || {
            // Record once so this thread's lane exists, then leave a
            // destructor that records while thread-locals are torn down.
            p.record(SpanData::new("normal"));
            GUARD.with(|g| *g.borrow_mut() = Some(RecordOnDrop(p)));
        })
        .join()
        .unwrap();
    }
    let s = pipeline.shutdown(Duration::from_secs(5)).stats;
    assert_eq!(s.accepted, 6);
    assert_eq!(s.exported, 6, "{s:?}");
    assert!(s.is_balanced());
    let names = received(&memory)
        .into_iter()
        .filter(|s| s.name == "from a destructor")
        .count();
    assert_eq!(names, 3);
}

/// A shutdown racing records on four threads, 100 times: a record either
/// lands before the worker's last drain (and is exported, or dropped as
/// queue full) or sees the pipeline closed (and is counted
/// `after_shutdown`); none is pushed after the last drain and left behind. This is the fence pair between a
/// record's `accepted` counter and the pipeline's state (`Shared::state`:
/// a compiler fence on the record's side, `membarrier` on the worker's).
#[test]
fn records_racing_a_shutdown_are_exported_or_counted_after_shutdown() {
    const THREADS: usize = 4;
    for round in 0..100 {
        let memory = InMemory::new();
        let pipeline = builder(&memory).max_queue_size(1 << 16).build().unwrap();
        let tracer = pipeline.tracer("race", "1");
        let start = Barrier::new(THREADS + 1);
        let report = thread::scope(|s| {
            for _ in 0..THREADS {
                let (tracer, start) = (&tracer, &start);
                s.spawn(move || {
                    start.wait();
                    // Until the records see the shutdown (bounded, in case
                    // they never do: the assertions below then fail).
                    for _ in 0..1_000_000 {
                        let mut span = tracer.start("work");
                        span.set_attribute("round", round as i64);
                        if span.end() == Recorded::Dropped(DropReason::Shutdown) {
                            break;
                        }
                    }
                });
            }
            start.wait();
            // From at once to a few hundred records in, over the rounds.
            for _ in 0..(round % 10) * 5_000 {
                std::hint::spin_loop();
            }
            pipeline.shutdown(Duration::from_secs(10))
        });
        assert!(report.completed, "round {round}");
        let stats = pipeline.stats();
        assert_eq!(
            stats.queued, 0,
            "round {round}: nothing left behind: {stats:?}"
        );
        assert_eq!(stats.in_flight, 0, "round {round}: {stats:?}");
        assert!(stats.is_balanced(), "round {round}: {stats:?}");
        // (Queue-full drops too, if a loaded machine kept this thread off
        // the core while the recording threads filled the queue.)
        assert_eq!(
            stats.accepted,
            stats.exported + stats.dropped.after_shutdown + stats.dropped.queue_full,
            "round {round}: exported or after shutdown, nothing else: {stats:?}"
        );
        assert!(
            stats.dropped.after_shutdown >= THREADS as u64,
            "round {round}"
        );
        assert_eq!(memory.span_count(), stats.exported, "round {round}");
    }
}

#[test]
fn a_span_carries_nothing_from_the_span_whose_storage_it_reuses() {
    use otlp_exporter::{KeyValue, SpanKind, Status};
    let memory = InMemory::new();
    let pipeline = builder(&memory).build().unwrap();
    let tracer = pipeline.tracer("reuse", "1");
    let remote = otlp_exporter::SpanContext::from_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .unwrap();
    // Everything a span can hold, set on the first span; several rounds
    // so that every recycled box of this thread has held such a span.
    for round in 0..6 {
        let mut full = tracer
            .build(format!("full {round}"))
            .kind(SpanKind::Server)
            .parent(&remote)
            .priority(Priority::Low)
            .attribute(String::from("owned key"), String::from("owned value"))
            .link(remote.clone(), vec![KeyValue::new("l", 1)])
            .start();
        full.add_event("event", vec![KeyValue::new("e", true)])
            .set_status(Status::error("failed"))
            .update_name(String::from("renamed"));
        full.end();
        let plain = tracer.start("plain");
        let plain_ctx = plain.context().clone();
        assert!(!plain_ctx.is_remote);
        assert_eq!(plain_ctx.trace_state.as_ref(), "");
        plain.end();
    }
    // A span not sampled, then a sampled one: the sampled one has its own
    // start time.
    tracer
        .clone()
        .with_sampler(otlp_exporter::Sampler::AlwaysOff)
        .start("unsampled")
        .end();
    tracer.start("after unsampled").end();
    pipeline.shutdown(Duration::from_secs(5));
    let spans: Vec<_> = memory
        .requests()
        .iter()
        .flat_map(|r| {
            let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
                prost::Message::decode(&r.body[..]).unwrap();
            req.resource_spans
                .into_iter()
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(spans.len(), 13);
    let full: Vec<_> = spans.iter().filter(|s| s.name == "renamed").collect();
    assert_eq!(full.len(), 6);
    assert!(full.iter().all(|s| s.attributes.len() == 1
        && s.events.len() == 1
        && s.links.len() == 1
        && s.status.as_ref().is_some_and(|st| st.code == 2)
        && s.kind == 2
        && s.parent_span_id == remote.span_id.0));
    for plain in spans
        .iter()
        .filter(|s| s.name == "plain" || s.name == "after unsampled")
    {
        assert!(plain.attributes.is_empty(), "{plain:?}");
        assert!(plain.events.is_empty(), "{plain:?}");
        assert!(plain.links.is_empty(), "{plain:?}");
        assert_eq!(plain.dropped_attributes_count, 0);
        assert!(
            plain
                .status
                .as_ref()
                .is_none_or(|st| st.code == 0 && st.message.is_empty())
        );
        assert_eq!(plain.kind, 1, "internal");
        assert!(plain.parent_span_id.is_empty());
        assert_ne!(plain.trace_id, remote.trace_id.0);
        assert!(plain.trace_state.is_empty());
        assert!(plain.start_time_unix_nano > 0);
        assert!(plain.end_time_unix_nano >= plain.start_time_unix_nano);
    }
}

/// A scope with a NaN attribute (or a `-0.0` one) is one scope: registered
/// again it gets the same id (floats compared by their bits; the derived
/// `==`, NaN != NaN, registered it anew for every call, one `ScopeSpans`
/// per span, until the table filled and later scopes lost theirs). `0.0`
/// and `-0.0` are two scopes, in the pipeline's table and in its worker's
/// encoder alike (their ids must correspond): each span is exported under
/// its own scope.
#[test]
fn a_scope_with_a_nan_attribute_is_registered_once() {
    use otlp_exporter::{InstrumentationScope, KeyValue};
    let memory = InMemory::new();
    let pipeline = builder(&memory).build().unwrap();
    let scope = |name: &'static str, v: f64| {
        let mut s = InstrumentationScope::new(name, "1");
        s.attributes = vec![
            KeyValue::new("ratio", v),
            KeyValue::new("list", vec![otlp_exporter::Value::F64(v)]),
        ];
        s
    };
    let nan = pipeline.scope(scope("ratio-lib", f64::NAN));
    for _ in 0..100 {
        assert_eq!(pipeline.scope(scope("ratio-lib", f64::NAN)), nan);
    }
    let zero = pipeline.scope(scope("signed", 0.0));
    let negative_zero = pipeline.scope(scope("signed", -0.0));
    assert_ne!(zero, negative_zero);
    assert_eq!(pipeline.scope(scope("signed", -0.0)), negative_zero);
    let later = pipeline.scope(InstrumentationScope::new("payments", "2.0"));
    for (name, id) in [
        ("nan", nan),
        ("nan", nan),
        ("zero", zero),
        ("negative zero", negative_zero),
        ("charge", later),
    ] {
        let mut span = SpanData::new(name);
        span.scope = id;
        pipeline.record(span);
    }
    pipeline.shutdown(Duration::from_secs(5));
    let mut by_scope: Vec<(String, Vec<String>)> = Vec::new();
    let mut zero_bits = Vec::new();
    for r in memory.requests() {
        let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
            prost::Message::decode(&r.body[..]).unwrap();
        for ss in req.resource_spans.into_iter().flat_map(|rs| rs.scope_spans) {
            let scope = ss.scope.unwrap();
            if scope.name == "signed" {
                let v = scope.attributes[0].value.as_ref().unwrap().value.as_ref();
                let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::DoubleValue(d)) =
                    v
                else {
                    panic!("{v:?}")
                };
                zero_bits.push((ss.spans[0].name.clone(), d.to_bits()));
            }
            by_scope.push((scope.name, ss.spans.into_iter().map(|s| s.name).collect()));
        }
    }
    by_scope.sort();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        by_scope,
        [
            ("payments".to_string(), names(&["charge"])),
            ("ratio-lib".to_string(), names(&["nan", "nan"])),
            ("signed".to_string(), names(&["negative zero"])),
            ("signed".to_string(), names(&["zero"])),
        ],
    );
    zero_bits.sort();
    assert_eq!(
        zero_bits,
        [
            ("negative zero".to_string(), (-0.0f64).to_bits()),
            ("zero".to_string(), 0.0f64.to_bits())
        ]
    );
}
