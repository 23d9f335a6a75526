//! Heterogeneous joins and races: the [`join!`](crate::join) and
//! [`race!`](crate::race) macros, and the pieces they expand to.
//!
//! Both have exactly the semantics of the `Vec` forms
//! ([`Cx::join_all`], [`Cx::race`]): `race!` boxes each racer to one type
//! and calls `Cx::race` itself; `join!` opens the same collect-all child
//! region `join_all` opens, spawns every branch into it in order, awaits
//! the handles in order, and resolves once the region has closed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use runtime_cap::CapSet;

use super::Cx;
use crate::outcome::Outcome;
use crate::task::JoinHandle;

/// A racer of `race!`, boxed so that racers of different types fit one
/// `Vec`.
#[doc(hidden)]
pub type BoxedRacer<C, T, E> =
    Box<dyn FnOnce(Cx<C>) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send>> + Send>;

/// Boxes one racer of `race!` (`cx` only ties the racer's context type to
/// the caller's).
#[doc(hidden)]
pub fn boxed_racer<C, G, F, T, E>(_cx: &Cx<C>, racer: G) -> BoxedRacer<C, T, E>
where
    C: CapSet,
    G: FnOnce(Cx<C>) -> F + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    Box::new(move |cx| Box::pin(racer(cx)))
}

/// A tuple of join handles, awaited in order into a tuple of outcomes (the
/// second half of `join!`).
#[doc(hidden)]
pub trait JoinTuple {
    /// The outcomes, in the order of the handles.
    type Output: Send + 'static;
    /// Awaits every handle, first to last.
    fn join_in_order(self) -> impl Future<Output = Self::Output> + Send + 'static;
}

macro_rules! join_tuple {
    ($($h:ident: $t:ident, $e:ident);+) => {
        impl<$($t: Send + 'static, $e: Send + 'static),+> JoinTuple for ($(JoinHandle<$t, $e>,)+) {
            type Output = ($(Outcome<$t, $e>,)+);
            fn join_in_order(self) -> impl Future<Output = Self::Output> + Send + 'static {
                let ($($h,)+) = self;
                async move { ($($h.await,)+) }
            }
        }
    };
}

join_tuple!(a: T1, E1);
join_tuple!(a: T1, E1; b: T2, E2);
join_tuple!(a: T1, E1; b: T2, E2; c: T3, E3);
join_tuple!(a: T1, E1; b: T2, E2; c: T3, E3; d: T4, E4);
join_tuple!(a: T1, E1; b: T2, E2; c: T3, E3; d: T4, E4; e: T5, E5);
join_tuple!(a: T1, E1; b: T2, E2; c: T3, E3; d: T4, E4; e: T5, E5; f: T6, E6);
join_tuple!(a: T1, E1; b: T2, E2; c: T3, E3; d: T4, E4; e: T5, E5; f: T6, E6; g: T7, E7);
join_tuple!(a: T1, E1; b: T2, E2; c: T3, E3; d: T4, E4; e: T5, E5; f: T6, E6; g: T7, E7; h: T8, E8);

/// Runs up to eight bodies of different types as tasks in a child
/// collect-all region and resolves to a tuple of their outcomes, in order,
/// once every one has finished: [`Cx::join_all`] for bodies of different
/// types. Each body is a closure `|cx| async move { .. }` returning any
/// value: a `Result<T, E>` body's `Err` is its `Err` outcome (the `E` of
/// each may differ), any other value `v` is `Ok(v)` (error type
/// `Infallible`), as [`Cx::try_spawn`] and [`Cx::spawn`] would make them.
/// A failing or panicking body does not cancel the others. Cancelling the caller's scope
/// cancels every branch (`ParentCancelled`) and the join still waits for
/// all of them to drain.
///
/// `join!(cx, a, b, ..)` needs `cx: Cx<C>` or `&Cx<C>` with `C: HasSpawn`.
///
/// ```
/// use runtime_core::{Outcome, Runtime, caps::ambient_authority, join, time::Duration};
/// let rt = Runtime::builder().worker_threads(2).build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let (n, s) = join!(
///         cx,
///         |_| async { Ok::<_, ()>(7u32) },
///         |cx| async move {
///             cx.sleep(Duration::from_millis(1)).await.map_err(|_| "cancelled")?;
///             Ok::<_, &str>(String::from("slept"))
///         },
///     )
///     .await;
///     Ok::<_, ()>((n.ok(), s.ok()))
/// });
/// assert_eq!(out.ok(), Some((Some(7), Some("slept".to_string()))));
/// ```
#[macro_export]
macro_rules! join {
    ($cx:expr, $($body:expr),+ $(,)?) => {
        ($cx).__join_scope(move |__join_cx| {
            let handles = ($($crate::__join_spawn!(__join_cx, $body),)+);
            $crate::JoinTuple::join_in_order(handles)
        })
    };
}

/// One branch of `join!`: spawned with `try_spawn`, its output turned
/// into a `Result` by [`__into_body_result!`](crate::__into_body_result).
#[doc(hidden)]
#[macro_export]
macro_rules! __join_spawn {
    ($cx:ident, $body:expr) => {{
        let __body = $crate::__branch(&$cx, $body);
        $cx.try_spawn(move |__cx| {
            let __fut = __body(__cx);
            async move {
                let __out = __fut.await;
                $crate::__into_body_result!(__out)
            }
        })
    }};
}

/// A branch's output as a `Result`: itself when it is one (its `Err` is
/// the branch's `Err` outcome), else `Ok(output)` with error type
/// `Infallible`. Decided at compile time by the output's concrete type
/// (method resolution tries `Result`'s impl, on the value's own type,
/// before the fallback on a reference to it), which the macro's expansion
/// knows and a generic function would not.
#[doc(hidden)]
#[macro_export]
macro_rules! __into_body_result {
    ($out:ident) => {{
        #[allow(unused_imports)]
        use $crate::__private::{ResultKind as _, ValueKind as _};
        (&$out).__body_kind().into_result($out)
    }};
}

/// Gives a branch closure of `join!`/`race!` its signature (`Cx<C>` in),
/// so that its body type-checks before the macro wraps it.
#[doc(hidden)]
pub fn __branch<C, G, F>(_cx: &Cx<C>, body: G) -> G
where
    C: CapSet,
    G: FnOnce(Cx<C>) -> F + Send + 'static,
    F: Future + Send + 'static,
{
    body
}

/// The compile-time choice behind [`__into_body_result!`].
#[doc(hidden)]
pub mod __private {
    use std::convert::Infallible;

    /// The branch returned a `Result`.
    #[derive(Debug, Clone, Copy)]
    pub struct ResultTag;
    /// The branch returned any other value.
    #[derive(Debug, Clone, Copy)]
    pub struct ValueTag;

    /// Picked for a `Result` (the value's own type).
    pub trait ResultKind {
        /// The tag.
        fn __body_kind(&self) -> ResultTag {
            ResultTag
        }
    }
    impl<T, E> ResultKind for Result<T, E> {}

    /// Picked otherwise (through a reference: tried after `ResultKind`).
    pub trait ValueKind {
        /// The tag.
        fn __body_kind(&self) -> ValueTag {
            ValueTag
        }
    }
    impl<T: ?Sized> ValueKind for &T {}

    impl ResultTag {
        /// The `Result` as it is.
        pub fn into_result<T, E>(self, r: Result<T, E>) -> Result<T, E> {
            r
        }
    }

    impl ValueTag {
        /// The value as `Ok`.
        pub fn into_result<T>(self, v: T) -> Result<T, Infallible> {
            Ok(v)
        }
    }
}

/// Races bodies of different types (the same output type): [`Cx::race`]
/// for closures that are not one type. Racers return any value, all the
/// same type: `Result<T, E>` (an `Err` is the race's `Err` outcome if that
/// racer wins) or any other `T` (outcome `Ok(T)`, error type
/// `Infallible`). The first to finish wins, the
/// others are cancelled (`LostRace`) and drained before this resolves to
/// the winner's outcome (or `Panicked`, if a loser panicked while
/// draining). Each racer is boxed once.
///
/// `race!(cx, a, b, ..)` needs `cx: Cx<C>` or `&Cx<C>` with `C: HasSpawn`.
///
/// ```
/// use runtime_core::{Runtime, caps::ambient_authority, race, time::Duration};
/// let rt = Runtime::builder().worker_threads(2).build(ambient_authority()).unwrap();
/// let out = rt.block_on(|cx| async move {
///     let winner = race!(
///         cx,
///         |_| async { Ok::<_, ()>("now") },
///         |cx| async move {
///             cx.sleep(Duration::from_secs(3600)).await.map_err(|_| ())?;
///             Ok("an hour later")
///         },
///     )
///     .await;
///     Ok::<_, ()>(winner.ok())
/// });
/// assert_eq!(out.ok(), Some(Some("now")));
/// ```
#[macro_export]
macro_rules! race {
    ($cx:expr, $($racer:expr),+ $(,)?) => {
        match &$cx {
            __race_cx => __race_cx.race(::std::vec![$({
                let __racer = $crate::__branch(__race_cx, $racer);
                $crate::boxed_racer(__race_cx, move |__cx| {
                    let __fut = __racer(__cx);
                    async move {
                        let __out = __fut.await;
                        $crate::__into_body_result!(__out)
                    }
                })
            }),+]),
        }
    };
}
