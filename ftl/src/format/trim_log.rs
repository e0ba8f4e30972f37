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

use super::summary::{SUMMARY_ENTRY_BYTES, SUMMARY_HEADER_BYTES};
use super::{FormatError, le_u16, le_u32, le_u64};

const MAGIC: [u8; 4] = *b"FTRM";
pub const TRIM_LOG_VERSION: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrimEntry {
    pub lpa: u32,
    pub data_seq: u64,
}

pub fn capacity(page_size: usize) -> usize {
    (page_size - SUMMARY_HEADER_BYTES) / SUMMARY_ENTRY_BYTES
}

pub fn encode(entries: &[TrimEntry], page: &mut [u8]) {
    assert!(!entries.is_empty() && entries.len() <= capacity(page.len()));
    page.fill(0);
    page[0..4].copy_from_slice(&MAGIC);
    page[4..6].copy_from_slice(&TRIM_LOG_VERSION.to_le_bytes());
    page[6..8].copy_from_slice(&(entries.len() as u16).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let at = SUMMARY_HEADER_BYTES + i * SUMMARY_ENTRY_BYTES;
        page[at..at + 4].copy_from_slice(&e.lpa.to_le_bytes());
        page[at + 4..at + 12].copy_from_slice(&e.data_seq.to_le_bytes());
    }
}

pub fn decode(page: &[u8]) -> Result<Vec<TrimEntry>, FormatError> {
    if page[0..4] != MAGIC {
        return Err(FormatError::Magic {
            what: "trim log page",
        });
    }
    let version = le_u16(page, 4);
    if version != TRIM_LOG_VERSION {
        return Err(FormatError::Version {
            what: "trim log page",
            version: u32::from(version),
        });
    }
    let count = usize::from(le_u16(page, 6));
    if count == 0 || count > capacity(page.len()) {
        return Err(FormatError::Field {
            what: "trim log entry count",
            value: count as u64,
        });
    }
    Ok((0..count)
        .map(|i| {
            let at = SUMMARY_HEADER_BYTES + i * SUMMARY_ENTRY_BYTES;
            TrimEntry {
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
