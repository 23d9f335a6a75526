//! A batch of tasks queued as one job: the tasks a cancellation sweep
//! woke (`Scheduler::schedule_cancelled`).
//!
//! A region's sweep wakes every task it cancels. Queued one by one, each
//! costs a push into the worker's deque and a pop out of it, and a drain of
//! more than 64 tasks grows the deque's buffer and shrinks it again
//! (crossbeam's deque reallocates through its epoch collector): about 150
//! instructions per task, more than a fifth of the drain. Queued as one
//! job, they cost one push and one pop for all of them.
//!
//! A batch is still reachable by idle workers while it runs (so a task in
//! it is not stranded behind one of its siblings whose poll blocks): the
//! worker that starts it queues a second reference to it first, and the
//! tasks are handed out one at a time by an atomic index, to whichever
//! holder asks next ([`Batch::take`]).

use std::sync::Arc;

use crate::loom::{AtomicUsize, Ordering};
use crate::task::TaskRef;

/// Tasks already marked `SCHEDULED`, to be run once each.
pub(crate) struct Batch {
    /// The tasks; slot `i` is moved out (read, never written) by whoever
    /// takes index `i`, and `drop` drops the slots never taken.
    tasks: Vec<TaskRef>,
    /// The next index to hand out (may run past the end).
    next: AtomicUsize,
}

// SAFETY: each slot is read by exactly one thread, the one whose
// `fetch_add` returned its index (`take`), or by `drop` with `&mut self`
// for the slots never handed out; the tasks themselves are `Send + Sync`.
unsafe impl Send for Batch {}
// SAFETY: as above: shared access to a slot is impossible, the index
// hands each out once.
unsafe impl Sync for Batch {}

impl Batch {
    /// A batch of `tasks` (each one's state says `SCHEDULED` already).
    pub(crate) fn new(tasks: Vec<TaskRef>) -> Arc<Batch> {
        Arc::new(Batch {
            tasks,
            next: AtomicUsize::new(0),
        })
    }

    /// Whether more than one task is left to hand out (a hint: another
    /// holder may be taking them meanwhile).
    pub(crate) fn several_left(&self) -> bool {
        // Relaxed: a hint for whether to queue a second reference; `take`
        // is what hands out each task, once.
        self.next.load(Ordering::Relaxed) + 1 < self.tasks.len()
    }

    /// The next task not yet handed out to any holder of the batch.
    pub(crate) fn take(&self) -> Option<TaskRef> {
        // Relaxed: only the RMW's atomicity matters (each index goes to one
        // caller); the slots' contents were published to every holder by
        // the queue that handed it the batch (crossbeam's deque and
        // injector push and pop with release and acquire).
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = self.tasks.get(i)?;
        // SAFETY: index `i` was handed out once, to us: nobody else reads
        // this slot, and `drop` skips it (it starts at `next`, past `i`),
        // so the reference is moved out exactly once.
        Some(unsafe { std::ptr::read(slot) })
    }

    /// Runs the tasks one by one until none is left to hand out.
    pub(crate) fn run_all(&self) {
        while let Some(t) = self.take() {
            t.run();
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Relaxed: `&mut self`: the last reference's drop (Arc's
        // release-acquire) ordered every `take` before this.
        let len = self.tasks.len();
        let from = self.next.load(Ordering::Relaxed).min(len);
        // SAFETY: the slots before `from` were moved out by `take`: the
        // vector forgets them (its length goes to 0 first, so a panicking
        // `Drop` below cannot drop one twice). The slots from `from` on
        // were never handed out: each still holds its task, dropped here
        // once (a batch dropped unrun, at shutdown, lets go of its tasks as
        // a queue of them would).
        unsafe {
            self.tasks.set_len(0);
            let rest =
                std::ptr::slice_from_raw_parts_mut(self.tasks.as_mut_ptr().add(from), len - from);
            std::ptr::drop_in_place(rest);
        }
    }
}
