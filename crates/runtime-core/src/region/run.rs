//! Running a region: its body, then quiescence, then its finalizers under
//! the cleanup budget, then the join of the outcomes; and what happens when
//! the region's future is dropped before it closes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{BodyPoller, Finalizer, Policy, Region, RegionError};
use crate::cancel::{CancelKind, CancelReason, Origin};
use crate::loom::{Ordering, lock};
use crate::outcome::{Outcome, PanicPayload, Severity};
use crate::sched::Scheduler;
use crate::sync::WakerId;
use crate::task::TaskRef;
use crate::time::driver::TimerAction;

/// A region just opened (`Region::open`), not closed yet: dropped before
/// [`run_region`] closes it (its future dropped, polled or not; or the
/// code between the open and that future unwinding, a body closure's
/// panic), it abandons the region: cancelled, and closed by its last
/// child, at once if it has none. So its parent is never left counting a
/// child that no one will close.
///
/// Dropped after [`run_region`] reached quiescence (in the finalizers),
/// the region is already closed to children, so no child will close it:
/// the drop finishes it itself (the pending finalizers' first polls, the
/// detach from its parent and owner).
pub(crate) struct Opened(Option<Arc<Region>>, std::cell::Cell<bool>);

impl Opened {
    pub(crate) fn new(node: Arc<Region>) -> Opened {
        Opened(Some(node), std::cell::Cell::new(false))
    }

    /// The node, for the close: the guard lets it go.
    fn disarm(&mut self) -> Arc<Region> {
        self.0.take().expect("disarmed once")
    }
}

impl std::ops::Deref for Opened {
    type Target = Arc<Region>;
    fn deref(&self) -> &Arc<Region> {
        self.0.as_ref().expect("not disarmed")
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        let Some(node) = self.0.take() else { return };
        if self.1.get() {
            // Closed at quiescence by `run_region` (its compare-and-swap
            // succeeded): ours to finish. (Found by review: the close was
            // left to a last child that could never come, so the parent
            // waited for ever, and the owner's list kept a pointer to the
            // node past its free.)
            // Dropped in a finalizer: no finalizer runs any more (a region
            // opened through a context kept past here is born cancelled).
            // Relaxed: see `run_region`.
            node.finalizing.store(false, Ordering::Relaxed);
            node.finish_abandoned();
            return;
        }
        node.cancel(
            &CancelReason::new(CancelKind::ParentCancelled)
                .with_message("the region's future was dropped before it closed")
                .with_origin(Origin::Region(node.id)),
        );
        // SeqCst: the store half of the Dekker pair with `child_finished`
        // (see there): then `try_close` below is the SeqCst CAS on `live`.
        node.abandoned.store(true, Ordering::SeqCst);
        if node.try_close() {
            node.finish_abandoned();
        }
    }
}

/// What a region's future holds: the body's future, then the guard. The
/// fields drop in that order, whichever way the future ends: the body's
/// future first (it may hold what the region's children wait for), then
/// the guard, which abandons a region not closed yet.
struct Running<F> {
    body: Option<InScope<CatchUnwind<F>>>,
    guard: Opened,
}

impl<F> Drop for Running<F> {
    fn drop(&mut self) {
        // A body given its cut-off poll and dropped with this future
        // before its next (a region nested in a body that its own region's
        // cut-off dropped, or a future dropped by its owner's) is cut off
        // all the same, and counted so (found by review: only the one
        // dropped by its own next poll was).
        if self.body.as_ref().is_some_and(|b| b.polled_cut_off) {
            self.guard.sched.stats().body_cut_off();
        }
    }
}

/// Runs a region: the body, then quiescence, then finalizers, then the
/// join. Dropping it before it finishes (or before its first poll) cancels
/// the region and leaves the close to its last child (`Opened`).
///
/// Not an `async fn`: one keeps its argument and the copy it moves into
/// a local both, so each region nested in a body doubled the size of its
/// parent's future (measured: 248, 792, 1 888, 4 080 bytes for scopes
/// nested 1 to 4 deep; 2 MiB of stack overflowed at 5 deep in a debug
/// build, found by review). Here the body's future is held once, in
/// `Running`, captured by the block and polled where it lies.
pub(crate) fn run_region<F, T, E>(
    opened: Opened,
    owner: TaskRef,
    body: F,
) -> impl Future<Output = Outcome<T, RegionError<E>>> + Send
where
    F: Future<Output = Result<T, E>> + Send,
    T: Send,
    E: Send,
{
    let mut running = Running {
        body: Some(InScope {
            inner: CatchUnwind { inner: body },
            registered: Registered::Nothing,
            polls: 0,
            observed: false,
            seen_reason: None,
            cancel_polls: 0,
            polled_cut_off: false,
        }),
        guard: opened,
    };
    async move {
        // An await point that can be ready at once (a body that returns at
        // its first poll): under the turn's cooperative budget, so that a
        // loop of such regions yields now and then (found by review: in
        // the lab it never reached its step limit; on a current-thread
        // runtime it starved every other task). Spent before the body's
        // first poll, with the region open: a yield here is a yield before
        // the body starts.
        std::future::poll_fn(crate::budget::coop::poll_proceed).await;
        let Running { body, guard } = &mut running;
        let node: &Region = guard;
        let (body_out, waker_stored, observed, seen_reason) = std::future::poll_fn(|cx| {
            let Some(b) = body.as_mut() else {
                unreachable!("the body is not polled after it returned")
            };
            if b.polled_cut_off {
                // Still running after a poll made with its region cut off
                // (its masks lifted, its waits on jobs ended: the poll in
                // which to see the cancellation and return): dropped here,
                // in place, as a cut-off task's future is (found by
                // review: a timeout whose body ignored its cancellation
                // never returned, its cleanup budget notwithstanding). Its
                // `Drop` is user code: a panic is the region's outcome.
                let stored = matches!(b.registered, Registered::Other(_));
                let observed = b.observed;
                let seen_reason = b.seen_reason.take();
                node.sched.stats().body_cut_off();
                // Where it was pinned, never moved out first (found by
                // review: `Option::take` moved it to the stack, and a
                // future that had handed out its own address, as an
                // intrusive waiter does, left that address dangling). An
                // assignment drops the old value in place, and writes the
                // new one even when that drop unwinds.
                let dropped = crate::outcome::catch(|| *body = None);
                let end = match dropped {
                    Ok(()) => BodyEnd::CutOff,
                    Err(p) => {
                        node.sched.stats().panic_caught();
                        BodyEnd::Returned(Err(p))
                    }
                };
                return Poll::Ready((end, stored, observed, seen_reason));
            }
            let cut_before = node.is_cut_off();
            // SAFETY: `body` lies in this future's captured state, which is
            // pinned, and is never moved: it is dropped in place (below, or
            // with the state).
            let polled = unsafe { Pin::new_unchecked(&mut *b) }.poll_in(node, &owner, cx);
            match polled {
                Poll::Ready((out, stored, observed)) => {
                    let seen_reason = b.seen_reason.take();
                    // Dropped as it returns, as the body's future must be
                    // (it may hold what its children wait for).
                    *body = None;
                    Poll::Ready((BodyEnd::Returned(out), stored, observed, seen_reason))
                }
                Poll::Pending => {
                    // Still running after the poll its region's cut-off
                    // gave it, or after its cleanup polls (its owner's
                    // polls in which a checkpoint reported the
                    // cancellation, `cancel_polls`: found by review, a
                    // budget of polls only never bounded a body; not every
                    // poll, since a body draining its children is woken
                    // once for each that ends, found by review of that
                    // fix): dropped at its next poll, the body alone (the
                    // tasks keep their own budgets). Not the combinators'
                    // own bodies (`quiet`): they only wait for their tasks,
                    // which the cut-off ends, and must see each end (found
                    // by review: a `join_all` dropped at its cut-off
                    // returned no outcome at all).
                    let spent = || {
                        node.cleanup
                            .polls
                            .is_some_and(|quota| b.cancel_polls >= quota.max(1))
                    };
                    if (cut_before || spent()) && !node.quiet {
                        // The next poll drops it, and comes at once.
                        b.polled_cut_off = true;
                        if crate::outcome::wake_by_ref_caught(cx.waker()) {
                            node.sched.stats().panic_caught();
                        }
                    }
                    Poll::Pending
                }
            }
        })
        .await;
        // A checkpoint of the body saw a cancellation that the scope around
        // the region has too (passed down from there): it counts there as
        // well, for the outcome of the task or the region around.
        if observed
            && (owner.header().cancel.is_requested()
                || node
                    .parent
                    .as_ref()
                    .is_some_and(|p| p.cancel.is_requested()))
        {
            // Relaxed: see `InScope::poll_in`.
            owner.header().observed.store(true, Ordering::Relaxed);
        }
        let body_out = match body_out {
            BodyEnd::Returned(Ok(Ok(v))) => Outcome::Ok(v),
            // The reason the body saw (found by review: the cell's reason
            // at the return, which a child's failure after the body saw a
            // timeout had made `SiblingFailed`, turned the timeout into the
            // child's error); the cell's, if it had none then.
            BodyEnd::Returned(Ok(Err(e))) => match observed
                .then(|| {
                    seen_reason
                        .map(|r| CancelReason::clone(&r))
                        .or_else(|| node.cancel.get())
                })
                .flatten()
            {
                Some(reason) => Outcome::Cancelled(reason),
                None => Outcome::Err(RegionError::Body(e)),
            },
            BodyEnd::Returned(Err(p)) => Outcome::Panicked(p),
            BodyEnd::CutOff => Outcome::Cancelled(
                node.cancel
                    .get()
                    .unwrap_or_else(|| CancelReason::new(CancelKind::Shutdown)),
            ),
        };
        if matches!(body_out.severity(), Severity::Err | Severity::Panicked)
            && node.policy == Policy::FailFast
        {
            node.cancel(&node.sibling_failed());
        }
        std::future::poll_fn(|cx| node.poll_quiescent(cx)).await;
        // Closed to children: from here a drop finishes the region itself.
        guard.1.set(true);
        while let Some(f) = node.next_finalizer(false) {
            // Relaxed: read by this task's own opens (`Region::open`).
            node.finalizing.store(true, Ordering::Relaxed);
            let cut_before = node.is_cut_off();
            let cleaned = Cleanup::new(node, f).await;
            node.observe(crate::sched::Observed::FinalizerEnded);
            match cleaned {
                // Running when shutdown's deadline released the region's
                // masks (`cut_off_all`), and ended after: its cleanup was
                // cut short there, and counts so (it ended on its own, or
                // was dropped with its task, whichever came first: both are
                // a cut-off). One that starts after the cut-off and runs to
                // its end (a `defer`) is not cut off.
                Cleaned::Done if !cut_before && node.is_cut_off() => {
                    node.sched.stats().finalizer_cut_off();
                }
                Cleaned::Done => {}
                Cleaned::CutOff => node.sched.stats().finalizer_cut_off(),
                Cleaned::Panicked(p) => node.record_panic(p),
            }
        }
        // Relaxed: as above; a region opened through this context from here
        // on is born cancelled (the region has ended).
        node.finalizing.store(false, Ordering::Relaxed);
        let node = guard.disarm();
        let out = node.close(body_out, &owner, waker_stored);
        super::release_node(node);
        out
    }
}

/// How a region's body ended: it returned (or panicked), or it was
/// dropped at its cut-off.
enum BodyEnd<R> {
    Returned(Result<R, PanicPayload>),
    CutOff,
}

/// Polls a region's body with the region as the current scope (for
/// [`JoinHandle`](crate::JoinHandle)'s checkpoint), registering the
/// poller's waker for cancel requests. Its output is the body's, and
/// whether the node holds a waker of the body's poller
/// (`BodyPoller::Waker`): only these polls store one, so what the last of
/// them stored is what the node holds for the close.
struct InScope<F> {
    inner: F,
    /// What the node was last told about the poller (to tell it again only
    /// when the poller changes).
    registered: Registered,
    /// Polls of the body so far, against the region's poll quota.
    polls: u32,
    /// A checkpoint in one of the body's polls reported a cancellation
    /// (the owner's `observed`, as it stood after those polls: see
    /// `poll_in`).
    observed: bool,
    /// The region's cancel reason as it stood after the last poll in which
    /// a checkpoint reported a cancellation to the body: the cancellation
    /// the body saw, when it returns an error (a stronger reason that came
    /// after is not what it answered).
    seen_reason: Option<Arc<CancelReason>>,
    /// Polls by its owner in which a checkpoint reported the region's
    /// cancellation to the body, against its cleanup budget's polls
    /// (limit: a body that ignores its cancellation without reaching a
    /// checkpoint, or one another task polls, is bounded by the grace
    /// period alone).
    cancel_polls: u32,
    /// Polled with its region cut off, and still running: dropped at the
    /// next poll.
    polled_cut_off: bool,
}

/// Who polls a region's body, as last stored in its node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Registered {
    /// Nothing stored yet.
    Nothing,
    /// The owner task, with its own waker: the node holds no waker (a
    /// cancel request wakes the owner task, `Region::wake_body`), so the
    /// common case takes no waker count and gives none back at the close.
    Owner,
    /// Another waker (a combinator's, or another task's): the node holds a
    /// clone of it, whose count keeps this identity (the clone's own,
    /// which may differ from the polling waker's, as in `Sleep`) from
    /// being reused while it is stored.
    Other(WakerId),
}

impl<F: Future> InScope<F> {
    /// Polls the body of `node`.
    fn poll_in(
        self: Pin<&mut Self>,
        node: &Region,
        owner: &TaskRef,
        cx: &mut Context<'_>,
    ) -> Poll<(F::Output, bool, bool)> {
        // SAFETY: structural pinning of `inner`; it is never moved.
        let this = unsafe { self.get_unchecked_mut() };
        // The owner task polling the body with its own waker (the common
        // case: `cx.region(..).await` in the task) is recorded as such,
        // with no waker stored. The owner's allocation is pinned by the
        // node's weak reference to it, so its address names it alone.
        let now = if node.owner_is_running() && crate::task::is_running_task_waker(cx.waker()) {
            Registered::Owner
        } else {
            Registered::Other(WakerId::of(cx.waker()))
        };
        if this.registered != now {
            let stored = match now {
                Registered::Other(_) => match crate::outcome::catch(|| cx.waker().clone()) {
                    Ok(w) => {
                        let id = WakerId::of(&w);
                        Some((BodyPoller::Waker(Arc::new(w)), Registered::Other(id)))
                    }
                    Err(_) => {
                        node.sched.stats().panic_caught();
                        // Nothing stored for this poller: have it poll
                        // again, to retry (else a cancel wakes a stale one).
                        if crate::outcome::wake_by_ref_caught(cx.waker()) {
                            node.sched.stats().panic_caught();
                        }
                        None
                    }
                },
                _ => Some((BodyPoller::Owner, now)),
            };
            if let Some((stored, now)) = stored {
                let old = std::mem::replace(&mut *lock(&node.body_waker), stored);
                // A waker's drop is user code: outside the lock, caught.
                if crate::outcome::drop_caught(old).is_some() {
                    node.sched.stats().panic_caught();
                }
                this.registered = now;
            }
        }
        // The region's poll quota, on its body: as a task's, cancellation
        // before the poll past the quota, so the poll can observe it.
        if let Some(quota) = node.budget.poll_quota {
            this.polls = this.polls.saturating_add(1);
            if this.polls > quota && !node.cancel.is_requested() {
                node.cancel(
                    &CancelReason::new(CancelKind::PollQuota).with_origin(Origin::Region(node.id)),
                );
            }
        }
        let _scope = crate::task::PollingGuard::region(node, now == Registered::Owner);
        // What a checkpoint observes in this poll is the body's, not the
        // scope's around: the owner's flag (which checkpoints set) starts
        // the poll clear and is put back after it, and the body keeps what
        // it saw. (One flag for the whole task made any earlier region's
        // cancellation, seen and done with, turn a later region's or the
        // task's own error into `Cancelled`: found by review.) Relaxed:
        // only the thread polling the owner task touches the flag (see
        // `awaiter_cancelled` in task.rs).
        let flag = &owner.header().observed;
        let outer = flag.load(Ordering::Relaxed);
        if outer {
            flag.store(false, Ordering::Relaxed);
        }
        // SAFETY: `inner` is pinned because `self` is.
        let polled = unsafe { Pin::new_unchecked(&mut this.inner) }.poll(cx);
        let seen = flag.load(Ordering::Relaxed);
        if seen != outer {
            flag.store(outer, Ordering::Relaxed);
        }
        this.observed |= seen;
        if seen && let Some(reason) = node.cancel.get_arc() {
            this.seen_reason = Some(reason);
            // A cleanup poll only when the owner task polls it (with any
            // waker: a combinator's too): the flag is the owner's, which
            // the owner's own checkpoints set meanwhile when another task
            // polls the body (found by review: a body polled by another
            // task was cut off for its owner's checkpoints; then one its
            // owner polled through a combinator was never cut off).
            if node.owner_is_running() {
                this.cancel_polls = this.cancel_polls.saturating_add(1);
            }
        }
        if polled.is_pending() && node.cancel.is_requested() {
            // The body is still running after a poll that may have seen
            // the cancellation: its cleanup now needs the grace timer.
            node.arm_grace_chain();
        }
        polled.map(|out| {
            (
                out,
                matches!(this.registered, Registered::Other(_)),
                this.observed,
            )
        })
    }
}

/// Polls a future, turning a panic into `Err(payload)`.
pub(crate) struct CatchUnwind<F> {
    pub(crate) inner: F,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, PanicPayload>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of `inner`; it is never moved.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.inner) };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(PanicPayload::from_any(p))),
        }
    }
}

/// A finalizer under the cleanup budget: resolves `true` if it finished,
/// `false` if it was cut off (poll quota or grace period spent).
struct Cleanup {
    fut: Finalizer,
    /// It returned (done, cut off or panicked); dropped before, it is cut
    /// off by the drop of the region's future, and counted so.
    ended: bool,
    /// The region's `observed` (the lab's finalizer oracle).
    observed: bool,
    polls: u32,
    max_polls: Option<u32>,
    deadline: Option<crate::time::Instant>,
    /// The grace timer and the identity of the waker clone it holds (as
    /// `Sleep`'s): a poll by another waker moves it (found by review: it
    /// woke the waker of the first poll only, and a region awaited after
    /// one poll by a combinator's waker was never woken to cut off).
    timer: Option<(crate::time::driver::TimerHandle, WakerId)>,
    sched: Arc<dyn Scheduler>,
}

impl Cleanup {
    fn new(node: &Region, fut: Finalizer) -> Self {
        Cleanup {
            fut,
            ended: false,
            observed: node.observed(),
            polls: 0,
            max_polls: node.cleanup.polls,
            deadline: node.cleanup.grace.map(|g| node.sched.now() + g),
            timer: None,
            sched: node.sched.clone(),
        }
    }
}

/// How a finalizer ended.
enum Cleaned {
    Done,
    CutOff,
    Panicked(PanicPayload),
}

impl Future for Cleanup {
    type Output = Cleaned;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Cleaned> {
        let this = &mut *self;
        let polled = this.poll_once(cx);
        this.ended = polled.is_ready();
        polled
    }
}

impl Cleanup {
    fn poll_once(&mut self, cx: &mut Context<'_>) -> Poll<Cleaned> {
        let this = self;
        // One unit of the turn's budget before the first poll (as before a
        // region's body): a chain of finalizers, each registering the
        // next, yields now and then. Not a poll of the finalizer.
        if this.polls == 0 && crate::budget::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        this.polls += 1;
        // The first poll is always made: a finalizer that finishes in one
        // (every `defer`) runs whatever the budget, a zero one included;
        // the budget bounds what comes after (each finalizer's own polls
        // and grace period, from its first poll).
        if this.polls > 1 {
            if this.max_polls.is_some_and(|m| this.polls > m) {
                return Poll::Ready(Cleaned::CutOff);
            }
            if let Some(d) = this.deadline
                && this.sched.now() >= d
            {
                return Poll::Ready(Cleaned::CutOff);
            }
        }
        let first = this.polls == 1;
        let polled = crate::outcome::catch(|| {
            if first {
                // Never cut off, so not made to yield by the turn's spent
                // budget either (`coop::with_fresh_budget`).
                crate::budget::coop::with_fresh_budget(|| this.fut.as_mut().poll(cx))
            } else {
                this.fut.as_mut().poll(cx)
            }
        });
        match polled {
            Ok(Poll::Ready(())) => Poll::Ready(Cleaned::Done),
            Err(p) => Poll::Ready(Cleaned::Panicked(p)),
            Ok(Poll::Pending) => {
                if let Some(d) = this.deadline {
                    let id = WakerId::of(cx.waker());
                    if this.timer.is_none_or(|(_, stored)| stored != id) {
                        // The clone is user code: first, and caught (on a
                        // panic the old timer stays).
                        match crate::outcome::catch(|| cx.waker().clone()) {
                            Ok(w) => {
                                if let Some((t, _)) = this.timer.take() {
                                    this.sched.cancel_timer(t);
                                }
                                let stored = WakerId::of(&w);
                                this.timer = Some((
                                    this.sched.insert_timer(d, TimerAction::Wake(w)),
                                    stored,
                                ));
                            }
                            Err(_) => {
                                this.sched.stats().panic_caught();
                                if crate::outcome::wake_by_ref_caught(cx.waker()) {
                                    this.sched.stats().panic_caught();
                                }
                            }
                        }
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((t, _)) = self.timer.take() {
            self.sched.cancel_timer(t);
        }
        if !self.ended && self.polls == 0 {
            // Dropped before its first poll (the region's future dropped
            // while it yielded for the turn's budget): the first poll is
            // never cut off, so it gets it here, as at an abandoned close.
            let polled = crate::outcome::catch(|| {
                crate::budget::coop::with_fresh_budget(|| {
                    self.fut
                        .as_mut()
                        .poll(&mut Context::from_waker(std::task::Waker::noop()))
                })
            });
            self.ended = !matches!(polled, Ok(Poll::Pending));
            if polled.is_err() {
                self.sched.stats().panic_caught();
            }
            if self.ended && self.observed {
                self.sched.observe(crate::sched::Observed::FinalizerEnded);
            }
        }
        if !self.ended {
            // The region's future was dropped in this finalizer (found by
            // review: it went uncounted).
            self.sched.stats().finalizer_cut_off();
            if self.observed {
                self.sched.observe(crate::sched::Observed::FinalizerEnded);
            }
        }
        // The finalizer is user code: its Drop (after a cut-off, with its
        // state half-run) may panic.
        let fut = std::mem::replace(&mut self.fut, Box::pin(async {}));
        if crate::outcome::drop_caught(fut).is_some() {
            self.sched.stats().panic_caught();
        }
    }
}
