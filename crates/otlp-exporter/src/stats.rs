//! Where every span went: [`ExportStats`] and the reports of flush and
//! shutdown.

/// Spans that were not delivered, by reason. Every span handed to the
/// pipeline ends up exported, still queued or in flight, or in exactly one
/// of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// The recording thread's queue lane was full (drop-newest, block after
    /// its timeout, priority shedding of normal spans), or the span, too
    /// large for a queue slot, would have overspent the byte budget of
    /// such spans (`512 x max_queue_size` bytes, under every policy; see
    /// [`PipelineBuilder::max_queue_size`](crate::PipelineBuilder::max_queue_size)).
    pub queue_full: u64,
    /// Taken out of a full lane to make room for a newer span (drop-oldest).
    pub evicted: u64,
    /// The span's trace flags said "not sampled": counted, never queued.
    pub not_sampled: u64,
    /// Low-priority span shed while its lane was above the high-water mark.
    pub low_priority: u64,
    /// Alone larger than the largest request the exporter sends (64 MiB).
    pub too_large: u64,
    /// Rejected by the receiver in an otherwise successful export
    /// (`partial_success.rejected_spans`).
    pub rejected: u64,
    /// Its export failed for good: a final answer (HTTP 400, 401, 403,
    /// 404, 413, a redirect), a transport that panicked, a retryable
    /// failure (collector down, 429, 502, 503, 504) whose last try, at
    /// shutdown, failed again, or a batch that kept failing retryably for
    /// [`retry_max_elapsed`](crate::PipelineBuilder::retry_max_elapsed).
    pub export_failed: u64,
    /// Kept for a retry after a retryable export failure (a collector
    /// outage), then shed by the shedding policy to make room for newer
    /// spans: under [`Shedding::DropOldest`](crate::Shedding::DropOldest),
    /// when the lanes overflow, the kept batches (the oldest spans of all)
    /// go first. The other policies never shed kept batches (new spans
    /// are the ones dropped, as `queue_full` or `low_priority`).
    pub retry_shed: u64,
    /// Still queued or in flight when shutdown's deadline passed. This
    /// includes a batch kept for a retry (a collector outage) that
    /// shutdown had no time to try: the deadline passed first, or the
    /// collector's `Retry-After` ends after it.
    pub timed_out_at_shutdown: u64,
    /// Recorded after shutdown began (including a
    /// [`Shedding::Block`](crate::Shedding::Block) record that was still
    /// waiting for room when shutdown began).
    pub after_shutdown: u64,
    /// Left in the queue lane of a thread that exited, beyond what the
    /// pipeline keeps for exited threads: the oldest go first. Only
    /// happens while the worker cannot take from the queue (a collector
    /// outage, an export that hangs for longer than a healthy one (100
    /// ms), or one export during which more than 64 threads exit) and
    /// threads that recorded keep exiting. With the shared
    /// pool (every policy but drop-oldest) the spans adopted from exited
    /// lanes keep holding their slots of the pool, so new records are
    /// refused (`queue_full`, or `Block` waits) rather than these dropped;
    /// only the spans exited threads held in their own chunks (16 each)
    /// while every slot of the pool was taken, beyond
    /// [`HANDED_OVER_LANES`](crate::HANDED_OVER_LANES)` x max_queue_size`
    /// of them, are orphaned. With drop-oldest (per-thread lanes), beyond
    /// `HANDED_OVER_LANES x max_queue_size` handed-over spans in all.
    /// Never with a healthy collector and a pool that is not full.
    pub orphaned: u64,
    /// Refused at record time: the span's trace id or span id is all
    /// zeroes, which OTLP (`trace.proto`) and W3C Trace Context call
    /// invalid (a collector may reject the whole request for it). Spans
    /// from a [`Tracer`](crate::Tracer) never have such ids; a
    /// [`SpanData`](crate::SpanData) built by hand, or converted from
    /// another SDK, may. An unsampled span is counted as `not_sampled`
    /// whatever its ids.
    pub invalid_ids: u64,
}

impl Dropped {
    /// All drops together (saturating at `u64::MAX`).
    pub fn total(&self) -> u64 {
        self.fields()
            .into_iter()
            .fold(0u64, |sum, n| sum.saturating_add(n))
    }

    fn fields(&self) -> [u64; 12] {
        [
            self.queue_full,
            self.evicted,
            self.not_sampled,
            self.low_priority,
            self.too_large,
            self.rejected,
            self.export_failed,
            self.retry_shed,
            self.timed_out_at_shutdown,
            self.after_shutdown,
            self.orphaned,
            self.invalid_ids,
        ]
    }

    /// What was added since `before`, field by field. Saturates at 0: a
    /// counter can move down between two snapshots (when shutdown times
    /// out, spans that were queued or had failed move to
    /// `timed_out_at_shutdown`), and such a field then reports 0 rather than
    /// wrapping.
    pub(crate) fn minus(&self, before: &Dropped) -> Dropped {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        Dropped {
            queue_full: d(self.queue_full, before.queue_full),
            evicted: d(self.evicted, before.evicted),
            not_sampled: d(self.not_sampled, before.not_sampled),
            low_priority: d(self.low_priority, before.low_priority),
            too_large: d(self.too_large, before.too_large),
            rejected: d(self.rejected, before.rejected),
            export_failed: d(self.export_failed, before.export_failed),
            retry_shed: d(self.retry_shed, before.retry_shed),
            timed_out_at_shutdown: d(self.timed_out_at_shutdown, before.timed_out_at_shutdown),
            after_shutdown: d(self.after_shutdown, before.after_shutdown),
            orphaned: d(self.orphaned, before.orphaned),
            invalid_ids: d(self.invalid_ids, before.invalid_ids),
        }
    }
}

/// A snapshot of a pipeline's accounting, from
/// [`Pipeline::stats`](crate::Pipeline::stats).
///
/// The invariant `accepted == exported + queued + in_flight +
/// dropped.total()` holds in every snapshot taken while no thread is
/// recording and no export is running (check it with
/// [`is_balanced`](Self::is_balanced)); after shutdown, `queued` and
/// `in_flight` are 0. While threads record, each figure is a recent value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Spans handed to `record` (and `record_batch`), whatever became of them.
    pub accepted: u64,
    /// Spans the transport accepted.
    pub exported: u64,
    /// Spans waiting in the queue.
    pub queued: u64,
    /// Spans taken from the queue and not yet exported or dropped
    /// (`retrying` included).
    pub in_flight: u64,
    /// Of `in_flight`, the spans in batches kept after a retryable export
    /// failure (a collector outage), waiting for their next try.
    pub retrying: u64,
    /// Spans not delivered, by reason.
    pub dropped: Dropped,
    /// Export calls made to the transport.
    pub export_calls: u64,
    /// Export calls that failed for good (a transport call that panicked
    /// included).
    pub failed_calls: u64,
    /// Calls into the transport (`export` or `shutdown`) that panicked.
    /// Each panic was caught: an `export` that panicked counts as a failed
    /// export of its spans (`dropped.export_failed`), and the pipeline
    /// keeps working. The last message is in
    /// [`Pipeline::last_error`](crate::Pipeline::last_error).
    pub transport_panics: u64,
    /// Every attempt of the transport and its outcome (retries, statuses,
    /// connection failures), for transports that report them (OTLP/HTTP).
    pub attempts: Option<crate::AttemptStats>,
}

impl ExportStats {
    /// True if every accepted span is accounted for.
    pub fn is_balanced(&self) -> bool {
        let resolved = self
            .exported
            .checked_add(self.queued)
            .and_then(|n| n.checked_add(self.in_flight))
            .and_then(|n| n.checked_add(self.dropped.total()));
        resolved == Some(self.accepted)
    }
}

/// What [`Pipeline::force_flush`](crate::Pipeline::force_flush) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushReport {
    /// True if everything queued when the flush began was exported or
    /// dropped before the deadline. False during a collector outage: the
    /// flush tried the kept batches once, found the collector still down,
    /// and left them kept (not dropped; see
    /// [`Pipeline`](crate::Pipeline#a-collector-outage)). A flush during a
    /// shutdown (begun before it, or overtaking it) ends with it: true once
    /// the shutdown finished or gave up at its deadline, false if the
    /// flush's own timeout passed first. What the shutdown could not export
    /// is in [`dropped`](Self::dropped) (`timed_out_at_shutdown`), so look
    /// there, not only here, to know whether the spans were delivered.
    pub completed: bool,
    /// Spans exported while the flush ran.
    pub exported: u64,
    /// Spans dropped while the flush ran, by reason.
    pub dropped: Dropped,
    /// Spans still queued or in flight when the flush returned (they are not
    /// lost: a later export or shutdown deals with them).
    pub pending: u64,
}

/// What [`Pipeline::shutdown`](crate::Pipeline::shutdown) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// True if the pipeline drained and stopped before the deadline and
    /// the transport's `shutdown` returned `Ok` (a
    /// [`FileTransport`](crate::FileTransport) whose final sync failed
    /// makes it false: see [`Pipeline::last_error`](crate::Pipeline::last_error)).
    pub completed: bool,
    /// Spans exported during shutdown.
    pub exported: u64,
    /// Spans dropped during shutdown, by reason (those still pending at
    /// the deadline are in `dropped.timed_out_at_shutdown`).
    pub dropped: Dropped,
    /// The final accounting.
    pub stats: ExportStats,
}
