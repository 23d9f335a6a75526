//! End to end against rotel, a real OpenTelemetry collector: the spans it
//! logs are exactly the spans sent (ids, names, attributes), and the
//! exporter's stats agree.
//!
//! Needs the `rotel-agent` binary in `ROTEL_AGENT`; `cargo xtask test`
//! installs rotel (from PyPI) and runs this test. Run alone with
//! `ROTEL_AGENT=/path/to/rotel-agent cargo test -p otlp-exporter --test rotel -- --ignored`.
#![cfg(feature = "http")]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use otlp_exporter::{
    Compression, Encoding, HttpTransport, KeyValue, Pipeline, Resource, SpanData, Status, Value,
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running rotel, logging every span it receives; killed on drop.
struct Rotel {
    child: Child,
    log: std::path::PathBuf,
    http: u16,
    grpc: u16,
    /// The logs of earlier runs (before `restart`).
    earlier: String,
}

impl Rotel {
    fn start() -> Rotel {
        Self::start_on(free_port(), free_port(), 0)
    }

    /// Stops rotel (SIGTERM, so that it writes out what it logged; SIGKILL
    /// if it has not exited within 10 s) and keeps its log.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.earlier.push_str(&self.text());
        let _ = std::fs::remove_file(&self.log);
    }

    /// Starts it again on the same ports (after `stop`).
    fn restart(&mut self) {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut next = Self::start_on(self.http, self.grpc, run);
        std::mem::swap(&mut next.earlier, &mut self.earlier);
        // The old (stopped) child and its removed log go with `next`.
        std::mem::swap(self, &mut next);
    }

    fn start_on(http: u16, grpc: u16, run: usize) -> Rotel {
        let agent = std::env::var("ROTEL_AGENT")
            .ok()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "ROTEL_AGENT is not set: this test needs the rotel collector. \
                 Run `cargo xtask test` (it installs rotel with pip and sets ROTEL_AGENT), \
                 or `pip install rotel==0.0.1a15` and point ROTEL_AGENT at its rotel-agent binary."
                )
            });
        let log =
            std::env::temp_dir().join(format!("rotel-{}-{http}-{run}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&agent)
            .args(["start", "--exporter", "blackhole", "--debug-log", "traces"])
            .args(["--debug-log-verbosity", "detailed"])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rotel at {agent:?} (ROTEL_AGENT): {e}"));
        let rotel = Rotel {
            child,
            log,
            http,
            grpc,
            earlier: String::new(),
        };
        let end = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", http)).is_err() {
            assert!(
                Instant::now() < end,
                "rotel did not open 127.0.0.1:{http} within 20 s; its log:\n{}",
                rotel.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        rotel
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The span ids in every run's log, once per time logged.
    fn logged_ids(&self) -> Vec<String> {
        let text = format!("{}{}", self.earlier, self.text());
        text.split("Span #")
            .skip(1)
            .filter_map(|block| {
                block.lines().find_map(|l| {
                    l.trim()
                        .strip_prefix("ID")
                        .map(|r| r.trim_start_matches([' ', ':']).trim().to_string())
                })
            })
            .collect()
    }

    /// The spans in rotel's log: span id -> (name, trace id, attribute lines).
    fn spans(&self) -> BTreeMap<String, (String, String, Vec<String>)> {
        let mut out = BTreeMap::new();
        let text = self.text();
        for block in text.split("Span #").skip(1) {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| {
                        l.trim()
                            .strip_prefix(name)
                            .map(|r| r.trim_start_matches([' ', ':']).trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let attrs = block
                .lines()
                .skip_while(|l| !l.starts_with("Attributes:"))
                .skip(1)
                .take_while(|l| l.trim_start().starts_with("->"))
                .map(|l| l.trim().trim_start_matches("-> ").to_string())
                .collect();
            out.insert(field("ID"), (field("Name"), field("Trace ID"), attrs));
        }
        out
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[test]
#[ignore = "needs the rotel collector: `cargo xtask test` installs it and runs this test"]
fn a_real_collector_receives_exactly_the_spans_sent() {
    let rotel = Rotel::start();
    let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (encoding, compression) in [
        (Encoding::Protobuf, Compression::None),
        (Encoding::Json, Compression::Gzip),
    ] {
        let transport = HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
            otlp_exporter::ambient_authority(),
        ))
        .endpoint(format!("http://127.0.0.1:{}", rotel.http))
        .encoding(encoding)
        .compression(compression)
        .build()
        .unwrap();
        let pipeline = Pipeline::builder()
            .transport(transport)
            .resource(Resource::new("rotel-e2e"))
            .max_export_batch_size(7)
            .build()
            .unwrap();
        let tracer = pipeline.tracer("e2e", "1.0");
        let sent: Vec<(String, (String, String))> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2i64)
                .map(|t| {
                    let tracer = &tracer;
                    s.spawn(move || {
                        (0..10i64)
                            .map(|i| {
                                let name = format!("{encoding:?}-{t}-{i}");
                                let mut span = tracer.start(name.clone());
                                span.set_attribute("thread", t)
                                    .set_attribute("i", i)
                                    .set_attribute("ok", i % 2 == 0);
                                span.add_event("step", vec![KeyValue::new("n", i)]);
                                span.set_status(Status::ok());
                                let c = span.context().clone();
                                span.end();
                                (c.span_id.to_string(), (name, c.trace_id.to_string()))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("sender"))
                .collect()
        });
        expected.extend(sent);
        let report = pipeline.shutdown(Duration::from_secs(20));
        assert!(report.completed);
        assert_eq!(
            report.stats.exported, 20,
            "{encoding:?}: {:?}",
            report.stats
        );
        assert_eq!(report.stats.dropped.total(), 0);
        assert!(report.stats.is_balanced());
    }
    // Wait for rotel to log all 40 spans.
    let end = Instant::now() + Duration::from_secs(20);
    let mut got = rotel.spans();
    while got.len() < 40 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        got = rotel.spans();
    }
    assert_eq!(
        got.len(),
        40,
        "rotel logged {} spans; its log:\n{}",
        got.len(),
        rotel.text()
    );
    // Exactly the spans sent: same ids, names and trace ids...
    let got_ids: Vec<&String> = got.keys().collect();
    let want_ids: Vec<&String> = expected.keys().collect();
    assert_eq!(got_ids, want_ids, "span ids");
    for (id, (name, trace, attrs)) in &got {
        assert_eq!(
            (name, trace),
            (&expected[id].0, &expected[id].1),
            "span {id}"
        );
        // ...and the attributes set on them.
        let mut parts = name.rsplitn(3, '-');
        let (i, t) = (parts.next().unwrap(), parts.next().unwrap());
        let even = i.parse::<i64>().unwrap() % 2 == 0;
        for want in [
            format!("thread: Int({t})"),
            format!("i: Int({i})"),
            format!("ok: Bool({even})"),
        ] {
            assert!(attrs.contains(&want), "{name}: {want} not in {attrs:?}");
        }
    }
}

/// Hostile but legitimate span content reaches a real collector in both
/// encodings: non-finite floats (rotel answers 400 to the protobuf JSON
/// mapping's `{"doubleValue":"NaN"}`, losing the whole request; the
/// exporter writes them as strings in JSON), values nested to the depth
/// limit and past it (left out and counted), control characters.
#[test]
#[ignore = "needs the rotel collector: `cargo xtask test` installs it and runs this test"]
fn a_real_collector_accepts_hostile_span_content_in_both_encodings() {
    let rotel = Rotel::start();
    let nested = |depth: usize| {
        let mut v = Value::I64(1);
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    };
    let mut names = Vec::new();
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let transport = HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
            otlp_exporter::ambient_authority(),
        ))
        .endpoint(format!("http://127.0.0.1:{}", rotel.http))
        .encoding(encoding)
        .build()
        .unwrap();
        let pipeline = Pipeline::builder()
            .transport(transport)
            .resource(Resource::new("rotel-hostile"))
            .max_export_batch_size(1)
            .build()
            .unwrap();
        let cases: Vec<(&str, Vec<KeyValue>)> = vec![
            (
                "floats",
                vec![
                    KeyValue::new("nan", f64::NAN),
                    KeyValue::new("inf", f64::INFINITY),
                    KeyValue::new("-inf", f64::NEG_INFINITY),
                ],
            ),
            ("deep-32", vec![KeyValue::new("deep", nested(32))]),
            (
                "deep-1000",
                vec![
                    KeyValue::new("deep", nested(1000)),
                    KeyValue::new("kept", "yes"),
                ],
            ),
            ("control", vec![KeyValue::new("c\u{1}\n\"", "\u{0}\t\\")]),
        ];
        for (case, attrs) in cases {
            let name = format!("{encoding:?}-{case}");
            let mut span = SpanData::new(name.clone());
            span.attributes = attrs;
            pipeline.record(span);
            names.push(name);
        }
        let report = pipeline.shutdown(Duration::from_secs(20));
        assert!(report.completed);
        assert_eq!(report.stats.exported, 4, "{encoding:?}: {:?}", report.stats);
    }
    let end = Instant::now() + Duration::from_secs(20);
    let mut got = rotel.spans();
    while got.len() < names.len() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        got = rotel.spans();
    }
    let mut got_names: Vec<String> = got.values().map(|(n, _, _)| n.clone()).collect();
    got_names.sort();
    names.sort();
    assert_eq!(got_names, names, "rotel's log:\n{}", rotel.text());
    for (name, _, attrs) in got.values() {
        if name.ends_with("deep-1000") {
            assert!(
                attrs.iter().any(|a| a.starts_with("kept")),
                "{name}: {attrs:?}"
            );
            assert!(
                !attrs.iter().any(|a| a.starts_with("deep")),
                "{name}: {attrs:?}"
            );
        }
    }
}

/// Rotel stopped and started again mid-run (issue 13): the batches that
/// fail while it is down are kept and retried, the spans recorded meanwhile
/// wait in the queue (sized for the outage), and when it is back it
/// receives every span exactly once: exactly the exported count.
#[test]
#[ignore = "needs the rotel collector: `cargo xtask test` installs it and runs this test"]
fn a_real_collector_restarted_mid_run_receives_every_span_once() {
    let mut rotel = Rotel::start();
    let transport = HttpTransport::builder(otlp_exporter::NetAccess::from_ambient(
        otlp_exporter::ambient_authority(),
    ))
    .endpoint(format!("http://127.0.0.1:{}", rotel.http))
    .timeout(Duration::from_secs(2))
    .retry(otlp_exporter::RetryPolicy {
        max_attempts: 1,
        ..Default::default()
    })
    .build()
    .unwrap();
    let pipeline = Pipeline::builder()
        .transport(transport)
        .resource(Resource::new("rotel-outage"))
        .max_queue_size(8192)
        .max_export_batch_size(64)
        .scheduled_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    let tracer = pipeline.tracer("outage", "1.0");
    let mut sent = Vec::new();
    let mut record = |phase: &str| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|t| {
                    let tracer = &tracer;
                    s.spawn(move || {
                        (0..300)
                            .map(|i| {
                                let span = tracer.start(format!("{phase}-{t}-{i}"));
                                let id = span.context().span_id.to_string();
                                span.end();
                                id
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                sent.extend(h.join().expect("recorder"));
            }
        })
    };
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let end = Instant::now() + Duration::from_secs(40);
        while !cond() {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {:?}",
                pipeline.stats()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    record("up");
    wait("the first spans delivered", &|| {
        pipeline.stats().exported == 600
    });
    rotel.stop();
    record("down");
    wait("a batch kept while rotel is down", &|| {
        let s = pipeline.stats();
        s.retrying > 0 && s.attempts.is_some_and(|a| a.connection_failed >= 2)
    });
    rotel.restart();
    wait("every span delivered after the restart", &|| {
        pipeline.stats().exported == 1200
    });
    let report = pipeline.shutdown(Duration::from_secs(20));
    assert!(report.completed, "{report:?}");
    let s = report.stats;
    assert!(s.is_balanced(), "{s:?}");
    assert_eq!(
        (s.accepted, s.exported, s.dropped.total()),
        (1200, 1200, 0),
        "{s:?}"
    );
    let end = Instant::now() + Duration::from_secs(20);
    let mut logged = rotel.logged_ids();
    while logged.len() < 1200 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        logged = rotel.logged_ids();
    }
    assert_eq!(
        logged.len() as u64,
        s.exported,
        "rotel logged {} spans, the pipeline exported {}",
        logged.len(),
        s.exported
    );
    logged.sort();
    sent.sort();
    assert_eq!(logged, sent, "each span exactly once");
}
