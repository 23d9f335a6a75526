//! Capabilities at run time: narrowed contexts reach their children, the
//! run-time mask backs the type up, randomness is seeded and per task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use runtime_core::caps::{All, CapSet, Capability, Compute, TimeOnly, ambient_authority};
use runtime_core::time::Duration;
use runtime_core::{Cx, Outcome, Runtime};

fn rt(seed: u64) -> Runtime {
    Runtime::builder()
        .worker_threads(2)
        .seed(seed)
        .build(ambient_authority())
        .unwrap()
}

/// Three tasks, each drawing `n` numbers, yielding between draws so their
/// draws interleave differently from run to run.
fn draws(rt: &Runtime, n: usize, quiet_second: bool) -> Vec<Vec<u64>> {
    rt.block_on(move |cx| async move {
        let hs: Vec<_> = (0..3)
            .map(|i| {
                cx.try_spawn(move |cx| async move {
                    let mut v = Vec::new();
                    for _ in 0..n {
                        if !(quiet_second && i == 1) {
                            v.push(cx.random_u64());
                        }
                        cx.yield_now().await.map_err(|_| ())?;
                    }
                    Ok::<_, ()>(v)
                })
            })
            .collect();
        let mut out = Vec::new();
        for h in hs {
            out.push(h.await.unwrap());
        }
        Ok::<_, ()>(out)
    })
    .ok()
    .unwrap()
}

#[test]
fn same_seed_same_numbers_different_seed_different_numbers() {
    let a = draws(&rt(42), 50, false);
    let b = draws(&rt(42), 50, false);
    let c = draws(&rt(43), 50, false);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Tasks get different sequences.
    assert_ne!(a[0], a[1]);
    assert_ne!(a[1], a[2]);
}

#[test]
fn one_tasks_draws_do_not_disturb_anothers() {
    let all = draws(&rt(7), 100, false);
    let without_second = draws(&rt(7), 100, true);
    assert!(without_second[1].is_empty());
    assert_eq!(all[0], without_second[0]);
    assert_eq!(all[2], without_second[2]);
}

#[test]
fn random_below_stays_in_range() {
    let out = rt(1).block_on(|cx| async move {
        let v: Vec<u64> = (0..1000).map(|_| cx.random_below(7)).collect();
        Ok::<_, ()>(v)
    });
    let v = out.ok().unwrap();
    assert!(v.iter().all(|x| *x < 7));
    for k in 0..7 {
        assert!(v.contains(&k), "{k} never drawn in 1000");
    }
}

/// A library function handed a narrowed context: its children are no
/// broader.
async fn library(cx: &Cx<Compute>) -> u8 {
    let child = cx.spawn(|cx: Cx<Compute>| async move { cx.caps() });
    let caps = child.await.unwrap();
    assert_eq!(caps, Compute::MASK);
    assert!(!caps.contains(Capability::Net));
    cx.sleep(Duration::from_millis(1))
        .await
        .map(|()| 1)
        .unwrap_or(0)
}

#[test]
fn narrowed_contexts_reach_children_no_broader() {
    let out = rt(0).block_on(|cx| async move {
        assert_eq!(cx.caps(), All::MASK);
        let r = library(&cx.narrow::<Compute>()).await;
        let t: Cx<TimeOnly> = cx.narrow::<Compute>().narrow::<TimeOnly>();
        assert_eq!(t.caps(), TimeOnly::MASK);
        Ok::<_, ()>(r)
    });
    assert_eq!(out.ok(), Some(1));
}

#[test]
fn the_run_time_mask_backs_the_type_up() {
    let spawned = Arc::new(AtomicBool::new(false));
    let s = spawned.clone();
    let out = rt(0).block_on(move |cx| async move {
        let no_spawn = cx.restrict(Capability::Spawn);
        assert!(!no_spawn.can(Capability::Spawn));
        assert!(no_spawn.can(Capability::Time));
        // An effect the mask lacks panics inside the task that tried it:
        // its outcome says so, nothing ran, the runtime is fine.
        let attempt = cx.try_spawn(move |_cx| async move {
            no_spawn.try_spawn(move |_| async move {
                s.store(true, Ordering::SeqCst);
                Ok::<_, ()>(())
            });
            Ok::<_, ()>(())
        });
        Ok::<_, ()>(attempt.await)
    });
    match out {
        // The panicking child failed the fail-fast root region.
        Outcome::Panicked(p) => assert!(p.message().contains("spawn"), "{p}"),
        other => panic!(
            "expected the missing capability to panic, got {:?}",
            other.map(|_| ())
        ),
    }
    assert!(!spawned.load(Ordering::SeqCst));
}
