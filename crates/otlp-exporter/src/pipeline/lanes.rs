//! The record path: each recording thread's lane into a pipeline (a
//! thread-local queue producer), encoding on the recording thread, the
//! shedding policies applied at push, the shared fallback lane, the
//! hand-over of an exited thread's spans to the worker, and the deferral
//! of records made from inside the pipeline's own transport.

use std::cell::RefCell;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use otlp_queue::{CapacityError, ClosedError, PushError, PushTimeoutError, pooled};

use crate::encode::proto::{FIXED_MAX, put_framed_span_fixed, written};
use crate::encode::{Encoding, SpanRef, encode_span};
use crate::model::{ScopeId, SpanData};
use crate::outstanding::asymmetric;

use super::*;

/// A span as it travels through the queue: already encoded (on the thread
/// that recorded it, so encoding runs in parallel on every recording
/// thread), inline when small so that recording allocates nothing. Encoded
/// in place, in its queue slot (see [`EncodedSpan::encode_into`]).
pub(crate) struct EncodedSpan {
    pub(super) scope: ScopeId,
    /// Without `heap`: bytes `start..start + len` of `buf` are the span
    /// (initialized; the rest of `buf` never is: filling 488 bytes per span
    /// that nobody reads is a cost).
    start: u16,
    len: u16,
    /// A span too large for `buf`, charged to the pipeline's
    /// [`LargeBudget`] until it is dropped.
    heap: Option<Box<Large>>,
    /// Never written: keeps the slot at 512 bytes (the box above is a
    /// thin pointer, 8 bytes less than the `Box<[u8]>` it replaced), so
    /// that the slots, and what a push writes and prefetches of them,
    /// lie as they did.
    _pad: [MaybeUninit<u8>; 8],
    buf: [MaybeUninit<u8>; INLINE],
}

/// The budget, in bytes, of the spans too large for a queue slot (boxed,
/// [`Large`]): one per pipeline, shared by every recording thread. Without
/// it `max_queue_size` bounded the number of queued spans but not their
/// bytes: 2 063 spans of 100 KB queued behind a hung export held 197 MiB
/// (found by review). Its size is the pool's own slot memory
/// (`max_queue_size x 512` bytes: 1 MiB at the default), so that the
/// queued spans hold at most twice the pool, whatever their size. A box
/// is charged (one compare-and-swap) when a span is recorded and refunded
/// (one atomic add) when the box is dropped, wherever that happens: taken
/// into a batch, adopted or deferred and then exported or dropped, left in
/// the queue at shutdown. A span that would overspend it is not queued
/// (`queue_full`); small spans, which travel inline, never touch it.
pub(super) struct LargeBudget {
    /// Bytes not charged.
    left: AtomicUsize,
    total: usize,
}

impl LargeBudget {
    pub(super) fn new(total: usize) -> Arc<Self> {
        Arc::new(LargeBudget {
            left: AtomicUsize::new(total),
            total,
        })
    }

    /// Charges `n` bytes, or nothing (false) if fewer are left.
    fn take(&self, n: usize) -> bool {
        // Relaxed: a count of bytes; it orders nothing else.
        let mut left = self.left.load(Ordering::Relaxed);
        loop {
            if left < n {
                return false;
            }
            match self.left.compare_exchange_weak(
                left,
                left - n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => left = now,
            }
        }
    }

    /// The bytes not charged now.
    pub(super) fn left(&self) -> usize {
        // Relaxed: as in `take`.
        self.left.load(Ordering::Relaxed)
    }

    /// The whole budget: a span whose charge is larger is never queued.
    pub(super) fn total(&self) -> usize {
        self.total
    }
}

/// The bytes of a span too large for its slot, charged to `budget` (their
/// length and this header) until dropped.
pub(super) struct Large {
    bytes: Box<[u8]>,
    budget: Arc<LargeBudget>,
}

impl Large {
    /// What boxing `len` bytes is charged.
    fn charge(len: usize) -> usize {
        len.saturating_add(std::mem::size_of::<Large>())
    }

    /// `bytes`, boxed and charged, if `budget` has room for them.
    fn try_new(bytes: &[u8], budget: &Arc<LargeBudget>) -> Result<Box<Large>, OverBudget> {
        let need = Large::charge(bytes.len());
        if !budget.take(need) {
            return Err(OverBudget { need });
        }
        Ok(Box::new(Large {
            bytes: Box::from(bytes),
            budget: budget.clone(),
        }))
    }
}

impl Drop for Large {
    fn drop(&mut self) {
        let n = Large::charge(self.bytes.len());
        // Freed before it is refunded: a record that the refund lets in
        // does not hold its bytes alongside these.
        drop(std::mem::take(&mut self.bytes));
        // Relaxed: as in `LargeBudget::take`.
        self.budget.left.fetch_add(n, Ordering::Relaxed);
    }
}

/// A span too large for its slot found the [`LargeBudget`] spent: it
/// needed `need` bytes of it.
#[derive(Debug)]
pub(super) struct OverBudget {
    pub(super) need: usize,
}

/// Encoded spans of up to this many bytes travel inline in their 512-byte
/// slot; larger ones are boxed (two `malloc`s on the recording thread, the
/// bytes and a header with the [`LargeBudget`] they are charged to, and
/// the `free`s on the worker). 488 bytes holds a span with a dozen short
/// attributes, or a `tracing` span with its `code.*` attributes and a few
/// fields (about 250-350 bytes). With 256-byte slots (232 inline, until
/// 2026-11-30) such spans were all boxed, which cost the recording thread
/// about 440 instructions and the worker about 200 per span; a small span
/// costs the same in either slot (the producer writes, and the worker
/// reads, only the bytes the span has: `record_loop` measured within the
/// noise, docs/exporter-performance.md). The price is memory: the pool is
/// `max_queue_size` x 512 bytes (1 MiB at the default 2048); a thread's
/// own chunk stays 8 KiB (16 slots).
pub(crate) const INLINE: usize = 488;

const _: () = assert!(
    std::mem::size_of::<EncodedSpan>() == 512,
    "a queue slot stays 512 bytes"
);

impl EncodedSpan {
    /// `span`, encoded (see [`encode_into`](Self::encode_into)).
    #[inline(always)]
    pub(super) fn encode(
        span: &SpanData,
        encoding: Encoding,
        scratch: &mut Vec<u8>,
        budget: &Arc<LargeBudget>,
    ) -> Result<Self, OverBudget> {
        let mut out = MaybeUninit::<EncodedSpan>::uninit();
        // SAFETY: `out` is valid for writes; `encode_into` initializes it
        // when it returns `Ok`.
        unsafe {
            EncodedSpan::encode_into(out.as_mut_ptr(), span, encoding, scratch, budget)?;
            Ok(out.assume_init())
        }
    }

    /// Encodes `span` into the (uninitialized) `EncodedSpan` at `out`: a
    /// protobuf span that fits is written straight into `buf`
    /// (`encode::proto::put_framed_span_fixed`), anything else through
    /// `scratch`, and copied in, or boxed when too large, if `budget` has
    /// room for it (else `OverBudget`).
    ///
    /// # Safety
    ///
    /// `out` is valid for writes and aligned; it is initialized when this
    /// returns `Ok` (on `Err` or a panic, what was written so far is plain
    /// bytes: nothing that leaks or needs a drop, nor is ever read).
    #[inline(always)]
    pub(super) unsafe fn encode_into(
        out: *mut EncodedSpan,
        span: &SpanData,
        encoding: Encoding,
        scratch: &mut Vec<u8>,
        budget: &Arc<LargeBudget>,
    ) -> Result<(), OverBudget> {
        // SAFETY: `out` is valid for writes and aligned (the caller's
        // contract); `buf` is reached through a raw pointer, and it is an
        // array of `MaybeUninit`, for which any contents are valid, so a
        // reference to it is sound.
        let buf = unsafe { &mut *ptr::addr_of_mut!((*out).buf) };
        let fixed = match encoding {
            Encoding::Protobuf => put_framed_span_fixed(buf, span),
            Encoding::Json => None,
        };
        let (range, heap) = match fixed {
            Some(range) => (range, None),
            None => {
                let bytes = encode_large(span, encoding, scratch);
                let out = match buf.get_mut(..bytes.len()) {
                    Some(dst) => {
                        dst.write_copy_of_slice(bytes);
                        Ok((0..bytes.len(), None))
                    }
                    None => Large::try_new(bytes, budget).map(|large| (0..0, Some(large))),
                };
                // A span far larger than most grew the thread's scratch to
                // its size: shrink it back, so that an idle thread holds at
                // most its 16 KiB (found by review: a thread that once
                // recorded a 100 KB attribute kept 206 KiB for good).
                if scratch.capacity() > MAX_SCRATCH {
                    scratch.clear();
                    scratch.shrink_to(LARGE_SCRATCH);
                }
                out?
            }
        };
        // Both fit in 16 bits: the range is within `INLINE`.
        let (start, len) = (range.start as u16, range.len() as u16);
        // SAFETY: as above: each field is written through a raw pointer,
        // once, and then all of them are initialized.
        unsafe {
            ptr::addr_of_mut!((*out).scope).write(span.scope);
            ptr::addr_of_mut!((*out).start).write(start);
            ptr::addr_of_mut!((*out).len).write(len);
            ptr::addr_of_mut!((*out).heap).write(heap);
        }
        Ok(())
    }

    pub(super) fn as_ref(&self) -> SpanRef<'_> {
        let bytes = match &self.heap {
            Some(large) => &large.bytes,
            None => {
                let start = usize::from(self.start);
                // SAFETY: `encode_into` wrote these bytes.
                unsafe { written(&self.buf, start..start + usize::from(self.len)) }
            }
        };
        SpanRef {
            scope: self.scope,
            bytes,
        }
    }
}

/// What a lane's scratch buffer holds at least once a span too large for
/// a slot has been recorded: most such spans (a `tracing` span with its
/// `code.*` attributes, a span with a few events) fit, and are then encoded
/// with the fixed-buffer encoder, as small spans are.
const LARGE_SCRATCH: usize = 1024;

/// The most a lane's scratch buffer keeps between records: after a larger
/// span it is shrunk back to [`LARGE_SCRATCH`] (a span that large is
/// boxed anyway, so its next encode's growth is no new cost).
const MAX_SCRATCH: usize = 4096;

/// `span` encoded into `scratch`, for a span that did not fit a slot: with
/// the fixed-buffer encoder into `scratch`'s spare capacity (at least
/// [`LARGE_SCRATCH`] bytes, or what the largest span so far needed), which
/// skips the `Vec` encoder's capacity check on every byte and its moving of
/// a message's body when its length needs a second byte; with the `Vec`
/// encoder (growing `scratch`) when it does not fit there either, or for
/// JSON. The two write the same bytes (`encode::proto`'s tests).
#[inline(never)]
fn encode_large<'s>(span: &SpanData, encoding: Encoding, scratch: &'s mut Vec<u8>) -> &'s [u8] {
    scratch.clear();
    if encoding == Encoding::Protobuf {
        scratch.reserve(LARGE_SCRATCH);
        let spare = scratch.spare_capacity_mut();
        let spare_len = spare.len().min(FIXED_MAX);
        if let Some(range) = put_framed_span_fixed(&mut spare[..spare_len], span) {
            let spare = scratch.spare_capacity_mut();
            // SAFETY: `put_framed_span_fixed` wrote every byte of `range`.
            return unsafe { written(spare, range) };
        }
    }
    encode_span(span, encoding, scratch);
    scratch
}

/// The queue the lanes push into: by default the pooled queue, whose
/// `max_queue_size` is the total across every recording thread
/// ([`otlp_queue::pooled`]); with [`Shedding::DropOldest`], the per-thread
/// lanes of [`otlp_queue::bounded`] (eviction needs a ring per thread: see
/// `otlp_queue::pooled`'s docs for why chunks cannot evict one item).
pub(super) enum Producer<T> {
    Lanes(otlp_queue::Producer<T>),
    Pooled(pooled::Producer<T>),
}

/// The worker's side of [`Producer`].
pub(super) enum Consumer<T> {
    Lanes(otlp_queue::Consumer<T>),
    Pooled(pooled::Consumer<T>),
}

/// A flush's mark (see `otlp_queue::Consumer::mark`).
pub(super) enum Mark<T> {
    Lanes(otlp_queue::Mark<T>),
    Pooled(pooled::Mark<T>),
}

/// Makes the queue: pooled (`capacity` in total) unless `per_thread`
/// (`capacity` per recording thread).
pub(super) fn queue<T>(
    capacity: usize,
    per_thread: bool,
) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    Ok(if per_thread {
        let (p, c) = otlp_queue::try_bounded(capacity)?;
        (Producer::Lanes(p), Consumer::Lanes(c))
    } else {
        let (p, c) = pooled::try_bounded_total(capacity)?;
        (Producer::Pooled(p), Consumer::Pooled(c))
    })
}

impl<T> Producer<T> {
    pub(super) fn try_clone(&self) -> Result<Self, CapacityError> {
        Ok(match self {
            Producer::Lanes(p) => Producer::Lanes(p.try_clone()?),
            Producer::Pooled(p) => Producer::Pooled(p.try_clone()?),
        })
    }

    #[inline(always)]
    pub(super) fn try_push(&self, v: T) -> Result<(), PushError<T>> {
        match self {
            Producer::Lanes(p) => p.try_push(v),
            Producer::Pooled(p) => p.try_push(v),
        }
    }

    pub(super) fn push_timeout(&self, v: T, d: Duration) -> Result<(), PushTimeoutError<T>> {
        match self {
            Producer::Lanes(p) => p.push_timeout(v, d),
            Producer::Pooled(p) => p.push_timeout(v, d),
        }
    }

    /// Drop-oldest. Only the per-thread lanes evict; the pooled queue
    /// (never used with drop-oldest) hands a value that finds no room back
    /// as `Full`.
    pub(super) fn force_push(&self, v: T) -> Result<Option<T>, PushError<T>> {
        match self {
            Producer::Lanes(p) => p
                .force_push(v)
                .map_err(|ClosedError(v)| PushError::Closed(v)),
            Producer::Pooled(p) => p.try_push(v).map(|()| None),
        }
    }

    /// The shared pool's used slots after this lane's last claim of a
    /// pool chunk, if it claimed one since the last call (see
    /// `pooled::Producer::pool_used_at_claim`); never for per-thread lanes.
    #[inline(always)]
    pub(super) fn pool_used_at_claim(&self) -> Option<usize> {
        match self {
            Producer::Lanes(_) => None,
            Producer::Pooled(p) => p.pool_used_at_claim(),
        }
    }

    /// The fill the priority policy compares with its high-water mark:
    /// the whole queue's (the shared pool's used slots, at chunk
    /// granularity) for the pooled queue; the lane's own for per-thread
    /// lanes.
    #[inline]
    pub(super) fn fill(&self) -> usize {
        match self {
            Producer::Lanes(p) => p.lane_len(),
            Producer::Pooled(p) => p.pool_used().max(p.lane_len()),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        match self {
            Producer::Lanes(p) => p.is_closed(),
            Producer::Pooled(p) => p.is_closed(),
        }
    }

    /// Takes the lane's spans back out (per-thread lanes). The pooled queue
    /// takes none: a gone thread's spans stay queued, in the shared pool,
    /// for the worker, and its lane is freed once they are taken.
    pub(super) fn take_back(&self, sink: impl FnMut(T)) -> usize {
        match self {
            Producer::Lanes(p) => p.take_back(sink),
            Producer::Pooled(_) => 0,
        }
    }
}

impl<T> Consumer<T> {
    /// Takes up to `max` values, oldest first per lane, lending each to
    /// `sink` and then dropping it (the pooled queue lends it where it lies
    /// and so reads only what `sink` reads of each slot; the lanes move
    /// each value out first).
    #[inline]
    pub(super) fn pop_each_mut(&mut self, max: usize, mut sink: impl FnMut(&mut T)) -> usize {
        match self {
            Consumer::Lanes(c) => c.pop_each(max, |mut v| sink(&mut v)),
            Consumer::Pooled(c) => c.pop_each_mut(max, sink),
        }
    }

    /// `pooled::Consumer::adopt_exited_each`: takes what threads that
    /// exited left in their lanes and frees the lanes, the spans taken
    /// still counting against the pool until [`release`](Self::release)d.
    /// Per-thread lanes need none of this: an exiting thread hands its
    /// spans over itself (`hand_over`).
    pub(super) fn adopt_exited_each(&mut self, max: usize, sink: impl FnMut(T)) -> usize {
        match self {
            Consumer::Lanes(_) => 0,
            Consumer::Pooled(c) => c.adopt_exited_each(max, sink),
        }
    }

    /// `n` spans taken with [`adopt_exited_each`](Self::adopt_exited_each)
    /// have left the adopted spans (`pooled::Consumer::release`).
    pub(super) fn release(&mut self, n: usize) {
        if let Consumer::Pooled(c) = self {
            c.release(n);
        }
    }

    /// Adopted spans beyond the pool slots held for them
    /// (`pooled::Consumer::uncovered`); none with per-thread lanes.
    pub(super) fn uncovered(&self) -> usize {
        match self {
            Consumer::Lanes(_) => 0,
            Consumer::Pooled(c) => c.uncovered(),
        }
    }

    pub(super) fn mark(&mut self) -> Mark<T> {
        match self {
            Consumer::Lanes(c) => Mark::Lanes(c.mark()),
            Consumer::Pooled(c) => Mark::Pooled(c.mark()),
        }
    }

    pub(super) fn passed(&self, mark: &Mark<T>) -> bool {
        match (self, mark) {
            (Consumer::Lanes(c), Mark::Lanes(m)) => c.passed(m),
            (Consumer::Pooled(c), Mark::Pooled(m)) => c.passed(m),
            // A mark of another queue: nothing of it can be pending here.
            _ => true,
        }
    }
}

thread_local! {
    pub(super) static LANES: RefCell<Vec<LocalLane>> = const { RefCell::new(Vec::new()) };
}

/// This thread's lane into one pipeline.
pub(super) struct LocalLane {
    pub(super) pipeline: u64,
    /// Dropped in `drop`, before the lane is offered to the worker's
    /// consumer (a lane is freed only once its producer is gone).
    pub(super) producer: ManuallyDrop<Producer<EncodedSpan>>,
    pub(super) counters: Arc<ThreadCounters>,
    /// Reused buffer for encoding a span.
    pub(super) scratch: Vec<u8>,
    /// The pipeline, to hand the lane's spans over when the thread exits.
    pub(super) shared: Weak<Shared>,
    /// This thread is the pipeline's worker or one of its export threads:
    /// its records come from inside the transport (see `defer`).
    pub(super) reentrant: bool,
    /// Under `Shedding::Block`, when the record now being pushed stops
    /// waiting for room, set on the shared fallback lane from the record's
    /// start (its wait for the lane's lock counts); `None`: the timeout
    /// from the push.
    pub(super) wait_until: Option<Instant>,
}

impl Drop for LocalLane {
    /// The thread is gone (or the pipeline is): spans still in the lane are
    /// handed to the worker, so that the lane's memory is freed now rather
    /// than when the worker gets to it (during a collector outage, that
    /// could be never).
    fn drop(&mut self) {
        let shared = self.shared.upgrade();
        if let Some(shared) = &shared {
            hand_over(shared, &self.producer);
            // This thread records no more into this lane (it is this
            // thread's own, or the pipeline is gone): its counts are final.
            // Folded in under the same lock `record_totals` reads them with,
            // so no snapshot counts them twice or not at all.
            lock(&shared.threads).retire(&self.counters);
        }
        // SAFETY: dropped once, here, and not used after.
        unsafe { ManuallyDrop::drop(&mut self.producer) };
        // With the pooled queue the spans stay in the lane, for the worker
        // to take, and the lane (its header and its own 16-slot chunk, 8
        // KiB) is freed once it has. If the worker has been away from the
        // queue for `ADOPT_AFTER` (inside an export that hangs, or holding
        // batches for a collector that is down), this thread frees its
        // lane itself, and any other exited thread's: threads that come
        // and go meanwhile do not pile up lanes. Not during a shorter
        // absence (a healthy export): found by review, adopting then
        // orphaned spans a healthy collector would have taken.
        // Nor while few threads have exited during this absence: past
        // `ADOPT_EXITS` of them the lanes are freed at once.
        if let Some(shared) = &shared
            && let Some(away) = shared.worker_away_for()
            // Relaxed: a count for a threshold (one per thread exit).
            && (away >= ADOPT_AFTER
                || shared.exits_while_away.fetch_add(1, Ordering::Relaxed) + 1 >= ADOPT_EXITS)
        {
            adopt_exited(shared, false);
        }
    }
}

/// Adopted spans a pooled queue may hold beyond the pool slots held for
/// them (`pooled::Consumer::uncovered`: spans that were in exited lanes'
/// own chunks, the 16 spans a thread may always queue, while the pool had
/// no free chunk to hold in their place): `HANDED_OVER_LANES x
/// max_queue_size`, and at least `HANDED_OVER_LANES` threads' own chunks
/// (128 spans). Beyond it the oldest adopted spans are dropped as
/// `orphaned`.
pub(super) fn uncovered_adopted(shared: &Shared) -> usize {
    shared
        .capacity
        .max(THREAD_CHUNK_SLOTS)
        .saturating_mul(HANDED_OVER_LANES)
}

/// The spans of `adopted` (`len` of them) that the queue's fill does not
/// already count (see `Shared::adopted_len`).
pub(super) fn adopted_unheld(consumer: &Consumer<EncodedSpan>, len: usize) -> usize {
    match consumer {
        Consumer::Lanes(_) => len,
        Consumer::Pooled(c) => c.uncovered(),
    }
}

/// Moves what threads that exited left in their lanes into the adopted
/// spans and frees the lanes (chunk and header) now rather than when the
/// worker next takes from the queue. Called by the worker while it holds
/// failed batches for a retry (it then takes nothing new), and by exiting
/// threads once the worker has been away for `ADOPT_AFTER` (`wait` false:
/// skipped if the worker, or another thread, has the consumer).
///
/// The adopted spans still count against the pool
/// (`pooled::Consumer::adopt_exited_each`: the chunks they were in, and
/// free chunks for those that were in the lanes' own chunks, are held
/// until the worker takes the spans), so records meet a full queue
/// (`queue_full`, or `Block` waits) where they would have had the spans
/// stayed in their lanes, and the spans held stay within the pool. Only
/// spans the pool had no chunk to hold for (those exited threads had in
/// their own chunks while every pool slot was taken), beyond
/// [`uncovered_adopted`], are dropped, the oldest first, as `orphaned`:
/// that takes an outage or a hung export, a full pool, and threads coming
/// and going meanwhile.
pub(super) fn adopt_exited(shared: &Shared, wait: bool) {
    let mut consumer = if wait {
        lock(&shared.consumer)
    } else {
        match shared.consumer.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        }
    };
    let Some(consumer) = consumer.as_mut() else {
        return;
    };
    let mut ledger = lock(&shared.ledger);
    if ledger.closed || ledger.abandoned {
        return;
    }
    let ledger = &mut *ledger;
    // In steps, trimming after each: the list never holds more than a
    // step beyond what is kept.
    const STEP: usize = 256;
    let mut total = 0;
    loop {
        let n = consumer.adopt_exited_each(STEP, |span| {
            // Kept within the pool and `uncovered_adopted` below, not by
            // `push_adopted`'s cap (every span it dropped would have to be
            // released too).
            push_adopted(ledger, span, usize::MAX)
        });
        total += n;
        // Popped from the lanes into `adopted`: still queued (`queued`
        // counts `adopted`).
        Ledger::add(&mut ledger.popped, n as u64);
        // Also after the last call, which takes nothing: it may retire
        // lanes the calls before drained, and spans adopted from their own
        // chunks are uncovered only then (until then those chunks hold
        // them).
        let over = consumer
            .uncovered()
            .saturating_sub(uncovered_adopted(shared));
        if over > 0 {
            let over = over.min(ledger.adopted.len());
            ledger.adopted.drain(..over);
            Ledger::add(&mut ledger.orphaned, over as u64);
            Ledger::add(&mut ledger.adopted_out, over as u64);
            consumer.release(over);
        }
        if n == 0 {
            break;
        }
    }
    if total == 0 {
        return;
    }
    // Relaxed: under the ledger lock (see `Shared::adopted_len`).
    shared.adopted_len.store(
        adopted_unheld(consumer, ledger.adopted.len()),
        Ordering::Relaxed,
    );
    adopted(shared, ledger, total);
}

/// Takes every span out of `producer`'s lane into the pipeline's adopted
/// spans (see `Ledger::adopted`), keeping at most `max_queue_size` there
/// (the oldest beyond are counted as orphaned).
pub(super) fn hand_over(shared: &Shared, producer: &Producer<EncodedSpan>) {
    let mut ledger = lock(&shared.ledger);
    if ledger.closed || ledger.abandoned || producer.is_closed() {
        // The worker is done: whatever is left is dropped with the lane,
        // as it always was (and already counted: timed out, or never
        // accepted after the final drain).
        return;
    }
    let ledger = &mut *ledger;
    let cap = shared.capacity.saturating_mul(HANDED_OVER_LANES);
    let n = producer.take_back(|span| push_adopted(ledger, span, cap));
    if n == 0 {
        return;
    }
    // Relaxed: under the ledger lock; a count for a threshold.
    shared
        .adopted_len
        .store(ledger.adopted.len(), Ordering::Relaxed);
    Ledger::add(&mut ledger.taken_back, n as u64);
    adopted(shared, ledger, n);
}

/// Pushes a span onto `ledger.adopted` (by a thread's hand-over, or from
/// exited threads' lanes), keeping at most `cap` there: past that the
/// oldest is dropped, counted as orphaned. A hand-over (per-thread lanes,
/// drop-oldest) keeps `HANDED_OVER_LANES x max_queue_size`, trimmed as it
/// goes, so the list never grows past the cap (a trim after a whole
/// hand-over let it double once, 8 MiB more at the default size).
pub(super) fn push_adopted(ledger: &mut Ledger, span: EncodedSpan, cap: usize) {
    if ledger.adopted.len() >= cap {
        ledger.adopted.pop_front();
        Ledger::add(&mut ledger.orphaned, 1);
        Ledger::add(&mut ledger.adopted_out, 1);
    }
    ledger.adopted.push_back(span);
}

/// Accounts for `n` spans just pushed with [`push_adopted`]: a flush waits
/// for them (`adopted_in`), and the worker is told there are some.
pub(super) fn adopted(shared: &Shared, ledger: &mut Ledger, n: usize) {
    Ledger::add(&mut ledger.adopted_in, n as u64);
    // Release: pairs with the Acquire load in the worker's `take`.
    shared.has_adopted.store(true, Ordering::Release);
}

impl Pipeline {
    /// `record`, skipping the limits for spans already built within them
    /// (by [`Span`](crate::Span)).
    pub(crate) fn record_span(&self, mut span: SpanData, apply_limits: bool) -> Recorded {
        self.record_span_in_place(&mut span, apply_limits)
    }

    /// `record_span` on a span the caller keeps (and drops): the span is
    /// encoded where it lies, never moved (a `SpanData` is a few hundred
    /// bytes, and every move is a copy on the record path).
    #[inline]
    pub(crate) fn record_span_in_place(&self, span: &mut SpanData, apply_limits: bool) -> Recorded {
        let shared = &self.handle.shared;
        let fast = LANES.try_with(|lanes| {
            // Re-entry (a record from inside a record) finds the cell
            // borrowed: leave the span for the slow path below.
            let mut lanes = lanes.try_borrow_mut().ok()?;
            let i = match lanes.iter().position(|l| l.pipeline == shared.id) {
                Some(i) => i,
                None => {
                    // Forget lanes of pipelines that are gone.
                    lanes.retain(|l| !l.producer.is_closed());
                    // After shutdown a thread gets no lane of its own (a
                    // lane and its chunk, ~8.5 KiB, for a record that is
                    // dropped anyway): the shared fallback lane counts it.
                    // SeqCst: as in `count_unpushed` (a lane made just
                    // after a close is still freed with its thread).
                    if shared.state.load(Ordering::SeqCst) != RUNNING {
                        return None;
                    }
                    // No lane (memory ran out): the slow path below.
                    lanes.push(new_lane(shared)?);
                    lanes.len() - 1
                }
            };
            Some(record_into(shared, &mut lanes[i], span, apply_limits))
        });
        match fast {
            Ok(Some(recorded)) => recorded,
            // Thread-local storage is being torn down, re-entry, or no lane
            // of its own could be allocated: the shared fallback lane.
            _ => record_fallback(shared, span, apply_limits),
        }
    }
}

#[cold]
fn record_fallback(shared: &Arc<Shared>, span: &mut SpanData, apply_limits: bool) -> Recorded {
    // Under `Block`, another thread's record may be waiting for room under
    // the lock: this record waits for the lock and then for room no longer
    // than its timeout in all (found by review: records made during
    // threads' exits queued behind each other, one took 2.3 s with a
    // 100 ms timeout). Past it, it is dropped as queue-full.
    let wait_until = match shared.config.shedding {
        Shedding::Block { timeout } => Instant::now().checked_add(timeout),
        _ => None,
    };
    let sampled = span.context.trace_flags.is_sampled();
    let valid = has_valid_ids(span);
    let mut fallback = match wait_until {
        // An unsampled span, or one with invalid ids, is never pushed: it
        // does not wait for the lane, and counts as not sampled (or
        // invalid).
        Some(_) if !sampled || !valid => return record_waited_out(shared, sampled, valid),
        Some(until) => loop {
            match shared.fallback.try_lock() {
                Ok(guard) => break guard,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if Instant::now() >= until {
                        return record_waited_out(shared, sampled, valid);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        },
        None => lock(&shared.fallback),
    };
    if fallback.is_none() {
        // Shared by every thread: never marked re-entrant (a record from a
        // pipeline thread that lands here still never waits: see `push`).
        *fallback = new_lane(shared);
        if let Some(lane) = fallback.as_mut() {
            lane.reentrant = false;
        }
    }
    match fallback.as_mut() {
        Some(lane) => {
            lane.wait_until = wait_until;
            let recorded = record_into(shared, lane, span, apply_limits);
            lane.wait_until = None;
            recorded
        }
        None => record_laneless(shared, sampled, valid),
    }
}

/// Whether the span's trace and span ids are both valid (not all zero):
/// OTLP's `trace.proto` calls an all-zero id invalid, and a span with one
/// is refused at record time ([`DropReason::InvalidIds`]).
#[inline(always)]
fn has_valid_ids(span: &SpanData) -> bool {
    span.context.trace_id.is_valid() && span.context.span_id.is_valid()
}

/// A record that waited out its `Block` timeout for the fallback lane's
/// lock (or, unsampled, did not wait for it): counted as queue-full (or
/// not sampled, or after shutdown), as one that waited it out for room
/// is, in counters of their own (one writer at a time: under a lock held
/// only for the count).
#[cold]
fn record_waited_out(shared: &Shared, sampled: bool, valid: bool) -> Recorded {
    let _guard = lock(&shared.waited_out_lock);
    count_unpushed(shared, &shared.waited_out, sampled, valid)
}

/// A lane for the calling thread, or `None` if it cannot be allocated.
pub(super) fn new_lane(shared: &Arc<Shared>) -> Option<LocalLane> {
    let producer = lock(&shared.template).try_clone().ok()?;
    let counters = Arc::new(ThreadCounters::default());
    lock(&shared.threads).live.push(counters.clone());
    Some(LocalLane {
        pipeline: shared.id,
        producer: ManuallyDrop::new(producer),
        counters,
        scratch: Vec::with_capacity(INLINE),
        shared: Arc::downgrade(shared),
        reentrant: on_pipeline_thread(shared),
        wait_until: None,
    })
}

/// Accounts for a record that found no lane at all (memory ran out):
/// counted as queue-full (or not sampled, or after shutdown, or invalid
/// ids). Called under the fallback lock, which makes it the single writer
/// of `laneless`.
pub(super) fn record_laneless(shared: &Shared, sampled: bool, valid: bool) -> Recorded {
    count_unpushed(shared, &shared.laneless, sampled, valid)
}

/// Counts a record accepted and dropped without a push into `c`, whose
/// caller is its only writer: after shutdown, not sampled, invalid ids, or
/// queue-full (the order of [`record_into`]).
fn count_unpushed(shared: &Shared, c: &ThreadCounters, sampled: bool, valid: bool) -> Recorded {
    let n = c.accepted.load(Ordering::Relaxed) + 1;
    // SeqCst swap, then a SeqCst load of `state`: the same store-then-load
    // handshake with shutdown as `record_into`'s (see `Shared::state`), by
    // a locked instruction instead of the light fence: this path is rare
    // (a record with no lane, or one counted under `waited_out_lock`),
    // so a full barrier there costs nothing measurable.
    c.accepted.swap(n, Ordering::SeqCst);
    let outcome = if shared.state.load(Ordering::SeqCst) != RUNNING {
        bump(&c.after_shutdown);
        Recorded::Dropped(DropReason::Shutdown)
    } else if !sampled {
        bump(&c.not_sampled);
        Recorded::Dropped(DropReason::NotSampled)
    } else if !valid {
        bump(&c.invalid_ids);
        Recorded::Dropped(DropReason::InvalidIds)
    } else {
        bump(&c.queue_full);
        Recorded::Dropped(DropReason::QueueFull)
    };
    c.resolved.store(n, Ordering::Release);
    outcome
}

pub(super) fn record_into(
    shared: &Shared,
    lane: &mut LocalLane,
    span: &mut SpanData,
    apply_limits: bool,
) -> Recorded {
    let c = &*lane.counters;
    // Store `accepted`, the light fence, then load `state`: see
    // `Shared::state`. Relaxed: only this thread writes `accepted`, and
    // the fence pair orders the two.
    let n = c.accepted.load(Ordering::Relaxed) + 1;
    c.accepted.store(n, Ordering::Relaxed);
    asymmetric::light();
    let outcome = if shared.state.load(Ordering::Relaxed) != RUNNING {
        bump(&c.after_shutdown);
        Recorded::Dropped(DropReason::Shutdown)
    } else if !span.context.trace_flags.is_sampled() {
        bump(&c.not_sampled);
        Recorded::Dropped(DropReason::NotSampled)
    } else if !has_valid_ids(span) {
        // Invalid in OTLP (a collector may refuse the whole request).
        bump(&c.invalid_ids);
        Recorded::Dropped(DropReason::InvalidIds)
    } else if shared
        .config
        .shedding_low_priority(span, &lane.producer, || {
            // Relaxed: a count for a threshold (see `Shared::adopted_len`).
            shared.adopted_len.load(Ordering::Relaxed)
        })
    {
        bump(&c.low_priority);
        Recorded::Dropped(DropReason::LowPriority)
    } else {
        if apply_limits {
            shared.config.limits.apply(span);
        }
        let in_place = matches!(
            shared.config.shedding,
            Shedding::DropNewest | Shedding::Priority { .. }
        );
        if in_place && !lane.reentrant {
            push_in_place(shared, &lane.producer, c, &mut lane.scratch, span)
        } else {
            let encoding = shared.config.encoding;
            match EncodedSpan::encode(span, encoding, &mut lane.scratch, &shared.large) {
                Ok(encoded) if lane.reentrant => defer(shared, lane, encoded),
                Ok(encoded) => push(shared, lane, encoded),
                Err(over) => over_budget(shared, lane, span, over),
            }
        }
    };
    // Release: whoever sees `resolved` with Acquire sees the counter this
    // call bumped and the span it pushed. (Through `lane`, not `c`: the
    // over-budget path borrows the lane mutably.)
    lane.counters.resolved.store(n, Ordering::Release);
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
pub(super) fn defer(shared: &Shared, lane: &LocalLane, span: EncodedSpan) -> Recorded {
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

/// Drop-newest and priority shedding (the common case): the span is
/// encoded straight into its queue slot (no 512-byte copies of an
/// `EncodedSpan` on the way), and not encoded at all when there is no room.
#[inline(always)]
fn push_in_place(
    shared: &Shared,
    producer: &Producer<EncodedSpan>,
    counters: &ThreadCounters,
    scratch: &mut Vec<u8>,
    span: &SpanData,
) -> Recorded {
    let encoding = shared.config.encoding;
    let budget = &shared.large;
    let result = match producer {
        // SAFETY: `encode_into` initializes the slot it is given when it
        // returns `Ok`; on `Err` (a span too large for the slot, and the
        // budget for such spans spent) nothing is published, and the slot
        // (with the chunk, if the push had just taken one) stays free.
        Producer::Pooled(p) => unsafe {
            match p.try_push_in_place_or(|slot| {
                EncodedSpan::encode_into(slot, span, encoding, scratch, budget)
            }) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(OverBudget { .. })) => Err(PushError::Full(())),
                Err(e) => Err(e),
            }
        },
        Producer::Lanes(p) => match EncodedSpan::encode(span, encoding, scratch, budget) {
            Ok(encoded) => unit(p.try_push(encoded)),
            Err(OverBudget { .. }) => Err(PushError::Full(())),
        },
    };
    settle(shared, producer, counters, result)
}

/// A span too large for a slot found the [`LargeBudget`] spent (`over`):
/// counted as queue-full, as a span that finds no slot is; it is the same
/// bound, in bytes. Under [`Shedding::Block`] the record first waits for
/// the budget (spans exported, or dropped, give theirs back), within the
/// same timeout as for a slot, and then for a slot with what is left of
/// it; a span larger than the whole budget, or a record from inside the
/// pipeline's transport, does not wait.
#[cold]
#[inline(never)]
fn over_budget(
    shared: &Shared,
    lane: &mut LocalLane,
    span: &SpanData,
    over: OverBudget,
) -> Recorded {
    let full = |lane: &LocalLane| {
        bump(&lane.counters.queue_full);
        shared.wake_worker();
        Recorded::Dropped(DropReason::QueueFull)
    };
    let timeout = match shared.config.shedding {
        Shedding::Block { timeout } => timeout,
        _ => return full(lane),
    };
    let budget = &shared.large;
    if over.need > budget.total() || lane.reentrant || on_pipeline_thread(shared) {
        return full(lane);
    }
    let mut need = over.need;
    let deadline = lane
        .wait_until
        .or_else(|| Instant::now().checked_add(timeout));
    loop {
        shared.wake_worker();
        while budget.left() < need {
            if shared.state.load(Ordering::SeqCst) != RUNNING {
                // As a wait for a slot that shutdown interrupts.
                bump(&lane.counters.after_shutdown);
                return Recorded::Dropped(DropReason::Shutdown);
            }
            let left = deadline.map_or(Duration::from_millis(10), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return full(lane);
            }
            std::thread::sleep(left.min(Duration::from_millis(1)));
        }
        let encoding = shared.config.encoding;
        match EncodedSpan::encode(span, encoding, &mut lane.scratch, budget) {
            Ok(encoded) => {
                // The wait for a slot ends at the same deadline.
                let wait_until = lane.wait_until;
                lane.wait_until = deadline;
                let recorded = push(shared, lane, encoded);
                lane.wait_until = wait_until;
                return recorded;
            }
            // Another record took the budget first.
            Err(again) => need = again.need,
        }
    }
}

/// A push's result without the value it hands back.
fn unit<T>(r: Result<(), PushError<T>>) -> Result<(), PushError<()>> {
    r.map_err(|e| match e {
        PushError::Full(_) => PushError::Full(()),
        PushError::Closed(_) => PushError::Closed(()),
    })
}

/// Counts a push's outcome: pushed (and wakes the worker when a batch's
/// worth has gathered), dropped as queue-full (and wakes it), or after
/// shutdown.
#[inline(always)]
fn settle(
    shared: &Shared,
    producer: &Producer<EncodedSpan>,
    c: &ThreadCounters,
    result: Result<(), PushError<()>>,
) -> Recorded {
    match result {
        Ok(()) => {
            bump(&c.pushed);
            // A batch's worth has gathered in the shared pool: wake a napping
            // worker now, not when the queue is full and spans are already
            // being dropped (the worker then sleeps while there is little to
            // do, and is woken, as a sleeper, when there is: under CPU
            // contention a woken sleeper runs sooner than a thread that
            // polls). Checked at most once per chunk claimed (a field of this
            // lane's own).
            if producer
                .pool_used_at_claim()
                .is_some_and(|used| used >= shared.wake_at)
            {
                shared.wake_worker();
            }
            Recorded::Queued
        }
        Err(PushError::Full(())) => {
            bump(&c.queue_full);
            shared.wake_worker();
            Recorded::Dropped(DropReason::QueueFull)
        }
        Err(PushError::Closed(())) => {
            bump(&c.after_shutdown);
            Recorded::Dropped(DropReason::Shutdown)
        }
    }
}

#[inline(always)]
pub(super) fn push(shared: &Shared, lane: &LocalLane, span: EncodedSpan) -> Recorded {
    let c = &*lane.counters;
    let p = &lane.producer;
    let closed = || settle(shared, p, c, Err(PushError::Closed(())));
    let full = || settle(shared, p, c, Err(PushError::Full(())));
    let pushed = || settle(shared, p, c, Ok(()));
    match shared.config.shedding {
        // (`push_in_place` is their usual path.) Low-priority spans were
        // already shed in `record_into`.
        Shedding::DropNewest | Shedding::Priority { .. } => {
            settle(shared, p, c, unit(p.try_push(span)))
        }
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
            Err(PushError::Full(_)) => full(),
            Err(PushError::Closed(_)) => closed(),
        },
        Shedding::Block { timeout } => {
            let mut span = match p.try_push(span) {
                Ok(()) => return pushed(),
                Err(PushError::Closed(_)) => return closed(),
                Err(PushError::Full(back)) => back,
            };
            if on_pipeline_thread(shared) {
                // A record from inside the transport: waiting for room
                // would wait for this very thread (or the worker waiting
                // for it). Never block here.
                return full();
            }
            // Wait in slices so that a shutdown is noticed.
            // The fallback lane's `wait_until` was set, from the same
            // timeout, before this push began: never later than our own.
            let deadline = lane
                .wait_until
                .or_else(|| Instant::now().checked_add(timeout));
            loop {
                let left = deadline.map_or(Duration::from_millis(10), |d| {
                    d.saturating_duration_since(Instant::now())
                });
                match p.push_timeout(span, left.min(Duration::from_millis(10))) {
                    Ok(()) => return pushed(),
                    Err(PushTimeoutError::Closed(_)) => return closed(),
                    Err(PushTimeoutError::Timeout(back)) => {
                        if shared.state.load(Ordering::SeqCst) != RUNNING {
                            // Interrupted by shutdown: the span was not
                            // dropped for want of room but because the
                            // pipeline is closing.
                            return closed();
                        }
                        if left.is_zero() {
                            return full();
                        }
                        span = back;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod chunk_tests {
    /// The documented per-thread chunk is the pool's chunk for a span slot.
    #[test]
    fn thread_chunk_slots_is_the_pools_chunk_of_span_slots() {
        assert_eq!(
            otlp_queue::pooled::chunk_len::<super::EncodedSpan>(),
            super::super::THREAD_CHUNK_SLOTS
        );
    }
}
