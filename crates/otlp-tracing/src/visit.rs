//! From `tracing` field values to OTLP attributes: typed where OTLP has
//! the type, strings otherwise; the `otel.*` fields; event messages and
//! errors. Values that become attributes are cut to the pipeline's
//! value-length limit while they are written (a huge `Debug` output is
//! never held whole); the `otel.*` fields, an event's `message` and its
//! `error` text, which become a name, a kind or a status, are not. A
//! `Debug` or `Display` implementation that panics yields a marker value
//! instead of a panic.

use std::fmt::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use otlp_exporter::{KeyValue, SpanKind, StatusCode, Str, Value, push_attribute};
use tracing::field::{Field, Visit};

use crate::location::LogLocation;

/// The value recorded for a field (or the name recorded for an event whose
/// message) whose `Debug` or `Display` implementation panicked: the panic
/// is caught (the panic hook still reports it) and goes no further.
///
/// ```
/// assert_eq!(otlp_tracing::PANICKED_VALUE, "<formatting panicked>");
/// ```
pub const PANICKED_VALUE: &str = "<formatting panicked>";

/// The longest prefix of `s` of at most `limit` characters (the value
/// length limit counts characters).
pub(crate) fn prefix(s: &str, limit: usize) -> &str {
    otlp_exporter::truncate_chars(s, limit)
}

/// A string writer that keeps at most `limit` characters and then refuses
/// more (so that formatting stops early).
struct Bounded {
    s: String,
    /// Characters it still takes (`None`: no limit, nothing counted).
    room: Option<usize>,
}

impl Write for Bounded {
    fn write_str(&mut self, part: &str) -> fmt::Result {
        let Some(room) = self.room else {
            self.s.push_str(part);
            return Ok(());
        };
        let taken = prefix(part, room);
        self.s.push_str(taken);
        if taken.len() < part.len() {
            self.room = Some(0);
            return Err(fmt::Error);
        }
        // Not cut: the whole part, at most `room` characters.
        self.room = Some(room - part.chars().count());
        Ok(())
    }
}

/// Formats with `write`, keeping at most `limit` characters; a panic in
/// the user's formatting code gives [`PANICKED_VALUE`].
fn format_bounded(limit: Option<usize>, write: impl FnOnce(&mut Bounded) -> fmt::Result) -> String {
    let mut out = Bounded {
        s: String::new(),
        room: limit,
    };
    match catch_unwind(AssertUnwindSafe(|| {
        // An error only means the limit was reached (or the value's own
        // formatting failed): what was written is kept.
        let _ = write(&mut out);
    })) {
        Ok(()) => out.s,
        Err(payload) => {
            // The payload's own drop could panic too: never let it out.
            if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(again);
            }
            PANICKED_VALUE.to_owned()
        }
    }
}

pub(crate) fn debug_string(value: &dyn fmt::Debug, limit: Option<usize>) -> String {
    format_bounded(limit, |w| write!(w, "{value:?}"))
}

pub(crate) fn display_string(value: &dyn fmt::Display, limit: Option<usize>) -> String {
    format_bounded(limit, |w| write!(w, "{value}"))
}

fn str_value(s: &str, limit: Option<usize>) -> Value {
    let s = match limit {
        Some(l) => prefix(s, l),
        None => s,
    };
    Value::Str(Str::Owned(s.to_owned()))
}

/// u64 above `i64::MAX` (OTLP has no unsigned integers) as its decimal
/// string, as tracing-opentelemetry does.
pub(crate) fn u64_value(v: u64) -> Value {
    i64::try_from(v).map_or_else(|_| Value::Str(Str::Owned(v.to_string())), Value::I64)
}

fn i128_value(v: i128) -> Value {
    i64::try_from(v).map_or_else(|_| Value::Str(Str::Owned(v.to_string())), Value::I64)
}

fn u128_value(v: u128) -> Value {
    i64::try_from(v).map_or_else(|_| Value::Str(Str::Owned(v.to_string())), Value::I64)
}

/// `otel.kind` as tracing-opentelemetry reads it (any case).
pub(crate) fn parse_kind(s: &str) -> Option<SpanKind> {
    let s = s.trim();
    [
        ("server", SpanKind::Server),
        ("client", SpanKind::Client),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
        ("internal", SpanKind::Internal),
    ]
    .into_iter()
    .find(|(name, _)| s.eq_ignore_ascii_case(name))
    .map(|(_, kind)| kind)
}

/// `otel.status_code` as tracing-opentelemetry reads it (any case).
pub(crate) fn parse_status_code(s: &str) -> Option<StatusCode> {
    let s = s.trim();
    [
        ("ok", StatusCode::Ok),
        ("error", StatusCode::Error),
        ("unset", StatusCode::Unset),
    ]
    .into_iter()
    .find(|(name, _)| s.eq_ignore_ascii_case(name))
    .map(|(_, code)| code)
}

/// The `otel.*` fields of a span, which set the span's name, kind and
/// status instead of becoming attributes.
#[derive(Default)]
pub(crate) struct OtelFields {
    pub(crate) name: Option<Str>,
    pub(crate) kind: Option<SpanKind>,
    pub(crate) status_code: Option<StatusCode>,
    pub(crate) status_message: Option<Str>,
}

impl OtelFields {
    /// Takes a special field; false if `key` is not one.
    fn take(&mut self, key: &str, text: impl FnOnce() -> String) -> bool {
        match key {
            "otel.name" => self.name = Some(Str::Owned(text())),
            "otel.kind" => {
                if let Some(kind) = parse_kind(&text()) {
                    self.kind = Some(kind);
                }
            }
            "otel.status_code" => {
                if let Some(code) = parse_status_code(&text()) {
                    self.status_code = Some(code);
                }
            }
            // tracing-opentelemetry 0.34's name, and the one before it
            // (0.33 and earlier): either alone makes the status an error
            // with this description.
            "otel.status_description" | "otel.status_message" => {
                self.status_message = Some(Str::Owned(text()));
            }
            _ => return false,
        }
        true
    }
}

/// Collects a span's fields: attributes up to `max` (the rest counted in
/// `dropped`), and the `otel.*` fields. Keys are unique: a field named
/// twice in a callsite (or a record) keeps its last value, in the place of
/// the first, and counts once toward `max`; a field with an empty name is
/// dropped and counted (as the exporter would, but before it could take a
/// place under `max`).
pub(crate) struct SpanFields<'a> {
    pub(crate) attributes: &'a mut Vec<KeyValue>,
    pub(crate) max: usize,
    pub(crate) dropped: u32,
    pub(crate) limit: Option<usize>,
    pub(crate) otel: OtelFields,
}

impl SpanFields<'_> {
    #[inline(always)]
    fn push(&mut self, field: &Field, value: impl FnOnce(Option<usize>) -> Value) {
        let key = field.name();
        if self.attributes.len() < self.max
            && !key.is_empty()
            && !self.attributes.iter().any(|kv| kv.key == key)
        {
            push_attribute(self.attributes, Str::Borrowed(key), value(self.limit));
        } else {
            self.push_rare(key, value);
        }
    }

    /// A field without a name (dropped), named as one already collected
    /// (its value replaced), or past `max` (dropped): out of the hot path.
    #[cold]
    #[inline(never)]
    fn push_rare(&mut self, key: &'static str, value: impl FnOnce(Option<usize>) -> Value) {
        if key.is_empty() {
            self.dropped = self.dropped.saturating_add(1);
        } else if let Some(kv) = self.attributes.iter_mut().find(|kv| kv.key == key) {
            kv.value = value(self.limit);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    fn special(&mut self, field: &Field, text: impl FnOnce() -> String) -> bool {
        field.name().starts_with("otel.") && self.otel.take(field.name(), text)
    }
}

impl Visit for SpanFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, |_| Value::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, |_| Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, |_| u64_value(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.push(field, |_| i128_value(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.push(field, |_| u128_value(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, |_| Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // An `otel.*` field is a name, a kind or a status, not an
        // attribute: whole (found by review: `otel.name` was cut to the
        // value-length limit, and `otel.kind` then unreadable).
        if !self.special(field, || value.to_owned()) {
            self.push(field, |limit| str_value(value, limit));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, |limit| {
            Value::Str(Str::Owned(display_string(value, limit)))
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.special(field, || debug_string(value, None)) {
            self.push(field, |limit| {
                Value::Str(Str::Owned(debug_string(value, limit)))
            });
        }
    }
}

/// The value of a `log.*` field, as [`EventFields::log_field`] reads it.
enum LogValue<'a> {
    Str(&'a str),
    U64(u64),
    /// Of a type the location does not use.
    Other,
}

/// Collects an event's fields: `message` becomes the event's name, the
/// rest attributes (up to `max`, keys unique as for spans, empty ones
/// dropped and counted); an error value also gives `exception.message`.
///
/// As tracing-opentelemetry 0.34: an `error` field met before any
/// `message` (`#[instrument(err)]`'s event, `warn!(error = %e)`) makes the
/// event an exception: named `exception`, the error's text as
/// `exception.message` (instead of an `error` attribute, unless the value
/// is a `&dyn Error`, which keeps both), and the span's status an error
/// with that text (see `OtlpLayer::on_event`).
pub(crate) struct EventFields {
    /// The `message`, whole: the event's name.
    pub(crate) message: Option<String>,
    /// The text of the `error` field (or, without one, of the first
    /// `&dyn Error` value), whole: a status description.
    pub(crate) error: Option<String>,
    /// An `error` field came before any `message`.
    pub(crate) exception: bool,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) max: usize,
    pub(crate) dropped: u32,
    pub(crate) limit: Option<usize>,
    /// For an event of a `log` record (bridged by tracing-log, see
    /// [`LogLocation`]): the record's location, read from its `log.*`
    /// fields, which are then not attributes. `None` for other events.
    pub(crate) log: Option<LogLocation>,
}

impl EventFields {
    /// Takes a `log.*` field of a `log` record's event (its location, not
    /// an attribute): `true` if `key` is one, whatever its value's type
    /// (one of a type the location does not use is dropped).
    fn log_field(&mut self, key: &str, value: LogValue<'_>) -> bool {
        let Some(log) = &mut self.log else {
            return false;
        };
        let text = |v: LogValue<'_>| match v {
            LogValue::Str(s) => Some(s.to_owned()),
            LogValue::U64(_) | LogValue::Other => None,
        };
        match key {
            "log.target" => log.target = text(value),
            "log.module_path" => log.module_path = text(value),
            "log.file" => log.file = text(value),
            "log.line" => {
                log.line = match value {
                    LogValue::U64(n) => Some(n),
                    LogValue::Str(_) | LogValue::Other => None,
                }
            }
            _ => return false,
        }
        true
    }

    fn push(&mut self, key: &'static str, value: impl FnOnce(Option<usize>) -> Value) {
        if key.is_empty() {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        // One value per key, the last, where the first was: the layer's
        // `level`, pushed first, gives way to a field of that name.
        if let Some(kv) = self.attributes.iter_mut().find(|kv| kv.key == key) {
            kv.value = value(self.limit);
            return;
        }
        if self.attributes.len() < self.max {
            push_attribute(&mut self.attributes, Str::Borrowed(key), value(self.limit));
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Adds an attribute the layer itself sets (level, location), unless
    /// the event has a field of that name (which keeps its value).
    pub(crate) fn record_static(&mut self, key: Str, value: Value) {
        if self.attributes.iter().any(|kv| kv.key == key) {
            return;
        }
        if self.attributes.len() < self.max {
            push_attribute(&mut self.attributes, key, value);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// The `error` field's text (whole): an exception's message when no
    /// `message` came before it, else an `error` attribute.
    fn error_field(&mut self, text: String) {
        let key = if self.message.is_none() {
            self.exception = true;
            "exception.message"
        } else {
            "error"
        };
        self.push(key, |limit| str_value(&text, limit));
        self.error = Some(text);
    }
}

impl Visit for EventFields {
    // A `message` of any type is the event's name, as tracing-opentelemetry
    // names it (found by review: a number or a bool became an attribute).
    fn record_f64(&mut self, field: &Field, value: f64) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            key if self.log_field(key, LogValue::Other) => {}
            key => self.push(key, |_| Value::F64(value)),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let line = u64::try_from(value).map_or(LogValue::Other, LogValue::U64);
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            key if self.log_field(key, line) => {}
            key => self.push(key, |_| Value::I64(value)),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            key if self.log_field(key, LogValue::U64(value)) => {}
            key => self.push(key, |_| u64_value(value)),
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            key if self.log_field(key, LogValue::Other) => {}
            key => self.push(key, |_| i128_value(value)),
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            key if self.log_field(key, LogValue::Other) => {}
            key => self.push(key, |_| u128_value(value)),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            key if self.log_field(key, LogValue::Other) => {}
            key => self.push(key, |_| Value::Bool(value)),
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // The message and the error's text are a name and a status
        // description, not attributes: whole (found by review: they were
        // cut to the value-length limit).
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            "error" => self.error_field(value.to_owned()),
            key if self.log_field(key, LogValue::Str(value)) => {}
            key => self.push(key, |limit| str_value(value, limit)),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.log_field(field.name(), LogValue::Other) {
            return;
        }
        let text = display_string(value, None);
        if field.name() == "message" {
            // A `message` of any type names the event, an error's too
            // (found by review: it became the attributes `message` and
            // `exception.message`, the event unnamed).
            self.message = Some(text);
            return;
        }
        self.push("exception.message", |limit| str_value(&text, limit));
        self.push(field.name(), |limit| str_value(&text, limit));
        if field.name() == "error" {
            self.exception |= self.message.is_none();
            self.error = Some(text);
        } else if self.error.is_none() {
            self.error = Some(text);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(debug_string(value, None)),
            "error" => self.error_field(debug_string(value, None)),
            key if self.log_field(key, LogValue::Other) => {}
            key => self.push(key, |limit| {
                Value::Str(Str::Owned(debug_string(value, limit)))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value length limit counts characters (it counted bytes, found by
    /// review), in values formatted piece by piece too.
    #[test]
    fn formatted_values_are_cut_to_the_limit_in_characters() {
        struct Pieces;
        impl fmt::Debug for Pieces {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for _ in 0..100 {
                    f.write_str("éa")?;
                }
                Ok(())
            }
        }
        assert_eq!(debug_string(&Pieces, Some(5)), "éaéaé");
        assert_eq!(debug_string(&Pieces, Some(4)), "éaéa");
        assert_eq!(debug_string(&Pieces, None).chars().count(), 200);
        assert_eq!(display_string(&"日本語テキスト", Some(3)), "日本語");
        assert_eq!(prefix("ééé", 2), "éé");
        assert_eq!(prefix("ééé", 3), "ééé");
    }
}
