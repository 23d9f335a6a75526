//! OTLP/HTTP against a fault-injecting HTTP server on 127.0.0.1: every
//! answer a collector can give (and not give), with the spec's retry rules,
//! timeouts that hold, and accounting that balances.
#![cfg(feature = "http")]

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlp_exporter::{
    Compression, Encoding, HttpTransport, Pipeline, Resource, RetryPolicy, SpanData,
};
use prost::Message;

/// What the server does with one request.
#[derive(Clone, Debug)]
enum Fault {
    /// Answer with this status, extra headers and body.
    Answer(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Read the request, then answer nothing for this long and close.
    Hang(Duration),
    /// Close the connection after reading only part of the request.
    ResetMidRequest,
    /// Wait, then answer 200.
    Slow(Duration),
    /// Write these bytes as the whole answer, then close the connection.
    Raw(Vec<u8>),
    /// Answer this status from the headers alone, never reading the body,
    /// and close the connection (as nginx, Envoy and Go servers refuse a
    /// body over their size limit; a body that was sent makes the close a
    /// reset). Honours `Expect: 100-continue` by answering in its place.
    Early(u16),
    /// To `Expect: 100-continue` answer `100 Continue`, then read the body
    /// and answer 200 (without the expectation, just 200).
    Continue,
    /// Answer `100 Continue` to the expectation, read this many bytes of
    /// the body, then answer this status and close, the rest unread (Go's
    /// `http.MaxBytesReader`, as the OpenTelemetry Collector's
    /// `max_request_body_size` uses it: the close is a reset).
    RefuseMidBody(u16, usize),
}

fn ok() -> Fault {
    Fault::Answer(200, vec![], vec![])
}

#[derive(Debug, Clone)]
struct Received {
    /// The request line (`POST /v1/traces HTTP/1.1`).
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn spans(&self) -> Vec<String> {
        let body = if self.header("content-encoding") == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_end(&mut out)
                .expect("gzip");
            out
        } else {
            self.body.clone()
        };
        let req: ExportTraceServiceRequest =
            if self.header("content-type") == Some("application/json") {
                serde_json::from_slice(&body).expect("OTLP JSON")
            } else {
                ExportTraceServiceRequest::decode(&body[..]).expect("OTLP protobuf")
            };
        req.resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .map(|s| s.name)
            .collect()
    }
}

/// A collector double: answers requests from a script of faults (then 200).
struct Server {
    addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Fault>>>,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Server {
    fn start(script: Vec<Fault>) -> Server {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("bind"), script)
    }

    fn start_on(listener: TcpListener, script: Vec<Fault>) -> Server {
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (script.clone(), received.clone());
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = connections.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (s, r) = (s.clone(), r.clone());
                thread::spawn(move || serve(conn, &s, &r));
            }
        });
        Server {
            addr,
            script,
            received,
            connections,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn span_names(&self) -> Vec<String> {
        self.received().iter().flat_map(Received::spans).collect()
    }

    fn remaining_script(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

/// Serves requests on one kept-alive connection.
fn serve(conn: TcpStream, script: &Mutex<VecDeque<Fault>>, received: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let fault = script.lock().unwrap().pop_front().unwrap_or_else(ok);
        if let Fault::ResetMidRequest = fault {
            let mut part = vec![0; len / 2];
            let _ = reader.read_exact(&mut part);
            return; // drop the connection half-way
        }
        if let Fault::Early(status) = fault {
            received.lock().unwrap().push(Received {
                line: line.trim_end().to_owned(),
                headers,
                body: Vec::new(),
            });
            let _ = conn.write_all(
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
            // Let the answer leave before the close (which resets the
            // connection if a body is arriving).
            thread::sleep(Duration::from_millis(20));
            return;
        }
        let expects = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("expect") && v.eq_ignore_ascii_case("100-continue")
        });
        if let Fault::RefuseMidBody(status, limit) = fault {
            if expects && conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                return;
            }
            let mut part = vec![0; limit.min(len)];
            if reader.read_exact(&mut part).is_err() {
                return;
            }
            received.lock().unwrap().push(Received {
                line: line.trim_end().to_owned(),
                headers,
                body: part,
            });
            let _ = conn.write_all(
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
            return; // the unread body makes the close a reset
        }
        if let Fault::Continue = fault
            && expects
            && conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return;
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        received.lock().unwrap().push(Received {
            line: line.trim_end().to_owned(),
            headers,
            body,
        });
        let (status, extra, body) = match fault {
            Fault::Answer(status, extra, body) => (status, extra, body),
            Fault::Hang(d) => {
                thread::sleep(d);
                return;
            }
            Fault::Slow(d) => {
                thread::sleep(d);
                (200, vec![], vec![])
            }
            Fault::ResetMidRequest | Fault::Early(_) | Fault::RefuseMidBody(..) => unreachable!(),
            Fault::Continue => (200, vec![], vec![]),
            Fault::Raw(bytes) => {
                let _ = conn.write_all(&bytes);
                return;
            }
        };
        let mut resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: application/x-protobuf\r\n",
            body.len()
        );
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        if conn
            .write_all(resp.as_bytes())
            .and_then(|()| conn.write_all(&body))
            .is_err()
        {
            return;
        }
    }
}

fn transport(server: &Server) -> otlp_exporter::HttpTransportBuilder {
    HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
        otlp_exporter::ambient_authority(),
    ))
    .endpoint(server.endpoint())
    .timeout(Duration::from_secs(2))
    .retry(RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..RetryPolicy::default()
    })
}

/// Records `n` spans named `{prefix}{i}` through a pipeline, shuts it down,
/// and returns the final stats.
fn send(
    t: HttpTransport,
    prefix: &str,
    n: usize,
    timeout: Duration,
) -> (otlp_exporter::ShutdownReport, Duration) {
    let p = Pipeline::builder()
        .transport(t)
        .resource(Resource::new("http-test"))
        .max_export_batch_size(n.max(1))
        .export_timeout(timeout)
        .build()
        .unwrap();
    for i in 0..n {
        p.record(SpanData::new(format!("{prefix}{i}")));
    }
    let t0 = Instant::now();
    let r = p.shutdown(timeout + Duration::from_secs(5));
    (r, t0.elapsed())
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn delivers_protobuf_with_the_right_headers() {
    let server = Server::start(vec![]);
    let t = transport(&server)
        .header("x-api-key", "secret")
        .build()
        .unwrap();
    let (r, _) = send(t, "ok-", 5, Duration::from_secs(5));
    assert_eq!(r.stats.exported, 5);
    assert!(r.stats.is_balanced());
    let got = server.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert!(
        req.header("user-agent")
            .unwrap()
            .starts_with("otlp-exporter/")
    );
    assert_eq!(req.header("x-api-key"), Some("secret"));
    assert_eq!(
        req.header("expect"),
        None,
        "a small request goes out at once"
    );
    assert_eq!(server.span_names(), names("ok-", 5));
}

#[test]
fn connections_are_kept_alive_and_reused() {
    let server = Server::start(vec![]);
    let p = Pipeline::builder()
        .transport(transport(&server).build().unwrap())
        .max_export_batch_size(5)
        .build()
        .unwrap();
    for round in 0..4 {
        for i in 0..5 {
            p.record(SpanData::new(format!("keep-{round}-{i}")));
        }
        assert!(p.force_flush(Duration::from_secs(5)).completed);
    }
    p.shutdown(Duration::from_secs(5));
    assert_eq!(server.received().len(), 4, "one request per flush");
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection for all of them"
    );
}

#[test]
fn json_and_gzip() {
    let server = Server::start(vec![]);
    let t = transport(&server)
        .encoding(Encoding::Json)
        .compression(Compression::Gzip)
        .build()
        .unwrap();
    let (r, _) = send(t, "js-", 3, Duration::from_secs(5));
    assert_eq!(r.stats.exported, 3);
    let got = server.received();
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].header("content-encoding"), Some("gzip"));
    assert_eq!(server.span_names(), names("js-", 3));
}

#[test]
fn retryable_statuses_are_retried_honouring_retry_after() {
    let server = Server::start(vec![
        Fault::Answer(429, vec![("retry-after", "1".into())], vec![]),
        Fault::Answer(503, vec![], vec![]),
        Fault::Answer(502, vec![], vec![]),
        Fault::Answer(504, vec![], vec![]),
    ]);
    let t = transport(&server).build().unwrap();
    let t0 = Instant::now();
    let (r, _) = send(t, "retry-", 4, Duration::from_secs(10));
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    assert_eq!(r.stats.exported, 4);
    assert_eq!(r.stats.dropped.export_failed, 0);
    assert_eq!(server.received().len(), 5, "4 refusals, then the delivery");
    assert_eq!(server.remaining_script(), 0);
    let a = r
        .stats
        .attempts
        .expect("the HTTP transport reports its attempts");
    assert_eq!(
        (a.attempts, a.retries, a.retryable_status, a.succeeded),
        (5, 4, 4, 1),
        "{a:?}"
    );
}

#[test]
fn final_statuses_are_not_retried() {
    for status in [400u16, 401, 404, 413, 500] {
        let server = Server::start(vec![Fault::Answer(status, vec![], vec![])]);
        let t = transport(&server).build().unwrap();
        let (r, _) = send(t, "final-", 3, Duration::from_secs(5));
        assert_eq!(r.stats.exported, 0, "{status}");
        assert_eq!(r.stats.dropped.export_failed, 3, "{status}");
        assert_eq!(r.stats.failed_calls, 1, "{status}");
        assert!(r.stats.is_balanced());
        assert_eq!(server.received().len(), 1, "{status} must not be retried");
        let a = r.stats.attempts.unwrap();
        assert_eq!(
            (a.attempts, a.retries, a.final_status),
            (1, 0, 1),
            "{status}: {a:?}"
        );
    }
}

#[test]
fn partial_success_counts_rejected_spans_without_retrying() {
    // ExportTraceServiceResponse { partial_success { rejected_spans: 2, error_message: "no" } }
    let body = vec![0x0a, 0x06, 0x08, 0x02, 0x12, 0x02, b'n', b'o'];
    let server = Server::start(vec![Fault::Answer(200, vec![], body)]);
    let t = transport(&server).build().unwrap();
    let (r, _) = send(t, "partial-", 5, Duration::from_secs(5));
    assert_eq!(r.stats.dropped.rejected, 2);
    assert_eq!(r.stats.exported, 3);
    assert!(r.stats.is_balanced());
    assert_eq!(server.received().len(), 1);
}

#[test]
fn a_hanging_collector_never_holds_the_pipeline_past_its_timeouts() {
    let server = Server::start(
        (0..10)
            .map(|_| Fault::Hang(Duration::from_secs(20)))
            .collect(),
    );
    let t = transport(&server)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (r, took) = send(t, "hang-", 3, Duration::from_secs(1));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(r.stats.exported, 0);
    assert_eq!(r.stats.dropped.export_failed, 3);
    assert!(r.stats.is_balanced());
    let a = r.stats.attempts.unwrap();
    assert!(a.connection_failed >= 1 && a.succeeded == 0, "{a:?}");
}

#[test]
fn a_reset_connection_is_retried() {
    let server = Server::start(vec![Fault::ResetMidRequest]);
    let t = transport(&server).build().unwrap();
    let (r, _) = send(t, "reset-", 4, Duration::from_secs(5));
    assert_eq!(r.stats.exported, 4);
    assert_eq!(server.span_names(), names("reset-", 4));
    let a = r.stats.attempts.unwrap();
    assert_eq!(
        (a.connection_failed, a.retries, a.succeeded),
        (1, 1, 1),
        "{a:?}"
    );
}

#[test]
fn a_slow_collector_is_waited_for_within_the_timeout() {
    let server = Server::start(vec![Fault::Slow(Duration::from_millis(300))]);
    let t = transport(&server).build().unwrap();
    let (r, _) = send(t, "slow-", 2, Duration::from_secs(5));
    assert_eq!(r.stats.exported, 2);
}

#[test]
fn a_collector_that_comes_back_gets_the_queued_spans() {
    // Reserve a port, then close it: the collector is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
        otlp_exporter::ambient_authority(),
    ))
    .endpoint(format!("http://127.0.0.1:{port}"))
    .timeout(Duration::from_millis(500))
    .retry(RetryPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_attempts: 100,
        ..RetryPolicy::default()
    })
    .build()
    .unwrap();
    let p = Pipeline::builder()
        .transport(t)
        .max_export_batch_size(10)
        .export_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..30 {
        p.record(SpanData::new(format!("back-{i}")));
    }
    thread::sleep(Duration::from_millis(700));
    let server = Server::start_on(
        TcpListener::bind(("127.0.0.1", port)).expect("port still free"),
        vec![],
    );
    let flush = p.force_flush(Duration::from_secs(15));
    assert!(flush.completed);
    let s = p.shutdown(Duration::from_secs(5)).stats;
    assert_eq!(s.exported, 30, "{s:?}");
    assert_eq!(s.dropped.export_failed, 0);
    let mut got = server.span_names();
    got.sort();
    let mut want = names("back-", 30);
    want.sort();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// A hostile but legitimate collector (issue 12): redirects, odd answers,
// odd bodies. Each runs in its own process under a watchdog.

const WATCHDOG: Duration = Duration::from_secs(60);

fn one_request(spans: usize, encoding: Encoding) -> otlp_exporter::EncodedRequest {
    let spans: Vec<SpanData> = (0..spans)
        .map(|i| SpanData::new(format!("direct-{i}")))
        .collect();
    otlp_exporter::Encoder::new(Resource::new("http-test"))
        .encode(&spans, encoding)
        .requests
        .remove(0)
}

#[test]
fn redirects_are_never_followed_never_carry_headers_and_never_count_as_delivery() {
    test_watchdog::isolate(WATCHDOG, || {
        for status in [301u16, 302, 303, 307, 308] {
            let elsewhere = Server::start(vec![]);
            let location = format!("{}/v1/traces", elsewhere.endpoint());
            let server = Server::start(vec![Fault::Answer(
                status,
                vec![("location", location.clone())],
                vec![],
            )]);
            let t = transport(&server)
                .header("api-key", "SECRET-KEY")
                .build()
                .unwrap();
            let (r, _) = send(t, "redirect-", 10, Duration::from_secs(5));
            assert_eq!(r.stats.exported, 0, "{status}: {:?}", r.stats);
            assert_eq!(r.stats.dropped.export_failed, 10, "{status}");
            assert!(r.stats.is_balanced(), "{status}");
            assert_eq!(server.received().len(), 1, "{status}: not retried");
            let a = r.stats.attempts.unwrap();
            assert_eq!(
                (a.attempts, a.final_status, a.succeeded),
                (1, 1, 0),
                "{status}: {a:?}"
            );
            assert_eq!(
                elsewhere
                    .connections
                    .load(std::sync::atomic::Ordering::SeqCst),
                0,
                "{status}: the other origin was contacted"
            );
            assert!(elsewhere.received().is_empty(), "{status}");

            // The failure says what happened: status and Location.
            let server = Server::start(vec![Fault::Answer(
                status,
                vec![("location", location.clone())],
                vec![],
            )]);
            let t = transport(&server)
                .header("api-key", "SECRET-KEY")
                .build()
                .unwrap();
            let result = otlp_exporter::Transport::export(
                &t,
                &one_request(3, Encoding::Protobuf),
                Instant::now() + Duration::from_secs(5),
            );
            let otlp_exporter::ExportResult::Failed(message) = result else {
                panic!("{status}: {result:?}");
            };
            assert!(
                message.contains(&status.to_string())
                    && message.contains(&location)
                    && message.contains("redirect"),
                "{message}"
            );
            assert!(!message.contains("SECRET-KEY"), "{message}");
        }
    });
}

#[test]
fn a_same_origin_redirect_is_refused_too() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![Fault::Answer(
            308,
            vec![("location", "/elsewhere".into())],
            vec![],
        )]);
        let t = transport(&server).build().unwrap();
        let (r, _) = send(t, "same-", 4, Duration::from_secs(5));
        assert_eq!((r.stats.exported, r.stats.dropped.export_failed), (0, 4));
        assert_eq!(server.received().len(), 1, "one POST, nothing followed");
        assert!(server.received()[0].line.starts_with("POST /v1/traces "));
    });
}

#[test]
fn odd_success_answers_count_what_the_status_says() {
    test_watchdog::isolate(WATCHDOG, || {
        // 204, a 2 MiB body, a body cut short, a 202 with garbage.
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nabc".to_vec();
        let server = Server::start(vec![
            Fault::Answer(204, vec![], vec![]),
            Fault::Answer(200, vec![], vec![0x0a; 2 << 20]),
            Fault::Raw(cut),
            Fault::Answer(202, vec![], b"\xff\xff\xff garbage".to_vec()),
        ]);
        let p = Pipeline::builder()
            .transport(transport(&server).build().unwrap())
            .max_export_batch_size(3)
            .build()
            .unwrap();
        for round in 0..4 {
            for i in 0..3 {
                p.record(SpanData::new(format!("odd-{round}-{i}")));
            }
            assert!(p.force_flush(Duration::from_secs(10)).completed);
        }
        let s = p.shutdown(Duration::from_secs(5)).stats;
        assert_eq!(s.exported, 12, "{s:?}");
        assert!(s.is_balanced());
        assert_eq!(server.received().len(), 4, "none retried");
    });
}

#[test]
fn a_collector_that_closes_before_answering_is_retried() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![
            Fault::Raw(Vec::new()),
            Fault::Raw(b"HTTP/1.1 2".to_vec()),
            Fault::Raw(b"garbage\r\n\r\n".to_vec()),
        ]);
        let t = transport(&server).build().unwrap();
        let (r, _) = send(t, "close-", 5, Duration::from_secs(10));
        assert_eq!(r.stats.exported, 5, "{:?}", r.stats);
        let got = server.received();
        assert_eq!(got.len(), 4, "three cut answers, then a delivery");
        assert_eq!(got[3].spans(), names("close-", 5));
        let a = r.stats.attempts.unwrap();
        assert_eq!((a.connection_failed, a.succeeded), (3, 1), "{a:?}");
    });
}

#[test]
fn hostile_partial_success_answers_never_over_count() {
    test_watchdog::isolate(WATCHDOG, || {
        // Protobuf: rejected_spans = -1 (an int64, a 10-byte varint).
        let mut negative = vec![0x0a, 11, 0x08];
        negative.extend_from_slice(&[0xff; 9]);
        negative.push(0x01);
        let server = Server::start(vec![Fault::Answer(200, vec![], negative)]);
        let t = transport(&server).build().unwrap();
        let (r, _) = send(t, "neg-", 4, Duration::from_secs(5));
        assert_eq!((r.stats.exported, r.stats.dropped.rejected), (4, 0));
        assert!(r.stats.is_balanced());

        // JSON: the issue's null count with a number in the message.
        for (body, rejected) in [
            (
                r#"{"partialSuccess":{"rejectedSpans":null,"errorMessage":"3 were bad"}}"#,
                0,
            ),
            (
                r#"{"partialSuccess":{"errorMessage":"limit 100, got 7"}}"#,
                0,
            ),
            (r#"{"partialSuccess":{"rejectedSpans":"-3"}}"#, 0),
            (
                r#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"9"}}"#,
                2,
            ),
            (r#"{"partialSuccess":{"rejectedSpans":1000000}}"#, 5),
        ] {
            let server = Server::start(vec![Fault::Answer(200, vec![], body.as_bytes().to_vec())]);
            let t = transport(&server).encoding(Encoding::Json).build().unwrap();
            let (r, _) = send(t, "json-", 5, Duration::from_secs(5));
            assert_eq!(r.stats.dropped.rejected, rejected, "{body}");
            assert_eq!(r.stats.exported, 5 - rejected, "{body}");
            assert!(r.stats.is_balanced(), "{body}");
        }
    });
}

#[test]
fn a_retry_after_date_in_the_far_future_does_not_crash_the_worker() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![
            Fault::Answer(
                503,
                vec![(
                    "retry-after",
                    "Sun, 06 Nov 99999999999999 08:49:37 GMT".into(),
                )],
                vec![],
            ),
            Fault::Answer(
                429,
                vec![("retry-after", "99999999999999999999".into())],
                vec![],
            ),
        ]);
        let t = transport(&server).build().unwrap();
        let (r, _) = send(t, "future-", 3, Duration::from_secs(5));
        // The second refusal asks for more than the deadline allows: the
        // export gives up in time; either way nothing is lost uncounted.
        assert!(r.completed, "{r:?}");
        assert!(r.stats.is_balanced());
        assert_eq!(r.stats.exported + r.stats.dropped.export_failed, 3);
        assert!(server.received().len() >= 2);
    });
}

#[test]
fn a_hostile_retry_policy_does_not_crash_the_worker() {
    test_watchdog::isolate(WATCHDOG, || {
        for multiplier in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
            let server = Server::start(vec![
                Fault::Answer(503, vec![], vec![]),
                Fault::Answer(503, vec![], vec![]),
            ]);
            let t = transport(&server)
                .retry(RetryPolicy {
                    initial_backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_millis(50),
                    multiplier,
                    max_attempts: 5,
                })
                .build()
                .unwrap();
            let (r, _) = send(t, "policy-", 2, Duration::from_secs(5));
            assert_eq!(r.stats.exported, 2, "{multiplier}: {:?}", r.stats);
        }
        let server = Server::start(vec![Fault::Answer(503, vec![], vec![])]);
        let t = transport(&server)
            .retry(RetryPolicy {
                initial_backoff: Duration::MAX,
                max_backoff: Duration::MAX,
                multiplier: 2.0,
                max_attempts: u32::MAX,
            })
            .build()
            .unwrap();
        let (r, _) = send(t, "maxwait-", 2, Duration::from_secs(1));
        assert_eq!(r.stats.dropped.export_failed, 2, "{:?}", r.stats);
        assert!(r.stats.is_balanced());
    });
}

#[test]
fn attribute_text_never_reaches_the_request_headers() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![]);
        let evil = "x\r\nx-injected: 1\r\n\r\nPOST /evil HTTP/1.1";
        let mut resource = Resource::new(evil);
        resource.set(otlp_exporter::KeyValue::new("host.name", evil));
        let p = Pipeline::builder()
            .transport(transport(&server).build().unwrap())
            .resource(resource)
            .build()
            .unwrap();
        let mut span = SpanData::new(evil);
        span.attributes
            .push(otlp_exporter::KeyValue::new(evil, evil));
        p.record(span);
        let s = p.shutdown(Duration::from_secs(5)).stats;
        assert_eq!(s.exported, 1);
        let got = server.received();
        assert_eq!(got.len(), 1, "one request, not two");
        assert!(got[0].header("x-injected").is_none());
        assert_eq!(server.span_names(), [evil.to_owned()]);
    });
}

#[test]
fn an_endpoint_with_a_query_gets_the_signal_path_before_it() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![]);
        let t = transport(&server)
            .endpoint(format!("HTTP://{}/prefix?tenant=a", server.addr))
            .build()
            .unwrap();
        let (r, _) = send(t, "query-", 2, Duration::from_secs(5));
        assert_eq!(r.stats.exported, 2);
        assert_eq!(
            server.received()[0].line,
            "POST /prefix/v1/traces?tenant=a HTTP/1.1"
        );
    });
}

#[test]
fn a_header_value_with_a_newline_is_refused_when_built() {
    let err = HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
        otlp_exporter::ambient_authority(),
    ))
    .endpoint("http://127.0.0.1:1")
    .header("api-key", "SECRET\nx-other: 1")
    .build()
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("api-key") && text.contains("control character"),
        "{text}"
    );
    assert!(!text.contains("SECRET"), "{text}");
}

/// A header that would contradict one the transport writes (the body's
/// length or framing, its type or encoding, the connection's handling) is
/// refused when the transport is built, in any case: sent, a second
/// `Content-Length` made the collector read a cut body, and a second
/// `Content-Type` misnamed it.
#[test]
fn a_header_the_transport_writes_itself_is_refused_when_built() {
    for name in [
        "Content-Length",
        "transfer-encoding",
        "CONTENT-TYPE",
        "Content-Encoding",
        "Connection",
        "Expect",
    ] {
        let err = HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
            otlp_exporter::ambient_authority(),
        ))
        .endpoint("http://127.0.0.1:1")
        .header(name, "5")
        .build()
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(name) && text.contains("sets this header itself"),
            "{text}"
        );
    }
    // Others (a proxy's `Host`, an API key) are still sent.
    assert!(
        HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
            otlp_exporter::ambient_authority(),
        ))
        .endpoint("http://127.0.0.1:1")
        .header("Host", "collector.internal")
        .header("api-key", "k")
        .build()
        .is_ok()
    );
}

#[test]
fn a_compressed_answer_that_expands_without_bound_is_read_only_so_far() {
    test_watchdog::isolate(WATCHDOG, || {
        // 32 MiB of zeros, gzipped to a few dozen KiB, answered as a 200.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..32 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        let server = Server::start(vec![Fault::Answer(
            200,
            vec![("content-encoding", "gzip".into())],
            bomb,
        )]);
        let t = transport(&server).build().unwrap();
        let (r, _) = send(t, "bomb-", 3, Duration::from_secs(10));
        assert_eq!(r.stats.exported, 3, "{:?}", r.stats);
        assert!(r.stats.is_balanced());
    });
}

#[test]
fn every_header_value_accepted_at_build_is_sent() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![]);
        let t = transport(&server)
            .header("x-tab", "a\tb")
            .header("x-utf8", "café ☕")
            .header("x-empty", "")
            .header("X-Upper", "v")
            .build()
            .unwrap();
        let (r, _) = send(t, "hdr-", 2, Duration::from_secs(5));
        assert_eq!(r.stats.exported, 2, "{:?}", r.stats);
        let got = &server.received()[0];
        assert_eq!(got.header("x-tab"), Some("a\tb"));
        assert_eq!(got.header("x-upper"), Some("v"));
    });
}

/// Found by review: a name repeated in `OTEL_EXPORTER_OTLP_HEADERS`
/// (`authorization=Bearer old,authorization=Bearer new`) was sent twice,
/// and a collector's bearer auth read the first, stale value; the official
/// SDKs read the list into a map and send the last value alone. Builder
/// repeats are still all sent, as documented.
#[test]
fn a_header_repeated_in_one_variable_is_sent_once_with_its_last_value() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![]);
        let env = vars(vec![
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20old,x-a=1,Authorization=Bearer%20new,x-b=2,X-A=3".into(),
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-t=1,x-t=2".into()),
        ]);
        let t = transport(&server)
            .header("x-builder", "one")
            .header("x-builder", "two")
            .build_with(env)
            .unwrap();
        let (r, _) = send(t, "dup-", 1, Duration::from_secs(5));
        assert_eq!(r.stats.exported, 1, "{:?}", r.stats);
        let got = &server.received()[0];
        let all = |name: &str| -> Vec<&str> {
            got.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(all("authorization"), ["Bearer new"]);
        assert_eq!(all("x-a"), ["3"]);
        assert_eq!(all("x-b"), ["2"]);
        assert_eq!(all("x-t"), ["2"]);
        assert_eq!(all("x-builder"), ["one", "two"]);
    });
}

#[test]
fn an_export_whose_deadline_has_passed_sends_nothing_and_says_so() {
    let server = Server::start(vec![]);
    let t = transport(&server).build().unwrap();
    let result = otlp_exporter::Transport::export(
        &t,
        &one_request(2, Encoding::Protobuf),
        Instant::now() - Duration::from_millis(1),
    );
    let otlp_exporter::ExportResult::Failed(message) = result else {
        panic!("{result:?}");
    };
    assert!(message.contains("deadline"), "{message}");
    assert!(server.received().is_empty());
    let a = t.attempts();
    assert_eq!((a.attempts, a.retries), (0, 0), "{a:?}");
}

/// A collector that accepts the connection and never reads: the request
/// (larger than the socket buffers) cannot be sent; the attempt timeout
/// bounds it and the spans are counted failed.
#[test]
fn a_collector_that_never_reads_the_request_is_timed_out() {
    test_watchdog::isolate(WATCHDOG, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let h = held.clone();
        thread::spawn(move || {
            for conn in listener.incoming().take(20) {
                // Keep the connection open, never read from it.
                h.lock().unwrap().push(conn);
            }
        });
        let t = HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
            otlp_exporter::ambient_authority(),
        ))
        .endpoint(format!("http://{addr}"))
        .timeout(Duration::from_millis(300))
        .retry(RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            max_attempts: 3,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
        let p = Pipeline::builder()
            .transport(t)
            .max_export_batch_size(64)
            .export_timeout(Duration::from_secs(3))
            // A byte budget for spans larger than a slot (`x 512`: 32 MiB)
            // that holds the 64.
            .max_queue_size(1 << 16)
            .build()
            .unwrap();
        for i in 0..64 {
            // 64 x 256 KiB: far more than the socket buffers hold.
            p.record(SpanData::new(format!("{i}-{}", "x".repeat(256 * 1024))));
        }
        let r = p.shutdown(Duration::from_secs(20));
        assert!(r.completed, "{r:?}");
        assert_eq!(
            (r.stats.exported, r.stats.dropped.export_failed),
            (0, 64),
            "{:?}",
            r.stats
        );
        assert!(r.stats.is_balanced());
        let a = r.stats.attempts.unwrap();
        assert!(a.connection_failed >= 1 && a.succeeded == 0, "{a:?}");
    });
}

/// A collector answering 503 with `Retry-After: 0`, or with a date already
/// past (its clock behind): the exporter waits its backoff between tries
/// all the same (before: thousands of requests a second for as long as it
/// lasted).
#[test]
fn a_retry_after_of_zero_or_in_the_past_is_no_retry_storm() {
    test_watchdog::isolate(WATCHDOG, || {
        for after in ["0", "Thu, 01 Jan 2015 00:00:00 GMT"] {
            let refusal = Fault::Answer(503, vec![("retry-after", after.to_owned())], vec![]);
            let server = Server::start(vec![refusal; 100_000]);
            let t = HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
                otlp_exporter::ambient_authority(),
            ))
            .endpoint(server.endpoint())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
            let p = Pipeline::builder()
                .transport(t)
                .resource(Resource::new("http-test"))
                .scheduled_delay(Duration::from_millis(10))
                .build()
                .unwrap();
            for i in 0..10 {
                p.record(SpanData::new(format!("s{i}")));
            }
            thread::sleep(Duration::from_secs(1));
            let requests = server.received().len();
            let r = p.shutdown(Duration::from_secs(5));
            // The default policy's backoff (100 ms, doubling, both inside an
            // export and between the pipeline's tries): a handful in a
            // second, not thousands.
            assert!(requests <= 30, "{after}: {requests} requests in 1 s");
            assert!(requests >= 2, "{after}: retried at all ({requests})");
            assert!(r.stats.is_balanced(), "{:?}", r.stats);
        }
    });
}

/// Two export threads and a collector slower than half the export timeout:
/// a batch that waits for a free export thread gets its whole timeout once
/// it starts (before: its deadline was set when the batch was made, and
/// the wait used it up, so batches were given up before they were sent),
/// and every span is delivered.
#[test]
fn a_batch_that_waits_for_an_export_thread_still_gets_its_whole_timeout() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![Fault::Slow(Duration::from_millis(700)); 12]);
        let t = transport(&server)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let p = Pipeline::builder()
            .transport(t)
            .resource(Resource::new("http-test"))
            .max_concurrent_exports(2)
            .max_export_batch_size(10)
            .export_timeout(Duration::from_millis(1_000))
            .scheduled_delay(Duration::from_millis(5))
            .build()
            .unwrap();
        for i in 0..120 {
            p.record(SpanData::new(format!("s{i}")));
        }
        let r = p.shutdown(Duration::from_secs(30));
        assert!(r.completed);
        assert_eq!(r.stats.dropped.total(), 0, "{:?}", r.stats);
        assert_eq!(r.stats.exported, 120, "{:?}", r.stats);
        let mut got = server.span_names();
        got.sort();
        let mut want = names("s", 120);
        want.sort();
        assert_eq!(got, want);
    });
}

/// A partial success whose error message makes the answer longer than the
/// 64 KiB read of it: the rejected count at its start still counts (before:
/// the whole answer was refused as too long, and the rejected spans were
/// counted as exported). Protobuf and JSON.
#[test]
fn a_partial_success_with_a_long_message_still_counts_its_rejected_spans() {
    test_watchdog::isolate(WATCHDOG, || {
        let long = "x".repeat(70_000);
        // partial_success { rejected_spans: 2, error_message: long }
        let varint = |mut v: usize, out: &mut Vec<u8>| {
            while v >= 0x80 {
                out.push(v as u8 | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        };
        let mut ps = vec![0x08, 2, 0x12];
        varint(long.len(), &mut ps);
        ps.extend_from_slice(long.as_bytes());
        let mut proto = vec![0x0a];
        varint(ps.len(), &mut proto);
        proto.extend(ps);
        let json =
            format!(r#"{{"partialSuccess":{{"rejectedSpans":"2","errorMessage":"{long}"}}}}"#);
        for (encoding, body) in [
            (Encoding::Protobuf, proto),
            (Encoding::Json, json.into_bytes()),
        ] {
            let server = Server::start(vec![Fault::Answer(200, vec![], body)]);
            let t = transport(&server).encoding(encoding).build().unwrap();
            let (r, _) = send(t, "long-", 10, Duration::from_secs(5));
            assert_eq!(
                (r.stats.exported, r.stats.dropped.rejected),
                (8, 2),
                "{encoding:?}: {:?}",
                r.stats
            );
            assert!(r.stats.is_balanced());
            assert_eq!(server.received().len(), 1, "not retried");
        }
    });
}

// ---------------------------------------------------------------------------
// Large requests and collectors that refuse them from their headers.

/// `n` spans of about 100 KB each (their names), named `{prefix}{i}-xxx...`.
fn big_spans(prefix: &str, n: usize) -> Vec<SpanData> {
    let pad = "x".repeat(100_000);
    (0..n)
        .map(|i| SpanData::new(format!("{prefix}{i}-{pad}")))
        .collect()
}

fn big_request(prefix: &str, n: usize) -> otlp_exporter::EncodedRequest {
    otlp_exporter::Encoder::new(Resource::new("http-test"))
        .encode(&big_spans(prefix, n), Encoding::Protobuf)
        .requests
        .remove(0)
}

/// A collector that refuses a request over its size limit from the
/// headers (a 413, then close, the body unread, as nginx, Envoy and Go
/// servers do): the export fails at once on that final status, in one
/// attempt, nothing sent again. Before, the upload was cut by the closed
/// connection, read as a connection failure and retried, the same 16 MB
/// sent again and again until the export timeout, and the pipeline then
/// kept the batch and tried again for `retry_max_elapsed`. Found by a
/// reviewer.
#[test]
fn a_large_request_refused_from_its_headers_fails_at_once_and_is_not_sent_again() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![Fault::Early(413); 1000]);
        let p = Pipeline::builder()
            .transport(transport(&server).build().unwrap())
            .resource(Resource::new("http-test"))
            .max_export_batch_size(160)
            .export_timeout(Duration::from_secs(3))
            .retry_max_elapsed(Duration::from_secs(3))
            // A byte budget for spans larger than a slot (`x 512`: 32 MiB)
            // that holds the 160.
            .max_queue_size(1 << 16)
            .build()
            .unwrap();
        for span in big_spans("big-", 160) {
            p.record(span); // one request of about 16 MB
        }
        let t0 = Instant::now();
        let r = p.shutdown(Duration::from_secs(20));
        let took = t0.elapsed();
        assert!(r.completed, "{r:?}");
        assert_eq!(
            (r.stats.exported, r.stats.dropped.export_failed),
            (0, 160),
            "{:?}",
            r.stats
        );
        assert!(r.stats.is_balanced());
        let a = r.stats.attempts.unwrap();
        assert_eq!(
            (a.attempts, a.retries, a.final_status, a.connection_failed),
            (1, 0, 1, 0),
            "a 413 is a final status, not a connection failure: {a:?}"
        );
        let got = server.received();
        assert_eq!(got.len(), 1, "a 413 is never sent again");
        assert_eq!(got[0].header("expect"), Some("100-continue"));
        let error = p.last_error().unwrap();
        assert!(error.contains("HTTP 413"), "{error}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
    });
}

/// A large request to a collector that answers `100 Continue` is sent at
/// once (no wait for the expectation's timeout); to one that ignores the
/// expectation and just waits for the body, after that timeout: delivered
/// whole either way.
#[test]
fn a_large_request_reaches_collectors_that_answer_100_continue_or_ignore_it() {
    test_watchdog::isolate(WATCHDOG, || {
        for (fault, answers_continue) in [(Fault::Continue, true), (ok(), false)] {
            let server = Server::start(vec![fault]);
            let t = transport(&server)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let t0 = Instant::now();
            let result = otlp_exporter::Transport::export(
                &t,
                &big_request("big-", 20),
                Instant::now() + Duration::from_secs(10),
            );
            let took = t0.elapsed();
            assert!(
                matches!(result, otlp_exporter::ExportResult::Success),
                "{answers_continue}: {result:?}"
            );
            let got = server.received();
            assert_eq!(got.len(), 1, "{answers_continue}");
            assert_eq!(got[0].header("expect"), Some("100-continue"));
            let want: Vec<String> = big_spans("big-", 20)
                .into_iter()
                .map(|s| s.name.to_string())
                .collect();
            assert_eq!(got[0].spans(), want, "{answers_continue}");
            let a = t.attempts();
            assert_eq!((a.attempts, a.succeeded), (1, 1), "{a:?}");
            if answers_continue {
                // Waiting out the expectation would take a second.
                assert!(took < Duration::from_secs(1), "took {took:?}");
            }
        }
    });
}

/// A collector (or a proxy before it) that answers the expectation with
/// `417 Expectation Failed` gets the request again at once without it, and
/// no expectation after that.
#[test]
fn a_417_to_the_expectation_sends_the_request_again_without_it() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![Fault::Early(417)]);
        let t = transport(&server).build().unwrap();
        for round in 0..2 {
            let result = otlp_exporter::Transport::export(
                &t,
                &big_request("big-", 20),
                Instant::now() + Duration::from_secs(10),
            );
            assert!(
                matches!(result, otlp_exporter::ExportResult::Success),
                "{round}: {result:?}"
            );
        }
        let got = server.received();
        let expects: Vec<Option<&str>> = got.iter().map(|r| r.header("expect")).collect();
        assert_eq!(expects, [Some("100-continue"), None, None]);
        assert!(got[0].body.is_empty());
        assert_eq!(got[1].spans().len(), 20);
        assert_eq!(got[2].spans().len(), 20);
        let a = t.attempts();
        assert_eq!(
            (a.attempts, a.retries, a.retryable_status, a.succeeded),
            (3, 1, 1, 2),
            "{a:?}"
        );
    });
}

// ---------------------------------------------------------------------------
// Endpoint URLs.

/// User information in the endpoint (`http://alice:s3cret@host`) is sent as
/// `Authorization: Basic`, and the password is never shown: not in
/// `url()`, `Debug`, an export error (`Pipeline::last_error`) or a
/// configuration error. Before, all of these printed it; and a URL without
/// a port was refused, its `user:password` read as `host:port`. Found by a
/// reviewer.
#[test]
fn an_endpoint_password_is_sent_as_basic_auth_and_never_shown() {
    test_watchdog::isolate(WATCHDOG, || {
        let net = || otlp_exporter::NetAccess::from_ambient(otlp_exporter::ambient_authority());
        let server = Server::start(vec![Fault::Answer(401, vec![], vec![])]);
        let builder = transport(&server).endpoint(format!("http://alice:s3cret@{}", server.addr));
        let shown = format!("{builder:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("alice:***@"),
            "{shown}"
        );
        let t = builder.build().unwrap();
        assert_eq!(
            t.url(),
            format!("http://alice:***@{}/v1/traces", server.addr)
        );
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("alice:***@"),
            "{shown}"
        );
        let p = Pipeline::builder().transport(t).build().unwrap();
        p.record(SpanData::new("s"));
        assert!(p.force_flush(Duration::from_secs(5)).completed);
        let error = p.last_error().unwrap();
        assert!(
            error.contains("401") && error.contains("alice:***@") && !error.contains("s3cret"),
            "{error}"
        );
        p.shutdown(Duration::from_secs(5));
        assert_eq!(
            server.received()[0].header("authorization"),
            Some("Basic YWxpY2U6czNjcmV0"),
            "alice:s3cret"
        );

        // No answer at all.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = HttpTransport::builder(net())
            .endpoint(format!("http://alice:s3cret@127.0.0.1:{port}"))
            .retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            })
            .build_with(|_| None)
            .unwrap();
        let result = otlp_exporter::Transport::export(
            &t,
            &one_request(1, Encoding::Protobuf),
            Instant::now() + Duration::from_secs(5),
        );
        let otlp_exporter::ExportResult::Retryable { reason, .. } = result else {
            panic!("{result:?}");
        };
        assert!(
            reason.contains("no answer from http://alice:***@") && !reason.contains("s3cret"),
            "{reason}"
        );

        // Configuration errors, from the environment and the builder.
        let env = |url: &'static str| {
            move |var: &'static str| (var == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| url.to_owned())
        };
        let error = HttpTransport::builder(net())
            .build_with(env("http://alice:s3cret@collector:99999"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_ENDPOINT=\"http://alice:***@collector:99999\"")
                && error.contains("port")
                && !error.contains("s3cret"),
            "{error}"
        );
        for bad in [
            "alice:s3cret@collector",
            "http://alice:s3cret@collector/p#f",
            // A password holding an unencoded `/`, `?` or `#` (malformed:
            // the authority ends there, so the `@` was not seen and the
            // password was shown; a reviewer of the first fix).
            "http://alice:s3cret/x@collector:4318",
            "http://alice:s3cret?x@collector:4318",
            "http://alice:s3cret#x@collector:4318",
        ] {
            let error = HttpTransport::builder(net())
                .endpoint(bad)
                .build_with(|_| None)
                .unwrap_err()
                .to_string();
            assert!(
                !error.contains("s3cret") && error.contains("alice:***@"),
                "{error}"
            );
        }

        // Without a port, and with a user name alone (often a token).
        let url = |env_value: &'static str| {
            HttpTransport::builder(net())
                .build_with(env(env_value))
                .map(|t| t.url().to_owned())
        };
        assert_eq!(
            url("http://alice:s3cret@collector").unwrap(),
            "http://alice:***@collector/v1/traces"
        );
        assert_eq!(
            url("https://alice:pa:ss@w0rd@collector:4318/otlp").unwrap(),
            "https://alice:***@collector:4318/otlp/v1/traces"
        );
        assert_eq!(
            url("http://t0ken@collector:4318").unwrap(),
            "http://***@collector:4318/v1/traces"
        );
        assert!(url("http://alice:s3cret@").is_err());
        assert!(url("http://alice:s3cret@:4318").is_err());
    });
}

/// An endpoint path or query that is not ASCII, or holds spaces, is sent
/// percent-encoded: an HTTP request line is ASCII (RFC 9112). Before,
/// `/é` went out as raw UTF-8 on the request line (and a space was refused
/// as "not a valid URL"). Found by a reviewer.
#[test]
fn an_endpoint_path_that_is_not_ascii_is_sent_percent_encoded() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![]);
        for (endpoint, line) in [
            ("/\u{e9}", "POST /%C3%A9/v1/traces HTTP/1.1"),
            (
                "/caf\u{e9} bar?team=z\u{fc}rich&x=a b",
                "POST /caf%C3%A9%20bar/v1/traces?team=z%C3%BCrich&x=a%20b HTTP/1.1",
            ),
            (
                "/already%20encoded",
                "POST /already%20encoded/v1/traces HTTP/1.1",
            ),
        ] {
            let t = transport(&server)
                .endpoint(format!("http://{}{endpoint}", server.addr))
                .build()
                .unwrap();
            let path = line
                .strip_prefix("POST ")
                .and_then(|l| l.strip_suffix(" HTTP/1.1"))
                .unwrap();
            assert_eq!(t.url(), format!("http://{}{path}", server.addr));
            let result = otlp_exporter::Transport::export(
                &t,
                &one_request(1, Encoding::Protobuf),
                Instant::now() + Duration::from_secs(5),
            );
            assert!(
                matches!(result, otlp_exporter::ExportResult::Success),
                "{result:?}"
            );
            assert_eq!(server.received().last().unwrap().line, line);
        }
        // The traces endpoint is encoded too.
        let t = transport(&server)
            .traces_endpoint(format!("http://{}/t\u{e9}", server.addr))
            .build()
            .unwrap();
        assert_eq!(t.url(), format!("http://{}/t%C3%A9", server.addr));
        // A control character or a host that is not ASCII is refused, saying why.
        let error = transport(&server)
            .endpoint("http://collector/a\tb")
            .build()
            .unwrap_err()
            .to_string();
        assert!(error.contains("control character"), "{error}");
        let error = transport(&server)
            .endpoint("http://b\u{fc}cher.example:4318")
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("not ASCII") && error.contains("xn--"),
            "{error}"
        );
    });
}

// Found by review: user information, proxies, TLS settings.

fn net() -> otlp_exporter::NetAccess {
    otlp_exporter::NetAccess::from_ambient(otlp_exporter::ambient_authority())
}

fn vars(list: Vec<(&'static str, String)>) -> impl Fn(&'static str) -> Option<String> + Clone {
    move |k| list.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

fn export_once(t: &HttpTransport) -> otlp_exporter::ExportResult {
    otlp_exporter::Transport::export(
        t,
        &one_request(1, Encoding::Protobuf),
        Instant::now() + Duration::from_secs(10),
    )
}

#[test]
fn percent_encoded_user_information_is_decoded_into_basic_auth() {
    let server = Server::start(vec![]);
    let t = transport(&server)
        .endpoint(format!("http://us%40er:p%2Fss%3A@{}", server.addr))
        .build_with(|_| None)
        .unwrap();
    assert_eq!(export_once(&t), otlp_exporter::ExportResult::Success);
    let got = server.received();
    // base64("us@er:p/ss:"), as curl and Go send it.
    assert_eq!(
        got[0].header("authorization"),
        Some("Basic dXNAZXI6cC9zczo=")
    );
    assert_eq!(got[0].line, "POST /v1/traces HTTP/1.1");
    // A user's own Authorization header wins, sent once.
    let t = transport(&server)
        .endpoint(format!("http://u:p@{}", server.addr))
        .header("Authorization", "Bearer tok")
        .build_with(|_| None)
        .unwrap();
    assert_eq!(export_once(&t), otlp_exporter::ExportResult::Success);
    let got = server.received();
    let auth: Vec<_> = got[1]
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auth, ["Bearer tok"]);
}

/// A CONNECT proxy double: records each CONNECT line, answers 200 and then
/// serves the tunnelled requests as a collector would.
struct Proxy {
    addr: SocketAddr,
    connects: Arc<Mutex<Vec<String>>>,
    collector: Server,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Never listens itself: only its script and log are used.
        let collector = Server::start(vec![]);
        let connects = Arc::new(Mutex::new(Vec::new()));
        let (c, s, r) = (
            connects.clone(),
            collector.script.clone(),
            collector.received.clone(),
        );
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let (c, s, r) = (c.clone(), s.clone(), r.clone());
                thread::spawn(move || {
                    // The head byte by byte: nothing of the tunnel is read.
                    let mut head = Vec::new();
                    let mut b = [0u8];
                    while !head.ends_with(b"\r\n\r\n") {
                        if conn.read(&mut b).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    c.lock()
                        .unwrap()
                        .push(head.lines().next().unwrap_or("").to_owned());
                    if conn
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .is_ok()
                    {
                        serve(conn, &s, &r);
                    }
                });
            }
        });
        Proxy {
            addr,
            connects,
            collector,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connects(&self) -> Vec<String> {
        self.connects.lock().unwrap().clone()
    }
}

#[test]
fn a_proxy_for_any_scheme_never_captures_a_loopback_collector() {
    // Found by review: HTTPS_PROXY (or ALL_PROXY) took plain http://
    // requests to 127.0.0.1, API keys included, to the proxy. Here through
    // the real environment, as an application gets it.
    test_watchdog::isolate(WATCHDOG, || {
        let proxy = Proxy::start();
        let collector = Server::start(vec![]);
        for var in ["NO_PROXY", "no_proxy"] {
            // SAFETY: this test runs alone in its own child process.
            unsafe { std::env::remove_var(var) }
        }
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "HTTP_PROXY",
            "http_proxy",
        ] {
            // SAFETY: as above.
            unsafe { std::env::set_var(var, proxy.url()) }
        }
        for endpoint in [
            collector.endpoint(),
            format!("http://localhost:{}", collector.addr.port()),
        ] {
            let t = transport(&collector)
                .endpoint(endpoint)
                .header("api-key", "SECRET")
                .build()
                .unwrap();
            assert!(format!("{t:?}").contains("proxy: None"), "{t:?}");
            assert_eq!(export_once(&t), otlp_exporter::ExportResult::Success);
        }
        assert_eq!(collector.received().len(), 2);
        assert_eq!(proxy.connects(), Vec::<String>::new());
    });
}

#[test]
fn the_proxy_is_chosen_by_the_endpoints_scheme_and_no_proxy_is_honoured() {
    let proxy = Proxy::start();
    let build = |env: Vec<(&'static str, String)>| {
        HttpTransport::builder(net())
            .endpoint("http://collector.invalid:4318")
            .header("api-key", "k")
            .timeout(Duration::from_secs(3))
            .retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            })
            .build_with(vars(env))
            .unwrap()
    };
    // HTTP_PROXY carries an http request, in a CONNECT tunnel.
    let t = build(vec![("HTTP_PROXY", proxy.url())]);
    assert_eq!(export_once(&t), otlp_exporter::ExportResult::Success);
    assert_eq!(
        proxy.connects(),
        ["CONNECT collector.invalid:4318 HTTP/1.1"]
    );
    assert_eq!(proxy.collector.received()[0].header("api-key"), Some("k"));
    // So does ALL_PROXY when HTTP_PROXY is unset.
    let t = build(vec![
        ("ALL_PROXY", proxy.url()),
        ("HTTPS_PROXY", "http://127.0.0.1:9".into()),
    ]);
    assert_eq!(export_once(&t), otlp_exporter::ExportResult::Success);
    assert_eq!(proxy.connects().len(), 2);
    // HTTPS_PROXY is for https only; NO_PROXY names hosts sent directly
    // (which here do not resolve: the export fails, the proxy sees nothing).
    for env in [
        vec![("HTTPS_PROXY", proxy.url()), ("https_proxy", proxy.url())],
        vec![
            ("HTTP_PROXY", proxy.url()),
            ("NO_PROXY", "example.com, .INVALID".into()),
        ],
        vec![("ALL_PROXY", proxy.url()), ("no_proxy", "*".into())],
    ] {
        let t = build(env.clone());
        let result = export_once(&t);
        assert!(
            !matches!(result, otlp_exporter::ExportResult::Success),
            "{env:?}: {result:?}"
        );
    }
    assert_eq!(proxy.connects().len(), 2);
}

/// The test collector's TLS settings: its certificate from
/// `tests/support/tls/`, and with `mutual` a client certificate signed by
/// the test authority required.
fn tls_server_config(mutual: bool) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/tls/");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{tls}server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{tls}server.key")).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if mutual {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(format!("{tls}ca.pem")).unwrap())
            .unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(builder.with_single_cert(certs, key).unwrap())
}

/// A TLS collector double with the test-only certificates of
/// tests/support/tls (a server certificate for 127.0.0.1 and localhost),
/// asking for a client certificate signed by the test CA if `mutual`.
/// Logs each connection: `ok <request line>` or `error <why>`.
fn tls_server(mutual: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
    let config = tls_server_config(mutual);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { return };
            let (config, l) = (config.clone(), l.clone());
            thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, sock);
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match tls.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                        Err(e) => {
                            l.lock().unwrap().push(format!("error {e}"));
                            // Send the alert, then read what the client
                            // still sends for a moment before closing: a
                            // client that finished its side of a TLS 1.3
                            // handshake is writing its request, and a
                            // close at once would reach it as a reset
                            // before the alert (read as a connection
                            // failure, and retried).
                            while tls.conn.wants_write() {
                                if tls.conn.write_tls(&mut tls.sock).is_err() {
                                    break;
                                }
                            }
                            let _ = tls.sock.set_read_timeout(Some(Duration::from_millis(300)));
                            while matches!(tls.sock.read(&mut buf), Ok(n) if n > 0) {}
                            return;
                        }
                    }
                };
                let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .filter_map(|h| h.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                while data.len() < head_end + len {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                l.lock()
                    .unwrap()
                    .push(format!("ok {}", head.lines().next().unwrap_or("")));
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (port, log)
}

/// File-system access, for the TLS settings' PEM files.
fn fs() -> runtime_cap::FsAccess {
    runtime_cap::FsAccess::from_ambient(runtime_cap::ambient_authority())
}

fn tls_file(name: &str) -> String {
    format!("{}/tests/support/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_collector_certificate_signed_by_the_configured_authority_is_trusted() {
    // Found by review: OTEL_EXPORTER_OTLP_CERTIFICATE was ignored.
    let (port, log) = tls_server(false);
    for (var, host) in [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "127.0.0.1"),
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "localhost"),
    ] {
        let t = HttpTransport::builder(net())
            .endpoint(format!("https://{host}:{port}"))
            .timeout(Duration::from_secs(5))
            .filesystem(fs())
            .build_with(vars(vec![(var, tls_file("ca.pem"))]))
            .unwrap();
        assert_eq!(
            export_once(&t),
            otlp_exporter::ExportResult::Success,
            "{var}"
        );
    }
    assert_eq!(
        *log.lock().unwrap(),
        ["ok POST /v1/traces HTTP/1.1", "ok POST /v1/traces HTTP/1.1"]
    );
}

#[test]
fn an_untrusted_collector_certificate_fails_at_once_and_is_not_retried() {
    // Found by review: a TLS verification failure read as a connection
    // failure, retried, and the batch kept while new spans were shed.
    let (port, log) = tls_server(false);
    let t = HttpTransport::builder(net())
        .endpoint(format!("https://127.0.0.1:{port}"))
        .timeout(Duration::from_secs(5))
        .build_with(|_| None)
        .unwrap();
    let t0 = Instant::now();
    let result = export_once(&t);
    let otlp_exporter::ExportResult::Failed(why) = &result else {
        panic!("{result:?}");
    };
    assert!(why.contains("TLS") && why.contains("certificate"), "{why}");
    assert_eq!(t.attempts().attempts, 1, "not retried");
    assert!(t0.elapsed() < Duration::from_secs(3));
    // The server saw the handshake fail, and nothing else.
    let end = Instant::now() + Duration::from_secs(5);
    while log.lock().unwrap().is_empty() && Instant::now() < end {
        thread::sleep(Duration::from_millis(10));
    }
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("error"), "{log:?}");
}

#[test]
fn a_client_certificate_is_presented_to_a_collector_that_asks_for_one() {
    let (port, log) = tls_server(true);
    let base = vec![
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", tls_file("ca.pem")),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("https://127.0.0.1:{port}"),
        ),
    ];
    let mut with_cert = base.clone();
    with_cert.push((
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        tls_file("client.pem"),
    ));
    with_cert.push(("OTEL_EXPORTER_OTLP_CLIENT_KEY", tls_file("client.key")));
    let t = HttpTransport::builder(net())
        .timeout(Duration::from_secs(5))
        .filesystem(fs())
        .build_with(vars(with_cert))
        .unwrap();
    assert_eq!(export_once(&t), otlp_exporter::ExportResult::Success);
    assert_eq!(*log.lock().unwrap(), ["ok POST /v1/traces HTTP/1.1"]);
    // Without it the collector refuses the handshake: final.
    let t = HttpTransport::builder(net())
        .timeout(Duration::from_secs(5))
        .filesystem(fs())
        .build_with(vars(base))
        .unwrap();
    let result = export_once(&t);
    assert!(
        matches!(&result, otlp_exporter::ExportResult::Failed(why) if why.contains("TLS")),
        "{result:?}"
    );
    assert_eq!(t.attempts().attempts, 1, "not retried");
}

#[test]
fn a_header_name_over_64_kib_is_refused_when_built_not_at_every_export() {
    // Found by review: it passed build(), then every export failed as
    // "retryable".
    let err = HttpTransport::builder(net())
        .endpoint("http://127.0.0.1:4318")
        .header("a".repeat(70_000), "v")
        .build_with(|_| None)
        .unwrap_err();
    assert!(
        err.to_string().contains("too long"),
        "{}",
        err.to_string().len()
    );
}

#[test]
fn only_a_port_may_follow_a_bracketed_ipv6_host() {
    // Found by review: `http://[::1]x:PORT` built and sent to [::1]:PORT.
    for bad in [
        "http://[::1]x:4318",
        "http://[::1]x",
        "http://[::1]%25eth0:1",
    ] {
        let err = HttpTransport::builder(net())
            .endpoint(bad)
            .build_with(|_| None)
            .unwrap_err();
        assert!(err.to_string().contains("IPv6"), "{bad}: {err}");
    }
    let t = HttpTransport::builder(net())
        .endpoint("http://[::1]:4318")
        .build_with(|_| None)
        .unwrap();
    assert_eq!(t.url(), "http://[::1]:4318/v1/traces");
}

// Found by review: large requests cut short, short timeouts, requests
// encoded for another sink, gzip that does not shrink.

/// A collector that takes part of a large body and then refuses it (reads
/// up to its limit, answers `413`, closes with the rest unread, which makes
/// the close a reset: Go's `http.MaxBytesReader`, as the OpenTelemetry
/// Collector's `max_request_body_size` uses it) is heard: the export fails
/// at once on the 413, one attempt, not sent again. Before, the reset
/// failed the body's write, the 413 waiting in the socket was never read,
/// and the attempt counted as a connection failure and was retried until
/// the export's deadline (and the pipeline kept the batch and retried it
/// for `retry_max_elapsed`, shedding new spans meanwhile).
#[test]
fn a_large_request_refused_part_way_through_its_body_fails_at_once_on_the_answer() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![Fault::RefuseMidBody(413, 256 * 1024)]);
        let t = transport(&server)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        // About 16 MB: more than the socket buffers hold, so the upload is
        // still going when the collector closes.
        let request = big_request("big-", 160);
        assert!(request.body.len() > 15 << 20);
        let result = otlp_exporter::Transport::export(
            &t,
            &request,
            Instant::now() + Duration::from_secs(20),
        );
        assert!(
            matches!(&result, otlp_exporter::ExportResult::Failed(why) if why.contains("HTTP 413")),
            "{result:?}"
        );
        let a = t.attempts();
        assert_eq!(
            (a.attempts, a.retries, a.final_status, a.connection_failed),
            (1, 0, 1, 0),
            "a 413 is a final status, not a connection failure: {a:?}"
        );
        let got = server.received();
        assert_eq!(got.len(), 1, "a 413 is never sent again");
        assert_eq!(got[0].header("expect"), Some("100-continue"));
        // The connection was closed: the next request gets a new one and
        // is delivered.
        let result = export_once(&t);
        assert!(
            matches!(result, otlp_exporter::ExportResult::Success),
            "{result:?}"
        );
    });
}

/// A collector that closes part-way through the body without answering
/// is still a connection failure, retried.
#[test]
fn a_large_request_cut_without_an_answer_is_still_retried() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![Fault::ResetMidRequest]);
        let t = transport(&server)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let result = otlp_exporter::Transport::export(
            &t,
            &big_request("big-", 160),
            Instant::now() + Duration::from_secs(20),
        );
        assert!(
            matches!(result, otlp_exporter::ExportResult::Success),
            "{result:?}"
        );
        let a = t.attempts();
        assert_eq!(
            (a.attempts, a.retries, a.connection_failed, a.succeeded),
            (2, 1, 1, 1),
            "{a:?}"
        );
        assert_eq!(server.received().len(), 1, "the second attempt arrived");
    });
}

/// With an OTLP timeout of a second or less, a large request still
/// reaches a collector that ignores `Expect: 100-continue` (reads the body
/// when it comes): the wait for `100 Continue` is a quarter of the
/// timeout at most. Before, it was a fixed second, longer than the whole
/// attempt: every attempt timed out before the body was sent.
#[test]
fn a_large_request_reaches_a_collector_that_ignores_the_expectation_within_a_short_timeout() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![]);
        let t = transport(&server)
            .timeout(Duration::from_millis(900))
            .build()
            .unwrap();
        let result = otlp_exporter::Transport::export(
            &t,
            &big_request("big-", 20),
            Instant::now() + Duration::from_secs(10),
        );
        assert!(
            matches!(result, otlp_exporter::ExportResult::Success),
            "{result:?} {:?}",
            t.attempts()
        );
        let got = server.received();
        assert_eq!(got.last().unwrap().header("expect"), Some("100-continue"));
        assert_eq!(got.last().unwrap().spans().len(), 20);
    });
}

/// A partial success is read in the encoding of the request it answers
/// (OTLP: the answer has the request's Content-Type), not the transport's:
/// a JSON request handed to a transport built for protobuf (encoded for
/// another sink) counts the rejected spans of its JSON answer. Before,
/// the JSON was read as protobuf, found empty, and the rejected spans
/// counted as delivered.
#[test]
fn a_partial_success_is_read_in_the_encoding_of_the_request() {
    test_watchdog::isolate(WATCHDOG, || {
        let json = br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"too old"}}"#;
        let proto = vec![0x0a, 0x07, 0x08, 0x02, 0x12, 0x03, b'o', b'l', b'd'];
        for (built, sent, answer, rejected) in [
            (Encoding::Protobuf, Encoding::Json, json.to_vec(), 3),
            (Encoding::Json, Encoding::Protobuf, proto, 2),
        ] {
            let server = Server::start(vec![Fault::Answer(200, vec![], answer)]);
            let t = transport(&server).encoding(built).build().unwrap();
            let result = otlp_exporter::Transport::export(
                &t,
                &one_request(5, sent),
                Instant::now() + Duration::from_secs(10),
            );
            assert!(
                matches!(
                    &result,
                    otlp_exporter::ExportResult::PartialSuccess { rejected: r, .. } if *r == rejected
                ),
                "{sent:?}: {result:?}"
            );
        }
    });
}

/// A body that gzip does not shrink (random bytes, already compressed
/// data) is sent as it is, without `Content-Encoding`: gzip's framing
/// would make it larger, and a request the encoder kept under 64 MiB would
/// go out over it. A body that shrinks is still sent compressed.
#[test]
fn gzip_never_makes_a_request_larger() {
    test_watchdog::isolate(WATCHDOG, || {
        let server = Server::start(vec![]);
        let t = transport(&server)
            .compression(Compression::Gzip)
            .build()
            .unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let random: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let incompressible = otlp_exporter::EncodedRequest {
            body: random.clone(),
            encoding: Encoding::Protobuf,
            spans: 1,
        };
        for request in [incompressible, one_request(50, Encoding::Protobuf)] {
            let result = otlp_exporter::Transport::export(
                &t,
                &request,
                Instant::now() + Duration::from_secs(10),
            );
            assert!(
                matches!(result, otlp_exporter::ExportResult::Success),
                "{result:?}"
            );
        }
        let got = server.received();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].header("content-encoding"), None);
        assert_eq!(got[0].body, random, "sent as it is");
        assert_eq!(got[1].header("content-encoding"), Some("gzip"));
        assert_eq!(got[1].spans().len(), 50);
    });
}

/// An IPv6 zone ID by interface name (`http://[fe80::1%25eth0]:4318`) is
/// refused when the transport is built, saying what to write instead; by
/// number it is sent to. Before, a name built and then failed every
/// export (the resolver cannot look it up), each failure retryable.
#[test]
fn an_ipv6_zone_id_by_interface_name_is_refused_when_built() {
    for bad in [
        "http://[fe80::1%25eth0]:4318",
        "http://[::1%25lo]:4318",
        "http://[::1%25]:4318",
        "http://[::1%lo]:4318",
    ] {
        let err = HttpTransport::builder(net())
            .endpoint(bad)
            .build_with(|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("zone ID") && err.contains("interface's number"),
            "{bad}: {err}"
        );
    }
    test_watchdog::isolate(WATCHDOG, || {
        // `::1` by the loopback interface's number (1 on Linux; the zone
        // is ignored for an address that is not link-local).
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            return; // no IPv6 here
        };
        let port = listener.local_addr().unwrap().port();
        let server = Server::start_on(listener, vec![]);
        let t = HttpTransport::builder(net())
            .endpoint(format!("http://[::1%251]:{port}"))
            .build_with(|_| None)
            .unwrap();
        let result = export_once(&t);
        assert!(
            matches!(result, otlp_exporter::ExportResult::Success),
            "{result:?}"
        );
        assert_eq!(server.received().len(), 1);
    });
}

/// An answer whose head the client cannot parse (a header over its 64 KiB,
/// a header name that is not a token, a folded line, two
/// `Content-Length`s) counts by the status its first line gave: a 2xx is
/// delivered, not sent again; a 400 fails, naming why. Before, any such
/// answer was "no answer" and retried, re-sending data the collector had
/// accepted.
#[test]
fn an_answer_whose_headers_cannot_be_read_counts_by_its_status_line() {
    test_watchdog::isolate(WATCHDOG, || {
        let big = format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(70_000)
        );
        for (answer, delivered) in [
            (big.as_str(), true),
            (
                "HTTP/1.1 200 OK\r\nBad Header: x\r\ncontent-length: 0\r\n\r\n",
                true,
            ),
            (
                "HTTP/1.1 202 OK\r\nx-a: x\r\n  folded\r\ncontent-length: 0\r\n\r\n",
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\ncontent-length: 5\r\n\r\n",
                true,
            ),
            (
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
                true,
            ),
            (
                "HTTP/1.1 400 Bad\r\nBad Header: x\r\ncontent-length: 0\r\n\r\n",
                false,
            ),
        ] {
            let shown = &answer[..answer.len().min(40)];
            let server = Server::start(vec![Fault::Raw(answer.as_bytes().to_vec())]);
            let t = transport(&server).build().unwrap();
            let result = export_once(&t);
            let a = t.attempts();
            assert_eq!(server.received().len(), 1, "{shown:?}: not sent again");
            assert_eq!(
                (a.attempts, a.connection_failed),
                (1, 0),
                "{shown:?}: {a:?}"
            );
            if delivered {
                assert!(
                    matches!(result, otlp_exporter::ExportResult::Success),
                    "{shown:?}: {result:?}"
                );
                assert_eq!(a.succeeded, 1, "{shown:?}");
            } else {
                assert!(
                    matches!(&result, otlp_exporter::ExportResult::Failed(why)
                        if why.contains("HTTP 400") && why.contains("headers could not be read")),
                    "{shown:?}: {result:?}"
                );
                assert_eq!(a.final_status, 1, "{shown:?}");
            }
        }
    });
}

/// Through a `CONNECT` proxy, the proxy's `200 Connection established` is
/// not the collector's answer: a collector that then closes without
/// answering is a connection failure, retried, not a delivery.
#[test]
fn a_proxys_answer_to_connect_is_not_the_collectors() {
    test_watchdog::isolate(WATCHDOG, || {
        let proxy = Proxy::start();
        for fault in [Fault::ResetMidRequest, Fault::Hang(Duration::ZERO)] {
            proxy.collector.script.lock().unwrap().push_back(fault);
        }
        let t = HttpTransport::builder(net())
            .endpoint("http://collector.invalid:4318")
            .timeout(Duration::from_secs(5))
            .retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            })
            .build_with(vars(vec![("HTTP_PROXY", proxy.url())]))
            .unwrap();
        for round in 0..2 {
            let result = export_once(&t);
            assert!(
                matches!(result, otlp_exporter::ExportResult::Retryable { .. }),
                "{round}: {result:?}"
            );
        }
        let a = t.attempts();
        assert_eq!((a.succeeded, a.connection_failed), (0, 2), "{a:?}");
        assert_eq!(proxy.connects().len(), 2);
    });
}

/// An `https` collector that refuses a large body part-way (answers `100
/// Continue`, reads `limit` bytes of the body, answers `413`, closes with
/// the rest unread) is heard too: the failed write is below TLS, and the
/// answer's TLS records are read after it.
#[test]
fn a_large_request_refused_part_way_over_tls_fails_at_once_on_the_answer() {
    test_watchdog::isolate(WATCHDOG, || {
        let config = tls_server_config(false);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = requests.clone();
        thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                let (config, seen) = (config.clone(), seen.clone());
                thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, sock);
                    let mut data = Vec::new();
                    let mut buf = [0u8; 16384];
                    let head_end = loop {
                        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                        }
                    };
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
                    if head.contains("expect: 100-continue") {
                        let _ = tls.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                        let _ = tls.flush();
                    }
                    while data.len() < head_end + 256 * 1024 {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls.write_all(
                        b"HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    let _ = tls.flush();
                    // The unread rest of the body makes the close a reset.
                });
            }
        });
        let t = HttpTransport::builder(net())
            .endpoint(format!("https://127.0.0.1:{port}"))
            .timeout(Duration::from_secs(10))
            .filesystem(fs())
            .build_with(vars(vec![(
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                tls_file("ca.pem"),
            )]))
            .unwrap();
        let result = otlp_exporter::Transport::export(
            &t,
            &big_request("big-", 160),
            Instant::now() + Duration::from_secs(20),
        );
        assert!(
            matches!(&result, otlp_exporter::ExportResult::Failed(why) if why.contains("HTTP 413")),
            "{result:?}"
        );
        let a = t.attempts();
        assert_eq!(
            (a.attempts, a.final_status, a.connection_failed),
            (1, 1, 0),
            "{a:?}"
        );
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    });
}

// ---------------------------------------------------------------------------
// Found by review of the status-line and zone-ID checks.

/// The status an answer's head was refused with is read as the client's
/// parser reads the answer: a `1xx` ends at its first empty line however
/// its lines end (a bare `\n` too), and empty lines before a status line
/// are skipped (RFC 9112 2.2). Before, a bare-LF `100` was ended at the
/// first `\r\n\r\n` anywhere, past the final head: a 400 whose body held
/// `HTTP/1.1 200 OK` counted as delivered, and a 200 was sent twice; an
/// empty line before the status line sent it twice too.
#[test]
fn a_refused_head_after_a_1xx_or_an_empty_line_counts_by_its_own_status() {
    test_watchdog::isolate(WATCHDOG, || {
        for (answer, delivered) in [
            (
                "HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\nBad Header: x\r\ncontent-length: 0\r\n\r\n",
                true,
            ),
            (
                "HTTP/1.1 100 Continue\n\nHTTP/1.1 400 Bad\r\nBad Header: x\r\ncontent-length: 19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
                false,
            ),
            (
                "\r\nHTTP/1.1 200 OK\r\nBad Header: x\r\ncontent-length: 0\r\n\r\n",
                true,
            ),
            (
                "HTTP/1.1 100 Continue\r\n\r\n\r\nHTTP/1.1 200 OK\r\nBad Header: x\r\ncontent-length: 0\r\n\r\n",
                true,
            ),
        ] {
            let shown = answer.escape_debug().to_string();
            let server = Server::start(vec![Fault::Raw(answer.as_bytes().to_vec())]);
            let t = transport(&server).build().unwrap();
            let result = export_once(&t);
            let a = t.attempts();
            assert_eq!(server.received().len(), 1, "{shown}: not sent again");
            assert_eq!((a.attempts, a.connection_failed), (1, 0), "{shown}: {a:?}");
            if delivered {
                assert_eq!(result, otlp_exporter::ExportResult::Success, "{shown}");
            } else {
                assert!(
                    matches!(&result, otlp_exporter::ExportResult::Failed(why)
                        if why.contains("HTTP 400") && why.contains("headers could not be read")),
                    "{shown}: {result:?}"
                );
            }
        }
    });
}

/// A status under 100 is no HTTP status: the answer is no answer (retried),
/// and a status line in its body is never taken for the collector's.
/// Before, it was skipped as a `1xx` and the `200` in its body counted as
/// delivered.
#[test]
fn a_status_under_100_is_no_answer_whatever_its_body_holds() {
    test_watchdog::isolate(WATCHDOG, || {
        let answer = "HTTP/1.1 000 Bad\r\ncontent-length: 19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        let server = Server::start(vec![Fault::Raw(answer.as_bytes().to_vec())]);
        let t = transport(&server)
            .retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            })
            .build()
            .unwrap();
        let result = export_once(&t);
        assert!(
            matches!(&result, otlp_exporter::ExportResult::Retryable { reason, .. }
                if reason.contains("no answer")),
            "{result:?}"
        );
        let a = t.attempts();
        assert_eq!((a.succeeded, a.connection_failed), (0, 1), "{a:?}");
    });
}

/// A `417` to `Expect: 100-continue` whose head cannot be parsed is a 417
/// all the same: the request is sent again at once without the
/// expectation. Before, it failed the export for good.
#[test]
fn a_417_whose_headers_cannot_be_read_still_gets_the_request_without_the_expectation() {
    test_watchdog::isolate(WATCHDOG, || {
        let answer =
            "HTTP/1.1 417 X\r\nBad Header: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let server = Server::start(vec![Fault::Raw(answer.as_bytes().to_vec())]);
        let t = transport(&server)
            .timeout(Duration::from_secs(4))
            .build()
            .unwrap();
        let result = otlp_exporter::Transport::export(
            &t,
            &big_request("big-", 20),
            Instant::now() + Duration::from_secs(10),
        );
        assert_eq!(
            result,
            otlp_exporter::ExportResult::Success,
            "{:?}",
            t.attempts()
        );
        let got = server.received();
        let expects: Vec<Option<&str>> = got.iter().map(|r| r.header("expect")).collect();
        assert_eq!(expects.last(), Some(&None), "{expects:?}");
        assert_eq!(expects.first(), Some(&Some("100-continue")), "{expects:?}");
        assert_eq!(got.last().unwrap().spans().len(), 20);
        let a = t.attempts();
        assert_eq!(
            (a.retryable_status, a.succeeded, a.final_status),
            (1, 1, 0),
            "{a:?}"
        );
    });
}

/// This machine's first link-local IPv6 address and its interface's
/// number (Linux's /proc/net/if_inet6), if it has one.
fn link_local_address() -> Option<(std::net::Ipv6Addr, u32)> {
    let table = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    table.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let hex = fields.next()?;
        let index = u32::from_str_radix(fields.next()?, 16).ok()?;
        let ip = std::net::Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?);
        ip.is_unicast_link_local().then_some((ip, index))
    })
}

/// A link-local collector is reached by its zone ID, the interface's
/// number after `%25` (RFC 6874's encoded `%`): `[fe80::1%252]` is fe80::1
/// on interface 2. Before, the host went to the system's resolver as
/// written, which read the zone as interface 252: no spelling reached the
/// collector. (Skipped where the machine has no link-local address; the
/// parsing is unit-tested in src/http.rs too.)
#[test]
fn a_link_local_collector_is_reached_by_its_zone_id() {
    use std::net::{SocketAddr, SocketAddrV6};
    let Some((ip, index)) = link_local_address() else {
        eprintln!("no link-local IPv6 address here: skipped");
        return;
    };
    let Ok(listener) = TcpListener::bind(SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, index))) else {
        eprintln!("cannot listen on [{ip}%{index}]: skipped");
        return;
    };
    test_watchdog::isolate(WATCHDOG, || {
        let port = listener.local_addr().unwrap().port();
        let server = Server::start_on(listener, vec![]);
        let url = format!("http://[{ip}%25{index}]:{port}");
        let t = HttpTransport::builder(net())
            .endpoint(url.clone())
            .timeout(Duration::from_secs(5))
            .retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            })
            .build_with(|_| None)
            .unwrap();
        let result = export_once(&t);
        assert_eq!(result, otlp_exporter::ExportResult::Success, "{url}");
        assert_eq!(server.received().len(), 1);
    });
}

/// A proxy URL's IPv6 zone ID is checked as the endpoint's is: by name it
/// is refused when the transport is built (it could never be connected
/// to); by number it builds. Before, `HTTP_PROXY=http://[::1%25lo]:3128`
/// built and then failed every export, naming the collector.
#[test]
fn an_ipv6_zone_id_by_interface_name_in_a_proxy_url_is_refused_when_built() {
    let build = |proxy: &str| {
        HttpTransport::builder(net())
            .endpoint("http://collector.invalid:4318")
            .build_with(vars(vec![("HTTP_PROXY", proxy.to_owned())]))
    };
    for bad in [
        "http://[::1%25lo]:3128",
        "http://[fe80::1%25eth0]:3128",
        "http://[::1%lo]:3128",
        "[fe80::1%25]:3128",
    ] {
        let err = build(bad).unwrap_err().to_string();
        assert!(
            err.contains("HTTP_PROXY")
                && err.contains("zone ID")
                && err.contains("interface's number"),
            "{bad}: {err}"
        );
    }
    assert!(build("http://[fe80::1%252]:3128").is_ok());
}

/// An `https` URL with an IPv6 zone ID, the collector's or an `HTTPS`
/// proxy's, is refused when built: the TLS client takes the host, zone and
/// all, as the server's name, which is never valid. Before, it built and
/// then failed every export. An `http` proxy with a zone still builds.
#[test]
fn an_https_url_with_an_ipv6_zone_id_is_refused_when_built() {
    let err = HttpTransport::builder(net())
        .endpoint("https://[fe80::1%252]:4318")
        .build_with(|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("https") && err.contains("zone ID"), "{err}");
    let build = |proxy: &str| {
        HttpTransport::builder(net())
            .endpoint("https://collector.invalid:4318")
            .build_with(vars(vec![("HTTPS_PROXY", proxy.to_owned())]))
    };
    let err = build("https://[fe80::1%252]:3128").unwrap_err().to_string();
    assert!(
        err.contains("HTTPS_PROXY") && err.contains("https") && err.contains("zone ID"),
        "{err}"
    );
    assert!(build("http://[fe80::1%252]:3128").is_ok());
    assert!(build("https://[fe80::1]:3128").is_ok());
    assert!(
        HttpTransport::builder(net())
            .endpoint("https://[fe80::1]:4318")
            .build_with(|_| None)
            .is_ok()
    );
}

/// Zone 0 is no interface (connecting to a link-local address with it
/// fails every time): refused when built, in the endpoint and in a proxy
/// URL. Before, it built and every export failed.
#[test]
fn ipv6_zone_zero_is_refused_when_built() {
    for zone in ["0", "000"] {
        let err = HttpTransport::builder(net())
            .endpoint(format!("http://[fe80::1%25{zone}]:4318"))
            .build_with(|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("zone ID"), "{zone}: {err}");
        let err = HttpTransport::builder(net())
            .endpoint("http://collector.invalid:4318")
            .build_with(vars(vec![(
                "HTTP_PROXY",
                format!("http://[fe80::1%25{zone}]:3128"),
            )]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HTTP_PROXY") && err.contains("zone ID"),
            "{zone}: {err}"
        );
    }
}

/// A zoned host is never proxied (its zone names an interface of this
/// machine); `NO_PROXY` and the loopback rule agree: `[fe80::1%252]` is
/// not proxied for `NO_PROXY=fe80::1` (or `fe80::/10`, or
/// `[fe80::1]:4318`), nor `[::1%251]`. Before, the zone made the host no
/// address, and the request went through the proxy.
#[test]
fn no_proxy_and_loopback_read_a_zoned_host_without_its_zone() {
    let proxy_of = |url: &str, no_proxy: Option<&str>| {
        let mut list = vec![("HTTP_PROXY", "http://proxy.invalid:3128".to_owned())];
        if let Some(n) = no_proxy {
            list.push(("NO_PROXY", n.to_owned()));
        }
        let t = HttpTransport::builder(net())
            .endpoint(url)
            .build_with(vars(list))
            .unwrap();
        format!("{t:?}")
    };
    let zoned = "http://[fe80::1%252]:4318";
    // Never proxied at all (session 19: a zoned collector went through
    // the proxy with its zone in `CONNECT`, an interface of this machine
    // the proxy cannot reach it by); the same address without a zone is.
    let shown = proxy_of(zoned, None);
    assert!(shown.contains("proxy: None"), "zoned: {shown}");
    let shown = proxy_of("http://[fe80::1]:4318", None);
    assert!(shown.contains("proxy.invalid"), "not zoned: {shown}");
    for no_proxy in ["fe80::1", "fe80::/10", "[fe80::1]:4318"] {
        let shown = proxy_of(zoned, Some(no_proxy));
        assert!(
            shown.contains("proxy: None"),
            "NO_PROXY={no_proxy}: {shown}"
        );
    }
    let shown = proxy_of("http://[::1%251]:4318", None);
    assert!(shown.contains("proxy: None"), "loopback: {shown}");
}

/// A zoned collector gets a `Host` header without the zone (RFC 6874 4:
/// the zone is taken off the URI sent; RFC 9110's `Host` has no syntax for
/// it); a user's own `Host` header is sent instead. Before, `Host` was
/// `[fe80::...%25N]:port`. (Skipped where the machine has no link-local
/// address.)
#[test]
fn a_zoned_collector_gets_a_host_header_without_the_zone() {
    use std::net::{SocketAddr, SocketAddrV6};
    let Some((ip, index)) = link_local_address() else {
        eprintln!("no link-local IPv6 address here: skipped");
        return;
    };
    let Ok(listener) = TcpListener::bind(SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, index))) else {
        eprintln!("cannot listen on [{ip}%{index}]: skipped");
        return;
    };
    test_watchdog::isolate(WATCHDOG, || {
        let port = listener.local_addr().unwrap().port();
        let server = Server::start_on(listener, vec![]);
        let url = format!("http://[{ip}%25{index}]:{port}");
        let build = |host: Option<&str>| {
            let mut b = HttpTransport::builder(net())
                .endpoint(url.clone())
                .timeout(Duration::from_secs(5))
                .retry(RetryPolicy {
                    max_attempts: 1,
                    ..RetryPolicy::default()
                });
            if let Some(h) = host {
                b = b.header("Host", h);
            }
            b.build_with(|_| None).unwrap()
        };
        assert_eq!(
            export_once(&build(None)),
            otlp_exporter::ExportResult::Success
        );
        assert_eq!(
            export_once(&build(Some("collector.example"))),
            otlp_exporter::ExportResult::Success
        );
        let got = server.received();
        let hosts: Vec<Option<&str>> = got.iter().map(|r| r.header("host")).collect();
        let bare = format!("[{ip}]:{port}");
        assert_eq!(
            hosts,
            vec![Some(bare.as_str()), Some("collector.example")],
            "{url}"
        );
    });
}

/// The final status is read only from a line the client's parser takes:
/// `HTTP/1.0` or `HTTP/1.1`; and a `101` is the final answer (the client
/// takes it so), which is not a 2xx: not delivered. Before, each of these
/// was counted delivered from a `200` the client never read.
#[test]
fn a_status_line_the_parser_refuses_or_a_101_is_not_delivered() {
    test_watchdog::isolate(WATCHDOG, || {
        for answer in [
            "HTTP/1.9 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nBad Header: x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.7 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        ] {
            let shown = answer.escape_debug().to_string();
            let server = Server::start(vec![Fault::Raw(answer.as_bytes().to_vec())]);
            let t = transport(&server)
                .retry(RetryPolicy {
                    max_attempts: 1,
                    ..RetryPolicy::default()
                })
                .build()
                .unwrap();
            let result = export_once(&t);
            assert_ne!(result, otlp_exporter::ExportResult::Success, "{shown}");
            assert_eq!(t.attempts().succeeded, 0, "{shown}: {:?}", t.attempts());
            assert_eq!(server.received().len(), 1, "{shown}");
        }
    });
}
