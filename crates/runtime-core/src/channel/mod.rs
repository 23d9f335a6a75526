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
//! **Returned means returned to the sending code, which must take it.** A
//! cancelled [`mpsc::Sender::send`] hands the value back inside
//! [`mpsc::SendError::Cancelled`]. If the body of a task or region (a
//! [`timeout`](crate::Cx::timeout)'s, a [`scope`](crate::Cx::scope)'s...)
//! passes that error on with `?`, it ends
//! [`Outcome::Cancelled`](crate::Outcome::Cancelled), which carries only the
//! reason: the runtime drops the body's `Err`, and the value in it, and
//! nothing counts it (found by review; the error's shape, a plain enum
//! that callers match and move out of, leaves the channel no way to see
//! it dropped). Where the value matters, take it out of the error inside
//! the body:
//!
//! ```
//! # use runtime_core::{Runtime, caps::ambient_authority};
//! # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
//! use runtime_core::channel::mpsc::{self, SendError};
//! use runtime_core::time::Duration;
//! let out = rt.block_on(|cx| async move {
//!     let (tx, mut rx) = mpsc::channel::<String>(1).unwrap();
//!     tx.try_send("first".to_string()).unwrap(); // full: the next send waits
//!     let unsent = cx
//!         .timeout(Duration::from_millis(5), move |cx| async move {
//!             match tx.send(&cx, "second".to_string()).await {
//!                 Ok(()) => Ok(None),
//!                 // Not `?`: the timeout would drop the value with the error.
//!                 Err(SendError::Cancelled(_, v)) => Ok(Some(v)),
//!                 Err(SendError::Closed(v)) => Err(v),
//!             }
//!         })
//!         .await;
//!     Ok::<_, ()>((rx.try_recv().ok(), unsent.ok().flatten()))
//! });
//! let (received, unsent) = out.ok().unwrap();
//! assert_eq!(received.as_deref(), Some("first"));
//! assert_eq!(unsent.as_deref(), Some("second")); // back in the caller's hands
//! ```
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

/// Runs a future to completion on this thread, parking while pending: the
/// channels' unit tests drive their futures with it.
#[cfg(all(test, not(loom)))]
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut task = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut task) {
            return out;
        }
        std::thread::park();
    }
}
