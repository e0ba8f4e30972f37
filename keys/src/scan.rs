//! Test-only hooks (feature `scan-test`) for the memory-scan test, which must know what bytes to
//! look for in a child process. Never enabled outside this crate's own tests.

use crate::KeyError;
use crate::instance::InstanceKey;
use crate::sys::secret_page::{self, KeyMemory};

/// What the scanner looks for and where the key may legitimately be.
#[derive(Debug)]
pub struct ScanProbe {
    /// The master key in hex: formatted byte by byte from the page, so no raw copy is made.
    pub key_hex: String,
    /// Address of the key's page.
    pub page_address: usize,
}

pub fn probe(key: &InstanceKey) -> Result<ScanProbe, KeyError> {
    key.holder().with_master(|master| ScanProbe {
        key_hex: master.expose().iter().map(|b| format!("{b:02x}")).collect(),
        page_address: master.address(),
    })
}

/// Copies the raw key into `out` (an ordinary heap buffer: the scanner's positive control).
pub fn copy_key_into(key: &InstanceKey, out: &mut [u8]) -> Result<(), KeyError> {
    key.holder()
        .with_master(|master| out.copy_from_slice(master.expose()))
}

/// Fixes the kind of key memory before the first key exists. False if it was already fixed
/// otherwise.
pub fn force_key_memory(kind: KeyMemory) -> bool {
    secret_page::force_key_memory(kind)
}
