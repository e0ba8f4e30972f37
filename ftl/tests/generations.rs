#![allow(clippy::unwrap_used)]
//! A page's generation (its sequence number, the nonce of a sealed page) never carries two
//! different contents, across any number of power cuts: programs lost to a crash leave no number
//! behind that a later write could take again.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Model, Rng, apply, fill, geometry, is_power_lost, random_op};
use ftl::format::oob::{PageKind, PageRecord};
use ftl::nand::{BlockInfo, FaultConfig, MemNand, Nand, NandError, NandStats, PowerRail, ReadInfo};
use ftl::{Ftl, FtlConfig};
use parking_lot::Mutex;

/// A device that records, for every data page programmed, generation -> (logical page, crc).
#[derive(Debug)]
struct Recording {
    inner: Arc<MemNand>,
    seen: Arc<Mutex<HashMap<u64, (u32, u32)>>>,
    reused: Arc<Mutex<Vec<u64>>>,
}

impl Nand for Recording {
    fn geometry(&self) -> &ftl::nand::Geometry {
        self.inner.geometry()
    }
    fn program_page(
        &self,
        block: u32,
        page: u32,
        data: &[u8],
        oob: &[u8],
    ) -> Result<(), NandError> {
        if let Ok(r) = PageRecord::decode(data, oob)
            && r.kind == PageKind::Data
        {
            let what = (r.lpa, crc32fast::hash(data));
            let mut seen = self.seen.lock();
            if let Some(&before) = seen.get(&r.data_seq) {
                if before != what {
                    self.reused.lock().push(r.data_seq);
                }
            } else {
                seen.insert(r.data_seq, what);
            }
        }
        self.inner.program_page(block, page, data, oob)
    }
    fn read_page(
        &self,
        block: u32,
        page: u32,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        self.inner.read_page(block, page, data, oob)
    }
    fn read_range(
        &self,
        block: u32,
        page: u32,
        offset: usize,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        self.inner.read_range(block, page, offset, data, oob)
    }
    fn read_oob(&self, block: u32, page: u32, oob: &mut [u8]) -> Result<ReadInfo, NandError> {
        self.inner.read_oob(block, page, oob)
    }
    fn erase_block(&self, block: u32) -> Result<(), NandError> {
        self.inner.erase_block(block)
    }
    fn mark_bad(&self, block: u32) -> Result<(), NandError> {
        self.inner.mark_bad(block)
    }
    fn block_info(&self, block: u32) -> Result<BlockInfo, NandError> {
        self.inner.block_info(block)
    }
    fn sync(&self) -> Result<(), NandError> {
        self.inner.sync()
    }
    fn stats(&self) -> NandStats {
        self.inner.stats()
    }
}

#[test]
fn generations_never_repeat_across_power_cuts() {
    let rail = Arc::new(PowerRail::new());
    let faults = FaultConfig {
        torn_write_prob: 0.5,
        ..FaultConfig::none()
    };
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let reused = Arc::new(Mutex::new(Vec::new()));
    let inner: Vec<Arc<MemNand>> = (0..2)
        .map(|i| {
            Arc::new(
                MemNand::new(
                    geometry(2, 16, 16),
                    faults.for_device(i),
                    Some(rail.clone()),
                )
                .unwrap(),
            )
        })
        .collect();
    let devices: Vec<Arc<dyn Nand>> = inner
        .iter()
        .map(|d| {
            Arc::new(Recording {
                inner: d.clone(),
                seen: seen.clone(),
                reused: reused.clone(),
            }) as Arc<dyn Nand>
        })
        .collect();
    let ftl = Ftl::format(devices.clone(), FtlConfig::default()).unwrap();
    let mut model = Model::new(ftl.logical_pages());
    fill(&ftl, &mut model);
    ftl.flush().unwrap();
    model.flushed();
    let mut ftl = Some(ftl);
    let mut rng = Rng::new(23);
    for round in 0..40u64 {
        // Crashes land soon after many unsynced programs: the case where numbers get lost.
        rail.arm(20 + rng.below(300));
        let live = ftl.take().unwrap();
        loop {
            let op = random_op(&mut rng, model.pages());
            match apply(&live, &mut model, op) {
                Ok(()) => {}
                Err(e) if is_power_lost(&e) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        drop(live);
        for (i, d) in inner.iter().enumerate() {
            d.power_cut(round * 8 + i as u64).unwrap();
        }
        rail.restore();
        let (reopened, report) = Ftl::open(devices.clone(), FtlConfig::default()).unwrap();
        assert_eq!(report.pointers_unresolved, 0);
        model.verify_after_crash(&reopened);
        ftl = Some(reopened);
    }
    let generations = seen.lock().len();
    assert!(
        generations > 1000,
        "only {generations} generations programmed"
    );
    assert!(
        reused.lock().is_empty(),
        "generations reused for other data: {:?}",
        &reused.lock()[..]
    );
}
