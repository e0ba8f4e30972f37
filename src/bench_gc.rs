//! `ferrite bench gc`: read and write tail latency on a full device with sustained GC, on the
//! virtual clock, for three modes of the same devices and workload:
//! - `coordinated`: one FTL over every device with the global GC scheduler (`ftl::gc_sched`);
//! - `independent`: one FTL per device, each with its own GC paced inside its host writes, the
//!   volume striped over them page by page (N SSDs in RAID-0);
//! - `no-gc`: one FTL over devices with the same dies but more blocks, filled like the others
//!   and measured while it never needs GC (the latency floor).
//!
//! Simulation (the timestamp approach of FEMU and NVMeVirt): the FTL does the functional work of
//! a request at once; each NAND operation it causes is charged on the device's timing model at
//! the request clock's time (`clock.rs`), the operations of one call one after another; the
//! request completes when its last operation ends. `qd` requests are outstanding; the next one is
//! issued at the earliest completion. Background GC (coordinated mode) is issued at every event,
//! one unit at a time, where the scheduler allows; its operations belong to no request.

mod clock;
pub mod probe;
pub mod report;
mod sim;

use std::fmt;
use std::str::FromStr;

use anyhow::bail;
use ftl::nand::Geometry;
use ftl::nand::timing::TimingConfig;

pub use report::{GcBenchReport, LatencySummary, ModeReport};
pub use sim::run;

/// `randrw:R`: uniform random 4 KiB requests over the volume, R% reads (`randread` = 100,
/// `randwrite` = 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcWorkload {
    pub read_pct: u32,
}

impl FromStr for GcWorkload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let read_pct = match s.trim() {
            "randread" => 100,
            "randwrite" => 0,
            other => {
                let pct = other.strip_prefix("randrw:").ok_or_else(|| {
                    format!("`{s}`: expected randrw:READ_PERCENT, randread or randwrite")
                })?;
                let pct: u32 = pct
                    .parse()
                    .map_err(|_| format!("`{s}`: read percent `{pct}` is not a number"))?;
                if pct > 100 {
                    return Err(format!("`{s}`: read percent {pct} is over 100"));
                }
                pct
            }
        };
        Ok(Self { read_pct })
    }
}

impl fmt::Display for GcWorkload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "randrw:{}", self.read_pct)
    }
}

/// Everything a run depends on (the same params and seed give the same report).
#[derive(Clone, Debug)]
pub struct GcBenchParams {
    pub devices: u32,
    pub channels: u32,
    pub dies_per_channel: u32,
    pub blocks_per_die: u32,
    pub pages_per_block: u32,
    pub workload: GcWorkload,
    pub qd: u32,
    /// Measured window in virtual (device) time.
    pub duration_ns: u64,
    pub seed: u64,
    pub op_ratio: f64,
    /// Random overwrites after the sequential fill, in multiples of the logical space, so the
    /// measured window starts in GC steady state.
    pub precondition_overwrites: f64,
    pub gc_die_share: f64,
    /// Static wear leveling in every mode's FTL (its checkpoint moves and cold-data moves are
    /// not steered by the scheduler yet; see docs/ftl-design.md, "GC coordination").
    pub static_wear_leveling: bool,
    pub timing: TimingConfig,
    /// Attribute the read tail: what each read at or above p99.9 waited behind (`probe.rs`).
    pub explain_tail: bool,
    pub progress: bool,
}

impl GcBenchParams {
    /// The defaults `ferrite bench gc` runs with: small enough that a 60 s window is many times
    /// the logical space in writes (sustained GC) and a run takes seconds of CPU.
    pub fn defaults() -> Self {
        Self {
            devices: 8,
            channels: 2,
            dies_per_channel: 2,
            blocks_per_die: 32,
            pages_per_block: 64,
            workload: GcWorkload { read_pct: 70 },
            qd: 32,
            duration_ns: 60_000_000_000,
            seed: 1,
            op_ratio: 0.125,
            precondition_overwrites: 1.0,
            gc_die_share: 0.25,
            static_wear_leveling: true,
            timing: TimingConfig::default(),
            explain_tail: false,
            progress: false,
        }
    }

    pub fn geometry(&self, blocks_per_die: u32) -> anyhow::Result<Geometry> {
        let g = Geometry {
            channels: self.channels,
            dies_per_channel: self.dies_per_channel,
            planes_per_die: 1,
            blocks_per_plane: blocks_per_die,
            pages_per_block: self.pages_per_block,
            page_size: 4096,
            oob_size: 64,
        };
        g.validate()
            .map_err(|e| anyhow::anyhow!("bench gc geometry: {e}"))?;
        Ok(g)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.devices == 0 || self.devices > 64 {
            bail!("--devices {} not in 1..=64", self.devices);
        }
        if self.qd == 0 || self.qd > 4096 {
            bail!("--qd {} not in 1..=4096", self.qd);
        }
        if self.duration_ns == 0 || self.duration_ns > 3_600_000_000_000 {
            bail!("--duration must be more than 0 and at most 1 h of device time");
        }
        if !(0.0..=8.0).contains(&self.precondition_overwrites) {
            bail!("precondition overwrites not in 0..=8");
        }
        if !(0.01..=1.0).contains(&self.gc_die_share) {
            bail!("--gc-share {} not in 0.01..=1.0", self.gc_die_share);
        }
        self.timing.validate()?;
        self.geometry(self.blocks_per_die)?;
        Ok(())
    }
}

/// `60s`, `500ms`, `2m` or a number of seconds, as nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, unit_ns) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000_000.0)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e9)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e9)
    } else {
        (s, 1e9)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: expected a duration like 60s, 500ms or 2m"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("`{s}`: the duration must be positive"));
    }
    Ok((value * unit_ns).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_and_durations_parse() {
        assert_eq!("randrw:70".parse(), Ok(GcWorkload { read_pct: 70 }));
        assert_eq!("randread".parse(), Ok(GcWorkload { read_pct: 100 }));
        assert_eq!("randwrite".parse(), Ok(GcWorkload { read_pct: 0 }));
        assert!("randrw:101".parse::<GcWorkload>().is_err());
        assert!("zipf".parse::<GcWorkload>().is_err());
        assert_eq!(parse_duration_ns("60s"), Ok(60_000_000_000));
        assert_eq!(parse_duration_ns("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration_ns("3"), Ok(3_000_000_000));
        assert!(parse_duration_ns("0s").is_err());
        assert!(parse_duration_ns("x").is_err());
    }
}
