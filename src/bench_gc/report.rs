//! What `bench gc` reports: one JSON object, or a table for a person.

use std::fmt;

use ftl::GcSchedStats;
use ftl::nand::timing::TimingConfig;
use serde::Serialize;

use super::probe::TailCause;

/// Latency percentiles of one kind of request, in microseconds of device time. Exact: taken
/// from every request's latency, sorted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

/// The smallest value with at least `q` of the samples at or below it.
pub fn quantile_ns(sorted_ns: &[u64], q: f64) -> u64 {
    if sorted_ns.is_empty() {
        return 0;
    }
    let rank = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns[rank - 1]
}

impl LatencySummary {
    pub fn of_sorted(sorted_ns: &[u64]) -> Self {
        let us = |ns: u64| ns as f64 / 1_000.0;
        let total: u128 = sorted_ns.iter().map(|&v| u128::from(v)).sum();
        Self {
            count: sorted_ns.len() as u64,
            mean_us: if sorted_ns.is_empty() {
                0.0
            } else {
                total as f64 / sorted_ns.len() as f64 / 1_000.0
            },
            p50_us: us(quantile_ns(sorted_ns, 0.5)),
            p99_us: us(quantile_ns(sorted_ns, 0.99)),
            p999_us: us(quantile_ns(sorted_ns, 0.999)),
            p9999_us: us(quantile_ns(sorted_ns, 0.9999)),
            max_us: us(sorted_ns.last().copied().unwrap_or(0)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModeReport {
    pub mode: String,
    /// The measured window in device time (no-gc ends it early if it ever had to collect).
    pub window_s: f64,
    pub logical_pages: u64,
    pub blocks_per_die: u32,
    pub reads: u64,
    pub writes: u64,
    /// Requests completed in the window per second of device time.
    pub iops: f64,
    /// NAND pages programmed per host page written in the window.
    pub waf: f64,
    pub read: LatencySummary,
    pub write: LatencySummary,
    pub host_pages_written: u64,
    pub nand_pages_written: u64,
    pub gc_runs: u64,
    pub gc_pages_moved: u64,
    /// Host writes that had to wait for foreground (blocking) GC.
    pub foreground_gc_stalls: u64,
    /// Host writes that write admission held back while GC caught up.
    pub held_writes: u64,
    /// The GC scheduler's counters (coordinated and no-gc).
    pub sched: Option<GcSchedStats>,
    /// With `--explain-tail`: what the reads at or above p99.9 waited behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_tail_causes: Option<Vec<TailCause>>,
}

/// `a / b` for each figure; 0 where `b` is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RatioSet {
    pub read_p50: f64,
    pub read_p99: f64,
    pub read_p999: f64,
    pub read_p9999: f64,
    pub read_max: f64,
    pub write_p50: f64,
    pub write_p99: f64,
    pub write_p999: f64,
    pub write_p9999: f64,
    pub iops: f64,
    pub waf: f64,
}

impl RatioSet {
    pub fn of(a: &ModeReport, b: &ModeReport) -> Self {
        let r = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
        Self {
            read_p50: r(a.read.p50_us, b.read.p50_us),
            read_p99: r(a.read.p99_us, b.read.p99_us),
            read_p999: r(a.read.p999_us, b.read.p999_us),
            read_p9999: r(a.read.p9999_us, b.read.p9999_us),
            read_max: r(a.read.max_us, b.read.max_us),
            write_p50: r(a.write.p50_us, b.write.p50_us),
            write_p99: r(a.write.p99_us, b.write.p99_us),
            write_p999: r(a.write.p999_us, b.write.p999_us),
            write_p9999: r(a.write.p9999_us, b.write.p9999_us),
            iops: r(a.iops, b.iops),
            waf: r(a.waf, b.waf),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Ratios {
    pub coordinated_over_no_gc: RatioSet,
    pub independent_over_coordinated: RatioSet,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GcBenchReport {
    pub workload: String,
    pub devices: u32,
    pub channels_per_device: u32,
    pub dies_per_channel: u32,
    pub pages_per_block: u32,
    pub qd: u32,
    pub duration_s: f64,
    pub seed: u64,
    pub op: f64,
    pub gc_die_share: f64,
    pub static_wear_leveling: bool,
    pub timing: TimingConfig,
    pub modes: Vec<ModeReport>,
    pub ratios: Ratios,
    /// Wall-clock seconds the run took (the only figure that is not deterministic).
    pub wall_s: f64,
}

impl fmt::Display for GcBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bench gc: {} qd {} over {} devices ({} x {} dies), {} s of device time, op {}, \
             gc share {}, static-wl {}, seed {}",
            self.workload,
            self.qd,
            self.devices,
            self.channels_per_device,
            self.dies_per_channel,
            self.duration_s,
            self.op,
            self.gc_die_share,
            self.static_wear_leveling,
            self.seed
        )?;
        writeln!(
            f,
            "| mode | kind | p50 us | p99 us | p99.9 us | p99.99 us | max us | IOPS | WAF |"
        )?;
        writeln!(f, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
        for m in &self.modes {
            for (kind, l) in [("read", &m.read), ("write", &m.write)] {
                writeln!(
                    f,
                    "| {} | {kind} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
                    m.mode, l.p50_us, l.p99_us, l.p999_us, l.p9999_us, l.max_us, m.iops, m.waf
                )?;
            }
        }
        for (name, r) in [
            ("coordinated / no-gc", &self.ratios.coordinated_over_no_gc),
            (
                "independent / coordinated",
                &self.ratios.independent_over_coordinated,
            ),
        ] {
            writeln!(
                f,
                "{name}: read p50 {:.2}, p99 {:.2}, p99.9 {:.2}, p99.99 {:.2}, max {:.2}; \
                 write p99 {:.2}, p99.9 {:.2}; IOPS {:.2}; WAF {:.3}",
                r.read_p50,
                r.read_p99,
                r.read_p999,
                r.read_p9999,
                r.read_max,
                r.write_p99,
                r.write_p999,
                r.iops,
                r.waf
            )?;
        }
        for m in &self.modes {
            write!(
                f,
                "{}: window {:.1} s, {} reads, {} writes, {} GC runs, {} pages moved, {} \
                 foreground GC stalls, {} writes held by admission",
                m.mode,
                m.window_s,
                m.reads,
                m.writes,
                m.gc_runs,
                m.gc_pages_moved,
                m.foreground_gc_stalls,
                m.held_writes
            )?;
            if let Some(s) = &m.sched {
                write!(
                    f,
                    "; scheduler: at most {} dies in GC (peak {}), {} moves, {} erases, {} \
                     checkpoint pages, {} waits",
                    s.max_gc_dies, s.peak_gc_dies, s.moves, s.erases, s.checkpoint_pages, s.blocked
                )?;
            }
            writeln!(f)?;
            for c in m.read_tail_causes.iter().flatten() {
                writeln!(
                    f,
                    "  {} read tail (>= p99.9): {} reads, mean wait {:.0} us: {}",
                    m.mode, c.reads, c.mean_wait_us, c.cause
                )?;
            }
        }
        write!(f, "wall time {:.1} s", self.wall_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_ranks() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile_ns(&v, 0.5), 500);
        assert_eq!(quantile_ns(&v, 0.99), 990);
        assert_eq!(quantile_ns(&v, 0.999), 999);
        assert_eq!(quantile_ns(&v, 0.9999), 1000);
        assert_eq!(quantile_ns(&[], 0.5), 0);
        let s = LatencySummary::of_sorted(&[1_000, 3_000]);
        assert_eq!((s.count, s.mean_us, s.max_us), (2, 2.0, 3.0));
    }
}
