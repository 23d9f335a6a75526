//! [`Cx`]: the capability context every task receives.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use runtime_cap::{
    All, CapMask, CapSet, Capability, Compute, FsAccess, HasBlocking, HasFs, HasNet, HasRandom,
    HasSpawn, HasTelemetry, HasTime, MissingCapability, NetAccess, SubsetOf, TelemetryAccess,
};

use crate::blocking::Blocking;
use crate::budget::Budget;
use crate::cancel::{CancelReason, Cancelled};
mod join;
mod untyped;

#[doc(hidden)]
pub use join::{__branch, __private, BoxedRacer, JoinTuple, boxed_racer};

use crate::outcome::Outcome;
use crate::region::{RegionError, RegionOptions};
use crate::task::JoinHandle;
use crate::time::{Duration, Instant, Interval, Sleep};
use crate::{RegionId, TaskId};
pub(crate) use untyped::{CxCore, spawn_in};

/// A body that returns any value, as one that returns `Result<T, Infallible>`
/// (what the region and task machinery runs).
fn infallible<F: Future>(f: F) -> InfallibleBody<F> {
    InfallibleBody(f)
}

/// The future of [`infallible`]: `F` held once, polled in place. (An
/// `async fn` kept its argument and its awaited copy both: a scope nested
/// in a scope doubled in size at each level, on top of the region's own.)
struct InfallibleBody<F>(F);

impl<F: Future> Future for InfallibleBody<F> {
    type Output = Result<F::Output, Infallible>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        // SAFETY: structural pinning of the only field, never moved out.
        unsafe { self.map_unchecked_mut(|s| &mut s.0) }
            .poll(cx)
            .map(Ok)
    }
}
pub use untyped::{MAX_MASK_DEPTH, MaskDepthExceeded, Masked, YieldNow};

/// The capability context a task receives, and the only way to reach the
/// runtime: spawn into its region, open child regions, check for
/// cancellation, read its budget, read the clock and sleep, run blocking
/// work, draw random numbers, hand out network or file access.
///
/// `C` is the capability set ([`runtime_cap::Caps`]); each effect is a
/// method bounded by the capability it needs (`spawn` by `HasSpawn`,
/// `sleep` by `HasTime`, ...). A context can be narrowed
/// ([`narrow`](Self::narrow)) but never widened, and a task's children
/// receive a context with the same capabilities as the one that spawned
/// them, never more. A run-time mask backs the type up
/// ([`restrict`](Self::restrict)). There is no global spawn, no ambient
/// clock, no "current runtime".
///
/// ```
/// use runtime_core::{Cx, Runtime, caps::{TimeOnly, ambient_authority}};
/// use runtime_core::time::Duration;
///
/// // A library function that may only use time: its signature says so.
/// async fn pause(cx: &Cx<TimeOnly>) -> bool {
///     cx.sleep(Duration::from_millis(1)).await.is_ok()
/// }
///
/// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let slept = pause(&cx.narrow::<TimeOnly>()).await;
///     let child = cx.spawn(|_cx| async { 21 });
///     Ok::<_, ()>((slept, child.await.unwrap() * 2))
/// });
/// assert_eq!(out.ok(), Some((true, 42)));
/// ```
///
/// ## A bare `Cx` is `Cx<Compute>`
///
/// The default capability set, what a signature that writes just `&Cx`
/// gets, is [`Compute`](runtime_cap::Compute): spawn, time and randomness,
/// the effects that stay inside the runtime. Not the network, the file
/// system or telemetry, which reach outside the process, and not blocking
/// threads, which take threads from a bounded pool: a function that needs
/// one of those says so in its signature (`&Cx<NetClient>`, `&Cx<All>`).
/// So the shortest signature is the one most code needs (a tokio-like
/// spawn-and-sleep), and never the most powerful. The root context of
/// `block_on` is `Cx<All>`; hand it to such a function with
/// `&cx.narrow()` (the target type is inferred):
///
/// ```
/// use runtime_core::{Cx, Runtime, caps::ambient_authority};
/// use runtime_core::time::Duration;
///
/// async fn tick_twice(cx: &Cx) -> u32 {
///     let a = cx.spawn(|cx| async move { cx.sleep(Duration::from_millis(1)).await.is_ok() });
///     u32::from(a.await.unwrap()) + 1
/// }
///
/// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move { Ok::<_, ()>(tick_twice(&cx.narrow()).await) });
/// assert_eq!(out.ok(), Some(2));
/// ```
///
/// A bare `Cx` cannot open the network:
///
/// ```compile_fail
/// fn net(cx: &runtime_core::Cx) -> runtime_core::caps::NetAccess {
///     cx.net()
/// }
/// ```
///
/// Widening does not compile:
///
/// ```compile_fail
/// use runtime_core::{Cx, caps::{All, TimeOnly}};
/// fn widen(cx: Cx<TimeOnly>) -> Cx<All> {
///     cx.narrow::<All>()
/// }
/// ```
///
/// Spawning needs the spawn capability:
///
/// ```compile_fail
/// use runtime_core::{Cx, caps::TimeOnly};
/// fn spawn_without(cx: &Cx<TimeOnly>) {
///     cx.spawn(|_cx| async {});
/// }
/// ```
///
/// Sleeping needs time:
///
/// ```compile_fail
/// use runtime_core::{Cx, caps::Nothing};
/// use runtime_core::time::Duration;
/// async fn sleep_without(cx: &Cx<Nothing>) {
///     let _ = cx.sleep(Duration::from_millis(1)).await;
/// }
/// ```
///
/// Opening the network needs the network capability:
///
/// ```compile_fail
/// use runtime_core::{Cx, caps::Compute};
/// fn net_without(cx: &Cx<Compute>) -> runtime_core::caps::NetAccess {
///     cx.net()
/// }
/// ```
///
/// The same three effects compile with the capability:
///
/// ```
/// use runtime_core::{Cx, caps::{Compute, NetClient, NetAccess}};
/// use runtime_core::time::Duration;
/// fn spawn_with(cx: &Cx<Compute>) {
///     cx.spawn(|_cx| async {});
/// }
/// async fn sleep_with(cx: &Cx<Compute>) {
///     let _ = cx.sleep(Duration::from_millis(1)).await;
/// }
/// fn net_with(cx: &Cx<NetClient>) -> NetAccess {
///     cx.net()
/// }
/// ```
pub struct Cx<C: CapSet = Compute> {
    core: CxCore,
    mask: CapMask,
    _caps: PhantomData<fn() -> C>,
}

impl<C: CapSet> Clone for Cx<C> {
    fn clone(&self) -> Self {
        Cx {
            core: self.core.clone(),
            mask: self.mask,
            _caps: PhantomData,
        }
    }
}

impl<C: CapSet> fmt::Debug for Cx<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cx")
            .field("task", &self.task_id())
            .field("region", &self.region_id())
            .field("caps", &self.mask)
            .finish()
    }
}

impl Cx<All> {
    /// A context with no runtime behind it, never cancelled, for this
    /// crate's unit tests and loom models of code that takes a `Cx`.
    #[cfg(any(test, loom))]
    #[doc(hidden)]
    pub fn detached_for_tests() -> Cx<All> {
        Cx::from_core(CxCore::detached_for_tests(), All::MASK)
    }
}

impl<C: CapSet> Cx<C> {
    pub(crate) fn from_core(core: CxCore, mask: CapMask) -> Self {
        Cx {
            core,
            mask: mask.intersect(C::MASK),
            _caps: PhantomData,
        }
    }

    pub(crate) fn core(&self) -> &CxCore {
        &self.core
    }

    /// Panics (inside the task: its outcome becomes `Panicked`) when the
    /// run-time mask lacks `cap`. The type already guarantees it unless
    /// [`restrict`](Self::restrict) removed it.
    #[track_caller]
    fn require(&self, cap: Capability) {
        if !self.mask.contains(cap) {
            panic!("{}", MissingCapability(cap));
        }
    }

    /// A budget with a deadline sets a timer at that instant (a sleep by
    /// another name): it takes [`Capability::Time`].
    #[track_caller]
    fn require_time_for(&self, budget: &Budget) {
        if budget.deadline.is_some() {
            self.require(Capability::Time);
        }
    }

    /// A context with fewer capabilities (`D` a subset of `C`), for handing
    /// to code that should do less. Widening does not compile.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::caps::TimeOnly;
    /// let out = rt.block_on(|cx| async move {
    ///     let t = cx.narrow::<TimeOnly>(); // can sleep, cannot spawn
    ///     Ok::<_, ()>(t.sleep(runtime_core::time::Duration::from_millis(1)).await.is_ok())
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    pub fn narrow<D: SubsetOf<C>>(&self) -> Cx<D> {
        Cx::from_core(self.core.clone(), self.mask)
    }

    /// The same context with `cap` removed at run time (for policies the
    /// type cannot express); effects needing it then panic with
    /// [`MissingCapability`].
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::caps::Capability;
    /// let out = rt.block_on(|cx| async move {
    ///     let no_net = cx.restrict(Capability::Net);
    ///     Ok::<_, ()>((no_net.can(Capability::Net), no_net.can(Capability::Spawn)))
    /// });
    /// assert_eq!(out.ok(), Some((false, true)));
    /// ```
    pub fn restrict(&self, cap: Capability) -> Cx<C> {
        Cx {
            core: self.core.clone(),
            mask: self.mask.without(cap),
            _caps: PhantomData,
        }
    }

    /// The capabilities this context holds, as a run-time mask.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::caps::{CapSet, Compute};
    /// let out = rt.block_on(|cx| async move { Ok::<_, ()>(cx.narrow::<Compute>().caps()) });
    /// assert_eq!(out.ok(), Some(Compute::MASK));
    /// ```
    pub fn caps(&self) -> CapMask {
        self.mask
    }

    /// Whether this context holds `cap` (type and run-time mask).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::caps::{Capability, TimeOnly};
    /// let out = rt.block_on(|cx| async move {
    ///     Ok::<_, ()>(cx.narrow::<TimeOnly>().can(Capability::Spawn))
    /// });
    /// assert_eq!(out.ok(), Some(false));
    /// ```
    pub fn can(&self, cap: Capability) -> bool {
        self.mask.contains(cap)
    }

    /// The id of the task this context belongs to.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let h = cx.spawn(|cx| async move { cx.task_id() });
    ///     let id = h.id();
    ///     Ok::<_, ()>(h.await.unwrap() == id)
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    pub fn task_id(&self) -> TaskId {
        self.core.task_id()
    }

    /// The id of the region this context spawns into.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let outer = cx.region_id();
    ///     let inner = cx.region(|cx| async move { Ok::<_, ()>(cx.region_id()) }).await.unwrap();
    ///     Ok::<_, ()>(outer != inner)
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    pub fn region_id(&self) -> RegionId {
        self.core.region_id()
    }

    /// A checkpoint: `Err(Cancelled)` once cancellation has been requested
    /// (and no masked section is active), every time after that
    /// (level-triggered). A task that returns `Err` after a checkpoint
    /// reported cancellation ends `Cancelled(reason)`.
    ///
    /// A checkpoint of this `Cx`'s scope, whichever task awaits it: use
    /// the context the task (or region body) was handed. A child that
    /// sleeps on a clone of its parent's `Cx` is not woken by its own
    /// cancellation: it sleeps on until the sleep ends or its cleanup
    /// grace runs out.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::{CancelKind, CancelReason};
    /// let out = rt.block_on(|cx| async move {
    ///     let h = cx.try_spawn(|cx| async move {
    ///         loop {
    ///             cx.checkpoint()?; // returns once cancellation is requested
    ///             cx.yield_now().await?;
    ///         }
    ///         #[allow(unreachable_code)]
    ///         Ok::<(), runtime_core::Cancelled>(())
    ///     });
    ///     h.cancel(CancelReason::user("enough"));
    ///     Ok::<_, ()>(h.await.cancel_reason().map(|r| r.kind()))
    /// });
    /// assert_eq!(out.ok(), Some(Some(CancelKind::User)));
    /// ```
    pub fn checkpoint(&self) -> Result<(), Cancelled> {
        self.core.checkpoint()
    }

    /// Whether cancellation has been requested (masked or not).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::CancelReason;
    /// let out = rt.block_on(|cx| async move {
    ///     let before = cx.is_cancel_requested();
    ///     let after = cx.region(|cx| async move {
    ///         cx.cancel(CancelReason::user("stop"));
    ///         Ok::<_, ()>(cx.is_cancel_requested())
    ///     }).await;
    ///     Ok::<_, ()>((before, after.ok()))
    /// });
    /// assert_eq!(out.ok(), Some((false, Some(true))));
    /// ```
    pub fn is_cancel_requested(&self) -> bool {
        self.core.is_cancel_requested()
    }

    /// The requested cancellation's reason, if any (masked or not).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::CancelReason;
    /// let out = rt.block_on(|cx| async move {
    ///     let r = cx.region(|cx| async move {
    ///         cx.cancel(CancelReason::user("stop"));
    ///         Ok::<_, ()>(cx.cancel_reason().and_then(|r| r.message().map(String::from)))
    ///     }).await;
    ///     Ok::<_, ()>(r.ok().flatten())
    /// });
    /// assert_eq!(out.ok(), Some(Some("stop".to_string())));
    /// ```
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.core.cancel_reason()
    }

    /// Requests cancellation of this context's scope: the region whose body
    /// this is (and everything in it), or, in a task's own scope, the task
    /// (and every region it has open).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::{CancelReason, time::Duration};
    /// let out = rt.block_on(|cx| async move {
    ///     let r = cx.region(|cx| async move {
    ///         let sleeper = cx.spawn(|cx| async move { cx.sleep(Duration::from_secs(3600)).await });
    ///         cx.cancel(CancelReason::user("shut the region")); // reaches the sleeper
    ///         Ok::<_, ()>(sleeper.await.unwrap().is_err())
    ///     }).await;
    ///     Ok::<_, ()>(r.ok())
    /// });
    /// assert_eq!(out.ok(), Some(Some(true)));
    /// ```
    pub fn cancel(&self, reason: CancelReason) {
        self.core.cancel(reason);
    }

    /// Yields to the scheduler once; a checkpoint.
    ///
    /// A checkpoint of this `Cx`'s scope, whichever task awaits it: use
    /// the context the task (or region body) was handed. A child that
    /// sleeps on a clone of its parent's `Cx` is not woken by its own
    /// cancellation: it sleeps on until the sleep ends or its cleanup
    /// grace runs out.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     for _ in 0..3 {
    ///         cx.yield_now().await.map_err(|_| ())?; // let others run
    ///     }
    ///     Ok::<_, ()>(())
    /// });
    /// assert!(out.is_ok());
    /// ```
    pub fn yield_now(&self) -> YieldNow<'_> {
        self.core.yield_now()
    }

    /// Runs `fut` with cancellation deferred (see
    /// [`MAX_MASK_DEPTH`](crate::MAX_MASK_DEPTH)); the cleanup budget and
    /// shutdown's deadline still apply.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::CancelReason;
    /// let out = rt.block_on(|cx| async move {
    ///     let r = cx.region(|cx| async move {
    ///         cx.cancel(CancelReason::user("stop"));
    ///         // Inside the masked section the checkpoint reports nothing...
    ///         let inside = cx.masked(async { cx.checkpoint().is_ok() }).await.unwrap();
    ///         // ...and after it, the request.
    ///         Ok::<_, ()>((inside, cx.checkpoint().is_err()))
    ///     }).await;
    ///     Ok::<_, ()>(r.ok())
    /// });
    /// assert_eq!(out.ok(), Some(Some((true, true))));
    /// ```
    pub fn masked<F: Future>(&self, fut: F) -> Masked<'_, F> {
        self.core.masked(fut)
    }

    /// This context's effective budget.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::{Budget, RegionOptions};
    /// let out = rt.block_on(|cx| async move {
    ///     let opts = RegionOptions::fail_fast().budget(Budget::UNLIMITED.with_cost_quota(5));
    ///     let b = cx.region_with(opts, |cx| async move { Ok::<_, ()>(cx.budget()) }).await;
    ///     Ok::<_, ()>(b.unwrap().cost_quota)
    /// });
    /// assert_eq!(out.ok(), Some(Some(5)));
    /// ```
    pub fn budget(&self) -> Budget {
        self.core.budget()
    }

    /// Charges `cost` against the task's cost quota (all it was charged),
    /// and against the cost quota of each region whose body this context
    /// runs in (what was charged in that body since the region opened).
    /// Past a quota, what it belongs to is cancelled (`CostBudget`): the
    /// task, or only that region; this then returns `Err`.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::{Budget, CancelKind};
    /// let out = rt.block_on(|cx| async move {
    ///     let h = cx.try_spawn_with(Budget::UNLIMITED.with_cost_quota(10), |cx| async move {
    ///         loop {
    ///             cx.charge(3)?; // the fourth charge is over the quota
    ///         }
    ///         #[allow(unreachable_code)]
    ///         Ok::<(), runtime_core::Cancelled>(())
    ///     });
    ///     Ok::<_, ()>(h.await.cancel_reason().map(|r| r.kind()))
    /// });
    /// assert_eq!(out.ok(), Some(Some(CancelKind::CostBudget)));
    /// ```
    pub fn charge(&self, cost: u64) -> Result<(), Cancelled> {
        self.core.charge(cost)
    }

    /// Opens a fail-fast child region and runs `body` in it (with this
    /// context's capabilities); resolves when the body and every task in
    /// the region have finished and its finalizers have run. The body
    /// returns `Result<T, E>`: `Err(e)` is the region's
    /// [`RegionError::Body`], or `Cancelled` when the body returned it
    /// after a checkpoint reported the region's cancellation. A body that
    /// returns any value: [`scope`](Self::scope).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let sum = cx.region(|cx| async move {
    ///         let a = cx.spawn(|_| async { 1 });
    ///         let b = cx.spawn(|_| async { 2 });
    ///         Ok::<_, ()>(a.await.unwrap() + b.await.unwrap())
    ///     }).await; // every task in it has finished here
    ///     Ok::<_, ()>(sum.unwrap())
    /// });
    /// assert_eq!(out.ok(), Some(3));
    /// ```
    pub fn region<G, F, T, E>(
        &self,
        body: G,
    ) -> impl Future<Output = Outcome<T, RegionError<E>>> + Send + 'static
    where
        G: FnOnce(Cx<C>) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.region_with(RegionOptions::fail_fast(), body)
    }

    /// [`region`](Self::region) with a policy, budget and cleanup budget.
    ///
    /// # Panics
    ///
    /// When the budget has a deadline, or the options a cleanup budget with
    /// a grace period, and this context lacks [`Capability::Time`] (their
    /// timers would be sleeps).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::{Outcome, RegionOptions};
    /// let out = rt.block_on(|cx| async move {
    ///     // Collect-all: a failing task does not cancel its sibling.
    ///     let r = cx.region_with(RegionOptions::collect_all(), |cx| async move {
    ///         cx.try_spawn(|_| async { Err::<(), _>("one failed") });
    ///         let other = cx.spawn(|_| async { 2 });
    ///         Ok::<_, ()>(other.await.unwrap())
    ///     }).await;
    ///     Ok::<_, ()>(matches!(r, Outcome::Err(_)))
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    #[track_caller]
    pub fn region_with<G, F, T, E>(
        &self,
        spec: RegionOptions,
        body: G,
    ) -> impl Future<Output = Outcome<T, RegionError<E>>> + Send + 'static
    where
        G: FnOnce(Cx<C>) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.require_time_for(&spec.budget);
        if spec.cleanup.is_some_and(|c| c.grace.is_some()) {
            // A grace period of its own choosing sets a timer too (found by
            // review: a finalizer that never ends slept for it).
            self.require(Capability::Time);
        }
        let mask = self.mask;
        self.core
            .region_with(spec, move |core| body(Cx::from_core(core, mask)))
    }

    /// Opens a fail-fast child region and runs `body` in it, as
    /// [`region`](Self::region), for a body that returns any value (the
    /// way [`spawn`](Self::spawn) takes one): the outcome is `Ok(value)`,
    /// a child's failure ([`RegionError::Child`]), `Cancelled` or
    /// `Panicked`, and there is no body error to handle. A body that can
    /// fail, or that should end `Cancelled` when asked to stop
    /// (`cx.checkpoint()?`), goes to `region`, which takes `Result<T, E>`
    /// and maps `Err` to [`RegionError::Body`].
    ///
    /// (Why two methods: see [`try_spawn`](Self::try_spawn). `region`
    /// keeps its name and its `Result` body, as `try_spawn` would be
    /// called for symmetry, because code across the workspace relies on
    /// it.)
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let sum = cx.scope(|cx| async move {
    ///         let a = cx.spawn(|_| async { 1 });
    ///         let b = cx.spawn(|_| async { 2 });
    ///         a.await.unwrap() + b.await.unwrap()
    ///     }).await; // every task in it has finished here
    ///     Ok::<_, ()>(sum.unwrap())
    /// });
    /// assert_eq!(out.ok(), Some(3));
    /// ```
    pub fn scope<G, F, T>(
        &self,
        body: G,
    ) -> impl Future<Output = Outcome<T, RegionError>> + Send + 'static
    where
        G: FnOnce(Cx<C>) -> F,
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.scope_with(RegionOptions::fail_fast(), body)
    }

    /// [`scope`](Self::scope) with a policy, budget and cleanup budget.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::{Outcome, RegionError, RegionOptions};
    /// let out = rt.block_on(|cx| async move {
    ///     // Collect-all: a failing task does not cancel its sibling, and
    ///     // the scope reports the failure.
    ///     let r = cx.scope_with(RegionOptions::collect_all(), |cx| async move {
    ///         cx.try_spawn(|_| async { Err::<(), _>("one failed") });
    ///         cx.spawn(|_| async { 2 }).await.unwrap()
    ///     }).await;
    ///     Ok::<_, ()>(matches!(r, Outcome::Err(RegionError::Child(_))))
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    pub fn scope_with<G, F, T>(
        &self,
        spec: RegionOptions,
        body: G,
    ) -> impl Future<Output = Outcome<T, RegionError>> + Send + 'static
    where
        G: FnOnce(Cx<C>) -> F,
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.region_with(spec, move |cx| infallible(body(cx)))
    }

    /// Registers `f` to run when this context's region closes, in reverse
    /// order of registration. It always runs (a finalizer's first poll is
    /// never cut off, whatever the region's [`CleanupBudget`](crate::CleanupBudget); the budget
    /// bounds an async finalizer's later polls and time, each finalizer's
    /// from its own start). One registered while the finalizers run (by a
    /// finalizer) runs in the same pass while the pass is within the
    /// budget: once the pass has run for the grace period, or started as
    /// many such late finalizers as the budget has polls, or the region is
    /// cut off, a late one is dropped unrun and counted cut off (so a
    /// finalizer that registers another for ever cannot hold the region
    /// open). If the region's future is dropped before its
    /// close, the finalizers still pending get that first poll where the
    /// region ends: at the drop, or when its last task finishes (an async
    /// finalizer not done after it is cut off, counted in
    /// `RuntimeStats::finalizers_cut_off`).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use std::sync::{Arc, Mutex};
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let l = log.clone();
    /// rt.block_on(move |cx| async move {
    ///     cx.region(move |cx| async move {
    ///         let (a, b) = (l.clone(), l.clone());
    ///         cx.defer(move || a.lock().unwrap().push("first registered"));
    ///         cx.defer(move || b.lock().unwrap().push("second registered"));
    ///         Ok::<_, ()>(())
    ///     }).await;
    ///     Ok::<_, ()>(())
    /// });
    /// assert_eq!(*log.lock().unwrap(), ["second registered", "first registered"]);
    /// ```
    pub fn defer(&self, f: impl FnOnce() + Send + 'static) {
        self.core.defer(f);
    }

    /// Registers an async finalizer, run under the cleanup budget.
    ///
    /// Finalizers run after the region has closed to new tasks: a task
    /// spawned from one (with the region's context) is never started, and
    /// its handle ends at once `Cancelled` ("spawned into a region that
    /// had already closed"). Work a finalizer needs runs in the finalizer
    /// itself, or in a region it opens through this context: such a
    /// region runs (counted in the nearest region above still open, which
    /// waits for it, unless that is the runtime's root, which waits for
    /// nothing: await the region in the finalizer), is not cancelled for
    /// this region's sake (cleanup
    /// runs whether or not the region was cancelled), and lives within
    /// the finalizer's cleanup budget. A region opened through this
    /// context after the finalizers have run is born cancelled.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    /// let done = Arc::new(AtomicBool::new(false));
    /// let d = done.clone();
    /// rt.block_on(move |cx| async move {
    ///     cx.region(move |cx| async move {
    ///         cx.finalizer(async move { d.store(true, Ordering::SeqCst) });
    ///         Ok::<_, ()>(())
    ///     }).await;
    ///     Ok::<_, ()>(())
    /// });
    /// assert!(done.load(Ordering::SeqCst));
    /// ```
    pub fn finalizer(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.core.finalizer(fut);
    }
}

impl<C: HasSpawn> Cx<C> {
    /// Spawns a task into this context's region; the closure receives the
    /// child's context, with the same capabilities as this one. The body
    /// returns any value: the task's [`Outcome`] is `Ok(value)`,
    /// `Cancelled` (it was cut off) or `Panicked`, with no error arm to
    /// handle. The region will not close before the task ends; dropping
    /// the handle does not detach it.
    ///
    /// A body that returns a value after seeing a cancellation at a
    /// checkpoint ends `Ok(value)`: it finished, with what it had. A body
    /// that can fail, or that should end `Cancelled` when asked to stop
    /// (`cx.checkpoint()?`), goes to [`try_spawn`](Self::try_spawn); so
    /// does one whose failure its region should see (fail-fast cancels
    /// the siblings).
    ///
    /// ```
    /// use runtime_core::{Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let a = cx.spawn(|_| async { 20 });
    ///     let b = cx.spawn(|_| async { 22 });
    ///     Ok::<_, ()>(a.await.unwrap() + b.await.unwrap())
    /// });
    /// assert_eq!(out.ok(), Some(42));
    /// ```
    #[track_caller]
    pub fn spawn<G, F, T>(&self, body: G) -> JoinHandle<T>
    where
        G: FnOnce(Cx<C>) -> F + Send + 'static,
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_with(Budget::UNLIMITED, body)
    }

    /// [`spawn`](Self::spawn) with a budget of its own (met with the
    /// region's).
    ///
    /// # Panics
    ///
    /// When the budget has a deadline and this context lacks
    /// [`Capability::Time`] (the deadline's timer would be a sleep).
    ///
    /// ```
    /// use runtime_core::{Budget, Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     // Ten polls at most: the task is cancelled (`PollQuota`), sees
    ///     // it at its checkpoint, and returns what it has.
    ///     let h = cx.spawn_with(Budget::UNLIMITED.with_poll_quota(10), |cx| async move {
    ///         let mut turns = 0;
    ///         while cx.yield_now().await.is_ok() {
    ///             turns += 1;
    ///         }
    ///         turns
    ///     });
    ///     Ok::<_, ()>(h.await.unwrap())
    /// });
    /// assert!(out.unwrap() < 10);
    /// ```
    #[track_caller]
    pub fn spawn_with<G, F, T>(&self, budget: Budget, body: G) -> JoinHandle<T>
    where
        G: FnOnce(Cx<C>) -> F + Send + 'static,
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.require(Capability::Spawn);
        self.require_time_for(&budget);
        let mask = self.mask;
        self.core.spawn_with(budget, move |core| {
            let fut = body(Cx::from_core(core, mask));
            async move { Ok::<T, Infallible>(fut.await) }
        })
    }

    /// Spawns a task whose body can fail: it returns `Result<T, E>`, and
    /// `Err(e)` makes the task's outcome `Err(e)` and counts as a failure
    /// in its region (a fail-fast region cancels the siblings; the
    /// region's outcome reports it as [`RegionError::Child`]). An `Err`
    /// returned after a checkpoint reported cancellation makes the outcome
    /// `Cancelled(reason)` instead: the task stopped because it was asked
    /// to.
    ///
    /// Why two methods rather than one over a trait of the body's output:
    /// a trait implemented for `Result<T, E>` and for every other `T`
    /// needs specialization, and one implemented only for `Result` makes
    /// every infallible body write `Ok::<_, ()>(..)`. With two methods the
    /// body's type alone decides, and inference needs no annotation for
    /// `spawn`.
    ///
    /// ```
    /// use runtime_core::{Outcome, RegionError, Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let failed = cx.region(|cx| async move {
    ///         let h = cx.try_spawn(|_| async { Err::<(), _>("disk full") });
    ///         Ok::<_, ()>(h.await)
    ///     }).await;
    ///     Ok::<_, ()>(failed)
    /// });
    /// // The region saw the child's failure.
    /// assert!(matches!(out.ok(), Some(Outcome::Err(RegionError::Child(_)))));
    /// ```
    #[track_caller]
    pub fn try_spawn<G, F, T, E>(&self, body: G) -> JoinHandle<T, E>
    where
        G: FnOnce(Cx<C>) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        self.try_spawn_with(Budget::UNLIMITED, body)
    }

    /// [`try_spawn`](Self::try_spawn) with a budget of its own (met with
    /// the region's).
    ///
    /// # Panics
    ///
    /// When the budget has a deadline and this context lacks
    /// [`Capability::Time`] (the deadline's timer would be a sleep).
    ///
    /// ```
    /// use runtime_core::{Budget, Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().worker_threads(1).build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let h = cx.try_spawn_with(Budget::UNLIMITED.with_cost_quota(10), |cx| async move {
    ///         cx.charge(4)?;
    ///         Ok::<_, runtime_core::Cancelled>(4)
    ///     });
    ///     Ok::<_, ()>(h.await.ok())
    /// });
    /// assert_eq!(out.ok(), Some(Some(4)));
    /// ```
    #[track_caller]
    pub fn try_spawn_with<G, F, T, E>(&self, budget: Budget, body: G) -> JoinHandle<T, E>
    where
        G: FnOnce(Cx<C>) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        self.require(Capability::Spawn);
        self.require_time_for(&budget);
        let mask = self.mask;
        self.core
            .spawn_with(budget, move |core| body(Cx::from_core(core, mask)))
    }

    /// Runs every racer as a task in a child region; the first to finish
    /// wins, the others are cancelled (`LostRace`) and drained before this
    /// resolves to the winner's outcome (or `Panicked`, if a loser panicked
    /// while draining). An empty race resolves `Cancelled`. Racers of
    /// different closure types: [`race!`](crate::race).
    ///
    /// ```
    /// use runtime_core::{Cx, Runtime, caps::{All, ambient_authority}, time::Duration};
    /// let rt = Runtime::builder().worker_threads(2).build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let racers = [1u64, 50].map(|ms| move |cx: Cx<All>| async move {
    ///         cx.sleep(Duration::from_millis(ms)).await.map_err(|_| ())?;
    ///         Ok::<_, ()>(ms)
    ///     });
    ///     Ok::<_, ()>(cx.race(racers.into()).await.ok())
    /// });
    /// assert_eq!(out.ok(), Some(Some(1)));
    /// ```
    #[track_caller]
    pub fn race<G, F, T, E>(
        &self,
        racers: Vec<G>,
    ) -> impl Future<Output = Outcome<T, E>> + Send + 'static
    where
        G: FnOnce(Cx<C>) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        self.require(Capability::Spawn);
        let mask = self.mask;
        self.core.race(
            racers
                .into_iter()
                .map(|g| move |core| g(Cx::from_core(core, mask)))
                .collect(),
        )
    }

    /// Runs every body as a task in a child collect-all region and resolves
    /// to all their outcomes, in order, once every one has finished (a
    /// failing or panicking body does not cancel the others). Bodies of
    /// different types: [`join!`](crate::join).
    ///
    /// ```
    /// use runtime_core::{Outcome, Runtime, caps::ambient_authority};
    /// let rt = Runtime::builder().worker_threads(2).build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let bodies = (1..=3).map(|i| move |_cx| async move {
    ///         if i == 2 { Err("two") } else { Ok(i * 10) }
    ///     });
    ///     Ok::<_, ()>(cx.join_all(bodies.collect()).await)
    /// });
    /// let outcomes = out.unwrap();
    /// assert!(matches!(outcomes[..], [Outcome::Ok(10), Outcome::Err("two"), Outcome::Ok(30)]));
    /// ```
    #[track_caller]
    pub fn join_all<G, F, T, E>(
        &self,
        bodies: Vec<G>,
    ) -> impl Future<Output = Vec<Outcome<T, E>>> + Send + 'static
    where
        G: FnOnce(Cx<C>) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Debug + Send + 'static,
    {
        self.require(Capability::Spawn);
        let mask = self.mask;
        self.core.join_all(
            bodies
                .into_iter()
                .map(|g| move |core| g(Cx::from_core(core, mask)))
                .collect(),
        )
    }

    /// The scope of [`join!`](crate::join): not for direct use.
    #[doc(hidden)]
    #[track_caller]
    pub fn __join_scope<B, Fut, R>(&self, body: B) -> impl Future<Output = R> + Send + 'static
    where
        B: FnOnce(Cx<C>) -> Fut,
        Fut: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        self.require(Capability::Spawn);
        let mask = self.mask;
        self.core
            .join_scope(move |core| body(Cx::from_core(core, mask)))
    }
}

impl<C: HasTime> Cx<C> {
    /// The runtime clock's time.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::time::Duration;
    /// let out = rt.block_on(|cx| async move {
    ///     let t0 = cx.now();
    ///     cx.sleep(Duration::from_millis(2)).await.map_err(|_| ())?;
    ///     Ok::<_, ()>(cx.now().saturating_duration_since(t0) >= Duration::from_millis(2))
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    #[track_caller]
    pub fn now(&self) -> Instant {
        self.require(Capability::Time);
        self.core.now()
    }

    /// Sleeps for `d`; a checkpoint.
    ///
    /// A checkpoint of this `Cx`'s scope, whichever task awaits it: use
    /// the context the task (or region body) was handed. A child that
    /// sleeps on a clone of its parent's `Cx` is not woken by its own
    /// cancellation: it sleeps on until the sleep ends or its cleanup
    /// grace runs out.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::time::Duration;
    /// let out = rt.block_on(|cx| async move {
    ///     // Err(Cancelled) if the task is cancelled while it sleeps.
    ///     Ok::<_, ()>(cx.sleep(Duration::from_millis(1)).await.is_ok())
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    #[track_caller]
    pub fn sleep(&self, d: Duration) -> Sleep<'_> {
        self.require(Capability::Time);
        self.core.sleep(d)
    }

    /// Sleeps until `at`; a checkpoint.
    ///
    /// A checkpoint of this `Cx`'s scope, whichever task awaits it: use
    /// the context the task (or region body) was handed. A child that
    /// sleeps on a clone of its parent's `Cx` is not woken by its own
    /// cancellation: it sleeps on until the sleep ends or its cleanup
    /// grace runs out.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::time::Duration;
    /// let out = rt.block_on(|cx| async move {
    ///     let at = cx.now().saturating_add(Duration::from_millis(1));
    ///     cx.sleep_until(at).await.map_err(|_| ())?;
    ///     Ok::<_, ()>(cx.now() >= at)
    /// });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    #[track_caller]
    pub fn sleep_until(&self, at: Instant) -> Sleep<'_> {
        self.require(Capability::Time);
        self.core.sleep_until(at)
    }

    /// Ticks every `period`, the first tick one period from now. A zero
    /// period is taken as 1 ns (what [`Interval::period`](crate::time::Interval::period)
    /// then returns).
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::time::Duration;
    /// let out = rt.block_on(|cx| async move {
    ///     let mut every = cx.interval(Duration::from_millis(1));
    ///     for _ in 0..3 {
    ///         every.tick(&cx).await.map_err(|_| ())?;
    ///     }
    ///     Ok::<_, ()>(every.period())
    /// });
    /// assert_eq!(out.ok(), Some(Duration::from_millis(1)));
    /// ```
    #[track_caller]
    pub fn interval(&self, period: Duration) -> Interval {
        self.require(Capability::Time);
        self.core.interval(period)
    }

    /// Runs `body` in a child region cancelled with reason `Timeout` if it
    /// has not closed after `d`; returns once it has drained. The body
    /// returns `Result<T, E>`, as [`region`](Self::region)'s; one that
    /// returns any value: [`scope_timeout`](Self::scope_timeout).
    ///
    /// The timeout reaches what runs in the body's region: work started
    /// there (through the body's context), and `JoinHandle`s awaited there
    /// (a cancellation checkpoint of the awaiter). A region future made
    /// *outside* (`cx.scope(..)`, `race!`, `join_all`, another `timeout`)
    /// and awaited in the body is not: it is a region of the outer scope,
    /// which the timeout does not cancel, and the body waits for it to
    /// close. Make such work inside the body, with its context, as tokio's
    /// `timeout(d, future)` would have it made before the call.
    ///
    /// A body that ignores its cancellation (that never awaits a
    /// checkpoint, or goes on past its `Err`) is bounded by the region's
    /// [`CleanupBudget`](crate::CleanupBudget): at the cut-off it gets one
    /// more poll to see the cancellation, and is then dropped where it
    /// lies (with whatever it was awaiting), the timeout `Cancelled`.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::{CancelKind, time::Duration};
    /// let out = rt.block_on(|cx| async move {
    ///     let slow = cx.timeout(Duration::from_millis(5), |cx| async move {
    ///         cx.sleep(Duration::from_secs(3600)).await?;
    ///         Ok::<_, runtime_core::Cancelled>(())
    ///     }).await;
    ///     Ok::<_, ()>(slow.cancel_reason().map(|r| r.kind()))
    /// });
    /// assert_eq!(out.ok(), Some(Some(CancelKind::Timeout)));
    /// ```
    #[track_caller]
    pub fn timeout<G, F, T, E>(
        &self,
        d: Duration,
        body: G,
    ) -> impl Future<Output = Outcome<T, RegionError<E>>> + Send + 'static
    where
        G: FnOnce(Cx<C>) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.require(Capability::Time);
        let mask = self.mask;
        self.core
            .timeout(d, move |core| body(Cx::from_core(core, mask)))
    }

    /// [`timeout`](Self::timeout) for a body that returns any value (see
    /// [`scope`](Self::scope)): `Ok(value)` if it finished in time (or
    /// returned a value after seeing the timeout at a checkpoint),
    /// `Cancelled(Timeout)` if it was cut off, or a child's failure.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// use runtime_core::time::Duration;
    /// let out = rt.block_on(|cx| async move {
    ///     // Counts its turns until the timeout stops it, then returns them.
    ///     let turns = cx.scope_timeout(Duration::from_millis(5), |cx| async move {
    ///         let mut n = 0u64;
    ///         while cx.sleep(Duration::from_micros(100)).await.is_ok() {
    ///             n += 1;
    ///         }
    ///         n
    ///     }).await;
    ///     Ok::<_, ()>(turns.ok())
    /// });
    /// assert!(out.unwrap().is_some());
    /// ```
    #[track_caller]
    pub fn scope_timeout<G, F, T>(
        &self,
        d: Duration,
        body: G,
    ) -> impl Future<Output = Outcome<T, RegionError>> + Send + 'static
    where
        G: FnOnce(Cx<C>) -> F,
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.timeout(d, move |cx| infallible(body(cx)))
    }
}

impl<C: HasBlocking> Cx<C> {
    /// Runs `f` on the blocking pool and resolves with its value. The job
    /// is not a child of this context's region: see [`Blocking`] for
    /// what happens to one whose future is dropped unawaited.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move {
    ///     let sum = cx.spawn_blocking(|| (1..=10u64).sum::<u64>()).await;
    ///     Ok::<_, ()>(sum.ok())
    /// });
    /// assert_eq!(out.ok(), Some(Some(55)));
    /// ```
    #[track_caller]
    pub fn spawn_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Blocking<R> {
        self.require(Capability::Blocking);
        self.core.spawn_blocking(f)
    }
}

impl<C: HasRandom> Cx<C> {
    /// The next number of this task's random sequence. Seeded: the
    /// runtime's seed ([`Builder::seed`](crate::Builder::seed)) and the
    /// task's place in the spawn tree decide it, so the same program with
    /// the same seed draws the same numbers, and tasks do not disturb each
    /// other's sequences.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move { Ok::<_, ()>(cx.random_u64() != cx.random_u64()) });
    /// assert_eq!(out.ok(), Some(true));
    /// ```
    #[track_caller]
    pub fn random_u64(&self) -> u64 {
        self.require(Capability::Random);
        self.core.random_u64()
    }

    /// A number in `0..n` (`n > 0`), without modulo bias.
    ///
    /// ```
    /// # use runtime_core::{Runtime, caps::ambient_authority};
    /// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
    /// let out = rt.block_on(|cx| async move { Ok::<_, ()>(cx.random_below(6) + 1) });
    /// assert!((1..=6).contains(&out.unwrap()));
    /// ```
    #[track_caller]
    pub fn random_below(&self, n: u64) -> u64 {
        assert!(n > 0, "random_below(0): the range is empty");
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.random_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

impl<C: HasNet> Cx<C> {
    /// Permission to open network connections, for transports that take it
    /// (the exporter's `HttpTransport`).
    ///
    /// ```
    /// use runtime_core::{Cx, caps::{NetAccess, NetClient}};
    /// // A transport that takes `NetAccess` gets it from a context that may.
    /// fn connect(cx: &Cx<NetClient>) -> NetAccess {
    ///     cx.net()
    /// }
    /// ```
    #[track_caller]
    pub fn net(&self) -> NetAccess {
        self.require(Capability::Net);
        NetAccess::from_ambient(runtime_cap::ambient_authority())
    }
}

impl<C: HasFs> Cx<C> {
    /// Permission to touch the file system.
    ///
    /// ```
    /// use runtime_core::{Cx, caps::{All, FsAccess}};
    /// fn open_log(cx: &Cx<All>) -> FsAccess {
    ///     cx.fs()
    /// }
    /// ```
    #[track_caller]
    pub fn fs(&self) -> FsAccess {
        self.require(Capability::Fs);
        FsAccess::from_ambient(runtime_cap::ambient_authority())
    }
}

impl<C: HasTelemetry> Cx<C> {
    /// Permission to export telemetry.
    ///
    /// ```
    /// use runtime_core::{Cx, caps::{All, TelemetryAccess}};
    /// fn exporter(cx: &Cx<All>) -> TelemetryAccess {
    ///     cx.telemetry()
    /// }
    /// ```
    #[track_caller]
    pub fn telemetry(&self) -> TelemetryAccess {
        self.require(Capability::Telemetry);
        TelemetryAccess::from_ambient(runtime_cap::ambient_authority())
    }
}
