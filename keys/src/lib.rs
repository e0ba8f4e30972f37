//! Keys for Ferrite: ephemeral instance keys, AES-256-GCM sealing of flash pages, and envelope
//! keys for remote volumes.
//!
//! ```text
//!  InstanceKey (instance.rs)   random, never exported   -> PageSealer per device (page.rs)
//!  VolumeKey   (envelope.rs)   random, stored wrapped    -> PageSealer per volume
//!     `- WrappedKey             by a Kek, volume id as context
//!  holder.rs    lifecycle (active -> destroyed) and HKDF page subkeys per (id, epoch)
//!  aead.rs      AES-256-GCM over aws-lc-rs, or RustCrypto aes-gcm (feature `rustcrypto`)
//!  secret.rs    32 zeroize-on-drop bytes with a redacted Debug
//! ```
//! Key bytes never appear in `Debug`, errors or logs; everything holding them zeroes it on drop.

#![forbid(unsafe_code)]

mod aead;
mod envelope;
mod error;
mod holder;
mod instance;
mod page;
mod secret;

pub use aead::{Backend, NONCE_BYTES, TAG_BYTES};
pub use envelope::{Kek, VolumeKey, WRAPPED_KEY_BYTES, WrappedKey};
pub use error::KeyError;
pub use holder::EPOCH_SHIFT;
pub use instance::InstanceKey;
pub use page::{PageSealer, SEAL_FORMAT_VERSION, aad, nonce};
pub use secret::KEY_BYTES;
