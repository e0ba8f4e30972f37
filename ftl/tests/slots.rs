#![allow(clippy::unwrap_used)]
//! 4 KiB logical pages on 16 KiB NAND pages: pages are assembled from four logical pages in RAM,
//! read from there until programmed, padded by flush and FUA, and placed again when a program
//! fails; recovery reads a record per slot.

mod common;

use std::sync::Arc;

use common::{
    Model, Op, Rig, Rng, apply, fill, geometry, is_power_lost, page, random_op, read_version,
    sixteen_kib,
};
use ftl::nand::{FaultConfig, Nand};
use ftl::{Ftl, FtlConfig};
use keys::{Backend, InstanceKey};

fn rig() -> Rig {
    Rig::new(
        2,
        sixteen_kib(geometry(2, 16, 16)),
        &FaultConfig::none(),
        FtlConfig::default(),
    )
}

fn programs(rig: &Rig) -> u64 {
    rig.devs.iter().map(|d| d.stats().pages_programmed).sum()
}

#[test]
fn a_page_in_assembly_reads_back_and_flush_pads_it() {
    let rig = rig();
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let before = programs(&rig);
    let nand_before = ftl.stats().nand_pages_written;
    // Three logical pages: not a whole NAND page, so nothing is programmed yet.
    for lpa in [5, 9, 700] {
        apply(&ftl, &mut model, Op::Write { lpa, fua: false }).unwrap();
    }
    assert_eq!(programs(&rig), before, "a partial page must wait in RAM");
    model.verify_exact(&ftl);
    // A fourth fills the page: programmed once.
    apply(
        &ftl,
        &mut model,
        Op::Write {
            lpa: 11,
            fua: false,
        },
    )
    .unwrap();
    assert_eq!(programs(&rig), before + 1);
    // One more, then a flush pads its page: one more program, counted as four logical pages.
    apply(
        &ftl,
        &mut model,
        Op::Write {
            lpa: 12,
            fua: false,
        },
    )
    .unwrap();
    assert_eq!(programs(&rig), before + 1);
    apply(&ftl, &mut model, Op::Flush).unwrap();
    assert_eq!(programs(&rig), before + 2);
    assert_eq!(ftl.stats().nand_pages_written - nand_before, 8);
    model.verify_exact(&ftl);
    // Overwrite a page still in assembly: the newer version wins, before and after a crash.
    apply(&ftl, &mut model, Op::Write { lpa: 5, fua: false }).unwrap();
    apply(&ftl, &mut model, Op::Write { lpa: 5, fua: false }).unwrap();
    model.verify_exact(&ftl);
    apply(&ftl, &mut model, Op::Flush).unwrap();
    let (ftl, _) = rig.crash(ftl, 3);
    model.verify_after_crash(&ftl);
    assert_eq!(read_version(&ftl, 5).unwrap(), model.current(5));
}

#[test]
fn fua_pads_and_survives_a_crash() {
    let rig = rig();
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(44);
    for i in 0..400 {
        let lpa = rng.below(model.pages());
        let fua = i % 7 == 0;
        apply(&ftl, &mut model, Op::Write { lpa, fua }).unwrap();
    }
    let before = programs(&rig);
    apply(&ftl, &mut model, Op::Write { lpa: 3, fua: true }).unwrap();
    assert!(programs(&rig) > before, "FUA must program its page");
    let (ftl, _) = rig.crash(ftl, 9);
    model.verify_after_crash(&ftl);
}

/// Crashes at random points of a random workload (writes, FUA, trims, flushes) with GC running:
/// every read after recovery is allowed by the model.
#[test]
fn crash_at_random_points() {
    for seed in 0..12u64 {
        let rig = rig();
        let ftl = rig.format();
        let mut model = Model::new(ftl.logical_pages());
        let mut rng = Rng::new(seed);
        fill(&ftl, &mut model);
        let ops = 500 + rng.below(3000);
        rig.rail.arm(ops);
        let mut ftl = ftl;
        for round in 0..3 {
            let mut lost = false;
            for _ in 0..20_000 {
                let op = random_op(&mut rng, model.pages());
                match apply(&ftl, &mut model, op) {
                    Ok(()) => {}
                    Err(e) if is_power_lost(&e) => {
                        lost = true;
                        break;
                    }
                    Err(e) => panic!("seed {seed} round {round}: {op:?} failed: {e}"),
                }
            }
            assert!(lost, "seed {seed}: the power cut never came");
            let (reopened, _) = rig.crash(ftl, seed * 10 + round);
            model.verify_after_crash(&reopened);
            ftl = reopened;
            rig.rail.arm(200 + rng.below(2000));
        }
    }
}

/// Program failures with pages in assembly: the failed page's slots are placed again, nothing
/// acknowledged is lost, and the block is retired.
#[test]
fn program_failures_lose_nothing() {
    let faults = FaultConfig {
        program_fail_prob: 0.002,
        ..FaultConfig::none()
    };
    // Every failure retires a block: keep enough spares for the run.
    let config = FtlConfig {
        spare_ratio: 0.2,
        ..FtlConfig::default()
    };
    let rig = Rig::new(2, sixteen_kib(geometry(2, 32, 16)), &faults, config);
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(7);
    fill(&ftl, &mut model);
    for _ in 0..3000 {
        let op = random_op(&mut rng, model.pages());
        apply(&ftl, &mut model, op).unwrap();
    }
    let failures: u64 = rig.devs.iter().map(|d| d.stats().program_failures).sum();
    assert!(failures >= 2, "only {failures} program failures");
    assert!(ftl.stats().grown_bad_blocks > 0);
    model.verify_exact(&ftl);
    apply(&ftl, &mut model, Op::Flush).unwrap();
    let (ftl, _) = rig.crash(ftl, 1);
    model.verify_after_crash(&ftl);
}

/// Readers on other threads see pages in assembly and programmed ones alike while a writer runs.
#[test]
fn concurrent_readers_see_pages_in_assembly() {
    let rig = rig();
    let ftl = Arc::new(rig.format());
    let pages = 256u64;
    // Each logical page holds (lpa, version) with versions only growing: a reader must never see
    // an older version than one it saw before, nor another page's data.
    let writer = {
        let ftl = ftl.clone();
        std::thread::spawn(move || {
            for version in 1..=12u64 {
                for lpa in 0..pages {
                    ftl.write(lpa, &common::page(lpa, version), false).unwrap();
                }
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let ftl = ftl.clone();
            std::thread::spawn(move || {
                let mut seen = vec![0u64; pages as usize];
                let mut rng = Rng::new(r);
                for _ in 0..20_000 {
                    let lpa = rng.below(pages);
                    let version = read_version(&ftl, lpa).unwrap();
                    assert!(version >= seen[lpa as usize], "lpa {lpa} went back in time");
                    seen[lpa as usize] = version;
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    for lpa in 0..pages {
        assert_eq!(read_version(&ftl, lpa).unwrap(), 12);
    }
}

#[test]
fn sealed_slots_survive_gc_and_reopen() {
    let rig = rig();
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    let ftl =
        Ftl::format_sealed(rig.dyn_devs(), FtlConfig::default(), Some(key.sealer(1))).unwrap();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(5);
    fill(&ftl, &mut model);
    for _ in 0..3000 {
        let op = random_op(&mut rng, model.pages());
        apply(&ftl, &mut model, op).unwrap();
    }
    assert!(ftl.stats().gc_pages_moved > 0);
    model.verify_exact(&ftl);
    ftl.close().unwrap();
    let (ftl, _) =
        Ftl::open_sealed(rig.dyn_devs(), FtlConfig::default(), Some(key.sealer(1))).unwrap();
    model.verify_exact(&ftl);
}

fn syncs(rig: &Rig) -> Vec<u64> {
    rig.devs.iter().map(|d| d.stats().syncs).collect()
}

/// A FUA write of several pages (`write` non-durable, then `make_durable` of the range) programs
/// only the page in assembly that holds them, leaves another stream's page in assembly alone, and
/// survives a power cut; a plain `flush` would have padded both pages.
#[test]
fn make_durable_of_a_range_pads_only_its_own_stream() {
    let rig = rig();
    let ftl = rig.format();
    // Page 5 written twice in quick succession: its second version goes to the hot stream, whose
    // page in assembly then holds it alone. Fresh pages go to the cold stream.
    ftl.write(5, &page(5, 1), false).unwrap();
    ftl.write(5, &page(5, 2), false).unwrap();
    let before = programs(&rig);
    for lpa in 200..202 {
        ftl.write(lpa, &page(lpa, 1), false).unwrap();
    }
    // Cold page in assembly: [5 v1, 200, 201]; hot: [5 v2]. Nothing programmed yet.
    assert_eq!(programs(&rig), before);
    let syncs_before = syncs(&rig);
    ftl.make_durable(200, 2).unwrap();
    assert_eq!(
        programs(&rig),
        before + 1,
        "only the cold stream's page is padded"
    );
    let synced: u64 = syncs(&rig)
        .iter()
        .zip(&syncs_before)
        .map(|(a, b)| a - b)
        .sum();
    assert_eq!(synced, 1, "only the device holding the range is synced");
    assert_eq!(
        read_version(&ftl, 5).unwrap(),
        2,
        "hot page still reads from assembly"
    );
    let (ftl, _) = rig.crash(ftl, 17);
    for lpa in 200..202 {
        assert_eq!(
            read_version(&ftl, lpa).unwrap(),
            1,
            "page {lpa} lost its FUA write"
        );
    }
}

/// Trims and write-zeroes made durable by `make_durable` survive a power cut: the trim buffer is
/// written without a barrier over the data streams.
#[test]
fn make_durable_of_a_trimmed_range_survives_a_crash() {
    let rig = rig();
    let ftl = rig.format();
    for lpa in 40..48 {
        ftl.write(lpa, &page(lpa, 1), false).unwrap();
    }
    ftl.flush().unwrap();
    ftl.write(100, &page(100, 1), false).unwrap();
    ftl.write_zeroes(40, 8).unwrap();
    let before = programs(&rig);
    ftl.make_durable(40, 8).unwrap();
    assert_eq!(
        programs(&rig),
        before + 1,
        "one trim-log page, no data page padded"
    );
    let (ftl, _) = rig.crash(ftl, 5);
    for lpa in 40..48 {
        assert_eq!(read_version(&ftl, lpa).unwrap(), 0, "page {lpa} came back");
    }
    assert!(ftl.make_durable(ftl.logical_pages() - 1, 2).is_err());
}
