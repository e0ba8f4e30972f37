//! Background GC under the global scheduler (`gc_sched.rs`): one unit of work per call, on the
//! dies the scheduler allows at the clock's current time.
//!
//! A unit is one erase of a collected block, or one page move (read on the victim's die, program
//! on another die). Between two units the caller serves host requests: GC is preemptible between
//! page moves. Erases come first (they free space at no write cost), then moves.

use crate::engine::{
    Engine, FREE_BLOCKS_BACKGROUND, FREE_BLOCKS_URGENT, STREAM_COLD, STREAM_GC, STREAM_HOT,
    STREAM_WL, Shared,
};
use crate::error::FtlError;
use crate::gc_sched::{GcPlan, GcWork};
use crate::persist_background::CheckpointUnit;

/// Collected blocks gathered before one barrier covers them all (as in foreground GC).
const ERASE_BATCH: usize = 4;
/// Free blocks above the urgent watermark that write admission keeps for relocation.
const ADMISSION_MARGIN_BLOCKS: u32 = 2;
/// Valid pages one unit moves: the reads queue on the victim's die (a host read there waits for
/// at most this many, 55 us each), the programs go to as many idle dies. One move per unit
/// cannot keep up with host writes: the victim's die would be the bottleneck of all GC.
const MOVES_PER_UNIT: u32 = 4;
/// Write admission: programs' worth of queued work a host page may find on its die. Measured
/// (bench gc, 10 s, seed 1): 1 left chains of 2-3 programs ahead of the p99.9 reads (1166 us);
/// 0 leaves at most the one program a read suspends (713 us), with more IOPS, not fewer.
const HOST_QUEUE_PROGRAMS_MAX: u64 = 0;

impl Engine {
    /// One unit of GC work if it is needed and the scheduler allows it; `Idle` without a scheduler.
    pub fn background_gc(&mut self, sh: &Shared) -> Result<GcWork, FtlError> {
        if self.sched.is_none() || self.read_only.is_some() {
            return Ok(GcWork::Idle);
        }
        // The barrier before erases programs host data still in assembly and the trim log: it is
        // the host's durability, not GC work, so it runs before the scheduler looks at the dies.
        if self.erase_ready == 0 && self.erase_wanted() {
            self.barrier(sh)?;
            self.erase_ready = self.pending_erase.len();
        }
        let Some(sched) = self.sched.as_ref() else {
            return Ok(GcWork::Idle);
        };
        let plan = sched.plan();
        let before = sched.busy_until_ns();
        let ranks = sched.die_ranks();
        // The checkpoint wear leveling asked for goes first where its die is allowed: until it
        // is written, the young area blocks it moves off stay young.
        let (work, collecting) = match self.background_checkpoint(sh, &plan)? {
            CheckpointUnit::Done(work, die) => (work, Some(die)),
            CheckpointUnit::Waiting => match self.background_unit(sh, &plan, ranks)? {
                // GC has nothing to do, but the checkpoint waits for a die: the caller comes back.
                (GcWork::Idle, None) => (GcWork::Blocked, None),
                other => other,
            },
            CheckpointUnit::None => self.background_unit(sh, &plan, ranks)?,
        };
        if let Some(sched) = self.sched.as_mut() {
            sched.record(&plan, &before, work, collecting);
        }
        Ok(work)
    }

    /// Collected blocks are waiting and enough of them (or free space is short) to pay a barrier.
    /// With one logical page per NAND page a barrier pads nothing, so every collected block is
    /// erased as soon as a die allows: waiting for a batch lets free space fall to the urgent
    /// watermark, where erases run at once on whatever die (the safety net in `gc_step`).
    fn erase_wanted(&self) -> bool {
        let pending = self.pending_erase.len();
        let batch = if self.layout.slots_per_page == 1 {
            1
        } else {
            ERASE_BATCH
        };
        pending >= batch || (pending > 0 && self.free.count() < FREE_BLOCKS_BACKGROUND)
    }

    /// The unit done and the die it collected on (read from or erased).
    fn background_unit(
        &mut self,
        sh: &Shared,
        plan: &GcPlan,
        ranks: Vec<u8>,
    ) -> Result<(GcWork, Option<u32>), FtlError> {
        if plan.erase_allowed && plan.free_slots >= 1 {
            let ready = self.erase_ready.min(self.pending_erase.len());
            let pick = (0..ready).find(|&i| {
                let die = self.layout.die_of(self.pending_erase[i]);
                plan.eligible[die as usize]
            });
            if let Some(i) = pick {
                let gblock = self.pending_erase.remove(i);
                self.erase_ready = ready - 1;
                if let Err(e) = self.erase_collected(sh, gblock) {
                    self.pending_erase.insert(i, gblock);
                    self.erase_ready = ready;
                    return Err(e);
                }
                return Ok((GcWork::Erased, Some(self.layout.die_of(gblock))));
            }
        }
        let free = self.free.count() + self.pending_erase.len() as u32;
        if free >= FREE_BLOCKS_BACKGROUND {
            let work = if self.pending_erase.is_empty() {
                GcWork::Idle
            } else {
                GcWork::Blocked
            };
            return Ok((work, None));
        }
        if plan.free_slots == 0 {
            return Ok((GcWork::Blocked, None));
        }
        if self.gc.is_none() {
            self.gc = self.pick_victim();
        }
        let Some(job) = self.gc else {
            // Nothing to collect; foreground GC decides whether that is out of space.
            return Ok((GcWork::Idle, None));
        };
        let victim_die = self.layout.die_of(job.victim);
        if !plan.eligible[victim_die as usize] {
            return Ok((GcWork::Blocked, None));
        }
        // Each relocated page goes to a die with nothing queued; when no such die can take the
        // next one (either stream a relocated page may join), the unit stops: GC work is never
        // queued behind host work.
        self.die_filter = Some(ranks);
        let mut moved = 0;
        let mut result = Ok(());
        for _ in 0..MOVES_PER_UNIT {
            let Some(ranks) = self.die_filter.as_deref() else {
                break;
            };
            // Wear leveling moves into its one open block; other relocations to the GC or the
            // hot stream, whichever the page's temperature picks.
            let fits = match self.gc {
                Some(job) if job.wear_leveling => self.idle_page_available(STREAM_WL, ranks),
                _ => {
                    self.idle_page_available(STREAM_GC, ranks)
                        && self.idle_page_available(STREAM_HOT, ranks)
                }
            };
            if !fits {
                break;
            }
            let job_before = self.gc.map(|job| job.victim);
            result = self.gc_step(sh, 1).map(|_| ());
            moved += 1;
            if result.is_err() || self.gc.map(|job| job.victim) != job_before {
                break;
            }
        }
        self.die_filter = None;
        result?;
        if moved == 0 {
            return Ok((GcWork::Blocked, None));
        }
        Ok((GcWork::Moved, Some(victim_die)))
    }

    /// Host writes may go on: free blocks stay `ADMISSION_MARGIN_BLOCKS` above the urgent
    /// watermark, room for the relocations under way, so neither host writes (foreground GC) nor
    /// relocation (the erase-at-once safety net) reach it; and a host page of either stream finds
    /// a die with at most `HOST_QUEUE_PROGRAMS_MAX` programs' worth of work queued (none: an idle
    /// die), so writes wait in the host queue rather than in a die's, where every read of that
    /// die would wait behind them (a read may suspend only the last program or erase charged to
    /// its die). A driver with a scheduler holds writes back while this is false.
    pub fn write_admitted(&self) -> bool {
        let Some(sched) = self.sched.as_ref() else {
            return true;
        };
        if self.free.count() < FREE_BLOCKS_URGENT + ADMISSION_MARGIN_BLOCKS {
            return false;
        }
        let limit_ns = sched.now_ns() + HOST_QUEUE_PROGRAMS_MAX * sched.page_program_ns();
        let busy = sched.busy_until_ns();
        [STREAM_HOT, STREAM_COLD]
            .into_iter()
            .all(|stream| self.page_available_by(stream, &busy, limit_ns))
    }
}
