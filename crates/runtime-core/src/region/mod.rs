//! Regions: scopes that own tasks and close only when every task and child
//! region in them has finished.
//!
//! A region node keeps a registry of its tasks (a lock-free push-only
//! [`Registry`] that spawns push to, and a vector that sweeps move them
//! into, compacted as tasks finish) so that a cancellation request
//! reaches every one of them, a live count (tasks and child regions) that
//! the closing region waits on, the join of its children's outcomes, and
//! its finalizers. A child region is counted, not registered: it is
//! reached through the task that opened it (below).
//!
//! * `mod.rs`: the node ([`Region`]), its children and their reports.
//! * `options.rs`: [`RegionOptions`] and [`Policy`], how to open one.
//! * `error.rs`: [`RegionError`] and [`Failure`].
//! * `run.rs`: running a region's body to its close.
//! * The cancellation of a region (request, sweep, cut-off) is in
//!   `cancel/protocol.rs`, with the rest of the protocol.
//!
//! ## Life of a region
//!
//! A region counts its live children, holds its tasks in a registry
//! (spawns push to a lock-free push-only `Registry` (`registry.rs`,
//! loom-modelled); a sweep moves what it has seen into a vector only
//! sweeps, cut-offs and the close touch, and drops finished entries; tasks
//! are held strongly, so a task nobody references is still owned and
//! reachable), and closes with a CAS of the live count from 0 to CLOSED,
//! after which nothing can be spawned into it. The count's WAITER bit says
//! the closer registered a waker: the last child looks at the closer's
//! slot only then. `run_region` is the life of a region: body, quiescence,
//! finalizers in reverse under the cleanup budget, outcome. Dropping it
//! early abandons the region: it is cancelled and the last child to finish
//! completes the close. So does dropping it before its first poll, or a
//! panic between the open and that future (a body closure's): the node
//! is held by an `Opened` guard from the open to the close. Dropped after
//! the close to children (in the finalizers), the guard finishes the
//! region itself: the finalizers left get their first poll, and the node
//! leaves its parent and owner.
//!
//! A child region's outcome goes to the body that awaited it, as a
//! function's result does, not into its parent's join: the parent's
//! policy sees a failed child region only if that body returns the failure
//! (`?` on it, or an `Err` made from it). A child task's outcome, which
//! has no caller to go to, joins into its region's.
//!
//! A region is opened through a context, by the context's task: a task of
//! the parent (spawned into it) or the parent's owner (the task its body
//! runs in). Every task keeps a list of the regions it has open
//! (`Header::open_regions`), so the child is reached through that task: a
//! task's cancellation and cut-off pass to its open regions, and a
//! region's pass to the regions its owner opened in it. The parent only
//! counts the child, and the child's node is freed when its last strong
//! reference goes (a registry entry would hold its memory until the
//! parent's next sweep). A context can outlive its task (kept in the
//! task's output, moved elsewhere): a finished task stays in the registry
//! while a region is open through its context (`is_alive`), and one the
//! registry already let go is registered again by such an open.

mod error;
mod options;
mod run;

pub use error::{Failure, RegionError};
pub use options::{Policy, RegionOptions};
pub(crate) use run::{Opened, run_region};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use crate::budget::{Budget, CleanupBudget};
use crate::cancel::CancelCell;
use crate::cancel::{CancelKind, CancelReason, Origin};
use crate::cancel::{GRACE_ARMED, GRACE_UNSET, cancel_task_from_region, cut_off_task};
use crate::loom::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering, lock};
use crate::outcome::{Outcome, PanicPayload, Severity};
use crate::registry::Registry;
use crate::sched::{Observed, Scheduler};
use crate::sync::{LazyMutex, WakerSlot};
use crate::task::{TaskRef, WeakTask};
use crate::time::driver::{TimerAction, TimerHandle};
use crate::{RegionId, TaskId};

/// What a finishing child tells its region.
pub(crate) struct ChildReport {
    task: Option<TaskId>,
    severity: Severity,
    error: Option<String>,
    panic: Option<PanicPayload>,
}

impl ChildReport {
    /// What `o` tells the region; `explain`: an error's message is made
    /// (the region may keep it: see [`Region::keeps_message`]), else only
    /// its severity is reported. An error's `Debug` is user code: a panic
    /// in it is caught and counted in `stats`, and the message says so;
    /// the message is cut at [`MESSAGE_MAX`] bytes, and so is the
    /// formatting (a `Debug` that writes a huge or deeply nested value
    /// stops there, rather than taking seconds or the worker's stack).
    pub(crate) fn of<T, E: fmt::Debug>(
        o: &Outcome<T, E>,
        explain: bool,
        stats: &crate::sched::Stats,
    ) -> Self {
        let mut r = ChildReport {
            task: None,
            severity: o.severity(),
            error: None,
            panic: None,
        };
        match o {
            Outcome::Ok(_) => {}
            Outcome::Err(_) if !explain => {}
            Outcome::Err(e) => {
                r.error = Some(debug_cut(e).unwrap_or_else(|p| {
                    stats.panic_caught();
                    format!("<the error's Debug panicked: {p}>")
                }));
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
}

/// The longest message a failing child's error makes for its region
/// ([`Failure::message`]), in bytes, before `…` and a note.
pub(crate) const MESSAGE_MAX: usize = 4096;

/// `{e:?}`, cut at [`MESSAGE_MAX`] bytes: the writer refuses what comes
/// after, which stops the formatting there (a derived `Debug` returns at
/// the first refused write, however deep it is). `Err`: the `Debug`
/// panicked before the cut. One that panics at the refused write (a
/// `write!(f, ..).unwrap()`, harmless into a `String`) keeps the text up
/// to the cut: that panic is the cut's doing, not counted. (The panic
/// hook still reports it, once, for the failure a region keeps.)
fn debug_cut(e: &dyn fmt::Debug) -> Result<String, PanicPayload> {
    struct Cut {
        buf: String,
        cut: bool,
    }
    impl fmt::Write for Cut {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = MESSAGE_MAX - self.buf.len();
            if s.len() <= room {
                self.buf.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.buf.push_str(&s[..end]);
            self.cut = true;
            Err(fmt::Error)
        }
    }
    let mut w = Cut {
        buf: String::new(),
        cut: false,
    };
    // An `Err` of the `Debug`'s own (not the cut) keeps what it wrote.
    match crate::outcome::catch(|| {
        let _ = fmt::write(&mut w, format_args!("{e:?}"));
    }) {
        Ok(()) => {}
        Err(_) if w.cut => {}
        Err(p) => return Err(p),
    }
    if w.cut {
        let _ = fmt::Write::write_fmt(&mut w.buf, format_args!("… (cut at {MESSAGE_MAX} bytes)"));
    }
    Ok(w.buf)
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

/// Whether a registered task still needs its entry: it is running, or it
/// finished with regions still open through its context (a `Cx` that
/// outlived its task: child regions are not registered, each is reached
/// through the task that opened it, `Region::open`). The registry holds
/// the region's tasks strongly until then, so a task nobody else
/// references (its handle dropped, waiting on something that never comes)
/// is still reachable for cancellation and cut-off, never silently freed.
pub(crate) fn is_alive(t: &TaskRef) -> bool {
    alive_and_finished(t).0
}

/// [`is_alive`], and whether the task finished, from one load of its
/// state.
#[inline]
fn alive_and_finished(t: &TaskRef) -> (bool, bool) {
    // Acquire: pairs with `finish`'s AcqRel `fetch_or(COMPLETE)`: a child
    // seen finished needs no request (its report to this region, which
    // comes right after COMPLETE, may still be on its way: the live count
    // waits for it, not this list). A stale "alive" only keeps the entry
    // until the next sweep.
    let h = t.header();
    if h.state.load(Ordering::Acquire) & crate::task::COMPLETE == 0 {
        return (true, false);
    }
    // Acquire: pairs with the counts' stores. A region opened before the
    // task finished was counted before COMPLETE (on the task, or, through
    // a context elsewhere, ordered by `open`'s read-modify-write of the
    // state word), so the Acquire above makes it seen; one opened after
    // registers the task again (`open`).
    (h.open_count.load(Ordering::Acquire) != 0, true)
}

/// Decides which tasks taken from the registry a sweep or cut-off keeps
/// in the swept list: those that still need their entry (`is_alive`),
/// once each. A finished task is registered again at each region opened
/// through its context (`Region::open`), so the registry may hold it many
/// times; one entry is kept.
///
/// Running tasks (registered once) are kept without a look at the list.
/// For a finished one, the first asks for a set of the list's tasks, kept
/// up to date for the rest of this pass: a look through the list for each
/// would make a pass over `n` new tasks `n * n / 2` comparisons (for every
/// task: 4b241c5; for a finished task's many entries: this set). A stale
/// "not finished" only keeps a duplicate until the next sweep.
#[derive(Default)]
pub(crate) struct Keeper {
    /// The tasks in the swept list (their headers' addresses), made at the
    /// first finished task of the pass. (A `BTreeSet`: a `HashSet`'s
    /// default hasher reads OS randomness, which the lab must not.)
    listed: Option<std::collections::BTreeSet<usize>>,
}

impl Keeper {
    /// Whether to keep `t`; if so, the caller pushes it onto `swept`.
    pub(crate) fn keeps(&mut self, swept: &[TaskRef], t: &TaskRef) -> bool {
        let addr = |t: &TaskRef| t.as_ptr() as usize;
        match alive_and_finished(t) {
            (false, _) => false,
            (true, false) => {
                if let Some(listed) = &mut self.listed {
                    listed.insert(addr(t));
                }
                true
            }
            (true, true) => self
                .listed
                .get_or_insert_with(|| swept.iter().map(addr).collect())
                .insert(addr(t)),
        }
    }
}

/// A finalizer: runs when the region closes, in reverse order of
/// registration, under the region's cleanup budget.
pub(crate) type Finalizer = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A region's finalizers, and whether the time to register more is over.
#[derive(Default)]
struct Finalizers {
    /// With whether each came while the finalizers ran (`passing`).
    pending: Vec<(Finalizer, bool)>,
    /// The finalizers have begun to run, under this budget: one registered
    /// now is late.
    pass: Option<FinalizerPass>,
    /// The region ran its last finalizer (or was abandoned): one registered
    /// now would never run, so it is counted as skipped instead.
    over: bool,
}

/// The budget of one pass of a region's finalizers over those registered
/// while it runs (by a finalizer, or by a task holding the region's `Cx`):
/// each gets its first poll while the pass has run for less than the
/// region's cleanup grace period and has started fewer of them than its
/// cleanup polls (and while the region is not cut off and the runtime not
/// shut down); one that comes after is dropped unrun and counted cut off.
/// Those registered before the pass each get their first poll whatever
/// the budget (every `defer` of the body's runs). (Found by review: a
/// finalizer that registered another, for ever, held its region open
/// whatever its budget.)
struct FinalizerPass {
    deadline: Option<crate::time::Instant>,
    late_left: Option<u32>,
}

impl FinalizerPass {
    /// A pass beginning now, under `node`'s cleanup budget.
    fn new(node: &Region) -> Self {
        FinalizerPass {
            deadline: node.cleanup.grace.map(|g| node.sched.now_ceil() + g),
            late_left: node.cleanup.polls,
        }
    }

    /// Whether a finalizer may have its first poll (`late`: registered
    /// during the pass); a late one it admits is counted against it.
    fn admits(&mut self, node: &Region, late: bool) -> bool {
        if !late {
            return true;
        }
        if node.is_cut_off()
            || node.sched.is_shut_down()
            || self.deadline.is_some_and(|d| node.sched.now() >= d)
        {
            return false;
        }
        match &mut self.late_left {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}

/// The shared state of one region.
pub(crate) struct Region {
    pub(crate) id: RegionId,
    pub(crate) parent: Option<Arc<Region>>,
    /// The task whose body runs this region (woken when it is cancelled).
    owner: Option<WeakTask>,
    pub(crate) policy: Policy,
    /// Nobody reads this region's outcome (`RegionOptions::quiet`).
    quiet: bool,
    pub(crate) budget: Budget,
    pub(crate) cleanup: CleanupBudget,
    pub(crate) cancel: CancelCell,
    /// When the cleanup grace period of this region's cancellation ends
    /// (nanoseconds; `GRACE_UNSET`, or `GRACE_ARMED` once its timer is
    /// armed): recorded at the first request, armed only when something
    /// below is still running after a poll that saw it (`cancel/protocol.rs`).
    pub(crate) grace_at: AtomicU64,
    /// Cost units charged in this region's body (and the bodies nested in
    /// it by the same task) since it opened, against its budget's cost
    /// quota (`CxCore::charge`).
    pub(crate) body_cost: AtomicU64,
    /// The armed grace timer, cancelled at the close.
    pub(crate) grace_timer: Mutex<Option<TimerHandle>>,
    /// An ancestor that a walk arming grace timers goes to straight from
    /// here once this region is armed or has no grace period: every
    /// region between is so too (`Region::arm_grace_chain`); null: the
    /// parent. (`std`'s atomic even under loom: only a hint of a walk
    /// that is correct with any value stored.)
    pub(crate) grace_skip: std::sync::atomic::AtomicPtr<Region>,
    /// How many regions are above this one (the root: 0), for
    /// `grace_skip`'s walks.
    pub(crate) depth: u32,
    /// The timer of this region's budget deadline, cancelled at the close
    /// (pending, it would hold the node's allocation until the deadline).
    deadline_timer: Mutex<Option<TimerHandle>>,
    pub(crate) sched: Arc<dyn Scheduler>,
    /// `sched.observes()`, asked once (`Region::observe`).
    observed: bool,
    /// Children alive (tasks and child regions: only the tasks are in the
    /// registry).
    live: AtomicUsize,
    /// Child regions alive that this region's owner opened (its body's
    /// nested regions, reached through the owner's list of open regions):
    /// a request looks at that list only when there is one.
    nested: AtomicUsize,
    /// This region is one of its parent's `nested` (its owner is the
    /// parent's owner), counted there from its open to its close.
    pub(crate) in_parents_body: bool,
    closer: WakerSlot,
    /// Who polled the body last (woken by a cancel request): its owner
    /// task with the task's own waker (the common case, which stores no
    /// waker: a request then wakes the owner task, `wake_body`), or
    /// another waker, stored.
    /// (Kept, not taken, by a wake: a later, stronger request wakes it
    /// again. Set only when the poller changes, so a body's poll pays no
    /// atomic operation for it; cleared at close, so that a `Cx` kept in a
    /// task's output cannot hold the task through it.)
    pub(crate) body_waker: Mutex<BodyPoller>,
    /// Children registered since the last take (`registry.rs`): spawns
    /// push here; sweeps, cut-offs and the close take it whole, under
    /// `swept`'s lock, into `swept`.
    pub(crate) children: Registry<TaskRef>,
    /// Children a sweep has already seen: moved out of the registry (which
    /// stays short, for spawns) into this vector, which only sweeps (one at
    /// a time), cut-offs and the close touch, so its lock is uncontended.
    pub(crate) swept: Mutex<Vec<TaskRef>>,
    /// Set by the first sweep or cut-off that takes the registry (under
    /// `swept`'s lock, before the take), as it may move tasks into
    /// `swept`: a close that reads it unset has nothing there to let go
    /// and skips the lock (most regions are never swept). The close reads
    /// it after its load of the registry's head, which reads the take's
    /// swap, or a later value, whenever that take moved anything (a
    /// release sequence through the pushes' compare-and-swaps): then it
    /// reads it set.
    pub(crate) swept_used: AtomicBool,
    pub(crate) sweeps: AtomicUsize,
    /// Made by the first failure (most regions have none: their close
    /// then takes no lock for it). A failing child makes and fills it
    /// before it leaves the live count; the close runs after the live
    /// count's last decrement (read by the closing compare-and-swap), so
    /// it sees every failure recorded, and the region's own code (a
    /// finalizer's panic) records before the close on the same task.
    worst: LazyMutex<Option<Worst>>,
    finalizers: Mutex<Finalizers>,
    /// FIN_NONE until the first finalizer is registered (FIN_SOME), or
    /// FIN_OVER when the close found none: lets a region without
    /// finalizers close their registration without taking the lock.
    fin_state: AtomicU32,
    /// The cleanup budget ran out while the body was still running (its
    /// grace period, or shutdown's cut-off): masked sections in the body
    /// no longer defer the cancellation.
    pub(crate) cut_off: AtomicBool,
    /// Set when the region's future was dropped before it closed: the last
    /// child to finish completes the close.
    abandoned: AtomicBool,
    /// Opened in a parent that had closed: not counted there.
    orphan: AtomicBool,
    /// Closed to children and running its finalizers (`run_region`): a
    /// region a finalizer opens through this region's context is not
    /// born cancelled, as one opened after the close is (`open`).
    pub(crate) finalizing: AtomicBool,
    /// An orphan's adoptive parent: the nearest ancestor of its closed
    /// parent still open when it was opened, which counts it live (so it
    /// cannot close before the orphan does) and hears of its close. Set
    /// once, in `open`, before the node is handed out; read in `detach`.
    adopted_by: std::sync::OnceLock<Arc<Region>>,
    /// This region's index in its owner task's list of open regions
    /// (`Header::open_regions`), read and written only under that list's
    /// lock: the close removes the entry without a search, so a task that
    /// has many regions open at once closes each in constant time.
    /// (`std`'s atomic even under loom: the list's lock orders it.)
    pub(crate) open_at: std::sync::atomic::AtomicUsize,
    /// How many of this region's children are in its owner's list of open
    /// regions (those opened in its body: `in_parents_body`), read and
    /// written only under that list's lock, so exact there: a scan of the
    /// list for them (`Header::open_regions_in`) stops once it has them
    /// all. Regions nested `k` deep in one body are then cancelled in
    /// O(k), not O(k²). (`std`'s atomic, as `open_at`.)
    pub(crate) listed: std::sync::atomic::AtomicUsize,
}

/// Who polled a region's body last (`Region::body_waker`).
pub(crate) enum BodyPoller {
    /// Not polled yet (or closed).
    NotYet,
    /// Its owner task, with the task's own waker: no waker stored.
    Owner,
    /// Another waker (a combinator's, or another task's), shared: a wake
    /// takes a count of it under the lock and wakes it after, so that no
    /// user code (a waker's `clone`) runs under the lock.
    Waker(Arc<Waker>),
}

/// `Region::fin_state`: no finalizer registered yet, registration open.
const FIN_NONE: u32 = 0;
/// `Region::fin_state`: a finalizer was registered (the locked list says
/// the rest).
const FIN_SOME: u32 = 1;
/// `Region::fin_state`: registration closed with none registered.
const FIN_OVER: u32 = 2;

/// The bit of `live` that says the region has closed to new children.
const CLOSED: usize = 1 << (usize::BITS - 1);
/// The bit of `live` that says the closer has registered a waker in
/// `closer` (set by its read-modify-write after the registration, never
/// cleared before the close): the last child's decrement reads it and
/// looks at the slot only then. A closer that has not registered (its
/// first look, or a look whose re-poll is already requested) looks again
/// by itself.
const WAITER: usize = 1 << (usize::BITS - 2);

#[cfg(not(loom))]
thread_local! {
    /// Empty `Vec<TaskRef>` buffers kept per thread for the regions' `swept`
    /// lists: a cancelled region's first sweep needs one and its close
    /// frees it, usually on the same worker (a malloc and a free per
    /// cancelled region, inside the cancel and the close).
    static CHILD_BUFS: std::cell::RefCell<Vec<Vec<TaskRef>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread, and the largest capacity kept (in children:
/// 8 bytes each).
#[cfg(not(loom))]
const CACHED_BUFS: usize = 4;

#[cfg(not(loom))]
thread_local! {
    /// The allocations of closed region nodes, kept per thread with their
    /// contents dropped (`release_node`) for the next open on this thread
    /// (`new_node`): a region that opens and closes on one worker (the
    /// common case) pays neither a malloc nor a free.
    static NODE_SHELLS: std::cell::RefCell<Vec<Arc<std::mem::MaybeUninit<Region>>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Node allocations kept per thread (a few hundred bytes each).
#[cfg(not(loom))]
const CACHED_NODES: usize = 4;

/// Puts `region` in an `Arc`: this thread's cached allocation when it has
/// one (`release_node`), else a new one.
fn new_node(region: Region) -> Arc<Region> {
    #[cfg(not(loom))]
    if let Some(mut shell) = crate::sync::cache_take(&NODE_SHELLS) {
        // Unique: cached only when no other count, strong or weak, was
        // left (`release_node`), and nothing made one since (the cache
        // hands it to one caller, who made no reference to it).
        if let Some(slot) = Arc::get_mut(&mut shell) {
            slot.write(region);
            // SAFETY: the contents were written just above.
            return unsafe { shell.assume_init() };
        }
    }
    Arc::new(region)
}

/// Lets go of a closed region's node: when this is its last reference
/// (strong or weak), its contents are dropped here and its allocation is
/// kept for this thread's next open (`new_node`); otherwise the reference
/// is dropped as usual.
pub(crate) fn release_node(node: Arc<Region>) {
    #[cfg(not(loom))]
    {
        let mut node = node;
        if Arc::get_mut(&mut node).is_none() {
            return;
        }
        // SAFETY: `MaybeUninit<Region>` has the size and alignment of
        // `Region`, which is what `Arc::from_raw` asks of a pointer that
        // `Arc::<Region>::into_raw` gave; the count moves over unchanged.
        let mut shell: Arc<std::mem::MaybeUninit<Region>> =
            unsafe { Arc::from_raw(Arc::into_raw(node).cast()) };
        // Unique: `get_mut` above saw no other count, and the one held
        // moved into `shell`.
        let slot = Arc::get_mut(&mut shell).expect("a unique node");
        // SAFETY: the contents are initialised (a live `Region`) and are
        // dropped once: `shell` never drops them (`MaybeUninit`), and
        // `new_node` writes new ones before handing the allocation out.
        // Should a drop of theirs unwind, `shell` frees the allocation on
        // the way out.
        unsafe { slot.assume_init_drop() };
        crate::sync::cache_keep(&NODE_SHELLS, shell, CACHED_NODES);
    }
    #[cfg(loom)]
    drop(node);
}
#[cfg(not(loom))]
const CACHED_BUF_CAP: usize = 1024;

/// An empty buffer with room for at least `n` children: this thread's
/// cached one when it has one, else a new one.
pub(crate) fn child_buf(n: usize) -> Vec<TaskRef> {
    #[cfg(not(loom))]
    {
        if let Some(mut v) = crate::sync::cache_take(&CHILD_BUFS) {
            v.reserve(n);
            return v;
        }
    }
    Vec::with_capacity(n)
}

/// Gives an emptied buffer back to this thread's cache (or frees it).
pub(crate) fn recycle_child_buf(v: Vec<TaskRef>) {
    debug_assert!(v.is_empty());
    #[cfg(not(loom))]
    {
        if v.capacity() == 0 || v.capacity() > CACHED_BUF_CAP {
            return;
        }
        crate::sync::cache_keep(&CHILD_BUFS, v, CACHED_BUFS);
    }
    #[cfg(loom)]
    drop(v);
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("id", &self.id)
            // Relaxed: a snapshot for display.
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl Region {
    /// The root region of a runtime.
    pub(crate) fn root(sched: Arc<dyn Scheduler>, cleanup: CleanupBudget) -> Arc<Region> {
        new_node(Region::new(
            RegionId(sched.next_id()),
            None,
            None,
            false,
            Policy::CollectAll,
            false,
            Budget::UNLIMITED,
            cleanup,
            sched,
        ))
    }

    /// The node's state. Only `root` and `open` call this, each putting
    /// it in an `Arc` at once: every region lives in one (`weak_self`
    /// relies on it).
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: RegionId,
        parent: Option<Arc<Region>>,
        owner: Option<WeakTask>,
        in_parents_body: bool,
        policy: Policy,
        quiet: bool,
        budget: Budget,
        cleanup: CleanupBudget,
        sched: Arc<dyn Scheduler>,
    ) -> Self {
        sched.observe(Observed::RegionOpened(id));
        let observed = sched.observes();
        let depth = parent.as_ref().map_or(0, |p| p.depth.saturating_add(1));
        Region {
            id,
            parent,
            owner,
            policy,
            quiet,
            budget,
            cleanup,
            cancel: CancelCell::new(),
            grace_at: AtomicU64::new(GRACE_UNSET),
            body_cost: AtomicU64::new(0),
            grace_timer: Mutex::new(None),
            grace_skip: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            depth,
            deadline_timer: Mutex::new(None),
            sched,
            observed,
            live: AtomicUsize::new(0),
            nested: AtomicUsize::new(0),
            in_parents_body,
            closer: WakerSlot::new(),
            body_waker: Mutex::new(BodyPoller::NotYet),
            children: Registry::new(),
            swept: Mutex::new(Vec::new()),
            swept_used: AtomicBool::new(false),
            sweeps: AtomicUsize::new(0),
            worst: LazyMutex::new(),
            finalizers: Mutex::new(Finalizers::default()),
            fin_state: AtomicU32::new(FIN_NONE),
            cut_off: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            orphan: AtomicBool::new(false),
            finalizing: AtomicBool::new(false),
            adopted_by: std::sync::OnceLock::new(),
            open_at: std::sync::atomic::AtomicUsize::new(usize::MAX),
            listed: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Opens a child region of `parent`, whose body runs in `owner`; the
    /// region is abandoned if what is returned is dropped before
    /// `run_region` closes it (`Opened`).
    ///
    /// `owner` is a task of `parent` or its owner (a context's task, below
    /// the context's region: see the module doc), so the region is reached
    /// through `owner` and only counted in `parent`.
    pub(crate) fn open(parent: &Arc<Region>, owner: &TaskRef, spec: &RegionOptions) -> Opened {
        let sched = parent.sched.clone();
        let in_parents_body = parent.owner_is(owner.as_ptr());
        let node = new_node(Region::new(
            RegionId(sched.next_id()),
            Some(parent.clone()),
            Some(owner.downgrade()),
            in_parents_body,
            spec.policy,
            spec.quiet,
            // The opening task's budget too: a task's limits reach the
            // regions it opens and the tasks spawned in them (the task's
            // own budget met its region's when it was spawned, but a
            // region opened in a body is a child of the body's region).
            parent
                .budget
                .meet(&owner.header().budget)
                .meet(&spec.budget),
            spec.cleanup.unwrap_or(parent.cleanup),
            sched,
        ));
        owner.header().add_open_region(&node);
        // Counted live in the parent, not registered there: the region is
        // reached through `owner`. A context's region is either its task's
        // own (the task is a child of `parent`, registered there, and a
        // task's cancellation and cut-off pass to the regions it has open)
        // or one whose body the task runs (`owner` is `parent`'s owner, and
        // the parent's cancellation and cut-off pass to the regions its
        // owner opened in it: `cancel/protocol.rs`). So no registry entry,
        // and no weak reference holding the node's memory until a later
        // sweep of the parent drops it.
        debug_assert!(
            in_parents_body
                || std::ptr::eq(Arc::as_ptr(&owner.header().region), Arc::as_ptr(parent)),
            "a region opened by a task that is neither a child nor the owner of its parent"
        );
        // A task of the parent that opens through its context from another
        // task (the context moved there) may have finished, and been let go
        // by the parent's registry: registered again, so that the parent's
        // cancellation and cut-off reach the region through it
        // (`is_alive` keeps it while the region is open). AcqRel, a
        // read-modify-write of the state word: if it comes before the
        // task's COMPLETE there, the count stored above happens before that
        // COMPLETE, which a sweep reads before the count (`is_alive`); if
        // after, it reads COMPLETE. (The task polled on this thread cannot
        // finish meanwhile: no check. Always checked under loom, whose
        // threads share one thread-local.)
        let reregister = !in_parents_body
            && (cfg!(loom) || !std::ptr::eq(crate::task::running_task(), owner.header()))
            && owner.header().state.fetch_or(0, Ordering::AcqRel) & crate::task::COMPLETE != 0;
        let adopted = parent.count_child();
        if adopted && reregister {
            // Pushed before the parent's cell is read below: the
            // registry's handshake with a sweep (`adopt_task`).
            parent.register(owner.clone());
        }
        if adopted && in_parents_body {
            // SeqCst: the RMW half of the Dekker pair with `cancel_nested`
            // (a request's SeqCst store into the parent's cell, then a
            // SeqCst load of this count): this open, which added the node
            // to the owner's list above and reads the parent's cell below,
            // is either counted there or reads the request itself.
            parent.nested.fetch_add(1, Ordering::SeqCst);
            crate::loom::dekker();
        }
        if !adopted {
            // The parent has closed (a `Cx` outlived its region): this
            // region is born cancelled and never counted in the parent.
            // Relaxed: set before the node is handed out; every path from here
            // to `detach`, its only reader, passes an acquire-release (the live
            // count's RMWs, the owner task's RUNNING hand-off).
            node.orphan.store(true, Ordering::Relaxed);
            // Counted instead in the nearest ancestor still open, which
            // then waits for it: the tasks it runs stay inside the tree
            // (a region whose future is dropped with tasks running used to
            // let them outlive every region above, `block_on` included).
            let mut up = parent.parent.clone();
            if crate::lab::hooks::fault(crate::lab::hooks::ORPHANS_NOT_ADOPTED) {
                // A planted bug (lab tests only): the orphan counted nowhere.
                up = None;
            }
            while let Some(ancestor) = up {
                if ancestor.count_child() {
                    let _ = node.adopted_by.set(ancestor);
                    break;
                }
                up = ancestor.parent.clone();
            }
            // Relaxed: set and read by the task running the parent's
            // finalizers (a `Cx` moved elsewhere reads either value, and
            // either outcome is a region that closes).
            if parent.finalizing.load(Ordering::Relaxed) {
                // Opened by a finalizer (the docs: work a finalizer needs
                // runs in the finalizer or in a region it opens): cleanup,
                // which runs whether or not the parent was cancelled, so
                // not cancelled for the parent's sake; its owner's
                // cancellation still reaches it, and the finalizer's
                // cleanup budget bounds it (a finalizer cut off drops it).
                // (Found by review: it was born cancelled, every await in
                // it failing at once.)
                if let Some(reason) = owner.header().cancel.get() {
                    node.cancel(&reason.for_child());
                }
            } else {
                node.cancel(
                    &CancelReason::new(CancelKind::ParentCancelled)
                        .with_message("the parent region had already closed")
                        .with_origin(Origin::Region(parent.id)),
                );
            }
        } else if let Some(reason) = parent.cancel.get() {
            node.cancel(&reason.for_child());
        } else if let Some(reason) = owner.header().cancel.get() {
            node.cancel(&reason.for_child());
        }
        // A deadline already passed is requested now, for the body's first
        // checkpoint (a timer fires at the wheel's next turn, up to a turn
        // of checkpoints later: found by review), the parent's included.
        // Else a deadline that is the parent's needs no timer of its own:
        // the parent's cancellation reaches this region when it comes (the
        // parent cannot close first). The owner task's does not do: the
        // region's future may outlive the task, whose timer goes when it
        // finishes (found by review: a region opened through the context
        // of a finished task, or whose future a task handed on before it
        // finished, ran past the deadline its budget showed).
        if let Some(deadline) = node.budget.deadline {
            let reason =
                CancelReason::new(CancelKind::Deadline).with_origin(Origin::Region(node.id));
            if deadline <= node.sched.now() {
                node.cancel(&reason);
            } else if parent.budget.deadline != Some(deadline) {
                let timer = node.sched.insert_timer(
                    deadline,
                    TimerAction::CancelRegion(Arc::downgrade(&node), reason),
                );
                *lock(&node.deadline_timer) = Some(timer);
            }
        }
        Opened::new(node)
    }

    /// Pushes `task` into the registry, compacting it (amortised: finished
    /// tasks are dropped once they outnumber the live children; the
    /// registry's length is an estimate, which is all this needs). So a
    /// finished task registered again at each region opened through its
    /// context (`open`) does not grow the registry without bound either.
    fn register(&self, task: TaskRef) {
        self.children.push(task);
        let len = self.children.len();
        if len > 64 && len > self.live() {
            self.sweep();
        }
    }

    /// Counts a new child (a task, registered next: `adopt_task`; or a
    /// region) live. False, and nothing counted, if the region has closed.
    #[inline]
    pub(crate) fn count_child(&self) -> bool {
        // SeqCst: pairs with the CAS that closes the region (a child is
        // either counted before the close or refused after it).
        if self.live.fetch_add(1, Ordering::SeqCst) & CLOSED != 0 {
            // SeqCst: undoes the refused increment; SeqCst like every RMW of
            // `live`, so `try_close`'s CAS sees a single order of them.
            self.live.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Whether the task at `task` is this region's owner (its body runs
    /// there).
    #[inline]
    pub(crate) fn owner_is<T: ?Sized>(&self, task: *const T) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|w| std::ptr::addr_eq(w.as_ptr(), task))
    }

    /// Registers a spawned task (`registered`: the registry's reference
    /// to `task`): counted live, reachable by cancellation; and applies a
    /// pending cancellation to it. Returns false (and adopts nothing) if
    /// the region is already closed.
    ///
    /// The registration (the registry's push, an acquire-release CAS on
    /// its head) and the check of this region's cancel flag afterwards
    /// pair with `cancel`'s flag store and the sweep's take of the
    /// registry (an acquire-release swap of the same head, under `swept`'s
    /// lock, as every take is): either the sweep finds the task or the
    /// check sees the flag (`registry.rs` explains why; loom checks it in
    /// `loom_tests.rs`).
    pub(crate) fn adopt_task(&self, task: &TaskRef, registered: TaskRef) -> bool {
        debug_assert!(std::ptr::eq(task.as_ptr(), registered.as_ptr()));
        if !self.count_child() {
            return false;
        }
        self.register(registered);
        if let Some(reason) = self.cancel.get_arc() {
            // `task` is this region's (spawned into it), and the reason is
            // from this region's cell.
            cancel_task_from_region(task, &reason);
            // Spawned into a region already cut off (shutdown's last
            // cut-off, or a grace period run out; the flag is set only on
            // a cancelled region): cut off too, as the cut-off would have
            // done had it found the task. Only cancelled, such a task ran
            // on past every deadline (found by review: a task whose `Drop`
            // spawned the next one left a live task behind shutdown's last
            // cut-off, which `CleanupBudget::UNLIMITED` promises there is
            // none of). The same handshake as the cancel flag's: the
            // cut-off stores the flag (an AcqRel swap) before it takes
            // the registry (an AcqRel swap of the head), and the push
            // above (an AcqRel CAS of the head) comes before this load;
            // the head's read-modify-writes are in one order, so either
            // the take finds the task or this load, acquiring through the
            // push that read the take's swap, sees the flag.
            if self.is_cut_off() {
                cut_off_task(task.clone());
            }
        }
        true
    }

    /// A weak reference to this node (for a timer that must not keep it
    /// alive), without one kept in the node: every region lives in an
    /// `Arc` (`new`).
    pub(crate) fn weak_self(&self) -> Weak<Region> {
        // SAFETY: `self` is the contents of an `Arc<Region>` (`new`: only
        // `root` and `open` make a region, each into an `Arc` at once), so
        // its address is what `Arc::into_raw` gave for that allocation; the
        // borrow keeps a strong count alive for this call, and the
        // `ManuallyDrop` gives none back.
        let node = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(std::ptr::from_ref(self)) });
        Arc::downgrade(&node)
    }

    /// The task whose body runs this region, if it is still alive.
    pub(crate) fn owner_task(&self) -> Option<TaskRef> {
        self.owner.as_ref().and_then(WeakTask::upgrade)
    }

    /// The regions open in this one that its owner opened (its body's
    /// nested regions), found in the owner's list of open regions when
    /// `nested` counts any. A caller that stored a cancel request in this
    /// region's cell first finds every one opened before the count's
    /// load, and each one opened after reads the request (`open`).
    pub(crate) fn nested_regions(&self) -> Vec<Arc<Region>> {
        // SeqCst: the load half of the Dekker pair with `open`'s increment
        // (after the caller's SeqCst store into the cell).
        crate::loom::dekker();
        if self.nested.load(Ordering::SeqCst) == 0 {
            return Vec::new();
        }
        self.owner_task()
            .map_or_else(Vec::new, |t| t.header().open_regions_in(self))
    }

    /// Whether `region` is this region or lies below it.
    pub(crate) fn contains(&self, region: &Arc<Region>) -> bool {
        let mut r = Some(region);
        while let Some(node) = r {
            if std::ptr::eq(Arc::as_ptr(node), self) {
                return true;
            }
            r = node.parent.as_ref();
        }
        false
    }

    /// Called by each finishing child.
    ///
    /// Errors and panics join into the region's outcome (and, fail-fast,
    /// cancel the siblings). A cancelled child does not: it was cancelled
    /// because someone asked (its handle's holder, its own budget, or this
    /// region, whose body then sees the request itself); the child's
    /// outcome is on its handle.
    ///
    /// A child that did not fail (most do: `Ok`, or `Cancelled`) reports
    /// through [`child_done`](Self::child_done), with no report to build
    /// and drop.
    pub(crate) fn child_finished(&self, report: ChildReport) {
        let failed = matches!(report.severity, Severity::Err | Severity::Panicked);
        if !failed {
            self.child_done(report.severity);
            return;
        }
        self.observe(Observed::ChildFinished(self.id, report.severity));
        {
            let mut worst = lock(self.worst.get());
            let current = worst.as_ref().map_or(Severity::Ok, Worst::severity);
            if report.severity > current {
                *worst = Some(match report.severity {
                    Severity::Err => Worst::Err(Failure {
                        task: report.task.unwrap_or(TaskId(0)),
                        message: report.error.unwrap_or_default(),
                    }),
                    _ => {
                        Worst::Panicked(report.panic.unwrap_or_else(|| PanicPayload::new("panic")))
                    }
                });
            }
        }
        if self.policy == Policy::FailFast {
            self.cancel(&self.sibling_failed());
        }
        self.leave();
    }

    /// The root's end, at the runtime's shutdown (its workers stopped and
    /// its queues drained): lets go of the tasks it still refers to, in
    /// its registry and in the list its sweeps moved them to. A closing
    /// region does this in its close; the root never closes, and a task
    /// referred to from there holds the root through its region (a cycle,
    /// the runtime's scheduler and timer wheel in it). A task still inside
    /// a stuck worker's poll keeps its own count.
    pub(crate) fn let_go_of_tasks(&self) {
        let swept = std::mem::take(&mut *lock(&self.swept));
        drop(swept);
        self.children.take().for_each(drop);
    }

    /// Whether a child's error that fails now could be the one this
    /// region keeps (and so is worth formatting): not when nobody reads
    /// the outcome (`quiet`), nor once a failure is recorded (the first of
    /// a severity is kept; a racing second one may be formatted in vain).
    #[inline]
    pub(crate) fn keeps_message(&self) -> bool {
        !self.quiet && self.worst.get_if_made().is_none()
    }

    /// A child that did not fail (`Ok` or `Cancelled`: `severity`) has
    /// finished.
    pub(crate) fn child_done(&self, severity: Severity) {
        debug_assert!(matches!(severity, Severity::Ok | Severity::Cancelled));
        self.observe(Observed::ChildFinished(self.id, severity));
        self.leave();
    }

    /// A finished child leaves the live count; the last one wakes the
    /// close (or completes an abandoned region's).
    #[inline]
    fn leave(&self) {
        // AcqRel: the child's work happens-before the closer's Acquire.
        // SeqCst: (1) release/acquire: the child's work happens-before the
        // closer that sees 0; (2) the RMW half of a Dekker pair with
        // `Opened::drop` (stores `abandoned`, then CASes `live`), read
        // back by the SeqCst load of `abandoned` below: either the guard's
        // close sees no live child, or the last child sees `abandoned` and
        // completes the close itself.
        // (3) the RMW half of the pair with `poll_quiescent`'s `fetch_or`
        // of WAITER (after its registration): the later of the two in the
        // count's modification order sees the other (this one sees WAITER
        // and, through the release sequence, the registered waker; that one
        // sees the count at zero and closes).
        let old = self.live.fetch_sub(1, Ordering::SeqCst);
        if old & !WAITER == 1 {
            self.last_left(old);
        }
    }

    /// The last live child has left (`old`: the count before its
    /// decrement): completes an abandoned region's close, or wakes the
    /// closer if it registered a waker. Out of line: once per region, not
    /// once per child.
    #[inline(never)]
    fn last_left(&self, old: usize) {
        if self.abandoned.load(Ordering::SeqCst) {
            if self.try_close() {
                self.finish_abandoned();
            }
        } else if crate::lab::hooks::fault(crate::lab::hooks::LOST_CLOSE_WAKE) {
            // A planted bug (lab tests only): the close's wake-up lost.
        } else if old & WAITER == 0 {
            // No waker registered: the slot's `take` (two
            // read-modify-writes) is skipped; the closer looks again by
            // itself before it registers.
        } else if self.closer.wake() {
            self.sched.stats().panic_caught();
        }
    }

    /// Whether the scheduler observes this region's events (`observe`).
    pub(crate) fn observed(&self) -> bool {
        self.observed
    }

    /// Tells the scheduler `event`, if it watches (the lab's oracles).
    #[inline]
    pub(crate) fn observe(&self, event: Observed) {
        if self.observed {
            self.sched.observe(event);
        }
    }

    fn sibling_failed(&self) -> CancelReason {
        CancelReason::new(CancelKind::SiblingFailed).with_origin(Origin::Region(self.id))
    }

    /// The number of live children.
    pub(crate) fn live(&self) -> usize {
        // Acquire: the count is a hint for compaction and cut-off decisions;
        // Acquire pairs with the children's SeqCst decrements so that a child
        // seen gone has reported.
        self.live.load(Ordering::Acquire) & !(CLOSED | WAITER)
    }

    /// Closes the region to new children if none is alive.
    fn try_close(&self) -> bool {
        // SeqCst: see `count_child`. From no child, with or without WAITER (a
        // second try when the first finds only WAITER: it is never
        // cleared, so a third could only find a child or the close).
        let mut expect = 0;
        loop {
            match self
                .live
                .compare_exchange(expect, CLOSED, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(WAITER) if expect == 0 => expect = WAITER,
                Err(_) => return false,
            }
        }
    }

    /// [`try_close`](Self::try_close) after a load that finds no child
    /// alive: a region with children still running (a drain's first two
    /// looks) pays no failing compare-and-swap. For the closer's looks
    /// only (`poll_quiescent`): the load is enough there because the
    /// closer's `WakerSlot::register` comes between them, and a last
    /// child whose wake the registration missed (its `take` came first in
    /// the slot's order) synchronized with the registration, so the look
    /// after it sees that child's decrement (loom:
    /// `region_close_racing_last_child_is_not_lost`). The Dekker pair with
    /// `Opened` keeps the compare-and-swap, whose read cannot be
    /// stale.
    fn try_close_if_quiet(&self) -> bool {
        // SeqCst: as the compare-and-swap's read (`count_child`); a value above
        // zero read here is the count at some point after every decrement
        // that happened-before this look (coherence), so a stale read
        // only sends the closer to register and look again.
        self.live.load(Ordering::SeqCst) & !WAITER == 0 && self.try_close()
    }

    /// Ready when every child has finished; the region is then closed to
    /// new children.
    pub(crate) fn poll_quiescent(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.try_close_if_quiet() {
            return Poll::Ready(());
        }
        // The task polling this is already to be polled again after this
        // poll (its body cancelled this region, or another of its own, and
        // `Task::run` reads the re-poll request right after the poll), and
        // the waker is that task's own: the re-poll is the wake a
        // registration would bring, so register nothing now; the next poll
        // looks again and registers then if children are still running.
        // No waker count taken here, none given back by the last child's
        // wake. (Only with the task's own waker: a combinator that polls
        // this with a waker of its own re-polls it only when that waker
        // fires, so it gets the registration. Hostile test:
        // `a_region_closing_inside_a_combinator_that_polls_on_its_own_wake_is_not_lost`.)
        if crate::budget::coop::repoll_requested() && crate::task::is_running_task_waker(cx.waker())
        {
            return Poll::Pending;
        }
        self.closer.register(cx.waker());
        // SeqCst: tells the last child that a waker is registered (the
        // RMW pair with `leave`'s decrement: see there), and reads the
        // count: zero means the last child's decrement came first and may
        // have skipped the slot: close now.
        if self.live.fetch_or(WAITER, Ordering::SeqCst) & !WAITER == 0 && self.try_close() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Registers a finalizer. One registered while the finalizers run
    /// (by a finalizer, or a task of another region holding this one's
    /// `Cx`) runs in the same pass, under the pass's budget
    /// ([`FinalizerPass`]); one registered after the last has run (the
    /// region closed) never can: it is dropped and counted in
    /// `finalizers_skipped`.
    pub(crate) fn add_finalizer(&self, f: Finalizer) {
        self.observe(Observed::FinalizerAdded);
        let mut fin = lock(&self.finalizers);
        // The first registration moves `fin_state` from FIN_NONE to
        // FIN_SOME, under the lock (registrations stay serialised); one
        // that finds FIN_OVER comes after a close that took the lock-free
        // path of `next_finalizer` and is refused, as after `over`.
        // AcqRel: an RMW, so exactly one of it and `next_finalizer`'s
        // compare-and-swap from FIN_NONE wins; the lock orders the rest
        // (the push, read by `next_finalizer` under the lock).
        let open = !fin.over
            && match self.fin_state.compare_exchange(
                FIN_NONE,
                FIN_SOME,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => true,
                Err(state) => state == FIN_SOME,
            };
        if open {
            let late = fin.pass.is_some();
            fin.pending.push((f, late));
            return;
        }
        drop(fin);
        self.sched.stats().finalizers_skipped(1);
        if crate::outcome::drop_caught(f).is_some() {
            self.sched.stats().panic_caught();
        }
    }

    /// The next finalizer to run (the last registered), or `None`, which
    /// closes registration. One registered during the pass that the pass's
    /// budget does not admit is dropped here, counted cut off
    /// ([`FinalizerPass`]). `in_line`: the finalizers run here, one after
    /// the other, with no await between them (an abandoned region's), so
    /// the late ones are bounded by a count even where the budget has none
    /// (found by review: a chain of them spun for ever there, on the lab's
    /// virtual clock, or with an unlimited budget).
    #[inline]
    pub(crate) fn next_finalizer(&self, in_line: bool) -> Option<Finalizer> {
        // None ever registered (most regions): registration closes with
        // one compare-and-swap, no lock. AcqRel: see `add_finalizer`; a
        // registration that won instead (FIN_SOME) is found under the lock.
        // Acquire on the load: a first guess, the CAS decides.
        if self.fin_state.load(Ordering::Acquire) == FIN_NONE
            && self
                .fin_state
                .compare_exchange(FIN_NONE, FIN_OVER, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return None;
        }
        self.next_finalizer_locked(in_line)
    }

    /// [`next_finalizer`](Self::next_finalizer) once one was registered:
    /// under the list's lock (out of line: most regions have none).
    #[cold]
    fn next_finalizer_locked(&self, in_line: bool) -> Option<Finalizer> {
        loop {
            let refused = {
                let mut fin = lock(&self.finalizers);
                let fin = &mut *fin;
                let pass = fin.pass.get_or_insert_with(|| FinalizerPass::new(self));
                if in_line && pass.late_left.is_none() {
                    pass.late_left = CleanupBudget::DEFAULT.polls;
                }
                match fin.pending.pop() {
                    None => {
                        fin.over = true;
                        return None;
                    }
                    Some((f, late)) if pass.admits(self, late) => return Some(f),
                    Some((f, _)) => f,
                }
            };
            // Outside the lock: its `Drop` is user code. Ended, as any
            // finalizer cut off (for the lab's oracle).
            self.observe(Observed::FinalizerEnded);
            self.sched.stats().finalizer_cut_off();
            if crate::outcome::drop_caught(refused).is_some() {
                self.sched.stats().panic_caught();
            }
        }
    }

    /// Records a panic of the region's own code (a finalizer): the region
    /// ends `Panicked` unless something worse is already recorded.
    fn record_panic(&self, payload: PanicPayload) {
        self.sched.stats().panic_caught();
        let mut worst = lock(self.worst.get());
        if !matches!(*worst, Some(Worst::Panicked(_))) {
            *worst = Some(Worst::Panicked(payload));
        }
    }

    /// Whether the task polling on this thread is this region's owner
    /// (compared by address: the node's weak reference keeps the owner's
    /// allocation, so no other task can have its address meanwhile).
    #[inline]
    pub(crate) fn owner_is_running(&self) -> bool {
        let running = crate::task::running_task();
        !running.is_null() && self.owner_is(running)
    }

    /// Whether the cleanup budget of this region's body has run out.
    pub(crate) fn is_cut_off(&self) -> bool {
        // Acquire: pairs with `cut_off_all`'s AcqRel swap; only the flag is
        // read, and a late one is seen at the body's next checkpoint (the
        // cut-off wakes it).
        self.cut_off.load(Ordering::Acquire)
    }

    /// Closes after the body and every child finished: joins the body's
    /// outcome with the children's, tells the parent. `owner` is the task
    /// whose body ran the region (`run_region` holds it: no upgrade of the
    /// node's weak reference to it). `waker_stored`: the body's last poll
    /// stored a waker in `body_waker` (`BodyPoller::Waker`).
    fn close<T, E>(
        &self,
        body: Outcome<T, RegionError<E>>,
        owner: &TaskRef,
        waker_stored: bool,
    ) -> Outcome<T, RegionError<E>> {
        let mut worst = self.worst.get_if_made().and_then(|m| lock(m).take());
        if crate::lab::hooks::fault(crate::lab::hooks::IGNORE_CHILD_FAILURE) {
            // A planted bug (lab tests only): the children's failure lost.
            worst = None;
        }
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
        self.observe(Observed::RegionClosed(self.id, out.severity()));
        self.detach(Some(owner), waker_stored);
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
    /// `owner`: the owner task, when the caller holds it (the close);
    /// `None` (an abandoned region's last child) upgrades the node's weak
    /// reference to it. `waker_stored`: `body_waker` may hold a waker
    /// (false only from the close, whose body's polls, all done, stored
    /// none: the slot then holds nothing to let go of).
    fn detach(&self, owner: Option<&TaskRef>, waker_stored: bool) {
        // One caller only: `close` and `finish_abandoned` each come after
        // the compare-and-swap that set the live count's CLOSED bit, which
        // succeeds once per region (`try_close`). (Relaxed for the check:
        // that compare-and-swap came before, on this thread.)
        debug_assert!(
            self.live.load(Ordering::Relaxed) & CLOSED != 0,
            "a region detached before its close"
        );
        self.observe(Observed::RegionDetached(self.id));
        // Closed (the live count's CLOSED bit, set by the compare-and-swap
        // that read the last child's decrement): no push can come any
        // more, and each one that came happens-before that decrement (a
        // task's push before it was scheduled), so an empty registry reads empty
        // here, and the take's swap is skipped.
        if let Some(left) = self.children.take_if_any() {
            drop(left);
        }
        // The grace timer, if one was armed, has nothing left to cut off;
        // it would hold this node's allocation until it fired.
        // Acquire: pairs with the arming CAS (AcqRel); a handle stored after
        // this look is left to fire on the closed node, which does nothing.
        if self.grace_at.load(Ordering::Acquire) == GRACE_ARMED
            && let Some(timer) = lock(&self.grace_timer).take()
        {
            self.sched.cancel_timer(timer);
        }
        // The deadline's too (stored at the open, before the body ran).
        if self.budget.deadline.is_some()
            && let Some(timer) = lock(&self.deadline_timer).take()
        {
            self.sched.cancel_timer(timer);
        }
        // A stored waker goes (so that a `Cx` kept in a task's output
        // cannot hold the body's poller through it). `Owner` or `NotYet`
        // hold nothing: left as they are, without the lock and unlock (a
        // request after the close then wakes the owner task, or requests
        // its re-poll, as before the close: a spurious wake at most).
        // Dropped last, below: a waker's `Drop` is user code, which must
        // neither unwind out of the detach half done (found by review: the
        // owner's list kept a pointer to the freed node, and the parent
        // waited for ever) nor run while the detach's bookkeeping is.
        let body_waker = waker_stored
            .then(|| std::mem::replace(&mut *lock(&self.body_waker), BodyPoller::NotYet));
        // Relaxed: ordered by the registry's head (`swept_used`). A sweep
        // that comes after this (a late request on the closed region)
        // finds the registry empty and moves nothing.
        if self.swept_used.load(Ordering::Relaxed) {
            let mut swept = std::mem::take(&mut *lock(&self.swept));
            // The finished children go (their tasks are freed here); the
            // emptied buffer is kept for this thread's next sweep.
            swept.clear();
            recycle_child_buf(swept);
        }
        match owner {
            Some(owner) => {
                debug_assert!(
                    self.owner
                        .as_ref()
                        .is_some_and(|w| std::ptr::eq(w.as_ptr(), owner.as_ptr()))
                );
                owner.header().remove_open_region(self);
            }
            None => {
                if let Some(owner) = self.owner.as_ref().and_then(WeakTask::upgrade) {
                    owner.header().remove_open_region(self);
                }
            }
        }
        // Relaxed: see the store in `open`.
        if self.orphan.load(Ordering::Relaxed) {
            if let Some(ancestor) = self.adopted_by.get() {
                ancestor.child_done(Severity::Ok);
            }
        } else if let Some(parent) = &self.parent {
            if self.in_parents_body {
                // Release: a request that still reads the count before this
                // only looks at the owner's list, where this node is no
                // longer (removed above).
                parent.nested.fetch_sub(1, Ordering::Release);
            }
            parent.child_done(Severity::Ok);
        }
        if let Some(body_waker) = body_waker
            && crate::outcome::drop_caught(body_waker).is_some()
        {
            self.sched.stats().panic_caught();
        }
    }

    /// The region's future was dropped: with children still running (the
    /// last one to finish lands here), or in its finalizers (the future's
    /// drop lands here, `Opened`). No task runs its finalizers any more:
    /// each gets one poll here, on this thread, with a waker that does
    /// nothing, and one not done after it is dropped, counted cut off.
    pub(crate) fn finish_abandoned(&self) {
        // Each finalizer still pending gets its first poll here, as at a
        // close (a first poll is never cut off: every `defer` runs); one
        // that is not done after it is dropped and counted cut off. One
        // that a finalizer registers runs here too, under the pass's
        // budget (found by review: registration was closed before these
        // ran, and one registered by them was skipped).
        while let Some(mut f) = self.next_finalizer(true) {
            let polled = crate::outcome::catch(|| {
                crate::budget::coop::with_fresh_budget(|| {
                    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
                })
            });
            self.observe(Observed::FinalizerEnded);
            match polled {
                Ok(Poll::Ready(())) => {}
                Ok(Poll::Pending) => self.sched.stats().finalizer_cut_off(),
                Err(_) => self.sched.stats().panic_caught(),
            }
            if crate::outcome::drop_caught(f).is_some() {
                self.sched.stats().panic_caught();
            }
        }
        self.detach(None, true);
    }
}
