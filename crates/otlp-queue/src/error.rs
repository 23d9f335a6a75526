//! Errors. Every error that carries a value hands it back: nothing pushed is
//! ever lost inside an error.

use core::fmt;

/// Why [`Producer::try_push`](crate::Producer::try_push) did not take a
/// value. The value is handed back either way.
#[derive(thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PushError<T> {
    /// This producer's lane is full. Retry later, use
    /// [`push_timeout`](crate::Producer::push_timeout) to wait, or
    /// [`force_push`](crate::Producer::force_push) to evict the oldest item.
    #[error("queue lane is full")]
    Full(T),
    /// The consumer is gone; no push can ever succeed again.
    #[error("queue is closed: the consumer was dropped")]
    Closed(T),
}

/// Why [`Producer::push_timeout`](crate::Producer::push_timeout) did not take
/// a value. The value is handed back either way.
#[derive(thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PushTimeoutError<T> {
    /// The lane stayed full until the timeout passed.
    #[error("queue lane stayed full until the timeout")]
    Timeout(T),
    /// The consumer is gone; no push can ever succeed again.
    #[error("queue is closed: the consumer was dropped")]
    Closed(T),
}

/// [`Producer::force_push`](crate::Producer::force_push) failed because the
/// consumer is gone. The value is handed back.
#[derive(thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("queue is closed: the consumer was dropped")]
pub struct ClosedError<T>(pub T);

/// Why [`Consumer::try_pop`](crate::Consumer::try_pop) returned no item.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryPopError {
    /// Nothing is ready now, but a producer may still push.
    #[error("queue is empty")]
    Empty,
    /// Every producer is gone and every item has been taken.
    #[error("queue is closed: every producer was dropped and the queue is drained")]
    Closed,
}

/// Why [`try_bounded`](crate::try_bounded) refused a capacity.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityError {
    /// A lane needs at least one slot. A zero-capacity rendezvous queue is
    /// not offered: a producer would have to wait for the consumer on every
    /// push, which is exactly what this crate exists to avoid.
    #[error("queue capacity must be at least 1")]
    Zero,
    /// The capacity cannot be represented: positions would overflow, or a
    /// lane of that many items of this type would exceed the largest
    /// allocation possible (`isize::MAX` bytes).
    #[error("queue capacity {requested} is larger than the maximum {max} for this item type")]
    TooLarge {
        /// What was asked for.
        requested: usize,
        /// The largest capacity this platform supports for this item type.
        max: usize,
    },
    /// The allocator could not provide a lane of this capacity. Nothing was
    /// allocated; ask for less.
    #[error("cannot allocate a queue lane of {requested} items ({bytes} bytes)")]
    OutOfMemory {
        /// What was asked for.
        requested: usize,
        /// The bytes the lane's ring needs.
        bytes: usize,
    },
}

macro_rules! value_error_impls {
    ($ty:ident { $($variant:ident),+ }) => {
        impl<T> $ty<T> {
            /// Takes back the value that was not pushed.
            pub fn into_inner(self) -> T {
                match self {
                    $(Self::$variant(v) => v,)+
                }
            }
        }

        // Hand-written so that `T: Debug` is not required (the value may be a
        // large span); the value itself is elided.
        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$variant(_) => f.write_str(concat!(stringify!($variant), "(..)")),)+
                }
            }
        }
    };
}

value_error_impls!(PushError { Full, Closed });
value_error_impls!(PushTimeoutError { Timeout, Closed });

impl<T> PushError<T> {
    /// True for [`PushError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// True for [`PushError::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> ClosedError<T> {
    /// Takes back the value that was not pushed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for ClosedError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClosedError(..)")
    }
}
