//! Small synchronisation pieces shared by tasks, regions and channels.

use std::sync::Arc;
use std::task::Waker;

use crate::cancel::CancelReason;
use crate::loom::{AtomicPtr, AtomicU32, Mutex, Ordering, UnsafeCell, lock};

const WAITING: u32 = 0;
const REGISTERING: u32 = 0b01;
const WAKING: u32 = 0b10;

/// One waker slot with a single registrant and any number of wakers
/// (the "atomic waker" protocol): registering and waking take no lock.
///
/// A wake that races a registration is never lost: either the waker sees
/// the new waker, or the registrant sees `WAKING` and wakes itself.
pub(crate) struct WakerSlot {
    state: AtomicU32,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the waker cell is only touched by whoever moved `state` out of
// WAITING (REGISTERING for the registrant, WAKING for a waker), which the
// state machine makes exclusive; `Waker` itself is Send + Sync.
unsafe impl Send for WakerSlot {}
// SAFETY: as above.
unsafe impl Sync for WakerSlot {}

impl WakerSlot {
    pub(crate) fn new() -> Self {
        WakerSlot {
            state: AtomicU32::new(WAITING),
            waker: UnsafeCell::new(None),
        }
    }

    /// Stores `waker` to be woken by the next [`wake`](Self::wake).
    /// Only one thread may register at a time (the owner of the future).
    pub(crate) fn register(&self, waker: &Waker) {
        // Acquire: see the cell as the last waker (or registrant) left it.
        match self.state.compare_exchange(
            WAITING,
            REGISTERING,
            Ordering::Acquire,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                self.waker.with_mut(|w| {
                    // SAFETY: REGISTERING gives this thread the cell.
                    let slot = unsafe { &mut *w };
                    match slot {
                        Some(old) if old.will_wake(waker) => {}
                        _ => *slot = Some(waker.clone()),
                    }
                });
                // AcqRel: publish the waker to the next waker (Release), and
                // if a wake arrived meanwhile, see its state (Acquire).
                if let Err(actual) = self.state.compare_exchange(
                    REGISTERING,
                    WAITING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    // A wake came in while we held the cell: it left the
                    // waking to us.
                    debug_assert_eq!(actual, REGISTERING | WAKING);
                    // SAFETY: the state is still REGISTERING|WAKING, so the
                    // cell is still ours until the swap below.
                    let w = self.waker.with_mut(|w| unsafe { (*w).take() });
                    self.state.swap(WAITING, Ordering::AcqRel);
                    if let Some(w) = w {
                        w.wake();
                    }
                }
            }
            // A wake is in progress: it may have taken the old waker, so
            // make sure this poll happens again.
            Err(_) => waker.wake_by_ref(),
        }
    }

    /// Wakes the registered waker, if any.
    pub(crate) fn wake(&self) {
        if let Some(w) = self.take() {
            w.wake();
        }
    }

    /// Takes the registered waker out (to wake it after releasing locks).
    pub(crate) fn take(&self) -> Option<Waker> {
        // AcqRel: see the registrant's waker (Acquire); our WAKING bit is
        // what a concurrent registrant will see (Release).
        match self.state.fetch_or(WAKING, Ordering::AcqRel) {
            WAITING => {
                // SAFETY: we moved WAITING to WAKING: the cell is ours.
                let w = self.waker.with_mut(|w| unsafe { (*w).take() });
                self.state.fetch_and(!WAKING, Ordering::Release);
                w
            }
            // A registrant holds the cell (it will see WAKING and wake
            // itself) or another waker does (it will wake it).
            _ => None,
        }
    }
}

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
