//! A trim-log page: TRIMs and write-zeroes made durable, one entry per logical page.
//!
//! ```text
//! offset size field
//!      0    4 magic     "FTRM"
//!      4    2 version   1
//!      6    2 entries   n
//!      8    8 reserved  zero
//!     16   12 entry[i]  lpa u32, data_seq u64 (the sequence number of the trim)
//! ```
//! An entry says "from data_seq on, this logical page reads as zeroes"; a write with a higher
//! sequence number supersedes it. The OOB record's kind is trim log and its crc covers the page.

use super::FormatError;
use super::entry_page::{self, LpaSeq, PageType};

const PAGE_TYPE: PageType = PageType {
    magic: *b"FTRM",
    version: 1,
    what: "trim log page",
};

pub type TrimEntry = LpaSeq;

pub fn capacity(page_size: usize) -> usize {
    entry_page::capacity(page_size)
}

pub fn encode(entries: &[TrimEntry], page: &mut [u8]) {
    assert!(!entries.is_empty());
    entry_page::encode(&PAGE_TYPE, entries, page);
}

/// Decodes a trim-log page; an empty one is never written, so it is an error.
pub fn decode(page: &[u8]) -> Result<Vec<TrimEntry>, FormatError> {
    let entries = entry_page::decode(&PAGE_TYPE, page)?;
    if entries.is_empty() {
        return Err(FormatError::Field {
            what: "trim log entry count",
            value: 0,
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
            TrimEntry {
                lpa: 1,
                data_seq: 2,
            },
            TrimEntry {
                lpa: 3,
                data_seq: 4,
            },
        ];
        let mut page = vec![0xffu8; 4096];
        encode(&entries, &mut page);
        assert_eq!(&page[0..4], b"FTRM");
        assert_eq!(&page[4..8], &[1, 0, 2, 0]);
        assert_eq!(&page[16..20], &1u32.to_le_bytes());
        assert_eq!(&page[20..28], &2u64.to_le_bytes());
        assert_eq!(&page[28..32], &3u32.to_le_bytes());
        assert_eq!(decode(&page).expect("decodes"), entries);
        page[6] = 0;
        page[7] = 0;
        assert!(decode(&page).is_err());
    }
}
