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

use super::FormatError;
use super::entry_page::{self, LpaSeq, PageType};

const PAGE_TYPE: PageType = PageType {
    magic: *b"FSUM",
    version: 1,
    what: "block summary",
};
/// Marks a page slot with no data (a failed or torn program).
pub const NO_LPA: u32 = u32::MAX;

pub type SummaryEntry = LpaSeq;

/// The largest number of entries a summary page of `page_size` bytes holds.
pub fn capacity(page_size: usize) -> usize {
    entry_page::capacity(page_size)
}

pub fn encode(entries: &[SummaryEntry], page: &mut [u8]) {
    entry_page::encode(&PAGE_TYPE, entries, page);
}

/// Decodes a summary that must have one entry per data page of its block.
pub fn decode(page: &[u8], expected_entries: usize) -> Result<Vec<SummaryEntry>, FormatError> {
    let entries = entry_page::decode(&PAGE_TYPE, page)?;
    if entries.len() != expected_entries {
        return Err(FormatError::Field {
            what: "block summary entry count",
            value: entries.len() as u64,
        });
    }
    Ok(entries)
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
            SummaryEntry {
                lpa: NO_LPA,
                data_seq: 0,
            },
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
