//! The runner against the fakes: a correct fake passes every seed, each broken one is caught.

use super::*;
use crate::fake::{FakeFactory, FakeFlaw};

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
