//! The guest's initramfs, built from the host's files: static busybox, the kernel modules for
//! virtio-blk and ext4, fio and e2fsprogs with every library `ldd` lists (and the dynamic loader),
//! the fio jobs, /init, and files of known content with their checksums.
//!
//! It is an uncompressed newc cpio: TCG would spend seconds inflating ~100 MB of libraries.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Kernel modules under /lib/modules/<version>/kernel, in load order (each needs the ones before
/// it; the wrong order fails with "Unknown symbol"). crc32c_generic gives ext4 and jbd2 the
/// "crc32c" their metadata checksums need (busybox cannot autoload modules).
const MODULES: [&str; 11] = [
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "crypto/crc32c_generic.ko",
    "lib/crc16.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "fs/ext4/ext4.ko",
];

/// Host programs the guest runs, copied to the same paths.
const PROGRAMS: [&str; 3] = ["/usr/bin/fio", "/usr/sbin/mkfs.ext4", "/usr/sbin/e2fsck"];

const INIT: &str = include_str!("init.sh");
const JOBS: &str = include_str!("jobs.fio");

/// The files the guest copies onto ext4: sizes around block and page boundaries, a few larger.
const FILE_SIZES_BYTES: [usize; 8] = [0, 1, 4095, 4096, 4097, 65_549, 1 << 20, 3 << 20];
const FILE_DIRS: usize = 3;

/// The newest Debian kernel in /boot and its version.
pub fn kernel() -> Option<(PathBuf, String)> {
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

/// Deterministic bytes, different for every seed.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn run(command: &mut Command) -> std::process::Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `program` and the libraries it loads, as `ldd` resolves them (the loader included).
fn with_libraries(program: &str) -> Vec<PathBuf> {
    let out = run(Command::new("ldd").arg(program));
    let mut files = vec![PathBuf::from(program)];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, right)) => right.trim(),
            None => line.trim(),
        };
        let path = path.split(" (").next().unwrap_or("");
        if path.starts_with('/') {
            files.push(PathBuf::from(path));
        } else {
            assert!(
                !line.contains("not found"),
                "{program}: a library is missing: {line}"
            );
        }
    }
    files
}

/// Copies `src` (a symlink is followed) to the same absolute path under `root`.
fn copy_into(root: &Path, src: &Path) {
    let dst = root.join(src.strip_prefix("/").unwrap());
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
}

/// Writes the known files under `root/files` and their sha256 lines (paths relative to the
/// guest's mount point) to `root/files.sha256`.
fn files(root: &Path) {
    let mut names = Vec::new();
    for d in 0..FILE_DIRS {
        let dir = root.join(format!("files/dir{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, &len) in FILE_SIZES_BYTES.iter().enumerate() {
            let name = format!("files/dir{d}/f{i}-{len}");
            std::fs::write(root.join(&name), content((d * 100 + i) as u64 + 1, len)).unwrap();
            names.push(name);
        }
    }
    let out = run(Command::new("sha256sum").args(&names).current_dir(root));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        names.len()
    );
    std::fs::write(root.join("files.sha256"), out.stdout).unwrap();
}

/// Builds the initramfs in `dir` for kernel `version`; `hash_blocks` is how many 4 KiB blocks
/// of /dev/vda the second boot hashes for the host to compare.
pub fn build(dir: &Path, version: &str, hash_blocks: u64) -> PathBuf {
    let root = dir.join("root");
    for d in ["bin", "proc", "sys", "dev", "mnt", "tmp", "modules", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();

    let mut names = Vec::new();
    for m in MODULES {
        let src = Path::new("/lib/modules")
            .join(version)
            .join("kernel")
            .join(m);
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&src, root.join("modules").join(&name))
            .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        names.push(name);
    }

    let mut copied = BTreeSet::new();
    for program in PROGRAMS {
        copied.extend(with_libraries(program));
    }
    for file in &copied {
        copy_into(&root, file);
    }
    let library_dirs: BTreeSet<String> = copied
        .iter()
        .filter(|p| p.to_string_lossy().contains(".so"))
        .map(|p| p.parent().unwrap().to_string_lossy().into_owned())
        .collect();
    // mke2fs's defaults (ext4 features); e2fsck looks for mounted filesystems in /etc/mtab.
    std::fs::copy("/etc/mke2fs.conf", root.join("etc/mke2fs.conf")).unwrap();
    std::os::unix::fs::symlink("/proc/mounts", root.join("etc/mtab")).unwrap();

    let init = INIT
        .replace("@MODULES@", &names.join(" "))
        .replace(
            "@LIBRARY_PATH@",
            &library_dirs.into_iter().collect::<Vec<_>>().join(":"),
        )
        .replace("@HASH_BLOCKS@", &hash_blocks.to_string());
    assert!(!init.contains('@'), "an unfilled @NAME@ in init.sh");
    std::fs::write(root.join("init"), init).unwrap();
    std::fs::write(root.join("jobs.fio"), JOBS).unwrap();
    files(&root);
    run(Command::new("chmod")
        .args(["755", "init", "bin/busybox"])
        .current_dir(&root));

    let out = dir.join("initramfs.cpio");
    run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find . | cpio -o -H newc --quiet > {}",
            out.display()
        ))
        .current_dir(&root));
    out
}
