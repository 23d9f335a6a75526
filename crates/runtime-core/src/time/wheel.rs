//! A hierarchical hashed timing wheel.
//!
//! Time is measured in abstract *ticks* (`u64`). The wheel has [`LEVELS`]
//! levels of [`SLOTS`] slots each; a slot on level `l` spans `64^l` ticks, so
//! level `l` as a whole spans `64^(l + 1)` ticks. Eleven levels of six bits
//! cover all 64 bits of a tick, so every deadline up to `u64::MAX` has a home
//! in the wheel itself and no overflow list is needed.
//!
//! A timer is filed by the highest bit in which its deadline differs from the
//! current tick: on level 0 when they share everything but the low six bits,
//! on level 1 when they share everything but the low twelve, and so on. This
//! keeps the invariant that, on every level, each occupied slot lies strictly
//! after the slot the current tick is in (level 0: at or after), and that
//! every timer on a lower level is due before every timer on a higher one.
//! Advancing therefore only ever needs the lowest occupied bit of the lowest
//! non-empty level's bitmap; when time reaches the start of a slot on a
//! level above 0 that slot's timers are *cascaded*, re-filed relative to the
//! new current tick, which puts them on a lower level, until they reach
//! level 0 and fire at their exact tick. A timer is cascaded at most once per
//! level, and jumps across long empty stretches cost one step per occupied
//! slot, never one per tick.
//!
//! Timers live in a slab (a `Vec` of entries plus an intrusive free list),
//! and each slot is an intrusive doubly-linked list threaded through the
//! entries by `u32` index, so inserting and cancelling are O(1) and allocate
//! nothing once the slab has grown to the peak number of live timers. A
//! [`TimerKey`] carries the entry's index and generation; the generation is
//! bumped whenever an entry is freed, which makes keys of fired or cancelled
//! timers stale.

use std::fmt;

/// Bits of a tick consumed by one level.
const BITS_PER_LEVEL: u32 = 6;

/// Slots per level.
const SLOTS: usize = 1 << BITS_PER_LEVEL;

/// Levels in the wheel: enough to cover all 64 bits of a tick.
const LEVELS: usize = (u64::BITS as usize).div_ceil(BITS_PER_LEVEL as usize);

/// Sentinel for "no entry" in the intrusive lists.
const NIL: u32 = u32::MAX;

/// Sentinel for "in no slot list" (the entry is free).
const NO_SLOT: u16 = u16::MAX;

/// Handle to an inserted timer; Copy. Stale keys (fired or cancelled) are
/// detected by a generation counter.
///
/// The counter is a wrapping `u32` per slab entry, so a key could only be
/// mistaken for a newer timer after its entry had been reused 2^32 times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    /// Index of the timer's entry in the slab.
    index: u32,
    /// Generation of the entry when the timer was inserted.
    generation: u32,
}

impl TimerKey {
    /// The key as one word (index high, generation low).
    pub(crate) fn to_bits(self) -> u64 {
        (u64::from(self.index) << 32) | u64::from(self.generation)
    }

    /// The key [`to_bits`](Self::to_bits) gave.
    pub(crate) fn from_bits(bits: u64) -> TimerKey {
        TimerKey {
            index: (bits >> 32) as u32,
            generation: bits as u32,
        }
    }
}

/// One slab entry: a pending timer, or a free cell on the free list.
struct Entry<T> {
    /// The tick at which the timer fires.
    deadline: u64,
    /// The timer's value; `None` while the entry is free.
    value: Option<T>,
    /// Bumped each time the entry is freed, so that old keys go stale.
    generation: u32,
    /// Index of the slot list (`level * SLOTS + slot`) the entry is in, or
    /// [`NO_SLOT`] while it is free.
    slot: u16,
    /// Previous entry in the slot list, or [`NIL`].
    prev: u32,
    /// Next entry in the slot list (or in the free list), or [`NIL`].
    next: u32,
}

/// Head and tail of one slot's intrusive list.
#[derive(Clone, Copy)]
struct Slot {
    /// First entry, or [`NIL`] when the slot is empty.
    head: u32,
    /// Last entry, or [`NIL`] when the slot is empty.
    tail: u32,
}

impl Slot {
    /// An empty slot.
    const EMPTY: Slot = Slot {
        head: NIL,
        tail: NIL,
    };
}

/// A hierarchical hashed timing wheel holding values of type `T`, each due
/// at a tick.
pub(crate) struct Wheel<T> {
    /// The current tick.
    now: u64,
    /// Number of pending timers.
    len: usize,
    /// The slab of entries, pending and free.
    entries: Vec<Entry<T>>,
    /// Head of the free list threaded through `Entry::next`, or [`NIL`].
    free_head: u32,
    /// `LEVELS * SLOTS` slot lists, level-major.
    slots: Box<[Slot]>,
    /// Per level, bit `s` is set iff slot `s` of that level is non-empty.
    occupied: [u64; LEVELS],
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("now", &self.now)
            .field("len", &self.len)
            .field("capacity", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// The level a deadline `when >= now` is filed on, relative to `now`.
fn level_for(now: u64, when: u64) -> usize {
    // The low six bits never matter for the level: force them on so that
    // `when == now` lands on level 0 like any other tick of this block.
    let masked = (when ^ now) | (SLOTS as u64 - 1);
    let significant = u64::BITS - 1 - masked.leading_zeros();
    (significant / BITS_PER_LEVEL) as usize
}

/// The slot index of `when` on `level`.
fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (level as u32 * BITS_PER_LEVEL)) & (SLOTS as u64 - 1)) as usize
}

/// The first tick of slot `slot` on `level`, in the level-wide block that
/// contains `now`.
fn slot_start(now: u64, level: usize, slot: usize) -> u64 {
    let shift = level as u32 * BITS_PER_LEVEL;
    let block_bits = shift + BITS_PER_LEVEL;
    let block_start = if block_bits >= u64::BITS {
        0
    } else {
        now & !((1u64 << block_bits) - 1)
    };
    block_start | ((slot as u64) << shift)
}

impl<T> Wheel<T> {
    /// An empty wheel whose current tick is 0.
    pub(crate) fn new() -> Self {
        Wheel {
            now: 0,
            len: 0,
            entries: Vec::new(),
            free_head: NIL,
            slots: vec![Slot::EMPTY; LEVELS * SLOTS].into_boxed_slice(),
            occupied: [0; LEVELS],
        }
    }

    /// The current tick (the largest `now` passed to `advance`).
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// Number of pending timers.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every pending timer's value out, leaving the wheel empty and
    /// its slab's storage freed (a runtime's clear at shutdown; its driver
    /// may outlive it, held by a stray handle, and must not hold the slab).
    /// The caller drops them one at a time: a value whose drop panics
    /// leaves the rest to drop.
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        let taken: Vec<T> = std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|e| e.value)
            .collect();
        self.len = 0;
        self.free_head = NIL;
        self.slots.fill(Slot::EMPTY);
        self.occupied = [0; LEVELS];
        taken
    }

    /// Insert a timer firing at `deadline` (a tick). O(1). A deadline <=
    /// now() fires on the next `advance`.
    ///
    /// Allocates only when the slab has to grow past its largest size so
    /// far. Panics if `u32::MAX - 1` timers are already pending.
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.next;
            entry.deadline = deadline;
            entry.value = Some(value);
            index
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("timer wheel: too many pending timers");
            self.entries.push(Entry {
                deadline,
                value: Some(value),
                generation: 0,
                slot: NO_SLOT,
                prev: NIL,
                next: NIL,
            });
            index
        };
        self.link(index);
        self.len += 1;
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Remove a pending timer in O(1); returns its value, or None if the key
    /// is stale (already fired or cancelled).
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let entry = self.entries.get(key.index as usize)?;
        if entry.generation != key.generation || entry.value.is_none() {
            return None;
        }
        self.unlink(key.index);
        Some(self.release(key.index))
    }

    /// A tick at or before the earliest pending deadline (exact is best; it
    /// must never be later than the true earliest deadline, and never
    /// earlier than now()). None when empty. May cost O(levels * slots) with
    /// bitmaps; must not allocate.
    ///
    /// Precisely: the result is never earlier than `now()` and never later
    /// than `max(earliest deadline, now())` (a timer whose deadline has
    /// already passed is due at `now()`). It is exact when the earliest
    /// timer sits on level 0, that is, when it is due within the current
    /// 64-tick block; otherwise it is the first tick of the slot holding
    /// that timer, where advancing cascades it closer. Costs O(levels).
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.next_slot().map(|(_, _, start)| start)
    }

    /// Move time to `now` (ignored if < now()), pushing every timer with
    /// deadline <= now onto `fired` (order: non-decreasing deadline is nice
    /// but not required). Cascades higher levels as needed. Must be
    /// efficient when jumping far (e.g. from 0 to 2^40 with few timers: skip
    /// empty slots via the occupancy bitmaps, don't loop per tick).
    ///
    /// Timers fire in non-decreasing order of `max(deadline, now() before
    /// the call)`; timers due at the same tick fire in insertion order
    /// unless cascading interleaved them. A `now` earlier than `now()`
    /// leaves the clock where it is but still fires timers that are already
    /// due. The cost is one step per occupied slot passed (each timer is
    /// cascaded at most once per level), independent of the distance.
    pub(crate) fn advance(&mut self, now: u64, fired: &mut Vec<T>) {
        let target = now.max(self.now());
        while let Some((level, slot, start)) = self.next_slot() {
            if start > target {
                break;
            }
            self.now = start;
            self.process_slot(level, slot, fired);
        }
        self.now = target;
    }

    /// The earliest occupied slot as `(level, slot, first tick)`, clamped so
    /// the tick is never before `self.now`.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        if self.is_empty() {
            return None;
        }
        // Every timer on a lower level is due before every timer on a higher
        // one, so the lowest non-empty level holds the earliest timer.
        let level = self.occupied.iter().position(|&bits| bits != 0)?;
        let current = slot_for(self.now, level);
        let ahead = self.occupied[level] & (u64::MAX << current);
        debug_assert!(ahead != 0, "timer wheel: occupied slot behind now");
        // Were the invariant ever broken, the slot behind would be the one
        // to drain (it holds overdue timers); `max` keeps the tick sane.
        let bits = if ahead != 0 {
            ahead
        } else {
            self.occupied[level]
        };
        let slot = bits.trailing_zeros() as usize;
        Some((level, slot, slot_start(self.now, level, slot).max(self.now)))
    }

    /// Drain one slot: fire its timers on level 0, re-file them relative to
    /// `self.now` (which puts them on a lower level) otherwise.
    fn process_slot(&mut self, level: usize, slot: usize, fired: &mut Vec<T>) {
        let list = level * SLOTS + slot;
        let mut cursor = self.slots[list].head;
        self.slots[list] = Slot::EMPTY;
        self.occupied[level] &= !(1u64 << slot);
        while cursor != NIL {
            let next = self.entries[cursor as usize].next;
            if level == 0 {
                fired.push(self.release(cursor));
            } else {
                self.link(cursor);
            }
            cursor = next;
        }
    }

    /// Append entry `index` to the tail of the slot list its deadline
    /// belongs in, relative to `self.now`. A deadline already passed is
    /// filed as due at `self.now`.
    fn link(&mut self, index: u32) {
        let when = self.entries[index as usize].deadline.max(self.now);
        let level = level_for(self.now, when);
        let slot = slot_for(when, level);
        let list = level * SLOTS + slot;
        let tail = self.slots[list].tail;
        {
            let entry = &mut self.entries[index as usize];
            entry.slot = list as u16;
            entry.prev = tail;
            entry.next = NIL;
        }
        if tail == NIL {
            self.slots[list].head = index;
        } else {
            self.entries[tail as usize].next = index;
        }
        self.slots[list].tail = index;
        self.occupied[level] |= 1u64 << slot;
    }

    /// Remove pending entry `index` from its slot list.
    fn unlink(&mut self, index: u32) {
        let (list, prev, next) = {
            let entry = &self.entries[index as usize];
            (entry.slot as usize, entry.prev, entry.next)
        };
        if prev == NIL {
            self.slots[list].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.slots[list].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if self.slots[list].head == NIL {
            self.occupied[list / SLOTS] &= !(1u64 << (list % SLOTS));
        }
    }

    /// Free entry `index` (already out of any slot list): take its value,
    /// stale its keys, and push it on the free list.
    fn release(&mut self, index: u32) -> T {
        let entry = &mut self.entries[index as usize];
        let value = entry
            .value
            .take()
            .expect("timer wheel: released a free entry");
        entry.generation = entry.generation.wrapping_add(1);
        entry.slot = NO_SLOT;
        entry.prev = NIL;
        entry.next = self.free_head;
        self.free_head = index;
        self.len -= 1;
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Advance to `now` and return what fired.
    fn fire<T>(wheel: &mut Wheel<T>, now: u64) -> Vec<T> {
        let mut fired = Vec::new();
        wheel.advance(now, &mut fired);
        fired
    }

    /// A small deterministic PRNG (xorshift64*), so tests need no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn empty_wheel() {
        let mut wheel: Wheel<u32> = Wheel::new();
        assert_eq!(wheel.now(), 0);
        assert_eq!(wheel.len(), 0);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiry(), None);
        assert!(fire(&mut wheel, 1 << 40).is_empty());
        assert_eq!(wheel.now(), 1 << 40);
        assert_eq!(wheel.next_expiry(), None);
    }

    #[test]
    fn basic_insert_advance_fire() {
        let mut wheel = Wheel::new();
        wheel.insert(5, "a");
        wheel.insert(3, "b");
        wheel.insert(5, "c");
        wheel.insert(100, "d");
        assert_eq!(wheel.len(), 4);
        assert!(!wheel.is_empty());
        assert_eq!(wheel.next_expiry(), Some(3));

        assert!(fire(&mut wheel, 2).is_empty());
        assert_eq!(wheel.now(), 2);
        assert_eq!(fire(&mut wheel, 3), vec!["b"]);
        assert_eq!(wheel.next_expiry(), Some(5));
        assert!(fire(&mut wheel, 4).is_empty());
        assert_eq!(fire(&mut wheel, 5), vec!["a", "c"]);
        assert_eq!(wheel.len(), 1);
        assert!(fire(&mut wheel, 99).is_empty());
        assert_eq!(fire(&mut wheel, 1000), vec!["d"]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.now(), 1000);
    }

    #[test]
    fn advance_backwards_is_ignored() {
        let mut wheel = Wheel::new();
        assert!(fire(&mut wheel, 50).is_empty());
        wheel.insert(60, 1);
        assert!(fire(&mut wheel, 10).is_empty());
        assert_eq!(wheel.now(), 50);
        assert_eq!(fire(&mut wheel, 60), vec![1]);
    }

    #[test]
    fn fires_in_deadline_order_across_levels() {
        let mut wheel = Wheel::new();
        let deadlines = [70_000u64, 3, 64, 4095, 4096, 63, 1 << 30, 200, 1];
        for &d in &deadlines {
            wheel.insert(d, d);
        }
        let fired = fire(&mut wheel, u64::MAX);
        let mut sorted = deadlines.to_vec();
        sorted.sort_unstable();
        assert_eq!(fired, sorted);
        assert_eq!(wheel.now(), u64::MAX);
    }

    #[test]
    fn cancel_before_fire() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(10, "a");
        let b = wheel.insert(10, "b");
        let c = wheel.insert(5000, "c");
        assert_eq!(wheel.cancel(a), Some("a"));
        assert_eq!(wheel.cancel(c), Some("c"));
        assert_eq!(wheel.len(), 1);
        assert_eq!(fire(&mut wheel, 10_000), vec!["b"]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.cancel(b), None);
    }

    #[test]
    fn cancel_empties_slot_and_bitmap() {
        let mut wheel = Wheel::new();
        let k = wheel.insert(1 << 20, 7);
        assert!(wheel.next_expiry().is_some());
        assert_eq!(wheel.cancel(k), Some(7));
        assert_eq!(wheel.next_expiry(), None);
        assert_eq!(wheel.occupied, [0; LEVELS]);
        assert!(fire(&mut wheel, 1 << 21).is_empty());
    }

    #[test]
    fn cancel_middle_head_tail_of_one_slot() {
        let mut wheel = Wheel::new();
        let keys: Vec<_> = (0..5).map(|i| wheel.insert(9, i)).collect();
        assert_eq!(wheel.cancel(keys[2]), Some(2));
        assert_eq!(wheel.cancel(keys[0]), Some(0));
        assert_eq!(wheel.cancel(keys[4]), Some(4));
        assert_eq!(fire(&mut wheel, 9), vec![1, 3]);
    }

    #[test]
    fn stale_keys() {
        let mut wheel = Wheel::new();
        // Stale after firing.
        let fired_key = wheel.insert(1, 1);
        assert_eq!(fire(&mut wheel, 1), vec![1]);
        assert_eq!(wheel.cancel(fired_key), None);

        // Stale after cancelling.
        let cancelled = wheel.insert(10, 2);
        assert_eq!(wheel.cancel(cancelled), Some(2));
        assert_eq!(wheel.cancel(cancelled), None);

        // Stale after the entry is reused under a new generation.
        let reused = wheel.insert(10, 3);
        assert_eq!(reused.index, cancelled.index);
        assert_ne!(reused.generation, cancelled.generation);
        assert_eq!(wheel.cancel(cancelled), None);
        assert_eq!(wheel.cancel(fired_key), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.cancel(reused), Some(3));
        assert!(wheel.is_empty());

        // A key that never existed.
        let bogus = TimerKey {
            index: 1000,
            generation: 0,
        };
        assert_eq!(wheel.cancel(bogus), None);
    }

    #[test]
    fn slab_is_reused_without_growth() {
        let mut wheel = Wheel::new();
        let keys: Vec<_> = (0..1000u64).map(|i| wheel.insert(i * 997, i)).collect();
        let cap = wheel.entries.len();
        for k in keys {
            assert!(wheel.cancel(k).is_some());
        }
        for round in 0..10u64 {
            let keys: Vec<_> = (0..1000u64)
                .map(|i| wheel.insert(wheel.now() + i * 31 + 1, i))
                .collect();
            for k in &keys[..500] {
                assert!(wheel.cancel(*k).is_some());
            }
            let to = wheel.now() + 1_000_000;
            let fired = fire(&mut wheel, to);
            assert_eq!(fired.len(), 500, "round {round}");
            assert_eq!(wheel.entries.len(), cap);
        }
    }

    #[test]
    fn past_deadline_fires_on_next_advance() {
        let mut wheel = Wheel::new();
        assert!(fire(&mut wheel, 1_000_000).is_empty());
        wheel.insert(5, "old");
        wheel.insert(1_000_000, "now");
        wheel.insert(0, "zero");
        assert_eq!(wheel.next_expiry(), Some(1_000_000));
        // Even an advance that does not move time fires them.
        let mut fired = fire(&mut wheel, 1_000_000);
        fired.sort_unstable();
        assert_eq!(fired, vec!["now", "old", "zero"]);
        assert_eq!(wheel.now(), 1_000_000);

        wheel.insert(7, "backwards");
        assert_eq!(fire(&mut wheel, 3), vec!["backwards"]);
        assert_eq!(wheel.now(), 1_000_000);
    }

    #[test]
    fn far_deadlines_fire_exactly() {
        let fars = [
            1u64 << 20,
            (1 << 20) + 1,
            1 << 30,
            (1 << 30) - 1,
            1 << 36,
            (1 << 36) + 12345,
            1 << 40,
            u64::MAX / 2,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &d in &fars {
            // Straight jump: one tick short, then onto it.
            let mut wheel = Wheel::new();
            wheel.insert(d, d);
            assert!(fire(&mut wheel, d - 1).is_empty(), "{d} fired early");
            assert_eq!(wheel.len(), 1);
            let next = wheel.next_expiry().expect("pending");
            assert!(next >= wheel.now() && next <= d, "{d}: {next}");
            assert_eq!(fire(&mut wheel, d), vec![d]);
            assert!(wheel.is_empty());

            // Driver-style: sleep until next_expiry, repeatedly.
            let mut wheel = Wheel::new();
            wheel.insert(d, d);
            let mut steps = 0;
            loop {
                let next = wheel.next_expiry().expect("pending");
                assert!(next >= wheel.now() && next <= d);
                if next < d {
                    assert!(fire(&mut wheel, next).is_empty(), "{d} early at {next}");
                } else {
                    assert_eq!(fire(&mut wheel, next), vec![d]);
                    break;
                }
                steps += 1;
                assert!(steps <= LEVELS, "{d}: too many wakeups");
            }

            // From a non-zero start with a jump past the deadline.
            let mut wheel = Wheel::new();
            let start = d / 3;
            fire(&mut wheel, start);
            wheel.insert(d, d);
            wheel.insert(start + 1, 0);
            assert_eq!(fire(&mut wheel, start + 1), vec![0]);
            assert!(fire(&mut wheel, d - 1).is_empty());
            assert_eq!(fire(&mut wheel, d.saturating_add(5)), vec![d]);
        }
    }

    #[test]
    fn far_jump_with_few_timers_is_cheap() {
        let mut wheel = Wheel::new();
        for i in 0..10u64 {
            wheel.insert((i + 1) << 37, i);
        }
        // Would take forever if advance looped per tick or per slot.
        assert!(fire(&mut wheel, (1 << 40) - 1).len() == 7);
        assert_eq!(fire(&mut wheel, 1 << 40), vec![7]);
        assert_eq!(fire(&mut wheel, u64::MAX), vec![8, 9]);
    }

    #[test]
    fn next_expiry_bounds() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut wheel = Wheel::new();
        let mut model: Vec<u64> = Vec::new();
        for _ in 0..2000 {
            match rng.below(3) {
                0 | 1 => {
                    let range = 1u64 << (rng.below(40) + 1);
                    let d = wheel.now() + rng.below(range);
                    wheel.insert(d, d);
                    model.push(d);
                }
                _ => {
                    let range = 1u64 << (rng.below(40) + 1);
                    let to = wheel.now() + rng.below(range);
                    let mut fired = fire(&mut wheel, to);
                    fired.sort_unstable();
                    let mut expect: Vec<u64> = model.iter().copied().filter(|&d| d <= to).collect();
                    expect.sort_unstable();
                    model.retain(|&d| d > to);
                    assert_eq!(fired, expect);
                }
            }
            let earliest = model.iter().copied().min();
            match (wheel.next_expiry(), earliest) {
                (None, None) => {}
                (Some(next), Some(min)) => {
                    assert!(next >= wheel.now());
                    assert!(next <= min.max(wheel.now()));
                    // Exact when the earliest timer is in this 64-tick block.
                    if min >> 6 == wheel.now() >> 6 {
                        assert_eq!(next, min);
                    }
                }
                other => panic!("next_expiry mismatch: {other:?}"),
            }
        }
    }

    #[test]
    fn many_timers_random_insert_cancel() {
        const N: usize = 100_000;
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        let mut wheel = Wheel::new();
        // id -> (deadline, key, pending)
        let mut timers: Vec<(u64, TimerKey, bool)> = Vec::with_capacity(N);
        let mut pending = 0usize;
        for id in 0..N {
            let range = [64u64, 4096, 1 << 20, 1 << 32][rng.below(4) as usize];
            let deadline = wheel.now() + rng.below(range);
            let key = wheel.insert(deadline, id);
            timers.push((deadline, key, true));
            pending += 1;
            if rng.below(3) == 0 {
                let victim = rng.below(id as u64 + 1) as usize;
                let (_, key, live) = &mut timers[victim];
                let got = wheel.cancel(*key);
                if *live {
                    assert_eq!(got, Some(victim));
                    *live = false;
                    pending -= 1;
                } else {
                    assert_eq!(got, None);
                }
            }
            if id % 1000 == 999 {
                let to = wheel.now() + rng.below(1 << 16);
                for v in fire(&mut wheel, to) {
                    let (deadline, _, live) = &mut timers[v];
                    assert!(*live, "{v} fired twice or after cancel");
                    assert!(*deadline <= to);
                    *live = false;
                    pending -= 1;
                }
            }
            assert_eq!(wheel.len(), pending);
        }
        // Everything still pending is due later than now.
        let now = wheel.now();
        assert!(timers.iter().all(|&(d, _, live)| !live || d > now));
        let mut last = 0;
        for v in fire(&mut wheel, u64::MAX) {
            let (deadline, _, live) = &mut timers[v];
            assert!(*live);
            assert!(*deadline >= last, "out of order");
            last = *deadline;
            *live = false;
        }
        assert!(wheel.is_empty());
        assert!(timers.iter().all(|t| !t.2));
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    enum Op {
        /// Insert at `now() + offset`, or `now() - back` when `past`.
        Insert { offset: u64, past: bool },
        /// Cancel the `pick`-th key ever issued (modulo the count).
        Cancel { pick: usize },
        /// Advance by `step` (backwards when `back`).
        Advance { step: u64, back: bool },
    }

    /// Values spread over very different magnitudes.
    fn magnitude() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..4,
            4 => 0u64..64,
            3 => 0u64..5000,
            2 => 0u64..(1 << 21),
            2 => 0u64..(1 << 37),
            1 => 0u64..(1 << 45),
            1 => 0u64..u64::MAX / 4,
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (magnitude(), prop::bool::weighted(0.1))
                .prop_map(|(offset, past)| Op::Insert { offset, past }),
            2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
            4 => (magnitude(), prop::bool::weighted(0.05))
                .prop_map(|(step, back)| Op::Advance { step, back }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_model(ops in prop::collection::vec(op(), 1..200)) {
            let mut wheel = Wheel::new();
            let mut now = 0u64;
            // value -> deadline, for pending timers.
            let mut model: BTreeMap<u64, u64> = BTreeMap::new();
            let mut keys: Vec<(TimerKey, u64)> = Vec::new();
            let mut next_value = 0u64;

            for op in ops {
                match op {
                    Op::Insert { offset, past } => {
                        let deadline = if past {
                            now.saturating_sub(offset)
                        } else {
                            now.saturating_add(offset)
                        };
                        let key = wheel.insert(deadline, next_value);
                        model.insert(next_value, deadline);
                        keys.push((key, next_value));
                        next_value += 1;
                    }
                    Op::Cancel { pick } => {
                        if !keys.is_empty() {
                            let (key, value) = keys[pick % keys.len()];
                            let expect = model.remove(&value).map(|_| value);
                            prop_assert_eq!(wheel.cancel(key), expect);
                        }
                    }
                    Op::Advance { step, back } => {
                        let to = if back {
                            now.saturating_sub(step)
                        } else {
                            now.saturating_add(step)
                        };
                        let before = now;
                        now = now.max(to);
                        let mut fired = Vec::new();
                        wheel.advance(to, &mut fired);
                        prop_assert_eq!(wheel.now(), now);

                        // Fired in non-decreasing effective deadline.
                        let effective: Vec<u64> = fired
                            .iter()
                            .map(|v| model.get(v).copied().unwrap_or(u64::MAX).max(before))
                            .collect();
                        prop_assert!(effective.windows(2).all(|w| w[0] <= w[1]),
                            "order: {:?}", effective);

                        let mut got = fired;
                        got.sort_unstable();
                        let expect: Vec<u64> = model
                            .iter()
                            .filter(|&(_, &d)| d <= now)
                            .map(|(&v, _)| v)
                            .collect();
                        prop_assert_eq!(&got, &expect);
                        for v in expect {
                            model.remove(&v);
                        }
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
                prop_assert_eq!(wheel.is_empty(), model.is_empty());
                let earliest = model.values().copied().min();
                match (wheel.next_expiry(), earliest) {
                    (None, None) => {}
                    (Some(next), Some(min)) => {
                        prop_assert!(next >= now, "next {} before now {}", next, now);
                        prop_assert!(next <= min.max(now), "next {} after earliest {}", next, min);
                    }
                    other => prop_assert!(false, "next_expiry mismatch: {:?}", other),
                }
            }
        }
    }
}
