//! The per-queue worker: pops descriptor chains, runs them on the queue's `IoQueue`, writes the
//! status, fills the used ring and notifies the guest; then polls the ring briefly before
//! sleeping again. Each virtqueue has its own worker, locked only by its own thread.

use std::num::Wrapping;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;
use vhost_user_backend::{VringMutex, VringStateMutGuard, VringT};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use super::request::{
    self, DISCARD_SEGMENT_BYTES, Desc, ID_BYTES, MAX_DISCARD_SEGMENTS, Request, RequestError,
    RequestKind,
};
use crate::queue::{Command, IoQueue, MAX_TRANSFER_BYTES, SECTOR_BYTES};
use crate::status::Status;

pub type GuestMemory = GuestMemoryMmap<()>;
pub type AtomicMemory = GuestMemoryAtomic<GuestMemory>;
pub type Vring = VringMutex<AtomicMemory>;

/// Chains popped in one pass at most before the used ring is published and the guest notified,
/// so a guest that keeps the ring full cannot starve its own completions.
const MAX_CHAINS_PER_PASS: usize = 1024;

/// Longest a pass holds completions back from the driver. A pass of 32 queued 4 KiB writes takes
/// about half a millisecond; signalling only at its end left the driver waiting until then, and
/// then the worker waiting (or asleep) while the driver woke and refilled the ring (the worker was
/// busy about 70% of the time at QD32). Signalling during a long pass lets the driver refill the
/// ring while the worker goes on. Not more often: each signal wakes the driver, and at 50 us a
/// pass of 32 reads (about 150 us) cost some 10% more CPU per read, client included, on a
/// two-core machine where the driver and the worker share the cores.
const SIGNAL_INTERVAL: Duration = Duration::from_micros(200);

/// Writes staged at most before they are applied as one batch, and their bytes at most. A batch
/// completes together, so it is kept short: 16 writes of 4 KiB take about a quarter of a
/// millisecond.
const MAX_BATCH_WRITES: usize = 16;
const MAX_BATCH_BYTES: usize = 256 << 10;
/// Reads staged at most before they run as one batch (`IoQueue::read_batch`), so the FTL overlaps
/// their memory misses (`Ftl::read_many` looks up 16 pages at once); their bytes at most are
/// `MAX_BATCH_BYTES`. Reads complete about 2 us apart, so a batch holds the first back some 30 us.
const MAX_BATCH_READS: usize = 16;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("virtqueue: {0}")]
    Queue(#[from] virtio_queue::Error),
    #[error("notifying the guest: {0}")]
    Notify(std::io::Error),
}

/// Counts what the worker refused, for logs and tests.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub rejected_requests: u64,
    pub completed_requests: u64,
}

#[derive(Debug)]
pub struct QueueWorker {
    io: IoQueue,
    serial: [u8; ID_BYTES],
    /// Write-back cache mode (CONFIG_WCE); off means every write is FUA. Set by the frontend.
    writeback: Arc<AtomicBool>,
    descs: Vec<Desc>,
    /// The data of one request, gathered from or scattered to guest buffers.
    buf: Vec<u8>,
    /// Whole-block writes popped in this pass and not yet applied, their data in `batch_buf`.
    staged: Vec<Staged>,
    batch_buf: Vec<u8>,
    staged_bytes: usize,
    /// Statuses of the last batch (kept to reuse the allocation).
    statuses: Vec<Status>,
    /// Whole-block reads popped in this pass and not yet run; their data goes to `read_buf`.
    staged_reads: Vec<StagedRead>,
    read_buf: Vec<u8>,
    read_bytes: usize,
    /// (sector, offset in `read_buf`, length) of the staged reads, for `IoQueue::read_batch`.
    read_specs: Vec<(u64, usize, usize)>,
    poll_max: Duration,
    /// Current polling window: grows when polling finds work, shrinks when it does not.
    poll_window: Duration,
    pub counters: WorkerCounters,
}

/// The 16 header bytes at `addr`, or None if they are not all in guest memory.
pub fn read_header(memory: &GuestMemory, addr: u64) -> Option<[u8; 16]> {
    let mut h = [0u8; 16];
    memory
        .read_slice(&mut h, GuestAddress(addr))
        .ok()
        .map(|()| h)
}

fn virtio_status(s: Status) -> u8 {
    match s {
        Status::Success => VIRTIO_BLK_S_OK as u8,
        Status::InvalidOpcode => VIRTIO_BLK_S_UNSUPP as u8,
        _ => VIRTIO_BLK_S_IOERR as u8,
    }
}

/// When to tell the driver about used chains during a pass (see `SIGNAL_INTERVAL`).
struct Signal {
    pending: bool,
    last: Instant,
}

impl Signal {
    fn new() -> Self {
        Self {
            pending: false,
            last: Instant::now(),
        }
    }

    /// Chains were added to the used ring: signal if the last signal is old enough.
    fn used(
        &mut self,
        state: &mut <Vring as VringStateMutGuard<'_, AtomicMemory>>::G,
    ) -> Result<(), WorkerError> {
        self.pending = true;
        let now = Instant::now();
        if now.duration_since(self.last) >= SIGNAL_INTERVAL {
            self.last = now;
            self.pending = false;
            notify(state)?;
        }
        Ok(())
    }

    /// The pass ends: whatever was used and not yet signalled is.
    fn end_of_pass(
        &mut self,
        state: &mut <Vring as VringStateMutGuard<'_, AtomicMemory>>::G,
    ) -> Result<(), WorkerError> {
        if self.pending {
            self.pending = false;
            notify(state)?;
        }
        Ok(())
    }
}

/// Tells the driver about the chains used since the last call, if it asked to be told (with
/// EVENT_IDX, when its used_event falls among them).
fn notify(
    state: &mut <Vring as VringStateMutGuard<'_, AtomicMemory>>::G,
) -> Result<(), WorkerError> {
    if state.needs_notification()? {
        state.signal_used_queue().map_err(WorkerError::Notify)?;
    }
    Ok(())
}

/// A write waiting in the batch: its chain, status byte and data in `batch_buf`.
#[derive(Debug)]
struct Staged {
    head: u16,
    status_addr: u64,
    sector: u64,
    at: usize,
    len: usize,
}

/// A read waiting in the batch: its chain, and where its data lands in `read_buf`.
#[derive(Debug)]
struct StagedRead {
    head: u16,
    request: Request,
    at: usize,
}

/// Copies `bytes` into the request's writable buffers, in order; returns the bytes copied.
fn scatter_from(memory: &GuestMemory, r: &Request, bytes: &[u8]) -> Result<u32, RequestError> {
    let mut at = 0usize;
    for d in &r.data {
        if at >= bytes.len() {
            break;
        }
        let n = (d.len as usize).min(bytes.len() - at);
        memory
            .write_slice(&bytes[at..at + n], GuestAddress(d.addr))
            .map_err(|_| RequestError::DataUnreadable)?;
        at += n;
    }
    Ok(at as u32)
}

/// Copies the request's readable buffers into `out` (exactly `r.data_len` bytes long).
fn gather_into(memory: &GuestMemory, r: &Request, out: &mut [u8]) -> Result<(), RequestError> {
    let mut at = 0usize;
    for d in &r.data {
        let len = d.len as usize;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= out.len())
            .ok_or(RequestError::DataTooLong(r.data_len.into()))?;
        memory
            .read_slice(&mut out[at..end], GuestAddress(d.addr))
            .map_err(|_| RequestError::DataUnreadable)?;
        at = end;
    }
    Ok(())
}

impl QueueWorker {
    pub fn new(io: IoQueue, writeback: Arc<AtomicBool>, poll: Duration) -> Self {
        let mut serial = [0u8; ID_BYTES];
        for (o, c) in serial
            .iter_mut()
            .zip(io.namespace().identity().serial.bytes())
        {
            *o = c;
        }
        Self {
            io,
            serial,
            writeback,
            descs: Vec::new(),
            buf: vec![0u8; MAX_TRANSFER_BYTES],
            staged: Vec::with_capacity(MAX_BATCH_WRITES),
            batch_buf: vec![0u8; MAX_BATCH_BYTES],
            staged_bytes: 0,
            statuses: Vec::with_capacity(MAX_BATCH_WRITES),
            staged_reads: Vec::with_capacity(MAX_BATCH_READS),
            read_buf: vec![0u8; MAX_BATCH_BYTES],
            read_bytes: 0,
            read_specs: Vec::with_capacity(MAX_BATCH_READS),
            poll_max: poll,
            poll_window: poll,
            counters: WorkerCounters::default(),
        }
    }

    /// Serves the queue after a kick until it is empty and the polling window has passed.
    pub fn process(&mut self, vring: &Vring, mem: &AtomicMemory) -> Result<(), WorkerError> {
        let mut state = vring.get_mut();
        let event_idx = state.get_queue().event_idx_enabled();
        loop {
            state.disable_notification()?;
            self.drain(&mut state, mem)?;
            if self.poll(&mut state, mem)? {
                continue;
            }
            // Re-arm notifications; a request that slipped in meanwhile is served now.
            if !state.enable_notification()? || !event_idx {
                break;
            }
        }
        Ok(())
    }

    /// Busy-polls the avail ring for up to the current window; true if a request arrived.
    fn poll(
        &mut self,
        state: &mut <Vring as vhost_user_backend::VringStateMutGuard<'_, AtomicMemory>>::G,
        mem: &AtomicMemory,
    ) -> Result<bool, WorkerError> {
        if self.poll_window.is_zero() {
            return Ok(false);
        }
        let deadline = Instant::now() + self.poll_window;
        let guard = mem.memory();
        loop {
            let queue = state.get_queue();
            let avail = queue.avail_idx(guard.deref(), Ordering::Acquire)?;
            if avail != Wrapping(queue.next_avail()) {
                self.poll_window = (self.poll_window * 2).min(self.poll_max);
                return Ok(true);
            }
            if Instant::now() >= deadline {
                self.poll_window = (self.poll_window / 2).max(self.poll_max / 8);
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }

    fn drain(
        &mut self,
        state: &mut <Vring as VringStateMutGuard<'_, AtomicMemory>>::G,
        mem: &AtomicMemory,
    ) -> Result<(), WorkerError> {
        let guard = mem.memory();
        let memory: &GuestMemory = guard.deref();
        let mut done = 0usize;
        let mut signal = Signal::new();
        // Left over only if the ring broke in the last pass: those chains were never returned.
        self.staged.clear();
        self.staged_bytes = 0;
        self.staged_reads.clear();
        self.read_bytes = 0;
        while done < MAX_CHAINS_PER_PASS {
            let Some(chain) = state.get_queue_mut().pop_descriptor_chain(memory) else {
                break;
            };
            let head = chain.head_index();
            self.descs.clear();
            self.descs.extend(chain.map(|d| Desc {
                addr: d.addr().0,
                len: d.len(),
                device_writable: d.is_write_only(),
            }));
            done += 1;
            let request = match request::parse(&self.descs, |addr| read_header(memory, addr)) {
                Ok(r) => r,
                Err(rejected) => {
                    // Chains are returned in the order they were popped, so the staged requests
                    // first (guests do not rely on it, but a ring read in order is simpler to
                    // reason about).
                    self.apply_reads(memory, state, &mut signal)?;
                    self.apply_staged(memory, state, &mut signal)?;
                    let used_len = self.reject(memory, &rejected);
                    state.add_used(head, used_len)?;
                    signal.used(state)?;
                    continue;
                }
            };
            if self.batchable_read(&request) {
                // After the writes popped before it, which it may read.
                self.apply_staged(memory, state, &mut signal)?;
                if self.staged_reads.len() == MAX_BATCH_READS
                    || self.read_bytes + request.data_len as usize > MAX_BATCH_BYTES
                {
                    self.apply_reads(memory, state, &mut signal)?;
                }
                let at = self.read_bytes;
                self.read_bytes += request.data_len as usize;
                self.staged_reads.push(StagedRead { head, request, at });
                continue;
            }
            if self.batchable_write(&request) {
                // Reads popped before a write see the data from before it.
                self.apply_reads(memory, state, &mut signal)?;
                if self.staged.len() == MAX_BATCH_WRITES
                    || self.staged_bytes + request.data_len as usize > MAX_BATCH_BYTES
                {
                    self.apply_staged(memory, state, &mut signal)?;
                }
                self.stage(memory, state, &mut signal, head, request)?;
                continue;
            }
            // Anything else may depend on the staged requests (a read of a block a staged write
            // changes, a flush): they are run first.
            self.apply_reads(memory, state, &mut signal)?;
            self.apply_staged(memory, state, &mut signal)?;
            let used_len = self.handle(memory, &request);
            state.add_used(head, used_len)?;
            signal.used(state)?;
        }
        self.apply_reads(memory, state, &mut signal)?;
        self.apply_staged(memory, state, &mut signal)?;
        signal.end_of_pass(state)
    }

    /// A write that can wait in the batch: write-back cache mode (a FUA write completes alone),
    /// whole blocks, and small enough to stage.
    fn batchable_write(&self, r: &Request) -> bool {
        r.kind == RequestKind::Write && self.writeback.load(Ordering::Relaxed) && self.stageable(r)
    }

    /// A read that can wait in the batch: whole blocks, small enough to stage.
    fn batchable_read(&self, r: &Request) -> bool {
        r.kind == RequestKind::Read && self.stageable(r)
    }

    /// Whole blocks at a block boundary, and no more than a batch buffer holds.
    fn stageable(&self, r: &Request) -> bool {
        let block_bytes = self.io.namespace().block_size() as u64;
        r.data_len > 0
            && u64::from(r.data_len).is_multiple_of(block_bytes)
            && r.sector
                .checked_mul(SECTOR_BYTES)
                .is_some_and(|b| b.is_multiple_of(block_bytes))
            && r.data_len as usize <= MAX_BATCH_BYTES
    }

    /// Runs the staged reads as one batch, copies each one's data into its guest buffers, writes
    /// the statuses and returns the chains, in the order they were popped.
    fn apply_reads(
        &mut self,
        memory: &GuestMemory,
        state: &mut <Vring as VringStateMutGuard<'_, AtomicMemory>>::G,
        signal: &mut Signal,
    ) -> Result<(), WorkerError> {
        if self.staged_reads.is_empty() {
            return Ok(());
        }
        self.read_specs.clear();
        self.read_specs.extend(
            self.staged_reads
                .iter()
                .map(|s| (s.request.sector, s.at, s.request.data_len as usize)),
        );
        let mut statuses = std::mem::take(&mut self.statuses);
        self.io.read_batch(
            &self.read_specs,
            &mut self.read_buf[..self.read_bytes],
            &mut statuses,
        );
        // Emptied before the chains are returned: if the ring breaks meanwhile, nothing is
        // returned twice.
        let mut staged = std::mem::take(&mut self.staged_reads);
        self.read_bytes = 0;
        let mut result = Ok(());
        for (s, &status) in staged.iter().zip(&statuses) {
            self.counters.completed_requests += 1;
            let (status, written) = if status.is_success() {
                let bytes = &self.read_buf[s.at..s.at + s.request.data_len as usize];
                match scatter_from(memory, &s.request, bytes) {
                    Ok(written) => (VIRTIO_BLK_S_OK as u8, written),
                    Err(e) => {
                        self.counters.rejected_requests += 1;
                        tracing::debug!(error = %e, "rejected a guest request");
                        (e.virtio_status(), 0)
                    }
                }
            } else {
                (virtio_status(status), 0)
            };
            let used_len = written + self.put_status(memory, s.request.status_addr, status);
            result = state.add_used(s.head, used_len);
            if result.is_err() {
                break;
            }
        }
        staged.clear();
        self.staged_reads = staged;
        self.statuses = statuses;
        result?;
        signal.used(state)
    }

    /// Copies a batchable write's data into the batch buffer and queues it; a write whose
    /// buffers are not all in guest memory completes at once with IOERR.
    fn stage(
        &mut self,
        memory: &GuestMemory,
        state: &mut <Vring as VringStateMutGuard<'_, AtomicMemory>>::G,
        signal: &mut Signal,
        head: u16,
        r: Request,
    ) -> Result<(), WorkerError> {
        let at = self.staged_bytes;
        let len = r.data_len as usize;
        let Some(out) = self.batch_buf.get_mut(at..at + len) else {
            // Not reached: `batchable_write` and the batch limit keep it in the buffer.
            self.apply_staged(memory, state, signal)?;
            let used_len = self.put_status(memory, r.status_addr, VIRTIO_BLK_S_IOERR as u8);
            state.add_used(head, used_len)?;
            return signal.used(state);
        };
        if let Err(e) = gather_into(memory, &r, out) {
            self.apply_staged(memory, state, signal)?;
            self.counters.rejected_requests += 1;
            self.counters.completed_requests += 1;
            tracing::debug!(error = %e, "rejected a guest request");
            let used_len = self.put_status(memory, r.status_addr, e.virtio_status());
            state.add_used(head, used_len)?;
            return signal.used(state);
        }
        self.staged_bytes += len;
        self.staged.push(Staged {
            head,
            status_addr: r.status_addr,
            sector: r.sector,
            at,
            len,
        });
        Ok(())
    }

    /// Applies the staged writes (one batch for the namespace, in the order they were popped),
    /// writes their statuses and returns their chains.
    fn apply_staged(
        &mut self,
        memory: &GuestMemory,
        state: &mut <Vring as VringStateMutGuard<'_, AtomicMemory>>::G,
        signal: &mut Signal,
    ) -> Result<(), WorkerError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let writes: Vec<(u64, &[u8])> = self
            .staged
            .iter()
            .map(|s| (s.sector, &self.batch_buf[s.at..s.at + s.len]))
            .collect();
        let mut statuses = std::mem::take(&mut self.statuses);
        self.io.write_batch(&writes, &mut statuses);
        drop(writes);
        // Emptied before the chains are returned: if the ring breaks meanwhile, nothing is
        // applied twice.
        let mut staged = std::mem::take(&mut self.staged);
        self.staged_bytes = 0;
        self.counters.completed_requests += staged.len() as u64;
        let mut result = Ok(());
        for (s, &status) in staged.iter().zip(&statuses) {
            let used_len = self.put_status(memory, s.status_addr, virtio_status(status));
            result = state.add_used(s.head, used_len);
            if result.is_err() {
                break;
            }
        }
        staged.clear();
        self.staged = staged;
        self.statuses = statuses;
        result?;
        signal.used(state)
    }

    /// Writes the status of a chain the parser refused; returns the bytes written.
    fn reject(&mut self, memory: &GuestMemory, rejected: &request::Rejected) -> u32 {
        self.counters.rejected_requests += 1;
        tracing::debug!(error = %rejected.error, "rejected a guest request");
        match rejected.status_addr {
            Some(addr) => self.put_status(memory, addr, rejected.error.virtio_status()),
            // No sound status buffer: return the chain with nothing written.
            None => 0,
        }
    }

    /// Runs one parsed request to its status; returns the bytes written into device-writable
    /// buffers.
    fn handle(&mut self, memory: &GuestMemory, request: &Request) -> u32 {
        let (status, written) = match self.execute(memory, request) {
            Ok(pair) => pair,
            Err(e) => {
                self.counters.rejected_requests += 1;
                tracing::debug!(error = %e, "rejected a guest request");
                (e.virtio_status(), 0)
            }
        };
        self.counters.completed_requests += 1;
        written + self.put_status(memory, request.status_addr, status)
    }

    fn put_status(&self, memory: &GuestMemory, addr: u64, status: u8) -> u32 {
        match memory.write_slice(&[status], GuestAddress(addr)) {
            Ok(()) => 1,
            Err(_) => 0,
        }
    }

    /// Copies the request's readable buffers into `self.buf` (at most `limit` bytes).
    fn gather(
        &mut self,
        memory: &GuestMemory,
        r: &Request,
        limit: usize,
    ) -> Result<usize, RequestError> {
        let mut at = 0usize;
        for d in &r.data {
            let len = d.len as usize;
            let end = at
                .checked_add(len)
                .filter(|&e| e <= limit.min(self.buf.len()));
            let end = end.ok_or(RequestError::DataTooLong(r.data_len.into()))?;
            memory
                .read_slice(&mut self.buf[at..end], GuestAddress(d.addr))
                .map_err(|_| RequestError::DataUnreadable)?;
            at = end;
        }
        Ok(at)
    }

    /// Copies `self.buf[..len]` into the request's writable buffers, in order.
    fn scatter(&self, memory: &GuestMemory, r: &Request, len: usize) -> Result<u32, RequestError> {
        scatter_from(memory, r, &self.buf[..len])
    }

    /// Returns (virtio status, data bytes written into guest buffers).
    fn execute(&mut self, memory: &GuestMemory, r: &Request) -> Result<(u8, u32), RequestError> {
        let len = r.data_len as usize;
        match r.kind {
            RequestKind::Read => {
                let buf = self
                    .buf
                    .get_mut(..len)
                    .ok_or(RequestError::DataTooLong(len as u64))?;
                let status = self.io.execute(Command::Read {
                    sector: r.sector,
                    buf,
                });
                if !status.is_success() {
                    return Ok((virtio_status(status), 0));
                }
                let written = self.scatter(memory, r, len)?;
                Ok((VIRTIO_BLK_S_OK as u8, written))
            }
            RequestKind::Write => {
                let n = self.gather(memory, r, MAX_TRANSFER_BYTES)?;
                let fua = !self.writeback.load(Ordering::Relaxed);
                let status = self.io.execute(Command::Write {
                    sector: r.sector,
                    data: &self.buf[..n],
                    fua,
                });
                Ok((virtio_status(status), 0))
            }
            RequestKind::Flush => Ok((virtio_status(self.io.execute(Command::Flush)), 0)),
            RequestKind::GetId => {
                let n = len.min(ID_BYTES);
                self.buf[..n].copy_from_slice(&self.serial[..n]);
                let written = self.scatter(memory, r, n)?;
                Ok((VIRTIO_BLK_S_OK as u8, written))
            }
            RequestKind::Discard | RequestKind::WriteZeroes => {
                let limit = MAX_DISCARD_SEGMENTS * DISCARD_SEGMENT_BYTES as usize;
                let n = self.gather(memory, r, limit)?;
                let zeroes = r.kind == RequestKind::WriteZeroes;
                let ranges = request::parse_segments(&self.buf[..n], zeroes)?;
                for &range in &ranges {
                    let command = if zeroes {
                        Command::WriteZeroes {
                            sector: range.sector,
                            sectors: range.sectors,
                        }
                    } else {
                        Command::Deallocate {
                            sector: range.sector,
                            sectors: range.sectors,
                        }
                    };
                    let status = self.io.execute(command);
                    if !status.is_success() {
                        return Ok((virtio_status(status), 0));
                    }
                }
                // Write-through: like a write, the zeroes (or the forgetting) must survive a power
                // cut once completed.
                if !self.writeback.load(Ordering::Relaxed) {
                    for range in &ranges {
                        let status = self.io.make_durable(range.sector, range.sectors);
                        if !status.is_success() {
                            return Ok((virtio_status(status), 0));
                        }
                    }
                }
                Ok((VIRTIO_BLK_S_OK as u8, 0))
            }
        }
    }
}
