//! What the rest of the crate tells the lab outside the [`Scheduler`]
//! seam: two-phase permits taken in a lab run and resolved (anywhere), and
//! the planted bugs (faults) a lab test may switch on for its own thread.
//!
//! A lab run opens a ledger on its thread (the lab runs a program on one
//! thread, and nothing here reaches another thread's runs: tests run in
//! parallel). A permit taken while it is open carries the ledger and
//! resolves it wherever it is sent or dropped, even on another thread; a
//! permit taken outside any run carries none, so resolving it inside a
//! run counts nothing there. On the real runtime a permit costs one
//! thread-local read; a fault, one thread-local load where it could be
//! planted (a region's close).
//!
//! [`Scheduler`]: crate::sched::Scheduler

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

thread_local! {
    /// The ledger of the lab run on this thread: permits taken in it minus
    /// those of them resolved.
    static LEDGER: RefCell<Option<Arc<AtomicI64>>> = const { RefCell::new(None) };
    /// The faults planted for this thread's lab run (bits below).
    static FAULTS: Cell<u32> = const { Cell::new(0) };
}

/// Planted bug: the last child of a region to finish does not wake the
/// region's body waiting for quiescence (a lost wake-up in the close).
pub(crate) const LOST_CLOSE_WAKE: u32 = 1;
/// Planted bug: a region's close forgets its children's failures.
pub(crate) const IGNORE_CHILD_FAILURE: u32 = 2;
/// Planted bug: a region opened in a parent that had closed is counted
/// nowhere (its tasks can outlive every region above it).
pub(crate) const ORPHANS_NOT_ADOPTED: u32 = 4;

/// A two-phase permit's entry in the ledger of the lab run it was taken
/// in (none outside a run).
#[derive(Default)]
pub(crate) struct PermitToken(Option<Arc<AtomicI64>>);

impl PermitToken {
    /// The permit was resolved: its value committed, or its slot returned.
    #[inline]
    pub(crate) fn resolve(self) {
        if let Some(ledger) = self.0 {
            // Relaxed: a count, read by the run's end-of-run oracle.
            ledger.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A two-phase permit (an mpsc slot) was reserved: its token, entered in
/// this thread's run, if one is open.
#[inline]
pub(crate) fn permit_opened() -> PermitToken {
    // `try_with`: a permit may be taken from another thread-local's
    // destructor after this one's has run (found by review: `with` panicked
    // there, in a destructor, which aborts); no run is open then.
    PermitToken(
        LEDGER
            .try_with(|l| {
                let ledger = l.borrow().clone()?;
                // Relaxed: as in `resolve`.
                ledger.fetch_add(1, Ordering::Relaxed);
                Some(ledger)
            })
            .ok()
            .flatten(),
    )
}

/// Opens a ledger for the lab run on this thread until the guard drops
/// (restoring an outer run's: a lab inside a lab task).
pub(crate) fn open_ledger() -> LedgerGuard {
    let ledger = Arc::new(AtomicI64::new(0));
    let outer = LEDGER.with(|l| l.replace(Some(ledger.clone())));
    LedgerGuard { ledger, outer }
}

/// The ledger of one lab run; see [`open_ledger`].
pub(crate) struct LedgerGuard {
    ledger: Arc<AtomicI64>,
    outer: Option<Arc<AtomicI64>>,
}

impl LedgerGuard {
    /// Permits taken in this run and not resolved (yet).
    pub(crate) fn unresolved(&self) -> i64 {
        // Relaxed: as in `resolve`.
        self.ledger.load(Ordering::Relaxed)
    }
}

impl Drop for LedgerGuard {
    fn drop(&mut self) {
        let outer = self.outer.take();
        let _ = LEDGER.try_with(|l| *l.borrow_mut() = outer);
    }
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
