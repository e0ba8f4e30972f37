#![allow(clippy::unwrap_used)]
//! `ferrite serve`'s NBD export driven by real clients: fio 3.33's nbd engine (libnbd) with
//! crc32c verify and trim, qemu-io and qemu-img (qemu-utils), several NbdClient connections at
//! once with one flush making all their writes durable across a crash, and `ferrite fio`'s own
//! nbd engine, whose data real fio verifies.
//!
//! Each test runs its own `ferrite serve` (small geometry, encryption off) in a temporary
//! directory, with the default NBD settings: ./ferrite-nbd.sock, export `ferrite`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nvme_target::nbd::NbdClient;
use support::Server;

fn start(dir: &Path) -> Server {
    std::fs::write(dir.join("ferrite.toml"), support::config(false)).unwrap();
    Server::start(dir, &[])
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("ferrite-nbd.sock")
}

fn uri(dir: &Path) -> String {
    format!("nbd+unix:///ferrite?socket={}", socket(dir).display())
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tool(name: &str, package: &str, args: &[&str]) -> Output {
    Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!(
            "{name} not runnable ({e}): it comes from {package}, which scripts/test-all installs"
        )
    })
}

/// Real fio; it would leave a verify state file in the working directory, so it saves none.
fn fio(args: &[&str]) -> Output {
    let mut all = vec!["--verify_state_save=0"];
    all.extend_from_slice(args);
    tool("fio", "the fio package", &all)
}

/// fio's JSON report (fio prints "fio: connected to NBD server" before it).
fn json_of(out: &Output) -> serde_json::Value {
    let t = String::from_utf8_lossy(&out.stdout);
    let start = t
        .find('{')
        .unwrap_or_else(|| panic!("no JSON:\n{}", text(out)));
    serde_json::from_str(&t[start..]).unwrap_or_else(|e| panic!("{e}:\n{}", text(out)))
}

fn job_ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    let report = json_of(out);
    assert_eq!(report["jobs"][0]["error"], 0, "{}", text(out));
    report
}

#[test]
fn serve_prints_the_fio_command_line_of_its_export() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let out = server.stop();
    let sock = std::path::absolute(socket(dir.path())).unwrap();
    let want = format!(
        "fio --name=randread --ioengine=nbd --uri='nbd+unix:///ferrite?socket={}' --rw=randread \
         --bs=4k --iodepth=32 --size=",
        sock.display()
    );
    assert!(out.contains(&want), "{out}");
    assert!(out.contains("export ferrite (namespace 1)"), "{out}");
    assert!(!sock.exists(), "the NBD socket is removed on stop");
}

#[test]
fn tcp_export_serves_real_fio_and_ferrite_fio() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}\n[nbd]\ntcp = \"127.0.0.1:0\"\n", support::config(false));
    std::fs::write(dir.path().join("ferrite.toml"), config).unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = server.output();
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("NBD on ferrite-nbd.sock, tcp "))
        .unwrap_or_else(|| panic!("no TCP address printed:\n{out}"))
        .trim()
        .to_owned();
    let uri = format!("nbd://{addr}/ferrite");
    let report = job_ok(&fio(&[
        "--name=tcp",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=8",
        "--size=1M",
        "--verify=crc32c",
        "--output-format=json",
    ]));
    assert_eq!(report["jobs"][0]["read"]["io_bytes"], 1 << 20);
    let job = dir.path().join("tcp.fio");
    std::fs::write(
        &job,
        format!("[tcp]\nioengine=nbd\nuri={uri}\nsize=1M\nbs=4k\nrw=read\nverify=crc32c\n"),
    )
    .unwrap();
    // ferrite fio verifies over TCP what real fio wrote.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["fio", "--output-format=json"])
        .arg(&job)
        .output()
        .unwrap();
    let report = job_ok(&out);
    assert_eq!(report["jobs"][0]["read"]["total_ios"], 256);
    server.stop();
}

#[test]
fn real_fio_writes_verifies_and_trims_over_nbd() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let uri = format!("--uri={}", uri(dir.path()));
    let out = fio(&[
        "--name=verify",
        "--ioengine=nbd",
        &uri,
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=16",
        "--size=2M",
        "--verify=crc32c",
        "--output-format=json",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fio: connected to NBD server"),
        "{}",
        text(&out)
    );
    let report = job_ok(&out);
    let job = &report["jobs"][0];
    assert_eq!(job["write"]["io_bytes"], 2 << 20, "{}", text(&out));
    assert_eq!(job["read"]["io_bytes"], 2 << 20, "verify reads everything");
    // Mixed block sizes and offsets that are not 4 KiB aligned (512-byte sectors).
    job_ok(&fio(&[
        "--name=mixed",
        "--ioengine=nbd",
        &uri,
        "--rw=randrw",
        "--bsrange=512-64k",
        "--offset=2M",
        "--size=1M",
        "--iodepth=8",
        "--verify=crc32c",
        "--output-format=json",
    ]));
    // A trim job over the first MiB, then the export reads zeroes there.
    let report = job_ok(&fio(&[
        "--name=trim",
        "--ioengine=nbd",
        &uri,
        "--rw=trim",
        "--bs=64k",
        "--size=1M",
        "--output-format=json",
    ]));
    assert_eq!(report["jobs"][0]["trim"]["io_bytes"], 1 << 20);
    let mut c = NbdClient::connect_unix(&socket(dir.path()), "ferrite").unwrap();
    let mut buf = vec![0xffu8; 2 << 20];
    c.read(0, &mut buf).unwrap();
    assert!(
        buf[..1 << 20].iter().all(|&b| b == 0),
        "trimmed range reads zeroes"
    );
    assert!(
        buf[1 << 20..].iter().any(|&b| b != 0),
        "untrimmed data stays"
    );
    c.disconnect().unwrap();
    server.stop();
}

#[test]
fn qemu_io_and_qemu_img_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let uri = uri(dir.path());
    let out = tool(
        "qemu-io",
        "qemu-utils",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0xab 0 64k",
            "-c",
            "read -P 0xab 0 64k",
            "-c",
            "write -P 0xcd 65536 64k",
            "-c",
            "discard 0 64k",
            "-c",
            "read -P 0 0 64k",
            "-c",
            "write -z 65536 32k",
            "-c",
            "read -P 0 65536 32k",
            "-c",
            "read -P 0xcd 98304 32k",
            "-c",
            "flush",
            &uri,
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains("failed") && !t.contains("error"), "{t}");
    assert_eq!(t.matches("read 65536/65536 bytes").count(), 2, "{t}");
    assert_eq!(t.matches("read 32768/32768 bytes").count(), 2, "{t}");
    assert!(t.contains("wrote 32768/32768 bytes"), "{t}");

    // qemu-img convert into the export and back out: byte-identical, the rest zeroes.
    let src = dir.path().join("src.raw");
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let out = tool(
        "qemu-img",
        "qemu-utils",
        &[
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            src.to_str().unwrap(),
            &uri,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let back = dir.path().join("back.raw");
    let out = tool(
        "qemu-img",
        "qemu-utils",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &uri,
            back.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let got = std::fs::read(&back).unwrap();
    let c = NbdClient::connect_unix(&socket(dir.path()), "").unwrap();
    assert_eq!(got.len() as u64, c.size_bytes(), "exact export size");
    assert!(got[..data.len()] == data[..], "the converted image differs");
    server.stop();
}

#[test]
fn a_flush_on_one_connection_makes_every_connections_writes_durable() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let sock = socket(dir.path());
    const CONNECTIONS: u64 = 4;
    const REGION: u64 = 256 << 10;
    let pattern = |c: u64, i: usize| (c as u8).wrapping_mul(31) ^ (i % 251) as u8;
    let mut clients: Vec<NbdClient> = (0..CONNECTIONS)
        .map(|_| NbdClient::connect_unix(&sock, "ferrite").unwrap())
        .collect();
    assert!(clients[0].can_multi_conn());
    std::thread::scope(|s| {
        for (c, client) in clients.iter_mut().enumerate() {
            s.spawn(move || {
                let data: Vec<u8> = (0..REGION as usize).map(|i| pattern(c as u64, i)).collect();
                for chunk in 0..REGION / 16384 {
                    let at = (chunk * 16384) as usize;
                    client
                        .write(c as u64 * REGION + at as u64, &data[at..at + 16384], false)
                        .unwrap();
                }
            });
        }
    });
    clients[1].flush().unwrap();
    server.crash();
    drop(clients);

    let server = Server::start(dir.path(), &[]);
    let mut c = NbdClient::connect_unix(&sock, "ferrite").unwrap();
    for conn in 0..CONNECTIONS {
        let mut buf = vec![0u8; REGION as usize];
        c.read(conn * REGION, &mut buf).unwrap();
        let bad = buf
            .iter()
            .enumerate()
            .find(|&(i, &b)| b != pattern(conn, i))
            .map(|(i, _)| i);
        assert!(
            bad.is_none(),
            "connection {conn}: first lost byte at {bad:?}"
        );
    }
    c.disconnect().unwrap();
    server.stop();
}

#[test]
fn ferrite_fio_nbd_engine_writes_what_real_fio_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let job = dir.path().join("nbd.fio");
    std::fs::write(
        &job,
        format!(
            "[interop]\nioengine=nbd\nuri={}\nsize=2M\nbs=4k\niodepth=4\nrw=randwrite\n\
             verify=crc32c\n",
            uri(dir.path())
        ),
    )
    .unwrap();
    // ferrite fio writes and verifies through its own NBD client.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["fio", "--output-format=json"])
        .arg(&job)
        .output()
        .unwrap();
    let report = job_ok(&out);
    assert_eq!(report["jobs"][0]["write"]["io_bytes"], 2 << 20);
    assert_eq!(report["jobs"][0]["read"]["io_bytes"], 2 << 20);
    // Real fio verifies what ferrite fio wrote.
    let uri = format!("--uri={}", uri(dir.path()));
    let report = job_ok(&fio(&[
        "--name=interop",
        "--ioengine=nbd",
        &uri,
        "--size=2M",
        "--bs=4k",
        "--rw=read",
        "--verify=crc32c",
        "--output-format=json",
    ]));
    assert_eq!(report["jobs"][0]["read"]["total_ios"], 512);
    // A flipped byte in what the export holds is caught (error 84, EILSEQ).
    let mut c = NbdClient::connect_unix(&socket(dir.path()), "ferrite").unwrap();
    let mut sector = vec![0u8; 512];
    c.read(8192, &mut sector).unwrap();
    sector[100] ^= 0x55;
    c.write(8192, &sector, true).unwrap();
    c.disconnect().unwrap();
    let out = fio(&[
        "--name=interop",
        "--ioengine=nbd",
        &uri,
        "--size=2M",
        "--bs=4k",
        "--rw=read",
        "--verify=crc32c",
        "--output-format=json",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(json_of(&out)["jobs"][0]["error"], 84, "{}", text(&out));
    server.stop();
}
