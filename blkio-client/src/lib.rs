//! A synchronous and a queue-depth client over libblkio's `virtio-blk-vhost-user` driver.
//!
//! libblkio is an independent implementation of the virtio-blk driver side, so a test that goes
//! through it checks the backend as a real frontend sees it (feature negotiation, memory tables,
//! rings, config space).

mod queues;
mod raw;

pub use queues::{MAX_QUEUE_BUFFER_BYTES, MAX_QUEUES, QueueHandle, connect_queues};

use std::path::Path;

use blkio::{Blkio, Blkioq, MemoryRegion, ReqFlags};
use thiserror::Error;

/// Bytes of the buffer region shared with the device.
pub const REGION_BYTES: usize = 8 << 20;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("libblkio: {0}")]
    Blkio(#[from] blkio::Error),
    #[error("request failed with errno {0}")]
    Request(i32),
    #[error("buffer of {0} bytes does not fit the {REGION_BYTES}-byte region")]
    TooLarge(usize),
    #[error("no queue {0}")]
    NoQueue(usize),
}

/// A fixed-depth load for `Client::run_depth`.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub write: bool,
    pub block_bytes: usize,
    pub depth: usize,
    pub total: u64,
}

pub struct Client {
    blkio: Blkio,
    queues: Vec<Blkioq>,
    region: MemoryRegion,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("queues", &self.queues.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the vhost-user-blk socket at `path` with `queues` virtqueues.
    pub fn connect(path: &Path, queues: usize) -> Result<Self, ClientError> {
        Self::connect_with(path, queues, false)
    }

    /// As `connect`; `read_only` must be set for a device that offers only reads.
    pub fn connect_with(path: &Path, queues: usize, read_only: bool) -> Result<Self, ClientError> {
        let mut blkio = Blkio::new("virtio-blk-vhost-user")?;
        blkio.set_str("path", &path.to_string_lossy())?;
        blkio.set_bool("read-only", read_only)?;
        blkio.connect()?;
        blkio.set_i32("num-queues", queues as i32)?;
        let started = blkio.start()?;
        let region = blkio.alloc_mem_region(REGION_BYTES)?;
        blkio.map_mem_region(&region)?;
        Ok(Self {
            blkio,
            queues: started.queues,
            region,
        })
    }

    pub fn capacity_bytes(&self) -> Result<u64, ClientError> {
        Ok(self.blkio.get_u64("capacity")?)
    }

    pub fn read_only(&self) -> Result<bool, ClientError> {
        Ok(self.blkio.get_bool("read-only")?)
    }

    pub fn request_alignment(&self) -> Result<i32, ClientError> {
        Ok(self.blkio.get_i32("request-alignment")?)
    }

    fn queue(&mut self, q: usize) -> Result<&mut Blkioq, ClientError> {
        self.queues.get_mut(q).ok_or(ClientError::NoQueue(q))
    }

    fn complete_one(&mut self, q: usize) -> Result<(), ClientError> {
        let mut done = Vec::new();
        raw::reap(self.queue(q)?, 1, &mut done)?;
        match done.first() {
            Some(&(_, 0)) => Ok(()),
            Some(&(_, ret)) => Err(ClientError::Request(-ret)),
            None => Err(ClientError::Request(0)),
        }
    }

    /// Reads `len` bytes at `offset` through queue `q`.
    pub fn read(&mut self, q: usize, offset: u64, len: usize) -> Result<Vec<u8>, ClientError> {
        if len > REGION_BYTES {
            return Err(ClientError::TooLarge(len));
        }
        let addr = self.region.addr as *mut u8;
        self.queue(q)?.read(offset, addr, len, 0, ReqFlags::empty());
        self.complete_one(q)?;
        Ok(raw::region_bytes(&self.region)[..len].to_vec())
    }

    /// Writes `data` at `offset` through queue `q` (FUA if asked).
    pub fn write(
        &mut self,
        q: usize,
        offset: u64,
        data: &[u8],
        fua: bool,
    ) -> Result<(), ClientError> {
        if data.len() > REGION_BYTES {
            return Err(ClientError::TooLarge(data.len()));
        }
        raw::region_bytes_mut(&mut self.region)[..data.len()].copy_from_slice(data);
        let addr = self.region.addr as *const u8;
        let flags = if fua {
            ReqFlags::FUA
        } else {
            ReqFlags::empty()
        };
        self.queue(q)?.write(offset, addr, data.len(), 0, flags);
        self.complete_one(q)
    }

    pub fn flush(&mut self, q: usize) -> Result<(), ClientError> {
        self.queue(q)?.flush(0, ReqFlags::empty());
        self.complete_one(q)
    }

    pub fn discard(&mut self, q: usize, offset: u64, len: u64) -> Result<(), ClientError> {
        self.queue(q)?.discard(offset, len, 0, ReqFlags::empty());
        self.complete_one(q)
    }

    pub fn write_zeroes(&mut self, q: usize, offset: u64, len: u64) -> Result<(), ClientError> {
        self.queue(q)?
            .write_zeroes(offset, len, 0, ReqFlags::empty());
        self.complete_one(q)
    }

    /// Keeps `load.depth` requests of `load.block_bytes` in flight on queue `q` until
    /// `load.total` completed; `offset_of(i)` picks request i's offset and
    /// `on_complete(latency_ns)` is called per completion. Buffers are slices of the region whose
    /// contents are not looked at: this is a load generator.
    pub fn run_depth(
        &mut self,
        q: usize,
        load: Load,
        mut offset_of: impl FnMut(u64) -> u64,
        mut on_complete: impl FnMut(u64),
    ) -> Result<(), ClientError> {
        let Load {
            write,
            block_bytes,
            depth,
            total,
        } = load;
        if block_bytes.saturating_mul(depth) > REGION_BYTES || depth == 0 || depth > 64 {
            return Err(ClientError::TooLarge(block_bytes.saturating_mul(depth)));
        }
        let base = self.region.addr;
        let clock = std::time::Instant::now();
        let mut started_ns = vec![0u64; depth];
        let mut issued = 0u64;
        let mut completed = 0u64;
        let mut done = Vec::with_capacity(64);
        let mut submit = |queue: &mut Blkioq, slot: usize, i: u64| {
            let addr = base + slot * block_bytes;
            if write {
                queue.write(
                    offset_of(i),
                    addr as *const u8,
                    block_bytes,
                    slot,
                    ReqFlags::empty(),
                );
            } else {
                queue.read(
                    offset_of(i),
                    addr as *mut u8,
                    block_bytes,
                    slot,
                    ReqFlags::empty(),
                );
            }
        };
        let queue = self.queues.get_mut(q).ok_or(ClientError::NoQueue(q))?;
        for (slot, started) in started_ns.iter_mut().enumerate().take(total as usize) {
            *started = clock.elapsed().as_nanos() as u64;
            submit(queue, slot, issued);
            issued += 1;
        }
        while completed < total {
            done.clear();
            raw::reap(queue, 1, &mut done)?;
            for &(slot, ret) in &done {
                if ret != 0 {
                    return Err(ClientError::Request(-ret));
                }
                let now = clock.elapsed().as_nanos() as u64;
                let started = started_ns.get(slot).copied().unwrap_or(now);
                on_complete(now.saturating_sub(started));
                completed += 1;
                if issued < total {
                    if let Some(s) = started_ns.get_mut(slot) {
                        *s = now;
                    }
                    submit(queue, slot, issued);
                    issued += 1;
                }
            }
        }
        Ok(())
    }
}
