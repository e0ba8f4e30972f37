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
    #[error("secret key memory: {op} failed: {}", os_error(*errno))]
    SecretMemory { op: &'static str, errno: i32 },
    #[error("secret key memory: all {limit} key pages are in use")]
    SecretMemoryFull { limit: usize },
    #[error("process protection: prctl(PR_SET_DUMPABLE) failed: {}", os_error(*errno))]
    Dumpable { errno: i32 },
}

fn os_error(errno: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno)
}
