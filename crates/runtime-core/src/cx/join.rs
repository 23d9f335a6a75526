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
/// types. Each body is a closure `|cx| async move { .. }` returning
/// `Result<T, E>` (the `E` of each may differ too); a failing or panicking
/// body does not cancel the others. Cancelling the caller's scope
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
            let handles = ($(__join_cx.try_spawn($body),)+);
            $crate::JoinTuple::join_in_order(handles)
        })
    };
}

/// Races bodies of different types (the same output type): [`Cx::race`]
/// for closures that are not one type. The first to finish wins, the
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
            __race_cx => __race_cx.race(::std::vec![$($crate::boxed_racer(__race_cx, $racer)),+]),
        }
    };
}
