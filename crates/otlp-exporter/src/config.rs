//! Reading configuration from the environment, with errors that name the
//! variable and the bad value.

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable holds a value that does not parse.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value, as it may be shown: a header list's values are
        /// hidden (only the position of the bad entry is given), and a
        /// URL's password is replaced by `***`.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A collector is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`) but the
    /// pipeline was given no network access.
    #[error(
        "OTEL_EXPORTER_OTLP_ENDPOINT is set but the pipeline has no network access: \
         pass one with PipelineBuilder::network (cx.net() inside the runtime, \
         NetAccess::from_ambient(ambient_authority()) outside it)"
    )]
    NoNetworkAccess,
    /// The pipeline would write a file (one set with
    /// `PipelineBuilder::file`, or the default file when no transport and
    /// no file are set and it has no network access) but was given no
    /// file-system access.
    #[error(
        "the pipeline would write a file but has no file-system access: pass one with \
         PipelineBuilder::filesystem (cx.fs() inside the runtime, \
         FsAccess::from_ambient(ambient_authority()) outside it), or choose a transport \
         (with no file set, PipelineBuilder::network exports to a collector over OTLP/HTTP)"
    )]
    NoFileAccess,
    /// The collector's TLS settings name PEM files
    /// (`HttpTransportBuilder::certificate`, `client_certificate`,
    /// `client_key`, or `OTEL_EXPORTER_OTLP_*CERTIFICATE` /
    /// `*CLIENT_KEY`) but the transport was given no file-system access
    /// to read them.
    #[error(
        "the collector's TLS settings name PEM files (OTEL_EXPORTER_OTLP_*CERTIFICATE, \
         *CLIENT_KEY, or the builder's certificate settings) but there is no file-system \
         access to read them: pass one with HttpTransportBuilder::filesystem or \
         PipelineBuilder::filesystem (cx.fs() inside the runtime, \
         FsAccess::from_ambient(ambient_authority()) outside it)"
    )]
    NoCertificateFileAccess,
    /// The pipeline would export to a collector over OTLP/HTTP (it was
    /// given network access, or `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and no transport or
    /// file) but the crate was built without its `http` feature.
    #[error(
        "the pipeline would export to a collector over OTLP/HTTP (network access given, or \
         OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, and no \
         transport or file chosen) but otlp-exporter was built without its `http` feature: \
         enable it (runtime-facade's `http`), or choose a file or a transport"
    )]
    NoHttpFeature,
    /// A builder setting is out of range.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// An environment variable's value, `None` when unset, for variables whose
/// value is parsed (numbers, the sampler, booleans). A value that is not
/// UTF-8 comes back lossily (each bad sequence a U+FFFD), so that it fails
/// its variable's parse with its text shown, as any malformed value does,
/// instead of being taken as unset (found by review:
/// `std::env::var(..).ok()` made a non-UTF-8 span limit the default,
/// silently). The HTTP transport's variables, which are sent on, refuse
/// such a value outright (`HttpTransportBuilder::build`).
pub(crate) fn env_var(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(v)) => Some(v.to_string_lossy().into_owned()),
    }
}

/// A non-negative integer from the environment; unset or empty is `None`.
pub(crate) fn env_usize(var: &'static str) -> Result<Option<usize>, ConfigError> {
    parse_usize(var, env_var(var).as_deref())
}

pub(crate) fn parse_usize(
    var: &'static str,
    value: Option<&str>,
) -> Result<Option<usize>, ConfigError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ConfigError::InvalidEnv {
            var,
            value: v.to_owned(),
            reason: "expected a non-negative integer",
        }),
    }
}

/// `OTEL_SDK_DISABLED` (the OpenTelemetry SDK environment spec): true for
/// `true` in any case; false when unset, empty or `false`. Any other value
/// is taken as false, with a warning (once per process), as the spec says
/// of a boolean variable's invalid value.
pub(crate) fn sdk_disabled() -> bool {
    let value = env_var("OTEL_SDK_DISABLED");
    let (disabled, valid) = parse_bool(value.as_deref());
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !valid && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        let _ = std::panic::catch_unwind(|| {
            tracing::warn!(
                value = value.as_deref().unwrap_or_default(),
                "otlp-exporter: OTEL_SDK_DISABLED is neither true nor false; taken as false"
            );
        });
    }
    disabled
}

/// A boolean environment variable's value, and whether it was valid: `true`
/// (any case, surrounding spaces ignored) is true; unset, empty and `false`
/// are false; anything else is false and invalid.
pub(crate) fn parse_bool(value: Option<&str>) -> (bool, bool) {
    match value.map(str::trim) {
        None | Some("") => (false, true),
        Some(v) if v.eq_ignore_ascii_case("true") => (true, true),
        Some(v) if v.eq_ignore_ascii_case("false") => (false, true),
        Some(_) => (false, false),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn booleans_are_read_as_the_spec_says() {
        for (value, expected) in [
            (None, (false, true)),
            (Some(""), (false, true)),
            (Some("true"), (true, true)),
            (Some(" TRUE "), (true, true)),
            (Some("True"), (true, true)),
            (Some("false"), (false, true)),
            (Some("FALSE"), (false, true)),
            (Some("1"), (false, false)),
            (Some("yes"), (false, false)),
        ] {
            assert_eq!(parse_bool(value), expected, "{value:?}");
        }
    }
}
