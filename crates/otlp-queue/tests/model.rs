//! Property test: single-threaded operation sequences against a model of
//! one `VecDeque` per producer lane.

use std::collections::VecDeque;

use otlp_queue::{Producer, PushError, bounded};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    TryPush(usize),
    ForcePush(usize),
    Pop,
    PopBatch(usize),
    TryPop,
}

fn op(producers: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..producers).prop_map(Op::TryPush),
        2 => (0..producers).prop_map(Op::ForcePush),
        2 => Just(Op::Pop),
        2 => (0usize..12).prop_map(Op::PopBatch),
        1 => Just(Op::TryPop),
    ]
}

/// Items are `(producer, sequence)`, so each popped item names the lane it
/// must have come from.
type Item = (usize, u64);

struct Model {
    lanes: Vec<VecDeque<Item>>,
    cap: usize,
    next_seq: u64,
}

impl Model {
    /// Checks that `item` is the oldest item of its lane, and removes it.
    fn take(&mut self, item: Item) {
        let lane = &mut self.lanes[item.0];
        assert_eq!(
            lane.pop_front(),
            Some(item),
            "not the oldest of lane {}",
            item.0
        );
    }

    fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }
}

fn run(cap: usize, n_producers: usize, ops: Vec<Op>) {
    let (first, mut rx) = bounded::<Item>(cap);
    let mut txs: Vec<Producer<Item>> = vec![first];
    while txs.len() < n_producers {
        txs.push(txs[0].clone());
    }
    let mut m = Model {
        lanes: vec![VecDeque::new(); n_producers],
        cap,
        next_seq: 0,
    };
    let (mut rejected, mut evicted, mut popped) = (0u64, 0u64, 0u64);
    for op in ops {
        match op {
            Op::TryPush(p) => {
                let item = (p, m.next_seq);
                m.next_seq += 1;
                match txs[p].try_push(item) {
                    Ok(()) => {
                        assert!(m.lanes[p].len() < m.cap, "accepted past capacity");
                        m.lanes[p].push_back(item);
                    }
                    Err(PushError::Full(back)) => {
                        assert_eq!(back, item);
                        assert_eq!(m.lanes[p].len(), m.cap, "Full while not full");
                        rejected += 1;
                    }
                    Err(PushError::Closed(_)) => panic!("closed while consumer alive"),
                }
            }
            Op::ForcePush(p) => {
                let item = (p, m.next_seq);
                m.next_seq += 1;
                let out = txs[p].force_push(item).expect("consumer alive");
                if m.lanes[p].len() == m.cap {
                    assert_eq!(out, m.lanes[p].pop_front(), "evicted the wrong item");
                    evicted += 1;
                } else {
                    assert_eq!(out, None);
                }
                m.lanes[p].push_back(item);
            }
            Op::Pop => match rx.pop() {
                Some(item) => {
                    m.take(item);
                    popped += 1;
                }
                None => assert_eq!(m.len(), 0, "pop found nothing in a non-empty queue"),
            },
            Op::TryPop => match rx.try_pop() {
                Ok(item) => {
                    m.take(item);
                    popped += 1;
                }
                Err(e) => {
                    assert_eq!(e, otlp_queue::TryPopError::Empty);
                    assert_eq!(m.len(), 0);
                }
            },
            Op::PopBatch(max) => {
                let before = m.len();
                let mut out = Vec::new();
                let n = rx.pop_batch(&mut out, max);
                assert_eq!(n, out.len());
                assert_eq!(n, max.min(before), "batch took the wrong amount");
                for item in out {
                    m.take(item);
                }
                popped += n as u64;
            }
        }
        assert_eq!(rx.len(), m.len());
        let c = rx.counters();
        assert_eq!(c.rejected_full, rejected);
        assert_eq!(c.evicted, evicted);
        assert_eq!(c.popped, popped);
        assert_eq!(c.pushed, popped + evicted + m.len() as u64);
    }
    // Close: drop every producer, drain the rest, then Closed.
    drop(txs);
    let mut rest = Vec::new();
    rx.pop_batch(&mut rest, usize::MAX);
    for item in rest {
        m.take(item);
    }
    assert_eq!(m.len(), 0);
    assert_eq!(rx.try_pop(), Err(otlp_queue::TryPopError::Closed));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_a_vecdeque_per_lane(
        cap in 1usize..6,
        (n_producers, ops) in (1usize..4).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 0..200))),
    ) {
        run(cap, n_producers, ops);
    }
}
