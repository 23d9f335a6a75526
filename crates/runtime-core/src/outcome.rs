//! How a task or region ended: [`Outcome`], ordered by [`Severity`].
//!
//! ## Joining
//!
//! `Ok < Err < Cancelled < Panicked`. A region's outcome is its body's
//! joined with its children's errors and panics; a cancelled child does not
//! fail its region (someone asked; the child's outcome is on its handle),
//! and a body that saw its own region's fail-fast or lost-race cancellation
//! reports the cause, not the cancellation.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::cancel::CancelReason;

/// How a task or region ended.
///
/// The four cases are ordered by severity, `Ok < Err < Cancelled <
/// Panicked` ([`Severity`]); [`Outcome::join`] keeps the worse of two, and a
/// region's outcome is the join of its body's and its children's.
///
/// ```
/// use runtime_core::{Outcome, Severity};
/// let a: Outcome<(), &str> = Outcome::Ok(());
/// let b: Outcome<(), &str> = Outcome::Err("disk full");
/// assert_eq!(a.join(b).severity(), Severity::Err);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T, E = std::convert::Infallible> {
    /// It finished with a value.
    Ok(T),
    /// It finished with an error of its own.
    Err(E),
    /// It was cancelled, and says why.
    ///
    /// A body (of a task or a region) that returns `Err(e)` after one of
    /// its checkpoints saw the cancellation ends here, whatever `e` says:
    /// `e` is dropped, with anything it carries (the value of a cancelled
    /// channel send's [`SendError`](crate::channel::mpsc::SendError), say:
    /// take such a value out inside the body; see
    /// [the channel docs](crate::channel#accounting)).
    Cancelled(CancelReason),
    /// It panicked; the panic was caught.
    Panicked(PanicPayload),
}

/// The severity order of outcomes: `Ok < Err < Cancelled < Panicked`.
///
/// ```
/// use runtime_core::Severity;
/// assert!(Severity::Ok < Severity::Err && Severity::Err < Severity::Cancelled);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Finished with a value.
    Ok = 0,
    /// Finished with an error.
    Err = 1,
    /// Cancelled.
    Cancelled = 2,
    /// Panicked.
    Panicked = 3,
}

impl<T, E> Outcome<T, E> {
    /// Where this outcome sits in the severity order.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// assert_eq!(Outcome::<u8, ()>::Err(()).severity(), Severity::Err);
    /// assert!(Severity::Panicked > Severity::Cancelled);
    /// ```
    pub fn severity(&self) -> Severity {
        match self {
            Outcome::Ok(_) => Severity::Ok,
            Outcome::Err(_) => Severity::Err,
            Outcome::Cancelled(_) => Severity::Cancelled,
            Outcome::Panicked(_) => Severity::Panicked,
        }
    }

    /// The worse of the two; on a tie, `self` (the earlier one) is kept.
    ///
    /// Associative, and `Ok(())` is its identity on `Outcome<(), E>`
    /// (checked by the property tests in `tests/laws.rs`).
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// let a: Outcome<(), &str> = Outcome::Err("a");
    /// let b = Outcome::Cancelled(CancelReason::new(CancelKind::Timeout));
    /// assert!(a.join(b).is_cancelled()); // the worse of the two
    /// ```
    pub fn join(self, other: Self) -> Self {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// `true` for `Ok`.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// assert!(Outcome::<_, ()>::Ok(1).is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    /// `true` for `Cancelled`.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// assert!(Outcome::<(), ()>::Cancelled(CancelReason::user("x")).is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Outcome::Cancelled(_))
    }

    /// The cancel reason, if it was cancelled.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// let o = Outcome::<(), ()>::Cancelled(CancelReason::new(CancelKind::Shutdown));
    /// assert_eq!(o.cancel_reason().map(|r| r.kind()), Some(CancelKind::Shutdown));
    /// ```
    pub fn cancel_reason(&self) -> Option<&CancelReason> {
        match self {
            Outcome::Cancelled(r) => Some(r),
            _ => None,
        }
    }

    /// The value, if it finished with one.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// assert_eq!(Outcome::<_, ()>::Ok(3).ok(), Some(3));
    /// assert_eq!(Outcome::<u8, ()>::Err(()).ok(), None);
    /// ```
    pub fn ok(self) -> Option<T> {
        match self {
            Outcome::Ok(v) => Some(v),
            _ => None,
        }
    }

    /// Maps the value, keeping every other case.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// assert_eq!(Outcome::<_, ()>::Ok(2).map(|v| v * 10).ok(), Some(20));
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U, E> {
        match self {
            Outcome::Ok(v) => Outcome::Ok(f(v)),
            Outcome::Err(e) => Outcome::Err(e),
            Outcome::Cancelled(r) => Outcome::Cancelled(r),
            Outcome::Panicked(p) => Outcome::Panicked(p),
        }
    }

    /// Maps the error, keeping every other case.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// let o: Outcome<(), String> = Outcome::<(), &str>::Err("io").map_err(String::from);
    /// assert!(matches!(o, Outcome::Err(e) if e == "io"));
    /// ```
    pub fn map_err<F>(self, f: impl FnOnce(E) -> F) -> Outcome<T, F> {
        match self {
            Outcome::Ok(v) => Outcome::Ok(v),
            Outcome::Err(e) => Outcome::Err(f(e)),
            Outcome::Cancelled(r) => Outcome::Cancelled(r),
            Outcome::Panicked(p) => Outcome::Panicked(p),
        }
    }

    /// The value, or a panic naming the case. For tests and examples.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// assert_eq!(Outcome::<_, ()>::Ok("value").unwrap(), "value");
    /// ```
    #[track_caller]
    pub fn unwrap(self) -> T
    where
        E: fmt::Debug,
    {
        match self {
            Outcome::Ok(v) => v,
            Outcome::Err(e) => panic!("called `Outcome::unwrap` on `Err({e:?})`"),
            Outcome::Cancelled(r) => panic!("called `Outcome::unwrap` on `Cancelled({r})`"),
            Outcome::Panicked(p) => panic!("called `Outcome::unwrap` on `Panicked({p})`"),
        }
    }
}

impl<T, E> From<Result<T, E>> for Outcome<T, E> {
    fn from(r: Result<T, E>) -> Self {
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Err(e),
        }
    }
}

/// What a caught panic carried: its message, when it was a string.
///
/// ```
/// # use runtime_core::{Runtime, caps::ambient_authority};
/// # let rt = Runtime::builder().current_thread().build(ambient_authority()).unwrap();
/// use runtime_core::Outcome;
/// let out = rt.block_on(|cx| async move {
///     let h = cx.spawn(|_| async { panic!("exploded") });
///     Ok::<_, ()>(match h.await {
///         Outcome::Panicked(p) => p.message().to_string(),
///         _ => String::new(),
///     })
/// });
/// // The root region is fail-fast: the panicking child makes it `Panicked`.
/// assert!(out.severity() == runtime_core::Severity::Panicked);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PanicPayload {
    message: String,
}

impl PanicPayload {
    /// A payload with this message.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// assert_eq!(PanicPayload::new("boom").message(), "boom");
    /// ```
    pub fn new(message: impl Into<String>) -> Self {
        PanicPayload {
            message: message.into(),
        }
    }

    pub(crate) fn from_any(payload: Box<dyn Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "<non-string panic payload>".to_owned()
        };
        // A payload of the user's type may panic when dropped (panic_any
        // with a value whose Drop panics): drop it under a catch, and leak
        // the second payload rather than chase it.
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(again);
        }
        PanicPayload { message }
    }

    /// The panic message.
    ///
    /// ```
    /// use runtime_core::{CancelKind, CancelReason, Outcome, PanicPayload, Severity};
    /// assert_eq!(PanicPayload::new("boom").message(), "boom");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PanicPayload({:?})", self.message)
    }
}

impl fmt::Display for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs user code that the runtime calls from its own bookkeeping (a
/// `Drop` of a future or an output, a `Debug` of an error, a waker, a
/// finalizer): a panic comes back as `Err(payload)` instead of unwinding
/// through the runtime.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, PanicPayload> {
    catch_unwind(AssertUnwindSafe(f)).map_err(PanicPayload::from_any)
}

/// Drops `value` (user data) under [`catch`]; `Some(payload)` if its
/// `Drop` panicked.
pub(crate) fn drop_caught<V>(value: V) -> Option<PanicPayload> {
    catch(move || drop(value)).err()
}

/// Drops every item of `items` (wakers, timer actions, queued jobs: user
/// code in their `Drop`), emptying it but keeping its capacity: one catch
/// for them all, entered again after a panic (the item that panicked was
/// moved out first, so the rest are each still dropped once), each panic
/// reported to `on_panic`.
pub(crate) fn drop_each_caught<T>(items: &mut Vec<T>, mut on_panic: impl FnMut()) {
    while !items.is_empty() {
        let all = catch(|| {
            while let Some(item) = items.pop() {
                drop(item);
            }
        });
        if all.is_err() {
            on_panic();
        }
    }
}

/// Wakes `waker` (possibly the user's) under [`catch`]; `true` if it
/// panicked.
pub(crate) fn wake_caught(waker: std::task::Waker) -> bool {
    catch(move || waker.wake()).is_err()
}

/// [`wake_caught`] for code with no scheduler at hand (a channel, whose
/// ends belong to no runtime): a panic is counted in the runtime of the
/// task being polled on this thread (`RuntimeStats::panics_caught`); on a
/// thread polling no task, caught and not counted.
pub(crate) fn wake_caught_here(waker: std::task::Waker) {
    if wake_caught(waker) {
        crate::task::count_panic_here();
    }
}

/// [`wake_caught`] through a reference (a poller asked to poll again).
pub(crate) fn wake_by_ref_caught(waker: &std::task::Waker) -> bool {
    catch(|| waker.wake_by_ref()).is_err()
}

/// [`drop_caught`], a panic counted where [`wake_caught_here`] counts it.
pub(crate) fn drop_caught_here<V>(value: V) {
    if drop_caught(value).is_some() {
        crate::task::count_panic_here();
    }
}
