//! NBD (Network Block Device) export of the controller's namespaces, and a Rust NBD client.
//!
//! ```text
//!  wire.rs          constants and fixed-size structures (encode/decode, offset tests)
//!  handshake.rs     fixed newstyle handshake: option haggling up to NBD_OPT_GO/EXPORT_NAME
//!  transmission.rs  the request loop of one connection over its own IoQueue
//!  connection.rs    one connection: handshake, then transmission
//!  server.rs        unix and TCP listeners, a thread per connection, the stop handle
//!  stream.rs        a unix or TCP stream behind one type
//!  client.rs        NbdClient: a synchronous client (NBD_OPT_GO, simple replies)
//!  uri.rs           nbd:// and nbd+unix:// URIs (as libnbd and fio spell them)
//! ```
//!
//! docs/nbd.md describes the protocol as Ferrite implements it.

pub mod client;
pub mod connection;
pub mod handshake;
pub mod server;
pub mod stream;
pub mod transmission;
pub mod uri;
pub mod wire;

use std::sync::Arc;

use thiserror::Error;

use crate::controller::ActiveNamespace;

pub use client::NbdClient;
pub use server::{Listen, NbdServer, NbdStopHandle};
pub use uri::NbdAddress;

/// One namespace exported under a name.
#[derive(Clone, Debug)]
pub struct Export {
    pub name: String,
    pub description: String,
    pub namespace: Arc<ActiveNamespace>,
}

impl Export {
    /// The transmission flags the export is served with.
    pub fn transmission_flags(&self) -> u16 {
        use wire::*;
        let mut flags = TFLAG_HAS_FLAGS
            | TFLAG_SEND_FLUSH
            | TFLAG_SEND_FUA
            | TFLAG_SEND_TRIM
            | TFLAG_SEND_WRITE_ZEROES
            // Safe: every connection runs on the one FTL behind the namespace, and a flush on any
            // connection flushes all of it.
            | TFLAG_CAN_MULTI_CONN;
        if self.namespace.identity().read_only {
            flags |= TFLAG_READ_ONLY;
        }
        flags
    }

    pub fn size_bytes(&self) -> u64 {
        self.namespace.capacity_bytes()
    }
}

/// Why a connection ended abnormally, or what a client call failed with.
#[derive(Debug, Error)]
pub enum NbdError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad {what} magic {found:#x} (expected {expected:#x})")]
    BadMagic {
        what: &'static str,
        found: u64,
        expected: u64,
    },
    #[error("unknown client flags {0:#x}")]
    ClientFlags(u32),
    #[error("option {option} carries {length} bytes, more than the {max} accepted")]
    OptionTooLong { option: u32, length: u32, max: u32 },
    #[error("export {0:?} does not exist")]
    UnknownExport(String),
    #[error("{command} payload of {length} bytes is more than the {max} accepted")]
    PayloadTooLarge {
        command: &'static str,
        length: u64,
        max: u32,
    },
    #[error("the peer closed the connection in the middle of a {0}")]
    Truncated(&'static str),
    #[error("NBD server refused {what}: {detail}")]
    Refused { what: String, detail: String },
    #[error("NBD server returned {} ({error}) for {command} at offset {offset}", wire::error_name(*error))]
    Server {
        command: &'static str,
        offset: u64,
        error: u32,
    },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("bad export list: {0}")]
    Exports(String),
}

/// Checks a set of exports: non-empty, names unique, each name at most 4096 bytes.
pub fn validate_exports(exports: &[Export]) -> Result<(), NbdError> {
    if exports.is_empty() {
        return Err(NbdError::Exports("no export".into()));
    }
    for (i, e) in exports.iter().enumerate() {
        if e.name.is_empty() || e.name.len() > wire::MAX_NAME_BYTES {
            return Err(NbdError::Exports(format!(
                "export name {:?} must be 1 to {} bytes",
                e.name,
                wire::MAX_NAME_BYTES
            )));
        }
        if exports[i + 1..].iter().any(|o| o.name == e.name) {
            return Err(NbdError::Exports(format!(
                "export {:?} named twice",
                e.name
            )));
        }
    }
    Ok(())
}
