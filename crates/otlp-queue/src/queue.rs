//! The handles: [`Producer`], [`Consumer`], and the shared registry of lanes.

use core::cell::Cell;
use core::fmt;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::{CapacityError, ClosedError, PushError, PushTimeoutError, TryPopError};
use crate::lane::{Evict, Lane, LaneTotals, bump, max_capacity_for};
use crate::loom::{self, Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};

/// The largest capacity a lane may have: positions are encoded as
/// `lap + index` with `lap` a power of two above the capacity, and at least
/// two laps must fit in a `usize`. For items of more than one byte the
/// limit is lower: the ring (the capacity rounded up to a power of two,
/// times the item size) must fit in `isize::MAX` bytes; [`try_bounded`]
/// says which limit applies in its error.
pub const MAX_CAPACITY: usize = (usize::MAX >> 2) + 1;

/// Creates a queue whose producers each get a lane of `capacity` slots.
///
/// Returns the first [`Producer`] and the only [`Consumer`]. Clone the
/// producer for every other thread that pushes: each clone owns a lane of its
/// own, so the queue holds at most `capacity` items per live producer (and
/// what dropped producers left, until the consumer takes it: see the crate
/// docs' *Capacity*).
///
/// # Panics
///
/// If `capacity` is 0, or a lane of `capacity` items of `T` cannot exist or
/// cannot be allocated (see [`try_bounded`], which returns the error
/// instead).
///
/// # Example
///
/// ```
/// let (tx, mut rx) = otlp_queue::bounded::<u32>(2);
/// tx.try_push(1).unwrap();
/// tx.try_push(2).unwrap();
/// assert!(tx.try_push(3).unwrap_err().is_full()); // the lane holds 2
/// assert_eq!(rx.pop(), Some(1));
/// ```
pub fn bounded<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    match try_bounded(capacity) {
        Ok(pair) => pair,
        Err(e) => panic!("otlp_queue::bounded({capacity}): {e}"),
    }
}

/// Like [`bounded`], but returns an error instead of panicking or aborting:
/// [`CapacityError::Zero`] for 0, [`CapacityError::TooLarge`] when a lane
/// of `capacity` items of `T` cannot exist (above [`MAX_CAPACITY`], or its
/// ring, rounded up to a power of two, would exceed `isize::MAX` bytes),
/// and [`CapacityError::OutOfMemory`] when the allocator refuses the first
/// lane (it is allocated fallibly).
///
/// ```
/// use otlp_queue::CapacityError;
/// assert_eq!(otlp_queue::try_bounded::<u8>(0).unwrap_err(), CapacityError::Zero);
/// assert!(otlp_queue::try_bounded::<u8>(1).is_ok());
/// // Far more than any machine has: an error, not an abort.
/// assert!(otlp_queue::try_bounded::<u64>(otlp_queue::MAX_CAPACITY).is_err());
/// ```
pub fn try_bounded<T>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    if capacity == 0 {
        return Err(CapacityError::Zero);
    }
    let max = max_capacity_for(core::mem::size_of::<T>());
    if capacity > max {
        return Err(CapacityError::TooLarge {
            requested: capacity,
            max,
        });
    }
    let inner = Arc::new(Inner {
        consumer_alive: CachePadded::new(AtomicBool::new(true)),
        producers: AtomicUsize::new(0),
        version: AtomicUsize::new(0),
        popped: AtomicU64::new(0),
        registry: Mutex::new(Registry {
            lanes: Vec::new(),
            retired: LaneTotals::default(),
        }),
        capacity,
    });
    let producer = Producer::register(&inner)?;
    let consumer = Consumer {
        inner,
        lanes: Vec::new(),
        seen_version: usize::MAX,
        cursor: 0,
        popped: 0,
    };
    Ok((producer, consumer))
}

/// State shared by every handle of one queue.
struct Inner<T> {
    /// False once the consumer is dropped. Read on every push by every
    /// producer and written once, so its line stays shared in every cache.
    consumer_alive: CachePadded<AtomicBool>,
    /// Live producer handles.
    producers: AtomicUsize,
    /// Bumped (under the registry lock) whenever a lane is added or retired,
    /// so the consumer knows when to refresh its private list of lanes.
    version: AtomicUsize,
    /// Items the consumer has taken, published (one store per call) so that
    /// any handle can read the counters. Only the consumer writes it; it
    /// shares a line with `version`, which the consumer reads on every call
    /// and producers never touch.
    popped: AtomicU64,
    registry: Mutex<Registry<T>>,
    capacity: usize,
}

impl<T> Inner<T> {
    fn counters(&self) -> QueueCounters {
        let registry = loom::lock(&self.registry);
        let mut totals = registry.retired;
        for lane in &registry.lanes {
            totals.add(lane.totals());
        }
        QueueCounters {
            pushed: totals.pushed,
            // Relaxed: statistics; see `QueueCounters`.
            popped: self.popped.load(Ordering::Relaxed),
            rejected_full: totals.rejected_full,
            evicted: totals.evicted,
            taken_back: totals.taken_back,
        }
    }
}

struct Registry<T> {
    lanes: Vec<Arc<Lane<T>>>,
    /// Counters of lanes whose producer is gone and which were drained.
    retired: LaneTotals,
}

/// A snapshot of a queue's counters, from [`Consumer::counters`].
///
/// Exact when no producer is pushing; while they are, each figure is a
/// recent value (the counters are not read atomically together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Items accepted by a push (plain, timed or forced).
    pub pushed: u64,
    /// Items taken by the consumer.
    pub popped: u64,
    /// Pushes handed back because the lane was full (`Full` from
    /// `try_push`, `Timeout` from `push_timeout`).
    pub rejected_full: u64,
    /// Items taken out by [`Producer::force_push`] to make room.
    pub evicted: u64,
    /// Items taken back by their producer with [`Producer::take_back`].
    pub taken_back: u64,
}

/// The sending side of a queue. Cheap to move to another thread; clone it to
/// get another lane for another thread.
///
/// `Producer` is `Send` but not `Sync`: a handle is the single writer of its
/// lane, which is what lets a push avoid every read-modify-write. Share work
/// between threads by cloning, not by reference.
///
/// Dropping the last producer closes the queue: the consumer drains what is
/// left and then sees [`TryPopError::Closed`].
pub struct Producer<T> {
    lane: Arc<Lane<T>>,
    inner: Arc<Inner<T>>,
    /// `released + capacity` for the last `released` read from the lane:
    /// while `tail` is below it there is room, without looking at the
    /// consumer's cache line.
    limit: Cell<u64>,
}

impl<T> Producer<T> {
    /// Adds a lane to the queue and returns the handle that owns it.
    fn register(inner: &Arc<Inner<T>>) -> Result<Self, CapacityError> {
        let lane = Arc::new(Lane::try_new(inner.capacity)?);
        {
            let mut registry = loom::lock(&inner.registry);
            registry.lanes.push(lane.clone());
            // Relaxed: the registry lock orders the count for anyone who looks
            // at the lanes; the consumer's closed check reads it with Acquire
            // and every decrement is Release (see `Drop`).
            inner.producers.fetch_add(1, Ordering::Relaxed);
            // Release: a consumer that sees the new version with Acquire then
            // takes the lock and finds the lane.
            inner.version.fetch_add(1, Ordering::Release);
        }
        Ok(Producer {
            lane,
            inner: inner.clone(),
            limit: Cell::new(inner.capacity as u64),
        })
    }

    /// Like [`Clone::clone`] (a new producer with a lane of its own), but
    /// returns an error instead of aborting when the allocator cannot
    /// provide the lane.
    ///
    /// ```
    /// let (tx, _rx) = otlp_queue::bounded::<u32>(4);
    /// let tx2 = tx.try_clone().expect("a lane of 4 slots");
    /// tx2.try_push(1).unwrap();
    /// ```
    pub fn try_clone(&self) -> Result<Self, CapacityError> {
        Producer::register(&self.inner)
    }

    /// Takes back every item still in this producer's lane (pushed and not
    /// yet taken by the consumer), oldest first, handing each to `sink`;
    /// returns how many.
    ///
    /// For a producer that is about to go away and wants its backlog handled
    /// elsewhere (a thread that exits hands its items over, so that its lane
    /// can be freed at once). Items are still taken exactly once: each one
    /// is either popped by the consumer, evicted, or taken back here. If the
    /// consumer is copying a run out of this lane right now, this waits
    /// (spinning, then yielding) until it is done, as
    /// [`force_push`](Self::force_push) does; if the consumer never finishes
    /// (it panicked in the middle of a batch), this gives up after a while
    /// and takes no more back. Counted in [`QueueCounters::taken_back`].
    ///
    /// The items there when the call starts are the ones taken back (they
    /// are moved out in runs of up to 16 before `sink` sees them): `sink`
    /// may push to this lane again, and what it pushes stays for the
    /// consumer. If `sink` panics, the rest of the run it was handed is
    /// dropped (each item once), the items not yet moved out stay in the
    /// lane, and the panic goes on to the caller.
    ///
    /// ```
    /// let (tx, mut rx) = otlp_queue::bounded(4);
    /// for i in 0..3 { tx.try_push(i).unwrap(); }
    /// assert_eq!(rx.pop(), Some(0));
    /// let mut back = Vec::new();
    /// assert_eq!(tx.take_back(|v| back.push(v)), 2);
    /// assert_eq!(back, [1, 2]);
    /// assert_eq!(rx.pop(), None);
    /// ```
    pub fn take_back(&self, sink: impl FnMut(T)) -> usize {
        // SAFETY: this handle is the lane's only producer (see `push_once`).
        unsafe { self.lane.take_back(sink) }
    }

    /// Pushes `value` if this producer's lane has room.
    ///
    /// Never blocks, takes no lock, makes no system call and allocates
    /// nothing: a few loads and stores on this lane's own cache lines. The
    /// value is handed back in the error if the lane is full or the consumer
    /// is gone.
    ///
    /// ```
    /// use otlp_queue::PushError;
    /// let (tx, rx) = otlp_queue::bounded(1);
    /// assert!(tx.try_push("a").is_ok());
    /// assert_eq!(tx.try_push("b"), Err(PushError::Full("b")));
    /// drop(rx);
    /// assert_eq!(tx.try_push("c"), Err(PushError::Closed("c")));
    /// ```
    #[inline]
    pub fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        match self.push_once(value) {
            Ok(()) => Ok(()),
            Err(PushError::Full(value)) => {
                bump(&self.lane.producer.rejected_full);
                Err(PushError::Full(value))
            }
            Err(closed) => Err(closed),
        }
    }

    /// `try_push` without counting a rejection.
    #[inline(always)]
    fn push_once(&self, value: T) -> Result<(), PushError<T>> {
        // Relaxed: a stale `true` only lets this push land just after the
        // consumer went away, which is indistinguishable from it landing just
        // before; such an item is dropped with the lane (see `Lane::drop`),
        // exactly as if the consumer's drop had drained it.
        if !self.inner.consumer_alive.load(Ordering::Relaxed) {
            return Err(PushError::Closed(value));
        }
        let tail = self.lane.own_tail();
        if tail >= self.limit.get() && !self.has_room(tail) {
            return Err(PushError::Full(value));
        }
        // SAFETY: this handle is the lane's only producer (lanes are never
        // shared between handles and `Producer` is not `Sync`), `tail` and
        // `index` are its position, and there is room (checked above).
        unsafe { self.lane.write(tail, value) };
        Ok(())
    }

    /// Looks at the consumer's progress again: is there room for `tail`?
    #[cold]
    fn has_room(&self, tail: u64) -> bool {
        self.limit
            .set(self.lane.released() + self.inner.capacity as u64);
        tail < self.limit.get()
    }

    /// Pushes `value`, waiting (spinning, then yielding, then sleeping in
    /// short steps) while the lane is full, for at most `timeout`.
    ///
    /// For users who prefer waiting to shedding. When the lane has room this
    /// is exactly [`try_push`](Self::try_push): the clock is read only once
    /// the lane is found full.
    ///
    /// ```
    /// use std::time::Duration;
    /// use otlp_queue::PushTimeoutError;
    /// let (tx, _rx) = otlp_queue::bounded(1);
    /// tx.push_timeout(1, Duration::from_millis(10)).unwrap();
    /// // Nobody pops, so the second push times out and hands the value back.
    /// let err = tx.push_timeout(2, Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err, PushTimeoutError::Timeout(2));
    /// ```
    pub fn push_timeout(&self, mut value: T, timeout: Duration) -> Result<(), PushTimeoutError<T>> {
        let mut deadline = None;
        let mut backoff = Backoff::default();
        loop {
            match self.push_once(value) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(v)) => return Err(PushTimeoutError::Closed(v)),
                Err(PushError::Full(v)) => value = v,
            }
            // `None` if `now + timeout` overflows: wait without a deadline.
            let deadline = *deadline.get_or_insert_with(|| Instant::now().checked_add(timeout));
            let now = Instant::now();
            match deadline {
                Some(deadline) if now >= deadline => {
                    bump(&self.lane.producer.rejected_full);
                    return Err(PushTimeoutError::Timeout(value));
                }
                Some(deadline) => backoff.wait(deadline - now),
                None => backoff.wait(Duration::MAX),
            }
        }
    }

    /// Pushes `value`, making room if the lane is full by taking out this
    /// lane's oldest item, which is handed back as `Ok(Some(oldest))`.
    ///
    /// This is the "drop oldest" shedding policy. The plain push pays nothing
    /// for it: only the consumer's claim of a batch is a compare-and-swap
    /// (one per batch), so that it can race with an eviction.
    ///
    /// If the consumer has claimed the oldest item but not yet finished
    /// reading it, this waits (spinning, then yielding) for the slot it is
    /// about to free: that wait is bounded by the consumer's progress through
    /// one batch. This and [`take_back`](Self::take_back) are the only places
    /// a producer ever waits for the consumer (dropping a producer never
    /// does: a lane whose last run the consumer is copying out is left to
    /// the consumer, which frees it at its next call).
    /// So it must not be called from inside that batch (from the sink of a
    /// `pop_each` on the same lane, a thread that is both): it would wait
    /// for itself.
    ///
    /// ```
    /// let (tx, mut rx) = otlp_queue::bounded(2);
    /// assert_eq!(tx.force_push(1).unwrap(), None);
    /// assert_eq!(tx.force_push(2).unwrap(), None);
    /// assert_eq!(tx.force_push(3).unwrap(), Some(1)); // 1 evicted
    /// assert_eq!(rx.pop(), Some(2));
    /// assert_eq!(rx.pop(), Some(3));
    /// ```
    pub fn force_push(&self, mut value: T) -> Result<Option<T>, ClosedError<T>> {
        let mut backoff = Backoff::default();
        loop {
            match self.push_once(value) {
                Ok(()) => return Ok(None),
                Err(PushError::Closed(v)) => return Err(ClosedError(v)),
                Err(PushError::Full(v)) => value = v,
            }
            let tail = self.lane.own_tail();
            let released = self.lane.released();
            if tail - released < self.inner.capacity as u64 {
                // The consumer made room since `push_once` looked.
                continue;
            }
            // SAFETY: as in `push_once`, and the lane is full for the
            // `released` just loaded.
            match unsafe { self.lane.evict_oldest(tail, released, value) } {
                Evict::Replaced(old) => {
                    bump(&self.lane.producer.evicted);
                    return Ok(Some(old));
                }
                Evict::Retry(v) => {
                    value = v;
                    backoff.snooze();
                }
            }
        }
    }

    /// The capacity of this producer's lane.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// A snapshot of the whole queue's counters, as
    /// [`Consumer::counters`] gives (takes the registry lock briefly; not
    /// for the hot path).
    pub fn counters(&self) -> QueueCounters {
        self.inner.counters()
    }

    /// Items in this producer's lane right now (pushed and not yet taken
    /// by the consumer). Reads the consumer's progress, a cache line the
    /// consumer writes: cheap, but not free, so not on every push.
    pub fn lane_len(&self) -> usize {
        // `tail - released <= capacity`, a `usize`.
        (self.lane.own_tail() - self.lane.released()) as usize
    }

    /// True once the consumer is gone: every push will fail with `Closed`.
    pub fn is_closed(&self) -> bool {
        // Relaxed: a hint; see `push_once`.
        !self.inner.consumer_alive.load(Ordering::Relaxed)
    }
}

impl<T> Clone for Producer<T> {
    /// Returns a producer with a new lane of its own (an allocation of
    /// `capacity` slots and a short lock on the lane registry: do it once per
    /// thread, not per push).
    ///
    /// # Panics
    ///
    /// If the lane cannot be allocated (the first lane of this capacity was,
    /// so only when memory has run out since); [`Producer::try_clone`]
    /// returns an error instead.
    fn clone(&self) -> Self {
        match Producer::register(&self.inner) {
            Ok(p) => p,
            Err(e) => panic!("otlp_queue::Producer::clone: {e}"),
        }
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.lane.close_producer();
        // SAFETY: this handle is the lane's only producer and it is going
        // away (it never pushes again).
        if unsafe { self.lane.free_ring() } {
            // Nothing is left in the lane and nothing can be pushed into it
            // again: its ring is freed, and it is retired from the registry
            // now rather than when the consumer next looks (the consumer's
            // private copy keeps only the small lane header until its next
            // call).
            self.retire();
        }
        // Release: a consumer whose Acquire load sees the count reach 0 also
        // sees every push of every producer (each decrement is Release and
        // read-modify-writes continue the release sequence).
        self.inner.producers.fetch_sub(1, Ordering::Release);
    }
}

impl<T> Producer<T> {
    /// Removes this (finished) lane from the registry, keeping its counters.
    #[cold]
    fn retire(&self) {
        let mut registry = loom::lock(&self.inner.registry);
        let Registry { lanes, retired } = &mut *registry;
        // The consumer may have retired it already (its `retire_finished`
        // also removes finished lanes); whoever removes it adds its totals,
        // under the lock, so they are counted once.
        if let Some(i) = lanes.iter().position(|l| Arc::ptr_eq(l, &self.lane)) {
            let lane = lanes.swap_remove(i);
            retired.add(lane.totals());
            // Release: as in `Producer::register`.
            self.inner.version.fetch_add(1, Ordering::Release);
        }
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.inner.capacity)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// The receiving side of a queue. There is exactly one.
///
/// It visits the producers' lanes in turn, starting one lane further on each
/// call so that no producer is starved; within a lane, items come out in the
/// order they were pushed.
///
/// Dropping the consumer closes the queue: later pushes fail with `Closed`,
/// and every item still inside is dropped exactly once.
pub struct Consumer<T> {
    inner: Arc<Inner<T>>,
    /// Private copy of the registry's lanes, refreshed when `version` moves.
    lanes: Vec<Arc<Lane<T>>>,
    seen_version: usize,
    cursor: usize,
    popped: u64,
}

impl<T> Consumer<T> {
    /// Takes one item, or `None` if nothing is ready (use
    /// [`try_pop`](Self::try_pop) to tell "empty" from "closed").
    ///
    /// ```
    /// let (tx, mut rx) = otlp_queue::bounded(4);
    /// assert_eq!(rx.pop(), None);
    /// tx.try_push(7).unwrap();
    /// assert_eq!(rx.pop(), Some(7));
    /// ```
    pub fn pop(&mut self) -> Option<T> {
        let mut out = None;
        self.drain_with(1, |lane, max, taken| {
            lane.pop_counted(max, taken, |v| out = Some(v))
        });
        out
    }

    /// Moves up to `max` items into `out` and returns how many. Each lane
    /// visited costs one synchronisation for its whole run of items, so this
    /// is the fast way to consume.
    ///
    /// ```
    /// let (tx, mut rx) = otlp_queue::bounded(8);
    /// for i in 0..5 { tx.try_push(i).unwrap(); }
    /// let mut out = Vec::new();
    /// assert_eq!(rx.pop_batch(&mut out, 3), 3);
    /// assert_eq!(rx.pop_batch(&mut out, 10), 2);
    /// assert_eq!(out, [0, 1, 2, 3, 4]);
    /// ```
    pub fn pop_batch(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        self.drain_with(max, |lane, max, taken| {
            // No user code runs after the claim: counted on return.
            let n = lane.pop_into(out, max);
            taken.set(taken.get() + n);
            n
        })
    }

    /// Takes up to `max` items, as [`pop_batch`](Self::pop_batch) does,
    /// handing each to `sink` instead of collecting them (a consumer that
    /// keeps only part of a large item copies no more than that part).
    ///
    /// If `sink` panics, the items of the batch after the one it was given
    /// are dropped (each once) and the queue stays usable: nothing is left
    /// neither delivered nor dropped. Every item the call took out of a lane
    /// (handed to `sink` or dropped) counts as popped
    /// ([`counters`](Self::counters), [`len`](Self::len)).
    ///
    /// ```
    /// let (tx, mut rx) = otlp_queue::bounded::<u32>(8);
    /// for i in 0..5 {
    ///     tx.try_push(i).unwrap();
    /// }
    /// let mut sum = 0;
    /// assert_eq!(rx.pop_each(10, |v| sum += v), 5);
    /// assert_eq!(sum, 10);
    /// ```
    pub fn pop_each(&mut self, max: usize, mut sink: impl FnMut(T)) -> usize {
        self.drain_with(max, |lane, max, taken| {
            lane.pop_counted(max, taken, &mut sink)
        })
    }

    /// Takes one item, or says why there is none.
    ///
    /// ```
    /// use otlp_queue::TryPopError;
    /// let (tx, mut rx) = otlp_queue::bounded(4);
    /// tx.try_push(1).unwrap();
    /// assert_eq!(rx.try_pop(), Ok(1));
    /// assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    /// drop(tx);
    /// assert_eq!(rx.try_pop(), Err(TryPopError::Closed));
    /// ```
    pub fn try_pop(&mut self) -> Result<T, TryPopError> {
        if let Some(v) = self.pop() {
            return Ok(v);
        }
        if self.producers_gone() {
            // Every push happened before the Acquire in `producers_gone`:
            // look once more, then the queue is closed for good.
            return self.pop().ok_or(TryPopError::Closed);
        }
        Err(TryPopError::Empty)
    }

    /// True when every producer is gone and every item has been taken.
    pub fn is_closed(&mut self) -> bool {
        self.producers_gone() && {
            self.refresh();
            self.lanes.iter().all(|lane| lane.is_empty())
        }
    }

    /// Items pushed and not yet taken (exact when producers are quiet).
    pub fn len(&self) -> usize {
        let c = self.counters();
        let out = c
            .popped
            .saturating_add(c.evicted)
            .saturating_add(c.taken_back);
        usize::try_from(c.pushed.saturating_sub(out)).unwrap_or(usize::MAX)
    }

    /// True if [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity of each producer's lane.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Number of live producer handles.
    pub fn producer_count(&self) -> usize {
        // Relaxed: informational.
        self.inner.producers.load(Ordering::Relaxed)
    }

    /// A snapshot of the queue's counters (takes the registry lock briefly;
    /// not for the hot path).
    pub fn counters(&self) -> QueueCounters {
        self.inner.counters()
    }

    /// Marks what is in the queue now: [`passed`](Self::passed) later says
    /// whether every item that was in it at this moment has since been taken
    /// (popped, evicted or taken back), however many were pushed after.
    ///
    /// A flush uses it to cover what was queued when it began instead of
    /// chasing producers that keep pushing. Allocates (a position per
    /// lane); not for the hot path.
    ///
    /// ```
    /// let (tx, mut rx) = otlp_queue::bounded(8);
    /// tx.try_push(1).unwrap();
    /// let mark = rx.mark();
    /// tx.try_push(2).unwrap(); // after the mark
    /// assert!(!rx.passed(&mark));
    /// assert_eq!(rx.pop(), Some(1));
    /// assert!(rx.passed(&mark)); // 2 is still queued, but it came later
    /// ```
    pub fn mark(&mut self) -> Mark<T> {
        self.refresh();
        Mark {
            lanes: self
                .lanes
                .iter()
                .map(|lane| (lane.clone(), lane.published_tail()))
                .collect(),
        }
    }

    /// True once every item that was in the queue when `mark` was taken is
    /// out of it (popped, evicted or taken back by its producer).
    pub fn passed(&self, mark: &Mark<T>) -> bool {
        mark.lanes.iter().all(|(lane, tail)| lane.head() >= *tail)
    }

    fn producers_gone(&self) -> bool {
        // Acquire: pairs with the Release decrement in `Producer::drop`.
        self.inner.producers.load(Ordering::Acquire) == 0
    }

    /// Picks up lanes added or retired since the last look.
    #[inline]
    fn refresh(&mut self) {
        // Acquire: pairs with the Release bump in `Producer::register`.
        let version = self.inner.version.load(Ordering::Acquire);
        if version != self.seen_version {
            let registry = loom::lock(&self.inner.registry);
            self.lanes.clone_from(&registry.lanes);
            // Read under the lock, so it matches the list just copied.
            self.seen_version = self.inner.version.load(Ordering::Relaxed);
        }
    }

    /// Takes up to `max` items from the lanes in turn; `take(lane, n,
    /// taken)` takes up to `n` items from one lane, adds them to `taken`
    /// as soon as they leave the lane (before any user code sees them),
    /// and says how many it took.
    ///
    /// `popped` is counted from `taken`, also when `take` unwinds (a
    /// panicking sink): the run it had claimed left the lane all the same
    /// (handed to the sink, or dropped), and `len`, `is_empty` and
    /// `counters` must not count it as still queued.
    #[inline]
    fn drain_with(
        &mut self,
        max: usize,
        mut take: impl FnMut(&Lane<T>, usize, &Cell<usize>) -> usize,
    ) -> usize {
        /// Publishes the items taken, on return and on unwind.
        struct Count<'a> {
            popped: &'a mut u64,
            shared: &'a AtomicU64,
            taken: &'a Cell<usize>,
        }
        impl Drop for Count<'_> {
            fn drop(&mut self) {
                let n = self.taken.get();
                if n > 0 {
                    *self.popped += n as u64;
                    // Relaxed: a statistic; single writer (see
                    // `Inner::popped`).
                    self.shared.store(*self.popped, Ordering::Relaxed);
                }
            }
        }
        self.refresh();
        let n_lanes = self.lanes.len();
        if n_lanes == 0 || max == 0 {
            return 0;
        }
        let start = if self.cursor < n_lanes {
            self.cursor
        } else {
            0
        };
        self.cursor = start + 1;
        let counted = Cell::new(0);
        let count = Count {
            popped: &mut self.popped,
            shared: &self.inner.popped,
            taken: &counted,
        };
        let mut taken = 0;
        let mut saw_empty = false;
        let (after, before) = self.lanes.split_at(start);
        for lane in before.iter().chain(after) {
            let got = take(lane, max - taken, &counted);
            saw_empty |= got == 0;
            taken += got;
            if taken == max {
                break;
            }
        }
        drop(count);
        if saw_empty {
            self.retire_finished();
        }
        taken
    }

    /// Drops lanes whose producer is gone and which are drained, so the
    /// consumer stops visiting them.
    #[cold]
    fn retire_finished(&mut self) {
        if !self.lanes.iter().any(|lane| lane.is_finished()) {
            return;
        }
        let mut registry = loom::lock(&self.inner.registry);
        let Registry { lanes, retired } = &mut *registry;
        lanes.retain(|lane| {
            // Only drained lanes whose producer is gone: they can never hold
            // an item again, so their counters are final.
            let finished = lane.is_finished();
            if finished {
                retired.add(lane.totals());
            }
            !finished
        });
        // Release: as in `Producer::register`.
        self.inner.version.fetch_add(1, Ordering::Release);
        self.lanes.clone_from(lanes);
        self.seen_version = self.inner.version.load(Ordering::Relaxed);
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // Relaxed: see `Producer::push_once` for why a push that misses this
        // store is still dropped exactly once.
        self.inner.consumer_alive.store(false, Ordering::Relaxed);
        // Drop what is inside now. Anything pushed after this drain is dropped
        // when its lane is freed (`Lane::drop`).
        self.refresh();
        // Every lane, although an item's `Drop` panics (found by review:
        // the lanes after it were left undrained), then the first panic.
        let mut panic = None;
        for lane in &self.lanes {
            crate::unwind::keep_first(&mut panic, lane.drop_items());
        }
        crate::unwind::resume(panic);
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.inner.capacity)
            .field("lanes", &self.lanes.len())
            .field("popped", &self.popped)
            .finish_non_exhaustive()
    }
}

/// A position in each lane, from [`Consumer::mark`]. Holds the lanes that
/// existed at the mark (so their memory lives as long as the mark).
pub struct Mark<T> {
    lanes: Vec<(Arc<Lane<T>>, u64)>,
}

impl<T> fmt::Debug for Mark<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mark")
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

/// Waiting with backoff: spin briefly, then yield, then sleep in steps that
/// grow to 1 ms (never past the time left).
#[derive(Default)]
struct Backoff {
    step: u32,
}

impl Backoff {
    const SPIN_STEPS: u32 = 6;
    const YIELD_STEPS: u32 = 10;

    /// Spin or yield, never sleep (for waits bounded by another thread's
    /// short progress).
    fn snooze(&mut self) {
        if self.step <= Self::SPIN_STEPS {
            for _ in 0..(1u32 << self.step) {
                loom::spin_hint();
            }
        } else {
            loom::yield_now();
        }
        self.step = self.step.saturating_add(1);
    }

    /// Spin, yield, then sleep up to `left`.
    fn wait(&mut self, left: Duration) {
        if self.step <= Self::YIELD_STEPS {
            self.snooze();
        } else {
            let exp = (self.step - Self::YIELD_STEPS).min(5);
            let nap = Duration::from_micros(32u64 << exp).min(left);
            loom::sleep(nap);
            self.step = self.step.saturating_add(1);
        }
    }
}
