//! Protection of the whole process once it holds an instance key.

use crate::KeyError;
use crate::sys::process as sys;

/// Makes the process non-dumpable (`PR_SET_DUMPABLE` = 0): no core dumps, and other non-root
/// processes, even of the same user, can no longer ptrace it or read its `/proc/PID/mem` or
/// `/proc/PID/maps`. Root (CAP_SYS_PTRACE) still can: memfd_secret pages are what hide keys from
/// root. Called whenever an instance key is created; idempotent.
pub(crate) fn forbid_dumps() -> Result<(), KeyError> {
    sys::forbid_dumps().map_err(|errno| KeyError::Dumpable { errno })
}

/// Whether the process is still dumpable (false once an instance key exists), for status output.
pub fn process_dumpable() -> Result<bool, KeyError> {
    sys::is_dumpable().map_err(|errno| KeyError::Dumpable { errno })
}
