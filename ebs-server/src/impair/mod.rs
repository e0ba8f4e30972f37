//! A seeded impairment layer over real sockets, for `ferrite ebs bench` and the UDP tests
//! (docs/ebs-bench.md). The kernel of the test machines has no netem, so loss, delay, jitter,
//! reordering, duplication, black holes and rate limits are applied in user space by a relay
//! that sits between a client and a server, one UDP socket pair per path.
//!
//! ```text
//!  shaper.rs    the pure per-datagram decision (drop, when to deliver, duplicate), seeded
//!  schedule.rs  the impairments at start and the timed changes of a run
//!  spec.rs      the `--impair` text form of a schedule
//!  relay.rs     the relay: threads, sockets, the timer heap, stats
//!  netns.rs     network namespaces + veth + nftables drops, for TCP (where user space cannot
//!               drop segments); needs root, `ip` and `nft`
//! ```
//!
//! The impairments of one path are [`PathImpairment`], the same struct the simulated network of
//! the transport tests uses (`srd::sim`), so a scenario reads the same in both.

pub mod netns;
pub mod relay;
pub mod schedule;
pub mod shaper;
pub mod spec;

pub use crate::srd::sim::PathImpairment;
pub use relay::{DirectionStats, PathStats, Relay, RelayConfig, RelayError, RelayHandle};
pub use schedule::{Change, Event, Schedule, Scope};
pub use spec::{SpecError, parse_spec};

/// Most paths a relay serves (the transport's own ceiling, `srd::config::PATHS_MAX`).
pub const PATHS_MAX: usize = 64;
/// Longest delay, jitter, reorder hold or rate-limit queue a path may be given: a minute is far
/// beyond any retransmission timer, and bounding it keeps every sum of times far from overflow.
pub const TIME_US_MAX: u64 = 60_000_000;

/// No impairment at all: what a relay path does before it is told otherwise. Unlike
/// `PathImpairment::default()` (the simulator's, 20 us +- 5 us of made-up propagation), a real
/// socket already has its own delay.
pub fn clean() -> PathImpairment {
    PathImpairment {
        loss: 0.0,
        delay_us: 0,
        jitter_us: 0,
        reorder: 0.0,
        reorder_us_max: 0,
        duplicate: 0.0,
        black_hole: false,
        rate_bytes_per_s: None,
        queue_us_max: PathImpairment::default().queue_us_max,
    }
}

/// Checks an impairment before a relay uses it: probabilities in 0..=1 (a random draw with any
/// other would panic), times within [`TIME_US_MAX`], a rate above zero.
pub fn validate(imp: &PathImpairment) -> Result<(), String> {
    for (name, p) in [
        ("loss", imp.loss),
        ("reorder", imp.reorder),
        ("duplicate", imp.duplicate),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("{name} {p} is not a probability in 0..=1"));
        }
    }
    for (name, t) in [
        ("delay_us", imp.delay_us),
        ("jitter_us", imp.jitter_us),
        ("reorder_us_max", imp.reorder_us_max),
        ("queue_us_max", imp.queue_us_max),
    ] {
        if t > TIME_US_MAX {
            return Err(format!("{name} {t} is over {TIME_US_MAX}"));
        }
    }
    if imp.rate_bytes_per_s == Some(0) {
        return Err("rate_bytes_per_s must be positive (None for no limit)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_is_valid_and_does_nothing() {
        let c = clean();
        assert_eq!(validate(&c), Ok(()));
        assert_eq!(
            (c.loss, c.delay_us, c.jitter_us, c.black_hole),
            (0.0, 0, 0, false)
        );
    }

    #[test]
    fn validate_refuses_what_would_panic_or_overflow() {
        let nan = PathImpairment {
            loss: f64::NAN,
            ..clean()
        };
        assert!(validate(&nan).unwrap_err().contains("loss"));
        let big = PathImpairment {
            duplicate: 1.5,
            ..clean()
        };
        assert!(validate(&big).unwrap_err().contains("duplicate"));
        let long = PathImpairment {
            jitter_us: TIME_US_MAX + 1,
            ..clean()
        };
        assert!(validate(&long).unwrap_err().contains("jitter_us"));
        let zero = PathImpairment {
            rate_bytes_per_s: Some(0),
            ..clean()
        };
        assert!(validate(&zero).is_err());
    }
}
