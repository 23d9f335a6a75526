//! One lab run: build the root, pick tasks by the strategy until the root
//! finishes (jumping virtual time when nothing is ready), check the
//! oracles, tear down.

use std::collections::BTreeMap;
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
    Pct {
        rng: Rng,
        /// Each task's priority, given when first seen (higher runs first).
        priority: BTreeMap<TaskId, u64>,
        /// The steps at which the task run is demoted, ascending.
        change_points: Vec<u64>,
        demoted: u64,
        /// The task run last, and how many steps in a row it has run.
        streak: (TaskId, u32),
    },
}

/// Under PCT, a task run this many steps in a row while others were ready
/// is demoted (see the module docs: a spinning task must not starve the
/// task it waits for).
const PCT_STREAK: u32 = 32;

impl Picker {
    fn new(strategy: Strategy, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        match strategy {
            Strategy::Random => Picker::Random(rng),
            Strategy::Pct { depth, steps } => {
                let mut change_points: Vec<u64> =
                    (1..depth.max(1)).map(|_| rng.below(steps.max(1))).collect();
                change_points.sort_unstable();
                Picker::Pct {
                    rng,
                    priority: BTreeMap::new(),
                    change_points,
                    demoted: 0,
                    streak: (TaskId(0), 0),
                }
            }
        }
    }

    fn pick(&mut self, step: u64, ready: &[TaskRef]) -> usize {
        match self {
            Picker::Random(rng) => rng.below(ready.len() as u64) as usize,
            Picker::Pct {
                rng,
                priority,
                change_points,
                demoted,
                streak,
            } => {
                let mut best = 0;
                let mut best_p = 0;
                for (i, t) in ready.iter().enumerate() {
                    // Initial priorities sit above every demoted one
                    // (demotions count up from 1, far below 2^32).
                    let p = *priority
                        .entry(t.header().id)
                        .or_insert_with(|| rng.next() | (1 << 32));
                    if i == 0 || p > best_p {
                        best = i;
                        best_p = p;
                    }
                }
                // A change point: the chosen task drops below all others
                // (each later demotion below the earlier ones), and the
                // new highest is run instead.
                let mut again = false;
                while change_points.first().is_some_and(|&c| c <= step) {
                    change_points.remove(0);
                    *demoted += 1;
                    priority.insert(ready[best].header().id, (1 << 32) - *demoted);
                    again = true;
                }
                // A task that keeps the thread while others wait (a spin
                // on a yield) is demoted too, or it would never let them
                // run.
                let id = ready[best].header().id;
                if streak.0 == id {
                    streak.1 += 1;
                } else {
                    *streak = (id, 1);
                }
                if streak.1 > PCT_STREAK && ready.len() > 1 {
                    *demoted += 1;
                    priority.insert(id, (1 << 32) - *demoted);
                    again = true;
                }
                if again {
                    best = 0;
                    best_p = 0;
                    for (i, t) in ready.iter().enumerate() {
                        let p = priority[&t.header().id];
                        if i == 0 || p > best_p {
                            best = i;
                            best_p = p;
                        }
                    }
                    *streak = (ready[best].header().id, 1);
                }
                best
            }
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
    let _faults = hooks::plant(cfg.faults);
    let permits_before = hooks::permits();
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
            task.run();
            if let Some((seen, task, cut_before)) = watched {
                check_cleanup(&sched, &task, seen, cut_before, &mut violations);
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
                steps += 1;
                sched.advance(at);
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
        check_end(&sched, &root, permits_before, &mut violations);
    } else {
        tear_down(&sched, &root, &mut handle);
    }
    let stats = sched.stats().snapshot();
    sched.clear();
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
    permits_before: i64,
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
    let permits = hooks::permits() - permits_before;
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

/// Ends a run that could not finish: cancels and cuts off everything, runs
/// what that wakes (a bounded number of steps), and lets go of the rest.
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
    for _ in 0..100_000 {
        match sched.take_ready(|_| 0) {
            Some((t, _)) => t.run(),
            None => break,
        }
    }
    let _ = handle.is_finished();
}
