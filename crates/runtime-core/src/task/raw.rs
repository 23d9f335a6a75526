//! Counted references to a task's cell: [`TaskRef`] (strong), [`WeakTask`]
//! and the task's [`Waker`].
//!
//! A task is one heap cell (`Task<G, F, T, E>`, `repr(C)`, its [`Header`]
//! first), reached through a pointer to the header and a per-type
//! [`Vtable`]. Its **strong count lives in the state word**
//! (`Header::state`), above the flag bits (`REF_ONE` is the unit), so a
//! state transition and a count change are one read-modify-write where
//! they meet:
//!
//! - a wake that schedules the task takes the queue's reference in the
//!   same compare-and-swap that sets `SCHEDULED` ([`schedule_ref`]);
//! - a run that leaves the task idle gives the queue's reference back in
//!   the compare-and-swap that clears `RUNNING`;
//! - a [`JoinHandle`](super::JoinHandle) dropped before the task finished
//!   sets `JOIN_GONE` and gives its reference back in one subtraction.
//!
//! (With `std`'s `Arc` each of these was two locked instructions.) A weak
//! count sits beside it (`Header::weak`, one for all strong references
//! together, as `std`'s `Arc` does); the free of a cell that no
//! [`WeakTask`] reaches reads it instead of decrementing it.
//!
//! When the strong count reaches zero the cell's contents are dropped in
//! place (the vtable's `drop_task`: the stage, the joiner's slot, the
//! header's region and cancel cell); the memory goes when the weak count
//! does too (`dealloc`). The header's counts and vtable have no drop glue,
//! so a [`WeakTask`] can still read them after the contents are gone (its
//! `upgrade` then sees a zero count and fails).
//!
//! Orderings are `Arc`'s: an increment from an existing reference is
//! Relaxed (nothing is published by taking a count); a decrement is
//! Release, and the one that reaches zero is followed by an Acquire fence,
//! so every use of the task through any reference happens before its drop.

use std::ptr::NonNull;
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::{COMPLETE, Header, JOIN_GONE, NOTIFIED, RUNNING, SCHEDULED};
use crate::cancel::CancelReason;
use crate::loom::{Ordering, fence};
use crate::sched::Schedule;

/// One strong reference in `Header::state` (the bits below are flags).
pub(crate) const REF_ONE: usize = 64;
/// The strong count's bits in `Header::state`.
const REF_MASK: usize = !(REF_ONE - 1);
const ALL_FLAGS: usize = SCHEDULED | RUNNING | NOTIFIED | COMPLETE | super::CUT_OFF | JOIN_GONE;
const _: () = assert!(ALL_FLAGS & REF_MASK == 0, "the flags fit below the count");

/// The strong count in a state word.
#[inline]
pub(crate) fn refs(state: usize) -> usize {
    (state & REF_MASK) / REF_ONE
}

/// What a task's type does, reached from its header without knowing the
/// type: one static per `Task<G, F, T, E>`.
pub(crate) struct Vtable {
    /// Polls the task (the reference is the queue's, given up).
    pub(crate) run: unsafe fn(TaskRef),
    /// Completes a task that was never scheduled (its region had closed).
    pub(crate) reject: unsafe fn(NonNull<Header>, CancelReason),
    /// Drops the cell's contents in place (the strong count reached zero).
    pub(crate) drop_task: unsafe fn(NonNull<Header>),
    /// Frees the cell's memory (the weak count reached zero too).
    pub(crate) dealloc: unsafe fn(NonNull<Header>),
    /// Drops a finished task's output that nobody will take (its
    /// `JoinHandle` is gone): an output can hold the task itself (its own
    /// `Cx`, an `Interval`), a cycle that would keep the task for ever.
    pub(crate) discard_output: unsafe fn(NonNull<Header>),
    /// Drops the waker a `JoinHandle` left in the task's join slot (the
    /// handle is going before the task finished): a waker holds its task,
    /// and two tasks that each awaited the other's handle, then dropped
    /// it, held each other for ever.
    pub(crate) forget_joiner: unsafe fn(NonNull<Header>),
}

/// A counted reference to a task (a strong one, as `Arc`'s): keeps
/// the cell's contents alive.
pub(crate) struct TaskRef {
    ptr: NonNull<Header>,
}

// SAFETY: a task is shared between threads by design: all shared access to
// its header goes through atomics and locks, and its stage is touched only
// by the thread holding RUNNING (or the unique joiner after COMPLETE); the
// task's future, body and outcome are `Send` (required at spawn).
unsafe impl Send for TaskRef {}
// SAFETY: as above.
unsafe impl Sync for TaskRef {}

impl TaskRef {
    /// Takes over one strong count of the task whose header is at `ptr`.
    ///
    /// # Safety
    ///
    /// The caller owns that count (and gives it up to the result).
    #[inline]
    pub(crate) unsafe fn from_raw(ptr: NonNull<Header>) -> TaskRef {
        TaskRef { ptr }
    }

    /// Gives up the reference without releasing its count (for
    /// [`from_raw`](Self::from_raw) to take back).
    #[inline]
    pub(crate) fn into_raw(self) -> NonNull<Header> {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }

    /// The task's header (shared by every task type).
    #[inline(always)]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the count this reference owns keeps the cell's contents
        // (the header among them) alive for as long as `self`.
        unsafe { self.ptr.as_ref() }
    }

    /// The header's address (what a task's waker points at).
    #[inline]
    pub(crate) fn as_ptr(&self) -> *const Header {
        self.ptr.as_ptr()
    }

    /// Whether both refer to the same task.
    #[cfg(all(loom, test))]
    pub(crate) fn ptr_eq(a: &TaskRef, b: &TaskRef) -> bool {
        a.ptr == b.ptr
    }

    /// A weak reference to the task.
    pub(crate) fn downgrade(&self) -> WeakTask {
        // Relaxed: as a strong increment (we hold a strong reference, so
        // the cell cannot be freed meanwhile).
        self.header().weak.fetch_add(1, Ordering::Relaxed);
        WeakTask { ptr: self.ptr }
    }

    /// Polls the task once (the caller popped it from a run queue).
    #[inline]
    pub(crate) fn run(self) {
        let run = self.header().vtable.run;
        // SAFETY: `run` belongs to the cell's type (set at its making).
        unsafe { run(self) }
    }

    /// Completes a never-scheduled task with `Cancelled(reason)`.
    pub(crate) fn reject(&self, reason: CancelReason) {
        // SAFETY: as in `run`; the reference keeps the cell alive.
        unsafe { (self.header().vtable.reject)(self.ptr, reason) }
    }

    /// A waker for the task, borrowing this reference's count: it must
    /// not outlive `self` and is never dropped (it releases nothing), so
    /// it is handed out in a `ManuallyDrop`. Clones count as usual.
    #[inline]
    pub(crate) fn borrowed_waker(&self) -> std::mem::ManuallyDrop<Waker> {
        // SAFETY: the vtable's functions treat the data pointer as a task
        // header with one count per waker; this one owns none and is never
        // dropped, and `self` keeps the task alive while it is used.
        std::mem::ManuallyDrop::new(unsafe {
            Waker::from_raw(RawWaker::new(self.ptr.as_ptr().cast(), &WAKER_VTABLE))
        })
    }

    /// The join handle's drop while the task may still be running: in one
    /// compare-and-swap, gives up the handle's count and sets `JOIN_GONE`
    /// (so that `finish`, whose RMW of the same word comes after, drops
    /// the output itself). Hands the reference back, count kept, if the
    /// task is COMPLETE (seen with Acquire): its `finish` came first and
    /// kept the output for the handle, so the caller drops the output and
    /// then drops the reference. (A plain look followed by a subtraction
    /// left a gap: a finish between the two kept the output, and the
    /// handle never dropped it; an output that holds the task's own `Cx`
    /// then kept the task alive for ever. Loom:
    /// `join_handle_drop_racing_finish_drops_a_self_holding_output`.)
    pub(crate) fn release_join_unless_complete(self) -> Result<(), TaskRef> {
        let state = &self.header().state;
        // Acquire: if COMPLETE, the outcome written before it is seen.
        let mut s = state.load(Ordering::Acquire);
        loop {
            if s & super::COMPLETE != 0 {
                return Err(self);
            }
            debug_assert!(s & super::JOIN_GONE == 0, "one join handle per task");
            // Release on success: the count's, as in `release`; Acquire on
            // failure: a COMPLETE read there is handled as above.
            match state.compare_exchange_weak(
                s,
                s - REF_ONE + super::JOIN_GONE,
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(prev) => {
                    let ptr = self.into_raw();
                    if prev & REF_MASK == REF_ONE {
                        // SAFETY: ours was the last strong count.
                        unsafe { drop_last(ptr) };
                    }
                    return Ok(());
                }
                Err(now) => s = now,
            }
        }
    }
}

impl Clone for TaskRef {
    #[inline]
    fn clone(&self) -> TaskRef {
        // Relaxed: taking a count from a live reference publishes nothing
        // (`Arc::clone`'s reasoning); the drop that reaches zero orders the
        // uses.
        self.header().state.fetch_add(REF_ONE, Ordering::Relaxed);
        TaskRef { ptr: self.ptr }
    }
}

impl Drop for TaskRef {
    #[inline]
    fn drop(&mut self) {
        release(self.ptr);
    }
}

impl std::fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.header().fmt(f)
    }
}

/// Takes one strong count off the task at `ptr`, dropping the task's
/// contents when it was the last.
#[inline]
fn release(ptr: NonNull<Header>) {
    // SAFETY: the caller owned a count, so the header is alive until the
    // subtraction gives it up.
    let state = unsafe { &ptr.as_ref().state };
    // Release: every use of the task through this reference happens
    // before the drop of whoever reaches zero (its Acquire fence).
    let prev = state.fetch_sub(REF_ONE, Ordering::Release);
    debug_assert!(refs(prev) > 0, "a task's strong count went below zero");
    if prev & REF_MASK == REF_ONE {
        // SAFETY: ours was the last strong count.
        unsafe { drop_last(ptr) };
    }
}

/// Drops the contents of a task whose strong count has reached zero
/// (after a Release subtraction that read one), then lets the memory go
/// unless a [`WeakTask`] still reaches it.
///
/// # Safety
///
/// The caller's subtraction took the last strong count of the task at
/// `ptr`.
#[cold]
#[inline(never)]
pub(crate) unsafe fn drop_last(ptr: NonNull<Header>) {
    // Acquire: pairs with every other reference's Release subtraction, so
    // their uses of the task happen before the drop below.
    fence(Ordering::Acquire);
    // SAFETY: the vtable has no drop glue and lives forever; read before
    // the contents go.
    let vtable = unsafe { ptr.as_ref().vtable };
    // SAFETY: no strong reference is left, and none can be made
    // (`WeakTask::upgrade` fails at zero): the contents are ours to drop.
    unsafe { (vtable.drop_task)(ptr) };
    // The weak count that all strong references held together. When it is
    // the only one left (no `WeakTask` exists, and none can be made any
    // more: a weak reference is made from a strong one), nobody else can
    // touch the cell: free it without a read-modify-write. Acquire: pairs
    // with a `WeakTask`'s Release decrement that brought it to one, so
    // that weak reference's uses happen before the free.
    // SAFETY: the header's counts have no drop glue: still readable.
    let weak = unsafe { &ptr.as_ref().weak };
    if weak.load(Ordering::Acquire) == 1 || weak.fetch_sub(1, Ordering::Release) == 1 {
        fence(Ordering::Acquire);
        // SAFETY: no reference of either kind is left.
        unsafe { (vtable.dealloc)(ptr) };
    }
}

/// A weak reference to a task (as `std::sync::Weak` is): keeps the
/// cell's memory, not its contents; [`upgrade`](Self::upgrade) gives a
/// strong reference while the task lives.
pub(crate) struct WeakTask {
    ptr: NonNull<Header>,
}

// SAFETY: as `TaskRef`'s; a weak reference reads only the header's atomics
// (and the rest of the header once upgraded).
unsafe impl Send for WeakTask {}
// SAFETY: as above.
unsafe impl Sync for WeakTask {}

impl WeakTask {
    /// A strong reference, unless the task's contents are gone.
    pub(crate) fn upgrade(&self) -> Option<TaskRef> {
        // SAFETY: the weak count keeps the header's memory (its counts
        // have no drop glue), so the state word is readable.
        let state = unsafe { &self.ptr.as_ref().state };
        // Relaxed: a first guess; the compare-and-swap decides.
        let mut s = state.load(Ordering::Relaxed);
        loop {
            if s & REF_MASK == 0 {
                return None;
            }
            // Acquire (on success): as `std`'s `Weak::upgrade`, the task's
            // contents are seen as the last strong reference left them.
            match state.compare_exchange_weak(s, s + REF_ONE, Ordering::Acquire, Ordering::Relaxed)
            {
                // SAFETY: we took a count from a nonzero one.
                Ok(_) => return Some(unsafe { TaskRef::from_raw(self.ptr) }),
                Err(actual) => s = actual,
            }
        }
    }

    /// The header's address (for comparing with a task's).
    #[inline]
    pub(crate) fn as_ptr(&self) -> *const Header {
        self.ptr.as_ptr()
    }
}

impl Clone for WeakTask {
    fn clone(&self) -> WeakTask {
        // SAFETY: our count keeps the header's memory.
        // Relaxed: as `TaskRef::clone`.
        unsafe { self.ptr.as_ref() }
            .weak
            .fetch_add(1, Ordering::Relaxed);
        WeakTask { ptr: self.ptr }
    }
}

impl Drop for WeakTask {
    fn drop(&mut self) {
        // SAFETY: our count keeps the header's memory; the vtable has no
        // drop glue and is read before the count goes.
        let header = unsafe { self.ptr.as_ref() };
        let vtable = header.vtable;
        // Release: our uses happen before the free (the Acquire fence of
        // whoever frees, here or in `drop_last`).
        if header.weak.fetch_sub(1, Ordering::Release) == 1 {
            fence(Ordering::Acquire);
            // SAFETY: no reference of either kind is left (the strong ones
            // gave up their shared weak count in `drop_last`).
            unsafe { (vtable.dealloc)(self.ptr) };
        }
    }
}

/// The wake transition that also takes the queue's reference: marks a
/// running task `NOTIFIED` (its runner requeues it with its own
/// reference), or an idle one `SCHEDULED` with one more strong count, in
/// one compare-and-swap. Returns that reference when the caller must
/// enqueue the task.
#[inline]
pub(crate) fn schedule_ref(h: &Header) -> Option<TaskRef> {
    transition_to_scheduled(h, REF_ONE).then(|| {
        // SAFETY: the compare-and-swap took this count for us.
        unsafe { TaskRef::from_raw(NonNull::from(h)) }
    })
}

/// The wake transition: marks a running task `NOTIFIED`, or an idle one
/// `SCHEDULED` (adding `add` to its state: `REF_ONE` for the queue's
/// reference, or 0 when the caller hands its own over); returns true when
/// the caller must enqueue it.
#[inline]
pub(crate) fn transition_to_scheduled(h: &Header, add: usize) -> bool {
    // Acquire: a first guess; the CAS below is what synchronizes.
    let mut s = h.state.load(Ordering::Acquire);
    loop {
        let next = if s & (COMPLETE | SCHEDULED) != 0 {
            return false;
        } else if s & RUNNING != 0 {
            if s & NOTIFIED != 0 {
                return false;
            }
            s | NOTIFIED
        } else {
            (s | SCHEDULED) + add
        };
        // AcqRel: the enqueue below must happen after we own SCHEDULED,
        // and a runner clearing RUNNING must see our NOTIFIED.
        match h
            .state
            .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return s & RUNNING == 0,
            Err(actual) => s = actual,
        }
    }
}

/// True if `w` is one of our task wakers (the runtime's vtable), not a
/// user's waker that happens to carry a task's address as its data.
#[inline]
pub(crate) fn is_task_waker(w: &Waker) -> bool {
    std::ptr::eq(w.vtable(), &WAKER_VTABLE)
}

/// The waker of every task: its data pointer is the task's header, and it
/// owns one strong count (except the borrowed one `Task::run` polls with).
static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

unsafe fn waker_clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` is a live task's header (the waker holds or borrows a
    // count).
    let header = unsafe { &*data.cast::<Header>() };
    // Relaxed: as `TaskRef::clone`.
    header.state.fetch_add(REF_ONE, Ordering::Relaxed);
    RawWaker::new(data, &WAKER_VTABLE)
}

/// Makes the task runnable (or marks a running one to run again): the
/// queue's count taken in the wake's compare-and-swap, the scheduler
/// borrowed through the caller's reference to the task.
#[inline]
pub(crate) fn wake_header(h: &Header, how: Schedule) {
    if let Some(queued) = schedule_ref(h) {
        h.sched().schedule(queued, how);
    }
}

unsafe fn waker_wake(data: *const ()) {
    // The queue takes a count of its own, and ours is dropped after the
    // scheduler returns: handing ours over would leave the scheduler
    // reachable only through the task while `schedule` still runs, and a
    // worker may run the task to its end (freeing its region, and with it
    // perhaps the scheduler's last reference) before `schedule` returns.
    // SAFETY: an owned waker's count keeps the task alive for the wake,
    // and is given up after it.
    unsafe {
        waker_wake_by_ref(data);
        waker_drop(data);
    }
}

unsafe fn waker_wake_by_ref(data: *const ()) {
    // SAFETY: `data` is a live task's header.
    wake_header(unsafe { &*data.cast::<Header>() }, Schedule::Wake);
}

unsafe fn waker_drop(data: *const ()) {
    // SAFETY: an owned waker's count, given up here.
    drop(unsafe { TaskRef::from_raw(NonNull::new_unchecked(data.cast_mut().cast())) });
}
