//! The cost of recording one span on one thread: a span with two
//! attributes built and ended, through our pipeline (ids, two clock reads,
//! limits, encoding, the push), the OpenTelemetry SDK (its
//! `BatchSpanProcessor`'s `on_end`, no encoding) and fastrace (a
//! `LocalSpan` under a root span, recorded without encoding: the floor
//! for the record path). Shared by the criterion bench
//! (`benches/benches/record.rs`) and the audit's record-latency table.
//!
//! fastrace keeps properties as strings, so its `i` attribute is formatted
//! (`i.to_string()`), as a fastrace user would; and its local spans are
//! collected when their root ends, so [`FastraceRoot`] renews the root
//! every [`FASTRACE_SPANS_PER_ROOT`] spans (fastrace's own benchmark records
//! 1000 local spans per root), outside the timed part where the caller
//! times each span.
//!
//! ```
//! use benches::record::{FastraceRoot, fastrace_span};
//! let mut root = FastraceRoot::new();
//! for i in 0..10 {
//!     root.renew_if_due(i);
//!     fastrace_span(i);
//! }
//! ```

use std::borrow::Cow;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// Local spans recorded under one fastrace root before it is renewed.
pub const FASTRACE_SPANS_PER_ROOT: u64 = 1000;

/// Spans fastrace's reporter has received (all threads).
pub static FASTRACE_REPORTED: AtomicU64 = AtomicU64::new(0);

struct CountingReporter;

impl fastrace::collector::Reporter for CountingReporter {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        FASTRACE_REPORTED.fetch_add(spans.len() as u64, Ordering::Relaxed);
    }
}

/// Sets fastrace's global reporter (once per process) to one that counts
/// the spans and drops them.
pub fn fastrace_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        fastrace::set_reporter(CountingReporter, fastrace::collector::Config::default());
    });
}

/// A fastrace root span set as this thread's local parent; the
/// [`fastrace_span`]s made while it lives are its children.
pub struct FastraceRoot {
    // Fields drop in order: the guard (which submits the local spans)
    // before the root.
    guard: Option<fastrace::local::LocalParentGuard>,
    root: Option<fastrace::Span>,
}

impl FastraceRoot {
    /// A new root on this thread (and [`fastrace_init`] if not done yet).
    pub fn new() -> Self {
        fastrace_init();
        let mut r = FastraceRoot {
            guard: None,
            root: None,
        };
        r.renew();
        r
    }

    /// Ends the current root (its spans go to the reporter) and starts
    /// another.
    pub fn renew(&mut self) {
        self.guard = None;
        self.root = None;
        let root = fastrace::Span::root("root", fastrace::collector::SpanContext::random());
        self.guard = Some(root.set_local_parent());
        self.root = Some(root);
    }

    /// Renews the root when `i` is a multiple of
    /// [`FASTRACE_SPANS_PER_ROOT`] (and not 0).
    #[inline]
    pub fn renew_if_due(&mut self, i: u64) {
        if i != 0 && i.is_multiple_of(FASTRACE_SPANS_PER_ROOT) {
            self.renew();
        }
    }
}

impl Default for FastraceRoot {
    fn default() -> Self {
        Self::new()
    }
}

/// One fastrace span with two properties, built and ended, under the
/// thread's [`FastraceRoot`].
#[inline]
pub fn fastrace_span(i: u64) {
    let span = fastrace::local::LocalSpan::enter_with_local_parent("op").with_properties(|| {
        [
            ("thread_id", Cow::Borrowed("1")),
            ("i", Cow::Owned(i.to_string())),
        ]
    });
    drop(std::hint::black_box(span));
}

/// One span of ours with two attributes, built and ended (it records).
#[inline]
pub fn ours_span(tracer: &otlp_exporter::Tracer, i: u64) {
    let mut span = tracer.start("op");
    span.set_attribute("thread_id", 1)
        .set_attribute("i", i as i64);
    span.end();
}

/// One OpenTelemetry SDK span with two attributes, built and ended (its
/// processor's `on_end` runs).
#[inline]
pub fn sdk_span(tracer: &opentelemetry_sdk::trace::SdkTracer, i: u64) {
    use opentelemetry::trace::{Span as _, Tracer as _};
    let mut span = tracer.start("op");
    span.set_attribute(opentelemetry::KeyValue::new("thread_id", 1));
    span.set_attribute(opentelemetry::KeyValue::new("i", i as i64));
    span.end();
}
