//! Where the CLI meets `ftl::Ftl`. The FTL is not on this branch yet, so these entry points report
//! that clearly; on merge, replace their bodies with the code below (about 60 lines).
//!
//! ```ignore
//! use ftl::{Ftl, FtlConfig, FtlError, FtlStats, GcPolicy};
//!
//! impl From<FtlError> for TargetError {
//!     fn from(e: FtlError) -> Self {
//!         match e {
//!             FtlError::ReadOnly => TargetError::ReadOnly,
//!             FtlError::Media { lpa } => TargetError::Media { lpa },
//!             FtlError::OutOfRange { lpa } => TargetError::OutOfRange { lpa },
//!             FtlError::PowerLost => TargetError::PowerLost,
//!             other => TargetError::Other(other.to_string()),
//!         }
//!     }
//! }
//!
//! fn config(o: &FtlOptions) -> FtlConfig {
//!     FtlConfig {
//!         op_ratio: o.op_ratio,
//!         static_wear_leveling: o.static_wear_leveling,
//!         stream_separation: o.stream_separation,
//!         gc_policy: match o.gc_policy {
//!             GcChoice::Greedy => GcPolicy::Greedy,
//!             GcChoice::CostBenefit => GcPolicy::CostBenefit,
//!         },
//!         ..FtlConfig::default()
//!     }
//! }
//!
//! impl SimTarget for Ftl {
//!     fn logical_pages(&self) -> u64 { Ftl::logical_pages(self) }
//!     fn read(&self, lpa: u64, buf: &mut [u8]) -> Result<(), TargetError> { Ok(Ftl::read(self, lpa, buf)?) }
//!     fn write(&self, lpa: u64, data: &[u8], durable: bool) -> Result<(), TargetError> { Ok(Ftl::write(self, lpa, data, durable)?) }
//!     fn trim(&self, lpa: u64, count: u64) -> Result<(), TargetError> { Ok(Ftl::trim(self, lpa, count)?) }
//!     fn write_zeroes(&self, lpa: u64, count: u64) -> Result<(), TargetError> { Ok(Ftl::write_zeroes(self, lpa, count)?) }
//!     fn flush(&self) -> Result<(), TargetError> { Ok(Ftl::flush(self)?) }
//! }
//!
//! impl BenchTarget for Ftl {
//!     fn stats(&self) -> TargetStats {
//!         let s: FtlStats = Ftl::stats(self);
//!         TargetStats {
//!             host_pages_written: s.host_pages_written,
//!             nand_pages_written: s.nand_pages_written,
//!             gc_runs: s.gc_runs,
//!             gc_pages_moved: s.gc_pages_moved,
//!             erase_count_min: s.erase_count_min.into(),
//!             erase_count_max: s.erase_count_max.into(),
//!             erase_count_mean: s.erase_count_mean,
//!             erase_count_stddev: s.erase_count_stddev,
//!             free_blocks: s.free_blocks as u64,
//!             bad_blocks: s.bad_blocks as u64,
//!             percentage_used: s.percentage_used as f64,
//!             available_spare: s.available_spare as f64,
//!         }
//!     }
//! }
//!
//! pub fn sim_on_ftl(seeds: Range<u64>, verbose: bool, progress: bool)
//!     -> anyhow::Result<(SimSummary, Option<SeedFailure>)> {
//!     let mut factory = FnFactory::new(
//!         |devices, o: &FtlOptions| Ftl::format(devices, config(o)).map_err(TargetError::from),
//!         |devices, o: &FtlOptions| Ftl::open(devices, config(o))
//!             .map(|(ftl, _recovery)| ftl)
//!             .map_err(TargetError::from),
//!         |ftl: Ftl| ftl.close().map_err(TargetError::from),
//!     );
//!     Ok(sim::run_seeds(&mut factory, seeds, verbose, progress))
//! }
//!
//! pub fn bench_on_ftl(devices: Vec<Arc<dyn Nand>>, params: &BenchParams) -> anyhow::Result<BenchReport> {
//!     let ftl = Ftl::format(devices, config(&params.options)).context("format")?;
//!     let report = bench_ftl::run(&ftl, params)?;
//!     ftl.close().context("close")?;
//!     Ok(report)
//! }
//!
//! pub fn file_devices(dir: &Path, geometry: Geometry, count: u32) -> anyhow::Result<Vec<Arc<dyn Nand>>> {
//!     // FileNand::create(path, geometry, FaultConfig::none().for_device(i), None) for i in 0..count,
//!     // one file per device under `dir` (whatever FileNand's constructor turns out to be).
//! }
//! ```

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use ftl::nand::{Geometry, Nand};

use crate::bench_ftl::{BenchParams, BenchReport};
use crate::sim::{SeedFailure, SimSummary};

const NOT_MERGED: &str = "ftl::Ftl is not in this build yet (see src/glue.rs); \
                          use `--target fake` to exercise the harness";

pub fn sim_on_ftl(
    _seeds: Range<u64>,
    _verbose: bool,
    _progress: bool,
) -> anyhow::Result<(SimSummary, Option<SeedFailure>)> {
    bail!(NOT_MERGED)
}

pub fn bench_on_ftl(
    _devices: Vec<Arc<dyn Nand>>,
    _params: &BenchParams,
) -> anyhow::Result<BenchReport> {
    bail!(NOT_MERGED)
}

pub fn file_devices(
    dir: &Path,
    _geometry: Geometry,
    _count: u32,
) -> anyhow::Result<Vec<Arc<dyn Nand>>> {
    bail!(
        "the file backend (ftl::nand::FileNand, devices under {}) is not in this build yet",
        dir.display()
    )
}
