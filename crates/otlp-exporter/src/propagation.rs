//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` header to and from a [`SpanContext`], and the `tracestate`
//! list ([`TraceState`]).
//!
//! Parsing never panics, whatever the input: every malformed header is a
//! [`TraceparentError`] or [`TraceStateError`] that says what is wrong.

use std::fmt;
use std::str::FromStr;

use crate::model::{SpanContext, SpanId, Str, TraceFlags, TraceId};

/// Why a `traceparent` header was rejected.
///
/// ```
/// use otlp_exporter::{SpanContext, TraceparentError};
/// assert_eq!(
///     SpanContext::from_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
///     Err(TraceparentError::ZeroTraceId)
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceparentError {
    /// The header is empty (or only whitespace).
    #[error("traceparent is empty")]
    Empty,
    /// Shorter than the 55 characters of `version-traceid-parentid-flags`.
    #[error(
        "traceparent is {len} bytes long; expected at least 55 (version-traceid-parentid-flags)"
    )]
    TooShort {
        /// Its length, in bytes.
        len: usize,
    },
    /// Version `00` with more than its 55 characters (extra fields are
    /// allowed only in later versions).
    #[error("traceparent version 00 must be exactly 55 bytes long, got {len}")]
    WrongLength {
        /// Its length, in bytes.
        len: usize,
    },
    /// Version `ff`, which the spec forbids.
    #[error("traceparent version ff is invalid")]
    InvalidVersion,
    /// A field holds uppercase hex (the spec allows lowercase only).
    #[error("traceparent {field} has uppercase hex digits; only lowercase is valid")]
    UppercaseHex {
        /// `version`, `trace-id`, `parent-id` or `trace-flags`.
        field: &'static str,
    },
    /// A field holds something other than hex digits.
    #[error("traceparent {field} is not hex")]
    BadHex {
        /// `version`, `trace-id`, `parent-id` or `trace-flags`.
        field: &'static str,
    },
    /// A `-` is missing where the fields meet.
    #[error("traceparent has no '-' at byte {at}")]
    MissingDash {
        /// Where the dash should be (2, 35, 52, or 55 before a later
        /// version's extra fields).
        at: usize,
    },
    /// The trace id is all zeros.
    #[error("traceparent trace-id is all zeros")]
    ZeroTraceId,
    /// The parent (span) id is all zeros.
    #[error("traceparent parent-id is all zeros")]
    ZeroSpanId,
}

/// Why a `tracestate` header was rejected (see [`TraceState::parse`]).
///
/// ```
/// use otlp_exporter::{TraceState, TraceStateError};
/// assert!(matches!(TraceState::parse("a=1,a=2"), Err(TraceStateError::DuplicateKey { .. })));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceStateError {
    /// More than [`TraceState::MAX_MEMBERS`] list members.
    #[error("tracestate has {count} members; at most 32 are allowed")]
    TooManyMembers {
        /// How many there are.
        count: usize,
    },
    /// A member is not `key=value`.
    #[error("tracestate member {member:?} is not key=value")]
    NotKeyValue {
        /// The member (its first 64 bytes).
        member: String,
    },
    /// A key breaks the spec's grammar (lowercase letters, digits, `_`,
    /// `-`, `*`, `/`, starting with a letter, at most 256 characters; or
    /// `tenant@system`).
    #[error("tracestate key {key:?} is invalid")]
    InvalidKey {
        /// The key (its first 64 bytes).
        key: String,
    },
    /// A value breaks the spec's grammar (1 to 256 printable ASCII
    /// characters other than `,` and `=`, not ending in a space).
    #[error("tracestate value of key {key:?} is invalid")]
    InvalidValue {
        /// The key whose value it is (its first 64 bytes).
        key: String,
    },
    /// The same key twice.
    #[error("tracestate key {key:?} appears more than once")]
    DuplicateKey {
        /// The key (its first 64 bytes).
        key: String,
    },
}

/// The first 64 bytes of `s` (at a character boundary), for an error.
fn excerpt(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

const TRACEPARENT_LEN: usize = 55;

impl SpanContext {
    /// The W3C `traceparent` header for this context:
    /// `00-{trace-id}-{span-id}-{flags}`, lowercase hex; the flags carry
    /// the sampled bit.
    ///
    /// ```
    /// use otlp_exporter::{SpanContext, SpanId, TraceId};
    /// let cx = SpanContext::new(TraceId([0xab; 16]), SpanId([0x01; 8]));
    /// assert_eq!(
    ///     cx.to_traceparent(),
    ///     "00-abababababababababababababababab-0101010101010101-01"
    /// );
    /// ```
    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.trace_flags.0
        )
    }

    /// A remote context from a W3C `traceparent` header (`is_remote` set,
    /// no trace state), checked as the spec says: version `00` is exactly
    /// `00-{32 hex}-{16 hex}-{2 hex}`; a later version (not `ff`) may have
    /// more fields after the flags, separated by `-`, which are ignored;
    /// hex is lowercase; neither id is all zeros. Spaces and tabs around the
    /// value (HTTP's optional whitespace) are ignored. Of the flags, only
    /// the sampled bit is kept (the spec's other flags are unknown here and
    /// must be zeroed when propagated).
    ///
    /// ```
    /// use otlp_exporter::{SpanContext, TraceparentError};
    /// let cx = SpanContext::from_traceparent(
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    /// ).unwrap();
    /// assert!(cx.is_remote && cx.trace_flags.is_sampled());
    /// assert_eq!(cx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    ///
    /// // A later version may carry more fields.
    /// assert!(SpanContext::from_traceparent(
    ///     "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
    /// ).is_ok());
    /// assert_eq!(
    ///     SpanContext::from_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ///     Err(TraceparentError::InvalidVersion)
    /// );
    /// ```
    pub fn from_traceparent(header: &str) -> Result<SpanContext, TraceparentError> {
        let b = header.trim_matches([' ', '\t']).as_bytes();
        if b.is_empty() {
            return Err(TraceparentError::Empty);
        }
        let version = hex_field(b.get(..2).unwrap_or(b), 2, "version")?;
        if version == [0xff] {
            return Err(TraceparentError::InvalidVersion);
        }
        if b.len() < TRACEPARENT_LEN {
            return Err(TraceparentError::TooShort { len: b.len() });
        }
        if version == [0x00] && b.len() != TRACEPARENT_LEN {
            return Err(TraceparentError::WrongLength { len: b.len() });
        }
        for at in [2, 35, 52] {
            if b[at] != b'-' {
                return Err(TraceparentError::MissingDash { at });
            }
        }
        if b.len() > TRACEPARENT_LEN && b[TRACEPARENT_LEN] != b'-' {
            return Err(TraceparentError::MissingDash {
                at: TRACEPARENT_LEN,
            });
        }
        let trace: [u8; 16] = hex_array(&b[3..35], "trace-id")?;
        let span: [u8; 8] = hex_array(&b[36..52], "parent-id")?;
        let [flags] = hex_array::<1>(&b[53..55], "trace-flags")?;
        let (trace_id, span_id) = (TraceId(trace), SpanId(span));
        if !trace_id.is_valid() {
            return Err(TraceparentError::ZeroTraceId);
        }
        if !span_id.is_valid() {
            return Err(TraceparentError::ZeroSpanId);
        }
        Ok(SpanContext {
            trace_id,
            span_id,
            trace_flags: TraceFlags(flags & TraceFlags::SAMPLED.0),
            trace_state: Str::Borrowed(""),
            is_remote: true,
        })
    }

    /// A remote context from both W3C headers: [`from_traceparent`] for
    /// `traceparent`, and the `tracestate` header (several headers joined
    /// with `,`) carried through, normalized by [`TraceState::parse`]. A
    /// malformed `tracestate` is discarded (the context keeps an empty
    /// one), as the W3C test suite and the other OpenTelemetry SDKs do: the
    /// trace continues, without state that may be corrupt.
    ///
    /// [`from_traceparent`]: SpanContext::from_traceparent
    ///
    /// ```
    /// use otlp_exporter::SpanContext;
    /// let cx = SpanContext::from_w3c_headers(
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    ///     Some("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"),
    /// ).unwrap();
    /// assert_eq!(cx.trace_state, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    /// assert!(!cx.trace_flags.is_sampled());
    /// ```
    pub fn from_w3c_headers(
        traceparent: &str,
        tracestate: Option<&str>,
    ) -> Result<SpanContext, TraceparentError> {
        let mut cx = Self::from_traceparent(traceparent)?;
        if let Some(Ok(state)) = tracestate.map(TraceState::parse) {
            cx.trace_state = state.header;
        }
        Ok(cx)
    }

    /// This context with `state` as its trace state.
    ///
    /// ```
    /// use otlp_exporter::{SpanContext, SpanId, TraceId, TraceState};
    /// let state = TraceState::default().insert("vendor", "x").unwrap();
    /// let cx = SpanContext::new(TraceId([1; 16]), SpanId([1; 8])).with_trace_state(state);
    /// assert_eq!(cx.trace_state, "vendor=x");
    /// ```
    #[must_use]
    pub fn with_trace_state(mut self, state: TraceState) -> SpanContext {
        self.trace_state = state.header;
        self
    }
}

/// Decodes exactly `N` bytes of lowercase hex.
fn hex_array<const N: usize>(s: &[u8], field: &'static str) -> Result<[u8; N], TraceparentError> {
    let mut out = [0; N];
    let v = hex_field(s, 2 * N, field)?;
    out.copy_from_slice(&v);
    Ok(out)
}

fn hex_field(s: &[u8], len: usize, field: &'static str) -> Result<Vec<u8>, TraceparentError> {
    if s.len() != len {
        return Err(TraceparentError::TooShort { len: s.len() });
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Err(TraceparentError::UppercaseHex { field }),
        _ => Err(TraceparentError::BadHex { field }),
    };
    s.chunks_exact(2)
        .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// A W3C `tracestate`: up to 32 `key=value` list members, vendor data
/// carried along a trace. Parsed strictly ([`TraceState::parse`]) and kept
/// in its normalized header form (members joined by `,`, no empty members,
/// no whitespace), which is what [`SpanContext::trace_state`] holds.
///
/// ```
/// use otlp_exporter::TraceState;
/// let state = TraceState::parse("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7").unwrap();
/// assert_eq!(state.get("rojo"), Some("00f067aa0ba902b7"));
/// // A vendor updates its own entry, which moves to the front.
/// let state = state.insert("rojo", "00f067aa0ba902b8").unwrap();
/// assert_eq!(state.as_str(), "rojo=00f067aa0ba902b8,congo=t61rcWkgMzE");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TraceState {
    header: Str,
}

impl TraceState {
    /// The most list members a `tracestate` may have.
    pub const MAX_MEMBERS: usize = 32;

    /// Parses a `tracestate` header value (several headers joined with
    /// `,`). Empty members and the whitespace around members are allowed
    /// and dropped. Strict about the rest, as the spec's list rules say: a
    /// member that is not `key=value`, a key or value outside the grammar,
    /// a duplicate key, or more than 32 members is an error (the whole
    /// header is then invalid; see [`SpanContext::from_w3c_headers`], which
    /// discards it).
    ///
    /// ```
    /// use otlp_exporter::{TraceState, TraceStateError};
    /// assert_eq!(TraceState::parse("").unwrap().len(), 0);
    /// assert_eq!(TraceState::parse("a=1,,b@sys=2 ").unwrap().as_str(), "a=1,b@sys=2");
    /// assert!(matches!(TraceState::parse("A=1"), Err(TraceStateError::InvalidKey { .. })));
    /// ```
    pub fn parse(header: &str) -> Result<TraceState, TraceStateError> {
        let count = header
            .split(',')
            .filter(|m| !m.trim_matches([' ', '\t']).is_empty())
            .count();
        if count > Self::MAX_MEMBERS {
            return Err(TraceStateError::TooManyMembers { count });
        }
        let mut out = String::with_capacity(header.len());
        let mut keys: Vec<&str> = Vec::with_capacity(count);
        for member in header.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let Some((key, value)) = member.split_once('=') else {
                return Err(TraceStateError::NotKeyValue {
                    member: excerpt(member),
                });
            };
            check_member(key, value)?;
            if keys.contains(&key) {
                return Err(TraceStateError::DuplicateKey { key: excerpt(key) });
            }
            keys.push(key);
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        Ok(TraceState {
            header: Str::Owned(out),
        })
    }

    /// The value of `key`, if present.
    ///
    /// ```
    /// use otlp_exporter::TraceState;
    /// let state = TraceState::parse("a=1").unwrap();
    /// assert_eq!(state.get("a"), Some("1"));
    /// assert_eq!(state.get("b"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// This state with `key` set to `value`, moved to the front (the spec's
    /// rule for a vendor's updated or new entry). If that makes more than
    /// 32 members, the last (right-most) is removed, as the spec says. An
    /// invalid key or value is an error.
    ///
    /// ```
    /// use otlp_exporter::TraceState;
    /// let state = TraceState::default().insert("a", "1").unwrap().insert("b", "2").unwrap();
    /// assert_eq!(state.as_str(), "b=2,a=1");
    /// assert!(state.insert("a", "no,commas").is_err());
    /// ```
    pub fn insert(&self, key: &str, value: &str) -> Result<TraceState, TraceStateError> {
        check_member(key, value)?;
        let mut out = format!("{key}={value}");
        for (k, v) in self
            .iter()
            .filter(|(k, _)| *k != key)
            .take(Self::MAX_MEMBERS - 1)
        {
            out.push(',');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        Ok(TraceState {
            header: Str::Owned(out),
        })
    }

    /// This state without `key`.
    ///
    /// ```
    /// use otlp_exporter::TraceState;
    /// let state = TraceState::parse("a=1,b=2").unwrap().remove("a");
    /// assert_eq!(state.as_str(), "b=2");
    /// ```
    #[must_use]
    pub fn remove(&self, key: &str) -> TraceState {
        let mut out = String::with_capacity(self.header.len());
        for (k, v) in self.iter().filter(|(k, _)| *k != key) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        TraceState {
            header: Str::Owned(out),
        }
    }

    /// The members, in order, as `(key, value)`.
    ///
    /// ```
    /// use otlp_exporter::TraceState;
    /// let state = TraceState::parse("a=1,b=2").unwrap();
    /// assert_eq!(state.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.header.split(',').filter_map(|m| m.split_once('='))
    }

    /// How many members.
    ///
    /// ```
    /// use otlp_exporter::TraceState;
    /// assert_eq!(TraceState::parse("a=1,b=2").unwrap().len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True if there are no members.
    ///
    /// ```
    /// use otlp_exporter::TraceState;
    /// assert!(TraceState::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.header.is_empty()
    }

    /// The `tracestate` header value (empty for no members: send no header
    /// then).
    ///
    /// ```
    /// use otlp_exporter::TraceState;
    /// assert_eq!(TraceState::parse(" a=1 , b=2").unwrap().as_str(), "a=1,b=2");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.header
    }
}

impl fmt::Display for TraceState {
    /// The header value, as [`TraceState::as_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header)
    }
}

impl FromStr for TraceState {
    type Err = TraceStateError;

    /// [`TraceState::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceState::parse(s)
    }
}

/// Checks one member against the spec's key and value grammar.
fn check_member(key: &str, value: &str) -> Result<(), TraceStateError> {
    if !valid_key(key) {
        return Err(TraceStateError::InvalidKey { key: excerpt(key) });
    }
    if !valid_value(value) {
        return Err(TraceStateError::InvalidValue { key: excerpt(key) });
    }
    Ok(())
}

fn key_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// `simple-key = lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`;
/// `multi-tenant-key = tenant-id "@" system-id`, where
/// `tenant-id = (lcalpha / DIGIT) 0*240(...)` and
/// `system-id = lcalpha 0*13(...)`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    match key.split_once('@') {
        None => {
            (1..=256).contains(&b.len())
                && b[0].is_ascii_lowercase()
                && b.iter().copied().all(key_char)
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().copied().all(key_char)
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().copied().all(key_char)
        }
    }
}

/// `value = 0*255(chr) nblk-chr`, `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E`,
/// `chr = %x20 / nblk-chr`.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    let chr = |c: u8| c == b' ' || (0x21..=0x7e).contains(&c) && c != b',' && c != b'=';
    (1..=256).contains(&b.len()) && b.iter().copied().all(chr) && b[b.len() - 1] != b' '
}
