//! Memory of tasks, measured with a counting global allocator (live bytes,
//! not time): every task cell is freed once its task is done and nothing
//! refers to it (its `Cx`s' counts included, however they are dropped),
//! and the per-thread cache of freed cells (`task/cache.rs`) stays within
//! its bound and goes back when its thread exits.

use runtime_core::caps::ambient_authority;
use runtime_core::time::Duration;
use runtime_core::{CancelReason, Cancelled, Runtime};
use test_watchdog::alloc::Counting;

#[global_allocator]
static ALLOC: Counting = Counting::new();

const KIB: isize = 1 << 10;

/// Spawns `tasks` tasks that sleep for an hour (a 1 KiB buffer each, so
/// that a leaked task shows) into a region, then cancels it and waits for
/// it to close: every task drained. `rounds` times.
fn spawn_and_drain(rt: &Runtime, tasks: usize, rounds: usize) {
    let out = rt.block_on(move |cx| async move {
        for _ in 0..rounds {
            cx.region(move |cx| async move {
                for _ in 0..tasks {
                    let buf = vec![1u8; 1024];
                    drop(cx.spawn(move |cx| async move {
                        // Each of a task's `Cx`s holds a count of it: one
                        // dropped in a poll that then ends pending, one
                        // held across the await and dropped by the
                        // cancelled future's end, with the task's own.
                        drop(cx.clone());
                        let keep = cx.clone();
                        let r = cx.sleep(Duration::from_secs(3600)).await;
                        std::hint::black_box(&buf);
                        drop(keep);
                        r
                    }));
                }
                cx.yield_now().await?;
                cx.cancel(CancelReason::user("drain"));
                Ok::<_, Cancelled>(())
            })
            .await
            .ok()
            .expect("the region drained");
        }
        Ok::<_, Cancelled>(())
    });
    assert!(out.is_ok());
}

/// One test, not several: the live count is the process's, and tests run
/// in parallel.
#[test]
fn task_cells_are_freed_and_each_threads_cache_is_bounded_and_given_back() {
    // Warm-up: the clock's calibration, the main thread's lazy state, and
    // (a two-worker runtime) crossbeam's epoch collector, made once per
    // process.
    std::thread::spawn(|| {
        let rt = Runtime::builder()
            .current_thread()
            .build(ambient_authority())
            .unwrap();
        spawn_and_drain(&rt, 10, 2);
        let rt = Runtime::builder()
            .worker_threads(2)
            .build(ambient_authority())
            .unwrap();
        spawn_and_drain(&rt, 10, 2);
    })
    .join()
    .unwrap();
    let base = ALLOC.live();

    // A current-thread runtime on a thread of its own: 20 rounds of 1 000
    // tasks (about 20 MiB of buffers and cells in all).
    let after_drop = std::thread::spawn(move || {
        let rt = Runtime::builder()
            .current_thread()
            .build(ambient_authority())
            .unwrap();
        spawn_and_drain(&rt, 1000, 20);
        drop(rt);
        // The runtime is gone; what this thread still holds is its cache
        // of freed cells (at most 256 KiB) and its thread-local state.
        ALLOC.live()
    })
    .join()
    .unwrap();
    let held = after_drop - base;
    assert!(
        held <= 256 * KIB + 64 * KIB,
        "{held} bytes held by a thread after its runtime dropped: more than its cache's bound"
    );
    let after_exit = ALLOC.live() - base;
    assert!(
        after_exit <= 16 * KIB,
        "{after_exit} bytes left after the thread exited: its cells were not given back"
    );

    // A two-worker runtime, driven from a thread of its own: its workers'
    // caches go back when the runtime's threads exit, and the driving
    // thread's (cells freed there at the runtime's drop) when it exits.
    // (Measured on the driving thread itself, the bound was its cache's
    // whim: 18-65 KiB left there, run to run, against 64 KiB.)
    // Three in a row: what is left must not grow with them.
    for _ in 0..3 {
        std::thread::spawn(|| {
            let rt = Runtime::builder()
                .worker_threads(2)
                .build(ambient_authority())
                .unwrap();
            spawn_and_drain(&rt, 1000, 20);
            drop(rt);
        })
        .join()
        .unwrap();
    }
    // The workers have exited (the runtime's drop joins them), and so has
    // the thread that drove them. What may be left (6-69 KiB measured, run
    // to run) does not grow with the runtimes (eight in a row left 6-23
    // KiB): memory freed later, most likely the work-stealing deques'
    // buffers, which crossbeam's epoch collector frees at a later
    // collection. (The bound was 64 KiB on the driving thread before, a
    // margin the CI run at 55a8f1d missed by 3 KiB.)
    let left = ALLOC.live() - base;
    assert!(
        left <= 128 * KIB,
        "{left} bytes left after a two-worker runtime dropped and its threads exited"
    );
}
