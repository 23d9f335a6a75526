//! # runtime-core (not built yet)
//!
//! This crate will be the structured-concurrency executor of the workspace:
//! a work-stealing multi-threaded scheduler and a current-thread flavour,
//! regions that close only when every task and child region in them has
//! finished, cancellation as a protocol (request, drain, finalize) with
//! reasons and cleanup budgets, task outcomes `Ok`, `Err`,
//! `Cancelled(reason)` and `Panicked`, budgets, timers, and two-phase
//! channels, all reached through a capability context `Cx`.
//!
//! It holds no API yet: the issue that builds it is open. See
//! `docs/ARCHITECTURE.md` at the workspace root for where it fits.
