//! `MemNand`: a device whose pages live in RAM, for tests, simulation and benchmarks.
//!
//! The buffers are allocated zeroed and never filled on erase (the device never shows an erased
//! page), so a large device costs only the RAM its programmed pages touch.

use std::sync::Arc;

use parking_lot::Mutex;

use super::device::Device;
use super::prefetch::{PREFETCH_LINES, prefetch};
use super::store::{BlockMeta, PageStore};
use super::{FaultConfig, Geometry, NandError, PowerRail};

pub type MemNand = Device<MemStore>;

#[derive(Debug)]
struct MemDie {
    data: Vec<u8>,
    oob: Vec<u8>,
}

#[derive(Debug)]
pub struct MemStore {
    geometry: Geometry,
    dies: Vec<Mutex<MemDie>>,
    /// Where each die's data and OOB bytes start, for `prefetch_page` (addresses only, never
    /// dereferenced: the bytes are read under the die's lock). The buffers are allocated once
    /// and never resized, so the addresses stay valid.
    bases: Vec<(usize, usize)>,
}

impl MemStore {
    pub(crate) fn new(geometry: Geometry) -> Self {
        let pages_per_die = geometry.blocks_per_die() as usize * geometry.pages_per_block as usize;
        let dies = (0..geometry.dies())
            .map(|_| {
                Mutex::new(MemDie {
                    data: vec![0; pages_per_die * geometry.page_size as usize],
                    oob: vec![0; pages_per_die * geometry.oob_size as usize],
                })
            })
            .collect::<Vec<_>>();
        let bases = dies
            .iter()
            .map(|d: &Mutex<MemDie>| {
                let d = d.lock();
                (d.data.as_ptr() as usize, d.oob.as_ptr() as usize)
            })
            .collect();
        Self {
            geometry,
            dies,
            bases,
        }
    }

    /// (die, page index within the die) of a device page.
    fn locate(&self, block: u32, page: u32) -> (usize, usize) {
        let g = &self.geometry;
        let die = g.die_of_block(block);
        let block_in_die = block - die * g.blocks_per_die();
        (
            die as usize,
            (block_in_die * g.pages_per_block + page) as usize,
        )
    }
}

impl PageStore for MemStore {
    fn write_page(&self, block: u32, page: u32, data: &[u8], oob: &[u8]) -> Result<(), NandError> {
        let (die, index) = self.locate(block, page);
        let (ps, os) = (data.len(), oob.len());
        let mut die = self.dies[die].lock();
        die.data[index * ps..(index + 1) * ps].copy_from_slice(data);
        die.oob[index * os..(index + 1) * os].copy_from_slice(oob);
        Ok(())
    }

    fn read_page(
        &self,
        block: u32,
        page: u32,
        offset: usize,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<(), NandError> {
        let (die, index) = self.locate(block, page);
        let (ps, os) = (self.geometry.page_size as usize, oob.len());
        let die = self.dies[die].lock();
        let at = index * ps + offset;
        data.copy_from_slice(&die.data[at..at + data.len()]);
        oob.copy_from_slice(&die.oob[index * os..(index + 1) * os]);
        Ok(())
    }

    fn prefetch_page(&self, block: u32, page: u32) {
        let (die, index) = self.locate(block, page);
        let (data, oob) = self.bases[die];
        let g = &self.geometry;
        prefetch(data + index * g.page_size as usize, PREFETCH_LINES);
        prefetch(oob + index * g.oob_size as usize, 1);
    }

    fn read_oob(&self, block: u32, page: u32, oob: &mut [u8]) -> Result<(), NandError> {
        let (die, index) = self.locate(block, page);
        let os = oob.len();
        let die = self.dies[die].lock();
        oob.copy_from_slice(&die.oob[index * os..(index + 1) * os]);
        Ok(())
    }

    fn erase_pages(&self, _block: u32, _from_page: u32) -> Result<(), NandError> {
        Ok(())
    }

    fn write_block_meta(&self, _block: u32, _meta: &BlockMeta) -> Result<(), NandError> {
        Ok(())
    }

    fn sync(&self) -> Result<(), NandError> {
        Ok(())
    }
}

impl Device<MemStore> {
    /// A fresh RAM device: all blocks erased, factory bad blocks placed by `faults.seed`.
    pub fn new(
        geometry: Geometry,
        faults: FaultConfig,
        rail: Option<Arc<PowerRail>>,
    ) -> Result<Self, NandError> {
        geometry.validate()?;
        let metas = Self::fresh_metas(&geometry, &faults);
        Device::from_parts(geometry, faults, MemStore::new(geometry), metas, rail)
    }
}
