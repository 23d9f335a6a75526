//! `cargo xtask lab --seeds N`: longer explorations under the lab runtime.
//!
//! Runs runtime-core's lab scenarios (`tests/lab_explore.rs`: regions,
//! cancellation, channels, shutdown, each under uniform random choice and
//! under PCT, and the planted close race) across `N` seeds each, in a
//! release build, and prints how many distinct schedules each covered.
//! `cargo xtask test` runs the same scenarios with 1 000 seeds (the
//! default of `LAB_SEEDS`), in the debug build of the workspace's tests.
//!
//! A failing seed is printed with the tail of its schedule and the line
//! that replays it (`LabRuntime::builder().seed(S)`, same strategy).

use crate::{cargo, flag_value, run};

/// What `cargo xtask lab` was asked for.
#[derive(Debug)]
pub(crate) struct Options {
    /// Seeds per scenario and strategy.
    seeds: u64,
    /// Build in debug instead of release.
    debug: bool,
    /// A test-name filter (one scenario), if any.
    filter: Option<String>,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            seeds: 100_000,
            debug: false,
            filter: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--seeds" => {
                    let v = flag_value(&mut it, a)?;
                    o.seeds = v
                        .replace('_', "")
                        .parse()
                        .map_err(|e| format!("--seeds {v}: {e}"))?;
                }
                "--debug" => o.debug = true,
                "--only" => o.filter = Some(flag_value(&mut it, a)?),
                other => return Err(format!("lab: unknown option `{other}`")),
            }
        }
        Ok(o)
    }
}

pub(crate) fn main(o: &Options) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.env("LAB_SEEDS", o.seeds.to_string())
        .env("LAB_VERBOSE", "1")
        .args(["test", "-p", "runtime-core", "--test", "lab_explore"]);
    if !o.debug {
        cmd.arg("--release");
    }
    cmd.arg("--");
    if let Some(f) = &o.filter {
        cmd.arg(f);
    }
    cmd.arg("--nocapture");
    run(&mut cmd)
}
