//! Errors of the volume store, each mapped to the protocol status a client receives.

use ftl::FtlError;
use thiserror::Error;

use super::catalog::CatalogError;
use crate::proto::Status;

#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("no volume named {0:?}")]
    NoSuchVolume(String),
    #[error("a volume named {0:?} exists already")]
    Exists(String),
    #[error("volume name {name:?}: {problem}")]
    BadName { name: String, problem: String },
    #[error("{0}")]
    BadSize(String),
    #[error("credential: {0}")]
    BadCredentialSpec(String),
    #[error("wrapped data key: {0}")]
    BadWrappedKey(String),
    #[error("not enough space: {0}")]
    NoSpace(String),
    #[error("volume {0:?} is attached by another client")]
    Busy(String),
    #[error("wrong credential for volume {0:?}")]
    BadCredential(String),
    #[error("blocks {lba}..+{count} are not inside the volume's {blocks}")]
    OutOfRange { lba: u64, count: u64, blocks: u64 },
    #[error("block {lba}: {detail}")]
    Media { lba: u64, detail: String },
    #[error("the server's storage is read-only: {0}")]
    ReadOnly(String),
    #[error("volume catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("storage: {0}")]
    Ftl(#[from] FtlError),
    #[error("{0}")]
    Config(String),
}

impl VolumeError {
    /// An FTL error met at volume block `lba`, in the volume's terms (a media error names the
    /// volume's block, not the server's FTL page).
    pub fn from_ftl(e: FtlError, lba: u64) -> Self {
        match e {
            FtlError::Media { detail, .. } => VolumeError::Media { lba, detail },
            FtlError::ReadOnly { reason } => VolumeError::ReadOnly(reason),
            other => VolumeError::Ftl(other),
        }
    }

    pub fn status(&self) -> Status {
        match self {
            VolumeError::NoSuchVolume(_) => Status::NoSuchVolume,
            VolumeError::Busy(_) => Status::VolumeBusy,
            VolumeError::BadCredential(_) => Status::BadCredential,
            VolumeError::OutOfRange { .. } => Status::OutOfRange,
            VolumeError::Media { .. } => Status::Media,
            VolumeError::ReadOnly(_) => Status::ReadOnly,
            VolumeError::Exists(_)
            | VolumeError::BadName { .. }
            | VolumeError::BadSize(_)
            | VolumeError::BadCredentialSpec(_)
            | VolumeError::BadWrappedKey(_)
            | VolumeError::NoSpace(_)
            | VolumeError::Catalog(_)
            | VolumeError::Ftl(_)
            | VolumeError::Config(_) => Status::Internal,
        }
    }
}
