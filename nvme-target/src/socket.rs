//! Unix socket listeners that appear at their path only once they accept connections.
//!
//! `bind(2)` creates the socket file before `listen(2)` runs, so a client that waits for the file
//! to exist (a test, a script, QEMU started right after `ferrite serve`) can connect in between
//! and get ECONNREFUSED. Binding under a temporary name in the same directory and renaming the
//! listening socket into place closes that window: the path exists only when it accepts.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Binds and listens on `path`, replacing a stale socket there; anything else at `path` (a
/// regular file, a directory) is an error, never replaced.
pub fn bind_listening(path: &Path) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_socket()
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    let temp = temporary_path(path)?;
    let _ = std::fs::remove_file(&temp);
    let listener = UnixListener::bind(&temp)?;
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(listener)
}

/// `.<name>.<pid>.tmp` beside `path`: short, so it fits where `path` fits (108 bytes).
fn temporary_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {} has no file name", path.display()),
        )
    })?;
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".{}.tmp", std::process::id()));
    Ok(path.with_file_name(temp))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_socket_accepts_as_soon_as_its_path_exists_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(UnixStream::connect(&path).is_err(), "stale socket accepts");
        let listener = bind_listening(&path).unwrap();
        let _client = UnixStream::connect(&path).unwrap();
        listener.accept().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary socket left behind");
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("precious.txt");
        std::fs::write(&path, b"data").unwrap();
        let err = bind_listening(&path).unwrap_err();
        assert!(err.to_string().contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
