//! The pipeline's worker thread ([`Worker`]): taking spans from the queue
//! and from hand-overs, batching, encoding and exporting them ([`Job`],
//! [`send`], the optional pool of export threads), carrying out flush and
//! shutdown requests ([`Control`], [`shutdown`]), and the guard around the
//! user's transport ([`UserTransport`]).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::{self};
use std::time::{Duration, Instant};

use crate::encode::{Encoded, EncodedRequest, Encoder, Encoding, SpanRef};
use crate::model::InstrumentationScope;
use crate::stats::{Dropped, ShutdownReport};
use crate::transport::{ExportResult, Transport};

use super::*;

#[derive(Default)]
pub(super) struct Control {
    pub(super) flushed: u64,
    /// The last flush generation that ended with spans still kept for a
    /// retry (the collector was down): that flush did not complete.
    pub(super) flush_incomplete: u64,
    /// The latest deadline of the flushes requested since the worker last
    /// began one (`None`: none, or `flush_uncapped`): the cap of the
    /// flush's try of the kept batches.
    pub(super) flush_cap: Option<Instant>,
    /// A flush with no deadline (a timeout too long for `Instant`) was
    /// requested since the worker last began one.
    pub(super) flush_uncapped: bool,
    pub(super) shutdown_deadline: Option<Instant>,
    pub(super) finished: bool,
}

/// The user's transport, behind a wrapper whose drop catches a panic of
/// the transport's own `Drop` (it runs on whichever thread lets go last).
pub(super) struct UserTransport(pub(super) Option<Box<dyn Transport>>);

impl UserTransport {
    pub(super) fn get(&self) -> &dyn Transport {
        match &self.0 {
            Some(t) => &**t,
            None => unreachable!("the transport is taken only by drop"),
        }
    }

    /// `Transport::attempts`, with a panic counted as no statistics.
    pub(super) fn attempts(&self) -> Option<crate::AttemptStats> {
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

/// Waits on the control condition until `done` or the deadline; true if done.
pub(super) fn wait_control(
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

pub(super) fn shutdown(shared: &Shared, timeout: Duration) -> ShutdownReport {
    let before = stats(shared);
    let timeout = timeout.min(MAX_DURATION);
    let deadline = Instant::now().checked_add(timeout);
    let deadline = {
        let mut control = lock(&shared.control);
        let finished = control.finished;
        let abandoned = {
            let ledger = lock(&shared.ledger);
            ledger.abandoned || ledger.transport_shutdown_failed
        };
        if control.shutdown_deadline.is_some() && (finished || abandoned) {
            // Already shut down: the final accounting, at once.
            drop(control);
            // Looked at now, not `before`: the worker (or another caller)
            // may have abandoned the shutdown since, counting what was
            // pending as timed out (found by a flaky test: a report of
            // spans still `queued`, read just before the worker's abandon,
            // from a shutdown that was over).
            return ShutdownReport {
                completed: finished && !abandoned,
                exported: 0,
                dropped: Dropped::default(),
                stats: stats(shared),
            };
        }
        if control.shutdown_deadline.is_none() {
            control.shutdown_deadline =
                Some(deadline.unwrap_or_else(|| Instant::now() + MAX_DURATION));
        }
        // Every caller waits for the first call's deadline, its own timeout
        // notwithstanding (found by review: each waited for its own, and
        // one that gave up marked the shutdown abandoned for all, so a
        // `shutdown(0)` made a concurrent `shutdown(10 s)` count a healthy
        // drain as timed out, and a later, longer call waited past the
        // first deadline).
        control.shutdown_deadline
    };
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
    let finished = wait_control(shared, deadline, |c| c.finished);
    // Finished with spans left at the deadline (an earlier caller's, or the
    // worker's own look at it) is not a completed drain.
    let completed = finished && {
        let ledger = lock(&shared.ledger);
        !ledger.abandoned && !ledger.transport_shutdown_failed
    };
    if !finished {
        // The shutdown's deadline passed. Marked under the control lock
        // (lock order: control, then ledger) and announced, so that a flush
        // waiting for this shutdown (`Pipeline::force_flush`) sees it.
        let first = {
            let _control = lock(&shared.control);
            abandon(shared, &mut lock(&shared.ledger))
        };
        shared.control_cv.notify_all();
        // Not under the lock: a subscriber may call back into the pipeline.
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

/// The spans the worker has taken for its next request: their encoded
/// bytes back to back, and where each ends (with its scope). Taking a span
/// copies its bytes, not its 512-byte queue slot, and frees its box if it
/// had one.
pub(super) struct Batch {
    bytes: Vec<u8>,
    ends: Vec<(ScopeId, usize)>,
    /// Whether the spans are of more than one scope (else the batch can be
    /// written as one run: see [`Batch::assemble`]).
    mixed: bool,
}

/// A batch's byte buffer keeps at most this much capacity between batches
/// (a batch of very large spans gives the rest back).
const BATCH_BYTES_KEPT: usize = 1 << 20;

/// How long the shutdown's close waits for records that were under way
/// when the queue closed (`Worker::finish`): a record resolves in
/// microseconds once the queue is closed (a `Block` record within one of
/// its 10 ms waiting slices), so only a thread descheduled mid-record
/// takes longer.
const SETTLE: Duration = Duration::from_millis(500);

impl Batch {
    /// Room for `spans` spans (a batch grows to the batch size if batches
    /// get that large, up to `MAX_QUEUE_SIZE` spans: not worth reserving up
    /// front).
    pub(super) fn with_capacity(spans: usize) -> Self {
        Batch {
            bytes: Vec::with_capacity(spans * 128),
            ends: Vec::with_capacity(spans),
            mixed: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    #[inline]
    fn push(&mut self, span: &EncodedSpan) {
        let r = span.as_ref();
        if let Some(&(first, _)) = self.ends.first() {
            self.mixed |= first != r.scope;
        }
        self.bytes.extend_from_slice(r.bytes);
        self.ends.push((r.scope, self.bytes.len()));
    }

    /// The batch's requests: a batch of one scope that fits one request is
    /// written as one run of bytes (`Encoder::assemble_run`: no per-span
    /// work); any other goes span by span (`Encoder::assemble`). Both give
    /// the same bytes.
    fn assemble(&self, encoder: &Encoder, encoding: Encoding, out: &mut Encoded) {
        if let Some(&(scope, _)) = self.ends.first()
            && !self.mixed
            && encoder.assemble_run(scope, &self.bytes, self.ends.len(), encoding, out)
        {
            return;
        }
        let refs = self.refs();
        encoder.assemble(&refs, encoding, out);
    }

    fn refs(&self) -> Vec<SpanRef<'_>> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&(scope, end)| {
                let bytes = &self.bytes[start..end];
                start = end;
                SpanRef { scope, bytes }
            })
            .collect()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.mixed = false;
        self.bytes.shrink_to(BATCH_BYTES_KEPT);
    }
}

/// One encoded batch on its way to the transport.
pub(super) struct Job {
    pub(super) encoded: Encoded,
    /// Spans taken from the queue for it (in flight until this job is
    /// accounted for), including any the encoder found too large.
    pub(super) spans: u64,
    /// When each request's export must end, counted from when it starts
    /// (a job may wait for a free export thread first).
    pub(super) deadline: Deadline,
    /// Keep the requests that fail retryably (the pipeline is running);
    /// otherwise (shutdown) such a failure is final.
    pub(super) keep: bool,
}

/// An export's deadline: `export_timeout` from the moment the transport is
/// called (not from when the batch was made: a batch that waited for a
/// free export thread would otherwise start with its time spent, and a
/// slow but healthy collector would see exports given up before they are
/// sent), and never past `cap` (shutdown's deadline).
#[derive(Clone, Copy)]
pub(super) struct Deadline {
    pub(super) timeout: Duration,
    pub(super) cap: Option<Instant>,
}

impl Deadline {
    /// The deadline of an export that starts now.
    fn starting_now(self) -> Instant {
        let now = Instant::now();
        // `export_timeout` is at most `MAX_DURATION`, so this fits; the
        // fallback is only a belt.
        let d = now.checked_add(self.timeout).unwrap_or(now + MAX_DURATION);
        self.cap.map_or(d, |cap| cap.min(d))
    }
}

/// Requests whose export failed retryably (collector down, 429, 502, 503,
/// 504), kept by the worker for a later try. Their spans stay counted in
/// `Ledger::in_flight` and `Ledger::retrying` until they are delivered,
/// fail for good, or are shed.
pub(super) struct Kept {
    pub(super) requests: Vec<EncodedRequest>,
    pub(super) spans: u64,
    /// The receiver's `Retry-After`, if it sent one.
    pub(super) retry_after: Option<Duration>,
    /// When the batch first failed: past `retry_max_elapsed` it is not
    /// tried again but counted as failed.
    pub(super) first_failed: Instant,
}

/// Exports a job's requests and accounts for its spans (unless shutdown has
/// given up on them, in which case they are already counted as timed out).
/// Returns the requests that failed retryably if the job keeps them.
pub(super) fn send(shared: &Shared, transport: &dyn Transport, job: Job) -> Option<Kept> {
    let Job {
        encoded,
        spans,
        deadline,
        keep,
    } = job;
    let too_large = encoded.too_large as u64;
    export_requests(
        shared,
        transport,
        encoded.requests,
        (spans, 0, too_large),
        deadline,
        keep,
        false,
    )
}

/// Exports `requests` and accounts for them: `spans` were in flight, of
/// which `was_kept` were counted as retrying (a kept batch tried again) and
/// `too_large` were left out by the encoder. Requests that fail retryably
/// come back as a [`Kept`] if `keep`; otherwise they count as failed.
/// `once`: a retry of a kept batch, one attempt each
/// ([`Transport::export_once`]: the worker's backoff paces the retries).
///
/// Every call into the transport runs under `catch_unwind`: a panic counts
/// as a failed export of that request's spans (with its message as the
/// pipeline's last error), and the calling thread carries on.
pub(super) fn export_requests(
    shared: &Shared,
    transport: &dyn Transport,
    requests: Vec<EncodedRequest>,
    (spans, was_kept, too_large): (u64, u64, u64),
    deadline: Deadline,
    keep: bool,
    once: bool,
) -> Option<Kept> {
    let (mut exported, mut rejected, mut failed, mut calls, mut failed_calls) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut panics = 0u64;
    let mut last_error = None;
    let mut kept = Kept {
        requests: Vec::new(),
        spans: 0,
        retry_after: None,
        first_failed: Instant::now(),
    };
    for request in requests {
        let n = request.spans as u64;
        if !kept.requests.is_empty() {
            // An earlier request of this batch is kept for a retry: the
            // rest wait with it, unsent, so that they are delivered after
            // it (found by review: they were sent at once, out of order).
            kept.spans += n;
            kept.requests.push(request);
            continue;
        }
        if keep && deadline.cap.is_some_and(|cap| Instant::now() >= cap) {
            // A flush's try whose deadline has passed (an earlier request
            // used it up): this one is kept untried, not handed to the
            // transport with a deadline already past, which would fail it
            // for good (found by review: a flush behind a slow retry made
            // a kept batch `export_failed`).
            kept.spans += n;
            kept.requests.push(request);
            continue;
        }
        calls += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if once {
                transport.export_once(&request, deadline.starting_now())
            } else {
                transport.export(&request, deadline.starting_now())
            }
        }));
        match outcome {
            Ok(ExportResult::Success) => exported += n,
            Ok(ExportResult::PartialSuccess {
                rejected: r,
                message,
            }) => {
                let r = r.min(n);
                rejected += r;
                exported += n - r;
                if r > 0 {
                    log_quietly(
                        || tracing::debug!(rejected = r, %message, "otlp-exporter: receiver rejected spans"),
                    );
                }
                drop_quietly(message);
            }
            Ok(ExportResult::Retryable {
                reason,
                retry_after,
            }) if keep => {
                log_quietly(
                    || tracing::debug!(%reason, spans = n, "otlp-exporter: export failed; kept for a retry"),
                );
                // The budget (`retry_max_elapsed`) counts from the
                // failure, not from the start of the export that failed,
                // which may have taken up to its timeout (found by
                // review: an export slower than the budget was never
                // retried).
                kept.first_failed = Instant::now();
                kept.spans += n;
                kept.retry_after = retry_after.max(kept.retry_after);
                kept.requests.push(request);
                last_error = Some(reason);
            }
            Ok(ExportResult::Failed(reason) | ExportResult::Retryable { reason, .. }) => {
                failed += n;
                failed_calls += 1;
                log_quietly(|| tracing::debug!(%reason, spans = n, "otlp-exporter: export failed"));
                last_error = Some(reason);
            }
            Err(payload) => {
                let message = panic_message(payload);
                failed += n;
                failed_calls += 1;
                panics += 1;
                log_quietly(
                    || tracing::warn!(%message, spans = n, "otlp-exporter: the transport panicked; its spans count as failed"),
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
        return None;
    }
    ledger.in_flight = ledger.in_flight.saturating_sub(spans - kept.spans);
    ledger.retrying = ledger.retrying.saturating_sub(was_kept);
    Ledger::add(&mut ledger.retrying, kept.spans);
    Ledger::add(&mut ledger.exported, exported);
    Ledger::add(&mut ledger.rejected, rejected);
    Ledger::add(&mut ledger.export_failed, failed);
    Ledger::add(&mut ledger.too_large, too_large);
    Ledger::add(&mut ledger.export_calls, calls);
    Ledger::add(&mut ledger.failed_calls, failed_calls);
    (!kept.requests.is_empty()).then_some(kept)
}

/// Resolves a kept batch without trying it: its spans leave `in_flight`
/// and `retrying` for `export_failed` (`shed: false`) or `retry_shed`.
pub(super) fn drop_kept(shared: &Shared, kept: Kept, shed: bool) {
    let mut ledger = lock(&shared.ledger);
    if ledger.abandoned {
        return;
    }
    ledger.in_flight = ledger.in_flight.saturating_sub(kept.spans);
    ledger.retrying = ledger.retrying.saturating_sub(kept.spans);
    if shed {
        Ledger::add(&mut ledger.retry_shed, kept.spans);
    } else {
        Ledger::add(&mut ledger.export_failed, kept.spans);
        Ledger::add(&mut ledger.failed_calls, kept.requests.len() as u64);
    }
}

/// The first wait before a kept batch is tried again (then doubled at each
/// failure, up to [`RETRY_MAX_BACKOFF`], with +-50 % jitter).
pub(super) const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two tries of a kept batch (a `Retry-After`
/// may ask for more, up to [`RETRY_MAX_AFTER`]).
pub(super) const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured.
pub(super) const RETRY_MAX_AFTER: Duration = Duration::from_secs(30);
/// How often the worker looks at the lanes (for evictions, under
/// drop-oldest) while it waits to try a kept batch again.
const RETRY_TICK: Duration = Duration::from_millis(5);

/// `d` scaled by a random factor in [0.5, 1.5).
fn jitter(d: Duration) -> Duration {
    let r = (crate::id::random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.5 + r)
}

/// How long the worker waits for spans to gather when a look at the queue
/// found only a few.
pub(super) const GATHER: Duration = Duration::from_micros(100);

/// The pipeline's thread: takes spans from the queue, batches, encodes and
/// exports them, and carries out flush and shutdown requests.
pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) encoder: Encoder,
    pub(super) encoding: Encoding,
    pub(super) transport: Arc<UserTransport>,
    /// With `max_concurrent_exports > 1`: hands encoded batches to that
    /// many export threads. `None`: the worker exports itself.
    pub(super) pool: Option<std::sync::mpsc::SyncSender<Job>>,
    pub(super) batch: Batch,
    /// Scopes of the pipeline's table already added to the encoder.
    pub(super) scopes_added: usize,
    pub(super) scopes_seen: u64,
    pub(super) last_export: Instant,
    pub(super) flush_seen: u64,
    pub(super) last_warn: Option<Instant>,
    pub(super) dropped_at_warn: u64,
    /// Batches whose export failed retryably, oldest first, waiting to be
    /// tried again (see "A collector outage" on [`Pipeline`]). While any is
    /// kept the worker takes nothing more from the lanes: the spans wait
    /// there, inside the queue's bound, and the shedding policy applies to
    /// them as the lanes fill.
    pub(super) kept: VecDeque<Kept>,
    /// Kept batches coming back from the export threads.
    pub(super) kept_rx: std::sync::mpsc::Receiver<Kept>,
    /// When the first kept batch is tried again: `retry_due`, or sooner if
    /// the oldest kept batch's retry budget ends first (it is then given
    /// up).
    pub(super) next_retry: Instant,
    /// When the kept batches are due for their next try: the backoff after
    /// the last retryable failure, or the end of the receiver's
    /// `Retry-After` if later.
    pub(super) retry_due: Instant,
    /// The wait after the next retryable failure (before jitter).
    pub(super) backoff: Duration,
    /// When the receiver's `Retry-After` ends (the failure's time plus the
    /// wait it asked for, capped at [`RETRY_MAX_AFTER`]; `None` for no
    /// `Retry-After`, or one of 0): no kept batch is tried before it, a
    /// flush's try included, and shutdown tries them only if it ends
    /// before its deadline.
    pub(super) retry_after_until: Option<Instant>,
    /// The lanes' eviction count when last looked at (drop-oldest).
    pub(super) evicted_seen: u64,
}

impl Worker {
    /// Runs the worker; if it panics anyway (a bug: user code is already
    /// caught where it is called), the pipeline is closed and marked
    /// finished and abandoned, so that nobody waits for it and the
    /// accounting still balances (what was pending counts as timed out).
    pub(super) fn run_guarded(shared: Arc<Shared>, encoder: Encoder, batch: Batch) {
        PIPELINE_THREAD.with(|id| id.set(shared.id));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            Worker::new(shared.clone(), encoder, batch).run();
        }));
        if let Err(payload) = outcome {
            let message = panic_message(payload);
            log_quietly(
                || tracing::error!(%message, "otlp-exporter: the worker thread panicked; the pipeline is closed"),
            );
            shared.state.store(CLOSED, Ordering::SeqCst);
            {
                let mut ledger = lock(&shared.ledger);
                abandon(&shared, &mut ledger);
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

    pub(super) fn new(shared: Arc<Shared>, encoder: Encoder, batch: Batch) -> Self {
        let encoding = shared.config.encoding;
        let transport = shared.transport.clone();
        let n = shared.config.max_concurrent_exports;
        let (kept_tx, kept_rx) = std::sync::mpsc::channel::<Kept>();
        let pool = (n > 1)
            .then(|| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(n);
                let rx = Arc::new(Mutex::new(rx));
                let mut started = 0;
                for i in 0..n {
                    let (rx, shared, transport) = (rx.clone(), shared.clone(), transport.clone());
                    let kept_tx = kept_tx.clone();
                    let spawned = thread::Builder::new()
                        .name(format!("otlp-export-{i}"))
                        .spawn(move || {
                            block_sigpipe();
                            PIPELINE_THREAD.with(|id| id.set(shared.id));
                            loop {
                                // One thread waits on the channel at a time.
                                let job = lock(&rx).recv();
                                match job {
                                    // `send` catches the transport's panics.
                                    Ok(job) => {
                                        if let Some(kept) = send(&shared, transport.get(), job)
                                            && let Err(back) = kept_tx.send(kept)
                                        {
                                            // The worker is gone: a final failure.
                                            drop_kept(&shared, back.0, false);
                                        }
                                    }
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
            kept: VecDeque::new(),
            kept_rx,
            next_retry: Instant::now(),
            retry_due: Instant::now(),
            backoff: RETRY_INITIAL_BACKOFF,
            retry_after_until: None,
            evicted_seen: 0,
        }
    }

    pub(super) fn run(mut self) {
        let mut idle = 0u32;
        loop {
            if self.shared.state.load(Ordering::SeqCst) != RUNNING {
                self.finish();
                return;
            }
            let flush = self.shared.flush_requested.load(Ordering::Acquire);
            if flush != self.flush_seen {
                let complete = self.flush();
                self.flush_seen = flush;
                let mut control = lock(&self.shared.control);
                control.flushed = flush;
                if !complete {
                    control.flush_incomplete = flush;
                }
                drop(control);
                self.shared.control_cv.notify_all();
                continue;
            }
            self.collect_kept();
            if !self.kept.is_empty() {
                // A collector outage: the spans wait in the lanes (but not
                // in the lanes of threads that exited: see `adopt_exited`).
                self.set_away(true);
                adopt_exited(&self.shared, true);
                self.tend_kept();
                idle = 0;
                continue;
            }
            self.set_away(false);
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

    /// Waits a little while nothing arrives: parks in steps growing from
    /// 50 us to 1.6 ms (never past the next scheduled export of a batch
    /// that holds spans; with nothing to export the schedule does not
    /// matter, so a zero `scheduled_delay` does not make an idle worker
    /// poll), cut short when a lane's chunk claim leaves a batch's worth in
    /// the queue (or a lane is full). No spinning or yielding first: on a
    /// machine whose cores the recording threads keep busy, a worker that
    /// sleeps and is woken gets a core sooner than one that polls, and a
    /// small queue overflows in the time a polling worker waits for one.
    pub(super) fn idle_wait(&self, idle: u32) {
        let step = Duration::from_micros(50u64 << idle.saturating_sub(1).min(5));
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

    /// Moves spans from the queue (and from exited threads' hand-overs)
    /// into the batch, up to the batch size.
    pub(super) fn take(&mut self) -> usize {
        let room = self.shared.config.max_export_batch_size - self.batch.len();
        let batch = &mut self.batch;
        let mut consumer = lock(&self.shared.consumer);
        let Some(consumer) = consumer.as_mut() else {
            return 0;
        };
        let n = consumer.pop_each_mut(room, |span| batch.push(span));
        // Acquire: pairs with the Release store in `hand_over` (the spans
        // themselves are read under the ledger lock).
        let adopted = self.shared.has_adopted.load(Ordering::Acquire);
        if n == 0 && !adopted {
            return 0;
        }
        // Still under the consumer's lock (lock order: consumer, ledger):
        // the adopted spans taken here are released to the queue with it.
        let mut ledger = lock(&self.shared.ledger);
        Ledger::add(&mut ledger.popped, n as u64);
        let mut m = 0;
        if adopted {
            m = (room - n).min(ledger.adopted.len());
            // Out of the adopted spans: their slots go back to the pool
            // (first: a panic while they move could not leave them held).
            consumer.release(m);
            ledger.adopted.drain(..m).for_each(|s| self.batch.push(&s));
            // Relaxed: under the ledger lock (see `Shared::adopted_len`).
            self.shared.adopted_len.store(
                adopted_unheld(consumer, ledger.adopted.len()),
                Ordering::Relaxed,
            );
            Ledger::add(&mut ledger.adopted_out, m as u64);
            if ledger.adopted.is_empty() {
                self.shared.has_adopted.store(false, Ordering::Relaxed);
            }
        }
        Ledger::add(&mut ledger.in_flight, (n + m) as u64);
        n + m
    }

    /// The deadline of an export: `export_timeout` from its start, and not
    /// past `cap` (shutdown's).
    fn deadline(&self, cap: Option<Instant>) -> Deadline {
        Deadline {
            timeout: self.shared.config.export_timeout,
            cap,
        }
    }

    /// Tells exiting threads whether the worker is away from the queue
    /// (`Shared::worker_away`).
    pub(super) fn set_away(&self, away: bool) {
        // Relaxed: a hint; the lanes themselves are handed over under the
        // consumer's lock.
        let since = &self.shared.worker_away_since;
        let was = since.load(Ordering::Relaxed) != 0;
        if was != away {
            let now = if away {
                let nanos = self.shared.epoch.elapsed().as_nanos();
                u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
            } else {
                0
            };
            since.store(now, Ordering::Relaxed);
            if away {
                // Relaxed: a count for a threshold.
                self.shared.exits_while_away.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Moves up to `limit` deferred spans (recorded from inside the
    /// transport) into the batch, as room allows; returns how many.
    pub(super) fn take_deferred(&mut self, limit: usize) -> usize {
        let room = self.shared.config.max_export_batch_size - self.batch.len();
        let mut ledger = lock(&self.shared.ledger);
        let m = room.min(limit).min(ledger.deferred.len());
        if m > 0 {
            ledger.deferred.drain(..m).for_each(|s| self.batch.push(&s));
            Ledger::add(&mut ledger.in_flight, m as u64);
        }
        m
    }

    /// A flush: exports everything that was queued when it began (the
    /// queue's mark, and what exited threads had handed over, or hand over
    /// from the marked lanes), then waits for the exports in flight. Spans
    /// recorded after the mark may go along but are not waited for, so
    /// producers that keep recording cannot keep it going.
    pub(super) fn flush(&mut self) -> bool {
        // Kept batches are older than anything the flush marks: try them
        // first (once, at once, unless a `Retry-After` runs). If the
        // collector is still down the flush ends here, incomplete, and
        // nothing is dropped.
        let cap = {
            let mut control = lock(&self.shared.control);
            let cap = control.flush_cap.take();
            (!std::mem::take(&mut control.flush_uncapped))
                .then_some(cap)
                .flatten()
        };
        self.collect_kept();
        if !self.kept.is_empty() {
            self.wait_idle(None);
            self.collect_kept();
            // One attempt per request, within the flush's deadline.
            if !self.retry_kept(true, cap) {
                return false;
            }
        }
        let mark: Option<Mark<EncodedSpan>> =
            lock(&self.shared.consumer).as_mut().map(Consumer::mark);
        let mut adopted_target = None;
        // Deferred spans recorded before the flush; those the flush's own
        // exports record wait for a later batch.
        let mut deferred = lock(&self.shared.ledger).deferred.len();
        loop {
            if self.abandoned() {
                return false;
            }
            self.collect_kept();
            if !self.kept.is_empty() {
                // An export of this flush failed retryably: kept, and the
                // flush is incomplete.
                self.wait_idle(None);
                self.collect_kept();
                return false;
            }
            // The deferred spans first: under sustained load `take` fills
            // every batch, and deferred spans taken after it found no room
            // (found by review: with a transport that records, a flush
            // never completed while producers kept recording).
            let mut took = 0;
            if deferred > 0 {
                let m = self.take_deferred(deferred);
                deferred -= m;
                took += m;
            }
            took += self.take();
            if !self.batch.is_empty() {
                self.export(None);
            }
            let passed = match (&mark, &*lock(&self.shared.consumer)) {
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
        self.collect_kept();
        self.kept.is_empty()
    }

    /// Exports until the queue is empty and no export is in flight (or
    /// the deadline passes). Used by shutdown, when no record can add more.
    pub(super) fn drain(&mut self, deadline: Option<Instant>) {
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) || self.abandoned() {
                return;
            }
            self.collect_kept();
            self.try_kept_finally(deadline);
            let took = self.take() + self.take_deferred(usize::MAX);
            if !self.batch.is_empty() {
                self.export(deadline);
            }
            if took == 0 {
                self.wait_idle(deadline);
                self.collect_kept();
                self.try_kept_finally(deadline);
                return;
            }
        }
    }

    pub(super) fn abandoned(&self) -> bool {
        lock(&self.shared.ledger).abandoned
    }

    /// Adds the scopes registered since the last look to the encoder (only
    /// the new ones: each scope is added once).
    pub(super) fn sync_scopes(&mut self) {
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

    pub(super) fn export(&mut self, deadline: Option<Instant>) {
        self.last_export = Instant::now();
        if self.batch.is_empty() {
            return;
        }
        self.sync_scopes();
        let mut encoded = Encoded::default();
        self.batch
            .assemble(&self.encoder, self.encoding, &mut encoded);
        let spans = self.batch.len() as u64;
        self.batch.clear();
        let job = Job {
            encoded,
            spans,
            deadline: self.deadline(deadline),
            // Shutting down: a retryable failure is final.
            // Kept for a retry only while running, and only if a retry is
            // allowed at all (`retry_max_elapsed` zero: "a failed batch is
            // not tried again"; a kept batch used to wait out its backoff
            // or `Retry-After` first, the pipeline taking nothing new).
            keep: self.shared.state.load(Ordering::Relaxed) == RUNNING
                && !self.shared.config.retry_max_elapsed.is_zero(),
        };
        // Away from the queue for as long as the transport takes (or every
        // export thread is busy): threads that exit meanwhile free their
        // own lanes.
        self.set_away(true);
        let kept = match &self.pool {
            // Blocks while every export thread is busy: back pressure, and
            // the spans stay counted as in flight meanwhile.
            Some(pool) => match pool.send(job) {
                Ok(()) => None,
                Err(e) => send(&self.shared, self.transport.get(), e.0),
            },
            None => send(&self.shared, self.transport.get(), job),
        };
        self.set_away(false);
        if let Some(kept) = kept {
            self.keep(kept);
        }
        self.warn_about_drops();
    }

    /// Waits until no export is in flight (with a pool of export threads),
    /// the deadline passes, or shutdown gave up.
    pub(super) fn wait_idle(&self, deadline: Option<Instant>) {
        if self.pool.is_none() {
            return;
        }
        loop {
            // `exports_idle` counts the spans this worker holds in its
            // batch (in flight, but not being exported): a flush that found
            // a batch kept while the batch held spans waited for them for
            // ever (found by review: nothing was exported until shutdown
            // timed out).
            if self.exports_idle() || self.abandoned() {
                return;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Reports new drops through `tracing`, at most every 10 seconds.
    pub(super) fn warn_about_drops(&mut self) {
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
                    retry_shed = s.dropped.retry_shed,
                    rejected = s.dropped.rejected,
                    too_large = s.dropped.too_large,
                    orphaned = s.dropped.orphaned,
                    invalid_ids = s.dropped.invalid_ids,
                    timed_out_at_shutdown = s.dropped.timed_out_at_shutdown,
                    after_shutdown = s.dropped.after_shutdown,
                    "otlp-exporter: spans dropped (see Pipeline::stats)"
                )
            });
            self.dropped_at_warn = dropped;
            self.last_warn = Some(Instant::now());
        }
    }

    /// Keeps a batch that failed retryably; the first one kept starts the
    /// backoff (and the eviction watch, under drop-oldest).
    pub(super) fn keep(&mut self, kept: Kept) {
        let first = self.kept.is_empty();
        let after = kept.retry_after;
        // In line first, then scheduled (the schedule looks at the first
        // batch's retry budget).
        self.kept.push_back(kept);
        if first {
            self.backoff = RETRY_INITIAL_BACKOFF;
            // A `Retry-After` of an earlier outage whose batches are all
            // resolved no longer holds: this failure's answer decides.
            self.retry_after_until = None;
            self.evicted_seen = record_totals(&self.shared).0.evicted;
            self.schedule_retry(after);
        } else if let Some(after) = after {
            self.schedule_retry(Some(after));
        }
    }

    /// Takes in the batches the export threads kept.
    pub(super) fn collect_kept(&mut self) {
        while let Ok(kept) = self.kept_rx.try_recv() {
            self.keep(kept);
        }
    }

    /// Sets the next try after a retryable failure: after the backoff with
    /// jitter, or after `Retry-After` (capped) if the receiver sent a
    /// longer one; the backoff doubles, up to its cap.
    pub(super) fn schedule_retry(&mut self, retry_after: Option<Duration>) {
        let now = Instant::now();
        let after = retry_after.map_or(Duration::ZERO, |after| after.min(RETRY_MAX_AFTER));
        // Never sooner than the backoff: a `Retry-After` of 0, or a date
        // already past (a collector whose clock is behind), would otherwise
        // have the batch tried again at once, for as long as it lasts.
        let wait = jitter(self.backoff).max(after);
        self.backoff = (self.backoff * 2).min(RETRY_MAX_BACKOFF);
        // The collector's own wait ends `after` from now (not when the
        // backoff ends: found by review, a `Retry-After: 0` then held a
        // flush's try back for the whole backoff, and made shutdown fail the
        // kept batches untried when the backoff outlasted its deadline). A
        // zero one asks for no wait at all. One that still runs from an
        // earlier answer and ends later stands.
        if !after.is_zero() {
            let until = now + after;
            self.retry_after_until = Some(self.retry_after_until.map_or(until, |u| u.max(until)));
        }
        self.retry_due = (now + wait).max(self.retry_after_until.unwrap_or(now));
        self.set_next_retry();
    }

    /// `next_retry`: when the kept batches are due (`retry_due`), or when
    /// the oldest kept batch's retry budget ends, if sooner: then it is
    /// given up (`retry_kept`), not held through a `Retry-After` that
    /// outlasts the budget (found by review: a 30 s `Retry-After` held a
    /// batch, and the queue, 30 s past a budget of 0.1 s).
    fn set_next_retry(&mut self) {
        self.next_retry = self.retry_due;
        if let Some(give_up) = self.kept.front().and_then(|k| {
            k.first_failed
                .checked_add(self.shared.config.retry_max_elapsed)
        }) && give_up < self.next_retry
        {
            self.next_retry = give_up.max(Instant::now());
        }
    }

    /// While batches are kept: tries them again when due (and no export
    /// is running), sheds them under drop-oldest when the lanes overflow,
    /// and otherwise naps (cut short by a flush, a shutdown or a full lane).
    pub(super) fn tend_kept(&mut self) {
        self.shed_for_newer_spans();
        let now = Instant::now();
        if now >= self.next_retry && self.exports_idle() {
            self.retry_kept(false, None);
            return;
        }
        // Not `Shared::nap`: a full lane's wake-up is pointless now (the
        // worker takes nothing from the lanes while a batch is kept) and
        // would make it spin while records overflow; flush and shutdown
        // unpark it directly.
        let nap = self.next_retry.saturating_duration_since(now);
        thread::park_timeout(nap.clamp(Duration::from_micros(100), RETRY_TICK));
    }

    /// True if no export is running or waiting for an export thread: every
    /// span in flight is either kept for a retry (`retrying`, on its way
    /// back from an export thread included) or in this worker's batch.
    pub(super) fn exports_idle(&self) -> bool {
        let ledger = lock(&self.shared.ledger);
        ledger.in_flight <= ledger.retrying.saturating_add(self.batch.len() as u64)
    }

    /// Tries the kept batches again, oldest first, on this thread (one
    /// export at a time), until one fails retryably again (it stays first
    /// and the next try is scheduled) or all are resolved (true). A batch
    /// past its retry budget is given up (`export_failed`) without a try.
    /// A `Retry-After` that still runs is waited out, not tried through;
    /// so is the backoff, unless `at_once` (a flush's try). Each request
    /// gets one attempt ([`Transport::export_once`]), ending by `cap` (a
    /// flush's deadline) if that comes before the export timeout. Each kept batch
    /// is judged on its own: one that is given up does not let the next be
    /// sent through the collector's `Retry-After` (found by review: when
    /// the oldest batch's budget ran out, the `Retry-After` was dropped and
    /// the next batch sent at once); that one waits for the `Retry-After`,
    /// or is given up in turn when its own budget ends.
    pub(super) fn retry_kept(&mut self, at_once: bool, cap: Option<Instant>) -> bool {
        while let Some(kept) = self.kept.pop_front() {
            let first_failed = kept.first_failed;
            if first_failed.elapsed() >= self.shared.config.retry_max_elapsed {
                // Tried for as long as allowed: failed for good, and the
                // pipeline moves on (it takes nothing new while a batch is
                // kept).
                let why = format!(
                    "gave up on a batch of {} spans after retrying for {:?}",
                    kept.spans, self.shared.config.retry_max_elapsed
                );
                log_quietly(|| tracing::warn!(%why, "otlp-exporter: retries exhausted"));
                lock(&self.shared.ledger).last_error = Some(why);
                drop_kept(&self.shared, kept, false);
                continue;
            }
            let not_before = if at_once {
                self.retry_after_until
            } else {
                Some(self.retry_due)
            };
            if not_before.is_some_and(|t| Instant::now() < t) {
                // Not yet: first in line again, and the next try (or the
                // giving up of this batch, if its budget ends first)
                // scheduled for it.
                self.kept.push_front(kept);
                self.set_next_retry();
                return false;
            }
            if cap.is_some_and(|cap| Instant::now() >= cap) {
                // A flush's try, its deadline passed (behind a retry of
                // the worker's own, say): untried, still kept, and the
                // flush incomplete; nothing dropped (found by review: the
                // transport, given a deadline already past, failed the
                // batch for good).
                self.kept.push_front(kept);
                self.set_next_retry();
                return false;
            }
            self.retry_after_until = None;
            // Inside the transport from here: see `export`.
            self.set_away(true);
            let spans = kept.spans;
            match export_requests(
                &self.shared,
                self.transport.get(),
                kept.requests,
                (spans, spans, 0),
                self.deadline(cap),
                true,
                true,
            ) {
                None => self.backoff = RETRY_INITIAL_BACKOFF,
                Some(mut again) => {
                    again.first_failed = first_failed;
                    let after = again.retry_after;
                    // First in line again, then scheduled (the schedule
                    // looks at the first batch's retry budget).
                    self.kept.push_front(again);
                    self.schedule_retry(after);
                    return false;
                }
            }
        }
        self.set_away(false);
        true
    }

    /// Under [`Shedding::DropOldest`]: when the lanes evicted spans since
    /// the last look, they are full, and the kept batches hold the oldest
    /// spans of all: the oldest kept batch is shed (`retry_shed`) and as
    /// many of the lanes' oldest spans take its place (encoded, kept, tried
    /// at the next retry), giving the lanes that much room. The other
    /// policies keep the kept batches and drop new spans instead.
    pub(super) fn shed_for_newer_spans(&mut self) {
        if !matches!(self.shared.config.shedding, Shedding::DropOldest) {
            return;
        }
        let evicted = record_totals(&self.shared).0.evicted;
        if evicted == self.evicted_seen {
            return;
        }
        self.evicted_seen = evicted;
        let Some(oldest) = self.kept.pop_front() else {
            return;
        };
        drop_kept(&self.shared, oldest, true);
        self.take();
        if self.batch.is_empty() {
            return;
        }
        self.sync_scopes();
        let mut encoded = Encoded::default();
        self.batch
            .assemble(&self.encoder, self.encoding, &mut encoded);
        let taken = self.batch.len() as u64;
        self.batch.clear();
        let too_large = encoded.too_large as u64;
        let spans = taken.saturating_sub(too_large);
        {
            let mut ledger = lock(&self.shared.ledger);
            if ledger.abandoned {
                return;
            }
            ledger.in_flight = ledger.in_flight.saturating_sub(too_large);
            Ledger::add(&mut ledger.too_large, too_large);
            Ledger::add(&mut ledger.retrying, spans);
        }
        if !encoded.requests.is_empty() {
            self.kept.push_back(Kept {
                requests: encoded.requests,
                spans,
                retry_after: None,
                first_failed: Instant::now(),
            });
        }
    }

    /// Shutdown's last try of the kept batches, within its deadline: each
    /// is tried once more and whatever fails is final (`export_failed`). A
    /// `Retry-After` that ends before the deadline is waited out; one that
    /// ends later leaves them untried, still kept: `finish` counts them as
    /// timed out at shutdown (`Dropped::timed_out_at_shutdown`), as it does
    /// the kept batches the deadline leaves no time for.
    pub(super) fn try_kept_finally(&mut self, deadline: Option<Instant>) {
        if self.kept.is_empty() {
            return;
        }
        if let Some(until) = self.retry_after_until {
            if deadline.is_some_and(|d| until >= d) {
                return;
            }
            thread::sleep(until.saturating_duration_since(Instant::now()));
            self.retry_after_until = None;
        }
        while let Some(kept) = self.kept.pop_front() {
            if deadline.is_some_and(|d| Instant::now() >= d) || self.abandoned() {
                self.kept.push_front(kept);
                return;
            }
            let spans = kept.spans;
            export_requests(
                &self.shared,
                self.transport.get(),
                kept.requests,
                (spans, spans, 0),
                self.deadline(deadline),
                false,
                false,
            );
        }
    }

    /// Shutdown: wait for records in progress, export everything, close.
    pub(super) fn finish(&mut self) {
        // We saw CLOSED: the heavy side of the fence pair that each record
        // has the light side of (see `Shared::state`), before any load of
        // the records' `accepted` counters.
        crate::outstanding::asymmetric::heavy();
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
        // The export threads finish what they hold and exit. Kept batches
        // shutdown had no time to try (the worker's, and those the export
        // threads handed back by now; the deadline passed, or a
        // `Retry-After` ends after it) stay in flight: they are counted as
        // timed out at shutdown below, as `Dropped::timed_out_at_shutdown`
        // says (they were counted `export_failed`, which is for a batch
        // whose last try failed).
        self.pool = None;
        self.collect_kept();
        self.kept.clear();
        // Closing the queue: later pushes fail and count as after shutdown.
        *lock(&self.shared.consumer) = None;
        lock(&self.shared.ledger).closed = true;
        // A deadline that passed ended the wait above without the records
        // still under way (past their look at `state` before CLOSED): they
        // resolve now, their pushes failing as after shutdown or landing on
        // a stale look at the consumer (counted as queued, taken by no one).
        // Wait for them, so that the look below sees a landed one; one that
        // takes longer than `SETTLE` (its thread descheduled mid-record)
        // finds the shutdown abandoned, and `Ledger::timed_out_now` counts
        // its push as timed out (found by a flaky test: one such push left
        // a span `queued` for good after a shutdown(0) from the transport).
        let settle_by = Instant::now() + SETTLE;
        let quiet = loop {
            let (_, quiet) = record_totals(&self.shared);
            if quiet || Instant::now() >= settle_by {
                break quiet;
            }
            thread::yield_now();
        };
        // The deadline passed with spans still queued or in flight (a push
        // that landed before the close above included, and kept batches
        // shutdown had no time to try): they time out here
        // (found by review: they stayed `queued` for good, neither exported
        // nor counted, and shutdown said `completed` whenever no caller's
        // own wait had timed out first).
        let s = stats(&self.shared);
        if !quiet || s.queued + s.in_flight + s.retrying > 0 {
            let first = abandon(&self.shared, &mut lock(&self.shared.ledger));
            if first {
                // The deadline passed, or a kept batch's `Retry-After`
                // ends after it (nothing more to try before it).
                log_quietly(|| {
                    tracing::warn!(
                        "otlp-exporter: shutdown ended with spans still pending (its deadline passed, or a collector's Retry-After ends after it); they are counted as timed out"
                    )
                });
            }
        }
        // User code: a panic in the transport's shutdown is counted and
        // reported, and the shutdown still completes (everything was
        // exported or counted above).
        match catch_unwind(AssertUnwindSafe(|| self.transport.get().shutdown())) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                // What was exported may not be durable (a final sync that
                // failed): not a completed shutdown.
                log_quietly(
                    || tracing::warn!(%message, "otlp-exporter: Transport::shutdown failed"),
                );
                let mut ledger = lock(&self.shared.ledger);
                ledger.transport_shutdown_failed = true;
                ledger.last_error = Some(format!("transport shutdown failed: {message}"));
            }
            Err(payload) => {
                let message = panic_message(payload);
                log_quietly(
                    || tracing::warn!(%message, "otlp-exporter: Transport::shutdown panicked"),
                );
                let mut ledger = lock(&self.shared.ledger);
                Ledger::add(&mut ledger.transport_panics, 1);
                ledger.last_error = Some(format!("transport panicked in shutdown: {message}"));
            }
        }
        lock(&self.shared.control).finished = true;
        self.shared.control_cv.notify_all();
    }
}
