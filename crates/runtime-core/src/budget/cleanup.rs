//! [`CleanupBudget`]: how much cleanup a cancelled task, or a closing
//! region's finalizers, get before they are cut off.

use crate::time::Duration;

/// How much cleanup a cancelled task gets before it is cut off: a number
/// of polls after the request, and a grace period. Cut-offs are counted in
/// [`RuntimeStats`](crate::RuntimeStats) and in shutdown reports.
///
/// A cut-off task's future is dropped. A region's body (which runs in its
/// owner's poll: [`Cx::region`](crate::Cx::region),
/// [`Cx::timeout`](crate::Cx::timeout), the combinators) still running
/// at its region's cut-off gets one more poll, its masks lifted and its
/// waits on blocking jobs ended, to see the cancellation and return; still
/// running after that poll, it is dropped where it lies and the region's
/// outcome is `Cancelled` (`RuntimeStats::region_bodies_cut_off`). So is
/// a body still running after `polls` of its polls saw the cancellation
/// at a checkpoint (the body alone: the region's tasks keep their own
/// budgets; polls in which it only waits, for its children say, do not
/// count). Limit: a body that ignores its cancellation without reaching a
/// checkpoint (a loop that wakes itself), or one polled by a task other
/// than its owner, is bounded by `grace` alone: with `grace: None`, only
/// shutdown ends it.
///
/// A closing region's finalizers each get their first poll whatever the
/// budget, and the budget from there on, each its own. Those registered
/// while the finalizers run (a finalizer that registers another) share
/// one more bound: the pass of them runs for at most `grace` and starts
/// at most `polls` of them (where the region's future was dropped, and
/// its finalizers run in line, at most `polls` or, with no `polls`,
/// [`DEFAULT`](Self::DEFAULT)'s); a later one is dropped unrun, counted
/// in `RuntimeStats::finalizers_cut_off`.
///
/// ```
/// use runtime_core::{CleanupBudget, RegionOptions, time::Duration};
/// // At most 10 polls and 50 ms of cleanup for the tasks of this region.
/// let opts = RegionOptions::fail_fast().cleanup(CleanupBudget {
///     polls: Some(10),
///     grace: Some(Duration::from_millis(50)),
/// });
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupBudget {
    /// Polls allowed after cancellation was requested (`None`: no limit).
    pub polls: Option<u32>,
    /// Time allowed after cancellation was requested (`None`: no limit).
    /// Counted from the clock's coarse reading rounded up
    /// ([`Clock::now_ceil`](crate::time::Clock::now_ceil)), so the cut-off
    /// comes no earlier than this after the request, and at most about a
    /// kernel tick (4 ms at 250 Hz) later, plus the timer's own lateness.
    pub grace: Option<Duration>,
}

impl CleanupBudget {
    /// The default: 1 000 polls and 5 seconds.
    ///
    /// ```
    /// use runtime_core::{CleanupBudget, time::Duration};
    /// assert_eq!(CleanupBudget::default(), CleanupBudget::DEFAULT);
    /// assert_eq!(CleanupBudget::DEFAULT.grace, Some(Duration::from_secs(5)));
    /// ```
    pub const DEFAULT: CleanupBudget = CleanupBudget {
        polls: Some(1_000),
        grace: Some(Duration::from_secs(5)),
    };
    /// No limit: cleanup may take as long as it takes (shutdown still
    /// cuts it off at its deadline).
    ///
    /// ```
    /// use runtime_core::CleanupBudget;
    /// assert_eq!(CleanupBudget::UNLIMITED.polls, None);
    /// ```
    pub const UNLIMITED: CleanupBudget = CleanupBudget {
        polls: None,
        grace: None,
    };
}

impl Default for CleanupBudget {
    fn default() -> Self {
        Self::DEFAULT
    }
}
