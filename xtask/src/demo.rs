//! `cargo xtask demo`: the main job. Several threads serve simulated
//! requests, each a tree of spans with attributes and events, through an
//! otlp-exporter pipeline; a progress line while it runs, a summary at the
//! end. Spans go to the collector named by `OTEL_EXPORTER_OTLP_ENDPOINT`
//! if it is set, and otherwise to a file of OTLP JSON lines.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use otlp_exporter::{KeyValue, Pipeline, Resource, SpanKind, Status, Tracer};

/// The most recording threads `--threads` takes.
const MAX_THREADS: usize = 4096;
/// The longest run `--seconds` takes (a day).
const MAX_SECONDS: f64 = 86_400.0;

pub(crate) struct Options {
    threads: usize,
    seconds: f64,
    /// Requests per second per thread; 0: as fast as possible.
    rate: u64,
    file: PathBuf,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options {
            threads: 4,
            seconds: 3.0,
            rate: 1000,
            file: PathBuf::from("target/demo/otlp-traces.jsonl"),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || crate::flag_value(&mut it, flag);
            match flag.as_str() {
                "--threads" => {
                    o.threads = value()?
                        .parse()
                        .ok()
                        .filter(|&n: &usize| (1..=MAX_THREADS).contains(&n))
                        .ok_or(format!(
                            "--threads: expected a whole number from 1 to {MAX_THREADS}"
                        ))?;
                }
                "--seconds" => {
                    o.seconds = value()?
                        .parse()
                        .ok()
                        .filter(|s: &f64| *s > 0.0 && *s <= MAX_SECONDS)
                        .ok_or(format!(
                            "--seconds: expected a positive number of seconds, at most {MAX_SECONDS}"
                        ))?;
                }
                "--rate" => {
                    o.rate = value()?.parse().map_err(
                        |_| "--rate: expected requests per second per thread (0: flat out)",
                    )?;
                }
                "--file" => o.file = PathBuf::from(value()?),
                other => {
                    return Err(format!(
                        "demo: unknown option `{other}` (see `cargo xtask help`)"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// One simulated request: a server span with two children, one of which
/// has events; every 50th request fails.
fn request(tracer: &Tracer, worker: usize, n: u64) {
    let mut root = tracer
        .build("GET /checkout")
        .kind(SpanKind::Server)
        .attribute("http.request.method", "GET")
        .attribute("http.route", "/checkout")
        .attribute("worker", worker as i64)
        .start();
    let cart = root.context().clone();
    {
        let mut q = tracer
            .build("SELECT cart")
            .kind(SpanKind::Client)
            .parent(&cart)
            .start();
        q.set_attribute("db.system", "postgresql")
            .set_attribute("db.rows", (n % 7) as i64);
    }
    {
        let mut pay = tracer
            .build("charge card")
            .kind(SpanKind::Client)
            .parent(&cart)
            .start();
        pay.add_event("card tokenised", vec![KeyValue::new("card.brand", "visa")]);
        if n.is_multiple_of(50) {
            pay.add_event("declined", vec![KeyValue::new("retryable", true)]);
            pay.set_status(Status::error("card declined"));
        }
    }
    let failed = n.is_multiple_of(50);
    root.set_attribute("http.response.status_code", if failed { 402 } else { 200 });
    root.set_status(if failed {
        Status::error("payment required")
    } else {
        Status::ok()
    });
}

pub(crate) fn main(o: &Options) -> Result<(), String> {
    let var = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    // As the pipeline reads them: the traces endpoint, as given, before
    // the general one (to which it appends /v1/traces).
    let collector =
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    // A sampler setting the pipeline would only warn about (through
    // `tracing`, which the demo does not print) stops the demo instead.
    otlp_exporter::Sampler::from_vars(
        var("OTEL_TRACES_SAMPLER").as_deref(),
        var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
    )
    .map_err(|e| format!("OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG: {e}"))?;
    // The demo is a `main`: network access comes from ambient authority.
    let mut builder = Pipeline::builder()
        .resource(Resource::from_vars(None, Some("checkout-demo")))
        .network(otlp_exporter::NetAccess::from_ambient(
            otlp_exporter::ambient_authority(),
        ));
    let destination = match &collector {
        Some(endpoint) => format!("the collector at {endpoint} (OTLP/HTTP)"),
        None => {
            if let Some(dir) = o.file.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            // A fresh file each run (the file transport appends): a
            // regular file, or the regular file a symbolic link names, is
            // emptied (found by review: a link was left alone, and each
            // run appended to its target), and nothing else is touched
            // (found by review: run as root with `--file /dev/full`, the
            // demo removed the device node and made a regular file in its
            // place).
            empty_last_run(&o.file)?;
            // A `main` too: file-system access from ambient authority.
            builder = builder
                .filesystem(otlp_exporter::FsAccess::from_ambient(
                    otlp_exporter::ambient_authority(),
                ))
                .file(&o.file);
            format!("{} (OTLP JSON, one request per line)", o.file.display())
        }
    };
    let pipeline = builder
        .build()
        .map_err(|e| format!("cannot start the pipeline: {e}"))?;
    let tracer = pipeline.tracer("checkout-demo", env!("CARGO_PKG_VERSION"));
    let pace = if o.rate == 0 {
        "as fast as they can".to_string()
    } else {
        format!("{} requests/s each", o.rate)
    };
    eprintln!(
        "demo: {} threads serving simulated checkout requests ({pace}, 3 spans each) for {} s; spans go to {destination}",
        o.threads, o.seconds
    );
    let stop = AtomicBool::new(false);
    let tty = std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(o.seconds);
    let spawned = std::thread::scope(|s| {
        let mut spawned = 0;
        for w in 0..o.threads {
            if Instant::now() >= end {
                break;
            }
            let (tracer, stop, rate) = (&tracer, &stop, o.rate);
            let started = std::thread::Builder::new().spawn_scoped(s, move || {
                let mut n = 0u64;
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    request(tracer, w, n);
                    n += 1;
                    if rate > 0 {
                        // Pace to `rate` requests per second, looking at
                        // the stop flag at least every 50 ms.
                        let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                        while !stop.load(Ordering::Relaxed) {
                            let left = due.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            std::thread::sleep(left.min(Duration::from_millis(50)));
                        }
                    }
                }
            });
            match started {
                Ok(_) => spawned += 1,
                Err(e) => {
                    // Out of threads: run with those started, and say so.
                    eprintln!(
                        "demo: could start only {spawned} of {} threads ({e}); running with those",
                        o.threads
                    );
                    break;
                }
            }
        }
        while Instant::now() < end {
            std::thread::sleep(
                Duration::from_millis(200).min(end.saturating_duration_since(Instant::now())),
            );
            if tty {
                let st = pipeline.stats();
                eprint!(
                    "\r  {:>5.1} s  recorded {:>10}  exported {:>10}  dropped {:>8}  ",
                    t0.elapsed().as_secs_f64(),
                    st.accepted,
                    st.exported,
                    st.dropped.total()
                );
                let _ = std::io::stderr().flush();
            }
        }
        stop.store(true, Ordering::Relaxed);
        spawned
    });
    if spawned == 0 {
        return Err("demo: no recording thread could be started".into());
    }
    let recording = t0.elapsed().as_secs_f64();
    if tty {
        eprintln!();
    }
    let pending = pipeline.stats();
    if pending.retrying > 0 {
        // A collector that does not answer: say why the wait.
        eprintln!(
            "demo: the collector is not answering ({}); retrying what is queued for up to 30 s",
            pipeline.last_error().unwrap_or_else(|| "no answer".into())
        );
    }
    let report = pipeline.shutdown(Duration::from_secs(30));
    let s = report.stats;
    let d = s.dropped;
    println!(
        "spans offered    {:>12}  ({:.0} spans/s over {recording:.1} s)",
        s.accepted,
        s.accepted as f64 / recording
    );
    println!("spans delivered  {:>12}  to {destination}", s.exported);
    println!(
        "spans dropped    {:>12}  queue full {}, evicted {}, not sampled {}, low priority {}, too large {}, \
         rejected {}, export failed {}, retry shed {}, timed out at shutdown {}, after shutdown {}, \
         orphaned {}, invalid ids {}",
        d.total(),
        d.queue_full,
        d.evicted,
        d.not_sampled,
        d.low_priority,
        d.too_large,
        d.rejected,
        d.export_failed,
        d.retry_shed,
        d.timed_out_at_shutdown,
        d.after_shutdown,
        d.orphaned,
        d.invalid_ids
    );
    if let Some(why) = pipeline.last_error() {
        // Why exports failed (a collector down, refused, rejecting).
        println!("last export error  {why}");
    }
    println!(
        "accounted for    {:>12}  (offered = delivered + dropped: {})",
        s.exported + d.total(),
        if s.is_balanced() { "yes" } else { "NO" }
    );
    if !s.is_balanced() || !report.completed {
        return Err("the pipeline did not account for every span".into());
    }
    Ok(())
}

/// Empties the last run's file at `path` if it is a regular file, or a
/// symbolic link to one; leaves anything else (a device, a FIFO) alone.
fn empty_last_run(path: &std::path::Path) -> Result<(), String> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| format!("emptying the last run's {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::empty_last_run;

    /// A regular file is emptied, through a symbolic link too (found by
    /// review: a link was left alone, and each run appended to its
    /// target); a directory (like a device or a FIFO, not a regular file)
    /// is left alone.
    #[test]
    fn the_last_runs_file_is_emptied_through_a_link_and_nothing_else_is_touched() {
        let dir = std::env::temp_dir().join(format!("xtask-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("real.jsonl");
        std::fs::write(&real, "{\"old\":1}\n").unwrap();
        empty_last_run(&real).unwrap();
        assert_eq!(std::fs::read(&real).unwrap(), b"");
        std::fs::write(&real, "{\"old\":1}\n").unwrap();
        #[cfg(unix)]
        {
            let link = dir.join("link.jsonl");
            std::os::unix::fs::symlink(&real, &link).unwrap();
            empty_last_run(&link).unwrap();
            assert_eq!(
                std::fs::read(&real).unwrap(),
                b"",
                "the link's target emptied"
            );
            assert!(
                std::fs::symlink_metadata(&link).unwrap().is_symlink(),
                "the link kept"
            );
        }
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        empty_last_run(&sub).unwrap();
        assert!(sub.is_dir());
        empty_last_run(&dir.join("missing")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
