//! Regions own their tasks: close to quiescence, outcomes join under the
//! policy, panics are caught per task, finalizers run in reverse.

use runtime_core::caps::ambient_authority;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use runtime_core::time::Duration;
use runtime_core::{
    CancelKind, Outcome, RegionError, RegionOptions, Runtime, Severity, join, race,
};

mod common;
use common::both_runtimes as runtimes;

#[test]
fn block_on_returns_the_body_value() {
    for rt in runtimes() {
        let out = rt.block_on(|_cx| async { Ok::<_, ()>(7) });
        assert_eq!(out.ok(), Some(7));
    }
}

#[test]
fn spawn_and_join() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            let mut sum = 0;
            for i in 0..100u64 {
                sum += cx.spawn(move |_| async move { i }).await.unwrap();
            }
            Ok::<_, ()>(sum)
        });
        assert_eq!(out.ok(), Some(4950));
    }
}

#[test]
fn region_waits_for_unjoined_tasks() {
    for rt in runtimes() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let seen = done.clone();
        let out = rt.block_on(move |cx| async move {
            cx.region(move |cx| async move {
                for _ in 0..50 {
                    let d = d.clone();
                    // Handles dropped at once: the region still owns them.
                    drop(cx.try_spawn(move |cx| async move {
                        cx.sleep(Duration::from_millis(2)).await.map_err(|_| ())?;
                        d.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ()>(())
                    }));
                }
                Ok::<_, ()>(())
            })
            .await;
            // The region has closed: every task has finished.
            Ok::<_, ()>(seen.load(Ordering::SeqCst))
        });
        assert_eq!(out.ok(), Some(50));
        assert_eq!(done.load(Ordering::SeqCst), 50);
        assert_eq!(rt.stats().tasks_alive(), 0);
    }
}

#[test]
fn fail_fast_cancels_siblings_and_reports_the_error() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            let r = cx
                .region(|cx| async move {
                    let sleeper = cx.try_spawn(|cx| async move {
                        cx.sleep(Duration::from_secs(3600)).await?;
                        Ok::<_, runtime_core::Cancelled>(())
                    });
                    cx.try_spawn(|_| async { Err::<(), _>("boom") });
                    let s = sleeper.await;
                    assert_eq!(
                        s.cancel_reason().map(|r| r.kind()),
                        Some(CancelKind::SiblingFailed)
                    );
                    Ok::<_, ()>(())
                })
                .await;
            Ok::<_, ()>(r)
        });
        match out.ok().unwrap() {
            Outcome::Err(RegionError::Child(f)) => assert!(f.message.contains("boom")),
            other => panic!("expected the child's error, got {other:?}"),
        }
    }
}

#[test]
fn collect_all_lets_siblings_finish() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            let r = cx
                .region_with(RegionOptions::collect_all(), |cx| async move {
                    let slow = cx.try_spawn(|cx| async move {
                        cx.sleep(Duration::from_millis(5))
                            .await
                            .map_err(|_| "cancelled")?;
                        Ok::<_, &str>(1)
                    });
                    cx.try_spawn(|_| async { Err::<u32, _>("boom") });
                    Ok::<_, ()>(slow.await.ok())
                })
                .await;
            Ok::<_, ()>(r)
        });
        match out.ok().unwrap() {
            Outcome::Err(RegionError::Child(f)) => assert!(f.message.contains("boom")),
            other => panic!("expected the child's error, got {other:?}"),
        }
    }
}

#[test]
fn panicking_task_beside_healthy_ones() {
    for rt in runtimes() {
        for spec in [RegionOptions::fail_fast(), RegionOptions::collect_all()] {
            let healthy = Arc::new(AtomicUsize::new(0));
            let h = healthy.clone();
            let out = rt.block_on(move |cx| async move {
                let r = cx
                    .region_with(spec, move |cx| async move {
                        for _ in 0..10 {
                            let h = h.clone();
                            cx.spawn(move |_| async move {
                                h.fetch_add(1, Ordering::SeqCst);
                            });
                        }
                        let p = cx.try_spawn(|_| async {
                            if true {
                                panic!("task exploded")
                            }
                            Ok::<(), ()>(())
                        });
                        match p.await {
                            Outcome::Panicked(p) => assert_eq!(p.message(), "task exploded"),
                            other => panic!("expected Panicked, got {other:?}"),
                        }
                        Ok::<_, ()>(())
                    })
                    .await;
                Ok::<_, ()>(r.severity())
            });
            assert_eq!(out.ok(), Some(Severity::Panicked));
            // The runtime is fine, and the healthy ones ran (fail-fast may
            // have cancelled some before they started; they still ended).
            assert_eq!(rt.stats().tasks_alive(), 0);
            assert_eq!(rt.block_on(|_| async { Ok::<_, ()>(1) }).ok(), Some(1));
        }
    }
}

#[test]
fn finalizers_run_in_reverse_after_children() {
    for rt in runtimes() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        rt.block_on(move |cx| async move {
            cx.region(move |cx| async move {
                for i in 0..3 {
                    let l = l.clone();
                    cx.defer(move || l.lock().unwrap().push(format!("fin{i}")));
                }
                let l2 = l.clone();
                cx.try_spawn(move |cx| async move {
                    cx.sleep(Duration::from_millis(3)).await.map_err(|_| ())?;
                    l2.lock().unwrap().push("task".to_string());
                    Ok::<_, ()>(())
                });
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(*log.lock().unwrap(), vec!["task", "fin2", "fin1", "fin0"]);
    }
}

#[test]
fn race_returns_the_winner_after_draining_losers() {
    for rt in runtimes() {
        let drained = Arc::new(AtomicUsize::new(0));
        let d = drained.clone();
        let out = rt.block_on(move |cx| async move {
            // Racers of two different closure types: no boxing by hand.
            let d1 = d.clone();
            let w = race!(
                cx,
                move |cx| async move {
                    let r = cx.sleep(Duration::from_secs(3600)).await;
                    assert_eq!(r.unwrap_err().reason().kind(), CancelKind::LostRace);
                    d1.fetch_add(1, Ordering::SeqCst);
                    Err(())
                },
                |cx| async move {
                    cx.sleep(Duration::from_millis(1)).await.map_err(|_| ())?;
                    Ok(5)
                },
            )
            .await;
            // The loser finished its cleanup before race returned.
            assert_eq!(d.load(Ordering::SeqCst), 1);
            Ok::<_, ()>(w)
        });
        assert_eq!(out.ok().unwrap().ok(), Some(5));
        assert_eq!(drained.load(Ordering::SeqCst), 1);
    }
}

/// The racer that finished first wins, even when the caller awaits the
/// race late and a racer earlier in the list has finished since: the
/// winner is who finished first, not the first handle found ready.
#[test]
fn race_winner_is_the_first_to_finish_not_the_first_in_the_list() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            let log = Arc::new(Mutex::new(Vec::new()));
            let (la, lb) = (log.clone(), log.clone());
            let race = race!(
                cx,
                move |cx| async move {
                    // A finishes well after B (a margin that a slow
                    // machine, or AddressSanitizer, does not close: with a
                    // few yields it did not).
                    cx.sleep(Duration::from_millis(100))
                        .await
                        .map_err(|_| "cancelled")?;
                    la.lock().unwrap().push("A");
                    Ok::<_, &str>("A")
                },
                move |_| async move {
                    lb.lock().unwrap().push("B");
                    Ok::<_, &str>("B")
                },
            );
            // Both finish before the race is first polled.
            cx.sleep(Duration::from_millis(400)).await.ok();
            let order = log.lock().unwrap().clone();
            Ok::<_, ()>((race.await.ok(), order))
        });
        let (winner, order) = out.ok().unwrap();
        assert_eq!(order, ["B", "A"], "both racers finished, B first");
        assert_eq!(winner, Some("B"));
    }
}

/// A racer that fails late does not beat one that succeeded at once.
#[test]
fn race_late_failure_does_not_beat_an_early_success() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            let race = race!(
                cx,
                |cx| async move {
                    cx.sleep(Duration::from_millis(100))
                        .await
                        .map_err(|_| "cancelled")?;
                    Err::<&str, &str>("A failed, late")
                },
                |_| async { Ok::<&str, &str>("B, at once") },
            );
            // Both finish before the race is first polled.
            cx.sleep(Duration::from_millis(400)).await.ok();
            Ok::<_, ()>(race.await)
        });
        match out.ok().unwrap() {
            Outcome::Ok(w) => assert_eq!(w, "B, at once"),
            other => panic!("the early success should win: {other:?}"),
        }
    }
}

#[test]
fn timeout_cancels_with_timeout_reason() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            let t = cx
                .timeout(Duration::from_millis(5), |cx| async move {
                    cx.sleep(Duration::from_secs(3600)).await?;
                    Ok::<_, runtime_core::Cancelled>(())
                })
                .await;
            let fast = cx
                .timeout(Duration::from_secs(3600), |_| async { Ok::<_, ()>(3) })
                .await;
            Ok::<_, ()>((t, fast))
        });
        let (t, fast) = out.ok().unwrap();
        assert_eq!(
            t.cancel_reason().map(|r| r.kind()),
            Some(CancelKind::Timeout)
        );
        assert_eq!(fast.ok(), Some(3));
    }
}

#[test]
fn join_all_gathers_outcomes_in_order() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            let bodies: Vec<_> = (0..5u32)
                .map(|i| move |_cx| async move { if i == 3 { Err("three") } else { Ok(i) } })
                .collect();
            Ok::<_, ()>(cx.join_all(bodies).await)
        });
        let v = out.ok().unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v[0].clone().ok(), Some(0));
        assert_eq!(v[3].severity(), Severity::Err);
        assert_eq!(v[4].clone().ok(), Some(4));
    }
}

/// Regression: on the current-thread flavour, `block_on` polls its root
/// handle on the thread that ran the tasks; a last task turn that spent the
/// whole cooperative budget must not make that poll yield forever. (The
/// counts around 2 x 128 make one of the runs end its turn at exactly 0.)
#[test]
fn block_on_returns_after_a_turn_that_spent_the_cooperative_budget() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = Runtime::builder()
            .current_thread()
            .build(ambient_authority())
            .unwrap();
        for n in 250..=260u64 {
            let out = rt.block_on(move |cx| async move {
                let hs: Vec<_> = (0..n)
                    .map(|i| cx.spawn(move |_| async move { i }))
                    .collect();
                while !hs.iter().all(|h| h.is_finished()) {
                    cx.yield_now().await.map_err(|_| ())?;
                }
                let mut sum = 0;
                for h in hs {
                    sum += h.await.unwrap();
                }
                Ok::<_, ()>(sum)
            });
            tx.send((n, out.ok())).unwrap();
        }
    });
    for _ in 250..=260 {
        let (n, got) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("block_on hung");
        assert_eq!(got, Some(n * (n - 1) / 2));
    }
}

#[test]
fn an_infallible_task_has_no_error_arm_and_a_fallible_one_still_fails_its_region() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            // `spawn`: any value; the outcome's error type is uninhabited,
            // so the match needs no `Err` arm.
            let h = cx.spawn(|_| async { String::from("seven") });
            let value = match h.await {
                Outcome::Ok(v) => v,
                Outcome::Cancelled(_) | Outcome::Panicked(_) => String::new(),
            };
            assert_eq!(value, "seven");
            // `try_spawn`: an `Err` is the task's outcome and its region's
            // failure (fail-fast: the sibling is cancelled).
            let region = cx
                .region(|cx| async move {
                    let sibling = cx.spawn(|cx| async move {
                        let _ = cx.sleep(Duration::from_secs(3600)).await;
                        cx.is_cancel_requested()
                    });
                    let failing = cx.try_spawn(|_| async { Err::<u8, _>("boom") });
                    assert!(matches!(failing.await, Outcome::Err("boom")));
                    // The sibling saw the cancellation and returned its
                    // value: it finished, so its outcome is `Ok`.
                    assert_eq!(sibling.await.ok(), Some(true));
                    Ok::<_, ()>(())
                })
                .await;
            assert!(matches!(region, Outcome::Err(RegionError::Child(_))));
            Ok::<_, ()>(())
        });
        assert!(out.is_ok());
    }
}

#[test]
fn join_macro_joins_bodies_of_different_types_and_a_panic_cancels_no_sibling() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            let (n, text, boom) = join!(
                cx,
                |cx| async move {
                    cx.sleep(Duration::from_millis(2)).await.map_err(|_| ())?;
                    Ok::<_, ()>(7u32)
                },
                |_| async { Ok::<_, &str>(String::from("text")) },
                |_| async {
                    if true {
                        panic!("branch exploded");
                    }
                    Ok::<(), ()>(())
                },
            )
            .await;
            Ok::<_, ()>((n.ok(), text.ok(), boom.severity()))
        });
        // Collect-all, as `join_all`: the panic did not cancel the sleeper.
        assert_eq!(
            out.ok(),
            Some((Some(7), Some("text".to_string()), Severity::Panicked))
        );
    }
}

#[test]
fn a_join_cancelled_mid_way_drains_every_branch_before_it_resolves() {
    for rt in runtimes() {
        let drained = Arc::new(AtomicUsize::new(0));
        let d = drained.clone();
        let out = rt.block_on(move |cx| async move {
            let d2 = d.clone();
            let t = cx
                .timeout(Duration::from_millis(5), move |cx| async move {
                    let (a, b) = join!(
                        cx,
                        move |cx| async move {
                            let r = cx.sleep(Duration::from_secs(3600)).await;
                            d.fetch_add(1, Ordering::SeqCst);
                            r.map(|()| 1u8)
                        },
                        move |cx| async move {
                            let r = cx.sleep(Duration::from_secs(3600)).await;
                            d2.fetch_add(1, Ordering::SeqCst);
                            r.map(|()| "never")
                        },
                    )
                    .await;
                    Ok::<_, ()>((a, b))
                })
                .await;
            Ok::<_, ()>(t)
        });
        let (a, b) = out.unwrap().unwrap();
        // Both branches saw the timeout (through their region) and ran
        // their cleanup before the join resolved.
        assert_eq!(drained.load(Ordering::SeqCst), 2);
        for reason in [a.cancel_reason(), b.cancel_reason()] {
            assert_eq!(
                reason.map(|r| r.root_cause().kind()),
                Some(CancelKind::Timeout)
            );
        }
    }
}

#[test]
fn race_macro_and_vec_race_agree_when_a_loser_panics_while_draining() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            let by_macro = race!(cx, |_| async { Ok::<u32, ()>(1) }, |cx| async move {
                let _ = cx.sleep(Duration::from_secs(3600)).await;
                if true {
                    panic!("loser exploded while draining");
                }
                Ok(0)
            },)
            .await;
            // The same race through the `Vec` form, boxed by hand.
            let by_vec = cx.race(vec![quick_racer as Boxed, exploding_racer]).await;
            Ok::<_, ()>((by_macro.severity(), by_vec.severity()))
        });
        assert_eq!(out.ok(), Some((Severity::Panicked, Severity::Panicked)));
    }
}

type Boxed = fn(
    runtime_core::Cx<runtime_core::caps::All>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, ()>> + Send>>;

fn quick_racer(
    _: runtime_core::Cx<runtime_core::caps::All>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, ()>> + Send>> {
    Box::pin(async { Ok(1) })
}

fn exploding_racer(
    cx: runtime_core::Cx<runtime_core::caps::All>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, ()>> + Send>> {
    Box::pin(async move {
        let _ = cx.sleep(Duration::from_secs(3600)).await;
        if true {
            panic!("loser exploded while draining");
        }
        Ok(0)
    })
}

#[test]
fn scope_join_and_race_take_bodies_that_return_any_value() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            // A scope whose body returns a plain value.
            let s = cx
                .scope(|cx| async move { cx.spawn(|_| async { 20 }).await.unwrap() + 1 })
                .await;
            // join!: a value branch beside a `Result` branch, whose `Err`
            // is still its `Err` outcome.
            let (v, r) = join!(cx, |_| async { 2u8 }, |_| async { Err::<u8, _>("no") }).await;
            // race!: racers returning plain values.
            let w = race!(cx, |_| async { "fast" }, |cx| async move {
                let _ = cx.sleep(Duration::from_secs(3600)).await;
                "slow"
            })
            .await;
            Ok::<_, ()>((s.ok(), v.ok(), r.severity(), w.ok()))
        });
        assert_eq!(
            out.ok(),
            Some((Some(21), Some(2), Severity::Err, Some("fast")))
        );
    }
}

#[test]
fn a_scope_still_reports_a_failed_child_and_a_timed_out_one_returns_what_it_has() {
    for rt in runtimes() {
        let out = rt.block_on(|cx| async move {
            // A value body cannot fail, but its children can: fail-fast
            // cancels the sibling and the scope reports the failure.
            let failed = cx
                .scope(|cx| async move {
                    cx.try_spawn(|_| async { Err::<(), _>("disk full") });
                    cx.sleep(Duration::from_secs(3600)).await.is_err()
                })
                .await;
            let failed = matches!(failed, Outcome::Err(RegionError::Child(_)));
            // A body that sees its timeout at a checkpoint and returns a
            // value ends `Ok(value)`, as a `spawn`ed task does.
            let counted = cx
                .scope_timeout(Duration::from_millis(5), |cx| async move {
                    cx.sleep(Duration::from_secs(3600)).await.is_err()
                })
                .await;
            Ok::<_, ()>((failed, counted.ok()))
        });
        assert_eq!(out.ok(), Some((true, Some(true))));
    }
}
