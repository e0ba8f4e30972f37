#![allow(clippy::unwrap_used)]
//! A Linux guest on the vhost-user-blk backend: QEMU (TCG) boots Debian's kernel with a busybox
//! initramfs built here; the guest's virtio-blk driver writes a pattern, reads it back past its
//! page cache, discards a range and checks it reads zeroes. After the guest powers off, libblkio
//! reconnects to the same backend and checks the guest's bytes from the host side.
//!
//! Needs qemu-system-x86, linux-image-amd64, busybox-static and cpio (scripts/test-all installs
//! them). FERRITE_SKIP_GUEST=1 skips it, loudly, on a machine without them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use nvme_target::vhost::{StopHandle, TransportOptions, serve};
use nvme_target::{ActiveNamespace, FtlNamespace, NamespaceIdentity};

/// virtio modules in load order (each needs the ones before it).
const MODULES: [&str; 6] = [
    "virtio/virtio_ring.ko",
    "virtio/virtio.ko",
    "virtio/virtio_pci_modern_dev.ko",
    "virtio/virtio_pci_legacy_dev.ko",
    "virtio/virtio_pci.ko",
    "block/virtio_blk.ko",
];
const PATTERN_BYTES: usize = 1 << 20;
const PATTERN_OFFSET: u64 = 4 << 20;
const GUEST_TIMEOUT: Duration = Duration::from_secs(180);

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in MODULES; do insmod /modules/$m || echo "FERRITE-GUEST-FAIL insmod $m"; done
fail() { echo "FERRITE-GUEST-FAIL $*"; poweroff -f; }
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || fail "no /dev/vda"
echo "FERRITE-GUEST size=$(cat /sys/block/vda/size) lbs=$(cat /sys/block/vda/queue/logical_block_size) serial=$(cat /sys/block/vda/serial 2>/dev/null)"
want=$(sha256sum /pattern | cut -d' ' -f1)
dd if=/pattern of=/dev/vda bs=4096 seek=SEEK_BLOCKS conv=fsync 2>/dev/null || fail "write"
echo 3 > /proc/sys/vm/drop_caches
got=$(dd if=/dev/vda bs=4096 skip=SEEK_BLOCKS count=256 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "read back $got, wrote $want"
dd if=/pattern of=/dev/vda bs=4096 seek=0 conv=fsync 2>/dev/null || fail "second write"
blkdiscard -o 0 -l 524288 /dev/vda || fail "blkdiscard"
echo 3 > /proc/sys/vm/drop_caches
zero=$(dd if=/dev/zero bs=4096 count=128 2>/dev/null | sha256sum | cut -d' ' -f1)
got=$(dd if=/dev/vda bs=4096 count=128 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$zero" ] || fail "discarded range is not zero"
echo FERRITE-GUEST-OK
poweroff -f
"#;

fn pattern() -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..PATTERN_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    let path = found.pop()?;
    let version = path
        .file_name()?
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_owned();
    Some((path, version))
}

/// Builds a gzip'd newc cpio initramfs with busybox, the virtio modules, /init and /pattern.
fn initramfs(dir: &Path, version: &str) -> PathBuf {
    let root = dir.join("root");
    for d in ["bin", "proc", "sys", "dev", "modules"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let mut names = Vec::new();
    for m in MODULES {
        let src = Path::new("/lib/modules")
            .join(version)
            .join("kernel/drivers")
            .join(m);
        let name = Path::new(m)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::copy(&src, root.join("modules").join(&name))
            .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        names.push(name);
    }
    let init = INIT
        .replace("MODULES", &names.join(" "))
        .replace("SEEK_BLOCKS", &(PATTERN_OFFSET / 4096).to_string());
    std::fs::write(root.join("init"), init).unwrap();
    Command::new("chmod")
        .args(["755", "init", "bin/busybox"])
        .current_dir(&root)
        .status()
        .unwrap();
    std::fs::write(root.join("pattern"), pattern()).unwrap();
    let out = dir.join("initramfs.cpio.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find . | cpio -o -H newc --quiet | gzip -1 > {}",
            out.display()
        ))
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "building the initramfs failed");
    out
}

fn namespace() -> Arc<ActiveNamespace> {
    let g = Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 64,
        pages_per_block: 64,
        page_size: 4096,
        oob_size: 64,
    };
    let devices: Vec<Arc<dyn Nand>> = (0..2)
        .map(|i| {
            Arc::new(MemNand::new(g, FaultConfig::none().for_device(i), None).unwrap())
                as Arc<dyn Nand>
        })
        .collect();
    let ftl = Ftl::format(devices, FtlConfig::default()).unwrap();
    let identity = NamespaceIdentity {
        nsid: 1,
        serial: "FERRITE-GUEST-1".into(),
        model: "Ferrite guest test".into(),
        eui64: NamespaceIdentity::eui64_from_serial("FERRITE-GUEST-1"),
        read_only: false,
    };
    ActiveNamespace::new(identity, Arc::new(FtlNamespace::new(ftl)))
}

#[test]
fn a_linux_guest_writes_reads_and_discards_through_vhost_user_blk() {
    if std::env::var_os("FERRITE_SKIP_GUEST").is_some() {
        eprintln!("SKIPPED: the guest test (FERRITE_SKIP_GUEST is set)");
        return;
    }
    let (kernel, version) = kernel().expect("no /boot/vmlinuz-*: install linux-image-amd64");
    let dir = tempfile::tempdir().unwrap();
    let initrd = initramfs(dir.path(), &version);
    let socket = dir.path().join("vhost.sock");
    let ns = namespace();
    let stop = StopHandle::new();
    let server = {
        let (socket, ns, stop) = (socket.clone(), ns.clone(), stop.clone());
        std::thread::spawn(move || serve(&socket, ns, &TransportOptions::default(), &stop))
    };
    while !socket.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }

    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "512M",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .args(["-object", "memory-backend-memfd,id=mem,size=512M,share=on"])
        .args(["-numa", "node,memdev=mem"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .arg("-chardev")
        .arg(format!("socket,id=c0,path={}", socket.display()))
        .args(["-device", "vhost-user-blk-pci,chardev=c0,num-queues=2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64: install qemu-system-x86");
    let console = {
        let mut out = qemu.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut s = Vec::new();
            std::io::Read::read_to_end(&mut out, &mut s).unwrap();
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let status = loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > GUEST_TIMEOUT {
            let _ = qemu.kill();
            let _ = qemu.wait();
            panic!(
                "guest did not finish in {GUEST_TIMEOUT:?}:\n{}",
                console.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let console = console.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut qemu.stderr.take().unwrap(), &mut stderr).unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "guest ran {:?}; console:\n{console}",
        started.elapsed()
    );
    assert!(status.success(), "qemu failed: {status}\n{stderr}");
    assert!(
        console.contains("FERRITE-GUEST-OK"),
        "guest checks failed:\n{console}\n{stderr}"
    );
    assert!(
        console.contains("lbs=4096"),
        "guest sees 4 KiB logical blocks"
    );
    assert!(
        console.contains("serial=FERRITE-GUEST-1"),
        "guest reads the serial (GET_ID)"
    );

    // The guest is gone; a second frontend connects to the same backend and sees its bytes.
    let mut client = blkio_client::Client::connect(&socket, 1).unwrap();
    let back = client.read(0, PATTERN_OFFSET, PATTERN_BYTES).unwrap();
    assert!(
        back == pattern(),
        "the guest's bytes differ when read from the host"
    );
    assert_eq!(client.read(0, 0, 524_288).unwrap(), vec![0u8; 524_288]);
    assert_eq!(
        client.read(0, 524_288, 4096).unwrap(),
        &pattern()[524_288..528_384]
    );
    drop(client);
    stop.stop();
    server.join().unwrap().unwrap();
    assert!(ns.smart_log().host_write_commands > 0);
}
