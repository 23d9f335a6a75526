//! Write prefetch of the slots a producer is about to fill.
//!
//! A slot is written by its producer and then read by the consumer on
//! another core, so when the producer comes back to it (the next time
//! round its chunk, or a chunk back from the pool), its cache lines sit in
//! the consumer's cache, and each store of the new item must first take
//! its line back (a read-for-ownership, about 100 ns across cores on the
//! 2-core VM). The stores wait in the store buffer meanwhile, and the next
//! locked instruction of the thread (any reference count) or any load that
//! cannot be forwarded from a store waits for all of them: in otlp-exporter's
//! record loop that wait was a fifth of the recording thread's time.
//!
//! So each push asks for the lines of the slot [`AHEAD`] positions on, for
//! writing (`prefetchw`: the line arrives exclusive, ready to be written),
//! while the thread does other work. `prefetcht0`, which is what LLVM emits
//! for a write hint on x86-64 unless the (unstable) `prfchw` target
//! feature is enabled, fetches the line shared and measured slower than no
//! prefetch at all; hence the instruction is written out here, behind a
//! CPUID check made once per process. Other targets do not prefetch.
//!
//! A prefetch is a hint: it neither reads nor writes the memory as far as
//! the program is concerned, so it cannot race with the consumer (the slots
//! prefetched are free ones, in any case) and has no effect on what is
//! pushed or popped. Under loom it is compiled out.

/// How many slots ahead of the one being written the producer prefetches.
/// Measured with otlp-exporter's `record_loop` (256-byte slots, one span
/// about 250 ns) on the 2-core VM: 1, 2, 3, 4 and 8 ahead gave 214, 180,
/// 211, 189 and 233 ns per span against 282-306 ns without (best of 4
/// rounds, the builds alternating); 2 it is.
pub(crate) const AHEAD: u64 = 2;

/// At most this many bytes of a slot are prefetched (four cache lines):
/// larger items are rare, and their first lines are the ones written
/// first.
#[cfg(all(not(loom), target_arch = "x86_64"))]
const MAX_BYTES: usize = 256;

/// Whether this CPU has `prefetchw` (`CPUID.80000001H:ECX.PRFCHW`, bit 8),
/// asked once per process.
#[cfg(all(not(loom), target_arch = "x86_64"))]
pub(crate) fn supported() -> bool {
    use std::sync::OnceLock;
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // Leaf 0x8000_0000 says which extended leaves the CPU has.
        let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
        max >= 0x8000_0001 && core::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0
    })
}

/// No write prefetch on this target (or under loom).
#[cfg(not(all(not(loom), target_arch = "x86_64")))]
pub(crate) fn supported() -> bool {
    false
}

/// Asks for the cache lines of the `bytes` bytes at `p` (at most
/// [`MAX_BYTES`]) for writing. Only call it where [`supported`] said yes.
#[cfg(all(not(loom), target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn for_write(p: *const u8, bytes: usize) {
    let bytes = bytes.min(MAX_BYTES);
    let mut offset = 0;
    while offset < bytes {
        // SAFETY: `prefetchw` is a hint: it reads and writes no memory of
        // the program (it cannot fault, even on an address that is not
        // mapped), and the CPU has it (`supported`).
        unsafe {
            core::arch::asm!(
                "prefetchw [{}]",
                in(reg) p.wrapping_add(offset),
                options(nostack, preserves_flags, readonly),
            );
        }
        offset += 64;
    }
}

/// No write prefetch on this target (or under loom).
#[cfg(not(all(not(loom), target_arch = "x86_64")))]
#[inline(always)]
pub(crate) fn for_write(_p: *const u8, _bytes: usize) {}
