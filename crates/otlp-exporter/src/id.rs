//! Random trace and span ids from a per-thread generator: no shared lock,
//! no shared cache line, never all zero.
//!
//! The ids are unique with high probability, not secret: the generator is
//! SplitMix64, and one id a process sends out (a span id in an outgoing
//! `traceparent`) is enough to compute the ids its thread draws next. Do not
//! use them where an id must not be guessed (session tokens, capability
//! URLs, anything security relies on).
//!
//! Each thread seeds its generator on its first draw, from the process's
//! random hash keys, the process id, the thread id and the time. A process
//! made by `fork` starts with a copy of its parent's generators; on Unix a
//! `pthread_atfork` child handler (registered on the first draw in the
//! process) bumps a fork epoch, and a generator that sees a new epoch
//! reseeds before its next draw, so a forked child and its parent (and two
//! children of one parent) draw different sequences. The check is one
//! relaxed load of a process-global counter per draw, which nothing but a
//! fork writes.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{SpanId, TraceId};

/// The process's fork epoch: bumped in a forked child (by the
/// `pthread_atfork` child handler), never otherwise.
///
/// On a cache line of its own: every id draw reads it, and a static next
/// to it that another thread writes (the worker's) would make each read a
/// miss.
static FORK_EPOCH: CacheLine = CacheLine(AtomicU64::new(0));

/// An atomic alone on its (pair of) cache line(s).
#[repr(align(128))]
struct CacheLine(AtomicU64);

/// A generator's `epoch` before its first seed (the fork epoch would need
/// 2^64 - 1 forks to reach it).
const UNSEEDED: u64 = u64::MAX;

/// A thread's generator: SplitMix64's state and the fork epoch it was
/// seeded in.
struct Generator {
    state: Cell<u64>,
    epoch: Cell<u64>,
}

thread_local! {
    static STATE: Generator = const {
        Generator { state: Cell::new(0), epoch: Cell::new(UNSEEDED) }
    };
}

/// Registers the fork handler, once per process; true once it is
/// registered (a thread that finds another registering it gets false and
/// does not wait: `Once` would hang in a child forked mid-registration).
fn register_fork_handler() -> bool {
    #[cfg(unix)]
    {
        use std::sync::atomic::AtomicU8;
        /// 0: not registered; 1: a thread is registering it; 2: registered.
        static REGISTRATION: AtomicU8 = AtomicU8::new(0);
        /// Runs in the child, right after `fork`: one atomic add, which is
        /// async-signal-safe.
        extern "C" fn forked() {
            FORK_EPOCH.0.fetch_add(1, Ordering::Relaxed);
        }
        match REGISTRATION.compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: registers a handler that only does an atomic add
                // (safe in a forked child). A failure (out of memory) leaves
                // the old behaviour: a child keeps its parent's sequences.
                unsafe {
                    libc::pthread_atfork(None, None, Some(forked));
                }
                REGISTRATION.store(2, Ordering::Release);
                true
            }
            Err(state) => state == 2,
        }
    }
    #[cfg(not(unix))]
    true
}

/// This thread's generator, (re)seeded when it has not been seeded yet or
/// the process was forked since: `f` draws from its state.
#[inline(always)]
fn with_generator<R>(f: impl FnOnce(&Cell<u64>) -> R) -> R {
    STATE.with(|g| {
        if g.epoch.get() != FORK_EPOCH.0.load(Ordering::Relaxed) {
            reseed(g);
        }
        f(&g.state)
    })
}

#[cold]
#[inline(never)]
fn reseed(g: &Generator) {
    let registered = register_fork_handler();
    // The epoch is read after the handler is registered: a fork after this
    // load bumps it, and this generator reseeds in the child. While another
    // thread is still registering it, the generator stays marked unseeded
    // and reseeds on its next draw too.
    let epoch = FORK_EPOCH.0.load(Ordering::Relaxed);
    g.state.set(seed());
    g.epoch.set(if registered { epoch } else { UNSEEDED });
}

/// A per-thread seed from the process's random hash keys, the process id,
/// the thread id and the time, so threads and processes draw different
/// sequences. (A forked child inherits its parent's hash keys and thread
/// ids; its process id differs.)
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.write_u32(std::process::id());
    std::hash::Hash::hash(&std::thread::current().id(), &mut h);
    h.finish()
}

/// SplitMix64: a fast, well-distributed 64-bit generator. Ids need to be
/// unique for tracing; they are predictable (see the module docs), not
/// cryptographic.
fn next_u64() -> u64 {
    random_u64()
}

/// A random `u64` from this thread's generator.
pub(crate) fn random_u64() -> u64 {
    with_generator(|s| {
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
    with_generator(|s| {
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
        let set = |seed: u64| {
            random_u64(); // seeded in this fork epoch, so not reseeded below
            STATE.with(|g| g.state.set(seed));
        };
        set(SEED);
        let (trace, span) = random_root_ids();
        // The generator moved on past exactly three draws.
        let after_root = STATE.with(|g| g.state.get());
        assert_eq!(
            after_root,
            SEED.wrapping_add(3u64.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        );
        set(SEED);
        let (a, b, c) = (random_u64(), random_u64(), random_u64());
        assert_eq!(trace.0[..8], a.to_be_bytes());
        assert_eq!(trace.0[8..], b.to_be_bytes());
        assert_eq!(span.0, c.to_be_bytes());
        assert_eq!(STATE.with(|g| g.state.get()), after_root);
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
