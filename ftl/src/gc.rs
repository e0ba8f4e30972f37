//! Garbage collection: victim choice (cost-benefit or greedy, plus static wear leveling), paced
//! relocation of valid pages with their OOB facts, and erase behind a durability barrier.

use crate::blocks::BlockKind;
use crate::config::GcPolicy;
use crate::engine::{
    Engine, FREE_BLOCKS_BACKGROUND, FREE_BLOCKS_URGENT, GC_RESERVE_BLOCKS, NO_LPA, PageFacts,
    STREAM_GC, STREAM_HOT, STREAM_WL, Shared,
};
use crate::error::FtlError;
use crate::format::oob::{PageKind, PageRecord};
use crate::format::summary;
use crate::format::trim_log::{self, TrimEntry};
use crate::io::{ReadFailure, read_verified, slot_data, slot_oob, slot_record};
use crate::layout::{Entry, LOST, TRIM_BUFFERED};
use crate::nand::NandError;

/// Erased blocks are freed in batches, so the barrier before erasing is paid once per batch.
const ERASE_BATCH: usize = 4;
/// Free blocks GC keeps beyond the background watermark while erases wait for background syncs:
/// what writers consume during one sync of the devices.
const SYNC_HEADROOM_BLOCKS: u32 = 16;
/// How many erases pass between two checks of the erase-count spread.
const WL_CHECK_INTERVAL: u32 = 8;

#[derive(Clone, Copy, Debug)]
pub struct GcJob {
    pub victim: u32,
    /// The next unit to move: a slot of a data victim, a page of a trim-log victim.
    pub next_unit: u32,
    pub wear_leveling: bool,
    /// `Engine::victim_lpas` holds this victim's slots (loaded when the job starts).
    pub pages_known: bool,
    /// The pages were looked up in the map after the records missed one (done at most once).
    pub map_scanned: bool,
    /// Pages to move per host write so this victim is free by the time its gain is used up:
    /// valid / (capacity - valid), fixed when the job starts.
    pub moves_per_write: f64,
}

impl Engine {
    /// Foreground GC: host writes wait while free blocks are below the urgent watermark.
    pub fn make_room(&mut self, sh: &Shared) -> Result<(), FtlError> {
        if self.free.count() < FREE_BLOCKS_URGENT && !self.pending_erase.is_empty() {
            // Blocks already collected: erasing the batch early is not a stall.
            self.process_erases(sh)?;
        }
        if self.free.count() < FREE_BLOCKS_URGENT {
            self.foreground_gc_stalls += 1;
            self.foreground_gc(sh)
        } else {
            Ok(())
        }
    }

    pub fn foreground_gc(&mut self, sh: &Shared) -> Result<(), FtlError> {
        let limit = 2 * self.layout.blocks as usize + 16;
        for _ in 0..limit {
            if self.free.count() >= FREE_BLOCKS_URGENT {
                return Ok(());
            }
            if !self.pending_erase.is_empty() {
                self.process_erases(sh)?;
                continue;
            }
            if !self.gc_step(sh, u32::MAX)? {
                if self.free.count() > GC_RESERVE_BLOCKS {
                    return Ok(());
                }
                return Err(self.out_of_space("garbage collection found nothing to reclaim"));
            }
        }
        Err(self.out_of_space("garbage collection made no progress"))
    }

    /// Background GC, paced: each host write buys the relocations that keep free space steady.
    /// The share grows as free blocks fall from the background to the urgent watermark.
    pub fn pace_gc(&mut self, sh: &Shared) -> Result<(), FtlError> {
        // With background syncs a collected block is not free until a sync covers it, and the
        // writes made while a sync runs (tens of milliseconds on a disk) must fit in the free
        // blocks: so GC starts earlier, and counts only the blocks a completed sync covered.
        let (background, free) = if self.background_syncs(sh) {
            let ready = self.free.count() + self.erase_ready as u32;
            (FREE_BLOCKS_BACKGROUND + SYNC_HEADROOM_BLOCKS, ready)
        } else {
            let collected = self.free.count() + self.pending_erase.len() as u32;
            (FREE_BLOCKS_BACKGROUND, collected)
        };
        if free >= background {
            self.gc_credit = 0.0;
            return Ok(());
        }
        if self.gc.is_none() {
            self.gc = self.pick_victim();
        }
        let Some(job) = self.gc else { return Ok(()) };
        let span = f64::from(background - FREE_BLOCKS_URGENT);
        let urgency = 1.0 + f64::from(background.saturating_sub(free)) / span;
        self.gc_credit += job.moves_per_write * urgency + 0.01;
        if self.gc_credit >= 1.0 {
            let budget = self.gc_credit.floor();
            self.gc_credit -= budget;
            self.gc_step(sh, budget as u32)?;
        }
        Ok(())
    }

    /// Moves up to `budget` valid pages off the current victim; a finished victim is queued for
    /// erase. Returns false when there is nothing to collect.
    pub fn gc_step(&mut self, sh: &Shared, budget: u32) -> Result<bool, FtlError> {
        if self.gc.is_none() {
            self.gc = self.pick_victim();
        }
        let Some(mut job) = self.gc else {
            return Ok(false);
        };
        let victim = job.victim as usize;
        let kind = self.blocks[victim].kind;
        let written = self.blocks[victim].written;
        // Data victims move slot by slot; trim-log victims page by page.
        let units = match kind {
            BlockKind::TrimClosed => written,
            _ => written * self.layout.slots_per_page,
        };
        if self.blocks[victim].valid == 0 {
            job.next_unit = units;
        } else if kind != BlockKind::TrimClosed && !job.pages_known {
            self.load_victim_lpas(sh, job.victim)?;
            job.pages_known = true;
            self.gc = Some(job);
        }
        let mut moved = 0;
        while job.next_unit < units && moved < budget {
            // The job advances past a unit only once it has moved: a relocation that fails (power
            // loss, no space) is retried when the job resumes.
            moved += match kind {
                BlockKind::TrimClosed => {
                    let ppn = self.layout.ppn(job.victim, job.next_unit);
                    self.relocate_trims(sh, ppn)?
                }
                _ => {
                    let psn = self.layout.psn(job.victim, 0, 0) + job.next_unit;
                    let lpa = self.victim_lpas[job.next_unit as usize];
                    self.relocate_data(sh, psn, lpa, job.wear_leveling)?
                }
            };
            job.next_unit += 1;
            self.gc = Some(job);
        }
        if job.next_unit >= units
            && self.blocks[victim].valid > 0
            && kind != BlockKind::TrimClosed
            && !job.map_scanned
        {
            // The summary and OOB records missed a live slot (unreadable): find it from the map.
            self.victim_lpas_from_map(sh, job.victim);
            job.next_unit = 0;
            job.map_scanned = true;
            self.gc = Some(job);
            return Ok(true);
        }
        if job.next_unit >= units {
            assert_eq!(
                self.blocks[victim].valid, 0,
                "victim {victim} still holds valid pages"
            );
            self.gc = None;
            self.relocation_page = None;
            self.blocks[victim].kind = BlockKind::Collected;
            self.pending_erase.push(job.victim);
            self.counters.gc_runs += 1;
            if job.wear_leveling {
                self.counters.wl_runs += 1;
            }
            // With a scheduler, background GC erases one block at a time on a die it allows,
            // unless free space runs short: relocation must never run out of blocks.
            if (self.sched.is_none() && self.pending_erase.len() >= ERASE_BATCH)
                || self.free.count() < FREE_BLOCKS_URGENT
            {
                self.process_erases(sh)?;
            }
        } else {
            self.gc = Some(job);
        }
        Ok(true)
    }

    /// Reads the victim page holding `psn` into `relocation_buf` unless it is there already.
    fn load_relocation_page(&mut self, sh: &Shared, psn: u32) -> Result<(), NandError> {
        let (ppn, _) = self.layout.split_psn(psn);
        if self.relocation_page == Some(ppn) {
            return Ok(());
        }
        self.relocation_page = None;
        crate::io::read_page(
            sh,
            ppn,
            &mut self.relocation_buf,
            &mut self.relocation_oob,
            self.config.read_retries,
        )?;
        self.relocation_page = Some(ppn);
        Ok(())
    }

    fn relocate_data(
        &mut self,
        sh: &Shared,
        psn: u32,
        lpa: u32,
        wear_leveling: bool,
    ) -> Result<u32, FtlError> {
        if lpa == NO_LPA
            || u64::from(lpa) >= sh.logical_pages()
            || sh.entry(lpa) != (Entry::Data { psn })
        {
            return Ok(0);
        }
        let (_, slot) = self.layout.split_psn(psn);
        let read = self
            .load_relocation_page(sh, psn)
            .map_err(ReadFailure::Nand)
            .and_then(|()| {
                slot_record(
                    &self.layout,
                    &self.relocation_buf,
                    &self.relocation_oob,
                    slot,
                )
                .map_err(ReadFailure::Corrupt)
            });
        match read {
            Ok(record) if record.lpa == lpa => {
                // A page still hot when its block is collected joins hot data, so it does not pin a
                // block of cold, relocated data when it is overwritten soon after.
                let hot =
                    self.config.stream_separation && self.temperature.classify(lpa) == STREAM_HOT;
                let stream = match (wear_leveling, hot) {
                    (true, _) => STREAM_WL,
                    (false, true) => STREAM_HOT,
                    (false, false) => STREAM_GC,
                };
                let facts = PageFacts {
                    lpa,
                    data_seq: record.data_seq,
                    seal: record.seal,
                };
                let data = std::mem::take(&mut self.relocation_buf);
                let placed = self.place(sh, stream, facts, slot_data(&data, slot), true);
                self.relocation_buf = data;
                let new = placed?;
                sh.set(lpa, new);
                self.release(Entry::Data { psn });
                if wear_leveling {
                    self.counters.wl_pages_moved += 1;
                } else {
                    self.counters.gc_pages_moved += 1;
                }
                self.program_full_pages(sh)?;
                Ok(1)
            }
            Ok(_)
            | Err(ReadFailure::Corrupt(_))
            | Err(ReadFailure::Nand(NandError::Uncorrectable { .. })) => {
                tracing::error!(
                    lpa,
                    psn,
                    "valid page unreadable during relocation; logical page lost"
                );
                sh.set(lpa, LOST);
                self.release(Entry::Data { psn });
                Ok(0)
            }
            Err(ReadFailure::Nand(e)) => Err(e.into()),
        }
    }

    /// Carries the live entries of one trim-log page into the trim buffer (same sequence numbers).
    fn relocate_trims(&mut self, sh: &Shared, ppn: u32) -> Result<u32, FtlError> {
        self.relocation_page = None;
        let psn = ppn * self.layout.slots_per_page;
        let mut data = std::mem::take(&mut self.relocation_buf);
        let mut oob = std::mem::take(&mut self.oob_buf);
        let read = read_verified(sh, ppn, &mut data, &mut oob, self.config.read_retries);
        self.oob_buf = oob;
        let entries = match read {
            Ok(_) => trim_log::decode(&data).unwrap_or_default(),
            Err(ReadFailure::Nand(e @ NandError::PowerLost)) => {
                self.relocation_buf = data;
                return Err(e.into());
            }
            Err(_) => Vec::new(),
        };
        self.relocation_buf = data;
        let mut moved = 0;
        for TrimEntry { lpa, data_seq } in entries {
            if u64::from(lpa) < sh.logical_pages() && sh.entry(lpa) == (Entry::Trimmed { psn }) {
                self.release(Entry::Trimmed { psn });
                sh.set(lpa, TRIM_BUFFERED);
                self.trim_buffer.push(TrimEntry { lpa, data_seq });
                moved += 1;
            }
        }
        // An unreadable trim page leaves its entries counted; drop them so the block can go.
        if self.blocks[self.layout.split_ppn(ppn).0 as usize].valid > 0
            && self.page_is_last_of_victim(ppn)
        {
            self.drop_unreadable_trims(sh, ppn);
        }
        Ok(moved)
    }

    /// The logical page of every page of a data victim: from its summary when it has one (one
    /// page read), else from each page's OOB record. A record that does not verify here is checked
    /// again against the map and the page's own record when the page is moved.
    fn load_victim_lpas(&mut self, sh: &Shared, gblock: u32) -> Result<(), FtlError> {
        self.relocation_page = None;
        let written = self.blocks[gblock as usize].written;
        let data_pages = self.layout.data_pages_per_block();
        let slots = self.layout.slots_per_page;
        self.victim_lpas.clear();
        self.victim_lpas.resize((written * slots) as usize, NO_LPA);
        if written == self.layout.pages_per_block {
            let ppn = self.layout.ppn(gblock, data_pages);
            let mut data = std::mem::take(&mut self.relocation_buf);
            let mut oob = std::mem::take(&mut self.oob_buf);
            let read = read_verified(sh, ppn, &mut data, &mut oob, self.config.read_retries);
            let entries = match read {
                Ok(r) if r.kind == PageKind::Summary => {
                    summary::decode(&data, self.layout.data_slots_per_block() as usize).ok()
                }
                Err(ReadFailure::Nand(NandError::PowerLost)) => {
                    self.relocation_buf = data;
                    self.oob_buf = oob;
                    return Err(FtlError::PowerLost);
                }
                _ => None,
            };
            self.relocation_buf = data;
            self.oob_buf = oob;
            if let Some(entries) = entries {
                for (slot, e) in self.victim_lpas.iter_mut().zip(entries) {
                    *slot = e.lpa;
                }
                return Ok(());
            }
        }
        let (device, block) = self.layout.split_block(gblock);
        for page in 0..written {
            match sh.devices[device].read_oob(block, page, &mut self.oob_buf) {
                Ok(_) => {}
                Err(NandError::PowerLost) => return Err(FtlError::PowerLost),
                Err(_) => continue,
            }
            for slot in 0..slots {
                if let Ok(r) = PageRecord::decode_unverified(slot_oob(&self.oob_buf, slot))
                    && r.kind == PageKind::Data
                {
                    self.victim_lpas[(page * slots + slot) as usize] = r.lpa;
                }
            }
        }
        Ok(())
    }

    /// Last resort for a victim whose records missed a live slot: every map entry into it.
    fn victim_lpas_from_map(&mut self, sh: &Shared, gblock: u32) {
        let first = self.layout.psn(gblock, 0, 0);
        for lpa in 0..sh.logical_pages() as u32 {
            if let Entry::Data { psn } = sh.entry(lpa)
                && let Some(slot) = psn
                    .checked_sub(first)
                    .and_then(|p| self.victim_lpas.get_mut(p as usize))
            {
                *slot = lpa;
            }
        }
    }

    fn page_is_last_of_victim(&self, ppn: u32) -> bool {
        let (gblock, page) = self.layout.split_ppn(ppn);
        page + 1 >= self.blocks[gblock as usize].written
    }

    fn drop_unreadable_trims(&mut self, sh: &Shared, ppn: u32) {
        let (gblock, _) = self.layout.split_ppn(ppn);
        let first = self.layout.psn(gblock, 0, 0);
        let last = first + self.layout.pages_per_block * self.layout.slots_per_page;
        for lpa in 0..sh.logical_pages() as u32 {
            if let Entry::Trimmed { psn } = sh.entry(lpa)
                && (first..last).contains(&psn)
            {
                tracing::error!(lpa, "trim-log page unreadable; trim re-logged");
                self.release(Entry::Trimmed { psn });
                sh.set(lpa, TRIM_BUFFERED);
                let data_seq = self.take_seq();
                self.trim_buffer.push(TrimEntry { lpa, data_seq });
            }
        }
    }

    /// A block's valid content in logical pages (a trim-log block's entries as the pages they
    /// fill, in slots), and what the block holds when full.
    fn valid_slots(&self, gblock: u32) -> (f64, f64) {
        let b = &self.blocks[gblock as usize];
        let slots = f64::from(self.layout.slots_per_page);
        let valid = match b.kind {
            BlockKind::TrimClosed => {
                f64::from(b.valid) / trim_log::capacity(self.layout.page_size) as f64 * slots
            }
            _ => f64::from(b.valid),
        };
        (valid, f64::from(self.layout.data_slots_per_block()))
    }

    fn new_job(&self, victim: u32, wear_leveling: bool) -> Option<GcJob> {
        let (valid, capacity) = self.valid_slots(victim);
        Some(GcJob {
            victim,
            next_unit: 0,
            wear_leveling,
            pages_known: false,
            map_scanned: false,
            moves_per_write: (valid / (capacity - valid).max(1.0)).min(capacity),
        })
    }

    pub(crate) fn pick_victim(&mut self) -> Option<GcJob> {
        // Blocks to retire and empty blocks first: they cost nothing to collect. (A block queued
        // for erase is `Collected`, not collectable, so it is never picked twice.)
        if let Some(g) = self
            .blocks
            .iter()
            .position(|b| b.is_collectable() && (b.retire || b.valid == 0))
        {
            return self.new_job(g as u32, false);
        }
        if self.config.static_wear_leveling && self.erases_since_wl_check >= WL_CHECK_INTERVAL {
            self.erases_since_wl_check = 0;
            if let Some(g) = self.wear_leveling_victim() {
                return self.new_job(g, true);
            }
        }
        let now = self.next_seq;
        let mut best: Option<(f64, u32)> = None;
        for (g, b) in self.blocks.iter().enumerate() {
            if !b.is_collectable() {
                continue;
            }
            // A trim-log block's valid count is in entries; what moving them costs is in pages.
            let (valid, capacity) = self.valid_slots(g as u32);
            if valid >= capacity {
                continue;
            }
            let u = valid / capacity;
            let score = match self.config.gc_policy {
                GcPolicy::Greedy => 1.0 - u,
                GcPolicy::CostBenefit => {
                    (1.0 - u) / (1.0 + u) * (now.saturating_sub(b.close_seq) + 1) as f64
                }
            };
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, g as u32));
            }
        }
        best.and_then(|(_, g)| self.new_job(g, false))
    }

    /// The youngest block holding data, if the erase-count spread has passed the threshold: its
    /// cold data moves to a worn block and it goes back to the free pool for hot data. If the
    /// youngest is a checkpoint block, a new checkpoint is due instead (it lands on other blocks).
    fn wear_leveling_victim(&mut self) -> Option<u32> {
        let max = self
            .blocks
            .iter()
            .filter(|b| b.kind != BlockKind::Bad)
            .map(|b| b.erase_count)
            .max()?;
        let (g, young) = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.kind == BlockKind::Closed && b.valid > 0)
            .min_by_key(|(_, b)| b.erase_count)?;
        let threshold = self.config.wl_threshold_cycles;
        // The checkpoint area wears only when checkpoints are written: write one (onto its least
        // worn blocks) when the area is the youngest part of the device.
        let checkpoint_young = self.area.iter().any(|&c| {
            let b = &self.blocks[c as usize];
            b.kind != BlockKind::Bad
                && b.erase_count < young.erase_count
                && max - b.erase_count > threshold
        });
        if checkpoint_young {
            self.checkpoint_due = true;
        }
        (max - young.erase_count > threshold).then_some(g as u32)
    }

    /// Erases the collected victims after a barrier (what replaced their pages is durable first).
    pub fn process_erases(&mut self, sh: &Shared) -> Result<(), FtlError> {
        if self.pending_erase.is_empty() {
            return Ok(());
        }
        if self.background_syncs(sh) {
            return self.process_erases_synced(sh);
        }
        self.barrier(sh)?;
        self.erase_ready = 0;
        while let Some(gblock) = self.pending_erase.pop() {
            // A failed retirement is not retried; a failed erase is (the block stays queued).
            if self.blocks[gblock as usize].retire {
                self.erase_collected(sh, gblock)?;
            } else if let Err(e) = self.erase_collected(sh, gblock) {
                self.pending_erase.push(gblock);
                return Err(e);
            }
        }
        Ok(())
    }

    /// `process_erases` over devices whose syncs wait for a disk: the erase barrier's sync runs on
    /// its own thread while writers go on. A sync starts once a batch of collected blocks waits:
    /// what replaced their pages (relocated copies, trim entries) is programmed first, under the
    /// lock, and the sync covers those blocks only. They are erased by a later call once it has
    /// completed. Only at the urgent watermark does a writer wait: for the sync in flight, or, if
    /// that covers nothing, for a full barrier. So a block is still never erased before what
    /// replaced its pages is durable; it is only erased later than with a synchronous barrier.
    fn process_erases_synced(&mut self, sh: &Shared) -> Result<(), FtlError> {
        self.collect_sync(false)?;
        if self.erase_ready == 0 && self.free.count() < FREE_BLOCKS_URGENT {
            self.collect_sync(true)?;
            if self.erase_ready == 0 {
                self.barrier(sh)?;
            }
        }
        while self.erase_ready > 0 {
            let gblock = self.pending_erase[0];
            // A failed retirement is not retried; a failed erase is (the block stays queued).
            if self.blocks[gblock as usize].retire {
                self.pop_covered_erase();
                self.erase_collected(sh, gblock)?;
            } else {
                self.erase_collected(sh, gblock)?;
                self.pop_covered_erase();
            }
        }
        let covered = self
            .sync_in_flight
            .as_ref()
            .map_or(self.erase_ready, |f| f.covers);
        if self.sync_in_flight.is_none() && self.pending_erase.len() - covered >= ERASE_BATCH {
            self.start_sync(sh)?;
        }
        Ok(())
    }

    /// Drops the first entry of `pending_erase`, which a completed sync covered.
    fn pop_covered_erase(&mut self) {
        assert!(self.erase_ready > 0, "erase of a block no sync covered");
        self.pending_erase.remove(0);
        self.erase_ready -= 1;
        if let Some(f) = self.sync_in_flight.as_mut() {
            // A sync in flight started after the one that covered this block: it covers it too.
            assert!(
                f.covers > 0,
                "sync in flight covers less than a completed one"
            );
            f.covers -= 1;
        }
    }

    /// Programs what is in assembly and the trim buffer, then starts a background sync of every
    /// dirty device: once it completes, every block now in `pending_erase` may be erased.
    fn start_sync(&mut self, sh: &Shared) -> Result<(), FtlError> {
        assert!(
            self.sync_in_flight.is_none(),
            "one background sync at a time"
        );
        for stream in 0..crate::engine::DATA_STREAMS as u8 {
            self.program_pending(sh, stream, true)?;
        }
        self.flush_trims(sh)?;
        let covers = self.pending_erase.len();
        let devices: Vec<usize> = (0..self.dirty_devices.len())
            .filter(|&d| self.dirty_devices[d])
            .collect();
        if devices.is_empty() {
            self.erase_ready = covers;
            return Ok(());
        }
        // Cleared now, not when the sync completes: a program from here on sets its device's bit
        // again, so the next sync or barrier covers it.
        for &d in &devices {
            self.dirty_devices[d] = false;
        }
        let owned: Vec<_> = devices.iter().map(|&d| sh.devices[d].clone()).collect();
        let spawned = std::thread::Builder::new()
            .name("ftl-sync".into())
            .spawn(move || crate::engine::sync_owned(&owned));
        match spawned {
            Ok(handle) => {
                self.sync_in_flight = Some(crate::engine::InFlightSync {
                    covers,
                    devices,
                    handle,
                });
                Ok(())
            }
            Err(e) => {
                // No thread: sync here, as a barrier would.
                tracing::warn!("no thread for a background sync ({e}); syncing in place");
                if let Err(e) = crate::engine::sync_devices(sh, &devices) {
                    for &d in &devices {
                        self.dirty_devices[d] = true;
                    }
                    return Err(e);
                }
                self.erase_ready = covers;
                Ok(())
            }
        }
    }

    /// Takes the result of the background sync if it has completed (or, with `wait`, once it has):
    /// the blocks it covers may then be erased. A failed sync marks its devices dirty again.
    fn collect_sync(&mut self, wait: bool) -> Result<(), FtlError> {
        let Some(f) = self.sync_in_flight.take() else {
            return Ok(());
        };
        if !wait && !f.handle.is_finished() {
            self.sync_in_flight = Some(f);
            return Ok(());
        }
        if let Err(e) = crate::engine::join_sync(f.handle) {
            for &d in &f.devices {
                self.dirty_devices[d] = true;
            }
            return Err(e);
        }
        assert!(f.covers <= self.pending_erase.len());
        self.erase_ready = self.erase_ready.max(f.covers);
        Ok(())
    }

    /// Erases (or retires) one collected block that a barrier has covered; it joins the free pool.
    pub fn erase_collected(&mut self, sh: &Shared, gblock: u32) -> Result<(), FtlError> {
        self.relocation_page = None;
        let b = self.blocks[gblock as usize];
        assert_eq!(b.valid, 0);
        assert_eq!(
            b.kind,
            BlockKind::Collected,
            "block {gblock} erased while not collected"
        );
        if b.retire {
            return self.retire_block(sh, gblock);
        }
        let (device, block) = self.layout.split_block(gblock);
        match sh.devices[device].erase_block(block) {
            Ok(()) => {
                let b = &mut self.blocks[gblock as usize];
                b.erase_count += 1;
                *b = crate::blocks::BlockState::free(b.erase_count);
                self.free.insert(&self.layout, gblock, b.erase_count);
                self.erases_since_wl_check += 1;
                Ok(())
            }
            Err(NandError::EraseFailed { .. }) => self.retire_block(sh, gblock),
            Err(e) => Err(e.into()),
        }
    }

    /// After open: of the bad blocks, `grown` went bad in use. They come out of the spares, and
    /// the FTL is read-only again if the spares were already gone.
    pub fn account_grown_bad(&mut self, grown: u32) {
        assert!(grown <= self.factory_bad_blocks);
        self.factory_bad_blocks -= grown;
        let good_at_format = self.layout.blocks - self.factory_bad_blocks;
        self.spare_blocks = crate::engine::spare_blocks(&self.config, good_at_format);
        self.grown_bad_blocks = grown;
        self.check_spares();
    }

    fn check_spares(&mut self) {
        if self.grown_bad_blocks > self.spare_blocks && self.read_only.is_none() {
            self.read_only = Some(format!(
                "spare blocks exhausted: {} blocks went bad, {} spares were reserved",
                self.grown_bad_blocks, self.spare_blocks
            ));
        }
    }

    pub fn retire_block(&mut self, sh: &Shared, gblock: u32) -> Result<(), FtlError> {
        let (device, block) = self.layout.split_block(gblock);
        sh.devices[device].mark_bad(block)?;
        let b = &mut self.blocks[gblock as usize];
        *b = crate::blocks::BlockState::bad(b.erase_count);
        self.grown_bad_blocks += 1;
        tracing::warn!(
            block = gblock,
            grown_bad = self.grown_bad_blocks,
            "block retired"
        );
        self.check_spares();
        Ok(())
    }
}
