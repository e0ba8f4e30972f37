//! The `Namespace` trait: a logical block space in whole blocks, as a backend provides it.
//!
//! The controller (queue.rs) turns sector-addressed requests into whole-block calls on this trait,
//! so a backend never sees a partial block. Today's backend is a local FTL volume (ftl_backend.rs);
//! a remote one (an EBS-style client) implements the same trait.

use std::fmt::Debug;

use thiserror::Error;

use crate::status::Status;

/// What a backend can fail with, mapped to an NVMe status by `status()`.
#[derive(Debug, Error)]
pub enum NamespaceError {
    #[error("block {lba} (+{count}) is past the end of the namespace")]
    OutOfRange { lba: u64, count: u64 },
    #[error("namespace is read-only: {reason}")]
    ReadOnly { reason: String },
    #[error("block {lba} cannot be read: {detail}")]
    Media { lba: u64, detail: String },
    #[error("write could not be stored: {0}")]
    WriteFault(String),
    #[error("backend failure: {0}")]
    Backend(String),
}

impl NamespaceError {
    pub fn status(&self) -> Status {
        match self {
            NamespaceError::OutOfRange { .. } => Status::LbaOutOfRange,
            NamespaceError::ReadOnly { .. } => Status::WriteProtected,
            NamespaceError::Media { .. } => Status::UnrecoveredReadError,
            NamespaceError::WriteFault(_) => Status::WriteFault,
            NamespaceError::Backend(_) => Status::InternalError,
        }
    }
}

/// Wear and space figures a backend reports for the SMART/health log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendHealth {
    /// Estimate of life used, in percent (may pass 100).
    pub percentage_used: u8,
    /// Spare capacity left, in percent of what was reserved.
    pub available_spare: u8,
    /// Below this `available_spare` the controller raises a critical warning.
    pub available_spare_threshold: u8,
    /// The backend refuses writes (worn out or failed).
    pub read_only: bool,
    /// Blocks that currently hold data (NVMe NUSE), when the backend knows it.
    pub blocks_in_use: Option<u64>,
    /// Bytes the backend has read and written for the host over its whole life (persisted by the
    /// backend, so they survive a restart; a 512-byte write costs one block of each).
    pub lifetime_bytes_read: u64,
    pub lifetime_bytes_written: u64,
}

/// A logical block space addressed in whole blocks of `block_size()` bytes.
///
/// Implementations are shared by every I/O queue of a namespace, so every method takes `&self`
/// and must be safe to call from several threads at once.
pub trait Namespace: Send + Sync + Debug {
    /// Bytes per logical block.
    fn block_size(&self) -> usize;
    /// Number of logical blocks.
    fn blocks(&self) -> u64;
    /// Reads block `lba` into `buf` (exactly one block). A never-written block reads as zeroes.
    fn read_block(&self, lba: u64, buf: &mut [u8]) -> Result<(), NamespaceError>;
    /// Reads whole blocks `lbas` into `out` (one block each, in order); `results` gets one entry
    /// per block, and a block that fails does not stop the others. A backend that can overlap
    /// the reads (the FTL: their memory misses, `Ftl::read_many`) overrides this; the default
    /// reads them one by one.
    fn read_blocks(
        &self,
        lbas: &[u64],
        out: &mut [u8],
        results: &mut Vec<Result<(), NamespaceError>>,
    ) {
        results.clear();
        let bs = self.block_size();
        results.extend(
            lbas.iter()
                .zip(out.chunks_mut(bs))
                .map(|(&lba, buf)| self.read_block(lba, buf)),
        );
    }
    /// Writes one block; `durable` (FUA) returns only once the block survives a power cut.
    fn write_block(&self, lba: u64, data: &[u8], durable: bool) -> Result<(), NamespaceError>;
    /// Writes whole blocks in order, none durable; `results` gets one entry per write, in order,
    /// and a write that fails does not stop the others. A block written twice keeps the later
    /// data. A backend that can apply them together (the FTL: one engine-lock hold) overrides
    /// this; the default writes them one by one.
    fn write_blocks(&self, writes: &[(u64, &[u8])], results: &mut Vec<Result<(), NamespaceError>>) {
        results.clear();
        results.extend(
            writes
                .iter()
                .map(|&(lba, data)| self.write_block(lba, data, false)),
        );
    }
    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), NamespaceError>;
    /// Makes the completed writes, deallocations and write-zeroes of `count` blocks from `lba`
    /// durable (a multi-block FUA write, or write-through zeroes). A backend that cannot do less
    /// than a whole flush keeps this default.
    fn make_durable(&self, lba: u64, count: u64) -> Result<(), NamespaceError> {
        let _ = (lba, count);
        self.flush()
    }
    /// Forgets `count` blocks from `lba`: they read as zeroes afterwards.
    fn deallocate(&self, lba: u64, count: u64) -> Result<(), NamespaceError>;
    /// Sets `count` blocks from `lba` to zeroes (without writing zero pages where it can).
    fn write_zeroes(&self, lba: u64, count: u64) -> Result<(), NamespaceError>;
    /// Wear and space figures for the health log.
    fn health(&self) -> BackendHealth;
}
