#![allow(clippy::unwrap_used)]
//! Write-through (CONFIG_WCE = 0): what the worker completes survives a power cut. A multi-block
//! write, a write-zeroes and a discard are completed, then the NAND loses power before any flush
//! or close; the recovered FTL must show the data, the zeroes and the deallocation.

mod common_ftl;
mod common_guest;

use std::sync::Arc;

use common_guest::{Guest, OK, QUEUE_SIZE, serve};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use nvme_target::vhost::worker::GuestMemory;
use nvme_target::{ActiveNamespace, FtlNamespace};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

const BLOCK: usize = 4096;
const T_OUT: u32 = 1;
const T_DISCARD: u32 = 11;
const T_WRITE_ZEROES: u32 = 13;

fn devices() -> Vec<Arc<MemNand>> {
    let g = Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 16,
        pages_per_block: 32,
        page_size: 16384,
        oob_size: 256,
    };
    (0..2)
        .map(|i| Arc::new(MemNand::new(g, FaultConfig::none().for_device(i), None).unwrap()))
        .collect()
}

fn dyn_devices(devs: &[Arc<MemNand>]) -> Vec<Arc<dyn Nand>> {
    devs.iter().map(|d| d.clone() as Arc<dyn Nand>).collect()
}

/// A discard or write-zeroes segment: sector, sectors, flags.
fn segment(sector: u64, sectors: u32) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[0..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&sectors.to_le_bytes());
    s
}

#[test]
fn write_through_writes_zeroes_and_discards_survive_a_power_cut() {
    let devs = devices();
    let ftl = Ftl::format(dyn_devices(&devs), FtlConfig::default()).unwrap();
    let ns = ActiveNamespace::new(
        common_ftl::identity(false),
        Arc::new(FtlNamespace::new(ftl)),
    );
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let q = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let mut g = Guest::new(&mem);
    let (hdr, data, status) = (0x10_0000u64, 0x20_0000u64, 0x30_0000u64);
    // Eight blocks of data, in one write: durable before it completes (FUA, several blocks).
    let payload: Vec<u8> = (0..8 * BLOCK).map(|i| (i % 249) as u8 | 1).collect();
    mem.write_slice(&payload, GuestAddress(data)).unwrap();
    g.header(hdr, T_OUT, 0);
    g.chain(
        &q,
        &[
            (hdr, 16, false),
            (data, payload.len() as u32, false),
            (status, 1, true),
        ],
        None,
    );
    // Blocks 0..3 zeroed (sectors 0..24), then blocks 3..5 discarded (sectors 24..40).
    let seg_at = 0x40_0000u64;
    mem.write_slice(&segment(0, 24), GuestAddress(seg_at))
        .unwrap();
    g.header(hdr + 64, T_WRITE_ZEROES, 0);
    g.chain(
        &q,
        &[
            (hdr + 64, 16, false),
            (seg_at, 16, false),
            (status + 1, 1, true),
        ],
        None,
    );
    mem.write_slice(&segment(24, 16), GuestAddress(seg_at + 64))
        .unwrap();
    g.header(hdr + 128, T_DISCARD, 0);
    g.chain(
        &q,
        &[
            (hdr + 128, 16, false),
            (seg_at + 64, 16, false),
            (status + 2, 1, true),
        ],
        None,
    );
    let worker = serve(&mem, &q, &ns, false);
    for i in 0..3 {
        assert_eq!(g.status(i), OK, "status of chain {i}");
    }
    assert_eq!(worker.counters.rejected_requests, 0);

    // Power cut: no flush, no close; whatever was not made durable is dropped.
    drop(worker);
    drop(ns);
    for (i, d) in devs.iter().enumerate() {
        d.power_cut(7 + i as u64).unwrap();
    }
    let (ftl, _) = Ftl::open(dyn_devices(&devs), FtlConfig::default()).unwrap();
    let mut block = vec![0u8; BLOCK];
    for lba in 0..8u64 {
        ftl.read(lba, &mut block).unwrap();
        if lba < 5 {
            assert!(
                block.iter().all(|&b| b == 0),
                "block {lba}: zeroed or discarded, but its data came back"
            );
        } else {
            let at = lba as usize * BLOCK;
            assert!(
                block == payload[at..at + BLOCK],
                "block {lba}: the completed write-through write was lost"
            );
        }
    }
}
