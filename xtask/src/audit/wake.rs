//! Audit 6: the runtime's task wake path stays lock-free (guarantee 8).
//! Two tasks ping-pong over two capacity-1 `runtime_core` channels: every
//! round is two wake-ups through the channels' wakers and the scheduler.
//! Counted around the steady-state rounds, on the worker thread that runs
//! them: allocations (counting global allocator) and voluntary context
//! switches (a thread that went to sleep: a contended lock, a blocking
//! syscall).

use std::fmt::Write as _;
use std::time::Instant;

use runtime_core::Runtime;
use runtime_core::caps::ambient_authority;
use runtime_core::channel::mpsc;
use serde_json::json;

use super::alloc::allocations;
use super::lockfree::{switch_slack, voluntary_switches};
use super::{Audit, Options};

/// One measured run: (allocations, voluntary switches, rounds/s), or None
/// if the measuring task moved between threads mid-run (the thread-local
/// counters would not compare).
fn run(rt: &Runtime, rounds: u64) -> Option<(u64, Option<u64>, f64)> {
    rt.block_on(move |cx| async move {
        let (tx1, mut rx1) = mpsc::channel::<u64>(1).map_err(|_| ())?;
        let (tx2, mut rx2) = mpsc::channel::<u64>(1).map_err(|_| ())?;
        cx.try_spawn(move |cx| async move {
            while let Ok(v) = rx1.recv(&cx).await {
                if tx2.send(&cx, v).await.is_err() {
                    break;
                }
            }
            Ok::<_, ()>(())
        });
        // Warm up: first polls register wakers, queues reach their size.
        for i in 0..1_000 {
            tx1.send(&cx, i).await.map_err(|_| ())?;
            rx2.recv(&cx).await.map_err(|_| ())?;
        }
        let thread = std::thread::current().id();
        // Switches first, allocations last: reading /proc allocates.
        let v0 = voluntary_switches();
        let a0 = allocations();
        let t0 = Instant::now();
        for i in 0..rounds {
            tx1.send(&cx, i).await.map_err(|_| ())?;
            rx2.recv(&cx).await.map_err(|_| ())?;
        }
        let elapsed = t0.elapsed();
        let a1 = allocations();
        let v1 = voluntary_switches();
        drop(tx1);
        if std::thread::current().id() != thread {
            return Ok(None);
        }
        Ok::<_, ()>(Some((
            a1 - a0,
            v0.zip(v1).map(|(a, b)| b - a),
            rounds as f64 / elapsed.as_secs_f64(),
        )))
    })
    .ok()
    .flatten()
}

pub(crate) fn audit(o: &Options) -> Audit {
    let rounds: u64 = if o.quick { 20_000 } else { 200_000 };
    eprintln!("  task-wake: ping-pong, {rounds} rounds");
    let rt = Runtime::builder()
        .worker_threads(2)
        .thread_name("audit-runtime")
        .build(ambient_authority())
        .expect("runtime");
    let measured = (0..5).find_map(|_| run(&rt, rounds));
    let slack = switch_slack(rounds as usize * 2);
    let (passed, verdict, details, value) = match measured {
        Some((allocs, switches, rate)) => {
            let passed = allocs == 0 && switches.is_none_or(|s| s <= slack);
            let show = switches.map_or("not measured (no /proc)".to_string(), |s| s.to_string());
            let mut d = String::new();
            let _ = writeln!(
                d,
                "{rounds} ping-pong rounds between two tasks over two capacity-1 channels ({} wake-ups), \
                 2 workers, steady state, on the worker that ran them.\n",
                rounds * 2
            );
            let _ = writeln!(
                d,
                "| allocations | voluntary context switches | rounds/s (this machine) |"
            );
            let _ = writeln!(d, "|---:|---:|---:|");
            let _ = writeln!(d, "| {allocs} | {show} | {rate:.0} |");
            (
                passed,
                format!(
                    "{allocs} allocations, {show} voluntary switches over {} wake-ups (needs 0, <= {slack})",
                    rounds * 2
                ),
                d,
                json!({"rounds": rounds, "allocations": allocs, "voluntary_switches": switches, "switch_slack": slack, "rounds_per_s": rate}),
            )
        }
        None => (
            false,
            "the measuring task changed threads in 5 runs out of 5: no comparable count"
                .to_string(),
            String::new(),
            json!({"rounds": rounds, "measured": false}),
        ),
    };
    let _ = rt.shutdown(std::time::Duration::from_secs(5));
    Audit {
        name: "task-wake",
        passed,
        verdict,
        details,
        json: value,
    }
}
