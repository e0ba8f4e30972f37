//! The instance key: 256 bits from the OS CSPRNG, one per instance. It has no serialise, export or
//! wrap path: the only things it does are seal and open pages, and be destroyed (crypto-erase).

use std::fmt;
use std::sync::Arc;

use crate::KeyError;
use crate::aead::Backend;
use crate::holder::Holder;
use crate::page::PageSealer;
use crate::process;
use crate::secret::Secret;

#[derive(Clone)]
pub struct InstanceKey {
    holder: Arc<Holder>,
}

impl InstanceKey {
    /// A fresh key for a new instance. The process becomes non-dumpable first.
    pub fn generate(backend: Backend) -> Result<Self, KeyError> {
        process::forbid_dumps()?;
        Ok(Self {
            holder: Holder::new(Secret::random()?, backend)?,
        })
    }

    /// The sealer of device (or namespace) `id`: its own subkeys, derived from this key.
    pub fn sealer(&self, id: u64) -> PageSealer {
        PageSealer::new(self.holder.clone(), id)
    }

    /// A public name for the key (a one-way derivation of it), for logs and status.
    pub fn fingerprint(&self) -> &str {
        self.holder.fingerprint()
    }

    /// Crypto-erase: drops every copy of the key and of its subkeys the process holds. Idempotent;
    /// every later seal or open returns `KeyError::Destroyed`.
    pub fn destroy(&self) {
        self.holder.destroy();
    }

    pub fn is_destroyed(&self) -> bool {
        self.holder.is_destroyed()
    }

    #[cfg(feature = "scan-test")]
    pub(crate) fn holder(&self) -> &Holder {
        &self.holder
    }
}

impl fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_destroyed() {
            "destroyed"
        } else {
            "active"
        };
        write!(
            f,
            "InstanceKey(redacted, fingerprint {}, {state})",
            self.fingerprint()
        )
    }
}
