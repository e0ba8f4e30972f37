//! Request and reply at queue depth 1 through the seeded simulated network, one path black-holed
//! in both directions mid-run: what a guest's synchronous I/O sees when a path dies. Simulated
//! microseconds only.

use ebs_server::srd::sim::{PathImpairment, SimNetwork, SimPair};
use ebs_server::srd::{Config, Connection};

const CONNECTION_ID: u64 = 0x5EED_0000_0000_0011;
const REQUEST_BYTES: usize = 4096 + 64;
const REPLY_BYTES: usize = 32;

struct Run {
    /// (request sent at, round trip) of every completed request.
    round_trips_us: Vec<(u64, u64)>,
    pair: SimPair,
}

/// Side 0 sends a request, side 1 answers each with a reply, side 0 sends the next request
/// when the reply arrives. At `black_at_us` the path that carried most of the client's data
/// goes dark: at queue depth 1 the least-loaded path is the fastest one, so that is the path
/// the next request takes.
fn qd1(
    seed: u64,
    paths: usize,
    black_at_us: u64,
    end_us: u64,
    impairment: PathImpairment,
    sizes: (usize, usize),
) -> Run {
    let config = Config {
        path_count: paths,
        ..Config::default()
    };
    let a = Connection::new(config.clone(), CONNECTION_ID).expect("config");
    let b = Connection::new(config, CONNECTION_ID).expect("config");
    let net = SimNetwork::new(seed, vec![impairment; paths]);
    let mut pair = SimPair::new(a, b, net);
    let mut round_trips_us = Vec::new();
    let mut sent_at = 0;
    pair.sides[0].send_message(vec![1; sizes.0]).expect("send");
    let mut now = 0;
    while now < end_us {
        if now == black_at_us {
            let busiest = (0..paths)
                .max_by_key(|&p| pair.sides[0].paths()[p].stats.data_packets_sent)
                .expect("paths");
            pair.net.paths[busiest].black_hole = true;
        }
        let mut delivered = Vec::new();
        pair.run_until(now, |from, at, _| delivered.push((from, at)));
        for (from, at) in delivered {
            if from == 0 {
                pair.sides[1].send_message(vec![2; sizes.1]).expect("reply");
            } else {
                round_trips_us.push((sent_at, at - sent_at));
                sent_at = at;
                pair.sides[0].send_message(vec![1; sizes.0]).expect("send");
            }
        }
        now += 1;
    }
    Run {
        round_trips_us,
        pair,
    }
}

#[test]
fn a_path_black_holed_at_queue_depth_1_costs_one_timer_not_a_backoff_series() {
    const BLACK_AT_US: u64 = 20_000;
    let config = Config::default();
    let clean = PathImpairment {
        jitter_us: 10,
        ..PathImpairment::default()
    };
    let noisy = PathImpairment {
        // A datagram now and then waits up to 2 ms, as one does behind a descheduled thread:
        // timeouts on healthy paths too, with no cross-path evidence behind them.
        reorder: 0.002,
        reorder_us_max: 2_000,
        ..clean.clone()
    };
    // The request lost on the dark path waits for its timer (the RTO floor plus the peer's
    // allowed ack delay), then goes once more on another path: one timer, not the doubling
    // series (RTO, 2 RTO, 4 RTO) that taking the dark path again and again would cost.
    let bound_us = 2 * (config.rto_us_floor + config.ack_delay_us_max);
    for (what, impairment) in [("clean", clean), ("noisy", noisy)] {
        for seed in 1..=5 {
            let run = qd1(
                seed,
                4,
                BLACK_AT_US,
                100_000,
                impairment.clone(),
                (REQUEST_BYTES, REPLY_BYTES),
            );
            let after: Vec<(u64, u64)> = run
                .round_trips_us
                .iter()
                .copied()
                .filter(|(at, _)| *at >= BLACK_AT_US - 1_000)
                .collect();
            assert!(after.len() > 1_000, "{what} seed {seed}: {}", after.len());
            let worst = after.iter().max_by_key(|&&(_, rt)| rt).copied();
            let (c, s) = (&run.pair.sides[0], &run.pair.sides[1]);
            println!(
                "{what} seed {seed}: {} round trips after the black hole, worst {worst:?} (sent at, us); \
                 timeouts client {} server {}",
                after.len(),
                c.stats().losses_by_timeout,
                s.stats().losses_by_timeout,
            );
            let worst_us = worst.map_or(0, |(_, rt)| rt);
            assert!(
                worst_us <= bound_us,
                "{what} seed {seed}: a round trip of {worst_us} us > {bound_us} us after the black hole"
            );
        }
    }
}
