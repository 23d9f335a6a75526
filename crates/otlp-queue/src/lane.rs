//! One producer's lane: a bounded ring with a single writer (the producer
//! handle that owns it) and a single reader (the consumer), where the writer
//! may also take back its own oldest item to make room (eviction).
//!
//! # Indices
//!
//! Positions are 64-bit counts of pushes into the lane (they never wrap in
//! practice: 2^64 pushes at a billion a second take 584 years). The ring has
//! `capacity` rounded up to a power of two slots, so the item at position `p`
//! lives in slot `p & mask` (no division on any path); the lane still never
//! holds more than `capacity` items, because the producer writes only while
//! `tail - released < capacity`. Three positions describe a lane:
//!
//! * `tail`: the next position the producer writes. Only the producer writes
//!   it, with a plain Release store after writing the slot.
//! * `head`: the oldest position not yet *claimed*. The consumer claims a run
//!   `head..tail` with one CAS on `head`; an evicting producer claims the
//!   single oldest position the same way. Whoever wins the CAS owns those
//!   positions, so an item is taken exactly once.
//! * `released`: every position below it has been read, so its slot may be
//!   written again. The consumer stores it after copying a claimed run out;
//!   an eviction raises it (with `fetch_max`, since a consumer's release of a
//!   later run may land first).
//!
//! `head - released` is the run the consumer is copying out right now; it is
//! 0 between batches. The producer may write while `tail - released <
//! capacity`, and caches `released` so that in steady state a push reads no
//! line the consumer writes: a push is a slot write and a store of `tail`,
//! both on lines only this producer writes. The consumer reads `tail` once
//! per batch and copies the run out in one sweep, with no per-item atomics.

use core::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::error::CapacityError;
use crate::loom::{AtomicBool, AtomicU64, Ordering, UnsafeCell};
use crate::unwind::{Panic, drain_caught, drop_during_unwind, resume};

/// The largest capacity whose ring (rounded up to a power of two) of
/// `slot`-byte slots fits in one allocation (`isize::MAX` bytes), capped at
/// [`crate::MAX_CAPACITY`].
pub(crate) fn max_capacity_for(slot: usize) -> usize {
    let by_size = (isize::MAX as usize)
        .checked_div(slot)
        .unwrap_or(usize::MAX);
    // The largest power of two not above `by_size`.
    let pow = if by_size == 0 {
        0
    } else {
        1usize << by_size.ilog2()
    };
    pow.min(crate::MAX_CAPACITY)
}

/// What the producer writes: `tail` and its counters, on one line that only
/// the producer writes.
#[derive(Default)]
pub(crate) struct ProducerSide {
    pub(crate) tail: AtomicU64,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) evicted: AtomicU64,
    /// Items the producer took back out of its own lane
    /// ([`Lane::take_back`]).
    pub(crate) taken_back: AtomicU64,
}

/// What the consumer (and, rarely, an evicting producer) writes.
#[derive(Default)]
struct ConsumerSide {
    head: AtomicU64,
    released: AtomicU64,
}

/// A snapshot of one lane's producer counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LaneTotals {
    pub(crate) pushed: u64,
    pub(crate) rejected_full: u64,
    pub(crate) evicted: u64,
    pub(crate) taken_back: u64,
}

impl LaneTotals {
    pub(crate) fn add(&mut self, other: LaneTotals) {
        // Saturating: statistics must never panic or wrap.
        self.pushed = self.pushed.saturating_add(other.pushed);
        self.rejected_full = self.rejected_full.saturating_add(other.rejected_full);
        self.evicted = self.evicted.saturating_add(other.evicted);
        self.taken_back = self.taken_back.saturating_add(other.taken_back);
    }
}

pub(crate) struct Lane<T> {
    pub(crate) producer: CachePadded<ProducerSide>,
    consumer: CachePadded<ConsumerSide>,
    /// Set once, when the producer handle that owns this lane is dropped.
    producer_gone: CachePadded<AtomicBool>,
    /// `capacity.next_power_of_two()` slots.
    ///
    /// Behind a cell because the lane's producer frees the ring when it
    /// goes away with the lane drained (`free_ring`): a lane of a thread
    /// that exited then costs a few cache lines, not `capacity` slots,
    /// however long the consumer takes to notice. Every other access reads
    /// it inside a claimed run, and once the ring is freed no run can be
    /// claimed again.
    slots: UnsafeCell<Box<[UnsafeCell<MaybeUninit<T>>]>>,
    /// `slots.len() - 1`.
    mask: u64,
    /// The most items the lane may hold.
    capacity: u64,
}

// SAFETY: a lane moves values of `T` from the producer's thread to the
// consumer's thread (so `T: Send` is required) and never hands out `&T`, so
// sharing the lane between threads needs nothing more than that. Access to
// each slot is serialised by the index protocol described above.
unsafe impl<T: Send> Send for Lane<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Lane<T> {}

/// What an eviction attempt found.
pub(crate) enum Evict<T> {
    /// The oldest item was taken out and `value` written in its place.
    Replaced(T),
    /// The consumer freed room (or is about to); `value` is handed back so
    /// the caller can push it normally.
    Retry(T),
}

impl<T> Lane<T> {
    /// A lane that holds up to `cap` items, or an error if its slots do
    /// not fit in memory. `cap` must be in `1..=crate::MAX_CAPACITY`
    /// (checked by the caller).
    ///
    /// The ring is allocated fallibly (`try_reserve_exact`), so a capacity
    /// the allocator cannot serve is an error here, not an abort.
    pub(crate) fn try_new(cap: usize) -> Result<Self, CapacityError> {
        debug_assert!((1..=crate::MAX_CAPACITY).contains(&cap));
        let ring = cap.next_power_of_two();
        let slot = core::mem::size_of::<UnsafeCell<MaybeUninit<T>>>();
        let too_large = CapacityError::TooLarge {
            requested: cap,
            max: max_capacity_for(slot),
        };
        // A Rust allocation may not exceed `isize::MAX` bytes.
        match ring.checked_mul(slot) {
            Some(bytes) if bytes <= isize::MAX as usize => {}
            _ => return Err(too_large),
        }
        let mut slots = Vec::new();
        slots
            .try_reserve_exact(ring)
            .map_err(|_| CapacityError::OutOfMemory {
                requested: cap,
                bytes: ring * slot,
            })?;
        #[cfg(not(loom))]
        // SAFETY: `try_reserve_exact` made room for `ring` elements, and an
        // `UnsafeCell<MaybeUninit<T>>` (transparent over `MaybeUninit`) is
        // valid uninitialised: no loop over a ring that may be huge.
        unsafe {
            slots.set_len(ring)
        };
        #[cfg(loom)]
        slots.extend((0..ring).map(|_| UnsafeCell::new(MaybeUninit::uninit())));
        Ok(Lane {
            producer: CachePadded::new(ProducerSide::default()),
            consumer: CachePadded::new(ConsumerSide::default()),
            producer_gone: CachePadded::new(AtomicBool::new(false)),
            // `try_reserve_exact` reserved exactly `ring`: no reallocation.
            slots: UnsafeCell::new(slots.into_boxed_slice()),
            mask: ring as u64 - 1,
            capacity: cap as u64,
        })
    }

    /// The ring of slots. Read only by the producer for its own positions,
    /// or by whoever won a claim of a non-empty run: see `free_ring`.
    #[inline(always)]
    fn ring(&self) -> &[UnsafeCell<MaybeUninit<T>>] {
        // SAFETY: the box is replaced only by `free_ring`, which runs when
        // no claim can succeed again and the last claimed run has been
        // released (Acquire on `released`); every caller reads the ring
        // for a position it owns (its own unpublished `tail`, or a claimed
        // run), so it happens before that replacement.
        self.slots.with(|p| unsafe { &**p })
    }

    /// The slot of position `pos`.
    #[inline(always)]
    fn slot_of(&self, pos: u64) -> usize {
        // Below `slots.len()`, a `usize`, so it fits.
        (pos & self.mask) as usize
    }

    /// The slot of position `pos`, without a bounds check.
    #[inline(always)]
    fn slot(&self, pos: u64) -> &UnsafeCell<MaybeUninit<T>> {
        // SAFETY: `pos & mask < slots.len()`, a power of two.
        unsafe { self.ring().get_unchecked(self.slot_of(pos)) }
    }

    /// Producer only: its own next position.
    #[inline(always)]
    pub(crate) fn own_tail(&self) -> u64 {
        // Relaxed: the producer is the only writer of `tail`, so it reads its
        // own last store (program order), which needs no synchronisation.
        self.producer.tail.load(Ordering::Relaxed)
    }

    /// Producer only: the consumer's `released`, to refresh the cached limit.
    #[inline]
    pub(crate) fn released(&self) -> u64 {
        // Acquire: pairs with the consumer's Release store of `released`, so
        // its reads of the slots below it happen before we overwrite them.
        self.consumer.released.load(Ordering::Acquire)
    }

    /// Writes `value` at position `tail` and publishes it.
    ///
    /// # Safety
    ///
    /// Only the lane's single producer may call this, with `tail` its next
    /// position ([`Lane::own_tail`]) and `tail - released < capacity` for a
    /// `released` it loaded from [`Lane::released`].
    #[inline(always)]
    pub(crate) unsafe fn write(&self, tail: u64, value: T) {
        // SAFETY: the slot is free: the consumer has released every position
        // below `tail - capacity + 1`, and one lap of the ring is at least
        // `capacity`; we are the only producer, and nobody else touches the
        // slot until `tail` is published below.
        self.slot(tail)
            .with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
        // Release: publishes the value written above to the consumer's
        // Acquire load of `tail`.
        self.producer.tail.store(tail + 1, Ordering::Release);
    }

    /// Called by the producer when the lane is full (`tail - released ==
    /// capacity` for the `released` it just loaded): takes out the oldest
    /// item and writes `value` at `tail`.
    ///
    /// # Safety
    ///
    /// As for [`Lane::write`], except that the lane is full: `released` is the
    /// value just loaded and `tail == released + capacity`.
    pub(crate) unsafe fn evict_oldest(&self, tail: u64, released: u64, value: T) -> Evict<T> {
        debug_assert_eq!(tail - released, self.capacity);
        // `released` is the oldest position. If `head` is still there, no
        // claim is in flight and the CAS makes `released` ours; if the
        // consumer has claimed it, it is copying it out right now and will
        // free the slot shortly: retry the plain push.
        //
        // Relaxed on both sides: the CAS only decides who owns position
        // `released` (the modification order of `head` is total). Its value
        // was written by this very thread, and the consumer finished with the
        // slot's previous lap before storing the `released` we loaded with
        // Acquire.
        if self
            .consumer
            .head
            .compare_exchange(released, released + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Evict::Retry(value);
        }
        // SAFETY: winning the CAS made position `released` ours; it holds
        // the item written there (by this thread).
        let old = self
            .slot(released)
            .with_mut(|p| unsafe { p.read().assume_init() });
        // SAFETY: the slot of `tail` is free: every position below `released
        // + 1 = tail - capacity + 1` is now read (by the consumer, or by us
        // just above), and `tail` is not yet published.
        self.slot(tail)
            .with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
        // Relaxed: `released` only needs to stop counting the evicted
        // position as unread; the producer is the only thread that reads it,
        // and a consumer's Release store that lands first keeps its release
        // sequence through this read-modify-write.
        self.consumer
            .released
            .fetch_max(released + 1, Ordering::Relaxed);
        // Release: publishes the new value, exactly as in `write`.
        self.producer.tail.store(tail + 1, Ordering::Release);
        Evict::Replaced(old)
    }

    /// Claims the run of up to `max` items at `head`: returns its first
    /// position and length, or `None` if nothing is ready.
    ///
    /// Only the consumer calls this (or a drop, which has `&mut` access); the
    /// CAS on `head` makes it safe against an evicting producer. The caller
    /// must then copy every claimed item out and call [`Lane::release`].
    #[inline(always)]
    fn claim(&self, max: usize) -> Option<(u64, usize)> {
        if max == 0 {
            return None;
        }
        // Relaxed: a starting guess; the CAS below decides ownership, and a
        // stale value only fails it (head only moves forward).
        let mut head = self.consumer.head.load(Ordering::Relaxed);
        loop {
            // Acquire: pairs with the producer's Release store of `tail`, so
            // the values of every position below it are visible to us.
            let tail = self.producer.tail.load(Ordering::Acquire);
            // `tail - head <= capacity`, a `usize`, so this fits.
            let n = ((tail - head) as usize).min(max);
            if n == 0 {
                return None;
            }
            // Relaxed: the CAS only arbitrates ownership against an evicting
            // producer (see `evict_oldest`); the values were synchronised by
            // the Acquire load of `tail`.
            match self.consumer.head.compare_exchange(
                head,
                head + n as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((head, n)),
                Err(current) => head = current,
            }
        }
    }

    /// Frees the slots of every position below `end`.
    #[inline(always)]
    fn release(&self, end: u64) {
        // Release: our reads of the slots happen before the producer's
        // Acquire load of `released` lets it write them again.
        self.consumer.released.store(end, Ordering::Release);
    }

    /// Moves the claimed run `start..start + n` out, in order, through
    /// `take(slot) -> ()`, which moves the slot's item out before anything
    /// of it can panic (a sink, a `Drop`).
    ///
    /// If `take` panics, the items of the run after the one it was given
    /// are dropped (each once, a panic of their `Drop` caught) and the run
    /// is released all the same: else they would be neither delivered nor
    /// dropped, and the lane, never released, would look full for ever (a
    /// `force_push` would wait on it without end).
    #[inline(always)]
    fn copy_out(&self, start: u64, n: usize, mut take: impl FnMut(&UnsafeCell<MaybeUninit<T>>)) {
        let first = self.slot_of(start);
        // The run may wrap around the end of the ring: two contiguous pieces.
        let end = first + n;
        let slots = self.ring();
        let (a, b) = if end <= slots.len() {
            (&slots[first..end], &slots[..0])
        } else {
            (&slots[first..], &slots[..end - slots.len()])
        };
        let mut rest = Unwinding {
            lane: self,
            pieces: (a, b),
            next: 0,
            end: start + n as u64,
        };
        for slot in a.iter().chain(b) {
            // Counted before the call: the slot it is given is taken even
            // if the call panics.
            rest.next += 1;
            take(slot);
        }
        core::mem::forget(rest);
        self.release(start + n as u64);
    }

    /// Drops every item left in the lane, each exactly once: a `Drop` that
    /// panics is caught and the rest are still dropped. Returns the first
    /// panic's payload (the others' are dropped).
    pub(crate) fn drop_items(&self) -> Option<Panic> {
        // An item whose drop panics counts as taken (`pop_with`'s
        // `Unwinding`), so the next round goes on after it.
        drain_caught(|| {
            self.pop_with(usize::MAX, drop);
        })
    }

    /// Takes up to `max` items, oldest first, handing each to `sink`.
    /// Returns how many were taken. Consumer only (see [`Lane::claim`]).
    #[inline]
    pub(crate) fn pop_with(&self, max: usize, sink: impl FnMut(T)) -> usize {
        self.pop_counted(max, &core::cell::Cell::new(0), sink)
    }

    /// [`pop_with`](Self::pop_with), adding the items it claims to `taken`
    /// as soon as they are claimed, before `sink` sees any: if `sink`
    /// panics, the run still left the lane (handed over or dropped), and
    /// the caller's count says so.
    #[inline]
    pub(crate) fn pop_counted(
        &self,
        max: usize,
        taken: &core::cell::Cell<usize>,
        mut sink: impl FnMut(T),
    ) -> usize {
        let Some((start, n)) = self.claim(max) else {
            return 0;
        };
        taken.set(taken.get() + n);
        self.copy_out(start, n, |slot| {
            // SAFETY: the slot holds a claimed item, written before the
            // `tail` we loaded with Acquire, and read exactly once.
            sink(slot.with(|p| unsafe { p.read().assume_init() }));
        });
        n
    }

    /// Moves up to `max` items, oldest first, to the end of `out`. Returns
    /// how many. Consumer only (see [`Lane::claim`]).
    #[inline]
    pub(crate) fn pop_into(&self, out: &mut Vec<T>, max: usize) -> usize {
        // Room first, for what is ready now: `reserve` can panic (capacity
        // overflow, say), and a run claimed before it would stay claimed
        // and unreleased, the lane full for ever. The claim then takes at
        // most that many. Relaxed head / Acquire tail: see `claim`.
        let head = self.consumer.head.load(Ordering::Relaxed);
        let ready = (self.producer.tail.load(Ordering::Acquire) - head) as usize;
        if ready.min(max) == 0 {
            return 0;
        }
        out.reserve(ready.min(max));
        let Some((start, n)) = self.claim(ready.min(max)) else {
            return 0;
        };
        let mut dst = out.spare_capacity_mut()[..n].iter_mut();
        self.copy_out(start, n, |slot| {
            if let Some(dst) = dst.next() {
                // SAFETY: as in `pop_with`. `copy_out` visits exactly `n`
                // slots and `dst` has `n` places, so every item is moved.
                *dst = slot.with(|p| unsafe { p.read() });
            }
        });
        // SAFETY: the `n` places past `len` were initialised above (nothing in
        // between can panic: it runs no user code).
        unsafe { out.set_len(out.len() + n) };
        n
    }

    /// True if no item is ready right now.
    pub(crate) fn is_empty(&self) -> bool {
        // Relaxed head / Acquire tail: see `claim`.
        let head = self.consumer.head.load(Ordering::Relaxed);
        self.producer.tail.load(Ordering::Acquire) == head
    }

    /// Marks the lane's producer as gone. Called once, by its drop.
    pub(crate) fn close_producer(&self) {
        // Release: a consumer that sees `true` with Acquire also sees every
        // item the producer wrote before dropping.
        self.producer_gone.store(true, Ordering::Release);
    }

    /// True once the producer is gone and every item has been taken: the
    /// lane can never hold an item again.
    pub(crate) fn is_finished(&self) -> bool {
        // Acquire: see `close_producer`; checked before `is_empty` so that
        // emptiness is judged after the producer's last write.
        self.producer_gone.load(Ordering::Acquire) && self.is_empty()
    }

    pub(crate) fn totals(&self) -> LaneTotals {
        // Relaxed: counters are statistics; each has a single writer, so a
        // reader sees some recent value of each, exact once quiet.
        LaneTotals {
            pushed: self.producer.tail.load(Ordering::Relaxed),
            rejected_full: self.producer.rejected_full.load(Ordering::Relaxed),
            evicted: self.producer.evicted.load(Ordering::Relaxed),
            taken_back: self.producer.taken_back.load(Ordering::Relaxed),
        }
    }

    /// Consumer only: the oldest position not yet claimed (by the consumer,
    /// an eviction or a take-back). Every position below it is out of the
    /// lane or being copied out right now.
    pub(crate) fn head(&self) -> u64 {
        // Relaxed: `head` is only moved forward, and the caller (a flush
        // comparing it with a mark) only needs some recent value; a stale
        // one makes it look again later.
        self.consumer.head.load(Ordering::Relaxed)
    }

    /// Any thread: the lane's `tail` as published.
    pub(crate) fn published_tail(&self) -> u64 {
        // Acquire: pairs with the producer's Release store (as in `claim`).
        self.producer.tail.load(Ordering::Acquire)
    }

    /// Called by the producer as it goes away (after `close_producer`): if
    /// the lane is drained and the consumer is not copying its last run
    /// out right now, frees the ring and returns true. Returns false,
    /// freeing nothing, if items are left or the copy is under way: the
    /// consumer then takes them, or finishes, and retires the lane (ring
    /// and all) at its next call. Never waits.
    ///
    /// # Safety
    ///
    /// Only the lane's single producer may call this, as it is dropped
    /// (it never pushes again).
    pub(crate) unsafe fn free_ring(&self) -> bool {
        // Relaxed: only this thread writes `tail`.
        let tail = self.own_tail();
        // Relaxed: only compared; if it is `tail`, no later claim can move
        // it (claims need `head < tail`, and `tail` is final).
        let head = self.consumer.head.load(Ordering::Relaxed);
        if head != tail {
            return false;
        }
        // Acquire: pairs with the consumer's Release store after its copy:
        // its reads of the ring (and of the box) happen before the free
        // below.
        if self.consumer.released.load(Ordering::Acquire) != tail {
            // The consumer is copying the last run out (inside a batch,
            // whose sink may take any time): leave the ring to it, as when
            // items are left. No producer's drop waits for the consumer
            // (it used to spin and yield here, up to 200 000 times).
            return false;
        }
        // SAFETY: `head == tail == released` and `tail` is final: no run is
        // being copied and none can be claimed again (a claim of `n = 0`
        // does not touch the ring), so nothing reads the ring from now on;
        // the slots below `released` were all moved out (read), so dropping
        // `MaybeUninit` slots drops no item.
        let old = self
            .slots
            .with_mut(|p| unsafe { core::mem::replace(&mut *p, Box::new([])) });
        drop(old);
        true
    }

    /// Producer only: takes every item still in the lane back out, oldest
    /// first, handing each to `sink`; returns how many.
    ///
    /// Claims runs of at most [`TAKE_BACK_CHUNK`] positions (one, for items
    /// over [`TAKE_BACK_BYTES`] / 16 bytes) at `head` with
    /// the same CAS on `head` that the consumer's claim and an eviction
    /// use, so each position is still taken exactly once. Before each
    /// claim it waits (spinning, then yielding) until no consumer run is
    /// being copied out (`released == head`), so its release cannot be
    /// overtaken by a consumer's release of an earlier run; a run the
    /// consumer claims after it starts above it and releases further on.
    ///
    /// Each run is moved out of the ring into a buffer on the stack and
    /// released *before* `sink` sees any of it. `sink` is user code: it may
    /// push to this very lane (which may then hand the consumer a run and
    /// let it store a `released` past a position not yet read, so no
    /// position may be left unread while `sink` runs), and it may panic (a
    /// run left claimed and never released would leave the lane full for
    /// ever). If `sink` panics, the rest of the buffered run is dropped
    /// (each item once) and the positions not yet claimed stay in the lane
    /// for the consumer. Items pushed after the call began (by `sink`, say)
    /// are not taken back: the end is the `tail` at the start.
    ///
    /// # Safety
    ///
    /// Only the lane's single producer may call this.
    pub(crate) unsafe fn take_back(&self, sink: impl FnMut(T)) -> usize {
        // The run's buffer is on the stack: sized by the items' bytes (found
        // by review: 16 items of 16 KiB overflowed a stack on which a push
        // and a pop of them fitted).
        if core::mem::size_of::<T>().saturating_mul(TAKE_BACK_CHUNK) <= TAKE_BACK_BYTES {
            // SAFETY: the caller's contract.
            unsafe { self.take_back_in_runs::<TAKE_BACK_CHUNK>(sink) }
        } else {
            // SAFETY: the caller's contract.
            unsafe { self.take_back_in_runs::<1>(sink) }
        }
    }

    /// [`take_back`](Self::take_back), in runs of at most `N` items.
    ///
    /// # Safety
    ///
    /// As `take_back`'s.
    unsafe fn take_back_in_runs<const N: usize>(&self, mut sink: impl FnMut(T)) -> usize {
        // Relaxed: only the producer writes `tail`.
        let end = self.own_tail();
        let mut taken = 0;
        let mut spins = 0u32;
        loop {
            // Relaxed: a guess that the CAS below checks.
            let head = self.consumer.head.load(Ordering::Relaxed);
            // Acquire: pairs with the consumer's Release store, so its reads
            // of the slots below `released` happen before anything here.
            let released = self.consumer.released.load(Ordering::Acquire);
            if head >= end {
                break;
            }
            if released != head {
                // The consumer is copying out `released..head`: it finishes
                // without waiting for anyone (unless it is stuck: then take
                // no more back, and the items stay for the consumer).
                if !wait_for_consumer(&mut spins) {
                    break;
                }
                continue;
            }
            let stop = end.min(head + N as u64);
            // Relaxed: as in `evict_oldest`, the CAS only decides who owns
            // `head..stop`; the values were written by this thread.
            if self
                .consumer
                .head
                .compare_exchange(head, stop, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let n = (stop - head) as usize;
            let mut run = Buffered::<T, N> {
                items: [const { MaybeUninit::uninit() }; N],
                next: 0,
                len: 0,
            };
            for pos in head..stop {
                // SAFETY: winning the CAS made `head..stop` ours; each
                // position holds an item this thread wrote, read once here.
                // No user code runs between the CAS and the release below.
                run.items[run.len] = self.slot(pos).with(|p| unsafe { p.read() });
                run.len += 1;
            }
            // Relaxed: only this producer reads `released` to decide where
            // it may write, and it is this thread; `fetch_max` because the
            // value must never go backwards (a consumer's run claimed after
            // the CAS may already have been released past `stop`).
            self.consumer.released.fetch_max(stop, Ordering::Relaxed);
            bump_by(&self.producer.taken_back, n as u64);
            taken += n;
            while run.next < run.len {
                // SAFETY: `next < len`: an item moved in above, taken once.
                let item = unsafe { run.items[run.next].assume_init_read() };
                run.next += 1;
                sink(item);
            }
        }
        taken
    }
}

/// How many positions [`Lane::take_back`] claims at a time: its buffer on
/// the stack holds this many items (if they fit in [`TAKE_BACK_BYTES`];
/// else one).
const TAKE_BACK_CHUNK: usize = 16;

/// The most stack [`Lane::take_back`]'s buffer of [`TAKE_BACK_CHUNK`]
/// items may take.
const TAKE_BACK_BYTES: usize = 8 << 10;

/// A run [`Lane::take_back`] moved out of the ring: `items[next..len]` are
/// not yet handed to the sink; dropped (each once) if the sink unwinds.
struct Buffered<T, const N: usize> {
    items: [MaybeUninit<T>; N],
    next: usize,
    len: usize,
}

impl<T, const N: usize> Drop for Buffered<T, N> {
    fn drop(&mut self) {
        for item in &mut self.items[self.next..self.len] {
            // SAFETY: `next..len` hold items moved in and not yet taken.
            drop_during_unwind(unsafe { item.assume_init_read() });
        }
    }
}

impl<T> Drop for Lane<T> {
    fn drop(&mut self) {
        // `&mut self`: no other thread can touch the lane, so every item still
        // in it is dropped here, exactly once; one whose `Drop` panics does
        // not keep the rest from theirs, and the panic is passed on after
        // (found by review: a second lane's panic, freed in the unwind of
        // the first's, aborted the process).
        resume(self.drop_items());
    }
}

/// One step of a producer's wait for the consumer to finish copying a run
/// out (spin, then yield). False once the wait has lasted long enough that
/// the consumer must be stuck (preempted for good, or a panic in the middle
/// of a batch): the caller then gives up on what it was doing, which is
/// always allowed. Under loom the wait is unbounded (loom schedules the
/// consumer).
fn wait_for_consumer(spins: &mut u32) -> bool {
    const PATIENCE: u32 = if cfg!(loom) { u32::MAX } else { 200_000 };
    // `==`: `PATIENCE` is `u32::MAX` under loom, where `>=` is `==`
    // (clippy's `absurd_extreme_comparisons` under `--cfg loom`); the
    // count stops at it.
    if *spins == PATIENCE {
        return false;
    }
    if *spins < 6 {
        crate::loom::spin_hint();
    } else {
        crate::loom::yield_now();
    }
    *spins += 1;
    true
}

/// Single-writer counter bump: a plain load and store, no read-modify-write.
#[inline(always)]
pub(crate) fn bump(counter: &AtomicU64) {
    bump_by(counter, 1);
}

/// Single-writer counter increase by `n` (saturating).
#[inline(always)]
pub(crate) fn bump_by(counter: &AtomicU64, n: u64) {
    // Relaxed: statistics only; this thread is the counter's only writer, so
    // load-then-store cannot lose an increment.
    counter.store(
        counter.load(Ordering::Relaxed).saturating_add(n),
        Ordering::Relaxed,
    );
}

/// A slot of a lane's ring.
type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// The rest of a claimed run when `Lane::copy_out`'s `take` unwinds: its
/// items not yet taken are dropped (each under a catch: this runs during an
/// unwind, where a second panic would abort), and the run is released.
struct Unwinding<'a, T> {
    lane: &'a Lane<T>,
    /// The run's two contiguous pieces of the ring.
    pieces: (&'a [Slot<T>], &'a [Slot<T>]),
    /// Slots of the run already handed to `take`.
    next: usize,
    end: u64,
}

impl<T> Drop for Unwinding<'_, T> {
    fn drop(&mut self) {
        let (a, b) = self.pieces;
        for slot in a.iter().chain(b).skip(self.next) {
            // SAFETY: the slot holds a claimed item (written before the
            // `tail` the claim loaded with Acquire) that `take` never got:
            // read, and dropped, exactly once.
            drop_during_unwind(slot.with(|p| unsafe { p.read().assume_init() }));
        }
        self.lane.release(self.end);
    }
}
