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
//!
//! Deadlines that may run a little late but not early (a cancellation's
//! grace period) are read from [`Clock::now_ceil`]: on Linux the kernel's
//! coarse clock rounded up by its tick, without the serialising counter
//! read of `now` (9 ns against 45 ns on the 2-core machine).

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

    /// The current time rounded up to the clock's coarse tick: not earlier
    /// than [`now`](Self::now) read at the same moment, and at most about
    /// a tick later, where reading it is cheaper than `now`. The runtime
    /// reads it for deadlines that may run a little late but not early: a
    /// cancellation's grace period starts at the request, and ends at
    /// `now_ceil() + grace`. By default, `now()` (exact, as a virtual
    /// clock's is); [`SystemClock`] reads the kernel's coarse clock on
    /// Linux.
    ///
    /// ```
    /// use runtime_core::caps::ambient_authority;
    /// use runtime_core::time::{Clock, Duration, SystemClock};
    /// let clock = SystemClock::new(ambient_authority());
    /// let (before, ceil) = (clock.now(), clock.now_ceil());
    /// // Not earlier (unless the kernel's tick ran late), at most about a
    /// // tick (a few milliseconds) later.
    /// assert!(ceil + Duration::from_millis(100) >= before);
    /// assert!(ceil <= clock.now() + Duration::from_millis(100));
    /// ```
    fn now_ceil(&self) -> Instant {
        self.now()
    }
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
    /// For [`Clock::now_ceil`] on Linux (`None` when the kernel has no
    /// coarse clock: `now_ceil` then reads `now`).
    #[cfg(target_os = "linux")]
    coarse: Option<CoarseEpoch>,
}

/// What [`SystemClock::now_ceil`](Clock::now_ceil) needs on Linux:
/// `CLOCK_MONOTONIC` at the clock's making, in nanoseconds, read just
/// before `SystemClock::epoch` (`std`'s `Instant` reads the same clock
/// there, so a time measured from this one is not earlier than the same
/// time measured from `epoch`), and the coarse clock's tick.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy)]
struct CoarseEpoch {
    mono_at_epoch: u64,
    /// `clock_getres(CLOCK_MONOTONIC_COARSE)`.
    tick: u64,
}

/// Calls `clock_gettime` or `clock_getres` on clock `clk`, in
/// nanoseconds (Linux's vDSO answers the monotonic clocks without a
/// system call); `None` if the kernel refuses it.
#[cfg(target_os = "linux")]
fn read_clock(
    f: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
    clk: libc::clockid_t,
) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` for the call's duration.
    (unsafe { f(clk, &mut ts) } == 0).then(|| {
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64)
    })
}

#[cfg(target_os = "linux")]
impl CoarseEpoch {
    fn new() -> Option<Self> {
        Some(CoarseEpoch {
            tick: read_clock(libc::clock_getres, libc::CLOCK_MONOTONIC_COARSE)?,
            mono_at_epoch: read_clock(libc::clock_gettime, libc::CLOCK_MONOTONIC)?,
        })
    }
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
        // The coarse epoch first: it reads no later than `epoch`.
        #[cfg(target_os = "linux")]
        let coarse = CoarseEpoch::new();
        SystemClock {
            epoch: std::time::Instant::now(),
            #[cfg(target_os = "linux")]
            coarse,
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant(duration_nanos(self.epoch.elapsed()))
    }

    /// On Linux, `CLOCK_MONOTONIC_COARSE` (the monotonic clock at the
    /// kernel's last tick, read from the vDSO without the serialising
    /// counter read that `now` makes: about 9 ns against 45 ns on the
    /// 2-core machine) plus one tick (`clock_getres`, 4 ms there). Not
    /// earlier than `now` unless the kernel's tick itself ran late (a
    /// starved virtual CPU), and then by that delay. Elsewhere, `now`.
    fn now_ceil(&self) -> Instant {
        #[cfg(target_os = "linux")]
        if let Some(c) = self.coarse
            && let Some(t) = read_clock(libc::clock_gettime, libc::CLOCK_MONOTONIC_COARSE)
        {
            return Instant(t.saturating_sub(c.mono_at_epoch).saturating_add(c.tick));
        }
        self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ceiling is never far below `now` (only a late kernel tick puts
    /// it below at all) and at most about a tick above it; it never goes
    /// backwards. The bounds are loose (100 ms) so that a preempted test
    /// thread cannot fail them, and tight enough to catch a wrong epoch.
    #[test]
    fn now_ceil_stays_within_a_tick_of_now_and_is_monotonic() {
        let clock = SystemClock::new(runtime_cap::ambient_authority());
        let slack = Duration::from_millis(100);
        let mut last = Instant::ZERO;
        for _ in 0..10_000 {
            let before = clock.now();
            let ceil = clock.now_ceil();
            let after = clock.now();
            assert!(ceil + slack >= before, "{ceil:?} far below {before:?}");
            assert!(ceil <= after + slack, "{ceil:?} far above {after:?}");
            assert!(ceil >= last, "went backwards: {last:?} then {ceil:?}");
            last = ceil;
        }
    }

    /// A clock that does not override it (a virtual one) gives `now`.
    #[test]
    fn now_ceil_defaults_to_now() {
        struct Fixed;
        impl Clock for Fixed {
            fn now(&self) -> Instant {
                Instant::from_nanos(42)
            }
        }
        assert_eq!(Fixed.now_ceil(), Instant::from_nanos(42));
    }
}
