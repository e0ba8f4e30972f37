//! FTL errors: what a caller of the logical block space can see.

use thiserror::Error;

use crate::format::FormatError;
use crate::nand::NandError;

#[derive(Debug, Error)]
pub enum FtlError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("devices do not form one FTL: {0}")]
    Devices(String),
    #[error("logical page {lpa} is past the end ({logical_pages} pages)")]
    OutOfRange { lpa: u64, logical_pages: u64 },
    #[error("buffer of {got} bytes where a logical page is {expected}")]
    BufferSize { expected: usize, got: usize },
    #[error("read-only: {reason}")]
    ReadOnly { reason: String },
    #[error("media error: logical page {lpa} cannot be read ({detail})")]
    Media { lpa: u64, detail: String },
    #[error("power lost")]
    PowerLost,
    #[error("no formatted FTL on these devices (no checkpoint and no data); format them first")]
    NotFormatted,
    #[error("recovery: {0}")]
    Recovery(String),
    #[error("on-NAND record: {0}")]
    Format(#[from] FormatError),
    #[error("NAND: {0}")]
    Nand(NandError),
    #[error("page seal: {0}")]
    Key(keys::KeyError),
}

impl From<NandError> for FtlError {
    fn from(e: NandError) -> Self {
        match e {
            NandError::PowerLost => FtlError::PowerLost,
            other => FtlError::Nand(other),
        }
    }
}
