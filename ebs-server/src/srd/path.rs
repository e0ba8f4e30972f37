//! One path to the peer (one UDP source port): its RTT, load, health and the per-path order of
//! the packets it carries, which is what loss detection compares against.

use super::rtt::RttEstimator;
use std::collections::BTreeMap;

/// Whether a path may carry new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Repeated timeouts that other paths show are this path's own: only probes go on it until
    /// one is answered.
    Suspect,
}

/// A later packet on the same path acknowledged this many packets after an unacknowledged one
/// makes the older one lost (QUIC's packet threshold). Packets on other paths never count: a
/// slower path is not a lossy one.
pub const LOSS_PACKET_THRESHOLD: u64 = 3;
/// Most consecutive timeouts that double a path's RTO.
const BACKOFF_SHIFT_MAX: u32 = 6;

#[derive(Debug, Clone)]
pub struct Path {
    pub id: u8,
    pub rtt: RttEstimator,
    health: Health,
    /// Timeouts since the path last showed life (an acknowledgement or an answered probe): they
    /// double its RTO, and while there is one the path takes new data only when no path without
    /// one can (`Connection::choose_path`) and is probed, so a dead path costs one timer, not a
    /// series of doubling ones.
    consecutive_timeouts: u32,
    /// Those of them that another path showed to be this path's: a packet sent later elsewhere
    /// was acknowledged. A host or a peer that stalls delays every path alike, and its timeouts
    /// carry no such evidence: they never make a path suspect.
    evidenced_timeouts: u32,
    /// The send time of the newest packet acknowledged on this path.
    newest_acked_sent_us: Option<u64>,
    /// Unacknowledged, not yet lost data packets on this path: path sequence -> packet number.
    live: BTreeMap<u64, u64>,
    next_path_seq: u64,
    largest_acked_path_seq: Option<u64>,
    /// The probe in flight on this path, with its send time.
    pub probe: Option<(u64, u64)>,
    pub next_probe_us: u64,
    pub stats: PathStats,
}

/// Counters of one path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathStats {
    pub data_packets_sent: u64,
    pub retransmissions_sent: u64,
    pub packets_acked: u64,
    pub lost_by_threshold: u64,
    pub timeouts: u64,
    pub times_suspect: u64,
    pub probes_sent: u64,
}

impl Path {
    pub fn new(id: u8) -> Self {
        Path {
            id,
            rtt: RttEstimator::default(),
            health: Health::Healthy,
            consecutive_timeouts: 0,
            evidenced_timeouts: 0,
            newest_acked_sent_us: None,
            live: BTreeMap::new(),
            next_path_seq: 0,
            largest_acked_path_seq: None,
            probe: None,
            next_probe_us: 0,
            stats: PathStats::default(),
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn in_flight_packets(&self) -> usize {
        self.live.len()
    }

    /// The retransmission timeout of a packet sent now, doubled per consecutive timeout.
    pub fn rto_us(&self, floor: u64, ceiling: u64, initial: u64) -> u64 {
        let shift = self.consecutive_timeouts.min(BACKOFF_SHIFT_MAX);
        (self.rtt.rto_us(floor, ceiling, initial) << shift).min(ceiling)
    }

    /// Records a data packet sent on this path; returns its path sequence.
    pub fn on_sent(&mut self, packet_number: u64) -> u64 {
        let seq = self.next_path_seq;
        self.next_path_seq += 1;
        self.live.insert(seq, packet_number);
        self.stats.data_packets_sent += 1;
        seq
    }

    /// Forgets a packet that is acknowledged or lost.
    pub fn remove(&mut self, path_seq: u64) {
        self.live.remove(&path_seq);
    }

    /// Whether a timeout on this path is still unanswered by any sign of life.
    pub fn has_unanswered_timeout(&self) -> bool {
        self.consecutive_timeouts > 0
    }

    /// The send time of the newest packet acknowledged on this path, if any.
    pub fn newest_acked_sent_us(&self) -> Option<u64> {
        self.newest_acked_sent_us
    }

    /// A data packet sent on this path at `sent_us` was acknowledged: the path works.
    pub fn on_acked(&mut self, path_seq: u64, rtt_us: u64, sent_us: u64) {
        self.live.remove(&path_seq);
        self.rtt.on_sample(rtt_us);
        self.stats.packets_acked += 1;
        self.consecutive_timeouts = 0;
        self.evidenced_timeouts = 0;
        self.newest_acked_sent_us = Some(
            self.newest_acked_sent_us
                .map_or(sent_us, |t| t.max(sent_us)),
        );
        self.largest_acked_path_seq = Some(
            self.largest_acked_path_seq
                .map_or(path_seq, |l| l.max(path_seq)),
        );
    }

    /// Live packets this path's own acknowledgements show lost: at least LOSS_PACKET_THRESHOLD
    /// older than the newest acknowledged packet on this path, or older than it and sent more than
    /// 9/8 of an RTT before `now_us` (QUIC's time threshold).
    pub fn detect_lost(&self, now_us: u64, sent_us_of: impl Fn(u64) -> u64) -> Vec<(u64, u64)> {
        let Some(largest) = self.largest_acked_path_seq else {
            return Vec::new();
        };
        let srtt = self.rtt.smoothed_us().unwrap_or(0);
        let time_threshold_us = srtt + srtt / 8;
        self.live
            .range(..largest)
            .filter(|&(&seq, &pn)| {
                seq + LOSS_PACKET_THRESHOLD <= largest
                    || sent_us_of(pn) + time_threshold_us < now_us
            })
            .map(|(&seq, &pn)| (seq, pn))
            .collect()
    }

    /// A packet on this path timed out; `evidence`: another path has since acknowledged a packet
    /// sent after it. The first timeout asks for a probe at once. Returns true when this made
    /// the path suspect: `suspect_after` evidenced timeouts in a row.
    pub fn on_timeout(&mut self, suspect_after: u32, now_us: u64, evidence: bool) -> bool {
        self.stats.timeouts += 1;
        self.consecutive_timeouts += 1;
        if self.consecutive_timeouts == 1 {
            self.next_probe_us = now_us;
            self.probe = None;
        }
        self.evidenced_timeouts += u32::from(evidence);
        if self.health == Health::Healthy && self.evidenced_timeouts >= suspect_after {
            self.health = Health::Suspect;
            self.stats.times_suspect += 1;
            self.next_probe_us = now_us;
            self.probe = None;
            return true;
        }
        false
    }

    /// The live packets, oldest first (to move them off a path that became suspect).
    pub fn live_packets(&self) -> Vec<(u64, u64)> {
        self.live.iter().map(|(&s, &p)| (s, p)).collect()
    }

    /// A probe on this path was answered: it carries traffic again.
    pub fn on_probe_answered(&mut self, rtt_us: u64) {
        self.rtt.on_sample(rtt_us);
        self.probe = None;
        self.consecutive_timeouts = 0;
        self.evidenced_timeouts = 0;
        self.health = Health::Healthy;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_threshold_counts_only_this_path() {
        let mut p = Path::new(0);
        let seqs: Vec<u64> = (100..105).map(|pn| p.on_sent(pn)).collect();
        p.on_acked(seqs[2], 50, 0);
        assert!(
            p.detect_lost(10, |_| 10).is_empty(),
            "two newer is reordering, not loss"
        );
        p.on_acked(seqs[3], 50, 0);
        assert_eq!(p.detect_lost(10, |_| 10), vec![(seqs[0], 100)]);
    }

    #[test]
    fn time_threshold_uses_the_path_rtt() {
        let mut p = Path::new(0);
        let a = p.on_sent(1);
        let b = p.on_sent(2);
        p.on_acked(b, 80, 0);
        // 9/8 of 80 us = 90 us after the send at t=0.
        assert!(p.detect_lost(90, |_| 0).is_empty());
        assert_eq!(p.detect_lost(91, |_| 0), vec![(a, 1)]);
    }

    #[test]
    fn repeated_timeouts_make_a_path_suspect_until_probed() {
        let mut p = Path::new(3);
        assert!(!p.on_timeout(3, 0, true));
        assert!(p.has_unanswered_timeout());
        assert_eq!(p.rto_us(200, 50_000, 1_000), 2_000, "backoff");
        assert!(!p.on_timeout(3, 0, true));
        assert!(p.on_timeout(3, 7, true));
        assert_eq!(p.health(), Health::Suspect);
        assert_eq!(p.next_probe_us, 7);
        p.on_probe_answered(60);
        assert_eq!(p.health(), Health::Healthy);
        assert!(!p.has_unanswered_timeout());
        assert_eq!(p.rto_us(200, 50_000, 1_000), 200);
    }

    #[test]
    fn timeouts_without_evidence_back_off_but_never_make_a_path_suspect() {
        let mut p = Path::new(1);
        for t in 0..10 {
            assert!(!p.on_timeout(3, t, false));
        }
        assert_eq!(p.health(), Health::Healthy);
        assert_eq!(
            p.rto_us(200, 50_000, 1_000),
            50_000,
            "backed off to the ceiling"
        );
        // Two evidenced ones after the unevidenced: not yet three in a row with evidence.
        assert!(!p.on_timeout(3, 20, true));
        assert!(!p.on_timeout(3, 21, true));
        // An acknowledgement clears both counts.
        let seq = p.on_sent(9);
        p.on_acked(seq, 40, 15);
        assert_eq!(p.newest_acked_sent_us(), Some(15));
        assert!(!p.has_unanswered_timeout());
        assert!(!p.on_timeout(3, 30, true));
        assert!(!p.on_timeout(3, 31, true));
        assert!(p.on_timeout(3, 32, true));
    }

    #[test]
    fn the_first_timeout_asks_for_a_probe_at_once() {
        let mut p = Path::new(2);
        p.next_probe_us = 5_000;
        p.on_timeout(3, 40, false);
        assert_eq!(p.next_probe_us, 40);
        p.next_probe_us = 1_040;
        p.on_timeout(3, 50, false);
        assert_eq!(
            p.next_probe_us, 1_040,
            "later timeouts keep the probe interval"
        );
    }
}
