//! One thread making `tracing` spans through a subscriber stack, for
//! profiling the layer path (`valgrind --tool=callgrind
//! --separate-threads=yes`, `perf record`): the candidate (`registry`,
//! `ours`, `minimal`, `theirs`), the number of spans and the total queue
//! are the arguments. Prints what `benches::layer::run` measured.
//!
//! `cargo run --release -p benches --example layer_loop -- ours 1000000 262144`

use benches::layer::{LayerCandidate, run};

fn main() {
    let mut args = std::env::args().skip(1);
    let candidate = match args.next().as_deref() {
        Some("registry") => LayerCandidate::Registry,
        Some("ours") | None => LayerCandidate::Ours,
        Some("minimal") => LayerCandidate::OursMinimal,
        Some("theirs") => LayerCandidate::TracingOtel,
        Some(other) => panic!("unknown candidate `{other}` (registry, ours, minimal, theirs)"),
    };
    let spans: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let queue: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(262_144);
    let r = run(candidate, 1, spans, queue);
    println!("{}: {r:?}", candidate.name());
}
