//! A hint to the CPU to start loading a page's first cache lines, so that the memory misses of
//! several reads overlap instead of following one another (`Ftl::read_many`).
//!
//! Why: a read of a mapped page out of a large `MemNand` (4 GiB in `bench ftl`'s default geometry)
//! misses the cache and the TLB for its map entry, its data and its OOB, one after the other; the
//! copy itself streams once started. Issuing the first lines of a batch of pages before copying any
//! of them lets the misses overlap: in a stand-alone test on this machine (random 4 KiB copies out
//! of 4 GiB), 1.63 M copies/s one at a time, 2.4-3.1 M/s in batches of 4-16 with the first line of
//! each prefetched. Prefetching all 64 lines of each page gained less (1.7 M/s): the line fill
//! buffers are few, and the hardware prefetcher follows a copy that has started anyway.

#![allow(unsafe_code)]

/// Cache lines of a 4 KiB page to prefetch: the hardware prefetcher streams the rest.
pub const PREFETCH_LINES: usize = 2;
const LINE_BYTES: usize = 64;

/// Hints the CPU to load `lines` cache lines from `addr` (an address only: nothing is read, and
/// an address outside any mapping is harmless).
#[inline]
pub fn prefetch(addr: usize, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..lines {
        let p = addr.wrapping_add(line * LINE_BYTES) as *const i8;
        // SAFETY: PREFETCHT0 is a hint: it never faults (an unmapped or invalid address is
        // dropped), never reads architecturally and changes no state the program can see; it only
        // needs SSE, which every x86_64 CPU has (the target's baseline).
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, lines);
}
