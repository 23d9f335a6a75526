//! [`CancelCell`]: where a task or region keeps its cancellation request.

use std::sync::Arc;

use super::CancelReason;
use crate::loom::{AtomicPtr, Ordering, lock};
use crate::sync::LazyMutex;

/// A cancellation request cell: the strongest reason asked for so far.
///
/// Reading is lock-free (one atomic load, then a clone), and so is the
/// first request (one compare-and-swap from null: the common case, a
/// region's sweep reaching each of its tasks once); only a later, stronger
/// request takes the lock. Every reason recorded is kept (as an `Arc`,
/// shared with whoever requested it: a region passes one `Arc` to all its
/// tasks) until the cell is dropped, so a reader's pointer never dangles;
/// reasons only strengthen, so there are at most a handful per cell.
pub(crate) struct CancelCell {
    /// The current reason, or null. Points into an `Arc` the cell owns:
    /// `first`'s, or one held by `later`.
    current: AtomicPtr<CancelReason>,
    /// The first reason recorded (a count of its `Arc` owned by the cell,
    /// through `Arc::into_raw`), or null: never recorded, or recorded
    /// without a count ([`request_borrowed`](Self::request_borrowed)).
    /// Written once, by the request whose compare-and-swap took `current`
    /// from null; read only by `drop`.
    first: AtomicPtr<CancelReason>,
    /// Stronger reasons recorded after the first, behind a lock that also
    /// serialises those requests; made by the first request that needs it
    /// (most cells never do, and a null pointer costs a cell's drop one
    /// load where an empty locked vector cost its drop glue), null until
    /// then, freed with the cell.
    later: LazyMutex<Vec<Arc<CancelReason>>>,
}

impl CancelCell {
    pub(crate) fn new() -> Self {
        CancelCell {
            current: AtomicPtr::new(std::ptr::null_mut()),
            first: AtomicPtr::new(std::ptr::null_mut()),
            later: LazyMutex::new(),
        }
    }

    /// Records `reason` unless an equal or stronger one is already there.
    /// Returns `Some(first)` if the reason changed, `first` telling whether
    /// this was the first request.
    pub(crate) fn request(&self, reason: &Arc<CancelReason>) -> Option<bool> {
        // Relaxed: a first guess; the compare-and-swap decides.
        if self.current.load(Ordering::Relaxed).is_null()
            && self.record_first(reason.clone()).is_ok()
        {
            return Some(true);
        }
        self.request_later(reason)
    }

    /// [`request`](Self::request) with a reason the caller gives up: a
    /// first request keeps the caller's count (no count taken and the
    /// caller's given back).
    pub(crate) fn request_owned(&self, reason: Arc<CancelReason>) -> Option<bool> {
        // Relaxed: a first guess; the compare-and-swap decides.
        if self.current.load(Ordering::Relaxed).is_null() {
            return match self.record_first(reason) {
                Ok(()) => Some(true),
                Err(reason) => self.request_later(&reason),
            };
        }
        self.request_later(&reason)
    }

    /// Records `reason` as the first (its count kept in `first`) if nothing
    /// was recorded yet; else hands it back.
    fn record_first(&self, reason: Arc<CancelReason>) -> Result<(), Arc<CancelReason>> {
        let raw = Arc::into_raw(reason).cast_mut();
        // SeqCst on success (Release at least): a reader that sees the
        // pointer sees the reason behind it; SeqCst for the spawn/sweep
        // handshake in `region/mod.rs` and the Dekker pair with
        // `Header::open_count` (`cancel/protocol.rs`), as the store of a
        // later request (`request_later`). Relaxed on failure: the caller
        // only goes on to the locked path, whose lock and Acquire load
        // order the rest.
        match self.current.compare_exchange(
            std::ptr::null_mut(),
            raw,
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                // Relaxed: read only by `drop`, which has `&mut self`
                // (whatever ended the cell's sharing synchronised it).
                self.first.store(raw, Ordering::Relaxed);
                Ok(())
            }
            // SAFETY: `raw` came from `Arc::into_raw` just above and was
            // not published: its count is the caller's again.
            Err(_) => Err(unsafe { Arc::from_raw(raw) }),
        }
    }

    /// A request once a reason is recorded: under the lock, kept if it is
    /// stronger than the current one.
    fn request_later(&self, reason: &Arc<CancelReason>) -> Option<bool> {
        let mut later = lock(self.later.get());
        // Acquire: synchronises with the first request's compare-and-swap
        // (which may not have held the lock), so the reason behind the
        // pointer is visible; later writers are serialised by the lock.
        // Non-null: we get here only once `current` is non-null (the
        // first guess, or the compare-and-swap, saw it so), and it never
        // goes back to null.
        let current = self.current.load(Ordering::Acquire);
        // SAFETY: a non-null `current` points into an Arc the cell owns
        // (`first`, or one in `later`) until it is dropped.
        if let Some(cur) = unsafe { current.as_ref() }
            && reason.strength() <= cur.strength()
        {
            return None;
        }
        later.push(reason.clone());
        // SeqCst (Release at least): as the compare-and-swap in
        // `record_first`.
        self.current
            .store(Arc::as_ptr(reason).cast_mut(), Ordering::SeqCst);
        Some(false)
    }

    /// [`request`](Self::request) for a reason that another cell keeps
    /// alive for at least as long as this one is read: a first request
    /// records it with no count of its own (one read-modify-write of the
    /// reason's shared count fewer here, and one fewer when the cell
    /// drops). A region's sweep passes its own reason to its tasks this
    /// way: each task holds its region (`Header::region`) until it is
    /// freed, and the region's cell keeps every reason it recorded.
    ///
    /// # Safety
    ///
    /// `reason` must be recorded in a [`CancelCell`] that lives at least
    /// until this cell is dropped, and this cell must not be read while it
    /// drops (a cell's readers hold whatever holds it).
    pub(crate) unsafe fn request_borrowed(&self, reason: &Arc<CancelReason>) -> Option<bool> {
        // Relaxed: a first guess; the compare-and-swap below decides.
        if self.current.load(Ordering::Relaxed).is_null()
            // SeqCst on success: as in `request`. Relaxed on failure: as there.
            && self
                .current
                .compare_exchange(
                    std::ptr::null_mut(),
                    Arc::as_ptr(reason).cast_mut(),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            // `first` stays null: the cell owns no count of this reason.
            return Some(true);
        }
        self.request(reason)
    }

    /// Whether `reason` is one this cell recorded (and so keeps alive):
    /// the check behind `request_borrowed`'s promise (debug assertions).
    pub(crate) fn records(&self, reason: &Arc<CancelReason>) -> bool {
        let p = Arc::as_ptr(reason);
        // SeqCst: as `is_requested`; a debug check.
        std::ptr::eq(self.current.load(Ordering::SeqCst), p)
            || std::ptr::eq(self.first.load(Ordering::SeqCst), p)
            || self
                .later
                .get_if_made()
                .is_some_and(|m| lock(m).iter().any(|r| Arc::ptr_eq(r, reason)))
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
        // the cell owns (`first`, `later`) until the cell is dropped; `&self` keeps it alive.
        unsafe { p.as_ref() }.cloned()
    }

    /// The current reason, borrowed from the cell for as long as `&self`
    /// is: an `Arc` that takes no count (and gives none back). A sweep
    /// reads its region's reason this way.
    #[inline]
    pub(crate) fn get_borrowed(&self) -> Option<BorrowedReason<'_>> {
        let p = self.current.load(Ordering::SeqCst);
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` came from `Arc::as_ptr` of an Arc that the cell owns
        // until the cell is dropped; the result borrows `self`, so the cell
        // (and that Arc) outlives it, and its `ManuallyDrop` never gives
        // back the count it did not take. A clone through it takes a count
        // of its own.
        Some(BorrowedReason(
            std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p) }),
            std::marker::PhantomData,
        ))
    }

    /// The current reason as a shared `Arc` (no copy of the reason).
    #[inline]
    pub(crate) fn get_arc(&self) -> Option<Arc<CancelReason>> {
        let p = self.current.load(Ordering::SeqCst);
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` came from `Arc::as_ptr` of an Arc that the cell owns
        // until the cell is dropped (and `&self` keeps the cell alive), so
        // the count is at least one while we add ours.
        unsafe {
            Arc::increment_strong_count(p);
            Some(Arc::from_raw(p))
        }
    }
}

/// A reason borrowed from a [`CancelCell`] ([`CancelCell::get_borrowed`]).
pub(crate) struct BorrowedReason<'a>(
    std::mem::ManuallyDrop<Arc<CancelReason>>,
    std::marker::PhantomData<&'a CancelCell>,
);

impl std::ops::Deref for BorrowedReason<'_> {
    type Target = Arc<CancelReason>;
    fn deref(&self) -> &Arc<CancelReason> {
        &self.0
    }
}

impl Drop for CancelCell {
    /// Inlined: most cells (a task's, reached by its region's sweep) own
    /// no reason, and their drop is one load.
    #[inline]
    fn drop(&mut self) {
        // Relaxed: `&mut self`: nothing else can touch the cell now.
        let first = self.first.load(Ordering::Relaxed);
        if !first.is_null() {
            // SAFETY: `first` holds the count that `request` took with
            // `Arc::into_raw` for the cell; this gives it back, once.
            recycle_reason(unsafe { Arc::from_raw(first) });
        }
        // `later` frees its list (if made) as a field.
    }
}

/// Reason allocations kept per thread (a few: a region's request makes
/// one, its cell gives it back when the region drops, usually on the same
/// worker).
#[cfg(not(loom))]
const CACHED_REASONS: usize = 4;

#[cfg(not(loom))]
thread_local! {
    /// Unique `Arc`s of reasons whose cells dropped, holding a placeholder
    /// (no message, no cause: nothing of the old reason is kept).
    static REASONS: std::cell::RefCell<Vec<Arc<CancelReason>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `Arc::new(reason)`, in an allocation that a dropped cell gave back on
/// this thread when there is one (a region's request: a `malloc` and a
/// `free` fewer per cancelled region).
pub(crate) fn new_reason(reason: CancelReason) -> Arc<CancelReason> {
    #[cfg(not(loom))]
    {
        if let Some(mut a) = crate::sync::cache_take(&REASONS)
            && let Some(slot) = unique_mut(&mut a)
        {
            // The placeholder has nothing to drop.
            *slot = reason;
            return a;
        }
    }
    Arc::new(reason)
}

/// `Arc::get_mut` for a reason's `Arc`, without its compare-and-swap on
/// the weak count (a locked read-modify-write; two per cancelled region:
/// the reuse in [`new_reason`] and the return in [`recycle_reason`]).
/// `get_mut` locks the weak count so that no `Weak` can be upgraded
/// between its two looks; this crate never makes a `Weak<CancelReason>`
/// (no `Arc::downgrade` of a reason anywhere, and no `Arc` of a reason is
/// ever handed out of the crate: its API lends `&CancelReason` or clones
/// the value), so the strong count alone says whether the caller's `Arc`
/// is the only reference, and no other can appear: a new one is made only
/// from an existing one.
#[cfg(not(loom))]
#[inline]
fn unique_mut(a: &mut Arc<CancelReason>) -> Option<&mut CancelReason> {
    if Arc::strong_count(a) != 1 {
        return None;
    }
    // Acquire (a fence after the count's load, which `strong_count` makes
    // Relaxed): pairs with the Release decrement of every other reference
    // dropped before (their drops' release sequence ends at the count of
    // one read here), so whatever they did with the reason happens-before
    // the caller's write, as `get_mut`'s Acquire load does.
    std::sync::atomic::fence(Ordering::Acquire);
    debug_assert_eq!(Arc::weak_count(a), 0, "a Weak<CancelReason> was made");
    // SAFETY: `a` is the only reference to the allocation (the strong count
    // is one, no `Weak` exists, see above, and none can be made from
    // elsewhere), and everything other references did happened-before this
    // (the fence); `&mut a` keeps it so for the borrow's life. `Arc::as_ptr`
    // derives the pointer from the allocation's raw pointer, as std's
    // `get_mut` does, so writing through it is allowed.
    Some(unsafe { &mut *Arc::as_ptr(a).cast_mut() })
}

/// Gives a reason's `Arc` back: kept for [`new_reason`] when it is the
/// last reference (its reason replaced by a placeholder, so that nothing
/// it held, a message or a cause, outlives it), else dropped.
#[inline(never)]
fn recycle_reason(a: Arc<CancelReason>) {
    #[cfg(not(loom))]
    let mut a = a;
    #[cfg(not(loom))]
    if let Some(slot) = unique_mut(&mut a) {
        let old = std::mem::replace(slot, CancelReason::new(super::CancelKind::User));
        // Kept while the cache has room; else freed.
        crate::sync::cache_keep(&REASONS, a, CACHED_REASONS);
        // A reason holds no user code: its message and cause drop here,
        // outside the cache's borrow.
        drop(old);
        return;
    }
    drop(a);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::cancel::CancelKind;

    /// A cell's own reason, when the cell held its last reference, is kept
    /// for the next request on this thread, holding nothing of the old
    /// reason; one still shared elsewhere is left to its other holders,
    /// intact.
    #[test]
    fn a_dropped_cells_reason_is_reused_only_when_unique_and_keeps_nothing() {
        // Unique: given back, then handed out again with the new reason.
        let cell = CancelCell::new();
        let first = new_reason(CancelReason::user(String::from("first")));
        let at = Arc::as_ptr(&first);
        assert_eq!(cell.request_owned(first), Some(true));
        drop(cell);
        let next = new_reason(CancelReason::new(CancelKind::Timeout));
        assert!(std::ptr::eq(Arc::as_ptr(&next), at));
        assert_eq!((next.kind(), next.message()), (CancelKind::Timeout, None));

        // Shared: the other holder keeps it as it was; nothing is reused.
        let cell = CancelCell::new();
        let shared = new_reason(CancelReason::user("shared"));
        let kept = shared.clone();
        assert_eq!(cell.request_owned(shared), Some(true));
        drop(cell);
        assert_eq!(kept.message(), Some("shared"));
        let other = new_reason(CancelReason::user("other"));
        assert!(!std::ptr::eq(Arc::as_ptr(&other), Arc::as_ptr(&kept)));
    }
}
