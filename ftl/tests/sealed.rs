#![allow(clippy::unwrap_used)]
//! Sealed pages: AES-256-GCM under an instance key, the tag in the OOB record. Data survives GC and
//! reopen with the same key; with another key, or once the key is destroyed, old data never reads
//! back; and the device files never hold the plaintext.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Rig, geometry};
use ftl::nand::{FaultConfig, FileNand, Nand};
use ftl::{Ftl, FtlConfig, FtlError};
use keys::{Backend, InstanceKey, KeyError};

const MARKER: &[u8] = b"FERRITE-PLAINTEXT-MARKER";

fn marked(lpa: u64, version: u64) -> Vec<u8> {
    let mut p = common::page(lpa, version);
    p[100..100 + MARKER.len()].copy_from_slice(MARKER);
    p
}

#[test]
fn sealed_data_survives_gc_and_reopen_with_its_key() {
    let rig = Rig::small();
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    let ftl =
        Ftl::format_sealed(rig.dyn_devs(), FtlConfig::default(), Some(key.sealer(1))).unwrap();
    let n = ftl.logical_pages();
    let mut version = vec![0u64; n as usize];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..n * 4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let lpa = if i < n { i } else { x % n };
        version[lpa as usize] += 1;
        ftl.write(lpa, &marked(lpa, version[lpa as usize]), i % 97 == 0)
            .unwrap();
    }
    assert!(ftl.stats().gc_pages_moved > 0, "GC must move sealed pages");
    ftl.close().unwrap();
    let (ftl, _) =
        Ftl::open_sealed(rig.dyn_devs(), FtlConfig::default(), Some(key.sealer(1))).unwrap();
    let mut buf = vec![0u8; 4096];
    for lpa in 0..n {
        ftl.read(lpa, &mut buf).unwrap();
        assert_eq!(buf, marked(lpa, version[lpa as usize]), "lpa {lpa}");
    }
}

#[test]
fn another_key_or_a_destroyed_one_never_reads_old_data() {
    let rig = Rig::small();
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    let ftl =
        Ftl::format_sealed(rig.dyn_devs(), FtlConfig::default(), Some(key.sealer(1))).unwrap();
    for lpa in 0..64 {
        ftl.write(lpa, &marked(lpa, 1), false).unwrap();
    }
    ftl.close().unwrap();

    // A new instance (another key) on the old devices: old pages fail authentication.
    let other = InstanceKey::generate(Backend::AwsLc).unwrap();
    let (ftl, _) =
        Ftl::open_sealed(rig.dyn_devs(), FtlConfig::default(), Some(other.sealer(1))).unwrap();
    let mut buf = vec![0xEEu8; 4096];
    for lpa in 0..64 {
        let err = ftl.read(lpa, &mut buf).unwrap_err();
        assert!(matches!(err, FtlError::Media { .. }), "{err}");
        assert!(err.to_string().contains("authentication"), "{err}");
        assert!(buf.iter().all(|&b| b == 0), "lpa {lpa}: bytes escaped");
    }
    ftl.read(100, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "never written: zeroes");
    drop(ftl);

    // The right key, destroyed (terminate): neither reads nor writes.
    let (ftl, _) =
        Ftl::open_sealed(rig.dyn_devs(), FtlConfig::default(), Some(key.sealer(1))).unwrap();
    ftl.read(3, &mut buf).unwrap();
    assert_eq!(buf, marked(3, 1));
    key.destroy();
    assert!(matches!(
        ftl.read(3, &mut buf),
        Err(FtlError::Key(KeyError::Destroyed))
    ));
    assert!(buf.iter().all(|&b| b == 0));
    assert!(matches!(
        ftl.write(3, &marked(3, 2), false),
        Err(FtlError::Key(KeyError::Destroyed))
    ));
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

fn write_marked_to_files(dir: &Path, key: Option<&InstanceKey>) {
    let devices: Vec<Arc<dyn Nand>> = (0..2)
        .map(|i| {
            let path = dir.join(format!("nand{i}.img"));
            let dev = FileNand::create(
                &path,
                geometry(2, 8, 16),
                FaultConfig::none().for_device(i),
                None,
            );
            Arc::new(dev.unwrap()) as Arc<dyn Nand>
        })
        .collect();
    let ftl = Ftl::format_sealed(devices, FtlConfig::default(), key.map(|k| k.sealer(1))).unwrap();
    for lpa in 0..ftl.logical_pages() {
        ftl.write(lpa, &marked(lpa, 1), false).unwrap();
    }
    ftl.close().unwrap();
}

#[test]
fn device_files_never_hold_the_plaintext() {
    // The scan works: without sealing the marker is there.
    let clear = tempfile::tempdir().unwrap();
    write_marked_to_files(clear.path(), None);
    assert!(files_contain(clear.path(), MARKER));
    // Sealed, active and after terminate: not a trace.
    let sealed = tempfile::tempdir().unwrap();
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    write_marked_to_files(sealed.path(), Some(&key));
    assert!(!files_contain(sealed.path(), MARKER));
    key.destroy();
    assert!(!files_contain(sealed.path(), MARKER));
}
