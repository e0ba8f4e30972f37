//! Page assembly: logical pages (4 KiB) are gathered into NAND pages (4 or 16 KiB), one slot each.
//!
//! Each data stream assembles one page at a time, reserved in one of its open blocks. A logical
//! page is *placed* into the next slot (its map entry may then point there: readers find it in the
//! pending page until it is programmed), and the page is programmed once every slot is filled. A
//! barrier (flush, before an erase, before a checkpoint) or a durable write pads the rest of the
//! page with empty slots and programs it, so what was acknowledged is on NAND.
//!
//! Why per stream and not per open block: a barrier pads every page in assembly, and there is at
//! most one per stream (four), against one per die and stream (over a hundred on the default
//! geometry), whose padding would waste a tenth of what GC reclaims between two barriers.
//!
//! A failed program retires its block; the page's slots that are still current are placed again
//! (keeping their versions and seals), so a program failure never loses an acknowledged write.
//!
//! With 4 KiB NAND pages a page is one logical page: it is programmed at once from the caller's
//! buffer (`place_whole_page`), which saves a copy per write and per relocation.

use crate::engine::{DATA_STREAMS, Engine, NO_LPA, PageFacts, Shared};
use crate::error::FtlError;
use crate::format::oob::{OOB_RECORD_BYTES, PageRecord};
use crate::format::summary::SummaryEntry;
use crate::io::slot_data;
use crate::layout::{Entry, LOGICAL_PAGE_BYTES};
use crate::nand::NandError;

/// Where a page in assembly will be programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageAt {
    pub die: u32,
    pub gblock: u32,
    pub page: u32,
}

/// A NAND page being assembled by one stream.
#[derive(Debug)]
pub struct PendingPage {
    /// None: no page in assembly (the next placement reserves one).
    pub at: Option<PageAt>,
    /// Records of the slots placed so far, in slot order.
    pub records: Vec<PageRecord>,
    /// The page's bytes; slots past `records.len()` hold leftovers until placed or padded.
    pub data: Vec<u8>,
}

impl PendingPage {
    pub fn new(page_size: usize) -> Self {
        Self {
            at: None,
            records: Vec::new(),
            data: vec![0; page_size],
        }
    }
}

impl Engine {
    /// Places one logical page in `stream`'s page in assembly and returns its slot. The caller
    /// points the map at it, then calls `program_full_pages`. Only host writes (`relocation` false)
    /// may wait for foreground GC; relocation may use the GC reserve.
    pub fn place(
        &mut self,
        sh: &Shared,
        stream: u8,
        facts: PageFacts,
        data: &[u8],
        relocation: bool,
    ) -> Result<u32, FtlError> {
        assert_eq!(data.len(), LOGICAL_PAGE_BYTES);
        let s = stream as usize;
        let slots = self.layout.slots_per_page as usize;
        if slots == 1 {
            return self.place_whole_page(sh, stream, facts, data, relocation);
        }
        if self.pending[s].records.len() == slots {
            // Normally programmed right after the placement that filled it.
            self.program_pending(sh, stream, false)?;
        }
        let at = self.reserve_page(sh, stream, relocation)?;
        let slot = self.pending[s].records.len();
        assert!(slot < slots, "stream {stream} placed into a full page");
        let seq = self.take_seq();
        let PageFacts { lpa, data_seq, .. } = facts;
        let pending = &mut self.pending[s];
        pending.data[slot * LOGICAL_PAGE_BYTES..(slot + 1) * LOGICAL_PAGE_BYTES]
            .copy_from_slice(data);
        pending.records.push(facts.record(stream, seq));
        let open = self.open[s][at.die as usize]
            .as_mut()
            .expect("a page in assembly has its open block");
        debug_assert_eq!(open.gblock, at.gblock);
        open.entries.push(SummaryEntry { lpa, data_seq });
        self.blocks[at.gblock as usize].valid += 1;
        Ok(self.layout.psn(at.gblock, at.page, slot as u32))
    }

    /// The page `stream` assembles: the current one, or a new one. Only host writes
    /// (`relocation` false) may wait for foreground GC; relocation may use the GC reserve.
    fn reserve_page(
        &mut self,
        sh: &Shared,
        stream: u8,
        relocation: bool,
    ) -> Result<PageAt, FtlError> {
        let s = stream as usize;
        for attempt in 0..2 {
            // Foreground GC (below) may itself have started this stream's page: use it then.
            if let Some(at) = self.pending[s].at {
                return Ok(at);
            }
            if let Some(at) = self.alloc_page(stream, relocation) {
                self.pending[s].at = Some(at);
                return Ok(at);
            }
            if relocation || attempt == 1 {
                break;
            }
            self.foreground_gc(sh)?;
        }
        match self.pending[s].at {
            Some(at) => Ok(at),
            None => Err(self.out_of_space("no free block for a write")),
        }
    }

    /// With one logical page per NAND page there is nothing to assemble: the page is programmed
    /// at once from the caller's buffer (no copy), and a failed program is retried in another
    /// block before the map ever points at it.
    fn place_whole_page(
        &mut self,
        sh: &Shared,
        stream: u8,
        facts: PageFacts,
        data: &[u8],
        relocation: bool,
    ) -> Result<u32, FtlError> {
        let s = stream as usize;
        // Every failure retires a block, so this ends; the bound is for the impossible case.
        for _ in 0..=self.layout.blocks {
            let at = self.reserve_page(sh, stream, relocation)?;
            self.pending[s].at = None;
            let seq = self.take_seq();
            let PageFacts { lpa, data_seq, .. } = facts;
            facts.record(stream, seq).encode(data, &mut self.oob_buf);
            let (device, block) = self.layout.split_block(at.gblock);
            self.dirty_devices[device] = true;
            match sh.devices[device].program_page(block, at.page, data, &self.oob_buf) {
                Ok(()) => {}
                Err(NandError::ProgramFailed { .. }) => {
                    self.retire_open(stream, at.die, seq);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            self.count_program();
            self.pages_since_open[s] += 1;
            let b = &mut self.blocks[at.gblock as usize];
            b.valid += 1;
            b.written += 1;
            let open = self.open[s][at.die as usize]
                .as_mut()
                .expect("a reserved page has its open block");
            open.entries.push(SummaryEntry { lpa, data_seq });
            if open.entries.len() == self.layout.data_slots_per_block() as usize {
                self.close_with_summary(sh, stream, at.die)?;
            }
            return Ok(self.layout.psn(at.gblock, at.page, 0));
        }
        Err(self.out_of_space("program failures in every block"))
    }

    /// Programs every stream's page in assembly that is full.
    pub fn program_full_pages(&mut self, sh: &Shared) -> Result<(), FtlError> {
        for stream in 0..DATA_STREAMS as u8 {
            self.program_pending(sh, stream, false)?;
        }
        Ok(())
    }

    /// Makes the write of `lpa` durable: pads and programs its page if still in assembly, then
    /// syncs its device (FUA).
    pub fn make_durable(&mut self, sh: &Shared, lpa: u32) -> Result<(), FtlError> {
        let Entry::Data { psn } = sh.entry(lpa) else {
            return Ok(());
        };
        let (ppn, _) = self.layout.split_psn(psn);
        let assembling = (0..DATA_STREAMS).find(|&s| {
            self.pending[s]
                .at
                .is_some_and(|at| self.layout.ppn(at.gblock, at.page) == ppn)
        });
        if let Some(stream) = assembling {
            self.program_pending(sh, stream as u8, true)?;
        }
        // A failed program placed the page again: sync wherever it is now.
        if let Entry::Data { psn } = sh.entry(lpa) {
            let (device, _) = self.layout.split_block(self.layout.block_of(psn));
            sh.devices[device].sync()?;
        }
        Ok(())
    }

    /// Makes the latest write, trim or write-zeroes of each of `count` pages from `first` durable,
    /// and nothing else: only the pages in assembly that hold one of them are padded and
    /// programmed, the trim buffer is written only if one of them is still in it, and only the
    /// devices holding them are synced. A multi-page FUA write costs what its pages need, not a
    /// barrier over every stream.
    pub fn make_range_durable(
        &mut self,
        sh: &Shared,
        first: u32,
        count: u32,
    ) -> Result<(), FtlError> {
        let mut streams = [false; DATA_STREAMS];
        let mut trims_buffered = false;
        for lpa in first..first + count {
            match sh.entry(lpa) {
                Entry::Data { psn } => {
                    let (ppn, _) = self.layout.split_psn(psn);
                    for (s, pending) in self.pending.iter().enumerate() {
                        if pending
                            .at
                            .is_some_and(|at| self.layout.ppn(at.gblock, at.page) == ppn)
                        {
                            streams[s] = true;
                        }
                    }
                }
                Entry::TrimBuffered => trims_buffered = true,
                Entry::Unmapped | Entry::Lost | Entry::Trimmed { .. } => {}
            }
        }
        for (stream, _) in streams.iter().enumerate().filter(|&(_, &wanted)| wanted) {
            self.program_pending(sh, stream as u8, true)?;
        }
        if trims_buffered {
            self.flush_trims(sh)?;
        }
        // After programming: a failed program placed a page again, so look where they are now.
        let mut devices = vec![false; sh.devices.len()];
        for lpa in first..first + count {
            if let Some(psn) = sh.entry(lpa).psn() {
                let (device, _) = self.layout.split_block(self.layout.block_of(psn));
                devices[device] = true;
            }
        }
        for (device, _) in devices.iter().enumerate().filter(|&(_, &wanted)| wanted) {
            sh.devices[device].sync()?;
        }
        Ok(())
    }

    /// Programs `stream`'s page in assembly if it is full, or, with `pad`, if it holds anything
    /// (the free slots padded: zero bytes, an all-zero record that recovery skips).
    pub fn program_pending(&mut self, sh: &Shared, stream: u8, pad: bool) -> Result<(), FtlError> {
        let s = stream as usize;
        let slots = self.layout.slots_per_page as usize;
        // Every failure retires a block, so this ends; the bound is for the impossible case.
        for _ in 0..=self.layout.blocks {
            let Some(at) = self.pending[s].at else {
                return Ok(());
            };
            let filled = self.pending[s].records.len();
            if filled == 0 || (filled < slots && !pad) {
                return Ok(());
            }
            self.oob_buf.fill(0);
            let pending = &mut self.pending[s];
            for (slot, record) in pending.records.iter().enumerate() {
                let at = slot * OOB_RECORD_BYTES;
                record.encode(
                    slot_data(&pending.data, slot as u32),
                    &mut self.oob_buf[at..at + OOB_RECORD_BYTES],
                );
            }
            pending.data[filled * LOGICAL_PAGE_BYTES..].fill(0);
            let (device, block) = self.layout.split_block(at.gblock);
            self.dirty_devices[device] = true;
            let result =
                sh.devices[device].program_page(block, at.page, &pending.data, &self.oob_buf);
            match result {
                Ok(()) => {
                    self.pending[s].at = None;
                    self.pending[s].records.clear();
                    self.count_program();
                    self.pages_since_open[s] += 1;
                    self.blocks[at.gblock as usize].written += 1;
                    let open = self.open[s][at.die as usize]
                        .as_mut()
                        .expect("a page in assembly has its open block");
                    for _ in filled..slots {
                        open.entries.push(SummaryEntry {
                            lpa: NO_LPA,
                            data_seq: 0,
                        });
                    }
                    if open.entries.len() == self.layout.data_slots_per_block() as usize {
                        self.close_with_summary(sh, stream, at.die)?;
                    }
                    return Ok(());
                }
                Err(NandError::ProgramFailed { .. }) => self.place_again(sh, stream, at)?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(self.out_of_space("program failures in every block"))
    }

    /// After a failed program of `stream`'s page at `at`: retires the block and places the
    /// page's slots that are still current into a new page (same versions and seals).
    fn place_again(&mut self, sh: &Shared, stream: u8, at: PageAt) -> Result<(), FtlError> {
        let s = stream as usize;
        let page_size = self.layout.page_size;
        let data = std::mem::replace(&mut self.pending[s].data, vec![0; page_size]);
        let records = std::mem::take(&mut self.pending[s].records);
        self.pending[s].at = None;
        let last_seq = records.iter().map(|r| r.seq).max().unwrap_or(0);
        self.retire_open(stream, at.die, last_seq);
        for (slot, record) in records.iter().enumerate() {
            let old = self.layout.psn(at.gblock, at.page, slot as u32);
            if sh.entry(record.lpa) != (Entry::Data { psn: old }) {
                continue;
            }
            let facts = PageFacts {
                lpa: record.lpa,
                data_seq: record.data_seq,
                seal: record.seal,
            };
            let new = self.place(sh, stream, facts, slot_data(&data, slot as u32), true)?;
            sh.set(record.lpa, new);
            self.release(Entry::Data { psn: old });
        }
        Ok(())
    }

    /// The logical page in slot `psn` if it is still in a page in assembly: copied into `out`,
    /// with its record. Readers come here (under the engine lock) when the NAND page is erased.
    pub fn read_pending(&self, psn: u32, out: &mut [u8]) -> Option<PageRecord> {
        let (ppn, slot) = self.layout.split_psn(psn);
        self.pending.iter().find_map(|p| {
            let at = p.at?;
            let record = *p.records.get(slot as usize)?;
            (self.layout.ppn(at.gblock, at.page) == ppn).then(|| {
                out.copy_from_slice(slot_data(&p.data, slot));
                record
            })
        })
    }
}
