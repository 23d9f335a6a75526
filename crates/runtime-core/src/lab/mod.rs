//! The lab runtime: the same program on one thread, with virtual time and
//! a seeded scheduler, explored across seeds, replayed from one, checked
//! by oracles.
//!
//! [`LabRuntime::block_on`] runs a body exactly as
//! [`Runtime::block_on`](crate::Runtime::block_on) does (the same `Cx` API,
//! regions, cancellation, budgets, timers, channels, finalizers) and
//! returns a [`LabReport`]: the outcome, the virtual time elapsed, a
//! fingerprint of the schedule, its [`Trace`], and the oracles' verdicts.
//!
//! One difference: a blocking job (`spawn_blocking`) runs inline, on the
//! lab's one thread, as part of the step of the task that spawns it, and
//! has finished when `spawn_blocking` returns. A job that waits for
//! something only another task of the program can do (a value on a
//! channel, a lock a task holds) therefore waits for ever, since no task
//! runs while it does; the lab cannot run such a program, and does not
//! detect it (the run does not return: run it under a watchdog). A job
//! that computes, or waits on the world outside the program, runs as on
//! the real runtime.
//!
//! ```
//! use runtime_core::{CancelKind, lab::LabRuntime, time::Duration};
//!
//! // A 30 s timeout, tested in microseconds: nothing is ready while the
//! // sleep waits, so virtual time jumps to the timeout's deadline.
//! let report = LabRuntime::new(42).block_on(|cx| async move {
//!     let slow = cx
//!         .timeout(Duration::from_secs(30), |cx| async move {
//!             cx.sleep(Duration::from_secs(3600)).await.map_err(|_| ())?;
//!             Ok::<_, ()>("finished")
//!         })
//!         .await;
//!     Ok::<_, ()>(slow.cancel_reason().map(|r| r.kind()))
//! });
//! assert!(report.is_clean(), "{}", report.failure().unwrap_or_default());
//! assert_eq!(report.outcome.unwrap().ok(), Some(Some(CancelKind::Timeout)));
//! assert_eq!(report.elapsed, Duration::from_secs(30)); // exactly: virtual
//! ```
//!
//! An exploration runs a scenario under many seeds and stops at the first
//! that fails; its seed replays the failure, schedule for schedule:
//!
//! ```
//! use runtime_core::lab::{self, LabRuntime, Strategy};
//! use std::sync::{Arc, Mutex};
//!
//! // A check-then-act race between two tasks: each reads the counter,
//! // yields, then writes what it read plus one (a lost update when their
//! // turns interleave).
//! let scenario = |cx: runtime_core::Cx<lab::LabCaps>| async move {
//!     let n = Arc::new(Mutex::new(0));
//!     let bump = |n: Arc<Mutex<i32>>| {
//!         move |cx: runtime_core::Cx<lab::LabCaps>| async move {
//!             let seen = *n.lock().unwrap();
//!             cx.yield_now().await.ok();
//!             *n.lock().unwrap() = seen + 1;
//!         }
//!     };
//!     let (a, b) = (cx.spawn(bump(n.clone())), cx.spawn(bump(n.clone())));
//!     let _ = (a.await, b.await);
//!     let total = *n.lock().unwrap();
//!     if total == 2 { Ok(()) } else { Err(format!("lost update: {total}")) }
//! };
//! let found = lab::explore(0..100, scenario);
//! let failure = found.failure.expect("the race is found");
//! assert!(failure.reason.contains("lost update"));
//!
//! // The seed replays it: the same schedule, the same failure.
//! let again = LabRuntime::builder().seed(failure.seed).build().block_on(scenario);
//! assert_eq!(again.trace, failure.trace);
//! assert!(again.failure().unwrap().contains("lost update"));
//! # let _ = Strategy::Random;
//! ```
//!
//! ## The scheduler
//!
//! One thread runs every task, one poll at a time. After each poll the
//! next task is chosen among the ready ones by the [`Strategy`], whose
//! only source of choice is a SplitMix64 generator seeded from the lab's
//! seed: equal seeds give equal schedules (equal [`Trace`]s and
//! fingerprints). Ids come from a counter, and each task's
//! [`Cx::random_u64`](crate::Cx::random_u64) is seeded from the lab's seed
//! and the task's place in the tree, as on the real runtime.
//!
//! * [`Strategy::Random`] (the default): uniform among the ready tasks.
//!   Cheap and unbiased; finds bugs that many schedules show.
//! * [`Strategy::Pct`]: probabilistic concurrency testing (Burckhardt et
//!   al., ASPLOS 2010). Each task gets a random priority when first seen;
//!   the highest-priority ready task always runs; at `depth - 1` random
//!   steps (among the first `steps`) the task running is demoted below all
//!   others. A bug that needs `d` orderings to line up (a task starved
//!   until another has done `d - 1` things) is found with probability at
//!   least `1 / (n * k^(d-1))` per run (`n` tasks, `k` steps), where
//!   uniform choice needs every one of the many intermediate choices to go
//!   the same way. We use it because the bugs this runtime guards against
//!   are of that shape: a wake-up lost when one task runs to its end before
//!   another parks, a close that races its last child.
//!   Strict priorities starve: a task that spins (yields in a loop until
//!   another task acts) would hold the thread for ever, so a task that
//!   runs 32 steps in a row while others are ready is demoted like at a
//!   change point (steps it ran alone do not count).
//!
//! ## Virtual time
//!
//! The lab's clock starts at zero and moves only when no task is ready: it
//! then jumps to the next timer, and that timer fires. Everything timed in
//! the runtime goes through the scheduler's clock and timer wheel
//! (`sleep`, `timeout`, `interval`, budget deadlines, cleanup grace
//! periods, finalizers' grace), so each behaves as on the real runtime,
//! with the wheel's 1 ms tick (a deadline fires at its tick, rounded up).
//! A task that spins without ever awaiting something that is not ready
//! keeps time still: the lab ends such a run at its step limit
//! ([`LabBuilder::max_steps`]) and reports it. So does one that spins
//! inside a single poll, checkpointing but never awaiting: its
//! checkpoints' looks at the clock count against the steps left, and at
//! the limit it is cancelled at a checkpoint (`Err`); one that ignores
//! that `Err` and spins on, or busy-waits on [`Cx::now`](crate::Cx::now)
//! alone (no checkpoint to return `Err` at), is stopped by a panic there
//! (its outcome `Panicked`). (Every runtime await point that can be ready
//! at once, blocking jobs and regions included, spends the turn's
//! cooperative budget, so a loop of them yields and counts its steps.) A
//! timer that fires and wakes no task (a grace period of a task that
//! finished its cleanup in time) is no progress: a run that deadlocks is
//! reported at the time everything stopped. A run that has
//! nothing left to do when it reaches the limit is clean. (A timer cannot end either
//! kind in the lab, where time stands still while they run: on the real
//! runtime a timeout or cleanup grace period would. Their cleanup budget's
//! polls still apply.)
//!
//! ## No wall clock, no OS randomness: how to check it
//!
//! * The lab is built without the ambient-authority token
//!   ([`ambient_authority`](crate::caps::ambient_authority)), and the only
//!   clock that reads the machine, [`SystemClock`](crate::time::SystemClock),
//!   cannot be made without it: the lab's clock is its own counter.
//! * The body gets a [`Cx<LabCaps>`](LabCaps): spawn, time, blocking and
//!   randomness, which the lab virtualises, and no network, file system
//!   or telemetry: `cx.fs()` does not compile in a lab body.
//! * `tests/lab_runtime.rs` scans the crate's sources and fails if any
//!   file the lab may run reads `Instant::now`, `elapsed()`, `SystemTime`,
//!   a `RandomState` or an OS random source; the only files allowed to are
//!   the real runtime's (`runtime.rs`, `sched/pool.rs` and `idle.rs`,
//!   `blocking.rs`, `time/mod.rs` for `SystemClock`, the loom shims and
//!   the detached test scheduler). Its tests also check elapsed virtual
//!   time exactly (30 s is 30 s, not "at least"), never against the wall
//!   clock.
//!
//! ## Oracles
//!
//! After every run, the report's [`violations`](LabReport::violations)
//! say what went wrong, each with a message that names it:
//!
//! | oracle | what it checks |
//! |---|---|
//! | live tasks | no task is alive once the root region has finished |
//! | open regions | every region opened has closed (or drained, abandoned) |
//! | reservations | every two-phase permit taken (mpsc `reserve`) was sent or returned |
//! | finalizers | every finalizer registered ran once (to its end, a panic, or its cut-off) |
//! | cleanup budget | no cancelled task is polled past its cleanup budget (polls since the request, grace period) |
//! | lattice | no region's outcome is below the worst failure its children reported |
//! | deadlock | tasks alive, none ready, no timer pending |
//! | step limit | the run ends within [`LabBuilder::max_steps`] |
//!
//! A panic that escapes the root region, or an `Err` outcome, also makes
//! [`LabReport::failure`] (and so [`explore`]) report the run as failed.
//!
//! From safe code, a leaked task or region shows up as a deadlock (its
//! parent waits for it for ever): even a region opened through a `Cx`
//! kept past its region's close is counted in the nearest ancestor still
//! open, which waits for it. `mem::forget` of a permit trips the
//! reservation oracle; a finalizer registered on a closed region, the
//! finalizer oracle. The live-task, open-region, cleanup-budget and
//! lattice oracles check what the runtime itself enforces, so no safe
//! program trips them (their tests plant a bug: `LabBuilder::plant`,
//! hidden, for tests only), with one exception: a region's future leaked
//! (`mem::forget`) where the nearest region still open is the run's root,
//! which waits for nothing (a region a finalizer of the root's child opens
//! through that child's context, then forgets): the live-task and
//! open-region oracles report what it left (found by review).

mod explore;
pub(crate) mod hooks;
mod report;
mod run;
mod sched;

pub use explore::{Exploration, FoundFailure, explore};
pub use report::{LabReport, Trace, TraceEvent, Violation};

use std::fmt;
use std::future::Future;
use std::ops::Range;

use crate::budget::CleanupBudget;
use crate::cx::Cx;
use runtime_cap::{Caps, No, Yes};

/// What a lab body's context may do: spawn, time, blocking jobs and
/// randomness (all virtualised by the lab), and no network, file system
/// or telemetry (which it cannot make deterministic).
///
/// ```compile_fail
/// use runtime_core::lab::LabRuntime;
/// LabRuntime::new(1).block_on(|cx| async move {
///     let _fs = cx.fs(); // no file system in the lab
///     Ok::<_, ()>(())
/// });
/// ```
pub type LabCaps = Caps<Yes, Yes, Yes, Yes, No, No, No>;

/// How the lab chooses the next task among the ready ones (see the module
/// docs for why PCT).
///
/// ```
/// use runtime_core::lab::{LabRuntime, Strategy};
/// let lab = LabRuntime::builder().strategy(Strategy::Pct { depth: 3, steps: 200 }).build();
/// assert!(lab.block_on(|_| async { Ok::<_, ()>(()) }).is_clean());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Uniformly at random.
    #[default]
    Random,
    /// Probabilistic concurrency testing: random priorities, `depth - 1`
    /// change points among the first `steps` steps.
    Pct {
        /// The bug depth aimed at (orderings that must line up). At most
        /// [`MAX_PCT_DEPTH`], and at most one
        /// more than `steps` (one change point per step); larger values
        /// are taken as that.
        depth: u32,
        /// About how many steps a run takes (where change points fall).
        steps: u64,
    },
}

/// The deepest [`Strategy::Pct`] a run uses (PCT's bugs of interest have
/// a depth of a few; each level costs a change point).
pub const MAX_PCT_DEPTH: u32 = 4096;

/// A planted bug, for showing that exploration and the oracles catch what
/// they should (tests only).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlantedBug {
    /// The last child of a region to finish does not wake the body waiting
    /// for the region to drain (a lost wake-up in the close).
    LostCloseWake,
    /// A region's close forgets its children's failures.
    IgnoreChildFailure,
    /// Cleanup grace periods are never enforced (no cut-off timer).
    SkipGraceTimers,
    /// A region opened through a context that outlived its region is
    /// counted nowhere (as before 2026-12-01): its tasks can outlive the
    /// root.
    OrphansNotAdopted,
}

/// Configures a [`LabRuntime`].
///
/// ```
/// use runtime_core::{CleanupBudget, lab::{LabRuntime, Strategy}};
/// let lab = LabRuntime::builder()
///     .seed(9)
///     .strategy(Strategy::Random)
///     .max_steps(10_000)
///     .cleanup(CleanupBudget::DEFAULT)
///     .build();
/// assert_eq!(lab.seed(), 9);
/// ```
#[derive(Debug, Clone)]
pub struct LabBuilder {
    seed: u64,
    strategy: Strategy,
    max_steps: u64,
    cleanup: CleanupBudget,
    faults: u32,
    skip_grace_timers: bool,
}

impl Default for LabBuilder {
    fn default() -> Self {
        LabBuilder {
            seed: 0,
            strategy: Strategy::Random,
            max_steps: 1_000_000,
            cleanup: CleanupBudget::DEFAULT,
            faults: 0,
            skip_grace_timers: false,
        }
    }
}

impl LabBuilder {
    /// The seed of the schedule and of the tasks' randomness (default 0).
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// assert_eq!(LabRuntime::builder().seed(5).build().seed(), 5);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How the next task is chosen (default [`Strategy::Random`]).
    ///
    /// ```
    /// use runtime_core::lab::{LabRuntime, Strategy};
    /// let lab = LabRuntime::builder().strategy(Strategy::Pct { depth: 2, steps: 50 }).build();
    /// # drop(lab);
    /// ```
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The most steps (task runs and time jumps) a run may take before it
    /// is stopped and reported (default 1 000 000).
    ///
    /// ```
    /// use runtime_core::lab::{LabRuntime, Violation};
    /// let report = LabRuntime::builder().max_steps(100).build().block_on(|cx| async move {
    ///     loop { cx.yield_now().await.ok(); } // spins: time never moves
    ///     #[allow(unreachable_code)]
    ///     Ok::<_, ()>(())
    /// });
    /// assert!(matches!(report.violations[0], Violation::StepLimit { steps: 100 }));
    /// ```
    pub fn max_steps(mut self, steps: u64) -> Self {
        self.max_steps = steps.max(1);
        self
    }

    /// The cleanup budget of the root region, inherited by the regions
    /// below unless they set their own (default [`CleanupBudget::DEFAULT`]).
    ///
    /// ```
    /// use runtime_core::{CleanupBudget, lab::LabRuntime};
    /// let lab = LabRuntime::builder().cleanup(CleanupBudget::UNLIMITED).build();
    /// # drop(lab);
    /// ```
    pub fn cleanup(mut self, cleanup: CleanupBudget) -> Self {
        self.cleanup = cleanup;
        self
    }

    /// Plants a bug in the runtime for this lab's runs (tests of the lab
    /// itself; on the lab's thread only, for the run's duration).
    #[doc(hidden)]
    pub fn plant(mut self, bug: PlantedBug) -> Self {
        match bug {
            PlantedBug::LostCloseWake => self.faults |= hooks::LOST_CLOSE_WAKE,
            PlantedBug::IgnoreChildFailure => self.faults |= hooks::IGNORE_CHILD_FAILURE,
            PlantedBug::SkipGraceTimers => self.skip_grace_timers = true,
            PlantedBug::OrphansNotAdopted => self.faults |= hooks::ORPHANS_NOT_ADOPTED,
        }
        self
    }

    /// The lab runtime.
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// let lab = LabRuntime::builder().build();
    /// assert_eq!(lab.seed(), 0);
    /// ```
    pub fn build(self) -> LabRuntime {
        LabRuntime { config: self }
    }

    /// Runs `scenario` once per seed in `seeds` with these settings (the
    /// builder's own seed is ignored) and stops at the first failure.
    ///
    /// ```
    /// use runtime_core::lab::{LabRuntime, Strategy};
    /// let found = LabRuntime::builder()
    ///     .strategy(Strategy::Pct { depth: 2, steps: 20 })
    ///     .explore(0..50, |cx| async move {
    ///         cx.spawn(|_| async {}).await;
    ///         Ok::<_, ()>(())
    ///     });
    /// assert!(found.failure.is_none() && found.runs == 50);
    /// ```
    pub fn explore<S, F, T, E>(&self, seeds: Range<u64>, scenario: S) -> Exploration
    where
        S: Fn(Cx<LabCaps>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        explore::explore_with(self, seeds, scenario)
    }
}

/// A deterministic runtime for tests: one thread, virtual time, a seeded
/// scheduler, oracles (see the [module docs](self)).
///
/// ```
/// use runtime_core::{lab::LabRuntime, time::Duration};
/// let lab = LabRuntime::new(1);
/// let report = lab.block_on(|cx| async move {
///     cx.sleep(Duration::from_millis(250)).await.map_err(|_| ())?;
///     Ok::<_, ()>(cx.now())
/// });
/// assert_eq!(report.elapsed, Duration::from_millis(250));
/// // The same seed, the same schedule.
/// let again = lab.block_on(|cx| async move {
///     cx.sleep(Duration::from_millis(250)).await.map_err(|_| ())?;
///     Ok::<_, ()>(cx.now())
/// });
/// assert_eq!(report.fingerprint, again.fingerprint);
/// ```
#[derive(Debug, Clone)]
pub struct LabRuntime {
    config: LabBuilder,
}

impl LabRuntime {
    /// A lab runtime with seed `seed` and the default settings.
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// assert_eq!(LabRuntime::new(3).seed(), 3);
    /// ```
    pub fn new(seed: u64) -> Self {
        LabBuilder::default().seed(seed).build()
    }

    /// A builder with the default settings.
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// let lab = LabRuntime::builder().seed(2).build();
    /// assert_eq!(lab.seed(), 2);
    /// ```
    pub fn builder() -> LabBuilder {
        LabBuilder::default()
    }

    /// This lab's seed.
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// assert_eq!(LabRuntime::new(8).seed(), 8);
    /// ```
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Runs `body` as the body of a fail-fast region under a fresh root
    /// (each call starts from time zero, with the same seed: the same
    /// program gives the same schedule), until it and every task in it
    /// finish, or nothing can run any more; then checks the oracles.
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// let report = LabRuntime::new(11).block_on(|cx| async move {
    ///     let sum = cx.region(|cx| async move {
    ///         let a = cx.spawn(|_| async { 1 });
    ///         let b = cx.spawn_blocking(|| 2); // inline, one step
    ///         Ok::<_, ()>(a.await.unwrap() + b.await.unwrap())
    ///     }).await;
    ///     Ok::<_, ()>(sum.unwrap())
    /// });
    /// assert_eq!(report.outcome.unwrap().ok(), Some(3));
    /// assert!(report.violations.is_empty());
    /// ```
    pub fn block_on<G, F, T, E>(&self, body: G) -> LabReport<T, E>
    where
        G: FnOnce(Cx<LabCaps>) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        run::run(self, body)
    }
}
