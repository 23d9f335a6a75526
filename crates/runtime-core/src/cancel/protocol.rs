//! The cancellation protocol: request, drain, finalize.
//!
//! * **Request.** [`cancel_task`] records the reason in the task's
//!   [`CancelCell`](super::CancelCell) (reasons only strengthen), passes it
//!   on to the regions the task has open, and wakes the task so that it
//!   reaches a checkpoint. [`Region::cancel`] records it in the region's
//!   cell and sweeps the region's registry, passing the reason to each
//!   task (as is), passes it to the regions its body opened in it (as
//!   `ParentCancelled`: `cancel_nested`), then wakes whoever polls the
//!   region's body. A child region is never in its parent's registry: it
//!   is reached through the task that opened it, a task of the parent
//!   (whose request passes on to the regions it has open) or the parent's
//!   owner (`cancel_nested`). The tasks one sweep wakes are queued
//!   together (`Scheduler::schedule_cancelled`: one job for all of them on
//!   a worker, `sched/batch.rs`), and each task's cell records the region's
//!   reason without a count of its own (`CancelCell::request_borrowed`).
//! * **Drain.** A cancelled task sees the request at its next checkpoint
//!   (level-triggered) and returns; it gets the cleanup budget of its
//!   region: a number of polls (counted in `Task::run`) and a grace period
//!   from the first request (one per cancelled region, or per task
//!   cancelled alone). Its timer is armed only when a cancelled task or
//!   region body is still running after a poll that saw the request
//!   ([`arm_grace`]): a drain in which every task returns at its next
//!   checkpoint touches the timer wheel only to drop the tasks' own sleeps.
//!   A region's close cancels its armed timer.
//! * **Finalize.** A task that overruns is cut off ([`cut_off_task`]: its
//!   future is dropped in place at its next run, its outcome is
//!   `Cancelled`); a region closes once every child has finished, then runs
//!   its finalizers under the same cleanup budget (`region/run.rs`).
//!
//! A spawn racing a request is never missed: the spawn registers the child
//! and then reads the region's cell, the request stores into the cell and
//! then sweeps the registry; `Region::adopt_task` and `registry.rs` say why one
//! of the two always sees the other (loom: `registry_adopt_racing_cancel_*` and
//! `region_spawn_racing_*` in `loom_tests.rs`). A region opened racing a
//! request on its parent is never missed either: the open adds it to its
//! owner task's list of open regions (a SeqCst count) and then reads the
//! parent's cell; the request stores into the cell (SeqCst) and then reads
//! that count, of the task it sweeps or of the parent's owner (loom:
//! `region_opened_in_a_body_racing_the_parents_cancel_is_cancelled`,
//! `region_opened_by_a_task_racing_its_parents_cancel_is_cancelled`).
//!
//! A request or a cut-off passes down a region tree one level per call
//! (region, its tasks, the regions they opened, ...). Past
//! [`MAX_DEPTH`] levels on one thread, a level is queued instead of
//! called (`pass_down`), and the outermost level runs the queue before it
//! returns: a tree thousands of regions deep is cancelled on a bounded
//! stack (each level recursing overflowed a worker's stack at about 3 000
//! levels, aborting the process: found by review).

use std::sync::Arc;

use super::{CancelKind, CancelReason, Origin};
use crate::loom::{AtomicU64, Ordering, lock};
use crate::region::{BodyPoller, Keeper, Region, is_alive};
use crate::sched::Schedule;
use crate::task::{
    COMPLETE, CUT_OFF, TaskRef, is_running_task, is_running_task_waker, wake_cancelled_task,
    wake_task,
};
use crate::time::Instant;
use crate::time::driver::TimerAction;

/// How many levels of a region tree one thread passes a request or a
/// cut-off down by recursion before it queues the rest (`pass_down`).
#[cfg(not(loom))]
const MAX_DEPTH: u32 = 16;

/// One level of passing a request or a cut-off down (`pass_down`).
enum Step {
    /// `Region::cancel` of the region, for the reason.
    Cancel(Arc<Region>, CancelReason),
    /// `Region::cut_off_all` of the region (`force`).
    CutOff(Arc<Region>, bool),
}

impl Step {
    fn run(self) {
        match self {
            Step::Cancel(r, reason) => r.cancel_owned(reason),
            Step::CutOff(r, force) => r.cut_off_all(force),
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    /// Levels of `pass_down` this thread is inside.
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// Steps queued past `MAX_DEPTH`, run by the outermost `pass_down`.
    static QUEUED: std::cell::RefCell<Vec<Step>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `step` (a request or a cut-off passed one level down the tree),
/// or queues it when this thread is already `MAX_DEPTH` levels deep; the
/// outermost call runs what was queued before it returns, so the whole
/// tree below is reached when the first caller's request returns, as with
/// plain recursion. (Under loom, whose threads share one thread-local, a
/// plain call: its models are a few levels deep.)
fn pass_down(step: Step) {
    #[cfg(not(loom))]
    {
        /// Puts the depth back, on unwind too.
        struct Restore(u32);
        impl Drop for Restore {
            fn drop(&mut self) {
                let _ = DEPTH.try_with(|d| d.set(self.0));
            }
        }
        let Ok(depth) = DEPTH.try_with(std::cell::Cell::get) else {
            // This thread's teardown: no queue; a plain call.
            step.run();
            return;
        };
        if depth >= MAX_DEPTH {
            let mut step = Some(step);
            let _ = QUEUED.try_with(|q| {
                if let Ok(mut q) = q.try_borrow_mut()
                    && let Some(s) = step.take()
                {
                    q.push(s);
                }
            });
            if let Some(s) = step {
                s.run();
            }
            return;
        }
        let _restore = Restore(depth);
        DEPTH.with(|d| d.set(depth + 1));
        step.run();
        if depth == 0 {
            // Each queued level runs one level down from here, and may
            // queue more: run until none is left.
            while let Some(s) = QUEUED
                .try_with(|q| q.try_borrow_mut().ok().and_then(|mut q| q.pop()))
                .ok()
                .flatten()
            {
                s.run();
            }
        }
    }
    #[cfg(loom)]
    step.run();
}

/// Requests cancellation of a task (strengthening its reason) and wakes it
/// so it reaches a checkpoint.
pub(crate) fn cancel_task(task: &TaskRef, reason: &CancelReason) {
    cancel_task_with(task, &Arc::new(reason.clone()), true);
}

/// [`cancel_task`]; `own_grace` gives this task a cleanup grace period of
/// its own, from now (a region cancelling all its tasks has one for all of
/// them); its timer is armed only if needed ([`arm_grace`]).
pub(crate) fn cancel_task_with(task: &TaskRef, reason: &Arc<CancelReason>, own_grace: bool) {
    if request_task(task, reason, own_grace, false) {
        wake_cancelled_task(task);
    }
}

/// [`cancel_task_with`] for a reason recorded in the cancel cell of the
/// task's own region (a sweep of that region, or a spawn into it after its
/// cancellation): the task's cell records it without a count of its own
/// (`CancelCell::request_borrowed`).
pub(crate) fn cancel_task_from_region(task: &TaskRef, reason: &Arc<CancelReason>) {
    if request_task(task, reason, false, true) {
        wake_cancelled_task(task);
    }
}

/// The request half of [`cancel_task_with`]: records the reason and passes
/// it on to the task's open regions. Returns whether the task must be
/// woken (the reason changed). `from_region`: `reason` is recorded in the
/// cancel cell of the task's own region.
#[inline]
fn request_task(
    task: &TaskRef,
    reason: &Arc<CancelReason>,
    own_grace: bool,
    from_region: bool,
) -> bool {
    let h = task.header();
    if own_grace
        && let Some(grace) = h.region.cleanup.grace
        && !h.cancel.is_requested()
    {
        // The grace period runs from the request (read as in
        // `Region::cancel_owned`); its timer is armed only if the task is
        // still running after a poll that saw it (`arm_grace`).
        set_grace_deadline(&h.grace_at, h.sched().now_ceil() + grace);
    }
    let requested = if from_region {
        debug_assert!(h.region.cancel.records(reason));
        // SAFETY: `reason` is recorded in the cell of the task's region
        // (the caller's promise), which keeps it until the region drops;
        // the task holds its region (`Header::region`) until the task is
        // freed, and its cell is read only while the task is alive (the
        // header's `region` drops before its `cancel`, and the cell's drop
        // does not read a reason it holds no count of).
        unsafe { h.cancel.request_borrowed(reason) }
    } else {
        h.cancel.request(reason)
    };
    let Some(first) = requested else {
        return false;
    };
    if first {
        // Relaxed: see `Task::run`: `polls` is the polling thread's, read
        // here as a bound; `polls_at_cancel` is one word read by the next run.
        h.polls_at_cancel
            .store(h.polls.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    // SeqCst: the load half of the Dekker pair with `add_open_region`
    // (the request's SeqCst store into the cell came first): a region
    // opened concurrently either is seen here or sees the request itself
    // (`Region::open` reads the owner's cell after registering).
    crate::loom::dekker();
    if h.open_count.load(Ordering::SeqCst) != 0 {
        cancel_open_regions(h, reason);
    }
    true
}

/// The tasks one sweep woke, queued together when it ends
/// (`Scheduler::schedule_cancelled`: one job for all of them on a worker,
/// not a push and a pop each). Dropping it queues what it holds, so an
/// unwind out of the sweep (a panic the catches below it missed) strands
/// no task marked `SCHEDULED`.
struct CancelWakes<'a> {
    sched: &'a dyn crate::sched::Scheduler,
    first: Option<TaskRef>,
    /// Never holds a buffer when the struct drops: `flush` (which `drop`
    /// calls first) hands any buffer on, leaving an empty vector, so there
    /// is nothing for a drop of its own to do.
    rest: std::mem::ManuallyDrop<Vec<TaskRef>>,
}

impl<'a> CancelWakes<'a> {
    fn new(sched: &'a dyn crate::sched::Scheduler) -> Self {
        CancelWakes {
            sched,
            first: None,
            rest: std::mem::ManuallyDrop::new(Vec::new()),
        }
    }

    /// Wakes `task` to see its cancellation: a re-poll request when it is
    /// the task being polled here (`task::wake_cancelled_task`), else it
    /// is marked `SCHEDULED` now and queued at [`flush`](Self::flush).
    /// Inlined into the sweep's loop (once per task).
    #[inline]
    fn wake(&mut self, task: &TaskRef, room: usize) {
        if is_running_task(task) {
            crate::budget::coop::request_repoll();
            return;
        }
        // The queue's reference is taken in the wake's compare-and-swap.
        let Some(queued) = crate::task::schedule_ref(task.header()) else {
            return;
        };
        // One task alone goes as it did (no batch to allocate); from the
        // second on, all of them go into the batch.
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(queued);
        } else {
            if self.rest.is_empty() {
                self.rest.reserve(room.max(2));
                self.rest.extend(self.first.take());
            }
            self.rest.push(queued);
        }
    }

    /// Queues the tasks woken so far.
    fn flush(&mut self) {
        if let Some(t) = self.first.take() {
            self.sched.schedule(t, Schedule::Cancel);
        }
        if self.rest.capacity() != 0 {
            self.sched
                .schedule_cancelled(std::mem::take(&mut *self.rest));
        }
    }
}

impl Drop for CancelWakes<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Passes a task's cancellation on to the regions its body has open (out
/// of line: most cancelled tasks have none).
#[cold]
#[inline(never)]
fn cancel_open_regions(h: &crate::task::Header, reason: &CancelReason) {
    // Made before the count the caller saw was stored (`add_open_region`).
    let Some(open) = h.open_regions.get_if_made() else {
        return;
    };
    let regions: Vec<_> = lock(open)
        .iter()
        .map(crate::task::OpenRegion::upgrade)
        .collect();
    if !regions.is_empty() {
        let child = reason.for_child();
        for r in regions {
            pass_down(Step::Cancel(r, child.clone()));
        }
    }
}

/// `grace_at` (of a task or a region): no grace period requested yet.
pub(crate) const GRACE_UNSET: u64 = 0;
/// `grace_at`: the grace timer has been armed (or needs none any more).
pub(crate) const GRACE_ARMED: u64 = u64::MAX;

/// Records when a grace period that starts now ends, unless one was
/// recorded already (the first request's counts). Called before the
/// request is stored in the cancel cell: whoever sees the request (the
/// cell's SeqCst store, read with a SeqCst load) sees this too.
fn set_grace_deadline(grace_at: &AtomicU64, at: Instant) {
    let at = at.as_nanos().clamp(GRACE_UNSET + 1, GRACE_ARMED - 1);
    // Release (the failure case: Relaxed): the value is published by the
    // cell's SeqCst store that follows; Release also orders it for an armer
    // that reads it directly. A lost race means another first request
    // recorded its deadline, which is as good (the same request instant,
    // give or take the race).
    let _ = grace_at.compare_exchange(GRACE_UNSET, at, Ordering::Release, Ordering::Relaxed);
}

/// Takes the recorded grace deadline for arming, once: `Some` for the one
/// caller that wins it.
fn take_grace_deadline(grace_at: &AtomicU64) -> Option<Instant> {
    // Acquire: pairs with `set_grace_deadline`'s Release (the caller saw the
    // request already, which publishes it too); Relaxed would do for the
    // value, Acquire keeps the reasoning local.
    let at = grace_at.load(Ordering::Acquire);
    if at == GRACE_UNSET || at == GRACE_ARMED {
        return None;
    }
    // AcqRel: one armer wins (an RMW); nothing else is published through it.
    grace_at
        .compare_exchange(at, GRACE_ARMED, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
        .then_some(Instant::from_nanos(at))
}

/// Arms the grace timers that a cancelled task still running needs: its
/// own (cancelled alone, through its handle or a budget) and those of the
/// cancelled regions above it. Called after a poll of the task returned
/// `Pending` while its cancellation was requested: a task that finishes at
/// the first poll after the request (the common case) never costs a timer.
///
/// The cut-off happens when it would with a timer armed at the request: a
/// task can only be cut off at a run, and every cancelled task is woken to
/// run; until that run ends `Pending`, there is nothing to cut off.
#[cold]
#[inline(never)]
pub(crate) fn arm_grace(task: &TaskRef) {
    let h = task.header();
    if let Some(at) = take_grace_deadline(&h.grace_at) {
        let timer = h
            .sched()
            .insert_timer(at, TimerAction::CutOff(task.downgrade()));
        // Kept, so that the task's finish cancels it (found by review: its
        // weak reference held a finished task's whole cell until the grace
        // period ended). Relaxed: written here and read by `finish`, both
        // by the task's runner (holding RUNNING; its runs are ordered by
        // the state word).
        h.grace_timer.store(timer.to_bits(), Ordering::Relaxed);
    }
    h.region.arm_grace_chain();
}

/// Marks a task to have its future dropped at its next run, and wakes it.
pub(crate) fn cut_off_task(task: TaskRef) {
    let h = task.header();
    // AcqRel: one cut-off wins (an RMW on the state word the runner CASes);
    // Release makes the flag visible to the runner's Acquire load.
    if h.state.fetch_or(CUT_OFF, Ordering::AcqRel) & (COMPLETE | CUT_OFF) != 0 {
        return;
    }
    if !h.cancel.is_requested() {
        cancel_task(
            &task,
            &CancelReason::new(CancelKind::Shutdown).with_origin(Origin::Runtime),
        );
    }
    wake_task(&task, Schedule::Cancel);
}

impl Region {
    /// Requests cancellation of this region and everything in it.
    pub(crate) fn cancel(&self, reason: &CancelReason) {
        self.cancel_owned(reason.clone());
    }

    /// [`cancel`](Self::cancel) with a reason the caller gives up (no
    /// clone of it).
    pub(crate) fn cancel_owned(&self, reason: CancelReason) {
        if let Some(grace) = self.cleanup.grace
            && !self.cancel.is_requested()
        {
            // One grace period for every task the request reaches here,
            // from now; its timer is armed only once something below is
            // still running after a poll that saw the request (`arm_grace`).
            // Now from the coarse clock, rounded up (`Clock::now_ceil`):
            // not earlier than the request, at most about a kernel tick
            // later, without the serialising counter read of `now` (about
            // 35 ns of a one-task cancel-and-drain on the 2-core machine).
            set_grace_deadline(&self.grace_at, self.sched.now_ceil() + grace);
        }
        if self
            .cancel
            .request_owned(super::cell::new_reason(reason))
            .is_none()
        {
            return;
        }
        self.sweep();
        self.cancel_nested();
        self.wake_body();
    }

    /// Passes this region's cancellation to the regions its body opened
    /// in it (its owner task's, not in the registry: `Region::open`). The
    /// request is in the cell before `nested` is read (`nested_regions`):
    /// a region opened meanwhile is either found here or reads the
    /// request itself.
    fn cancel_nested(&self) {
        let nested = self.nested_regions();
        if nested.is_empty() {
            return;
        }
        if let Some(reason) = self.cancel.get() {
            let child = reason.for_child();
            for r in nested {
                pass_down(Step::Cancel(r, child.clone()));
            }
        }
    }

    /// Wakes whoever polls the body to see a request: the waker its last
    /// poll registered (a combinator's, or another task's when a captured
    /// `Cx` opened this region there), else the owner task (which polls
    /// the body with its own waker, stored as no waker at all). When that
    /// is the task polling on this thread (the body cancelled its own
    /// region), a re-poll request (`task::is_running_task_waker`), with no
    /// clone of the waker and no upgrade of the owner's weak reference.
    pub(crate) fn wake_body(&self) {
        self.wake_body_if(true);
    }

    /// [`wake_body`](Self::wake_body); `unpolled`: also when the body has
    /// not been polled yet (then the owner task is woken).
    fn wake_body_if(&self, unpolled: bool) {
        // A request from inside the body, which its owner task polls with
        // its own waker (the common case of a body that cancels its own
        // region): the slot holds `Owner`, stored by this very poll, and
        // the wake is the re-poll request below, made without the lock.
        if crate::task::polling_own_body(self) {
            crate::budget::coop::request_repoll();
            return;
        }
        // Under the lock only a count of the shared waker is taken: no
        // user code runs there (found by review: a waker's `clone` that
        // cancelled the region again, with a stronger reason, came back
        // here and waited for the lock its own caller held).
        let waker = match &*lock(&self.body_waker) {
            BodyPoller::Waker(w) => Some(w.clone()),
            BodyPoller::Owner => None,
            BodyPoller::NotYet if unpolled => None,
            BodyPoller::NotYet => return,
        };
        match waker {
            Some(w) if is_running_task_waker(&w) => {
                crate::budget::coop::request_repoll();
                self.let_waker_go(w);
            }
            Some(w) => {
                // User code, caught: a panic must not unwind out of a
                // cancel or a cut-off half done.
                if crate::outcome::wake_by_ref_caught(&w) {
                    self.sched.stats().panic_caught();
                }
                self.let_waker_go(w);
            }
            None => {
                if self.owner_is_running() {
                    crate::budget::coop::request_repoll();
                } else if let Some(owner) = self.owner_task() {
                    wake_cancelled_task(&owner);
                }
            }
        }
    }

    /// Drops a count of the body's poller's waker taken by a wake: the
    /// waker itself if the slot let go of it meanwhile (user code: caught,
    /// and counted).
    fn let_waker_go(&self, w: Arc<std::task::Waker>) {
        if crate::outcome::drop_caught(w).is_some() {
            self.sched.stats().panic_caught();
        }
    }

    /// Arms the grace timer of this region and of each cancelled region
    /// above it whose timer is not armed yet (see [`arm_grace`]). Called
    /// when something below was still running after a poll that saw a
    /// cancellation: a task of this region, or this region's body.
    ///
    /// A region whose timer is armed, or that has no grace period, never
    /// needs arming again (both for good): the walk passes a run of them
    /// through their `grace_skip` pointers, and points the run at the
    /// first region above it that may still need arming (path
    /// compression). Each walk passed every region up to the root, so a
    /// tree `d` deep with a task still running at every level cost `d`
    /// squared (20 000 levels: minutes of one worker, found by review).
    #[cold]
    pub(crate) fn arm_grace_chain(&self) {
        let mut r: &Region = self;
        // The first region of the run of passable regions being walked.
        let mut run: Option<&Region> = None;
        loop {
            if r.cancel.is_requested()
                && let Some(at) = take_grace_deadline(&r.grace_at)
            {
                let handle = r
                    .sched
                    .insert_timer(at, TimerAction::CutOffRegion(r.weak_self()));
                // Kept so that the close can cancel it (the timer holds the
                // node's allocation until it fires). A close that ran
                // between the take and this store misses it: the timer
                // then fires on a closed region and does nothing.
                *lock(&r.grace_timer) = Some(handle);
            }
            // Acquire: as in `take_grace_deadline` (a hint here: a region
            // read not armed is only visited, never skipped).
            let passable =
                r.cleanup.grace.is_none() || r.grace_at.load(Ordering::Acquire) == GRACE_ARMED;
            if passable {
                run.get_or_insert(r);
                match r.grace_skip_or_parent() {
                    Some(up) => r = up,
                    None => return,
                }
            } else {
                if let Some(first) = run.take() {
                    first.point_run_at(r);
                }
                match r.parent.as_deref() {
                    Some(up) => r = up,
                    None => return,
                }
            }
        }
    }

    /// Where a walk goes up from this region once it is passable (armed,
    /// or without a grace period): the region its run of passable
    /// regions was last seen to lead to, else its parent.
    fn grace_skip_or_parent(&self) -> Option<&Region> {
        // Relaxed: the pointer is all that is read; any value stored is an
        // ancestor with only passable regions in between, for good.
        let skip = self.grace_skip.load(std::sync::atomic::Ordering::Relaxed);
        if skip.is_null() {
            self.parent.as_deref()
        } else {
            // SAFETY: `skip` was stored by `point_run_at` and is an
            // ancestor of this region, which holds its parent (and so
            // every ancestor) alive while it lives; `self` is borrowed.
            Some(unsafe { &*skip })
        }
    }

    /// Points the regions of a run of passable regions, from this one up
    /// to `above` (excluded: the first region above the run that may need
    /// arming), at `above`. The walk follows parent links (which never
    /// change) down to `above`'s depth, and a pointer only ever moves up:
    /// a walker that found `above` before another pointed the same run
    /// higher must not pull it back, nor store `above` above itself
    /// (following the other walker's pointers past `above`, a walk stored
    /// a region's child in it: two regions pointing at each other, and a
    /// later walk looped for ever; found by review).
    fn point_run_at(&self, above: &Region) {
        let target = std::ptr::from_ref(above).cast_mut();
        let mut n: &Region = self;
        while n.depth > above.depth {
            // Relaxed: see `grace_skip_or_parent`.
            let mut cur = n.grace_skip.load(std::sync::atomic::Ordering::Relaxed);
            loop {
                // SAFETY: a stored pointer is an ancestor of `n`, alive
                // while `n` is (see `grace_skip_or_parent`).
                if !cur.is_null() && unsafe { (*cur).depth } <= above.depth {
                    // Already as high or higher: so is the rest of the run
                    // (pointed there by the walk that did this), or it
                    // will be.
                    return;
                }
                match n.grace_skip.compare_exchange_weak(
                    cur,
                    target,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            match n.parent.as_deref() {
                Some(up) => n = up,
                None => return,
            }
        }
    }

    /// One pass over the registry: drops finished children, and passes the
    /// current cancel reason to live ones. Passes never overlap: a request
    /// that arrives during one makes the running sweeper go again.
    pub(crate) fn sweep(&self) {
        // AcqRel: Release publishes our request (stored in the cell before
        // this) to the running sweeper, whose `fetch_sub` below reads this
        // increment (Acquire) and goes round again, loading the new reason.
        if self.sweeps.fetch_add(1, Ordering::AcqRel) != 0 {
            return;
        }
        loop {
            // Acquire: see the requests counted so far (their reasons are in the
            // cell before their increments).
            let seen = self.sweeps.load(Ordering::Acquire);
            // Borrowed from this region's cell (no count taken): the cell
            // keeps it while `self` lives.
            let reason = self.cancel.get_borrowed();
            let mut wakes = CancelWakes::new(&*self.sched);
            // The tasks only: the regions below are reached through the
            // tasks that opened them (`request_task` passes the request
            // on to a task's open regions) and through this region's
            // owner (`cancel_nested`).
            let mut apply = |t: &TaskRef, room: usize| {
                let Some(reason) = &reason else { return };
                // The reason is this region's (loaded from its cell above),
                // and `t` is this region's task.
                if request_task(t, reason, false, true) {
                    wakes.wake(t, room);
                }
            };
            let mut swept = lock(&self.swept);
            // Those seen before: drop the finished, pass the reason on.
            let incoming = self.children.len();
            let room = swept.len() + incoming;
            swept.retain(|c| {
                let alive = is_alive(c);
                if alive {
                    apply(c, room);
                }
                alive
            });
            // Those registered since: the same, then keep them here. The
            // take (after this pass loaded the reason) is the sweep's half
            // of the handshake with `adopt_task`. (Room for them first: the
            // registry's length is an estimate, which is all this needs.)
            if swept.capacity() == 0 {
                if incoming > 0 {
                    // The replaced vector has no buffer (capacity 0) and
                    // no element: nothing to drop.
                    std::mem::forget(std::mem::replace(
                        &mut *swept,
                        crate::region::child_buf(incoming),
                    ));
                }
            } else {
                swept.reserve(incoming);
            }
            // Under `swept`'s lock: `take_locked` (no read-modify-write
            // for the taken count). Relaxed: published by the take's swap
            // (`Region::swept_used`).
            self.swept_used.store(true, Ordering::Relaxed);
            let mut keeper = Keeper::default();
            for c in self.children.take_locked() {
                if keeper.keeps(&swept, &c) {
                    apply(&c, room);
                    swept.push(c);
                }
            }
            drop(swept);
            wakes.flush();
            // AcqRel: Acquire reads any increment that came in meanwhile (and so
            // its request); Release hands the finished pass to the next sweeper.
            if self.sweeps.fetch_sub(seen, Ordering::AcqRel) == seen {
                break;
            }
        }
    }

    /// Cuts off the tasks below this region (shutdown past its drain
    /// deadline). Unless `force`, a task that is only waiting for a region
    /// of its own to drain is spared: cutting off below it lets it finish
    /// normally.
    pub(crate) fn cut_off_all(&self, force: bool) {
        // The regions the body opened here first (through the owner task):
        // flagged before this region's body loses its masks below, a
        // finalizer of theirs that ends because this body's masks went
        // finds its own region cut off (and is counted cut off).
        for r in self.nested_regions() {
            pass_down(Step::CutOff(r, force));
        }
        // The body, if still running (in its owner task), loses its masks:
        // wake it to see the cancellation. That poll is its last: still
        // running after it, it is dropped at the next (`run_region`).
        if force
            && self.cancel.is_requested()
            // AcqRel: one cut-off wakes the body (an RMW); Release publishes the
            // flag to `is_cut_off`'s Acquire.
            && !self.cut_off.swap(true, Ordering::AcqRel)
        {
            // A body not polled yet is not woken (it sees the cut-off at
            // its first poll).
            self.wake_body_if(false);
        }
        let seen: Vec<TaskRef> = {
            let mut swept = lock(&self.swept);
            // Those registered since the last sweep join the swept ones
            // first: every take of the registry moves what it took into
            // `swept` under this lock, so a sweep running after this never
            // misses a task that the cut-off took.
            // Relaxed: as in `sweep`.
            self.swept_used.store(true, Ordering::Relaxed);
            let mut keeper = Keeper::default();
            for t in self.children.take_locked() {
                if keeper.keeps(&swept, &t) {
                    swept.push(t);
                }
            }
            swept.clone()
        };
        for t in seen {
            // The regions the task opened here first (not registered here:
            // reached through the task, as a request is).
            for r in t.header().open_regions_in(self) {
                pass_down(Step::CutOff(r, force));
            }
            if force || !t.header().has_live_regions() {
                cut_off_task(t);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::time::Duration;
    use crate::{CancelReason, Runtime};

    fn rt() -> Runtime {
        Runtime::one_worker_for_tests()
    }

    /// A reviewer's interleaving of two walks arming grace timers, played
    /// in order on one thread. Regions root <- a <- b <- p, `p` without a
    /// grace period. Walk 1 (from `p`, `b` not cancelled yet) found `b` the
    /// first region that may need arming and is about to point `p` at it;
    /// meanwhile walk 2 (after `b` was cancelled and armed) pointed `p`
    /// and `b` at `a`. Walk 1's pointing then followed `p`'s new pointer
    /// past `b` and stored `b` in `a` (a region pointing at its own
    /// child: `a` and `b` at each other, and a later walk looped for
    /// ever). Pointers now only move up, below the target's depth.
    #[test]
    fn a_late_walk_never_points_a_region_at_its_child() {
        use crate::budget::CleanupBudget;
        use crate::region::RegionOptions;
        use std::sync::atomic::Ordering::Relaxed;
        let rt = rt();
        let out = rt.block_on(|cx| async move {
            let grace = RegionOptions::fail_fast().cleanup(CleanupBudget::default());
            let none = RegionOptions::fail_fast().cleanup(CleanupBudget::UNLIMITED);
            let r = cx
                .region_with(grace, move |cx| async move {
                    cx.region_with(grace, move |cx| async move {
                        cx.region_with(none, move |cx| async move {
                            let p = cx.core().region_node().clone();
                            let b = p.parent.clone().expect("b");
                            let a = b.parent.clone().expect("a");
                            assert!(p.cleanup.grace.is_none() && b.cleanup.grace.is_some());
                            let ptr = |r: &super::Region| std::ptr::from_ref(r).cast_mut();
                            // Walk 2's pointing.
                            p.grace_skip.store(ptr(&a), Relaxed);
                            b.grace_skip.store(ptr(&a), Relaxed);
                            // Walk 1's, late.
                            p.point_run_at(&b);
                            let a_skip = a.grace_skip.load(Relaxed);
                            let p_skip = p.grace_skip.load(Relaxed);
                            Ok::<_, ()>(
                                a_skip != ptr(&b)
                                    && (a_skip.is_null() || a_skip != ptr(&p))
                                    && p_skip == ptr(&a),
                            )
                        })
                        .await
                        .ok()
                        .ok_or(())
                    })
                    .await
                    .ok()
                    .ok_or(())
                })
                .await;
            Ok::<_, ()>(r.ok())
        });
        assert_eq!(out.ok(), Some(Some(true)));
    }

    /// A task or region with a budget deadline an hour away that finishes
    /// now leaves no timer behind: pending, the timer held the task's
    /// allocation (its future and captures) or the region's node until the
    /// deadline (found by review: 430 MiB for 100 000 finished tasks).
    #[test]
    fn a_finished_task_or_region_cancels_its_deadline_timer() {
        use crate::{Budget, RegionOptions};
        let rt = rt();
        let out = rt.block_on(move |cx| async move {
            let hour = Budget::UNLIMITED.with_deadline(cx.now() + Duration::from_secs(3600));
            for _ in 0..10 {
                let h = cx.spawn_with(hour, move |cx| async move {
                    cx.yield_now().await.ok();
                });
                h.await.ok().ok_or(())?;
                cx.region_with(RegionOptions::fail_fast().budget(hour), |_| async {
                    Ok::<_, ()>(())
                })
                .await
                .ok()
                .ok_or(())?;
            }
            Ok::<_, ()>(())
        });
        assert!(out.is_ok());
        assert_eq!(rt.pending_timers(), 0, "no deadline timer left");
    }

    /// A cancelled region whose tasks all finish at the first poll after
    /// the request never arms its grace timer: nothing is left in the
    /// wheel (each sleep deregistered when its task finished).
    #[test]
    fn a_drain_that_finishes_at_once_arms_no_grace_timer() {
        let rt = rt();
        let out = rt.block_on(|cx| async move {
            let r = cx
                .region(|cx| async move {
                    let hs: Vec<_> = (0..3)
                        .map(|_| {
                            cx.spawn(|cx| async move { cx.sleep(Duration::from_secs(3600)).await })
                        })
                        .collect();
                    cx.yield_now().await.map_err(|_| ())?;
                    cx.cancel(CancelReason::user("stop"));
                    drop(hs);
                    Ok::<_, ()>(())
                })
                .await;
            Ok::<_, ()>(r.is_ok())
        });
        assert_eq!(out.ok(), Some(true));
        assert_eq!(rt.pending_timers(), 0);
    }

    /// A cancelled region's close lets go of its tasks (each one freed,
    /// with the output it kept) although it keeps its swept list's buffer
    /// for the next region on this thread (`region::recycle_child_buf`):
    /// region after region, nothing a task owned outlives its region.
    #[test]
    fn a_cancelled_regions_close_frees_its_tasks_and_keeps_no_child() {
        let rt = rt();
        let token = std::sync::Arc::new(());
        let t = token.clone();
        let out = rt.block_on(move |cx| async move {
            let mut counts = Vec::new();
            for n in [3, 40, 3] {
                let body_t = t.clone();
                let r = cx
                    .region(move |cx| async move {
                        let hs: Vec<_> = (0..n)
                            .map(|_| {
                                let t = body_t.clone();
                                // Sees the request at its sleep and returns
                                // the clone: its outcome keeps it until the
                                // task is freed.
                                cx.spawn(move |cx| async move {
                                    let _ = cx.sleep(Duration::from_secs(3600)).await;
                                    t
                                })
                            })
                            .collect();
                        cx.yield_now().await.map_err(|_| ())?;
                        cx.cancel(CancelReason::user("stop"));
                        drop(hs);
                        Ok::<_, ()>(())
                    })
                    .await;
                counts.push((r.is_ok(), std::sync::Arc::strong_count(&t)));
            }
            Ok::<_, ()>(counts)
        });
        // Only `t` itself (and `token`) hold the value after each close.
        assert_eq!(out.ok(), Some(vec![(true, 2); 3]));
        assert_eq!(std::sync::Arc::strong_count(&token), 1);
    }

    /// A region opened by a task of its parent, or by its parent's body,
    /// is counted in the parent but not registered there (it is reached
    /// through its owner task): region after region, the parent's
    /// registry stays empty, and a closed region's node is freed at its
    /// close (no weak reference left to hold it until a later sweep).
    #[test]
    fn a_region_reached_through_its_owner_task_is_not_registered_in_its_parent() {
        let rt = rt();
        let out = rt.block_on(|cx| async move {
            let parent = cx.core().region_node().clone();
            let mut nodes = Vec::new();
            for _ in 0..100 {
                // Opened by the parent's body (its owner task), and one
                // level further down by that region's body.
                let node = cx
                    .region(|cx| async move {
                        let inner = cx.core().region_node().clone();
                        let deeper = cx.region(|_| async move { Ok::<_, ()>(()) }).await;
                        Ok::<_, ()>((std::sync::Arc::downgrade(&inner), deeper.is_ok()))
                    })
                    .await;
                let (node, deeper_ok) = node.ok().expect("the region closes Ok");
                assert!(deeper_ok);
                nodes.push(node);
            }
            let after_regions = parent.children.len();
            // And by a task of the parent (the task itself is registered).
            let task_region = cx
                .spawn(|cx| async move {
                    let r = cx
                        .region(|cx| async move {
                            Ok::<_, ()>(std::sync::Arc::downgrade(cx.core().region_node()))
                        })
                        .await;
                    r.ok().expect("the region closes Ok")
                })
                .await
                .ok()
                .expect("the task finishes Ok");
            nodes.push(task_region);
            Ok::<_, ()>(([after_regions, parent.children.len()], nodes))
        });
        let (registered, nodes) = out.ok().expect("block_on body returns Ok");
        assert_eq!(registered, [0, 1], "no region was registered in its parent");
        for n in nodes {
            assert_eq!(n.weak_count(), 0, "a closed region's node is freed");
        }
    }

    /// A task with many regions open at once closes them in any order:
    /// each close finds its entry in the task's list by the index the
    /// region keeps (`Region::open_at`), and the entry moved into the gap
    /// learns its new index. After every close the list holds exactly the
    /// regions still open, each at the index it records.
    #[test]
    fn regions_open_at_once_close_in_any_order_and_keep_their_index() {
        use std::sync::atomic::Ordering as O;
        let rt = rt();
        let out = rt.block_on(|cx| async move {
            let owner = cx.core().header();
            let lock = crate::loom::lock;
            let check = |open_ids: &mut Vec<crate::RegionId>| {
                let list = lock(owner.open_regions.get());
                let mut listed: Vec<_> = list
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        assert_eq!(r.get().open_at.load(O::Relaxed), i, "index kept");
                        r.get().id
                    })
                    .collect();
                listed.sort();
                open_ids.sort();
                assert_eq!(&listed, open_ids, "the list holds the open regions");
            };
            // Opened at once (a region opens when `region` is called), each
            // body reporting its id; closed first-opened first, then
            // last-opened first, then from the middle out.
            // (The list may hold regions of the harness already: the body
            // runs in one.)
            let before = lock(owner.open_regions.get()).len();
            for order in 0..3 {
                let mut futs: Vec<_> = (0..64)
                    .map(|_| Some(cx.region(|cx| async move { Ok::<_, ()>(cx.region_id()) })))
                    .collect();
                let mut open: Vec<_> = {
                    let list = lock(owner.open_regions.get());
                    list.iter().map(|r| r.get().id).collect()
                };
                assert_eq!(open.len(), before + 64);
                let picks: Vec<usize> = match order {
                    0 => (0..64).collect(),
                    1 => (0..64).rev().collect(),
                    _ => (0..32).flat_map(|i| [31 - i, 32 + i]).collect(),
                };
                for i in picks {
                    let id = futs[i].take().expect("awaited once").await;
                    let id = id.ok().expect("the region closes Ok");
                    open.retain(|&o| o != id);
                    check(&mut open);
                }
                assert_eq!(open.len(), before);
            }
            Ok::<_, ()>(())
        });
        assert!(out.is_ok());
    }

    /// A context kept after its task finished opens region after region
    /// in the task's region: each open registers the finished task again
    /// (so the region's cancellation reaches what is open through it), and
    /// the registry's compaction keeps one entry of it, so a thousand
    /// opens leave the registry and the swept list small.
    #[test]
    fn regions_opened_through_a_finished_tasks_cx_keep_the_registry_small() {
        let rt = rt();
        let out = rt.block_on(|cx| async move {
            let r = cx
                .region(|pcx| async move {
                    let parent = pcx.core().region_node().clone();
                    let task_cx = pcx.spawn(|tcx| async move { tcx }).await;
                    let task_cx = task_cx.ok().expect("the task finishes");
                    for _ in 0..1000 {
                        let r = task_cx.region(|_| async { Ok::<_, ()>(()) }).await;
                        assert!(r.is_ok());
                    }
                    let held = parent.children.len() + crate::loom::lock(&parent.swept).len();
                    Ok::<_, ()>(held)
                })
                .await;
            Ok::<_, ()>(r.ok())
        });
        let held = out.ok().flatten().expect("the regions close Ok");
        assert!(held <= 70, "{held} registry entries after 1 000 opens");
    }

    /// A task that is still running after the poll that saw the request
    /// arms the region's grace timer; the region's close cancels it.
    #[test]
    fn a_slow_drain_arms_the_grace_timer_and_the_close_cancels_it() {
        let rt = rt();
        let out = rt.block_on(|cx| async move {
            let r = cx
                .region(|cx| async move {
                    let (tx, rx) = std::sync::mpsc::channel::<usize>();
                    let _h = cx.spawn(move |cx| async move {
                        let _ = cx.sleep(Duration::from_secs(3600)).await;
                        // Cleanup that takes one more turn.
                        let mut yielded = false;
                        std::future::poll_fn(|task| {
                            if yielded {
                                return std::task::Poll::Ready(());
                            }
                            yielded = true;
                            task.waker().wake_by_ref();
                            std::task::Poll::Pending
                        })
                        .await;
                        let _ = tx.send(1);
                    });
                    cx.yield_now().await.map_err(|_| ())?;
                    cx.cancel(CancelReason::user("stop"));
                    Ok::<_, ()>(rx)
                })
                .await;
            Ok::<_, ()>(r.ok().map(|rx| rx.try_recv().ok()))
        });
        // The cleanup ran to its end (not cut off), and the armed timer is
        // gone with the region.
        assert_eq!(out.ok(), Some(Some(Some(1))));
        assert_eq!(rt.stats().tasks_cut_off, 0);
        assert_eq!(rt.pending_timers(), 0);
    }
}
