//! A power rail shared by a set of devices, so that a power cut hits all of them at the same instant.
//!
//! `arm(n)` lets `n` more mutating operations (program, erase, sync, mark-bad) through anywhere on
//! the rail; the next one trips it. From then on every operation on every device of the rail fails
//! with `PowerLost` until `restore()`. The harness then calls `Device::power_cut` on each device to
//! drop what was not durable, and reopens the FTL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const DISARMED: u64 = u64::MAX;

#[derive(Debug)]
pub struct PowerRail {
    ops_left: AtomicU64,
    lost: AtomicBool,
}

impl Default for PowerRail {
    fn default() -> Self {
        Self {
            ops_left: AtomicU64::new(DISARMED),
            lost: AtomicBool::new(false),
        }
    }
}

impl PowerRail {
    pub fn new() -> Self {
        Self::default()
    }

    /// The power fails at the `ops`-th mutating operation from now (0: the very next one).
    pub fn arm(&self, ops: u64) {
        assert!(ops < DISARMED);
        self.ops_left.store(ops, Ordering::SeqCst);
    }

    pub fn disarm(&self) {
        self.ops_left.store(DISARMED, Ordering::SeqCst);
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Power back on, disarmed.
    pub fn restore(&self) {
        self.disarm();
        self.lost.store(false, Ordering::SeqCst);
    }

    /// Counts one mutating operation. Returns true if power is lost (now or before): the caller
    /// must not complete the operation.
    pub fn tick(&self) -> bool {
        if self.is_lost() {
            return true;
        }
        let mut left = self.ops_left.load(Ordering::SeqCst);
        loop {
            if left == DISARMED {
                return false;
            }
            if left == 0 {
                self.lost.store(true, Ordering::SeqCst);
                return true;
            }
            match self
                .ops_left
                .compare_exchange(left, left - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return false,
                Err(now) => left = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_exactly_n_ops_and_stays_lost() {
        let rail = PowerRail::new();
        assert!(!rail.tick());
        rail.arm(2);
        assert!(!rail.tick());
        assert!(!rail.tick());
        assert!(rail.tick());
        assert!(rail.is_lost());
        assert!(rail.tick());
        rail.restore();
        assert!(!rail.tick());
    }
}
