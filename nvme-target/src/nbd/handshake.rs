//! The server side of the fixed newstyle handshake: greeting, client flags, then options until
//! one of them (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) selects an export for transmission.
//!
//! Options are untrusted input: each rule has its own reply (or, where the protocol allows no
//! reply, a closed connection and an error naming the rule).

use std::io::{ErrorKind, Read, Write};

use super::wire::*;
use super::{Export, NbdError};

/// How the handshake ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Transmission begins on `exports[index]`.
    Transmit { index: usize },
    /// The client sent NBD_OPT_ABORT (or went away between options).
    Closed,
}

/// Reads exactly `buf.len()` bytes; an end of stream is `Truncated(what)`.
pub(crate) fn read_all(
    r: &mut impl Read,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), NbdError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => NbdError::Truncated(what),
        _ => NbdError::Io(e),
    })
}

/// Reads as `read_all`, but an end of stream before the first byte is `Ok(false)` (the peer
/// closed between messages, which is not an error).
pub(crate) fn read_message(
    r: &mut impl Read,
    buf: &mut [u8],
    what: &'static str,
) -> Result<bool, NbdError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(NbdError::Truncated(what)),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(NbdError::Io(e)),
        }
    }
    Ok(true)
}

fn reply(w: &mut impl Write, option: u32, kind: u32, data: &[u8]) -> Result<(), NbdError> {
    debug_assert!(data.len() <= u32::MAX as usize);
    w.write_all(&OptionReplyHeader::new(option, kind, data.len() as u32).encode())?;
    w.write_all(data)?;
    Ok(())
}

/// An error reply with a message for humans (the spec allows UTF-8 text as its data).
fn refuse(w: &mut impl Write, option: u32, kind: u32, message: &str) -> Result<(), NbdError> {
    if kind == REP_ERR_UNSUP {
        // Clients probe for what they would like (libnbd asks for structured replies every
        // time): an ordinary part of haggling, not bad input.
        tracing::debug!(option, message, "NBD option not supported");
    } else {
        tracing::warn!(
            option,
            reply = kind & !REP_FLAG_ERROR,
            message,
            "NBD option refused"
        );
    }
    reply(w, option, kind, message.as_bytes())?;
    w.flush()?;
    Ok(())
}

/// The export a name selects; the empty name is the default export (the first one).
fn find(exports: &[Export], name: &[u8]) -> Option<usize> {
    if name.is_empty() {
        return (!exports.is_empty()).then_some(0);
    }
    exports.iter().position(|e| e.name.as_bytes() == name)
}

/// What an NBD_OPT_INFO or NBD_OPT_GO asks for: an export name and information types.
#[derive(Debug, PartialEq, Eq)]
struct InfoRequest<'a> {
    name: &'a [u8],
    infos: Vec<u16>,
}

/// Parses INFO/GO data: u32 name length, name, u16 count, count x u16. One error per rule.
fn parse_info_request(data: &[u8]) -> Result<InfoRequest<'_>, &'static str> {
    if data.len() < 6 {
        return Err("shorter than its name length and request count");
    }
    let name_len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if name_len > MAX_NAME_BYTES {
        return Err("export name longer than 4096 bytes");
    }
    if name_len > data.len() - 6 {
        return Err("export name runs past the option data");
    }
    let name = &data[4..4 + name_len];
    let rest = &data[4 + name_len..];
    let count = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let list = &rest[2..];
    if list.len() != count * 2 {
        return Err("information request count does not match the option length");
    }
    let infos = list
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Ok(InfoRequest { name, infos })
}

/// Sends the NBD_REP_INFO replies and the final ACK of an INFO or GO.
fn send_info(
    w: &mut impl Write,
    option: u32,
    export: &Export,
    infos: &[u16],
) -> Result<(), NbdError> {
    reply(
        w,
        option,
        REP_INFO,
        &encode_info_export(export.size_bytes(), export.transmission_flags()),
    )?;
    if infos.contains(&INFO_NAME) {
        let mut data = INFO_NAME.to_be_bytes().to_vec();
        data.extend_from_slice(export.name.as_bytes());
        reply(w, option, REP_INFO, &data)?;
    }
    if infos.contains(&INFO_DESCRIPTION) && !export.description.is_empty() {
        let mut data = INFO_DESCRIPTION.to_be_bytes().to_vec();
        data.extend_from_slice(export.description.as_bytes());
        reply(w, option, REP_INFO, &data)?;
    }
    // Always sent: clients that did not ask still learn the 512-byte minimum and 32 MiB maximum.
    reply(
        w,
        option,
        REP_INFO,
        &encode_info_block_size(MIN_BLOCK_BYTES, PREFERRED_BLOCK_BYTES, MAX_PAYLOAD_BYTES),
    )?;
    reply(w, option, REP_ACK, &[])?;
    w.flush()?;
    Ok(())
}

/// Runs the handshake on a fresh connection. `w` is flushed before every read.
pub fn negotiate(
    r: &mut impl Read,
    w: &mut impl Write,
    exports: &[Export],
) -> Result<Outcome, NbdError> {
    w.write_all(&encode_greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))?;
    w.flush()?;
    let mut flags = [0u8; 4];
    if !read_message(r, &mut flags, "client flags")? {
        return Ok(Outcome::Closed);
    }
    let client_flags = u32::from_be_bytes(flags);
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        // The spec: a server that sees unknown client flags must close.
        return Err(NbdError::ClientFlags(client_flags));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    let mut data = Vec::new();
    loop {
        let mut header = [0u8; OPTION_HEADER_BYTES];
        if !read_message(r, &mut header, "option header")? {
            return Ok(Outcome::Closed);
        }
        let h = OptionHeader::decode(&header);
        if h.magic != IHAVEOPT {
            return Err(NbdError::BadMagic {
                what: "option",
                found: h.magic,
                expected: IHAVEOPT,
            });
        }
        if h.length > MAX_OPTION_BYTES {
            // Its data cannot be skipped at a bounded cost: say so (where a reply is allowed)
            // and close.
            if h.option != OPT_EXPORT_NAME {
                refuse(w, h.option, REP_ERR_TOO_BIG, "option data too long")?;
            }
            return Err(NbdError::OptionTooLong {
                option: h.option,
                length: h.length,
                max: MAX_OPTION_BYTES,
            });
        }
        data.resize(h.length as usize, 0);
        read_all(r, &mut data, "option")?;
        match h.option {
            OPT_EXPORT_NAME => {
                let Some(index) = find(exports, &data) else {
                    // No error reply exists for this option: the spec says close.
                    return Err(NbdError::UnknownExport(
                        String::from_utf8_lossy(&data).into_owned(),
                    ));
                };
                let e = &exports[index];
                w.write_all(&encode_export_name_reply(
                    e.size_bytes(),
                    e.transmission_flags(),
                ))?;
                if !no_zeroes {
                    w.write_all(&[0u8; EXPORT_NAME_ZEROES])?;
                }
                w.flush()?;
                return Ok(Outcome::Transmit { index });
            }
            OPT_ABORT => {
                reply(w, h.option, REP_ACK, &[])?;
                w.flush()?;
                return Ok(Outcome::Closed);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    refuse(w, h.option, REP_ERR_INVALID, "NBD_OPT_LIST takes no data")?;
                    continue;
                }
                for e in exports {
                    let mut d = (e.name.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(e.name.as_bytes());
                    reply(w, h.option, REP_SERVER, &d)?;
                }
                reply(w, h.option, REP_ACK, &[])?;
                w.flush()?;
            }
            OPT_INFO | OPT_GO => {
                let request = match parse_info_request(&data) {
                    Ok(req) => req,
                    Err(rule) => {
                        refuse(w, h.option, REP_ERR_INVALID, rule)?;
                        continue;
                    }
                };
                let Some(index) = find(exports, request.name) else {
                    refuse(w, h.option, REP_ERR_UNKNOWN, "no such export")?;
                    continue;
                };
                send_info(w, h.option, &exports[index], &request.infos)?;
                if h.option == OPT_GO {
                    return Ok(Outcome::Transmit { index });
                }
            }
            OPT_STRUCTURED_REPLY => {
                refuse(w, h.option, REP_ERR_UNSUP, "simple replies only")?;
            }
            OPT_STARTTLS => refuse(w, h.option, REP_ERR_UNSUP, "no TLS")?,
            _ => refuse(w, h.option, REP_ERR_UNSUP, "unknown option")?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &[u8], infos: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name);
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    #[test]
    fn info_requests_parse_and_each_rule_is_refused() {
        let d = info(b"ferrite", &[INFO_NAME, INFO_BLOCK_SIZE]);
        assert_eq!(
            parse_info_request(&d).unwrap(),
            InfoRequest {
                name: b"ferrite",
                infos: vec![INFO_NAME, INFO_BLOCK_SIZE]
            }
        );
        assert_eq!(parse_info_request(&info(b"", &[])).unwrap().name, b"");
        assert!(parse_info_request(&d[..5]).is_err());
        let mut long = d.clone();
        long[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            parse_info_request(&long),
            Err("export name longer than 4096 bytes")
        );
        let mut past = d.clone();
        past[0..4].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(
            parse_info_request(&past),
            Err("export name runs past the option data")
        );
        let mut count = d.clone();
        count.push(0);
        assert!(parse_info_request(&count).is_err());
    }
}
