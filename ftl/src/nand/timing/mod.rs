//! NAND timing: what each operation costs and when it runs (issue 6, "Timing model").
//!
//! ```text
//!   TimingConfig (config.rs)  tR, tPROG, tBERS, channel MB/s, suspend rules, clock mode
//!   TimingModel  (model.rs)   pure: per-die busy/suspend state, per-channel bus, u64 ns
//!   Bus          (bus.rs)     a channel's reserved transfers, earliest gap first
//!   Clock        (clock.rs)   VirtualClock (stepping or manual) | RealClock (sleeps)
//!   LatencyStats (latency.rs) per-kind counters + log2 histogram
//!   TimedNand    (timed.rs)   Nand over any Nand: charges the model, records, waits
//! ```
//!
//! Planes are not modelled: a die runs one operation at a time whatever plane it touches (the
//! `Nand` trait has no multi-plane operation to speed up).

mod bus;
mod clock;
mod config;
mod latency;
mod model;
#[cfg(test)]
mod tests;
mod timed;

pub use clock::{Clock, RealClock, VirtualClock, clock_for};
pub use config::{ClockMode, SuspendConfig, TimingConfig, TimingError};
pub use latency::{LATENCY_BUCKETS, LatencyStats, OpLatency};
pub use model::{DieActivity, OpKind, OpTiming, Segment, TimingModel};
pub use timed::TimedNand;
