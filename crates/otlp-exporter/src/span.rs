//! A small span-building API, so that users can produce spans without
//! another SDK: start a span, set attributes, add events, set a status,
//! end it (which records it).
//!
//! # Owned spans without a shared reference count per span
//!
//! A [`Tracer`] is `Clone + Send + Sync + 'static`, and a [`Span`] owns
//! everything it needs: it can move into another thread or task and end
//! there, after its tracer is gone, even after the pipeline shut down (it
//! is then counted as `after_shutdown`).
//!
//! The obvious design, a span holding a clone of the tracer's `Arc`, would
//! make every span start and end an atomic read-modify-write of one
//! reference count that every recording thread shares: its cache line
//! would bounce between cores on each span (issue 13 forbids that on the
//! record path). Instead:
//!
//! * each tracer keeps one small handle **per recording thread** (`Local`:
//!   a clone of the pipeline handle, the scope, the limits, the sampler),
//!   made the first time that thread starts a span with that tracer (the
//!   only step that takes a lock and touches the pipeline's shared
//!   reference count), and aligned to its own cache lines;
//! * the thread finds its handle through a thread-local cache (keyed by
//!   the tracer's id), and each span holds **its thread's** handle. It is
//!   not reference-counted per span: the handle counts its spans itself
//!   (`outstanding.rs`), with plain loads and stores when a span starts
//!   and ends on its own thread (the owner is the count's only writer)
//!   and an atomic add only for a span that ends on another thread. No
//!   locked instruction per span, then: one was not just its own cost, it
//!   also waited for the span's stores to the queue slot, whose cache
//!   lines are in the worker's core (two per span cost about 28 of 167 ns
//!   in `record_loop` on the 2-core VM).
//! * the handles keep the pipeline open only while a tracer or a span
//!   needs them. A handle is closed when its tracer is dropped or its
//!   thread exits (no span can start on it then), and released (its
//!   pipeline handle dropped) by whoever sees it closed with no span
//!   outstanding: the tracer's drop, a thread's exit or the last span's
//!   end. A span's end and a tracer's drop can race; an asymmetric fence
//!   pair (a compiler fence on the span's side, Linux's `membarrier` on
//!   the rare tracer side, plain fences where that is missing) makes sure
//!   one of them sees the other. So dropping every tracer, span and
//!   pipeline handle still shuts the pipeline down, as [`Pipeline`]
//!   promises, and a thread that exits removes its handle from the tracer.
//!   The price is in the rare paths: a system call when a tracer that
//!   recorded is dropped, an atomic add and a reference count pair for a
//!   span that ends away from its thread.

use std::cell::{RefCell, UnsafeCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::clock::now_unix_nanos;
use crate::model::{
    Event, KeyValue, Link, Priority, ScopeId, SpanContext, SpanData, SpanId, SpanKind, SpanLimits,
    Status, StatusCode, Str, TraceFlags, Value, truncate_value,
};
use crate::outstanding::{Outstanding, asymmetric};
use crate::pipeline::{Pipeline, Recorded};
use crate::sampling::Sampler;

/// Starts spans for one instrumentation scope of one pipeline. Get one
/// from [`Pipeline::tracer`]; clone it freely (`Clone + Send + Sync +
/// 'static`: keep one in a `static`, hand it to threads and tasks).
///
/// Spans are sampled by the tracer's [`Sampler`]: by default the one
/// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` name (see
/// [`Sampler::from_env`]), else the spec's default, parent-based always-on.
/// Set another with [`Tracer::with_sampler`].
///
/// ```
/// use otlp_exporter::{InMemory, Pipeline, Status};
/// use std::time::Duration;
///
/// let memory = InMemory::new();
/// let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
/// let tracer = pipeline.tracer("my-crate", "1.0.0");
///
/// let mut request = tracer.start("GET /users");
/// request.set_attribute("http.response.status_code", 200);
/// {
///     let mut query = tracer.start_child("SELECT users", request.context());
///     query.add_event("rows fetched", vec![otlp_exporter::KeyValue::new("rows", 3)]);
/// } // dropped: ended and recorded
///
/// // A span is owned: it can end on another thread.
/// let background = tracer.start_child("send email", request.context());
/// std::thread::spawn(move || background.end()).join().unwrap();
///
/// request.set_status(Status::ok());
/// request.end();
///
/// pipeline.shutdown(Duration::from_secs(5));
/// assert_eq!(memory.span_count(), 3);
/// ```
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<TracerInner>,
}

struct TracerInner {
    /// Unique per tracer (clones share it): the thread-local cache's key.
    id: u64,
    pipeline: Pipeline,
    scope: ScopeId,
    limits: SpanLimits,
    sampler: Sampler,
    /// The pipeline is disabled (`OTEL_SDK_DISABLED=true`): spans carry
    /// their parent's context unchanged (see [`begin`]).
    disabled: bool,
    /// The per-thread handles this tracer made (strong references: they
    /// live as long as the tracer, or a span of theirs).
    locals: Mutex<Vec<Arc<Local>>>,
}

/// One recording thread's handle to a tracer's pipeline (see the module
/// docs). Aligned so that two threads' handles never share a cache line:
/// each thread's count of its spans is its own.
#[repr(align(128))]
struct Local {
    /// The spans holding this handle (a [`Handle`] each).
    count: Outstanding,
    /// Dropped when the handle is released ([`release`]), which happens
    /// once no span holds it and none can start on it any more; read only
    /// through a [`Handle`], so never after.
    pipeline: UnsafeCell<ManuallyDrop<Pipeline>>,
    scope: ScopeId,
    limits: SpanLimits,
    sampler: Sampler,
    /// [`TracerInner::disabled`].
    disabled: bool,
}

// SAFETY: `pipeline` is the only field not `Sync`; it is read (shared)
// through handles and dropped once by `release`, which runs only when no
// handle is left and none can be made (`Outstanding::try_release`).
unsafe impl Sync for Local {}

/// Drops a released handle's pipeline handle and the reference that its
/// spans held together (see [`Handle`]). Called once per `Local`, by the
/// caller that [`Outstanding`] said must release it; the caller holds
/// another reference, so the memory outlives the call.
#[cold]
#[inline(never)]
fn release(local: &Local) {
    /// Gives the spans' reference back even if the pipeline's shutdown (the
    /// transport) panics.
    struct Unref<'a>(&'a Local);
    impl Drop for Unref<'_> {
        fn drop(&mut self) {
            // SAFETY: the reference taken for the spans in `new_local`,
            // given back once (this runs once per `Local`); the caller
            // holds another.
            unsafe { Arc::decrement_strong_count(std::ptr::from_ref(self.0)) };
        }
    }
    let _unref = Unref(local);
    // SAFETY: released: no handle reads `pipeline` any more, and this runs
    // once.
    unsafe { ManuallyDrop::drop(&mut *local.pipeline.get()) };
}

/// A span's (or span builder's) hold on its thread's [`Local`]: counted in
/// the `Local`'s [`Outstanding`] instead of its reference count (no locked
/// instruction on the owner thread; see the module docs). The memory is
/// kept by one reference that all spans of the `Local` share, given back
/// by [`release`].
struct Handle(NonNull<Local>);

// SAFETY: a handle only reads the `Local` (which is `Sync`) and ends its
// count on whichever thread drops it (`Outstanding` tells the paths apart).
unsafe impl Send for Handle {}
// SAFETY: `&Handle` only gives `&Local`, which is `Sync`.
unsafe impl Sync for Handle {}

impl Handle {
    /// A handle for a span just counted with `Outstanding::begin`.
    fn new(local: &Arc<Local>) -> Self {
        Handle(NonNull::from(&**local))
    }

    fn pipeline(&self) -> &Pipeline {
        // SAFETY: this handle is counted, so the `Local` is not released
        // and its pipeline handle not dropped.
        unsafe { &*self.pipeline.get() }
    }
}

impl std::ops::Deref for Handle {
    type Target = Local;

    fn deref(&self) -> &Local {
        // SAFETY: counted, so the spans' shared reference is held.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Handle {
    /// In line where a span ends (`Span::finish`): the owner's path is a
    /// few plain loads and stores; the rest is out of line.
    #[inline]
    fn drop(&mut self) {
        if self.count.on_owner() {
            // The owner's cache keeps the memory for this call.
            if self.count.end_on_owner() {
                release(self);
            }
        } else {
            end_elsewhere(self.0);
        }
    }
}

/// A handle's drop away from its owner's path (the uncommon path: a span
/// that ended away from its thread, or after its thread's cache went).
#[cold]
#[inline(never)]
fn end_elsewhere(local: NonNull<Local>) {
    // Once counted out, the `Local` may be released and freed by another
    // thread: keep a reference across the call.
    // SAFETY: counted until `end_elsewhere`, so alive here.
    let keep = unsafe {
        Arc::increment_strong_count(local.as_ptr());
        Arc::from_raw(local.as_ptr())
    };
    if keep.count.end_elsewhere() {
        release(&keep);
    }
}

/// A thread's cached handle for one tracer.
struct CacheEntry {
    tracer: u64,
    local: Arc<Local>,
    /// To remove the handle from its tracer when the thread exits.
    owner: Weak<TracerInner>,
}

impl Drop for CacheEntry {
    fn drop(&mut self) {
        // The thread exits (or the entry is pruned, its tracer gone): no
        // span starts on this handle any more. Spans still holding it keep
        // it until they end, and the last one releases it.
        self.local.count.owner_leaves();
        if let Some(owner) = self.owner.upgrade() {
            let removed: Vec<Arc<Local>> = {
                let mut locals = owner.locals.lock().unwrap_or_else(|p| p.into_inner());
                let (gone, keep) = std::mem::take(&mut *locals)
                    .into_iter()
                    .partition(|l| Arc::ptr_eq(l, &self.local));
                *locals = keep;
                gone
            };
            drop(removed);
        }
        // On the owner thread, which wrote every `live` itself: no heavy
        // fence needed (other threads' ends fence themselves).
        self.local.count.mark_closed();
        if self.local.count.try_release() {
            // Outside any lock: the last handle of a pipeline shuts it
            // down, which may run user code (the transport).
            release(&self.local);
        }
    }
}

impl Drop for TracerInner {
    fn drop(&mut self) {
        // The tracer is gone: no span starts on its handles any more.
        let locals = std::mem::take(self.locals.get_mut().unwrap_or_else(|p| p.into_inner()));
        if locals.is_empty() {
            return;
        }
        for local in &locals {
            local.count.mark_closed();
        }
        // One fence for all: the owners' span ends have only the light
        // side.
        asymmetric::heavy();
        for local in &locals {
            if local.count.try_release() {
                release(local);
            }
        }
    }
}

/// A thread's handles, one per tracer it started spans with.
///
/// A thread may use many tracers (one per request, say, on a runtime's
/// worker): a handle is found in constant time whatever their number, the
/// last one used first, and the entries of tracers that are gone are
/// dropped in bulk once they could make up half the cache (amortised
/// constant time per new handle, and at most about twice the live
/// tracers' entries held).
struct Cache {
    entries: Vec<CacheEntry>,
    /// The index of each tracer's entry in `entries`, for a thread with
    /// more than [`Cache::SCAN`] of them.
    /// (SipHash with fixed keys: a constant initializer, and tracer ids
    /// are ours, not input a caller chooses.)
    at: HashMap<u64, usize, BuildHasherDefault<DefaultHasher>>,
    /// The entry used last.
    last: usize,
    /// When to look for entries of tracers that are gone next.
    prune_at: usize,
}

impl Cache {
    /// Up to this many entries, a scan finds a handle as fast as the map.
    const SCAN: usize = 8;

    const fn new() -> Self {
        Cache {
            entries: Vec::new(),
            at: HashMap::with_hasher(BuildHasherDefault::new()),
            last: 0,
            prune_at: 2 * Self::SCAN,
        }
    }

    /// The index of tracer `id`'s entry, if cached.
    #[inline]
    fn find(&mut self, id: u64) -> Option<usize> {
        if self.entries.get(self.last).is_some_and(|e| e.tracer == id) {
            return Some(self.last);
        }
        let i = if self.entries.len() <= Self::SCAN {
            self.entries.iter().position(|e| e.tracer == id)?
        } else {
            *self.at.get(&id)?
        };
        self.last = i;
        Some(i)
    }

    /// Adds `entry`; returns the entries of tracers that are gone, taken
    /// out now and then (to be dropped outside the cache's borrow: their
    /// drop may take a tracer's lock, never the cache).
    fn push(&mut self, entry: CacheEntry) -> Vec<CacheEntry> {
        let mut gone = Vec::new();
        if self.entries.len() >= self.prune_at {
            let (keep, old): (Vec<_>, Vec<_>) = std::mem::take(&mut self.entries)
                .into_iter()
                .partition(|e| e.owner.strong_count() > 0);
            self.entries = keep;
            gone = old;
            self.prune_at = (2 * self.entries.len()).max(2 * Self::SCAN);
            self.at.clear();
            self.at
                .extend(self.entries.iter().enumerate().map(|(i, e)| (e.tracer, i)));
        }
        self.last = self.entries.len();
        self.at.insert(entry.tracer, self.last);
        self.entries.push(entry);
        gone
    }
}

thread_local! {
    static LOCALS: RefCell<Cache> = const { RefCell::new(Cache::new()) };
}

static NEXT_TRACER: AtomicU64 = AtomicU64::new(1);

impl Tracer {
    /// A tracer for `scope` of `pipeline` with `sampler` (for a pipeline
    /// builder that sets the sampler).
    pub(crate) fn with_parts(pipeline: Pipeline, scope: ScopeId, sampler: Sampler) -> Self {
        // `asymmetric::init` ran when `pipeline` was built, before any
        // handle of this tracer can exist.
        let limits = pipeline.limits();
        // A disabled pipeline's tracers record nothing, whatever sampler
        // they are given (see `PipelineBuilder::build`).
        let disabled = pipeline.is_disabled();
        let sampler = if disabled {
            Sampler::AlwaysOff
        } else {
            sampler
        };
        Tracer {
            inner: Arc::new(TracerInner {
                id: NEXT_TRACER.fetch_add(1, Ordering::Relaxed),
                pipeline,
                scope,
                limits,
                sampler,
                disabled,
                locals: Mutex::new(Vec::new()),
            }),
        }
    }

    /// This tracer with another sampler (the same pipeline and scope).
    ///
    /// ```
    /// use otlp_exporter::{InMemory, Pipeline, Sampler};
    /// use std::time::Duration;
    ///
    /// let memory = InMemory::new();
    /// let pipeline = Pipeline::builder().transport(memory.clone()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1").with_sampler(Sampler::AlwaysOff);
    /// let span = tracer.start("ignored");
    /// assert!(!span.is_recording());
    /// assert!(!span.context().trace_flags.is_sampled());
    /// span.end();
    /// let stats = pipeline.shutdown(Duration::from_secs(5)).stats;
    /// assert_eq!(stats.dropped.not_sampled, 1);
    /// assert_eq!(memory.span_count(), 0);
    /// ```
    #[must_use]
    pub fn with_sampler(self, sampler: Sampler) -> Tracer {
        Self::with_parts(self.inner.pipeline.clone(), self.inner.scope, sampler)
    }

    /// The sampler that decides which of this tracer's spans are recorded.
    ///
    /// ```
    /// use otlp_exporter::{Pipeline, InMemory, Sampler};
    /// let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1").with_sampler(Sampler::AlwaysOn);
    /// assert_eq!(tracer.sampler(), &Sampler::AlwaysOn);
    /// ```
    pub fn sampler(&self) -> &Sampler {
        &self.inner.sampler
    }

    /// The pipeline this tracer records into.
    ///
    /// ```
    /// use otlp_exporter::{Pipeline, InMemory};
    /// let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1");
    /// assert_eq!(tracer.pipeline().stats().accepted, 0);
    /// ```
    pub fn pipeline(&self) -> &Pipeline {
        &self.inner.pipeline
    }

    /// The instrumentation scope of this tracer's spans.
    ///
    /// ```
    /// use otlp_exporter::{InMemory, InstrumentationScope, Pipeline};
    /// let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1");
    /// assert_eq!(tracer.scope(), pipeline.scope(InstrumentationScope::new("app", "1")));
    /// ```
    pub fn scope(&self) -> ScopeId {
        self.inner.scope
    }

    /// Starts a root span: a new trace (sampled as the sampler decides).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1");
    /// let span = tracer.start("work");
    /// assert!(span.context().is_valid());
    /// span.end();
    /// ```
    pub fn start(&self, name: impl Into<Str>) -> Span {
        begin(
            self.local(),
            name.into(),
            SpanKind::Internal,
            None,
            None,
            Priority::Normal,
        )
    }

    /// Starts a child of `parent`: in its trace, and sampled as the sampler
    /// decides for that parent (by default, as the parent is). A remote
    /// parent ([`SpanContext::from_traceparent`]) continues the caller's
    /// trace.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory, SpanContext};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1");
    /// let remote = SpanContext::from_traceparent(
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    /// ).unwrap();
    /// let span = tracer.start_child("handle request", &remote);
    /// assert_eq!(span.context().trace_id, remote.trace_id);
    /// assert!(span.context().trace_flags.is_sampled());
    /// span.end();
    /// ```
    pub fn start_child(&self, name: impl Into<Str>, parent: &SpanContext) -> Span {
        begin(
            self.local(),
            name.into(),
            SpanKind::Internal,
            // An invalid parent starts a root, as `SpanBuilder::parent` says.
            Some(parent).filter(|p| p.is_valid()),
            None,
            Priority::Normal,
        )
    }

    /// A span with more settings before it starts.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory, SpanKind};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1");
    /// let span = tracer
    ///     .build("GET /")
    ///     .kind(SpanKind::Server)
    ///     .attribute("http.request.method", "GET")
    ///     .start();
    /// span.end();
    /// ```
    pub fn build(&self, name: impl Into<Str>) -> SpanBuilder {
        SpanBuilder {
            local: self.local(),
            name: name.into(),
            kind: SpanKind::Internal,
            parent: None,
            start: None,
            attributes: Vec::new(),
            links: Vec::new(),
            priority: Priority::Normal,
        }
    }

    /// This thread's handle (see the module docs): from the thread-local
    /// cache in steady state.
    #[inline]
    fn local(&self) -> Handle {
        let id = self.inner.id;
        let cached = LOCALS.try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let i = cache.find(id)?;
            // Not closed: the tracer is alive (we hold it) and so is the
            // cache entry (we are its thread).
            let local = &cache.entries[i].local;
            local.count.begin();
            Some(Handle::new(local))
        });
        match cached {
            Ok(Some(handle)) => handle,
            _ => self.new_local(),
        }
    }

    /// A handle for this thread, registered with the tracer and cached
    /// (once per thread per tracer). Without thread-local storage (a
    /// thread being torn down) the handle is made for this span alone.
    #[cold]
    fn new_local(&self) -> Handle {
        let inner = &self.inner;
        let local = Arc::new(Local {
            count: Outstanding::new(),
            pipeline: UnsafeCell::new(ManuallyDrop::new(inner.pipeline.clone())),
            scope: inner.scope,
            limits: inner.limits,
            sampler: inner.sampler.clone(),
            disabled: inner.disabled,
        });
        // The reference the spans share, given back by `release`.
        std::mem::forget(Arc::clone(&local));
        local.count.begin();
        let handle = Handle::new(&local);
        // Uncached (no thread-local storage left), the entry is dropped
        // below: the handle is then closed, for this span alone.
        let entry = CacheEntry {
            tracer: inner.id,
            local: local.clone(),
            owner: Arc::downgrade(inner),
        };
        let cached = LOCALS.try_with(|cache| {
            let Ok(mut cache) = cache.try_borrow_mut() else {
                return false;
            };
            // Not cached (`local` looked first), so one entry per tracer.
            // Handles whose tracer is gone are forgotten now and then (the
            // entries' drop runs outside the borrow).
            let gone = cache.push(entry);
            drop(cache);
            drop(gone);
            true
        });
        if cached == Ok(true) {
            inner
                .locals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(local);
        }
        handle
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("scope", &self.inner.scope)
            .field("sampler", &self.inner.sampler)
            .finish_non_exhaustive()
    }
}

/// Settings for a span that has not started yet. Get one from
/// [`Tracer::build`].
///
/// ```
/// # use otlp_exporter::{Pipeline, InMemory, Priority, SpanKind};
/// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
/// let tracer = pipeline.tracer("app", "1");
/// let span = tracer
///     .build("poll queue")
///     .kind(SpanKind::Consumer)
///     .priority(Priority::Low)
///     .start();
/// span.end();
/// ```
#[must_use = "a span builder does nothing until `start`"]
pub struct SpanBuilder {
    local: Handle,
    name: Str,
    kind: SpanKind,
    parent: Option<SpanContext>,
    start: Option<u64>,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
    priority: Priority,
}

impl SpanBuilder {
    /// The span's kind (default `Internal`).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory, SpanKind};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let span = pipeline.tracer("app", "1").build("call").kind(SpanKind::Client).start();
    /// # span.end();
    /// ```
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = kind;
        self
    }

    /// Makes the span a child of `parent` (local, or remote from
    /// [`SpanContext::from_traceparent`]). An invalid parent context is
    /// ignored (the span becomes a root).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1");
    /// let parent = tracer.start("parent");
    /// let child = tracer.build("child").parent(parent.context()).start();
    /// assert_eq!(child.context().trace_id, parent.context().trace_id);
    /// # child.end(); parent.end();
    /// ```
    pub fn parent(mut self, parent: &SpanContext) -> Self {
        self.parent = parent.is_valid().then(|| parent.clone());
        self
    }

    /// Start time, in nanoseconds since the Unix epoch (default: now).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let at = otlp_exporter::now_unix_nanos() - 1_000_000;
    /// let span = pipeline.tracer("app", "1").build("late").start_time(at).start();
    /// # span.end();
    /// ```
    pub fn start_time(mut self, unix_nanos: u64) -> Self {
        self.start = Some(unix_nanos);
        self
    }

    /// An attribute set from the start.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let span = pipeline.tracer("app", "1").build("q").attribute("db.system", "postgresql").start();
    /// # span.end();
    /// ```
    pub fn attribute(mut self, key: impl Into<Str>, value: impl Into<Value>) -> Self {
        self.attributes.push(KeyValue::new(key, value));
        self
    }

    /// A link to another span. A link to an invalid context (an all-zero
    /// trace or span id) is kept only if it carries attributes or a trace
    /// state (see [`Span::add_link`]).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1");
    /// let producer = tracer.start("enqueue");
    /// let consumer = tracer.build("dequeue").link(producer.context().clone(), vec![]).start();
    /// # consumer.end(); producer.end();
    /// ```
    pub fn link(mut self, context: SpanContext, attributes: Vec<KeyValue>) -> Self {
        if !worth_recording(&context, &attributes) {
            return self;
        }
        self.links.push(Link {
            context,
            attributes,
            dropped_attributes_count: 0,
        });
        self
    }

    /// Shedding priority (see [`Shedding::Priority`](crate::Shedding::Priority)).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory, Priority};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let span = pipeline.tracer("app", "1").build("debug").priority(Priority::Low).start();
    /// # span.end();
    /// ```
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Starts the span: picks its ids (a child continues its parent's
    /// trace), asks the tracer's sampler, and reads the clock (a span the
    /// sampler drops reads no clock and stores nothing).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let span = pipeline.tracer("app", "1").build("work").start();
    /// assert!(span.is_recording());
    /// span.end();
    /// ```
    pub fn start(self) -> Span {
        let mut span = begin(
            self.local,
            self.name,
            self.kind,
            self.parent.as_ref(),
            self.start,
            self.priority,
        );
        // (Empty vectors skip their iterators' drop glue: the common case.)
        if span.recording && !self.attributes.is_empty() {
            for kv in self.attributes {
                span.set_attribute(kv.key, kv.value);
            }
        }
        if span.recording && !self.links.is_empty() {
            for link in self.links {
                span.add_link(link);
            }
        }
        span
    }
}

/// Starts a span: ids, the sampler's decision, the start time. What
/// [`SpanBuilder::start`] does before its attributes and links, and all
/// that [`Tracer::start`] and [`Tracer::start_child`] do (without building
/// a `SpanBuilder` and dropping its empty vectors).
#[inline]
fn begin(
    local: Handle,
    name: Str,
    kind: SpanKind,
    parent: Option<&SpanContext>,
    start: Option<u64>,
    priority: Priority,
) -> Span {
    if local.disabled {
        return begin_disabled(local, name, kind, parent, priority);
    }
    // A root draws both its ids at once (one visit to the generator).
    let (trace_id, span_id, parent_span_id, state) = match parent {
        Some(p) => (
            p.trace_id,
            SpanId::random(),
            p.span_id,
            p.trace_state.clone(),
        ),
        None => {
            let (trace_id, span_id) = crate::id::random_root_ids();
            (trace_id, span_id, SpanId::INVALID, Str::Borrowed(""))
        }
    };
    let decision = local.sampler.should_sample(parent, trace_id, &name, kind);
    let context = SpanContext {
        trace_id,
        span_id,
        trace_flags: if decision.is_sampled() {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::NOT_SAMPLED
        },
        trace_state: state,
        is_remote: false,
    };
    let recording = decision.is_recording();
    let mut storage = spare_storage(name, context);
    let data = &mut storage.span;
    data.parent_span_id = parent_span_id;
    data.parent_is_remote = parent.is_some_and(|p| p.is_remote);
    data.kind = kind;
    data.priority = priority;
    data.scope = local.scope;
    // Set whether recording or not: recycled storage keeps the last span's
    // start (`SpanData::reset_for_reuse`).
    data.start_time_unix_nano = if recording {
        start.unwrap_or_else(now_unix_nanos)
    } else {
        0
    };
    Span {
        local: ManuallyDrop::new(local),
        data: Some(storage),
        recording,
    }
}

/// [`begin`] on a disabled pipeline (`OTEL_SDK_DISABLED=true`), which is
/// the trace API without an SDK: the span records nothing and carries its
/// parent's context unchanged, so the next service continues the caller's
/// trace with the caller's sampling decision (a new span id with the
/// sampled flag cleared would make its `ParentBased` sampler drop the
/// trace); a root has none (invalid: nothing to send on). As the `tracing`
/// layer does on a disabled pipeline.
#[cold]
fn begin_disabled(
    local: Handle,
    name: Str,
    kind: SpanKind,
    parent: Option<&SpanContext>,
    priority: Priority,
) -> Span {
    let context = parent
        .filter(|p| p.is_valid())
        .cloned()
        .unwrap_or(SpanContext::INVALID);
    let mut storage = spare_storage(name, context);
    let data = &mut storage.span;
    data.parent_span_id = SpanId::INVALID;
    data.parent_is_remote = false;
    data.kind = kind;
    data.priority = priority;
    data.scope = local.scope;
    data.start_time_unix_nano = 0;
    Span {
        local: ManuallyDrop::new(local),
        data: Some(storage),
        recording: false,
    }
}

impl std::fmt::Debug for SpanBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanBuilder")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

/// A span in progress. [`end`](Span::end) records it; dropping it without
/// `end` ends and records it too.
///
/// A span owns what it needs (`Send + 'static`): it may end on another
/// thread, after its [`Tracer`] is dropped, or after the pipeline shut down
/// (then it is counted as `after_shutdown`; nothing panics).
///
/// A span the sampler did not record ([`is_recording`](Span::is_recording)
/// false) ignores attributes, events, links, status and names, reads no
/// clock, and is counted as `not_sampled` when it ends (nothing is encoded
/// or queued). Its context is still valid, with the sampled flag clear, so
/// that its children and the services it calls do not sample the trace
/// either.
///
/// ```
/// # use otlp_exporter::{Pipeline, InMemory, Status};
/// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
/// let tracer = pipeline.tracer("app", "1");
/// let mut span = tracer.start("work");
/// span.set_attribute("items", 3).set_status(Status::error("disk full"));
/// let header = span.context().to_traceparent(); // for an outgoing request
/// assert!(header.ends_with("-01"));
/// span.end();
/// ```
pub struct Span {
    /// Given back by [`finish`](Span::finish), which every span runs once
    /// (`end` or the drop): there, in line, rather than by a call to the
    /// handle's drop after it.
    local: ManuallyDrop<Handle>,
    /// `None` only once ended (`end` consumes the span, `Drop` checks).
    /// Boxed, and the box recycled by the thread that ends the span (see
    /// [`spare_storage`]): a span moves as a pointer, and its attributes'
    /// vector keeps its capacity from one span to the next.
    data: Option<Box<Storage>>,
    recording: bool,
}

/// A span's data, and what the span knows of its attributes.
struct Storage {
    span: SpanData,
    /// No attribute set so far owns memory (`model::owns_nothing`: a
    /// borrowed key, and a number, a bool or a borrowed string), so the
    /// recycle forgets them without a look at each. Known at compile time
    /// for the usual `set_attribute("key", 42)`, so then never written.
    /// Here rather than in the `Span`: a byte written there, next to
    /// `recording`, made the span's move into `end` a wide load of narrow
    /// recent stores, which the CPU cannot forward (a stall, seen with
    /// `perf annotate`).
    plain: bool,
    /// Past [`INDEXED_FROM`] attributes, `set_attribute` finds a key
    /// through this index rather than a scan: with a raised attribute
    /// limit, a span given thousands of attributes would otherwise cost
    /// time quadratic in their number. `None` for the usual span.
    index: Option<Box<KeyIndex>>,
}

/// From this many attributes on, a span's keys are found through a
/// [`KeyIndex`]. Below it a scan is cheaper than hashing the key (the
/// default limit is 128, and most spans carry a handful).
const INDEXED_FROM: usize = 16;

/// The positions of a span's attributes by the hash of their key, for
/// `set_attribute`'s lookup once a span has many. Attributes of a live span
/// are only ever appended (`set_attribute`), so the index catches up with
/// the ones added since its last use, and never has to forget one.
struct KeyIndex {
    /// Seeded per index: keys may come from outside (a request's headers),
    /// and a fixed hash would let a caller choose colliding ones.
    hasher: std::hash::RandomState,
    /// A key's hash to the position of the first attribute with that hash.
    /// A second key with the same hash (a 64-bit collision) is not entered:
    /// a lookup that lands on another key scans, so it is still found.
    first: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    /// `attributes[..covered]` are in `first`.
    covered: usize,
}

impl KeyIndex {
    fn new() -> Box<Self> {
        Box::new(Self {
            hasher: std::hash::RandomState::new(),
            first: HashMap::default(),
            covered: 0,
        })
    }

    /// The position of `key` in `attributes`, which are the ones this index
    /// was used with plus any appended since.
    fn find(&mut self, attributes: &[KeyValue], key: &str) -> Option<usize> {
        use std::hash::BuildHasher;
        for (at, kv) in attributes.iter().enumerate().skip(self.covered) {
            let at = u32::try_from(at).unwrap_or(u32::MAX);
            self.first
                .entry(self.hasher.hash_one(&*kv.key))
                .or_insert(at);
        }
        self.covered = attributes.len();
        let at = *self.first.get(&self.hasher.hash_one(key))? as usize;
        if attributes.get(at).is_some_and(|kv| kv.key == key) {
            Some(at)
        } else {
            // Another key with the same hash, or none: the scan decides.
            attributes.iter().position(|kv| kv.key == key)
        }
    }
}

/// A hasher for keys that are already hashes (`KeyIndex::first`).
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Span {
    fn data(&mut self) -> Option<&mut SpanData> {
        if self.recording {
            self.data.as_deref_mut().map(|s| &mut s.span)
        } else {
            None
        }
    }

    /// This span's context, to start children with or to propagate.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let span = pipeline.tracer("app", "1").start("work");
    /// assert!(!span.context().is_remote);
    /// # span.end();
    /// ```
    pub fn context(&self) -> &SpanContext {
        // `data` is `None` only while the span is being dropped.
        self.data
            .as_ref()
            .map_or(&SpanContext::INVALID, |d| &d.span.context)
    }

    /// True if the sampler chose to record this span (its attributes,
    /// events and so on are kept); false for a span that will only be
    /// counted as `not_sampled`.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory, Sampler};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1").with_sampler(Sampler::TraceIdRatioBased(0.0));
    /// assert!(!tracer.start("rarely kept").is_recording());
    /// ```
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Sets an attribute, replacing one with the same key. Past the
    /// attribute limit, new keys are dropped and counted; long string values
    /// are truncated to the value-length limit. An empty key is no
    /// attribute (the OpenTelemetry spec: keys MUST be non-empty): it is
    /// dropped and counted in the span's dropped attributes.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let mut span = pipeline.tracer("app", "1").start("work");
    /// span.set_attribute("user.id", 42).set_attribute("cache.hit", true);
    /// # span.end();
    /// ```
    pub fn set_attribute(&mut self, key: impl Into<Str>, value: impl Into<Value>) -> &mut Self {
        // The fields, not `self.data()`: the limits are borrowed, not
        // copied, on this hot path.
        let limits = &self.local.limits;
        let Some(storage) = self.data.as_deref_mut().filter(|_| self.recording) else {
            return self;
        };
        let data = &mut storage.span;
        let (key, mut value) = (key.into(), value.into());
        if key.is_empty() {
            return self.drop_empty_key();
        }
        if let Some(limit) = limits.attribute_value_length
            && matches!(value, Value::Str(_) | Value::Bytes(_) | Value::Array(_))
        {
            value = truncated(value, limit);
        }
        let existing = if data.attributes.len() < INDEXED_FROM {
            data.attributes.iter().position(|kv| kv.key == key)
        } else {
            storage
                .index
                .get_or_insert_with(KeyIndex::new)
                .find(&data.attributes, &key)
        };
        if let Some(at) = existing {
            // The key kept is the one already there (and counted).
            storage.plain &= crate::model::value_owns_nothing(&value);
            replace_value(&mut data.attributes[at].value, value);
        } else if data.attributes.len() < limits.attribute_count {
            storage.plain &= crate::model::owns_nothing(&key, &value);
            crate::model::push_attribute(&mut data.attributes, key, value);
        } else {
            data.dropped_attributes_count = data.dropped_attributes_count.saturating_add(1);
        }
        self
    }

    /// An attribute with an empty key, dropped: counted.
    #[cold]
    #[inline(never)]
    fn drop_empty_key(&mut self) -> &mut Self {
        if let Some(data) = self.data() {
            data.dropped_attributes_count = data.dropped_attributes_count.saturating_add(1);
        }
        self
    }

    /// Adds an event, timestamped now. Past the event limit it is dropped
    /// and counted. Its attributes are made unique as
    /// [`set_attribute`](Self::set_attribute) would (a key given twice is
    /// kept once, at its first place, with its last value; an empty key is
    /// dropped and counted in the event's dropped attributes), then cut to
    /// their own limits, so that duplicates never push distinct keys out.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory, KeyValue};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let mut span = pipeline.tracer("app", "1").start("work");
    /// span.add_event("retry", vec![KeyValue::new("attempt", 2)]);
    /// # span.end();
    /// ```
    pub fn add_event(&mut self, name: impl Into<Str>, attributes: Vec<KeyValue>) -> &mut Self {
        let limits = self.local.limits;
        let Some(data) = self.data() else {
            return self;
        };
        if data.events.len() < limits.event_count {
            let mut event = Event {
                name: name.into(),
                time_unix_nano: now_unix_nanos(),
                attributes,
                dropped_attributes_count: 0,
            };
            event.dropped_attributes_count =
                limits.cut_attributes(&mut event.attributes, limits.attributes_per_event);
            data.events.push(event);
        } else {
            data.dropped_events_count = data.dropped_events_count.saturating_add(1);
        }
        self
    }

    /// Adds a link. Past the link limit it is dropped and counted. Its
    /// attributes are made unique and cut as
    /// [`add_event`](Self::add_event)'s are (into the link's dropped
    /// attributes, added to the count it carries). A link to an invalid
    /// context (an all-zero trace or span id) is recorded only if it
    /// carries attributes or a trace state, as the trace API says; one
    /// with neither is ignored (not counted as dropped).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory, Link};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let tracer = pipeline.tracer("app", "1");
    /// let other = tracer.start("other");
    /// let mut span = tracer.start("work");
    /// span.add_link(Link { context: other.context().clone(), attributes: vec![], dropped_attributes_count: 0 });
    /// # span.end(); other.end();
    /// ```
    pub fn add_link(&mut self, mut link: Link) -> &mut Self {
        if !worth_recording(&link.context, &link.attributes) {
            return self;
        }
        let limits = self.local.limits;
        let Some(data) = self.data() else {
            return self;
        };
        if data.links.len() < limits.link_count {
            link.dropped_attributes_count = link.dropped_attributes_count.saturating_add(
                limits.cut_attributes(&mut link.attributes, limits.attributes_per_link),
            );
            data.links.push(link);
        } else {
            data.dropped_links_count = data.dropped_links_count.saturating_add(1);
        }
        self
    }

    /// Sets the status, as the OpenTelemetry trace API says: setting
    /// [`Unset`](StatusCode::Unset) is ignored; once the status is
    /// [`Ok`](StatusCode::Ok) it is final (later calls are ignored); the
    /// description is kept for [`Error`](StatusCode::Error) only (an `Ok`
    /// status is set without it). An `Error` may be replaced by another
    /// `Error` or by `Ok`.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory, Status};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let mut span = pipeline.tracer("app", "1").start("work");
    /// span.set_status(Status::error("timed out"));
    /// span.set_status(Status::default()); // ignored: still the error
    /// span.set_status(Status::ok());
    /// span.set_status(Status::error("too late")); // ignored: Ok is final
    /// # span.end();
    /// ```
    pub fn set_status(&mut self, status: Status) -> &mut Self {
        if let Some(data) = self.data() {
            match status.code {
                StatusCode::Unset => {}
                _ if data.status.code == StatusCode::Ok => {}
                StatusCode::Ok => data.status = Status::ok(),
                StatusCode::Error => data.status = status,
            }
        }
        self
    }

    /// Renames the span.
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let mut span = pipeline.tracer("app", "1").start("HTTP GET");
    /// span.update_name("GET /users/{id}");
    /// # span.end();
    /// ```
    pub fn update_name(&mut self, name: impl Into<Str>) -> &mut Self {
        if let Some(data) = self.data() {
            data.name = name.into();
        }
        self
    }

    /// Ends the span now and records it (or counts it as `not_sampled`).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory, Recorded};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let span = pipeline.tracer("app", "1").start("work");
    /// assert_eq!(span.end(), Recorded::Queued);
    /// ```
    pub fn end(mut self) -> Recorded {
        self.finish(None)
    }

    /// Ends the span at `unix_nanos` and records it (an end before the
    /// start is taken as the start).
    ///
    /// ```
    /// # use otlp_exporter::{Pipeline, InMemory};
    /// # let pipeline = Pipeline::builder().transport(InMemory::new()).build().unwrap();
    /// let span = pipeline.tracer("app", "1").start("work");
    /// span.end_at(otlp_exporter::now_unix_nanos());
    /// ```
    pub fn end_at(mut self, unix_nanos: u64) -> Recorded {
        self.finish(Some(unix_nanos))
    }

    fn finish(&mut self, at: Option<u64>) -> Recorded {
        /// Gives the span's handle back when `finish` returns, or unwinds.
        struct GiveBack<'a>(&'a mut ManuallyDrop<Handle>);
        impl Drop for GiveBack<'_> {
            #[inline]
            fn drop(&mut self) {
                // SAFETY: `finish` runs once per span (`data` is taken
                // first), and the handle is not used after it.
                unsafe { ManuallyDrop::drop(self.0) }
            }
        }
        let Some(mut storage) = self.data.take() else {
            // Unreachable: `end` consumes the span and `Drop` checks (and
            // the handle was given back by the call that took `data`).
            return Recorded::Dropped(crate::DropReason::Shutdown);
        };
        let local = GiveBack(&mut self.local);
        let data = &mut storage.span;
        if self.recording {
            data.end_time_unix_nano = at
                .unwrap_or_else(now_unix_nanos)
                .max(data.start_time_unix_nano);
        }
        // Built within the limits by the methods above. An unsampled span
        // carries the sampled flag clear: the pipeline counts it as
        // `not_sampled` without encoding or queueing it. Recorded in place
        // (the pipeline encodes it where it lies), then recycled.
        if local.0.disabled {
            // The parent's context it carried (maybe sampled) is not this
            // span's to export: counted as not sampled, as every span of a
            // disabled pipeline.
            data.context.trace_flags = TraceFlags::NOT_SAMPLED;
        }
        let recorded = local.0.pipeline().record_span_in_place(data, false);
        // SAFETY: `plain` holds for every attribute the span set (see
        // `set_attribute`), and recording with no limits applied adds none.
        unsafe { recycle_storage(storage) };
        recorded
    }
}

// `set_attribute` takes no reference to its new value on its common path
// (a new key, a value that is not a string): with one, the compiler keeps
// the value on the stack, and the push loads it back with wider loads than
// the stores that wrote it, which the CPU cannot forward (a stall of about
// ten cycles per attribute, seen with `perf annotate`). Hence the push
// writes in place (`model::push_attribute`), and the replacement and the
// truncation below are out of line; all take the value by value.

/// Whether a link is recorded: the trace API records a link to an invalid
/// context (an all-zero id) only if it carries attributes or a trace
/// state.
fn worth_recording(context: &SpanContext, attributes: &[KeyValue]) -> bool {
    context.is_valid() || !attributes.is_empty() || !context.trace_state.is_empty()
}

/// `*slot = value`.
#[cold]
#[inline(never)]
fn replace_value(slot: &mut Value, value: Value) {
    *slot = value;
}

/// `value` cut to `limit` ([`truncate_value`]).
#[inline(never)]
fn truncated(mut value: Value, limit: usize) -> Value {
    truncate_value(&mut value, limit);
    value
}

/// How many ended spans' storage a thread keeps for its next spans.
const SPARE_SPANS: usize = 4;
/// A recycled span keeps at most this many slots in each of its vectors
/// (a span with more gives its vectors back to the allocator).
const SPARE_CAPACITY: usize = 16;

thread_local! {
    /// Storage of spans this thread ended, for the next spans it starts
    /// (boxes, so that a span moves as a pointer).
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Storage>>> = const { RefCell::new(Vec::new()) };
}

/// A span's storage: a recycled box if this thread has one (its vectors
/// empty but with their capacity), else a new one.
#[inline]
fn spare_storage(name: Str, context: SpanContext) -> Box<Storage> {
    let spare = SPARE
        .try_with(|spare| spare.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten();
    match spare {
        Some(mut storage) => {
            storage.span.name = name;
            storage.span.context = context;
            // `plain` is true: set by `recycle_storage`.
            storage
        }
        None => Box::new(Storage {
            span: SpanData::with_context(name, context),
            plain: true,
            index: None,
        }),
    }
}

/// Resets an ended span's storage to a fresh span's state
/// ([`SpanData::clear`], keeping modest vector capacity) and keeps it for
/// this thread's next span, if there is room.
///
/// # Safety
///
/// If `storage.plain`, no attribute of its span owns memory
/// ([`SpanData::reset_for_reuse_known`]).
#[inline]
unsafe fn recycle_storage(mut storage: Box<Storage>) {
    fn bound<T>(v: &mut Vec<T>) {
        if v.capacity() > SPARE_CAPACITY {
            *v = Vec::new();
        }
    }
    let data = &mut storage.span;
    bound(&mut data.attributes);
    bound(&mut data.events);
    bound(&mut data.links);
    // SAFETY: the caller's promise.
    unsafe { data.reset_for_reuse_known(storage.plain) };
    storage.plain = true;
    if storage.index.is_some() {
        // Its positions are of this span's attributes, now gone.
        storage.index = None;
    }
    let _ = SPARE.try_with(move |spare| {
        if let Ok(mut spare) = spare.try_borrow_mut()
            && spare.len() < SPARE_SPANS
        {
            spare.push(storage);
        }
    });
}

impl Drop for Span {
    fn drop(&mut self) {
        if self.data.is_some() {
            self.finish(None);
        }
    }
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("context", self.context())
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemory;

    #[test]
    fn a_key_index_finds_keys_whose_hashes_collide() {
        use std::hash::BuildHasher;
        let attributes: Vec<KeyValue> =
            (0..40).map(|i| KeyValue::new(format!("k{i}"), i)).collect();
        let mut index = KeyIndex::new();
        assert_eq!(index.find(&attributes[..20], "k3"), Some(3));
        assert_eq!(index.find(&attributes[..20], "k30"), None);
        // The rest, appended since, are caught up with at the next use.
        assert_eq!(index.find(&attributes, "k30"), Some(30));
        // A collision: "k7"'s hash made to lead to "k9". A key whose hash
        // leads to another key is found by the scan.
        let h7 = index.hasher.hash_one("k7");
        index.first.insert(h7, 9);
        assert_eq!(index.find(&attributes, "k7"), Some(7));
        assert_eq!(index.find(&attributes, "k9"), Some(9));
        // And a key that is not there, whose hash leads somewhere, is not.
        let missing = index.hasher.hash_one("absent");
        index.first.insert(missing, 1);
        assert_eq!(index.find(&attributes, "absent"), None);
    }

    fn locals(tracer: &Tracer) -> usize {
        tracer.inner.locals.lock().unwrap().len()
    }

    #[test]
    fn a_thread_keeps_one_handle_per_tracer_and_takes_it_when_it_exits() {
        let pipeline = Pipeline::builder()
            .transport(InMemory::new())
            .build()
            .unwrap();
        let tracer = pipeline.tracer("handles", "1");
        assert_eq!(locals(&tracer), 0);
        for _ in 0..3 {
            tracer.start("here").end();
        }
        assert_eq!(locals(&tracer), 1, "one handle for this thread");
        let held = std::thread::scope(|s| {
            s.spawn(|| {
                tracer.start("there").end();
                assert_eq!(locals(&tracer), 2);
                // A span that outlives its thread keeps the handle alive,
                // not the tracer's table.
                tracer.start("outlives its thread")
            })
            .join()
            .unwrap()
        });
        assert_eq!(locals(&tracer), 1, "the exited thread's handle is gone");
        assert_eq!(held.end(), Recorded::Queued);
        for _ in 0..20 {
            let t = tracer.clone();
            std::thread::spawn(move || t.start("short").end())
                .join()
                .unwrap();
        }
        assert_eq!(locals(&tracer), 1);
        // Clones share the handles; another tracer has its own.
        tracer.clone().start("clone").end();
        assert_eq!(locals(&tracer), 1);
        let other = tracer.clone().with_sampler(Sampler::AlwaysOn);
        other.start("other").end();
        assert_eq!((locals(&tracer), locals(&other)), (1, 1));
        let stats = pipeline.shutdown(std::time::Duration::from_secs(5)).stats;
        assert_eq!(stats.exported, 3 + 1 + 1 + 20 + 1 + 1);
    }

    /// A thread using many tracers at once (one per request, say) finds
    /// each one's handle (one handle per tracer, made once), and the
    /// cache of a thread whose tracers come and go holds at most about
    /// twice the live ones.
    #[test]
    fn a_thread_with_many_tracers_finds_each_handle_and_forgets_the_gone() {
        let pipeline = Pipeline::builder()
            .transport(InMemory::new())
            .build()
            .unwrap();
        let tracers: Vec<Tracer> = (0..100)
            .map(|i| pipeline.tracer(format!("t{i}"), "1"))
            .collect();
        // Each span gets its own tracer's handle (its scope says so).
        let start = |t: &Tracer| {
            let span = t.start("op");
            let scope = span.data.as_ref().map(|d| d.span.scope);
            assert_eq!(scope, Some(t.scope()), "the span's handle is its tracer's");
            span.end();
        };
        for _ in 0..3 {
            for t in &tracers {
                start(t);
            }
        }
        for t in &tracers {
            assert_eq!(locals(t), 1, "one handle per tracer on this thread");
        }
        let cached = LOCALS.with(|c| c.borrow().entries.len());
        assert!(cached >= 100);
        // Ten stay; a thousand more come and go, used in turn.
        let keep: Vec<Tracer> = tracers.into_iter().take(10).collect();
        for i in 0..1000 {
            start(&pipeline.tracer(format!("u{i}"), "1"));
            start(&keep[i % 10]);
        }
        for t in &keep {
            assert_eq!(locals(t), 1);
        }
        let cached = LOCALS.with(|c| c.borrow().entries.len());
        assert!(
            cached <= 2 * (keep.len() + 1) + 2 * Cache::SCAN,
            "{cached} entries for {} live tracers",
            keep.len()
        );
        drop(keep);
        pipeline.shutdown(std::time::Duration::from_secs(5));
    }

    #[test]
    fn the_cache_forgets_tracers_that_are_gone() {
        let pipeline = Pipeline::builder()
            .transport(InMemory::new())
            .build()
            .unwrap();
        for i in 0..100 {
            pipeline.tracer(format!("t{i}"), "1").start("op").end();
        }
        let cached = LOCALS.with(|c| c.borrow().entries.len());
        assert!(
            cached <= 2 * Cache::SCAN,
            "{cached} entries cached for dropped tracers"
        );
        pipeline.shutdown(std::time::Duration::from_secs(5));
    }
}
