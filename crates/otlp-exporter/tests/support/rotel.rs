//! The rotel collector for end-to-end tests, shared by otlp-exporter's
//! `tests/rotel.rs` and otlp-tracing's (which includes this file by path:
//! otlp-exporter cannot depend on otlp-tracing, even for tests). A running
//! rotel logs every span it receives; the helpers read that log back.
//!
//! Needs the `rotel-agent` binary in `ROTEL_AGENT`; `cargo xtask test`
//! installs rotel (from PyPI) and sets it.

// Each test crate that includes this uses part of it.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One span as rotel logged it.
#[derive(Debug)]
pub struct Logged {
    pub name: String,
    pub trace: String,
    pub parent: String,
    pub attrs: Vec<String>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running rotel, logging every span it receives; killed on drop.
pub struct Rotel {
    child: Child,
    log: std::path::PathBuf,
    pub http: u16,
    grpc: u16,
    /// The logs of earlier runs (before `restart`).
    earlier: String,
}

impl Rotel {
    pub fn start() -> Rotel {
        Self::start_on(free_port(), free_port(), 0)
    }

    /// Stops rotel (SIGTERM, so that it writes out what it logged; SIGKILL
    /// if it has not exited within 10 s) and keeps its log.
    pub fn stop(&mut self) {
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
    pub fn restart(&mut self) {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut next = Self::start_on(self.http, self.grpc, run);
        std::mem::swap(&mut next.earlier, &mut self.earlier);
        // The old (stopped) child and its removed log go with `next`.
        std::mem::swap(self, &mut next);
    }

    pub fn start_on(http: u16, grpc: u16, run: usize) -> Rotel {
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

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The span ids in every run's log, once per time logged.
    pub fn logged_ids(&self) -> Vec<String> {
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

    /// Every span block in rotel's log of this run, in order (a span
    /// logged twice appears twice): its id, and what was logged.
    pub fn logged(&self) -> Vec<(String, Logged)> {
        let text = self.text();
        text.split("Span #")
            .skip(1)
            .map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| {
                            l.trim()
                                .strip_prefix(name)
                                .filter(|r| r.trim_start().starts_with(':'))
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
                (
                    field("ID"),
                    Logged {
                        name: field("Name"),
                        trace: field("Trace ID"),
                        parent: field("Parent ID"),
                        attrs,
                    },
                )
            })
            .collect()
    }

    /// The spans in rotel's log: span id -> (name, trace id, attribute lines).
    pub fn spans(&self) -> BTreeMap<String, (String, String, Vec<String>)> {
        self.logged()
            .into_iter()
            .map(|(id, l)| (id, (l.name, l.trace, l.attrs)))
            .collect()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
