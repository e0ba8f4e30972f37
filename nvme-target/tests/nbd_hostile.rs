#![allow(clippy::unwrap_used)]
//! A hostile NBD client: hand-made handshakes and requests over a UnixStream pair, one test per
//! rule. Each gets its NBD error (and the connection keeps serving) or, where the protocol
//! leaves no way to continue, a closed connection and an error naming the rule. Never a panic.

mod common_ftl;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;

use nvme_target::ActiveNamespace;
use nvme_target::nbd::connection::{self, Ended};
use nvme_target::nbd::wire::*;
use nvme_target::nbd::{Export, NbdError};

fn exports(ns: Arc<ActiveNamespace>) -> Vec<Export> {
    vec![Export {
        name: "ferrite".into(),
        description: "test export".into(),
        namespace: ns,
    }]
}

/// A server connection on one end of a socket pair; the test holds the other end.
fn start(read_only: bool) -> (UnixStream, JoinHandle<Result<Ended, NbdError>>, u64) {
    let ns = common_ftl::namespace(read_only);
    let size = ns.capacity_bytes();
    let (client, server) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let w = server.try_clone().unwrap();
        connection::serve(server, w, &exports(ns))
    });
    (client, t, size)
}

fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).unwrap();
    b
}

fn option(s: &mut UnixStream, option: u32, data: &[u8]) {
    let h = OptionHeader {
        magic: IHAVEOPT,
        option,
        length: data.len() as u32,
    };
    s.write_all(&h.encode()).unwrap();
    s.write_all(data).unwrap();
}

fn option_reply(s: &mut UnixStream) -> (OptionReplyHeader, Vec<u8>) {
    let h: [u8; OPTION_REPLY_HEADER_BYTES] =
        read_n(s, OPTION_REPLY_HEADER_BYTES).try_into().unwrap();
    let h = OptionReplyHeader::decode(&h);
    assert_eq!(h.magic, OPTION_REPLY_MAGIC);
    let data = read_n(s, h.length as usize);
    (h, data)
}

fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

fn greet(s: &mut UnixStream) {
    let g: [u8; GREETING_BYTES] = read_n(s, GREETING_BYTES).try_into().unwrap();
    assert_eq!(
        decode_greeting(&g),
        (NBD_MAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)
    );
    s.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();
}

/// Greeting and NBD_OPT_GO on "ferrite": returns (size, transmission flags).
fn go(s: &mut UnixStream) -> (u64, u16) {
    greet(s);
    option(
        s,
        OPT_GO,
        &go_data("ferrite", &[INFO_NAME, INFO_DESCRIPTION]),
    );
    let mut export = None;
    let mut seen = Vec::new();
    loop {
        let (h, d) = option_reply(s);
        assert_eq!(h.option, OPT_GO);
        if h.reply == REP_ACK {
            break;
        }
        assert_eq!(h.reply, REP_INFO);
        let kind = u16::from_be_bytes([d[0], d[1]]);
        seen.push(kind);
        match kind {
            INFO_EXPORT => {
                export = Some((
                    u64::from_be_bytes(d[2..10].try_into().unwrap()),
                    u16::from_be_bytes([d[10], d[11]]),
                ))
            }
            INFO_NAME => assert_eq!(&d[2..], b"ferrite"),
            INFO_DESCRIPTION => assert_eq!(&d[2..], b"test export"),
            INFO_BLOCK_SIZE => assert_eq!(d, encode_info_block_size(512, 4096, 32 << 20)),
            other => panic!("unexpected info {other}"),
        }
    }
    assert_eq!(
        seen.len(),
        4,
        "export, name, description, block size: {seen:?}"
    );
    export.unwrap()
}

fn request(s: &mut UnixStream, kind: u16, flags: u16, handle: u64, offset: u64, length: u32) {
    let r = Request {
        magic: REQUEST_MAGIC,
        flags,
        kind,
        handle,
        offset,
        length,
    };
    s.write_all(&r.encode()).unwrap();
}

fn reply(s: &mut UnixStream, handle: u64) -> u32 {
    let b: [u8; SIMPLE_REPLY_BYTES] = read_n(s, SIMPLE_REPLY_BYTES).try_into().unwrap();
    let r = SimpleReply::decode(&b);
    assert_eq!(r.magic, SIMPLE_REPLY_MAGIC);
    assert_eq!(r.handle, handle);
    r.error
}

/// A write then a read of the same 4 KiB: the connection still serves correctly.
fn still_serves(s: &mut UnixStream, handle: u64) {
    let data = vec![0x5a; 4096];
    request(s, CMD_WRITE, 0, handle, 8192, 4096);
    s.write_all(&data).unwrap();
    assert_eq!(reply(s, handle), 0);
    request(s, CMD_READ, 0, handle + 1, 8192, 4096);
    assert_eq!(reply(s, handle + 1), 0);
    assert_eq!(read_n(s, 4096), data);
}

fn disconnect(mut s: UnixStream, t: JoinHandle<Result<Ended, NbdError>>) -> Ended {
    request(&mut s, CMD_DISC, 0, 0, 0, 0);
    t.join().unwrap().unwrap()
}

/// The server closed: the client reads end of stream.
fn closed(s: &mut UnixStream) {
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap(), 0);
}

#[test]
fn a_well_behaved_session_reads_writes_flushes_trims_and_zeroes() {
    let (mut s, t, size) = start(false);
    let (export_size, flags) = go(&mut s);
    assert_eq!(export_size, size);
    let want = TFLAG_HAS_FLAGS
        | TFLAG_SEND_FLUSH
        | TFLAG_SEND_FUA
        | TFLAG_SEND_TRIM
        | TFLAG_SEND_WRITE_ZEROES
        | TFLAG_CAN_MULTI_CONN;
    assert_eq!(flags, want);
    // A 3 MiB write with FUA crosses IoQueue's 1 MiB limit and an unaligned 512-byte start.
    let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    request(&mut s, CMD_WRITE, CMD_FLAG_FUA, 1, 512, data.len() as u32);
    s.write_all(&data).unwrap();
    assert_eq!(reply(&mut s, 1), 0);
    request(&mut s, CMD_READ, 0, 2, 512, data.len() as u32);
    assert_eq!(reply(&mut s, 2), 0);
    assert_eq!(read_n(&mut s, data.len()), data);
    request(&mut s, CMD_FLUSH, 0, 3, 0, 0);
    assert_eq!(reply(&mut s, 3), 0);
    request(&mut s, CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 4, 4096, 8192);
    assert_eq!(reply(&mut s, 4), 0);
    request(&mut s, CMD_TRIM, CMD_FLAG_FUA, 5, 1 << 20, 1 << 20);
    assert_eq!(reply(&mut s, 5), 0);
    request(&mut s, CMD_READ, 0, 6, 0, 3 << 20);
    assert_eq!(reply(&mut s, 6), 0);
    let back = read_n(&mut s, 3 << 20);
    assert_eq!(&back[512..4096], &data[..4096 - 512]);
    assert!(back[4096..12288].iter().all(|&b| b == 0), "write-zeroes");
    assert!(back[1 << 20..2 << 20].iter().all(|&b| b == 0), "trim");
    assert_eq!(&back[2 << 20..], &data[(2 << 20) - 512..(3 << 20) - 512]);
    // The last sector of the export, exactly.
    request(&mut s, CMD_WRITE, 0, 7, size - 512, 512);
    s.write_all(&[7u8; 512]).unwrap();
    assert_eq!(reply(&mut s, 7), 0);
    // Pipelined: several requests sent before any reply is read; replies come back in order.
    for h in 10..20u64 {
        request(&mut s, CMD_READ, 0, h, size - 512, 512);
    }
    for h in 10..20u64 {
        assert_eq!(reply(&mut s, h), 0);
        assert_eq!(read_n(&mut s, 512), vec![7u8; 512]);
    }
    match disconnect(s, t) {
        Ended::Transmission { export, counts } => {
            assert_eq!(export, "ferrite");
            assert_eq!(counts.completed, 17);
            assert_eq!(counts.failed, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_request_magic_closes_the_connection() {
    let (mut s, t, _) = start(false);
    go(&mut s);
    let mut r = Request {
        magic: 0x1234_5678,
        flags: 0,
        kind: CMD_READ,
        handle: 1,
        offset: 0,
        length: 4096,
    }
    .encode();
    r[0] = 0x12;
    s.write_all(&r).unwrap();
    closed(&mut s);
    let e = t.join().unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            NbdError::BadMagic {
                what: "request",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn an_oversized_read_is_eoverflow_and_the_connection_goes_on() {
    let (mut s, t, _) = start(false);
    go(&mut s);
    request(&mut s, CMD_READ, 0, 1, 0, MAX_PAYLOAD_BYTES + 512);
    assert_eq!(reply(&mut s, 1), EOVERFLOW);
    still_serves(&mut s, 2);
    disconnect(s, t);
}

#[test]
fn an_oversized_write_is_refused_and_the_connection_closed() {
    let (mut s, t, _) = start(false);
    go(&mut s);
    request(&mut s, CMD_WRITE, 0, 1, 0, u32::MAX);
    assert_eq!(reply(&mut s, 1), EOVERFLOW);
    closed(&mut s);
    let e = t.join().unwrap().unwrap_err();
    assert!(matches!(e, NbdError::PayloadTooLarge { .. }), "{e}");
}

#[test]
fn out_of_range_and_misaligned_requests_get_their_errors() {
    let (mut s, t, size) = start(false);
    go(&mut s);
    request(&mut s, CMD_READ, 0, 1, size, 512);
    assert_eq!(reply(&mut s, 1), EINVAL);
    request(&mut s, CMD_WRITE, 0, 2, size - 512, 1024);
    s.write_all(&[1u8; 1024]).unwrap();
    assert_eq!(reply(&mut s, 2), ENOSPC);
    request(&mut s, CMD_READ, 0, 3, u64::MAX - 511, 1024);
    assert_eq!(reply(&mut s, 3), EINVAL, "offset + length overflows");
    request(&mut s, CMD_TRIM, 0, 4, size - 4096, 8192);
    assert_eq!(reply(&mut s, 4), EINVAL);
    request(&mut s, CMD_WRITE_ZEROES, 0, 5, size, 4096);
    assert_eq!(reply(&mut s, 5), ENOSPC);
    request(&mut s, CMD_READ, 0, 6, 1, 512);
    assert_eq!(reply(&mut s, 6), EINVAL, "misaligned offset");
    request(&mut s, CMD_WRITE, 0, 7, 0, 100);
    s.write_all(&[1u8; 100]).unwrap();
    assert_eq!(reply(&mut s, 7), EINVAL, "misaligned length");
    request(&mut s, CMD_FLUSH, 0, 8, 4096, 0);
    assert_eq!(reply(&mut s, 8), EINVAL, "flush with an offset");
    still_serves(&mut s, 9);
    disconnect(s, t);
}

#[test]
fn an_unknown_command_is_enotsup() {
    let (mut s, t, _) = start(false);
    go(&mut s);
    for (h, kind) in [(1, 5u16), (2, 7), (3, 0x7777)] {
        request(&mut s, kind, 0, h, 0, 4096);
        assert_eq!(reply(&mut s, h), ENOTSUP);
    }
    still_serves(&mut s, 4);
    disconnect(s, t);
}

#[test]
fn an_unknown_flag_is_einval_and_a_write_payload_is_skipped() {
    let (mut s, t, _) = start(false);
    go(&mut s);
    request(&mut s, CMD_READ, 1 << 7, 1, 0, 4096);
    assert_eq!(reply(&mut s, 1), EINVAL);
    request(&mut s, CMD_WRITE, CMD_FLAG_NO_HOLE, 2, 0, 4096);
    s.write_all(&[0xee; 4096]).unwrap();
    assert_eq!(reply(&mut s, 2), EINVAL);
    request(&mut s, CMD_TRIM, CMD_FLAG_NO_HOLE, 3, 0, 4096);
    assert_eq!(reply(&mut s, 3), EINVAL);
    request(&mut s, CMD_WRITE_ZEROES, 1 << 4, 4, 0, 4096);
    assert_eq!(reply(&mut s, 4), EINVAL, "FAST_ZERO is not offered");
    // The refused write's data was not stored.
    request(&mut s, CMD_READ, 0, 5, 0, 4096);
    assert_eq!(reply(&mut s, 5), 0);
    assert_eq!(read_n(&mut s, 4096), vec![0u8; 4096]);
    still_serves(&mut s, 6);
    disconnect(s, t);
}

#[test]
fn a_truncated_header_or_payload_is_an_error_not_a_hang() {
    let (mut s, t, _) = start(false);
    go(&mut s);
    s.write_all(&REQUEST_MAGIC.to_be_bytes()).unwrap();
    s.write_all(&[0u8; 6]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let e = t.join().unwrap().unwrap_err();
    assert!(matches!(e, NbdError::Truncated("request header")), "{e}");

    let (mut s, t, _) = start(false);
    go(&mut s);
    request(&mut s, CMD_WRITE, 0, 1, 0, 8192);
    s.write_all(&[1u8; 100]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let e = t.join().unwrap().unwrap_err();
    assert!(matches!(e, NbdError::Truncated("write payload")), "{e}");
}

#[test]
fn writes_to_a_read_only_export_are_eperm() {
    let (mut s, t, _) = start(true);
    let (_, flags) = go(&mut s);
    assert_ne!(flags & TFLAG_READ_ONLY, 0);
    request(&mut s, CMD_WRITE, 0, 1, 0, 4096);
    s.write_all(&[1u8; 4096]).unwrap();
    assert_eq!(reply(&mut s, 1), EPERM);
    request(&mut s, CMD_TRIM, 0, 2, 0, 4096);
    assert_eq!(reply(&mut s, 2), EPERM);
    request(&mut s, CMD_WRITE_ZEROES, 0, 3, 0, 4096);
    assert_eq!(reply(&mut s, 3), EPERM);
    request(&mut s, CMD_READ, 0, 4, 0, 4096);
    assert_eq!(reply(&mut s, 4), 0);
    assert_eq!(read_n(&mut s, 4096), vec![0u8; 4096]);
    disconnect(s, t);
}

#[test]
fn an_option_with_an_absurd_length_is_refused_and_closed() {
    let (mut s, t, _) = start(false);
    greet(&mut s);
    let h = OptionHeader {
        magic: IHAVEOPT,
        option: OPT_GO,
        length: u32::MAX,
    };
    s.write_all(&h.encode()).unwrap();
    let (r, _) = option_reply(&mut s);
    assert_eq!(r.reply, REP_ERR_TOO_BIG);
    closed(&mut s);
    let e = t.join().unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            NbdError::OptionTooLong {
                length: u32::MAX,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bad_option_magic_and_unknown_client_flags_close() {
    let (mut s, t, _) = start(false);
    greet(&mut s);
    s.write_all(&[0xffu8; OPTION_HEADER_BYTES]).unwrap();
    closed(&mut s);
    let e = t.join().unwrap().unwrap_err();
    assert!(
        matches!(e, NbdError::BadMagic { what: "option", .. }),
        "{e}"
    );

    let (mut s, t, _) = start(false);
    read_n(&mut s, GREETING_BYTES);
    s.write_all(&0x8000_0001u32.to_be_bytes()).unwrap();
    closed(&mut s);
    assert!(matches!(
        t.join().unwrap(),
        Err(NbdError::ClientFlags(0x8000_0001))
    ));
}

#[test]
fn option_haggling_refuses_what_it_does_not_serve_then_goes() {
    let (mut s, t, _) = start(false);
    greet(&mut s);
    option(&mut s, 0x4242, b"whatever");
    assert_eq!(option_reply(&mut s).0.reply, REP_ERR_UNSUP);
    option(&mut s, OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(option_reply(&mut s).0.reply, REP_ERR_UNSUP);
    option(&mut s, OPT_STARTTLS, &[]);
    assert_eq!(option_reply(&mut s).0.reply, REP_ERR_UNSUP);
    option(&mut s, OPT_GO, &go_data("nope", &[]));
    let (r, msg) = option_reply(&mut s);
    assert_eq!(r.reply, REP_ERR_UNKNOWN);
    assert_eq!(msg, b"no such export");
    option(&mut s, OPT_INFO, &[0, 0, 0, 200, 1]);
    assert_eq!(option_reply(&mut s).0.reply, REP_ERR_INVALID);
    option(&mut s, OPT_LIST, &[1]);
    assert_eq!(option_reply(&mut s).0.reply, REP_ERR_INVALID);
    option(&mut s, OPT_LIST, &[]);
    let (r, d) = option_reply(&mut s);
    assert_eq!(r.reply, REP_SERVER);
    assert_eq!(d, b"\0\0\0\x07ferrite");
    assert_eq!(option_reply(&mut s).0.reply, REP_ACK);
    // INFO on the default (empty) name, then GO.
    option(&mut s, OPT_INFO, &go_data("", &[]));
    let (r, d) = option_reply(&mut s);
    assert_eq!((r.option, r.reply), (OPT_INFO, REP_INFO));
    assert_eq!(&d[..2], &INFO_EXPORT.to_be_bytes());
    assert_eq!(option_reply(&mut s).0.reply, REP_INFO, "block size");
    assert_eq!(option_reply(&mut s).0.reply, REP_ACK);
    option(&mut s, OPT_GO, &go_data("ferrite", &[]));
    assert_eq!(option_reply(&mut s).0.reply, REP_INFO);
    assert_eq!(option_reply(&mut s).0.reply, REP_INFO);
    assert_eq!(option_reply(&mut s).0.reply, REP_ACK);
    still_serves(&mut s, 1);
    disconnect(s, t);
}

#[test]
fn export_name_selects_or_closes_and_abort_ends_the_handshake() {
    let (mut s, t, size) = start(false);
    greet(&mut s);
    option(&mut s, OPT_EXPORT_NAME, b"ferrite");
    let r = read_n(&mut s, EXPORT_NAME_REPLY_BYTES);
    assert_eq!(u64::from_be_bytes(r[0..8].try_into().unwrap()), size);
    still_serves(&mut s, 1);
    disconnect(s, t);

    // Without NO_ZEROES the 124 zero bytes follow.
    let (mut s, t, _) = start(false);
    read_n(&mut s, GREETING_BYTES);
    s.write_all(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes()).unwrap();
    option(&mut s, OPT_EXPORT_NAME, b"");
    read_n(&mut s, EXPORT_NAME_REPLY_BYTES);
    assert_eq!(read_n(&mut s, EXPORT_NAME_ZEROES), vec![0u8; 124]);
    still_serves(&mut s, 1);
    disconnect(s, t);

    let (mut s, t, _) = start(false);
    greet(&mut s);
    option(&mut s, OPT_EXPORT_NAME, b"nope");
    closed(&mut s);
    assert!(matches!(t.join().unwrap(), Err(NbdError::UnknownExport(n)) if n == "nope"));

    let (mut s, t, _) = start(false);
    greet(&mut s);
    option(&mut s, OPT_ABORT, &[]);
    assert_eq!(option_reply(&mut s).0.reply, REP_ACK);
    assert_eq!(t.join().unwrap().unwrap(), Ended::InHandshake);
}

/// The bytes of a client that negotiates NBD_OPT_GO on "ferrite" (replies not read).
fn go_prefix() -> Vec<u8> {
    let mut b = (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
        .to_be_bytes()
        .to_vec();
    let data = go_data("ferrite", &[]);
    b.extend_from_slice(
        &OptionHeader {
            magic: IHAVEOPT,
            option: OPT_GO,
            length: data.len() as u32,
        }
        .encode(),
    );
    b.extend_from_slice(&data);
    b
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Arbitrary bytes, in the handshake or after a valid one, never panic the server; requests
    /// with a valid magic but arbitrary fields get a reply or end the connection with an error.
    #[test]
    fn arbitrary_input_never_panics(
        raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        fields in proptest::collection::vec(
            (0u16..16, 0u16..16, proptest::prelude::any::<u64>(), 0u32..(1 << 16)),
            0..16
        ),
    ) {
        let exports = exports(common_ftl::namespace(false));
        let mut out = Vec::new();
        let _ = connection::serve(&raw[..], &mut out, &exports);

        let mut input = go_prefix();
        input.extend_from_slice(&raw);
        let _ = connection::serve(&input[..], &mut out, &exports);

        let mut input = go_prefix();
        for (i, (flags, kind, offset, length)) in fields.iter().enumerate() {
            // Offsets near the end of the export as often as anywhere else.
            let offset = if i % 2 == 0 { offset % (16 << 20) } else { *offset };
            let r = Request {
                magic: REQUEST_MAGIC,
                flags: *flags,
                kind: *kind,
                handle: i as u64,
                offset,
                length: *length,
            };
            input.extend_from_slice(&r.encode());
            if *kind == CMD_WRITE {
                input.extend(std::iter::repeat_n(0xa5u8, *length as usize));
            }
        }
        let mut out = Vec::new();
        let _ = connection::serve(&input[..], &mut out, &exports);
    }
}

/// A RAM backend whose block 3 cannot be read and block 5 cannot be written.
#[derive(Debug)]
struct FailingBlocks {
    blocks: parking_lot::Mutex<Vec<[u8; 4096]>>,
}

impl nvme_target::Namespace for FailingBlocks {
    fn block_size(&self) -> usize {
        4096
    }
    fn blocks(&self) -> u64 {
        16
    }
    fn read_block(&self, lba: u64, buf: &mut [u8]) -> Result<(), nvme_target::NamespaceError> {
        if lba == 3 {
            return Err(nvme_target::NamespaceError::Media {
                lba,
                detail: "uncorrectable".into(),
            });
        }
        buf.copy_from_slice(&self.blocks.lock()[lba as usize]);
        Ok(())
    }
    fn write_block(
        &self,
        lba: u64,
        data: &[u8],
        _durable: bool,
    ) -> Result<(), nvme_target::NamespaceError> {
        if lba == 5 {
            return Err(nvme_target::NamespaceError::WriteFault(
                "program failed".into(),
            ));
        }
        self.blocks.lock()[lba as usize].copy_from_slice(data);
        Ok(())
    }
    fn flush(&self) -> Result<(), nvme_target::NamespaceError> {
        Ok(())
    }
    fn deallocate(&self, lba: u64, count: u64) -> Result<(), nvme_target::NamespaceError> {
        self.write_zeroes(lba, count)
    }
    fn write_zeroes(&self, lba: u64, count: u64) -> Result<(), nvme_target::NamespaceError> {
        for b in &mut self.blocks.lock()[lba as usize..(lba + count) as usize] {
            b.fill(0);
        }
        Ok(())
    }
    fn health(&self) -> nvme_target::BackendHealth {
        nvme_target::BackendHealth::default()
    }
}

#[test]
fn media_errors_are_eio_and_the_connection_goes_on() {
    let backend = Arc::new(FailingBlocks {
        blocks: parking_lot::Mutex::new(vec![[0u8; 4096]; 16]),
    });
    let ns = ActiveNamespace::new(common_ftl::identity(false), backend);
    let (mut s, server) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let w = server.try_clone().unwrap();
        connection::serve(server, w, &exports(ns))
    });
    let (size, _) = go(&mut s);
    assert_eq!(size, 16 * 4096);
    request(&mut s, CMD_READ, 0, 1, 3 * 4096, 4096);
    assert_eq!(reply(&mut s, 1), EIO);
    // A read spanning the bad block fails whole; no data follows the error reply.
    request(&mut s, CMD_READ, 0, 2, 2 * 4096, 3 * 4096);
    assert_eq!(reply(&mut s, 2), EIO);
    request(&mut s, CMD_WRITE, CMD_FLAG_FUA, 3, 5 * 4096, 4096);
    s.write_all(&[9u8; 4096]).unwrap();
    assert_eq!(reply(&mut s, 3), EIO);
    still_serves(&mut s, 4);
    disconnect(s, t);
}
