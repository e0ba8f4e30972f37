//! One client connection: the handshake, then transmission on the export it chose.

use std::io::{BufReader, BufWriter, Read, Write};

use super::handshake::{Outcome, negotiate};
use super::transmission::{Counts, Transmission};
use super::{Export, NbdError};

/// Read buffer: enough for a few dozen pipelined 4 KiB writes per read syscall.
const READ_BUFFER_BYTES: usize = 256 << 10;
/// Write buffer: replies of pipelined 4 KiB reads gather here until the input runs dry.
const WRITE_BUFFER_BYTES: usize = 256 << 10;

/// How a connection ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client left during the handshake (NBD_OPT_ABORT or end of stream).
    InHandshake,
    /// Transmission on `export` ended by NBD_CMD_DISC or end of stream.
    Transmission { export: String, counts: Counts },
}

/// Serves one connection from its first byte to its end. Never panics on any input: every
/// protocol violation that cannot be answered is an `Err` naming it.
pub fn serve<R: Read, W: Write>(
    reader: R,
    writer: W,
    exports: &[Export],
) -> Result<Ended, NbdError> {
    serve_with(reader, writer, exports, || Ok(()))
}

/// As `serve`, calling `on_transmission` once the handshake has chosen an export (the server
/// lifts the handshake's read timeout there: transmission may idle as long as the client likes).
pub fn serve_with<R: Read, W: Write>(
    reader: R,
    writer: W,
    exports: &[Export],
    on_transmission: impl FnOnce() -> std::io::Result<()>,
) -> Result<Ended, NbdError> {
    let mut r = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let mut w = BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    let index = match negotiate(&mut r, &mut w, exports)? {
        Outcome::Closed => return Ok(Ended::InHandshake),
        Outcome::Transmit { index } => index,
    };
    on_transmission()?;
    let export = &exports[index];
    let mut t = Transmission::new(export);
    let result = t.run(&mut r, &mut w);
    // Replies already produced go out even when the connection ends in an error.
    let flushed = w.flush();
    result?;
    flushed?;
    Ok(Ended::Transmission {
        export: export.name.clone(),
        counts: t.counts,
    })
}
