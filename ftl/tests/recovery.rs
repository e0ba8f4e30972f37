#![allow(clippy::unwrap_used)]
//! Recovery after clean closes and crashes: every case of `recovery::open`, checked against the
//! durability contract (see `common::Model`).

mod common;

use common::{Model, Op, Rig, Rng, apply, fill, geometry, is_power_lost, random_op, read_version};
use ftl::nand::FaultConfig;
use ftl::{Ftl, FtlConfig};

/// Runs `ops` random ops (no power trouble), stopping at nothing.
fn churn(ftl: &Ftl, model: &mut Model, rng: &mut Rng, ops: usize) {
    for _ in 0..ops {
        let op = random_op(rng, model.pages());
        apply(ftl, model, op).unwrap();
    }
}

/// Runs random ops until one fails; it must fail with PowerLost. Returns how many succeeded.
fn churn_until_power_lost(ftl: &Ftl, model: &mut Model, rng: &mut Rng, max_ops: usize) -> usize {
    for i in 0..max_ops {
        let op = random_op(rng, model.pages());
        match apply(ftl, model, op) {
            Ok(()) => {}
            Err(e) if is_power_lost(&e) => return i,
            Err(e) => panic!("op {i} {op:?} failed: {e}"),
        }
    }
    max_ops
}

#[test]
fn clean_close_reopen_is_clean() {
    let rig = Rig::small();
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(1);
    fill(&ftl, &mut model);
    churn(&ftl, &mut model, &mut rng, 3000);
    ftl.close().unwrap();
    let (ftl, report) = rig.open();
    assert!(report.clean, "{report:?}");
    assert_eq!(report.blocks_folded, 0);
    model.verify_exact(&ftl);
    // And again, with nothing written in between.
    ftl.close().unwrap();
    let (ftl, report) = rig.open();
    assert!(report.clean, "{report:?}");
    model.verify_exact(&ftl);
}

#[test]
fn crash_right_after_format() {
    let rig = Rig::small();
    let ftl = rig.format();
    let pages = ftl.logical_pages();
    let (ftl, report) = rig.crash(ftl, 7);
    assert!(
        report.clean,
        "nothing written since the checkpoint: {report:?}"
    );
    assert_eq!(ftl.logical_pages(), pages);
    let mut model = Model::new(pages);
    model.verify_exact(&ftl);
    // Usable afterwards.
    fill(&ftl, &mut model);
    model.verify_exact(&ftl);
}

#[test]
fn crash_with_no_close_since_format_rebuilds_map_by_fold() {
    let rig = Rig::small();
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(2);
    fill(&ftl, &mut model);
    churn(&ftl, &mut model, &mut rng, 4000);
    ftl.flush().unwrap();
    model.flushed();
    let gc_runs = ftl.stats().gc_runs;
    assert!(gc_runs > 0, "the workload should have run GC");
    let (ftl, report) = rig.crash(ftl, 3);
    assert!(!report.clean, "{report:?}");
    assert!(report.blocks_folded > 0, "{report:?}");
    // Everything was flushed: exact.
    model.verify_exact(&ftl);
}

#[test]
fn flushed_data_survives_crash_and_unflushed_is_in_allowed_set() {
    for seed in 0..8 {
        let rig = Rig::small();
        let ftl = rig.format();
        let mut model = Model::new(ftl.logical_pages());
        let mut rng = Rng::new(100 + seed);
        fill(&ftl, &mut model);
        // A checkpoint with data in it, so the fold has pointers to keep and to drop.
        ftl.close().unwrap();
        let (ftl, _) = rig.open();
        churn(&ftl, &mut model, &mut rng, 1500);
        ftl.flush().unwrap();
        model.flushed();
        let flushed = model.clone();
        // Unflushed writes only (no flush, no FUA).
        for _ in 0..300 {
            let lpa = rng.below(model.pages());
            apply(&ftl, &mut model, Op::Write { lpa, fua: false }).unwrap();
        }
        let (ftl, report) = rig.crash(ftl, seed);
        assert!(!report.clean);
        let mut survived = 0;
        for lpa in 0..model.pages() {
            let got = read_version(&ftl, lpa).unwrap();
            assert!(
                model.allowed(lpa).contains(&got),
                "seed {seed} lpa {lpa}: {got} not in {:?}",
                model.allowed(lpa)
            );
            assert!(
                got >= flushed.durable[lpa as usize] || got == 0,
                "older than flushed"
            );
            if got != flushed.durable[lpa as usize] {
                survived += 1;
            }
        }
        eprintln!("seed {seed}: {survived} unflushed pages survived");
        model.verify_after_crash(&ftl);
    }
}

#[test]
fn fua_write_survives_crash_without_flush() {
    for seed in 0..8 {
        let rig = Rig::small();
        let ftl = rig.format();
        let mut model = Model::new(ftl.logical_pages());
        let mut rng = Rng::new(200 + seed);
        fill(&ftl, &mut model);
        ftl.flush().unwrap();
        model.flushed();
        // Plain writes everywhere, and FUA writes to a few pages, never a flush.
        let mut fua_pages = Vec::new();
        for i in 0..600 {
            let lpa = rng.below(model.pages());
            let fua = i % 20 == 0;
            apply(&ftl, &mut model, Op::Write { lpa, fua }).unwrap();
            fua_pages.retain(|&(l, _)| l != lpa);
            if fua {
                fua_pages.push((lpa, model.current(lpa)));
            }
        }
        assert!(!fua_pages.is_empty());
        let (ftl, _) = rig.crash(ftl, seed);
        for &(lpa, v) in &fua_pages {
            assert_eq!(
                read_version(&ftl, lpa).unwrap(),
                v,
                "FUA write to {lpa} lost"
            );
        }
        model.verify_after_crash(&ftl);
    }
}

#[test]
fn unflushed_writes_and_trims_within_allowed_set() {
    for seed in 0..16 {
        let rig = Rig::small();
        let ftl = rig.format();
        let mut model = Model::new(ftl.logical_pages());
        let mut rng = Rng::new(300 + seed);
        fill(&ftl, &mut model);
        churn(&ftl, &mut model, &mut rng, 2000);
        let (ftl, _) = rig.crash(ftl, seed);
        model.verify_after_crash(&ftl);
        // The recovered FTL keeps working, and a second crash is just as safe.
        churn(&ftl, &mut model, &mut rng, 1000);
        let (ftl, _) = rig.crash(ftl, seed + 1000);
        model.verify_after_crash(&ftl);
        ftl.close().unwrap();
        let (ftl, report) = rig.open();
        assert!(report.clean);
        model.verify_exact(&ftl);
    }
}

#[test]
fn trims_honoured_after_flush_and_crash() {
    for with_checkpoint in [false, true] {
        let rig = Rig::small();
        let ftl = rig.format();
        let mut model = Model::new(ftl.logical_pages());
        fill(&ftl, &mut model);
        if with_checkpoint {
            ftl.close().unwrap();
            let (f, _) = rig.open();
            f.flush().unwrap();
            model.flushed();
            // Trim pages the checkpoint maps to data.
            apply(&f, &mut model, Op::Trim { lpa: 10, count: 50 }).unwrap();
            f.write_zeroes(200, 20).unwrap();
            for l in 200..220 {
                model.written(l, 0);
            }
            f.flush().unwrap();
            model.flushed();
            let (f, report) = rig.crash(f, 11);
            assert!(!report.clean);
            model.verify_exact(&f);
            for l in (10..60).chain(200..220) {
                assert_eq!(read_version(&f, l).unwrap(), 0);
            }
            continue;
        }
        apply(&ftl, &mut model, Op::Trim { lpa: 10, count: 50 }).unwrap();
        ftl.write_zeroes(200, 20).unwrap();
        for l in 200..220 {
            model.written(l, 0);
        }
        // Rewrite a few trimmed pages: the write is newer than the trim.
        for l in 20..25 {
            apply(&ftl, &mut model, Op::Write { lpa: l, fua: false }).unwrap();
        }
        ftl.flush().unwrap();
        model.flushed();
        let (ftl, _) = rig.crash(ftl, 12);
        model.verify_exact(&ftl);
    }
}

#[test]
fn many_trims_survive_trim_log_gc_and_crash() {
    // Enough trims to fill trim-log blocks so GC relocates live trim entries.
    let rig = Rig::small();
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(5);
    fill(&ftl, &mut model);
    for round in 0..40 {
        for _ in 0..100 {
            let lpa = rng.below(model.pages());
            if rng.chance(0.5) {
                apply(&ftl, &mut model, Op::Trim { lpa, count: 1 }).unwrap();
            } else {
                apply(&ftl, &mut model, Op::Write { lpa, fua: false }).unwrap();
            }
        }
        if round % 3 == 0 {
            ftl.flush().unwrap();
            model.flushed();
        }
    }
    ftl.flush().unwrap();
    model.flushed();
    let (ftl, _) = rig.crash(ftl, 99);
    model.verify_exact(&ftl);
}

#[test]
fn trim_then_crash_without_flush_reads_either_value() {
    let mut outcomes = [0usize; 2];
    for seed in 0..16 {
        let rig = Rig::small();
        let ftl = rig.format();
        let mut model = Model::new(ftl.logical_pages());
        fill(&ftl, &mut model);
        ftl.flush().unwrap();
        model.flushed();
        let before: Vec<u64> = (0..model.pages()).map(|l| model.current(l)).collect();
        apply(&ftl, &mut model, Op::Trim { lpa: 0, count: 40 }).unwrap();
        // Enough trims that some trim-log pages get written on their own.
        for l in (100..model.pages()).step_by(2) {
            apply(&ftl, &mut model, Op::Trim { lpa: l, count: 1 }).unwrap();
        }
        let (ftl, _) = rig.crash(ftl, seed);
        for l in 0..40 {
            let got = read_version(&ftl, l).unwrap();
            assert!(got == 0 || got == before[l as usize], "lpa {l}: {got}");
            outcomes[usize::from(got == 0)] += 1;
        }
        model.verify_after_crash(&ftl);
    }
    eprintln!(
        "trimmed pages after crash: {} kept data, {} zero",
        outcomes[0], outcomes[1]
    );
}

/// A crash-at-random-k run: fill, churn, arm the rail at `k`, churn until the power fails, cut,
/// reopen, verify; then keep going a little and check a clean close works.
fn crash_at(rig: &Rig, seed: u64, k: u64, checkpoint_first: bool, churn_before: usize) {
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(seed);
    fill(&ftl, &mut model);
    churn(&ftl, &mut model, &mut rng, churn_before);
    let ftl = if checkpoint_first {
        ftl.close().unwrap();
        rig.open().0
    } else {
        ftl
    };
    rig.rail.arm(k);
    churn_until_power_lost(&ftl, &mut model, &mut rng, 100_000);
    let (ftl, _) = rig.crash(ftl, seed);
    model.verify_after_crash(&ftl);
    churn(&ftl, &mut model, &mut rng, 300);
    ftl.close().unwrap();
    let (ftl, report) = rig.open();
    assert!(report.clean);
    model.verify_exact(&ftl);
}

#[test]
fn crash_at_random_points() {
    let mut rng = Rng::new(42);
    for seed in 0..30 {
        let rig = Rig::small();
        let k = rng.below(3000);
        crash_at(&rig, seed, k, seed % 2 == 0, 500);
    }
}

#[test]
fn crash_at_random_points_during_heavy_gc() {
    // Little over-provisioning: GC runs all the time, with stream separation and WL on.
    let mut rng = Rng::new(43);
    for seed in 0..30 {
        // The least over-provisioning the FTL accepts: its capacity floor sets the logical space.
        let config = FtlConfig {
            op_ratio: 0.01,
            wl_threshold_cycles: 2,
            ..FtlConfig::default()
        };
        let rig = Rig::new(2, geometry(2, 16, 16), &FaultConfig::none(), config);
        let k = rng.below(4000);
        crash_at(&rig, 1000 + seed, k, seed % 3 == 0, 2000);
    }
}

#[test]
fn torn_pages_are_ignored() {
    let faults = FaultConfig {
        torn_write_prob: 1.0,
        ..FaultConfig::none()
    };
    let mut rng = Rng::new(44);
    for seed in 0..30 {
        let rig = Rig::new(2, geometry(2, 16, 16), &faults, FtlConfig::default());
        let k = rng.below(3000);
        crash_at(&rig, 2000 + seed, k, seed % 2 == 1, 800);
    }
}

/// The fixed workload of the close and flush tests: fill, then 2500 ops (writes, some FUA, trims,
/// GC) with a flush every 100; optionally stop right after the flush of that index.
fn workload(rig: &Rig, seed: u64, stop_after_flush: Option<usize>) -> (Ftl, Model, usize) {
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(seed);
    fill(&ftl, &mut model);
    let mut flushes = 0;
    for i in 0..2500 {
        // A flush every 100 ops, none in between.
        let op = match random_op(&mut rng, model.pages()) {
            _ if i % 100 == 99 => Op::Flush,
            Op::Flush => Op::Write {
                lpa: rng.below(model.pages()),
                fua: false,
            },
            op => op,
        };
        apply(&ftl, &mut model, op).unwrap();
        if matches!(op, Op::Flush) {
            if stop_after_flush == Some(flushes) {
                return (ftl, model, flushes + 1);
            }
            flushes += 1;
        }
    }
    (ftl, model, flushes)
}

#[test]
fn crash_during_close_at_every_step() {
    for seed in [1, 2] {
        let mut k = 0;
        loop {
            let rig = Rig::small();
            let (ftl, mut model, _) = workload(&rig, seed, None);
            // Pending erases and a buffered trim make close do more.
            apply(&ftl, &mut model, Op::Trim { lpa: 5, count: 3 }).unwrap();
            rig.rail.arm(k);
            match ftl.close() {
                Ok(()) => {
                    rig.rail.restore();
                    let (ftl, report) = rig.open();
                    assert!(report.clean);
                    model.verify_exact(&ftl);
                    eprintln!("seed {seed}: close takes {k} NAND mutations");
                    assert!(k > 3);
                    break;
                }
                Err(e) => assert!(is_power_lost(&e), "{e}"),
            }
            rig.power_cut(k);
            let (ftl, _) = rig.open();
            // Flushed data is all there, the rest within the allowed set.
            model.verify_after_crash(&ftl);
            k += 1;
        }
    }
}

#[test]
fn crash_right_after_every_flush() {
    let seed = 3;
    let rig = Rig::small();
    let (ftl, _, total) = workload(&rig, seed, None);
    drop(ftl);
    assert_eq!(total, 25);
    for i in 0..total {
        let rig = Rig::small();
        let (ftl, model, _) = workload(&rig, seed, Some(i));
        let (ftl, report) = rig.crash(ftl, i as u64);
        assert!(!report.clean);
        // Nothing acknowledged after the flush: exact.
        model.verify_exact(&ftl);
    }
}

#[test]
fn two_crashes_in_a_row() {
    let mut rng = Rng::new(45);
    for seed in 0..24 {
        let rig = Rig::small();
        let ftl = rig.format();
        let mut model = Model::new(ftl.logical_pages());
        let mut wl = Rng::new(3000 + seed);
        fill(&ftl, &mut model);
        churn(&ftl, &mut model, &mut wl, 1000);
        rig.rail.arm(rng.below(1000));
        churn_until_power_lost(&ftl, &mut model, &mut wl, 100_000);
        drop(ftl);
        rig.power_cut(seed);
        // Arm before the open: opening must not write, the first writes after it crash.
        rig.rail.arm(rng.below(40));
        let (ftl, _) = rig.open();
        model.verify_after_crash(&ftl);
        churn_until_power_lost(&ftl, &mut model, &mut wl, 100_000);
        let (ftl, _) = rig.crash(ftl, seed + 77);
        model.verify_after_crash(&ftl);
        churn(&ftl, &mut model, &mut wl, 200);
        ftl.flush().unwrap();
        model.flushed();
        let (ftl, _) = rig.crash(ftl, seed + 78);
        model.verify_exact(&ftl);
    }
}

#[test]
fn open_writes_nothing() {
    let rig = Rig::small();
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    fill(&ftl, &mut model);
    let ftl = rig.crash(ftl, 1).0;
    model.verify_after_crash(&ftl);
    drop(ftl);
    rig.rail.arm(0);
    let (ftl, _) = rig.open();
    model.verify_exact(&ftl);
    assert!(!rig.rail.is_lost());
    let err = ftl.write(0, &common::page(0, 1), false).unwrap_err();
    assert!(is_power_lost(&err), "{err}");
}
