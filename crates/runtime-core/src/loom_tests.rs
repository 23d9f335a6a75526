//! Loom models of the task state machine, the waker slot, worker parking,
//! and regions' child registry with the adopt-versus-cancel protocol it
//! carries. Run with `cargo xtask loom` (`--cfg loom`,
//! `LOOM_MAX_PREEMPTIONS=2`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use loom::sync::Mutex;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

use crate::blocking::BlockingPool;
use crate::budget::Budget;
use crate::budget::CleanupBudget;
use crate::cancel::{CancelKind, CancelReason, Cancelled};
use crate::cx::spawn_in;
use crate::region::Region;
use crate::registry::Registry;
use crate::sched::idle::Idle;
use crate::sched::{Schedule, Scheduler, Stats};
use crate::sync::WakerSlot;
use crate::task::{JoinHandle, TaskRef};
use crate::time::Instant;
use crate::time::driver::{TimerAction, TimerDriver, TimerHandle};

/// A scheduler that only queues: the model's main thread runs the queue.
struct Mock {
    queue: Mutex<VecDeque<TaskRef>>,
    timers: TimerDriver,
    stats: Stats,
    ids: AtomicUsize,
}

impl Mock {
    fn new() -> Arc<Mock> {
        Arc::new(Mock {
            queue: Mutex::new(VecDeque::new()),
            timers: TimerDriver::new(),
            stats: Stats::default(),
            ids: AtomicUsize::new(1),
        })
    }

    /// Runs queued tasks until none is left.
    fn run_all(&self) {
        loop {
            let next = self.queue.lock().unwrap().pop_front();
            match next {
                Some(t) => t.run(),
                None => return,
            }
        }
    }
}

impl Scheduler for Mock {
    fn schedule(&self, task: TaskRef, _how: Schedule) {
        let mut q = self.queue.lock().unwrap();
        // A task is never in the queue twice.
        assert!(
            !q.iter().any(|t| TaskRef::ptr_eq(t, &task)),
            "task enqueued twice"
        );
        q.push_back(task);
    }
    fn now(&self) -> Instant {
        Instant::ZERO
    }
    fn insert_timer(&self, at: Instant, action: TimerAction) -> TimerHandle {
        self.timers.insert(at, action).0
    }
    fn cancel_timer(&self, handle: TimerHandle) {
        self.timers.cancel(handle, &self.stats);
    }
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) as u64
    }
    fn stats(&self) -> &Stats {
        &self.stats
    }
    fn blocking(&self) -> Option<&BlockingPool> {
        None
    }
}

/// Pending until `flag` is set; registers its waker under the same lock.
struct Gate {
    flag: Arc<Mutex<(bool, Option<Waker>)>>,
    polls: Arc<AtomicUsize>,
}

impl Future for Gate {
    type Output = Result<u32, ()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        let mut g = self.flag.lock().unwrap();
        if g.0 {
            return Poll::Ready(Ok(7));
        }
        g.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn open(flag: &Arc<Mutex<(bool, Option<Waker>)>>) -> Option<Waker> {
    let mut g = flag.lock().unwrap();
    g.0 = true;
    g.1.take()
}

fn setup() -> (Arc<Mock>, Arc<Region>) {
    let sched = Mock::new();
    let dyn_sched: Arc<dyn Scheduler> = sched.clone();
    let root = Region::root(dyn_sched, CleanupBudget::UNLIMITED);
    (sched, root)
}

/// A wake from another thread, racing the task's poll, is never lost:
/// the task ends up polled after the flag is set and completes once.
#[test]
fn wake_racing_poll_is_not_lost() {
    loom::model(|| {
        let (sched, root) = setup();
        let flag = Arc::new(Mutex::new((false, None)));
        let polls = Arc::new(AtomicUsize::new(0));
        let (f, p) = (flag.clone(), polls.clone());
        let h: JoinHandle<u32, ()> = spawn_in(&root, Budget::UNLIMITED, 0, move |_cx| Gate {
            flag: f,
            polls: p,
        });
        let waker = thread::spawn(move || {
            if let Some(w) = open(&flag) {
                w.wake();
            }
        });
        sched.run_all();
        waker.join().unwrap();
        sched.run_all();
        assert!(h.is_finished(), "lost wake-up");
        assert!(polls.load(Ordering::Relaxed) <= 2);
        assert_eq!(sched.stats.snapshot().tasks_alive(), 0);
    });
}

/// Two wakers at once while the task runs: it is queued at most once
/// (the mock asserts) and completes.
#[test]
fn concurrent_wakes_enqueue_once() {
    loom::model(|| {
        let (sched, root) = setup();
        let flag = Arc::new(Mutex::new((false, None)));
        let polls = Arc::new(AtomicUsize::new(0));
        let (f, p) = (flag.clone(), polls.clone());
        let h: JoinHandle<u32, ()> = spawn_in(&root, Budget::UNLIMITED, 0, move |_cx| Gate {
            flag: f,
            polls: p,
        });
        sched.run_all(); // pending, waker stored
        let w = flag.lock().unwrap().1.clone().unwrap();
        let w2 = w.clone();
        let t1 = thread::spawn(move || w.wake());
        let t2 = thread::spawn(move || w2.wake_by_ref());
        let _ = open(&flag);
        sched.run_all();
        t1.join().unwrap();
        t2.join().unwrap();
        sched.run_all();
        assert!(h.is_finished());
    });
}

/// A cancel request from another thread while the task runs is seen at
/// the task's next checkpoint; the task ends Cancelled.
#[test]
fn cancel_racing_run_is_observed() {
    loom::model(|| {
        let (sched, root) = setup();
        let mut h: JoinHandle<(), Cancelled> =
            spawn_in(&root, Budget::UNLIMITED, 0, |cx| async move {
                loop {
                    cx.yield_now().await?;
                }
            });
        let canceller = {
            let root = root.clone();
            thread::spawn(move || root.cancel(&CancelReason::user("stop")))
        };
        // Run a bounded number of turns until the task finishes.
        for _ in 0..4 {
            let next = sched.queue.lock().unwrap().pop_front();
            if let Some(t) = next {
                t.run();
            }
        }
        canceller.join().unwrap();
        sched.run_all();
        assert!(h.is_finished());
        let waker = futures_noop();
        let out = Pin::new(&mut h).poll(&mut Context::from_waker(&waker));
        match out {
            Poll::Ready(o) => assert_eq!(o.cancel_reason().unwrap().message(), Some("stop")),
            Poll::Pending => panic!("finished but not ready"),
        }
    });
}

fn futures_noop() -> Waker {
    Waker::noop().clone()
}

/// The waker slot: a wake racing a registration is never lost.
#[test]
fn waker_slot_register_vs_wake() {
    loom::model(|| {
        let slot = Arc::new(WakerSlot::new());
        let woken = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(false));
        let waker = Waker::from(Arc::new(Flag(woken.clone())));
        let s = slot.clone();
        let r = ready.clone();
        let t = thread::spawn(move || {
            r.store(true, Ordering::SeqCst);
            s.wake();
        });
        // Register, then check readiness (the future's protocol).
        slot.register(&waker);
        let seen = ready.load(Ordering::SeqCst);
        t.join().unwrap();
        assert!(
            seen || woken.load(Ordering::SeqCst),
            "neither saw ready nor was woken"
        );
    });
}

struct Flag(Arc<AtomicBool>);
impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Worker parking: a worker that finds no work parks; a producer that
/// makes work and picks a sleeper; the worker always gets to the work.
#[test]
fn idle_park_loses_no_wakeup() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(1));
        let work = Arc::new(AtomicUsize::new(0));
        let worker_thread: Arc<Mutex<Option<thread::Thread>>> = Arc::new(Mutex::new(None));
        let (i2, w2, wt2) = (idle.clone(), work.clone(), worker_thread.clone());
        let worker = thread::spawn(move || {
            *wt2.lock().unwrap() = Some(thread::current());
            loop {
                if w2.load(Ordering::SeqCst) > 0 {
                    return;
                }
                i2.register(0);
                if w2.load(Ordering::SeqCst) > 0 {
                    i2.unregister(0);
                    return;
                }
                thread::park();
                i2.unregister(0);
            }
        });
        work.fetch_add(1, Ordering::SeqCst);
        if let Some(i) = idle.pick() {
            assert_eq!(i, 0);
            // The worker registered before it could park; its handle is set.
            if let Some(t) = worker_thread.lock().unwrap().as_ref() {
                t.unpark();
            }
        }
        worker.join().unwrap();
    });
}

/// Deep sleep: a worker parks without bound only when every worker sleeps;
/// a worker that wakes while the other sleeps deep wakes it to watch. In
/// every interleaving of one worker going to sleep with the other waking
/// up, the first either parks with a bound or is picked by the second.
#[test]
fn idle_deep_sleep_always_has_a_watcher() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(2));
        idle.register(1);
        let i2 = idle.clone();
        let sleeper = thread::spawn(move || {
            i2.register(0);
            i2.try_sleep_deep()
        });
        idle.unregister(1);
        let picked = if idle.needs_watcher() {
            idle.pick()
        } else {
            None
        };
        let deep = sleeper.join().unwrap();
        if deep {
            assert_eq!(picked, Some(0), "a deep sleeper with nobody to watch");
        }
    });
}

// ---------------------------------------------------------------------
// The child registry (`registry.rs`) and the region protocol over it.
// ---------------------------------------------------------------------

/// The registry alone: two threads push (one of them twice) while a third
/// takes; a last take after they finish. Every value comes out exactly
/// once, each pusher's in its order, and the count ends at zero. Loom's
/// cells also check that a taker reads each node's value and link only
/// after its push (a causality violation otherwise).
#[test]
fn registry_concurrent_pushes_and_take_lose_and_duplicate_nothing() {
    pushes_racing_one_taker(Registry::take);
}

/// The same with `take_locked` (one taker at a time, as under the region's
/// `swept` lock), whose count of taken values is a load and a store: the
/// length still ends at zero (a push's count racing it is not lost; with
/// one counter for pushes and takes, updated so, it would be).
#[test]
fn registry_concurrent_pushes_and_locked_take_keep_the_length() {
    pushes_racing_one_taker(Registry::take_locked);
}

fn pushes_racing_one_taker(take: fn(&Registry<u32>) -> crate::registry::Taken<u32>) {
    loom::model(move || {
        let r = Arc::new(Registry::new());
        let (r1, r2, r3) = (r.clone(), r.clone(), r.clone());
        let p1 = thread::spawn(move || {
            r1.push(10);
            r1.push(11);
        });
        let p2 = thread::spawn(move || r2.push(20));
        let taker = thread::spawn(move || take(&r3).collect::<Vec<_>>());
        p1.join().unwrap();
        p2.join().unwrap();
        let mut all = taker.join().unwrap();
        let first = all.len();
        all.extend(take(&r));
        // Per pusher, in push order, within each take.
        for part in [&all[..first], &all[first..]] {
            let ones: Vec<_> = part.iter().filter(|v| **v < 20).collect();
            assert!(
                ones.windows(2).all(|w| w[0] < w[1]),
                "out of order: {all:?}"
            );
        }
        all.sort_unstable();
        assert_eq!(all, [10, 11, 20], "lost or duplicated");
        assert_eq!(r.len(), 0);
    });
}

/// Two takers racing a pusher: each value goes to exactly one of them (or
/// stays for the last take), never to both.
#[test]
fn registry_two_takers_never_share_a_value() {
    loom::model(|| {
        let r = Arc::new(Registry::new());
        let (r1, r2) = (r.clone(), r.clone());
        let pusher = thread::spawn(move || {
            r1.push(1);
            r1.push(2);
        });
        let taker = thread::spawn(move || r2.take().collect::<Vec<_>>());
        let mut all: Vec<_> = r.take().collect();
        pusher.join().unwrap();
        all.extend(taker.join().unwrap());
        all.extend(r.take());
        all.sort_unstable();
        assert_eq!(all, [1, 2], "lost or duplicated");
        assert_eq!(r.len(), 0);
    });
}

/// The bit of the live count that closes a region (as in `region/mod.rs`).
const CLOSED: usize = 1 << (usize::BITS - 1);

/// `Region`'s registry protocol with everything else stripped:
/// the live count, the cancel flag (`CancelCell`'s pointer, stored
/// `SeqCst`, loaded `SeqCst`, both only `Release`/`Acquire` under loom),
/// the registry, and the sweeper-owned vector every taker moves children
/// into under its lock.
struct Proto {
    live: AtomicUsize,
    cancel: AtomicBool,
    children: Registry<usize>,
    swept: Mutex<Vec<usize>>,
    /// Child ids the adopter cancelled itself, and those a sweep cancelled.
    by_adopter: Mutex<Vec<usize>>,
    by_sweep: Mutex<Vec<usize>>,
}

impl Proto {
    fn new() -> Arc<Proto> {
        Arc::new(Proto {
            live: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
            children: Registry::new(),
            swept: Mutex::new(Vec::new()),
            by_adopter: Mutex::new(Vec::new()),
            by_sweep: Mutex::new(Vec::new()),
        })
    }

    /// `Region::adopt_task`: count live (refused once closed), push,
    /// then apply a pending cancel.
    fn adopt(&self, child: usize) -> bool {
        if self.live.fetch_add(1, Ordering::SeqCst) & CLOSED != 0 {
            self.live.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        self.children.push(child);
        if self.cancel.load(Ordering::SeqCst) {
            self.by_adopter.lock().unwrap().push(child);
        }
        true
    }

    /// `Region::cancel`: store the request, then sweep: the children
    /// seen before and those registered since get the reason.
    fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        let mut swept = self.swept.lock().unwrap();
        swept.extend(self.children.take());
        self.by_sweep.lock().unwrap().extend(swept.iter().copied());
    }

    /// `Region::cut_off_all` (and the compaction sweep with no cancel
    /// yet): another taker, moving children into the vector under its lock.
    fn other_take(&self) {
        let mut swept = self.swept.lock().unwrap();
        swept.extend(self.children.take());
    }

    /// After every thread finished: each adopted child was cancelled by
    /// its adopter, by the sweep, or both; never by neither.
    fn assert_none_escaped(&self, adopted: &[usize]) {
        let a = self.by_adopter.lock().unwrap();
        let s = self.by_sweep.lock().unwrap();
        for c in adopted {
            assert!(
                a.contains(c) || s.contains(c),
                "child {c} escaped cancellation (adopter saw no cancel, sweep did not find it)"
            );
        }
        // Nothing is lost from the registry either.
        let mut all: Vec<usize> = self.swept.lock().unwrap().clone();
        all.extend(self.children.take());
        all.sort_unstable();
        assert_eq!(all, adopted, "registry lost or duplicated a child");
    }
}

/// Adopt versus cancel: one thread adopts a child (live count, push, then
/// reads the cancel flag) while another stores the cancel flag, then
/// sweeps. The child is cancelled by one path or both, never neither.
#[test]
fn registry_adopt_racing_cancel_never_escapes() {
    loom::model(|| {
        let p = Proto::new();
        let p2 = p.clone();
        let adopter = thread::spawn(move || p2.adopt(1));
        p.cancel();
        assert!(adopter.join().unwrap());
        p.assert_none_escaped(&[1]);
        assert_eq!(p.live.load(Ordering::SeqCst), 1);
    });
}

/// The same with a third thread taking the registry at the same time (a
/// cut-off, or a compaction sweep): a child it holds is in the swept
/// vector by the time the cancel's sweep holds the lock.
#[test]
fn registry_adopt_racing_cancel_and_another_taker_never_escapes() {
    loom::model(|| {
        let p = Proto::new();
        let (p2, p3) = (p.clone(), p.clone());
        let adopter = thread::spawn(move || p2.adopt(1));
        let taker = thread::spawn(move || p3.other_take());
        p.cancel();
        assert!(adopter.join().unwrap());
        taker.join().unwrap();
        p.assert_none_escaped(&[1]);
    });
}

/// Two adopters and a cancel: each child is reached, whichever order.
#[test]
fn registry_two_adopts_racing_cancel_never_escape() {
    loom::model(|| {
        let p = Proto::new();
        let (p2, p3) = (p.clone(), p.clone());
        let a1 = thread::spawn(move || p2.adopt(1));
        let a2 = thread::spawn(move || p3.adopt(2));
        p.cancel();
        assert!(a1.join().unwrap());
        assert!(a2.join().unwrap());
        p.assert_none_escaped(&[1, 2]);
    });
}

/// Adopt versus cut-off (`Region::adopt_task`'s cut-off of a task adopted
/// into a region already cut off): the cut-off swaps its flag (AcqRel, as
/// `cut_off_all` does) and then takes the registry under the lock; the
/// adopter pushes and then loads the flag (Acquire, as `is_cut_off`
/// does). The child is cut off by one path or both, never neither (found
/// by review: a task spawned after shutdown's last cut-off ran on).
#[test]
fn registry_adopt_racing_cut_off_never_escapes() {
    loom::model(|| {
        let p = Proto::new();
        let cut = Arc::new(AtomicBool::new(false));
        let (p2, cut2) = (p.clone(), cut.clone());
        let adopter = thread::spawn(move || {
            p2.children.push(1);
            if cut2.load(Ordering::Acquire) {
                p2.by_adopter.lock().unwrap().push(1);
            }
        });
        // The cut-off.
        cut.swap(true, Ordering::AcqRel);
        {
            let mut swept = p.swept.lock().unwrap();
            swept.extend(p.children.take());
            p.by_sweep.lock().unwrap().extend(swept.iter().copied());
        }
        adopter.join().unwrap();
        p.assert_none_escaped(&[1]);
    });
}

/// A task in `region` that yields forever (ends only when cancelled).
fn spawn_yielding_forever(region: &Arc<Region>) -> JoinHandle<(), Cancelled> {
    spawn_in(region, Budget::UNLIMITED, 0, |cx| async move {
        loop {
            cx.yield_now().await?;
        }
    })
}

/// Runs what is queued (a few turns: enough for a cancelled task to see its
/// request) and returns the task's outcome; fails if it has not finished.
fn run_until_cancelled(
    sched: &Mock,
    mut h: JoinHandle<(), Cancelled>,
) -> crate::Outcome<(), Cancelled> {
    for _ in 0..3 {
        let next = sched.queue.lock().unwrap().pop_front();
        if let Some(t) = next {
            t.run();
        }
    }
    assert!(
        h.is_finished(),
        "the task escaped the region's cancellation"
    );
    let waker = futures_noop();
    match Pin::new(&mut h).poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(o) => o,
        Poll::Pending => panic!("finished but not ready"),
    }
}

/// The real thing: a task spawned into a region from one thread while
/// another cancels the region. The task ends `Cancelled` with the reason
/// (if it escaped, it would keep yielding and not finish in the turns
/// given).
#[test]
fn region_spawn_racing_cancel_is_cancelled() {
    loom::model(|| {
        let (sched, root) = setup();
        let r = root.clone();
        let spawner = thread::spawn(move || spawn_yielding_forever(&r));
        root.cancel(&CancelReason::user("stop"));
        let o = run_until_cancelled(&sched, spawner.join().unwrap());
        assert_eq!(o.cancel_reason().unwrap().message(), Some("stop"));
    });
}

/// A spawn racing two cancels of its region, a weaker then a stronger one
/// from different threads: whichever sweep runs when (a request that
/// arrives during another's sweep makes that sweeper go again), the task
/// ends with the stronger reason.
#[test]
fn region_spawn_racing_two_cancels_gets_the_strongest() {
    loom::model(|| {
        let (sched, root) = setup();
        let (r1, r2) = (root.clone(), root.clone());
        let spawner = thread::spawn(move || spawn_yielding_forever(&r1));
        let weak = thread::spawn(move || r2.cancel(&CancelReason::user("stop")));
        root.cancel(&CancelReason::new(CancelKind::Shutdown));
        weak.join().unwrap();
        let o = run_until_cancelled(&sched, spawner.join().unwrap());
        assert_eq!(o.cancel_reason().unwrap().kind(), CancelKind::Shutdown);
    });
}

/// Two requests on one cancel cell from different threads, a weaker and a
/// stronger (the first takes the lock-free compare-and-swap, the other the
/// locked path, in either order), and a reader meanwhile: exactly one is
/// the first, the stronger ends up current, the reader sees nothing or a
/// whole reason, and dropping the cell gives back every count it took.
#[test]
fn cancel_cell_racing_requests_keep_the_strongest() {
    loom::model(|| weak_and_strong_requests_race(true, |c, w| c.request(&w)));
}

/// A weak (`User`) request that `first` makes on one thread racing a
/// strong (`Shutdown`) `request` on another, with a reader on this thread
/// when `read`: exactly one is first, the strong one ends up current, and
/// dropping the cell gives back every count it took (the test keeps both
/// reasons alive past the cell).
fn weak_and_strong_requests_race(
    read: bool,
    first: impl FnOnce(&crate::cancel::CancelCell, Arc<CancelReason>) -> Option<bool> + Send + 'static,
) {
    let cell = Arc::new(crate::cancel::CancelCell::new());
    let weak = Arc::new(CancelReason::user("stop"));
    let strong = Arc::new(CancelReason::new(CancelKind::Shutdown));
    let (c1, w) = (cell.clone(), weak.clone());
    let t1 = thread::spawn(move || first(&c1, w));
    let (c2, s) = (cell.clone(), strong.clone());
    let t2 = thread::spawn(move || c2.request(&s));
    if read {
        let seen = cell.get().map(|r| r.kind());
        assert!(matches!(
            seen,
            None | Some(CancelKind::User) | Some(CancelKind::Shutdown)
        ));
    }
    let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
    assert_eq!([r1, r2].iter().filter(|r| **r == Some(true)).count(), 1);
    assert_eq!(cell.get().map(|r| r.kind()), Some(CancelKind::Shutdown));
    drop(cell);
    assert_eq!(Arc::strong_count(&weak), 1);
    assert_eq!(Arc::strong_count(&strong), 1);
}

/// A borrowed first request (a region's sweep passing the region's reason
/// to a task, `CancelCell::request_borrowed`) racing an owned, stronger
/// one (a handle's cancel) and a reader: as above, exactly one is first,
/// the stronger ends up current, and the cell gives back exactly the
/// counts it took: none of the borrowed reason's (its owner, here the
/// test, keeps it alive past the cell), all of the owned one's.
#[test]
fn cancel_cell_borrowed_request_racing_an_owned_one() {
    loom::model(|| {
        weak_and_strong_requests_race(true, |c, w| {
            // SAFETY: the helper holds the reason until after the cell is
            // dropped (the stand-in for the region's cell).
            unsafe { c.request_borrowed(&w) }
        })
    });
}

/// An owned first request (a region's own cancel handing its reason's
/// count to the cell, `CancelCell::request_owned`) racing a borrowed-count
/// one: one is first, the stronger ends up current, and the cell gives
/// back every count it holds (the owned reason's, handed over, too).
#[test]
fn cancel_cell_owned_request_racing_another() {
    loom::model(|| weak_and_strong_requests_race(false, |c, w| c.request_owned(w)));
}

/// Two stronger requests racing after a first one: both take the locked
/// path, whose list the first of them to need it makes (the two race to
/// install it: one box wins, the other is freed). The strongest ends up
/// current and dropping the cell gives back every count it took.
#[test]
fn cancel_cell_later_requests_racing_make_one_list() {
    use crate::cancel::CancelCell;
    loom::model(|| {
        let cell = Arc::new(CancelCell::new());
        let user = Arc::new(CancelReason::user("stop"));
        let timeout = Arc::new(CancelReason::new(CancelKind::Timeout));
        let shutdown = Arc::new(CancelReason::new(CancelKind::Shutdown));
        assert_eq!(cell.request(&user), Some(true));
        let (c1, t) = (cell.clone(), timeout.clone());
        let t1 = thread::spawn(move || c1.request(&t));
        let (c2, s) = (cell.clone(), shutdown.clone());
        let t2 = thread::spawn(move || c2.request(&s));
        let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
        assert_eq!(r2, Some(false));
        assert!(matches!(r1, None | Some(false)));
        assert_eq!(cell.get().map(|r| r.kind()), Some(CancelKind::Shutdown));
        drop(cell);
        assert_eq!(Arc::strong_count(&user), 1);
        assert_eq!(Arc::strong_count(&timeout), 1);
        assert_eq!(Arc::strong_count(&shutdown), 1);
    });
}

/// Two threads making a `LazyMutex` at once (a task's list of open
/// regions): one box wins, the other is freed, and both pushes land in the
/// one list.
#[test]
fn lazy_mutex_made_by_two_threads_at_once_is_one() {
    use crate::sync::LazyMutex;
    loom::model(|| {
        let m: Arc<LazyMutex<Vec<u32>>> = Arc::new(LazyMutex::new());
        let m1 = m.clone();
        let t = thread::spawn(move || crate::loom::lock(m1.get()).push(1));
        crate::loom::lock(m.get()).push(2);
        t.join().unwrap();
        let mut v = crate::loom::lock(m.get_if_made().expect("made")).clone();
        v.sort_unstable();
        assert_eq!(v, [1, 2]);
    });
}

/// A child that fails on one thread while its region's owner task (and so
/// the region's close) may run on the other: the close sees the failure,
/// which the child recorded into the region's lazily made `worst` list
/// before it left the live count that the close waits on.
#[test]
fn a_failure_on_another_thread_reaches_the_close() {
    loom::model(|| {
        let (sched, root) = setup();
        let mut owner = spawn_in(&root, Budget::UNLIMITED, 0, |cx| async move {
            let out = cx
                .region_with(crate::RegionOptions::collect_all(), |cx| async move {
                    let _failing =
                        cx.spawn_with(Budget::UNLIMITED, |_| async { Err::<(), u32>(7) });
                    Ok::<_, ()>(())
                })
                .await;
            Ok::<_, ()>(matches!(
                out,
                crate::Outcome::Err(crate::region::RegionError::Child(_))
            ))
        });
        assert!(run_on_two_threads_to_ok(
            &sched,
            &mut owner,
            "the owner task did not finish"
        ));
    });
}

/// Runs `sched` on this thread and another until both find nothing to do,
/// then once more here, and returns `owner`'s `Ok` value: panics with
/// `pending` if it has not finished, or if it failed.
fn run_on_two_threads_to_ok(
    sched: &Arc<Mock>,
    owner: &mut JoinHandle<bool, ()>,
    pending: &str,
) -> bool {
    let other = sched.clone();
    let t = thread::spawn(move || other.run_all());
    sched.run_all();
    t.join().unwrap();
    sched.run_all();
    let waker = futures_noop();
    match Pin::new(owner).poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(crate::Outcome::Ok(v)) => v,
        Poll::Ready(_) => panic!("the owner task failed"),
        Poll::Pending => panic!("{pending}"),
    }
}

/// A handle dropped on another thread while its task finishes (`JOIN_GONE`
/// set before or after `finish`'s RMW) loses nothing: both tasks complete
/// once, and the handle that stayed (polled, so registered) sees the
/// outcome.
#[test]
fn join_handle_drop_racing_finish() {
    loom::model(|| {
        let (sched, root) = setup();
        let flag = Arc::new(Mutex::new((false, None)));
        let polls = Arc::new(AtomicUsize::new(0));
        let spawn = |flag: &Arc<Mutex<(bool, Option<Waker>)>>| {
            let (f, p) = (flag.clone(), polls.clone());
            let h: JoinHandle<u32, ()> = spawn_in(&root, Budget::UNLIMITED, 0, move |_cx| Gate {
                flag: f,
                polls: p,
            });
            h
        };
        let dropped = spawn(&flag);
        let flag2 = Arc::new(Mutex::new((false, None)));
        let mut joined = spawn(&flag2);
        sched.run_all(); // both pending
        let waker = futures_noop();
        assert!(
            Pin::new(&mut joined)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let dropper = thread::spawn(move || drop(dropped));
        for f in [&flag, &flag2] {
            if let Some(w) = open(f) {
                w.wake();
            }
        }
        sched.run_all();
        dropper.join().unwrap();
        sched.run_all();
        assert!(joined.is_finished());
        assert_eq!(sched.stats.snapshot().tasks_alive(), 0);
        match Pin::new(&mut joined).poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(o) => assert!(o.is_ok()),
            Poll::Pending => panic!("finished but not ready"),
        }
    });
}

/// A handle dropped on another thread while its task finishes, the output
/// holding the task's own context (a cycle through the task): whichever
/// comes second drops the output, so the task is freed. (The handle's
/// drop used to look at COMPLETE and then subtract: a finish between the
/// two kept the output for a handle that never took it.)
#[test]
fn join_handle_drop_racing_finish_drops_a_self_holding_output() {
    loom::model(|| {
        let (sched, root) = setup();
        let flag = Arc::new(Mutex::new((false, None)));
        let polls = Arc::new(AtomicUsize::new(0));
        let token = Arc::new(());
        let (f, p, t) = (flag.clone(), polls.clone(), token.clone());
        let h = spawn_in(&root, Budget::UNLIMITED, 0, move |cx| {
            let gate = Gate { flag: f, polls: p };
            async move { gate.await.map(|_| (cx, t)) }
        });
        sched.run_all(); // pending at the gate
        let dropper = thread::spawn(move || drop(h));
        if let Some(w) = open(&flag) {
            w.wake();
        }
        sched.run_all();
        dropper.join().unwrap();
        sched.run_all();
        assert_eq!(sched.stats.snapshot().tasks_alive(), 0);
        assert_eq!(Arc::strong_count(&token), 1, "the output was dropped");
    });
}

/// A region's close racing its last child's finish on another thread: the
/// closer's looks at the live count (a load before each compare-and-swap,
/// `Region::try_close_if_quiet`) around its registration never miss the
/// child's decrement and its wake together, so the owner task finishes
/// and the region closes once.
#[test]
fn region_close_racing_last_child_is_not_lost() {
    close_racing_last_child(false);
}

/// A region with one child that finishes on another thread while the
/// owner closes the region (after the body cancelled it, if
/// `cancel_in_body`): the owner finishes with the region `Ok`, the child's
/// handle is finished as soon as the close returns (`Task::finish` reports
/// to the region after COMPLETE; reported first, the close could return
/// between the two: this fails then), and nothing stays alive.
fn close_racing_last_child(cancel_in_body: bool) {
    loom::model(move || {
        let (sched, root) = setup();
        let mut owner = spawn_in(&root, Budget::UNLIMITED, 0, move |cx| async move {
            let out = cx
                .region_with(crate::RegionOptions::collect_all(), move |cx| async move {
                    let child = cx.spawn_with(Budget::UNLIMITED, |_| async { Ok::<u32, ()>(1) });
                    if cancel_in_body {
                        cx.cancel(CancelReason::user("the body cancels its own region"));
                    }
                    Ok::<_, ()>(child)
                })
                .await;
            let crate::Outcome::Ok(child) = out else {
                panic!("the region did not close Ok");
            };
            Ok::<_, ()>(child.is_finished())
        });
        assert!(
            run_on_two_threads_to_ok(&sched, &mut owner, "the close's wake was lost"),
            "a child's handle was not finished when its region closed"
        );
        assert_eq!(sched.stats.snapshot().tasks_alive(), 0);
    });
}

/// A region whose body cancels it (the owner task's re-poll requested in
/// that poll) and returns while its child still runs: the close's first
/// look registers no waker (`Region::poll_quiescent`: the re-poll is the
/// wake), the re-poll looks again and registers, and the child finishing
/// on another thread at any point of that is never missed: the owner
/// finishes and the region closes once. (Fails, "the close's wake was
/// lost", when the look skips its registration without a re-poll
/// requested, or whenever its region is cancelled: cases that
/// `region_close_racing_last_child_is_not_lost`, with no cancel, passes.)
#[test]
fn region_close_after_its_bodys_own_cancel_is_not_lost() {
    close_racing_last_child(true);
}

/// A finalizer registered from another thread while the region closes its
/// registration (`Region::next_finalizer`, lock-free when none was
/// registered): it is either handed to the close to run or refused and
/// counted as skipped, never both and never neither.
#[test]
fn finalizer_registered_racing_the_close_runs_or_is_counted() {
    loom::model(|| {
        let (sched, root) = setup();
        let r = root.clone();
        let t = thread::spawn(move || r.add_finalizer(Box::pin(async {})));
        let mut ran = 0;
        while let Some(f) = root.next_finalizer(false) {
            drop(f);
            ran += 1;
        }
        t.join().unwrap();
        let skipped = sched.stats.snapshot().finalizers_skipped;
        assert_eq!(ran + skipped, 1);
        // Registration stays closed.
        root.add_finalizer(Box::pin(async {}));
        assert_eq!(sched.stats.snapshot().finalizers_skipped, skipped + 1);
        assert!(root.next_finalizer(false).is_none());
    });
}

/// Counts its drops.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Pending forever; at its first poll it hands a clone of its waker out
/// (and keeps none), so only the hand-out holds the task through a waker.
struct HandOut {
    slot: Arc<Mutex<Option<Waker>>>,
    handed: bool,
    _guard: DropCount,
}

impl Future for HandOut {
    type Output = Result<(), ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.handed {
            self.handed = true;
            *self.slot.lock().unwrap() = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A task's strong count lives in its state word (`task/raw.rs`): the
/// handle lets go on one thread (`JOIN_GONE` and its count in one
/// subtraction), the handed-out waker on another (woken first, when
/// `wake`: the queue's count taken in the wake's compare-and-swap), while
/// the model's thread upgrades a weak reference and lets it go; then the
/// queue runs the task once more, whose run gives the queue's count back
/// in the compare-and-swap that leaves it idle. In every order the cell's
/// contents are dropped exactly once, after the last strong reference
/// (the future's drop counted once, the region's count back), and the
/// weak reference upgrades no more.
fn task_counts_let_go_once(wake: bool) {
    loom::model(move || {
        let (sched, root) = setup();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(Mutex::new(None::<Waker>));
        let (d, s) = (drops.clone(), slot.clone());
        let (task, registered, handle) = crate::task::new_task::<_, _, (), ()>(
            crate::TaskId(1),
            root.clone(),
            Budget::UNLIMITED,
            0,
            move |_cx| HandOut {
                slot: s,
                handed: false,
                _guard: DropCount(d),
            },
        );
        let weak = task.downgrade();
        drop(registered); // no region adopts it here
        sched.schedule(task, Schedule::Queue);
        sched.run_all(); // the first poll hands the waker out; idle
        let waker = slot.lock().unwrap().take().expect("handed out");
        let a = thread::spawn(move || drop(handle));
        let b = thread::spawn(move || {
            if wake {
                waker.wake();
            } else {
                drop(waker);
            }
        });
        drop(weak.upgrade());
        a.join().unwrap();
        b.join().unwrap();
        sched.run_all();
        assert_eq!(drops.load(Ordering::Relaxed), 1, "contents dropped once");
        assert!(weak.upgrade().is_none());
        assert_eq!(Arc::strong_count(&root), 1, "the header's region let go");
        drop(weak);
    });
}

#[test]
fn task_counts_let_go_once_with_a_wake() {
    task_counts_let_go_once(true);
}

#[test]
fn task_counts_let_go_once_without_a_wake() {
    task_counts_let_go_once(false);
}

/// A task in `root` that never runs here (its body is never polled), to
/// own regions; `adopted`: registered in `root`, as a spawn is.
fn owner_task(root: &Arc<Region>, adopted: bool) -> TaskRef {
    let (task, registered, handle) = crate::task::new_task::<_, _, (), ()>(
        crate::TaskId(1),
        root.clone(),
        Budget::UNLIMITED,
        0,
        |_cx| async { Ok(()) },
    );
    drop(handle);
    if adopted {
        assert!(root.adopt_task(&task, registered));
    } else {
        drop(registered);
    }
    task
}

/// Opens a region of `parent`, owned by `owner`, on another thread.
fn open_elsewhere(
    parent: &Arc<Region>,
    owner: &TaskRef,
) -> thread::JoinHandle<crate::region::Opened> {
    let (p, o) = (parent.clone(), owner.clone());
    thread::spawn(move || Region::open(&p, &o, &crate::RegionOptions::collect_all()))
}

/// Fails unless the region `opener` opened was cancelled.
fn assert_reached(opener: thread::JoinHandle<crate::region::Opened>, how: &str) {
    let child = opener.join().unwrap();
    assert!(
        child.cancel.is_requested(),
        "a region opened {how} escaped its parent's cancellation"
    );
}

/// A region opened by its parent's body (the parent's owner task: the
/// child is not registered in the parent, `Region::open`) on one thread
/// while another cancels the parent: the parent's request reaches it
/// through the owner's list of open regions, or the open reads the
/// request in the parent's cell (the Dekker pair of `add_open_region`'s
/// count and `Region::cancel_nested`'s load). Either way it is cancelled.
#[test]
fn region_opened_in_a_body_racing_the_parents_cancel_is_cancelled() {
    loom::model(|| {
        let (_sched, root) = setup();
        let owner = owner_task(&root, false);
        let parent = Region::open(&root, &owner, &crate::RegionOptions::collect_all());
        let opener = open_elsewhere(&parent, &owner);
        parent.cancel(&CancelReason::user("stop"));
        assert_reached(opener, "in the body");
    });
}

/// A region opened by a task of the parent (not registered in the parent
/// either) while another thread cancels the parent: the parent's sweep
/// reaches the task, whose request passes to the regions it has open, or
/// the open reads the request itself.
#[test]
fn region_opened_by_a_task_racing_its_parents_cancel_is_cancelled() {
    loom::model(|| {
        let (_sched, root) = setup();
        let task = owner_task(&root, true);
        let opener = open_elsewhere(&root, &task);
        root.cancel(&CancelReason::user("stop"));
        assert_reached(opener, "by a task");
    });
}

/// A task of the region finishes on one thread while another opens a
/// region through the task's context (which outlived it), and a third
/// sweeps the region (letting finished tasks go) and then cancels it.
/// Whichever comes first, the finish or the open, the task stays
/// registered while the region is open through it (`is_alive`: the open's
/// read-modify-write of the state word orders its count before COMPLETE,
/// or sees COMPLETE and registers the task again), or the open reads the
/// request: the region is cancelled.
#[test]
fn region_opened_through_a_finishing_tasks_context_is_cancelled() {
    loom::model(|| {
        let (sched, root) = setup();
        let task = owner_task(&root, true);
        sched.schedule(task.clone(), Schedule::Queue);
        let s = sched.clone();
        let finisher = thread::spawn(move || s.run_all());
        let opener = open_elsewhere(&root, &task);
        root.sweep();
        root.cancel(&CancelReason::user("stop"));
        finisher.join().unwrap();
        assert_reached(opener, "through a finishing task's context");
    });
}

/// A region opened through the context of a task that finished and was
/// let go by the parent's registry (a sweep), racing the parent's
/// cancellation: the open registers the task again before it reads the
/// parent's cell (the registry's handshake with the sweep), so the region
/// is cancelled either way.
#[test]
fn region_opened_through_a_finished_tasks_context_racing_a_cancel_is_cancelled() {
    loom::model(|| {
        let (sched, root) = setup();
        let task = owner_task(&root, true);
        sched.schedule(task.clone(), Schedule::Queue);
        sched.run_all();
        root.sweep();
        let opener = open_elsewhere(&root, &task);
        root.cancel(&CancelReason::user("stop"));
        assert_reached(opener, "through a finished task's context");
    });
}
