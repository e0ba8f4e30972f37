//! Emulated NAND devices and one flash translation layer over all of them.
//!
//! ```text
//!  Ftl (ftl.rs)           public API: read (lock-free), write, trim, flush, close, stats
//!   |- engine.rs          write path: streams, allocation over every die, block close + summary
//!   |- temperature.rs     hot/cold estimate per logical page
//!   |- trim.rs            trim log
//!   |- gc.rs              victim choice, paced relocation, erase barrier, static wear leveling
//!   |- persist.rs         checkpoint writer
//!   |- recovery.rs        format, open: checkpoint + fold of changed blocks
//!   |- format/            on-NAND records (OOB, summary, trim log, checkpoint)
//!   `- nand/              NAND device model (MemNand, FileNand)
//! ```

#![forbid(unsafe_code)]

mod blocks;
mod config;
mod engine;
mod error;
mod ftl;
mod gc;
mod io;
mod layout;
mod persist;
mod recovery;
mod stats;
mod temperature;
mod trim;

pub mod format;
pub mod nand;

pub use config::{FtlConfig, GcPolicy};
pub use error::FtlError;
pub use ftl::Ftl;
pub use recovery::RecoveryReport;
pub use stats::FtlStats;
