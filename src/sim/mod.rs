//! `ferrite sim`: deterministic simulation of the FTL over emulated NAND with crashes, checked
//! against a model of what every read may legitimately return.
//!
//! - `page`: self-identifying page contents;
//! - `model`: the reference model (the sets of allowed versions per logical page);
//! - `plan`: what a seed decides (geometry, faults, FTL options, workload mix);
//! - `runner`: drives one seed against a [`SimFactory`](crate::target::SimFactory).

pub mod model;
pub mod page;
pub mod plan;
pub mod runner;

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::target::SimFactory;

pub use runner::{SeedReport, run_seed};

/// Totals over a run of seeds.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimSummary {
    pub seeds: u64,
    pub ops: u64,
    pub crashes: u64,
    pub recovery_crashes: u64,
    pub clean_reopens: u64,
    pub reads_checked: u64,
    pub media_errors: u64,
    pub read_only_seeds: u64,
    pub sixteen_kib_seeds: u64,
    pub elapsed: Duration,
}

impl SimSummary {
    fn add(&mut self, r: &SeedReport) {
        self.seeds += 1;
        self.ops += r.ops;
        self.crashes += r.crashes;
        self.recovery_crashes += r.recovery_crashes;
        self.clean_reopens += r.clean_reopens;
        self.reads_checked += r.reads_checked;
        self.media_errors += r.media_errors;
        self.read_only_seeds += u64::from(r.read_only);
        self.sixteen_kib_seeds += u64::from(r.multi_slot_pages);
    }
}

impl fmt::Display for SimSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sim: {} seeds passed, {} ops, {} crashes (+{} during recovery), {} clean reopens, \
             {} reads checked, {} media errors, {} seeds went read-only, {} seeds on 16 KiB \
             pages, {:.1} s",
            self.seeds,
            self.ops,
            self.crashes,
            self.recovery_crashes,
            self.clean_reopens,
            self.reads_checked,
            self.media_errors,
            self.read_only_seeds,
            self.sixteen_kib_seeds,
            self.elapsed.as_secs_f64()
        )
    }
}

/// The first failing seed of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedFailure {
    pub seed: u64,
    pub reason: String,
}

/// Runs `seeds` in order and stops at the first failure. Progress goes to stderr every 50 seeds.
pub fn run_seeds<F: SimFactory>(
    factory: &mut F,
    seeds: Range<u64>,
    verbose: bool,
    progress: bool,
) -> (SimSummary, Option<SeedFailure>) {
    let start = Instant::now();
    let total = seeds.end.saturating_sub(seeds.start);
    let mut summary = SimSummary::default();
    let mut failure = None;
    for seed in seeds {
        // A panicking target must still leave the seed and its replay command on the screen.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| run_seed(factory, seed, verbose)))
            .unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(&*payload))));
        match outcome {
            Ok(report) => summary.add(&report),
            Err(reason) => {
                failure = Some(SeedFailure { seed, reason });
                break;
            }
        }
        if progress && summary.seeds % 50 == 0 && summary.seeds < total {
            eprintln!(
                "sim: {}/{total} seeds, {} crashes, {:.1} s",
                summary.seeds,
                summary.crashes,
                start.elapsed().as_secs_f64()
            );
        }
    }
    summary.elapsed = start.elapsed();
    (summary, failure)
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests;
