//! Envelope keys for remote volumes: a random data key per volume, stored only wrapped by a
//! key-encryption key (KEK), with the volume id as context. Instance keys have no such path.
//!
//! Wrapped key (76 bytes):
//! ```text
//! offset size field
//!      0    4 magic          "FWRK"
//!      4    1 version        1
//!      5    3 reserved       zero
//!      8    4 kek_id         first 4 bytes of the KEK's fingerprint (which KEK to unwrap with)
//!     12   12 nonce          random
//!     24   32 wrapped key    AES-256-GCM of the data key under the KEK
//!     56   16 tag            aad = "ferrite-wrap-v1" ++ volume id
//!     72    4 crc32          crc32fast of bytes 0..72
//! ```

use std::fmt;
use std::sync::Arc;

use crate::KeyError;
use crate::aead::{AeadKey, Backend, NONCE_BYTES, TAG_BYTES};
use crate::block::BlockSealer;
use crate::holder::Holder;
use crate::page::PageSealer;
use crate::secret::{KEY_BYTES, Secret};

pub const WRAPPED_KEY_BYTES: usize = 76;
const MAGIC: [u8; 4] = *b"FWRK";
const VERSION: u8 = 1;
const WRAP_AAD_PREFIX: &[u8] = b"ferrite-wrap-v1";

/// A key-encryption key, held by the client side (`--kek-file`).
pub struct Kek {
    secret: Secret,
    fingerprint: String,
}

impl Kek {
    pub fn generate() -> Result<Self, KeyError> {
        Self::from_secret(Secret::random()?)
    }

    /// The KEK from its 32 bytes (read from its file; zero the caller's copy afterwards).
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Result<Self, KeyError> {
        Self::from_secret(Secret::from_bytes(bytes)?)
    }

    fn from_secret(secret: Secret) -> Result<Self, KeyError> {
        let fingerprint = secret.fingerprint()?;
        Ok(Self {
            secret,
            fingerprint,
        })
    }

    fn id(&self) -> [u8; 4] {
        let f = &self.fingerprint;
        let mut id = [0u8; 4];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&f[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        id
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek(redacted, fingerprint {})", self.fingerprint())
    }
}

/// A volume's data key, live (unwrapped). It seals the volume's blocks like an instance key
/// seals pages, and can be wrapped for storage.
pub struct VolumeKey {
    holder: Arc<Holder>,
}

impl VolumeKey {
    pub fn generate(backend: Backend) -> Result<Self, KeyError> {
        Ok(Self {
            holder: Holder::new(Secret::random()?, backend)?,
        })
    }

    pub fn sealer(&self, volume: u64) -> PageSealer {
        PageSealer::new(self.holder.clone(), volume)
    }

    pub fn fingerprint(&self) -> &str {
        self.holder.fingerprint()
    }

    /// The client-side sealer of volume `volume_id`'s blocks (docs/keys-format.md, "Block
    /// seals"), under a key derived from this data key. Fails once the data key is destroyed.
    pub fn block_sealer(&self, volume_id: u64) -> Result<BlockSealer, KeyError> {
        self.holder
            .with_master(|master| BlockSealer::new(master, volume_id))?
    }

    /// Detach: drops the live key (the wrapped form stays where it is stored).
    pub fn destroy(&self) {
        self.holder.destroy();
    }

    /// The only form of the data key that may be stored: wrapped by `kek` for `volume_id`.
    pub fn wrap(&self, kek: &Kek, volume_id: &str) -> Result<WrappedKey, KeyError> {
        let mut nonce = [0u8; NONCE_BYTES];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyError::Random)?;
        let aead = AeadKey::new(Backend::AwsLc, &kek.secret)?;
        let mut out = [0u8; WRAPPED_KEY_BYTES];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[8..12].copy_from_slice(&kek.id());
        out[12..24].copy_from_slice(&nonce);
        let tag = self.holder.with_master(|master| {
            out[24..56].copy_from_slice(master.expose());
            aead.seal(nonce, &wrap_aad(volume_id), &mut out[24..56])
        })??;
        out[56..72].copy_from_slice(&tag);
        let crc = crc32fast::hash(&out[..72]);
        out[72..76].copy_from_slice(&crc.to_le_bytes());
        Ok(WrappedKey(out))
    }
}

impl fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VolumeKey(redacted, fingerprint {})", self.fingerprint())
    }
}

fn wrap_aad(volume_id: &str) -> Vec<u8> {
    [WRAP_AAD_PREFIX, volume_id.as_bytes()].concat()
}

/// A wrapped data key: safe to store and send (it reveals nothing without the KEK).
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey([u8; WRAPPED_KEY_BYTES]);

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey(kek {:02x?})", &self.0[8..12])
    }
}

impl WrappedKey {
    pub fn as_bytes(&self) -> &[u8; WRAPPED_KEY_BYTES] {
        &self.0
    }

    /// Parses stored bytes, checking magic, version and crc.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bad = |reason: &str| {
            Err(KeyError::Format {
                reason: reason.into(),
            })
        };
        if bytes.len() != WRAPPED_KEY_BYTES {
            return bad(&format!("{} bytes, not {WRAPPED_KEY_BYTES}", bytes.len()));
        }
        if bytes[0..4] != MAGIC {
            return bad("bad magic");
        }
        if bytes[4] != VERSION {
            return bad(&format!("unsupported version {}", bytes[4]));
        }
        let mut stored = [0u8; 4];
        stored.copy_from_slice(&bytes[72..76]);
        if u32::from_le_bytes(stored) != crc32fast::hash(&bytes[..72]) {
            return bad("checksum mismatch");
        }
        let mut out = [0u8; WRAPPED_KEY_BYTES];
        out.copy_from_slice(bytes);
        Ok(Self(out))
    }

    /// At attach: the live data key, if `kek` and `volume_id` are the ones it was wrapped with.
    pub fn unwrap(
        &self,
        kek: &Kek,
        volume_id: &str,
        backend: Backend,
    ) -> Result<VolumeKey, KeyError> {
        if self.0[8..12] != kek.id() {
            return Err(KeyError::Authentication {
                what: "wrapped key (another KEK)",
            });
        }
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&self.0[12..24]);
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&self.0[56..72]);
        let aead = AeadKey::new(Backend::AwsLc, &kek.secret)?;
        let mut plain = zeroize::Zeroizing::new([0u8; KEY_BYTES]);
        aead.open(
            nonce,
            &wrap_aad(volume_id),
            &self.0[24..56],
            &tag,
            &mut plain[..],
            "wrapped key",
        )?;
        Ok(VolumeKey {
            holder: Holder::new(Secret::from_bytes(&plain)?, backend)?,
        })
    }

    /// KEK rotation: the same data key, wrapped by `new_kek`.
    pub fn rewrap(
        &self,
        old_kek: &Kek,
        new_kek: &Kek,
        volume_id: &str,
    ) -> Result<WrappedKey, KeyError> {
        let key = self.unwrap(old_kek, volume_id, Backend::AwsLc)?;
        let wrapped = key.wrap(new_kek, volume_id);
        key.destroy();
        wrapped
    }
}
