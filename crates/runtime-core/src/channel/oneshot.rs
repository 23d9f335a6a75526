//! A channel for exactly one value, lock-free.
//!
//! The [`Sender`] is consumed by [`Sender::send`]; if the receiver is gone,
//! the value comes back. Once `send` returns `Ok`, the value belongs to
//! the receiver: a receiver dropped unread drops it, as dropping a
//! received value would, and nothing counts it (no sender is left to
//! tell). Where every message must end delivered, returned or counted,
//! use [`mpsc`](super::mpsc), whose senders count what a dropped receiver
//! left unread ([`undelivered`](super::mpsc::Sender::undelivered)). The [`Receiver`] waits for the value with
//! [`Receiver::recv`] (cancel-safe: a cancelled or dropped wait leaves the
//! value for a later one) or looks for it with [`Receiver::try_recv`].
//!
//! ```
//! use runtime_core::channel::oneshot::{self, TryRecvError};
//!
//! let (tx, mut rx) = oneshot::channel::<String>();
//! assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
//! tx.send("done".to_string()).unwrap();
//! assert_eq!(rx.try_recv().as_deref(), Ok("done"));
//!
//! let (tx, rx) = oneshot::channel::<u8>();
//! drop(rx);
//! assert!(tx.is_closed());
//! assert_eq!(tx.send(3), Err(3));          // the value comes back
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
// `Arc` is always `std`'s, by the crate's rule (see `crate::loom`): loom
// checks the state machine inside it.
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::cancel::CancelReason;
use crate::cx::Cx;
use crate::cx::CxCore;
use crate::loom::{AtomicUsize, Ordering, UnsafeCell};
use crate::sync::WakerSlot;
use runtime_cap::CapSet;

/// The value is in the cell (set once, by `Sender::send`).
const SENT: usize = 0b001;
/// The sender was dropped without sending.
const TX_GONE: usize = 0b010;
/// The receiver was dropped.
const RX_GONE: usize = 0b100;

/// Creates a one-value channel.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::channel::oneshot;
/// let out = rt.block_on(|cx| async move {
///     let (tx, mut rx) = oneshot::channel::<u32>();
///     cx.spawn(move |_| async move { tx.send(42).ok() });
///     Ok::<_, ()>(rx.recv(&cx).await.ok())
/// });
/// assert_eq!(out.ok(), Some(Some(42)));
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: AtomicUsize::new(0),
        value: UnsafeCell::new(None),
        rx_waker: WakerSlot::new(),
    });
    let tx = Sender {
        inner: Some(Arc::clone(&inner)),
    };
    let rx = Receiver { inner, done: false };
    (tx, rx)
}

/// Why [`Receiver::recv`] returned no value.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::channel::oneshot::{self, RecvError};
/// let out = rt.block_on(|cx| async move {
///     let (tx, mut rx) = oneshot::channel::<u8>();
///     drop(tx);
///     Ok::<_, ()>(rx.recv(&cx).await)
/// });
/// assert_eq!(out.ok(), Some(Err(RecvError::Closed)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The sender was dropped without sending (or the value was already
    /// received).
    #[error("oneshot sender dropped without sending")]
    Closed,
    /// The receiving task's cancellation was requested. The value, if it
    /// comes, stays receivable.
    #[error("recv cancelled: {0}")]
    Cancelled(CancelReason),
}

/// Why [`Receiver::try_recv`] returned no value.
///
/// ```
/// use runtime_core::channel::oneshot::{self, TryRecvError};
/// let (tx, mut rx) = oneshot::channel::<u8>();
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Not sent yet.
    #[error("oneshot value not sent yet")]
    Empty,
    /// The sender was dropped without sending (or the value was already
    /// received).
    #[error("oneshot sender dropped without sending")]
    Closed,
}

/// The state both halves share.
///
/// Ownership of the value cell: the sender writes it before setting `SENT`
/// and touches it again only if its setting of `SENT` found `RX_GONE`
/// (the receiver is then gone and never read it). The receiver reads it
/// only after seeing `SENT`: to take the value, or, when it is dropped
/// with the value unread (its `RX_GONE` found `SENT`), to drop the value
/// there, its `Drop` caught. So the last `Arc` finds the cell empty (its
/// drop of the cell is a belt).
struct Inner<T> {
    state: AtomicUsize,
    value: UnsafeCell<Option<T>>,
    rx_waker: WakerSlot,
}

// SAFETY: the value is moved from the sending thread to the receiving one
// (needs `T: Send`, not `Sync`: it is never shared); the cell is never
// accessed by two threads at once (see `Inner`'s docs).
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as for `Send`: `&Inner` gives no shared access to a `T`, only the
// handover described on `Inner`.
unsafe impl<T: Send> Sync for Inner<T> {}

/// The sending half: [`send`](Self::send) consumes it. Dropping it unused
/// makes the receiver see `Closed`.
///
/// ```
/// use runtime_core::channel::oneshot;
/// let (tx, mut rx) = oneshot::channel::<u8>();
/// tx.send(1).unwrap();
/// assert_eq!(rx.try_recv(), Ok(1));
/// ```
pub struct Sender<T> {
    /// `None` once sent.
    inner: Option<Arc<Inner<T>>>,
}

impl<T> Sender<T> {
    /// Sends `value`. If the receiver is gone, returns it: `Err(value)`.
    /// Never waits.
    ///
    /// ```
    /// use runtime_core::channel::oneshot;
    /// let (tx, rx) = oneshot::channel::<u32>();
    /// drop(rx);
    /// assert_eq!(tx.send(1), Err(1)); // nobody to receive it: the value comes back
    /// ```
    pub fn send(mut self, value: T) -> Result<(), T> {
        let Some(inner) = self.inner.take() else {
            return Err(value); // unreachable: `send` consumes the sender
        };
        // Relaxed: only a shortcut; the read-modify-write below decides.
        if inner.state.load(Ordering::Relaxed) & RX_GONE != 0 {
            return Err(value);
        }
        inner.value.with_mut(|cell| {
            // SAFETY: until we set SENT the receiver does not read the cell,
            // and nobody else writes it: we have it to ourselves.
            unsafe { *cell = Some(value) };
        });
        // Release: publishes the value to the receiver's acquire load that
        // sees SENT. If RX_GONE was already set, the receiver never read
        // the cell and never will: we take the value back.
        let prev = inner.state.fetch_or(SENT, Ordering::Release);
        if prev & RX_GONE != 0 {
            let value = inner.value.with_mut(|cell| {
                // SAFETY: the receiver set RX_GONE before our SENT, so it was
                // dropped without reading the cell; we are alone with it.
                unsafe { (*cell).take() }
            });
            return match value {
                Some(value) => Err(value),
                None => unreachable!("oneshot value vanished"),
            };
        }
        inner.rx_waker.wake_here();
        Ok(())
    }

    /// Whether the receiver has been dropped (a send would fail).
    ///
    /// ```
    /// use runtime_core::channel::oneshot;
    /// let (tx, rx) = oneshot::channel::<u32>();
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        match &self.inner {
            // Relaxed: a snapshot; RX_GONE carries no data.
            Some(inner) => inner.state.load(Ordering::Relaxed) & RX_GONE != 0,
            None => true,
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            // Release is not needed for data (none is sent); the waker's own
            // read-modify-writes order this before the receiver's re-check.
            inner.state.fetch_or(TX_GONE, Ordering::Relaxed);
            inner.rx_waker.wake_here();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// The receiving half.
///
/// ```
/// use runtime_core::channel::oneshot::{self, TryRecvError};
/// let (tx, mut rx) = oneshot::channel::<u8>();
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
/// ```
pub struct Receiver<T> {
    inner: Arc<Inner<T>>,
    /// The value was received.
    done: bool,
}

impl<T> Receiver<T> {
    /// Waits for the value. Resolves to [`RecvError::Closed`] if the sender
    /// is dropped without sending, and to [`RecvError::Cancelled`] if
    /// `cx`'s task is asked to cancel (checked at every poll, before looking
    /// for the value). Cancel-safe: a cancelled or dropped `Recv` leaves the
    /// value to a later `recv` or `try_recv`.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::channel::oneshot;
    /// use runtime_core::channel::oneshot::RecvError;
    /// let out = rt.block_on(|cx| async move {
    ///     let (tx, mut rx) = oneshot::channel::<u32>();
    ///     drop(tx); // dropped without sending
    ///     Ok::<_, ()>(rx.recv(&cx).await)
    /// });
    /// assert_eq!(out.ok(), Some(Err(RecvError::Closed)));
    /// ```
    pub fn recv<'a, C: CapSet>(&'a mut self, cx: &'a Cx<C>) -> Recv<'a, T> {
        let cx = cx.core();
        Recv { receiver: self, cx }
    }

    /// Takes the value if it has been sent.
    ///
    /// ```
    /// use runtime_core::channel::oneshot::{self, TryRecvError};
    /// let (tx, mut rx) = oneshot::channel::<u32>();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(3).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(3));
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        if self.done {
            return Err(TryRecvError::Closed);
        }
        // Acquire: pairs with the sender's release when it set SENT, so its
        // write of the value happened before our read.
        let state = self.inner.state.load(Ordering::Acquire);
        if state & SENT != 0 {
            let value = self.inner.value.with_mut(|cell| {
                // SAFETY: SENT is set and we are alive (so the sender found
                // no RX_GONE and is done with the cell); the sender's write
                // happened before (acquire above). `&mut self` makes us the
                // only reader.
                unsafe { (*cell).take() }
            });
            self.done = true;
            return value.ok_or(TryRecvError::Closed);
        }
        if state & TX_GONE != 0 {
            self.done = true;
            return Err(TryRecvError::Closed);
        }
        Err(TryRecvError::Empty)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // The order of this and the sender's `fetch_or` in `state` decides
        // who owns an unreceived value. Acquire: a value sent before (SENT
        // seen) is ours, its write visible (the sender's Release), and
        // dropped here, on the receiver's side, its `Drop` (user code)
        // caught and counted. Not left to the last `Arc` (found by review:
        // a panicking `Drop` then aborted the process when the receiving
        // task was unwinding, and when the receiver went during a `send`
        // that then returned `Ok`, the value was dropped inside that
        // `send`, on the sender's thread, its panic escaping there).
        let prev = self.inner.state.fetch_or(RX_GONE, Ordering::Acquire);
        if prev & SENT != 0 && !self.done {
            let value = self.inner.value.with_mut(|cell| {
                // SAFETY: SENT came before our RX_GONE, so the sender found
                // no RX_GONE, is done with the cell and never touches it
                // again; its write happened before (Acquire above).
                unsafe { (*cell).take() }
            });
            crate::outcome::drop_caught_here(value);
        }
        // The waker a `recv` left registered goes with us: a sender that
        // outlives us must not keep it (it may hold the whole awaiting
        // task's allocation; found by review). A sender's `wake` racing
        // this takes it or finds it gone, either is fine. The waker is
        // user code: its `Drop` is caught, and a panic counted.
        crate::outcome::drop_caught_here(self.inner.rx_waker.take());
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The future of [`Receiver::recv`].
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::channel::oneshot;
/// let out = rt.block_on(|cx| async move {
///     let (tx, mut rx) = oneshot::channel::<&str>();
///     tx.send("hello").unwrap();
///     let recv: oneshot::Recv<'_, &str> = rx.recv(&cx);
///     Ok::<_, ()>(recv.await.ok())
/// });
/// assert_eq!(out.ok(), Some(Some("hello")));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T> {
    receiver: &'a mut Receiver<T>,
    cx: &'a CxCore,
}

impl<T> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Spends a unit of the turn's budget only when ready.
        crate::budget::coop::budgeted(task, |task| this.poll_recv(task))
    }
}

impl<T> Recv<'_, T> {
    fn poll_recv(&mut self, task: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        let this = self;
        if let Some(reason) = this.cx.cancel_requested() {
            return Poll::Ready(Err(RecvError::Cancelled(reason)));
        }
        match this.receiver.try_recv() {
            Ok(value) => return Poll::Ready(Ok(value)),
            Err(TryRecvError::Closed) => return Poll::Ready(Err(RecvError::Closed)),
            Err(TryRecvError::Empty) => {}
        }
        // Register, then look again (see `WakerSlot`): a send or a drop
        // after our first look is seen now or wakes us.
        this.receiver.inner.rx_waker.register(task.waker());
        match this.receiver.try_recv() {
            Ok(value) => Poll::Ready(Ok(value)),
            Err(TryRecvError::Closed) => Poll::Ready(Err(RecvError::Closed)),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }
}

impl<T> fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::thread;

    use crate::channel::block_on;

    #[test]
    fn handles_are_send_and_sync() {
        fn send_sync<X: Send + Sync>() {}
        send_sync::<Sender<String>>();
        send_sync::<Receiver<String>>();
        send_sync::<Recv<'static, String>>();
    }

    #[test]
    fn send_then_recv() {
        let cx = Cx::detached_for_tests();
        let (tx, mut rx) = channel();
        assert!(!tx.is_closed());
        tx.send(5u32).unwrap();
        assert_eq!(block_on(rx.recv(&cx)), Ok(5));
        // Spent: the value is not received twice.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
        assert_eq!(block_on(rx.recv(&cx)), Err(RecvError::Closed));
    }

    #[test]
    fn recv_waits_for_send_on_another_thread() {
        let cx = Cx::detached_for_tests();
        for _ in 0..200 {
            let (tx, mut rx) = channel::<String>();
            let t = thread::spawn(move || tx.send("hi".to_string()).unwrap());
            assert_eq!(block_on(rx.recv(&cx)).as_deref(), Ok("hi"));
            t.join().unwrap();
        }
    }

    #[test]
    fn sender_dropped_without_sending_is_closed() {
        let cx = Cx::detached_for_tests();
        let (tx, mut rx) = channel::<u32>();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let t = thread::spawn(move || drop(tx));
        assert_eq!(block_on(rx.recv(&cx)), Err(RecvError::Closed));
        t.join().unwrap();
    }

    #[test]
    fn receiver_dropped_returns_value_and_drops_unreceived_once() {
        let (tx, rx) = channel::<u32>();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(3), Err(3));

        struct Counted(Arc<StdAtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let drops = Arc::new(StdAtomicUsize::new(0));
        let (tx, rx) = channel();
        assert!(tx.send(Counted(drops.clone())).is_ok());
        assert_eq!(drops.load(Ordering::Relaxed), 0);
        drop(rx);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
    }
}
