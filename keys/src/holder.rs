//! The one place a live master key sits, with its derived page keys, and its lifecycle:
//! active -> destroyed (terminal). Destroying drops every copy the process holds: the master
//! bytes are zeroed, the derived AEAD keys dropped (their schedules cleaned by the backend).
//!
//! The master key and each derived subkey sit in secret pages (`sys::secret_page`) only while
//! they are bytes; a subkey's expanded AES key schedule lives in the AEAD library's heap memory
//! (aws-lc-rs: AWS-LC's allocator, cleansed on free; RustCrypto: a Box zeroized on drop). That
//! is accepted: it is what every AES implementation needs to run, and it dies with the key.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::hmac;
use parking_lot::RwLock;

use crate::KeyError;
use crate::aead::{AeadKey, Backend};
use crate::secret::Secret;

const SUBKEY_SALT: &[u8] = b"ferrite-page-subkey-v1";
const TABLE_SALT: &[u8] = b"ferrite-table-mac-v1";
/// Length of a table MAC (HMAC-SHA256).
pub const TABLE_MAC_BYTES: usize = 32;
/// A subkey serves 2^31 generations, so it seals fewer than 2^31 pages: far below the 2^32
/// invocations AES-GCM allows per key with 96-bit nonces.
pub const EPOCH_SHIFT: u32 = 31;

struct State {
    master: Secret,
    /// (device or volume id, epoch) -> page key.
    subkeys: HashMap<(u64, u32), Arc<AeadKey>>,
}

pub(crate) struct Holder {
    state: RwLock<Option<State>>,
    backend: Backend,
    fingerprint: String,
}

impl Holder {
    pub fn new(master: Secret, backend: Backend) -> Result<Arc<Self>, KeyError> {
        let fingerprint = master.fingerprint()?;
        Ok(Arc::new(Self {
            state: RwLock::new(Some(State {
                master,
                subkeys: HashMap::new(),
            })),
            backend,
            fingerprint,
        }))
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn is_destroyed(&self) -> bool {
        self.state.read().is_none()
    }

    /// Idempotent. Operations already holding a page key finish; every later one fails.
    pub fn destroy(&self) {
        let state = self.state.write().take();
        drop(state);
    }

    /// The page key of `id` for the epoch of `generation`, derived on first use.
    pub fn page_key(&self, id: u64, generation: u64) -> Result<Arc<AeadKey>, KeyError> {
        let epoch = (generation >> EPOCH_SHIFT) as u32;
        if let Some(state) = self.state.read().as_ref() {
            if let Some(key) = state.subkeys.get(&(id, epoch)) {
                return Ok(key.clone());
            }
        } else {
            return Err(KeyError::Destroyed);
        }
        let mut guard = self.state.write();
        let state = guard.as_mut().ok_or(KeyError::Destroyed)?;
        if let Some(key) = state.subkeys.get(&(id, epoch)) {
            return Ok(key.clone());
        }
        let subkey = state.master.derive(
            SUBKEY_SALT,
            &[b"page", &id.to_le_bytes(), &epoch.to_le_bytes()],
        )?;
        let key = Arc::new(AeadKey::new(self.backend, &subkey)?);
        state.subkeys.insert((id, epoch), key.clone());
        Ok(key)
    }

    /// HMAC-SHA256 of `bytes` under the table subkey of `id` (a key of its own, apart from the page
    /// keys): authenticates the FTL's metadata kept outside the pages, such as the generation
    /// bounds. Derived per call: tables are written and read once per open and close.
    pub fn table_mac(&self, id: u64, bytes: &[u8]) -> Result<[u8; TABLE_MAC_BYTES], KeyError> {
        let key = self.table_key(id)?;
        let tag = hmac::sign(&key, bytes);
        let mut out = [0u8; TABLE_MAC_BYTES];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Checks `tag` against `bytes` in constant time.
    pub fn verify_table_mac(
        &self,
        id: u64,
        bytes: &[u8],
        tag: &[u8; TABLE_MAC_BYTES],
    ) -> Result<(), KeyError> {
        let key = self.table_key(id)?;
        hmac::verify(&key, bytes, tag).map_err(|_| KeyError::Authentication { what: "table" })
    }

    fn table_key(&self, id: u64) -> Result<hmac::Key, KeyError> {
        let guard = self.state.read();
        let state = guard.as_ref().ok_or(KeyError::Destroyed)?;
        let subkey = state
            .master
            .derive(TABLE_SALT, &[b"table", &id.to_le_bytes()])?;
        // aws-lc-rs keeps the HMAC key in its own heap memory and cleanses it on drop.
        Ok(hmac::Key::new(hmac::HMAC_SHA256, subkey.expose()))
    }

    /// Runs `f` on the master secret (for wrapping a volume key); fails once destroyed.
    pub fn with_master<T>(&self, f: impl FnOnce(&Secret) -> T) -> Result<T, KeyError> {
        let guard = self.state.read();
        let state = guard.as_ref().ok_or(KeyError::Destroyed)?;
        Ok(f(&state.master))
    }
}
