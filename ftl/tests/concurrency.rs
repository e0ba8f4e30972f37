#![allow(clippy::unwrap_used)]
//! Lock-free reads against a writer and GC: readers never see another page's data, a torn page,
//! or a version older than one they already saw for that page.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use common::{PAGE, Rig, Rng, decode, geometry, page};
use ftl::FtlConfig;
use ftl::nand::FaultConfig;

#[test]
fn readers_race_writer_and_gc() {
    let config = FtlConfig {
        op_ratio: 0.05,
        ..FtlConfig::default()
    };
    let rig = Rig::new(2, geometry(2, 16, 16), &FaultConfig::none(), config);
    let ftl = Arc::new(rig.format());
    let pages = ftl.logical_pages();
    // Versions only grow per page; every page written once before the readers start.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..pages).map(|_| AtomicU64::new(0)).collect());
    let mut next = 1u64;
    for lpa in 0..pages {
        ftl.write(lpa, &page(lpa, next), false).unwrap();
        acked[lpa as usize].store(next, Ordering::Release);
        next += 1;
    }
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (ftl, acked, done) = (ftl.clone(), acked.clone(), done.clone());
            thread::spawn(move || {
                let mut seen = vec![0u64; pages as usize];
                let mut rng = Rng::new(100 + r);
                let mut buf = vec![0u8; PAGE];
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) || reads < 1000 {
                    let lpa = rng.below(pages);
                    // What was acknowledged before the read started is the least it may return.
                    let floor = acked[lpa as usize].load(Ordering::Acquire);
                    ftl.read(lpa, &mut buf).unwrap();
                    let (got_lpa, v) = decode(&buf).unwrap_or_else(|e| panic!("lpa {lpa}: {e}"));
                    assert_eq!(got_lpa, lpa, "reader {r} got another page's data");
                    assert!(
                        v >= seen[lpa as usize],
                        "lpa {lpa}: {v} after {}",
                        seen[lpa as usize]
                    );
                    assert!(v >= floor, "lpa {lpa}: {v} older than acknowledged {floor}");
                    seen[lpa as usize] = v;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // Skewed overwrites: GC runs all the time.
    let mut rng = Rng::new(7);
    for _ in 0..12 * pages {
        let lpa = if rng.chance(0.8) {
            rng.below(pages / 8)
        } else {
            rng.below(pages)
        };
        ftl.write(lpa, &page(lpa, next), false).unwrap();
        acked[lpa as usize].store(next, Ordering::Release);
        next += 1;
        if next.is_multiple_of(1000) {
            ftl.flush().unwrap();
        }
    }
    done.store(true, Ordering::Release);
    let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    let s = ftl.stats();
    eprintln!("{reads} reads; {s:?}");
    assert!(s.gc_runs > 50, "{s:?}");
    for lpa in 0..pages {
        assert_eq!(
            common::read_version(&ftl, lpa).unwrap(),
            acked[lpa as usize].load(Ordering::Relaxed)
        );
    }
}
