//! Building a pipeline: [`PipelineBuilder`], the settings it takes (from
//! the builder, the `OTEL_BSP_*` environment or the OpenTelemetry spec's
//! defaults) and their validation, the resulting [`Config`], the shedding
//! policies, and the limits and defaults (the public constants).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, env_usize};
use crate::encode::Encoding;
use crate::model::{Priority, Resource, SpanData, SpanLimits};
use crate::sampling::Sampler;
use crate::transport::{FileTransport, Transport};

use super::*;

/// The spans each recording thread holds in a chunk of its own, on top of
/// `max_queue_size` (except with [`Shedding::DropOldest`], whose size is
/// per thread): the queue holds at most `max_queue_size +
/// THREAD_CHUNK_SLOTS x` (recording threads) spans.
pub const THREAD_CHUNK_SLOTS: usize = 16;

/// OTel SDK spec default: `OTEL_BSP_MAX_QUEUE_SIZE`.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;
/// OTel SDK spec default: `OTEL_BSP_SCHEDULE_DELAY` (ms).
pub const DEFAULT_SCHEDULED_DELAY: Duration = Duration::from_millis(5000);
/// OTel SDK spec default: `OTEL_BSP_EXPORT_TIMEOUT` (ms).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_millis(30_000);
/// OTel SDK spec default: `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
/// How long a batch whose export failed retryably is kept and tried again
/// before it counts as failed (`export_failed`): 300 s, the OpenTelemetry
/// Collector's `retry_on_failure.max_elapsed_time`. See
/// [`PipelineBuilder::retry_max_elapsed`].
pub const DEFAULT_RETRY_MAX_ELAPSED: Duration = Duration::from_secs(300);
/// How long dropping the last [`Pipeline`] handle waits for shutdown.
pub const DEFAULT_DROP_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the pipeline writes when no transport and no file are set and it
/// has file-system access but no network access (see
/// [`PipelineBuilder::file`]).
pub const DEFAULT_FILE: &str = "otlp-traces.jsonl";
/// The largest `max_queue_size` (and `OTEL_BSP_MAX_QUEUE_SIZE`): 1 Mi spans
/// in all, a pool of 512 MiB (512-byte slots; with
/// [`Shedding::DropOldest`], per recording thread). Larger values are refused with [`ConfigError::InvalidSetting`]
/// (they could only end in an allocation failure).
pub const MAX_QUEUE_SIZE: usize = 1 << 20;
/// The most export threads [`PipelineBuilder::max_concurrent_exports`] may
/// ask for; more is refused with [`ConfigError::InvalidSetting`].
pub const MAX_CONCURRENT_EXPORTS: usize = 256;
/// Every duration setting (`scheduled_delay`, `export_timeout`,
/// `drop_timeout`, the `Block` policy's timeout, and the `OTEL_BSP_*`
/// durations) is saturated to this: a wait of a year is, for a process,
/// "forever", and every deadline then fits in an [`Instant`].
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// How many queues' worth of spans (`HANDED_OVER_LANES x max_queue_size`)
/// the pipeline keeps, across all of them, for threads that exited with
/// spans still queued while the worker could not take them: with
/// [`Shedding::DropOldest`] (per-thread lanes) every exiting thread hands
/// its spans over; with the other policies (one shared pool) an exited
/// thread's spans stay in the pool for the worker, unless the worker is
/// away from the queue (a collector outage, or an export that hangs), or
/// more than 64 threads exit during one export, in which case they are
/// moved out and the thread's lane freed. Beyond that
/// many, the oldest handed-over spans are dropped and counted as
/// [`Dropped::orphaned`](crate::Dropped::orphaned): threads that come and
/// go cannot grow memory without bound.
pub const HANDED_OVER_LANES: usize = 8;
/// The most distinct instrumentation scopes a pipeline keeps. Past it, a
/// new scope's spans are exported under the pipeline's default scope (the
/// crate's own name), so that a program that makes a tracer per request
/// cannot grow the table without bound.
pub const MAX_SCOPES: usize = 1 << 16;

/// What `record` does when the queue has no room for a span (with the
/// default shared pool: no slot left in the pool nor in the recording
/// thread's own chunk; with `DropOldest`: the thread's own lane is full).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Shedding {
    /// Drop the new span (the OpenTelemetry spec's behaviour). Never blocks.
    #[default]
    DropNewest,
    /// Drop the lane's oldest span to make room. With this policy the queue
    /// keeps a ring of `max_queue_size` slots per recording thread (the
    /// shared pool cannot evict one span: see [`otlp_queue::pooled`]), so
    /// memory grows with the number of recording threads. Never blocks (it may spin
    /// for the moment the worker takes to finish reading that span).
    DropOldest,
    /// Wait for room, up to `timeout`, then drop the new span. Blocks the
    /// recording thread: use it where losing spans is worse than waiting.
    /// A thread's own 16-slot chunk takes its first spans without waiting,
    /// so short-lived threads that record 16 spans or fewer and exit never
    /// wait: while the pool is full, what they leave beyond
    /// [`HANDED_OVER_LANES`] queues' worth is
    /// [`orphaned`](crate::Dropped::orphaned), not waited for (a thread
    /// per request under a collector slower than the requests).
    /// A span too large for a queue slot waits, within the same timeout,
    /// for the byte budget of such spans too (see
    /// [`PipelineBuilder::max_queue_size`]); one larger than the whole
    /// budget is dropped at once.
    Block {
        /// The longest a `record` call waits.
        timeout: Duration,
    },
    /// Drop low-priority spans ([`Priority::Low`]) as soon as the queue
    /// holds `high_water` spans or more (counted across every recording
    /// thread, at the granularity of the shared pool's chunks of 16 slots,
    /// or the recording thread's own spans if more); drop normal spans only
    /// when it is full.
    Priority {
        /// Queue fill at which low-priority spans start being shed.
        high_water: usize,
    },
}

/// Builds a [`Pipeline`]. Settings made here win over the environment
/// (`OTEL_BSP_*`), which wins over the OpenTelemetry spec's defaults.
#[must_use]
pub struct PipelineBuilder {
    /// Wrapped at once, so that a `Drop` of the user's transport that
    /// panics is contained wherever the builder or pipeline lets go of it.
    pub(super) transport: Option<UserTransport>,
    pub(super) file: Option<PathBuf>,
    pub(super) resource: Option<Resource>,
    pub(super) limits: Option<SpanLimits>,
    pub(super) max_queue_size: Option<usize>,
    pub(super) scheduled_delay: Option<Duration>,
    pub(super) export_timeout: Option<Duration>,
    pub(super) retry_max_elapsed: Duration,
    pub(super) max_export_batch_size: Option<usize>,
    pub(super) shedding: Shedding,
    pub(super) drop_timeout: Duration,
    pub(super) max_concurrent_exports: usize,
    pub(super) net: Option<runtime_cap::NetAccess>,
    pub(super) fs: Option<runtime_cap::FsAccess>,
    pub(super) sampler: Option<Sampler>,
}

impl Config {
    /// True if `span` is to be shed for its low priority: the queue's fill
    /// (`lane.fill()`) and the spans `held` outside it (adopted from exited
    /// threads' lanes) reach the high-water mark.
    pub(super) fn shedding_low_priority(
        &self,
        span: &SpanData,
        lane: &Producer<EncodedSpan>,
        held: impl FnOnce() -> usize,
    ) -> bool {
        match self.shedding {
            Shedding::Priority { high_water } => {
                span.priority == Priority::Low && lane.fill() + held() >= high_water
            }
            _ => false,
        }
    }
}

impl PipelineBuilder {
    /// Exports through `transport` (not beside a [`file`](Self::file): one
    /// destination or the other).
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(UserTransport(Some(Box::new(transport))));
        self
    }

    /// Exports OTLP JSON lines to `path` (which needs file-system access,
    /// [`filesystem`](Self::filesystem)). Set beside a
    /// [`transport`](Self::transport), it makes `build` fail
    /// ([`ConfigError::InvalidSetting`]): one destination or the other.
    ///
    /// With no transport and no file set, the pipeline chooses by the
    /// access it was given:
    ///
    /// * with network access ([`network`](Self::network)), it sends
    ///   OTLP/HTTP to the collector named by `OTEL_EXPORTER_OTLP_ENDPOINT`
    ///   (or `..._TRACES_ENDPOINT`), and when neither is set to the
    ///   OpenTelemetry spec's default, `http://localhost:4318/v1/traces`
    ///   ([`HttpTransport`]), whether or not it also
    ///   has file-system access;
    /// * with file-system access only, it writes [`DEFAULT_FILE`] in the
    ///   working directory (but an endpoint set in the environment without
    ///   network access fails with [`ConfigError::NoNetworkAccess`]);
    /// * with neither, `build` fails with [`ConfigError::NoFileAccess`].
    ///
    /// Without the `http` feature there is no HTTP transport: with no
    /// transport and no file set, network access or an endpoint in the
    /// environment makes `build` fail with [`ConfigError::NoHttpFeature`]
    /// (rather than write a file the user did not ask for).
    #[doc = ""]
    #[cfg_attr(feature = "http", doc = "[`HttpTransport`]: crate::HttpTransport")]
    #[cfg_attr(not(feature = "http"), doc = "[`HttpTransport`]: crate#features")]
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// File-system access, needed when the pipeline opens a file itself
    /// (a [`file`](Self::file) set, or the default [`DEFAULT_FILE`] when
    /// no transport and no file are set and the pipeline has no network
    /// access; see [`file`](Self::file)), and for the collector's TLS PEM
    /// files if its settings name any. Without it such a build fails with
    /// [`ConfigError::NoFileAccess`].
    ///
    /// ```
    /// use otlp_exporter::{FsAccess, Pipeline, ambient_authority};
    /// let path = std::env::temp_dir().join("otlp-filesystem-doc.jsonl");
    /// let pipeline = Pipeline::builder()
    ///     .filesystem(FsAccess::from_ambient(ambient_authority()))
    ///     .file(&path)
    ///     .build()
    ///     .unwrap();
    /// # drop(pipeline); let _ = std::fs::remove_file(&path);
    /// ```
    pub fn filesystem(mut self, fs: runtime_cap::FsAccess) -> Self {
        self.fs = Some(fs);
        self
    }

    /// Network access. With no transport and no [`file`](Self::file) set,
    /// it makes the pipeline export over OTLP/HTTP (an
    /// [`HttpTransport`]) to the collector that
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) names, or,
    /// when neither is set, to the OpenTelemetry spec's default
    /// `http://localhost:4318/v1/traces`. With an endpoint set in the
    /// environment and no transport chosen, a build without it fails with
    /// [`ConfigError::NoNetworkAccess`]. (Without the `http` feature, both
    /// cases fail with [`ConfigError::NoHttpFeature`].)
    ///
    /// ```
    /// use otlp_exporter::{NetAccess, Pipeline, ambient_authority};
    /// // To OTEL_EXPORTER_OTLP_ENDPOINT, or http://localhost:4318 if unset.
    /// let built = Pipeline::builder()
    ///     .network(NetAccess::from_ambient(ambient_authority()))
    ///     .build();
    /// # #[cfg(feature = "http")]
    /// let pipeline = built.unwrap();
    /// # #[cfg(feature = "http")]
    /// # drop(pipeline);
    /// # #[cfg(not(feature = "http"))]
    /// # assert!(matches!(built, Err(otlp_exporter::ConfigError::NoHttpFeature)));
    /// ```
    #[doc = ""]
    #[cfg_attr(feature = "http", doc = "[`HttpTransport`]: crate::HttpTransport")]
    #[cfg_attr(not(feature = "http"), doc = "[`HttpTransport`]: crate#features")]
    pub fn network(mut self, net: runtime_cap::NetAccess) -> Self {
        self.net = Some(net);
        self
    }

    /// The resource (default: [`Resource::from_env`]), exported merged
    /// over the SDK's own attributes ([`Resource::with_sdk_defaults`]:
    /// `telemetry.sdk.*`; its own values win).
    ///
    /// If it has no `service.name`, the environment's is taken, as the
    /// OpenTelemetry SDKs merge the environment's resource under the
    /// user's: `OTEL_SERVICE_NAME` (empty counts as unset), else
    /// `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, else
    /// `unknown_service:` and the executable's file name. Only
    /// `service.name` comes from the environment; its other attributes are
    /// not added to a resource given here. A `service.name` the resource
    /// sets, even empty, is exported as given.
    pub fn resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// The sampler of every tracer this pipeline makes
    /// ([`Pipeline::tracer`]; a tracer can still take another with
    /// [`Tracer::with_sampler`](crate::Tracer::with_sampler)). Default: the
    /// one `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` name
    /// ([`Sampler::from_env`]), else parent-based always-on.
    ///
    /// ```
    /// use otlp_exporter::{InMemory, Pipeline, Sampler};
    /// let pipeline = Pipeline::builder()
    ///     .transport(InMemory::new())
    ///     .sampler(Sampler::parent_based(Sampler::TraceIdRatioBased(0.25)))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pipeline.tracer("app", "1").sampler(), pipeline.sampler());
    /// assert_eq!(
    ///     pipeline.sampler().description(),
    ///     "ParentBased{root:TraceIdRatioBased{0.25}}"
    /// );
    /// ```
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// Span limits applied to every recorded span (default:
    /// [`SpanLimits::from_env`]).
    pub fn limits(mut self, limits: SpanLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The queue's size in spans across all recording threads
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048), as the OpenTelemetry spec
    /// defines it. The queue is one pool of this many 512-byte slots (1
    /// MiB at the default), allocated at build, shared by every thread that
    /// records; each recording thread also has a chunk of 16 slots of its
    /// own (8 KiB, plus a lane header of a few hundred bytes), so memory is
    /// at most `512 x max_queue_size` bytes plus about 8.5 KiB per recording
    /// thread, whatever the number of threads, and the queue holds at most
    /// `max_queue_size + 16 x` (threads with a lane) spans. A thread that
    /// exits leaves its queued spans to the worker; its lane and chunk are
    /// freed once they are taken (`tests/hostile_memory.rs`).
    ///
    /// A span whose encoding does not fit its slot (more than 488 bytes) is
    /// boxed, and the boxed spans of all threads share a byte budget as
    /// large as the pool, `512 x max_queue_size` bytes: a span that would
    /// overspend it is dropped as `queue_full` (under [`Shedding::Block`],
    /// after waiting for budget within its timeout), so queued spans hold
    /// at most twice the pool whatever their size. So a single span larger
    /// than that budget (1 MiB at the default) is never queued: raise this
    /// size, or limit attribute values
    /// ([`SpanLimits::attribute_value_length`]), if spans that large matter.
    ///
    /// With [`Shedding::DropOldest`] the size is per recording thread
    /// instead (a ring of this many 512-byte slots each: 1 MiB a thread at
    /// the default, allocated when the thread first records; see [`HANDED_OVER_LANES`]
    /// and [`Dropped::orphaned`](crate::Dropped::orphaned) for exited threads).
    ///
    /// Allowed: `1..=`[`MAX_QUEUE_SIZE`]; anything else makes
    /// [`build`](Self::build) return [`ConfigError::InvalidSetting`] naming
    /// the setting (or the environment variable) and the range. If a
    /// thread's lane cannot be allocated later (memory ran out), its spans
    /// go through a shared lane, or are counted as `queue_full`.
    pub fn max_queue_size(mut self, n: usize) -> Self {
        self.max_queue_size = Some(n);
        self
    }

    /// Longest wait before a partial batch is exported (`OTEL_BSP_SCHEDULE_DELAY`,
    /// default 5 s). Saturated to [`MAX_DURATION`]. Zero is allowed and
    /// means "export whatever has arrived at once"; an idle worker still
    /// sleeps (it never polls an empty queue in a busy loop).
    pub fn scheduled_delay(mut self, d: Duration) -> Self {
        self.scheduled_delay = Some(d);
        self
    }

    /// Deadline given to each export (`OTEL_BSP_EXPORT_TIMEOUT`, default 30 s).
    /// Saturated to [`MAX_DURATION`] (so `Duration::MAX` means "no practical
    /// deadline"). Zero gives every export a deadline that has already
    /// passed: transports that honour deadlines then fail at once.
    pub fn export_timeout(mut self, d: Duration) -> Self {
        self.export_timeout = Some(d);
        self
    }

    /// Spans per export (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, default 512 or
    /// `max_queue_size` if smaller). Allowed: `1..=max_queue_size`; anything
    /// else is a [`ConfigError::InvalidSetting`].
    pub fn max_export_batch_size(mut self, n: usize) -> Self {
        self.max_export_batch_size = Some(n);
        self
    }

    /// How long a batch whose export failed retryably (a collector that
    /// is down, 429, 502, 503, 504) is kept and tried again, from its
    /// first failure, before it counts as failed for good
    /// (`export_failed`); default [`DEFAULT_RETRY_MAX_ELAPSED`], 300 s, as
    /// the OpenTelemetry Collector's exporters. While a batch is kept the
    /// worker takes nothing new from the queue (see [A collector
    /// outage](Pipeline#a-collector-outage)), so a batch that can never be
    /// delivered (a proxy that resets every request above a size, say)
    /// would otherwise hold the pipeline for ever. Saturated to
    /// [`MAX_DURATION`]; zero means a failed batch is not tried again.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # use std::time::Duration;
    /// let p = Pipeline::builder()
    ///     .transport(InMemory::new())
    ///     .retry_max_elapsed(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// # p.shutdown(Duration::from_secs(1));
    /// ```
    pub fn retry_max_elapsed(mut self, d: Duration) -> Self {
        self.retry_max_elapsed = d;
        self
    }

    /// The load-shedding policy (default [`Shedding::DropNewest`]). A
    /// `Block` timeout is saturated to [`MAX_DURATION`]; a `Priority`
    /// high-water mark must be in `1..=max_queue_size`.
    pub fn shedding(mut self, shedding: Shedding) -> Self {
        self.shedding = shedding;
        self
    }

    /// Exports that may be in flight at once (default 1: `Export` is never
    /// called concurrently, as the OpenTelemetry spec says). More lets a
    /// slow transport (a distant collector) overlap requests; requests may
    /// then complete out of order.
    ///
    /// Allowed: `1..=`[`MAX_CONCURRENT_EXPORTS`] (each is a thread);
    /// anything else is a [`ConfigError::InvalidSetting`]. If fewer export
    /// threads can be started than asked for, the pipeline runs with those
    /// that started (with none, the worker exports itself).
    pub fn max_concurrent_exports(mut self, n: usize) -> Self {
        self.max_concurrent_exports = n;
        self
    }

    /// How long dropping the last handle waits for shutdown (default 5 s).
    /// Saturated to [`MAX_DURATION`].
    pub fn drop_timeout(mut self, d: Duration) -> Self {
        self.drop_timeout = d;
        self
    }

    /// Starts the pipeline: reads the environment for what was not set,
    /// checks the settings, and starts the worker thread.
    ///
    /// With `OTEL_SDK_DISABLED=true` (any case; the OpenTelemetry SDK
    /// environment spec) the pipeline is a no-op, whatever was set here:
    /// its tracers' sampler is [`Sampler::AlwaysOff`] (also for a tracer
    /// given another with [`Tracer::with_sampler`](crate::Tracer::with_sampler)),
    /// so no span is recording ([`Span::is_recording`](crate::Span::is_recording)
    /// is false). As the trace API without an SDK, a span carries its
    /// parent's context unchanged (so the next service continues the
    /// caller's trace with the caller's sampling decision) and a root span
    /// an invalid one (nothing to propagate). A span recorded directly ([`Pipeline::record`],
    /// [`Pipeline::record_in_place`]) is counted as not sampled and
    /// dropped: nothing is exported. With no transport set it opens no
    /// file and connects to no collector (it needs neither access). Other
    /// settings are still checked. `false`, unset or empty is the usual
    /// pipeline; any other value is taken as `false`, with a warning.
    ///
    /// ```
    /// use otlp_exporter::{InMemory, Pipeline};
    /// // OTEL_SDK_DISABLED=true in the environment:
    /// # if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
    /// let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// assert!(pipeline.is_disabled());
    /// assert!(!pipeline.tracer("app", "1").start("work").is_recording());
    /// # }
    /// ```
    pub fn build(self) -> Result<Pipeline, ConfigError> {
        // Before any record can run (see `Shared::state`).
        crate::outstanding::asymmetric::init();
        let ms = |var| env_usize(var).map(|v| v.map(|ms| Duration::from_millis(ms as u64)));
        let (max_queue_size, queue_setting) = setting(
            (self.max_queue_size, "max_queue_size"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", || {
                env_usize("OTEL_BSP_MAX_QUEUE_SIZE")
            }),
            DEFAULT_MAX_QUEUE_SIZE,
        )?;
        if max_queue_size == 0 || max_queue_size > MAX_QUEUE_SIZE {
            return Err(ConfigError::InvalidSetting {
                setting: "max_queue_size",
                reason: format!(
                    "{queue_setting}={max_queue_size} is not between 1 and {MAX_QUEUE_SIZE} \
                     (spans in the queue)"
                ),
            });
        }
        // The default batch size is cut to a smaller queue; a batch size
        // that was asked for is checked against it below.
        let (max_export_batch_size, batch_setting) = setting(
            (self.max_export_batch_size, "max_export_batch_size"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", || {
                env_usize("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
            }),
            DEFAULT_MAX_EXPORT_BATCH_SIZE.min(max_queue_size),
        )?;
        let (scheduled_delay, _) = setting(
            (self.scheduled_delay, "scheduled_delay"),
            ("OTEL_BSP_SCHEDULE_DELAY", || ms("OTEL_BSP_SCHEDULE_DELAY")),
            DEFAULT_SCHEDULED_DELAY,
        )?;
        let (export_timeout, _) = setting(
            (self.export_timeout, "export_timeout"),
            ("OTEL_BSP_EXPORT_TIMEOUT", || ms("OTEL_BSP_EXPORT_TIMEOUT")),
            DEFAULT_EXPORT_TIMEOUT,
        )?;
        if max_export_batch_size == 0 || max_export_batch_size > max_queue_size {
            return Err(ConfigError::InvalidSetting {
                setting: "max_export_batch_size",
                reason: format!(
                    "{batch_setting}={max_export_batch_size} is not between 1 and max_queue_size \
                     ({max_queue_size})"
                ),
            });
        }
        let shedding = match self.shedding {
            Shedding::Priority { high_water } if high_water == 0 || high_water > max_queue_size => {
                return Err(ConfigError::InvalidSetting {
                    setting: "shedding",
                    reason: format!(
                        "high_water {high_water} is not between 1 and max_queue_size ({max_queue_size})"
                    ),
                });
            }
            Shedding::Block { timeout } => Shedding::Block {
                timeout: timeout.min(MAX_DURATION),
            },
            other => other,
        };
        if !(1..=MAX_CONCURRENT_EXPORTS).contains(&self.max_concurrent_exports) {
            return Err(ConfigError::InvalidSetting {
                setting: "max_concurrent_exports",
                reason: format!(
                    "{} is not between 1 and {MAX_CONCURRENT_EXPORTS}",
                    self.max_concurrent_exports
                ),
            });
        }
        // Read before the transport is made: a malformed limit fails the
        // build before a file is opened (found by review: the file was
        // created, a torn line ended, and a FIFO's reader saw end-of-file,
        // by a build that then failed).
        let limits = match self.limits {
            Some(l) => l,
            None => SpanLimits::from_env()?,
        };
        // OTEL_SDK_DISABLED=true: a no-op pipeline (see `build`'s docs).
        let disabled = crate::config::sdk_disabled();
        let transport = match (self.transport, self.file) {
            // Two destinations asked for: which one is meant is not ours
            // to guess (found by review: the file was dropped silently).
            (Some(_), Some(file)) => {
                return Err(ConfigError::InvalidSetting {
                    setting: "file",
                    reason: format!(
                        "{} is asked for beside a transport: set one or the other",
                        file.display()
                    ),
                });
            }
            (Some(t), None) => t,
            // Nothing is exported: no collector, no file to open.
            (None, _) if disabled => UserTransport(Some(Box::new(crate::InMemory::new()))),
            // No transport and no file: OTLP/HTTP whenever the pipeline may
            // use the network, to the collector the environment names or
            // else to the spec's default (`http://localhost:4318`, as every
            // OpenTelemetry SDK does); a collector named in the environment
            // without network access is an error, not a silent file.
            #[cfg(feature = "http")]
            (None, None) if self.net.is_some() || collector_configured() => match self.net {
                Some(net) => {
                    let mut http = crate::HttpTransport::builder(net);
                    if let Some(fs) = self.fs {
                        // For the TLS settings' PEM files, if any.
                        http = http.filesystem(fs);
                    }
                    UserTransport(Some(Box::new(http.build()?)))
                }
                None => return Err(ConfigError::NoNetworkAccess),
            },
            // Without the HTTP transport, not a silent file instead (found
            // by review: `.network(net)` then wrote ./otlp-traces.jsonl).
            #[cfg(not(feature = "http"))]
            (None, None) if self.net.is_some() || collector_configured() => {
                return Err(ConfigError::NoHttpFeature);
            }
            (None, file) => {
                let Some(fs) = self.fs else {
                    return Err(ConfigError::NoFileAccess);
                };
                let path = file.unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
                UserTransport(Some(Box::new(FileTransport::open(fs, &path).map_err(
                    |e| ConfigError::InvalidSetting {
                        setting: "file",
                        reason: format!("cannot open {}: {e}", path.display()),
                    },
                )?)))
            }
        };
        // The environment's resource goes under the user's for
        // `service.name` only (see `resource`'s docs; found by review:
        // `OTEL_SERVICE_NAME` was ignored for a builder resource without one).
        let resource = match self.resource {
            Some(mut r) => {
                if r.get("service.name").is_none()
                    && let Some(name) = Resource::env_only().get("service.name")
                {
                    r.set(crate::model::KeyValue::new("service.name", name.clone()));
                }
                r.with_sdk_defaults()
            }
            None => Resource::from_env(),
        };
        // User code: a panic here is a configuration error, not a crash.
        let encoding =
            catch_unwind(AssertUnwindSafe(|| transport.get().encoding())).map_err(|p| {
                ConfigError::InvalidSetting {
                    setting: "transport",
                    reason: format!("Transport::encoding panicked: {}", panic_message(p)),
                }
            })?;
        let config = Config {
            max_concurrent_exports: self.max_concurrent_exports,
            encoding,
            max_export_batch_size,
            scheduled_delay: scheduled_delay.min(MAX_DURATION),
            export_timeout: export_timeout.min(MAX_DURATION),
            retry_max_elapsed: self.retry_max_elapsed.min(MAX_DURATION),
            shedding,
            limits,
            sampler: if disabled {
                Sampler::AlwaysOff
            } else {
                self.sampler.unwrap_or_else(Sampler::from_env)
            },
            disabled,
        };
        Pipeline::start(
            config,
            max_queue_size,
            resource,
            transport,
            self.drop_timeout.min(MAX_DURATION),
        )
    }
}

/// True if the environment names a collector (`OTEL_EXPORTER_OTLP_ENDPOINT`
/// or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
pub(super) fn collector_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    // Set but not UTF-8 counts as set (found by review: it read as unset,
    // and the pipeline silently wrote a file instead of refusing).
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.to_string_lossy().trim().is_empty()))
}

/// The builder's value if set; else the environment's (read only then, so
/// a malformed variable the builder overrides is no error); else `default`.
/// Returns the value and the name of where it came from (the builder
/// method or the variable), for error messages.
pub(super) fn setting<T>(
    (builder, method): (Option<T>, &'static str),
    (var, env): (
        &'static str,
        impl FnOnce() -> Result<Option<T>, ConfigError>,
    ),
    default: T,
) -> Result<(T, &'static str), ConfigError> {
    match builder {
        Some(v) => Ok((v, method)),
        None => Ok(match env()? {
            Some(v) => (v, var),
            None => (default, method),
        }),
    }
}

pub(super) struct Config {
    /// What the transport wants; spans are encoded in it as they are recorded.
    pub(super) encoding: Encoding,
    pub(super) max_concurrent_exports: usize,
    pub(super) max_export_batch_size: usize,
    pub(super) scheduled_delay: Duration,
    pub(super) export_timeout: Duration,
    /// `PipelineBuilder::retry_max_elapsed`.
    pub(super) retry_max_elapsed: Duration,
    pub(super) shedding: Shedding,
    pub(super) limits: SpanLimits,
    /// The sampler of this pipeline's tracers (and of layers and bridges
    /// that ask [`Pipeline::sampler`]).
    pub(super) sampler: Sampler,
    /// `OTEL_SDK_DISABLED=true`: nothing is recorded.
    pub(super) disabled: bool,
}

impl Pipeline {
    /// A builder with nothing set.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            transport: None,
            file: None,
            resource: None,
            limits: None,
            max_queue_size: None,
            scheduled_delay: None,
            export_timeout: None,
            retry_max_elapsed: DEFAULT_RETRY_MAX_ELAPSED,
            max_export_batch_size: None,
            shedding: Shedding::default(),
            drop_timeout: DEFAULT_DROP_TIMEOUT,
            max_concurrent_exports: 1,
            net: None,
            fs: None,
            sampler: None,
        }
    }
}

#[cfg(all(test, not(feature = "http")))]
mod no_http_tests {
    use crate::{ConfigError, FsAccess, NetAccess, Pipeline, ambient_authority};

    /// Without the `http` feature, a pipeline given network access and no
    /// transport or file is refused, not sent to a file instead (found by
    /// review: it wrote ./otlp-traces.jsonl and reported every span
    /// exported). Run by `cargo xtask test` (`--no-default-features`).
    #[test]
    fn network_access_without_the_http_feature_is_refused_not_a_file() {
        let built = Pipeline::builder()
            .network(NetAccess::from_ambient(ambient_authority()))
            .filesystem(FsAccess::from_ambient(ambient_authority()))
            .build();
        assert!(matches!(built, Err(ConfigError::NoHttpFeature)));
    }
}
