//! One consumer, N producers: the run, the candidates, the figures.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use otlp_queue::PushError;

/// What the producers do when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Retry (spin hint, then yield) until the push succeeds: nothing is
    /// lost, and the figure that matters is items delivered per second.
    Lossless,
    /// Drop the item and go on: the figures that matter are push attempts
    /// per second per producer and the fraction dropped.
    Shedding,
}

impl Mode {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Lossless => "lossless",
            Mode::Shedding => "shedding",
        }
    }
}

/// The queues compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Candidate {
    /// This workspace's queue, one lane per producer; each lane gets
    /// `capacity / producers` slots so the total matches the others.
    OtlpQueue,
    /// This workspace's pooled queue (`otlp_queue::pooled`, the exporter's
    /// queue under every shedding policy but drop-oldest): producers fill
    /// chunks they claim from one shared pool. It holds at most the pool
    /// plus a chunk per producer, so the pool gets `capacity` less the
    /// producers' chunks: the same total as the others.
    OtlpPooled,
    /// crossbeam-queue's `ArrayQueue`: the best-known bounded lock-free queue.
    ArrayQueue,
    /// `std::sync::Mutex<VecDeque<u64>>` with a length check: the naive choice.
    MutexVecDeque,
}

impl Candidate {
    /// Every candidate, ours first.
    pub const ALL: [Candidate; 4] = [
        Candidate::OtlpQueue,
        Candidate::OtlpPooled,
        Candidate::ArrayQueue,
        Candidate::MutexVecDeque,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Candidate::OtlpQueue => "otlp-queue",
            Candidate::OtlpPooled => "otlp-queue pooled",
            Candidate::ArrayQueue => "crossbeam ArrayQueue",
            Candidate::MutexVecDeque => "std Mutex<VecDeque>",
        }
    }

    /// Its place in [`Candidate::ALL`] (results are kept in that order).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable identifier for machine-readable output.
    pub fn id(self) -> &'static str {
        match self {
            Candidate::OtlpQueue => "otlp_queue",
            Candidate::OtlpPooled => "otlp_queue_pooled",
            Candidate::ArrayQueue => "array_queue",
            Candidate::MutexVecDeque => "mutex_vecdeque",
        }
    }
}

/// The figures of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    /// Push attempts per second, all producers together (attempts divided by
    /// the slowest producer's time).
    pub attempts_per_s: f64,
    /// Mean over producers of each one's own attempts per second.
    pub per_producer_per_s: f64,
    /// Items the consumer received per second of the whole run.
    pub delivered_per_s: f64,
    /// Items the consumer received.
    pub delivered: u64,
    /// Items the producers dropped because the queue was full.
    pub dropped: u64,
}

impl RunResult {
    /// Dropped items as a fraction of attempts.
    pub fn drop_fraction(&self) -> f64 {
        let total = self.delivered + self.dropped;
        if total == 0 {
            0.0
        } else {
            self.dropped as f64 / total as f64
        }
    }
}

/// A producer's handle on one candidate queue.
trait Sender: Send + 'static {
    fn push(&self, v: u64) -> bool;
}

/// The consumer's handle: drains what is there, returns how many.
trait Receiver: Send + 'static {
    fn drain(&mut self) -> u64;
}

/// Most items one drain takes, for every candidate.
const DRAIN_MAX: usize = 4096;

/// An otlp-queue push's result as the harness counts it: a full queue is
/// a refused push; a closed one is a broken run.
#[inline]
fn pushed(r: Result<(), PushError<u64>>) -> bool {
    match r {
        Ok(()) => true,
        Err(PushError::Full(_)) => false,
        Err(PushError::Closed(_)) => panic!("consumer gone during a run"),
    }
}

impl Sender for otlp_queue::Producer<u64> {
    #[inline]
    fn push(&self, v: u64) -> bool {
        pushed(self.try_push(v))
    }
}

struct OtlpRx(otlp_queue::Consumer<u64>, Vec<u64>);

impl Receiver for OtlpRx {
    #[inline]
    fn drain(&mut self) -> u64 {
        self.1.clear();
        self.0.pop_batch(&mut self.1, DRAIN_MAX) as u64
    }
}

impl Sender for otlp_queue::pooled::Producer<u64> {
    #[inline]
    fn push(&self, v: u64) -> bool {
        pushed(self.try_push(v))
    }
}

struct PooledRx(otlp_queue::pooled::Consumer<u64>);

impl Receiver for PooledRx {
    #[inline]
    fn drain(&mut self) -> u64 {
        self.0.pop_each(DRAIN_MAX, drop) as u64
    }
}

impl Sender for Arc<ArrayQueue<u64>> {
    #[inline]
    fn push(&self, v: u64) -> bool {
        ArrayQueue::push(self, v).is_ok()
    }
}

impl Receiver for Arc<ArrayQueue<u64>> {
    #[inline]
    fn drain(&mut self) -> u64 {
        let mut n = 0;
        while n < DRAIN_MAX as u64 && self.pop().is_some() {
            n += 1;
        }
        n
    }
}

#[derive(Clone)]
struct MutexQ(Arc<Mutex<VecDeque<u64>>>, usize);

impl Sender for MutexQ {
    #[inline]
    fn push(&self, v: u64) -> bool {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.1 {
            return false;
        }
        q.push_back(v);
        true
    }
}

impl Receiver for MutexQ {
    #[inline]
    fn drain(&mut self) -> u64 {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.len().min(DRAIN_MAX);
        q.drain(..n);
        n as u64
    }
}

/// Runs one configuration: `producers` threads each pushing `per_producer`
/// items into a queue of total `capacity`, one consumer draining.
///
/// # Panics
///
/// If an item is lost (delivered + dropped differs from what was pushed):
/// a measurement of a broken queue is worthless.
pub fn run(
    candidate: Candidate,
    producers: usize,
    per_producer: u64,
    mode: Mode,
    capacity: usize,
) -> RunResult {
    assert!(producers >= 1, "at least one producer");
    match candidate {
        Candidate::OtlpQueue => {
            let lane = (capacity / producers).max(1);
            let (tx, rx) = otlp_queue::bounded::<u64>(lane);
            let mut txs: Vec<_> = (1..producers).map(|_| tx.clone()).collect();
            txs.push(tx);
            drive(
                txs,
                OtlpRx(rx, Vec::with_capacity(DRAIN_MAX)),
                per_producer,
                mode,
            )
        }
        Candidate::OtlpPooled => {
            let chunk = otlp_queue::pooled::chunk_len::<u64>();
            let pool = capacity.saturating_sub(chunk * producers).max(chunk);
            let (tx, rx) = otlp_queue::pooled::bounded_total::<u64>(pool);
            let mut txs: Vec<_> = (1..producers)
                .map(|_| tx.try_clone().expect("a lane"))
                .collect();
            txs.push(tx);
            drive(txs, PooledRx(rx), per_producer, mode)
        }
        Candidate::ArrayQueue => {
            let q = Arc::new(ArrayQueue::new(capacity));
            drive(vec![q.clone(); producers], q, per_producer, mode)
        }
        Candidate::MutexVecDeque => {
            let q = MutexQ(
                Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
                capacity,
            );
            drive(vec![q.clone(); producers], q, per_producer, mode)
        }
    }
}

fn drive<S: Sender, R: Receiver>(
    senders: Vec<S>,
    mut receiver: R,
    per: u64,
    mode: Mode,
) -> RunResult {
    let producers = senders.len();
    let start = Arc::new(Barrier::new(producers + 1));
    let done = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(t, tx)| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let t0 = Instant::now();
                let mut dropped = 0u64;
                for i in 0..per {
                    let v = (t as u64) << 40 | i;
                    match mode {
                        Mode::Shedding => dropped += u64::from(!tx.push(v)),
                        Mode::Lossless => {
                            while !tx.push(v) {
                                std::hint::spin_loop();
                                thread::yield_now();
                            }
                        }
                    }
                }
                (t0, t0.elapsed(), dropped)
            })
        })
        .collect();
    let consumer_done = done.clone();
    let consumer = thread::spawn(move || {
        let mut got = 0u64;
        loop {
            let n = receiver.drain();
            got += n;
            if n == 0 {
                // Acquire: pairs with the Release store after every producer
                // joined, so the final drain sees every item.
                if consumer_done.load(Ordering::Acquire) {
                    loop {
                        let n = receiver.drain();
                        if n == 0 {
                            return got;
                        }
                        got += n;
                    }
                }
                // Nothing there: back off the way the producers do when
                // full, so that on a machine with fewer cores than threads
                // an idle consumer hands its core to a producer.
                std::hint::spin_loop();
                thread::yield_now();
            }
        }
    });
    start.wait();
    // The run starts when the first producer starts: this thread may be
    // descheduled right after the barrier on a busy machine, so its own
    // clock would start late.
    let mut first: Option<Instant> = None;
    let mut slowest = Duration::ZERO;
    let mut per_producer_sum = 0.0;
    let mut dropped = 0;
    for h in handles {
        let (t0, elapsed, d) = h.join().expect("producer panicked");
        first = Some(first.map_or(t0, |f| f.min(t0)));
        slowest = slowest.max(elapsed);
        per_producer_sum += per as f64 / elapsed.as_secs_f64().max(1e-9);
        dropped += d;
    }
    done.store(true, Ordering::Release);
    let delivered = consumer.join().expect("consumer panicked");
    let wall = first.map_or(0.0, |f| f.elapsed().as_secs_f64()).max(1e-9);
    let total = per * producers as u64;
    assert_eq!(delivered + dropped, total, "items lost: a broken queue");
    RunResult {
        attempts_per_s: total as f64 / slowest.as_secs_f64().max(1e-9),
        per_producer_per_s: per_producer_sum / producers as f64,
        delivered_per_s: delivered as f64 / wall,
        delivered,
        dropped,
    }
}
