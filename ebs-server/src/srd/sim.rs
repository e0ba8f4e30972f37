//! A seeded simulated network between two connections, for tests (and later `ferrite ebs
//! bench`): per-path loss, delay, jitter, reordering, duplication, black-holing (the link stays
//! up, packets vanish) and a rate limit with a bounded queue. Everything random comes from one
//! ChaCha seed and time is simulated, so a run is a pure function of its seed and workload.

use super::{Connection, Delivered};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The impairments of one path, applied the same way in both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct PathImpairment {
    /// Probability a datagram is dropped.
    pub loss: f64,
    /// One-way propagation delay.
    pub delay_us: u64,
    /// Extra delay drawn uniformly from 0..=jitter_us; the path stays FIFO (as one ECMP route
    /// does), so jitter alone does not reorder within a path.
    pub jitter_us: u64,
    /// Probability a datagram is held back by up to `reorder_us_max` past later ones.
    pub reorder: f64,
    pub reorder_us_max: u64,
    /// Probability a datagram arrives twice.
    pub duplicate: f64,
    /// Every datagram is dropped, with nothing to tell the sender.
    pub black_hole: bool,
    /// Serialization rate of the path, if limited; datagrams wait behind each other.
    pub rate_bytes_per_s: Option<u64>,
    /// Longest queueing delay before a rate-limited path drops (a tail-drop queue).
    pub queue_us_max: u64,
}

impl Default for PathImpairment {
    fn default() -> Self {
        PathImpairment {
            loss: 0.0,
            delay_us: 20,
            jitter_us: 5,
            reorder: 0.0,
            reorder_us_max: 0,
            duplicate: 0.0,
            black_hole: false,
            rate_bytes_per_s: None,
            queue_us_max: 2_000,
        }
    }
}

/// What the network did to the datagrams given to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub dropped_loss: u64,
    pub dropped_black_hole: u64,
    pub dropped_queue: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub arrived: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InTransit {
    arrive_us: u64,
    seq: u64,
    to: usize,
    path_id: u8,
    datagram: Vec<u8>,
}

/// Datagrams in flight between side 0 and side 1.
#[derive(Debug)]
pub struct SimNetwork {
    rng: ChaCha8Rng,
    pub paths: Vec<PathImpairment>,
    in_transit: BinaryHeap<Reverse<InTransit>>,
    /// Per path and direction (index = sending side): when the last FIFO datagram arrives, and
    /// when the rate-limited link is free again.
    fifo_last_us: Vec<[u64; 2]>,
    link_free_us: Vec<[u64; 2]>,
    seq: u64,
    pub stats: NetStats,
}

impl SimNetwork {
    pub fn new(seed: u64, paths: Vec<PathImpairment>) -> Self {
        let n = paths.len();
        SimNetwork {
            rng: ChaCha8Rng::seed_from_u64(seed),
            paths,
            in_transit: BinaryHeap::new(),
            fifo_last_us: vec![[0; 2]; n],
            link_free_us: vec![[0; 2]; n],
            seq: 0,
            stats: NetStats::default(),
        }
    }

    fn push(&mut self, arrive_us: u64, to: usize, path_id: u8, datagram: Vec<u8>) {
        self.seq += 1;
        self.in_transit.push(Reverse(InTransit {
            arrive_us,
            seq: self.seq,
            to,
            path_id,
            datagram,
        }));
    }

    /// Side `from` sends a datagram on `path_id` at `now_us`.
    pub fn send(&mut self, now_us: u64, from: usize, path_id: u8, datagram: Vec<u8>) {
        self.stats.sent += 1;
        let p = usize::from(path_id);
        let imp = self.paths[p].clone();
        if imp.black_hole {
            self.stats.dropped_black_hole += 1;
            return;
        }
        if self.rng.random_bool(imp.loss) {
            self.stats.dropped_loss += 1;
            return;
        }
        let mut depart_us = now_us;
        if let Some(rate) = imp.rate_bytes_per_s {
            depart_us = now_us.max(self.link_free_us[p][from]);
            if depart_us - now_us > imp.queue_us_max {
                self.stats.dropped_queue += 1;
                return;
            }
            let serialize_us = (datagram.len() as u64 * 1_000_000).div_ceil(rate);
            self.link_free_us[p][from] = depart_us + serialize_us;
            depart_us += serialize_us;
        }
        let jitter = if imp.jitter_us > 0 {
            self.rng.random_range(0..=imp.jitter_us)
        } else {
            0
        };
        let mut arrive_us = depart_us + imp.delay_us + jitter;
        if imp.reorder > 0.0 && self.rng.random_bool(imp.reorder) {
            self.stats.reordered += 1;
            arrive_us += self.rng.random_range(1..=imp.reorder_us_max.max(1));
        } else {
            arrive_us = arrive_us.max(self.fifo_last_us[p][from]);
            self.fifo_last_us[p][from] = arrive_us;
        }
        let to = 1 - from;
        if imp.duplicate > 0.0 && self.rng.random_bool(imp.duplicate) {
            self.stats.duplicated += 1;
            let again_us = arrive_us + self.rng.random_range(0..=imp.jitter_us + 1);
            self.push(again_us, to, path_id, datagram.clone());
        }
        self.push(arrive_us, to, path_id, datagram);
    }

    /// Puts an arbitrary datagram on the wire, as a forger on the path would.
    pub fn inject(&mut self, arrive_us: u64, to: usize, path_id: u8, datagram: Vec<u8>) {
        self.push(arrive_us, to, path_id, datagram);
    }

    pub fn next_arrival_us(&self) -> Option<u64> {
        self.in_transit.peek().map(|Reverse(t)| t.arrive_us)
    }

    /// The next datagram due by `now_us`: (to side, path, datagram).
    pub fn pop_due(&mut self, now_us: u64) -> Option<(usize, u8, Vec<u8>)> {
        if self.next_arrival_us()? > now_us {
            return None;
        }
        let Reverse(t) = self.in_transit.pop()?;
        self.stats.arrived += 1;
        Some((t.to, t.path_id, t.datagram))
    }

    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}

/// Two connections joined by a simulated network, advanced event by event in simulated time.
#[derive(Debug)]
pub struct SimPair {
    pub now_us: u64,
    pub sides: [Connection; 2],
    pub net: SimNetwork,
    /// FNV-1a over every datagram sent (time, side, path, bytes): equal traces, equal hashes.
    pub trace_hash: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl SimPair {
    pub fn new(a: Connection, b: Connection, net: SimNetwork) -> Self {
        SimPair {
            now_us: 0,
            sides: [a, b],
            net,
            trace_hash: FNV_OFFSET,
        }
    }

    fn hash(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.trace_hash = (self.trace_hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }

    /// Processes everything due at the current time: arrivals, timers, then what both sides
    /// have to send. Delivered messages go to `on_delivered(side, now_us, message)`.
    fn process_now(&mut self, on_delivered: &mut impl FnMut(usize, u64, Delivered)) {
        let now = self.now_us;
        while let Some((to, path_id, datagram)) = self.net.pop_due(now) {
            self.sides[to].handle_datagram(now, path_id, &datagram);
        }
        for side in 0..2 {
            if self.sides[side].next_timeout_us().is_some_and(|t| t <= now) {
                self.sides[side].handle_timeout(now);
            }
            while let Some(t) = self.sides[side].poll_transmit(now) {
                self.hash(&now.to_le_bytes());
                self.hash(&[side as u8, t.path_id]);
                self.hash(&t.datagram);
                self.net.send(now, side, t.path_id, t.datagram);
            }
            while let Some(m) = self.sides[side].poll_delivered() {
                on_delivered(1 - side, now, m);
            }
        }
    }

    /// Runs until simulated time `until_us` (inclusive). `on_delivered` gets the side that
    /// *sent* the message (0 or 1), the delivery time and the message.
    pub fn run_until(
        &mut self,
        until_us: u64,
        mut on_delivered: impl FnMut(usize, u64, Delivered),
    ) {
        loop {
            self.process_now(&mut on_delivered);
            let next = [
                self.net.next_arrival_us(),
                self.sides[0].next_timeout_us(),
                self.sides[1].next_timeout_us(),
            ]
            .into_iter()
            .flatten()
            .min();
            // A deadline that is already due but produced nothing (say, pacing while the
            // in-flight limit is reached) must not spin: time moves at least one microsecond.
            let next = next.map_or(until_us + 1, |t| t.max(self.now_us + 1));
            if next > until_us {
                self.now_us = until_us;
                self.process_now(&mut on_delivered);
                return;
            }
            self.now_us = next;
        }
    }
}
