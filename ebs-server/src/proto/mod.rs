//! The block protocol, version 1: the messages a client and the volume server exchange over the
//! transport (one message per transport message). `docs/ebs-protocol.md` gives every byte.
//!
//! ```text
//!  wire.rs     header, bodies, encode and the checked parse of untrusted bytes
//!  status.rs   the status codes an error reply carries
//! ```
//!
//! A block payload is self-contained: a WRITE carries one 4 KiB block with its address, and a READ
//! of N blocks is answered by N DATA messages, each with its address, so either side applies a
//! block the moment its message arrives, in whatever order the transport delivers them.

mod status;
mod wire;

pub use status::Status;
pub use wire::{
    ATTACH_CREDENTIAL_MAX, BLOCK_BYTES, BLOCK_SEAL_BYTES, Body, HEADER_LEN, MAGIC, MESSAGE_LEN_MAX,
    Message, READ_BLOCKS_MAX, Reply, Request, TRIM_BLOCKS_MAX, VERSION, VOLUME_NAME_MAX,
    WRAPPED_KEY_MAX, WireError, request_id_of, valid_volume_name,
};
