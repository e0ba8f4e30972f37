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

/// The MAC tag naming a table: the MAC before its final crc (unique to the table and
/// unforgeable). None for bytes too short to be a table.
pub fn table_tag(table: &[u8]) -> Option<Tag> {
    let end = table.len().checked_sub(4)?;
    let start = end.checked_sub(TABLE_MAC_BYTES)?;
    table[start..end].try_into().ok()
}

pub type Tag = [u8; TABLE_MAC_BYTES];

// The generation journal: the bounds raised since a table was saved, one record per flush, so a
// crash loses none of a flushed write's bound. docs/ftl-format.md ("Generation journal").
//
//   header (64 bytes)
//   0   magic "FERRGLOG"                 [u8; 8]
//   8   version (1)                      u32
//  12   header length (64)               u32
//  16   sealer id                        u64
//  24   base: tag of the table it extends [u8; 32]
//  56   reserved (0)                     u32
//  60   crc32 of bytes 0..60             u32
//
//   record (40 + 12n bytes), one after another
//   0   pairs (n, 1..=RECORD_PAIRS_MAX)  u32
//   4   n x (logical page u32, generation u64)
//   4+12n   HMAC-SHA256 of "FERRGLOG" ++ previous tag ++ bytes 0..4+12n   [u8; 32]
//  36+12n   crc32 of bytes 0..36+12n     u32
//
// The previous tag of the first record is the base. Chained MACs: a record cannot be dropped,
// reordered or moved to another journal without the instance key; which record is the newest
// the caller keeps elsewhere (the kernel keyring).

pub const JOURNAL_MAGIC: [u8; 8] = *b"FERRGLOG";
pub const JOURNAL_VERSION: u32 = 1;
pub const JOURNAL_HEADER_BYTES: usize = 64;
/// The most pairs in one record: what one flush can drain.
pub const RECORD_PAIRS_MAX: usize = crate::bounds_log::BOUNDS_LOG_MAX;
const PAIR_BYTES: usize = 12;

/// A journal's header: it extends the table whose tag is `base`.
pub fn journal_header(sealer: &PageSealer, base: &Tag) -> Vec<u8> {
    let mut out = Vec::with_capacity(JOURNAL_HEADER_BYTES);
    out.extend_from_slice(&JOURNAL_MAGIC);
    out.extend_from_slice(&JOURNAL_VERSION.to_le_bytes());
    out.extend_from_slice(&(JOURNAL_HEADER_BYTES as u32).to_le_bytes());
    out.extend_from_slice(&sealer.id().to_le_bytes());
    out.extend_from_slice(base);
    out.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), JOURNAL_HEADER_BYTES);
    out
}

fn record_mac(sealer: &PageSealer, previous: &Tag, body: &[u8]) -> Result<Tag, TableError> {
    let mut signed = Vec::with_capacity(8 + TABLE_MAC_BYTES + body.len());
    signed.extend_from_slice(&JOURNAL_MAGIC);
    signed.extend_from_slice(previous);
    signed.extend_from_slice(body);
    sealer.table_mac(&signed).map_err(TableError::Key)
}

/// One record of `pairs` following the record (or base) tagged `previous`; its bytes and its
/// tag (the next record's previous).
pub fn journal_record(
    sealer: &PageSealer,
    previous: &Tag,
    pairs: &[(u32, u64)],
) -> Result<(Vec<u8>, Tag), TableError> {
    if pairs.is_empty() || pairs.len() > RECORD_PAIRS_MAX {
        return Err(TableError::Format(format!(
            "a journal record of {} pairs (1..={RECORD_PAIRS_MAX})",
            pairs.len()
        )));
    }
    let mut out = Vec::with_capacity(40 + PAIR_BYTES * pairs.len());
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for &(lpa, generation) in pairs {
        out.extend_from_slice(&lpa.to_le_bytes());
        out.extend_from_slice(&generation.to_le_bytes());
    }
    let tag = record_mac(sealer, previous, &out)?;
    out.extend_from_slice(&tag);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok((out, tag))
}

/// A journal read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Journal {
    pub base: Tag,
    /// Each whole record's pairs and tag, in order.
    pub records: Vec<(Vec<(u32, u64)>, Tag)>,
    /// Bytes after the last whole record (a record torn by a crash mid-append): ignored.
    pub torn_bytes: usize,
}

/// Reads a journal made under `sealer`; one error per rule. A record whose crc fails ends it
/// (torn); one whose crc holds and MAC fails is a forgery.
pub fn decode_journal(sealer: &PageSealer, bytes: &[u8]) -> Result<Journal, TableError> {
    let fail = |why: String| Err(TableError::Format(why));
    if bytes.len() < JOURNAL_HEADER_BYTES {
        return fail(format!("{} bytes is too short for a journal", bytes.len()));
    }
    let header = &bytes[..JOURNAL_HEADER_BYTES];
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
    if crc32fast::hash(&header[..60]).to_le_bytes() != header[60..64] {
        return fail("journal header checksum mismatch (torn or damaged)".into());
    }
    if header[0..8] != JOURNAL_MAGIC {
        return fail("not a generation journal (bad magic)".into());
    }
    let version = u32_at(8);
    if version != JOURNAL_VERSION {
        return fail(format!(
            "journal version {version}, this build reads {JOURNAL_VERSION}"
        ));
    }
    let header_len = u32_at(12);
    if header_len as usize != JOURNAL_HEADER_BYTES {
        return fail(format!(
            "journal header length {header_len}, expected {JOURNAL_HEADER_BYTES}"
        ));
    }
    let id = u64::from_le_bytes(header[16..24].try_into().unwrap_or([0; 8]));
    if id != sealer.id() {
        return Err(TableError::WrongId {
            found: id,
            expected: sealer.id(),
        });
    }
    let mut base = [0u8; TABLE_MAC_BYTES];
    base.copy_from_slice(&header[24..56]);
    let mut journal = Journal {
        base,
        records: Vec::new(),
        torn_bytes: 0,
    };
    let mut previous = base;
    let mut at = JOURNAL_HEADER_BYTES;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let n = if rest.len() >= 4 {
            u32_at(at) as usize
        } else {
            0
        };
        let len = 40 + PAIR_BYTES * n;
        if n == 0 || n > RECORD_PAIRS_MAX || rest.len() < len {
            journal.torn_bytes = rest.len();
            break;
        }
        let record = &rest[..len];
        if crc32fast::hash(&record[..len - 4]).to_le_bytes() != record[len - 4..] {
            journal.torn_bytes = rest.len();
            break;
        }
        let body = &record[..4 + PAIR_BYTES * n];
        let mut tag = [0u8; TABLE_MAC_BYTES];
        tag.copy_from_slice(&record[4 + PAIR_BYTES * n..len - 4]);
        let signed_tag = record_mac(sealer, &previous, body)?;
        if signed_tag != tag {
            return Err(TableError::Forged);
        }
        let pairs = body[4..]
            .chunks_exact(PAIR_BYTES)
            .map(|c| {
                let lpa = u32::from_le_bytes(c[0..4].try_into().unwrap_or([0; 4]));
                let generation = u64::from_le_bytes(c[4..12].try_into().unwrap_or([0; 8]));
                (lpa, generation)
            })
            .collect();
        journal.records.push((pairs, tag));
        previous = tag;
        at += len;
    }
    Ok(journal)
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
    #[test]
    fn journal_offsets_are_pinned_and_records_chain() {
        let key = InstanceKey::generate(Backend::AwsLc).unwrap();
        let sealer = key.sealer(9);
        let table = encode(&sealer, &[1, 2]).unwrap();
        let base = table_tag(&table).unwrap();
        assert_eq!(&base[..], &table[48..80]);
        let mut log = journal_header(&sealer, &base);
        assert_eq!(log.len(), 64);
        assert_eq!(&log[0..8], b"FERRGLOG");
        assert_eq!(&log[8..12], &1u32.to_le_bytes());
        assert_eq!(&log[12..16], &64u32.to_le_bytes());
        assert_eq!(&log[16..24], &9u64.to_le_bytes());
        assert_eq!(&log[24..56], &base[..]);
        assert_eq!(&log[60..64], &crc32fast::hash(&log[..60]).to_le_bytes());
        let (r1, t1) = journal_record(&sealer, &base, &[(0, 5), (1, 6)]).unwrap();
        assert_eq!(r1.len(), 40 + 24);
        assert_eq!(&r1[0..4], &2u32.to_le_bytes());
        assert_eq!(&r1[4..8], &0u32.to_le_bytes());
        assert_eq!(&r1[8..16], &5u64.to_le_bytes());
        assert_eq!(&r1[28..60], &t1[..]);
        assert_eq!(&r1[60..64], &crc32fast::hash(&r1[..60]).to_le_bytes());
        let (r2, t2) = journal_record(&sealer, &t1, &[(1, 8)]).unwrap();
        log.extend_from_slice(&r1);
        log.extend_from_slice(&r2);
        let j = decode_journal(&sealer, &log).unwrap();
        assert_eq!(j.base, base);
        assert_eq!(
            j.records,
            vec![(vec![(0, 5), (1, 6)], t1), (vec![(1, 8)], t2)]
        );
        assert_eq!(j.torn_bytes, 0);
        // A record torn mid-append is left off, the ones before it kept.
        let torn = decode_journal(&sealer, &log[..log.len() - 3]).unwrap();
        assert_eq!(torn.records.len(), 1);
        assert_eq!(torn.torn_bytes, r2.len() - 3);
    }

    #[test]
    fn a_journal_record_dropped_or_forged_is_refused() {
        let key = InstanceKey::generate(Backend::AwsLc).unwrap();
        let sealer = key.sealer(9);
        let base = [3u8; TABLE_MAC_BYTES];
        let (r1, t1) = journal_record(&sealer, &base, &[(0, 5)]).unwrap();
        let (r2, _) = journal_record(&sealer, &t1, &[(0, 7)]).unwrap();
        // The second record alone (the first dropped) no longer chains from the base.
        let mut dropped = journal_header(&sealer, &base);
        dropped.extend_from_slice(&r2);
        assert_eq!(
            decode_journal(&sealer, &dropped).unwrap_err(),
            TableError::Forged
        );
        // A generation lowered, crc recomputed: the MAC fails.
        let mut lowered = r1.clone();
        lowered[8] = 1;
        let n = lowered.len() - 4;
        let crc = crc32fast::hash(&lowered[..n]);
        lowered[n..].copy_from_slice(&crc.to_le_bytes());
        let mut log = journal_header(&sealer, &base);
        log.extend_from_slice(&lowered);
        assert_eq!(
            decode_journal(&sealer, &log).unwrap_err(),
            TableError::Forged
        );
        // Another key, another id, a bad header.
        let other = InstanceKey::generate(Backend::AwsLc).unwrap();
        let mut theirs = journal_header(&other.sealer(9), &base);
        theirs.extend_from_slice(
            &journal_record(&other.sealer(9), &base, &[(0, 5)])
                .unwrap()
                .0,
        );
        assert_eq!(
            decode_journal(&sealer, &theirs).unwrap_err(),
            TableError::Forged
        );
        let id = journal_header(&key.sealer(4), &base);
        assert!(matches!(
            decode_journal(&sealer, &id).unwrap_err(),
            TableError::WrongId {
                found: 4,
                expected: 9
            }
        ));
        let mut header = journal_header(&sealer, &base);
        header[30] ^= 1;
        assert!(matches!(
            decode_journal(&sealer, &header).unwrap_err(),
            TableError::Format(m) if m.contains("checksum")
        ));
        assert!(journal_record(&sealer, &base, &[]).is_err());
    }
}
