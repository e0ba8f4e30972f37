//! The transmission phase of one connection: requests in, simple replies out, in order, on the
//! connection's own `IoQueue`.
//!
//! Replies are buffered and the buffer is flushed only when no further request is already
//! waiting in the read buffer, so a client that pipelines (libnbd keeps iodepth requests in
//! flight) gets many replies per write syscall. The data buffer is per connection and reused;
//! nothing is allocated per request once it has grown to the largest request seen.

use std::io::{BufReader, Read, Write};

use super::handshake::{read_all, read_message};
use super::wire::*;
use super::{Export, NbdError};
use crate::queue::{Command, IoQueue, MAX_TRANSFER_BYTES, SECTOR_BYTES};
use crate::status::Status;

/// Flags each command accepts; any other bit is EINVAL.
const READ_FLAGS: u16 = CMD_FLAG_FUA;
const WRITE_FLAGS: u16 = CMD_FLAG_FUA;
const FLUSH_FLAGS: u16 = CMD_FLAG_FUA;
const TRIM_FLAGS: u16 = CMD_FLAG_FUA;
const WRITE_ZEROES_FLAGS: u16 = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE;

/// Counts of one connection's requests, for its closing log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub completed: u64,
    pub failed: u64,
}

/// The NBD error for a command's status. Writes past the end are ENOSPC, as the spec asks.
pub fn errno(status: Status, writes: bool) -> u32 {
    match status {
        Status::Success => 0,
        Status::InvalidField => EINVAL,
        Status::LbaOutOfRange if writes => ENOSPC,
        Status::LbaOutOfRange => EINVAL,
        Status::WriteProtected => EPERM,
        Status::InvalidOpcode => ENOTSUP,
        Status::InternalError | Status::WriteFault | Status::UnrecoveredReadError => EIO,
    }
}

fn command_name(kind: u16) -> &'static str {
    match kind {
        CMD_READ => "read",
        CMD_WRITE => "write",
        CMD_DISC => "disconnect",
        CMD_FLUSH => "flush",
        CMD_TRIM => "trim",
        CMD_WRITE_ZEROES => "write-zeroes",
        _ => "unknown command",
    }
}

/// One connection's transmission state.
#[derive(Debug)]
pub struct Transmission<'a> {
    export: &'a Export,
    queue: IoQueue,
    /// Payload of the current read or write; grows to the largest request and stays.
    data: Vec<u8>,
    pub counts: Counts,
}

impl<'a> Transmission<'a> {
    pub fn new(export: &'a Export) -> Self {
        Self {
            export,
            queue: export.namespace.new_queue(),
            data: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// Serves requests until the client disconnects (NBD_CMD_DISC or end of stream). An error
    /// is a request the connection cannot continue after (bad magic, a truncated request, an
    /// oversized write payload); the caller logs it and closes.
    pub fn run<R: Read>(
        &mut self,
        r: &mut BufReader<R>,
        w: &mut impl Write,
    ) -> Result<(), NbdError> {
        loop {
            if r.buffer().is_empty() {
                w.flush()?;
            }
            let mut header = [0u8; REQUEST_BYTES];
            if !read_message(r, &mut header, "request header")? {
                return Ok(());
            }
            let req = Request::decode(&header);
            if req.magic != REQUEST_MAGIC {
                w.flush()?;
                return Err(NbdError::BadMagic {
                    what: "request",
                    found: u64::from(req.magic),
                    expected: u64::from(REQUEST_MAGIC),
                });
            }
            if req.kind == CMD_DISC {
                w.flush()?;
                return Ok(());
            }
            self.request(r, w, &req)?;
        }
    }

    fn reply(&mut self, w: &mut impl Write, req: &Request, error: u32) -> Result<(), NbdError> {
        if error == 0 {
            self.counts.completed += 1;
        } else {
            self.counts.failed += 1;
            tracing::warn!(
                command = command_name(req.kind),
                kind = req.kind,
                flags = req.flags,
                offset = req.offset,
                length = req.length,
                error = error_name(error),
                "NBD request failed"
            );
        }
        w.write_all(&SimpleReply::new(error, req.handle).encode())?;
        Ok(())
    }

    fn request<R: Read>(
        &mut self,
        r: &mut BufReader<R>,
        w: &mut impl Write,
        req: &Request,
    ) -> Result<(), NbdError> {
        match req.kind {
            CMD_READ => {
                let error = self.read(req);
                self.reply(w, req, error)?;
                if error == 0 {
                    w.write_all(&self.data[..req.length as usize])?;
                }
                Ok(())
            }
            CMD_WRITE => {
                if req.length > MAX_PAYLOAD_BYTES {
                    // The payload cannot be skipped at a bounded cost: refuse, then close.
                    self.reply(w, req, EOVERFLOW)?;
                    w.flush()?;
                    return Err(NbdError::PayloadTooLarge {
                        command: "write",
                        length: u64::from(req.length),
                        max: MAX_PAYLOAD_BYTES,
                    });
                }
                let len = req.length as usize;
                if self.data.len() < len {
                    self.data.resize(len, 0);
                }
                read_all(r, &mut self.data[..len], "write payload")?;
                let error = self.write(req);
                self.reply(w, req, error)
            }
            CMD_FLUSH => {
                let error = if req.flags & !FLUSH_FLAGS != 0 {
                    EINVAL
                } else if req.offset != 0 || req.length != 0 {
                    // The spec: a flush's offset and length must be zero.
                    EINVAL
                } else {
                    errno(self.queue.execute(Command::Flush), false)
                };
                self.reply(w, req, error)
            }
            CMD_TRIM | CMD_WRITE_ZEROES => {
                let error = self.zero(req);
                self.reply(w, req, error)
            }
            _ => self.reply(w, req, ENOTSUP),
        }
    }

    /// The checks every addressed command shares: flags, read-only, alignment, range. Returns
    /// the first sector. `modifies`: EPERM on a read-only export (write, trim, write-zeroes).
    /// `writes`: past the end is ENOSPC, as the spec asks of writes; for other commands EINVAL.
    fn check(
        &self,
        req: &Request,
        allowed_flags: u16,
        modifies: bool,
        writes: bool,
    ) -> Result<u64, u32> {
        if req.flags & !allowed_flags != 0 {
            return Err(EINVAL);
        }
        if modifies && self.export.namespace.identity().read_only {
            return Err(EPERM);
        }
        let len = u64::from(req.length);
        if !req.offset.is_multiple_of(SECTOR_BYTES) || !len.is_multiple_of(SECTOR_BYTES) {
            return Err(EINVAL);
        }
        let end = req.offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.export.size_bytes() {
            return Err(if writes { ENOSPC } else { EINVAL });
        }
        Ok(req.offset / SECTOR_BYTES)
    }

    fn read(&mut self, req: &Request) -> u32 {
        if req.length > MAX_PAYLOAD_BYTES {
            return EOVERFLOW;
        }
        let sector = match self.check(req, READ_FLAGS, false, false) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let len = req.length as usize;
        if self.data.len() < len {
            self.data.resize(len, 0);
        }
        // IoQueue takes at most MAX_TRANSFER_BYTES per command.
        for (i, chunk) in self.data[..len].chunks_mut(MAX_TRANSFER_BYTES).enumerate() {
            let at = sector + (i * MAX_TRANSFER_BYTES) as u64 / SECTOR_BYTES;
            let status = self.queue.execute(Command::Read {
                sector: at,
                buf: chunk,
            });
            if !status.is_success() {
                return errno(status, false);
            }
        }
        0
    }

    fn write(&mut self, req: &Request) -> u32 {
        let sector = match self.check(req, WRITE_FLAGS, true, true) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let fua = req.flags & CMD_FLAG_FUA != 0;
        let len = req.length as usize;
        let single = len <= MAX_TRANSFER_BYTES;
        for (i, chunk) in self.data[..len].chunks(MAX_TRANSFER_BYTES).enumerate() {
            let at = sector + (i * MAX_TRANSFER_BYTES) as u64 / SECTOR_BYTES;
            let status = self.queue.execute(Command::Write {
                sector: at,
                data: chunk,
                // One command carries FUA itself; a split write is made durable by one flush.
                fua: fua && single,
            });
            if !status.is_success() {
                return errno(status, true);
            }
        }
        if fua && !single {
            return errno(self.queue.execute(Command::Flush), true);
        }
        0
    }

    /// TRIM and WRITE_ZEROES: no payload, any length within the export.
    fn zero(&mut self, req: &Request) -> u32 {
        let (allowed, zeroes) = if req.kind == CMD_TRIM {
            (TRIM_FLAGS, false)
        } else {
            (WRITE_ZEROES_FLAGS, true)
        };
        let sector = match self.check(req, allowed, true, zeroes) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let sectors = u64::from(req.length) / SECTOR_BYTES;
        let status = if zeroes {
            // NO_HOLE asks for allocated zeroes; the FTL's zeroes read back the same either way.
            self.queue.execute(Command::WriteZeroes { sector, sectors })
        } else {
            self.queue.execute(Command::Deallocate { sector, sectors })
        };
        if !status.is_success() {
            return errno(status, zeroes);
        }
        if req.flags & CMD_FLAG_FUA != 0 {
            return errno(self.queue.execute(Command::Flush), true);
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_errors_the_spec_names() {
        assert_eq!(errno(Status::Success, true), 0);
        assert_eq!(errno(Status::LbaOutOfRange, true), ENOSPC);
        assert_eq!(errno(Status::LbaOutOfRange, false), EINVAL);
        assert_eq!(errno(Status::WriteProtected, true), EPERM);
        assert_eq!(errno(Status::UnrecoveredReadError, false), EIO);
        assert_eq!(errno(Status::WriteFault, true), EIO);
        assert_eq!(errno(Status::InvalidOpcode, false), ENOTSUP);
        assert_eq!(errno(Status::InvalidField, false), EINVAL);
    }
}
