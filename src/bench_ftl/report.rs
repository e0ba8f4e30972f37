//! What `bench ftl` reports: one JSON object, or the same facts for a person.

use std::fmt;

use serde::Serialize;

/// Counters are over the measured phase (after the fill); erase counts, free and bad blocks are
/// the state at its end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub op: f64,
    pub fill: f64,
    pub devices: u32,
    pub blocks: u32,
    pub pages_per_block: u32,
    /// NAND page bytes (logical pages are 4 KiB).
    pub page_size: u32,
    pub static_wear_leveling: bool,
    pub stream_separation: bool,
    pub encrypted: bool,
    pub gc_policy: String,
    pub backend: String,
    pub seed: u64,
    pub logical_pages: u64,
    pub fill_pages: u64,
    pub waf: f64,
    pub host_pages_written: u64,
    pub nand_pages_written: u64,
    pub gc_runs: u64,
    pub gc_pages_moved: u64,
    /// Host writes of the measured phase that waited for foreground GC.
    pub foreground_gc_stalls: u64,
    pub erase_count_min: u64,
    pub erase_count_max: u64,
    pub erase_count_mean: f64,
    pub erase_count_stddev: f64,
    pub free_blocks: u64,
    pub bad_blocks: u64,
    pub host_write_mib_s: f64,
    pub read_pages: u64,
    /// Reads issued together (`--read-batch`).
    pub read_batch: usize,
    pub read_pages_per_s: f64,
    pub fill_s: f64,
    pub write_s: f64,
    pub read_s: f64,
    pub elapsed_s: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bench ftl: {} over {} devices, {} blocks x {} pages of {} KiB, op {}, gc {}, \
             static-wl {}, streams {}",
            self.workload,
            self.devices,
            self.blocks,
            self.pages_per_block,
            self.page_size / 1024,
            self.op,
            self.gc_policy,
            self.static_wear_leveling,
            self.stream_separation
        )?;
        writeln!(
            f,
            "  logical pages     {} ({} filled in {:.1} s)",
            self.logical_pages, self.fill_pages, self.fill_s
        )?;
        writeln!(
            f,
            "  write amplification {:.3}  ({} NAND / {} host pages, {} GC runs moved {} pages; \
             {} writes waited for foreground GC)",
            self.waf,
            self.nand_pages_written,
            self.host_pages_written,
            self.gc_runs,
            self.gc_pages_moved,
            self.foreground_gc_stalls
        )?;
        writeln!(
            f,
            "  erase counts      min {} max {} mean {:.1} stddev {:.2}; {} free, {} bad blocks",
            self.erase_count_min,
            self.erase_count_max,
            self.erase_count_mean,
            self.erase_count_stddev,
            self.free_blocks,
            self.bad_blocks
        )?;
        writeln!(
            f,
            "  host writes       {:.1} MiB/s over {:.1} s",
            self.host_write_mib_s, self.write_s
        )?;
        write!(
            f,
            "  random reads      {:.0} pages/s ({} pages, {} at a time); total {:.1} s",
            self.read_pages_per_s, self.read_pages, self.read_batch, self.elapsed_s
        )
    }
}
