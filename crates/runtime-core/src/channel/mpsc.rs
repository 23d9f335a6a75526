//! A bounded multi-producer single-consumer channel with two-phase sends.
//!
//! A [`Sender`] first reserves one of the channel's `capacity` slots
//! ([`Sender::reserve`], [`Sender::try_reserve`]), getting a [`Permit`], and
//! then commits a value into it ([`Permit::send`]), which cannot fail for
//! lack of space. See the [module docs](super) for why.
//!
//! # How it works
//!
//! * A word of atomic state (`sem`) counts the free slots and holds two
//!   flags: `CLOSED` and `WAITERS` (some sender is queued for a slot).
//!   Reserving a slot is one compare-and-swap on it, releasing one is one
//!   `fetch_add`.
//! * Committed values go into a lock-free bounded queue as big as the
//!   capacity; it can never overflow, since every value in it holds a slot
//!   until the receiver has popped it.
//! * The receiver's waker sits in a lock-free `WakerSlot`.
//! * Senders waiting for a slot queue up, in order, in a mutex-protected
//!   list. A released slot that finds `WAITERS` set is handed straight to
//!   the first of them under that lock, and new reservations do not jump
//!   the queue while it is non-empty. Only this slow path locks.
//!
//! ```
//! use runtime_core::channel::mpsc::{self, TryRecvError, TrySendError};
//!
//! let (tx, mut rx) = mpsc::channel::<u32>(2).unwrap();
//! let a = tx.try_reserve().unwrap();
//! let b = tx.try_reserve().unwrap();
//! assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
//! b.send(2).unwrap();
//! a.send(1).unwrap();                    // order of commit, not of reserve
//! assert_eq!(rx.try_recv(), Ok(2));
//! assert_eq!(rx.try_recv(), Ok(1));
//! assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
//! drop(tx);
//! assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
// `Arc` is always `std`'s, by the crate's rule (see `crate::loom`): loom
// checks the state machine inside it.
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use crossbeam_utils::CachePadded;

use crate::cancel::CancelReason;
use crate::context::Cx;
use crate::cx::CxCore;
use crate::loom::{AtomicU64, AtomicUsize, Mutex, Ordering, lock};
use crate::sync::WakerSlot;
use runtime_cap::CapSet;

/// `sem` flag: the receiver closed the channel (or was dropped).
const CLOSED: usize = 0b01;
/// `sem` flag: the waiter list is non-empty. Set and cleared only while
/// holding the `waiters` lock.
const WAITERS: usize = 0b10;
/// `sem` holds the free-slot count above its two flag bits.
const SLOT_SHIFT: u32 = 2;
/// One free slot, in `sem`'s units.
const ONE_SLOT: usize = 1 << SLOT_SHIFT;

/// `rx_state` flag: the receiver has been dropped.
const RX_GONE: usize = 0b1;
/// `rx_state` step taken by every commit (a counter above the flag).
const COMMIT: usize = 0b10;

/// The largest capacity a channel can have.
pub const MAX_CAPACITY: usize = usize::MAX >> (SLOT_SHIFT + 1);

fn free_slots(sem: usize) -> usize {
    sem >> SLOT_SHIFT
}

/// Creates a bounded channel with room for `capacity` values, in flight
/// (reserved by a [`Permit`]) or queued.
///
/// The queue is allocated up front. Fails if `capacity` is 0 or above
/// [`MAX_CAPACITY`].
///
/// ```
/// use runtime_core::channel::mpsc::{self, CapacityError};
/// assert_eq!(mpsc::channel::<()>(0).unwrap_err(), CapacityError::Zero);
/// let (tx, _rx) = mpsc::channel::<()>(16).unwrap();
/// assert_eq!(tx.capacity(), 16);
/// ```
pub fn channel<T>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), CapacityError> {
    if capacity == 0 {
        return Err(CapacityError::Zero);
    }
    if capacity > MAX_CAPACITY {
        return Err(CapacityError::TooLarge {
            requested: capacity,
            max: MAX_CAPACITY,
        });
    }
    let chan = Arc::new(Chan {
        sem: CachePadded::new(AtomicUsize::new(capacity << SLOT_SHIFT)),
        rx_waker: CachePadded::new(WakerSlot::new()),
        rx_state: AtomicUsize::new(0),
        queue: Queue::new(capacity),
        senders: AtomicUsize::new(1),
        capacity,
        undelivered: AtomicU64::new(0),
        waiters: Mutex::new(Waiters {
            queue: VecDeque::new(),
            handed: Vec::new(),
            next_id: 0,
        }),
    });
    let tx = Sender {
        chan: Arc::clone(&chan),
    };
    Ok((tx, Receiver { chan }))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The capacity given to [`channel`] is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// A channel needs room for at least one value.
    #[error("channel capacity must be at least 1")]
    Zero,
    /// The capacity is more than the channel can count.
    #[error("channel capacity {requested} exceeds the maximum of {max}")]
    TooLarge {
        /// The capacity asked for.
        requested: usize,
        /// [`MAX_CAPACITY`].
        max: usize,
    },
}

/// Why a waiting send or reservation failed. Carries the value that was
/// not sent (`()` for a reservation), so that nothing is lost.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError<T> {
    /// The receiver closed the channel or was dropped.
    #[error("channel closed")]
    Closed(T),
    /// The sending task's cancellation was requested while it waited for a
    /// slot.
    #[error("send cancelled: {0}")]
    Cancelled(CancelReason, T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(value) | SendError::Cancelled(_, value) => value,
        }
    }

    /// The cancel reason, if it was cancelled.
    pub fn cancel_reason(&self) -> Option<&CancelReason> {
        match self {
            SendError::Closed(_) => None,
            SendError::Cancelled(reason, _) => Some(reason),
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Cancelled(reason, _) => f
                .debug_tuple("Cancelled")
                .field(reason)
                .finish_non_exhaustive(),
        }
    }
}

/// Why [`Sender::try_reserve`] or [`Sender::try_send`] failed. Carries the
/// value that was not sent (`()` for a reservation).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    /// Every slot is taken (or other senders are already waiting for one).
    #[error("channel full")]
    Full(T),
    /// The receiver closed the channel or was dropped.
    #[error("channel closed")]
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value) | TrySendError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// [`Permit::send`] found the receiver dropped; here is the value back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("receiver dropped")]
pub struct Closed<T>(pub T);

impl<T> Closed<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Closed(..)")
    }
}

/// Why [`Receiver::recv`] returned no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// No value will ever come: the queue is empty, and every sender and
    /// permit is gone (or the channel was closed and every permit is gone).
    #[error("channel disconnected")]
    Disconnected,
    /// The receiving task's cancellation was requested. Nothing was taken
    /// from the channel.
    #[error("recv cancelled: {0}")]
    Cancelled(CancelReason),
}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No value now; one may come later.
    #[error("channel empty")]
    Empty,
    /// No value will ever come (see [`RecvError::Disconnected`]).
    #[error("channel disconnected")]
    Disconnected,
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

/// The value queue: crossbeam's lock-free `ArrayQueue`, or under loom (which
/// does not model crossbeam) a mutex around a `VecDeque`.
#[cfg(not(loom))]
struct Queue<T>(crossbeam_queue::ArrayQueue<T>);

#[cfg(not(loom))]
impl<T> Queue<T> {
    fn new(capacity: usize) -> Self {
        Queue(crossbeam_queue::ArrayQueue::new(capacity))
    }
    fn push(&self, value: T) -> Result<(), T> {
        self.0.push(value)
    }
    fn pop(&self) -> Option<T> {
        self.0.pop()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(loom)]
struct Queue<T> {
    capacity: usize,
    items: Mutex<VecDeque<T>>,
}

#[cfg(loom)]
impl<T> Queue<T> {
    fn new(capacity: usize) -> Self {
        Queue {
            capacity,
            items: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }
    fn push(&self, value: T) -> Result<(), T> {
        let mut items = lock(&self.items);
        if items.len() == self.capacity {
            return Err(value);
        }
        items.push_back(value);
        Ok(())
    }
    fn pop(&self) -> Option<T> {
        lock(&self.items).pop_front()
    }
    fn len(&self) -> usize {
        lock(&self.items).len()
    }
}

/// A sender queued for a slot.
struct Waiter {
    id: u64,
    waker: Waker,
}

/// The senders waiting for a slot (the slow path).
struct Waiters {
    /// In arrival order.
    queue: VecDeque<Waiter>,
    /// Ids of waiters that were removed from `queue` and handed a slot, which
    /// their `Reserve` now owns (it picks it up when polled, or returns it
    /// when dropped).
    handed: Vec<u64>,
    next_id: u64,
}

struct Chan<T> {
    /// Free slots (above [`SLOT_SHIFT`]) and the `CLOSED` and `WAITERS`
    /// flags. Invariants: free slots + permits (including slots handed to
    /// waiters) + queued values = `capacity`; once `CLOSED` is set no slot
    /// is ever taken again; if `WAITERS` is set and there are free slots, a
    /// thread that released one saw `WAITERS` and is about to hand it over.
    sem: CachePadded<AtomicUsize>,
    /// The receiver's waker.
    rx_waker: CachePadded<WakerSlot>,
    /// `RX_GONE`, plus a count of commits that only exists so that every
    /// commit does a read-modify-write here (see [`Permit::send`]).
    rx_state: AtomicUsize,
    queue: Queue<T>,
    /// Live `Sender`s.
    senders: AtomicUsize,
    capacity: usize,
    /// Committed values dropped with the receiver.
    undelivered: AtomicU64,
    waiters: Mutex<Waiters>,
}

/// How a reservation attempt went.
enum Acquire {
    /// The caller now owns a slot.
    Acquired,
    /// The caller is queued under this id.
    Queued(u64),
    /// The channel is closed.
    Closed,
}

impl<T> Chan<T> {
    /// The lock-free fast path: takes a free slot unless the channel is
    /// closed, full, or has senders queued (who come first).
    fn try_acquire(&self) -> Result<(), TrySendError<()>> {
        // Relaxed: only a first guess for the compare-and-swap.
        let mut cur = self.sem.load(Ordering::Relaxed);
        loop {
            if cur & CLOSED != 0 {
                return Err(TrySendError::Closed(()));
            }
            if cur & WAITERS != 0 || free_slots(cur) == 0 {
                return Err(TrySendError::Full(()));
            }
            // Acquire on success: synchronizes with the `release` that
            // freed this slot (after the receiver popped the value that
            // held it), so our later push sees that pop and cannot find
            // the queue full. Relaxed on failure: we only retry or report.
            match self.sem.compare_exchange_weak(
                cur,
                cur - ONE_SLOT,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    /// The slow path: takes a slot, or queues `waker` for one.
    fn acquire_or_queue(&self, waker: &Waker) -> Acquire {
        match self.try_acquire() {
            Ok(()) => return Acquire::Acquired,
            Err(TrySendError::Closed(())) => return Acquire::Closed,
            Err(TrySendError::Full(())) => {}
        }
        let mut waiters = lock(&self.waiters);
        // Relaxed: a first guess; the flags we act on are stable while we
        // hold the lock (they change only under it, and the lock orders
        // us after the last change).
        let mut cur = self.sem.load(Ordering::Relaxed);
        loop {
            if cur & CLOSED != 0 {
                return Acquire::Closed;
            }
            if cur & WAITERS != 0 {
                // Others are queued: join them. If slots are free, a
                // releaser saw WAITERS and will hand them out in order
                // once we unlock.
                break;
            }
            let take = free_slots(cur) > 0;
            let next = if take { cur - ONE_SLOT } else { cur | WAITERS };
            // Acquire on success: as in `try_acquire`, when taking a slot.
            // Setting WAITERS publishes nothing by itself: a releaser that
            // reads it (a later read-modify-write in `sem`'s order) then
            // takes the lock we hold, which orders it after our push below.
            match self
                .sem
                .compare_exchange_weak(cur, next, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) if take => return Acquire::Acquired,
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        let id = waiters.next_id;
        waiters.next_id += 1;
        waiters.queue.push_back(Waiter {
            id,
            waker: waker.clone(),
        });
        Acquire::Queued(id)
    }

    /// Polls a queued reservation: did it get a slot?
    fn poll_queued(&self, id: u64, waker: &Waker) -> Acquire {
        let mut waiters = lock(&self.waiters);
        if let Some(at) = waiters.handed.iter().position(|&h| h == id) {
            waiters.handed.swap_remove(at);
            drop(waiters);
            // Relaxed: CLOSED needs no data with it.
            if self.sem.load(Ordering::Relaxed) & CLOSED != 0 {
                // Closed while the slot was on its way: a waiting
                // reservation fails on close. Return the slot.
                self.release(true);
                return Acquire::Closed;
            }
            return Acquire::Acquired;
        }
        if let Some(waiter) = waiters.queue.iter_mut().find(|w| w.id == id) {
            if !waiter.waker.will_wake(waker) {
                waiter.waker.clone_from(waker);
            }
            return Acquire::Queued(id);
        }
        // Neither handed a slot nor queued: `close` dequeued it.
        Acquire::Closed
    }

    /// Withdraws a queued reservation; returns a slot it was handed.
    fn cancel_queued(&self, id: u64) {
        let mut waiters = lock(&self.waiters);
        if let Some(at) = waiters.handed.iter().position(|&h| h == id) {
            waiters.handed.swap_remove(at);
            drop(waiters);
            // Goes on to the next waiter, if any.
            self.release(true);
        } else if let Some(at) = waiters.queue.iter().position(|w| w.id == id) {
            waiters.queue.remove(at);
            if waiters.queue.is_empty() {
                // Relaxed: WAITERS is only read as a hint to take the lock,
                // and it changes only under the lock we hold.
                self.sem.fetch_and(!WAITERS, Ordering::Relaxed);
            }
        }
    }

    /// Returns one slot: to the first queued sender if there is one, else
    /// to the free count. `wake_rx`: wake the receiver if the channel is
    /// closed (it may be waiting for the last permit to go).
    fn release(&self, wake_rx: bool) {
        // Release: publishes the emptied queue cell (after a pop) to the
        // next taker of this slot, which acquires it. Reading WAITERS needs
        // no acquire: we then take the lock, which synchronizes.
        let prev = self.sem.fetch_add(ONE_SLOT, Ordering::Release);
        if prev & WAITERS != 0 {
            self.hand_off();
        }
        if wake_rx && prev & CLOSED != 0 {
            self.rx_waker.wake();
        }
    }

    /// Hands free slots to queued senders, first come first served.
    fn hand_off(&self) {
        loop {
            let waker = {
                let mut waiters = lock(&self.waiters);
                let Some(waiter) = waiters.queue.pop_front() else {
                    // Someone else served or withdrew them. Relaxed: as in
                    // `cancel_queued`.
                    self.sem.fetch_and(!WAITERS, Ordering::Relaxed);
                    return;
                };
                if !self.take_slot_for_waiter() {
                    waiters.queue.push_front(waiter);
                    return;
                }
                waiters.handed.push(waiter.id);
                if waiters.queue.is_empty() {
                    self.sem.fetch_and(!WAITERS, Ordering::Relaxed);
                }
                waiter.waker
            };
            // A sender's waker (user code, if polled by hand): caught.
            crate::outcome::wake_caught(waker);
            // Relaxed: if no slot is free now, a later release reads
            // WAITERS (if still set) in its own `fetch_add` and hands that
            // slot over itself; so stopping here loses nothing.
            if free_slots(self.sem.load(Ordering::Relaxed)) == 0 {
                return;
            }
        }
    }

    /// Takes a free slot on behalf of the first waiter (caller holds the
    /// `waiters` lock). False if none is free or the channel is closed.
    fn take_slot_for_waiter(&self) -> bool {
        let mut cur = self.sem.load(Ordering::Relaxed);
        loop {
            if cur & CLOSED != 0 || free_slots(cur) == 0 {
                return false;
            }
            // Acquire on success: as in `try_acquire`; the waiter is ordered
            // after us by the lock.
            match self.sem.compare_exchange_weak(
                cur,
                cur - ONE_SLOT,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Refuses new reservations and fails the waiting ones.
    fn close(&self) {
        let queued = {
            let mut waiters = lock(&self.waiters);
            // Relaxed: CLOSED carries no data. Senders that read it fail;
            // the receiver reads its own write. Setting it under the lock
            // means no sender queues after it.
            self.sem.fetch_or(CLOSED, Ordering::Relaxed);
            self.sem.fetch_and(!WAITERS, Ordering::Relaxed);
            std::mem::take(&mut waiters.queue)
        };
        for waiter in queued {
            // Wakers are user code: one that panics must not keep the
            // rest from being woken.
            crate::outcome::wake_caught(waiter.waker);
        }
    }

    /// Pops a value and frees its slot (in that order).
    fn pop(&self) -> Option<T> {
        let value = self.queue.pop()?;
        self.release(false);
        Some(value)
    }

    /// The receiver's non-blocking receive.
    fn try_recv(&self) -> Result<T, TryRecvError> {
        if let Some(value) = self.pop() {
            return Ok(value);
        }
        // Acquire: synchronizes with the last sender's `fetch_sub`
        // (release), which follows all its pushes; so the pop below sees
        // every value ever pushed.
        if self.senders.load(Ordering::Acquire) == 0 {
            return self.pop().ok_or(TryRecvError::Disconnected);
        }
        // Relaxed is enough: once CLOSED is set no slot is taken again, so
        // if this value has CLOSED and every slot free, every slot a value
        // ever held was freed by our own pop: nothing is queued or in a
        // permit, and nothing ever will be. No data is read on its word.
        let sem = self.sem.load(Ordering::Relaxed);
        if sem & CLOSED != 0 && free_slots(sem) == self.capacity {
            return Err(TryRecvError::Disconnected);
        }
        Err(TryRecvError::Empty)
    }

    /// After the receiver is gone: drops every queued value, counting it.
    fn drain_undelivered(&self) {
        while let Some(value) = self.queue.pop() {
            // Relaxed: a statistic; whoever reads it after the drop that
            // ended the receiver is ordered by that.
            self.undelivered.fetch_add(1, Ordering::Relaxed);
            self.release(false);
            drop(value);
        }
    }
}

// ---------------------------------------------------------------------------
// Sender
// ---------------------------------------------------------------------------

/// The sending half. Clone it for more producers.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Waits for a free slot and reserves it. Resolves to a [`Permit`] to
    /// commit a value with, or to [`SendError::Closed`] if the receiver
    /// closed the channel or was dropped, or to [`SendError::Cancelled`] if
    /// `cx`'s task is asked to cancel while waiting (checked at every poll,
    /// before trying to take a slot).
    ///
    /// Waiting senders are served in order. Cancel-safe: dropping the
    /// future leaves nothing behind (a slot it was being handed goes to the
    /// next waiter).
    pub fn reserve<'a, C: CapSet>(&'a self, cx: &'a Cx<C>) -> Reserve<'a, T> {
        let cx = cx.core();
        Reserve {
            sender: self,
            cx,
            queued: None,
        }
    }

    /// Reserves a free slot if one is available now. Fails with
    /// [`TrySendError::Full`] when none is (or when other senders are
    /// already waiting for one), and [`TrySendError::Closed`] when the
    /// receiver closed the channel or was dropped. Takes no lock.
    pub fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        self.chan.try_acquire()?;
        Ok(Permit { sender: self })
    }

    /// Reserves a slot ([`reserve`](Self::reserve)) and commits `value`
    /// into it. If the channel is closed or the task cancelled first, the
    /// value comes back in the error.
    ///
    /// Dropping the future before it completes drops `value` with it; to
    /// keep the value in that case, `reserve` first and commit after.
    pub async fn send<C: CapSet>(&self, cx: &Cx<C>, value: T) -> Result<(), SendError<T>> {
        match self.reserve(cx).await {
            Ok(permit) => permit
                .send(value)
                .map_err(|Closed(value)| SendError::Closed(value)),
            Err(SendError::Closed(())) => Err(SendError::Closed(value)),
            Err(SendError::Cancelled(reason, ())) => Err(SendError::Cancelled(reason, value)),
        }
    }

    /// Sends `value` if a slot is free now; otherwise hands it back.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.try_reserve() {
            Ok(permit) => permit
                .send(value)
                .map_err(|Closed(value)| TrySendError::Closed(value)),
            Err(TrySendError::Full(())) => Err(TrySendError::Full(value)),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(value)),
        }
    }

    /// Whether the receiver closed the channel or was dropped: new
    /// reservations fail.
    pub fn is_closed(&self) -> bool {
        // Relaxed: a snapshot; CLOSED carries no data.
        self.chan.sem.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// The channel's capacity: the most values in flight and queued at once.
    pub fn capacity(&self) -> usize {
        self.chan.capacity
    }

    /// How many committed values were dropped, unreceived, because the
    /// receiver was dropped. (Values that could not be committed were
    /// returned to their senders instead.)
    pub fn undelivered(&self) -> u64 {
        // Relaxed: a statistic. Readers ordered after the receiver's drop
        // (and after the late commits that drained) see the full count.
        self.chan.undelivered.load(Ordering::Relaxed)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed: a new sender is made from a live one, so the count can't
        // reach zero meanwhile, and nothing is published (as in `Arc`).
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // Release: orders this sender's pushes before the receiver's
        // acquire-load that sees zero (see `Chan::try_recv`).
        if self.chan.senders.fetch_sub(1, Ordering::Release) == 1 {
            self.chan.rx_waker.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.chan.capacity)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Reserve
// ---------------------------------------------------------------------------

/// The future of [`Sender::reserve`].
#[must_use = "futures do nothing unless polled"]
pub struct Reserve<'a, T> {
    sender: &'a Sender<T>,
    cx: &'a CxCore,
    /// Our place in the waiter list, once queued.
    queued: Option<u64>,
}

impl<'a, T> Future for Reserve<'a, T> {
    type Output = Result<Permit<'a, T>, SendError<()>>;

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        ready!(crate::coop::poll_proceed(task));
        let chan = &*this.sender.chan;
        if let Some(reason) = this.cx.cancel_requested() {
            if let Some(id) = this.queued.take() {
                chan.cancel_queued(id);
            }
            return Poll::Ready(Err(SendError::Cancelled(reason, ())));
        }
        let outcome = match this.queued {
            None => chan.acquire_or_queue(task.waker()),
            Some(id) => chan.poll_queued(id, task.waker()),
        };
        match outcome {
            Acquire::Acquired => {
                this.queued = None;
                Poll::Ready(Ok(Permit {
                    sender: this.sender,
                }))
            }
            Acquire::Closed => {
                this.queued = None;
                Poll::Ready(Err(SendError::Closed(())))
            }
            Acquire::Queued(id) => {
                this.queued = Some(id);
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Reserve<'_, T> {
    fn drop(&mut self) {
        if let Some(id) = self.queued.take() {
            self.sender.chan.cancel_queued(id);
        }
    }
}

impl<T> fmt::Debug for Reserve<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reserve")
            .field("queued", &self.queued.is_some())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Permit
// ---------------------------------------------------------------------------

/// A reserved slot: [`send`](Self::send) commits one value into it.
/// Dropping it unused returns the slot and wakes one waiting sender.
#[must_use = "dropping a permit unused just returns its slot"]
pub struct Permit<'a, T> {
    sender: &'a Sender<T>,
}

impl<T> Permit<'_, T> {
    /// Commits `value` into the reserved slot. Never waits and never fails
    /// for lack of space. Fails only if the receiver has been dropped, and
    /// then returns `value`. (After the receiver merely closed the channel,
    /// commits are still accepted and received.)
    ///
    /// If the receiver is dropped at the same moment, the value is either
    /// returned here or, once committed, counted by
    /// [`Sender::undelivered`]; never silently lost.
    pub fn send(self, value: T) -> Result<(), Closed<T>> {
        // Our slot now belongs to the value (freed by whoever pops it), or
        // is returned below; either way not by `Drop`.
        let this = ManuallyDrop::new(self);
        let chan = &*this.sender.chan;
        // Relaxed: only a shortcut; the read-modify-write below decides.
        if chan.rx_state.load(Ordering::Relaxed) & RX_GONE != 0 {
            chan.release(false);
            return Err(Closed(value));
        }
        if chan.queue.push(value).is_err() {
            // Every queued value holds a slot and we hold one: impossible.
            unreachable!("mpsc queue overflow: slot accounting is broken");
        }
        // Release: if the receiver's drop comes later in `rx_state`'s order,
        // its acquire read synchronizes with us (through the release
        // sequence of commits), so its drain sees our value. If it came
        // first, we read RX_GONE here and drain ourselves. Either way the
        // value is received or counted.
        let prev = chan.rx_state.fetch_add(COMMIT, Ordering::Release);
        if prev & RX_GONE != 0 {
            chan.drain_undelivered();
        } else {
            chan.rx_waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.sender.chan.release(true);
    }
}

impl<T> fmt::Debug for Permit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------

/// The receiving half. Dropping it drops the queued values, counted in
/// [`Sender::undelivered`].
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Receiver<T> {
    /// Waits for the next value. Resolves to [`RecvError::Disconnected`]
    /// once no value can come, and to [`RecvError::Cancelled`] if `cx`'s
    /// task is asked to cancel (checked at every poll, before taking a
    /// value). Cancel-safe: a dropped or cancelled `Recv` takes nothing.
    pub fn recv<'a, C: CapSet>(&'a mut self, cx: &'a Cx<C>) -> Recv<'a, T> {
        let cx = cx.core();
        Recv { receiver: self, cx }
    }

    /// Takes the next value if there is one now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.chan.try_recv()
    }

    /// Closes the channel: new and waiting reservations fail with
    /// `Closed`, but permits already held may still commit, and queued
    /// values stay receivable. Once they are all received and the permits
    /// are gone, receiving reports `Disconnected`.
    pub fn close(&mut self) {
        self.chan.close();
    }

    /// Whether the channel is closed ([`close`](Self::close) was called).
    pub fn is_closed(&self) -> bool {
        // Relaxed: a snapshot of our own flag.
        self.chan.sem.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// The number of values queued now.
    pub fn len(&self) -> usize {
        self.chan.queue.len()
    }

    /// Whether no value is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let chan = &*self.chan;
        chan.close();
        // Acquire: synchronizes with every commit whose read-modify-write
        // came before this one, so the drain below sees their values;
        // later commits read RX_GONE and drain their own.
        chan.rx_state.fetch_or(RX_GONE, Ordering::Acquire);
        drop(chan.rx_waker.take());
        chan.drain_undelivered();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// The future of [`Receiver::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T> {
    receiver: &'a mut Receiver<T>,
    cx: &'a CxCore,
}

impl<T> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        ready!(crate::coop::poll_proceed(task));
        if let Some(reason) = this.cx.cancel_requested() {
            return Poll::Ready(Err(RecvError::Cancelled(reason)));
        }
        let chan = &*this.receiver.chan;
        match chan.try_recv() {
            Ok(value) => return Poll::Ready(Ok(value)),
            Err(TryRecvError::Disconnected) => return Poll::Ready(Err(RecvError::Disconnected)),
            Err(TryRecvError::Empty) => {}
        }
        // Register, then look again: a commit, the last sender's drop, or
        // a slot freed after close that came after our first look either
        // is seen by the second one or finds our waker (see WakerSlot).
        chan.rx_waker.register(task.waker());
        match chan.try_recv() {
            Ok(value) => Poll::Ready(Ok(value)),
            Err(TryRecvError::Disconnected) => Poll::Ready(Err(RecvError::Disconnected)),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }
}

impl<T> fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::thread;

    use crate::channel::block_on;

    /// Polls once with a waker that does nothing.
    fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
        Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
    }

    fn queued_waiters<T>(tx: &Sender<T>) -> usize {
        lock(&tx.chan.waiters).queue.len()
    }

    fn cx() -> Cx {
        Cx::detached_for_tests()
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn send_sync<X: Send + Sync>() {}
        send_sync::<Sender<String>>();
        send_sync::<Receiver<String>>();
        send_sync::<Permit<'static, String>>();
        send_sync::<Reserve<'static, String>>();
        send_sync::<Recv<'static, String>>();
        fn send<X: Send>(_: &X) {}
        let cx = cx();
        let (tx, _rx) = channel::<String>(1).unwrap();
        send(&tx.send(&cx, String::new()));
    }

    #[test]
    fn capacity_errors() {
        assert_eq!(channel::<u8>(0).unwrap_err(), CapacityError::Zero);
        assert!(matches!(
            channel::<u8>(MAX_CAPACITY + 1),
            Err(CapacityError::TooLarge { .. })
        ));
        assert_eq!(
            CapacityError::Zero.to_string(),
            "channel capacity must be at least 1"
        );
        // The value-carrying errors are errors whatever the value type.
        struct Opaque;
        let errors: [Box<dyn std::error::Error>; 3] = [
            Box::new(SendError::Closed(Opaque)),
            Box::new(TrySendError::Full(Opaque)),
            Box::new(Closed(Opaque)),
        ];
        assert_eq!(errors[0].to_string(), "channel closed");
        assert_eq!(format!("{:?}", errors[1]), "Full(..)");
        assert_eq!(errors[2].to_string(), "receiver dropped");
    }

    #[test]
    fn fifo_order() {
        let cx = cx();
        let (tx, mut rx) = channel(4).unwrap();
        for round in 0..3 {
            for i in 0..4 {
                block_on(tx.send(&cx, round * 10 + i)).unwrap();
            }
            assert_eq!(rx.len(), 4);
            for i in 0..4 {
                assert_eq!(block_on(rx.recv(&cx)), Ok(round * 10 + i));
            }
            assert!(rx.is_empty());
        }
    }

    #[test]
    fn capacity_is_respected() {
        let (tx, mut rx) = channel::<u32>(2).unwrap();
        assert_eq!(tx.capacity(), 2);
        let a = tx.try_reserve().unwrap();
        tx.try_send(1).unwrap();
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
        assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
        drop(a); // the slot comes back
        let b = tx.try_reserve().unwrap();
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
        // A popped value frees its slot only after it is popped.
        assert_eq!(rx.try_recv(), Ok(1));
        b.send(2).unwrap();
        tx.try_send(3).unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn dropped_permit_wakes_a_waiting_reserver() {
        let (tx, mut rx) = channel::<u32>(1).unwrap();
        let tx2 = tx.clone();
        let permit = tx.try_reserve().unwrap();
        let waiter = thread::spawn(move || {
            let cx = Cx::detached_for_tests();
            let permit = block_on(tx2.reserve(&cx)).unwrap();
            permit.send(42).unwrap();
        });
        while queued_waiters(&tx) == 0 {
            thread::yield_now();
        }
        drop(permit);
        waiter.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(42));
    }

    #[test]
    fn received_value_wakes_a_waiting_sender() {
        let (tx, mut rx) = channel::<u32>(1).unwrap();
        tx.try_send(1).unwrap();
        let tx2 = tx.clone();
        let sender = thread::spawn(move || {
            let cx = Cx::detached_for_tests();
            block_on(tx2.send(&cx, 2)).unwrap();
        });
        while queued_waiters(&tx) == 0 {
            thread::yield_now();
        }
        assert_eq!(rx.try_recv(), Ok(1));
        sender.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
    }

    #[test]
    fn dropped_reserve_future_loses_no_slot() {
        let cx = cx();
        let (tx, mut rx) = channel::<u32>(1).unwrap();
        let permit = tx.try_reserve().unwrap();
        let mut first = tx.reserve(&cx);
        let mut second = tx.reserve(&cx);
        assert!(poll_once(&mut first).is_pending());
        assert!(poll_once(&mut second).is_pending());
        assert_eq!(queued_waiters(&tx), 2);
        // Waiters are served in order: no barging while they wait.
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
        // The slot is handed to `first`, which is dropped unpolled: it
        // must go on to `second`.
        drop(permit);
        drop(first);
        let Poll::Ready(Ok(p)) = poll_once(&mut second) else {
            panic!("the slot was lost");
        };
        p.send(5).unwrap();
        drop(second);
        assert_eq!(rx.try_recv(), Ok(5));

        // A waiter dropped before any slot is freed leaves nothing behind.
        let permit = tx.try_reserve().unwrap();
        let mut third = tx.reserve(&cx);
        assert!(poll_once(&mut third).is_pending());
        drop(third);
        assert_eq!(queued_waiters(&tx), 0);
        drop(permit);
        tx.try_reserve().unwrap().send(6).unwrap();
        assert_eq!(rx.try_recv(), Ok(6));
    }

    #[test]
    fn close_refuses_new_reservations_but_keeps_commits() {
        let cx = cx();
        let (tx, mut rx) = channel::<u32>(3).unwrap();
        tx.try_send(1).unwrap();
        let permit = tx.try_reserve().unwrap();
        let filler = tx.try_reserve().unwrap();
        let mut waiting = tx.reserve(&cx);
        assert!(poll_once(&mut waiting).is_pending());

        rx.close();
        assert!(rx.is_closed() && tx.is_closed());
        assert!(matches!(
            poll_once(&mut waiting),
            Poll::Ready(Err(SendError::Closed(())))
        ));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Closed(()))));
        assert_eq!(
            block_on(tx.send(&cx, 7)).unwrap_err().into_inner(),
            7,
            "a refused send returns the value"
        );
        // Queued values stay receivable, held permits may still commit.
        assert_eq!(rx.try_recv(), Ok(1));
        drop(filler);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        permit.send(2).unwrap();
        assert_eq!(block_on(rx.recv(&cx)), Ok(2));
        // Then it ends, though a sender is still alive.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(block_on(rx.recv(&cx)), Err(RecvError::Disconnected));
        drop(waiting);
        drop(tx);
    }

    #[test]
    fn close_wakes_receiver_when_last_permit_goes() {
        let (tx, mut rx) = channel::<u32>(2).unwrap();
        rx.close();
        let receiver = thread::spawn(move || {
            let cx = Cx::detached_for_tests();
            block_on(rx.recv(&cx))
        });
        // `tx` is alive throughout: only the closed channel ends the wait.
        thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(receiver.join().unwrap(), Err(RecvError::Disconnected));
        drop(tx);

        let (tx, mut rx) = channel::<u32>(2).unwrap();
        let tx2 = tx.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let holder = thread::spawn(move || {
            let permit = tx2.try_reserve().unwrap();
            ready_tx.send(()).unwrap();
            thread::sleep(std::time::Duration::from_millis(20));
            drop(permit);
            tx2
        });
        ready_rx.recv().unwrap();
        rx.close();
        let cx = cx();
        assert_eq!(block_on(rx.recv(&cx)), Err(RecvError::Disconnected));
        drop(holder.join().unwrap());
        drop(tx);
    }

    #[test]
    fn disconnected_after_all_senders_and_permits_drop() {
        let cx = cx();
        let (tx, mut rx) = channel::<u32>(4).unwrap();
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        tx2.try_send(2).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        let permit = tx2.try_reserve().unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        permit.send(3).unwrap();
        drop(tx2);
        assert_eq!(block_on(rx.recv(&cx)), Ok(3));
        assert_eq!(block_on(rx.recv(&cx)), Err(RecvError::Disconnected));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));

        // A receiver waiting when the last sender goes is woken.
        let (tx, mut rx) = channel::<u32>(1).unwrap();
        let receiver = thread::spawn(move || {
            let cx = Cx::detached_for_tests();
            let first = block_on(rx.recv(&cx));
            (first, block_on(rx.recv(&cx)))
        });
        thread::sleep(std::time::Duration::from_millis(10));
        tx.try_send(9).unwrap();
        drop(tx);
        assert_eq!(
            receiver.join().unwrap(),
            (Ok(9), Err(RecvError::Disconnected))
        );
    }

    #[test]
    fn dropped_receiver_counts_undelivered_and_returns_refused_values() {
        struct Counted(Arc<StdAtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let drops = Arc::new(StdAtomicUsize::new(0));
        let cx = cx();
        let (tx, rx) = channel::<Counted>(4).unwrap();
        for _ in 0..3 {
            tx.try_send(Counted(drops.clone())).unwrap();
        }
        let permit = tx.try_reserve().unwrap();
        let mut waiting = tx.reserve(&cx);
        assert!(poll_once(&mut waiting).is_pending());
        assert_eq!(tx.undelivered(), 0);

        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.undelivered(), 3);
        assert_eq!(drops.load(Ordering::Relaxed), 3, "dropped, not leaked");
        assert!(matches!(
            poll_once(&mut waiting),
            Poll::Ready(Err(SendError::Closed(())))
        ));
        // A permit held across the drop hands its value back.
        let Err(Closed(back)) = permit.send(Counted(drops.clone())) else {
            panic!("commit after the receiver's drop succeeded");
        };
        drop(back);
        assert!(matches!(
            tx.try_send(Counted(drops.clone())),
            Err(TrySendError::Closed(_))
        ));
        assert!(block_on(tx.send(&cx, Counted(drops.clone()))).is_err());
        assert_eq!(tx.undelivered(), 3);
        assert_eq!(drops.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn stress_four_producers_every_value_once() {
        const PRODUCERS: u64 = 4;
        const PER: u64 = 100_000;
        let (tx, mut rx) = channel::<u64>(8).unwrap();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let tx = tx.clone();
                thread::spawn(move || {
                    let cx = Cx::detached_for_tests();
                    for i in 0..PER {
                        // Mix the waiting path with the non-waiting one.
                        if i % 3 == 0 {
                            match tx.try_reserve() {
                                Ok(permit) => permit.send(p * PER + i).unwrap(),
                                Err(_) => block_on(tx.send(&cx, p * PER + i)).unwrap(),
                            }
                        } else {
                            block_on(tx.send(&cx, p * PER + i)).unwrap();
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let cx = cx();
        let mut count = 0u64;
        let mut sum = 0u64;
        let mut next = [0u64; PRODUCERS as usize];
        loop {
            match block_on(rx.recv(&cx)) {
                Ok(v) => {
                    let (p, i) = ((v / PER) as usize, v % PER);
                    assert_eq!(i, next[p], "per-producer FIFO");
                    next[p] += 1;
                    count += 1;
                    sum += v;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        let n = PRODUCERS * PER;
        assert_eq!(count, n);
        assert_eq!(sum, n * (n - 1) / 2);
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Reserve,
            Commit(usize),
            DropPermit(usize),
            Recv,
            Close,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => Just(Op::Reserve),
                3 => any::<usize>().prop_map(Op::Commit),
                1 => any::<usize>().prop_map(Op::DropPermit),
                3 => Just(Op::Recv),
                1 => Just(Op::Close),
            ]
        }

        proptest! {
            /// Single-threaded ops against a model: a queue and a count of
            /// permits within the capacity.
            #[test]
            fn matches_model(cap in 1usize..5, ops in proptest::collection::vec(op(), 0..60)) {
                let (tx, mut rx) = channel::<u32>(cap).unwrap();
                let mut permits = Vec::new();
                let mut model = VecDeque::new();
                let mut closed = false;
                let mut next = 0u32;
                for op in ops {
                    match op {
                        Op::Reserve => {
                            let r = tx.try_reserve();
                            if closed {
                                prop_assert!(matches!(r, Err(TrySendError::Closed(()))));
                            } else if permits.len() + model.len() == cap {
                                prop_assert!(matches!(r, Err(TrySendError::Full(()))));
                            } else {
                                permits.push(r.unwrap());
                            }
                        }
                        Op::Commit(i) if !permits.is_empty() => {
                            let p = permits.swap_remove(i % permits.len());
                            prop_assert!(p.send(next).is_ok());
                            model.push_back(next);
                            next += 1;
                        }
                        Op::DropPermit(i) if !permits.is_empty() => {
                            drop(permits.swap_remove(i % permits.len()));
                        }
                        Op::Recv => {
                            let got = rx.try_recv();
                            match model.pop_front() {
                                Some(v) => prop_assert_eq!(got, Ok(v)),
                                None if closed && permits.is_empty() => {
                                    prop_assert_eq!(got, Err(TryRecvError::Disconnected));
                                }
                                None => prop_assert_eq!(got, Err(TryRecvError::Empty)),
                            }
                        }
                        Op::Close => {
                            rx.close();
                            closed = true;
                        }
                        _ => {}
                    }
                    prop_assert_eq!(rx.len(), model.len());
                }
                drop(permits);
                drop(rx);
                prop_assert_eq!(tx.undelivered(), model.len() as u64);
            }
        }
    }
}
