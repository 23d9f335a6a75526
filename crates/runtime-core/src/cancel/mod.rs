//! Cancellation: why ([`CancelReason`], [`CancelKind`], [`Origin`]), where
//! a request is kept (`CancelCell`, one per task and per region), and the
//! protocol that carries it (request, drain, finalize: `protocol.rs`).
//!
//! Reasons only strengthen: a request with a more severe reason replaces a
//! weaker one; a weaker or equal one is ignored, so the first explanation
//! of a given strength is the one reported.
//!
//! ## In short
//!
//! A request strengthens a `CancelCell` (the first request is one
//! compare-and-swap; a later, stronger one takes a mutex) and sweeps the
//! registry of the region's tasks, which get the reason verbatim; the
//! regions below get `ParentCancelled` with the reason as its cause,
//! through the task that opened each: a task's cancellation reaches the
//! regions its body has open, and a region's reaches those its own body
//! opened in it. Checkpoints (`checkpoint`, `yield_now`, `sleep`, `tick`,
//! channel waits) read the cell of their scope. A task or body that returns
//! `Err` after a checkpoint reported cancellation ends `Cancelled(reason)`.
//! Cleanup is bounded: after the request, a task may be polled
//! `CleanupBudget::polls` times and live `grace` long (one timer per
//! cancelled region, armed only if something is still running after a poll
//! that saw the request), then it is cut off (its future dropped, counted).

mod cell;
mod protocol;
mod reason;

pub(crate) use cell::CancelCell;
pub(crate) use protocol::{
    GRACE_ARMED, GRACE_UNSET, arm_grace, cancel_task, cancel_task_from_region, cut_off_task,
};
pub use reason::{CancelKind, CancelReason, Cancelled, Origin};
