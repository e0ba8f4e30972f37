#![allow(clippy::unwrap_used)]
//! NbdClient against Ferrite's own NBD server (unix socket and TCP, several connections, stop)
//! and against qemu-nbd (qemu-utils), a second, independent NBD server.

mod common_ftl;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nvme_target::nbd::wire::{EINVAL, ENOSPC, TFLAG_CAN_MULTI_CONN};
use nvme_target::nbd::{Export, Listen, NbdClient, NbdError, NbdServer, NbdStopHandle};

/// Write, read back, flush, trim, write-zeroes and the errors of a few bad requests.
fn exercise(c: &mut NbdClient) {
    let size = c.size_bytes();
    assert!(size >= 4 << 20, "{size}");
    let data: Vec<u8> = (0..(2 << 20) + 4096)
        .map(|i: u32| (i * 13 % 256) as u8)
        .collect();
    c.write(4096, &data, false).unwrap();
    c.write(size - 4096, &[0x77; 4096], true).unwrap();
    c.flush().unwrap();
    let mut back = vec![0u8; data.len()];
    c.read(4096, &mut back).unwrap();
    assert!(back == data, "read back differs");
    let mut tail = vec![0u8; 4096];
    c.read(size - 4096, &mut tail).unwrap();
    assert_eq!(tail, vec![0x77; 4096]);
    c.write_zeroes(8192, 8192, true).unwrap();
    c.trim(1 << 20, 1 << 20).unwrap();
    let mut z = vec![0xffu8; 8192];
    c.read(8192, &mut z).unwrap();
    assert!(z.iter().all(|&b| b == 0), "write-zeroes reads back zeroes");
    c.read(4096, &mut back).unwrap();
    let first_bad = (0..back.len()).find(|&i| {
        back[i] != data[i]
            && !(4096..12288).contains(&i)
            && !((1 << 20) - 4096..(2 << 20) - 4096).contains(&i)
    });
    assert!(first_bad.is_none(), "first difference at {first_bad:?}");
    // Past the end: the server's error, named.
    let e = c.read(size, &mut tail).unwrap_err();
    assert!(
        matches!(
            e,
            NbdError::Server {
                command: "read",
                error: EINVAL,
                ..
            }
        ),
        "{e}"
    );
    let e = c.write(size, &tail, false).unwrap_err();
    match e {
        NbdError::Server {
            command: "write",
            error,
            ..
        } => {
            assert!(error == ENOSPC || error == EINVAL, "{error}")
        }
        other => panic!("{other}"),
    }
    assert!(e_string(c.read(size, &mut tail)).contains("for read at offset"));
}

fn e_string(r: Result<(), NbdError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn ferrite_server_over_unix_and_tcp_with_several_connections_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbd.sock");
    let ns = common_ftl::namespace(false);
    let exports = vec![Export {
        name: "ferrite".into(),
        description: String::new(),
        namespace: ns,
    }];
    let server = NbdServer::bind(&[
        Listen::Unix(sock.clone()),
        Listen::Tcp("127.0.0.1:0".parse().unwrap()),
    ])
    .unwrap();
    let tcp = server.tcp_addrs()[0].to_string();
    let stop = NbdStopHandle::new();
    let t = {
        let stop = stop.clone();
        std::thread::spawn(move || server.serve(exports, &stop))
    };
    let mut a = NbdClient::connect_unix(&sock, "ferrite").unwrap();
    assert!(a.can_multi_conn());
    assert_ne!(a.transmission_flags() & TFLAG_CAN_MULTI_CONN, 0);
    assert_eq!(a.min_block_bytes(), 512);
    assert_eq!(a.max_payload_bytes(), 32 << 20);
    exercise(&mut a);
    // What one connection wrote (and flushed) another reads; the default export is "ferrite".
    let mut b = NbdClient::connect_tcp(&tcp, "").unwrap();
    a.write(0, &[0xab; 4096], false).unwrap();
    a.flush().unwrap();
    let mut buf = vec![0u8; 4096];
    b.read(0, &mut buf).unwrap();
    assert_eq!(buf, vec![0xab; 4096]);
    let e = NbdClient::connect_unix(&sock, "missing").unwrap_err();
    assert!(e.to_string().contains("no such export"), "{e}");
    b.disconnect().unwrap();
    // Stop with a connection open: serve returns, the connection is closed, the socket removed.
    stop.stop();
    t.join().unwrap().unwrap();
    assert!(a.read(0, &mut buf).is_err());
    assert!(!sock.exists());
    assert_eq!(stop.connections(), 3);
}

#[test]
fn stop_closes_a_connection_whose_client_stopped_reading() {
    use nvme_target::nbd::wire::*;
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbd.sock");
    let exports = vec![Export {
        name: "ferrite".into(),
        description: String::new(),
        namespace: common_ftl::namespace(false),
    }];
    let server = NbdServer::bind(&[Listen::Unix(sock.clone())]).unwrap();
    let stop = NbdStopHandle::new();
    stop.set_drain_timeout(Duration::from_millis(200));
    let t = {
        let stop = stop.clone();
        std::thread::spawn(move || server.serve(exports, &stop))
    };
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let mut greeting = [0u8; GREETING_BYTES];
    s.read_exact(&mut greeting).unwrap();
    s.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();
    let h = OptionHeader {
        magic: IHAVEOPT,
        option: OPT_EXPORT_NAME,
        length: 7,
    };
    s.write_all(&h.encode()).unwrap();
    s.write_all(b"ferrite").unwrap();
    let mut reply = [0u8; EXPORT_NAME_REPLY_BYTES];
    s.read_exact(&mut reply).unwrap();
    // 64 reads of 1 MiB, never read back: the server blocks writing the replies.
    for handle in 0..64 {
        let r = Request {
            magic: REQUEST_MAGIC,
            flags: 0,
            kind: CMD_READ,
            handle,
            offset: 0,
            length: 1 << 20,
        };
        s.write_all(&r.encode()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let stopped = Instant::now();
    stop.stop();
    t.join().unwrap().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
}

#[test]
fn a_client_that_never_finishes_the_handshake_is_closed() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbd.sock");
    let exports = vec![Export {
        name: "ferrite".into(),
        description: String::new(),
        namespace: common_ftl::namespace(false),
    }];
    let mut server = NbdServer::bind(&[Listen::Unix(sock.clone())]).unwrap();
    server.set_handshake_timeout(Duration::from_millis(200));
    let stop = NbdStopHandle::new();
    let t = {
        let stop = stop.clone();
        std::thread::spawn(move || server.serve(exports, &stop))
    };
    let started = Instant::now();
    let mut idle = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let mut greeting = [0u8; 18];
    idle.read_exact(&mut greeting).unwrap();
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A client that completes the handshake may then idle longer than the timeout.
    let mut c = NbdClient::connect_unix(&sock, "ferrite").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let mut buf = vec![0u8; 4096];
    c.read(0, &mut buf).unwrap();
    stop.stop();
    t.join().unwrap().unwrap();
}

/// qemu-nbd serving a raw file on a unix socket; killed on drop.
struct QemuNbd(Child);

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qemu_nbd(dir: &Path, sock: &Path) -> QemuNbd {
    let image = dir.join("disk.raw");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let child = Command::new("qemu-nbd")
        .args([
            "--format=raw",
            "--persistent",
            "--shared=4",
            "--export-name=qemu",
        ])
        .arg(format!("--socket={}", sock.display()))
        .arg(&image)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "qemu-nbd not runnable ({e}): it comes from the qemu-utils package, which \
                 scripts/test-all installs"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "qemu-nbd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    QemuNbd(child)
}

#[test]
fn the_client_works_against_qemu_nbd() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qemu.sock");
    let _server = qemu_nbd(dir.path(), &sock);
    let mut c = NbdClient::connect_unix(&sock, "qemu").unwrap();
    assert_eq!(c.size_bytes(), 8 << 20);
    exercise(&mut c);
    c.disconnect().unwrap();
    let e = NbdClient::connect_unix(&sock, "nope").unwrap_err();
    assert!(matches!(e, NbdError::Refused { .. }), "{e}");
}
