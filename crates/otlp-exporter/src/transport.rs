//! Where encoded requests go: the [`Transport`] trait and the local
//! transports (in memory, for tests; a file of OTLP JSON lines, the
//! embedded default). The OTLP/HTTP transport is built on the same trait.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::encode::{EncodedRequest, Encoding};

/// How one export attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportResult {
    /// Every span was accepted.
    Success,
    /// The receiver accepted the request but rejected some spans (OTLP
    /// `partial_success.rejected_spans`); they are counted as rejected and
    /// never retried.
    PartialSuccess {
        /// Spans the receiver rejected.
        rejected: u64,
        /// Its explanation, if any.
        message: String,
    },
    /// The request failed for good (after whatever retries the transport
    /// does); its spans are counted as failed.
    Failed(String),
}

/// Counters of every attempt and its outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptStats {
    /// HTTP requests sent (or tried).
    pub attempts: u64,
    /// Attempts answered 2xx.
    pub succeeded: u64,
    /// Attempts answered with a status that is retried (429, 502, 503, 504).
    pub retryable_status: u64,
    /// Attempts answered with a status that is final (400, 500, ...).
    pub final_status: u64,
    /// Attempts that got no answer (refused, reset, timed out).
    pub connection_failed: u64,
    /// Retries made (attempts after the first of an export).
    pub retries: u64,
}

/// Whatever receives encoded batches: an OTLP/HTTP endpoint, a file, memory.
///
/// Implementations must be `Send + Sync`: the pipeline calls `export` from
/// its worker thread, one call at a time per transport.
pub trait Transport: Send + Sync + 'static {
    /// The encoding this transport wants (protobuf unless it says so).
    fn encoding(&self) -> Encoding {
        Encoding::Protobuf
    }

    /// Delivers one request. Should return by `deadline`; the pipeline's
    /// flush and shutdown never wait past their own deadlines even if it
    /// does not.
    fn export(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult;

    /// Called once when the pipeline shuts down, after the last export.
    fn shutdown(&self) {}

    /// Counters of every attempt and its outcome, for transports that make
    /// attempts (network ones); shown in
    /// [`ExportStats::attempts`](crate::ExportStats::attempts).
    fn attempts(&self) -> Option<AttemptStats> {
        None
    }
}

/// The seed's name for [`Transport`].
pub use Transport as TraceExporter;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an [`InMemory`] transport does with each export.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Accept everything.
    #[default]
    Accept,
    /// Fail every export (`ExportResult::Failed`).
    Fail,
    /// Fail every `n`-th export, accept the others.
    FailEvery(u64),
    /// Accept the request but reject `n` of its spans (at most all).
    RejectSpans(u64),
    /// Block until [`InMemory::release`] is called (or forever): a collector
    /// that stopped answering. The deadline is ignored on purpose.
    Hang,
}

#[derive(Default)]
struct MemoryState {
    requests: Vec<EncodedRequest>,
    calls: u64,
    active: usize,
    max_active: usize,
    released: bool,
    shut_down: bool,
}

/// A transport that keeps every request it accepts, with configurable
/// latency and failure injection: the test double.
///
/// ```
/// use otlp_exporter::{Behavior, InMemory};
/// use std::time::Duration;
/// let t = InMemory::new().with_latency(Duration::from_millis(1)).with_behavior(Behavior::FailEvery(2));
/// assert_eq!(t.requests().len(), 0);
/// ```
#[derive(Clone, Default)]
pub struct InMemory {
    inner: Arc<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    state: Mutex<MemoryState>,
    released: Condvar,
    latency: Mutex<Duration>,
    behavior: Mutex<Behavior>,
    encoding: Mutex<Encoding>,
}

impl InMemory {
    /// Accepts everything, at once, in protobuf.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits this long in every export (bounded by the export deadline).
    pub fn with_latency(self, latency: Duration) -> Self {
        *lock(&self.inner.latency) = latency;
        self
    }

    /// Sets what each export does.
    pub fn with_behavior(self, behavior: Behavior) -> Self {
        self.set_behavior(behavior);
        self
    }

    /// Asks for JSON instead of protobuf.
    pub fn with_encoding(self, encoding: Encoding) -> Self {
        *lock(&self.inner.encoding) = encoding;
        self
    }

    /// Changes what later exports do (a collector that recovers, say).
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.inner.behavior) = behavior;
    }

    /// Lets every hung export return (as a failure) and later ones pass
    /// straight through `Hang`.
    pub fn release(&self) {
        lock(&self.inner.state).released = true;
        self.inner.released.notify_all();
    }

    /// The requests accepted so far (clones).
    pub fn requests(&self) -> Vec<EncodedRequest> {
        lock(&self.inner.state).requests.clone()
    }

    /// Spans in the requests accepted so far.
    pub fn span_count(&self) -> u64 {
        lock(&self.inner.state)
            .requests
            .iter()
            .map(|r| r.spans as u64)
            .sum()
    }

    /// Number of `export` calls so far, whatever their outcome.
    pub fn calls(&self) -> u64 {
        lock(&self.inner.state).calls
    }

    /// The most `export` calls that were ever running at the same time.
    pub fn max_concurrent(&self) -> usize {
        lock(&self.inner.state).max_active
    }

    /// True once the pipeline has shut the transport down.
    pub fn is_shut_down(&self) -> bool {
        lock(&self.inner.state).shut_down
    }
}

impl Transport for InMemory {
    fn encoding(&self) -> Encoding {
        *lock(&self.inner.encoding)
    }

    fn export(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult {
        {
            let mut state = lock(&self.inner.state);
            state.active += 1;
            state.max_active = state.max_active.max(state.active);
        }
        let result = self.export_inner(request, deadline);
        lock(&self.inner.state).active -= 1;
        result
    }

    fn shutdown(&self) {
        lock(&self.inner.state).shut_down = true;
    }
}

impl InMemory {
    fn export_inner(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult {
        let latency = *lock(&self.inner.latency);
        if !latency.is_zero() {
            std::thread::sleep(latency.min(deadline.saturating_duration_since(Instant::now())));
        }
        let behavior = lock(&self.inner.behavior).clone();
        let mut state = lock(&self.inner.state);
        state.calls += 1;
        match behavior {
            Behavior::Accept => {}
            Behavior::Fail => return ExportResult::Failed("injected failure".into()),
            Behavior::FailEvery(n) if n > 0 && state.calls.is_multiple_of(n) => {
                return ExportResult::Failed("injected failure".into());
            }
            Behavior::FailEvery(_) => {}
            Behavior::RejectSpans(n) => {
                let rejected = n.min(request.spans as u64);
                state.requests.push(request.clone());
                return ExportResult::PartialSuccess {
                    rejected,
                    message: "injected partial success".into(),
                };
            }
            Behavior::Hang => {
                while !state.released {
                    state = self
                        .inner
                        .released
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                return ExportResult::Failed("hung export released".into());
            }
        }
        state.requests.push(request.clone());
        ExportResult::Success
    }
}

/// Appends every request to a file as one line of OTLP JSON (the format the
/// OpenTelemetry Collector's `otlpjsonfile` receiver reads). The embedded
/// default when no collector is configured.
pub struct FileTransport {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl FileTransport {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(FileTransport {
            path,
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Transport for FileTransport {
    fn encoding(&self) -> Encoding {
        Encoding::Json
    }

    fn export(&self, request: &EncodedRequest, _deadline: Instant) -> ExportResult {
        let mut out = lock(&self.out);
        let result = out
            .write_all(&request.body)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        match result {
            Ok(()) => ExportResult::Success,
            Err(e) => ExportResult::Failed(format!("writing {}: {e}", self.path.display())),
        }
    }

    fn shutdown(&self) {
        let _ = lock(&self.out).flush();
    }
}
