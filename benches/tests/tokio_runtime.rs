//! `force_flush` and `shutdown` called from inside a tokio current-thread
//! runtime (where blocking the only thread must not deadlock) and from a
//! thread with no runtime. Lives here because tokio may appear only in
//! benches/ and xtask, never beside a library crate.

use std::time::Duration;

use otlp_exporter::{Behavior, InMemory, Pipeline, SpanData};

fn pipeline(memory: &InMemory) -> Pipeline {
    Pipeline::builder()
        .transport(memory.clone())
        .build()
        .expect("valid settings")
}

#[test]
fn flush_and_shutdown_inside_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let memory = InMemory::new();
    let p = pipeline(&memory);
    rt.block_on(async {
        for _ in 0..10 {
            p.record(SpanData::new("in tokio"));
        }
        // A task that needs this thread too: it must still run afterwards.
        let task = tokio::spawn(async { 7 });
        let flush = p.force_flush(Duration::from_secs(10));
        assert!(flush.completed);
        assert_eq!(flush.exported, 10);
        let report = p.shutdown(Duration::from_secs(10));
        assert!(report.completed);
        assert_eq!(task.await.expect("task ran"), 7);
    });
    assert_eq!(memory.span_count(), 10);
}

#[test]
fn deadlines_hold_inside_a_runtime_with_a_hanging_transport() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let memory = InMemory::new().with_behavior(Behavior::Hang);
    let p = pipeline(&memory);
    rt.block_on(async {
        p.record(SpanData::new("stuck"));
        let t0 = std::time::Instant::now();
        assert!(!p.force_flush(Duration::from_millis(100)).completed);
        let report = p.shutdown(Duration::from_millis(100));
        assert!(!report.completed);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "overran: {:?}",
            t0.elapsed()
        );
        assert_eq!(report.stats.dropped.timed_out_at_shutdown, 1);
        assert!(report.stats.is_balanced());
    });
    memory.release();
}

#[test]
fn flush_and_shutdown_from_a_thread_with_no_runtime() {
    let memory = InMemory::new();
    let p = pipeline(&memory);
    let handle = std::thread::spawn({
        let p = p.clone();
        move || {
            p.record(SpanData::new("plain thread"));
            let flush = p.force_flush(Duration::from_secs(10));
            assert!(flush.completed);
            p.shutdown(Duration::from_secs(10)).completed
        }
    });
    assert!(handle.join().expect("no panic"));
    assert_eq!(memory.span_count(), 1);
}
