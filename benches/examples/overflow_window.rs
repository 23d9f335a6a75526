//! Why a delivered rate needs a sustained load where a queue overflows
//! (`docs/exporter-performance.md`, session 17): `threads` threads each
//! make `spans` spans (two attributes) through our pipeline with `total`
//! spans of queue in all, as `benches::exporter`'s fixed-count workload
//! does; each round prints how many spans the exporter had received when
//! the recording threads were done, how many in the end, and how long the
//! recording and the whole run (to the end of shutdown) took.
//!
//! `cargo run --release -p benches --example overflow_window -- 4 2048 20 60000`

use std::sync::Barrier;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use benches::exporter::{Counting, ours_queue_setting};
use otlp_exporter::{Pipeline, Resource};

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let (threads, total, rounds, spans) = (
        arg(1, 4) as usize,
        arg(2, 2048) as usize,
        arg(3, 20),
        arg(4, 60_000),
    );
    println!("| round | received when recording ended | received in all | recording | whole run |");
    println!("|---:|---:|---:|---:|---:|");
    for round in 1..=rounds {
        let sink = Counting::default();
        let q = ours_queue_setting(total, threads);
        let pipeline = Pipeline::builder()
            .transport(sink.clone())
            .resource(Resource::new("overflow"))
            .max_queue_size(q)
            .max_export_batch_size(512.min(q))
            .scheduled_delay(Duration::from_millis(100))
            .build()
            .expect("valid settings");
        let tracer = pipeline.tracer("overflow", "0");
        let start = Barrier::new(threads + 1);
        let t0 = Instant::now();
        // The scope joins the threads before it returns.
        let recording = std::thread::scope(|s| {
            for t in 0..threads {
                let (tracer, start) = (&tracer, &start);
                s.spawn(move || {
                    start.wait();
                    for i in 0..spans {
                        let mut sp = tracer.start("high_frequency_operation");
                        sp.set_attribute("thread_id", t as i64);
                        sp.set_attribute("i", i as i64);
                        sp.end();
                    }
                });
            }
            start.wait();
            Instant::now()
        });
        let recorded = recording.elapsed();
        let received_then = sink.spans.load(Ordering::Relaxed);
        let report = pipeline.shutdown(Duration::from_secs(30));
        assert!(report.completed && report.stats.is_balanced());
        println!(
            "| {round} | {received_then} | {} | {:.2} ms | {:.2} ms |",
            report.stats.exported,
            recorded.as_secs_f64() * 1e3,
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
}
