//! A bounded multi-producer single-consumer channel with two-phase sends.
//!
//! A [`Sender`] first reserves one of the channel's `capacity` slots
//! ([`Sender::reserve`], [`Sender::try_reserve`]), getting a [`Permit`], and
//! then commits a value into it ([`Permit::send`]), which cannot fail for
//! lack of space. See the [module docs](super) for why.
//!
//! # How it works
//!
//! * A word of atomic state (`sem`) counts the free slots and holds two
//!   flags: `CLOSED` and `WAITERS` (some sender is queued for a slot).
//!   Reserving a slot is one compare-and-swap on it, releasing one is one
//!   `fetch_add`.
//! * Committed values go into a lock-free bounded queue as big as the
//!   capacity; it can never overflow, since every value in it holds a slot
//!   until the receiver has popped it.
//! * The receiver's waker sits in a lock-free `WakerSlot`.
//! * Senders waiting for a slot queue up, in order, in a mutex-protected
//!   list. A released slot that finds `WAITERS` set is handed straight to
//!   the first of them under that lock, and new reservations do not jump
//!   the queue while it is non-empty. Only this slow path locks.
//!
//! ```
//! use runtime_core::channel::mpsc::{self, TryRecvError, TrySendError};
//!
//! let (tx, mut rx) = mpsc::channel::<u32>(2).unwrap();
//! let a = tx.try_reserve().unwrap();
//! let b = tx.try_reserve().unwrap();
//! assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
//! b.send(2).unwrap();
//! a.send(1).unwrap();                    // order of commit, not of reserve
//! assert_eq!(rx.try_recv(), Ok(2));
//! assert_eq!(rx.try_recv(), Ok(1));
//! assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
//! drop(tx);
//! assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
//! ```
//!
//! The module is three files: `chan.rs`, the channel core (the slot
//! semaphore, the value queue, the waiter list, and the protocol over
//! them); `futures.rs`, the handles and futures a user holds ([`Sender`],
//! [`Reserve`], [`Permit`], [`Receiver`], [`Recv`]); `error.rs`, the
//! errors.

// `Arc` is always `std`'s, by the crate's rule (see `crate::loom`): loom
// checks the state machine inside it.
use std::sync::Arc;

mod chan;
mod error;
mod futures;
#[cfg(all(test, not(loom)))]
mod tests;

use chan::Chan;
pub use chan::MAX_CAPACITY;
pub use error::{CapacityError, Closed, RecvError, SendError, TryRecvError, TrySendError};
pub use futures::{Permit, Receiver, Recv, Reserve, Sender};

/// Creates a bounded channel with room for `capacity` values, in flight
/// (reserved by a [`Permit`]) or queued.
///
/// The queue is allocated up front. Fails if `capacity` is 0 or above
/// [`MAX_CAPACITY`], or if that queue cannot be allocated
/// ([`CapacityError::CannotAllocate`]: a refusal, not an abort of the
/// process).
///
/// ```
/// use runtime_core::channel::mpsc::{self, CapacityError, MAX_CAPACITY};
/// assert!(matches!(
///     mpsc::channel::<u64>(MAX_CAPACITY),
///     Err(CapacityError::CannotAllocate { .. })
/// ));
/// ```
///
/// ```
/// use runtime_core::channel::mpsc::{self, CapacityError};
/// assert_eq!(mpsc::channel::<()>(0).unwrap_err(), CapacityError::Zero);
/// let (tx, _rx) = mpsc::channel::<()>(16).unwrap();
/// assert_eq!(tx.capacity(), 16);
/// ```
pub fn channel<T>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), CapacityError> {
    if capacity == 0 {
        return Err(CapacityError::Zero);
    }
    if capacity > MAX_CAPACITY {
        return Err(CapacityError::TooLarge {
            requested: capacity,
            max: MAX_CAPACITY,
        });
    }
    // A slot holds a value and a stamp (crossbeam's `ArrayQueue`).
    let slot = std::mem::size_of::<(usize, T)>().max(1);
    let cannot = |bytes| CapacityError::CannotAllocate {
        requested: capacity,
        bytes,
    };
    let bytes = capacity.checked_mul(slot).ok_or(cannot(usize::MAX))?;
    if bytes > isize::MAX as usize {
        return Err(cannot(bytes));
    }
    // A large queue is tried first, so that memory that is not there is a
    // refusal here rather than an abort in the allocation below.
    if bytes > 1 << 20 && Vec::<u8>::new().try_reserve_exact(bytes).is_err() {
        return Err(cannot(bytes));
    }
    let chan = Arc::new(Chan::new(capacity));
    Ok((Sender::new(Arc::clone(&chan)), Receiver::new(chan)))
}
