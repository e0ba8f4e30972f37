//! A NAND device: geometry, the rules of NAND, wear, faults and power loss, over any `PageStore`.
//!
//! Each die has its own lock (a die does one operation at a time), so operations on different dies
//! of one device run in parallel and nothing is shared by all of them but counters.
//!
//! Durability: a program is applied at once but is *pending* until the next `sync()`. A power cut
//! (`power_cut`) keeps, in each block, a random prefix of its pending pages; the first page it drops
//! may be left torn (garbage, but programmed). An erase is durable when it returns, and it is not a
//! barrier: an FTL that erases a block before the copies it made elsewhere are synced loses data, as
//! it would on real hardware.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::faults::mix;
use super::store::{BlockHealth, BlockMeta, PageStore};
use super::{BlockInfo, FaultConfig, Geometry, Nand, NandError, NandStats, PowerRail, ReadInfo};

#[derive(Debug)]
struct BlockState {
    meta: BlockMeta,
    /// Pages `0..durable_pages` survive a power cut.
    durable_pages: u32,
}

#[derive(Debug)]
struct Die {
    first_block: u32,
    blocks: Vec<BlockState>,
    /// Blocks with pending (not yet durable) pages, so sync and power cut visit only those.
    dirty_blocks: Vec<u32>,
    rng: ChaCha8Rng,
}

impl Die {
    fn block(&mut self, block: u32) -> &mut BlockState {
        let index = (block - self.first_block) as usize;
        &mut self.blocks[index]
    }
}

#[derive(Debug, Default)]
struct Counters {
    pages_read: AtomicU64,
    oob_reads: AtomicU64,
    pages_programmed: AtomicU64,
    blocks_erased: AtomicU64,
    bits_corrected: AtomicU64,
    uncorrectable_reads: AtomicU64,
    program_failures: AtomicU64,
    erase_failures: AtomicU64,
    syncs: AtomicU64,
}

#[derive(Debug)]
pub struct Device<S: PageStore> {
    geometry: Geometry,
    faults: FaultConfig,
    store: S,
    rail: Option<Arc<PowerRail>>,
    dies: Vec<Mutex<Die>>,
    counters: Counters,
}

impl<S: PageStore> Device<S> {
    /// Builds a device over `store` whose blocks are described by `metas` (one per block, in order).
    pub fn from_parts(
        geometry: Geometry,
        faults: FaultConfig,
        store: S,
        metas: Vec<BlockMeta>,
        rail: Option<Arc<PowerRail>>,
    ) -> Result<Self, NandError> {
        geometry.validate()?;
        assert_eq!(
            metas.len(),
            geometry.blocks() as usize,
            "one meta per block"
        );
        let per_die = geometry.blocks_per_die() as usize;
        let mut dies = Vec::with_capacity(geometry.dies() as usize);
        let mut metas = metas.into_iter();
        for die in 0..geometry.dies() {
            let blocks: Vec<BlockState> = metas
                .by_ref()
                .take(per_die)
                .map(|meta| BlockState {
                    meta,
                    durable_pages: meta.programmed_pages,
                })
                .collect();
            let rng = ChaCha8Rng::seed_from_u64(mix(faults.seed ^ u64::from(die)));
            dies.push(Mutex::new(Die {
                first_block: die * per_die as u32,
                blocks,
                dirty_blocks: Vec::new(),
                rng,
            }));
        }
        Ok(Self {
            geometry,
            faults,
            store,
            rail,
            dies,
            counters: Counters::default(),
        })
    }

    /// Block metadata of a new device: factory bad blocks placed by the fault seed.
    pub fn fresh_metas(geometry: &Geometry, faults: &FaultConfig) -> Vec<BlockMeta> {
        (0..geometry.blocks())
            .map(|b| {
                let health = if faults.is_factory_bad(b) {
                    BlockHealth::FactoryBad
                } else {
                    BlockHealth::Good
                };
                BlockMeta::fresh(health)
            })
            .collect()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn faults(&self) -> &FaultConfig {
        &self.faults
    }

    fn die_of(&self, block: u32) -> &Mutex<Die> {
        &self.dies[self.geometry.die_of_block(block) as usize]
    }

    fn power_lost_now(&self) -> bool {
        self.rail.as_ref().is_some_and(|r| r.tick())
    }

    fn power_is_lost(&self) -> bool {
        self.rail.as_ref().is_some_and(|r| r.is_lost())
    }

    fn check_buffers(&self, data: Option<usize>, oob: usize) -> Result<(), NandError> {
        if let Some(got) = data {
            let expected = self.geometry.page_size as usize;
            if got != expected {
                return Err(NandError::BufferSize {
                    what: "page data",
                    expected,
                    got,
                });
            }
        }
        let expected = self.geometry.oob_size as usize;
        if oob != expected {
            return Err(NandError::BufferSize {
                what: "page OOB",
                expected,
                got: oob,
            });
        }
        Ok(())
    }

    /// Drops what was not durable, as a power failure would: in each block a random prefix of the
    /// pending pages survives and the first lost page may be torn. Afterwards everything is durable.
    pub fn power_cut(&self, seed: u64) -> Result<(), NandError> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ self.faults.seed));
        for die in &self.dies {
            let mut die = die.lock();
            let dirty = std::mem::take(&mut die.dirty_blocks);
            for block in dirty {
                let state = die.block(block);
                let (durable, programmed) = (state.durable_pages, state.meta.programmed_pages);
                if durable >= programmed {
                    continue;
                }
                let keep = rng.random_range(durable..=programmed);
                if keep == programmed {
                    state.durable_pages = programmed;
                    continue;
                }
                let torn = rng.random_bool(self.faults.torn_write_prob.clamp(0.0, 1.0));
                let erased_from = if torn { keep + 1 } else { keep };
                if torn {
                    self.tear_page(block, keep, &mut rng)?;
                }
                self.store.erase_pages(block, erased_from)?;
                let state = die.block(block);
                state.meta.programmed_pages = erased_from;
                state.durable_pages = erased_from;
                let meta = state.meta;
                self.store.write_block_meta(block, &meta)?;
            }
        }
        self.store.sync()
    }

    /// A page whose program was interrupted: either cut short (the tail of data and the OOB still
    /// erased) or complete with bits flipped all over it.
    fn tear_page(&self, block: u32, page: u32, rng: &mut ChaCha8Rng) -> Result<(), NandError> {
        let mut data = vec![0u8; self.geometry.page_size as usize];
        let mut oob = vec![0u8; self.geometry.oob_size as usize];
        self.store.read_page(block, page, 0, &mut data, &mut oob)?;
        if rng.random_bool(0.5) {
            let cut = rng.random_range(0..data.len());
            data[cut..].fill(0xff);
            oob.fill(0xff);
        } else {
            for _ in 0..64 {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            let i = rng.random_range(0..oob.len());
            oob[i] ^= 1 << rng.random_range(0..8);
        }
        self.store.write_page(block, page, &data, &oob)
    }

    fn garbage_page(&self, block: u32, page: u32, rng: &mut ChaCha8Rng) -> Result<(), NandError> {
        let mut data = vec![0u8; self.geometry.page_size as usize];
        let mut oob = vec![0u8; self.geometry.oob_size as usize];
        rng.fill(&mut data[..]);
        rng.fill(&mut oob[..]);
        self.store.write_page(block, page, &data, &oob)
    }

    /// Common checks for reads; returns the block's erase count for the bit-error draw.
    fn check_readable(&self, die: &mut Die, block: u32, page: u32) -> Result<u32, NandError> {
        if self.power_is_lost() {
            return Err(NandError::PowerLost);
        }
        let state = die.block(block);
        if state.meta.health == BlockHealth::FactoryBad {
            return Err(NandError::BadBlock { block });
        }
        if page >= state.meta.programmed_pages {
            return Err(NandError::ErasedPage { block, page });
        }
        Ok(state.meta.erase_count)
    }
}

impl<S: PageStore> Nand for Device<S> {
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn program_page(
        &self,
        block: u32,
        page: u32,
        data: &[u8],
        oob: &[u8],
    ) -> Result<(), NandError> {
        self.geometry.check(block, Some(page))?;
        self.check_buffers(Some(data.len()), oob.len())?;
        let mut die = self.die_of(block).lock();
        if self.power_is_lost() {
            // Only the program that loses the power may tear its page; later ones do nothing.
            return Err(NandError::PowerLost);
        }
        let state = die.block(block);
        if state.meta.health != BlockHealth::Good {
            return Err(NandError::BadBlock { block });
        }
        let next = state.meta.programmed_pages;
        if page < next {
            return Err(NandError::NotErased { block, page });
        }
        if page > next {
            return Err(NandError::OutOfOrder {
                block,
                page,
                expected: next,
            });
        }
        let worn = state.meta.erase_count >= self.faults.endurance_cycles;
        if self.power_lost_now() {
            // Power failed during this program: it may leave a torn page behind.
            let torn = die
                .rng
                .random_bool(self.faults.torn_write_prob.clamp(0.0, 1.0));
            if torn {
                self.store.write_page(block, page, data, oob)?;
                let mut rng = ChaCha8Rng::seed_from_u64(die.rng.random());
                self.tear_page(block, page, &mut rng)?;
                self.mark_programmed(&mut die, block, page)?;
            }
            return Err(NandError::PowerLost);
        }
        let fail = worn
            || die
                .rng
                .random_bool(self.faults.program_fail_prob.clamp(0.0, 1.0));
        if fail {
            let mut rng = ChaCha8Rng::seed_from_u64(die.rng.random());
            self.garbage_page(block, page, &mut rng)?;
            self.mark_programmed(&mut die, block, page)?;
            self.counters
                .program_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(NandError::ProgramFailed { block, page });
        }
        self.store.write_page(block, page, data, oob)?;
        self.mark_programmed(&mut die, block, page)?;
        self.counters
            .pages_programmed
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_page(
        &self,
        block: u32,
        page: u32,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        self.check_buffers(Some(data.len()), oob.len())?;
        self.read_range(block, page, 0, data, oob)
    }

    fn read_range(
        &self,
        block: u32,
        page: u32,
        offset: usize,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        self.geometry.check(block, Some(page))?;
        self.check_buffers(None, oob.len())?;
        let page_size = self.geometry.page_size as usize;
        if data.is_empty()
            || offset
                .checked_add(data.len())
                .is_none_or(|end| end > page_size)
        {
            return Err(NandError::Range {
                offset,
                len: data.len(),
                page_size,
            });
        }
        let mut die = self.die_of(block).lock();
        let erase_count = self.check_readable(&mut die, block, page)?;
        self.counters.pages_read.fetch_add(1, Ordering::Relaxed);
        // ECC works per codeword: only the bits transferred can show errors.
        let bits_read = data.len() as u32 * 8;
        let bits = self
            .faults
            .draw_bit_errors(&mut die.rng, bits_read, erase_count);
        let forced = self.faults.read_uncorrectable_prob > 0.0
            && die
                .rng
                .random_bool(self.faults.read_uncorrectable_prob.clamp(0.0, 1.0));
        if forced || bits > self.faults.ecc_correctable_bits {
            self.counters
                .uncorrectable_reads
                .fetch_add(1, Ordering::Relaxed);
            return Err(NandError::Uncorrectable { block, page, bits });
        }
        self.store.read_page(block, page, offset, data, oob)?;
        self.counters
            .bits_corrected
            .fetch_add(u64::from(bits), Ordering::Relaxed);
        Ok(ReadInfo {
            corrected_bits: bits,
        })
    }

    fn read_oob(&self, block: u32, page: u32, oob: &mut [u8]) -> Result<ReadInfo, NandError> {
        self.geometry.check(block, Some(page))?;
        self.check_buffers(None, oob.len())?;
        let mut die = self.die_of(block).lock();
        self.check_readable(&mut die, block, page)?;
        self.counters.oob_reads.fetch_add(1, Ordering::Relaxed);
        self.store.read_oob(block, page, oob)?;
        Ok(ReadInfo { corrected_bits: 0 })
    }

    fn erase_block(&self, block: u32) -> Result<(), NandError> {
        self.geometry.check(block, None)?;
        let mut die = self.die_of(block).lock();
        if self.power_is_lost() {
            return Err(NandError::PowerLost);
        }
        let state = die.block(block);
        if state.meta.health != BlockHealth::Good {
            return Err(NandError::BadBlock { block });
        }
        let worn = state.meta.erase_count >= self.faults.endurance_cycles;
        if self.power_lost_now() {
            return Err(NandError::PowerLost);
        }
        if worn
            || die
                .rng
                .random_bool(self.faults.erase_fail_prob.clamp(0.0, 1.0))
        {
            self.counters.erase_failures.fetch_add(1, Ordering::Relaxed);
            return Err(NandError::EraseFailed { block });
        }
        self.store.erase_pages(block, 0)?;
        let state = die.block(block);
        state.meta.erase_count += 1;
        state.meta.programmed_pages = 0;
        state.durable_pages = 0;
        let meta = state.meta;
        self.store.write_block_meta(block, &meta)?;
        self.counters.blocks_erased.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn mark_bad(&self, block: u32) -> Result<(), NandError> {
        self.geometry.check(block, None)?;
        let mut die = self.die_of(block).lock();
        if self.power_lost_now() {
            return Err(NandError::PowerLost);
        }
        let state = die.block(block);
        if state.meta.health == BlockHealth::Good {
            state.meta.health = BlockHealth::GrownBad;
        }
        let meta = state.meta;
        self.store.write_block_meta(block, &meta)
    }

    fn block_info(&self, block: u32) -> Result<BlockInfo, NandError> {
        self.geometry.check(block, None)?;
        let mut die = self.die_of(block).lock();
        let meta = die.block(block).meta;
        Ok(BlockInfo {
            erase_count: meta.erase_count,
            health: meta.health,
            programmed_pages: meta.programmed_pages,
        })
    }

    fn sync(&self) -> Result<(), NandError> {
        if self.power_lost_now() {
            return Err(NandError::PowerLost);
        }
        // The store's sync covers the pages programmed before it starts, not those programmed
        // while it runs (the FTL syncs from a thread of its own while writers go on): those stay
        // pending, so a power cut may still drop them.
        let covered: Vec<Vec<(u32, u32, u32)>> = self
            .dies
            .iter()
            .map(|die| {
                let mut die = die.lock();
                let dirty = die.dirty_blocks.clone();
                dirty
                    .into_iter()
                    .map(|block| {
                        let meta = die.block(block).meta;
                        (block, meta.programmed_pages, meta.erase_count)
                    })
                    .collect()
            })
            .collect();
        self.store.sync()?;
        for (die, covered) in self.dies.iter().zip(covered) {
            let mut die = die.lock();
            for (block, programmed_pages, erase_count) in covered {
                let state = die.block(block);
                // An erase since the snapshot dropped what it covered.
                if state.meta.erase_count == erase_count {
                    state.durable_pages = state
                        .durable_pages
                        .max(programmed_pages.min(state.meta.programmed_pages));
                }
            }
            // Keeps the order (a power cut draws its random numbers in it) and drops duplicates.
            let mut dirty = std::mem::take(&mut die.dirty_blocks);
            let mut seen = std::collections::HashSet::new();
            dirty.retain(|&block| {
                let state = die.block(block);
                state.durable_pages < state.meta.programmed_pages && seen.insert(block)
            });
            die.dirty_blocks = dirty;
        }
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn sync_is_slow(&self) -> bool {
        self.store.sync_is_slow()
    }

    fn prefetch_page(&self, block: u32, page: u32) {
        if self.geometry.check(block, Some(page)).is_ok() {
            self.store.prefetch_page(block, page);
        }
    }

    fn stats(&self) -> NandStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NandStats {
            pages_read: get(&c.pages_read),
            oob_reads: get(&c.oob_reads),
            pages_programmed: get(&c.pages_programmed),
            blocks_erased: get(&c.blocks_erased),
            bits_corrected: get(&c.bits_corrected),
            uncorrectable_reads: get(&c.uncorrectable_reads),
            program_failures: get(&c.program_failures),
            erase_failures: get(&c.erase_failures),
            syncs: get(&c.syncs),
        }
    }
}

impl<S: PageStore> Device<S> {
    fn mark_programmed(&self, die: &mut Die, block: u32, page: u32) -> Result<(), NandError> {
        let state = die.block(block);
        let was_clean = state.durable_pages == state.meta.programmed_pages;
        state.meta.programmed_pages = page + 1;
        let meta = state.meta;
        if was_clean {
            die.dirty_blocks.push(block);
        }
        self.store.write_block_meta(block, &meta)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::nand::mem::MemStore;

    /// A RAM store whose sync waits until the test lets it finish, so a program can race it.
    #[derive(Debug)]
    struct GatedStore {
        inner: MemStore,
        entered: Mutex<mpsc::Sender<()>>,
        release: Mutex<mpsc::Receiver<()>>,
    }

    impl PageStore for GatedStore {
        fn write_page(&self, b: u32, p: u32, data: &[u8], oob: &[u8]) -> Result<(), NandError> {
            self.inner.write_page(b, p, data, oob)
        }
        fn read_page(
            &self,
            b: u32,
            p: u32,
            offset: usize,
            data: &mut [u8],
            oob: &mut [u8],
        ) -> Result<(), NandError> {
            self.inner.read_page(b, p, offset, data, oob)
        }
        fn read_oob(&self, b: u32, p: u32, oob: &mut [u8]) -> Result<(), NandError> {
            self.inner.read_oob(b, p, oob)
        }
        fn erase_pages(&self, b: u32, from_page: u32) -> Result<(), NandError> {
            self.inner.erase_pages(b, from_page)
        }
        fn write_block_meta(&self, b: u32, meta: &BlockMeta) -> Result<(), NandError> {
            self.inner.write_block_meta(b, meta)
        }
        fn sync(&self) -> Result<(), NandError> {
            self.entered.lock().send(()).unwrap();
            self.release.lock().recv().unwrap();
            self.inner.sync()
        }
    }

    /// A page programmed while a sync runs is not covered by it: it stays pending until the next.
    #[test]
    fn a_program_racing_a_sync_stays_pending() {
        let geometry = Geometry {
            channels: 1,
            dies_per_channel: 1,
            planes_per_die: 1,
            blocks_per_plane: 4,
            pages_per_block: 4,
            page_size: 4096,
            oob_size: 64,
        };
        let faults = FaultConfig::none();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let store = GatedStore {
            inner: MemStore::new(geometry),
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        };
        let metas = Device::<MemStore>::fresh_metas(&geometry, &faults);
        let device = Device::from_parts(geometry, faults, store, metas, None).unwrap();
        let block = (0..4)
            .find(|&b| device.block_info(b).unwrap().health == BlockHealth::Good)
            .unwrap();
        let (data, oob) = (vec![7u8; 4096], vec![1u8; 64]);
        device.program_page(block, 0, &data, &oob).unwrap();
        let durable = |device: &Device<GatedStore>| {
            let mut die = device.dies[0].lock();
            die.block(block).durable_pages
        };
        std::thread::scope(|s| {
            let syncing = s.spawn(|| device.sync());
            entered_rx.recv().unwrap();
            device.program_page(block, 1, &data, &oob).unwrap();
            release_tx.send(()).unwrap();
            syncing.join().unwrap().unwrap();
        });
        assert_eq!(durable(&device), 1, "the racing program counted as durable");
        assert_eq!(device.dies[0].lock().dirty_blocks, vec![block]);
        let syncing = std::thread::spawn(move || {
            entered_rx.recv().unwrap();
            release_tx.send(()).unwrap();
        });
        device.sync().unwrap();
        syncing.join().unwrap();
        assert_eq!(durable(&device), 2);
        assert!(device.dies[0].lock().dirty_blocks.is_empty());
    }
}
