//! Owned spans (issue 14 item 2): a `Tracer` is `Clone + Send + Sync +
//! 'static` and a `Span` owns what it needs, so it can end on another
//! thread, after its tracer is gone, or after the pipeline shut down; and
//! spans with a remote or unsampled parent (items 3 and 4).

mod common;

use std::sync::Arc;
use std::time::Duration;

use otlp_exporter::{
    DropReason, InMemory, Pipeline, Recorded, Sampler, Span, SpanBuilder, SpanContext, Status,
    Tracer,
};

const WAIT: Duration = Duration::from_secs(10);

fn pipeline() -> (Pipeline, InMemory) {
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .build()
        .expect("valid settings");
    (pipeline, memory)
}

#[test]
fn tracer_and_span_are_owned_and_thread_safe() {
    fn owned<T: Send + 'static>() {}
    fn shared<T: Clone + Send + Sync + 'static>() {}
    shared::<Tracer>();
    owned::<Span>();
    owned::<SpanBuilder>();
}

#[test]
fn a_span_started_on_one_thread_ends_on_another() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("owned", "1");
    let mut span = tracer.start("moved");
    span.set_attribute("started_on", "main");
    let trace_id = span.context().trace_id;
    let outcome = std::thread::spawn(move || {
        span.set_attribute("ended_on", "worker");
        span.end()
    })
    .join()
    .expect("the worker thread ends the span");
    assert_eq!(outcome, Recorded::Queued);

    let report = pipeline.shutdown(WAIT);
    assert!(report.completed);
    assert_eq!(report.stats.exported, 1);
    let spans = common::received(&memory);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, trace_id.0.to_vec());
    let keys: Vec<_> = spans[0]
        .attributes
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert_eq!(keys, ["started_on", "ended_on"]);
}

#[test]
fn a_span_outlives_its_tracer() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("short-lived", "1");
    let parent = tracer.start("outlives");
    let child = tracer.start_child("child too", parent.context());
    drop(tracer);
    // Ended on another thread, which never saw the tracer.
    let handle = std::thread::spawn(move || (child.end(), parent.end()));
    assert_eq!(handle.join().unwrap(), (Recorded::Queued, Recorded::Queued));
    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.stats.exported, 2);
    assert_eq!(memory.span_count(), 2);
}

#[test]
fn a_span_keeps_a_dropped_pipeline_open_until_it_ends() {
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .build()
        .unwrap();
    let tracer = pipeline.tracer("last", "1");
    let span = tracer.start("last span");
    drop(tracer);
    drop(pipeline);
    assert!(!memory.is_shut_down(), "the span still holds the pipeline");
    // The last handle goes with the span: the pipeline shuts down, and
    // exports the span on the way.
    assert_eq!(span.end(), Recorded::Queued);
    assert!(memory.is_shut_down());
    assert_eq!(memory.span_count(), 1);
}

#[test]
fn dropping_every_handle_still_shuts_the_pipeline_down() {
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .build()
        .unwrap();
    let tracer = pipeline.tracer("cached", "1");
    // Spans on this thread and on others cache per-thread handles.
    tracer.start("here").end();
    let t = tracer.clone();
    std::thread::spawn(move || t.start("there").end())
        .join()
        .unwrap();
    tracer.start("here again").end();
    drop(tracer);
    drop(pipeline);
    assert!(
        memory.is_shut_down(),
        "no thread-local cache keeps the pipeline open"
    );
    assert_eq!(memory.span_count(), 3);
}

#[test]
fn a_span_ended_after_shutdown_is_counted_as_after_shutdown() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("late", "1");
    let here = tracer.start("ended here");
    let there = tracer.start("ended there");
    let dropped = tracer.start("dropped");
    let report = pipeline.shutdown(WAIT);
    assert!(report.completed);
    assert_eq!(here.end(), Recorded::Dropped(DropReason::Shutdown));
    let outcome = std::thread::spawn(move || there.end()).join().unwrap();
    assert_eq!(outcome, Recorded::Dropped(DropReason::Shutdown));
    drop(dropped);
    // A new span after shutdown too.
    assert_eq!(
        tracer.start("new").end(),
        Recorded::Dropped(DropReason::Shutdown)
    );
    let stats = pipeline.stats();
    assert_eq!(stats.accepted, 4);
    assert_eq!(stats.dropped.after_shutdown, 4);
    assert!(stats.is_balanced());
    assert_eq!(memory.span_count(), 0);
}

#[test]
fn many_threads_start_and_end_spans_across_threads() {
    const THREADS: usize = 8;
    const SPANS: usize = 200;
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .max_queue_size(THREADS * SPANS * 2)
        .build()
        .unwrap();
    let tracer = pipeline.tracer("many", "1");
    let (tx, rx) = std::sync::mpsc::channel::<Span>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    std::thread::scope(|s| {
        // Enders: end spans that other threads started.
        let enders: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || {
                    let mut n = 0;
                    while let Ok(span) = { rx.lock().unwrap().recv() } {
                        span.end();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        std::thread::scope(|starters| {
            for t in 0..THREADS {
                let (tracer, tx) = (tracer.clone(), tx.clone());
                starters.spawn(move || {
                    for i in 0..SPANS {
                        let mut span = tracer.start("work");
                        span.set_attribute("thread", t as i64);
                        if i % 2 == 0 {
                            span.set_status(Status::ok());
                            span.end();
                        } else {
                            tx.send(span).unwrap();
                        }
                    }
                });
            }
        });
        drop(tx);
        let moved: usize = enders.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(moved, THREADS * SPANS / 2);
    });
    let report = pipeline.shutdown(WAIT);
    assert!(report.completed);
    let stats = report.stats;
    assert!(stats.is_balanced());
    assert_eq!(stats.accepted, (THREADS * SPANS) as u64);
    assert_eq!(stats.exported, (THREADS * SPANS) as u64);
    assert_eq!(memory.span_count(), (THREADS * SPANS) as u64);
}

#[test]
fn threads_that_exit_leave_no_handle_behind() {
    // Many short-lived threads record through one long-lived tracer: each
    // thread's handle goes with the thread (else the tracer would grow
    // with every thread ever seen). Observable: the pipeline shuts down
    // when the last tracer and pipeline handles go.
    let memory = InMemory::new();
    let pipeline = Pipeline::builder()
        .transport(memory.clone())
        .build()
        .unwrap();
    let tracer = pipeline.tracer("churn", "1");
    for _ in 0..50 {
        let t = tracer.clone();
        std::thread::spawn(move || t.start("short").end())
            .join()
            .unwrap();
    }
    drop(tracer);
    drop(pipeline);
    assert!(memory.is_shut_down());
    assert_eq!(memory.span_count(), 50);
}

#[test]
fn a_remote_parent_continues_its_trace_and_sampled_flag() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("server", "1");
    let sampled =
        SpanContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    let unsampled =
        SpanContext::from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
            .unwrap();

    let span = tracer.start_child("GET /kept", &sampled);
    assert_eq!(span.context().trace_id, sampled.trace_id);
    assert!(span.context().trace_flags.is_sampled());
    assert!(!span.context().is_remote);
    let outgoing = span.context().to_traceparent();
    assert!(outgoing.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(outgoing.ends_with("-01"));
    let kept_id = span.context().span_id;
    assert_eq!(span.end(), Recorded::Queued);

    let mut span = tracer.start_child("GET /not-kept", &unsampled);
    assert_eq!(span.context().trace_id, unsampled.trace_id);
    assert!(!span.context().trace_flags.is_sampled());
    assert!(!span.is_recording());
    assert!(span.context().to_traceparent().ends_with("-00"));
    // Its children are not sampled either.
    let child = tracer.start_child("child", span.context());
    assert!(!child.context().trace_flags.is_sampled());
    assert_eq!(child.context().trace_id, unsampled.trace_id);
    span.set_attribute("ignored", 1);
    assert_eq!(child.end(), Recorded::Dropped(DropReason::NotSampled));
    assert_eq!(span.end(), Recorded::Dropped(DropReason::NotSampled));

    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.stats.exported, 1);
    assert_eq!(report.stats.dropped.not_sampled, 2);
    assert!(report.stats.is_balanced());
    let spans = common::received(&memory);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, sampled.trace_id.0.to_vec());
    assert_eq!(spans[0].parent_span_id, sampled.span_id.0.to_vec());
    assert_eq!(spans[0].span_id, kept_id.0.to_vec());
    // Sampled; the parent's remoteness is known (bit 8) and remote (bit 9).
    assert_eq!(spans[0].flags, 0x301);
}

#[test]
fn otlp_span_flags_say_whether_the_parent_is_remote() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("server", "1");
    let remote =
        SpanContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    let server = tracer.start_child("server", &remote);
    let local_child = tracer.start_child("local child", server.context());
    let root = tracer.start("root");
    let (server_id, child_id, root_id) = (
        server.context().span_id,
        local_child.context().span_id,
        root.context().span_id,
    );
    local_child.end();
    server.end();
    root.end();
    pipeline.shutdown(WAIT);
    let spans = common::received(&memory);
    let flags = |id: otlp_exporter::SpanId| {
        spans
            .iter()
            .find(|s| s.span_id == id.0.to_vec())
            .map(|s| s.flags)
            .expect("received")
    };
    assert_eq!(flags(server_id), 0x301, "remote parent");
    assert_eq!(flags(child_id), 0x101, "local parent");
    assert_eq!(flags(root_id), 0x101, "no parent: not remote");
}

#[test]
fn a_remote_parent_carries_its_trace_state_to_children() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("server", "1");
    let remote = SpanContext::from_w3c_headers(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    )
    .unwrap();
    let span = tracer.start_child("handle", &remote);
    assert_eq!(span.context().trace_state, remote.trace_state);
    span.end();
    pipeline.shutdown(WAIT);
    let spans = common::received(&memory);
    assert_eq!(
        spans[0].trace_state,
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    );
}

#[test]
fn unsampled_spans_are_counted_and_never_exported() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("off", "1").with_sampler(Sampler::AlwaysOff);
    for i in 0..100 {
        let mut span = tracer.start("dropped");
        assert!(!span.is_recording());
        assert!(span.context().is_valid());
        span.set_attribute("i", i)
            .add_event("e", vec![])
            .set_status(Status::error("x"))
            .update_name("renamed");
        assert_eq!(span.end(), Recorded::Dropped(DropReason::NotSampled));
    }
    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.stats.accepted, 100);
    assert_eq!(report.stats.dropped.not_sampled, 100);
    assert_eq!(report.stats.exported, 0);
    assert!(report.stats.is_balanced());
    assert_eq!(memory.span_count(), 0);
}

#[test]
fn a_ratio_sampler_keeps_about_its_share_and_children_follow_their_root() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline
        .tracer("ratio", "1")
        .with_sampler(Sampler::parent_based(Sampler::TraceIdRatioBased(0.25)));
    let mut kept = 0u64;
    for _ in 0..4000 {
        let root = tracer.start("root");
        let child = tracer.start_child("child", root.context());
        assert_eq!(
            child.context().trace_flags.is_sampled(),
            root.context().trace_flags.is_sampled(),
            "a local child follows its root's decision"
        );
        kept += u64::from(root.context().trace_flags.is_sampled());
        child.end();
        root.end();
    }
    // 4000 draws at p = 0.25: mean 1000, sd 27; 10 sd either way.
    assert!((730..=1270).contains(&kept), "kept {kept} of 4000 roots");
    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.stats.exported, 2 * kept);
    assert_eq!(report.stats.dropped.not_sampled, 2 * (4000 - kept));
    assert_eq!(memory.span_count(), 2 * kept);
}

#[test]
fn a_span_is_ended_once_when_dropped_on_another_thread() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("drop", "1");
    let span = tracer.start("dropped elsewhere");
    std::thread::spawn(move || drop(span)).join().unwrap();
    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.stats.accepted, 1);
    assert_eq!(memory.span_count(), 1);
}

#[test]
fn a_span_ended_in_a_thread_local_destructor_is_recorded() {
    // The thread's own cache is being torn down: the span still ends,
    // through a handle of its own.
    struct EndOnExit(Option<Span>);
    impl Drop for EndOnExit {
        fn drop(&mut self) {
            if let Some(span) = self.0.take() {
                span.end();
            }
        }
    }
    thread_local! {
        static HELD: std::cell::RefCell<EndOnExit> = const {
            std::cell::RefCell::new(EndOnExit(None))
        };
    }
    let (pipeline, _memory) = pipeline();
    let tracer = pipeline.tracer("tls", "1");
    std::thread::spawn(move || {
        // Started after the cache exists on this thread, so the cache may
        // be destroyed first.
        tracer.start("warm").end();
        let span = tracer.start("at exit");
        HELD.with(|h| h.borrow_mut().0 = Some(span));
    })
    .join()
    .unwrap();
    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.stats.accepted, 2);
    assert!(report.stats.is_balanced());
    assert_eq!(report.stats.exported, 2);
}

#[test]
fn a_builder_is_owned_and_starts_on_another_thread() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("builder", "1");
    let builder = tracer.build("later").attribute("k", "v");
    drop(tracer);
    let recorded = std::thread::spawn(move || builder.start().end())
        .join()
        .unwrap();
    assert_eq!(recorded, Recorded::Queued);
    pipeline.shutdown(WAIT);
    assert_eq!(memory.span_count(), 1);
}

#[test]
fn a_span_dropped_while_its_thread_panics_is_recorded() {
    let (pipeline, memory) = pipeline();
    let tracer = pipeline.tracer("panics", "1");
    let span = tracer.start("unwound");
    let joined = std::thread::spawn(move || {
        let _span = span;
        panic!("user code panics with a span open");
    })
    .join();
    assert!(joined.is_err());
    // The pipeline is unharmed.
    assert_eq!(tracer.start("after").end(), Recorded::Queued);
    let report = pipeline.shutdown(WAIT);
    assert!(report.completed);
    assert_eq!(report.stats.exported, 2);
    assert_eq!(memory.span_count(), 2);
}

/// The release of a thread's tracer handle (`outstanding.rs`) raced, 300
/// times: spans started on four threads end at once on their own thread
/// and on a neighbour, while the last tracer and pipeline handle are
/// dropped on a fifth, sooner or later. Each time every span is exported, and the pipeline
/// is shut down by the last span's end, not before and not never (a span
/// that ended unseen by the tracer's drop would keep it open; one released
/// early would be recorded after shutdown).
#[test]
fn the_last_span_to_end_shuts_the_pipeline_down_when_every_handle_is_dropped_meanwhile() {
    const THREADS: usize = 4;
    const SPANS: usize = 40;
    test_watchdog::isolate(Duration::from_secs(120), || {
        for round in 0..300 {
            let memory = InMemory::new();
            let pipeline = Pipeline::builder()
                .transport(memory.clone())
                .max_queue_size(THREADS * SPANS * 2)
                .build()
                .unwrap();
            let tracer = pipeline.tracer("race", "1");
            let started = Arc::new(std::sync::Barrier::new(THREADS + 1));
            let handed: Arc<std::sync::Mutex<Vec<Vec<Span>>>> = Arc::new(std::sync::Mutex::new(
                (0..THREADS).map(|_| Vec::new()).collect(),
            ));
            let finished = Arc::new(std::sync::Barrier::new(THREADS + 1));
            let threads: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (tracer, started, handed, finished) = (
                        tracer.clone(),
                        started.clone(),
                        handed.clone(),
                        finished.clone(),
                    );
                    std::thread::spawn(move || {
                        let mut mine: Vec<Span> =
                            (0..SPANS).map(|_| tracer.start("work")).collect();
                        // Half for the neighbour to end.
                        let theirs = mine.split_off(SPANS / 2);
                        handed.lock().unwrap()[(t + 1) % THREADS] = theirs;
                        drop(tracer);
                        started.wait();
                        for span in mine {
                            span.end();
                        }
                        let given = std::mem::take(&mut handed.lock().unwrap()[t]);
                        for span in given {
                            span.end();
                        }
                        // Stay alive until checked: the handles are closed
                        // by the tracer's drop, not by thread exits.
                        finished.wait();
                        finished.wait();
                    })
                })
                .collect();
            started.wait();
            // From at once to after every span ended, over the rounds: the
            // release falls to a span's end, or to the tracer's drop.
            for _ in 0..(round % 30) * 2_000 {
                std::hint::spin_loop();
            }
            drop(tracer);
            drop(pipeline);
            finished.wait();
            // Every span ended, every thread still alive.
            let shut_down = memory.is_shut_down();
            finished.wait();
            for t in threads {
                t.join().unwrap();
            }
            assert!(shut_down, "round {round}: the pipeline is shut down");
            assert_eq!(
                memory.span_count(),
                (THREADS * SPANS) as u64,
                "round {round}: every span exported"
            );
        }
    });
}
