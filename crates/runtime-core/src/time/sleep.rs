//! [`Sleep`] and [`Interval`]: timers that are checkpoints.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::driver::{TimerAction, TimerHandle};
use super::{Duration, Instant};
use crate::budget::coop;
use crate::cancel::{CancelKind, CancelReason, Cancelled, Origin};
use crate::caps::CapSet;
use crate::cx::{Cx, CxCore};
use crate::sync::WakerId;

/// Resolves at its deadline with `Ok(())`, or earlier with
/// `Err(Cancelled)` if the task is cancelled meanwhile. Dropping it
/// cancels the timer (O(1); on a worker, at the end of the task's run,
/// with every other sleep the run dropped, under one lock of the timer
/// wheel).
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
    /// clone its wheel entry holds (taken from that clone, not from the
    /// waker it was cloned from: a waker whose clone is a new allocation
    /// has another identity, and the poll's own waker, once dropped, may
    /// leave its address to the next poll's; found by review: the sleep
    /// then woke a dropped waker's clone), kept instead of a second clone (one
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
    poll_sleep_in(cx, cx, deadline, timer, task)
}

/// Takes a sleep's timer out of the wheel, if it has one.
fn let_go(cx: &CxCore, timer: &mut Option<(TimerHandle, WakerId)>) {
    if let Some((h, _)) = timer.take() {
        cx.cancel_wake_timer(h);
    }
}

/// [`poll_sleep`] as a checkpoint of `checkpoint` (the polling task's
/// context), its timer on `cx`'s runtime. A sleep still pending spends
/// none of the turn's budget (`coop::budgeted`).
fn poll_sleep_in(
    checkpoint: &CxCore,
    cx: &CxCore,
    deadline: Instant,
    timer: &mut Option<(TimerHandle, WakerId)>,
    task: &mut Context<'_>,
) -> Poll<Result<(), Cancelled>> {
    coop::budgeted(task, |task| {
        if let Some(reason) = checkpoint.cancel_requested() {
            return Poll::Ready(Err(Cancelled(reason)));
        }
        if cx.sched().is_shut_down() {
            // Through a `Cx` kept past the runtime's shutdown (a sleep begun
            // before it is woken by the shutdown's clearing of the wheel, and
            // lands here): no worker turns the wheel any more, the timer would
            // never fire.
            let_go(cx, timer);
            return Poll::Ready(Err(Cancelled(
                CancelReason::new(CancelKind::Shutdown)
                    .with_message("the runtime has shut down: its timers no longer fire")
                    .with_origin(Origin::Runtime),
            )));
        }
        if cx.now() >= deadline {
            let_go(cx, timer);
            return Poll::Ready(Ok(()));
        }
        let id = WakerId::of(task.waker());
        match timer {
            Some((_, w)) if *w == id => {}
            _ => {
                let_go(cx, timer);
                let w = task.waker().clone();
                let stored = WakerId::of(&w);
                let h = cx.insert_timer(deadline, TimerAction::Wake(w));
                *timer = Some((h, stored));
            }
        }
        Poll::Pending
    })
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
        let_go(self.cx, &mut self.timer);
    }
}

/// Ticks once per period. A tick that is late (the task was busy) fires at
/// once, and the next one is scheduled a period after it, so ticks never
/// bunch up. (Late means by more than the timers' own jitter: 5 ms, or
/// half the period if that is less, counted from the millisecond tick at
/// which the timer wheel fires a timer due at the tick's instant. A tick
/// later than that by no more keeps the schedule, the next one a period
/// after the instant it was due, so that ticks do not drift.)
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::time::{Duration, Interval};
/// let out = rt.block_on(|cx| async move {
///     let mut every: Interval = cx.interval(Duration::from_millis(1));
///     let first = every.tick(&cx).await.map_err(|_| ())?;
///     let second = every.tick(&cx).await.map_err(|_| ())?;
///     Ok::<_, ()>(second > first)
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
///
/// An interval may move to another task (it is `Send` and `'static`): each
/// tick is a checkpoint of the context passed to [`tick`](Self::tick), the
/// polling task's, not of the task that made the interval. It is a time
/// capability handed on by value: made through a context with `Time`, it
/// ticks for whoever holds it, whatever that one's own context allows (as
/// a `Cx` passed on does). It keeps the task that made it alive (its
/// context) until it is dropped.
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
    /// checkpoint of `cx`, the context of the task that awaits the tick
    /// (`Err` once its scope is cancelled), as a channel's `recv` is.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::time::Duration;
    /// let out = rt.block_on(|cx| async move {
    ///     let mut every = cx.interval(Duration::from_millis(1));
    ///     every.tick(&cx).await.map_err(|_| ())?; // one period from now; a checkpoint
    ///     Ok::<_, ()>(())
    /// });
    /// assert!(out.is_ok());
    /// ```
    pub fn tick<'a, C: CapSet>(&'a mut self, cx: &'a Cx<C>) -> Tick<'a> {
        Tick {
            interval: self,
            checkpoint: cx.core(),
        }
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
///     let tick: Tick<'_> = every.tick(&cx);
///     Ok::<_, ()>(tick.await.is_ok())
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
pub struct Tick<'a> {
    interval: &'a mut Interval,
    checkpoint: &'a CxCore,
}

/// How late a tick may fire and still count as on time ([`Interval`]):
/// the timer wheel's millisecond and a worker's wake-up, with room.
const LATE_AFTER: Duration = Duration::from_millis(5);

impl Future for Tick<'_> {
    type Output = Result<Instant, Cancelled>;
    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let checkpoint = self.checkpoint;
        let i = &mut *self.interval;
        match poll_sleep_in(checkpoint, &i.cx, i.next, &mut i.timer, task) {
            Poll::Ready(Ok(())) => {
                let at = i.next;
                let now = i.cx.now();
                // Late: the next tick a period after this one fires, not
                // on the old schedule (which put it less than a period
                // away: `(at + period).max(now)` fired a tick 70 ms late
                // of a 100 ms period, then the next 30 ms after it). A
                // tick only as late as the timer's and the scheduler's
                // own jitter (`LATE_AFTER`, at most half a period) keeps
                // the schedule, so that ticks do not drift. Counted from
                // when the wheel fires a timer due at `at` (its first
                // millisecond tick at or after `at`), not from `at`: the
                // wheel's rounding, up to 1 ms, is more than half a period
                // under 2 ms, and every such tick counted as late (1.2 ms:
                // 500 ticks a second, not 833).
                let late = now - crate::time::driver::fires_at(at) > LATE_AFTER.min(i.period / 2);
                i.next = if late { now + i.period } else { at + i.period };
                if i.next <= now {
                    // Saturated at `Instant::MAX`.
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
        let_go(&self.cx, &mut self.timer);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Wake, Waker};

    use super::*;
    use crate::{CancelReason, Cx, Runtime};

    const HOUR: Duration = Duration::from_secs(3600);

    type Body = Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send>>;

    /// A region on `rt` spawns `n` tasks (`task(i, cx)`), lets them reach
    /// their awaits and cancels itself: its sweep wakes them as one batch.
    /// Returns once the region closed.
    fn drain_batch(
        rt: &Runtime,
        n: usize,
        task: impl Fn(usize, Cx) -> Body + Send + Sync + 'static,
    ) {
        let task = Arc::new(task);
        let out = rt.block_on(move |cx| async move {
            cx.region(move |cx| async move {
                for i in 0..n {
                    let task = task.clone();
                    cx.spawn(move |cx| task(i, cx.narrow()));
                }
                cx.yield_now().await.map_err(|_| ())?;
                cx.cancel(CancelReason::user("stop"));
                Ok::<_, ()>(())
            })
            .await;
            Ok::<_, ()>(())
        });
        assert!(out.is_ok());
    }

    #[test]
    fn a_cancelled_regions_drain_cancels_its_sleeps_in_batches_and_all_by_its_end() {
        let rt = Runtime::one_worker_for_tests();
        let pending = Arc::new(rt.pending_timers_probe());
        // What each task saw in the wheel once its sleep was dropped.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        drain_batch(&rt, 100, move |_, cx| {
            let (pending, seen) = (pending.clone(), seen2.clone());
            Box::pin(async move {
                let r = cx.sleep(HOUR).await;
                seen.lock().unwrap().push(pending());
                r
            })
        });
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 100);
        // The sweep's batch ran them: the first saw all 100 timers still
        // there (its own cancel deferred), the last saw the 36 left after
        // the one batch of 64 cancelled while the drain went on...
        assert_eq!(seen.iter().max(), Some(&100), "{seen:?}");
        assert_eq!(seen.iter().min(), Some(&36), "{seen:?}");
        // ... and none is left once the batch ended.
        assert_eq!(rt.pending_timers(), 0);
    }

    #[test]
    fn a_task_that_is_its_own_job_cancels_its_sleep_at_once() {
        let rt = Runtime::one_worker_for_tests();
        let pending = rt.pending_timers_probe();
        let out = rt.block_on(|cx| async move {
            let h = cx.spawn(move |cx| async move {
                let mut s = cx.sleep(HOUR);
                std::future::poll_fn(|task| {
                    assert!(Pin::new(&mut s).poll(task).is_pending());
                    Poll::Ready(())
                })
                .await;
                let before = pending();
                drop(s);
                Ok::<_, ()>((before, pending()))
            });
            Ok::<_, ()>(h.await)
        });
        assert_eq!(out.ok().and_then(|o| o.ok()), Some(Ok((1, 0))));
    }

    /// A waker whose drop panics, counting its wakes.
    struct PanicOnDrop(Arc<AtomicUsize>);

    impl Wake for PanicOnDrop {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("a waker whose drop panics");
        }
    }

    #[test]
    fn a_deferred_cancel_whose_waker_panics_in_drop_is_counted_and_cancels_the_rest() {
        let rt = Runtime::one_worker_for_tests();
        drain_batch(&rt, 3, |i, cx| {
            Box::pin(async move {
                let mut by_hand = cx.sleep(HOUR);
                if i == 1 {
                    // Polled by hand with a waker whose drop panics; the
                    // wheel then holds its only reference, let go of at
                    // the end of the sweep's batch.
                    let waker = Waker::from(Arc::new(PanicOnDrop(Arc::default())));
                    let _ = Pin::new(&mut by_hand).poll(&mut Context::from_waker(&waker));
                }
                cx.sleep(HOUR).await
            })
        });
        assert_eq!(rt.pending_timers(), 0);
        assert_eq!(rt.stats().panics_caught, 1);
    }
}
