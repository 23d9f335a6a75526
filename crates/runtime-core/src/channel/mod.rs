//! Channels between tasks: a bounded multi-producer single-consumer queue
//! ([`mpsc`]) and a single-value rendezvous ([`oneshot`]).
//!
//! Both are built for the two promises this runtime makes: **no silent data
//! loss**, and **cancellation as a protocol**.
//!
//! # The two-phase rule
//!
//! Sending on an [`mpsc`] channel is split in two:
//!
//! 1. **Reserve** a slot: [`mpsc::Sender::reserve`] (waits for capacity) or
//!    [`mpsc::Sender::try_reserve`] (doesn't). This is the only step that
//!    can wait, and the only one cancellation can interrupt. It takes
//!    nothing from the caller: if it is cancelled, or its future is dropped,
//!    the value the caller meant to send is still in the caller's hands.
//! 2. **Commit** the value into the slot: [`mpsc::Permit::send`]. It never
//!    waits and never fails for lack of space (the slot is already the
//!    permit's); it fails only when the receiver is gone, and then it hands
//!    the value back. A permit dropped without sending returns its slot and
//!    wakes one waiting sender.
//!
//! [`mpsc::Sender::send`] does both steps; when the reserve step fails
//! (closed or cancelled) the value comes back inside the [`mpsc::SendError`].
//!
//! # Cancel-safety
//!
//! Every future here is cancel-safe in both senses:
//!
//! * **Dropping it loses nothing.** A dropped `Reserve` leaves no stale
//!   waiter behind: a slot that was being handed to it goes on to the next
//!   waiting sender. A dropped `Recv` leaves the next value in the channel.
//! * **A cancel request ends the wait.** While pending, each future checks
//!   its task's context at every poll (level-triggered, before trying to
//!   make progress) and, once cancellation is requested, resolves to a
//!   `Cancelled(reason)` error instead of waiting on. A cancelled `recv`
//!   leaves the value queued; a cancelled `send` returns the value. The
//!   synchronous calls (`try_reserve`, `try_recv`, `Permit::send`) never
//!   wait, so they do not check for cancellation: code that drains a channel
//!   during cleanup uses them.
//!
//! # Accounting
//!
//! A value committed to an [`mpsc`] channel is either received, or dropped
//! with the receiver and counted in [`mpsc::Sender::undelivered`]; a value
//! that could not be committed is returned to its sender. Never neither.
//!
//! # Example
//!
//! ```
//! use runtime_core::channel::{mpsc, oneshot};
//!
//! let (tx, mut rx) = mpsc::channel::<&str>(1).unwrap();
//! let permit = tx.try_reserve().unwrap();          // phase 1: a slot
//! assert!(tx.try_reserve().is_err());              // capacity 1: full
//! permit.send("hello").unwrap();                   // phase 2: commit
//! assert_eq!(rx.try_recv(), Ok("hello"));
//!
//! let (done_tx, mut done_rx) = oneshot::channel::<u32>();
//! done_tx.send(7).unwrap();
//! assert_eq!(done_rx.try_recv(), Ok(7));
//! ```

pub mod mpsc;
pub mod oneshot;

use std::task::Waker;

use crate::loom::{AtomicUsize, Ordering, UnsafeCell};

/// A slot holding one waker, registered by one task and woken by any
/// number of threads, without a lock (the `AtomicWaker` of the futures
/// ecosystem, written for this crate's loom shim).
///
/// The protocol that makes it lose no wake-up: the notifier first changes
/// the state it notifies about, then calls [`wake`](Self::wake); the waiter
/// first calls [`register`](Self::register), then checks that state. Both
/// `register` and `wake` are read-modify-writes on `state` (acquire and
/// release), so whichever comes second in `state`'s modification order
/// either sees the other's waker (and wakes it) or synchronizes with the
/// other (and sees its change).
pub(crate) struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
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
unsafe impl Send for AtomicWaker {}
// SAFETY: as for `Send`: every access to the cell is exclusive.
unsafe impl Sync for AtomicWaker {}

impl AtomicWaker {
    pub(crate) fn new() -> Self {
        AtomicWaker {
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
                let old = self.waker.with_mut(|cell| {
                    // SAFETY: we moved `state` from WAITING to REGISTERING,
                    // which gives this thread exclusive use of the cell
                    // until it leaves REGISTERING.
                    let cell = unsafe { &mut *cell };
                    match cell {
                        Some(current) if current.will_wake(waker) => None,
                        _ => cell.replace(waker.clone()),
                    }
                });
                // AcqRel on success: release publishes the stored waker to
                // the next `take`. On failure (Acquire) a `take` set WAKING
                // while we held the cell; it left the waker to us.
                match self.state.compare_exchange(
                    REGISTERING,
                    WAITING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => drop(old),
                    Err(actual) => {
                        debug_assert_eq!(actual, REGISTERING | WAKING);
                        let waker = self.waker.with_mut(|cell| {
                            // SAFETY: still ours: only we leave REGISTERING,
                            // and the `take` that set WAKING saw REGISTERING
                            // and so did not touch the cell.
                            unsafe { (*cell).take() }
                        });
                        // AcqRel: release hands the (now empty) cell back;
                        // acquire synchronizes with the `take` that set
                        // WAKING, so its change is visible to our caller.
                        self.state.swap(WAITING, Ordering::AcqRel);
                        drop(old);
                        if let Some(waker) = waker {
                            waker.wake();
                        }
                    }
                }
            }
            WAKING => {
                // A `take` is in progress and may miss this waker: have the
                // caller polled again, as if it had been woken. The spin hint
                // lets that `take` finish first (under loom it is a yield,
                // without which this poll-again loop would never let the
                // waking thread run).
                waker.wake_by_ref();
                crate::loom::spin_hint();
            }
            _ => {
                // Another `register` at the same time: a misuse (there is
                // one registrant), which we survive by not touching the cell.
                debug_assert!(false, "concurrent AtomicWaker::register");
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

    /// Wakes the registered waker, if any.
    pub(crate) fn wake(&self) {
        if let Some(waker) = self.take() {
            waker.wake();
        }
    }
}

impl std::fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicWaker").finish_non_exhaustive()
    }
}
