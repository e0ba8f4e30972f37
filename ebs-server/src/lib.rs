//! Remote EBS-style volumes.
//!
//! ```text
//!  srd/       the transport: reliable, unordered, multipath datagrams over UDP, after AWS's
//!             Scalable Reliable Datagram (docs/ebs-srd.md)
//!  proto/     the block protocol (docs/ebs-protocol.md)
//!  volumes/   the server's volumes: a catalog and extents of its one FTL
//!  server/    one client's session: protocol bytes in, replies out
//! ```
//!
//! The client side and the attach to a guest come in later slices.

#![forbid(unsafe_code)]

pub mod proto;
pub mod server;
pub mod srd;
pub mod volumes;
