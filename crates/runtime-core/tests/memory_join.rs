//! Memory of tasks whose join handles were polled and then dropped, with
//! a counting global allocator (its own test binary: the live count is the
//! process's). A handle's poll leaves the awaiting task's waker (a count
//! of that task) in the awaited task's join slot; two tasks that awaited
//! each other's handle, gave up and dropped it held each other for ever,
//! with their regions and their runtime (found by review: 1-4 KiB a pair).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use runtime_core::caps::ambient_authority;
use runtime_core::time::Duration;
use runtime_core::{JoinHandle, Runtime};
use test_watchdog::alloc::Counting;

#[global_allocator]
static ALLOC: Counting = Counting::new();

/// Polls a handle once, then hands it back.
struct PollOnce(Option<JoinHandle<()>>);

impl Future for PollOnce {
    type Output = JoinHandle<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<JoinHandle<()>> {
        let mut h = self.0.take().expect("polled once");
        // Pending while the peer waits (the case that made the cycle); a
        // peer already done (a slow machine) makes none, harmlessly.
        let _ = Pin::new(&mut h).poll(cx);
        Poll::Ready(h)
    }
}

type Slot = Arc<Mutex<Option<JoinHandle<()>>>>;

/// `pairs` pairs of tasks, each awaiting the other's handle (once, or
/// under a 1 ms timeout), dropping it, then finishing.
fn pairs(rt: &Runtime, pairs: usize, timeout: bool) {
    let out = rt.block_on(move |cx| async move {
        for _ in 0..pairs {
            cx.region(move |cx| async move {
                let (to_a, to_b): (Slot, Slot) = Default::default();
                let peer = |mine: Slot| {
                    move |cx: runtime_core::Cx<runtime_core::caps::All>| async move {
                        let h = loop {
                            if let Some(h) = mine.lock().unwrap().take() {
                                break h;
                            }
                            let _ = cx.yield_now().await;
                        };
                        if timeout {
                            let _ = cx.scope_timeout(Duration::from_millis(1), move |_| h).await;
                        } else {
                            drop(PollOnce(Some(h)).await);
                        }
                        // Long enough for the peer to have polled too.
                        let _ = cx.sleep(Duration::from_millis(3)).await;
                    }
                };
                let a = cx.spawn(peer(to_a.clone()));
                let b = cx.spawn(peer(to_b.clone()));
                *to_a.lock().unwrap() = Some(b);
                *to_b.lock().unwrap() = Some(a);
                Ok::<_, ()>(())
            })
            .await
            .ok()
            .expect("the region closed");
        }
        Ok::<_, ()>(())
    });
    assert!(out.is_ok());
}

#[test]
fn tasks_that_awaited_each_others_handles_and_dropped_them_are_freed() {
    for timeout in [false, true] {
        // Each round on a fresh runtime, on a thread of its own (its
        // thread-local caches go with it); the first warms up what is made
        // once per process.
        let round = |n: usize| {
            std::thread::spawn(move || {
                let rt = Runtime::builder()
                    .worker_threads(2)
                    .build(ambient_authority())
                    .unwrap();
                pairs(&rt, n, timeout);
                drop(rt);
            })
            .join()
            .unwrap();
        };
        round(10);
        let base = ALLOC.live();
        round(500);
        let grew = ALLOC.live() - base;
        // Leaked, each pair kept 1-4 KiB (0.5-2 MiB here); what is left
        // after the runtime and its threads are gone does not grow with
        // the pairs (crossbeam's epoch garbage, freed later: see
        // tests/memory.rs).
        assert!(
            grew < 256 << 10,
            "timeout {timeout}: {grew} bytes left after 500 pairs"
        );
    }
}
