//! Prints the runtime-core vs tokio table for `docs/runtime-performance.md`:
//! every operation of `benches::runtime` on both runtimes, median of 5.
//!
//! `cargo run --release -p benches --example runtime_table [workers] [rounds]`
//! (default: 2 workers, 5 rounds).

fn main() {
    let mut args = std::env::args().skip(1);
    let workers = args.next().map_or(2, |s| s.parse().expect("workers: a number"));
    let rounds = args.next().map_or(5, |s| s.parse().expect("rounds: a number"));
    print!("{}", benches::runtime::table(workers, rounds));
}
