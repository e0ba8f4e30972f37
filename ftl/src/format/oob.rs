//! The 64-byte record at the start of every programmed page's OOB area.
//!
//! ```text
//! offset size field
//!      0    2 magic      0x46 0x45 ("FE")
//!      2    1 version    1
//!      3    1 kind       1 data, 2 summary, 3 trim log, 4 checkpoint
//!      4    1 stream     write stream the page was programmed by
//!      5    3 reserved   zero
//!      8    4 lpa        data: logical page; trim log: entry count; checkpoint: page index; else 0
//!     12    4 reserved   zero (key epoch, issue 3)
//!     16    8 seq        program sequence number: unique per program, grows monotonically
//!     24    8 data_seq   version: seq of the host write that made this data (kept on relocation);
//!                        checkpoint pages: the checkpoint id
//!     32   28 seal       data pages: an FTL opened with a sealer puts its AES-GCM tag in bytes
//!                        32..48 (48..60 zero); an FTL in the clear keeps 28 bytes its client
//!                        gave with the page (a remote client's own seal: nonce and tag); else zero
//!     60    4 crc32      crc32fast over page data ++ OOB bytes 0..60
//! ```
//! The rest of a larger OOB area is zero and not checked.

use super::{FormatError, le_u32, le_u64};

pub const OOB_RECORD_BYTES: usize = 64;
/// Bytes of the seal field: the FTL's 16-byte tag, or a client's opaque seal (12-byte nonce and
/// 16-byte tag of its own AEAD).
pub const SEAL_BYTES: usize = 28;
const SEAL_OFFSET: usize = 32;
const TAG_BYTES: usize = 16;
const MAGIC: [u8; 2] = *b"FE";
pub const OOB_VERSION: u8 = 1;
const CRC_OFFSET: usize = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageKind {
    Data = 1,
    Summary = 2,
    TrimLog = 3,
    Checkpoint = 4,
}

impl PageKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => PageKind::Data,
            2 => PageKind::Summary,
            3 => PageKind::TrimLog,
            4 => PageKind::Checkpoint,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRecord {
    pub kind: PageKind,
    pub stream: u8,
    pub lpa: u32,
    pub seq: u64,
    pub data_seq: u64,
    /// See SEAL_BYTES; carried unchanged when GC or wear leveling moves the page.
    pub seal: [u8; SEAL_BYTES],
}

impl PageRecord {
    /// Writes the record into `oob` (whole OOB area, zero-filled past the record) with the crc
    /// over `data` and the record.
    pub fn encode(&self, data: &[u8], oob: &mut [u8]) {
        assert!(oob.len() >= OOB_RECORD_BYTES);
        oob.fill(0);
        oob[0..2].copy_from_slice(&MAGIC);
        oob[2] = OOB_VERSION;
        oob[3] = self.kind as u8;
        oob[4] = self.stream;
        oob[8..12].copy_from_slice(&self.lpa.to_le_bytes());
        oob[16..24].copy_from_slice(&self.seq.to_le_bytes());
        oob[24..32].copy_from_slice(&self.data_seq.to_le_bytes());
        oob[SEAL_OFFSET..SEAL_OFFSET + SEAL_BYTES].copy_from_slice(&self.seal);
        let crc = page_crc(data, &oob[..CRC_OFFSET]);
        oob[CRC_OFFSET..OOB_RECORD_BYTES].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and verifies the record; fails on a torn or foreign page.
    pub fn decode(data: &[u8], oob: &[u8]) -> Result<Self, FormatError> {
        let header = Self::decode_unverified(oob)?;
        let stored = le_u32(oob, CRC_OFFSET);
        if stored != page_crc(data, &oob[..CRC_OFFSET]) {
            return Err(FormatError::Checksum { what: "page" });
        }
        Ok(header)
    }

    /// Decodes the record without the data checksum (for OOB-only reads): the magic, version and
    /// kind are still checked. Callers that act on the page must read it and verify it.
    pub fn decode_unverified(oob: &[u8]) -> Result<Self, FormatError> {
        if oob.len() < OOB_RECORD_BYTES {
            return Err(FormatError::Truncated {
                what: "page OOB record",
            });
        }
        if oob[0..2] != MAGIC {
            return Err(FormatError::Magic {
                what: "page OOB record",
            });
        }
        if oob[2] != OOB_VERSION {
            return Err(FormatError::Version {
                what: "page OOB record",
                version: u32::from(oob[2]),
            });
        }
        let kind = PageKind::from_u8(oob[3]).ok_or(FormatError::Field {
            what: "page kind",
            value: u64::from(oob[3]),
        })?;
        let mut seal = [0u8; SEAL_BYTES];
        seal.copy_from_slice(&oob[SEAL_OFFSET..SEAL_OFFSET + SEAL_BYTES]);
        Ok(Self {
            kind,
            stream: oob[4],
            lpa: le_u32(oob, 8),
            seq: le_u64(oob, 16),
            data_seq: le_u64(oob, 24),
            seal,
        })
    }

    /// The FTL sealer's AES-GCM tag: the first 16 bytes of the seal.
    pub fn tag(&self) -> [u8; TAG_BYTES] {
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&self.seal[..TAG_BYTES]);
        tag
    }
}

fn page_crc(data: &[u8], oob_head: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.update(oob_head);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PageRecord {
        PageRecord {
            kind: PageKind::Data,
            stream: 3,
            lpa: 0x0102_0304,
            seq: 0x1112_1314_1516_1718,
            data_seq: 0x2122_2324_2526_2728,
            seal: core::array::from_fn(|i| 0xa0 + i as u8),
        }
    }

    #[test]
    fn offsets_are_pinned() {
        let data = vec![7u8; 4096];
        let mut oob = vec![0xffu8; 128];
        sample().encode(&data, &mut oob);
        assert_eq!(&oob[0..2], b"FE");
        assert_eq!(oob[2], 1);
        assert_eq!(oob[3], 1);
        assert_eq!(oob[4], 3);
        assert_eq!(&oob[5..8], &[0, 0, 0]);
        assert_eq!(&oob[8..12], &[4, 3, 2, 1]);
        assert_eq!(&oob[12..16], &[0; 4]);
        assert_eq!(&oob[16..24], &0x1112_1314_1516_1718u64.to_le_bytes());
        assert_eq!(&oob[24..32], &0x2122_2324_2526_2728u64.to_le_bytes());
        let seal: Vec<u8> = (0..28).map(|i| 0xa0 + i as u8).collect();
        assert_eq!(&oob[32..60], &seal[..]);
        assert_eq!(sample().tag(), seal[..16]);
        let mut h = crc32fast::Hasher::new();
        h.update(&data);
        h.update(&oob[..60]);
        assert_eq!(&oob[60..64], &h.finalize().to_le_bytes());
        assert!(oob[64..].iter().all(|&b| b == 0));
        assert_eq!(PageRecord::decode(&data, &oob).expect("decodes"), sample());
    }

    #[test]
    fn every_flip_is_caught() {
        let data = vec![7u8; 4096];
        let mut oob = vec![0u8; 64];
        sample().encode(&data, &mut oob);
        for i in 0..64 {
            let mut bad = oob.clone();
            bad[i] ^= 0x10;
            assert!(PageRecord::decode(&data, &bad).is_err(), "oob byte {i}");
        }
        let mut bad_data = data.clone();
        bad_data[4095] ^= 1;
        assert!(matches!(
            PageRecord::decode(&bad_data, &oob),
            Err(FormatError::Checksum { .. })
        ));
        assert!(matches!(
            PageRecord::decode(&data, &[0xff; 64]),
            Err(FormatError::Magic { .. })
        ));
    }
}
