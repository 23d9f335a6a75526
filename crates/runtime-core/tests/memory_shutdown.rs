//! Memory of runtimes stopped through a [`ShutdownHandle`] while a
//! `block_on` runs, with a counting global allocator (its own test binary:
//! the live count is the process's). The handle's sweep moved the root
//! task to the root region's list of swept tasks, which only a region's
//! close lets go of; the root never closes, and the task held the root,
//! the scheduler and the timer wheel through its region: 16 KiB a runtime,
//! never freed (found by review).
//!
//! [`ShutdownHandle`]: runtime_core::ShutdownHandle

use runtime_core::Runtime;
use runtime_core::caps::ambient_authority;
use runtime_core::time::Duration;
use test_watchdog::alloc::Counting;

#[global_allocator]
static ALLOC: Counting = Counting::new();

/// A runtime on a thread of its own, stopped by a handle from another
/// thread while its `block_on` sleeps, then shut down and dropped.
fn stopped_by_a_handle() {
    std::thread::spawn(|| {
        let rt = Runtime::builder()
            .worker_threads(2)
            .build(ambient_authority())
            .unwrap();
        let handle = rt.shutdown_handle();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            handle.shutdown(Duration::from_millis(50))
        });
        let out = rt.block_on(|cx| async move {
            let _ = cx.sleep(Duration::from_secs(3600)).await;
            Ok::<_, ()>(())
        });
        assert!(out.is_ok());
        assert_eq!(stopper.join().unwrap(), 0);
        assert!(rt.shutdown(Duration::from_millis(50)).completed);
    })
    .join()
    .unwrap();
}

#[test]
fn a_runtime_stopped_by_a_shutdown_handle_leaves_nothing_behind() {
    // Warm-up: what is made once per process.
    stopped_by_a_handle();
    let base = ALLOC.live();
    for _ in 0..20 {
        stopped_by_a_handle();
    }
    let grew = ALLOC.live() - base;
    // Leaked, each runtime kept 16 KiB (320 KiB here); what is left does
    // not grow with the runtimes (crossbeam's epoch garbage, freed later:
    // see tests/memory.rs).
    assert!(grew < 128 << 10, "{grew} bytes left after 20 runtimes");
}
