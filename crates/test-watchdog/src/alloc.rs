//! A counting global allocator for tests of memory: live bytes, not time.
//!
//! ```no_run
//! use test_watchdog::alloc::Counting;
//!
//! #[global_allocator]
//! static ALLOC: Counting = Counting::new();
//!
//! fn main() {
//!     let base = ALLOC.live();
//!     let v = vec![0u8; 4096];
//!     assert!(ALLOC.live() - base >= 4096);
//!     drop(v);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Forwards to the system allocator, counting the bytes live; can make
/// allocations of one size fail, as they would on a machine out of
/// memory.
#[derive(Debug)]
pub struct Counting {
    live: AtomicIsize,
    fail_size: AtomicUsize,
}

impl Counting {
    /// An allocator with nothing counted and no failures planted.
    pub const fn new() -> Self {
        Counting {
            live: AtomicIsize::new(0),
            fail_size: AtomicUsize::new(0),
        }
    }

    /// Bytes allocated through this allocator and not freed yet (in the
    /// whole process: tests that compare it run one at a time, or in one
    /// test function).
    pub fn live(&self) -> isize {
        // Relaxed: a counter read for a snapshot.
        self.live.load(Ordering::Relaxed)
    }

    /// From now on, allocations of exactly `size` bytes fail (return null);
    /// 0: none fail.
    pub fn fail_size(&self, size: usize) {
        // Relaxed: a setting, read by each allocation on its own.
        self.fail_size.store(size, Ordering::Relaxed);
    }

    fn count(&self, bytes: isize) {
        // Relaxed: only the sum matters.
        self.live.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Default for Counting {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: forwards every call to the system allocator unchanged (or fails
// it with null, which the contract allows); the counter has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() == self.fail_size.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            self.count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.count(-(layout.size() as isize));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            self.count(layout.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.count(new_size as isize - layout.size() as isize);
        }
        p
    }
}
