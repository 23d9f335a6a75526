//! `cargo xtask sweep`: otlp-queue, otlp-exporter and otlp-tracing's
//! layer against their baselines, same run, same method, and the ratios
//! that matter.

use std::fmt::Write as _;
use std::path::PathBuf;

use benches::exporter::PipelineResult;

use crate::audit::{m, median};
use benches::queue::{Candidate, Mode, RunResult, run};

pub(crate) struct Options {
    threads: Vec<usize>,
    items: u64,
    reps: usize,
    capacity: usize,
    spans: u64,
    /// `--for MS`: a time per thread instead of `spans`.
    for_ms: Option<u64>,
    only: Option<String>,
    out: PathBuf,
}

impl Options {
    /// What each recording thread does in a pipeline run.
    fn workload(&self) -> benches::exporter::Workload {
        use benches::exporter::Workload;
        self.for_ms.map_or(Workload::Spans(self.spans), |ms| {
            Workload::For(std::time::Duration::from_millis(ms))
        })
    }

    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let cores = cores();
        let mut threads = vec![1, 2, 4, 8];
        if cores >= 16 {
            threads.push(15);
        }
        let mut o = Options {
            threads,
            items: 4_000_000,
            reps: 3,
            capacity: 4096,
            spans: 400_000,
            for_ms: None,
            only: None,
            out: PathBuf::from("target/sweep"),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || crate::flag_value(&mut it, flag);
            match flag.as_str() {
                "--quick" => {
                    o.items = 1_000_000;
                    o.spans = 100_000;
                    o.reps = 1;
                }
                "--spans" => o.spans = positive(flag, &value()?)?,
                "--for" => o.for_ms = Some(positive(flag, &value()?)?),
                "--only" => match value()?.as_str() {
                    v @ ("queue" | "pipeline" | "layer") => o.only = Some(v.to_owned()),
                    v => {
                        return Err(format!(
                            "--only: `{v}` is not `queue`, `pipeline` or `layer`"
                        ));
                    }
                },
                "--threads" => o.threads = parse_threads(&value()?)?,
                "--items" => o.items = positive(flag, &value()?)?,
                "--reps" => o.reps = positive(flag, &value()?)? as usize,
                "--capacity" => o.capacity = positive(flag, &value()?)? as usize,
                "--out" => o.out = PathBuf::from(value()?),
                other => {
                    return Err(format!(
                        "sweep: unknown option `{other}` (see `cargo xtask help`)"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// Thread counts from `--threads 1,2,4` (each at least 1): sorted and without repeats, so
/// that a verdict "at the top thread count" judges the largest one, and a
/// "1-producer" base is the smallest.
pub(crate) fn parse_threads(v: &str) -> Result<Vec<usize>, String> {
    let mut threads = v
        .split(',')
        .map(|t| match t.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("--threads: `{t}` is not a thread count >= 1")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    threads.sort_unstable();
    threads.dedup();
    Ok(threads)
}

fn positive(flag: &str, v: &str) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{flag}: `{v}` is not a whole number >= 1")),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The machine, in words, for every table that shows absolute figures.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{} cores, {cpu}, {}", cores(), std::env::consts::ARCH)
}

/// The figure that matters for a mode: delivered items/s when lossless,
/// push attempts/s per producer when shedding.
fn key(mode: Mode, r: &RunResult) -> f64 {
    match mode {
        Mode::Lossless => r.delivered_per_s,
        Mode::Shedding => r.per_producer_per_s,
    }
}

/// Every candidate at one producer count, `reps` rounds in which each
/// candidate runs once, in turn: a slow spell of a shared machine then hits
/// every candidate alike, and ratios are taken within a round.
struct Cell {
    /// Per candidate (in `Candidate::ALL` order): the run with the median
    /// key figure.
    median: Vec<RunResult>,
    /// Median over rounds of otlp-queue's key figure divided by
    /// ArrayQueue's in the same round.
    ratio_to_array_queue: f64,
    /// The same for otlp-queue's pooled queue.
    pooled_ratio_to_array_queue: f64,
}

fn measure(threads: usize, mode: Mode, o: &Options) -> Cell {
    let mut runs: Vec<Vec<RunResult>> = vec![Vec::new(); Candidate::ALL.len()];
    for _ in 0..o.reps {
        for (i, c) in Candidate::ALL.into_iter().enumerate() {
            runs[i].push(run(c, threads, o.items, mode, o.capacity));
        }
    }
    let aq = &runs[Candidate::ArrayQueue.index()];
    let ratio_of = |c: Candidate| {
        median(
            runs[c.index()]
                .iter()
                .zip(aq)
                .map(|(ours, aq)| key(mode, ours) / key(mode, aq))
                .collect(),
        )
    };
    let (ratio, pooled_ratio) = (
        ratio_of(Candidate::OtlpQueue),
        ratio_of(Candidate::OtlpPooled),
    );
    let medians = runs
        .into_iter()
        .map(|mut rs| {
            rs.sort_by(|a, b| key(mode, a).total_cmp(&key(mode, b)));
            rs[rs.len() / 2]
        })
        .collect();
    Cell {
        median: medians,
        ratio_to_array_queue: ratio,
        pooled_ratio_to_array_queue: pooled_ratio,
    }
}

pub(crate) fn main(o: &Options) -> Result<(), String> {
    let machine = machine();
    eprintln!(
        "sweep: {machine}; producers {:?}, {} rounds",
        o.threads, o.reps
    );
    let mut md = String::new();
    let only = |section: &str| o.only.as_deref().is_none_or(|only| only == section);
    if only("queue") {
        queue_section(o, &machine, &mut md);
    }
    if only("pipeline") {
        pipeline_section(o, &machine, &mut md);
    }
    if only("layer") {
        layer_section(o, &machine, &mut md);
    }
    print!("{md}");
    std::fs::create_dir_all(&o.out).map_err(|e| format!("creating {}: {e}", o.out.display()))?;
    let path = o.out.join("sweep.md");
    std::fs::write(&path, &md).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("sweep: wrote {}", path.display());
    Ok(())
}

/// Span pipelines end to end: ours and the OpenTelemetry SDK's
/// `BatchSpanProcessor` (its exporter counting `SpanData`, and encoding
/// OTLP protobuf with prost), each with the same total queue, rounds
/// interleaved.
fn pipeline_section(o: &Options, machine: &str, md: &mut String) {
    let _ = writeln!(
        md,
        "# otlp-exporter against the OpenTelemetry SDK's BatchSpanProcessor\n"
    );
    let _ = writeln!(
        md,
        "Machine: {machine}. N threads each make {} (two attributes each) as fast as they can; \
         the exporter only counts. Ours encodes OTLP protobuf on the recording threads; the SDK's \
         exporter gets `SpanData` and either only counts it (\"SDK\") or encodes each batch to an \
         OTLP protobuf request with opentelemetry-proto and prost (\"SDK+prost\": the same work as \
         ours). The same total queue on both sides: the SDK's one queue holds `queue` spans; ours \
         gets `max_queue_size` = `queue` less a 16-span chunk per recording thread, which each \
         thread also holds, so that all its threads together hold at most `queue` \
         (`ours_queue_setting`). Batch 512, delay 100 ms. {} rounds, every pipeline once per round in turn; medians over rounds, ratios \
         are medians of the ratios within a round.\n",
        o.workload(),
        o.reps
    );
    let _ = writeln!(
        md,
        "| threads | total queue | ours offered/s | ours delivered/s | ours dropped | SDK offered/s | SDK delivered/s | SDK dropped | ours / SDK | SDK+prost delivered/s | SDK+prost dropped | ours / SDK+prost |"
    );
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for &t in &o.threads {
        for queue in [2048usize, 65_536] {
            eprintln!("  pipelines with {t} threads, total queue {queue}");
            let benches::exporter::Comparison {
                ours: a,
                sdk: b,
                ratio,
                sdk_prost,
                ratio_prost,
            } = benches::exporter::compare(t, o.workload(), queue, o.reps, true);
            let pct = |r: &PipelineResult| r.dropped() as f64 * 100.0 / r.offered as f64;
            let (p, rp) = (
                sdk_prost.expect("asked for"),
                ratio_prost.unwrap_or(f64::NAN),
            );
            let _ = writeln!(
                md,
                "| {t} | {queue} | {} | {} | {:.1} % | {} | {} | {:.1} % | {ratio:.1}x | {} | {:.1} % | {rp:.1}x |",
                m(a.offered_per_s),
                m(a.delivered_per_s),
                pct(&a),
                m(b.offered_per_s),
                m(b.delivered_per_s),
                pct(&b),
                m(p.delivered_per_s),
                pct(&p),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nEvery span of ours is accounted for: each run asserts that the pipeline's \
         accounting balances (accepted = exported + dropped by reason) before it is counted.\n"
    );
}

/// `tracing` spans through the registry with our layer against the
/// registry with tracing-opentelemetry and the SDK's `BatchSpanProcessor`
/// (same stack, same fields, same total queue), and the registry alone.
fn layer_section(o: &Options, machine: &str, md: &mut String) {
    use benches::layer::{LayerCandidate, compare, run};
    let _ = writeln!(
        md,
        "# tracing + OtlpLayer against tracing + tracing-opentelemetry + BatchSpanProcessor\n"
    );
    let _ = writeln!(
        md,
        "Machine: {machine}. N threads each make {} `tracing` spans (`info_span!` with two \
         fields, entered, exited, closed) on `tracing_subscriber::registry()` with one layer: \
         ours (`OtlpLayer`; the transport only counts) or tracing-opentelemetry's over the \
         SDK's `BatchSpanProcessor` (the exporter only counts `SpanData`; its thread and \
         target attributes and its context activation off, location and busy/idle time on \
         in both). The same total queue on both sides (ours: `max_queue_size` = `queue` less \
         a 16-span chunk per recording thread, `ours_queue_setting`), batch 512, delay 100 ms, `AlwaysOn`. \
         {} rounds, both layers once per round in turn; medians, ratios are medians of the \
         per-round ratios. \"registry alone\" is the floor: the same spans with no layer.\n",
        o.spans, o.reps
    );
    let _ = writeln!(
        md,
        "| threads | total queue | registry alone offered/s | ours offered/s | ours delivered/s | ours dropped | theirs offered/s | theirs delivered/s | theirs dropped | ours / theirs |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &t in &o.threads {
        let floor = run(LayerCandidate::Registry, t, o.spans, 2048);
        for queue in [2048usize, 65_536] {
            eprintln!("  layers with {t} threads, total queue {queue}");
            let c = compare(t, o.spans, queue, o.reps);
            let pct = |r: &PipelineResult| r.dropped() as f64 * 100.0 / r.offered as f64;
            let _ = writeln!(
                md,
                "| {t} | {queue} | {} | {} | {} | {:.1} % | {} | {} | {:.1} % | {:.1}x |",
                m(floor.offered_per_s),
                m(c.ours.offered_per_s),
                m(c.ours.delivered_per_s),
                pct(&c.ours),
                m(c.theirs.offered_per_s),
                m(c.theirs.delivered_per_s),
                pct(&c.theirs),
                c.ratio,
            );
        }
    }
    let _ = writeln!(
        md,
        "\nEvery span of ours is accounted for: each run asserts that the pipeline's \
         accounting balances and that it accepted every span the layer made.\n"
    );
}

fn queue_section(o: &Options, machine: &str, md: &mut String) {
    let _ = writeln!(md, "# otlp-queue against its baselines\n");
    let _ = writeln!(
        md,
        "Machine: {machine}. One consumer, N producers, `u64` items, total capacity {} \
         (otlp-queue: {} / N per lane; otlp-queue pooled, the exporter's queue: a pool of {} less \
         a {}-item chunk per producer, which each producer also holds), {} items per producer, {} \
         rounds, each running every queue once in turn; figures are medians over rounds, ratios \
         are medians of the ratios within a round.\n",
        o.capacity,
        o.capacity,
        o.capacity,
        otlp_queue::pooled::chunk_len::<u64>(),
        o.items,
        o.reps
    );
    let mut results = Vec::new();
    for mode in [Mode::Lossless, Mode::Shedding] {
        for &t in &o.threads {
            eprintln!("  {} with {t} producers", mode.name());
            results.push((mode, t, measure(t, mode, o)));
        }
    }
    let cell = |mode: Mode, t: usize| {
        results
            .iter()
            .find(|r| r.0 == mode && r.1 == t)
            .map(|r| &r.2)
            .expect("measured above")
    };

    let _ = writeln!(
        md,
        "## Lossless: delivered items/s (producers retry when full)\n"
    );
    let _ = writeln!(
        md,
        "| producers | otlp-queue | otlp-queue pooled | crossbeam ArrayQueue | std Mutex<VecDeque> | otlp-queue / ArrayQueue (median of per-round ratios) | pooled / ArrayQueue | otlp-queue per producer (items pushed and delivered/s) | vs its 1-producer rate |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let [ours, pooled, aq, mx] = Candidate::ALL.map(Candidate::index);
    let lossless_base = o
        .threads
        .first()
        .map(|&t| cell(Mode::Lossless, t).median[ours].per_producer_per_s);
    for &t in &o.threads {
        let c = cell(Mode::Lossless, t);
        let scale = lossless_base.map_or(f64::NAN, |b| c.median[ours].per_producer_per_s / b);
        let _ = writeln!(
            md,
            "| {t} | {} | {} | {} | {} | {:.1}x | {:.1}x | {} | {:.0} % |",
            m(c.median[ours].delivered_per_s),
            m(c.median[pooled].delivered_per_s),
            m(c.median[aq].delivered_per_s),
            m(c.median[mx].delivered_per_s),
            c.ratio_to_array_queue,
            c.pooled_ratio_to_array_queue,
            m(c.median[ours].per_producer_per_s),
            scale * 100.0,
        );
    }
    let _ = writeln!(
        md,
        "\nPer producer, lossless: each producer's items divided by its own time, every item \
         pushed once and delivered (a push that finds the queue full is retried, not counted).\n"
    );

    let _ = writeln!(
        md,
        "\n## Shedding: push attempts/s per producer, and drop fraction (producers drop when full)\n"
    );
    let _ = writeln!(
        md,
        "Attempts include the pushes that found the queue full, which return at once: a fast \
         failed push is not throughput, so these rates are not compared across producer counts \
         (the lossless table's per-producer column is).\n"
    );
    let _ = writeln!(
        md,
        "| producers | otlp-queue attempts/s per producer | dropped | otlp-queue pooled attempts/s per producer | dropped | ArrayQueue attempts/s per producer | dropped | Mutex<VecDeque> attempts/s per producer | dropped |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &t in &o.threads {
        let [ours, pooled, aq, mx] =
            Candidate::ALL.map(|c| cell(Mode::Shedding, t).median[c.index()]);
        let _ = writeln!(
            md,
            "| {t} | {} | {:.1} % | {} | {:.1} % | {} | {:.1} % | {} | {:.1} % |",
            m(ours.per_producer_per_s),
            ours.drop_fraction() * 100.0,
            m(pooled.per_producer_per_s),
            pooled.drop_fraction() * 100.0,
            m(aq.per_producer_per_s),
            aq.drop_fraction() * 100.0,
            m(mx.per_producer_per_s),
            mx.drop_fraction() * 100.0,
        );
    }
    if o.threads.iter().any(|&t| t + 1 > cores()) {
        let _ = writeln!(
            md,
            "\nThis machine has {} cores: runs with more than {} producers share cores with \
             each other and the consumer, so per-producer rates there measure time-slicing \
             as much as the queue.",
            cores(),
            cores().saturating_sub(1)
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_counts_are_sorted_without_repeats_and_checked() {
        assert_eq!(super::parse_threads("8, 1,4,1"), Ok(vec![1, 4, 8]));
        assert!(super::parse_threads("2,0").is_err());
        assert!(super::parse_threads("two").is_err());
    }
}
