//! The NAND device model: geometry, rules, wear, faults, power loss, and two backends.
//!
//! ```text
//!   Nand (trait) <- Device<S: PageStore>   rules, wear, faults, power cut, one lock per die
//!                      |-- MemStore  -> MemNand   pages in RAM
//!                      `-- FileStore -> FileNand  one file per device (docs/ftl-format.md),
//!                                                read through a mapping (file_map.rs)
//!   Nand (trait) <- TimedNand (timing/)     latencies over any Nand: model + clock
//! ```

mod device;
mod error;
mod faults;
mod file;
mod file_map;
mod geometry;
mod mem;
mod power;
mod prefetch;
mod store;
#[cfg(test)]
mod tests;
pub mod timing;

pub use device::Device;
pub use error::NandError;
pub use faults::{FaultConfig, mix};
pub use file::{FileDurability, FileErase, FileHeader, FileLayout, FileNand, FileStore};
pub use geometry::Geometry;
pub use mem::{MemNand, MemStore};
pub use power::PowerRail;
pub use store::{BlockHealth, BlockMeta, PageStore};
pub use timing::{TimedNand, TimingConfig};

use std::fmt;

/// What a successful read reports besides the bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadInfo {
    /// Raw bit errors the device's ECC corrected on this read.
    pub corrected_bits: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub erase_count: u32,
    pub health: BlockHealth,
    pub programmed_pages: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NandStats {
    pub pages_read: u64,
    pub oob_reads: u64,
    pub pages_programmed: u64,
    pub blocks_erased: u64,
    pub bits_corrected: u64,
    pub uncorrectable_reads: u64,
    pub program_failures: u64,
    pub erase_failures: u64,
    pub syncs: u64,
}

/// One NAND device. Every rule violation is an error; nothing is silently accepted.
pub trait Nand: Send + Sync + fmt::Debug {
    fn geometry(&self) -> &Geometry;
    /// Programs an erased page; pages of a block must be programmed in order (0, 1, 2, ...).
    fn program_page(&self, block: u32, page: u32, data: &[u8], oob: &[u8])
    -> Result<(), NandError>;
    /// Reads a programmed page; an erased page is `ErasedPage`.
    fn read_page(
        &self,
        block: u32,
        page: u32,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError>;
    /// Reads `data.len()` bytes of a programmed page from byte `offset` (a controller's random
    /// data out: the page is sensed whole, only the range crosses the bus), and the whole OOB.
    fn read_range(
        &self,
        block: u32,
        page: u32,
        offset: usize,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError>;
    /// Reads only the OOB area of a programmed page.
    fn read_oob(&self, block: u32, page: u32, oob: &mut [u8]) -> Result<ReadInfo, NandError>;
    /// Erases a whole block (the only way to erase); it then counts one more P/E cycle.
    fn erase_block(&self, block: u32) -> Result<(), NandError>;
    /// Retires a block: it is never programmed or erased again, but stays readable.
    fn mark_bad(&self, block: u32) -> Result<(), NandError>;
    fn block_info(&self, block: u32) -> Result<BlockInfo, NandError>;
    /// Makes every program that has returned durable.
    fn sync(&self) -> Result<(), NandError>;
    /// Whether `sync` waits for a disk (an `fdatasync`, milliseconds) rather than for memory: the
    /// FTL then syncs its devices in parallel. Never true for simulated devices, whose syncs stay
    /// in one deterministic order.
    fn sync_is_slow(&self) -> bool {
        false
    }
    /// Hints that `page` of `block` will be read soon: a store in memory starts loading its first
    /// cache lines (see `prefetch.rs`). Checks nothing and never fails; the default does nothing.
    fn prefetch_page(&self, block: u32, page: u32) {
        let _ = (block, page);
    }
    fn stats(&self) -> NandStats;
}
