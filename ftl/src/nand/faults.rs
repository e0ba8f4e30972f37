//! The fault model, all of it drawn from seeded generators so that a seed replays a run exactly.
//!
//! What can go wrong, and where it is decided:
//! - factory bad blocks: `factory_bad_ratio` of blocks, placed by a hash of (seed, block), at creation;
//! - wear: a block that has been erased `endurance_cycles` times fails every later erase and program;
//! - program failure (`program_fail_prob`): the page is left programmed with garbage, the call fails;
//! - erase failure (`erase_fail_prob`): the block keeps its old content, the call fails;
//! - bit errors on read: a Poisson count with mean `page_bits * (ber_fresh + ber_per_cycle * erase_count)`;
//!   up to `ecc_correctable_bits` are corrected by the device's ECC (and reported), more are uncorrectable;
//! - uncorrectable reads (`read_uncorrectable_prob`): transient, a re-read draws again (read-retry);
//! - power loss: see `PowerRail` and `Device::power_cut`; `torn_write_prob` is the chance that the first
//!   program lost in a block leaves a torn page behind instead of an erased one.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    pub seed: u64,
    pub endurance_cycles: u32,
    pub factory_bad_ratio: f64,
    pub program_fail_prob: f64,
    pub erase_fail_prob: f64,
    pub read_uncorrectable_prob: f64,
    pub ber_fresh: f64,
    pub ber_per_cycle: f64,
    pub ecc_correctable_bits: u32,
    pub torn_write_prob: f64,
}

impl Default for FaultConfig {
    /// Realistic wear and bit errors, 2% factory bad blocks, no random program/erase/read failures.
    /// At 3000 cycles a 4 KiB page sees about 10 raw bit errors per read, well inside a 40-bit ECC.
    fn default() -> Self {
        Self {
            seed: 0,
            endurance_cycles: 3000,
            factory_bad_ratio: 0.02,
            program_fail_prob: 0.0,
            erase_fail_prob: 0.0,
            read_uncorrectable_prob: 0.0,
            ber_fresh: 1e-9,
            ber_per_cycle: 1e-7,
            ecc_correctable_bits: 40,
            torn_write_prob: 0.5,
        }
    }
}

impl FaultConfig {
    /// No faults of any kind and no factory bad blocks: for tests that check rules, not luck.
    pub fn none() -> Self {
        Self {
            factory_bad_ratio: 0.0,
            ber_fresh: 0.0,
            ber_per_cycle: 0.0,
            torn_write_prob: 0.0,
            ..Self::default()
        }
    }

    /// The same faults for the `index`-th device of a set, with its own seed.
    pub fn for_device(&self, index: u32) -> Self {
        Self {
            seed: mix(self.seed ^ (u64::from(index) << 32 | 0x5eed)),
            ..self.clone()
        }
    }

    /// Whether `block` is a factory bad block: a pure function of (seed, block).
    pub fn is_factory_bad(&self, block: u32) -> bool {
        let draw = mix(self.seed ^ mix(u64::from(block) + 1));
        (draw >> 11) as f64 / (1u64 << 53) as f64 <= self.factory_bad_ratio
            && self.factory_bad_ratio > 0.0
    }

    /// Raw bit errors for one read of a page of `page_bits` bits on a block with `erase_count` cycles.
    pub fn draw_bit_errors(&self, rng: &mut ChaCha8Rng, page_bits: u32, erase_count: u32) -> u32 {
        let rate = self.ber_fresh + self.ber_per_cycle * f64::from(erase_count);
        let mean = rate * f64::from(page_bits);
        if mean <= 0.0 {
            return 0;
        }
        poisson(rng, mean.min(1000.0))
    }
}

/// Knuth's method; fine for the small means of bit errors (it stops after about `mean` draws).
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut count = 0;
    while product > limit && count < 10_000 {
        product *= rng.random::<f64>();
        count += 1;
    }
    count
}

/// SplitMix64's finaliser: a cheap, well-mixed hash for seeds.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn factory_bad_ratio_is_about_right_and_seeded() {
        let f = FaultConfig {
            seed: 7,
            ..FaultConfig::default()
        };
        let bad = (0..100_000).filter(|&b| f.is_factory_bad(b)).count();
        assert!((1500..2500).contains(&bad), "{bad}");
        let again = (0..100_000).filter(|&b| f.is_factory_bad(b)).count();
        assert_eq!(bad, again);
        let other = f.for_device(1);
        let differ = (0..1000)
            .filter(|&b| f.is_factory_bad(b) != other.is_factory_bad(b))
            .count();
        assert!(differ > 0);
        assert_eq!(
            (0..1000)
                .filter(|&b| FaultConfig::none().is_factory_bad(b))
                .count(),
            0
        );
    }

    #[test]
    fn bit_errors_grow_with_wear() {
        let f = FaultConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let young: u32 = (0..1000)
            .map(|_| f.draw_bit_errors(&mut rng, 32768, 0))
            .sum();
        let old: u32 = (0..1000)
            .map(|_| f.draw_bit_errors(&mut rng, 32768, 3000))
            .sum();
        assert!(young < 100, "{young}");
        assert!((8_000..12_000).contains(&old), "{old}");
    }
}
