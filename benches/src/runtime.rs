//! The runtime against tokio: the operations of the tokio anchor
//! (`../shared/anchors/tokio-bench`, README section 5), each driven the same
//! way on both runtimes, in the same process, with the same worker count.
//!
//! Every measurement runs `n` iterations of one operation inside one
//! `block_on` and returns the time they took (criterion's `iter_custom`
//! style); building the runtime, entering `block_on` and any set-up the
//! anchor leaves out of its clock stay out of ours too.
//!
//! | [`Op`] | one iteration, runtime-core | one iteration, tokio (as the anchor) |
//! |---|---|---|
//! | `SpawnJoin` | `cx.spawn(..)` a task returning `i`, await it, from the `block_on` body | `tokio::spawn(async move { i }).await` from `block_on` |
//! | `SpawnThenJoinAll` | one task of a batch (up to [`SPAWN_BATCH`]) all spawned, then all joined | the same with `tokio::spawn` |
//! | `Yield` | `cx.yield_now().await` | `tokio::task::yield_now().await` |
//! | `PingPong` | a round trip over two capacity-1 `runtime_core::channel::mpsc` channels to an echo task | the same over two `tokio::sync::mpsc::channel(1)` |
//! | `Region` | `cx.region(\|_\| async { Ok(()) }).await`: open an empty child region, run its body, close it | no regions in tokio; the nearest scope that waits for its work: an empty `JoinSet` made, `join_next` awaited (it finds nothing), dropped |
//! | `RegionSpawnJoin` | a child region whose body spawns one no-op task and awaits it | a `JoinSet`, one no-op task spawned into it and joined, the set dropped |
//! | `CancelDrain(k)` | a region whose body spawns `k` tasks sleeping 3600 s, yields until every one has started (each counts itself, then sleeps), then cancels the region (`CancelReason::user`); timed from the cancel until the region's await returns (every task drained, the region closed and its node freed) | `k` sleeping tasks in a `JoinSet`, `yield_now` until every one has started, timed across `JoinSet::shutdown()` (abort all, wait until all are gone) and the set's drop |
//! | `TimerInsertCancel` | `cx.sleep(60 s)` made, polled once with the task's own context (it registers with the timer driver), dropped (it deregisters) | `tokio::time::sleep(60 s)` made, polled once (registers), dropped |
//! | `TimerCreateDrop` | `cx.sleep(60 + i % 100 s)` made and dropped without a poll (the anchor's "create / drop" row, both halves timed together): up to [`TIMER_BATCH`] into a `Vec`, then the `Vec` dropped | `tokio::time::sleep(..)` the same way |
//!
//! Where the measuring code runs: ours runs the `block_on` body as a task
//! on a worker, so a task it spawns and awaits runs on the same worker.
//! [`Tokio::run_in_task`] puts tokio's measuring code in a spawned task on
//! a worker too: the code placed the same on both sides, the like-for-like
//! figure and the table's ratio. [`Tokio::run`] measures tokio the
//! anchor's way, from `block_on`, which polls its future on the calling
//! thread (not a worker), so every spawn-and-join or wake-up from there
//! crosses threads through the kernel (unpark a worker, park the caller):
//! its own row in the table, showing what that placement costs.
//!
//! Timer loops poll at most [`TIMER_CHUNK`] sleeps per task turn and yield
//! between chunks outside the clock: both runtimes' sleeps look at a
//! 128-per-turn cooperative budget on each poll (one that stays pending
//! gives its unit back), and a sleep polled with the budget spent returns
//! `Pending` without registering.
//!
//! ```
//! use benches::runtime::{Op, Ours, Tokio};
//! let ours = Ours::new(2);
//! let tokio = Tokio::new(2);
//! assert!(ours.run(Op::SpawnJoin, 100) > std::time::Duration::ZERO);
//! assert!(tokio.run(Op::CancelDrain(10), 3) > std::time::Duration::ZERO);
//! ```

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use runtime_core::{CancelReason, Cancelled, Cx, Runtime};
use tokio::task::JoinSet;

/// The most tasks [`Op::SpawnThenJoinAll`] holds at once: the anchor's
/// batch. Larger iteration counts run as several batches.
pub const SPAWN_BATCH: u64 = 200_000;

/// Sleeps polled per task turn in the timer operations (under the 128-poll
/// cooperative budget both runtimes give a task turn).
pub const TIMER_CHUNK: u64 = 64;

/// The most sleeps [`Op::TimerCreateDrop`] holds at once (the anchor's
/// count); larger iteration counts run as several batches.
pub const TIMER_BATCH: u64 = 100_000;

/// How long the sleeping tasks of [`Op::CancelDrain`] would sleep.
const LONG_SLEEP: Duration = Duration::from_secs(3600);

/// An operation measured on both runtimes (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Spawn one task from the root and await it, one at a time.
    SpawnJoin,
    /// Spawn a batch of tasks, then await them all; one iteration is one
    /// task.
    SpawnThenJoinAll,
    /// Yield to the scheduler once.
    Yield,
    /// One round trip to an echo task over two capacity-1 channels.
    PingPong,
    /// Open and close an empty region (tokio: an empty `JoinSet`, joined).
    Region,
    /// A region that spawns one no-op task and joins it (tokio: a
    /// `JoinSet` that does the same).
    RegionSpawnJoin,
    /// Cancel a group of this many sleeping tasks and wait until all are
    /// gone; one iteration is one group.
    CancelDrain(usize),
    /// Make a 60 s sleep, poll it once (it registers), drop it (it
    /// deregisters).
    TimerInsertCancel,
    /// Make a sleep and drop it without polling it (the anchor's row).
    TimerCreateDrop,
}

impl Op {
    /// Every operation, in table order.
    pub const ALL: [Op; 12] = [
        Op::SpawnJoin,
        Op::SpawnThenJoinAll,
        Op::Yield,
        Op::PingPong,
        Op::Region,
        Op::RegionSpawnJoin,
        Op::CancelDrain(1),
        Op::CancelDrain(10),
        Op::CancelDrain(100),
        Op::CancelDrain(1000),
        Op::TimerInsertCancel,
        Op::TimerCreateDrop,
    ];

    /// A short name for benchmark ids (`cancel_drain_100`).
    pub fn id(self) -> String {
        match self {
            Op::SpawnJoin => "spawn_join".into(),
            Op::SpawnThenJoinAll => "spawn_then_join_all".into(),
            Op::Yield => "yield".into(),
            Op::PingPong => "ping_pong".into(),
            Op::Region => "region".into(),
            Op::RegionSpawnJoin => "region_spawn_join".into(),
            Op::CancelDrain(k) => format!("cancel_drain_{k}"),
            Op::TimerInsertCancel => "timer_insert_cancel".into(),
            Op::TimerCreateDrop => "timer_create_drop".into(),
        }
    }

    /// What the table calls it.
    pub fn label(self) -> String {
        match self {
            Op::SpawnJoin => "spawn then join, one at a time, from the root".into(),
            Op::SpawnThenJoinAll => format!("spawn {SPAWN_BATCH} then join all"),
            Op::Yield => "yield".into(),
            Op::PingPong => "ping-pong over two capacity-1 channels".into(),
            Op::Region => "empty region open/close (tokio: empty JoinSet, joined)".into(),
            Op::RegionSpawnJoin => {
                "region that spawns and joins 1 no-op task (tokio: JoinSet, the same)".into()
            }
            Op::CancelDrain(k) => format!("cancel and drain {k} sleeping tasks"),
            Op::TimerInsertCancel => "sleep: create, poll once (register), drop".into(),
            Op::TimerCreateDrop => "sleep: create and drop, never polled".into(),
        }
    }

    /// What one iteration is, for "per" in the table.
    pub fn unit(self) -> &'static str {
        match self {
            Op::SpawnJoin | Op::SpawnThenJoinAll => "task",
            Op::Yield => "yield",
            Op::PingPong => "round",
            Op::Region | Op::RegionSpawnJoin => "region",
            Op::CancelDrain(_) => "group",
            Op::TimerInsertCancel | Op::TimerCreateDrop => "timer",
        }
    }

    /// Iterations per measurement in [`table`]: the anchor's counts where
    /// one run of them takes well under a second, fewer where they would
    /// not (the per-iteration cost does not depend on the count there).
    pub fn table_iters(self) -> u64 {
        match self {
            Op::SpawnJoin => 20_000,
            Op::SpawnThenJoinAll => SPAWN_BATCH,
            Op::Yield => 1_000_000,
            Op::PingPong => 20_000,
            Op::Region | Op::RegionSpawnJoin => 100_000,
            // The anchor's repetitions.
            Op::CancelDrain(k) => 2000 / k.max(1) as u64 + 20,
            Op::TimerInsertCancel | Op::TimerCreateDrop => 100_000,
        }
    }
}

/// runtime-core's multi-threaded runtime.
#[derive(Debug)]
pub struct Ours {
    rt: Runtime,
}

impl Ours {
    /// A runtime with `workers` worker threads.
    pub fn new(workers: usize) -> Self {
        let rt = Runtime::builder()
            .worker_threads(workers)
            .thread_name("bench-ours")
            .build(runtime_core::caps::ambient_authority())
            .expect("runtime-core runtime");
        Ours { rt }
    }

    /// Runs `n` iterations of `op` inside one `block_on` and returns the
    /// time they took.
    ///
    /// # Panics
    ///
    /// If the runtime reports anything but success.
    pub fn run(&self, op: Op, n: u64) -> Duration {
        self.rt
            .block_on(move |cx| async move {
                // The helpers take a bare `&Cx` (spawn, time, random).
                let cx = cx.narrow();
                Ok::<_, Infallible>(match op {
                    Op::SpawnJoin => ours_spawn_join(&cx, n).await,
                    Op::SpawnThenJoinAll => ours_spawn_then_join_all(&cx, n).await,
                    Op::Yield => ours_yield(&cx, n).await,
                    Op::PingPong => ours_ping_pong(&cx, n).await,
                    Op::Region => ours_region(&cx, n).await,
                    Op::RegionSpawnJoin => ours_region_spawn_join(&cx, n).await,
                    Op::CancelDrain(k) => ours_cancel_drain(&cx, k, n).await,
                    Op::TimerInsertCancel => ours_timer_insert_cancel(&cx, n).await,
                    Op::TimerCreateDrop => ours_timer_create_drop(&cx, n),
                })
            })
            .unwrap()
    }
}

/// tokio's multi-threaded runtime, built as the anchor builds it.
#[derive(Debug)]
pub struct Tokio {
    rt: tokio::runtime::Runtime,
}

impl Tokio {
    /// A runtime with `workers` worker threads and `enable_all()`, as the
    /// anchor builds it (with this crate's tokio features that is the time
    /// driver).
    pub fn new(workers: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("bench-tokio")
            .enable_all()
            .build()
            .expect("tokio runtime");
        Tokio { rt }
    }

    /// Runs `n` iterations of `op` inside one `block_on` and returns the
    /// time they took: the anchor's way, the measuring code running as
    /// `block_on`'s future on the calling thread.
    pub fn run(&self, op: Op, n: u64) -> Duration {
        self.rt.block_on(tokio_op(op, n))
    }

    /// [`run`](Self::run), but with the measuring code in a task spawned
    /// onto a worker (not the anchor's way; runtime-core always runs the
    /// `block_on` body on a worker, so this is the like-for-like placement).
    pub fn run_in_task(&self, op: Op, n: u64) -> Duration {
        self.rt
            .block_on(async move { tokio::spawn(tokio_op(op, n)).await })
            .expect("the measuring task does not panic")
    }
}

async fn tokio_op(op: Op, n: u64) -> Duration {
    match op {
        Op::SpawnJoin => tokio_spawn_join(n).await,
        Op::SpawnThenJoinAll => tokio_spawn_then_join_all(n).await,
        Op::Yield => tokio_yield(n).await,
        Op::PingPong => tokio_ping_pong(n).await,
        Op::Region => tokio_region(n).await,
        Op::RegionSpawnJoin => tokio_region_spawn_join(n).await,
        Op::CancelDrain(k) => tokio_cancel_drain(k, n).await,
        Op::TimerInsertCancel => tokio_timer_insert_cancel(n).await,
        Op::TimerCreateDrop => tokio_timer_create_drop(n),
    }
}

// ---- runtime-core ----------------------------------------------------------

async fn ours_spawn_join(cx: &Cx, n: u64) -> Duration {
    let t = Instant::now();
    for i in 0..n {
        let v = cx
            .try_spawn(move |_| async move { Ok::<_, Infallible>(i) })
            .await
            .unwrap();
        black_box(v);
    }
    t.elapsed()
}

async fn ours_spawn_then_join_all(cx: &Cx, n: u64) -> Duration {
    let t = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(SPAWN_BATCH);
        let hs: Vec<_> = (0..batch)
            .map(|i| cx.try_spawn(move |_| async move { Ok::<_, Infallible>(i) }))
            .collect();
        for h in hs {
            black_box(h.await.unwrap());
        }
        left -= batch;
    }
    t.elapsed()
}

async fn ours_yield(cx: &Cx, n: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        cx.yield_now().await.expect("not cancelled");
    }
    t.elapsed()
}

async fn ours_region(cx: &Cx, n: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let out = cx.region(|_| async { Ok::<_, ()>(()) }).await;
        black_box(out).unwrap();
    }
    t.elapsed()
}

async fn ours_region_spawn_join(cx: &Cx, n: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let out = cx
            .region(|cx| async move {
                let v = cx.try_spawn(|_| async { Ok::<_, Infallible>(1u64) }).await;
                black_box(v.severity());
                Ok::<_, ()>(())
            })
            .await;
        black_box(out).unwrap();
    }
    t.elapsed()
}

/// Callgrind's client requests `START_INSTRUMENTATION` (`on`) and
/// `STOP_INSTRUMENTATION` (`!on`), which bracket the timed window of
/// [`Op::CancelDrain`] on our side: under `valgrind --tool=callgrind
/// --instr-atstart=no`, only the instructions inside it are counted (on
/// every thread: the instrumentation state is global, unlike the collection
/// toggle, which is per thread and goes out of step when a task moves
/// between workers). Outside valgrind the sequence is a no-op (`rdi`
/// rotated by 128 bits in all, `xchg rbx, rbx`).
#[inline(never)]
fn callgrind_instrument(on: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        // 'C' << 24 | 'T' << 16: callgrind's requests; + 4 start, + 5 stop.
        let args: [u64; 6] = [0x4354_0000 + if on { 4 } else { 5 }, 0, 0, 0, 0, 0];
        let mut res: u64 = 0;
        // SAFETY: valgrind's documented client-request sequence for amd64
        // (valgrind.h): reads the six words at `rax`, writes `rdx`; `rdi`
        // ends where it started and is declared clobbered anyway.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3", "rol rdi, 13", "rol rdi, 61", "rol rdi, 51", "xchg rbx, rbx",
                inout("rdx") res, in("rax") args.as_ptr(), out("rdi") _,
                options(nostack),
            );
        }
        black_box(res);
    }
    #[cfg(not(target_arch = "x86_64"))]
    black_box(on);
}

async fn ours_cancel_drain(cx: &Cx, k: usize, reps: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..reps {
        let out = cx
            .region(move |cx| async move {
                let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let handles: Vec<_> = (0..k)
                    .map(|_| {
                        let started = started.clone();
                        cx.try_spawn(|cx| async move {
                            started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            cx.sleep(LONG_SLEEP).await?;
                            Ok::<_, Cancelled>(())
                        })
                    })
                    .collect();
                // Let every one reach its await point (a task cancelled
                // before its first poll is cheaper to drain).
                while started.load(std::sync::atomic::Ordering::Relaxed) < k {
                    cx.yield_now().await?;
                }
                drop(started);
                let t = Instant::now();
                callgrind_instrument(true);
                cx.cancel(CancelReason::user("benchmark: cancel the group"));
                drop(handles);
                // The start goes out as the body's value (an `Ok` body
                // makes an `Ok` region: the cancelled children do not
                // count against it), so the window holds no harness work.
                Ok::<_, Cancelled>(t)
            })
            .await;
        callgrind_instrument(false);
        let end = Instant::now();
        // Closed: every task in it has finished.
        total += end - out.ok().expect("the body reached the cancel and returned");
    }
    total
}

async fn ours_timer_insert_cancel(cx: &Cx, n: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = n;
    while left > 0 {
        let chunk = left.min(TIMER_CHUNK);
        let t = Instant::now();
        for _ in 0..chunk {
            let mut sleep = pin!(cx.sleep(Duration::from_secs(60)));
            poll_fn(|task| {
                let polled = sleep.as_mut().poll(task);
                debug_assert!(polled.is_pending());
                Poll::Ready(())
            })
            .await;
        }
        total += t.elapsed();
        left -= chunk;
        // A fresh task turn (and cooperative budget), off the clock.
        cx.yield_now().await.expect("not cancelled");
    }
    total
}

fn ours_timer_create_drop(cx: &Cx, n: u64) -> Duration {
    let t = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(TIMER_BATCH);
        let sleeps: Vec<_> = (0..batch)
            .map(|i| cx.sleep(Duration::from_secs(60 + i % 100)))
            .collect();
        drop(sleeps);
        left -= batch;
    }
    t.elapsed()
}

/// Ping-pong over runtime-core's two-phase channel (`send` is `reserve`
/// then commit), echoed by a task in the same region.
async fn ours_ping_pong(cx: &Cx, rounds: u64) -> Duration {
    use runtime_core::channel::mpsc;
    let (tx1, mut rx1) = mpsc::channel::<u64>(1).expect("capacity 1");
    let (tx2, mut rx2) = mpsc::channel::<u64>(1).expect("capacity 1");
    let echo = cx.try_spawn(move |cx| async move {
        while let Ok(v) = rx1.recv(&cx).await {
            if tx2.send(&cx, v).await.is_err() {
                break;
            }
        }
        Ok::<_, Infallible>(())
    });
    let t = Instant::now();
    for i in 0..rounds {
        tx1.send(cx, i).await.expect("echo alive");
        black_box(rx2.recv(cx).await.expect("echo alive"));
    }
    let d = t.elapsed();
    drop(tx1);
    echo.await.unwrap();
    d
}

// ---- tokio (as ../shared/anchors/tokio-bench measures it) --------------------

async fn tokio_spawn_join(n: u64) -> Duration {
    let t = Instant::now();
    for i in 0..n {
        let v = tokio::spawn(async move { i }).await.unwrap();
        black_box(v);
    }
    t.elapsed()
}

async fn tokio_spawn_then_join_all(n: u64) -> Duration {
    let t = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(SPAWN_BATCH);
        let hs: Vec<_> = (0..batch).map(|i| tokio::spawn(async move { i })).collect();
        for h in hs {
            black_box(h.await.unwrap());
        }
        left -= batch;
    }
    t.elapsed()
}

async fn tokio_yield(n: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
    t.elapsed()
}

async fn tokio_ping_pong(rounds: u64) -> Duration {
    let (tx1, mut rx1) = tokio::sync::mpsc::channel::<u64>(1);
    let (tx2, mut rx2) = tokio::sync::mpsc::channel::<u64>(1);
    let echo = tokio::spawn(async move {
        while let Some(v) = rx1.recv().await {
            if tx2.send(v).await.is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    for i in 0..rounds {
        tx1.send(i).await.unwrap();
        black_box(rx2.recv().await.unwrap());
    }
    let d = t.elapsed();
    drop(tx1);
    echo.await.unwrap();
    d
}

async fn tokio_region(n: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let mut set = JoinSet::<()>::new();
        black_box(set.join_next().await);
    }
    t.elapsed()
}

async fn tokio_region_spawn_join(n: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let mut set = JoinSet::new();
        set.spawn(async { 1u64 });
        black_box(set.join_next().await);
    }
    t.elapsed()
}

async fn tokio_cancel_drain(k: usize, reps: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..reps {
        let mut set = JoinSet::new();
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..k {
            let started = started.clone();
            set.spawn(async move {
                started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(LONG_SLEEP).await
            });
        }
        // Let every one reach its await point, as ours does.
        while started.load(std::sync::atomic::Ordering::Relaxed) < k {
            tokio::task::yield_now().await;
        }
        drop(started);
        let t = Instant::now();
        callgrind_instrument(true);
        set.shutdown().await; // abort all, then wait until every task is gone
        // The set goes too, inside the window, as our region's node does
        // (the region's await returns only after it is freed): both sides
        // make their scope before the window and end it inside.
        drop(set);
        callgrind_instrument(false);
        total += t.elapsed();
    }
    total
}

async fn tokio_timer_insert_cancel(n: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = n;
    while left > 0 {
        let chunk = left.min(TIMER_CHUNK);
        let t = Instant::now();
        for _ in 0..chunk {
            let mut sleep = pin!(tokio::time::sleep(Duration::from_secs(60)));
            poll_fn(|task| {
                let polled = sleep.as_mut().poll(task);
                debug_assert!(polled.is_pending());
                Poll::Ready(())
            })
            .await;
        }
        total += t.elapsed();
        left -= chunk;
        // A fresh poll of the root (and cooperative budget), off the clock.
        tokio::task::yield_now().await;
    }
    total
}

fn tokio_timer_create_drop(n: u64) -> Duration {
    let t = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(TIMER_BATCH);
        let sleeps: Vec<_> = (0..batch)
            .map(|i| tokio::time::sleep(Duration::from_secs(60 + i % 100)))
            .collect();
        drop(sleeps);
        left -= batch;
    }
    t.elapsed()
}

// ---- the table -------------------------------------------------------------------

/// Per-iteration medians of one [`compare`].
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    /// runtime-core.
    pub ours: Duration,
    /// tokio measured from `block_on`, as the anchor measures it (the
    /// calling thread is not a worker).
    pub tokio: Duration,
    /// tokio with the measuring code in a spawned task, on a worker: placed
    /// as ours is; the like-for-like figure.
    pub tokio_in_task: Duration,
}

/// The median of `rounds` measurements of `op` on each runtime (after one
/// warm-up measurement each), per iteration. Rounds alternate between the
/// runtimes so that drift in the machine hits all alike.
pub fn compare(ours: &Ours, tokio: &Tokio, op: Op, rounds: usize) -> Comparison {
    let n = op.table_iters();
    let warm = (n / 10).max(1);
    ours.run(op, warm);
    tokio.run(op, warm);
    tokio.run_in_task(op, warm);
    let per = |d: Duration| d.div_f64(n as f64);
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        a.push(per(ours.run(op, n)));
        b.push(per(tokio.run(op, n)));
        c.push(per(tokio.run_in_task(op, n)));
    }
    Comparison {
        ours: median(&mut a),
        tokio: median(&mut b),
        tokio_in_task: median(&mut c),
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Formats a per-iteration time: ns below 10 us, us above.
fn fmt_time(d: Duration, unit: &str) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns/{unit}")
    } else {
        format!("{:.1} us/{unit}", d.as_secs_f64() * 1e6)
    }
}

/// The table's heading: conditions, then the markdown header rows.
pub fn table_header(workers: usize, rounds: usize) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{workers} worker threads each, {cores} cores, median of {rounds} rounds, same process; \
         the measuring code in a task on a worker on both sides; tokio/ours above 1: ours is \
         faster. The last two columns: tokio measured from `block_on` (the anchor's placement: \
         the calling thread is not a worker, so each wake-up crosses threads through the kernel)\n\n\
         | operation | ours | tokio (code in a spawned task) | tokio/ours | tokio from `block_on` | tokio from `block_on`/ours |\n\
         |---|---:|---:|---:|---:|---:|\n"
    )
}

/// One row of the table: `op` measured on both runtimes ([`compare`]):
/// ours, tokio with the measuring code in a spawned task and tokio's time
/// over ours (above 1: ours is faster), then tokio from `block_on` and its
/// time over ours.
pub fn table_row(ours: &Ours, tokio: &Tokio, op: Op, rounds: usize) -> String {
    let r = compare(ours, tokio, op, rounds);
    let unit = op.unit();
    let over = |d: Duration| d.as_secs_f64() / r.ours.as_secs_f64().max(1e-12);
    format!(
        "| {} | {} | {} | {:.2} | {} | {:.2} |\n",
        op.label(),
        fmt_time(r.ours, unit),
        fmt_time(r.tokio_in_task, unit),
        over(r.tokio_in_task),
        fmt_time(r.tokio, unit),
        over(r.tokio),
    )
}

/// Runs every operation on both runtimes with `workers` worker threads
/// each (median of `rounds`) and returns a markdown table ([`table_row`]).
pub fn table(workers: usize, rounds: usize) -> String {
    let ours = Ours::new(workers);
    let tokio = Tokio::new(workers);
    let mut out = table_header(workers, rounds);
    for op in Op::ALL {
        out.push_str(&table_row(&ours, &tokio, op, rounds));
    }
    out
}
