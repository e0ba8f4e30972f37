//! Where a device's bytes live. A store only moves bytes: every NAND rule is checked by `Device`
//! before a store is called, so a store needs no rule logic of its own.

use std::fmt;

use super::NandError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockHealth {
    Good,
    /// Marked bad at manufacture; never readable, programmable or erasable.
    FactoryBad,
    /// Retired during use (a failed program or erase, or worn out); still readable, so the FTL can
    /// move live data off it, but never programmed or erased again.
    GrownBad,
}

/// Per-block facts the device keeps across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockMeta {
    pub erase_count: u32,
    pub health: BlockHealth,
    /// Pages programmed since the last erase (the next page to program). Torn and failed pages count.
    pub programmed_pages: u32,
}

impl BlockMeta {
    pub fn fresh(health: BlockHealth) -> Self {
        Self {
            erase_count: 0,
            health,
            programmed_pages: 0,
        }
    }
}

pub trait PageStore: Send + Sync + fmt::Debug {
    fn write_page(&self, block: u32, page: u32, data: &[u8], oob: &[u8]) -> Result<(), NandError>;
    /// Reads `data.len()` bytes of a page from byte `offset` (the whole page at 0), and its OOB.
    fn read_page(
        &self,
        block: u32,
        page: u32,
        offset: usize,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<(), NandError>;
    fn read_oob(&self, block: u32, page: u32, oob: &mut [u8]) -> Result<(), NandError>;
    /// Returns pages `from_page..` of a block to the erased state. A store may skip the bytes: the
    /// device never shows the content of an erased page.
    fn erase_pages(&self, block: u32, from_page: u32) -> Result<(), NandError>;
    fn write_block_meta(&self, block: u32, meta: &BlockMeta) -> Result<(), NandError>;
    /// Makes every completed write durable.
    fn sync(&self) -> Result<(), NandError>;
    /// Whether `sync` waits for a disk (milliseconds), so that syncing several stores at once pays.
    fn sync_is_slow(&self) -> bool {
        false
    }
    /// See `Nand::prefetch_page`; `block` and `page` are in range.
    fn prefetch_page(&self, block: u32, page: u32) {
        let _ = (block, page);
    }
}
