//! The checkpoint static wear leveling asks for, written by `background_gc` when a scheduler is
//! attached: one erase or one page program per unit, on a die the scheduler allows, counted as
//! GC work on that die. Written at once from a host write (as without a scheduler) it queued a
//! block's worth of programs (~61 x 600 us) on one die, and every read of that die waited behind
//! them: bench gc, 60 s, coordinated read p99.99 38.6 ms.
//!
//! Crash safety is the rules of docs/ftl-format.md unchanged: the snapshot is taken after a
//! barrier once the new blocks are erased, so everything it maps is programmed; what happens
//! while its pages are written is later than the snapshot, which recovery folds in as it does for
//! anything after a checkpoint (those blocks changed since). The previous checkpoint stays
//! current, and its blocks held, until every page of the new one is programmed and every device
//! synced; a crash before that finds the new stream incomplete and takes the previous one.

use crate::blocks::BlockKind;
use crate::engine::{Engine, STREAM_CHECKPOINT, Shared};
use crate::error::FtlError;
use crate::gc_sched::{GcPlan, GcWork};
use crate::nand::NandError;

/// A checkpoint under way: its blocks are taken (kind `Checkpoint`, so nothing else uses them).
#[derive(Debug)]
pub struct CheckpointJob {
    /// The blocks of the new stream, in stream order; some may still hold an older checkpoint
    /// and need an erase before the snapshot is taken.
    pub blocks: Vec<u32>,
    /// The encoded snapshot and its id, once every block is erased.
    stream: Option<(Vec<u8>, u64)>,
    /// Pages of the stream programmed so far.
    written_pages: u32,
    page_buf: Vec<u8>,
}

/// What the checkpoint asked of one `background_gc` unit.
pub enum CheckpointUnit {
    /// It did this work on this die.
    Done(GcWork, u32),
    /// It has work, but not on a die the scheduler allows now.
    Waiting,
    /// Nothing to write.
    None,
}

impl Engine {
    /// One unit of checkpoint work if one is due and `plan` allows it.
    pub fn background_checkpoint(
        &mut self,
        sh: &Shared,
        plan: &GcPlan,
    ) -> Result<CheckpointUnit, FtlError> {
        if self.checkpoint_job.is_none() {
            if !self.checkpoint_due {
                return Ok(CheckpointUnit::None);
            }
            self.checkpoint_due = false;
            match self.take_background_blocks(sh) {
                Some(job) => self.checkpoint_job = Some(job),
                None => {
                    // The area is short of good blocks (the rare case where a checkpoint needs
                    // free-pool blocks and GC first): written at once, as without a scheduler.
                    self.write_checkpoint(sh)?;
                    return Ok(CheckpointUnit::None);
                }
            }
        }
        let Some(mut job) = self.checkpoint_job.take() else {
            return Ok(CheckpointUnit::None);
        };
        let step = match self.checkpoint_unit(sh, plan, &mut job) {
            Ok(step) => step,
            Err(e) => {
                // The job's blocks still taken go back to the area (a failure may have retired
                // or released some already): nothing half-written stays taken, and wear
                // leveling's request stays for a later unit.
                let still: Vec<u32> = job
                    .blocks
                    .iter()
                    .copied()
                    .filter(|&g| self.blocks[g as usize].kind == BlockKind::Checkpoint)
                    .collect();
                self.abandon_checkpoint(sh, &still, None)?;
                self.checkpoint_due = true;
                return Err(e);
            }
        };
        Ok(match step {
            Step::Continue(unit) => {
                self.checkpoint_job = Some(job);
                unit
            }
            Step::Finished(unit) => unit,
            // A job given up (a failed erase or program) starts over on other blocks.
            Step::Abandoned(unit) => {
                self.checkpoint_due = true;
                unit
            }
        })
    }

    /// The area's least worn spare blocks for a new checkpoint, taken but not erased yet; None
    /// if the area has too few.
    fn take_background_blocks(&mut self, sh: &Shared) -> Option<CheckpointJob> {
        let stream_len =
            crate::format::checkpoint::stream_bytes(sh.logical_pages(), self.layout.blocks);
        let pages = stream_len.div_ceil(self.layout.page_size) as u32;
        let needed = pages.div_ceil(self.layout.pages_per_block) as usize;
        let mut candidates = self.spare_area_by_wear();
        if candidates.len() < needed {
            return None;
        }
        candidates.truncate(needed);
        for &g in &candidates {
            let b = &mut self.blocks[g as usize];
            b.kind = BlockKind::Checkpoint;
            b.stream = STREAM_CHECKPOINT;
            b.valid = 0;
        }
        Some(CheckpointJob {
            blocks: candidates,
            stream: None,
            written_pages: 0,
            page_buf: vec![0u8; self.layout.page_size],
        })
    }

    fn checkpoint_unit(
        &mut self,
        sh: &Shared,
        plan: &GcPlan,
        job: &mut CheckpointJob,
    ) -> Result<Step, FtlError> {
        let may_work_on = |die: u32| plan.free_slots >= 1 && plan.eligible[die as usize];
        // Erases first: the snapshot is taken on erased blocks (its block table says so).
        let unerased = job
            .blocks
            .iter()
            .copied()
            .find(|&g| self.blocks[g as usize].written > 0);
        if let (None, Some(g)) = (&job.stream, unerased) {
            let die = self.layout.die_of(g);
            if !(plan.erase_allowed && may_work_on(die)) {
                return Ok(Step::Continue(CheckpointUnit::Waiting));
            }
            let (device, block) = self.layout.split_block(g);
            return match sh.devices[device].erase_block(block) {
                Ok(()) => {
                    let b = &mut self.blocks[g as usize];
                    b.erase_count += 1;
                    b.written = 0;
                    Ok(Step::Continue(CheckpointUnit::Done(GcWork::Erased, die)))
                }
                Err(NandError::EraseFailed { .. }) => {
                    let others: Vec<u32> = job.blocks.iter().copied().filter(|&o| o != g).collect();
                    self.abandon_checkpoint(sh, &others, None)?;
                    self.retire_block(sh, g)?;
                    job.blocks.clear();
                    Ok(Step::Abandoned(CheckpointUnit::Done(GcWork::Erased, die)))
                }
                Err(e) => Err(e.into()),
            };
        }
        let index = job.written_pages;
        let die = self
            .layout
            .die_of(job.blocks[(index / self.layout.pages_per_block) as usize]);
        if !may_work_on(die) {
            return Ok(Step::Continue(CheckpointUnit::Waiting));
        }
        if job.stream.is_none() {
            // Everything the snapshot maps must be programmed (see the module comment).
            self.barrier(sh)?;
            let bytes = self.snapshot(sh).encode();
            job.stream = Some((bytes, self.next_seq));
        }
        let Some((bytes, id)) = job.stream.take() else {
            return Ok(Step::Continue(CheckpointUnit::Waiting));
        };
        let mut page_buf = std::mem::take(&mut job.page_buf);
        let programmed =
            self.program_checkpoint_page(sh, &bytes, &job.blocks, id, index, &mut page_buf);
        job.page_buf = page_buf;
        let pages = bytes.len().div_ceil(self.layout.page_size) as u32;
        job.stream = Some((bytes, id));
        let done = CheckpointUnit::Done(GcWork::Checkpointed, die);
        if !programmed? {
            // `program_checkpoint_page` retired the failed block and released the others.
            job.blocks.clear();
            return Ok(Step::Abandoned(done));
        }
        job.written_pages += 1;
        if job.written_pages < pages {
            return Ok(Step::Continue(done));
        }
        let blocks = std::mem::take(&mut job.blocks);
        self.commit_checkpoint(sh, blocks)?;
        Ok(Step::Finished(done))
    }
}

/// Where a unit left the job.
enum Step {
    Continue(CheckpointUnit),
    Finished(CheckpointUnit),
    /// Given up; its blocks are already released or retired.
    Abandoned(CheckpointUnit),
}
