//! [`Sleep`] and [`Interval`]: timers that are checkpoints.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::driver::{TimerAction, TimerHandle};
use super::{Duration, Instant};
use crate::budget::coop;
use crate::cancel::Cancelled;
use crate::cx::CxCore;
use crate::sync::WakerId;

/// Resolves at its deadline with `Ok(())`, or earlier with
/// `Err(Cancelled)` if the task is cancelled meanwhile. Dropping it
/// cancels the timer (O(1)).
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::time::{Duration, Sleep};
/// let out = rt.block_on(|cx| async move {
///     let sleep: Sleep<'_> = cx.sleep(Duration::from_millis(1));
///     let deadline = sleep.deadline();
///     sleep.await.map_err(|_| ())?;
///     Ok::<_, ()>(cx.now() >= deadline)
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
pub struct Sleep<'a> {
    cx: &'a CxCore,
    deadline: Instant,
    /// The pending timer and which waker it wakes: the identity of the
    /// clone its wheel entry holds, kept instead of a second clone (one
    /// reference count fewer to take at the registration and to give back
    /// at the removal, a cancelled sleep's). The entry keeps its waker
    /// alive while the timer is pending, so an equal identity is that
    /// waker. Once the entry has fired, the deadline has passed (a timer
    /// fires only when `now` has reached its deadline, and the clock never
    /// goes back), and [`poll_sleep`] returns before it compares; a wheel
    /// cleared at the end of a runtime wakes nobody again anyway.
    timer: Option<(TimerHandle, WakerId)>,
}

impl<'a> Sleep<'a> {
    pub(crate) fn new(cx: &'a CxCore, deadline: Instant) -> Self {
        Sleep {
            cx,
            deadline,
            timer: None,
        }
    }

    /// When it resolves.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::time::Duration;
    /// let out = rt.block_on(|cx| async move {
    ///     let s = cx.sleep(Duration::from_millis(1));
    ///     let at = s.deadline();
    ///     s.await.map_err(|_| ())?;
    ///     Ok::<_, ()>(cx.now() >= at)
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// One poll of a sleep: shared by [`Sleep`] and [`Interval`].
fn poll_sleep(
    cx: &CxCore,
    deadline: Instant,
    timer: &mut Option<(TimerHandle, WakerId)>,
    task: &mut Context<'_>,
) -> Poll<Result<(), Cancelled>> {
    if coop::poll_proceed(task).is_pending() {
        return Poll::Pending;
    }
    if let Some(reason) = cx.cancel_requested() {
        return Poll::Ready(Err(Cancelled(reason)));
    }
    if cx.now() >= deadline {
        if let Some((h, _)) = timer.take() {
            cx.cancel_timer(h);
        }
        return Poll::Ready(Ok(()));
    }
    let id = WakerId::of(task.waker());
    match timer {
        Some((_, w)) if *w == id => {}
        _ => {
            if let Some((h, _)) = timer.take() {
                cx.cancel_timer(h);
            }
            let h = cx.insert_timer(deadline, TimerAction::Wake(task.waker().clone()));
            *timer = Some((h, id));
        }
    }
    Poll::Pending
}

impl Future for Sleep<'_> {
    type Output = Result<(), Cancelled>;
    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        poll_sleep(this.cx, this.deadline, &mut this.timer, task)
    }
}

impl Drop for Sleep<'_> {
    fn drop(&mut self) {
        if let Some((h, _)) = self.timer.take() {
            self.cx.cancel_timer(h);
        }
    }
}

/// Ticks once per period. A tick that is late (the task was busy) fires at
/// once, and the next one is scheduled a period after it, so ticks never
/// bunch up.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::time::{Duration, Interval};
/// let out = rt.block_on(|cx| async move {
///     let mut every: Interval = cx.interval(Duration::from_millis(1));
///     let first = every.tick().await.map_err(|_| ())?;
///     let second = every.tick().await.map_err(|_| ())?;
///     Ok::<_, ()>(second > first)
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
pub struct Interval {
    cx: CxCore,
    period: Duration,
    next: Instant,
    timer: Option<(TimerHandle, WakerId)>,
}

impl Interval {
    pub(crate) fn new(cx: CxCore, period: Duration) -> Self {
        let next = cx.now() + period;
        Interval {
            cx,
            period: period.max(Duration::from_nanos(1)),
            next,
            timer: None,
        }
    }

    /// The period.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::time::Duration;
    /// let out = rt.block_on(|cx| async move { Ok::<_, ()>(cx.interval(Duration::from_millis(3)).period()) });
    /// assert_eq!(out.ok(), Some(Duration::from_millis(3)));
    /// ```
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Waits for the next tick and returns its scheduled instant; a
    /// checkpoint.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::time::Duration;
    /// let out = rt.block_on(|cx| async move {
    ///     let mut every = cx.interval(Duration::from_millis(1));
    ///     every.tick().await.map_err(|_| ())?; // one period from now; a checkpoint
    ///     Ok::<_, ()>(())
    /// });
    /// assert!(out.is_ok());
    /// ```
    pub fn tick(&mut self) -> Tick<'_> {
        Tick { interval: self }
    }
}

/// The future of [`Interval::tick`].
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::time::{Duration, Tick};
/// let out = rt.block_on(|cx| async move {
///     let mut every = cx.interval(Duration::from_millis(1));
///     let tick: Tick<'_> = every.tick();
///     Ok::<_, ()>(tick.await.is_ok())
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
pub struct Tick<'a> {
    interval: &'a mut Interval,
}

impl Future for Tick<'_> {
    type Output = Result<Instant, Cancelled>;
    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let i = &mut *self.interval;
        match poll_sleep(&i.cx, i.next, &mut i.timer, task) {
            Poll::Ready(Ok(())) => {
                let at = i.next;
                let now = i.cx.now();
                i.next = (at + i.period).max(now);
                if i.next == now {
                    i.next = now + i.period;
                }
                Poll::Ready(Ok(at))
            }
            other => other.map(|r| r.map(|()| i.next)),
        }
    }
}

impl Drop for Interval {
    fn drop(&mut self) {
        if let Some((h, _)) = self.timer.take() {
            self.cx.cancel_timer(h);
        }
    }
}
