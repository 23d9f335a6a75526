//! Audit 4: the hot path stays lock-free. Evidence, not a grep: with a
//! counting global allocator and each thread's count of voluntary context
//! switches (the thread went to sleep: a lock, a syscall that blocks), over
//! steady-state runs of `record` (span built beforehand) and `try_push`.

use std::fmt::Write as _;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use benches::exporter::Counting;
use otlp_exporter::{MAX_QUEUE_SIZE, Pipeline, Resource, SpanData, THREAD_CHUNK_SLOTS};
use serde_json::json;

use super::alloc::allocations;
use super::{Audit, Options};

/// Voluntary switches all the measuring threads together may make while
/// the OS preempted them `preemptions` times: 4, plus 1 per 20
/// preemptions. A lock on the path is held by a preempted thread now and
/// then, and every thread that reaches it meanwhile sleeps: with a global
/// lock planted around a push, a record or a wake, 197-2 378 voluntary
/// switches over about 400 preemptions on the 2-core VM (2026-12-02); the
/// code as it is made 0-7 (a worker with no pair left parks, a page fault
/// waits on the address-space lock), so the slack leaves room for that
/// and still sits far below a lock.
pub(crate) fn preempted_slack(preemptions: u64) -> u64 {
    4 + preemptions / 20
}

/// This thread's voluntary context switches, where the OS tells (Linux).
pub(crate) fn voluntary_switches() -> Option<u64> {
    switches("voluntary_ctxt_switches:")
}

/// This thread's involuntary context switches (preemptions), where the OS
/// tells (Linux).
pub(crate) fn involuntary_switches() -> Option<u64> {
    switches("nonvoluntary_ctxt_switches:")
}

/// Reads a count from `/proc/thread-self/status` without allocating (into
/// a buffer on the stack): the task-wake audit reads it on a worker whose
/// allocations another pair is counting.
fn switches(field: &str) -> Option<u64> {
    use std::io::Read as _;
    let mut buf = [0u8; 4096];
    let mut f = std::fs::File::open("/proc/thread-self/status").ok()?;
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(k) => len += k,
            Err(_) => return None,
        }
    }
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().parse().ok())
}

/// What the measuring threads did inside their measured windows, summed
/// over the rounds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Window {
    /// Allocations, all threads.
    pub(crate) allocations: u64,
    /// Voluntary context switches (a thread went to sleep: a lock held by
    /// another, a blocking syscall), all threads; `None` without /proc.
    pub(crate) voluntary: Option<u64>,
    /// Involuntary context switches (the OS preempted a thread mid-call:
    /// the chances a lock had to be seen), all threads.
    pub(crate) preemptions: Option<u64>,
    /// Calls that succeeded, all threads.
    pub(crate) succeeded: u64,
    /// Calls made, all threads.
    pub(crate) calls: u64,
    /// Rounds run.
    pub(crate) rounds: u64,
}

impl Window {
    /// Passes: no allocation, every call succeeded, and no more voluntary
    /// switches than the slack for the preemptions seen. (Without /proc
    /// the switches are not judged.)
    pub(crate) fn clean(&self) -> bool {
        self.allocations == 0
            && self.succeeded == self.calls
            && match (self.voluntary, self.preemptions) {
                (Some(v), Some(p)) => v <= preempted_slack(p),
                _ => true,
            }
    }

    fn show(&self) -> String {
        match (self.voluntary, self.preemptions) {
            (Some(v), Some(p)) => format!(
                "{} allocations, {v} voluntary switches over {p} preemptions (<= {})",
                self.allocations,
                preempted_slack(p)
            ),
            _ => format!(
                "{} allocations, switches not measured (no /proc)",
                self.allocations
            ),
        }
    }
}

/// Runs the measured window on each of `threads` threads (more than the
/// cores: the OS preempts them mid-call), round after round, until the
/// windows saw `preemptions` preemptions in all or `cap` passed. Each
/// round: `prepare(thread)` (not measured), then `window(thread, it)`,
/// which returns (calls made, calls that succeeded); between rounds,
/// `between(succeeded so far)` on this thread while the others wait.
///
/// Why rounds until preempted: a lock-free path lets every other thread
/// go on while one is preempted mid-call; a lock does not, and the
/// threads that reach it while its holder is off the core go to sleep
/// (voluntary switches). (A spin lock that yields instead of sleeping is
/// not seen: its yields count as preemptions.) A lock is therefore seen only if holders get
/// preempted: a fixed count of calls that fits in a few scheduler slices
/// (20 000 pushes a thread, about 5 ms) saw a planted global lock in 1
/// run of 5 (found by review, 2026-12-02).
pub(crate) fn preempted_rounds<R>(
    threads: usize,
    preemptions: u64,
    cap: Duration,
    prepare: impl Fn(usize) -> R + Sync,
    window: impl Fn(usize, R) -> (u64, u64) + Sync,
    mut between: impl FnMut(u64),
) -> Window {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    let barrier = Barrier::new(threads + 1);
    // Set by this thread only, between rounds (the others read it after the
    // round's start): every thread then leaves at the same barrier.
    let stop = AtomicBool::new(false);
    // A measured call panicked: the rounds end after this one.
    let failed = AtomicBool::new(false);
    let seen = AtomicU64::new(0);
    let succeeded = AtomicU64::new(0);
    let started = std::time::Instant::now();
    thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, stop, failed) = (&barrier, &stop, &failed);
                let (seen, succeeded) = (&seen, &succeeded);
                let (prepare, window) = (&prepare, &window);
                s.spawn(move || {
                    let mut w = Window {
                        voluntary: Some(0),
                        preemptions: Some(0),
                        ..Window::default()
                    };
                    loop {
                        barrier.wait();
                        if stop.load(SeqCst) {
                            return w;
                        }
                        // A panic (preparing or in a call) fails the
                        // audit and ends the rounds; it must not leave the
                        // others at the barrier (a hang).
                        let d = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b - a);
                        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let it = prepare(t);
                            let (v0, i0) = (voluntary_switches(), involuntary_switches());
                            let a0 = allocations();
                            let (calls, ok) = window(t, it);
                            let a1 = allocations();
                            let (v1, i1) = (voluntary_switches(), involuntary_switches());
                            (a1 - a0, calls, ok, d(v0, v1), d(i0, i1))
                        }));
                        let (allocs, calls, ok, voluntary, preempted) =
                            round.unwrap_or_else(|_| {
                                failed.store(true, SeqCst);
                                (0, 1, 0, Some(0), Some(0))
                            });
                        w.allocations += allocs;
                        w.calls += calls;
                        w.succeeded += ok;
                        w.voluntary = w.voluntary.zip(voluntary).map(|(a, b)| a + b);
                        w.preemptions = w.preemptions.zip(preempted).map(|(a, b)| a + b);
                        seen.fetch_add(preempted.unwrap_or(u64::MAX / 2), SeqCst);
                        succeeded.fetch_add(ok, SeqCst);
                        barrier.wait();
                    }
                })
            })
            .collect();
        let mut rounds = 0;
        loop {
            barrier.wait(); // the round starts
            barrier.wait(); // and ends
            rounds += 1;
            between(succeeded.load(SeqCst));
            if failed.load(SeqCst) || seen.load(SeqCst) >= preemptions || started.elapsed() >= cap {
                stop.store(true, SeqCst);
                barrier.wait();
                break;
            }
        }
        let mut all = Window {
            voluntary: Some(0),
            preemptions: Some(0),
            rounds,
            ..Window::default()
        };
        for h in hs {
            let w = h.join().expect("audit thread");
            all.allocations += w.allocations;
            all.calls += w.calls;
            all.succeeded += w.succeeded;
            all.voluntary = all.voluntary.zip(w.voluntary).map(|(a, b)| a + b);
            all.preemptions = all.preemptions.zip(w.preemptions).map(|(a, b)| a + b);
        }
        all
    })
}

pub(crate) fn audit(o: &Options) -> Audit {
    // More threads than cores, so that the OS preempts them mid-call.
    let threads = o.top().max(4 * super::cores());
    // Pushes per thread and round, each after about 100-200 ns of work of
    // the thread's own (`between_pushes`, standing in for making what is
    // pushed): a round spans many scheduler slices, so threads get
    // preempted inside it (bare pushes, a few nanoseconds each, fitted a
    // round into one slice: 109 preemptions in 695 rounds), and a lock
    // in the push is held for a fair share of the time.
    let n: usize = 100_000;
    let records = if o.quick { 20_000 } else { 200_000 };
    let (preemptions, cap) = if o.quick {
        (400, Duration::from_secs(4))
    } else {
        (4_000, Duration::from_secs(30))
    };
    // Every record and every push is measured where it succeeds (a call
    // refused because the queue is full is a different, cheaper path): the
    // pipeline's queue holds every span of a round (up to its largest
    // setting, which bounds the spans recorded per thread), and each
    // queue's lanes hold every push of a round; between rounds everything
    // is exported or popped.
    let per_record = records.min(
        (MAX_QUEUE_SIZE / threads)
            .saturating_sub(THREAD_CHUNK_SLOTS + 1)
            .max(1),
    );
    eprintln!(
        "  lock-free: {threads} threads, rounds of {per_record} records or {n} pushes each, until {preemptions} preemptions"
    );
    let pipeline = Pipeline::builder()
        .transport(Counting::default())
        .resource(Resource::new("audit"))
        .scheduled_delay(Duration::from_millis(50))
        .max_queue_size(threads * (per_record + 1))
        .build()
        .expect("valid settings");
    let record = preempted_rounds(
        threads,
        preemptions,
        cap,
        |t| {
            // Built first: the audit is about `record`, not about making
            // spans (which allocates their attribute vectors). A warm-up
            // record first (the first on a thread sets up its lane).
            pipeline.record(SpanData::new("warm-up"));
            (0..per_record)
                .map(|i| {
                    let mut s = SpanData::new("audit");
                    s.attributes
                        .push(otlp_exporter::KeyValue::new("i", i as i64));
                    s.attributes
                        .push(otlp_exporter::KeyValue::new("thread_id", t as i64));
                    s
                })
                .collect::<Vec<_>>()
        },
        |_, spans| {
            let mut ok = 0;
            let calls = spans.len() as u64;
            for s in spans {
                ok += u64::from(matches!(
                    pipeline.record(s),
                    otlp_exporter::Recorded::Queued
                ));
            }
            (calls, ok)
        },
        |_| {
            // Everything exported before the next round: its records all
            // find room.
            let _ = pipeline.force_flush(Duration::from_secs(30));
        },
    );
    let stats = pipeline.shutdown(Duration::from_secs(30)).stats;

    // The per-producer ring (`bounded`, the pipeline's queue under
    // drop-oldest), each lane holding a round's `n`.
    let (tx, rx) = otlp_queue::bounded::<u64>(n);
    let producers = (0..threads).map(|_| tx.clone()).collect();
    drop(tx);
    let rounds = Rounds {
        threads,
        preemptions,
        cap,
        n,
    };
    let push = rounds.pushes(
        producers,
        rx,
        |rx, out| {
            out.clear();
            rx.pop_batch(out, 4096) as u64
        },
        |tx, i| tx.try_push(i).is_ok(),
    );
    // The pooled queue (the pipeline's under every other policy), whose
    // producers claim chunks of a shared pool: holding a round's pushes.
    let (tx, rx) = otlp_queue::pooled::bounded_total::<u64>(threads * n);
    let producers = (0..threads)
        .map(|_| tx.try_clone().expect("a lane"))
        .collect();
    drop(tx);
    let pooled = rounds.pushes(
        producers,
        rx,
        |rx, _| rx.pop_each(4096, drop) as u64,
        |tx, i| tx.try_push(i).is_ok(),
    );

    let recorded_all = stats.is_balanced()
        && stats.dropped.total() == 0
        && stats.accepted == record.calls + record.rounds * threads as u64;
    let passed = record.clean() && push.clean() && pooled.clean() && recorded_all;
    let mut details = String::new();
    let _ = writeln!(
        details,
        "{threads} threads at once (more than the cores: the OS preempts them mid-call), in rounds of {per_record} records or {n} pushes each, until the measured calls saw {preemptions} preemptions (or {} s passed); counted around the calls only (steady state). A lock-free call lets the others go on while its thread is preempted; a lock makes the threads that reach it sleep (voluntary switches). Every call is one that succeeds (the queues hold a whole round; a refused call is another path).\n",
        cap.as_secs()
    );
    let _ = writeln!(
        details,
        "| path | rounds | calls that succeeded | allocations (all threads) | preemptions | voluntary context switches (all threads) |"
    );
    let _ = writeln!(details, "|---|---:|---:|---:|---:|---:|");
    let show = |v: Option<u64>| v.map_or("not measured (no /proc)".to_string(), |v| v.to_string());
    for (name, w) in [
        (
            "`Pipeline::record` (drop newest: the pooled queue)",
            &record,
        ),
        ("`Producer::try_push` (per-producer rings)", &push),
        (
            "`pooled::Producer::try_push` (chunks of a shared pool)",
            &pooled,
        ),
    ] {
        let _ = writeln!(
            details,
            "| {name} | {} | {} of {} | {} | {} | {} |",
            w.rounds,
            w.succeeded,
            w.calls,
            w.allocations,
            show(w.preemptions),
            show(w.voluntary)
        );
    }
    let _ = writeln!(
        details,
        "\nThe pipeline's accounting after the run: accepted {}, exported {}, dropped {} (balanced: {}).",
        stats.accepted,
        stats.exported,
        stats.dropped.total(),
        stats.is_balanced()
    );
    let w_json = |w: &Window| json!({"rounds": w.rounds, "calls": w.calls, "succeeded": w.succeeded, "allocations": w.allocations, "voluntary_switches": w.voluntary, "preemptions": w.preemptions});
    Audit {
        name: "lock-free",
        passed,
        verdict: format!(
            "record: {}, {} of {} exported; push: {}; pooled push: {} (needs 0 allocations, every call succeeding)",
            record.show(),
            stats.exported,
            stats.accepted,
            push.show(),
            pooled.show()
        ),
        details,
        json: json!({
            "threads": threads,
            "calls_per_round": n,
            "records_per_round": per_record,
            "target_preemptions": preemptions,
            "record": w_json(&record),
            "push": w_json(&push),
            "pooled_push": w_json(&pooled),
            "accepted": stats.accepted,
            "exported": stats.exported,
            "dropped": stats.dropped.total(),
        }),
    }
}

/// The sizes of the push audits' rounds (see [`preempted_rounds`]).
struct Rounds {
    threads: usize,
    preemptions: u64,
    cap: Duration,
    /// Pushes per thread and round.
    n: usize,
}

impl Rounds {
    /// Each thread pushes `n` a round through its own of `producers`
    /// (`push`), each push after [`between_pushes`], while another thread
    /// pops from `rx` (`pop`); between rounds everything is popped.
    fn pushes<P: Send, C: Send>(
        &self,
        producers: Vec<P>,
        rx: C,
        pop: impl Fn(&mut C, &mut Vec<u64>) -> u64 + Send,
        push: impl Fn(&P, u64) -> bool + Sync,
    ) -> Window {
        let producers: Vec<_> = producers.into_iter().map(std::sync::Mutex::new).collect();
        let n = self.n as u64;
        with_drain(rx, pop, |popped| {
            preempted_rounds(
                self.threads,
                self.preemptions,
                self.cap,
                |t| producers[t].lock().unwrap_or_else(|p| p.into_inner()),
                |_, tx| {
                    let mut ok = 0;
                    for i in 0..n {
                        between_pushes();
                        ok += u64::from(push(&tx, i));
                    }
                    (n, ok)
                },
                popped,
            )
        })
    }
}

/// About 100-200 ns of work of the pushing thread's own between pushes
/// (no memory shared, no call out).
#[inline(never)]
fn between_pushes() {
    let mut x = 0u64;
    for i in 0..64 {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    std::hint::black_box(x);
}

/// Runs `measure` while another thread pops from `rx` with `pop` (the
/// queue's consumer, racing the producers as the pipeline's worker does),
/// handing `measure` a wait that returns once everything pushed so far is
/// popped (for between rounds).
fn with_drain<C: Send>(
    rx: C,
    pop: impl Fn(&mut C, &mut Vec<u64>) -> u64 + Send,
    measure: impl FnOnce(&mut dyn FnMut(u64)) -> Window,
) -> Window {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    let stop = AtomicBool::new(false);
    let popped = AtomicU64::new(0);
    thread::scope(|s| {
        let (stop, popped) = (&stop, &popped);
        s.spawn(move || {
            let (mut rx, mut out) = (rx, Vec::with_capacity(4096));
            while !stop.load(SeqCst) {
                let k = pop(&mut rx, &mut out);
                popped.fetch_add(k, SeqCst);
                if k == 0 {
                    thread::yield_now();
                }
            }
        });
        let w = measure(&mut |pushed| {
            // Everything pushed so far is popped before the next round,
            // whose pushes then all find room.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while popped.load(SeqCst) < pushed && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_micros(200));
            }
        });
        stop.store(true, SeqCst);
        w
    })
}
