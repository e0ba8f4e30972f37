//! Process-wide protection of key memory.

use super::last_errno;

/// `prctl(PR_SET_DUMPABLE, 0)`: the process writes no core dump, and other processes of the same
/// user can no longer ptrace it or read its `/proc/PID/mem` (only a process with CAP_SYS_PTRACE,
/// i.e. root, still can: that is what memfd_secret pages are for). Idempotent.
pub(crate) fn forbid_dumps() -> Result<(), i32> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 { Ok(()) } else { Err(last_errno()) }
}

/// Whether the process is dumpable (`prctl(PR_GET_DUMPABLE)`), i.e. not yet protected.
pub(crate) fn is_dumpable() -> Result<bool, i32> {
    // SAFETY: PR_GET_DUMPABLE takes no argument and returns the flag.
    let rc = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(rc != 0)
    }
}
