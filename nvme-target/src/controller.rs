//! The controller model: namespaces with their identity, Identify data and the health log.
//!
//! The control plane lives here (created at start, read by `ferrite nvme ...`); the data plane is
//! `IoQueue` (queue.rs), one per transport queue, which holds no lock shared by all queues.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::block_locks::BlockLocks;
use crate::identify::{IdentifyController, IdentifyNamespace};
use crate::namespace::Namespace;
use crate::power_on::PowerOnClock;
use crate::queue::{IoQueue, QueueCounters};
use crate::smart::SmartLog;

/// Who a namespace says it is and how it may be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceIdentity {
    /// Namespace ID (1-based, as NVMe numbers them).
    pub nsid: u32,
    /// Serial number: up to 20 ASCII characters (virtio-blk GET_ID returns it).
    pub serial: String,
    /// Model name: up to 40 ASCII characters.
    pub model: String,
    /// IEEE EUI-64 of the namespace.
    pub eui64: [u8; 8],
    /// Refuse every write, write-zeroes and deallocate.
    pub read_only: bool,
}

impl NamespaceIdentity {
    /// An EUI-64 derived from the serial (FNV-1a), stable across restarts, with the locally
    /// administered bit set so it cannot collide with a vendor-assigned one.
    pub fn eui64_from_serial(serial: &str) -> [u8; 8] {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in serial.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut eui = h.to_be_bytes();
        eui[0] = (eui[0] | 0x02) & !0x01;
        eui
    }
}

/// One namespace as the controller runs it: backend, identity, locks and queue counters.
#[derive(Debug)]
pub struct ActiveNamespace {
    identity: NamespaceIdentity,
    backend: Arc<dyn Namespace>,
    pub(crate) locks: BlockLocks,
    /// Counters of every queue created; the health log adds them up (control path only).
    queue_counters: Mutex<Vec<Arc<QueueCounters>>>,
    /// The controller's power-on time, shared by its namespaces.
    power_on: Arc<PowerOnClock>,
}

impl ActiveNamespace {
    /// A namespace whose power-on time starts now, at zero (tests, tools).
    pub fn new(identity: NamespaceIdentity, backend: Arc<dyn Namespace>) -> Arc<Self> {
        Self::with_power_on(identity, backend, Arc::new(PowerOnClock::running(0)))
    }

    /// A namespace of a controller that has been powered on for `power_on` (persisted across
    /// runs by the caller).
    pub fn with_power_on(
        identity: NamespaceIdentity,
        backend: Arc<dyn Namespace>,
        power_on: Arc<PowerOnClock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            identity,
            backend,
            locks: BlockLocks::new(),
            queue_counters: Mutex::new(Vec::new()),
            power_on,
        })
    }

    pub fn identity(&self) -> &NamespaceIdentity {
        &self.identity
    }

    pub fn backend(&self) -> &Arc<dyn Namespace> {
        &self.backend
    }

    pub fn block_size(&self) -> usize {
        self.backend.block_size()
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.backend
            .blocks()
            .saturating_mul(self.backend.block_size() as u64)
    }

    /// A new I/O queue pair on this namespace (one per virtqueue).
    pub fn new_queue(self: &Arc<Self>) -> IoQueue {
        let counters = Arc::new(QueueCounters::default());
        self.queue_counters.lock().push(counters.clone());
        IoQueue::new(self.clone(), counters)
    }

    pub fn identify(&self) -> IdentifyNamespace {
        let blocks = self.backend.blocks();
        let health = self.backend.health();
        IdentifyNamespace {
            nsid: self.identity.nsid,
            size_blocks: blocks,
            capacity_blocks: blocks,
            utilization_blocks: health.blocks_in_use.unwrap_or(blocks),
            block_size_bytes: self.backend.block_size() as u32,
            eui64: self.identity.eui64,
            write_protected: self.identity.read_only || health.read_only,
            deallocated_reads_zeroes: true,
        }
    }

    /// The health log: wear and lifetime data units from the backend, command and error counts
    /// from this controller's queues since the namespace was opened.
    pub fn smart_log(&self) -> SmartLog {
        let health = self.backend.health();
        let mut log = SmartLog {
            critical_warning: SmartLog::critical_warning_for(
                health.available_spare,
                health.available_spare_threshold,
                health.read_only,
            ),
            available_spare_percent: health.available_spare,
            available_spare_threshold_percent: health.available_spare_threshold,
            percentage_used: health.percentage_used,
            data_units_read: SmartLog::data_units(health.lifetime_bytes_read),
            data_units_written: SmartLog::data_units(health.lifetime_bytes_written),
            composite_temperature_kelvin: SmartLog::NOMINAL_TEMPERATURE_KELVIN,
            power_on_hours: self.power_on.hours(),
            ..SmartLog::default()
        };
        for c in self.queue_counters.lock().iter() {
            log.host_read_commands += c.read_commands.load(Ordering::Relaxed);
            log.host_write_commands += c.write_commands.load(Ordering::Relaxed);
            log.media_errors += c.media_errors.load(Ordering::Relaxed);
        }
        log
    }
}

/// The controller: its identity and its namespaces.
#[derive(Debug)]
pub struct Controller {
    serial: String,
    model: String,
    firmware: String,
    namespaces: Vec<Arc<ActiveNamespace>>,
}

impl Controller {
    pub fn new(serial: &str, model: &str, firmware: &str) -> Self {
        Self {
            serial: serial.to_owned(),
            model: model.to_owned(),
            firmware: firmware.to_owned(),
            namespaces: Vec::new(),
        }
    }

    pub fn add_namespace(&mut self, ns: Arc<ActiveNamespace>) {
        self.namespaces.push(ns);
    }

    pub fn namespaces(&self) -> &[Arc<ActiveNamespace>] {
        &self.namespaces
    }

    pub fn namespace(&self, nsid: u32) -> Option<&Arc<ActiveNamespace>> {
        self.namespaces.iter().find(|n| n.identity.nsid == nsid)
    }

    pub fn identify(&self) -> IdentifyController {
        IdentifyController {
            serial: self.serial.clone(),
            model: self.model.clone(),
            firmware: self.firmware.clone(),
            namespaces: self.namespaces.len() as u32,
            max_transfer_bytes: crate::queue::MAX_TRANSFER_BYTES as u64,
            volatile_write_cache: true,
            dataset_management: true,
            write_zeroes: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64_is_stable_local_and_unicast() {
        let a = NamespaceIdentity::eui64_from_serial("ns-1");
        assert_eq!(a, NamespaceIdentity::eui64_from_serial("ns-1"));
        assert_ne!(a, NamespaceIdentity::eui64_from_serial("ns-2"));
        assert_eq!(a[0] & 0x03, 0x02);
    }
}
