//! The decision for one datagram on one direction of one path: dropped (and why), or when it is
//! delivered and whether a second copy follows. Pure (no sockets, no clock): the relay passes the
//! time in, so the same seed and the same sequence of datagrams give the same decisions, which
//! is what lets the tests assert exact counts over real sockets. The rules are the simulator's
//! (`srd::sim::SimNetwork::send`), kept in step by hand.

use super::PathImpairment;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    BlackHole,
    Loss,
    /// The rate-limited link's queue was longer than `queue_us_max` (tail drop).
    Queue,
}

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Drop(DropCause),
    Deliver {
        at_us: u64,
        /// A second copy, delivered at this time (never before the first).
        duplicate_at_us: Option<u64>,
        /// Held back past later datagrams of the path (outside its FIFO order).
        reordered: bool,
    },
}

/// The state of one direction of one path: its random stream, the FIFO's last delivery time
/// and when the rate-limited link is free again.
#[derive(Debug)]
pub struct Shaper {
    rng: ChaCha8Rng,
    fifo_last_us: u64,
    link_free_us: u64,
}

impl Shaper {
    /// One ChaCha stream per (path, direction) under one seed: the decisions of a direction do
    /// not depend on how datagrams of other directions interleave with it in real time.
    pub fn new(seed: u64, path: usize, to_client: bool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(path as u64 * 2 + u64::from(to_client));
        Shaper {
            rng,
            fifo_last_us: 0,
            link_free_us: 0,
        }
    }

    /// Decides the fate of a datagram of `len_bytes` arriving at `now_us` under `imp`, which
    /// the caller has validated (`impair::validate`): probabilities in 0..=1, bounded times.
    pub fn decide(&mut self, imp: &PathImpairment, now_us: u64, len_bytes: usize) -> Verdict {
        if imp.black_hole {
            return Verdict::Drop(DropCause::BlackHole);
        }
        if imp.loss > 0.0 && self.rng.random_bool(imp.loss) {
            return Verdict::Drop(DropCause::Loss);
        }
        let mut depart_us = now_us;
        if let Some(rate) = imp.rate_bytes_per_s {
            debug_assert!(rate > 0);
            depart_us = now_us.max(self.link_free_us);
            if depart_us - now_us > imp.queue_us_max {
                return Verdict::Drop(DropCause::Queue);
            }
            let serialize_us = (len_bytes as u64 * 1_000_000).div_ceil(rate.max(1));
            self.link_free_us = depart_us + serialize_us;
            depart_us += serialize_us;
        }
        let jitter_us = if imp.jitter_us > 0 {
            self.rng.random_range(0..=imp.jitter_us)
        } else {
            0
        };
        let mut at_us = depart_us + imp.delay_us + jitter_us;
        let reordered = imp.reorder > 0.0 && self.rng.random_bool(imp.reorder);
        if reordered {
            // Not bound by the FIFO: later datagrams of the path may overtake this one.
            at_us += self.rng.random_range(1..=imp.reorder_us_max.max(1));
        } else {
            at_us = at_us.max(self.fifo_last_us);
            self.fifo_last_us = at_us;
        }
        let duplicate_at_us = (imp.duplicate > 0.0 && self.rng.random_bool(imp.duplicate))
            .then(|| at_us + self.rng.random_range(0..=imp.jitter_us + 1));
        Verdict::Deliver {
            at_us,
            duplicate_at_us,
            reordered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impair::clean;

    fn deliveries(imp: &PathImpairment, n: usize) -> Vec<Verdict> {
        let mut s = Shaper::new(9, 1, false);
        (0..n).map(|i| s.decide(imp, i as u64 * 10, 1000)).collect()
    }

    proptest::proptest! {
        /// Any impairment `validate` accepts: no panic, nothing early, the FIFO holds for what is
        /// not held back, a duplicate never precedes its original.
        #[test]
        fn any_valid_impairment_keeps_the_rules(
            loss in 0.0..=1.0f64,
            reorder in 0.0..=1.0f64,
            duplicate in 0.0..=1.0f64,
            delay_us in 0..=crate::impair::TIME_US_MAX,
            jitter_us in 0..=crate::impair::TIME_US_MAX,
            reorder_us_max in 0..=crate::impair::TIME_US_MAX,
            queue_us_max in 0..=crate::impair::TIME_US_MAX,
            rate in proptest::option::of(1u64..=1_000_000_000_000),
            black_hole in proptest::bool::ANY,
            seed in 0u64..1000,
        ) {
            let imp = PathImpairment {
                loss, delay_us, jitter_us, reorder, reorder_us_max, duplicate, black_hole,
                rate_bytes_per_s: rate, queue_us_max,
            };
            proptest::prop_assert_eq!(crate::impair::validate(&imp), Ok(()));
            let mut s = Shaper::new(seed, 0, false);
            let mut fifo_last = 0;
            for i in 0..64u64 {
                let now = i * 7;
                if let Verdict::Deliver { at_us, duplicate_at_us, reordered } =
                    s.decide(&imp, now, 1 + (i as usize * 97) % 9000)
                {
                    proptest::prop_assert!(at_us >= now + delay_us);
                    proptest::prop_assert!(duplicate_at_us.is_none_or(|d| d >= at_us));
                    if !reordered {
                        proptest::prop_assert!(at_us >= fifo_last);
                        fifo_last = at_us;
                    }
                }
            }
        }
    }

    #[test]
    fn clean_delivers_everything_at_once_in_order() {
        for (i, v) in deliveries(&clean(), 100).into_iter().enumerate() {
            assert_eq!(
                v,
                Verdict::Deliver {
                    at_us: i as u64 * 10,
                    duplicate_at_us: None,
                    reordered: false
                }
            );
        }
    }

    #[test]
    fn delay_and_jitter_keep_fifo_order() {
        let imp = PathImpairment {
            delay_us: 100,
            jitter_us: 50,
            ..clean()
        };
        let mut last = 0;
        for (i, v) in deliveries(&imp, 1000).into_iter().enumerate() {
            let Verdict::Deliver { at_us, .. } = v else {
                panic!("dropped {v:?}")
            };
            assert!(at_us >= i as u64 * 10 + 100, "delivered before its delay");
            assert!(at_us >= last, "FIFO broken");
            last = at_us;
        }
    }

    #[test]
    fn same_seed_same_decisions_other_stream_other_decisions() {
        let imp = PathImpairment {
            loss: 0.3,
            ..clean()
        };
        assert_eq!(deliveries(&imp, 200), deliveries(&imp, 200));
        let mut other = Shaper::new(9, 1, true);
        let theirs: Vec<_> = (0..200)
            .map(|i| other.decide(&imp, i as u64 * 10, 1000))
            .collect();
        assert_ne!(deliveries(&imp, 200), theirs);
    }

    #[test]
    fn rate_limit_serializes_and_tail_drops() {
        // 1000 bytes at 1 MB/s take 1 ms each; a 2.5 ms queue holds three behind the first.
        let imp = PathImpairment {
            rate_bytes_per_s: Some(1_000_000),
            queue_us_max: 2_500,
            ..clean()
        };
        let mut s = Shaper::new(1, 0, false);
        let v: Vec<_> = (0..6).map(|_| s.decide(&imp, 0, 1000)).collect();
        let at = |v: &Verdict| match v {
            Verdict::Deliver { at_us, .. } => Some(*at_us),
            Verdict::Drop(_) => None,
        };
        assert_eq!(
            v.iter().map(at).collect::<Vec<_>>(),
            [Some(1000), Some(2000), Some(3000), None, None, None]
        );
        assert_eq!(v[3], Verdict::Drop(DropCause::Queue));
    }

    #[test]
    fn black_hole_drops_all_and_reorder_and_duplicate_are_marked() {
        let hole = PathImpairment {
            black_hole: true,
            ..clean()
        };
        assert!(
            deliveries(&hole, 50)
                .iter()
                .all(|v| *v == Verdict::Drop(DropCause::BlackHole))
        );
        let imp = PathImpairment {
            reorder: 0.5,
            reorder_us_max: 100,
            duplicate: 0.5,
            ..clean()
        };
        let v = deliveries(&imp, 400);
        let reordered = v
            .iter()
            .filter(|v| {
                matches!(
                    v,
                    Verdict::Deliver {
                        reordered: true,
                        ..
                    }
                )
            })
            .count();
        let duplicated = v
            .iter()
            .filter(|v| {
                matches!(
                    v,
                    Verdict::Deliver {
                        duplicate_at_us: Some(_),
                        ..
                    }
                )
            })
            .count();
        assert!((150..=250).contains(&reordered), "{reordered}");
        assert!((150..=250).contains(&duplicated), "{duplicated}");
    }
}
