//! What a client call can fail with.

use crate::proto::Status;
use crate::srd::handshake::HandshakeError;
use std::io;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    /// The server answered with an ERROR reply.
    #[error("server refused request {request_id}: {status:?}: {message}")]
    Server {
        request_id: u64,
        status: Status,
        message: String,
    },
    /// No complete answer within the request timeout: the server is gone, restarted (it no longer
    /// knows this connection) or unreachable. The connection is unusable afterwards.
    #[error("no answer to request {request_id} within {timeout_ms} ms")]
    Timeout { request_id: u64, timeout_ms: u64 },
    /// A request after an earlier timeout or I/O failure: what was in flight is unknown, so the
    /// ordering rules cannot be kept; connect again.
    #[error("connection closed after an earlier failure; connect again")]
    Closed,
    /// The handshake failed: for `BadConfirm`, a wrong credential or a volume that does not
    /// exist (the server does not say which), or not the server.
    #[error("handshake failed: {0}")]
    Handshake(HandshakeError),
    /// No HELLO_ACK within the timeout: the server is not running, unreachable, or at its
    /// connection limit.
    #[error("no handshake answer from the server within {timeout_ms} ms")]
    NoHandshake { timeout_ms: u64 },
    /// The volume's envelope does not fit this client: a sealed volume without a KEK, a KEK for
    /// a volume in the clear, or a KEK that does not unwrap the data key.
    #[error("envelope: {0}")]
    Envelope(String),
    /// A block came back that this client's key did not seal at that address: the server (or
    /// something between) changed, moved or made it up. Its bytes are never returned.
    #[error("block {lba} refused: {detail}")]
    Integrity { lba: u64, detail: String },
    #[error("key: {0}")]
    Key(keys::KeyError),
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("invalid client config: {0}")]
    Config(String),
    /// The server answered with something that does not fit the request.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}
