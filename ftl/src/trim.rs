//! TRIM and write-zeroes: the map entry goes to "trimmed" at once; the durable record is a trim-log
//! entry, buffered in RAM until a page fills, a flush, or a barrier before an erase.

use crate::blocks::BlockKind;
use crate::engine::{Engine, STREAM_TRIM, Shared};
use crate::error::FtlError;
use crate::format::oob::{PageKind, PageRecord, SEAL_BYTES};
use crate::format::trim_log::{self, TrimEntry};
use crate::layout::{Entry, TRIM_BUFFERED, TRIM_FLAG};
use crate::nand::NandError;

impl Engine {
    /// Trims one logical page (reads return zeroes from now on).
    pub fn trim(&mut self, sh: &Shared, lpa: u32) -> Result<(), FtlError> {
        self.check_writable()?;
        // The first entry of an empty buffer, with no trim-log block open, needs a free block
        // by the next barrier, and the barrier before an erase cannot make room: it would need
        // that block first (after a reopen the last free block could be gone to the trim block
        // the crash closed, and the FTL went read-only; found by the model proptest). While the
        // buffer is empty a barrier needs no block, so GC can make room now.
        if self.trim_block.is_none() && self.trim_buffer.is_empty() {
            self.make_room(sh)?;
        }
        // Read after any GC above, which may have moved the page.
        let entry = sh.entry(lpa);
        if !matches!(entry, Entry::Data { .. } | Entry::Lost) {
            return Ok(());
        }
        self.release(entry);
        // At most one buffered entry per page, the newest: an older one is left when a page is
        // trimmed, rewritten and trimmed again before the buffer is written. Both would reach the
        // same trim-log page, and GC, relocating only the first one it meets there, would keep
        // the older trim and lose the newer (recovery could then bring back the rewrite).
        self.trim_buffer.retain(|e| e.lpa != lpa);
        let data_seq = self.take_seq();
        self.trim_buffer.push(TrimEntry { lpa, data_seq });
        sh.set(lpa, TRIM_BUFFERED);
        // A trim is a version of the page too (it reads as zeroes): a sealed FTL raises the
        // page's bound to it, after the map update as a write does, so a copy from before the
        // trim put back on the media fails instead of coming back to life.
        sh.raise_generation(lpa, data_seq);
        if let Some(log) = &mut self.bounds_log {
            log.push(lpa, data_seq);
        }
        self.counters.trims += 1;
        if self.trim_buffer.len() >= trim_log::capacity(self.layout.page_size) {
            self.write_trim_page(sh)?;
        }
        Ok(())
    }

    pub fn flush_trims(&mut self, sh: &Shared) -> Result<(), FtlError> {
        while !self.trim_buffer.is_empty() {
            self.write_trim_page(sh)?;
        }
        Ok(())
    }

    fn write_trim_page(&mut self, sh: &Shared) -> Result<(), FtlError> {
        let n = self
            .trim_buffer
            .len()
            .min(trim_log::capacity(self.layout.page_size));
        trim_log::encode(&self.trim_buffer[..n], &mut self.data_buf);
        let psn = loop {
            let gblock = match self.trim_block {
                Some(g) => g,
                None => {
                    let Some(g) = self.free.take_any() else {
                        return Err(self.out_of_space("no free block for the trim log"));
                    };
                    self.open_block(g, STREAM_TRIM);
                    self.trim_block = Some(g);
                    g
                }
            };
            let page = self.blocks[gblock as usize].written;
            let seq = self.take_seq();
            let record = PageRecord {
                kind: PageKind::TrimLog,
                stream: STREAM_TRIM,
                lpa: n as u32,
                seq,
                data_seq: seq,
                seal: [0; SEAL_BYTES],
            };
            record.encode(&self.data_buf, &mut self.oob_buf);
            let (device, block) = self.layout.split_block(gblock);
            self.dirty_devices[device] = true;
            let result =
                sh.devices[device].program_page(block, page, &self.data_buf, &self.oob_buf);
            let b = &mut self.blocks[gblock as usize];
            b.written += 1;
            let full = b.written == self.layout.pages_per_block;
            match result {
                Ok(()) => {
                    if full {
                        b.kind = BlockKind::TrimClosed;
                        b.close_seq = seq;
                        self.trim_block = None;
                    }
                    break self.layout.psn(gblock, page, 0);
                }
                Err(NandError::ProgramFailed { .. }) => {
                    b.kind = BlockKind::TrimClosed;
                    b.close_seq = seq;
                    b.retire = true;
                    self.trim_block = None;
                }
                Err(e) => {
                    b.written -= 1;
                    return Err(e.into());
                }
            }
        };
        self.count_program();
        let gblock = self.layout.block_of(psn);
        for e in self.trim_buffer.drain(..n) {
            if sh.entry(e.lpa) == Entry::TrimBuffered {
                sh.set(e.lpa, TRIM_FLAG | psn);
                self.blocks[gblock as usize].valid += 1;
            }
        }
        Ok(())
    }
}
