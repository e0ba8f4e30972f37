//! The page shape block summaries and trim-log pages share: a 16-byte header and 12-byte entries
//! of (logical page, sequence number).
//!
//! ```text
//! offset size field
//!      0    4 magic     per format
//!      4    2 version   per format
//!      6    2 entries   n
//!      8    8 reserved  zero
//!     16   12 entry[i]  lpa u32, data_seq u64
//! ```
//! The rest of the page is zero. Integrity comes from the page's OOB crc.

use super::{FormatError, le_u16, le_u32, le_u64};

pub const HEADER_BYTES: usize = 16;
pub const ENTRY_BYTES: usize = 12;

/// A logical page and the sequence number of the version (or trim) an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpaSeq {
    pub lpa: u32,
    pub data_seq: u64,
}

/// What tells one format of this shape from another.
#[derive(Debug)]
pub struct PageType {
    pub magic: [u8; 4],
    pub version: u16,
    pub what: &'static str,
}

/// The most entries a page of `page_size` bytes holds.
pub fn capacity(page_size: usize) -> usize {
    (page_size - HEADER_BYTES) / ENTRY_BYTES
}

pub fn encode(page_type: &PageType, entries: &[LpaSeq], page: &mut [u8]) {
    assert!(entries.len() <= capacity(page.len()) && entries.len() <= usize::from(u16::MAX));
    page.fill(0);
    page[0..4].copy_from_slice(&page_type.magic);
    page[4..6].copy_from_slice(&page_type.version.to_le_bytes());
    page[6..8].copy_from_slice(&(entries.len() as u16).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let at = HEADER_BYTES + i * ENTRY_BYTES;
        page[at..at + 4].copy_from_slice(&e.lpa.to_le_bytes());
        page[at + 4..at + 12].copy_from_slice(&e.data_seq.to_le_bytes());
    }
}

/// Decodes a page of `page_type`; the caller checks the entry count against what it expects.
pub fn decode(page_type: &PageType, page: &[u8]) -> Result<Vec<LpaSeq>, FormatError> {
    let what = page_type.what;
    if page.len() < HEADER_BYTES {
        return Err(FormatError::Truncated { what });
    }
    if page[0..4] != page_type.magic {
        return Err(FormatError::Magic { what });
    }
    let version = le_u16(page, 4);
    if version != page_type.version {
        return Err(FormatError::Version {
            what,
            version: u32::from(version),
        });
    }
    let count = usize::from(le_u16(page, 6));
    if count > capacity(page.len()) {
        return Err(FormatError::Field {
            what,
            value: count as u64,
        });
    }
    Ok((0..count)
        .map(|i| {
            let at = HEADER_BYTES + i * ENTRY_BYTES;
            LpaSeq {
                lpa: le_u32(page, at),
                data_seq: le_u64(page, at + 4),
            }
        })
        .collect())
}
