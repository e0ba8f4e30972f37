//! `ferrite ebs-server` and `ferrite ebs`: remote volumes on the server's own FTL over
//! file-backed NAND, managed through a control socket in the data directory; `ferrite ebs bench`.

pub mod bench;
pub mod config;
pub mod control;
pub mod kek;
pub mod server;
pub mod volume_cmd;

/// Bytes of a volume block: sizes must be a multiple of it.
pub const BLOCK_BYTES: u64 = ebs_server::proto::BLOCK_BYTES as u64;

/// Parses a size in bytes with an optional binary suffix (`64M`, `1G`, `4096`, `8K`), which must
/// be a positive multiple of the 4 KiB block; returns the size in blocks.
pub fn parse_size_blocks(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        Some('T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("bad size {text:?}: expected bytes like 4096, 64M or 1G"))?;
    let bytes = count
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("bad size {text:?}: too large"))?;
    if bytes == 0 || bytes % BLOCK_BYTES != 0 {
        return Err(format!(
            "bad size {text:?}: must be a positive multiple of {BLOCK_BYTES} bytes"
        ));
    }
    Ok(bytes / BLOCK_BYTES)
}

#[cfg(test)]
mod tests {
    use super::parse_size_blocks;

    #[test]
    fn sizes_parse_in_blocks_and_reject_partial_blocks() {
        assert_eq!(parse_size_blocks("4096"), Ok(1));
        assert_eq!(parse_size_blocks("64M"), Ok(16 * 1024));
        assert_eq!(parse_size_blocks("1g"), Ok(256 * 1024));
        assert!(parse_size_blocks("4097").is_err());
        assert!(parse_size_blocks("0").is_err());
        assert!(parse_size_blocks("1X").is_err());
        assert!(parse_size_blocks("99999999999T").is_err());
    }
}
