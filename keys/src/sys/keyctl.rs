//! The kernel keyring calls the instance key needs: `user` keys in the caller's user keyring.
//! libc has the syscall numbers but not the keyctl constants; these are from
//! `<linux/keyctl.h>`, a stable kernel ABI.

use std::ffi::CStr;

use super::last_errno;

const KEY_SPEC_USER_KEYRING: libc::c_int = -4;
const KEYCTL_SEARCH: libc::c_int = 10;
const KEYCTL_READ: libc::c_int = 11;
const KEYCTL_INVALIDATE: libc::c_int = 21;
const USER_KEY_TYPE: &CStr = c"user";

/// A key's serial number in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeySerial(libc::c_int);

fn serial_or_errno(rc: libc::c_long) -> Result<KeySerial, i32> {
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(KeySerial(rc as libc::c_int))
    }
}

/// `add_key("user", description, payload, KEY_SPEC_USER_KEYRING)`: creates the key, or replaces
/// the payload of a key with that description already in the keyring.
pub(crate) fn add_user_key(description: &CStr, payload: &[u8]) -> Result<KeySerial, i32> {
    // SAFETY: both strings are NUL-terminated; the kernel copies `payload.len()` bytes from
    // `payload` and keeps no pointer to any of them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            USER_KEY_TYPE.as_ptr(),
            description.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_USER_KEYRING,
        )
    };
    serial_or_errno(rc)
}

/// `keyctl(KEYCTL_SEARCH)` of the user keyring (and keyrings linked from it) for a `user` key.
/// `Ok(None)` when there is no such key.
pub(crate) fn search_user_key(description: &CStr) -> Result<Option<KeySerial>, i32> {
    // SAFETY: both strings are NUL-terminated and only read; destination keyring 0 links nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SEARCH,
            KEY_SPEC_USER_KEYRING,
            USER_KEY_TYPE.as_ptr(),
            description.as_ptr(),
            0 as libc::c_int,
        )
    };
    match serial_or_errno(rc) {
        Ok(serial) => Ok(Some(serial)),
        Err(libc::ENOKEY | libc::EKEYREVOKED | libc::EKEYEXPIRED) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// `keyctl(KEYCTL_READ)` into `out`: the kernel copies the payload straight into `out` (at most
/// `out.len()` bytes) and returns the payload's full length.
pub(crate) fn read_key(serial: KeySerial, out: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `out` is a valid writable buffer of `out.len()` bytes; the kernel writes at most
    // that many and keeps no pointer to it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_READ,
            serial.0,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(rc as usize)
    }
}

/// `keyctl(KEYCTL_INVALIDATE)`: the key is unusable at once and garbage-collected by the kernel
/// (which frees its payload with a zeroing free).
pub(crate) fn invalidate_key(serial: KeySerial) -> Result<(), i32> {
    // SAFETY: takes a serial number only.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, serial.0) };
    if rc < 0 { Err(last_errno()) } else { Ok(()) }
}
