//! # runtime-core
//!
//! A structured-concurrency executor. Every task belongs to a region; a
//! region returns only when every task and child region in it has
//! finished. Cancellation is a protocol (request with a reason, drain to
//! checkpoints, finalize under a cleanup budget), outcomes are `Ok`, `Err`,
//! `Cancelled(reason)` or `Panicked`, budgets bound work, timers run on a
//! hierarchical wheel behind a clock seam, and channels send in two phases
//! so that nothing is lost when a wait is cancelled. Every effect is a
//! method on the task's [`Cx<Caps>`](Cx), bounded by the capability it
//! needs ([`caps`]); authority enters a program only through
//! [`caps::ambient_authority`].
//!
//! ```
//! use runtime_core::{CancelKind, Outcome, Runtime, caps::ambient_authority, time::Duration};
//!
//! // Authority enters here, once, visibly.
//! let rt = Runtime::builder().worker_threads(2).build(ambient_authority()).unwrap();
//! let out = rt.block_on(|cx| async move {
//!     // A child region: returns only when both tasks are done.
//!     let sum = cx.scope(|cx| async move {
//!         let a = cx.spawn(|_| async { 1 });
//!         let b = cx.spawn(|_| async { 2 });
//!         a.await.unwrap() + b.await.unwrap()
//!     }).await;
//!     // A timeout: the sleeper sees the cancellation at its checkpoint.
//!     let slow = cx.timeout(Duration::from_millis(10), |cx| async move {
//!         cx.sleep(Duration::from_secs(3600)).await.map_err(|_| ())?;
//!         Ok::<_, ()>(())
//!     }).await;
//!     assert_eq!(slow.cancel_reason().map(|r| r.kind()), Some(CancelKind::Timeout));
//!     Ok::<_, ()>(sum.unwrap())
//! });
//! assert_eq!(out.ok(), Some(3));
//! ```
//!
//! ## Tasks, fallible or not
//!
//! [`Cx::spawn`] takes a body returning any value; [`Cx::try_spawn`] one
//! returning `Result`, whose `Err` is the task's outcome and a failure of
//! its region. Child regions come in the same two kinds:
//! [`Cx::scope`], [`Cx::scope_with`] and [`Cx::scope_timeout`] take a body
//! returning any value (outcome `Ok(value)`, a child's failure,
//! `Cancelled` or `Panicked`); [`Cx::region`], [`Cx::region_with`] and
//! [`Cx::timeout`] take a `Result` body, whose `Err` is
//! [`RegionError::Body`] (and an `Err` returned after a checkpoint
//! reported the cancellation is `Cancelled`). The region methods kept
//! their names and their `Result` bodies rather than being renamed
//! `try_region`, `try_timeout` for symmetry with `try_spawn`: code across
//! the workspace (the lab's tests, the facade's example) relies on them.
//! [`join!`] and [`race!`] join or race bodies of different types, each
//! returning any value (a `Result` body's `Err` is its `Err` outcome,
//! decided by the body's type when the macro expands), as
//! [`Cx::join_all`] and [`Cx::race`] do for a `Vec` of one type (whose
//! bodies return `Result`). A bare `Cx` is `Cx<Compute>` (spawn, time,
//! randomness): see [`Cx`].
//!
//! ## Layout
//!
//! One module per concept: `cx/` (the context and its untyped core),
//! `task/`, `region/`, `cancel/` (reasons, the cancel cell, the
//! protocol), `budget/` (the three budgets), `sched/` (the scheduler seam,
//! the pool, parking; `sched/mod.rs` says which paths take a lock),
//! `time/`, `channel/`, `blocking.rs`, `outcome.rs`, `runtime.rs`, `lab/`
//! (the lab runtime).
//! `docs/ARCHITECTURE.md` maps each guarantee to its code and its check.
//!
//! ## What it promises, and the test that checks each
//!
//! | promise | checked by |
//! |---|---|
//! | a region closes only when all its tasks and child regions finished; no detach | `tests/regions.rs`, `tests/stress.rs` |
//! | cancellation reaches every descendant, is observed at checkpoints (level-triggered), reasons only strengthen | `tests/cancel.rs`, `tests/laws.rs` |
//! | cleanup runs under a cleanup budget and is cut off and counted when it overruns | `tests/cancel.rs` |
//! | outcomes join by severity; fail-fast and collect-all policies; panics caught per task | `tests/laws.rs`, `tests/regions.rs` |
//! | `join!`/`race!` and the `Vec` forms drain every branch before they resolve, a panicking loser and a cancellation mid-join included | `tests/regions.rs` |
//! | budgets meet; exhaustion cancels with the matching reason | `tests/laws.rs`, `tests/cancel.rs` |
//! | two-phase channels lose nothing on cancellation | `tests/channels.rs`, `tests/loom_channel.rs` |
//! | shutdown drains, cuts off at its deadline, reports, never hangs | `tests/shutdown.rs` |
//! | the task state machine and worker parking lose no wake-up | `src/loom_tests.rs` (`cargo xtask loom`) |
//! | effects only through a capability: widening, spawning without spawn, sleeping without time, network without net do not compile | compile-fail doctests on [`Cx`] |
//! | no public function reaches an effect without a capability or the ambient token | `tests/api_surface.rs` |
//! | narrowed contexts reach children no broader; the run-time mask backs the type; seeded per-task randomness | `tests/caps.rs` |
//! | hostile but legitimate use: futures dropped in place (cut-offs of futures that borrow their `Cx`), panics in `Drop`, `Debug`, wakers and finalizers caught, counted ([`RuntimeStats::panics_caught`]) and reported, time moving for busy tasks, re-entrant `block_on` refused (also from a waker a task's checkpoint fires), a shutdown from inside its own runtime refused (a drop there shuts down on a thread of its own), a join handle dropped while its task finishes, an outside `JoinHandle` a checkpoint, stuck workers reported, regions nested thousands deep (on a stack raised with [`Builder::thread_stack_size`]) cancelled from the inside, a region tree of any depth cancelled on a bounded stack in linear time (20 000 levels) | `tests/hostile.rs` (each case in a child process under a watchdog), `cargo xtask asan` |
//! | the same program on the [`lab`] runtime (one thread, virtual time, a seeded scheduler): equal seeds give equal schedules, a failing seed replays, oracles hold after every run | `tests/lab_runtime.rs`, `tests/lab_explore.rs` (regions, cancellation, channels, shutdown, hostile cases across 1 000 seeds each), `cargo xtask lab` |
//!
//! Measured against tokio in `benches/benches/runtime.rs`; see
//! `docs/runtime-performance.md`.

mod blocking;
mod budget;
mod cancel;
pub mod channel;
mod cx;
pub mod lab;
mod loom;
#[cfg(all(test, loom))]
mod loom_tests;
mod outcome;
mod region;
mod registry;
mod runtime;
mod sched;
mod sync;
mod task;
pub mod time;

pub use blocking::{Blocking, BlockingError};
pub use budget::{Budget, CleanupBudget};
pub use cancel::{CancelKind, CancelReason, Cancelled, Origin};
#[doc(hidden)]
pub use cx::{__branch, __private, BoxedRacer, JoinTuple, boxed_racer};
pub use cx::{Cx, MAX_MASK_DEPTH, MaskDepthExceeded, Masked, YieldNow};

/// The capability vocabulary (the `runtime-cap` crate): capability sets,
/// access tokens, and [`ambient_authority`](caps::ambient_authority).
pub mod caps {
    pub use runtime_cap::*;
}
pub use outcome::{Outcome, PanicPayload, Severity};
pub use region::{Failure, Policy, RegionError, RegionOptions};
pub use runtime::{
    BuildError, Builder, MAX_WORKER_THREADS, MIN_THREAD_STACK, Runtime, ShutdownHandle,
    ShutdownReport,
};
pub use sched::RuntimeStats;
pub use task::JoinHandle;

/// Identifies a task within its runtime.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let h = cx.spawn(|cx| async move { cx.task_id() });
///     let id = h.id();
///     Ok::<_, ()>(h.await.unwrap() == id)
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

/// Identifies a region within its runtime.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let parent = cx.region_id();
///     let child = cx.region(|cx| async move { Ok::<_, ()>(cx.region_id()) }).await;
///     Ok::<_, ()>(child.ok() != Some(parent))
/// });
/// assert_eq!(out.ok(), Some(true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u64);
