//! Sealing the blocks of a remote volume on its client (envelope encryption): the server and the
//! wire only ever see ciphertext and a 28-byte seal per block.
//!
//! ```text
//! block key:  HKDF-SHA256(salt "ferrite-block v1", IKM = the volume's data key,
//!                         info = "block" ++ volume id u64 LE), 32 bytes
//! cipher:     AES-256-GCM-SIV (RFC 8452) with a random 96-bit nonce per seal
//! aad (17):   format version u8 (1), volume id u64 LE, lba u64 LE
//! seal (28):  nonce [12] ++ tag [16]
//! ```
//!
//! Why random nonces and GCM-SIV: the client has no counter that survives its own crash and
//! restart (the server's version numbers are not the client's to trust), so nonces are random.
//! With GCM, random nonces cap a key at 2^32 seals; GCM-SIV is nonce-misuse resistant (a repeated
//! nonce reveals only that the same block was written twice with the same bytes) and its bounds
//! (RFC 8452 section 9) allow far more seals per key. The associated data binds the volume and
//! the block address, so a block moved to another address or volume fails to open.
//!
//! Not covered: freshness. A server can hand back an older block of the same address (with its
//! seal), or zeroes; nothing in a block says which version is the latest. That needs state on
//! the client (a version table or a Merkle tree) and is stated in docs/ebs-protocol.md.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, Nonce, UnboundKey};
use parking_lot::RwLock;

use crate::KeyError;
use crate::aead::{NONCE_BYTES, TAG_BYTES};
use crate::secret::Secret;

/// Bytes of a block's seal: nonce and tag.
pub const BLOCK_SEAL_BYTES: usize = NONCE_BYTES + TAG_BYTES;
/// The format version in every block's associated data.
pub const BLOCK_SEAL_VERSION: u8 = 1;
const SALT: &[u8] = b"ferrite-block v1";

/// The associated data of block `lba` of volume `volume_id`.
pub fn block_aad(volume_id: u64, lba: u64) -> [u8; 17] {
    let mut a = [0u8; 17];
    a[0] = BLOCK_SEAL_VERSION;
    a[1..9].copy_from_slice(&volume_id.to_le_bytes());
    a[9..17].copy_from_slice(&lba.to_le_bytes());
    a
}

/// Seals and opens the blocks of one volume. `destroy` (detach) drops the key schedule, which
/// aws-lc zeroizes on free; every later use is `KeyError::Destroyed`.
pub struct BlockSealer {
    key: RwLock<Option<LessSafeKey>>,
    volume_id: u64,
    fingerprint: String,
}

impl fmt::Debug for BlockSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BlockSealer(volume {}, key {})",
            self.volume_id, self.fingerprint
        )
    }
}

impl BlockSealer {
    /// The sealer of volume `volume_id` under `data_key` (the volume's unwrapped data key).
    pub(crate) fn new(data_key: &Secret, volume_id: u64) -> Result<Self, KeyError> {
        let block_key = data_key.derive(SALT, &[b"block", &volume_id.to_le_bytes()])?;
        let fingerprint = block_key.fingerprint()?;
        let unbound =
            UnboundKey::new(&AES_256_GCM_SIV, block_key.expose()).map_err(|_| KeyError::Backend)?;
        Ok(Self {
            key: RwLock::new(Some(LessSafeKey::new(unbound))),
            volume_id,
            fingerprint,
        })
    }

    pub fn volume_id(&self) -> u64 {
        self.volume_id
    }

    /// Encrypts a block in place; returns its seal (a fresh random nonce and the tag).
    pub fn seal(&self, lba: u64, block: &mut [u8]) -> Result<[u8; BLOCK_SEAL_BYTES], KeyError> {
        let mut nonce = [0u8; NONCE_BYTES];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyError::Random)?;
        let guard = self.key.read();
        let key = guard.as_ref().ok_or(KeyError::Destroyed)?;
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(block_aad(self.volume_id, lba)),
                block,
            )
            .map_err(|_| KeyError::Backend)?;
        let mut seal = [0u8; BLOCK_SEAL_BYTES];
        seal[..NONCE_BYTES].copy_from_slice(&nonce);
        seal[NONCE_BYTES..].copy_from_slice(tag.as_ref());
        Ok(seal)
    }

    /// Authenticates and decrypts a block in place. A block that does not authenticate (another
    /// address, volume or key, or changed bytes) is zeroed and refused.
    pub fn open(
        &self,
        lba: u64,
        block: &mut [u8],
        seal: &[u8; BLOCK_SEAL_BYTES],
    ) -> Result<(), KeyError> {
        let guard = self.key.read();
        let key = guard.as_ref().ok_or(KeyError::Destroyed)?;
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&seal[..NONCE_BYTES]);
        let opened = key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(block_aad(self.volume_id, lba)),
            &seal[NONCE_BYTES..],
            block,
        );
        if opened.is_err() {
            // aws-lc may have left partial plaintext behind; none of it is returned.
            block.fill(0);
            return Err(KeyError::Authentication { what: "block" });
        }
        Ok(())
    }

    /// Drops the key; idempotent.
    pub fn destroy(&self) {
        self.key.write().take();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Backend, VolumeKey};

    fn block() -> Vec<u8> {
        (0..4096).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn aad_offsets_are_pinned() {
        let a = block_aad(0x0102_0304_0506_0708, 0x1112_1314_1516_1718);
        assert_eq!(a[0], 1);
        assert_eq!(&a[1..9], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&a[9..17], &0x1112_1314_1516_1718u64.to_le_bytes());
    }

    #[test]
    fn a_block_opens_only_at_its_address_in_its_volume_with_its_key() {
        let key = VolumeKey::generate(Backend::AwsLc).unwrap();
        let sealer = key.block_sealer(7).unwrap();
        let mut sealed = block();
        let seal = sealer.seal(42, &mut sealed).unwrap();
        assert_ne!(sealed, block(), "sealing changed nothing");
        // Same bytes sealed again: a fresh nonce, other ciphertext.
        let mut again = block();
        let seal_again = sealer.seal(42, &mut again).unwrap();
        assert_ne!(seal[..NONCE_BYTES], seal_again[..NONCE_BYTES]);
        assert_ne!(sealed, again);

        let mut b = sealed.clone();
        sealer.open(42, &mut b, &seal).unwrap();
        assert_eq!(b, block());

        let refused = |sealer: &BlockSealer, lba: u64, bytes: &[u8], seal: &[u8; 28]| {
            let mut b = bytes.to_vec();
            let e = sealer.open(lba, &mut b, seal).unwrap_err();
            assert_eq!(e, KeyError::Authentication { what: "block" });
            assert!(b.iter().all(|&x| x == 0), "refused bytes were not zeroed");
        };
        refused(&sealer, 43, &sealed, &seal);
        refused(&key.block_sealer(8).unwrap(), 42, &sealed, &seal);
        let other = VolumeKey::generate(Backend::AwsLc).unwrap();
        refused(&other.block_sealer(7).unwrap(), 42, &sealed, &seal);
        let mut flipped = sealed.clone();
        flipped[4095] ^= 1;
        refused(&sealer, 42, &flipped, &seal);
        for at in [0, NONCE_BYTES, BLOCK_SEAL_BYTES - 1] {
            let mut s = seal;
            s[at] ^= 0x80;
            refused(&sealer, 42, &sealed, &s);
        }

        sealer.destroy();
        sealer.destroy();
        let mut b = sealed.clone();
        assert_eq!(sealer.open(42, &mut b, &seal), Err(KeyError::Destroyed));
        assert_eq!(sealer.seal(42, &mut b), Err(KeyError::Destroyed));
        assert!(format!("{sealer:?}").starts_with("BlockSealer(volume 7, key "));
    }
}
