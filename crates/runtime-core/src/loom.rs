//! The seam between this crate and its synchronisation primitives.
//!
//! Under `cfg(loom)` every atomic, `Arc`, `Mutex`, cell and spin hint comes
//! from [loom], so the same code is model-checked; otherwise from `std`.
//! (The tokio habit: the rest of the crate imports only from here.)
//!
//! [loom]: https://docs.rs/loom

//!
//! `Arc` is always `std`'s. A task's counts are loom atomics like the rest
//! of its state (`task/raw.rs` keeps the strong count in the state word),
//! so the models check the count traffic too.

#[cfg(loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
    },
};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
};

/// `std`'s `UnsafeCell` with loom's closure-based API, so both compile the
/// same call sites. The closures are inlined away.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Marks one side of a Dekker pair made of `SeqCst` accesses (a `SeqCst`
/// store, or read-modify-write, of one atomic, then a `SeqCst` load of
/// another, against the same in the other order on another thread): the
/// memory model's single order of `SeqCst` operations guarantees that the
/// two loads do not both miss the other side's store. loom does not model
/// that order for accesses (it treats `SeqCst` accesses as acquire-release)
/// but does for fences, so under `cfg(loom)` this is a `SeqCst` fence,
/// placed between the two accesses, which gives the model the same
/// guarantee; otherwise nothing (the accesses give it).
#[inline(always)]
pub(crate) fn dekker() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// One step of a busy wait: a CPU spin hint, or a yield to loom's scheduler.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Lock a mutex. A poisoned registry is still consistent (every critical
/// section in this crate leaves it valid before anything can panic), so the
/// poison flag is ignored rather than turned into a panic.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
