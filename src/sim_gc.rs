//! `ferrite sim --gc-scheduler`: the simulation over an FTL with the global GC scheduler attached
//! (issue 6's coordinated GC), so that its random power cuts also land in the middle of
//! background GC and of the wear-leveling checkpoint written a unit at a time
//! (`ftl/src/persist_background.rs`), which the plain simulation never runs.
//!
//! The devices are the simulation's own (`MemNand` on one power rail), each wrapped in a
//! `TimedNand` on a stepping virtual clock, so the scheduler sees busy dies and its share of die
//! time as it would under load, and a run stays deterministic. Host writes do not collect
//! garbage themselves with a scheduler attached: before each write the target runs background
//! units until the write is admitted (`Ftl::write_admitted`), as `bench gc` holds writes back,
//! and after every operation a few more, moving the clock on when the scheduler allows none.
//!
//! What it covers (seeds 0-99, counted with a throwaway build): 1286 power cuts among 10.5K
//! background page moves, 5.7K background erases and 18 units of the background checkpoint.
//! The checkpoint is still rare: wear leveling asks for one only when the checkpoint area is the
//! youngest part of the device, and `ftl/tests/gc_sched.rs` cuts power at 5 points inside one.

use std::sync::Arc;

use ftl::nand::Nand;
use ftl::nand::timing::{Clock, TimedNand, TimingConfig, VirtualClock};
use ftl::{Ftl, FtlError, GcTiming, GcWork};

use crate::target::{SimTarget, TargetError};

/// Background units run after each operation at most: enough that GC keeps up with the
/// simulation's writes (each write may need a few page moves), few enough that a power cut
/// still often falls between units.
const UNITS_PER_OP: u32 = 8;
/// Units tried at most to get one write admitted before it goes on anyway (into foreground GC).
const ADMISSION_UNITS_MAX: u32 = 256;
/// The erase-count spread that starts static wear leveling in this mode (the default, 8, is
/// more than most simulated seeds ever reach: they erase each block only a few times).
pub const WL_THRESHOLD_CYCLES: u32 = 1;
/// How far the clock moves when the scheduler allows no unit now: about one page program.
const BLOCKED_STEP_NS: u64 = 200_000;

/// An FTL over timed devices with the GC scheduler attached, and the clock it runs on.
#[derive(Debug)]
pub struct ScheduledFtl {
    ftl: Ftl,
    clock: Arc<VirtualClock>,
}

/// Timed devices, the scheduler's view of them, and their clock.
pub type Timed = (Vec<Arc<dyn Nand>>, GcTiming, Arc<VirtualClock>);

/// Wraps `devices` in timed devices on one new stepping clock.
pub fn timed(devices: Vec<Arc<dyn Nand>>) -> Result<Timed, TargetError> {
    let clock = Arc::new(VirtualClock::stepping());
    let config = TimingConfig::default();
    let mut models = Vec::with_capacity(devices.len());
    let mut timed: Vec<Arc<dyn Nand>> = Vec::with_capacity(devices.len());
    for d in devices {
        let t = TimedNand::new(d, &config, clock.clone() as Arc<dyn Clock>)
            .map_err(|e| TargetError::Other(format!("timing model: {e}")))?;
        models.push(t.model().clone());
        timed.push(Arc::new(t));
    }
    let timing = GcTiming {
        models,
        clock: clock.clone() as Arc<dyn Clock>,
    };
    Ok((timed, timing, clock))
}

impl ScheduledFtl {
    /// Attaches the scheduler to `ftl`, which runs over the devices `timed` returned.
    pub fn new(ftl: Ftl, timing: GcTiming, clock: Arc<VirtualClock>) -> Result<Self, TargetError> {
        ftl.attach_gc_scheduler(timing)?;
        Ok(Self { ftl, clock })
    }

    pub fn into_ftl(self) -> Ftl {
        self.ftl
    }

    /// Runs up to `units` background units; stops early when none is needed.
    fn pump(&self, units: u32) -> Result<(), FtlError> {
        for _ in 0..units {
            match self.ftl.background_gc()? {
                GcWork::Idle => return Ok(()),
                GcWork::Blocked => self.clock.advance_by(BLOCKED_STEP_NS),
                GcWork::Moved | GcWork::Erased | GcWork::Checkpointed => {}
            }
        }
        Ok(())
    }

    /// Background units until a host write is admitted (or the bound is reached).
    fn admit(&self) -> Result<(), FtlError> {
        for _ in 0..ADMISSION_UNITS_MAX {
            if self.ftl.write_admitted() {
                return Ok(());
            }
            self.pump(1)?;
        }
        Ok(())
    }

    /// `op`, then a few background units; an operation's own error wins over theirs.
    fn then_pump<T>(&self, op: Result<T, FtlError>) -> Result<T, TargetError> {
        let value = op?;
        self.pump(UNITS_PER_OP)?;
        Ok(value)
    }
}

impl SimTarget for ScheduledFtl {
    fn logical_pages(&self) -> u64 {
        self.ftl.logical_pages()
    }

    fn read(&self, lpa: u64, buf: &mut [u8]) -> Result<(), TargetError> {
        Ok(self.ftl.read(lpa, buf)?)
    }

    fn write(&self, lpa: u64, data: &[u8], durable: bool) -> Result<(), TargetError> {
        self.admit()?;
        self.then_pump(self.ftl.write(lpa, data, durable))
    }

    fn trim(&self, lpa: u64, count: u64) -> Result<(), TargetError> {
        self.then_pump(self.ftl.trim(lpa, count))
    }

    fn write_zeroes(&self, lpa: u64, count: u64) -> Result<(), TargetError> {
        self.then_pump(self.ftl.write_zeroes(lpa, count))
    }

    fn flush(&self) -> Result<(), TargetError> {
        self.then_pump(self.ftl.flush())
    }
}

#[cfg(test)]
mod tests {
    use ftl::nand::{FaultConfig, Geometry, MemNand};
    use ftl::{FtlConfig, LOGICAL_PAGE_BYTES};

    use super::*;

    /// Random overwrites through the target: GC runs as background units (page moves and
    /// erases counted by the scheduler), no write falls back to foreground GC, and every page
    /// reads back its last version.
    #[test]
    fn garbage_is_collected_in_the_background_between_operations() {
        let geometry = Geometry {
            channels: 1,
            dies_per_channel: 2,
            planes_per_die: 1,
            blocks_per_plane: 32,
            pages_per_block: 16,
            page_size: 4096,
            oob_size: 64,
        };
        let devices: Vec<Arc<dyn Nand>> = (0..2)
            .map(|i| {
                let d = MemNand::new(geometry, FaultConfig::none().for_device(i), None).unwrap();
                Arc::new(d) as Arc<dyn Nand>
            })
            .collect();
        let (devices, timing, clock) = timed(devices).unwrap();
        let ftl = Ftl::format(devices, FtlConfig::default()).unwrap();
        let target = ScheduledFtl::new(ftl, timing, clock).unwrap();
        let pages = target.logical_pages();
        let mut last = vec![0u64; pages as usize];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = vec![0u8; LOGICAL_PAGE_BYTES];
        for n in 1..=6 * pages {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let lpa = x % pages;
            buf[..8].copy_from_slice(&n.to_le_bytes());
            target.write(lpa, &buf, false).unwrap();
            last[lpa as usize] = n;
        }
        let sched = target
            .ftl
            .gc_sched_stats()
            .expect("a scheduler is attached");
        assert!(sched.moves > 0 && sched.erases > 0, "{sched:?}");
        assert_eq!(target.ftl.stats().foreground_gc_stalls, 0);
        for (lpa, &n) in last.iter().enumerate() {
            target.read(lpa as u64, &mut buf).unwrap();
            assert_eq!(
                u64::from_le_bytes(buf[..8].try_into().unwrap()),
                n,
                "lpa {lpa}"
            );
        }
    }
}
