//! A per-thread cache of freed task cells, so that a burst of tasks ending
//! together does not take the allocator's slow path once per task.
//!
//! A region that drains many tasks frees their cells in a burst (at its
//! close, where its registry lets go of them), with no allocation in
//! between. glibc's per-thread cache holds 7 chunks of a size; the rest
//! take `_int_free` under the arena's lock, coalescing with their
//! neighbours, and the next spawns of that size take `_int_malloc`: about
//! 190 instructions and two locked instructions per task, a fifth of a
//! drained task's cost (`docs/runtime-performance.md`, part 9). Here the
//! thread that frees a cell keeps it, and the thread's next task of the
//! same size reuses it.
//!
//! Bounds: at most [`MAX_BYTES`] per thread, in at most [`CLASSES`] sizes
//! (a cell's layout is its task type's: one size per spawned future type);
//! a cell that does not fit goes back to the allocator. Only a thread that
//! has allocated a cell through here keeps freed ones (a worker, or a
//! thread that spawns): a thread that only drops handles, and so frees
//! cells now and then, strands none. A thread's cells go back to the
//! allocator when it exits.
//!
//! Under `cfg(loom)` and `cfg(runtime_core_asan)` (set by `cargo xtask
//! asan`) there is no cache: every cell goes to the allocator, so that
//! AddressSanitizer sees a use after free as such instead of a use of a
//! cached cell.

use std::alloc::Layout;
use std::ptr::NonNull;

/// The most bytes of freed cells one thread keeps.
#[cfg_attr(any(loom, runtime_core_asan), allow(dead_code))]
pub(crate) const MAX_BYTES: usize = 256 * 1024;
/// The most cell sizes one thread keeps cells of.
#[cfg_attr(any(loom, runtime_core_asan), allow(dead_code))]
pub(crate) const CLASSES: usize = 4;

/// Allocates memory for a task cell of `layout` (never zero-sized: a cell
/// holds its header).
pub(crate) fn alloc(layout: Layout) -> NonNull<u8> {
    debug_assert!(layout.size() > 0);
    #[cfg(not(any(loom, runtime_core_asan)))]
    if let Some(p) = imp::take(layout) {
        return p;
    }
    // SAFETY: `layout` is not zero-sized (asserted above; a cell holds its
    // header).
    let p = unsafe { std::alloc::alloc(layout) };
    NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
}

/// Frees a task cell's memory (its contents already dropped).
///
/// # Safety
///
/// `p` came from [`alloc`] with this `layout`, and nothing uses it any
/// more.
pub(crate) unsafe fn dealloc(p: NonNull<u8>, layout: Layout) {
    #[cfg(not(any(loom, runtime_core_asan)))]
    let Some(p) = imp::keep(p, layout) else {
        return;
    };
    // SAFETY: the caller's promise: it came from the allocator (directly,
    // or through a cache that hands out only what the allocator gave it)
    // with this layout.
    unsafe { std::alloc::dealloc(p.as_ptr(), layout) };
}

#[cfg(not(any(loom, runtime_core_asan)))]
mod imp {
    use std::alloc::Layout;
    use std::cell::RefCell;
    use std::ptr::NonNull;

    use super::{CLASSES, MAX_BYTES};

    /// Freed cells of one layout.
    struct Class {
        layout: Layout,
        free: Vec<NonNull<u8>>,
    }

    /// One thread's cells.
    struct Cache {
        classes: [Option<Class>; CLASSES],
        /// Bytes held in all classes.
        bytes: usize,
        /// This thread has allocated a cell through the cache.
        active: bool,
    }

    impl Drop for Cache {
        fn drop(&mut self) {
            for class in self.classes.iter_mut().flatten() {
                for p in class.free.drain(..) {
                    // SAFETY: every cell kept came from the allocator with
                    // its class's layout (`keep` files it by layout), and
                    // a kept cell is used by nobody.
                    unsafe { std::alloc::dealloc(p.as_ptr(), class.layout) };
                }
            }
        }
    }

    thread_local! {
        static CACHE: RefCell<Cache> = const {
            RefCell::new(Cache {
                classes: [const { None }; CLASSES],
                bytes: 0,
                active: false,
            })
        };
    }

    /// A kept cell of `layout`, if this thread has one; marks the thread as
    /// one that allocates cells.
    #[inline]
    pub(super) fn take(layout: Layout) -> Option<NonNull<u8>> {
        // `try_with`: during the thread's exit the cache may be gone (a
        // task spawned from another thread-local's destructor).
        CACHE
            .try_with(|c| {
                // `try_borrow_mut`: never re-entered (nothing here calls out),
                // but a failed borrow must not panic inside an allocation.
                let mut c = c.try_borrow_mut().ok()?;
                c.active = true;
                let class = c
                    .classes
                    .iter_mut()
                    .flatten()
                    .find(|k| k.layout == layout)?;
                let p = class.free.pop()?;
                c.bytes -= layout.size();
                Some(p)
            })
            .ok()
            .flatten()
    }

    /// Keeps `p` (a cell of `layout`) for this thread's next allocation of
    /// that layout; gives it back (`Some`) for the allocator when it does
    /// not fit, or when this thread allocates no cells.
    #[inline]
    pub(super) fn keep(p: NonNull<u8>, layout: Layout) -> Option<NonNull<u8>> {
        let kept = CACHE.try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return false;
            };
            if !c.active || c.bytes + layout.size() > MAX_BYTES {
                return false;
            }
            let c = &mut *c;
            // This layout's class, else one that holds nothing, which
            // this layout takes over (keeping its buffer).
            let Some(i) = c
                .classes
                .iter()
                .position(|k| k.as_ref().is_some_and(|k| k.layout == layout))
                .or_else(|| {
                    c.classes
                        .iter()
                        .position(|k| k.as_ref().is_none_or(|k| k.free.is_empty()))
                })
            else {
                return false;
            };
            let class = c.classes[i].get_or_insert_with(|| Class {
                layout,
                free: Vec::new(),
            });
            class.layout = layout;
            // A failed reservation (out of memory) keeps nothing.
            if class.free.try_reserve(1).is_err() {
                return false;
            }
            class.free.push(p);
            c.bytes += layout.size();
            true
        });
        if kept == Ok(true) { None } else { Some(p) }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn held() -> (usize, usize) {
            CACHE.with(|c| {
                let c = c.borrow();
                (
                    c.bytes,
                    c.classes.iter().flatten().map(|k| k.free.len()).sum(),
                )
            })
        }

        #[test]
        fn a_freed_cell_is_reused_by_the_next_allocation_of_its_layout() {
            std::thread::spawn(|| {
                let layout = Layout::from_size_align(320, 8).unwrap();
                let a = crate::task::cache::alloc(layout);
                // SAFETY: from `alloc` with this layout, unused.
                unsafe { crate::task::cache::dealloc(a, layout) };
                assert_eq!(held(), (320, 1));
                let b = crate::task::cache::alloc(layout);
                assert_eq!(a, b, "the kept cell came back");
                assert_eq!(held(), (0, 0));
                // Another layout does not get it.
                // SAFETY: as above.
                unsafe { crate::task::cache::dealloc(b, layout) };
                let other = Layout::from_size_align(336, 8).unwrap();
                let c = crate::task::cache::alloc(other);
                assert_ne!(c, b);
                // SAFETY: as above.
                unsafe { crate::task::cache::dealloc(c, other) };
                assert_eq!(held(), (320 + 336, 2));
            })
            .join()
            .unwrap();
        }

        #[test]
        fn a_thread_keeps_at_most_its_bound_in_at_most_its_classes() {
            std::thread::spawn(|| {
                // Made active by one allocation.
                let first = Layout::from_size_align(1024, 8).unwrap();
                let p = crate::task::cache::alloc(first);
                // SAFETY: from `alloc` with this layout, unused.
                unsafe { crate::task::cache::dealloc(p, first) };
                // Far more than the bound, in more sizes than the classes.
                let mut cells = Vec::new();
                for i in 0..2 * MAX_BYTES / 1024 {
                    let layout = Layout::from_size_align(1024 + 64 * (i % 8), 8).unwrap();
                    cells.push((crate::task::cache::alloc(layout), layout));
                }
                for (p, layout) in cells {
                    // SAFETY: as above.
                    unsafe { crate::task::cache::dealloc(p, layout) };
                }
                let (bytes, _) = held();
                assert!(bytes <= MAX_BYTES, "{bytes} bytes kept");
                assert!(bytes > MAX_BYTES / 2, "the cache kept little: {bytes}");
                let classes = CACHE.with(|c| c.borrow().classes.iter().flatten().count());
                assert!(classes <= CLASSES);
            })
            .join()
            .unwrap();
        }

        #[test]
        fn a_thread_that_allocates_no_cells_keeps_none() {
            let layout = Layout::from_size_align(320, 8).unwrap();
            let p = std::thread::spawn(move || crate::task::cache::alloc(layout).as_ptr() as usize)
                .join()
                .unwrap();
            std::thread::spawn(move || {
                let p = NonNull::new(p as *mut u8).unwrap();
                // SAFETY: from `alloc` with this layout (on another
                // thread), unused.
                unsafe { crate::task::cache::dealloc(p, layout) };
                assert_eq!(held(), (0, 0), "freed to the allocator");
            })
            .join()
            .unwrap();
        }
    }
}
