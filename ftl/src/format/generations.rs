//! The generation table: a sealed FTL's per-page generation bounds, kept off the NAND across a
//! clean restart so an older copy of a page put back on the media (data and OOB record, which
//! authenticate) fails to open after the restart as it does while running. docs/ftl-format.md
//! ("Generation table") has the layout; docs/keys-design.md what it protects and what not.
//!
//! ```text
//!   0   magic "FERRGENS"                 [u8; 8]
//!   8   version (1)                      u32
//!  12   header length (32)               u32
//!  16   sealer id (device or volume)     u64
//!  24   pages (n)                        u64
//!  32   bound of page 0..n               n x u64
//!  32+8n  HMAC-SHA256 of bytes 0..32+8n  [u8; 32]   (the sealer's table subkey)
//!  64+8n  crc32 of bytes 0..64+8n        u32
//! ```
//! The MAC makes the table useless to forge without the instance key; the crc tells a torn or
//! damaged file from a forged one. A table from an older clean close is still sound (bounds
//! only rise), only weaker.

use keys::{KeyError, PageSealer, TABLE_MAC_BYTES};

pub const MAGIC: [u8; 8] = *b"FERRGENS";
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 32;
/// The most pages a table may hold: 2^32 (the FTL's logical page numbers are u32).
pub const PAGES_MAX: u64 = 1 << 32;

/// Why a table was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("generation table: {0}")]
    Format(String),
    #[error("generation table is for {found} (this FTL is sealed for {expected})")]
    WrongId { found: u64, expected: u64 },
    #[error("generation table does not authenticate under this instance's key")]
    Forged,
    #[error("generation table: {0}")]
    Key(KeyError),
}

/// The table of `bounds`, authenticated under `sealer`'s table subkey.
pub fn encode(sealer: &PageSealer, bounds: &[u64]) -> Result<Vec<u8>, TableError> {
    let n = bounds.len();
    let mut out = Vec::with_capacity(HEADER_BYTES + 8 * n + TABLE_MAC_BYTES + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
    out.extend_from_slice(&sealer.id().to_le_bytes());
    out.extend_from_slice(&(n as u64).to_le_bytes());
    for b in bounds {
        out.extend_from_slice(&b.to_le_bytes());
    }
    let mac = sealer.table_mac(&out).map_err(TableError::Key)?;
    out.extend_from_slice(&mac);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The bounds of a table made by `encode` under the same key and id; one error per rule.
pub fn decode(sealer: &PageSealer, bytes: &[u8]) -> Result<Vec<u64>, TableError> {
    let fail = |why: String| Err(TableError::Format(why));
    if bytes.len() < HEADER_BYTES + TABLE_MAC_BYTES + 4 {
        return fail(format!("{} bytes is too short for a table", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return fail("checksum mismatch (torn or damaged)".into());
    }
    if body[0..8] != MAGIC {
        return fail("not a generation table (bad magic)".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or([0; 8]));
    let version = u32_at(8);
    if version != VERSION {
        return fail(format!("version {version}, this build reads {VERSION}"));
    }
    let header = u32_at(12);
    if header as usize != HEADER_BYTES {
        return fail(format!("header length {header}, expected {HEADER_BYTES}"));
    }
    let id = u64_at(16);
    if id != sealer.id() {
        return Err(TableError::WrongId {
            found: id,
            expected: sealer.id(),
        });
    }
    let pages = u64_at(24);
    if pages > PAGES_MAX {
        return fail(format!("{pages} pages is more than {PAGES_MAX}"));
    }
    let expected_len = HEADER_BYTES as u64 + 8 * pages + TABLE_MAC_BYTES as u64;
    if body.len() as u64 != expected_len {
        return fail(format!(
            "{} bytes for {pages} pages, expected {}",
            body.len() + 4,
            expected_len + 4
        ));
    }
    let (signed, mac) = body.split_at(body.len() - TABLE_MAC_BYTES);
    let mac: [u8; TABLE_MAC_BYTES] = mac.try_into().unwrap_or([0; TABLE_MAC_BYTES]);
    match sealer.verify_table_mac(signed, &mac) {
        Ok(()) => {}
        Err(KeyError::Authentication { .. }) => return Err(TableError::Forged),
        Err(e) => return Err(TableError::Key(e)),
    }
    Ok(signed[HEADER_BYTES..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::{Backend, InstanceKey};

    #[test]
    fn offsets_are_pinned_and_a_table_round_trips() {
        let key = InstanceKey::generate(Backend::AwsLc).unwrap();
        let sealer = key.sealer(0x0102);
        let t = encode(&sealer, &[7, 0, u64::MAX]).unwrap();
        assert_eq!(t.len(), 32 + 24 + 32 + 4);
        assert_eq!(&t[0..8], b"FERRGENS");
        assert_eq!(&t[8..12], &1u32.to_le_bytes());
        assert_eq!(&t[12..16], &32u32.to_le_bytes());
        assert_eq!(&t[16..24], &0x0102u64.to_le_bytes());
        assert_eq!(&t[24..32], &3u64.to_le_bytes());
        assert_eq!(&t[32..40], &7u64.to_le_bytes());
        assert_eq!(&t[48..56], &u64::MAX.to_le_bytes());
        assert_eq!(&t[88..92], &crc32fast::hash(&t[..88]).to_le_bytes());
        assert_eq!(decode(&sealer, &t).unwrap(), vec![7, 0, u64::MAX]);
    }

    #[test]
    fn each_bad_table_is_refused_for_its_reason() {
        let key = InstanceKey::generate(Backend::AwsLc).unwrap();
        let sealer = key.sealer(5);
        let good = encode(&sealer, &[1, 2, 3, 4]).unwrap();
        let recrc = |mut t: Vec<u8>| {
            let n = t.len() - 4;
            let crc = crc32fast::hash(&t[..n]);
            t[n..].copy_from_slice(&crc.to_le_bytes());
            t
        };
        let err = |t: &[u8]| decode(&sealer, t).unwrap_err();
        assert!(matches!(err(&good[..10]), TableError::Format(m) if m.contains("too short")));
        let mut torn = good.clone();
        torn[40] ^= 1;
        assert!(matches!(err(&torn), TableError::Format(m) if m.contains("checksum")));
        // An attacker who recomputes the crc still cannot raise or lower a bound.
        let mut forged = good.clone();
        forged[40] ^= 1;
        assert_eq!(err(&recrc(forged)), TableError::Forged);
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(matches!(err(&recrc(magic)), TableError::Format(m) if m.contains("magic")));
        let mut version = good.clone();
        version[8] = 2;
        assert!(matches!(err(&recrc(version)), TableError::Format(m) if m.contains("version 2")));
        let mut pages = good.clone();
        pages[24] = 9;
        assert!(matches!(err(&recrc(pages)), TableError::Format(m) if m.contains("9 pages")));
        let other_id = encode(&key.sealer(6), &[1]).unwrap();
        assert_eq!(
            err(&other_id),
            TableError::WrongId {
                found: 6,
                expected: 5
            }
        );
        let other_key = InstanceKey::generate(Backend::AwsLc).unwrap();
        let theirs = encode(&other_key.sealer(5), &[1, 2, 3, 4]).unwrap();
        assert_eq!(err(&theirs), TableError::Forged);
    }
}
