//! The instance key in the kernel keyring, so that it outlives a restart of the serving process
//! without ever touching a file: a `user` key named `ferrite:instance:<instance id>` in the
//! user keyring of the process's uid, holding the 32 raw key bytes. The kernel keeps it until it
//! is invalidated (terminate) or the host reboots.
//!
//! One process per instance: `add_key` replaces the payload of an existing key of the same name,
//! so two processes creating one instance at once would race. Creation reads the key back and
//! fails with `KeyringRace` if it changed; the caller (ferrite serve) must own the instance
//! (its NAND files) exclusively anyway.

use std::ffi::CString;

use crate::KeyError;
use crate::secret::{KEY_BYTES, Secret};
use crate::sys::keyctl::{self, KeySerial};

/// Instance ids are at most this long (the keyring description stays short and printable).
pub const INSTANCE_ID_BYTES_MAX: usize = 64;
const DESCRIPTION_PREFIX: &str = "ferrite:instance:";

/// A validated instance id: 1..=64 bytes of ASCII letters, digits, `-`, `_` and `.`, not
/// starting with `.` or `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InstanceId(String);

impl InstanceId {
    pub(crate) fn new(id: &str) -> Result<Self, KeyError> {
        let bad = |reason| {
            Err(KeyError::InstanceId {
                id: id.chars().take(INSTANCE_ID_BYTES_MAX + 8).collect(),
                reason,
            })
        };
        if id.is_empty() {
            return bad("empty");
        }
        if id.len() > INSTANCE_ID_BYTES_MAX {
            return bad("longer than 64 bytes");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return bad("only ASCII letters, digits, '-', '_' and '.' are allowed");
        }
        if id.starts_with(['.', '-']) {
            return bad("must not start with '.' or '-'");
        }
        Ok(Self(id.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The keyring description, `ferrite:instance:<id>`.
    pub(crate) fn description(&self) -> String {
        format!("{DESCRIPTION_PREFIX}{}", self.0)
    }

    fn description_c(&self) -> Result<CString, KeyError> {
        // Validation admits no NUL, so this cannot fail; map it rather than unwrap.
        CString::new(self.description()).map_err(|_| KeyError::InstanceId {
            id: self.0.clone(),
            reason: "contains NUL",
        })
    }
}

/// Errors that mean the keyring cannot be used here at all (no keyrings in the kernel, a seccomp
/// filter, or a sandbox without access to the user keyring), as opposed to a failed operation.
fn unavailable(errno: i32) -> bool {
    matches!(errno, libc::ENOSYS | libc::EPERM | libc::EACCES)
}

fn error(op: &'static str, id: &InstanceId, errno: i32) -> KeyError {
    if unavailable(errno) {
        KeyError::KeyringUnavailable { op, errno }
    } else {
        KeyError::Keyring {
            op,
            description: id.description(),
            errno,
        }
    }
}

fn search(id: &InstanceId) -> Result<Option<KeySerial>, KeyError> {
    keyctl::search_user_key(&id.description_c()?)
        .map_err(|errno| error("keyctl(KEYCTL_SEARCH)", id, errno))
}

/// Reads `serial` straight into a new secret page (no other copy in this process).
fn read(id: &InstanceId, serial: KeySerial) -> Result<Secret, KeyError> {
    let mut secret = Secret::zeroed()?;
    let bytes = keyctl::read_key(serial, secret.expose_mut())
        .map_err(|errno| error("keyctl(KEYCTL_READ)", id, errno))?;
    if bytes != KEY_BYTES {
        return Err(KeyError::KeyringPayload {
            description: id.description(),
            bytes,
            expected: KEY_BYTES,
        });
    }
    Ok(secret)
}

/// The instance's key, if the keyring holds one.
pub(crate) fn load(id: &InstanceId) -> Result<Option<Secret>, KeyError> {
    match search(id)? {
        Some(serial) => read(id, serial).map(Some),
        None => Ok(None),
    }
}

/// Stores `secret` as the instance's key, then reads it back to make sure no other process
/// replaced it meanwhile.
pub(crate) fn store(id: &InstanceId, secret: &Secret) -> Result<(), KeyError> {
    let serial = keyctl::add_user_key(&id.description_c()?, secret.expose())
        .map_err(|errno| error("add_key", id, errno))?;
    let stored = read(id, serial)?;
    // Compares key bytes: constant time, so timing says nothing about where they differ.
    aws_lc_rs::constant_time::verify_slices_are_equal(stored.expose(), secret.expose()).map_err(
        |_| KeyError::KeyringRace {
            description: id.description(),
        },
    )
}

/// Invalidates the instance's key. `Ok(true)` if there was one, `Ok(false)` if not.
pub(crate) fn invalidate(id: &InstanceId) -> Result<bool, KeyError> {
    let Some(serial) = search(id)? else {
        return Ok(false);
    };
    match keyctl::invalidate_key(serial) {
        Ok(()) => Ok(true),
        // Gone between the search and now (another terminate): the outcome is the same.
        Err(libc::ENOKEY | libc::EKEYREVOKED | libc::EKEYEXPIRED) => Ok(true),
        Err(errno) => Err(error("keyctl(KEYCTL_INVALIDATE)", id, errno)),
    }
}

/// Largest note payload (`user` keys take up to 32 KiB; notes are a few digests).
pub const NOTE_BYTES_MAX: usize = 4096;

/// A note kept beside the instance key: a `user` key `ferrite:instance:<id>:<name>` with a
/// small public payload (never key material), that lives and dies with the instance as the key
/// does. `name` is fixed by the caller (ASCII, no NUL).
fn note_description(id: &InstanceId, name: &str) -> Result<CString, KeyError> {
    CString::new(format!("{}:{name}", id.description())).map_err(|_| KeyError::InstanceId {
        id: id.as_str().to_owned(),
        reason: "note name contains NUL",
    })
}

pub(crate) fn load_note(id: &InstanceId, name: &str) -> Result<Option<Vec<u8>>, KeyError> {
    let description = note_description(id, name)?;
    let Some(serial) = keyctl::search_user_key(&description)
        .map_err(|errno| error("keyctl(KEYCTL_SEARCH)", id, errno))?
    else {
        return Ok(None);
    };
    let mut out = vec![0u8; NOTE_BYTES_MAX];
    let bytes = keyctl::read_key(serial, &mut out)
        .map_err(|errno| error("keyctl(KEYCTL_READ)", id, errno))?;
    if bytes > NOTE_BYTES_MAX {
        return Err(KeyError::KeyringPayload {
            description: description.to_string_lossy().into_owned(),
            bytes,
            expected: NOTE_BYTES_MAX,
        });
    }
    out.truncate(bytes);
    Ok(Some(out))
}

pub(crate) fn store_note(id: &InstanceId, name: &str, payload: &[u8]) -> Result<(), KeyError> {
    if payload.len() > NOTE_BYTES_MAX {
        return Err(KeyError::KeyringPayload {
            description: format!("{}:{name}", id.description()),
            bytes: payload.len(),
            expected: NOTE_BYTES_MAX,
        });
    }
    keyctl::add_user_key(&note_description(id, name)?, payload)
        .map(|_| ())
        .map_err(|errno| error("add_key", id, errno))
}

pub(crate) fn invalidate_note(id: &InstanceId, name: &str) -> Result<(), KeyError> {
    let description = note_description(id, name)?;
    let Some(serial) = keyctl::search_user_key(&description)
        .map_err(|errno| error("keyctl(KEYCTL_SEARCH)", id, errno))?
    else {
        return Ok(());
    };
    match keyctl::invalidate_key(serial) {
        Ok(()) | Err(libc::ENOKEY | libc::EKEYREVOKED | libc::EKEYEXPIRED) => Ok(()),
        Err(errno) => Err(error("keyctl(KEYCTL_INVALIDATE)", id, errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_validated() {
        for good in ["i-0123abcd", "a", "web_1.prod", &"x".repeat(64)] {
            let id = InstanceId::new(good).unwrap();
            assert_eq!(id.description(), format!("ferrite:instance:{good}"));
        }
        for (bad, why) in [
            ("", "empty"),
            (&"x".repeat(65) as &str, "longer"),
            ("a b", "only ASCII"),
            ("a:b", "only ASCII"),
            ("a/b", "only ASCII"),
            ("é", "only ASCII"),
            ("a\0b", "only ASCII"),
            (".hidden", "must not start"),
            ("-x", "must not start"),
        ] {
            match InstanceId::new(bad) {
                Err(KeyError::InstanceId { reason, .. }) => {
                    assert!(reason.contains(why), "{bad:?}: {reason}")
                }
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
    }
}
