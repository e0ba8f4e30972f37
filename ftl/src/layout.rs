//! Physical addressing over all devices, and the packing of map entries.
//!
//! A global block number is `device * blocks_per_device + block`; a physical page number (ppn) is
//! `global_block * pages_per_block + page`. A logical page is 4 KiB, so a 16 KiB NAND page holds
//! four of them, one per slot: a physical slot number (psn) is `ppn * slots_per_page + slot`, and
//! the map holds psns (with 4 KiB NAND pages, psn = ppn). All fit in 31 bits (checked at
//! construction), which leaves the top bit of a map entry free to mark trims.

use crate::format::oob::OOB_RECORD_BYTES;
use crate::nand::Geometry;

/// Map entry: never written since format (or nothing survived on flash).
pub const UNMAPPED: u32 = u32::MAX;
/// Map entry: trimmed, the trim entry is still in the RAM buffer (reads return zeroes).
pub const TRIM_BUFFERED: u32 = u32::MAX - 1;
/// Map entry: the data could not be read during relocation and is lost (reads fail).
pub const LOST: u32 = u32::MAX - 2;
/// Map entry flag: trimmed, the durable trim entry is in trim-log page `entry & !TRIM_FLAG`.
pub const TRIM_FLAG: u32 = 1 << 31;
/// Largest physical slot number + 1 the packing allows.
pub const MAX_SLOTS: u64 = (TRIM_FLAG as u64) - 4;
/// Bytes of a logical page: what the FTL maps, and the host reads and writes.
pub const LOGICAL_PAGE_BYTES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Unmapped,
    TrimBuffered,
    Lost,
    /// Trimmed by the trim-log entry in the page whose slot 0 is `psn`.
    Trimmed {
        psn: u32,
    },
    Data {
        psn: u32,
    },
}

impl Entry {
    pub fn decode(raw: u32) -> Self {
        match raw {
            UNMAPPED => Entry::Unmapped,
            TRIM_BUFFERED => Entry::TrimBuffered,
            LOST => Entry::Lost,
            r if r & TRIM_FLAG != 0 => Entry::Trimmed {
                psn: r & !TRIM_FLAG,
            },
            r => Entry::Data { psn: r },
        }
    }

    /// The physical slot this entry keeps alive (its block counts it as valid).
    pub fn psn(self) -> Option<u32> {
        match self {
            Entry::Data { psn } | Entry::Trimmed { psn } => Some(psn),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub geometry: Geometry,
    pub devices: u32,
    pub blocks_per_device: u32,
    pub pages_per_block: u32,
    pub page_size: usize,
    pub oob_size: usize,
    /// Logical pages per NAND page (1 for 4 KiB pages, 4 for 16 KiB).
    pub slots_per_page: u32,
    pub dies_per_device: u32,
    pub blocks: u32,
}

impl Layout {
    pub fn new(geometry: Geometry, devices: u32) -> Result<Self, String> {
        geometry.validate().map_err(|e| e.to_string())?;
        if devices == 0 || devices > 256 {
            return Err(format!("{devices} devices; 1 to 256 are supported"));
        }
        let page_size = geometry.page_size as usize;
        if !page_size.is_multiple_of(LOGICAL_PAGE_BYTES) {
            return Err(format!(
                "{page_size}-byte pages do not hold whole {LOGICAL_PAGE_BYTES}-byte logical pages"
            ));
        }
        let slots_per_page = (page_size / LOGICAL_PAGE_BYTES) as u32;
        let records = slots_per_page as usize * OOB_RECORD_BYTES;
        if (geometry.oob_size as usize) < records {
            return Err(format!(
                "{}-byte OOB: {slots_per_page} logical pages per NAND page need {records} bytes \
                 of records",
                geometry.oob_size
            ));
        }
        let summary_entries = crate::format::summary::capacity(page_size);
        let data_slots = (geometry.pages_per_block as usize - 1) * slots_per_page as usize;
        if data_slots > summary_entries {
            return Err(format!(
                "{} pages per block: a block summary of one {}-byte page holds {} entries, \
                 {data_slots} are needed",
                geometry.pages_per_block, geometry.page_size, summary_entries
            ));
        }
        let slots = geometry.pages() * u64::from(devices) * u64::from(slots_per_page);
        if slots >= MAX_SLOTS {
            return Err(format!("{slots} physical slots do not fit the 31-bit map"));
        }
        Ok(Self {
            geometry,
            devices,
            blocks_per_device: geometry.blocks(),
            pages_per_block: geometry.pages_per_block,
            page_size,
            oob_size: geometry.oob_size as usize,
            slots_per_page,
            dies_per_device: geometry.dies(),
            blocks: geometry.blocks() * devices,
        })
    }

    pub fn dies(&self) -> u32 {
        self.dies_per_device * self.devices
    }

    /// Pages of a block that hold data: the last one holds the block's summary.
    pub fn data_pages_per_block(&self) -> u32 {
        self.pages_per_block - 1
    }

    /// Logical pages a block holds.
    pub fn data_slots_per_block(&self) -> u32 {
        self.data_pages_per_block() * self.slots_per_page
    }

    /// Physical slots over all devices (the bound of a psn).
    pub fn slots(&self) -> u64 {
        u64::from(self.blocks) * u64::from(self.pages_per_block) * u64::from(self.slots_per_page)
    }

    pub fn split_block(&self, gblock: u32) -> (usize, u32) {
        (
            (gblock / self.blocks_per_device) as usize,
            gblock % self.blocks_per_device,
        )
    }

    pub fn gblock(&self, device: usize, block: u32) -> u32 {
        device as u32 * self.blocks_per_device + block
    }

    pub fn ppn(&self, gblock: u32, page: u32) -> u32 {
        gblock * self.pages_per_block + page
    }

    /// (global block, page) of a physical page number.
    pub fn split_ppn(&self, ppn: u32) -> (u32, u32) {
        (ppn / self.pages_per_block, ppn % self.pages_per_block)
    }

    pub fn psn(&self, gblock: u32, page: u32, slot: u32) -> u32 {
        self.ppn(gblock, page) * self.slots_per_page + slot
    }

    /// (physical page, slot) of a physical slot number.
    pub fn split_psn(&self, psn: u32) -> (u32, u32) {
        (psn / self.slots_per_page, psn % self.slots_per_page)
    }

    /// Global block of a physical slot number.
    pub fn block_of(&self, psn: u32) -> u32 {
        psn / self.slots_per_page / self.pages_per_block
    }

    /// Global die index (device-major) of a global block.
    pub fn die_of(&self, gblock: u32) -> u32 {
        let (device, block) = self.split_block(gblock);
        device as u32 * self.dies_per_device + self.geometry.die_of_block(block)
    }

    /// Blocks in the order the checkpoint area is taken from: block 0 of every device, then
    /// block 1 of every device, and so on.
    pub fn area_order(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.blocks_per_device)
            .flat_map(move |b| (0..self.devices as usize).map(move |d| self.gblock(d, b)))
    }

    /// Blocks the largest checkpoint this geometry allows needs (logical space bounded by every
    /// data page).
    pub fn checkpoint_blocks_max(&self) -> u32 {
        let data_slots = u64::from(self.blocks) * u64::from(self.data_slots_per_block());
        let bytes = crate::format::checkpoint::stream_bytes(data_slots, self.blocks);
        (bytes.div_ceil(self.page_size) as u32).div_ceil(self.pages_per_block)
    }

    /// Blocks of the checkpoint area: room for two checkpoints, plus spares for blocks of the area
    /// that go bad. A function of the geometry alone, so recovery finds the area without a scan.
    pub fn area_blocks(&self) -> u32 {
        let spares = (self.blocks / 256).clamp(1, 4);
        2 * self.checkpoint_blocks_max() + spares
    }

    /// The order in which a stream visits dies: consecutive writes go to different devices first.
    pub fn die_rotation(&self) -> Vec<u32> {
        let mut order = Vec::with_capacity(self.dies() as usize);
        for die in 0..self.dies_per_device {
            for device in 0..self.devices {
                order.push(device * self.dies_per_device + die);
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing_round_trips() {
        let l = Layout::new(Geometry::default(), 8).expect("layout");
        assert_eq!(l.blocks, 4096);
        let g = l.gblock(3, 200);
        assert_eq!(l.split_block(g), (3, 200));
        assert_eq!(l.die_of(g), 3 * 4 + 1);
        let p = l.ppn(g, 17);
        assert_eq!(l.split_ppn(p), (g, 17));
        assert_eq!(l.psn(g, 17, 0), p);
        assert_eq!(l.block_of(p), g);
        let rot = l.die_rotation();
        assert_eq!(&rot[..3], &[0, 4, 8]);
        assert_eq!(rot.len(), 32);
    }

    #[test]
    fn blocks_must_fit_their_summary_page() {
        let g = Geometry {
            pages_per_block: 342,
            ..Geometry::default()
        };
        assert!(Layout::new(g, 1).unwrap_err().contains("summary"));
        let g = Geometry {
            pages_per_block: 341,
            ..Geometry::default()
        };
        assert!(Layout::new(g, 1).is_ok());
        // 16 KiB pages hold four logical pages: four entries per data page in the summary.
        let g = Geometry {
            pages_per_block: 342,
            page_size: 16384,
            oob_size: 256,
            ..Geometry::default()
        };
        assert!(Layout::new(g, 1).is_ok());
        let g = Geometry {
            pages_per_block: 343,
            ..g
        };
        assert!(Layout::new(g, 1).unwrap_err().contains("summary"));
    }

    #[test]
    fn sixteen_kib_pages_have_four_slots() {
        let g = Geometry {
            page_size: 16384,
            oob_size: 256,
            ..Geometry::default()
        };
        let l = Layout::new(g, 2).expect("layout");
        assert_eq!(l.slots_per_page, 4);
        assert_eq!(l.data_slots_per_block(), 255 * 4);
        let gb = l.gblock(1, 9);
        let psn = l.psn(gb, 3, 2);
        assert_eq!(l.split_psn(psn), (l.ppn(gb, 3), 2));
        assert_eq!(l.block_of(psn), gb);
        assert_eq!(l.slots(), u64::from(l.blocks) * 256 * 4);
        let small_oob = Geometry { oob_size: 128, ..g };
        assert!(Layout::new(small_oob, 1).unwrap_err().contains("OOB"));
    }

    #[test]
    fn entries_decode() {
        assert_eq!(Entry::decode(UNMAPPED), Entry::Unmapped);
        assert_eq!(Entry::decode(TRIM_BUFFERED), Entry::TrimBuffered);
        assert_eq!(Entry::decode(LOST), Entry::Lost);
        assert_eq!(Entry::decode(TRIM_FLAG | 7), Entry::Trimmed { psn: 7 });
        assert_eq!(Entry::decode(7), Entry::Data { psn: 7 });
    }
}
