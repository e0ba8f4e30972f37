#![allow(clippy::unwrap_used)]
//! The FTL over FileNand: state survives a close and a process restart (devices reopened from
//! their files), and flushed data survives dropping the FTL without a close.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Model, Op, Rng, apply, fill, geometry, is_power_lost, random_op};
use ftl::nand::{FaultConfig, FileErase, FileNand, Nand, PowerRail};
use ftl::{Ftl, FtlConfig};

fn create(dir: &Path, n: u32) -> Vec<Arc<dyn Nand>> {
    create_with(dir, n, FileErase::DropData)
}

/// `create` with erases in `erase` mode.
fn create_with(dir: &Path, n: u32, erase: FileErase) -> Vec<Arc<dyn Nand>> {
    (0..n)
        .map(|i| {
            let d = FileNand::create(
                &dir.join(format!("nand{i}.img")),
                geometry(2, 16, 16),
                FaultConfig::none().for_device(i),
                None,
            )
            .unwrap();
            d.store().set_erase(erase);
            Arc::new(d) as Arc<dyn Nand>
        })
        .collect()
}

/// Opens the device files again, as a new process would.
fn reopen(dir: &Path, n: u32) -> Vec<Arc<dyn Nand>> {
    reopen_with(dir, n, FileErase::DropData)
}

/// `reopen` with erases in `erase` mode (the mode is not in the file: each open sets it).
fn reopen_with(dir: &Path, n: u32, erase: FileErase) -> Vec<Arc<dyn Nand>> {
    (0..n)
        .map(|i| {
            let d = FileNand::open(
                &dir.join(format!("nand{i}.img")),
                FaultConfig::none().for_device(i),
                None,
            )
            .unwrap();
            d.store().set_erase(erase);
            Arc::new(d) as Arc<dyn Nand>
        })
        .collect()
}

fn workload(ftl: &Ftl, model: &mut Model, seed: u64) {
    let mut rng = Rng::new(seed);
    fill(ftl, model);
    for _ in 0..3 * model.pages() {
        let lpa = rng.below(model.pages());
        if rng.chance(0.05) {
            apply(ftl, model, Op::Trim { lpa, count: 1 }).unwrap();
        } else {
            apply(ftl, model, Op::Write { lpa, fua: false }).unwrap();
        }
    }
}

#[test]
fn close_and_reopen_from_files_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let ftl = Ftl::format(create(dir.path(), 2), FtlConfig::default()).unwrap();
    let mut model = Model::new(ftl.logical_pages());
    workload(&ftl, &mut model, 1);
    let stats = ftl.stats();
    ftl.close().unwrap();
    let (ftl, report) = Ftl::open(reopen(dir.path(), 2), FtlConfig::default()).unwrap();
    assert!(report.clean, "{report:?}");
    assert_eq!(report.pointers_unresolved, 0);
    model.verify_exact(&ftl);
    let again = ftl.stats();
    assert_eq!(again.host_pages_written, stats.host_pages_written);
    assert_eq!(again.logical_pages, stats.logical_pages);
    assert_eq!(again.erase_count_max, stats.erase_count_max);
}

#[test]
fn flushed_data_survives_drop_without_close() {
    flushed_data_survives_drop_without_close_with(FileErase::DropData);
}

/// Erases that leave the data bytes in the file (what `ferrite serve` does for every namespace):
/// an erased page's old bytes with a dropped OOB must never come back as data.
#[test]
fn flushed_data_survives_drop_without_close_keeping_erased_data() {
    flushed_data_survives_drop_without_close_with(FileErase::KeepData);
}

fn flushed_data_survives_drop_without_close_with(erase: FileErase) {
    let dir = tempfile::tempdir().unwrap();
    let ftl = Ftl::format(create_with(dir.path(), 2, erase), FtlConfig::default()).unwrap();
    let mut model = Model::new(ftl.logical_pages());
    workload(&ftl, &mut model, 2);
    ftl.flush().unwrap();
    model.flushed();
    assert!(
        ftl.stats().erase_count_max > 0,
        "the workload erased nothing"
    );
    drop(ftl);
    let (ftl, report) = Ftl::open(reopen_with(dir.path(), 2, erase), FtlConfig::default()).unwrap();
    assert!(!report.clean, "{report:?}");
    assert!(report.blocks_folded > 0);
    assert_eq!(report.pointers_unresolved, 0);
    model.verify_exact(&ftl);
    // And it goes on: more writes, clean close, reopen.
    workload(&ftl, &mut model, 3);
    ftl.close().unwrap();
    let (ftl, report) = Ftl::open(reopen_with(dir.path(), 2, erase), FtlConfig::default()).unwrap();
    assert!(report.clean);
    model.verify_exact(&ftl);
}

/// Power cuts at random points on file-backed devices: each device drops what was not durable
/// (a prefix of its pending pages survives, one page may be torn, in the files themselves), then a
/// new process opens the files and recovers. Every page must read a value it may legitimately hold.
#[test]
fn power_cuts_on_file_devices_recover_from_the_files() {
    power_cuts_on_file_devices_recover_with(FileErase::DropData);
}

/// The same with erases that leave the data bytes in the file: a page a power cut drops keeps
/// its old bytes and loses its OOB.
#[test]
fn power_cuts_on_file_devices_recover_keeping_erased_data() {
    power_cuts_on_file_devices_recover_with(FileErase::KeepData);
}

fn power_cuts_on_file_devices_recover_with(erase: FileErase) {
    let dir = tempfile::tempdir().unwrap();
    let n = 2;
    let rail = Arc::new(PowerRail::new());
    let faults = |i| {
        FaultConfig {
            torn_write_prob: 1.0,
            ..FaultConfig::none()
        }
        .for_device(i)
    };
    let path = |i: u32| dir.path().join(format!("nand{i}.img"));
    let mut devices: Vec<Arc<FileNand>> = (0..n)
        .map(|i| {
            let d = FileNand::create(&path(i), geometry(2, 16, 16), faults(i), Some(rail.clone()));
            let d = d.unwrap();
            d.store().set_erase(erase);
            Arc::new(d)
        })
        .collect();
    let as_dyn = |d: &[Arc<FileNand>]| d.iter().map(|x| x.clone() as Arc<dyn Nand>).collect();
    let ftl = Ftl::format(as_dyn(&devices), FtlConfig::default()).unwrap();
    let mut model = Model::new(ftl.logical_pages());
    fill(&ftl, &mut model);
    ftl.flush().unwrap();
    model.flushed();
    let mut ftl = Some(ftl);
    let mut rng = Rng::new(11);
    let mut folded = 0;
    for round in 0..8u64 {
        rail.arm(rng.below(600));
        let live = ftl.take().unwrap();
        let mut tripped = false;
        for _ in 0..20_000 {
            let op = random_op(&mut rng, model.pages());
            match apply(&live, &mut model, op) {
                Ok(()) => {}
                Err(e) if is_power_lost(&e) => {
                    tripped = true;
                    break;
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert!(tripped, "round {round}: the power never failed");
        drop(live);
        for (i, d) in devices.iter().enumerate() {
            d.power_cut(round * 16 + i as u64).unwrap();
        }
        rail.restore();
        drop(devices);
        devices = (0..n)
            .map(|i| {
                let d = FileNand::open(&path(i), faults(i), Some(rail.clone())).unwrap();
                d.store().set_erase(erase);
                Arc::new(d)
            })
            .collect();
        let (reopened, report) = Ftl::open(as_dyn(&devices), FtlConfig::default()).unwrap();
        assert_eq!(report.pointers_unresolved, 0, "round {round}: {report:?}");
        folded += report.blocks_folded;
        model.verify_after_crash(&reopened);
        ftl = Some(reopened);
    }
    assert!(folded > 0);
}

/// With `fdatasync` behind each device's sync, a flush syncs every device that took a write, once
/// each (in parallel, so a barrier costs one disk latency, not one per device).
#[test]
fn a_flush_syncs_each_written_file_device_once() {
    let dir = tempfile::tempdir().unwrap();
    let devices = create(dir.path(), 4);
    assert!(devices.iter().all(|d| d.sync_is_slow()));
    let ftl = Ftl::format(devices.clone(), FtlConfig::default()).unwrap();
    let before: Vec<u64> = devices.iter().map(|d| d.stats().syncs).collect();
    let page = vec![0x5au8; 4096];
    for lpa in 0..64 {
        ftl.write(lpa, &page, false).unwrap();
    }
    ftl.flush().unwrap();
    let synced: Vec<u64> = devices
        .iter()
        .zip(&before)
        .map(|(d, b)| d.stats().syncs - b)
        .collect();
    assert_eq!(synced, vec![1; 4], "syncs per device");
    drop(ftl);
    let (ftl, _) = Ftl::open(reopen(dir.path(), 4), FtlConfig::default()).unwrap();
    let mut buf = vec![0u8; 4096];
    for lpa in 0..64 {
        ftl.read(lpa, &mut buf).unwrap();
        assert_eq!(buf, page, "page {lpa}");
    }
}
