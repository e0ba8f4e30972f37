//! Key errors. None of them ever carries key material.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key destroyed: the instance was terminated")]
    Destroyed,
    #[error("{what} failed authentication (wrong key, address, generation or tampered bytes)")]
    Authentication { what: &'static str },
    #[error("wrapped key: {reason}")]
    Format { reason: String },
    #[error("buffer of {got} bytes where {expected} are needed")]
    BufferSize { expected: usize, got: usize },
    #[error("the system random generator failed")]
    Random,
    #[error("the AEAD backend refused the key")]
    Backend,
}
