//! The FTL's on-NAND records. Every one has a magic and a version; the page OOB record carries the
//! crc32 that covers its page (summary and trim-log pages rely on it), and the checkpoint stream
//! has its own. `docs/ftl-format.md` describes them byte by byte; the tests beside each encoder pin
//! every offset.

pub mod checkpoint;
pub mod entry_page;
pub mod generations;
pub mod oob;
pub mod summary;
pub mod trim_log;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("{what}: bad magic")]
    Magic { what: &'static str },
    #[error("{what}: unsupported version {version}")]
    Version { what: &'static str, version: u32 },
    #[error("{what}: checksum mismatch")]
    Checksum { what: &'static str },
    #[error("{what}: truncated")]
    Truncated { what: &'static str },
    #[error("{what}: invalid value {value}")]
    Field { what: &'static str, value: u64 },
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}
