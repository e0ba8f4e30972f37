#![allow(clippy::unwrap_used)]
//! End-to-end smoke: fill, churn through GC, trim, clean close, reopen, verify every page.

use std::sync::Arc;

use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};

fn devices(n: u32) -> Vec<Arc<MemNand>> {
    let g = Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 16,
        pages_per_block: 32,
        page_size: 4096,
        oob_size: 64,
    };
    (0..n)
        .map(|i| Arc::new(MemNand::new(g, FaultConfig::none().for_device(i), None).unwrap()))
        .collect()
}

fn dyn_devs(d: &[Arc<MemNand>]) -> Vec<Arc<dyn Nand>> {
    d.iter().map(|x| x.clone() as Arc<dyn Nand>).collect()
}

fn page(lpa: u64, v: u32) -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    p[0..8].copy_from_slice(&lpa.to_le_bytes());
    p[8..12].copy_from_slice(&v.to_le_bytes());
    p[4000] = v as u8;
    p
}

#[test]
fn smoke() {
    let devs = devices(4);
    let ftl = Ftl::format(dyn_devs(&devs), FtlConfig::default()).unwrap();
    let n = ftl.logical_pages();
    eprintln!("logical pages {n}");
    let mut ver = vec![0u32; n as usize];
    let mut x: u64 = 1;
    let mut buf = vec![0u8; 4096];
    for i in 0..n * 8 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let lpa = if i < n { i } else { (x >> 33) % n };
        ver[lpa as usize] += 1;
        ftl.write(lpa, &page(lpa, ver[lpa as usize]), false)
            .unwrap();
        if i % 97 == 0 {
            let l = (x >> 20) % n;
            ftl.read(l, &mut buf).unwrap();
            assert_eq!(
                buf,
                if ver[l as usize] == 0 {
                    vec![0; 4096]
                } else {
                    page(l, ver[l as usize])
                },
                "lpa {l}"
            );
        }
    }
    ftl.trim(3, 10).unwrap();
    for v in &mut ver[3..13] {
        *v = 0;
    }
    let s = ftl.stats();
    eprintln!("{s:?} waf {}", s.waf());
    ftl.close().unwrap();
    let (ftl, report) = Ftl::open(dyn_devs(&devs), FtlConfig::default()).unwrap();
    eprintln!("{report:?}");
    assert!(report.clean);
    for l in 0..n {
        ftl.read(l, &mut buf).unwrap();
        assert_eq!(
            buf,
            if ver[l as usize] == 0 {
                vec![0; 4096]
            } else {
                page(l, ver[l as usize])
            },
            "lpa {l}"
        );
    }
}

/// 16 KiB NAND pages: the logical page stays 4 KiB (four per NAND page) and everything works the
/// same: churn through GC, close, reopen, verify.
#[test]
fn sixteen_kib_pages() {
    let g = Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 16,
        pages_per_block: 32,
        page_size: 16384,
        oob_size: 256,
    };
    let devs: Vec<Arc<MemNand>> = (0..2)
        .map(|i| Arc::new(MemNand::new(g, FaultConfig::none().for_device(i), None).unwrap()))
        .collect();
    let ftl = Ftl::format(dyn_devs(&devs), FtlConfig::default()).unwrap();
    assert_eq!(ftl.page_size(), 4096);
    let n = ftl.logical_pages();
    // About 7/8 of the 4 x 31 data slots of each block outside the checkpoint area and spares.
    assert!(n > 2 * 32 * 31 * 4 / 2, "{n} logical pages");
    let stamp = |lpa: u64, v: u32| {
        let mut p = vec![0u8; 4096];
        p[0..8].copy_from_slice(&lpa.to_le_bytes());
        p[4092..4096].copy_from_slice(&v.to_le_bytes());
        p
    };
    let mut ver = vec![0u32; n as usize];
    for i in 0..n * 6 {
        let lpa = (i * 7919) % n;
        ver[lpa as usize] += 1;
        ftl.write(lpa, &stamp(lpa, ver[lpa as usize]), false)
            .unwrap();
    }
    assert!(ftl.stats().gc_runs > 0);
    ftl.close().unwrap();
    let (ftl, report) = Ftl::open(dyn_devs(&devs), FtlConfig::default()).unwrap();
    assert!(report.clean);
    let mut buf = vec![0u8; 4096];
    for lpa in 0..n {
        ftl.read(lpa, &mut buf).unwrap();
        assert_eq!(buf, stamp(lpa, ver[lpa as usize]), "lpa {lpa}");
    }
    assert!(matches!(
        ftl.read(0, &mut [0u8; 16384]),
        Err(ftl::FtlError::BufferSize { .. })
    ));
}

/// After a clean close, open reads page 0 of the checkpoint area only: every other block is proved
/// unchanged by its erase and program counts.
#[test]
fn clean_open_surveys_only_the_checkpoint_area() {
    let devs = devices(4);
    let ftl = Ftl::format(dyn_devs(&devs), FtlConfig::default()).unwrap();
    let area = ftl.layout().area_blocks();
    for lpa in 0..ftl.logical_pages() {
        ftl.write(lpa, &page(lpa, 1), false).unwrap();
    }
    ftl.close().unwrap();
    let oob_reads_before: u64 = devs.iter().map(|d| d.stats().oob_reads).sum();
    let (ftl, report) = Ftl::open(dyn_devs(&devs), FtlConfig::default()).unwrap();
    let oob_reads: u64 = devs.iter().map(|d| d.stats().oob_reads).sum::<u64>() - oob_reads_before;
    assert!(report.clean, "{report:?}");
    assert!(report.blocks_surveyed <= area, "{report:?} area {area}");
    // Page 0 of each area block once per survey pass, plus the checkpoint pages' OOB.
    assert!(
        oob_reads < u64::from(area) * 3 + 64,
        "{oob_reads} OOB reads"
    );
    // A write after the open: the block it lands in is read on the next open; the rest is not.
    ftl.write(0, &page(0, 2), true).unwrap();
    drop(ftl);
    let (ftl, report) = Ftl::open(dyn_devs(&devs), FtlConfig::default()).unwrap();
    assert!(!report.clean && report.blocks_folded >= 1, "{report:?}");
    let mut buf = vec![0u8; 4096];
    ftl.read(0, &mut buf).unwrap();
    assert_eq!(buf, page(0, 2));
    ftl.read(1, &mut buf).unwrap();
    assert_eq!(buf, page(1, 1));
}
