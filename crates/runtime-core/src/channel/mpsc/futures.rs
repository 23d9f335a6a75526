//! The handles and futures of the mpsc channel: [`Sender`] and its
//! [`Reserve`] future and [`Permit`], [`Receiver`] and its [`Recv`]
//! future. Each is a thin wrapper over the channel core (`chan.rs`).

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
// `Arc` is always `std`'s, by the crate's rule (see `crate::loom`): loom
// checks the state machine inside it.
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::cx::Cx;
use crate::cx::CxCore;
use crate::loom::Ordering;
use runtime_cap::CapSet;

use super::chan::*;
use super::error::*;

// ---------------------------------------------------------------------------
// Sender
// ---------------------------------------------------------------------------

/// The sending half. Clone it for more producers.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::channel::mpsc;
/// let out = rt.block_on(|cx| async move {
///     let (tx, mut rx) = mpsc::channel::<u32>(8).unwrap();
///     for i in 0..2 {
///         let tx = tx.clone(); // one clone per producer
///         cx.spawn(move |cx| async move { tx.send(&cx, i).await.is_ok() });
///     }
///     drop(tx);
///     let mut sum = 0;
///     while let Ok(v) = rx.recv(&cx).await {
///         sum += v;
///     }
///     Ok::<_, ()>(sum)
/// });
/// assert_eq!(out.ok(), Some(1));
/// ```
pub struct Sender<T> {
    pub(super) chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    pub(super) fn new(chan: Arc<Chan<T>>) -> Self {
        Sender { chan }
    }

    /// Waits for a free slot and reserves it. Resolves to a [`Permit`] to
    /// commit a value with, or to [`SendError::Closed`] if the receiver
    /// closed the channel or was dropped, or to [`SendError::Cancelled`] if
    /// `cx`'s task is asked to cancel while waiting (checked at every poll,
    /// before trying to take a slot).
    ///
    /// Waiting senders are served in order. Cancel-safe: dropping the
    /// future leaves nothing behind (a slot it was being handed goes to the
    /// next waiter).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::channel::mpsc;
    /// let out = rt.block_on(|cx| async move {
    ///     let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
    ///     let permit = tx.reserve(&cx).await.map_err(|_| ())?; // waits for a slot
    ///     permit.send(5).map_err(|_| ())?;                    // cannot fail for space
    ///     Ok::<_, ()>(rx.try_recv().ok())
    /// });
    /// assert_eq!(out.ok(), Some(Some(5)));
    /// ```
    pub fn reserve<'a, C: CapSet>(&'a self, cx: &'a Cx<C>) -> Reserve<'a, T> {
        let cx = cx.core();
        Reserve {
            sender: self,
            cx,
            queued: None,
        }
    }

    /// Reserves a free slot if one is available now. Fails with
    /// [`TrySendError::Full`] when none is (or when other senders are
    /// already waiting for one), and [`TrySendError::Closed`] when the
    /// receiver closed the channel or was dropped. Takes no lock.
    ///
    /// ```
    /// use runtime_core::channel::mpsc::{self, TrySendError};
    /// let (tx, _rx) = mpsc::channel::<u32>(1).unwrap();
    /// let permit = tx.try_reserve().unwrap();
    /// assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
    /// drop(permit); // the slot comes back
    /// assert!(tx.try_reserve().is_ok());
    /// ```
    pub fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        self.chan.try_acquire()?;
        Ok(Permit {
            sender: self,
            token: crate::lab::hooks::permit_opened(),
        })
    }

    /// Reserves a slot ([`reserve`](Self::reserve)) and commits `value`
    /// into it. If the channel is closed or the task cancelled first, the
    /// value comes back in the error.
    ///
    /// Dropping the future before it completes drops `value` with it; to
    /// keep the value in that case, `reserve` first and commit after.
    ///
    /// The value in a [`SendError::Cancelled`] is the caller's to take: a
    /// task or region body that passes the error on with `?` ends
    /// `Cancelled(reason)`, and the runtime drops the error, the value
    /// with it, uncounted (see [the channel docs](crate::channel#accounting),
    /// with an example that keeps it).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::channel::mpsc;
    /// let out = rt.block_on(|cx| async move {
    ///     let (tx, mut rx) = mpsc::channel::<&str>(4).unwrap();
    ///     tx.send(&cx, "hello").await.map_err(|_| ())?;
    ///     Ok::<_, ()>(rx.recv(&cx).await.ok())
    /// });
    /// assert_eq!(out.ok(), Some(Some("hello")));
    /// ```
    pub async fn send<C: CapSet>(&self, cx: &Cx<C>, value: T) -> Result<(), SendError<T>> {
        match self.reserve(cx).await {
            Ok(permit) => permit
                .send(value)
                .map_err(|Closed(value)| SendError::Closed(value)),
            Err(SendError::Closed(())) => Err(SendError::Closed(value)),
            Err(SendError::Cancelled(reason, ())) => Err(SendError::Cancelled(reason, value)),
        }
    }

    /// Sends `value` if a slot is free now; otherwise hands it back.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::channel::mpsc;
    /// use runtime_core::channel::mpsc::TrySendError;
    /// let (tx, _rx) = mpsc::channel::<u32>(1).unwrap();
    /// assert!(tx.try_send(1).is_ok());
    /// assert_eq!(tx.try_send(2).unwrap_err().into_inner(), 2); // full: the value comes back
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.try_reserve() {
            Ok(permit) => permit
                .send(value)
                .map_err(|Closed(value)| TrySendError::Closed(value)),
            Err(TrySendError::Full(())) => Err(TrySendError::Full(value)),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(value)),
        }
    }

    /// Whether the receiver closed the channel or was dropped: new
    /// reservations fail.
    ///
    /// ```
    /// use runtime_core::channel::mpsc;
    /// let (tx, rx) = mpsc::channel::<u32>(1).unwrap();
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        // Relaxed: a snapshot; CLOSED carries no data.
        self.chan.sem.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// The channel's capacity: the most values in flight and queued at once.
    ///
    /// ```
    /// use runtime_core::channel::mpsc;
    /// let (tx, _rx) = mpsc::channel::<u32>(8).unwrap();
    /// assert_eq!(tx.capacity(), 8);
    /// ```
    pub fn capacity(&self) -> usize {
        self.chan.capacity
    }

    /// How many committed values were dropped, unreceived, because the
    /// receiver was dropped. (Values that could not be committed were
    /// returned to their senders instead.)
    ///
    /// ```
    /// use runtime_core::channel::mpsc;
    /// let (tx, rx) = mpsc::channel::<u32>(4).unwrap();
    /// tx.try_send(1).unwrap();
    /// tx.try_send(2).unwrap();
    /// drop(rx); // two committed values never received
    /// assert_eq!(tx.undelivered(), 2);
    /// ```
    pub fn undelivered(&self) -> u64 {
        // Relaxed: a statistic. Readers ordered after the receiver's drop
        // (and after the late commits that drained) see the full count.
        self.chan.undelivered.load(Ordering::Relaxed)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed: a new sender is made from a live one, so the count can't
        // reach zero meanwhile, and nothing is published (as in `Arc`).
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // Release: orders this sender's pushes before the receiver's
        // acquire-load that sees zero (see `Chan::try_recv`).
        if self.chan.senders.fetch_sub(1, Ordering::Release) == 1 {
            self.chan.rx_waker.wake_here();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.chan.capacity)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Reserve
// ---------------------------------------------------------------------------

/// The future of [`Sender::reserve`].
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::channel::mpsc;
/// let out = rt.block_on(|cx| async move {
///     let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
///     let reserve: mpsc::Reserve<'_, u32> = tx.reserve(&cx);
///     let permit = reserve.await.map_err(|_| ())?; // a slot is ours
///     permit.send(5).map_err(|_| ())?; // cannot fail for lack of room
///     Ok::<_, ()>(rx.try_recv().ok())
/// });
/// assert_eq!(out.ok(), Some(Some(5)));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Reserve<'a, T> {
    sender: &'a Sender<T>,
    cx: &'a CxCore,
    /// Our place in the waiter list, once queued.
    queued: Option<u64>,
}

impl<'a, T> Future for Reserve<'a, T> {
    type Output = Result<Permit<'a, T>, SendError<()>>;

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Spends a unit of the turn's budget only when ready.
        crate::budget::coop::budgeted(task, |task| this.poll_reserve(task))
    }
}

impl<'a, T> Reserve<'a, T> {
    fn poll_reserve(
        &mut self,
        task: &mut Context<'_>,
    ) -> Poll<Result<Permit<'a, T>, SendError<()>>> {
        let this = self;
        let chan = &*this.sender.chan;
        if let Some(reason) = this.cx.cancel_requested() {
            if let Some(id) = this.queued.take() {
                chan.cancel_queued(id);
            }
            return Poll::Ready(Err(SendError::Cancelled(reason, ())));
        }
        let outcome = match this.queued {
            None => chan.acquire_or_queue(task.waker()),
            Some(id) => chan.poll_queued(id, task.waker()),
        };
        match outcome {
            Acquire::Acquired(token) => {
                this.queued = None;
                Poll::Ready(Ok(Permit {
                    sender: this.sender,
                    // A handed slot's token was opened at the hand-off.
                    token: token.unwrap_or_else(crate::lab::hooks::permit_opened),
                }))
            }
            Acquire::Closed => {
                this.queued = None;
                Poll::Ready(Err(SendError::Closed(())))
            }
            Acquire::Queued(id) => {
                this.queued = Some(id);
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Reserve<'_, T> {
    fn drop(&mut self) {
        if let Some(id) = self.queued.take() {
            self.sender.chan.cancel_queued(id);
        }
    }
}

impl<T> fmt::Debug for Reserve<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reserve")
            .field("queued", &self.queued.is_some())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Permit
// ---------------------------------------------------------------------------

/// A reserved slot: [`send`](Self::send) commits one value into it.
/// Dropping it unused returns the slot and wakes one waiting sender.
/// Forgetting it (`mem::forget`, or a leaked [`Reserve`] that was handed a
/// slot) keeps the slot for good: the channel is one slot smaller from
/// then on, and a receiver whose senders live on sees `Empty`, never
/// `Disconnected`, after [`Receiver::close`] (the lab reports a forgotten
/// permit: its reservation oracle).
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::channel::mpsc;
/// let out = rt.block_on(|cx| async move {
///     let (tx, mut rx) = mpsc::channel::<String>(1).unwrap();
///     let permit = tx.reserve(&cx).await.map_err(|_| ())?;
///     // Build the value only once a slot is certain: a cancelled wait
///     // above loses nothing, since nothing was made yet.
///     permit.send(format!("{}-{}", "made", "late")).map_err(|_| ())?;
///     Ok::<_, ()>(rx.try_recv().ok())
/// });
/// assert_eq!(out.ok(), Some(Some("made-late".to_string())));
/// ```
#[must_use = "dropping a permit unused just returns its slot"]
pub struct Permit<'a, T> {
    sender: &'a Sender<T>,
    /// Its entry in a lab run's reservation oracle.
    token: crate::lab::hooks::PermitToken,
}

impl<T> Permit<'_, T> {
    /// Commits `value` into the reserved slot. Never waits and never fails
    /// for lack of space. Fails only if the receiver has been dropped, and
    /// then returns `value`. (After the receiver merely closed the channel,
    /// commits are still accepted and received.)
    ///
    /// If the receiver is dropped at the same moment, the value is either
    /// returned here or, once committed, counted by
    /// [`Sender::undelivered`]; never silently lost.
    ///
    /// ```
    /// use runtime_core::channel::mpsc;
    /// let (tx, rx) = mpsc::channel::<u32>(1).unwrap();
    /// let permit = tx.try_reserve().unwrap();
    /// drop(rx);
    /// assert_eq!(permit.send(9).unwrap_err().into_inner(), 9); // receiver gone: value back
    /// ```
    pub fn send(self, value: T) -> Result<(), Closed<T>> {
        // Our slot now belongs to the value (freed by whoever pops it), or
        // is returned below; either way not by `Drop`.
        let mut this = ManuallyDrop::new(self);
        std::mem::take(&mut this.token).resolve();
        let chan = &*this.sender.chan;
        // Relaxed: only a shortcut; the read-modify-write below decides.
        if chan.rx_state.load(Ordering::Relaxed) & RX_GONE != 0 {
            chan.release(false);
            return Err(Closed(value));
        }
        if chan.queue.push(value).is_err() {
            // Every queued value holds a slot and we hold one: impossible.
            unreachable!("mpsc queue overflow: slot accounting is broken");
        }
        // Release: if the receiver's drop comes later in `rx_state`'s order,
        // its acquire read synchronizes with us (through the release
        // sequence of commits), so its drain sees our value. If it came
        // first, we read RX_GONE here and drain ourselves. Either way the
        // value is received or counted.
        let prev = chan.rx_state.fetch_add(COMMIT, Ordering::Release);
        if prev & RX_GONE != 0 {
            chan.drain_undelivered();
        } else {
            chan.rx_waker.wake_here();
        }
        Ok(())
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        std::mem::take(&mut self.token).resolve();
        self.sender.chan.release(true);
    }
}

impl<T> fmt::Debug for Permit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------

/// The receiving half. Dropping it drops the queued values, counted in
/// [`Sender::undelivered`].
///
/// ```
/// use runtime_core::channel::mpsc;
/// let (tx, mut rx) = mpsc::channel::<&str>(2).unwrap();
/// tx.try_send("a").unwrap();
/// assert_eq!(rx.try_recv(), Ok("a"));
/// ```
pub struct Receiver<T> {
    pub(super) chan: Arc<Chan<T>>,
}

impl<T> Receiver<T> {
    pub(super) fn new(chan: Arc<Chan<T>>) -> Self {
        Receiver { chan }
    }

    /// Waits for the next value. Resolves to [`RecvError::Disconnected`]
    /// once no value can come, and to [`RecvError::Cancelled`] if `cx`'s
    /// task is asked to cancel (checked at every poll, before taking a
    /// value). Cancel-safe: a dropped or cancelled `Recv` takes nothing.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::channel::mpsc;
    /// let out = rt.block_on(|cx| async move {
    ///     let (tx, mut rx) = mpsc::channel::<u32>(2).unwrap();
    ///     cx.spawn(move |cx| async move {
    ///         for i in 0..3 {
    ///             let _ = tx.send(&cx, i).await;
    ///         }
    ///     }); // the sender is dropped at the end: recv then reports Closed
    ///     let mut got = Vec::new();
    ///     while let Ok(v) = rx.recv(&cx).await {
    ///         got.push(v);
    ///     }
    ///     Ok::<_, ()>(got)
    /// });
    /// assert_eq!(out.ok(), Some(vec![0, 1, 2]));
    /// ```
    pub fn recv<'a, C: CapSet>(&'a mut self, cx: &'a Cx<C>) -> Recv<'a, T> {
        let cx = cx.core();
        Recv { receiver: self, cx }
    }

    /// Takes the next value if there is one now.
    ///
    /// ```
    /// use runtime_core::channel::mpsc::{self, TryRecvError};
    /// let (tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.try_send(1).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.chan.try_recv()
    }

    /// Closes the channel: new and waiting reservations fail with
    /// `Closed`, but permits already held may still commit, and queued
    /// values stay receivable. Once they are all received and the permits
    /// are gone, receiving reports `Disconnected`.
    ///
    /// ```
    /// use runtime_core::channel::mpsc::{self, TryRecvError};
    /// let (tx, mut rx) = mpsc::channel::<u32>(2).unwrap();
    /// tx.try_send(1).unwrap();
    /// rx.close(); // no new sends; what is queued can still be received
    /// assert!(tx.try_send(2).is_err());
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// ```
    pub fn close(&mut self) {
        self.chan.close();
    }

    /// Whether the channel is closed ([`close`](Self::close) was called).
    ///
    /// ```
    /// use runtime_core::channel::mpsc;
    /// let (_tx, mut rx) = mpsc::channel::<u32>(1).unwrap();
    /// rx.close();
    /// assert!(rx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        // Relaxed: a snapshot of our own flag.
        self.chan.sem.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// The number of values queued now.
    ///
    /// ```
    /// use runtime_core::channel::mpsc;
    /// let (tx, rx) = mpsc::channel::<u32>(4).unwrap();
    /// tx.try_send(1).unwrap();
    /// assert_eq!(rx.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.chan.queue.len()
    }

    /// Whether no value is queued now.
    ///
    /// ```
    /// use runtime_core::channel::mpsc;
    /// let (_tx, rx) = mpsc::channel::<u32>(4).unwrap();
    /// assert!(rx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let chan = &*self.chan;
        chan.close();
        // Acquire: synchronizes with every commit whose read-modify-write
        // came before this one, so the drain below sees their values;
        // later commits read RX_GONE and drain their own.
        chan.rx_state.fetch_or(RX_GONE, Ordering::Acquire);
        // The values first, then the waker (user code, whose `Drop` may
        // panic: caught and counted; found by review: a panic there
        // skipped the drain, and the queued values went uncounted).
        chan.drain_undelivered();
        super::chan::let_waker_go(chan.rx_waker.take());
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// The future of [`Receiver::recv`].
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::channel::mpsc;
/// let out = rt.block_on(|cx| async move {
///     let (tx, mut rx) = mpsc::channel::<u32>(4).unwrap();
///     tx.try_send(1).unwrap();
///     let recv: mpsc::Recv<'_, u32> = rx.recv(&cx);
///     Ok::<_, ()>(recv.await.ok())
/// });
/// assert_eq!(out.ok(), Some(Some(1)));
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
        let chan = &*this.receiver.chan;
        match chan.try_recv() {
            Ok(value) => return Poll::Ready(Ok(value)),
            Err(TryRecvError::Disconnected) => return Poll::Ready(Err(RecvError::Disconnected)),
            Err(TryRecvError::Empty) => {}
        }
        // Register, then look again: a commit, the last sender's drop, or
        // a slot freed after close that came after our first look either
        // is seen by the second one or finds our waker (see WakerSlot).
        chan.rx_waker.register(task.waker());
        match chan.try_recv() {
            Ok(value) => Poll::Ready(Ok(value)),
            Err(TryRecvError::Disconnected) => Poll::Ready(Err(RecvError::Disconnected)),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }
}

impl<T> fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv").finish_non_exhaustive()
    }
}
