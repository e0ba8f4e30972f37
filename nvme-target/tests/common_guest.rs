//! Shared by the tests that drive a queue worker directly: a split virtqueue in guest memory
//! (virtio-queue's mock), hand-made descriptor chains, and their statuses.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use nvme_target::ActiveNamespace;
use nvme_target::vhost::worker::{AtomicMemory, GuestMemory, QueueWorker, Vring};
use vhost_user_backend::VringT;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic};

pub const QUEUE_SIZE: u16 = 256;
pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const OK: u8 = 0;
pub const IOERR: u8 = 1;
pub const UNSUPP: u8 = 2;
pub const UNTOUCHED: u8 = 0xEE;

/// One descriptor of a chain: (address, length, device-writable).
pub type D = (u64, u32, bool);

#[derive(Debug)]
pub struct Guest {
    pub mem: GuestMemory,
    pub next_desc: u16,
    pub chains: u16,
    /// Status address of each chain, in the order they were made available.
    pub status_addrs: Vec<u64>,
}

impl Guest {
    pub fn header(&self, at: u64, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(at)).unwrap();
    }

    /// Places a chain; `next_override` makes the first descriptor point elsewhere.
    pub fn chain(
        &mut self,
        q: &MockSplitQueue<GuestMemory>,
        descs: &[D],
        next_override: Option<u16>,
    ) {
        let base = self.next_desc;
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, w))| {
                let last = i + 1 == descs.len();
                let mut flags = if w { F_WRITE } else { 0 };
                let mut next = base + i as u16 + 1;
                if !last {
                    flags |= F_NEXT;
                }
                if let (0, Some(n)) = (i, next_override) {
                    flags |= F_NEXT;
                    next = n;
                }
                RawDescriptor::from(Descriptor::new(addr, len, flags, next))
            })
            .collect();
        q.add_desc_chains(&raw, base).unwrap();
        self.next_desc += descs.len() as u16;
        self.chains += 1;
        let status = descs.last().map_or(0, |d| d.0);
        self.mem
            .write_slice(&[UNTOUCHED], GuestAddress(status))
            .unwrap_or(());
        self.status_addrs.push(status);
    }

    pub fn status(&self, i: usize) -> u8 {
        let mut b = [0u8];
        self.mem
            .read_slice(&mut b, GuestAddress(self.status_addrs[i]))
            .unwrap();
        b[0]
    }

    /// (descriptor head, length) of used ring entry `i`.
    pub fn used(&self, q: &MockSplitQueue<GuestMemory>, i: u16) -> (u32, u32) {
        let at = q.used_addr().0 + 4 + 8 * u64::from(i);
        let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
        (id, len)
    }
}

impl Guest {
    pub fn new(mem: &GuestMemory) -> Self {
        Self {
            mem: mem.clone(),
            next_desc: 0,
            chains: 0,
            status_addrs: Vec::new(),
        }
    }
}

/// Serves every chain placed in `q` with a worker on a new queue of `ns`, in the given cache
/// mode (`writeback` false: write-through, CONFIG_WCE = 0). Returns the worker for its counters.
pub fn serve(
    mem: &GuestMemory,
    q: &MockSplitQueue<GuestMemory>,
    ns: &Arc<ActiveNamespace>,
    writeback: bool,
) -> QueueWorker {
    let atomic: AtomicMemory = GuestMemoryAtomic::new(mem.clone());
    let vring = Vring::new(atomic.clone(), QUEUE_SIZE).unwrap();
    vring.set_queue_size(QUEUE_SIZE);
    vring
        .set_queue_info(q.desc_table_addr().0, q.avail_addr().0, q.used_addr().0)
        .unwrap();
    vring.set_queue_ready(true);
    vring.set_enabled(true);
    let mut worker = QueueWorker::new(
        ns.new_queue(),
        Arc::new(AtomicBool::new(writeback)),
        Duration::ZERO,
    );
    worker.process(&vring, &atomic).unwrap();
    worker
}
