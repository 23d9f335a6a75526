//! Tasks: one heap cell per spawned future, a lock-free state machine that
//! makes polling exclusive and wake-ups idempotent, and the [`JoinHandle`].
//!
//! State bits (`Header::state`):
//!
//! | bit | meaning |
//! |---|---|
//! | `SCHEDULED` | sitting in a run queue; whoever pops it may run it |
//! | `RUNNING` | being polled by exactly one worker |
//! | `NOTIFIED` | woken while running: run again after this poll |
//! | `COMPLETE` | finished; the outcome is in the cell for the joiner |
//! | `CUT_OFF` | its cleanup overran: drop the future at the next run |
//! | `JOIN_GONE` | its `JoinHandle` was dropped before it finished: nobody to wake |
//!
//! A wake sets `SCHEDULED` (and enqueues) only from idle, sets `NOTIFIED`
//! while running, and does nothing otherwise: a task is in at most one run
//! queue, so `run` has the future to itself. The loom models
//! `wake_racing_poll_is_not_lost`, `concurrent_wakes_enqueue_once` and
//! `cancel_racing_run_is_observed` in `src/loom_tests.rs` check it.
//!
//! ## In short
//!
//! One heap cell per task, reached through [`TaskRef`] (`raw.rs`): a
//! header (state bits with the strong count above them, the weak count,
//! the type's vtable, region, cancel cell, budget, poll and cost counters,
//! mask depth, the regions its body has open) and the stage
//! (`Init(closure)` → `Running(future)` → `Done(outcome)`). A wake sets
//! `SCHEDULED` only from idle (and enqueues, taking the queue's count in
//! the same compare-and-swap), sets `NOTIFIED` while running, and does
//! nothing otherwise: a task is in at most one queue, so `run` owns the
//! future. The waker handed to the future borrows the task's reference (no
//! count traffic per poll).

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::TaskId;
use crate::budget::Budget;
use crate::budget::coop;
use crate::cancel::CancelCell;
use crate::cancel::cancel_task;
use crate::cancel::{CancelKind, CancelReason, Origin};
use crate::cx::CxCore;
use crate::loom::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, UnsafeCell, lock};
use crate::outcome::{Outcome, PanicPayload, Severity};
use crate::region::{ChildReport, Region};
use crate::sched::{Schedule, Scheduler};
use crate::sync::{LazyMutex, WakerSlot};

mod cache;
mod raw;
pub(crate) use raw::{REF_ONE, TaskRef, WeakTask, is_task_waker, schedule_ref};
use raw::{Vtable, refs};

thread_local! {
    /// What this thread is polling right now: the task, and the innermost
    /// region body within it (null: the task's own scope). Read by a
    /// [`JoinHandle`] to act as a checkpoint of whoever awaits it; the
    /// region's pointer is tagged when the region's owner task polls that
    /// body with the task's own waker (`InScope` stored
    /// `BodyPoller::Owner` for this poll), read by a cancel request from
    /// inside it ([`polling_own_body`]). Internal: it gives user code no
    /// way to reach the runtime.
    static POLLING: Cell<Polling> =
        const { Cell::new((std::ptr::null(), std::ptr::null())) };
}

/// The task being polled, and the innermost region body being polled
/// within it, its pointer tagged with [`BY_OWNER`] when its owner polls it
/// with its own waker (a `Region` is at least 8-byte aligned: the low bit
/// of its address is free).
type Polling = (*const Header, *const Region);

/// The tag of `POLLING`'s region pointer: its owner polls the body with
/// its own waker.
const BY_OWNER: usize = 1;
const _: () = assert!(std::mem::align_of::<Region>() > BY_OWNER);

/// Sets [`POLLING`] for the duration of one poll, restoring the previous
/// value however the poll ends.
pub(crate) struct PollingGuard(Polling);

impl PollingGuard {
    /// The task `h` is being polled, in its own scope.
    fn task(h: &Header) -> Self {
        PollingGuard(POLLING.with(|p| p.replace((h, std::ptr::null()))))
    }

    /// A body of region `node` is being polled (by whichever task is
    /// polling now); `by_owner`: by the region's owner task, with the
    /// task's own waker.
    pub(crate) fn region(node: &Region, by_owner: bool) -> Self {
        PollingGuard(POLLING.with(|p| {
            let prev = p.get();
            let node = std::ptr::from_ref(node).map_addr(|a| a | usize::from(by_owner));
            p.set((prev.0, node));
            prev
        }))
    }
}

/// Whether the body of `node` is being polled on this thread, by the
/// region's owner task with the task's own waker: then what the node's
/// `body_waker` holds is `BodyPoller::Owner`, stored by this very poll,
/// and waking the body is a re-poll request of the running task, which a
/// request made from inside the body can make without the slot's lock.
#[inline]
pub(crate) fn polling_own_body(node: &Region) -> bool {
    let (_, scope) = POLLING.with(Cell::get);
    scope.addr() == std::ptr::from_ref(node).addr() | BY_OWNER
}

impl Drop for PollingGuard {
    fn drop(&mut self) {
        POLLING.with(|p| p.set(self.0));
    }
}

/// Whether `w` wakes the task being polled on this thread, from inside
/// whose poll this is called. Waking it there (its body cancelled its own
/// region, or itself) is a re-poll request instead,
/// [`coop::request_repoll`], which `Task::run` reads after the poll: no
/// clone of the waker, no `NOTIFIED` compare-and-swap, and the task goes
/// to the back of this worker's queue behind the tasks the request queued,
/// waking no other worker, as they did (`Schedule::Cancel`). A plain wake
/// re-queued it as a yield, which wakes another worker when more than one
/// task is queued: a futex wake inside the cancel, and the drain split
/// over two workers that then contend for the timer wheel, the region's
/// live count and each other's task lines (measured: the drains of 1 to
/// 1 000 tasks took 7-22% longer, `docs/runtime-performance.md`).
pub(crate) fn is_running_task_waker(w: &Waker) -> bool {
    let (running, _) = POLLING.with(Cell::get);
    // A task's waker points at the task, whose address is its header's
    // (`Task` is `repr(C)`, header first), as `YieldNow` checks too.
    !running.is_null() && std::ptr::eq(w.data(), running.cast::<()>()) && is_task_waker(w)
}

/// Counts a panic caught in user code on behalf of code with no scheduler
/// at hand (a channel's wake): in the runtime of the task being polled on
/// this thread, if there is one.
pub(crate) fn count_panic_here() {
    let running = running_task();
    if !running.is_null() {
        // SAFETY: the task being polled on this thread is alive for the
        // poll, which is still on the stack below this call.
        unsafe { &*running }.region.sched.stats().panic_caught();
    }
}

/// Runs `f` as on a thread that polls no task, whatever this thread is
/// polling now (a blocking job the lab runs in line: as on the real
/// runtime's pool, it may run a runtime of its own, and it runs under no
/// turn's cooperative budget), with this thread's cooperative state put
/// back afterwards.
pub(crate) fn outside_tasks<R>(f: impl FnOnce() -> R) -> R {
    let _coop = crate::budget::coop::Saved::now();
    // As on a pool thread, which runs no task turn (found by review: a
    // job that polled a ready channel by hand, started at the end of its
    // task's turn, found it pending for ever).
    crate::budget::coop::unconstrained();
    let _polling = PollingGuard(POLLING.with(|p| p.replace((std::ptr::null(), std::ptr::null()))));
    let _worker = crate::sched::pool::off_workers();
    f()
}

/// The header of the task being polled on this thread, or null.
#[inline]
pub(crate) fn running_task() -> *const Header {
    POLLING.with(Cell::get).0
}

/// [`wake_task`] for a cancellation request: a re-poll request when `task`
/// is the one being polled on this thread (see [`is_running_task_waker`]).
pub(crate) fn wake_cancelled_task(task: &TaskRef) {
    if is_running_task(task) {
        coop::request_repoll();
        return;
    }
    wake_task(task, Schedule::Cancel);
}

/// Whether `task` is the one being polled on this thread.
#[inline]
pub(crate) fn is_running_task(task: &TaskRef) -> bool {
    let (running, _) = POLLING.with(Cell::get);
    std::ptr::eq(running, task.header())
}

pub(crate) const SCHEDULED: usize = 1;
pub(crate) const RUNNING: usize = 2;
pub(crate) const NOTIFIED: usize = 4;
pub(crate) const COMPLETE: usize = 8;
pub(crate) const CUT_OFF: usize = 16;
/// The `JoinHandle` was dropped before the task finished: `finish` has no
/// joiner to wake (a waker left in the slot by the handle's last poll is
/// stale) and skips the slot's two read-modify-writes.
pub(crate) const JOIN_GONE: usize = 32;

/// Completes a never-scheduled task with `Cancelled`: its region closed
/// before it could be adopted.
pub(crate) fn reject(task: &TaskRef) {
    task.reject(
        CancelReason::new(CancelKind::ParentCancelled)
            .with_message("spawned into a region that had already closed")
            .with_origin(Origin::Region(task.header().region.id)),
    );
}

/// The type-independent part of a task.
///
/// `repr(C)`, its counts and vtable first: they have no drop glue, and a
/// [`WeakTask`] reads them after the task's contents are dropped (see
/// `raw.rs`).
#[repr(C)]
pub(crate) struct Header {
    /// The flag bits below `REF_ONE`, the strong count above (`raw.rs`).
    pub(crate) state: AtomicUsize,
    /// Weak references, plus one for all the strong ones together.
    weak: AtomicUsize,
    /// What the task's type does.
    vtable: &'static Vtable,
    pub(crate) id: TaskId,
    pub(crate) region: Arc<Region>,
    pub(crate) cancel: CancelCell,
    pub(crate) budget: Budget,
    /// Polls so far (written only by the polling thread).
    pub(crate) polls: AtomicU32,
    /// `polls` when cancellation was first requested (u32::MAX: never).
    pub(crate) polls_at_cancel: AtomicU32,
    /// Cost charged so far.
    pub(crate) cost: AtomicU64,
    /// When the grace period of this task's own cancellation ends (a
    /// request on the task alone, not through its region), or
    /// `GRACE_UNSET`/`GRACE_ARMED` (`cancel/protocol.rs`).
    pub(crate) grace_at: AtomicU64,
    /// The timer of this task's budget deadline (`TimerHandle::to_bits`,
    /// or `NONE_BITS`), cancelled when the task finishes: pending, it
    /// would hold the task's allocation (future and all) until the
    /// deadline, so a server giving each request a deadline of an hour
    /// would keep an hour of finished requests.
    pub(crate) deadline_timer: AtomicU64,
    /// The timer of this task's own grace period (`arm_grace`), cancelled
    /// when the task finishes, as `deadline_timer` is.
    pub(crate) grace_timer: AtomicU64,
    /// Masked-section nesting depth (touched only by the polling thread).
    pub(crate) mask: AtomicU32,
    /// A checkpoint in the scope being polled reported a cancellation:
    /// an `Err` that scope then returns is read as `Cancelled`. The task's
    /// own scope, outside its regions: a region's body polls start with
    /// it clear and put it back after (`region/run.rs`, `InScope`), and
    /// what the body saw counts here only if it was a request the task's
    /// scope has too.
    pub(crate) observed: AtomicBool,
    /// Regions whose bodies run inside this task, so that cancelling the
    /// task reaches them.
    pub(crate) open_regions: LazyMutex<Vec<OpenRegion>>,
    /// `open_regions.len()`, readable without the lock. A region is added
    /// (count raised, Release) before it checks the task's cancel cell, and
    /// a cancel request is stored before this is read (Acquire): one of the
    /// two sees the other.
    pub(crate) open_count: AtomicUsize,
    /// This task's seed (from its parent's seed and its place among the
    /// parent's children: independent of scheduling).
    seed: u64,
    /// The state of its random sequence (only the running task touches it).
    rng: AtomicU64,
    /// Children spawned so far (numbers their seeds).
    children: AtomicU64,
}

/// An entry of a task's list of open regions (`Header::open_regions`): the
/// node's address, with no count of its own (a weak reference would cost
/// a read-modify-write at each open and each close).
///
/// Valid while it is in the list: a region is added by its open, with a
/// strong reference in hand, and removed by its `detach`, which runs while
/// the node is strongly held (by the close's `run_region`, or by the
/// finishing child or guard that completes an abandoned close); the node
/// can lose its last strong reference only after that. A node whose
/// detach never runs is never freed either (its future leaked, holding
/// it). So, under the list's lock, an entry reaches a live node.
pub(crate) struct OpenRegion(*const Region);

// SAFETY: the pointer is read only under the list's lock, where it reaches
// a live `Region` (which is `Send + Sync`): see above.
unsafe impl Send for OpenRegion {}

impl OpenRegion {
    /// The node. Only under the list's lock (see the type's doc).
    pub(crate) fn get(&self) -> &Region {
        // SAFETY: in the list, so the node is alive (the type's doc); the
        // borrow ends before the lock is released (it borrows `self`,
        // which borrows the list's guard).
        unsafe { &*self.0 }
    }

    /// A strong reference to the node. Only under the list's lock.
    pub(crate) fn upgrade(&self) -> Arc<Region> {
        // SAFETY: the pointer came from `Arc::as_ptr` of a node that is
        // alive (the type's doc), so one more strong count may be taken and
        // handed to the `Arc` made from it.
        unsafe {
            Arc::increment_strong_count(self.0);
            Arc::from_raw(self.0)
        }
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from any input.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Header {
    /// The seed for this task's next child.
    pub(crate) fn child_seed(&self) -> u64 {
        // Relaxed: only atomicity matters (each child gets its own number);
        // the counter guards no other data.
        let n = self.children.fetch_add(1, Ordering::Relaxed);
        mix64(self.seed ^ mix64(n.wrapping_add(0x9E37_79B9_7F4A_7C15)))
    }

    /// The next number of this task's random sequence (SplitMix64).
    pub(crate) fn next_random(&self) -> u64 {
        // Relaxed: only the thread polling the task touches `rng`; the
        // RUNNING hand-off (AcqRel CAS in `run`) orders it across workers.
        let state = self
            .rng
            .load(Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.rng.store(state, Ordering::Relaxed);
        mix64(state)
    }

    /// The scheduler (the region's: one shared reference fewer per task).
    #[inline]
    pub(crate) fn sched(&self) -> &Arc<dyn Scheduler> {
        &self.region.sched
    }

    /// Whether the task's cancellation is visible at a checkpoint now.
    pub(crate) fn masked(&self) -> bool {
        // Relaxed: `mask` is written only by the polling thread (`Masked`);
        // readers on other threads (a region deciding a cut-off) take a stale
        // value as "still masked" or "no longer", both resolved at the next run.
        self.mask.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn add_open_region(&self, r: &Arc<Region>) {
        let mut open = lock(self.open_regions.get());
        // Relaxed: under the list's lock (see `Region::open_at`).
        r.open_at
            .store(open.len(), std::sync::atomic::Ordering::Relaxed);
        open.push(OpenRegion(Arc::as_ptr(r)));
        // Relaxed: under the list's lock (see `Region::listed`).
        if r.in_parents_body
            && let Some(p) = &r.parent
        {
            let n = p.listed.load(std::sync::atomic::Ordering::Relaxed);
            p.listed.store(n + 1, std::sync::atomic::Ordering::Relaxed);
        }
        // SeqCst: the store half of a Dekker pair with `cancel_task_with`
        // (cancel cell stored, then `open_count` loaded, both SeqCst): a region
        // added here and then checking the task's cell (`Region::open`), and a
        // request stored in the cell and then reading this, cannot both miss.
        self.open_count.store(open.len(), Ordering::SeqCst);
        crate::loom::dekker();
    }

    /// Whether a region this task has open still has children running.
    pub(crate) fn has_live_regions(&self) -> bool {
        // Acquire: pairs with the SeqCst stores above; a stale zero only
        // means a cut-off (shutdown, past the drain) spares no region here,
        // and the locked list is what decides otherwise.
        if self.open_count.load(Ordering::Acquire) == 0 {
            return false;
        }
        // Made by the `add_open_region` whose count was seen (its store
        // came after the list was made).
        self.open_regions
            .get_if_made()
            .is_some_and(|m| lock(m).iter().any(|r| r.get().live() > 0))
    }

    /// This task's open regions whose parent is `parent`: the regions its
    /// body opened directly in `parent`, which `parent`'s registry does not
    /// hold (`Region::open`: reached through this task instead).
    pub(crate) fn open_regions_in(&self, parent: &Region) -> Vec<Arc<Region>> {
        // Acquire: pairs with the counts' stores; a stale zero only skips
        // regions opened meanwhile, which read the caller's request
        // themselves (the callers' Dekker pairs: `Region::nested_regions`,
        // and a cut-off's walk, which a request came before).
        if self.open_count.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        self.open_regions.get_if_made().map_or_else(Vec::new, |m| {
            let open = lock(m);
            let is_child = |o: &OpenRegion| {
                o.get()
                    .parent
                    .as_ref()
                    .is_some_and(|p| std::ptr::eq(Arc::as_ptr(p), parent))
            };
            if !parent.owner_is(std::ptr::from_ref(self)) {
                // A child task's list: its regions opened in `parent` (the
                // task's own region), a few at most.
                return open
                    .iter()
                    .filter(|o| is_child(o))
                    .map(OpenRegion::upgrade)
                    .collect();
            }
            // `parent`'s owner's list: its children here are the regions its
            // body opened, `listed` of them (exact under this lock). Each was
            // pushed after `parent` (opened inside its body), so the scan
            // starts just past `parent`'s own entry, wraps around (a close
            // moves the last entry into its gap), and stops at the count.
            // Relaxed: under the list's lock (`Region::listed`, `open_at`).
            let want = parent.listed.load(std::sync::atomic::Ordering::Relaxed);
            let mut found = Vec::with_capacity(want);
            if want == 0 {
                return found;
            }
            let n = open.len();
            let from = parent
                .open_at
                .load(std::sync::atomic::Ordering::Relaxed)
                .wrapping_add(1);
            let from = if from < n { from } else { 0 };
            for o in open[from..].iter().chain(&open[..from]) {
                if is_child(o) {
                    found.push(o.upgrade());
                    if found.len() == want {
                        break;
                    }
                }
            }
            found
        })
    }

    pub(crate) fn remove_open_region(&self, r: &Region) {
        // Made by the `add_open_region` of `r`, on this task's thread or
        // before the region was handed to the thread closing it.
        let Some(m) = self.open_regions.get_if_made() else {
            return;
        };
        let mut open = lock(m);
        // Relaxed, here and below: under the list's lock (`open_at`).
        let at = r.open_at.load(std::sync::atomic::Ordering::Relaxed);
        let before = open.len();
        if open.get(at).is_some_and(|o| std::ptr::eq(o.0, r)) {
            // The order of the list means nothing: the last entry moves
            // into the gap, and its region learns its new index.
            open.swap_remove(at);
            if let Some(moved) = open.get(at) {
                moved
                    .get()
                    .open_at
                    .store(at, std::sync::atomic::Ordering::Relaxed);
            }
        } else {
            // Not listed where it says (never expected): by search.
            debug_assert!(false, "a region not at its open_at in its owner's list");
            open.retain(|o| !std::ptr::eq(o.0, r));
        }
        if open.len() < before
            && r.in_parents_body
            && let Some(p) = &r.parent
        {
            let n = p.listed.load(std::sync::atomic::Ordering::Relaxed);
            p.listed
                .store(n.saturating_sub(1), std::sync::atomic::Ordering::Relaxed);
        }
        // Release, not SeqCst (an `xchg` fewer on x86 per region close):
        // the Dekker pair is `add_open_region`'s SeqCst store against a
        // request's SeqCst store into the cell, each followed by a SeqCst
        // load of the other. A canceller whose load comes after an add's
        // store in that order reads the add's count or a later one; a
        // later one written here (after the add: both under the lock, so
        // in that order in the count's modification order) only left out
        // regions that closed, which need no request. A count read too
        // high only sends the canceller to the locked list, which says
        // what is open. Release publishes the list's change for
        // `has_live_regions`' Acquire.
        self.open_count.store(open.len(), Ordering::Release);
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            // Relaxed: a snapshot for display.
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

/// Where the task's future is in its life.
enum Stage<G, F, T, E> {
    /// Not polled yet: the closure that makes the future from a `Cx`.
    Init(G),
    Running(F),
    /// Finished; the outcome waits for the joiner.
    Done(Option<Outcome<T, E>>),
}

/// A spawned task: header, stage, joiner's waker. `repr(C)` keeps the
/// header at offset 0, so a pointer to the task is a pointer to its header
/// (`YieldNow` compares a waker's data pointer with it).
#[repr(C)]
pub(crate) struct Task<G, F, T, E> {
    header: Header,
    stage: UnsafeCell<Stage<G, F, T, E>>,
    join: WakerSlot,
}

// SAFETY: the stage is only touched by the thread that holds RUNNING (or,
// after COMPLETE, by the unique JoinHandle), so `G` and `F` need only be
// Send; the outcome crosses threads once, T and E are Send.
unsafe impl<G: Send, F: Send, T: Send, E: Send> Send for Task<G, F, T, E> {}
// SAFETY: as above: all shared access goes through atomics.
unsafe impl<G: Send, F: Send, T: Send, E: Send> Sync for Task<G, F, T, E> {}

/// Makes a task out of its body (a closure handed its `Cx`, returning the
/// future), and its handle. The task is born `SCHEDULED` (a cancellation
/// applied while its region adopts it must not enqueue it a second time:
/// the spawn enqueues it), with three strong counts, one for each of what
/// a spawn hands out: the run queue's reference, the region registry's and
/// the handle's (no count taken for each afterwards).
pub(crate) fn new_task<G, F, T, E>(
    id: TaskId,
    region: Arc<Region>,
    budget: Budget,
    seed: u64,
    body: G,
) -> (TaskRef, TaskRef, JoinHandle<T, E>)
where
    G: FnOnce(CxCore) -> F + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    let cell = Task {
        header: Header {
            state: AtomicUsize::new(SCHEDULED + 3 * REF_ONE),
            weak: AtomicUsize::new(1),
            vtable: &Task::<G, F, T, E>::VTABLE,
            id,
            region,
            cancel: CancelCell::new(),
            budget,
            polls: AtomicU32::new(0),
            polls_at_cancel: AtomicU32::new(u32::MAX),
            cost: AtomicU64::new(0),
            grace_at: AtomicU64::new(crate::cancel::GRACE_UNSET),
            deadline_timer: AtomicU64::new(crate::time::driver::TimerHandle::NONE_BITS),
            grace_timer: AtomicU64::new(crate::time::driver::TimerHandle::NONE_BITS),
            mask: AtomicU32::new(0),
            observed: AtomicBool::new(false),
            open_regions: LazyMutex::new(),
            open_count: AtomicUsize::new(0),
            seed,
            rng: AtomicU64::new(seed),
            children: AtomicU64::new(0),
        },
        stage: UnsafeCell::new(Stage::<G, F, T, E>::Init(body)),
        join: WakerSlot::new(),
    };
    let at = cache::alloc(std::alloc::Layout::new::<Task<G, F, T, E>>()).cast::<Task<G, F, T, E>>();
    // SAFETY: fresh memory of the cell's layout, ours alone.
    unsafe { at.as_ptr().write(cell) };
    // `Task` is `repr(C)` with its header first: a pointer to the cell is
    // a pointer to its header.
    let ptr = at.cast::<Header>();
    // SAFETY: the cell was made with three strong counts, one for each.
    unsafe {
        (
            TaskRef::from_raw(ptr),
            TaskRef::from_raw(ptr),
            JoinHandle {
                task: std::mem::ManuallyDrop::new(TaskRef::from_raw(ptr)),
                poll: Task::<G, F, T, E>::poll_join_raw,
                waiting: false,
                _marker: PhantomData,
            },
        )
    }
}

/// Makes an idle task runnable (or marks a running one to run again).
pub(crate) fn wake_task(task: &TaskRef, how: Schedule) {
    raw::wake_header(task.header(), how);
}

impl<G, F, T, E> Task<G, F, T, E>
where
    G: FnOnce(CxCore) -> F + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    /// Polls the stage, turning `Init` into `Running` first.
    fn poll_stage(&self, me: &TaskRef, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        self.stage.with_mut(|stage| {
            // SAFETY: we hold RUNNING: nobody else touches the stage, and
            // the cell stays in place while `me` counts, so pinning the
            // future is sound.
            let stage = unsafe { &mut *stage };
            if let Stage::Init(_) = stage {
                let Stage::Init(body) = std::mem::replace(stage, Stage::Done(None)) else {
                    unreachable!()
                };
                *stage = Stage::Running(body(CxCore::for_task(me.clone())));
            }
            match stage {
                // SAFETY: the future lives inside the task's cell and is
                // dropped in place, never moved.
                Stage::Running(f) => unsafe { Pin::new_unchecked(f) }.poll(cx),
                _ => unreachable!("a task is polled only while running"),
            }
        })
    }

    /// Drops the future where it was pinned (catching a panicking `Drop`,
    /// which makes the outcome `Panicked`), then stores the outcome,
    /// reports to the region and wakes the joiner.
    fn finish(&self, outcome: Outcome<T, E>, cut_off: bool) {
        let h = &self.header;
        let stats = h.sched().stats();
        let dropped = self.stage.with_mut(|stage| {
            // SAFETY: we hold RUNNING: nobody else touches the stage. The
            // future is dropped in place, where it was pinned (it may borrow
            // from itself: `cx.sleep(..)` borrows the task's `Cx`); moving it
            // out first would leave those borrows dangling. After
            // `drop_in_place` (even one that unwound) the slot holds nothing
            // live, and the write fills it again before anyone can look.
            unsafe {
                let dropped = crate::outcome::catch(|| std::ptr::drop_in_place(stage));
                std::ptr::write(stage, Stage::Done(None));
                dropped
            }
        });
        let outcome = match dropped {
            Ok(()) => outcome,
            Err(payload) => {
                stats.panic_caught();
                match outcome {
                    p @ Outcome::Panicked(_) => p,
                    other => {
                        if crate::outcome::drop_caught(other).is_some() {
                            stats.panic_caught();
                        }
                        Outcome::Panicked(payload)
                    }
                }
            }
        };
        // A failure's report (its error's `Debug`, its panic) is made
        // before the outcome moves into the stage; most outcomes are not
        // failures and report only their severity.
        let severity = outcome.severity();
        let report = matches!(severity, Severity::Err | Severity::Panicked)
            .then(|| ChildReport::of(&outcome, h.region.keeps_message(), stats).with_task(h.id));
        self.stage.with_mut(|stage| {
            // SAFETY: we hold RUNNING; the slot holds `Done(None)`, which
            // has nothing to drop.
            unsafe { std::ptr::write(stage, Stage::Done(Some(outcome))) }
        });
        // Counted before COMPLETE: whoever sees the outcome also sees the
        // task gone from the counters.
        stats.task_finished(cut_off);
        // AcqRel: Release is what matters: the joiner (Acquire on
        // COMPLETE) sees the outcome and the count above. An RMW, not a
        // store, so a concurrent waker's bits are kept. Its old value says
        // whether the handle is gone (a drop that comes after this finds
        // COMPLETE and sets nothing; a waker it left is woken, harmlessly).
        let prev = h.state.fetch_or(COMPLETE, Ordering::AcqRel);
        // Relaxed: stored before the task was first scheduled (the queue's
        // hand-off orders it before every run).
        if let Some(timer) =
            crate::time::driver::TimerHandle::from_bits(h.deadline_timer.load(Ordering::Relaxed))
        {
            h.sched().cancel_timer(timer);
        }
        // The grace timer too, if a poll after a cancellation armed one.
        // Relaxed: stored by this task's runner (`arm_grace`).
        if let Some(timer) =
            crate::time::driver::TimerHandle::from_bits(h.grace_timer.load(Ordering::Relaxed))
        {
            h.sched().cancel_timer(timer);
        }
        if prev & JOIN_GONE == 0 {
            if self.join.wake() {
                stats.panic_caught();
            }
        } else {
            // Nobody will take the output: dropped now, not with the task,
            // since it may hold the task (its own `Cx`): a cycle. Before
            // the region hears of the finish, so that the region closes
            // after the output's `Drop` (user code) has run.
            self.discard_output();
        }
        // Reported to the region last, after COMPLETE: the region's close
        // reads this report's decrement of its live count (AcqRel there),
        // so a region that has closed has every child's handle finished
        // (`JoinHandle::is_finished`), its outcome ready. This is the
        // task's last touch of its region. (Stress test:
        // `twenty_thousand_self_cancelled_regions_drain_and_count_every_child`,
        // whose check of every handle right after the close failed under
        // AddressSanitizer when the report came first.)
        match report {
            Some(report) => h.region.child_finished(report),
            None => h.region.child_done(severity),
        }
    }

    fn outcome_of(&self, r: Result<T, E>) -> Outcome<T, E> {
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(e) => {
                let h = &self.header;
                // A checkpoint may have reported a cancellation before the
                // task's own cell was set: one that a region opened inside
                // the task inherited from the task's region, whose sweep
                // has not reached this task yet. That request is the
                // task's too (the sweep is on its way): read it from there.
                // Relaxed: see `awaiter_cancelled`: only the polling thread
                // touches `observed`.
                match h
                    .observed
                    .load(Ordering::Relaxed)
                    .then(|| h.cancel.get().or_else(|| h.region.cancel.get()))
                    .flatten()
                {
                    Some(reason) => Outcome::Cancelled(reason),
                    None => Outcome::Err(e),
                }
            }
        }
    }

    /// This type's [`Vtable`] (one static per task type).
    const VTABLE: Vtable = Vtable {
        run: Self::run,
        reject: Self::reject_raw,
        drop_task: Self::drop_raw,
        dealloc: Self::dealloc_raw,
        discard_output: Self::discard_output_raw,
        forget_joiner: Self::forget_joiner_raw,
    };

    /// The cell of the task at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is the header of a `Task<G, F, T, E>` (its vtable is this
    /// type's), alive for `'a`.
    #[inline(always)]
    unsafe fn cell<'a>(ptr: NonNull<Header>) -> &'a Self {
        // SAFETY: the caller's promise; `repr(C)` puts the header at the
        // cell's address.
        unsafe { ptr.cast::<Self>().as_ref() }
    }

    /// `Vtable::reject`.
    unsafe fn reject_raw(ptr: NonNull<Header>, reason: CancelReason) {
        // SAFETY: as in `run_raw`; the caller holds a count.
        unsafe { Self::cell(ptr) }.reject(reason);
    }

    /// `Vtable::discard_output`.
    ///
    /// # Safety
    ///
    /// `ptr` is this type's task, COMPLETE (seen with Acquire), and no
    /// `JoinHandle` of it will read the stage (the caller is the last one,
    /// dropping, or the handle is gone).
    unsafe fn discard_output_raw(ptr: NonNull<Header>) {
        // SAFETY: the caller's promise.
        unsafe { Self::cell(ptr) }.discard_output();
    }

    /// `Vtable::forget_joiner`.
    ///
    /// # Safety
    ///
    /// `ptr` is this type's task, alive (the caller holds a count), and the
    /// caller is its `JoinHandle`, dropping (nothing registers in the join
    /// slot meanwhile).
    unsafe fn forget_joiner_raw(ptr: NonNull<Header>) {
        // SAFETY: the caller's promise. A `finish` racing this takes from
        // the slot too: the slot's protocol gives the waker to one of them.
        let cell = unsafe { Self::cell(ptr) };
        let waker = cell.join.take();
        // A waker's `Drop` is user code: a panic is counted in the awaited
        // task's runtime (the handle may be dropped on any thread).
        if waker.is_some_and(|w| crate::outcome::drop_caught(w).is_some()) {
            cell.header.region.sched.stats().panic_caught();
        }
    }

    /// Drops the output left in the stage, if any (user data: a panic of
    /// its `Drop` is caught and counted). The runner is done with the
    /// stage and no handle will read it (see `discard_output_raw`).
    fn discard_output(&self) {
        let out = self.stage.with_mut(|stage| {
            // SAFETY: the callers' promise: nobody else touches the stage.
            match unsafe { &mut *stage } {
                Stage::Done(out) => out.take(),
                _ => None,
            }
        });
        if let Some(out) = out
            && crate::outcome::drop_caught(out).is_some()
        {
            self.header.sched().stats().panic_caught();
        }
    }

    /// `Vtable::drop_task`.
    unsafe fn drop_raw(ptr: NonNull<Header>) {
        // SAFETY: the last strong count is gone (the caller's promise):
        // nothing else reads the contents; the memory stays until
        // `dealloc_raw`.
        unsafe { std::ptr::drop_in_place(ptr.cast::<Self>().as_ptr()) };
    }

    /// `Vtable::dealloc`.
    unsafe fn dealloc_raw(ptr: NonNull<Header>) {
        // SAFETY: the cell came from `cache::alloc` in `new_task` with this
        // type's layout, and its contents were dropped by `drop_raw`: only
        // the memory is left to free, and nobody uses it any more.
        unsafe { cache::dealloc(ptr.cast::<u8>(), std::alloc::Layout::new::<Self>()) };
    }

    fn reject(&self, reason: CancelReason) {
        let old = self.stage.with_mut(|stage| {
            // SAFETY: the task was never scheduled: nobody else has it.
            // (The body closure was never called: it holds no borrows of
            // itself and may be moved.)
            unsafe { std::mem::replace(&mut *stage, Stage::Done(Some(Outcome::Cancelled(reason)))) }
        });
        if crate::outcome::drop_caught(old).is_some() {
            self.header.sched().stats().panic_caught();
        }
        // Release: publishes the outcome written above to the joiner's
        // Acquire load of COMPLETE. An RMW (the strong count shares the
        // word); `SCHEDULED`, from its birth, stays: `COMPLETE` is what
        // everyone reads first.
        self.header.state.fetch_or(COMPLETE, Ordering::Release);
    }

    /// Polls the task (`me`: the queue's reference, given up by the end).
    ///
    /// An associated function, not a method: the cell may be freed before
    /// this returns (another worker runs a requeued task to its end; the
    /// last count goes with `me`), which a `&self` argument (valid for the
    /// whole call) must not see. `this` is a local borrow, unused after
    /// `me` is given up.
    ///
    /// # Safety
    ///
    /// `me` is a task of this type (its vtable is this type's).
    unsafe fn run(me: TaskRef) {
        // SAFETY: the caller's promise; `me`'s count keeps the cell alive
        // until it is given up, after which `this` is not used.
        let this: &Self = unsafe { Self::cell(NonNull::from(me.header())) };
        let h = &this.header;
        // Acquire: a first guess; the CAS below is what synchronizes.
        let mut s = h.state.load(Ordering::Acquire);
        loop {
            if s & COMPLETE != 0 {
                return;
            }
            debug_assert!(
                s & SCHEDULED != 0 && s & RUNNING == 0,
                "run without SCHEDULED"
            );
            // Acquire: see what the previous runner did to the stage.
            match h.state.compare_exchange_weak(
                s,
                (s & !SCHEDULED) | RUNNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }

        // A task that wakes itself (a yield) while nothing else is runnable
        // on this worker is polled again in place, up to this many times
        // in a row: no trip through the queues.
        const IN_PLACE: u32 = 16;
        let mut in_place = 0;
        // A waker borrowing our reference (no count traffic per poll);
        // clones made by the future count normally.
        let waker = me.borrowed_waker();
        // What this thread polls, for a `JoinHandle`'s checkpoint and for
        // a wake from inside our own poll: set once for every poll of this
        // run, restored however the run ends.
        let _polling = PollingGuard::task(h);
        loop {
            // Budgets, before the poll so the poll can observe them.
            // Relaxed (load and store): `polls` is written only by the thread
            // holding RUNNING; the RUNNING hand-off orders it across workers. A
            // canceller reading it on another thread (`cancel_task_with`) may see
            // a slightly stale count, which moves the cleanup quota's start by as
            // much (a bound, not an exact count).
            let polls = h.polls.load(Ordering::Relaxed).saturating_add(1);
            h.polls.store(polls, Ordering::Relaxed);
            if let Some(q) = h.budget.poll_quota
                && polls > q
                && !h.cancel.is_requested()
            {
                cancel_task(
                    &me,
                    &CancelReason::new(CancelKind::PollQuota).with_origin(Origin::Task(h.id)),
                );
            }
            // Acquire: pairs with `cut_off_task`'s AcqRel `fetch_or`. Only the
            // flag is read through it; a flag set just after this load is seen at
            // the next run, which `cut_off_task`'s wake guarantees.
            let mut cut_off = h.state.load(Ordering::Acquire) & CUT_OFF != 0;
            if !cut_off && h.cancel.is_requested() {
                // Relaxed: `polls_at_cancel` is one word written once, at the first
                // request, by the cancelling thread; a stale `u32::MAX` gives 0 polls
                // since (no cut-off yet): the next run reads it, so the cleanup quota
                // is at most a poll late.
                let since = polls.saturating_sub(h.polls_at_cancel.load(Ordering::Relaxed));
                if let Some(quota) = h.region.cleanup.polls {
                    cut_off = since > quota;
                }
            }
            if cut_off {
                let reason = h
                    .cancel
                    .get()
                    .unwrap_or_else(|| CancelReason::new(CancelKind::Shutdown));
                this.finish(Outcome::Cancelled(reason), true);
                return;
            }

            coop::reset();
            let mut cx = Context::from_waker(&waker);
            coop::take_yield();
            coop::take_repoll();
            let polled = catch_unwind(AssertUnwindSafe(|| this.poll_stage(&me, &mut cx)));
            // Our own yield, or a wake of ourselves from inside the poll
            // (a cancellation our body requested): run again.
            let quiet = coop::take_repoll();
            let self_yield = coop::take_yield();
            match polled {
                Ok(Poll::Ready(r)) => {
                    let outcome = this.outcome_of(r);
                    this.finish(outcome, false);
                    return;
                }
                Err(payload) => {
                    this.finish(Outcome::Panicked(PanicPayload::from_any(payload)), false);
                    return;
                }
                Ok(Poll::Pending) => {
                    // Still running after a poll that may have seen its
                    // cancellation: its cleanup now needs the grace timer.
                    if h.cancel.is_requested() {
                        crate::cancel::arm_grace(&me);
                    }
                }
            }
            // Looking for other work costs a few dozen instructions; a
            // task woken meanwhile waits at most three more of our polls.
            let again = in_place < IN_PLACE && (in_place % 4 != 0 || !h.sched().has_other_work());
            // A re-poll runs as a yield does (again in place when nothing
            // else is queued here, else at the back of the queue), but
            // wakes no other worker (below).
            let quiet = quiet && !self_yield;
            let self_yield = self_yield || quiet;
            if self_yield && again {
                // Our own yield, and nothing else to run here: again, in
                // place, with no atomic operation at all.
                in_place += 1;
                continue;
            }
            // Acquire: a first guess; the CAS below is what synchronizes.
            let mut s = h.state.load(Ordering::Acquire);
            loop {
                let next = if s & NOTIFIED != 0 || self_yield {
                    if again {
                        s & !NOTIFIED
                    } else {
                        (s & !(RUNNING | NOTIFIED)) | SCHEDULED
                    }
                } else {
                    // Idle: the queue's reference (ours) goes back in the
                    // same compare-and-swap (no strong count of its own
                    // while idle: a waker, the handle or the region holds
                    // the task, or nobody does any more).
                    debug_assert!(refs(s) >= 1, "a running task without its run's count");
                    (s & !RUNNING) - REF_ONE
                };
                // AcqRel: our stage writes go out with the state (Release,
                // also as a strong count's decrement); a waker's NOTIFIED
                // comes in (Acquire).
                match h
                    .state
                    .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => break,
                    Err(actual) => s = actual,
                }
            }
            if s & NOTIFIED == 0 && !self_yield {
                // Our count went with RUNNING; none of the task is touched
                // from here on.
                let ptr = me.into_raw();
                if refs(s) == 1 {
                    // SAFETY: the compare-and-swap took the last strong
                    // count (Release, with AcqRel).
                    unsafe { raw::drop_last(ptr) };
                }
                return;
            }
            if !again || self_yield {
                // A re-poll our own cancel request asked for (and no other
                // wake) goes behind the tasks that request queued, without
                // waking another worker, as they did (`Schedule::Cancel`).
                let how = if quiet && s & NOTIFIED == 0 {
                    Schedule::Cancel
                } else {
                    Schedule::Yield
                };
                // Our reference goes into the queue (no count taken here
                // and given back at the end of this run: two locked
                // read-modify-writes fewer per requeue), so the scheduler
                // is reached through a pointer taken first.
                let sched: *const dyn Scheduler = Arc::as_ptr(h.sched());
                // SAFETY: whoever calls `run` keeps the scheduler alive for
                // the call (a worker drives it through the pool's `Arc`,
                // shutdown's drain and the lab's and the models' loops run
                // tasks through a scheduler they hold), so it outlives
                // this call even when another worker runs the task to its
                // end and frees it, and the region whose `Arc` `h.sched()`
                // borrowed, as soon as it is queued.
                unsafe { (*sched).schedule(me, how) };
                return;
            }
            in_place += 1;
        }
    }

    /// [`JoinHandle::poll`]'s look at the task, through the handle's
    /// function pointer (the handle knows `T` and `E`, not the task's
    /// type).
    ///
    /// # Safety
    ///
    /// `ptr` is the header of a `Task<G, F, T, E>` that the caller's
    /// handle keeps alive.
    unsafe fn poll_join_raw(ptr: NonNull<Header>, cx: &mut Context<'_>) -> Poll<Outcome<T, E>> {
        // SAFETY: the caller's promise.
        unsafe { Self::cell(ptr) }.poll_join(cx)
    }

    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Outcome<T, E>> {
        let take = || {
            self.stage.with_mut(|stage| {
                // SAFETY: COMPLETE was seen with Acquire: the runner is done
                // with the stage, and the JoinHandle (unique, polled through
                // `&mut`) is the only one left touching it.
                match unsafe { &mut *stage } {
                    Stage::Done(out) => out.take(),
                    _ => None,
                }
            })
        };
        // Acquire: pairs with `finish`'s AcqRel `fetch_or(COMPLETE)` (or
        // `reject`'s Release one): seeing COMPLETE, we see the outcome.
        if self.header.state.load(Ordering::Acquire) & COMPLETE != 0 {
            return Poll::Ready(take().expect("JoinHandle polled after it returned the outcome"));
        }
        self.join.register(cx.waker());
        // Acquire: as above. The register-then-check order with `finish`'s
        // set-then-wake is `WakerSlot`'s protocol (`sync.rs`): no lost wake.
        if self.header.state.load(Ordering::Acquire) & COMPLETE != 0 {
            return Poll::Ready(take().expect("JoinHandle polled after it returned the outcome"));
        }
        Poll::Pending
    }
}

impl<G, F, T, E> Drop for Task<G, F, T, E> {
    fn drop(&mut self) {
        // The last reference is going (a joiner that never took the
        // outcome, a region letting go of a finished child, a cut-off at
        // shutdown). What is left in the stage is the user's (an output, an
        // error, an unpolled body): its `Drop` may panic, wherever this
        // runs (inside a region's close, a worker's queue drain), so drop
        // it in place under a catch, and count a panic.
        let panicked = self.stage.with_mut(|stage| {
            // SAFETY: `&mut self`: nobody else can reach the stage. After
            // `drop_in_place` (even one that unwound) nothing in the slot
            // is live; the write leaves a value with nothing to drop for the
            // field's own drop glue.
            unsafe {
                let r = crate::outcome::catch(|| std::ptr::drop_in_place(stage));
                std::ptr::write(stage, Stage::Done(None));
                r.is_err()
            }
        });
        if panicked {
            self.header.sched().stats().panic_caught();
        }
    }
}

/// A task type's `poll_join`, as a [`JoinHandle`] holds it.
type PollJoin<T, E> = unsafe fn(NonNull<Header>, &mut Context<'_>) -> Poll<Outcome<T, E>>;

/// Awaits a spawned task's [`Outcome`], and can ask it to stop.
///
/// Dropping the handle does not detach the task: its region still owns it
/// and still waits for it.
///
/// Awaiting the handle is a checkpoint of the awaiting task when the
/// awaited task is not drained by the awaiter's cancellation: once the
/// awaiter's scope is cancelled (and not masked), the await resolves to
/// `Cancelled` with the awaiter's reason instead of waiting, so a timeout,
/// a race or a shutdown is never held hostage by a task outside it. The
/// awaited task runs on, owned by its region. A task spawned inside the
/// cancelled region (in a `cx.region` body, a `race`, a `join_all`) is
/// waited for: the same cancellation drains it, and its own outcome is
/// what the await returns.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let h = cx.spawn(|_| async { 6 * 7 });
///     Ok::<_, ()>(h.await.unwrap())
/// });
/// assert_eq!(out.ok(), Some(42));
/// ```
pub struct JoinHandle<T, E = std::convert::Infallible> {
    /// The handle's strong count of the task (given back with `JOIN_GONE`
    /// in one compare-and-swap when it drops early:
    /// `TaskRef::release_join_unless_complete`).
    task: std::mem::ManuallyDrop<TaskRef>,
    /// The task type's `poll_join` (the handle knows only `T` and `E`).
    poll: PollJoin<T, E>,
    /// A poll of this handle left a waker in the task's join slot (it was
    /// not ready): dropped with the handle if the task has not finished.
    waiting: bool,
    _marker: PhantomData<fn() -> (T, E)>,
}

impl<T, E> JoinHandle<T, E> {
    /// The task's id.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let a = cx.spawn(|_| async {});
    ///     let b = cx.spawn(|_| async {});
    ///     Ok::<_, ()>(a.id() != b.id())
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    pub fn id(&self) -> TaskId {
        self.task.header().id
    }

    /// Asks the task to stop, for `reason`. It sees the request at its next
    /// checkpoint and ends `Cancelled(reason)` unless it finishes first.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::{CancelKind, CancelReason, time::Duration};
    /// let out = rt.block_on(|cx| async move {
    ///     let h = cx.spawn(|cx| async move { cx.sleep(Duration::from_secs(3600)).await.is_err() });
    ///     h.cancel(CancelReason::user("not needed"));
    ///     Ok::<_, ()>(h.await.ok()) // it saw the request at its sleep and returned
    /// });
    /// assert_eq!(out.ok(), Some(Some(true)));
    /// ```
    pub fn cancel(&self, reason: CancelReason) {
        cancel_task(&self.task, &reason);
    }

    /// Whether the task has finished.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let h = cx.spawn(|_| async { 1 });
    ///     while !h.is_finished() {
    ///         cx.yield_now().await.map_err(|_| ())?;
    ///     }
    ///     Ok::<_, ()>(h.await.ok())
    /// });
    /// assert_eq!(out.ok(), Some(Some(1)));
    /// ```
    pub fn is_finished(&self) -> bool {
        // Acquire: as in `poll_join`, so that `true` means the outcome is
        // ready for an await that follows.
        self.task.header().state.load(Ordering::Acquire) & COMPLETE != 0
    }
}

impl<T, E> Drop for JoinHandle<T, E> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once; the field is not used after this.
        let task = unsafe { std::mem::ManuallyDrop::take(&mut self.task) };
        if self.waiting {
            // The waker a poll left in the join slot holds the awaiting
            // task; `finish` would drop it only when the task finishes,
            // and a task that waits on its awaiter (two that awaited each
            // other's handle, then gave up) never does. Taken now, while
            // the count is still held. (A finish in between wakes an empty
            // slot: nobody needs the wake of a handle that is going.)
            let h = task.header();
            // SAFETY: this task's vtable, alive (the handle's count), and
            // this handle, the only one, is dropping.
            unsafe { (h.vtable.forget_joiner)(NonNull::from(h)) };
        }
        // A task still running is told, in the same compare-and-swap that
        // gives the count back, that nobody will join it (`finish` then
        // drops the output). A task seen finished (the common case of a
        // handle that was awaited) needs only its count back, after an
        // outcome never taken is dropped.
        if let Err(task) = task.release_join_unless_complete() {
            // An outcome never taken (the handle dropped unawaited after
            // the finish) may hold the task itself: dropped here, not with
            // the task (nothing, for a handle that was awaited).
            let h = task.header();
            // SAFETY: COMPLETE seen with Acquire, and this handle, the only
            // one, is going.
            unsafe { (h.vtable.discard_output)(NonNull::from(h)) };
            drop(task);
        }
    }
}

impl<T, E> Future for JoinHandle<T, E> {
    type Output = Outcome<T, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T, E>> {
        // A handle not ready spends none of the turn's budget (`budgeted`).
        coop::budgeted(cx, |cx| {
            // SAFETY: `poll` is the task type's (set with the handle), and
            // the handle's count keeps the task alive.
            match unsafe { (self.poll)(NonNull::from(self.task.header()), cx) } {
                Poll::Ready(o) => {
                    // Finished: `finish` took the waker from the slot (to
                    // wake it), so the drop has nothing to take back.
                    self.waiting = false;
                    Poll::Ready(o)
                }
                Poll::Pending => {
                    // Not ready: a waker is in the join slot.
                    self.waiting = true;
                    match awaiter_cancelled(self.task.header()) {
                        Some(reason) => Poll::Ready(Outcome::Cancelled(reason)),
                        None => Poll::Pending,
                    }
                }
            }
        })
    }
}

/// A [`JoinHandle`] awaited by a task whose scope has been cancelled is a
/// checkpoint of that task: unless the awaited task will itself be drained
/// by that cancellation (it lives inside the cancelled region), waiting on
/// would hold the awaiter's timeout, race or shutdown hostage to a task
/// outside it. Returns the awaiter's (unmasked) reason, marking it
/// observed.
#[cold]
fn awaiter_cancelled(awaited: &Header) -> Option<CancelReason> {
    let (task, scope) = POLLING.with(Cell::get);
    let scope = scope.map_addr(|a| a & !BY_OWNER);
    // SAFETY: POLLING points at the header of the task being polled on
    // this thread (kept alive by `Task::run`'s `Arc`) and at a region node
    // whose body is being polled (kept alive by that body's future), for
    // exactly the duration of those polls (the guards restore it).
    let (task, scope) = unsafe { (task.as_ref(), scope.as_ref()) };
    let task = task?;
    match scope {
        None => {
            if !task.cancel.is_requested() || task.masked() {
                return None;
            }
            // A task's own spawns go to its region, beside it, not below
            // it: nothing awaited from a task's own scope is drained by the
            // task's cancellation.
            // Relaxed: `observed` is written and read only by the thread polling
            // this task (here, then `outcome_of` after the poll); the RUNNING
            // hand-off orders it across workers.
            task.observed.store(true, Ordering::Relaxed);
            task.cancel.get()
        }
        Some(node) => {
            if !node.cancel.is_requested() {
                return None;
            }
            let owner = node.owner_task();
            let header = owner.as_ref().map_or(task, |o| o.header());
            if (header.masked() && !node.is_cut_off()) || node.contains(&awaited.region) {
                return None;
            }
            // Relaxed: as above (the owner task is the one being polled here).
            header.observed.store(true, Ordering::Relaxed);
            node.cancel.get()
        }
    }
}

/// The reason of the region body being polled on this thread, if that
/// region has been cut off (its cleanup budget ran out while the body
/// still ran), marking it observed; `None` otherwise, and outside any
/// region body. For a wait that no checkpoint can end and nothing else
/// interrupts (a blocking job's [`Blocking`](crate::Blocking)): a task's
/// own scope needs no such look, since a task cut off is dropped, but a
/// region body runs inside its owner task, and its cut-off only lifts its
/// masks and wakes it, which such a wait ignored (found by review: a
/// timeout's body awaiting a job that never ended held its region open
/// for ever). A cut-off reaches the regions nested in the body too
/// (`cut_off_all`), so the innermost body being polled is the one to
/// look at.
#[cold]
pub(crate) fn polled_body_cut_off() -> Option<CancelReason> {
    let (task, scope) = POLLING.with(Cell::get);
    let scope = scope.map_addr(|a| a & !BY_OWNER);
    // SAFETY: as in `awaiter_cancelled`: the pointers are those of the
    // task and the region body being polled on this thread, alive for the
    // poll, which is on the stack below this call.
    let (task, node) = unsafe { (task.as_ref(), scope.as_ref()) };
    let node = node?;
    if !node.is_cut_off() {
        return None;
    }
    let owner = node.owner_task();
    if let Some(header) = owner.as_ref().map(|o| o.header()).or(task) {
        // Relaxed: as in `awaiter_cancelled`.
        header.observed.store(true, Ordering::Relaxed);
    }
    node.cancel.get()
}

impl<T, E> fmt::Debug for JoinHandle<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id())
            .finish()
    }
}
