#![allow(clippy::unwrap_used)]
//! A Linux guest on `ferrite serve` over vhost-user-blk (issue 4, "A Linux guest"). The real
//! `ferrite serve` runs as a process with a config file (4 small file-backed devices, encryption
//! on, 2 queues); QEMU (TCG, 2 vCPUs) boots Debian's kernel with a busybox initramfs built here.
//!
//! 1. First boot: fio with verify=crc32c (random writes, a mixed randrw, a trim job that checks
//!    discarded blocks read zeroes), then mkfs.ext4 on /dev/vda, files of known content written
//!    and synced, read back, e2fsck clean, power off.
//! 2. `ferrite serve` stops on SIGINT and starts again on the same data directory (the instance
//!    key waits in the kernel keyring).
//! 3. Second boot (the reboot): every file's checksum matches, `e2fsck -fn` is clean, and the
//!    guest hashes the first blocks of the disk, which a libblkio client on the host reads and
//!    compares.
//!
//! Needs qemu-system-x86, linux-image-amd64, busybox-static, cpio, fio, e2fsprogs and keyutils
//! (scripts/test-all installs them). FERRITE_SKIP_GUEST=1 skips it, loudly.

#[path = "../support/mod.rs"]
mod support;

mod initramfs;
mod qemu;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use support::ebs::{self, EbsServer};
use support::{KeyringCleanup, Server};

/// One guest at a time: two TCG guests on a 2-core machine would each take twice as long.
static ONE_GUEST: Mutex<()> = Mutex::new(());

const SERIAL: &str = "FERRITE-GUEST-1";
/// Blocks at the start of the disk (ext4's superblock, group descriptors, bitmaps, inode table)
/// that the guest hashes and the host reads back.
const HASH_BLOCKS: u64 = 1024;
const TRANSFER_BYTES: u64 = 1 << 20;

/// Four devices of 32 MiB (1 channel x 2 dies x 64 blocks x 64 pages of 4 KiB): 128 MiB of NAND,
/// encryption on, two virtqueues.
fn config() -> String {
    format!(
        r#"
encryption = true
[geometry]
channels = 1
dies_per_channel = 2
planes_per_die = 1
blocks_per_plane = 64
pages_per_block = 64
page_size = 4096
oob_size = 64
[transport]
queues = {queues}
[[namespace]]
nsid = 1
devices = 4
socket = "ns1.sock"
serial = "{SERIAL}"
"#,
        queues = qemu::QUEUES
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Each connection `ferrite serve` logged as closed: (requests completed per queue, requests
/// rejected).
fn connections(log: &str) -> Vec<(Vec<u64>, u64)> {
    // The log is colored: drop the escape sequences ("\x1b[...m").
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    let after = |line: &str, key: &str| -> String {
        let at = line
            .find(key)
            .unwrap_or_else(|| panic!("no {key} in {line}"));
        line[at + key.len()..].to_owned()
    };
    plain
        .lines()
        .filter(|l| l.contains("connection closed"))
        .map(|l| {
            let queues = after(l, "per_queue=[");
            let queues = queues.split(']').next().unwrap();
            let per_queue = queues.split(", ").map(|n| n.parse().unwrap()).collect();
            let rejected = after(l, "rejected=");
            let rejected = rejected.split_whitespace().next().unwrap().parse().unwrap();
            (per_queue, rejected)
        })
        .collect()
}

#[test]
fn a_linux_guest_runs_fio_and_ext4_across_a_reboot_and_a_serve_restart() {
    if std::env::var_os("FERRITE_SKIP_GUEST").is_some() {
        eprintln!("SKIPPED: the guest test (FERRITE_SKIP_GUEST is set)");
        return;
    }
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let (kernel, version) =
        initramfs::kernel().expect("no /boot/vmlinuz-*: install linux-image-amd64");
    let dir = tempfile::tempdir().unwrap();
    let initrd = initramfs::build(dir.path(), &version, HASH_BLOCKS);
    std::fs::write(dir.path().join("ferrite.toml"), config()).unwrap();
    let socket = dir.path().join("ns1.sock");
    let mut cleanup = KeyringCleanup::new(dir.path());

    let server = Server::start(dir.path(), &[]);
    let id = cleanup.watch();
    let first = qemu::boot(&kernel, &initrd, &socket, 1);
    first.expect_steps(
        1,
        &[
            "booted",
            "fio-verified",
            "mkfs",
            "files-written",
            "files-checked",
            "fsck-clean",
        ],
    );
    assert_eq!(first.value("lbs"), "4096", "4 KiB logical blocks");
    assert_eq!(first.value("serial"), SERIAL, "the serial (GET_ID)");
    assert_eq!(
        first.value("queues"),
        qemu::QUEUES.to_string(),
        "the guest's virtio-blk uses every virtqueue (MQ)"
    );
    assert_ne!(first.value("discard_max"), "0", "the guest can discard");
    // Three fio groups, each with the reads of its verify pass, and the trim job's discards.
    let fio_groups = first.console.matches("jobs=").count();
    assert_eq!(fio_groups, 3, "fio's three job groups report");
    let verify_reads = first.console.matches(" read: IOPS=").count();
    assert_eq!(verify_reads, 3, "every fio group reads back");
    assert!(first.console.contains(" trim: IOPS="), "the trim job trims");
    let first_run = server.stop();
    let guest = connections(&first_run);
    assert_eq!(guest.len(), 1, "one frontend: the guest\n{first_run}");
    let (per_queue, rejected) = &guest[0];
    assert_eq!(*rejected, 0, "a Linux guest's requests were refused");
    assert!(
        per_queue.len() == qemu::QUEUES as usize && per_queue.iter().all(|&n| n > 0),
        "the guest's I/O did not use every queue: {per_queue:?}"
    );

    let server = Server::start(dir.path(), &[]);
    let second = qemu::boot(&kernel, &initrd, &socket, 2);
    second.expect_steps(2, &["booted", "files-checked", "fsck-clean", "disk-hashed"]);
    assert_eq!(second.value("size"), first.value("size"));

    // The guest is gone; libblkio connects to the same server and sees the guest's bytes.
    // (1 MiB reads: libblkio does not split a request longer than the largest transfer.)
    let mut client = blkio_client::Client::connect(&socket, 1).unwrap();
    let mut start = Vec::new();
    for chunk in 0..HASH_BLOCKS * 4096 / TRANSFER_BYTES {
        let bytes = client.read(0, chunk * TRANSFER_BYTES, TRANSFER_BYTES as usize);
        start.extend(bytes.unwrap());
    }
    drop(client);
    assert_eq!(
        &start[1080..1082],
        &[0x53, 0xEF],
        "no ext4 superblock magic at byte 1080"
    );
    assert_eq!(
        sha256_hex(&start),
        second.value("disk-sha256"),
        "the host reads other bytes than the guest"
    );
    let second_run = server.stop();
    assert!(
        second_run.contains(&format!("instance {id} (restarted)")),
        "the second ferrite serve did not serve the same instance:\n{second_run}"
    );
    let frontends = connections(&second_run);
    assert_eq!(frontends.len(), 2, "the guest, then libblkio\n{second_run}");
    assert!(
        frontends.iter().all(|(_, rejected)| *rejected == 0),
        "requests were refused: {frontends:?}"
    );
    eprintln!(
        "boots took {:?} and {:?}\nfirst ferrite serve:\n{first_run}\nsecond:\n{second_run}",
        first.elapsed, second.elapsed
    );
}

/// The same guest on a remote namespace (issue 7, "Attach to a guest"): `ferrite ebs-server`
/// holds a 64 MiB volume sealed by its client; `ferrite serve` attaches it and serves it over
/// vhost-user-blk. The first boot runs fio verify, mkfs.ext4, files and e2fsck; `ferrite serve`
/// restarts (detach, attach again); the second boot checks the files and e2fsck again.
#[test]
fn a_linux_guest_runs_fio_and_ext4_on_a_remote_volume() {
    if std::env::var_os("FERRITE_SKIP_GUEST").is_some() {
        eprintln!("SKIPPED: the remote guest test (FERRITE_SKIP_GUEST is set)");
        return;
    }
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let (kernel, version) =
        initramfs::kernel().expect("no /boot/vmlinuz-*: install linux-image-amd64");
    let dir = tempfile::tempdir().unwrap();
    let initrd = initramfs::build(dir.path(), &version, HASH_BLOCKS);
    let remote = EbsServer::start(&dir.path().join("ebs"), ebs::free_udp_ports(ebs::PATHS));
    let (credential, kek) = remote.create_sealed(dir.path(), "guest", "64M");
    std::fs::write(
        dir.path().join("ferrite.toml"),
        format!(
            "encryption = false\n[transport]\nqueues = {}\n{}",
            qemu::QUEUES,
            ebs::remote_namespace(&remote, "guest", &credential, &kek, SERIAL)
        ),
    )
    .unwrap();
    let socket = dir.path().join("ns1.sock");

    let server = Server::start(dir.path(), &[]);
    let first = qemu::boot(&kernel, &initrd, &socket, 1);
    first.expect_steps(
        1,
        &[
            "booted",
            "fio-verified",
            "mkfs",
            "files-written",
            "files-checked",
            "fsck-clean",
        ],
    );
    assert_eq!(first.value("size"), (64u64 << 20 >> 9).to_string());
    assert_eq!(first.value("serial"), SERIAL);
    assert_eq!(first.console.matches(" read: IOPS=").count(), 3);
    let first_run = server.stop();
    let guest = connections(&first_run);
    assert_eq!(guest.len(), 1, "one frontend: the guest\n{first_run}");
    assert_eq!(guest[0].1, 0, "a Linux guest's requests were refused");
    let status = remote.status();
    assert!(
        status["server"]["requests"].as_u64().unwrap() > 10_000,
        "the guest's I/O did not reach the remote server: {status}"
    );

    let server = Server::start(dir.path(), &[]);
    let second = qemu::boot(&kernel, &initrd, &socket, 2);
    second.expect_steps(2, &["booted", "files-checked", "fsck-clean", "disk-hashed"]);
    let second_run = server.stop();
    remote.stop();
    eprintln!(
        "remote boots took {:?} and {:?}\nfirst ferrite serve:\n{first_run}\nsecond:\n{second_run}",
        first.elapsed, second.elapsed
    );
}
