#![allow(clippy::unwrap_used)]
//! `bench gc` on a tiny configuration: deterministic (the same seed gives the same report),
//! every mode measured, the scheduler within its share, and reads never starved.

use ferrite::bench_gc::{GcBenchParams, GcBenchReport, run};

fn tiny() -> GcBenchParams {
    GcBenchParams {
        devices: 2,
        blocks_per_die: 12,
        pages_per_block: 16,
        qd: 8,
        duration_ns: 150_000_000,
        ..GcBenchParams::defaults()
    }
}

fn without_wall_time(mut r: GcBenchReport) -> GcBenchReport {
    r.wall_s = 0.0;
    r
}

#[test]
fn same_seed_same_numbers() {
    let (a, cdfs_a) = run(&tiny()).unwrap();
    let (b, cdfs_b) = run(&tiny()).unwrap();
    assert_eq!(without_wall_time(a.clone()), without_wall_time(b));
    assert_eq!(
        cdfs_a, cdfs_b,
        "every read latency, not just the percentiles"
    );
    let names: Vec<_> = a.modes.iter().map(|m| m.mode.as_str()).collect();
    assert_eq!(names, ["coordinated", "independent", "no-gc"]);
    let mut other_seed = tiny();
    other_seed.seed = 2;
    let (c, _) = run(&other_seed).unwrap();
    assert_ne!(without_wall_time(a).modes, without_wall_time(c).modes);
}

#[test]
fn gc_is_sustained_within_its_share_and_reads_are_never_starved() {
    let params = tiny();
    let (report, _) = run(&params).unwrap();
    let coordinated = &report.modes[0];
    let independent = &report.modes[1];
    let no_gc = &report.modes[2];
    for m in &report.modes {
        assert!(m.reads > 0 && m.writes > 0, "{m:?}");
    }
    assert!(coordinated.gc_runs > 0 && independent.gc_runs > 0);
    assert_eq!(no_gc.gc_runs, 0, "the floor never collects");
    let sched = coordinated.sched.unwrap();
    assert!(sched.moves > 0 && sched.erases > 0, "{sched:?}");
    assert!(sched.peak_gc_dies <= sched.max_gc_dies, "{sched:?}");
    assert_eq!(sched.max_gc_dies, 2, "a quarter of 8 dies");
    // A read waits at most for what is queued on its die ahead of it: the programs of the
    // outstanding requests (one each, plus a block's summary), the programs GC placed there
    // (a unit moves at most 4 pages), and one erase, which it may suspend.
    let t = &params.timing;
    let program_us = t.program_us as f64 + 5.2;
    let bound_us =
        f64::from(params.qd + 4 + 2) * program_us + t.erase_us as f64 + 4.0 * t.read_us as f64;
    assert!(
        coordinated.read.max_us <= bound_us,
        "coordinated read max {} us, bound {bound_us} us",
        coordinated.read.max_us
    );
    let json = serde_json::to_value(&report).unwrap();
    for key in ["modes", "ratios", "workload", "qd", "timing"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert!(report.to_string().contains("| coordinated | read |"));
}

#[test]
fn explain_tail_attributes_the_tail_without_changing_the_run() {
    let (plain, _) = run(&tiny()).unwrap();
    let mut params = tiny();
    params.explain_tail = true;
    let (probed, _) = run(&params).unwrap();
    for (p, q) in plain.modes.iter().zip(&probed.modes) {
        assert_eq!(p.read, q.read, "{}: the probe only watches", p.mode);
        assert_eq!(p.write, q.write, "{}", p.mode);
        assert!(p.read_tail_causes.is_none());
        let causes = q.read_tail_causes.as_ref().unwrap();
        let counted: u64 = causes.iter().map(|c| c.reads).sum();
        // At least the 0.1% slowest reads, at most all of them.
        assert!(
            counted >= q.read.count / 1000 && counted <= q.read.count,
            "{causes:?}"
        );
        assert!(
            causes
                .iter()
                .all(|c| !c.cause.is_empty() && c.mean_wait_us >= 0.0)
        );
    }
    assert!(probed.to_string().contains("read tail (>= p99.9)"));
}
