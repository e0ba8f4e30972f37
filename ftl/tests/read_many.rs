#![allow(clippy::unwrap_used)]
//! `Ftl::read_many`: the same bytes as `read` page by page (mapped, trimmed, never written, in
//! assembly, moved by GC), over RAM and over device files, and a clear error for a bad buffer
//! or range.

mod common;

use std::sync::Arc;

use common::{Rig, geometry, page, read_version};
use ftl::nand::{FaultConfig, FileNand, Nand};
use ftl::{Ftl, FtlConfig, FtlError, LOGICAL_PAGE_BYTES};

/// Writes and overwrites enough pages for GC to move some, trims a few, then checks that
/// `read_many` of every page (in a shuffled order, in batches of several sizes) returns what
/// `read` does.
fn matches_read_page_by_page(ftl: &Ftl) {
    let pages = ftl.logical_pages();
    let written = pages * 3 / 4;
    for round in 1..=3 {
        for lpa in 0..written {
            if (lpa + round) % 3 != 0 || round == 1 {
                ftl.write(lpa, &page(lpa, round), false).unwrap();
            }
        }
    }
    ftl.trim(7, 3).unwrap();
    // With several slots per NAND page, the last write is still in assembly (not programmed).
    ftl.write(11, &page(11, 9), false).unwrap();
    assert!(ftl.stats().gc_pages_moved > 0, "GC moved nothing");
    let order: Vec<u64> = (0..pages).map(|i| (i * 7919) % pages).collect();
    for batch in [1usize, 5, 16, 40] {
        for lpas in order.chunks(batch) {
            let mut out = vec![0xeeu8; lpas.len() * LOGICAL_PAGE_BYTES];
            let mut results = Vec::new();
            ftl.read_many(lpas, &mut out, &mut results);
            assert_eq!(results.len(), lpas.len());
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            for (&lpa, got) in lpas.iter().zip(out.chunks(LOGICAL_PAGE_BYTES)) {
                let mut want = vec![0u8; LOGICAL_PAGE_BYTES];
                ftl.read(lpa, &mut want).unwrap();
                assert!(got == want.as_slice(), "lpa {lpa} in a batch of {batch}");
            }
        }
    }
    assert_eq!(read_version(ftl, 11), Ok(9));
}

#[test]
fn read_many_matches_read_over_ram() {
    let rig = Rig::small();
    matches_read_page_by_page(&rig.format());
}

#[test]
fn read_many_matches_read_over_device_files() {
    let dir = tempfile::tempdir().unwrap();
    let devices: Vec<Arc<dyn Nand>> = (0..2)
        .map(|i| {
            let d = FileNand::create(
                &dir.path().join(format!("nand{i}.img")),
                geometry(2, 16, 16),
                FaultConfig::none().for_device(i),
                None,
            )
            .unwrap();
            assert!(d.store().is_mapped(), "device file not mapped");
            Arc::new(d) as Arc<dyn Nand>
        })
        .collect();
    let ftl = Ftl::format(devices, FtlConfig::default()).unwrap();
    matches_read_page_by_page(&ftl);
}

#[test]
fn read_many_refuses_a_wrong_buffer_or_range() {
    let rig = Rig::small();
    let ftl = rig.format();
    ftl.write(1, &page(1, 1), false).unwrap();
    let mut results = Vec::new();
    let mut short = vec![0u8; LOGICAL_PAGE_BYTES];
    ftl.read_many(&[1, 2], &mut short, &mut results);
    assert_eq!(results.len(), 2);
    for r in &results {
        match r {
            Err(FtlError::BufferSize { expected, got }) => {
                assert_eq!(
                    (*expected, *got),
                    (2 * LOGICAL_PAGE_BYTES, LOGICAL_PAGE_BYTES)
                );
            }
            other => panic!("expected BufferSize, got {other:?}"),
        }
    }
    // A page out of range fails alone: the pages around it are read.
    let pages = ftl.logical_pages();
    let mut out = vec![0u8; 3 * LOGICAL_PAGE_BYTES];
    ftl.read_many(&[1, pages, 1], &mut out, &mut results);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    match &results[1] {
        Err(FtlError::OutOfRange { lpa, .. }) => assert_eq!(*lpa, pages),
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    assert!(out[..LOGICAL_PAGE_BYTES] == page(1, 1)[..]);
    assert!(out[2 * LOGICAL_PAGE_BYTES..] == page(1, 1)[..]);
    ftl.read_many(&[], &mut [], &mut results);
    assert!(results.is_empty());
}
