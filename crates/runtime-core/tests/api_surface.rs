//! Walks the crate's public API (its source) and fails if a public function
//! reaches an effect without the capability for it or the explicit
//! ambient-authority token, or if a public function appears that nobody
//! has classified yet.
//!
//! Rules:
//! - a `Cx` method that performs an effect must sit in an `impl` block
//!   bounded by that effect's capability trait (`spawn` under
//!   `impl<C: HasSpawn> Cx<C>`, ...);
//! - a function that creates authority from nothing (building a runtime,
//!   making a system clock) must take `AmbientAuthority`;
//! - every other public function must be in `PURE`, the reviewed list of
//!   functions that reach no effect (a new one fails this test until it is
//!   classified here).

use std::collections::BTreeSet;
use std::path::Path;

/// Effects and the capability bound each needs.
const EFFECTS: &[(&str, &str)] = &[
    ("spawn", "HasSpawn"),
    ("spawn_with", "HasSpawn"),
    ("try_spawn", "HasSpawn"),
    ("try_spawn_with", "HasSpawn"),
    ("__join_scope", "HasSpawn"),
    ("race", "HasSpawn"),
    ("join_all", "HasSpawn"),
    ("now", "HasTime"),
    ("sleep", "HasTime"),
    ("sleep_until", "HasTime"),
    ("interval", "HasTime"),
    ("timeout", "HasTime"),
    ("scope_timeout", "HasTime"),
    ("spawn_blocking", "HasBlocking"),
    ("random_u64", "HasRandom"),
    ("random_below", "HasRandom"),
    ("net", "HasNet"),
    ("fs", "HasFs"),
    ("telemetry", "HasTelemetry"),
];

/// Functions that create authority: they must take the ambient token.
const AMBIENT: &[&str] = &["Builder::build", "Runtime::new", "SystemClock::new"];

/// Reviewed: public functions that reach no effect (pure values, queries
/// of the caller's own state, cancellation and structure, channels, which
/// are in-memory and checkpoint through the caller's `Cx`).
const PURE: &[&str] = &[
    // Values.
    "Budget::with_deadline",
    "Budget::with_poll_quota",
    "Budget::with_cost_quota",
    "Budget::meet",
    "Budget::is_unlimited",
    "CancelKind::rank",
    "CancelReason::new",
    "CancelReason::user",
    "CancelReason::with_message",
    "CancelReason::with_origin",
    "CancelReason::for_child",
    "CancelReason::kind",
    "CancelReason::message",
    "CancelReason::origin",
    "CancelReason::cause",
    "CancelReason::root_cause",
    "CancelReason::strength",
    "CancelReason::strengthen",
    "Cancelled::reason",
    // Boxing a racer for `race!` (spawns nothing: `race` does).
    "boxed_racer",
    // `join!`/`race!` branches: typing a closure, and turning its output
    // into a `Result` (spawn nothing: `try_spawn` and `race` do).
    "__branch",
    "into_result",
    "Outcome::severity",
    "Outcome::join",
    "Outcome::is_ok",
    "Outcome::is_cancelled",
    "Outcome::cancel_reason",
    "Outcome::ok",
    "Outcome::map",
    "Outcome::map_err",
    "Outcome::unwrap",
    "PanicPayload::new",
    "PanicPayload::message",
    "Instant::from_nanos",
    "Instant::as_nanos",
    "Instant::saturating_add",
    "Instant::saturating_duration_since",
    "RegionOptions::fail_fast",
    "RegionOptions::collect_all",
    "RegionOptions::budget",
    "RegionOptions::cleanup",
    "RegionOptions::policy",
    "RuntimeStats::tasks_alive",
    // Configuration (no effect until `build`, which takes the token).
    "Builder::worker_threads",
    "Builder::current_thread",
    "Builder::thread_name",
    "Builder::thread_stack_size",
    "Builder::max_blocking_threads",
    "Builder::blocking_keep_alive",
    "Builder::shutdown_timeout",
    "Builder::cleanup_budget",
    "Builder::clock",
    "Builder::seed",
    "Runtime::builder",
    // A runtime's owner acting on the runtime it built.
    "Runtime::worker_threads",
    "Runtime::stats",
    "Runtime::block_on",
    "Runtime::shutdown",
    "Runtime::shutdown_handle",
    "ShutdownHandle::shutdown",
    // The context: narrowing, queries, cancellation, structure.
    "Cx::narrow",
    "Cx::restrict",
    "Cx::caps",
    "Cx::can",
    "Cx::task_id",
    "Cx::region_id",
    "Cx::checkpoint",
    "Cx::is_cancel_requested",
    "Cx::cancel_reason",
    "Cx::cancel",
    "Cx::yield_now",
    "Cx::masked",
    "Cx::budget",
    "Cx::charge",
    "Cx::region",
    "Cx::region_with",
    "Cx::scope",
    "Cx::scope_with",
    "Cx::defer",
    "Cx::finalizer",
    "Cx::detached_for_tests",
    "JoinHandle::id",
    "JoinHandle::cancel",
    "JoinHandle::is_finished",
    "Sleep::deadline",
    "Interval::period",
    "Interval::tick",
    // Channels: in-memory; waits are checkpoints of the caller's `Cx`.
    "channel",
    "Sender::reserve",
    "Sender::try_reserve",
    "Sender::send",
    "Sender::try_send",
    "Sender::is_closed",
    "Sender::capacity",
    "Sender::undelivered",
    "Permit::send",
    "Receiver::recv",
    "Receiver::try_recv",
    "Receiver::close",
    "Receiver::len",
    "Receiver::is_empty",
    "Receiver::is_closed",
    "SendError::into_inner",
    "SendError::cancel_reason",
    "TrySendError::into_inner",
    "Closed::into_inner",
    // The lab runtime: a virtual clock and seeded choices, no ambient
    // authority (its `Cx<LabCaps>` has no net, fs or telemetry).
    "LabBuilder::seed",
    "LabBuilder::strategy",
    "LabBuilder::max_steps",
    "LabBuilder::cleanup",
    "LabBuilder::plant",
    "LabBuilder::build",
    "LabBuilder::explore",
    "LabRuntime::new",
    "LabRuntime::builder",
    "LabRuntime::seed",
    "LabRuntime::block_on",
    "LabReport::failure",
    "LabReport::is_clean",
    "Trace::events",
    "Trace::tail",
    "Exploration::assert_clean",
    "explore",
];

struct PubFn {
    file: String,
    owner: String,
    name: String,
    impl_header: String,
    signature: String,
}

fn scan(dir: &Path, out: &mut Vec<PubFn>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("loom_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut impl_header = String::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            // Unit tests at the bottom of a file are not API.
            if line.starts_with("#[cfg(test)]") || line.starts_with("#[cfg(all(test") {
                break;
            }
            if line.starts_with("impl") {
                impl_header = line.to_string();
            } else if line.starts_with('}') {
                impl_header.clear();
            }
            let t = line.trim_start();
            let Some(rest) = t
                .strip_prefix("pub fn ")
                .or_else(|| t.strip_prefix("pub async fn "))
            else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let mut signature = String::new();
            for l in &lines[i..] {
                signature.push_str(l.trim());
                signature.push(' ');
                if l.contains('{') || l.trim_end().ends_with(';') {
                    break;
                }
            }
            let owner = impl_owner(&impl_header);
            let owner = if impl_header.contains(" for ") {
                String::from("<trait impl>")
            } else {
                owner
            };
            out.push(PubFn {
                file: path.display().to_string(),
                owner,
                name,
                impl_header: impl_header.clone(),
                signature,
            });
        }
    }
}

/// The type an `impl` header is for: `impl<C: HasSpawn> Cx<C> {` -> `Cx`.
fn impl_owner(header: &str) -> String {
    let Some(rest) = header.strip_prefix("impl") else {
        return String::new();
    };
    let mut rest = rest.trim_start();
    if rest.starts_with('<') {
        let mut depth = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                rest = rest[i + 1..].trim_start();
                break;
            }
        }
    }
    rest.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn qualified(f: &PubFn) -> String {
    if f.owner.is_empty() {
        f.name.clone()
    } else {
        format!("{}::{}", f.owner, f.name)
    }
}

#[test]
fn every_public_function_reaches_effects_only_through_a_capability() {
    let mut fns = Vec::new();
    scan(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut fns);
    assert!(
        fns.len() > 100,
        "the scan found only {} public functions",
        fns.len()
    );
    let pure: BTreeSet<&str> = PURE.iter().copied().collect();
    let mut problems = Vec::new();
    let mut effects_seen = BTreeSet::new();
    for f in &fns {
        let q = qualified(f);
        if f.owner == "<trait impl>" {
            continue;
        }
        if let Some((_, cap)) = EFFECTS
            .iter()
            .find(|(n, _)| f.owner == "Cx" && *n == f.name)
        {
            effects_seen.insert(f.name.clone());
            if !f.impl_header.contains(cap) {
                problems.push(format!(
                    "{q} ({}) performs an effect but its impl is not bounded by {cap}",
                    f.file
                ));
            }
        } else if AMBIENT.contains(&q.as_str()) {
            if !f.signature.contains("AmbientAuthority") {
                problems.push(format!(
                    "{q} ({}) creates authority but does not take AmbientAuthority",
                    f.file
                ));
            }
        } else if f.owner == "CxCore" {
            // The untyped core is crate-private: its methods are reached
            // only through `Cx`, checked above.
        } else if !pure.contains(q.as_str()) {
            problems.push(format!(
                "{q} ({}) is public and unclassified: add it to EFFECTS (with its capability), AMBIENT or PURE in tests/api_surface.rs",
                f.file
            ));
        }
    }
    for (name, _) in EFFECTS {
        assert!(
            effects_seen.contains(*name),
            "effect `{name}` not found on Cx: did the scanner break?"
        );
    }
    if std::env::var_os("API_SURFACE_LIST").is_some() {
        for f in &fns {
            eprintln!("{:<40} {}", qualified(f), f.impl_header);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The scanner itself: an effect put in an unbounded impl is caught.
#[test]
fn the_walker_catches_an_unbounded_effect() {
    let dir = std::env::temp_dir().join(format!("api-surface-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad.rs"),
        "impl<C: CapSet> Cx<C> {\n    pub fn spawn(&self) {\n    }\n}\npub fn ambient_spawn() {\n}\n",
    )
    .unwrap();
    let mut fns = Vec::new();
    scan(&dir, &mut fns);
    std::fs::remove_dir_all(&dir).unwrap();
    let spawn = fns.iter().find(|f| f.name == "spawn").unwrap();
    assert_eq!(spawn.owner, "Cx");
    assert!(!spawn.impl_header.contains("HasSpawn"));
    let free = fns.iter().find(|f| f.name == "ambient_spawn").unwrap();
    assert!(!PURE.contains(&qualified(free).as_str()));
}
