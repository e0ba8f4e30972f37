//! 32 secret bytes in a page of their own (`sys::secret_page`): zeroed on drop, never printed,
//! never serialised.

use std::fmt;

use aws_lc_rs::hkdf;

use crate::KeyError;
use crate::sys::secret_page::SecretPage;

pub const KEY_BYTES: usize = 32;

pub struct Secret(SecretPage);

/// HKDF output length: one key.
struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        KEY_BYTES
    }
}

impl Secret {
    /// A zeroed secret, to be filled in place (from the keyring, say).
    pub(crate) fn zeroed() -> Result<Self, KeyError> {
        Ok(Self(SecretPage::new()?))
    }

    /// 32 bytes from the operating system's CSPRNG, written straight into the page.
    pub fn random() -> Result<Self, KeyError> {
        let mut secret = Self::zeroed()?;
        aws_lc_rs::rand::fill(secret.expose_mut()).map_err(|_| KeyError::Random)?;
        Ok(secret)
    }

    /// Takes over caller-provided bytes (a KEK read from its file); the caller zeroes its copy.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Result<Self, KeyError> {
        let mut secret = Self::zeroed()?;
        secret.expose_mut().copy_from_slice(bytes);
        Ok(secret)
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_BYTES] {
        self.0.bytes()
    }

    pub(crate) fn expose_mut(&mut self) -> &mut [u8; KEY_BYTES] {
        self.0.bytes_mut()
    }

    #[cfg(feature = "scan-test")]
    pub(crate) fn address(&self) -> usize {
        self.0.address()
    }

    /// HKDF-SHA256 of this secret for `info` (domain-separated by the caller), into a new page.
    ///
    /// aws-lc-rs rather than RustCrypto `hkdf`: RustCrypto's HMAC copies the input into a block
    /// buffer on the stack that nothing zeroes (the memory-scan test has not caught one left
    /// behind, but nothing prevents it). aws-lc-rs copies the input to a zeroize-on-drop heap
    /// buffer, and AWS-LC cleanses its HMAC state when done.
    pub(crate) fn derive(&self, salt: &[u8], info: &[&[u8]]) -> Result<Secret, KeyError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(self.expose());
        let mut out = Secret::zeroed()?;
        prk.expand(info, KeyLen)
            .and_then(|okm| okm.fill(out.expose_mut()))
            .map_err(|_| KeyError::Backend)?;
        Ok(out)
    }

    /// A short public name for the key: a one-way derivation, safe to log and show.
    pub fn fingerprint(&self) -> Result<String, KeyError> {
        let f = self.derive(b"ferrite-fingerprint-v1", &[])?;
        Ok(f.expose()[..4].iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fingerprint() {
            Ok(fp) => write!(f, "Secret(redacted, fingerprint {fp})"),
            Err(_) => f.write_str("Secret(redacted)"),
        }
    }
}
