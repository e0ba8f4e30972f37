//! The vhost-user-blk device of one frontend connection: the `VhostUserBackend` implementation.
//!
//! The control plane (features, config space, memory, exit events) is here; the data plane is one
//! `QueueWorker` per virtqueue, each run by its own thread. The trait is the `&self` one, and no
//! lock is shared by the queues: each worker sits behind a mutex that only its thread takes.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use thiserror::Error;
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::VhostUserBackend;
use virtio_bindings::virtio_blk::VIRTIO_BLK_F_CONFIG_WCE;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    EventConsumer, EventFlag, EventNotifier, new_event_consumer_and_notifier,
};

use super::config::{self, CONFIG_BYTES, TransportOptions, WRITEBACK_OFFSET};
use super::worker::{AtomicMemory, QueueWorker, Vring};
use crate::controller::ActiveNamespace;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("creating a worker exit event: {0}")]
    ExitEvent(io::Error),
    #[error("{0} queues: must be 1 to 64")]
    Queues(u16),
    #[error("logical block of {0} bytes: must be 512 or the namespace's block")]
    LogicalBlock(u32),
}

/// One frontend connection's device: a fresh one per connection, so nothing of a previous guest
/// (cache mode, event index, worker state) leaks into the next.
pub struct BlkBackend {
    namespace: Arc<ActiveNamespace>,
    options: TransportOptions,
    mem: AtomicMemory,
    workers: Vec<Mutex<QueueWorker>>,
    writeback: Arc<AtomicBool>,
    acked_features: Mutex<u64>,
    exit_events: Mutex<Vec<Option<(EventConsumer, EventNotifier)>>>,
}

impl std::fmt::Debug for BlkBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlkBackend")
            .field("nsid", &self.namespace.identity().nsid)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl BlkBackend {
    pub fn new(
        namespace: Arc<ActiveNamespace>,
        options: TransportOptions,
        mem: AtomicMemory,
    ) -> Result<Self, BackendError> {
        if options.queues == 0 || options.queues > 64 {
            return Err(BackendError::Queues(options.queues));
        }
        let block = namespace.block_size() as u32;
        if options.logical_block_bytes != 512 && options.logical_block_bytes != block {
            return Err(BackendError::LogicalBlock(options.logical_block_bytes));
        }
        let writeback = Arc::new(AtomicBool::new(true));
        let poll = Duration::from_micros(options.poll_us.into());
        let workers = (0..options.queues)
            .map(|_| {
                Mutex::new(QueueWorker::new(
                    namespace.new_queue(),
                    writeback.clone(),
                    poll,
                ))
            })
            .collect();
        let exit_events = (0..options.queues)
            .map(|_| {
                new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).map(Some)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(BackendError::ExitEvent)?;
        Ok(Self {
            namespace,
            options,
            mem,
            workers,
            writeback,
            acked_features: Mutex::new(0),
            exit_events: Mutex::new(exit_events),
        })
    }

    /// Requests refused and completed by all queues of this connection so far.
    pub fn request_counts(&self) -> (u64, u64) {
        self.workers.iter().fold((0, 0), |(r, c), w| {
            let w = w.lock();
            (
                r + w.counters.rejected_requests,
                c + w.counters.completed_requests,
            )
        })
    }

    /// Requests completed by each queue of this connection so far, in queue order: shows a
    /// multi-queue guest spreads its I/O.
    pub fn completed_per_queue(&self) -> Vec<u64> {
        self.workers
            .iter()
            .map(|w| w.lock().counters.completed_requests)
            .collect()
    }

    fn config_bytes(&self) -> [u8; CONFIG_BYTES] {
        config::config_space(
            self.namespace.capacity_bytes(),
            self.namespace.block_size() as u32,
            &self.options,
            self.writeback.load(Ordering::Relaxed),
        )
    }
}

impl VhostUserBackend for BlkBackend {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        self.options.queues.into()
    }

    fn max_queue_size(&self) -> usize {
        self.options.queue_size.into()
    }

    fn features(&self) -> u64 {
        config::device_features(self.namespace.identity().read_only)
    }

    fn acked_features(&self, features: u64) {
        *self.acked_features.lock() = features;
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
    }

    fn set_event_idx(&self, _enabled: bool) {
        // Each queue reads the flag from its own vring (the handler sets it there).
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let config = self.config_bytes();
        let start = offset as usize;
        let end = start.saturating_add(size as usize);
        config
            .get(start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        // Only the cache mode is writable, and only once CONFIG_WCE was negotiated.
        let wce = *self.acked_features.lock() & (1 << VIRTIO_BLK_F_CONFIG_WCE) != 0;
        if !wce || offset as usize != WRITEBACK_OFFSET || buf.len() != 1 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let writeback = buf.first().is_some_and(|&b| b != 0);
        if !writeback {
            // Switching to write-through: what was written back so far must be durable too.
            self.namespace
                .backend()
                .flush()
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        self.writeback.store(writeback, Ordering::Relaxed);
        Ok(())
    }

    fn update_memory(&self, _mem: AtomicMemory) -> io::Result<()> {
        // The handler replaces the contents of the `GuestMemoryAtomic` this backend was built
        // with (the same one given to the daemon), so the workers already see the new map.
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        (0..self.options.queues).map(|q| 1u64 << q).collect()
    }

    fn exit_event(&self, thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        self.exit_events
            .lock()
            .get_mut(thread_index)
            .and_then(Option::take)
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[Vring],
        thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN || device_event != 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let (Some(vring), Some(worker)) = (vrings.first(), self.workers.get(thread_id)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        if let Err(e) = worker.lock().process(vring, &self.mem) {
            // A broken ring is the guest's fault: log it and keep the worker alive for the
            // other requests and the next connection.
            tracing::warn!(queue = thread_id, error = %e, "virtqueue processing failed");
        }
        Ok(())
    }
}
