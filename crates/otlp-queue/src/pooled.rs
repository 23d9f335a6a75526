//! A queue whose capacity is a **total** shared by every producer: a pool
//! of fixed-size chunks of slots, which producers claim one chunk at a time
//! and fill privately.
//!
//! [`bounded_total`]`(total)` holds at most about `total` items whatever
//! the number of producers (see *Bounds* for the exact figure), where
//! [`crate::bounded`]`(capacity)` gives every producer a lane of its own
//! `capacity` slots. The memory is the pool (`total` slots, and a small
//! header per chunk of them: see *Bounds*) plus one chunk and a lane header
//! per live producer, so a thousand producers cost a thousand small
//! chunks, not a thousand rings.
//!
//! ```
//! use std::thread;
//!
//! let (tx, mut rx) = otlp_queue::pooled::bounded_total::<u64>(256);
//! let workers: Vec<_> = (0..4)
//!     .map(|t| {
//!         let tx = tx.clone(); // one lane per thread, memory from the pool
//!         thread::spawn(move || {
//!             for i in 0..1000 {
//!                 let mut v = t << 32 | i;
//!                 while let Err(e) = tx.try_push(v) {
//!                     v = e.into_inner();
//!                     thread::yield_now();
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! drop(tx);
//! let mut got = Vec::new();
//! while !rx.is_closed() {
//!     rx.pop_batch(&mut got, 256);
//! }
//! for w in workers { w.join().unwrap(); }
//! assert_eq!(got.len(), 4000);
//! ```
//!
//! # How it works
//!
//! Every producer still has a lane (a single-writer, single-reader list of
//! chunks), so items of one producer come out in order and a push touches
//! only its own lane. What changes is where the slots come from:
//!
//! * The **pool** is `total` slots cut into chunks of `chunk` slots (the
//!   last chunk may be shorter), allocated once when the queue is made. Its
//!   free chunks sit on a lock-free stack (a Treiber stack whose top word
//!   carries a tag against ABA).
//! * Each lane also owns one **home chunk**, allocated with the lane. A
//!   lane starts writing into it, and takes it back before asking the pool
//!   whenever the consumer has emptied it.
//! * A push writes the next slot of the lane's current chunk and publishes
//!   the lane's `tail` (a plain Release store): no read-modify-write, no
//!   line shared with other producers. When the chunk is full, the producer
//!   starts it over if the consumer has taken every item of the lane (the
//!   chunk then works as a small ring); else it takes its home chunk (if
//!   the consumer gave it back) or pops a chunk from the pool (one
//!   compare-and-swap per chunk), links it after the full one, and carries
//!   on. If none is to be had, the queue is full for this producer: the
//!   value is handed back (`Full`). Starting over matters: without it, a
//!   producer whose only chunk was read out could not reuse it while idle
//!   producers held the rest of the pool (the first loom model found that).
//! * The consumer reads each lane's run `head..tail` in one sweep, walking
//!   its chunk list; a chunk it has read to the end and that the producer
//!   has moved on from (its `next` link is set) goes back at once: a pool
//!   chunk to the pool, the home chunk to its lane.
//! * A producer that goes away leaves its items in its lane, for the
//!   consumer; once the lane is drained the consumer returns its last chunk
//!   and drops the lane (with its home chunk). Nothing is lost, and an
//!   exited thread's memory comes back at the consumer's next call.
//! * Once the consumer is gone nobody retires lanes, so a producer
//!   dropped after it takes its own lane out (under the registry lock)
//!   and frees it, items and all; the consumer's drop frees the lanes of
//!   producers already gone. A producer made after that
//!   ([`Producer::clone`], [`Producer::try_clone`]) gets no lane: it
//!   allocates nothing and every push finds the queue closed. So threads
//!   that come and go after the consumer (an exporter shut down but still
//!   referenced) leave nothing behind.
//!
//! # Bounds
//!
//! * Items held: at most `total + chunk × lanes` (the pool, plus each
//!   lane's home chunk), where the lanes are those of live producers and of
//!   gone producers whose items the consumer has not all taken yet.
//! * Memory: the pool, plus per lane one chunk of `chunk` slots and a
//!   header of a few cache lines. The pool is `total` slots of
//!   `size_of::<T>()` bytes, in `total / chunk` (rounded up) allocations of
//!   one chunk each (each with the allocator's own overhead), plus one
//!   array of their headers, 40 bytes a chunk on a 64-bit target. For
//!   small items the headers count: one-byte items in chunks of 64 cost
//!   about 1.6 bytes each. A zero-sized `T` allocates no slots, but still
//!   one header per 64 items (640 MiB at [`MAX_TOTAL`]): size `total` for
//!   the items the queue is to hold, not as a mere "no limit".
//!   While the consumer takes nothing (a stalled consumer), producers that
//!   come and go each leave a lane behind: memory then grows by a chunk
//!   and a header per such producer until the consumer resumes, or until
//!   it calls [`Consumer::pop_exited_each`], which takes only from the
//!   lanes of producers that are gone and frees them. The default chunk
//!   is the largest that fits in
//!   [`CHUNK_BYTES`] (8 KiB), at most [`MAX_CHUNK`] slots: a 256-byte item
//!   gets 32-slot chunks, so a producer costs about 8.5 KiB beyond the pool.
//!
//! # Adopted items
//!
//! [`Consumer::adopt_exited_each`] takes what gone producers left, as
//! [`Consumer::pop_exited_each`] does, for a consumer that keeps those
//! items elsewhere for a while (otlp-exporter's worker, while it is inside
//! a long export or a collector is down) but wants the gone lanes freed
//! now. The items still count against `total` until the consumer calls
//! [`Consumer::release`]: the pool chunks they were in are held off the
//! free stack rather than freed, and, for items that were in the lanes'
//! home chunks, as many free chunks are taken off the stack and held.
//! Items whose chunk is still their lane's current one (an adoption that
//! stopped at its `max` inside a chunk, or a lane not yet retired) are
//! covered by that chunk itself until the lane gives it back (then it is
//! held for them, or for a home chunk a free one), so no slot is counted
//! twice. So producers find the queue full where they would have found it
//! full had the items stayed in their lanes (back-pressure at the push,
//! not a second queue beside the first), and items held = the lanes' + the
//! adopted still stay within the bound above. Only when the pool has no
//! free chunk left to hold are adopted items *uncovered*
//! ([`Consumer::uncovered`]: at most the home chunks' worth of the lanes
//! adopted meanwhile); every chunk given back then is held first, by the
//! consumer and by a refused in-place push alike
//! ([`Producer::try_push_in_place_or`]). All of it runs on the consumer's
//! side, under a lock the push path does not take: a push pays nothing for
//! it (the one exception: a push refused at a chunk boundary while adopted
//! items are uncovered takes the lock to hold the chunk it gives back).
//!
//! If the sink of [`Consumer::adopt_exited_each`] panics (or an item's
//! `Drop` inside it), the items it was handed, the one it panicked on
//! included, are adopted and must be released; the rest stay in their
//! lane for a later call. The caller counts them in the sink (before
//! anything that may panic), since the call returns no count then.
//!
//! # Why chunks, and the alternatives considered
//!
//! * *One shared counter of free slots* (claim a slot per push with a
//!   `fetch_sub`): a read-modify-write on one line per item, which is the
//!   contention this crate exists to avoid.
//! * *Credits claimed in batches, items still in per-producer rings*: the
//!   count is bounded, but every ring must be able to hold the whole total
//!   (one busy thread may use all of it), so memory is still `total ×
//!   producers`.
//! * *Rings that grow and shrink*: a reallocation on the push path, and a
//!   ring swap the consumer must be fenced against.
//! * *Chunks from a pool* (chosen): the shared operation is paid once per
//!   chunk; the memory is the pool; a producer holds at most one partly
//!   used chunk. The price: a chunk that an idle producer has started stays
//!   with it (nobody can take it back without a fence on every push), which
//!   is why each lane has a home chunk of its own: a producer can always
//!   queue at least `chunk` items, and idle producers never starve the
//!   others of the pool.
//!
//! Eviction ("drop oldest") and [`crate::Producer::take_back`] are not
//! offered here: evicting one item of a chunked lane frees no slot where the
//! next item goes, and an exited producer's items need no taking back (they
//! are already in shared memory that the consumer returns).
//!
//! # Progress
//!
//! `try_push` is lock-free: wait-free while the current chunk has room; a
//! chunk claim retries its compare-and-swap only when another producer
//! claimed a chunk (or the consumer returned one) at the same moment. The
//! consumer never waits for a producer. Cloning a producer (a lane and its
//! home chunk are allocated), dropping one, and the consumer noticing new
//! or finished lanes take the registry lock; none is on the push path.
//!
//! # Memory orderings
//!
//! Each atomic operation says why its ordering is enough. In short: a
//! lane's `tail` is published with Release after the slot (and, at a chunk
//! boundary, the link to the new chunk) is written, and read with Acquire
//! by the consumer; the consumer's return of a chunk (a Release
//! compare-and-swap on the pool's top, or a Release store of the lane's
//! `home_free`) happens after its reads of that chunk, and a producer's
//! claim (Acquire) happens before its writes. The protocol is
//! model-checked with loom (`tests/loom.rs`, the `pooled_*` models).

use core::cell::Cell;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::QueueCounters;
use crate::error::{CapacityError, PushError, PushTimeoutError, TryPopError};
use crate::lane::{bump, max_capacity_for};
use crate::loom::{
    self, Arc, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering,
    UnsafeCell, fence,
};
use crate::prefetch;
use crate::unwind::{Panic, drain_caught, keep_first, resume};

/// The most bytes of slots a chunk holds by default (a chunk has at least
/// one slot whatever the item size).
pub const CHUNK_BYTES: usize = 8 * 1024;
/// The most slots a chunk holds.
pub const MAX_CHUNK: usize = 64;
/// The largest `total` (the pool's chunks are numbered with 32 bits).
pub const MAX_TOTAL: usize = 1 << 30;

/// The default chunk length for items of type `T`.
pub fn chunk_len<T>() -> usize {
    (CHUNK_BYTES / core::mem::size_of::<T>().max(1)).clamp(1, MAX_CHUNK)
}

/// Marks the home chunk of a lane (it is never in the pool), and the end
/// of the pool's free stack.
const NIL: u32 = u32::MAX;

type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// A run of slots: in the pool, or in a lane's list.
struct Chunk<T> {
    slots: Box<[Slot<T>]>,
    /// The next chunk of the lane's list, or null. Written by the lane's
    /// producer only (null when it takes the chunk, then the link once).
    next: AtomicPtr<Chunk<T>>,
    /// The lane position of slot 0. Written by the lane's producer when it
    /// takes the chunk, and again when it starts the chunk over (see
    /// `Producer::next_chunk`); published by its Release store of `tail`.
    base: AtomicU64,
    /// The chunk below this one on the pool's free stack (an index).
    free_next: AtomicU32,
    /// This chunk's index in the pool, or `NIL` for a home chunk.
    index: u32,
}

impl<T> Chunk<T> {
    fn try_new(len: usize, index: u32) -> Result<Self, CapacityError> {
        let bytes = len.saturating_mul(core::mem::size_of::<Slot<T>>());
        let mut slots = Vec::new();
        slots
            .try_reserve_exact(len)
            .map_err(|_| CapacityError::OutOfMemory {
                requested: len,
                bytes,
            })?;
        #[cfg(not(loom))]
        // SAFETY: `try_reserve_exact` made room for `len` elements, and an
        // `UnsafeCell<MaybeUninit<T>>` (transparent over `MaybeUninit`) is
        // valid uninitialised.
        unsafe {
            slots.set_len(len)
        };
        #[cfg(loom)]
        slots.extend((0..len).map(|_| UnsafeCell::new(MaybeUninit::uninit())));
        Ok(Chunk {
            slots: slots.into_boxed_slice(),
            next: AtomicPtr::new(ptr::null_mut()),
            base: AtomicU64::new(0),
            free_next: AtomicU32::new(NIL),
            index,
        })
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }
}

/// The shared chunks and their free stack.
struct Pool<T> {
    chunks: Box<[Chunk<T>]>,
    /// The free stack's top: `tag << 32 | index` (`NIL`: empty). The tag
    /// grows with every change, so a compare-and-swap that read an old top
    /// fails even if the same chunk is on top again (ABA).
    top: CachePadded<AtomicU64>,
    /// Chunks not on the free stack (statistic and test aid).
    in_use: AtomicUsize,
    /// Chunks held back from the free stack for items the consumer took
    /// out of gone producers' lanes with [`Consumer::adopt_exited_each`]
    /// and still holds elsewhere (see *Adopted items* in the module docs).
    /// Touched by the consumer (and a lane's drop); on the push side only
    /// by a push refused at a chunk boundary while `short` is set
    /// (`Pool::put_racing`), never by a push that succeeds.
    held: Mutex<Held>,
    /// True while adopted items are owed more slots than cover them
    /// ([`Held::short`]): a chunk given back is then held instead of
    /// freed. Written under `held`'s lock (a hint read without it; see
    /// `put` and `put_racing`).
    short: AtomicBool,
}

/// Adopted items, and the slots that cover them.
///
/// An adopted item is covered by a slot that no producer can use while it
/// is owed: either a slot of a held chunk (`slots`), or its own slot while
/// the chunk it was in is still the current chunk of its (gone) lane
/// (`in_lanes`): that chunk is off the free stack anyway, and is given
/// back only when the consumer moves past it or retires the lane, at which
/// point its adopted items leave `in_lanes` (and the chunk is held for
/// them if need be, see `Pool::unpark`). Counting such an item against a
/// free chunk as well would hold its slot twice.
#[derive(Default)]
struct Held {
    /// Items adopted and not yet released ([`Consumer::release`]).
    owed: usize,
    /// Slots of the chunks in `chunks`.
    slots: usize,
    /// Adopted items still in their lane's current chunk: the sum of
    /// every lane's `Cursor::adopted`.
    in_lanes: usize,
    /// Pool chunks (indices) off the free stack, empty, held for `owed`.
    chunks: Vec<u32>,
}

impl Held {
    /// True while the slots that cover adopted items are fewer than the
    /// items owed.
    fn short(&self) -> bool {
        self.slots.saturating_add(self.in_lanes) < self.owed
    }

    /// Holds `chunk` (off the free stack) for adopted items.
    fn hold<T>(&mut self, chunk: &Chunk<T>) {
        debug_assert_ne!(chunk.index, NIL);
        self.chunks.push(chunk.index);
        self.slots += chunk.slots.len();
    }
}

// SAFETY: the pool hands chunks out (and takes them back) through its free
// stack; each chunk's slots are then used by one lane's protocol, which
// moves `T` values between threads (hence `T: Send`) and never shares `&T`.
unsafe impl<T: Send> Send for Pool<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Pool<T> {}

fn pack(tag: u64, index: u32) -> u64 {
    (tag << 32) | u64::from(index)
}

impl<T> Pool<T> {
    fn try_new(total: usize, chunk: usize) -> Result<Self, CapacityError> {
        let n = total.div_ceil(chunk);
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(n)
            .map_err(|_| CapacityError::OutOfMemory {
                requested: total,
                bytes: total.saturating_mul(core::mem::size_of::<Slot<T>>()),
            })?;
        for i in 0..n {
            let len = chunk.min(total - i * chunk);
            // Each chunk links to the one after it: all start free.
            let c = Chunk::try_new(len, i as u32)?;
            let below = if i + 1 < n { (i + 1) as u32 } else { NIL };
            c.free_next.store(below, Ordering::Relaxed);
            chunks.push(c);
        }
        Ok(Pool {
            chunks: chunks.into_boxed_slice(),
            top: CachePadded::new(AtomicU64::new(pack(0, if n > 0 { 0 } else { NIL }))),
            in_use: AtomicUsize::new(0),
            held: Mutex::new(Held::default()),
            short: AtomicBool::new(false),
        })
    }

    /// Takes a free chunk (one successful compare-and-swap), or `None`;
    /// with it, how many chunks are now in use.
    fn pop(&self) -> Option<(&Chunk<T>, usize)> {
        // Acquire: pairs with the Release compare-and-swap in `push`, so the
        // pusher's reads of the chunk (and its `free_next`) happen before
        // whatever we do with it.
        let mut top = self.top.load(Ordering::Acquire);
        loop {
            let index = top as u32;
            if index == NIL {
                return None;
            }
            let chunk = &self.chunks[index as usize];
            // Relaxed: written before the Release that published `top`,
            // which we loaded with Acquire. If the chunk was taken and put
            // back meanwhile this may be stale, but then the tag differs
            // and the compare-and-swap below fails.
            let below = chunk.free_next.load(Ordering::Relaxed);
            // Acquire on both outcomes: success, as above; failure reloads a
            // top whose chunk's `free_next` we read next.
            match self.top.compare_exchange_weak(
                top,
                pack((top >> 32).wrapping_add(1) & 0xFFFF_FFFF, below),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // Relaxed: a statistic (and a hint, see
                    // `Producer::pool_used_at_claim`).
                    let used = self.in_use.fetch_add(1, Ordering::Relaxed) + 1;
                    return Some((chunk, used));
                }
                Err(t) => top = t,
            }
        }
    }

    /// Puts a chunk back on the free stack.
    fn push(&self, chunk: &Chunk<T>) {
        debug_assert_ne!(chunk.index, NIL);
        // Relaxed: the compare-and-swap below checks it.
        let mut top = self.top.load(Ordering::Relaxed);
        loop {
            // Relaxed: published by the Release compare-and-swap below.
            chunk.free_next.store(top as u32, Ordering::Relaxed);
            // Release: our reads of the chunk's slots, and the store of
            // `free_next`, happen before a popper's Acquire sees this top.
            match self.top.compare_exchange_weak(
                top,
                pack((top >> 32).wrapping_add(1) & 0xFFFF_FFFF, chunk.index),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // Relaxed: a statistic.
                    self.in_use.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                Err(t) => top = t,
            }
        }
    }

    /// Gives back a pool chunk the consumer has read out: held (off the
    /// free stack, still counted in use) while adopted items are short of
    /// cover ([`Held::short`]), else pushed on the free stack.
    ///
    /// For the consumer's thread (and a lane's drop): another thread that
    /// gives a chunk back while the consumer runs uses `put_racing`.
    fn put(&self, chunk: &Chunk<T>) {
        // A stale `false` on another thread (a lane dropped after the
        // consumer) only frees a chunk that the gone consumer no longer
        // needed held.
        if !self.hold_if_short(chunk) {
            self.push(chunk);
        }
    }

    /// Holds `chunk` (off the free stack) if adopted items are short of
    /// cover; true if it did.
    fn hold_if_short(&self, chunk: &Chunk<T>) -> bool {
        // Relaxed: written (under `held`'s lock) by the consumer, so the
        // consumer reads its own last store; `true` is checked again under
        // the lock, which orders the rest. What a stale `false` costs is
        // the callers' to say.
        if self.short.load(Ordering::Relaxed) {
            let mut held = loom::lock(&self.held);
            if held.short() {
                held.hold(chunk);
                self.short.store(held.short(), Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// `put` from a thread other than the consumer's, concurrently with
    /// it: a producer giving back the chunk a refused push had just taken
    /// (`Producer::unclaim`).
    ///
    /// `put` alone would race with `cover`: the consumer may find the free
    /// stack empty (this chunk was out) and set `short` just after our
    /// load of `short` saw `false`, and we would then free the chunk while
    /// adopted items are short of cover. So, after pushing it, we look at
    /// `short` again behind a SeqCst fence, which pairs with the SeqCst
    /// fence `cover` puts between its store of `short = true` and one
    /// more pop (store-buffering: of the two fenced loads at least one
    /// sees the other side's write). Either `cover`'s last pop finds the
    /// chunk and holds it, or we see `short` and cover under the lock
    /// ourselves. (The lock is taken only while `short`: the push path
    /// takes it only for a refusal at a chunk boundary while adopted items
    /// are short of cover.)
    #[cold]
    fn put_racing(&self, chunk: &Chunk<T>) {
        // A stale `false` here is caught by the fenced load below.
        if self.hold_if_short(chunk) {
            return;
        }
        self.push(chunk);
        // SeqCst: see above; pairs with the fence in `cover`.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fences (see above).
        if self.short.load(Ordering::Relaxed) {
            self.cover(&mut loom::lock(&self.held));
        }
    }

    /// Adopted items that were covered by their own slots (`in_lanes`, in
    /// a lane's current chunk) leave that chunk: `chunk`, a pool chunk now
    /// given back, is held for them if they are still short of cover, and
    /// free chunks are held for the rest (the home chunk, `None`, is not
    /// the pool's to hold).
    #[cold]
    fn unpark(&self, chunk: Option<&Chunk<T>>, adopted: usize) {
        let mut held = loom::lock(&self.held);
        held.in_lanes -= adopted;
        if let Some(chunk) = chunk {
            if held.short() {
                held.hold(chunk);
            } else {
                self.push(chunk);
            }
        }
        self.cover(&mut held);
    }

    /// While adopted items are short of cover: takes free chunks off the
    /// stack (as a producer's claim does) and holds them. Every call that
    /// leaves `short` set ends with a fenced last look at the stack (see
    /// `put_racing`).
    fn cover(&self, held: &mut Held) {
        loop {
            while held.short() {
                match self.pop() {
                    Some((chunk, _)) => held.hold(chunk),
                    None => break,
                }
            }
            let short = held.short();
            // Relaxed: read by the consumer itself (program order), or by
            // `put_racing` behind the fence below.
            self.short.store(short, Ordering::Relaxed);
            if !short {
                return;
            }
            // SeqCst: pairs with the fence in `put_racing`: a chunk pushed
            // by a producer that did not see `short` is found by this pop.
            fence(Ordering::SeqCst);
            match self.pop() {
                Some((chunk, _)) => held.hold(chunk),
                None => return,
            }
        }
    }
}

/// The consumer's place in a lane's chunk list.
struct Cursor<T> {
    /// The chunk holding position `base`.., or null once the lane is
    /// retired (its chunks returned).
    chunk: *const Chunk<T>,
    /// The position of the chunk's first slot.
    base: u64,
    /// Items of this chunk taken by [`Consumer::adopt_exited_each`]:
    /// their own slots cover them (`Held::in_lanes`) until the chunk is
    /// given back.
    adopted: usize,
}

/// What the producer writes: `tail` and its counter, on its own line.
#[derive(Default)]
struct ProducerSide {
    /// Items ever pushed into the lane; the next position to write.
    tail: AtomicU64,
    rejected_full: AtomicU64,
}

/// One producer's list of chunks.
struct Lane<T> {
    producer: CachePadded<ProducerSide>,
    /// Items the consumer has taken from this lane (the next position it
    /// reads). Written only by the consumer, once per batch.
    head: CachePadded<AtomicU64>,
    /// Consumer only (and the lane's drop, which has `&mut`).
    cursor: UnsafeCell<Cursor<T>>,
    /// True while the home chunk is back from the consumer and not yet
    /// taken again by the producer.
    home_free: AtomicBool,
    /// Set once, when the producer handle is dropped.
    producer_gone: AtomicBool,
    home: Chunk<T>,
    pool: Arc<Pool<T>>,
}

// SAFETY: a lane moves values of `T` from the producer's thread to the
// consumer's and never hands out `&T`; the raw chunk pointers point into
// the pool (kept alive by `pool`) or at `home`, and each slot is accessed
// by one side at a time under the protocol above.
unsafe impl<T: Send> Send for Lane<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Lane<T> {}

impl<T> Lane<T> {
    /// A lane with `home` as its home chunk, the consumer's cursor not yet
    /// set (null: nothing to give back).
    fn new(home: Chunk<T>, pool: Arc<Pool<T>>) -> Self {
        Lane {
            producer: CachePadded::new(ProducerSide::default()),
            head: CachePadded::new(AtomicU64::new(0)),
            cursor: UnsafeCell::new(Cursor {
                chunk: ptr::null(),
                base: 0,
                adopted: 0,
            }),
            home_free: AtomicBool::new(false),
            producer_gone: AtomicBool::new(false),
            home,
            pool,
        }
    }

    /// Gives a chunk the consumer has read to the end back: to the pool,
    /// or (the home chunk) to the lane's producer. `adopted` (the cursor's
    /// count for it) adopted items were covered by its slots until now.
    fn give_back(&self, chunk: &Chunk<T>, adopted: usize) {
        if chunk.index == NIL {
            // Release: the consumer's reads of the home chunk happen before
            // the producer's Acquire load lets it write there again.
            self.home_free.store(true, Ordering::Release);
            if adopted != 0 {
                self.pool.unpark(None, adopted);
            }
        } else if adopted != 0 {
            self.pool.unpark(Some(chunk), adopted);
        } else {
            self.pool.put(chunk);
        }
    }

    /// Takes up to `max` items, oldest first, handing each to `sink`.
    ///
    /// # Safety
    ///
    /// Only the consumer may call this (or the lane's drop).
    unsafe fn pop_with(&self, max: usize, mut sink: impl FnMut(T)) -> usize {
        // SAFETY: the caller is the consumer; each pointer is an item's,
        // read out (moved) exactly once.
        unsafe { self.pop_raw(max, |p| sink(p.read())) }
    }

    /// Drops every item left in the lane, oldest first, each exactly once:
    /// a `Drop` that panics is caught and the rest are still dropped (found
    /// by review: the rest were never dropped, and the teardown around it
    /// was cut short). Returns the first panic's payload.
    ///
    /// # Safety
    ///
    /// Only the consumer may call this (or the lane's drop).
    unsafe fn drop_items(&self) -> Option<Panic> {
        // An item whose drop panics counts as taken (`pop_raw`), so the
        // next round goes on after it.
        drain_caught(|| {
            // SAFETY: the caller's contract.
            unsafe { self.pop_with(usize::MAX, drop) };
        })
    }

    /// Takes up to `max` items, oldest first, lending each to `sink` where
    /// it lies and then dropping it there (also if `sink` panics).
    ///
    /// # Safety
    ///
    /// Only the consumer may call this.
    unsafe fn pop_with_mut(&self, max: usize, mut sink: impl FnMut(&mut T)) -> usize {
        /// Drops the item where it lies, on the way out of `sink` as on
        /// its unwind (where a panic of the item's `Drop` is caught: a
        /// second panic during an unwind would abort the process).
        struct DropInPlace<T>(*mut T);
        impl<T> Drop for DropInPlace<T> {
            fn drop(&mut self) {
                let item = self.0;
                // SAFETY: the item is initialized and not read out, and
                // this is its only drop (see `pop_raw`); a drop that
                // panics has still dropped it (its fields are dropped
                // during its unwind), so it is not dropped again.
                let drop_it = move || unsafe { ptr::drop_in_place(item) };
                if std::thread::panicking() {
                    use std::panic::{AssertUnwindSafe, catch_unwind};
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(drop_it)) {
                        crate::unwind::forget_payload(payload);
                    }
                } else {
                    drop_it();
                }
            }
        }
        // SAFETY: the caller is the consumer; each pointer is an item's,
        // dropped exactly once by the guard, and `sink`'s borrow ends
        // before it.
        unsafe {
            self.pop_raw(max, |p| {
                let item = DropInPlace(p);
                sink(&mut *item.0);
            })
        }
    }

    /// Takes up to `max` items, oldest first, handing `take` a pointer to
    /// each, which `take` must consume (read it out or drop it in place)
    /// exactly once. If `take` panics, the items before it and the one it
    /// was given count as taken (`head` moves past them), so that no item
    /// is consumed twice.
    ///
    /// # Safety
    ///
    /// Only the consumer may call this (or the lane's drop); `take`
    /// consumes the item at its pointer (even when it unwinds).
    unsafe fn pop_raw(&self, max: usize, mut take: impl FnMut(*mut T)) -> usize {
        /// Publishes the consumer's progress, on return and on unwind.
        struct Progress<'a> {
            head: &'a AtomicU64,
            at: u64,
        }
        impl Drop for Progress<'_> {
            fn drop(&mut self) {
                // Release: whoever reads `head` with Acquire (a producer's
                // `next_chunk` and `lane_len`, a flush's `passed`) sees
                // these items gone.
                self.head.store(self.at, Ordering::Release);
            }
        }
        // Relaxed: only the consumer writes `head`.
        let head = self.head.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's Release store of `tail`: the
        // items below it, and the chunk links made before them, are visible.
        let tail = self.producer.tail.load(Ordering::Acquire);
        let n = (tail - head).min(max as u64);
        if n == 0 {
            return 0;
        }
        // SAFETY: the consumer is the only user of the cursor (caller's
        // contract), and no reference to it outlives this call.
        let cursor = self.cursor.with_mut(|p| unsafe { &mut *p });
        let mut progress = Progress {
            head: &self.head,
            at: head,
        };
        for pos in head..head + n {
            // SAFETY: the cursor's chunk is live: it is a pool chunk or the
            // home chunk, not yet given back (given back only below).
            let mut chunk = unsafe { &*cursor.chunk };
            if pos == cursor.base + chunk.len() {
                // The end of the chunk: the producer either started this
                // chunk over at `pos` (its `base` is now `pos`) or linked
                // the next one. Relaxed loads are enough for both: the
                // producer stored them before its Release store of a `tail`
                // above `pos`, which we loaded with Acquire; and neither
                // changes again before we are past `pos` (starting over
                // needs `head == tail`, and a link is made once).
                if chunk.base.load(Ordering::Relaxed) != pos {
                    let next = chunk.next.load(Ordering::Relaxed);
                    debug_assert!(!next.is_null());
                    cursor.chunk = next;
                    // Read to the end, and the producer has moved on:
                    // back it goes.
                    self.give_back(chunk, core::mem::take(&mut cursor.adopted));
                    // SAFETY: as above: the link points at a live chunk.
                    chunk = unsafe { &*next };
                }
                cursor.base = pos;
            }
            let slot = &chunk.slots[(pos - cursor.base) as usize];
            // Counted as taken before `take` runs: `take` consumes the
            // item even if it unwinds.
            progress.at = pos + 1;
            // Position `pos` is below the `tail` we loaded with Acquire, so
            // its slot holds an item; positions are taken once (head moves
            // past it). `MaybeUninit<T>` has the layout of `T`.
            slot.with_mut(|p| take(p.cast::<T>()));
        }
        drop(progress);
        n as usize
    }

    /// True once the producer is gone and every item has been taken.
    fn is_finished(&self) -> bool {
        // Acquire: pairs with the Release store in `Producer::drop`, so
        // `tail` below is the producer's last.
        self.producer_gone.load(Ordering::Acquire) && self.is_empty()
    }

    fn is_empty(&self) -> bool {
        // Acquire `tail`: as in `pop_with`; Relaxed `head`: some recent
        // value (exact for the consumer, which wrote it).
        self.producer.tail.load(Ordering::Acquire) == self.head.load(Ordering::Relaxed)
    }

    /// Returns the last chunk of a finished lane to the pool.
    ///
    /// # Safety
    ///
    /// Consumer only, on a finished lane (`is_finished`), once.
    unsafe fn retire(&self) {
        // SAFETY: the consumer is the only user of the cursor.
        let cursor = self.cursor.with_mut(|p| unsafe { &mut *p });
        if cursor.chunk.is_null() {
            return;
        }
        // SAFETY: live until given back, which is now.
        let chunk = unsafe { &*cursor.chunk };
        cursor.chunk = ptr::null();
        // The producer is gone: nobody writes this chunk again (for the
        // home chunk, setting `home_free` is then harmless).
        self.give_back(chunk, core::mem::take(&mut cursor.adopted));
    }

    fn totals(&self) -> (u64, u64, u64) {
        // Relaxed: statistics, each with a single writer.
        (
            self.producer.tail.load(Ordering::Relaxed),
            self.head.load(Ordering::Relaxed),
            self.producer.rejected_full.load(Ordering::Relaxed),
        )
    }
}

impl<T> Drop for Lane<T> {
    fn drop(&mut self) {
        // `&mut self`: nobody else touches the lane. Items still inside are
        // dropped here, exactly once (a panicking `Drop` does not keep the
        // rest from theirs); then every chunk of the list goes back to the
        // pool, and a panic is passed on.
        // SAFETY: exclusive access.
        let panic = unsafe { self.drop_items() };
        // SAFETY: as above; every item is taken.
        unsafe { self.retire() };
        resume(panic);
    }
}

/// A list of lanes.
type Lanes<T> = Vec<Arc<Lane<T>>>;

/// Everything the queue's handles share.
struct Inner<T> {
    consumer_alive: CachePadded<AtomicBool>,
    producers: AtomicUsize,
    /// Bumped (under the registry lock) when a lane is added or retired.
    version: AtomicUsize,
    registry: Mutex<Registry<T>>,
    pool: Arc<Pool<T>>,
    /// The lane every producer made after the consumer's drop shares: it
    /// has no slots (a home chunk of length 0, which allocates nothing)
    /// and is never in the registry; its producers' pushes all find the
    /// queue closed.
    dead: Arc<Lane<T>>,
    total: usize,
    chunk: usize,
}

struct Registry<T> {
    lanes: Vec<Arc<Lane<T>>>,
    /// (pushed, popped, rejected_full) of retired lanes.
    retired: (u64, u64, u64),
    /// Set (once) by the consumer's drop. From then on nobody retires
    /// lanes: a producer's drop takes its own lane out of the list (so it
    /// is freed with the handle), and a new producer gets no lane of its
    /// own (`Inner::dead`).
    consumer_gone: bool,
}

impl<T> Registry<T> {
    /// Takes `lane` out of the list (if there), counting its totals as
    /// retired; returns it, to be dropped after the lock is released (its
    /// drop may drop items).
    fn remove(&mut self, lane: &Arc<Lane<T>>) -> Option<Arc<Lane<T>>> {
        let i = self.lanes.iter().position(|l| Arc::ptr_eq(l, lane))?;
        let lane = self.lanes.swap_remove(i);
        self.count_retired(&lane);
        Some(lane)
    }

    fn count_retired(&mut self, lane: &Lane<T>) {
        let (p, h, f) = lane.totals();
        self.retired.0 = self.retired.0.saturating_add(p);
        self.retired.1 = self.retired.1.saturating_add(h);
        self.retired.2 = self.retired.2.saturating_add(f);
    }
}

impl<T> Inner<T> {
    fn counters(&self) -> QueueCounters {
        let registry = loom::lock(&self.registry);
        let (mut pushed, mut popped, mut full) = registry.retired;
        for lane in &registry.lanes {
            let (p, h, f) = lane.totals();
            pushed = pushed.saturating_add(p);
            popped = popped.saturating_add(h);
            full = full.saturating_add(f);
        }
        QueueCounters {
            pushed,
            popped,
            rejected_full: full,
            evicted: 0,
            taken_back: 0,
        }
    }
}

/// Creates a queue that holds about `total` items across all its producers
/// (see the module docs for the exact bound), with the default chunk
/// length for `T` ([`chunk_len`]).
///
/// # Panics
///
/// If `total` is 0 or above [`MAX_TOTAL`], or the pool cannot be allocated
/// ([`try_bounded_total`] returns the error instead).
pub fn bounded_total<T>(total: usize) -> (Producer<T>, Consumer<T>) {
    match try_bounded_total(total) {
        Ok(pair) => pair,
        Err(e) => panic!("otlp_queue::pooled::bounded_total({total}): {e}"),
    }
}

/// Like [`bounded_total`], but returns an error instead of panicking.
///
/// ```
/// use otlp_queue::CapacityError;
/// use otlp_queue::pooled::try_bounded_total;
/// assert_eq!(try_bounded_total::<u8>(0).unwrap_err(), CapacityError::Zero);
/// assert!(try_bounded_total::<u8>(1).is_ok());
/// ```
pub fn try_bounded_total<T>(total: usize) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    try_with_chunk(total, chunk_len::<T>())
}

/// Like [`try_bounded_total`] with chunks of `chunk` slots (clamped to
/// `1..=`[`MAX_CHUNK`]): smaller chunks mean fewer items held per idle
/// producer and more chunk claims per item.
///
/// ```
/// let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(4, 2).unwrap();
/// for i in 0..4 { tx.try_push(i).unwrap(); } // the home chunk, then the pool
/// assert_eq!(rx.pop(), Some(0));
/// ```
pub fn try_with_chunk<T>(
    total: usize,
    chunk: usize,
) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    if total == 0 {
        return Err(CapacityError::Zero);
    }
    let max = max_capacity_for(core::mem::size_of::<T>()).min(MAX_TOTAL);
    if total > max {
        return Err(CapacityError::TooLarge {
            requested: total,
            max,
        });
    }
    let chunk = chunk.clamp(1, MAX_CHUNK);
    let pool = Arc::new(Pool::try_new(total, chunk)?);
    let inner = Arc::new(Inner {
        consumer_alive: CachePadded::new(AtomicBool::new(true)),
        producers: AtomicUsize::new(0),
        version: AtomicUsize::new(0),
        registry: Mutex::new(Registry {
            lanes: Vec::new(),
            retired: (0, 0, 0),
            consumer_gone: false,
        }),
        dead: Arc::new(Lane::new(Chunk::try_new(0, NIL)?, pool.clone())),
        pool,
        total,
        chunk,
    });
    let producer = Producer::register(&inner)?;
    let consumer = Consumer {
        inner,
        lanes: Vec::new(),
        seen_version: usize::MAX,
        cursor: 0,
        popped: 0,
    };
    Ok((producer, consumer))
}

/// The sending side: one lane per handle. Clone it (or
/// [`try_clone`](Self::try_clone) it) once per thread.
///
/// `Send` but not `Sync`: a handle is its lane's single writer.
pub struct Producer<T> {
    lane: Arc<Lane<T>>,
    inner: Arc<Inner<T>>,
    /// The chunk being filled.
    chunk: Cell<*const Chunk<T>>,
    /// The position after the current chunk's last slot: room while
    /// `tail < end`.
    end: Cell<u64>,
    /// The pool's used slots right after this producer's last claim of a
    /// pool chunk (0: no claim since [`Producer::pool_used_at_claim`]).
    used_at_claim: Cell<usize>,
    /// Whether pushes prefetch the slots they are about to write
    /// ([`prefetch::supported`], asked once).
    prefetch: bool,
}

// SAFETY: the handle may move to another thread (it is the lane's single
// writer wherever it is); the raw pointer points into the pool or the
// lane, both kept alive by the handle's `Arc`s.
unsafe impl<T: Send> Send for Producer<T> {}

impl<T> Producer<T> {
    /// A new producer: with a lane and home chunk of its own while the
    /// consumer is alive, else one that allocates nothing and shares the
    /// queue's dead lane (every push finds the queue closed).
    fn register(inner: &Arc<Inner<T>>) -> Result<Self, CapacityError> {
        // Relaxed: a hint that spares the allocation once the consumer is
        // gone; the lock below decides.
        let lane = if inner.consumer_alive.load(Ordering::Relaxed) {
            let home = Chunk::try_new(inner.chunk, NIL)?;
            let lane = Arc::new(Lane::new(home, inner.pool.clone()));
            let home: *const Chunk<T> = &lane.home;
            // Nobody else has the lane yet: both sides start at the home
            // chunk.
            lane.cursor.with_mut(|p| {
                // SAFETY: exclusive access (the lane is not shared yet).
                unsafe { (*p).chunk = home }
            });
            Some(lane)
        } else {
            None
        };
        let lane = {
            let mut registry = loom::lock(&inner.registry);
            let lane = match lane {
                Some(lane) if !registry.consumer_gone => lane,
                // The consumer is gone (the lane we made, if any, is
                // dropped unused: nothing else has it).
                _ => {
                    inner.producers.fetch_add(1, Ordering::Relaxed);
                    drop(registry);
                    return Ok(Producer::with_lane(inner, inner.dead.clone()));
                }
            };
            registry.lanes.push(lane.clone());
            // Relaxed: ordered by the registry lock for readers of the list;
            // the consumer's closed check pairs Acquire with the Release
            // decrement in `drop`.
            inner.producers.fetch_add(1, Ordering::Relaxed);
            // Release: a consumer that sees the new version with Acquire
            // then takes the lock and finds the lane.
            inner.version.fetch_add(1, Ordering::Release);
            lane
        };
        Ok(Producer::with_lane(inner, lane))
    }

    /// The handle of a new `lane`, writing its home chunk first.
    fn with_lane(inner: &Arc<Inner<T>>, lane: Arc<Lane<T>>) -> Self {
        Producer {
            end: Cell::new(lane.home.len()),
            chunk: Cell::new(&lane.home),
            lane,
            inner: inner.clone(),
            used_at_claim: Cell::new(0),
            prefetch: prefetch::supported(),
        }
    }

    /// A new producer with a lane (and home chunk) of its own, or an error
    /// if they cannot be allocated.
    pub fn try_clone(&self) -> Result<Self, CapacityError> {
        Producer::register(&self.inner)
    }

    /// Pushes `value` if this lane's chunk has room or a chunk can be
    /// claimed; otherwise hands it back (`Full`, or `Closed` once the
    /// consumer is gone).
    ///
    /// Takes no lock, makes no system call and allocates nothing. Within a
    /// chunk: a slot write and a Release store of this lane's `tail`; once
    /// per chunk: a compare-and-swap on the pool.
    ///
    /// ```
    /// use otlp_queue::PushError;
    /// let (tx, _rx) = otlp_queue::pooled::try_with_chunk::<u8>(1, 1).unwrap();
    /// tx.try_push(1).unwrap(); // the home chunk
    /// tx.try_push(2).unwrap(); // the pool's only chunk
    /// assert_eq!(tx.try_push(3), Err(PushError::Full(3)));
    /// ```
    #[inline]
    pub fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        match self.push_once(value) {
            Ok(()) => Ok(()),
            Err(PushError::Full(v)) => {
                bump(&self.lane.producer.rejected_full);
                Err(PushError::Full(v))
            }
            Err(e) => Err(e),
        }
    }

    /// [`try_push`](Self::try_push) of the value `init` writes into its slot
    /// itself: a large `T` is built where the consumer will read it, instead
    /// of on the stack and then copied in (otlp-exporter encodes a span
    /// straight into its slot this way). `init` runs only when there is
    /// room; without room the error says why, as `try_push`'s does.
    ///
    /// # Safety
    ///
    /// `init` must initialize the `T` its pointer points to before it
    /// returns, and must not push through this producer (a push from
    /// inside `init` would be given the same slot: the two writes would
    /// overwrite each other and publish a position twice). (If it panics instead, nothing is published: the slot stays
    /// free, and its partial value is never read or dropped. One cost
    /// remains: if that slot was the first of a chunk newly taken from the
    /// pool and this producer is then dropped before it pushes again, that
    /// chunk is not given back to the pool until the queue is dropped.)
    ///
    /// ```
    /// use otlp_queue::PushError;
    /// let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u64>(1, 1).unwrap();
    /// // SAFETY: each closure writes the value.
    /// unsafe {
    ///     tx.try_push_in_place(|slot| slot.write(7)).unwrap();
    ///     tx.try_push_in_place(|slot| slot.write(8)).unwrap();
    ///     assert_eq!(tx.try_push_in_place(|slot| slot.write(9)), Err(PushError::Full(())));
    /// }
    /// let mut out = Vec::new();
    /// rx.pop_batch(&mut out, 10);
    /// assert_eq!(out, [7, 8]);
    /// ```
    #[inline]
    pub unsafe fn try_push_in_place(&self, init: impl FnOnce(*mut T)) -> Result<(), PushError<()>> {
        let tail = self.claim_slot().inspect_err(|e| {
            if matches!(e, PushError::Full(())) {
                bump(&self.lane.producer.rejected_full);
            }
        })?;
        // SAFETY: `tail` was just claimed; the caller's `init` initializes.
        unsafe { self.fill_and_publish(tail, init) };
        Ok(())
    }

    /// [`try_push_in_place`](Self::try_push_in_place) with an `init` that
    /// may refuse: `Ok(Ok(()))` when `init` returned `Ok` (the item is
    /// pushed), `Ok(Err(e))` when it returned `Err(e)` (nothing is pushed:
    /// the slot stays free for the next push, and whatever `init` wrote
    /// there is never read or dropped), `Err` when there was no room (or
    /// the consumer is gone: `init` did not run). A refusal is not counted
    /// as a full queue (`rejected_full`): it is the caller's.
    ///
    /// Unlike a panic of `init` (see `try_push_in_place`), a refusal costs
    /// nothing: if the slot was the first of a chunk this push had just
    /// taken (from the pool, or the lane's home chunk), the chunk is
    /// unlinked and given back at once, as if it had not been taken (a
    /// pool chunk is given back as the consumer gives chunks back: held
    /// instead of freed while adopted items are uncovered, see *Adopted
    /// items* in the module docs; only then does this take a lock).
    /// otlp-exporter refuses, this way, a span larger than a slot when its
    /// budget for such spans is spent.
    ///
    /// # Safety
    ///
    /// `init` must initialize the `T` its pointer points to before it
    /// returns `Ok` (on `Err` it may leave it in any state: it is treated
    /// as uninitialized memory), and must not push through this producer
    /// (see `try_push_in_place`).
    ///
    /// ```
    /// use otlp_queue::PushError;
    /// let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u64>(1, 1).unwrap();
    /// // SAFETY: each closure writes the value, or refuses.
    /// unsafe {
    ///     assert_eq!(tx.try_push_in_place_or(|slot| { slot.write(7); Ok::<_, ()>(()) }), Ok(Ok(())));
    ///     assert_eq!(tx.try_push_in_place_or(|_| Err("no")), Ok(Err("no")));
    ///     assert_eq!(tx.try_push_in_place_or(|slot| { slot.write(8); Ok::<_, ()>(()) }), Ok(Ok(())));
    ///     assert_eq!(tx.try_push_in_place_or(|_| Ok::<_, ()>(())), Err(PushError::Full(())));
    /// }
    /// let mut out = Vec::new();
    /// rx.pop_batch(&mut out, 10);
    /// assert_eq!(out, [7, 8]);
    /// ```
    #[inline]
    pub unsafe fn try_push_in_place_or<E>(
        &self,
        init: impl FnOnce(*mut T) -> Result<(), E>,
    ) -> Result<Result<(), E>, PushError<()>> {
        let (chunk, end) = (self.chunk.get(), self.end.get());
        let tail = self.claim_slot().inspect_err(|e| {
            if matches!(e, PushError::Full(())) {
                bump(&self.lane.producer.rejected_full);
            }
        })?;
        // SAFETY: `tail` was just claimed; the caller's `init` initializes
        // the slot when it returns `Ok`.
        let filled = unsafe { self.fill_and_publish_if(tail, init) };
        if filled.is_err() && self.chunk.get() != chunk {
            // SAFETY: the chunk was taken by this claim, and nothing in it
            // is published; `chunk` and `end` are the lane's state before.
            unsafe { self.unclaim(chunk, end) };
        }
        Ok(filled)
    }

    /// Undoes a claim of a new chunk whose first slot was not filled:
    /// unlinks it from `prev` (current again, up to `end`) and gives it back
    /// (to the pool, or the home chunk to the lane).
    ///
    /// # Safety
    ///
    /// The current chunk was linked after `prev` by `next_chunk` in the
    /// last `claim_slot`, and `tail` was not published since.
    #[cold]
    unsafe fn unclaim(&self, prev: *const Chunk<T>, end: u64) {
        // SAFETY: both chunks are live: `new` is ours (taken, never
        // published), `prev` is still the consumer's to give back, which
        // it does only past its end, a position not yet published.
        let (new, prev) = unsafe { (&*self.chunk.get(), &*prev) };
        // Relaxed: the consumer follows `prev.next` only for a position at
        // or past `end`, below a `tail` it loaded with Acquire; the next
        // such `tail` is published (Release) after this store, or after a
        // new link made by a later claim.
        prev.next.store(ptr::null_mut(), Ordering::Relaxed);
        self.chunk.set(prev);
        self.end.set(end);
        if new.index == NIL {
            // Relaxed: only this producer takes the home chunk (with an
            // Acquire load of this flag, which orders nothing it needs
            // now: the consumer gave it back before we took it), and the
            // consumer sets it only for a chunk it read through.
            self.lane.home_free.store(true, Ordering::Relaxed);
        } else {
            // Back as the consumer gives chunks back: held, not freed, while
            // adopted items are short of cover (see *Adopted items*), and
            // racing the consumer's `cover` safely (see `put_racing`). The
            // free stack's Release compare-and-swap makes whatever `init`
            // wrote in it happen before the next claimer's writes.
            self.lane.pool.put_racing(new);
        }
    }

    #[inline(always)]
    fn push_once(&self, value: T) -> Result<(), PushError<T>> {
        let tail = match self.claim_slot() {
            Ok(tail) => tail,
            Err(PushError::Full(())) => return Err(PushError::Full(value)),
            Err(PushError::Closed(())) => return Err(PushError::Closed(value)),
        };
        // SAFETY: `tail` was just claimed; `p` is its slot, ours alone to
        // write, and the closure initializes it.
        unsafe { self.fill_and_publish(tail, |p| p.write(value)) };
        Ok(())
    }

    /// The position of the slot the next push writes: this lane's `tail`,
    /// within its current chunk (claiming a chunk when the current one is
    /// full). Nothing is published until `fill_and_publish`.
    #[inline(always)]
    fn claim_slot(&self) -> Result<u64, PushError<()>> {
        // Relaxed: a stale `true` lets this push land just after the
        // consumer went away; the item is then dropped with the lane
        // (`Lane::drop`), as if the consumer's drop had drained it.
        if !self.inner.consumer_alive.load(Ordering::Relaxed) {
            return Err(PushError::Closed(()));
        }
        // Relaxed: only this handle writes `tail`.
        let tail = self.lane.producer.tail.load(Ordering::Relaxed);
        if tail >= self.end.get() && !self.next_chunk(tail) {
            return Err(PushError::Full(()));
        }
        Ok(tail)
    }

    /// Writes the slot at `tail` with `init` and publishes it.
    ///
    /// # Safety
    ///
    /// `tail` comes from `claim_slot` on this handle, with no push since;
    /// `init` initializes the `T` at its pointer.
    #[inline(always)]
    unsafe fn fill_and_publish(&self, tail: u64, init: impl FnOnce(*mut T)) {
        // SAFETY: the caller's contract; `init` always initializes.
        let filled = unsafe {
            self.fill_and_publish_if(tail, |p| {
                init(p);
                Ok::<(), core::convert::Infallible>(())
            })
        };
        match filled {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }

    /// Writes the slot at `tail` with `init` and, if it returns `Ok`,
    /// publishes it (on `Err` nothing is published: the slot stays free).
    ///
    /// # Safety
    ///
    /// `tail` comes from `claim_slot` on this handle, with no push since;
    /// `init` initializes the `T` at its pointer when it returns `Ok`.
    #[inline(always)]
    unsafe fn fill_and_publish_if<E>(
        &self,
        tail: u64,
        init: impl FnOnce(*mut T) -> Result<(), E>,
    ) -> Result<(), E> {
        // SAFETY: the current chunk is this lane's, its slot for `tail` is
        // not yet published (so the consumer does not read it) and was
        // read out before the chunk came to us (the Acquire of our claim).
        let chunk = unsafe { &*self.chunk.get() };
        let start = self.end.get() - chunk.len();
        // We are the slot's only writer (as above); `MaybeUninit<T>` has
        // the layout of `T`.
        chunk.slots[(tail - start) as usize].with_mut(|p| init(p.cast::<T>()))?;
        // Release: publishes the value (and any link made by `next_chunk`)
        // to the consumer's Acquire load of `tail`.
        self.lane.producer.tail.store(tail + 1, Ordering::Release);
        // The slot a push or two from now writes, while this thread does
        // other work (see `crate::prefetch`). Not across the chunk's end:
        // the next chunk is not known yet (`next_chunk` prefetches its
        // first slots).
        if self.prefetch && tail + prefetch::AHEAD < self.end.get() {
            chunk.slots[(tail + prefetch::AHEAD - start) as usize]
                .with_mut(|p| prefetch::for_write(p.cast::<u8>(), core::mem::size_of::<T>()));
        }
        Ok(())
    }

    /// The current chunk is full: starts it over if the consumer has taken
    /// every item of the lane; else claims the home chunk (if the consumer
    /// gave it back) or a pool chunk, links it after the current one, and
    /// makes it current. False if there is none.
    #[cold]
    fn next_chunk(&self, tail: u64) -> bool {
        // SAFETY: the current chunk is live: the consumer gives a chunk back
        // only once its `next` is set, which happens only below.
        let cur = unsafe { &*self.chunk.get() };
        // Acquire: pairs with the consumer's Release store of `head`, so its
        // reads of every slot below `tail` (all of this chunk) happen before
        // we write them again.
        if self.lane.head.load(Ordering::Acquire) == tail {
            // Relaxed: published by the Release store of `tail` (see
            // `Lane::pop_with`, which reads it at the chunk's end).
            cur.base.store(tail, Ordering::Relaxed);
            self.end.set(tail + cur.len());
            self.prefetch_first(cur);
            return true;
        }
        // Acquire: pairs with the consumer's Release store in `give_back`,
        // so its reads of the home chunk happen before our writes.
        let new: &Chunk<T> = if self.lane.home_free.load(Ordering::Acquire) {
            // Relaxed: only the producer clears it, and the consumer sets it
            // only after we link the chunk again and it reads it through.
            self.lane.home_free.store(false, Ordering::Relaxed);
            &self.lane.home
        } else {
            match self.lane.pool.pop() {
                Some((c, used)) => {
                    self.used_at_claim
                        .set(used.saturating_mul(self.inner.chunk).min(self.inner.total));
                    c
                }
                None => return false,
            }
        };
        // Relaxed: published by the Release store of `tail` that follows
        // (the consumer reaches this chunk only through that).
        new.next.store(ptr::null_mut(), Ordering::Relaxed);
        new.base.store(tail, Ordering::Relaxed);
        // Relaxed: the consumer follows the link only for a position below a
        // `tail` it loaded with Acquire, and our Release store of that
        // `tail` comes after this store.
        cur.next
            .store(ptr::from_ref(new).cast_mut(), Ordering::Relaxed);
        self.chunk.set(new);
        self.end.set(tail + new.len());
        self.prefetch_first(new);
        true
    }

    /// Prefetches the slots of a chunk this producer just took that the
    /// pushes right after the first one write (`fill_and_publish` then
    /// prefetches [`prefetch::AHEAD`] slots on).
    #[inline]
    fn prefetch_first(&self, chunk: &Chunk<T>) {
        if self.prefetch {
            for slot in chunk.slots.iter().take(prefetch::AHEAD as usize).skip(1) {
                slot.with_mut(|p| prefetch::for_write(p.cast::<u8>(), core::mem::size_of::<T>()));
            }
        }
    }

    /// Pushes `value`, waiting (spin, yield, then short sleeps) while the
    /// queue is full, for at most `timeout`.
    pub fn push_timeout(&self, mut value: T, timeout: Duration) -> Result<(), PushTimeoutError<T>> {
        let mut deadline = None;
        let mut step = 0u32;
        loop {
            match self.push_once(value) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(v)) => return Err(PushTimeoutError::Closed(v)),
                Err(PushError::Full(v)) => value = v,
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now().checked_add(timeout));
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                bump(&self.lane.producer.rejected_full);
                return Err(PushTimeoutError::Timeout(value));
            }
            if step < 6 {
                loom::spin_hint();
            } else if step < 16 {
                loom::yield_now();
            } else {
                let left = deadline.map_or(Duration::MAX, |d| d - now);
                loom::sleep(Duration::from_micros(50).min(left));
            }
            step = step.saturating_add(1);
        }
    }

    /// If a push of this producer since the last call claimed a chunk from
    /// the pool: the pool's used slots right after that claim (as
    /// [`pool_used`](Self::pool_used) counts them). A cheap signal (a field
    /// of this handle's own, set at most once per chunk) for a consumer
    /// that sleeps and should be woken when enough has gathered, before
    /// the queue is full rather than when it is.
    ///
    /// ```
    /// let (tx, _rx) = otlp_queue::pooled::try_with_chunk::<u8>(4, 1).unwrap();
    /// tx.try_push(0).unwrap(); // the home chunk
    /// assert_eq!(tx.pool_used_at_claim(), None);
    /// tx.try_push(1).unwrap(); // pool chunk 1 of 4
    /// tx.try_push(2).unwrap(); // pool chunk 2 of 4
    /// assert_eq!(tx.pool_used_at_claim(), Some(2));
    /// assert_eq!(tx.pool_used_at_claim(), None); // reported once
    /// ```
    #[inline]
    pub fn pool_used_at_claim(&self) -> Option<usize> {
        // Read first: on the push path nothing is written unless a claim
        // was made.
        match self.used_at_claim.get() {
            0 => None,
            used => {
                self.used_at_claim.set(0);
                Some(used)
            }
        }
    }

    /// Slots of the shared pool in chunks that producers hold now (claimed
    /// and not yet given back): an upper bound on the items queued outside
    /// the lanes' home chunks, at chunk granularity. One load of a counter
    /// that changes once per chunk claimed or returned, so a producer can
    /// look at the queue's fill on every push without contending.
    ///
    /// ```
    /// let (tx, _rx) = otlp_queue::pooled::try_with_chunk::<u8>(8, 2).unwrap();
    /// for i in 0..3 {
    ///     tx.try_push(i).unwrap(); // two in the home chunk, one in a pool chunk
    /// }
    /// assert_eq!(tx.pool_used(), 2);
    /// ```
    pub fn pool_used(&self) -> usize {
        // Relaxed: a hint, stale by at most the chunks claimed meanwhile.
        let chunks = self.inner.pool.in_use.load(Ordering::Relaxed);
        chunks
            .saturating_mul(self.inner.chunk)
            .min(self.inner.total)
    }

    /// Items in this producer's lane now (pushed, not yet taken).
    pub fn lane_len(&self) -> usize {
        // Acquire: pairs with the consumer's Release store of `head`.
        let head = self.lane.head.load(Ordering::Acquire);
        let tail = self.lane.producer.tail.load(Ordering::Relaxed);
        usize::try_from(tail.saturating_sub(head)).unwrap_or(usize::MAX)
    }

    /// The queue's total (`total` given at creation).
    pub fn total(&self) -> usize {
        self.inner.total
    }

    /// Slots per chunk.
    pub fn chunk_len(&self) -> usize {
        self.inner.chunk
    }

    /// True once the consumer is gone.
    pub fn is_closed(&self) -> bool {
        // Relaxed: a hint; see `push_once`.
        !self.inner.consumer_alive.load(Ordering::Relaxed)
    }

    /// A snapshot of the queue's counters (takes the registry lock).
    pub fn counters(&self) -> QueueCounters {
        self.inner.counters()
    }

    /// Lanes the queue holds now (takes the registry lock): those of live
    /// producers, and of gone producers whose lanes the consumer has not
    /// retired yet. Once the consumer is gone a producer's lane goes with
    /// it, and producers made after that have none.
    ///
    /// ```
    /// let (tx, rx) = otlp_queue::pooled::bounded_total::<u32>(64);
    /// let other = tx.clone();
    /// assert_eq!(tx.lane_count(), 2);
    /// drop(rx);
    /// drop(other); // its lane is freed with it
    /// let late = tx.clone(); // gets no lane: the queue is closed
    /// assert!(late.try_push(1).is_err());
    /// assert_eq!(tx.lane_count(), 1);
    /// ```
    pub fn lane_count(&self) -> usize {
        loom::lock(&self.inner.registry).lanes.len()
    }
}

impl<T> Clone for Producer<T> {
    /// A producer with a lane of its own.
    ///
    /// # Panics
    ///
    /// If its home chunk cannot be allocated ([`Producer::try_clone`]
    /// returns the error instead).
    fn clone(&self) -> Self {
        match Producer::register(&self.inner) {
            Ok(p) => p,
            Err(e) => panic!("otlp_queue::pooled::Producer::clone: {e}"),
        }
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Release: a consumer that sees `true` with Acquire sees every item
        // this producer pushed (the lane's items stay for it).
        self.lane.producer_gone.store(true, Ordering::Release);
        // Release: as in `crate::Producer`'s drop: a consumer whose Acquire
        // load sees 0 sees every push of every producer.
        self.inner.producers.fetch_sub(1, Ordering::Release);
        // Once the consumer is gone nobody retires lanes: ours leaves the
        // registry now and is freed with this handle (its `Arc` is then
        // the last but a `Mark`'s). Decided under the lock, against the
        // consumer's drop (see there). Not on the push path: a producer is
        // dropped once, and `register` takes the same lock.
        let mut registry = loom::lock(&self.inner.registry);
        if registry.consumer_gone {
            let removed = registry.remove(&self.lane);
            if removed.is_some() {
                // Release: as in `register` (for a `counters` reader the
                // lock orders it anyway).
                self.inner.version.fetch_add(1, Ordering::Release);
            }
            drop(registry);
            // Dropped after the lock: the lane's drop may drop items.
            drop(removed);
        }
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("pooled::Producer")
            .field("total", &self.inner.total)
            .field("chunk", &self.inner.chunk)
            .finish_non_exhaustive()
    }
}

/// The receiving side. There is exactly one.
pub struct Consumer<T> {
    inner: Arc<Inner<T>>,
    lanes: Vec<Arc<Lane<T>>>,
    seen_version: usize,
    cursor: usize,
    popped: u64,
}

impl<T> Consumer<T> {
    /// Takes one item, or `None` if nothing is ready.
    pub fn pop(&mut self) -> Option<T> {
        let mut out = None;
        self.drain_with(1, |lane, max| {
            // SAFETY: we are the consumer.
            unsafe { lane.pop_with(max, |v| out = Some(v)) }
        });
        out
    }

    /// Moves up to `max` items into `out`; returns how many.
    pub fn pop_batch(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        self.pop_each(max, |v| out.push(v))
    }

    /// Takes up to `max` items, as [`pop_batch`](Self::pop_batch) does,
    /// handing each to `sink` instead of collecting them (a consumer that
    /// keeps only part of a large item copies no more than that part).
    ///
    /// ```
    /// let (tx, mut rx) = otlp_queue::pooled::bounded_total::<u32>(64);
    /// for i in 0..5 {
    ///     tx.try_push(i).unwrap();
    /// }
    /// let mut sum = 0;
    /// assert_eq!(rx.pop_each(10, |v| sum += v), 5);
    /// assert_eq!(sum, 10);
    /// ```
    pub fn pop_each(&mut self, max: usize, mut sink: impl FnMut(T)) -> usize {
        self.drain_with(max, |lane, max| {
            // SAFETY: we are the consumer.
            unsafe { lane.pop_with(max, &mut sink) }
        })
    }

    /// [`pop_each`](Self::pop_each) without moving the items out: each is
    /// lent to `sink` where it lies in the queue and then dropped there
    /// (also if `sink` panics: the item is then dropped during the unwind,
    /// and a panic of its `Drop` there is caught, so `sink`'s panic is the
    /// one that propagates). For a large `T` of which `sink` reads a
    /// part, this reads only that part of each slot, not all of it (and
    /// `sink` can still take the whole value with `std::mem::take` or
    /// `std::mem::replace`). Returns how many were taken.
    ///
    /// ```
    /// let (tx, mut rx) = otlp_queue::pooled::bounded_total::<String>(8);
    /// tx.try_push("a".to_owned()).unwrap();
    /// tx.try_push("bc".to_owned()).unwrap();
    /// let mut len = 0;
    /// assert_eq!(rx.pop_each_mut(10, |s| len += s.len()), 2);
    /// assert_eq!(len, 3);
    /// assert!(rx.try_pop().is_err());
    /// ```
    pub fn pop_each_mut(&mut self, max: usize, mut sink: impl FnMut(&mut T)) -> usize {
        self.drain_with(max, |lane, max| {
            // SAFETY: we are the consumer.
            unsafe { lane.pop_with_mut(max, &mut sink) }
        })
    }

    /// [`pop_each`](Self::pop_each), from the lanes of producers that are
    /// gone only, whose lanes are then retired (their chunks back to the
    /// pool, their memory freed). For a consumer that holds back from
    /// taking what live producers queue (an exporter keeping its queue
    /// for a collector that is down) while producers come and go: each
    /// that leaves would otherwise keep its lane, and a chunk of memory
    /// with it, until the consumer next takes. Returns how many were taken.
    ///
    /// ```
    /// let (tx, mut rx) = otlp_queue::pooled::bounded_total::<u32>(64);
    /// let gone = tx.try_clone().unwrap();
    /// tx.try_push(1).unwrap();
    /// gone.try_push(2).unwrap();
    /// drop(gone);
    /// let mut taken = Vec::new();
    /// assert_eq!(rx.pop_exited_each(10, |v| taken.push(v)), 1);
    /// assert_eq!(taken, [2]);
    /// assert_eq!(rx.lane_count(), 1, "the gone producer's lane is retired");
    /// assert_eq!(rx.try_pop(), Ok(1));
    /// ```
    pub fn pop_exited_each(&mut self, max: usize, mut sink: impl FnMut(T)) -> usize {
        self.drain_with(max, |lane, max| {
            // Acquire: as in `is_finished`: the producer's last `tail` is
            // seen by the pop.
            if !lane.producer_gone.load(Ordering::Acquire) {
                return 0;
            }
            // SAFETY: we are the consumer.
            unsafe { lane.pop_with(max, &mut sink) }
        })
    }

    /// [`pop_exited_each`](Self::pop_exited_each), with the items taken
    /// still counted against the pool's `total` until the caller says
    /// they are gone ([`release`](Self::release)): for a consumer that
    /// keeps them elsewhere for a while (an exporter's adopted spans,
    /// while its worker is away). The pool chunks they were in, and free
    /// chunks for the items that were in the lanes' home chunks, are held
    /// off the free stack meanwhile, so producers meet a full queue where
    /// they would have met one had the items stayed in their lanes (see
    /// *Adopted items* in the module docs). Returns how many were taken.
    ///
    /// If `sink` panics (or the drop of an item inside it does), every item
    /// handed to it, the one it panicked on included, is adopted: it left
    /// the lane and counts as [`adopted`](Self::adopted) until released.
    /// The items after it stay in their lane for a later call. The panic
    /// propagates, so the caller learns how many it was handed only by
    /// counting in `sink`, before anything there that may panic.
    ///
    /// ```
    /// use otlp_queue::PushError;
    /// let (tx, mut rx) = otlp_queue::pooled::try_with_chunk::<u32>(2, 1).unwrap();
    /// let gone = tx.try_clone().unwrap();
    /// for v in 0..3 {
    ///     gone.try_push(v).unwrap(); // the home chunk, then both pool chunks
    /// }
    /// drop(gone);
    /// assert_eq!(rx.adopt_exited_each(10, drop), 3);
    /// tx.try_push(7).unwrap(); // the live producer's home chunk
    /// assert_eq!(tx.try_push(8), Err(PushError::Full(8)), "the pool is held");
    /// // One of the pool chunks was held when the pop moved past it, the
    /// // other (the lane's last) when the lane was retired.
    /// assert_eq!(rx.uncovered(), 1, "three adopted, two slots held");
    /// rx.release(3);
    /// tx.try_push(8).unwrap();
    /// ```
    pub fn adopt_exited_each(&mut self, max: usize, mut sink: impl FnMut(T)) -> usize {
        /// Settles one lane's adoption, on return and on unwind (a
        /// panicking `sink`, or a `T::drop` inside it): only the items the
        /// pop actually took stay owed, the ones still in the lane's
        /// current chunk are covered by their own slots, and free chunks
        /// are held for the rest.
        struct Adopting<'a, T> {
            pool: &'a Pool<T>,
            lane: &'a Lane<T>,
            /// The lane's `head` before the pop.
            head: u64,
            /// Items owed in advance (what the pop was to take).
            planned: usize,
        }
        impl<T> Drop for Adopting<'_, T> {
            fn drop(&mut self) {
                // Relaxed: only the consumer (we) writes `head`; the pop's
                // `Progress` guard has stored it, also on unwind, past
                // every item handed to `sink` (the one it panicked on too).
                let now = self.lane.head.load(Ordering::Relaxed);
                let taken = usize::try_from(now - self.head).unwrap_or(usize::MAX);
                // SAFETY: we are the consumer, the cursor's only user, and
                // no other reference to it is live (the pop has ended).
                let cursor = self.lane.cursor.with_mut(|p| unsafe { &mut *p });
                // Items of this adoption in the cursor's chunk (it cannot
                // be retired meanwhile: the lane was not empty).
                let here = usize::try_from(now.saturating_sub(cursor.base.max(self.head)))
                    .unwrap_or(usize::MAX);
                cursor.adopted += here;
                let mut held = loom::lock(&self.pool.held);
                held.owed = held.owed.saturating_sub(self.planned.saturating_sub(taken));
                held.in_lanes += here;
                self.pool.cover(&mut held);
            }
        }
        let pool = self.inner.pool.clone();
        let n = self.drain_with(max, |lane, max| {
            // Acquire: as in `pop_exited_each`.
            if !lane.producer_gone.load(Ordering::Acquire) {
                return 0;
            }
            // Owed before they are taken, so that the chunks the pop gives
            // back are held. The producer is gone: its `tail` (Acquire, as
            // in `pop_raw`) is final, and the pop takes exactly this many
            // (fewer only if `sink` panics: `Adopting` then owes what it
            // took).
            let head = lane.head.load(Ordering::Relaxed);
            let tail = lane.producer.tail.load(Ordering::Acquire);
            let n = usize::try_from(tail - head).unwrap_or(usize::MAX).min(max);
            if n == 0 {
                return 0;
            }
            {
                let mut held = loom::lock(&pool.held);
                held.owed = held.owed.saturating_add(n);
                // Relaxed: see `Pool::put`; `Adopting` ends with `cover`,
                // which makes the flag right for `Pool::put_racing`.
                pool.short.store(held.short(), Ordering::Relaxed);
            }
            let _settle = Adopting {
                pool: &pool,
                lane,
                head,
                planned: n,
            };
            // SAFETY: we are the consumer.
            unsafe { lane.pop_with(max, &mut sink) }
        });
        pool.cover(&mut loom::lock(&pool.held));
        n
    }

    /// `n` items taken with [`adopt_exited_each`](Self::adopt_exited_each)
    /// are gone (delivered, or dropped): the chunks held for them go back
    /// to the free stack, as far as the items still owed allow.
    ///
    /// `n` must not be more than [`adopted`](Self::adopted) (a debug build
    /// panics; a release build releases what is owed).
    pub fn release(&mut self, n: usize) {
        let pool = &self.inner.pool;
        let mut held = loom::lock(&pool.held);
        debug_assert!(
            n <= held.owed,
            "otlp_queue::pooled::Consumer::release({n}): only {} adopted items are not yet released",
            held.owed
        );
        held.owed = held.owed.saturating_sub(n);
        while let Some(&index) = held.chunks.last() {
            let chunk = &pool.chunks[index as usize];
            let len = chunk.slots.len();
            if (held.slots - len).saturating_add(held.in_lanes) < held.owed {
                break;
            }
            held.chunks.pop();
            held.slots -= len;
            pool.push(chunk);
        }
        pool.cover(&mut held);
    }

    /// Adopted items ([`adopt_exited_each`](Self::adopt_exited_each)) not
    /// yet released.
    pub fn adopted(&self) -> usize {
        loom::lock(&self.inner.pool.held).owed
    }

    /// Adopted items not yet released beyond the slots that cover them
    /// (held chunks, and their own slots while the chunk they were in is
    /// still the current chunk of their lane): the items that were in gone
    /// lanes' home chunks while the pool had no free chunk to hold in
    /// their place.
    pub fn uncovered(&self) -> usize {
        let held = loom::lock(&self.inner.pool.held);
        held.owed
            .saturating_sub(held.slots.saturating_add(held.in_lanes))
    }

    /// Takes one item, or says why there is none.
    pub fn try_pop(&mut self) -> Result<T, TryPopError> {
        if let Some(v) = self.pop() {
            return Ok(v);
        }
        if self.producers_gone() {
            return self.pop().ok_or(TryPopError::Closed);
        }
        Err(TryPopError::Empty)
    }

    /// True when every producer is gone and every item has been taken.
    pub fn is_closed(&mut self) -> bool {
        self.producers_gone() && {
            self.refresh();
            self.lanes.iter().all(|l| l.is_empty())
        }
    }

    /// A snapshot of the queue's counters (takes the registry lock).
    pub fn counters(&self) -> QueueCounters {
        self.inner.counters()
    }

    /// Pool chunks now claimed by producers (not on the free stack).
    pub fn chunks_in_use(&self) -> usize {
        // Relaxed: a statistic.
        self.inner.pool.in_use.load(Ordering::Relaxed)
    }

    /// Live lanes (those of live producers, and of gone producers whose
    /// items are not all taken yet) as of the last call.
    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// Marks what is in the queue now; see [`crate::Consumer::mark`].
    pub fn mark(&mut self) -> Mark<T> {
        self.refresh();
        Mark {
            lanes: self
                .lanes
                .iter()
                // Acquire: as in `pop_with`.
                .map(|l| (l.clone(), l.producer.tail.load(Ordering::Acquire)))
                .collect(),
        }
    }

    /// True once every item that was in the queue at `mark` has been taken.
    pub fn passed(&self, mark: &Mark<T>) -> bool {
        // Relaxed: we wrote `head` ourselves.
        mark.lanes
            .iter()
            .all(|(l, tail)| l.head.load(Ordering::Relaxed) >= *tail)
    }

    fn producers_gone(&self) -> bool {
        // Acquire: pairs with the Release decrement in `Producer::drop`.
        self.inner.producers.load(Ordering::Acquire) == 0
    }

    fn refresh(&mut self) {
        // Acquire: pairs with the Release bump in `Producer::register`.
        let version = self.inner.version.load(Ordering::Acquire);
        if version != self.seen_version {
            let registry = loom::lock(&self.inner.registry);
            self.lanes.clone_from(&registry.lanes);
            // Relaxed: read under the lock, matching the list just copied.
            self.seen_version = self.inner.version.load(Ordering::Relaxed);
        }
    }

    fn drain_with(&mut self, max: usize, mut take: impl FnMut(&Lane<T>, usize) -> usize) -> usize {
        self.refresh();
        let n = self.lanes.len();
        if n == 0 || max == 0 {
            return 0;
        }
        let start = if self.cursor < n { self.cursor } else { 0 };
        self.cursor = start + 1;
        let mut taken = 0;
        let mut saw_empty = false;
        let (after, before) = self.lanes.split_at(start);
        for lane in before.iter().chain(after) {
            let got = take(lane, max - taken);
            saw_empty |= got == 0;
            taken += got;
            if taken == max {
                break;
            }
        }
        self.popped += taken as u64;
        if saw_empty {
            self.retire_finished();
        }
        taken
    }

    /// Retires lanes whose producer is gone and which are drained: their
    /// last chunk goes back to the pool, and the lane (with its home chunk)
    /// is dropped once nothing else holds it.
    #[cold]
    fn retire_finished(&mut self) {
        if !self.lanes.iter().any(|l| l.is_finished()) {
            return;
        }
        let mut registry = loom::lock(&self.inner.registry);
        let registry = &mut *registry;
        let mut lanes = core::mem::take(&mut registry.lanes);
        lanes.retain(|lane| {
            let finished = lane.is_finished();
            if finished {
                // SAFETY: we are the consumer, the lane is finished, and it
                // leaves the registry now (retired once).
                unsafe { lane.retire() };
                registry.count_retired(lane);
            }
            !finished
        });
        registry.lanes = lanes;
        // Release: as in `Producer::register`.
        self.inner.version.fetch_add(1, Ordering::Release);
        self.lanes.clone_from(&registry.lanes);
        // Relaxed: under the lock.
        self.seen_version = self.inner.version.load(Ordering::Relaxed);
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // Relaxed: see `Producer::push_once`.
        self.inner.consumer_alive.store(false, Ordering::Relaxed);
        self.refresh();
        let mut panic = None;
        for lane in &self.lanes {
            // SAFETY: we are the consumer.
            keep_first(&mut panic, unsafe { lane.drop_items() });
        }
        // Nobody retires lanes from now on: the lanes of producers already
        // gone leave the registry now (freed when `self.lanes` drops, just
        // after), and every other producer's drop takes its own lane out
        // (see `Producer::drop`). Decided under the lock: a producer that
        // set `producer_gone` before we take it is seen here; one that
        // takes it after us sees `consumer_gone`.
        let gone: Lanes<T> = {
            let mut registry = loom::lock(&self.inner.registry);
            let registry = &mut *registry;
            registry.consumer_gone = true;
            let (gone, live): (Lanes<T>, Lanes<T>) = core::mem::take(&mut registry.lanes)
                .into_iter()
                // Acquire: pairs with the Release store in `Producer::drop`
                // (a lane freed now holds nothing its producer pushed
                // unseen).
                .partition(|lane| lane.producer_gone.load(Ordering::Acquire));
            for lane in &gone {
                registry.count_retired(lane);
            }
            registry.lanes = live;
            // Release: as in `Producer::register`.
            self.inner.version.fetch_add(1, Ordering::Release);
            gone
        };
        // Freed after the lock (found by review): a lane whose last count
        // this is (its producer cloned after the refresh above, pushed and
        // went) drops its items, user code that may use a handle of this
        // queue, whose drop takes the lock.
        keep_first(
            &mut panic,
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(gone))).err(),
        );
        resume(panic);
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("pooled::Consumer")
            .field("total", &self.inner.total)
            .field("lanes", &self.lanes.len())
            .field("popped", &self.popped)
            .finish_non_exhaustive()
    }
}

/// A position in each lane, from [`Consumer::mark`].
pub struct Mark<T> {
    lanes: Vec<(Arc<Lane<T>>, u64)>,
}

impl<T> fmt::Debug for Mark<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("pooled::Mark")
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}
