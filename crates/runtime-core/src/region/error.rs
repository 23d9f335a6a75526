//! [`RegionError`]: why a region failed, and the [`Failure`] of a child
//! as the region reports it.

use std::fmt;

use crate::TaskId;

/// Why a region failed: its body's own error, or a child's. `E` is the
/// body's error type; a body that returns any value
/// ([`Cx::scope`](crate::Cx::scope)) has none (`Infallible`).
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::{Outcome, RegionError};
/// let out = rt.block_on(|cx| async move {
///     let r = cx.region(|cx| async move {
///         cx.try_spawn(|_| async { Err::<(), _>("disk full") });
///         Ok::<_, &str>(())
///     }).await;
///     Ok::<_, ()>(match r {
///         Outcome::Err(RegionError::Child(f)) => f.message,
///         _ => String::new(),
///     })
/// });
/// assert_eq!(out.ok().as_deref(), Some("\"disk full\""));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegionError<E = std::convert::Infallible> {
    /// The region's body returned this error.
    #[error("region body failed: {0:?}")]
    Body(E),
    /// A task in the region failed (the first to, in a fail-fast region).
    #[error("{0}")]
    Child(Failure),
}

/// A child task's error, as its region reports it (the typed error stays
/// with the task's `JoinHandle`).
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::{Outcome, RegionError};
/// let out = rt.block_on(|cx| async move {
///     let r = cx.region(|cx| async move {
///         let h = cx.try_spawn(|_| async { Err::<(), _>("disk full") });
///         Ok::<_, ()>(h.id())
///     }).await;
///     Ok::<_, ()>(r)
/// });
/// let Some(Outcome::Err(RegionError::Child(failure))) = out.ok() else { panic!() };
/// assert_eq!(failure.message, "\"disk full\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The task that failed.
    pub task: TaskId,
    /// Its error, formatted with `Debug`, cut at 4 096 bytes (then ending
    /// in `… (cut at 4096 bytes)`; the formatting stops there too). Only
    /// the failure a region keeps is formatted: a later failure of a
    /// region that already has one, and the failures inside `join_all`,
    /// `race` and `join!` (whose callers get every outcome from the
    /// handles), are not.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} failed: {}", self.task.0, self.message)
    }
}
