//! The scheduler seam and the multi-threaded work-stealing scheduler.
//!
//! Tasks talk to their scheduler only through [`Scheduler`]: enqueue,
//! time, timers, ids, counters. The multi-threaded pool in `pool.rs`
//! implements it (and, with one core driven by `block_on`, is the
//! current-thread flavour); the lab runtime (`crate::lab`, `lab/sched.rs`)
//! implements the same trait on one thread, with virtual time and a seeded
//! choice of the next task, and watches the runtime through
//! [`Scheduler::observe`] for its oracles.
//!
//! ## Which paths take a lock, and when
//!
//! "Lock-free" below means: atomics and crossbeam's lock-free deques and
//! injector only. Every lock is a `std` mutex (`loom`'s under loom), held
//! for a few instructions, never across user code or a poll.
//!
//! | path | lock-free part | lock taken, and when |
//! |---|---|---|
//! | wake a task (waker, `JoinHandle` completion, channel commit) | the task's state CAS; the push into this worker's LIFO slot or deque, or into the injector from outside the pool | **only when a parked worker must be woken** (a wake from outside the pool, or a spawn or a displaced LIFO task that leaves more than one task queued; never a yield or a cancellation's wake): `Idle::pick` reads the sleeper count lock-free (no sleeper: no lock), else takes `Idle::list` (`sched/idle.rs`) to pick one, then `Shared::threads[i]` (`sched/pool.rs`) to unpark its thread |
//! | spawn | the registry push (`registry.rs`), the live count, the enqueue as above | a sweep's `swept` lock when the registry has grown past its live count (amortised); the timer wheel's lock when the task's budget has a deadline of its own |
//! | checkpoint, `is_cancel_requested`, `JoinHandle` poll, `WakerSlot` | all of it | none |
//! | request a cancellation | the first request on a cell (one compare-and-swap, `cancel/cell.rs`); the wake of each task (its state CAS; a sweep queues the tasks it woke as one job, `batch.rs`, one deque push for all of them) | the cell's `later` lock only for a second, stronger request; the region's `swept` lock for the sweep; a task's `open_regions` lock when it has regions open, and the owner's when the region's body has regions open in it (`Region::nested_regions`: a count read first); `body_waker`, except for a request made from inside a body its owner task is polling (`task.rs`: `polling_own_body`); the timer lock for a grace timer, only when a cancelled task or body is still running after a poll that saw the request (`cancel/protocol.rs`: `arm_grace`), and once more at the close to cancel it |
//! | a task finishing | the live count, the joiner's `WakerSlot` | the region's `worst` lock only when the task failed |
//! | open / close a region | the parent's live count (a child region is counted there, not registered: no registry push, and its node is freed at its close), and its count of nested regions when the body's own task opens it; the live count CAS (the closer loads the count first while children live); closing the registration of finalizers when none was registered (`fin_state`, one CAS) | the owner's `open_regions`; `finalizers` only when one was registered; `body_waker` once per poller change (none stored when the owner task polls the body with its own waker) and at the close only when a poll stored a waker; `swept` at the close |
//! | timers (`sleep`, `timeout`, budgets' deadlines) | `TimerDriver::due` (one load, on every 32nd checkpoint); a sleep dropped while a cancellation sweep's batch runs is only noted (`pool.rs`: `DeferredCancels`) | the wheel's one mutex (`time/driver.rs`) to insert, cancel or turn; the sleeps a batch dropped are cancelled together under one lock at its end (or 64 at a time) |
//! | a worker going idle and parking | the sleeper counts (`Idle::sleepers`, `Idle::deep`) | `Idle::list` to register and unregister; `cores[i]` and `threads[i]` when `drive` starts and ends |
//! | mpsc send / receive | the fast path (`chan.rs`: one CAS to reserve, the queue push, the receiver's `WakerSlot`) | the waiter list, only while senders wait for a slot |

pub(crate) mod batch;
#[cfg(any(test, loom))]
pub(crate) mod detached;
pub(crate) mod idle;
pub(crate) mod pool;

use crate::loom::{AtomicU64, Ordering};
use crate::task::TaskRef;
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
    /// over workers costs more in contention than it saves). Also the
    /// re-poll of a task whose own poll requested the cancellation
    /// (`task::is_running_task_waker`), which then runs after the drain.
    Cancel,
    /// It woke itself while running (a yield): back of the local queue,
    /// without waking another worker (a yield adds no work).
    Yield,
}

/// What tasks need from whatever schedules them.
pub(crate) trait Scheduler: Send + Sync + 'static {
    /// Makes `task` (whose state already says SCHEDULED) run soon.
    fn schedule(&self, task: TaskRef, how: Schedule);
    /// Makes the tasks a cancellation sweep woke (each one's state already
    /// says SCHEDULED) run soon, as [`Schedule::Cancel`] does one. The pool
    /// queues them as one job (`batch.rs`); by default, one by one.
    fn schedule_cancelled(&self, tasks: Vec<TaskRef>) {
        for t in tasks {
            self.schedule(t, Schedule::Cancel);
        }
    }
    /// The time, from the runtime's clock.
    fn now(&self) -> Instant;
    /// The time rounded up to the clock's coarse tick
    /// ([`Clock::now_ceil`](crate::time::Clock::now_ceil)): for deadlines
    /// that may run a little late but not early (grace periods).
    fn now_ceil(&self) -> Instant {
        self.now()
    }
    /// Runs `action` when the clock reaches `at`.
    fn insert_timer(&self, at: Instant, action: TimerAction) -> TimerHandle;
    /// Cancels a timer (no-op if it already fired).
    fn cancel_timer(&self, handle: TimerHandle);
    /// Cancels a timer whose action is a [`TimerAction::Wake`] (a sleep's):
    /// like [`cancel_timer`](Self::cancel_timer), except that the pool
    /// defers it while a cancellation sweep's batch runs on this worker, to
    /// the batch's end (one lock for all the sleeps the batch's tasks
    /// dropped), so the timer may still fire in between: a spurious wake,
    /// which a future tolerates. Never use it for a timer whose firing does
    /// more than wake (a deadline's cancellation, a cut-off).
    fn cancel_wake_timer(&self, handle: TimerHandle) {
        self.cancel_timer(handle);
    }
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
    /// `true`: the task checkpointing must stop (the lab: it has spun in
    /// one poll past the run's step limit, where virtual time stands
    /// still and no timer could ever end it); it is then cancelled.
    fn poll_timers(&self) -> bool {
        false
    }
    /// Whether the runtime has shut down (its workers stopped): a task
    /// spawned, or a timer set, through a `Cx` kept past that would never
    /// run or fire, so they fail at once instead (`spawn_in`, sleeps).
    fn is_shut_down(&self) -> bool {
        false
    }
    /// The blocking pool, if this scheduler has one (none: blocking jobs
    /// run inline, as the lab runs them).
    fn blocking(&self) -> Option<&crate::blocking::BlockingPool>;
    /// Something the lab runtime's oracles watch; the pool ignores it.
    fn observe(&self, _event: Observed) {}
    /// Whether [`observe`](Self::observe) does anything: a region asks
    /// once, when it is made, and skips the call (a virtual call per
    /// finished child, close and detach) for a scheduler that ignores it.
    fn observes(&self) -> bool {
        false
    }
}

/// What [`Scheduler::observe`] reports (for the lab's oracles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// A region was made (the root included).
    RegionOpened(crate::RegionId),
    /// A region left its parent: closed, or abandoned and drained.
    RegionDetached(crate::RegionId),
    /// A child of `region` finished with this severity.
    ChildFinished(crate::RegionId, crate::Severity),
    /// A region closed with an outcome of this severity.
    RegionClosed(crate::RegionId, crate::Severity),
    /// A finalizer was registered (whether or not it can still run).
    FinalizerAdded,
    /// A finalizer ran to its end, panicked or was cut off.
    FinalizerEnded,
}

/// Counters, each on its own cache line.
///
/// The two that move with every task, spawned and finished, are also kept
/// per worker of the pool ([`with_workers`](Self::with_workers)): a task
/// spawned or finished on a worker counts in that worker's shard, which
/// only the thread driving the worker writes, with a load and a store
/// instead of a read-modify-write of a line every worker shares (one
/// locked operation fewer per spawn and per finish). Elsewhere (a
/// `block_on` caller, shutdown's drain, the lab) the shared counters
/// count. A snapshot sums them.
#[derive(Default)]
pub(crate) struct Stats {
    spawned: CachePadded<AtomicU64>,
    finished: CachePadded<AtomicU64>,
    shards: Box<[CachePadded<Shard>]>,
    cut_off: AtomicU64,
    finalizers_cut_off: AtomicU64,
    bodies_cut_off: AtomicU64,
    finalizers_skipped: AtomicU64,
    panics_caught: AtomicU64,
    workers_woken: AtomicU64,
}

/// One worker's counts ([`Stats`]): written only by the thread driving the
/// worker, read by anyone.
#[derive(Default)]
struct Shard {
    spawned: AtomicU64,
    finished: AtomicU64,
}

/// Adds one to a counter only the calling thread writes: a load and a
/// store (the other threads only read it), `order` the store's.
#[inline]
fn bump(counter: &AtomicU64, order: Ordering) {
    // Relaxed: this thread wrote the last value (or the one it took the
    // worker over from, before a lock both took).
    let v = counter.load(Ordering::Relaxed);
    counter.store(v + 1, order);
}

impl Stats {
    /// Counters with a shard for each of `workers` workers.
    pub(crate) fn with_workers(workers: usize) -> Self {
        Stats {
            shards: (0..workers).map(|_| CachePadded::default()).collect(),
            ..Stats::default()
        }
    }

    /// The shard of the worker the calling thread drives, if it drives
    /// one of the pool these counters belong to.
    #[inline]
    fn my_shard(&self) -> Option<&Shard> {
        if self.shards.is_empty() {
            return None;
        }
        pool::worker_index(self).and_then(|i| self.shards.get(i).map(|s| &**s))
    }

    pub(crate) fn task_spawned(&self) {
        // Relaxed: a counter for reports; `snapshot` reads `finished` first
        // (Acquire) and clamps `spawned` to at least that.
        match self.my_shard() {
            Some(shard) => bump(&shard.spawned, Ordering::Relaxed),
            None => {
                self.spawned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn task_finished(&self, cut_off: bool) {
        // Release: pairs with `snapshot`'s Acquire: a task counted finished
        // was counted spawned before (same task, earlier), so the snapshot
        // sees `spawned >= finished` for it; and with whoever sees the
        // task's outcome (its `COMPLETE`, AcqRel, comes after this).
        match self.my_shard() {
            Some(shard) => bump(&shard.finished, Ordering::Release),
            None => {
                self.finished.fetch_add(1, Ordering::Release);
            }
        }
        if cut_off {
            // Relaxed: an independent counter, read only for reports.
            self.cut_off.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn finalizer_cut_off(&self) {
        // Relaxed: an independent counter, read only for reports.
        self.finalizers_cut_off.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn body_cut_off(&self) {
        // Relaxed: an independent counter, read only for reports.
        self.bodies_cut_off.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finalizers_skipped(&self, n: usize) {
        // Relaxed: an independent counter, read only for reports.
        self.finalizers_skipped
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A panic in user code the runtime called from its bookkeeping (a
    /// `Drop`, a `Debug`, a waker, a finalizer) was caught.
    pub(crate) fn panic_caught(&self) {
        // Relaxed: an independent counter, read only for reports.
        self.panics_caught.fetch_add(1, Ordering::Relaxed);
    }

    /// A parked worker was unparked by another thread (`pool.rs`:
    /// `notify_one`).
    pub(crate) fn worker_woken(&self) {
        // Relaxed: an independent counter, read only for reports (and the
        // unpark that follows is a syscall: no count of it is hot).
        self.workers_woken.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RuntimeStats {
        // Acquire: see `task_finished`; the other counters are Relaxed
        // reports, each exact once the runtime is quiet.
        let total = |shared: &AtomicU64, of: fn(&Shard) -> &AtomicU64, order| {
            shared.load(order) + self.shards.iter().map(|s| of(s).load(order)).sum::<u64>()
        };
        let finished = total(&self.finished, |s| &s.finished, Ordering::Acquire);
        let spawned = total(&self.spawned, |s| &s.spawned, Ordering::Relaxed);
        RuntimeStats {
            tasks_spawned: spawned.max(finished),
            tasks_finished: finished,
            tasks_cut_off: self.cut_off.load(Ordering::Relaxed),
            finalizers_cut_off: self.finalizers_cut_off.load(Ordering::Relaxed),
            region_bodies_cut_off: self.bodies_cut_off.load(Ordering::Relaxed),
            finalizers_skipped: self.finalizers_skipped.load(Ordering::Relaxed),
            panics_caught: self.panics_caught.load(Ordering::Relaxed),
            workers_woken: self.workers_woken.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of the runtime's counters.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// rt.block_on(|cx| async move {
///     cx.spawn(|_| async {}).await;
///     Ok::<_, ()>(())
/// });
/// let s = rt.stats();
/// assert_eq!((s.tasks_alive(), s.panics_caught), (0, 0));
/// ```
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
    /// Region bodies (`Cx::region`, `Cx::timeout`, ...) still running when
    /// their region was cut off, past the poll that the cut-off gave them
    /// to see it: dropped where they lay, in their owner's poll.
    pub region_bodies_cut_off: u64,
    /// Finalizers never run because their region's future was dropped
    /// before it closed.
    pub finalizers_skipped: u64,
    /// Panics caught in user code that the runtime called outside a task's
    /// own poll: the `Drop` of a future, an output or a captured value, an
    /// error's `Debug`, a waker, a finalizer. Each is also reported where
    /// one is to blame (the task or region ends `Panicked`); none takes a
    /// worker down.
    pub panics_caught: u64,
    /// Times a parked worker was woken by another thread: for a wake, a
    /// spawn or an earlier timer from outside the pool; when a worker has
    /// more queued than it can start right away (a spawn, or a wake that
    /// displaced its LIFO slot, leaving more than one task queued); or to
    /// keep one worker watching for stranded tasks when all the others
    /// sleep. A yield wakes no one (it adds no work), nor does a
    /// cancellation's wake (a drain is many short polls, cheaper on one
    /// worker). A worker whose park times out (to turn the timers, or to
    /// look for stranded tasks) is not counted.
    pub workers_woken: u64,
}

impl RuntimeStats {
    /// Tasks alive now: spawned and not finished.
    ///
    /// ```
    /// use runtime_core::RuntimeStats;
    /// let s = RuntimeStats { tasks_spawned: 5, tasks_finished: 3, ..RuntimeStats::default() };
    /// assert_eq!(s.tasks_alive(), 2);
    /// ```
    pub fn tasks_alive(&self) -> u64 {
        self.tasks_spawned.saturating_sub(self.tasks_finished)
    }
}
