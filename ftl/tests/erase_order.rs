//! Erase barriers off the write path: a block is erased only after everything that replaced its
//! pages (relocated copies, newer writes, trim entries) was covered by a sync that completed.
//!
//! The devices are RAM devices that report slow syncs, so the FTL syncs them in the background,
//! and each sync sleeps a little so writes and erases go on while it runs. A wrapper records what
//! every program stored and what each completed sync made durable, and checks at every erase.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use ftl::format::oob::{PageKind, PageRecord};
use ftl::format::trim_log;
use ftl::nand::{BlockInfo, FaultConfig, Geometry, MemNand, Nand, NandError, NandStats, ReadInfo};
use ftl::{Ftl, FtlConfig};

/// (lpa, data_seq) facts a page carries: a data page's record, or a trim-log page's entries.
type Facts = Vec<(u32, u64)>;

#[derive(Debug, Default)]
struct Log {
    /// Per device: programs no completed sync covers yet (block, erase epoch, facts).
    volatile: Vec<Vec<(u32, u64, Facts)>>,
    /// Per logical page: durable facts and where they are (device, block, data_seq).
    durable: HashMap<u32, Vec<(usize, u32, u64)>>,
    /// What each block holds now, from its programs.
    contents: HashMap<(usize, u32), Facts>,
    /// Erases of each block so far: a sync completing after an erase must not make the erased
    /// programs durable.
    epoch: HashMap<(usize, u32), u64>,
    erases_checked: u64,
    facts_checked: u64,
}

#[derive(Debug)]
struct Recorder {
    inner: Arc<MemNand>,
    dev: usize,
    log: Arc<Mutex<Log>>,
}

fn facts(data: &[u8], oob: &[u8]) -> Facts {
    match PageRecord::decode_unverified(oob) {
        Ok(r) if r.kind == PageKind::Data && r.lpa != u32::MAX => vec![(r.lpa, r.data_seq)],
        Ok(r) if r.kind == PageKind::TrimLog => trim_log::decode(data)
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.lpa, e.data_seq))
            .collect(),
        _ => Vec::new(),
    }
}

impl Nand for Recorder {
    fn geometry(&self) -> &Geometry {
        self.inner.geometry()
    }

    fn program_page(
        &self,
        block: u32,
        page: u32,
        data: &[u8],
        oob: &[u8],
    ) -> Result<(), NandError> {
        self.inner.program_page(block, page, data, oob)?;
        let f = facts(data, oob);
        let mut log = self.log.lock();
        let epoch = log.epoch.get(&(self.dev, block)).copied().unwrap_or(0);
        log.contents
            .entry((self.dev, block))
            .or_default()
            .extend(f.iter().copied());
        log.volatile[self.dev].push((block, epoch, f));
        Ok(())
    }

    fn read_page(
        &self,
        block: u32,
        page: u32,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        self.inner.read_page(block, page, data, oob)
    }

    fn read_range(
        &self,
        block: u32,
        page: u32,
        offset: usize,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        self.inner.read_range(block, page, offset, data, oob)
    }

    fn read_oob(&self, block: u32, page: u32, oob: &mut [u8]) -> Result<ReadInfo, NandError> {
        self.inner.read_oob(block, page, oob)
    }

    fn erase_block(&self, block: u32) -> Result<(), NandError> {
        {
            let mut log = self.log.lock();
            let key = (self.dev, block);
            let held = log.contents.remove(&key).unwrap_or_default();
            for &(lpa, seq) in &held {
                let covered = log.durable.get(&lpa).is_some_and(|copies| {
                    copies.iter().any(|&(d, b, s)| (d, b) != key && s >= seq)
                });
                assert!(
                    covered,
                    "device {} block {block} erased while logical page {lpa} (data_seq {seq}) \
                     has no durable replacement elsewhere",
                    self.dev
                );
                log.facts_checked += 1;
            }
            log.erases_checked += 1;
            for copies in log.durable.values_mut() {
                copies.retain(|&(d, b, _)| (d, b) != key);
            }
            *log.epoch.entry(key).or_default() += 1;
        }
        self.inner.erase_block(block)
    }

    fn mark_bad(&self, block: u32) -> Result<(), NandError> {
        self.inner.mark_bad(block)
    }

    fn block_info(&self, block: u32) -> Result<BlockInfo, NandError> {
        self.inner.block_info(block)
    }

    fn sync(&self) -> Result<(), NandError> {
        let taken = std::mem::take(&mut self.log.lock().volatile[self.dev]);
        // A disk sync takes milliseconds: writers and erases go on meanwhile.
        std::thread::sleep(std::time::Duration::from_millis(2));
        self.inner.sync()?;
        let mut log = self.log.lock();
        for (block, epoch, f) in taken {
            if log.epoch.get(&(self.dev, block)).copied().unwrap_or(0) != epoch {
                continue;
            }
            for (lpa, seq) in f {
                log.durable
                    .entry(lpa)
                    .or_default()
                    .push((self.dev, block, seq));
            }
        }
        Ok(())
    }

    fn sync_is_slow(&self) -> bool {
        true
    }

    fn stats(&self) -> NandStats {
        self.inner.stats()
    }
}

fn rig(devices: usize) -> (Vec<Arc<dyn Nand>>, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log {
        volatile: vec![Vec::new(); devices],
        ..Log::default()
    }));
    let devs = (0..devices)
        .map(|i| {
            let inner = Arc::new(
                MemNand::new(
                    common::geometry(2, 16, 16),
                    FaultConfig::none().for_device(i as u32),
                    None,
                )
                .unwrap(),
            );
            Arc::new(Recorder {
                inner,
                dev: i,
                log: log.clone(),
            }) as Arc<dyn Nand>
        })
        .collect();
    (devs, log)
}

/// Random overwrites and trims, many times the capacity, from several threads: GC collects and
/// erases all the time, with its syncs in the background. Every erase is checked by the recorder;
/// at the end every page reads back its last version.
#[test]
fn no_block_is_erased_before_its_replacements_are_synced() {
    let (devs, log) = rig(2);
    let ftl = Arc::new(Ftl::format(devs, FtlConfig::default()).unwrap());
    let pages = ftl.logical_pages();
    let threads = 4u64;
    let versions: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let ftl = ftl.clone();
                s.spawn(move || {
                    // Each thread owns the logical pages congruent to t, so it knows their last
                    // version without locking.
                    let mine: Vec<u64> = (t..pages).step_by(threads as usize).collect();
                    let mut version = vec![0u64; mine.len()];
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                    for n in 0..(6 * pages / threads) {
                        x = ftl::nand::mix(x);
                        let i = (x % mine.len() as u64) as usize;
                        if x.is_multiple_of(11) {
                            ftl.trim(mine[i], 1).unwrap();
                            version[i] = 0;
                        } else {
                            version[i] = n + 1;
                            ftl.write(mine[i], &common::page(mine[i], n + 1), false)
                                .unwrap();
                        }
                        if n % 500 == 499 {
                            ftl.flush().unwrap();
                        }
                    }
                    version
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    ftl.flush().unwrap();
    for (t, version) in versions.iter().enumerate() {
        for (i, &v) in version.iter().enumerate() {
            let lpa = t as u64 + i as u64 * threads;
            assert_eq!(common::read_version(&ftl, lpa).unwrap(), v, "lpa {lpa}");
        }
    }
    let stats = ftl.stats();
    let log = log.lock();
    assert!(stats.gc_runs > 0, "GC never ran: {stats:?}");
    assert!(log.erases_checked > 0 && log.facts_checked > 0);
}
