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

use parking_lot::RwLock;

use crate::KeyError;
use crate::aead::{AeadKey, Backend};
use crate::secret::Secret;

const SUBKEY_SALT: &[u8] = b"ferrite-page-subkey-v1";
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

    /// Runs `f` on the master secret (for wrapping a volume key); fails once destroyed.
    pub fn with_master<T>(&self, f: impl FnOnce(&Secret) -> T) -> Result<T, KeyError> {
        let guard = self.state.read();
        let state = guard.as_ref().ok_or(KeyError::Destroyed)?;
        Ok(f(&state.master))
    }
}
