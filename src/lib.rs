//! Ferrite's command-line pieces, as a library so that tests, benches and the `ferrite` binary
//! share them: workloads, the deterministic simulation (`sim`), the FTL benchmark (`bench_ftl`),
//! the traits they drive the FTL through (`target`) and in-memory fakes of it (`fake`).
#![forbid(unsafe_code)]

pub mod args;
pub mod bench_ftl;
pub mod bench_gc;
pub mod bench_recovery;
pub mod cli;
pub mod control_socket;
pub mod ebs;
pub mod fake;
pub mod fio;
pub mod glue;
pub mod permutation;
pub mod progress;
pub mod serve;
pub mod sim;
pub mod sim_gc;
pub mod svg;
pub mod target;
pub mod workload;
