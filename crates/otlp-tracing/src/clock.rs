//! Wall-clock timestamps from one monotonic clock read.
//!
//! A span reads the clock when it starts, when a thread enters and leaves
//! it, and when it ends; its events read it too. Each read is a monotonic
//! one (`Instant`), which the busy/idle times need anyway; the Unix time
//! is derived from a per-thread anchor (a `SystemTime` read paired with an
//! `Instant` read) renewed every [`ANCHOR_TTL`], so a span costs one clock
//! read per timestamp instead of two. A step of the system clock shows in
//! the timestamps within `ANCHOR_TTL`; a gradual (NTP) adjustment moves
//! them by what the clock drifts in that time.

use std::cell::Cell;
use std::time::{Duration, Instant};

use otlp_exporter::now_unix_nanos;

/// How long a thread's anchor is used before it is read again.
const ANCHOR_TTL: Duration = Duration::from_millis(500);

thread_local! {
    static ANCHOR: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

/// `d` in nanoseconds, saturating (no 128-bit arithmetic on the hot path).
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// The Unix time, in nanoseconds, of the monotonic instant `at` (a recent
/// one: a read of `Instant::now`).
pub(crate) fn unix_nanos(at: Instant) -> u64 {
    let anchored = ANCHOR.try_with(|anchor| match anchor.get() {
        Some((when, unix)) if at >= when && at.duration_since(when) < ANCHOR_TTL => {
            unix.saturating_add(nanos(at.duration_since(when)))
        }
        Some((when, unix)) if at < when && when.duration_since(at) < ANCHOR_TTL => {
            unix.saturating_sub(nanos(when.duration_since(at)))
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
        let first = Instant::now();
        let a = unix_nanos(first);
        let b = unix_nanos(first + Duration::from_micros(7));
        let after = now_unix_nanos();
        assert!(before <= a && a <= after, "{before} <= {a} <= {after}");
        assert_eq!(b - a, 7_000, "the monotonic difference, exactly");
        // An instant just before the anchor is placed before it.
        if let Some(earlier) = first.checked_sub(Duration::from_micros(3)) {
            assert_eq!(a - unix_nanos(earlier), 3_000);
        }
    }
}
