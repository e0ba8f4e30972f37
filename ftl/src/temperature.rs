//! Temperature of logical pages: a page overwritten soon after its last write is hot. The estimate
//! is the age of the version being replaced, the best cheap predictor of the new version's life.

use crate::engine::{STREAM_COLD, STREAM_HOT};

#[derive(Debug)]
pub struct Temperature {
    /// Host write clock (pages written) at each page's last write; 0 = never written.
    last_write: Vec<u32>,
    clock: u32,
    /// Overwrites younger than this many host writes are hot.
    hot_window: u32,
}

impl Temperature {
    pub fn new(logical_pages: u64) -> Self {
        // A quarter of the logical space: measured best on zipf (a longer window sends too much
        // lukewarm data to the hot stream there) while it still catches a 90/10 hot set.
        let hot_window = (logical_pages / 4).clamp(1, u64::from(u32::MAX / 4)) as u32;
        Self {
            last_write: vec![0; logical_pages as usize],
            clock: 1,
            hot_window,
        }
    }

    pub fn classify(&self, lpa: u32) -> u8 {
        let last = self.last_write[lpa as usize];
        if last != 0 && self.clock.wrapping_sub(last) < self.hot_window {
            STREAM_HOT
        } else {
            STREAM_COLD
        }
    }

    pub fn record_write(&mut self, lpa: u32) {
        self.clock = self.clock.wrapping_add(1).max(1);
        self.last_write[lpa as usize] = self.clock;
    }
}
