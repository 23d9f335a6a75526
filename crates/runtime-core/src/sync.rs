//! Small synchronisation pieces shared by tasks, regions and channels.

use std::task::Waker;

use crate::loom::{AtomicUsize, Ordering, UnsafeCell};

/// Takes a value from a per-thread cache (a `thread_local!` vector behind
/// a `RefCell`): `None` when it is empty, and during the thread's
/// teardown or from inside another use of it (re-entered from a drop),
/// when the cache is simply not used.
#[cfg(not(loom))]
pub(crate) fn cache_take<T: 'static>(
    cache: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
) -> Option<T> {
    cache
        .try_with(|c| c.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
}

/// Keeps `v` in a per-thread cache while it holds fewer than `max`; else
/// (or during the thread's teardown, or re-entered) `v` is dropped here,
/// outside the cache's borrow.
#[cfg(not(loom))]
pub(crate) fn cache_keep<T: 'static>(
    cache: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    v: T,
    max: usize,
) {
    let mut v = Some(v);
    let _ = cache.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut()
            && c.len() < max
            && let Some(v) = v.take()
        {
            c.push(v);
        }
    });
    drop(v);
}

/// A waker's identity: its data and vtable pointers, what
/// `Waker::will_wake` compares, kept without a reference count. Equal
/// identities are the same waker only while something keeps that waker
/// alive (a clone stored elsewhere: a timer's wheel entry, a region's
/// node); each user says what does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct WakerId {
    data: usize,
    vtable: usize,
}

impl WakerId {
    /// `w`'s identity.
    pub(crate) fn of(w: &Waker) -> Self {
        WakerId {
            data: w.data() as usize,
            vtable: std::ptr::from_ref(w.vtable()) as usize,
        }
    }
}

/// A slot holding one waker, registered by one task and woken by any
/// number of threads, without a lock (the `AtomicWaker` of the futures
/// ecosystem, written for this crate's loom shim). Used by join handles,
/// regions' closers, the blocking pool and the channels' receivers.
///
/// The protocol that makes it lose no wake-up: the notifier first changes
/// the state it notifies about, then calls [`wake`](Self::wake); the waiter
/// first calls [`register`](Self::register), then checks that state. Both
/// `register` and `wake` are read-modify-writes on `state` (acquire and
/// release), so whichever comes second in `state`'s modification order
/// either sees the other's waker (and wakes it) or synchronizes with the
/// other (and sees its change).
pub(crate) struct WakerSlot {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

/// Leaves REGISTERING if a `register` unwinds (a waker whose `clone`
/// panics), waking the waker a `take` left to it meanwhile (its panic
/// caught: this runs during an unwind).
struct LeaveOnUnwind<'a>(&'a WakerSlot);

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        if let Some(waker) = self.0.leave_registering() {
            crate::outcome::wake_caught_here(waker);
        }
    }
}

/// Nobody is using the waker cell.
const WAITING: usize = 0;
/// `register` owns the waker cell.
const REGISTERING: usize = 0b01;
/// `take` owns the waker cell (or, with `REGISTERING`, has asked the
/// registering thread to wake the waker it is storing).
const WAKING: usize = 0b10;

// SAFETY: the waker cell is only accessed by the thread that moved `state`
// from WAITING to REGISTERING or WAKING (a lock acquired by an atomic
// read-modify-write, released by another), so it is never accessed by two
// threads at once; `Waker` is `Send + Sync`.
unsafe impl Send for WakerSlot {}
// SAFETY: as for `Send`: every access to the cell is exclusive.
unsafe impl Sync for WakerSlot {}

impl WakerSlot {
    pub(crate) fn new() -> Self {
        WakerSlot {
            state: AtomicUsize::new(WAITING),
            waker: UnsafeCell::new(None),
        }
    }

    /// Stores `waker` to be woken by the next [`wake`](Self::wake). Only one
    /// thread at a time may register (the channel's single receiver).
    pub(crate) fn register(&self, waker: &Waker) {
        // Acquire: on success we read the cell last written by a `take` or
        // `register` that released `state`; it also makes us synchronize
        // with any notifier whose `take` came before (its change is then
        // visible to the check our caller does next). Acquire on failure:
        // the same, for the `WAKING` case below.
        match self
            .state
            .compare_exchange(WAITING, REGISTERING, Ordering::Acquire, Ordering::Acquire)
            .unwrap_or_else(|actual| actual)
        {
            WAITING => {
                // Belt: nothing below unwinds (the clone is caught), but
                // should anything, the guard still leaves REGISTERING
                // (else every later `take` would leave the wake to a
                // registrant that is gone, and every later `register`
                // would see a concurrent one: wake-ups lost).
                let guard = LeaveOnUnwind(self);
                let mut clone_failed = false;
                let old = self.waker.with_mut(|cell| {
                    // SAFETY: we moved `state` from WAITING to REGISTERING,
                    // which gives this thread exclusive use of the cell
                    // until it leaves REGISTERING.
                    let cell = unsafe { &mut *cell };
                    match cell {
                        Some(current) if current.will_wake(waker) => None,
                        // The clone is user code: a panic is caught and
                        // counted, the stale waker goes (a wake would
                        // reach the wrong poller), and the poller is asked
                        // to poll again, to retry (found by review: the
                        // panic escaped a join handle's poll, ending a
                        // race's body before it cancelled its losers).
                        _ => match crate::outcome::catch(|| waker.clone()) {
                            Ok(clone) => cell.replace(clone),
                            Err(_) => {
                                clone_failed = true;
                                cell.take()
                            }
                        },
                    }
                });
                std::mem::forget(guard);
                // User code, each caught and counted (found by review: a
                // panicking `Drop` of the old waker escaped the poll, and
                // skipped the wake below, a wake-up lost). The waker a
                // `take` left to us is woken first, then the old one goes.
                if let Some(waker) = self.leave_registering() {
                    crate::outcome::wake_caught_here(waker);
                }
                crate::outcome::drop_caught_here(old);
                // Out of the cell's hold: the retry's wake may re-enter.
                // (A clone that always fails so makes its poller spin,
                // each failure counted, until what it waits for is ready:
                // a documented limit, as for a region body's waker.)
                if clone_failed {
                    crate::task::count_panic_here();
                    if crate::outcome::wake_by_ref_caught(waker) {
                        crate::task::count_panic_here();
                    }
                }
            }
            WAKING => {
                // A `take` is in progress and may miss this waker: have the
                // caller polled again, as if it had been woken. The spin hint
                // lets that `take` finish first (under loom it is a yield,
                // without which this poll-again loop would never let the
                // waking thread run). The wake is user code: caught.
                if crate::outcome::wake_by_ref_caught(waker) {
                    crate::task::count_panic_here();
                }
                crate::loom::spin_hint();
            }
            _ => {
                // Another `register` at the same time: a misuse (there is
                // one registrant), which we survive by not touching the cell.
                debug_assert!(false, "concurrent WakerSlot::register");
            }
        }
    }

    /// Ends a `register`'s hold on the cell: back to WAITING, or, if a
    /// `take` set WAKING meanwhile (and so left the waker to us), the
    /// stored waker taken out, for the caller to wake.
    fn leave_registering(&self) -> Option<Waker> {
        // AcqRel on success: release publishes the stored waker to the next
        // `take`. On failure (Acquire) a `take` set WAKING while we held
        // the cell; it left the waker to us.
        match self
            .state
            .compare_exchange(REGISTERING, WAITING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => None,
            Err(actual) => {
                debug_assert_eq!(actual, REGISTERING | WAKING);
                let waker = self.waker.with_mut(|cell| {
                    // SAFETY: still ours: only we leave REGISTERING, and the
                    // `take` that set WAKING saw REGISTERING and so did not
                    // touch the cell.
                    unsafe { (*cell).take() }
                });
                // AcqRel: release hands the (now empty) cell back; acquire
                // synchronizes with the `take` that set WAKING, so its
                // change is visible to our caller.
                self.state.swap(WAITING, Ordering::AcqRel);
                waker
            }
        }
    }

    /// Takes the registered waker, if any, so that the caller can wake it.
    pub(crate) fn take(&self) -> Option<Waker> {
        // AcqRel: release so that a `register` that reads this state (or a
        // later one in its release sequence) sees the caller's change;
        // acquire so that we read the waker that the last `register`
        // released.
        match self.state.fetch_or(WAKING, Ordering::AcqRel) {
            WAITING => {
                let waker = self.waker.with_mut(|cell| {
                    // SAFETY: we moved `state` from WAITING to WAKING, which
                    // gives this thread exclusive use of the cell until it
                    // clears WAKING.
                    unsafe { (*cell).take() }
                });
                // Release: hands the cell back to the next `register`.
                self.state.fetch_and(!WAKING, Ordering::Release);
                waker
            }
            // REGISTERING: the registering thread will see WAKING and wake
            // its waker itself. WAKING: another `take` holds the cell and
            // will wake the waker; our change is published to that task by
            // our release, which heads a release sequence the other
            // thread's `fetch_and` continues.
            _ => None,
        }
    }

    /// Wakes the registered waker, if any. A waker is user code (whoever
    /// polled the future chose it): a panic in it is caught, and `true`
    /// says so (for the caller to count), so that it never unwinds through
    /// the notifier's bookkeeping.
    pub(crate) fn wake(&self) -> bool {
        match self.take() {
            Some(waker) => crate::outcome::wake_caught(waker),
            None => false,
        }
    }

    /// [`wake`](Self::wake), for a caller with no scheduler at hand (a
    /// channel): a panic is counted where
    /// [`wake_caught_here`](crate::outcome::wake_caught_here) counts it.
    pub(crate) fn wake_here(&self) {
        if self.wake() {
            crate::task::count_panic_here();
        }
    }
}

impl std::fmt::Debug for WakerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakerSlot").finish_non_exhaustive()
    }
}

/// A mutex made by its first user, a null pointer until then: for locked
/// state that most owners never touch (a task's list of open regions),
/// where an empty `Mutex<Vec<_>>` would cost every owner's drop its drop
/// glue and 32 bytes. Freed with its owner.
pub(crate) struct LazyMutex<T: Default> {
    ptr: crate::loom::AtomicPtr<crate::loom::Mutex<T>>,
}

impl<T: Default> LazyMutex<T> {
    pub(crate) fn new() -> Self {
        LazyMutex {
            ptr: crate::loom::AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The mutex, if anyone has made it.
    #[inline]
    pub(crate) fn get_if_made(&self) -> Option<&crate::loom::Mutex<T>> {
        // Acquire: pairs with the installing compare-and-swap's Release in
        // `get`: the mutex's initialisation is visible before its use.
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-null pointer came from `Box::into_raw` in `get` and
        // is freed only by `drop` (`&mut self`); `&self` keeps it alive.
        unsafe { p.as_ref() }
    }

    /// The mutex, made now if nobody has yet.
    pub(crate) fn get(&self) -> &crate::loom::Mutex<T> {
        if let Some(m) = self.get_if_made() {
            return m;
        }
        let fresh = Box::into_raw(Box::new(crate::loom::Mutex::new(T::default())));
        // AcqRel on success (Release: publishes the initialised mutex to
        // `get_if_made`'s Acquire); Acquire on failure: see the winner's.
        match self.ptr.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: installed: owned until `drop`, as in `get_if_made`.
            Ok(_) => unsafe { &*fresh },
            Err(winner) => {
                // SAFETY: `fresh` lost the race and was never published:
                // ours to free. `winner` is the installed box, as above.
                unsafe {
                    drop(Box::from_raw(fresh));
                    &*winner
                }
            }
        }
    }
}

impl<T: Default> Drop for LazyMutex<T> {
    #[inline]
    fn drop(&mut self) {
        // Relaxed: `&mut self`: nothing else can touch it now.
        let p = self.ptr.load(Ordering::Relaxed);
        if !p.is_null() {
            // SAFETY: `p` came from `Box::into_raw` in `get` and was
            // installed once; this frees it, once.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}
