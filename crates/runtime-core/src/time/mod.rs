//! Time, through a seam: every timer, deadline and `now()` in the runtime
//! reads a [`Clock`], so a lab runtime can substitute virtual time.
//!
//! [`Instant`] is the runtime's own point in time (nanoseconds since the
//! clock's epoch), not `std::time::Instant`: a virtual clock can make one
//! out of thin air, and deadlines compare as plain integers.
//!
//! ## When timers fire
//!
//! All time is `time::Instant` from a `Clock` (`SystemClock` by default,
//! `Builder::clock` to replace it). Timers live in a hierarchical wheel (11
//! levels of 64 slots, 1 ms ticks, slab entries with intrusive lists: O(1)
//! insert and cancel) behind one mutex, turned by idle workers before they
//! park (and every 10 ms while another worker is in a poll), by busy ones
//! every 61 tasks, and by a busy task's own checkpoints: every 32nd
//! `checkpoint()` reads the clock and, when the earliest deadline
//! (`TimerDriver::next_due`, one atomic) has passed, fires what is due, its
//! wake-ups going through the injector to an idle worker. So a task that
//! spins but checkpoints is still timed out, on any flavour.

pub(crate) mod driver;
mod sleep;
pub(crate) mod wheel;

pub use sleep::{Interval, Sleep, Tick};
pub use std::time::Duration;

use std::fmt;
use std::ops::{Add, Sub};

/// A point in the runtime's time: nanoseconds since its clock's epoch.
///
/// ```
/// use runtime_core::time::{Duration, Instant};
/// let t = Instant::from_nanos(1_000);
/// assert_eq!(t + Duration::from_nanos(500), Instant::from_nanos(1_500));
/// assert_eq!(Instant::from_nanos(1_500) - t, Duration::from_nanos(500));
/// ```
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The clock's epoch.
    ///
    /// ```
    /// use runtime_core::time::{Duration, Instant};
    /// assert_eq!(Instant::ZERO.as_nanos(), 0);
    /// ```
    pub const ZERO: Instant = Instant(0);
    /// The far future: a deadline that never comes.
    ///
    /// ```
    /// use runtime_core::time::{Duration, Instant};
    /// assert_eq!(Instant::MAX.saturating_add(Duration::from_secs(1)), Instant::MAX);
    /// ```
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `nanos` after the epoch.
    ///
    /// ```
    /// use runtime_core::time::{Duration, Instant};
    /// assert_eq!(Instant::from_nanos(5).as_nanos(), 5);
    /// ```
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the epoch.
    ///
    /// ```
    /// use runtime_core::time::{Duration, Instant};
    /// assert_eq!(Instant::from_nanos(5).as_nanos(), 5);
    /// ```
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    ///
    /// ```
    /// use runtime_core::time::{Duration, Instant};
    /// assert_eq!(Instant::ZERO.saturating_add(Duration::from_nanos(3)), Instant::from_nanos(3));
    /// ```
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }

    /// How long after `earlier` this is, or zero if it is not later.
    ///
    /// ```
    /// use runtime_core::time::{Duration, Instant};
    /// let (a, b) = (Instant::from_nanos(10), Instant::from_nanos(4));
    /// assert_eq!(a.saturating_duration_since(b), Duration::from_nanos(6));
    /// assert_eq!(b.saturating_duration_since(a), Duration::ZERO);
    /// ```
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({:?})", Duration::from_nanos(self.0))
    }
}

pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Where the runtime reads the time. The runtime uses [`SystemClock`]; a lab
/// runtime plugs in a virtual clock that only moves when it says so.
///
/// ```
/// use runtime_core::time::{Clock, Instant};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// /// A clock that moves only when told to (as a test's would).
/// struct Manual(AtomicU64);
/// impl Clock for Manual {
///     fn now(&self) -> Instant {
///         Instant::from_nanos(self.0.load(Ordering::SeqCst))
///     }
/// }
/// let clock = Manual(AtomicU64::new(5));
/// assert_eq!(clock.now(), Instant::from_nanos(5));
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current time. Never goes backwards.
    fn now(&self) -> Instant;
}

/// The monotonic wall clock: `std::time::Instant` relative to when the clock
/// was made. Reading the machine's clock is an effect, so making one takes
/// the ambient-authority token (inside the runtime, time comes from
/// `Cx::now`).
///
/// ```
/// use runtime_core::caps::ambient_authority;
/// use runtime_core::time::{Clock, SystemClock};
/// let clock = SystemClock::new(ambient_authority());
/// let (a, b) = (clock.now(), clock.now());
/// assert!(b >= a); // monotonic
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    epoch: std::time::Instant,
}

impl SystemClock {
    /// A clock whose epoch is now.
    ///
    /// ```
    /// use runtime_core::caps::ambient_authority;
    /// use runtime_core::time::{Clock, Instant, SystemClock};
    /// let clock = SystemClock::new(ambient_authority());
    /// assert!(clock.now() >= Instant::ZERO);
    /// ```
    pub fn new(_ambient: runtime_cap::AmbientAuthority) -> Self {
        SystemClock {
            epoch: std::time::Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant(duration_nanos(self.epoch.elapsed()))
    }
}
