#![allow(clippy::unwrap_used)]
//! Static wear leveling: under a skewed workload (90% of writes to 10% of pages) it keeps the most
//! worn block much closer to the mean than without it.

mod common;

use common::{Model, Op, Rig, Rng, apply, fill, geometry};
use ftl::FtlConfig;
use ftl::nand::FaultConfig;

/// Runs the skewed workload until the mean erase count passes `target`; returns (max / mean, stats).
fn skewed(static_wear_leveling: bool, target: f64) -> (f64, ftl::FtlStats) {
    let config = FtlConfig {
        static_wear_leveling,
        ..FtlConfig::default()
    };
    let rig = Rig::new(2, geometry(2, 32, 32), &FaultConfig::none(), config);
    let ftl = rig.format();
    let mut model = Model::new(ftl.logical_pages());
    let mut rng = Rng::new(17);
    fill(&ftl, &mut model);
    let pages = model.pages();
    let hot = pages / 10;
    let mut writes = 0u64;
    loop {
        for _ in 0..1000 {
            let lpa = if rng.chance(0.9) {
                rng.below(hot)
            } else {
                hot + rng.below(pages - hot)
            };
            apply(&ftl, &mut model, Op::Write { lpa, fua: false }).unwrap();
        }
        writes += 1000;
        let s = ftl.stats();
        if s.erase_count_mean >= target {
            model.verify_exact(&ftl);
            let ratio = f64::from(s.erase_count_max) / s.erase_count_mean;
            eprintln!(
                "static WL {static_wear_leveling}: {writes} writes, erase count max {} mean {:.1} min {} -> max/mean {ratio:.2}, wl_runs {}, waf {:.2}",
                s.erase_count_max,
                s.erase_count_mean,
                s.erase_count_min,
                s.wl_runs,
                s.waf()
            );
            return (ratio, s);
        }
        assert!(writes < 1_000_000);
    }
}

#[test]
fn static_wear_leveling_flattens_wear_under_skew() {
    let (on, on_stats) = skewed(true, 30.0);
    let (off, off_stats) = skewed(false, 30.0);
    eprintln!("max/mean with static WL {on:.2}, without {off:.2}");
    assert!(on_stats.wl_runs > 0, "static WL never ran: {on_stats:?}");
    assert!(
        on < off && on <= 1.2,
        "max/mean {on:.2} with WL, {off:.2} without"
    );
    // What static wear leveling is for: cold blocks are cycled too, not left at their first erase.
    let floor = |s: &ftl::FtlStats| f64::from(s.erase_count_min) / s.erase_count_mean;
    assert!(
        floor(&on_stats) >= 0.8,
        "with WL the coldest block lags: {on_stats:?}"
    );
    assert!(
        floor(&off_stats) < 0.5,
        "without WL cold blocks should lag: {off_stats:?}"
    );
}
