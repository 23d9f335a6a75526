//! The span model: everything OTLP can carry for a span, its resource and its
//! instrumentation scope.
//!
//! Names, keys and string values are [`Str`] (`Cow<'static, str>`), so the
//! usual `'static` literals cost no allocation.

use std::borrow::Cow;
use std::fmt;

/// A string that is usually `'static` (no allocation) but may be owned.
pub type Str = Cow<'static, str>;

/// A 16-byte W3C trace id. The all-zero id is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte W3C span id. The all-zero id is invalid (and means "no
/// parent" in [`SpanData::parent_span_id`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// The invalid, all-zero id.
    pub const INVALID: TraceId = TraceId([0; 16]);

    /// True unless all zero.
    pub fn is_valid(&self) -> bool {
        *self != Self::INVALID
    }

    /// A random, valid id from this thread's generator (no shared lock):
    /// unique with high probability (threads, and a forked child and its
    /// parent, draw different sequences), but predictable from ids already
    /// seen; not for security use.
    pub fn random() -> Self {
        crate::id::random_trace_id()
    }
}

impl SpanId {
    /// The invalid, all-zero id.
    pub const INVALID: SpanId = SpanId([0; 8]);

    /// True unless all zero.
    pub fn is_valid(&self) -> bool {
        *self != Self::INVALID
    }

    /// A random, valid id from this thread's generator (no shared lock):
    /// unique with high probability, but predictable from ids already seen
    /// (see [`TraceId::random`]); not for security use.
    pub fn random() -> Self {
        crate::id::random_span_id()
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

macro_rules! hex_fmt {
    ($ty:ident) => {
        /// Lowercase hex, as in W3C `traceparent` and OTLP JSON.
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "("))?;
                write_hex(f, &self.0)?;
                f.write_str(")")
            }
        }
    };
}
hex_fmt!(TraceId);
hex_fmt!(SpanId);

/// W3C trace flags. Bit 0 is "sampled"; the sampler sets it, and it
/// travels in `traceparent`.
///
/// ```
/// use otlp_exporter::TraceFlags;
/// assert!(TraceFlags::SAMPLED.is_sampled());
/// assert!(!TraceFlags::NOT_SAMPLED.is_sampled());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct TraceFlags(pub u8);

impl TraceFlags {
    /// Sampled: the span is recorded and exported.
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// Not sampled: the pipeline counts the span and drops it.
    pub const NOT_SAMPLED: TraceFlags = TraceFlags(0x00);

    /// True if the sampled bit is set.
    pub fn is_sampled(&self) -> bool {
        self.0 & 0x01 != 0
    }
}

/// What identifies a span across process boundaries: W3C Trace Context.
/// Read one from incoming headers with
/// [`from_traceparent`](SpanContext::from_traceparent) or
/// [`from_w3c_headers`](SpanContext::from_w3c_headers); write one with
/// [`to_traceparent`](SpanContext::to_traceparent) (and `trace_state` as the
/// `tracestate` header, when not empty).
///
/// ```
/// use otlp_exporter::SpanContext;
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let cx = SpanContext::from_traceparent(header).unwrap();
/// assert!(cx.is_remote && cx.is_valid());
/// assert_eq!(cx.to_traceparent(), header);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SpanContext {
    /// The trace this span belongs to.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: SpanId,
    /// W3C trace flags (the sampled bit).
    pub trace_flags: TraceFlags,
    /// W3C `tracestate`, as its header text (empty if none). Parse it with
    /// [`TraceState::parse`](crate::TraceState::parse); set it with
    /// [`with_trace_state`](SpanContext::with_trace_state), which keeps it
    /// valid.
    pub trace_state: Str,
    /// True if this context was received from another process (set by
    /// [`from_traceparent`](SpanContext::from_traceparent)).
    pub is_remote: bool,
}

impl SpanContext {
    /// The invalid context: all-zero ids, not sampled, local.
    ///
    /// ```
    /// assert!(!otlp_exporter::SpanContext::INVALID.is_valid());
    /// ```
    pub const INVALID: SpanContext = SpanContext {
        trace_id: TraceId::INVALID,
        span_id: SpanId::INVALID,
        trace_flags: TraceFlags::NOT_SAMPLED,
        trace_state: Str::Borrowed(""),
        is_remote: false,
    };

    /// A sampled, local context.
    pub fn new(trace_id: TraceId, span_id: SpanId) -> Self {
        SpanContext {
            trace_id,
            span_id,
            trace_flags: TraceFlags::SAMPLED,
            trace_state: Str::Borrowed(""),
            is_remote: false,
        }
    }

    /// True if both ids are valid.
    pub fn is_valid(&self) -> bool {
        self.trace_id.is_valid() && self.span_id.is_valid()
    }
}

/// An attribute value: the types OTLP carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string.
    Str(Str),
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    I64(i64),
    /// A 64-bit float (non-finite values are carried as they are in
    /// protobuf; OTLP JSON writes them as the string values `"NaN"`,
    /// `"Infinity"`, `"-Infinity"`, which every JSON reader accepts).
    F64(f64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An array of values (OpenTelemetry expects one type per array).
    Array(Vec<Value>),
}

macro_rules! value_from {
    ($($ty:ty => |$v:ident| $e:expr),+ $(,)?) => {
        $(impl From<$ty> for Value {
            fn from($v: $ty) -> Self {
                $e
            }
        })+
    };
}

value_from! {
    &'static str => |v| Value::Str(Str::Borrowed(v)),
    String => |v| Value::Str(Str::Owned(v)),
    Str => |v| Value::Str(v),
    bool => |v| Value::Bool(v),
    i64 => |v| Value::I64(v),
    i32 => |v| Value::I64(v.into()),
    u32 => |v| Value::I64(v.into()),
    f64 => |v| Value::F64(v),
    Vec<u8> => |v| Value::Bytes(v),
    Vec<Value> => |v| Value::Array(v),
}

/// A key and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    /// The attribute's name.
    pub key: Str,
    /// Its value.
    pub value: Value,
}

impl KeyValue {
    /// `KeyValue::new("http.method", "GET")`.
    pub fn new(key: impl Into<Str>, value: impl Into<Value>) -> Self {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// The role of a span in a trace (OTLP `SpanKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(i32)]
pub enum SpanKind {
    /// Not said.
    Unspecified = 0,
    /// An internal operation (the default for spans built here).
    #[default]
    Internal = 1,
    /// Handles a remote request.
    Server = 2,
    /// Makes a remote request.
    Client = 3,
    /// Sends a message.
    Producer = 4,
    /// Receives a message.
    Consumer = 5,
}

/// OTLP status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(i32)]
pub enum StatusCode {
    /// Not set (the default).
    #[default]
    Unset = 0,
    /// Explicitly successful.
    Ok = 1,
    /// Failed.
    Error = 2,
}

/// A span's status: a code and, for errors, a message.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Status {
    /// The code.
    pub code: StatusCode,
    /// Developer-facing description, for `Error` only: the OpenTelemetry
    /// API ignores it for `Ok` and `Unset` ([`Span::set_status`](crate::Span::set_status)
    /// drops it), and the encoders leave it out for them whatever a
    /// [`SpanData`] recorded directly carries (an `Unset` status is not
    /// exported at all).
    pub message: Str,
}

impl Status {
    /// `Ok`, no message.
    pub fn ok() -> Self {
        Status {
            code: StatusCode::Ok,
            message: Str::Borrowed(""),
        }
    }

    /// `Error` with a message.
    pub fn error(message: impl Into<Str>) -> Self {
        Status {
            code: StatusCode::Error,
            message: message.into(),
        }
    }
}

/// Something that happened during a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// What happened.
    pub name: Str,
    /// When, in nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// Details.
    pub attributes: Vec<KeyValue>,
    /// Attributes discarded by the limits.
    pub dropped_attributes_count: u32,
}

/// A reference from a span to another span (in this trace or another).
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// The linked span.
    pub context: SpanContext,
    /// Details.
    pub attributes: Vec<KeyValue>,
    /// Attributes discarded by the limits.
    pub dropped_attributes_count: u32,
}

/// How readily a span is shed under load (see
/// [`Shedding::Priority`](crate::Shedding::Priority)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// Shed only when the queue is full.
    #[default]
    Normal,
    /// Shed first: as soon as the queue is above its high-water mark.
    Low,
}

/// A finished span, as the pipeline records and exports it.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanData {
    /// Ids, flags and trace state.
    pub context: SpanContext,
    /// The parent span, or [`SpanId::INVALID`] for a root span.
    pub parent_span_id: SpanId,
    /// Whether the parent span is remote (its context came from another
    /// process, e.g. a `traceparent` header): OTLP's span flags carry it
    /// (bits 8 and 9). A span's own context is never remote.
    pub parent_is_remote: bool,
    /// The operation's name.
    pub name: Str,
    /// The span's role.
    pub kind: SpanKind,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
    /// Attributes.
    pub attributes: Vec<KeyValue>,
    /// Attributes discarded by the limits.
    pub dropped_attributes_count: u32,
    /// Events.
    pub events: Vec<Event>,
    /// Events discarded by the limits.
    pub dropped_events_count: u32,
    /// Links.
    pub links: Vec<Link>,
    /// Links discarded by the limits.
    pub dropped_links_count: u32,
    /// Status.
    pub status: Status,
    /// Shedding priority (not exported).
    pub priority: Priority,
    /// The instrumentation scope that made the span (see
    /// [`Encoder::add_scope`](crate::Encoder::add_scope) and
    /// [`Pipeline::tracer`](crate::Pipeline::tracer)).
    pub scope: ScopeId,
    /// Attributes this span shares with others, encoded once (see
    /// [`SharedAttributes`]): exported after [`attributes`](Self::attributes),
    /// and counted with them against the [`SpanLimits`].
    pub shared_attributes: Option<&'static SharedAttributes>,
}

/// Attributes that many spans carry unchanged (a `tracing` callsite's
/// `code.*` location, a component's fixed labels), encoded once: a span
/// that refers to them through [`SpanData::shared_attributes`] has their
/// protobuf bytes copied into its own encoding, instead of each attribute
/// being encoded again for every span.
///
/// They are the span's attributes in every other respect: exported after
/// the span's own [`attributes`](SpanData::attributes) (in both
/// encodings), and counted with them against the [`SpanLimits`]. Keys are
/// unique in the export: a shared attribute whose key the span's own
/// attributes also have is left out (the span's own value wins; it is a
/// replacement, not counted as dropped), and one with an empty key is left
/// out and counted in the span's dropped attributes. A span
/// whose own and shared attributes together are over the count limit, or
/// whose shared strings or byte arrays are over the value length limit,
/// has the shared
/// ones copied into its own list when it is recorded and cut there like
/// any other (a slower path, which the limits' defaults never take).
///
/// A span holds them by a `&'static` reference, so that recording a span
/// touches no shared reference count; make them once per set (per
/// callsite, per component) and leak them, as [`leak`](Self::leak) does.
///
/// ```
/// use otlp_exporter::{Encoder, Encoding, KeyValue, Resource, SharedAttributes, SpanData};
///
/// let location: &'static SharedAttributes = SharedAttributes::leak(vec![
///     KeyValue::new("code.file.path", "src/main.rs"),
///     KeyValue::new("code.line.number", 42),
/// ]);
/// let mut span = SpanData::new("work");
/// span.attributes.push(KeyValue::new("user.id", 7));
/// span.shared_attributes = Some(location);
/// assert_eq!(span.attributes_len(), 3);
///
/// // Exported as if the span held all three itself.
/// let mut inline = span.clone();
/// inline.shared_attributes = None;
/// inline.attributes.extend_from_slice(location.attributes());
/// let encoder = Encoder::new(Resource::new("app"));
/// for encoding in [Encoding::Protobuf, Encoding::Json] {
///     assert_eq!(
///         encoder.encode(&[span.clone()], encoding).requests[0].body,
///         encoder.encode(&[inline.clone()], encoding).requests[0].body,
///     );
/// }
/// ```
pub struct SharedAttributes {
    attributes: Vec<KeyValue>,
    /// The attributes as `Span.attributes` fields (field 9), those nested
    /// too deep left out.
    proto: Box<[u8]>,
    /// How many were left out of `proto` (nested too deep).
    left_out: u32,
    /// The length of the longest string (in characters) or byte array (in
    /// bytes) among the values (arrays' elements included): what the value
    /// length limit is checked against.
    longest: usize,
    /// Bit `len % 64` set for each key's length: a quick test of whether a
    /// span's own attribute may share a key with the set (see
    /// [`overlaps`](Self::overlaps)).
    key_lengths: u64,
}

impl SharedAttributes {
    /// Encodes `attributes` once.
    pub fn new(attributes: Vec<KeyValue>) -> Self {
        // Each key once (the spec's unique keys; found by review).
        let attributes = last_value_wins(attributes);
        let (proto, left_out) = crate::encode::shared_attributes(&attributes);
        let longest = attributes
            .iter()
            .map(|kv| longest_value(&kv.value))
            .max()
            .unwrap_or(0);
        let key_lengths = attributes
            .iter()
            .fold(0u64, |bits, kv| bits | 1 << (kv.key.len() % 64));
        SharedAttributes {
            attributes,
            proto: proto.into_boxed_slice(),
            left_out,
            longest,
            key_lengths,
        }
    }

    /// [`new`](Self::new), leaked: for a set made once and kept for the
    /// rest of the program (its memory is never given back).
    pub fn leak(attributes: Vec<KeyValue>) -> &'static Self {
        Box::leak(Box::new(Self::new(attributes)))
    }

    /// The attributes, as given.
    pub fn attributes(&self) -> &[KeyValue] {
        &self.attributes
    }

    /// How many attributes there are.
    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }

    /// Whether one of `own` (a span's own attributes) has the key of one of
    /// these: that one is then left out of the span's export (the span's
    /// own value wins). A test of each own key's length against the set's
    /// first (no string is compared unless a length matches), so that the
    /// usual span, whose keys are not the set's, pays a few instructions.
    #[inline]
    pub(crate) fn overlaps(&self, own: &[KeyValue]) -> bool {
        own.iter()
            .any(|kv| self.key_lengths >> (kv.key.len() % 64) & 1 != 0 && self.has_key(&kv.key))
    }

    /// Whether one of these has `key`.
    #[cold]
    pub(crate) fn has_key(&self, key: &str) -> bool {
        self.attributes.iter().any(|kv| kv.key == key)
    }

    /// Their protobuf encoding (`Span.attributes` fields), and how many of
    /// them it leaves out (values nested too deep).
    pub(crate) fn proto(&self) -> (&[u8], u32) {
        (&self.proto, self.left_out)
    }

    /// Whether every string and byte array among them is within `limits`'
    /// value length
    /// (the count is the span's to check): a set that is not is copied
    /// into the span's own attributes when it is recorded, and cut there.
    ///
    /// ```
    /// use otlp_exporter::{KeyValue, SharedAttributes, SpanLimits};
    /// let set = SharedAttributes::new(vec![KeyValue::new("code.file.path", "src/main.rs")]);
    /// assert!(set.within_value_length(&SpanLimits::default()));
    /// let short = SpanLimits { attribute_value_length: Some(4), ..SpanLimits::default() };
    /// assert!(!set.within_value_length(&short));
    /// ```
    pub fn within_value_length(&self, limits: &SpanLimits) -> bool {
        limits
            .attribute_value_length
            .is_none_or(|limit| self.longest <= limit)
    }
}

impl std::fmt::Debug for SharedAttributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedAttributes")
            .field(&self.attributes)
            .finish()
    }
}

/// Two sets are equal when their attributes are (the encoding follows).
impl PartialEq for SharedAttributes {
    fn eq(&self, other: &Self) -> bool {
        self.attributes == other.attributes
    }
}

/// The length of the longest string (in characters) or byte array (in
/// bytes) in `v` (itself, or an array's elements at any depth), as the
/// value length limit counts them; 0 if there is none.
fn longest_value(v: &Value) -> usize {
    let mut longest = 0;
    let mut pending = vec![v];
    while let Some(v) = pending.pop() {
        match v {
            Value::Str(s) => longest = longest.max(s.chars().count()),
            Value::Bytes(b) => longest = longest.max(b.len()),
            Value::Array(items) => pending.extend(items.iter()),
            _ => {}
        }
    }
    longest
}

/// Names an [`InstrumentationScope`] in a pipeline's (or an encoder's)
/// table of scopes. A number, so that recording a span never touches a
/// shared reference count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ScopeId(pub(crate) u32);

impl ScopeId {
    /// The default scope, named after this crate.
    pub const DEFAULT: ScopeId = ScopeId(0);
}

/// `attributes.push(KeyValue { key, value })`, with both fields written in
/// place in the vector, the value as its variant is.
///
/// The same result as `attributes.push(KeyValue::new(key, value))`, for
/// hot paths: a `KeyValue` built whole is assembled on the stack with
/// narrow stores and then copied into the vector with wide loads, which an
/// x86-64 CPU cannot forward from those stores (a stall of about ten
/// cycles per attribute, seen with `perf annotate` on the span and the
/// tracing layer's record paths, which use this).
///
/// ```
/// use otlp_exporter::{KeyValue, Str, Value, push_attribute};
/// let mut attributes = Vec::new();
/// push_attribute(&mut attributes, Str::Borrowed("http.response.status_code"), Value::I64(200));
/// assert_eq!(attributes, [KeyValue::new("http.response.status_code", 200)]);
/// ```
#[inline(always)]
pub fn push_attribute(attributes: &mut Vec<KeyValue>, key: Str, value: Value) {
    attributes.reserve(1);
    let len = attributes.len();
    // SAFETY: `reserve` made room for one more; both fields are written
    // before the length covers them.
    unsafe {
        let slot = attributes.as_mut_ptr().add(len);
        std::ptr::addr_of_mut!((*slot).key).write(key);
        let at = std::ptr::addr_of_mut!((*slot).value);
        // A scalar (or a borrowed string) is written as itself, and `value`
        // then forgotten: it owns nothing, and its drop would be a call.
        match value {
            Value::I64(i) => {
                at.write(Value::I64(i));
                std::mem::forget(value);
            }
            Value::Bool(b) => {
                at.write(Value::Bool(b));
                std::mem::forget(value);
            }
            Value::F64(f) => {
                at.write(Value::F64(f));
                std::mem::forget(value);
            }
            // A borrowed string too: moved whole, it went through the stack.
            Value::Str(Cow::Borrowed(s)) => {
                at.write(Value::Str(Cow::Borrowed(s)));
                std::mem::forget(value);
            }
            other => at.write(other),
        }
        attributes.set_len(len + 1);
    }
}

/// Whether an attribute of `key` and `value` owns no memory (a borrowed
/// key, and a number, a bool or a borrowed string), so that it can be
/// forgotten instead of dropped.
#[inline(always)]
pub(crate) fn owns_nothing(key: &Str, value: &Value) -> bool {
    matches!(key, Cow::Borrowed(_)) && value_owns_nothing(value)
}

/// The value's half of [`owns_nothing`].
#[inline(always)]
pub(crate) fn value_owns_nothing(value: &Value) -> bool {
    matches!(
        value,
        Value::Bool(_) | Value::I64(_) | Value::F64(_) | Value::Str(Cow::Borrowed(_))
    )
}

/// Empties `attributes`, keeping its capacity: when none of them owns
/// memory (a borrowed key, and a number, a bool or a borrowed string: what
/// a span's attributes nearly always are), by setting the length, which
/// skips a drop call per key and per value.
#[inline]
fn clear_attributes(attributes: &mut Vec<KeyValue>) {
    let owns_nothing = attributes.iter().all(|kv| owns_nothing(&kv.key, &kv.value));
    if owns_nothing {
        // SAFETY: 0 is within the capacity; the values forgotten own
        // nothing (checked above), so nothing is leaked.
        unsafe { attributes.set_len(0) };
    } else {
        attributes.clear();
    }
}

impl SpanData {
    /// A sampled root span with fresh random ids and no times set.
    pub fn new(name: impl Into<Str>) -> Self {
        Self::with_context(name, SpanContext::new(TraceId::random(), SpanId::random()))
    }

    /// Makes this span blank again, as [`with_context`](Self::with_context)
    /// (an empty name, [`SpanContext::INVALID`]) would, but in place: its
    /// vectors keep their capacity. For storage reused from one span to
    /// the next, as after [`Pipeline::record_in_place`](crate::Pipeline::record_in_place).
    /// Field by field: rebuilding the whole `SpanData` would run the drop
    /// glue of every field.
    ///
    /// ```
    /// use otlp_exporter::{KeyValue, SpanContext, SpanData};
    /// let mut span = SpanData::new("work");
    /// span.attributes.push(KeyValue::new("k", 1));
    /// span.clear();
    /// assert_eq!(span, SpanData::with_context("", SpanContext::INVALID));
    /// assert!(span.attributes.capacity() >= 1);
    /// ```
    pub fn clear(&mut self) {
        self.context = SpanContext::INVALID;
        self.parent_span_id = SpanId::INVALID;
        self.parent_is_remote = false;
        self.name = Str::Borrowed("");
        self.kind = SpanKind::Internal;
        self.start_time_unix_nano = 0;
        self.priority = Priority::Normal;
        self.scope = ScopeId::DEFAULT;
        self.reset_for_reuse();
    }

    /// [`clear`](Self::clear) for storage about to be reused by the record
    /// path's `begin` (span.rs), which sets the name, the context, the
    /// parent, the kind, the priority, the scope and the start time
    /// itself: only what it does not set is reset here (the old name and
    /// context are dropped when `begin` overwrites them).
    #[inline]
    pub(crate) fn reset_for_reuse(&mut self) {
        // SAFETY: `false` promises nothing.
        unsafe { self.reset_for_reuse_known(false) }
    }

    /// [`reset_for_reuse`](Self::reset_for_reuse), told by a caller that
    /// kept count (`Span`) whether every attribute owns nothing
    /// ([`owns_nothing`]): then they are forgotten without a look at each.
    ///
    /// # Safety
    ///
    /// If `attributes_own_nothing`, [`owns_nothing`] holds for every
    /// attribute (else their memory would leak).
    #[inline]
    pub(crate) unsafe fn reset_for_reuse_known(&mut self, attributes_own_nothing: bool) {
        self.end_time_unix_nano = 0;
        if attributes_own_nothing {
            debug_assert!(
                self.attributes
                    .iter()
                    .all(|kv| owns_nothing(&kv.key, &kv.value))
            );
            // SAFETY: 0 is within the capacity; what is forgotten owns
            // nothing (the caller's promise).
            unsafe { self.attributes.set_len(0) };
        } else if !self.attributes.is_empty() {
            clear_attributes(&mut self.attributes);
        }
        self.dropped_attributes_count = 0;
        if !self.events.is_empty() {
            self.events.clear();
        }
        self.dropped_events_count = 0;
        if !self.links.is_empty() {
            self.links.clear();
        }
        self.dropped_links_count = 0;
        self.status = Status::default();
        self.shared_attributes = None;
    }

    /// How many attributes the span has: its own and its
    /// [shared](Self::shared_attributes) ones (what the limits count).
    ///
    /// ```
    /// use otlp_exporter::{KeyValue, SpanData};
    /// let mut span = SpanData::new("work");
    /// span.attributes.push(KeyValue::new("k", 1));
    /// assert_eq!(span.attributes_len(), 1);
    /// ```
    #[inline]
    pub fn attributes_len(&self) -> usize {
        self.attributes.len() + self.shared_attributes.map_or(0, SharedAttributes::len)
    }

    /// Copies the shared attributes, if any, into the span's own list (after
    /// its own), so that the limits can cut them like the others. One
    /// nested too deep to be exported is counted as dropped instead (the
    /// encoders would leave it out and count it): what is copied is at most
    /// [`MAX_VALUE_DEPTH`](crate::encode::MAX_VALUE_DEPTH) deep, so the
    /// copy's recursion stays small whatever the set holds.
    #[cold]
    fn unshare_attributes(&mut self) {
        if let Some(shared) = self.shared_attributes.take() {
            let own = self.attributes.len();
            for kv in &shared.attributes {
                // The span's own attribute wins over a shared one with its
                // key (left out, as the encoders leave it out); an empty
                // key, dropped and counted whoever holds it, replaces
                // nothing.
                if !kv.key.is_empty() && self.attributes[..own].iter().any(|o| o.key == kv.key) {
                    continue;
                }
                if crate::encode::too_deep(&kv.value) {
                    self.dropped_attributes_count = self.dropped_attributes_count.saturating_add(1);
                } else {
                    self.attributes.push(kv.clone());
                }
            }
        }
    }

    /// A root span with the given context and no times set.
    pub fn with_context(name: impl Into<Str>, context: SpanContext) -> Self {
        SpanData {
            context,
            parent_span_id: SpanId::INVALID,
            parent_is_remote: false,
            name: name.into(),
            kind: SpanKind::Internal,
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: Status::default(),
            priority: Priority::Normal,
            scope: ScopeId::DEFAULT,
            shared_attributes: None,
        }
    }
}

/// The entity that produced the spans: a service, a process, a host.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Resource {
    /// Attributes, `service.name` among them. A key given twice is exported
    /// once, at its first place, with its last value; one that is empty is
    /// left out and counted in the dropped attributes (the spec's unique,
    /// non-empty keys).
    pub attributes: Vec<KeyValue>,
    /// Attributes discarded.
    pub dropped_attributes_count: u32,
    /// Schema URL of the attributes (empty if none).
    pub schema_url: Str,
}

/// A single-value variable (`OTEL_SERVICE_NAME`): `None` when unset, and
/// when not UTF-8, with a warning (found by review: read as a list of
/// entries, a name with a comma was cut to its first part).
fn utf8_value(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(v)) => {
            let value = v.to_string_lossy().into_owned();
            let _ = std::panic::catch_unwind(|| {
                tracing::warn!(var, %value, "the value is not UTF-8, ignored");
            });
            None
        }
    }
}

/// A resource variable's comma-separated entries that are UTF-8 (`None`
/// when unset): an entry that is not is left out with a warning, as a
/// malformed entry is, and the others kept (found by review: a variable
/// with any byte that is not UTF-8 was dropped whole, silently).
fn utf8_entries(var: &str) -> Option<String> {
    let raw = std::env::var_os(var)?;
    if let Some(s) = raw.to_str() {
        return Some(s.to_owned());
    }
    let bytes = raw.as_encoded_bytes();
    let mut kept = Vec::new();
    for entry in bytes.split(|&b| b == b',') {
        match std::str::from_utf8(entry) {
            Ok(e) => kept.push(e),
            Err(_) => {
                let entry = String::from_utf8_lossy(entry);
                let _ = std::panic::catch_unwind(|| {
                    tracing::warn!(var, %entry, "entry is not UTF-8, ignored");
                });
            }
        }
    }
    Some(kept.join(","))
}

impl Resource {
    /// A resource with `service.name` set.
    pub fn new(service_name: impl Into<Str>) -> Self {
        Resource {
            attributes: vec![KeyValue::new(
                "service.name",
                Value::Str(service_name.into()),
            )],
            ..Resource::default()
        }
    }

    /// The resource described by the environment, as the OpenTelemetry SDK
    /// spec says: `OTEL_RESOURCE_ATTRIBUTES` (`key=value,...`, values
    /// percent-decoded), then `OTEL_SERVICE_NAME`, which wins for
    /// `service.name`; then the SDK's own attributes where not set
    /// ([`with_sdk_defaults`](Self::with_sdk_defaults): `telemetry.sdk.*`,
    /// and `service.name` `unknown_service:` and the executable's file
    /// name if neither variable names a service).
    ///
    /// Malformed entries of `OTEL_RESOURCE_ATTRIBUTES` are skipped (the spec
    /// says to discard the whole variable on error; we keep the good entries
    /// and report the rest through `tracing`).
    pub fn from_env() -> Self {
        Self::env_only().with_sdk_defaults()
    }

    /// The environment's resource without the SDK's defaults: what
    /// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` say, nothing more.
    pub(crate) fn env_only() -> Self {
        Self::vars_only(
            utf8_entries("OTEL_RESOURCE_ATTRIBUTES").as_deref(),
            utf8_value("OTEL_SERVICE_NAME").as_deref(),
        )
    }

    /// [`Resource::from_env`] with the two variables given.
    ///
    /// ```
    /// use otlp_exporter::{Resource, Value};
    /// let r = Resource::from_vars(Some("deployment.environment=prod"), Some("checkout"));
    /// assert_eq!(r.get("service.name"), Some(&Value::from("checkout")));
    /// assert_eq!(r.get("deployment.environment"), Some(&Value::from("prod")));
    /// ```
    pub fn from_vars(resource_attributes: Option<&str>, service_name: Option<&str>) -> Self {
        Self::vars_only(resource_attributes, service_name).with_sdk_defaults()
    }

    /// [`from_vars`](Self::from_vars) without the SDK's defaults.
    fn vars_only(resource_attributes: Option<&str>, service_name: Option<&str>) -> Self {
        let mut r = Resource::default();
        for entry in resource_attributes.unwrap_or("").split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            match entry.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    match (percent_decode(k.trim()), percent_decode(v.trim())) {
                        (Some(k), Some(v)) => r.set(KeyValue::new(k, v)),
                        _ => tracing::warn!(
                            entry,
                            "OTEL_RESOURCE_ATTRIBUTES: bad percent-encoding, entry ignored"
                        ),
                    }
                }
                _ => tracing::warn!(
                    entry,
                    "OTEL_RESOURCE_ATTRIBUTES: entry is not key=value, ignored"
                ),
            }
        }
        if let Some(name) = service_name.map(str::trim).filter(|n| !n.is_empty()) {
            r.set(KeyValue::new("service.name", name.to_owned()));
        }
        r
    }

    /// This resource merged over the one the SDK provides, as the
    /// OpenTelemetry resource SDK spec says (this resource's values win):
    /// `telemetry.sdk.name` `"otlp-exporter"`, `telemetry.sdk.language`
    /// `"rust"` and `telemetry.sdk.version` (this crate's version) are
    /// added where not set, after this resource's attributes; and if no
    /// `service.name` is set, it is `unknown_service:` followed by the file
    /// name of the current executable (`process.executable.name`), or
    /// plain `unknown_service` if that is not known. On Linux the
    /// executable's path reads `<path> (deleted)` once its file was
    /// replaced or deleted while the process runs (a deploy); that suffix
    /// is not part of the name and is left out (found by review: the name
    /// was `unknown_service:app (deleted)`).
    ///
    /// A pipeline exports its resource (the builder's, or
    /// [`from_env`](Self::from_env)'s) merged so; an [`Encoder`](crate::Encoder)
    /// exports its resource as given. A resource given to the builder
    /// without `service.name` first takes the environment's, if it names
    /// one ([`PipelineBuilder::resource`](crate::PipelineBuilder::resource)).
    ///
    /// ```
    /// use otlp_exporter::{Resource, Value};
    /// let r = Resource::new("checkout").with_sdk_defaults();
    /// assert_eq!(r.get("service.name"), Some(&Value::from("checkout")));
    /// assert_eq!(r.get("telemetry.sdk.language"), Some(&Value::from("rust")));
    /// assert_eq!(r.get("telemetry.sdk.name"), Some(&Value::from("otlp-exporter")));
    /// ```
    pub fn with_sdk_defaults(mut self) -> Self {
        if !self.attributes.iter().any(|kv| kv.key == "service.name") {
            let exe = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .map(|n| match n.strip_suffix(" (deleted)") {
                    Some(name) => name.to_owned(),
                    None => n,
                })
                .filter(|n| !n.is_empty());
            let name = match exe {
                Some(exe) => Str::Owned(format!("unknown_service:{exe}")),
                None => Str::Borrowed("unknown_service"),
            };
            self.attributes.push(KeyValue::new("service.name", name));
        }
        for (key, value) in [
            ("telemetry.sdk.language", "rust"),
            ("telemetry.sdk.name", env!("CARGO_PKG_NAME")),
            ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
        ] {
            if !self.attributes.iter().any(|kv| kv.key == key) {
                self.attributes.push(KeyValue::new(key, value));
            }
        }
        self
    }

    /// Sets an attribute, replacing one with the same key.
    pub fn set(&mut self, kv: KeyValue) {
        match self.attributes.iter_mut().find(|a| a.key == kv.key) {
            Some(a) => a.value = kv.value,
            None => self.attributes.push(kv),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| &a.value)
    }
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly (`from_str_radix` alone would take a
            // sign: `%+A`).
            let &[hi, lo] = bytes.get(i + 1..i + 3)? else {
                return None;
            };
            let digit = |b: u8| (b as char).to_digit(16);
            out.push((digit(hi)? * 16 + digit(lo)?) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The library or module that produced the spans.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct InstrumentationScope {
    /// Its name, e.g. the crate's.
    pub name: Str,
    /// Its version (empty if none).
    pub version: Str,
    /// Attributes. A key given twice is exported once, at its first place,
    /// with its last value; one that is empty is left out and counted in
    /// the dropped attributes (the spec's unique, non-empty keys).
    pub attributes: Vec<KeyValue>,
    /// Schema URL (empty if none).
    pub schema_url: Str,
}

impl InstrumentationScope {
    /// A scope with a name and version.
    pub fn new(name: impl Into<Str>, version: impl Into<Str>) -> Self {
        InstrumentationScope {
            name: name.into(),
            version: version.into(),
            ..Default::default()
        }
    }
}

impl InstrumentationScope {
    /// Equal as a pipeline's (and an encoder's) scope table sees it: name,
    /// version, schema URL and attributes (in order) equal, with floats
    /// compared by their bits ([`Value::same`]), so that a scope with a NaN
    /// attribute equals itself (the derived `==` says it does not, which
    /// registered such a scope again for every span: found by review).
    pub(crate) fn same(&self, other: &InstrumentationScope) -> bool {
        self.name == other.name
            && self.version == other.version
            && self.schema_url == other.schema_url
            && self.attributes.len() == other.attributes.len()
            && self
                .attributes
                .iter()
                .zip(&other.attributes)
                .all(|(a, b)| a.key == b.key && a.value.same(&b.value))
    }

    /// A hash agreeing with [`same`](Self::same), of every part (the
    /// attributes too: scopes that differ only in them, such as one tracer
    /// per tenant, would otherwise share one hash and be searched one by
    /// one under the table's lock; found by review).
    pub(crate) fn table_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.name.hash(&mut h);
        self.version.hash(&mut h);
        self.schema_url.hash(&mut h);
        self.attributes.len().hash(&mut h);
        for kv in &self.attributes {
            kv.key.hash(&mut h);
            kv.value.hash_bits(&mut h);
        }
        h.finish()
    }
}

impl Value {
    /// Equal, with floats compared by their bits: a total equality (NaN
    /// equals the same NaN; `0.0` and `-0.0` differ, as they are exported
    /// differently).
    pub(crate) fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::I64(a), Value::I64(b)) => a == b,
            (Value::F64(a), Value::F64(b)) => a.to_bits() == b.to_bits(),
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            _ => false,
        }
    }

    /// Hashes the value consistently with [`same`](Self::same).
    fn hash_bits(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        match self {
            Value::Str(v) => (0u8, v).hash(h),
            Value::Bool(v) => (1u8, v).hash(h),
            Value::I64(v) => (2u8, v).hash(h),
            Value::F64(v) => (3u8, v.to_bits()).hash(h),
            Value::Bytes(v) => (4u8, v).hash(h),
            Value::Array(v) => {
                (5u8, v.len()).hash(h);
                for x in v {
                    x.hash_bits(h);
                }
            }
        }
    }
}

/// Limits on what one span may carry (OpenTelemetry SDK spec defaults:
/// 128 of each, no value-length limit). What is cut is counted in the
/// span's `dropped_*_count` fields; over-long string values are truncated
/// to the limit's number of characters ([`truncate_chars`]), byte arrays to
/// its number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanLimits {
    /// Most attributes per span.
    pub attribute_count: usize,
    /// Longest string attribute value, in characters (Unicode scalar
    /// values, each counted as 1, as the specification counts them), and
    /// longest byte array value, in bytes; arrays are cut element by element
    /// (`None`: unlimited). Other values are never cut.
    pub attribute_value_length: Option<usize>,
    /// Most events per span.
    pub event_count: usize,
    /// Most links per span.
    pub link_count: usize,
    /// Most attributes per event.
    pub attributes_per_event: usize,
    /// Most attributes per link.
    pub attributes_per_link: usize,
}

impl Default for SpanLimits {
    fn default() -> Self {
        SpanLimits {
            attribute_count: 128,
            attribute_value_length: None,
            event_count: 128,
            link_count: 128,
            attributes_per_event: 128,
            attributes_per_link: 128,
        }
    }
}

impl SpanLimits {
    /// The defaults, overridden by `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`
    /// (or `OTEL_ATTRIBUTE_COUNT_LIMIT`), `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`
    /// (or `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`), `OTEL_SPAN_EVENT_COUNT_LIMIT`,
    /// `OTEL_SPAN_LINK_COUNT_LIMIT`, `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT` (or
    /// `OTEL_ATTRIBUTE_COUNT_LIMIT`) and `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`
    /// (or `OTEL_ATTRIBUTE_COUNT_LIMIT`): the general attribute limits
    /// apply wherever a model-specific one is not set.
    pub fn from_env() -> Result<Self, crate::ConfigError> {
        let mut l = SpanLimits::default();
        let var = |names: &[&'static str]| -> Result<Option<usize>, crate::ConfigError> {
            for name in names {
                if let Some(v) = crate::config::env_usize(name)? {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };
        if let Some(v) = var(&[
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_ATTRIBUTE_COUNT_LIMIT",
        ])? {
            l.attribute_count = v;
        }
        if let Some(v) = var(&[
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        ])? {
            l.attribute_value_length = Some(v);
        }
        if let Some(v) = var(&["OTEL_SPAN_EVENT_COUNT_LIMIT"])? {
            l.event_count = v;
        }
        if let Some(v) = var(&["OTEL_SPAN_LINK_COUNT_LIMIT"])? {
            l.link_count = v;
        }
        // The general attribute count limit is the default of each
        // model-specific one (the spec's `AttributeLimits`), events' and
        // links' included, as the OpenTelemetry SDKs read it.
        if let Some(v) = var(&[
            "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_ATTRIBUTE_COUNT_LIMIT",
        ])? {
            l.attributes_per_event = v;
        }
        if let Some(v) = var(&[
            "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_ATTRIBUTE_COUNT_LIMIT",
        ])? {
            l.attributes_per_link = v;
        }
        Ok(l)
    }

    /// Applies the limits to a whole span (for spans built without
    /// [`Span`](crate::Span)): cuts what is over, counts it, truncates long
    /// strings and byte arrays. Cheap when nothing is over. The `dropped_*_count` fields
    /// saturate at `u32::MAX` (a span that arrives already near the top
    /// keeps `u32::MAX`; nothing wraps or panics).
    pub fn apply(&self, span: &mut SpanData) {
        // Most spans: nothing to cut or truncate (no value length limit,
        // counts within), known from the counts alone, and no key twice
        // (the spec's unique keys: a span whose keys may repeat takes the
        // whole pass, which makes them unique; found by review).
        if self.attribute_value_length.is_none()
            && span.attributes_len() <= self.attribute_count
            && span.events.is_empty()
            && span.links.is_empty()
            && !repeats_a_key(&span.attributes)
        {
            return;
        }
        if let Some(shared) = span.shared_attributes
            && (span.attributes.len() + shared.len() > self.attribute_count
                || !shared.within_value_length(self))
        {
            span.unshare_attributes();
        }
        span.dropped_attributes_count = span
            .dropped_attributes_count
            .saturating_add(self.cut_attributes(&mut span.attributes, self.attribute_count));
        if span.events.len() > self.event_count {
            span.dropped_events_count = span
                .dropped_events_count
                .saturating_add(count32(span.events.len() - self.event_count));
            span.events.truncate(self.event_count);
        }
        for e in &mut span.events {
            e.dropped_attributes_count = e
                .dropped_attributes_count
                .saturating_add(self.cut_attributes(&mut e.attributes, self.attributes_per_event));
        }
        if span.links.len() > self.link_count {
            span.dropped_links_count = span
                .dropped_links_count
                .saturating_add(count32(span.links.len() - self.link_count));
            span.links.truncate(self.link_count);
        }
        for l in &mut span.links {
            l.dropped_attributes_count = l
                .dropped_attributes_count
                .saturating_add(self.cut_attributes(&mut l.attributes, self.attributes_per_link));
        }
    }

    /// Makes the keys unique and non-empty ([`unique_keys`]), then keeps at
    /// most `max` attributes and truncates long values; returns how many
    /// attributes were dropped (those with an empty key and those over
    /// `max`; a duplicate key's earlier value, replaced, is not counted).
    /// Duplicates are removed first, so that they never push distinct keys
    /// out.
    pub(crate) fn cut_attributes(&self, attrs: &mut Vec<KeyValue>, max: usize) -> u32 {
        let empty = unique_keys(attrs);
        let dropped = attrs.len().saturating_sub(max);
        attrs.truncate(max);
        if let Some(limit) = self.attribute_value_length {
            for kv in attrs.iter_mut() {
                truncate_value(&mut kv.value, limit);
            }
        }
        count32(dropped).saturating_add(count32(empty))
    }
}

/// Whether some key appears twice in `attrs`: one bit test per attribute
/// (keys of lengths not seen before cannot repeat); the keys are compared
/// only when two have lengths alike modulo 64.
fn repeats_a_key(attrs: &[KeyValue]) -> bool {
    let mut lengths = 0u64;
    let mut alike = false;
    for kv in attrs {
        let bit = 1u64 << (kv.key.len() % 64);
        alike |= lengths & bit != 0;
        lengths |= bit;
    }
    alike && repeats_a_key_slow(attrs)
}

#[cold]
fn repeats_a_key_slow(attrs: &[KeyValue]) -> bool {
    let mut keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// `attrs` with each key once, at its first place, holding its last
/// value; empty keys are kept (the encoders leave them out and count
/// them). For attribute sets made once ([`SharedAttributes::new`], a
/// resource and a scope when an encoder takes them).
pub(crate) fn last_value_wins(attrs: Vec<KeyValue>) -> Vec<KeyValue> {
    if !repeats_a_key(&attrs) {
        return attrs;
    }
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out: Vec<KeyValue> = Vec::with_capacity(attrs.len());
    for kv in attrs {
        if kv.key.is_empty() {
            out.push(kv);
            continue;
        }
        match at.get(kv.key.as_ref() as &str) {
            Some(&i) => out[i].value = kv.value,
            None => {
                at.insert(kv.key.to_string(), out.len());
                out.push(kv);
            }
        }
    }
    out
}

/// Makes the keys of `attrs` unique and non-empty, as the OpenTelemetry
/// spec says every attribute collection's keys are: an attribute with an
/// empty key is removed; of several with the same key, one is kept, at the
/// place of the first, with the value of the last (what
/// [`Span::set_attribute`](crate::Span::set_attribute) does when a key is
/// set again). The others keep their order. Returns how many attributes had
/// an empty key (dropped, for the owner's dropped count; the replaced
/// duplicates are not counted).
///
/// No allocation and quadratic comparisons for a few attributes (the usual
/// event or link); sorted indices past [`UNIQUE_BY_SCAN`].
pub(crate) fn unique_keys(attrs: &mut Vec<KeyValue>) -> usize {
    let n = attrs.len();
    let mut empty = 0;
    if n <= UNIQUE_BY_SCAN {
        let mut kept = 0;
        for r in 0..n {
            if attrs[r].key.is_empty() {
                empty += 1;
                continue;
            }
            let (before, rest) = attrs.split_at_mut(r);
            match before[..kept].iter().position(|kv| kv.key == rest[0].key) {
                Some(at) => {
                    before[at].value = std::mem::replace(&mut rest[0].value, Value::Bool(false));
                }
                None => {
                    attrs.swap(kept, r);
                    kept += 1;
                }
            }
        }
        attrs.truncate(kept);
        return empty;
    }
    let mut order: Vec<usize> = (0..n).collect();
    // By key, and by place among equal keys (a stable sort keeps it).
    order.sort_by(|&a, &b| attrs[a].key.cmp(&attrs[b].key));
    let mut keep = vec![true; n];
    let mut i = 0;
    while i < n {
        let first = order[i];
        let mut j = i + 1;
        while j < n && attrs[order[j]].key == attrs[first].key {
            j += 1;
        }
        if attrs[first].key.is_empty() {
            empty += j - i;
            for &k in &order[i..j] {
                keep[k] = false;
            }
        } else if j - i > 1 {
            let last = order[j - 1];
            attrs[first].value = std::mem::replace(&mut attrs[last].value, Value::Bool(false));
            for &k in &order[i + 1..j] {
                keep[k] = false;
            }
        }
        i = j;
    }
    let mut at = 0;
    attrs.retain(|_| {
        at += 1;
        keep[at - 1]
    });
    empty
}

/// Up to this many attributes, [`unique_keys`] compares each with those
/// kept before it.
const UNIQUE_BY_SCAN: usize = 32;

fn count32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The longest prefix of `s` of at most `limit` characters (Unicode scalar
/// values): how the attribute value length limit
/// ([`SpanLimits::attribute_value_length`]) cuts a string, counting each
/// character as 1, as the OpenTelemetry specification says.
///
/// ```
/// use otlp_exporter::truncate_chars;
/// assert_eq!(truncate_chars("ééééééé", 5), "ééééé");
/// assert_eq!(truncate_chars("short", 10), "short");
/// ```
#[inline]
pub fn truncate_chars(s: &str, limit: usize) -> &str {
    // No more characters than bytes: a string within the limit in bytes
    // is within it in characters, with no count.
    if s.len() <= limit {
        return s;
    }
    match s.char_indices().nth(limit) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// Truncates string values to `limit` characters ([`truncate_chars`]) and
/// byte arrays to `limit` bytes, arrays' elements too, as the spec's
/// attribute limits say. Other types are left alone.
///
/// Iterative: a value nested arbitrarily deep does not grow the stack (the
/// array elements still to visit are kept in a vector, allocated only for
/// arrays).
pub(crate) fn truncate_value(v: &mut Value, limit: usize) {
    let mut pending: Vec<&mut Value> = Vec::new();
    let mut next = Some(v);
    while let Some(v) = next.take().or_else(|| pending.pop()) {
        match v {
            Value::Str(s) if s.len() > limit => {
                let end = truncate_chars(s, limit).len();
                match s {
                    Str::Borrowed(b) => *s = Str::Borrowed(&b[..end]),
                    Str::Owned(o) => o.truncate(end),
                }
            }
            Value::Bytes(b) if b.len() > limit => b.truncate(limit),
            Value::Array(items) => pending.extend(items.iter_mut()),
            _ => {}
        }
    }
}
