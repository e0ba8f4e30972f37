//! Block protocol messages on the wire, version 2 (little-endian; docs/ebs-protocol.md).
//! Version 2 added the 28-byte client seal to WRITE and DATA.
//!
//! A message is a 24-byte header and a body of `body_len` bytes. The header's CRC-32 covers the
//! header's first 20 bytes and the body. The parse checks every length before it reads, and every
//! field against its rule, each rule with its own error, so a peer's bytes never panic the reader.

use thiserror::Error;

use super::status::Status;

/// The first four bytes of every message.
pub const MAGIC: [u8; 4] = *b"FEBP";
/// The version this module reads and writes.
pub const VERSION: u8 = 2;
/// Bytes of the header.
pub const HEADER_LEN: usize = 24;
/// Bytes of a block: what a WRITE carries and a DATA returns.
pub const BLOCK_BYTES: usize = 4096;
/// Bytes of the client seal beside each block of a WRITE and a DATA: the nonce and tag the
/// client sealed the block with (docs/ebs-protocol.md, "Envelope encryption"), stored by the
/// server as given and returned with the block; all zero for a block in the clear.
pub const BLOCK_SEAL_BYTES: usize = 28;
/// Longest volume name.
pub const VOLUME_NAME_MAX: usize = 64;
/// Longest credential an ATTACH carries.
pub const ATTACH_CREDENTIAL_MAX: usize = 256;
/// Longest wrapped data key an ATTACHED reply carries.
pub const WRAPPED_KEY_MAX: usize = 128;
/// Most blocks one READ asks for (each comes back in its own DATA message).
pub const READ_BLOCKS_MAX: u32 = 256;
/// Most blocks one TRIM or WRITE_ZEROES covers (4 GiB).
pub const TRIM_BLOCKS_MAX: u32 = 1 << 20;
/// Longest error message.
pub const ERROR_MESSAGE_MAX: usize = 256;
/// Body of a WRITE or DATA: 8-byte address, the client seal, the block.
pub const BLOCK_BODY_LEN: usize = 8 + BLOCK_SEAL_BYTES + BLOCK_BYTES;
/// Largest body: a WRITE or DATA.
pub const BODY_LEN_MAX: usize = BLOCK_BODY_LEN;
/// Largest message.
pub const MESSAGE_LEN_MAX: usize = HEADER_LEN + BODY_LEN_MAX;

/// Flag of WRITE and WRITE_ZEROES: durable before the reply.
const FLAG_FUA: u16 = 1;

const KIND_ATTACH: u8 = 0x01;
const KIND_DETACH: u8 = 0x02;
const KIND_READ: u8 = 0x03;
const KIND_WRITE: u8 = 0x04;
const KIND_FLUSH: u8 = 0x05;
const KIND_TRIM: u8 = 0x06;
const KIND_WRITE_ZEROES: u8 = 0x07;
const KIND_ATTACHED: u8 = 0x81;
const KIND_DONE: u8 = 0x82;
const KIND_DATA: u8 = 0x83;
const KIND_ERROR: u8 = 0x84;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Attach {
        volume: String,
        credential: Vec<u8>,
    },
    Detach,
    Read {
        lba: u64,
        blocks: u32,
    },
    Write {
        lba: u64,
        fua: bool,
        seal: [u8; BLOCK_SEAL_BYTES],
        data: Vec<u8>,
    },
    Flush,
    Trim {
        lba: u64,
        blocks: u32,
    },
    WriteZeroes {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Attached {
        volume_id: u64,
        blocks: u64,
        multi_attach: bool,
        /// The volume's data key, wrapped by the client's key-encryption key (empty: none).
        wrapped_key: Vec<u8>,
    },
    /// The request succeeded (DETACH, WRITE, FLUSH, TRIM, WRITE_ZEROES).
    Done,
    /// One block of a READ, with the seal it was written with.
    Data {
        lba: u64,
        seal: [u8; BLOCK_SEAL_BYTES],
        data: Vec<u8>,
    },
    Error {
        status: Status,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Request(Request),
    Reply(Reply),
}

/// One message: the request id ties replies to their request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub request_id: u64,
    pub body: Body,
}

/// Why bytes were not a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("message of {len} bytes is shorter than the {needed} bytes it requires")]
    Truncated { len: usize, needed: usize },
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported version {found}")]
    BadVersion { found: u8 },
    #[error("body length {body_len} does not match a message of {len} bytes")]
    BodyLength { body_len: u32, len: usize },
    #[error("CRC mismatch: header says {expected:#010x}, message has {actual:#010x}")]
    BadCrc { expected: u32, actual: u32 },
    #[error("unknown message kind {kind:#04x}")]
    UnknownKind { kind: u8 },
    #[error("flags {flags:#06x} are not allowed on kind {kind:#04x}")]
    BadFlags { kind: u8, flags: u16 },
    #[error("kind {kind:#04x} needs a body of {expected} bytes, got {actual}")]
    BodySize {
        kind: u8,
        expected: usize,
        actual: usize,
    },
    #[error("{field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

impl Message {
    pub fn request(request_id: u64, request: Request) -> Self {
        Self {
            request_id,
            body: Body::Request(request),
        }
    }

    pub fn reply(request_id: u64, reply: Reply) -> Self {
        Self {
            request_id,
            body: Body::Reply(reply),
        }
    }

    /// The bytes of this message. Panics on a message this format cannot carry (a block that is
    /// not 4 KiB, a name or key too long): those are the sender's bugs, not a peer's input.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, flags, body) = self.encode_body();
        assert!(body.len() <= BODY_LEN_MAX, "body of {} bytes", body.len());
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(kind);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let crc = crc_of(&out, &body);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&body);
        debug_assert_eq!(out.len(), HEADER_LEN + body.len());
        out
    }

    fn encode_body(&self) -> (u8, u16, Vec<u8>) {
        let mut b = Vec::new();
        match &self.body {
            Body::Request(r) => match r {
                Request::Attach { volume, credential } => {
                    assert!(valid_volume_name(volume).is_ok(), "volume name {volume:?}");
                    assert!((1..=ATTACH_CREDENTIAL_MAX).contains(&credential.len()));
                    put_bytes16(&mut b, volume.as_bytes());
                    put_bytes16(&mut b, credential);
                    (KIND_ATTACH, 0, b)
                }
                Request::Detach => (KIND_DETACH, 0, b),
                Request::Read { lba, blocks } => {
                    assert!((1..=READ_BLOCKS_MAX).contains(blocks));
                    b.extend_from_slice(&lba.to_le_bytes());
                    b.extend_from_slice(&blocks.to_le_bytes());
                    (KIND_READ, 0, b)
                }
                Request::Write {
                    lba,
                    fua,
                    seal,
                    data,
                } => {
                    assert_eq!(data.len(), BLOCK_BYTES);
                    b.extend_from_slice(&lba.to_le_bytes());
                    b.extend_from_slice(seal);
                    b.extend_from_slice(data);
                    (KIND_WRITE, fua_flag(*fua), b)
                }
                Request::Flush => (KIND_FLUSH, 0, b),
                Request::Trim { lba, blocks } => {
                    assert!((1..=TRIM_BLOCKS_MAX).contains(blocks));
                    b.extend_from_slice(&lba.to_le_bytes());
                    b.extend_from_slice(&blocks.to_le_bytes());
                    (KIND_TRIM, 0, b)
                }
                Request::WriteZeroes { lba, blocks, fua } => {
                    assert!((1..=TRIM_BLOCKS_MAX).contains(blocks));
                    b.extend_from_slice(&lba.to_le_bytes());
                    b.extend_from_slice(&blocks.to_le_bytes());
                    (KIND_WRITE_ZEROES, fua_flag(*fua), b)
                }
            },
            Body::Reply(r) => match r {
                Reply::Attached {
                    volume_id,
                    blocks,
                    multi_attach,
                    wrapped_key,
                } => {
                    assert!(wrapped_key.len() <= WRAPPED_KEY_MAX);
                    b.extend_from_slice(&volume_id.to_le_bytes());
                    b.extend_from_slice(&blocks.to_le_bytes());
                    b.extend_from_slice(&(BLOCK_BYTES as u32).to_le_bytes());
                    b.push(u8::from(*multi_attach));
                    b.push(0);
                    put_bytes16(&mut b, wrapped_key);
                    (KIND_ATTACHED, 0, b)
                }
                Reply::Done => (KIND_DONE, 0, b),
                Reply::Data { lba, seal, data } => {
                    assert_eq!(data.len(), BLOCK_BYTES);
                    b.extend_from_slice(&lba.to_le_bytes());
                    b.extend_from_slice(seal);
                    b.extend_from_slice(data);
                    (KIND_DATA, 0, b)
                }
                Reply::Error { status, message } => {
                    // A message is cut at a character boundary to fit, never refused.
                    let mut end = message.len().min(ERROR_MESSAGE_MAX);
                    while !message.is_char_boundary(end) {
                        end -= 1;
                    }
                    b.extend_from_slice(&status.code().to_le_bytes());
                    put_bytes16(&mut b, &message.as_bytes()[..end]);
                    (KIND_ERROR, 0, b)
                }
            },
        }
    }

    /// Parses one message from untrusted bytes (exactly one message: no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let header = bytes.get(..HEADER_LEN).ok_or(WireError::Truncated {
            len: bytes.len(),
            needed: HEADER_LEN,
        })?;
        let mut h = Reader::new(header);
        let magic: [u8; 4] = h.array()?;
        if magic != MAGIC {
            return Err(WireError::BadMagic { found: magic });
        }
        let version = h.u8()?;
        if version != VERSION {
            return Err(WireError::BadVersion { found: version });
        }
        let kind = h.u8()?;
        let flags = h.u16()?;
        let request_id = h.u64()?;
        let body_len = h.u32()?;
        let crc = h.u32()?;
        if body_len as usize > BODY_LEN_MAX || HEADER_LEN + body_len as usize != bytes.len() {
            return Err(WireError::BodyLength {
                body_len,
                len: bytes.len(),
            });
        }
        let body = &bytes[HEADER_LEN..];
        let actual = crc_of(&header[..20], body);
        if actual != crc {
            return Err(WireError::BadCrc {
                expected: crc,
                actual,
            });
        }
        let allowed_flags = match kind {
            KIND_WRITE | KIND_WRITE_ZEROES => FLAG_FUA,
            _ => 0,
        };
        if flags & !allowed_flags != 0 {
            return Err(WireError::BadFlags { kind, flags });
        }
        let fua = flags & FLAG_FUA != 0;
        let mut r = Reader::new(body);
        let parsed = match kind {
            KIND_ATTACH => {
                let name = r.bytes16("volume name", VOLUME_NAME_MAX)?;
                let volume = std::str::from_utf8(name)
                    .map_err(|_| field("volume name", "not UTF-8"))?
                    .to_string();
                valid_volume_name(&volume).map_err(|p| field("volume name", p))?;
                let credential = r.bytes16("credential", ATTACH_CREDENTIAL_MAX)?.to_vec();
                if credential.is_empty() {
                    return Err(field("credential", "empty"));
                }
                Body::Request(Request::Attach { volume, credential })
            }
            KIND_DETACH => Body::Request(Request::Detach),
            KIND_READ => {
                r.expect_len(kind, 12)?;
                let lba = r.u64()?;
                let blocks = r.u32()?;
                check_count("blocks", blocks, READ_BLOCKS_MAX)?;
                Body::Request(Request::Read { lba, blocks })
            }
            KIND_WRITE => {
                r.expect_len(kind, BLOCK_BODY_LEN)?;
                let lba = r.u64()?;
                let seal = r.array()?;
                let data = r.take(BLOCK_BYTES)?.to_vec();
                Body::Request(Request::Write {
                    lba,
                    fua,
                    seal,
                    data,
                })
            }
            KIND_FLUSH => Body::Request(Request::Flush),
            KIND_TRIM | KIND_WRITE_ZEROES => {
                r.expect_len(kind, 12)?;
                let lba = r.u64()?;
                let blocks = r.u32()?;
                check_count("blocks", blocks, TRIM_BLOCKS_MAX)?;
                Body::Request(if kind == KIND_TRIM {
                    Request::Trim { lba, blocks }
                } else {
                    Request::WriteZeroes { lba, blocks, fua }
                })
            }
            KIND_ATTACHED => {
                let volume_id = r.u64()?;
                let blocks = r.u64()?;
                let block_bytes = r.u32()?;
                if block_bytes as usize != BLOCK_BYTES {
                    return Err(field("block size", format!("{block_bytes}, not 4096")));
                }
                let multi_attach = match r.u8()? {
                    0 => false,
                    1 => true,
                    v => return Err(field("multi-attach", format!("{v} is not 0 or 1"))),
                };
                if r.u8()? != 0 {
                    return Err(field("reserved byte", "not zero"));
                }
                let wrapped_key = r.bytes16("wrapped key", WRAPPED_KEY_MAX)?.to_vec();
                Body::Reply(Reply::Attached {
                    volume_id,
                    blocks,
                    multi_attach,
                    wrapped_key,
                })
            }
            KIND_DONE => Body::Reply(Reply::Done),
            KIND_DATA => {
                r.expect_len(kind, BLOCK_BODY_LEN)?;
                let lba = r.u64()?;
                let seal = r.array()?;
                let data = r.take(BLOCK_BYTES)?.to_vec();
                Body::Reply(Reply::Data { lba, seal, data })
            }
            KIND_ERROR => {
                let code = r.u16()?;
                let status = Status::from_code(code)
                    .ok_or_else(|| field("status", format!("unknown code {code}")))?;
                let text = r.bytes16("error message", ERROR_MESSAGE_MAX)?;
                let message = std::str::from_utf8(text)
                    .map_err(|_| field("error message", "not UTF-8"))?
                    .to_string();
                Body::Reply(Reply::Error { status, message })
            }
            other => return Err(WireError::UnknownKind { kind: other }),
        };
        if r.remaining() != 0 {
            return Err(WireError::BodySize {
                kind,
                expected: body.len() - r.remaining(),
                actual: body.len(),
            });
        }
        Ok(Message {
            request_id,
            body: parsed,
        })
    }
}

/// The request id of bytes that carry at least a valid header, so a server can answer a
/// malformed request with an error the client can match.
pub fn request_id_of(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..HEADER_LEN)?;
    (header[..4] == MAGIC).then(|| {
        let mut id = [0u8; 8];
        id.copy_from_slice(&header[8..16]);
        u64::from_le_bytes(id)
    })
}

/// A volume name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with a dot.
pub fn valid_volume_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > VOLUME_NAME_MAX {
        return Err(format!(
            "{} bytes; 1 to {VOLUME_NAME_MAX} allowed",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return Err("starts with a dot".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!("character {c:?} is not allowed")),
        None => Ok(()),
    }
}

fn fua_flag(fua: bool) -> u16 {
    if fua { FLAG_FUA } else { 0 }
}

fn crc_of(header: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..20]);
    hasher.update(body);
    hasher.finalize()
}

fn put_bytes16(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("field fits a u16 length");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn field(field: &'static str, problem: impl Into<String>) -> WireError {
    WireError::Field {
        field,
        problem: problem.into(),
    }
}

fn check_count(name: &'static str, count: u32, max: u32) -> Result<(), WireError> {
    if count == 0 || count > max {
        return Err(field(name, format!("{count}; 1 to {max} allowed")));
    }
    Ok(())
}

/// A cursor over untrusted bytes: every read checks the length first.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn expect_len(&self, kind: u8, expected: usize) -> Result<(), WireError> {
        if self.bytes.len() != expected {
            return Err(WireError::BodySize {
                kind,
                expected,
                actual: self.bytes.len(),
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(WireError::Truncated {
                len: self.bytes.len(),
                needed: self.at.saturating_add(n),
            });
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn bytes16(&mut self, name: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(field(name, format!("{len} bytes; at most {max}")));
        }
        self.take(len)
    }
}

#[cfg(test)]
mod tests;
