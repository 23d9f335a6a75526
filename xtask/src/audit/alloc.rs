//! A counting global allocator: how many allocations each thread made, for
//! the lock-free audit ("the hot path allocates nothing"), and, while the
//! memory audit turns it on, the bytes held by the whole process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Whether [`LIVE`] is kept: off except during the memory audit, so that
/// no other audit pays a shared atomic per allocation (which would slow
/// down the side that allocates more, the baselines).
static TRACK_BYTES: AtomicBool = AtomicBool::new(false);

/// Bytes allocated minus bytes freed while tracking was on (frees of
/// memory allocated before count too: differences are what mean something).
static LIVE: AtomicI64 = AtomicI64::new(0);

/// Starts keeping the process's allocated bytes ([`live_bytes`]).
pub(crate) fn track_bytes(on: bool) {
    TRACK_BYTES.store(on, Ordering::SeqCst);
}

/// Bytes allocated minus bytes freed while tracking was on.
pub(crate) fn live_bytes() -> i64 {
    LIVE.load(Ordering::SeqCst)
}

#[inline]
fn count_bytes(delta: i64) {
    // Relaxed: a flag read on every allocation; the audit turns it on
    // before the threads it measures start, and reads LIVE after they
    // have synchronised with it (a barrier).
    if TRACK_BYTES.load(Ordering::Relaxed) {
        LIVE.fetch_add(delta, Ordering::Relaxed);
    }
}

pub(crate) struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator; only adds a
// thread-local count, which allocates nothing itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the thread-local may be gone while a thread exits.
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count_bytes(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count_bytes(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_bytes(-(layout.size() as i64));
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count_bytes(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Allocations made by this thread so far.
pub(crate) fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}
