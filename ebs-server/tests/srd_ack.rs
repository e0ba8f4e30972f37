//! Piggybacked and delayed acknowledgements, through the seeded simulated network (simulated
//! microseconds; nothing reads a wall clock): a request/reply exchange at queue depth 1 sends
//! no ACK datagram but the last one, a lone message is acknowledged exactly when the delay runs
//! out, and the delay causes no spurious retransmission.

use ebs_server::srd::sim::{PathImpairment, SimNetwork, SimPair};
use ebs_server::srd::{Config, Connection};

const CONNECTION_ID: u64 = 0xACC0_0000_0000_0007;

fn pair(config: &Config, seed: u64, paths: usize) -> SimPair {
    let a = Connection::new(config.clone(), CONNECTION_ID).expect("config");
    let b = Connection::new(config.clone(), CONNECTION_ID).expect("config");
    SimPair::new(
        a,
        b,
        SimNetwork::new(seed, vec![PathImpairment::default(); paths]),
    )
}

/// Side 0 sends `rounds` requests one at a time; side 1 answers each `think_us` after it
/// arrives, and side 0 sends the next request `think_us` after the reply. Returns the pair once
/// everything is acknowledged.
fn request_reply(config: &Config, seed: u64, rounds: usize, think_us: u64) -> SimPair {
    let mut pair = pair(config, seed, 4);
    pair.sides[0].send_message(vec![0; 64]).expect("send");
    let (mut replies, mut now) = (0, 0);
    // (side that acts, when): the next request or reply to send.
    let mut due: Option<(usize, u64)> = None;
    while replies < rounds {
        now += 1;
        assert!(now < 10_000_000, "only {replies} of {rounds} round trips");
        let mut arrived = None;
        pair.run_until(now, |sender, at, _| arrived = Some((1 - sender, at)));
        if let Some((receiver, at)) = arrived {
            if receiver == 0 {
                replies += 1;
            }
            due = Some((receiver, at + think_us));
        }
        if let Some((side, at)) = due
            && at <= now
            && !(side == 0 && replies == rounds)
        {
            // A request is 64 bytes, a reply 4 KiB (a READ's): both leave room in the
            // fragment for the acknowledgement.
            let len = if side == 0 { 64 } else { 4096 };
            pair.sides[side].send_message(vec![1; len]).expect("send");
            due = None;
        }
    }
    pair.run_until(now + 10_000, |_, _, _| {});
    for side in 0..2 {
        assert_eq!(pair.sides[side].unacked_messages(), 0, "side {side}");
    }
    pair
}

#[test]
fn request_reply_at_qd1_sends_no_ack_datagram_but_the_last() {
    let config = Config::default();
    const ROUNDS: usize = 200;
    // The server answers 10 us after the request, the client sends the next one 10 us after
    // the reply: both well within ack_delay_us_max.
    let pair = request_reply(&config, 7, ROUNDS, 10);
    let (client, server) = (pair.sides[0].stats(), pair.sides[1].stats());
    println!(
        "qd1, {ROUNDS} round trips: client {} standalone acks, {} piggybacked; server {} standalone, {} piggybacked; {} datagrams",
        client.acks_sent,
        client.acks_piggybacked,
        server.acks_sent,
        server.acks_piggybacked,
        pair.net.stats.sent
    );
    assert_eq!(
        server.acks_sent, 0,
        "every request's ack rides on its reply"
    );
    assert_eq!(server.acks_piggybacked, ROUNDS as u64);
    assert_eq!(
        client.acks_sent, 1,
        "every reply's ack rides on the next request, but the last reply's"
    );
    assert_eq!(client.acks_piggybacked, ROUNDS as u64 - 1);
    assert_eq!(client.retransmissions + server.retransmissions, 0);
    assert_eq!(client.spurious_losses + server.spurious_losses, 0);
    // Two datagrams per round trip, and the last ACK.
    assert_eq!(pair.net.stats.sent, 2 * ROUNDS as u64 + 1);
}

#[test]
fn a_reply_slower_than_the_delay_is_acknowledged_alone_first() {
    let config = Config::default();
    const ROUNDS: usize = 50;
    // Answers come 2x the ack delay late: every request and reply is acknowledged alone, and
    // nothing is retransmitted (the sender's timer allows for the delay).
    let pair = request_reply(&config, 8, ROUNDS, 2 * config.ack_delay_us_max);
    let (client, server) = (pair.sides[0].stats(), pair.sides[1].stats());
    assert_eq!(server.acks_sent, ROUNDS as u64);
    assert_eq!(client.acks_sent, ROUNDS as u64);
    assert_eq!(client.acks_piggybacked + server.acks_piggybacked, 0);
    assert_eq!(client.retransmissions + server.retransmissions, 0);
}

#[test]
fn a_lone_message_is_acknowledged_when_the_delay_runs_out() {
    for ack_delay_us_max in [20, 50, 100] {
        let config = Config {
            ack_delay_us_max,
            ..Config::default()
        };
        let mut pair = pair(&config, 3, 4);
        pair.sides[0].send_message(vec![5; 100]).expect("send");
        let mut arrived_us = None;
        let mut now = 0;
        while arrived_us.is_none() {
            now += 1;
            assert!(now < 1_000, "never delivered");
            pair.run_until(now, |_, at, _| arrived_us = Some(at));
        }
        let arrived_us = arrived_us.expect("delivered");
        pair.run_until(arrived_us + ack_delay_us_max - 1, |_, _, _| {});
        assert_eq!(pair.sides[1].stats().acks_sent, 0, "held for the delay");
        pair.run_until(arrived_us + ack_delay_us_max, |_, _, _| {});
        assert_eq!(
            pair.sides[1].stats().acks_sent,
            1,
            "sent when the delay runs out"
        );
        // One one-way trip later (at most 25 us on the default path) the sender has it.
        let one_way_us_max =
            PathImpairment::default().delay_us + PathImpairment::default().jitter_us;
        pair.run_until(arrived_us + ack_delay_us_max + one_way_us_max, |_, _, _| {});
        let sender = &pair.sides[0];
        assert_eq!(sender.stats().messages_acked, 1);
        assert_eq!(sender.stats().retransmissions, 0);
        // The RTT sample leaves the delay out: it is the two one-way trips alone.
        let srtt_us = sender
            .paths()
            .iter()
            .filter_map(|p| p.rtt.smoothed_us())
            .max()
            .expect("a sample");
        assert!(
            srtt_us <= 2 * one_way_us_max,
            "srtt {srtt_us} us with ack_delay_us_max {ack_delay_us_max}"
        );
    }
}

#[test]
fn a_burst_is_acknowledged_at_once_every_batch() {
    // One path, so the whole burst arrives on it.
    let config = Config {
        path_count: 1,
        ..Config::default()
    };
    let mut pair = pair(&config, 5, 1);
    for _ in 0..config.ack_batch_packets {
        pair.sides[0].send_message(vec![9; 32]).expect("send");
    }
    let mut arrivals = Vec::new();
    pair.run_until(200, |_, at, _| arrivals.push(at));
    assert_eq!(arrivals.len(), config.ack_batch_packets);
    let last = *arrivals.iter().max().expect("arrivals");
    let receiver = pair.sides[1].stats();
    assert_eq!(receiver.acks_sent, 1, "one ACK for the batch");
    // The batch was acknowledged as its last packet arrived, not a delay later: the sender has
    // it one one-way trip after that.
    let mut acked_at = None;
    for t in last..last + config.ack_delay_us_max {
        pair.run_until(t, |_, _, _| {});
        if pair.sides[0].stats().messages_acked == config.ack_batch_packets as u64 {
            acked_at = Some(t);
            break;
        }
    }
    let one_way_us_max = PathImpairment::default().delay_us + PathImpairment::default().jitter_us;
    let acked_at = acked_at.expect("acknowledged before the delay ran out");
    assert!(
        acked_at <= last + one_way_us_max,
        "acked at {acked_at}, last arrival {last}"
    );
}

#[test]
fn the_delay_causes_no_spurious_retransmission_on_a_clean_network() {
    for ack_delay_us_max in [50, 100] {
        let config = Config {
            ack_delay_us_max,
            ..Config::default()
        };
        for seed in 1..=3 {
            let mut pair = pair(&config, seed, 8);
            // Bursts both ways with quiet gaps, so some acks ride on data, some wait out the
            // delay and some go with a full batch.
            let mut now = 0;
            let mut delivered = 0;
            for round in 0..100u64 {
                let burst = 1 + (round * 7 + seed) % 12;
                for i in 0..burst {
                    let side = ((round + i) % 3 == 0) as usize;
                    pair.sides[side]
                        .send_message(vec![round as u8; 100 + (i as usize * 331) % 5000])
                        .expect("send");
                }
                now += 30 + (round * 13) % 200;
                pair.run_until(now, |_, _, _| delivered += 1);
            }
            pair.run_until(now + 20_000, |_, _, _| delivered += 1);
            let (a, b) = (pair.sides[0].stats(), pair.sides[1].stats());
            assert_eq!(
                pair.sides[0].unacked_messages() + pair.sides[1].unacked_messages(),
                0
            );
            assert_eq!(
                a.messages_delivered + b.messages_delivered,
                delivered as u64
            );
            assert_eq!(
                (
                    a.retransmissions,
                    b.retransmissions,
                    a.spurious_losses,
                    b.spurious_losses
                ),
                (0, 0, 0, 0),
                "seed {seed}, delay {ack_delay_us_max} us"
            );
            assert!(a.acks_piggybacked > 0 && b.acks_piggybacked > 0);
            assert!(a.acks_sent > 0 && b.acks_sent > 0);
        }
    }
}
