//! The public FTL: one logical block space of 4 KiB pages over many NAND devices.
//!
//! Reads take no lock: they load the map entry (an atomic), read and verify the slot, and retry if
//! GC moved the page meanwhile. A slot whose NAND page is still in assembly reads as erased: only
//! then does a read take the engine lock, to copy it from the page in assembly. Writes, trims,
//! flush and GC share one lock (`Engine`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use keys::{KeyError, PageSealer};

use crate::format::generations::{self, TableError};

use crate::bounds_log::{BoundsDrain, BoundsLog};
use crate::config::FtlConfig;
use crate::engine::{Engine, Shared};
use crate::error::FtlError;
use crate::format::oob::{PageRecord, SEAL_BYTES};
use crate::gc_sched::{GcSchedStats, GcScheduler, GcTiming, GcWork};
use crate::io::{ReadFailure, read_slot_verified};
use crate::layout::{Entry, LOGICAL_PAGE_BYTES, Layout};
use crate::nand::{Nand, NandError};
use crate::recovery::RecoveryReport;
use crate::stats::FtlStats;

thread_local! {
    /// Where a reading thread puts a sealed page before opening it into the caller's buffer.
    static SEALED_PAGE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn zero_bounds(pages: u64) -> Vec<AtomicU64> {
    (0..pages).map(|_| AtomicU64::new(0)).collect()
}

/// How often a read retries when GC moved its page between the map lookup and the NAND read.
const READ_RACE_RETRIES: u32 = 64;

/// Pages `read_many` looks up and prefetches at once: enough misses in flight to fill the
/// CPU's line fill buffers (about 10-16 on current x86 cores), few enough that the first page
/// prefetched is still in cache when its turn to be copied comes (16 pages, 3 lines each).
const READ_BATCH_PAGES: usize = 16;

#[derive(Debug)]
pub struct Ftl {
    shared: Shared,
    engine: Mutex<Engine>,
    host_pages_read: AtomicU64,
    read_retries: u32,
    sealer: Option<PageSealer>,
}

impl Ftl {
    /// Formats the devices: erases every good block and writes an empty checkpoint.
    pub fn format(devices: Vec<Arc<dyn Nand>>, config: FtlConfig) -> Result<Self, FtlError> {
        Self::format_sealed(devices, config, None)
    }

    /// `format` with every host page sealed by `sealer` (AES-256-GCM; the tag in the OOB record).
    pub fn format_sealed(
        devices: Vec<Arc<dyn Nand>>,
        config: FtlConfig,
        sealer: Option<PageSealer>,
    ) -> Result<Self, FtlError> {
        let (mut shared, mut engine) = crate::recovery::format(devices, config)?;
        if sealer.is_some() {
            shared.generations = zero_bounds(shared.logical_pages());
        }
        engine.sealer = sealer;
        let ftl = Self::assemble(shared, engine);
        if !ftl.engine.lock().write_checkpoint(&ftl.shared)? {
            return Err(FtlError::Devices(
                "could not write the first checkpoint".into(),
            ));
        }
        Ok(ftl)
    }

    /// Opens formatted devices: from the last checkpoint after a clean close, or by recovery after
    /// a crash. No acknowledged-and-flushed write is lost.
    pub fn open(
        devices: Vec<Arc<dyn Nand>>,
        config: FtlConfig,
    ) -> Result<(Self, RecoveryReport), FtlError> {
        Self::open_sealed(devices, config, None)
    }

    /// `open` of devices whose pages were sealed. With another key than the one that sealed them,
    /// every read of old data fails authentication (a media error), never returns their bytes.
    pub fn open_sealed(
        devices: Vec<Arc<dyn Nand>>,
        config: FtlConfig,
        sealer: Option<PageSealer>,
    ) -> Result<(Self, RecoveryReport), FtlError> {
        let (mut shared, mut engine, report, fold_bounds) = crate::recovery::open(devices, config)?;
        if sealer.is_some() {
            shared.generations = zero_bounds(shared.logical_pages());
            for (lpa, &g) in fold_bounds.iter().enumerate() {
                shared.raise_generation(lpa as u32, g);
            }
        }
        engine.sealer = sealer;
        Ok((Self::assemble(shared, engine), report))
    }

    /// The generation bounds of a sealed FTL, one per logical page (empty when not sealed), to
    /// keep across a restart with `raise_generation_bounds` (see `generations.rs` for the
    /// authenticated table that carries them).
    pub fn generation_bounds(&self) -> Vec<u64> {
        self.shared
            .generations
            .iter()
            .map(|g| g.load(Ordering::Acquire))
            .collect()
    }

    /// Raises the generation bounds to at least `bounds` (one per logical page; a shorter table
    /// raises its prefix). A sealed read of a page older than its bound fails as a replay.
    /// Bounds only rise: a stale table weakens the check, never fails a good read.
    pub fn raise_generation_bounds(&self, bounds: &[u64]) -> Result<(), FtlError> {
        if self.sealer.is_none() {
            return Err(FtlError::Config(
                "generation bounds need a sealed FTL".into(),
            ));
        }
        if bounds.len() as u64 > self.logical_pages() {
            return Err(FtlError::Config(format!(
                "generation table of {} pages for {} logical pages",
                bounds.len(),
                self.logical_pages()
            )));
        }
        for (lpa, &g) in bounds.iter().enumerate() {
            self.shared.raise_generation(lpa as u32, g);
        }
        Ok(())
    }

    /// The generation bounds as an authenticated table (`format::generations`), for a sealed FTL
    /// to save beside its devices at a clean close.
    pub fn generation_table(&self) -> Result<Vec<u8>, TableError> {
        let Some(sealer) = &self.sealer else {
            return Err(TableError::Format(
                "an unsealed FTL has no generations".into(),
            ));
        };
        generations::encode(sealer, &self.generation_bounds())
    }

    /// Raises the bounds from a table `generation_table` made under the same key; refuses a
    /// table that is damaged, forged, of another key or device, or longer than the FTL.
    pub fn apply_generation_table(&self, table: &[u8]) -> Result<(), TableError> {
        let Some(sealer) = &self.sealer else {
            return Err(TableError::Format(
                "an unsealed FTL has no generations".into(),
            ));
        };
        let bounds = generations::decode(sealer, table)?;
        self.raise_generation_bounds(&bounds)
            .map_err(|e| TableError::Format(e.to_string()))
    }

    fn assemble(shared: Shared, engine: Engine) -> Self {
        let host_pages_read = AtomicU64::new(engine.counters.host_pages_read);
        let read_retries = engine.config.read_retries;
        let sealer = engine.sealer.clone();
        Self {
            shared,
            engine: Mutex::new(engine),
            host_pages_read,
            read_retries,
            sealer,
        }
    }

    pub fn logical_pages(&self) -> u64 {
        self.shared.logical_pages()
    }

    /// Bytes in a logical page: 4096, whatever the NAND page size.
    pub fn page_size(&self) -> usize {
        LOGICAL_PAGE_BYTES
    }

    pub fn layout(&self) -> Layout {
        self.shared.layout
    }

    fn check(&self, lpa: u64, count: u64, buf_len: Option<usize>) -> Result<u32, FtlError> {
        let logical_pages = self.logical_pages();
        if lpa.checked_add(count).is_none_or(|end| end > logical_pages) {
            return Err(FtlError::OutOfRange {
                lpa: lpa.saturating_add(count.saturating_sub(1)),
                logical_pages,
            });
        }
        if let Some(got) = buf_len
            && got != LOGICAL_PAGE_BYTES
        {
            return Err(FtlError::BufferSize {
                expected: LOGICAL_PAGE_BYTES,
                got,
            });
        }
        Ok(lpa as u32)
    }

    /// Reads one logical page. A page never written, trimmed or zeroed reads as zeroes.
    pub fn read(&self, lpa: u64, buf: &mut [u8]) -> Result<(), FtlError> {
        self.read_with_seal(lpa, buf).map(|_| ())
    }

    /// Reads the logical pages `lpas` into `out`, 4 KiB each in order (`out` is exactly
    /// `lpas.len()` pages long), as `read` would one by one, but with their memory misses
    /// overlapped: the map entries of a batch are loaded first, then the first cache lines of
    /// each page are prefetched (`Nand::prefetch_page`), then the pages are read and checked. A
    /// client with several reads queued (a queue depth above 1) pays the misses of one read, not
    /// of all. `results` gets one entry per page, in order; a page that fails does not stop the
    /// others. An `out` of the wrong length fails every page with `BufferSize`.
    pub fn read_many(&self, lpas: &[u64], out: &mut [u8], results: &mut Vec<Result<(), FtlError>>) {
        results.clear();
        let expected = lpas.len().saturating_mul(LOGICAL_PAGE_BYTES);
        if out.len() != expected {
            results.extend(lpas.iter().map(|_| {
                Err(FtlError::BufferSize {
                    expected,
                    got: out.len(),
                })
            }));
            return;
        }
        let layout = &self.shared.layout;
        let logical_pages = self.logical_pages();
        let mut psns = [None; READ_BATCH_PAGES];
        for (batch, bufs) in lpas
            .chunks(READ_BATCH_PAGES)
            .zip(out.chunks_mut(READ_BATCH_PAGES * LOGICAL_PAGE_BYTES))
        {
            // Independent loads, so the CPU overlaps their misses; `read` checks the range again.
            for (psn, &lpa) in psns.iter_mut().zip(batch) {
                *psn = (lpa < logical_pages)
                    .then(|| self.shared.entry(lpa as u32).psn())
                    .flatten();
            }
            for psn in psns[..batch.len()].iter().flatten() {
                let (ppn, _) = layout.split_psn(*psn);
                let (gblock, page) = layout.split_ppn(ppn);
                let (device, block) = layout.split_block(gblock);
                self.shared.devices[device].prefetch_page(block, page);
            }
            for (&lpa, buf) in batch.iter().zip(bufs.chunks_mut(LOGICAL_PAGE_BYTES)) {
                results.push(self.read(lpa, buf));
            }
        }
    }

    /// Reads one logical page written by `write_client_sealed`, and the seal written with it
    /// (all zero for a page never written, trimmed, zeroed, or written by `write`). Only for
    /// an FTL without a sealer of its own.
    pub fn read_client_sealed(
        &self,
        lpa: u64,
        buf: &mut [u8],
    ) -> Result<[u8; SEAL_BYTES], FtlError> {
        self.refuse_client_seal()?;
        self.read_with_seal(lpa, buf)
    }

    /// Writes one logical page with `seal`, 28 bytes its client sealed the page with (a remote
    /// client's nonce and tag): stored in the page's OOB record and kept there when GC or wear
    /// leveling moves the page, so `read_client_sealed` returns them with the data. Only for an
    /// FTL without a sealer of its own, which uses those bytes for its tag.
    pub fn write_client_sealed(
        &self,
        lpa: u64,
        data: &[u8],
        seal: &[u8; SEAL_BYTES],
        durable: bool,
    ) -> Result<(), FtlError> {
        self.refuse_client_seal()?;
        let lpa = self.check(lpa, 1, Some(data.len()))?;
        self.engine
            .lock()
            .write(&self.shared, lpa, data, seal, durable)
    }

    fn refuse_client_seal(&self) -> Result<(), FtlError> {
        match self.sealer {
            None => Ok(()),
            Some(_) => Err(FtlError::Config(
                "client seals need an FTL without encryption of its own (the OOB seal field holds its tag)".into(),
            )),
        }
    }

    /// `read`, returning the seal field of the page's OOB record (zero when there is no page).
    fn read_with_seal(&self, lpa: u64, buf: &mut [u8]) -> Result<[u8; SEAL_BYTES], FtlError> {
        let lpa = self.check(lpa, 1, Some(buf.len()))?;
        self.host_pages_read.fetch_add(1, Ordering::Relaxed);
        // The usual OOB (64 bytes a slot) fits on the stack; zeroing a 2 KiB array per read shows
        // in profiles.
        let mut small = [0u8; 256];
        let mut large = Vec::new();
        let oob_size = self.shared.layout.oob_size;
        let oob = if oob_size <= small.len() {
            &mut small[..oob_size]
        } else {
            large.resize(oob_size, 0);
            &mut large[..]
        };
        let retries = self.read_retries;
        for _ in 0..READ_RACE_RETRIES {
            // Before the entry: see `Shared::generation_bound`.
            let bound = self.shared.generation_bound(lpa);
            let psn = match self.shared.entry(lpa) {
                Entry::Data { psn } => psn,
                Entry::Lost => {
                    return Err(FtlError::Media {
                        lpa: lpa.into(),
                        detail: "data lost in relocation".into(),
                    });
                }
                _ => {
                    buf.fill(0);
                    return Ok([0; SEAL_BYTES]);
                }
            };
            // A sealed page is read into a per-thread buffer and opened into `buf`: one pass, and
            // `buf` never holds bytes that have not authenticated.
            let result = match &self.sealer {
                None => self.read_slot(lpa, psn, buf, oob, retries),
                Some(_) => SEALED_PAGE.with_borrow_mut(|sealed| {
                    sealed.resize(buf.len(), 0);
                    self.read_slot(lpa, psn, sealed, oob, retries)
                }),
            };
            let moved = self.shared.entry(lpa) != (Entry::Data { psn });
            match result {
                Ok(record) if record.lpa == lpa && record.data_seq >= bound => {
                    return self.unseal(lpa, &record, buf).map(|()| record.seal);
                }
                _ if moved => continue,
                Ok(record) if record.lpa == lpa => {
                    buf.fill(0);
                    return Err(FtlError::Media {
                        lpa: lpa.into(),
                        detail: format!(
                            "page failed authentication: generation {} is older than {bound}, the \
                             one this page was last written with (an old copy put back)",
                            record.data_seq
                        ),
                    });
                }
                Ok(record) => {
                    return Err(FtlError::Media {
                        lpa: lpa.into(),
                        detail: format!("slot {psn} holds logical page {} instead", record.lpa),
                    });
                }
                // Programmed since the NAND read, or moved: look again.
                Err(ReadFailure::Nand(NandError::ErasedPage { .. })) => continue,
                Err(ReadFailure::Corrupt(e)) => {
                    return Err(FtlError::Media {
                        lpa: lpa.into(),
                        detail: format!("slot {psn}: {e}"),
                    });
                }
                Err(ReadFailure::Nand(NandError::Uncorrectable { bits, .. })) => {
                    return Err(FtlError::Media {
                        lpa: lpa.into(),
                        detail: format!(
                            "uncorrectable after {retries} retries ({bits} bit errors)"
                        ),
                    });
                }
                Err(ReadFailure::Nand(e)) => return Err(e.into()),
            }
        }
        Err(FtlError::Media {
            lpa: lpa.into(),
            detail: "page kept moving under the read".into(),
        })
    }

    /// Reads slot `psn` from NAND; if its page is still in assembly (erased on NAND), copies it
    /// from there under the engine lock.
    fn read_slot(
        &self,
        lpa: u32,
        psn: u32,
        out: &mut [u8],
        oob: &mut [u8],
        retries: u32,
    ) -> Result<PageRecord, ReadFailure> {
        match read_slot_verified(&self.shared, psn, out, oob, retries) {
            Err(ReadFailure::Nand(NandError::ErasedPage { block, page })) => {
                let engine = self.engine.lock();
                if self.shared.entry(lpa) == (Entry::Data { psn })
                    && let Some(record) = engine.read_pending(psn, out)
                {
                    return Ok(record);
                }
                Err(ReadFailure::Nand(NandError::ErasedPage { block, page }))
            }
            other => other,
        }
    }

    /// Opens the sealed page the read left in `SEALED_PAGE` into `buf`; a page that does not
    /// authenticate is a media error and `buf` is zeroed (its bytes are never returned).
    fn unseal(&self, lpa: u32, record: &PageRecord, buf: &mut [u8]) -> Result<(), FtlError> {
        let Some(sealer) = &self.sealer else {
            return Ok(());
        };
        let opened = SEALED_PAGE.with_borrow(|sealed| {
            sealer.open(u64::from(lpa), record.data_seq, sealed, &record.tag(), buf)
        });
        if opened.is_err() {
            buf.fill(0);
        }
        opened.map_err(|e| match e {
            KeyError::Authentication { .. } => FtlError::Media {
                lpa: lpa.into(),
                detail: format!(
                    "page failed authentication (generation {})",
                    record.data_seq
                ),
            },
            other => FtlError::Key(other),
        })
    }

    /// Writes one logical page; `durable` (FUA) makes it durable before returning.
    pub fn write(&self, lpa: u64, data: &[u8], durable: bool) -> Result<(), FtlError> {
        let lpa = self.check(lpa, 1, Some(data.len()))?;
        self.engine
            .lock()
            .write(&self.shared, lpa, data, &[0; SEAL_BYTES], durable)
    }

    /// Writes several logical pages, in order, under one hold of the engine lock (none durable:
    /// a caller that owes FUA follows with `make_durable`). `results` gets one entry per page, in
    /// order: a page that fails (out of range, wrong size, read-only, a NAND error) fails alone
    /// and the others are still written. A page written twice keeps the later data.
    ///
    /// One lock hold instead of one per page: a queue that pops many requests at once does not
    /// hand the lock back and forth with other queues between them.
    pub fn write_batch(&self, pages: &[(u64, &[u8])], results: &mut Vec<Result<(), FtlError>>) {
        results.clear();
        let mut engine = self.engine.lock();
        for &(lpa, data) in pages {
            let result = self
                .check(lpa, 1, Some(data.len()))
                .and_then(|lpa| engine.write(&self.shared, lpa, data, &[0; SEAL_BYTES], false));
            results.push(result);
        }
    }

    /// Makes the latest write, trim or write-zeroes of `count` pages from `lpa` durable (a
    /// multi-page FUA write: write the pages with `durable` false, then this). Cheaper than
    /// `flush`: other streams' pages in assembly stay there and other devices are not synced.
    pub fn make_durable(&self, lpa: u64, count: u64) -> Result<(), FtlError> {
        let first = self.check(lpa, count, None)?;
        self.engine
            .lock()
            .make_range_durable(&self.shared, first, count as u32)
    }

    /// Deallocates `count` pages from `lpa`: they read as zeroes; durable at the next flush.
    pub fn trim(&self, lpa: u64, count: u64) -> Result<(), FtlError> {
        let first = self.check(lpa, count, None)?;
        let mut engine = self.engine.lock();
        for lpa in first..first + count as u32 {
            engine.trim(&self.shared, lpa)?;
        }
        Ok(())
    }

    /// Write-zeroes: same effect as trim here (zero pages are not stored).
    pub fn write_zeroes(&self, lpa: u64, count: u64) -> Result<(), FtlError> {
        self.trim(lpa, count)
    }

    /// Makes every acknowledged write and trim durable.
    pub fn flush(&self) -> Result<(), FtlError> {
        self.engine.lock().barrier(&self.shared)
    }

    /// From now on a sealed FTL logs each host write's (page, generation) until the next
    /// `flush_logged`, for a caller that journals the bounds (see `bounds_log.rs`).
    pub fn start_bounds_log(&self) -> Result<(), FtlError> {
        if self.sealer.is_none() {
            return Err(FtlError::Config(
                "generation bounds need a sealed FTL".into(),
            ));
        }
        self.engine
            .lock()
            .bounds_log
            .get_or_insert_with(Default::default);
        Ok(())
    }

    /// `flush`, and the bounds raised by the writes it made durable: taken under the same hold
    /// of the engine lock, so none of them is a write the flush did not cover (journaling one of
    /// those would fail an older copy that a crash may legitimately bring back). With `want_all`,
    /// or when pairs were dropped, also every page's bound as of the flush. Empty without
    /// `start_bounds_log`. If the flush fails, its pairs are lost to the log, and the next drain
    /// gives every bound.
    pub fn flush_logged(&self, want_all: bool) -> Result<BoundsDrain, FtlError> {
        let mut engine = self.engine.lock();
        let (pairs, complete) = engine
            .bounds_log
            .as_mut()
            .map_or((Vec::new(), true), BoundsLog::drain);
        let all = (want_all || !complete).then(|| self.generation_bounds());
        match engine.barrier(&self.shared) {
            Ok(()) => Ok(BoundsDrain { pairs, all }),
            Err(e) => {
                if let Some(log) = &mut engine.bounds_log {
                    log.mark_incomplete();
                }
                Err(e)
            }
        }
    }

    /// Raises the bounds of single pages (a journal's pairs); refuses a page out of range.
    pub fn raise_generation_pairs(&self, pairs: &[(u32, u64)]) -> Result<(), FtlError> {
        if self.sealer.is_none() {
            return Err(FtlError::Config(
                "generation bounds need a sealed FTL".into(),
            ));
        }
        let pages = self.shared.logical_pages();
        if let Some(&(lpa, _)) = pairs.iter().find(|&&(lpa, _)| u64::from(lpa) >= pages) {
            return Err(FtlError::Config(format!(
                "generation bound for page {lpa} of {pages} logical pages"
            )));
        }
        for &(lpa, g) in pairs {
            self.shared.raise_generation(lpa, g);
        }
        Ok(())
    }

    /// The sealer of a sealed FTL (for tables and journals authenticated under its key).
    pub fn sealer(&self) -> Option<&PageSealer> {
        self.sealer.as_ref()
    }

    /// Clean shutdown: flush, then write a checkpoint so the next open is fast.
    pub fn close(self) -> Result<(), FtlError> {
        let mut engine = self.engine.into_inner();
        engine.counters.host_pages_read = self.host_pages_read.load(Ordering::Relaxed);
        engine.barrier(&self.shared)?;
        if !engine.write_checkpoint(&self.shared)? {
            tracing::warn!("closed without a new checkpoint; the next open folds in what changed");
        }
        Ok(())
    }

    /// Attaches the global GC scheduler: from now on host writes do not run GC themselves (only
    /// foreground GC when free space runs out); `background_gc` does, on the dies the scheduler
    /// allows at the clock's time. `timing` holds every device's timing model in device order
    /// (`TimedNand::model`) and their clock.
    pub fn attach_gc_scheduler(&self, timing: GcTiming) -> Result<(), FtlError> {
        let mut engine = self.engine.lock();
        let sched = GcScheduler::new(timing, &self.shared.layout, engine.config.gc_die_share)
            .map_err(FtlError::Devices)?;
        engine.sched = Some(sched);
        Ok(())
    }

    /// One unit of background GC (an erase or a page move) if GC is needed and the scheduler
    /// allows it now. `Idle` without a scheduler.
    pub fn background_gc(&self) -> Result<GcWork, FtlError> {
        self.engine.lock().background_gc(&self.shared)
    }

    /// Whether a host write now would go on without foreground GC (always true without a
    /// scheduler). A driver holds writes back while false and runs `background_gc` meanwhile.
    pub fn write_admitted(&self) -> bool {
        self.engine.lock().write_admitted()
    }

    /// The scheduler's counters, if one is attached.
    pub fn gc_sched_stats(&self) -> Option<GcSchedStats> {
        self.engine.lock().sched.as_ref().map(GcScheduler::stats)
    }

    /// Erase count of every good block, in block order (for wear plots).
    pub fn erase_counts(&self) -> Vec<u32> {
        self.engine.lock().erase_counts()
    }

    pub fn stats(&self) -> FtlStats {
        let read = self.host_pages_read.load(Ordering::Relaxed);
        self.engine.lock().stats(self.logical_pages(), read)
    }
}
