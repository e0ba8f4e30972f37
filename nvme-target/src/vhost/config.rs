//! What the device offers: virtio feature bits and the virtio-blk configuration space.

use serde::{Deserialize, Serialize};
use vhost::vhost_user::message::VhostUserVirtioFeatures;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
    VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

use super::request::{MAX_DATA_SEGMENTS, MAX_DISCARD_SEGMENTS};
use crate::queue::{MAX_TRANSFER_BYTES, SECTOR_BYTES};

/// Bytes of the configuration space we expose (through `write_zeroes_may_unmap` and padding).
pub const CONFIG_BYTES: usize = 60;
/// Offset of the `writeback` byte (CONFIG_WCE: the guest may switch the cache mode).
pub const WRITEBACK_OFFSET: usize = 32;
/// Largest discard / write-zeroes range, in sectors (one segment's 32-bit count).
const MAX_DISCARD_SECTORS: u32 = u32::MAX / 8 * 8;
/// SIZE_MAX: the largest data segment. virtio-blk has no field for the largest request; a driver
/// bounds a request only by SEG_MAX x SIZE_MAX (Linux builds up to max_sectors_kb, 1280 KiB by
/// default, out of as few segments as it can), so the product must not pass the largest transfer
/// the parser accepts, or a guest's ordinary writeback gets IOERR.
pub const MAX_SEGMENT_BYTES: u32 = (MAX_TRANSFER_BYTES / MAX_DATA_SEGMENTS) as u32;
const _: () = assert!(MAX_SEGMENT_BYTES as usize * MAX_DATA_SEGMENTS <= MAX_TRANSFER_BYTES);
// Linux raises a SIZE_MAX below its 4 KiB page to the page, which would break the bound above.
const _: () = assert!(MAX_SEGMENT_BYTES >= 4096);

/// Transport settings of one namespace's vhost-user-blk device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportOptions {
    /// Virtqueues (one worker thread each).
    pub queues: u16,
    /// Descriptors per virtqueue at most.
    pub queue_size: u16,
    /// Logical block size the guest sees: 4096 (the namespace's block, the fast path) or 512
    /// (a 512e disk: sub-block I/O works by read-modify-write).
    pub logical_block_bytes: u32,
    /// Busy-poll an idle queue for up to this long after its last request before sleeping on the
    /// kick eventfd (0 = never poll).
    pub poll_us: u32,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            queues: 2,
            queue_size: 256,
            logical_block_bytes: 4096,
            poll_us: 50,
        }
    }
}

/// The virtio feature bits offered for a namespace.
pub fn device_features(read_only: bool) -> u64 {
    let mut f = [
        VIRTIO_F_VERSION_1,
        VIRTIO_RING_F_EVENT_IDX,
        VIRTIO_RING_F_INDIRECT_DESC,
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_SIZE_MAX,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_TOPOLOGY,
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_CONFIG_WCE,
        VIRTIO_BLK_F_MQ,
        VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES,
    ]
    .iter()
    .fold(0u64, |acc, bit| acc | 1u64 << bit);
    if read_only {
        f |= 1u64 << VIRTIO_BLK_F_RO;
    }
    f | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
}

/// The configuration space (`struct virtio_blk_config`, little endian), pinned by tests.
pub fn config_space(
    capacity_bytes: u64,
    namespace_block_bytes: u32,
    opts: &TransportOptions,
    writeback: bool,
) -> [u8; CONFIG_BYTES] {
    let mut c = [0u8; CONFIG_BYTES];
    let logical = opts.logical_block_bytes.max(SECTOR_BYTES as u32);
    c[0..8].copy_from_slice(&(capacity_bytes / SECTOR_BYTES).to_le_bytes());
    c[8..12].copy_from_slice(&MAX_SEGMENT_BYTES.to_le_bytes());
    c[12..16].copy_from_slice(&(MAX_DATA_SEGMENTS as u32).to_le_bytes());
    // 16..20: geometry, not offered.
    c[20..24].copy_from_slice(&logical.to_le_bytes());
    // Topology: physical block = the namespace's block, as a power of two of logical blocks.
    c[24] = (namespace_block_bytes.max(logical) / logical).ilog2() as u8;
    c[25] = 0;
    c[26..28].copy_from_slice(&((namespace_block_bytes / logical).max(1) as u16).to_le_bytes());
    c[28..32].copy_from_slice(&((namespace_block_bytes / logical).max(1)).to_le_bytes());
    c[WRITEBACK_OFFSET] = u8::from(writeback);
    c[34..36].copy_from_slice(&opts.queues.to_le_bytes());
    c[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
    c[40..44].copy_from_slice(&(MAX_DISCARD_SEGMENTS as u32).to_le_bytes());
    c[44..48].copy_from_slice(&(namespace_block_bytes / SECTOR_BYTES as u32).to_le_bytes());
    c[48..52].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
    c[52..56].copy_from_slice(&(MAX_DISCARD_SEGMENTS as u32).to_le_bytes());
    c[56] = 1;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_offsets_are_pinned() {
        let opts = TransportOptions {
            queues: 3,
            ..TransportOptions::default()
        };
        let c = config_space(1 << 30, 4096, &opts, true);
        assert_eq!(&c[0..8], &(2u64 * 1024 * 1024).to_le_bytes());
        assert_eq!(&c[20..24], &4096u32.to_le_bytes());
        assert_eq!(c[24], 0, "physical block = logical block");
        assert_eq!(c[32], 1);
        assert_eq!(&c[34..36], &3u16.to_le_bytes());
        assert_eq!(&c[44..48], &8u32.to_le_bytes());
        assert_eq!(c[56], 1);
        let opts512 = TransportOptions {
            logical_block_bytes: 512,
            ..TransportOptions::default()
        };
        let c = config_space(1 << 30, 4096, &opts512, false);
        assert_eq!(&c[20..24], &512u32.to_le_bytes());
        assert_eq!(c[24], 3, "4096 = 2^3 x 512");
        assert_eq!(c[32], 0);
    }

    /// A guest may fill SEG_MAX segments of SIZE_MAX bytes each: such a request must parse.
    /// (Once SIZE_MAX was the whole 1 MiB transfer: Linux sent 1280 KiB writes during mkfs.ext4
    /// and ext4 writeback, and got IOERR.)
    #[test]
    fn the_largest_request_the_config_space_allows_is_accepted() {
        use super::super::request::{self, Desc};
        use virtio_bindings::virtio_blk::VIRTIO_BLK_T_OUT;

        let c = config_space(1 << 30, 4096, &TransportOptions::default(), true);
        let size_max = u32::from_le_bytes(c[8..12].try_into().unwrap());
        let seg_max = u32::from_le_bytes(c[12..16].try_into().unwrap());
        let header = Desc {
            addr: 0,
            len: 16,
            device_writable: false,
        };
        let data = (0..seg_max).map(|i| Desc {
            addr: 0x10_0000 + u64::from(i) * u64::from(size_max),
            len: size_max,
            device_writable: false,
        });
        let status = Desc {
            addr: 0x8000_0000,
            len: 1,
            device_writable: true,
        };
        let chain: Vec<Desc> = std::iter::once(header)
            .chain(data)
            .chain(std::iter::once(status))
            .collect();
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&VIRTIO_BLK_T_OUT.to_le_bytes());
        let parsed =
            request::parse(&chain, |_| Some(h)).unwrap_or_else(|r| panic!("rejected: {}", r.error));
        assert_eq!(
            u64::from(parsed.data_len),
            u64::from(seg_max) * u64::from(size_max)
        );
    }

    #[test]
    fn read_only_is_offered_only_for_read_only_namespaces() {
        assert_eq!(device_features(false) & (1 << VIRTIO_BLK_F_RO), 0);
        assert_ne!(device_features(true) & (1 << VIRTIO_BLK_F_RO), 0);
        assert_ne!(device_features(false) & (1 << VIRTIO_F_VERSION_1), 0);
    }
}
