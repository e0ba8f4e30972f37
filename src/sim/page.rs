//! Self-identifying page contents: every page the simulation writes says which logical page and
//! which version it is, and the rest of it is a pattern derived from those two, so a read can tell
//! exactly what it got: zeroes, one specific write, or garbage (wrong page, torn, corrupted).

use std::fmt;

use ftl::nand::mix;

pub const PAGE_SIZE: usize = 4096;
const HEADER: usize = 16;

/// Version 0 is the all-zero page (never written, trimmed or write-zeroes); writes are 1, 2, ...
pub type Version = u64;

/// What a read returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    Version(Version),
    /// Not a page the simulation wrote to this logical page.
    Garbage(String),
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Version(0) => write!(f, "v0 (zeroes)"),
            Observed::Version(v) => write!(f, "v{v}"),
            Observed::Garbage(why) => write!(f, "garbage ({why})"),
        }
    }
}

/// The pattern word at index `i` of the page (lpa, version): xorshift seeded by a hash of both.
fn pattern(lpa: u64, version: Version) -> impl Iterator<Item = u64> {
    let mut x = mix(lpa.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version) | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    })
}

/// Fills `buf` (one page) with the content of write `version` (>= 1) of `lpa`.
pub fn encode(lpa: u64, version: Version, buf: &mut [u8]) {
    debug_assert!(version >= 1 && buf.len() == PAGE_SIZE);
    buf[..8].copy_from_slice(&lpa.to_le_bytes());
    buf[8..16].copy_from_slice(&version.to_le_bytes());
    for (chunk, word) in buf[HEADER..].chunks_exact_mut(8).zip(pattern(lpa, version)) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
}

fn word(buf: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Identifies a page read from logical page `lpa`.
pub fn decode(lpa: u64, buf: &[u8]) -> Observed {
    if buf.len() != PAGE_SIZE {
        return Observed::Garbage(format!("{} bytes instead of {PAGE_SIZE}", buf.len()));
    }
    if buf.iter().all(|&b| b == 0) {
        return Observed::Version(0);
    }
    let (got_lpa, version) = (word(buf, 0), word(buf, 8));
    if version == 0 {
        return Observed::Garbage("non-zero page with version 0 in its header".into());
    }
    if got_lpa != lpa {
        return Observed::Garbage(format!("data of lpa {got_lpa} v{version}"));
    }
    for (i, expected) in pattern(lpa, version)
        .take((PAGE_SIZE - HEADER) / 8)
        .enumerate()
    {
        let at = HEADER + i * 8;
        if word(buf, at) != expected {
            return Observed::Garbage(format!("v{version} torn or corrupt at byte {at}"));
        }
    }
    Observed::Version(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let mut buf = vec![0u8; PAGE_SIZE];
        assert_eq!(decode(3, &buf), Observed::Version(0));
        encode(3, 17, &mut buf);
        assert_eq!(decode(3, &buf), Observed::Version(17));
        assert!(matches!(decode(4, &buf), Observed::Garbage(why) if why.contains("lpa 3")));
        let mut torn = buf.clone();
        torn[2048..].fill(0xff);
        assert!(matches!(decode(3, &torn), Observed::Garbage(why) if why.contains("torn")));
        let mut flipped = buf.clone();
        flipped[4000] ^= 4;
        assert!(matches!(decode(3, &flipped), Observed::Garbage(_)));
        let mut other = vec![0u8; PAGE_SIZE];
        encode(3, 18, &mut other);
        assert_ne!(buf[HEADER..], other[HEADER..]);
    }
}
