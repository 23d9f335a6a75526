//! The blocking pool: a bounded set of threads for work that must block a
//! thread (file I/O, CPU-heavy calls, foreign libraries), so that it never
//! blocks a worker.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::{Arc, Condvar};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::cancel::CancelReason;
use crate::loom::{Mutex, lock};
use crate::outcome::{PanicPayload, drop_each_caught};
use crate::sync::WakerSlot;

/// A queued job: the user's closure and the slot it resolves.
type Job = Box<dyn Run>;

/// What the pool does with a queued job.
trait Run: Send {
    /// Runs the job and resolves its slot with the value (or the
    /// closure's panic); `true` if the awaiting waker panicked (caught).
    fn run(self: Box<Self>) -> bool;

    /// Drops the job unrun and resolves its slot with `why`; `true` if
    /// the closure's `Drop` or the awaiting waker panicked (caught).
    fn refuse(self: Box<Self>, why: BlockingError) -> bool;
}

/// A job and the slot it resolves. Dropped unrun (the queue dropped at
/// shutdown, or a spawn refused after it), it resolves the slot to
/// `Err(Shutdown)` and wakes the waiter: a `Blocking` awaited from outside
/// the runtime (a plain thread, another runtime's task) would otherwise
/// wait for ever, since nothing else tells it the job is gone.
struct JobCell<F, R> {
    /// `None` once run.
    f: Option<F>,
    slot: Arc<Slot<R>>,
}

impl<F, R> Run for JobCell<F, R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    fn run(mut self: Box<Self>) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let r = catch_unwind(AssertUnwindSafe(f))
            .map_err(|p| BlockingError::Panicked(PanicPayload::from_any(p)));
        self.slot.resolve(r)
    }

    fn refuse(mut self: Box<Self>, why: BlockingError) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let dropped = crate::outcome::drop_caught(f);
        self.slot.resolve(Err(why)) | dropped.is_some()
    }
}

impl<F, R> Drop for JobCell<F, R> {
    fn drop(&mut self) {
        let Some(f) = self.f.take() else {
            return;
        };
        // Never run. The closure's captures are the user's (their `Drop`
        // may panic): dropped under a catch first, so that the waiter is
        // resolved and woken whatever they do, and it finds them gone.
        let dropped = catch_unwind(AssertUnwindSafe(move || drop(f)));
        let wake_panicked = self.slot.resolve(Err(BlockingError::Shutdown));
        // A panic is passed on for the caller to count (`shutdown` drops
        // each job under a catch), unless this drop is itself part of an
        // unwind (a second panic would abort).
        if std::thread::panicking() {
            return;
        }
        match dropped {
            Err(p) => resume_unwind(p),
            Ok(()) if wake_panicked => resume_unwind(Box::new("a blocking job's waker panicked")),
            Ok(()) => {}
        }
    }
}

struct State {
    queue: VecDeque<Job>,
    threads: usize,
    /// Threads waiting for a job (in `worker`'s wait), counting those
    /// already woken for one that have not yet taken the lock back.
    idle: usize,
    /// Wake-ups handed to idle threads (`spawn`) and not yet taken up: a
    /// job may claim an idle thread only while `idle > woken`; otherwise
    /// it starts a thread of its own. (Counting `idle` alone, two spawns
    /// in a row with one idle thread both woke that one thread and
    /// started none: two jobs that wait for each other hung.) A thread
    /// that leaves the wait, for whatever reason (a wake-up, its
    /// keep-alive timing out, a spurious wake), takes one up if any is
    /// left: the counts are of threads, not of which one was meant, and
    /// any thread back from the wait looks at the queue.
    woken: usize,
    running: usize,
    shutdown: bool,
}

struct PoolInner {
    state: std::sync::Mutex<State>,
    cond: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    name: String,
    /// `Builder::thread_stack_size`, if set.
    stack_size: Option<usize>,
    /// Panics caught around jobs (`worker`), for `RuntimeStats`.
    panics: std::sync::atomic::AtomicU64,
}

/// The pool (cheap to clone: a handle).
#[derive(Clone)]
pub(crate) struct BlockingPool {
    inner: Arc<PoolInner>,
}

/// Why a blocking job gave no value.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::BlockingError;
/// let out = rt.block_on(|cx| async move {
///     let r = cx.spawn_blocking(|| -> u8 { panic!("job failed") }).await;
///     Ok::<_, ()>(matches!(r, Err(BlockingError::Panicked(_))))
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockingError {
    /// The job panicked.
    #[error("blocking job panicked: {0}")]
    Panicked(PanicPayload),
    /// The runtime shut down before the job could start.
    #[error("the runtime shut down before the blocking job started")]
    Shutdown,
    /// The pool had no thread for the job and could not start one (the
    /// operating system refused, with the reason given): the job was
    /// dropped unrun rather than left queued for a thread that might never
    /// come.
    #[error("no thread could be started for the blocking job: {0}")]
    NoThread(String),
    /// The region body awaiting the job was cut off (its region's cleanup
    /// budget ran out after a cancellation, a timeout's included) while
    /// the job still ran: the wait ends with the region's reason, and the
    /// job runs on to its end, detached, as a job dropped unawaited does
    /// (see [`Blocking`]). Only a region body's wait ends so (the body of
    /// [`Cx::region`](crate::Cx::region), `timeout`, `scope`...): a task
    /// cut off while it waits is dropped, its wait with it.
    ///
    /// The wait sees the cut-off when it is polled: the cut-off wakes the
    /// body, and a body that awaits the job directly polls it again (the
    /// branches of this crate's `join!`, `join_all` and `race` are tasks,
    /// which a cut-off drops). A combinator inside the body that re-polls
    /// only the branches whose own waker fired (`futures`'
    /// `FuturesUnordered`, `buffer_unordered`) does not: a job awaited
    /// inside one ends the wait only when the job ends (found by review;
    /// a [`JoinHandle`](crate::JoinHandle) awaited there waits the same
    /// way for its task). Await such a job directly, or in a spawned task.
    #[error("the wait for a blocking job was cut off: {0}")]
    CutOff(CancelReason),
}

impl BlockingPool {
    pub(crate) fn new(
        max_threads: usize,
        keep_alive: Duration,
        name: String,
        stack_size: Option<usize>,
    ) -> Self {
        BlockingPool {
            inner: Arc::new(PoolInner {
                state: std::sync::Mutex::new(State {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    woken: 0,
                    running: 0,
                    shutdown: false,
                }),
                cond: Condvar::new(),
                max_threads: max_threads.max(1),
                keep_alive,
                name,
                stack_size,
                panics: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `f`; resolves with its value. The job gets a thread of its
    /// own while the pool has fewer than `max_threads`: an idle one not
    /// yet claimed by an earlier job, or a new one.
    pub(crate) fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Blocking<R> {
        let slot = Arc::new(Slot {
            value: Mutex::new(None),
            waker: WakerSlot::new(),
        });
        let job: Job = Box::new(JobCell {
            f: Some(f),
            slot: slot.clone(),
        });
        let mut st = self.state();
        if st.shutdown {
            drop(st);
            // Its drop resolves the slot to `Err(Shutdown)`.
            drop(job);
            return Blocking { slot };
        }
        st.queue.push_back(job);
        if st.idle > st.woken {
            st.woken += 1;
            drop(st);
            self.inner.cond.notify_one();
        } else if st.threads < self.inner.max_threads {
            st.threads += 1;
            drop(st);
            if let Err(why) = self.start_thread() {
                self.thread_refused(&why);
            }
        }
        Blocking { slot }
    }

    /// Starts a pool thread. A refusal by the operating system is an
    /// `Err`, and so is a panic of the standard library's spawn (a name
    /// it cannot take; `Builder::build` refuses those, but the count must
    /// not depend on it): either way no thread runs `worker`.
    fn start_thread(&self) -> Result<(), String> {
        let pool = self.clone();
        let mut builder = std::thread::Builder::new().name(self.inner.name.clone());
        if let Some(bytes) = self.inner.stack_size {
            builder = builder.stack_size(bytes);
        }
        match crate::outcome::catch(move || builder.spawn(move || pool.worker())) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(panic) => Err(panic.message().to_owned()),
        }
    }

    /// A thread counted by `spawn` could not be started: the count is
    /// given back, and if no thread is left to take the queue, what it
    /// holds is refused (`BlockingError::NoThread`) rather than stranded
    /// (found by review: the count leaked, and once it reached the
    /// maximum every job waited for ever for a thread that never came).
    /// With a thread left, the jobs wait for it, as before.
    fn thread_refused(&self, why: &str) {
        let mut st = self.state();
        st.threads -= 1;
        if st.threads > 0 {
            return;
        }
        let stranded: Vec<Job> = st.queue.drain(..).collect();
        drop(st);
        for job in stranded {
            // The closures and wakers are the user's: caught and counted.
            let refused = crate::outcome::catch(|| job.refuse(BlockingError::NoThread(why.into())));
            if !matches!(refused, Ok(false)) {
                // Relaxed: a counter, read for reports.
                self.inner
                    .panics
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    fn worker(&self) {
        let mut st = self.state();
        loop {
            if let Some(job) = st.queue.pop_front() {
                st.running += 1;
                drop(st);
                // The job catches the closure's panic itself, and its slot
                // the awaiting waker's (reported as `true`), but not the
                // drop of the result when nobody awaits it any more (user
                // code). A panic there must not end this thread (the pool
                // would count it running for ever, and the next job wait
                // for a thread that is gone). Each is counted.
                if !matches!(crate::outcome::catch(|| job.run()), Ok(false)) {
                    // Relaxed: a counter, read for reports.
                    self.inner
                        .panics
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                st = self.state();
                st.running -= 1;
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .inner
                .cond
                .wait_timeout(st, self.inner.keep_alive)
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
            st.idle -= 1;
            st.woken = st.woken.saturating_sub(1);
            if timeout.timed_out() && st.queue.is_empty() {
                break;
            }
        }
        st.threads -= 1;
    }

    /// Panics caught around jobs, after the job's own closure (see
    /// `worker`).
    pub(crate) fn panics(&self) -> u64 {
        // Relaxed: a counter, read for reports.
        self.inner.panics.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops taking jobs; queued ones resolve to `Shutdown`. Returns how
    /// many jobs are still running (they cannot be interrupted).
    pub(crate) fn shutdown(&self) -> usize {
        let mut st = self.state();
        st.shutdown = true;
        let mut queued: Vec<Job> = st.queue.drain(..).collect();
        let running = st.running;
        drop(st);
        self.inner.cond.notify_all();
        // Dropping a queued job resolves its slot to `Err(Shutdown)` and
        // wakes its waiter (`JobCell`'s drop). The closures are the user's
        // (their captures' `Drop` may panic), and so are the wakers: each
        // job dropped under a catch, a panic counted, the rest still
        // dropped.
        drop_each_caught(&mut queued, || {
            // Relaxed: a counter, read for reports.
            self.inner
                .panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        running
    }
}

/// Runs `f` now, on the calling thread, for a scheduler without a pool
/// (the lab runtime: a job is one step of the task that asks for it), as
/// on a thread that polls no task (found by review: a job that ran a
/// runtime of its own was refused as a `block_on` from inside a task).
pub(crate) fn run_inline<R: Send + 'static>(f: impl FnOnce() -> R) -> Blocking<R> {
    let r = catch_unwind(AssertUnwindSafe(|| crate::task::outside_tasks(f)))
        .map_err(|p| BlockingError::Panicked(PanicPayload::from_any(p)));
    Blocking {
        slot: Arc::new(Slot {
            value: Mutex::new(Some(r)),
            waker: WakerSlot::new(),
        }),
    }
}

struct Slot<R> {
    value: Mutex<Option<Result<R, BlockingError>>>,
    waker: WakerSlot,
}

impl<R> Slot<R> {
    /// Stores the job's result and wakes the waiter; `true` if its waker
    /// panicked (caught).
    fn resolve(&self, r: Result<R, BlockingError>) -> bool {
        *lock(&self.value) = Some(r);
        self.waker.wake()
    }
}

/// A blocking job's result, awaited. Not a checkpoint: a thread running
/// blocking code cannot be interrupted, so the awaiting code waits for it
/// through a cancellation, until its cleanup budget runs out: a task is
/// then cut off (dropped, and the job detached), and a region body (which
/// runs inside its owner task, and is not dropped) gets
/// [`BlockingError::CutOff`] from this wait, the job detached the same
/// way. (Before, a region body waited on past its cut-off: a job that
/// never ended held the region open for ever; found by review.)
///
/// **Not a child of the region.** A job cannot be cancelled or cut off (a
/// thread cannot be), so a region that waited for its jobs could be held
/// open for ever, against the cleanup budget's promise; instead a job
/// belongs to the runtime's blocking pool. Awaited, it ends before the
/// awaiting code goes on. Dropped unawaited (or cut off with its task),
/// it runs to its end on the pool, detached from the region that started
/// it, and [`Runtime::shutdown`](crate::Runtime::shutdown) reports it in
/// `blocking_jobs_running` while it runs. Await every job whose effects
/// must be over when the region closes.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     // Off the workers: a blocking call that would stall them.
///     let read = cx.spawn_blocking(|| std::fs::metadata("/").is_ok()).await;
///     Ok::<_, ()>(read.ok())
/// });
/// assert_eq!(out.ok(), Some(Some(true)));
/// ```
pub struct Blocking<R> {
    slot: Arc<Slot<R>>,
}

impl<R> Drop for Blocking<R> {
    fn drop(&mut self) {
        // The waker of the last poll goes now, not when the job ends: a
        // detached job that runs long must not keep the awaiting task's
        // allocation alive through it (found by review). A `resolve`
        // racing this takes it or finds it gone, either is fine. The waker
        // is user code: its `Drop` is caught, and a panic counted.
        crate::outcome::drop_caught_here(self.slot.waker.take());
    }
}

impl<R> Future for Blocking<R> {
    type Output = Result<R, BlockingError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Under the turn's cooperative budget, as every await point that
        // can be ready at once (found by review: in the lab, where a job
        // runs in line and is ready at its first poll, a loop of jobs
        // never yielded, and the run never reached its step limit).
        crate::budget::coop::budgeted(cx, |cx| self.poll_job(cx))
    }
}

impl<R> Blocking<R> {
    fn poll_job(&self, cx: &mut Context<'_>) -> Poll<Result<R, BlockingError>> {
        if let Some(v) = lock(&self.slot.value).take() {
            return Poll::Ready(v);
        }
        // Not done: a region body whose cleanup budget ran out waits no
        // longer (its cut-off wakes it to look). The job runs on, detached.
        if let Some(reason) = crate::task::polled_body_cut_off() {
            return Poll::Ready(Err(BlockingError::CutOff(reason)));
        }
        self.slot.waker.register(cx.waker());
        if let Some(v) = lock(&self.slot.value).take() {
            return Poll::Ready(v);
        }
        // Nothing inferred from who else holds the slot: the job resolves
        // it whether it runs or is dropped unrun (`JobCell`), and wakes the
        // waker registered above. (Reading `Arc::strong_count` here as
        // "dropped unrun" raced a job that stored its value and let its
        // `Arc` go between the look above and the count: a finished job
        // reported `Err(Shutdown)` on a live runtime.)
        Poll::Pending
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Polls a job's result once with a waker that does nothing.
    fn poll_now<R>(b: &mut Blocking<R>) -> Poll<Result<R, BlockingError>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(b).poll(&mut cx)
    }

    /// Found by review: a thread the pool could not start (here: a name
    /// the standard library panics on; `Builder::build` refuses such a
    /// name now, but the pool must not depend on it) panicked `spawn`
    /// after the thread count was taken, so the count leaked and, once it
    /// reached the maximum, every job waited for a thread that never came.
    /// Each refusal gives the count back, and a job no thread is left to
    /// run is refused (`NoThread`) rather than stranded.
    #[test]
    fn a_thread_that_cannot_start_strands_no_job() {
        let pool = BlockingPool::new(2, Duration::from_secs(10), "a\0b".into(), None);
        for _ in 0..3 {
            let mut job = pool.spawn(|| 1);
            match poll_now(&mut job) {
                Poll::Ready(Err(BlockingError::NoThread(why))) => {
                    assert!(why.contains("null"), "{why}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(pool.state().threads, 0, "every count given back");
        // A pool that can start threads runs its jobs as before.
        let pool = BlockingPool::new(2, Duration::from_secs(10), "ok".into(), None);
        let mut job = pool.spawn(|| 2);
        let out = loop {
            if let Poll::Ready(r) = poll_now(&mut job) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(out, Ok(2));
        assert_eq!(pool.shutdown(), 0);
    }
}
