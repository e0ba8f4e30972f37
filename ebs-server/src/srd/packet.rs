//! The SRD wire format, version 3 (unsealed; sealed it is version 4, see seal.rs): one packet per
//! UDP datagram. `docs/ebs-srd.md` gives every byte;
//! the tests at the bottom pin each offset given there.
//!
//! Every datagram is a 28-byte common header, a kind-specific body of `body_len` bytes and a 4-byte
//! CRC-32 trailer over everything before it. The parser checks every length against the datagram
//! before it reads, so arbitrary bytes give an error, never a panic.
//!
//! The header already carries a key epoch and every packet (not only DATA) has a packet number, so
//! a later version can seal packets with AES-256-GCM: the header becomes the associated data, the
//! (connection id, packet number) pair the nonce, and the CRC trailer a 16-byte tag.

use thiserror::Error;

/// The first four bytes of every packet.
pub const MAGIC: [u8; 4] = *b"FSRD";
/// The format version this module reads and writes. Version 1 (and its sealed form, 2) had no
/// DATA_ACK kind; it is refused rather than half understood.
pub const VERSION: u8 = 3;
/// Bytes of the common header, before the body.
pub const HEADER_LEN: usize = 28;
/// Bytes of the CRC trailer, after the body.
pub const TRAILER_LEN: usize = 4;
/// Bytes of a DATA body before its payload.
pub const DATA_BODY_HEADER_LEN: usize = 20;
/// Bytes of an ACK body before its ranges.
pub const ACK_BODY_HEADER_LEN: usize = 4;
/// Bytes of one ACK range.
pub const ACK_RANGE_LEN: usize = 10;
/// Bytes of one ACK delay.
pub const ACK_DELAY_LEN: usize = 4;
/// Bytes of a PROBE_ACK body.
pub const PROBE_ACK_BODY_LEN: usize = 12;
/// Largest payload one DATA packet may carry (the parse's bound). A connection's own limit is
/// `Config::payload_len_max`: one 4 KiB block message per datagram by default, less on a
/// 1500-byte MTU path (`config::PAYLOAD_LEN_MTU_1500`).
pub const PAYLOAD_LEN_MAX: usize = 8192;
/// Largest message (the sum of its fragments' payloads).
pub const MESSAGE_LEN_MAX: usize = 4 << 20;
/// Most paths per peer; the path id is checked against it on parse.
pub const PATHS_MAX: usize = 64;
/// Most packets one ACK acknowledges (and so most ranges it has).
pub const ACK_PACKETS_MAX: usize = 64;
/// Largest datagram this format produces.
pub const DATAGRAM_LEN_MAX: usize =
    HEADER_LEN + DATA_BODY_HEADER_LEN + PAYLOAD_LEN_MAX + TRAILER_LEN;

const KIND_DATA: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_PROBE: u8 = 3;
const KIND_PROBE_ACK: u8 = 4;
/// DATA with a piggybacked ACK block. Not 5 or 6: those are HELLO and HELLO_ACK, which
/// `handshake::classify` routes by kind alone.
const KIND_DATA_ACK: u8 = 7;

/// Why a datagram was rejected. Each check of untrusted bytes has its own variant so the
/// connection can count what it drops.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("datagram of {len} bytes is shorter than the {needed} bytes its header requires")]
    Truncated { len: usize, needed: usize },
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported version {found}")]
    BadVersion { found: u8 },
    #[error("body length {body_len} does not match a datagram of {len} bytes")]
    LengthMismatch { body_len: usize, len: usize },
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("unknown packet kind {found}")]
    UnknownKind { found: u8 },
    #[error("reserved field {field} is {value}, must be 0 in version 1")]
    ReservedNonZero { field: &'static str, value: u64 },
    #[error("path id {path_id} out of range (at most {max} paths)")]
    PathOutOfRange { path_id: u8, max: usize },
    #[error("body of {len} bytes is the wrong size for a {kind} packet")]
    BodyLength { kind: &'static str, len: usize },
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLong { len: usize, max: usize },
    #[error("message length {len} exceeds {max}")]
    MessageTooLong { len: usize, max: usize },
    #[error(
        "fragment {index} of {count} at offset {offset} (+{len}) does not fit a message of {message_len}"
    )]
    FragmentOutOfRange {
        index: u16,
        count: u16,
        offset: u32,
        len: usize,
        message_len: u32,
    },
    #[error("ack with {ranges} ranges and {delays} delays (1..={max} packets, one delay each)")]
    AckCount {
        ranges: usize,
        delays: usize,
        max: usize,
    },
    #[error("ack range starting at {first} is empty, overlaps the previous one or overflows")]
    AckRangeInvalid { first: u64 },
}

/// The body of a DATA packet: one fragment of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    pub message_id: u64,
    /// Total bytes of the message this fragment belongs to.
    pub message_len: u32,
    /// Where `payload` goes in the message.
    pub fragment_offset: u32,
    pub fragment_index: u16,
    pub fragment_count: u16,
    pub payload: &'a [u8],
}

/// One acknowledged packet and how long the receiver held it before acknowledging, so the sender
/// takes the delay out of its RTT sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub packet_number: u64,
    pub ack_delay_us: u32,
}

/// What a packet carries after the common header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    Data(Data<'a>),
    /// Acknowledged packets in ascending packet-number order, 1..=ACK_PACKETS_MAX of them.
    Ack(Vec<Acked>),
    Probe,
    ProbeAck(Acked),
    /// A DATA fragment that also acknowledges packets that arrived on the path it is sent on
    /// (1..=ACK_PACKETS_MAX, ascending, as `Ack`), so a reply carries the ACK of its request.
    DataAck {
        acked: Vec<Acked>,
        data: Data<'a>,
    },
}

impl Body<'_> {
    fn kind(&self) -> u8 {
        match self {
            Body::Data(_) => KIND_DATA,
            Body::DataAck { .. } => KIND_DATA_ACK,
            Body::Ack(_) => KIND_ACK,
            Body::Probe => KIND_PROBE,
            Body::ProbeAck(_) => KIND_PROBE_ACK,
        }
    }
}

/// One parsed (or to be encoded) packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub connection_id: u64,
    /// Fresh for every packet a side sends, of every kind.
    pub packet_number: u64,
    /// The path (UDP source port index) the packet is sent on.
    pub path_id: u8,
    pub body: Body<'a>,
}

fn body_len(body: &Body<'_>) -> usize {
    match body {
        Body::Data(d) => DATA_BODY_HEADER_LEN + d.payload.len(),
        Body::Ack(acked) => ack_block_len(acked),
        Body::DataAck { acked, data } => {
            ack_block_len(acked) + DATA_BODY_HEADER_LEN + data.payload.len()
        }
        Body::Probe => 0,
        Body::ProbeAck(_) => PROBE_ACK_BODY_LEN,
    }
}

/// Bytes of the ACK block (an ACK body, or the front of a DATA_ACK body) acknowledging `acked`.
pub fn ack_block_len(acked: &[Acked]) -> usize {
    ACK_BODY_HEADER_LEN + ack_ranges(acked).len() * ACK_RANGE_LEN + acked.len() * ACK_DELAY_LEN
}

/// Runs of consecutive packet numbers as (first, length).
fn ack_ranges(acked: &[Acked]) -> Vec<(u64, u16)> {
    let mut ranges: Vec<(u64, u16)> = Vec::new();
    for a in acked {
        match ranges.last_mut() {
            Some((first, len)) if first.checked_add(u64::from(*len)) == Some(a.packet_number) => {
                *len += 1
            }
            _ => ranges.push((a.packet_number, 1)),
        }
    }
    ranges
}

impl Packet<'_> {
    /// Bytes of the encoded datagram.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + body_len(&self.body) + TRAILER_LEN
    }

    /// Encodes the packet into a new datagram. The caller builds packets within the limits
    /// (payload, ack count, ascending acks); they are asserted because a violation is a bug in
    /// this crate, not bad input.
    pub fn encode(&self) -> Vec<u8> {
        let body_len = body_len(&self.body);
        assert!(
            body_len <= usize::from(u16::MAX),
            "body of {body_len} bytes"
        );
        let mut out = Vec::with_capacity(HEADER_LEN + body_len + TRAILER_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.body.kind());
        out.push(self.path_id);
        out.push(0); // key epoch: 0 = unsealed
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        out.extend_from_slice(&self.packet_number.to_le_bytes());
        out.extend_from_slice(&(body_len as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        match &self.body {
            Body::Data(d) => encode_data(&mut out, d),
            Body::Ack(acked) => encode_ack_block(&mut out, acked),
            Body::DataAck { acked, data } => {
                encode_ack_block(&mut out, acked);
                encode_data(&mut out, data);
            }
            Body::Probe => {}
            Body::ProbeAck(a) => {
                out.extend_from_slice(&a.packet_number.to_le_bytes());
                out.extend_from_slice(&a.ack_delay_us.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

fn encode_data(out: &mut Vec<u8>, d: &Data<'_>) {
    assert!(d.payload.len() <= PAYLOAD_LEN_MAX);
    out.extend_from_slice(&d.message_id.to_le_bytes());
    out.extend_from_slice(&d.message_len.to_le_bytes());
    out.extend_from_slice(&d.fragment_offset.to_le_bytes());
    out.extend_from_slice(&d.fragment_index.to_le_bytes());
    out.extend_from_slice(&d.fragment_count.to_le_bytes());
    out.extend_from_slice(d.payload);
}

fn encode_ack_block(out: &mut Vec<u8>, acked: &[Acked]) {
    assert!(
        (1..=ACK_PACKETS_MAX).contains(&acked.len()),
        "{} acks",
        acked.len()
    );
    assert!(
        acked
            .windows(2)
            .all(|w| w[0].packet_number < w[1].packet_number)
    );
    let ranges = ack_ranges(acked);
    out.extend_from_slice(&(ranges.len() as u16).to_le_bytes());
    out.extend_from_slice(&(acked.len() as u16).to_le_bytes());
    for (first, len) in &ranges {
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
    }
    for a in acked {
        out.extend_from_slice(&a.ack_delay_us.to_le_bytes());
    }
}

// The parser reads fixed offsets only after checking the length covering them, so these never
// see a short slice; `get` keeps that a checked fact instead of a promise.
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses one datagram. The returned packet borrows the DATA payload from `datagram`.
pub fn parse(datagram: &[u8]) -> Result<Packet<'_>, PacketError> {
    let len = datagram.len();
    let truncated = |needed| PacketError::Truncated { len, needed };
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(truncated(HEADER_LEN + TRAILER_LEN));
    }
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&datagram[0..4]);
    if magic != MAGIC {
        return Err(PacketError::BadMagic { found: magic });
    }
    if datagram[4] != VERSION {
        return Err(PacketError::BadVersion { found: datagram[4] });
    }
    let body_len = usize::from(u16_at(datagram, 24).ok_or(truncated(HEADER_LEN))?);
    let needed = HEADER_LEN + body_len + TRAILER_LEN;
    if len < needed {
        return Err(truncated(needed));
    }
    if len > needed {
        return Err(PacketError::LengthMismatch { body_len, len });
    }
    let crc_at = HEADER_LEN + body_len;
    let stored = u32_at(datagram, crc_at).ok_or(truncated(needed))?;
    let computed = crc32fast::hash(&datagram[..crc_at]);
    if stored != computed {
        return Err(PacketError::BadChecksum { stored, computed });
    }
    let kind = datagram[5];
    let path_id = datagram[6];
    let key_epoch = datagram[7];
    if key_epoch != 0 {
        return Err(PacketError::ReservedNonZero {
            field: "key_epoch",
            value: u64::from(key_epoch),
        });
    }
    let flags = u16_at(datagram, 26).ok_or(truncated(HEADER_LEN))?;
    if flags != 0 {
        return Err(PacketError::ReservedNonZero {
            field: "flags",
            value: u64::from(flags),
        });
    }
    if usize::from(path_id) >= PATHS_MAX {
        return Err(PacketError::PathOutOfRange {
            path_id,
            max: PATHS_MAX,
        });
    }
    let connection_id = u64_at(datagram, 8).ok_or(truncated(HEADER_LEN))?;
    let packet_number = u64_at(datagram, 16).ok_or(truncated(HEADER_LEN))?;
    let body = &datagram[HEADER_LEN..crc_at];
    let body = match kind {
        KIND_DATA => Body::Data(parse_data(body, "DATA")?),
        KIND_ACK => Body::Ack(parse_ack(body)?),
        KIND_DATA_ACK => parse_data_ack(body)?,
        KIND_PROBE if body.is_empty() => Body::Probe,
        KIND_PROBE => {
            return Err(PacketError::BodyLength {
                kind: "PROBE",
                len: body.len(),
            });
        }
        KIND_PROBE_ACK if body.len() == PROBE_ACK_BODY_LEN => Body::ProbeAck(Acked {
            packet_number: u64_at(body, 0).ok_or(truncated(needed))?,
            ack_delay_us: u32_at(body, 8).ok_or(truncated(needed))?,
        }),
        KIND_PROBE_ACK => {
            return Err(PacketError::BodyLength {
                kind: "PROBE_ACK",
                len: body.len(),
            });
        }
        found => return Err(PacketError::UnknownKind { found }),
    };
    Ok(Packet {
        connection_id,
        packet_number,
        path_id,
        body,
    })
}

fn parse_data<'a>(body: &'a [u8], kind: &'static str) -> Result<Data<'a>, PacketError> {
    let short = PacketError::BodyLength {
        kind,
        len: body.len(),
    };
    if body.len() < DATA_BODY_HEADER_LEN {
        return Err(short);
    }
    let message_id = u64_at(body, 0).ok_or(short.clone())?;
    let message_len = u32_at(body, 8).ok_or(short.clone())?;
    let fragment_offset = u32_at(body, 12).ok_or(short.clone())?;
    let fragment_index = u16_at(body, 16).ok_or(short.clone())?;
    let fragment_count = u16_at(body, 18).ok_or(short)?;
    let payload = &body[DATA_BODY_HEADER_LEN..];
    if payload.len() > PAYLOAD_LEN_MAX {
        return Err(PacketError::PayloadTooLong {
            len: payload.len(),
            max: PAYLOAD_LEN_MAX,
        });
    }
    if message_len as usize > MESSAGE_LEN_MAX {
        return Err(PacketError::MessageTooLong {
            len: message_len as usize,
            max: MESSAGE_LEN_MAX,
        });
    }
    let end = u64::from(fragment_offset) + payload.len() as u64;
    // An empty payload is only the single fragment of an empty message: otherwise a sender could
    // make the receiver hold a reassembly for fragments that carry nothing.
    let empty_ok = payload.is_empty() == (message_len == 0);
    if fragment_count == 0
        || fragment_index >= fragment_count
        || end > u64::from(message_len)
        || !empty_ok
    {
        return Err(PacketError::FragmentOutOfRange {
            index: fragment_index,
            count: fragment_count,
            offset: fragment_offset,
            len: payload.len(),
            message_len,
        });
    }
    Ok(Data {
        message_id,
        message_len,
        fragment_offset,
        fragment_index,
        fragment_count,
        payload,
    })
}

fn parse_ack(body: &[u8]) -> Result<Vec<Acked>, PacketError> {
    let (acked, block_len) = parse_ack_block(body, "ACK")?;
    if block_len != body.len() {
        return Err(PacketError::BodyLength {
            kind: "ACK",
            len: body.len(),
        });
    }
    Ok(acked)
}

/// A DATA_ACK body: an ACK block, then a DATA body. The block's counts give its length, checked
/// against the body before any range is read; the fragment after it is checked as a DATA body,
/// and the two together may not exceed a full DATA payload (so a DATA_ACK is never a larger
/// datagram than the largest DATA).
fn parse_data_ack(body: &[u8]) -> Result<Body<'_>, PacketError> {
    let (acked, block_len) = parse_ack_block(body, "DATA_ACK")?;
    let rest = &body[block_len..];
    let data = parse_data(rest, "DATA_ACK")?;
    let carried = block_len + data.payload.len();
    if carried > PAYLOAD_LEN_MAX {
        return Err(PacketError::PayloadTooLong {
            len: carried,
            max: PAYLOAD_LEN_MAX,
        });
    }
    Ok(Body::DataAck { acked, data })
}

/// Parses the ACK block at the start of `body`; returns the acknowledged packets and the
/// block's length. `kind` names the packet in a length error.
fn parse_ack_block(body: &[u8], kind: &'static str) -> Result<(Vec<Acked>, usize), PacketError> {
    let wrong_len = PacketError::BodyLength {
        kind,
        len: body.len(),
    };
    if body.len() < ACK_BODY_HEADER_LEN {
        return Err(wrong_len);
    }
    let range_count = usize::from(u16_at(body, 0).ok_or(wrong_len.clone())?);
    let delay_count = usize::from(u16_at(body, 2).ok_or(wrong_len.clone())?);
    let count_error = PacketError::AckCount {
        ranges: range_count,
        delays: delay_count,
        max: ACK_PACKETS_MAX,
    };
    if range_count == 0
        || delay_count == 0
        || range_count > delay_count
        || delay_count > ACK_PACKETS_MAX
    {
        return Err(count_error);
    }
    let block_len = ACK_BODY_HEADER_LEN + range_count * ACK_RANGE_LEN + delay_count * ACK_DELAY_LEN;
    if body.len() < block_len {
        return Err(wrong_len);
    }
    let delays_at = ACK_BODY_HEADER_LEN + range_count * ACK_RANGE_LEN;
    let mut acked = Vec::with_capacity(delay_count);
    let mut next_allowed: u64 = 0;
    for r in 0..range_count {
        let at = ACK_BODY_HEADER_LEN + r * ACK_RANGE_LEN;
        let first = u64_at(body, at).ok_or(wrong_len.clone())?;
        let range_len = u16_at(body, at + 8).ok_or(wrong_len.clone())?;
        let invalid = PacketError::AckRangeInvalid { first };
        // Ascending and not touching the previous range: the encoder merges adjacent runs, so
        // anything else is not from a correct peer.
        if range_len == 0 || (r > 0 && first <= next_allowed) {
            return Err(invalid);
        }
        let last = first.checked_add(u64::from(range_len) - 1).ok_or(invalid)?;
        if acked.len() + usize::from(range_len) > delay_count {
            return Err(count_error);
        }
        for packet_number in first..=last {
            let ack_delay_us =
                u32_at(body, delays_at + acked.len() * ACK_DELAY_LEN).ok_or(wrong_len.clone())?;
            acked.push(Acked {
                packet_number,
                ack_delay_us,
            });
        }
        next_allowed = last.saturating_add(1);
    }
    if acked.len() != delay_count {
        return Err(count_error);
    }
    Ok((acked, block_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data_packet(payload: &[u8]) -> Packet<'_> {
        Packet {
            connection_id: 0x0102_0304_0506_0708,
            packet_number: 0x1112_1314_1516_1718,
            path_id: 5,
            body: Body::Data(Data {
                message_id: 0x2122_2324_2526_2728,
                message_len: 0x0000_3132,
                fragment_offset: 0x0000_0100,
                fragment_index: 0x0102,
                fragment_count: 0x0203,
                payload,
            }),
        }
    }

    #[test]
    fn header_and_data_offsets_match_the_doc() {
        let payload = [0xAB; 7];
        let bytes = data_packet(&payload).encode();
        assert_eq!(
            bytes.len(),
            HEADER_LEN + DATA_BODY_HEADER_LEN + 7 + TRAILER_LEN
        );
        assert_eq!(&bytes[0..4], b"FSRD");
        assert_eq!(bytes[4], 3, "version");
        assert_eq!(bytes[5], 1, "kind DATA");
        assert_eq!(bytes[6], 5, "path id");
        assert_eq!(bytes[7], 0, "key epoch");
        assert_eq!(
            bytes[8..16],
            0x0102_0304_0506_0708u64.to_le_bytes(),
            "connection id"
        );
        assert_eq!(
            bytes[16..24],
            0x1112_1314_1516_1718u64.to_le_bytes(),
            "packet number"
        );
        assert_eq!(bytes[24..26], 27u16.to_le_bytes(), "body length");
        assert_eq!(bytes[26..28], [0, 0], "flags");
        assert_eq!(
            bytes[28..36],
            0x2122_2324_2526_2728u64.to_le_bytes(),
            "message id"
        );
        assert_eq!(bytes[36..40], 0x3132u32.to_le_bytes(), "message length");
        assert_eq!(bytes[40..44], 0x100u32.to_le_bytes(), "fragment offset");
        assert_eq!(bytes[44..46], 0x0102u16.to_le_bytes(), "fragment index");
        assert_eq!(bytes[46..48], 0x0203u16.to_le_bytes(), "fragment count");
        assert_eq!(bytes[48..55], payload);
        assert_eq!(
            bytes[55..59],
            crc32fast::hash(&bytes[..55]).to_le_bytes(),
            "crc"
        );
        assert_eq!(parse(&bytes), Ok(data_packet(&payload)));
    }

    #[test]
    fn crc_is_the_zlib_crc32() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn ack_offsets_match_the_doc() {
        let acked = vec![
            Acked {
                packet_number: 10,
                ack_delay_us: 1,
            },
            Acked {
                packet_number: 11,
                ack_delay_us: 2,
            },
            Acked {
                packet_number: 20,
                ack_delay_us: 3,
            },
        ];
        let packet = Packet {
            connection_id: 9,
            packet_number: 1,
            path_id: 0,
            body: Body::Ack(acked),
        };
        let bytes = packet.encode();
        assert_eq!(bytes[5], 2, "kind ACK");
        let body = &bytes[HEADER_LEN..bytes.len() - TRAILER_LEN];
        assert_eq!(body.len(), 4 + 2 * 10 + 3 * 4);
        assert_eq!(bytes[24..26], (body.len() as u16).to_le_bytes());
        assert_eq!(body[0..2], 2u16.to_le_bytes(), "range count");
        assert_eq!(body[2..4], 3u16.to_le_bytes(), "delay count");
        assert_eq!(body[4..12], 10u64.to_le_bytes(), "range 0 first");
        assert_eq!(body[12..14], 2u16.to_le_bytes(), "range 0 length");
        assert_eq!(body[14..22], 20u64.to_le_bytes(), "range 1 first");
        assert_eq!(body[22..24], 1u16.to_le_bytes(), "range 1 length");
        assert_eq!(body[24..28], 1u32.to_le_bytes(), "delay of 10");
        assert_eq!(body[28..32], 2u32.to_le_bytes(), "delay of 11");
        assert_eq!(body[32..36], 3u32.to_le_bytes(), "delay of 20");
        assert_eq!(parse(&bytes), Ok(packet));
    }

    #[test]
    fn probe_and_probe_ack_offsets_match_the_doc() {
        let probe = Packet {
            connection_id: 3,
            packet_number: 77,
            path_id: 2,
            body: Body::Probe,
        };
        let bytes = probe.encode();
        assert_eq!(bytes.len(), HEADER_LEN + TRAILER_LEN);
        assert_eq!(bytes[5], 3, "kind PROBE");
        assert_eq!(parse(&bytes), Ok(probe));

        let acked = Acked {
            packet_number: 77,
            ack_delay_us: 0x0A0B_0C0D,
        };
        let probe_ack = Packet {
            connection_id: 3,
            packet_number: 5,
            path_id: 2,
            body: Body::ProbeAck(acked),
        };
        let bytes = probe_ack.encode();
        assert_eq!(bytes[5], 4, "kind PROBE_ACK");
        assert_eq!(bytes[24..26], 12u16.to_le_bytes());
        assert_eq!(bytes[28..36], 77u64.to_le_bytes(), "probed packet number");
        assert_eq!(bytes[36..40], 0x0A0B_0C0Du32.to_le_bytes(), "ack delay");
        assert_eq!(parse(&bytes), Ok(probe_ack));
    }

    /// Re-seals a modified datagram so the check under test, not the CRC, rejects it.
    fn reseal(bytes: &mut [u8]) {
        let at = bytes.len() - TRAILER_LEN;
        let crc = crc32fast::hash(&bytes[..at]);
        bytes[at..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn every_header_check_has_its_own_error() {
        let payload = [1u8; 3];
        let good = data_packet(&payload).encode();

        assert!(matches!(
            parse(&good[..10]),
            Err(PacketError::Truncated { len: 10, .. })
        ));
        assert!(matches!(
            parse(&good[..good.len() - 1]),
            Err(PacketError::Truncated { .. })
        ));

        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(parse(&b), Err(PacketError::BadMagic { .. })));

        let mut b = good.clone();
        b[4] = 2;
        assert_eq!(parse(&b), Err(PacketError::BadVersion { found: 2 }));

        let mut b = good.clone();
        b.push(0);
        assert!(matches!(parse(&b), Err(PacketError::LengthMismatch { .. })));

        let mut b = good.clone();
        b[50] ^= 1;
        assert!(matches!(parse(&b), Err(PacketError::BadChecksum { .. })));

        let mut b = good.clone();
        b[5] = 9;
        reseal(&mut b);
        assert_eq!(parse(&b), Err(PacketError::UnknownKind { found: 9 }));

        let mut b = good.clone();
        b[7] = 1;
        reseal(&mut b);
        assert!(matches!(
            parse(&b),
            Err(PacketError::ReservedNonZero {
                field: "key_epoch",
                ..
            })
        ));

        let mut b = good.clone();
        b[26] = 1;
        reseal(&mut b);
        assert!(matches!(
            parse(&b),
            Err(PacketError::ReservedNonZero { field: "flags", .. })
        ));

        let mut b = good.clone();
        b[6] = PATHS_MAX as u8;
        reseal(&mut b);
        assert!(matches!(parse(&b), Err(PacketError::PathOutOfRange { .. })));
    }

    #[test]
    fn data_body_checks() {
        let payload = [1u8; 3];
        let good = data_packet(&payload).encode();
        let mut b = good.clone();
        b[36..40].copy_from_slice(&((MESSAGE_LEN_MAX + 1) as u32).to_le_bytes());
        reseal(&mut b);
        assert!(matches!(parse(&b), Err(PacketError::MessageTooLong { .. })));

        for (at, value) in [(44usize, 0x0203u16), (46, 0)] {
            let mut b = good.clone();
            b[at..at + 2].copy_from_slice(&value.to_le_bytes());
            reseal(&mut b);
            assert!(
                matches!(parse(&b), Err(PacketError::FragmentOutOfRange { .. })),
                "at {at}"
            );
        }
        let mut b = good.clone();
        b[40..44].copy_from_slice(&0x3130u32.to_le_bytes()); // offset + 3 > message length
        reseal(&mut b);
        assert!(matches!(
            parse(&b),
            Err(PacketError::FragmentOutOfRange { .. })
        ));

        let mut short = good[..HEADER_LEN + 10].to_vec();
        short[24..26].copy_from_slice(&10u16.to_le_bytes());
        short.extend_from_slice(&[0; 4]);
        reseal(&mut short);
        assert!(matches!(
            parse(&short),
            Err(PacketError::BodyLength {
                kind: "DATA",
                len: 10
            })
        ));

        let big = vec![0u8; PAYLOAD_LEN_MAX + 1];
        let mut b = data_packet(&[]).encode();
        b.truncate(HEADER_LEN + DATA_BODY_HEADER_LEN);
        b.extend_from_slice(&big);
        b[24..26].copy_from_slice(&((DATA_BODY_HEADER_LEN + big.len()) as u16).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        reseal(&mut b);
        assert!(matches!(parse(&b), Err(PacketError::PayloadTooLong { .. })));
    }

    #[test]
    fn ack_body_checks() {
        let acked = vec![
            Acked {
                packet_number: 10,
                ack_delay_us: 1,
            },
            Acked {
                packet_number: 20,
                ack_delay_us: 2,
            },
        ];
        let good = Packet {
            connection_id: 1,
            packet_number: 1,
            path_id: 0,
            body: Body::Ack(acked),
        }
        .encode();
        let body = HEADER_LEN;

        let mut b = good.clone();
        b[body + 2..body + 4].copy_from_slice(&0u16.to_le_bytes());
        reseal(&mut b);
        assert!(matches!(parse(&b), Err(PacketError::AckCount { .. })));

        let mut b = good.clone();
        b[body + 4 + 10..body + 4 + 18].copy_from_slice(&10u64.to_le_bytes()); // range 1 == range 0
        reseal(&mut b);
        assert_eq!(parse(&b), Err(PacketError::AckRangeInvalid { first: 10 }));

        let mut b = good.clone();
        b[body + 4 + 8..body + 4 + 10].copy_from_slice(&0u16.to_le_bytes()); // empty range
        reseal(&mut b);
        assert_eq!(parse(&b), Err(PacketError::AckRangeInvalid { first: 10 }));

        let mut b = good.clone();
        b[body + 4 + 8..body + 4 + 10].copy_from_slice(&2u16.to_le_bytes()); // 3 packets, 2 delays
        reseal(&mut b);
        assert!(matches!(parse(&b), Err(PacketError::AckCount { .. })));

        let mut b = good.clone();
        b[body + 4 + 10..body + 4 + 18].copy_from_slice(&u64::MAX.to_le_bytes());
        b[body + 4 + 18..body + 4 + 20].copy_from_slice(&1u16.to_le_bytes());
        reseal(&mut b);
        assert!(
            parse(&b).is_ok(),
            "u64::MAX alone is a valid last packet number"
        );
        b[body + 4 + 8..body + 4 + 10].copy_from_slice(&1u16.to_le_bytes());
        b[body + 4..body + 12].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
        reseal(&mut b);
        assert_eq!(
            parse(&b),
            Err(PacketError::AckRangeInvalid { first: u64::MAX }),
            "touching ranges"
        );

        let mut b = good.clone();
        b[body..body + 2].copy_from_slice(&3u16.to_le_bytes());
        reseal(&mut b);
        assert!(matches!(
            parse(&b),
            Err(PacketError::AckCount { .. } | PacketError::BodyLength { .. })
        ));
    }

    fn data_ack_packet(payload: &[u8]) -> Packet<'_> {
        let acked = vec![
            Acked {
                packet_number: 40,
                ack_delay_us: 0x0102_0304,
            },
            Acked {
                packet_number: 41,
                ack_delay_us: 5,
            },
            Acked {
                packet_number: 50,
                ack_delay_us: 6,
            },
        ];
        let Body::Data(data) = data_packet(payload).body else {
            unreachable!("data_packet builds DATA")
        };
        Packet {
            connection_id: 0x0102_0304_0506_0708,
            packet_number: 0x1112_1314_1516_1718,
            path_id: 5,
            body: Body::DataAck { acked, data },
        }
    }

    #[test]
    fn data_ack_offsets_match_the_doc() {
        let payload = [0xCD; 5];
        let packet = data_ack_packet(&payload);
        let bytes = packet.encode();
        assert_eq!(bytes[4], 3, "version");
        assert_eq!(bytes[5], 7, "kind DATA_ACK");
        assert_eq!(bytes[26..28], [0, 0], "flags");
        let block = 4 + 2 * 10 + 3 * 4;
        let body = &bytes[HEADER_LEN..bytes.len() - TRAILER_LEN];
        assert_eq!(body.len(), block + 20 + 5);
        assert_eq!(
            bytes[24..26],
            (body.len() as u16).to_le_bytes(),
            "body length"
        );
        assert_eq!(body[0..2], 2u16.to_le_bytes(), "range count");
        assert_eq!(body[2..4], 3u16.to_le_bytes(), "delay count");
        assert_eq!(body[4..12], 40u64.to_le_bytes(), "range 0 first");
        assert_eq!(body[12..14], 2u16.to_le_bytes(), "range 0 length");
        assert_eq!(body[14..22], 50u64.to_le_bytes(), "range 1 first");
        assert_eq!(body[22..24], 1u16.to_le_bytes(), "range 1 length");
        assert_eq!(body[24..28], 0x0102_0304u32.to_le_bytes(), "delay of 40");
        assert_eq!(body[28..32], 5u32.to_le_bytes(), "delay of 41");
        assert_eq!(body[32..36], 6u32.to_le_bytes(), "delay of 50");
        let d = &body[block..];
        assert_eq!(
            d[0..8],
            0x2122_2324_2526_2728u64.to_le_bytes(),
            "message id"
        );
        assert_eq!(d[8..12], 0x3132u32.to_le_bytes(), "message length");
        assert_eq!(d[12..16], 0x100u32.to_le_bytes(), "fragment offset");
        assert_eq!(d[16..18], 0x0102u16.to_le_bytes(), "fragment index");
        assert_eq!(d[18..20], 0x0203u16.to_le_bytes(), "fragment count");
        assert_eq!(d[20..25], payload, "payload");
        let Body::DataAck { acked, .. } = &packet.body else {
            unreachable!()
        };
        assert_eq!(ack_block_len(acked), block);
        assert_eq!(parse(&bytes), Ok(packet));
    }

    /// Malformed piggybacked ACK blocks: each gives the error its ACK-body twin gives, and a
    /// block that runs into (or past) the fragment is a length error, never a misread.
    #[test]
    fn data_ack_rejects_malformed_ranges() {
        let payload = [1u8; 3];
        let good = data_ack_packet(&payload).encode();
        let body = HEADER_LEN;
        let edit = |at: usize, bytes: &[u8]| {
            let mut b = good.clone();
            b[body + at..body + at + bytes.len()].copy_from_slice(bytes);
            reseal(&mut b);
            parse(&b).map(|p| p.packet_number)
        };
        assert!(matches!(
            edit(0, &0u16.to_le_bytes()),
            Err(PacketError::AckCount { ranges: 0, .. })
        ));
        assert!(matches!(
            edit(2, &0u16.to_le_bytes()),
            Err(PacketError::AckCount { delays: 0, .. })
        ));
        assert!(matches!(
            edit(2, &65u16.to_le_bytes()),
            Err(PacketError::AckCount { delays: 65, .. })
        ));
        // Range 1 starts inside range 0 (40..=41), or right after it (they would have merged).
        assert_eq!(
            edit(14, &41u64.to_le_bytes()),
            Err(PacketError::AckRangeInvalid { first: 41 })
        );
        assert_eq!(
            edit(14, &42u64.to_le_bytes()),
            Err(PacketError::AckRangeInvalid { first: 42 })
        );
        assert_eq!(
            edit(12, &0u16.to_le_bytes()),
            Err(PacketError::AckRangeInvalid { first: 40 })
        );
        let mut overflow = 1u16.to_le_bytes().to_vec();
        overflow.extend_from_slice(&u64::MAX.to_le_bytes());
        overflow.extend_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            edit(12, &overflow),
            Err(PacketError::AckRangeInvalid { first: u64::MAX })
        );
        // Ranges covering more packets than there are delays.
        assert!(matches!(
            edit(12, &3u16.to_le_bytes()),
            Err(PacketError::AckCount { .. })
        ));
        // Counts that claim a block longer than the body.
        assert!(matches!(
            edit(2, &60u16.to_le_bytes()),
            Err(PacketError::BodyLength {
                kind: "DATA_ACK",
                ..
            })
        ));
        // A block that leaves too little for the fragment's header.
        let mut b = good[..HEADER_LEN + 36 + 10].to_vec();
        b[24..26].copy_from_slice(&46u16.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        reseal(&mut b);
        assert_eq!(
            parse(&b),
            Err(PacketError::BodyLength {
                kind: "DATA_ACK",
                len: 10
            })
        );
        // The fragment behind the block is checked as any DATA is.
        assert!(matches!(
            edit(36 + 18, &0u16.to_le_bytes()),
            Err(PacketError::FragmentOutOfRange { .. })
        ));
        // Block and payload together may not exceed the largest DATA payload.
        let big = vec![0u8; PAYLOAD_LEN_MAX];
        let Body::DataAck { acked, data } = data_ack_packet(&big).body else {
            unreachable!()
        };
        let data = Data {
            message_len: PAYLOAD_LEN_MAX as u32,
            fragment_offset: 0,
            fragment_index: 0,
            fragment_count: 1,
            ..data
        };
        let bytes = Packet {
            connection_id: 1,
            packet_number: 1,
            path_id: 0,
            body: Body::DataAck { acked, data },
        }
        .encode();
        assert_eq!(
            parse(&bytes),
            Err(PacketError::PayloadTooLong {
                len: 36 + PAYLOAD_LEN_MAX,
                max: PAYLOAD_LEN_MAX
            })
        );
    }

    #[test]
    fn probe_bodies_must_have_their_exact_length() {
        let mut b = Packet {
            connection_id: 1,
            packet_number: 1,
            path_id: 0,
            body: Body::Probe,
        }
        .encode();
        b.truncate(HEADER_LEN);
        b.push(0);
        b[24..26].copy_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        reseal(&mut b);
        assert_eq!(
            parse(&b),
            Err(PacketError::BodyLength {
                kind: "PROBE",
                len: 1
            })
        );
        b[5] = 4;
        reseal(&mut b);
        assert_eq!(
            parse(&b),
            Err(PacketError::BodyLength {
                kind: "PROBE_ACK",
                len: 1
            })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        /// Arbitrary bodies behind a valid header and CRC reach the body parsers.
        #[test]
        fn arbitrary_sealed_bodies_never_panic(kind in 0u8..9, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut b = Packet { connection_id: 1, packet_number: 1, path_id: 0, body: Body::Probe }.encode();
            b.truncate(HEADER_LEN);
            b[5] = kind;
            b[24..26].copy_from_slice(&(body.len() as u16).to_le_bytes());
            b.extend_from_slice(&body);
            b.extend_from_slice(&[0; 4]);
            reseal(&mut b);
            let _ = parse(&b);
        }

        #[test]
        fn data_acks_round_trip(
            numbers in proptest::collection::btree_set(0u64..500, 1..ACK_PACKETS_MAX),
            payload in proptest::collection::vec(any::<u8>(), 1..100),
        ) {
            let acked: Vec<Acked> = numbers.into_iter()
                .map(|n| Acked { packet_number: n, ack_delay_us: (n * 3) as u32 }).collect();
            let data = Data {
                message_id: 4,
                message_len: payload.len() as u32,
                fragment_offset: 0,
                fragment_index: 0,
                fragment_count: 1,
                payload: &payload,
            };
            let packet = Packet { connection_id: 1, packet_number: 2, path_id: 3, body: Body::DataAck { acked, data } };
            let bytes = packet.encode();
            prop_assert_eq!(parse(&bytes), Ok(packet));
        }

        #[test]
        fn acks_round_trip(mut numbers in proptest::collection::btree_set(0u64..500, 1..ACK_PACKETS_MAX)) {
            let acked: Vec<Acked> = std::mem::take(&mut numbers).into_iter()
                .map(|n| Acked { packet_number: n, ack_delay_us: (n * 7) as u32 }).collect();
            let packet = Packet { connection_id: 1, packet_number: 2, path_id: 3, body: Body::Ack(acked) };
            let bytes = packet.encode();
            prop_assert_eq!(parse(&bytes), Ok(packet));
        }
    }
}
