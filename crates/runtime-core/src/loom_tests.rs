//! Loom models of the task state machine, the waker slot and worker
//! parking. Run with `cargo xtask loom` (`--cfg loom`,
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
use crate::cancel::{CancelReason, Cancelled};
use crate::cx::spawn_in;
use crate::region::{CleanupBudget, RegionNode};
use crate::sched::idle::Idle;
use crate::sched::{Schedule, Scheduler, Stats};
use crate::sync::WakerSlot;
use crate::task::{JoinHandle, Runnable};
use crate::time::Instant;
use crate::time::driver::{TimerAction, TimerDriver, TimerHandle};

/// A scheduler that only queues: the model's main thread runs the queue.
struct Mock {
    queue: Mutex<VecDeque<Arc<dyn Runnable>>>,
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
    fn schedule(&self, task: Arc<dyn Runnable>, _how: Schedule) {
        let mut q = self.queue.lock().unwrap();
        // A task is never in the queue twice.
        assert!(
            !q.iter().any(|t| Arc::ptr_eq(t, &task)),
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
        self.timers.cancel(handle);
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

fn setup() -> (Arc<Mock>, Arc<RegionNode>) {
    let sched = Mock::new();
    let dyn_sched: Arc<dyn Scheduler> = sched.clone();
    let root = RegionNode::root(dyn_sched, CleanupBudget::UNLIMITED);
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
        let idle = Arc::new(Idle::new());
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
