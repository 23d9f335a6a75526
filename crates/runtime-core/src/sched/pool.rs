//! The work-stealing pool: one core (local FIFO deque + LIFO slot) per
//! worker, a global injector, stealing between cores, parking through
//! [`Idle`].
//!
//! Where work goes (see `schedule`): a task woken by a task running on a
//! worker goes to that worker's LIFO slot and runs next, on the same
//! thread: no cross-thread hand-off, no syscall. Spawns and yields go to
//! the back of the local deque. Other workers are woken only when a worker
//! has more queued work than it can start right away, and never by a
//! yield (it adds no work; a worker woken by it would take the yielder or
//! what it just spawned to another core). Wakes from outside
//! the pool go through the injector. The tasks one cancellation sweep woke
//! go to the back of the local deque as one job, a [`Batch`] (`batch.rs`),
//! waking no other worker; the worker that starts a batch queues a second
//! reference to it, so that an idle worker can take the rest of it.
//!
//! The LIFO slot is a one-task deque that other workers can steal from, and
//! an idle worker parks at most [`STRANDED_BOUND`] while another is inside
//! a poll, so a task woken behind a poll that blocks waits at most that
//! long. A task that yields with nothing else queued goes to a one-task
//! yield slot. Parking follows the Dekker pattern in `idle.rs`; which of
//! these paths lock is in the table in `sched/mod.rs`.

use std::cell::{Cell, RefCell};
use std::ptr;
use std::sync::Arc;
use std::thread::Thread;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::CachePadded;

use super::batch::Batch;
use super::idle::Idle;
use super::{Schedule, Scheduler, Stats};
use crate::blocking::BlockingPool;
use crate::cancel::cut_off_task;
use crate::loom::{AtomicBool, AtomicU64, Mutex, Ordering, lock};
use crate::task::TaskRef;
use crate::time::driver::{TimerAction, TimerDriver, TimerHandle};
use crate::time::{Clock, Instant};

/// How many LIFO-slot runs in a row before the slot's task goes to the
/// back of the queue (so two tasks waking each other cannot starve the
/// rest).
const LIFO_STREAK: u32 = 3;
/// Every this many tasks, look at the injector first and fire timers.
const MAINTENANCE: u32 = 61;
/// While another worker is awake, an idle worker parks at most this long
/// before it looks again (at that worker's LIFO slot, and at the timers):
/// the bound on how long a task can be stranded behind a poll that blocks.
const STRANDED_BOUND: std::time::Duration = std::time::Duration::from_millis(10);
/// A worker running a cancellation batch cancels its tasks' sleeps' timers
/// at the batch's end, or once this many are waiting ([`DeferredCancels`]).
const DEFERRED_CANCELS: usize = 64;

/// What the run queues hold: a task, or a batch of tasks a cancellation
/// woke (`batch.rs`).
pub(crate) enum Job {
    Task(TaskRef),
    Batch(Arc<Batch>),
}

impl Job {
    /// Cuts it off (a batch: each of its tasks not yet taken) and runs it,
    /// which drops its future: shutdown's drains, once the workers have
    /// stopped. Nothing found there is polled again: a task still live
    /// (spawned after the last cut-off, or never reached by it) that was
    /// polled here woke itself back into the queue being drained, and the
    /// drain never ended (found by review: a task whose `Drop` spawned the
    /// next one hung `Runtime::shutdown` for ever). Bounded: spawns are
    /// refused once the shutdown flag is set, so each task found is
    /// dropped once and nothing new comes in but wakes of tasks already
    /// counted.
    fn cut_off_and_run(self) {
        match self {
            Job::Task(t) => {
                cut_off_task(t.clone());
                t.run();
            }
            Job::Batch(b) => {
                while let Some(t) = b.take() {
                    cut_off_task(t.clone());
                    t.run();
                }
            }
        }
    }
}

/// A worker's own queues.
pub(crate) struct Core {
    local: Worker<Job>,
    /// The LIFO slot: at most one task, woken by the task running here,
    /// to run next. A one-element deque rather than a private field, so
    /// that it can be stolen: a task woken into the slot of a worker whose
    /// current poll blocks must not wait for that poll (idle workers look
    /// at busy workers' slots within [`STRANDED_BOUND`]).
    lifo: Worker<Job>,
    /// The task that last yielded, when nothing else was queued: it runs
    /// after everything queued here and in the injector, without a trip
    /// through the deque.
    yielded: Option<TaskRef>,
    tick: u32,
    streak: u32,
    seed: u32,
}

/// The state every worker shares.
pub(crate) struct Shared {
    injector: Injector<Job>,
    stealers: Vec<Stealer<Job>>,
    /// Stealers of each core's LIFO slot.
    lifo_stealers: Vec<Stealer<Job>>,
    /// Whether each core's driver is inside a task's poll now.
    busy: Vec<CachePadded<AtomicBool>>,
    /// Each core, taken by the thread that drives it.
    cores: Vec<Mutex<Option<Core>>>,
    /// The thread currently driving each core (for unparking).
    threads: Vec<Mutex<Option<Thread>>>,
    idle: Idle,
    clock: Arc<dyn Clock>,
    /// A user's clock (not the system's, which is monotonic and never
    /// panics): its readings are held to `clock_high`.
    user_clock: bool,
    /// The highest reading of a user's clock so far, in nanoseconds: no
    /// reading goes below it (a clock over `SystemTime` steps back when
    /// the system's time is corrected, and a sleep woken by its timer then
    /// found its deadline not reached and waited for ever), and a clock
    /// that panics reads as it (it read as the wheel's last turn, which
    /// can be any distance behind: a sleep made then ended at once, a grace
    /// period was cut short). Found by review.
    clock_high: AtomicU64,
    timers: TimerDriver,
    stats: Stats,
    ids: AtomicU64,
    pub(crate) shutdown: AtomicBool,
    /// Set by shutdown's final drain (`drain_queues`) before it looks at
    /// the cores: a worker that hands its core back after this (one whose
    /// poll was stuck past the deadline) drops what is still queued there
    /// itself (`drive`'s `Restore`), since nothing will drain it later.
    final_drain: AtomicBool,
    blocking: BlockingPool,
}

/// The per-thread view of the core being driven.
struct WorkerCtx {
    shared: *const Shared,
    index: usize,
    core: RefCell<Core>,
    /// Whether the job running here is a [`Batch`]: only then are sleeps'
    /// cancels deferred ([`DeferredCancels`]).
    in_batch: Cell<bool>,
    deferred: RefCell<DeferredCancels>,
    /// The worker this thread drove when it began to drive this one (a
    /// current-thread runtime driven in place by a task of another, as its
    /// shutdown does), or null: with [`DRIVEN`], every runtime the thread
    /// is inside.
    outer: *const WorkerCtx,
}

/// The sleeps' timers the tasks of a [`Batch`] (a cancellation sweep's)
/// dropped while it ran on this worker (`Scheduler::cancel_wake_timer`),
/// cancelled together under one lock of the wheel at the end of the job
/// (or when [`DEFERRED_CANCELS`] wait): a cancelled region's drain drops
/// one sleep per task, and a lock and unlock each were two of the drain's
/// locked read-modify-writes per task. Only wake timers are deferred: one
/// that fires in between wakes its task spuriously (a finished task
/// ignores it). The entries, and the wakers in them, live at most until
/// the batch's end. A job that is one task cancels at once, as before (a
/// deferral would only add work to its one lock).
#[derive(Default)]
struct DeferredCancels {
    handles: Vec<TimerHandle>,
    /// A buffer for the cancelled timers' wakers, dropped outside the lock.
    wakers: Vec<std::task::Waker>,
}

thread_local! {
    /// The worker this thread is driving, if any. Internal: it decides
    /// where a wake-up goes; it gives user code no way to reach the runtime.
    static CURRENT: Cell<*const WorkerCtx> = const { Cell::new(ptr::null()) };
    /// The worker this thread drives, innermost, as [`CURRENT`] but never
    /// hidden ([`off_workers`] hides a worker from the wake path, not from
    /// this): with each context's `outer`, every runtime whose worker the
    /// thread is inside, for the refusals of calls that would wait for the
    /// thread itself (found by review: a `block_on` or a shutdown called
    /// from a blocking job the lab ran in line inside a task, or from a
    /// task of a runtime driven in place inside another's task, was not
    /// refused and deadlocked).
    static DRIVEN: Cell<*const WorkerCtx> = const { Cell::new(ptr::null()) };
}

/// Whether the calling thread is inside a worker of the pool whose
/// counters `stats` are, at any depth.
pub(crate) fn drives(stats: &Stats) -> bool {
    let mut ctx = DRIVEN.with(Cell::get);
    // SAFETY: each context on the chain is that of a `drive` whose frame
    // is still on this thread's stack (each restores `DRIVEN` as it ends),
    // and its pool is alive while one of its cores is driven.
    while let Some(c) = unsafe { ctx.as_ref() } {
        // SAFETY: as above.
        if ptr::eq(unsafe { &(*c.shared).stats }, stats) {
            return true;
        }
        ctx = c.outer;
    }
    false
}

/// Points [`CURRENT`] at a worker context (or at none) until dropped, then
/// restores what it pointed at before, however the scope ends.
struct SetCurrent(*const WorkerCtx);

impl SetCurrent {
    fn to(ctx: *const WorkerCtx) -> Self {
        SetCurrent(CURRENT.with(|c| c.replace(ctx)))
    }
}

/// The index of the worker the calling thread drives, if it drives one of
/// the pool whose counters `stats` are (`Stats`'s per-worker shards).
#[inline]
pub(crate) fn worker_index(stats: &Stats) -> Option<usize> {
    let ctx = CURRENT.with(Cell::get);
    // SAFETY: as in `schedule`; `shared` outlives the drive that set it.
    let ctx = unsafe { ctx.as_ref() }?;
    // SAFETY: as above: the pool is alive while one of its cores is driven.
    ptr::eq(unsafe { &(*ctx.shared).stats }, stats).then_some(ctx.index)
}

/// Marks this thread off every pool's workers until the guard drops (a
/// blocking job the lab runs in line: as on a pool thread).
pub(crate) fn off_workers() -> impl Drop {
    SetCurrent::to(ptr::null())
}

impl Drop for SetCurrent {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl Shared {
    pub(crate) fn new(
        cores: usize,
        clock: Arc<dyn Clock>,
        user_clock: bool,
        blocking: BlockingPool,
    ) -> Arc<Shared> {
        let workers: Vec<Worker<Job>> = (0..cores).map(|_| Worker::new_fifo()).collect();
        let stealers = workers.iter().map(Worker::stealer).collect();
        let lifos: Vec<Worker<Job>> = (0..cores).map(|_| Worker::new_lifo()).collect();
        let lifo_stealers = lifos.iter().map(Worker::stealer).collect();
        let timers = TimerDriver::new();
        Arc::new(Shared {
            injector: Injector::new(),
            stealers,
            lifo_stealers,
            busy: (0..cores)
                .map(|_| CachePadded::new(AtomicBool::new(false)))
                .collect(),
            cores: workers
                .into_iter()
                .zip(lifos)
                .enumerate()
                .map(|(i, (local, lifo))| {
                    Mutex::new(Some(Core {
                        local,
                        lifo,
                        yielded: None,
                        tick: 0,
                        streak: 0,
                        seed: 0x9E37_79B9 ^ (i as u32 + 1).wrapping_mul(0x85EB_CA6B),
                    }))
                })
                .collect(),
            threads: (0..cores).map(|_| Mutex::new(None)).collect(),
            idle: Idle::new(cores),
            clock,
            user_clock,
            clock_high: AtomicU64::new(0),
            timers,
            stats: Stats::with_workers(cores),
            ids: AtomicU64::new(1),
            shutdown: AtomicBool::new(false),
            final_drain: AtomicBool::new(false),
            blocking,
        })
    }

    fn unpark(&self, index: usize) {
        if let Some(t) = lock(&self.threads[index]).as_ref() {
            t.unpark();
        }
    }

    /// Wakes one sleeping worker, if any.
    fn notify_one(&self) {
        if let Some(i) = self.idle.pick() {
            self.stats.worker_woken();
            self.unpark(i);
        }
    }

    /// Wakes every worker (shutdown, or a timer earlier than any sleeper
    /// expects).
    pub(crate) fn notify_all(&self) {
        self.idle.take_all();
        for i in 0..self.threads.len() {
            self.unpark(i);
        }
    }

    /// Whether the calling thread is driving one of this pool's cores.
    fn on_worker(&self) -> bool {
        let ctx = CURRENT.with(Cell::get);
        // SAFETY: as in `schedule`.
        unsafe { ctx.as_ref() }.is_some_and(|ctx| ptr::eq(ctx.shared, self))
    }

    fn has_work(&self, core: &Core) -> bool {
        !core.lifo.is_empty()
            || core.yielded.is_some()
            || !core.local.is_empty()
            || !self.injector.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// Drives core `index` on this thread until `done()` says stop (or the
    /// pool shuts down), parking at most `park_cap` at a time when idle
    /// (for a `done` that turns true by the passing of time). Returns false
    /// if the core is already driven.
    pub(crate) fn drive(
        self: &Arc<Self>,
        index: usize,
        done: &dyn Fn() -> bool,
        park_cap: Option<std::time::Duration>,
    ) -> bool {
        let Some(core) = lock(&self.cores[index]).take() else {
            return false;
        };
        *lock(&self.threads[index]) = Some(std::thread::current());
        let ctx = WorkerCtx {
            shared: Arc::as_ptr(self),
            index,
            core: RefCell::new(core),
            in_batch: Cell::new(false),
            deferred: RefCell::new(DeferredCancels::default()),
            outer: DRIVEN.with(Cell::get),
        };
        // Restores the thread-local and hands the core back however
        // `run_loop` ends, unwinding included (a panic that escaped user
        // code must not leave the core lost and every later `block_on`
        // waiting for it, nor a dangling pointer in `CURRENT`).
        struct Restore<'a> {
            shared: &'a Shared,
            index: usize,
            ctx: &'a WorkerCtx,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                // No timer a job here cancelled stays in the wheel.
                self.shared.cancel_deferred(self.ctx);
                *lock(&self.shared.threads[self.index]) = None;
                loop {
                    let mut slot = lock(&self.shared.cores[self.index]);
                    // Relaxed: read under the core's lock, which the final
                    // drain takes after its store, before it looks at this
                    // core: either this sees the store (and the drain,
                    // finding no core, left the queues to us), or the
                    // drain finds the core handed back below and drains
                    // it. (Found by review: a worker stuck in a poll past
                    // the deadline handed back a core with tasks still
                    // queued, and nothing ever dropped them.) Not while
                    // unwinding: running tasks here could panic again.
                    if self.shared.final_drain.load(Ordering::Relaxed)
                        && !std::thread::panicking()
                        && core_has_jobs(&self.ctx.core.borrow())
                    {
                        drop(slot);
                        // `CURRENT` no longer points at this core (reset
                        // before this drop): wakes from these drops go to
                        // the injector, which `drain_core` empties too.
                        self.shared.drain_core(self.ctx);
                        continue;
                    }
                    *slot = Some(self.ctx.core.replace(Core {
                        local: Worker::new_fifo(),
                        lifo: Worker::new_lifo(),
                        yielded: None,
                        tick: 0,
                        streak: 0,
                        seed: 0,
                    }));
                    break;
                }
            }
        }
        let _restore = Restore {
            shared: self,
            index,
            ctx: &ctx,
        };
        // Declared after `_restore`, so dropped first: `CURRENT` stops
        // pointing at `ctx` before the core leaves it.
        let _current = SetCurrent::to(&ctx);
        struct Driven(*const WorkerCtx);
        impl Drop for Driven {
            fn drop(&mut self) {
                DRIVEN.with(|d| d.set(self.0));
            }
        }
        let _driven = Driven(DRIVEN.with(|d| d.replace(&ctx)));
        // A drive in place inside a task of another runtime (a shutdown
        // driving a current-thread runtime) runs tasks whose turns reset
        // the thread's cooperative state: the outer task's is put back
        // after (found by review: its `yield_now` request was taken by an
        // inner task's turn, and it was never polled again).
        let _coop = crate::budget::coop::Saved::now();
        self.run_loop(&ctx, done, park_cap);
        true
    }

    /// Whether the calling thread is driving a worker of any runtime (a
    /// task, a finalizer or a waker is running on it).
    pub(crate) fn on_any_worker() -> bool {
        !CURRENT.with(Cell::get).is_null()
    }

    fn run_loop(
        &self,
        ctx: &WorkerCtx,
        done: &dyn Fn() -> bool,
        park_cap: Option<std::time::Duration>,
    ) {
        loop {
            // Acquire: pairs with shutdown's SeqCst store (runtime.rs): a worker
            // that sees the flag sees what shutdown did before it. A late look
            // costs one more task; `notify_all` unparks sleepers to look.
            // Acquire: as at the top of the loop.
            if done() || self.shutdown.load(Ordering::Acquire) {
                return;
            }
            let (task, maintenance) = self.next_task(ctx);
            if maintenance {
                self.timers.process(self.read_clock(false), &self.stats);
            }
            if let Some(task) = task {
                // Relaxed: read only by shutdown's count of stuck workers,
                // a report that tolerates a stale value.
                self.busy[ctx.index].store(true, Ordering::Relaxed);
                self.run_job(ctx, task);
                // Relaxed: as above.
                self.busy[ctx.index].store(false, Ordering::Relaxed);
                continue;
            }
            // Out of work: register as a sleeper first (so a timer
            // inserted from now on wakes us), fire due timers, look once
            // more, then park until the next timer.
            self.idle.register(ctx.index);
            let now = self.read_clock(false);
            let (fired, next) = self.timers.process_for_park(now, &self.stats);
            if fired
                || self.has_work(&ctx.core.borrow())
                || done()
                || self.shutdown.load(Ordering::Acquire)
            {
                // Awake again: another sleeper may have gone deep while
                // this one was counted asleep.
                self.idle.unregister(ctx.index);
                if self.idle.needs_watcher() {
                    self.notify_one();
                }
                continue;
            }
            // Park until the next timer, but at most the stranded bound
            // while any other worker is awake: its poll may block with a
            // task in its LIFO slot (see `Idle`). Only when every worker
            // sleeps may this one park longer.
            let wait = next.map(|at| at.saturating_duration_since(now));
            let deep = wait.is_none_or(|w| w > STRANDED_BOUND) && self.idle.try_sleep_deep();
            let wait = if deep {
                wait
            } else {
                Some(wait.map_or(STRANDED_BOUND, |w| w.min(STRANDED_BOUND)))
            };
            match (wait, park_cap) {
                (Some(w), Some(c)) => std::thread::park_timeout(w.min(c)),
                (Some(w), None) | (None, Some(w)) => std::thread::park_timeout(w),
                (None, None) => std::thread::park(),
            }
            self.idle.unregister(ctx.index);
            if deep {
                self.idle.woke_from_deep();
            }
            if self.idle.needs_watcher() {
                self.notify_one();
            }
            self.timers.unparked();
        }
    }

    /// The next task for this core: LIFO slot (bounded streak), local
    /// deque, injector, then stealing.
    fn next_task(&self, ctx: &WorkerCtx) -> (Option<Job>, bool) {
        let mut core = ctx.core.borrow_mut();
        core.tick = core.tick.wrapping_add(1);
        let maintenance = core.tick.is_multiple_of(MAINTENANCE);
        if !core.lifo.is_empty()
            && let Some(t) = core.lifo.pop()
        {
            if core.streak < LIFO_STREAK {
                core.streak += 1;
                return (Some(unyield(&mut core, t)), maintenance);
            }
            core.local.push(t);
        }
        core.streak = 0;
        if maintenance && let Some(t) = self.steal_injector(&core.local) {
            return (Some(unyield(&mut core, t)), true);
        }
        if let Some(t) = core.local.pop() {
            return (Some(unyield(&mut core, t)), maintenance);
        }
        if let Some(t) = self.steal_injector(&core.local) {
            return (Some(unyield(&mut core, t)), maintenance);
        }
        if let Some(t) = core.yielded.take() {
            return (Some(Job::Task(t)), maintenance);
        }
        // Steal from the others, starting at a pseudo-random one.
        let n = self.stealers.len();
        if n > 1 {
            core.seed ^= core.seed << 13;
            core.seed ^= core.seed >> 17;
            core.seed ^= core.seed << 5;
            let start = core.seed as usize % n;
            for k in 0..n {
                let i = (start + k) % n;
                if i == ctx.index {
                    continue;
                }
                loop {
                    match self.stealers[i].steal_batch_and_pop(&core.local) {
                        Steal::Success(t) => return (Some(t), maintenance),
                        Steal::Retry => continue,
                        Steal::Empty => break,
                    }
                }
                // Its LIFO slot too: the task there may be stranded
                // behind a poll that blocks.
                loop {
                    match self.lifo_stealers[i].steal() {
                        Steal::Success(t) => return (Some(t), maintenance),
                        Steal::Retry => continue,
                        Steal::Empty => break,
                    }
                }
            }
        }
        (None, maintenance)
    }
}

/// The next job a core holds (LIFO slot, yield slot, local deque), for the
/// shutdown drains.
fn pop_core(core: &mut Core) -> Option<Job> {
    core.lifo
        .pop()
        .or_else(|| core.yielded.take().map(Job::Task))
        .or_else(|| core.local.pop())
}

/// Whether a core holds any job.
fn core_has_jobs(core: &Core) -> bool {
    !core.lifo.is_empty() || core.yielded.is_some() || !core.local.is_empty()
}

/// One job stolen from `s`, retrying a lost race.
fn steal_one(s: &Stealer<Job>) -> Option<Job> {
    loop {
        match s.steal() {
            Steal::Success(job) => return Some(job),
            Steal::Retry => continue,
            Steal::Empty => return None,
        }
    }
}

/// `job`, about to run on this worker ahead of the task that last yielded
/// here, if any: that task goes to the back of the local deque first,
/// where other workers can steal it. Kept in the private `yielded` slot
/// while something else ran, it was stranded when that poll blocked (the
/// other worker idle for as long, and a task left in the slot at shutdown
/// was never dropped: found by review).
#[inline]
fn unyield(core: &mut Core, job: Job) -> Job {
    if let Some(y) = core.yielded.take() {
        core.local.push(Job::Task(y));
    }
    job
}

impl Shared {
    /// Runs a job popped from a queue on this worker. A batch with more
    /// than one task left is queued here again first, so that an idle
    /// worker can take the rest of it while one of its tasks runs (one of
    /// them may block its poll).
    fn run_job(&self, ctx: &WorkerCtx, job: Job) {
        match job {
            Job::Task(t) => t.run(),
            Job::Batch(b) => {
                if b.several_left() {
                    ctx.core.borrow_mut().local.push(Job::Batch(b.clone()));
                }
                ctx.in_batch.set(true);
                b.run_all();
                ctx.in_batch.set(false);
                // Only a batch defers (`cancel_wake_timer`): its sleeps
                // leave the wheel here, under one lock.
                self.cancel_deferred(ctx);
            }
        }
    }

    /// Cancels the timers this worker's job deferred
    /// ([`DeferredCancels`]), under one lock of the wheel. The buffers are
    /// taken out of the context first: dropping a waker may drop a task,
    /// and a future dropped with it may defer another sleep's cancel
    /// (kept for the next call).
    fn cancel_deferred(&self, ctx: &WorkerCtx) {
        if ctx.deferred.borrow().handles.is_empty() {
            return;
        }
        let mut d = std::mem::take(&mut *ctx.deferred.borrow_mut());
        self.timers
            .cancel_wakes(&mut d.handles, &mut d.wakers, &self.stats);
        let mut slot = ctx.deferred.borrow_mut();
        if slot.handles.is_empty() {
            // Nothing deferred meanwhile: the buffers go back for reuse.
            *slot = d;
        }
    }

    fn steal_injector(&self, local: &Worker<Job>) -> Option<Job> {
        loop {
            match self.injector.steal_batch_and_pop(local) {
                Steal::Success(t) => return Some(t),
                Steal::Retry => continue,
                Steal::Empty => return None,
            }
        }
    }

    /// Drops every task still queued anywhere reachable from this thread,
    /// for shutdown once the workers have stopped: the injector, the
    /// parked cores, and, through the stealers, the local deques and LIFO
    /// slots of cores whose driver is still stuck inside a poll. Each task
    /// found is cut off first and then run, which drops its future
    /// ([`Job::cut_off_and_run`]: nothing is polled here, so the drain
    /// ends). A stuck worker that returns later drops what it still holds
    /// (its yield slot, what it queued since) itself (`drive`).
    pub(crate) fn drain_queues(&self) {
        // Relaxed: see `drive`'s `Restore`: the core locks below order it.
        self.final_drain.store(true, Ordering::Relaxed);
        for (i, core) in self.cores.iter().enumerate() {
            loop {
                // Taken under the lock, run outside it.
                let job = lock(core).as_mut().and_then(pop_core);
                match job {
                    Some(job) => job.cut_off_and_run(),
                    None => break,
                }
            }
            // A core driven by a thread stuck in a poll: its deque and
            // LIFO slot can be stolen from.
            for s in [&self.stealers[i], &self.lifo_stealers[i]] {
                while let Some(job) = steal_one(s) {
                    job.cut_off_and_run();
                }
            }
        }
        self.drain_injector();
    }

    /// Cuts off and runs (drops) what the injector holds, until it is
    /// empty (the drops may wake more tasks into it).
    fn drain_injector(&self) {
        loop {
            match self.injector.steal() {
                Steal::Success(job) => job.cut_off_and_run(),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
    }

    /// Drops what the core of this worker still holds, and the
    /// injector's jobs, after the final drain began (see `Restore`).
    fn drain_core(&self, ctx: &WorkerCtx) {
        loop {
            // The borrow ends before the job runs.
            let job = pop_core(&mut ctx.core.borrow_mut());
            match job {
                Some(job) => job.cut_off_and_run(),
                None => break,
            }
        }
        self.drain_injector();
    }

    /// Whether worker `index` is inside a task's poll now.
    pub(crate) fn is_busy(&self, index: usize) -> bool {
        // Relaxed: see `run_loop`: a report that tolerates a stale value.
        self.busy[index].load(Ordering::Relaxed)
    }

    /// The clock, read under a catch: a user's `Clock` that panics (user
    /// code) is counted in `panics_caught` and read as its highest reading
    /// so far ("no time passed"), instead of unwinding through the worker,
    /// which killed it silently with its core (found by review: with one
    /// worker, the next `block_on` hung); and a user's clock never reads
    /// below its highest reading (`clock_high`). Every read of the clock by
    /// the runtime (the workers' loop, the timers' checks, a region's grace
    /// period, `Cx::now`) goes through here.
    fn read_clock(&self, ceil: bool) -> Instant {
        let read = crate::outcome::catch(|| {
            if ceil {
                self.clock.now_ceil()
            } else {
                self.clock.now()
            }
        });
        let now = match read {
            Ok(now) if !self.user_clock => return now,
            Ok(now) => now,
            Err(payload) => {
                self.stats.panic_caught();
                // The payload is made of the message only (no user
                // `Drop` left in it).
                drop(payload);
                self.timers.last_turn()
            }
        };
        // Relaxed: one word, read and raised on its own; a reading only
        // needs some value no lower than those this thread saw. A rounded
        // up (`ceil`) reading is held to it without raising it (a later
        // `now` would jump to the rounding).
        let high = self.clock_high.load(Ordering::Relaxed);
        if now.as_nanos() <= high {
            return Instant::from_nanos(high);
        }
        if !ceil {
            self.clock_high.fetch_max(now.as_nanos(), Ordering::Relaxed);
        }
        now
    }

    pub(crate) fn timers(&self) -> &TimerDriver {
        &self.timers
    }
}

impl Scheduler for Shared {
    fn schedule(&self, task: TaskRef, how: Schedule) {
        let ctx = CURRENT.with(Cell::get);
        // SAFETY: CURRENT points at a WorkerCtx on the stack of `drive`,
        // which resets it before returning; we are on that thread.
        if let Some(ctx) = unsafe { ctx.as_ref() }
            && ptr::eq(ctx.shared, self)
        {
            let mut core = ctx.core.borrow_mut();
            let notify = match how {
                Schedule::Wake => {
                    let prev = if core.lifo.is_empty() {
                        None
                    } else {
                        core.lifo.pop()
                    };
                    core.lifo.push(Job::Task(task));
                    match prev {
                        Some(prev) => {
                            core.local.push(prev);
                            true
                        }
                        None => false,
                    }
                }
                Schedule::Yield if core.yielded.is_none() && core.local.is_empty() => {
                    core.yielded = Some(task);
                    false
                }
                // Neither wakes another worker. A cancellation's wake: see
                // `Schedule::Cancel`. A yield adds no work: the task was
                // running here, and what was queued behind it woke a worker
                // (or not) when it was queued. Waking one here would hand
                // it the yielder or what the yielder just spawned, moving
                // that work (and the lines it touches) to another core for
                // a hand-off this worker makes in one poll (tokio's yield
                // does not wake a worker either: its deferred wakes run
                // while no core is held).
                Schedule::Cancel | Schedule::Yield => {
                    if let Some(y) = core.yielded.take() {
                        core.local.push(Job::Task(y));
                    }
                    core.local.push(Job::Task(task));
                    false
                }
                Schedule::Queue => {
                    if let Some(y) = core.yielded.take() {
                        core.local.push(Job::Task(y));
                    }
                    core.local.push(Job::Task(task));
                    core.local.len() > 1
                }
            };
            drop(core);
            if notify {
                self.notify_one();
            }
            return;
        }
        self.injector.push(Job::Task(task));
        self.notify_one();
    }

    fn schedule_cancelled(&self, tasks: Vec<TaskRef>) {
        let ctx = CURRENT.with(Cell::get);
        if tasks.len() > 1
            // SAFETY: as in `schedule`.
            && let Some(ctx) = unsafe { ctx.as_ref() }
            && ptr::eq(ctx.shared, self)
        {
            // As `Schedule::Cancel` does each task: behind a yielded task,
            // at the back of this worker's queue, waking no other worker.
            let mut core = ctx.core.borrow_mut();
            if let Some(y) = core.yielded.take() {
                core.local.push(Job::Task(y));
            }
            core.local.push(Job::Batch(Batch::new(tasks)));
            return;
        }
        for t in tasks {
            self.schedule(t, Schedule::Cancel);
        }
    }

    fn has_other_work(&self) -> bool {
        let ctx = CURRENT.with(Cell::get);
        // SAFETY: as in `schedule`.
        match unsafe { ctx.as_ref() } {
            Some(ctx) if ptr::eq(ctx.shared, self) => {
                let core = ctx.core.borrow();
                !core.lifo.is_empty()
                    || core.yielded.is_some()
                    || !core.local.is_empty()
                    || !self.injector.is_empty()
            }
            _ => true,
        }
    }

    fn now(&self) -> Instant {
        self.read_clock(false)
    }

    fn now_ceil(&self) -> Instant {
        self.read_clock(true)
    }

    fn is_shut_down(&self) -> bool {
        // Acquire: pairs with shutdown's SeqCst store (as the workers' look).
        self.shutdown.load(Ordering::Acquire)
    }

    fn poll_timers(&self) -> bool {
        let now = self.read_clock(false);
        if !self.timers.due(now) {
            return false;
        }
        // Fired from inside a task's poll: the wake-ups they cause go
        // through the injector (waking an idle worker), not into this busy
        // worker's LIFO slot behind the poll that is running.
        let _detached = SetCurrent::to(ptr::null());
        self.timers.process(now, &self.stats);
        false
    }

    fn insert_timer(&self, at: Instant, action: TimerAction) -> TimerHandle {
        let (handle, earlier) = self.timers.insert(at, action);
        // A sleeper may be parked past this deadline. A worker inserting
        // it turns the wheel itself (every few dozen tasks, and before it
        // parks), so only inserts from outside the pool wake someone.
        if earlier && !self.on_worker() {
            self.notify_one();
        }
        handle
    }

    fn cancel_timer(&self, handle: TimerHandle) {
        self.timers.cancel(handle, &self.stats);
    }

    fn cancel_wake_timer(&self, handle: TimerHandle) {
        let ctx = CURRENT.with(Cell::get);
        // SAFETY: as in `schedule`.
        match unsafe { ctx.as_ref() } {
            Some(ctx) if ctx.in_batch.get() && ptr::eq(ctx.shared, self) => {
                let full = {
                    let mut d = ctx.deferred.borrow_mut();
                    d.handles.push(handle);
                    d.handles.len() >= DEFERRED_CANCELS
                };
                if full {
                    self.cancel_deferred(ctx);
                }
            }
            _ => self.timers.cancel(handle, &self.stats),
        }
    }

    fn next_id(&self) -> u64 {
        // Relaxed: ids need only be unique, which the RMW's atomicity gives.
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn blocking(&self) -> Option<&BlockingPool> {
        Some(&self.blocking)
    }
}
