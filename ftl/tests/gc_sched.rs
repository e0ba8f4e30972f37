#![allow(clippy::unwrap_used)]
//! The FTL with the global GC scheduler attached, over timed devices on a manual virtual clock:
//! every read returns the last write through sustained background GC and a reopen, the
//! scheduler never has more dies in GC than its share, write admission keeps foreground GC away,
//! and GC work never makes a read wait longer than the bound the scheduler promises.

use std::sync::Arc;

use ftl::nand::timing::{Clock, TimedNand, TimingConfig, VirtualClock};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig, GcTiming, GcWork};

fn geometry(blocks_per_die: u32) -> Geometry {
    Geometry {
        channels: 2,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: blocks_per_die,
        pages_per_block: 16,
        page_size: 4096,
        oob_size: 64,
    }
}

fn page(lpa: u64, version: u32) -> Vec<u8> {
    let mut p = vec![(version % 251) as u8; 4096];
    p[..8].copy_from_slice(&lpa.to_le_bytes());
    p[8..12].copy_from_slice(&version.to_le_bytes());
    p
}

/// xorshift64: the test's own seeded stream (no dependency on the bench's generators).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct Rig {
    mems: Vec<Arc<dyn Nand>>,
    timed: Vec<Arc<TimedNand>>,
    clock: Arc<VirtualClock>,
}

fn rig(devices: u32, blocks_per_die: u32) -> Rig {
    let clock = Arc::new(VirtualClock::manual());
    let mut mems = Vec::new();
    let mut timed = Vec::new();
    for i in 0..devices {
        let mem: Arc<dyn Nand> = Arc::new(
            MemNand::new(
                geometry(blocks_per_die),
                FaultConfig::none().for_device(i),
                None,
            )
            .unwrap(),
        );
        let c = clock.clone() as Arc<dyn Clock>;
        timed.push(Arc::new(
            TimedNand::new(mem.clone(), &TimingConfig::default(), c).unwrap(),
        ));
        mems.push(mem);
    }
    Rig { mems, timed, clock }
}

impl Rig {
    fn ftl(&self, config: FtlConfig) -> Ftl {
        let devices = self
            .timed
            .iter()
            .map(|d| d.clone() as Arc<dyn Nand>)
            .collect();
        let ftl = Ftl::format(devices, config).unwrap();
        let timing = GcTiming {
            models: self.timed.iter().map(|d| d.model().clone()).collect(),
            clock: self.clock.clone() as Arc<dyn Clock>,
        };
        ftl.attach_gc_scheduler(timing).unwrap();
        ftl
    }

    /// Background GC at the current instant until it has nothing it may do now.
    fn background(&self, ftl: &Ftl) -> u32 {
        let mut units = 0;
        for _ in 0..256 {
            match ftl.background_gc().unwrap() {
                GcWork::Moved | GcWork::Erased | GcWork::Checkpointed => units += 1,
                GcWork::Idle | GcWork::Blocked => break,
            }
        }
        units
    }
}

#[test]
fn coordinated_gc_keeps_every_write_and_stays_within_its_share() {
    let rig = rig(4, 12);
    let config = FtlConfig {
        gc_die_share: 0.25,
        ..FtlConfig::default()
    };
    let ftl = rig.ftl(config.clone());
    let pages = ftl.logical_pages();
    let mut versions = vec![0u32; pages as usize];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0; 4096];
    let mut writes = 0u64;
    // Eight times the logical space: GC runs all along, only in the background.
    let target = pages * 8;
    for step in 0..target * 200 {
        if writes >= target {
            break;
        }
        // 20 us between requests: host work and GC overlap on the dies.
        rig.clock.advance_by(20_000);
        rig.background(&ftl);
        let lpa = next(&mut state) % pages;
        if step % 3 == 0 {
            ftl.read(lpa, &mut buf).unwrap();
            let v = versions[lpa as usize];
            if v == 0 {
                assert_eq!(buf, vec![0; 4096], "lpa {lpa} never written");
            } else {
                assert_eq!(buf, page(lpa, v), "lpa {lpa}");
            }
        } else if ftl.write_admitted() {
            versions[lpa as usize] += 1;
            ftl.write(lpa, &page(lpa, versions[lpa as usize]), false)
                .unwrap();
            writes += 1;
        }
    }
    assert_eq!(writes, target, "admission held writes back for good");
    let stats = ftl.stats();
    let sched = ftl.gc_sched_stats().unwrap();
    assert!(stats.gc_runs > pages / 16, "GC ran: {stats:?}");
    assert!(sched.moves > 0 && sched.erases > 0, "{sched:?}");
    assert_eq!(sched.max_gc_dies, 4, "a quarter of 16 dies");
    assert!(sched.peak_gc_dies <= sched.max_gc_dies, "{sched:?}");
    assert_eq!(
        stats.foreground_gc_stalls, 0,
        "admitted writes never wait for foreground GC"
    );
    for lpa in 0..pages {
        ftl.read(lpa, &mut buf).unwrap();
        let v = versions[lpa as usize];
        if v > 0 {
            assert_eq!(buf, page(lpa, v), "lpa {lpa}");
        }
    }
    // The scheduler changes when GC runs, not what is on flash: the devices reopen (without
    // timing or scheduler) to the same data.
    ftl.close().unwrap();
    let (ftl, _) = Ftl::open(rig.mems.clone(), config).unwrap();
    for lpa in 0..pages {
        ftl.read(lpa, &mut buf).unwrap();
        let v = versions[lpa as usize];
        if v > 0 {
            assert_eq!(buf, page(lpa, v), "lpa {lpa} after reopen");
        }
    }
}

#[test]
fn gc_work_goes_only_to_idle_dies_and_reads_wait_a_bounded_time() {
    let rig = rig(2, 12);
    let ftl = rig.ftl(FtlConfig::default());
    let pages = ftl.logical_pages();
    let mut state = 7u64;
    let data = page(0, 1);
    // Fill and overwrite with background GC, but no reads: the dies hold only GC and writes.
    for lpa in 0..pages {
        rig.clock.advance_by(700_000);
        ftl.write(lpa, &data, false).unwrap();
    }
    let timing = TimingConfig::default();
    let program_ns = timing.program_us * 1_000 + timing.transfer_ns(4096 + 64);
    let erase_ns = timing.erase_us * 1_000;
    let suspend_ns = (timing.suspend.suspend_cost_us + timing.read_us) * 1_000;
    let mut buf = vec![0; 4096];
    let mut worst_read_ns = 0;
    let mut reads = 0;
    for _ in 0..pages * 6 {
        // No host request is outstanding when a read is issued (the clock moves past every
        // host operation first), so whatever it waits for is GC work.
        rig.clock.advance_by(2 * program_ns + erase_ns);
        rig.background(&ftl);
        let lpa = next(&mut state) % pages;
        if ftl.write_admitted() {
            ftl.write(lpa, &data, false).unwrap();
        }
        rig.clock.advance_by(2 * program_ns);
        rig.background(&ftl);
        let totals = |rig: &Rig| {
            rig.timed.iter().fold((0, 0), |(count, total), d| {
                let l = d.latency().read;
                (count + l.count, total + l.total_ns)
            })
        };
        let (count_before, total_before) = totals(&rig);
        let lpa = next(&mut state) % pages;
        ftl.read(lpa, &mut buf).unwrap();
        let (count_after, total_after) = totals(&rig);
        // Exactly one NAND read since: the host read, whose latency is the growth of the total.
        assert_eq!(count_after, count_before + 1);
        reads += 1;
        worst_read_ns = worst_read_ns.max(total_after - total_before);
    }
    let sched = ftl.gc_sched_stats().unwrap();
    assert!(reads > 0 && sched.moves > 0);
    assert_eq!(sched.busy_die_placements, 0, "GC work only on idle dies");
    // What a read can find in its way is GC work issued to an idle die: up to 4 victim reads
    // of one unit, a relocated page's program and its block's summary, or an erase (suspended
    // by the read, or past the suspend limit waited for). Foreground-like erases when free
    // blocks run short stay within one erase per die. Never more: reads are not starved.
    let bound_ns = erase_ns + 2 * program_ns + 4 * timing.read_us * 1_000 + suspend_ns;
    assert!(
        worst_read_ns <= bound_ns,
        "a read waited {worst_read_ns} ns, bound {bound_ns} ns"
    );
}

#[test]
fn admission_holds_writes_while_every_host_die_has_a_queue() {
    let rig = rig(2, 12);
    let ftl = rig.ftl(FtlConfig::default());
    let pages = ftl.logical_pages();
    // Writes at one instant: each queues a program; admission stops them once no die of either
    // host stream is idle.
    let mut admitted = 0u64;
    while ftl.write_admitted() {
        assert!(
            admitted < 1_000,
            "admission never held a write at one instant"
        );
        ftl.write(admitted % pages, &page(admitted % pages, 1), false)
            .unwrap();
        admitted += 1;
    }
    assert!(admitted >= 1, "a fresh FTL admits writes");
    let now_ns = rig.clock.now_ns();
    let queued = rig
        .timed
        .iter()
        .flat_map(|d| {
            let m = d.model().lock();
            (0..m.dies())
                .map(|die| m.die_busy_until_ns(die))
                .collect::<Vec<_>>()
        })
        .filter(|&until| until > now_ns + 600_000)
        .count();
    assert!(queued >= 1, "some die has more than a program queued");
    // Once the dies drain, writes go on.
    rig.clock.advance_by(100_000_000);
    assert!(ftl.write_admitted());
    for lpa in 0..pages.min(8) {
        ftl.read(lpa, &mut vec![0; 4096]).unwrap();
    }
}

/// The most work queued on any die at the clock's current time.
fn deepest_queue_ns(rig: &Rig) -> u64 {
    let now_ns = rig.clock.now_ns();
    rig.timed
        .iter()
        .flat_map(|d| {
            let m = d.model().lock();
            (0..m.dies())
                .map(|die| m.die_busy_until_ns(die).saturating_sub(now_ns))
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0)
}

/// Hot writes under the scheduler until static wear leveling has written checkpoints; stops
/// (crashes: no close) once `crash_at` checkpoint pages are programmed, if given. Returns the
/// deepest queue any die had, the devices' data must reopen to every version written.
fn wear_leveling_run(crash_at: Option<u64>) -> u64 {
    // Enough blocks for a checkpoint of well over a dozen pages: written at once from a host
    // write it queued all of them (and the erase before) on one die.
    let rig = rig(2, 96);
    let config = FtlConfig {
        wl_threshold_cycles: 2,
        ..FtlConfig::default()
    };
    let ftl = rig.ftl(config.clone());
    let pages = ftl.logical_pages();
    let mut versions = vec![0u32; pages as usize];
    let program_ns = {
        let timing = TimingConfig::default();
        timing.program_us * 1_000 + timing.transfer_ns(4096 + 64)
    };
    // The format's checkpoint, written at once (no scheduler yet), drains first.
    rig.clock.advance_by(100_000_000);
    let mut deepest_ns = 0;
    // Cold data everywhere, then a hot eighth: its blocks wear, the area does not, and static
    // wear leveling asks for a checkpoint on the area's least worn blocks.
    let mut state = 11u64;
    let mut step = 0u64;
    let mut written = 0u64;
    'run: while written < pages * 12 {
        step += 1;
        assert!(step < pages * 400, "admission held writes back for good");
        rig.clock.advance_by(2 * program_ns);
        // One unit at a time, so that a crash can land between any two checkpoint pages.
        for _ in 0..256 {
            match ftl.background_gc().unwrap() {
                GcWork::Idle | GcWork::Blocked => break,
                GcWork::Moved | GcWork::Erased | GcWork::Checkpointed => {}
            }
            deepest_ns = deepest_ns.max(deepest_queue_ns(&rig));
            let done = ftl.gc_sched_stats().unwrap().checkpoint_pages;
            if crash_at.is_some_and(|at| done >= at) {
                break 'run;
            }
        }
        if !ftl.write_admitted() {
            continue;
        }
        let lpa = if written < pages {
            written
        } else {
            next(&mut state) % (pages / 8)
        };
        versions[lpa as usize] += 1;
        ftl.write(lpa, &page(lpa, versions[lpa as usize]), false)
            .unwrap();
        written += 1;
        deepest_ns = deepest_ns.max(deepest_queue_ns(&rig));
    }
    let sched = ftl.gc_sched_stats().unwrap();
    assert!(sched.peak_gc_dies <= sched.max_gc_dies, "{sched:?}");
    match crash_at {
        Some(at) => assert_eq!(sched.checkpoint_pages, at, "the crash point was reached"),
        None => assert!(
            sched.checkpoint_pages > 16,
            "wear leveling wrote checkpoints as GC work: {sched:?}"
        ),
    }
    drop(ftl);
    let (ftl, _) = Ftl::open(rig.mems.clone(), config).unwrap();
    let mut buf = vec![0; 4096];
    for lpa in 0..pages {
        ftl.read(lpa, &mut buf).unwrap();
        assert_eq!(buf, page(lpa, versions[lpa as usize]), "lpa {lpa}");
    }
    deepest_ns
}

/// GC work issued to an idle die queues at most this there (as in the read-wait test above).
fn gc_queue_bound_ns() -> u64 {
    let timing = TimingConfig::default();
    let program_ns = timing.program_us * 1_000 + timing.transfer_ns(4096 + 64);
    let suspend_ns = (timing.suspend.suspend_cost_us + timing.read_us) * 1_000;
    timing.erase_us * 1_000 + 2 * program_ns + 4 * timing.read_us * 1_000 + suspend_ns
}

#[test]
fn a_wear_leveling_checkpoint_is_written_a_page_at_a_time_and_survives_a_crash() {
    let deepest_ns = wear_leveling_run(None);
    let bound_ns = gc_queue_bound_ns();
    assert!(
        deepest_ns <= bound_ns,
        "a die had {deepest_ns} ns of work queued, bound {bound_ns} ns"
    );
}

#[test]
fn a_crash_while_a_checkpoint_is_half_written_reopens_to_every_write() {
    // The geometry of `wear_leveling_run`: 2 devices of 4 dies of 96 blocks.
    let pages = rig(2, 96).ftl(FtlConfig::default()).logical_pages();
    let stream = ftl::format::checkpoint::stream_bytes(pages, 2 * 4 * 96);
    let per_checkpoint = stream.div_ceil(4096) as u64;
    assert!(per_checkpoint > 8, "{per_checkpoint} pages");
    // In the first background checkpoint (the previous one is the format's), right after one
    // is complete, and in the second.
    for at in [
        1,
        per_checkpoint / 2,
        per_checkpoint,
        per_checkpoint + 1,
        2 * per_checkpoint - 1,
    ] {
        wear_leveling_run(Some(at));
    }
}
