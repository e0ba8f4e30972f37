//! Identify data (NVMe CNS 01h controller, CNS 00h namespace) and its 4096-byte encoding.
//!
//! Only the fields this controller has something to say in are filled; every other byte is zero,
//! as the specification allows for unsupported features. `tests` pins every offset used.

use serde::Serialize;

/// Bytes of an Identify data structure.
pub const IDENTIFY_BYTES: usize = 4096;

/// NVMe version this model follows: 1.4.
const NVME_VERSION: u32 = 0x0001_0400;

/// ONCS bit 2: Dataset Management; bit 3: Write Zeroes.
const ONCS_DSM: u16 = 1 << 2;
const ONCS_WRITE_ZEROES: u16 = 1 << 3;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentifyController {
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// Number of namespaces (NN).
    pub namespaces: u32,
    /// Largest transfer in bytes, or 0 for no limit.
    pub max_transfer_bytes: u64,
    pub volatile_write_cache: bool,
    pub dataset_management: bool,
    pub write_zeroes: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentifyNamespace {
    pub nsid: u32,
    /// Size in logical blocks (NSZE).
    pub size_blocks: u64,
    /// Capacity in logical blocks (NCAP).
    pub capacity_blocks: u64,
    /// Blocks in use (NUSE).
    pub utilization_blocks: u64,
    pub block_size_bytes: u32,
    pub eui64: [u8; 8],
    pub write_protected: bool,
    /// Deallocated blocks read as zeroes (DLFEAT 001b).
    pub deallocated_reads_zeroes: bool,
}

/// Copies `text` into `out` as NVMe ASCII: printable characters only, padded with spaces.
fn put_ascii(out: &mut [u8], text: &str) {
    out.fill(b' ');
    for (o, c) in out.iter_mut().zip(text.bytes()) {
        *o = if c.is_ascii_graphic() || c == b' ' {
            c
        } else {
            b'?'
        };
    }
}

impl IdentifyController {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_BYTES];
        put_ascii(&mut b[4..24], &self.serial);
        put_ascii(&mut b[24..64], &self.model);
        put_ascii(&mut b[64..72], &self.firmware);
        // MDTS is a power of two in units of the 4 KiB minimum page size; 0 means no limit.
        b[77] = match self.max_transfer_bytes {
            0 => 0,
            bytes => (bytes / 4096).max(1).ilog2() as u8,
        };
        b[80..84].copy_from_slice(&NVME_VERSION.to_le_bytes());
        b[516..520].copy_from_slice(&self.namespaces.to_le_bytes());
        let mut oncs = 0u16;
        if self.dataset_management {
            oncs |= ONCS_DSM;
        }
        if self.write_zeroes {
            oncs |= ONCS_WRITE_ZEROES;
        }
        b[520..522].copy_from_slice(&oncs.to_le_bytes());
        b[525] = u8::from(self.volatile_write_cache);
        b
    }
}

impl IdentifyNamespace {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_BYTES];
        b[0..8].copy_from_slice(&self.size_blocks.to_le_bytes());
        b[8..16].copy_from_slice(&self.capacity_blocks.to_le_bytes());
        b[16..24].copy_from_slice(&self.utilization_blocks.to_le_bytes());
        // NLBAF is zero-based: one LBA format; FLBAS selects format 0.
        b[25] = 0;
        b[26] = 0;
        // DLFEAT: bits 2:0 = 001b deallocated blocks read zeroes; bit 3 write zeroes may deallocate.
        b[33] = if self.deallocated_reads_zeroes {
            0b1001
        } else {
            0
        };
        b[99] = u8::from(self.write_protected);
        b[120..128].copy_from_slice(&self.eui64);
        // LBA format 0: no metadata, LBADS = log2(block size), relative performance best.
        b[130] = self.block_size_bytes.max(1).ilog2() as u8;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_offsets_are_pinned() {
        let id = IdentifyController {
            serial: "FERRITE-0001".into(),
            model: "Ferrite NVMe".into(),
            firmware: "0.1.0".into(),
            namespaces: 3,
            max_transfer_bytes: 1 << 20,
            volatile_write_cache: true,
            dataset_management: true,
            write_zeroes: true,
        };
        let b = id.to_bytes();
        assert_eq!(b.len(), 4096);
        assert_eq!(&b[4..24], b"FERRITE-0001        ");
        assert_eq!(&b[24..36], b"Ferrite NVMe");
        assert!(b[36..64].iter().all(|&c| c == b' '));
        assert_eq!(&b[64..72], b"0.1.0   ");
        assert_eq!(b[77], 8, "1 MiB = 2^8 x 4 KiB");
        assert_eq!(&b[80..84], &[0x00, 0x04, 0x01, 0x00]);
        assert_eq!(&b[516..520], &3u32.to_le_bytes());
        assert_eq!(&b[520..522], &[0b1100, 0]);
        assert_eq!(b[525], 1);
    }

    #[test]
    fn namespace_offsets_are_pinned() {
        let id = IdentifyNamespace {
            nsid: 1,
            size_blocks: 0x0102_0304,
            capacity_blocks: 0x0102_0304,
            utilization_blocks: 7,
            block_size_bytes: 4096,
            eui64: [1, 2, 3, 4, 5, 6, 7, 8],
            write_protected: true,
            deallocated_reads_zeroes: true,
        };
        let b = id.to_bytes();
        assert_eq!(&b[0..8], &[4, 3, 2, 1, 0, 0, 0, 0]);
        assert_eq!(&b[8..16], &[4, 3, 2, 1, 0, 0, 0, 0]);
        assert_eq!(b[16], 7);
        assert_eq!(b[33], 0b1001);
        assert_eq!(b[99], 1);
        assert_eq!(&b[120..128], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b[130], 12);
    }

    #[test]
    fn non_ascii_text_is_replaced_not_copied() {
        let mut out = [0u8; 6];
        put_ascii(&mut out, "a\u{e9}b");
        assert_eq!(&out, b"a??b  ");
    }
}
