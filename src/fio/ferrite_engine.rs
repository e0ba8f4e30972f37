//! `ioengine=ferrite`: jobs run in-process against an FTL namespace over emulated NAND devices
//! (RAM, or one file per device), configured by the job's `ferrite_*` options:
//!
//! | option | default | meaning |
//! | --- | --- | --- |
//! | `ferrite_devices` | 4 | NAND devices under the FTL |
//! | `ferrite_capacity` | offset + size | logical bytes of the namespace |
//! | `ferrite_pages_per_block` | 64 | 4 KiB pages per erase block |
//! | `ferrite_op` | 0.125 | over-provisioning ratio |
//! | `ferrite_backend` | mem | `mem` (RAM) or `file` (device files under `ferrite_dir`) |
//! | `ferrite_dir` | - | directory of the device files (file backend) |
//!
//! The FTL's API is synchronous and takes 4 KiB logical pages: offsets and block sizes must be
//! multiples of 4096. A write of N pages is N page writes; fsync is an FTL flush.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ftl::{Ftl, FtlConfig};

use super::engine::{DiskUtil, IoTarget};
use super::error::JobError;
use super::jobs::Job;
use super::options::FerriteBackend;
use crate::bench_ftl::devices::{geometry_for, mem_devices};

/// The FTL's logical page.
pub const PAGE_BYTES: u64 = 4096;

#[derive(Debug)]
pub struct FerriteTarget {
    name: String,
    /// Reads and writes share the lock (the FTL is thread-safe); `finish` takes it alone.
    ftl: RwLock<Option<Ftl>>,
    size_bytes: u64,
    read_pages: AtomicU64,
    write_pages: AtomicU64,
    read_ns: AtomicU64,
    write_ns: AtomicU64,
    opened: Instant,
}

impl FerriteTarget {
    /// Formats an FTL big enough for `needed_bytes` (or `ferrite_capacity`).
    /// `name` is what "disk_util" calls the namespace.
    pub fn open(job: &Job, name: &str, needed_bytes: u64) -> Result<Self, JobError> {
        let f = &job.options.ferrite;
        let capacity = f.capacity_bytes.unwrap_or(needed_bytes);
        if capacity < PAGE_BYTES || !capacity.is_multiple_of(PAGE_BYTES) {
            return Err(job.error(
                "ferrite_capacity",
                format!("namespace size {capacity} is not a positive multiple of 4096"),
            ));
        }
        let pages_needed = capacity / PAGE_BYTES;
        let config = FtlConfig {
            op_ratio: f.op_ratio,
            ..FtlConfig::default()
        };
        // Raw pages for the logical pages plus over-provisioning, and a margin of blocks the FTL
        // keeps for itself (open blocks per stream and die, checkpoints): grown until it fits.
        let per_block = u64::from(f.pages_per_block);
        let devices = u64::from(f.devices);
        let mut blocks_per_device =
            ((pages_needed as f64 / (1.0 - f.op_ratio) / per_block as f64 / devices as f64).ceil()
                as u64
                + 16)
                .next_multiple_of(4);
        for _ in 0..8 {
            let geometry = geometry_for(
                f.devices,
                (blocks_per_device * devices) as u32,
                f.pages_per_block,
                PAGE_BYTES as u32,
            )
            .map_err(|e| job.error("ferrite_devices", format!("{e:#}")))?;
            let nands = match f.backend {
                FerriteBackend::Mem => mem_devices(geometry, f.devices),
                FerriteBackend::File => {
                    let Some(dir) = &f.dir else {
                        return Err(
                            job.error("ferrite_backend", "ferrite_backend=file needs ferrite_dir=")
                        );
                    };
                    let dir = std::path::Path::new(dir).join(&job.name);
                    crate::glue::file_devices(&dir, geometry, f.devices)
                }
            }
            .map_err(|e| job.error("ferrite_backend", format!("{e:#}")))?;
            let ftl = Ftl::format(nands, config.clone())
                .map_err(|e| job.error("ioengine", format!("formatting the FTL: {e}")))?;
            if ftl.logical_pages() >= pages_needed {
                return Ok(Self {
                    name: name.to_string(),
                    ftl: RwLock::new(Some(ftl)),
                    size_bytes: capacity,
                    read_pages: AtomicU64::new(0),
                    write_pages: AtomicU64::new(0),
                    read_ns: AtomicU64::new(0),
                    write_ns: AtomicU64::new(0),
                    opened: Instant::now(),
                });
            }
            blocks_per_device = (blocks_per_device * 5 / 4).next_multiple_of(4);
        }
        Err(job.error(
            "ferrite_capacity",
            format!("could not size an FTL for {capacity} bytes"),
        ))
    }

    fn with_ftl<T>(&self, f: impl FnOnce(&Ftl) -> Result<T, String>) -> Result<T, String> {
        let guard = self
            .ftl
            .read()
            .map_err(|_| "FTL lock poisoned".to_string())?;
        let ftl = guard.as_ref().ok_or("the FTL is closed")?;
        f(ftl)
    }

    fn pages(offset: u64, len: u64) -> Result<(u64, u64), String> {
        if !offset.is_multiple_of(PAGE_BYTES) || !len.is_multiple_of(PAGE_BYTES) {
            return Err(format!(
                "I/O at {offset} of {len} bytes is not aligned to the FTL's 4096-byte pages"
            ));
        }
        Ok((offset / PAGE_BYTES, len / PAGE_BYTES))
    }
}

impl IoTarget for FerriteTarget {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn granularity_bytes(&self) -> u64 {
        PAGE_BYTES
    }

    fn keeps_data(&self) -> bool {
        true
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        let (first, _) = Self::pages(offset, buf.len() as u64)?;
        let start = Instant::now();
        let result = self.with_ftl(|ftl| {
            for (i, page) in buf.chunks_mut(PAGE_BYTES as usize).enumerate() {
                ftl.read(first + i as u64, page)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        self.read_pages
            .fetch_add((buf.len() as u64) / PAGE_BYTES, Ordering::Relaxed);
        self.read_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        let (first, _) = Self::pages(offset, data.len() as u64)?;
        let start = Instant::now();
        let result = self.with_ftl(|ftl| {
            for (i, page) in data.chunks(PAGE_BYTES as usize).enumerate() {
                ftl.write(first + i as u64, page, false)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        self.write_pages
            .fetch_add((data.len() as u64) / PAGE_BYTES, Ordering::Relaxed);
        self.write_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }

    fn trim(&self, offset: u64, len: u64) -> Result<(), String> {
        let (first, count) = Self::pages(offset, len)?;
        self.with_ftl(|ftl| ftl.trim(first, count).map_err(|e| e.to_string()))
    }

    fn sync(&self) -> Result<(), String> {
        self.with_ftl(|ftl| ftl.flush().map_err(|e| e.to_string()))
    }

    fn disk_util(&self) -> Option<DiskUtil> {
        let read_ticks = self.read_ns.load(Ordering::Relaxed) / 1_000_000;
        let write_ticks = self.write_ns.load(Ordering::Relaxed) / 1_000_000;
        let wall_ms = (self.opened.elapsed().as_millis() as u64).max(1);
        Some(DiskUtil {
            name: self.name.clone(),
            read_ios: self.read_pages.load(Ordering::Relaxed),
            write_ios: self.write_pages.load(Ordering::Relaxed),
            read_ticks,
            write_ticks,
            in_queue: read_ticks + write_ticks,
            util: (100.0 * (read_ticks + write_ticks) as f64 / wall_ms as f64).min(100.0),
            ..DiskUtil::default()
        })
    }

    fn finish(&self) -> Result<(), String> {
        let mut guard = self
            .ftl
            .write()
            .map_err(|_| "FTL lock poisoned".to_string())?;
        if let Some(ftl) = guard.take() {
            ftl.close().map_err(|e| format!("closing the FTL: {e}"))?;
        }
        Ok(())
    }
}
