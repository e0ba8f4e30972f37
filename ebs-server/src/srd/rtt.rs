//! Round-trip time estimation of one path (RFC 6298's smoothing, in microseconds).

/// Least the variance term of the RTO adds to the smoothed RTT. A steady path drives rttvar to
/// a few microseconds, and then any jitter beyond it (a host scheduling a thread late) would fire
/// the timer; QUIC bounds this term by its timer granularity for the same reason.
pub const RTO_VARIANCE_TERM_US_MIN: u64 = 50;

/// Smoothed RTT and variance of one path, plus its minimum as the uncongested baseline.
#[derive(Debug, Clone, Default)]
pub struct RttEstimator {
    /// Eight times the smoothed RTT and four times the variance (as Linux keeps them), so the
    /// 7/8 and 3/4 averages do not truncate towards a value below the true one.
    rtt_us_smoothed_x8: Option<u64>,
    rtt_us_variance_x4: u64,
    rtt_us_min: u64,
    /// The smallest sample of the current congestion-control round.
    rtt_us_round_min: Option<u64>,
    samples: u64,
}

impl RttEstimator {
    /// One sample: the time from sending a packet to receiving its acknowledgement, minus the
    /// receiver's reported ack delay. Each transmission has a fresh packet number, so a sample is
    /// never ambiguous between an original and a retransmission (Karn's problem does not arise).
    pub fn on_sample(&mut self, rtt_us: u64) {
        let rtt_us = rtt_us.max(1);
        self.samples += 1;
        self.rtt_us_round_min = Some(self.rtt_us_round_min.map_or(rtt_us, |m| m.min(rtt_us)));
        match self.rtt_us_smoothed_x8 {
            None => {
                self.rtt_us_smoothed_x8 = Some(8 * rtt_us);
                self.rtt_us_variance_x4 = 2 * rtt_us;
                self.rtt_us_min = rtt_us;
            }
            Some(srtt_x8) => {
                let deviation = (srtt_x8 / 8).abs_diff(rtt_us);
                self.rtt_us_variance_x4 =
                    self.rtt_us_variance_x4 - self.rtt_us_variance_x4 / 4 + deviation;
                self.rtt_us_smoothed_x8 = Some(srtt_x8 - srtt_x8 / 8 + rtt_us);
                self.rtt_us_min = self.rtt_us_min.min(rtt_us);
            }
        }
    }

    pub fn smoothed_us(&self) -> Option<u64> {
        self.rtt_us_smoothed_x8.map(|x8| x8 / 8)
    }

    pub fn variance_us(&self) -> u64 {
        self.rtt_us_variance_x4 / 4
    }

    pub fn min_us(&self) -> Option<u64> {
        self.rtt_us_smoothed_x8.map(|_| self.rtt_us_min)
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// srtt + 4 rttvar (at least RTO_VARIANCE_TERM_US_MIN), clamped to [floor, ceiling];
    /// `initial` before the first sample.
    pub fn rto_us(&self, floor: u64, ceiling: u64, initial: u64) -> u64 {
        match self.smoothed_us() {
            None => initial,
            Some(srtt) => (srtt + (4 * self.variance_us()).max(RTO_VARIANCE_TERM_US_MIN))
                .clamp(floor, ceiling),
        }
    }

    /// Ends a congestion-control round: whether even the fastest sample of the round stood well
    /// above the path's minimum (half the minimum again, and at least `rise_us_min`), or None
    /// without a sample this round. The round's minimum, not the smoothed RTT, because a standing
    /// queue delays every packet, while a busy host (a thread woken late) delays only some: the
    /// smoothed RTT rises with both.
    pub fn end_round_rising(&mut self, rise_us_min: u64) -> Option<bool> {
        const SAMPLES_MIN: u64 = 8;
        let round_min = self.rtt_us_round_min.take()?;
        let base = self.rtt_us_min;
        Some(self.samples >= SAMPLES_MIN && round_min > base + (base / 2).max(rise_us_min))
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
        for _ in 0..100 {
            r.on_sample(300);
        }
        assert_eq!(
            r.rto_us(200, 50_000, 1_000),
            300 + RTO_VARIANCE_TERM_US_MIN,
            "variance term floor"
        );
    }

    #[test]
    fn rising_needs_samples_and_every_sample_of_the_round_high() {
        let mut r = RttEstimator::default();
        assert_eq!(r.end_round_rising(20), None, "no sample, no signal");
        for _ in 0..4 {
            r.on_sample(400);
        }
        assert_eq!(
            r.end_round_rising(20),
            Some(false),
            "too few samples to know the minimum"
        );
        for _ in 0..20 {
            r.on_sample(100);
        }
        assert_eq!(r.end_round_rising(20), Some(false));
        for _ in 0..20 {
            r.on_sample(400);
        }
        assert_eq!(r.end_round_rising(20), Some(true), "a standing queue");
        r.on_sample(400);
        assert_eq!(
            r.end_round_rising(400),
            Some(false),
            "within the configured noise"
        );
        r.on_sample(5_000);
        r.on_sample(101);
        assert_eq!(
            r.end_round_rising(20),
            Some(false),
            "one late sample is noise, not a queue"
        );
    }
}
