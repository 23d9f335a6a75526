//! [`CancelCell`]: where a task or region keeps its cancellation request.

use std::sync::Arc;

use super::CancelReason;
use crate::loom::{AtomicPtr, Mutex, Ordering, lock};

/// A cancellation request cell: the strongest reason asked for so far.
///
/// Reading is lock-free (one atomic load, then a clone); only requests take
/// the lock. Every reason recorded is kept (as an `Arc`, shared with
/// whoever requested it: a region passes one `Arc` to all its tasks) until
/// the cell is dropped, so a reader's pointer never dangles; reasons only
/// strengthen, so there are at most a handful per cell, and the first needs
/// no allocation here.
pub(crate) struct CancelCell {
    /// The current reason, or null. Points into an `Arc` held by `kept`.
    current: AtomicPtr<CancelReason>,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    first: Option<Arc<CancelReason>>,
    later: Vec<Arc<CancelReason>>,
}

impl CancelCell {
    pub(crate) fn new() -> Self {
        CancelCell {
            current: AtomicPtr::new(std::ptr::null_mut()),
            kept: Mutex::new(Kept::default()),
        }
    }

    /// Records `reason` unless an equal or stronger one is already there.
    /// Returns `Some(first)` if the reason changed, `first` telling whether
    /// this was the first request.
    pub(crate) fn request(&self, reason: &Arc<CancelReason>) -> Option<bool> {
        let mut kept = lock(&self.kept);
        // Writers are serialised by the lock: Relaxed sees the last store.
        let current = self.current.load(Ordering::Relaxed);
        // SAFETY: a non-null `current` points into an Arc held by `kept`.
        let first = match unsafe { current.as_ref() } {
            None => true,
            Some(cur) if reason.strength() > cur.strength() => false,
            Some(_) => return None,
        };
        let ptr = Arc::as_ptr(reason).cast_mut();
        if first {
            kept.first = Some(reason.clone());
        } else {
            kept.later.push(reason.clone());
        }
        // SeqCst (Release at least): a reader that sees the pointer sees
        // the reason behind it; SeqCst for the spawn/sweep handshake in
        // `region.rs`.
        self.current.store(ptr, Ordering::SeqCst);
        Some(first)
    }

    /// Whether anything was requested.
    #[inline]
    pub(crate) fn is_requested(&self) -> bool {
        !self.current.load(Ordering::SeqCst).is_null()
    }

    /// The current reason, if any.
    #[inline]
    pub(crate) fn get(&self) -> Option<CancelReason> {
        let p = self.current.load(Ordering::SeqCst);
        // SAFETY: non-null pointers in `current` point into Arcs that
        // `kept` holds until the cell is dropped; `&self` keeps it alive.
        unsafe { p.as_ref() }.cloned()
    }

    /// The current reason as a shared `Arc` (no copy of the reason).
    #[inline]
    pub(crate) fn get_arc(&self) -> Option<Arc<CancelReason>> {
        let p = self.current.load(Ordering::SeqCst);
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` came from `Arc::as_ptr` of an Arc that `kept` holds
        // until the cell is dropped (and `&self` keeps the cell alive), so
        // the count is at least one while we add ours.
        unsafe {
            Arc::increment_strong_count(p);
            Some(Arc::from_raw(p))
        }
    }
}
