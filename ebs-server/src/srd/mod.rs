//! The SRD-style transport.
//!
//! ```text
//!  packet.rs      the wire format (docs/ebs-srd.md), parse of untrusted bytes
//! ```

pub mod packet;
