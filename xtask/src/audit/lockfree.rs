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

/// Voluntary context switches a thread may make over `n` calls: 2, plus 1
/// per 20 000 calls. Slack for the OS (the allocator giving memory back
/// can wait on the address-space lock), not for our code: a lock on the hot
/// path sleeps thousands of times in a run like this.
pub(crate) fn switch_slack(n: usize) -> u64 {
    2 + n as u64 / 20_000
}

/// This thread's voluntary context switches, where the OS tells (Linux).
pub(crate) fn voluntary_switches() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Per thread: (allocations, voluntary switches) over the measured loop.
fn run_threads(
    threads: usize,
    body: impl Fn(usize) -> (u64, Option<u64>) + Sync,
) -> Vec<(u64, Option<u64>)> {
    thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let body = &body;
                s.spawn(move || body(t))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("audit thread"))
            .collect()
    })
}

/// Runs `push(i)` `n` times on each of `threads` threads, each with its
/// own producer from `make()`, while `drain()` runs on one more thread
/// until they are done. Per thread: (allocations, voluntary switches,
/// pushes that succeeded).
fn push_threads<P>(
    threads: usize,
    n: usize,
    make: impl Fn() -> P + Sync,
    push: impl Fn(&P, u64) -> bool + Sync,
    drain: impl FnMut() + Send,
) -> Vec<(u64, Option<u64>, u64)> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        let stop = &stop;
        let mut drain = drain;
        s.spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                drain();
            }
        });
        let r = thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    let (make, push) = (&make, &push);
                    s.spawn(move || {
                        let tx = make();
                        let mut ok = 0;
                        let v0 = voluntary_switches();
                        let a0 = allocations();
                        for i in 0..n as u64 {
                            ok += u64::from(push(&tx, i));
                        }
                        let a1 = allocations();
                        let v1 = voluntary_switches();
                        (a1 - a0, v0.zip(v1).map(|(a, b)| b - a), ok)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("audit thread"))
                .collect()
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    })
}

pub(crate) fn audit(o: &Options) -> Audit {
    let threads = o.top();
    let n: usize = if o.quick { 20_000 } else { 200_000 };
    // Every record and every push is measured where it succeeds (a call
    // refused because the queue is full is a different, cheaper path): the
    // pipeline's queue holds every span of the run (up to its largest
    // setting, which bounds the spans recorded per thread), and each
    // queue's lanes hold every push.
    let per_record = n.min(
        (MAX_QUEUE_SIZE / threads)
            .saturating_sub(THREAD_CHUNK_SLOTS + 1)
            .max(1),
    );
    eprintln!("  lock-free: {threads} threads, {per_record} records and {n} pushes each");
    let pipeline = Pipeline::builder()
        .transport(Counting::default())
        .resource(Resource::new("audit"))
        .scheduled_delay(Duration::from_millis(50))
        .max_queue_size(threads * (per_record + 1))
        .build()
        .expect("valid settings");
    let start = Barrier::new(threads);
    let record = run_threads(threads, |t| {
        // Build the spans first: the audit is about `record`, not about
        // making spans (which allocates their attribute vectors).
        let mut spans: Vec<SpanData> = (0..per_record)
            .map(|i| {
                let mut s = SpanData::new("audit");
                s.attributes
                    .push(otlp_exporter::KeyValue::new("i", i as i64));
                s.attributes
                    .push(otlp_exporter::KeyValue::new("thread_id", t as i64));
                s
            })
            .collect();
        // Warm up: the first record on a thread sets up its lane.
        pipeline.record(SpanData::new("warm-up"));
        start.wait();
        // Switches first, allocations last: reading /proc allocates.
        let v0 = voluntary_switches();
        let a0 = allocations();
        for s in spans.drain(..) {
            pipeline.record(s);
        }
        let a1 = allocations();
        let v1 = voluntary_switches();
        (a1 - a0, v0.zip(v1).map(|(a, b)| b - a))
    });
    let stats = pipeline.shutdown(Duration::from_secs(30)).stats;

    // The per-producer ring (`bounded`, the pipeline's queue under
    // drop-oldest), each lane holding all `n`.
    let (tx, mut rx) = otlp_queue::bounded::<u64>(n);
    let template = std::sync::Mutex::new(tx);
    let mut out = Vec::with_capacity(4096);
    let push = push_threads(
        threads,
        n,
        || template.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        |tx, i| tx.try_push(i).is_ok(),
        move || {
            out.clear();
            if rx.pop_batch(&mut out, 4096) == 0 {
                thread::yield_now();
            }
        },
    );
    // The pooled queue (the pipeline's under every other policy), whose
    // producers claim chunks of a shared pool: holding all pushes.
    let (tx, mut rx) = otlp_queue::pooled::bounded_total::<u64>(threads * n);
    let template = std::sync::Mutex::new(tx);
    let pooled = push_threads(
        threads,
        n,
        || {
            template
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_clone()
                .expect("a lane")
        },
        |tx, i| tx.try_push(i).is_ok(),
        move || {
            if rx.pop_each(4096, drop) == 0 {
                thread::yield_now();
            }
        },
    );

    let sum_alloc = |r: &[(u64, Option<u64>)]| r.iter().map(|x| x.0).sum::<u64>();
    let max_switch = |r: &[(u64, Option<u64>)]| r.iter().filter_map(|x| x.1).max();
    let strip = |r: &[(u64, Option<u64>, u64)]| -> (Vec<(u64, Option<u64>)>, u64) {
        (
            r.iter().map(|x| (x.0, x.1)).collect(),
            r.iter().map(|x| x.2).sum(),
        )
    };
    let ((push, push_ok), (pooled, pooled_ok)) = (strip(&push), strip(&pooled));
    let (ra, rs, pa, ps, qa, qs) = (
        sum_alloc(&record),
        max_switch(&record),
        sum_alloc(&push),
        max_switch(&push),
        sum_alloc(&pooled),
        max_switch(&pooled),
    );
    let all = (threads * n) as u64;
    let recorded_all = stats.is_balanced()
        && stats.dropped.total() == 0
        && stats.accepted == (threads * (per_record + 1)) as u64;
    let slack = switch_slack(n);
    let switches_ok = |s: Option<u64>| s.is_none_or(|s| s <= slack);
    let passed = ra == 0
        && pa == 0
        && qa == 0
        && switches_ok(rs)
        && switches_ok(ps)
        && switches_ok(qs)
        && recorded_all
        && push_ok == all
        && pooled_ok == all;
    let show = |s: Option<u64>| s.map_or("not measured (no /proc)".to_string(), |s| s.to_string());
    let mut details = String::new();
    let _ = writeln!(
        details,
        "{threads} threads at once, {per_record} records or {n} pushes each, counted around the calls only (steady state). Every call is one that succeeds (the queues hold the whole run; a refused call is another path).\n"
    );
    let _ = writeln!(
        details,
        "| path | calls that succeeded | allocations (all threads) | most voluntary context switches in one thread |"
    );
    let _ = writeln!(details, "|---|---:|---:|---:|");
    let _ = writeln!(
        details,
        "| `Pipeline::record` (drop newest: the pooled queue) | {} of {} | {ra} | {} |",
        stats.exported,
        stats.accepted,
        show(rs)
    );
    let _ = writeln!(
        details,
        "| `Producer::try_push` (per-producer rings) | {push_ok} of {all} | {pa} | {} |",
        show(ps)
    );
    let _ = writeln!(
        details,
        "| `pooled::Producer::try_push` (chunks of a shared pool) | {pooled_ok} of {all} | {qa} | {} |",
        show(qs)
    );
    let _ = writeln!(
        details,
        "\nThe pipeline's accounting after the run: accepted {}, exported {}, dropped {} (balanced: {}).",
        stats.accepted,
        stats.exported,
        stats.dropped.total(),
        stats.is_balanced()
    );
    Audit {
        name: "lock-free",
        passed,
        verdict: format!(
            "record: {ra} allocations, {} voluntary switches, {} of {} exported; push: {pa} allocations, {}; pooled push: {qa} allocations, {} (needs 0 allocations, <= {slack} switches, every call succeeding)",
            show(rs),
            stats.exported,
            stats.accepted,
            show(ps),
            show(qs)
        ),
        details,
        json: json!({
            "threads": threads,
            "calls_per_thread": n,
            "records_per_thread": per_record,
            "record": {"allocations": ra, "max_voluntary_switches": rs, "accepted": stats.accepted, "exported": stats.exported, "dropped": stats.dropped.total()},
            "push": {"allocations": pa, "max_voluntary_switches": ps, "succeeded": push_ok},
            "pooled_push": {"allocations": qa, "max_voluntary_switches": qs, "succeeded": pooled_ok},
            "switch_slack": slack,
        }),
    }
}
