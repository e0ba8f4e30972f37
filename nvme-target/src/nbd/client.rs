//! A synchronous NBD client: fixed newstyle handshake with NBD_OPT_GO, simple replies, one
//! request in flight. Used by `ferrite fio`'s nbd engine and by tests, against Ferrite's own
//! server and against qemu-nbd / qemu-storage-daemon.
//!
//! Requests longer than the server's maximum block size are split; each error names the command,
//! the offset and the server's errno.

use std::io::{BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::NbdError;
use super::handshake::read_all;
use super::stream::Stream;
use super::uri::NbdAddress;
use super::wire::*;

/// Longest reply data of an option the client accepts (names, descriptions, messages).
const MAX_OPTION_REPLY_BYTES: u32 = 64 << 10;

#[derive(Debug)]
pub struct NbdClient {
    r: BufReader<Stream>,
    w: BufWriter<Stream>,
    export: String,
    size_bytes: u64,
    flags: u16,
    min_block_bytes: u32,
    max_payload_bytes: u32,
    next_handle: u64,
}

impl NbdClient {
    pub fn connect(address: &NbdAddress, export: &str) -> Result<Self, NbdError> {
        match address {
            NbdAddress::Unix(p) => Self::connect_unix(p, export),
            NbdAddress::Tcp(a) => Self::connect_tcp(a, export),
        }
    }

    pub fn connect_unix(path: &Path, export: &str) -> Result<Self, NbdError> {
        let s = UnixStream::connect(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("connecting to {}: {e}", path.display()))
        })?;
        Self::handshake(Stream::Unix(s), export)
    }

    pub fn connect_tcp(address: &str, export: &str) -> Result<Self, NbdError> {
        let s = TcpStream::connect(address)
            .map_err(|e| std::io::Error::new(e.kind(), format!("connecting to {address}: {e}")))?;
        s.set_nodelay(true)?;
        Self::handshake(Stream::Tcp(s), export)
    }

    fn handshake(stream: Stream, export: &str) -> Result<Self, NbdError> {
        if export.len() > MAX_NAME_BYTES {
            return Err(NbdError::Protocol(format!(
                "export name is longer than {MAX_NAME_BYTES} bytes"
            )));
        }
        let mut r = BufReader::new(stream.try_clone()?);
        let mut w = BufWriter::new(stream);
        let mut greeting = [0u8; GREETING_BYTES];
        read_all(&mut r, &mut greeting, "greeting")?;
        let (magic, opt_magic, flags) = decode_greeting(&greeting);
        if magic != NBD_MAGIC {
            return Err(NbdError::BadMagic {
                what: "greeting",
                found: magic,
                expected: NBD_MAGIC,
            });
        }
        if opt_magic != IHAVEOPT {
            return Err(NbdError::Protocol(
                "the server speaks oldstyle NBD; only newstyle is supported".into(),
            ));
        }
        if flags & FLAG_FIXED_NEWSTYLE == 0 {
            return Err(NbdError::Protocol(
                "the server does not offer fixed newstyle negotiation".into(),
            ));
        }
        let mut client_flags = FLAG_C_FIXED_NEWSTYLE;
        if flags & FLAG_NO_ZEROES != 0 {
            client_flags |= FLAG_C_NO_ZEROES;
        }
        w.write_all(&client_flags.to_be_bytes())?;
        let mut data = (export.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(export.as_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        w.write_all(
            &OptionHeader {
                magic: IHAVEOPT,
                option: OPT_GO,
                length: data.len() as u32,
            }
            .encode(),
        )?;
        w.write_all(&data)?;
        w.flush()?;
        let mut client = Self {
            r,
            w,
            export: export.to_owned(),
            size_bytes: 0,
            flags: 0,
            min_block_bytes: 1,
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            next_handle: 1,
        };
        client.go_replies()?;
        Ok(client)
    }

    /// Reads NBD_OPT_GO's replies up to its ACK.
    fn go_replies(&mut self) -> Result<(), NbdError> {
        let mut have_export = false;
        loop {
            let mut h = [0u8; OPTION_REPLY_HEADER_BYTES];
            read_all(&mut self.r, &mut h, "option reply")?;
            let h = OptionReplyHeader::decode(&h);
            if h.magic != OPTION_REPLY_MAGIC {
                return Err(NbdError::BadMagic {
                    what: "option reply",
                    found: h.magic,
                    expected: OPTION_REPLY_MAGIC,
                });
            }
            if h.option != OPT_GO {
                return Err(NbdError::Protocol(format!(
                    "reply to option {} while NBD_OPT_GO was asked",
                    h.option
                )));
            }
            if h.length > MAX_OPTION_REPLY_BYTES {
                return Err(NbdError::Protocol(format!(
                    "option reply of {} bytes",
                    h.length
                )));
            }
            let mut data = vec![0u8; h.length as usize];
            read_all(&mut self.r, &mut data, "option reply data")?;
            match h.reply {
                REP_ACK if have_export => return Ok(()),
                REP_ACK => {
                    return Err(NbdError::Protocol(
                        "NBD_OPT_GO acknowledged without NBD_INFO_EXPORT".into(),
                    ));
                }
                REP_INFO => self.info(&data, &mut have_export)?,
                e if e & REP_FLAG_ERROR != 0 => {
                    let why = match e {
                        REP_ERR_UNKNOWN => "no such export".to_owned(),
                        REP_ERR_UNSUP => "NBD_OPT_GO unsupported".to_owned(),
                        REP_ERR_POLICY => "forbidden by policy".to_owned(),
                        REP_ERR_INVALID => "invalid request".to_owned(),
                        other => format!("error {:#x}", other),
                    };
                    let message = String::from_utf8_lossy(&data);
                    return Err(NbdError::Refused {
                        what: format!("export {:?}", self.export),
                        detail: if message.is_empty() {
                            why
                        } else {
                            format!("{why}: {message}")
                        },
                    });
                }
                other => {
                    return Err(NbdError::Protocol(format!(
                        "unexpected reply type {other} to NBD_OPT_GO"
                    )));
                }
            }
        }
    }

    fn info(&mut self, data: &[u8], have_export: &mut bool) -> Result<(), NbdError> {
        if data.len() < 2 {
            return Err(NbdError::Protocol("NBD_REP_INFO without a type".into()));
        }
        let be32 =
            |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        match u16::from_be_bytes([data[0], data[1]]) {
            INFO_EXPORT => {
                if data.len() != 12 {
                    return Err(NbdError::Protocol("NBD_INFO_EXPORT is not 12 bytes".into()));
                }
                let mut size = [0u8; 8];
                size.copy_from_slice(&data[2..10]);
                self.size_bytes = u64::from_be_bytes(size);
                self.flags = u16::from_be_bytes([data[10], data[11]]);
                *have_export = true;
            }
            INFO_BLOCK_SIZE => {
                if data.len() != 14 {
                    return Err(NbdError::Protocol(
                        "NBD_INFO_BLOCK_SIZE is not 14 bytes".into(),
                    ));
                }
                let (min, max) = (be32(2), be32(10));
                if min == 0 || !min.is_power_of_two() || max < min {
                    return Err(NbdError::Protocol(format!(
                        "block sizes min {min} max {max} make no sense"
                    )));
                }
                self.min_block_bytes = min;
                // Never more than what this client will buffer for one request.
                self.max_payload_bytes = max.min(MAX_PAYLOAD_BYTES) / min * min;
            }
            // Names, descriptions and types this client does not use.
            _ => {}
        }
        Ok(())
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn transmission_flags(&self) -> u16 {
        self.flags
    }

    pub fn read_only(&self) -> bool {
        self.flags & TFLAG_READ_ONLY != 0
    }

    pub fn can_multi_conn(&self) -> bool {
        self.flags & TFLAG_CAN_MULTI_CONN != 0
    }

    /// The server's minimum block size (1 if it sent none).
    pub fn min_block_bytes(&self) -> u32 {
        self.min_block_bytes
    }

    /// Largest payload of one request; longer reads and writes are split.
    pub fn max_payload_bytes(&self) -> u32 {
        self.max_payload_bytes
    }

    fn send(&mut self, kind: u16, flags: u16, offset: u64, length: u32) -> Result<u64, NbdError> {
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1);
        let req = Request {
            magic: REQUEST_MAGIC,
            flags,
            kind,
            handle,
            offset,
            length,
        };
        self.w.write_all(&req.encode())?;
        Ok(handle)
    }

    fn receive(&mut self, command: &'static str, offset: u64, handle: u64) -> Result<(), NbdError> {
        let mut b = [0u8; SIMPLE_REPLY_BYTES];
        read_all(&mut self.r, &mut b, "reply")?;
        let reply = SimpleReply::decode(&b);
        if reply.magic != SIMPLE_REPLY_MAGIC {
            return Err(NbdError::BadMagic {
                what: "reply",
                found: u64::from(reply.magic),
                expected: u64::from(SIMPLE_REPLY_MAGIC),
            });
        }
        if reply.handle != handle {
            return Err(NbdError::Protocol(format!(
                "reply for handle {} while waiting for {handle}",
                reply.handle
            )));
        }
        if reply.error != 0 {
            return Err(NbdError::Server {
                command,
                offset,
                error: reply.error,
            });
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes from `offset`.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdError> {
        let max = self.max_payload_bytes as usize;
        for (i, chunk) in buf.chunks_mut(max).enumerate() {
            let at = offset + (i * max) as u64;
            let handle = self.send(CMD_READ, 0, at, chunk.len() as u32)?;
            self.w.flush()?;
            self.receive("read", at, handle)?;
            read_all(&mut self.r, chunk, "read data")?;
        }
        Ok(())
    }

    /// Writes `data` at `offset`; with `fua` it is durable when this returns.
    pub fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<(), NbdError> {
        let max = self.max_payload_bytes as usize;
        let flags = if fua { CMD_FLAG_FUA } else { 0 };
        for (i, chunk) in data.chunks(max).enumerate() {
            let at = offset + (i * max) as u64;
            let handle = self.send(CMD_WRITE, flags, at, chunk.len() as u32)?;
            self.w.write_all(chunk)?;
            self.w.flush()?;
            self.receive("write", at, handle)?;
        }
        Ok(())
    }

    /// Makes every completed write durable (on every connection of a multi-conn export).
    pub fn flush(&mut self) -> Result<(), NbdError> {
        let handle = self.send(CMD_FLUSH, 0, 0, 0)?;
        self.w.flush()?;
        self.receive("flush", 0, handle)
    }

    /// Ranged commands without payload, split at u32 lengths (in whole minimum blocks).
    fn ranged(
        &mut self,
        kind: u16,
        flags: u16,
        name: &'static str,
        offset: u64,
        len: u64,
    ) -> Result<(), NbdError> {
        let step = u64::from(u32::MAX / self.min_block_bytes * self.min_block_bytes);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(step);
            let handle = self.send(kind, flags, offset + done, n as u32)?;
            self.w.flush()?;
            self.receive(name, offset + done, handle)?;
            done += n;
        }
        Ok(())
    }

    /// Discards `len` bytes from `offset` (they may read as zeroes afterwards).
    pub fn trim(&mut self, offset: u64, len: u64) -> Result<(), NbdError> {
        self.ranged(CMD_TRIM, 0, "trim", offset, len)
    }

    /// Sets `len` bytes from `offset` to zeroes.
    pub fn write_zeroes(&mut self, offset: u64, len: u64, no_hole: bool) -> Result<(), NbdError> {
        let flags = if no_hole { CMD_FLAG_NO_HOLE } else { 0 };
        self.ranged(CMD_WRITE_ZEROES, flags, "write-zeroes", offset, len)
    }

    /// Sends NBD_CMD_DISC and closes.
    pub fn disconnect(mut self) -> Result<(), NbdError> {
        self.send(CMD_DISC, 0, 0, 0)?;
        self.w.flush()?;
        Ok(())
    }
}
