//! Timestamps for spans: one cheap monotonic read per timestamp, and Unix
//! times derived from it.
//!
//! A span reads the clock when it starts, when a first thread enters it
//! and a last thread leaves it, and when it ends; its events read it too.
//! Each read is [`mono`]: nanoseconds on one process-wide monotonic scale.
//!
//! * Where the kernel itself keeps time with the CPU's time-stamp counter
//!   (x86_64, `current_clocksource` is `tsc`: the counter is invariant and
//!   synchronized across cores, or the kernel would not use it), `mono`
//!   reads the counter (`rdtsc`, about 20 ns on the 2-core VM against
//!   40 ns for `Instant::now`) and scales it by a rate measured once
//!   against `Instant` over at least [`CALIBRATION`] (until then, and
//!   everywhere else, it reads `Instant`). The two sources agree at the
//!   moment of calibration, so a span that straddles it sees no step.
//! * The Unix time of a read is the read plus a per-thread offset to the
//!   wall clock (`SystemTime`), renewed every [`ANCHOR_TTL`]: a span costs
//!   one clock read per timestamp instead of two. A step of the system
//!   clock shows in the timestamps within `ANCHOR_TTL`; a gradual (NTP)
//!   adjustment, or the counter's calibration error (a few parts per
//!   million), moves them by what accumulates in that time.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use otlp_exporter::now_unix_nanos;

/// How long a thread's wall-clock offset is used before it is read again.
const ANCHOR_TTL: u64 = 500_000_000;

/// The shortest interval the time-stamp counter's rate is measured over
/// (a read pair's uncertainty is well under a microsecond: a few parts per
/// million of this).
pub(crate) const CALIBRATION: Duration = Duration::from_millis(50);

thread_local! {
    /// `(mono, unix)` read together: the thread's offset to the wall clock.
    static ANCHOR: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// `d` in nanoseconds, saturating (no 128-bit arithmetic on the hot path).
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// The origin of the `Instant` scale.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// `mono` from `Instant` alone.
fn instant_mono() -> u64 {
    let origin = origin();
    nanos(Instant::now().saturating_duration_since(origin))
}

/// The time-stamp counter's scale, once calibrated: `mono = BASE_MONO +
/// (tsc - BASE_TSC) * RATE / 2^32`. `RATE` is written last (Release) and
/// read first (Acquire); 0 means not calibrated (yet, or never).
static RATE: AtomicU64 = AtomicU64::new(0);
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
static BASE_MONO: AtomicU64 = AtomicU64::new(0);

/// Whether the counter may be used, and the calibration's progress.
const TSC_UNKNOWN: u8 = 0;
const TSC_NO: u8 = 1;
/// Allowed, not calibrated: `START_*` holds the first read pair.
const TSC_MEASURING: u8 = 2;
/// A thread is computing the rate.
const TSC_CALIBRATING: u8 = 3;
const TSC_READY: u8 = 4;
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
/// both before it picks it).
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

/// The widest counter interval around an `Instant` read that the
/// calibration takes (about 15 µs at 3 GHz: a read pair that wide was
/// interrupted, and is tried again later).
const PAIR_WIDTH: u64 = 50_000;

/// A counter read and an `instant_mono` read taken together: the tightest
/// of a few tries, or `None` if every try was held up between its reads.
fn read_pair() -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64, u64)> = None;
    for _ in 0..4 {
        let before = rdtsc();
        let mono = instant_mono();
        let after = rdtsc();
        let width = after.wrapping_sub(before);
        if best.is_none_or(|b| width < b.2) {
            best = Some((before / 2 + after / 2, mono, width));
        }
        // About 1 µs or less at any common counter rate: tight enough.
        if width < 3_000 {
            break;
        }
    }
    best.filter(|b| b.2 <= PAIR_WIDTH).map(|b| (b.0, b.1))
}

/// Nanoseconds on the process's monotonic scale (see the module docs).
#[inline]
pub(crate) fn mono() -> u64 {
    let rate = RATE.load(Ordering::Acquire);
    if rate != 0 {
        let ticks = rdtsc().saturating_sub(BASE_TSC.load(Ordering::Relaxed));
        let scaled = (u128::from(ticks) * u128::from(rate)) >> 32;
        return BASE_MONO
            .load(Ordering::Relaxed)
            .saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX));
    }
    mono_slow()
}

/// `mono` while the counter is not calibrated: `Instant`, and a step of
/// the calibration.
#[cold]
fn mono_slow() -> u64 {
    match TSC.load(Ordering::Acquire) {
        TSC_UNKNOWN => {
            let next = if tsc_trusted() {
                let Some((tsc, mono)) = read_pair() else {
                    // Held up: the next read tries again.
                    return instant_mono();
                };
                START_TSC.store(tsc, Ordering::Relaxed);
                START_MONO.store(mono, Ordering::Relaxed);
                TSC_MEASURING
            } else {
                TSC_NO
            };
            // Another thread may have decided first: either is right.
            let _ = TSC.compare_exchange(TSC_UNKNOWN, next, Ordering::Release, Ordering::Relaxed);
            instant_mono()
        }
        TSC_MEASURING => {
            let now = instant_mono();
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
                    // Held up: a later read tries again.
                    TSC.store(TSC_MEASURING, Ordering::Release);
                    return now;
                };
                match rate_of(mono.saturating_sub(start_mono), tsc.wrapping_sub(start_tsc)) {
                    Some(rate) => {
                        BASE_TSC.store(tsc, Ordering::Relaxed);
                        BASE_MONO.store(mono, Ordering::Relaxed);
                        RATE.store(rate, Ordering::Release);
                        TSC.store(TSC_READY, Ordering::Release);
                    }
                    // A counter that did not advance sensibly: not used.
                    None => TSC.store(TSC_NO, Ordering::Release),
                }
                return mono;
            }
            now
        }
        _ => instant_mono(),
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

/// The Unix time, in nanoseconds, of `at` (a recent [`mono`] read).
pub(crate) fn unix_of(at: u64) -> u64 {
    let anchored = ANCHOR.try_with(|anchor| match anchor.get() {
        Some((mono, unix)) if at.abs_diff(mono) < ANCHOR_TTL => {
            if at >= mono {
                unix.saturating_add(at - mono)
            } else {
                unix.saturating_sub(mono - at)
            }
        }
        _ => {
            let unix = now_unix_nanos();
            anchor.set(Some((at, unix)));
            unix
        }
    });
    // In a thread-local destructor: read the wall clock itself.
    anchored.unwrap_or_else(|_| now_unix_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_times_follow_the_wall_clock_and_the_monotonic_one() {
        let before = now_unix_nanos();
        // A read a little ahead, so that one before it is still positive.
        let first = mono() + 10_000;
        let a = unix_of(first);
        let b = unix_of(first + 7_000);
        let after = now_unix_nanos();
        assert!(before <= a && a <= after, "{before} <= {a} <= {after}");
        assert_eq!(b - a, 7_000, "the monotonic difference, exactly");
        // A read just before the anchor is placed before it.
        assert_eq!(a - unix_of(first - 3_000), 3_000);
    }

    /// A `mono` read between two `Instant` reads.
    fn bracketed() -> (Instant, u64, Instant) {
        let before = Instant::now();
        let m = mono();
        (before, m, Instant::now())
    }

    #[test]
    fn mono_keeps_pace_with_instant_through_the_calibration() {
        // Long enough for the counter to be calibrated where it is used.
        let start = Instant::now();
        let mut last = mono();
        while start.elapsed() < CALIBRATION * 3 {
            let m = mono();
            // The switch from `Instant` to the counter may step by the
            // calibration's read uncertainty (well under this), never more.
            assert!(m + 100_000 >= last, "went back: {last} then {m}");
            last = last.max(m);
            std::thread::sleep(Duration::from_millis(5));
        }
        let pause = Duration::from_millis(20);
        let (a0, m1, a1) = bracketed();
        std::thread::sleep(pause);
        let (b0, m2, b1) = bracketed();
        let by_mono = m2 - m1;
        // `Instant` says the interval lies between these (whatever the
        // scheduler did between the reads); the counter's rate is within a
        // small fraction of a percent of `Instant`'s.
        let (shortest, longest) = (nanos(b0 - a1), nanos(b1 - a0));
        assert!(shortest >= nanos(pause));
        assert!(
            by_mono + shortest / 1000 >= shortest && by_mono <= longest + longest / 1000,
            "mono {by_mono} ns, Instant between {shortest} and {longest} ns"
        );
        if tsc_trusted() {
            assert_eq!(TSC.load(Ordering::Acquire), TSC_READY);
            assert_ne!(RATE.load(Ordering::Acquire), 0);
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
