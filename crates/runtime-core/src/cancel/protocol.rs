//! The cancellation protocol: request, drain, finalize.
//!
//! * **Request.** [`cancel_task`] records the reason in the task's
//!   [`CancelCell`](super::CancelCell) (reasons only strengthen), passes it
//!   on to the regions the task has open, and wakes the task so that it
//!   reaches a checkpoint. [`Region::cancel`] records it in the region's
//!   cell and sweeps the region's children, passing the reason to each
//!   task (as is) and each child region (as `ParentCancelled`), then wakes
//!   whoever polls the region's body.
//! * **Drain.** A cancelled task sees the request at its next checkpoint
//!   (level-triggered) and returns; it gets the cleanup budget of its
//!   region: a number of polls (counted in `Task::run`) and a grace period
//!   (a timer armed at the first request, one per region sweep or per task
//!   cancelled alone).
//! * **Finalize.** A task that overruns is cut off ([`cut_off_task`]: its
//!   future is dropped in place at its next run, its outcome is
//!   `Cancelled`); a region closes once every child has finished, then runs
//!   its finalizers under the same cleanup budget (`region/run.rs`).
//!
//! A spawn racing a request is never missed: the spawn registers the child
//! and then reads the region's cell, the request stores into the cell and
//! then sweeps the registry; `Region::adopt` and `registry.rs` say why one
//! of the two always sees the other (loom: `registry_adopt_racing_cancel_*` and
//! `region_spawn_racing_*` in `loom_tests.rs`).

use std::sync::{Arc, Weak};

use super::{CancelKind, CancelReason, Origin};
use crate::loom::{Ordering, lock};
use crate::region::{Child, Region};
use crate::sched::Schedule;
use crate::task::{COMPLETE, CUT_OFF, Runnable, wake_task};
use crate::time::driver::TimerAction;

/// Requests cancellation of a task (strengthening its reason) and wakes it
/// so it reaches a checkpoint.
pub(crate) fn cancel_task(task: &Arc<dyn Runnable>, reason: &CancelReason) {
    cancel_task_with(task, &Arc::new(reason.clone()), true);
}

/// [`cancel_task`]; `own_grace` arms the cleanup grace timer for this task
/// alone (a region cancelling all its tasks arms one for all of them).
pub(crate) fn cancel_task_with(
    task: &Arc<dyn Runnable>,
    reason: &Arc<CancelReason>,
    own_grace: bool,
) {
    let h = task.header();
    let Some(first) = h.cancel.request(reason) else {
        return;
    };
    if first {
        // Relaxed: see `Task::run`: `polls` is the polling thread's, read
        // here as a bound; `polls_at_cancel` is one word read by the next run.
        h.polls_at_cancel
            .store(h.polls.load(Ordering::Relaxed), Ordering::Relaxed);
        if let (Some(grace), true) = (h.region.cleanup.grace, own_grace) {
            let at = h.sched().now() + grace;
            h.sched()
                .insert_timer(at, TimerAction::CutOff(Arc::downgrade(task)));
        }
    }
    // SeqCst: the load half of the Dekker pair with `add_open_region`
    // (the request's SeqCst store into the cell came first): a region
    // opened concurrently either is seen here or sees the request itself
    // (`Region::open` reads the owner's cell after registering).
    let regions: Vec<_> = if h.open_count.load(Ordering::SeqCst) == 0 {
        Vec::new()
    } else {
        lock(&h.open_regions)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    };
    if !regions.is_empty() {
        let child = reason.for_child();
        for r in regions {
            r.cancel(&child);
        }
    }
    wake_task(task, Schedule::Cancel);
}

/// Marks a task to have its future dropped at its next run, and wakes it.
pub(crate) fn cut_off_task(task: Arc<dyn Runnable>) {
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
        let Some(first) = self.cancel.request(&Arc::new(reason.clone())) else {
            return;
        };
        if first {
            // One grace timer for every task the request reaches here.
            if let Some(grace) = self.cleanup.grace {
                let at = self.sched.now() + grace;
                self.sched
                    .insert_timer(at, TimerAction::CutOffRegion(self.this.clone()));
            }
        }
        self.sweep();
        // Wake whoever polls the body to see the request: the waker its
        // last poll registered (the owner task's, or another task's when a
        // captured `Cx` opened this region there), else the owner task.
        match self.body_waker() {
            Some(w) => {
                if crate::outcome::wake_caught(w) {
                    self.sched.stats().panic_caught();
                }
            }
            None => {
                if let Some(owner) = self.owner_task() {
                    wake_task(&owner, crate::sched::Schedule::Cancel);
                }
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
            let reason = self.cancel.get_arc();
            let child_reason = reason.as_ref().map(|r| r.for_child());
            let apply = |c: &Child| {
                let Some(reason) = &reason else { return };
                match c {
                    Child::Task(t) => cancel_task_with(t, reason, false),
                    Child::Region(r) => {
                        if let (Some(r), Some(cr)) = (r.upgrade(), &child_reason) {
                            r.cancel(cr);
                        }
                    }
                }
            };
            let mut swept = lock(&self.swept);
            // Those seen before: drop the finished, pass the reason on.
            swept.retain(|c| {
                let alive = c.is_alive();
                if alive {
                    apply(c);
                }
                alive
            });
            // Those registered since: the same, then keep them here. The
            // take (after this pass loaded the reason) is the sweep's half
            // of the handshake with `adopt`.
            for c in self.children.take() {
                if c.is_alive() {
                    apply(&c);
                    swept.push(c);
                }
            }
            drop(swept);
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
        // The body, if still running (in its owner task, which is not ours
        // to drop), loses its masks: wake it to see the cancellation.
        if force
            && self.cancel.is_requested()
            // AcqRel: one cut-off wakes the body (an RMW); Release publishes the
            // flag to `is_cut_off`'s Acquire.
            && !self.cut_off.swap(true, Ordering::AcqRel)
            && let Some(w) = self.body_waker()
            && crate::outcome::wake_caught(w)
        {
            self.sched.stats().panic_caught();
        }
        let seen: Vec<Child> = {
            let mut swept = lock(&self.swept);
            // Those registered since the last sweep join the swept ones
            // first: every take of the registry moves what it took into
            // `swept` under this lock, so a sweep running after this never
            // misses a child that the cut-off took.
            swept.extend(self.children.take().filter(Child::is_alive));
            swept
                .iter()
                .map(|c| match c {
                    Child::Task(t) => Child::Task(t.clone()),
                    Child::Region(r) => Child::Region(r.clone()),
                })
                .collect()
        };
        for c in &seen {
            self.cut_off_child(c, force);
        }
    }

    pub(crate) fn cut_off_child(&self, c: &Child, force: bool) {
        match c {
            Child::Task(t) => {
                if force || !t.header().has_live_regions() {
                    cut_off_task(t.clone());
                }
            }
            Child::Region(r) => {
                if let Some(r) = r.upgrade() {
                    r.cut_off_all(force);
                }
            }
        }
    }
}
