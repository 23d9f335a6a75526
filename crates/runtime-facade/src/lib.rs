//! One dependency for the whole workspace.
//!
//! Re-exports each crate of the workspace as it lands, under a short name:
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`queue`] | `otlp-queue` | lock-free bounded MPSC queue with per-producer lanes |
//!
//! The runtime (`runtime-core`, `runtime-cap`) and the span exporter
//! (`otlp-exporter`) join here when they are built.
//!
//! ```
//! use runtime_facade::queue;
//!
//! let (tx, mut rx) = queue::bounded::<&str>(16);
//! tx.try_push("span").unwrap();
//! assert_eq!(rx.pop(), Some("span"));
//! ```

/// The lock-free bounded MPSC queue (the `otlp-queue` crate).
pub use otlp_queue as queue;
