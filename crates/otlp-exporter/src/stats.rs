//! Where every span went: [`ExportStats`] and the reports of flush and
//! shutdown.

/// Spans that were not delivered, by reason. Every span handed to the
/// pipeline ends up exported, still queued or in flight, or in exactly one
/// of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// The recording thread's queue lane was full (drop-newest, block after
    /// its timeout, priority shedding of normal spans).
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
    /// Its export failed for good (after the transport's retries).
    pub export_failed: u64,
    /// Still queued or in flight when shutdown's deadline passed.
    pub timed_out_at_shutdown: u64,
    /// Recorded after shutdown began.
    pub after_shutdown: u64,
}

impl Dropped {
    /// All drops together.
    pub fn total(&self) -> u64 {
        self.queue_full
            + self.evicted
            + self.not_sampled
            + self.low_priority
            + self.too_large
            + self.rejected
            + self.export_failed
            + self.timed_out_at_shutdown
            + self.after_shutdown
    }

    pub(crate) fn minus(&self, before: &Dropped) -> Dropped {
        Dropped {
            queue_full: self.queue_full - before.queue_full,
            evicted: self.evicted - before.evicted,
            not_sampled: self.not_sampled - before.not_sampled,
            low_priority: self.low_priority - before.low_priority,
            too_large: self.too_large - before.too_large,
            rejected: self.rejected - before.rejected,
            export_failed: self.export_failed - before.export_failed,
            timed_out_at_shutdown: self.timed_out_at_shutdown - before.timed_out_at_shutdown,
            after_shutdown: self.after_shutdown - before.after_shutdown,
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
pub struct ExportStats {
    /// Spans handed to `record` (and `record_batch`), whatever became of them.
    pub accepted: u64,
    /// Spans the transport accepted.
    pub exported: u64,
    /// Spans waiting in the queue.
    pub queued: u64,
    /// Spans taken from the queue and not yet exported or dropped.
    pub in_flight: u64,
    /// Spans not delivered, by reason.
    pub dropped: Dropped,
    /// Export calls made to the transport.
    pub export_calls: u64,
    /// Export calls that failed for good.
    pub failed_calls: u64,
    /// Every attempt of the transport and its outcome (retries, statuses,
    /// connection failures), for transports that report them (OTLP/HTTP).
    pub attempts: Option<crate::AttemptStats>,
}

impl ExportStats {
    /// True if every accepted span is accounted for.
    pub fn is_balanced(&self) -> bool {
        self.accepted == self.exported + self.queued + self.in_flight + self.dropped.total()
    }
}

/// What [`Pipeline::force_flush`](crate::Pipeline::force_flush) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushReport {
    /// True if everything queued when the flush began was exported or
    /// dropped before the deadline.
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
pub struct ShutdownReport {
    /// True if the pipeline drained and stopped before the deadline.
    pub completed: bool,
    /// Spans exported during shutdown.
    pub exported: u64,
    /// Spans dropped during shutdown, by reason (those still pending at
    /// the deadline are in `dropped.timed_out_at_shutdown`).
    pub dropped: Dropped,
    /// The final accounting.
    pub stats: ExportStats,
}
