//! A channel bus: the transfers reserved on it, so a transfer takes the earliest gap that fits
//! (a read queued behind a 3 ms erase must not hold the bus of every other die of its channel
//! until its own transfer).

use std::collections::VecDeque;

#[derive(Clone, Debug, Default)]
pub(super) struct Bus {
    /// Reserved transfers `[start, end)`, sorted, disjoint, all ending after `floor_ns`.
    reserved: VecDeque<(u64, u64)>,
    /// Everything before this instant is forgotten; no transfer starts before it.
    floor_ns: u64,
}

impl Bus {
    /// Forgets transfers that end by `now_ns` (the latest issue time seen: later transfers
    /// cannot start before it, so those gaps can no longer be used).
    pub(super) fn advance(&mut self, now_ns: u64) {
        self.floor_ns = self.floor_ns.max(now_ns);
        while self
            .reserved
            .front()
            .is_some_and(|&(_, end)| end <= self.floor_ns)
        {
            self.reserved.pop_front();
        }
    }

    /// Reserves the earliest `[start, start + duration_ns)` with `start >= ready_ns`.
    pub(super) fn reserve(&mut self, ready_ns: u64, duration_ns: u64) -> u64 {
        assert!(duration_ns > 0);
        let mut start_ns = ready_ns.max(self.floor_ns);
        let mut index = 0;
        for &(s, e) in &self.reserved {
            if start_ns + duration_ns <= s {
                break;
            }
            start_ns = start_ns.max(e);
            index += 1;
        }
        // Intervals ending at or before ready_ns were skipped above; the new one goes after them.
        self.reserved
            .insert(index, (start_ns, start_ns + duration_ns));
        debug_assert!(
            self.reserved
                .iter()
                .zip(self.reserved.iter().skip(1))
                .all(|(a, b)| a.1 <= b.0)
        );
        start_ns
    }

    /// When the last reserved transfer ends.
    pub(super) fn busy_until_ns(&self) -> u64 {
        self.reserved.back().map_or(self.floor_ns, |&(_, end)| end)
    }

    /// Ends of the reserved transfers, in order.
    pub(super) fn ends_ns(&self) -> impl Iterator<Item = u64> + '_ {
        self.reserved.iter().map(|&(_, end)| end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_earliest_gap_that_fits() {
        let mut bus = Bus::default();
        assert_eq!(bus.reserve(50, 10), 50);
        assert_eq!(bus.reserve(0, 10), 0, "before the first");
        assert_eq!(bus.reserve(45, 10), 60, "gap 45..50 too small");
        assert_eq!(bus.reserve(10, 40), 10, "exactly fills 10..50");
        assert_eq!(bus.busy_until_ns(), 70);
        bus.advance(65);
        assert_eq!(bus.ends_ns().collect::<Vec<_>>(), vec![70]);
        assert_eq!(
            bus.reserve(0, 5),
            70,
            "nothing before the floor's last transfer ends"
        );
    }
}
