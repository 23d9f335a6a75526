//! Algebraic laws: the outcome join, the budget meet, reason strengthening.

use proptest::prelude::*;
use runtime_core::time::Instant;
use runtime_core::{Budget, CancelKind, CancelReason, Outcome, PanicPayload, Severity};

const KINDS: [CancelKind; 9] = [
    CancelKind::User,
    CancelKind::LostRace,
    CancelKind::Timeout,
    CancelKind::Deadline,
    CancelKind::PollQuota,
    CancelKind::CostBudget,
    CancelKind::SiblingFailed,
    CancelKind::ParentCancelled,
    CancelKind::Shutdown,
];

fn reason() -> impl Strategy<Value = CancelReason> {
    (0..KINDS.len(), 0..KINDS.len(), any::<bool>(), 0u8..4).prop_map(|(k, c, nested, msg)| {
        let base = CancelReason::new(KINDS[c]).with_message(format!("m{msg}"));
        if nested {
            base.for_child()
        } else {
            CancelReason::new(KINDS[k]).with_message(format!("m{msg}"))
        }
    })
}

fn outcome() -> impl Strategy<Value = Outcome<(), u8>> {
    prop_oneof![
        Just(Outcome::Ok(())),
        any::<u8>().prop_map(Outcome::Err),
        reason().prop_map(Outcome::Cancelled),
        (0u8..3).prop_map(|i| Outcome::Panicked(PanicPayload::new(format!("p{i}")))),
    ]
}

fn budget() -> impl Strategy<Value = Budget> {
    (
        proptest::option::of(0u64..1_000),
        proptest::option::of(0u32..1_000),
        proptest::option::of(0u64..1_000),
    )
        .prop_map(|(d, p, c)| Budget {
            deadline: d.map(Instant::from_nanos),
            poll_quota: p,
            cost_quota: c,
        })
}

proptest! {
    #[test]
    fn join_is_associative(a in outcome(), b in outcome(), c in outcome()) {
        prop_assert_eq!(a.clone().join(b.clone()).join(c.clone()), a.join(b.join(c)));
    }

    #[test]
    fn ok_is_the_identity_of_join(a in outcome()) {
        prop_assert_eq!(Outcome::Ok(()).join(a.clone()), a.clone());
        prop_assert_eq!(a.clone().join(Outcome::Ok(())), a);
    }

    #[test]
    fn join_keeps_the_worst(a in outcome(), b in outcome()) {
        let worst = a.severity().max(b.severity());
        prop_assert_eq!(a.join(b).severity(), worst);
    }

    #[test]
    fn meet_is_associative_commutative_idempotent(a in budget(), b in budget(), c in budget()) {
        prop_assert_eq!(a.meet(&b).meet(&c), a.meet(&b.meet(&c)));
        prop_assert_eq!(a.meet(&b), b.meet(&a));
        prop_assert_eq!(a.meet(&a), a);
    }

    #[test]
    fn unlimited_is_the_identity_of_meet(a in budget()) {
        prop_assert_eq!(Budget::UNLIMITED.meet(&a), a);
        prop_assert_eq!(a.meet(&Budget::UNLIMITED), a);
    }

    #[test]
    fn meet_never_loosens(a in budget(), b in budget()) {
        let m = a.meet(&b);
        for x in [a, b] {
            if let Some(d) = x.deadline { prop_assert!(m.deadline.unwrap() <= d); }
            if let Some(q) = x.poll_quota { prop_assert!(m.poll_quota.unwrap() <= q); }
            if let Some(q) = x.cost_quota { prop_assert!(m.cost_quota.unwrap() <= q); }
        }
    }

    /// Whatever order requests arrive in, the strength never goes down, and
    /// the result is the strongest request (the first of that strength).
    #[test]
    fn reasons_only_strengthen(first in reason(), rest in proptest::collection::vec(reason(), 0..12)) {
        let mut r = first.clone();
        let mut strongest = first;
        for next in &rest {
            let before = r.strength();
            let changed = r.strengthen(next);
            prop_assert!(r.strength() >= before);
            prop_assert_eq!(changed, next.strength() > before);
            if next.strength() > strongest.strength() { strongest = next.clone(); }
        }
        prop_assert_eq!(r, strongest);
    }
}

#[test]
fn severity_order_is_ok_err_cancelled_panicked() {
    assert!(Severity::Ok < Severity::Err);
    assert!(Severity::Err < Severity::Cancelled);
    assert!(Severity::Cancelled < Severity::Panicked);
}

#[test]
fn parent_cancelled_carries_its_cause() {
    let r = CancelReason::new(CancelKind::Shutdown)
        .for_child()
        .for_child();
    assert_eq!(r.kind(), CancelKind::ParentCancelled);
    assert_eq!(r.root_cause().kind(), CancelKind::Shutdown);
    assert!(r.to_string().contains("shutdown"));
}
