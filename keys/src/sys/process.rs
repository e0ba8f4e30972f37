//! Process-wide protection of key memory.

use super::last_errno;

/// prctl's arguments are unsigned longs; pass them at that width through the C varargs.
const ZERO: libc::c_ulong = 0;

/// `prctl(PR_SET_DUMPABLE, 0)`: the process writes no core dump, and other processes of the same
/// user can no longer ptrace it or read its `/proc/PID/mem` (only a process with CAP_SYS_PTRACE,
/// i.e. root, still can: that is what memfd_secret pages are for). Idempotent.
pub(crate) fn forbid_dumps() -> Result<(), i32> {
    // SAFETY: PR_SET_DUMPABLE takes integer arguments (0: not dumpable) and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, ZERO, ZERO, ZERO, ZERO) };
    if rc == 0 { Ok(()) } else { Err(last_errno()) }
}

/// Whether the process is dumpable (`prctl(PR_GET_DUMPABLE)`), i.e. not yet protected.
pub(crate) fn is_dumpable() -> Result<bool, i32> {
    // SAFETY: PR_GET_DUMPABLE reads a flag; its arguments are unused zeros.
    let rc = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, ZERO, ZERO, ZERO, ZERO) };
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(rc != 0)
    }
}
