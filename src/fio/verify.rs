//! fio 3.33's verify format, byte for byte, so that real fio verifies what Ferrite wrote and the
//! other way round.
//!
//! Each verify interval (the block, by default) starts with a 40-byte header, little-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0x00 | 2 | magic 0xacca |
//! | 0x02 | 2 | verify type (2 = md5, 5 = crc32c: fio stores crc32c as its "crc32c-intel") |
//! | 0x04 | 4 | len: bytes of the interval, header included |
//! | 0x08 | 8 | rand_seed of the random fill (0 with a verify_pattern) |
//! | 0x10 | 8 | offset of the interval in the file |
//! | 0x18 | 4 | time_sec, 0x1c 4 time_nsec: since the job started |
//! | 0x20 | 2 | thread (job number, from 1), 0x22 2 numberio (the job's I/O count) |
//! | 0x24 | 4 | fio's crc32c (see `fio_crc32c`) of bytes 0x00..0x24 |
//!
//! then the checksum of the rest of the interval: crc32c (4 bytes) or md5 (16 bytes), computed
//! over the bytes after it. `verify=pattern` has no header: the interval is the pattern repeated.
//! A verify_pattern with a checksum fills the buffer with the pattern before the header goes on.
//!
//! As fio does for jobs that only read or only write, verification does not check rand_seed or
//! numberio (a reader cannot know them).

use md5::{Digest, Md5};

use super::options::VerifyKind;

pub const MAGIC: u16 = 0xacca;

/// fio's crc32c: the Castagnoli CRC started from !0 like the standard one but without the final
/// inversion, so it is the bitwise NOT of the standard CRC-32C (checked against files fio 3.33
/// wrote).
pub fn fio_crc32c(data: &[u8]) -> u32 {
    !crc32c::crc32c(data)
}
pub const HEADER_BYTES: usize = 40;
const TYPE_MD5: u16 = 2;
const TYPE_CRC32C: u16 = 5;

/// The header fields a writer chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderFields {
    pub rand_seed: u64,
    pub offset: u64,
    pub time_sec: u32,
    pub time_nsec: u32,
    pub thread: u16,
    pub numberio: u16,
}

fn checksum_bytes(kind: VerifyKind) -> usize {
    match kind {
        VerifyKind::Crc32c => 4,
        VerifyKind::Md5 => 16,
        VerifyKind::None | VerifyKind::Pattern => 0,
    }
}

/// Bytes before the checksummed data in each interval.
pub fn header_size(kind: VerifyKind) -> usize {
    match kind {
        VerifyKind::Crc32c | VerifyKind::Md5 => HEADER_BYTES + checksum_bytes(kind),
        VerifyKind::None | VerifyKind::Pattern => 0,
    }
}

fn type_code(kind: VerifyKind) -> u16 {
    match kind {
        VerifyKind::Md5 => TYPE_MD5,
        _ => TYPE_CRC32C,
    }
}

/// Fills `buf` with `pattern` repeated from its first byte.
pub fn fill_pattern(buf: &mut [u8], pattern: &[u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern[i % pattern.len()];
    }
}

/// Writes the header and checksum into one interval whose data is already in place.
pub fn seal_interval(interval: &mut [u8], kind: VerifyKind, fields: HeaderFields) {
    if !matches!(kind, VerifyKind::Crc32c | VerifyKind::Md5) {
        return;
    }
    let len = interval.len() as u32;
    let h = &mut interval[..HEADER_BYTES];
    h[0..2].copy_from_slice(&MAGIC.to_le_bytes());
    h[2..4].copy_from_slice(&type_code(kind).to_le_bytes());
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&fields.rand_seed.to_le_bytes());
    h[16..24].copy_from_slice(&fields.offset.to_le_bytes());
    h[24..28].copy_from_slice(&fields.time_sec.to_le_bytes());
    h[28..32].copy_from_slice(&fields.time_nsec.to_le_bytes());
    h[32..34].copy_from_slice(&fields.thread.to_le_bytes());
    h[34..36].copy_from_slice(&fields.numberio.to_le_bytes());
    let crc = fio_crc32c(&h[..36]);
    h[36..40].copy_from_slice(&crc.to_le_bytes());
    let data_start = header_size(kind);
    let (head, data) = interval.split_at_mut(data_start);
    match kind {
        VerifyKind::Crc32c => {
            head[HEADER_BYTES..].copy_from_slice(&fio_crc32c(data).to_le_bytes());
        }
        VerifyKind::Md5 => head[HEADER_BYTES..].copy_from_slice(&Md5::digest(&*data)),
        VerifyKind::None | VerifyKind::Pattern => {}
    }
}

/// Prepares a whole block for writing: every interval sealed (or patterned).
pub fn seal_block(
    block: &mut [u8],
    kind: VerifyKind,
    interval_bytes: usize,
    pattern: Option<&[u8]>,
    fields: HeaderFields,
) {
    if let Some(p) = pattern {
        fill_pattern(block, p);
    }
    for (i, interval) in block.chunks_mut(interval_bytes).enumerate() {
        let mut f = fields;
        f.offset = fields.offset + (i * interval_bytes) as u64;
        seal_interval(interval, kind, f);
    }
}

/// Checks a block read back from `offset`; the error says what differs, as fio's messages do.
pub fn check_block(
    block: &[u8],
    offset: u64,
    kind: VerifyKind,
    interval_bytes: usize,
    pattern: Option<&[u8]>,
) -> Result<(), String> {
    for (i, interval) in block.chunks(interval_bytes).enumerate() {
        let at = offset + (i * interval_bytes) as u64;
        check_interval(interval, at, i * interval_bytes, kind, pattern)
            .map_err(|e| format!("{e} at offset {at}, length {}", interval.len()))?;
    }
    Ok(())
}

/// `phase`: where the interval starts in its block (the pattern runs from the block's start).
fn check_interval(
    interval: &[u8],
    offset: u64,
    phase: usize,
    kind: VerifyKind,
    pattern: Option<&[u8]>,
) -> Result<(), String> {
    if kind == VerifyKind::Pattern {
        let p = pattern.ok_or("verify=pattern needs verify_pattern")?;
        if let Some(i) = interval
            .iter()
            .enumerate()
            .position(|(i, b)| *b != p[(phase + i) % p.len()])
        {
            return Err(format!("verify: pattern mismatch at byte {i}"));
        }
        return Ok(());
    }
    if interval.len() < header_size(kind) {
        return Err("verify: interval shorter than its header".into());
    }
    let u16_at = |i: usize| u16::from_le_bytes([interval[i], interval[i + 1]]);
    let u32_at = |i: usize| {
        u32::from_le_bytes([
            interval[i],
            interval[i + 1],
            interval[i + 2],
            interval[i + 3],
        ])
    };
    let u64_at = |i: usize| (u64::from(u32_at(i + 4)) << 32) | u64::from(u32_at(i));
    let magic = u16_at(0);
    if magic != MAGIC {
        return Err(format!(
            "verify: bad magic header {magic:x}, wanted {MAGIC:x}"
        ));
    }
    let len = u32_at(4) as usize;
    if len != interval.len() {
        return Err(format!(
            "verify: bad header length {len}, wanted {}",
            interval.len()
        ));
    }
    let header_offset = u64_at(16);
    if header_offset != offset {
        return Err(format!(
            "verify: bad header offset {header_offset}, wanted {offset}"
        ));
    }
    let crc = fio_crc32c(&interval[..36]);
    if crc != u32_at(36) {
        return Err(format!(
            "verify: bad header crc {:x}, calculated {crc:x}",
            u32_at(36)
        ));
    }
    let stored_type = u16_at(2);
    let data = &interval[header_size(kind)..];
    match kind {
        VerifyKind::Crc32c => {
            if stored_type != TYPE_CRC32C {
                return Err(format!("verify: header type {stored_type}, wanted crc32c"));
            }
            let got = fio_crc32c(data);
            let want = u32_at(HEADER_BYTES);
            if got != want {
                return Err(format!(
                    "crc32c: verify failed: wanted {want:x}, got {got:x}"
                ));
            }
        }
        VerifyKind::Md5 => {
            if stored_type != TYPE_MD5 {
                return Err(format!("verify: header type {stored_type}, wanted md5"));
            }
            let got = Md5::digest(data);
            if got.as_slice() != &interval[HEADER_BYTES..HEADER_BYTES + 16] {
                return Err("md5: verify failed".into());
            }
        }
        VerifyKind::None | VerifyKind::Pattern => {}
    }
    if let Some(p) = pattern {
        // With a checksum and a pattern, fio also checks the pattern after the header.
        let start = header_size(kind);
        if let Some(i) = data
            .iter()
            .enumerate()
            .position(|(i, b)| *b != p[(phase + start + i) % p.len()])
        {
            return Err(format!("verify: pattern mismatch at byte {}", start + i));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(offset: u64) -> HeaderFields {
        HeaderFields {
            rand_seed: 0x00a4_cc01_c509_543c,
            offset,
            time_sec: 0,
            time_nsec: 0x06cb_5786,
            thread: 1,
            numberio: 0,
        }
    }

    #[test]
    fn crc_matches_a_header_fio_wrote() {
        // The first 40 bytes fio 3.33 wrote with verify=crc32c (offset 0, 4 KiB blocks).
        let header: [u8; 40] = [
            0xca, 0xac, 0x05, 0x00, 0x00, 0x10, 0x00, 0x00, 0x3c, 0x54, 0x09, 0xc5, 0x01, 0xcc,
            0xa4, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x86, 0x57, 0xcb, 0x06, 0x01, 0x00, 0x00, 0x00, 0x4f, 0x3b, 0x2b, 0x90,
        ];
        assert_eq!(fio_crc32c(&header[..36]), 0x902b_3b4f);
    }

    #[test]
    fn header_layout_is_fios() {
        let mut block = vec![0x5au8; 4096];
        seal_block(&mut block, VerifyKind::Crc32c, 4096, None, fields(0x1000));
        assert_eq!(
            &block[0..8],
            &[0xca, 0xac, 0x05, 0x00, 0x00, 0x10, 0x00, 0x00]
        );
        assert_eq!(&block[8..16], &0x00a4_cc01_c509_543cu64.to_le_bytes());
        assert_eq!(&block[16..24], &0x1000u64.to_le_bytes());
        assert_eq!(&block[32..36], &[1, 0, 0, 0]);
        assert_eq!(
            u32::from_le_bytes([block[36], block[37], block[38], block[39]]),
            fio_crc32c(&block[..36])
        );
        assert_eq!(
            u32::from_le_bytes([block[40], block[41], block[42], block[43]]),
            fio_crc32c(&block[44..])
        );
        check_block(&block, 0x1000, VerifyKind::Crc32c, 4096, None).expect("verifies");
    }

    #[test]
    fn every_kind_catches_a_flipped_byte() {
        for (kind, pattern) in [
            (VerifyKind::Crc32c, None),
            (VerifyKind::Md5, None),
            (VerifyKind::Crc32c, Some(&[0xde, 0xad, 0xbe, 0xef][..])),
            (VerifyKind::Pattern, Some(&b"ferrite"[..])),
        ] {
            let mut block: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
            seal_block(&mut block, kind, 4096, pattern, fields(8192));
            check_block(&block, 8192, kind, 4096, pattern).expect("clean block verifies");
            for flip in [0usize, 37, 100, 4095, 4096 + 50, 8191] {
                let mut bad = block.clone();
                bad[flip] ^= 0x10;
                assert!(
                    check_block(&bad, 8192, kind, 4096, pattern).is_err(),
                    "{kind:?} missed byte {flip}"
                );
            }
            if kind != VerifyKind::Pattern {
                let e = check_block(&block, 0, kind, 4096, pattern).expect_err("wrong offset");
                assert!(e.contains("bad header offset"), "{e}");
            }
        }
    }
}
