//! Clocks for timed devices: virtual (deterministic, for simulation and benchmarks) or real time
//! (for serving, where callers sleep through the modelled latency).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::config::ClockMode;

/// The time source of timed devices, in nanoseconds since the clock was made.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_ns(&self) -> u64;
    /// The caller of an operation that ends at `end_ns` waits for it: a real clock sleeps, a
    /// stepping virtual clock jumps, a manual virtual clock leaves time to its driver.
    fn wait_until(&self, end_ns: u64);
}

/// Deterministic time that moves only when told to.
#[derive(Debug, Default)]
pub struct VirtualClock {
    now_ns: AtomicU64,
    stepping: bool,
}

impl VirtualClock {
    /// Each `wait_until` advances the clock to the operation's end: a synchronous caller
    /// experiences its latency in virtual time, and a run costs only CPU time.
    pub fn stepping() -> Self {
        Self {
            now_ns: AtomicU64::new(0),
            stepping: true,
        }
    }

    /// Only `advance_*` moves the clock: an event-driven driver (a benchmark with a queue depth)
    /// issues many operations at one instant, then advances to the next completion
    /// (`TimingModel::next_event_after_ns`).
    pub fn manual() -> Self {
        Self {
            now_ns: AtomicU64::new(0),
            stepping: false,
        }
    }

    /// Moves the clock forward to `at_ns`; never backwards (time is monotonic).
    pub fn advance_to(&self, at_ns: u64) {
        self.now_ns.fetch_max(at_ns, Ordering::AcqRel);
    }

    pub fn advance_by(&self, delta_ns: u64) {
        self.now_ns.fetch_add(delta_ns, Ordering::AcqRel);
    }
}

impl Clock for VirtualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Acquire)
    }

    fn wait_until(&self, end_ns: u64) {
        if self.stepping {
            self.advance_to(end_ns);
        }
    }
}

/// Wall-clock time from a monotonic `Instant`.
#[derive(Debug)]
pub struct RealClock {
    epoch: Instant,
}

impl RealClock {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now_ns(&self) -> u64 {
        // u64 nanoseconds last 584 years.
        u64::try_from(self.epoch.elapsed().as_nanos()).expect("clock within 584 years")
    }

    fn wait_until(&self, end_ns: u64) {
        // sleep may wake early on some platforms; loop until the modelled end has passed.
        loop {
            let now_ns = self.now_ns();
            if now_ns >= end_ns {
                return;
            }
            std::thread::sleep(Duration::from_nanos(end_ns - now_ns));
        }
    }
}

/// The clock a config asks for: a stepping virtual clock or a real one.
pub fn clock_for(mode: ClockMode) -> std::sync::Arc<dyn Clock> {
    match mode {
        ClockMode::Virtual => std::sync::Arc::new(VirtualClock::stepping()),
        ClockMode::RealTime => std::sync::Arc::new(RealClock::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clocks_step_or_wait_for_their_driver() {
        let stepping = VirtualClock::stepping();
        stepping.wait_until(5_000);
        assert_eq!(stepping.now_ns(), 5_000);
        stepping.wait_until(1_000);
        assert_eq!(stepping.now_ns(), 5_000, "never backwards");
        let manual = VirtualClock::manual();
        manual.wait_until(5_000);
        assert_eq!(manual.now_ns(), 0);
        manual.advance_by(7);
        manual.advance_to(3);
        assert_eq!(manual.now_ns(), 7);
    }

    #[test]
    fn real_clock_sleeps_at_least_until_the_end() {
        let clock = RealClock::new();
        let target_ns = clock.now_ns() + 2_000_000;
        clock.wait_until(target_ns);
        assert!(clock.now_ns() >= target_ns);
    }
}
