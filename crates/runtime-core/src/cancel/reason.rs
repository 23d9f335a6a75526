//! Why something was cancelled: [`CancelReason`], its [`CancelKind`] and
//! [`Origin`], and the [`Cancelled`] error a checkpoint returns.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::{RegionId, TaskId};

/// What kind of cancellation this is, from least to most severe.
///
/// ```
/// use runtime_core::{CancelKind, CancelReason};
/// // A stronger kind replaces a weaker one, never the other way round.
/// let mut r = CancelReason::new(CancelKind::LostRace);
/// assert!(r.strengthen(&CancelReason::new(CancelKind::Shutdown)));
/// assert_eq!(r.kind(), CancelKind::Shutdown);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelKind {
    /// Someone holding a handle asked.
    User,
    /// It lost a `race`: another branch finished first.
    LostRace,
    /// A `timeout` around it expired.
    Timeout,
    /// Its budget's deadline passed.
    Deadline,
    /// Its budget's poll quota ran out.
    PollQuota,
    /// Its budget's cost quota ran out.
    CostBudget,
    /// A sibling in a fail-fast region failed.
    SiblingFailed,
    /// An enclosing region was cancelled; [`CancelReason::cause`] says why.
    ParentCancelled,
    /// The runtime is shutting down.
    Shutdown,
}

impl CancelKind {
    /// The strength of this kind: a request replaces the current reason
    /// only when it is strictly stronger.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// assert!(CancelKind::Shutdown.rank() > CancelKind::User.rank());
    /// ```
    pub const fn rank(self) -> u8 {
        match self {
            CancelKind::User => 1,
            CancelKind::LostRace => 2,
            CancelKind::Timeout => 3,
            CancelKind::Deadline => 4,
            CancelKind::PollQuota => 5,
            CancelKind::CostBudget => 6,
            CancelKind::SiblingFailed => 7,
            CancelKind::ParentCancelled => 8,
            CancelKind::Shutdown => 9,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            CancelKind::User => "user",
            CancelKind::LostRace => "lost a race",
            CancelKind::Timeout => "timeout",
            CancelKind::Deadline => "deadline",
            CancelKind::PollQuota => "poll quota",
            CancelKind::CostBudget => "cost budget",
            CancelKind::SiblingFailed => "sibling failed",
            CancelKind::ParentCancelled => "parent cancelled",
            CancelKind::Shutdown => "shutdown",
        }
    }
}

/// Who asked for a cancellation.
///
/// ```
/// use runtime_core::{CancelKind, CancelReason, Origin};
/// let r = CancelReason::new(CancelKind::Shutdown).with_origin(Origin::Runtime);
/// assert_eq!(r.origin(), Origin::Runtime);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// Code holding a handle (a `JoinHandle`, a `Cx`).
    User,
    /// A region: its policy, its budget, or a request on it.
    Region(RegionId),
    /// A task: its own budget.
    Task(TaskId),
    /// The runtime itself (shutdown).
    Runtime,
}

/// Why something was cancelled: a kind, an optional message, who asked,
/// and, for [`CancelKind::ParentCancelled`], the reason the parent had.
///
/// ```
/// use runtime_core::{CancelKind, CancelReason};
/// let mut r = CancelReason::user("stop button");
/// assert!(r.strengthen(&CancelReason::new(CancelKind::Shutdown)));
/// assert!(!r.strengthen(&CancelReason::user("again")));
/// assert_eq!(r.kind(), CancelKind::Shutdown);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct CancelReason {
    kind: CancelKind,
    message: Option<Cow<'static, str>>,
    origin: Origin,
    cause: Option<Arc<CancelReason>>,
}

impl CancelReason {
    /// A reason of this kind, origin [`Origin::User`], no message.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// let r = CancelReason::new(CancelKind::Timeout);
    /// assert_eq!((r.kind(), r.origin(), r.message()), (CancelKind::Timeout, Origin::User, None));
    /// ```
    pub fn new(kind: CancelKind) -> Self {
        CancelReason {
            kind,
            message: None,
            origin: Origin::User,
            cause: None,
        }
    }

    /// A user cancellation with a message.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// assert_eq!(CancelReason::user("stop").message(), Some("stop"));
    /// ```
    pub fn user(message: impl Into<Cow<'static, str>>) -> Self {
        CancelReason::new(CancelKind::User).with_message(message)
    }

    /// The same reason with this message.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// let r = CancelReason::new(CancelKind::Shutdown).with_message("SIGTERM");
    /// assert_eq!(r.to_string(), "shutdown: SIGTERM");
    /// ```
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The same reason with this origin.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// let r = CancelReason::new(CancelKind::Shutdown).with_origin(Origin::Runtime);
    /// assert_eq!(r.origin(), Origin::Runtime);
    /// ```
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// The reason a descendant of something cancelled for `self` receives:
    /// `ParentCancelled`, with `self` as its cause. A `ParentCancelled`
    /// reason passes on as it is (a grandchild's cause is its parent's
    /// cause, not its parent's reason): the chain stays two long however
    /// deep the tree, so a reason that reached the bottom of a region tree
    /// thousands deep is not a chain that deep (its drop, `Display` and
    /// `Debug` recursed once a level, and overflowed the stack: found by
    /// review).
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// let parent = CancelReason::new(CancelKind::Timeout);
    /// let child = parent.for_child();
    /// assert_eq!(child.kind(), CancelKind::ParentCancelled);
    /// assert_eq!(child.cause().map(|c| c.kind()), Some(CancelKind::Timeout));
    /// assert_eq!(child.for_child(), child);
    /// ```
    pub fn for_child(&self) -> CancelReason {
        if self.kind == CancelKind::ParentCancelled
            && self.message.is_none()
            && self.cause.is_some()
        {
            return self.clone();
        }
        CancelReason {
            kind: CancelKind::ParentCancelled,
            message: None,
            origin: self.origin,
            cause: Some(Arc::new(self.clone())),
        }
    }

    /// The kind.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// assert_eq!(CancelReason::user("x").kind(), CancelKind::User);
    /// ```
    pub fn kind(&self) -> CancelKind {
        self.kind
    }

    /// The message, if one was given.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// assert_eq!(CancelReason::user("x").message(), Some("x"));
    /// ```
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Who asked.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// assert_eq!(CancelReason::user("x").origin(), Origin::User);
    /// ```
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// For `ParentCancelled`: the reason the parent was cancelled for.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// let child = CancelReason::user("x").for_child();
    /// assert_eq!(child.cause().map(|c| c.kind()), Some(CancelKind::User));
    /// ```
    pub fn cause(&self) -> Option<&CancelReason> {
        self.cause.as_deref()
    }

    /// The reason at the end of the cause chain: what started it all.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// let grandchild = CancelReason::new(CancelKind::Deadline).for_child().for_child();
    /// assert_eq!(grandchild.root_cause().kind(), CancelKind::Deadline);
    /// ```
    pub fn root_cause(&self) -> &CancelReason {
        let mut r = self;
        while let Some(c) = r.cause.as_deref() {
            r = c;
        }
        r
    }

    /// The strength used by [`strengthen`](Self::strengthen): this kind's
    /// rank, then the root cause's.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// assert!(CancelReason::new(CancelKind::Shutdown).strength() > CancelReason::user("x").strength());
    /// ```
    pub fn strength(&self) -> (u8, u8) {
        (self.kind.rank(), self.root_cause().kind.rank())
    }

    /// Replaces `self` with `other` if `other` is strictly stronger;
    /// returns whether it did.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// let mut r = CancelReason::new(CancelKind::Timeout);
    /// assert!(!r.strengthen(&CancelReason::user("weaker")));
    /// assert!(r.strengthen(&CancelReason::new(CancelKind::Shutdown)));
    /// assert_eq!(r.kind(), CancelKind::Shutdown);
    /// ```
    pub fn strengthen(&mut self, other: &CancelReason) -> bool {
        if other.strength() > self.strength() {
            *self = other.clone();
            true
        } else {
            false
        }
    }
}

impl fmt::Debug for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CancelReason({self})")
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(c) = &self.cause {
            write!(f, " (because {c})")?;
        }
        Ok(())
    }
}

/// The error a checkpoint returns once cancellation has been requested:
/// the reason. Level-triggered: every later checkpoint returns it again.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::{CancelKind, Cancelled, Budget};
/// let out = rt.block_on(|cx| async move {
///     let h = cx.try_spawn_with(Budget::UNLIMITED.with_cost_quota(1), |cx| async move {
///         cx.charge(2)?; // Err(Cancelled(CostBudget))
///         Ok::<(), Cancelled>(())
///     });
///     Ok::<_, ()>(h.await.cancel_reason().map(|r| r.kind()))
/// });
/// assert_eq!(out.ok(), Some(Some(CancelKind::CostBudget)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cancelled: {0}")]
pub struct Cancelled(pub CancelReason);

impl Cancelled {
    /// The reason.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Origin};
    /// use runtime_core::Cancelled;
    /// let c = Cancelled(CancelReason::user("x"));
    /// assert_eq!(c.reason().kind(), CancelKind::User);
    /// ```
    pub fn reason(&self) -> &CancelReason {
        &self.0
    }
}
