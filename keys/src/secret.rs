//! 32 secret bytes: zeroed on drop, never printed, never serialised.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::KeyError;

pub const KEY_BYTES: usize = 32;

/// Key bytes on the heap (so moves do not leave copies on the stack), zeroed when dropped.
pub struct Secret(Box<Zeroizing<[u8; KEY_BYTES]>>);

impl Secret {
    /// 32 bytes from the operating system's CSPRNG.
    pub fn random() -> Result<Self, KeyError> {
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_BYTES]));
        aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| KeyError::Random)?;
        Ok(Self(bytes))
    }

    /// Takes over caller-provided bytes (a KEK read from its file); the caller zeroes its copy.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        Self(Box::new(Zeroizing::new(*bytes)))
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// HKDF-SHA256 of this secret for `info` (domain-separated by the caller).
    pub(crate) fn derive(&self, salt: &[u8], info: &[&[u8]]) -> Secret {
        let hk = Hkdf::<Sha256>::new(Some(salt), &self.0[..]);
        let mut out = Box::new(Zeroizing::new([0u8; KEY_BYTES]));
        hk.expand_multi_info(info, &mut out[..])
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Secret(out)
    }

    /// A short public name for the key: a one-way derivation, safe to log and show.
    pub fn fingerprint(&self) -> String {
        let f = self.derive(b"ferrite-fingerprint-v1", &[]);
        f.expose()[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(redacted, fingerprint {})", self.fingerprint())
    }
}
