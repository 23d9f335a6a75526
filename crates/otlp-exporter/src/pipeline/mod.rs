//! The pipeline: `record` from any thread into per-thread queue lanes, a
//! worker thread that batches, encodes and exports, load shedding, and the
//! accounting of every span.
//!
//! This module owns the [`Pipeline`] handle and its public methods, the
//! state its parts share ([`Shared`]), the scope table, and the helpers
//! that keep user code from taking the pipeline down. The parts:
//!
//! * `builder`: [`PipelineBuilder`], the settings and their validation,
//!   the shedding policies, the public limits and defaults;
//! * `lanes`: the record path (thread-local lanes, encoding, shedding at
//!   push, hand-over of exited threads' spans, deferral of re-entrant
//!   records, the byte budget of spans too large for a slot);
//!
//! Memory: the queue is a pool of `max_queue_size` 512-byte slots plus a
//! 16-slot chunk per recording thread; a span too large for its slot is
//! boxed, and the boxes are charged to one byte budget per pipeline
//! (`lanes::LargeBudget`) as large as the pool, refunded when each box is
//! dropped, wherever that is. A span that would overspend it is counted as
//! queue-full (`Block` first waits for it, within its timeout), so what the
//! pipeline holds queued is at most twice the pool plus 16 KiB per
//! recording thread. Batches taken for export are copies, not counted
//! there: at most `max_export_batch_size` spans per export thread.
//! * `accounting`: per-thread counters, the worker's ledger, the stats;
//! * `worker`: the worker thread, exports, flush and shutdown.

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::config::ConfigError;
use crate::encode::Encoder;
use crate::model::{InstrumentationScope, Resource, ScopeId, SpanData, SpanLimits};
use crate::stats::{ExportStats, FlushReport, ShutdownReport};

mod accounting;
mod builder;
mod lanes;
mod worker;

use accounting::*;
use builder::*;
pub(crate) use lanes::INLINE;
use lanes::*;
use worker::*;

pub use builder::{
    DEFAULT_DROP_TIMEOUT, DEFAULT_EXPORT_TIMEOUT, DEFAULT_FILE, DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE, DEFAULT_RETRY_MAX_ELAPSED, DEFAULT_SCHEDULED_DELAY, HANDED_OVER_LANES,
    MAX_CONCURRENT_EXPORTS, MAX_DURATION, MAX_QUEUE_SIZE, MAX_SCOPES, PipelineBuilder, Shedding,
    THREAD_CHUNK_SLOTS,
};

/// What became of one `record` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum DropReason {
    /// The lane was full.
    QueueFull,
    /// Not sampled.
    NotSampled,
    /// Low priority above the high-water mark.
    LowPriority,
    /// The pipeline is shut down (or shutting down).
    Shutdown,
    /// The span's trace id or span id is all zeroes (invalid in OTLP):
    /// counted as [`Dropped::invalid_ids`](crate::Dropped::invalid_ids).
    InvalidIds,
}

const RUNNING: u8 = 0;
const CLOSED: u8 = 1;

struct Shared {
    id: u64,
    /// RUNNING or CLOSED. `record` stores its `accepted` counter, then
    /// the light side of an asymmetric fence pair
    /// (`outstanding::asymmetric`), then loads this; shutdown stores
    /// CLOSED (SeqCst), and the worker, which sees it, runs the heavy side
    /// before loading every `accepted` (`Worker::finish`). So either
    /// shutdown sees the record and waits for it to resolve, or the record
    /// sees CLOSED and does not push; and a record pays no locked
    /// instruction for it (a fence per record cost about 5 ns).
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
    /// The shared pool's fill (in slots) at which a lane that claims a
    /// chunk wakes a napping worker: a batch's worth, or half the queue if
    /// that is less.
    wake_at: usize,
    /// The lane for records that cannot use their thread's own: made from
    /// a thread-local destructor, or re-entrant, or when a thread's lane
    /// could not be allocated. Rare, so a mutex is fine.
    fallback: Mutex<Option<LocalLane>>,
    /// Counters of records that found no lane at all (neither their own nor
    /// the fallback could be allocated): counted as queue-full. Written
    /// only under the `fallback` lock.
    laneless: Arc<ThreadCounters>,
    /// Counters of `Block` records that waited out their timeout for the
    /// `fallback` lock (counted as queue-full). Written only under
    /// `waited_out_lock`, which is never held longer than the count.
    waited_out: Arc<ThreadCounters>,
    waited_out_lock: Mutex<()>,
    /// True while `Ledger::adopted` may hold spans (a hint the worker reads
    /// without taking the ledger lock).
    has_adopted: AtomicBool,
    /// The spans of `Ledger::adopted` the queue's fill does not count,
    /// mirrored (written under the ledger lock) for the priority policy's
    /// high-water mark: spans moved there out of the queue are still held
    /// for export, and count toward it. With the pooled queue the pool
    /// chunks held for adopted spans already count in its fill
    /// (`pooled::Consumer::adopt_exited_each`): only the uncovered ones
    /// are added; with per-thread lanes (drop-oldest), all of them.
    adopted_len: AtomicUsize,
    /// The queue's lane capacity (`max_queue_size`).
    capacity: usize,
    /// The byte budget of the spans too large for a slot
    /// (`max_queue_size x 512` bytes; see [`LargeBudget`]).
    large: Arc<LargeBudget>,
    /// The queue's consuming end: the worker's, taken under this lock for
    /// each look at the queue, and `None` once the worker closed the
    /// queue. A thread that exits while the worker is away
    /// (`worker_away_since`) takes it too, if free, to free the lanes of exited
    /// threads (`lanes::adopt_exited`). Lock order: this, then `ledger`.
    consumer: Mutex<Option<Consumer<EncodedSpan>>>,
    /// Since when the worker takes nothing from the queue (nanoseconds
    /// since `epoch`, plus one; 0: it is not away): it is inside an export
    /// or waiting for a free export thread (either lasts as long as the
    /// transport makes it), or holding failed batches for a retry. A
    /// thread that exits once the worker has been away for
    /// [`ADOPT_AFTER`] frees its own lane and every other exited one (see
    /// `consumer`); during a shorter absence (a healthy export) the lanes
    /// wait for the worker, which takes their spans as it takes any.
    worker_away_since: AtomicU64,
    /// Threads that exited since the worker last went away: past
    /// [`ADOPT_EXITS`] of them an exiting thread frees the exited lanes
    /// without waiting for [`ADOPT_AFTER`], so a burst of short-lived
    /// threads during one export does not pile up a lane each.
    pub(super) exits_while_away: AtomicUsize,
    /// The origin of `worker_away_since`.
    epoch: Instant,
}

/// How long the worker must have been away from the queue (see
/// `Shared::worker_away_since`) before exiting threads free exited lanes
/// themselves: longer than a healthy export, so that exited threads'
/// spans are simply taken by the worker, as every span is, and the
/// adopted spans (and their cap) come into play only in a hung export or
/// an outage. Lanes of threads that exit meanwhile wait for at most this
/// long (8 KiB and a header each).
pub(super) const ADOPT_AFTER: Duration = Duration::from_millis(100);

/// How many threads may exit while the worker is away before exiting
/// threads free the exited lanes without waiting for [`ADOPT_AFTER`]:
/// the lanes waiting for the worker hold at most this many chunks and
/// headers (about 550 KiB) however fast threads come and go (2 000
/// threads exiting in the first 100 ms of a hung export kept 17 MiB).
pub(super) const ADOPT_EXITS: usize = 64;

impl Shared {
    /// How long the worker has been away from the queue (see
    /// `worker_away_since`), or `None` if it is not away.
    fn worker_away_for(&self) -> Option<Duration> {
        // Relaxed: a hint; the lanes are adopted under the consumer's lock.
        match self.worker_away_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(since - 1)),
            ),
        }
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
    /// Hash of the whole scope ([`InstrumentationScope::table_hash`]:
    /// name, version, schema URL and attributes) to the ids with that hash.
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
        scope.table_hash()
    }

    /// The id of an equal scope, if registered (equal as
    /// [`InstrumentationScope::same`] says, the encoder's equality too, so
    /// that the ids of both tables correspond).
    fn find(&self, scope: &InstrumentationScope) -> Option<ScopeId> {
        let ids = self.index.get(&Self::key(scope))?;
        ids.iter()
            .copied()
            .find(|&i| self.list[i as usize].same(scope))
            .map(ScopeId)
    }

    fn insert(&mut self, scope: InstrumentationScope) -> ScopeId {
        let id = self.list.len() as u32;
        self.index.entry(Self::key(&scope)).or_default().push(id);
        self.list.push(scope);
        ScopeId(id)
    }
}

/// Blocks SIGPIPE on the calling thread (the worker and the export
/// threads, which call the transport): a write to a pipe or socket whose
/// reader is gone then fails with `EPIPE`, counted as a failed export,
/// even in a host that restored SIGPIPE's default action (which kills the
/// process; Rust programs ignore it from the start). Found by review. The
/// signal a blocked thread would have had stays pending on that thread,
/// never delivered.
pub(super) fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: a signal set built by `sigemptyset`/`sigaddset`, passed to
    // `pthread_sigmask` for the calling thread only.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A flush's report of what changed since `before` (`completed: false`).
fn flush_report(shared: &Shared, before: &ExportStats) -> FlushReport {
    let after = stats(shared);
    FlushReport {
        completed: false,
        exported: after.exported.saturating_sub(before.exported),
        dropped: after.dropped.minus(&before.dropped),
        pending: after.queued + after.in_flight,
    }
}

/// True if a shutdown has ended: the worker finished, or the shutdown gave
/// up at its deadline (what was pending is then counted as timed out).
/// Called with the control lock held (`c`); takes the ledger's after it,
/// the lock order.
fn shutdown_ended(shared: &Shared, c: &Control) -> bool {
    c.finished || lock(&shared.ledger).abandoned
}

/// Waits, until `deadline`, for a shutdown that has begun to end (see
/// [`shutdown_ended`]); true if it ended.
fn wait_for_shutdown(shared: &Shared, deadline: Option<Instant>) -> bool {
    wait_control(shared, deadline, |c| shutdown_ended(shared, c))
}

/// A span export pipeline. Cheap to clone; every clone is the same
/// pipeline. Dropping the last clone shuts it down (waiting at most the
/// builder's `drop_timeout`). Tracers and their live spans count as
/// clones: the pipeline shuts itself down when the last of all of them
/// goes, so a span leaked with `std::mem::forget` (never ended, never
/// dropped) keeps it running. Call [`shutdown`](Self::shutdown) to end
/// it whatever is still alive; a span ended after that is counted
/// `after_shutdown`.
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
///
/// # A collector outage
///
/// An export that fails with a retryable error
/// ([`ExportResult::Retryable`](crate::ExportResult::Retryable): no
/// connection, a timeout, HTTP 429, 502, 503 or 504, as the OTLP
/// specification lists them) loses nothing: the worker keeps the batch and
/// tries it again, oldest first, after an exponential backoff (100 ms
/// doubling to 5 s, +-50 % jitter) or after the collector's `Retry-After`
/// (up to 30 s; never sooner than the backoff), one attempt per try
/// ([`Transport::export_once`](crate::Transport::export_once): the HTTP
/// transport's own retries, made within a first export for short blips,
/// are not stacked on this backoff), for at most
/// [`retry_max_elapsed`](PipelineBuilder::retry_max_elapsed) from its first
/// failure (300 s by default, as the OpenTelemetry Collector), after which
/// it counts as `export_failed` and the worker moves on. While a batch is
/// kept the worker takes nothing more from
/// the queue: new spans wait in the lanes, inside the `max_queue_size`
/// bound, so the kept batches are never more than the batches that were in
/// flight when the outage began. When the collector answers again, the kept
/// batches go first and then the queue drains. A queue sized to the outage
/// (spans per second x seconds down) therefore delivers every span,
/// exactly once.
///
/// When the queue fills before the collector is back, the shedding policy
/// decides which spans go, and each is counted:
///
/// * [`Shedding::DropNewest`], [`Shedding::Block`] (after its timeout),
///   [`Shedding::Priority`]: the new spans are dropped (`queue_full`,
///   `low_priority`); the kept batches and the queued spans, older, stay.
/// * [`Shedding::DropOldest`]: the oldest go first. The lanes evict their
///   oldest spans (`evicted`), and the worker, seeing them evict, sheds
///   its oldest kept batch (`retry_shed`) and takes as many of the lanes'
///   oldest spans in its place (kept, tried at the next retry).
///
/// Non-retryable failures (HTTP 400, 401, 403, 404, 413, a redirect, a
/// transport that panics) are counted as `export_failed` at once. A
/// [`force_flush`](Self::force_flush) during an outage tries the kept
/// batches once (not before a `Retry-After` ends); if the collector is
/// still down it returns `completed: false` and drops nothing. At
/// [`shutdown`](Self::shutdown) each kept batch is tried once more within
/// the deadline (after a `Retry-After` only if it ends before it), and a
/// retryable failure is then final: a batch whose last try fails counts as
/// `export_failed`, one the deadline leaves no time to try (or whose
/// `Retry-After` ends after the deadline) as `timed_out_at_shutdown`.
/// While a batch is kept, no kept batch is sent before the collector's
/// `Retry-After` ends, not even when an older one is given up at its
/// retry budget.
/// [`ExportStats::retrying`](crate::ExportStats::retrying) shows the spans
/// kept; they are part of `in_flight`, so the accounting balances exactly
/// throughout.
///
/// # Order, and two limits
///
/// Spans recorded on one thread are delivered in the order they were
/// recorded, with one export thread (`max_concurrent_exports(1)`, the
/// default), including across an outage. Two exceptions:
///
/// * A span ended while its thread exits, after the thread's lane is gone
///   (by a `thread_local!` destructor that runs after the pipeline's), goes
///   through a lane shared by all such records and may be delivered before
///   that thread's earlier spans.
/// * With more than one export thread, batches are sent side by side and
///   may arrive in any order.
///
/// Each thread that recorded into a pipeline keeps its lane (for a
/// pooled queue a reference to the pool; under `DropOldest`, the thread's
/// ring) until it records into a pipeline it has no lane for or exits:
/// a pipeline shut down and dropped while long-lived idle threads hold
/// lanes keeps that memory until then.
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

impl Pipeline {
    fn start(
        config: Config,
        capacity: usize,
        resource: Resource,
        transport: UserTransport,
        drop_timeout: Duration,
    ) -> Result<Pipeline, ConfigError> {
        let transport = Arc::new(transport);
        // Drop-oldest evicts from the recording thread's own ring, so it
        // keeps per-thread lanes; every other policy shares one pool of
        // `max_queue_size` slots among all recording threads.
        let per_thread = config.shedding == Shedding::DropOldest;
        let (producer, consumer) = queue::<EncodedSpan>(capacity, per_thread).map_err(|e| {
            ConfigError::InvalidSetting {
                setting: "max_queue_size",
                reason: e.to_string(),
            }
        })?;
        let encoder = Encoder::new(resource);
        // Made here, on the building thread, like everything else the worker
        // starts with: an allocation that fails aborts, and it should do so
        // in `build`, not later on the worker thread.
        let batch = Batch::with_capacity(config.max_export_batch_size.min(1024));
        let scopes = ScopeTable::new(encoder.scope(ScopeId::DEFAULT).clone());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Shared>>(1);
        let worker = thread::Builder::new()
            .name("otlp-exporter".into())
            .spawn(move || {
                block_sigpipe();
                if let Ok(shared) = rx.recv() {
                    Worker::run_guarded(shared, encoder, batch);
                }
            })
            .map_err(|e| ConfigError::InvalidSetting {
                setting: "worker",
                reason: format!("cannot start the exporter's worker thread: {e}"),
            })?;
        let wake_at = config.max_export_batch_size.min(capacity / 2).max(1);
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
            waited_out: Arc::new(ThreadCounters::default()),
            waited_out_lock: Mutex::new(()),
            has_adopted: AtomicBool::new(false),
            adopted_len: AtomicUsize::new(0),
            capacity,
            large: LargeBudget::new(capacity.saturating_mul(std::mem::size_of::<EncodedSpan>())),
            worker_napping: AtomicBool::new(false),
            wake_at,
            consumer: Mutex::new(Some(consumer)),
            worker_away_since: AtomicU64::new(0),
            exits_while_away: AtomicUsize::new(0),
            epoch: Instant::now(),
        });
        lock(&shared.threads).live.push(shared.laneless.clone());
        lock(&shared.threads).live.push(shared.waited_out.clone());
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
    /// Finding or adding a scope costs O(1) (a hash index of the whole
    /// scope, attributes included). Attribute values are compared with
    /// floats by their bits: a scope with a NaN attribute is found again,
    /// and `0.0` and `-0.0` make two scopes. A pipeline keeps
    /// at most [`MAX_SCOPES`] scopes; past that, a new scope gets
    /// [`ScopeId::DEFAULT`] (its spans are exported under the pipeline's
    /// default scope). The scope's attribute keys are made unique first
    /// (each once, at its first place, with its last value), so scopes that
    /// differ only in a repeated key's earlier values are one scope.
    pub fn scope(&self, mut scope: InstrumentationScope) -> ScopeId {
        // Before the look-up: the worker's encoder, which makes keys unique
        // too, must get the same list of distinct scopes (ids correspond).
        scope.attributes = crate::model::last_value_wins(std::mem::take(&mut scope.attributes));
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
    /// Takes no lock, and in steady state a span that fits its slot costs
    /// no system call and no locked instruction; never blocks unless the
    /// policy is [`Shedding::Block`]. The exceptions: the first call on
    /// each thread sets up that thread's lane; a chunk of 16 slots claimed
    /// from the shared pool costs one compare-and-swap; a call that claims
    /// a chunk leaving a batch's worth in the pool, or finds the queue
    /// full, while the worker naps wakes it (one swap and one futex wake,
    /// at most one per nap, none while the worker is awake); a span larger
    /// than a slot is boxed and charged to a byte budget (see the crate
    /// docs).
    pub fn record(&self, span: SpanData) -> Recorded {
        if self.shared().config.disabled {
            return self.record_disabled();
        }
        self.record_span(span, true)
    }

    /// Whether the pipeline is a no-op, `OTEL_SDK_DISABLED=true` (see
    /// [`PipelineBuilder::build`]): its spans are never recording, and
    /// spans recorded directly are dropped as not sampled.
    pub fn is_disabled(&self) -> bool {
        self.shared().config.disabled
    }

    /// A record in a disabled pipeline: counted as not sampled (the
    /// accounting still balances), with nothing encoded.
    #[cold]
    #[inline(never)]
    fn record_disabled(&self) -> Recorded {
        let mut nothing = SpanData::with_context("", crate::SpanContext::INVALID);
        self.record_span_in_place(&mut nothing, false)
    }

    /// [`record`](Self::record) of a span the caller keeps: the span limits
    /// are applied to it in place, and it is encoded where it lies, never
    /// moved or dropped, so that the caller can clear and reuse its storage
    /// (a `SpanData` is a few hundred bytes, and its vectors keep their
    /// capacity). What a bridge that builds spans in a buffer of its own
    /// (a `tracing` layer, an SDK span processor) wants.
    ///
    /// ```
    /// use otlp_exporter::{InMemory, KeyValue, Pipeline, Recorded, SpanData};
    /// use std::time::Duration;
    ///
    /// let memory = InMemory::new();
    /// let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
    /// let mut span = SpanData::new("first");
    /// for i in 0..3 {
    ///     span.attributes.push(KeyValue::new("i", i));
    ///     assert_eq!(pipeline.record_in_place(&mut span), Recorded::Queued);
    ///     span.attributes.clear(); // the same storage, for the next span
    ///     span.name = "next".into();
    /// }
    /// pipeline.shutdown(Duration::from_secs(5));
    /// assert_eq!(memory.span_count(), 3);
    /// ```
    pub fn record_in_place(&self, span: &mut SpanData) -> Recorded {
        if self.shared().config.disabled {
            return self.record_disabled();
        }
        self.record_span_in_place(span, true)
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
    ///
    /// During a collector outage it tries the batches kept for a retry
    /// once (see [A collector outage](Self#a-collector-outage)): one
    /// attempt each, ending by the flush's deadline, after a retry of the
    /// worker's own that is under way (one attempt, within the export
    /// timeout) has ended. If the collector is still down it returns
    /// `completed: false` as soon as that attempt fails, without waiting
    /// for the rest of the timeout, and drops nothing.
    ///
    /// During a [`shutdown`](Self::shutdown) (one that began before the
    /// flush, or overtakes it), the flush ends with the shutdown: it waits,
    /// within its own timeout, for the shutdown to finish or give up at its
    /// deadline, and is then `completed` (everything is exported or
    /// counted; see [`FlushReport::completed`]); if its timeout passes
    /// first, it is not. After a shutdown it returns at once.
    pub fn force_flush(&self, timeout: Duration) -> FlushReport {
        let shared = self.shared();
        let before = stats(shared);
        let deadline = Instant::now().checked_add(timeout);
        let running = shared.state.load(Ordering::SeqCst) == RUNNING;
        let completed = if on_pipeline_thread(shared) {
            if !running {
                // A shutdown is under way, which this thread cannot wait
                // for: complete if nothing is pending any more (from the
                // transport's own `shutdown`, say), not otherwise (from an
                // export the shutdown's drain made).
                let report = flush_report(shared, &before);
                return FlushReport {
                    completed: report.pending == 0,
                    ..report
                };
            }
            log_quietly(|| {
                tracing::warn!(
                    "otlp-exporter: force_flush called from inside the pipeline's transport; \
                 it cannot wait for the worker it runs on"
                )
            });
            false
        } else if !running {
            // A shutdown overtook the flush: it ends with the shutdown,
            // within its own timeout (found by review: it returned
            // `completed` at once, with the spans still pending). Once the
            // shutdown is over, or has given up at its deadline, every span
            // queued when the flush began is exported or dropped.
            wait_for_shutdown(shared, deadline)
        } else {
            {
                // The worker's try of the kept batches ends by the latest
                // deadline of the flushes waiting for it.
                let mut control = lock(&shared.control);
                match deadline {
                    Some(d) => control.flush_cap = Some(control.flush_cap.map_or(d, |c| c.max(d))),
                    None => control.flush_uncapped = true,
                }
            }
            let generation = shared.flush_requested.fetch_add(1, Ordering::AcqRel) + 1;
            shared.worker.unpark();
            // A flush that ended with batches kept for a retry (the
            // collector is down) did not complete; nothing was dropped.
            let ended = wait_control(shared, deadline, |c| {
                c.flushed >= generation || shutdown_ended(shared, c)
            });
            let control = lock(&shared.control);
            if control.flushed >= generation {
                control.flush_incomplete < generation
            } else {
                // A shutdown overtook the flush and ended (see above), or
                // the deadline passed first.
                ended
            }
        };
        FlushReport {
            completed,
            ..flush_report(shared, &before)
        }
    }

    /// Stops accepting spans, exports what is queued, and stops the worker,
    /// waiting at most `timeout`. Spans still pending at the deadline are
    /// counted as timed out. Later calls return at once with the final
    /// accounting.
    ///
    /// Batches kept for a retry after a collector outage are tried once
    /// more within the deadline (see
    /// [A collector outage](Self#a-collector-outage)); during shutdown a
    /// retryable failure is final, counted as `export_failed`. A kept
    /// batch the deadline leaves no time to try (it passes first, or the
    /// collector's `Retry-After` ends after it) is counted as
    /// `timed_out_at_shutdown`, and the shutdown is not `completed`.
    ///
    /// A transport call that hangs past the deadline keeps the pipeline's
    /// worker thread until it returns (threads cannot be cancelled); its
    /// results are then ignored, and the thread exits.
    ///
    /// Safe to call more than once, and from several threads at once: each
    /// call waits for the same shutdown, whose deadline is the first call's
    /// (a later call with a longer timeout does not extend it), and each
    /// says `completed` only if nothing timed out and the transport's own
    /// [`shutdown`](crate::Transport::shutdown) succeeded. Called from inside the pipeline's
    /// own transport (or when the last handle is dropped there), it starts
    /// the shutdown and returns at once with `completed: false`; the worker
    /// finishes it when the transport returns.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        shutdown(self.shared(), timeout)
    }

    /// The last export failure (a transport's `Failed` reason), transport
    /// panic ("transport panicked: ..."), or failed
    /// [`Transport::shutdown`](crate::Transport::shutdown) ("transport
    /// shutdown failed: ..."), if any.
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
        let sampler = self.shared().config.sampler.clone();
        crate::Tracer::with_parts(self.clone(), scope, sampler)
    }

    /// The sampler this pipeline's tracers use (see
    /// [`PipelineBuilder::sampler`]).
    ///
    /// ```
    /// use otlp_exporter::{InMemory, Pipeline, Sampler};
    /// let pipeline = Pipeline::builder()
    ///     .transport(InMemory::new())
    ///     .sampler(Sampler::AlwaysOff)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pipeline.sampler(), &Sampler::AlwaysOff);
    /// ```
    pub fn sampler(&self) -> &crate::Sampler {
        &self.shared().config.sampler
    }
}

impl Shared {
    /// Wakes the worker if it is napping (off the fast path: only when a
    /// lane is full, or a chunk claim left a batch's worth in the pool).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyValue;

    /// Scopes that differ only in an attribute (one tracer per tenant) hash
    /// apart: each bucket of the index holds one id, so finding one is not
    /// a walk through all of them under the scopes lock (the hash was of
    /// name, version and schema URL only: one bucket of 2000; found by
    /// review). A NaN attribute's scope is found again.
    #[test]
    fn scopes_differing_only_in_attributes_hash_apart() {
        let mut table = ScopeTable::new(InstrumentationScope::new("default", "1"));
        let tenant = |i: i64| {
            let mut s = InstrumentationScope::new("db", "1");
            s.attributes = vec![KeyValue::new("tenant", i), KeyValue::new("r", f64::NAN)];
            s
        };
        for i in 0..2000 {
            assert!(table.find(&tenant(i)).is_none());
            table.insert(tenant(i));
        }
        let largest = table.index.values().map(Vec::len).max().unwrap();
        assert!(largest <= 2, "a bucket of {largest} ids");
        for i in 0..2000 {
            assert_eq!(table.find(&tenant(i)), Some(ScopeId(i as u32 + 1)));
        }
    }
}
