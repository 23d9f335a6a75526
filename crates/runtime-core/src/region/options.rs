//! [`RegionOptions`]: how to open a region (its [`Policy`], budget and
//! cleanup budget).

#[cfg(doc)]
use crate::CancelKind;
use crate::budget::{Budget, CleanupBudget};

/// What a region does when a child fails.
///
/// ```
/// use runtime_core::{Policy, RegionOptions};
/// assert_eq!(RegionOptions::collect_all().policy(), Policy::CollectAll);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The first error or panic (of a child or of the body) cancels every
    /// other child, reason [`CancelKind::SiblingFailed`].
    #[default]
    FailFast,
    /// Every child runs to its end; the region's outcome is the join.
    CollectAll,
}

/// How to open a region: its policy, budget and cleanup budget.
///
/// ```
/// use runtime_core::{Budget, Policy, RegionOptions};
/// let spec = RegionOptions::collect_all().budget(Budget::UNLIMITED.with_poll_quota(10_000));
/// assert_eq!(spec.policy(), Policy::CollectAll);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RegionOptions {
    pub(super) policy: Policy,
    pub(crate) budget: Budget,
    pub(crate) cleanup: Option<CleanupBudget>,
    /// The region's outcome is thrown away (the regions that `join_all`,
    /// `race` and `join!` open: their callers get the tasks' outcomes from
    /// the handles): a failing child's error is not formatted for it.
    pub(crate) quiet: bool,
}

impl RegionOptions {
    /// A fail-fast region (the default).
    ///
    /// ```
    /// use runtime_core::{Policy, RegionOptions};
    /// assert_eq!(RegionOptions::fail_fast().policy(), Policy::FailFast);
    /// ```
    pub fn fail_fast() -> Self {
        RegionOptions::default()
    }

    /// A collect-all region.
    ///
    /// ```
    /// use runtime_core::{Policy, RegionOptions};
    /// assert_eq!(RegionOptions::collect_all().policy(), Policy::CollectAll);
    /// ```
    pub fn collect_all() -> Self {
        RegionOptions {
            policy: Policy::CollectAll,
            ..RegionOptions::default()
        }
    }

    /// A collect-all region whose outcome nobody reads ([`quiet`](Self::quiet)).
    pub(crate) fn quiet_collect_all() -> Self {
        RegionOptions {
            quiet: true,
            ..RegionOptions::collect_all()
        }
    }

    /// With this budget (met with the parent's).
    ///
    /// ```
    /// use runtime_core::{Budget, RegionOptions};
    /// let opts = RegionOptions::fail_fast().budget(Budget::UNLIMITED.with_poll_quota(1_000));
    /// # let _ = opts;
    /// ```
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// With this cleanup budget for its tasks (default: the parent's).
    ///
    /// ```
    /// use runtime_core::{CleanupBudget, RegionOptions};
    /// let opts = RegionOptions::collect_all().cleanup(CleanupBudget::UNLIMITED);
    /// # let _ = opts;
    /// ```
    pub fn cleanup(mut self, cleanup: CleanupBudget) -> Self {
        self.cleanup = Some(cleanup);
        self
    }

    /// The policy.
    ///
    /// ```
    /// use runtime_core::{Policy, RegionOptions};
    /// assert_eq!(RegionOptions::default().policy(), Policy::FailFast);
    /// ```
    pub fn policy(&self) -> Policy {
        self.policy
    }
}
