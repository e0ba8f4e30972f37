//! Remote EBS-style volumes. This first slice is the transport, [`srd`]: reliable, unordered,
//! multipath datagrams over UDP, after AWS's Scalable Reliable Datagram; and the block protocol
//! ([`proto`]). The client and the attach to
//! a guest come in later slices (docs/ebs-srd.md, docs/ebs-protocol.md).

#![forbid(unsafe_code)]

pub mod proto;
pub mod srd;
