//! The pipeline: `record` from any thread into per-thread queue lanes, a
//! worker thread that batches, encodes and exports, load shedding, and the
//! accounting of every span.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use otlp_queue::{Consumer, Mark, Producer, PushError, PushTimeoutError};

use crate::config::{ConfigError, env_usize};
use crate::encode::{Encoded, Encoder, Encoding, SpanRef, encode_span};
use crate::model::{InstrumentationScope, Priority, Resource, ScopeId, SpanData, SpanLimits};
use crate::stats::{Dropped, ExportStats, FlushReport, ShutdownReport};
use crate::transport::{ExportResult, FileTransport, Transport};

/// OTel SDK spec default: `OTEL_BSP_MAX_QUEUE_SIZE`.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;
/// OTel SDK spec default: `OTEL_BSP_SCHEDULE_DELAY` (ms).
pub const DEFAULT_SCHEDULED_DELAY: Duration = Duration::from_millis(5000);
/// OTel SDK spec default: `OTEL_BSP_EXPORT_TIMEOUT` (ms).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_millis(30_000);
/// OTel SDK spec default: `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
/// How long dropping the last [`Pipeline`] handle waits for shutdown.
pub const DEFAULT_DROP_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the embedded default transport writes when no transport is set.
pub const DEFAULT_FILE: &str = "otlp-traces.jsonl";
/// The largest `max_queue_size` (and `OTEL_BSP_MAX_QUEUE_SIZE`): 1 Mi spans
/// per recording thread, a lane of 256 MiB. Larger values are refused with
/// [`ConfigError::InvalidSetting`] (they could only end in an allocation
/// failure).
pub const MAX_QUEUE_SIZE: usize = 1 << 20;
/// The most export threads [`PipelineBuilder::max_concurrent_exports`] may
/// ask for; more is refused with [`ConfigError::InvalidSetting`].
pub const MAX_CONCURRENT_EXPORTS: usize = 256;
/// Every duration setting (`scheduled_delay`, `export_timeout`,
/// `drop_timeout`, the `Block` policy's timeout, and the `OTEL_BSP_*`
/// durations) is saturated to this: a wait of a year is, for a process,
/// "forever", and every deadline then fits in an [`Instant`].
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// How many lanes' worth of spans (`HANDED_OVER_LANES x max_queue_size`)
/// the pipeline keeps, across all of them, for threads that exited with
/// spans still queued (their lanes are freed at exit and the spans handed
/// to the worker). Beyond that, while the worker cannot keep up (a
/// collector outage), the oldest handed-over spans are dropped and counted
/// as [`Dropped::orphaned`]: threads that come and go cannot grow memory
/// without bound.
pub const HANDED_OVER_LANES: usize = 8;
/// The most distinct instrumentation scopes a pipeline keeps. Past it, a
/// new scope's spans are exported under the pipeline's default scope (the
/// crate's own name), so that a program that makes a tracer per request
/// cannot grow the table without bound.
pub const MAX_SCOPES: usize = 1 << 16;

/// What `record` does when the recording thread's queue lane is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Shedding {
    /// Drop the new span (the OpenTelemetry spec's behaviour). Never blocks.
    #[default]
    DropNewest,
    /// Drop the lane's oldest span to make room. Never blocks (it may spin
    /// for the moment the worker takes to finish reading that span).
    DropOldest,
    /// Wait for room, up to `timeout`, then drop the new span. Blocks the
    /// recording thread: use it where losing spans is worse than waiting.
    Block {
        /// The longest a `record` call waits.
        timeout: Duration,
    },
    /// Drop low-priority spans ([`Priority::Low`]) as soon as the lane holds
    /// `high_water` spans or more; drop normal spans only when it is full.
    Priority {
        /// Lane fill at which low-priority spans start being shed.
        high_water: usize,
    },
}

/// What became of one `record` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recorded {
    /// Queued for export.
    Queued,
    /// Queued, and an older span of this thread's lane was dropped to make
    /// room (drop-oldest).
    QueuedEvicting,
    /// Not queued; counted under this reason.
    Dropped(DropReason),
}

/// Why `record` did not queue a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The lane was full.
    QueueFull,
    /// Not sampled.
    NotSampled,
    /// Low priority above the high-water mark.
    LowPriority,
    /// The pipeline is shut down (or shutting down).
    Shutdown,
}

/// Builds a [`Pipeline`]. Settings made here win over the environment
/// (`OTEL_BSP_*`), which wins over the OpenTelemetry spec's defaults.
#[must_use]
pub struct PipelineBuilder {
    /// Wrapped at once, so that a `Drop` of the user's transport that
    /// panics is contained wherever the builder or pipeline lets go of it.
    transport: Option<UserTransport>,
    file: Option<PathBuf>,
    resource: Option<Resource>,
    limits: Option<SpanLimits>,
    max_queue_size: Option<usize>,
    scheduled_delay: Option<Duration>,
    export_timeout: Option<Duration>,
    max_export_batch_size: Option<usize>,
    shedding: Shedding,
    drop_timeout: Duration,
    max_concurrent_exports: usize,
    net: Option<runtime_cap::NetAccess>,
}

impl Config {
    /// True if `span` is to be shed for its low priority.
    fn shedding_low_priority(&self, span: &SpanData, lane: &Producer<EncodedSpan>) -> bool {
        match self.shedding {
            Shedding::Priority { high_water } => {
                span.priority == Priority::Low && lane.lane_len() >= high_water
            }
            _ => false,
        }
    }
}

impl PipelineBuilder {
    /// Exports through `transport`.
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(UserTransport(Some(Box::new(transport))));
        self
    }

    /// Exports OTLP JSON lines to `path`. With no transport and no file set,
    /// the pipeline sends OTLP/HTTP to the collector named by
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) if one is
    /// set, and otherwise writes [`DEFAULT_FILE`] in the working directory.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Network access, needed when no transport is chosen and a collector
    /// is configured in the environment (the pipeline then opens an
    /// [`HttpTransport`](crate::HttpTransport)). Without it such a build
    /// fails with [`ConfigError::NoNetworkAccess`].
    pub fn network(mut self, net: runtime_cap::NetAccess) -> Self {
        self.net = Some(net);
        self
    }

    /// The resource (default: [`Resource::from_env`]).
    pub fn resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Span limits applied to every recorded span (default:
    /// [`SpanLimits::from_env`]).
    pub fn limits(mut self, limits: SpanLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Capacity of each recording thread's queue lane (`OTEL_BSP_MAX_QUEUE_SIZE`,
    /// default 2048). The queue holds at most this many spans per thread
    /// that records. Memory: a slot is 256 bytes, so a lane takes
    /// `256 x max_queue_size` bytes (512 KiB at the default) for each
    /// thread that has recorded a span, until that thread exits (its lane is
    /// then freed and its remaining spans handed to the worker, which keeps
    /// at most [`HANDED_OVER_LANES`] times this many for all exited threads
    /// together; see [`Dropped::orphaned`]).
    ///
    /// Allowed: `1..=`[`MAX_QUEUE_SIZE`]; anything else makes
    /// [`build`](Self::build) return [`ConfigError::InvalidSetting`] naming
    /// the setting (or the environment variable) and the range. If a
    /// thread's lane cannot be allocated later (memory ran out), its spans
    /// go through a shared lane, or are counted as `queue_full`.
    pub fn max_queue_size(mut self, n: usize) -> Self {
        self.max_queue_size = Some(n);
        self
    }

    /// Longest wait before a partial batch is exported (`OTEL_BSP_SCHEDULE_DELAY`,
    /// default 5 s). Saturated to [`MAX_DURATION`]. Zero is allowed and
    /// means "export whatever has arrived at once"; an idle worker still
    /// sleeps (it never polls an empty queue in a busy loop).
    pub fn scheduled_delay(mut self, d: Duration) -> Self {
        self.scheduled_delay = Some(d);
        self
    }

    /// Deadline given to each export (`OTEL_BSP_EXPORT_TIMEOUT`, default 30 s).
    /// Saturated to [`MAX_DURATION`] (so `Duration::MAX` means "no practical
    /// deadline"). Zero gives every export a deadline that has already
    /// passed: transports that honour deadlines then fail at once.
    pub fn export_timeout(mut self, d: Duration) -> Self {
        self.export_timeout = Some(d);
        self
    }

    /// Spans per export (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, default 512 or
    /// `max_queue_size` if smaller). Allowed: `1..=max_queue_size`; anything
    /// else is a [`ConfigError::InvalidSetting`].
    pub fn max_export_batch_size(mut self, n: usize) -> Self {
        self.max_export_batch_size = Some(n);
        self
    }

    /// The load-shedding policy (default [`Shedding::DropNewest`]). A
    /// `Block` timeout is saturated to [`MAX_DURATION`]; a `Priority`
    /// high-water mark must be in `1..=max_queue_size`.
    pub fn shedding(mut self, shedding: Shedding) -> Self {
        self.shedding = shedding;
        self
    }

    /// Exports that may be in flight at once (default 1: `Export` is never
    /// called concurrently, as the OpenTelemetry spec says). More lets a
    /// slow transport (a distant collector) overlap requests; requests may
    /// then complete out of order.
    ///
    /// Allowed: `1..=`[`MAX_CONCURRENT_EXPORTS`] (each is a thread);
    /// anything else is a [`ConfigError::InvalidSetting`]. If fewer export
    /// threads can be started than asked for, the pipeline runs with those
    /// that started (with none, the worker exports itself).
    pub fn max_concurrent_exports(mut self, n: usize) -> Self {
        self.max_concurrent_exports = n;
        self
    }

    /// How long dropping the last handle waits for shutdown (default 5 s).
    /// Saturated to [`MAX_DURATION`].
    pub fn drop_timeout(mut self, d: Duration) -> Self {
        self.drop_timeout = d;
        self
    }

    /// Starts the pipeline: reads the environment for what was not set,
    /// checks the settings, and starts the worker thread.
    pub fn build(self) -> Result<Pipeline, ConfigError> {
        let ms = |var| env_usize(var).map(|v| v.map(|ms| Duration::from_millis(ms as u64)));
        let (max_queue_size, queue_setting) = setting(
            (self.max_queue_size, "max_queue_size"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", || {
                env_usize("OTEL_BSP_MAX_QUEUE_SIZE")
            }),
            DEFAULT_MAX_QUEUE_SIZE,
        )?;
        if max_queue_size == 0 || max_queue_size > MAX_QUEUE_SIZE {
            return Err(ConfigError::InvalidSetting {
                setting: "max_queue_size",
                reason: format!(
                    "{queue_setting}={max_queue_size} is not between 1 and {MAX_QUEUE_SIZE} \
                     (spans per recording thread)"
                ),
            });
        }
        // The default batch size is cut to a smaller queue; a batch size
        // that was asked for is checked against it below.
        let (max_export_batch_size, batch_setting) = setting(
            (self.max_export_batch_size, "max_export_batch_size"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", || {
                env_usize("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
            }),
            DEFAULT_MAX_EXPORT_BATCH_SIZE.min(max_queue_size),
        )?;
        let (scheduled_delay, _) = setting(
            (self.scheduled_delay, "scheduled_delay"),
            ("OTEL_BSP_SCHEDULE_DELAY", || ms("OTEL_BSP_SCHEDULE_DELAY")),
            DEFAULT_SCHEDULED_DELAY,
        )?;
        let (export_timeout, _) = setting(
            (self.export_timeout, "export_timeout"),
            ("OTEL_BSP_EXPORT_TIMEOUT", || ms("OTEL_BSP_EXPORT_TIMEOUT")),
            DEFAULT_EXPORT_TIMEOUT,
        )?;
        if max_export_batch_size == 0 || max_export_batch_size > max_queue_size {
            return Err(ConfigError::InvalidSetting {
                setting: "max_export_batch_size",
                reason: format!(
                    "{batch_setting}={max_export_batch_size} is not between 1 and max_queue_size \
                     ({max_queue_size})"
                ),
            });
        }
        let shedding = match self.shedding {
            Shedding::Priority { high_water } if high_water == 0 || high_water > max_queue_size => {
                return Err(ConfigError::InvalidSetting {
                    setting: "shedding",
                    reason: format!(
                        "high_water {high_water} is not between 1 and max_queue_size ({max_queue_size})"
                    ),
                });
            }
            Shedding::Block { timeout } => Shedding::Block {
                timeout: timeout.min(MAX_DURATION),
            },
            other => other,
        };
        if !(1..=MAX_CONCURRENT_EXPORTS).contains(&self.max_concurrent_exports) {
            return Err(ConfigError::InvalidSetting {
                setting: "max_concurrent_exports",
                reason: format!(
                    "{} is not between 1 and {MAX_CONCURRENT_EXPORTS}",
                    self.max_concurrent_exports
                ),
            });
        }
        let transport = match (self.transport, self.file) {
            (Some(t), _) => t,
            #[cfg(feature = "http")]
            (None, None) if collector_configured() => match self.net {
                Some(net) => {
                    UserTransport(Some(Box::new(crate::HttpTransport::builder(net).build()?)))
                }
                None => return Err(ConfigError::NoNetworkAccess),
            },
            (None, file) => {
                let path = file.unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
                UserTransport(Some(Box::new(FileTransport::open(&path).map_err(|e| {
                    ConfigError::InvalidSetting {
                        setting: "file",
                        reason: format!("cannot open {}: {e}", path.display()),
                    }
                })?)))
            }
        };
        let limits = match self.limits {
            Some(l) => l,
            None => SpanLimits::from_env()?,
        };
        let resource = self.resource.unwrap_or_else(Resource::from_env);
        // User code: a panic here is a configuration error, not a crash.
        let encoding =
            catch_unwind(AssertUnwindSafe(|| transport.get().encoding())).map_err(|p| {
                ConfigError::InvalidSetting {
                    setting: "transport",
                    reason: format!("Transport::encoding panicked: {}", panic_message(p)),
                }
            })?;
        let config = Config {
            max_concurrent_exports: self.max_concurrent_exports,
            encoding,
            max_export_batch_size,
            scheduled_delay: scheduled_delay.min(MAX_DURATION),
            export_timeout: export_timeout.min(MAX_DURATION),
            shedding,
            limits,
        };
        Pipeline::start(
            config,
            max_queue_size,
            resource,
            transport,
            self.drop_timeout.min(MAX_DURATION),
        )
    }
}

/// True if the environment names a collector (`OTEL_EXPORTER_OTLP_ENDPOINT`
/// or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
#[cfg(feature = "http")]
fn collector_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()))
}

/// The builder's value if set; else the environment's (read only then, so
/// a malformed variable the builder overrides is no error); else `default`.
/// Returns the value and the name of where it came from (the builder
/// method or the variable), for error messages.
fn setting<T>(
    (builder, method): (Option<T>, &'static str),
    (var, env): (
        &'static str,
        impl FnOnce() -> Result<Option<T>, ConfigError>,
    ),
    default: T,
) -> Result<(T, &'static str), ConfigError> {
    match builder {
        Some(v) => Ok((v, method)),
        None => Ok(match env()? {
            Some(v) => (v, var),
            None => (default, method),
        }),
    }
}

struct Config {
    /// What the transport wants; spans are encoded in it as they are recorded.
    encoding: Encoding,
    max_concurrent_exports: usize,
    max_export_batch_size: usize,
    scheduled_delay: Duration,
    export_timeout: Duration,
    shedding: Shedding,
    limits: SpanLimits,
}

/// A span as it travels through the queue: already encoded (on the thread
/// that recorded it, so encoding runs in parallel on every recording
/// thread), inline when small so that recording allocates nothing.
pub(crate) struct EncodedSpan {
    scope: ScopeId,
    bytes: SpanBytes,
}

/// Most encoded spans with a handful of attributes fit inline; the slot is
/// then 256 bytes.
const INLINE: usize = 240;

// The size difference is the point: the inline variant is what makes the
// common case allocation-free, and the queue slot has to hold it anyway.
#[allow(clippy::large_enum_variant)]
enum SpanBytes {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl EncodedSpan {
    #[inline(always)]
    fn new(scope: ScopeId, bytes: &[u8]) -> Self {
        let bytes = match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE => {
                let mut buf = [0; INLINE];
                buf[..bytes.len()].copy_from_slice(bytes);
                SpanBytes::Inline { len, buf }
            }
            _ => SpanBytes::Heap(bytes.into()),
        };
        EncodedSpan { scope, bytes }
    }

    fn as_ref(&self) -> SpanRef<'_> {
        SpanRef {
            scope: self.scope,
            bytes: match &self.bytes {
                SpanBytes::Inline { len, buf } => &buf[..usize::from(*len)],
                SpanBytes::Heap(b) => b,
            },
        }
    }
}

const RUNNING: u8 = 0;
const CLOSED: u8 = 1;

/// Record-side counters of one thread for one pipeline. Each has a single
/// writer (that thread), so increments are plain loads and stores.
#[derive(Default)]
struct ThreadCounters {
    /// Calls to record (written with a SeqCst swap: see `Shared::state`).
    accepted: AtomicU64,
    /// Calls to record that have finished; `accepted - resolved` is 0 or 1.
    resolved: AtomicU64,
    pushed: AtomicU64,
    evicted: AtomicU64,
    queue_full: AtomicU64,
    not_sampled: AtomicU64,
    low_priority: AtomicU64,
    after_shutdown: AtomicU64,
}

fn bump(c: &AtomicU64) {
    // Relaxed: a statistic with a single writer; readers that need the
    // value synchronise through `resolved` (Release/Acquire).
    c.store(
        c.load(Ordering::Relaxed).saturating_add(1),
        Ordering::Relaxed,
    );
}

/// The worker's side of the accounting, changed once per batch.
#[derive(Default)]
struct Ledger {
    popped: u64,
    in_flight: u64,
    exported: u64,
    rejected: u64,
    export_failed: u64,
    too_large: u64,
    export_calls: u64,
    failed_calls: u64,
    transport_panics: u64,
    /// The last export failure or transport panic, for
    /// [`Pipeline::last_error`].
    last_error: Option<String>,
    /// Set when shutdown's deadline passed before the worker finished:
    /// from then on the worker's results no longer count, and everything
    /// not yet resolved is "timed out at shutdown".
    abandoned: bool,
    /// Set when the worker has closed the queue (end of shutdown).
    closed: bool,
    /// Spans handed over by threads that exited (taken back out of their
    /// lanes so that the lanes are freed at once), waiting for the worker.
    /// At most `HANDED_OVER_LANES x max_queue_size`; older ones are dropped
    /// as `orphaned`.
    adopted: VecDeque<EncodedSpan>,
    /// Spans recorded from inside the transport, for a later batch (see
    /// `defer`). At most `max_queue_size`.
    deferred: VecDeque<EncodedSpan>,
    /// Spans counted as pushed that are not in the lanes: taken back into
    /// `adopted`, or put in `deferred` directly.
    taken_back: u64,
    /// Spans ever put in `adopted`, and ever taken out of it (by the worker
    /// or as `orphaned`): a flush covers up to the former's value.
    adopted_in: u64,
    adopted_out: u64,
    orphaned: u64,
}

impl Ledger {
    /// Adds `n` to a counter, saturating.
    fn add(counter: &mut u64, n: u64) {
        *counter = counter.saturating_add(n);
    }
}

#[derive(Default)]
struct Control {
    flushed: u64,
    shutdown_deadline: Option<Instant>,
    finished: bool,
}

struct Shared {
    id: u64,
    /// RUNNING or CLOSED. `record` swaps its `accepted` counter (SeqCst)
    /// before loading this (SeqCst); shutdown stores CLOSED (SeqCst) before
    /// loading every `accepted`. So either shutdown sees the record and
    /// waits for it to resolve, or the record sees CLOSED and does not push.
    state: AtomicU8,
    config: Config,
    template: Mutex<Producer<EncodedSpan>>,
    threads: Mutex<Threads>,
    ledger: Mutex<Ledger>,
    control: Mutex<Control>,
    control_cv: Condvar,
    flush_requested: AtomicU64,
    worker: Thread,
    scopes: Mutex<ScopeTable>,
    scopes_version: AtomicU64,
    drop_timeout: Duration,
    /// Also held by the worker (and export threads).
    transport: Arc<UserTransport>,
    /// True while the worker naps; a thread that finds its lane full then
    /// wakes it (once per nap), so that on a machine where threads share
    /// cores the worker does not wait out a scheduler slice while lanes
    /// overflow.
    worker_napping: AtomicBool,
    /// The lane for records that cannot use their thread's own: made from
    /// a thread-local destructor, or re-entrant, or when a thread's lane
    /// could not be allocated. Rare, so a mutex is fine.
    fallback: Mutex<Option<LocalLane>>,
    /// Counters of records that found no lane at all (neither their own nor
    /// the fallback could be allocated): counted as queue-full. Written
    /// only under the `fallback` lock.
    laneless: Arc<ThreadCounters>,
    /// True while `Ledger::adopted` may hold spans (a hint the worker reads
    /// without taking the ledger lock).
    has_adopted: AtomicBool,
    /// The queue's lane capacity (`max_queue_size`).
    capacity: usize,
}

/// The user's transport, behind a wrapper whose drop catches a panic of
/// the transport's own `Drop` (it runs on whichever thread lets go last).
struct UserTransport(Option<Box<dyn Transport>>);

impl UserTransport {
    fn get(&self) -> &dyn Transport {
        match &self.0 {
            Some(t) => &**t,
            None => unreachable!("the transport is taken only by drop"),
        }
    }

    /// `Transport::attempts`, with a panic counted as no statistics.
    fn attempts(&self) -> Option<crate::AttemptStats> {
        catch_unwind(AssertUnwindSafe(|| self.get().attempts())).unwrap_or_else(|p| {
            drop_quietly(p);
            None
        })
    }
}

impl Drop for UserTransport {
    fn drop(&mut self) {
        drop_quietly(self.0.take());
    }
}

/// Emits a log record through `tracing`, catching a panic of the
/// subscriber (user code): a log line is never worth the worker.
fn log_quietly(emit: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(emit)) {
        drop_quietly(payload);
    }
}

/// Drops `v`, catching (and forgetting the payload of) a panic in its
/// `Drop`: user values are dropped where a panic must not escape.
fn drop_quietly<T>(v: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(v))) {
        // The payload's own drop could panic too: leak it instead.
        std::mem::forget(payload);
    }
}

/// The message of a caught panic (its `&str` or `String` payload). The
/// payload is dropped without letting a panic of its own escape.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    };
    drop_quietly(payload);
    message
}

thread_local! {
    /// The id of the pipeline whose worker or export thread this is (0 on
    /// every other thread). Code the pipeline calls from there (a transport)
    /// may record, flush, shut down or drop the pipeline: those calls must
    /// not wait for the worker, which is this very thread (or waits for it).
    static PIPELINE_THREAD: Cell<u64> = const { Cell::new(0) };
}

/// True if the calling thread is `shared`'s worker or one of its export
/// threads.
fn on_pipeline_thread(shared: &Shared) -> bool {
    PIPELINE_THREAD
        .try_with(|id| id.get() == shared.id)
        .unwrap_or(false)
}

/// The instrumentation scopes registered with a pipeline: a list (the
/// index is the [`ScopeId`]) and a hash index to find an equal scope in
/// O(1).
struct ScopeTable {
    list: Vec<InstrumentationScope>,
    /// Hash of (name, version, schema URL) to the ids with that hash.
    index: HashMap<u64, Vec<u32>>,
    /// Set when a scope was first refused for want of room (logged once).
    full: bool,
}

impl ScopeTable {
    fn new(default: InstrumentationScope) -> Self {
        let mut table = ScopeTable {
            list: Vec::new(),
            index: HashMap::new(),
            full: false,
        };
        table.insert(default);
        table
    }

    fn key(scope: &InstrumentationScope) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        scope.name.hash(&mut h);
        scope.version.hash(&mut h);
        scope.schema_url.hash(&mut h);
        h.finish()
    }

    /// The id of an equal scope, if registered.
    fn find(&self, scope: &InstrumentationScope) -> Option<ScopeId> {
        let ids = self.index.get(&Self::key(scope))?;
        ids.iter()
            .copied()
            .find(|&i| self.list[i as usize] == *scope)
            .map(ScopeId)
    }

    fn insert(&mut self, scope: InstrumentationScope) -> ScopeId {
        let id = self.list.len() as u32;
        self.index.entry(Self::key(&scope)).or_default().push(id);
        self.list.push(scope);
        ScopeId(id)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A span export pipeline. Cheap to clone; every clone is the same
/// pipeline. Dropping the last clone shuts it down (waiting at most the
/// builder's `drop_timeout`).
///
/// ```
/// use otlp_exporter::{InMemory, Pipeline, SpanData};
/// use std::time::Duration;
///
/// let memory = InMemory::new();
/// let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
/// pipeline.record(SpanData::new("hello"));
/// let report = pipeline.shutdown(Duration::from_secs(5));
/// assert!(report.completed);
/// assert_eq!(report.stats.exported, 1);
/// assert_eq!(memory.span_count(), 1);
/// ```
#[derive(Clone)]
pub struct Pipeline {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let timeout = self.shared.drop_timeout;
        shutdown(&self.shared, timeout);
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static LANES: RefCell<Vec<LocalLane>> = const { RefCell::new(Vec::new()) };
}

/// This thread's lane into one pipeline.
struct LocalLane {
    pipeline: u64,
    producer: Producer<EncodedSpan>,
    counters: Arc<ThreadCounters>,
    /// Reused buffer for encoding a span.
    scratch: Vec<u8>,
    /// The pipeline, to hand the lane's spans over when the thread exits.
    shared: Weak<Shared>,
    /// This thread is the pipeline's worker or one of its export threads:
    /// its records come from inside the transport (see `defer`).
    reentrant: bool,
}

impl Drop for LocalLane {
    /// The thread is gone (or the pipeline is): spans still in the lane are
    /// handed to the worker, so that the lane's memory is freed now rather
    /// than when the worker gets to it (during a collector outage, that
    /// could be never).
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            hand_over(&shared, &self.producer);
            // This thread records no more into this lane (it is this
            // thread's own, or the pipeline is gone): its counts are final.
            // Folded in under the same lock `record_totals` reads them with,
            // so no snapshot counts them twice or not at all.
            lock(&shared.threads).retire(&self.counters);
        }
    }
}

/// Takes every span out of `producer`'s lane into the pipeline's adopted
/// spans (see `Ledger::adopted`), keeping at most `max_queue_size` there
/// (the oldest beyond are counted as orphaned).
fn hand_over(shared: &Shared, producer: &Producer<EncodedSpan>) {
    let mut ledger = lock(&shared.ledger);
    if ledger.closed || ledger.abandoned || producer.is_closed() {
        // The worker is done: whatever is left is dropped with the lane,
        // as it always was (and already counted: timed out, or never
        // accepted after the final drain).
        return;
    }
    let ledger = &mut *ledger;
    let n = producer.take_back(|span| ledger.adopted.push_back(span));
    if n == 0 {
        return;
    }
    Ledger::add(&mut ledger.taken_back, n as u64);
    Ledger::add(&mut ledger.adopted_in, n as u64);
    let over = ledger
        .adopted
        .len()
        .saturating_sub(shared.capacity.saturating_mul(HANDED_OVER_LANES));
    if over > 0 {
        ledger.adopted.drain(..over);
        Ledger::add(&mut ledger.orphaned, over as u64);
        Ledger::add(&mut ledger.adopted_out, over as u64);
    }
    shared.has_adopted.store(true, Ordering::Release);
}

impl Pipeline {
    /// A builder with nothing set.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            transport: None,
            file: None,
            resource: None,
            limits: None,
            max_queue_size: None,
            scheduled_delay: None,
            export_timeout: None,
            max_export_batch_size: None,
            shedding: Shedding::default(),
            drop_timeout: DEFAULT_DROP_TIMEOUT,
            max_concurrent_exports: 1,
            net: None,
        }
    }

    fn start(
        config: Config,
        capacity: usize,
        resource: Resource,
        transport: UserTransport,
        drop_timeout: Duration,
    ) -> Result<Pipeline, ConfigError> {
        let transport = Arc::new(transport);
        let (producer, consumer) =
            otlp_queue::try_bounded::<EncodedSpan>(capacity).map_err(|e| {
                ConfigError::InvalidSetting {
                    setting: "max_queue_size",
                    reason: e.to_string(),
                }
            })?;
        let encoder = Encoder::new(resource);
        let scopes = ScopeTable::new(encoder.scope(ScopeId::DEFAULT).clone());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Shared>>(1);
        let worker = thread::Builder::new()
            .name("otlp-exporter".into())
            .spawn(move || {
                if let Ok(shared) = rx.recv() {
                    Worker::run_guarded(shared, consumer, encoder);
                }
            })
            .map_err(|e| ConfigError::InvalidSetting {
                setting: "worker",
                reason: format!("cannot start the exporter's worker thread: {e}"),
            })?;
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            state: AtomicU8::new(RUNNING),
            config,
            template: Mutex::new(producer),
            threads: Mutex::new(Threads::default()),
            ledger: Mutex::new(Ledger::default()),
            control: Mutex::new(Control::default()),
            control_cv: Condvar::new(),
            flush_requested: AtomicU64::new(0),
            worker: worker.thread().clone(),
            scopes: Mutex::new(scopes),
            scopes_version: AtomicU64::new(0),
            drop_timeout,
            transport: transport.clone(),
            fallback: Mutex::new(None),
            laneless: Arc::new(ThreadCounters::default()),
            has_adopted: AtomicBool::new(false),
            capacity,
            worker_napping: AtomicBool::new(false),
        });
        lock(&shared.threads).live.push(shared.laneless.clone());
        // The worker holds the shared state too; it cannot fail to receive
        // it (it is waiting for exactly this message).
        let _ = tx.send(shared.clone());
        Ok(Pipeline {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Registers an instrumentation scope (or finds an equal one) and
    /// returns its id, for [`SpanData::scope`].
    ///
    /// Finding or adding a scope costs O(1) (a hash index). A pipeline keeps
    /// at most [`MAX_SCOPES`] scopes; past that, a new scope gets
    /// [`ScopeId::DEFAULT`] (its spans are exported under the pipeline's
    /// default scope).
    pub fn scope(&self, scope: InstrumentationScope) -> ScopeId {
        let mut scopes = lock(&self.shared().scopes);
        if let Some(id) = scopes.find(&scope) {
            return id;
        }
        if scopes.list.len() >= MAX_SCOPES {
            let first = !std::mem::replace(&mut scopes.full, true);
            drop(scopes);
            if first {
                log_quietly(|| {
                    tracing::warn!(
                        max = MAX_SCOPES,
                        "otlp-exporter: the scope table is full; spans of new scopes are \
                         exported under the default scope"
                    )
                });
            }
            return ScopeId::DEFAULT;
        }
        let id = scopes.insert(scope);
        self.shared().scopes_version.fetch_add(1, Ordering::Release);
        id
    }

    /// Records a finished span: queues it for export, or counts why not.
    ///
    /// Called from inside this pipeline's own transport (on its worker or
    /// export threads), the span is kept for a later batch (at most
    /// `max_queue_size` such spans; beyond, `QueueFull`) and never waits,
    /// whatever the shedding policy.
    ///
    /// Takes no lock and makes no system call in steady state (the first
    /// call on each thread sets up that thread's lane; a call that finds
    /// its lane full may wake a napping worker, one wake per nap); never
    /// blocks unless the policy is [`Shedding::Block`].
    pub fn record(&self, span: SpanData) -> Recorded {
        self.record_span(span, true)
    }

    /// `record`, skipping the limits for spans already built within them
    /// (by [`Span`](crate::Span)).
    pub(crate) fn record_span(&self, span: SpanData, apply_limits: bool) -> Recorded {
        let shared = &self.handle.shared;
        let mut span = Some(span);
        let fast = LANES.try_with(|lanes| {
            // Re-entry (a record from inside a record) finds the cell
            // borrowed: leave the span for the slow path below.
            let mut lanes = lanes.try_borrow_mut().ok()?;
            let i = match lanes.iter().position(|l| l.pipeline == shared.id) {
                Some(i) => i,
                None => {
                    // Forget lanes of pipelines that are gone.
                    lanes.retain(|l| !l.producer.is_closed());
                    // No lane (memory ran out): the slow path below.
                    lanes.push(new_lane(shared)?);
                    lanes.len() - 1
                }
            };
            Some(record_into(
                shared,
                &mut lanes[i],
                span.take()?,
                apply_limits,
            ))
        });
        match (fast, span) {
            (Ok(Some(recorded)), _) => recorded,
            // Thread-local storage is being torn down, re-entry, or no lane
            // of its own could be allocated: the shared fallback lane.
            (_, Some(span)) => {
                let mut fallback = lock(&shared.fallback);
                if fallback.is_none() {
                    // Shared by every thread: never marked re-entrant (a
                    // record from a pipeline thread that lands here still
                    // never waits: see `push`).
                    *fallback = new_lane(shared);
                    if let Some(lane) = fallback.as_mut() {
                        lane.reentrant = false;
                    }
                }
                match fallback.as_mut() {
                    Some(lane) => record_into(shared, lane, span, apply_limits),
                    None => record_laneless(shared, span),
                }
            }
            (_, None) => unreachable!("the span is taken only when it is recorded"),
        }
    }

    /// Records every span of a batch (the seed's vocabulary: a batch of
    /// spans handed over in one call). Returns how many were queued.
    pub fn record_batch(&self, batch: impl IntoIterator<Item = SpanData>) -> usize {
        batch
            .into_iter()
            .map(|s| self.record(s))
            .filter(|r| matches!(r, Recorded::Queued | Recorded::QueuedEvicting))
            .count()
    }

    /// A snapshot of the accounting. See [`ExportStats`] for when it
    /// balances.
    pub fn stats(&self) -> ExportStats {
        stats(self.shared())
    }

    /// Exports everything queued now, waiting at most `timeout`. Works from
    /// any thread, an async runtime's included: it blocks the calling
    /// thread, and the work is done by the pipeline's own thread.
    ///
    /// The flush covers what was queued when it began (spans recorded
    /// meanwhile are left for later exports), so it completes under
    /// sustained load too.
    ///
    /// Called from inside the pipeline's own transport (on its worker or
    /// export thread), it cannot wait for the worker (that would wait for
    /// itself): it returns at once with `completed: false`.
    pub fn force_flush(&self, timeout: Duration) -> FlushReport {
        let shared = self.shared();
        let before = stats(shared);
        let deadline = Instant::now().checked_add(timeout);
        let completed = if shared.state.load(Ordering::SeqCst) != RUNNING {
            true
        } else if on_pipeline_thread(shared) {
            log_quietly(|| {
                tracing::warn!(
                    "otlp-exporter: force_flush called from inside the pipeline's transport; \
                 it cannot wait for the worker it runs on"
                )
            });
            false
        } else {
            let generation = shared.flush_requested.fetch_add(1, Ordering::AcqRel) + 1;
            shared.worker.unpark();
            wait_control(shared, deadline, |c| c.flushed >= generation || c.finished)
        };
        let after = stats(shared);
        FlushReport {
            completed,
            exported: after.exported.saturating_sub(before.exported),
            dropped: after.dropped.minus(&before.dropped),
            pending: after.queued + after.in_flight,
        }
    }

    /// Stops accepting spans, exports what is queued, and stops the worker,
    /// waiting at most `timeout`. Spans still pending at the deadline are
    /// counted as timed out. Later calls return at once with the final
    /// accounting.
    ///
    /// A transport call that hangs past the deadline keeps the pipeline's
    /// worker thread until it returns (threads cannot be cancelled); its
    /// results are then ignored, and the thread exits.
    ///
    /// Safe to call more than once, and from several threads at once: each
    /// call waits for the same shutdown. Called from inside the pipeline's
    /// own transport (or when the last handle is dropped there), it starts
    /// the shutdown and returns at once with `completed: false`; the worker
    /// finishes it when the transport returns.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        shutdown(self.shared(), timeout)
    }

    /// The last export failure (a transport's `Failed` reason) or transport
    /// panic ("transport panicked: ..."), if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared().ledger).last_error.clone()
    }

    /// The span limits this pipeline applies.
    pub fn limits(&self) -> SpanLimits {
        self.shared().config.limits
    }

    /// A tracer whose spans belong to the scope `name`/`version`.
    pub fn tracer(
        &self,
        name: impl Into<crate::Str>,
        version: impl Into<crate::Str>,
    ) -> crate::Tracer {
        let scope = self.scope(InstrumentationScope::new(name, version));
        crate::Tracer::new(self.clone(), scope)
    }
}

impl Shared {
    /// Wakes the worker if it is napping (off the fast path: only when a
    /// lane is full).
    fn wake_worker(&self) {
        // Relaxed load first, so that a full lane costs one read of a
        // shared line, not a write, while the worker is awake. The swap
        // makes sure one thread wakes it per nap.
        if self.worker_napping.load(Ordering::Relaxed)
            && self.worker_napping.swap(false, Ordering::AcqRel)
        {
            self.worker.unpark();
        }
    }

    /// The worker's nap: at most `d`, cut short by `wake_worker`.
    fn nap(&self, d: Duration) {
        self.worker_napping.store(true, Ordering::Release);
        thread::park_timeout(d);
        self.worker_napping.store(false, Ordering::Relaxed);
    }
}

/// A lane for the calling thread, or `None` if it cannot be allocated.
fn new_lane(shared: &Arc<Shared>) -> Option<LocalLane> {
    let producer = lock(&shared.template).try_clone().ok()?;
    let counters = Arc::new(ThreadCounters::default());
    lock(&shared.threads).live.push(counters.clone());
    Some(LocalLane {
        pipeline: shared.id,
        producer,
        counters,
        scratch: Vec::with_capacity(INLINE),
        shared: Arc::downgrade(shared),
        reentrant: on_pipeline_thread(shared),
    })
}

/// Accounts for a record that found no lane at all (memory ran out):
/// counted as queue-full (or after shutdown). Called under the fallback
/// lock, which makes it the single writer of `laneless`.
fn record_laneless(shared: &Shared, span: SpanData) -> Recorded {
    let c = &*shared.laneless;
    let n = c.accepted.load(Ordering::Relaxed) + 1;
    // SeqCst: as in `record_into`.
    c.accepted.swap(n, Ordering::SeqCst);
    let outcome = if shared.state.load(Ordering::SeqCst) != RUNNING {
        bump(&c.after_shutdown);
        Recorded::Dropped(DropReason::Shutdown)
    } else {
        bump(&c.queue_full);
        Recorded::Dropped(DropReason::QueueFull)
    };
    drop(span);
    c.resolved.store(n, Ordering::Release);
    outcome
}

fn record_into(
    shared: &Shared,
    lane: &mut LocalLane,
    mut span: SpanData,
    apply_limits: bool,
) -> Recorded {
    let c = &*lane.counters;
    // SeqCst swap, then SeqCst load of `state`: see `Shared::state`.
    let n = c.accepted.load(Ordering::Relaxed) + 1;
    c.accepted.swap(n, Ordering::SeqCst);
    let outcome = if shared.state.load(Ordering::SeqCst) != RUNNING {
        bump(&c.after_shutdown);
        Recorded::Dropped(DropReason::Shutdown)
    } else if !span.context.trace_flags.is_sampled() {
        bump(&c.not_sampled);
        Recorded::Dropped(DropReason::NotSampled)
    } else if shared.config.shedding_low_priority(&span, &lane.producer) {
        bump(&c.low_priority);
        Recorded::Dropped(DropReason::LowPriority)
    } else {
        if apply_limits {
            shared.config.limits.apply(&mut span);
        }
        lane.scratch.clear();
        encode_span(&span, shared.config.encoding, &mut lane.scratch);
        let encoded = EncodedSpan::new(span.scope, &lane.scratch);
        // Free the span's allocations here, on the thread that made them.
        drop(span);
        if lane.reentrant {
            defer(shared, lane, encoded)
        } else {
            push(shared, lane, encoded)
        }
    };
    // Release: whoever sees `resolved` with Acquire sees the counter this
    // call bumped and the span it pushed.
    c.resolved.store(n, Ordering::Release);
    outcome
}

/// A record from inside the transport (on the pipeline's worker or export
/// thread): the span is kept for a later batch in the ledger's deferred
/// spans, which are added to batches that are exported anyway (full, due
/// with other spans, flush, shutdown) and never make a batch due by
/// themselves. So a transport that records a span per export (an
/// instrumented HTTP client) cannot drive the worker round in a loop, at
/// any `scheduled_delay`. At most `max_queue_size` deferred spans are kept;
/// beyond that the record is counted as queue-full (it never blocks,
/// whatever the shedding policy: the worker is this very thread or waits
/// for it).
#[cold]
fn defer(shared: &Shared, lane: &LocalLane, span: EncodedSpan) -> Recorded {
    let c = &*lane.counters;
    let mut ledger = lock(&shared.ledger);
    if ledger.closed || ledger.abandoned {
        drop(ledger);
        drop(span);
        bump(&c.after_shutdown);
        return Recorded::Dropped(DropReason::Shutdown);
    }
    if ledger.deferred.len() >= shared.capacity {
        drop(ledger);
        drop(span);
        bump(&c.queue_full);
        return Recorded::Dropped(DropReason::QueueFull);
    }
    ledger.deferred.push_back(span);
    // Counted as pushed and at once moved out of the lanes (like a
    // hand-over), under the ledger lock that `stats` reads both under.
    Ledger::add(&mut ledger.taken_back, 1);
    bump(&c.pushed);
    Recorded::Queued
}

#[inline(always)]
fn push(shared: &Shared, lane: &LocalLane, span: EncodedSpan) -> Recorded {
    let c = &*lane.counters;
    let p = &lane.producer;
    let closed = |c: &ThreadCounters| {
        bump(&c.after_shutdown);
        Recorded::Dropped(DropReason::Shutdown)
    };
    let full = |c: &ThreadCounters| {
        bump(&c.queue_full);
        shared.wake_worker();
        Recorded::Dropped(DropReason::QueueFull)
    };
    match shared.config.shedding {
        Shedding::DropNewest => match p.try_push(span) {
            Ok(()) => {
                bump(&c.pushed);
                Recorded::Queued
            }
            Err(PushError::Full(_)) => full(c),
            Err(PushError::Closed(_)) => closed(c),
        },
        Shedding::DropOldest => match p.force_push(span) {
            Ok(None) => {
                bump(&c.pushed);
                Recorded::Queued
            }
            Ok(Some(_evicted)) => {
                bump(&c.pushed);
                bump(&c.evicted);
                Recorded::QueuedEvicting
            }
            Err(_) => closed(c),
        },
        Shedding::Block { timeout } => {
            let mut span = match p.try_push(span) {
                Ok(()) => {
                    bump(&c.pushed);
                    return Recorded::Queued;
                }
                Err(PushError::Closed(_)) => return closed(c),
                Err(PushError::Full(back)) => back,
            };
            if on_pipeline_thread(shared) {
                // A record from inside the transport: waiting for room
                // would wait for this very thread (or the worker waiting
                // for it). Never block here.
                return full(c);
            }
            // Wait in slices so that a shutdown is noticed.
            let deadline = Instant::now().checked_add(timeout);
            loop {
                let left = deadline.map_or(Duration::from_millis(10), |d| {
                    d.saturating_duration_since(Instant::now())
                });
                match p.push_timeout(span, left.min(Duration::from_millis(10))) {
                    Ok(()) => {
                        bump(&c.pushed);
                        return Recorded::Queued;
                    }
                    Err(PushTimeoutError::Closed(_)) => return closed(c),
                    Err(PushTimeoutError::Timeout(back)) => {
                        if shared.state.load(Ordering::SeqCst) != RUNNING {
                            // Interrupted by shutdown: the span was not
                            // dropped for want of room but because the
                            // pipeline is closing.
                            return closed(c);
                        }
                        if left.is_zero() {
                            return full(c);
                        }
                        span = back;
                    }
                }
            }
        }
        // Low-priority spans were already shed in `record_into`.
        Shedding::Priority { .. } => match p.try_push(span) {
            Ok(()) => {
                bump(&c.pushed);
                Recorded::Queued
            }
            Err(PushError::Full(_)) => full(c),
            Err(PushError::Closed(_)) => closed(c),
        },
    }
}

/// The record-side counters of the threads that record into a pipeline.
#[derive(Default)]
struct Threads {
    /// Threads that still have a lane.
    live: Vec<Arc<ThreadCounters>>,
    /// The final counts of threads that exited, in `record_totals` order:
    /// a thread's counters are folded in here as it exits, so the list does
    /// not grow with every thread a program ever ran.
    retired: [u64; 7],
}

impl Threads {
    /// Folds the counters of an exited thread into `retired`.
    fn retire(&mut self, counters: &Arc<ThreadCounters>) {
        let Some(i) = self.live.iter().position(|c| Arc::ptr_eq(c, counters)) else {
            return;
        };
        let c = self.live.swap_remove(i);
        for (slot, n) in self.retired.iter_mut().zip(c.values()) {
            *slot = slot.saturating_add(n);
        }
    }
}

impl ThreadCounters {
    /// The counters in `record_totals` order. Exact when read by the thread
    /// that writes them, or once it has stopped recording.
    fn values(&self) -> [u64; 7] {
        [
            &self.accepted,
            &self.pushed,
            &self.evicted,
            &self.queue_full,
            &self.not_sampled,
            &self.low_priority,
            &self.after_shutdown,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// Sums the record-side counters of every thread.
fn record_totals(shared: &Shared) -> ([u64; 7], bool) {
    // [accepted, pushed, evicted, queue_full, not_sampled, low_priority, after_shutdown]
    let threads = lock(&shared.threads);
    let mut t = threads.retired;
    let mut quiet = true;
    for c in threads.live.iter() {
        // Acquire on `resolved` first: every counter bumped by a call that
        // resolved is then visible.
        let resolved = c.resolved.load(Ordering::Acquire);
        let accepted = c.accepted.load(Ordering::SeqCst);
        quiet &= accepted == resolved;
        for (slot, counter) in t.iter_mut().zip([
            &c.accepted,
            &c.pushed,
            &c.evicted,
            &c.queue_full,
            &c.not_sampled,
            &c.low_priority,
            &c.after_shutdown,
        ]) {
            *slot = slot.saturating_add(counter.load(Ordering::Relaxed));
        }
    }
    (t, quiet)
}

fn stats(shared: &Shared) -> ExportStats {
    let ledger = lock(&shared.ledger);
    let (
        [
            accepted,
            pushed,
            evicted,
            queue_full,
            not_sampled,
            low_priority,
            after_shutdown,
        ],
        _,
    ) = record_totals(shared);
    let mut dropped = Dropped {
        queue_full,
        evicted,
        not_sampled,
        low_priority,
        too_large: ledger.too_large,
        rejected: ledger.rejected,
        export_failed: ledger.export_failed,
        timed_out_at_shutdown: 0,
        after_shutdown,
        orphaned: ledger.orphaned,
    };
    let (queued, in_flight) = if ledger.abandoned {
        // Everything not resolved by the deadline timed out.
        dropped.timed_out_at_shutdown =
            accepted.saturating_sub(ledger.exported.saturating_add(dropped.total()));
        (0, 0)
    } else {
        // In the lanes: pushed and not yet evicted, popped or taken back;
        // plus what exited threads handed over.
        let out = evicted
            .saturating_add(ledger.popped)
            .saturating_add(ledger.taken_back);
        (
            pushed
                .saturating_sub(out)
                .saturating_add(ledger.adopted.len() as u64)
                .saturating_add(ledger.deferred.len() as u64),
            ledger.in_flight,
        )
    };
    ExportStats {
        accepted,
        exported: ledger.exported,
        queued,
        in_flight,
        dropped,
        export_calls: ledger.export_calls,
        failed_calls: ledger.failed_calls,
        transport_panics: ledger.transport_panics,
        attempts: {
            drop(ledger);
            shared.transport.attempts()
        },
    }
}

/// Waits on the control condition until `done` or the deadline; true if done.
fn wait_control(
    shared: &Shared,
    deadline: Option<Instant>,
    done: impl Fn(&Control) -> bool,
) -> bool {
    let mut control = lock(&shared.control);
    loop {
        if done(&control) {
            return true;
        }
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if left.is_zero() {
            return false;
        }
        control = shared
            .control_cv
            .wait_timeout(control, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

fn shutdown(shared: &Shared, timeout: Duration) -> ShutdownReport {
    let before = stats(shared);
    let timeout = timeout.min(MAX_DURATION);
    let deadline = Instant::now().checked_add(timeout);
    {
        let mut control = lock(&shared.control);
        let finished = control.finished;
        if control.shutdown_deadline.is_some() && (finished || lock(&shared.ledger).abandoned) {
            // Already shut down: the final accounting, at once.
            drop(control);
            return ShutdownReport {
                completed: finished,
                exported: 0,
                dropped: Dropped::default(),
                stats: before,
            };
        }
        if control.shutdown_deadline.is_none() {
            control.shutdown_deadline =
                Some(deadline.unwrap_or_else(|| Instant::now() + MAX_DURATION));
        }
    }
    // SeqCst: see `Shared::state`.
    shared.state.store(CLOSED, Ordering::SeqCst);
    shared.worker.unpark();
    if on_pipeline_thread(shared) {
        // From inside the transport (or the last handle dropped there):
        // the worker finishes the shutdown once this call returns; waiting
        // for it here would wait for ourselves.
        log_quietly(|| {
            tracing::warn!(
                "otlp-exporter: shutdown called from inside the pipeline's transport; \
             the worker finishes it when the transport returns"
            )
        });
        let after = stats(shared);
        return ShutdownReport {
            completed: false,
            exported: after.exported.saturating_sub(before.exported),
            dropped: after.dropped.minus(&before.dropped),
            stats: after,
        };
    }
    let completed = wait_control(shared, deadline, |c| c.finished);
    if !completed {
        // Not under the lock: a subscriber may call back into the pipeline.
        let first = !std::mem::replace(&mut lock(&shared.ledger).abandoned, true);
        if first {
            log_quietly(|| {
                tracing::warn!(
                    "otlp-exporter: shutdown deadline passed; spans still pending are counted as timed out"
                )
            });
        }
    }
    let after = stats(shared);
    ShutdownReport {
        completed,
        exported: after.exported.saturating_sub(before.exported),
        dropped: after.dropped.minus(&before.dropped),
        stats: after,
    }
}

/// One encoded batch on its way to the transport.
struct Job {
    encoded: Encoded,
    /// Spans taken from the queue for it (in flight until this job is
    /// accounted for), including any the encoder found too large.
    spans: u64,
    deadline: Instant,
}

/// Exports a job's requests and accounts for its spans (unless shutdown has
/// given up on them, in which case they are already counted as timed out).
///
/// Every call into the transport runs under `catch_unwind`: a panic counts
/// as a failed export of that request's spans (with its message as the
/// pipeline's last error), and the calling thread carries on.
fn send(shared: &Shared, transport: &dyn Transport, job: Job) {
    let (mut exported, mut rejected, mut failed, mut calls, mut failed_calls) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut panics = 0u64;
    let mut last_error = None;
    for request in &job.encoded.requests {
        calls += 1;
        let spans = request.spans as u64;
        let outcome = catch_unwind(AssertUnwindSafe(|| transport.export(request, job.deadline)));
        match outcome {
            Ok(ExportResult::Success) => exported += spans,
            Ok(ExportResult::PartialSuccess {
                rejected: r,
                message,
            }) => {
                let r = r.min(spans);
                rejected += r;
                exported += spans - r;
                if r > 0 {
                    log_quietly(
                        || tracing::debug!(rejected = r, %message, "otlp-exporter: receiver rejected spans"),
                    );
                }
                drop_quietly(message);
            }
            Ok(ExportResult::Failed(reason)) => {
                failed += spans;
                failed_calls += 1;
                log_quietly(
                    || tracing::debug!(%reason, spans = request.spans, "otlp-exporter: export failed"),
                );
                last_error = Some(reason);
            }
            Err(payload) => {
                let message = panic_message(payload);
                failed += spans;
                failed_calls += 1;
                panics += 1;
                log_quietly(
                    || tracing::warn!(%message, spans = request.spans, "otlp-exporter: the transport panicked; its spans count as failed"),
                );
                last_error = Some(format!("transport panicked: {message}"));
            }
        }
    }
    let mut ledger = lock(&shared.ledger);
    if let Some(e) = last_error {
        ledger.last_error = Some(e);
    }
    Ledger::add(&mut ledger.transport_panics, panics);
    if ledger.abandoned {
        return;
    }
    ledger.in_flight = ledger.in_flight.saturating_sub(job.spans);
    Ledger::add(&mut ledger.exported, exported);
    Ledger::add(&mut ledger.rejected, rejected);
    Ledger::add(&mut ledger.export_failed, failed);
    Ledger::add(&mut ledger.too_large, job.encoded.too_large as u64);
    Ledger::add(&mut ledger.export_calls, calls);
    Ledger::add(&mut ledger.failed_calls, failed_calls);
}

/// How long the worker waits for spans to gather when a look at the queue
/// found only a few.
const GATHER: Duration = Duration::from_micros(100);

/// The pipeline's thread: takes spans from the queue, batches, encodes and
/// exports them, and carries out flush and shutdown requests.
struct Worker {
    shared: Arc<Shared>,
    consumer: Option<Consumer<EncodedSpan>>,
    encoder: Encoder,
    encoding: Encoding,
    transport: Arc<UserTransport>,
    /// With `max_concurrent_exports > 1`: hands encoded batches to that
    /// many export threads. `None`: the worker exports itself.
    pool: Option<std::sync::mpsc::SyncSender<Job>>,
    batch: Vec<EncodedSpan>,
    /// Scopes of the pipeline's table already added to the encoder.
    scopes_added: usize,
    scopes_seen: u64,
    last_export: Instant,
    flush_seen: u64,
    last_warn: Option<Instant>,
    dropped_at_warn: u64,
}

impl Worker {
    /// Runs the worker; if it panics anyway (a bug: user code is already
    /// caught where it is called), the pipeline is closed and marked
    /// finished and abandoned, so that nobody waits for it and the
    /// accounting still balances (what was pending counts as timed out).
    fn run_guarded(shared: Arc<Shared>, consumer: Consumer<EncodedSpan>, encoder: Encoder) {
        PIPELINE_THREAD.with(|id| id.set(shared.id));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            Worker::new(shared.clone(), consumer, encoder).run();
        }));
        if let Err(payload) = outcome {
            let message = panic_message(payload);
            log_quietly(
                || tracing::error!(%message, "otlp-exporter: the worker thread panicked; the pipeline is closed"),
            );
            shared.state.store(CLOSED, Ordering::SeqCst);
            {
                let mut ledger = lock(&shared.ledger);
                ledger.abandoned = true;
                ledger.closed = true;
                ledger.last_error = Some(format!("worker panicked: {message}"));
            }
            let mut control = lock(&shared.control);
            control.finished = true;
            if control.shutdown_deadline.is_none() {
                control.shutdown_deadline = Some(Instant::now());
            }
            drop(control);
            shared.control_cv.notify_all();
        }
    }

    fn new(shared: Arc<Shared>, consumer: Consumer<EncodedSpan>, encoder: Encoder) -> Self {
        let encoding = shared.config.encoding;
        // Grows to the batch size if batches get that large (up to
        // `MAX_QUEUE_SIZE` slots: not worth reserving up front).
        let batch = Vec::with_capacity(shared.config.max_export_batch_size.min(1024));
        let transport = shared.transport.clone();
        let n = shared.config.max_concurrent_exports;
        let pool = (n > 1)
            .then(|| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(n);
                let rx = Arc::new(Mutex::new(rx));
                let mut started = 0;
                for i in 0..n {
                    let (rx, shared, transport) = (rx.clone(), shared.clone(), transport.clone());
                    let spawned = thread::Builder::new()
                        .name(format!("otlp-export-{i}"))
                        .spawn(move || {
                            PIPELINE_THREAD.with(|id| id.set(shared.id));
                            loop {
                                // One thread waits on the channel at a time.
                                let job = lock(&rx).recv();
                                match job {
                                    // `send` catches the transport's panics.
                                    Ok(job) => send(&shared, transport.get(), job),
                                    Err(_) => return, // the worker is gone
                                }
                            }
                        });
                    started += usize::from(spawned.is_ok());
                }
                // With no export thread at all, jobs would wait forever:
                // the worker exports itself instead.
                (started > 0).then_some(tx)
            })
            .flatten();
        Worker {
            shared,
            consumer: Some(consumer),
            encoder,
            encoding,
            transport,
            pool,
            batch,
            scopes_added: 1,
            scopes_seen: 0,
            last_export: Instant::now(),
            flush_seen: 0,
            last_warn: None,
            dropped_at_warn: 0,
        }
    }

    fn run(mut self) {
        let mut idle = 0u32;
        loop {
            if self.shared.state.load(Ordering::SeqCst) != RUNNING {
                self.finish();
                return;
            }
            let flush = self.shared.flush_requested.load(Ordering::Acquire);
            if flush != self.flush_seen {
                self.flush();
                self.flush_seen = flush;
                let mut control = lock(&self.shared.control);
                control.flushed = flush;
                drop(control);
                self.shared.control_cv.notify_all();
                continue;
            }
            let took = self.take();
            let max = self.shared.config.max_export_batch_size;
            let due = self.last_export.elapsed() >= self.shared.config.scheduled_delay;
            if self.batch.len() >= max || (due && !self.batch.is_empty()) {
                self.take_deferred(usize::MAX);
                self.export(None);
            } else if due {
                self.last_export = Instant::now();
            }
            if took == 0 {
                idle = idle.saturating_add(1);
                self.idle_wait(idle);
            } else {
                idle = 0;
                if took < (max / 8).max(1) {
                    // Spans trickle in: let them gather before looking
                    // again. Polling a lane that a producer is writing pulls
                    // its cache lines away from it on every look; a short
                    // nap makes the next look take a batch instead. (At
                    // 2048 spans per lane this is safe up to ~40 M spans/s
                    // per recording thread.)
                    self.shared.nap(GATHER);
                }
            }
        }
    }

    /// Waits a little while nothing arrives: spin, then yield, then park
    /// in steps growing to 1.6 ms (never past the next scheduled export of
    /// a batch that holds spans; with nothing to export the schedule does
    /// not matter, so a zero `scheduled_delay` does not make an idle worker
    /// poll).
    fn idle_wait(&self, idle: u32) {
        if idle < 16 {
            std::hint::spin_loop();
        } else if idle < 32 {
            thread::yield_now();
        } else {
            let step = Duration::from_micros(50u64 << (idle - 32).min(5));
            let nap = if self.batch.is_empty() {
                step
            } else {
                let until_due = self
                    .shared
                    .config
                    .scheduled_delay
                    .saturating_sub(self.last_export.elapsed());
                step.min(until_due).max(Duration::from_micros(10))
            };
            self.shared.nap(nap);
        }
    }

    /// Moves spans from the queue (and from exited threads' hand-overs)
    /// into the batch, up to the batch size.
    fn take(&mut self) -> usize {
        let Some(consumer) = self.consumer.as_mut() else {
            return 0;
        };
        let room = self.shared.config.max_export_batch_size - self.batch.len();
        let n = consumer.pop_batch(&mut self.batch, room);
        // Acquire: pairs with the Release store in `hand_over` (the spans
        // themselves are read under the ledger lock).
        let adopted = self.shared.has_adopted.load(Ordering::Acquire);
        if n == 0 && !adopted {
            return 0;
        }
        let mut ledger = lock(&self.shared.ledger);
        Ledger::add(&mut ledger.popped, n as u64);
        let mut m = 0;
        if adopted {
            m = (room - n).min(ledger.adopted.len());
            self.batch.extend(ledger.adopted.drain(..m));
            Ledger::add(&mut ledger.adopted_out, m as u64);
            if ledger.adopted.is_empty() {
                self.shared.has_adopted.store(false, Ordering::Relaxed);
            }
        }
        Ledger::add(&mut ledger.in_flight, (n + m) as u64);
        n + m
    }

    /// Moves up to `limit` deferred spans (recorded from inside the
    /// transport) into the batch, as room allows; returns how many.
    fn take_deferred(&mut self, limit: usize) -> usize {
        let room = self.shared.config.max_export_batch_size - self.batch.len();
        let mut ledger = lock(&self.shared.ledger);
        let m = room.min(limit).min(ledger.deferred.len());
        if m > 0 {
            self.batch.extend(ledger.deferred.drain(..m));
            Ledger::add(&mut ledger.in_flight, m as u64);
        }
        m
    }

    /// A flush: exports everything that was queued when it began (the
    /// queue's mark, and what exited threads had handed over, or hand over
    /// from the marked lanes), then waits for the exports in flight. Spans
    /// recorded after the mark may go along but are not waited for, so
    /// producers that keep recording cannot keep it going.
    fn flush(&mut self) {
        let mark: Option<Mark<EncodedSpan>> = self.consumer.as_mut().map(Consumer::mark);
        let mut adopted_target = None;
        // Deferred spans recorded before the flush; those the flush's own
        // exports record wait for a later batch.
        let mut deferred = lock(&self.shared.ledger).deferred.len();
        loop {
            if self.abandoned() {
                return;
            }
            let mut took = self.take();
            if deferred > 0 {
                let m = self.take_deferred(deferred);
                deferred -= m;
                took += m;
            }
            if !self.batch.is_empty() {
                self.export(None);
            }
            let passed = match (&mark, &self.consumer) {
                (Some(mark), Some(consumer)) => consumer.passed(mark),
                _ => true,
            };
            if passed && deferred == 0 {
                // Spans the marked lanes' threads handed over were moved
                // under the ledger lock before their lane's head moved, so
                // reading `adopted_in` now covers them.
                let ledger = lock(&self.shared.ledger);
                let target = *adopted_target.get_or_insert(ledger.adopted_in);
                if ledger.adopted_out >= target {
                    break;
                }
            } else if took == 0 {
                // A lane's head is being moved by its producer (an eviction
                // or a hand-over): it is done in a moment.
                thread::yield_now();
            }
        }
        self.wait_idle(None);
    }

    /// Exports until the queue is empty and no export is in flight (or
    /// the deadline passes). Used by shutdown, when no record can add more.
    fn drain(&mut self, deadline: Option<Instant>) {
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) || self.abandoned() {
                return;
            }
            let took = self.take() + self.take_deferred(usize::MAX);
            if !self.batch.is_empty() {
                self.export(deadline);
            }
            if took == 0 {
                self.wait_idle(deadline);
                return;
            }
        }
    }

    fn abandoned(&self) -> bool {
        lock(&self.shared.ledger).abandoned
    }

    /// Adds the scopes registered since the last look to the encoder (only
    /// the new ones: each scope is added once).
    fn sync_scopes(&mut self) {
        let version = self.shared.scopes_version.load(Ordering::Acquire);
        if version == self.scopes_seen {
            return;
        }
        let new: Vec<InstrumentationScope> = {
            let scopes = lock(&self.shared.scopes);
            self.scopes_seen = self.shared.scopes_version.load(Ordering::Acquire);
            scopes.list[self.scopes_added.min(scopes.list.len())..].to_vec()
        };
        self.scopes_added += new.len();
        for s in new {
            self.encoder.add_scope(s);
        }
    }

    fn export(&mut self, deadline: Option<Instant>) {
        self.last_export = Instant::now();
        if self.batch.is_empty() {
            return;
        }
        self.sync_scopes();
        let refs: Vec<SpanRef<'_>> = self.batch.iter().map(EncodedSpan::as_ref).collect();
        let mut encoded = Encoded::default();
        self.encoder.assemble(&refs, self.encoding, &mut encoded);
        drop(refs);
        let spans = self.batch.len() as u64;
        self.batch.clear();
        let now = Instant::now();
        // `export_timeout` is at most `MAX_DURATION`, so this fits; the
        // fallback is only a belt.
        let export_deadline = now
            .checked_add(self.shared.config.export_timeout)
            .unwrap_or(now + MAX_DURATION);
        let job = Job {
            encoded,
            spans,
            deadline: deadline.map_or(export_deadline, |d| d.min(export_deadline)),
        };
        match &self.pool {
            // Blocks while every export thread is busy: back pressure, and
            // the spans stay counted as in flight meanwhile.
            Some(pool) => {
                if let Err(e) = pool.send(job) {
                    send(&self.shared, self.transport.get(), e.0);
                }
            }
            None => send(&self.shared, self.transport.get(), job),
        }
        self.warn_about_drops();
    }

    /// Waits until no export is in flight (with a pool of export threads),
    /// the deadline passes, or shutdown gave up.
    fn wait_idle(&self, deadline: Option<Instant>) {
        if self.pool.is_none() {
            return;
        }
        loop {
            let ledger = lock(&self.shared.ledger);
            if ledger.in_flight == 0 || ledger.abandoned {
                return;
            }
            drop(ledger);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Reports new drops through `tracing`, at most every 10 seconds.
    fn warn_about_drops(&mut self) {
        const EVERY: Duration = Duration::from_secs(10);
        if self.last_warn.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        let s = stats(&self.shared);
        let dropped = s.dropped.total().saturating_sub(s.dropped.not_sampled);
        if dropped > self.dropped_at_warn {
            log_quietly(|| {
                tracing::warn!(
                    new_drops = dropped - self.dropped_at_warn,
                    queue_full = s.dropped.queue_full,
                    evicted = s.dropped.evicted,
                    low_priority = s.dropped.low_priority,
                    export_failed = s.dropped.export_failed,
                    rejected = s.dropped.rejected,
                    too_large = s.dropped.too_large,
                    orphaned = s.dropped.orphaned,
                    "otlp-exporter: spans dropped (see Pipeline::stats)"
                )
            });
            self.dropped_at_warn = dropped;
            self.last_warn = Some(Instant::now());
        }
    }

    /// Shutdown: wait for records in progress, export everything, close.
    fn finish(&mut self) {
        let deadline = lock(&self.shared.control).shutdown_deadline;
        // Records that began before CLOSED was stored are seen here (see
        // `Shared::state`); wait for them to land, exporting meanwhile.
        loop {
            let (_, quiet) = record_totals(&self.shared);
            self.drain(deadline);
            if quiet || deadline.is_some_and(|d| Instant::now() >= d) || self.abandoned() {
                break;
            }
            thread::yield_now();
        }
        self.drain(deadline);
        // Closing the queue: later pushes fail and count as after shutdown.
        self.consumer = None;
        lock(&self.shared.ledger).closed = true;
        // The export threads finish what they hold and exit.
        self.pool = None;
        // User code: a panic in the transport's shutdown is counted and
        // reported, and the shutdown still completes (everything was
        // exported or counted above).
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.transport.get().shutdown())) {
            let message = panic_message(payload);
            log_quietly(|| tracing::warn!(%message, "otlp-exporter: Transport::shutdown panicked"));
            let mut ledger = lock(&self.shared.ledger);
            Ledger::add(&mut ledger.transport_panics, 1);
            ledger.last_error = Some(format!("transport panicked in shutdown: {message}"));
        }
        lock(&self.shared.control).finished = true;
        self.shared.control_cv.notify_all();
    }
}
