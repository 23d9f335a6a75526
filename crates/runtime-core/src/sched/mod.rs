//! The scheduler seam and the multi-threaded work-stealing scheduler.
//!
//! Tasks talk to their scheduler only through [`Scheduler`]: enqueue,
//! time, timers, ids, counters. The multi-threaded pool in `pool.rs`
//! implements it (and, with one core driven by `block_on`, is the
//! current-thread flavour); a deterministic lab scheduler with virtual
//! time implements the same trait.

#[cfg(any(test, loom))]
pub(crate) mod detached;
pub(crate) mod idle;
pub(crate) mod pool;

use std::sync::Arc;

use crate::loom::{AtomicU64, Ordering};
use crate::task::Runnable;
use crate::time::Instant;
use crate::time::driver::{TimerAction, TimerHandle};
use crossbeam_utils::CachePadded;

/// How a task is being made runnable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// Woken by a task running on this worker: run it next (LIFO slot).
    Wake,
    /// Newly spawned: back of the local queue.
    Queue,
    /// Woken to see a cancellation: back of the local queue, without
    /// waking another worker (a drain is many short polls; spreading them
    /// over workers costs more in contention than it saves).
    Cancel,
    /// It woke itself while running (a yield): back of the local queue.
    Yield,
}

/// What tasks need from whatever schedules them.
pub(crate) trait Scheduler: Send + Sync + 'static {
    /// Makes `task` (whose state already says SCHEDULED) run soon.
    fn schedule(&self, task: Arc<dyn Runnable>, how: Schedule);
    /// The time, from the runtime's clock.
    fn now(&self) -> Instant;
    /// Runs `action` when the clock reaches `at`.
    fn insert_timer(&self, at: Instant, action: TimerAction) -> TimerHandle;
    /// Cancels a timer (no-op if it already fired).
    fn cancel_timer(&self, handle: TimerHandle);
    /// A fresh id for a task or region.
    fn next_id(&self) -> u64;
    /// Runtime-wide counters.
    fn stats(&self) -> &Stats;
    /// Whether the calling thread's worker has anything else it could run
    /// now (`true` when unsure: a task then goes through the queues).
    fn has_other_work(&self) -> bool {
        true
    }
    /// Fires the timers that are due, if any (called from a busy task's
    /// checkpoints, so that time keeps moving while it holds its worker).
    fn poll_timers(&self) {}
    /// The blocking pool, if this scheduler has one.
    fn blocking(&self) -> Option<&crate::blocking::BlockingPool>;
}

/// Counters, each on its own cache line.
#[derive(Default)]
pub(crate) struct Stats {
    spawned: CachePadded<AtomicU64>,
    finished: CachePadded<AtomicU64>,
    cut_off: AtomicU64,
    finalizers_cut_off: AtomicU64,
    finalizers_skipped: AtomicU64,
    panics_caught: AtomicU64,
}

impl Stats {
    pub(crate) fn task_spawned(&self) {
        self.spawned.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn task_finished(&self, cut_off: bool) {
        self.finished.fetch_add(1, Ordering::Release);
        if cut_off {
            self.cut_off.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn finalizer_cut_off(&self) {
        self.finalizers_cut_off.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finalizers_skipped(&self, n: usize) {
        self.finalizers_skipped
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A panic in user code the runtime called from its bookkeeping (a
    /// `Drop`, a `Debug`, a waker, a finalizer) was caught.
    pub(crate) fn panic_caught(&self) {
        self.panics_caught.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RuntimeStats {
        let finished = self.finished.load(Ordering::Acquire);
        RuntimeStats {
            tasks_spawned: self.spawned.load(Ordering::Relaxed).max(finished),
            tasks_finished: finished,
            tasks_cut_off: self.cut_off.load(Ordering::Relaxed),
            finalizers_cut_off: self.finalizers_cut_off.load(Ordering::Relaxed),
            finalizers_skipped: self.finalizers_skipped.load(Ordering::Relaxed),
            panics_caught: self.panics_caught.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of the runtime's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuntimeStats {
    /// Tasks spawned so far.
    pub tasks_spawned: u64,
    /// Tasks that have finished (any outcome).
    pub tasks_finished: u64,
    /// Tasks whose cleanup overran its budget and whose future was dropped.
    pub tasks_cut_off: u64,
    /// Finalizers that overran the cleanup budget and were dropped.
    pub finalizers_cut_off: u64,
    /// Finalizers never run because their region's future was dropped
    /// before it closed.
    pub finalizers_skipped: u64,
    /// Panics caught in user code that the runtime called outside a task's
    /// own poll: the `Drop` of a future, an output or a captured value, an
    /// error's `Debug`, a waker, a finalizer. Each is also reported where
    /// one is to blame (the task or region ends `Panicked`); none takes a
    /// worker down.
    pub panics_caught: u64,
}

impl RuntimeStats {
    /// Tasks alive now: spawned and not finished.
    pub fn tasks_alive(&self) -> u64 {
        self.tasks_spawned.saturating_sub(self.tasks_finished)
    }
}
