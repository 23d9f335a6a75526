//! A bounded multi-producer, single-consumer queue whose push cost does not
//! grow with the number of producers.
//!
//! Every other bounded MPSC queue a user would pick (a `Mutex<VecDeque>`,
//! crossbeam's `ArrayQueue`, a bounded channel) has one shared index that
//! every push writes: one contended cache line per item, so such a queue
//! slows down as producers are added. (On the 16-core Xeon of the
//! anchors, `ArrayQueue` fell from 30.6 M items/s with one producer to
//! 2.5 M with fifteen:
//! `../shared/anchors/anchor-bench/results/2026-11-27-h100-16core-xeon.txt`.
//! On a 2-core VM, where the producers time-slice, it barely falls: 79 M
//! and 72 M with eight, against 345 M and 178 M for this crate's rings and
//! 294 M and 244 M for its pooled queue; `docs/queue-performance.md` has
//! the run, 2026-12-01, with its machine.)
//!
//! This queue gives **each producer handle its own lane**: a ring with a
//! single writer. A push touches only its own lane's slot and counters, with
//! plain loads and stores (no read-modify-write, no lock, no system call, no
//! allocation). The single consumer visits the lanes in turn and claims a
//! whole run of items from a lane with one compare-and-swap, so the shared
//! synchronisation is paid once per batch, not once per item.
//!
//! ```
//! use std::thread;
//!
//! let (tx, mut rx) = otlp_queue::bounded::<u64>(1024);
//! let workers: Vec<_> = (0..4)
//!     .map(|t| {
//!         let tx = tx.clone(); // one lane per thread
//!         thread::spawn(move || {
//!             for i in 0..1000 {
//!                 let mut v = t << 32 | i;
//!                 // Lossless: retry while the lane is full.
//!                 while let Err(e) = tx.try_push(v) {
//!                     v = e.into_inner();
//!                     thread::yield_now();
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! drop(tx); // the queue closes when the last producer is gone
//!
//! let mut got = Vec::new();
//! while !rx.is_closed() {
//!     rx.pop_batch(&mut got, 256);
//! }
//! for w in workers { w.join().unwrap(); }
//! assert_eq!(got.len(), 4000);
//! ```
//!
//! # Two queues
//!
//! [`bounded`] (this page) gives each producer a ring of its own: the
//! queue holds up to `capacity x producers` items, and a producer can evict
//! its own oldest item ([`Producer::force_push`]).
//! [`pooled::bounded_total`] bounds the **total** instead: every producer
//! still has a lane (same per-producer order, still no read-modify-write
//! per push), but the slots come from one shared pool of chunks, claimed
//! one chunk per compare-and-swap; memory is the pool plus one small chunk
//! per producer, whatever their number (no eviction there; see its docs).
//!
//! # Capacity
//!
//! `bounded(capacity)` gives every producer handle a lane of `capacity`
//! slots, so the queue holds at most `capacity × live producers` items,
//! plus what producers dropped with items inside left in their lanes
//! (kept, ring and all, until the consumer has taken them; a producer that
//! must not leave any calls `take_back` first).
//! Clone the producer once per thread (cloning allocates a lane and takes a
//! short lock); pushes never allocate. A capacity of 0 is refused
//! ([`CapacityError::Zero`]); a capacity of 1 works (each push must wait for
//! the consumer to take the previous item). A capacity whose lane cannot
//! exist or cannot be allocated is an error from [`try_bounded`] and
//! [`Producer::try_clone`] ([`CapacityError::TooLarge`],
//! [`CapacityError::OutOfMemory`]: the ring is allocated fallibly), never
//! an abort.
//!
//! A producer that goes away with its lane drained frees the lane's ring at
//! once (the consumer keeps only a small header until its next call), and
//! [`Producer::take_back`] lets a producer that is about to go take its
//! unconsumed items back out, so that a thread that exits need not leave a
//! full lane behind.
//!
//! # Operations
//!
//! | operation | when the lane is full | never |
//! |---|---|---|
//! | [`Producer::try_push`] | hands the value back (`Full`) | blocks |
//! | [`Producer::push_timeout`] | waits with backoff, then hands it back (`Timeout`) | loses it |
//! | [`Producer::force_push`] | evicts this lane's oldest item and hands *that* back | loses either |
//! | [`Producer::take_back`] | takes every item of this lane back out | loses one |
//! | [`Consumer::pop`], [`Consumer::pop_batch`] | — | block |
//! | [`Consumer::mark`], [`Consumer::passed`] | — | chase items pushed after the mark |
//!
//! # Promises, and the tests that check them
//!
//! * **Nothing lost, nothing dropped twice.** Every pushed item is popped,
//!   handed back by an error, handed back by an eviction, taken back by its
//!   producer, or (if the consumer is dropped with items inside) dropped
//!   exactly once. `tests/stress.rs` counts every item with a counting
//!   `Drop` type, including when either side is dropped while items are
//!   inside; `tests/hostile.rs` does the same with producers taking items
//!   back while the consumer pops; the loom models in `tests/loom.rs` check
//!   it for every interleaving of small cases (`take_back_races_pop_batch`,
//!   `producer_drop_frees_the_ring_after_the_last_copy` among them).
//! * **No capacity aborts or panics `try_bounded`.** Capacities beyond
//!   memory or `isize::MAX` bytes are errors
//!   (`tests/hostile.rs::capacities_no_machine_holds_are_errors_not_aborts`).
//! * **Per-producer FIFO.** Items from one producer handle come out in the
//!   order they were pushed (`tests/stress.rs`, `tests/model.rs`).
//! * **Closing.** When every producer is dropped, the consumer drains what is
//!   left and then sees [`TryPopError::Closed`]; when the consumer is dropped,
//!   pushes fail with `Closed` (`tests/loom.rs`, `tests/stress.rs`,
//!   `tests/edges.rs`).
//! * **The push path takes no lock and allocates nothing.** No lock is
//!   reachable from `try_push`, `force_push` or `push_timeout`'s fast path
//!   (see *Progress*); `tests/no_alloc.rs` counts allocations with a
//!   counting global allocator and asserts none in steady state, for pushes
//!   and for `pop_batch` into a vector with room, in both queues (the
//!   pooled one: `pooled_push_and_pop_allocate_nothing_in_steady_state`).
//!   The pooled queue's one lock on a push path: a
//!   [`pooled::Producer::try_push_in_place_or`] refused at a chunk
//!   boundary while adopted items are short of cover (see [`pooled`]).
//!
//! # Progress
//!
//! * `try_push` is **wait-free**: a bounded number of its own steps, whatever
//!   other threads do. A producer preempted in the middle of a push delays
//!   only its own item (the consumer sees that slot as not yet filled and
//!   moves on to the other lanes); it blocks no other producer and not the
//!   consumer.
//! * `pop` and `pop_batch` are wait-free against plain pushes and lock-free
//!   against evictions (the claim CAS fails only if an eviction made
//!   progress). They take a lock only when a producer was added or retired
//!   since the last call (the pooled consumer also takes the pool's lock
//!   to hold chunks while adopted items are short of cover).
//! * A consumer preempted in the middle of a batch leaves the slots it has
//!   claimed but not yet read occupied: producers of that lane see `Full` for
//!   those slots until it resumes, and `force_push` (and `take_back`) on
//!   that lane waits for it. Dropping a producer never waits: a drained
//!   lane whose last run the consumer is still copying out is freed by the
//!   consumer's next call instead of at once.
//! * Cloning a producer, and the consumer noticing a new or finished lane,
//!   take a short lock on the lane registry. Neither is on the push path.
//!
//! # Memory orderings
//!
//! Every atomic operation carries a comment saying why its ordering is
//! enough; the protocol itself is described in the `lane` module. The code is
//! model-checked with [loom](https://docs.rs/loom): run
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p otlp-queue --test loom --release`.
#![warn(missing_docs)]

mod error;
mod lane;
mod loom;
pub mod pooled;
mod prefetch;
mod queue;
mod unwind;

pub use error::{CapacityError, ClosedError, PushError, PushTimeoutError, TryPopError};
pub use queue::{Consumer, MAX_CAPACITY, Mark, Producer, QueueCounters, bounded, try_bounded};
