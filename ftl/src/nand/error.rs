//! Errors of the NAND model: one variant per rule, so a caller can tell a rule violation (a bug in
//! the FTL) from a media failure (a fact of life it must handle).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NandError {
    #[error("invalid geometry: {reason}")]
    Geometry { reason: String },
    #[error("address out of range: block {block} page {page}")]
    OutOfRange { block: u32, page: u32 },
    #[error("buffer of {got} bytes where the {what} needs {expected}")]
    BufferSize {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("read of {len} bytes at byte {offset} does not fit a {page_size}-byte page")]
    Range {
        offset: usize,
        len: usize,
        page_size: usize,
    },
    #[error("block {block} is marked bad")]
    BadBlock { block: u32 },
    #[error("program of block {block} page {page}: page is not erased")]
    NotErased { block: u32, page: u32 },
    #[error(
        "program of block {block} page {page}: pages must be programmed in order, next is {expected}"
    )]
    OutOfOrder {
        block: u32,
        page: u32,
        expected: u32,
    },
    #[error("read of block {block} page {page}: page is erased")]
    ErasedPage { block: u32, page: u32 },
    #[error("program of block {block} page {page} failed")]
    ProgramFailed { block: u32, page: u32 },
    #[error("erase of block {block} failed")]
    EraseFailed { block: u32 },
    #[error("read of block {block} page {page}: uncorrectable ({bits} bit errors)")]
    Uncorrectable { block: u32, page: u32, bits: u32 },
    #[error("device has lost power")]
    PowerLost,
    #[error("device file {path}: {reason}")]
    Format { path: String, reason: String },
    #[error("device file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl NandError {
    /// True for the errors a correct FTL can still receive: media failures and power loss.
    /// Everything else is a violated rule or a bad argument.
    pub fn is_media_failure(&self) -> bool {
        matches!(
            self,
            NandError::ProgramFailed { .. }
                | NandError::EraseFailed { .. }
                | NandError::Uncorrectable { .. }
                | NandError::PowerLost
                | NandError::Io { .. }
        )
    }
}
