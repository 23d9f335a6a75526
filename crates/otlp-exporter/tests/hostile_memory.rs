//! Memory under hostile but legitimate use, measured with a counting global
//! allocator (live bytes, not time): threads that record a full lane each
//! and exit while the collector is down must not keep their lanes (issue
//! 12's case: 400 exited threads held 819 200 spans and 201 MiB).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use otlp_exporter::{
    Behavior, DEFAULT_MAX_QUEUE_SIZE, HANDED_OVER_LANES, InMemory, Pipeline, Recorded, Resource,
    SpanData,
};

/// Bytes currently allocated through the global allocator.
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// Allocations larger than this fail (return null), as they would on a
/// machine out of memory. `usize::MAX`: none fail.
static FAIL_ABOVE: AtomicUsize = AtomicUsize::new(usize::MAX);

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > FAIL_ABOVE.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: isize = 1 << 20;

/// 400 threads each fill a lane (2048 spans, 512 KiB of slots) and exit
/// while the only export hangs. Before: every lane stayed, 200 MiB. Now:
/// each lane is freed as its thread exits, and the spans handed over are
/// capped at `HANDED_OVER_LANES` lanes' worth (the rest counted as
/// orphaned), so memory stays within a few lanes.
#[test]
fn exited_threads_during_an_outage_do_not_keep_their_lanes() {
    test_watchdog::isolate(Duration::from_secs(120), || {
        let memory = InMemory::new().with_behavior(Behavior::Hang);
        let p = Pipeline::builder()
            .transport(memory.clone())
            .resource(Resource::new("memory"))
            .scheduled_delay(Duration::from_millis(10))
            .build()
            .unwrap();
        p.record(SpanData::new("first"));
        while memory.calls() < 1 {
            thread::sleep(Duration::from_millis(1));
        }
        let base = LIVE.load(Ordering::Relaxed);
        let mut peak = 0;
        for wave in 0..50 {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let p = p.clone();
                    thread::spawn(move || {
                        for i in 0..DEFAULT_MAX_QUEUE_SIZE {
                            let r = p.record(SpanData::new(format!("{wave}/{t}/{i}")));
                            assert_eq!(r, Recorded::Queued);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            peak = peak.max(LIVE.load(Ordering::Relaxed) - base);
        }
        let grown = LIVE.load(Ordering::Relaxed) - base;
        let s = p.stats();
        assert!(s.is_balanced(), "{s:?}");
        let kept = (HANDED_OVER_LANES * DEFAULT_MAX_QUEUE_SIZE) as u64;
        assert_eq!(s.queued, kept, "{s:?}");
        assert_eq!(
            s.dropped.orphaned,
            400 * DEFAULT_MAX_QUEUE_SIZE as u64 - kept
        );
        // The spans kept (256-byte slots) and their deque, plus the 8 live
        // lanes of a wave at its peak: about 12 MiB. 200 MiB before.
        let lane = 256 * DEFAULT_MAX_QUEUE_SIZE as isize;
        let budget = 2 * kept as isize * 256 + 8 * lane + 4 * MIB;
        assert!(
            grown < budget,
            "{} MiB still held after the threads exited",
            grown / MIB
        );
        assert!(peak < budget + 8 * lane, "peak {} MiB", peak / MIB);
        memory.release();
        let report = p.shutdown(Duration::from_secs(60));
        assert!(report.stats.is_balanced(), "{:?}", report.stats);
    });
}

/// A thread whose queue lane cannot be allocated (memory ran out since the
/// pipeline started) records anyway: the span is counted as queue-full,
/// nothing aborts, and the accounting balances; once memory is back, new
/// threads get lanes again.
#[test]
fn a_lane_that_cannot_be_allocated_is_counted_not_an_abort() {
    test_watchdog::isolate(Duration::from_secs(60), || {
        let memory = InMemory::new();
        // A lane of 4096 slots is 1 MiB.
        let p = Pipeline::builder()
            .transport(memory.clone())
            .resource(Resource::new("memory"))
            .max_queue_size(4096)
            .build()
            .unwrap();
        FAIL_ABOVE.store(512 << 10, Ordering::Relaxed);
        let q = p.clone();
        let outcome = thread::spawn(move || q.record(SpanData::new("no room")))
            .join()
            .unwrap();
        FAIL_ABOVE.store(usize::MAX, Ordering::Relaxed);
        assert_eq!(
            outcome,
            Recorded::Dropped(otlp_exporter::DropReason::QueueFull)
        );
        let q = p.clone();
        let outcome = thread::spawn(move || q.record(SpanData::new("room")))
            .join()
            .unwrap();
        assert_eq!(outcome, Recorded::Queued);
        let report = p.shutdown(Duration::from_secs(30));
        assert!(report.completed);
        let s = report.stats;
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!((s.accepted, s.exported, s.dropped.queue_full), (2, 1, 1));
        assert_eq!(memory.span_count(), 1);
    });
}
