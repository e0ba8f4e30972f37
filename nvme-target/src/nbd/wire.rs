//! NBD wire constants and the fixed-size structures of the protocol, big-endian as the spec
//! (NetworkBlockDevice/nbd doc/proto.md) lays them out. docs/nbd.md shows the byte layouts; the
//! tests below pin every offset.

/// "NBDMAGIC": first 8 bytes the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": newstyle handshake magic, and the prefix of every client option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Prefix of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Prefix of every transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Prefix of every simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;

// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_FLAG_ERROR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_FLAG_ERROR | 1;
pub const REP_ERR_POLICY: u32 = REP_FLAG_ERROR | 2;
pub const REP_ERR_INVALID: u32 = REP_FLAG_ERROR | 3;
pub const REP_ERR_UNKNOWN: u32 = REP_FLAG_ERROR | 6;
pub const REP_ERR_TOO_BIG: u32 = REP_FLAG_ERROR | 9;

// Information types of NBD_REP_INFO.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

// Commands.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;

// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

// Errors of simple replies (Linux errno values, as the spec fixes them).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;

/// Largest payload of one request (and the maximum block size advertised).
pub const MAX_PAYLOAD_BYTES: u32 = 32 << 20;
/// Block sizes advertised in NBD_INFO_BLOCK_SIZE.
pub const MIN_BLOCK_BYTES: u32 = 512;
pub const PREFERRED_BLOCK_BYTES: u32 = 4096;
/// Largest option payload accepted in the handshake (a name is at most 4096 bytes, plus the
/// information requests of NBD_OPT_GO).
pub const MAX_OPTION_BYTES: u32 = 8192;
/// Longest export name (the spec's limit).
pub const MAX_NAME_BYTES: usize = 4096;

pub const GREETING_BYTES: usize = 18;
pub const OPTION_HEADER_BYTES: usize = 16;
pub const OPTION_REPLY_HEADER_BYTES: usize = 20;
pub const REQUEST_BYTES: usize = 28;
pub const SIMPLE_REPLY_BYTES: usize = 16;
/// The reply to NBD_OPT_EXPORT_NAME before its 124 zero bytes.
pub const EXPORT_NAME_REPLY_BYTES: usize = 10;
pub const EXPORT_NAME_ZEROES: usize = 124;

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// The server's first message: magic, IHAVEOPT, handshake flags.
pub fn encode_greeting(flags: u16) -> [u8; GREETING_BYTES] {
    let mut b = [0u8; GREETING_BYTES];
    b[0..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..18].copy_from_slice(&flags.to_be_bytes());
    b
}

/// (magic, handshake flags) of a greeting; the caller checks both magics.
pub fn decode_greeting(b: &[u8; GREETING_BYTES]) -> (u64, u64, u16) {
    (be_u64(b, 0), be_u64(b, 8), be_u16(b, 16))
}

/// A client's option header; `length` bytes of option data follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionHeader {
    pub magic: u64,
    pub option: u32,
    pub length: u32,
}

impl OptionHeader {
    pub fn decode(b: &[u8; OPTION_HEADER_BYTES]) -> Self {
        Self {
            magic: be_u64(b, 0),
            option: be_u32(b, 8),
            length: be_u32(b, 12),
        }
    }

    pub fn encode(&self) -> [u8; OPTION_HEADER_BYTES] {
        let mut b = [0u8; OPTION_HEADER_BYTES];
        b[0..8].copy_from_slice(&self.magic.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..16].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// The header of a server's option reply; `length` bytes of reply data follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionReplyHeader {
    pub magic: u64,
    pub option: u32,
    pub reply: u32,
    pub length: u32,
}

impl OptionReplyHeader {
    pub fn new(option: u32, reply: u32, length: u32) -> Self {
        Self {
            magic: OPTION_REPLY_MAGIC,
            option,
            reply,
            length,
        }
    }

    pub fn encode(&self) -> [u8; OPTION_REPLY_HEADER_BYTES] {
        let mut b = [0u8; OPTION_REPLY_HEADER_BYTES];
        b[0..8].copy_from_slice(&self.magic.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..16].copy_from_slice(&self.reply.to_be_bytes());
        b[16..20].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; OPTION_REPLY_HEADER_BYTES]) -> Self {
        Self {
            magic: be_u64(b, 0),
            option: be_u32(b, 8),
            reply: be_u32(b, 12),
            length: be_u32(b, 16),
        }
    }
}

/// NBD_INFO_EXPORT's data: type, size, transmission flags.
pub fn encode_info_export(size_bytes: u64, flags: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0..2].copy_from_slice(&INFO_EXPORT.to_be_bytes());
    b[2..10].copy_from_slice(&size_bytes.to_be_bytes());
    b[10..12].copy_from_slice(&flags.to_be_bytes());
    b
}

/// NBD_INFO_BLOCK_SIZE's data: type, minimum, preferred, maximum.
pub fn encode_info_block_size(min: u32, preferred: u32, max: u32) -> [u8; 14] {
    let mut b = [0u8; 14];
    b[0..2].copy_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    b[2..6].copy_from_slice(&min.to_be_bytes());
    b[6..10].copy_from_slice(&preferred.to_be_bytes());
    b[10..14].copy_from_slice(&max.to_be_bytes());
    b
}

/// The reply to NBD_OPT_EXPORT_NAME: size and transmission flags (124 zeroes may follow).
pub fn encode_export_name_reply(size_bytes: u64, flags: u16) -> [u8; EXPORT_NAME_REPLY_BYTES] {
    let mut b = [0u8; EXPORT_NAME_REPLY_BYTES];
    b[0..8].copy_from_slice(&size_bytes.to_be_bytes());
    b[8..10].copy_from_slice(&flags.to_be_bytes());
    b
}

/// A transmission request; a write's `length` payload bytes follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub magic: u32,
    pub flags: u16,
    pub kind: u16,
    pub handle: u64,
    pub offset: u64,
    pub length: u32,
}

impl Request {
    pub fn decode(b: &[u8; REQUEST_BYTES]) -> Self {
        Self {
            magic: be_u32(b, 0),
            flags: be_u16(b, 4),
            kind: be_u16(b, 6),
            handle: be_u64(b, 8),
            offset: be_u64(b, 16),
            length: be_u32(b, 24),
        }
    }

    pub fn encode(&self) -> [u8; REQUEST_BYTES] {
        let mut b = [0u8; REQUEST_BYTES];
        b[0..4].copy_from_slice(&self.magic.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// A simple reply: magic, error (0 or an errno above), the request's handle. A successful
/// read's data follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimpleReply {
    pub magic: u32,
    pub error: u32,
    pub handle: u64,
}

impl SimpleReply {
    pub fn new(error: u32, handle: u64) -> Self {
        Self {
            magic: SIMPLE_REPLY_MAGIC,
            error,
            handle,
        }
    }

    pub fn encode(&self) -> [u8; SIMPLE_REPLY_BYTES] {
        let mut b = [0u8; SIMPLE_REPLY_BYTES];
        b[0..4].copy_from_slice(&self.magic.to_be_bytes());
        b[4..8].copy_from_slice(&self.error.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; SIMPLE_REPLY_BYTES]) -> Self {
        Self {
            magic: be_u32(b, 0),
            error: be_u32(b, 4),
            handle: be_u64(b, 8),
        }
    }
}

/// The errno name of an NBD error, for messages.
pub fn error_name(error: u32) -> &'static str {
    match error {
        0 => "success",
        EPERM => "EPERM",
        EIO => "EIO",
        12 => "ENOMEM",
        EINVAL => "EINVAL",
        ENOSPC => "ENOSPC",
        EOVERFLOW => "EOVERFLOW",
        ENOTSUP => "ENOTSUP",
        108 => "ESHUTDOWN",
        _ => "unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_spell_what_the_spec_says() {
        assert_eq!(&NBD_MAGIC.to_be_bytes(), b"NBDMAGIC");
        assert_eq!(&IHAVEOPT.to_be_bytes(), b"IHAVEOPT");
    }

    #[test]
    fn greeting_offsets() {
        let b = encode_greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        assert_eq!(&b[0..8], b"NBDMAGIC");
        assert_eq!(&b[8..16], b"IHAVEOPT");
        assert_eq!(&b[16..18], &[0, 3]);
        assert_eq!(decode_greeting(&b), (NBD_MAGIC, IHAVEOPT, 3));
    }

    #[test]
    fn option_header_offsets() {
        let h = OptionHeader {
            magic: IHAVEOPT,
            option: OPT_GO,
            length: 0x0102_0304,
        };
        let b = h.encode();
        assert_eq!(&b[0..8], b"IHAVEOPT");
        assert_eq!(&b[8..12], &[0, 0, 0, 7]);
        assert_eq!(&b[12..16], &[1, 2, 3, 4]);
        assert_eq!(OptionHeader::decode(&b), h);
    }

    #[test]
    fn option_reply_offsets() {
        let h = OptionReplyHeader::new(OPT_INFO, REP_ERR_UNKNOWN, 9);
        let b = h.encode();
        assert_eq!(&b[0..8], &[0, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9]);
        assert_eq!(&b[8..12], &[0, 0, 0, 6]);
        assert_eq!(&b[12..16], &[0x80, 0, 0, 6]);
        assert_eq!(&b[16..20], &[0, 0, 0, 9]);
        assert_eq!(OptionReplyHeader::decode(&b), h);
    }

    #[test]
    fn info_offsets() {
        let e = encode_info_export(0x0102_0304_0506_0708, 0x0165);
        assert_eq!(&e[0..2], &[0, 0]);
        assert_eq!(&e[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&e[10..12], &[0x01, 0x65]);
        let s = encode_info_block_size(512, 4096, MAX_PAYLOAD_BYTES);
        assert_eq!(&s[0..2], &[0, 3]);
        assert_eq!(&s[2..6], &[0, 0, 2, 0]);
        assert_eq!(&s[6..10], &[0, 0, 0x10, 0]);
        assert_eq!(&s[10..14], &[0x02, 0, 0, 0]);
        let x = encode_export_name_reply(4096, 0x0003);
        assert_eq!(&x[0..8], &[0, 0, 0, 0, 0, 0, 0x10, 0]);
        assert_eq!(&x[8..10], &[0, 3]);
    }

    #[test]
    fn request_offsets() {
        let r = Request {
            magic: REQUEST_MAGIC,
            flags: CMD_FLAG_FUA,
            kind: CMD_WRITE,
            handle: 0x1122_3344_5566_7788,
            offset: 0x0000_0001_0000_0200,
            length: 4096,
        };
        let b = r.encode();
        assert_eq!(&b[0..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(&b[4..6], &[0, 1]);
        assert_eq!(&b[6..8], &[0, 1]);
        assert_eq!(&b[8..16], &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        assert_eq!(&b[16..24], &[0, 0, 0, 1, 0, 0, 2, 0]);
        assert_eq!(&b[24..28], &[0, 0, 0x10, 0]);
        assert_eq!(Request::decode(&b), r);
    }

    #[test]
    fn simple_reply_offsets() {
        let r = SimpleReply::new(EIO, 0xdead_beef);
        let b = r.encode();
        assert_eq!(&b[0..4], &[0x67, 0x44, 0x66, 0x98]);
        assert_eq!(&b[4..8], &[0, 0, 0, 5]);
        assert_eq!(&b[8..16], &[0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(SimpleReply::decode(&b), r);
    }

    #[test]
    fn transmission_flags_match_the_spec_bits() {
        assert_eq!(TFLAG_SEND_FLUSH, 4);
        assert_eq!(TFLAG_SEND_FUA, 8);
        assert_eq!(TFLAG_SEND_TRIM, 32);
        assert_eq!(TFLAG_SEND_WRITE_ZEROES, 64);
        assert_eq!(TFLAG_CAN_MULTI_CONN, 256);
    }
}
