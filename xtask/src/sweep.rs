//! `cargo xtask sweep`: otlp-queue against its baselines, same run, same
//! method, and the ratios that matter.

use std::fmt::Write as _;
use std::path::PathBuf;

use benches::queue::{Candidate, Mode, RunResult, run};

pub(crate) struct Options {
    threads: Vec<usize>,
    items: u64,
    reps: usize,
    capacity: usize,
    out: PathBuf,
}

impl Options {
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
            out: PathBuf::from("target/sweep"),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .ok_or_else(|| format!("`{flag}` needs a value"))
                    .cloned()
            };
            match flag.as_str() {
                "--quick" => {
                    o.items = 1_000_000;
                    o.reps = 1;
                }
                "--threads" => {
                    let v = value()?;
                    o.threads = v
                        .split(',')
                        .map(|t| match t.trim().parse::<usize>() {
                            Ok(n) if n >= 1 => Ok(n),
                            _ => Err(format!("--threads: `{t}` is not a producer count >= 1")),
                        })
                        .collect::<Result<_, _>>()?;
                }
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
fn machine() -> String {
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

/// Median of `reps` runs, by the figure that matters for the mode.
fn measure(c: Candidate, threads: usize, mode: Mode, o: &Options) -> RunResult {
    let mut runs: Vec<RunResult> = (0..o.reps)
        .map(|_| run(c, threads, o.items, mode, o.capacity))
        .collect();
    let key = |r: &RunResult| match mode {
        Mode::Lossless => r.delivered_per_s,
        Mode::Shedding => r.per_producer_per_s,
    };
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs[runs.len() / 2]
}

fn m(x: f64) -> String {
    format!("{:.1} M", x / 1e6)
}

pub(crate) fn main(o: &Options) -> Result<(), String> {
    let machine = machine();
    eprintln!(
        "sweep: {machine}; producers {:?}, {} items per producer, median of {}, total capacity {}",
        o.threads, o.items, o.reps, o.capacity
    );
    let mut md = String::new();
    let _ = writeln!(md, "# otlp-queue against its baselines\n");
    let _ = writeln!(
        md,
        "Machine: {machine}. One consumer, N producers, `u64` items, total capacity {} \
         (otlp-queue: {} / N per lane), {} items per producer, median of {} runs.\n",
        o.capacity, o.capacity, o.items, o.reps
    );
    let mut results = Vec::new();
    for mode in [Mode::Lossless, Mode::Shedding] {
        for &t in &o.threads {
            for c in Candidate::ALL {
                eprint!(
                    "  {:<9} {:>2} producers  {:<22}\r",
                    mode.name(),
                    t,
                    c.name()
                );
                results.push((mode, t, c, measure(c, t, mode, o)));
            }
        }
    }
    eprintln!("{:60}", "");
    let get = |mode: Mode, t: usize, c: Candidate| {
        results
            .iter()
            .find(|r| r.0 == mode && r.1 == t && r.2 == c)
            .map(|r| r.3)
            .expect("measured above")
    };

    let _ = writeln!(
        md,
        "## Lossless: delivered items/s (producers retry when full)\n"
    );
    let _ = writeln!(
        md,
        "| producers | otlp-queue | crossbeam ArrayQueue | std Mutex<VecDeque> | otlp-queue / ArrayQueue |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
    for &t in &o.threads {
        let [ours, aq, mx] = Candidate::ALL.map(|c| get(Mode::Lossless, t, c).delivered_per_s);
        let _ = writeln!(
            md,
            "| {t} | {} | {} | {} | {:.1}x |",
            m(ours),
            m(aq),
            m(mx),
            ours / aq
        );
    }

    let _ = writeln!(
        md,
        "\n## Shedding: push attempts/s per producer, and drop fraction (producers drop when full)\n"
    );
    let _ = writeln!(
        md,
        "| producers | otlp-queue per producer | vs its 1-producer rate | dropped | ArrayQueue per producer | dropped | Mutex<VecDeque> per producer | dropped |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = o
        .threads
        .first()
        .map(|&t| get(Mode::Shedding, t, Candidate::OtlpQueue));
    for &t in &o.threads {
        let [ours, aq, mx] = Candidate::ALL.map(|c| get(Mode::Shedding, t, c));
        let scale = base.map_or(f64::NAN, |b| ours.per_producer_per_s / b.per_producer_per_s);
        let _ = writeln!(
            md,
            "| {t} | {} | {:.0} % | {:.1} % | {} | {:.1} % | {} | {:.1} % |",
            m(ours.per_producer_per_s),
            scale * 100.0,
            ours.drop_fraction() * 100.0,
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
    print!("{md}");
    std::fs::create_dir_all(&o.out).map_err(|e| format!("creating {}: {e}", o.out.display()))?;
    let path = o.out.join("sweep.md");
    std::fs::write(&path, &md).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("sweep: wrote {}", path.display());
    Ok(())
}
