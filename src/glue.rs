//! Where the CLI meets `ftl::Ftl`: the target traits, the configuration mapping, and device sets.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ftl::nand::{FaultConfig, FileDurability, FileErase, FileNand, Geometry, Nand};
use ftl::{Ftl, FtlConfig, FtlError, GcPolicy};

use crate::bench_ftl::{self, BenchParams, BenchReport};
use crate::sim::{self, SeedFailure, SimSummary};
use crate::target::{
    BenchTarget, FnFactory, FtlOptions, GcChoice, SimTarget, TargetError, TargetStats,
};

impl From<FtlError> for TargetError {
    fn from(e: FtlError) -> Self {
        match e {
            FtlError::ReadOnly { .. } => TargetError::ReadOnly,
            FtlError::Media { lpa, .. } => TargetError::Media { lpa },
            FtlError::OutOfRange { lpa, .. } => TargetError::OutOfRange { lpa },
            FtlError::PowerLost => TargetError::PowerLost,
            other => TargetError::Other(other.to_string()),
        }
    }
}

pub fn config(o: &FtlOptions) -> FtlConfig {
    FtlConfig {
        op_ratio: o.op_ratio,
        static_wear_leveling: o.static_wear_leveling,
        stream_separation: o.stream_separation,
        gc_policy: match o.gc_policy {
            GcChoice::Greedy => GcPolicy::Greedy,
            GcChoice::CostBenefit => GcPolicy::CostBenefit,
        },
        ..FtlConfig::default()
    }
}

impl SimTarget for Ftl {
    fn logical_pages(&self) -> u64 {
        Ftl::logical_pages(self)
    }

    fn read(&self, lpa: u64, buf: &mut [u8]) -> Result<(), TargetError> {
        Ok(Ftl::read(self, lpa, buf)?)
    }

    fn write(&self, lpa: u64, data: &[u8], durable: bool) -> Result<(), TargetError> {
        Ok(Ftl::write(self, lpa, data, durable)?)
    }

    fn trim(&self, lpa: u64, count: u64) -> Result<(), TargetError> {
        Ok(Ftl::trim(self, lpa, count)?)
    }

    fn write_zeroes(&self, lpa: u64, count: u64) -> Result<(), TargetError> {
        Ok(Ftl::write_zeroes(self, lpa, count)?)
    }

    fn flush(&self) -> Result<(), TargetError> {
        Ok(Ftl::flush(self)?)
    }
}

impl BenchTarget for Ftl {
    fn read_many(&self, lpas: &[u64], out: &mut [u8]) -> Result<(), TargetError> {
        let mut results = Vec::with_capacity(lpas.len());
        Ftl::read_many(self, lpas, out, &mut results);
        for r in results {
            r?;
        }
        Ok(())
    }

    fn stats(&self) -> TargetStats {
        let s = Ftl::stats(self);
        TargetStats {
            host_pages_written: s.host_pages_written,
            nand_pages_written: s.nand_pages_written,
            gc_runs: s.gc_runs,
            gc_pages_moved: s.gc_pages_moved,
            foreground_gc_stalls: s.foreground_gc_stalls,
            erase_count_min: s.erase_count_min.into(),
            erase_count_max: s.erase_count_max.into(),
            erase_count_mean: s.erase_count_mean,
            erase_count_stddev: s.erase_count_stddev,
            free_blocks: s.free_blocks.into(),
            bad_blocks: u64::from(s.factory_bad_blocks + s.grown_bad_blocks),
            percentage_used: f64::from(s.percentage_used),
            available_spare: f64::from(s.available_spare),
        }
    }
}

pub fn sim_on_ftl(
    seeds: Range<u64>,
    verbose: bool,
    progress: bool,
) -> anyhow::Result<(SimSummary, Option<SeedFailure>)> {
    let mut factory = FnFactory::new(
        |devices, o: &FtlOptions| Ftl::format(devices, config(o)).map_err(TargetError::from),
        |devices, o: &FtlOptions| {
            Ftl::open(devices, config(o))
                .map(|(ftl, _recovery)| ftl)
                .map_err(TargetError::from)
        },
        |ftl: Ftl| ftl.close().map_err(TargetError::from),
    );
    Ok(sim::run_seeds(&mut factory, seeds, verbose, progress))
}

/// `sim_on_ftl` with the GC scheduler attached (`sim_gc.rs`).
pub fn sim_on_scheduled_ftl(
    seeds: Range<u64>,
    verbose: bool,
    progress: bool,
) -> anyhow::Result<(SimSummary, Option<SeedFailure>)> {
    use crate::sim_gc::{ScheduledFtl, WL_THRESHOLD_CYCLES, timed};
    // A spread of a few erases already starts static wear leveling, and with it the background
    // checkpoint: a simulated seed erases each block only a few times.
    let config = |o: &FtlOptions| FtlConfig {
        wl_threshold_cycles: WL_THRESHOLD_CYCLES,
        ..config(o)
    };
    let mut factory = FnFactory::new(
        |devices, o: &FtlOptions| {
            let (devices, timing, clock) = timed(devices)?;
            let ftl = Ftl::format(devices, config(o))?;
            ScheduledFtl::new(ftl, timing, clock)
        },
        |devices, o: &FtlOptions| {
            let (devices, timing, clock) = timed(devices)?;
            let (ftl, _recovery) = Ftl::open(devices, config(o))?;
            ScheduledFtl::new(ftl, timing, clock)
        },
        |target: ScheduledFtl| target.into_ftl().close().map_err(TargetError::from),
    );
    Ok(sim::run_seeds(&mut factory, seeds, verbose, progress))
}

pub fn bench_on_ftl(
    devices: Vec<Arc<dyn Nand>>,
    params: &BenchParams,
    svg: Option<&Path>,
) -> anyhow::Result<BenchReport> {
    let key = params
        .encrypt
        .then(|| keys::InstanceKey::generate(keys::Backend::AwsLc))
        .transpose()
        .context("instance key")?;
    let sealer = key.as_ref().map(|k| k.sealer(0));
    let ftl = Ftl::format_sealed(devices, config(&params.options), sealer).context("format")?;
    let report = bench_ftl::run(&ftl, params)?;
    if let Some(path) = svg {
        let title = format!(
            "Erase counts after {}: {} blocks, WAF {:.2}",
            params.workload, params.blocks, report.waf
        );
        std::fs::write(path, crate::svg::histogram(&title, &ftl.erase_counts()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    ftl.close().context("close")?;
    Ok(report)
}

/// The file of device `index` under `dir`.
pub fn device_path(dir: &Path, index: u32) -> std::path::PathBuf {
    dir.join(format!("nand-{index}.img"))
}

/// One `FileNand` per device under `dir` (`nand-0.img`, ...), created fresh.
pub fn file_devices(
    dir: &Path,
    geometry: Geometry,
    count: u32,
) -> anyhow::Result<Vec<Arc<dyn Nand>>> {
    file_devices_with(dir, geometry, count, FileModes::default())
}

/// What a device file's `sync` survives and what its erases leave (`ftl::nand::FileDurability`,
/// `ftl::nand::FileErase`); the default: disk flushes, erases drop the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileModes {
    pub durability: FileDurability,
    pub erase: FileErase,
}

impl FileModes {
    /// Sealed instance storage: its RAM-only key is gone after a host failure, and with it every
    /// byte, so syncs need reach only the page cache and erases may leave the ciphertext in place.
    pub const SEALED: Self = Self {
        durability: FileDurability::Process,
        erase: FileErase::KeepData,
    };

    /// Unsealed data served by `ferrite serve`: it outlives the host, so syncs reach the disk; its
    /// erases leave the data bytes until programmed over, as sealed ones do. Zeroing a block's
    /// megabyte at each erase, and allocating its page cache again at the next programs, was 40%
    /// of a random write's CPU (`benches/vhost_vs_qsd`, docs/nvme-target.md). The device never
    /// shows an erased page whatever the mode; a clean stop drops the data of every erased block
    /// (`serve::volume::drop_erased_data`), and a terminate too (`serve::erase::erase_all`), so a
    /// terminated file still holds nothing.
    pub const UNSEALED: Self = Self {
        durability: FileDurability::Host,
        erase: FileErase::KeepData,
    };

    fn apply(self, dev: &FileNand) {
        dev.store().set_durability(self.durability);
        dev.store().set_erase(self.erase);
    }
}

/// `file_devices` with `modes`.
pub fn file_devices_with(
    dir: &Path,
    geometry: Geometry,
    count: u32,
    modes: FileModes,
) -> anyhow::Result<Vec<Arc<dyn Nand>>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    (0..count)
        .map(|i| {
            let path = device_path(dir, i);
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing old {}", path.display()))?;
            }
            let dev = FileNand::create(&path, geometry, FaultConfig::none().for_device(i), None)
                .with_context(|| format!("creating {}", path.display()))?;
            modes.apply(&dev);
            Ok(Arc::new(dev) as Arc<dyn Nand>)
        })
        .collect()
}

/// Opens the `count` device files `file_devices` created under `dir`, as they are now.
pub fn open_file_devices(dir: &Path, count: u32) -> anyhow::Result<Vec<Arc<dyn Nand>>> {
    open_file_devices_with(dir, count, FileModes::default())
}

/// `open_file_devices` with `modes`.
pub fn open_file_devices_with(
    dir: &Path,
    count: u32,
    modes: FileModes,
) -> anyhow::Result<Vec<Arc<dyn Nand>>> {
    Ok(open_file_nands(dir, count, modes)?
        .into_iter()
        .map(|dev| dev as Arc<dyn Nand>)
        .collect())
}

/// `open_file_devices_with` as `FileNand`s, for what needs the file itself.
pub fn open_file_nands(
    dir: &Path,
    count: u32,
    modes: FileModes,
) -> anyhow::Result<Vec<Arc<FileNand>>> {
    (0..count)
        .map(|i| {
            let path = device_path(dir, i);
            let dev = FileNand::open(&path, FaultConfig::none().for_device(i), None)
                .with_context(|| format!("opening {}", path.display()))?;
            modes.apply(&dev);
            Ok(Arc::new(dev))
        })
        .collect()
}
