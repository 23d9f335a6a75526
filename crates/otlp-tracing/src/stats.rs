//! The layer's own counts: spans started, recorded, not sampled, still
//! open, and events that had no span to go to.
//!
//! Each recording thread counts into its own set of counters (written by
//! that thread only, with plain loads and stores: no read-modify-write on a
//! shared cache line); a snapshot sums them. A thread's counters are folded
//! into the layer's totals when the thread exits, so the table holds one
//! entry per live thread, not per thread ever seen.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

/// What the layer did with the spans and events it saw, from
/// [`LayerCounters::snapshot`].
///
/// `started == recorded + not_sampled + open`: every span the layer
/// tracked is either handed to the pipeline sampled (which then accounts
/// for it in [`ExportStats`](otlp_exporter::ExportStats): exported,
/// queued, or dropped under a reason, `after_shutdown` included), handed to
/// it unsampled (counted there as `not_sampled`, or as `after_shutdown`
/// once the pipeline has shut down: its `not_sampled` can be lower than
/// this one's), or still open (never handed over).
///
/// ```
/// use otlp_exporter::{InMemory, Pipeline};
/// use otlp_tracing::OtlpLayer;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
/// let layer = OtlpLayer::new(&pipeline);
/// let counters = layer.counters();
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     let _open = tracing::info_span!("never closed here");
///     tracing::info_span!("closed").in_scope(|| {});
///     tracing::info!("no span around me");
///     let stats = counters.snapshot();
///     assert_eq!((stats.started, stats.recorded, stats.open()), (2, 1, 1));
///     assert_eq!(stats.events_outside_spans, 1);
/// });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Spans the layer began to track (sampled or not).
    pub started: u64,
    /// Sampled spans handed to the pipeline when they closed.
    pub recorded: u64,
    /// Spans that closed unsampled: handed to the pipeline only to be
    /// counted there as `not_sampled` ([`Dropped`](otlp_exporter::Dropped);
    /// no encoding, no queue), or as `after_shutdown` when they closed
    /// after it shut down.
    pub not_sampled: u64,
    /// Events emitted outside any span: dropped (a span event needs a
    /// span), counted here.
    pub events_outside_spans: u64,
}

impl LayerStats {
    /// Spans started and not closed yet (or never closed: a span whose
    /// last handle is never dropped is never recorded, and stays counted
    /// here after the pipeline shuts down).
    ///
    /// ```
    /// use otlp_tracing::LayerStats;
    /// let stats = LayerStats { started: 5, recorded: 3, not_sampled: 1, events_outside_spans: 0 };
    /// assert_eq!(stats.open(), 1);
    /// ```
    pub fn open(&self) -> u64 {
        self.started
            .saturating_sub(self.recorded)
            .saturating_sub(self.not_sampled)
    }

    fn add(&mut self, other: &LayerStats) {
        self.started = self.started.saturating_add(other.started);
        self.recorded = self.recorded.saturating_add(other.recorded);
        self.not_sampled = self.not_sampled.saturating_add(other.not_sampled);
        self.events_outside_spans = self
            .events_outside_spans
            .saturating_add(other.events_outside_spans);
    }
}

/// One thread's counters for one layer. Written only by its thread.
#[derive(Default)]
struct ThreadCounters {
    started: AtomicU64,
    recorded: AtomicU64,
    not_sampled: AtomicU64,
    events_outside_spans: AtomicU64,
}

impl ThreadCounters {
    fn load(&self) -> LayerStats {
        LayerStats {
            started: self.started.load(Ordering::Relaxed),
            recorded: self.recorded.load(Ordering::Relaxed),
            not_sampled: self.not_sampled.load(Ordering::Relaxed),
            events_outside_spans: self.events_outside_spans.load(Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Count {
    Started,
    Recorded,
    NotSampled,
    EventOutsideSpan,
}

impl Count {
    fn of(self, c: &ThreadCounters) -> &AtomicU64 {
        match self {
            Count::Started => &c.started,
            Count::Recorded => &c.recorded,
            Count::NotSampled => &c.not_sampled,
            Count::EventOutsideSpan => &c.events_outside_spans,
        }
    }

    fn add_to(self, s: &mut LayerStats) {
        let f = match self {
            Count::Started => &mut s.started,
            Count::Recorded => &mut s.recorded,
            Count::NotSampled => &mut s.not_sampled,
            Count::EventOutsideSpan => &mut s.events_outside_spans,
        };
        *f = f.saturating_add(1);
    }
}

#[derive(Default)]
struct Table {
    live: Vec<Arc<ThreadCounters>>,
    /// Counts of exited threads (and of counts made where the thread's
    /// own counters were unreachable: in a thread-local destructor).
    retired: LayerStats,
}

/// The counters of one layer: a handle to read them, from
/// [`OtlpLayer::counters`](crate::OtlpLayer::counters). Cheap to clone.
#[derive(Clone)]
pub struct LayerCounters {
    inner: Arc<Shared>,
}

struct Shared {
    id: usize,
    table: Mutex<Table>,
}

fn lock(m: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // The table holds plain counts: a panic elsewhere cannot leave it
    // inconsistent, so a poisoned lock is used as it is.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds one to a counter of this thread's. Only this thread writes it: a
/// load and a store, no read-modify-write.
#[inline]
fn bump(c: &AtomicU64) {
    c.store(
        c.load(Ordering::Relaxed).saturating_add(1),
        Ordering::Relaxed,
    );
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// This thread's counters, one entry per layer it has counted for.
struct Local {
    entries: Vec<(usize, Weak<Shared>, Arc<ThreadCounters>)>,
}

impl Drop for Local {
    fn drop(&mut self) {
        // The entries' counters are about to go: forget the one `LAST`
        // points to (a later count on this thread finds `LOCAL` gone and
        // counts in the shared totals).
        let _ = LAST.try_with(|last| last.set((0, std::ptr::null())));
        for (_, shared, counters) in self.entries.drain(..) {
            if let Some(shared) = shared.upgrade() {
                let mut table = lock(&shared.table);
                table.live.retain(|c| !Arc::ptr_eq(c, &counters));
                let counts = counters.load();
                table.retired.add(&counts);
            }
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = const { RefCell::new(Local { entries: Vec::new() }) };

    /// The layer this thread counted for last (its id; ids start at 1) and
    /// its counters in `LOCAL`: a count for the same layer skips the
    /// `RefCell` and the search. The pointer is valid while `LOCAL` holds
    /// that entry: entries leave `LOCAL` only in `count`'s search path,
    /// which then sets `LAST` again, and in `Local`'s drop, which clears it
    /// first.
    static LAST: Cell<(usize, *const ThreadCounters)> =
        const { Cell::new((0, std::ptr::null())) };
}

impl LayerCounters {
    pub(crate) fn new() -> Self {
        LayerCounters {
            inner: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                table: Mutex::new(Table::default()),
            }),
        }
    }

    /// Counts one of `what` on this thread's counters (a thread-local
    /// lookup and a store; the first count on a thread registers it).
    pub(crate) fn count(&self, what: Count) {
        let id = self.inner.id;
        if let Ok((last, counters)) = LAST.try_with(Cell::get)
            && last == id
        {
            // SAFETY: `LAST` names an entry `LOCAL` still holds (see
            // `LAST`), whose `Arc` keeps the counters alive; only shared
            // references to them are ever made.
            bump(what.of(unsafe { &*counters }));
            return;
        }
        let counted = LOCAL.try_with(|local| {
            let Ok(mut local) = local.try_borrow_mut() else {
                return false;
            };
            let counters = match local.entries.iter().position(|e| e.0 == id) {
                Some(i) => &local.entries[i].2,
                None => {
                    // Forget layers that are gone (a thread that outlives
                    // many layers keeps only the live ones); `LAST` may
                    // name one of them until it is set below.
                    let _ = LAST.try_with(|last| last.set((0, std::ptr::null())));
                    local.entries.retain(|e| e.1.strong_count() > 0);
                    let counters = Arc::new(ThreadCounters::default());
                    lock(&self.inner.table).live.push(counters.clone());
                    local
                        .entries
                        .push((id, Arc::downgrade(&self.inner), counters));
                    // Pushed just above.
                    match local.entries.last() {
                        Some(e) => &e.2,
                        None => return false,
                    }
                }
            };
            let _ = LAST.try_with(|last| last.set((id, Arc::as_ptr(counters))));
            bump(what.of(counters));
            true
        });
        if counted != Ok(true) {
            // Thread-local storage is being torn down (or re-entered):
            // count in the shared totals instead.
            what.add_to(&mut lock(&self.inner.table).retired);
        }
    }

    /// Sums every thread's counts. Each figure is a recent value while
    /// threads record, and exact once they are quiet.
    ///
    /// ```
    /// use otlp_exporter::{InMemory, Pipeline};
    /// use otlp_tracing::OtlpLayer;
    ///
    /// let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let layer = OtlpLayer::new(&pipeline);
    /// assert_eq!(layer.counters().snapshot().started, 0);
    /// ```
    pub fn snapshot(&self) -> LayerStats {
        let table = lock(&self.inner.table);
        let mut total = table.retired;
        for c in &table.live {
            total.add(&c.load());
        }
        total
    }
}

impl std::fmt::Debug for LayerCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LayerCounters")
            .field(&self.snapshot())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts for layers that alternate, go away and come anew on one
    /// thread, and on a thread that exits, each land on their own layer's
    /// counters (the one-entry cache never counts for the wrong layer, nor
    /// through counters that are gone: `cargo xtask asan` runs this too).
    #[test]
    fn counts_land_on_their_own_layer_however_layers_alternate() {
        let (a, b) = (LayerCounters::new(), LayerCounters::new());
        for _ in 0..3 {
            a.count(Count::Started);
            b.count(Count::Started);
            b.count(Count::Recorded);
        }
        let gone = LayerCounters::new();
        gone.count(Count::Started);
        drop(gone);
        // A new layer's first count forgets the gone one's entry.
        let c = LayerCounters::new();
        c.count(Count::NotSampled);
        a.count(Count::EventOutsideSpan);
        std::thread::scope(|s| {
            s.spawn(|| {
                a.count(Count::Started);
                c.count(Count::Started);
                c.count(Count::Started);
            });
        });
        let started = |l: &LayerCounters| l.snapshot().started;
        assert_eq!((started(&a), started(&b), started(&c)), (4, 3, 2));
        assert_eq!(b.snapshot().recorded, 3);
        assert_eq!(c.snapshot().not_sampled, 1);
        assert_eq!(a.snapshot().events_outside_spans, 1);
        assert_eq!(a.snapshot().recorded + c.snapshot().recorded, 0);
    }
}
