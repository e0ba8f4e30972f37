//! Shared helpers of the FTL integration tests: a device set on one power rail, a page encoder that
//! stamps (lpa, version) into every byte of a page, and a model of what each logical page may read.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use ftl::nand::{FaultConfig, Geometry, MemNand, Nand, PowerRail};
use ftl::{Ftl, FtlConfig, FtlError, RecoveryReport};

pub const PAGE: usize = 4096;

/// A small geometry: `dies` dies of `blocks_per_die` blocks of `pages_per_block` 4 KiB pages.
pub fn geometry(dies: u32, blocks_per_die: u32, pages_per_block: u32) -> Geometry {
    Geometry {
        channels: 1,
        dies_per_channel: dies,
        planes_per_die: 1,
        blocks_per_plane: blocks_per_die,
        pages_per_block,
        page_size: PAGE as u32,
        oob_size: 64,
    }
}

/// `geometry` with 16 KiB NAND pages: four 4 KiB logical pages per NAND page.
pub fn sixteen_kib(g: Geometry) -> Geometry {
    Geometry {
        page_size: 16384,
        oob_size: 256,
        ..g
    }
}

/// A set of RAM devices sharing one power rail.
#[derive(Debug)]
pub struct Rig {
    pub devs: Vec<Arc<MemNand>>,
    pub rail: Arc<PowerRail>,
    pub config: FtlConfig,
}

impl Rig {
    pub fn new(devices: u32, geometry: Geometry, faults: &FaultConfig, config: FtlConfig) -> Self {
        let rail = Arc::new(PowerRail::new());
        let devs = (0..devices)
            .map(|i| {
                Arc::new(MemNand::new(geometry, faults.for_device(i), Some(rail.clone())).unwrap())
            })
            .collect();
        Self { devs, rail, config }
    }

    /// The default test rig: 2 devices x 2 dies x 16 blocks x 16 pages (4 MiB), no faults.
    pub fn small() -> Self {
        Self::new(
            2,
            geometry(2, 16, 16),
            &FaultConfig::none(),
            FtlConfig::default(),
        )
    }

    pub fn dyn_devs(&self) -> Vec<Arc<dyn Nand>> {
        self.devs
            .iter()
            .map(|d| d.clone() as Arc<dyn Nand>)
            .collect()
    }

    pub fn format(&self) -> Ftl {
        Ftl::format(self.dyn_devs(), self.config.clone()).unwrap()
    }

    pub fn open(&self) -> (Ftl, RecoveryReport) {
        let (ftl, report) = Ftl::open(self.dyn_devs(), self.config.clone()).unwrap();
        assert_eq!(report.pointers_unresolved, 0, "{report:?}");
        (ftl, report)
    }

    /// Power fails now (if it has not already): every device drops what was not durable.
    pub fn power_cut(&self, seed: u64) {
        for (i, d) in self.devs.iter().enumerate() {
            d.power_cut(seed.wrapping_mul(31).wrapping_add(i as u64))
                .unwrap();
        }
        self.rail.restore();
    }

    /// Crash: drop the FTL without closing it, cut the power, reopen.
    pub fn crash(&self, ftl: Ftl, seed: u64) -> (Ftl, RecoveryReport) {
        drop(ftl);
        self.power_cut(seed);
        self.open()
    }
}

fn word(lpa: u64, version: u64) -> u64 {
    ftl::nand::mix(lpa.wrapping_mul(0x9e37_79b9) ^ version.rotate_left(32))
}

/// Page content of version `version` of logical page `lpa`; version 0 is the zero page.
pub fn page(lpa: u64, version: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE];
    if version == 0 {
        return p;
    }
    p[0..8].copy_from_slice(&lpa.to_le_bytes());
    p[8..16].copy_from_slice(&version.to_le_bytes());
    let w = word(lpa, version);
    for (i, chunk) in p[16..].chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&(w ^ i as u64).to_le_bytes());
    }
    p
}

/// Decodes a page read back: `Ok((lpa, version))`, (any lpa, 0) for the zero page, or what is
/// wrong with it.
pub fn decode(buf: &[u8]) -> Result<(u64, u64), String> {
    if buf.iter().all(|&b| b == 0) {
        return Ok((u64::MAX, 0));
    }
    let lpa = u64::from_le_bytes(buf[0..8].try_into().unwrap());
    let version = u64::from_le_bytes(buf[8..16].try_into().unwrap());
    if version == 0 || buf != page(lpa, version).as_slice() {
        return Err(format!(
            "garbage or torn page (header says lpa {lpa} version {version})"
        ));
    }
    Ok((lpa, version))
}

/// Reads `lpa` and returns the version it holds (0 = zeroes), checking it is a whole page of that
/// very logical page.
pub fn read_version(ftl: &Ftl, lpa: u64) -> Result<u64, String> {
    let mut buf = vec![0u8; PAGE];
    ftl.read(lpa, &mut buf)
        .map_err(|e| format!("read of {lpa} failed: {e}"))?;
    let (got_lpa, version) = decode(&buf).map_err(|e| format!("lpa {lpa}: {e}"))?;
    if version != 0 && got_lpa != lpa {
        return Err(format!(
            "lpa {lpa} returned the data of lpa {got_lpa} (version {version})"
        ));
    }
    Ok(version)
}

/// What each logical page may read: before a crash exactly `current`; after one, the last durable
/// version or any version acknowledged (or in flight) since.
#[derive(Clone, Debug)]
pub struct Model {
    pub durable: Vec<u64>,
    pub since: Vec<Vec<u64>>,
    pub next_version: u64,
}

impl Model {
    pub fn new(pages: u64) -> Self {
        Self {
            durable: vec![0; pages as usize],
            since: vec![Vec::new(); pages as usize],
            next_version: 1,
        }
    }

    pub fn pages(&self) -> u64 {
        self.durable.len() as u64
    }

    pub fn take_version(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version += 1;
        v
    }

    pub fn current(&self, lpa: u64) -> u64 {
        let l = lpa as usize;
        self.since[l].last().copied().unwrap_or(self.durable[l])
    }

    /// A write (version 0: a trim) was acknowledged, or was in flight when the power failed.
    pub fn written(&mut self, lpa: u64, version: u64) {
        self.since[lpa as usize].push(version);
    }

    /// A write with FUA was acknowledged: it is durable.
    pub fn durable_write(&mut self, lpa: u64, version: u64) {
        self.durable[lpa as usize] = version;
        self.since[lpa as usize].clear();
    }

    pub fn flushed(&mut self) {
        for l in 0..self.durable.len() {
            if let Some(&v) = self.since[l].last() {
                self.durable[l] = v;
                self.since[l].clear();
            }
        }
    }

    pub fn allowed(&self, lpa: u64) -> BTreeSet<u64> {
        let l = lpa as usize;
        std::iter::once(self.durable[l])
            .chain(self.since[l].iter().copied())
            .collect()
    }

    /// Before any crash: every page reads exactly its last acknowledged version.
    pub fn verify_exact(&self, ftl: &Ftl) {
        for lpa in 0..self.pages() {
            let got = read_version(ftl, lpa).unwrap();
            assert_eq!(got, self.current(lpa), "lpa {lpa}");
        }
    }

    /// After a crash: every page reads a version of its allowed set; what it reads is what is on
    /// flash now, so it becomes the durable version.
    pub fn verify_after_crash(&mut self, ftl: &Ftl) {
        for lpa in 0..self.pages() {
            let got = read_version(ftl, lpa).unwrap();
            let allowed = self.allowed(lpa);
            assert!(
                allowed.contains(&got),
                "lpa {lpa} reads version {got}; allowed {allowed:?}"
            );
            self.durable[lpa as usize] = got;
            self.since[lpa as usize].clear();
        }
    }
}

/// One host operation of a workload.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Write { lpa: u64, fua: bool },
    Trim { lpa: u64, count: u64 },
    Flush,
}

/// A small deterministic generator (tests must replay from a seed).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(ftl::nand::mix(seed ^ 0xfe11_17e5))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        ftl::nand::mix(self.0)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// A random op: mostly writes (sometimes FUA), some trims, a few flushes.
pub fn random_op(rng: &mut Rng, pages: u64) -> Op {
    let r = rng.below(100);
    let lpa = rng.below(pages);
    match r {
        0..=79 => Op::Write {
            lpa,
            fua: rng.chance(0.05),
        },
        80..=91 => Op::Trim {
            lpa,
            count: (1 + rng.below(4)).min(pages - lpa),
        },
        _ => Op::Flush,
    }
}

/// Applies `op` to the FTL and, if it was acknowledged, to the model. A failed op is recorded as in
/// flight (it may or may not have happened) and its error returned.
pub fn apply(ftl: &Ftl, model: &mut Model, op: Op) -> Result<(), FtlError> {
    match op {
        Op::Write { lpa, fua } => {
            let v = model.take_version();
            match ftl.write(lpa, &page(lpa, v), fua) {
                Ok(()) if fua => model.durable_write(lpa, v),
                Ok(()) => model.written(lpa, v),
                Err(e) => {
                    model.written(lpa, v);
                    return Err(e);
                }
            }
        }
        Op::Trim { lpa, count } => {
            let r = ftl.trim(lpa, count);
            for l in lpa..lpa + count {
                model.written(l, 0);
            }
            r?;
        }
        Op::Flush => {
            ftl.flush()?;
            model.flushed();
        }
    }
    Ok(())
}

/// Writes every page once (version stamped), so GC has live data to move.
pub fn fill(ftl: &Ftl, model: &mut Model) {
    for lpa in 0..model.pages() {
        apply(ftl, model, Op::Write { lpa, fua: false }).unwrap();
    }
}

pub fn is_power_lost(e: &FtlError) -> bool {
    matches!(e, FtlError::PowerLost)
}
