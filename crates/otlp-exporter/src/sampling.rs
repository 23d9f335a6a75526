//! Head sampling, as the OpenTelemetry trace SDK specification defines it:
//! the built-in samplers `AlwaysOn`, `AlwaysOff`, `TraceIdRatioBased` and
//! `ParentBased` (with the spec's default delegates), and their
//! configuration from `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.

use crate::config::ConfigError;
use crate::model::{SpanContext, SpanKind, TraceId};

/// What a [`Sampler`] decided for a span (the spec's `SamplingResult`
/// decision).
///
/// ```
/// use otlp_exporter::SamplingDecision;
/// assert!(SamplingDecision::RecordAndSample.is_sampled());
/// assert!(SamplingDecision::RecordOnly.is_recording());
/// assert!(!SamplingDecision::RecordOnly.is_sampled());
/// assert!(!SamplingDecision::Drop.is_recording());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamplingDecision {
    /// Not recorded, not sampled: the span costs next to nothing and is
    /// counted as `not_sampled` when it ends.
    Drop,
    /// Recorded (attributes and events kept) but not sampled: not exported
    /// (counted as `not_sampled` when it ends). The built-in samplers never
    /// return it.
    RecordOnly,
    /// Recorded and sampled: exported, and the sampled flag is set in its
    /// context (and so in the `traceparent` it propagates).
    RecordAndSample,
}

impl SamplingDecision {
    /// True unless [`Drop`](Self::Drop).
    pub fn is_recording(self) -> bool {
        !matches!(self, SamplingDecision::Drop)
    }

    /// True for [`RecordAndSample`](Self::RecordAndSample): the span is
    /// exported and its sampled flag set.
    pub fn is_sampled(self) -> bool {
        matches!(self, SamplingDecision::RecordAndSample)
    }
}

/// Decides at a span's start whether it is recorded and sampled (the
/// OpenTelemetry spec's built-in samplers).
///
/// The default is the spec's: `ParentBased` with an `AlwaysOn` root
/// ([`Sampler::default`], [`Sampler::parent_based`]).
///
/// ```
/// use otlp_exporter::{Sampler, SamplingDecision, SpanContext, SpanKind, TraceId};
///
/// // Keep a quarter of new traces; follow the caller's decision otherwise.
/// let sampler = Sampler::parent_based(Sampler::TraceIdRatioBased(0.25));
/// let trace_id = TraceId([0xff; 16]);
/// assert_eq!(
///     sampler.should_sample(None, trace_id, "GET /", SpanKind::Server),
///     SamplingDecision::Drop // the trace id's lower 8 bytes are above the ratio
/// );
/// let caller = SpanContext::from_traceparent(
///     "00-ffffffffffffffffffffffffffffffff-00f067aa0ba902b7-01",
/// ).unwrap();
/// assert_eq!(
///     sampler.should_sample(Some(&caller), caller.trace_id, "GET /", SpanKind::Server),
///     SamplingDecision::RecordAndSample // the remote parent was sampled
/// );
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    /// Records and samples every span.
    AlwaysOn,
    /// Drops every span.
    AlwaysOff,
    /// Samples this fraction of traces, decided by the trace id alone (so
    /// every service of a trace that uses the same ratio agrees), the way
    /// the other OpenTelemetry SDKs compute it: the trace id's lower 8 bytes,
    /// big-endian, shifted right by one, are compared with `ratio x 2^63`.
    /// A ratio of 1 or more samples everything; 0, a negative ratio or NaN
    /// samples nothing. It ignores the parent (wrap it in `ParentBased` to
    /// follow the parent).
    TraceIdRatioBased(f64),
    /// Follows the parent's sampled flag, with a sampler for each case (the
    /// spec's `ParentBased`). Build it with [`Sampler::parent_based`] for
    /// the spec's default delegates.
    ParentBased {
        /// For a span without a (valid) parent.
        root: Box<Sampler>,
        /// Parent remote and sampled (default `AlwaysOn`).
        remote_parent_sampled: Box<Sampler>,
        /// Parent remote and not sampled (default `AlwaysOff`).
        remote_parent_not_sampled: Box<Sampler>,
        /// Parent local and sampled (default `AlwaysOn`).
        local_parent_sampled: Box<Sampler>,
        /// Parent local and not sampled (default `AlwaysOff`).
        local_parent_not_sampled: Box<Sampler>,
    },
}

impl Default for Sampler {
    /// `ParentBased` with an `AlwaysOn` root: the spec's default sampler.
    fn default() -> Self {
        Sampler::parent_based(Sampler::AlwaysOn)
    }
}

impl Sampler {
    /// `ParentBased` with `root` for root spans and the spec's defaults for
    /// the rest: follow a parent's sampled flag, local or remote.
    ///
    /// ```
    /// use otlp_exporter::Sampler;
    /// let sampler = Sampler::parent_based(Sampler::TraceIdRatioBased(0.1));
    /// assert_eq!(sampler.description(), "ParentBased{root:TraceIdRatioBased{0.1}}");
    /// ```
    pub fn parent_based(root: Sampler) -> Sampler {
        Sampler::ParentBased {
            root: Box::new(root),
            remote_parent_sampled: Box::new(Sampler::AlwaysOn),
            remote_parent_not_sampled: Box::new(Sampler::AlwaysOff),
            local_parent_sampled: Box::new(Sampler::AlwaysOn),
            local_parent_not_sampled: Box::new(Sampler::AlwaysOff),
        }
    }

    /// The spec's `ShouldSample`: the decision for a span about to start
    /// with this `parent` (`None`, or an invalid context, for a root span),
    /// in trace `trace_id` (the parent's, or the new root's), named `name`,
    /// of kind `kind`. Pure and cheap: no lock, no allocation, no clock.
    ///
    /// ```
    /// use otlp_exporter::{Sampler, SamplingDecision, SpanKind, TraceId};
    /// let d = Sampler::AlwaysOff.should_sample(None, TraceId::random(), "x", SpanKind::Internal);
    /// assert_eq!(d, SamplingDecision::Drop);
    /// ```
    // The spec's signature: the built-in samplers pass the name and kind
    // on without reading them; samplers added later may.
    #[allow(clippy::only_used_in_recursion)]
    pub fn should_sample(
        &self,
        parent: Option<&SpanContext>,
        trace_id: TraceId,
        name: &str,
        kind: SpanKind,
    ) -> SamplingDecision {
        match self {
            Sampler::AlwaysOn => SamplingDecision::RecordAndSample,
            Sampler::AlwaysOff => SamplingDecision::Drop,
            Sampler::TraceIdRatioBased(ratio) => ratio_decision(*ratio, trace_id),
            Sampler::ParentBased {
                root,
                remote_parent_sampled,
                remote_parent_not_sampled,
                local_parent_sampled,
                local_parent_not_sampled,
            } => {
                let delegate = match parent.filter(|p| p.is_valid()) {
                    None => root,
                    Some(p) => match (p.is_remote, p.trace_flags.is_sampled()) {
                        (true, true) => remote_parent_sampled,
                        (true, false) => remote_parent_not_sampled,
                        (false, true) => local_parent_sampled,
                        (false, false) => local_parent_not_sampled,
                    },
                };
                delegate.should_sample(parent, trace_id, name, kind)
            }
        }
    }

    /// The spec's `GetDescription`: `AlwaysOnSampler`, `AlwaysOffSampler`,
    /// `TraceIdRatioBased{RATIO}`, `ParentBased{root:...}` (the delegates
    /// other than the root are listed only where they differ from the
    /// defaults).
    ///
    /// ```
    /// use otlp_exporter::Sampler;
    /// assert_eq!(Sampler::default().description(), "ParentBased{root:AlwaysOnSampler}");
    /// ```
    pub fn description(&self) -> String {
        match self {
            Sampler::AlwaysOn => "AlwaysOnSampler".to_owned(),
            Sampler::AlwaysOff => "AlwaysOffSampler".to_owned(),
            Sampler::TraceIdRatioBased(r) => format!("TraceIdRatioBased{{{r}}}"),
            Sampler::ParentBased {
                root,
                remote_parent_sampled,
                remote_parent_not_sampled,
                local_parent_sampled,
                local_parent_not_sampled,
            } => {
                let mut s = format!("ParentBased{{root:{}", root.description());
                let others = [
                    (
                        "remoteParentSampled",
                        remote_parent_sampled,
                        Sampler::AlwaysOn,
                    ),
                    (
                        "remoteParentNotSampled",
                        remote_parent_not_sampled,
                        Sampler::AlwaysOff,
                    ),
                    (
                        "localParentSampled",
                        local_parent_sampled,
                        Sampler::AlwaysOn,
                    ),
                    (
                        "localParentNotSampled",
                        local_parent_not_sampled,
                        Sampler::AlwaysOff,
                    ),
                ];
                for (name, sampler, default) in others {
                    if **sampler != default {
                        s.push_str(&format!(",{name}:{}", sampler.description()));
                    }
                }
                s.push('}');
                s
            }
        }
    }

    /// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`
    /// name, as the OpenTelemetry SDK spec says: `always_on`, `always_off`,
    /// `traceidratio`, `parentbased_always_on` (the default, when unset or
    /// empty), `parentbased_always_off`, `parentbased_traceidratio`
    /// (case-insensitive); the argument is the ratio, in `[0, 1]`, for the
    /// two ratio samplers (default 1).
    ///
    /// Bad values are not fatal, as the spec asks: they are reported with a
    /// `tracing` warning (once per process) and ignored. An unknown sampler (or one this crate
    /// does not implement: `jaeger_remote`, `parentbased_jaeger_remote`,
    /// `xray`) gives the default sampler; a ratio that is not a number in
    /// `[0, 1]` gives the ratio 1. Use [`Sampler::from_vars`] for an error
    /// instead.
    ///
    /// ```
    /// use otlp_exporter::Sampler;
    /// // With neither variable set:
    /// # if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
    /// assert_eq!(Sampler::from_env(), Sampler::default());
    /// # }
    /// ```
    pub fn from_env() -> Sampler {
        let sampler = crate::config::env_var("OTEL_TRACES_SAMPLER");
        let arg = crate::config::env_var("OTEL_TRACES_SAMPLER_ARG");
        let (sampler, problem) = parse_vars(sampler.as_deref(), arg.as_deref());
        // Warned about once per process: every tracer reads the variables.
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if let Some(problem) = problem
            && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let fallback = sampler.description();
            let _ = std::panic::catch_unwind(|| {
                tracing::warn!(%problem, fallback, "otlp-exporter: ignoring a bad sampler setting");
            });
        }
        sampler
    }

    /// The sampler the two variables' values name (see
    /// [`Sampler::from_env`]), strictly: a bad value is a
    /// [`ConfigError::InvalidEnv`] naming the variable and the value.
    ///
    /// ```
    /// use otlp_exporter::{ConfigError, Sampler};
    /// assert_eq!(
    ///     Sampler::from_vars(Some("parentbased_traceidratio"), Some("0.5")),
    ///     Ok(Sampler::parent_based(Sampler::TraceIdRatioBased(0.5)))
    /// );
    /// assert_eq!(Sampler::from_vars(None, None), Ok(Sampler::default()));
    /// assert!(matches!(
    ///     Sampler::from_vars(Some("traceidratio"), Some("1.5")),
    ///     Err(ConfigError::InvalidEnv { var: "OTEL_TRACES_SAMPLER_ARG", .. })
    /// ));
    /// assert!(Sampler::from_vars(Some("sometimes"), None).is_err());
    /// ```
    pub fn from_vars(sampler: Option<&str>, arg: Option<&str>) -> Result<Sampler, ConfigError> {
        match parse_vars(sampler, arg) {
            (sampler, None) => Ok(sampler),
            (_, Some(problem)) => Err(problem),
        }
    }
}

/// The sampler the variables name, and the first problem found (the
/// sampler is then the spec's fallback for it).
fn parse_vars(sampler: Option<&str>, arg: Option<&str>) -> (Sampler, Option<ConfigError>) {
    let name = sampler.map(|s| s.trim().to_ascii_lowercase());
    let arg = arg.map(str::trim).filter(|a| !a.is_empty());
    let ratio = || -> (f64, Option<ConfigError>) {
        match arg {
            None => (1.0, None),
            Some(a) => match a.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => (r, None),
                _ => (
                    1.0,
                    Some(ConfigError::InvalidEnv {
                        var: "OTEL_TRACES_SAMPLER_ARG",
                        value: a.to_owned(),
                        reason: "expected a sampling ratio, a number from 0 to 1",
                    }),
                ),
            },
        }
    };
    match name.as_deref() {
        None | Some("") | Some("parentbased_always_on") => (Sampler::default(), None),
        Some("always_on") => (Sampler::AlwaysOn, None),
        Some("always_off") => (Sampler::AlwaysOff, None),
        Some("parentbased_always_off") => (Sampler::parent_based(Sampler::AlwaysOff), None),
        Some("traceidratio") => {
            let (r, problem) = ratio();
            (Sampler::TraceIdRatioBased(r), problem)
        }
        Some("parentbased_traceidratio") => {
            let (r, problem) = ratio();
            (
                Sampler::parent_based(Sampler::TraceIdRatioBased(r)),
                problem,
            )
        }
        Some(other) => (
            Sampler::default(),
            Some(ConfigError::InvalidEnv {
                var: "OTEL_TRACES_SAMPLER",
                value: sampler.unwrap_or(other).to_owned(),
                reason: match other {
                    "jaeger_remote" | "parentbased_jaeger_remote" | "xray" => {
                        "this sampler is not implemented by otlp-exporter; expected always_on, \
                         always_off, traceidratio, parentbased_always_on, \
                         parentbased_always_off or parentbased_traceidratio"
                    }
                    _ => {
                        "expected always_on, always_off, traceidratio, parentbased_always_on, \
                         parentbased_always_off or parentbased_traceidratio"
                    }
                },
            }),
        ),
    }
}

/// `TraceIdRatioBased`'s decision, computed as the other OpenTelemetry
/// SDKs do (Rust, Go, Java): the lower 8 bytes of the trace id, big-endian,
/// shifted right by one (63 random bits), below `ratio x 2^63`.
fn ratio_decision(ratio: f64, trace_id: TraceId) -> SamplingDecision {
    if ratio >= 1.0 {
        return SamplingDecision::RecordAndSample;
    }
    // `max` maps NaN to 0; the cast saturates.
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let mut low = [0; 8];
    low.copy_from_slice(&trace_id.0[8..]);
    if u64::from_be_bytes(low) >> 1 < bound {
        SamplingDecision::RecordAndSample
    } else {
        SamplingDecision::Drop
    }
}
