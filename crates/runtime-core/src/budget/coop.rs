//! Cooperative scheduling: each task turn (one poll) may pass a bounded
//! number of runtime await points that are ready; past that, the await
//! point yields (wakes its task and returns `Pending`), so a task that
//! always finds its channel ready still lets the others run. The await
//! points under it: join handles, sleeps, channels (mpsc, oneshot),
//! blocking jobs, regions (one unit before the body's first poll:
//! `scope`, `region`, `timeout`, `race`, `join_all`) and finalizers (one
//! unit before the first poll, which then has a turn's budget of its own:
//! `with_fresh_budget`).

use std::cell::Cell;
use std::task::{Context, Poll};

/// Ready await points allowed per task turn.
pub(crate) const PER_TURN: u32 = 128;

thread_local! {
    static BUDGET: Cell<u32> = const { Cell::new(u32::MAX) };
    /// Set by `yield_now` when it is polled with its own task's waker: the
    /// task asks to be run again, which `Task::run` reads right after the
    /// poll (instead of an atomic wake-up).
    static YIELDED: Cell<bool> = const { Cell::new(false) };
}

thread_local! {
    /// Set when the task being polled woke itself from inside its poll to
    /// see a cancellation its body requested (`task::is_running_task_waker`):
    /// `Task::run` reads it right after the poll and runs the task again,
    /// behind the tasks the request queued (`Schedule::Cancel`).
    static REPOLL: Cell<bool> = const { Cell::new(false) };
}

/// Records that the task being polled must be polled again (it woke
/// itself to see a cancellation it requested).
#[inline]
pub(crate) fn request_repoll() {
    REPOLL.with(|y| y.set(true));
}

/// Whether the task being polled has already asked to be polled again in
/// this poll (read, not cleared): `Task::run` will poll it again after
/// this poll, as a wake of its own waker would have it.
#[inline]
pub(crate) fn repoll_requested() -> bool {
    REPOLL.with(Cell::get)
}

/// Takes (and clears) the re-poll request of the poll that just ended.
#[inline]
pub(crate) fn take_repoll() -> bool {
    REPOLL.with(|y| y.replace(false))
}

/// Records that the task being polled asked to run again.
#[inline]
pub(crate) fn request_yield() {
    YIELDED.with(|y| y.set(true));
}

/// Takes (and clears) the yield request of the poll that just ended.
#[inline]
pub(crate) fn take_yield() -> bool {
    YIELDED.with(|y| y.replace(false))
}

thread_local! {
    /// Checkpoints left before the next look at the clock.
    static CLOCK_LOOK: Cell<u32> = const { Cell::new(CHECKPOINTS_PER_CLOCK_LOOK) };
}

/// A busy task's checkpoints look at the clock (and fire due timers) once
/// every this many: time keeps moving for a task that holds its worker,
/// at the cost of one clock read per this many checkpoints.
const CHECKPOINTS_PER_CLOCK_LOOK: u32 = 32;

thread_local! {
    /// A checkpoint of the task being polled was told it spun past the
    /// lab's step limit (`CxCore::checkpoint`): a task that ignores that
    /// `Err` and spins on is stopped by a panic at its next look.
    static SPIN_STOPPED: Cell<bool> = const { Cell::new(false) };
}

/// Starts the count of checkpoints to the next clock look afresh (the
/// lab, before each poll: where the looks fall must not depend on what
/// ran on this thread before, or the same seed could judge the same poll
/// differently; found by review), with no spin reported yet.
pub(crate) fn reset_clock_look() {
    CLOCK_LOOK.with(|c| c.set(CHECKPOINTS_PER_CLOCK_LOOK));
    SPIN_STOPPED.with(|s| s.set(false));
}

/// Marks that this poll's task was told it spun; `true` if it had been
/// told so already in this poll (it went on spinning).
pub(crate) fn spin_stopped_again() -> bool {
    SPIN_STOPPED.with(|s| s.replace(true))
}

/// This thread's cooperative state (the turn's budget, the yield and
/// re-poll requests, the count to the next clock look), put back as it
/// was when dropped: around code that polls tasks of another run on this
/// thread, inside a task's poll (a lab run, a blocking job the lab runs
/// in line), which would otherwise leave the outer task with their state
/// (found by review: a lab run inside a task lifted that task's budget
/// for the rest of its poll, so a spin on ready channels never yielded).
pub(crate) struct Saved {
    budget: u32,
    yielded: bool,
    repoll: bool,
    clock_look: u32,
    spin_stopped: bool,
}

impl Saved {
    pub(crate) fn now() -> Saved {
        Saved {
            budget: BUDGET.with(Cell::get),
            yielded: YIELDED.with(Cell::get),
            repoll: REPOLL.with(Cell::get),
            clock_look: CLOCK_LOOK.with(Cell::get),
            spin_stopped: SPIN_STOPPED.with(Cell::get),
        }
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        BUDGET.with(|b| b.set(self.budget));
        YIELDED.with(|y| y.set(self.yielded));
        REPOLL.with(|r| r.set(self.repoll));
        CLOCK_LOOK.with(|c| c.set(self.clock_look));
        SPIN_STOPPED.with(|s| s.set(self.spin_stopped));
    }
}

/// Counts a checkpoint; `true` when it is time to look at the clock.
#[inline]
pub(crate) fn clock_look_due() -> bool {
    CLOCK_LOOK.with(|c| {
        let left = c.get();
        if left <= 1 {
            c.set(CHECKPOINTS_PER_CLOCK_LOOK);
            true
        } else {
            c.set(left - 1);
            false
        }
    })
}

/// Starts a task turn.
#[inline]
pub(crate) fn reset() {
    BUDGET.with(|b| b.set(PER_TURN));
}

/// Runs `f` (a finalizer's first poll) with a turn's budget of its own,
/// the caller's put back after: a first poll is never cut off, so what it
/// awaits that is ready at once must not yield because the turn it runs
/// in (the body's, or a finishing child's) has spent its budget (found by
/// review: a finalizer that opened a region was cut off). Only the budget:
/// a yield it asks for is the task's and stays asked.
pub(crate) fn with_fresh_budget<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUDGET.with(|b| b.set(self.0));
        }
    }
    let _restore = Restore(BUDGET.with(|b| b.replace(PER_TURN)));
    f()
}

/// Lifts the budget for code polled outside any task turn (`block_on`
/// polling its root handle on a thread that also runs tasks).
#[inline]
pub(crate) fn unconstrained() {
    BUDGET.with(|b| b.set(u32::MAX));
}

/// Polls an await point under the turn's budget: yields at once (wakes
/// the task, `Pending`) when the budget is spent; otherwise runs `poll`,
/// which spends one unit only when it is ready. A `Pending` poll spends
/// nothing: one poll of a combinator that looks at many await points not
/// ready (a race over hundreds of join handles) must not spend the turn's
/// budget on them and yield before it reaches the one that is ready,
/// turn after turn (found by review: a race of 129 tasks never
/// finished, its worker spinning).
#[inline]
pub(crate) fn budgeted<T>(
    cx: &mut Context<'_>,
    poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    if poll_proceed(cx).is_pending() {
        return Poll::Pending;
    }
    let polled = poll(cx);
    if polled.is_pending() {
        // The unit back (saturating: a poll outside a task turn holds
        // `u32::MAX`).
        BUDGET.with(|b| b.set(b.get().saturating_add(1)));
    }
    polled
}

/// Spends one unit of the turn's budget, or yields when it is spent.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    BUDGET.with(|b| {
        let left = b.get();
        if left == 0 {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            b.set(left - 1);
            Poll::Ready(())
        }
    })
}
