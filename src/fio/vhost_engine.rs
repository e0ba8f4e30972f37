//! `ioengine=vhost-user`: jobs drive a vhost-user-blk backend (`ferrite serve`, or any other) at
//! `filename=SOCKET` through libblkio (the `blkio-client` crate, driver virtio-blk-vhost-user).
//!
//! Queue depth: the runner emulates iodepth with synchronous worker threads, and a libblkio
//! queue is used by one thread at a time. A vhost-user-blk backend serves one frontend at a
//! time, so workers cannot each have a connection: the target makes one connection with one
//! queue per worker (iodepth x numjobs), as many as the backend offers (its `num-queues`, 2 by
//! default in `ferrite serve`, `queues` in its config) and at most `blkio_client::MAX_QUEUES`.
//! Each queue has its own buffer, so workers on different queues never wait for each other;
//! when there are more workers than queues, a worker takes whichever queue is free, and the
//! depth the backend sees is the number of queues.
//!
//! fio's trim is a virtio discard and fsync a virtio flush. Offsets and lengths are in 512-byte
//! sectors; an I/O bigger than a queue's buffer (1 MiB at most) is split.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use blkio_client::{ClientError, QueueHandle, connect_queues};

use super::engine::IoTarget;
use super::error::JobError;
use super::jobs::Job;

/// virtio-blk addresses 512-byte sectors.
const SECTOR_BYTES: u64 = 512;

#[derive(Debug)]
pub struct VhostUserTarget {
    socket: String,
    queues: Vec<Mutex<QueueHandle>>,
    /// Where the next I/O starts looking for a free queue (spreads workers over queues).
    next: AtomicUsize,
    size_bytes: u64,
    /// Largest request of one queue, a multiple of the sector size.
    chunk_bytes: usize,
}

impl VhostUserTarget {
    pub fn open(job: &Job) -> Result<Self, JobError> {
        let o = &job.options;
        let Some(socket) = o.filename.clone() else {
            return Err(job.error(
                "filename",
                "ioengine=vhost-user needs filename= (the backend's vhost-user socket)",
            ));
        };
        let wanted = o.iodepth.saturating_mul(o.numjobs).max(1) as usize;
        let handles = connect_queues(Path::new(&socket), wanted).map_err(|e| {
            job.error(
                "filename",
                format!("connecting to the vhost-user socket {socket}: {e}"),
            )
        })?;
        let first = handles
            .first()
            .ok_or_else(|| job.error("filename", format!("{socket}: the backend gave no queue")))?;
        let size_bytes = first
            .capacity_bytes()
            .map_err(|e| job.error("filename", format!("{socket}: reading the capacity: {e}")))?;
        let chunk_bytes = (first.buffer_bytes() as u64 / SECTOR_BYTES * SECTOR_BYTES) as usize;
        assert!(chunk_bytes > 0, "a queue buffer holds at least one sector");
        Ok(Self {
            socket,
            queues: handles.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            size_bytes,
            chunk_bytes,
        })
    }

    /// Runs `f` on a free queue: the first free one from a rotating start, else waits for one.
    fn with_queue<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut QueueHandle) -> Result<T, ClientError>,
    ) -> Result<T, String> {
        let n = self.queues.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let free = (0..n).find_map(|i| self.queues[(start + i) % n].try_lock().ok());
        let mut queue = match free {
            Some(q) => q,
            None => self.queues[start]
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        };
        f(&mut queue).map_err(|e| format!("{what} on {}: {e}", self.socket))
    }
}

impl IoTarget for VhostUserTarget {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn granularity_bytes(&self) -> u64 {
        SECTOR_BYTES
    }

    fn keeps_data(&self) -> bool {
        true
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.with_queue("read", |q| {
            let mut at = offset;
            for part in buf.chunks_mut(self.chunk_bytes) {
                q.read(at, part)?;
                at += part.len() as u64;
            }
            Ok(())
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.with_queue("write", |q| {
            let mut at = offset;
            for part in data.chunks(self.chunk_bytes) {
                q.write(at, part, false)?;
                at += part.len() as u64;
            }
            Ok(())
        })
    }

    fn trim(&self, offset: u64, len: u64) -> Result<(), String> {
        self.with_queue("discard", |q| q.discard(offset, len))
    }

    fn sync(&self) -> Result<(), String> {
        self.with_queue("flush", QueueHandle::flush)
    }
}
