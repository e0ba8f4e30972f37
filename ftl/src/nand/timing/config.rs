//! `TimingConfig`: the NAND latencies the timing model charges, in the units datasheets use (us,
//! MB/s), each validated against limits with an error that names the field.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Limits of each knob: wide enough for every real part (SLC to QLC), narrow enough that the
/// model's u64 nanosecond sums cannot overflow in any run a machine can finish.
const READ_US_MAX: u64 = 10_000;
const PROGRAM_US_MAX: u64 = 100_000;
const ERASE_US_MAX: u64 = 1_000_000;
const CHANNEL_MB_PER_S_MAX: u64 = 100_000;
const SUSPEND_COST_US_MAX: u64 = 1_000;
const SUSPENDS_PER_OP_MAX: u64 = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TimingError {
    #[error("timing config: {field} = {value} is not in {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
}

/// Where the time of a timed device comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockMode {
    /// Deterministic virtual time: nobody sleeps, a run takes as long as the CPU work.
    Virtual,
    /// Wall-clock time: each caller sleeps until its operation's modelled end, so clients
    /// experience the latency (serving).
    RealTime,
}

/// Program/erase suspend: a read to a die busy programming or erasing may interrupt it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuspendConfig {
    pub enabled: bool,
    /// Time from the suspend command until the die accepts the read (tSUS-like).
    pub suspend_cost_us: u64,
    /// Time the die spends resuming the suspended operation after the reads (lost progress).
    pub resume_cost_us: u64,
    /// Suspensions one program accepts; reads after that wait for it to finish (real parts
    /// limit this so a stream of reads cannot starve a program forever).
    pub max_suspends_per_op: u32,
    /// Suspensions one erase accepts. An erase (tBERS 3 ms) meets 5 times the reads of a program
    /// (tPROG 600 us) at the same read rate: the default gives it the program's suspensions per
    /// unit of time (4 per 600 us), not the same count (measured with 4: the p99.99 reads of
    /// `bench gc` waited for erases past their limit, 1.1-1.2 ms).
    pub max_suspends_per_erase: u32,
}

impl Default for SuspendConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            suspend_cost_us: 20,
            resume_cost_us: 10,
            max_suspends_per_op: 4,
            max_suspends_per_erase: 20,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimingConfig {
    /// tR: array to page register.
    pub read_us: u64,
    /// tPROG: page register to array.
    pub program_us: u64,
    /// tBERS: one block erase.
    pub erase_us: u64,
    /// Channel bus bandwidth (MB = 10^6 bytes); one transfer at a time per channel.
    pub channel_mb_per_s: u64,
    pub suspend: SuspendConfig,
    pub clock: ClockMode,
}

impl Default for TimingConfig {
    fn default() -> Self {
        Self {
            read_us: 50,
            program_us: 600,
            erase_us: 3_000,
            channel_mb_per_s: 800,
            suspend: SuspendConfig::default(),
            clock: ClockMode::Virtual,
        }
    }
}

impl TimingConfig {
    /// Checks every field; the first one out of its limits is the error.
    pub fn validate(&self) -> Result<(), TimingError> {
        let s = &self.suspend;
        let checks: [(&'static str, u64, u64, u64); 8] = [
            ("read_us", self.read_us, 1, READ_US_MAX),
            ("program_us", self.program_us, 1, PROGRAM_US_MAX),
            ("erase_us", self.erase_us, 1, ERASE_US_MAX),
            (
                "channel_mb_per_s",
                self.channel_mb_per_s,
                1,
                CHANNEL_MB_PER_S_MAX,
            ),
            (
                "suspend.suspend_cost_us",
                s.suspend_cost_us,
                0,
                SUSPEND_COST_US_MAX,
            ),
            (
                "suspend.resume_cost_us",
                s.resume_cost_us,
                0,
                SUSPEND_COST_US_MAX,
            ),
            (
                "suspend.max_suspends_per_op",
                u64::from(s.max_suspends_per_op),
                0,
                SUSPENDS_PER_OP_MAX,
            ),
            (
                "suspend.max_suspends_per_erase",
                u64::from(s.max_suspends_per_erase),
                0,
                SUSPENDS_PER_OP_MAX,
            ),
        ];
        for (field, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(TimingError::OutOfRange {
                    field,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// Nanoseconds the channel needs to move `bytes` (rounded up: a transfer never takes 0 ns).
    pub fn transfer_ns(&self, bytes: u64) -> u64 {
        assert!(self.channel_mb_per_s > 0);
        // bytes / (mb * 10^6 B/s) s = bytes * 1000 / mb ns.
        (bytes * 1_000).div_ceil(self.channel_mb_per_s).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issue_figures_and_valid() {
        let c = TimingConfig::default();
        c.validate().expect("defaults");
        assert_eq!((c.read_us, c.program_us, c.erase_us), (50, 600, 3_000));
        // 4 KiB at 800 MB/s: 5.12 us.
        assert_eq!(c.transfer_ns(4096), 5_120);
        assert_eq!(c.transfer_ns(1), 2);
        assert!(c.suspend.enabled);
    }

    #[test]
    fn rejects_each_field_by_name() {
        let c = TimingConfig::default();
        let s = c.suspend;
        let cases = [
            (TimingConfig { read_us: 0, ..c }, "read_us"),
            (
                TimingConfig {
                    program_us: 100_001,
                    ..c
                },
                "program_us",
            ),
            (TimingConfig { erase_us: 0, ..c }, "erase_us"),
            (
                TimingConfig {
                    channel_mb_per_s: 0,
                    ..c
                },
                "channel_mb_per_s",
            ),
            (
                TimingConfig {
                    suspend: SuspendConfig {
                        suspend_cost_us: 1_001,
                        ..s
                    },
                    ..c
                },
                "suspend.suspend_cost_us",
            ),
            (
                TimingConfig {
                    suspend: SuspendConfig {
                        resume_cost_us: 5_000,
                        ..s
                    },
                    ..c
                },
                "suspend.resume_cost_us",
            ),
            (
                TimingConfig {
                    suspend: SuspendConfig {
                        max_suspends_per_op: 65,
                        ..s
                    },
                    ..c
                },
                "suspend.max_suspends_per_op",
            ),
            (
                TimingConfig {
                    suspend: SuspendConfig {
                        max_suspends_per_erase: 65,
                        ..s
                    },
                    ..c
                },
                "suspend.max_suspends_per_erase",
            ),
        ];
        for (config, name) in cases {
            match config.validate() {
                Err(TimingError::OutOfRange { field, .. }) => assert_eq!(field, name),
                Ok(()) => panic!("{name} accepted"),
            }
        }
    }

    #[test]
    fn serde_round_trip_and_unknown_field_rejected() {
        let c = TimingConfig::default();
        let text = serde_json::to_string(&c).expect("serialize");
        let back: TimingConfig = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, c);
        let partial: TimingConfig =
            serde_json::from_str(r#"{"read_us": 70, "clock": "real-time"}"#).expect("parse");
        assert_eq!(partial.read_us, 70);
        assert_eq!(partial.clock, ClockMode::RealTime);
        assert_eq!(partial.program_us, 600);
        let err = serde_json::from_str::<TimingConfig>(r#"{"tR": 70}"#).expect_err("unknown");
        assert!(err.to_string().contains("tR"), "{err}");
    }
}
