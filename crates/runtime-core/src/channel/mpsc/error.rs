//! The errors of the mpsc channel.

use std::fmt;

#[cfg(doc)]
use super::{MAX_CAPACITY, Permit, Receiver, Sender, channel};
use crate::cancel::CancelReason;

/// The capacity given to [`channel`] is not allowed.
///
/// ```
/// use runtime_core::channel::mpsc::{self, CapacityError};
/// assert_eq!(mpsc::channel::<u8>(0).err(), Some(CapacityError::Zero));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// A channel needs room for at least one value.
    #[error("channel capacity must be at least 1")]
    Zero,
    /// The capacity is more than the channel can count.
    #[error("channel capacity {requested} exceeds the maximum of {max}")]
    TooLarge {
        /// The capacity asked for.
        requested: usize,
        /// [`MAX_CAPACITY`].
        max: usize,
    },
    /// The queue, allocated up front, would not fit in memory (the
    /// capacity times the size of a slot is more than can be allocated).
    #[error("channel capacity {requested} needs {bytes} bytes up front, which cannot be allocated")]
    CannotAllocate {
        /// The capacity asked for.
        requested: usize,
        /// The bytes its queue needs (saturated at `usize::MAX`).
        bytes: usize,
    },
}

/// Why a waiting send or reservation failed. Carries the value that was
/// not sent (`()` for a reservation), so that nothing is lost.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::channel::mpsc::{self, SendError};
/// let out = rt.block_on(|cx| async move {
///     let (tx, rx) = mpsc::channel::<String>(1).unwrap();
///     drop(rx);
///     // The value comes back with the error: nothing is lost.
///     Ok::<_, ()>(match tx.send(&cx, "lost?".to_string()).await {
///         Err(SendError::Closed(v)) => Some(v),
///         _ => None,
///     })
/// });
/// assert_eq!(out.ok().flatten().as_deref(), Some("lost?"));
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError<T> {
    /// The receiver closed the channel or was dropped.
    #[error("channel closed")]
    Closed(T),
    /// The sending task's cancellation was requested while it waited for a
    /// slot.
    #[error("send cancelled: {0}")]
    Cancelled(CancelReason, T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// use runtime_core::channel::mpsc::SendError;
    /// assert_eq!(SendError::Closed(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(value) | SendError::Cancelled(_, value) => value,
        }
    }

    /// The cancel reason, if it was cancelled.
    ///
    /// ```
    /// use runtime_core::{CancelReason, channel::mpsc::SendError};
    /// let e = SendError::Cancelled(CancelReason::user("stop"), 7);
    /// assert_eq!(e.cancel_reason().and_then(|r| r.message()), Some("stop"));
    /// ```
    pub fn cancel_reason(&self) -> Option<&CancelReason> {
        match self {
            SendError::Closed(_) => None,
            SendError::Cancelled(reason, _) => Some(reason),
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Cancelled(reason, _) => f
                .debug_tuple("Cancelled")
                .field(reason)
                .finish_non_exhaustive(),
        }
    }
}

/// Why [`Sender::try_reserve`] or [`Sender::try_send`] failed. Carries the
/// value that was not sent (`()` for a reservation).
///
/// ```
/// use runtime_core::channel::mpsc::{self, TrySendError};
/// let (tx, _rx) = mpsc::channel::<u8>(1).unwrap();
/// tx.try_send(1).unwrap();
/// assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    /// Every slot is taken (or other senders are already waiting for one).
    #[error("channel full")]
    Full(T),
    /// The receiver closed the channel or was dropped.
    #[error("channel closed")]
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// use runtime_core::channel::mpsc::TrySendError;
    /// assert_eq!(TrySendError::Full(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value) | TrySendError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// [`Permit::send`] found the receiver dropped; here is the value back.
///
/// ```
/// use runtime_core::channel::mpsc::{self, Closed};
/// let (tx, rx) = mpsc::channel::<u8>(1).unwrap();
/// let permit = tx.try_reserve().unwrap();
/// drop(rx);
/// assert!(matches!(permit.send(9), Err(Closed(9))));
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("receiver dropped")]
pub struct Closed<T>(pub T);

impl<T> Closed<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// use runtime_core::channel::mpsc::Closed;
    /// assert_eq!(Closed(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Closed(..)")
    }
}

/// Why [`Receiver::recv`] returned no value.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::channel::mpsc::{self, RecvError};
/// let out = rt.block_on(|cx| async move {
///     let (tx, mut rx) = mpsc::channel::<u8>(1).unwrap();
///     drop(tx);
///     Ok::<_, ()>(rx.recv(&cx).await)
/// });
/// assert_eq!(out.ok(), Some(Err(RecvError::Disconnected)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// No value will ever come: the queue is empty, and every sender and
    /// permit is gone (or the channel was closed and every permit is gone).
    #[error("channel disconnected")]
    Disconnected,
    /// The receiving task's cancellation was requested. Nothing was taken
    /// from the channel.
    #[error("recv cancelled: {0}")]
    Cancelled(CancelReason),
}

/// Why [`Receiver::try_recv`] returned no value.
///
/// ```
/// use runtime_core::channel::mpsc::{self, TryRecvError};
/// let (tx, mut rx) = mpsc::channel::<u8>(1).unwrap();
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No value now; one may come later.
    #[error("channel empty")]
    Empty,
    /// No value will ever come (see [`RecvError::Disconnected`]).
    #[error("channel disconnected")]
    Disconnected,
}
