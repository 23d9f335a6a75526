//! What the rest of the crate tells the lab outside the [`Scheduler`]
//! seam: two-phase permits taken and resolved on this thread, and the
//! planted bugs (faults) a lab test may switch on for its own thread.
//!
//! Both are thread-local: the lab runs a program on one thread, and
//! nothing here reaches another thread's runs (tests run in parallel).
//! On the real runtime they cost one thread-local add per permit and one
//! thread-local load where a fault could be planted (a region's close).
//!
//! [`Scheduler`]: crate::sched::Scheduler

use std::cell::Cell;

thread_local! {
    /// Permits taken minus permits resolved (sent or dropped) on this
    /// thread.
    static PERMITS: Cell<i64> = const { Cell::new(0) };
    /// The faults planted for this thread's lab run (bits below).
    static FAULTS: Cell<u32> = const { Cell::new(0) };
}

/// Planted bug: the last child of a region to finish does not wake the
/// region's body waiting for quiescence (a lost wake-up in the close).
pub(crate) const LOST_CLOSE_WAKE: u32 = 1;
/// Planted bug: a region's close forgets its children's failures.
pub(crate) const IGNORE_CHILD_FAILURE: u32 = 2;

/// A two-phase permit (an mpsc slot) was reserved.
#[inline]
pub(crate) fn permit_opened() {
    PERMITS.with(|p| p.set(p.get().wrapping_add(1)));
}

/// A permit was resolved: its value committed, or its slot returned.
#[inline]
pub(crate) fn permit_resolved() {
    PERMITS.with(|p| p.set(p.get().wrapping_sub(1)));
}

/// Permits taken minus resolved on this thread so far.
pub(crate) fn permits() -> i64 {
    PERMITS.with(Cell::get)
}

/// Whether `fault` is planted on this thread.
#[inline]
pub(crate) fn fault(fault: u32) -> bool {
    FAULTS.with(Cell::get) & fault != 0
}

/// Plants `faults` on this thread until the guard drops.
pub(crate) fn plant(faults: u32) -> FaultGuard {
    FaultGuard(FAULTS.with(|f| f.replace(faults)))
}

/// Restores the faults planted before [`plant`].
pub(crate) struct FaultGuard(u32);

impl Drop for FaultGuard {
    fn drop(&mut self) {
        FAULTS.with(|f| f.set(self.0));
    }
}
