//! The lab runtime's speed: whole lab runs (build, schedule, virtual time,
//! oracles, tear-down) of one scenario, one seed after another.
//!
//! The scenario: a root body that spawns [`TASKS`] tasks, each passing
//! [`AWAITS`] await points (yields, each one scheduling choice), then
//! joins them all, so one run is `TASKS * AWAITS` await points and about
//! as many scheduling steps. Measured by `benches/benches/lab.rs`
//! (criterion) and recorded in `docs/runtime-performance.md`, "Lab runtime".
//!
//! ```
//! let fp = benches::lab::run_one(7, benches::lab::AWAITS);
//! assert_eq!(fp, benches::lab::run_one(7, benches::lab::AWAITS)); // same seed, same schedule
//! ```

use runtime_core::Cx;
use runtime_core::lab::{LabCaps, LabRuntime};

/// Tasks per run.
pub const TASKS: u64 = 10;
/// Await points per task (100 per task: 1 000 per run).
pub const AWAITS: u64 = 100;

/// The scenario: `TASKS` tasks, `awaits` yields each, all joined.
pub async fn scenario(cx: Cx<LabCaps>, awaits: u64) -> Result<u64, ()> {
    let hs: Vec<_> = (0..TASKS)
        .map(|i| {
            cx.spawn(move |cx| async move {
                for _ in 0..awaits {
                    cx.yield_now().await.map_err(|_| ())?;
                }
                Ok::<_, ()>(i)
            })
        })
        .collect();
    let mut sum = 0;
    for h in hs {
        match h.await.ok() {
            Some(Ok(v)) => sum += v,
            _ => return Err(()),
        }
    }
    Ok(sum)
}

/// One lab run with `seed`; returns its schedule's fingerprint. Panics if
/// the run is not clean.
pub fn run_one(seed: u64, awaits: u64) -> u64 {
    let report = LabRuntime::new(seed).block_on(move |cx| scenario(cx, awaits));
    assert!(report.is_clean(), "{:?}", report.failure());
    report.fingerprint
}
