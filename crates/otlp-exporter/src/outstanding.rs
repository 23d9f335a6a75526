//! Counting the spans that hold a recording thread's tracer handle, with no
//! locked instruction when a span starts and ends on its own thread.
//!
//! A [`Span`](crate::Span) owns what it needs, so it keeps its thread's
//! tracer handle (`Local` in `span.rs`: the pipeline handle, scope, limits,
//! sampler) alive. A reference count does that, but an atomic
//! read-modify-write per span start and end costs more than its
//! instructions: a locked instruction waits until every store before it
//! has reached the cache, and a span's last stores are its queue slot,
//! whose lines are in the worker's core. In otlp-exporter's `record_loop`
//! (2-core VM) the two per span cost about 28 of 167 ns.
//!
//! So the handle counts its spans the way biased reference counting does:
//!
//! * Spans start only on the handle's **owner** thread (each thread has
//!   its own handle per tracer). The owner keeps `live` (spans started
//!   minus spans it ended) with plain loads and stores: it is the only
//!   writer. A span that ends on **another** thread adds one to `away`
//!   with an atomic read-modify-write (the rare path). Spans outstanding:
//!   `live - away`.
//! * Once no span can start on the handle any more (its tracer is gone, or
//!   its owner thread is exiting), it is **closed**. Then `live - away` only
//!   goes down, and whoever sees it reach zero after the close
//!   **releases** the handle (drops its pipeline handle, so that dropping
//!   every tracer, span and pipeline handle still shuts the pipeline down):
//!   exactly once, by a `released` flag.
//! * Who sees it? The closer, right after closing; an owner's end that sees
//!   `closed`; a foreign end that sees `closed`. The owner's end stores
//!   `live` and then loads `closed`; the closer stores `closed` and then
//!   loads `live`. For one of the two to see the other, both need a
//!   store-to-load fence, and a fence on every span end is the locked
//!   instruction we are avoiding. So the fence is **asymmetric**: the
//!   owner's side is a compiler fence only, and the closer (rare: a tracer
//!   dropped) makes every running thread of the process execute a full
//!   fence, with Linux's `membarrier` system call
//!   (`MEMBARRIER_CMD_PRIVATE_EXPEDITED`). (A thread that exits closes its
//!   own handles: it wrote `live` itself, so it needs no such fence.) Where that is not available
//!   (another OS, an old kernel, a seccomp filter), both sides use a real
//!   fence: correct, just slower. (This is the pairing of
//!   `folly::asymmetricLightBarrier` / `asymmetricHeavyBarrier`, and of
//!   liburcu's.)
//! * A stale read can only over-count: after the close `live` and `away`
//!   only move towards "nothing outstanding", and every reader has seen
//!   every start (the closer happens after the tracer's last use, or is the
//!   owner itself; the others saw `closed` with Acquire). So nobody
//!   releases early.
//!
//! Under loom every fence of the protocol is a read-modify-write of one
//! location (loom has no asymmetric fence, and does not order a store
//! before a later load of another location through `SeqCst` fences); the
//! model at the bottom checks that exactly one release happens,
//! and only after the last end, for an owner end, a foreign end and a
//! close racing.

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

/// The count of one tracer handle's outstanding spans (see the module
/// docs).
pub(crate) struct Outstanding {
    /// The owner thread's [`thread_id`].
    owner: u64,
    /// Spans started minus spans the owner ended. Written by the owner
    /// only, with plain stores; read by anyone once closed.
    live: AtomicU64,
    /// Spans ended on other threads.
    away: AtomicU64,
    /// No span starts on the handle any more.
    closed: AtomicBool,
    /// The handle was released (set once).
    released: AtomicBool,
    /// The owner thread still holds the handle in its cache (so the
    /// handle's memory is alive on the owner's path). Written and read by
    /// the owner only.
    owner_present: AtomicBool,
    /// Under loom, where a `SeqCst` fence does not order a store before a
    /// later load of another location, every fence of the protocol is a
    /// read-modify-write of this one location instead (which loom orders).
    #[cfg(loom)]
    sync: AtomicU64,
}

impl Outstanding {
    /// A count owned by the calling thread, nothing outstanding.
    pub(crate) fn new() -> Self {
        Outstanding {
            owner: thread_id(),
            live: AtomicU64::new(0),
            away: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            released: AtomicBool::new(false),
            owner_present: AtomicBool::new(true),
            #[cfg(loom)]
            sync: AtomicU64::new(0),
        }
    }

    /// A span starts. Owner thread only (the only thread that starts spans
    /// on the handle), before the handle is closed.
    #[inline]
    pub(crate) fn begin(&self) {
        debug_assert_eq!(self.owner, thread_id(), "spans start on the owner");
        // Relaxed: only this thread writes `live`; whoever reads it after
        // the close happens after this start (see the module docs).
        let live = self.live.load(Ordering::Relaxed);
        self.live.store(live + 1, Ordering::Relaxed);
    }

    /// Whether the calling thread ends its spans on the owner's path: it
    /// is the owner, and still has the handle in its cache.
    #[inline]
    pub(crate) fn on_owner(&self) -> bool {
        // Relaxed: written only by the owner, which is the caller if the
        // first test passes.
        self.owner == thread_id() && self.owner_present.load(Ordering::Relaxed)
    }

    /// A span ends on the owner's path ([`on_owner`](Self::on_owner)).
    /// True if the caller must now release the handle.
    #[inline]
    pub(crate) fn end_on_owner(&self) -> bool {
        let live = self.live.load(Ordering::Relaxed);
        // Release: the span's work (its record) happens before a release
        // that reads this store with Acquire.
        self.live.store(live - 1, Ordering::Release);
        // Store `live`, then load `closed`: the light side of the fence
        // pair (`close` has the heavy side).
        #[cfg(not(loom))]
        asymmetric::light();
        #[cfg(loom)]
        self.full_fence();
        // Relaxed: a `true` is acted on in `try_release`, which fences.
        if self.closed.load(Ordering::Relaxed) {
            return self.try_release();
        }
        false
    }

    /// A span ends on any other thread; the caller keeps the handle's
    /// memory alive across the call. True if the caller must now release.
    pub(crate) fn end_elsewhere(&self) -> bool {
        // SeqCst, then a full fence (rare path): this end and a racing
        // close cannot both miss each other.
        self.away.fetch_add(1, Ordering::SeqCst);
        self.full_fence();
        if self.closed.load(Ordering::SeqCst) {
            return self.try_release();
        }
        false
    }

    /// The owner's thread is exiting (its cache goes away): its spans
    /// still alive end on other paths from now on. Owner thread only.
    pub(crate) fn owner_leaves(&self) {
        debug_assert_eq!(self.owner, thread_id());
        // Relaxed: read only by the owner (`on_owner`).
        self.owner_present.store(false, Ordering::Relaxed);
    }

    /// Marks the handle closed: no span starts on it from now on. Follow
    /// with [`asymmetric::heavy`] (once for any number of handles) unless
    /// the caller is the owner, then [`try_release`](Self::try_release).
    pub(crate) fn mark_closed(&self) {
        // SeqCst: the store side of the two fence pairs (with the owner's
        // end, through the heavy fence; with a foreign end's SeqCst
        // read-modify-write and load).
        self.closed.store(true, Ordering::SeqCst);
    }

    /// A full (store-to-load) fence.
    #[inline]
    fn full_fence(&self) {
        #[cfg(not(loom))]
        fence(Ordering::SeqCst);
        // AcqRel: of two such, the later reads the earlier and so sees
        // every store before it.
        #[cfg(loom)]
        self.sync.fetch_add(0, Ordering::AcqRel);
    }

    /// True, exactly once, if the handle is closed and no span is
    /// outstanding: the caller then releases it.
    pub(crate) fn try_release(&self) -> bool {
        // The load side of the fence pairs (see `mark_closed`), and
        // Acquire for the ends' Release stores of `live`.
        self.full_fence();
        let live = self.live.load(Ordering::Acquire);
        let away = self.away.load(Ordering::Acquire);
        // AcqRel: one caller wins; it sees the others' ends.
        live == away && !self.released.swap(true, Ordering::AcqRel)
    }
}

/// A number for the calling thread, unique for the process's life (never
/// reused, unlike addresses of thread-locals), never 0.
pub(crate) fn thread_id() -> u64 {
    use std::cell::Cell;
    // std's atomic even under loom: only uniqueness matters, not the
    // interleavings.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    #[cfg(not(loom))]
    thread_local! {
        // `const` and without drop: readable even while the thread's other
        // thread-locals are being destroyed.
        static ID: Cell<u64> = const { Cell::new(0) };
    }
    #[cfg(loom)]
    loom::thread_local! {
        static ID: Cell<u64> = Cell::new(0);
    }
    ID.with(|id| {
        let mut v = id.get();
        if v == 0 {
            // Relaxed: only uniqueness matters.
            v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            id.set(v);
        }
        v
    })
}

/// The asymmetric fence pair (see the module docs).
pub(crate) mod asymmetric {
    #[cfg(not(loom))]
    use std::sync::OnceLock;

    /// Whether `membarrier` is registered for this process; set once, by
    /// [`init`], before any handle exists (so every `light` and `heavy`
    /// happens after it and sees the same answer).
    #[cfg(not(loom))]
    static ASYMMETRIC: OnceLock<bool> = OnceLock::new();

    /// Registers the process for `membarrier`'s private expedited fence,
    /// if the system has it. Idempotent; call before making a handle.
    pub(crate) fn init() {
        #[cfg(not(loom))]
        ASYMMETRIC.get_or_init(sys::register);
    }

    #[cfg(not(loom))]
    #[inline]
    fn asymmetric() -> bool {
        ASYMMETRIC.get().copied().unwrap_or(false)
    }

    /// The frequent side: a compiler fence where the heavy side can force
    /// a fence on this thread, else a full fence. (`Outstanding` under
    /// loom fences otherwise: see `Outstanding::full_fence`.)
    #[inline]
    pub(crate) fn light() {
        #[cfg(not(loom))]
        if asymmetric() {
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
            return;
        }
        super::fence(super::Ordering::SeqCst);
    }

    /// The rare side: a full fence on every running thread of the process
    /// (and on this one).
    pub(crate) fn heavy() {
        #[cfg(not(loom))]
        if asymmetric() {
            sys::membarrier();
            return;
        }
        super::fence(super::Ordering::SeqCst);
    }

    #[cfg(all(not(loom), target_os = "linux"))]
    mod sys {
        // From <linux/membarrier.h>.
        const CMD_QUERY: libc::c_long = 0;
        const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
        const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

        pub(super) fn register() -> bool {
            // SAFETY: `membarrier` takes integers only and touches no
            // memory of ours.
            let supported = unsafe { libc::syscall(libc::SYS_membarrier, CMD_QUERY, 0, 0) };
            if supported < 0 || supported & CMD_PRIVATE_EXPEDITED == 0 {
                return false;
            }
            // SAFETY: as above.
            let registered = unsafe {
                libc::syscall(libc::SYS_membarrier, CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0)
            };
            registered == 0
        }

        pub(super) fn membarrier() {
            // SAFETY: as in `register`.
            let r = unsafe { libc::syscall(libc::SYS_membarrier, CMD_PRIVATE_EXPEDITED, 0, 0) };
            if r != 0 {
                // Registered, so the kernel documents no failure; carrying
                // on without the fence could release a handle early.
                eprintln!(
                    "otlp-exporter: membarrier failed after registration ({}); aborting",
                    std::io::Error::last_os_error()
                );
                std::process::abort();
            }
        }
    }

    #[cfg(all(not(loom), not(target_os = "linux")))]
    mod sys {
        pub(super) fn register() -> bool {
            false
        }

        pub(super) fn membarrier() {
            unreachable!("never registered off Linux")
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;

    /// Two spans outstanding: the owner ends one, another thread ends the
    /// other, and a third thread closes the handle (as a tracer's drop
    /// does). Exactly one of them releases, and only once both ends are
    /// done.
    #[test]
    fn exactly_one_release_after_the_last_end() {
        loom::model(|| {
            let count = Arc::new(Outstanding::new());
            count.begin();
            count.begin();
            let ended = Arc::new(AtomicUsize::new(0));
            let releases = Arc::new(AtomicUsize::new(0));
            let release = |ended: &AtomicUsize, releases: &AtomicUsize| {
                assert_eq!(ended.load(Ordering::SeqCst), 2, "released early");
                releases.fetch_add(1, Ordering::SeqCst);
            };
            let foreign = {
                let (count, ended, releases) = (count.clone(), ended.clone(), releases.clone());
                loom::thread::spawn(move || {
                    ended.fetch_add(1, Ordering::SeqCst);
                    if count.end_elsewhere() {
                        release(&ended, &releases);
                    }
                })
            };
            let closer = {
                let (count, ended, releases) = (count.clone(), ended.clone(), releases.clone());
                loom::thread::spawn(move || {
                    count.mark_closed();
                    asymmetric::heavy();
                    if count.try_release() {
                        release(&ended, &releases);
                    }
                })
            };
            ended.fetch_add(1, Ordering::SeqCst);
            if count.end_on_owner() {
                release(&ended, &releases);
            }
            foreign.join().unwrap();
            closer.join().unwrap();
            assert_eq!(releases.load(Ordering::SeqCst), 1, "exactly one release");
        });
    }
}
