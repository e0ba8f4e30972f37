//! A data block's summary, programmed into its last page when the block is full, so that recovery
//! reads one page per block instead of every page's OOB.
//!
//! ```text
//! offset size field
//!      0    4 magic     "FSUM"
//!      4    2 version   1
//!      6    2 entries   number of entries = pages_per_block - 1
//!      8    8 reserved  zero
//!     16   12 entry[i]  for data page i: lpa u32 (u32::MAX: no valid data), data_seq u64
//! ```
//! The rest of the page is zero. Integrity comes from the page's OOB crc (kind = summary).

use super::{FormatError, le_u16, le_u32, le_u64};

const MAGIC: [u8; 4] = *b"FSUM";
pub const SUMMARY_VERSION: u16 = 1;
pub const SUMMARY_HEADER_BYTES: usize = 16;
pub const SUMMARY_ENTRY_BYTES: usize = 12;
/// Marks a page slot with no data (a failed or torn program).
pub const NO_LPA: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummaryEntry {
    pub lpa: u32,
    pub data_seq: u64,
}

impl SummaryEntry {
    pub const EMPTY: SummaryEntry = SummaryEntry {
        lpa: NO_LPA,
        data_seq: 0,
    };
}

/// The largest number of entries a summary page of `page_size` bytes holds.
pub fn capacity(page_size: usize) -> usize {
    (page_size - SUMMARY_HEADER_BYTES) / SUMMARY_ENTRY_BYTES
}

pub fn encode(entries: &[SummaryEntry], page: &mut [u8]) {
    assert!(entries.len() <= capacity(page.len()) && entries.len() <= usize::from(u16::MAX));
    page.fill(0);
    page[0..4].copy_from_slice(&MAGIC);
    page[4..6].copy_from_slice(&SUMMARY_VERSION.to_le_bytes());
    page[6..8].copy_from_slice(&(entries.len() as u16).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let at = SUMMARY_HEADER_BYTES + i * SUMMARY_ENTRY_BYTES;
        page[at..at + 4].copy_from_slice(&e.lpa.to_le_bytes());
        page[at + 4..at + 12].copy_from_slice(&e.data_seq.to_le_bytes());
    }
}

pub fn decode(page: &[u8], expected_entries: usize) -> Result<Vec<SummaryEntry>, FormatError> {
    if page[0..4] != MAGIC {
        return Err(FormatError::Magic {
            what: "block summary",
        });
    }
    let version = le_u16(page, 4);
    if version != SUMMARY_VERSION {
        return Err(FormatError::Version {
            what: "block summary",
            version: u32::from(version),
        });
    }
    let count = usize::from(le_u16(page, 6));
    if count != expected_entries || count > capacity(page.len()) {
        return Err(FormatError::Field {
            what: "block summary entry count",
            value: count as u64,
        });
    }
    Ok((0..count)
        .map(|i| {
            let at = SUMMARY_HEADER_BYTES + i * SUMMARY_ENTRY_BYTES;
            SummaryEntry {
                lpa: le_u32(page, at),
                data_seq: le_u64(page, at + 4),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_pinned_and_round_trip() {
        let entries = [
            SummaryEntry {
                lpa: 5,
                data_seq: 9,
            },
            SummaryEntry::EMPTY,
        ];
        let mut page = vec![0xffu8; 4096];
        encode(&entries, &mut page);
        assert_eq!(&page[0..4], b"FSUM");
        assert_eq!(&page[4..6], &[1, 0]);
        assert_eq!(&page[6..8], &[2, 0]);
        assert_eq!(&page[8..16], &[0; 8]);
        assert_eq!(&page[16..20], &5u32.to_le_bytes());
        assert_eq!(&page[20..28], &9u64.to_le_bytes());
        assert_eq!(&page[28..32], &[0xff; 4]);
        assert!(page[40..].iter().all(|&b| b == 0));
        assert_eq!(decode(&page, 2).expect("decodes"), entries);
        assert!(decode(&page, 3).is_err());
        assert_eq!(capacity(4096), 340);
    }
}
