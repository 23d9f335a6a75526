//! One dependency for the whole workspace.
//!
//! Re-exports each crate of the workspace as it lands, under a short name:
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`queue`] | `otlp-queue` | lock-free bounded MPSC queue with per-producer lanes |
//! | [`exporter`] | `otlp-exporter` | batching, load-shedding OTLP span pipeline with exact accounting |
//! | [`runtime`] | `runtime-core` | structured-concurrency executor: regions, cancellation, budgets, timers, channels |
//!
//! ```
//! use runtime_facade::queue;
//!
//! let (tx, mut rx) = queue::bounded::<&str>(16);
//! tx.try_push("span").unwrap();
//! assert_eq!(rx.pop(), Some("span"));
//!
//! let memory = runtime_facade::exporter::InMemory::new();
//! let pipeline = runtime_facade::exporter::Pipeline::builder()
//!     .transport(memory.clone())
//!     .build()
//!     .unwrap();
//! pipeline.tracer("app", "1.0").start("work").end();
//! pipeline.shutdown(std::time::Duration::from_secs(5));
//! assert_eq!(memory.span_count(), 1);
//! ```

/// The lock-free bounded MPSC queue (the `otlp-queue` crate).
pub use otlp_queue as queue;

/// The span export pipeline (the `otlp-exporter` crate).
pub use otlp_exporter as exporter;

/// The structured-concurrency runtime (the `runtime-core` crate).
///
/// ```
/// use runtime_facade::runtime::{Runtime, caps::ambient_authority};
/// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let child = cx.spawn(|_| async { Ok::<_, ()>(2) });
///     Ok::<_, ()>(child.await.unwrap() * 21)
/// });
/// assert_eq!(out.ok(), Some(42));
/// ```
pub use runtime_core as runtime;
