//! The measurement code shared by the criterion benchmarks (`benches/`) and
//! `cargo xtask sweep`: [`queue`] (one consumer, N producers, and the queues
//! a user would pick instead of `otlp-queue`) and [`exporter`] (span
//! pipelines end to end, against the OpenTelemetry SDK's batch processor),
//! [`record`] (one span recorded on one thread: ours, the SDK, fastrace),
//! each driving every candidate exactly the same way, and [`runtime`]
//! (runtime-core's spawn, yield, regions, cancellation and timers against
//! tokio's multi-threaded runtime, as the tokio anchor measures them), and
//! [`layer`] (`tracing` spans through otlp-tracing's `OtlpLayer` against
//! tracing-opentelemetry with the SDK's batch processor, and the registry
//! alone).
//!
//! The method follows the anchor measurements the project compares itself
//! with: producers push `u64` items as fast as they can, either retrying
//! when the queue is full (lossless) or dropping the item (shedding); one
//! consumer drains until the producers are done. Each queue is given the
//! same total capacity; each consumer drains the way a user of that queue
//! naturally would (`pop_batch` for `otlp-queue`, one lock per drain of
//! everything for `Mutex<VecDeque>`, `pop` in a loop for `ArrayQueue`).
//!
//! ```
//! use benches::queue::{Candidate, Mode, run};
//! let r = run(Candidate::OtlpQueue, 2, 10_000, Mode::Lossless, 1024);
//! assert_eq!(r.delivered, 20_000);
//! ```

pub mod exporter;
pub mod lab;
pub mod layer;
pub mod queue;
pub mod record;
pub mod runtime;
