//! A small application on the runtime: regions, cancellation with a
//! reason, a timeout, a two-phase channel, and a narrowed `Cx` handed to a
//! library function. Run it with `cargo run -p runtime-facade --example app`.

use runtime_facade::prelude::*;

/// A "library" that may only read time and sleep: its signature says so,
/// and the `Cx` it is handed could not spawn or open a connection if it
/// tried (code can still reach `std` or `ambient_authority` directly: see
/// runtime-cap's *What the capabilities do not cover*).
mod library {
    use runtime_facade::prelude::*;

    /// Waits `attempt` x 5 ms (a backoff), a checkpoint.
    pub(crate) async fn backoff(cx: &Cx<TimeOnly>, attempt: u32) -> Result<(), Cancelled> {
        cx.sleep(Duration::from_millis(5 * u64::from(attempt)))
            .await
    }
}

fn main() {
    // Authority enters the program here, once.
    let rt = Runtime::builder()
        .worker_threads(2)
        .build(ambient_authority())
        .expect("runtime");

    let out = rt.block_on(|cx| async move {
        // 1. A region with a producer and a consumer over a two-phase
        //    channel: the producer reserves a slot (cancel-safe), then
        //    commits (cannot fail for lack of space).
        let total = cx
            .region(|cx| async move {
                let (tx, mut rx) = mpsc::channel::<u64>(4).map_err(|e| e.to_string())?;
                cx.try_spawn(move |cx| async move {
                    for i in 1..=10 {
                        library::backoff(&cx.narrow::<TimeOnly>(), 0)
                            .await
                            .map_err(|_| "cancelled")?;
                        let permit = tx.reserve(&cx).await.map_err(|_| "receiver gone")?;
                        permit.send(i).map_err(|_| "receiver gone")?;
                    }
                    Ok::<_, &str>(())
                });
                let mut sum = 0;
                while let Ok(v) = rx.recv(&cx).await {
                    sum += v;
                }
                Ok::<_, String>(sum)
            })
            .await;
        println!("1. region: the consumer summed {:?}", total.clone().ok());

        // 2. Cancellation with a reason: the worker sees it at its next
        //    checkpoint, cleans up, and ends Cancelled(reason).
        let worker = cx.try_spawn(|cx| async move {
            let mut ticks = cx.interval(Duration::from_millis(2));
            loop {
                if let Err(cancelled) = ticks.tick(&cx).await {
                    println!("2. worker: cleaning up after \"{}\"", cancelled.reason());
                    return Err::<(), _>(cancelled);
                }
            }
        });
        library::backoff(&cx.narrow::<TimeOnly>(), 2)
            .await
            .map_err(|_| "cancelled".to_string())?;
        worker.cancel(CancelReason::user("the operator pressed stop"));
        let ended = worker.await;
        println!(
            "2. worker ended: {:?}",
            ended.cancel_reason().map(|r| r.to_string())
        );

        // 3. A timeout: the slow call is cancelled with reason Timeout and
        //    drained before `timeout` returns.
        let slow = cx
            .timeout(Duration::from_millis(20), |cx| async move {
                library::backoff(&cx.narrow::<TimeOnly>(), 1_000).await?;
                Ok::<_, Cancelled>("finished")
            })
            .await;
        println!("3. slow call: {:?}", slow.cancel_reason().map(|r| r.kind()));

        Ok::<_, String>((total.ok(), ended.is_cancelled(), slow.is_cancelled()))
    });

    let (total, worker_cancelled, slow_cancelled) = out.ok().expect("the application's region");
    assert_eq!(total, Some(55));
    assert!(worker_cancelled && slow_cancelled);
    let report = rt.shutdown(Duration::from_secs(1));
    println!("shutdown: {report:?}");
    assert!(report.completed);
}
