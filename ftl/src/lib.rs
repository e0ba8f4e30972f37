//! Emulated NAND devices and one flash translation layer over all of them.
//!
//! ```text
//!  Ftl (ftl.rs)           public API: read (lock-free), write, trim, flush, close, stats
//!   |- engine.rs          write path: streams, allocation over every die, block close + summary
//!   |- assembly.rs        4 KiB logical pages gathered into NAND pages (slots), padding, reads
//!                         of pages still in assembly
//!   |- temperature.rs     hot/cold estimate per logical page
//!   |- trim.rs            trim log
//!   |- gc.rs              victim choice, paced relocation, erase barrier, static wear leveling
//!   |- gc_sched.rs        global GC scheduler over timed devices: which dies may collect now
//!   |- gc_background.rs   background GC, one erase or page move at a time, where allowed
//!   |- persist.rs         checkpoint writer
//!   |- persist_background.rs  the checkpoint written a page at a time under the scheduler
//!   |- recovery.rs        format, open: checkpoint + fold of changed blocks
//!   |- format/            on-NAND records (OOB, summary, trim log, checkpoint)
//!   `- nand/              NAND device model (MemNand, FileNand)
//! ```

// Denied, not forbidden: `nand/file_map.rs` (the mapping of device files) allows it.
#![deny(unsafe_code)]

mod assembly;
mod blocks;
mod bounds_log;
mod config;
mod engine;
mod error;
mod ftl;
mod gc;
mod gc_background;
mod gc_sched;
mod io;
mod layout;
mod persist;
mod persist_background;
mod recovery;
mod stats;
mod temperature;
mod trim;

pub mod format;
pub mod nand;

pub use bounds_log::{BOUNDS_LOG_MAX, BoundsDrain};
pub use config::{FtlConfig, GcPolicy};
pub use error::FtlError;
pub use format::oob::SEAL_BYTES;
pub use ftl::Ftl;
pub use gc_sched::{GcSchedStats, GcTiming, GcWork};
pub use layout::LOGICAL_PAGE_BYTES;
pub use recovery::RecoveryReport;
pub use stats::FtlStats;
