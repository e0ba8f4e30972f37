//! The generation bounds a sealed FTL raised since the last flush, as (logical page, generation)
//! pairs, for a caller that journals them durably at each flush (`Ftl::flush_logged`): the table
//! saved at a clean close covers a restart, the journal covers a crash (docs/keys-design.md).
//!
//! Bounded: past `BOUNDS_LOG_MAX` pairs between two flushes the log stops collecting and says it
//! is incomplete, and the flush hands the caller every bound instead (a whole table).

/// The most pairs kept between two flushes (12 bytes each: 12 MiB).
pub const BOUNDS_LOG_MAX: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct BoundsLog {
    pairs: Vec<(u32, u64)>,
    overflowed: bool,
}

/// What a flush made durable, for the journal.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BoundsDrain {
    /// Each logical page raised since the last flush once, with its highest generation, in page
    /// order.
    pub pairs: Vec<(u32, u64)>,
    /// Every page's bound as of the flush (a whole table; it covers `pairs`), when the caller
    /// asked for it or pairs were dropped (more than `BOUNDS_LOG_MAX`, or a failed flush).
    pub all: Option<Vec<u64>>,
}

impl BoundsLog {
    pub fn push(&mut self, lpa: u32, generation: u64) {
        if self.pairs.len() < BOUNDS_LOG_MAX {
            self.pairs.push((lpa, generation));
        } else {
            self.overflowed = true;
        }
    }

    /// Marks the log incomplete (pairs taken for a flush that then failed are lost to it).
    pub fn mark_incomplete(&mut self) {
        self.overflowed = true;
    }

    /// The pairs since the last drain (each page once, its highest generation, in page order),
    /// and whether none was dropped.
    pub fn drain(&mut self) -> (Vec<(u32, u64)>, bool) {
        let mut pairs = std::mem::take(&mut self.pairs);
        let complete = !std::mem::replace(&mut self.overflowed, false);
        // Generations of one page only rise, but sort by both anyway: the last of each run is
        // its highest.
        pairs.sort_unstable();
        let mut out: Vec<(u32, u64)> = Vec::with_capacity(pairs.len());
        for (lpa, generation) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == lpa => last.1 = last.1.max(generation),
                _ => out.push((lpa, generation)),
            }
        }
        (out, complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_keeps_each_pages_highest_generation_and_says_when_pairs_were_dropped() {
        let mut log = BoundsLog::default();
        log.push(7, 3);
        log.push(2, 9);
        log.push(7, 11);
        assert_eq!(log.drain(), (vec![(2, 9), (7, 11)], true));
        assert_eq!(log.drain(), (vec![], true));
        for i in 0..=BOUNDS_LOG_MAX as u32 {
            log.push(i, 1);
        }
        let (pairs, complete) = log.drain();
        assert_eq!(pairs.len(), BOUNDS_LOG_MAX);
        assert!(!complete);
        log.push(1, 1);
        log.mark_incomplete();
        assert!(!log.drain().1);
        assert!(log.drain().1);
    }
}
