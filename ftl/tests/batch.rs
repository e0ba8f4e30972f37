#![allow(clippy::unwrap_used)]
//! `Ftl::write_batch`: many pages under one engine-lock hold, in order, each with its own result;
//! clear and sealed alike, through GC and a crash after a flush.

mod common;

use common::{Rig, page, read_version};
use ftl::{Ftl, FtlConfig, FtlError};
use keys::{Backend, InstanceKey};

fn formatted(rig: &Rig, key: Option<&InstanceKey>) -> Ftl {
    Ftl::format_sealed(
        rig.dyn_devs(),
        FtlConfig::default(),
        key.map(|k| k.sealer(1)),
    )
    .unwrap()
}

fn reopened(rig: &Rig, key: Option<&InstanceKey>) -> Ftl {
    Ftl::open_sealed(
        rig.dyn_devs(),
        FtlConfig::default(),
        key.map(|k| k.sealer(1)),
    )
    .unwrap()
    .0
}

/// A batch that writes one page three times ends with the last write, in either mode.
fn overlapping_writes_keep_submission_order(key: Option<&InstanceKey>) {
    let rig = Rig::small();
    let ftl = formatted(&rig, key);
    let (v1, v2, v3, other) = (page(5, 1), page(5, 2), page(5, 3), page(6, 1));
    let batch: Vec<(u64, &[u8])> = vec![(5, &v1), (6, &other), (5, &v2), (5, &v3)];
    let mut results = Vec::new();
    ftl.write_batch(&batch, &mut results);
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(read_version(&ftl, 5), Ok(3));
    assert_eq!(read_version(&ftl, 6), Ok(1));
    assert_eq!(ftl.stats().host_pages_written, 4);
    // The order holds on NAND too: after a flush and a crash, recovery picks the last version.
    ftl.flush().unwrap();
    drop(ftl);
    rig.power_cut(7);
    let ftl = reopened(&rig, key);
    assert_eq!(read_version(&ftl, 5), Ok(3));
    assert_eq!(read_version(&ftl, 6), Ok(1));
}

#[test]
fn overlapping_writes_in_a_batch_keep_submission_order() {
    overlapping_writes_keep_submission_order(None);
}

#[test]
fn overlapping_sealed_writes_in_a_batch_keep_submission_order() {
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    overlapping_writes_keep_submission_order(Some(&key));
}

#[test]
fn a_bad_page_in_a_batch_fails_alone() {
    let rig = Rig::small();
    let ftl = formatted(&rig, None);
    let n = ftl.logical_pages();
    let (a, b, short) = (page(1, 1), page(2, 1), vec![0u8; 512]);
    let batch: Vec<(u64, &[u8])> = vec![(1, &a), (n, &a), (3, &short), (2, &b)];
    let mut results = Vec::new();
    ftl.write_batch(&batch, &mut results);
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(FtlError::OutOfRange { .. })));
    assert!(matches!(results[2], Err(FtlError::BufferSize { .. })));
    assert!(results[3].is_ok());
    assert_eq!(read_version(&ftl, 1), Ok(1));
    assert_eq!(read_version(&ftl, 2), Ok(1));
    assert_eq!(read_version(&ftl, 3), Ok(0));
    // The results vector is reused: a second batch replaces the first one's entries.
    ftl.write_batch(&batch[..1], &mut results);
    assert_eq!(results.len(), 1);
}

/// Batches churning the whole space many times over (so GC runs between and inside them) read
/// back as the last version written, before and after close and reopen.
fn batches_through_gc(key: Option<&InstanceKey>) {
    let rig = Rig::small();
    let ftl = formatted(&rig, key);
    let n = ftl.logical_pages();
    let mut version = vec![0u64; n as usize];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut results = Vec::new();
    for _ in 0..(n * 4 / 16) {
        let mut pages = Vec::new();
        for _ in 0..16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let lpa = x % n;
            version[lpa as usize] += 1;
            pages.push((lpa, page(lpa, version[lpa as usize])));
        }
        let batch: Vec<(u64, &[u8])> = pages.iter().map(|(l, p)| (*l, p.as_slice())).collect();
        ftl.write_batch(&batch, &mut results);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    assert!(ftl.stats().gc_pages_moved > 0, "GC must have run");
    for lpa in 0..n {
        assert_eq!(
            read_version(&ftl, lpa),
            Ok(version[lpa as usize]),
            "lpa {lpa}"
        );
    }
    ftl.close().unwrap();
    let ftl = reopened(&rig, key);
    for lpa in 0..n {
        assert_eq!(
            read_version(&ftl, lpa),
            Ok(version[lpa as usize]),
            "lpa {lpa}"
        );
    }
}

#[test]
fn batches_survive_gc_and_reopen() {
    batches_through_gc(None);
}

#[test]
fn sealed_batches_survive_gc_and_reopen() {
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    batches_through_gc(Some(&key));
}
