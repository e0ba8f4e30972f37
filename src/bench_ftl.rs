//! `ferrite bench ftl`: fill the FTL sequentially, overwrite it with a workload, and report write
//! amplification, wear spread and throughput of the overwrite phase, then time random reads.
//!
//! The page data is one reused buffer with the page number stamped in, so the bench measures the
//! FTL, not a data generator.

pub mod devices;
pub mod report;

use crate::progress::Progress;
use std::time::Instant;

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::args::WriteAmount;
use crate::target::{BenchTarget, FtlOptions, TargetStats};
use crate::workload::{Workload, WorkloadSpec};

pub use report::BenchReport;

pub const PAGE_SIZE: usize = 4096;

/// Where the bench's devices keep their pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Mem,
    File,
}

/// The most reads `--read-batch` issues together.
pub const READ_BATCH_MAX: usize = 64;

#[derive(Clone, Debug)]
pub struct BenchParams {
    pub workload: WorkloadSpec,
    pub options: FtlOptions,
    pub fill: f64,
    pub writes: WriteAmount,
    pub devices: u32,
    pub blocks: u32,
    pub pages_per_block: u32,
    /// NAND page bytes (4096 or 16384); logical pages are 4 KiB either way.
    pub page_size: u32,
    pub seed: u64,
    pub backend: Backend,
    /// Random reads in the last phase (capped by the number of filled pages times 4).
    pub reads: u64,
    /// Reads issued together in the read phase (`BenchTarget::read_many`), as a client with
    /// that many queued would; 1 reads one page at a time.
    pub read_batch: usize,
    /// Host pages sealed with AES-256-GCM (the target decides how; the report says so).
    pub encrypt: bool,
    pub progress: bool,
}

fn stamp(buf: &mut [u8], lpa: u64, n: u64) {
    buf[..8].copy_from_slice(&lpa.to_le_bytes());
    buf[8..16].copy_from_slice(&n.to_le_bytes());
}

fn waf(before: &TargetStats, after: &TargetStats) -> f64 {
    let host = after.host_pages_written - before.host_pages_written;
    let nand = after.nand_pages_written - before.nand_pages_written;
    if host == 0 {
        0.0
    } else {
        nand as f64 / host as f64
    }
}

fn write_page<T: BenchTarget>(target: &T, lpa: u64, buf: &[u8], done: u64) -> anyhow::Result<()> {
    target
        .write(lpa, buf, false)
        .with_context(|| format!("write of lpa {lpa} after {done} writes"))
}

/// Runs the three phases on a freshly formatted `target`.
pub fn run<T: BenchTarget>(target: &T, params: &BenchParams) -> anyhow::Result<BenchReport> {
    let start = Instant::now();
    let logical = target.logical_pages();
    if logical == 0 {
        bail!("the FTL has no logical pages");
    }
    let fill_pages = ((logical as f64 * params.fill).round() as u64).min(logical);
    let writes = params.writes.pages(logical);
    let mut buf = vec![0xa5u8; PAGE_SIZE];
    let mut progress = Progress::new(params.progress);

    // Phase 1: sequential fill.
    let t = Instant::now();
    for lpa in 0..fill_pages {
        stamp(&mut buf, lpa, lpa);
        write_page(target, lpa, &buf, lpa)?;
        progress.tick(|| format!("fill: {:.1}%", 100.0 * lpa as f64 / fill_pages as f64));
    }
    target.flush().context("flush after the fill")?;
    let fill_s = t.elapsed().as_secs_f64();
    let before = target.stats();

    // Phase 2: the measured overwrite.
    let mut workload = Workload::new(&params.workload, logical, params.seed)?;
    let t = Instant::now();
    for n in 0..writes {
        let lpa = workload.next_lpa();
        stamp(&mut buf, lpa, fill_pages + n);
        write_page(target, lpa, &buf, fill_pages + n)?;
        if n % 1024 == 0 {
            progress.tick(|| {
                format!(
                    "writes: {:.1}%, waf {:.3}",
                    100.0 * n as f64 / writes as f64,
                    waf(&before, &target.stats())
                )
            });
        }
    }
    target.flush().context("flush after the writes")?;
    let write_s = t.elapsed().as_secs_f64();
    let after = target.stats();

    // Phase 3: random reads of mapped pages (the filled range, or all pages without a fill).
    let mapped = if fill_pages > 0 { fill_pages } else { logical };
    let read_pages = if writes == 0 && fill_pages == 0 {
        0
    } else {
        params.reads.min(mapped.saturating_mul(4))
    };
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed ^ 0x7265_6164);
    let read_batch = params.read_batch.clamp(1, READ_BATCH_MAX);
    let mut lpas = Vec::with_capacity(read_batch);
    let mut read_bufs = vec![0u8; read_batch * PAGE_SIZE];
    let t = Instant::now();
    let mut read_done = 0u64;
    while read_done < read_pages {
        let n = (read_pages - read_done).min(read_batch as u64) as usize;
        lpas.clear();
        lpas.extend((0..n).map(|_| rng.random_range(0..mapped)));
        target
            .read_many(&lpas, &mut read_bufs[..n * PAGE_SIZE])
            .with_context(|| format!("reads of lpas {lpas:?}"))?;
        read_done += n as u64;
    }
    let read_s = t.elapsed().as_secs_f64();

    let host = after.host_pages_written - before.host_pages_written;
    let per_s = |count: u64, secs: f64| if secs > 0.0 { count as f64 / secs } else { 0.0 };
    Ok(BenchReport {
        workload: params.workload.to_string(),
        op: params.options.op_ratio,
        fill: params.fill,
        devices: params.devices,
        blocks: params.blocks,
        pages_per_block: params.pages_per_block,
        page_size: params.page_size,
        static_wear_leveling: params.options.static_wear_leveling,
        stream_separation: params.options.stream_separation,
        encrypted: params.encrypt,
        gc_policy: params.options.gc_policy.to_string(),
        backend: format!("{:?}", params.backend).to_lowercase(),
        seed: params.seed,
        logical_pages: logical,
        fill_pages,
        waf: waf(&before, &after),
        host_pages_written: host,
        nand_pages_written: after.nand_pages_written - before.nand_pages_written,
        gc_runs: after.gc_runs - before.gc_runs,
        gc_pages_moved: after.gc_pages_moved - before.gc_pages_moved,
        foreground_gc_stalls: after.foreground_gc_stalls - before.foreground_gc_stalls,
        erase_count_min: after.erase_count_min,
        erase_count_max: after.erase_count_max,
        erase_count_mean: after.erase_count_mean,
        erase_count_stddev: after.erase_count_stddev,
        free_blocks: after.free_blocks,
        bad_blocks: after.bad_blocks,
        host_write_mib_s: per_s(host, write_s) * PAGE_SIZE as f64 / (1024.0 * 1024.0),
        read_pages,
        read_batch,
        read_pages_per_s: per_s(read_pages, read_s),
        fill_s,
        write_s,
        read_s,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeFtl;

    fn params(writes: &str) -> BenchParams {
        BenchParams {
            workload: "hotcold:90/10".parse().expect("workload"),
            options: FtlOptions::default(),
            fill: 1.0,
            writes: writes.parse().expect("writes"),
            devices: 8,
            blocks: 64,
            pages_per_block: 16,
            page_size: 4096,
            seed: 1,
            backend: Backend::Mem,
            reads: 500,
            read_batch: 16,
            encrypt: false,
            progress: false,
        }
    }

    #[test]
    fn measures_only_the_overwrite_phase() {
        let fake = FakeFtl::standalone(1000);
        let report = run(&fake, &params("2x")).expect("bench");
        assert_eq!(report.fill_pages, 1000);
        assert_eq!(report.host_pages_written, 2000);
        assert_eq!(report.nand_pages_written, 2000);
        assert!((report.waf - 1.0).abs() < 1e-9);
        assert_eq!(report.read_pages, 500);
        assert_eq!(report.workload, "hotcold:90/10");
        let json = serde_json::to_value(&report).expect("json");
        for key in [
            "workload",
            "op",
            "devices",
            "blocks",
            "pages_per_block",
            "page_size",
            "logical_pages",
            "waf",
            "host_pages_written",
            "nand_pages_written",
            "erase_count_min",
            "erase_count_max",
            "erase_count_mean",
            "erase_count_stddev",
            "gc_runs",
            "host_write_mib_s",
            "read_pages_per_s",
            "elapsed_s",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert!(report.to_string().contains("write amplification 1.000"));
    }

    #[test]
    fn stamps_page_numbers_and_counts_pages() {
        let fake = FakeFtl::standalone(100);
        let mut p = params("250");
        p.fill = 0.5;
        let report = run(&fake, &p).expect("bench");
        assert_eq!(report.fill_pages, 50);
        assert_eq!(report.host_pages_written, 250);
        let mut buf = vec![0u8; PAGE_SIZE];
        use crate::target::SimTarget;
        fake.read(3, &mut buf).expect("read");
        let mut lpa = [0u8; 8];
        lpa.copy_from_slice(&buf[..8]);
        assert_eq!(u64::from_le_bytes(lpa), 3);
    }
}
