//! The lab's scheduler: a ready set, a virtual clock, the timer driver,
//! ids from a counter, no blocking pool (jobs run inline), and what the
//! oracles watch through [`Scheduler::observe`].
//!
//! Every method is called on the lab's one thread (the tasks' polls and the
//! timers it fires); the mutexes are never contended, they only make the
//! type `Sync` as the seam requires.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use crate::sched::{Observed, Schedule, Scheduler, Stats};
use crate::task::TaskRef;
use crate::time::Instant;
use crate::time::driver::{TimerAction, TimerDriver, TimerHandle};
use crate::{RegionId, Severity};
use std::sync::atomic::{AtomicU64, Ordering};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the oracles need to know, gathered while the program runs.
#[derive(Default)]
pub(super) struct Watch {
    /// Regions made and not yet detached.
    pub(super) open: BTreeSet<RegionId>,
    /// The worst failure (`Err` or `Panicked`) each region's children
    /// reported.
    pub(super) worst_child: BTreeMap<RegionId, Severity>,
    /// Regions whose close gave an outcome below their children's worst
    /// failure: (region, children's worst, outcome).
    pub(super) lattice: Vec<(RegionId, Severity, Severity)>,
    pub(super) finalizers_added: u64,
    pub(super) finalizers_ended: u64,
}

/// The lab's implementation of the scheduler seam.
pub(super) struct LabSched {
    ready: Mutex<Vec<TaskRef>>,
    /// Virtual time, in nanoseconds: moved only by the lab's run loop.
    now: AtomicU64,
    timers: TimerDriver,
    stats: Stats,
    ids: AtomicU64,
    watch: Mutex<Watch>,
    /// Planted (test-only): grace-period cut-off timers are never armed.
    skip_grace_timers: bool,
    /// Clock looks (one per 32 checkpoints) the task being polled may
    /// still make: the run's steps left, set before each poll.
    looks_left: AtomicU64,
    /// The task being polled ran out of `looks_left`: it spun.
    spun: std::sync::atomic::AtomicBool,
    /// The run is over: a `Cx` kept past it fails fast (`is_shut_down`).
    over: std::sync::atomic::AtomicBool,
}

impl LabSched {
    pub(super) fn new(skip_grace_timers: bool) -> Self {
        LabSched {
            ready: Mutex::new(Vec::new()),
            now: AtomicU64::new(0),
            timers: TimerDriver::new(),
            stats: Stats::default(),
            ids: AtomicU64::new(1),
            watch: Mutex::new(Watch::default()),
            skip_grace_timers,
            looks_left: AtomicU64::new(u64::MAX),
            spun: std::sync::atomic::AtomicBool::new(false),
            over: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Before a poll: the clock looks its checkpoints may make.
    pub(super) fn allow_looks(&self, n: u64) {
        // Relaxed: one thread.
        self.looks_left.store(n, Ordering::Relaxed);
        crate::budget::coop::reset_clock_look();
    }

    /// After a poll: whether the task spun past its looks (and was
    /// cancelled at its next checkpoint).
    pub(super) fn take_spun(&self) -> bool {
        // Relaxed: one thread.
        self.spun.swap(false, Ordering::Relaxed)
    }

    /// Takes the ready task that `pick` chooses (given how many are ready),
    /// or `None` when none is. `pick` may rearrange the list (the PCT
    /// picker keeps it as a heap); the task chosen is taken with a
    /// `swap_remove`, and new ones are appended.
    pub(super) fn take_ready(
        &self,
        pick: impl FnOnce(&mut [TaskRef]) -> usize,
    ) -> Option<(TaskRef, usize)> {
        let mut ready = lock(&self.ready);
        if ready.is_empty() {
            return None;
        }
        let n = ready.len();
        let i = pick(&mut ready);
        Some((ready.swap_remove(i), n))
    }

    /// Whether a task is ready to run.
    pub(super) fn has_ready(&self) -> bool {
        !lock(&self.ready).is_empty()
    }

    /// Fires the timers due now; else returns when the next one is due.
    pub(super) fn fire_timers(&self) -> (bool, Option<Instant>) {
        self.timers.process(self.now(), &self.stats)
    }

    /// Moves virtual time forward to `to` (never backwards).
    pub(super) fn advance(&self, to: Instant) {
        // Relaxed: one thread reads and writes it.
        self.now.fetch_max(to.as_nanos(), Ordering::Relaxed);
    }

    /// Puts virtual time back to `to`: only for a run that ends in a
    /// deadlock, whose clock went through the wheel's boundaries looking
    /// for a timer that would fire and found none (no task saw those
    /// times).
    pub(super) fn rewind(&self, to: Instant) {
        // Relaxed: one thread reads and writes it.
        self.now.store(to.as_nanos(), Ordering::Relaxed);
    }

    pub(super) fn watch(&self) -> MutexGuard<'_, Watch> {
        lock(&self.watch)
    }

    /// Drops everything queued and every pending timer (the end of a run:
    /// they hold tasks, which hold this scheduler), and marks the run over:
    /// no task will be run, no timer fired, any more.
    pub(super) fn clear(&self) {
        // Relaxed: one thread; a `Cx` sent elsewhere went through a
        // synchronising hand-off after this.
        self.over.store(true, Ordering::Relaxed);
        // Timers first: clearing wakes their wakers, and a task woken now
        // is not queued (`schedule`, once the run is over).
        self.timers
            .clear(std::ptr::from_ref(self).cast(), &self.stats);
        let ready = std::mem::take(&mut *lock(&self.ready));
        drop(ready);
    }
}

impl Scheduler for LabSched {
    fn is_shut_down(&self) -> bool {
        // Relaxed: see `clear`.
        self.over.load(Ordering::Relaxed)
    }

    fn poll_timers(&self) -> bool {
        // Virtual time does not move during a poll: nothing to fire. A look
        // is counted against the run's steps left instead, so a task that
        // spins in one poll (checkpointing, never awaiting) is stopped at
        // the step limit, as one that spins across polls is.
        // Relaxed: one thread.
        let left = self.looks_left.load(Ordering::Relaxed);
        if left == 0 {
            self.spun.store(true, Ordering::Relaxed);
            return true;
        }
        self.looks_left.store(left - 1, Ordering::Relaxed);
        false
    }

    fn schedule(&self, task: TaskRef, _how: Schedule) {
        // Relaxed: see `clear`. Once the run is over nothing runs a task
        // queued here; the reference is let go (a queue that kept it would
        // keep the task, and the task this scheduler, for ever).
        if self.over.load(Ordering::Relaxed) {
            drop(task);
            return;
        }
        lock(&self.ready).push(task);
    }

    fn now(&self) -> Instant {
        // Relaxed: see `advance`.
        Instant::from_nanos(self.now.load(Ordering::Relaxed))
    }

    fn insert_timer(&self, at: Instant, action: TimerAction) -> TimerHandle {
        if self.skip_grace_timers
            && matches!(
                action,
                TimerAction::CutOff(_) | TimerAction::CutOffRegion(_)
            )
        {
            // The planted bug: the grace period is never enforced (the
            // timer fires when it would, and does nothing).
            let nothing = TimerAction::Wake(std::task::Waker::noop().clone());
            return self.timers.insert(at, nothing).0;
        }
        self.timers.insert(at, action).0
    }

    fn cancel_timer(&self, handle: TimerHandle) {
        self.timers.cancel(handle, &self.stats);
    }

    fn next_id(&self) -> u64 {
        // Relaxed: one thread.
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn blocking(&self) -> Option<&crate::blocking::BlockingPool> {
        None
    }

    fn observes(&self) -> bool {
        true
    }

    fn observe(&self, event: Observed) {
        let mut w = lock(&self.watch);
        match event {
            Observed::RegionOpened(id) => {
                w.open.insert(id);
            }
            Observed::RegionDetached(id) => {
                w.open.remove(&id);
                w.worst_child.remove(&id);
            }
            Observed::ChildFinished(id, s) => {
                if matches!(s, Severity::Err | Severity::Panicked) {
                    let e = w.worst_child.entry(id).or_insert(s);
                    *e = (*e).max(s);
                }
            }
            Observed::RegionClosed(id, out) => {
                if let Some(&worst) = w.worst_child.get(&id)
                    && out < worst
                {
                    w.lattice.push((id, worst, out));
                }
            }
            Observed::FinalizerAdded => w.finalizers_added += 1,
            Observed::FinalizerEnded => w.finalizers_ended += 1,
        }
    }
}
