//! Sealing flash pages: AES-256-GCM with a nonce made of (logical page, generation) and associated
//! data binding the format version, the device or volume, the logical page and the generation, so a
//! page copied to another address, device or volume, or an older generation put back, fails to open.
//!
//! ```text
//! nonce (12 bytes): lpa u32 LE, generation u64 LE
//! aad (25 bytes):   format version u8 (1), id u64 LE, lpa u64 LE, generation u64 LE
//! ```
//! The 16-byte tag goes in the page's OOB record; the generation is the FTL's sequence number,
//! which never repeats for a page (it must not after a crash either: a repeated generation with
//! other data would reuse a nonce).

use std::fmt;
use std::sync::Arc;

use crate::KeyError;
use crate::aead::{NONCE_BYTES, TAG_BYTES};
use crate::holder::{Holder, TABLE_MAC_BYTES};

pub const SEAL_FORMAT_VERSION: u8 = 1;

pub fn nonce(lpa: u64, generation: u64) -> [u8; NONCE_BYTES] {
    let mut n = [0u8; NONCE_BYTES];
    n[0..4].copy_from_slice(&(lpa as u32).to_le_bytes());
    n[4..12].copy_from_slice(&generation.to_le_bytes());
    n
}

pub fn aad(id: u64, lpa: u64, generation: u64) -> [u8; 25] {
    let mut a = [0u8; 25];
    a[0] = SEAL_FORMAT_VERSION;
    a[1..9].copy_from_slice(&id.to_le_bytes());
    a[9..17].copy_from_slice(&lpa.to_le_bytes());
    a[17..25].copy_from_slice(&generation.to_le_bytes());
    a
}

/// Seals and opens the pages of one device or volume under a key's page subkeys.
#[derive(Clone)]
pub struct PageSealer {
    holder: Arc<Holder>,
    id: u64,
}

impl fmt::Debug for PageSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PageSealer(id {}, key {})",
            self.id,
            self.holder.fingerprint()
        )
    }
}

impl PageSealer {
    pub(crate) fn new(holder: Arc<Holder>, id: u64) -> Self {
        Self { holder, id }
    }

    /// Encrypts `data` in place; returns the tag to store beside it.
    pub fn seal(
        &self,
        lpa: u64,
        generation: u64,
        data: &mut [u8],
    ) -> Result<[u8; TAG_BYTES], KeyError> {
        let key = self.holder.page_key(self.id, generation)?;
        key.seal(nonce(lpa, generation), &aad(self.id, lpa, generation), data)
    }

    /// HMAC-SHA256 of a table of this device's or volume's metadata kept off the pages (the FTL's
    /// generation bounds), under a subkey of its own.
    pub fn table_mac(&self, bytes: &[u8]) -> Result<[u8; TABLE_MAC_BYTES], KeyError> {
        self.holder.table_mac(self.id, bytes)
    }

    /// Checks a table MAC made by `table_mac` (with the same key and id); `Authentication` if not.
    pub fn verify_table_mac(
        &self,
        bytes: &[u8],
        tag: &[u8; TABLE_MAC_BYTES],
    ) -> Result<(), KeyError> {
        self.holder.verify_table_mac(self.id, bytes, tag)
    }

    /// The device or volume id the sealer binds into every page.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Authenticates and decrypts a page into `plaintext` (zeroed if it does not authenticate).
    pub fn open(
        &self,
        lpa: u64,
        generation: u64,
        ciphertext: &[u8],
        tag: &[u8; TAG_BYTES],
        plaintext: &mut [u8],
    ) -> Result<(), KeyError> {
        let key = self.holder.page_key(self.id, generation)?;
        key.open(
            nonce(lpa, generation),
            &aad(self.id, lpa, generation),
            ciphertext,
            tag,
            plaintext,
            "page",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_mac_binds_key_id_and_bytes() {
        let key = crate::InstanceKey::generate(crate::Backend::AwsLc).unwrap();
        let other = crate::InstanceKey::generate(crate::Backend::AwsLc).unwrap();
        let tag = key.sealer(1).table_mac(b"bounds").unwrap();
        key.sealer(1).verify_table_mac(b"bounds", &tag).unwrap();
        assert!(key.sealer(1).verify_table_mac(b"bounda", &tag).is_err());
        assert!(key.sealer(2).verify_table_mac(b"bounds", &tag).is_err());
        assert!(other.sealer(1).verify_table_mac(b"bounds", &tag).is_err());
        // Not the page key: a page tag and a table MAC never come from the same key.
        let mut flipped = tag;
        flipped[31] ^= 1;
        assert!(key.sealer(1).verify_table_mac(b"bounds", &flipped).is_err());
        key.destroy();
        assert!(matches!(
            key.sealer(1).table_mac(b"bounds"),
            Err(KeyError::Destroyed)
        ));
    }

    #[test]
    fn nonce_and_aad_offsets_are_pinned() {
        let n = nonce(0x0102_0304, 0x1112_1314_1516_1718);
        assert_eq!(&n[0..4], &[4, 3, 2, 1]);
        assert_eq!(&n[4..12], &0x1112_1314_1516_1718u64.to_le_bytes());
        let a = aad(7, 0x0102_0304, 9);
        assert_eq!(a[0], 1);
        assert_eq!(&a[1..9], &7u64.to_le_bytes());
        assert_eq!(&a[9..17], &0x0102_0304u64.to_le_bytes());
        assert_eq!(&a[17..25], &9u64.to_le_bytes());
    }
}
