//! Reading physical pages and slots with read-retry and full verification (OOB record + crc).
//!
//! A data page holds one logical page per slot, each with its own 64-byte OOB record (at
//! `slot * 64`) whose crc covers that slot's bytes. Other pages (summary, trim log, checkpoint)
//! have one record, at 0, over the whole page. With 4 KiB NAND pages the two shapes coincide.

use crate::engine::Shared;
use crate::format::FormatError;
use crate::format::oob::{OOB_RECORD_BYTES, PageKind, PageRecord};
use crate::layout::{LOGICAL_PAGE_BYTES, Layout};
use crate::nand::NandError;

#[derive(Debug)]
pub enum ReadFailure {
    Nand(NandError),
    /// Read fine, but the page is torn or not what the FTL wrote.
    Corrupt(FormatError),
}

/// Reads `data.len()` bytes of page `ppn` from `offset`, and its OOB. An uncorrectable read is
/// retried `retries` times (a real controller re-reads with shifted thresholds).
fn read_retrying(
    sh: &Shared,
    ppn: u32,
    offset: usize,
    data: &mut [u8],
    oob: &mut [u8],
    retries: u32,
) -> Result<(), NandError> {
    let (gblock, page) = sh.layout.split_ppn(ppn);
    let (device, block) = sh.layout.split_block(gblock);
    let mut attempt = 0;
    loop {
        match sh.devices[device].read_range(block, page, offset, data, oob) {
            Ok(_) => return Ok(()),
            Err(NandError::Uncorrectable { .. }) if attempt < retries => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Reads page `ppn` whole and verifies its first record over the whole page: for pages that are
/// not data (summary, trim log, checkpoint), and for any page when a slot is the whole page.
pub fn read_verified(
    sh: &Shared,
    ppn: u32,
    data: &mut [u8],
    oob: &mut [u8],
    retries: u32,
) -> Result<PageRecord, ReadFailure> {
    read_retrying(sh, ppn, 0, data, oob, retries).map_err(ReadFailure::Nand)?;
    PageRecord::decode(data, oob).map_err(ReadFailure::Corrupt)
}

/// Reads page `ppn` whole, unverified (the caller checks the records it uses with `slot_record`).
pub fn read_page(
    sh: &Shared,
    ppn: u32,
    data: &mut [u8],
    oob: &mut [u8],
    retries: u32,
) -> Result<(), NandError> {
    read_retrying(sh, ppn, 0, data, oob, retries)
}

/// Reads the logical page in slot `psn` (only its 4 KiB cross the bus) and verifies its record.
pub fn read_slot_verified(
    sh: &Shared,
    psn: u32,
    data: &mut [u8],
    oob: &mut [u8],
    retries: u32,
) -> Result<PageRecord, ReadFailure> {
    debug_assert_eq!(data.len(), LOGICAL_PAGE_BYTES);
    let (ppn, slot) = sh.layout.split_psn(psn);
    let offset = slot as usize * LOGICAL_PAGE_BYTES;
    read_retrying(sh, ppn, offset, data, oob, retries).map_err(ReadFailure::Nand)?;
    let record = PageRecord::decode(data, slot_oob(oob, slot)).map_err(ReadFailure::Corrupt)?;
    if record.kind != PageKind::Data {
        return Err(ReadFailure::Corrupt(FormatError::Field {
            what: "page kind of a mapped slot",
            value: record.kind as u64,
        }));
    }
    Ok(record)
}

/// The record of slot `slot` of a whole data page, verified against that slot's bytes.
pub fn slot_record(
    layout: &Layout,
    page: &[u8],
    oob: &[u8],
    slot: u32,
) -> Result<PageRecord, FormatError> {
    debug_assert!(slot < layout.slots_per_page);
    let record = PageRecord::decode(slot_data(page, slot), slot_oob(oob, slot))?;
    if record.kind != PageKind::Data {
        return Err(FormatError::Field {
            what: "page kind of a data slot",
            value: record.kind as u64,
        });
    }
    Ok(record)
}

/// The OOB record area of `slot`.
pub fn slot_oob(oob: &[u8], slot: u32) -> &[u8] {
    let at = slot as usize * OOB_RECORD_BYTES;
    &oob[at..at + OOB_RECORD_BYTES]
}

/// The bytes of logical page `slot` in a whole page.
pub fn slot_data(page: &[u8], slot: u32) -> &[u8] {
    let at = slot as usize * LOGICAL_PAGE_BYTES;
    &page[at..at + LOGICAL_PAGE_BYTES]
}
