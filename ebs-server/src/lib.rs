//! Remote EBS-style volumes. This first slice is the transport, [`srd`]: reliable, unordered,
//! multipath datagrams over UDP, after AWS's Scalable Reliable Datagram. The block protocol, the
//! server, the client and the attach to a guest come in later slices (docs/ebs-srd.md).

#![forbid(unsafe_code)]

pub mod srd;
