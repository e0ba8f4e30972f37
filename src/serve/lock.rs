//! One process at a time owns a data directory: `ferrite serve` for as long as it runs, or a
//! `ferrite terminate` of a stopped instance. An advisory `flock` on `<data_dir>/lock`, which the
//! kernel drops when the process ends, even by SIGKILL, so a crash never leaves it held.
//!
//! The keyring keeps one key per instance id and assumes one process serves it (keys/src/keyring.rs);
//! this lock is what makes that true.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::Context;

const LOCK_FILE: &str = "lock";

/// Held while alive.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (creating the directory), or fails naming who may hold it.
    pub fn acquire(data_dir: &Path, purpose: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let path = lock_path(data_dir);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => anyhow::bail!(
                "cannot {purpose}: another ferrite process (a running `ferrite serve` or \
                 `ferrite terminate`) holds {}",
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOCK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), "serve").unwrap();
        let err = DataDirLock::acquire(dir.path(), "serve").unwrap_err();
        assert!(err.to_string().contains("holds"), "{err}");
        drop(first);
        DataDirLock::acquire(dir.path(), "serve").unwrap();
    }
}
