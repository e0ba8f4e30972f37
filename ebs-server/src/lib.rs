//! Remote EBS-style volumes. This first slice is the transport, [`srd`]: reliable, unordered,
//! multipath datagrams over UDP, after AWS's Scalable Reliable Datagram; the block protocol
//! ([`proto`]), the server's volumes on its own FTL ([`volumes`]) and a client session of the
//! server ([`server`]). The client side and the attach to a guest come in later slices (docs/ebs-srd.md, docs/ebs-protocol.md).

#![forbid(unsafe_code)]

pub mod proto;
pub mod server;
pub mod srd;
pub mod volumes;
