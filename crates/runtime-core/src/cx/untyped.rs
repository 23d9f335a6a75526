//! The core of the context every task receives, through which it reaches every
//! effect of the runtime.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::blocking::Blocking;
use crate::budget::Budget;
use crate::budget::coop;
use crate::cancel::CancelCell;
use crate::cancel::cancel_task;
use crate::cancel::{CancelKind, CancelReason, Cancelled, Origin};
use crate::loom::{AtomicUsize, Mutex, Ordering, lock};
use crate::outcome::{Outcome, PanicPayload};
use crate::region::{Region, RegionError, RegionOptions, run_region};
use crate::sched::{Schedule, Scheduler};
use crate::task::{Header, JoinHandle, TaskRef, new_task};
use crate::time::driver::TimerAction;
use crate::time::{Duration, Instant, Interval, Sleep};
use crate::{RegionId, TaskId};

/// How deep masked sections may nest.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::MAX_MASK_DEPTH;
/// assert_eq!(MAX_MASK_DEPTH, 64);
/// ```
pub const MAX_MASK_DEPTH: u32 = 64;

/// The untyped core of a [`Cx`](crate::Cx): the task, and the region
/// scope it acts in. Every effect is implemented here; the public `Cx<C>`
/// (`cx/mod.rs`) decides, by its capability type and mask, which ones a
/// caller may reach.
#[derive(Clone)]
pub(crate) struct CxCore {
    /// The task (its header is read without a virtual call).
    pub(crate) task: TaskRef,
    /// The region whose body this is, when the context belongs to a region
    /// body rather than to the task's own scope.
    scope: Option<Arc<Region>>,
}

impl fmt::Debug for CxCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CxCore")
            .field("task", &self.task_id())
            .field("region", &self.region_id())
            .finish()
    }
}

/// Cancels a timer when dropped (a `timeout`'s deadline: see
/// [`CxCore::timeout`]).
struct CancelTimerOnDrop {
    sched: Arc<dyn Scheduler>,
    timer: crate::time::driver::TimerHandle,
}

impl Drop for CancelTimerOnDrop {
    fn drop(&mut self) {
        // A no-op if it already fired; its action (a `Weak` and a reason)
        // holds no user code, so the drop cannot panic.
        self.sched.cancel_timer(self.timer);
    }
}

/// Spawns a task into `region`.
pub(crate) fn spawn_in<G, F, T, E>(
    region: &Arc<Region>,
    budget: Budget,
    seed: u64,
    body: G,
) -> JoinHandle<T, E>
where
    G: FnOnce(CxCore) -> F + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    // Borrowed (the caller's `region` outlives this call): no count taken
    // and given back per spawn.
    let sched = &*region.sched;
    let id = TaskId(sched.next_id());
    let effective = region.budget.meet(&budget);
    // Born SCHEDULED: a cancellation applied during adoption must not
    // enqueue it a second time.
    let (task, registered, handle) = new_task(id, region.clone(), effective, seed, body);
    if sched.is_shut_down() {
        // Through a `Cx` kept past the runtime's shutdown: no worker would
        // ever run it (its handle would wait for ever).
        task.reject(
            CancelReason::new(CancelKind::Shutdown)
                .with_message("spawned after the runtime had shut down")
                .with_origin(Origin::Runtime),
        );
        return handle;
    }
    if !region.adopt_task(&task, registered) {
        crate::task::reject(&task);
        return handle;
    }
    sched.stats().task_spawned();
    if let Some(deadline) = effective.deadline {
        let reason = CancelReason::new(CancelKind::Deadline).with_origin(Origin::Task(id));
        // Passed already (the region's included, whose timer may not have
        // fired yet): requested before the first poll, for its first
        // checkpoint (a timer fires at the wheel's next turn: found by
        // review).
        if deadline <= sched.now() {
            crate::cancel::cancel_task(&task, &reason);
            sched.schedule(task, Schedule::Queue);
            return handle;
        }
        // The region's deadline needs no timer of the task's: the region's
        // cancellation reaches it.
        if region.budget.deadline != Some(deadline) {
            let timer =
                sched.insert_timer(deadline, TimerAction::CancelTask(task.downgrade(), reason));
            // Relaxed: before the task's first schedule (born SCHEDULED, it
            // cannot run before the call below), which publishes it.
            task.header()
                .deadline_timer
                .store(timer.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
    }
    sched.schedule(task, Schedule::Queue);
    handle
}

impl CxCore {
    pub(crate) fn for_task(task: TaskRef) -> CxCore {
        CxCore::with_scope(task, None)
    }

    fn with_scope(task: TaskRef, scope: Option<Arc<Region>>) -> CxCore {
        CxCore { task, scope }
    }

    /// A context with no runtime behind it, never cancelled, for unit
    /// tests and loom models of code that takes a `Cx` (the channels).
    /// Spawning through it panics; its timers never fire. It exists only
    /// in this crate's own test and loom builds.
    #[cfg(any(test, loom))]
    pub(crate) fn detached_for_tests() -> CxCore {
        let sched: Arc<dyn Scheduler> = Arc::new(crate::sched::detached::Detached::new());
        let root = Region::root(sched, crate::budget::CleanupBudget::UNLIMITED);
        let (task, _registered, _handle) =
            new_task(TaskId(0), root, Budget::UNLIMITED, 0, |_cx: CxCore| async {
                Ok::<(), ()>(())
            });
        CxCore::for_task(task)
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        self.task.header()
    }

    /// The region this context spawns into.
    pub(crate) fn region_node(&self) -> &Arc<Region> {
        self.scope.as_ref().unwrap_or(&self.header().region)
    }

    #[inline]
    fn cell(&self) -> &CancelCell {
        match &self.scope {
            Some(r) => &r.cancel,
            None => &self.header().cancel,
        }
    }

    pub(crate) fn sched(&self) -> &Arc<dyn Scheduler> {
        self.header().sched()
    }

    /// The id of the task this context belongs to.
    pub(crate) fn task_id(&self) -> TaskId {
        self.header().id
    }

    /// The id of the region this context spawns into.
    pub(crate) fn region_id(&self) -> RegionId {
        self.region_node().id
    }

    // ---- cancellation ----------------------------------------------------

    /// The pending cancellation, unless masked; marks it observed (the
    /// caller is about to return `Cancelled`). Inlined: while nothing was
    /// requested it is one load.
    #[inline]
    pub(crate) fn cancel_requested(&self) -> Option<CancelReason> {
        if !self.cell().is_requested() {
            return None;
        }
        self.cancel_requested_slow()
    }

    #[cold]
    #[inline(never)]
    fn cancel_requested_slow(&self) -> Option<CancelReason> {
        // A mask defers the request, until the cleanup budget of the region
        // whose body this is has run out (a task's own is enforced by
        // dropping its future; a region body runs inside its owner task and
        // is released from its masks instead).
        if self.header().masked() && !self.scope.as_ref().is_some_and(|r| r.is_cut_off()) {
            return None;
        }
        self.header().observed.store(true, Ordering::Relaxed);
        self.cell().get()
    }

    /// A checkpoint: `Err(Cancelled)` once cancellation has been requested
    /// (and no masked section is active), every time it is called after
    /// that (level-triggered).
    ///
    /// A task that returns `Err` after its checkpoint reported cancellation
    /// ends `Cancelled(reason)`, whatever its error says.
    pub(crate) fn checkpoint(&self) -> Result<(), Cancelled> {
        if coop::clock_look_due() && self.sched().poll_timers() {
            // The lab: this task has spun in one poll past the run's step
            // limit (virtual time stands still while it runs, so no timer
            // would ever end it); the run ends, and so does the spin. `Err`
            // even in a masked section (a masked spin-wait would otherwise
            // never end: the run is over, not just this task's work).
            let reason = CancelReason::new(CancelKind::Shutdown)
                .with_message("the lab's step limit: a task spun in one poll")
                .with_origin(Origin::Runtime);
            cancel_task(&self.task, &reason);
            // Told so before in this poll, and still spinning (it ignores
            // the `Err`: `let _ = cx.checkpoint()` in a loop): stopped as a
            // spin on the clock is, by a panic (found by review: the run
            // never returned).
            if coop::spin_stopped_again() && !std::thread::panicking() {
                panic!(
                    "the lab's step limit: a task spun in one poll, checkpointing on after its \
                     checkpoint reported the limit"
                );
            }
            return Err(Cancelled(reason));
        }
        match self.cancel_requested() {
            Some(r) => Err(Cancelled(r)),
            None => Ok(()),
        }
    }

    /// Whether cancellation has been requested (masked or not).
    pub(crate) fn is_cancel_requested(&self) -> bool {
        self.cell().is_requested()
    }

    /// The requested cancellation's reason, if any (masked or not).
    pub(crate) fn cancel_reason(&self) -> Option<CancelReason> {
        self.cell().get()
    }

    /// Requests cancellation of this context's scope: the region whose
    /// body this is (and everything in it), or, in a task's own scope, the
    /// task (and every region it has open).
    pub(crate) fn cancel(&self, reason: CancelReason) {
        match &self.scope {
            Some(r) => r.cancel_owned(reason),
            None => cancel_task(&self.task, &reason),
        }
    }

    /// Yields to the scheduler once; a checkpoint.
    pub(crate) fn yield_now(&self) -> YieldNow<'_> {
        YieldNow {
            cx: self,
            yielded: false,
        }
    }

    /// Runs `fut` with cancellation deferred: checkpoints inside report
    /// nothing until it finishes (they report it afterwards). Nesting is
    /// bounded by [`MAX_MASK_DEPTH`]; deeper masks resolve to
    /// `Err(MaskDepthExceeded)` without running `fut`. The cleanup budget
    /// and shutdown's deadline still apply.
    pub(crate) fn masked<F: Future>(&self, fut: F) -> Masked<'_, F> {
        Masked { cx: self, fut }
    }

    // ---- budget -------------------------------------------------------------

    /// This context's effective budget (the meet of its task's and
    /// region's ancestors').
    pub(crate) fn budget(&self) -> Budget {
        match &self.scope {
            Some(r) => r.budget.meet(&self.header().budget),
            None => self.header().budget,
        }
    }

    /// Charges `cost` units: against the task's cost quota (all it was
    /// charged), and against the quota of each region whose body this
    /// context runs in (what was charged in that body since the region
    /// opened, nested bodies of the same task included). Whatever runs over
    /// is cancelled (`CostBudget`): the task, or only the region (found by
    /// review: a region's overrun cancelled the whole task, and counted
    /// what the task was charged before the region opened); then this
    /// returns `Err`.
    pub(crate) fn charge(&self, cost: u64) -> Result<(), Cancelled> {
        let h = self.header();
        // Relaxed: counters, each read by the read-modify-write that adds to
        // it; the cancellation they lead to carries its own ordering.
        let total = h
            .cost
            .fetch_add(cost, Ordering::Relaxed)
            .saturating_add(cost);
        if h.budget.cost_quota.is_some_and(|quota| total > quota) {
            cancel_task(
                &self.task,
                &CancelReason::new(CancelKind::CostBudget).with_origin(Origin::Task(h.id)),
            );
        }
        let mut scope = self.scope.as_ref();
        while let Some(r) = scope {
            // Relaxed: as above.
            let spent = r
                .body_cost
                .fetch_add(cost, Ordering::Relaxed)
                .saturating_add(cost);
            if r.budget.cost_quota.is_some_and(|quota| spent > quota) {
                r.cancel(
                    &CancelReason::new(CancelKind::CostBudget).with_origin(Origin::Region(r.id)),
                );
            }
            // The parent's body is this task's too only when the region
            // was opened in it.
            if !r.in_parents_body {
                break;
            }
            scope = r.parent.as_ref();
        }
        self.checkpoint()
    }

    // ---- time ---------------------------------------------------------------

    /// The runtime clock's time.
    ///
    /// A look at the clock, as a checkpoint's is: on the real runtime due
    /// timers fire (a task that busy-waits on the clock on a
    /// current-thread runtime lets them); in the lab, where the clock
    /// stands still while a task runs, the looks count against the run's
    /// steps left, and a task that spins on the clock past them is stopped
    /// by a panic (its outcome `Panicked`; the run reports the step
    /// limit): nothing else gets a loop that never yields out of it.
    pub(crate) fn now(&self) -> Instant {
        let sched = self.sched();
        if coop::clock_look_due() && sched.poll_timers() && !std::thread::panicking() {
            let reason = CancelReason::new(CancelKind::Shutdown)
                .with_message("the lab's step limit: a task spun in one poll")
                .with_origin(Origin::Runtime);
            cancel_task(&self.task, &reason);
            panic!(
                "the lab's step limit: a task spun in one poll looking at the clock, which \
                 stands still while a task runs"
            );
        }
        sched.now()
    }

    /// Sleeps for `d`; a checkpoint (returns `Err` if cancelled meanwhile).
    pub(crate) fn sleep(&self, d: Duration) -> Sleep<'_> {
        Sleep::new(self, self.now() + d)
    }

    /// Sleeps until `at`; a checkpoint.
    pub(crate) fn sleep_until(&self, at: Instant) -> Sleep<'_> {
        Sleep::new(self, at)
    }

    /// Ticks every `period`, the first tick one period from now.
    pub(crate) fn interval(&self, period: Duration) -> Interval {
        Interval::new(self.clone(), period)
    }

    pub(crate) fn insert_timer(
        &self,
        at: Instant,
        action: TimerAction,
    ) -> crate::time::driver::TimerHandle {
        self.sched().insert_timer(at, action)
    }

    /// Cancels a sleep's timer (a [`TimerAction::Wake`]); see
    /// `Scheduler::cancel_wake_timer`: it may still fire, spuriously.
    pub(crate) fn cancel_wake_timer(&self, h: crate::time::driver::TimerHandle) {
        self.sched().cancel_wake_timer(h);
    }

    // ---- tasks and regions ------------------------------------------------------

    /// [`spawn`](Self::spawn) with a budget of its own (met with the
    /// region's).
    pub(crate) fn spawn_with<G, F, T, E>(&self, budget: Budget, body: G) -> JoinHandle<T, E>
    where
        G: FnOnce(CxCore) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        spawn_in(self.region_node(), budget, self.header().child_seed(), body)
    }

    /// [`region`](Self::region) with a policy, budget and cleanup budget.
    pub(crate) fn region_with<G, F, T, E>(
        &self,
        spec: RegionOptions,
        body: G,
    ) -> impl Future<Output = Outcome<T, RegionError<E>>> + Send + 'static
    where
        G: FnOnce(CxCore) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let node = Region::open(self.region_node(), &self.task, &spec);
        let cx = CxCore::with_scope(self.task.clone(), Some(node.clone()));
        run_region(node, self.task.clone(), body(cx))
    }

    /// Runs `body` in a child region cancelled with reason `Timeout` if it
    /// has not closed after `d`. The body sees the cancellation at its
    /// checkpoints and cleans up under the cleanup budget; `timeout`
    /// returns once it has. The deadline's timer goes when the region
    /// closes or the returned future is dropped, whichever comes first.
    pub(crate) fn timeout<G, F, T, E>(
        &self,
        d: Duration,
        body: G,
    ) -> impl Future<Output = Outcome<T, RegionError<E>>> + Send + 'static
    where
        G: FnOnce(CxCore) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let node = Region::open(self.region_node(), &self.task, &RegionOptions::fail_fast());
        let reason = CancelReason::new(CancelKind::Timeout)
            .with_message(format!("after {d:?}"))
            .with_origin(Origin::Region(node.id));
        let sched = self.sched().clone();
        let timer = sched.insert_timer(
            self.now() + d,
            TimerAction::CancelRegion(Arc::downgrade(&node), reason),
        );
        // Cancels the deadline timer when the region closes, and when the
        // future is dropped before that (never polled, or cut off
        // mid-way): a timer left in the wheel until its deadline held the
        // region node's memory (its `Weak`) and the formatted reason, so
        // that many `timeout(1 h, ..)` futures dropped early grew the
        // wheel, and the memory, for an hour.
        let guard = CancelTimerOnDrop { sched, timer };
        let cx = CxCore::with_scope(self.task.clone(), Some(node.clone()));
        let fut = run_region(node, self.task.clone(), body(cx));
        async move {
            let out = fut.await;
            drop(guard);
            out
        }
    }

    /// Runs every racer as a task in a child region; the first to finish
    /// wins, the others are cancelled (`LostRace`) and drained before this
    /// resolves to the winner's outcome (or `Panicked`, if a loser
    /// panicked while draining). An empty race resolves `Cancelled`.
    pub(crate) fn race<G, F, T, E>(
        &self,
        racers: Vec<G>,
    ) -> impl Future<Output = Outcome<T, E>> + Send + 'static
    where
        G: FnOnce(CxCore) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        let node = Region::open(
            self.region_node(),
            &self.task,
            &RegionOptions::quiet_collect_all(),
        );
        let winner: Arc<Mutex<Option<Outcome<T, E>>>> = Arc::new(Mutex::new(None));
        let slot = winner.clone();
        let inner = node.clone();
        // The index of the racer that finished first (`usize::MAX`: none
        // yet). Each racer claims it as it finishes, however it finishes
        // (its value, a panic, or dropped cancelled): a guard that the
        // racer's future owns claims when dropped, which is before the
        // task publishes its outcome. Which handle the body happens to
        // poll first says nothing about who finished first (a racer that
        // finished later but sits earlier in the list would win).
        let first = Arc::new(AtomicUsize::new(usize::MAX));
        let mut handles: Vec<JoinHandle<T, E>> = racers
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                let claim = ClaimFirst {
                    first: first.clone(),
                    index: i,
                };
                spawn_in(
                    &node,
                    Budget::UNLIMITED,
                    self.header().child_seed(),
                    move |cx| {
                        let fut = g(cx);
                        async move {
                            let _claim = claim;
                            fut.await
                        }
                    },
                )
            })
            .collect();
        let body = async move {
            if !handles.is_empty() {
                // The losers are cancelled when the body ends, however it
                // ends: a guard, so that an unwind out of the body (user
                // code below: a waker, a loser's value's `Drop`) still
                // cancels them (found by review: the race then waited for
                // every loser to end on its own).
                let _losers = LoseOnDrop(inner);
                let first = std::future::poll_fn(|cx| {
                    // Acquire: pairs with the claim's AcqRel exchange (a
                    // claimed index is the racer that finished first).
                    let f = first.load(Ordering::Acquire);
                    if f != usize::MAX {
                        return Pin::new(&mut handles[f]).poll(cx);
                    }
                    for k in 0..handles.len() {
                        if let Poll::Ready(o) = Pin::new(&mut handles[k]).poll(cx) {
                            // Racer `k` has finished, so some racer has
                            // claimed (its claim came before its outcome,
                            // which this poll acquired): `k` itself, or
                            // one that finished before it, whose outcome
                            // is the race's. A later finisher's outcome
                            // goes as a loser's does.
                            let f = first.load(Ordering::Acquire);
                            if f == k {
                                return Poll::Ready(o);
                            }
                            debug_assert!(f != usize::MAX, "a finished racer claims first");
                            // A loser's value: user code in its `Drop`,
                            // caught and counted (found by review: its
                            // panic became the race's outcome).
                            crate::outcome::drop_caught_here(o);
                            return Pin::new(&mut handles[f]).poll(cx);
                        }
                    }
                    Poll::Pending
                })
                .await;
                *lock(&slot) = Some(first);
            }
            Ok::<(), std::convert::Infallible>(())
        };
        let fut = run_region(node, self.task.clone(), body);
        async move {
            let region = fut.await;
            let won = lock(&winner).take();
            match (region, won) {
                (Outcome::Panicked(p), _) => Outcome::Panicked(p),
                (_, Some(w)) => w,
                (Outcome::Cancelled(r), None) => Outcome::Cancelled(r),
                (_, None) => Outcome::Cancelled(
                    CancelReason::new(CancelKind::LostRace).with_message("a race with no racers"),
                ),
            }
        }
    }

    /// The scope of a heterogeneous join (`join!`): opens a child
    /// collect-all region, calls `body` with its context (the body spawns
    /// the branches into it, then awaits their handles in order), and
    /// resolves to what the body returned once the region has closed,
    /// whatever the region's own outcome: the same steps as
    /// [`join_all`](Self::join_all), with the spawning left to the caller.
    pub(crate) fn join_scope<B, Fut, R>(&self, body: B) -> impl Future<Output = R> + Send + 'static
    where
        B: FnOnce(CxCore) -> Fut,
        Fut: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        let node = Region::open(
            self.region_node(),
            &self.task,
            &RegionOptions::quiet_collect_all(),
        );
        let cx = CxCore::with_scope(self.task.clone(), Some(node.clone()));
        let fut = body(cx);
        let result: Arc<Mutex<Option<R>>> = Arc::new(Mutex::new(None));
        let slot = result.clone();
        let region = run_region(node, self.task.clone(), async move {
            let r = fut.await;
            *lock(&slot) = Some(r);
            Ok::<(), std::convert::Infallible>(())
        });
        async move {
            let region = region.await;
            // The body only awaits handles of tasks inside the region, which
            // the region's cancellation drains rather than abandons: it
            // finishes before the region closes, unless it panicked (the
            // runtime's own code, a waker's: not expected), whose panic
            // then goes on, here (found by review: a misleading message
            // of ours replaced it).
            match (lock(&result).take(), region) {
                (Some(r), _) => r,
                (None, Outcome::Panicked(p)) => {
                    std::panic::resume_unwind(Box::new(p.message().to_owned()))
                }
                (None, _) => unreachable!("a join body finishes before its region closes"),
            }
        }
    }

    /// Runs every body as a task in a child collect-all region and resolves
    /// to all their outcomes, in order, once all have finished.
    pub(crate) fn join_all<G, F, T, E>(
        &self,
        bodies: Vec<G>,
    ) -> impl Future<Output = Vec<Outcome<T, E>>> + Send + 'static
    where
        G: FnOnce(CxCore) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        let node = Region::open(
            self.region_node(),
            &self.task,
            &RegionOptions::quiet_collect_all(),
        );
        let handles: Vec<JoinHandle<T, E>> = bodies
            .into_iter()
            .map(|g| spawn_in(&node, Budget::UNLIMITED, self.header().child_seed(), g))
            .collect();
        let results: Arc<Mutex<Vec<Outcome<T, E>>>> = Arc::new(Mutex::new(Vec::new()));
        let slot = results.clone();
        let n = handles.len();
        let body = async move {
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(h.await);
            }
            *lock(&slot) = out;
            Ok::<(), std::convert::Infallible>(())
        };
        let fut = run_region(node, self.task.clone(), body);
        async move {
            let region = fut.await;
            let out = std::mem::take(&mut *lock(&results));
            match region {
                // The body panicked (not expected: it only awaits the
                // handles) before it stored the outcomes, which went with
                // it: each is reported as that panic, never a short vector
                // (found by review: an empty one came back).
                Outcome::Panicked(p) if out.len() < n => (0..n)
                    .map(|_| {
                        Outcome::Panicked(PanicPayload::new(format!(
                            "the join's own body panicked, and this outcome was lost: {}",
                            p.message()
                        )))
                    })
                    .collect(),
                _ => out,
            }
        }
    }

    /// The next number of the task's seeded random sequence.
    pub(crate) fn random_u64(&self) -> u64 {
        self.header().next_random()
    }

    // ---- finalizers and blocking work --------------------------------------------

    /// Registers `f` to run when this context's region closes (after every
    /// task in it has finished), in reverse order of registration.
    pub(crate) fn defer(&self, f: impl FnOnce() + Send + 'static) {
        self.region_node()
            .add_finalizer(Box::pin(async move { f() }));
    }

    /// Registers an async finalizer; it runs under the region's cleanup
    /// budget and is cut off (and counted) if it overruns.
    pub(crate) fn finalizer(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.region_node().add_finalizer(Box::pin(fut));
    }

    /// Runs `f` on the blocking pool and resolves with its value.
    pub(crate) fn spawn_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Blocking<R> {
        match self.sched().blocking() {
            Some(pool) => pool.spawn(f),
            None => crate::blocking::run_inline(f),
        }
    }
}

/// The future of [`Cx::yield_now`](crate::Cx::yield_now).
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::YieldNow;
/// let out = rt.block_on(|cx| async move {
///     let y: YieldNow<'_> = cx.yield_now();
///     Ok::<_, ()>(y.await.is_ok()) // another task may run meanwhile
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
pub struct YieldNow<'a> {
    cx: &'a CxCore,
    yielded: bool,
}

impl Future for YieldNow<'_> {
    type Output = Result<(), Cancelled>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Spend the turn's budget even when cancelled, so a loop that
        // ignores the error still gives the worker back.
        if coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(r) = self.cx.cancel_requested() {
            return Poll::Ready(Err(Cancelled(r)));
        }
        if self.yielded {
            return Poll::Ready(Ok(()));
        }
        self.yielded = true;
        // Polled by our own task, in its run on this thread (the usual
        // case): tell `Task::run` directly. Polled through some other
        // waker (a combinator with wakers of its own), or with our task's
        // waker but outside its run (on another thread, or inside another
        // task's poll, whose `Task::run` would take the request as its
        // own): wake that waker.
        // (`Task` is `repr(C)` with the header first: the task's address
        // is its header's.)
        if crate::task::is_running_task_waker(cx.waker())
            && std::ptr::eq(cx.waker().data(), self.cx.task.as_ptr().cast::<()>())
        {
            coop::request_yield();
        } else {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// Nested masked sections went deeper than [`MAX_MASK_DEPTH`].
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::MaskDepthExceeded;
/// let out = rt.block_on(|cx| async move {
///     Ok::<_, ()>(cx.masked(async {}).await != Err(MaskDepthExceeded))
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("masked sections nested deeper than {MAX_MASK_DEPTH}")]
pub struct MaskDepthExceeded;

/// The future of [`Cx::masked`](crate::Cx::masked).
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::{CancelReason, Masked};
/// let out = rt.block_on(|cx| async move {
///     cx.cancel(CancelReason::user("stop"));
///     // Inside the masked section the request is deferred ...
///     let inner: Masked<'_, _> = cx.masked(async { cx.checkpoint().is_ok() });
///     let ran_unbothered = inner.await.map_err(|_| ())?;
///     // ... and seen at the first checkpoint after it.
///     Ok::<_, ()>((ran_unbothered, cx.checkpoint().is_err()))
/// });
/// assert_eq!(out.ok(), Some((true, true)));
/// ```
pub struct Masked<'a, F> {
    cx: &'a CxCore,
    fut: F,
}

impl<F: Future> Future for Masked<'_, F> {
    type Output = Result<F::Output, MaskDepthExceeded>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of `fut`; it is never moved.
        let this = unsafe { self.get_unchecked_mut() };
        let mask = &this.cx.header().mask;
        if mask.load(Ordering::Relaxed) >= MAX_MASK_DEPTH {
            return Poll::Ready(Err(MaskDepthExceeded));
        }
        struct Unmask<'a>(&'a crate::loom::AtomicU32);
        impl Drop for Unmask<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        mask.fetch_add(1, Ordering::Relaxed);
        let _unmask = Unmask(mask);
        // SAFETY: `this.fut` is pinned because `self` is.
        unsafe { Pin::new_unchecked(&mut this.fut) }
            .poll(cx)
            .map(Ok)
    }
}

/// A race's losers, cancelled (`LostRace`) when the race's body ends,
/// however it ends: returning with the winner, or unwinding.
struct LoseOnDrop(Arc<Region>);

impl Drop for LoseOnDrop {
    fn drop(&mut self) {
        self.0.cancel(
            &CancelReason::new(CancelKind::LostRace).with_origin(Origin::Region(self.0.id)),
        );
    }
}

/// Claims a race's "first finished" index for its racer when dropped
/// (the racer's future owns it: dropped as the racer finishes, unwinds,
/// or is dropped cancelled). The first claim stands.
struct ClaimFirst {
    first: Arc<AtomicUsize>,
    index: usize,
}

impl Drop for ClaimFirst {
    fn drop(&mut self) {
        // AcqRel: the winner's claim is ordered before its outcome is
        // published (the task stores the outcome after the future, and
        // this guard in it, is gone), so a poll that acquired a finished
        // handle sees a claim.
        let _ = self.first.compare_exchange(
            usize::MAX,
            self.index,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}
