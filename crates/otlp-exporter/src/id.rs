//! Random trace and span ids from a per-thread generator: no shared lock,
//! no shared cache line, never all zero.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::model::{SpanId, TraceId};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// A per-thread seed from the process's random hash keys, the thread id and
/// the time, so threads and processes draw different sequences.
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    std::hash::Hash::hash(&std::thread::current().id(), &mut h);
    h.finish()
}

/// SplitMix64: a fast, well-distributed 64-bit generator. Ids need to be
/// unique and unpredictable enough for tracing, not cryptographic.
fn next_u64() -> u64 {
    random_u64()
}

/// A random `u64` from this thread's generator.
pub(crate) fn random_u64() -> u64 {
    STATE.with(|s| {
        let z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(z);
        mix(z)
    })
}

/// SplitMix64's output function.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn random_trace_id() -> TraceId {
    loop {
        let (a, b) = (next_u64(), next_u64());
        if a | b != 0 {
            let mut id = [0; 16];
            id[..8].copy_from_slice(&a.to_be_bytes());
            id[8..].copy_from_slice(&b.to_be_bytes());
            return TraceId(id);
        }
    }
}

/// A new root's ids, a trace id and a span id, never zero, drawn with one
/// visit to the thread's generator (the record path's common case).
#[inline]
pub(crate) fn random_root_ids() -> (TraceId, SpanId) {
    STATE.with(|s| {
        let mut state = s.get();
        let mut draw = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            mix(state)
        };
        let (mut a, mut b) = (draw(), draw());
        while a | b == 0 {
            (a, b) = (draw(), draw());
        }
        let mut c = draw();
        while c == 0 {
            c = draw();
        }
        s.set(state);
        let mut id = [0; 16];
        id[..8].copy_from_slice(&a.to_be_bytes());
        id[8..].copy_from_slice(&b.to_be_bytes());
        (TraceId(id), SpanId(c.to_be_bytes()))
    })
}

pub(crate) fn random_span_id() -> SpanId {
    loop {
        let a = next_u64();
        if a != 0 {
            return SpanId(a.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_ids_are_the_next_three_draws_of_the_generator() {
        const SEED: u64 = 0x1234_5678;
        STATE.with(|s| s.set(SEED));
        let (trace, span) = random_root_ids();
        // The generator moved on past exactly three draws.
        let after_root = STATE.with(Cell::get);
        assert_eq!(
            after_root,
            SEED.wrapping_add(3u64.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        );
        STATE.with(|s| s.set(SEED));
        let (a, b, c) = (random_u64(), random_u64(), random_u64());
        assert_eq!(trace.0[..8], a.to_be_bytes());
        assert_eq!(trace.0[8..], b.to_be_bytes());
        assert_eq!(span.0, c.to_be_bytes());
        assert_eq!(STATE.with(Cell::get), after_root);
    }

    #[test]
    fn root_ids_are_never_zero_and_differ() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let (trace, span) = random_root_ids();
            assert_ne!(trace.0, [0; 16]);
            assert_ne!(span.0, [0; 8]);
            assert!(seen.insert(span.0), "a span id repeated");
        }
    }
}
