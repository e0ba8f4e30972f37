//! `TimedNand`: any `Nand` with NAND latencies. The inner device does the data work and enforces
//! every rule; this wrapper charges each operation that reached the media to a timing model at
//! the clock's current time, records its latency, and makes the caller wait until its end.

use std::sync::Arc;

use parking_lot::Mutex;

use super::clock::Clock;
use super::latency::LatencyStats;
use super::model::{OpTiming, TimingModel};
use super::{TimingConfig, TimingError};
use crate::nand::{BlockInfo, Geometry, Nand, NandError, NandStats, ReadInfo};

#[derive(Debug)]
pub struct TimedNand {
    inner: Arc<dyn Nand>,
    model: Arc<Mutex<TimingModel>>,
    clock: Arc<dyn Clock>,
    latency: Mutex<LatencyStats>,
}

impl TimedNand {
    /// Wraps `inner` with a fresh model of its dies and channels, timed by `clock` (shared by all
    /// the devices of one run, so their times compare).
    pub fn new(
        inner: Arc<dyn Nand>,
        config: &TimingConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TimingError> {
        let model = TimingModel::new(config, inner.geometry())?;
        Ok(Self {
            inner,
            model: Arc::new(Mutex::new(model)),
            clock,
            latency: Mutex::new(LatencyStats::default()),
        })
    }

    /// The device's timing model, for schedulers that look at die states (or charge work).
    pub fn model(&self) -> &Arc<Mutex<TimingModel>> {
        &self.model
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Latency of every operation served so far, by kind.
    pub fn latency(&self) -> LatencyStats {
        *self.latency.lock()
    }

    fn die_of_block(&self, block: u32) -> u32 {
        self.inner.geometry().die_of_block(block)
    }

    /// Charges one operation to the model at the current time, records it, and waits for its end.
    fn charge(&self, charge: impl FnOnce(&mut TimingModel, u64) -> OpTiming) {
        let at_ns = self.clock.now_ns();
        let timing = charge(&mut self.model.lock(), at_ns);
        self.latency.lock().record(&timing);
        self.clock.wait_until(timing.end_ns);
    }

    fn charge_read<T>(&self, block: u32, bytes: usize, result: &Result<T, NandError>) {
        // An erased or uncorrectable page was still sensed and transferred.
        let sensed = matches!(
            result,
            Ok(_) | Err(NandError::ErasedPage { .. } | NandError::Uncorrectable { .. })
        );
        if sensed {
            let die = self.die_of_block(block);
            self.charge(|m, at| m.read(at, die, bytes as u64));
        }
    }
}

impl Nand for TimedNand {
    fn geometry(&self) -> &Geometry {
        self.inner.geometry()
    }

    fn program_page(
        &self,
        block: u32,
        page: u32,
        data: &[u8],
        oob: &[u8],
    ) -> Result<(), NandError> {
        let result = self.inner.program_page(block, page, data, oob);
        if matches!(result, Ok(()) | Err(NandError::ProgramFailed { .. })) {
            let die = self.die_of_block(block);
            let bytes = (data.len() + oob.len()) as u64;
            self.charge(|m, at| m.program(at, die, bytes));
        }
        result
    }

    fn read_page(
        &self,
        block: u32,
        page: u32,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        let bytes = data.len() + oob.len();
        let result = self.inner.read_page(block, page, data, oob);
        self.charge_read(block, bytes, &result);
        result
    }

    fn read_range(
        &self,
        block: u32,
        page: u32,
        offset: usize,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        // The page is sensed whole; only the range and the OOB cross the bus.
        let bytes = data.len() + oob.len();
        let result = self.inner.read_range(block, page, offset, data, oob);
        self.charge_read(block, bytes, &result);
        result
    }

    fn read_oob(&self, block: u32, page: u32, oob: &mut [u8]) -> Result<ReadInfo, NandError> {
        let bytes = oob.len();
        let result = self.inner.read_oob(block, page, oob);
        self.charge_read(block, bytes, &result);
        result
    }

    fn erase_block(&self, block: u32) -> Result<(), NandError> {
        let result = self.inner.erase_block(block);
        if matches!(result, Ok(()) | Err(NandError::EraseFailed { .. })) {
            let die = self.die_of_block(block);
            self.charge(|m, at| m.erase(at, die));
        }
        result
    }

    fn mark_bad(&self, block: u32) -> Result<(), NandError> {
        self.inner.mark_bad(block)
    }

    fn block_info(&self, block: u32) -> Result<BlockInfo, NandError> {
        self.inner.block_info(block)
    }

    fn sync(&self) -> Result<(), NandError> {
        self.inner.sync()
    }

    fn sync_is_slow(&self) -> bool {
        self.inner.sync_is_slow()
    }

    fn prefetch_page(&self, block: u32, page: u32) {
        self.inner.prefetch_page(block, page);
    }

    fn stats(&self) -> NandStats {
        self.inner.stats()
    }
}
