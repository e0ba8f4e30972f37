//! Striped locks over logical blocks, so a read-modify-write of a block is atomic with respect
//! to every other write of that block.
//!
//! A 512-byte write into a 4 KiB block reads the block, patches it and writes it back. Two such
//! writes of the same block from two queues would otherwise both read the old block and the
//! second write-back would lose the first one's sectors. Every write path (whole blocks too, and
//! write-zeroes) holds the stripes of the blocks it changes; reads take no lock, as the backend
//! replaces a block atomically.

use parking_lot::{Mutex, MutexGuard};

/// Number of stripes: a power of two, enough that unrelated blocks rarely share one.
const STRIPES: usize = 256;

#[derive(Debug)]
pub struct BlockLocks {
    stripes: Vec<Mutex<()>>,
}

/// The stripes held for one range of blocks; released on drop.
#[derive(Debug)]
pub struct RangeGuard<'a> {
    _guards: Vec<MutexGuard<'a, ()>>,
}

impl Default for BlockLocks {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockLocks {
    pub fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn stripe_of(lba: u64) -> usize {
        (lba % STRIPES as u64) as usize
    }

    /// Locks every stripe that a block of `first..first + count` maps to.
    ///
    /// Stripes are always taken in ascending index order and a thread holds one range (or one
    /// set, `lock_ranges`) at a time, so two holders can never wait on each other in a cycle.
    pub fn lock_range(&self, first: u64, count: u64) -> RangeGuard<'_> {
        self.lock_ranges(&[(first, count)])
    }

    /// Locks every stripe that a block of any of the `(first, count)` ranges maps to, each stripe
    /// once and in ascending order (a batch of writes holds them all while it is applied).
    pub fn lock_ranges(&self, ranges: &[(u64, u64)]) -> RangeGuard<'_> {
        let mut wanted = [false; STRIPES];
        for &(first, count) in ranges {
            if count >= STRIPES as u64 {
                wanted = [true; STRIPES];
                break;
            }
            for lba in first..first.saturating_add(count) {
                wanted[Self::stripe_of(lba)] = true;
            }
        }
        let guards = self
            .stripes
            .iter()
            .zip(wanted)
            .filter(|(_, w)| *w)
            .map(|(m, _)| m.lock())
            .collect();
        RangeGuard { _guards: guards }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_ranges_exclude_each_other_and_disjoint_stripes_do_not() {
        let locks = BlockLocks::new();
        let held = locks.lock_range(10, 2);
        // Block 10 + STRIPES maps to the stripe of block 10: it must wait.
        assert!(locks.stripes[BlockLocks::stripe_of(10 + STRIPES as u64)].is_locked());
        assert!(!locks.stripes[BlockLocks::stripe_of(12)].is_locked());
        drop(held);
        assert!(!locks.stripes[BlockLocks::stripe_of(10)].is_locked());
        let all = locks.lock_range(0, 10_000);
        assert!(locks.stripes.iter().all(|m| m.is_locked()));
        drop(all);
    }

    #[test]
    fn a_set_of_ranges_takes_each_stripe_once() {
        let locks = BlockLocks::new();
        // Blocks 3 and 3 + STRIPES share a stripe: taking it twice would deadlock this thread.
        let held = locks.lock_ranges(&[(3, 1), (3 + STRIPES as u64, 2), (100, 1)]);
        for stripe in [3, 4, 100] {
            assert!(locks.stripes[stripe].is_locked(), "stripe {stripe}");
        }
        assert_eq!(locks.stripes.iter().filter(|m| m.is_locked()).count(), 3);
        drop(held);
        assert!(locks.stripes.iter().all(|m| !m.is_locked()));
    }
}
