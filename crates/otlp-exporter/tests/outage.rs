//! A collector outage within the buffer loses nothing (issue 13, item 3):
//! a batch whose export fails retryably is kept and tried again with
//! backoff (and `Retry-After`); spans wait in the queue meanwhile; when
//! the collector is back every span arrives exactly once. With a queue too
//! small for the outage the shedding policy decides what goes, and every
//! span is counted. Against a collector double on 127.0.0.1 that is down
//! (connection refused) and then comes up on the same port.
#![cfg(feature = "http")]

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::eventually;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlp_exporter::{
    Behavior, Encoding, ExportResult, ExportStats, HttpTransport, InMemory, Pipeline, Resource,
    RetryPolicy, Shedding, SpanData, Transport,
};
use prost::Message;

const WATCHDOG: Duration = Duration::from_secs(60);

/// One request the collector double read, and what it answered.
#[derive(Clone, Debug)]
struct Got {
    at: Instant,
    status: u16,
    spans: Vec<String>,
}

/// A collector double: answers each request from a script of statuses
/// (with optional `Retry-After`), then 200.
struct Collector {
    got: Arc<Mutex<Vec<Got>>>,
}

impl Collector {
    /// A port nothing listens on (yet): connections are refused.
    fn reserve_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn start(port: u16, script: Vec<(u16, Option<&'static str>)>) -> Collector {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("port still free");
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (s, g) = (script.clone(), g.clone());
                thread::spawn(move || serve(conn, &s, &g));
            }
        });
        Collector { got }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Span names in requests answered 2xx, with how often each arrived.
    fn delivered(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for g in self.got().iter().filter(|g| g.status == 200) {
            for s in &g.spans {
                *out.entry(s.clone()).or_insert(0) += 1;
            }
        }
        out
    }
}

fn serve(
    conn: TcpStream,
    script: &Mutex<VecDeque<(u16, Option<&'static str>)>>,
    got: &Mutex<Vec<Got>>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, retry_after) = script.lock().unwrap().pop_front().unwrap_or((200, None));
        let spans = ExportTraceServiceRequest::decode(&body[..])
            .expect("OTLP protobuf")
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .map(|s| s.name)
            .collect();
        got.lock().unwrap().push(Got {
            at: Instant::now(),
            status,
            spans,
        });
        let mut resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n");
        if let Some(after) = retry_after {
            resp.push_str(&format!("retry-after: {after}\r\n"));
        }
        resp.push_str("\r\n");
        if conn.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// An OTLP/HTTP transport to 127.0.0.1:`port` that makes one attempt per
/// export: the pipeline does the retrying.
fn transport(port: u16) -> HttpTransport {
    HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
        otlp_exporter::ambient_authority(),
    ))
    .endpoint(format!("http://127.0.0.1:{port}"))
    .timeout(Duration::from_secs(2))
    .retry(RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    })
    .build()
    .unwrap()
}

fn pipeline(port: u16, queue: usize, batch: usize, shedding: Shedding) -> Pipeline {
    pipeline_every(port, queue, batch, shedding, Duration::from_millis(5))
}

/// [`pipeline`] exporting a batch that is not full after `delay` (an hour:
/// only full batches, so that a test's spans go in one request however
/// its recording thread is scheduled; a flaky-test hunt saw them split
/// in two under load, with `scheduled_delay` 5 ms).
fn pipeline_every(
    port: u16,
    queue: usize,
    batch: usize,
    shedding: Shedding,
    delay: Duration,
) -> Pipeline {
    Pipeline::builder()
        .transport(transport(port))
        .resource(Resource::new("outage-test"))
        .max_queue_size(queue)
        .max_export_batch_size(batch)
        .scheduled_delay(delay)
        .export_timeout(Duration::from_secs(5))
        .shedding(shedding)
        .build()
        .unwrap()
}

/// Records `n` spans named `{prefix}{i}` on each of `threads` threads.
fn record(p: &Pipeline, prefix: &str, threads: usize, n: usize) {
    thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..n {
                    p.record(SpanData::new(format!("{prefix}{t}-{i}")));
                }
            });
        }
    });
}

fn connection_failures(s: &ExportStats) -> u64 {
    s.attempts.map_or(0, |a| a.connection_failed)
}

/// Waits until the pipeline keeps a batch after `n` failed attempts.
fn wait_for_outage(p: &Pipeline, n: u64) {
    eventually("the outage to be seen and a batch kept", || {
        let s = p.stats();
        connection_failures(&s) >= n && s.retrying > 0
    });
}

/// Down (connection refused), then up: with a queue sized for the outage,
/// every span arrives exactly once, nothing is dropped, and the collector
/// received exactly the exported count.
#[test]
fn an_outage_within_the_queue_loses_nothing() {
    test_watchdog::isolate(WATCHDOG, || {
        let port = Collector::reserve_port();
        let p = pipeline(port, 4096, 64, Shedding::DropNewest);
        record(&p, "before-", 4, 250);
        wait_for_outage(&p, 3);
        // Recorded while the collector is down: they wait in the queue.
        record(&p, "during-", 4, 250);
        let s = p.stats();
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!((s.exported, s.dropped.total()), (0, 0), "{s:?}");
        let collector = Collector::start(port, vec![]);
        eventually("every span exported", || p.stats().exported == 2000);
        let r = p.shutdown(Duration::from_secs(10));
        assert!(r.completed, "{r:?}");
        let s = r.stats;
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!((s.accepted, s.exported), (2000, 2000), "{s:?}");
        assert_eq!(s.dropped.total(), 0, "{s:?}");
        assert_eq!((s.retrying, s.in_flight, s.queued), (0, 0, 0), "{s:?}");
        let delivered = collector.delivered();
        assert_eq!(delivered.len(), 2000, "distinct spans delivered");
        assert!(delivered.values().all(|&n| n == 1), "a span arrived twice");
        for t in 0..4 {
            for i in 0..250 {
                for prefix in ["before-", "during-"] {
                    assert!(delivered.contains_key(&format!("{prefix}{t}-{i}")));
                }
            }
        }
        assert!(connection_failures(&s) >= 3, "{s:?}");
    });
}

/// The same through a pool of export threads: batches that fail there come
/// back to the worker and are kept.
#[test]
fn an_outage_with_concurrent_exports_loses_nothing() {
    test_watchdog::isolate(WATCHDOG, || {
        let port = Collector::reserve_port();
        let p = Pipeline::builder()
            .transport(transport(port))
            .max_queue_size(4096)
            .max_export_batch_size(32)
            .scheduled_delay(Duration::from_millis(5))
            .max_concurrent_exports(4)
            .build()
            .unwrap();
        record(&p, "pool-", 2, 400);
        wait_for_outage(&p, 2);
        let collector = Collector::start(port, vec![]);
        let flush = p.force_flush(Duration::from_secs(30));
        let r = p.shutdown(Duration::from_secs(10));
        let s = r.stats;
        assert!(r.completed && s.is_balanced(), "{flush:?} {r:?}");
        assert_eq!((s.exported, s.dropped.total()), (800, 0), "{s:?}");
        let delivered = collector.delivered();
        assert_eq!(delivered.len(), 800);
        assert!(delivered.values().all(|&n| n == 1));
    });
}

/// 503 with `Retry-After: 1`, then 200: the batch is kept, sent again no
/// sooner than the collector asked, and delivered once.
#[test]
fn a_503_with_retry_after_is_honoured_then_delivered() {
    test_watchdog::isolate(WATCHDOG, || {
        let port = Collector::reserve_port();
        let collector = Collector::start(port, vec![(503, Some("1"))]);
        let hour = Duration::from_secs(3600);
        let p = pipeline_every(port, 1024, 10, Shedding::DropNewest, hour);
        record(&p, "ra-", 1, 10);
        eventually("the retry delivers", || p.stats().exported == 10);
        let r = p.shutdown(Duration::from_secs(10));
        assert!(r.completed && r.stats.is_balanced(), "{r:?}");
        assert_eq!(r.stats.dropped.total(), 0, "{r:?}");
        let got = collector.got();
        assert_eq!(
            got.iter().map(|g| g.status).collect::<Vec<_>>(),
            vec![503, 200]
        );
        assert_eq!(got[0].spans, got[1].spans, "the same batch, sent again");
        assert!(
            got[1].at.duration_since(got[0].at) >= Duration::from_secs(1),
            "Retry-After: 1 was not waited out"
        );
        assert_eq!(collector.delivered().len(), 10);
        let a = r.stats.attempts.unwrap();
        assert_eq!((a.retryable_status, a.succeeded), (1, 1), "{a:?}");
    });
}

/// Final answers are not kept: counted as failed at once, never sent again.
#[test]
fn final_answers_are_counted_at_once_not_kept() {
    test_watchdog::isolate(WATCHDOG, || {
        for status in [400u16, 401, 403, 404, 413] {
            let port = Collector::reserve_port();
            let collector = Collector::start(port, vec![(status, None)]);
            let hour = Duration::from_secs(3600);
            let p = pipeline_every(port, 1024, 5, Shedding::DropNewest, hour);
            record(&p, "final-", 1, 5);
            eventually("the failure counted", || {
                p.stats().dropped.export_failed == 5
            });
            let s = p.stats();
            assert_eq!(s.retrying, 0, "{status}: {s:?}");
            let r = p.shutdown(Duration::from_secs(10));
            assert!(r.completed && r.stats.is_balanced(), "{r:?}");
            assert_eq!(r.stats.exported, 0, "{status}");
            assert_eq!(collector.got().len(), 1, "{status} was sent again");
        }
    });
}

/// A small queue and an outage longer than it holds: the policy sheds,
/// every span is counted, and the collector receives exactly what the
/// pipeline says it exported, each span once.
#[test]
fn a_long_outage_sheds_by_policy_and_counts_every_span() {
    test_watchdog::isolate(WATCHDOG, || {
        for shedding in [
            Shedding::DropNewest,
            Shedding::DropOldest,
            Shedding::Priority { high_water: 64 },
        ] {
            let port = Collector::reserve_port();
            let p = pipeline(port, 128, 32, shedding);
            // A first batch, kept once the collector is found down.
            record(&p, "first-", 1, 32);
            wait_for_outage(&p, 1);
            // Far more than the queue holds, from two threads.
            record(&p, "flood-", 2, 2000);
            if shedding == Shedding::DropOldest {
                eventually("the kept batch shed for newer spans", || {
                    p.stats().dropped.retry_shed > 0
                });
            }
            let s = p.stats();
            assert!(s.is_balanced(), "{shedding:?}: {s:?}");
            let collector = Collector::start(port, vec![]);
            let r = p.shutdown(Duration::from_secs(20));
            assert!(r.completed, "{shedding:?}: {r:?}");
            let s = r.stats;
            assert!(s.is_balanced(), "{shedding:?}: {s:?}");
            assert_eq!(s.accepted, 4032);
            assert_eq!(s.exported + s.dropped.total(), 4032, "{s:?}");
            let delivered = collector.delivered();
            assert_eq!(delivered.len() as u64, s.exported, "{shedding:?}: {s:?}");
            assert!(delivered.values().all(|&n| n == 1), "{shedding:?}");
            match shedding {
                Shedding::DropNewest | Shedding::Priority { .. } => {
                    // The kept batch, the oldest, survives; new spans went.
                    assert!(s.dropped.queue_full > 0, "{s:?}");
                    assert_eq!(s.dropped.retry_shed, 0, "{s:?}");
                    for i in 0..32 {
                        assert!(delivered.contains_key(&format!("first-0-{i}")), "{s:?}");
                    }
                }
                _ => {
                    // The oldest went first: the kept batch, then the
                    // lanes' oldest; each thread's newest span survives.
                    assert!(s.dropped.retry_shed > 0, "{s:?}");
                    assert!(s.dropped.evicted > 0, "{s:?}");
                    assert!(!delivered.contains_key("first-0-0"), "{s:?}");
                    for t in 0..2 {
                        assert!(delivered.contains_key(&format!("flood-{t}-1999")), "{s:?}");
                    }
                }
            }
            assert_eq!(s.dropped.export_failed, 0, "{s:?}");
        }
    });
}

/// Shutdown while the collector is still down: the kept batches are tried
/// once more, and what is left is counted, nothing lost silently.
#[test]
fn shutdown_during_an_outage_counts_what_is_left() {
    test_watchdog::isolate(WATCHDOG, || {
        let port = Collector::reserve_port();
        let p = pipeline(port, 1024, 16, Shedding::DropNewest);
        record(&p, "left-", 2, 100);
        wait_for_outage(&p, 2);
        let flush = p.force_flush(Duration::from_secs(10));
        assert!(!flush.completed, "{flush:?}");
        assert_eq!(flush.dropped.total(), 0, "a flush drops nothing: {flush:?}");
        let before = connection_failures(&p.stats());
        let r = p.shutdown(Duration::from_secs(10));
        assert!(r.completed, "{r:?}");
        let s = r.stats;
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(s.exported, 0);
        assert_eq!(s.dropped.export_failed, 200, "{s:?}");
        assert!(connection_failures(&s) > before, "kept batches tried again");
        assert_eq!((s.retrying, s.in_flight, s.queued), (0, 0, 0), "{s:?}");
    });
}

/// The issue's scenario at full size: a 10 s outage at 20 k spans/s from 4
/// threads with `max_queue_size` 262 144 delivers every span. Slow (10 s of
/// outage), so ignored in the normal suite; the scaled-down version is
/// `an_outage_within_the_queue_loses_nothing`.
#[test]
#[ignore = "10 s outage at 20 k spans/s; run with --ignored"]
fn the_issue_scenario_ten_seconds_at_twenty_thousand_spans_per_second() {
    let port = Collector::reserve_port();
    let p = pipeline(port, 262_144, 512, Shedding::DropNewest);
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..4 {
            let p = &p;
            s.spawn(move || {
                // 5 000 spans/s per thread, in steps of 5 ms.
                for step in 0..2000u64 {
                    for i in 0..25 {
                        p.record(SpanData::new(format!("big-{t}-{step}-{i}")));
                    }
                    let next = start + Duration::from_millis(5 * (step + 1));
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            });
        }
    });
    let collector = Collector::start(port, vec![]);
    let end = Instant::now() + Duration::from_secs(60);
    while p.stats().exported < 200_000 {
        assert!(Instant::now() < end, "not delivered: {:?}", p.stats());
        thread::sleep(Duration::from_millis(10));
    }
    let r = p.shutdown(Duration::from_secs(30));
    assert!(r.completed && r.stats.is_balanced(), "{r:?}");
    assert_eq!(r.stats.dropped.total(), 0, "{r:?}");
    let delivered = collector.delivered();
    assert_eq!(delivered.len(), 200_000);
    assert!(delivered.values().all(|&n| n == 1));
}

/// The transport tells retryable failures (no connection, 429, 502, 503,
/// 504) from final ones (400, 401, 403, 404, 413, 500, a redirect), and
/// passes `Retry-After` on.
#[test]
fn the_transport_tells_retryable_from_final_failures() {
    test_watchdog::isolate(WATCHDOG, || {
        let request = {
            let memory = InMemory::new();
            let p = Pipeline::builder()
                .transport(memory.clone())
                .build()
                .unwrap();
            p.record(SpanData::new("one"));
            p.shutdown(Duration::from_secs(5));
            memory.requests().remove(0)
        };
        assert_eq!(request.encoding, Encoding::Protobuf);
        let deadline = || Instant::now() + Duration::from_secs(5);
        // Nothing listens: refused.
        let down = transport(Collector::reserve_port());
        assert!(
            matches!(
                down.export(&request, deadline()),
                ExportResult::Retryable {
                    retry_after: None,
                    ..
                }
            ),
            "connection refused"
        );
        for status in [429u16, 502, 503, 504] {
            let port = Collector::reserve_port();
            let _c = Collector::start(port, vec![(status, Some("7"))]);
            let got = transport(port).export(&request, deadline());
            assert!(
                matches!(
                    &got,
                    ExportResult::Retryable { retry_after: Some(d), .. } if *d == Duration::from_secs(7)
                ),
                "{status}: {got:?}"
            );
        }
        for status in [400u16, 401, 403, 404, 413, 500, 301] {
            let port = Collector::reserve_port();
            let _c = Collector::start(port, vec![(status, None)]);
            let got = transport(port).export(&request, deadline());
            assert!(matches!(got, ExportResult::Failed(_)), "{status}: {got:?}");
        }
    });
}

/// Any transport can report a retryable failure: the in-memory one that is
/// `Unavailable`, then back. Nothing is lost, nothing delivered twice.
#[test]
fn an_unavailable_transport_that_comes_back_gets_every_span_once() {
    test_watchdog::isolate(WATCHDOG, || {
        let memory = InMemory::new().with_behavior(Behavior::Unavailable);
        let p = Pipeline::builder()
            .transport(memory.clone())
            .max_queue_size(1024)
            .max_export_batch_size(16)
            .scheduled_delay(Duration::from_millis(5))
            .build()
            .unwrap();
        record(&p, "mem-", 2, 100);
        eventually("a batch kept", || {
            p.stats().retrying > 0 && memory.calls() >= 2
        });
        assert_eq!(p.stats().dropped.total(), 0);
        memory.set_behavior(Behavior::Accept);
        eventually("all delivered", || p.stats().exported == 200);
        let r = p.shutdown(Duration::from_secs(10));
        assert!(r.completed && r.stats.is_balanced(), "{r:?}");
        assert_eq!(r.stats.dropped.total(), 0);
        let mut names: Vec<String> = common::received(&memory)
            .into_iter()
            .map(|s| s.name)
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 200);
        assert_eq!(memory.span_count(), 200, "no span delivered twice");
    });
}

/// A batch that keeps failing retryably (a collector down for good, or a
/// proxy that resets every request over a size) is tried for
/// `retry_max_elapsed`, then counted as failed, and the pipeline moves on:
/// spans recorded after it are delivered once the collector answers
/// (before: kept and retried for ever, the queue behind it never taken).
#[test]
fn a_batch_that_never_gets_through_is_given_up_after_the_retry_limit() {
    test_watchdog::isolate(WATCHDOG, || {
        let memory = InMemory::new().with_behavior(Behavior::Unavailable);
        let p = Pipeline::builder()
            .transport(memory.clone())
            .resource(Resource::new("outage"))
            .scheduled_delay(Duration::from_millis(5))
            .retry_max_elapsed(Duration::from_millis(300))
            .build()
            .unwrap();
        for i in 0..10 {
            p.record(SpanData::new(format!("lost-{i}")));
        }
        eventually("the batch is given up", || {
            p.stats().dropped.export_failed == 10
        });
        let s = p.stats();
        assert_eq!(s.retrying, 0, "{s:?}");
        assert!(s.is_balanced(), "{s:?}");
        assert!(memory.calls() >= 2, "tried again before giving up");
        assert!(
            p.last_error().is_some_and(|e| e.contains("gave up")),
            "{:?}",
            p.last_error()
        );
        memory.set_behavior(Behavior::Accept);
        for i in 0..5 {
            p.record(SpanData::new(format!("later-{i}")));
        }
        let r = p.shutdown(Duration::from_secs(10));
        assert!(r.stats.is_balanced(), "{:?}", r.stats);
        assert_eq!(r.stats.exported, 5, "{:?}", r.stats);
        assert_eq!(r.stats.dropped.export_failed, 10, "{:?}", r.stats);
    });
}

/// `retry_max_elapsed` zero means "a failed batch is not tried again": a
/// batch that failed retryably with a long `Retry-After` used to be kept
/// through it all the same (and through the backoff without one), the
/// pipeline taking nothing new meanwhile. It fails at once now; and a
/// `Retry-After` longer than the retry budget ends at the budget. (Found
/// by review.)
#[test]
fn a_retry_after_longer_than_the_retry_budget_does_not_hold_the_batch() {
    struct Busy;
    impl Transport for Busy {
        fn export(&self, _: &otlp_exporter::EncodedRequest, _: Instant) -> ExportResult {
            ExportResult::Retryable {
                reason: "429".into(),
                retry_after: Some(Duration::from_secs(30)),
            }
        }
    }
    for budget in [Duration::ZERO, Duration::from_millis(100)] {
        let pipeline = Pipeline::builder()
            .transport(Busy)
            .max_queue_size(16)
            .max_export_batch_size(4)
            .scheduled_delay(Duration::ZERO)
            .retry_max_elapsed(budget)
            .build()
            .unwrap();
        for _ in 0..4 {
            pipeline.record(SpanData::new("x"));
        }
        // Given up within seconds (not after the 30 s `Retry-After`).
        eventually("the batch given up", || {
            let s = pipeline.stats();
            s.retrying == 0 && s.dropped.export_failed == 4
        });
        let report = pipeline.shutdown(Duration::from_secs(1));
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
    }
}

/// An OTLP/HTTP transport to 127.0.0.1:`port` with `retry` as its policy.
fn transport_with(port: u16, retry: RetryPolicy) -> HttpTransport {
    HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
        otlp_exporter::ambient_authority(),
    ))
    .endpoint(format!("http://127.0.0.1:{port}"))
    .timeout(Duration::from_secs(2))
    .retry(retry)
    .build()
    .unwrap()
}

/// One encoded request of one span.
fn one_request() -> otlp_exporter::EncodedRequest {
    otlp_exporter::Encoder::new(Resource::new("outage-test"))
        .encode(&[SpanData::new("one")], Encoding::Protobuf)
        .requests
        .remove(0)
}

/// No wait follows the transport's last attempt: its `Retry-After` goes to
/// the caller, which waits it (found by review: the transport slept it
/// first, so a pipeline waited it twice, and an export against a refused
/// port slept one more backoff after its tenth attempt).
#[test]
fn the_last_attempt_is_not_followed_by_a_wait() {
    test_watchdog::isolate(WATCHDOG, || {
        let port = Collector::reserve_port();
        let collector = Collector::start(port, vec![(503, Some("3"))]);
        let t = transport_with(
            port,
            RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
        );
        let start = Instant::now();
        let result = t.export(&one_request(), Instant::now() + Duration::from_secs(20));
        let took = start.elapsed();
        match result {
            ExportResult::Retryable { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("a 503 is retryable: {other:?}"),
        }
        assert_eq!(collector.got().len(), 1);
        // Answered at once; the 3 s are the caller's to wait.
        assert!(took < Duration::from_secs(2), "one attempt took {took:?}");
    });
}

/// Seen from the pipeline: a `Retry-After: 3` is waited once (about 3 s
/// between the 503 and the retry), not twice (6 s before the fix).
#[test]
fn a_retry_after_is_waited_once_by_the_pipeline() {
    test_watchdog::isolate(WATCHDOG, || {
        let port = Collector::reserve_port();
        let collector = Collector::start(port, vec![(503, Some("3"))]);
        let p = pipeline(port, 64, 8, Shedding::DropNewest);
        p.record(SpanData::new("one"));
        let end = Instant::now() + Duration::from_secs(30);
        while collector.got().len() < 2 {
            assert!(Instant::now() < end, "no retry: {:?}", collector.got());
            thread::sleep(Duration::from_millis(5));
        }
        let got = collector.got();
        let gap = got[1].at - got[0].at;
        assert!(
            gap >= Duration::from_secs(3),
            "sent through the Retry-After: {gap:?}"
        );
        assert!(
            gap < Duration::from_millis(5_500),
            "Retry-After: 3 waited {gap:?}"
        );
        let report = p.shutdown(Duration::from_secs(5));
        assert_eq!(report.stats.exported, 1);
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
    });
}

/// `retry_max_elapsed` counts from the batch's first failure, as
/// documented, not from the start of the export that failed: an export
/// that takes longer than the budget to fail is still retried within the
/// budget after it (found by review: it was given up untried).
#[test]
fn the_retry_budget_counts_from_the_first_failure() {
    test_watchdog::isolate(WATCHDOG, || {
        // Margins wide enough for a stalled worker (a flaky-test hunt:
        // with a 1 s budget, a 0.9 s stall gave the batch up untried).
        let memory = InMemory::new()
            .with_latency(Duration::from_secs(3))
            .with_behavior(Behavior::Unavailable);
        let p = Pipeline::builder()
            .transport(memory.clone())
            .scheduled_delay(Duration::from_millis(1))
            .retry_max_elapsed(Duration::from_millis(2_500))
            .build()
            .unwrap();
        p.record(SpanData::new("one"));
        // Failed at about 3 s, retried from about 3.1 s (each try takes
        // 3 s), given up once the budget has passed since the failure.
        let end = Instant::now() + Duration::from_secs(30);
        while p.stats().dropped.export_failed == 0 {
            assert!(Instant::now() < end, "never given up: {:?}", p.stats());
            thread::sleep(Duration::from_millis(5));
        }
        assert!(
            memory.calls() >= 2,
            "never retried: {} call(s)",
            memory.calls()
        );
        let report = p.shutdown(Duration::from_secs(5));
        assert_eq!(report.stats.dropped.export_failed, 1);
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
    });
}

/// A flush during an outage, with the HTTP transport's own retries on
/// (ten attempts): the pipeline's retries of the kept batch are one
/// attempt each, so the flush learns that the collector is still down
/// from one refused connection and returns `completed: false` long before
/// its timeout (found by review: each try of the kept batch ran the
/// transport's ten attempts, about 6 s here, and the flush waited its
/// whole timeout). Then the collector comes back and gets the span once.
#[test]
fn a_flush_during_an_outage_does_not_wait_for_its_timeout() {
    test_watchdog::isolate(WATCHDOG, || {
        let port = Collector::reserve_port();
        let retry = RetryPolicy {
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let p = Pipeline::builder()
            .transport(transport_with(port, retry))
            .scheduled_delay(Duration::from_millis(1))
            .build()
            .unwrap();
        p.record(SpanData::new("one"));
        // The first export makes its ten attempts (about 6.5 s), then the
        // batch is kept.
        let end = Instant::now() + Duration::from_secs(40);
        while p.stats().retrying == 0 {
            assert!(Instant::now() < end, "never kept: {:?}", p.stats());
            thread::sleep(Duration::from_millis(10));
        }
        let start = Instant::now();
        let flush = p.force_flush(Duration::from_secs(10));
        let took = start.elapsed();
        assert!(!flush.completed, "the collector is down");
        assert!(took < Duration::from_secs(4), "waited {took:?} of its 10 s");
        assert_eq!(p.stats().retrying, 1, "nothing dropped");
        let collector = Collector::start(port, vec![]);
        let flush = p.force_flush(Duration::from_secs(20));
        assert!(flush.completed, "{flush:?}");
        assert_eq!(collector.delivered().get("one"), Some(&1));
        let report = p.shutdown(Duration::from_secs(5));
        assert!(report.completed && report.stats.is_balanced(), "{report:?}");
    });
}

/// `RetryPolicy::max_backoff` caps every wait, the first too, jitter
/// included (found by review: the first wait was `initial_backoff`
/// uncapped, here 1.5-4.5 s).
#[test]
fn max_backoff_caps_the_first_wait_too() {
    test_watchdog::isolate(WATCHDOG, || {
        let port = Collector::reserve_port();
        let collector = Collector::start(port, vec![(503, None), (503, None), (503, None)]);
        let t = transport_with(
            port,
            RetryPolicy {
                initial_backoff: Duration::from_secs(3),
                max_backoff: Duration::from_millis(100),
                multiplier: 2.0,
                max_attempts: 3,
            },
        );
        let result = t.export(&one_request(), Instant::now() + Duration::from_secs(20));
        assert!(
            matches!(result, ExportResult::Retryable { .. }),
            "{result:?}"
        );
        let got = collector.got();
        assert_eq!(got.len(), 3);
        for pair in got.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(gap < Duration::from_millis(1_500), "waited {gap:?}");
        }
    });
}

/// A flush whose deadline has passed by the time the worker would try the
/// kept batch (here a zero timeout) leaves the batch kept, untried:
/// nothing dropped, and the batch is delivered when the collector is back
/// (found by review of the flush's deadline cap: the transport, given a
/// deadline already past, failed the batch for good, `export_failed`).
#[test]
fn a_flush_past_its_deadline_drops_nothing() {
    test_watchdog::isolate(WATCHDOG, || {
        let port = Collector::reserve_port();
        let p = pipeline(port, 64, 8, Shedding::DropNewest);
        p.record(SpanData::new("one"));
        wait_for_outage(&p, 1);
        let flush = p.force_flush(Duration::ZERO);
        assert!(!flush.completed);
        // A later flush's round (this one's, if the worker has not begun
        // it yet) finds its deadline passed too.
        let flush = p.force_flush(Duration::from_millis(1));
        assert!(!flush.completed);
        // One with time to try: the worker has carried out the two above
        // by the time it returns (one flush round at a time), and its own
        // attempt is refused (retryable: kept).
        let flush = p.force_flush(Duration::from_secs(10));
        assert!(!flush.completed);
        let s = p.stats();
        assert_eq!(s.dropped.export_failed, 0, "{s:?} {:?}", p.last_error());
        assert_eq!(s.retrying, 1, "{s:?}");
        let collector = Collector::start(port, vec![]);
        eventually("the span delivered", || {
            collector.delivered().get("one") == Some(&1)
        });
        let report = p.shutdown(Duration::from_secs(5));
        assert_eq!(report.stats.exported, 1);
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
    });
}

/// The same behind a slow retry: a collector that takes connections and
/// never answers (each attempt runs to its 2 s timeout); a 500 ms flush
/// arrives during the worker's own retry and ends before it: the batch
/// stays kept, nothing dropped.
#[test]
fn a_flush_behind_a_slow_retry_drops_nothing() {
    test_watchdog::isolate(WATCHDOG, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            // Held open, never answered.
            let held: Vec<_> = listener.incoming().collect();
            drop(held);
        });
        let p = Pipeline::builder()
            .transport(transport(port))
            .scheduled_delay(Duration::from_millis(5))
            .export_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        p.record(SpanData::new("one"));
        eventually("a batch kept", || p.stats().retrying > 0);
        thread::sleep(Duration::from_millis(300));
        let flush = p.force_flush(Duration::from_millis(500));
        assert!(!flush.completed);
        // The worker's retry under way ends (2 s), then the flush's round
        // finds its deadline passed.
        thread::sleep(Duration::from_secs(3));
        let s = p.stats();
        assert_eq!(s.dropped.export_failed, 0, "{s:?} {:?}", p.last_error());
        assert_eq!(s.retrying, 1, "{s:?}");
        let report = p.shutdown(Duration::from_millis(100));
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
    });
}
