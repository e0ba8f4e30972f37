//! The checkpoint: the whole logical-to-physical map and block table, written at format, on a clean
//! close and when wear leveling wants its blocks back, so that opening reads it plus one OOB record
//! per block instead of every page.
//!
//! It is a byte stream cut into pages (OOB kind = checkpoint, `lpa` = page index, `data_seq` =
//! checkpoint id), written into blocks taken from the free pool:
//!
//! ```text
//! offset size field
//!      0    4 magic          "FCKP"
//!      4    2 version        2 (version 1, written before logical pages were slots of a NAND
//!                            page, is read as version 2 with one slot per page)
//!      6    2 reserved       zero
//!      8    8 id             the FTL's next sequence number when it was taken (every page programmed
//!                            before has a smaller seq; every page after, a larger one)
//!     16    8 logical_pages  L
//!     24    4 blocks         B, blocks over all devices
//!     28    4 pages_per_block
//!     32    8 stream_bytes   length of the whole stream, header included
//!     40    4 crc32          crc32fast over the stream with these 4 bytes zero
//!     44    4 slots_per_page logical pages per NAND page (version 2; zero in version 1)
//!     48   16 reserved       zero
//!     64   64 counters       8 x u64: host pages written, NAND pages written, GC runs, GC pages
//!                            moved, host pages read, trims, wear-leveling pages moved,
//!                            wear-leveling runs
//!    128  4*L map            per logical page u32: physical slot (page * slots_per_page + slot),
//!                            or 0xFFFF_FFFF unmapped, or 0xFFFF_FFFD lost (unreadable during
//!                            relocation), or else with bit 31 set: trimmed, by the trim-log entry
//!                            in the page whose slot 0 is (value & 0x7FFF_FFFF);
//!                            0xFFFF_FFFE (trim still buffered) never appears: the buffer is
//!                            written before a checkpoint
//!  +24*B  blocks             per block: close_seq u64, state u8, stream u8, 2 reserved,
//!                            written u32 (pages programmed when the checkpoint was taken),
//!                            erase_count u32 (erases then), 4 reserved
//! ```

use super::{FormatError, le_u16, le_u32, le_u64};

const MAGIC: [u8; 4] = *b"FCKP";
pub const CHECKPOINT_VERSION: u16 = 2;
/// The version before slots: its map entries are physical pages (one slot per page).
const CHECKPOINT_VERSION_PAGES: u16 = 1;
pub const CHECKPOINT_HEADER_BYTES: usize = 128;
pub const COUNTERS: usize = 8;
const CRC_OFFSET: usize = 40;
const BLOCK_ENTRY_BYTES: usize = 24;

/// What the checkpoint says of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointBlock {
    pub close_seq: u64,
    pub state: u8,
    pub stream: u8,
    pub written: u32,
    /// Erase count when the checkpoint was taken: with `written`, it proves a block unchanged.
    pub erase_count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub id: u64,
    pub pages_per_block: u32,
    pub slots_per_page: u32,
    pub counters: [u64; COUNTERS],
    pub map: Vec<u32>,
    pub blocks: Vec<CheckpointBlock>,
}

pub fn stream_bytes(logical_pages: u64, blocks: u32) -> usize {
    CHECKPOINT_HEADER_BYTES + 4 * logical_pages as usize + BLOCK_ENTRY_BYTES * blocks as usize
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let len = stream_bytes(self.map.len() as u64, self.blocks.len() as u32);
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.pages_per_block.to_le_bytes());
        out.extend_from_slice(&(len as u64).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.slots_per_page.to_le_bytes());
        out.extend_from_slice(&[0; 16]);
        for c in self.counters {
            out.extend_from_slice(&c.to_le_bytes());
        }
        debug_assert_eq!(out.len(), CHECKPOINT_HEADER_BYTES);
        for entry in &self.map {
            out.extend_from_slice(&entry.to_le_bytes());
        }
        for b in &self.blocks {
            out.extend_from_slice(&b.close_seq.to_le_bytes());
            out.push(b.state);
            out.push(b.stream);
            out.extend_from_slice(&[0; 2]);
            out.extend_from_slice(&b.written.to_le_bytes());
            out.extend_from_slice(&b.erase_count.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
        }
        assert_eq!(out.len(), len);
        let crc = crc32fast::hash(&out);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the header alone, to learn how long the stream is.
    pub fn peek_len(head: &[u8]) -> Result<usize, FormatError> {
        if head.len() < CHECKPOINT_HEADER_BYTES {
            return Err(FormatError::Truncated {
                what: "checkpoint header",
            });
        }
        if head[0..4] != MAGIC {
            return Err(FormatError::Magic { what: "checkpoint" });
        }
        let version = le_u16(head, 4);
        if version != CHECKPOINT_VERSION && version != CHECKPOINT_VERSION_PAGES {
            return Err(FormatError::Version {
                what: "checkpoint",
                version: u32::from(version),
            });
        }
        let len = le_u64(head, 32);
        let expected = stream_bytes(le_u64(head, 16), le_u32(head, 24)) as u64;
        if len != expected {
            return Err(FormatError::Field {
                what: "checkpoint length",
                value: len,
            });
        }
        Ok(len as usize)
    }

    pub fn decode(stream: &[u8]) -> Result<Self, FormatError> {
        let len = Self::peek_len(stream)?;
        if stream.len() < len {
            return Err(FormatError::Truncated { what: "checkpoint" });
        }
        let stream = &stream[..len];
        let stored = le_u32(stream, CRC_OFFSET);
        let mut h = crc32fast::Hasher::new();
        h.update(&stream[..CRC_OFFSET]);
        h.update(&[0; 4]);
        h.update(&stream[CRC_OFFSET + 4..]);
        if h.finalize() != stored {
            return Err(FormatError::Checksum { what: "checkpoint" });
        }
        let logical = le_u64(stream, 16) as usize;
        let blocks = le_u32(stream, 24) as usize;
        let mut counters = [0u64; COUNTERS];
        for (i, c) in counters.iter_mut().enumerate() {
            *c = le_u64(stream, 64 + 8 * i);
        }
        let map_at = CHECKPOINT_HEADER_BYTES;
        let map = (0..logical)
            .map(|i| le_u32(stream, map_at + 4 * i))
            .collect();
        let blocks_at = map_at + 4 * logical;
        let blocks = (0..blocks)
            .map(|i| {
                let at = blocks_at + BLOCK_ENTRY_BYTES * i;
                CheckpointBlock {
                    close_seq: le_u64(stream, at),
                    state: stream[at + 8],
                    stream: stream[at + 9],
                    written: le_u32(stream, at + 12),
                    erase_count: le_u32(stream, at + 16),
                }
            })
            .collect();
        let slots_per_page = match le_u16(stream, 4) {
            CHECKPOINT_VERSION_PAGES => 1,
            _ => le_u32(stream, 44),
        };
        Ok(Self {
            id: le_u64(stream, 8),
            pages_per_block: le_u32(stream, 28),
            slots_per_page,
            counters,
            map,
            blocks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_pinned_and_round_trip() {
        let cp = Checkpoint {
            id: 0x77,
            pages_per_block: 16,
            slots_per_page: 4,
            counters: [1, 2, 3, 4, 5, 6, 7, 8],
            map: vec![u32::MAX, 5, 0x8000_0003],
            blocks: vec![CheckpointBlock {
                close_seq: 9,
                state: 2,
                stream: 1,
                written: 11,
                erase_count: 13,
            }],
        };
        let bytes = cp.encode();
        assert_eq!(bytes.len(), 128 + 12 + 24);
        assert_eq!(&bytes[0..4], b"FCKP");
        assert_eq!(&bytes[4..6], &[2, 0]);
        assert_eq!(&bytes[8..16], &0x77u64.to_le_bytes());
        assert_eq!(&bytes[16..24], &3u64.to_le_bytes());
        assert_eq!(&bytes[24..28], &1u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &16u32.to_le_bytes());
        assert_eq!(&bytes[32..40], &164u64.to_le_bytes());
        assert_eq!(&bytes[44..48], &4u32.to_le_bytes());
        assert_eq!(&bytes[48..64], &[0; 16]);
        assert_eq!(&bytes[64..72], &1u64.to_le_bytes());
        assert_eq!(&bytes[120..128], &8u64.to_le_bytes());
        assert_eq!(&bytes[132..136], &5u32.to_le_bytes());
        assert_eq!(&bytes[140..148], &9u64.to_le_bytes());
        assert_eq!(bytes[148], 2);
        assert_eq!(bytes[149], 1);
        assert_eq!(&bytes[152..156], &11u32.to_le_bytes());
        assert_eq!(&bytes[156..160], &13u32.to_le_bytes());
        assert_eq!(&bytes[160..164], &[0; 4]);
        assert_eq!(Checkpoint::decode(&bytes).expect("decodes"), cp);
        for i in [0, 9, 41, 45, 70, 130, 150] {
            let mut bad = bytes.clone();
            bad[i] ^= 4;
            assert!(Checkpoint::decode(&bad).is_err(), "byte {i}");
        }
    }

    /// A version-1 checkpoint (map of physical pages) reads as one slot per page.
    #[test]
    fn version_one_reads_as_one_slot_per_page() {
        let cp = Checkpoint {
            id: 5,
            pages_per_block: 8,
            slots_per_page: 0,
            counters: [0; COUNTERS],
            map: vec![3],
            blocks: Vec::new(),
        };
        let mut bytes = cp.encode();
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        bytes[CRC_OFFSET..CRC_OFFSET + 4].fill(0);
        let crc = crc32fast::hash(&bytes);
        bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        let read = Checkpoint::decode(&bytes).expect("version 1 decodes");
        assert_eq!(read.slots_per_page, 1);
        assert_eq!(read.map, vec![3]);
        bytes[4..6].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(
            Checkpoint::decode(&bytes),
            Err(FormatError::Version { version: 3, .. })
        ));
    }
}
