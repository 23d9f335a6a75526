//! The timer driver: a [`Wheel`] behind a mutex, turned by idle workers
//! (before they park) and by busy ones every few dozen tasks.
//!
//! Time in the wheel is in ticks of one millisecond. A deadline rounds up
//! to its tick and `now` rounds down, so a timer never fires early.

use std::sync::Weak;
use std::task::Waker;

use super::Instant;
use super::wheel::{TimerKey, Wheel};
use crate::cancel::CancelReason;
use crate::cancel::{cancel_task, cut_off_task};
use crate::loom::{AtomicU64, Mutex, Ordering, lock};
use crate::outcome::drop_each_caught;
use crate::region::Region;
use crate::sched::Stats;
use crate::task::WeakTask;

const TICK_NANOS: u64 = 1_000_000;

/// What a timer does when it fires.
pub(crate) enum TimerAction {
    /// Wakes a task waiting in `sleep`.
    Wake(Waker),
    /// Cancels a region (its budget's deadline).
    CancelRegion(Weak<Region>, CancelReason),
    /// Cancels a task (its budget's deadline).
    CancelTask(WeakTask, CancelReason),
    /// Cuts a task off (its cleanup grace period ran out).
    CutOff(WeakTask),
    /// Cuts off every task still running in a cancelled region (their
    /// shared grace period ran out).
    CutOffRegion(Weak<Region>),
}

impl TimerAction {
    fn fire(self) {
        match self {
            TimerAction::Wake(w) => {
                // The waker is user code when a sleep was polled by hand:
                // a panic in it must not keep the other due timers from
                // firing (the caller catches it and goes on).
                w.wake();
            }
            TimerAction::CancelRegion(r, reason) => {
                if let Some(r) = r.upgrade() {
                    r.cancel(&reason);
                }
            }
            TimerAction::CancelTask(t, reason) => {
                if let Some(t) = t.upgrade() {
                    cancel_task(&t, &reason);
                }
            }
            TimerAction::CutOff(t) => {
                if let Some(t) = t.upgrade() {
                    cut_off_task(t);
                }
            }
            TimerAction::CutOffRegion(r) => {
                if let Some(r) = r.upgrade() {
                    r.cut_off_all(true);
                }
            }
        }
    }
}

/// A handle to a pending timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerHandle(TimerKey);

impl TimerHandle {
    /// `bits` for no timer (no slab entry has index `u32::MAX`).
    pub(crate) const NONE_BITS: u64 = u64::MAX;

    /// The handle as one word, for an atomic slot.
    pub(crate) fn to_bits(self) -> u64 {
        self.0.to_bits()
    }

    /// The handle [`to_bits`](Self::to_bits) gave, or `None` for
    /// [`NONE_BITS`](Self::NONE_BITS).
    pub(crate) fn from_bits(bits: u64) -> Option<TimerHandle> {
        (bits != Self::NONE_BITS).then(|| TimerHandle(TimerKey::from_bits(bits)))
    }
}

struct Inner {
    wheel: Wheel<TimerAction>,
    /// The tick a parked worker will wake at; an insert earlier than this
    /// must wake someone. `u64::MAX` when unknown (then every insert may).
    parked_until: u64,
    fired: Vec<TimerAction>,
}

pub(crate) struct TimerDriver {
    inner: Mutex<Inner>,
    /// The tick of the earliest pending timer (`u64::MAX`: none), readable
    /// without the lock, so that a busy task's checkpoint can tell cheaply
    /// whether the wheel needs turning. It may be early (a cancelled
    /// timer), never late.
    next_due: AtomicU64,
}

/// The last tick a clock reading reaches (`now_tick(Instant::MAX)`).
const LAST_TICK: u64 = u64::MAX / TICK_NANOS;

fn deadline_tick(at: Instant) -> u64 {
    at.as_nanos().div_ceil(TICK_NANOS)
}

/// When the wheel fires a timer due at `at`: the start of its deadline
/// tick (the first millisecond tick at or after `at`; saturating).
pub(crate) fn fires_at(at: Instant) -> Instant {
    Instant::from_nanos(deadline_tick(at).saturating_mul(TICK_NANOS))
}

fn now_tick(now: Instant) -> u64 {
    now.as_nanos() / TICK_NANOS
}

impl TimerDriver {
    pub(crate) fn new() -> Self {
        TimerDriver {
            inner: Mutex::new(Inner {
                wheel: Wheel::new(),
                parked_until: u64::MAX,
                fired: Vec::new(),
            }),
            next_due: AtomicU64::new(u64::MAX),
        }
    }

    /// Inserts a timer; the flag says whether it is earlier than any parked
    /// worker expects to wake (so one should be woken).
    pub(crate) fn insert(&self, at: Instant, action: TimerAction) -> (TimerHandle, bool) {
        let tick = deadline_tick(at);
        let mut inner = lock(&self.inner);
        let key = inner.wheel.insert(tick, action);
        // Relaxed: a reader that misses it turns the wheel at its next
        // look; the value itself is only ever lowered here (under the lock).
        self.next_due.fetch_min(tick, Ordering::Relaxed);
        let earlier = tick < inner.parked_until;
        (TimerHandle(key), earlier)
    }

    /// Cancels a timer; its action is dropped outside the lock, a panic of
    /// its `Drop` (a waker's: user code) caught and counted in `stats`
    /// (found by review: a finalizer's grace timer, cancelled at the
    /// close, let its waker's panic out of the region's poll).
    pub(crate) fn cancel(&self, handle: TimerHandle, stats: &Stats) {
        let action = lock(&self.inner).wheel.cancel(handle.0);
        if let Some(action) = action
            && crate::outcome::drop_caught(action).is_some()
        {
            stats.panic_caught();
        }
    }

    /// Cancels every wake timer in `handles` under one lock (a worker's
    /// deferred sleep cancellations, `sched/pool.rs`), leaving `handles`
    /// empty. The wakers (user code when a sleep was polled by hand) are
    /// dropped outside the lock, a panicking `Drop` counted and the others
    /// still dropped; `wakers` is a buffer for them, left empty.
    pub(crate) fn cancel_wakes(
        &self,
        handles: &mut Vec<TimerHandle>,
        wakers: &mut Vec<Waker>,
        stats: &Stats,
    ) {
        // Only sleeps defer their cancel, so every live entry is a wake;
        // anything else (never expected) is dropped with the wakers.
        let mut others = Vec::new();
        {
            let mut inner = lock(&self.inner);
            for h in handles.drain(..) {
                match inner.wheel.cancel(h.0) {
                    Some(TimerAction::Wake(w)) => wakers.push(w),
                    Some(other) => others.push(other),
                    None => {}
                }
            }
        }
        debug_assert!(
            others.is_empty(),
            "a deferred cancel of a timer that is not a wake"
        );
        drop_each_caught(wakers, || stats.panic_caught());
        drop_each_caught(&mut others, || stats.panic_caught());
    }

    /// Fires every timer due at `now`; returns whether any fired and when
    /// the next one is due.
    pub(crate) fn process(&self, now: Instant, stats: &Stats) -> (bool, Option<Instant>) {
        self.turn(now, false, stats)
    }

    /// [`process`](Self::process), and records that a worker is about to
    /// park until the next timer.
    pub(crate) fn process_for_park(&self, now: Instant, stats: &Stats) -> (bool, Option<Instant>) {
        self.turn(now, true, stats)
    }

    /// A worker woke from a timed park: nobody is known to be waiting for
    /// the next timer any more.
    pub(crate) fn unparked(&self) {
        lock(&self.inner).parked_until = u64::MAX;
    }

    fn turn(&self, now: Instant, parking: bool, stats: &Stats) -> (bool, Option<Instant>) {
        let mut fired = {
            let mut inner = lock(&self.inner);
            let mut fired = std::mem::take(&mut inner.fired);
            inner.wheel.advance(now_tick(now), &mut fired);
            // A timer whose tick no clock reading reaches (a deadline in the
            // last millisecond before `Instant::MAX`, such as that of
            // `sleep(Duration::MAX)`: 584 years on) is never due, and is not
            // reported as the next one: the lab would jump virtual time to
            // it, find it still not due, and jump again for ever.
            let next = inner.wheel.next_expiry().filter(|&t| t <= LAST_TICK);
            // Relaxed: see `insert`; written under the lock, so it cannot
            // overwrite a lower value an insert stored after this advance.
            self.next_due
                .store(next.unwrap_or(u64::MAX), Ordering::Relaxed);
            if parking {
                inner.parked_until = if fired.is_empty() {
                    next.unwrap_or(u64::MAX)
                } else {
                    u64::MAX
                };
            }
            if fired.is_empty() {
                inner.fired = fired;
                return (
                    false,
                    next.map(|t| Instant::from_nanos(t.saturating_mul(TICK_NANOS))),
                );
            }
            fired
        };
        // Each action alone under a catch: a panicking waker (user code)
        // is counted, and every other due timer still fires.
        for action in fired.drain(..) {
            if crate::outcome::catch(|| action.fire()).is_err() {
                stats.panic_caught();
            }
        }
        let mut inner = lock(&self.inner);
        if inner.fired.capacity() < fired.capacity() {
            inner.fired = fired;
        }
        (true, None)
    }

    /// The time the wheel was last turned to (a tick, 1 ms, at most
    /// behind the clock reading it was turned with): what the runtime
    /// reads as the time when the user's clock panics
    /// (`Shared::read_clock`).
    pub(crate) fn last_turn(&self) -> Instant {
        let tick = lock(&self.inner).wheel.now();
        Instant::from_nanos(tick.saturating_mul(TICK_NANOS))
    }

    /// Whether a timer may be due at `now` (cheap: one load).
    #[inline]
    pub(crate) fn due(&self, now: Instant) -> bool {
        now_tick(now) >= self.next_due.load(Ordering::Relaxed)
    }

    /// How many timers are pending (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).wheel.len()
    }

    /// Drops every pending timer (shutdown): wakers and task references go,
    /// outside the lock, each under a catch: a waker whose drop panics is
    /// counted and the rest still dropped. A sleep's waker that is not one
    /// of this runtime's tasks (`sched`: the address of the scheduler that
    /// owns this wheel) is woken first (caught, counted): a sleep or
    /// interval polled from outside the runtime (by hand through a `Cx`
    /// kept past it, or by a task of another runtime) then polls again,
    /// finds the runtime shut down and ends, where a waker dropped unwoken
    /// left it waiting for ever. (A task of this runtime is only dropped:
    /// every one has finished or been cut off by now, and a wake would
    /// queue it where nothing runs it. A task of another runtime is
    /// another's to run: telling them apart by the waker's vtable alone,
    /// as this did, left such a task hanging.)
    pub(crate) fn clear(&self, sched: *const (), stats: &Stats) {
        let mut old = lock(&self.inner).wheel.take_all();
        for action in &old {
            if let TimerAction::Wake(w) = action
                && !is_task_of(w, sched)
                && crate::outcome::wake_by_ref_caught(w)
            {
                stats.panic_caught();
            }
        }
        drop_each_caught(&mut old, || stats.panic_caught());
    }
}

/// Whether `w` wakes a task whose scheduler is at `sched`.
fn is_task_of(w: &Waker, sched: *const ()) -> bool {
    if !crate::task::is_task_waker(w) {
        return false;
    }
    // SAFETY: a task's waker points at the task's header, and this one
    // (held in the wheel) owns a count that keeps the task alive.
    let header = unsafe { &*w.data().cast::<crate::task::Header>() };
    std::ptr::eq(std::sync::Arc::as_ptr(header.sched()).cast::<()>(), sched)
}
