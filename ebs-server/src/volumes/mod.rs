//! The server's volumes: a catalog file and extents of one FTL over the server's NAND devices.
//!
//! ```text
//!  catalog.rs   the catalog file (versioned, checksummed, replaced atomically) and its rules
//!  store.rs     VolumeStore (create, resize, delete, list, attach) and Attachment (block I/O)
//!  error.rs     VolumeError and the protocol status of each
//! ```

pub mod catalog;
mod error;
mod store;

pub use error::VolumeError;
pub use store::{Attachment, EXTENT_BLOCKS_DEFAULT, VolumeInfo, VolumeSpec, VolumeStore};
