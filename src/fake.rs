//! In-memory stand-ins for the FTL: a correct one (volatile writes, flush and FUA durability,
//! crash recovery that keeps any subset a real FTL may keep) and deliberately broken variants that
//! prove the simulation's model catches real bugs. They honour the NAND power rail of a [`SimEnv`]:
//! every mutating operation ticks it, so a mid-operation power cut behaves as it would on `ftl::Ftl`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use ftl::nand::{PowerRail, mix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::target::{BenchTarget, SimEnv, SimFactory, SimTarget, TargetError, TargetStats};

pub const PAGE_SIZE: usize = 4096;
/// NAND mutations a fake's `open` performs (so a power cut can hit recovery).
const RECOVERY_MUTATIONS: u32 = 16;

/// How a fake goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FakeFlaw {
    /// None: a correct FTL.
    None,
    /// `flush` acknowledges without making anything durable: a crash loses flushed writes.
    FlushIsNoop,
    /// Trims and write-zeroes never become durable: a crash resurrects the old data.
    TrimNotDurable,
    /// A crash leaves the last unflushed write of a page torn (half new data, half zeroes).
    TearOnCrash,
}

type Data = Option<Arc<[u8]>>;

#[derive(Debug, Default, Clone)]
struct Slot {
    /// What a read returns (None: zeroes).
    current: Data,
    /// The last value known durable.
    durable: Data,
    /// Values acknowledged since `durable`: a crash may leave any of them.
    since: Vec<Data>,
}

#[derive(Debug)]
struct Disk {
    slots: Vec<Slot>,
    /// Slots with `since` non-empty or `current != durable`.
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    cleanly_closed: bool,
    rng: ChaCha8Rng,
    host_pages_written: u64,
}

impl Disk {
    fn new(pages: u64, seed: u64) -> Self {
        Self {
            slots: vec![Slot::default(); pages as usize],
            dirty: Vec::new(),
            is_dirty: vec![false; pages as usize],
            cleanly_closed: true,
            rng: ChaCha8Rng::seed_from_u64(mix(seed ^ 0xfa4e)),
            host_pages_written: 0,
        }
    }

    fn touch(&mut self, lpa: usize) {
        if !self.is_dirty[lpa] {
            self.is_dirty[lpa] = true;
            self.dirty.push(lpa);
        }
    }

    fn set(&mut self, lpa: usize, data: Data, durable: bool) {
        let slot = &mut self.slots[lpa];
        slot.current = data.clone();
        if durable {
            slot.durable = data;
            slot.since.clear();
        } else {
            slot.since.push(data);
            self.touch(lpa);
        }
    }

    /// A value that may or may not have reached the media before the power failed.
    fn maybe(&mut self, lpa: usize, data: Data) {
        if self.rng.random_bool(0.5) {
            self.slots[lpa].since.push(data);
            self.touch(lpa);
        }
    }

    fn flush(&mut self, flaw: FakeFlaw) {
        if flaw == FakeFlaw::FlushIsNoop {
            return;
        }
        for lpa in std::mem::take(&mut self.dirty) {
            self.is_dirty[lpa] = false;
            let slot = &mut self.slots[lpa];
            if flaw == FakeFlaw::TrimNotDurable && slot.current.is_none() {
                slot.since.retain(Option::is_some);
                self.is_dirty[lpa] = true;
                self.dirty.push(lpa);
                continue;
            }
            slot.durable = slot.current.clone();
            slot.since.clear();
        }
    }

    /// Recovery after a crash: each dirty page keeps its durable value or any value since.
    fn recover(&mut self, flaw: FakeFlaw) {
        for lpa in std::mem::take(&mut self.dirty) {
            self.is_dirty[lpa] = false;
            let slot = &mut self.slots[lpa];
            let since = std::mem::take(&mut slot.since);
            let kept = match flaw {
                FakeFlaw::FlushIsNoop => slot.durable.clone(),
                FakeFlaw::TrimNotDurable => {
                    let options: Vec<&Data> = std::iter::once(&slot.durable)
                        .chain(since.iter().filter(|d| d.is_some()))
                        .collect();
                    options[self.rng.random_range(0..options.len())].clone()
                }
                FakeFlaw::TearOnCrash => match since.last() {
                    Some(Some(last)) => {
                        let mut torn = last.to_vec();
                        torn[PAGE_SIZE / 2..].fill(0);
                        Some(torn.into())
                    }
                    _ => slot.durable.clone(),
                },
                FakeFlaw::None => {
                    let pick = self.rng.random_range(0..=since.len());
                    if pick == since.len() {
                        slot.durable.clone()
                    } else {
                        since[pick].clone()
                    }
                }
            };
            slot.durable = kept.clone();
            slot.current = kept;
        }
    }
}

/// An in-memory FTL. Single-threaded (the harnesses drive one operation at a time).
#[derive(Debug)]
pub struct FakeFtl {
    disk: Rc<RefCell<Disk>>,
    rail: Option<Arc<PowerRail>>,
    flaw: FakeFlaw,
    pages: u64,
    /// Writes fail with `ReadOnly` once this many host pages were written (spares exhausted).
    read_only_after: Option<u64>,
}

impl FakeFtl {
    /// A fresh, correct fake of `pages` logical pages with no power rail (for `bench`).
    pub fn standalone(pages: u64) -> Self {
        Self {
            disk: Rc::new(RefCell::new(Disk::new(pages, 0))),
            rail: None,
            flaw: FakeFlaw::None,
            pages,
            read_only_after: None,
        }
    }

    /// One mutating NAND operation: false if the power is (now) lost.
    fn tick(&self) -> bool {
        self.rail.as_ref().is_none_or(|r| !r.tick())
    }

    fn power_lost(&self) -> bool {
        self.rail.as_ref().is_some_and(|r| r.is_lost())
    }

    fn check(&self, lpa: u64, count: u64) -> Result<(), TargetError> {
        match lpa.checked_add(count) {
            Some(end) if end <= self.pages => Ok(()),
            _ => Err(TargetError::OutOfRange { lpa }),
        }
    }

    fn zero(&self, lpa: u64, count: u64) -> Result<(), TargetError> {
        self.check(lpa, count)?;
        let mut disk = self.disk.borrow_mut();
        for p in lpa..lpa + count {
            if !self.tick() {
                disk.maybe(p as usize, None);
                return Err(TargetError::PowerLost);
            }
            disk.set(p as usize, None, false);
        }
        Ok(())
    }
}

impl SimTarget for FakeFtl {
    fn logical_pages(&self) -> u64 {
        self.pages
    }

    fn read(&self, lpa: u64, buf: &mut [u8]) -> Result<(), TargetError> {
        self.check(lpa, 1)?;
        if self.power_lost() {
            return Err(TargetError::PowerLost);
        }
        match &self.disk.borrow().slots[lpa as usize].current {
            Some(data) => buf.copy_from_slice(data),
            None => buf.fill(0),
        }
        Ok(())
    }

    fn write(&self, lpa: u64, data: &[u8], durable: bool) -> Result<(), TargetError> {
        self.check(lpa, 1)?;
        if data.len() != PAGE_SIZE {
            return Err(TargetError::Other(format!(
                "write of {} bytes, expected {PAGE_SIZE}",
                data.len()
            )));
        }
        let data: Data = Some(data.into());
        let mut disk = self.disk.borrow_mut();
        if self
            .read_only_after
            .is_some_and(|n| disk.host_pages_written >= n)
        {
            return Err(TargetError::ReadOnly);
        }
        if !self.tick() {
            disk.maybe(lpa as usize, data);
            return Err(TargetError::PowerLost);
        }
        disk.host_pages_written += 1;
        disk.set(lpa as usize, data, durable);
        Ok(())
    }

    fn trim(&self, lpa: u64, count: u64) -> Result<(), TargetError> {
        self.zero(lpa, count)
    }

    fn write_zeroes(&self, lpa: u64, count: u64) -> Result<(), TargetError> {
        self.zero(lpa, count)
    }

    fn flush(&self) -> Result<(), TargetError> {
        if !self.tick() {
            return Err(TargetError::PowerLost);
        }
        self.disk.borrow_mut().flush(self.flaw);
        Ok(())
    }
}

impl BenchTarget for FakeFtl {
    fn stats(&self) -> TargetStats {
        let written = self.disk.borrow().host_pages_written;
        TargetStats {
            host_pages_written: written,
            nand_pages_written: written,
            available_spare: 100.0,
            ..TargetStats::default()
        }
    }
}

/// Formats, opens and closes [`FakeFtl`]s; the "media" outlives each target, like NAND does.
#[derive(Debug)]
pub struct FakeFactory {
    flaw: FakeFlaw,
    disk: Option<Rc<RefCell<Disk>>>,
    read_only_after: Option<u64>,
}

impl FakeFactory {
    pub fn new(flaw: FakeFlaw) -> Self {
        Self {
            flaw,
            disk: None,
            read_only_after: None,
        }
    }

    /// Targets that go read-only (as if out of spare blocks) after `pages` host writes.
    pub fn read_only_after(mut self, pages: u64) -> Self {
        self.read_only_after = Some(pages);
        self
    }

    fn target(&self, env: &SimEnv, disk: Rc<RefCell<Disk>>) -> FakeFtl {
        let pages = disk.borrow().slots.len() as u64;
        FakeFtl {
            disk,
            rail: Some(env.rail.clone()),
            flaw: self.flaw,
            pages,
            read_only_after: self.read_only_after,
        }
    }
}

impl SimFactory for FakeFactory {
    type Target = FakeFtl;

    fn format(&mut self, env: &SimEnv) -> Result<FakeFtl, TargetError> {
        let raw: u64 = env
            .devices
            .iter()
            .map(|d| d.geometry().pages() * u64::from(d.geometry().page_size) / PAGE_SIZE as u64)
            .sum();
        let pages = (raw as f64 * (1.0 - env.options.op_ratio)) as u64;
        let disk = Rc::new(RefCell::new(Disk::new(pages, env.seed)));
        disk.borrow_mut().cleanly_closed = false;
        self.disk = Some(disk.clone());
        Ok(self.target(env, disk))
    }

    fn open(&mut self, env: &SimEnv) -> Result<FakeFtl, TargetError> {
        let disk = self
            .disk
            .clone()
            .ok_or_else(|| TargetError::Other("open before format".into()))?;
        // Recovery writes a few things (a checkpoint, say): power may fail there too, before
        // anything changes.
        for _ in 0..RECOVERY_MUTATIONS {
            if env.rail.tick() {
                return Err(TargetError::PowerLost);
            }
        }
        {
            let mut d = disk.borrow_mut();
            if !d.cleanly_closed {
                d.recover(self.flaw);
            }
            d.cleanly_closed = false;
        }
        Ok(self.target(env, disk))
    }

    fn close(&mut self, target: FakeFtl) -> Result<(), TargetError> {
        if !target.tick() {
            return Err(TargetError::PowerLost);
        }
        let mut disk = target.disk.borrow_mut();
        disk.flush(self.flaw);
        if self.flaw == FakeFlaw::None {
            disk.cleanly_closed = true;
        }
        Ok(())
    }
}
