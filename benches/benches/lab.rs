//! Criterion: lab runs per second of a scenario of 10 tasks, each passing
//! 100 await points (and, for scale, 10), one seed per run.
//! `cargo bench -p benches --bench lab`; the figure is in
//! `docs/runtime-performance.md`, "Lab runtime".

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use benches::lab::{AWAITS, TASKS, run_one};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn lab(c: &mut Criterion) {
    let mut group = c.benchmark_group("lab_run");
    group
        .throughput(Throughput::Elements(1)) // one lab run
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for awaits in [AWAITS, 10] {
        let mut seed = 0;
        group.bench_function(format!("{TASKS}_tasks_x_{awaits}_awaits"), |b| {
            b.iter(|| {
                seed += 1;
                run_one(seed, awaits)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lab);
criterion_main!(benches);
