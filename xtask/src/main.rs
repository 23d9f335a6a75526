//! `cargo xtask <command>`: the project's automation, in Rust so that it
//! runs wherever `cargo` does.
//!
//! | command | what it does |
//! |---|---|
//! | `demo`  | the main job: a realistic workload through the pipeline, and where every span went |
//! | `sweep` | the queue and the span pipeline against their baselines over a thread sweep |
//! | `audit` | contention audits with verdicts, thresholds and reports (see docs/audits.md) |
//! | `test`  | every test: the workspace's tests and doctests, the exporter's without its `http` feature, the API docs with warnings as errors, the long ones the normal suite ignores (the full-size outage scenario, the rotel end-to-end tests), the loom models |
//! | `rotel-agent` | the path of the rotel collector's binary, installed as `test` does if missing |
//! | `loom`  | only the loom models (`--cfg loom`, `LOOM_MAX_PREEMPTIONS=2`) |
//! | `asan`  | runtime-core's, otlp-queue's, otlp-exporter's and otlp-tracing's tests under AddressSanitizer (nightly) |
//! | `lab`   | runtime-core's lab scenarios across many seeds (`--seeds N`) |
//! | `deny`  | `cargo deny check licenses bans sources` (installs cargo-deny if missing) |

mod asan;
mod audit;
mod demo;
mod lab;
mod sweep;

/// Counts allocations per thread, for the lock-free audit.
#[global_allocator]
static ALLOCATOR: audit::alloc::Counting = audit::alloc::Counting;

use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  demo    the main job: threads serving simulated requests, each a tree of
          spans, through the pipeline; a summary of where every span went.
          Sends to OTEL_EXPORTER_OTLP_ENDPOINT if set, else writes a file.
            --threads N         default 4
            --seconds S         default 3
            --rate R            requests/s per thread, default 1000 (0: flat out)
            --file PATH         default target/demo/otlp-traces.jsonl
  sweep   otlp-queue against Mutex<VecDeque> and crossbeam's ArrayQueue
          (1 consumer, N producers, lossless and shedding modes), and
          otlp-exporter against the OpenTelemetry SDK's BatchSpanProcessor
          (N threads making spans, end to end), and tracing spans through
          otlp-tracing's layer against tracing-opentelemetry + the SDK's
          BatchSpanProcessor (same registry, fields and total queue)
            --threads 1,2,4,8   producer counts (default: 1,2,4,8, and 15
                                where the machine has 16 cores or more)
            --items N           items per producer per run (default 4000000)
            --reps N            rounds (each runs every queue once); medians shown
                                (default 3)
            --capacity N        total queue capacity (default 4096)
            --spans N           spans per thread per pipeline run (default 400000;
                                the anchor bench's method)
            --for MS            instead: every thread makes spans for MS ms per
                                pipeline run (a sustained load: the delivered rate
                                of a queue that overflows in less than a scheduler
                                slice is noise)
            --only queue|pipeline|layer   one of the three comparisons
            --quick             --items 1000000 --spans 100000 --reps 1
            --out DIR           where to write sweep.md (default target/sweep)
  audit   contention audits that fail when a hot path regresses:
          queue-scaling, exporter-throughput, layer-throughput, record-latency, lock-free,
          accounting, task-wake, memory, cancel-drain, scaling; writes report.md, report.json,
          queue-scaling.svg
            --quick             sized for a 2-core CI machine
            --threads 1,2,4,8   thread counts (default as for sweep)
            --only NAME         one audit
            --out DIR           default target/audit
  test    cargo test --workspace, the full-size outage scenario (ignored
          there for its length), the end-to-end tests against the rotel
          collector (the pipeline's and the tracing layer's; ROTEL_AGENT
          names a rotel-agent binary, else python3's rotel package is used,
          else rotel is installed with pip into target/rotel-venv), then
          the loom models; other arguments go to the first cargo test
  rotel-agent
          prints the path of the rotel collector's rotel-agent binary,
          installing rotel as `test` does if it is missing
  loom    the loom models only; other arguments go to cargo test
  asan    the tests of runtime-core, otlp-queue, otlp-exporter and
          otlp-tracing (doctests included) under AddressSanitizer, with the
          nightly toolchain, built in target/asan; other arguments go to
          cargo test
            --if-available      without a nightly toolchain, say so and
                                succeed (default: fail)
            --leaks             LeakSanitizer too (off by default: the tests
                                that cut off tasks at shutdown leak today)
  lab     runtime-core's lab scenarios (regions, cancellation, channels,
          shutdown, the planted close race) across many seeds, uniform
          random and PCT, in release; a failing seed prints its schedule
            --seeds N           seeds per scenario and strategy (default 100000)
            --only NAME         one scenario (a test-name filter)
            --debug             a debug build
  deny    cargo deny check licenses bans sources
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let result = match cmd.as_str() {
        "demo" => demo::Options::parse(rest).and_then(|o| demo::main(&o)),
        "sweep" => sweep::Options::parse(rest).and_then(|o| sweep::main(&o)),
        "audit" => audit::Options::parse(rest).and_then(|o| audit::main(&o)),
        "test" => run_tests(rest),
        "rotel-agent" if rest.is_empty() => rotel_agent().map(|agent| println!("{agent}")),
        "rotel-agent" => Err(format!(
            "rotel-agent: takes no arguments (got `{}`)",
            rest.join(" ")
        )),
        "loom" => run_loom(rest),
        "asan" => asan::Options::parse(rest).and_then(|o| asan::main(&o)),
        "lab" => lab::Options::parse(rest).and_then(|o| lab::main(&o)),
        "deny" if rest.is_empty() => run_deny(),
        "deny" => Err(format!(
            "deny: takes no arguments (got `{}`; see `cargo xtask help`)",
            rest.join(" ")
        )),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `flag` on the command line.
fn flag_value(args: &mut std::slice::Iter<'_, String>, flag: &str) -> Result<String, String> {
    args.next()
        .cloned()
        .ok_or_else(|| format!("`{flag}` needs a value"))
}

/// Runs a command from the workspace root, echoing it first.
fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!(
        "{}{} {}",
        cmd.get_envs()
            .filter_map(|(k, v)| Some(format!("{}={} ", k.to_str()?, v?.to_str()?)))
            .collect::<String>(),
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("xtask: running `{shown}`");
    let status = cmd
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn run_tests(extra: &[String]) -> Result<(), String> {
    run(cargo().args(["test", "--workspace"]).args(extra))?;
    // The exporter without its `http` feature (what runtime-facade's users
    // get with `default-features = false`): its unit tests, the builder's
    // refusal of a collector it cannot reach among them.
    run(cargo().args([
        "test",
        "-p",
        "otlp-exporter",
        "--no-default-features",
        "--lib",
    ]))?;
    // Its examples too: the docs of items that reach for HTTP say what a
    // build without it does.
    run(cargo().args([
        "test",
        "-p",
        "otlp-exporter",
        "--no-default-features",
        "--doc",
    ]))?;
    // The API docs, with and without `http`: a broken intra-doc link is a
    // dead link a user clicks.
    run(cargo()
        .env("RUSTDOCFLAGS", "-D warnings")
        .args(["doc", "--workspace", "--no-deps"]))?;
    run(cargo().env("RUSTDOCFLAGS", "-D warnings").args([
        "doc",
        "-p",
        "otlp-exporter",
        "-p",
        "runtime-facade",
        "--no-default-features",
        "--no-deps",
    ]))?;
    // The tests ignored in the normal suite for their length: the issue's
    // outage scenario at full size (a 10 s outage at 20 k spans/s, about
    // 15 s and a 128 MiB queue).
    run(cargo().args([
        "test",
        "-p",
        "otlp-exporter",
        "--test",
        "outage",
        "--",
        "--ignored",
    ]))?;
    // The end-to-end test against a real collector, rotel (installed from
    // PyPI if it is not there yet).
    let agent = rotel_agent()?;
    run(cargo().env("ROTEL_AGENT", &agent).args([
        "test",
        "-p",
        "otlp-exporter",
        "--test",
        "rotel",
        "--",
        "--ignored",
    ]))?;
    // The same collector fed through the tracing layer (otlp-tracing's own
    // test: otlp-exporter cannot depend on the crate that depends on it).
    run(cargo().env("ROTEL_AGENT", &agent).args([
        "test",
        "-p",
        "otlp-tracing",
        "--test",
        "rotel",
        "--",
        "--ignored",
    ]))?;
    run_loom(&[])
}

/// The rotel release the end-to-end tests run against.
const ROTEL: &str = "rotel==0.0.1a15";

/// The rotel collector's `rotel-agent` binary: `ROTEL_AGENT` if set; else
/// the one in the `rotel` Python package of `python3`, if installed; else
/// the one in a virtual environment of its own, `target/rotel-venv`,
/// installed there with pip if missing (a system Python such as Debian
/// 12's refuses `pip install` outside a venv: "externally managed"). Where
/// no venv can be made (no `venv` module), `python3 -m pip install` as
/// before.
fn rotel_agent() -> Result<String, String> {
    if let Ok(agent) = std::env::var("ROTEL_AGENT")
        && !agent.trim().is_empty()
    {
        return Ok(agent);
    }
    let find = |python: &std::path::Path| {
        Command::new(python)
            .args([
                "-c",
                "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let python3 = std::path::Path::new("python3");
    if let Some(agent) = find(python3) {
        return Ok(agent);
    }
    let venv = workspace_root().join("target/rotel-venv");
    let venv_python = venv.join("bin/python");
    if let Some(agent) = find(&venv_python) {
        return Ok(agent);
    }
    eprintln!(
        "xtask: installing the rotel collector from PyPI ({ROTEL}) into {}",
        venv.display()
    );
    let quietly = |cmd: &mut Command| {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // A venv with pip; else one without (no `ensurepip`), filled by the
    // system's pip through `--python` (pip 22.3 and later).
    let in_venv = (quietly(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        && run(Command::new(&venv_python).args(["-m", "pip", "install", "--quiet", ROTEL]))
            .is_ok())
        || (quietly(
            Command::new("python3")
                .args(["-m", "venv", "--clear", "--without-pip"])
                .arg(&venv),
        ) && run(Command::new("python3")
            .args(["-m", "pip", "--python"])
            .arg(&venv_python)
            .args(["install", "--quiet", ROTEL]))
        .is_ok());
    if in_venv && let Some(agent) = find(&venv_python) {
        return Ok(agent);
    }
    eprintln!("xtask: no virtual environment for rotel; trying `python3 -m pip install {ROTEL}`");
    run(Command::new("python3").args(["-m", "pip", "install", "--quiet", ROTEL])).map_err(|e| {
        format!(
            "{e}\nxtask: could not install rotel: install Python's venv module \
             (Debian: apt install python3-venv) or rotel itself ({ROTEL}), \
             or set ROTEL_AGENT to a rotel-agent binary"
        )
    })?;
    find(python3)
        .ok_or_else(|| "rotel was installed but its rotel-agent binary was not found".to_string())
}

fn run_loom(extra: &[String]) -> Result<(), String> {
    // A target directory of its own: `--cfg loom` changes every crate's
    // build, and sharing `target/` would rebuild everything twice per run.
    let preemptions = std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "2".into());
    let loom = |args: &[&str]| {
        run(cargo()
            .env("RUSTFLAGS", "--cfg loom")
            .env("LOOM_MAX_PREEMPTIONS", &preemptions)
            .env("CARGO_TARGET_DIR", workspace_root().join("target/loom"))
            .args(["test", "--release"])
            .args(args)
            .args(extra))
    };
    // The queue's models; the runtime's task state machine, waker slot and
    // worker parking (unit models inside the crate); its channels; the
    // exporter's span count.
    loom(&["-p", "otlp-queue", "--test", "loom"])?;
    loom(&["-p", "runtime-core", "--lib", "--", "loom_tests"])?;
    loom(&["-p", "runtime-core", "--test", "loom_channel"])?;
    // The exporter's count of spans per tracer handle (`outstanding.rs`).
    loom(&["-p", "otlp-exporter", "--lib", "--", "loom_tests"])
}

fn run_deny() -> Result<(), String> {
    let installed = Command::new("cargo-deny")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("xtask: cargo-deny not found; installing it (a few minutes, once)");
        run(cargo().args(["install", "cargo-deny", "--locked"]))?;
    }
    // `advisories` is left out: its database is fetched from the network at
    // check time, which CI machines here cannot reach.
    run(cargo().args(["deny", "check", "licenses", "bans", "sources"]))
}
