//! Run a test's body in a child process under a watchdog.
//!
//! Hostile tests (a future cut off mid-borrow, a waker that panics, a
//! transport that never returns) can crash or hang the process that runs
//! them. Wrapped in [`isolate`], such a test re-runs its own test binary
//! with a filter that selects just itself; the body runs in that child, and
//! the parent turns a signal, a non-zero exit or a hang past the deadline
//! into an ordinary test failure with the child's output attached.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! #[test]
//! fn survives_a_hostile_case() {
//!     test_watchdog::isolate(Duration::from_secs(20), || {
//!         // runs only in the child process
//!         assert_eq!(1 + 1, 2);
//!     });
//! }
//! ```
//!
//! The test's name is read from the test thread's name, which libtest sets
//! to the test's full path; the child is started with `--exact <name>`, and
//! the parent checks that the child ran exactly one test and it passed (a
//! filter that matched nothing fails, rather than passing vacuously).
//!
//! [`alloc::Counting`] is a counting global allocator for the tests of
//! memory (live bytes; allocations of one size made to fail).
//!
//! This crate is for tests only (a dev-dependency); it is not published.

pub mod alloc;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that tells a child process which test's body to
/// run.
const CHILD_ENV: &str = "TEST_WATCHDOG_CHILD";

/// Runs `body` in a child process (a re-run of this test binary filtered to
/// the calling test) and fails the calling test if the child crashes, fails
/// or runs longer than `timeout` (it is then killed).
///
/// In the child, `body` runs directly. The calling thread must be a libtest
/// test thread (its name is the test's path).
///
/// # Panics
///
/// In the parent: when the child does not pass within `timeout`, with the
/// child's exit status and the tail of its output. In the child: whatever
/// `body` panics with.
pub fn isolate<F: FnOnce()>(timeout: Duration, body: F) {
    let name = test_name();
    if std::env::var(CHILD_ENV).ok().as_deref() == Some(name.as_str()) {
        body();
        return;
    }
    let outcome = run_child(&name, timeout);
    if let Err(why) = outcome {
        panic!("isolated test `{name}` {why}");
    }
}

/// Like [`isolate`], but returns the child's result instead of panicking:
/// `Ok(output)` when the child passed, `Err(description)` otherwise. In the
/// child it runs `body` and returns `Ok` with an empty string.
///
/// Use it to assert that a case *does* crash or hang (a test of this crate,
/// or of a deliberately broken program).
pub fn try_isolate<F: FnOnce()>(timeout: Duration, body: F) -> Result<String, String> {
    let name = test_name();
    if std::env::var(CHILD_ENV).ok().as_deref() == Some(name.as_str()) {
        body();
        return Ok(String::new());
    }
    run_child(&name, timeout)
}

/// Whether this process is a watchdog child (running one isolated body).
pub fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

fn test_name() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => panic!(
            "test_watchdog::isolate must be called on a libtest test thread (named after the test); \
             this thread is {:?}",
            thread.name()
        ),
    }
}

fn run_child(name: &str, timeout: Duration) -> Result<String, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("could not find the test binary: {e}"))?;
    let mut child = Command::new(exe)
        // `--include-ignored`: the parent got here, so the test is running
        // (an ignored test run with `--ignored` too); the child must run it.
        .args([
            name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(CHILD_ENV, name)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start the child process: {e}"))?;
    // Drain both pipes on their own threads so a chatty child cannot block on
    // a full pipe while we wait for it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("could not wait for the child process: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let output = format!("{stdout}{stderr}");
    let tail = head_and_tail(&output, 3000, 5000);
    match status {
        None => Err(format!(
            "hung: still running after {timeout:?} (killed)\n--- child output ---\n{tail}"
        )),
        Some(status) if !status.success() => Err(format!(
            "failed in its child process ({})\n--- child output ---\n{tail}",
            describe(status)
        )),
        Some(_) if !stdout.contains("1 passed") => Err(format!(
            "did not run in its child process (the filter matched no single test)\n--- child output ---\n{tail}"
        )),
        Some(_) => Ok(output),
    }
}

/// The first `head` and last `tail` bytes of `s` (a sanitizer's report
/// opens with its error line, a panic's message comes last).
fn head_and_tail(s: &str, head: usize, tail: usize) -> String {
    if s.len() <= head + tail {
        return s.to_owned();
    }
    let mut end = head;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut start = s.len() - tail;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "{}\n[... {} bytes ...]\n{}",
        &s[..end],
        start - end,
        &s[start..]
    )
}

#[cfg(unix)]
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => format!("killed by signal {sig}{}", signal_name(sig)),
        (Some(code), None) => format!("exit code {code}"),
        (None, None) => status.to_string(),
    }
}

#[cfg(not(unix))]
fn describe(status: std::process::ExitStatus) -> String {
    status.to_string()
}

#[cfg(unix)]
fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        _ => "",
    }
}
