//! One connection split into independent queues, for callers with several threads: each
//! `QueueHandle` owns one virtqueue and its own slice of the shared buffer region, so threads
//! that hold different handles never wait for each other.
//!
//! A vhost-user-blk backend serves one frontend at a time, so several threads cannot each have a
//! connection; they share one, with as many queues as the backend offers (`max-queues`).

use std::path::Path;
use std::sync::Arc;

use blkio::{Blkio, Blkioq, MemoryRegion, ReqFlags};

use crate::{ClientError, REGION_BYTES, raw};

/// The largest buffer a queue gets: the most a virtio-blk backend takes in one request anyway.
pub const MAX_QUEUE_BUFFER_BYTES: usize = 1 << 20;
/// Queues a connection asks for at most.
pub const MAX_QUEUES: usize = 16;

/// What every queue of a connection keeps alive: the device and the buffer region.
struct Connection {
    // Declared first so that the region is unmapped only after the device is closed.
    blkio: Blkio,
    region: MemoryRegion,
}

/// One queue of a shared connection, with a buffer of `buffer_bytes()` of its own.
pub struct QueueHandle {
    queue: Blkioq,
    /// This queue's slice of the region: [offset, offset + len).
    offset: usize,
    len: usize,
    connection: Arc<Connection>,
}

impl std::fmt::Debug for QueueHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueHandle")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Connects to the socket at `path` with up to `wanted` queues (at least 1, at most what the
/// backend offers and `MAX_QUEUES`), each with its own handle.
pub fn connect_queues(path: &Path, wanted: usize) -> Result<Vec<QueueHandle>, ClientError> {
    let mut blkio = Blkio::new("virtio-blk-vhost-user")?;
    blkio.set_str("path", &path.to_string_lossy())?;
    blkio.connect()?;
    let offered = usize::try_from(blkio.get_i32("max-queues")?).unwrap_or(1);
    let queues = wanted.clamp(1, MAX_QUEUES).min(offered.max(1));
    blkio.set_i32("num-queues", queues as i32)?;
    let started = blkio.start()?;
    let per_queue = (REGION_BYTES / queues).min(MAX_QUEUE_BUFFER_BYTES);
    let region = blkio.alloc_mem_region(per_queue * queues)?;
    // Disjoint slices, all inside the region: what `raw::queue_buffer` relies on.
    assert!(per_queue * queues <= region.len);
    blkio.map_mem_region(&region)?;
    let connection = Arc::new(Connection { blkio, region });
    Ok(started
        .queues
        .into_iter()
        .enumerate()
        .map(|(i, queue)| QueueHandle {
            queue,
            offset: i * per_queue,
            len: per_queue,
            connection: connection.clone(),
        })
        .collect())
}

impl QueueHandle {
    /// The largest request this queue takes: callers split bigger I/O.
    pub fn buffer_bytes(&self) -> usize {
        self.len
    }

    pub fn capacity_bytes(&self) -> Result<u64, ClientError> {
        Ok(self.connection.blkio.get_u64("capacity")?)
    }

    fn addr(&self) -> usize {
        self.connection.region.addr + self.offset
    }

    fn check_len(&self, len: usize) -> Result<(), ClientError> {
        if len > self.len {
            return Err(ClientError::TooLarge(len));
        }
        Ok(())
    }

    fn complete_one(&mut self) -> Result<(), ClientError> {
        let mut done = Vec::new();
        raw::reap(&mut self.queue, 1, &mut done)?;
        match done.first() {
            Some(&(_, 0)) => Ok(()),
            Some(&(_, ret)) => Err(ClientError::Request(-ret)),
            None => Err(ClientError::Request(0)),
        }
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ClientError> {
        self.check_len(buf.len())?;
        let addr = self.addr() as *mut u8;
        self.queue
            .read(offset, addr, buf.len(), 0, ReqFlags::empty());
        self.complete_one()?;
        let addr = self.addr();
        buf.copy_from_slice(raw::queue_buffer(&mut self.queue, addr, buf.len()));
        Ok(())
    }

    /// Writes `data` at `offset` (FUA if asked).
    pub fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<(), ClientError> {
        self.check_len(data.len())?;
        let addr = self.addr();
        raw::queue_buffer(&mut self.queue, addr, data.len()).copy_from_slice(data);
        let flags = if fua {
            ReqFlags::FUA
        } else {
            ReqFlags::empty()
        };
        let addr = self.addr() as *const u8;
        self.queue.write(offset, addr, data.len(), 0, flags);
        self.complete_one()
    }

    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.queue.flush(0, ReqFlags::empty());
        self.complete_one()
    }

    pub fn discard(&mut self, offset: u64, len: u64) -> Result<(), ClientError> {
        self.queue.discard(offset, len, 0, ReqFlags::empty());
        self.complete_one()
    }

    pub fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), ClientError> {
        self.queue.write_zeroes(offset, len, 0, ReqFlags::empty());
        self.complete_one()
    }
}
