//! Criterion: runtime-core against tokio's multi-threaded runtime, two
//! worker threads each (the CI machine has two cores), one group per
//! operation with an `ours`, a `tokio` (the measuring code in a spawned
//! task, placed as ours is: the like-for-like pair) and a `tokio_block_on`
//! function (the anchor's placement), measured in the same run.
//! `cargo bench -p benches --bench runtime`.
//!
//! What each operation is on each runtime, and how it pairs with the tokio
//! anchor (`../shared/anchors/tokio-bench`), is in `benches::runtime`. For
//! the markdown table in `docs/runtime-performance.md` use
//! `cargo run --release -p benches --example runtime_table`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use benches::runtime::{Op, Ours, Tokio};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const WORKERS: usize = 2;

fn runtime(c: &mut Criterion) {
    let ours = Ours::new(WORKERS);
    let tokio = Tokio::new(WORKERS);
    for op in Op::ALL {
        let mut group = c.benchmark_group(op.id());
        // Throughput in iterations (tasks, yields, rounds, groups, timers).
        group
            .throughput(Throughput::Elements(1))
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        group.bench_function("ours", |b| b.iter_custom(|n| ours.run(op, n)));
        group.bench_function("tokio", |b| b.iter_custom(|n| tokio.run_in_task(op, n)));
        group.bench_function("tokio_block_on", |b| b.iter_custom(|n| tokio.run(op, n)));
        group.finish();
    }
}

criterion_group!(benches, runtime);
criterion_main!(benches);
