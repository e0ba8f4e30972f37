//! The only unsafe code of the client: reading completions libblkio filled in, and viewing the
//! mapped buffer region as a byte slice.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use blkio::{Blkioq, Completion, MemoryRegion};

/// Reaps at least `min` completions from `queue` (blocking), returning (user_data, ret) pairs.
pub fn reap(
    queue: &mut Blkioq,
    min: usize,
    out: &mut Vec<(usize, i32)>,
) -> Result<(), blkio::Error> {
    let mut slots: [MaybeUninit<Completion>; 64] = [const { MaybeUninit::uninit() }; 64];
    let n = queue.do_io(&mut slots, min.min(64), None, None)?;
    for slot in slots.iter().take(n) {
        // SAFETY: do_io initialised the first `n` entries of `slots` (its documented contract).
        let c = unsafe { slot.assume_init_read() };
        out.push((c.user_data, c.ret));
    }
    Ok(())
}

/// The bytes of a mapped region.
pub fn region_bytes(region: &MemoryRegion) -> &[u8] {
    // SAFETY: `region` was allocated by libblkio (a shared memfd mapping of `len` bytes at `addr`)
    // and stays mapped while the owning `Client` lives, which outlives the borrow of `region`.
    // The client only calls this with no request in flight, so the device does not write it now.
    unsafe { std::slice::from_raw_parts(region.addr as *const u8, region.len) }
}

/// The bytes of a mapped region, writable.
pub fn region_bytes_mut(region: &mut MemoryRegion) -> &mut [u8] {
    // SAFETY: as in `region_bytes`; the `&mut` borrow of the region handle is the only access.
    unsafe { std::slice::from_raw_parts_mut(region.addr as *mut u8, region.len) }
}

/// The `len` bytes at `addr` of a mapped region: the buffer slice of the queue `owner`, borrowed
/// for as long as the queue is.
pub fn queue_buffer(owner: &mut Blkioq, addr: usize, len: usize) -> &mut [u8] {
    let _ = owner;
    // SAFETY: `addr..addr + len` is the slice of a live libblkio region that one `QueueHandle`
    // owns alone (handles get disjoint slices, checked when they are made, and the region lives
    // as long as any handle). The slice borrows the handle's queue mutably, so no second view of
    // these bytes exists meanwhile, and the queue has no request in flight while it is borrowed,
    // so the device does not write them either.
    unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
}
