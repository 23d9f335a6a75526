//! Audit 4: the hot path stays lock-free. Evidence, not a grep: with a
//! counting global allocator and each thread's count of voluntary context
//! switches (the thread went to sleep: a lock, a syscall that blocks), over
//! steady-state runs of `record` (span built beforehand) and `try_push`.

use std::fmt::Write as _;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use benches::exporter::Counting;
use otlp_exporter::{Pipeline, Resource, SpanData};
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

pub(crate) fn audit(o: &Options) -> Audit {
    let threads = o.top();
    let n: usize = if o.quick { 20_000 } else { 200_000 };
    eprintln!("  lock-free: {threads} threads, {n} records and pushes each");
    let pipeline = Pipeline::builder()
        .transport(Counting::default())
        .resource(Resource::new("audit"))
        .scheduled_delay(Duration::from_millis(50))
        .build()
        .expect("valid settings");
    let start = Barrier::new(threads);
    let record = run_threads(threads, |t| {
        // Build the spans first: the audit is about `record`, not about
        // making spans (which allocates their attribute vectors).
        let mut spans: Vec<SpanData> = (0..n)
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

    let (tx, mut rx) = otlp_queue::bounded::<u64>(1024);
    let template = std::sync::Mutex::new(tx);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let push = thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            let mut out = Vec::with_capacity(4096);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                out.clear();
                if rx.pop_batch(&mut out, 4096) == 0 {
                    thread::yield_now();
                }
            }
        });
        let r = run_threads(threads, |_| {
            let tx = template.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let v0 = voluntary_switches();
            let a0 = allocations();
            for i in 0..n as u64 {
                let _ = tx.try_push(i);
            }
            let a1 = allocations();
            let v1 = voluntary_switches();
            (a1 - a0, v0.zip(v1).map(|(a, b)| b - a))
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });

    let sum_alloc = |r: &[(u64, Option<u64>)]| r.iter().map(|x| x.0).sum::<u64>();
    let max_switch = |r: &[(u64, Option<u64>)]| r.iter().filter_map(|x| x.1).max();
    let (ra, rs, pa, ps) = (
        sum_alloc(&record),
        max_switch(&record),
        sum_alloc(&push),
        max_switch(&push),
    );
    let slack = switch_slack(n);
    let switches_ok = |s: Option<u64>| s.is_none_or(|s| s <= slack);
    let passed = ra == 0 && pa == 0 && switches_ok(rs) && switches_ok(ps) && stats.is_balanced();
    let show = |s: Option<u64>| s.map_or("not measured (no /proc)".to_string(), |s| s.to_string());
    let mut details = String::new();
    let _ = writeln!(
        details,
        "{threads} threads at once, {n} calls each, counted around the calls only (steady state).\n"
    );
    let _ = writeln!(
        details,
        "| path | allocations (all threads) | most voluntary context switches in one thread |"
    );
    let _ = writeln!(details, "|---|---:|---:|");
    let _ = writeln!(
        details,
        "| `Pipeline::record` (drop newest) | {ra} | {} |",
        show(rs)
    );
    let _ = writeln!(details, "| `Producer::try_push` | {pa} | {} |", show(ps));
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
            "record: {ra} allocations, {} voluntary switches; push: {pa} allocations, {} (needs 0 allocations, <= {slack} switches)",
            show(rs),
            show(ps)
        ),
        details,
        json: json!({
            "threads": threads,
            "calls_per_thread": n,
            "record": {"allocations": ra, "max_voluntary_switches": rs},
            "push": {"allocations": pa, "max_voluntary_switches": ps},
            "switch_slack": slack,
        }),
    }
}
