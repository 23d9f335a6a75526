//! Span timestamps: one cheap monotonic read per timestamp, and Unix times
//! derived from it.
//!
//! Every span reads the clock at least twice (start and end), and reading
//! the wall clock through `SystemTime::now` costs about 45 ns on the 2-core
//! VM (the vDSO's `clock_gettime` plus std's conversions): a large part of
//! a span's record cost. So the timestamps of spans, events and the
//! [`now_unix_nanos`] function come from [`mono_nanos`] and
//! [`unix_nanos_of`]:
//!
//! * [`mono_nanos`]: nanoseconds on one process-wide monotonic scale.
//!   Where the kernel itself keeps time with the CPU's time-stamp counter
//!   (x86_64, `current_clocksource` is `tsc`: the counter is invariant and
//!   synchronized across cores, or the kernel would not use it), it reads
//!   the counter (`rdtsc`, about 17 ns on the 2-core VM) and scales it by a
//!   rate measured once against `Instant` over at least [`CALIBRATION`]
//!   (until then, and everywhere else, it reads `Instant`). The two sources
//!   agree at the moment of calibration, so a span that straddles it sees
//!   no step.
//! * [`unix_nanos_of`]: the Unix time of a read is the read plus a
//!   per-thread offset to the wall clock (`SystemTime`), renewed every
//!   [`ANCHOR_TTL`] nanoseconds; a renewal reads the wall clock between
//!   two monotonic reads and takes their midpoint as its moment, reading
//!   again (up to four times) when they are more than 5 µs apart (the
//!   thread was held up between them). A step of the system clock shows in the
//!   timestamps within that time; a gradual (NTP) adjustment, or the
//!   counter's calibration error (a few parts per million), moves them by
//!   what accumulates in it. [`system_unix_nanos`] reads the wall clock
//!   itself.
//!
//! ```
//! use otlp_exporter::clock::{mono_nanos, now_unix_nanos, system_unix_nanos, unix_nanos_of};
//! let start = mono_nanos();
//! let end = mono_nanos();
//! assert!(end >= start);
//! assert_eq!(unix_nanos_of(end) - unix_nanos_of(start), end - start);
//! let (a, b) = (system_unix_nanos(), now_unix_nanos());
//! assert!(a.abs_diff(b) < 1_000_000_000);
//! ```

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a thread's wall-clock offset is used before it is read again.
pub const ANCHOR_TTL: u64 = 500_000_000;

/// The shortest interval the time-stamp counter's rate is measured over
/// (a read pair's uncertainty is well under a microsecond: a few parts per
/// million of this).
pub const CALIBRATION: Duration = Duration::from_millis(50);

thread_local! {
    /// `(mono, unix)` read together: the thread's offset to the wall clock.
    static ANCHOR: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// `d` in nanoseconds, saturating (no 128-bit arithmetic on the hot path).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// The origin of the `Instant` scale.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// `mono_nanos` from `Instant` alone.
fn instant_mono_nanos() -> u64 {
    let origin = origin();
    nanos(Instant::now().saturating_duration_since(origin))
}

/// The time-stamp counter's scale, once calibrated: `mono = base_mono +
/// (tsc - base_tsc) * rate / 2^32`. `rate` is written last (Release) and
/// read first (Acquire); 0 means not calibrated (yet, or never). One
/// static, so that a clock read finds all three through one address (a
/// binary that links this crate reaches each static through an address
/// it loads first).
struct Scale {
    rate: AtomicU64,
    base_tsc: AtomicU64,
    base_mono: AtomicU64,
}

static SCALE: Scale = Scale {
    rate: AtomicU64::new(0),
    base_tsc: AtomicU64::new(0),
    base_mono: AtomicU64::new(0),
};

/// Whether the counter may be used, and the calibration's progress.
const TSC_UNKNOWN: u8 = 0;
const TSC_NO: u8 = 1;
/// Allowed, not calibrated: `START_*` holds the first read pair.
const TSC_MEASURING: u8 = 2;
/// A thread is computing the rate.
const TSC_CALIBRATING: u8 = 3;
const TSC_READY: u8 = 4;
/// A thread is taking the first read pair (`START_*`).
const TSC_STARTING: u8 = 5;
static TSC: AtomicU8 = AtomicU8::new(TSC_UNKNOWN);
static START_TSC: AtomicU64 = AtomicU64::new(0);
static START_MONO: AtomicU64 = AtomicU64::new(0);

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` reads the time-stamp counter; it has no
    // preconditions and every x86_64 processor has it (the intrinsic is
    // `unsafe` only as all of `core::arch` is).
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn rdtsc() -> u64 {
    0
}

/// Whether the kernel keeps time with the time-stamp counter (then the
/// counter is invariant and synchronized across cores: the kernel checks
/// both before it picks it). Read once per process: a clock read that
/// finds the counter not yet started (a refused first pair) must not read
/// the file again.
fn tsc_trusted() -> bool {
    static TRUSTED: OnceLock<bool> = OnceLock::new();
    *TRUSTED.get_or_init(|| {
        cfg!(target_arch = "x86_64")
            && std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|s| s.trim() == "tsc")
    })
}

/// A counter read and an `instant_mono_nanos` read taken together: the
/// tightest of four tries, or `None` if even that one is wider than
/// [`MAX_PAIR_WIDTH`] ticks (the thread was held up between the reads: a
/// rate measured from such a pair would be off for the whole process).
fn read_pair() -> Option<(u64, u64)> {
    // About 1 µs or less at any common counter rate: tight enough.
    let (tsc, mono, width) = bracketed(rdtsc, instant_mono_nanos, 3_000);
    (width <= MAX_PAIR_WIDTH).then_some((tsc, mono))
}

/// A read of `inner` between two of `outer`: the midpoint of the `outer`
/// pair (the moment of the `inner` read, to half the width), the `inner`
/// value, and the width. The tightest of up to four tries, stopping at
/// one narrower than `tight` (a wide one: the thread was held up between
/// the reads).
fn bracketed(outer: impl Fn() -> u64, inner: impl Fn() -> u64, tight: u64) -> (u64, u64, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..4 {
        let before = outer();
        let value = inner();
        let after = outer();
        let width = after.wrapping_sub(before);
        if width < best.2 {
            best = (before.wrapping_add(width / 2), value, width);
        }
        if width < tight {
            break;
        }
    }
    best
}

/// The widest read pair used for calibration: about 17 µs at 3 GHz, 0.03 %
/// of [`CALIBRATION`] (the reads themselves take well under 1 µs).
const MAX_PAIR_WIDTH: u64 = 50_000;

/// Nanoseconds on the process's monotonic scale (see the module docs):
/// differences between two reads are elapsed times.
///
/// ```
/// let a = otlp_exporter::clock::mono_nanos();
/// assert!(otlp_exporter::clock::mono_nanos() >= a);
/// ```
#[inline]
pub fn mono_nanos() -> u64 {
    let rate = SCALE.rate.load(Ordering::Acquire);
    if rate != 0 {
        let ticks = rdtsc().saturating_sub(SCALE.base_tsc.load(Ordering::Relaxed));
        let scaled = (u128::from(ticks) * u128::from(rate)) >> 32;
        return SCALE
            .base_mono
            .load(Ordering::Relaxed)
            .saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX));
    }
    mono_slow()
}

/// `mono_nanos` while the counter is not calibrated: `Instant`, and a step of
/// the calibration.
#[cold]
fn mono_slow() -> u64 {
    match TSC.load(Ordering::Acquire) {
        TSC_UNKNOWN => {
            if !tsc_trusted() {
                let _ =
                    TSC.compare_exchange(TSC_UNKNOWN, TSC_NO, Ordering::Release, Ordering::Relaxed);
            } else if TSC
                .compare_exchange(
                    TSC_UNKNOWN,
                    TSC_STARTING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // This thread alone writes `START_*` (a pair from two
                // threads would mix their reads).
                match read_pair() {
                    Some((tsc, mono)) => {
                        START_TSC.store(tsc, Ordering::Relaxed);
                        START_MONO.store(mono, Ordering::Relaxed);
                        // Release: publishes `START_*` to the Acquire load
                        // of the thread that calibrates.
                        TSC.store(TSC_MEASURING, Ordering::Release);
                    }
                    // Held up between the reads: try again at a later read.
                    None => TSC.store(TSC_UNKNOWN, Ordering::Release),
                }
            }
            instant_mono_nanos()
        }
        TSC_MEASURING => {
            let now = instant_mono_nanos();
            let start_mono = START_MONO.load(Ordering::Relaxed);
            if now.saturating_sub(start_mono) >= nanos(CALIBRATION)
                && TSC
                    .compare_exchange(
                        TSC_MEASURING,
                        TSC_CALIBRATING,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                let start_tsc = START_TSC.load(Ordering::Relaxed);
                let Some((tsc, mono)) = read_pair() else {
                    // Held up between the reads: try again at a later read.
                    TSC.store(TSC_MEASURING, Ordering::Release);
                    return now;
                };
                match rate_of(mono.saturating_sub(start_mono), tsc.wrapping_sub(start_tsc)) {
                    Some(rate) => {
                        SCALE.base_tsc.store(tsc, Ordering::Relaxed);
                        SCALE.base_mono.store(mono, Ordering::Relaxed);
                        SCALE.rate.store(rate, Ordering::Release);
                        TSC.store(TSC_READY, Ordering::Release);
                    }
                    // A counter that did not advance sensibly: not used.
                    None => TSC.store(TSC_NO, Ordering::Release),
                }
                return mono;
            }
            now
        }
        _ => instant_mono_nanos(),
    }
}

/// Nanoseconds per tick in 32.32 fixed point, if `ticks` over `nanos` is a
/// plausible counter (between 10 MHz and 100 GHz).
fn rate_of(nanos: u64, ticks: u64) -> Option<u64> {
    if ticks == 0 || nanos == 0 {
        return None;
    }
    let rate = (u128::from(nanos) << 32) / u128::from(ticks);
    let (min, max) = (1u128 << 32 >> 2, 100u128 << 32);
    (min / 25..=max)
        .contains(&rate)
        .then(|| u64::try_from(rate).ok())
        .flatten()
}

/// The Unix time, in nanoseconds, of `at` (a recent [`mono_nanos`] read),
/// through this thread's anchor to the wall clock (see the module docs).
///
/// ```
/// use otlp_exporter::clock::{mono_nanos, unix_nanos_of};
/// let at = mono_nanos();
/// assert!(unix_nanos_of(at) > 1_600_000_000_000_000_000); // after September 2020
/// ```
#[inline]
pub fn unix_nanos_of(at: u64) -> u64 {
    let anchored = ANCHOR.try_with(|anchor| match anchor.get() {
        Some((mono, unix)) if at.abs_diff(mono) < ANCHOR_TTL => {
            if at >= mono {
                unix.saturating_add(at - mono)
            } else {
                unix.saturating_sub(mono - at)
            }
        }
        _ => {
            let (mono, unix) = anchor_pair();
            anchor.set(Some((mono, unix)));
            if at >= mono {
                unix.saturating_add(at - mono)
            } else {
                unix.saturating_sub(mono - at)
            }
        }
    });
    // In a thread-local destructor: read the wall clock itself.
    anchored.unwrap_or_else(|_| system_unix_nanos())
}

/// A thread's new anchor: a wall-clock read and the [`mono_nanos`] of its
/// moment, the midpoint of two reads around it; the tightest of four
/// tries (found by review: a thread held up between a single pair of reads,
/// preempted or in a signal handler, kept the hold-up in its offset, and
/// stamped its spans that far in the future for half a second; a span it
/// started and another thread ended came out with no duration).
#[cold]
#[inline(never)]
fn anchor_pair() -> (u64, u64) {
    // The reads take well under a microsecond: `MAX_ANCHOR_WIDTH` is tight.
    let (mono, unix, _) = bracketed(mono_nanos, system_unix_nanos, MAX_ANCHOR_WIDTH);
    (mono, unix)
}

/// A wall-clock read bracketed this closely is taken as is (its moment is
/// known to half of this); a wider one is read again, up to four times.
const MAX_ANCHOR_WIDTH: u64 = 5_000;

/// Nanoseconds since the Unix epoch, now: [`unix_nanos_of`]
/// ([`mono_nanos`]()), the clock spans and events are stamped with. Within
/// a few microseconds of [`system_unix_nanos`] (see the module docs), and
/// about half its cost.
///
/// ```
/// let t = otlp_exporter::now_unix_nanos();
/// assert!(t > 1_600_000_000_000_000_000); // after September 2020
/// ```
#[inline]
pub fn now_unix_nanos() -> u64 {
    unix_nanos_of(mono_nanos())
}

/// Nanoseconds since the Unix epoch, read from the system's wall clock
/// (`SystemTime`) itself: what the per-thread anchors are renewed from.
///
/// ```
/// let t = otlp_exporter::clock::system_unix_nanos();
/// assert!(t > 1_600_000_000_000_000_000); // after September 2020
/// ```
pub fn system_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_times_follow_the_wall_clock_and_the_monotonic_one() {
        let before = system_unix_nanos();
        // A read a little ahead, so that one before it is still positive.
        let first = mono_nanos() + 10_000;
        let a = unix_nanos_of(first);
        let b = unix_nanos_of(first + 7_000);
        let after = system_unix_nanos();
        // `first` is 10 µs after its read, which was between `before` and
        // `after`; the anchor's moment is known within 2.5 µs (half a
        // millisecond of slack: on a loaded machine every try may be held
        // up, and the tightest is taken).
        assert!(
            before <= a && a <= after + 10_000 + 500_000,
            "{before} <= {a} <= {after} + 510 µs"
        );
        assert_eq!(b - a, 7_000, "the monotonic difference, exactly");
        // A read just before the anchor is placed before it.
        assert_eq!(a - unix_nanos_of(first - 3_000), 3_000);
    }

    #[test]
    fn mono_keeps_pace_with_instant_through_the_calibration() {
        // Long enough for the counter to be calibrated where it is used.
        let (m0, i0) = (mono_nanos(), Instant::now());
        let mut last = m0;
        while i0.elapsed() < CALIBRATION * 3 {
            let m = mono_nanos();
            assert!(m + 1_000 >= last, "went back: {last} then {m}");
            last = last.max(m);
            std::thread::sleep(Duration::from_millis(5));
        }
        let pause = Duration::from_millis(20);
        let (m1, i1) = (mono_nanos(), Instant::now());
        std::thread::sleep(pause);
        let (m2, i2) = (mono_nanos(), Instant::now());
        let (by_mono, by_instant) = (m2 - m1, nanos(i2 - i1));
        assert!(
            by_mono >= nanos(pause) - 50_000,
            "{by_mono} for a {pause:?} sleep"
        );
        // Within 1 % plus the two reads' distance apart (a loaded machine
        // may preempt between a `mono_nanos` read and an `Instant` read).
        let slack = by_instant / 100 + 2_000_000;
        assert!(
            by_mono.abs_diff(by_instant) <= slack,
            "mono {by_mono} ns, Instant {by_instant} ns"
        );
        if tsc_trusted() {
            assert_eq!(TSC.load(Ordering::Acquire), TSC_READY);
            assert_ne!(SCALE.rate.load(Ordering::Acquire), 0);
        }
    }

    #[test]
    fn implausible_rates_are_refused() {
        assert_eq!(rate_of(0, 5), None);
        assert_eq!(rate_of(5, 0), None);
        // 1 GHz: one nanosecond per tick.
        assert_eq!(rate_of(1_000_000, 1_000_000), Some(1 << 32));
        // 3 GHz.
        let r = rate_of(1_000_000, 3_000_000).unwrap();
        assert!((r >> 30) == 1, "{r}"); // about a third
        // 1 MHz and 1 THz: not a time-stamp counter.
        assert_eq!(rate_of(1_000_000, 1_000), None);
        assert_eq!(rate_of(1_000, 1_000_000_000), None);
    }
}
