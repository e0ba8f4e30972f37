//! The ftl crate's only unsafe code: a read-only shared mapping of a device file, so that reading
//! a page is a copy out of the page cache instead of two `pread`s (data and OOB).
//!
//! Why: at queue depth 32 a `pread` of 4 KiB costs its page-cache lookup (`filemap_get_read_batch`,
//! `xas_load`) and the kernel's copy, twice per page read (the OOB is read too, to check the
//! page's crc); in `benches/vhost_vs_qsd` that was 45% of the serving process's CPU on random
//! reads. A mapped page costs one minor fault the first time it is touched, then only the copy.
//!
//! Writes still go through `pwrite` (`file.rs`): a store through a mapping into a hole that the
//! file system cannot allocate (a full disk) raises SIGBUS instead of returning ENOSPC. A read of
//! a hole maps the zero page and needs no allocation. Writes made with `pwrite` are visible
//! through the mapping at once (Linux has one page cache per file), and a hole punched by an erase
//! unmaps the range from every mapping, so later reads see the new bytes.
//!
//! The mapping is never turned into a Rust reference (`&[u8]`): other dies' pages are written
//! through `pwrite` while a read copies, so bytes are only ever copied out with raw pointers, of
//! ranges the caller owns (see `read`).

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fs::File;
use std::io;
use std::ptr::NonNull;

use rustix::mm::{MapFlags, ProtFlags};

/// A read-only `MAP_SHARED` mapping of a whole device file.
#[derive(Debug)]
pub struct FileMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; it is only read, by copying,
// and unmapped once in `drop`. Concurrent reads from several threads are reads of shared memory,
// which is what a shared file mapping is for.
unsafe impl Send for FileMap {}
// SAFETY: see `Send`: `read` takes `&self` and only copies bytes out.
unsafe impl Sync for FileMap {}

impl FileMap {
    /// Maps the first `len` bytes of `file` read-only. The file must be at least `len` bytes long
    /// and stay so while mapped (device files have a fixed length: `FileStore` checks it at open,
    /// sets it at create and never truncates).
    pub fn new(file: &File, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty file: nothing to map",
            ));
        }
        let actual = file.metadata()?.len();
        if actual < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("file is {actual} bytes, shorter than the {len} to map"),
            ));
        }
        // SAFETY: a fresh mapping (null hint, no MAP_FIXED) replaces nothing of ours; the file is
        // at least `len` bytes long (checked above), so every mapped page is backed by the file,
        // and `FileStore` never shrinks it, so no access can fault past its end.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                file,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self { ptr, len })
    }

    /// Copies `out.len()` bytes from offset `at` of the file into `out`. Returns false, copying
    /// nothing, if the range is not inside the mapping.
    ///
    /// The caller must own the range for the duration of the call (no write to these bytes runs
    /// at the same time): `Device` holds the die's lock across a page read, as it does across a
    /// program or erase of that die's pages, so within this process the bytes do not change
    /// while they are copied.
    pub fn read(&self, at: u64, out: &mut [u8]) -> bool {
        let Ok(start) = usize::try_from(at) else {
            return false;
        };
        if start
            .checked_add(out.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: `start..start + out.len()` lies inside the mapping (checked above), which stays
        // mapped until `drop`; `out` is a distinct, writable buffer of exactly that length (it
        // cannot overlap a read-only mapping); the bytes are copied, never borrowed, and no write
        // to them runs concurrently (the caller's contract above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(start),
                out.as_mut_ptr(),
                out.len(),
            );
        }
        true
    }
}

impl FileMap {
    /// The address of byte `at` of the file in the mapping, for `prefetch` (never dereferenced
    /// here), or None past the end.
    pub fn address_of(&self, at: u64) -> Option<usize> {
        let at = usize::try_from(at).ok().filter(|&at| at < self.len)?;
        Some(self.ptr.as_ptr() as usize + at)
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what `mmap` returned and took, unmapped only here;
        // no copy can be running, since `read` borrows `self`.
        let result = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
        if let Err(e) = result {
            tracing::warn!("munmap of a device file mapping failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn reads_what_pwrite_wrote_and_refuses_ranges_outside() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(3 * 4096).unwrap();
        file.write_all_at(b"ferrite", 4096 + 10).unwrap();
        let map = FileMap::new(&file, 3 * 4096).unwrap();
        let mut out = [0u8; 7];
        assert!(map.read(4096 + 10, &mut out));
        assert_eq!(&out, b"ferrite");
        // A later pwrite is visible through the same mapping (one page cache).
        file.write_all_at(b"FERRITE", 4096 + 10).unwrap();
        assert!(map.read(4096 + 10, &mut out));
        assert_eq!(&out, b"FERRITE");
        // A hole reads as zeros.
        assert!(map.read(2 * 4096, &mut out));
        assert_eq!(out, [0u8; 7]);
        // Past the end, or overflowing: refused, nothing copied.
        let mut last = [9u8; 2];
        assert!(!map.read(3 * 4096 - 1, &mut last));
        assert_eq!(last, [9, 9]);
        assert!(!map.read(u64::MAX, &mut last));
        assert!(map.read(3 * 4096 - 2, &mut last));
    }

    #[test]
    fn a_file_shorter_than_the_mapping_is_refused() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(4096).unwrap();
        let e = FileMap::new(&file, 8192).unwrap_err();
        assert!(e.to_string().contains("shorter"), "{e}");
    }
}
