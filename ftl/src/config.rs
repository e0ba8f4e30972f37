//! FTL configuration: every knob has a default a user can run with.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcPolicy {
    /// Fewest valid pages first.
    Greedy,
    /// LFS cost-benefit: (1 - u) * age / (1 + u), so cold blocks are collected at higher utilisation.
    CostBenefit,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FtlConfig {
    /// Over-provisioning as a share of logical capacity: exported = physical / (1 + op).
    pub op_ratio: f64,
    /// Share of good blocks reserved to replace blocks that go bad. Until then they are free space.
    pub spare_ratio: f64,
    pub gc_policy: GcPolicy,
    /// Separate host writes into hot and cold streams by the age of the page they overwrite.
    pub stream_separation: bool,
    /// Move cold data out of young blocks when the erase-count spread passes the threshold.
    pub static_wear_leveling: bool,
    /// Spread that triggers static wear leveling: the highest erase count of any good block minus
    /// the lowest of a closed block holding data.
    pub wl_threshold_cycles: u32,
    /// P/E endurance of the devices, for the NVMe "percentage used".
    pub endurance_cycles: u32,
    /// Re-reads of a page that failed ECC before it is reported as a media error.
    pub read_retries: u32,
    /// With a GC scheduler attached (timed devices): the most dies that may have GC work (a
    /// relocation read or program, an erase) in flight at once, as a share of all dies.
    pub gc_die_share: f64,
}

impl Default for FtlConfig {
    fn default() -> Self {
        Self {
            op_ratio: 0.125,
            spare_ratio: 0.02,
            gc_policy: GcPolicy::CostBenefit,
            stream_separation: true,
            static_wear_leveling: true,
            wl_threshold_cycles: 8,
            endurance_cycles: 3000,
            read_retries: 3,
            gc_die_share: 0.25,
        }
    }
}

impl FtlConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.01..=4.0).contains(&self.op_ratio) {
            return Err(format!("op_ratio {} not in 0.01..=4.0", self.op_ratio));
        }
        if !(0.0..=0.5).contains(&self.spare_ratio) {
            return Err(format!("spare_ratio {} not in 0.0..=0.5", self.spare_ratio));
        }
        if self.wl_threshold_cycles == 0 {
            return Err("wl_threshold_cycles must be at least 1".into());
        }
        if self.endurance_cycles == 0 {
            return Err("endurance_cycles must be at least 1".into());
        }
        if self.read_retries > 16 {
            return Err(format!(
                "read_retries {} is more than 16",
                self.read_retries
            ));
        }
        if !(0.01..=1.0).contains(&self.gc_die_share) {
            return Err(format!(
                "gc_die_share {} not in 0.01..=1.0",
                self.gc_die_share
            ));
        }
        Ok(())
    }
}
