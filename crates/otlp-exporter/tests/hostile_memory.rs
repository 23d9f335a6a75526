//! Memory under hostile but legitimate use, measured with a counting global
//! allocator (live bytes, not time): threads that record a full lane each
//! and exit while the collector is down must not keep their lanes (issue
//! 12's case: 400 exited threads held 819 200 spans and 201 MiB).

use std::thread;
use std::time::Duration;

use otlp_exporter::{
    Behavior, DEFAULT_MAX_QUEUE_SIZE, DropReason, HANDED_OVER_LANES, InMemory, Pipeline, Recorded,
    Resource, SpanData,
};
use test_watchdog::alloc::Counting;

/// Counts the live bytes; allocations of one size can be made to fail.
#[global_allocator]
static ALLOC: Counting = Counting::new();

const MIB: isize = 1 << 20;

/// A pipeline whose transport (`memory`, set to hang) is stuck in its first
/// export: from here on nothing leaves the queue.
fn hung_pipeline(memory: &InMemory) -> Pipeline {
    let p = Pipeline::builder()
        .transport(memory.clone())
        .resource(Resource::new("memory"))
        .scheduled_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    p.record(SpanData::new("first"));
    while memory.calls() < 1 {
        thread::sleep(Duration::from_millis(1));
    }
    p
}

/// `n` threads, one after another, each records one span (queued) and
/// exits: a thread per request.
fn threads_of_one_span(p: &Pipeline, n: u64) {
    for i in 0..n {
        let p = p.clone();
        thread::spawn(move || {
            assert_eq!(
                p.record(SpanData::new(format!("req-{i}"))),
                Recorded::Queued
            );
        })
        .join()
        .unwrap();
    }
}

/// 400 threads each record a lane's worth (2048 spans) and exit while the
/// only export hangs. Before issue 12 every lane stayed (200 MiB); with
/// per-thread lanes the spans were handed over and capped. Now the queue is
/// one pool of `max_queue_size` slots shared by every thread, and the
/// worker is away (inside the hung export): each exiting thread moves what
/// it queued into the adopted spans and frees its lane, at most
/// `HANDED_OVER_LANES x max_queue_size` are kept (the oldest beyond are
/// counted as orphaned), the rest is counted as queue-full, and memory
/// stays within the pool and the adopted spans, whatever the number of
/// threads.
#[test]
fn exited_threads_during_an_outage_do_not_keep_their_lanes() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        let memory = InMemory::new().with_behavior(Behavior::Hang);
        let p = hung_pipeline(&memory);
        let base = ALLOC.live();
        let mut peak = 0;
        let mut queued = 0u64;
        for wave in 0..50 {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let p = p.clone();
                    thread::spawn(move || {
                        let mut queued = 0u64;
                        for i in 0..DEFAULT_MAX_QUEUE_SIZE {
                            match p.record(SpanData::new(format!("{wave}/{t}/{i}"))) {
                                Recorded::Queued => queued += 1,
                                Recorded::Dropped(DropReason::QueueFull) => {}
                                other => panic!("{other:?}"),
                            }
                        }
                        queued
                    })
                })
                .collect();
            for h in handles {
                queued += h.join().unwrap();
            }
            peak = peak.max(ALLOC.live() - base);
        }
        let grown = ALLOC.live() - base;
        let s = p.stats();
        assert!(s.is_balanced(), "{s:?}");
        // `queued` and the first span, in flight, less the orphaned.
        assert_eq!(
            s.queued + s.in_flight + s.dropped.orphaned,
            queued + 1,
            "{s:?}"
        );
        // The pool, plus at most `HANDED_OVER_LANES` pools' worth adopted;
        // no lane is left (every thread has exited).
        let cap = DEFAULT_MAX_QUEUE_SIZE as u64 * (1 + HANDED_OVER_LANES as u64);
        assert!(s.queued <= cap, "{s:?}");
        // The adopted spans (a 512-byte slot each) and the pool's slots
        // (the pool allocated before `base`): 200 MiB before issue 12, 6.4
        // MiB of lanes' home chunks (16 KiB a thread) before exiting
        // threads freed their lanes.
        let budget = HANDED_OVER_LANES as isize * DEFAULT_MAX_QUEUE_SIZE as isize * 512 + 2 * MIB;
        eprintln!(
            "400 exited threads: {} KiB held, peak {} KiB",
            grown >> 10,
            peak >> 10
        );
        assert!(grown < budget, "{} KiB still held", grown >> 10);
        assert!(peak < budget, "peak {} KiB", peak >> 10);
        memory.release();
        let report = p.shutdown(Duration::from_secs(60));
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
    });
}

/// The export hangs (a collector that accepts the connection and never
/// answers; the worker is inside the transport): 2 000 threads each record
/// one span and exit. Past the first 64 exits (or 100 ms into the export),
/// each frees the exited lanes as it goes (their spans moved to the
/// adopted spans), so memory does not grow by a lane per thread (about 5.5
/// KiB each, 11 MiB here, before; 17 MiB when the threads all exited
/// within the first 100 ms and only that wait let the lanes go); once the
/// transport returns every span is exported.
#[test]
fn threads_that_come_and_go_during_a_hung_export_do_not_keep_their_lanes() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        let memory = InMemory::new().with_behavior(Behavior::Hang);
        let p = hung_pipeline(&memory);
        let base = ALLOC.live();
        let threads = 2_000;
        threads_of_one_span(&p, threads);
        let grown = ALLOC.live() - base;
        // 2 000 spans of 512 bytes adopted (1 MiB) and the adopted
        // list's growth; not 2 000 lanes (11 MiB). Nothing waited for the
        // worker: it is still inside the first export.
        assert!(grown < 2 * MIB, "{} KiB held", grown >> 10);
        assert_eq!(memory.calls(), 1);
        let s = p.stats();
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(s.dropped.total(), 0, "{s:?}");
        // The hung export returns (as a failure: the first span) and the
        // collector takes the rest.
        memory.set_behavior(Behavior::Accept);
        memory.release();
        let report = p.shutdown(Duration::from_secs(60));
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
        assert_eq!(report.stats.exported, threads, "{:?}", report.stats);
        assert_eq!(report.stats.dropped.export_failed, 1, "{:?}", report.stats);
        assert_eq!(report.stats.dropped.total(), 1, "{:?}", report.stats);
    });
}

/// Issue 13: `max_queue_size` is the total across every recording thread.
/// 256 threads each record 4000 spans while the export blocks, and stay
/// alive: the pipeline holds at most `max_queue_size` slots of 512 bytes
/// plus 16 KiB per recording thread (measured: live bytes through the
/// counting allocator, not resident memory), every span is queued or
/// counted, and once the transport is released everything queued is
/// exported.
#[test]
fn memory_is_bounded_by_the_total_not_by_the_thread_count() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        const THREADS: usize = 256;
        const EACH: usize = 4000;
        let memory = InMemory::new().with_behavior(Behavior::Hang);
        let base = ALLOC.live();
        let p = hung_pipeline(&memory);
        let recorded = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
        let measured = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (p, recorded, measured) = (p.clone(), recorded.clone(), measured.clone());
                thread::spawn(move || {
                    let mut queued = 0u64;
                    for i in 0..EACH {
                        match p.record(SpanData::new(format!("{t}/{i}"))) {
                            Recorded::Queued => queued += 1,
                            Recorded::Dropped(DropReason::QueueFull) => {}
                            other => panic!("{other:?}"),
                        }
                    }
                    recorded.wait();
                    measured.wait();
                    queued
                })
            })
            .collect();
        recorded.wait();
        let held = ALLOC.live() - base;
        let s = p.stats();
        measured.wait();
        let queued: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let slot = 512isize;
        let bound = DEFAULT_MAX_QUEUE_SIZE as isize * slot + THREADS as isize * 16 * 1024;
        eprintln!(
            "{THREADS} threads x {EACH} spans, export blocked: {} KiB held \
             ({} B per thread beyond the pool); bound {} KiB; {} queued",
            held >> 10,
            (held - DEFAULT_MAX_QUEUE_SIZE as isize * slot) / THREADS as isize,
            bound >> 10,
            s.queued + s.in_flight
        );
        // `fixed`: the worker, its batch and encoder, the stats snapshot,
        // the threads' own bookkeeping.
        let fixed = MIB;
        assert!(held <= bound + fixed, "{} KiB held", held >> 10);
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(s.accepted, (THREADS * EACH) as u64 + 1, "{s:?}");
        assert_eq!(s.queued + s.in_flight, queued + 1, "{s:?}");
        assert!(
            s.queued <= DEFAULT_MAX_QUEUE_SIZE as u64 + 16 * THREADS as u64,
            "{s:?}"
        );
        memory.release();
        let report = p.shutdown(Duration::from_secs(60));
        let s = report.stats;
        assert!(report.completed, "{s:?}");
        assert!(s.is_balanced(), "{s:?}");
        // The first export was released as failed; the rest went through.
        assert_eq!(
            s.exported + s.dropped.export_failed + s.dropped.retry_shed,
            queued + 1,
            "{s:?}"
        );
        assert_eq!(memory.span_count(), s.exported);
        assert_eq!(
            s.dropped.queue_full,
            (THREADS * EACH) as u64 - queued,
            "{s:?}"
        );
    });
}

/// A thread whose queue lane cannot be allocated (memory ran out since the
/// pipeline started) records anyway: the span is counted as queue-full,
/// nothing aborts, and the accounting balances; once memory is back, new
/// threads get lanes again.
#[test]
fn a_lane_that_cannot_be_allocated_is_counted_not_an_abort() {
    test_watchdog::isolate(Duration::from_secs(60), || {
        let memory = InMemory::new();
        // A thread's lane has a home chunk of 16 slots: 8 KiB.
        let p = Pipeline::builder()
            .transport(memory.clone())
            .resource(Resource::new("memory"))
            .max_queue_size(4096)
            .build()
            .unwrap();
        ALLOC.fail_size(16 * 512);
        let q = p.clone();
        let outcome = thread::spawn(move || q.record(SpanData::new("no room")))
            .join()
            .unwrap();
        ALLOC.fail_size(0);
        assert_eq!(outcome, Recorded::Dropped(DropReason::QueueFull));
        let q = p.clone();
        let outcome = thread::spawn(move || q.record(SpanData::new("room")))
            .join()
            .unwrap();
        assert_eq!(outcome, Recorded::Queued);
        let report = p.shutdown(Duration::from_secs(30));
        assert!(report.completed);
        let s = report.stats;
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!((s.accepted, s.exported, s.dropped.queue_full), (2, 1, 1));
        assert_eq!(memory.span_count(), 1);
    });
}

/// A span's storage is recycled for the thread's next span, and its
/// attributes forgotten without a look at each when the span knows that
/// none owns memory: attributes that do own it (an owned key, an owned
/// string set new or as a replacement) are still freed. Were they
/// forgotten too, 20 000 such spans would leak about 4 MiB.
#[test]
fn recycled_spans_free_their_owned_attributes() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        struct Discard;
        impl otlp_exporter::Transport for Discard {
            fn export(
                &self,
                _request: &otlp_exporter::EncodedRequest,
                _deadline: std::time::Instant,
            ) -> otlp_exporter::ExportResult {
                otlp_exporter::ExportResult::Success
            }
        }
        let p = Pipeline::builder()
            .transport(Discard)
            .resource(Resource::new("memory"))
            .scheduled_delay(Duration::from_millis(10))
            .build()
            .unwrap();
        let tracer = p.tracer("memory", "1");
        let round = |n: usize| {
            for i in 0..n {
                let mut span = tracer.start("owned");
                // Plain, then owned: a span that starts plain and is not.
                span.set_attribute("plain", 1)
                    .set_attribute(String::from("owned.key"), "v".repeat(100))
                    .set_attribute("replaced", 2)
                    .set_attribute("replaced", "r".repeat(100));
                span.end();
                // A plain span in between reuses the storage.
                let mut plain = tracer.start("plain");
                plain
                    .set_attribute("i", i as i64)
                    .set_attribute("s", "borrowed");
                plain.end();
            }
            assert!(p.force_flush(Duration::from_secs(30)).completed);
        };
        round(5_000);
        let base = ALLOC.live();
        round(20_000);
        let grown = ALLOC.live() - base;
        assert!(
            grown < MIB / 4,
            "{} KiB more after 20 000 spans",
            grown >> 10
        );
        // (Under load some are dropped as queue-full: recycled all the
        // same.)
        let s = p.shutdown(Duration::from_secs(30)).stats;
        assert_eq!(s.accepted, 50_000, "{s:?}");
        assert!(s.is_balanced(), "{s:?}");
    });
}

/// A collector that is down (every export fails as retryable, so the
/// worker keeps the failed batch and takes nothing new) while a thread
/// per request records one span and exits, 2 000 times: each exited
/// thread's lane is freed during the outage (its span moved to the
/// pipeline's adopted spans), so memory does not grow by a lane per
/// thread (about 5.5 KiB each before, 11 MiB here); once the collector
/// is back every span is exported.
#[test]
fn threads_that_come_and_go_during_an_outage_do_not_keep_their_lanes() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        let memory = InMemory::new().with_behavior(Behavior::Unavailable);
        let p = Pipeline::builder()
            .transport(memory.clone())
            .resource(Resource::new("memory"))
            .scheduled_delay(Duration::from_millis(5))
            .build()
            .unwrap();
        // The first batch fails: the outage has begun.
        assert_eq!(p.record(SpanData::new("first")), Recorded::Queued);
        while memory.calls() < 1 {
            thread::sleep(Duration::from_millis(1));
        }
        let base = ALLOC.live();
        let threads = 2_000;
        threads_of_one_span(&p, threads);
        // The worker adopts the exited lanes at its next look (it naps
        // between retries): give it a few.
        let mut grown = ALLOC.live() - base;
        for _ in 0..100 {
            if grown < 2 * MIB {
                break;
            }
            thread::sleep(Duration::from_millis(10));
            grown = ALLOC.live() - base;
        }
        // 2 000 spans of 512 bytes adopted (1 MiB) and the adopted
        // list's growth; not 2 000 lanes (11 MiB).
        assert!(grown < 2 * MIB, "{} KiB held", grown >> 10);
        let s = p.stats();
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(s.dropped.total(), 0, "{s:?}");
        memory.set_behavior(Behavior::Accept);
        let report = p.shutdown(Duration::from_secs(60));
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
        assert_eq!(report.stats.exported, threads + 1, "{:?}", report.stats);
        assert_eq!(report.stats.dropped.total(), 0, "{:?}", report.stats);
    });
}

/// A thread that once recorded a span with a 100 KB attribute and then
/// idles keeps no more than its lane's 16 KiB: the encode buffer grown to
/// that span's size is shrunk back. Found by review: it kept about 206
/// KiB for as long as the thread lived.
#[test]
fn an_idle_thread_does_not_keep_the_scratch_of_its_largest_span() {
    test_watchdog::isolate(Duration::from_secs(60), || {
        // Failing exports keep nothing (an accepting `InMemory` keeps every
        // request).
        let memory = InMemory::new().with_behavior(Behavior::Fail);
        let p = Pipeline::builder()
            .transport(memory.clone())
            .resource(Resource::new("memory"))
            .scheduled_delay(Duration::from_millis(1))
            .build()
            .unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (done, recorded) = std::sync::mpsc::channel::<()>();
        let p2 = p.clone();
        let t = thread::spawn(move || {
            // The lane first, so that it is made before the measure starts.
            p2.record(SpanData::new("small"));
            done.send(()).unwrap();
            wait.recv().unwrap();
            let mut big = SpanData::new("big");
            big.attributes
                .push(otlp_exporter::KeyValue::new("blob", "x".repeat(100_000)));
            assert_eq!(p2.record(big), Recorded::Queued);
            done.send(()).unwrap();
            wait.recv().unwrap();
        });
        recorded.recv().unwrap();
        p.force_flush(Duration::from_secs(10));
        let base = ALLOC.live();
        go.send(()).unwrap();
        recorded.recv().unwrap();
        p.force_flush(Duration::from_secs(10));
        let held = ALLOC.live() - base;
        go.send(()).unwrap();
        t.join().unwrap();
        eprintln!(
            "an idle thread after a 100 KB span: {} KiB held",
            held >> 10
        );
        // Measured: 259 KiB before (the scratch alone about 200 KiB, a
        // doubling past the span's size), 64 KiB after. What is left is
        // not the thread's (one buffer of the worker's, grown to the
        // largest batch it assembled, per pipeline: not yet traced), so
        // the bound is the thread's 16 KiB plus 80 KiB.
        assert!(held < 96 * 1024, "{} KiB held", held >> 10);
        p.shutdown(Duration::from_secs(10));
    });
}

/// A span of about 100 KB, recorded on a thread that reuses its storage.
fn big_span(name: String, blob: &str) -> SpanData {
    let mut span = SpanData::new(name);
    span.attributes
        .push(otlp_exporter::KeyValue::new("blob", blob.to_owned()));
    span
}

/// Spans larger than a queue slot (boxed) while the export hangs: 4
/// threads record 600 spans of 100 KB each. `max_queue_size` counts spans,
/// and 2 048 boxes of 100 KB are 200 MiB; the boxed spans have a byte
/// budget of their own, the pool's slot memory (`max_queue_size x 512`
/// bytes), so the pipeline holds at most twice the pool plus 16 KiB per
/// recording thread. Found by review: 2 063 such spans queued, 197 MiB
/// live. Every span is queued or counted as queue-full, and once the
/// transport is released every queued one is delivered and the budget is
/// whole again.
#[test]
fn spans_larger_than_a_slot_are_bounded_in_bytes_not_only_in_number() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        const THREADS: usize = 4;
        const EACH: usize = 600;
        const SIZE: usize = 100_000;
        let memory = InMemory::new().with_behavior(Behavior::Hang);
        let p = hung_pipeline(&memory);
        let base = ALLOC.live();
        let recorded = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
        let measured = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (p, recorded, measured) = (p.clone(), recorded.clone(), measured.clone());
                thread::spawn(move || {
                    let blob = "x".repeat(SIZE);
                    let (mut queued, mut full) = (0u64, 0u64);
                    for i in 0..EACH {
                        match p.record(big_span(format!("{t}/{i}"), &blob)) {
                            Recorded::Queued => queued += 1,
                            Recorded::Dropped(DropReason::QueueFull) => full += 1,
                            other => panic!("{other:?}"),
                        }
                    }
                    drop(blob);
                    recorded.wait();
                    measured.wait();
                    (queued, full)
                })
            })
            .collect();
        recorded.wait();
        let held = ALLOC.live() - base;
        let s = p.stats();
        measured.wait();
        let (queued, full) = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(q, f), (a, b)| (q + a, f + b));
        let pool = DEFAULT_MAX_QUEUE_SIZE as isize * 512;
        // The pool is allocated before `base`: what is held beyond it is
        // at most the budget (one pool's worth) and the threads' 16 KiB.
        let bound = pool + THREADS as isize * 16 * 1024;
        eprintln!(
            "{THREADS} threads x {EACH} spans of {SIZE} bytes, export hung: {} KiB held \
             beyond the pool (bound {} KiB); {queued} queued, {full} queue-full",
            held >> 10,
            bound >> 10,
        );
        // `fixed`: as in `memory_is_bounded_by_the_total_not_by_the_thread_count`.
        assert!(held <= bound + MIB, "{} KiB held", held >> 10);
        assert!(queued > 0, "some large spans fit the budget");
        assert_eq!(queued + full, (THREADS * EACH) as u64);
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(s.accepted, (THREADS * EACH) as u64 + 1, "{s:?}");
        assert_eq!(s.queued + s.in_flight, queued + 1, "{s:?}");
        assert_eq!(s.dropped.queue_full, full, "{s:?}");
        memory.set_behavior(Behavior::Accept);
        memory.release();
        assert!(p.force_flush(Duration::from_secs(60)).completed);
        // The budget is whole again: a large span is queued.
        let blob = "x".repeat(SIZE);
        assert_eq!(p.record(big_span("after".into(), &blob)), Recorded::Queued);
        let report = p.shutdown(Duration::from_secs(60));
        let s = report.stats;
        assert!(report.completed, "{s:?}");
        assert!(s.is_balanced(), "{s:?}");
        // Delivered and counted drops are everything recorded: the hung
        // export was released as failed (the first span), the rest went
        // through.
        assert_eq!(s.exported, queued + 1, "{s:?}");
        assert_eq!(s.dropped.export_failed, 1, "{s:?}");
        assert_eq!(s.dropped.queue_full, full, "{s:?}");
        assert_eq!(s.exported + s.dropped.total(), s.accepted, "{s:?}");
        assert_eq!(memory.span_count(), s.exported);
    });
}

/// Under `Block`, a span larger than a slot that finds the byte budget
/// spent waits for it (within the policy's timeout) and is then counted
/// as queue-full; a span larger than the whole budget is refused at once;
/// the memory stays within the budget.
#[test]
fn blocking_records_of_large_spans_wait_for_the_budget_then_count_as_full() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        const SIZE: usize = 100_000;
        let memory = InMemory::new().with_behavior(Behavior::Hang);
        let p = Pipeline::builder()
            .transport(memory.clone())
            .resource(Resource::new("memory"))
            .scheduled_delay(Duration::from_millis(10))
            .shedding(otlp_exporter::Shedding::Block {
                timeout: Duration::from_millis(100),
            })
            .build()
            .unwrap();
        p.record(SpanData::new("first"));
        while memory.calls() < 1 {
            thread::sleep(Duration::from_millis(1));
        }
        let base = ALLOC.live();
        let blob = "x".repeat(SIZE);
        let mut outcomes = Vec::new();
        let started = std::time::Instant::now();
        for i in 0..30 {
            outcomes.push(p.record(big_span(format!("b{i}"), &blob)));
        }
        let waited = started.elapsed();
        let held = ALLOC.live() - base - blob.capacity() as isize;
        let queued = outcomes.iter().filter(|r| **r == Recorded::Queued).count();
        let full = outcomes
            .iter()
            .filter(|r| **r == Recorded::Dropped(DropReason::QueueFull))
            .count();
        assert_eq!(queued + full, 30, "{outcomes:?}");
        assert!(queued >= 5 && full >= 10, "{outcomes:?}");
        // Each refused record waited out its timeout for the budget.
        assert!(
            waited >= Duration::from_millis(100) * full as u32,
            "{waited:?}"
        );
        assert!(
            held <= DEFAULT_MAX_QUEUE_SIZE as isize * 512 + MIB,
            "{} KiB",
            held >> 10
        );
        let s = p.stats();
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(s.dropped.queue_full, full as u64, "{s:?}");
        memory.set_behavior(Behavior::Accept);
        memory.release();
        let report = p.shutdown(Duration::from_secs(60));
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
        assert_eq!(report.stats.exported, queued as u64, "{:?}", report.stats);
        assert_eq!(report.stats.dropped.export_failed, 1, "{:?}", report.stats);
        // Larger than the whole budget (1 MiB at the default size): refused
        // without waiting. On a pipeline of its own whose `Block` waits a
        // minute, so that a wait cannot pass for a slow machine (a 50 ms
        // bound against the 100 ms wait above failed under load: the
        // refusal took 54-280 ms of waiting for a core).
        let huge = "x".repeat(2 << 20);
        let patient = Pipeline::builder()
            .transport(InMemory::new().with_behavior(Behavior::Hang))
            .resource(Resource::new("memory"))
            .shedding(otlp_exporter::Shedding::Block {
                timeout: Duration::from_secs(60),
            })
            .build()
            .unwrap();
        let t = std::time::Instant::now();
        assert_eq!(
            patient.record(big_span("huge".into(), &huge)),
            Recorded::Dropped(DropReason::QueueFull)
        );
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        let _ = patient.shutdown(Duration::ZERO);
        drop(huge);
    });
}

/// After shutdown the pipeline is still referenced (a global tracer) and
/// threads keep coming, each recording a span: a thread gets no lane for
/// that (a lane and its chunk were made for every such thread, ~8.5 KiB
/// while it lived), and once it exits nothing of it is left (the pooled
/// queue's lanes were then never freed: nothing retires them once the
/// worker's consumer is gone, +8.4 MB per 1000 threads). With either
/// queue, and every such record counted as after shutdown.
#[test]
fn threads_recording_after_shutdown_keep_no_lane() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        for drop_oldest in [false, true] {
            let memory = InMemory::new();
            let b = Pipeline::builder();
            let b = if drop_oldest {
                b.shedding(otlp_exporter::Shedding::DropOldest)
            } else {
                b
            };
            let p = b
                .transport(memory.clone())
                .resource(Resource::new("after-shutdown"))
                .build()
                .unwrap();
            p.record(SpanData::new("before"));
            assert!(p.shutdown(Duration::from_secs(30)).completed);
            // Warm up: the fallback lane, the counters' lists.
            let p2 = p.clone();
            thread::spawn(move || p2.record(SpanData::new("warm-up")))
                .join()
                .unwrap();
            const THREADS: usize = 200;
            let base = ALLOC.live();
            let recorded = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
            let exit = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
            let threads: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (p, recorded, exit) = (p.clone(), recorded.clone(), exit.clone());
                    thread::spawn(move || {
                        let r = p.record(SpanData::new(format!("req-{i}")));
                        assert_eq!(r, Recorded::Dropped(DropReason::Shutdown));
                        recorded.wait();
                        exit.wait();
                    })
                })
                .collect();
            recorded.wait();
            let live = ALLOC.live() - base;
            // Threads' own bookkeeping is a few hundred bytes each; a lane
            // was 8.5 KiB (pooled) or a ring of its own (drop-oldest).
            assert!(
                live < (THREADS * 2048) as isize,
                "drop_oldest={drop_oldest}: {} KiB while {THREADS} threads live",
                live >> 10
            );
            exit.wait();
            for t in threads {
                t.join().unwrap();
            }
            let left = ALLOC.live() - base;
            assert!(
                left < 64 << 10,
                "drop_oldest={drop_oldest}: {} KiB left after {THREADS} threads exited",
                left >> 10
            );
            let s = p.stats();
            assert!(s.is_balanced(), "{s:?}");
            assert_eq!(s.dropped.after_shutdown, THREADS as u64 + 1, "{s:?}");
        }
    });
}

/// A healthy collector slower than the spans arrive (50 ms an export) and
/// threads that come and go, 32 at a time, each recording 16 spans: the
/// heap stays within the pool and the capped adopted spans, whatever the
/// churn. Found by review (session 19): keeping every adopted span for
/// the worker during an absence shorter than `ADOPT_AFTER` (to orphan
/// fewer) grew the heap by 64 MiB a second here (1 GiB in 16 s), the
/// allowance starting afresh with every export.
#[test]
fn churn_with_a_slow_healthy_collector_keeps_memory_bounded() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        let p = Pipeline::builder()
            .transport(InMemory::new().with_latency(Duration::from_millis(50)))
            .resource(Resource::new("memory"))
            .scheduled_delay(Duration::from_millis(10))
            .build()
            .unwrap();
        p.record(SpanData::new("warm-up"));
        let base = ALLOC.live();
        let started = std::time::Instant::now();
        let mut most = 0;
        while started.elapsed() < Duration::from_secs(3) {
            let threads: Vec<_> = (0..32)
                .map(|t| {
                    let p = p.clone();
                    thread::spawn(move || {
                        for i in 0..16 {
                            p.record(SpanData::new(format!("{t}/{i}")));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            most = most.max(ALLOC.live() - base);
        }
        // The pool (2 048 slots of 512 bytes), the adopted spans' cap
        // (`HANDED_OVER_LANES x 2 048` of them, in a list whose buffer may
        // be twice its length) and the lanes waiting for the worker:
        // measured 18 MiB; the unbounded version held 190 MiB by now.
        let bound =
            DEFAULT_MAX_QUEUE_SIZE as isize * 512 * (1 + 2 * HANDED_OVER_LANES as isize) + 8 * MIB;
        assert!(
            most < bound,
            "{} KiB held (bound {} KiB)",
            most >> 10,
            bound >> 10
        );
        let report = p.shutdown(Duration::from_secs(60));
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
    });
}
