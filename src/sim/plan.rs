//! Everything a seed decides before the first operation: geometry, faults, FTL settings and the
//! workload mix. A pure function of the seed, so `ferrite sim --seed S` replays a run exactly.

use std::fmt;

use ftl::nand::{FaultConfig, Geometry, mix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::target::{FtlOptions, GcChoice};
use crate::workload::WorkloadSpec;

pub const DEVICES: u32 = 8;

/// The flavour of a seed's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mix {
    Random,
    Sequential,
    Zipf,
    TrimHeavy,
    FlushHeavy,
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mix::Random => "random",
            Mix::Sequential => "sequential",
            Mix::Zipf => "zipf",
            Mix::TrimHeavy => "trim-heavy",
            Mix::FlushHeavy => "flush-heavy",
        })
    }
}

/// Relative weights of the operations of a mix (they need not sum to anything).
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    pub write: u32,
    pub read: u32,
    pub trim: u32,
    pub write_zeroes: u32,
    pub flush: u32,
    pub close_reopen: u32,
    pub crash_between: u32,
    pub crash_mid_op: u32,
    /// Chance that a write is FUA.
    pub fua_prob: f64,
    /// Longest trim / write-zeroes range, in pages.
    pub max_range: u64,
}

impl Mix {
    pub fn workload(self) -> WorkloadSpec {
        match self {
            Mix::Sequential => WorkloadSpec::Seq,
            Mix::Zipf => WorkloadSpec::Zipf { theta: 0.99 },
            Mix::Random | Mix::TrimHeavy | Mix::FlushHeavy => WorkloadSpec::Uniform,
        }
    }

    pub fn weights(self) -> Weights {
        let base = Weights {
            write: 500,
            read: 300,
            trim: 20,
            write_zeroes: 10,
            flush: 30,
            close_reopen: 1,
            crash_between: 2,
            crash_mid_op: 4,
            fua_prob: 0.05,
            max_range: 16,
        };
        match self {
            Mix::Random | Mix::Zipf => base,
            Mix::Sequential => Weights {
                max_range: 64,
                ..base
            },
            Mix::TrimHeavy => Weights {
                trim: 150,
                write_zeroes: 60,
                max_range: 64,
                ..base
            },
            Mix::FlushHeavy => Weights {
                flush: 200,
                fua_prob: 0.3,
                ..base
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct SeedPlan {
    pub seed: u64,
    pub geometry: Geometry,
    pub devices: u32,
    pub faults: FaultConfig,
    pub options: FtlOptions,
    pub mix: Mix,
    pub ops: u32,
}

impl SeedPlan {
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ 0x706c_616e));
        // Small enough that the writes of one seed overwrite the logical space several times, so
        // GC, relocation, wear leveling and (with low endurance) wear-out all run.
        let geometry = Geometry {
            channels: 1,
            dies_per_channel: rng.random_range(1..=2),
            planes_per_die: 1,
            blocks_per_plane: rng.random_range(6..=10),
            pages_per_block: [8, 12, 16][rng.random_range(0..3)],
            page_size: 4096,
            oob_size: 64,
        };
        let pick = |rng: &mut ChaCha8Rng, p: f64, v: f64| if rng.random_bool(p) { v } else { 0.0 };
        let faults = FaultConfig {
            seed: mix(seed),
            factory_bad_ratio: pick(&mut rng, 0.5, 0.05),
            program_fail_prob: pick(&mut rng, 0.3, 0.003),
            erase_fail_prob: pick(&mut rng, 0.3, 0.003),
            read_uncorrectable_prob: pick(&mut rng, 0.2, 0.001),
            endurance_cycles: if rng.random_bool(0.15) {
                rng.random_range(6..=12)
            } else {
                3000
            },
            ..FaultConfig::default()
        };
        let options = FtlOptions {
            op_ratio: [0.125, 0.2, 0.28][rng.random_range(0..3)],
            static_wear_leveling: rng.random_bool(0.5),
            stream_separation: rng.random_bool(0.5),
            gc_policy: if rng.random_bool(0.5) {
                GcChoice::Greedy
            } else {
                GcChoice::CostBenefit
            },
        };
        let mix = [
            Mix::Random,
            Mix::Sequential,
            Mix::Zipf,
            Mix::TrimHeavy,
            Mix::FlushHeavy,
        ][rng.random_range(0..5)];
        let ops = rng.random_range(1500..=3000);
        // A third of the seeds run 16 KiB NAND pages: four logical pages per page, assembled in
        // RAM and padded on flush (drawn last, so the other choices of a seed stay as they were).
        let geometry = if rng.random_bool(0.33) {
            Geometry {
                page_size: 16384,
                oob_size: 256,
                ..geometry
            }
        } else {
            geometry
        };
        Self {
            seed,
            geometry,
            devices: DEVICES,
            faults,
            options,
            mix,
            ops,
        }
    }

    /// Whether reads may legitimately fail with a media error under this plan's faults.
    pub fn media_errors_possible(&self) -> bool {
        self.faults.read_uncorrectable_prob > 0.0
    }
}

impl fmt::Display for SeedPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.geometry;
        let o = &self.options;
        write!(
            f,
            "seed {}: {} devices x {}x{} dies x {} blocks x {} pages of {} KiB, mix {}, {} ops, \
             op {}, \
             static-wl {}, streams {}, gc {}, faults: bad {} prog {} erase {} uncorr {}",
            self.seed,
            self.devices,
            g.channels,
            g.dies_per_channel,
            g.blocks_per_die(),
            g.pages_per_block,
            g.page_size / 1024,
            self.mix,
            self.ops,
            o.op_ratio,
            o.static_wear_leveling,
            o.stream_separation,
            o.gc_policy,
            self.faults.factory_bad_ratio,
            self.faults.program_fail_prob,
            self.faults.erase_fail_prob,
            self.faults.read_uncorrectable_prob,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_deterministic_valid_and_varied() {
        let mut mixes = std::collections::HashSet::new();
        for seed in 0..200 {
            let p = SeedPlan::new(seed);
            p.geometry.validate().expect("valid geometry");
            assert_eq!(p.to_string(), SeedPlan::new(seed).to_string());
            mixes.insert(p.mix);
        }
        assert_eq!(mixes.len(), 5);
    }
}
