//! Power-on time of a controller for the SMART/health log: the serve time accumulated by earlier
//! runs (persisted by whoever runs the controller; `ferrite serve` keeps it in its instance
//! record) plus the time since this run started.

use std::time::Instant;

const SECONDS_PER_HOUR: u64 = 3600;

#[derive(Debug)]
pub struct PowerOnClock {
    /// Seconds powered on before this run.
    base_seconds: u64,
    /// When this run started; None for a controller that is not running (a stopped instance
    /// queried offline), whose time is only what was persisted.
    started: Option<Instant>,
}

impl PowerOnClock {
    /// A clock that runs from now, on top of `base_seconds` from earlier runs.
    pub fn running(base_seconds: u64) -> Self {
        Self {
            base_seconds,
            started: Some(Instant::now()),
        }
    }

    /// A clock that does not run: a stopped instance that has been on for `base_seconds`.
    pub fn stopped(base_seconds: u64) -> Self {
        Self {
            base_seconds,
            started: None,
        }
    }

    pub fn seconds(&self) -> u64 {
        let now = self.started.map_or(0, |s| s.elapsed().as_secs());
        self.base_seconds.saturating_add(now)
    }

    /// Whole hours, rounded down, as NVMe reports power-on hours.
    pub fn hours(&self) -> u64 {
        self.seconds() / SECONDS_PER_HOUR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_round_down_and_a_stopped_clock_keeps_its_base() {
        assert_eq!(PowerOnClock::stopped(3599).hours(), 0);
        assert_eq!(PowerOnClock::stopped(7200).hours(), 2);
        assert_eq!(PowerOnClock::stopped(7200).seconds(), 7200);
        let running = PowerOnClock::running(10 * SECONDS_PER_HOUR + 5);
        assert!(running.seconds() >= 10 * SECONDS_PER_HOUR + 5);
        assert_eq!(running.hours(), 10);
        assert_eq!(PowerOnClock::stopped(u64::MAX).seconds(), u64::MAX);
    }
}
