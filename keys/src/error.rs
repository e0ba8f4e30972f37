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
    #[error("instance id {id:?}: {reason}")]
    InstanceId { id: String, reason: &'static str },
    #[error(
        "the kernel user keyring is unavailable ({op}: {}), so the instance key cannot outlive \
         this process; run where add_key(2)/keyctl(2) are allowed, or use a RAM-only key",
        os_error(*errno)
    )]
    KeyringUnavailable { op: &'static str, errno: i32 },
    #[error("kernel user keyring: {op} of {description:?} failed: {}", os_error(*errno))]
    Keyring {
        op: &'static str,
        description: String,
        errno: i32,
    },
    #[error("kernel user keyring: {description:?} holds {bytes} bytes, not a {expected}-byte key")]
    KeyringPayload {
        description: String,
        bytes: usize,
        expected: usize,
    },
    #[error(
        "kernel user keyring: {description:?} changed while this process created it; another \
         process is opening the same instance"
    )]
    KeyringRace { description: String },
}

fn os_error(errno: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno)
}
