//! OTLP/HTTP: POST `{endpoint}/v1/traces` to any OpenTelemetry collector,
//! with retries as the OTLP specification says.
//!
//! * `application/x-protobuf` (default) or `application/json`; a
//!   `User-Agent` naming this crate; user headers; optional gzip (a body
//!   gzip does not shrink, such as random or already compressed bytes, is
//!   sent as it is, without `Content-Encoding`, so that no request goes
//!   out larger than [`MAX_REQUEST_BYTES`](crate::MAX_REQUEST_BYTES)); a
//!   timeout per attempt; connections kept alive and reused; `https` through rustls
//!   with the *ring* crypto provider (it builds with a C compiler alone).
//! * Retried: 429, 502, 503, 504 and connection failures (refused, reset,
//!   no response), with exponential backoff and jitter, bounded by the
//!   export's deadline; `Retry-After` honoured in seconds and HTTP-date
//!   form, capped. Everything else, 400 included, is final
//!   ([`ExportResult::Failed`]), and so is a TLS failure (a collector
//!   certificate that is not trusted, expired or for another host; a
//!   client certificate the collector refuses; a collector that does not
//!   speak TLS) and a request the client cannot make: the same request
//!   would fail the same way again, so it is not kept and retried while
//!   new spans are shed. When the attempts run out on a retryable
//!   failure the export returns [`ExportResult::Retryable`] (with the last
//!   `Retry-After`), and a pipeline keeps the batch and retries it later
//!   (see [`Pipeline`](crate::Pipeline#a-collector-outage)); the
//!   transport's own attempts ([`RetryPolicy`]) only cover short blips:
//!   the pipeline's retries of a kept batch make one attempt each
//!   ([`Transport::export_once`]), paced by its own backoff. A 200 whose
//!   body reports `partial_success.rejected_spans` is not retried: the
//!   rejected spans are counted. The answer is read in the request's
//!   encoding (OTLP answers in the request's `Content-Type`), whatever
//!   the transport's own.
//! * Header values carry API keys: they never appear in logs or errors. A
//!   header name that is not an HTTP token (or is 64 KiB long or more), or
//!   a value holding a control character (CR, LF, NUL, ...), is refused
//!   when the transport is built, never sent. A name given twice in one
//!   of `OTEL_EXPORTER_OTLP_HEADERS` or `..._TRACES_HEADERS` is sent once,
//!   with its last value (`authorization=a,authorization=b` sends `b`), as
//!   the official SDKs read these lists; the traces variable replaces the
//!   general one name by name, and [`HttpTransportBuilder::header`] both.
//! * Nor does the password of an endpoint with user information
//!   (`http://user:password@host:4318`): wherever the URL is shown
//!   ([`HttpTransport::url`], `Debug`, export and configuration errors) it
//!   reads `http://user:***@host:4318`. The user information is taken off
//!   the URL and sent as `Authorization: Basic`, percent-decoded as RFC
//!   3986 and RFC 7617 say (`http://us%40er:p%2Fss@host` sends the user
//!   `us@er` and the password `p/ss`, as curl and Go do); a user name
//!   without a password is sent with an empty one. An `Authorization`
//!   header of your own (builder or `OTEL_EXPORTER_OTLP_*HEADERS`) wins
//!   over it.
//! * TLS: an `https` collector's certificate is checked against Mozilla's
//!   roots (built in), or against the certificates of the PEM file
//!   `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or
//!   `OTEL_EXPORTER_OTLP_CERTIFICATE` names
//!   ([`HttpTransportBuilder::certificate`]), which then replace them. A
//!   client certificate for mutual TLS comes from
//!   `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE` and its key from
//!   `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY` (both or neither). A file
//!   that cannot be read, holds no certificate or key, or a key that is
//!   not the certificate's, is an error when the transport is built.
//! * Redirects are never followed: a collector URL is a trust boundary, and
//!   a `3xx` would otherwise re-send the request (and its API keys) to
//!   wherever the answer points, or turn the POST into a body-less GET
//!   that "succeeds". A `3xx` is a failed export whose message names the
//!   status and the `Location`; configure the final URL instead.
//! * A request body over 1 MiB (after compression) is sent with
//!   `Expect: 100-continue`, so that a collector that refuses it from its
//!   headers (a `413` over its size limit, as nginx, Envoy and Go servers
//!   answer before reading the body, then close) is heard: the export
//!   fails at once, as that status says, instead of the upload being cut
//!   by the closed connection, read as a connection failure, and the whole
//!   body sent again and again. A collector that answers `100 Continue`
//!   gets the body at once; one that ignores the expectation gets it after
//!   1 s, or a quarter of the timeout when that is shorter (the body has
//!   the rest of the attempt's time); one that answers `417` (even with
//!   a head the client cannot parse) gets the request again at once
//!   without it (and no more expectations). Smaller
//!   requests, the usual ones, are sent as they are.
//! * A collector that refuses a body part-way through the upload (reads
//!   up to its limit, answers `413` and closes with the rest unread, as
//!   Go's `http.MaxBytesReader` does for the OpenTelemetry Collector's
//!   `max_request_body_size`; the unread rest makes the close a reset) is
//!   heard too, with or without the expectation: when a write of the body
//!   fails on a reset or closed connection, the rest of the body is
//!   dropped and the answer the collector already sent is read, as curl
//!   and Go's client read it. That answer is the attempt's outcome (a
//!   `413` fails the export at once, not retried). Only a collector that
//!   closes without answering reads as a connection failure, retried.
//! * The answer's body is read up to 64 KiB (a partial success is a few
//!   dozen bytes); of a longer body the start is read, so a partial
//!   success with a long error message still counts its rejected spans.
//! * An answer whose head the client cannot parse (a header over 64 KiB, a
//!   header name that is not a token, a folded line, two
//!   `Content-Length`s) counts by the status its first line gave, as any
//!   answer does: a 2xx is delivered, not sent again (a partial success
//!   in its body is not read), a 429, 502, 503 or 504 retried, any other
//!   final, its message saying the headers could not be read. Only a
//!   connection that gave no status line is "no answer". The status line
//!   is found as the client's parser finds it: past empty lines before it
//!   and past whole `1xx` answers, each ending at its first empty line
//!   (`\r\n` or bare `\n` line ends); never in a body. A status under
//!   100 is no HTTP status: "no answer" too.
//! * Settings are read as the specification says: enum values (`gzip`,
//!   `http/protobuf`) and URL schemes case-insensitively.
//! * Proxies: chosen by the endpoint's scheme, never for a loopback
//!   collector nor a zoned IPv6 one, `NO_PROXY` honoured; see
//!   [`HttpTransport`](HttpTransport#proxies).

use std::borrow::Cow;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::ConfigError;
use crate::encode::{EncodedRequest, Encoding};
use crate::transport::{AttemptStats, ExportResult, Transport};

/// The OTLP/HTTP default endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
/// The OTLP default per-attempt timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The most bytes of a collector's answer that are read (enough for any
/// `partial_success` but one with a very long message, of which the start
/// is read; the rest is not read).
pub(crate) const MAX_RESPONSE_BODY: u64 = 64 * 1024;
/// Request bodies larger than this (after compression) are sent with
/// `Expect: 100-continue`: a collector that refuses the request from its
/// headers (`413` over its size limit, `401`) answers before the body is
/// sent, instead of resetting the connection half-way through the upload,
/// which would read as a connection failure and be retried. The size curl
/// uses; smaller requests, the usual ones, go out at once.
pub(crate) const EXPECT_CONTINUE_ABOVE: usize = 1024 * 1024;
/// How long a request sent with `Expect: 100-continue` waits for the
/// collector's `100 Continue` (or final answer) before it sends the body
/// anyway, for a collector that ignores the expectation; never more than
/// a quarter of the attempt's timeout ([`await_continue`]).
pub(crate) const AWAIT_CONTINUE: Duration = Duration::from_secs(1);

/// Request body compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// None (the default).
    #[default]
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
}

/// How failed attempts are retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Wait before the first retry, before jitter (each wait is drawn
    /// between half and one and a half times the current backoff).
    pub initial_backoff: Duration,
    /// Longest wait between two attempts, jitter included (the first wait
    /// too). A collector's `Retry-After` longer than this is still waited,
    /// up to [`MAX_RETRY_AFTER`]. No wait follows the last attempt: its
    /// `Retry-After` goes to the caller
    /// ([`ExportResult::Retryable`]'s `retry_after`).
    pub max_backoff: Duration,
    /// Growth of the wait after each attempt.
    pub multiplier: f64,
    /// Most attempts per export, the first included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            max_attempts: 10,
        }
    }
}

#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    succeeded: AtomicU64,
    retryable_status: AtomicU64,
    final_status: AtomicU64,
    connection_failed: AtomicU64,
    retries: AtomicU64,
}

/// Builds an [`HttpTransport`]. Settings made here win over the
/// environment (`OTEL_EXPORTER_OTLP_*`).
#[derive(Clone, Default)]
#[must_use]
pub struct HttpTransportBuilder {
    endpoint: Option<String>,
    traces_endpoint: Option<String>,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    compression: Option<Compression>,
    encoding: Option<Encoding>,
    retry: RetryPolicy,
    certificate: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_key: Option<PathBuf>,
    /// File-system access, for the PEM files of the TLS settings.
    fs: Option<runtime_cap::FsAccess>,
}

impl fmt::Debug for HttpTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransportBuilder")
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field(
                "traces_endpoint",
                &self.traces_endpoint.as_deref().map(redact_url),
            )
            .field("headers", &header_names(&self.headers))
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("encoding", &self.encoding)
            .field("certificate", &self.certificate)
            .field("client_certificate", &self.client_certificate)
            .field("client_key", &self.client_key)
            .finish_non_exhaustive()
    }
}

impl HttpTransportBuilder {
    /// The collector's base URL; `/v1/traces` is appended to its path
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`, default `http://localhost:4318`).
    /// A query string stays at the end: `http://h:4318/otlp?tenant=a`
    /// sends to `http://h:4318/otlp/v1/traces?tenant=a`. The scheme
    /// (`http`, `https`) is case-insensitive; a fragment (`#...`), which is
    /// never sent, is refused, as is a control character anywhere.
    /// Bytes of the path and query that are not ASCII, and spaces, are
    /// percent-encoded (`/é` is sent as `/%C3%A9`); a host that is not ASCII
    /// is refused (write it in its `xn--` form), as is anything but a
    /// `:port` after a bracketed IPv6 host (`http://[::1]:4318`), and an
    /// IPv6 zone ID that is not the interface's number after `%25` (RFC
    /// 6874's encoded `%`: `http://[fe80::1%252]:4318` is sent to fe80::1
    /// on interface 2; `%25eth0` and zone 0 are refused, as is such a zone
    /// in a proxy's URL). A zone is for this machine only: the `Host`
    /// header is sent without it (`Host: [fe80::1]:4318`), and `NO_PROXY`
    /// and the loopback rule read the address without it. An `https` URL
    /// with a zone, the collector's or a proxy's, is refused (TLS would
    /// take the zoned host as the server's name, which is never valid).
    /// User
    /// information (`http://user:password@host`) is taken off the URL and
    /// sent as `Authorization: Basic`, percent-decoded (`us%40er` is the
    /// user `us@er`; a bad `%` escape is refused), unless an
    /// `Authorization` header is set; the password is shown as `***`
    /// wherever the URL is shown.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The full URL for traces, used as it is
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), checked and encoded as
    /// [`endpoint`](Self::endpoint)'s is.
    pub fn traces_endpoint(mut self, url: impl Into<String>) -> Self {
        self.traces_endpoint = Some(url.into());
        self
    }

    /// A header sent with every request (`OTEL_EXPORTER_OTLP_HEADERS`).
    /// A name set here replaces that header from the environment
    /// (`OTEL_EXPORTER_OTLP_TRACES_HEADERS` in turn replaces
    /// `OTEL_EXPORTER_OTLP_HEADERS`'s, name by name); calling this twice
    /// with one name sends both (unlike a name repeated within one of
    /// those variables, which is sent once, with its last value, as the
    /// official SDKs read them).
    /// [`build`](Self::build) refuses a name that is not an HTTP token, one
    /// the transport writes itself (`Content-Length`, `Transfer-Encoding`,
    /// `Content-Type`, `Content-Encoding`, the connection headers: a second
    /// one would break or misname the request), and a value holding a
    /// control character other than tab (a CR or LF would otherwise split
    /// the request).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Timeout of each attempt (`OTEL_EXPORTER_OTLP_TIMEOUT`, default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Body compression (`OTEL_EXPORTER_OTLP_COMPRESSION`: `gzip` or `none`,
    /// in any case).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = Some(c);
        self
    }

    /// Protobuf or JSON (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` or
    /// `http/json`, in any case).
    pub fn encoding(mut self, e: Encoding) -> Self {
        self.encoding = Some(e);
        self
    }

    /// How failed attempts are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// A PEM file of the certificates (certificate authorities) that an
    /// `https` collector's certificate must be signed by
    /// (`OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, else
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`). They replace the built-in roots
    /// (Mozilla's, from `webpki-roots`). [`build`](Self::build) reads the
    /// file and refuses one that cannot be read or holds no usable
    /// certificate.
    pub fn certificate(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.certificate = Some(pem_file.into());
        self
    }

    /// A PEM file of the client certificate (its chain, leaf first) to
    /// present to an `https` collector that asks for one (mutual TLS;
    /// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE`, else
    /// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`). It needs its private key,
    /// [`client_key`](Self::client_key): one without the other is refused
    /// by [`build`](Self::build), as is a key that does not match the
    /// certificate.
    pub fn client_certificate(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some(pem_file.into());
        self
    }

    /// A PEM file of the private key (PKCS#8, PKCS#1 or SEC1) of the
    /// [`client_certificate`](Self::client_certificate)
    /// (`OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY`, else
    /// `OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub fn client_key(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.client_key = Some(pem_file.into());
        self
    }

    /// File-system access (`cx.fs()` inside the runtime,
    /// `FsAccess::from_ambient(ambient_authority())` outside it), needed
    /// only to read the PEM files of the TLS settings
    /// ([`certificate`](Self::certificate),
    /// [`client_certificate`](Self::client_certificate),
    /// [`client_key`](Self::client_key), or their environment variables):
    /// without it, [`build`](Self::build) refuses a configuration that
    /// names one ([`ConfigError::NoCertificateFileAccess`]). A pipeline
    /// passes on the access it was given
    /// ([`PipelineBuilder::filesystem`](crate::PipelineBuilder::filesystem)).
    pub fn filesystem(mut self, fs: runtime_cap::FsAccess) -> Self {
        self.fs = Some(fs);
        self
    }

    /// Reads the environment for what was not set and checks everything.
    /// A malformed value is an error naming the variable (and, except for
    /// headers, whose values are secret, the value; a URL's password is
    /// shown as `***`).
    pub fn build(self) -> Result<HttpTransport, ConfigError> {
        // A value that is not UTF-8 is refused, naming its variable (not
        // shown: it may be a header's secret), rather than read as unset
        // or sent altered (found by review: a lossy reading sent an
        // endpoint's path and a header's value with U+FFFD in them).
        let not_utf8 = std::cell::Cell::new(None);
        let built = self.build_with(|var| match std::env::var(var) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                not_utf8.set(not_utf8.get().or(Some(var)));
                None
            }
        });
        match not_utf8.get() {
            Some(var) => Err(ConfigError::InvalidEnv {
                var,
                value: "(not shown)".to_owned(),
                reason: "the value is not UTF-8",
            }),
            None => built,
        }
    }

    /// [`build`](Self::build) with the environment given as a function,
    /// which every variable is read through: the `OTEL_EXPORTER_OTLP_*`
    /// settings and the proxy's (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`,
    /// `NO_PROXY`, see [`HttpTransport`](HttpTransport#proxies)).
    pub fn build_with(
        self,
        env: impl Fn(&'static str) -> Option<String>,
    ) -> Result<HttpTransport, ConfigError> {
        let env = |var| {
            env(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let url = match (self.traces_endpoint, self.endpoint) {
            (Some(t), _) => check_url("traces_endpoint", &t, false)?,
            (None, Some(e)) => join_traces(&check_url("endpoint", &e, false)?),
            // The general variable is read only when the signal's is not
            // set: the signal's wins, and a malformed general one it
            // overrides is no error (found by review: a general one that is
            // not UTF-8 failed the build though unused).
            (None, None) => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(t) => check_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &t, true)?,
                None => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    Some(e) => join_traces(&check_url("OTEL_EXPORTER_OTLP_ENDPOINT", &e, true)?),
                    None => join_traces(DEFAULT_ENDPOINT),
                },
            },
        };
        let mut headers = Vec::new();
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(v) = env(var) {
                let parsed = parse_headers(var, &v)?;
                for (i, (k, v)) in parsed.iter().enumerate() {
                    if let Err(why) = check_header(k, v) {
                        return Err(ConfigError::InvalidEnv {
                            var,
                            value: format!("<entry {} of the list, value hidden>", i + 1),
                            reason: why,
                        });
                    }
                }
                // Checked above with every entry's place in the list;
                // now the last value of each name stands for it.
                override_headers(&mut headers, last_of_each_name(parsed));
            }
        }
        for (k, v) in &self.headers {
            if let Err(why) = check_header(k, v) {
                return Err(ConfigError::InvalidSetting {
                    setting: "header",
                    reason: format!("{k:?} (value hidden): {why}"),
                });
            }
        }
        override_headers(&mut headers, self.headers);
        let timeout = match self.timeout {
            Some(t) => t,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", v))
                .or_else(|| {
                    env("OTEL_EXPORTER_OTLP_TIMEOUT").map(|v| ("OTEL_EXPORTER_OTLP_TIMEOUT", v))
                }) {
                Some((var, v)) => {
                    Duration::from_millis(v.parse().map_err(|_| ConfigError::InvalidEnv {
                        var,
                        value: v.clone(),
                        reason: "expected milliseconds, a non-negative integer",
                    })?)
                }
                None => DEFAULT_TIMEOUT,
            },
        };
        let compression = match self.compression {
            Some(c) => c,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
                .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", v))
                .or_else(|| {
                    env("OTEL_EXPORTER_OTLP_COMPRESSION")
                        .map(|v| ("OTEL_EXPORTER_OTLP_COMPRESSION", v))
                }) {
                None => Compression::None,
                Some((_, v)) if v.eq_ignore_ascii_case("none") => Compression::None,
                Some((_, v)) if v.eq_ignore_ascii_case("gzip") => Compression::Gzip,
                Some((var, other)) => {
                    return Err(ConfigError::InvalidEnv {
                        var,
                        value: other,
                        reason: "expected `gzip` or `none`",
                    });
                }
            },
        };
        let encoding = match self.encoding {
            Some(e) => e,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v))
                .or_else(|| {
                    env("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL", v))
                }) {
                None => Encoding::Protobuf,
                Some((_, v)) if v.eq_ignore_ascii_case("http/protobuf") => Encoding::Protobuf,
                Some((_, v)) if v.eq_ignore_ascii_case("http/json") => Encoding::Json,
                Some((var, other)) => {
                    return Err(ConfigError::InvalidEnv {
                        var,
                        value: other,
                        reason: "expected `http/protobuf` or `http/json` (gRPC is not supported by this exporter)",
                    });
                }
            },
        };
        // User information is sent as `Authorization: Basic`, decoded
        // (`us%40er` is the user `us@er`), never left in the URL for the
        // client to encode as it is typed. A user's own `Authorization`
        // header wins.
        let (wire_url, userinfo) = split_userinfo(&url);
        let basic_auth = userinfo.and_then(basic_credentials).filter(|_| {
            !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        });
        let target = ureq::http::Uri::try_from(wire_url.as_str()).map_err(|_| {
            ConfigError::InvalidSetting {
                setting: "endpoint",
                reason: format!("{:?}: not a valid URL", redact_url(&url)),
            }
        })?;
        // RFC 6874 (4): a zone ID is for this machine only and is taken off
        // the URI that is sent (RFC 9110's `Host` has no syntax for it);
        // the address and zone still choose where to connect
        // ([`ZoneResolver`]). A user's own `Host` header wins.
        let host_header = target
            .host()
            .filter(|h| h.starts_with('['))
            .and_then(|h| h.split_once('%'))
            .map(|(address, _)| match target.port_u16() {
                Some(port) => format!("{address}]:{port}"),
                None => format!("{address}]"),
            })
            .filter(|_| !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")));
        let https = target.scheme_str() == Some("https");
        let host = target.host().unwrap_or_default();
        let port = target.port_u16().unwrap_or(if https { 443 } else { 80 });
        let proxy = match choose_proxy(https, host, port, &env) {
            None => None,
            Some((var, p)) => Some(check_proxy(var, &p)?),
        };
        let pems = [
            pem_setting(
                self.certificate,
                "certificate",
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                &env,
            ),
            pem_setting(
                self.client_certificate,
                "client_certificate",
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                &env,
            ),
            pem_setting(
                self.client_key,
                "client_key",
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                &env,
            ),
        ];
        // Reading a file is a file-system effect: only with the access for
        // it (found by review: the files were read with network access
        // alone).
        if self.fs.is_none() && pems.iter().any(Option::is_some) {
            return Err(ConfigError::NoCertificateFileAccess);
        }
        let [certificate, client_certificate, client_key] = pems;
        let tls = tls_config(certificate, client_certificate, client_key)?;
        let proxy_shown = proxy.as_ref().map(|p| {
            let uri = p.uri().to_string();
            redact_url(&uri).into_owned()
        });
        let config = ureq::Agent::config_builder()
            // Decided here, once, for the one URL this transport sends to
            // (see "Proxies" in the docs): never ureq's own reading of the
            // environment, which takes `HTTPS_PROXY` for `http` too.
            .proxy(proxy)
            .tls_config(tls)
            .http_status_as_error(false)
            // Never follow a redirect: a 3xx comes back as an answer and
            // fails the export (see the module docs).
            .max_redirects(0)
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .build();
        let agent = ureq::Agent::with_parts(config, connector(), ZoneResolver::default());
        Ok(HttpTransport {
            agent,
            url: redact_url(&url).into_owned(),
            wire_url,
            host_header,
            basic_auth,
            proxy: proxy_shown,
            headers,
            timeout,
            compression,
            encoding,
            retry: self.retry,
            counters: Counters::default(),
            expect_continue: AtomicBool::new(true),
        })
    }
}

/// Header names only: values carry API keys and are never shown.
/// Adds one source's headers to those of the sources below it: a name
/// set here replaces every header of that name (compared without case)
/// from below, as the OTLP exporter configuration orders them
/// (`OTEL_EXPORTER_OTLP_HEADERS`, then `OTEL_EXPORTER_OTLP_TRACES_HEADERS`,
/// then the builder). Within one environment variable a name given
/// twice is sent once, with its last value ([`last_of_each_name`]);
/// repeats of [`HttpTransportBuilder::header`] are all sent.
fn override_headers(below: &mut Vec<(String, String)>, source: Vec<(String, String)>) {
    below.retain(|(k, _)| !source.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)));
    below.extend(source);
}

/// One header per name (compared without case), the last value given for
/// it, in the place of that last one: the official SDKs (Go, Java, Python,
/// JS, Rust) read `OTEL_EXPORTER_OTLP_HEADERS` into a map, so that
/// `authorization=old,authorization=new` sends `new` alone (found by
/// review: both were sent, and a collector's bearer auth read the first,
/// stale one).
fn last_of_each_name(list: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(list.len());
    for (k, v) in list {
        out.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
        out.push((k, v));
    }
    out
}

fn header_names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(k, _)| k.as_str()).collect()
}

/// Headers the transport writes itself, which a user's would contradict:
/// a second `Content-Length` or a `Transfer-Encoding` breaks the request's
/// framing (the collector reads a cut or overlong body), a second
/// `Content-Type` or `Content-Encoding` misnames it, and the connection
/// headers are the client's to manage.
const OWN_HEADERS: [&str; 11] = [
    "content-length",
    "transfer-encoding",
    "content-type",
    "content-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// A header the transport can send: the name an HTTP token and not one the
/// transport writes itself ([`OWN_HEADERS`]), the value free of control
/// characters other than tab (RFC 9110 field-value). The reason never
/// quotes the value.
fn check_header(name: &str, value: &str) -> Result<(), &'static str> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b))
    {
        return Err("the header name is not an HTTP token (letters, digits, -_.!#$%&'*+^`|~)");
    }
    // The client's own check, which also bounds the length: a name it
    // refuses would otherwise fail every export.
    if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err("the header name is too long for HTTP (64 KiB or more)");
    }
    if OWN_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return Err(
            "the transport sets this header itself: it frames the request or names its body (Content-Length, Transfer-Encoding, Content-Type, Content-Encoding, Connection and the like)",
        );
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(
            "the header value holds a control character (CR, LF, NUL, ...), which HTTP does not allow",
        );
    }
    if ureq::http::HeaderValue::from_bytes(value.as_bytes()).is_err() {
        return Err("the header value is not one HTTP can carry");
    }
    // The client sends `authorization` only as visible ASCII, and fails
    // the request otherwise (found by review: a non-ASCII one built, then
    // failed every export as a connection failure, retried for ever);
    // `proxy-authorization`, read by proxies the same way, is held to it
    // too.
    if ["authorization", "proxy-authorization"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        && !value
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err("an authorization header's value must be ASCII (encode it: Base64, say)");
    }
    Ok(())
}

/// Checks a collector URL and returns it as it is sent: its scheme in
/// lower case, and in its path and query every byte that is not ASCII and
/// every space percent-encoded (`/é` is sent as `/%C3%A9`: an HTTP request
/// line is ASCII, RFC 9112 3.2). User information (`user:password@`) is
/// kept (the transport takes it off and sends it as `Authorization: Basic`,
/// [`split_userinfo`]), its percent-encoding checked; errors show the URL
/// with the password hidden ([`redact_url`]).
fn check_url(what: &'static str, url: &str, from_env: bool) -> Result<String, ConfigError> {
    let bad = |reason: &'static str| {
        let shown = redact_url(url).into_owned();
        if from_env {
            ConfigError::InvalidEnv {
                var: what,
                value: shown,
                reason,
            }
        } else {
            ConfigError::InvalidSetting {
                setting: what,
                reason: format!("{shown:?}: {reason}"),
            }
        }
    };
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
        .ok_or_else(|| bad("expected a URL starting with http:// or https://"))?;
    if rest.contains('#') {
        return Err(bad(
            "a URL fragment (#...) is never sent to the server; remove it",
        ));
    }
    if rest.chars().any(char::is_control) {
        return Err(bad(
            "the URL holds a control character (a tab, a line break, ...)",
        ));
    }
    let (authority, path_and_query) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    // The host and port follow the user information, if any: the last `@`
    // of the authority ends it (a password may hold a `:`).
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(bad("the URL has no host"));
    }
    if !authority.is_ascii() {
        return Err(bad(
            "the host, or the user name or password before it, is not ASCII: write an \
             international host name in its ASCII (punycode, xn--...) form",
        ));
    }
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && basic_credentials(userinfo).is_none()
    {
        return Err(bad(
            "the user name or password has a bad percent-encoding (a `%` not followed by two \
             hex digits, or bytes that are not UTF-8)",
        ));
    }
    // An IPv6 host is bracketed; after the `]` comes nothing or `:port`
    // (`http://[::1]x:4318` would otherwise send to `[::1]:4318`).
    let port = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            None => return Err(bad("the IPv6 host opened with `[` has no closing `]`")),
            // A zone ID (RFC 6874: `%25`, the encoded `%`, and the zone)
            // is sent to by the interface's number ([`zone_id`],
            // [`ZoneResolver`]), never its name (`%25eth0`): that would
            // build and then fail every export, as a retryable failure.
            Some((address, _)) if zone_id(address).is_err() => {
                return Err(bad(BAD_ZONE));
            }
            Some((address, _)) if scheme.eq_ignore_ascii_case("https") && address.contains('%') => {
                return Err(bad(HTTPS_ZONE));
            }
            Some((_, "")) => None,
            Some((_, after)) => Some(after.strip_prefix(':').ok_or_else(|| {
                bad("only `:port` may follow a bracketed IPv6 host (http://[::1]:4318)")
            })?),
        },
        None => host.rsplit_once(':').map(|(_, port)| port),
    };
    if let Some(port) = port
        && (port.parse::<u16>().is_err() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("the port is not a number from 0 to 65535"));
    }
    let url = format!(
        "{}://{authority}{}",
        scheme.to_ascii_lowercase(),
        percent_encode_path(path_and_query)
    );
    ureq::http::Uri::try_from(url.as_str()).map_err(|_| bad("not a valid URL"))?;
    Ok(url)
}

/// Why a bracketed IPv6 host's zone ID is refused ([`zone_id`]).
const BAD_ZONE: &str = "an IPv6 zone ID must be the interface's number, after `%25` (the encoded \
                        `%`, RFC 6874): `[fe80::1%252]` is fe80::1 on interface 2; an interface \
                        name (`%25eth0`) or zone 0 cannot be connected to";

/// Why `https` to a bracketed IPv6 host with a zone ID is refused.
const HTTPS_ZONE: &str = "an `https` URL cannot have an IPv6 zone ID (`%25...`): the TLS client \
                          takes the host, zone and all, as the server's name, which is never \
                          valid; use `http`, or an address or name without a zone";

/// The zone ID of a bracketed IPv6 host (`address` is what is between the
/// brackets): RFC 6874's `%25` (an encoded `%`) then the interface's
/// number, as it is connected to (`fe80::1%252` is interface 2). `Ok(None)`
/// for a host without one; an error for any other spelling (an interface
/// name, a bare `%`, no number, a number over `u32`, zone 0, which is no
/// interface).
fn zone_id(address: &str) -> Result<Option<u32>, ()> {
    let Some((_, zone)) = address.split_once('%') else {
        return Ok(None);
    };
    match zone.strip_prefix("25") {
        // Zone 0 is no interface: connecting to a link-local address with
        // it fails (EINVAL) on every export.
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => match id.parse() {
            Ok(0) | Err(_) => Err(()),
            Ok(n) => Ok(Some(n)),
        },
        _ => Err(()),
    }
}

/// The socket address of a URL whose host is a bracketed IPv6 address
/// with a zone ID ([`zone_id`]): the address, the URL's port (or its
/// scheme's), and the zone's number as its scope ID. `None` for any other
/// host.
fn zoned_address(uri: &ureq::http::Uri) -> Option<std::net::SocketAddrV6> {
    let address = uri.host()?.strip_prefix('[')?.strip_suffix(']')?;
    let zone = zone_id(address).ok()??;
    let ip = address.split_once('%')?.0.parse().ok()?;
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    })?;
    Some(std::net::SocketAddrV6::new(ip, port, 0, zone))
}

/// ureq's resolver, except for a bracketed IPv6 host with a zone ID (the
/// collector's or the proxy's): that is connected to as
/// [`zoned_address`] reads it. ureq hands the system's resolver the host
/// as the URL writes it, `%25` and all, which reads `fe80::1%252` as
/// interface 252: no spelling of a zone reached the interface meant.
#[derive(Debug, Default)]
struct ZoneResolver(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for ZoneResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        match zoned_address(uri) {
            Some(address) => {
                let mut addrs = self.empty();
                addrs.push(std::net::SocketAddr::V6(address));
                Ok(addrs)
            }
            None => self.0.resolve(uri, config, timeout),
        }
    }
}

/// A checked URL without its user information, and that user information
/// (`user:password`, as typed), if any. It ends at the last `@` of the
/// authority, as [`check_url`] reads it.
fn split_userinfo(url: &str) -> (String, Option<&str>) {
    let start = url.find("://").map_or(0, |at| at + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |e| start + e);
    match url[start..end].rfind('@') {
        Some(at) => (
            format!("{}{}", &url[..start], &url[start + at + 1..]),
            Some(&url[start..start + at]),
        ),
        None => (url.to_owned(), None),
    }
}

/// The `Authorization` value for a URL's user information: `Basic` and
/// the base64 of `user:password` percent-decoded (RFC 3986 3.2.1, RFC
/// 7617, in UTF-8), as curl, Go and Python's requests send it; a user
/// without a password is `user:`. `None` for a bad percent-encoding.
fn basic_credentials(userinfo: &str) -> Option<String> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user = crate::model::percent_decode(user)?;
    let password = crate::model::percent_decode(password)?;
    Some(format!(
        "Basic {}",
        base64(format!("{user}:{password}").as_bytes())
    ))
}

/// Standard base64 with padding (RFC 4648 4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The proxy for requests to `host:port` (`https` or `http`), from the
/// environment, as curl and Go's `ProxyFromEnvironment` choose it: by the
/// URL's scheme (`HTTPS_PROXY`/`https_proxy` for `https`,
/// `HTTP_PROXY`/`http_proxy` for `http`), else `ALL_PROXY`/`all_proxy`;
/// none for a loopback host, a zoned IPv6 host, nor for one
/// `NO_PROXY`/`no_proxy` names.
/// The variable it came from and its value.
fn choose_proxy(
    https: bool,
    host: &str,
    port: u16,
    env: &impl Fn(&'static str) -> Option<String>,
) -> Option<(&'static str, String)> {
    // A bracketed IPv6 host with a zone ID (`%25...`, [`zone_id`]) is
    // never proxied: the zone names an interface of this machine, which a
    // proxy cannot reach it by (it would be sent `CONNECT [fe80::1%2]`, or
    // with the zone taken off, some neighbour of its own).
    if host.starts_with('[') && host.contains('%') {
        return None;
    }
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .trim_end_matches(']')
            .split_once('%')
            .map_or(v6.trim_end_matches(']'), |(address, _)| address),
        None => host.trim_end_matches('.'),
    }
    .to_ascii_lowercase();
    if is_loopback(&host) {
        return None;
    }
    let vars = if https {
        ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    let chosen = vars
        .into_iter()
        .find_map(|var| env(var).map(|p| (var, p)))?;
    match env("NO_PROXY").or_else(|| env("no_proxy")) {
        Some(list) if no_proxy_matches(&list, &host, port) => None,
        _ => Some(chosen),
    }
}

/// `localhost`, a name under it (RFC 6761), 127.0.0.0/8, `::1` (and
/// `::ffff:127.x.y.z`): never sent through a proxy, which could not reach
/// this machine's loopback anyway.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Whether a `NO_PROXY` list names `host` (lower case, without brackets
/// or a trailing dot). Entries are separated by commas (spaces around them
/// ignored), in any case: `*` (every host); a domain (`example.com` or
/// `.example.com` or `*.example.com`: that name and every name under it);
/// an IP address (`10.1.2.3`, `::1`, `[::1]`); an IP network
/// (`10.0.0.0/8`, `fd00::/8`). An entry may end in `:port`, and then names
/// the host on that port only.
fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    list.split(',').any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        if entry == "*" {
            return true;
        }
        // `[v6]:port`, `[v6]`, `name:port`, `v4:port`; a bare IPv6 address
        // (two colons or more) has no port.
        let (name, entry_port) = if let Some(v6) = entry.strip_prefix('[') {
            match v6.split_once(']') {
                Some((addr, "")) => (addr, None),
                Some((addr, p)) => match p.strip_prefix(':').map(str::parse::<u16>) {
                    Some(Ok(p)) => (addr, Some(p)),
                    _ => return false,
                },
                None => return false,
            }
        } else {
            match entry.split_once(':') {
                Some((name, p)) if !p.contains(':') => match p.parse::<u16>() {
                    Ok(p) => (name, Some(p)),
                    Err(_) => return false,
                },
                _ => (entry.as_str(), None),
            }
        };
        if entry_port.is_some_and(|p| p != port) || name.is_empty() {
            return false;
        }
        if let Some((net, bits)) = name.split_once('/') {
            let (Ok(net), Ok(bits), Some(ip)) = (net.parse::<IpAddr>(), bits.parse::<u32>(), ip)
            else {
                return false;
            };
            return in_network(ip, net.to_canonical(), bits);
        }
        if let Ok(entry_ip) = name.parse::<IpAddr>() {
            return ip == Some(entry_ip.to_canonical());
        }
        if ip.is_some() {
            return false;
        }
        let domain = name
            .trim_start_matches('*')
            .trim_start_matches('.')
            .trim_end_matches('.');
        !domain.is_empty()
            && (host == domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.')))
    })
}

/// Whether `ip` is in the network `net/bits`.
fn in_network(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The proxy a variable names, checked: an `http://` or `https://` proxy
/// URL (`host:port` alone is `http://host:port`). Errors name the
/// variable and show the value with its password hidden.
fn check_proxy(var: &'static str, value: &str) -> Result<ureq::Proxy, ConfigError> {
    let bad = |reason| ConfigError::InvalidEnv {
        var,
        value: redact_url(value).into_owned(),
        reason,
    };
    let proxy = ureq::Proxy::new(value)
        .map_err(|_| bad("not a proxy URL (http://host:port or https://host:port)"))?;
    if !matches!(
        proxy.protocol(),
        ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
    ) {
        return Err(bad(
            "only http:// and https:// proxies are supported (SOCKS is not); set NO_PROXY to \
             send to the collector directly",
        ));
    }
    // A zone ID is checked as the collector's is (`check_url`): one the
    // transport cannot connect to would build and then fail every export.
    if let Some(address) = proxy
        .uri()
        .host()
        .and_then(|h| h.strip_prefix('['))
        .and_then(|h| h.strip_suffix(']'))
    {
        if zone_id(address).is_err() {
            return Err(bad(BAD_ZONE));
        }
        // A TLS proxy is named by its host as the collector is
        // (`check_url`): a zone makes that name invalid.
        if matches!(proxy.protocol(), ureq::ProxyProtocol::Https) && address.contains('%') {
            return Err(bad(HTTPS_ZONE));
        }
    }
    Ok(proxy)
}

/// The most bytes read from a certificate or key file: far more than any
/// real chain, so that a wrong path (a device, a huge file) fails at once.
const MAX_PEM_FILE: u64 = 1024 * 1024;

/// Where a certificate or key file is configured: a builder setting, or
/// a variable; and its path.
struct PemSource {
    from: Result<&'static str, &'static str>,
    path: PathBuf,
}

impl PemSource {
    fn error(&self, reason: &'static str) -> ConfigError {
        match self.from {
            Ok(setting) => ConfigError::InvalidSetting {
                setting,
                reason: format!("{:?}: {reason}", self.path),
            },
            Err(var) => ConfigError::InvalidEnv {
                var,
                value: self.path.display().to_string(),
                reason,
            },
        }
    }

    /// The file's bytes (up to [`MAX_PEM_FILE`]).
    fn read(&self) -> Result<Vec<u8>, ConfigError> {
        read_capped(&self.path).map_err(|why| self.error(why))
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, &'static str> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file",
        std::io::ErrorKind::PermissionDenied => "the file may not be read (permission denied)",
        _ => "the file cannot be opened",
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| "the file cannot be read")?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err("the file is over 1 MiB: not a PEM certificate or key file");
    }
    Ok(bytes)
}

/// The builder's path for a setting, else the signal's variable, else the
/// general one.
fn pem_setting(
    set: Option<PathBuf>,
    setting: &'static str,
    traces_var: &'static str,
    var: &'static str,
    env: &impl Fn(&'static str) -> Option<String>,
) -> Option<PemSource> {
    match set {
        Some(path) => Some(PemSource {
            from: Ok(setting),
            path,
        }),
        None => [traces_var, var].into_iter().find_map(|v| {
            env(v).map(|p| PemSource {
                from: Err(v),
                path: PathBuf::from(p),
            })
        }),
    }
}

/// The certificates of a PEM file, in order; an error for malformed PEM
/// or none at all.
fn pem_certificates(
    src: &PemSource,
    bytes: &[u8],
) -> Result<Vec<ureq::tls::Certificate<'static>>, ConfigError> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(bytes) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(_) => return Err(src.error("the file holds malformed PEM")),
        }
    }
    if certs.is_empty() {
        return Err(src.error("the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The TLS settings: the trusted roots and the client certificate, read
/// from their files and checked now, so that a bad file is an error when
/// the transport is built rather than a failure of every export.
fn tls_config(
    roots: Option<PemSource>,
    client_cert: Option<PemSource>,
    client_key: Option<PemSource>,
) -> Result<ureq::tls::TlsConfig, ConfigError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(src) = &roots {
        let certs = pem_certificates(src, &src.read()?)?;
        let mut store = rustls::RootCertStore::empty();
        for c in &certs {
            store
                .add(CertificateDer::from(c.der()))
                .map_err(|_| src.error("a certificate in the file cannot be a trust anchor (it does not parse as X.509)"))?;
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    match (client_cert, client_key) {
        (None, None) => {}
        (Some(src), None) => {
            return Err(src.error(
                "a client certificate needs its private key (client_key, \
                 OTEL_EXPORTER_OTLP_CLIENT_KEY)",
            ));
        }
        (None, Some(src)) => {
            return Err(src.error(
                "a client key needs its certificate (client_certificate, \
                 OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)",
            ));
        }
        (Some(cert_src), Some(key_src)) => {
            let chain = pem_certificates(&cert_src, &cert_src.read()?)?;
            let key = ureq::tls::PrivateKey::from_pem(&key_src.read()?).map_err(|_| {
                key_src.error("the file holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")
            })?;
            // The pair as rustls will use it: a key it cannot load, or one
            // that is not the certificate's, is refused now.
            let provider = rustls::crypto::ring::default_provider();
            let key_der = PrivateKeyDer::try_from(key.der().to_vec())
                .map_err(|_| key_src.error("the private key is malformed"))?;
            rustls::sign::CertifiedKey::from_der(
                chain
                    .iter()
                    .map(|c| CertificateDer::from(c.der().to_vec()))
                    .collect(),
                key_der,
                &provider,
            )
            .map_err(|_| {
                key_src.error("the private key cannot be used, or is not the client certificate's")
            })?;
            tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
        }
    }
    Ok(tls.build())
}

/// A path and query with every byte that is not ASCII, and every space,
/// percent-encoded; the rest (a `%XX` already there included) as it is.
fn percent_encode_path(path: &str) -> Cow<'_, str> {
    use std::fmt::Write as _;
    if path.bytes().all(|b| b.is_ascii() && b != b' ') {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() * 3);
    for b in path.bytes() {
        if b.is_ascii() && b != b' ' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// A URL as it may be shown (in `Debug`, errors, logs): the password of
/// its user information replaced by `***` (`http://alice:***@host/`), and
/// a user name given without a password, which is often a token, replaced
/// as a whole (`http://***@host/`). Anything else is shown as it is.
///
/// The user information is taken to end at the last `@` of the whole URL,
/// not at the first `/`, `?` or `#` as a URL parser would end the
/// authority: a password holding one of those unencoded (a malformed URL,
/// which is refused, and then shown in the error) is hidden all the same.
/// A URL with an `@` in its path or query is shown with what comes before
/// that `@` hidden: too much hidden, never a secret shown.
fn redact_url(url: &str) -> Cow<'_, str> {
    let start = url.find("://").map_or(0, |at| at + 3);
    let Some(at) = url[start..].rfind('@').map(|at| start + at) else {
        return Cow::Borrowed(url);
    };
    let shown = match url[start..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    Cow::Owned(format!("{}{shown}{}", &url[..start], &url[at..]))
}

/// The traces URL under a base URL: `/v1/traces` appended to the path,
/// before any query string.
fn join_traces(base: &str) -> String {
    let (path, query) = match base.find('?') {
        Some(at) => base.split_at(at),
        None => (base, ""),
    };
    format!("{}/v1/traces{query}", path.trim_end_matches('/'))
}

/// `key=value,key2=value2`, percent-decoded. Errors name the variable and
/// the entry's position, never a value.
fn parse_headers(var: &'static str, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (k, v) = entry.split_once('=').ok_or(ConfigError::InvalidEnv {
            var,
            value: format!("<entry {} of the list, value hidden>", i + 1),
            reason: "expected key=value pairs separated by commas",
        })?;
        let decode = |s: &str| crate::model::percent_decode(s.trim());
        match (decode(k), decode(v)) {
            (Some(k), Some(v)) if !k.is_empty() => out.push((k, v)),
            _ => {
                return Err(ConfigError::InvalidEnv {
                    var,
                    value: format!("<entry {} of the list, value hidden>", i + 1),
                    reason: "a key is empty or the percent-encoding is bad",
                });
            }
        }
    }
    Ok(out)
}

/// Sends encoded requests to an OTLP/HTTP endpoint.
///
/// ```no_run
/// use otlp_exporter::{HttpTransport, Pipeline};
/// let transport = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(runtime_cap::ambient_authority())).endpoint("http://127.0.0.1:4318").build()?;
/// let pipeline = Pipeline::builder().transport(transport).build()?;
/// # Ok::<(), otlp_exporter::ConfigError>(())
/// ```
///
/// # TLS
///
/// An `https` collector's certificate is checked against Mozilla's
/// roots (built in), or against the certificates of the PEM file
/// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` names
/// ([`HttpTransportBuilder::certificate`]), which then replace them. A
/// client certificate for mutual TLS comes from
/// `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE` and its key from
/// `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY` (both or neither). A file
/// that cannot be read, holds no certificate or key, or a key that is
/// not the certificate's, is an error when the transport is built. The
/// files are read with the file-system access given to the builder
/// ([`HttpTransportBuilder::filesystem`], or the pipeline's): without it
/// a configuration that names one is refused. A
/// failed handshake (a certificate not trusted, expired or for another
/// host; ours refused) fails the export at once, not retried.
///
/// # Proxies
///
/// The proxy is chosen from the environment when the transport is built,
/// once (its one URL never changes), as curl and Go's
/// `ProxyFromEnvironment` choose it: for an `https` endpoint
/// `HTTPS_PROXY` (or `https_proxy`), for an `http` endpoint `HTTP_PROXY`
/// (or `http_proxy`), and for either, when that is unset, `ALL_PROXY` (or
/// `all_proxy`). A proxy meant for one scheme never captures the other. No
/// proxy is used for a loopback collector (`localhost` and names under it,
/// `127.0.0.0/8`, `::1`), nor for a host that `NO_PROXY` (or `no_proxy`)
/// names: a comma-separated list of `*` (every host), domains
/// (`example.com`, `.example.com` and `*.example.com` each match
/// `example.com` and every name under it), IP addresses and networks
/// (`10.1.2.3`, `10.0.0.0/8`, `::1`, `fd00::/8`), each optionally with a
/// `:port`. The proxy is an `http://` or `https://` URL (`host:port`
/// alone is `http://`); the request goes through it in a `CONNECT`
/// tunnel. A proxy URL that does not parse, a SOCKS proxy, an IPv6
/// zone ID that is not the interface's number after `%25` (as for the
/// [endpoint](HttpTransportBuilder::endpoint)), or an `https://` proxy
/// with a zone ID is an error when the transport is built, naming the
/// variable. A zoned collector (`[fe80::1%252]`) is never sent through a
/// proxy: its zone names an interface of this machine. `Debug` shows
/// the proxy chosen (its password hidden).
pub struct HttpTransport {
    agent: ureq::Agent,
    /// The URL requests go to, without its user information.
    wire_url: String,
    /// The `Host` header for a collector whose URL has an IPv6 zone ID:
    /// its host and port without the zone (RFC 6874 4). `None` otherwise
    /// (the client writes `Host` from the URL), or when a header sets it.
    host_header: Option<String>,
    /// The configured URL as it is shown: its password hidden
    /// ([`redact_url`]).
    url: String,
    /// `Basic ...` from the URL's user information, percent-decoded; `None`
    /// without one, or when a header sets `Authorization`.
    basic_auth: Option<String>,
    /// The proxy requests go through, as it is shown (password hidden).
    proxy: Option<String>,
    headers: Vec<(String, String)>,
    timeout: Duration,
    compression: Compression,
    encoding: Encoding,
    retry: RetryPolicy,
    counters: Counters,
    /// Whether large bodies are sent with `Expect: 100-continue`: until
    /// the collector answers one with `417 Expectation Failed`.
    expect_continue: AtomicBool,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("url", &self.url)
            .field("proxy", &self.proxy)
            .field("headers", &header_names(&self.headers))
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// An answer's status, `Retry-After`, `Location`, and its body's start
/// (up to [`MAX_RESPONSE_BODY`]) and whether there was more.
fn read_answer(
    mut resp: ureq::http::Response<ureq::Body>,
) -> (u16, Option<Duration>, Option<String>, Vec<u8>, bool) {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let location = resp
        .headers()
        .get("location")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // A body cut short or longer than the cap is read as far as it goes
    // (up to the cap: `read_to_end` keeps what it read before an error):
    // the status alone says whether the request arrived, and a partial
    // success at the start of a longer answer is still read (`cut`).
    let mut bytes = Vec::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(MAX_RESPONSE_BODY + 1)
        .read_to_end(&mut bytes);
    let cut = bytes.len() as u64 > MAX_RESPONSE_BODY;
    bytes.truncate(MAX_RESPONSE_BODY as usize);
    (status, retry_after, location, bytes, cut)
}

/// A request as it goes out: its body (compressed or not), the encoding
/// of its spans, and whether the body is gzip.
struct Outgoing<'a> {
    body: &'a [u8],
    encoding: Encoding,
    gzip: bool,
}

/// How long a request sent with `Expect: 100-continue` waits for the
/// collector's `100 Continue` before sending the body anyway: at most
/// [`AWAIT_CONTINUE`], and never more than a quarter of the attempt's
/// `timeout`, so that the body still has the rest of it to go out (a
/// fixed second inside a timeout of a second or less left nothing).
fn await_continue(timeout: Duration) -> Duration {
    AWAIT_CONTINUE.min(timeout / 4)
}

/// How one attempt ended.
enum Attempt {
    Done(ExportResult),
    /// Retryable; `Some` if the server said how long to wait.
    Retry(Option<Duration>, String),
}

impl HttpTransport {
    /// A builder with nothing set. Opening connections is an effect, so
    /// it takes a [`NetAccess`](runtime_cap::NetAccess): from a runtime
    /// context holding the network capability (`cx.net()`), or, outside
    /// any runtime, from `NetAccess::from_ambient(ambient_authority())`.
    ///
    /// ```
    /// use otlp_exporter::{HttpTransport, NetAccess, ambient_authority};
    /// let t = HttpTransport::builder(NetAccess::from_ambient(ambient_authority()))
    ///     .endpoint("http://127.0.0.1:4318")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(t.url(), "http://127.0.0.1:4318/v1/traces");
    /// ```
    ///
    /// Without network access there is no transport:
    ///
    /// ```compile_fail
    /// let t = otlp_exporter::HttpTransport::builder().build();
    /// ```
    pub fn builder(_net: runtime_cap::NetAccess) -> HttpTransportBuilder {
        HttpTransportBuilder::default()
    }

    /// The URL requests go to, as it is shown in `Debug` and in errors:
    /// a password in it (`http://user:password@host`, sent as
    /// `Authorization: Basic`) is replaced by `***`
    /// (`http://user:***@host:4318/v1/traces`), and a user name without a
    /// password (often a token) is replaced as a whole (`http://***@host`).
    /// Bytes of the configured path or query that are not ASCII, and
    /// spaces, are shown percent-encoded, as they are sent.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every attempt so far, by outcome (also in
    /// [`Pipeline::stats`](crate::Pipeline::stats)).
    pub fn attempts(&self) -> AttemptStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AttemptStats {
            attempts: l(&c.attempts),
            succeeded: l(&c.succeeded),
            retryable_status: l(&c.retryable_status),
            final_status: l(&c.final_status),
            connection_failed: l(&c.connection_failed),
            retries: l(&c.retries),
        }
    }

    /// One POST of `body`, with `Expect: 100-continue` if `expect`.
    fn send(
        &self,
        out: &Outgoing<'_>,
        deadline: Instant,
        expect: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let timeout = self
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        let mut req = self
            .agent
            .post(&self.wire_url)
            .config()
            .timeout_global(Some(timeout))
            .timeout_await_100(Some(await_continue(timeout)))
            .build()
            .header("Content-Type", out.encoding.content_type());
        if out.gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        if expect {
            req = req.header("Expect", "100-continue");
        }
        if let Some(auth) = &self.basic_auth {
            req = req.header("Authorization", auth.as_str());
        }
        if let Some(host) = &self.host_header {
            req = req.header("Host", host.as_str());
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        STATUS_SEEN.set(None);
        req.send(out.body)
    }

    fn attempt(&self, out: &Outgoing<'_>, deadline: Instant) -> Attempt {
        let c = &self.counters;
        c.attempts.fetch_add(1, Ordering::Relaxed);
        let expect =
            out.body.len() > EXPECT_CONTINUE_ABOVE && self.expect_continue.load(Ordering::Relaxed);
        // A final answer whose head the client refused (a header over its
        // 64 KiB, a name that is not a token, a folded line, two
        // `Content-Length`s) still has the status its first line gave
        // ([`StatusSeen`]): the collector answered, and that status says
        // what became of the request (a 2xx is delivered, not re-sent).
        let heard = |sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>| {
            sent.map(Ok).or_else(|e| match STATUS_SEEN.take() {
                Some(status) => Ok(Err((status, e))),
                None => Err(e),
            })
        };
        let mut sent = heard(self.send(out, deadline, expect));
        let status = match &sent {
            Ok(Ok(resp)) => Some(resp.status().as_u16()),
            Ok(Err((status, _))) => Some(*status),
            Err(_) => None,
        };
        if expect && status == Some(417) {
            // A server (or proxy) that does not do `Expect: 100-continue`
            // says so with a 417 (one whose head could not be read too):
            // the request is repeated at once without it (RFC 9110
            // 10.1.1), as are this transport's later ones.
            self.expect_continue.store(false, Ordering::Relaxed);
            c.retryable_status.fetch_add(1, Ordering::Relaxed);
            c.attempts.fetch_add(1, Ordering::Relaxed);
            c.retries.fetch_add(1, Ordering::Relaxed);
            sent = heard(self.send(out, deadline, false));
        }
        match sent {
            Ok(answered) => {
                let (status, retry_after, location, bytes, cut, unreadable) = match answered {
                    Ok(resp) => {
                        let (status, retry_after, location, bytes, cut) = read_answer(resp);
                        (status, retry_after, location, bytes, cut, String::new())
                    }
                    Err((status, e)) => (
                        status,
                        None,
                        None,
                        Vec::new(),
                        false,
                        format!(
                            " (its headers could not be read: {})",
                            e.to_string().replace(&self.wire_url, &self.url)
                        ),
                    ),
                };
                match status {
                    200..=299 => {
                        c.succeeded.fetch_add(1, Ordering::Relaxed);
                        // The answer is in the request's encoding (the OTLP
                        // specification: the same Content-Type), which is
                        // not always the transport's own (a request encoded
                        // for another sink, handed on).
                        match partial_success(&bytes, out.encoding, cut) {
                            Some((rejected, message)) if rejected > 0 => {
                                Attempt::Done(ExportResult::PartialSuccess { rejected, message })
                            }
                            _ => Attempt::Done(ExportResult::Success),
                        }
                    }
                    429 | 502 | 503 | 504 => {
                        c.retryable_status.fetch_add(1, Ordering::Relaxed);
                        Attempt::Retry(retry_after, format!("HTTP {status}{unreadable}"))
                    }
                    300..=399 => {
                        c.final_status.fetch_add(1, Ordering::Relaxed);
                        Attempt::Done(ExportResult::Failed(redirect_refused(
                            status,
                            &self.url,
                            location.as_deref(),
                        )))
                    }
                    _ => {
                        c.final_status.fetch_add(1, Ordering::Relaxed);
                        Attempt::Done(ExportResult::Failed(format!(
                            "HTTP {status} from {}{unreadable}",
                            self.url
                        )))
                    }
                }
            }
            Err(e) => {
                c.connection_failed.fetch_add(1, Ordering::Relaxed);
                // ureq's errors do not quote the URL today; should one
                // ever, its password is hidden all the same.
                let why = e.to_string().replace(&self.wire_url, &self.url);
                match classify(&e) {
                    Failure::Transient => {
                        Attempt::Retry(None, format!("no answer from {}: {why}", self.url))
                    }
                    Failure::Tls => Attempt::Done(ExportResult::Failed(format!(
                        "TLS with {} failed, not retried (it would fail again): {why}; a \
                         collector certificate signed by a private authority needs that \
                         authority's certificate (OTEL_EXPORTER_OTLP_CERTIFICATE), and a \
                         collector that asks for a client certificate needs one \
                         (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and _CLIENT_KEY)",
                        self.url
                    ))),
                    Failure::Local => Attempt::Done(ExportResult::Failed(format!(
                        "the request to {} could not be made, not retried (it would fail \
                         again): {why}",
                        self.url
                    ))),
                }
            }
        }
    }
}

impl Transport for HttpTransport {
    fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn attempts(&self) -> Option<AttemptStats> {
        Some(HttpTransport::attempts(self))
    }

    fn export(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult {
        self.export_attempts(request, deadline, self.retry.max_attempts)
    }

    /// One attempt: the pipeline's retry of a kept batch, which its own
    /// backoff paces.
    fn export_once(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult {
        self.export_attempts(request, deadline, 1)
    }
}

impl HttpTransport {
    /// [`Transport::export`] with at most `attempts` attempts (at least
    /// one), waiting the [`RetryPolicy`]'s backoff between them.
    fn export_attempts(
        &self,
        request: &EncodedRequest,
        deadline: Instant,
        attempts: u32,
    ) -> ExportResult {
        let compressed;
        let mut out = Outgoing {
            body: &request.body,
            encoding: request.encoding,
            gzip: false,
        };
        if self.compression == Compression::Gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            compressed = gz.write_all(&request.body).and_then(|()| gz.finish());
            match &compressed {
                // A body that does not shrink (random bytes, already
                // compressed data) is sent as it is: gzip's framing would
                // make it larger, and a request the encoder kept under
                // `MAX_REQUEST_BYTES` would go out over it.
                Ok(b) if b.len() < request.body.len() => {
                    out.body = b;
                    out.gzip = true;
                }
                Ok(_) => {}
                Err(e) => return ExportResult::Failed(format!("gzip: {e}")),
            }
        }
        let attempts = attempts.max(1);
        let mut backoff = self.retry.initial_backoff;
        let mut last = String::new();
        let mut last_after = None;
        for attempt in 0..attempts {
            if Instant::now() >= deadline {
                break;
            }
            if attempt > 0 {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
            }
            match self.attempt(&out, deadline) {
                Attempt::Done(result) => return result,
                Attempt::Retry(after, why) => {
                    last = why;
                    last_after = after.map(|a| a.min(MAX_RETRY_AFTER));
                    if attempt + 1 == attempts {
                        // No attempt follows: no wait. The `Retry-After`
                        // goes to the caller (a pipeline waits it before
                        // its next try), so it is waited once, not twice.
                        break;
                    }
                    // Every wait (the first too, and after the jitter) is
                    // at most `max_backoff`. A `Retry-After` of 0, or a
                    // date already past (a collector whose clock is
                    // behind), is not a licence to retry at once: never
                    // sooner than the backoff.
                    let wait = jitter(backoff)
                        .min(self.retry.max_backoff)
                        .max(last_after.unwrap_or(Duration::ZERO));
                    backoff = scale(backoff, self.retry.multiplier).min(self.retry.max_backoff);
                    let left = deadline.saturating_duration_since(Instant::now());
                    if wait >= left {
                        break; // the next attempt could not finish in time
                    }
                    std::thread::sleep(wait);
                }
            }
        }
        if last.is_empty() {
            // Nothing was tried: the deadline had passed when the export
            // was called. The pipeline gives each export its whole
            // `export_timeout` from that moment, so this is a timeout of
            // zero (documented to fail at once) or shutdown's deadline.
            return ExportResult::Failed(format!(
                "the export's deadline passed before a request to {} could be made",
                self.url
            ));
        }
        // Every way to get here is a retryable failure (no answer, or 429,
        // 502, 503, 504): the pipeline keeps the request and tries again
        // later, after `Retry-After` if the collector sent one.
        ExportResult::Retryable {
            reason: format!("gave up after retries: {last}"),
            retry_after: last_after,
        }
    }
}

/// ureq's connectors as its default chain has them (a `CONNECT` proxy,
/// TCP, rustls; the SOCKS and TLS-provider checks of that chain are not
/// needed: a SOCKS proxy is refused when the transport is built, and the
/// provider is rustls), with [`HearRefusal`] between TCP and TLS and
/// [`SeeStatus`] last.
fn connector() -> impl ureq::unversioned::transport::Connector {
    use ureq::unversioned::transport::{
        ConnectProxyConnector, Connector as _, RustlsConnector, TcpConnector,
    };
    ().chain(ConnectProxyConnector::default())
        .chain(TcpConnector::default())
        .chain(HearRefusal)
        .chain(RustlsConnector::default())
        .chain(SeeStatus)
}

thread_local! {
    /// The status of the final answer whose status line the request
    /// being sent on this thread has read ([`StatusSeen`]; ureq runs a
    /// request on the thread that sends it), `None` until one is.
    static STATUS_SEEN: std::cell::Cell<Option<u16>> = const { std::cell::Cell::new(None) };
}

/// Wraps each connection in [`StatusSeen`].
#[derive(Debug)]
struct SeeStatus;

impl<In: ureq::unversioned::transport::Transport> ureq::unversioned::transport::Connector<In>
    for SeeStatus
{
    type Out = StatusSeen<In>;

    fn connect(
        &self,
        _: &ureq::unversioned::transport::ConnectionDetails<'_>,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| StatusSeen {
            inner,
            posted: false,
        }))
    }
}

/// A connection (above TLS: it sees the answer as sent) that notes in
/// [`STATUS_SEEN`] the status of a final answer as soon as its status
/// line has arrived, before ureq parses the head: a head it then refuses
/// (a header over 64 KiB, a bad header name, a folded line, two
/// `Content-Length`s) still tells whether the collector took the request.
///
/// Only once a `POST` has gone out on it: a `CONNECT` proxy's connection
/// (made through the same chain) first carries the proxy's own answer to
/// `CONNECT`, which is not the collector's (and, for an `https`
/// collector, nothing but TLS records after it).
#[derive(Debug)]
struct StatusSeen<T> {
    inner: T,
    /// Whether a request of ours (a `POST`) has been written on it.
    posted: bool,
}

impl<T: ureq::unversioned::transport::Transport> ureq::unversioned::transport::Transport
    for StatusSeen<T>
{
    fn buffers(&mut self) -> &mut dyn ureq::unversioned::transport::Buffers {
        self.inner.buffers()
    }

    fn transmit_output(
        &mut self,
        amount: usize,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<(), ureq::Error> {
        if !self.posted {
            let output = self.inner.buffers().output();
            self.posted = output
                .get(..amount)
                .is_some_and(|o| o.starts_with(b"POST "));
        }
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(
        &mut self,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<bool, ureq::Error> {
        let got = self.inner.await_input(timeout);
        if self.posted
            && STATUS_SEEN.get().is_none()
            && let Some(status) = final_status(self.inner.buffers().input())
        {
            STATUS_SEEN.set(Some(status));
        }
        got
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// The status of the final answer at the start of `input` (the bytes of
/// the answer not yet taken), past any whole `1xx` answers before it, as
/// the client's parser (httparse) reads them: empty lines (`\r\n` or
/// `\n`) before a status line are skipped (RFC 9112 2.2), then
/// `HTTP/1.0` or `HTTP/1.1` (the only versions the parser takes), `NNN`
/// and a space or the line's end. `101` is final, as the client takes it
/// (not a 2xx: the export fails). A `1xx` answer's head
/// ends at its first empty line, however its lines end (`\r\n` or a bare
/// `\n`); nothing past the final answer's status line is looked at (its
/// body could hold anything). `None` while the final status line has not
/// (wholly) arrived, and for anything the parser would refuse before it:
/// a status under 100 (not an HTTP status), a bare CR in a `1xx` head.
fn final_status(input: &[u8]) -> Option<u16> {
    let mut at = input;
    loop {
        while let Some(rest) = at.strip_prefix(b"\r\n").or_else(|| at.strip_prefix(b"\n")) {
            at = rest;
        }
        let rest = at.strip_prefix(b"HTTP/1.")?;
        let (code, after) = rest.get(2..5).zip(rest.get(5))?;
        if !matches!(rest[0], b'0' | b'1')
            || rest[1] != b' '
            || !code.iter().all(u8::is_ascii_digit)
            || !matches!(after, b' ' | b'\r' | b'\n')
        {
            return None;
        }
        let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        match status {
            101 | 200.. => return Some(status),
            100..=199 => at = &at[head_end(at)?..],
            _ => return None,
        }
    }
}

/// Where the head at the start of `input` ends: just past its first
/// empty line (a line end, `\r\n` or `\n`, straight after another: the
/// earliest of `\r\n\r\n`, `\n\n`, `\r\n\n`, `\n\r\n`). `None` while it
/// has not arrived, or where a CR is not followed by LF (which the parser
/// refuses).
fn head_end(input: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' if input.get(i + 1) != Some(&b'\n') => return None,
            b'\n' => match &input[i + 1..] {
                [b'\n', ..] => return Some(i + 2),
                [b'\r', b'\n', ..] => return Some(i + 3),
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    None
}

/// Wraps each connection in [`HeardTransport`].
#[derive(Debug)]
struct HearRefusal;

impl<In: ureq::unversioned::transport::Transport> ureq::unversioned::transport::Connector<In>
    for HearRefusal
{
    type Out = HeardTransport<In>;

    fn connect(
        &self,
        _: &ureq::unversioned::transport::ConnectionDetails<'_>,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| HeardTransport { inner, cut: None }))
    }
}

/// A connection on which a collector's answer to an upload it cut short is
/// still read, as curl and Go's client read it.
///
/// A collector that stops reading a body over its limit part-way (Go's
/// `http.MaxBytesReader`, as the OpenTelemetry Collector's
/// `max_request_body_size` uses it) answers `413`, closes, and the unread
/// body makes the close a reset: the client's next write fails with a
/// reset or broken pipe, and ureq returns that error, the `413` already
/// waiting unread in the socket. Here a write that fails so is taken as
/// sent (the rest of the request is dropped, never sent), and the
/// connection is read: the collector's answer, if it sent one, is the
/// attempt's outcome (a `413` fails the export at once, not retried). If
/// there is no answer to read, the write's own error is returned, a
/// connection failure as before. A connection whose write failed is
/// never reused.
#[derive(Debug)]
struct HeardTransport<T> {
    inner: T,
    /// The error of the write that failed, once one has.
    cut: Option<std::io::Error>,
}

impl<T: ureq::unversioned::transport::Transport> ureq::unversioned::transport::Transport
    for HeardTransport<T>
{
    fn buffers(&mut self) -> &mut dyn ureq::unversioned::transport::Buffers {
        self.inner.buffers()
    }

    fn transmit_output(
        &mut self,
        amount: usize,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<(), ureq::Error> {
        if self.cut.is_some() {
            return Ok(()); // the collector stopped reading: dropped
        }
        match self.inner.transmit_output(amount, timeout) {
            Err(ureq::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                self.cut = Some(e);
                Ok(())
            }
            other => other,
        }
    }

    fn await_input(
        &mut self,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<bool, ureq::Error> {
        let got = self.inner.await_input(timeout);
        if self.cut.is_some() && !matches!(got, Ok(true)) {
            // Nothing (more) to read after a cut upload: the write's error
            // says what happened better than the read's.
            if let Some(e) = self.cut.take() {
                return Err(ureq::Error::Io(e));
            }
        }
        got
    }

    fn is_open(&mut self) -> bool {
        self.cut.is_none() && self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// What an error from the client says about trying again.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// No answer (refused, reset, timed out, name not found, a broken
    /// answer): it may work later.
    Transient,
    /// TLS failed: the collector's certificate is not trusted (or not for
    /// this host, or expired), it refused ours, or it does not speak TLS.
    /// Configuration, on one side or the other: the same again next time.
    Tls,
    /// The request could not be made at all (a header or URL the client
    /// refuses, a bad proxy setting): the same again next time.
    Local,
}

fn classify(e: &ureq::Error) -> Failure {
    use ureq::Error as E;
    match e {
        E::Tls(_) | E::Pem(_) | E::Rustls(_) => Failure::Tls,
        // rustls reports a failed handshake (a certificate not trusted,
        // an alert from the server) through the socket's `io::Error`.
        E::Io(io) if io.get_ref().is_some_and(|inner| caused_by_rustls(inner)) => Failure::Tls,
        E::Http(_) | E::BadUri(_) | E::InvalidProxyUrl | E::BodyExceedsLimit(_) => Failure::Local,
        _ => Failure::Transient,
    }
}

/// Whether `e`, or an error it wraps, is a `rustls::Error`.
fn caused_by_rustls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(e) = at {
        if e.is::<rustls::Error>() {
            return true;
        }
        at = e.source();
    }
    false
}

/// `d` scaled by a random factor in [0.5, 1.5).
fn jitter(d: Duration) -> Duration {
    let r = (crate::id::random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    scale(d, 0.5 + r)
}

/// `d * factor`, saturating: any [`RetryPolicy`] is usable, whatever its
/// numbers (a negative or NaN factor gives zero, an overflow the longest
/// duration; `Duration::mul_f64` would panic on either).
fn scale(d: Duration, factor: f64) -> Duration {
    let secs = d.as_secs_f64() * factor;
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

/// The message of an export answered with a redirect, which is never
/// followed. The `Location` is shown escaped and cut to 200 characters.
fn redirect_refused(status: u16, url: &str, location: Option<&str>) -> String {
    let location = match location {
        Some(l) => {
            let mut shown: String = l.chars().take(200).collect();
            if shown.len() < l.len() {
                shown.push_str("...");
            }
            format!("{shown:?}")
        }
        None => "no Location".to_owned(),
    };
    format!(
        "HTTP {status} redirect from {url} to {location} refused: the exporter never follows \
         redirects (they would carry the request and its headers elsewhere); \
         configure the final URL as the endpoint"
    )
}

/// `Retry-After`: delay-seconds, or an HTTP-date (IMF-fixdate).
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` into seconds since the Unix epoch.
fn parse_http_date(v: &str) -> Option<u64> {
    // RFC 9110 5.6.7: recipients accept the IMF-fixdate
    // (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete forms, RFC 850
    // (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
    // (`Sun Nov  6 08:49:37 1994`).
    let parts: Vec<&str> = v.split_whitespace().collect();
    let (day, month, year, time) = match parts.as_slice() {
        [_, d, mo, y, t, "GMT"] => (*d, *mo, y.parse::<i64>().ok()?, *t),
        [_, dmy, t, "GMT"] => {
            let mut dmy = dmy.split('-');
            let (d, mo, yy) = (dmy.next()?, dmy.next()?, dmy.next()?);
            if dmy.next().is_some() || yy.len() != 2 {
                return None;
            }
            // Two-digit years: 70-99 are 19xx, the rest 20xx (RFC 9110 asks
            // for the most recent year with those digits not more than 50
            // years ahead; within this century the two agree).
            let yy: i64 = yy.parse().ok()?;
            (d, mo, if yy >= 70 { 1900 + yy } else { 2000 + yy }, *t)
        }
        [_, mo, d, t, y] => (*d, *mo, y.parse::<i64>().ok()?, *t),
        _ => return None,
    };
    let day: u64 = day.parse().ok()?;
    let month = match month {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    // Four-digit years only: no arithmetic below can overflow.
    if !(1970..=9999).contains(&year) {
        return None;
    }
    let mut hms = time.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || day == 0 || day > 31 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + s)
}

/// `ExportTraceServiceResponse.partial_success`: (rejected_spans,
/// error_message), if the body carries it. `rejected_spans` is an `int64`:
/// a negative value (a receiver's bug) reads as 0, as does a JSON value
/// that is not a whole number (`null`, `1.5`, `"x"`; `3e0` and `3.0` are
/// 3, as the protobuf JSON mapping reads them); nothing in the message
/// is ever read as a count. A protobuf `partial_success` given more than
/// once is merged, as protobuf merges it.
/// `cut`: the answer was longer than [`MAX_RESPONSE_BODY`] and `body` is its
/// start. Then what the start holds is read (the rejected count comes first
/// in either encoding, as encoders write fields in order; the message is
/// cut), rather than nothing: ignored, a long `error_message` made rejected
/// spans count as exported.
fn partial_success(body: &[u8], encoding: Encoding, cut: bool) -> Option<(u64, String)> {
    match encoding {
        Encoding::Protobuf => {
            // An embedded message given more than once is merged, as
            // protobuf parses it: each field's last value on the wire
            // wins (the count from a later `partial_success` that has one,
            // else from an earlier). Only the last can be cut short.
            let all = proto_fields(body, 1, cut)?;
            let last = all.len().checked_sub(1)?;
            let (mut rejected, mut message) = (0, String::new());
            for (i, ps) in all.into_iter().enumerate() {
                let cut = cut && i == last;
                if let Some(v) = proto_varint_field(ps, 1, cut) {
                    rejected = (v as i64).max(0) as u64;
                }
                if let Some(m) = proto_field(ps, 2, cut) {
                    message = String::from_utf8_lossy(m).into_owned();
                }
            }
            Some((rejected, message))
        }
        Encoding::Json => json_partial_success(body, cut),
    }
}

/// `{"partialSuccess":{"rejectedSpans":"3","errorMessage":"..."}}`, read by
/// a small JSON scanner: keys are matched only at their own level, other
/// values are skipped without recursion.
fn json_partial_success(body: &[u8], cut: bool) -> Option<(u64, String)> {
    let mut j = Json { b: body, at: 0 };
    let mut found = None;
    // The rejected count as soon as it is read: a cut answer ends inside
    // the object (in a long message), and what came before still counts.
    let mut seen = None;
    let whole = j.object(|j, key| {
        if key == "partialSuccess" && j.peek() == Some(b'{') {
            let (mut rejected, mut message) = (0, String::new());
            j.object(|j, key| {
                match key.as_str() {
                    "rejectedSpans" => {
                        rejected = j.int64().map_or(0, |v| v.max(0) as u64);
                        seen = Some(rejected);
                    }
                    "errorMessage" => message = j.string().unwrap_or_default(),
                    _ => j.skip()?,
                }
                Some(())
            })?;
            found = Some((rejected, message));
            Some(())
        } else {
            j.skip()
        }
    });
    match whole {
        Some(()) => found,
        None if cut => seen.map(|rejected| (rejected, String::new())),
        None => None,
    }
}

/// Just enough JSON to read a partial success.
struct Json<'a> {
    b: &'a [u8],
    at: usize,
}

impl Json<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.at += 1)
    }

    /// `{ "key": value, ... }`, calling `f` with each key; `f` must read
    /// or skip the value.
    fn object(&mut self, mut f: impl FnMut(&mut Self, String) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            f(self, key)?;
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }

    /// A string literal, unescaped (`\u` escapes of surrogates become
    /// U+FFFD).
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = *self.b.get(self.at)?;
            self.at += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let e = *self.b.get(self.at)?;
                    self.at += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex =
                                std::str::from_utf8(self.b.get(self.at..self.at + 4)?).ok()?;
                            self.at += 4;
                            char::from_u32(u32::from_str_radix(hex, 16).ok()?)
                                .unwrap_or(char::REPLACEMENT_CHARACTER)
                        }
                        _ => return None,
                    };
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
                c => out.push(c),
            }
        }
    }

    /// An `int64` as the protobuf JSON mapping reads it: a number or a
    /// string holding one, whole but in any JSON number form (`3`, `"3"`,
    /// `3e0`, `3.0`, `0.3e1`; [`json_integer`]). `None` (after skipping
    /// the value) for anything else.
    fn int64(&mut self) -> Option<i64> {
        if self.peek()? == b'"' {
            return json_integer(&self.string()?);
        }
        let start = self.at;
        self.skip()?;
        json_integer(std::str::from_utf8(&self.b[start..self.at]).ok()?.trim())
    }

    /// Skips one value of any depth, iteratively.
    fn skip(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    self.at += 1;
                    depth += 1;
                    continue;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.at += 1;
                }
                b',' | b':' if depth > 0 => {
                    self.at += 1;
                    continue;
                }
                _ => {
                    let start = self.at;
                    while self
                        .b
                        .get(self.at)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
                    {
                        self.at += 1;
                    }
                    if self.at == start {
                        return None;
                    }
                }
            }
            if depth == 0 {
                return Some(());
            }
        }
    }
}

/// A JSON number (RFC 8259: `-`, digits, `.digits`, `e` or `E`, a sign,
/// digits) that is a whole number fitting an `i64`, as the protobuf JSON
/// mapping accepts an integer field (`3e0`, `3.0`, `300e-2` are 3);
/// `None` for a fraction (`1.5`), one out of range, or not a number.
fn json_integer(s: &str) -> Option<i64> {
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        None => (rest, 0i64),
        Some((m, e)) => {
            let (sign, e) = match e.as_bytes().first() {
                Some(b'-') => (-1, &e[1..]),
                Some(b'+') => (1, &e[1..]),
                _ => (1, e),
            };
            if !digits(e) {
                return None;
            }
            // A longer exponent is out of range whatever the digits.
            (m, sign * e.parse::<i64>().ok().filter(|e| *e < 1000)?)
        }
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) if digits(frac) => (int, frac),
        Some(_) => return None,
        None => (mantissa, ""),
    };
    if !digits(int) {
        return None;
    }
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    // The value is `significant` times ten to `shift`.
    let shift = exponent - frac.len() as i64;
    let whole = if shift < 0 {
        let cut = usize::try_from(-shift).ok()?;
        let keep = significant.len().checked_sub(cut);
        match keep {
            // Every digit cut must be zero.
            Some(keep) if significant[keep..].bytes().all(|b| b == b'0') => &significant[..keep],
            _ if significant.is_empty() => "",
            _ => return None,
        }
        .to_owned()
    } else {
        let zeros = usize::try_from(shift).ok()?;
        if significant.len() + zeros > 20 {
            return None;
        }
        format!(
            "{significant}{}",
            "0".repeat(if significant.is_empty() { 0 } else { zeros })
        )
    };
    if whole.len() > 20 {
        return None;
    }
    let magnitude: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

fn read_varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Walks a protobuf message, calling `f(field, wire, value-or-bytes)`.
/// `cut`: `buf` is the start of a longer message; the walk ends where it
/// does, a length-delimited field running past the end given as far as it
/// goes.
fn proto_walk<'a>(
    buf: &'a [u8],
    cut: bool,
    mut f: impl FnMut(u64, u64, u64, &'a [u8]),
) -> Option<()> {
    let mut at = 0;
    while at < buf.len() {
        let Some(key) = read_varint(buf, &mut at) else {
            return cut.then_some(());
        };
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let Some(v) = read_varint(buf, &mut at) else {
                    return cut.then_some(());
                };
                f(field, wire, v, &[]);
            }
            1 => at += 8,
            2 => {
                let Some(len) = read_varint(buf, &mut at) else {
                    return cut.then_some(());
                };
                let len = usize::try_from(len).ok()?;
                let end = at.checked_add(len)?;
                let Some(bytes) = buf.get(at..end) else {
                    if cut {
                        f(field, wire, 0, &buf[at.min(buf.len())..]);
                        return Some(());
                    }
                    return None;
                };
                at = end;
                f(field, wire, 0, bytes);
            }
            5 => at += 4,
            _ => return None,
        }
    }
    Some(())
}

fn proto_field(buf: &[u8], field: u64, cut: bool) -> Option<&[u8]> {
    let mut found = None;
    proto_walk(buf, cut, |f, w, _, b| {
        if f == field && w == 2 {
            found = Some(b);
        }
    })?;
    found
}

/// Every occurrence of a length-delimited `field`, in order.
fn proto_fields(buf: &[u8], field: u64, cut: bool) -> Option<Vec<&[u8]>> {
    let mut found = Vec::new();
    proto_walk(buf, cut, |f, w, _, b| {
        if f == field && w == 2 {
            found.push(b);
        }
    })?;
    Some(found)
}

fn proto_varint_field(buf: &[u8], field: u64, cut: bool) -> Option<u64> {
    let mut found = None;
    proto_walk(buf, cut, |f, w, v, _| {
        if f == field && w == 0 {
            found = Some(v);
        }
    })?;
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_http_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        // The obsolete forms RFC 9110 asks recipients to accept too.
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37:01 GMT"), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "past dates: now"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn a_cut_answer_gives_what_its_start_holds_and_only_then() {
        // partial_success { rejected_spans: 3, error_message: "bad..." },
        // cut inside the message.
        let body = [0x0a, 0x20, 0x08, 0x03, 0x12, 0x1c, b'b', b'a', b'd'];
        assert_eq!(
            partial_success(&body, Encoding::Protobuf, true),
            Some((3, "bad".into()))
        );
        assert_eq!(partial_success(&body, Encoding::Protobuf, false), None);
        // Cut inside the count's varint: nothing is known.
        let early = [0x0a, 0x20, 0x08, 0x83];
        assert_eq!(
            partial_success(&early, Encoding::Protobuf, true),
            Some((0, String::new()))
        );
        let json = br#"{"partialSuccess":{"rejectedSpans":"12","errorMessage":"xxx"#;
        assert_eq!(
            partial_success(json, Encoding::Json, true),
            Some((12, String::new()))
        );
        assert_eq!(partial_success(json, Encoding::Json, false), None);
        // Cut before the count: no count.
        let json = br#"{"partialSuccess":{"errorMessage":"xxx"#;
        assert_eq!(partial_success(json, Encoding::Json, true), None);
    }

    #[test]
    fn partial_success_is_read_from_protobuf_and_json() {
        // partial_success { rejected_spans: 3, error_message: "bad" }
        let body = [0x0a, 0x07, 0x08, 0x03, 0x12, 0x03, b'b', b'a', b'd'];
        assert_eq!(
            partial_success(&body, Encoding::Protobuf, false),
            Some((3, "bad".into()))
        );
        assert_eq!(partial_success(&[], Encoding::Protobuf, false), None);
        let json = br#"{"partialSuccess":{"rejectedSpans":"12","errorMessage":"x"}}"#;
        assert_eq!(
            partial_success(json, Encoding::Json, false),
            Some((12, "x".into()))
        );
        assert_eq!(partial_success(b"{}", Encoding::Json, false), None);
    }

    #[test]
    fn json_partial_success_is_parsed_not_searched() {
        let ps = |body: &str| partial_success(body.as_bytes(), Encoding::Json, false);
        // The issue's case: a null count and a number in the message.
        assert_eq!(
            ps(r#"{"partialSuccess":{"rejectedSpans":null,"errorMessage":"3 spans too old"}}"#),
            Some((0, "3 spans too old".into()))
        );
        assert_eq!(
            ps(r#"{"partialSuccess":{"errorMessage":"rejectedSpans: 7"}}"#),
            Some((0, "rejectedSpans: 7".into()))
        );
        // Numbers and strings, whitespace, escapes, key order, other keys.
        assert_eq!(
            ps(
                " { \"other\" : [1, {\"rejectedSpans\": 99}] , \"partialSuccess\" : \
                 { \"errorMessage\" : \"a\\\"b\\u00e9\" , \"rejectedSpans\" : 4 } } "
            ),
            Some((4, "a\"bé".into()))
        );
        // Negative, fractional, huge or odd counts are not counts.
        for v in [
            "-5",
            "\"-5\"",
            "1.5",
            "true",
            "\"x\"",
            "{}",
            "[]",
            "99999999999999999999",
        ] {
            let body = format!(r#"{{"partialSuccess":{{"rejectedSpans":{v}}}}}"#);
            assert_eq!(ps(&body), Some((0, String::new())), "{v}");
        }
        // A key nested elsewhere is not the partial success.
        assert_eq!(ps(r#"{"x":{"partialSuccess":{"rejectedSpans":3}}}"#), None);
        // Malformed bodies are no partial success (the 2xx stands).
        for bad in [
            "",
            "{",
            "{\"partialSuccess\":",
            "[1,2]",
            "{\"a\":}",
            "\u{0}",
        ] {
            assert_eq!(ps(bad), None, "{bad:?}");
        }
        // Deep nesting is skipped without recursion.
        let deep = format!(
            "{{\"x\":{}{}}}",
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        );
        assert_eq!(ps(&deep), None);
    }

    #[test]
    fn a_negative_protobuf_count_is_no_rejection() {
        // partial_success { rejected_spans: -1 } (int64 as a 10-byte varint)
        let mut body = vec![0x0a, 11, 0x08];
        body.extend_from_slice(&[0xff; 9]);
        body.push(0x01);
        assert_eq!(
            partial_success(&body, Encoding::Protobuf, false),
            Some((0, String::new()))
        );
    }

    #[test]
    fn hostile_retry_after_values_neither_panic_nor_wait_long() {
        for v in [
            "Sun, 06 Nov 99999999999999 08:49:37 GMT",
            "Sun, 06 Nov -99999999999999 08:49:37 GMT",
            "Sun, 99999999999999999999 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 99999999999:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(v), None, "{v}");
        }
        assert_eq!(
            parse_retry_after("18446744073709551615"),
            Some(Duration::from_secs(u64::MAX)),
            "read as it is; the caller caps it at MAX_RETRY_AFTER"
        );
        assert!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT").is_some());
    }

    #[test]
    fn any_retry_policy_numbers_are_usable() {
        assert_eq!(scale(Duration::MAX, 1.5), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(1), f64::NAN), Duration::ZERO);
        assert_eq!(scale(Duration::from_secs(1), -2.0), Duration::ZERO);
        assert_eq!(scale(Duration::from_secs(1), f64::INFINITY), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(2), 0.5), Duration::from_secs(1));
        let j = jitter(Duration::MAX);
        assert!(j >= Duration::MAX / 2);
    }

    #[test]
    fn header_values_with_control_characters_are_refused_at_build() {
        let net = || runtime_cap::NetAccess::from_ambient(runtime_cap::ambient_authority());
        for v in ["a\nb", "a\r\nx-injected: 1", "nul\0", "del\u{7f}", "\r"] {
            let err = HttpTransport::builder(net())
                .header("api-key", v)
                .build_with(|_| None)
                .unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("api-key") && text.contains("control character"),
                "{text}"
            );
            assert!(!text.contains(v), "the value stays hidden: {text}");
        }
        let err = HttpTransport::builder(net())
            .build_with(|k| {
                (k == "OTEL_EXPORTER_OTLP_HEADERS").then(|| "a=1,api-key=SECRET%0Ax".to_owned())
            })
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("OTEL_EXPORTER_OTLP_HEADERS") && text.contains("entry 2"),
            "{text}"
        );
        assert!(!text.contains("SECRET"), "{text}");
        // Tabs, non-ASCII and empty values are legal.
        let t = HttpTransport::builder(net())
            .header("x-a", "tab\there")
            .header("x-b", "café")
            .header("x-c", "")
            .build_with(|_| None)
            .unwrap();
        assert_eq!(t.headers.len(), 3);
        for name in ["", "bad name", "x:y", "é"] {
            assert!(
                HttpTransport::builder(net())
                    .header(name, "v")
                    .build_with(|_| None)
                    .is_err(),
                "{name:?}"
            );
        }
    }

    fn net() -> runtime_cap::NetAccess {
        runtime_cap::NetAccess::from_ambient(runtime_cap::ambient_authority())
    }

    #[test]
    fn user_information_is_percent_decoded_into_basic_auth_and_taken_off_the_url() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"us@er:p/ss"), "dXNAZXI6cC9zcw==");
        // Found by review: `us%40er:p%2Fss` was sent as typed.
        let t = HttpTransport::builder(net())
            .endpoint("http://us%40er:p%2Fss@h:4318/p")
            .build_with(|_| None)
            .unwrap();
        assert_eq!(t.basic_auth.as_deref(), Some("Basic dXNAZXI6cC9zcw=="));
        assert_eq!(t.wire_url, "http://h:4318/p/v1/traces");
        assert_eq!(t.url(), "http://us%40er:***@h:4318/p/v1/traces");
        assert!(!format!("{t:?}").contains("p%2Fss"), "{t:?}");
        // A token alone is `token:`; UTF-8 is decoded; a `:` in the password.
        assert_eq!(basic_credentials("tok").as_deref(), Some("Basic dG9rOg=="));
        assert_eq!(
            basic_credentials("%C3%A9:a:b").as_deref(),
            Some(format!("Basic {}", base64("é:a:b".as_bytes())).as_str())
        );
        // A user's Authorization header wins.
        let t = HttpTransport::builder(net())
            .traces_endpoint("http://u:p@h/t")
            .header("AUTHORIZATION", "Bearer x")
            .build_with(|_| None)
            .unwrap();
        assert_eq!(t.basic_auth, None);
        assert_eq!(t.wire_url, "http://h/t");
        // A bad escape is refused, its password hidden.
        for bad in ["http://u:p%zz@h", "http://u%4@h", "http://u:%FF@h"] {
            let err = HttpTransport::builder(net())
                .endpoint(bad)
                .build_with(|_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("percent-encoding"), "{bad}: {err}");
            assert!(!err.contains("%zz") && !err.contains("%FF"), "{err}");
        }
        assert_eq!(
            split_userinfo("http://a:b@c@h:1/x@y?q=@"),
            ("http://h:1/x@y?q=@".to_owned(), Some("a:b@c"))
        );
        assert_eq!(
            split_userinfo("http://h/x@y"),
            ("http://h/x@y".into(), None)
        );
    }

    #[test]
    fn only_a_port_may_follow_a_bracketed_ipv6_host() {
        let url = |e: &str| {
            HttpTransport::builder(net())
                .endpoint(e)
                .build_with(|_| None)
                .map(|t| t.url().to_owned())
        };
        assert_eq!(
            url("http://[::1]:4318").unwrap(),
            "http://[::1]:4318/v1/traces"
        );
        assert_eq!(url("http://[::1]").unwrap(), "http://[::1]/v1/traces");
        assert_eq!(
            url("http://u:p@[::1]:1/x").unwrap(),
            "http://u:***@[::1]:1/x/v1/traces"
        );
        // Found by review: `[::1]x:PORT` was sent to `[::1]:PORT`.
        for bad in [
            "http://[::1]x:4318",
            "http://[::1]x",
            "http://[::1]:",
            "http://[::1]:x",
            "http://[::1",
        ] {
            let err = url(bad).unwrap_err().to_string();
            assert!(err.contains("IPv6") || err.contains("port"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_header_name_http_cannot_carry_is_refused_at_build() {
        // Found by review: a name of 64 KiB or more passed build, then
        // failed every export as a retryable "connection failure".
        let long = "a".repeat(70_000);
        let err = HttpTransport::builder(net())
            .header(long.as_str(), "v")
            .build_with(|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("too long"), "{}", &err[err.len() - 200..]);
        let err = HttpTransport::builder(net())
            .build_with(|k| (k == "OTEL_EXPORTER_OTLP_HEADERS").then(|| format!("{long}=v")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_HEADERS") && err.contains("too long"),
            "{err}"
        );
        // A long value is fine.
        assert!(
            HttpTransport::builder(net())
                .header("x-long", long.as_str())
                .build_with(|_| None)
                .is_ok()
        );
    }

    #[test]
    fn client_errors_that_would_recur_are_final_and_tls_ones_too() {
        let io = |kind, inner: Option<rustls::Error>| {
            ureq::Error::Io(match inner {
                Some(e) => std::io::Error::new(kind, e),
                None => std::io::Error::from(kind),
            })
        };
        use std::io::ErrorKind as K;
        let unknown_issuer =
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            classify(&io(K::InvalidData, Some(unknown_issuer))),
            Failure::Tls
        );
        assert_eq!(
            classify(&io(
                K::InvalidData,
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::BadCertificate
                ))
            )),
            Failure::Tls
        );
        assert_eq!(classify(&ureq::Error::Tls("x")), Failure::Tls);
        assert_eq!(
            classify(&io(K::ConnectionRefused, None)),
            Failure::Transient
        );
        assert_eq!(classify(&io(K::ConnectionReset, None)), Failure::Transient);
        assert_eq!(classify(&ureq::Error::HostNotFound), Failure::Transient);
        assert_eq!(classify(&ureq::Error::ConnectionFailed), Failure::Transient);
        let bad_name = ureq::http::HeaderName::from_bytes(b"a b").unwrap_err();
        assert_eq!(
            classify(&ureq::Error::Http(ureq::http::Error::from(bad_name))),
            Failure::Local
        );
        assert_eq!(classify(&ureq::Error::BadUri("x".into())), Failure::Local);
    }

    #[test]
    fn the_proxy_is_chosen_by_scheme_never_for_loopback_and_no_proxy_is_honoured() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &'static str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = env(&[
            ("HTTP_PROXY", "http://p-http:1"),
            ("HTTPS_PROXY", "http://p-https:2"),
            ("ALL_PROXY", "http://p-all:3"),
        ]);
        let chosen = |https, host: &str, e: &dyn Fn(&'static str) -> Option<String>| {
            choose_proxy(https, host, 4318, &e).map(|(var, _)| var)
        };
        assert_eq!(chosen(false, "collector", &all), Some("HTTP_PROXY"));
        assert_eq!(chosen(true, "collector", &all), Some("HTTPS_PROXY"));
        // Found by review: HTTPS_PROXY captured plain http.
        let https_only = env(&[("HTTPS_PROXY", "http://p:2"), ("https_proxy", "http://p:2")]);
        assert_eq!(chosen(false, "collector", &https_only), None);
        assert_eq!(chosen(true, "collector", &https_only), Some("HTTPS_PROXY"));
        let lower = env(&[("http_proxy", "http://p:1")]);
        assert_eq!(chosen(false, "collector", &lower), Some("http_proxy"));
        let all_only = env(&[("all_proxy", "http://p:3")]);
        assert_eq!(chosen(false, "c", &all_only), Some("all_proxy"));
        assert_eq!(chosen(true, "c", &all_only), Some("all_proxy"));
        // Loopback: never.
        for host in [
            "localhost",
            "LOCALHOST",
            "a.localhost",
            "127.0.0.1",
            "127.9.8.7",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]",
            "localhost.",
        ] {
            assert_eq!(chosen(false, host, &all), None, "{host}");
            assert_eq!(chosen(true, host, &all), None, "{host}");
        }
        assert_eq!(chosen(false, "128.0.0.1", &all), Some("HTTP_PROXY"));
        assert_eq!(chosen(false, "localhostx", &all), Some("HTTP_PROXY"));
        // NO_PROXY.
        let no = |list: &str, host: &str, port: u16| no_proxy_matches(list, host, port);
        assert!(no("*", "anything", 1));
        assert!(no("a.com, example.com", "example.com", 1));
        assert!(no("example.com", "sub.example.com", 1));
        assert!(no(".example.com", "example.com", 1));
        assert!(no("*.example.com", "x.y.example.com", 1));
        assert!(no("EXAMPLE.com", "example.com", 1));
        assert!(!no("example.com", "badexample.com", 1));
        assert!(!no("ample.com", "example.com", 1));
        assert!(no("example.com:4318", "example.com", 4318));
        assert!(!no("example.com:4318", "example.com", 4317));
        assert!(no("10.1.2.3", "10.1.2.3", 1));
        assert!(!no("10.1.2.3", "10.1.2.4", 1));
        assert!(no("10.0.0.0/8", "10.200.0.1", 1));
        assert!(!no("10.0.0.0/8", "11.0.0.1", 1));
        assert!(no("0.0.0.0/0", "1.2.3.4", 1));
        assert!(no("fd00::/8", "fd12::1", 1));
        assert!(no("::2", "::2", 1));
        assert!(no("[::2]:80", "::2", 80));
        assert!(!no("[::2]:80", "::2", 81));
        assert!(
            !no("0.1", "10.0.0.1", 1),
            "a domain entry never matches an IP"
        );
        assert!(!no("", "h", 1));
        assert!(!no(" , ,", "h", 1));
        assert!(!no("10.0.0.0/99", "10.0.0.1", 1));
        let with_no = env(&[
            ("HTTP_PROXY", "http://p:1"),
            ("no_proxy", "corp.example,10.0.0.0/8"),
        ]);
        assert_eq!(chosen(false, "otel.corp.example", &with_no), None);
        assert_eq!(chosen(false, "10.3.3.3", &with_no), None);
        assert_eq!(chosen(false, "elsewhere", &with_no), Some("HTTP_PROXY"));
        // A bad or SOCKS proxy is an error naming the variable, the
        // password hidden; only when it would be used.
        let socks = env(&[("ALL_PROXY", "socks5://u:secret@p:1080")]);
        let err = HttpTransport::builder(net())
            .endpoint("http://collector:4318")
            .build_with(socks)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ALL_PROXY") && err.contains("SOCKS") && !err.contains("secret"),
            "{err}"
        );
        let t = HttpTransport::builder(net())
            .endpoint("http://127.0.0.1:4318")
            .build_with(socks)
            .unwrap();
        assert!(format!("{t:?}").contains("proxy: None"), "{t:?}");
        let t = HttpTransport::builder(net())
            .endpoint("http://collector:4318")
            .build_with(env(&[("HTTP_PROXY", "http://u:secret@proxy:3128")]))
            .unwrap();
        let shown = format!("{t:?}");
        assert!(
            shown.contains("proxy:3128") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn certificate_files_are_read_and_checked_at_build() {
        let dir = std::env::temp_dir().join(format!("otlp-http-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let support = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/tls/");
        let file = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let not_pem = file("not.pem", "hello");
        let bad_pem = file(
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        );
        let not_x509 = file(
            "notx509.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        );
        let missing = dir.join("missing.pem").display().to_string();
        let ca = format!("{support}ca.pem");
        let cert = format!("{support}client.pem");
        let key = format!("{support}client.key");
        let other_key = format!("{support}server.key");
        let fs = runtime_cap::FsAccess::from_ambient(runtime_cap::ambient_authority());
        let build = |vars: Vec<(&'static str, String)>| {
            HttpTransport::builder(net())
                .endpoint("https://127.0.0.1:4318")
                .filesystem(fs)
                .build_with(move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        };
        // Without file-system access, a configuration that names a PEM
        // file is refused before any file is read.
        let no_fs = HttpTransport::builder(net())
            .endpoint("https://127.0.0.1:4318")
            .build_with(|k| (k == "OTEL_EXPORTER_OTLP_CERTIFICATE").then(|| ca.clone()));
        assert_eq!(no_fs.unwrap_err(), ConfigError::NoCertificateFileAccess);
        for (var, path, why) in [
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing, "no such file"),
            (
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                &not_pem,
                "no PEM certificate",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                &bad_pem,
                "malformed",
            ),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &not_x509, "X.509"),
        ] {
            let err = build(vec![(var, path.clone())]).unwrap_err().to_string();
            assert!(
                err.contains(var) && err.contains(why),
                "{var}={path}: {err}"
            );
        }
        assert!(build(vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.clone())]).is_ok());
        // The traces variable wins over the general one.
        assert!(
            build(vec![
                ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca.clone()),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", missing.clone()),
            ])
            .is_ok()
        );
        // Client certificate and key: both or neither, and a pair.
        assert!(
            build(vec![
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert.clone()),
                ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", key.clone()),
            ])
            .is_ok()
        );
        let err = build(vec![(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            cert.clone(),
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs its private key"), "{err}");
        let err = build(vec![("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.clone())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs its certificate"), "{err}");
        let err = build(vec![
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert.clone()),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", other_key),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY")
                && err.contains("not the client certificate's"),
            "{err}"
        );
        let err = build(vec![
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert.clone()),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", ca.clone()),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("no PEM private key"), "{err}");
        // The builder wins over the environment, and names its setting.
        let err = HttpTransport::builder(net())
            .certificate(&missing)
            .filesystem(fs)
            .build_with(|k| (k == "OTEL_EXPORTER_OTLP_CERTIFICATE").then(|| ca.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`certificate`") && err.contains("no such file"),
            "{err}"
        );
        assert!(
            HttpTransport::builder(net())
                .certificate(&ca)
                .client_certificate(&cert)
                .client_key(&key)
                .filesystem(fs)
                .build_with(|_| None)
                .is_ok()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn enum_values_and_schemes_are_case_insensitive() {
        let net = || runtime_cap::NetAccess::from_ambient(runtime_cap::ambient_authority());
        let t = HttpTransport::builder(net())
            .build_with(|k| match k {
                "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("HTTP/JSON".into()),
                "OTEL_EXPORTER_OTLP_COMPRESSION" => Some("GZIP".into()),
                "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("HTTP://Collector:4318".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            (t.encoding, t.compression),
            (Encoding::Json, Compression::Gzip)
        );
        assert_eq!(t.url(), "http://Collector:4318/v1/traces");
        let t = HttpTransport::builder(net())
            .build_with(|k| match k {
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" => Some("Http/Protobuf".into()),
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION" => Some("None".into()),
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some("HtTpS://h/x".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            (t.encoding, t.compression),
            (Encoding::Protobuf, Compression::None)
        );
        assert_eq!(t.url(), "https://h/x");
        // A bad value names the variable it came from.
        let err = HttpTransport::builder(net())
            .build_with(|k| (k == "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").then(|| "grpc".into()))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            "{err}"
        );
        for bad in ["ftp://h", "h:4318", "http//h", "httpx://h"] {
            assert!(
                HttpTransport::builder(net())
                    .endpoint(bad)
                    .build_with(|_| None)
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_signal_path_goes_before_the_query_and_fragments_are_refused() {
        let net = || runtime_cap::NetAccess::from_ambient(runtime_cap::ambient_authority());
        let url = |e: &str| {
            HttpTransport::builder(net())
                .endpoint(e)
                .build_with(|_| None)
                .map(|t| t.url().to_owned())
        };
        assert_eq!(
            url("http://h:4318/prefix?x=1").unwrap(),
            "http://h:4318/prefix/v1/traces?x=1"
        );
        assert_eq!(
            url("http://h:4318/p/?x=1&y=/a").unwrap(),
            "http://h:4318/p/v1/traces?x=1&y=/a"
        );
        assert_eq!(
            url("http://h:4318?x=1").unwrap(),
            "http://h:4318/v1/traces?x=1"
        );
        assert_eq!(url("http://h:4318/").unwrap(), "http://h:4318/v1/traces");
        let err = url("http://h:4318/p#frag").unwrap_err();
        assert!(err.to_string().contains("fragment"), "{err}");
        // The traces endpoint is used as it is (a query kept).
        let t = HttpTransport::builder(net())
            .traces_endpoint("http://h/t?k=v")
            .build_with(|_| None)
            .unwrap();
        assert_eq!(t.url(), "http://h/t?k=v");
    }

    #[test]
    fn only_the_user_information_of_a_url_is_hidden() {
        for (url, shown) in [
            ("http://a:b@h:1/p", "http://a:***@h:1/p"),
            ("http://a:b:c@d@h/p", "http://a:***@h/p"),
            ("http://token@h", "http://***@h"),
            ("http://:pw@h", "http://:***@h"),
            ("a:b@h:1", "a:***@h:1"),
            // A password holding an unencoded `/`, `?` or `#` (malformed)
            // is hidden too: the user information ends at the last `@`.
            ("http://a:b/c@h:1/p", "http://a:***@h:1/p"),
            ("http://a:b?c@h:1", "http://a:***@h:1"),
            ("http://a:b#c@h", "http://a:***@h"),
            ("http://tok/en@h", "http://***@h"),
            // So an `@` in a path or query hides what comes before it (too
            // much hidden, never a secret shown); the host stays readable
            // where a `:` follows it.
            ("http://h:1/p@x?mail=a@b", "http://h:***@b"),
            ("http://h?mail=a:b@c", "http://h?mail=a:***@c"),
            ("http://h/p", "http://h/p"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert_eq!(
            percent_encode_path("/a%20b/\u{e9} ?q"),
            "/a%20b/%C3%A9%20?q"
        );
    }

    #[test]
    fn a_redirect_message_names_status_and_location_escaped() {
        let m = redirect_refused(302, "http://a/v1/traces", Some("http://evil/\r\nx"));
        assert!(
            m.contains("302") && m.contains("http://evil/\\r\\nx") && m.contains("refused"),
            "{m}"
        );
        let long = "x".repeat(10_000);
        assert!(redirect_refused(301, "u", Some(&long)).len() < 600);
        assert!(redirect_refused(307, "u", None).contains("no Location"));
    }

    #[test]
    fn a_header_set_later_replaces_the_same_name_from_below() {
        // Found by review: the three sources were concatenated, so the
        // collector got both `x-api-key`s and both `authorization`s.
        let vars = |var: &str| match var {
            "OTEL_EXPORTER_OTLP_HEADERS" => {
                Some("x-api-key=from-env,authorization=Bearer%20generic,x-keep=1".to_string())
            }
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS" => Some("Authorization=Bearer%20traces".into()),
            _ => None,
        };
        let t = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(
            runtime_cap::ambient_authority(),
        ))
        .header("X-Api-Key", "from-builder")
        .header("x-two", "a")
        .header("x-two", "b")
        .build_with(vars)
        .unwrap();
        assert_eq!(
            t.headers,
            [
                ("x-keep".to_string(), "1".to_string()),
                ("Authorization".into(), "Bearer traces".into()),
                ("X-Api-Key".into(), "from-builder".into()),
                ("x-two".into(), "a".into()),
                ("x-two".into(), "b".into()),
            ]
        );
    }

    #[test]
    fn bad_configuration_is_a_clear_error_that_hides_header_values() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &'static str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let err = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(
            runtime_cap::ambient_authority(),
        ))
        .build_with(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")]))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("OTEL_EXPORTER_OTLP_ENDPOINT=\"localhost:4318\""),
            "{err}"
        );
        let err = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(
            runtime_cap::ambient_authority(),
        ))
        .build_with(env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]))
        .unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_TIMEOUT"),
            "{err}"
        );
        let err = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(
            runtime_cap::ambient_authority(),
        ))
        .build_with(env(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=SECRET123,broken",
        )]))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("OTEL_EXPORTER_OTLP_HEADERS") && !text.contains("SECRET123"),
            "{text}"
        );
        let err = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(
            runtime_cap::ambient_authority(),
        ))
        .build_with(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
        .unwrap_err();
        assert!(err.to_string().contains("grpc"), "{err}");
        let err = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(
            runtime_cap::ambient_authority(),
        ))
        .endpoint("http://host:99999")
        .build_with(env(&[]))
        .unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
        // A sign is not part of a port (`u16`'s parser takes a `+`; the
        // `Host` header then carried it).
        let err = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(
            runtime_cap::ambient_authority(),
        ))
        .endpoint("http://host:+4318")
        .build_with(env(&[]))
        .unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
        let t = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(
            runtime_cap::ambient_authority(),
        ))
        .build_with(env(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector.example:4318/",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=SECRET123,x-team=pay%20ments",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]))
        .unwrap();
        assert_eq!(t.url(), "https://collector.example:4318/v1/traces");
        assert_eq!(
            t.headers,
            [
                ("api-key".to_string(), "SECRET123".to_string()),
                ("x-team".into(), "pay ments".into())
            ]
        );
        assert_eq!(
            (t.compression, t.encoding),
            (Compression::Gzip, Encoding::Json)
        );
        assert!(
            !format!("{t:?}").contains("SECRET123"),
            "Debug hides header values"
        );
        // The builder wins over the environment; the traces endpoint is used as it is.
        let t = HttpTransport::builder(runtime_cap::NetAccess::from_ambient(
            runtime_cap::ambient_authority(),
        ))
        .traces_endpoint("http://127.0.0.1:1234/custom")
        .build_with(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url")]))
        .unwrap();
        assert_eq!(t.url(), "http://127.0.0.1:1234/custom");
    }

    /// Found by review: a count in exponent form (`3e0`, which the
    /// protobuf JSON mapping accepts for an integer) read as 0.
    #[test]
    fn a_json_count_in_any_whole_number_form_is_read() {
        let ps = |v: &str| {
            let body = format!(r#"{{"partialSuccess":{{"rejectedSpans":{v}}}}}"#);
            partial_success(body.as_bytes(), Encoding::Json, false)
        };
        for (v, want) in [
            ("3e0", 3),
            ("3E0", 3),
            ("3e+0", 3),
            ("\"3e0\"", 3),
            ("3.0", 3),
            ("0.3e1", 3),
            ("300e-2", 3),
            ("30E-1", 3),
            ("1e3", 1000),
            ("0e5", 0),
            ("0.0", 0),
            ("9223372036854775807", i64::MAX as u64),
            ("9.223372036854775807e18", i64::MAX as u64),
        ] {
            assert_eq!(ps(v), Some((want, String::new())), "{v}");
        }
        for v in [
            "1.5", "15e-1", "1e-1", "3e", "3.", ".3", "3e1000", "1e19", "e3", "3e0.5", "--3",
            "\" 3\"", "-3e0",
        ] {
            assert_eq!(ps(v), Some((0, String::new())), "{v}");
        }
        assert_eq!(json_integer("-3e0"), Some(-3));
        assert_eq!(json_integer("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(json_integer("9223372036854775808"), None);
        assert_eq!(json_integer("1e99999999999999999999"), None);
        assert_eq!(json_integer("0e99999999999999999999"), None);
        assert_eq!(json_integer("0.000e-5"), Some(0));
    }

    /// Found by review: `partial_success` given twice (protobuf merges an
    /// embedded message given twice, each field's last value winning) read
    /// only the last occurrence, and one without a count read as none.
    #[test]
    fn a_partial_success_given_twice_is_merged_as_protobuf_merges_it() {
        // { rejected_spans: 3 } then { error_message: "bad" }.
        let body = [
            0x0a, 0x02, 0x08, 0x03, 0x0a, 0x05, 0x12, 0x03, b'b', b'a', b'd',
        ];
        assert_eq!(
            partial_success(&body, Encoding::Protobuf, false),
            Some((3, "bad".into()))
        );
        // { rejected_spans: 3, error_message: "a" } then { rejected_spans: 5 }.
        let body = [
            0x0a, 0x05, 0x08, 0x03, 0x12, 0x01, b'a', 0x0a, 0x02, 0x08, 0x05,
        ];
        assert_eq!(
            partial_success(&body, Encoding::Protobuf, false),
            Some((5, "a".into()))
        );
        // The later one cut inside its count: the earlier count stands.
        let body = [0x0a, 0x02, 0x08, 0x03, 0x0a, 0x20, 0x08, 0x83];
        assert_eq!(
            partial_success(&body, Encoding::Protobuf, true),
            Some((3, String::new()))
        );
    }

    #[test]
    fn the_final_status_is_read_from_its_line_past_1xx_answers() {
        assert_eq!(final_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(final_status(b"HTTP/1.0 503\r\n"), Some(503));
        assert_eq!(final_status(b"HTTP/1.1 200"), None, "not wholly arrived");
        assert_eq!(final_status(b"HTTP/1.1 20"), None);
        assert_eq!(final_status(b"HTTP/2 200 OK\r\n"), None);
        assert_eq!(final_status(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(final_status(b"xHTTP/1.1 200 OK\r\n"), None);
        assert_eq!(
            final_status(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 X\r\n"),
            Some(413)
        );
        assert_eq!(final_status(b"HTTP/1.1 100 Continue\r\n\r\n"), None);
        assert_eq!(final_status(b"HTTP/1.1 100 Continue\r\n"), None);
        assert_eq!(
            final_status(b"HTTP/1.1 103 Early\nLink: x\n\nHTTP/1.1 204 \n"),
            Some(204)
        );
    }

    /// Found by review: a `1xx` head ended at the first `\r\n\r\n` anywhere
    /// (before looking for `\n\n`), so a bare-LF `100` then a final head
    /// the client refused had its body read as the status; an empty line
    /// before a status line (which the client's parser skips) or a status
    /// under 100 was misread too.
    #[test]
    fn the_final_status_is_read_as_the_parser_reads_the_answer() {
        let body_200 = b"HTTP/1.1 400 Bad\r\nBad Header: x\r\ncontent-length: 19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        for (head_100, ends) in [
            (&b"HTTP/1.1 100 Continue\n\n"[..], "\\n\\n"),
            (b"HTTP/1.1 100 Continue\r\n\n", "\\r\\n\\n"),
            (b"HTTP/1.1 100 Continue\n\r\n", "\\n\\r\\n"),
            (b"HTTP/1.1 100 Continue\r\n\r\n", "\\r\\n\\r\\n"),
            (b"HTTP/1.1 103 Early\nLink: x\r\n\n", "mixed"),
        ] {
            let answer = [head_100, &body_200[..]].concat();
            assert_eq!(final_status(&answer), Some(400), "{ends}");
        }
        assert_eq!(final_status(b"\r\nHTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(final_status(b"\n\r\n\nHTTP/1.1 204 \n"), Some(204));
        assert_eq!(
            final_status(b"HTTP/1.1 100 Continue\r\n\r\n\r\nHTTP/1.1 200 OK\r\n"),
            Some(200)
        );
        assert_eq!(final_status(b"\r\n"), None, "not arrived");
        assert_eq!(final_status(b"\rHTTP/1.1 200 OK\r\n"), None, "bare CR");
        assert_eq!(
            final_status(b"HTTP/1.1 100 C\r\nx: \ry\r\n\r\nHTTP/1.1 200 OK\r\n"),
            None,
            "a bare CR in a 1xx head"
        );
        assert_eq!(
            final_status(b"HTTP/1.1 000 Bad\r\ncontent-length: 19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
            None
        );
        assert_eq!(
            final_status(b"HTTP/1.1 099 X\r\n\r\nHTTP/1.1 200 OK\r\n"),
            None
        );
        // A flood of bare-LF 1xx answers is read in one pass.
        let mut flood = b"HTTP/1.1 100 C\n\n".repeat(1 << 16);
        flood.extend_from_slice(b"HTTP/1.1 201 OK\r\n");
        let start = std::time::Instant::now();
        assert_eq!(final_status(&flood), Some(201));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    /// Found by review: `[fe80::1%252]` went to the resolver as written,
    /// which read its zone as interface 252 (RFC 6874's `%25` is an
    /// encoded `%`): the zone is the interface's number after `%25`.
    #[test]
    fn an_ipv6_zone_id_is_the_interface_number_after_the_encoded_percent() {
        let addr = |url: &str| zoned_address(&ureq::http::Uri::try_from(url).unwrap());
        let a = addr("http://[fe80::1%252]:4318/v1/traces").unwrap();
        assert_eq!(
            (a.ip().to_string(), a.port(), a.scope_id()),
            ("fe80::1".to_owned(), 4318, 2)
        );
        assert_eq!(addr("https://[fe80::1%2517]/x").unwrap().port(), 443);
        assert_eq!(addr("http://[fe80::1%2517]/x").unwrap().scope_id(), 17);
        assert_eq!(addr("http://[fe80::1]:4318"), None);
        assert_eq!(addr("http://h:4318"), None);
        assert_eq!(zone_id("fe80::1"), Ok(None));
        assert_eq!(zone_id("fe80::1%254294967295"), Ok(Some(u32::MAX)));
        for bad in [
            "fe80::1%2",
            "fe80::1%25",
            "fe80::1%25eth0",
            "::1%lo",
            "::1%254294967296",
        ] {
            assert_eq!(zone_id(bad), Err(()), "{bad}");
        }
    }

    /// Found by review: `final_status` took any `HTTP/1.<digit>` (the
    /// parser takes 1.0 and 1.1 only) and skipped a `101` as interim (the
    /// client takes it as the final answer); zone 0 built; a zoned host
    /// escaped `NO_PROXY` and the loopback rule.
    #[test]
    fn status_versions_101_zone_zero_and_zoned_proxy_choice() {
        assert_eq!(final_status(b"HTTP/1.9 200 OK\r\n"), None);
        assert_eq!(
            final_status(b"HTTP/1.7 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            None
        );
        assert_eq!(
            final_status(b"HTTP/1.1 101 Switching\r\nBad Header: x\r\n\r\nHTTP/1.1 200 OK\r\n"),
            Some(101)
        );
        assert_eq!(
            final_status(b"HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 204 OK\r\n"),
            Some(204)
        );
        for zero in ["fe80::1%250", "fe80::1%25000"] {
            assert_eq!(zone_id(zero), Err(()), "{zero}");
        }
        let env = |list: &'static str| {
            move |var: &'static str| match var {
                "HTTP_PROXY" => Some("http://proxy:3128".to_owned()),
                "NO_PROXY" => Some(list.to_owned()).filter(|l| !l.is_empty()),
                _ => None,
            }
        };
        let chosen = |host: &str, list: &'static str| choose_proxy(false, host, 4318, &env(list));
        assert_eq!(chosen("[fe80::1%252]", ""), None, "zoned: never proxied");
        assert!(chosen("[fe80::1]", "").is_some());
        for list in ["fe80::1", "fe80::/10", "[fe80::1]:4318"] {
            assert_eq!(chosen("[fe80::1%252]", list), None, "{list}");
        }
        assert_eq!(chosen("[::1%251]", ""), None, "loopback");
    }
}
