//! [`Runtime`] and its [`Builder`]: start workers, run a root region with
//! [`Runtime::block_on`], shut down with a deadline and a report.
//!
//! ## Shutdown
//!
//! Cancel the root (`Shutdown`), wait for the drain, cut off the tasks not
//! waiting on regions of their own, then everything, stop the workers,
//! report (`ShutdownReport`). Never waits past its deadline for a task
//! (only for the `Drop` of those it takes from stuck workers' queues, run
//! on the calling thread); a poll that never returns is reported, not
//! waited for (`workers_stuck` counts the
//! workers inside a poll at the deadline, and what sits in their queues is
//! dropped, not leaked: stolen from their deques and LIFO slots at the
//! deadline, and what they still hold when the poll returns dropped by the
//! worker itself). Whatever shutdown finds queued once the workers have
//! stopped is cut off and dropped, never polled again: a task spawned
//! after the last cut-off (by the `Drop` of one cut off) is cut off as it
//! is spawned, and one spawned once the workers are told to stop is
//! refused. A region body whose grace runs out (it runs inside its owner
//! task) first gets the poll its cut-off wakes it for, its masks lifted,
//! to see the cancellation and return; still running after it, it is
//! dropped where it lies, in its owner's poll, as a task is
//! (`RuntimeStats::region_bodies_cut_off`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle as ThreadHandle, Thread};

use crate::blocking::BlockingPool;
use crate::budget::Budget;
use crate::budget::CleanupBudget;
use crate::cancel::{CancelKind, CancelReason, Origin};
use crate::cx::Cx;
use crate::cx::{CxCore, spawn_in};
use crate::loom::Ordering;
use crate::outcome::Outcome;
use crate::region::{Region, RegionError};
use crate::sched::pool::Shared;
use crate::sched::{RuntimeStats, Scheduler};
use crate::time::{Clock, Duration, SystemClock};
use runtime_cap::{All, AmbientAuthority};

/// Configures and builds a [`Runtime`].
///
/// ```
/// use runtime_core::{Runtime, caps::ambient_authority, time::Duration};
/// let rt = Runtime::builder()
///     .worker_threads(2)
///     .thread_name("app-worker")
///     .shutdown_timeout(Duration::from_secs(2))
///     .seed(7)
///     .build(ambient_authority())
///     .unwrap();
/// assert_eq!(rt.worker_threads(), 2);
/// ```
#[derive(Clone)]
pub struct Builder {
    workers: usize,
    current_thread: bool,
    thread_name: String,
    max_blocking_threads: usize,
    blocking_keep_alive: Duration,
    shutdown_timeout: Duration,
    cleanup: CleanupBudget,
    clock: Option<Arc<dyn Clock>>,
    seed: u64,
    stack_size: Option<usize>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("current_thread", &self.current_thread)
            .field("thread_name", &self.thread_name)
            .field("stack_size", &self.stack_size)
            .finish_non_exhaustive()
    }
}

/// Why a runtime could not be built.
///
/// ```
/// use runtime_core::{BuildError, Runtime, caps::ambient_authority};
/// let err = Runtime::builder().worker_threads(0).build(ambient_authority()).unwrap_err();
/// assert!(matches!(err, BuildError::NoWorkers));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `worker_threads(0)` on a multi-threaded runtime.
    #[error(
        "a multi-threaded runtime needs at least one worker thread (use Builder::current_thread for none)"
    )]
    NoWorkers,
    /// The operating system refused to start a worker thread.
    #[error("could not start worker thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// `thread_stack_size` below [`MIN_THREAD_STACK`].
    #[error(
        "thread_stack_size({0}) is below the least a worker needs ({min} bytes: a task's poll, \
         a panic's unwinding and its backtrace run on it)",
        min = MIN_THREAD_STACK
    )]
    StackTooSmall(usize),
    /// `thread_name` with an interior NUL byte, which no operating-system
    /// thread name can hold (the standard library panics on it when the
    /// thread starts).
    #[error("thread_name({0:?}) contains a NUL byte, which a thread name cannot hold")]
    ThreadName(String),
    /// `worker_threads` above [`MAX_WORKER_THREADS`].
    #[error(
        "worker_threads({0}) is more than the most a runtime starts ({max})",
        max = MAX_WORKER_THREADS
    )]
    TooManyWorkers(usize),
}

/// The most worker threads a multi-threaded runtime starts: 65 536.
/// [`Builder::build`] refuses more ([`BuildError::TooManyWorkers`]): the
/// per-worker queues and counters are allocated before any thread starts,
/// and for a count such as `1 << 40` that allocation failed, which aborts
/// the process instead of returning an error. (A count below the limit
/// that the operating system cannot start threads for is
/// [`BuildError::Spawn`].)
pub const MAX_WORKER_THREADS: usize = 1 << 16;

/// The smallest [`Builder::thread_stack_size`] a runtime accepts: 64 KiB.
/// Below it (the standard library rounds a smaller request up to the
/// platform's minimum, 16 KiB on Linux), a task that panics while
/// `RUST_BACKTRACE` is set overflows the stack of the worker that catches
/// it, and a few nested regions do even without: the process aborts.
pub const MIN_THREAD_STACK: usize = 64 << 10;

impl Builder {
    fn new() -> Self {
        Builder {
            workers: thread::available_parallelism().map_or(1, usize::from),
            current_thread: false,
            thread_name: "runtime-worker".into(),
            max_blocking_threads: 64,
            blocking_keep_alive: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            cleanup: CleanupBudget::DEFAULT,
            clock: None,
            seed: 0x5EED_0FC0_DE00_0001,
            stack_size: None,
        }
    }

    /// The stack size of the threads the runtime starts, workers and
    /// blocking threads, in bytes (default: the standard library's, 2 MiB
    /// unless `RUST_MIN_STACK` says otherwise). Every poll of a task runs
    /// on a worker's stack, and a region's body is polled inside the poll
    /// of the task that opened it: code that nests regions (or futures)
    /// a thousand deep needs more than the default. With
    /// [`current_thread`](Self::current_thread), tasks run on the thread
    /// that calls `block_on`, whose stack this does not change.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder()
    ///     .worker_threads(1)
    ///     .thread_stack_size(8 << 20)
    ///     .build(ambient_authority())
    ///     .unwrap();
    /// assert_eq!(rt.block_on(|_| async { Ok::<_, ()>(1) }).ok(), Some(1));
    /// ```
    ///
    /// [`build`](Self::build) refuses a size below [`MIN_THREAD_STACK`]
    /// ([`BuildError::StackTooSmall`]).
    pub fn thread_stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Worker threads (default: one per core). [`build`](Self::build)
    /// refuses 0 ([`BuildError::NoWorkers`]) and more than
    /// [`MAX_WORKER_THREADS`] ([`BuildError::TooManyWorkers`]).
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().worker_threads(2).build(ambient_authority()).unwrap();
    /// assert_eq!(rt.worker_threads(), 2);
    /// ```
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.workers = n;
        self.current_thread = false;
        self
    }

    /// The current-thread flavour: no worker threads; `block_on` runs
    /// every task on the calling thread.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// assert_eq!(rt.worker_threads(), 0);
    /// assert_eq!(rt.block_on(|_| async { Ok::<_, ()>(1) }).ok(), Some(1));
    /// ```
    pub fn current_thread(mut self) -> Self {
        self.current_thread = true;
        self
    }

    /// Names of worker threads (blocking threads get `-blocking` added).
    /// [`build`](Self::build) refuses a name with a NUL byte in it
    /// ([`BuildError::ThreadName`]).
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().worker_threads(1).thread_name("app").build(ambient_authority()).unwrap();
    /// let name = rt.block_on(|_| async {
    ///     Ok::<_, ()>(std::thread::current().name().map(String::from))
    /// });
    /// assert!(name.unwrap().unwrap().starts_with("app"));
    /// ```
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// The most threads the blocking pool may run at once (default 64).
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().max_blocking_threads(4).build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move { Ok::<_, ()>(cx.spawn_blocking(|| 2 + 2).await.ok()) });
    /// assert_eq!(out.ok(), Some(Some(4)));
    /// ```
    pub fn max_blocking_threads(mut self, n: usize) -> Self {
        self.max_blocking_threads = n.max(1);
        self
    }

    /// How long an idle blocking thread lingers (default 10 s).
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// use runtime_core::time::Duration;
    /// let rt = Runtime::builder()
    ///     .blocking_keep_alive(Duration::from_millis(100))
    ///     .build(ambient_authority())
    ///     .unwrap();
    /// # drop(rt);
    /// ```
    pub fn blocking_keep_alive(mut self, d: Duration) -> Self {
        self.blocking_keep_alive = d;
        self
    }

    /// The deadline used when the runtime is dropped (default 10 s).
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// use runtime_core::time::Duration;
    /// let rt = Runtime::builder()
    ///     .shutdown_timeout(Duration::from_millis(200)) // what dropping `rt` allows
    ///     .build(ambient_authority())
    ///     .unwrap();
    /// drop(rt);
    /// ```
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// The default cleanup budget of every region.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// use runtime_core::{CleanupBudget, time::Duration};
    /// let rt = Runtime::builder()
    ///     .cleanup_budget(CleanupBudget { polls: Some(100), grace: Some(Duration::from_millis(50)) })
    ///     .build(ambient_authority())
    ///     .unwrap();
    /// # drop(rt);
    /// ```
    pub fn cleanup_budget(mut self, cleanup: CleanupBudget) -> Self {
        self.cleanup = cleanup;
        self
    }

    /// Reads time from `clock` instead of the system clock. A panic in the
    /// clock (user code) is caught wherever the runtime reads it (its
    /// workers, its timers, `Cx::now`), counted in
    /// [`RuntimeStats::panics_caught`], and read as its highest reading so
    /// far: no worker is lost to it. Its readings are held to that highest
    /// reading too, so the runtime's time never goes back (a clock over
    /// `SystemTime` steps back when the system's time is corrected).
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// use runtime_core::time::{Clock, Instant};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// // A clock that starts at zero and moves only when told.
    /// #[derive(Default)]
    /// struct Manual(AtomicU64);
    /// impl Clock for Manual {
    ///     fn now(&self) -> Instant {
    ///         Instant::from_nanos(self.0.load(Ordering::SeqCst))
    ///     }
    /// }
    /// let rt = Runtime::builder().current_thread().clock(Manual::default()).build(ambient_authority()).unwrap();
    /// let now = rt.block_on(|cx| async move { Ok::<_, ()>(cx.now()) });
    /// assert_eq!(now.ok(), Some(Instant::ZERO));
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The seed of every task's random sequence (`Cx::random_u64`): the
    /// same seed gives the same numbers. Default: a fixed constant.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let draw = |seed| {
    ///     let rt = Runtime::builder().current_thread().seed(seed).build(ambient_authority()).unwrap();
    ///     rt.block_on(|cx| async move { Ok::<_, ()>(cx.random_u64()) }).unwrap()
    /// };
    /// assert_eq!(draw(7), draw(7));
    /// assert_ne!(draw(7), draw(8));
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Starts the runtime. A runtime is where authority enters a program
    /// (its root context holds every capability), so building one takes the
    /// [`AmbientAuthority`] token: grep for `ambient_authority` to find
    /// every such place.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// use runtime_core::BuildError;
    /// assert!(matches!(
    ///     Runtime::builder().worker_threads(0).build(ambient_authority()),
    ///     Err(BuildError::NoWorkers)
    /// ));
    /// ```
    pub fn build(self, _ambient: AmbientAuthority) -> Result<Runtime, BuildError> {
        if !self.current_thread && self.workers == 0 {
            return Err(BuildError::NoWorkers);
        }
        if let Some(bytes) = self.stack_size.filter(|&b| b < MIN_THREAD_STACK) {
            // Found by review: 0 or 1 was accepted, and the first panic
            // under RUST_BACKTRACE=1 aborted the process.
            return Err(BuildError::StackTooSmall(bytes));
        }
        if self.thread_name.contains('\0') {
            // Found by review: the standard library panics on starting a
            // thread so named: `build` panicked, and on the current-thread
            // flavour each blocking job's start did, later.
            return Err(BuildError::ThreadName(self.thread_name));
        }
        if !self.current_thread && self.workers > MAX_WORKER_THREADS {
            // Found by review: `1 << 40` aborted on allocation in
            // `Shared::new`, before any error could be returned.
            return Err(BuildError::TooManyWorkers(self.workers));
        }
        let cores = if self.current_thread { 1 } else { self.workers };
        let user_clock = self.clock.is_some();
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock::new(_ambient)));
        let blocking = BlockingPool::new(
            self.max_blocking_threads,
            self.blocking_keep_alive,
            format!("{}-blocking", self.thread_name),
            self.stack_size,
        );
        let shared = Shared::new(cores, clock, user_clock, blocking.clone());
        let sched: Arc<dyn Scheduler> = shared.clone();
        let root = Region::root(sched, self.cleanup);
        let mut rt = Runtime {
            shared,
            root,
            threads: Vec::new(),
            blocking,
            builder: self,
            shut: false,
            shut_elsewhere_tried: false,
            block_ons: std::sync::atomic::AtomicU64::new(0),
        };
        if !rt.builder.current_thread {
            for i in 0..cores {
                let shared = rt.shared.clone();
                let mut t = thread::Builder::new().name(format!("{}-{i}", rt.builder.thread_name));
                if let Some(bytes) = rt.builder.stack_size {
                    t = t.stack_size(bytes);
                }
                let t = t
                    .spawn(move || {
                        shared.drive(i, &|| false, None);
                    })
                    .map_err(BuildError::Spawn)?;
                rt.threads.push(t);
            }
        }
        Ok(rt)
    }
}

/// The runtime: worker threads, timers, the blocking pool, and the root
/// region every task descends from.
///
/// Dropping it shuts it down with the builder's shutdown timeout.
///
/// ```
/// use runtime_core::{Runtime, caps::ambient_authority};
/// let rt = Runtime::builder().worker_threads(2).build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let h = cx.spawn(|_| async { "done" });
///     Ok::<_, ()>(h.await.unwrap())
/// });
/// assert_eq!(out.ok(), Some("done"));
/// ```
pub struct Runtime {
    shared: Arc<Shared>,
    root: Arc<Region>,
    threads: Vec<ThreadHandle<()>>,
    blocking: BlockingPool,
    builder: Builder,
    shut: bool,
    /// Set on the runtime that a drop from inside it hands to a thread of
    /// its own: if that thread cannot be started, it shuts down where it
    /// is (see `Drop`).
    shut_elsewhere_tried: bool,
    /// `block_on` calls so far (each root task's seed is numbered by it).
    block_ons: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("worker_threads", &self.worker_threads())
            .field("stats", &self.stats())
            .finish()
    }
}

/// What shutting down found.
///
/// ```
/// use runtime_core::{Runtime, caps::ambient_authority, time::Duration};
/// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
/// let report = rt.shutdown(Duration::from_secs(1));
/// assert!(report.completed && report.tasks_cut_off == 0 && report.workers_stuck == 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Every task finished (drained, or cut off and dropped) by the time
    /// shutdown returned.
    pub completed: bool,
    /// Tasks whose cleanup overran and whose futures were dropped, over the
    /// runtime's life (including this shutdown).
    pub tasks_cut_off: u64,
    /// Tasks still not finished when shutdown returned (stuck inside a
    /// poll that never returns): their worker threads are left behind.
    pub tasks_unfinished: u64,
    /// Finalizers cut off or skipped, over the runtime's life.
    pub finalizers_cut_off: u64,
    /// Blocking jobs still running (they cannot be interrupted).
    pub blocking_jobs_running: usize,
    /// Worker threads that did not stop before the deadline.
    pub workers_stuck: usize,
}

/// The seed of the `n`th root task of a runtime seeded with `seed`.
pub(crate) fn root_seed(seed: u64, n: u64) -> u64 {
    crate::task::mix64(seed ^ crate::task::mix64(n))
}

/// The handle of a `block_on`'s root task (see [`spawn_root`]).
pub(crate) type RootHandle<T, E> =
    crate::task::JoinHandle<Outcome<T, RegionError<E>>, std::convert::Infallible>;

/// Spawns the root task of a `block_on` into `root`: it runs `body` as the
/// body of a fail-fast region, with a context of capabilities `C` (the
/// real runtime's `All`, the lab's `LabCaps`). Shared by
/// [`Runtime::block_on`] and the lab runtime.
pub(crate) fn spawn_root<C, G, F, T, E>(root: &Arc<Region>, seed: u64, body: G) -> RootHandle<T, E>
where
    C: runtime_cap::CapSet,
    G: FnOnce(Cx<C>) -> F + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    spawn_in(
        root,
        Budget::UNLIMITED,
        seed,
        move |core: CxCore| async move {
            Ok::<_, std::convert::Infallible>(Cx::<C>::from_core(core, C::MASK).region(body).await)
        },
    )
}

/// The outcome of a root task spawned by [`spawn_root`]: the region's.
pub(crate) fn root_outcome<T, E>(
    out: Outcome<Outcome<T, RegionError<E>>, std::convert::Infallible>,
) -> Outcome<T, RegionError<E>> {
    match out {
        Outcome::Ok(region) => region,
        Outcome::Err(never) => match never {},
        Outcome::Cancelled(r) => Outcome::Cancelled(r),
        Outcome::Panicked(p) => Outcome::Panicked(p),
    }
}

/// A waker that unparks a thread.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl Runtime {
    /// A builder with the defaults.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
    /// # drop(rt);
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A multi-threaded runtime with one worker per core.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::new(ambient_authority()).unwrap();
    /// assert!(rt.worker_threads() >= 1);
    /// ```
    pub fn new(ambient: AmbientAuthority) -> Result<Runtime, BuildError> {
        Builder::new().build(ambient)
    }

    /// Number of worker threads (0 for the current-thread flavour).
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().worker_threads(3).build(ambient_authority()).unwrap();
    /// assert_eq!(rt.worker_threads(), 3);
    /// ```
    pub fn worker_threads(&self) -> usize {
        self.threads.len()
    }

    /// The runtime's counters.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// rt.block_on(|cx| async move {
    ///     cx.spawn(|_| async {});
    ///     Ok::<_, ()>(())
    /// });
    /// let stats = rt.stats();
    /// assert!(stats.tasks_spawned >= 1);
    /// assert_eq!(stats.tasks_alive(), 0);
    /// ```
    pub fn stats(&self) -> RuntimeStats {
        let mut stats = self.shared.stats().snapshot();
        stats.panics_caught = stats.panics_caught.saturating_add(self.blocking.panics());
        stats
    }

    /// Runs `body` as the body of a fail-fast region under the runtime's
    /// root, on the runtime's workers, and returns the region's outcome
    /// once it and every task in it have finished.
    ///
    /// On the current-thread flavour the calling thread runs every task
    /// (when several threads call `block_on` on one current-thread
    /// runtime, they take turns driving it); on the multi-threaded one it
    /// waits.
    ///
    /// # Panics
    ///
    /// When called on a thread that is running a runtime's tasks (from
    /// inside a task, or a waker or `Drop` that a task's poll runs): the
    /// call would wait for work that only this thread may be free to run,
    /// a deadlock. Await the future there instead, or run it with
    /// `cx.spawn` or `cx.region`. (Tokio refuses the same call the same
    /// way.)
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let nested = rt.block_on(|_cx| async move {
    ///     let inner = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    ///     let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    ///         inner.block_on(|_cx| async { Ok::<_, ()>(1) })
    ///     }));
    ///     Ok::<_, ()>(refused.is_err())
    /// });
    /// assert_eq!(nested.ok(), Some(true));
    /// ```
    pub fn block_on<G, F, T, E>(&self, body: G) -> Outcome<T, RegionError<E>>
    where
        G: FnOnce(Cx<All>) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        assert!(
            // A worker's thread, or one inside a task's poll (a worker
            // firing timers from a task's checkpoint marks itself off the
            // pool for the wakes; the lab polls tasks on its caller's).
            // And this runtime's workers at any depth: a blocking job the
            // lab runs in line inside one of its tasks is marked off the
            // workers (it may run a runtime of its own), not off this one.
            !Shared::on_any_worker()
                && crate::task::running_task().is_null()
                && !crate::sched::pool::drives(self.shared.stats()),
            "Runtime::block_on called from a thread that is running runtime tasks \
             (inside a task, or a waker or Drop that one runs): it would wait for work \
             this thread may be needed for, a deadlock. Await the future instead, or \
             run it with cx.spawn / cx.region."
        );
        let n = self
            .block_ons
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut handle = spawn_root(&self.root, root_seed(self.builder.seed, n), body);
        let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
        let mut task_cx = Context::from_waker(&waker);
        let out = loop {
            // The last task turn on this thread may have spent the
            // cooperative budget; this poll is not part of any turn.
            crate::budget::coop::unconstrained();
            if let Poll::Ready(o) = std::pin::Pin::new(&mut handle).poll(&mut task_cx) {
                break o;
            }
            if self.builder.current_thread {
                let h = &handle;
                if self.shared.drive(0, &|| h.is_finished(), None) {
                    continue;
                }
                // Another thread is driving the core (a second `block_on`
                // on this runtime): it runs our task too, until its own
                // finishes; then the core is free for us. Look again soon.
                thread::park_timeout(Duration::from_millis(1));
                continue;
            }
            thread::park();
        };
        root_outcome(out)
    }

    /// Shuts down: cancels the root region (reason `Shutdown`), lets every
    /// task drain and every finalizer run within its cleanup budget until
    /// `timeout`, cuts off what is left, stops the workers, and reports.
    /// Never takes (much) longer than `timeout`, but for one thing: the
    /// tasks left queued on workers stuck in a poll at the deadline are
    /// dropped on the calling thread (stolen from their queues, so that
    /// nothing is leaked), and a slow `Drop` of theirs is waited for.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// use runtime_core::time::Duration;
    /// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
    /// let report = rt.shutdown(Duration::from_secs(1));
    /// assert!(report.completed);
    /// ```
    ///
    /// # Panics
    ///
    /// If called from inside this runtime (one of its tasks, or a waker or
    /// `Drop` that one of its workers runs): it would wait for the very
    /// task that calls it. Call it from another thread; or drop the
    /// runtime there, which shuts it down on a thread of its own.
    pub fn shutdown(mut self, timeout: Duration) -> ShutdownReport {
        self.shutdown_handle().refuse_inside("Runtime::shutdown");
        self.shutdown_inner(timeout)
    }

    /// A handle that can shut the runtime down from another thread (a
    /// signal handler, a supervisor) while `block_on` is running.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// use runtime_core::time::Duration;
    /// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
    /// let handle = rt.shutdown_handle();
    /// let stopper = std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    ///     handle.shutdown(Duration::from_secs(1))
    /// });
    /// // The body sleeps "forever"; the handle cancels it (reason `Shutdown`).
    /// let out = rt.block_on(|cx| async move { cx.sleep(Duration::from_secs(3600)).await });
    /// assert!(out.is_cancelled());
    /// assert_eq!(stopper.join().unwrap(), 0); // nothing left alive
    /// ```
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
            root: self.root.clone(),
            current_thread: self.builder.current_thread,
        }
    }

    fn shutdown_inner(&mut self, timeout: Duration) -> ShutdownReport {
        self.shut = true;
        let deadline = deadline_after(std::time::Instant::now(), timeout);
        let alive = self.shutdown_handle().drain(timeout);

        // Stop the workers.
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.notify_all();
        // A worker that is not inside a poll stops within microseconds of
        // the flag: wait for it (a little past the deadline if need be). One
        // still inside a poll a little after the deadline and the flag is
        // stuck (a poll that blocks). Not at once: a worker busy with
        // short polls (the drops of tasks cut off one after another) is
        // inside one most of the time, and was reported stuck though it
        // stopped a few microseconds later (found by review).
        let flagged = deadline.max(std::time::Instant::now());
        let grace = flagged + Duration::from_millis(100);
        let busy_stuck = flagged + Duration::from_millis(10);
        let mut stuck = 0;
        // A drop from inside that could not start a thread of its own
        // (see `Drop`) runs here, on one of the workers: that one stops
        // when this returns to its loop; it is not waited for.
        let own = crate::sched::pool::worker_index(self.shared.stats());
        for (i, t) in self.threads.drain(..).enumerate() {
            if own == Some(i) {
                continue;
            }
            loop {
                let now = std::time::Instant::now();
                if t.is_finished() || now >= grace || (now >= busy_stuck && self.shared.is_busy(i))
                {
                    break;
                }
                thread::sleep(Duration::from_micros(200));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                stuck += 1;
            }
        }
        // Whatever is still queued is cut off and run, which drops it (and
        // drops futures that hold the runtime); nothing is polled again,
        // so this ends (a live task polled here woke itself back into the
        // injector for ever: found by review). A stuck worker's core
        // cannot be taken (its thread holds it), but its deque and LIFO
        // slot can be stolen from, and the injector drained: a task
        // stranded there is dropped, not leaked; what the stuck worker
        // still holds when its poll returns, it drops itself.
        self.shared.drain_queues();
        // The root never closes, so it lets go of its tasks here (a task a
        // shutdown handle's sweep moved to its list held the root, the
        // scheduler and the wheel through its region: 16 KiB a runtime,
        // never freed; found by review).
        self.root.let_go_of_tasks();
        self.shared
            .timers()
            .clear(Arc::as_ptr(&self.shared).cast(), self.shared.stats());
        let blocking = self.blocking.shutdown();
        let stats = self.stats();
        // Counted again after the final drain: a task cut off at a zero
        // deadline finishes there, not stuck (found by review: it was
        // reported unfinished, the shutdown not completed).
        let alive = alive.min(self.shared.stats().snapshot().tasks_alive());
        ShutdownReport {
            completed: alive == 0,
            tasks_cut_off: stats.tasks_cut_off,
            tasks_unfinished: alive,
            finalizers_cut_off: stats.finalizers_cut_off + stats.finalizers_skipped,
            blocking_jobs_running: blocking,
            workers_stuck: stuck,
        }
    }
}

/// Shuts a runtime's tasks down from any thread; see
/// [`Runtime::shutdown_handle`].
///
/// ```
/// use runtime_core::{Runtime, caps::ambient_authority, time::Duration};
/// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
/// let handle = rt.shutdown_handle(); // Clone + Send: give it to a signal handler
/// assert_eq!(handle.shutdown(Duration::from_millis(50)), 0);
/// ```
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    root: Arc<Region>,
    current_thread: bool,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle").finish_non_exhaustive()
    }
}

impl ShutdownHandle {
    /// Cancels every task (reason `Shutdown`), waits until they have
    /// drained or `timeout` has nearly passed, cuts off what is left, and
    /// returns how many tasks are still alive then: those stuck inside a
    /// poll, and, with a timeout too short for the cut-off tasks to run
    /// once more (zero), those just cut off, which finish at their next
    /// run (a later [`Runtime::shutdown`] reports them finished). The
    /// workers keep running: a `block_on` in progress returns, and
    /// dropping the runtime stops them.
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// use runtime_core::time::Duration;
    /// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
    /// let handle = rt.shutdown_handle();
    /// assert_eq!(handle.shutdown(Duration::from_millis(100)), 0);
    /// ```
    ///
    /// # Panics
    ///
    /// If called from inside this runtime (one of its tasks, or a waker or
    /// `Drop` that one of its workers runs): it would wait for the very
    /// task that calls it (which is cancelled too), and on the
    /// current-thread flavour nothing else could drive the others. Call it
    /// from another thread (`std::thread::spawn(move || handle.shutdown(t))`).
    pub fn shutdown(&self, timeout: Duration) -> u64 {
        self.refuse_inside("ShutdownHandle::shutdown");
        self.drain(timeout)
    }

    /// True if the calling thread is one of this runtime's workers (the
    /// current-thread flavour: the thread driving it), or is inside the
    /// poll of one of its tasks (a worker firing timers from a task's
    /// checkpoint marks itself off the pool for the wakes it causes).
    fn called_from_inside(&self) -> bool {
        // At any depth: a task of a runtime driven in place by one of
        // this runtime's tasks (a shutdown of a current-thread runtime),
        // or a blocking job the lab runs in line, is inside this one too.
        if crate::sched::pool::drives(self.shared.stats()) {
            return true;
        }
        let running = crate::task::running_task();
        // SAFETY: the task being polled on this thread is alive for the
        // poll, which is on the stack below this call.
        !running.is_null()
            && std::ptr::addr_eq(
                Arc::as_ptr(&unsafe { &*running }.region.sched),
                Arc::as_ptr(&self.shared),
            )
    }

    fn refuse_inside(&self, what: &str) {
        assert!(
            !self.called_from_inside(),
            "{what} called from inside the runtime it shuts down (one of its tasks, or a \
             waker or Drop that one of its workers runs): it would wait for the task that \
             calls it. Call it from another thread."
        );
    }

    fn drain(&self, timeout: Duration) -> u64 {
        let start = std::time::Instant::now();
        let deadline = deadline_after(start, timeout);
        // The last fifth (at most 100 ms) is for cutting off: first the
        // tasks not waiting on regions of their own, then, halfway, all.
        let window = (timeout / 5).min(Duration::from_millis(100));
        let drain_until = deadline - window;
        let gentle_until = deadline - window / 2;
        self.root.cancel(
            &CancelReason::new(CancelKind::Shutdown)
                .with_message("the runtime is shutting down")
                .with_origin(Origin::Runtime),
        );
        if !self.wait_tasks(drain_until) {
            self.root.cut_off_all(false);
            if !self.wait_tasks(gentle_until) {
                self.root.cut_off_all(true);
                self.wait_tasks(deadline);
            }
        }
        self.alive()
    }

    fn alive(&self) -> u64 {
        self.shared.stats().snapshot().tasks_alive()
    }

    /// Waits (driving the core on the current-thread flavour, if no one
    /// else is) until no task is alive or `until` passes.
    fn wait_tasks(&self, until: std::time::Instant) -> bool {
        loop {
            if self.alive() == 0 {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= until {
                return false;
            }
            let driven = self.current_thread
                && self.shared.drive(
                    0,
                    &|| self.alive() == 0 || std::time::Instant::now() >= until,
                    Some(Duration::from_millis(1)),
                );
            if !driven {
                thread::sleep((until - now).min(Duration::from_micros(200)));
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.shut {
            return;
        }
        if !self.shut_elsewhere_tried && self.shutdown_handle().called_from_inside() {
            // Dropped from inside (by one of its own tasks, or a waker or
            // `Drop` that a worker runs): shutting down here would wait
            // for the task that is dropping it, and hold up this worker
            // for the whole timeout. The shutdown goes on on a thread of
            // its own; this task is cancelled with the rest.
            let rest = Runtime {
                shared: self.shared.clone(),
                root: self.root.clone(),
                threads: std::mem::take(&mut self.threads),
                blocking: self.blocking.clone(),
                builder: self.builder.clone(),
                shut: false,
                shut_elsewhere_tried: true,
                block_ons: std::sync::atomic::AtomicU64::new(0),
            };
            self.shut = true;
            // If no thread can be started, `rest` is dropped with the
            // closure, here: it shuts down in place.
            let _ = thread::Builder::new()
                .name("runtime-shutdown".into())
                .spawn(move || drop(rest));
            return;
        }
        let timeout = self.builder.shutdown_timeout;
        self.shutdown_inner(timeout);
    }
}

#[cfg(all(test, not(loom)))]
impl Runtime {
    /// How many timers are pending in this runtime's wheel (tests).
    pub(crate) fn pending_timers(&self) -> usize {
        self.shared.timers().len()
    }

    /// A runtime with one worker thread (tests).
    pub(crate) fn one_worker_for_tests() -> Runtime {
        Runtime::builder()
            .worker_threads(1)
            .build(crate::caps::ambient_authority())
            .unwrap()
    }

    /// Counts the pending timers from anywhere, a task included (tests).
    pub(crate) fn pending_timers_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.timers().len()
    }
}

/// `start + timeout`, or, for a timeout too long to add (`Duration::MAX`:
/// "as long as it takes"), a deadline a century away: a shutdown given
/// such a timeout waits for its tasks, and never panics on the sum.
fn deadline_after(start: std::time::Instant, timeout: Duration) -> std::time::Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    start
        .checked_add(timeout.min(CENTURY))
        .or_else(|| start.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(start)
}
