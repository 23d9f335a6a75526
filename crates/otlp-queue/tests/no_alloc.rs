//! The push path allocates nothing in steady state, and neither does
//! `pop_batch` into a vector with room, for both queues (`bounded` and
//! the pooled queue, `pooled::try_with_chunk`): checked with a counting
//! global allocator. (Each test binary has its own allocator, so this file holds
//! only tests that need it.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only adds a thread-local count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the thread-local may already be gone at thread exit.
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn push_and_pop_batch_allocate_nothing_in_steady_state() {
    let (tx, mut rx) = otlp_queue::bounded::<u64>(64);
    let tx2 = tx.clone(); // lanes are allocated here, not by pushes
    let mut out = Vec::with_capacity(256);
    // Warm up: the consumer's first call copies the lane list.
    tx.try_push(0).unwrap();
    rx.pop_batch(&mut out, 256);
    out.clear();

    let before = allocations();
    for round in 0..1_000u64 {
        for i in 0..64 {
            tx.try_push(round * 64 + i).unwrap();
        }
        assert!(tx.try_push(0).unwrap_err().is_full());
        tx2.try_push(round).unwrap();
        tx.force_push(1).unwrap(); // evicts: still no allocation
        tx2.push_timeout(2, Duration::from_millis(1)).unwrap();
        out.clear();
        let n = rx.pop_batch(&mut out, 256);
        assert_eq!(n, 66);
    }
    assert_eq!(allocations() - before, 0, "push/pop allocated");
}

/// The pooled queue, the one otlp-exporter's pipeline records into: a
/// push that claims a chunk from the shared pool (one compare-and-swap),
/// a push refused because the pool is empty, the in-place pushes the
/// exporter uses (accepted, refused by `init`, refused for room), and the
/// consumer's `pop_batch` and `pop_each_mut` allocate nothing in steady
/// state (the lanes and their home chunks are allocated by `try_clone`).
#[test]
fn pooled_push_and_pop_allocate_nothing_in_steady_state() {
    let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u64>(64, 16).unwrap();
    let tx2 = tx.try_clone().unwrap(); // lanes are allocated here, not by pushes
    let mut out = Vec::with_capacity(256);
    let mut round = |r: u64| {
        // The other lane fills its home chunk and takes one from the pool.
        for i in 0..32 {
            tx2.try_push(i).unwrap();
        }
        // This lane: its chunk, then chunks from the pool until none is left.
        let mut pushed = 0;
        while tx.try_push(r).is_ok() {
            pushed += 1;
        }
        assert!(pushed >= 48, "round {r}: only {pushed} pushed");
        assert!(tx2.try_push(0).unwrap_err().is_full());
        // SAFETY: each `init` writes its value or refuses.
        unsafe {
            assert!(
                tx.try_push_in_place_or(|slot| {
                    slot.write(1);
                    Ok::<(), ()>(())
                })
                .is_err(),
                "no room"
            );
        }
        out.clear();
        assert_eq!(rx.pop_batch(&mut out, 256), pushed + 32);
        // SAFETY: as above.
        unsafe {
            tx.try_push_in_place_or(|slot| {
                slot.write(7);
                Ok::<(), ()>(())
            })
            .unwrap()
            .unwrap();
            assert_eq!(tx.try_push_in_place_or(|_| Err::<(), _>(9)), Ok(Err(9)));
        }
        let mut taken = Vec::with_capacity(0); // stays empty: no allocation
        let mut n = 0;
        rx.pop_each_mut(16, |v| {
            n += 1;
            if *v != 7 {
                taken.push(*v);
            }
        });
        assert_eq!((n, taken.len()), (1, 0), "the in-place push, once");
    };
    // Warm up: the consumer's first calls copy the lane list, and every
    // chunk has been through the pool once.
    for r in 0..4 {
        round(r);
    }
    let before = allocations();
    for r in 0..1_000 {
        round(r);
    }
    assert_eq!(allocations() - before, 0, "pooled push/pop allocated");
}

/// Once the pooled queue's consumer is gone (an exporter shut down), a
/// producer made for a new thread gets no lane of its own: no home chunk,
/// no lane header (each was ~8.5 KiB for a 256-byte item, kept for good).
#[test]
fn a_pooled_producer_made_after_the_consumer_is_gone_allocates_nothing() {
    let (tx, rx) = otlp_queue::pooled::bounded_total::<[u8; 256]>(1024);
    drop(tx.clone()); // warm up (the registry's list has room)
    drop(rx);
    let before = allocations();
    for _ in 0..1_000 {
        let p = tx.try_clone().unwrap();
        assert!(p.try_push([0; 256]).unwrap_err().is_closed());
        let q = p.clone();
        drop(p);
        drop(q);
    }
    assert_eq!(
        allocations() - before,
        0,
        "a producer after the consumer allocated"
    );
}
