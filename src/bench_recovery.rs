//! `ferrite bench recovery`: how long `Ftl::open` takes after a clean close, after a crash that
//! followed a 5% random overwrite, and after a crash with only format's empty checkpoint (every
//! block folded), against the targets of the issue: with 8 devices and 16 GiB logical, a clean
//! open under 200 ms and a crash open under 3 s.
//!
//! Steps: size a geometry whose logical capacity is at least the target; format; fill every
//! logical page once sequentially; close (checkpoint); reopen (clean open); overwrite a random 5%
//! of the pages and drop the FTL without closing; reopen (crash open); format again, fill, drop
//! without closing; reopen (full fold). After each reopen a sample of pages is read back and
//! checked against the page number and generation stamped in it.
//!
//! A "crash" here is a drop of the `Ftl` without `close`: everything the FTL programmed stays on
//! the devices (a `FileNand` keeps it in its file, the RAM devices are reused as they are), but no
//! checkpoint covers it, so recovery must fold in every block written since the last checkpoint.

use crate::progress::Progress;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use ftl::nand::{Geometry, Nand};
use ftl::{Ftl, FtlConfig, RecoveryReport};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::bench_ftl::{Backend, devices};
use crate::glue;

pub const PAGE_SIZE: usize = 4096;
/// The targets, for the default 8 devices and 16 GiB logical.
pub const CLEAN_OPEN_TARGET_MS: f64 = 200.0;
pub const CRASH_OPEN_TARGET_MS: f64 = 3000.0;
const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Clone, Debug)]
pub struct RecoveryParams {
    pub devices: u32,
    /// Logical capacity to reach at least, in bytes.
    pub logical_bytes: u64,
    pub pages_per_block: u32,
    pub backend: Backend,
    /// Where the device files go with the file backend.
    pub dir: PathBuf,
    /// Keep the device files at the end.
    pub keep: bool,
    /// Share of the logical pages overwritten before the crash.
    pub rewrite: f64,
    /// Pages read back and checked after each reopen.
    pub verify_pages: u64,
    pub seed: u64,
    pub progress: bool,
}

/// One reopen: wall-clock time of `Ftl::open` and what recovery reported.
#[derive(Clone, Debug, Serialize)]
pub struct OpenFigures {
    /// Wall clock around `Ftl::open` (the devices already open).
    pub open_ms: f64,
    /// Opening the device files (file backend; 0 for RAM devices), not counted in `open_ms`.
    pub devices_open_ms: f64,
    pub recovery: RecoveryReport,
    /// Pages read back and checked after the open.
    pub verified_pages: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecoveryBenchReport {
    pub backend: String,
    pub devices: u32,
    /// Blocks over all devices.
    pub blocks: u32,
    pub pages_per_block: u32,
    pub geometry: Geometry,
    pub logical_pages: u64,
    pub logical_gib: f64,
    pub fill_s: f64,
    pub fill_mib_s: f64,
    /// The clean close after the first fill (flush, device sync, checkpoint).
    pub close_ms: f64,
    pub clean_open_ms: f64,
    pub clean_open: OpenFigures,
    pub rewritten_pages: u64,
    pub crash_open_ms: f64,
    pub crash_open: OpenFigures,
    pub full_fold_fill_mib_s: f64,
    pub full_fold_open_ms: f64,
    pub full_fold_open: OpenFigures,
    pub clean_open_target_ms: f64,
    pub crash_open_target_ms: f64,
    pub clean_open_target_met: bool,
    pub crash_open_target_met: bool,
    pub elapsed_s: f64,
}

impl fmt::Display for RecoveryBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let met = |ok: bool| if ok { "met" } else { "MISSED" };
        let g = &self.geometry;
        writeln!(
            f,
            "bench recovery: {} devices x {}x{} dies x {} blocks x {} pages ({} blocks), {} backend",
            self.devices,
            g.channels,
            g.dies_per_channel,
            g.blocks_per_plane,
            g.pages_per_block,
            self.blocks,
            self.backend
        )?;
        writeln!(
            f,
            "  logical:         {:.2} GiB ({} pages)",
            self.logical_gib, self.logical_pages
        )?;
        writeln!(
            f,
            "  fill:            {:.1} s, {:.1} MiB/s; clean close {:.0} ms",
            self.fill_s, self.fill_mib_s, self.close_ms
        )?;
        let line = |f: &mut fmt::Formatter<'_>,
                    name: &str,
                    o: &OpenFigures,
                    target: Option<f64>| {
            let r = &o.recovery;
            write!(
                f,
                "  {name:<16} {:>9.1} ms (recovery {:.1} ms; {} blocks surveyed, {} folded, {} pages read, checkpoint {}, {} unresolved; {} pages verified)",
                o.open_ms,
                r.elapsed_ms,
                r.blocks_surveyed,
                r.blocks_folded,
                r.pages_read,
                r.checkpoint_id,
                r.pointers_unresolved,
                o.verified_pages
            )?;
            match target {
                Some(t) => writeln!(f, "  target < {t:.0} ms: {}", met(o.open_ms < t)),
                None => writeln!(f),
            }
        };
        line(
            f,
            "clean open:",
            &self.clean_open,
            Some(self.clean_open_target_ms),
        )?;
        line(
            f,
            &format!("crash open ({:.0}%):", self.rewrite_percent()),
            &self.crash_open,
            Some(self.crash_open_target_ms),
        )?;
        line(f, "full-fold open:", &self.full_fold_open, None)?;
        write!(
            f,
            "  ({} pages rewritten before the crash; second fill {:.1} MiB/s; {:.1} s in all)",
            self.rewritten_pages, self.full_fold_fill_mib_s, self.elapsed_s
        )
    }
}

impl RecoveryBenchReport {
    fn rewrite_percent(&self) -> f64 {
        if self.logical_pages == 0 {
            0.0
        } else {
            100.0 * self.rewritten_pages as f64 / self.logical_pages as f64
        }
    }
}

/// Exported logical pages of an FTL over `blocks` good blocks, as `ftl::engine::logical_pages_for`
/// computes them, with a margin on the fixed overhead (the real figure is checked after format).
fn estimated_logical_pages(config: &FtlConfig, blocks: u32, pages_per_block: u32) -> u64 {
    let spare = ((f64::from(blocks) * config.spare_ratio).ceil() as u32).max(1);
    let usable = u64::from(blocks.saturating_sub(spare));
    let data_pages = u64::from(pages_per_block - 1);
    let physical = usable * data_pages;
    let by_ratio = (physical as f64 / (1.0 + config.op_ratio)).floor() as u64;
    let checkpoint_bytes = ftl::format::checkpoint::stream_bytes(physical, blocks) as u64;
    let checkpoint_blocks = checkpoint_bytes
        .div_ceil(PAGE_SIZE as u64)
        .div_ceil(u64::from(pages_per_block));
    // Streams, trim log, two checkpoints, GC reserve, a victim's worth: 4 + 1 + 2c + 2 + 1, plus slack.
    let overhead = 12 + 2 * checkpoint_blocks;
    let by_overhead = usable.saturating_sub(overhead) * data_pages;
    by_ratio.min(by_overhead)
}

/// The smallest geometry of 2 channels x 2 dies x 1 plane per device whose estimated logical
/// capacity reaches `target_pages`, growing from `min_blocks_per_plane`.
fn geometry_for_target(
    config: &FtlConfig,
    devices: u32,
    pages_per_block: u32,
    target_pages: u64,
    min_blocks_per_plane: u32,
) -> anyhow::Result<Geometry> {
    ensure!(devices > 0, "--devices must be at least 1");
    ensure!(pages_per_block >= 4, "--pages-per-block must be at least 4");
    let planes = devices * 4;
    let data_pages = u64::from(pages_per_block - 1);
    // A first guess from the ratio alone, then up until the estimate reaches the target.
    let guess = (target_pages as f64 * (1.0 + config.op_ratio)
        / data_pages as f64
        / (1.0 - config.spare_ratio)
        / f64::from(planes))
    .floor() as u32;
    let mut per_plane = guess.max(min_blocks_per_plane).max(1);
    while estimated_logical_pages(config, per_plane * planes, pages_per_block) < target_pages {
        per_plane += 1;
        ensure!(per_plane <= 1 << 20, "no geometry reaches the logical size");
    }
    devices::geometry_for(devices, per_plane * planes, pages_per_block, 4096)
}

/// The bench's device set: RAM devices (kept across reopens), or device files under a directory.
struct DeviceSet {
    backend: Backend,
    dir: PathBuf,
    count: u32,
    mem: Vec<Arc<dyn Nand>>,
}

impl DeviceSet {
    fn create(params: &RecoveryParams, geometry: Geometry) -> anyhow::Result<Self> {
        let mem = match params.backend {
            Backend::Mem => devices::mem_devices(geometry, params.devices)?,
            Backend::File => {
                glue::file_devices(&params.dir, geometry, params.devices)?;
                Vec::new()
            }
        };
        Ok(Self {
            backend: params.backend,
            dir: params.dir.clone(),
            count: params.devices,
            mem,
        })
    }

    /// The devices as they are now on their medium, and how long opening them took.
    fn open(&self) -> anyhow::Result<(Vec<Arc<dyn Nand>>, f64)> {
        let t = Instant::now();
        let devs = match self.backend {
            Backend::Mem => self.mem.clone(),
            Backend::File => glue::open_file_devices(&self.dir, self.count)?,
        };
        Ok((devs, t.elapsed().as_secs_f64() * 1e3))
    }
}

fn stamp(buf: &mut [u8], lpa: u64, generation: u64) {
    buf[..8].copy_from_slice(&lpa.to_le_bytes());
    buf[8..16].copy_from_slice(&generation.to_le_bytes());
}

fn stamped(buf: &[u8]) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&buf[..8]);
    b.copy_from_slice(&buf[8..16]);
    (u64::from_le_bytes(a), u64::from_le_bytes(b))
}

/// Writes every logical page once, sequentially; returns the seconds it took.
fn fill(ftl: &Ftl, generation: u64, progress: &mut Progress) -> anyhow::Result<f64> {
    let logical = ftl.logical_pages();
    let mut buf = vec![0xa5u8; PAGE_SIZE];
    let t = Instant::now();
    for lpa in 0..logical {
        stamp(&mut buf, lpa, generation);
        ftl.write(lpa, &buf, false)
            .with_context(|| format!("fill: write of lpa {lpa}"))?;
        if lpa % 1024 == 0 {
            progress.percent("fill", lpa, logical);
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Reads `count` random pages and checks the stamp: the page number and `generation(lpa)`.
fn verify(
    ftl: &Ftl,
    count: u64,
    rng: &mut ChaCha8Rng,
    generation: impl Fn(u64) -> u64,
) -> anyhow::Result<u64> {
    let logical = ftl.logical_pages();
    let count = count.min(logical);
    let mut buf = vec![0u8; PAGE_SIZE];
    for _ in 0..count {
        let lpa = rng.random_range(0..logical);
        ftl.read(lpa, &mut buf)
            .with_context(|| format!("verify: read of lpa {lpa}"))?;
        let got = stamped(&buf);
        let want = (lpa, generation(lpa));
        if got != want {
            bail!("verify: lpa {lpa} holds (page, generation) {got:?}, expected {want:?}",);
        }
    }
    Ok(count)
}

fn open_timed(
    set: &DeviceSet,
    config: &FtlConfig,
    progress: &Progress,
    what: &str,
) -> anyhow::Result<(Ftl, OpenFigures)> {
    let (devs, devices_open_ms) = set.open().context("opening the devices")?;
    let t = Instant::now();
    let (ftl, recovery) =
        Ftl::open(devs, config.clone()).with_context(|| format!("{what}: Ftl::open"))?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    progress.say(format_args!(
        "{what}: open {open_ms:.1} ms ({} blocks folded, {} pages read)",
        recovery.blocks_folded, recovery.pages_read
    ));
    Ok((
        ftl,
        OpenFigures {
            open_ms,
            devices_open_ms,
            recovery,
            verified_pages: 0,
        },
    ))
}

fn mib_s(pages: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        pages as f64 * PAGE_SIZE as f64 / MIB / secs
    } else {
        0.0
    }
}

/// Runs the whole bench. The device directory (file backend) is removed at the end unless
/// `params.keep`, also when a step fails.
pub fn run(params: &RecoveryParams) -> anyhow::Result<RecoveryBenchReport> {
    let result = run_inner(params);
    if params.backend == Backend::File && !params.keep {
        remove_device_files(&params.dir, params.devices);
    }
    result
}

fn remove_device_files(dir: &Path, count: u32) {
    for i in 0..count {
        let _ = std::fs::remove_file(glue::device_path(dir, i));
    }
    // Only if nothing else is left in it.
    let _ = std::fs::remove_dir(dir);
}

fn run_inner(params: &RecoveryParams) -> anyhow::Result<RecoveryBenchReport> {
    let start = Instant::now();
    let config = FtlConfig::default();
    let target_pages = params.logical_bytes.div_ceil(PAGE_SIZE as u64);
    ensure!(target_pages > 0, "the logical size must be positive");
    ensure!(
        (0.0..=1.0).contains(&params.rewrite),
        "the rewrite share must be in [0, 1]"
    );
    let mut progress = Progress::new(params.progress);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);

    // Size the geometry; the estimate is checked against what format exports.
    let mut min_per_plane = 1;
    let (geometry, set, ftl) = loop {
        let geometry = geometry_for_target(
            &config,
            params.devices,
            params.pages_per_block,
            target_pages,
            min_per_plane,
        )?;
        let set = DeviceSet::create(params, geometry)?;
        let (devs, _) = set.open()?;
        let ftl = Ftl::format(devs, config.clone()).context("format")?;
        if ftl.logical_pages() >= target_pages {
            break (geometry, set, ftl);
        }
        drop(ftl);
        min_per_plane = geometry.blocks_per_plane + geometry.blocks_per_plane.div_ceil(50);
    };
    let logical = ftl.logical_pages();
    let blocks = geometry.blocks() * params.devices;
    progress.say(format_args!(
        "geometry: {} devices x {} blocks x {} pages; logical {:.2} GiB ({logical} pages)",
        params.devices,
        geometry.blocks(),
        geometry.pages_per_block,
        logical as f64 * PAGE_SIZE as f64 / GIB
    ));

    // 1. Fill, clean close, clean open.
    let fill_s = fill(&ftl, 0, &mut progress)?;
    let fill_mib_s = mib_s(logical, fill_s);
    progress.say(format_args!(
        "fill: {fill_s:.1} s, {fill_mib_s:.1} MiB/s; closing"
    ));
    let t = Instant::now();
    ftl.close().context("close after the fill")?;
    let close_ms = t.elapsed().as_secs_f64() * 1e3;
    let (ftl, mut clean) = open_timed(&set, &config, &progress, "clean open")?;
    ensure!(
        ftl.logical_pages() == logical,
        "the reopened FTL exports {} pages, not {logical}",
        ftl.logical_pages()
    );
    clean.verified_pages = verify(&ftl, params.verify_pages, &mut rng, |_| 0)?;

    // 2. Overwrite a random share of the pages (distinct ones), then crash: drop without close.
    let rewritten_pages = ((logical as f64 * params.rewrite).round() as u64).min(logical);
    let mut order: Vec<u32> = (0..logical as u32).collect();
    let mut rewritten = vec![false; logical as usize];
    let mut buf = vec![0x5au8; PAGE_SIZE];
    for n in 0..rewritten_pages as usize {
        let pick = rng.random_range(n..order.len());
        order.swap(n, pick);
        let lpa = u64::from(order[n]);
        stamp(&mut buf, lpa, 1);
        ftl.write(lpa, &buf, false)
            .with_context(|| format!("rewrite of lpa {lpa}"))?;
        rewritten[lpa as usize] = true;
        if n % 1024 == 0 {
            progress.percent("rewrite", n as u64, rewritten_pages);
        }
    }
    drop(order);
    drop(ftl);
    let (ftl, mut crash) = open_timed(&set, &config, &progress, "crash open")?;
    crash.verified_pages = verify(&ftl, params.verify_pages, &mut rng, |lpa| {
        u64::from(rewritten[lpa as usize])
    })?;
    // The rewritten pages themselves, in particular (a sample of them).
    let mut checked = 0;
    for &lpa in rewritten
        .iter()
        .enumerate()
        .filter(|&(_, &r)| r)
        .map(|(lpa, _)| lpa as u64)
        .collect::<Vec<_>>()
        .iter()
        .step_by((rewritten_pages / params.verify_pages.max(1)).max(1) as usize)
    {
        ftl.read(lpa, &mut buf)
            .with_context(|| format!("verify: read of rewritten lpa {lpa}"))?;
        ensure!(
            stamped(&buf) == (lpa, 1),
            "verify: rewritten lpa {lpa} holds {:?}",
            stamped(&buf)
        );
        checked += 1;
    }
    crash.verified_pages += checked;
    drop(rewritten);
    drop(ftl);

    // 3. Full fold: format, fill, crash; only format's empty checkpoint is on the devices.
    let (devs, _) = set.open()?;
    let ftl = Ftl::format(devs, config.clone()).context("second format")?;
    ensure!(
        ftl.logical_pages() == logical,
        "second format: size changed"
    );
    let fill2_s = fill(&ftl, 2, &mut progress)?;
    let full_fold_fill_mib_s = mib_s(logical, fill2_s);
    progress.say(format_args!(
        "second fill: {fill2_s:.1} s, {full_fold_fill_mib_s:.1} MiB/s; crashing"
    ));
    drop(ftl);
    let (ftl, mut full) = open_timed(&set, &config, &progress, "full-fold open")?;
    full.verified_pages = verify(&ftl, params.verify_pages, &mut rng, |_| 2)?;
    drop(ftl);

    let report = RecoveryBenchReport {
        backend: format!("{:?}", params.backend).to_lowercase(),
        devices: params.devices,
        blocks,
        pages_per_block: geometry.pages_per_block,
        geometry,
        logical_pages: logical,
        logical_gib: logical as f64 * PAGE_SIZE as f64 / GIB,
        fill_s,
        fill_mib_s,
        close_ms,
        clean_open_ms: clean.open_ms,
        clean_open_target_met: clean.open_ms < CLEAN_OPEN_TARGET_MS,
        clean_open: clean,
        rewritten_pages,
        crash_open_ms: crash.open_ms,
        crash_open_target_met: crash.open_ms < CRASH_OPEN_TARGET_MS,
        crash_open: crash,
        full_fold_fill_mib_s,
        full_fold_open_ms: full.open_ms,
        full_fold_open: full,
        clean_open_target_ms: CLEAN_OPEN_TARGET_MS,
        crash_open_target_ms: CRASH_OPEN_TARGET_MS,
        elapsed_s: start.elapsed().as_secs_f64(),
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_reaches_the_target() {
        let config = FtlConfig::default();
        let target = 16u64 << 30 >> 12;
        let g = geometry_for_target(&config, 8, 256, target, 1).expect("geometry");
        assert_eq!(
            (g.channels, g.dies_per_channel, g.planes_per_die),
            (2, 2, 1)
        );
        let blocks = g.blocks() * 8;
        assert!(estimated_logical_pages(&config, blocks, 256) >= target);
        // Not much more than needed: one block per plane less falls short.
        assert!(estimated_logical_pages(&config, blocks - 32, 256) < target);
    }

    #[test]
    fn small_mem_run_verifies_and_reports() {
        let params = RecoveryParams {
            devices: 2,
            logical_bytes: 4 << 20,
            pages_per_block: 16,
            backend: Backend::Mem,
            dir: PathBuf::from("unused"),
            keep: false,
            rewrite: 0.05,
            verify_pages: 500,
            seed: 3,
            progress: false,
        };
        let r = run(&params).expect("bench");
        assert!(r.logical_pages >= 1024, "{}", r.logical_pages);
        assert!(r.clean_open.recovery.clean);
        assert_eq!(r.clean_open.recovery.blocks_folded, 0);
        assert!(r.crash_open.recovery.blocks_folded > 0);
        assert!(r.full_fold_open.recovery.blocks_folded >= r.crash_open.recovery.blocks_folded);
        assert_eq!(r.crash_open.recovery.pointers_unresolved, 0);
        assert!(r.to_string().contains("clean open:"));
    }
}
