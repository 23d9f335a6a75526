//! Memory of cancelled tasks that needed their cleanup grace period: a
//! task that finished within it is freed when it finishes, not when its
//! grace timer would have fired (found by review: the timer's weak
//! reference kept each finished task's whole cell, its future's state
//! included, for the rest of the grace period: 63 MiB for 2 000 tasks of
//! 16 KiB with an hour's grace). Measured with a counting global
//! allocator, on its own in this test binary.

use std::task::Poll;

use runtime_core::caps::ambient_authority;
use runtime_core::time::Duration;
use runtime_core::{CancelReason, CleanupBudget, RegionOptions, Runtime};
use test_watchdog::alloc::Counting;

#[global_allocator]
static ALLOC: Counting = Counting::new();

const MIB: isize = 1 << 20;

/// Bytes still held after `n` tasks (16 KiB of state each) were
/// cancelled one by one in a region with cleanup grace `grace`, each
/// taking one more poll after its cancellation (so that its grace timer is
/// armed), awaited, and the region closed.
fn held_after_cancelled_tasks(n: usize, grace: Option<Duration>) -> isize {
    let rt = Runtime::builder()
        .current_thread()
        .build(ambient_authority())
        .unwrap();
    // Warm-up (the clock's calibration, the timer wheel).
    let _ = rt.block_on(|cx| async move { cx.sleep(Duration::from_millis(1)).await });
    let before = ALLOC.live();
    let out = rt.block_on(move |cx| async move {
        let opts = RegionOptions::fail_fast().cleanup(CleanupBudget { polls: None, grace });
        cx.region_with(opts, move |cx| async move {
            for _ in 0..n {
                let h = cx.spawn(move |cx| async move {
                    let state = [7u8; 16 * 1024];
                    let slept = cx.sleep(Duration::from_secs(3600)).await;
                    // One more poll after the request: the grace timer is
                    // armed.
                    let mut polled = false;
                    std::future::poll_fn(|t| {
                        if polled {
                            Poll::Ready(())
                        } else {
                            polled = true;
                            t.waker().wake_by_ref();
                            Poll::Pending
                        }
                    })
                    .await;
                    std::hint::black_box(&state);
                    slept
                });
                cx.yield_now().await.map_err(|_| ())?;
                h.cancel(CancelReason::user("stop this one"));
                let _ = h.await;
            }
            Ok::<_, ()>(())
        })
        .await
        .ok()
        .ok_or(())
    });
    assert!(out.is_ok(), "{out:?}");
    let held = ALLOC.live() - before;
    drop(rt);
    held
}

#[test]
fn finished_tasks_are_not_kept_by_their_grace_timers() {
    let no_grace = held_after_cancelled_tasks(2_000, None);
    let hour = held_after_cancelled_tasks(2_000, Some(Duration::from_secs(3600)));
    assert!(
        no_grace < 4 * MIB,
        "{no_grace} bytes held without a grace period"
    );
    assert!(
        hour < 4 * MIB,
        "{} MiB held by 2 000 finished tasks with an hour's grace ({} KiB without)",
        hour / MIB,
        no_grace / 1024
    );
}
