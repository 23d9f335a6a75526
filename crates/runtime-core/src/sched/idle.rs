//! Parking and waking idle workers without losing a wake-up.
//!
//! A worker that runs out of work registers itself as a sleeper, then
//! (after a SeqCst fence) looks at the queues once more, and only then
//! parks. Whoever makes work available pushes it, fences (SeqCst), and then
//! reads the sleeper count. The two fences order the two sides: either the
//! worker's second look sees the work, or the pusher sees the sleeper and
//! unparks it. The common case (nobody asleep) is one load, no lock; the
//! list of sleepers is locked only to go to sleep or to wake someone.
//! Checked by the loom model in `tests/loom_core.rs`... in `mod loom_tests`.

use crate::loom::{AtomicUsize, Mutex, Ordering, fence, lock};

pub(crate) struct Idle {
    sleepers: AtomicUsize,
    list: Mutex<Vec<usize>>,
}

impl Idle {
    pub(crate) fn new() -> Self {
        Idle {
            sleepers: AtomicUsize::new(0),
            list: Mutex::new(Vec::new()),
        }
    }

    /// Registers worker `index` as about to sleep. The caller must look for
    /// work once more after this, and call [`unregister`](Self::unregister)
    /// if it finds some (or when it wakes up).
    pub(crate) fn register(&self, index: usize) {
        let mut list = lock(&self.list);
        if !list.contains(&index) {
            list.push(index);
        }
        self.sleepers.store(list.len(), Ordering::SeqCst);
        drop(list);
        fence(Ordering::SeqCst);
    }

    /// Removes worker `index` from the sleepers (if a waker has not already).
    pub(crate) fn unregister(&self, index: usize) {
        let mut list = lock(&self.list);
        if let Some(pos) = list.iter().position(|&i| i == index) {
            list.swap_remove(pos);
            self.sleepers.store(list.len(), Ordering::SeqCst);
        }
    }

    /// After making work available: picks a sleeper to unpark, if any.
    pub(crate) fn pick(&self) -> Option<usize> {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut list = lock(&self.list);
        let picked = list.pop();
        self.sleepers.store(list.len(), Ordering::SeqCst);
        picked
    }

    /// Every sleeper (to unpark them all, at shutdown).
    pub(crate) fn take_all(&self) -> Vec<usize> {
        let mut list = lock(&self.list);
        self.sleepers.store(0, Ordering::SeqCst);
        std::mem::take(&mut *list)
    }
}
