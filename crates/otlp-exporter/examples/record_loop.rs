//! A tight loop recording spans on one thread, for profiling the record
//! path (`perf record`, `valgrind --tool=callgrind`): each span has two
//! attributes and is built and ended as in the `record` criterion bench
//! (`benches/src/record.rs`). Records `N` spans (the first argument,
//! default 5 000 000) in each of 5 rounds and prints the best round's
//! nanoseconds per span. The queue holds the second argument's number of
//! spans (default 65 536; at most `MAX_QUEUE_SIZE`, 1 048 576: give it
//! `5 * N` with `N` up to 200 000 for a run that can never drop, as
//! instruction counts under valgrind need). The transport discards.
//!
//! `cargo run --release -p otlp-exporter --example record_loop -- 1000000`

use std::time::{Duration, Instant};

use otlp_exporter::{EncodedRequest, ExportResult, Pipeline, Resource, Transport};

struct Discard;

impl Transport for Discard {
    fn export(&self, _request: &EncodedRequest, _deadline: Instant) -> ExportResult {
        ExportResult::Success
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let queue: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(65_536);
    let pipeline = Pipeline::builder()
        .transport(Discard)
        .resource(Resource::new("bench"))
        .max_queue_size(queue)
        .scheduled_delay(Duration::from_millis(100))
        .build()
        .expect("valid settings");
    let tracer = pipeline.tracer("bench", "0");
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for i in 0..n {
            let mut span = tracer.start("op");
            span.set_attribute("thread_id", 1)
                .set_attribute("i", i as i64);
            span.end();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    drop(tracer);
    let s = pipeline.shutdown(Duration::from_secs(30)).stats;
    println!(
        "best {best:.1} ns/span; accepted {} exported {} dropped {}",
        s.accepted,
        s.exported,
        s.dropped.total()
    );
}
