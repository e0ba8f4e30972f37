//! Writing the checkpoint (clean close, and right after format).

use crate::blocks::BlockKind;
use crate::engine::{Engine, GC_RESERVE_BLOCKS, STREAM_CHECKPOINT, Shared};
use crate::error::FtlError;
use crate::format::checkpoint::{Checkpoint, CheckpointBlock};
use crate::format::oob::{PageKind, PageRecord, SEAL_BYTES};
use crate::nand::NandError;

/// Tries at writing a checkpoint before giving up (each failure retires a block).
const CHECKPOINT_ATTEMPTS: u32 = 4;

enum Attempt {
    Written,
    NoRoom,
    ProgramFailed,
}

impl Engine {
    /// Writes a checkpoint of the map and block table, makes it durable, then releases the previous
    /// one. A program failure retires that block and starts over on fresh blocks. Returns false if
    /// no checkpoint could be written (no room, or failures every time): the previous one stays
    /// valid and recovery folds in what changed since.
    pub fn write_checkpoint(&mut self, sh: &Shared) -> Result<bool, FtlError> {
        // This one replaces a checkpoint still being written in the background (its blocks hold
        // an incomplete stream, which recovery never takes).
        if let Some(job) = self.checkpoint_job.take() {
            self.abandon_checkpoint(sh, &job.blocks, None)?;
        }
        self.checkpoint_due = false;
        for _ in 0..CHECKPOINT_ATTEMPTS {
            match self.try_checkpoint(sh)? {
                Attempt::Written => return Ok(true),
                Attempt::NoRoom => return Ok(false),
                Attempt::ProgramFailed => self.process_erases(sh)?,
            }
        }
        Ok(false)
    }

    fn try_checkpoint(&mut self, sh: &Shared) -> Result<Attempt, FtlError> {
        self.barrier(sh)?;
        self.process_erases(sh)?;
        let stream_len =
            crate::format::checkpoint::stream_bytes(sh.logical_pages(), self.layout.blocks);
        let page_size = self.layout.page_size;
        let pages = stream_len.div_ceil(page_size) as u32;
        let blocks_needed = pages.div_ceil(self.layout.pages_per_block);
        // The area holds a checkpoint unless too many of its blocks went bad; the free pool makes
        // up the difference (recovery then has to look beyond the area to find it).
        let from_pool = blocks_needed.saturating_sub(self.spare_area_blocks());
        while from_pool > 0 && self.free.count() < from_pool + GC_RESERVE_BLOCKS {
            // A read-only FTL (spares or space gone) cannot make room: skip the checkpoint then.
            match self.gc_step(sh, u32::MAX) {
                Ok(true) => self.process_erases(sh)?,
                Ok(false) | Err(FtlError::ReadOnly { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        self.barrier(sh)?;
        if self.free.count() < from_pool {
            tracing::warn!(
                blocks_needed,
                free = self.free.count(),
                "no room for a checkpoint; skipped"
            );
            return Ok(Attempt::NoRoom);
        }
        let Some(taken) = self.take_checkpoint_blocks(sh, blocks_needed)? else {
            return Ok(Attempt::NoRoom);
        };
        let bytes = self.snapshot(sh).encode();
        debug_assert_eq!(bytes.len(), stream_len);
        let id = self.next_seq;
        let mut page_buf = vec![0u8; page_size];
        for index in 0..pages {
            if !self.program_checkpoint_page(sh, &bytes, &taken, id, index, &mut page_buf)? {
                return Ok(Attempt::ProgramFailed);
            }
        }
        self.commit_checkpoint(sh, taken)?;
        self.process_erases(sh)?;
        Ok(Attempt::Written)
    }

    /// Programs page `index` of checkpoint `id` (stream `bytes`) into its block of `taken`.
    /// False if the program failed: the checkpoint is abandoned then (its failed block retired,
    /// the others released), and the previous one stays current.
    pub(crate) fn program_checkpoint_page(
        &mut self,
        sh: &Shared,
        bytes: &[u8],
        taken: &[u32],
        id: u64,
        index: u32,
        page_buf: &mut [u8],
    ) -> Result<bool, FtlError> {
        let page_size = self.layout.page_size;
        let at = index as usize * page_size;
        let chunk = &bytes[at..(at + page_size).min(bytes.len())];
        page_buf[..chunk.len()].copy_from_slice(chunk);
        page_buf[chunk.len()..].fill(0);
        let gblock = taken[(index / self.layout.pages_per_block) as usize];
        let page = index % self.layout.pages_per_block;
        let seq = self.take_seq();
        let record = PageRecord {
            kind: PageKind::Checkpoint,
            stream: STREAM_CHECKPOINT,
            lpa: index,
            seq,
            data_seq: id,
            seal: [0; SEAL_BYTES],
        };
        record.encode(page_buf, &mut self.oob_buf);
        let (device, block) = self.layout.split_block(gblock);
        self.blocks[gblock as usize].written += 1;
        match sh.devices[device].program_page(block, page, page_buf, &self.oob_buf) {
            Ok(()) => {
                self.count_program();
                Ok(true)
            }
            Err(NandError::ProgramFailed { .. }) => {
                tracing::warn!(block = gblock, "program failed while writing a checkpoint");
                self.abandon_checkpoint(sh, taken, Some(gblock))?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every page of the checkpoint on `taken` is programmed: makes it durable, then releases
    /// the previous one's blocks (area blocks back to the area, others to the erase queue).
    pub(crate) fn commit_checkpoint(
        &mut self,
        sh: &Shared,
        taken: Vec<u32>,
    ) -> Result<(), FtlError> {
        let all: Vec<usize> = (0..sh.devices.len()).collect();
        crate::engine::sync_devices(sh, &all)?;
        self.dirty_devices.fill(false);
        // The new checkpoint is durable: the previous one's blocks can go.
        let old = std::mem::replace(&mut self.checkpoint_blocks, taken);
        for g in old {
            self.release_checkpoint_block(g);
        }
        Ok(())
    }

    /// Area blocks free to take the next checkpoint (not bad, not holding the current one).
    fn spare_area_blocks(&self) -> u32 {
        self.area
            .iter()
            .filter(|&&g| self.blocks[g as usize].kind == BlockKind::Reserved)
            .count() as u32
    }

    /// The area's blocks not holding the current checkpoint, least worn first.
    pub(crate) fn spare_area_by_wear(&self) -> Vec<u32> {
        let mut spare: Vec<u32> = self
            .area
            .iter()
            .copied()
            .filter(|&g| self.blocks[g as usize].kind == BlockKind::Reserved)
            .collect();
        spare.sort_by_key(|&g| self.blocks[g as usize].erase_count);
        spare
    }

    /// Blocks for a new checkpoint: the least worn area blocks not holding the current checkpoint
    /// (erased here: they hold an older one at most), then free-pool blocks if the area is short.
    fn take_checkpoint_blocks(
        &mut self,
        sh: &Shared,
        needed: u32,
    ) -> Result<Option<Vec<u32>>, FtlError> {
        let candidates = self.spare_area_by_wear();
        let mut taken = Vec::with_capacity(needed as usize);
        for g in candidates {
            if taken.len() == needed as usize {
                break;
            }
            if self.blocks[g as usize].written > 0 {
                let (device, block) = self.layout.split_block(g);
                match sh.devices[device].erase_block(block) {
                    Ok(()) => {
                        let b = &mut self.blocks[g as usize];
                        b.erase_count += 1;
                        b.written = 0;
                    }
                    Err(NandError::EraseFailed { .. }) => {
                        self.retire_block(sh, g)?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            taken.push(g);
        }
        while taken.len() < needed as usize {
            let Some(g) = self.free.take_any() else {
                for g in taken {
                    self.release_checkpoint_block(g);
                }
                return Ok(None);
            };
            self.open_block(g, STREAM_CHECKPOINT);
            taken.push(g);
        }
        for &g in &taken {
            let b = &mut self.blocks[g as usize];
            b.kind = BlockKind::Checkpoint;
            b.stream = STREAM_CHECKPOINT;
            b.valid = 0;
        }
        Ok(Some(taken))
    }

    /// A block that held (or was to hold) a checkpoint: area blocks go back to the area as they
    /// are; others are erased by the next batch.
    fn release_checkpoint_block(&mut self, g: u32) {
        let in_area = self.area.contains(&g);
        let b = &mut self.blocks[g as usize];
        b.valid = 0;
        if in_area {
            b.kind = BlockKind::Reserved;
        } else {
            b.kind = BlockKind::Collected;
            self.pending_erase.push(g);
        }
    }

    /// A checkpoint given up: the block that failed (if any) is retired, the others released.
    pub(crate) fn abandon_checkpoint(
        &mut self,
        sh: &Shared,
        taken: &[u32],
        failed: Option<u32>,
    ) -> Result<(), FtlError> {
        for &g in taken {
            if Some(g) == failed {
                self.retire_block(sh, g)?;
            } else {
                self.release_checkpoint_block(g);
            }
        }
        Ok(())
    }

    pub(crate) fn snapshot(&self, sh: &Shared) -> Checkpoint {
        let map = sh
            .map
            .iter()
            .map(|e| e.load(std::sync::atomic::Ordering::Acquire))
            .collect();
        let blocks = self
            .blocks
            .iter()
            .map(|b| CheckpointBlock {
                close_seq: b.close_seq,
                state: b.kind.code(),
                stream: b.stream,
                written: b.written,
                erase_count: b.erase_count,
            })
            .collect();
        Checkpoint {
            id: self.next_seq,
            pages_per_block: self.layout.pages_per_block,
            slots_per_page: self.layout.slots_per_page,
            counters: self.counters.to_array(),
            map,
            blocks,
        }
    }
}
