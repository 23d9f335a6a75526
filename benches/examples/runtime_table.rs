//! Prints the runtime-core vs tokio table for `docs/runtime-performance.md`:
//! every operation of `benches::runtime` on both runtimes, median of 5.
//!
//! `cargo run --release -p benches --example runtime_table [workers] [rounds]`
//! (default: 2 workers, 5 rounds). Rows print as they are measured.
//!
//! `... --example runtime_table cancel <tasks> [rounds]` measures only
//! the cancel-and-drain of `tasks` sleeping tasks (2 workers), in many
//! short rounds (about 200 tasks each) alternating ours and tokio (the
//! code in a spawned task), and prints the minimum, lower quartile and
//! median of the per-group time over the rounds: on a shared machine a
//! round that a preemption hits is an outlier that a mean (criterion's
//! estimate) takes in and a median leaves out.
//!
//! `... --example runtime_table cancel-ours <tasks> <groups> [rounds]`
//! runs only ours (`cancel-tokio`: only tokio's, its code in a spawned
//! task): `rounds` (default 1) times `groups` cancel-and-drains of
//! `tasks` sleeping tasks in one `block_on`, and prints the minimum and
//! median per group over the rounds. Under `valgrind --tool=callgrind
//! --instr-atstart=no` it counts the instructions of the timed windows
//! only (the harness brackets them with callgrind's start/stop
//! instrumentation requests): divide the total by `groups`.

use std::io::Write as _;

use benches::runtime::{Op, Ours, Tokio, table_header, table_row};

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("cancel") {
        args.next();
        let k: usize = args
            .next()
            .map_or(100, |s| s.parse().expect("tasks: a number"));
        let rounds: usize = args
            .next()
            .map_or(200, |s| s.parse().expect("rounds: a number"));
        cancel_quantiles(k, rounds);
        return;
    }
    if let Some(side @ ("cancel-ours" | "cancel-tokio")) = args.peek().map(String::as_str) {
        // One side only (for callgrind): `cancel-ours|cancel-tokio <tasks> <groups> [rounds]`.
        let tokio_side = side == "cancel-tokio";
        args.next();
        let k: usize = args
            .next()
            .map_or(100, |s| s.parse().expect("tasks: a number"));
        let groups: u64 = args
            .next()
            .map_or(1000, |s| s.parse().expect("groups: a number"));
        let rounds: usize = args
            .next()
            .map_or(1, |s| s.parse().expect("rounds: a number"));
        let run: Box<dyn Fn() -> std::time::Duration> = if tokio_side {
            let tokio = Tokio::new(2);
            Box::new(move || tokio.run_in_task(Op::CancelDrain(k), groups))
        } else {
            let ours = Ours::new(2);
            Box::new(move || ours.run(Op::CancelDrain(k), groups))
        };
        let mut per: Vec<f64> = (0..rounds)
            .map(|_| run().as_nanos() as f64 / groups as f64)
            .collect();
        per.sort_by(f64::total_cmp);
        let who = if tokio_side { "tokio" } else { "ours" };
        println!(
            "cancel_drain_{k}: {who} min/median {:.0}/{:.0} ns per group, {rounds} rounds of {groups} groups",
            per[0],
            per[per.len() / 2]
        );
        return;
    }
    let workers = args
        .next()
        .map_or(2, |s| s.parse().expect("workers: a number"));
    let rounds = args
        .next()
        .map_or(5, |s| s.parse().expect("rounds: a number"));
    let ours = Ours::new(workers);
    let tokio = Tokio::new(workers);
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", table_header(workers, rounds));
    let _ = out.flush();
    for op in Op::ALL {
        let _ = write!(out, "{}", table_row(&ours, &tokio, op, rounds));
        let _ = out.flush();
    }
}

/// Per-group cancel-and-drain time of `k` tasks, ours and tokio's, over
/// `rounds` alternating rounds: minimum, lower quartile, median.
fn cancel_quantiles(k: usize, rounds: usize) {
    let ours = Ours::new(2);
    let tokio = Tokio::new(2);
    let op = Op::CancelDrain(k);
    let reps = (200 / k.max(1)).max(1) as u64;
    let (mut o, mut t) = (Vec::new(), Vec::new());
    // Warm-up, off the record.
    ours.run(op, reps);
    tokio.run_in_task(op, reps);
    for _ in 0..rounds {
        o.push(ours.run(op, reps).as_nanos() as f64 / reps as f64);
        t.push(tokio.run_in_task(op, reps).as_nanos() as f64 / reps as f64);
    }
    let q = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 4], v[v.len() / 2])
    };
    let (o, t) = (q(&mut o), q(&mut t));
    println!(
        "cancel_drain_{k}: ours min/q1/median {:.0}/{:.0}/{:.0} ns, tokio {:.0}/{:.0}/{:.0} ns, tokio/ours at the median {:.2}",
        o.0,
        o.1,
        o.2,
        t.0,
        t.1,
        t.2,
        t.2 / o.2
    );
}
