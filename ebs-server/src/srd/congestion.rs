//! Per-connection congestion control: a pacing rate and an in-flight limit.
//!
//! The rate is measured from ACK timing (bytes acknowledged over the time they took, as BBR's
//! delivery-rate samples) and steered by delay: when the RTT rises on most paths the queues are
//! ours, so the rate is cut; when it rises on one path only, the connection moves traffic off
//! that path (path selection in `connection.rs`) and keeps its rate.

/// Multiplicative cut when most paths show rising RTT: x 7/10.
const CUT_NUM: u64 = 7;
const CUT_DEN: u64 = 10;
/// Growth per round trip while no path is congested: x 5/4.
const GROW_NUM: u64 = 5;
const GROW_DEN: u64 = 4;
/// The rate never runs further ahead of the measured delivery rate than this factor.
const DELIVERY_HEADROOM: u64 = 2;
/// The token bucket holds at most this many full packets, so an idle connection sends a short
/// burst and then paces.
const BURST_PACKETS: u64 = 16;

#[derive(Debug, Clone)]
pub struct Congestion {
    rate_bytes_per_s: u64,
    rate_bytes_per_s_min: u64,
    rate_bytes_per_s_max: u64,
    in_flight_limit_packets: usize,
    in_flight_packets_min: usize,
    in_flight_packets_max: usize,
    packet_bytes: u64,
    /// Token bucket in millionths of a byte, so refills at any call rate lose no fraction.
    tokens_ubytes: i128,
    tokens_at_us: u64,
    last_adjust_us: u64,
    /// Largest delivery-rate sample of the current and previous windows (a windowed max).
    delivery_max_current: u64,
    delivery_max_previous: u64,
    delivery_window_start_us: u64,
    pub cuts: u64,
}

/// Length of one delivery-rate window, in round trips.
const DELIVERY_WINDOW_RTTS: u64 = 16;

impl Congestion {
    pub fn new(config: &super::Config) -> Self {
        Congestion {
            rate_bytes_per_s: config.rate_bytes_per_s_initial,
            rate_bytes_per_s_min: config.rate_bytes_per_s_min,
            rate_bytes_per_s_max: config.rate_bytes_per_s_max,
            in_flight_limit_packets: config
                .in_flight_packets_max
                .min(config.in_flight_packets_min.max(64)),
            in_flight_packets_min: config.in_flight_packets_min,
            in_flight_packets_max: config.in_flight_packets_max,
            packet_bytes: config.payload_len_max as u64,
            tokens_ubytes: i128::from(BURST_PACKETS * config.payload_len_max as u64) * 1_000_000,
            tokens_at_us: 0,
            last_adjust_us: 0,
            delivery_max_current: 0,
            delivery_max_previous: 0,
            delivery_window_start_us: 0,
            cuts: 0,
        }
    }

    pub fn rate_bytes_per_s(&self) -> u64 {
        self.rate_bytes_per_s
    }

    pub fn in_flight_limit_packets(&self) -> usize {
        self.in_flight_limit_packets
    }

    fn refill(&mut self, now_us: u64) {
        let elapsed_us = now_us.saturating_sub(self.tokens_at_us);
        self.tokens_at_us = self.tokens_at_us.max(now_us);
        let add = i128::from(elapsed_us) * i128::from(self.rate_bytes_per_s);
        let cap = i128::from(BURST_PACKETS * self.packet_bytes) * 1_000_000;
        self.tokens_ubytes = (self.tokens_ubytes + add).min(cap);
    }

    /// Whether a packet may leave now, given the packets in flight.
    pub fn can_send(&mut self, now_us: u64, in_flight_packets: usize) -> bool {
        self.refill(now_us);
        in_flight_packets < self.in_flight_limit_packets && self.tokens_ubytes > 0
    }

    pub fn on_sent(&mut self, bytes: usize) {
        self.tokens_ubytes -= bytes as i128 * 1_000_000;
    }

    /// When the token bucket allows the next packet, if it does not now.
    pub fn next_send_us(&self) -> Option<u64> {
        if self.tokens_ubytes > 0 {
            return None;
        }
        let deficit = (1 - self.tokens_ubytes) as u128;
        Some(self.tokens_at_us + deficit.div_ceil(u128::from(self.rate_bytes_per_s)) as u64)
    }

    /// A delivery-rate sample from an acknowledged packet.
    pub fn on_delivery_sample(
        &mut self,
        now_us: u64,
        rate_bytes_per_s: u64,
        rtt_us_reference: u64,
    ) {
        if now_us.saturating_sub(self.delivery_window_start_us)
            > DELIVERY_WINDOW_RTTS * rtt_us_reference.max(1)
        {
            self.delivery_max_previous = self.delivery_max_current;
            self.delivery_max_current = 0;
            self.delivery_window_start_us = now_us;
        }
        self.delivery_max_current = self.delivery_max_current.max(rate_bytes_per_s);
    }

    /// Whether a round trip has passed since the last adjustment.
    pub fn round_due(&self, now_us: u64, rtt_us_reference: u64) -> bool {
        now_us.saturating_sub(self.last_adjust_us) >= rtt_us_reference
    }

    /// Once per round trip (`rtt_us_reference`, the median path RTT): cut the rate if most paths
    /// show rising RTT, grow it otherwise; then size the in-flight limit to twice the
    /// bandwidth-delay product over the queue-free round trip `rtt_us_base`.
    pub fn on_round(
        &mut self,
        now_us: u64,
        most_paths_rising: bool,
        rtt_us_reference: u64,
        rtt_us_base: u64,
    ) {
        if !self.round_due(now_us, rtt_us_reference) {
            return;
        }
        self.last_adjust_us = now_us;
        if most_paths_rising {
            self.rate_bytes_per_s =
                (self.rate_bytes_per_s * CUT_NUM / CUT_DEN).max(self.rate_bytes_per_s_min);
            self.cuts += 1;
        } else {
            let delivered = self.delivery_max_current.max(self.delivery_max_previous);
            let cap = (DELIVERY_HEADROOM * delivered).max(self.rate_bytes_per_s_min);
            let grown = self.rate_bytes_per_s * GROW_NUM / GROW_DEN;
            // Growth stops at the delivery headroom but never pulls the rate down: a pause in the
            // layer above's demand is not congestion.
            if grown <= cap {
                self.rate_bytes_per_s = grown.min(self.rate_bytes_per_s_max);
            }
        }
        let bdp_bytes = u128::from(self.rate_bytes_per_s) * u128::from(rtt_us_base) / 1_000_000;
        let limit = (2 * bdp_bytes / u128::from(self.packet_bytes)) as usize;
        self.in_flight_limit_packets =
            limit.clamp(self.in_flight_packets_min, self.in_flight_packets_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srd::Config;

    #[test]
    fn pacing_spaces_packets_at_the_rate() {
        // Packets of the 1500-MTU size, so the burst is 16 of the 1400-byte packets sent here.
        let config = Config {
            rate_bytes_per_s_initial: 1_400_000,
            payload_len_max: crate::srd::config::PAYLOAD_LEN_MTU_1500,
            ..Config::default()
        };
        let mut c = Congestion::new(&config);
        let mut sent = 0;
        while c.can_send(0, 0) {
            c.on_sent(1400);
            sent += 1;
        }
        assert_eq!(sent, BURST_PACKETS, "a burst, then pacing");
        // 1.4 MB/s is one 1400-byte packet per millisecond: over the next 10 ms, 10 more.
        let mut paced = 0;
        while let Some(now) = c.next_send_us() {
            if now > 10_000 {
                break;
            }
            assert!(c.can_send(now, 0));
            c.on_sent(1400);
            paced += 1;
        }
        assert!((10..=11).contains(&paced), "{paced}");
        assert!(
            !c.can_send(0, c.in_flight_limit_packets()),
            "in-flight limit"
        );
    }

    #[test]
    fn cut_when_most_paths_rise_grow_within_the_delivery_rate() {
        let config = Config::default();
        let mut c = Congestion::new(&config);
        let start = c.rate_bytes_per_s();
        c.on_round(1_000, true, 100, 100);
        assert_eq!(c.rate_bytes_per_s(), start * 7 / 10);
        c.on_round(1_050, true, 100, 100);
        assert_eq!(c.cuts, 1, "at most one cut per round trip");
        c.on_delivery_sample(1_100, start, 100);
        c.on_round(1_200, false, 100, 100);
        assert_eq!(c.rate_bytes_per_s(), start * 7 / 10 * 5 / 4);
        for i in 0..50 {
            c.on_round(1_300 + i * 100, false, 100, 100);
        }
        assert!(
            c.rate_bytes_per_s() <= 2 * start,
            "capped by twice the delivery rate"
        );
        assert!(c.in_flight_limit_packets() >= config.in_flight_packets_min);
    }
}
