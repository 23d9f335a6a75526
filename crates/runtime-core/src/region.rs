//! Regions: scopes that own tasks and close only when every task and child
//! region in them has finished.
//!
//! A region node keeps a registry of its children (a lock-free push-only
//! [`Registry`] that spawns push to, and a vector that sweeps move them
//! into, compacted as children finish) so that a cancellation request
//! reaches every one of them, a live count that the closing region waits
//! on, the join of its children's outcomes, and its finalizers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use crate::budget::Budget;
use crate::cancel::{CancelKind, CancelReason, Origin};
use crate::loom::{AtomicBool, AtomicUsize, Mutex, Ordering, lock};
use crate::outcome::{Outcome, PanicPayload, Severity};
use crate::registry::Registry;
use crate::sched::Scheduler;
use crate::sync::{CancelCell, WakerSlot};
use crate::task::{Runnable, cancel_task_with, cut_off_task, wake_task};
use crate::time::Duration;
use crate::time::driver::TimerAction;
use crate::{RegionId, TaskId};

/// What a region does when a child fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The first error or panic (of a child or of the body) cancels every
    /// other child, reason [`CancelKind::SiblingFailed`].
    #[default]
    FailFast,
    /// Every child runs to its end; the region's outcome is the join.
    CollectAll,
}

/// How much cleanup a cancelled task gets before it is cut off: a number
/// of polls after the request, and a grace period. Cut-offs are counted in
/// [`RuntimeStats`](crate::RuntimeStats) and in shutdown reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupBudget {
    /// Polls allowed after cancellation was requested (`None`: no limit).
    pub polls: Option<u32>,
    /// Time allowed after cancellation was requested (`None`: no limit).
    pub grace: Option<Duration>,
}

impl CleanupBudget {
    /// The default: 1 000 polls and 5 seconds.
    pub const DEFAULT: CleanupBudget = CleanupBudget {
        polls: Some(1_000),
        grace: Some(Duration::from_secs(5)),
    };
    /// No limit: cleanup may take as long as it takes (shutdown still
    /// cuts it off at its deadline).
    pub const UNLIMITED: CleanupBudget = CleanupBudget {
        polls: None,
        grace: None,
    };
}

impl Default for CleanupBudget {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How to open a region: its policy, budget and cleanup budget.
///
/// ```
/// use runtime_core::{Budget, Policy, Region};
/// let spec = Region::collect_all().budget(Budget::UNLIMITED.with_poll_quota(10_000));
/// assert_eq!(spec.policy(), Policy::CollectAll);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Region {
    policy: Policy,
    budget: Budget,
    cleanup: Option<CleanupBudget>,
}

impl Region {
    /// A fail-fast region (the default).
    pub fn fail_fast() -> Self {
        Region::default()
    }

    /// A collect-all region.
    pub fn collect_all() -> Self {
        Region {
            policy: Policy::CollectAll,
            ..Region::default()
        }
    }

    /// With this budget (met with the parent's).
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// With this cleanup budget for its tasks (default: the parent's).
    pub fn cleanup(mut self, cleanup: CleanupBudget) -> Self {
        self.cleanup = Some(cleanup);
        self
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }
}

/// Why a region failed: its body's own error, or a child's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegionError<E> {
    /// The region's body returned this error.
    #[error("region body failed: {0:?}")]
    Body(E),
    /// A task in the region failed (the first to, in a fail-fast region).
    #[error("{0}")]
    Child(Failure),
}

/// A child task's error, as its region reports it (the typed error stays
/// with the task's `JoinHandle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The task that failed.
    pub task: TaskId,
    /// Its error, formatted with `Debug`.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} failed: {}", self.task.0, self.message)
    }
}

/// What a finishing child tells its region.
pub(crate) struct ChildReport {
    task: Option<TaskId>,
    severity: Severity,
    error: Option<String>,
    panic: Option<PanicPayload>,
}

impl ChildReport {
    /// What `o` tells the region. An error's `Debug` is user code: a
    /// panic in it is caught and counted in `stats`, and the message says
    /// so.
    pub(crate) fn of<T, E: fmt::Debug>(o: &Outcome<T, E>, stats: &crate::sched::Stats) -> Self {
        let mut r = ChildReport {
            task: None,
            severity: o.severity(),
            error: None,
            panic: None,
        };
        match o {
            Outcome::Ok(_) => {}
            Outcome::Err(e) => {
                r.error = Some(
                    crate::outcome::catch(|| format!("{e:?}")).unwrap_or_else(|p| {
                        stats.panic_caught();
                        format!("<the error's Debug panicked: {p}>")
                    }),
                );
            }
            Outcome::Cancelled(_) => {}
            Outcome::Panicked(p) => r.panic = Some(p.clone()),
        }
        r
    }

    pub(crate) fn with_task(mut self, id: TaskId) -> Self {
        self.task = Some(id);
        self
    }

    fn region_done() -> Self {
        ChildReport {
            task: None,
            severity: Severity::Ok,
            error: None,
            panic: None,
        }
    }
}

/// The worst child failure so far (the first of its severity).
enum Worst {
    Err(Failure),
    Panicked(PanicPayload),
}

impl Worst {
    fn severity(&self) -> Severity {
        match self {
            Worst::Err(_) => Severity::Err,
            Worst::Panicked(_) => Severity::Panicked,
        }
    }
}

/// A registry entry. The region owns its tasks: it holds them strongly
/// until they complete, so a task nobody else references (its handle
/// dropped, waiting on something that never comes) is still reachable for
/// cancellation and cut-off, never silently freed.
pub(crate) enum Child {
    Task(Arc<dyn Runnable>),
    Region(Weak<RegionNode>),
}

impl Child {
    fn is_alive(&self) -> bool {
        match self {
            Child::Task(t) => t.header().state.load(Ordering::Acquire) & crate::task::COMPLETE == 0,
            Child::Region(r) => r
                .upgrade()
                .is_some_and(|r| !r.closed.load(Ordering::Acquire)),
        }
    }
}

/// A finalizer: runs when the region closes, in reverse order of
/// registration, under the region's cleanup budget.
pub(crate) type Finalizer = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A region's finalizers, and whether the time to register more is over.
#[derive(Default)]
struct Finalizers {
    pending: Vec<Finalizer>,
    /// The region ran its last finalizer (or was abandoned): one registered
    /// now would never run, so it is counted as skipped instead.
    over: bool,
}

/// The shared state of one region.
pub(crate) struct RegionNode {
    pub(crate) id: RegionId,
    /// This node, weakly (for timers that must not keep it alive).
    this: Weak<RegionNode>,
    parent: Option<Arc<RegionNode>>,
    /// The task whose body runs this region (woken when it is cancelled).
    owner: Option<Weak<dyn Runnable>>,
    pub(crate) policy: Policy,
    pub(crate) budget: Budget,
    pub(crate) cleanup: CleanupBudget,
    pub(crate) cancel: CancelCell,
    pub(crate) sched: Arc<dyn Scheduler>,
    /// Children alive (tasks and child regions).
    live: AtomicUsize,
    closer: WakerSlot,
    /// The waker of the body's last poll (woken by a cancel request).
    /// (Kept, not taken, by a wake: a later, stronger request wakes it
    /// again. Set only when the poller changes, so a body's poll pays no
    /// atomic operation for it; cleared at close, so that a `Cx` kept in a
    /// task's output cannot hold the task through it.)
    body_waker: Mutex<Option<Waker>>,
    /// Children registered since the last take (`registry.rs`): spawns
    /// push here; sweeps, cut-offs and the close take it whole, under
    /// `swept`'s lock, into `swept`.
    children: Registry<Child>,
    /// Children a sweep has already seen: moved out of the registry (which
    /// stays short, for spawns) into this vector, which only sweeps (one at
    /// a time), cut-offs and the close touch, so its lock is uncontended.
    swept: Mutex<Vec<Child>>,
    sweeps: AtomicUsize,
    worst: Mutex<Option<Worst>>,
    finalizers: Mutex<Finalizers>,
    /// The cleanup budget ran out while the body was still running (its
    /// grace period, or shutdown's cut-off): masked sections in the body
    /// no longer defer the cancellation.
    cut_off: AtomicBool,
    /// Set when the region's future was dropped before it closed: the last
    /// child to finish completes the close.
    abandoned: AtomicBool,
    closed: AtomicBool,
    /// Opened in a parent that had closed: not counted there.
    orphan: AtomicBool,
}

/// The bit of `live` that says the region has closed to new children.
const CLOSED: usize = 1 << (usize::BITS - 1);

impl fmt::Debug for RegionNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("id", &self.id)
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl RegionNode {
    /// The root region of a runtime.
    pub(crate) fn root(sched: Arc<dyn Scheduler>, cleanup: CleanupBudget) -> Arc<RegionNode> {
        Arc::new_cyclic(|this| {
            RegionNode::new(
                this.clone(),
                RegionId(sched.next_id()),
                None,
                None,
                Policy::CollectAll,
                Budget::UNLIMITED,
                cleanup,
                sched,
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        this: Weak<RegionNode>,
        id: RegionId,
        parent: Option<Arc<RegionNode>>,
        owner: Option<Weak<dyn Runnable>>,
        policy: Policy,
        budget: Budget,
        cleanup: CleanupBudget,
        sched: Arc<dyn Scheduler>,
    ) -> Self {
        RegionNode {
            id,
            this,
            parent,
            owner,
            policy,
            budget,
            cleanup,
            cancel: CancelCell::new(),
            sched,
            live: AtomicUsize::new(0),
            closer: WakerSlot::new(),
            body_waker: Mutex::new(None),
            children: Registry::new(),
            swept: Mutex::new(Vec::new()),
            sweeps: AtomicUsize::new(0),
            worst: Mutex::new(None),
            finalizers: Mutex::new(Finalizers::default()),
            cut_off: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            orphan: AtomicBool::new(false),
        }
    }

    /// Opens a child region of `parent`, whose body runs in `owner`.
    pub(crate) fn open(
        parent: &Arc<RegionNode>,
        owner: &Arc<dyn Runnable>,
        spec: &Region,
    ) -> Arc<RegionNode> {
        let sched = parent.sched.clone();
        let node = Arc::new_cyclic(|this| {
            RegionNode::new(
                this.clone(),
                RegionId(sched.next_id()),
                Some(parent.clone()),
                Some(Arc::downgrade(owner)),
                spec.policy,
                parent.budget.meet(&spec.budget),
                spec.cleanup.unwrap_or(parent.cleanup),
                sched,
            )
        });
        owner.header().add_open_region(&node);
        if !parent.adopt(Child::Region(Arc::downgrade(&node))) {
            // The parent has closed (a `Cx` outlived its region): this
            // region is born cancelled and never counted in the parent.
            node.orphan.store(true, Ordering::Relaxed);
            node.cancel(
                &CancelReason::new(CancelKind::ParentCancelled)
                    .with_message("the parent region had already closed")
                    .with_origin(Origin::Region(parent.id)),
            );
        } else if let Some(reason) = parent.cancel.get() {
            node.cancel(&reason.for_child());
        } else if let Some(reason) = owner.header().cancel.get() {
            node.cancel(&reason.for_child());
        }
        if let Some(deadline) = node.budget.deadline
            && parent.budget.deadline != Some(deadline)
        {
            let reason =
                CancelReason::new(CancelKind::Deadline).with_origin(Origin::Region(node.id));
            node.sched.insert_timer(
                deadline,
                TimerAction::CancelRegion(Arc::downgrade(&node), reason),
            );
        }
        node
    }

    /// Registers a new child: counted live, reachable by cancellation.
    ///
    /// The registration (the registry's push, an acquire-release CAS on
    /// its head) and the check of this region's cancel flag afterwards (in
    /// the caller) pair with `cancel`'s flag store and the sweep's take of
    /// the registry (an acquire-release swap of the same head, under
    /// `swept`'s lock, as every take is): either the sweep finds the child
    /// or the caller sees the flag (`registry.rs` explains why; loom checks
    /// it in `loom_tests.rs`).
    pub(crate) fn adopt(&self, child: Child) -> bool {
        // SeqCst: pairs with the CAS that closes the region (a child is
        // either counted before the close or refused after it).
        if self.live.fetch_add(1, Ordering::SeqCst) & CLOSED != 0 {
            self.live.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        self.children.push(child);
        // Amortised compaction: finished children are dropped from the
        // registry once they outnumber the live ones (the registry's
        // length is an estimate, which is all this needs).
        let len = self.children.len();
        if len > 64 && len > self.live() {
            self.sweep();
        }
        true
    }

    /// Registers a spawned task and applies a pending cancellation to it.
    /// Returns false (and adopts nothing) if the region is already closed.
    pub(crate) fn adopt_task(&self, task: &Arc<dyn Runnable>) -> bool {
        if !self.adopt(Child::Task(task.clone())) {
            return false;
        }
        if let Some(reason) = self.cancel.get_arc() {
            cancel_task_with(task, &reason, false);
        }
        true
    }

    /// Requests cancellation of this region and everything in it.
    /// The task whose body runs this region, if it is still alive.
    pub(crate) fn owner_task(&self) -> Option<Arc<dyn Runnable>> {
        self.owner.as_ref().and_then(Weak::upgrade)
    }

    /// Whether `region` is this region or lies below it.
    pub(crate) fn contains(&self, region: &Arc<RegionNode>) -> bool {
        let mut r = Some(region);
        while let Some(node) = r {
            if std::ptr::eq(Arc::as_ptr(node), self) {
                return true;
            }
            r = node.parent.as_ref();
        }
        false
    }

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
    fn sweep(&self) {
        if self.sweeps.fetch_add(1, Ordering::AcqRel) != 0 {
            return;
        }
        loop {
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

    fn cut_off_child(&self, c: &Child, force: bool) {
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

    /// Called by each finishing child.
    ///
    /// Errors and panics join into the region's outcome (and, fail-fast,
    /// cancel the siblings). A cancelled child does not: it was cancelled
    /// because someone asked (its handle's holder, its own budget, or this
    /// region, whose body then sees the request itself); the child's
    /// outcome is on its handle.
    pub(crate) fn child_finished(&self, report: ChildReport) {
        let failed = matches!(report.severity, Severity::Err | Severity::Panicked);
        if failed {
            {
                let mut worst = lock(&self.worst);
                let current = worst.as_ref().map_or(Severity::Ok, Worst::severity);
                if report.severity > current {
                    *worst = Some(match report.severity {
                        Severity::Err => Worst::Err(Failure {
                            task: report.task.unwrap_or(TaskId(0)),
                            message: report.error.unwrap_or_default(),
                        }),
                        _ => Worst::Panicked(
                            report.panic.unwrap_or_else(|| PanicPayload::new("panic")),
                        ),
                    });
                }
            }
            if self.policy == Policy::FailFast {
                self.cancel(&self.sibling_failed());
            }
        }
        // AcqRel: the child's work happens-before the closer's Acquire.
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            if self.abandoned.load(Ordering::SeqCst) {
                if self.try_close() {
                    self.finish_abandoned();
                }
            } else if self.closer.wake() {
                self.sched.stats().panic_caught();
            }
        }
    }

    fn sibling_failed(&self) -> CancelReason {
        CancelReason::new(CancelKind::SiblingFailed).with_origin(Origin::Region(self.id))
    }

    /// The number of live children.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire) & !CLOSED
    }

    /// Closes the region to new children if none is alive.
    fn try_close(&self) -> bool {
        // SeqCst: see `adopt`.
        self.live
            .compare_exchange(0, CLOSED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Ready when every child has finished; the region is then closed to
    /// new children.
    pub(crate) fn poll_quiescent(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.try_close() {
            return Poll::Ready(());
        }
        self.closer.register(cx.waker());
        if self.try_close() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Registers a finalizer. One registered while the finalizers run
    /// (by a finalizer, or a task of another region holding this one's
    /// `Cx`) runs in the same pass; one registered after the last has run
    /// (the region closed) never can: it is dropped and counted in
    /// `finalizers_skipped`.
    pub(crate) fn add_finalizer(&self, f: Finalizer) {
        let mut fin = lock(&self.finalizers);
        if !fin.over {
            fin.pending.push(f);
            return;
        }
        drop(fin);
        self.sched.stats().finalizers_skipped(1);
        if crate::outcome::drop_caught(f).is_some() {
            self.sched.stats().panic_caught();
        }
    }

    /// The next finalizer to run (the last registered), or `None`, which
    /// closes registration.
    fn next_finalizer(&self) -> Option<Finalizer> {
        let mut fin = lock(&self.finalizers);
        let next = fin.pending.pop();
        if next.is_none() {
            fin.over = true;
        }
        next
    }

    /// Takes every pending finalizer and closes registration.
    fn take_finalizers(&self) -> Vec<Finalizer> {
        let mut fin = lock(&self.finalizers);
        fin.over = true;
        std::mem::take(&mut fin.pending)
    }

    /// Records a panic of the region's own code (a finalizer): the region
    /// ends `Panicked` unless something worse is already recorded.
    fn record_panic(&self, payload: PanicPayload) {
        self.sched.stats().panic_caught();
        let mut worst = lock(&self.worst);
        if !matches!(*worst, Some(Worst::Panicked(_))) {
            *worst = Some(Worst::Panicked(payload));
        }
    }

    /// The waker of the body's last poll, if any.
    fn body_waker(&self) -> Option<Waker> {
        lock(&self.body_waker).clone()
    }

    /// Whether the cleanup budget of this region's body has run out.
    pub(crate) fn is_cut_off(&self) -> bool {
        self.cut_off.load(Ordering::Acquire)
    }

    /// Closes after the body and every child finished: joins the body's
    /// outcome with the children's, tells the parent.
    fn close<T, E>(&self, body: Outcome<T, RegionError<E>>) -> Outcome<T, RegionError<E>> {
        let worst = lock(&self.worst).take();
        let children: Outcome<(), RegionError<E>> = match worst {
            None => Outcome::Ok(()),
            Some(Worst::Err(f)) => Outcome::Err(RegionError::Child(f)),
            Some(Worst::Panicked(p)) => Outcome::Panicked(p),
        };
        let out = match body {
            // The body saw the cancellation this region issued by policy:
            // the cause (a child's failure) is the outcome, not that.
            Outcome::Cancelled(r)
                if self.absorbs_reason(&r) && children.severity() != Severity::Ok =>
            {
                children.map(|()| unreachable!("a non-Ok outcome has no value"))
            }
            b if children.severity() > b.severity() => {
                children.map(|()| unreachable!("a non-Ok outcome has no value"))
            }
            b => b,
        };
        self.detach();
        out
    }

    /// A cancellation this region itself issued by policy (a failed
    /// sibling, a lost race) is expected, not a failure of the region.
    fn absorbs_reason(&self, r: &CancelReason) -> bool {
        let root = r.root_cause();
        root.origin() == Origin::Region(self.id)
            && matches!(
                root.kind(),
                CancelKind::SiblingFailed | CancelKind::LostRace
            )
    }

    /// Leaves the parent and the owner task, and lets go of the finished
    /// children (they hold the region; it must not hold them back).
    fn detach(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        drop(self.children.take());
        let body_waker = lock(&self.body_waker).take();
        drop(body_waker);
        let swept = std::mem::take(&mut *lock(&self.swept));
        drop(swept);
        if let Some(owner) = self.owner.as_ref().and_then(Weak::upgrade) {
            owner.header().remove_open_region(self);
        }
        if let Some(parent) = &self.parent
            && !self.orphan.load(Ordering::Relaxed)
        {
            parent.child_finished(ChildReport::region_done());
        }
    }

    /// The region's future was dropped with children still running; the
    /// last one to finish lands here. Async finalizers cannot run without
    /// a task any more: they are dropped and counted.
    fn finish_abandoned(&self) {
        let skipped = self.take_finalizers();
        self.sched.stats().finalizers_skipped(skipped.len());
        for f in skipped {
            if crate::outcome::drop_caught(f).is_some() {
                self.sched.stats().panic_caught();
            }
        }
        self.detach();
    }
}

/// Runs a region: the body, then quiescence, then finalizers, then the
/// join. Dropping it before it finishes cancels the region and leaves the
/// close to its last child.
pub(crate) async fn run_region<F, T, E>(
    node: Arc<RegionNode>,
    owner: Arc<dyn Runnable>,
    body: F,
) -> Outcome<T, RegionError<E>>
where
    F: Future<Output = Result<T, E>> + Send,
{
    let guard = AbandonGuard(Some(node.clone()));
    let body = InScope {
        node: &node,
        inner: CatchUnwind { inner: body },
        registered: None,
    };
    let body_out = match body.await {
        Ok(Ok(v)) => Outcome::Ok(v),
        Ok(Err(e)) => match owner
            .header()
            .observed
            .load(Ordering::Relaxed)
            .then(|| node.cancel.get())
            .flatten()
        {
            Some(reason) => Outcome::Cancelled(reason),
            None => Outcome::Err(RegionError::Body(e)),
        },
        Err(p) => Outcome::Panicked(p),
    };
    if matches!(body_out.severity(), Severity::Err | Severity::Panicked)
        && node.policy == Policy::FailFast
    {
        node.cancel(&node.sibling_failed());
    }
    std::future::poll_fn(|cx| node.poll_quiescent(cx)).await;
    while let Some(f) = node.next_finalizer() {
        match Cleanup::new(&node, f).await {
            Cleaned::Done => {}
            Cleaned::CutOff => node.sched.stats().finalizer_cut_off(),
            Cleaned::Panicked(p) => node.record_panic(p),
        }
    }
    guard.disarm();
    node.close(body_out)
}

/// Abandons the region if its future is dropped before it closes.
struct AbandonGuard(Option<Arc<RegionNode>>);

impl AbandonGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        let Some(node) = &self.0 else { return };
        node.cancel(
            &CancelReason::new(CancelKind::ParentCancelled)
                .with_message("the region's future was dropped before it closed")
                .with_origin(Origin::Region(node.id)),
        );
        node.abandoned.store(true, Ordering::SeqCst);
        if node.try_close() {
            node.finish_abandoned();
        }
    }
}

/// Polls a region's body with the region as the current scope (for
/// [`JoinHandle`](crate::JoinHandle)'s checkpoint), registering the
/// poller's waker for cancel requests.
struct InScope<'a, F> {
    node: &'a RegionNode,
    inner: F,
    /// The waker last stored in the node (to store a new one only when the
    /// poller changes).
    registered: Option<Waker>,
}

impl<F: Future> Future for InScope<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of `inner`; it is never moved.
        let this = unsafe { self.get_unchecked_mut() };
        if !this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            let w = cx.waker().clone();
            *lock(&this.node.body_waker) = Some(w.clone());
            this.registered = Some(w);
        }
        let _scope = crate::task::PollingGuard::region(this.node);
        // SAFETY: `inner` is pinned because `self` is.
        unsafe { Pin::new_unchecked(&mut this.inner) }.poll(cx)
    }
}

/// Polls a future, turning a panic into `Err(payload)`.
pub(crate) struct CatchUnwind<F> {
    pub(crate) inner: F,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, PanicPayload>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of `inner`; it is never moved.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.inner) };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(PanicPayload::from_any(p))),
        }
    }
}

/// A finalizer under the cleanup budget: resolves `true` if it finished,
/// `false` if it was cut off (poll quota or grace period spent).
struct Cleanup {
    fut: Finalizer,
    polls: u32,
    max_polls: Option<u32>,
    deadline: Option<crate::time::Instant>,
    timer: Option<crate::time::driver::TimerHandle>,
    sched: Arc<dyn Scheduler>,
}

impl Cleanup {
    fn new(node: &RegionNode, fut: Finalizer) -> Self {
        Cleanup {
            fut,
            polls: 0,
            max_polls: node.cleanup.polls,
            deadline: node.cleanup.grace.map(|g| node.sched.now() + g),
            timer: None,
            sched: node.sched.clone(),
        }
    }
}

/// How a finalizer ended.
enum Cleaned {
    Done,
    CutOff,
    Panicked(PanicPayload),
}

impl Future for Cleanup {
    type Output = Cleaned;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Cleaned> {
        let this = &mut *self;
        this.polls += 1;
        if this.max_polls.is_some_and(|m| this.polls > m) {
            return Poll::Ready(Cleaned::CutOff);
        }
        if let Some(d) = this.deadline
            && this.sched.now() >= d
        {
            return Poll::Ready(Cleaned::CutOff);
        }
        match crate::outcome::catch(|| this.fut.as_mut().poll(cx)) {
            Ok(Poll::Ready(())) => Poll::Ready(Cleaned::Done),
            Err(p) => Poll::Ready(Cleaned::Panicked(p)),
            Ok(Poll::Pending) => {
                if let (Some(d), None) = (this.deadline, &this.timer) {
                    this.timer = Some(
                        this.sched
                            .insert_timer(d, TimerAction::Wake(cx.waker().clone())),
                    );
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            self.sched.cancel_timer(t);
        }
        // The finalizer is user code: its Drop (after a cut-off, with its
        // state half-run) may panic.
        let fut = std::mem::replace(&mut self.fut, Box::pin(async {}));
        if crate::outcome::drop_caught(fut).is_some() {
            self.sched.stats().panic_caught();
        }
    }
}
