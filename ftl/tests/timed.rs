#![allow(clippy::unwrap_used)]
//! The FTL over `TimedNand`-wrapped `MemNand`s: format, write, read back, and every NAND
//! operation it issued recorded with the latency the timing model gives it.

use std::sync::Arc;
use std::time::Instant;

use ftl::nand::timing::{Clock, ClockMode, TimedNand, TimingConfig, VirtualClock, clock_for};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};

fn geometry() -> Geometry {
    Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 16,
        pages_per_block: 16,
        page_size: 4096,
        oob_size: 64,
    }
}

fn timed_devices(n: u32, clock: &Arc<VirtualClock>) -> Vec<Arc<TimedNand>> {
    (0..n)
        .map(|i| {
            let mem = MemNand::new(geometry(), FaultConfig::none().for_device(i), None).unwrap();
            let clock = clock.clone() as Arc<dyn Clock>;
            Arc::new(TimedNand::new(Arc::new(mem), &TimingConfig::default(), clock).unwrap())
        })
        .collect()
}

fn page(lpa: u64, version: u8) -> Vec<u8> {
    let mut p = vec![version; 4096];
    p[..8].copy_from_slice(&lpa.to_le_bytes());
    p
}

#[test]
fn ftl_over_timed_devices_reads_back_and_records_latency() {
    let clock = Arc::new(VirtualClock::stepping());
    let devices = timed_devices(2, &clock);
    let dyn_devices = devices.iter().map(|d| d.clone() as Arc<dyn Nand>).collect();
    let ftl = Ftl::format(dyn_devices, FtlConfig::default()).unwrap();
    let pages = ftl.logical_pages();
    // Twice the logical space: the FTL must collect garbage on the timed devices too.
    for i in 0..pages * 2 {
        let lpa = (i * 7) % pages;
        ftl.write(lpa, &page(lpa, (i / pages) as u8 + 1), false)
            .unwrap();
    }
    ftl.flush().unwrap();
    let mut buf = vec![0; 4096];
    for lpa in 0..pages {
        ftl.read(lpa, &mut buf).unwrap();
        assert_eq!(buf, page(lpa, 2), "lpa {lpa}");
    }
    assert!(ftl.stats().gc_runs > 0, "GC ran on timed devices");

    // One synchronous caller on a stepping clock: every operation finds its die and bus idle,
    // so each kind has exactly its service time, and the clock is the sum of all of them.
    let config = TimingConfig::default();
    let xfer_ns = config.transfer_ns(4096 + 64);
    let mut total_ns = 0;
    for device in &devices {
        let l = device.latency();
        let nand = device.stats();
        assert_eq!(l.erase.count, nand.blocks_erased);
        assert_eq!(l.program.count, nand.pages_programmed);
        assert_eq!(l.read.count, nand.pages_read + nand.oob_reads);
        assert!(l.erase.count > 0 && l.program.count > 0 && l.read.count > 0);
        assert_eq!((l.erase.min_ns, l.erase.max_ns), (3_000_000, 3_000_000));
        assert_eq!(
            (l.program.min_ns, l.program.max_ns),
            (600_000 + xfer_ns, 600_000 + xfer_ns)
        );
        assert_eq!(l.read.max_ns, 50_000 + xfer_ns, "whole-page reads");
        // Reads of a range or of the OOB alone move fewer bytes.
        let oob_only_ns = 50_000 + config.transfer_ns(64);
        assert!(l.read.min_ns >= oob_only_ns, "{}", l.read.min_ns);
        assert_eq!(l.read.wait_ns + l.program.wait_ns + l.erase.wait_ns, 0);
        total_ns += l.read.total_ns + l.program.total_ns + l.erase.total_ns;
        assert_eq!(
            l.read.quantile_upper_ns(0.99),
            Some(l.read.max_ns),
            "all reads fall in one bucket capped by the max"
        );
    }
    assert_eq!(clock.now_ns(), total_ns);
}

#[test]
fn rule_violations_stay_errors_and_cost_no_time() {
    let clock = Arc::new(VirtualClock::stepping());
    let device = timed_devices(1, &clock).pop().unwrap();
    let data = vec![1; 4096];
    let oob = vec![0; 64];
    assert!(
        device.program_page(0, 1, &data, &oob).is_err(),
        "out of order"
    );
    assert!(
        device.program_page(999, 0, &data, &oob).is_err(),
        "out of range"
    );
    assert_eq!(clock.now_ns(), 0);
    assert_eq!(device.latency().program.count, 0);
    device.program_page(0, 0, &data, &oob).unwrap();
    let mut back = vec![0; 4096];
    let mut back_oob = vec![0; 64];
    device.read_page(0, 0, &mut back, &mut back_oob).unwrap();
    assert_eq!(back, data);
    assert_eq!(device.latency().read.count, 1);
}

#[test]
fn real_time_mode_makes_the_caller_wait() {
    let config = TimingConfig {
        clock: ClockMode::RealTime,
        ..TimingConfig::default()
    };
    let mem = MemNand::new(geometry(), FaultConfig::none(), None).unwrap();
    let clock = clock_for(config.clock);
    let device = TimedNand::new(Arc::new(mem), &config, clock).unwrap();
    let started = Instant::now();
    device.erase_block(3).unwrap();
    assert!(
        started.elapsed().as_micros() >= 3_000,
        "a 3 ms erase returned after {:?}",
        started.elapsed()
    );
}
