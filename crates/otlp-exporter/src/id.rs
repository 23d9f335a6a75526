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
        let mut z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
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

pub(crate) fn random_span_id() -> SpanId {
    loop {
        let a = next_u64();
        if a != 0 {
            return SpanId(a.to_be_bytes());
        }
    }
}
