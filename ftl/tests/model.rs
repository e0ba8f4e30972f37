#![allow(clippy::unwrap_used)]
//! Model-based test: random sequences of host operations, clean reopens and crashes over a small
//! FTL; every read is checked against the model (exact before a crash, allowed set after one).

mod common;

use common::{Model, Op, Rig, apply, geometry, is_power_lost, read_version};
use ftl::FtlConfig;
use ftl::nand::FaultConfig;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Write {
        lpa: u64,
        fua: bool,
    },
    Read {
        lpa: u64,
    },
    Trim {
        lpa: u64,
        count: u64,
    },
    Flush,
    CloseReopen,
    /// Crash between ops (`after: None`) or at the `after`-th NAND mutation of the next ops.
    Crash {
        after: Option<u64>,
        seed: u64,
    },
}

/// A tiny FTL (32 blocks of 8 pages) so that a few hundred writes run GC.
const PAGES_HINT: u64 = 128;

fn step() -> impl Strategy<Value = Step> {
    // Lpas are drawn from a hot range of 48 pages most of the time so pages get overwritten.
    let lpa = prop_oneof![4 => 0..48u64, 1 => 0..PAGES_HINT];
    prop_oneof![
        40 => (lpa.clone(), prop::bool::weighted(0.1)).prop_map(|(lpa, fua)| Step::Write { lpa, fua }),
        15 => lpa.clone().prop_map(|lpa| Step::Read { lpa }),
        8 => (lpa, 1..4u64).prop_map(|(lpa, count)| Step::Trim { lpa, count }),
        6 => Just(Step::Flush),
        1 => Just(Step::CloseReopen),
        2 => (prop::option::of(0..60u64), any::<u64>())
            .prop_map(|(after, seed)| Step::Crash { after, seed }),
    ]
}

/// Runs the steps; returns the GC runs the FTL reports at the end.
fn run(steps: Vec<Step>) -> Result<u64, TestCaseError> {
    let rig = Rig::new(
        1,
        geometry(2, 16, 8),
        &FaultConfig {
            torn_write_prob: 0.5,
            ..FaultConfig::none()
        },
        FtlConfig::default(),
    );
    let mut ftl = Some(rig.format());
    let pages = ftl.as_ref().unwrap().logical_pages();
    prop_assert!(pages >= PAGES_HINT, "{pages} logical pages");
    let mut model = Model::new(pages);
    // Every page written once, flushed: GC has live data to move from the first overwrites on.
    common::fill(ftl.as_ref().unwrap(), &mut model);
    ftl.as_ref().unwrap().flush().unwrap();
    model.flushed();
    // After `Crash { after: Some(k) }` the rail is armed; the crash happens when an op fails.
    let mut armed: Option<u64> = None;
    for step in steps {
        let f = ftl.take().unwrap();
        let result = match step {
            Step::Write { lpa, fua } => apply(&f, &mut model, Op::Write { lpa, fua }),
            Step::Trim { lpa, count } => apply(&f, &mut model, Op::Trim { lpa, count }),
            Step::Flush => apply(&f, &mut model, Op::Flush),
            Step::Read { lpa } => {
                if armed.is_none() {
                    let got = read_version(&f, lpa).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(got, model.current(lpa), "read of lpa {}", lpa);
                }
                Ok(())
            }
            Step::CloseReopen if armed.is_none() => {
                f.close().unwrap();
                let (f, report) = rig.open();
                prop_assert!(report.clean);
                model.verify_exact(&f);
                ftl = Some(f);
                continue;
            }
            Step::CloseReopen => Ok(()),
            Step::Crash { after: None, seed } => {
                let (f, _) = rig.crash(f, seed);
                armed = None;
                model.verify_after_crash(&f);
                ftl = Some(f);
                continue;
            }
            Step::Crash {
                after: Some(k),
                seed,
            } => {
                if armed.is_none() {
                    rig.rail.arm(k);
                    armed = Some(seed);
                }
                Ok(())
            }
        };
        match result {
            Ok(()) => ftl = Some(f),
            Err(e) if is_power_lost(&e) && armed.is_some() => {
                let (f, _) = rig.crash(f, armed.take().unwrap());
                model.verify_after_crash(&f);
                ftl = Some(f);
            }
            Err(e) => return Err(TestCaseError::fail(format!("{step:?}: {e}"))),
        }
    }
    let f = ftl.take().unwrap();
    if armed.is_some() {
        let (f, _) = rig.crash(f, 1);
        model.verify_after_crash(&f);
        f.close().unwrap();
    } else {
        model.verify_exact(&f);
        f.close().unwrap();
    }
    let (f, report) = rig.open();
    prop_assert!(report.clean);
    model.verify_exact(&f);
    Ok(f.stats().gc_runs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ftl_matches_model(steps in prop::collection::vec(step(), 1..600)) {
        run(steps)?;
    }
}

#[test]
fn model_runs_exercise_gc() {
    // The workload of the proptest, fixed: enough overwrites that GC runs.
    let steps = (0..600u64)
        .map(|i| match i % 10 {
            9 => Step::Flush,
            8 => Step::Read { lpa: i % 48 },
            _ => Step::Write {
                lpa: (i * 7) % 48,
                fua: false,
            },
        })
        .collect();
    let gc_runs = run(steps).unwrap();
    assert!(gc_runs > 10, "{gc_runs} GC runs");
}
