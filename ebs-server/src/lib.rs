//! Remote EBS-style volumes.
//!
//! ```text
//!  srd/       the transport: reliable, unordered, multipath datagrams over UDP, after AWS's
//!             Scalable Reliable Datagram (docs/ebs-srd.md)
//!  proto/     the block protocol (docs/ebs-protocol.md)
//!  volumes/   the server's volumes: a catalog and extents of its one FTL
//!  server/    one client's session (protocol bytes in, replies out) and the server over UDP
//!  client/    RemoteVolume: a blocking client of one volume, keeping the ordering rules
//!  impair/    a seeded impairment relay over real UDP sockets, and netns + nftables loss for
//!             TCP, for the tests and `ferrite ebs bench` (docs/ebs-bench.md)
//! ```
//!
//! The attach to a guest comes in a later slice.

#![forbid(unsafe_code)]

pub mod client;
pub mod impair;
pub mod proto;
pub mod server;
pub mod srd;
pub mod volumes;
