//! An I/O queue pair: executes sector-addressed commands on whole-block namespace calls.
//!
//! Requests come in 512-byte sectors (virtio-blk's unit) while a namespace stores 4 KiB blocks.
//! Whole blocks go straight to the backend (the fast path); a partial block is read, patched and
//! written back under the namespace's block locks (block_locks.rs) so that concurrent
//! read-modify-writes of one block from several queues do not lose each other's sectors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::controller::ActiveNamespace;
use crate::namespace::NamespaceError;
use crate::status::Status;

/// Bytes per sector, the unit of request addresses and lengths.
pub const SECTOR_BYTES: u64 = 512;

/// Largest data transfer of one command (MDTS), in bytes.
pub const MAX_TRANSFER_BYTES: usize = 1 << 20;

/// One command, addressed in 512-byte sectors.
#[derive(Debug)]
pub enum Command<'a> {
    Read {
        sector: u64,
        buf: &'a mut [u8],
    },
    Write {
        sector: u64,
        data: &'a [u8],
        fua: bool,
    },
    Flush,
    WriteZeroes {
        sector: u64,
        sectors: u64,
    },
    Deallocate {
        sector: u64,
        sectors: u64,
    },
}

/// Per-queue counters, written by the queue's own thread only and summed by the health log.
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub read_commands: AtomicU64,
    pub write_commands: AtomicU64,
    pub media_errors: AtomicU64,
}

#[derive(Debug)]
pub struct IoQueue {
    ns: Arc<ActiveNamespace>,
    counters: Arc<QueueCounters>,
    /// One block, for the partial blocks of read-modify-write and unaligned reads.
    scratch: Vec<u8>,
    /// The blocks of a `read_batch` whose commands are not laid out back to back.
    batch_blocks: Vec<u8>,
}

/// A byte range of the namespace, checked against its capacity.
#[derive(Clone, Copy, Debug)]
struct ByteRange {
    start: u64,
    end: u64,
}

fn fail(e: NamespaceError) -> Status {
    tracing::debug!(error = %e, "namespace command failed");
    e.status()
}

impl IoQueue {
    pub(crate) fn new(ns: Arc<ActiveNamespace>, counters: Arc<QueueCounters>) -> Self {
        let scratch = vec![0u8; ns.block_size()];
        Self {
            ns,
            counters,
            scratch,
            batch_blocks: Vec::new(),
        }
    }

    pub fn namespace(&self) -> &Arc<ActiveNamespace> {
        &self.ns
    }

    /// Runs one command to its status. Never panics on any input.
    pub fn execute(&mut self, command: Command<'_>) -> Status {
        let (result, counter) = match command {
            Command::Read { sector, buf } => {
                (self.read(sector, buf), Some(&self.counters.read_commands))
            }
            Command::Write { sector, data, fua } => (
                self.write(sector, data, fua),
                Some(&self.counters.write_commands),
            ),
            Command::Flush => (self.ns.backend().flush().map_err(fail), None),
            Command::WriteZeroes { sector, sectors } => (
                self.write_zeroes(sector, sectors),
                Some(&self.counters.write_commands),
            ),
            Command::Deallocate { sector, sectors } => (self.deallocate(sector, sectors), None),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(()) => Status::Success,
            Err(status) => {
                if status.is_media_error() {
                    self.counters.media_errors.fetch_add(1, Ordering::Relaxed);
                }
                status
            }
        }
    }

    /// The byte range of `sectors` sectors from `sector`, or the status that refuses it.
    fn range(&self, sector: u64, sectors: u64) -> Result<ByteRange, Status> {
        let start = sector
            .checked_mul(SECTOR_BYTES)
            .ok_or(Status::LbaOutOfRange)?;
        let len = sectors
            .checked_mul(SECTOR_BYTES)
            .ok_or(Status::LbaOutOfRange)?;
        let end = start.checked_add(len).ok_or(Status::LbaOutOfRange)?;
        if end > self.ns.capacity_bytes() {
            return Err(Status::LbaOutOfRange);
        }
        Ok(ByteRange { start, end })
    }

    fn byte_range(&self, sector: u64, len_bytes: usize) -> Result<ByteRange, Status> {
        if !(len_bytes as u64).is_multiple_of(SECTOR_BYTES) || len_bytes > MAX_TRANSFER_BYTES {
            return Err(Status::InvalidField);
        }
        self.range(sector, len_bytes as u64 / SECTOR_BYTES)
    }

    fn writable(&self) -> Result<(), Status> {
        if self.ns.identity().read_only {
            Err(Status::WriteProtected)
        } else {
            Ok(())
        }
    }

    /// (first block, number of blocks) that the byte range touches.
    fn blocks_touched(&self, r: ByteRange) -> (u64, u64) {
        let bs = self.ns.block_size() as u64;
        let first = r.start / bs;
        let last_end = r.end.div_ceil(bs);
        (first, last_end - first)
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Status> {
        let r = self.byte_range(sector, buf.len())?;
        let backend = self.ns.backend().clone();
        let bs = backend.block_size() as u64;
        let mut pos = r.start;
        let mut done = 0usize;
        while pos < r.end {
            let lba = pos / bs;
            let in_block = (pos % bs) as usize;
            let n = (bs - in_block as u64).min(r.end - pos) as usize;
            let out = &mut buf[done..done + n];
            if n as u64 == bs {
                backend.read_block(lba, out).map_err(fail)?;
            } else {
                backend.read_block(lba, &mut self.scratch).map_err(fail)?;
                out.copy_from_slice(&self.scratch[in_block..in_block + n]);
            }
            pos += n as u64;
            done += n;
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8], fua: bool) -> Result<(), Status> {
        let r = self.byte_range(sector, data.len())?;
        self.writable()?;
        let ns = self.ns.clone();
        let backend = ns.backend();
        let bs = backend.block_size() as u64;
        let (first, count) = self.blocks_touched(r);
        // A single-block write carries FUA itself; a longer one writes its blocks first and then
        // makes just them durable (a flush would also pad and sync what other queues wrote).
        let durable_each = fua && count == 1;
        let _held = ns.locks.lock_range(first, count);
        let mut pos = r.start;
        let mut done = 0usize;
        while pos < r.end {
            let lba = pos / bs;
            let in_block = (pos % bs) as usize;
            let n = (bs - in_block as u64).min(r.end - pos) as usize;
            let src = &data[done..done + n];
            if n as u64 == bs {
                backend.write_block(lba, src, durable_each).map_err(fail)?;
            } else {
                backend.read_block(lba, &mut self.scratch).map_err(fail)?;
                self.scratch[in_block..in_block + n].copy_from_slice(src);
                backend
                    .write_block(lba, &self.scratch, durable_each)
                    .map_err(fail)?;
            }
            pos += n as u64;
            done += n;
        }
        if fua && !durable_each {
            backend.make_durable(first, count).map_err(fail)?;
        }
        Ok(())
    }

    /// Runs several write commands (none FUA) in order, as `execute` would one after another, and
    /// puts one status per command into `statuses`. The whole-block writes among them go to the
    /// backend together (`Namespace::write_blocks`: one FTL engine-lock hold) under the block
    /// locks of all their blocks; a write of partial blocks runs alone (read-modify-write), in
    /// its place in the order. A command that fails gets its status and the others still run; a
    /// block written twice keeps the later command's data.
    pub fn write_batch(&mut self, writes: &[(u64, &[u8])], statuses: &mut Vec<Status>) {
        statuses.clear();
        statuses.resize(writes.len(), Status::Success);
        // The whole-block group being gathered: (index into `writes`, first block).
        let mut group: Vec<(usize, u64)> = Vec::with_capacity(writes.len());
        for (i, &(sector, data)) in writes.iter().enumerate() {
            self.counters.write_commands.fetch_add(1, Ordering::Relaxed);
            let checked = self
                .byte_range(sector, data.len())
                .and_then(|r| self.writable().map(|()| r));
            match checked {
                Err(status) => statuses[i] = status,
                Ok(r) if self.whole_blocks(r) => {
                    group.push((i, r.start / self.ns.block_size() as u64));
                }
                Ok(_) => {
                    // Earlier commands first: this one may overlap them.
                    self.write_group(writes, &group, statuses);
                    group.clear();
                    if let Err(status) = self.write(sector, data, false) {
                        statuses[i] = status;
                    }
                }
            }
        }
        self.write_group(writes, &group, statuses);
        for status in statuses.iter() {
            if status.is_media_error() {
                self.counters.media_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs several read commands, as `execute` would one after another, into `out` (command i's
    /// bytes at `reads[i].1`), and puts one status per command into `statuses`. The whole-block
    /// reads go to the backend together (`Namespace::read_blocks`, which overlaps their memory
    /// misses); a read of partial blocks runs alone. A command that fails gets its status and the
    /// others still run. `reads[i]` is (sector, offset in `out`, length in bytes).
    pub fn read_batch(
        &mut self,
        reads: &[(u64, usize, usize)],
        out: &mut [u8],
        statuses: &mut Vec<Status>,
    ) {
        statuses.clear();
        statuses.resize(reads.len(), Status::Success);
        let backend = self.ns.backend().clone();
        let bs = backend.block_size();
        let mut lbas = Vec::with_capacity(reads.len());
        // Per block of `lbas`: the command it belongs to, and where its bytes go in `out`.
        let mut owner = Vec::with_capacity(reads.len());
        let mut group_out = Vec::new();
        for (i, &(sector, at, len)) in reads.iter().enumerate() {
            self.counters.read_commands.fetch_add(1, Ordering::Relaxed);
            let Some(buf) = at.checked_add(len).and_then(|end| out.get_mut(at..end)) else {
                statuses[i] = Status::InvalidField;
                continue;
            };
            match self.byte_range(sector, len) {
                Err(status) => statuses[i] = status,
                Ok(r) if self.whole_blocks(r) => {
                    let first = r.start / bs as u64;
                    for k in 0..(len / bs) {
                        lbas.push(first + k as u64);
                        owner.push(i);
                        group_out.push(at + k * bs);
                    }
                }
                Ok(_) => {
                    if let Err(status) = self.read(sector, buf) {
                        statuses[i] = status;
                    }
                }
            }
        }
        if let Some(&start) = group_out.first() {
            let mut results = Vec::with_capacity(lbas.len());
            // Commands laid out back to back (what the vhost worker does) are read in place;
            // otherwise into one buffer, then copied to their commands.
            let in_place = group_out
                .iter()
                .enumerate()
                .all(|(k, &at)| at == start + k * bs);
            let mut blocks = std::mem::take(&mut self.batch_blocks);
            if in_place {
                backend.read_blocks(
                    &lbas,
                    &mut out[start..start + lbas.len() * bs],
                    &mut results,
                );
            } else {
                blocks.resize(lbas.len() * bs, 0);
                backend.read_blocks(&lbas, &mut blocks, &mut results);
            }
            for (k, (result, &i)) in results.into_iter().zip(&owner).enumerate() {
                match result {
                    Ok(()) if !in_place => out[group_out[k]..group_out[k] + bs]
                        .copy_from_slice(&blocks[k * bs..(k + 1) * bs]),
                    Ok(()) => {}
                    // A command's first failing block gives its status.
                    Err(e) if statuses[i].is_success() => statuses[i] = fail(e),
                    Err(_) => {}
                }
            }
            self.batch_blocks = blocks;
        }
        for status in statuses.iter() {
            if status.is_media_error() {
                self.counters.media_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether a checked range starts and ends on block boundaries (and is not empty).
    fn whole_blocks(&self, r: ByteRange) -> bool {
        let bs = self.ns.block_size() as u64;
        r.start < r.end && r.start.is_multiple_of(bs) && r.end.is_multiple_of(bs)
    }

    /// Writes the whole-block commands `group` (checked, in order) with one backend call.
    fn write_group(
        &self,
        writes: &[(u64, &[u8])],
        group: &[(usize, u64)],
        statuses: &mut [Status],
    ) {
        if group.is_empty() {
            return;
        }
        let ns = self.ns.clone();
        let bs = ns.block_size();
        let mut ranges = Vec::with_capacity(group.len());
        let mut blocks: Vec<(u64, &[u8])> = Vec::new();
        // The command each block belongs to, to give its status back.
        let mut owner = Vec::new();
        for &(i, first) in group {
            let data = writes[i].1;
            ranges.push((first, (data.len() / bs) as u64));
            for (k, chunk) in data.chunks_exact(bs).enumerate() {
                blocks.push((first + k as u64, chunk));
                owner.push(i);
            }
        }
        let _held = ns.locks.lock_ranges(&ranges);
        let mut results = Vec::with_capacity(blocks.len());
        ns.backend().write_blocks(&blocks, &mut results);
        for (result, &i) in results.into_iter().zip(&owner) {
            // A command's first failing block gives its status.
            if let Err(e) = result
                && statuses[i].is_success()
            {
                statuses[i] = fail(e);
            }
        }
    }

    /// Makes the completed writes, write-zeroes and deallocations of the blocks that `sectors`
    /// sectors from `sector` touch durable: what a write-through cache (virtio CONFIG_WCE = 0)
    /// owes before completing a write-zeroes or discard. Cheaper than `Command::Flush`.
    pub fn make_durable(&mut self, sector: u64, sectors: u64) -> Status {
        let result = self.range(sector, sectors).and_then(|r| {
            if r.start == r.end {
                return Ok(());
            }
            let (first, count) = self.blocks_touched(r);
            self.ns.backend().make_durable(first, count).map_err(fail)
        });
        match result {
            Ok(()) => Status::Success,
            Err(status) => {
                if status.is_media_error() {
                    self.counters.media_errors.fetch_add(1, Ordering::Relaxed);
                }
                status
            }
        }
    }

    /// Zeroes the bytes `in_block..in_block + n` of block `lba` by read-modify-write.
    fn zero_partial(&mut self, lba: u64, in_block: usize, n: usize) -> Result<(), Status> {
        let backend = self.ns.backend().clone();
        backend.read_block(lba, &mut self.scratch).map_err(fail)?;
        self.scratch[in_block..in_block + n].fill(0);
        backend.write_block(lba, &self.scratch, false).map_err(fail)
    }

    fn write_zeroes(&mut self, sector: u64, sectors: u64) -> Result<(), Status> {
        let r = self.range(sector, sectors)?;
        self.writable()?;
        if r.start == r.end {
            return Ok(());
        }
        let ns = self.ns.clone();
        let bs = ns.block_size() as u64;
        let (first, count) = self.blocks_touched(r);
        let _held = ns.locks.lock_range(first, count);
        let head = r.start % bs;
        let full_start = r.start.div_ceil(bs) * bs;
        let full_end = (r.end / bs) * bs;
        if full_start >= full_end {
            // Within one block, or across one boundary with no whole block between.
            let mut pos = r.start;
            while pos < r.end {
                let n = (bs - pos % bs).min(r.end - pos);
                self.zero_partial(pos / bs, (pos % bs) as usize, n as usize)?;
                pos += n;
            }
            return Ok(());
        }
        if head != 0 {
            self.zero_partial(r.start / bs, head as usize, (bs - head) as usize)?;
        }
        ns.backend()
            .write_zeroes(full_start / bs, (full_end - full_start) / bs)
            .map_err(fail)?;
        if r.end > full_end {
            self.zero_partial(full_end / bs, 0, (r.end - full_end) as usize)?;
        }
        Ok(())
    }

    /// Deallocates the whole blocks inside the range; partial blocks at its edges keep their
    /// data (deallocate is advisory in NVMe and virtio alike).
    fn deallocate(&mut self, sector: u64, sectors: u64) -> Result<(), Status> {
        let r = self.range(sector, sectors)?;
        self.writable()?;
        let bs = self.ns.block_size() as u64;
        let first = r.start.div_ceil(bs);
        let end = r.end / bs;
        if first >= end {
            return Ok(());
        }
        let ns = self.ns.clone();
        let _held = ns.locks.lock_range(first, end - first);
        ns.backend().deallocate(first, end - first).map_err(fail)
    }
}
