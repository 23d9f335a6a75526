//! `cargo xtask asan`: the tests of runtime-core, otlp-queue,
//! otlp-exporter and otlp-tracing under AddressSanitizer.
//!
//! - **Toolchain.** `-Zsanitizer=address` needs a nightly compiler; the
//!   workspace pins a stable one (rust-toolchain.toml), so this runs
//!   `rustup run nightly cargo test ...`. Without a nightly toolchain it
//!   fails with a message saying how to install one, or, with
//!   `--if-available`, prints the message and succeeds.
//! - **Flags.** `RUSTFLAGS` and `RUSTDOCFLAGS` get `-Zsanitizer=address`
//!   (the doctests run instrumented too), and the build gets an explicit
//!   `--target <host>`: with it, cargo applies `RUSTFLAGS` to the target
//!   only, not to build scripts and proc macros, which need no sanitizer.
//!   The standard library is the prebuilt, uninstrumented one: ASan checks
//!   the accesses made by our crates, their dependencies and the generic std
//!   code compiled into them (`Vec`, `Arc`, ...), and every allocation and
//!   free, but not the accesses inside std's own compiled code.
//! - **No task-cell cache.** `--cfg runtime_core_asan`: runtime-core frees
//!   every task cell to the allocator (not to its per-thread cache of
//!   cells, `task/cache.rs`), where ASan poisons it.
//! - **Target directory.** `target/asan`, so that the instrumented build
//!   never invalidates the normal one in `target/`.
//! - **ASan options.** `detect_leaks=0` unless `--leaks`: LeakSanitizer
//!   finds leaks in the tests that cut off a stubborn task or a stuck
//!   worker at shutdown (the runtime's state, unreachable, in a reference
//!   cycle) and in the runtime's and the exporter's tests of panicking user
//!   code; until runtime-core and otlp-exporter decide which of those are
//!   bugs, a leak check would fail every run. Stack use-after-return
//!   detection is on (a future must be dropped where it was pinned).
//!   `allocator_may_return_null=1`: an allocation too large
//!   for the machine fails as it does without ASan (the fallible paths,
//!   `try_reserve` and `try_bounded`, get their error, and the tests of
//!   those errors run), instead of ASan aborting the process. An
//!   `ASAN_OPTIONS` already in the environment is appended, so its settings
//!   win.
//! - **Not run.** The loom models (they exist only under `--cfg loom`) and
//!   the end-to-end test against the rotel collector (`#[ignore]`d, and not
//!   asked for here with `--ignored`).
//!
//! Other arguments go to `cargo test` as they are (for example
//! `cargo xtask asan -- --test-threads 1`).

use std::process::Command;

use crate::{run, workspace_root};

/// The crates whose tests run under the sanitizer: the ones with `unsafe`
/// code and their own concurrency.
const PACKAGES: [&str; 4] = [
    "runtime-core",
    "otlp-queue",
    "otlp-exporter",
    "otlp-tracing",
];

/// What `cargo xtask asan` was asked for.
#[derive(Debug, Default)]
pub(crate) struct Options {
    /// Succeed with a message, instead of failing, when there is no nightly
    /// toolchain.
    if_available: bool,
    /// Run LeakSanitizer too.
    leaks: bool,
    /// Passed to `cargo test` as they are.
    cargo_args: Vec<String>,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut args = args.iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--if-available" => o.if_available = true,
                "--leaks" => o.leaks = true,
                "--" => {
                    o.cargo_args.push(a.clone());
                    o.cargo_args.extend(args.by_ref().cloned());
                }
                _ => o.cargo_args.push(a.clone()),
            }
        }
        Ok(o)
    }
}

pub(crate) fn main(o: &Options) -> Result<(), String> {
    let host = match nightly_host() {
        Ok(host) => host,
        Err(why) => {
            let msg = format!(
                "the AddressSanitizer tests need a nightly toolchain: {why}. \
                 Install one with `rustup toolchain install nightly --profile minimal`"
            );
            if o.if_available {
                eprintln!("xtask: skipped: {msg}");
                return Ok(());
            }
            return Err(msg);
        }
    };
    let flags = |var: &str| {
        // `runtime_core_asan`: runtime-core frees every task cell to the
        // allocator instead of its per-thread cache (`task/cache.rs`), so
        // that a use after free is seen as one.
        let mut f = "-Zsanitizer=address --cfg runtime_core_asan".to_string();
        if let Ok(more) = std::env::var(var)
            && !more.trim().is_empty()
        {
            f.push(' ');
            f.push_str(&more);
        }
        f
    };
    let mut asan_options = format!(
        "detect_leaks={}:detect_stack_use_after_return=1:allocator_may_return_null=1",
        u8::from(o.leaks)
    );
    if let Ok(more) = std::env::var("ASAN_OPTIONS")
        && !more.trim().is_empty()
    {
        asan_options.push(':');
        asan_options.push_str(&more);
    }
    let mut cmd = Command::new("rustup");
    // Settings that would override ours or pick another compiler: the
    // encoded flag variables take precedence over RUSTFLAGS, and RUSTC or
    // RUSTDOC (set by some callers) would bypass the nightly toolchain.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUSTFLAGS", flags("RUSTFLAGS"))
        .env("RUSTDOCFLAGS", flags("RUSTDOCFLAGS"))
        .env("ASAN_OPTIONS", asan_options)
        .env("CARGO_TARGET_DIR", workspace_root().join("target/asan"))
        .args(["run", "nightly", "cargo", "test", "--no-fail-fast"]);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    cmd.args(["--target", &host]).args(&o.cargo_args);
    run(&mut cmd)
}

/// The nightly toolchain's host triple, or why there is no usable nightly.
fn nightly_host() -> Result<String, String> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "-vV"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .map_err(|e| format!("could not run `rustup` ({e})"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`rustup run nightly rustc -vV` failed: {}",
            err.trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| "`rustc -vV` printed no host triple".to_string())
}
