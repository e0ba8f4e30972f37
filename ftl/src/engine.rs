//! The write side of the FTL: allocation over every die and stream, host writes, block close with
//! summary, and the durability barrier. One `Engine` sits behind the FTL's write lock; readers never
//! take it (they use the atomic map in `Shared`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::assembly::{PageAt, PendingPage};
use crate::blocks::{BlockKind, BlockState, FreePool};
use crate::config::FtlConfig;
use crate::error::FtlError;
use crate::format::oob::{PageKind, PageRecord, SEAL_BYTES};
use crate::format::summary::{self, SummaryEntry};
use crate::format::trim_log::TrimEntry;
use crate::gc::GcJob;
use crate::layout::{Entry, LOGICAL_PAGE_BYTES, Layout};
use crate::nand::{Nand, NandError};
use crate::temperature::Temperature;

/// Write streams. Host writes are split by temperature; relocated data has its own stream.
pub const STREAM_HOT: u8 = 0;
pub const STREAM_COLD: u8 = 1;
pub const STREAM_GC: u8 = 2;
/// Static wear leveling: cold data moved out of young blocks into the most worn free block.
pub const STREAM_WL: u8 = 3;
pub const DATA_STREAMS: usize = 4;
/// Streams that write to every die at once (the wear-leveling stream keeps one open block).
const PARALLEL_STREAMS: u64 = 3;
/// Stream codes recorded in the OOB of non-data pages.
pub const STREAM_TRIM: u8 = 8;
pub const STREAM_CHECKPOINT: u8 = 9;
/// Die ranks of `Engine::die_filter` (from `GcScheduler::die_ranks`).
pub const RANK_IDLE: u8 = 0;
pub const RANK_BUSY: u8 = 1;
pub const RANK_COLLECTING: u8 = 2;
/// A slot that holds no logical page (in a victim's slot list, or a padded slot's summary entry).
pub const NO_LPA: u32 = u32::MAX;

/// Free blocks only GC may take: relocation must always find room, or GC could deadlock.
pub const GC_RESERVE_BLOCKS: u32 = 2;
/// Below this many free blocks host writes wait while GC runs (foreground GC).
pub const FREE_BLOCKS_URGENT: u32 = GC_RESERVE_BLOCKS + 2;
/// Below this many free blocks GC runs paced against host writes (background GC).
pub const FREE_BLOCKS_BACKGROUND: u32 = FREE_BLOCKS_URGENT + 4;

/// What a data page carries wherever it is programmed: kept as is when GC relocates it.
#[derive(Clone, Copy, Debug)]
pub struct PageFacts {
    pub lpa: u32,
    /// The version: sequence number of the host write that made it (the seal's generation).
    pub data_seq: u64,
    /// A sealed FTL's AES-GCM tag (then zero past it), or the client's seal of a page written
    /// in the clear with one (`Ftl::write_client_sealed`), or zero.
    pub seal: [u8; SEAL_BYTES],
}

impl PageFacts {
    /// The OOB record of these facts programmed by `stream` with sequence number `seq`.
    pub fn record(self, stream: u8, seq: u64) -> PageRecord {
        PageRecord {
            kind: PageKind::Data,
            stream,
            lpa: self.lpa,
            seq,
            data_seq: self.data_seq,
            seal: self.seal,
        }
    }
}

/// What readers and writers share: the devices and the logical-to-physical map.
#[derive(Debug)]
pub struct Shared {
    pub layout: Layout,
    pub devices: Vec<Arc<dyn Nand>>,
    pub map: Vec<AtomicU32>,
    /// Sealed FTLs only (empty otherwise): per logical page, a generation its mapped page must
    /// have at least. A page of an older generation put back on the media (data and OOB record
    /// together, which authenticate) fails the read as a replay. Raised after each host write's
    /// map update, from the fold of a crash open, and from a table saved at a clean close.
    pub generations: Vec<AtomicU64>,
}

impl Shared {
    /// The least generation the page mapped at `lpa` may carry (0: nothing known).
    ///
    /// Loaded before the map entry: a write stores its generation after its map update, so any
    /// entry read after this load holds that generation or a newer one.
    pub fn generation_bound(&self, lpa: u32) -> u64 {
        self.generations
            .get(lpa as usize)
            .map_or(0, |g| g.load(Ordering::Acquire))
    }

    pub fn raise_generation(&self, lpa: u32, generation: u64) {
        if let Some(g) = self.generations.get(lpa as usize) {
            g.fetch_max(generation, Ordering::AcqRel);
        }
    }

    pub fn entry(&self, lpa: u32) -> Entry {
        Entry::decode(self.map[lpa as usize].load(Ordering::Acquire))
    }

    pub fn set(&self, lpa: u32, raw: u32) {
        self.map[lpa as usize].store(raw, Ordering::Release);
    }

    pub fn logical_pages(&self) -> u64 {
        self.map.len() as u64
    }
}

#[derive(Debug)]
pub struct OpenBlock {
    pub gblock: u32,
    /// One entry per slot placed in the block (programmed, or in the stream's pending page), for
    /// the summary; padded slots have `NO_LPA`.
    pub entries: Vec<SummaryEntry>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub host_pages_written: u64,
    /// In logical pages (4 KiB): a program of a 16 KiB page counts 4, padding included.
    pub nand_pages_written: u64,
    pub gc_runs: u64,
    pub gc_pages_moved: u64,
    pub host_pages_read: u64,
    pub trims: u64,
    pub wl_pages_moved: u64,
    pub wl_runs: u64,
}

impl Counters {
    pub fn to_array(self) -> [u64; 8] {
        [
            self.host_pages_written,
            self.nand_pages_written,
            self.gc_runs,
            self.gc_pages_moved,
            self.host_pages_read,
            self.trims,
            self.wl_pages_moved,
            self.wl_runs,
        ]
    }

    pub fn from_array(a: [u64; 8]) -> Self {
        Self {
            host_pages_written: a[0],
            nand_pages_written: a[1],
            gc_runs: a[2],
            gc_pages_moved: a[3],
            host_pages_read: a[4],
            trims: a[5],
            wl_pages_moved: a[6],
            wl_runs: a[7],
        }
    }
}

#[derive(Debug)]
pub struct Engine {
    pub config: FtlConfig,
    pub layout: Layout,
    pub blocks: Vec<BlockState>,
    pub free: FreePool,
    /// Open block per data stream and die.
    pub open: Vec<Vec<Option<OpenBlock>>>,
    /// Per data stream, the NAND page being assembled from logical pages (one slot each); it is
    /// programmed when full, or padded by a barrier or a durable write.
    pub pending: Vec<PendingPage>,
    pub cursor: [usize; DATA_STREAMS],
    /// Open blocks per stream now, and the most a stream may have: every die when the
    /// over-provisioning can carry it, fewer on small devices (open blocks hold spare space).
    pub open_count: [u32; DATA_STREAMS],
    /// Pages each stream programmed since it last opened a block: a stream opens its blocks a
    /// fraction of a block apart, so they fill and close staggered instead of all at once (which
    /// would drain the free pool in one burst).
    pub pages_since_open: [u32; DATA_STREAMS],
    pub max_open_per_stream: u32,
    pub rotation: Vec<u32>,
    pub trim_block: Option<u32>,
    pub trim_buffer: Vec<TrimEntry>,
    pub next_seq: u64,
    pub temperature: Temperature,
    pub gc: Option<GcJob>,
    pub gc_credit: f64,
    pub pending_erase: Vec<u32>,
    pub dirty_devices: Vec<bool>,
    pub checkpoint_blocks: Vec<u32>,
    /// The checkpoint area (`Layout::area_blocks` blocks fixed at format), bad ones included.
    pub area: Vec<u32>,
    /// Wear leveling wants the checkpoint moved off its (young) blocks: written after a host
    /// write, or with a scheduler a page at a time by `background_gc` (`persist_background.rs`).
    pub checkpoint_due: bool,
    /// The checkpoint `background_gc` is writing, if any.
    pub checkpoint_job: Option<crate::persist_background::CheckpointJob>,
    pub spare_blocks: u32,
    pub factory_bad_blocks: u32,
    pub grown_bad_blocks: u32,
    pub read_only: Option<String>,
    pub counters: Counters,
    pub erases_since_wl_check: u32,
    /// Host writes that had to wait for foreground GC (pacing should keep this near zero).
    pub foreground_gc_stalls: u64,
    /// A whole page: summaries and trim-log pages are built here.
    pub data_buf: Vec<u8>,
    /// Sealed copy of a host page (one logical page) on its way to NAND.
    pub seal_buf: Vec<u8>,
    /// Seals host pages (AES-256-GCM, tag in the OOB record); None: stored in the clear.
    pub sealer: Option<keys::PageSealer>,
    /// Logical page of each slot of the current GC victim (NO_LPA where none), from its summary.
    pub victim_lpas: Vec<u32>,
    /// Page buffer of relocation, apart from `data_buf` which block close needs meanwhile.
    pub relocation_buf: Vec<u8>,
    pub relocation_oob: Vec<u8>,
    /// The victim page `relocation_buf` holds, so moving its slots reads it once.
    pub relocation_page: Option<u32>,
    pub oob_buf: Vec<u8>,
    /// The global GC scheduler, attached for timed devices (`Ftl::attach_gc_scheduler`). With it,
    /// host writes do not run GC; `background_gc` does, on the dies the scheduler allows.
    pub sched: Option<crate::gc_sched::GcScheduler>,
    /// While set, a new page goes to a die of the lowest rank that can take it (the scheduler's
    /// ranks: idle, busy with host work, being collected); any die only when none can.
    pub die_filter: Option<Vec<u8>>,
    /// With `die_filter`: per global die, when the work charged to it ends (the scheduler's
    /// view); empty otherwise.
    pub die_free_ns: Vec<u64>,
    /// What one more page program adds to a die's queue (the scheduler's timing).
    pub die_page_cost_ns: u64,
    /// Leading entries of `pending_erase` that a barrier has covered: they may be erased one by
    /// one without another barrier (background GC; with background syncs, also `process_erases`).
    pub erase_ready: usize,
    /// The erase barrier's sync running on its own thread, outside the engine lock (devices whose
    /// syncs wait for a disk, no scheduler: see `Engine::background_syncs`).
    pub sync_in_flight: Option<InFlightSync>,
    /// Sealed FTLs whose caller journals generation bounds (`Ftl::start_bounds_log`): each host
    /// write's (page, generation), drained by `Ftl::flush_logged`.
    pub bounds_log: Option<crate::bounds_log::BoundsLog>,
}

/// A sync of some devices running on its own thread while writers go on under the engine lock.
#[derive(Debug)]
pub struct InFlightSync {
    /// Leading entries of `pending_erase` whose replacements (relocated copies, trim entries) were
    /// programmed before the sync started: they may be erased once it has completed.
    pub covers: usize,
    /// The devices it syncs: their dirty bits were cleared when it started (a program since sets
    /// them again), so a failed sync sets them back.
    pub devices: Vec<usize>,
    pub handle: std::thread::JoinHandle<Result<(), FtlError>>,
}

impl Engine {
    pub fn new(
        config: FtlConfig,
        layout: Layout,
        blocks: Vec<BlockState>,
        logical_pages: u64,
    ) -> Self {
        let mut free = FreePool::new(layout.dies());
        for (g, b) in blocks.iter().enumerate() {
            if b.kind == BlockKind::Free {
                free.insert(&layout, g as u32, b.erase_count);
            }
        }
        let factory_bad = blocks.iter().filter(|b| b.kind == BlockKind::Bad).count() as u32;
        let good = layout.blocks - factory_bad;
        Self {
            open: (0..DATA_STREAMS)
                .map(|_| (0..layout.dies()).map(|_| None).collect())
                .collect(),
            pending: (0..DATA_STREAMS)
                .map(|_| PendingPage::new(layout.page_size))
                .collect(),
            cursor: [0; DATA_STREAMS],
            open_count: [0; DATA_STREAMS],
            pages_since_open: [0; DATA_STREAMS],
            max_open_per_stream: max_open_per_stream(&layout, good, logical_pages),
            rotation: layout.die_rotation(),
            trim_block: None,
            trim_buffer: Vec::new(),
            next_seq: 1,
            temperature: Temperature::new(logical_pages),
            gc: None,
            gc_credit: 0.0,
            pending_erase: Vec::new(),
            dirty_devices: vec![false; layout.devices as usize],
            checkpoint_blocks: Vec::new(),
            area: Vec::new(),
            checkpoint_due: false,
            checkpoint_job: None,
            spare_blocks: spare_blocks(&config, good),
            factory_bad_blocks: factory_bad,
            grown_bad_blocks: 0,
            read_only: None,
            counters: Counters::default(),
            erases_since_wl_check: 0,
            foreground_gc_stalls: 0,
            data_buf: vec![0; layout.page_size],
            seal_buf: vec![0; LOGICAL_PAGE_BYTES],
            sealer: None,
            relocation_buf: vec![0; layout.page_size],
            relocation_oob: vec![0; layout.oob_size],
            relocation_page: None,
            victim_lpas: Vec::new(),
            oob_buf: vec![0; layout.oob_size],
            sched: None,
            die_filter: None,
            die_free_ns: Vec::new(),
            die_page_cost_ns: 0,
            erase_ready: 0,
            sync_in_flight: None,
            bounds_log: None,
            free,
            blocks,
            config,
            layout,
        }
    }

    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub fn check_writable(&self) -> Result<(), FtlError> {
        match &self.read_only {
            Some(reason) => Err(FtlError::ReadOnly {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// One page programmed, counted in logical pages.
    pub fn count_program(&mut self) {
        self.counters.nand_pages_written += u64::from(self.layout.slots_per_page);
    }

    /// The map entry `old` no longer points where it did: its block loses a valid slot.
    pub fn release(&mut self, old: Entry) {
        if let Some(psn) = old.psn() {
            let gblock = self.layout.block_of(psn);
            let b = &mut self.blocks[gblock as usize];
            assert!(b.valid > 0, "block {gblock} valid count underflow");
            b.valid -= 1;
        }
    }

    /// A host write of one logical page, with the client's seal to keep beside it (zero when
    /// there is none; only an FTL without a sealer takes one, `Ftl` checks).
    pub fn write(
        &mut self,
        sh: &Shared,
        lpa: u32,
        data: &[u8],
        client_seal: &[u8; SEAL_BYTES],
        durable: bool,
    ) -> Result<(), FtlError> {
        self.check_writable()?;
        self.make_room(sh)?;
        let stream = if self.config.stream_separation {
            self.temperature.classify(lpa)
        } else {
            STREAM_COLD
        };
        // The version (and, sealed, the generation in the nonce) is taken once: a page placed
        // again after a failed program keeps it.
        let data_seq = self.take_seq();
        // With a scheduler, a host page goes to a die with nothing queued when one can take it,
        // so it neither waits itself nor makes reads wait behind it.
        if let Some(sched) = &self.sched {
            self.die_filter = Some(sched.die_ranks());
            self.die_free_ns = sched.busy_until_ns();
            let now_ns = sched.now_ns();
            for free_ns in &mut self.die_free_ns {
                *free_ns = (*free_ns).max(now_ns);
            }
            self.die_page_cost_ns = sched.page_program_ns();
        }
        let placed = self.place_host(sh, lpa, data_seq, data, client_seal, stream);
        self.die_filter = None;
        self.die_free_ns.clear();
        let psn = placed?;
        self.temperature.record_write(lpa);
        self.counters.host_pages_written += 1;
        let old = Entry::decode(sh.map[lpa as usize].swap(psn, Ordering::AcqRel));
        // After the map update, never before: see `Shared::generation_bound`.
        sh.raise_generation(lpa, data_seq);
        if let Some(log) = &mut self.bounds_log {
            log.push(lpa, data_seq);
        }
        self.release(old);
        self.program_full_pages(sh)?;
        if durable {
            self.make_durable(sh, lpa)?;
        }
        // With a scheduler GC runs in `background_gc`, driven by its caller; host writes only
        // fall back to foreground GC (`make_room`) when free space runs out.
        if self.sched.is_none() {
            self.pace_gc(sh)?;
        }
        // With a scheduler `background_gc` writes it, a page at a time on dies it allows: all at
        // once it would queue a block's worth of programs on one die, and that die's reads behind
        // them (bench gc, 60 s: read p99.99 38.6 ms).
        if self.sched.is_none() && (self.checkpoint_due || self.checkpoint_job.is_some()) {
            self.write_checkpoint(sh)?;
        }
        Ok(())
    }

    /// Seals (if sealing) and places one host page; returns its slot.
    fn place_host(
        &mut self,
        sh: &Shared,
        lpa: u32,
        data_seq: u64,
        data: &[u8],
        client_seal: &[u8; SEAL_BYTES],
        stream: u8,
    ) -> Result<u32, FtlError> {
        let psn = match self.sealer.clone() {
            None => {
                let facts = PageFacts {
                    lpa,
                    data_seq,
                    seal: *client_seal,
                };
                self.place(sh, stream, facts, data, false)?
            }
            Some(sealer) => {
                let mut sealed = std::mem::take(&mut self.seal_buf);
                sealed.copy_from_slice(data);
                let result = sealer
                    .seal(u64::from(lpa), data_seq, &mut sealed)
                    .map_err(FtlError::Key)
                    .and_then(|tag| {
                        let mut seal = [0; SEAL_BYTES];
                        seal[..tag.len()].copy_from_slice(&tag);
                        let facts = PageFacts {
                            lpa,
                            data_seq,
                            seal,
                        };
                        self.place(sh, stream, facts, &sealed, false)
                    });
                self.seal_buf = sealed;
                result?
            }
        };
        Ok(psn)
    }

    /// The next page `stream` programs: rotates over dies so a burst uses all of them. None when
    /// no die can take one now (the caller collects garbage and asks again).
    pub fn alloc_page(&mut self, stream: u8, relocation: bool) -> Option<PageAt> {
        let s = stream as usize;
        if stream == STREAM_WL {
            return self.alloc_wear_leveling_page();
        }
        if self.die_filter.is_some() {
            let start = self.cursor[s];
            // Idle dies first; when none can take the page, the plain rotation over all dies
            // (measured: restricting the fallback to dies not being collected concentrates
            // programs on fewer dies and lengthens the read tail).
            if let Some(at) = self.alloc_page_on(stream, relocation, Some(RANK_IDLE)) {
                // The die has a program queued now: the next page goes elsewhere first.
                if let Some(ranks) = self.die_filter.as_mut() {
                    ranks[at.die as usize] = ranks[at.die as usize].max(RANK_BUSY);
                }
                return Some(at);
            }
            // No idle die can take the page: the open block whose die frees up first. The plain
            // rotation would queue programs on a die regardless of its queue (measured: chains of
            // 3-5 host programs, or a 3 ms erase, ahead of the reads of that die made the read
            // tail).
            self.cursor[s] = start;
            if let Some(die) = self.least_loaded_die(stream)
                && let Some(at) = self.page_on_die(stream, relocation, die)
            {
                // Its program is queued there now: a burst of pages in one call spreads over
                // the dies instead of piling on one.
                let free_ns = &mut self.die_free_ns[die as usize];
                *free_ns = free_ns.saturating_add(self.die_page_cost_ns);
                return Some(at);
            }
            self.cursor[s] = start;
        }
        self.alloc_page_on(stream, relocation, None)
    }

    /// `alloc_page` over the dies of the rotation; with `max_rank`, only the dies `die_filter`
    /// ranks at most that.
    fn alloc_page_on(
        &mut self,
        stream: u8,
        relocation: bool,
        max_rank: Option<u8>,
    ) -> Option<PageAt> {
        let s = stream as usize;
        let dies = self.rotation.len();
        for _ in 0..dies {
            let die = self.rotation[self.cursor[s]];
            self.cursor[s] = (self.cursor[s] + 1) % dies;
            if let (Some(max), Some(ranks)) = (max_rank, self.die_filter.as_ref())
                && ranks[die as usize] > max
            {
                continue;
            }
            if let Some(at) = self.page_on_die(stream, relocation, die) {
                return Some(at);
            }
        }
        None
    }

    /// The next page of `stream` on `die`: its open block there, or a new one if the stream may
    /// open another and the die has a free block.
    fn page_on_die(&mut self, stream: u8, relocation: bool, die: u32) -> Option<PageAt> {
        let s = stream as usize;
        if self.open[s][die as usize].is_none() {
            if !self.may_open_block(stream) {
                return None;
            }
            let reserve = if relocation {
                self.relocation_reserve()
            } else {
                GC_RESERVE_BLOCKS
            };
            if self.free.count() <= reserve {
                return None;
            }
            // Dynamic wear leveling: a new block is the least worn free block of its die.
            let gblock = self.free.take(die, false)?;
            self.open_block(gblock, stream);
            self.open[s][die as usize] = Some(OpenBlock {
                gblock,
                entries: Vec::new(),
            });
            self.open_count[s] += 1;
            self.pages_since_open[s] = 0;
        }
        Some(self.next_page_of(stream, die))
    }

    /// `stream` may open one more block now (under its limit, and staggered so its open blocks
    /// do not all fill at once).
    fn may_open_block(&self, stream: u8) -> bool {
        let s = stream as usize;
        let stagger = self.layout.data_pages_per_block() / self.max_open_per_stream;
        self.open_count[s] < self.max_open_per_stream
            && (self.open_count[s] == 0 || self.pages_since_open[s] >= stagger)
    }

    /// Of the dies that can take a page of `stream` (an open block there, or a free block and
    /// the stream may open one), the one that finishes its queued work first (by
    /// `die_free_ns`; ties in rotation order).
    fn least_loaded_die(&self, stream: u8) -> Option<u32> {
        let s = stream as usize;
        let dies = self.rotation.len();
        let may_open = self.may_open_block(stream);
        (0..dies)
            .map(|i| self.rotation[(self.cursor[s] + i) % dies])
            .filter(|&die| {
                self.open[s][die as usize].is_some() || (may_open && self.free.has_block_on(die))
            })
            .filter_map(|die| Some((*self.die_free_ns.get(die as usize)?, die)))
            .min_by_key(|&(free_ns, _)| free_ns)
            .map(|(_, die)| die)
    }

    /// Whether `stream` has a page (open block, or a block it may open) on a die whose queued
    /// work ends by `limit_ns` (`busy_until_ns` per global die).
    pub fn page_available_by(&self, stream: u8, busy_until_ns: &[u64], limit_ns: u64) -> bool {
        let s = stream as usize;
        let may_open = self.may_open_block(stream) && self.free.count() > GC_RESERVE_BLOCKS;
        self.rotation.iter().any(|&die| {
            busy_until_ns[die as usize] <= limit_ns
                && (self.open[s][die as usize].is_some()
                    || (may_open && self.free.has_block_on(die)))
        })
    }

    /// Whether `alloc_page` would find `stream` a page on a die `ranks` marks idle, without
    /// taking one (background GC moves a page only if its program can go to an idle die).
    pub fn idle_page_available(&self, stream: u8, ranks: &[u8]) -> bool {
        let s = stream as usize;
        if stream == STREAM_WL {
            // One open block, on whichever die the most worn free block was: its die must be
            // idle. Before it is open the die is unknown; the first page may land anywhere.
            return match self.open[s].iter().position(Option::is_some) {
                Some(die) => ranks[die] == RANK_IDLE,
                None => true,
            };
        }
        let stagger = self.layout.data_pages_per_block() / self.max_open_per_stream;
        let may_open = self.open_count[s] < self.max_open_per_stream
            && (self.open_count[s] == 0 || self.pages_since_open[s] >= stagger)
            && self.free.count() > 0;
        self.rotation.iter().any(|&die| {
            ranks[die as usize] == RANK_IDLE
                && (self.open[s][die as usize].is_some()
                    || (may_open && self.free.has_block_on(die)))
        })
    }

    /// Where the next page of `stream`'s open block on `die` goes.
    fn next_page_of(&self, stream: u8, die: u32) -> PageAt {
        let open = self.open[stream as usize][die as usize]
            .as_ref()
            .expect("open block");
        let slots = self.layout.slots_per_page as usize;
        assert_eq!(
            open.entries.len() % slots,
            0,
            "a page of the block is half placed"
        );
        PageAt {
            die,
            gblock: open.gblock,
            page: (open.entries.len() / slots) as u32,
        }
    }

    /// Free blocks relocation (GC, wear leveling) leaves alone. It may take the GC reserve, but
    /// not the last free block while the trim log has no open block: the barrier before the
    /// victims' erase writes the trim buffer, and with no block for it the FTL went read-only
    /// with blocks waiting to be erased (found by the model proptest).
    fn relocation_reserve(&self) -> u32 {
        u32::from(self.trim_block.is_none())
    }

    /// Wear leveling moves cold data into the most worn free block of the whole FTL, where it
    /// will rest; one such block is open at a time.
    fn alloc_wear_leveling_page(&mut self) -> Option<PageAt> {
        let s = STREAM_WL as usize;
        if let Some(die) = self.open[s].iter().position(Option::is_some) {
            return Some(self.next_page_of(STREAM_WL, die as u32));
        }
        if self.free.count() <= self.relocation_reserve() {
            return None;
        }
        let gblock = self.free.take_most_worn()?;
        self.open_block(gblock, STREAM_WL);
        let die = self.layout.die_of(gblock);
        self.open[s][die as usize] = Some(OpenBlock {
            gblock,
            entries: Vec::new(),
        });
        self.open_count[s] += 1;
        Some(self.next_page_of(STREAM_WL, die))
    }

    pub fn open_block(&mut self, gblock: u32, stream: u8) {
        let b = &mut self.blocks[gblock as usize];
        assert_eq!(b.kind, BlockKind::Free);
        assert_eq!(b.written, 0);
        b.kind = if stream == STREAM_TRIM {
            BlockKind::TrimOpen
        } else {
            BlockKind::Open
        };
        b.stream = stream;
        b.valid = 0;
        b.retire = false;
    }

    pub fn close_with_summary(
        &mut self,
        sh: &Shared,
        stream: u8,
        die: u32,
    ) -> Result<(), FtlError> {
        let open = self.open[stream as usize][die as usize]
            .take()
            .expect("open block");
        self.open_count[stream as usize] -= 1;
        summary::encode(&open.entries, &mut self.data_buf);
        let seq = self.take_seq();
        let record = PageRecord {
            kind: PageKind::Summary,
            stream,
            lpa: 0,
            seq,
            data_seq: seq,
            seal: [0; SEAL_BYTES],
        };
        record.encode(&self.data_buf, &mut self.oob_buf);
        let (device, block) = self.layout.split_block(open.gblock);
        let page = self.layout.data_pages_per_block();
        self.dirty_devices[device] = true;
        let result = sh.devices[device].program_page(block, page, &self.data_buf, &self.oob_buf);
        let b = &mut self.blocks[open.gblock as usize];
        b.kind = BlockKind::Closed;
        b.close_seq = seq;
        b.written += 1;
        match result {
            Ok(()) => {
                self.count_program();
                Ok(())
            }
            // The data pages are fine; recovery scans them without a summary. Retire the block.
            Err(NandError::ProgramFailed { .. }) => {
                b.retire = true;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A program failed in an open block: close it early and retire it once GC has emptied it.
    pub fn retire_open(&mut self, stream: u8, die: u32, seq: u64) {
        let open = self.open[stream as usize][die as usize]
            .take()
            .expect("open block");
        self.open_count[stream as usize] -= 1;
        let b = &mut self.blocks[open.gblock as usize];
        b.kind = BlockKind::Closed;
        b.written += 1;
        b.close_seq = seq;
        b.retire = true;
        tracing::warn!(block = open.gblock, "program failed; block will be retired");
    }

    pub fn out_of_space(&mut self, what: &str) -> FtlError {
        let reason = format!("{what}: free blocks exhausted and nothing left to collect");
        self.read_only = Some(reason.clone());
        FtlError::ReadOnly { reason }
    }

    /// Makes everything written so far durable: trim buffer to NAND, then a sync of every device
    /// that took a program since the last barrier. Must run before any block is erased, so that a
    /// block is never erased while what replaced its pages could still be lost.
    pub fn barrier(&mut self, sh: &Shared) -> Result<(), FtlError> {
        for stream in 0..DATA_STREAMS as u8 {
            self.program_pending(sh, stream, true)?;
        }
        self.flush_trims(sh)?;
        // Programs a background sync covers are no longer marked dirty, and it may not have
        // completed: sync its devices again (the new sync covers every program that returned) and
        // collect its result too, since a failed fdatasync may have dropped what it was to write.
        let in_flight = self.sync_in_flight.take();
        if let Some(f) = &in_flight {
            for &d in &f.devices {
                self.dirty_devices[d] = true;
            }
        }
        let dirty: Vec<usize> = (0..self.dirty_devices.len())
            .filter(|&d| self.dirty_devices[d])
            .collect();
        let mut result = sync_devices(sh, &dirty);
        if let Some(f) = in_flight {
            result = result.and(join_sync(f.handle));
        }
        result?;
        for d in dirty {
            self.dirty_devices[d] = false;
        }
        if self.background_syncs(sh) {
            // Everything collected so far is covered.
            self.erase_ready = self.pending_erase.len();
        }
        Ok(())
    }

    /// Whether erase barriers sync in the background (`gc.rs`, `process_erases`): only when a
    /// sync waits for a disk and no scheduler runs GC. Simulated devices keep the synchronous
    /// barrier, so a simulation stays deterministic.
    pub fn background_syncs(&self, sh: &Shared) -> bool {
        self.sched.is_none() && sh.devices.iter().any(|d| d.sync_is_slow())
    }
}

/// The result of a sync thread; a panic there goes on in the caller.
pub fn join_sync(handle: std::thread::JoinHandle<Result<(), FtlError>>) -> Result<(), FtlError> {
    handle
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Syncs `devices` all at once, from a thread of their own (a background sync).
pub fn sync_owned(devices: &[Arc<dyn Nand>]) -> Result<(), FtlError> {
    let Some((last, others)) = devices.split_last() else {
        return Ok(());
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = others.iter().map(|d| s.spawn(move || d.sync())).collect();
        let mut result = last.sync();
        for h in handles {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            result = result.and(r);
        }
        result
    })?;
    Ok(())
}

/// Syncs `devices`: one after another when syncs are memory operations (deterministic order for
/// simulation), all at once when they wait for a disk, so a barrier over N device files costs one
/// `fdatasync` latency (about 3 ms on this VM's disk) instead of N.
pub fn sync_devices(sh: &Shared, devices: &[usize]) -> Result<(), FtlError> {
    let slow = devices.len() > 1 && devices.iter().any(|&d| sh.devices[d].sync_is_slow());
    if !slow {
        for &d in devices {
            sh.devices[d].sync()?;
        }
        return Ok(());
    }
    let (last, others) = devices.split_last().expect("more than one device");
    std::thread::scope(|s| {
        let handles: Vec<_> = others
            .iter()
            .map(|&d| s.spawn(move || sh.devices[d].sync()))
            .collect();
        let mut result = sh.devices[*last].sync();
        for h in handles {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            result = result.and(r);
        }
        result
    })?;
    Ok(())
}

/// Spare blocks kept back from the exported capacity to replace blocks that go bad.
pub fn spare_blocks(config: &FtlConfig, good_blocks: u32) -> u32 {
    ((f64::from(good_blocks) * config.spare_ratio).ceil() as u32).max(1)
}

/// Open blocks a stream may hold at once: all dies if a quarter of the over-provisioned blocks
/// covers every stream's open blocks, else fewer (at least one).
pub fn max_open_per_stream(layout: &Layout, good_blocks: u32, logical_pages: u64) -> u32 {
    let data_slots = u64::from(good_blocks) * u64::from(layout.data_slots_per_block());
    let op_blocks =
        data_slots.saturating_sub(logical_pages) / u64::from(layout.data_slots_per_block());
    ((op_blocks / (4 * PARALLEL_STREAMS)) as u32).clamp(1, layout.dies())
}

/// Exported logical pages for `good_blocks` good blocks outside the checkpoint area, after spares
/// and over-provisioning. On small devices the blocks that never hold host data (an open block per
/// stream, the trim log, the GC reserve, one victim's worth) cap it further.
pub fn logical_pages_for(config: &FtlConfig, layout: &Layout, good_blocks: u32) -> u64 {
    let spare = spare_blocks(config, good_blocks);
    let usable = good_blocks.saturating_sub(spare);
    let data_slots = u64::from(layout.data_slots_per_block());
    let physical = u64::from(usable) * data_slots;
    let by_ratio = (physical as f64 / (1.0 + config.op_ratio)).floor() as u64;
    let overhead = DATA_STREAMS as u64 + 1 + u64::from(GC_RESERVE_BLOCKS) + 1;
    let by_overhead = u64::from(usable).saturating_sub(overhead) * data_slots;
    by_ratio.min(by_overhead)
}
