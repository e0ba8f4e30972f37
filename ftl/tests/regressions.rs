#![allow(clippy::unwrap_used)]
//! Minimal reproductions of FTL bugs found by the scenario tests, kept as regressions.

mod common;

use common::{Model, Op, Rig, Rng, apply, fill, geometry};
use ftl::FtlConfig;
use ftl::nand::FaultConfig;

/// GC picked a block already queued for erase (Closed, no valid page) as its next victim: the
/// block was queued twice, or a stale GC job ran on it after it had been erased and reopened
/// (panics "victim still holds valid pages", "block freed twice", open_block on a Closed block).
#[test]
fn gc_never_collects_a_block_queued_for_erase() {
    let rig = Rig::small();
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(1);
    fill(&ftl, &mut model);
    for _ in 0..5000 {
        let lpa = rng.below(model.pages());
        apply(&ftl, &mut model, Op::Write { lpa, fua: false }).unwrap();
    }
    model.verify_exact(&ftl);
}

/// With a small over-provisioning ratio on a small device, the exported space left no room for the
/// open blocks, trim log, checkpoints and GC reserve: the FTL turned read-only while the host was
/// still writing its logical space for the first time.
#[test]
fn small_op_ratio_on_small_device_stays_writable() {
    for op_ratio in [0.01, 0.02, 0.04, 0.06] {
        for (blocks_per_die, pages_per_block) in [(16, 16), (16, 32), (32, 16)] {
            let config = FtlConfig {
                op_ratio,
                ..FtlConfig::default()
            };
            let rig = Rig::new(
                2,
                geometry(2, blocks_per_die, pages_per_block),
                &FaultConfig::none(),
                config,
            );
            let ftl = rig.format();
            let mut model = Model::new(ftl.logical_pages());
            let mut rng = Rng::new(7);
            fill(&ftl, &mut model);
            for _ in 0..3 * model.pages() {
                let lpa = rng.below(model.pages());
                apply(&ftl, &mut model, Op::Write { lpa, fua: false }).unwrap();
            }
            model.verify_exact(&ftl);
        }
    }
}
