//! The local namespace backend: one FTL volume over emulated NAND.

use ftl::{Ftl, FtlError};

use crate::namespace::{BackendHealth, Namespace, NamespaceError};

/// Makes a namespace's flushes also journal the generation bounds the writes they made durable
/// raised (a sealed namespace, so that a crash keeps them): `flush` calls `Ftl::flush_logged`
/// and records what it returns, one flush at a time.
pub trait FlushLog: Send + Sync + std::fmt::Debug {
    fn flush(&self, ftl: &Ftl) -> Result<(), FlushError>;
    /// At a clean close, once every bound is kept elsewhere (the caller's table): the log is
    /// done with.
    fn finish(self: Box<Self>) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(transparent)]
    Ftl(#[from] FtlError),
    #[error("journaling the flush: {0}")]
    Log(String),
}

/// A namespace stored in an `ftl::Ftl` (logical block = FTL logical page).
#[derive(Debug)]
pub struct FtlNamespace {
    ftl: Ftl,
    flush_log: Option<Box<dyn FlushLog>>,
}

impl FtlNamespace {
    pub fn new(ftl: Ftl) -> Self {
        Self {
            ftl,
            flush_log: None,
        }
    }

    /// A namespace whose flushes also go to `log` (the FTL must be sealed).
    pub fn with_flush_log(ftl: Ftl, log: Box<dyn FlushLog>) -> Result<Self, FtlError> {
        ftl.start_bounds_log()?;
        Ok(Self {
            ftl,
            flush_log: Some(log),
        })
    }

    pub fn ftl(&self) -> &Ftl {
        &self.ftl
    }

    /// Gives the FTL and the flush log back, to close both (checkpoint) once no queue uses it.
    pub fn into_parts(self) -> (Ftl, Option<Box<dyn FlushLog>>) {
        (self.ftl, self.flush_log)
    }
}

fn map_error(e: FtlError, lba: u64, count: u64) -> NamespaceError {
    match e {
        FtlError::OutOfRange { .. } => NamespaceError::OutOfRange { lba, count },
        FtlError::ReadOnly { reason } => NamespaceError::ReadOnly { reason },
        FtlError::Media { lpa, detail } => NamespaceError::Media { lba: lpa, detail },
        FtlError::Nand(e) => NamespaceError::WriteFault(e.to_string()),
        other => NamespaceError::Backend(other.to_string()),
    }
}

impl Namespace for FtlNamespace {
    fn block_size(&self) -> usize {
        self.ftl.page_size()
    }

    fn blocks(&self) -> u64 {
        self.ftl.logical_pages()
    }

    fn read_block(&self, lba: u64, buf: &mut [u8]) -> Result<(), NamespaceError> {
        self.ftl.read(lba, buf).map_err(|e| map_error(e, lba, 1))
    }

    fn read_blocks(
        &self,
        lbas: &[u64],
        out: &mut [u8],
        results: &mut Vec<Result<(), NamespaceError>>,
    ) {
        let mut ftl_results = Vec::with_capacity(lbas.len());
        self.ftl.read_many(lbas, out, &mut ftl_results);
        results.clear();
        results.extend(
            ftl_results
                .into_iter()
                .zip(lbas)
                .map(|(r, &lba)| r.map_err(|e| map_error(e, lba, 1))),
        );
    }

    fn write_block(&self, lba: u64, data: &[u8], durable: bool) -> Result<(), NamespaceError> {
        self.ftl
            .write(lba, data, durable)
            .map_err(|e| map_error(e, lba, 1))
    }

    fn write_blocks(&self, writes: &[(u64, &[u8])], results: &mut Vec<Result<(), NamespaceError>>) {
        let mut ftl_results = Vec::with_capacity(writes.len());
        self.ftl.write_batch(writes, &mut ftl_results);
        results.clear();
        results.extend(
            ftl_results
                .into_iter()
                .zip(writes)
                .map(|(r, &(lba, _))| r.map_err(|e| map_error(e, lba, 1))),
        );
    }

    fn flush(&self) -> Result<(), NamespaceError> {
        match &self.flush_log {
            None => self.ftl.flush().map_err(|e| map_error(e, 0, 0)),
            Some(log) => log.flush(&self.ftl).map_err(|e| match e {
                FlushError::Ftl(e) => map_error(e, 0, 0),
                e @ FlushError::Log(_) => NamespaceError::Backend(e.to_string()),
            }),
        }
    }

    fn make_durable(&self, lba: u64, count: u64) -> Result<(), NamespaceError> {
        self.ftl
            .make_durable(lba, count)
            .map_err(|e| map_error(e, lba, count))
    }

    fn deallocate(&self, lba: u64, count: u64) -> Result<(), NamespaceError> {
        self.ftl
            .trim(lba, count)
            .map_err(|e| map_error(e, lba, count))
    }

    fn write_zeroes(&self, lba: u64, count: u64) -> Result<(), NamespaceError> {
        self.ftl
            .write_zeroes(lba, count)
            .map_err(|e| map_error(e, lba, count))
    }

    fn health(&self) -> BackendHealth {
        let s = self.ftl.stats();
        let page_bytes = self.ftl.page_size() as u64;
        BackendHealth {
            percentage_used: s.percentage_used,
            available_spare: s.available_spare,
            available_spare_threshold: 10,
            read_only: s.read_only,
            blocks_in_use: None,
            lifetime_bytes_read: s.host_pages_read.saturating_mul(page_bytes),
            lifetime_bytes_written: s.host_pages_written.saturating_mul(page_bytes),
        }
    }
}
