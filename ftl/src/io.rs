//! Reading a physical page with read-retry and full verification (OOB record + crc).

use crate::engine::Shared;
use crate::format::FormatError;
use crate::format::oob::PageRecord;
use crate::nand::NandError;

#[derive(Debug)]
pub enum ReadFailure {
    Nand(NandError),
    /// Read fine, but the page is torn or not what the FTL wrote.
    Corrupt(FormatError),
}

/// Reads page `ppn` into the buffers and verifies its record. An uncorrectable read is retried
/// `retries` times (a real controller re-reads with shifted thresholds).
pub fn read_verified(
    sh: &Shared,
    ppn: u32,
    data: &mut [u8],
    oob: &mut [u8],
    retries: u32,
) -> Result<PageRecord, ReadFailure> {
    let (gblock, page) = sh.layout.split_ppn(ppn);
    let (device, block) = sh.layout.split_block(gblock);
    let mut attempt = 0;
    loop {
        match sh.devices[device].read_page(block, page, data, oob) {
            Ok(_) => return PageRecord::decode(data, oob).map_err(ReadFailure::Corrupt),
            Err(NandError::Uncorrectable { .. }) if attempt < retries => attempt += 1,
            Err(e) => return Err(ReadFailure::Nand(e)),
        }
    }
}
