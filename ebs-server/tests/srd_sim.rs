//! Two SRD connections driven through the seeded simulated network. Every bound here is in
//! simulated microseconds; nothing reads a wall clock.

use ebs_server::srd::packet::{Body, Data, Packet};
use ebs_server::srd::sim::{PathImpairment, SimNetwork, SimPair};
use ebs_server::srd::{Config, Connection, Stats};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, VecDeque};

const CONNECTION_ID: u64 = 0x5EED_0000_0000_0007;

struct Scenario {
    seed: u64,
    paths: Vec<PathImpairment>,
    config: Config,
    /// Messages each side sends.
    messages_per_side: [usize; 2],
    size_max: usize,
    submit_every_us: u64,
    give_up_us: u64,
}

impl Scenario {
    fn new(seed: u64, paths: Vec<PathImpairment>) -> Self {
        Scenario {
            seed,
            paths,
            config: Config::default(),
            messages_per_side: [1500, 500],
            size_max: 6000,
            submit_every_us: 4,
            give_up_us: 2_000_000,
        }
    }
}

#[derive(Debug)]
struct Outcome {
    stats: [Stats; 2],
    trace_hash: u64,
    /// Submission -> delivery of every message, by sending side and message id.
    latency_us: [HashMap<u64, u64>; 2],
    submitted_us: [HashMap<u64, u64>; 2],
    end_us: u64,
    pair: SimPair,
}

impl Outcome {
    fn max_latency_us(&self, submitted_after_us: u64) -> u64 {
        (0..2)
            .flat_map(|s| {
                self.latency_us[s]
                    .iter()
                    .filter(move |(id, _)| self.submitted_us[s][id] >= submitted_after_us)
                    .map(|(_, &l)| l)
            })
            .max()
            .unwrap_or(0)
    }
}

/// Runs the scenario; `at_time(pair, now_us)` may change the network as time passes. Asserts
/// that every message is delivered exactly once and byte-identical.
fn run(s: Scenario, mut at_time: impl FnMut(&mut SimPair, u64)) -> Outcome {
    let a = Connection::new(s.config.clone(), CONNECTION_ID).expect("config");
    let b = Connection::new(s.config.clone(), CONNECTION_ID).expect("config");
    let mut pair = SimPair::new(a, b, SimNetwork::new(s.seed, s.paths));
    let mut content_rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0xC0FFEE);
    let mut to_submit: [VecDeque<Vec<u8>>; 2] = [0, 1].map(|side| {
        (0..s.messages_per_side[side])
            .map(|_| {
                let len = content_rng.random_range(0..=s.size_max);
                (0..len).map(|_| content_rng.random()).collect()
            })
            .collect()
    });
    let mut expected: [HashMap<u64, Vec<u8>>; 2] = [HashMap::new(), HashMap::new()];
    let mut submitted_us: [HashMap<u64, u64>; 2] = [HashMap::new(), HashMap::new()];
    let mut latency_us: [HashMap<u64, u64>; 2] = [HashMap::new(), HashMap::new()];
    let total: usize = s.messages_per_side.iter().sum();
    let mut delivered = 0;
    let mut now = 0;
    while delivered < total {
        assert!(
            now < s.give_up_us,
            "only {delivered} of {total} delivered by {now} us"
        );
        let mut arrivals = Vec::new();
        pair.run_until(now, |side, at, m| arrivals.push((side, at, m)));
        for (side, at, m) in arrivals {
            let want = expected[side]
                .remove(&m.message_id)
                .expect("delivered twice or never sent");
            assert!(
                want == m.payload,
                "message {} from side {side} corrupted",
                m.message_id
            );
            latency_us[side].insert(m.message_id, at - submitted_us[side][&m.message_id]);
            delivered += 1;
        }
        at_time(&mut pair, now);
        for side in 0..2 {
            if let Some(payload) = to_submit[side].front() {
                match pair.sides[side].send_message(payload.clone()) {
                    Ok(id) => {
                        let payload = to_submit[side].pop_front().expect("front");
                        expected[side].insert(id, payload);
                        submitted_us[side].insert(id, now);
                    }
                    Err(e) => assert!(
                        matches!(e, ebs_server::srd::SendError::QueueFull { .. }),
                        "{e}"
                    ),
                }
            }
        }
        now += s.submit_every_us;
    }
    // Let the last acknowledgements through, then check nothing was delivered a second time.
    let mut late = 0;
    pair.run_until(now + 50_000, |_, _, _| late += 1);
    assert_eq!(late, 0, "messages delivered after all were delivered");
    for side in 0..2 {
        assert_eq!(
            pair.sides[side].unacked_messages(),
            0,
            "side {side} still waits for acks"
        );
        assert_eq!(
            pair.sides[side].stats().messages_delivered as usize,
            s.messages_per_side[1 - side]
        );
    }
    Outcome {
        stats: [pair.sides[0].stats().clone(), pair.sides[1].stats().clone()],
        trace_hash: pair.trace_hash,
        latency_us,
        submitted_us,
        end_us: now,
        pair,
    }
}

fn uniform(n: usize, imp: PathImpairment) -> Vec<PathImpairment> {
    vec![imp; n]
}

fn lossy(seed: u64) -> Scenario {
    Scenario::new(
        seed,
        uniform(
            8,
            PathImpairment {
                loss: 0.05,
                jitter_us: 10,
                ..PathImpairment::default()
            },
        ),
    )
}

#[test]
fn integrity_under_five_percent_loss_on_every_path() {
    let out = run(lossy(1), |_, _| {});
    let net = &out.pair.net.stats;
    assert!(net.dropped_loss > 100, "{net:?}");
    let retransmissions = out.stats[0].retransmissions + out.stats[1].retransmissions;
    assert!(retransmissions > 0);
    println!(
        "5% loss: {} datagrams dropped, {retransmissions} retransmissions, max latency {} us, finished at {} us",
        net.dropped_loss,
        out.max_latency_us(0),
        out.end_us
    );
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let first = run(lossy(7), |_, _| {});
    let again = run(lossy(7), |_, _| {});
    assert_eq!(first.trace_hash, again.trace_hash);
    assert_eq!(first.stats, again.stats);
    assert_eq!(first.latency_us, again.latency_us);
    let other = run(lossy(8), |_, _| {});
    assert_ne!(first.trace_hash, other.trace_hash);
}

#[test]
fn a_black_holed_path_is_left_without_losing_a_message_and_rejoins_once_probed() {
    const BLACK_HOLE_US: u64 = 3_000;
    const BLACK_PATH: usize = 3;
    const RESTORE_US: u64 = 7_000;
    let paths = uniform(
        8,
        PathImpairment {
            jitter_us: 10,
            ..PathImpairment::default()
        },
    );
    let one_way_us_max = paths[0].delay_us + paths[0].jitter_us;
    let config = Config::default();
    let mut scenario = Scenario::new(11, paths);
    scenario.messages_per_side = [3000, 500];
    let mut rto_us_at_black_hole = 0;
    let mut data_on_path_when_suspect = None;
    let mut data_on_path_when_restored = None;
    let mut black_holed = false;
    let out = run(scenario, |pair, now| {
        if now >= BLACK_HOLE_US && !black_holed {
            black_holed = true;
            pair.net.paths[BLACK_PATH].black_hole = true;
            let path = &pair.sides[0].paths()[BLACK_PATH];
            rto_us_at_black_hole = path.rto_us(
                config.rto_us_floor,
                config.rto_us_ceiling,
                config.rto_us_initial,
            );
        }
        let path = &pair.sides[0].paths()[BLACK_PATH];
        if path.health() == ebs_server::srd::path::Health::Suspect
            && data_on_path_when_suspect.is_none()
        {
            data_on_path_when_suspect = Some(path.stats.data_packets_sent);
        }
        if now >= RESTORE_US && data_on_path_when_restored.is_none() {
            pair.net.paths[BLACK_PATH].black_hole = false;
            data_on_path_when_restored = Some(path.stats.data_packets_sent);
        }
    });
    let path = &out.pair.sides[0].paths()[BLACK_PATH];
    assert!(path.stats.times_suspect >= 1, "{:?}", path.stats);
    assert!(path.stats.probes_sent >= 1);
    assert_eq!(
        data_on_path_when_restored, data_on_path_when_suspect,
        "a suspect path carried data before a probe was answered"
    );
    assert_eq!(
        path.health(),
        ebs_server::srd::path::Health::Healthy,
        "answered probe"
    );
    let after_restore = path.stats.data_packets_sent - data_on_path_when_restored.unwrap_or(0);
    assert!(
        after_restore > 0,
        "the path carries data again once a probe is answered"
    );
    // A message in flight on the path when it went dark waits at most for its timer (the path's
    // RTO then, plus the peer's allowed ack delay) and a retransmission on another path: one
    // one-way trip, plus a round trip of slack for a fragment queued behind the pacing.
    let bound_us = rto_us_at_black_hole + config.ack_delay_us_max + 3 * one_way_us_max;
    let stall_us = out.max_latency_us(BLACK_HOLE_US.saturating_sub(2 * one_way_us_max));
    let clean_us = out
        .max_latency_us(0)
        .min(out.max_latency_us_before(BLACK_HOLE_US));
    println!(
        "black hole: rto at black-holing {rto_us_at_black_hole} us, longest message stall {stall_us} us \
         (bound {bound_us} us, before the black hole {clean_us} us), {} packets moved off the suspect path, \
         {after_restore} data packets on it after it came back",
        out.stats[0].losses_on_suspect_path
    );
    assert!(
        stall_us <= bound_us,
        "stall {stall_us} us > bound {bound_us} us"
    );
}

impl Outcome {
    fn max_latency_us_before(&self, submitted_before_us: u64) -> u64 {
        (0..2)
            .flat_map(|s| {
                self.latency_us[s]
                    .iter()
                    .filter(move |(id, _)| self.submitted_us[s][id] < submitted_before_us)
                    .map(|(_, &l)| l)
            })
            .max()
            .unwrap_or(0)
    }
}

#[test]
fn reordering_across_paths_causes_no_retransmission() {
    // Eight paths from 10 us to 290 us one way: a packet on path 0 overtakes many on path 7.
    let paths = (0..8)
        .map(|i| PathImpairment {
            delay_us: 10 + 40 * i,
            jitter_us: 5,
            ..PathImpairment::default()
        })
        .collect();
    let out = run(Scenario::new(21, paths), |_, _| {});
    for side in 0..2 {
        let s = &out.stats[side];
        let timeouts: Vec<u64> = out.pair.sides[side]
            .paths()
            .iter()
            .map(|p| p.stats.timeouts)
            .collect();
        assert_eq!(s.retransmissions, 0, "side {side}: {s:?} {timeouts:?}");
        assert_eq!(s.spurious_losses, 0);
        assert_eq!(s.fragments_duplicate, 0);
    }
    let per_path: Vec<u64> = out.pair.sides[0]
        .paths()
        .iter()
        .map(|p| p.stats.data_packets_sent)
        .collect();
    assert!(
        per_path.iter().all(|&n| n > 0),
        "every path used: {per_path:?}"
    );
    println!("reordering: 0 retransmissions, data packets per path {per_path:?}");
}

#[test]
fn duplicated_datagrams_are_delivered_once() {
    let paths = uniform(
        8,
        PathImpairment {
            duplicate: 0.2,
            ..PathImpairment::default()
        },
    );
    let out = run(Scenario::new(31, paths), |_, _| {});
    assert!(out.pair.net.stats.duplicated > 100);
    assert!(
        out.stats[1].fragments_duplicate > 0,
        "the receiver saw the duplicates"
    );
}

#[test]
fn forged_and_garbage_datagrams_are_dropped_and_counted() {
    let mut forged = 0;
    let mut scenario = Scenario::new(41, uniform(4, PathImpairment::default()));
    scenario.config.path_count = 4;
    let out = run(scenario, |pair, now| {
        if now % 400 != 0 || now > 20_000 {
            return;
        }
        let at = now + 1;
        let garbage: Vec<u8> = (0..64).map(|_| pair.net.rng().random()).collect();
        pair.net.inject(at, 1, 0, garbage);
        let payload = [0xEE; 16];
        let data = |connection_id, path_id| Packet {
            connection_id,
            packet_number: 1 << 40,
            path_id,
            body: Body::Data(Data {
                message_id: 0,
                message_len: 16,
                fragment_offset: 0,
                fragment_index: 0,
                fragment_count: 1,
                payload: &payload,
            }),
        };
        let mut bad_crc = data(CONNECTION_ID, 1).encode();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xFF;
        pair.net.inject(at, 1, 1, bad_crc);
        pair.net
            .inject(at, 1, 2, data(CONNECTION_ID ^ 1, 2).encode());
        // Claims path 3 but arrives on path 2.
        pair.net.inject(at, 1, 2, data(CONNECTION_ID, 3).encode());
        forged += 1;
    });
    let s = &out.stats[1];
    assert_eq!(s.dropped_malformed, 2 * forged, "{s:?}");
    assert_eq!(s.dropped_wrong_connection, forged);
    assert_eq!(s.dropped_wrong_path, forged);
    assert!(s.last_drop.is_some());
}

#[test]
fn one_slow_path_loses_its_traffic_not_the_rate() {
    let mut paths = uniform(8, PathImpairment::default());
    // 400 us one way keeps its round trip under the initial RTO, so no timer fires before the
    // first sample shows the path is slow.
    paths[5].delay_us = 400;
    let mut scenario = Scenario::new(51, paths);
    scenario.messages_per_side = [3000, 0];
    let out = run(scenario, |_, _| {});
    let per_path: Vec<u64> = out.pair.sides[0]
        .paths()
        .iter()
        .map(|p| p.stats.data_packets_sent)
        .collect();
    let fair = per_path.iter().sum::<u64>() / 8;
    assert!(
        per_path[5] * 10 < fair,
        "slow path kept {} of a fair {fair}: {per_path:?}",
        per_path[5]
    );
    assert_eq!(
        out.pair.sides[0].congestion().cuts,
        0,
        "one slow path must not cut the rate"
    );
    assert_eq!(out.stats[0].retransmissions, 0);
    println!("one slow path: data packets per path {per_path:?}");
}

#[test]
fn queues_on_most_paths_cut_the_rate() {
    // 4 paths of 2 MB/s each under an offered load of ~1.5 GB/s: queues build on every path.
    let paths = uniform(
        4,
        PathImpairment {
            rate_bytes_per_s: Some(2_000_000),
            queue_us_max: 5_000,
            ..PathImpairment::default()
        },
    );
    let mut scenario = Scenario::new(61, paths);
    scenario.config.path_count = 4;
    scenario.messages_per_side = [400, 0];
    scenario.submit_every_us = 2;
    scenario.give_up_us = 20_000_000;
    let out = run(scenario, |_, _| {});
    let cc = out.pair.sides[0].congestion();
    assert!(cc.cuts > 0);
    assert!(
        cc.rate_bytes_per_s() < Config::default().rate_bytes_per_s_initial,
        "rate {} not below its start",
        cc.rate_bytes_per_s()
    );
    println!(
        "rate-limited paths: {} cuts, rate {} B/s, {} queue drops",
        cc.cuts,
        cc.rate_bytes_per_s(),
        out.pair.net.stats.dropped_queue
    );
}

#[test]
fn reordering_within_a_path_loses_nothing() {
    // 10% of datagrams held back by up to 60 us on every path: past the packet threshold some of
    // them look lost, and the late original and its retransmission must still deliver once.
    let paths = uniform(
        8,
        PathImpairment {
            reorder: 0.1,
            reorder_us_max: 60,
            ..PathImpairment::default()
        },
    );
    let out = run(Scenario::new(71, paths), |_, _| {});
    assert!(
        out.pair.net.stats.reordered > 100,
        "{:?}",
        out.pair.net.stats
    );
    let spurious = out.stats[0].spurious_losses + out.stats[1].spurious_losses;
    println!(
        "reordering within paths: {} datagrams held back, {spurious} spurious losses",
        out.pair.net.stats.reordered
    );
}
