//! The crate's only unsafe code: the system calls that give key bytes a RAM-only home.
//!
//! ```text
//!  secret_page.rs  one page per secret: memfd_secret(2), else an mlock'ed MADV_DONTDUMP page
//!  keyctl.rs       add_key(2) / keyctl(2) on the user keyring (search, read, invalidate)
//!  process.rs      prctl(PR_SET_DUMPABLE): no core dumps, no ptrace or /proc/PID/mem by peers
//! ```
//! Each function here is a thin wrapper around its system calls; every `unsafe` block says why it
//! is sound. Policy (names, limits, which errors mean what) lives in the safe modules.

#![allow(unsafe_code)]

pub(crate) mod keyctl;
pub(crate) mod process;
pub(crate) mod secret_page;

/// The errno of the last failed system call on this thread.
fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
