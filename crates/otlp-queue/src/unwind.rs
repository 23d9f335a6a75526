//! Teardowns that drop items whose `Drop` may panic (user code): every
//! item is still dropped exactly once, the teardown around them finishes,
//! and then the first panic is passed on (or, while the thread is already
//! unwinding, where a second panic would abort the process, dropped).

use std::panic::{AssertUnwindSafe, catch_unwind};

/// A caught panic's payload.
pub(crate) type Panic = Box<dyn core::any::Any + Send>;

/// Drops `item` while an unwind may be running (a second panic there
/// would abort): a panic of its `Drop` is caught, and its payload dropped
/// ([`forget_payload`]).
pub(crate) fn drop_during_unwind<T>(item: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(item))) {
        forget_payload(payload);
    }
}

/// Drops a caught panic's payload, whose own `Drop` could panic too:
/// caught, and that one's payload leaked (found by review: every payload
/// was leaked).
pub(crate) fn forget_payload(payload: Panic) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        core::mem::forget(again);
    }
}

/// Keeps the first of the panics caught in a teardown; drops the others'
/// payloads.
pub(crate) fn keep_first(first: &mut Option<Panic>, panic: Option<Panic>) {
    match (first.is_none(), panic) {
        (true, p) => *first = p,
        (false, Some(p)) => forget_payload(p),
        (false, None) => {}
    }
}

/// Runs `drain` (which drops items, each counted as taken before its drop
/// runs) until it returns without a panic; returns the first panic.
pub(crate) fn drain_caught(mut drain: impl FnMut()) -> Option<Panic> {
    let mut first = None;
    loop {
        match catch_unwind(AssertUnwindSafe(&mut drain)) {
            Ok(()) => return first,
            Err(p) => keep_first(&mut first, Some(p)),
        }
    }
}

/// Passes on a panic caught while dropping items, once the teardown around
/// it is done; while unwinding already, its payload is dropped instead.
pub(crate) fn resume(panic: Option<Panic>) {
    if let Some(payload) = panic {
        if std::thread::panicking() {
            forget_payload(payload);
        } else {
            std::panic::resume_unwind(payload);
        }
    }
}
