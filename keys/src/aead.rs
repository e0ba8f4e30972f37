//! AES-256-GCM behind one small interface, over aws-lc-rs (the data path) or RustCrypto `aes-gcm`
//! (pure Rust, feature `rustcrypto`). Both produce the same ciphertext and tag for the same inputs.
//!
//! Both libraries clean their key schedules when the key is dropped: aws-lc-rs frees it through
//! AWS-LC's cleansing free, and `aes-gcm` is built with its `zeroize` feature.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::KeyError;
use crate::secret::Secret;

pub const TAG_BYTES: usize = 16;
pub const NONCE_BYTES: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    AwsLc,
    #[cfg(feature = "rustcrypto")]
    RustCrypto,
}

pub enum AeadKey {
    AwsLc(LessSafeKey),
    #[cfg(feature = "rustcrypto")]
    RustCrypto(Box<aes_gcm::Aes256Gcm>),
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(redacted)")
    }
}

impl AeadKey {
    pub fn new(backend: Backend, key: &Secret) -> Result<Self, KeyError> {
        match backend {
            Backend::AwsLc => {
                let unbound =
                    UnboundKey::new(&AES_256_GCM, key.expose()).map_err(|_| KeyError::Backend)?;
                Ok(AeadKey::AwsLc(LessSafeKey::new(unbound)))
            }
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => {
                use aes_gcm::KeyInit;
                let cipher = aes_gcm::Aes256Gcm::new_from_slice(key.expose())
                    .map_err(|_| KeyError::Backend)?;
                Ok(AeadKey::RustCrypto(Box::new(cipher)))
            }
        }
    }

    /// Encrypts `data` in place; returns the tag.
    pub fn seal(
        &self,
        nonce: [u8; NONCE_BYTES],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; TAG_BYTES], KeyError> {
        match self {
            AeadKey::AwsLc(key) => {
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        data,
                    )
                    .map_err(|_| KeyError::Backend)?;
                let mut out = [0u8; TAG_BYTES];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            #[cfg(feature = "rustcrypto")]
            AeadKey::RustCrypto(cipher) => {
                use aes_gcm::AeadInOut;
                let tag = cipher
                    .encrypt_inout_detached(&nonce.into(), aad, data.into())
                    .map_err(|_| KeyError::Backend)?;
                Ok(tag.into())
            }
        }
    }

    /// Authenticates `ciphertext` with `tag` and decrypts it into `plaintext`; on failure
    /// `plaintext` is zeroed, so unauthenticated bytes never escape.
    pub fn open(
        &self,
        nonce: [u8; NONCE_BYTES],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_BYTES],
        plaintext: &mut [u8],
        what: &'static str,
    ) -> Result<(), KeyError> {
        if ciphertext.len() != plaintext.len() {
            return Err(KeyError::BufferSize {
                expected: ciphertext.len(),
                got: plaintext.len(),
            });
        }
        let ok = match self {
            AeadKey::AwsLc(key) => key
                .open_separate_gather(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    ciphertext,
                    tag,
                    plaintext,
                )
                .is_ok(),
            #[cfg(feature = "rustcrypto")]
            AeadKey::RustCrypto(cipher) => {
                use aes_gcm::AeadInOut;
                use aes_gcm::aead::inout::InOutBuf;
                // Lengths are equal (checked above), so this always builds; decrypts in one pass
                // from `ciphertext` into `plaintext`.
                InOutBuf::new(ciphertext, plaintext).is_ok_and(|buf| {
                    cipher
                        .decrypt_inout_detached(&nonce.into(), aad, buf, &(*tag).into())
                        .is_ok()
                })
            }
        };
        if ok {
            Ok(())
        } else {
            plaintext.fill(0);
            Err(KeyError::Authentication { what })
        }
    }
}
