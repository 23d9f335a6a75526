//! The three budgets of the runtime, which are three different things:
//!
//! | budget | bounds | run out means | where |
//! |---|---|---|---|
//! | [`Budget`] | a task's or region's work: deadline, poll quota, cost quota | cancellation (`Deadline`, `PollQuota`, `CostBudget`) | this file |
//! | [`CleanupBudget`] | a cancelled task's cleanup, and a closing region's finalizers: polls and a grace period | cut-off: the future is dropped, counted | `cleanup.rs` |
//! | the coop budget | ready await points per task turn ([`coop::PER_TURN`]) | the await point yields, nothing is cancelled | `coop.rs` |

mod cleanup;
pub(crate) mod coop;

pub use cleanup::CleanupBudget;

use crate::time::Instant;

/// Limits on a task or region: a deadline, a poll quota (how many times it
/// may be polled) and a cost quota (units it may
/// [`charge`](crate::Cx::charge)).
///
/// There is no scheduling priority: the scheduler runs tasks in the order
/// their wake-ups and spawns put them in (`sched/pool.rs`), and a field
/// that nothing read would promise what the runtime does not do.
///
/// A child's effective budget is the *meet* of its parent's and its own:
/// the earliest deadline, the smaller quotas. Running
/// out becomes cancellation with the matching [`CancelKind`]
/// (`Deadline`, `PollQuota`, `CostBudget`).
///
/// ```
/// use runtime_core::{Budget, time::Instant};
/// let parent = Budget::UNLIMITED.with_poll_quota(100);
/// let child = Budget::UNLIMITED.with_poll_quota(500).with_deadline(Instant::from_nanos(7));
/// let eff = parent.meet(&child);
/// assert_eq!(eff.poll_quota, Some(100));
/// assert_eq!(eff.deadline, Some(Instant::from_nanos(7)));
/// ```
///
/// [`CancelKind`]: crate::CancelKind
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Cancel with `Deadline` when the clock reaches this.
    pub deadline: Option<Instant>,
    /// Cancel with `PollQuota` before poll number `quota + 1`.
    pub poll_quota: Option<u32>,
    /// Cancel with `CostBudget` when charges exceed this.
    pub cost_quota: Option<u64>,
}

impl Budget {
    /// No limits: the identity of [`meet`](Self::meet).
    ///
    /// ```
    /// use runtime_core::Budget;
    /// let b = Budget::UNLIMITED.with_poll_quota(5);
    /// assert_eq!(Budget::UNLIMITED.meet(&b), b);
    /// ```
    pub const UNLIMITED: Budget = Budget {
        deadline: None,
        poll_quota: None,
        cost_quota: None,
    };

    /// With this deadline.
    ///
    /// ```
    /// use runtime_core::{Budget, time::Instant};
    /// let b = Budget::UNLIMITED.with_deadline(Instant::from_nanos(1_000));
    /// assert_eq!(b.deadline, Some(Instant::from_nanos(1_000)));
    /// ```
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// With this poll quota.
    ///
    /// ```
    /// use runtime_core::Budget;
    /// assert_eq!(Budget::UNLIMITED.with_poll_quota(10).poll_quota, Some(10));
    /// ```
    pub fn with_poll_quota(mut self, polls: u32) -> Self {
        self.poll_quota = Some(polls);
        self
    }

    /// With this cost quota.
    ///
    /// ```
    /// use runtime_core::Budget;
    /// assert_eq!(Budget::UNLIMITED.with_cost_quota(10).cost_quota, Some(10));
    /// ```
    pub fn with_cost_quota(mut self, cost: u64) -> Self {
        self.cost_quota = Some(cost);
        self
    }

    /// The meet: earliest deadline, smaller quotas.
    /// Associative, commutative, idempotent, with [`Budget::UNLIMITED`] as
    /// identity (property-tested in `tests/laws.rs`).
    ///
    /// ```
    /// use runtime_core::Budget;
    /// let a = Budget::UNLIMITED.with_poll_quota(10);
    /// let b = Budget::UNLIMITED.with_poll_quota(3).with_cost_quota(7);
    /// let m = a.meet(&b);
    /// assert_eq!((m.poll_quota, m.cost_quota), (Some(3), Some(7)));
    /// ```
    pub fn meet(&self, other: &Budget) -> Budget {
        Budget {
            deadline: min_opt(self.deadline, other.deadline),
            poll_quota: min_opt(self.poll_quota, other.poll_quota),
            cost_quota: min_opt(self.cost_quota, other.cost_quota),
        }
    }

    /// `true` if it sets no limit at all.
    ///
    /// ```
    /// use runtime_core::Budget;
    /// assert!(Budget::UNLIMITED.is_unlimited());
    /// assert!(!Budget::UNLIMITED.with_cost_quota(1).is_unlimited());
    /// ```
    pub fn is_unlimited(&self) -> bool {
        self.deadline.is_none() && self.poll_quota.is_none() && self.cost_quota.is_none()
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::UNLIMITED
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
