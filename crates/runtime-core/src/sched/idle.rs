//! Parking and waking idle workers without losing a wake-up.
//!
//! A worker that runs out of work registers itself as a sleeper, then
//! (after a SeqCst fence) looks at the queues once more, and only then
//! parks. Whoever makes work available pushes it, fences (SeqCst), and then
//! reads the sleeper count. The two fences order the two sides: either the
//! worker's second look sees the work, or the pusher sees the sleeper and
//! unparks it. The common case (nobody asleep) is a fence and one load,
//! no lock. Going to sleep, waking up, and waking someone lock the list
//! of sleepers (`list`), and the unpark that follows locks the worker's
//! thread slot (`Shared::threads` in `pool.rs`): a wake that must rouse a
//! parked worker takes two short locks (see the table in `sched/mod.rs`).
//!
//! Sleeping without bound ("deep"). A task woken into a worker's LIFO
//! slot wakes nobody (it is meant to run next, on that worker); if that
//! worker's poll then blocks, an idle worker must come and steal it. So a
//! worker parks without bound only when every worker is a registered
//! sleeper, and a worker that wakes up while every other one sleeps deep
//! wakes one of them to watch (it parks at most the stranded bound while
//! anyone is awake). The same fence pairing orders the two sides: either
//! the sleeper's look at the sleeper count sees the waking worker (and it
//! parks with a bound), or the waking worker sees it counted deep (and
//! wakes it).
//!
//! Both protocols are checked by the loom models `idle_park_loses_no_wakeup`
//! and `idle_deep_sleep_always_has_a_watcher` in `src/loom_tests.rs`.

use crate::loom::{AtomicUsize, Mutex, Ordering, fence, lock};

pub(crate) struct Idle {
    sleepers: AtomicUsize,
    /// Sleepers parked without bound (or longer than the stranded bound).
    deep: AtomicUsize,
    list: Mutex<Vec<usize>>,
    workers: usize,
}

impl Idle {
    pub(crate) fn new(workers: usize) -> Self {
        Idle {
            sleepers: AtomicUsize::new(0),
            deep: AtomicUsize::new(0),
            list: Mutex::new(Vec::new()),
            workers,
        }
    }

    /// For a registered sleeper that found no work and would park longer
    /// than the stranded bound: whether it may (every worker sleeps). If
    /// so it is counted deep until [`woke_from_deep`](Self::woke_from_deep);
    /// if not it must park at most the stranded bound.
    pub(crate) fn try_sleep_deep(&self) -> bool {
        // SeqCst (here and in the fence and load below): the sleeper's half
        // of the deep-sleep pairing (module docs): count ourselves deep, then
        // look at the sleeper count; `needs_watcher` does the mirror image.
        self.deep.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) >= self.workers {
            return true;
        }
        // SeqCst: part of the same pairing; undoing our count before we park
        // with a bound.
        self.deep.fetch_sub(1, Ordering::SeqCst);
        false
    }

    /// A deep sleeper is up again.
    pub(crate) fn woke_from_deep(&self) {
        // SeqCst: as in `try_sleep_deep`.
        self.deep.fetch_sub(1, Ordering::SeqCst);
    }

    /// For a worker that has just woken up (and is no longer a registered
    /// sleeper): whether every other worker sleeps deep, so that it must
    /// wake one to watch its LIFO slot.
    pub(crate) fn needs_watcher(&self) -> bool {
        if self.workers < 2 {
            return false;
        }
        // SeqCst fence and load: the waking worker's half of the deep-sleep
        // pairing: it is no longer a sleeper (unregistered) before this, so
        // either a would-be deep sleeper sees it awake, or this sees it deep.
        fence(Ordering::SeqCst);
        self.deep.load(Ordering::SeqCst) + 1 >= self.workers
    }

    /// Registers worker `index` as about to sleep. The caller must look for
    /// work once more after this, and call [`unregister`](Self::unregister)
    /// if it finds some (or when it wakes up).
    pub(crate) fn register(&self, index: usize) {
        let mut list = lock(&self.list);
        if !list.contains(&index) {
            list.push(index);
        }
        // SeqCst store, then the fence below: the sleeper's half of the
        // park/wake pairing (module docs): the caller's look at the queues
        // comes after, and `pick` fences before it reads the count.
        self.sleepers.store(list.len(), Ordering::SeqCst);
        drop(list);
        fence(Ordering::SeqCst);
    }

    /// Removes worker `index` from the sleepers (if a waker has not already).
    pub(crate) fn unregister(&self, index: usize) {
        let mut list = lock(&self.list);
        if let Some(pos) = list.iter().position(|&i| i == index) {
            list.swap_remove(pos);
            // SeqCst: every write of `sleepers` is under `list` and SeqCst, so
            // the count the fenced readers see is the list's.
            self.sleepers.store(list.len(), Ordering::SeqCst);
        }
    }

    /// After making work available: picks a sleeper to unpark, if any.
    pub(crate) fn pick(&self) -> Option<usize> {
        // SeqCst fence and load: the waker's half of the park/wake pairing:
        // the work was pushed before this fence, the sleeper registered before
        // its own; one of the two sees the other. No sleeper: no lock.
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut list = lock(&self.list);
        let picked = list.pop();
        // SeqCst: as in `unregister`.
        self.sleepers.store(list.len(), Ordering::SeqCst);
        picked
    }

    /// Every sleeper (to unpark them all, at shutdown).
    pub(crate) fn take_all(&self) -> Vec<usize> {
        let mut list = lock(&self.list);
        // SeqCst: as in `unregister`.
        self.sleepers.store(0, Ordering::SeqCst);
        std::mem::take(&mut *list)
    }
}
