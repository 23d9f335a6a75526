//! One lab run: build the root, pick tasks by the strategy until the root
//! finishes (jumping virtual time when nothing is ready), check the
//! oracles, tear down.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::report::{LabReport, Trace, TraceEvent, Violation};
use super::sched::LabSched;
use super::{LabCaps, LabRuntime, Strategy, hooks};
use crate::TaskId;
use crate::cancel::{CancelKind, CancelReason, Origin};
use crate::cx::Cx;
use crate::loom::Ordering;
use crate::region::Region;
use crate::runtime::{root_outcome, root_seed, spawn_root};
use crate::sched::Scheduler;
use crate::task::{TaskRef, mix64};
use crate::time::Instant;

/// The lab's own generator (SplitMix64), seeded from the lab's seed: the
/// only source of the scheduler's choices.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(mix64(seed ^ 0x001A_B5EE_D50F_C401))
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// How the next task is chosen.
enum Picker {
    Random(Rng),
    Pct(Pct),
}

/// Probabilistic concurrency testing's state: the ready task of highest
/// priority runs. The ready list is kept arranged as a binary max-heap by
/// priority, so a step costs O(log n) for n ready tasks rather than a scan
/// of all of them (a lab run with thousands of ready tasks was quadratic).
/// The choices are the scan's: the highest priority wins (priorities are
/// distinct), and a task's first priority is drawn when a pick first sees
/// it, in the order tasks became ready (tests: `pct_heap_picks_as_a_scan_would`).
struct Pct {
    rng: Rng,
    /// Each task's priority, given when first seen (higher runs first).
    /// (A `BTreeMap`: a `HashMap`'s default hasher reads OS randomness.)
    priority: BTreeMap<TaskId, u64>,
    /// The steps at which the task run is demoted, ascending.
    change_points: VecDeque<u64>,
    demoted: u64,
    /// The task run last, and how many steps in a row it has run.
    streak: (TaskId, u32),
    /// `ready[..heap]` was a max-heap by priority when the last pick
    /// returned its top; the caller then took it with a `swap_remove(0)`
    /// (so the last heap entry sits at the top, to be sifted down), and the
    /// tasks after it became ready since. Zero before the first pick.
    heap: usize,
}

/// What the pickers need of a ready entry (a task; an id in the tests).
trait ReadyTask {
    fn task_id(&self) -> TaskId;
}

impl ReadyTask for TaskRef {
    fn task_id(&self) -> TaskId {
        self.header().id
    }
}

/// Under PCT, a task run this many steps in a row while others were ready
/// is demoted (see the module docs: a spinning task must not starve the
/// task it waits for).
const PCT_STREAK: u32 = 32;

/// The fewest clock looks a poll is allowed before it counts as a spin,
/// however few steps are left (a look comes every 32 checkpoints or clock
/// reads: `coop`). Reading the clock a few million times in one poll is
/// a spin; a few thousand is not.
const LOOKS_AT_LEAST: u64 = 100_000;

/// PCT's `depth - 1` change points, drawn in `0..steps`, ascending.
fn change_points(rng: &mut Rng, depth: u32, steps: u64) -> Vec<u64> {
    // At most one change point per step: a deeper setting changes nothing
    // more (and `depth: u32::MAX` asked for 32 GiB of them, an abort).
    let depth = u64::from(depth.clamp(1, super::MAX_PCT_DEPTH)).min(steps.max(1).saturating_add(1));
    let mut points: Vec<u64> = (1..depth).map(|_| rng.below(steps.max(1))).collect();
    points.sort_unstable();
    points
}

impl Picker {
    fn new(strategy: Strategy, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        match strategy {
            Strategy::Random => Picker::Random(rng),
            Strategy::Pct { depth, steps } => {
                let change_points = change_points(&mut rng, depth, steps);
                Picker::Pct(Pct {
                    rng,
                    priority: BTreeMap::new(),
                    change_points: change_points.into(),
                    demoted: 0,
                    streak: (TaskId(0), 0),
                    heap: 0,
                })
            }
        }
    }

    /// The index in `ready` (not empty) of the task to run at `step`,
    /// which the caller then takes with a `swap_remove`. The PCT picker
    /// may rearrange `ready` (between picks it is only appended to).
    fn pick<R: ReadyTask>(&mut self, step: u64, ready: &mut [R]) -> usize {
        match self {
            Picker::Random(rng) => rng.below(ready.len() as u64) as usize,
            Picker::Pct(pct) => pct.pick(step, ready),
        }
    }
}

impl Pct {
    fn pick<R: ReadyTask>(&mut self, step: u64, ready: &mut [R]) -> usize {
        self.restore_heap(ready);
        // A change point: the chosen task drops below all others (each
        // later demotion below the earlier ones), and the new highest is
        // run instead.
        let best = ready[0].task_id();
        let mut again = false;
        while self.change_points.front().is_some_and(|&c| c <= step) {
            self.change_points.pop_front();
            self.demote(best);
            again = true;
        }
        // A task that keeps the thread while others wait (a spin on a
        // yield) is demoted too, or it would never let them run. Only the
        // steps it ran while others were ready count: a task demoted for
        // steps it ran alone would never run before the next task to come,
        // whatever the seed (found by review).
        if ready.len() == 1 {
            self.streak = (best, 0);
        } else if self.streak.0 == best {
            self.streak.1 += 1;
        } else {
            self.streak = (best, 1);
        }
        if self.streak.1 > PCT_STREAK {
            self.demote(best);
            again = true;
        }
        if again {
            self.sift_down(ready, 0);
            self.streak = (ready[0].task_id(), 1);
        }
        0
    }

    /// Brings `ready` back to a heap: the entry the last pick's
    /// `swap_remove(0)` moved to the top sifted down, then the tasks that
    /// became ready since given a priority (if new) and sifted up, in the
    /// order they came.
    fn restore_heap<R: ReadyTask>(&mut self, ready: &mut [R]) {
        // Every pick's top was taken (see `heap`).
        self.heap = self.heap.saturating_sub(1);
        if self.heap > ready.len() {
            // Taken from by someone else (not in a run): start over.
            self.heap = 0;
        }
        if self.heap > 0 {
            self.sift_down_within(ready, 0, self.heap);
        }
        for i in self.heap..ready.len() {
            let rng = &mut self.rng;
            // Initial priorities sit above every demoted one (demotions
            // count down from 2^32).
            self.priority
                .entry(ready[i].task_id())
                .or_insert_with(|| rng.next() | (1 << 32));
            self.sift_up(ready, i);
        }
        self.heap = ready.len();
    }

    fn demote(&mut self, id: TaskId) {
        self.demoted += 1;
        self.priority.insert(id, (1 << 32) - self.demoted);
    }

    fn key<R: ReadyTask>(&self, r: &R) -> u64 {
        self.priority[&r.task_id()]
    }

    fn sift_up<R: ReadyTask>(&self, ready: &mut [R], mut i: usize) {
        let p = self.key(&ready[i]);
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.key(&ready[parent]) >= p {
                break;
            }
            ready.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down<R: ReadyTask>(&self, ready: &mut [R], i: usize) {
        self.sift_down_within(ready, i, ready.len());
    }

    /// Sifts `ready[i]` down within the heap `ready[..len]`.
    fn sift_down_within<R: ReadyTask>(&self, ready: &mut [R], mut i: usize, len: usize) {
        let p = self.key(&ready[i]);
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut top = i;
            let mut top_p = p;
            if l < len && self.key(&ready[l]) > top_p {
                top = l;
                top_p = self.key(&ready[l]);
            }
            if r < len && self.key(&ready[r]) > top_p {
                top = r;
            }
            if top == i {
                return;
            }
            ready.swap(i, top);
            i = top;
        }
    }
}

/// What the cleanup oracle remembers of a cancelled task: its polls and
/// the time when the lab first saw the request.
struct CancelSeen {
    polls: u32,
    at: Instant,
}

fn noop_context<R>(f: impl FnOnce(&mut Context<'_>) -> R) -> R {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    f(&mut cx)
}

pub(super) fn run<G, F, T, E>(lab: &LabRuntime, body: G) -> LabReport<T, E>
where
    G: FnOnce(Cx<LabCaps>) -> F + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    let cfg = &lab.config;
    // A run inside a task's poll (or another run's task) leaves that
    // task's cooperative budget as it found it.
    let _coop = crate::budget::coop::Saved::now();
    let _faults = hooks::plant(cfg.faults);
    let ledger = hooks::open_ledger();
    let sched = Arc::new(LabSched::new(cfg.skip_grace_timers));
    let dyn_sched: Arc<dyn Scheduler> = sched.clone();
    let root = Region::root(dyn_sched, cfg.cleanup);
    let mut handle = spawn_root::<LabCaps, _, _, _, _>(&root, root_seed(cfg.seed, 0), body);

    let mut picker = Picker::new(cfg.strategy, cfg.seed);
    let mut trace = Trace::default();
    // A digest of the choices only (not the seed): two seeds that give the
    // same interleaving give the same fingerprint.
    let mut fingerprint: u64 = 0x6C62_272E_07BB_0142;
    let mut steps: u64 = 0;
    let mut violations = Vec::new();
    let mut cancelled: BTreeMap<TaskId, CancelSeen> = BTreeMap::new();
    let mut finished = false;

    loop {
        if steps >= cfg.max_steps {
            // The limit is on steps taken: a run with nothing left to do
            // when it is reached (the main task finished, no task ready,
            // as at the end below) took no step too many. (A run of
            // exactly `max_steps` steps was reported over the limit, its
            // outcome lost.)
            if handle.is_finished() && !sched.has_ready() {
                finished = true;
                break;
            }
            violations.push(Violation::StepLimit {
                steps: cfg.max_steps,
            });
            break;
        }
        if let Some((task, n)) = sched.take_ready(|ready| picker.pick(steps, ready)) {
            steps += 1;
            let h = task.header();
            let id = h.id;
            let is_cancelled = h.cancel.is_requested();
            trace.push(TraceEvent::Poll {
                task: id,
                region: h.region.id,
                ready: n,
                cancelled: is_cancelled,
            });
            fingerprint = mix64(fingerprint ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // Relaxed: one thread.
            let polls_before = h.polls.load(Ordering::Relaxed);
            let seen = if is_cancelled {
                Some(cancelled.entry(id).or_insert(CancelSeen {
                    polls: polls_before,
                    at: sched.now(),
                }) as &CancelSeen)
                .map(|c| (c.polls, c.at))
            } else {
                None
            };
            // A cancelled task is kept to look at after its run.
            let watched = seen.map(|c| (c, task.clone(), sched.stats().snapshot().tasks_cut_off));
            // A poll that spins (checkpoints or reads the clock, never
            // awaits) may make as many clock looks as the run has steps
            // left, this one included, and at least `LOOKS_AT_LEAST`: a
            // finite poll that looks many times near the end of the steps
            // (stamping items with `cx.now()`, making timeouts in a loop)
            // is no spin.
            sched.allow_looks((cfg.max_steps - steps + 1).max(LOOKS_AT_LEAST));
            task.run();
            if let Some((seen, task, cut_before)) = watched {
                check_cleanup(&sched, &task, seen, cut_before, &mut violations);
            }
            if sched.take_spun() {
                violations.push(Violation::StepLimit {
                    steps: cfg.max_steps,
                });
                break;
            }
            continue;
        }
        if handle.is_finished() {
            finished = true;
            break;
        }
        let (fired, next) = sched.fire_timers();
        if fired {
            continue;
        }
        match next {
            Some(at) => {
                // The wheel names the start of its next occupied slot at
                // any level, where a timer may only move down a level: go
                // on until one fires and wakes a task (one step, one
                // `Advance`), or none is left (a deadlock, at the time
                // everything stopped). Each boundary was a step and an
                // `Advance` of its own, a sleep of an hour four more (found
                // by review). A timer that fires and wakes nothing (the
                // grace timer of a task that finished its cleanup in time)
                // is no progress: time jumped to it moved a deadlock's
                // report from when everything stopped to when the timer
                // fell (found by review).
                let stopped = sched.now();
                sched.advance(at);
                let fires = loop {
                    let (fired, next) = sched.fire_timers();
                    if fired && sched.has_ready() {
                        break true;
                    }
                    match next {
                        Some(at) => sched.advance(at),
                        None => break false,
                    }
                };
                if !fires {
                    sched.rewind(stopped);
                    violations.push(Violation::Deadlock {
                        alive: sched.stats().snapshot().tasks_alive(),
                        at: stopped,
                    });
                    break;
                }
                steps += 1;
                trace.push(TraceEvent::Advance { to: sched.now() });
                fingerprint = mix64(fingerprint ^ sched.now().as_nanos().rotate_left(17));
            }
            None => {
                violations.push(Violation::Deadlock {
                    alive: sched.stats().snapshot().tasks_alive(),
                    at: sched.now(),
                });
                break;
            }
        }
    }

    let elapsed = sched.now() - Instant::ZERO;
    let outcome = if finished {
        crate::budget::coop::unconstrained();
        match noop_context(|cx| std::pin::Pin::new(&mut handle).poll(cx)) {
            Poll::Ready(o) => Some(root_outcome(o)),
            Poll::Pending => None,
        }
    } else {
        None
    };
    if finished {
        check_end(&sched, &root, &ledger, &mut violations);
    } else {
        tear_down(&sched, &root, &mut handle);
    }
    // Cleared first: a waker dropped with a pending timer may panic, which
    // the report counts.
    sched.clear();
    let stats = sched.stats().snapshot();
    LabReport {
        seed: cfg.seed,
        outcome,
        elapsed,
        fingerprint,
        steps,
        violations,
        trace,
        stats,
    }
}

/// The cleanup oracle, after one run of a cancelled task: if it was
/// polled (not cut off), it was still within its cleanup budget: at most
/// `polls` polls since the request, and no later than the grace period's
/// end (rounded up to the timer wheel's tick, as the cut-off timer is).
fn check_cleanup(
    sched: &LabSched,
    task: &TaskRef,
    (p0, t0): (u32, Instant),
    cut_before: u64,
    violations: &mut Vec<Violation>,
) {
    let h = task.header();
    if sched.stats().snapshot().tasks_cut_off != cut_before {
        return; // this run was its cut-off
    }
    // Relaxed: one thread.
    let since = u64::from(h.polls.load(Ordering::Relaxed).saturating_sub(p0));
    if since == 0 {
        return;
    }
    let budget = h.region.cleanup;
    let over_polls = budget.polls.is_some_and(|q| since > u64::from(q));
    let now = sched.now();
    let over_time = budget.grace.is_some_and(|g| {
        let end = (t0 + g).as_nanos().div_ceil(TICK).saturating_mul(TICK);
        now.as_nanos() > end
    });
    if over_polls || over_time {
        violations.push(Violation::PolledPastCleanup {
            task: h.id,
            polls: (since, budget.polls),
            times: (t0, now),
        });
    }
}

/// The timer wheel's tick, in nanoseconds.
const TICK: u64 = 1_000_000;

/// The oracles that look at the end state.
fn check_end(
    sched: &LabSched,
    root: &Arc<Region>,
    ledger: &hooks::LedgerGuard,
    violations: &mut Vec<Violation>,
) {
    let stats = sched.stats().snapshot();
    if stats.tasks_alive() > 0 {
        violations.push(Violation::TasksAlive {
            alive: stats.tasks_alive(),
        });
    }
    let w = sched.watch();
    let open: Vec<_> = w.open.iter().copied().filter(|r| *r != root.id).collect();
    if !open.is_empty() {
        violations.push(Violation::RegionsOpen { regions: open });
    }
    let permits = ledger.unresolved();
    if permits != 0 {
        violations.push(Violation::PermitsUnresolved { permits });
    }
    if w.finalizers_added != w.finalizers_ended {
        violations.push(Violation::Finalizers {
            added: w.finalizers_added,
            ended: w.finalizers_ended,
        });
    }
    for &(region, children, outcome) in &w.lattice {
        violations.push(Violation::Lattice {
            region,
            children,
            outcome,
        });
    }
}

/// Ends a run that could not finish: cancels and cuts off everything, and
/// runs what that wakes: each task, cut off, drops its future when run.
/// Bounded (a `Drop` that spawns again and again), but by twice the tasks
/// alive at least, so that every one is dropped (a fixed 100 000 used to
/// leave the rest of a larger run, and all they held, for ever).
fn tear_down<T, E>(
    sched: &LabSched,
    root: &Arc<Region>,
    handle: &mut crate::runtime::RootHandle<T, E>,
) {
    root.cancel(
        &CancelReason::new(CancelKind::Shutdown)
            .with_message("the lab run could not finish")
            .with_origin(Origin::Runtime),
    );
    root.cut_off_all(true);
    let alive = sched.stats().snapshot().tasks_alive();
    for _ in 0..alive.saturating_mul(2).max(100_000) {
        match sched.take_ready(|_| 0) {
            Some((t, _)) => t.run(),
            None => break,
        }
    }
    let _ = handle.is_finished();
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ReadyTask for TaskId {
        fn task_id(&self) -> TaskId {
            *self
        }
    }

    /// The PCT picker as it was before the heap: a scan of every ready
    /// task per step. The reference the heap must agree with.
    struct ScanPct {
        rng: Rng,
        priority: BTreeMap<TaskId, u64>,
        change_points: Vec<u64>,
        demoted: u64,
        streak: (TaskId, u32),
    }

    impl ScanPct {
        fn new(depth: u32, steps: u64, seed: u64) -> Self {
            let mut rng = Rng::new(seed);
            let change_points = change_points(&mut rng, depth, steps);
            ScanPct {
                rng,
                priority: BTreeMap::new(),
                change_points,
                demoted: 0,
                streak: (TaskId(0), 0),
            }
        }

        fn best(&mut self, ready: &[TaskId]) -> usize {
            let mut best = 0;
            let mut best_p = 0;
            for (i, t) in ready.iter().enumerate() {
                let rng = &mut self.rng;
                let p = *self
                    .priority
                    .entry(*t)
                    .or_insert_with(|| rng.next() | (1 << 32));
                if i == 0 || p > best_p {
                    best = i;
                    best_p = p;
                }
            }
            best
        }

        fn pick(&mut self, step: u64, ready: &[TaskId]) -> usize {
            let mut best = self.best(ready);
            let mut again = false;
            while self.change_points.first().is_some_and(|&c| c <= step) {
                self.change_points.remove(0);
                self.demoted += 1;
                self.priority.insert(ready[best], (1 << 32) - self.demoted);
                again = true;
            }
            let id = ready[best];
            if ready.len() == 1 {
                self.streak = (id, 0);
            } else if self.streak.0 == id {
                self.streak.1 += 1;
            } else {
                self.streak = (id, 1);
            }
            if self.streak.1 > PCT_STREAK {
                self.demoted += 1;
                self.priority.insert(id, (1 << 32) - self.demoted);
                again = true;
            }
            if again {
                best = self.best(ready);
                self.streak = (ready[best], 1);
            }
            best
        }
    }

    #[test]
    fn pct_heap_picks_as_a_scan_would() {
        // Random histories of tasks becoming ready (new ones, and ones run
        // before, woken again) and picks, with change points and streaks:
        // the heap chooses the same task as the scan at every step.
        let mut streak_demotions = 0;
        for seed in 0..80_u64 {
            let mut script = Rng::new(seed ^ 0xABCD);
            let depth = 1 + (seed % 6) as u32;
            let steps = 50 + seed * 4;
            let Picker::Pct(mut heap) = Picker::new(Strategy::Pct { depth, steps }, seed) else {
                unreachable!()
            };
            let mut scan = ScanPct::new(depth, steps, seed);
            let (mut a, mut b): (Vec<TaskId>, Vec<TaskId>) = (Vec::new(), Vec::new());
            let mut taken: Vec<TaskId> = Vec::new();
            let mut next_id = 1;
            for step in 0..steps + 100 {
                // Some steps make tasks ready: new ones, or ones run before.
                for _ in 0..script.below(3) {
                    let id = if !taken.is_empty() && script.below(3) > 0 {
                        taken.swap_remove(script.below(taken.len() as u64) as usize)
                    } else {
                        next_id += 1;
                        TaskId(next_id)
                    };
                    a.push(id);
                    b.push(id);
                }
                if a.is_empty() {
                    continue;
                }
                let i = heap.pick(step, &mut a);
                let j = scan.pick(step, &b);
                assert_eq!(a[i], b[j], "seed {seed}, step {step}");
                let id = a.swap_remove(i);
                b.swap_remove(j);
                // Mostly a spinner: ready again at once (a yield), which
                // the streak rule demotes after a while.
                if script.below(4) > 0 {
                    a.push(id);
                    b.push(id);
                } else {
                    taken.push(id);
                }
            }
            streak_demotions += heap.demoted - u64::from(depth - 1);
        }
        assert!(
            streak_demotions >= 10,
            "streaks covered: {streak_demotions}"
        );
    }

    #[test]
    fn pct_with_many_ready_tasks_keeps_the_highest_first() {
        // Thousands ready at once (the case the heap is for): each pick is
        // the highest priority of those left, and every task is picked once.
        let Picker::Pct(mut pct) = Picker::new(Strategy::Pct { depth: 1, steps: 1 }, 9) else {
            unreachable!()
        };
        let mut ready: Vec<TaskId> = (1..=5_000).map(TaskId).collect();
        let mut last = u64::MAX;
        let mut seen = std::collections::HashSet::new();
        let mut step = 0;
        while !ready.is_empty() {
            let i = pct.pick(step, &mut ready);
            let id = ready.swap_remove(i);
            let p = pct.priority[&id];
            assert!(p < last, "priorities descend");
            last = p;
            assert!(seen.insert(id));
            step += 1;
        }
        assert_eq!(seen.len(), 5_000);
    }
}
