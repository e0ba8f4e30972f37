//! vhost-user-blk transport on the rust-vmm crates.

pub mod backend;
pub mod config;
pub mod daemon;
pub mod fuzz_input;
pub mod request;
pub mod worker;

pub use backend::BlkBackend;
pub use config::TransportOptions;
pub use daemon::{DaemonError, StopHandle, serve};
