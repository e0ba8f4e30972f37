//! Figures an operator (and the NVMe SMART log) wants from the FTL.

use serde::Serialize;

use crate::blocks::BlockKind;
use crate::engine::Engine;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FtlStats {
    pub logical_pages: u64,
    pub host_pages_written: u64,
    pub host_pages_read: u64,
    /// Every page the FTL programmed: host data, relocations, summaries, trim log, checkpoints.
    pub nand_pages_written: u64,
    pub gc_runs: u64,
    pub gc_pages_moved: u64,
    pub wl_runs: u64,
    pub wl_pages_moved: u64,
    /// Host writes that waited for foreground GC since open (not persisted).
    pub foreground_gc_stalls: u64,
    pub trims: u64,
    pub erase_count_min: u32,
    pub erase_count_max: u32,
    pub erase_count_mean: f64,
    pub erase_count_stddev: f64,
    pub free_blocks: u32,
    pub factory_bad_blocks: u32,
    pub grown_bad_blocks: u32,
    pub spare_blocks: u32,
    /// NVMe: estimate of life used, mean erase count over endurance, in percent (may pass 100).
    pub percentage_used: u8,
    /// NVMe: spare blocks left, in percent of those reserved.
    pub available_spare: u8,
    pub read_only: bool,
}

impl FtlStats {
    /// Write amplification: NAND pages programmed per host page written.
    pub fn waf(&self) -> f64 {
        if self.host_pages_written == 0 {
            0.0
        } else {
            self.nand_pages_written as f64 / self.host_pages_written as f64
        }
    }
}

impl Engine {
    pub fn erase_counts(&self) -> Vec<u32> {
        self.blocks
            .iter()
            .filter(|b| b.kind != BlockKind::Bad)
            .map(|b| b.erase_count)
            .collect()
    }

    pub fn stats(&self, logical_pages: u64, host_pages_read: u64) -> FtlStats {
        let counts: Vec<u32> = self
            .blocks
            .iter()
            .filter(|b| b.kind != BlockKind::Bad)
            .map(|b| b.erase_count)
            .collect();
        let n = counts.len().max(1) as f64;
        let mean = counts.iter().map(|&c| f64::from(c)).sum::<f64>() / n;
        let var = counts
            .iter()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / n;
        let c = self.counters;
        let spare_left = self.spare_blocks.saturating_sub(self.grown_bad_blocks);
        FtlStats {
            logical_pages,
            host_pages_written: c.host_pages_written,
            host_pages_read,
            nand_pages_written: c.nand_pages_written,
            gc_runs: c.gc_runs,
            gc_pages_moved: c.gc_pages_moved,
            wl_runs: c.wl_runs,
            wl_pages_moved: c.wl_pages_moved,
            foreground_gc_stalls: self.foreground_gc_stalls,
            trims: c.trims,
            erase_count_min: counts.iter().copied().min().unwrap_or(0),
            erase_count_max: counts.iter().copied().max().unwrap_or(0),
            erase_count_mean: mean,
            erase_count_stddev: var.sqrt(),
            free_blocks: self.free.count(),
            factory_bad_blocks: self.factory_bad_blocks,
            grown_bad_blocks: self.grown_bad_blocks,
            spare_blocks: self.spare_blocks,
            percentage_used: (mean * 100.0 / f64::from(self.config.endurance_cycles)).min(255.0)
                as u8,
            available_spare: (u64::from(spare_left) * 100 / u64::from(self.spare_blocks.max(1)))
                as u8,
            read_only: self.read_only.is_some(),
        }
    }
}
