//! The instance key: 256 bits from the OS CSPRNG, one per instance. It has no serialise, export or
//! wrap path: the only things it does are seal and open pages, and be destroyed (crypto-erase).
//!
//! An instance outlives the process that serves it, as on Nitro, where instance-store data
//! survives a guest reboot but not a stop, a terminate or a host failure: `open_or_create` keeps
//! the key in the kernel keyring (`keyring.rs`), so a restarted `ferrite serve` finds it again,
//! and `terminate` destroys it there and in this process. A host reboot loses it.

use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::KeyError;
use crate::aead::Backend;
use crate::holder::Holder;
use crate::keyring::{self, InstanceId};
use crate::page::PageSealer;
use crate::process;
use crate::secret::Secret;

/// Where `open_or_create` found the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A new key: the instance is new, or was terminated (its old pages no longer open).
    Created,
    /// The key the instance had before this process started (a restart, not a terminate).
    FromKeyring,
}

/// Every instance key this process opened or created through the keyring, so `terminate(id)` can destroy them
/// all. The lock also serialises open_or_create and terminate within the process.
static OPEN_INSTANCES: Mutex<Vec<(InstanceId, Weak<Holder>)>> = Mutex::new(Vec::new());

/// The notes an instance may keep beside its key (`InstanceKey::note`).
pub const NOTES: [&str; 2] = ["generation-tables", "generation-journals"];

fn check_note(name: &str) -> Result<(), KeyError> {
    if NOTES.contains(&name) {
        Ok(())
    } else {
        Err(KeyError::InstanceId {
            id: name.chars().take(64).collect(),
            reason: "not a known note name",
        })
    }
}

#[derive(Clone)]
pub struct InstanceKey {
    holder: Arc<Holder>,
    /// Set when the key is kept in the keyring for this instance.
    instance: Option<InstanceId>,
}

impl InstanceKey {
    /// A fresh RAM-only key (never in the keyring): it dies with this process.
    pub fn generate(backend: Backend) -> Result<Self, KeyError> {
        process::forbid_dumps()?;
        Ok(Self {
            holder: Holder::new(Secret::random()?, backend)?,
            instance: None,
        })
    }

    /// The key of instance `instance_id`: the one the kernel keyring holds (this instance ran
    /// before on this host, and was not terminated), else a new one, stored there. The key goes
    /// from the keyring straight into a secret page. Only one process may serve an instance.
    ///
    /// `KeyError::KeyringUnavailable` if this host or sandbox offers no keyring: the caller may
    /// then fall back to `generate` (the data will not survive a restart).
    pub fn open_or_create(
        instance_id: &str,
        backend: Backend,
    ) -> Result<(Self, KeyOrigin), KeyError> {
        let id = InstanceId::new(instance_id)?;
        process::forbid_dumps()?;
        let mut open = OPEN_INSTANCES.lock();
        let (secret, origin) = match keyring::load(&id)? {
            Some(secret) => (secret, KeyOrigin::FromKeyring),
            None => {
                let secret = Secret::random()?;
                keyring::store(&id, &secret)?;
                (secret, KeyOrigin::Created)
            }
        };
        let holder = Holder::new(secret, backend)?;
        open.retain(|(_, h)| h.strong_count() > 0);
        open.push((id.clone(), Arc::downgrade(&holder)));
        Ok((
            Self {
                holder,
                instance: Some(id),
            },
            origin,
        ))
    }

    /// Terminates instance `instance_id`: destroys every copy of its key this process holds,
    /// then invalidates the keyring key, so the next `open_or_create` creates a new key and the
    /// old pages never open again. `Ok(true)` if the keyring held a key, `Ok(false)` if not
    /// (terminating an instance without a key is not an error). Idempotent. If the keyring
    /// cannot be searched (`KeyringUnavailable`), the in-process copies are destroyed all the same.
    pub fn terminate(instance_id: &str) -> Result<bool, KeyError> {
        let id = InstanceId::new(instance_id)?;
        let mut open = OPEN_INSTANCES.lock();
        open.retain(|(open_id, holder)| {
            if *open_id != id {
                return true;
            }
            if let Some(holder) = holder.upgrade() {
                holder.destroy();
            }
            false
        });
        let had_key = keyring::invalidate(&id)?;
        for name in NOTES {
            keyring::invalidate_note(&id, name)?;
        }
        Ok(had_key)
    }

    /// A small public note kept in the kernel keyring beside this instance's key, for what must
    /// outlive a restart without living in the data directory (the digest of each namespace's
    /// generation table, so a table deleted or rolled back with the device files is noticed).
    /// `name` is one of `NOTES`, so terminate knows what to invalidate. `Ok(None)` for a key
    /// not kept in the keyring (nothing outlives the process then) or when no note was stored.
    pub fn note(&self, name: &str) -> Result<Option<Vec<u8>>, KeyError> {
        check_note(name)?;
        match &self.instance {
            Some(id) => keyring::load_note(id, name),
            None => Ok(None),
        }
    }

    /// Replaces note `name` (see `note`); a no-op for a key not kept in the keyring.
    pub fn set_note(&self, name: &str, payload: &[u8]) -> Result<(), KeyError> {
        check_note(name)?;
        if self.is_destroyed() {
            return Err(KeyError::Destroyed);
        }
        match &self.instance {
            Some(id) => keyring::store_note(id, name, payload),
            None => Ok(()),
        }
    }

    /// Crypto-erase everywhere: `destroy`, and for a keyring-kept key also `terminate` its
    /// instance. `Ok(false)` for a RAM-only key or one already gone from the keyring.
    pub fn destroy_everywhere(&self) -> Result<bool, KeyError> {
        self.destroy();
        match &self.instance {
            Some(id) => Self::terminate(id.as_str()),
            None => Ok(false),
        }
    }

    /// The instance this key belongs to, if it is kept in the keyring.
    pub fn instance_id(&self) -> Option<&str> {
        self.instance.as_ref().map(InstanceId::as_str)
    }

    /// The sealer of device (or namespace) `id`: its own subkeys, derived from this key.
    pub fn sealer(&self, id: u64) -> PageSealer {
        PageSealer::new(self.holder.clone(), id)
    }

    /// A public name for the key (a one-way derivation of it), for logs and status.
    pub fn fingerprint(&self) -> &str {
        self.holder.fingerprint()
    }

    /// Crypto-erase in this process: drops every copy of the key and of its subkeys the process
    /// holds (the keyring copy stays: see `destroy_everywhere`). Idempotent; every later seal or
    /// open returns `KeyError::Destroyed`.
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
            "InstanceKey(redacted, fingerprint {}, {state}",
            self.fingerprint()
        )?;
        match self.instance_id() {
            Some(id) => write!(f, ", instance {id})"),
            None => f.write_str(", RAM only)"),
        }
    }
}
