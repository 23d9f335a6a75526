//! Reading configuration from the environment, with errors that name the
//! variable and the bad value.

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// no collector are configured) but was given no file-system access.
    #[error(
        "the pipeline would write a file but has no file-system access: pass one with \
         PipelineBuilder::filesystem (cx.fs() inside the runtime, \
         FsAccess::from_ambient(ambient_authority()) outside it), or choose a transport"
    )]
    NoFileAccess,
    /// A builder setting is out of range.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// A non-negative integer from the environment; unset or empty is `None`.
pub(crate) fn env_usize(var: &'static str) -> Result<Option<usize>, ConfigError> {
    parse_usize(var, std::env::var(var).ok().as_deref())
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
