//! Per-operation-kind latency counters with a small log2 histogram, cheap enough to update on
//! every NAND operation.

use super::model::{OpKind, OpTiming};

/// Bucket `i` holds latencies in `[2^i, 2^(i+1))` microseconds; bucket 0 also holds < 1 us.
/// 2^23 us (8 s) is past any single NAND operation, so the last bucket is a catch-all.
pub const LATENCY_BUCKETS: usize = 24;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpLatency {
    pub count: u64,
    pub total_ns: u64,
    /// Of `total_ns`, the time spent queued (die, channel, suspend).
    pub wait_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// Reads that suspended a program or erase.
    pub suspends: u64,
    pub histogram_us_log2: [u64; LATENCY_BUCKETS],
}

impl OpLatency {
    pub fn record(&mut self, timing: &OpTiming) {
        let latency_ns = timing.latency_ns();
        self.min_ns = if self.count == 0 {
            latency_ns
        } else {
            self.min_ns.min(latency_ns)
        };
        self.count += 1;
        self.total_ns += latency_ns;
        self.wait_ns += timing.wait_ns;
        self.max_ns = self.max_ns.max(latency_ns);
        self.suspends += u64::from(timing.suspended_other);
        self.histogram_us_log2[bucket(latency_ns)] += 1;
    }

    pub fn mean_ns(&self) -> u64 {
        self.total_ns.checked_div(self.count).unwrap_or(0)
    }

    /// An upper bound of the `q` quantile (0 < q <= 1): the top of the histogram bucket that
    /// holds it, capped by the maximum seen. `None` with no samples.
    pub fn quantile_upper_ns(&self, q: f64) -> Option<u64> {
        assert!(q > 0.0 && q <= 1.0, "quantile {q}");
        if self.count == 0 {
            return None;
        }
        // Rank of the sample, 1-based: the smallest rank whose share reaches q.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.histogram_us_log2.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let top_ns = (1u64 << (i + 1)) * 1_000;
                return Some(top_ns.min(self.max_ns));
            }
        }
        unreachable!("histogram holds {seen} of {} samples", self.count)
    }
}

fn bucket(latency_ns: u64) -> usize {
    let us = latency_ns / 1_000;
    if us == 0 {
        0
    } else {
        (us.ilog2() as usize).min(LATENCY_BUCKETS - 1)
    }
}

/// Latency of every kind of operation a timed device served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyStats {
    pub read: OpLatency,
    pub program: OpLatency,
    pub erase: OpLatency,
}

impl LatencyStats {
    pub fn record(&mut self, timing: &OpTiming) {
        match timing.kind {
            OpKind::Read => self.read.record(timing),
            OpKind::Program => self.program.record(timing),
            OpKind::Erase => self.erase.record(timing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(latency_ns: u64, wait_ns: u64) -> OpTiming {
        OpTiming {
            kind: OpKind::Read,
            issued_ns: 100,
            start_ns: 100 + wait_ns,
            end_ns: 100 + latency_ns,
            wait_ns,
            suspended_other: false,
        }
    }

    #[test]
    fn counts_buckets_and_quantiles() {
        let mut l = OpLatency::default();
        assert_eq!(l.quantile_upper_ns(0.5), None);
        for _ in 0..99 {
            l.record(&op(55_120, 0)); // bucket 5: 32..64 us
        }
        l.record(&op(3_000_000, 2_900_000)); // bucket 11: 2048..4096 us
        assert_eq!(l.count, 100);
        assert_eq!(l.min_ns, 55_120);
        assert_eq!(l.max_ns, 3_000_000);
        assert_eq!(l.wait_ns, 2_900_000);
        assert_eq!(l.histogram_us_log2[5], 99);
        assert_eq!(l.histogram_us_log2[11], 1);
        assert_eq!(l.quantile_upper_ns(0.5), Some(64_000));
        assert_eq!(l.quantile_upper_ns(0.99), Some(64_000));
        assert_eq!(l.quantile_upper_ns(1.0), Some(3_000_000));
        assert_eq!(l.mean_ns(), (99 * 55_120 + 3_000_000) / 100);
        assert_eq!(bucket(999), 0);
        assert_eq!(bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }
}
