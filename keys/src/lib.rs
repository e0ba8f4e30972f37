//! Keys for Ferrite: ephemeral instance keys, AES-256-GCM sealing of flash pages, and envelope
//! keys for remote volumes.
//!
//! ```text
//!  InstanceKey (instance.rs)   random, never exported   -> PageSealer per device (page.rs)
//!     |- keyring.rs             kept in the kernel keyring per instance id (restart != terminate)
//!     `- process.rs             PR_SET_DUMPABLE=0 once a key exists
//!  VolumeKey   (envelope.rs)   random, stored wrapped    -> PageSealer per volume
//!     `- WrappedKey             by a Kek, volume id as context
//!  holder.rs    lifecycle (active -> destroyed) and HKDF page subkeys per (id, epoch)
//!  aead.rs      AES-256-GCM over aws-lc-rs, or RustCrypto aes-gcm (feature `rustcrypto`)
//!  secret.rs    32 bytes in a secret page, zeroed on drop, redacted Debug
//!  sys/         the only unsafe code: memfd_secret / mlock pages, add_key / keyctl, prctl
//! ```
//! Key bytes never appear in `Debug`, errors or logs; everything holding them zeroes it on drop.

#![deny(unsafe_code)]

mod aead;
mod block;
mod envelope;
mod error;
mod holder;
mod instance;
mod keyring;
mod page;
mod process;
#[cfg(feature = "scan-test")]
#[doc(hidden)]
pub mod scan;
mod secret;
mod sys;

pub use aead::{Backend, NONCE_BYTES, TAG_BYTES};
pub use block::{BLOCK_SEAL_BYTES, BLOCK_SEAL_VERSION, BlockSealer, block_aad};
pub use envelope::{Kek, VolumeKey, WRAPPED_KEY_BYTES, WrappedKey};
pub use error::KeyError;
pub use holder::{EPOCH_SHIFT, TABLE_MAC_BYTES};
pub use instance::{InstanceKey, KeyOrigin, NOTES};
pub use keyring::INSTANCE_ID_BYTES_MAX;
pub use page::{PageSealer, SEAL_FORMAT_VERSION, aad, nonce};
pub use process::process_dumpable;
pub use secret::KEY_BYTES;
pub use sys::secret_page::{KeyMemory, SECRET_PAGES_MAX, key_memory};
