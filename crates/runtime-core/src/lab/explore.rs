//! Exploration: one scenario across many seeds, stopping at the first
//! failure, which replays from its seed.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use super::report::{LabReport, Trace};
use super::{LabBuilder, LabCaps};
use crate::cx::Cx;
use crate::time::Duration;

/// A failing run found by [`explore`]: its seed, why it failed, and its
/// schedule. `LabRuntime::builder().seed(seed)`, with every other setting
/// of the builder that explored (strategy, `max_steps`, cleanup budget),
/// replays it, trace for trace; a different setting is a different run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FoundFailure {
    /// The seed that fails.
    pub seed: u64,
    /// How many seeds ran before it (it is the `runs_before + 1`th).
    pub runs_before: u64,
    /// Why the run failed ([`LabReport::failure`](super::LabReport::failure)).
    pub reason: String,
    /// The run's schedule.
    pub trace: Trace,
    /// The schedule's fingerprint.
    pub fingerprint: u64,
    /// Virtual time the run took.
    pub elapsed: Duration,
}

impl fmt::Display for FoundFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lab: seed {} fails (after {} passing seeds): {}",
            self.seed, self.runs_before, self.reason
        )?;
        writeln!(
            f,
            "replay: LabRuntime::builder().seed({}) (with the exploring builder's other settings: strategy, max_steps, cleanup); fingerprint {:#018x}, {} steps, {:?} virtual",
            self.seed,
            self.fingerprint,
            self.trace.events().len(),
            self.elapsed
        )?;
        writeln!(f, "last steps of the schedule:")?;
        f.write_str(&self.trace.tail(40))
    }
}

/// What an exploration found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Exploration {
    /// Seeds run (the failing one included).
    pub runs: u64,
    /// Distinct schedules among them (distinct fingerprints).
    pub distinct_schedules: u64,
    /// The first failure, if any.
    pub failure: Option<FoundFailure>,
}

impl Exploration {
    /// Panics with the failure (seed, reason, the tail of its schedule), if
    /// there was one.
    ///
    /// ```
    /// use runtime_core::lab;
    /// lab::explore(0..10, |cx| async move {
    ///     cx.spawn(|_| async {}).await;
    ///     Ok::<_, ()>(())
    /// })
    /// .assert_clean();
    /// ```
    #[track_caller]
    pub fn assert_clean(&self) {
        if let Some(f) = &self.failure {
            panic!("{f}");
        }
    }
}

/// Runs `scenario` under the lab once per seed in `seeds` (uniform random
/// scheduling, default settings) and stops at the first failing run: a
/// panic that escapes, an error outcome, an oracle violation, a deadlock.
/// See [`LabBuilder::explore`] for other settings.
///
/// ```
/// use runtime_core::lab;
/// let found = lab::explore(0..1_000, |cx| async move {
///     let (a, b) = (cx.spawn(|_| async { 1 }), cx.spawn(|_| async { 2 }));
///     let order = (a.await.unwrap(), b.await.unwrap());
///     Ok::<_, ()>(order)
/// });
/// assert!(found.failure.is_none());
/// assert_eq!(found.runs, 1_000);
/// ```
pub fn explore<S, F, T, E>(seeds: Range<u64>, scenario: S) -> Exploration
where
    S: Fn(Cx<LabCaps>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    LabBuilder::default().explore(seeds, scenario)
}

pub(super) fn explore_with<S, F, T, E>(
    template: &LabBuilder,
    seeds: Range<u64>,
    scenario: S,
) -> Exploration
where
    S: Fn(Cx<LabCaps>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    let scenario = Arc::new(scenario);
    let mut fingerprints = std::collections::BTreeSet::new();
    let mut runs = 0;
    for seed in seeds {
        let s = scenario.clone();
        let report = template
            .clone()
            .seed(seed)
            .build()
            .block_on(move |cx| s(cx));
        runs += 1;
        fingerprints.insert(report.fingerprint);
        let failure = report.failure();
        // The output and the error are the scenario's values: one whose
        // `Drop` panics fails this seed, rather than unwind out of the
        // exploration with no seed named.
        let LabReport {
            outcome,
            trace,
            fingerprint,
            elapsed,
            ..
        } = report;
        let dropped = crate::outcome::drop_caught(outcome);
        let failure = failure.or_else(|| {
            dropped.map(|p| format!("dropping the run's output or error panicked: {p}"))
        });
        if let Some(reason) = failure {
            return Exploration {
                runs,
                distinct_schedules: fingerprints.len() as u64,
                failure: Some(FoundFailure {
                    seed,
                    runs_before: runs - 1,
                    reason,
                    trace,
                    fingerprint,
                    elapsed,
                }),
            };
        }
    }
    Exploration {
        runs,
        distinct_schedules: fingerprints.len() as u64,
        failure: None,
    }
}
