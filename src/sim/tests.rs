//! The runner against the fakes: a correct fake passes every seed, each broken one is caught.

use super::*;
use crate::fake::{FakeFactory, FakeFlaw, FakeFtl};
use crate::target::{FnFactory, SimTarget};

#[test]
fn correct_fake_passes_many_seeds() {
    let mut factory = FakeFactory::new(FakeFlaw::None);
    let (summary, failure) = run_seeds(&mut factory, 0..25, false, false);
    assert_eq!(failure, None);
    assert_eq!(summary.seeds, 25);
    assert!(summary.crashes > 25, "{summary}");
    assert!(summary.recovery_crashes > 0, "{summary}");
    assert!(summary.reads_checked > 50_000, "{summary}");
}

#[test]
fn seeds_replay_exactly() {
    let mut factory = FakeFactory::new(FakeFlaw::None);
    let a = run_seed(&mut factory, 7, false).expect("seed 7");
    let b = run_seed(&mut factory, 7, false).expect("seed 7 again");
    assert_eq!(a, b);
}

fn first_failure(flaw: FakeFlaw) -> SeedFailure {
    let mut factory = FakeFactory::new(flaw);
    let (_, failure) = run_seeds(&mut factory, 0..40, false, false);
    failure.unwrap_or_else(|| panic!("{flaw:?} was not caught in 40 seeds"))
}

#[test]
fn catches_lost_flushed_writes() {
    let failure = first_failure(FakeFlaw::FlushIsNoop);
    assert!(failure.reason.contains("allowed"), "{failure:?}");
}

#[test]
fn catches_resurrected_trims() {
    let failure = first_failure(FakeFlaw::TrimNotDurable);
    assert!(failure.reason.contains("allowed {v0}"), "{failure:?}");
}

#[test]
fn catches_torn_pages() {
    let failure = first_failure(FakeFlaw::TearOnCrash);
    assert!(failure.reason.contains("torn"), "{failure:?}");
}

#[test]
fn read_only_ends_the_writes_but_reads_are_still_checked() {
    let mut factory = FakeFactory::new(FakeFlaw::None).read_only_after(100);
    let report = run_seed(&mut factory, 5, false).expect("seed 5");
    assert!(report.read_only);
    assert!(report.reads_checked > 1000, "{report:?}");
}

#[test]
fn fn_factory_drives_a_target_and_a_forgetful_one_is_caught() {
    // Every open returns a blank target: flushed data is gone after the first reopen.
    let mut factory = FnFactory::new(
        |devices: Vec<_>, _: &_| Ok(FakeFtl::standalone(devices.len() as u64 * 100)),
        |devices: Vec<_>, _: &_| Ok(FakeFtl::standalone(devices.len() as u64 * 100)),
        |ftl: FakeFtl| ftl.flush(),
    );
    let failure = (0..10)
        .find_map(|seed| run_seed(&mut factory, seed, false).err())
        .expect("a forgetful target is caught");
    assert!(failure.contains("after reopen"), "{failure}");
}

#[test]
fn a_panicking_target_fails_its_seed_instead_of_the_run() {
    let mut factory = FnFactory::new(
        |_: Vec<_>, _: &_| -> Result<FakeFtl, _> { panic!("format exploded") },
        |_: Vec<_>, _: &_| Ok(FakeFtl::standalone(1)),
        |_: FakeFtl| Ok(()),
    );
    let (summary, failure) = run_seeds(&mut factory, 3..5, false, false);
    assert_eq!(summary.seeds, 0);
    let failure = failure.expect("failure");
    assert_eq!(failure.seed, 3);
    assert!(failure.reason.contains("format exploded"), "{failure:?}");
}
