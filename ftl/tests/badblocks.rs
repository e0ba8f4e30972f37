#![allow(clippy::unwrap_used)]
//! Bad blocks: factory bad blocks skipped, program and erase failures while churning, and wear-out
//! until the FTL turns read-only, with every page reading its last acknowledged value throughout.

mod common;

use common::{Model, Op, Rig, Rng, apply, fill, geometry, read_version};
use ftl::nand::{FaultConfig, Nand};
use ftl::{Ftl, FtlConfig, FtlError};

/// Overwrites random pages; every write must succeed.
fn churn(ftl: &Ftl, model: &mut Model, rng: &mut Rng, writes: u64) {
    for _ in 0..writes {
        let lpa = rng.below(model.pages());
        apply(ftl, model, Op::Write { lpa, fua: false }).unwrap();
    }
}

#[test]
fn factory_bad_blocks_are_skipped() {
    let faults = FaultConfig {
        seed: 11,
        ..FaultConfig::default()
    };
    let g = geometry(2, 32, 16);
    let expected: u32 = (0..2)
        .map(|d| {
            let f = faults.for_device(d);
            (0..g.blocks()).filter(|&b| f.is_factory_bad(b)).count() as u32
        })
        .sum();
    assert!(expected > 0, "seed gives no factory bad block");
    let rig = Rig::new(2, g, &faults, FtlConfig::default());
    let ftl = rig.format();
    assert_eq!(ftl.stats().factory_bad_blocks, expected);
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(1);
    fill(&ftl, &mut model);
    let pages = model.pages();
    churn(&ftl, &mut model, &mut rng, 4 * pages);
    model.verify_exact(&ftl);
    let s = ftl.stats();
    assert_eq!(s.grown_bad_blocks, 0);
    assert!(s.gc_runs > 0);
    ftl.close().unwrap();
    let (ftl, report) = rig.open();
    assert!(report.clean);
    model.verify_exact(&ftl);
    assert_eq!(ftl.stats().factory_bad_blocks, expected);
}

#[test]
fn program_and_erase_failures_while_churning() {
    let faults = FaultConfig {
        seed: 5,
        program_fail_prob: 1e-3,
        erase_fail_prob: 1e-2,
        ..FaultConfig::none()
    };
    // Every failure retires a whole block: room for them, 30% spares.
    let config = FtlConfig {
        spare_ratio: 0.3,
        ..FtlConfig::default()
    };
    let rig = Rig::new(2, geometry(2, 32, 16), &faults, config);
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(2);
    fill(&ftl, &mut model);
    let pages = model.pages();
    for round in 0..4 {
        churn(&ftl, &mut model, &mut rng, pages);
        if round % 2 == 0 {
            let lpa = rng.below(pages - 8);
            apply(&ftl, &mut model, Op::Trim { lpa, count: 8 }).unwrap();
            apply(&ftl, &mut model, Op::Flush).unwrap();
        }
        model.verify_exact(&ftl);
    }
    let s = ftl.stats();
    let nand: (u64, u64) = rig.devs.iter().fold((0, 0), |(p, e), d| {
        let n = d.stats();
        (p + n.program_failures, e + n.erase_failures)
    });
    eprintln!(
        "program failures {}, erase failures {}, grown bad {}, spares {}, available {}%",
        nand.0, nand.1, s.grown_bad_blocks, s.spare_blocks, s.available_spare
    );
    assert!(nand.0 > 0 && nand.1 > 0, "{nand:?}");
    assert!(s.grown_bad_blocks > 0);
    // Every erase failure retires a block; a program failure retires its block once GC emptied it.
    assert!(u64::from(s.grown_bad_blocks) >= nand.1);
    assert!(s.available_spare < 100, "{s:?}");
    assert!(!s.read_only);
    ftl.close().unwrap();
    let (ftl, _) = rig.open();
    model.verify_exact(&ftl);
}

/// One device whose blocks wear out after 30 erases: the FTL reaches its end of life quickly.
fn worn_rig() -> Rig {
    let faults = FaultConfig {
        seed: 9,
        endurance_cycles: 30,
        ..FaultConfig::none()
    };
    let config = FtlConfig {
        endurance_cycles: 30,
        ..FtlConfig::default()
    };
    Rig::new(1, geometry(2, 16, 16), &faults, config)
}

#[test]
fn wear_out_turns_read_only_without_corruption() {
    let rig = worn_rig();
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(3);
    fill(&ftl, &mut model);
    let mut writes = 0u64;
    let reason = loop {
        let lpa = rng.below(model.pages());
        let v = model.take_version();
        match ftl.write(lpa, &common::page(lpa, v), false) {
            Ok(()) => model.written(lpa, v),
            Err(FtlError::ReadOnly { reason }) => {
                // The write may have landed before GC ran out of room: either value, then fixed.
                let got = read_version(&ftl, lpa).unwrap();
                assert!(got == v || got == model.current(lpa), "lpa {lpa}: {got}");
                if got == v {
                    model.written(lpa, v);
                }
                break reason;
            }
            Err(e) => panic!("write {writes}: {e}"),
        }
        writes += 1;
        assert!(writes < 2_000_000, "never wore out");
    };
    let s = ftl.stats();
    eprintln!("read-only after {writes} writes: {reason}; {s:?}");
    assert!(!reason.is_empty());
    assert!(s.read_only);
    assert!(s.erase_count_mean > 20.0, "{s:?}");
    model.verify_exact(&ftl);
    // Writes, trims keep failing, with the reason.
    for lpa in [0, model.pages() / 2, model.pages() - 1] {
        match ftl.write(lpa, &common::page(lpa, 1), false) {
            Err(FtlError::ReadOnly { reason }) => assert!(!reason.is_empty()),
            other => panic!("write after read-only: {other:?}"),
        }
    }
    assert!(matches!(ftl.trim(0, 1), Err(FtlError::ReadOnly { .. })));
    model.verify_exact(&ftl);
    // A read-only FTL still closes (it writes no checkpoint if it cannot), and reopens.
    let closed = ftl.close();
    eprintln!("close of a read-only FTL: {closed:?}");
    let (ftl, report) = rig.open();
    eprintln!("{report:?}");
    model.verify_exact(&ftl);
}

#[test]
fn grown_bad_blocks_and_read_only_survive_reopen() {
    let rig = worn_rig();
    let ftl = rig.format();
    let pages = ftl.logical_pages();
    let mut rng = Rng::new(3);
    let mut v = 1;
    while ftl
        .write(rng.below(pages), &common::page(0, v), false)
        .is_ok()
    {
        v += 1;
    }
    let before = ftl.stats();
    assert!(before.read_only && before.grown_bad_blocks > 0);
    ftl.close().unwrap();
    let (ftl, _) = rig.open();
    let after = ftl.stats();
    // Close may retire more worn blocks (erasing the old checkpoint fails at end of life), never fewer.
    assert!(
        after.grown_bad_blocks >= before.grown_bad_blocks,
        "{before:?} {after:?}"
    );
    assert_eq!(after.factory_bad_blocks, before.factory_bad_blocks);
    assert!(after.available_spare <= before.available_spare);
    assert!(after.read_only);
    assert!(matches!(
        ftl.write(0, &common::page(0, 1), false),
        Err(FtlError::ReadOnly { .. })
    ));
}
