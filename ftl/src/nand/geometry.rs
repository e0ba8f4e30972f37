//! Geometry of one NAND device: channels x dies x planes x blocks x pages, plus page and OOB sizes.
//!
//! Blocks are numbered flat within a device, die-major, so that the die of a block is a division:
//! `block = ((channel * dies_per_channel + die) * planes_per_die + plane) * blocks_per_plane + b`.

use serde::{Deserialize, Serialize};

use super::NandError;

/// Page sizes the model accepts: 4 KiB (the default) and 16 KiB (modern TLC parts).
pub const PAGE_SIZES: [u32; 2] = [4096, 16384];
/// The OOB area must hold at least the FTL's 64-byte page record.
pub const OOB_SIZE_MIN: u32 = 64;
pub const OOB_SIZE_MAX: u32 = 2048;
/// Pages per block: at least 4 (a block keeps its last page for a summary), at most 4096.
pub const PAGES_PER_BLOCK_MIN: u32 = 4;
pub const PAGES_PER_BLOCK_MAX: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geometry {
    pub channels: u32,
    pub dies_per_channel: u32,
    pub planes_per_die: u32,
    pub blocks_per_plane: u32,
    pub pages_per_block: u32,
    pub page_size: u32,
    pub oob_size: u32,
}

impl Default for Geometry {
    /// 2 channels x 2 dies x 1 plane x 128 blocks x 256 pages of 4 KiB: 512 blocks, 512 MiB.
    /// Eight of these are the bench's default 4096 blocks.
    fn default() -> Self {
        Self {
            channels: 2,
            dies_per_channel: 2,
            planes_per_die: 1,
            blocks_per_plane: 128,
            pages_per_block: 256,
            page_size: 4096,
            oob_size: 64,
        }
    }
}

impl Geometry {
    /// Checks every field against the model's limits and that all page numbers fit in u32.
    pub fn validate(&self) -> Result<(), NandError> {
        let bad = |why: String| Err(NandError::Geometry { reason: why });
        if !(1..=64).contains(&self.channels) {
            return bad(format!("channels {} not in 1..=64", self.channels));
        }
        if !(1..=64).contains(&self.dies_per_channel) {
            return bad(format!(
                "dies_per_channel {} not in 1..=64",
                self.dies_per_channel
            ));
        }
        if !(1..=8).contains(&self.planes_per_die) {
            return bad(format!(
                "planes_per_die {} not in 1..=8",
                self.planes_per_die
            ));
        }
        if !(1..=1 << 20).contains(&self.blocks_per_plane) {
            return bad(format!(
                "blocks_per_plane {} not in 1..=1048576",
                self.blocks_per_plane
            ));
        }
        if !(PAGES_PER_BLOCK_MIN..=PAGES_PER_BLOCK_MAX).contains(&self.pages_per_block) {
            return bad(format!(
                "pages_per_block {} not in {PAGES_PER_BLOCK_MIN}..={PAGES_PER_BLOCK_MAX}",
                self.pages_per_block
            ));
        }
        if !PAGE_SIZES.contains(&self.page_size) {
            return bad(format!("page_size {} is not 4096 or 16384", self.page_size));
        }
        if !(OOB_SIZE_MIN..=OOB_SIZE_MAX).contains(&self.oob_size) {
            return bad(format!(
                "oob_size {} not in {OOB_SIZE_MIN}..={OOB_SIZE_MAX}",
                self.oob_size
            ));
        }
        let pages = u64::from(self.blocks()) * u64::from(self.pages_per_block);
        if pages > u64::from(u32::MAX) / 2 {
            return bad(format!(
                "{pages} pages per device do not fit the 31-bit page numbers"
            ));
        }
        Ok(())
    }

    pub fn dies(&self) -> u32 {
        self.channels * self.dies_per_channel
    }

    pub fn blocks_per_die(&self) -> u32 {
        self.planes_per_die * self.blocks_per_plane
    }

    /// Blocks in the whole device.
    pub fn blocks(&self) -> u32 {
        self.dies() * self.blocks_per_die()
    }

    pub fn pages(&self) -> u64 {
        u64::from(self.blocks()) * u64::from(self.pages_per_block)
    }

    pub fn die_of_block(&self, block: u32) -> u32 {
        block / self.blocks_per_die()
    }

    pub fn channel_of_die(&self, die: u32) -> u32 {
        die / self.dies_per_channel
    }

    pub fn block_bytes(&self) -> u64 {
        u64::from(self.pages_per_block) * u64::from(self.page_size)
    }

    pub fn device_bytes(&self) -> u64 {
        u64::from(self.blocks()) * self.block_bytes()
    }

    /// Checks a (block, page) address; page may be `None` for whole-block operations.
    pub fn check(&self, block: u32, page: Option<u32>) -> Result<(), NandError> {
        let page_ok = page.is_none_or(|p| p < self.pages_per_block);
        if block < self.blocks() && page_ok {
            Ok(())
        } else {
            Err(NandError::OutOfRange {
                block,
                page: page.unwrap_or(0),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_512_mib() {
        let g = Geometry::default();
        g.validate().expect("default geometry");
        assert_eq!(g.blocks(), 512);
        assert_eq!(g.device_bytes(), 512 << 20);
        assert_eq!(g.die_of_block(127), 0);
        assert_eq!(g.die_of_block(128), 1);
        assert_eq!(g.channel_of_die(3), 1);
    }

    #[test]
    fn rejects_each_limit() {
        let g = Geometry::default();
        for bad in [
            Geometry { channels: 0, ..g },
            Geometry {
                dies_per_channel: 65,
                ..g
            },
            Geometry {
                planes_per_die: 9,
                ..g
            },
            Geometry {
                blocks_per_plane: 0,
                ..g
            },
            Geometry {
                pages_per_block: 3,
                ..g
            },
            Geometry {
                page_size: 8192,
                ..g
            },
            Geometry { oob_size: 63, ..g },
            Geometry {
                blocks_per_plane: 1 << 20,
                pages_per_block: 4096,
                ..g
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(NandError::Geometry { .. })),
                "{bad:?}"
            );
        }
        assert!(
            Geometry {
                page_size: 16384,
                oob_size: 128,
                ..g
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn check_bounds() {
        let g = Geometry::default();
        assert!(g.check(511, Some(255)).is_ok());
        assert!(g.check(512, None).is_err());
        assert!(g.check(0, Some(256)).is_err());
    }
}
