//! One page of memory per secret, the only place key bytes live while a key is active.
//!
//! Where the kernel offers it, the page is `memfd_secret(2)` memory: removed from the kernel's
//! direct map, never swapped, not in core dumps, and unreadable through `/proc/PID/mem` or ptrace
//! even by root (the kernel, and so a root able to load kernel code, still could). Elsewhere (ENOSYS: kernel without `secretmem`, EPERM: seccomp), an anonymous page that
//! is `mlock`ed (never swapped) and `MADV_DONTDUMP` (not in core dumps); root can still read that
//! one through `/proc/PID/mem`. Both are `MADV_DONTFORK`, so a forked child never inherits them.
//! The bytes are zeroed with volatile writes before the page is unmapped.
//!
//! One page per secret keeps this simple; live pages are bounded by `SECRET_PAGES_MAX`.

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use zeroize::Zeroize;

use super::last_errno;
use crate::KeyError;
use crate::secret::KEY_BYTES;

/// At most this many secrets live at once: 4 MiB of 4 KiB pages, half the default
/// RLIMIT_MEMLOCK of an unprivileged process (both kinds of page count against it).
pub const SECRET_PAGES_MAX: usize = 1024;

/// Where this process keeps key bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMemory {
    /// `memfd_secret(2)` pages: no other process, root included, can read them through
    /// `/proc/PID/mem` or ptrace.
    MemfdSecret,
    /// `mlock`ed, `MADV_DONTDUMP` anonymous pages (the kernel offers no `memfd_secret`).
    Locked,
}

impl fmt::Display for KeyMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyMemory::MemfdSecret => "memfd_secret",
            KeyMemory::Locked => "mlock",
        })
    }
}

static MEMORY: OnceLock<KeyMemory> = OnceLock::new();
static LIVE_PAGES: AtomicUsize = AtomicUsize::new(0);

/// The kind of page this process uses, decided once by trying `memfd_secret(2)`.
pub fn key_memory() -> KeyMemory {
    *MEMORY.get_or_init(|| match memfd_secret() {
        Ok(_probe) => KeyMemory::MemfdSecret,
        // Any refusal (ENOSYS, EPERM, EINVAL...) means this kernel or sandbox does not offer it.
        Err(_) => KeyMemory::Locked,
    })
}

/// Fixes the kind of page before any is allocated (tests of the fallback). False if already fixed
/// otherwise.
#[cfg(feature = "scan-test")]
pub fn force_key_memory(kind: KeyMemory) -> bool {
    *MEMORY.get_or_init(|| kind) == kind
}

fn memfd_secret() -> Result<OwnedFd, i32> {
    // SAFETY: memfd_secret takes a flags word and returns a new file descriptor or -1.
    let rc = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC as libc::c_uint) };
    if rc < 0 {
        return Err(last_errno());
    }
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
}

fn page_bytes() -> Result<usize, KeyError> {
    // SAFETY: sysconf reads a system constant.
    let rc = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if rc < KEY_BYTES as libc::c_long {
        return Err(KeyError::SecretMemory {
            op: "sysconf(_SC_PAGESIZE)",
            errno: libc::EINVAL,
        });
    }
    Ok(rc as usize)
}

/// A reserved place under `SECRET_PAGES_MAX`, given back on drop.
struct Slot;

impl Slot {
    fn reserve() -> Result<Self, KeyError> {
        LIVE_PAGES
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < SECRET_PAGES_MAX).then_some(live + 1)
            })
            .map(|_| Slot)
            .map_err(|_| KeyError::SecretMemoryFull {
                limit: SECRET_PAGES_MAX,
            })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        LIVE_PAGES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A mapped page; unmapped on drop (without zeroing: `SecretPage` zeroes first).
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// `mmap` of `len` bytes, readable and writable, `flags` and `fd` as mmap takes them.
    fn new(
        len: usize,
        flags: libc::c_int,
        fd: libc::c_int,
        op: &'static str,
    ) -> Result<Self, KeyError> {
        // SAFETY: a fresh mapping at an address the kernel chooses; it aliases nothing of ours.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(KeyError::SecretMemory {
                op,
                errno: last_errno(),
            });
        }
        NonNull::new(p.cast::<u8>())
            .map(|ptr| Mapping { ptr, len })
            .ok_or(KeyError::SecretMemory {
                op,
                errno: libc::EFAULT,
            })
    }

    fn advise(&self, advice: libc::c_int, op: &'static str) -> Result<(), KeyError> {
        // SAFETY: the range is exactly our own mapping; these advices change no contents.
        let rc = unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, advice) };
        if rc == 0 {
            Ok(())
        } else {
            Err(KeyError::SecretMemory {
                op,
                errno: last_errno(),
            })
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, and this is the only unmap. An error
        // here could only mean a bad range, which cannot happen; the page is unmapped (and
        // unlocked) either way when the process exits.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One page holding one secret in its first `KEY_BYTES` bytes.
pub(crate) struct SecretPage {
    // Field order is drop order: the page is unmapped before its slot is given back.
    mapping: Mapping,
    _slot: Slot,
}

// SAFETY: the page is plain memory owned by this value alone; `&self` only reads it and writing
// needs `&mut self`, so the usual borrow rules make sharing and sending sound.
unsafe impl Send for SecretPage {}
// SAFETY: as above.
unsafe impl Sync for SecretPage {}

impl SecretPage {
    /// A zeroed page of the process's kind (`key_memory()`).
    pub(crate) fn new() -> Result<Self, KeyError> {
        Self::new_of(key_memory())
    }

    pub(crate) fn new_of(kind: KeyMemory) -> Result<Self, KeyError> {
        let slot = Slot::reserve()?;
        let len = page_bytes()?;
        let mapping = match kind {
            KeyMemory::MemfdSecret => {
                let fd = memfd_secret().map_err(|errno| KeyError::SecretMemory {
                    op: "memfd_secret",
                    errno,
                })?;
                // SAFETY: sizes the secret file we own; no memory is touched.
                if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
                    return Err(KeyError::SecretMemory {
                        op: "ftruncate(memfd_secret)",
                        errno: last_errno(),
                    });
                }
                // The mapping keeps the file alive; the descriptor closes when `fd` drops.
                Mapping::new(len, libc::MAP_SHARED, fd.as_raw_fd(), "mmap(memfd_secret)")?
            }
            KeyMemory::Locked => {
                let mapping = Mapping::new(
                    len,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    "mmap(anonymous)",
                )?;
                // SAFETY: locks exactly our own mapping in RAM; no contents change.
                if unsafe { libc::mlock(mapping.ptr.as_ptr().cast(), len) } != 0 {
                    return Err(KeyError::SecretMemory {
                        op: "mlock",
                        errno: last_errno(),
                    });
                }
                mapping.advise(libc::MADV_DONTDUMP, "madvise(MADV_DONTDUMP)")?;
                mapping
            }
        };
        mapping.advise(libc::MADV_DONTFORK, "madvise(MADV_DONTFORK)")?;
        Ok(Self {
            mapping,
            _slot: slot,
        })
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_BYTES] {
        // SAFETY: the mapping is at least KEY_BYTES long (`page_bytes` checks), readable,
        // initialised (fresh pages are zero) and lives as long as `self`.
        unsafe { &*self.mapping.ptr.as_ptr().cast::<[u8; KEY_BYTES]>() }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; KEY_BYTES] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only reference.
        unsafe { &mut *self.mapping.ptr.as_ptr().cast::<[u8; KEY_BYTES]>() }
    }

    /// The page's address, for the memory-scan test to tell the page from the rest of memory.
    #[cfg(feature = "scan-test")]
    pub(crate) fn address(&self) -> usize {
        self.mapping.ptr.as_ptr() as usize
    }
}

impl Drop for SecretPage {
    fn drop(&mut self) {
        // Volatile writes: the compiler may not skip them although the page is unmapped next.
        self.bytes_mut().zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VmFlags line of /proc/self/smaps for the mapping that starts at `address`.
    fn vm_flags(address: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{address:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        let header = lines
            .next()
            .unwrap_or_else(|| panic!("no mapping at {start}"));
        lines
            .find(|l| l.starts_with("VmFlags:"))
            .map(|l| format!("{header} / {l}"))
            .unwrap()
    }

    #[test]
    fn locked_page_is_locked_not_dumped_not_forked_and_zeroed() {
        let mut page = SecretPage::new_of(KeyMemory::Locked).unwrap();
        assert_eq!(page.bytes(), &[0u8; KEY_BYTES]);
        page.bytes_mut().fill(0xA5);
        let flags = vm_flags(page.mapping.ptr.as_ptr() as usize);
        for flag in [" lo", " dd", " dc"] {
            assert!(flags.contains(flag), "{flag} missing: {flags}");
        }
        assert_eq!(page.bytes(), &[0xA5u8; KEY_BYTES]);
    }

    #[test]
    fn secret_page_is_secretmem_where_offered() {
        if key_memory() != KeyMemory::MemfdSecret {
            eprintln!(
                "skipped: this kernel offers no memfd_secret (holder is {})",
                key_memory()
            );
            return;
        }
        let mut page = SecretPage::new_of(KeyMemory::MemfdSecret).unwrap();
        page.bytes_mut().fill(0x5A);
        let flags = vm_flags(page.mapping.ptr.as_ptr() as usize);
        assert!(flags.contains("secretmem"), "{flags}");
        // The kernel locks and hides secretmem from dumps by itself; we add do-not-fork.
        for flag in [" lo", " dd", " dc"] {
            assert!(flags.contains(flag), "{flag} missing: {flags}");
        }
        assert_eq!(page.bytes(), &[0x5Au8; KEY_BYTES]);
    }
}
