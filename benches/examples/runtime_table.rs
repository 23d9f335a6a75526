//! Prints the runtime-core vs tokio table for `docs/runtime-performance.md`:
//! every operation of `benches::runtime` on both runtimes, median of 5.
//!
//! `cargo run --release -p benches --example runtime_table [workers] [rounds]`
//! (default: 2 workers, 5 rounds). Rows print as they are measured.

use std::io::Write as _;

use benches::runtime::{Op, Ours, Tokio, table_header, table_row};

fn main() {
    let mut args = std::env::args().skip(1);
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
