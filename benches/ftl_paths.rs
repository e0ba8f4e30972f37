//! Criterion benches of the FTL's host paths over 8 RAM devices: 4 KiB reads (mapped and
//! unmapped, and mapped 16 at a time through `read_many`), random overwrites of a full FTL (GC at steady state), sequential overwrites, trims.
//!
//! Every bench counts its operations per iteration (`Throughput::Elements`: 1, or 16 for
//! `read_many`), so criterion prints operations per second. The FTL is filled once per group; `iter_custom` keeps the untimed work
//! (refills before trims) out of the measurement.
//!
//! `cargo bench --bench ftl_paths` measures on 8 devices x 2 x 2 dies x 32 blocks x 256 pages
//! (1 GiB raw). Without `--bench` (`cargo test --all-targets` runs this binary in test mode, each
//! bench once) the geometry is tiny, so that the test run stays fast.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ferrite::bench_ftl::devices::mem_devices;
use ftl::nand::{Geometry, Nand};
use ftl::{Ftl, FtlConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PAGE: usize = 4096;

/// True under `cargo bench` (criterion's measuring mode), false in test mode.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn geometry() -> Geometry {
    let (blocks_per_plane, pages_per_block) = if measuring() { (32, 256) } else { (8, 16) };
    Geometry {
        channels: 2,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane,
        pages_per_block,
        page_size: PAGE as u32,
        ..Geometry::default()
    }
}

fn devices() -> Vec<Arc<dyn Nand>> {
    mem_devices(geometry(), 8).expect("RAM devices")
}

fn stamp(buf: &mut [u8], lpa: u64) {
    buf[..8].copy_from_slice(&lpa.to_le_bytes());
}

/// A freshly formatted FTL with every logical page written once, sequentially.
fn filled() -> Ftl {
    let ftl = Ftl::format(devices(), FtlConfig::default()).expect("format");
    let mut buf = vec![0x5au8; PAGE];
    for lpa in 0..ftl.logical_pages() {
        stamp(&mut buf, lpa);
        ftl.write(lpa, &buf, false).expect("fill");
    }
    ftl.flush().expect("flush");
    ftl
}

/// Reads given to `read_many` at once in its bench.
const READ_MANY: usize = 16;

fn reads(c: &mut Criterion) {
    let full = filled();
    let empty = Ftl::format(devices(), FtlConfig::default()).expect("format");
    let mut g = c.benchmark_group("ftl_read");
    g.throughput(Throughput::Elements(1));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut buf = vec![0u8; PAGE];
    let logical = full.logical_pages();
    g.bench_function("read_mapped_4k", |b| {
        b.iter(|| {
            let lpa = rng.random_range(0..logical);
            full.read(lpa, &mut buf).expect("read");
            black_box(buf[0]);
        });
    });
    g.finish();
    // 16 mapped reads given together (`Ftl::read_many`), per read: what a queue depth of 16 gets.
    let mut g = c.benchmark_group("ftl_read_many");
    g.throughput(Throughput::Elements(READ_MANY as u64));
    let mut lpas = vec![0u64; READ_MANY];
    let mut out = vec![0u8; READ_MANY * PAGE];
    let mut results = Vec::with_capacity(READ_MANY);
    g.bench_function("read_many_mapped_4k_x16", |b| {
        b.iter(|| {
            for lpa in &mut lpas {
                *lpa = rng.random_range(0..logical);
            }
            full.read_many(&lpas, &mut out, &mut results);
            assert!(results.iter().all(Result::is_ok), "read_many failed");
            black_box(out[0]);
        });
    });
    g.finish();
    let mut g = c.benchmark_group("ftl_read");
    g.throughput(Throughput::Elements(1));
    let logical = empty.logical_pages();
    g.bench_function("read_unmapped_4k", |b| {
        b.iter(|| {
            let lpa = rng.random_range(0..logical);
            empty.read(lpa, &mut buf).expect("read");
            black_box(buf[0]);
        });
    });
    g.finish();
}

fn writes(c: &mut Criterion) {
    let ftl = filled();
    let logical = ftl.logical_pages();
    let mut g = c.benchmark_group("ftl_write");
    g.throughput(Throughput::Elements(1));
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut buf = vec![0xa5u8; PAGE];
    // The FTL is full: every random overwrite leaves an invalid page behind, and GC runs.
    g.bench_function("write_4k_random_steady", |b| {
        b.iter(|| {
            let lpa = rng.random_range(0..logical);
            stamp(&mut buf, lpa);
            ftl.write(lpa, &buf, false).expect("write");
        });
    });
    let mut next = 0u64;
    g.bench_function("write_4k_sequential", |b| {
        b.iter(|| {
            let lpa = next;
            next = (next + 1) % logical;
            stamp(&mut buf, lpa);
            ftl.write(lpa, &buf, false).expect("write");
        });
    });
    // Trims of mapped pages (a trim of an unmapped page is a no-op): chunks of pages are rewritten
    // out of the timed section, then trimmed one by one.
    const CHUNK: u64 = 4096;
    let mut cursor = 0u64;
    g.bench_function("trim_4k", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let start = cursor;
                let n = left.min(CHUNK).min(logical - start);
                for lpa in start..start + n {
                    stamp(&mut buf, lpa);
                    ftl.write(lpa, &buf, false).expect("rewrite before trim");
                }
                let t = Instant::now();
                for lpa in start..start + n {
                    ftl.trim(lpa, 1).expect("trim");
                }
                timed += t.elapsed();
                cursor = (start + n) % logical;
                left -= n;
            }
            timed
        });
    });
    g.finish();
    ftl.close().expect("close");
}

fn main() {
    // Defaults sized so that the whole run takes about a minute; command-line flags override them.
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    reads(&mut c);
    writes(&mut c);
    c.final_summary();
}
