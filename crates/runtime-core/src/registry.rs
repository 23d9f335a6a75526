//! A region's child registry: a lock-free, push-only stack of chunks that
//! any thread pushes to and that is emptied only whole, by one atomic swap.
//!
//! # What it is for
//!
//! Spawning pushes the new task here (child regions are not registered:
//! each is reached through the task that opened it, `Region::open`); a
//! sweep (cancellation, compaction),
//! a cut-off and the close take everything pushed so far and move it into
//! the region's own (locked, sweeper-owned) vector. Region cancellation
//! depends on one property of it (see `Region::adopt_task` and the loom
//! models in `loom_tests.rs`):
//!
//! > A child pushed by an adopter that then reads the region's cancel cell,
//! > and a cancel that writes the cell and then takes the registry: either
//! > the take returns the child, or the adopter's read sees the cancel.
//!
//! Both sides do a read-modify-write on the same atomic, `head` (the
//! push's CAS that claims its slot, the take's swap), and read-modify-writes
//! of one atomic are totally ordered. If the take comes later, it returns
//! the child (or a taker before it did, under the region's lock that every
//! taker holds, so the child is then in the region's vector that the sweep
//! goes through next). If the push comes later, its CAS (acquire) reads the
//! value the swap (release) wrote, or one written by a later push, which
//! continues the swap's release sequence: the swap synchronizes with the
//! push, so the cancel, written before the swap, happens before the
//! adopter's read of the cell, which therefore sees it. No `SeqCst` is
//! involved, which matters twice: acquire/release on one location is what
//! loom models exactly (it treats `SeqCst` accesses as `AcqRel`), and it
//! does not depend on how another crate's queue orders its internals.
//!
//! # Why not `crossbeam_queue::SegQueue`
//!
//! The registry used to be a `SegQueue`, and the property above then rested
//! on that queue's internal orderings ("its push is `SeqCst`"), which are
//! not part of its contract, which could change in any release, and which
//! loom cannot see (it is not built on this crate's loom shim). A FIFO is
//! also more than needed: nothing pops one child at a time.
//!
//! # Layout
//!
//! `head` is a tagged pointer: the newest chunk (aligned to 64 bytes) and,
//! in the low bits, how many of its [`SLOTS`] slots are claimed. A push
//! claims slot `n` by a CAS of `head` from `chunk|n` to `chunk|n+1`, or,
//! when the chunk is full (or there is none), by a CAS to `new|1` for a new
//! chunk whose `next` is the old tagged head (so the old chunk's count is
//! frozen there); then it writes its value into the slot and sets the
//! slot's `ready` flag. One allocation per [`SLOTS`] pushes, as `SegQueue`
//! (a plain node per push measured 2-3 times slower at 200 000 children:
//! an allocation, a free and a cache miss per child).
//!
//! A take swaps `head` to null and then owns the chunks it got: no push can
//! claim a slot in them any more (a claim is a CAS from their tagged head
//! value, which is gone). It reads each claimed slot after waiting for its
//! `ready` flag (a push between its claim and its write takes a few
//! instructions; the take spins, as `SegQueue`'s pop does), and frees a
//! chunk only after all its claimed slots were read: the `ready` store is a
//! push's last access to the chunk.
//!
//! A push never dereferences a chunk before its CAS succeeded, and then
//! uses the pointer that CAS read from `head` (not the one it loaded
//! before, which may be stale): a chunk freed and reallocated at the same
//! address between a push's load and its CAS (ABA) is harmless, since the
//! CAS succeeds only if that address and count are the current head, which
//! is then exactly what the push claims.
//!
//! # Length
//!
//! [`len`](Registry::len) is an approximate count, for the region's
//! compaction heuristic only: the pushes counted (raised before a push's
//! claim) less the values taken (raised after a take by the number of
//! slots taken), floored at zero. Two counters, not one: a take by a
//! caller that holds the region's `swept` lock ([`take_locked`]) raises
//! its counter with a load and a store instead of a read-modify-write
//! (the takers that hold the lock are serialized by it), which a push's
//! increment, racing with it, would otherwise be lost to. It can exceed
//! the true length by the pushes in flight, and, after a region's close,
//! by what a lock-free take racing a locked one counted (see
//! [`take_locked`]).
//!
//! [`take_locked`]: Registry::take_locked

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;

use crate::loom::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, UnsafeCell, spin_hint};

/// Slots per chunk (a small number under loom, so that the models cross
/// chunk boundaries). Must stay below the chunk alignment (64).
const SLOTS: usize = if cfg!(loom) { 2 } else { 31 };

/// The low bits of a tagged chunk pointer: the claimed-slot count.
const TAG: usize = 63;
const _: () = assert!(SLOTS <= TAG);

/// A push-only, take-all, lock-free stack of `T`.
pub(crate) struct Registry<T> {
    /// The newest chunk, tagged with its claimed-slot count, or null.
    /// Chunks reachable from here are owned by the registry.
    head: AtomicPtr<Chunk<T>>,
    /// Values pushed (counted before the claim; see the module doc).
    pushed: AtomicUsize,
    /// Values taken (counted after the take; see the module doc).
    taken: AtomicUsize,
    /// The registry owns `T`s (for drop check and auto traits).
    _owns: PhantomData<Box<Chunk<T>>>,
}

#[repr(align(64))]
struct Chunk<T> {
    /// The chunk pushed before this one, tagged with its final count, or
    /// null. Written only by the pusher that creates this chunk, before
    /// the CAS that publishes it; then by its taker.
    next: UnsafeCell<*mut Chunk<T>>,
    slots: [Slot<T>; SLOTS],
}

struct Slot<T> {
    /// Set (release) by the slot's pusher once `value` is written.
    ready: AtomicBool,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: a `T` pushed on one thread is moved out on another (a taker), so
// `T: Send` is needed and enough: no `&T` is ever shared between threads,
// and each slot is written by the one push that claimed it and read by the
// one take that took its chunk, after that push's `ready` store.
unsafe impl<T: Send> Send for Registry<T> {}
// SAFETY: as for `Send`: `&Registry` only lets a thread move a `T` in
// (push) or move `T`s out (take); it never hands out a shared `&T`.
unsafe impl<T: Send> Sync for Registry<T> {}

fn untag<T>(p: *mut Chunk<T>) -> (*mut Chunk<T>, usize) {
    (p.map_addr(|a| a & !TAG), p.addr() & TAG)
}

fn tag<T>(p: *mut Chunk<T>, n: usize) -> *mut Chunk<T> {
    p.map_addr(|a| a | n)
}

impl<T> Registry<T> {
    pub(crate) fn new() -> Self {
        Registry {
            head: AtomicPtr::new(ptr::null_mut()),
            pushed: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
            _owns: PhantomData,
        }
    }

    /// Adds `value`. Lock-free: a CAS loop that fails only when another
    /// push or a take changed the head in between, and an allocation for
    /// one push in [`SLOTS`].
    pub(crate) fn push(&self, value: T) {
        // Relaxed: counted before the claim, so that a take, which
        // synchronizes with this push's claim before it counts the slot as
        // taken, finds it counted in `pushed` first (`len` floors a stale
        // difference at zero anyway).
        self.pushed.fetch_add(1, Ordering::Relaxed);
        // A new chunk made by an earlier turn of the loop whose CAS failed.
        let mut spare: *mut Chunk<T> = ptr::null_mut();
        // Relaxed: a pusher dereferences a chunk only through the value
        // its successful CAS read (below), never through this one.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (chunk, n) = untag(head);
            let claim = if !chunk.is_null() && n < SLOTS {
                tag(chunk, n + 1)
            } else {
                if spare.is_null() {
                    spare = alloc_chunk();
                }
                set_next(spare, head);
                tag(spare, 1)
            };
            // AcqRel on success. Acquire: we read a head value written by
            // the CAS that published the chunk (or by a later claim, in its
            // release sequence), so the chunk's initialization is visible
            // before we write into it. It is also the registry's handshake
            // (module doc): if a take's swap came before this CAS, this CAS
            // reads from the swap's release sequence and synchronizes with
            // it, so what was sequenced before the take (a cancel request)
            // is visible to what the caller does after this push (its
            // check of the cancel cell). Release: publishes a new chunk's
            // `next` and slots to the take that will read this head or a
            // later one (later claims continue this release sequence).
            // Relaxed on failure: we only retry with the value read.
            match self
                .head
                .compare_exchange_weak(head, claim, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(prev) => {
                    let (slot_chunk, index) = if untag(claim).0 == spare {
                        (spare, 0)
                    } else {
                        if !spare.is_null() {
                            // SAFETY: never published (our CASes with it
                            // failed): still ours alone.
                            unsafe { free_chunk(spare) };
                        }
                        // `prev` (what the CAS read), not `chunk`: the same
                        // address, with the provenance of the chunk that is
                        // the head now (see the module doc on ABA).
                        untag(prev)
                    };
                    // SAFETY: the CAS claimed slot `index` of `slot_chunk`
                    // for us alone; the chunk stays allocated until its
                    // taker has seen this slot's `ready` flag, which we set
                    // last.
                    let slot = unsafe { &(*slot_chunk).slots[index] };
                    slot.value.with_mut(|v| {
                        // SAFETY: as above: exclusive access to the slot.
                        unsafe { (*v).write(value) };
                    });
                    // Release: the taker that sees the flag (acquire) sees
                    // the value. Our last access to the chunk.
                    slot.ready.store(true, Ordering::Release);
                    return;
                }
                Err(actual) => head = actual,
            }
        }
    }

    /// Takes every value pushed so far, in the order they were pushed.
    ///
    /// Values pushed concurrently are either in the result or left for the
    /// next take; none is returned twice. Whoever relies on the handshake
    /// in the module doc calls this, not a cheaper "is it empty" load: a
    /// plain load of an empty head would not synchronize with a push that
    /// comes after it. Iterating may wait (spin) for a push that claimed a
    /// slot to finish writing it.
    pub(crate) fn take(&self) -> Taken<T> {
        let (taken, count) = self.take_uncounted();
        if count > 0 {
            // Relaxed: an estimate; each slot counted here was counted in
            // by its pusher before the claim our swap synchronized with.
            self.taken.fetch_add(count, Ordering::Relaxed);
        }
        taken
    }

    /// [`take`](Self::take) for a caller that holds the region's `swept`
    /// lock (a sweep, a cut-off): the taken count is raised with a load
    /// and a store, not a read-modify-write (a locked instruction fewer
    /// per sweep), since the other takers that hold the lock cannot run
    /// meanwhile. The takers that do not hold it (a closed region's
    /// detach, a drop with `&mut`) come after the region's close, when no
    /// push can come any more: a count lost to such a race only leaves
    /// [`len`](Self::len) too high for a region that takes no child any
    /// more (read then only as a capacity hint by a late sweep). The
    /// handshake of the module doc is the swap's, unchanged.
    pub(crate) fn take_locked(&self) -> Taken<T> {
        let (taken, count) = self.take_uncounted();
        if count > 0 {
            // Relaxed: an estimate, as in `take`; the lock orders this
            // against the previous locked taker's store.
            let before = self.taken.load(Ordering::Relaxed);
            self.taken.store(before + count, Ordering::Relaxed);
        }
        taken
    }

    /// The swap and the walk of [`take`](Self::take), and how many slots
    /// it took (not counted yet).
    #[inline]
    fn take_uncounted(&self) -> (Taken<T>, usize) {
        // AcqRel. Acquire: synchronizes with every push whose claim we
        // read (each is in the release sequence we read from), so the
        // chunks they made (their `next` and slots) are visible. Release:
        // the handshake (module doc): a push whose CAS comes after this
        // swap sees what was sequenced before the take.
        let mut cur = self.head.swap(ptr::null_mut(), Ordering::AcqRel);
        // Reverse the chunk list (newest first as pushed) into push order,
        // and count the claimed slots.
        let mut first = ptr::null_mut();
        let mut count = 0;
        while !untag(cur).0.is_null() {
            let (chunk, n) = untag(cur);
            let next = get_next(chunk);
            set_next(chunk, first);
            first = cur;
            cur = next;
            count += n;
        }
        (
            Taken {
                chunk: first,
                index: 0,
                _owns: PhantomData,
            },
            count,
        )
    }

    /// [`take`](Self::take), skipped (`None`) when a load finds nothing
    /// pushed. Not the handshake of the module doc (a load of an empty
    /// head does not synchronize with a push that comes after it): only
    /// for a caller to whom every push that can come has happened-before
    /// (a closed region's detach: nothing can be pushed any more).
    pub(crate) fn take_if_any(&self) -> Option<Taken<T>> {
        // Acquire: a non-null head is then taken by the swap anyway (which
        // synchronizes with the pushes); a null one, for this caller, means
        // every push was taken already.
        if self.head.load(Ordering::Acquire).is_null() {
            return None;
        }
        Some(self.take())
    }

    /// About how many values were pushed and not yet taken.
    pub(crate) fn len(&self) -> usize {
        // Relaxed: an estimate for heuristics, never for correctness (a
        // stale `pushed` read with a fresher `taken` is floored at zero).
        self.pushed
            .load(Ordering::Relaxed)
            .saturating_sub(self.taken.load(Ordering::Relaxed))
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Registry<T> {
    fn drop(&mut self) {
        // Relaxed: `&mut self`: nothing else can touch the registry now.
        // Most are empty when they drop (a region's close took them):
        // no swap then.
        if self.head.load(Ordering::Relaxed).is_null() {
            return;
        }
        drop(self.take());
    }
}

impl<T> Chunk<T> {
    fn new() -> Self {
        Chunk {
            next: UnsafeCell::new(ptr::null_mut()),
            slots: std::array::from_fn(|_| Slot {
                ready: AtomicBool::new(false),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            }),
        }
    }
}

/// Chunks kept per thread for reuse (see [`alloc_chunk`]).
#[cfg(not(loom))]
const CACHED_CHUNKS: usize = 4;

#[cfg(not(loom))]
thread_local! {
    /// Freed chunks kept for the next pushes on this thread, with their
    /// layout (a chunk's layout depends on `T`): a chunk is 64-byte
    /// aligned, which the allocator serves through its slow aligned path
    /// (about 700 instructions with glibc, more than the rest of a spawn);
    /// a region's first spawn takes one and its first sweep or its close
    /// gives it back, usually on the same worker.
    static CHUNK_CACHE: std::cell::RefCell<ChunkCache> =
        const { std::cell::RefCell::new(ChunkCache(Vec::new())) };
}

/// Free chunk memory (never initialised values: only the allocation).
#[cfg(not(loom))]
struct ChunkCache(Vec<(ptr::NonNull<u8>, std::alloc::Layout)>);

#[cfg(not(loom))]
impl Drop for ChunkCache {
    fn drop(&mut self) {
        for (p, layout) in self.0.drain(..) {
            // SAFETY: allocated with `std::alloc::alloc(layout)` by
            // `alloc_chunk` and owned by the cache alone.
            unsafe { std::alloc::dealloc(p.as_ptr(), layout) };
        }
    }
}

/// A new, empty chunk: from this thread's cache when it holds one of the
/// right layout, else from the allocator. Freed with [`free_chunk`].
fn alloc_chunk<T>() -> *mut Chunk<T> {
    #[cfg(not(loom))]
    {
        let layout = std::alloc::Layout::new::<Chunk<T>>();
        // `try_with`: during the thread's teardown the cache is gone.
        let cached = CHUNK_CACHE
            .try_with(|c| {
                let mut c = c.try_borrow_mut().ok()?;
                let i = c.0.iter().position(|&(_, l)| l == layout)?;
                Some(c.0.swap_remove(i).0)
            })
            .ok()
            .flatten();
        let p = match cached {
            Some(p) => p.as_ptr().cast::<Chunk<T>>(),
            None => {
                // SAFETY: the layout is a chunk's, not zero-sized.
                let p = unsafe { std::alloc::alloc(layout) }.cast::<Chunk<T>>();
                if p.is_null() {
                    std::alloc::handle_alloc_error(layout);
                }
                p
            }
        };
        // SAFETY: `p` is valid for writes of a chunk and holds no value.
        unsafe { p.write(Chunk::new()) };
        p
    }
    #[cfg(loom)]
    Box::into_raw(Box::new(Chunk::new()))
}

/// Frees a chunk from [`alloc_chunk`] (into this thread's cache while it
/// has room).
///
/// # Safety
///
/// `chunk` came from [`alloc_chunk`], nobody else uses it any more, and the
/// values of its slots were moved out (or never written).
unsafe fn free_chunk<T>(chunk: *mut Chunk<T>) {
    #[cfg(not(loom))]
    {
        let layout = std::alloc::Layout::new::<Chunk<T>>();
        // The slots' values are `MaybeUninit` (moved out already) and the
        // atomics and cells need no drop: nothing to drop in place.
        // SAFETY: the caller gives the chunk up; non-null (an allocation).
        let p = unsafe { ptr::NonNull::new_unchecked(chunk.cast::<u8>()) };
        let kept = CHUNK_CACHE
            .try_with(|c| {
                let Ok(mut c) = c.try_borrow_mut() else {
                    return false;
                };
                if c.0.len() >= CACHED_CHUNKS {
                    return false;
                }
                c.0.push((p, layout));
                true
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: allocated with this layout by `alloc_chunk`.
            unsafe { std::alloc::dealloc(p.as_ptr(), layout) };
        }
    }
    #[cfg(loom)]
    // SAFETY: from `Box::into_raw` in `alloc_chunk`; see the caller's contract.
    drop(unsafe { Box::from_raw(chunk) });
}

/// Sets `chunk.next` (untagged `chunk`).
fn set_next<T>(chunk: *mut Chunk<T>, next: *mut Chunk<T>) {
    // SAFETY: called only by the chunk's owner: the pusher that made it,
    // before the CAS that publishes it, or its taker after the swap that
    // unpublished it (and that synchronized with that CAS). `chunk` came
    // from `Box::into_raw` and is freed only by its taker, later.
    unsafe { &*chunk }.next.with_mut(|p| {
        // SAFETY: as above; exclusive access to the cell.
        unsafe { *p = next }
    });
}

/// Reads `chunk.next` (the taker's side; untagged `chunk`).
fn get_next<T>(chunk: *mut Chunk<T>) -> *mut Chunk<T> {
    // SAFETY: see `set_next`: the caller owns the chunk.
    unsafe { &*chunk }.next.with_mut(|p| {
        // SAFETY: as above; exclusive access to the cell.
        unsafe { *p }
    })
}

/// The values one [`Registry::take`] returned, in push order; owns them.
/// Dropping it drops the values not yet iterated.
pub(crate) struct Taken<T> {
    /// The current chunk, tagged with its claimed count, its `next` the
    /// following chunk in push order (tagged), or null when done.
    chunk: *mut Chunk<T>,
    /// The next slot to read in `chunk`.
    index: usize,
    _owns: PhantomData<Box<Chunk<T>>>,
}

// SAFETY: `Taken` owns its chunks and values exclusively (the registry
// gave them up in the swap), like a `Vec<T>`.
unsafe impl<T: Send> Send for Taken<T> {}

impl<T> Iterator for Taken<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            let (chunk, n) = untag(self.chunk);
            if chunk.is_null() {
                return None;
            }
            if self.index < n {
                // SAFETY: `chunk` is a chunk this `Taken` owns (from
                // `Box::into_raw`, freed only below, once all its claimed
                // slots were read).
                let slot = unsafe { &(*chunk).slots[self.index] };
                // Acquire: pairs with the pusher's release store: its value
                // write is visible once we see the flag.
                while !slot.ready.load(Ordering::Acquire) {
                    spin_hint();
                }
                self.index += 1;
                return Some(slot.value.with_mut(|v| {
                    // SAFETY: the slot was claimed (index < n) and written
                    // (ready), and is read once, here (index moved on).
                    unsafe { (*v).assume_init_read() }
                }));
            }
            self.chunk = get_next(chunk);
            self.index = 0;
            // SAFETY: every claimed slot was read (the pushers are done
            // with it: the `ready` store was their last access), and the
            // slot values were moved out (`MaybeUninit` drops nothing).
            unsafe { free_chunk(chunk) };
        }
    }
}

impl<T> Drop for Taken<T> {
    fn drop(&mut self) {
        // Drops the values not iterated, and frees their chunks.
        while self.next().is_some() {}
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize as StdUsize;

    #[test]
    fn take_returns_everything_in_push_order() {
        let r = Registry::new();
        assert_eq!(r.take().count(), 0);
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.len(), 5);
        assert_eq!(r.take().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(r.len(), 0);
        assert_eq!(r.take().count(), 0);
        r.push(9);
        assert_eq!(r.take().collect::<Vec<_>>(), vec![9]);
        // Across chunks, and a chunk left partly filled.
        for i in 0..(3 * SLOTS + 5) {
            r.push(i);
        }
        assert_eq!(r.len(), 3 * SLOTS + 5);
        assert!(r.take().eq(0..(3 * SLOTS + 5)));
        assert_eq!(r.len(), 0);
    }

    /// Counts drops, to check nothing leaks or drops twice.
    struct Counted(Arc<StdUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn drops_each_value_once() {
        let drops = Arc::new(StdUsize::new(0));
        let r = Registry::new();
        for _ in 0..40 {
            r.push(Counted(drops.clone()));
        }
        // Most iterated (across a chunk), the rest dropped with the `Taken`.
        let mut taken = r.take();
        for _ in 0..35 {
            drop(taken.next());
        }
        drop(taken);
        assert_eq!(drops.load(std::sync::atomic::Ordering::Relaxed), 40);
        for _ in 0..7 {
            r.push(Counted(drops.clone()));
        }
        drop(r);
        assert_eq!(drops.load(std::sync::atomic::Ordering::Relaxed), 47);
    }

    /// Pushers on several threads and a taker racing them: every value is
    /// taken exactly once, and each pusher's values come out in its order.
    #[test]
    fn concurrent_pushes_and_takes_lose_and_duplicate_nothing() {
        pushes_racing_one_taker(Registry::take);
    }

    /// The same with `take_locked` (one taker, as under the region's lock):
    /// its load-and-store of the taken count loses no push's count (the
    /// length ends at zero: one counter for both, updated so, would not).
    #[test]
    fn concurrent_pushes_and_locked_takes_keep_the_length() {
        pushes_racing_one_taker(Registry::take_locked);
    }

    /// A value: the pusher, and its sequence number.
    type Pushed = (usize, usize);

    fn pushes_racing_one_taker(take: fn(&Registry<Pushed>) -> Taken<Pushed>) {
        const THREADS: usize = 4;
        const PER: usize = 20_000;
        let r = Arc::new(Registry::new());
        let done = Arc::new(StdUsize::new(0));
        let pushers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (r, done) = (r.clone(), done.clone());
                std::thread::spawn(move || {
                    for i in 0..PER {
                        r.push((t, i));
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::Release);
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let mut last = [None::<usize>; THREADS];
        let mut check = |batch: Taken<(usize, usize)>| {
            for (t, i) in batch {
                assert!(seen.insert((t, i)), "taken twice: {t} {i}");
                assert!(last[t].is_none_or(|l| l < i), "out of order");
                last[t] = Some(i);
            }
        };
        while done.load(std::sync::atomic::Ordering::Acquire) < THREADS {
            check(take(&r));
        }
        for p in pushers {
            p.join().unwrap();
        }
        check(take(&r));
        assert_eq!(seen.len(), THREADS * PER);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn is_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<Registry<Arc<()>>>();
    }
}
