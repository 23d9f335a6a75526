//! The channel core: the slot semaphore (`sem`), the value queue, the
//! receiver's waker and the waiter list, and the protocol over them. The
//! handles in `futures.rs` are thin wrappers over [`Chan`].

use std::collections::VecDeque;
// `Arc` is always `std`'s, by the crate's rule (see `crate::loom`): loom
// checks the state machine inside it.
use std::task::Waker;

use crossbeam_utils::CachePadded;

use crate::lab::hooks::PermitToken;
use crate::loom::{AtomicU64, AtomicUsize, Mutex, Ordering, lock};
use crate::sync::WakerSlot;

use super::error::*;

/// `sem` flag: the receiver closed the channel (or was dropped).
pub(super) const CLOSED: usize = 0b01;
/// `sem` flag: the waiter list is non-empty. Set and cleared only while
/// holding the `waiters` lock.
pub(super) const WAITERS: usize = 0b10;
/// `sem` holds the free-slot count above its two flag bits.
pub(super) const SLOT_SHIFT: u32 = 2;
/// One free slot, in `sem`'s units.
pub(super) const ONE_SLOT: usize = 1 << SLOT_SHIFT;

/// `rx_state` flag: the receiver has been dropped.
pub(super) const RX_GONE: usize = 0b1;
/// `rx_state` step taken by every commit (a counter above the flag).
pub(super) const COMMIT: usize = 0b10;

/// The largest capacity a channel can have.
///
/// ```
/// use runtime_core::channel::mpsc::{self, CapacityError, MAX_CAPACITY};
/// assert!(matches!(
///     mpsc::channel::<u8>(MAX_CAPACITY + 1),
///     Err(CapacityError::TooLarge { .. })
/// ));
/// ```
pub const MAX_CAPACITY: usize = usize::MAX >> (SLOT_SHIFT + 1);

pub(super) fn free_slots(sem: usize) -> usize {
    sem >> SLOT_SHIFT
}

impl<T> Chan<T> {
    /// A channel core with `capacity` free slots and one sender.
    pub(super) fn new(capacity: usize) -> Self {
        Chan {
            sem: CachePadded::new(AtomicUsize::new(capacity << SLOT_SHIFT)),
            rx_waker: CachePadded::new(WakerSlot::new()),
            rx_state: AtomicUsize::new(0),
            queue: Queue::new(capacity),
            senders: AtomicUsize::new(1),
            capacity,
            undelivered: AtomicU64::new(0),
            waiters: Mutex::new(Waiters {
                queue: VecDeque::new(),
                waiting: 0,
                handed: VecDeque::new(),
                handed_live: 0,
                next_id: 0,
            }),
        }
    }
}

/// Drops a waker (user code) under a catch, counting a panic of its
/// `Drop` (`task::count_panic_here`): one escaping here left a slot taken
/// with no permit made for it, or a handed slot with no one to return it
/// (found by review: the channel lost that slot for good).
pub(super) fn let_waker_go<W>(waker: W) {
    crate::outcome::drop_caught_here(waker);
}

/// The value queue: crossbeam's lock-free `ArrayQueue`, or under loom (which
/// does not model crossbeam) a mutex around a `VecDeque`.
#[cfg(not(loom))]
pub(super) struct Queue<T>(crossbeam_queue::ArrayQueue<T>);

#[cfg(not(loom))]
impl<T> Queue<T> {
    pub(super) fn new(capacity: usize) -> Self {
        Queue(crossbeam_queue::ArrayQueue::new(capacity))
    }
    pub(super) fn push(&self, value: T) -> Result<(), T> {
        self.0.push(value)
    }
    pub(super) fn pop(&self) -> Option<T> {
        self.0.pop()
    }
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(loom)]
pub(super) struct Queue<T> {
    pub(super) capacity: usize,
    pub(super) items: Mutex<VecDeque<T>>,
}

#[cfg(loom)]
impl<T> Queue<T> {
    pub(super) fn new(capacity: usize) -> Self {
        Queue {
            capacity,
            items: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }
    pub(super) fn push(&self, value: T) -> Result<(), T> {
        let mut items = lock(&self.items);
        if items.len() == self.capacity {
            return Err(value);
        }
        items.push_back(value);
        Ok(())
    }
    pub(super) fn pop(&self) -> Option<T> {
        lock(&self.items).pop_front()
    }
    pub(super) fn len(&self) -> usize {
        lock(&self.items).len()
    }
}

/// A sender queued for a slot.
pub(super) struct Waiter {
    pub(super) id: u64,
    /// `None` once withdrawn (`cancel_queued`): left in place, skipped by
    /// the hand-off, so that a withdrawal from anywhere in a long queue
    /// costs a binary search, not a shift of the entries after it.
    pub(super) waker: Option<Waker>,
}

/// The senders waiting for a slot (the slow path).
///
/// Both lists are kept in id order (ids are given out in increasing
/// order; waiters join at the back and are served from the front), so a
/// sender finds its entry by binary search: many senders waiting on one
/// full channel, withdrawn in any order (each cancelled, or timed out),
/// cost `log n` each rather than a scan of the queue.
pub(super) struct Waiters {
    /// In arrival order, withdrawn entries included (see [`Waiter`]).
    pub(super) queue: VecDeque<Waiter>,
    /// The entries of `queue` not withdrawn.
    pub(super) waiting: usize,
    /// Ids of waiters that were removed from `queue` and handed a slot, which
    /// their `Reserve` now owns (it picks it up when polled, or returns it
    /// when dropped), each with the lab's token of that slot (opened at the
    /// hand-off: a `Reserve` leaked after it is a forgotten permit, which
    /// the lab's reservation oracle reports). In id order: handed out from
    /// the front of `queue`. An entry picked up or returned is left in
    /// place with its token taken (`None`) and trimmed as `queue`'s
    /// withdrawn entries are (see [`trim_handed`](Self::trim_handed)): a
    /// `remove` from the middle shifted the entries after it, so that
    /// many reservations handed slots and then dropped out of order cost
    /// time quadratic in their number, under this lock (found by review:
    /// 160 000 took a second).
    pub(super) handed: VecDeque<(u64, Option<PermitToken>)>,
    /// The entries of `handed` whose token is still there.
    pub(super) handed_live: usize,
    pub(super) next_id: u64,
}

impl Waiters {
    /// The index in `queue` of the live waiter `id`, if queued.
    fn find(&self, id: u64) -> Option<usize> {
        self.queue
            .binary_search_by_key(&id, |w| w.id)
            .ok()
            .filter(|&at| self.queue[at].waker.is_some())
    }

    /// Takes `id`'s token out of `handed`, if it was handed a slot: found
    /// by binary search, taken in place (see [`handed`](Self::handed)).
    fn take_handed(&mut self, id: u64) -> Option<PermitToken> {
        let at = self.handed.binary_search_by_key(&id, |h| h.0).ok()?;
        let token = self.handed[at].1.take()?;
        self.handed_live -= 1;
        self.trim_handed();
        Some(token)
    }

    /// Adds `id`, just handed a slot, at the back of `handed` (ids are
    /// handed out in increasing order).
    fn push_handed(&mut self, id: u64, token: PermitToken) {
        debug_assert!(self.handed.back().is_none_or(|h| h.0 < id));
        self.handed.push_back((id, Some(token)));
        self.handed_live += 1;
    }

    /// [`trim`](Self::trim) for `handed`: taken entries at either end go
    /// at once, those in the middle when they outnumber the live ones
    /// (amortised constant time per pick-up or return).
    fn trim_handed(&mut self) {
        while self.handed.front().is_some_and(|h| h.1.is_none()) {
            self.handed.pop_front();
        }
        while self.handed.back().is_some_and(|h| h.1.is_none()) {
            self.handed.pop_back();
        }
        if self.handed.len() > 2 * self.handed_live + 16 {
            self.handed.retain(|h| h.1.is_some());
        }
    }

    /// Drops withdrawn entries at either end of the queue; those in the
    /// middle wait until they reach one, or until they outnumber the live
    /// ones (then all go at once: amortised constant time per withdrawal,
    /// and the queue never holds more than about twice its live waiters,
    /// even behind a first waiter that never leaves).
    fn trim(&mut self) {
        while self.queue.front().is_some_and(|w| w.waker.is_none()) {
            self.queue.pop_front();
        }
        while self.queue.back().is_some_and(|w| w.waker.is_none()) {
            self.queue.pop_back();
        }
        if self.queue.len() > 2 * self.waiting + 16 {
            self.queue.retain(|w| w.waker.is_some());
        }
    }
}

pub(super) struct Chan<T> {
    /// Free slots (above [`SLOT_SHIFT`]) and the `CLOSED` and `WAITERS`
    /// flags. Invariants: free slots + permits (including slots handed to
    /// waiters) + queued values = `capacity`; once `CLOSED` is set no slot
    /// is ever taken again; if `WAITERS` is set and there are free slots, a
    /// thread that released one saw `WAITERS` and is about to hand it over.
    pub(super) sem: CachePadded<AtomicUsize>,
    /// The receiver's waker.
    pub(super) rx_waker: CachePadded<WakerSlot>,
    /// `RX_GONE`, plus a count of commits that only exists so that every
    /// commit does a read-modify-write here (see [`Permit::send`]).
    pub(super) rx_state: AtomicUsize,
    pub(super) queue: Queue<T>,
    /// Live `Sender`s.
    pub(super) senders: AtomicUsize,
    pub(super) capacity: usize,
    /// Committed values dropped with the receiver.
    pub(super) undelivered: AtomicU64,
    pub(super) waiters: Mutex<Waiters>,
}

/// How a reservation attempt went.
pub(super) enum Acquire {
    /// The caller now owns a slot; with the lab's token of it if it was
    /// handed one (else the caller opens one).
    Acquired(Option<PermitToken>),
    /// The caller is queued under this id.
    Queued(u64),
    /// The channel is closed.
    Closed,
}

impl<T> Chan<T> {
    /// The lock-free fast path: takes a free slot unless the channel is
    /// closed, full, or has senders queued (who come first).
    pub(super) fn try_acquire(&self) -> Result<(), TrySendError<()>> {
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
    pub(super) fn acquire_or_queue(&self, waker: &Waker) -> Acquire {
        match self.try_acquire() {
            Ok(()) => return Acquire::Acquired(None),
            Err(TrySendError::Closed(())) => return Acquire::Closed,
            Err(TrySendError::Full(())) => {}
        }
        // Cloned before the lock: a waker's clone (and its drop, below, if
        // it is not queued) is user code, which may use this very channel.
        let mine = waker.clone();
        let mut waiters = lock(&self.waiters);
        // Relaxed: a first guess; the flags we act on are stable while we
        // hold the lock (they change only under it, and the lock orders
        // us after the last change).
        let mut cur = self.sem.load(Ordering::Relaxed);
        loop {
            if cur & CLOSED != 0 {
                drop(waiters);
                let_waker_go(mine);
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
                Ok(_) if take => {
                    drop(waiters);
                    let_waker_go(mine);
                    return Acquire::Acquired(None);
                }
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        let id = waiters.next_id;
        waiters.next_id += 1;
        waiters.queue.push_back(Waiter {
            id,
            waker: Some(mine),
        });
        waiters.waiting += 1;
        Acquire::Queued(id)
    }

    /// Polls a queued reservation: did it get a slot?
    pub(super) fn poll_queued(&self, id: u64, waker: &Waker) -> Acquire {
        let mut waiters = lock(&self.waiters);
        if let Some(token) = waiters.take_handed(id) {
            drop(waiters);
            return self.handed(token);
        }
        match waiters.find(id) {
            // Neither handed a slot nor queued: `close` dequeued it.
            None => return Acquire::Closed,
            Some(at) => {
                if waiters.queue[at]
                    .waker
                    .as_ref()
                    .is_none_or(|w| w.will_wake(waker))
                {
                    return Acquire::Queued(id);
                }
            }
        }
        // A new waker: cloned, and the old one dropped, outside the lock
        // (user code, which may use this very channel: a waker that owned
        // the last permit of it deadlocked here, the lock held for ever).
        drop(waiters);
        let new = waker.clone();
        let mut waiters = lock(&self.waiters);
        if let Some(token) = waiters.take_handed(id) {
            drop(waiters);
            let_waker_go(new);
            return self.handed(token);
        }
        match waiters.find(id) {
            Some(at) => {
                let old = waiters.queue[at].waker.replace(new);
                drop(waiters);
                let_waker_go(old);
                Acquire::Queued(id)
            }
            None => {
                drop(waiters);
                let_waker_go(new);
                Acquire::Closed
            }
        }
    }

    /// A queued reservation that was handed a slot (taken out of `handed`,
    /// the lock let go): it is the reservation's, unless the channel
    /// closed while the slot was on its way.
    fn handed(&self, token: PermitToken) -> Acquire {
        // Relaxed: CLOSED needs no data with it.
        if self.sem.load(Ordering::Relaxed) & CLOSED != 0 {
            // Closed while the slot was on its way: a waiting
            // reservation fails on close. Return the slot.
            token.resolve();
            self.release(true);
            return Acquire::Closed;
        }
        Acquire::Acquired(Some(token))
    }

    /// Withdraws a queued reservation; returns a slot it was handed.
    pub(super) fn cancel_queued(&self, id: u64) {
        let mut waiters = lock(&self.waiters);
        if let Some(token) = waiters.take_handed(id) {
            drop(waiters);
            // Goes on to the next waiter, if any.
            token.resolve();
            self.release(true);
        } else if let Some(at) = waiters.find(id) {
            // Withdrawn in place (its waker dropped outside the lock).
            let waker = waiters.queue[at].waker.take();
            waiters.waiting -= 1;
            waiters.trim();
            let none_left = waiters.waiting == 0;
            if none_left {
                waiters.queue.clear();
                // Relaxed: WAITERS is only read as a hint to take the lock,
                // and it changes only under the lock we hold.
                self.sem.fetch_and(!WAITERS, Ordering::Relaxed);
            }
            drop(waiters);
            let_waker_go(waker);
        }
    }

    /// Returns one slot: to the first queued sender if there is one, else
    /// to the free count. `wake_rx`: wake the receiver if the channel is
    /// closed (it may be waiting for the last permit to go).
    pub(super) fn release(&self, wake_rx: bool) {
        // Release: publishes the emptied queue cell (after a pop) to the
        // next taker of this slot, which acquires it. Reading WAITERS needs
        // no acquire: we then take the lock, which synchronizes.
        let prev = self.sem.fetch_add(ONE_SLOT, Ordering::Release);
        if prev & WAITERS != 0 {
            self.hand_off();
        }
        if wake_rx && prev & CLOSED != 0 {
            self.rx_waker.wake_here();
        }
    }

    /// Hands free slots to queued senders, first come first served.
    pub(super) fn hand_off(&self) {
        loop {
            let waker = {
                let mut waiters = lock(&self.waiters);
                // The queue's front is a live waiter (`trim` after every
                // withdrawal and every hand-off), or the queue is empty.
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
                debug_assert!(waiter.waker.is_some(), "a withdrawn waiter at the front");
                waiters.push_handed(waiter.id, crate::lab::hooks::permit_opened());
                waiters.waiting -= 1;
                waiters.trim();
                if waiters.waiting == 0 {
                    self.sem.fetch_and(!WAITERS, Ordering::Relaxed);
                }
                waiter.waker
            };
            // A sender's waker (user code, if polled by hand): caught.
            if let Some(waker) = waker {
                crate::outcome::wake_caught_here(waker);
            }
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
    pub(super) fn take_slot_for_waiter(&self) -> bool {
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
    pub(super) fn close(&self) {
        let queued = {
            let mut waiters = lock(&self.waiters);
            // Relaxed: CLOSED carries no data. Senders that read it fail;
            // the receiver reads its own write. Setting it under the lock
            // means no sender queues after it.
            self.sem.fetch_or(CLOSED, Ordering::Relaxed);
            self.sem.fetch_and(!WAITERS, Ordering::Relaxed);
            waiters.waiting = 0;
            std::mem::take(&mut waiters.queue)
        };
        // Wakers are user code: one that panics must not keep the rest
        // from being woken.
        for waker in queued.into_iter().filter_map(|w| w.waker) {
            crate::outcome::wake_caught_here(waker);
        }
    }

    /// Pops a value and frees its slot (in that order).
    pub(super) fn pop(&self) -> Option<T> {
        let value = self.queue.pop()?;
        self.release(false);
        Some(value)
    }

    /// The receiver's non-blocking receive.
    pub(super) fn try_recv(&self) -> Result<T, TryRecvError> {
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
    pub(super) fn drain_undelivered(&self) {
        while let Some(value) = self.queue.pop() {
            // Relaxed: a statistic; whoever reads it after the drop that
            // ended the receiver is ordered by that.
            self.undelivered.fetch_add(1, Ordering::Relaxed);
            self.release(false);
            // The user's `Drop`: a panic is caught and counted, and the
            // drain goes on (it used to unwind out of the receiver's drop,
            // or a late send, and leave the rest uncounted).
            crate::outcome::drop_caught_here(value);
        }
    }
}
