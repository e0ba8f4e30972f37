//! One process at a time owns a data directory: `ferrite serve` for as long as it runs, or a
//! `ferrite terminate` of a stopped instance, or the background erase a terminate leaves behind.
//! An advisory `flock` on `<data_dir>/lock`, which the kernel drops when the process ends, even by
//! SIGKILL, so a crash never leaves it held.
//!
//! The holder writes what it is doing into the lock file (`erase instance <id> pid <pid>`, ...).
//! Whoever finds the lock held reads that note: an erase is waited for (it ends on its own, and
//! the next `ferrite serve` must find a fresh namespace, not an error); anything else is refused,
//! naming the holder.
//!
//! The keyring keeps one key per instance id and assumes one process serves it (keys/src/keyring.rs);
//! this lock is what makes that true.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

const LOCK_FILE: &str = "lock";
/// The start of the holder note of an erase, which others wait for.
const ERASE_NOTE: &str = "erase instance ";
/// Longest wait for another process's erase: far more than erasing the largest configuration
/// takes (each block is one hole punched in its device file).
const ERASE_WAIT_LIMIT: Duration = Duration::from_secs(30 * 60);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Held while alive.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (creating the directory) for `purpose` (e.g. `serve`).
    /// Waits while another process erases a terminated instance there (saying so on stderr
    /// once); fails naming the holder when anything else holds it.
    pub fn acquire(data_dir: &Path, purpose: &str) -> anyhow::Result<Self> {
        let file = open(data_dir)?;
        let path = lock_path(data_dir);
        let started = Instant::now();
        let mut said_waiting = false;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    let lock = Self { file };
                    lock.set_holder(purpose)?;
                    return Ok(lock);
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
            let holder = holder_note(&file);
            anyhow::ensure!(
                holder.starts_with(ERASE_NOTE),
                "cannot {purpose}: another ferrite process holds {} ({})",
                path.display(),
                if holder.is_empty() {
                    "a running `ferrite serve` or `ferrite terminate`"
                } else {
                    holder.as_str()
                }
            );
            anyhow::ensure!(
                started.elapsed() < ERASE_WAIT_LIMIT,
                "cannot {purpose}: waited {} s for the {holder} to finish erasing {}",
                ERASE_WAIT_LIMIT.as_secs(),
                data_dir.display()
            );
            if !said_waiting {
                eprintln!("waiting for the {holder} to finish before we {purpose}");
                said_waiting = true;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Takes the lock for the background erase of `instance_id`, waiting for whoever holds it
    /// for as long as `still_needed()` says the erase is still to do. `None`: someone else
    /// finished it meanwhile.
    pub fn acquire_for_erase(
        data_dir: &Path,
        instance_id: &str,
        still_needed: &mut dyn FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<Option<Self>> {
        let file = open(data_dir)?;
        loop {
            if !still_needed()? {
                return Ok(None);
            }
            match file.try_lock() {
                Ok(()) => {
                    let lock = Self { file };
                    lock.set_holder(&erase_purpose(instance_id))?;
                    return Ok(Some(lock));
                }
                Err(TryLockError::WouldBlock) => std::thread::sleep(POLL_INTERVAL),
                Err(TryLockError::Error(e)) => {
                    return Err(e)
                        .with_context(|| format!("locking {}", lock_path(data_dir).display()));
                }
            }
        }
    }

    /// Says what the holder now does (read by processes that find the lock held).
    pub fn set_holder(&self, purpose: &str) -> anyhow::Result<()> {
        // Written before the old note's tail is cut, so a reader never sees an empty note.
        let note = format!("{purpose} pid {}\n", std::process::id());
        self.file.write_all_at(note.as_bytes(), 0)?;
        self.file.set_len(note.len() as u64)?;
        Ok(())
    }

    /// This process now erases instance `instance_id`: others wait for it instead of failing.
    pub fn set_erasing(&self, instance_id: &str) -> anyhow::Result<()> {
        self.set_holder(&erase_purpose(instance_id))
    }
}

fn erase_purpose(instance_id: &str) -> String {
    format!("{ERASE_NOTE}{instance_id}")
}

fn open(data_dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = lock_path(data_dir);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The holder's note (one line, at most 200 bytes; empty if unreadable).
fn holder_note(file: &File) -> String {
    let mut buf = [0u8; 200];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
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
        let pid = std::process::id();
        assert!(
            err.to_string().contains(&format!("(serve pid {pid})")),
            "{err}"
        );
        drop(first);
        DataDirLock::acquire(dir.path(), "serve").unwrap();
    }

    #[test]
    fn an_erase_is_waited_for_instead_of_refused() {
        let dir = tempfile::tempdir().unwrap();
        let eraser = DataDirLock::acquire(dir.path(), "terminate").unwrap();
        eraser.set_erasing("i-123").unwrap();
        let path = dir.path().to_owned();
        let waiter = std::thread::spawn(move || DataDirLock::acquire(&path, "serve").map(|_| ()));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!waiter.is_finished(), "did not wait for the erase");
        drop(eraser);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn the_background_erase_gives_up_once_someone_else_did_it() {
        let dir = tempfile::tempdir().unwrap();
        let holder = DataDirLock::acquire(dir.path(), "serve").unwrap();
        let mut polls = 0;
        let got = DataDirLock::acquire_for_erase(dir.path(), "i-1", &mut || {
            polls += 1;
            Ok(polls < 3)
        })
        .unwrap();
        assert!(got.is_none());
        drop(holder);
        let got = DataDirLock::acquire_for_erase(dir.path(), "i-1", &mut || Ok(true)).unwrap();
        assert!(got.is_some());
    }
}
