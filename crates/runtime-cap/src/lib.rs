//! # runtime-cap
//!
//! The capability vocabulary of the runtime, independent of any scheduler.
//!
//! Inside the runtime, an effect of a task (spawning, sleeping on or
//! reading the runtime's clock, blocking a thread, drawing random numbers,
//! opening a connection, touching files) is reached only through something
//! the task was handed. What it was handed is
//! written in its type: a capability set [`Caps`] with one flag ([`Yes`] or
//! [`No`]) per capability. Sets are zero-sized and sealed (nothing outside
//! this crate implements [`CapSet`] or [`Flag`]), so nobody can forge one;
//! [`SubsetOf`] is the order between them, so narrowing is a method
//! (`Cx::narrow` in `runtime-core`) and widening does not compile.
//!
//! ```
//! use runtime_cap::{All, CapSet, Caps, No, SubsetOf, TimeOnly, Yes};
//!
//! fn narrower<A: SubsetOf<B>, B: CapSet>() {}
//! narrower::<TimeOnly, All>(); // fewer capabilities: fine
//! assert_eq!(TimeOnly::MASK.names(), vec!["time"]);
//! type SpawnAndTime = Caps<Yes, Yes, No, No, No, No, No>;
//! narrower::<TimeOnly, SpawnAndTime>();
//! ```
//!
//! Widening is a compile error:
//!
//! ```compile_fail
//! use runtime_cap::{All, CapSet, SubsetOf, TimeOnly};
//! fn narrower<A: SubsetOf<B>, B: CapSet>() {}
//! narrower::<All, TimeOnly>();
//! ```
//!
//! Where a type cannot say it (a policy decided at run time), a
//! [`CapMask`] backs the type up: the runtime checks it at each effect.
//!
//! Code outside the runtime (a `main`, a test, a library used without a
//! runtime) gets authority from one place only, [`ambient_authority`],
//! which is easy to grep for. Access tokens such as [`NetAccess`] are made
//! from it, or handed out by a context that holds the capability.
//!
//! # What the capabilities do not cover
//!
//! * **Telemetry export and the span clock are outside this system.**
//!   Recording a span (`otlp_exporter::Pipeline::record`, a tracer's
//!   spans, the `tracing` layer) takes no token, and its timestamps come
//!   from the exporter's own clock (`otlp_exporter::clock`,
//!   `otlp_exporter::now_unix_nanos`), read ambiently. That is by design:
//!   the exporter stands alone (usable from any runtime, tokio too, and
//!   from `tracing` callbacks on any thread, where no context is at hand),
//!   and recording costs tens of nanoseconds, too little to pay for a
//!   check. What reaches outside the process is gated where the pipeline
//!   is built: a collector needs a [`NetAccess`] and a file an
//!   [`FsAccess`]; a transport the user passes reaches only what it holds.
//!   Reading the wall clock is not something a capability can take away
//!   in Rust (`std::time` is open to all); the [`HasTime`] capability
//!   gates the runtime's time (`Cx::now`, sleeps, timeouts), which the lab
//!   runtime makes virtual: span timestamps stay wall-clock time there.
//! * **[`TelemetryAccess`] gates no API of this workspace.** It is the
//!   token a context with [`HasTelemetry`] hands out (`Cx::telemetry`),
//!   for a library that wants its own telemetry (an exporter of its own, a
//!   metrics sink) to be something a task must be granted; the
//!   capability's flag also shows in a task's type and [`CapMask`] (the
//!   lab runtime's tasks lack it).
//! * **The standard library and [`ambient_authority`] are open to any
//!   code.** A type cannot stop a function from calling `std::net`,
//!   `std::fs` or `std::thread` directly, nor from calling
//!   [`ambient_authority`] itself and building a runtime, a `NetAccess` or
//!   an `FsAccess` of its own: a narrowed `Cx` only means that the effects
//!   are not reached *through it* (and through nothing the caller handed
//!   over). The audit is a search of the code for `ambient_authority` and
//!   those modules, which the one visible entry point of authority makes
//!   short.

use std::fmt;
use std::marker::PhantomData;

mod sealed {
    pub trait Sealed {}
}

/// A capability flag: [`Yes`] or [`No`]. Sealed.
pub trait Flag: sealed::Sealed + Send + Sync + 'static {
    /// Whether the capability is present.
    const ON: bool;
}

/// The capability is present.
#[derive(Debug, Clone, Copy)]
pub enum Yes {}
/// The capability is absent.
#[derive(Debug, Clone, Copy)]
pub enum No {}

impl sealed::Sealed for Yes {}
impl sealed::Sealed for No {}
impl Flag for Yes {
    const ON: bool = true;
}
impl Flag for No {
    const ON: bool = false;
}

/// `Self <= Rhs` on flags: `No <= No`, `No <= Yes`, `Yes <= Yes`.
pub trait FlagLe<Rhs: Flag>: Flag {}
impl FlagLe<No> for No {}
impl FlagLe<Yes> for No {}
impl FlagLe<Yes> for Yes {}

/// The seven flags of a [`Caps`], as one marker type.
type Flags<S, T, B, R, N, F, X> = fn() -> (S, T, B, R, N, F, X);

/// A capability set: one flag per capability, in this order: spawn, time,
/// blocking, random, net, fs, telemetry. Zero-sized; never constructed.
pub struct Caps<Spawn, Time, Blocking, Random, Net, Fs, Telemetry>(
    PhantomData<Flags<Spawn, Time, Blocking, Random, Net, Fs, Telemetry>>,
);

/// Every capability: what a runtime's root task receives.
pub type All = Caps<Yes, Yes, Yes, Yes, Yes, Yes, Yes>;
/// No capability at all: pure computation, cancellation checks, budgets.
pub type Nothing = Caps<No, No, No, No, No, No, No>;
/// Time only: read the clock, sleep, time out (no spawning).
pub type TimeOnly = Caps<No, Yes, No, No, No, No, No>;
/// Structured concurrency without I/O: spawn, time, randomness.
pub type Compute = Caps<Yes, Yes, No, Yes, No, No, No>;
/// A network client: time and network, nothing else.
pub type NetClient = Caps<No, Yes, No, No, Yes, No, No>;

/// A capability set. Sealed: only [`Caps`] implements it.
pub trait CapSet: sealed::Sealed + Send + Sync + 'static {
    /// The set as a run-time mask.
    const MASK: CapMask;
}

impl<S: Flag, T: Flag, B: Flag, R: Flag, N: Flag, F: Flag, X: Flag> sealed::Sealed
    for Caps<S, T, B, R, N, F, X>
{
}

impl<S: Flag, T: Flag, B: Flag, R: Flag, N: Flag, F: Flag, X: Flag> CapSet
    for Caps<S, T, B, R, N, F, X>
{
    const MASK: CapMask = CapMask(
        (S::ON as u8)
            | (T::ON as u8) << 1
            | (B::ON as u8) << 2
            | (R::ON as u8) << 3
            | (N::ON as u8) << 4
            | (F::ON as u8) << 5
            | (X::ON as u8) << 6,
    );
}

/// `Self` has no capability that `Super` lacks.
pub trait SubsetOf<Super: CapSet>: CapSet {}

impl<S1, T1, B1, R1, N1, F1, X1, S2, T2, B2, R2, N2, F2, X2>
    SubsetOf<Caps<S2, T2, B2, R2, N2, F2, X2>> for Caps<S1, T1, B1, R1, N1, F1, X1>
where
    S1: FlagLe<S2>,
    T1: FlagLe<T2>,
    B1: FlagLe<B2>,
    R1: FlagLe<R2>,
    N1: FlagLe<N2>,
    F1: FlagLe<F2>,
    X1: FlagLe<X2>,
    S2: Flag,
    T2: Flag,
    B2: Flag,
    R2: Flag,
    N2: Flag,
    F2: Flag,
    X2: Flag,
{
}

macro_rules! has {
    ($(#[$doc:meta])* $name:ident, $($p:ident),* ; $yes:tt ; $($q:ident),*) => {
        $(#[$doc])*
        pub trait $name: CapSet {}
        impl<$($p: Flag,)* $($q: Flag,)*> $name for Caps<$($p,)* Yes, $($q),*> {}
    };
}

has!(
    /// May spawn tasks (and open races and joins, which spawn).
    HasSpawn, ; Yes ; T, B, R, N, F, X
);
has!(
    /// May read the clock, sleep, set timers and timeouts.
    HasTime, S ; Yes ; B, R, N, F, X
);
has!(
    /// May run work on the blocking pool.
    HasBlocking, S, T ; Yes ; R, N, F, X
);
has!(
    /// May draw (seeded, reproducible) random numbers.
    HasRandom, S, T, B ; Yes ; N, F, X
);
has!(
    /// May open network connections.
    HasNet, S, T, B, R ; Yes ; F, X
);
has!(
    /// May touch the file system.
    HasFs, S, T, B, R, N ; Yes ; X
);
has!(
    /// May export telemetry.
    HasTelemetry, S, T, B, R, N, F ; Yes ;
);

/// One capability, as a value (for run-time masks and error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Spawning tasks.
    Spawn,
    /// Clocks, sleeps, timers.
    Time,
    /// The blocking pool.
    Blocking,
    /// Random numbers.
    Random,
    /// Network I/O.
    Net,
    /// File I/O.
    Fs,
    /// Telemetry export.
    Telemetry,
}

impl Capability {
    /// Every capability, in mask-bit order.
    pub const ALL: [Capability; 7] = [
        Capability::Spawn,
        Capability::Time,
        Capability::Blocking,
        Capability::Random,
        Capability::Net,
        Capability::Fs,
        Capability::Telemetry,
    ];

    /// Its bit in a [`CapMask`].
    pub const fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Its name.
    pub const fn name(self) -> &'static str {
        match self {
            Capability::Spawn => "spawn",
            Capability::Time => "time",
            Capability::Blocking => "blocking",
            Capability::Random => "random",
            Capability::Net => "net",
            Capability::Fs => "fs",
            Capability::Telemetry => "telemetry",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A capability set decided at run time. It backs the type up: a context's
/// mask starts as its type's [`CapSet::MASK`] and can only lose bits
/// ([`CapMask::without`]); the runtime checks it at every effect.
///
/// ```
/// use runtime_cap::{All, CapSet, Capability};
/// let m = All::MASK.without(Capability::Net);
/// assert!(m.contains(Capability::Time));
/// assert!(!m.contains(Capability::Net));
/// assert!(m.is_subset_of(All::MASK));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapMask(u8);

impl CapMask {
    /// No capability.
    pub const NONE: CapMask = CapMask(0);

    /// Whether `cap` is in the mask.
    pub const fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// The mask without `cap`.
    pub const fn without(self, cap: Capability) -> CapMask {
        CapMask(self.0 & !cap.bit())
    }

    /// The capabilities in both.
    pub const fn intersect(self, other: CapMask) -> CapMask {
        CapMask(self.0 & other.0)
    }

    /// Whether every capability here is also in `other`.
    pub const fn is_subset_of(self, other: CapMask) -> bool {
        self.0 & !other.0 == 0
    }

    /// The names of its capabilities, in mask-bit order.
    pub fn names(self) -> Vec<&'static str> {
        Capability::ALL
            .iter()
            .filter(|c| self.contains(**c))
            .map(|c| c.name())
            .collect()
    }
}

impl fmt::Debug for CapMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapMask{:?}", self.names())
    }
}

/// An effect was attempted without the capability for it (the run-time
/// mask lacked it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingCapability(pub Capability);

impl fmt::Display for MissingCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this context lacks the `{}` capability", self.0)
    }
}

impl std::error::Error for MissingCapability {}

/// Proof that the holder was granted ambient authority: the one escape
/// hatch for code outside the runtime. Made only by [`ambient_authority`].
#[derive(Debug, Clone, Copy)]
pub struct AmbientAuthority(());

/// Grants ambient authority. Every call is a place where authority enters
/// the program from outside any capability context: a `main`, a test, an
/// integration with code that does not use the runtime. Grep for it.
///
/// ```
/// let ambient = runtime_cap::ambient_authority();
/// let net = runtime_cap::NetAccess::from_ambient(ambient);
/// # let _ = net;
/// ```
pub fn ambient_authority() -> AmbientAuthority {
    AmbientAuthority(())
}

macro_rules! access {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name(());

        impl $name {
            /// From ambient authority (code outside the runtime).
            pub fn from_ambient(_: AmbientAuthority) -> Self {
                $name(())
            }
        }
    };
}

access!(
    /// Permission to open network connections: taken by network
    /// transports. Made from [`AmbientAuthority`], or handed out by a
    /// runtime context that holds [`HasNet`] (`Cx::net`).
    NetAccess
);
access!(
    /// Permission to touch the file system. Made from [`AmbientAuthority`],
    /// or handed out by a runtime context that holds [`HasFs`] (`Cx::fs`).
    FsAccess
);
access!(
    /// Permission to export telemetry. Made from [`AmbientAuthority`], or
    /// handed out by a runtime context that holds [`HasTelemetry`]
    /// (`Cx::telemetry`). No API of this workspace takes it (the exporter
    /// records without a token; see the crate docs, *What the capabilities
    /// do not cover*): it is for libraries that want to gate telemetry of
    /// their own.
    TelemetryAccess
);

#[cfg(test)]
mod tests {
    use super::*;

    fn subset<A: SubsetOf<B>, B: CapSet>() -> bool {
        A::MASK.is_subset_of(B::MASK)
    }

    #[test]
    fn masks_match_types() {
        assert_eq!(All::MASK.names().len(), 7);
        assert_eq!(Nothing::MASK, CapMask::NONE);
        assert_eq!(TimeOnly::MASK.names(), vec!["time"]);
        assert_eq!(Compute::MASK.names(), vec!["spawn", "time", "random"]);
        assert_eq!(NetClient::MASK.names(), vec!["time", "net"]);
    }

    #[test]
    fn subset_relation_agrees_with_masks() {
        assert!(subset::<Nothing, All>());
        assert!(subset::<TimeOnly, Compute>());
        assert!(subset::<TimeOnly, NetClient>());
        assert!(subset::<All, All>());
        // (Compute vs NetClient: neither is a subset; that does not compile.)
        assert!(!Compute::MASK.is_subset_of(NetClient::MASK));
    }

    #[test]
    fn masks_only_lose_bits() {
        let m = All::MASK
            .without(Capability::Spawn)
            .without(Capability::Net);
        assert!(!m.contains(Capability::Spawn));
        assert!(m.contains(Capability::Blocking));
        assert!(m.is_subset_of(All::MASK));
        assert!(!All::MASK.is_subset_of(m));
        assert_eq!(m.intersect(TimeOnly::MASK), TimeOnly::MASK);
    }
}
