//! One producer's lane: a bounded ring with a single writer (the producer
//! handle that owns it) and a single reader (the consumer), where the writer
//! may also take back its own oldest item to make room (eviction).
//!
//! # Positions and stamps
//!
//! A *position* counts pushes into the lane. It is encoded as `lap + index`,
//! where `index < cap` is the slot and `lap` is a multiple of `one_lap`, the
//! smallest power of two above `cap` (the encoding crossbeam's `ArrayQueue`
//! uses, which works for any capacity, not only powers of two).
//!
//! Every slot carries a *stamp* that says what may happen to it next:
//!
//! | stamp of slot `i` | meaning                                          |
//! |-------------------|--------------------------------------------------|
//! | `pos`             | empty, ready for the producer to write `pos`     |
//! | `pos + 1`         | holds the item pushed at `pos`, ready to be read |
//!
//! Reading the item at `pos` sets the stamp to `pos + one_lap`: the same slot
//! one lap later. So the producer never reads the consumer's index and the
//! consumer never reads the producer's: each learns what it needs from the
//! stamp of the one slot it is about to touch, and in steady state a push
//! touches no cache line but its own slot and its own counters.
//!
//! # Who owns what
//!
//! * The producer alone writes new items, so its position (`tail`) lives in
//!   the `Producer` handle, not here, and needs no atomic.
//! * `head` is the oldest position not yet *claimed*. The consumer claims a
//!   run of filled positions with one CAS on `head` and then reads and
//!   releases them one by one; an evicting producer claims the single oldest
//!   position the same way. Whoever wins the CAS owns those positions, so an
//!   item is taken exactly once.

use core::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::loom::{AtomicBool, AtomicU64, AtomicUsize, Ordering, UnsafeCell};

/// One slot of the ring.
struct Slot<T> {
    /// See the module docs for what each value means.
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// Counters written only by the lane's producer (plain loads and stores, no
/// read-modify-write: there is a single writer), read by anyone.
#[derive(Default)]
pub(crate) struct ProducerCounters {
    pub(crate) pushed: AtomicU64,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) evicted: AtomicU64,
}

/// A snapshot of one lane's producer counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LaneTotals {
    pub(crate) pushed: u64,
    pub(crate) rejected_full: u64,
    pub(crate) evicted: u64,
}

impl LaneTotals {
    pub(crate) fn add(&mut self, other: LaneTotals) {
        self.pushed += other.pushed;
        self.rejected_full += other.rejected_full;
        self.evicted += other.evicted;
    }
}

pub(crate) struct Lane<T> {
    /// Oldest position not yet claimed. Written by the consumer (one CAS per
    /// batch) and by an evicting producer (one CAS per eviction).
    head: CachePadded<AtomicUsize>,
    /// Written by the producer on every push; its own cache line so the
    /// consumer's `head` traffic never touches it.
    pub(crate) counters: CachePadded<ProducerCounters>,
    /// Set once, when the producer handle that owns this lane is dropped.
    producer_gone: CachePadded<AtomicBool>,
    slots: Box<[Slot<T>]>,
    one_lap: usize,
}

// SAFETY: a lane moves values of `T` from the producer's thread to the
// consumer's thread (so `T: Send` is required) and never hands out `&T`, so
// sharing the lane between threads needs nothing more than that. Access to
// each slot's value is serialised by the stamp protocol described above.
unsafe impl<T: Send> Send for Lane<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Lane<T> {}

/// What an eviction attempt found.
pub(crate) enum Evict<T> {
    /// The oldest item was taken out and `value` written in its place.
    Replaced(T),
    /// The slot at `tail` was freed by the consumer meanwhile; `value` is
    /// handed back so the caller can push it normally.
    Retry(T),
}

impl<T> Lane<T> {
    /// A lane of `cap` slots. `cap` must be in `1..=crate::MAX_CAPACITY`
    /// (checked by the caller).
    pub(crate) fn new(cap: usize) -> Self {
        debug_assert!((1..=crate::MAX_CAPACITY).contains(&cap));
        let one_lap = (cap + 1).next_power_of_two();
        let slots = (0..cap)
            .map(|i| Slot {
                // Slot `i` starts ready for position `i` of lap 0.
                stamp: AtomicUsize::new(i),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Lane {
            head: CachePadded::new(AtomicUsize::new(0)),
            counters: CachePadded::new(ProducerCounters::default()),
            producer_gone: CachePadded::new(AtomicBool::new(false)),
            slots,
            one_lap,
        }
    }

    /// The position after `pos`.
    #[inline(always)]
    pub(crate) fn next(&self, pos: usize) -> usize {
        let index = pos & (self.one_lap - 1);
        if index + 1 < self.slots.len() {
            pos + 1
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    #[inline(always)]
    fn slot(&self, pos: usize) -> &Slot<T> {
        // `pos & (one_lap - 1)` is always `< cap` for a position built by
        // `next`, so the bounds check never fails; it is kept because it is
        // cheap and turns a logic error into a panic rather than UB.
        &self.slots[pos & (self.one_lap - 1)]
    }

    /// Writes `value` at position `tail` if that slot is free; otherwise hands
    /// `value` back (the lane is full).
    ///
    /// # Safety
    ///
    /// Only the lane's single producer may call this, with `tail` its own
    /// position (starting at 0 and advanced with [`Lane::next`] after every
    /// successful write).
    #[inline(always)]
    pub(crate) unsafe fn try_write(&self, tail: usize, value: T) -> Result<(), T> {
        let slot = self.slot(tail);
        // Acquire: pairs with the Release store by which the consumer (or an
        // evicting producer) freed this slot, so its read of the previous
        // value happens before our write below.
        if slot.stamp.load(Ordering::Acquire) != tail {
            return Err(value);
        }
        // SAFETY: stamp == tail means the slot is empty and ours: the consumer
        // only touches slots whose stamp says "filled", and we are the only
        // producer.
        slot.value
            .with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
        // Release: publishes the value written above to the consumer's
        // Acquire load of this stamp.
        slot.stamp.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Called by the producer after `try_write(tail, _)` found the lane
    /// full: takes out the oldest item and writes `value` at `tail` instead.
    ///
    /// # Safety
    ///
    /// As for [`Lane::try_write`]; and the caller must have just seen the
    /// slot at `tail` occupied.
    pub(crate) unsafe fn evict_oldest(&self, tail: usize, value: T) -> Evict<T> {
        let slot = self.slot(tail);
        // The slot at `tail` holds the item pushed exactly one lap earlier;
        // since the lane is full, that is the oldest item, at `head`, unless
        // the consumer has already claimed it and is about to free the slot.
        let oldest = tail.wrapping_sub(self.one_lap);
        // Relaxed on both sides: the CAS only decides who owns position
        // `oldest` (the modification order of `head` is total). Its value was
        // written by this very thread, so no synchronisation is needed to read
        // it, and the slot is handed back to the consumer by the Release store
        // of the stamp below.
        if self
            .head
            .compare_exchange(
                oldest,
                self.next(oldest),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Evict::Retry(value);
        }
        // SAFETY: winning the CAS made position `oldest` ours; its slot is the
        // slot at `tail`, filled by us one lap ago and never read since.
        let old = slot.value.with_mut(|p| unsafe {
            let old = p.read().assume_init();
            p.write(MaybeUninit::new(value));
            old
        });
        // Release: publishes the new value, exactly as in `try_write`.
        slot.stamp.store(tail.wrapping_add(1), Ordering::Release);
        Evict::Replaced(old)
    }

    /// Takes up to `max` items, oldest first, handing each to `sink`.
    /// Returns how many were taken.
    ///
    /// Only the consumer calls this (or a drop that has `&mut` access); the
    /// CAS on `head` makes it safe against an evicting producer.
    #[inline]
    pub(crate) fn pop_with(&self, max: usize, mut sink: impl FnMut(T)) -> usize {
        if max == 0 {
            return 0;
        }
        // Relaxed: only a starting guess; the CAS below decides ownership. A
        // stale value fails the CAS (head only moves forward) or finds no
        // filled slot, which only delays the items to the next call.
        let mut head = self.head.load(Ordering::Relaxed);
        let (start, end, n) = loop {
            let mut n = 0;
            let mut pos = head;
            // Acquire: pairs with the producer's Release store of `pos + 1`,
            // so the value in each slot counted here is visible to us.
            while n < max && self.slot(pos).stamp.load(Ordering::Acquire) == pos.wrapping_add(1) {
                n += 1;
                pos = self.next(pos);
            }
            if n == 0 {
                return 0;
            }
            // Relaxed: the CAS only arbitrates ownership against an evicting
            // producer (see `evict_oldest`); the values were synchronised by
            // the Acquire loads above.
            match self
                .head
                .compare_exchange(head, pos, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break (head, pos, n),
                Err(current) => head = current,
            }
        };
        let mut pos = start;
        while pos != end {
            let slot = self.slot(pos);
            // SAFETY: the CAS made positions `start..end` ours, and each was
            // seen filled (stamp `pos + 1`) with Acquire ordering.
            let value = slot.value.with(|p| unsafe { p.read().assume_init() });
            // Release: the producer's Acquire load of this stamp then knows we
            // are done reading the slot before it writes the next lap.
            slot.stamp
                .store(pos.wrapping_add(self.one_lap), Ordering::Release);
            sink(value);
            pos = self.next(pos);
        }
        n
    }

    /// True if no item is ready at `head` right now.
    pub(crate) fn is_empty(&self) -> bool {
        // Relaxed head / Acquire stamp: see `pop_with`.
        let head = self.head.load(Ordering::Relaxed);
        self.slot(head).stamp.load(Ordering::Acquire) != head.wrapping_add(1)
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
        // Relaxed: counters are statistics; each is a single-writer value, so
        // a reader sees some recent value of each, exact once quiet.
        LaneTotals {
            pushed: self.counters.pushed.load(Ordering::Relaxed),
            rejected_full: self.counters.rejected_full.load(Ordering::Relaxed),
            evicted: self.counters.evicted.load(Ordering::Relaxed),
        }
    }
}

impl<T> Drop for Lane<T> {
    fn drop(&mut self) {
        // `&mut self`: no other thread can touch the lane, so every item still
        // in it is dropped here, exactly once, walking filled slots from head.
        self.pop_with(usize::MAX, drop);
    }
}

/// Single-writer counter bump: a plain load and store, no read-modify-write.
#[inline(always)]
pub(crate) fn bump(counter: &AtomicU64) {
    // Relaxed: statistics only; this thread is the counter's only writer, so
    // load-then-store cannot lose an increment.
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}
