//! What a lab run reports: [`LabReport`], its [`Trace`], and the
//! [`Violation`]s the oracles found.

use std::fmt;

use crate::outcome::Outcome;
use crate::region::RegionError;
use crate::sched::RuntimeStats;
use crate::time::{Duration, Instant};
use crate::{RegionId, Severity, TaskId};

/// One step of a lab run's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEvent {
    /// A task was run (polled once), chosen among `ready` ready tasks.
    Poll {
        /// The task.
        task: TaskId,
        /// Its region.
        region: RegionId,
        /// How many tasks were ready to choose from.
        ready: usize,
        /// Whether its cancellation had been requested.
        cancelled: bool,
    },
    /// Nothing was ready: virtual time jumped to the next timer.
    Advance {
        /// The new time.
        to: Instant,
    },
}

/// The schedule of a lab run: every choice the scheduler made, in order.
/// Two runs of one program with one seed have equal traces.
///
/// ```
/// use runtime_core::lab::{LabRuntime, TraceEvent};
/// let report = LabRuntime::new(1).block_on(|cx| async move {
///     cx.spawn(|_| async {}).await;
///     Ok::<_, ()>(())
/// });
/// assert!(matches!(report.trace.events()[0], TraceEvent::Poll { .. }));
/// assert!(report.trace.to_string().starts_with("step 0: poll task 2 in region 1 (of 1 ready)"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    events: Vec<TraceEvent>,
}

impl Trace {
    pub(super) fn push(&mut self, e: TraceEvent) {
        self.events.push(e);
    }

    /// The events, in order.
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// let report = LabRuntime::new(1).block_on(|_| async { Ok::<_, ()>(()) });
    /// assert!(!report.trace.events().is_empty());
    /// ```
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// The last `n` events as text, one per line (the tail of a failing
    /// schedule is usually what explains it).
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// let report = LabRuntime::new(1).block_on(|_| async { Ok::<_, ()>(()) });
    /// assert_eq!(report.trace.tail(1).lines().count(), 1);
    /// ```
    pub fn tail(&self, n: usize) -> String {
        let start = self.events.len().saturating_sub(n);
        let mut s = String::new();
        for (i, e) in self.events.iter().enumerate().skip(start) {
            write_event(&mut s, i, e);
        }
        s
    }
}

fn write_event(s: &mut String, i: usize, e: &TraceEvent) {
    use std::fmt::Write;
    let _ = match e {
        TraceEvent::Poll {
            task,
            region,
            ready,
            cancelled,
        } => writeln!(
            s,
            "step {i}: poll task {} in region {} (of {ready} ready){}",
            task.0,
            region.0,
            if *cancelled { ", cancel requested" } else { "" }
        ),
        TraceEvent::Advance { to } => writeln!(s, "step {i}: time jumps to {to:?}"),
    };
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        for (i, e) in self.events.iter().enumerate() {
            write_event(&mut s, i, e);
        }
        f.write_str(&s)
    }
}

/// Something an oracle found wrong at the end of a lab run (or a run that
/// could not end).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// Tasks alive, none ready, no timer pending: nothing can ever run.
    Deadlock {
        /// Tasks alive.
        alive: u64,
        /// When it stopped.
        at: Instant,
    },
    /// The run took more steps than the lab allows (a livelock, or a task
    /// that spins without ever letting time move).
    StepLimit {
        /// The limit.
        steps: u64,
    },
    /// Tasks still alive when the root region had finished.
    TasksAlive {
        /// How many.
        alive: u64,
    },
    /// Regions never closed.
    RegionsOpen {
        /// Which.
        regions: Vec<RegionId>,
    },
    /// Two-phase permits (mpsc slots) taken and never sent nor returned.
    PermitsUnresolved {
        /// How many.
        permits: i64,
    },
    /// Finalizers registered that never ran (or ran more than once).
    Finalizers {
        /// Registered.
        added: u64,
        /// Ran (to their end, into a panic, or into their cut-off).
        ended: u64,
    },
    /// A cancelled task was polled after its cleanup budget ran out (it
    /// should have been cut off).
    PolledPastCleanup {
        /// The task.
        task: TaskId,
        /// Its polls since the request, and the quota.
        polls: (u64, Option<u32>),
        /// When the request was seen, and the poll's time.
        times: (Instant, Instant),
    },
    /// A region's outcome is below the worst failure of its children (the
    /// outcome lattice: a region's outcome is at least each child's
    /// failure).
    Lattice {
        /// The region.
        region: RegionId,
        /// Its children's worst failure.
        children: Severity,
        /// Its outcome.
        outcome: Severity,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Deadlock { alive, at } => write!(
                f,
                "deadlock: {alive} task(s) alive at {at:?}, none ready, no timer pending"
            ),
            Violation::StepLimit { steps } => write!(
                f,
                "step limit: the run took more than {steps} steps (a livelock, or a task spinning without letting virtual time move)"
            ),
            Violation::TasksAlive { alive } => write!(
                f,
                "live tasks: {alive} task(s) still alive after the root region finished"
            ),
            Violation::RegionsOpen { regions } => write!(
                f,
                "open regions: {} region(s) never closed: {:?}",
                regions.len(),
                regions.iter().map(|r| r.0).collect::<Vec<_>>()
            ),
            Violation::PermitsUnresolved { permits } => write!(
                f,
                "unresolved reservations: {permits} two-phase permit(s) neither sent nor returned"
            ),
            Violation::Finalizers { added, ended } if ended < added => write!(
                f,
                "finalizers: {added} registered, {ended} ran: {} never ran",
                added - ended
            ),
            Violation::Finalizers { added, ended } => write!(
                f,
                "finalizers: {added} registered, {ended} runs: some ran more than once"
            ),
            Violation::PolledPastCleanup {
                task,
                polls: (polls, quota),
                times: (seen, at),
            } => write!(
                f,
                "cleanup budget: task {} polled at {at:?}, {polls} poll(s) after its cancellation (seen at {seen:?}; poll quota {quota:?}): it should have been cut off",
                task.0
            ),
            Violation::Lattice {
                region,
                children,
                outcome,
            } => write!(
                f,
                "outcome lattice: region {} closed {outcome:?} although a child ended {children:?}",
                region.0
            ),
        }
    }
}

/// What a lab run found: the outcome, the virtual time it took, the
/// schedule (its fingerprint and trace), and the oracles' verdicts.
///
/// ```
/// use runtime_core::lab::LabRuntime;
/// let report = LabRuntime::new(7).block_on(|cx| async move {
///     let h = cx.spawn(|_| async { 40 });
///     Ok::<_, ()>(h.await.unwrap() + 2)
/// });
/// assert!(report.is_clean(), "{}", report.failure().unwrap_or_default());
/// assert_eq!(report.outcome.unwrap().ok(), Some(42));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct LabReport<T, E> {
    /// The seed of the run.
    pub seed: u64,
    /// The root region's outcome; `None` when the run could not finish
    /// (a deadlock, the step limit).
    pub outcome: Option<Outcome<T, RegionError<E>>>,
    /// Virtual time from the start to the end of the run.
    pub elapsed: Duration,
    /// A digest of the schedule: equal seeds give equal fingerprints.
    pub fingerprint: u64,
    /// Steps taken (task runs and time jumps).
    pub steps: u64,
    /// What the oracles found wrong (empty: every oracle held).
    pub violations: Vec<Violation>,
    /// Every choice the scheduler made.
    pub trace: Trace,
    /// The run's counters.
    pub stats: RuntimeStats,
}

impl<T, E: fmt::Debug> LabReport<T, E> {
    /// Why this run counts as failed, if it does: the first violation, or
    /// a panic that escaped the root region, or the root region's error
    /// (formatted with its `Debug`; one that panics is caught and said so).
    /// (A cancelled root is not a failure.)
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// let report = LabRuntime::new(3).block_on(|_| async { Err::<(), _>("boom") });
    /// assert!(report.failure().unwrap().contains("boom"));
    /// ```
    pub fn failure(&self) -> Option<String> {
        if let Some(v) = self.violations.first() {
            return Some(v.to_string());
        }
        match &self.outcome {
            Some(Outcome::Panicked(p)) => Some(format!("a panic escaped: {p}")),
            // The error's `Debug` is user code: a panic in it is caught.
            Some(Outcome::Err(e)) => Some(
                crate::outcome::catch(|| format!("the program failed: {e:?}")).unwrap_or_else(
                    |p| format!("the program failed, and its error's Debug panicked: {p}"),
                ),
            ),
            _ => None,
        }
    }

    /// No failure (see [`failure`](Self::failure)).
    ///
    /// ```
    /// use runtime_core::lab::LabRuntime;
    /// assert!(LabRuntime::new(3).block_on(|_| async { Ok::<_, ()>(()) }).is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.failure().is_none()
    }
}
