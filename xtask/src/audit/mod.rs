//! `cargo xtask audit`: contention audits that measure, compare against
//! baselines in the same run, and fail when a hot path regresses.
//!
//! Each audit returns a verdict, its figures and the threshold it was held
//! to. `report.md`, `report.json` and `queue-scaling.svg` are written to
//! the output folder; the exit status is non-zero if any audit failed.

mod accounting;
pub(crate) mod alloc;
mod cancel;
mod chart;
mod exporter;
mod latency;
mod layer;
mod lockfree;
mod memory;
mod queue;
mod scaling;
mod wake;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{Value, json};

pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) threads: Vec<usize>,
    pub(crate) only: Option<String>,
    pub(crate) out: PathBuf,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options {
            quick: false,
            threads: default_threads(),
            only: None,
            out: PathBuf::from("target/audit"),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || crate::flag_value(&mut it, flag);
            match flag.as_str() {
                "--quick" => o.quick = true,
                "--threads" => o.threads = crate::sweep::parse_threads(&value()?)?,
                "--only" => {
                    let name = value()?;
                    if !AUDITS.contains(&name.as_str()) {
                        return Err(format!(
                            "--only: no audit `{name}` (audits: {})",
                            AUDITS.join(", ")
                        ));
                    }
                    o.only = Some(name);
                }
                "--out" => o.out = PathBuf::from(value()?),
                other => {
                    return Err(format!(
                        "audit: unknown option `{other}` (see `cargo xtask help`)"
                    ));
                }
            }
        }
        Ok(o)
    }

    /// The highest thread count of the sweep: where contention is worst.
    pub(crate) fn top(&self) -> usize {
        self.threads.iter().copied().max().unwrap_or(1)
    }
}

fn default_threads() -> Vec<usize> {
    let mut t = vec![1, 2, 4, 8];
    if cores() >= 16 {
        t.push(15);
    }
    t
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The audits, in the order they run.
pub(crate) const AUDITS: [&str; 10] = [
    "queue-scaling",
    "exporter-throughput",
    "layer-throughput",
    "record-latency",
    "lock-free",
    "accounting",
    "task-wake",
    "memory",
    "cancel-drain",
    "scaling",
];

/// What one audit found.
pub(crate) struct Audit {
    pub(crate) name: &'static str,
    pub(crate) passed: bool,
    /// One line: the measured figure against its threshold.
    pub(crate) verdict: String,
    /// Markdown: tables a person reads.
    pub(crate) details: String,
    /// The same figures for machines.
    pub(crate) json: Value,
}

pub(crate) fn main(o: &Options) -> Result<(), String> {
    let machine = crate::sweep::machine();
    eprintln!(
        "audit: {machine}; threads {:?}{}",
        o.threads,
        if o.quick { ", quick" } else { "" }
    );
    let mut audits = Vec::new();
    let run = |name: &str| o.only.as_deref().is_none_or(|only| only == name);
    let mut chart = None;
    if run("queue-scaling") {
        let (audit, series) = queue::audit(o);
        chart = Some(series);
        audits.push(audit);
    }
    if run("exporter-throughput") {
        audits.push(exporter::audit(o));
    }
    if run("layer-throughput") {
        audits.push(layer::audit(o));
    }
    if run("record-latency") {
        audits.push(latency::audit(o));
    }
    if run("lock-free") {
        audits.push(lockfree::audit(o));
    }
    if run("accounting") {
        audits.push(accounting::audit(o));
    }
    if run("task-wake") {
        audits.push(wake::audit(o));
    }
    if run("memory") {
        audits.push(memory::audit(o));
    }
    if run("cancel-drain") {
        audits.push(cancel::audit(o));
    }
    if run("scaling") {
        audits.push(scaling::audit(o));
    }

    let mut md = String::new();
    let _ = writeln!(md, "# cargo xtask audit\n");
    let _ = writeln!(
        md,
        "Machine: {machine}. Threads {:?}{}. Thresholds are ratios against baselines measured in \
         this same run; absolute figures are for this machine only. See docs/audits.md.\n",
        o.threads,
        if o.quick {
            " (quick: sized for a 2-core CI machine)"
        } else {
            ""
        }
    );
    let _ = writeln!(md, "| audit | verdict | figures against threshold |");
    let _ = writeln!(md, "|---|---|---|");
    for a in &audits {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            a.name,
            if a.passed { "pass" } else { "FAIL" },
            a.verdict
        );
    }
    for a in &audits {
        let _ = writeln!(md, "\n## {}\n\n{}", a.name, a.details);
    }
    std::fs::create_dir_all(&o.out).map_err(|e| format!("creating {}: {e}", o.out.display()))?;
    let write = |file: &str, text: &str| {
        let path = o.out.join(file);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    if let Some(series) = chart {
        write("queue-scaling.svg", &chart::svg(&series, &machine))?;
        let _ = writeln!(
            md,
            "\nChart: `queue-scaling.svg` (delivered items/s against producers, log scale)."
        );
    }
    write("report.md", &md)?;
    let report = json!({
        "machine": machine,
        "cores": cores(),
        "threads": o.threads,
        "quick": o.quick,
        "audits": audits.iter().map(|a| json!({
            "name": a.name,
            "passed": a.passed,
            "verdict": a.verdict,
            "figures": a.json,
        })).collect::<Vec<_>>(),
    });
    write(
        "report.json",
        &serde_json::to_string_pretty(&report).unwrap_or_default(),
    )?;

    println!();
    for a in &audits {
        println!(
            "{:<20} {}  {}",
            a.name,
            if a.passed { "pass" } else { "FAIL" },
            a.verdict
        );
    }
    println!("audit: wrote {}", o.out.join("report.md").display());
    let failed: Vec<_> = audits
        .iter()
        .filter(|a| !a.passed)
        .map(|a| a.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} audit(s) failed: {}",
            failed.len(),
            failed.join(", ")
        ))
    }
}

/// `1.5 M` style figures for tables.
pub(crate) fn m(x: f64) -> String {
    format!("{:.2} M", x / 1e6)
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}
