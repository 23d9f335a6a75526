//! One dependency for the whole workspace.
//!
//! Re-exports each crate of the workspace as it lands, under a short name
//! (all but `otlp-sdk-bridge`, which pulls in the OpenTelemetry SDK:
//! depend on it directly to keep an `SdkTracerProvider`):
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`queue`] | `otlp-queue` | lock-free bounded MPSC queue with per-producer lanes |
//! | [`exporter`] | `otlp-exporter` | batching, load-shedding OTLP span pipeline with exact accounting; owned spans, W3C trace context, samplers |
//! | [`tracing_layer`] | `otlp-tracing` | a `tracing_subscriber::Layer` that records `tracing` spans through the pipeline |
//! | [`runtime`] | `runtime-core` | structured-concurrency executor: regions, cancellation, budgets, timers, channels, `Cx<Caps>` |
//! | [`caps`] | `runtime-cap` | capability sets, access tokens, `ambient_authority` |
//! | [`lab`] | `runtime-core` | the deterministic lab runtime: virtual time, seeded schedules, oracles |
//! | [`tracing`], [`tracing_subscriber`] | | the crates the layer plugs into, at the versions it uses |
//! | [`prelude`] | | what an application imports: `use runtime_facade::prelude::*;` |
//!
//! A whole application: `examples/app.rs` (`cargo run -p runtime-facade
//! --example app`).
//!
//! Features: `http` (default) is the exporter's OTLP/HTTP transport
//! (`exporter::HttpTransport`, and a pipeline built with network access
//! sending to a collector). With `default-features = false` nothing of
//! ureq, rustls or *ring* is built (no C compiler needed); spans then go
//! to a file or to a transport of the application's own.
//!
//! The runtime's effects are reached through capabilities ([`caps`],
//! `Cx<Caps>`), but **telemetry export and the exporter's clock are
//! outside that system**: recording a span takes no token, and
//! [`exporter::now_unix_nanos`] and [`exporter::clock`] read the clock
//! ambiently (the exporter stands alone and records from any thread,
//! `tracing` callbacks included, in tens of nanoseconds). Only what leaves
//! the process is gated, when the pipeline is built: a collector needs a
//! `NetAccess`, a file an `FsAccess`. `TelemetryAccess` gates no API here
//! (see [`caps`], *What the capabilities do not cover*).
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

/// The `tracing` layer (the `otlp-tracing` crate): `tracing` spans through
/// the pipeline, with W3C context propagation. [`tracing`] and
/// [`tracing_subscriber`], which it plugs into, are re-exported beside it,
/// so that this crate is the one dependency: they are built with
/// `EnvFilter` (tracing-subscriber's `env-filter`), the console layer
/// `tracing_subscriber::fmt` (`fmt`, `ansi`) and `#[instrument]`
/// (tracing's `attributes`) turned on. One exception: the code that
/// `#[instrument]` expands to names the crate `::tracing`, which a
/// re-export cannot provide, so a crate that uses the attribute also lists
/// `tracing = "0.1"` in its own `Cargo.toml` (Cargo builds one `tracing`
/// for both; without it: "could not find `tracing` in the list of imported
/// crates"). Spans made with `tracing::info_span!` and the like need
/// nothing more than the facade.
///
/// ```
/// use runtime_facade::exporter::{InMemory, Pipeline};
/// use runtime_facade::tracing_layer::OtlpLayer;
/// use runtime_facade::{tracing, tracing_subscriber};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let memory = InMemory::new();
/// let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
/// let subscriber = tracing_subscriber::registry().with(OtlpLayer::new(&pipeline));
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info_span!("work", items = 3).in_scope(|| tracing::info!("done"));
/// });
/// pipeline.shutdown(std::time::Duration::from_secs(5));
/// assert_eq!(memory.span_count(), 1);
/// ```
///
/// `#[instrument]` (with `tracing` in the crate's `Cargo.toml`, as above),
/// an `EnvFilter` and the console layer:
///
/// ```
/// use runtime_facade::exporter::{InMemory, Pipeline};
/// use runtime_facade::tracing_layer::OtlpLayer;
/// use runtime_facade::{tracing, tracing_subscriber};
/// use tracing::instrument;
/// use tracing_subscriber::EnvFilter;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// #[instrument(fields(items = items.len()))]
/// fn total(items: &[u64]) -> u64 {
///     // Below the filter's level: never reaches the pipeline.
///     tracing::debug_span!("sum").in_scope(|| items.iter().sum())
/// }
///
/// let memory = InMemory::new();
/// let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
/// let subscriber = tracing_subscriber::registry()
///     // `EnvFilter::from_default_env()` reads RUST_LOG; a fixed one here.
///     .with(EnvFilter::new("info"))
///     .with(OtlpLayer::new(&pipeline))
///     // The console layer too (here writing nowhere).
///     .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
/// tracing::subscriber::with_default(subscriber, || assert_eq!(total(&[1, 2, 3]), 6));
/// pipeline.shutdown(std::time::Duration::from_secs(5));
/// assert_eq!(memory.span_count(), 1); // `total`, not `sum`
/// ```
pub use otlp_tracing as tracing_layer;

/// `tracing`, the instrumentation the layer records (re-exported).
pub use tracing;

/// `tracing-subscriber`, whose registry the layer sits on (re-exported).
pub use tracing_subscriber;

/// The structured-concurrency runtime (the `runtime-core` crate).
///
/// ```
/// use runtime_facade::runtime::{Runtime, caps::ambient_authority};
/// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let child = cx.spawn(|_| async { 2 });
///     Ok::<_, ()>(child.await.unwrap() * 21)
/// });
/// assert_eq!(out.ok(), Some(42));
/// ```
pub use runtime_core as runtime;

/// The capability vocabulary (the `runtime-cap` crate).
pub use runtime_cap as caps;

/// The lab runtime: the same program on one thread, virtual time, a
/// seeded scheduler, oracles (`runtime_core::lab`).
///
/// ```
/// use runtime_facade::lab::LabRuntime;
/// use runtime_facade::runtime::time::Duration;
/// let report = LabRuntime::new(1).block_on(|cx| async move {
///     cx.sleep(Duration::from_secs(30)).await.map_err(|_| ())
/// });
/// assert_eq!(report.elapsed, Duration::from_secs(30));
/// ```
pub use runtime_core::lab;

/// What an application imports to write against the runtime in a few lines.
///
/// ```
/// use runtime_facade::prelude::*;
///
/// // A library function that may only use time, as its signature says.
/// async fn settle(cx: &Cx<TimeOnly>) -> Result<(), Cancelled> {
///     cx.sleep(Duration::from_millis(1)).await
/// }
///
/// let rt = Runtime::builder().worker_threads(2).build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let (tx, mut rx) = mpsc::channel::<u32>(4).unwrap();
///     cx.try_spawn(move |cx| async move {
///         let permit = tx.reserve(&cx).await.map_err(|_| ())?; // phase one
///         permit.send(7).map_err(|_| ())                        // phase two
///     });
///     settle(&cx.narrow::<TimeOnly>()).await.map_err(|_| ())?;
///     rx.recv(&cx).await.map_err(|_| ())
/// });
/// assert_eq!(out.ok(), Some(7));
/// ```
pub mod prelude {
    pub use runtime_core::caps::{
        All, CapSet, Capability, Caps, Compute, FsAccess, HasBlocking, HasFs, HasNet, HasRandom,
        HasSpawn, HasTelemetry, HasTime, NetAccess, NetClient, No, Nothing, SubsetOf,
        TelemetryAccess, TimeOnly, Yes, ambient_authority,
    };
    pub use runtime_core::channel::{mpsc, oneshot};
    pub use runtime_core::time::{Duration, Instant};
    pub use runtime_core::{
        Budget, CancelKind, CancelReason, Cancelled, CleanupBudget, Cx, JoinHandle, Outcome,
        Policy, RegionError, RegionOptions, Runtime, join, race,
    };
}

/// The README's examples, compiled and run as this crate's doctests, so
/// that they cannot drift from the code (the fragments that need a
/// collector or values of the caller's are marked `ignore` there).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
