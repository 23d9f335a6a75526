//! OTLP/HTTP: POST `{endpoint}/v1/traces` to any OpenTelemetry collector,
//! with retries as the OTLP specification says.
//!
//! * `application/x-protobuf` (default) or `application/json`; a
//!   `User-Agent` naming this crate; user headers; optional gzip; a timeout
//!   per attempt; connections kept alive and reused; `https` through rustls
//!   with the *ring* crypto provider (it builds with a C compiler alone).
//! * Retried: 429, 502, 503, 504 and connection failures (refused, reset,
//!   no response), with exponential backoff and jitter, bounded by the
//!   export's deadline; `Retry-After` honoured in seconds and HTTP-date
//!   form, capped. Everything else, 400 included, is final. A 200 whose
//!   body reports `partial_success.rejected_spans` is not retried: the
//!   rejected spans are counted.
//! * Header values carry API keys: they never appear in logs or errors.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
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
}

impl fmt::Debug for HttpTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransportBuilder")
            .field("endpoint", &self.endpoint)
            .field("traces_endpoint", &self.traces_endpoint)
            .field("headers", &header_names(&self.headers))
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl HttpTransportBuilder {
    /// The collector's base URL; `/v1/traces` is appended
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`, default `http://localhost:4318`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The full URL for traces, used as it is
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub fn traces_endpoint(mut self, url: impl Into<String>) -> Self {
        self.traces_endpoint = Some(url.into());
        self
    }

    /// A header sent with every request (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Timeout of each attempt (`OTEL_EXPORTER_OTLP_TIMEOUT`, default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Body compression (`OTEL_EXPORTER_OTLP_COMPRESSION`: `gzip` or `none`).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = Some(c);
        self
    }

    /// Protobuf or JSON (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` or
    /// `http/json`).
    pub fn encoding(mut self, e: Encoding) -> Self {
        self.encoding = Some(e);
        self
    }

    /// How failed attempts are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Reads the environment for what was not set and checks everything.
    /// A malformed value is an error naming the variable (and, except for
    /// headers, whose values are secret, the value).
    pub fn build(self) -> Result<HttpTransport, ConfigError> {
        self.build_with(|var| std::env::var(var).ok())
    }

    /// [`build`](Self::build) with the environment given as a function.
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
            (None, Some(e)) => check_url("endpoint", &e, false).map(|u| join_traces(&u))?,
            (None, None) => match (
                env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                env("OTEL_EXPORTER_OTLP_ENDPOINT"),
            ) {
                (Some(t), _) => check_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &t, true)?,
                (None, Some(e)) => {
                    check_url("OTEL_EXPORTER_OTLP_ENDPOINT", &e, true).map(|u| join_traces(&u))?
                }
                (None, None) => join_traces(DEFAULT_ENDPOINT),
            },
        };
        let mut headers = Vec::new();
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(v) = env(var) {
                headers.extend(parse_headers(var, &v)?);
            }
        }
        headers.extend(self.headers);
        for (k, _) in &headers {
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b))
            {
                return Err(ConfigError::InvalidSetting {
                    setting: "header",
                    reason: format!("{k:?} is not a valid header name"),
                });
            }
        }
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
                .or_else(|| env("OTEL_EXPORTER_OTLP_COMPRESSION"))
                .as_deref()
            {
                None | Some("none") => Compression::None,
                Some("gzip") => Compression::Gzip,
                Some(other) => {
                    return Err(ConfigError::InvalidEnv {
                        var: "OTEL_EXPORTER_OTLP_COMPRESSION",
                        value: other.to_owned(),
                        reason: "expected `gzip` or `none`",
                    });
                }
            },
        };
        let encoding = match self.encoding {
            Some(e) => e,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
                .as_deref()
            {
                None | Some("http/protobuf") => Encoding::Protobuf,
                Some("http/json") => Encoding::Json,
                Some(other) => {
                    return Err(ConfigError::InvalidEnv {
                        var: "OTEL_EXPORTER_OTLP_PROTOCOL",
                        value: other.to_owned(),
                        reason: "expected `http/protobuf` or `http/json` (gRPC is not supported by this exporter)",
                    });
                }
            },
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .into();
        Ok(HttpTransport {
            agent,
            url,
            headers,
            timeout,
            compression,
            encoding,
            retry: self.retry,
            counters: Counters::default(),
        })
    }
}

/// Header names only: values carry API keys and are never shown.
fn header_names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(k, _)| k.as_str()).collect()
}

fn check_url(what: &'static str, url: &str, from_env: bool) -> Result<String, ConfigError> {
    let bad = |reason: &'static str| {
        if from_env {
            ConfigError::InvalidEnv {
                var: what,
                value: url.to_owned(),
                reason,
            }
        } else {
            ConfigError::InvalidSetting {
                setting: what,
                reason: format!("{url:?}: {reason}"),
            }
        }
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("expected a URL starting with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(bad("the URL has no host"));
    }
    if let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']'))
        && port.parse::<u16>().is_err()
    {
        return Err(bad("the port is not a number from 0 to 65535"));
    }
    ureq::http::Uri::try_from(url).map_err(|_| bad("not a valid URL"))?;
    Ok(url.to_owned())
}

fn join_traces(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
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
pub struct HttpTransport {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    compression: Compression,
    encoding: Encoding,
    retry: RetryPolicy,
    counters: Counters,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("url", &self.url)
            .field("headers", &header_names(&self.headers))
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
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

    /// The URL requests go to.
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

    fn attempt(&self, body: &[u8], content_type: &str, deadline: Instant) -> Attempt {
        let c = &self.counters;
        c.attempts.fetch_add(1, Ordering::Relaxed);
        let timeout = self
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let mut req = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(timeout.max(Duration::from_millis(1))))
            .build()
            .header("Content-Type", content_type);
        if self.compression == Compression::Gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send(body) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let bytes = resp.body_mut().read_to_vec().unwrap_or_default();
                match status {
                    200..=299 => {
                        c.succeeded.fetch_add(1, Ordering::Relaxed);
                        match partial_success(&bytes, self.encoding) {
                            Some((rejected, message)) if rejected > 0 => {
                                Attempt::Done(ExportResult::PartialSuccess { rejected, message })
                            }
                            _ => Attempt::Done(ExportResult::Success),
                        }
                    }
                    429 | 502 | 503 | 504 => {
                        c.retryable_status.fetch_add(1, Ordering::Relaxed);
                        Attempt::Retry(retry_after, format!("HTTP {status}"))
                    }
                    _ => {
                        c.final_status.fetch_add(1, Ordering::Relaxed);
                        Attempt::Done(ExportResult::Failed(format!(
                            "HTTP {status} from {}",
                            self.url
                        )))
                    }
                }
            }
            Err(e) => {
                c.connection_failed.fetch_add(1, Ordering::Relaxed);
                Attempt::Retry(None, format!("no answer from {}: {e}", self.url))
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
        let compressed;
        let body: &[u8] = match self.compression {
            Compression::None => &request.body,
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                compressed = gz.write_all(&request.body).and_then(|()| gz.finish());
                match &compressed {
                    Ok(b) => b,
                    Err(e) => return ExportResult::Failed(format!("gzip: {e}")),
                }
            }
        };
        let content_type = request.encoding.content_type();
        let mut backoff = self.retry.initial_backoff;
        let mut last = String::new();
        for attempt in 0..self.retry.max_attempts.max(1) {
            if attempt > 0 {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
            }
            if Instant::now() >= deadline {
                break;
            }
            match self.attempt(body, content_type, deadline) {
                Attempt::Done(result) => return result,
                Attempt::Retry(after, why) => {
                    last = why;
                    let wait = after.map_or_else(|| jitter(backoff), |a| a.min(MAX_RETRY_AFTER));
                    backoff = backoff
                        .mul_f64(self.retry.multiplier)
                        .min(self.retry.max_backoff);
                    let left = deadline.saturating_duration_since(Instant::now());
                    if wait >= left {
                        break; // the next attempt could not finish in time
                    }
                    std::thread::sleep(wait);
                }
            }
        }
        ExportResult::Failed(format!("gave up after retries: {last}"))
    }
}

/// `d` scaled by a random factor in [0.5, 1.5).
fn jitter(d: Duration) -> Duration {
    let r = (crate::id::random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.5 + r)
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
    let mut parts = v.split_whitespace();
    let _weekday = parts.next()?;
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
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
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || day == 0 || day > 31 || h > 23 || m > 59 || s > 60 {
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
/// error_message), if the body carries it.
fn partial_success(body: &[u8], encoding: Encoding) -> Option<(u64, String)> {
    match encoding {
        Encoding::Protobuf => {
            let ps = proto_field(body, 1)?;
            let rejected = proto_varint_field(ps, 1).unwrap_or(0);
            let message = proto_field(ps, 2)
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .unwrap_or_default();
            Some((rejected, message))
        }
        Encoding::Json => {
            // {"partialSuccess":{"rejectedSpans":"3","errorMessage":"..."}}
            let text = std::str::from_utf8(body).ok()?;
            let at = text.find("\"rejectedSpans\"")?;
            let digits: String = text[at + 15..]
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect();
            Some((digits.parse().ok()?, String::new()))
        }
    }
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
fn proto_walk<'a>(buf: &'a [u8], mut f: impl FnMut(u64, u64, u64, &'a [u8])) -> Option<()> {
    let mut at = 0;
    while at < buf.len() {
        let key = read_varint(buf, &mut at)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = read_varint(buf, &mut at)?;
                f(field, wire, v, &[]);
            }
            1 => at += 8,
            2 => {
                let len = usize::try_from(read_varint(buf, &mut at)?).ok()?;
                let bytes = buf.get(at..at.checked_add(len)?)?;
                at += len;
                f(field, wire, 0, bytes);
            }
            5 => at += 4,
            _ => return None,
        }
    }
    Some(())
}

fn proto_field(buf: &[u8], field: u64) -> Option<&[u8]> {
    let mut found = None;
    proto_walk(buf, |f, w, _, b| {
        if f == field && w == 2 {
            found = Some(b);
        }
    })?;
    found
}

fn proto_varint_field(buf: &[u8], field: u64) -> Option<u64> {
    let mut found = None;
    proto_walk(buf, |f, w, v, _| {
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
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "past dates: now"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn partial_success_is_read_from_protobuf_and_json() {
        // partial_success { rejected_spans: 3, error_message: "bad" }
        let body = [0x0a, 0x07, 0x08, 0x03, 0x12, 0x03, b'b', b'a', b'd'];
        assert_eq!(
            partial_success(&body, Encoding::Protobuf),
            Some((3, "bad".into()))
        );
        assert_eq!(partial_success(&[], Encoding::Protobuf), None);
        let json = br#"{"partialSuccess":{"rejectedSpans":"12","errorMessage":"x"}}"#;
        assert_eq!(
            partial_success(json, Encoding::Json),
            Some((12, String::new()))
        );
        assert_eq!(partial_success(b"{}", Encoding::Json), None);
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
}
