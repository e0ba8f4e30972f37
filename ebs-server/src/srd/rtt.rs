//! Round-trip time estimation of one path (RFC 6298's smoothing, in microseconds).

/// Smoothed RTT and variance of one path, plus its minimum as the uncongested baseline.
#[derive(Debug, Clone, Default)]
pub struct RttEstimator {
    rtt_us_smoothed: Option<u64>,
    rtt_us_variance: u64,
    rtt_us_min: u64,
    samples: u64,
}

impl RttEstimator {
    /// One sample: the time from sending a packet to receiving its acknowledgement, minus the
    /// receiver's reported ack delay. Each transmission has a fresh packet number, so a sample is
    /// never ambiguous between an original and a retransmission (Karn's problem does not arise).
    pub fn on_sample(&mut self, rtt_us: u64) {
        let rtt_us = rtt_us.max(1);
        self.samples += 1;
        match self.rtt_us_smoothed {
            None => {
                self.rtt_us_smoothed = Some(rtt_us);
                self.rtt_us_variance = rtt_us / 2;
                self.rtt_us_min = rtt_us;
            }
            Some(srtt) => {
                self.rtt_us_variance = (3 * self.rtt_us_variance + srtt.abs_diff(rtt_us)) / 4;
                self.rtt_us_smoothed = Some((7 * srtt + rtt_us) / 8);
                self.rtt_us_min = self.rtt_us_min.min(rtt_us);
            }
        }
    }

    pub fn smoothed_us(&self) -> Option<u64> {
        self.rtt_us_smoothed
    }

    pub fn variance_us(&self) -> u64 {
        self.rtt_us_variance
    }

    pub fn min_us(&self) -> Option<u64> {
        self.rtt_us_smoothed.map(|_| self.rtt_us_min)
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// srtt + 4 rttvar, clamped to [floor, ceiling]; `initial` before the first sample.
    pub fn rto_us(&self, floor: u64, ceiling: u64, initial: u64) -> u64 {
        match self.rtt_us_smoothed {
            None => initial,
            Some(srtt) => (srtt + 4 * self.rtt_us_variance).clamp(floor, ceiling),
        }
    }

    /// Whether the smoothed RTT stands well above the path's minimum: queues are building. Half
    /// the minimum again, and at least 20 us so scheduling noise on a fast path is not taken
    /// for congestion.
    pub fn is_rising(&self) -> bool {
        const RISE_US_MIN: u64 = 20;
        const SAMPLES_MIN: u64 = 8;
        match self.rtt_us_smoothed {
            Some(srtt) if self.samples >= SAMPLES_MIN => {
                srtt > self.rtt_us_min + (self.rtt_us_min / 2).max(RISE_US_MIN)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut r = RttEstimator::default();
        assert_eq!(r.rto_us(200, 50_000, 1_000), 1_000);
        r.on_sample(100);
        assert_eq!(r.smoothed_us(), Some(100));
        assert_eq!(r.variance_us(), 50);
        assert_eq!(r.rto_us(200, 50_000, 1_000), 300);
        assert_eq!(r.rto_us(400, 50_000, 1_000), 400, "floor");
        assert_eq!(r.rto_us(10, 250, 1_000), 250, "ceiling");
    }

    #[test]
    fn smoothing_follows_rfc6298() {
        let mut r = RttEstimator::default();
        r.on_sample(100);
        r.on_sample(180);
        // rttvar = (3*50 + 80)/4 = 57, srtt = (700 + 180)/8 = 110
        assert_eq!(r.variance_us(), 57);
        assert_eq!(r.smoothed_us(), Some(110));
        assert_eq!(r.min_us(), Some(100));
    }

    #[test]
    fn rising_needs_samples_and_a_clear_increase() {
        let mut r = RttEstimator::default();
        for _ in 0..20 {
            r.on_sample(100);
        }
        assert!(!r.is_rising());
        for _ in 0..20 {
            r.on_sample(400);
        }
        assert!(r.is_rising());
    }
}
