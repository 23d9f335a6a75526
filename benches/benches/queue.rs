//! Criterion: delivered items/s, one consumer and N producers, lossless
//! mode, otlp-queue against crossbeam's `ArrayQueue` and `Mutex<VecDeque>`
//! in the same run. `cargo bench -p benches --bench queue`.
//!
//! For the full sweep (shedding mode, drop fractions, ratios) use
//! `cargo xtask sweep`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use benches::queue::{Candidate, Mode, run};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const CAPACITY: usize = 4096;
/// Items per producer in one criterion iteration.
const ITEMS: u64 = 10_000;

fn producer_counts() -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut counts = vec![1, 2, 4];
    if cores >= 8 {
        counts.push(8);
    }
    counts
}

fn lossless(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_lossless_delivered");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for producers in producer_counts() {
        // One iteration = ITEMS items from each producer, so criterion's
        // elements/s is delivered items/s for the whole queue. Each sample
        // is one run (threads started outside the timed part).
        group.throughput(Throughput::Elements(ITEMS * producers as u64));
        for candidate in Candidate::ALL {
            group.bench_with_input(
                BenchmarkId::new(candidate.id(), producers),
                &producers,
                |b, &p| {
                    b.iter_custom(|iters| {
                        let per = iters * ITEMS;
                        let r = run(candidate, p, per, Mode::Lossless, CAPACITY);
                        Duration::from_secs_f64((per * p as u64) as f64 / r.delivered_per_s)
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, lossless);
criterion_main!(benches);
