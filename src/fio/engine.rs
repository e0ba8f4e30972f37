//! The I/O targets a job drives (`ioengine=`). Every engine is synchronous: a call returns when
//! the I/O is complete. Queue depth is emulated with `iodepth` worker threads per job, each with
//! one I/O in flight (see `runner.rs`). Engines implement `IoTarget` and get a case in
//! `Targets::open` (`nbd` in nbd_engine.rs; `vhost-user` is not built yet).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::diskstats::DiskWatch;
use super::error::JobError;
use super::ferrite_engine::FerriteTarget;
use super::jobs::Job;
use super::nbd_engine::NbdTarget;
use super::options::{EngineKind, RwPattern};
use super::units::SizeValue;

/// Linux's O_DIRECT on x86-64 and aarch64 (std has no constant for it).
const O_DIRECT: i32 = 0o40000;

/// One I/O target, shared by all worker threads of the jobs that name it.
pub trait IoTarget: Send + Sync + std::fmt::Debug {
    /// Bytes addressable.
    fn size_bytes(&self) -> u64;
    /// Offsets and lengths must be multiples of this.
    fn granularity_bytes(&self) -> u64;
    /// Does the target keep data (false for `null`: reads return nothing meaningful)?
    fn keeps_data(&self) -> bool;
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String>;
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String>;
    fn trim(&self, offset: u64, len: u64) -> Result<(), String>;
    /// Makes completed writes durable (fio's fsync).
    fn sync(&self) -> Result<(), String>;
    /// Busy-time and per-target counters for fio's "disk_util", when the target has them.
    fn disk_util(&self) -> Option<DiskUtil> {
        None
    }
    /// Called once after the last job using the target has finished.
    fn finish(&self) -> Result<(), String> {
        Ok(())
    }
}

/// What fio prints in "disk_util" for a target.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DiskUtil {
    pub name: String,
    pub read_ios: u64,
    pub write_ios: u64,
    pub read_merges: u64,
    pub write_merges: u64,
    pub read_ticks: u64,
    pub write_ticks: u64,
    pub in_queue: u64,
    pub util: f64,
}

/// Targets by name, so that jobs naming the same `filename` share one target (as fio jobs share
/// a file): a verify job after a write job reads what the write job wrote.
#[derive(Debug, Default)]
pub struct Targets {
    by_name: Mutex<HashMap<String, Arc<dyn IoTarget>>>,
}

impl Targets {
    /// The target of `job`, opened on first use.
    pub fn open(&self, job: &Job) -> Result<Arc<dyn IoTarget>, JobError> {
        let o = &job.options;
        // An NBD job's target is its export: jobs naming the same uri share it.
        let filename = match (o.ioengine, &o.uri) {
            (EngineKind::Nbd, Some(uri)) => uri.clone(),
            _ => o.filename.clone().unwrap_or_else(|| default_filename(job)),
        };
        let key = format!("{:?}:{filename}", o.ioengine);
        let mut map = self
            .by_name
            .lock()
            .map_err(|_| JobError::plain("target map poisoned"))?;
        if let Some(t) = map.get(&key) {
            return Ok(t.clone());
        }
        let target: Arc<dyn IoTarget> = match o.ioengine {
            EngineKind::Null => Arc::new(NullTarget {
                size_bytes: needed_bytes(job)?,
            }),
            EngineKind::Psync | EngineKind::Sync => Arc::new(FileTarget::open(job)?),
            EngineKind::Nbd => Arc::new(NbdTarget::open(job)?),
            EngineKind::Ferrite => Arc::new(FerriteTarget::open(
                job,
                &format!("ferrite:{filename}"),
                needed_bytes(job)?,
            )?),
            EngineKind::VhostUser => Arc::new(super::vhost_engine::VhostUserTarget::open(job)?),
        };
        map.insert(key, target.clone());
        Ok(target)
    }

    /// Finishes every target (closes FTLs cleanly).
    pub fn finish_all(&self) -> Result<(), String> {
        let map = self
            .by_name
            .lock()
            .map_err(|_| "target map poisoned".to_string())?;
        for t in map.values() {
            t.finish()?;
        }
        Ok(())
    }

    pub fn disk_utils(&self) -> Vec<DiskUtil> {
        let Ok(map) = self.by_name.lock() else {
            return Vec::new();
        };
        let mut utils: Vec<DiskUtil> = map.values().filter_map(|t| t.disk_util()).collect();
        // Files on one disk report that disk once (the watch opened first saw the most).
        utils.sort_by(|a, b| a.name.cmp(&b.name).then(b.read_ios.cmp(&a.read_ios)));
        utils.dedup_by(|a, b| a.name == b.name);
        utils
    }
}

/// fio's default file name, `jobname.jobnum.filenum`: each numjobs clone has its own target;
/// sections with the same name share theirs.
fn default_filename(job: &Job) -> String {
    format!("{}.{}.0", job.name, job.clone_index)
}

/// The bytes a target must have for this job: offset + size (both may not be percentages when
/// there is nothing else to size the target by).
fn needed_bytes(job: &Job) -> Result<u64, JobError> {
    let o = &job.options;
    let size = match o.size {
        Some(SizeValue::Bytes(b)) if b > 0 => b,
        Some(SizeValue::Percent(_)) => {
            return Err(job.error(
                "size",
                "a percentage needs a target with a size of its own (a file, or \
                 ferrite_capacity=)",
            ));
        }
        _ => return Err(job.error("size", "this engine needs size= (the bytes to do I/O on)")),
    };
    let offset = match o.offset {
        SizeValue::Bytes(b) => b,
        SizeValue::Percent(_) => 0,
    };
    Ok(offset.saturating_add(size))
}

/// fio's `null` engine: I/O completes at once and moves no data.
#[derive(Debug)]
pub struct NullTarget {
    size_bytes: u64,
}

impl IoTarget for NullTarget {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    fn granularity_bytes(&self) -> u64 {
        1
    }
    fn keeps_data(&self) -> bool {
        false
    }
    fn read(&self, _offset: u64, _buf: &mut [u8]) -> Result<(), String> {
        Ok(())
    }
    fn write(&self, _offset: u64, _data: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn trim(&self, _offset: u64, _len: u64) -> Result<(), String> {
        Ok(())
    }
    fn sync(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A regular file (or block device) read and written with positioned calls (psync/sync).
#[derive(Debug)]
pub struct FileTarget {
    file: File,
    size_bytes: u64,
    direct: bool,
    disk: Option<DiskWatch>,
}

impl FileTarget {
    fn open(job: &Job) -> Result<Self, JobError> {
        let o = &job.options;
        let Some(name) = &o.filename else {
            return Err(job.error(
                "filename",
                "ioengine=psync/sync needs filename= (a regular file)",
            ));
        };
        let writes = o.rw.has(super::options::Ddir::Write) && !o.verify_only;
        let missing = !Path::new(name).exists();
        let mut opts = OpenOptions::new();
        opts.read(true)
            .write(writes || missing || o.rw.has(super::options::Ddir::Trim));
        // fio creates a missing file (and lays it out before reading it).
        opts.create(missing);
        if o.direct {
            opts.custom_flags(O_DIRECT);
        }
        let file = opts
            .open(name)
            .map_err(|e| job.error("filename", format!("opening {name}: {e}")))?;
        let current = file
            .metadata()
            .map_err(|e| job.error("filename", format!("{name}: {e}")))?
            .len();
        let wanted = match o.size {
            Some(SizeValue::Bytes(b)) => {
                let offset = match o.offset {
                    SizeValue::Bytes(off) => off,
                    SizeValue::Percent(p) => SizeValue::Percent(p).resolve(current),
                };
                offset.saturating_add(b)
            }
            _ => current,
        };
        if wanted == 0 {
            return Err(job.error("size", format!("{name} is empty and no size= is given")));
        }
        if wanted > current {
            if !writes {
                // fio lays the file out before reading it; so do we, with zeroes.
                let f = OpenOptions::new()
                    .write(true)
                    .open(name)
                    .map_err(|e| job.error("filename", format!("extending {name}: {e}")))?;
                f.set_len(wanted)
                    .map_err(|e| job.error("filename", format!("extending {name}: {e}")))?;
            } else {
                file.set_len(wanted)
                    .map_err(|e| job.error("filename", format!("extending {name}: {e}")))?;
            }
        }
        Ok(Self {
            file,
            size_bytes: wanted.max(current),
            direct: o.direct,
            disk: DiskWatch::for_file(Path::new(name)),
        })
    }
}

impl IoTarget for FileTarget {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    fn granularity_bytes(&self) -> u64 {
        if self.direct { 512 } else { 1 }
    }
    fn keeps_data(&self) -> bool {
        true
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| e.to_string())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| e.to_string())
    }
    fn trim(&self, _offset: u64, _len: u64) -> Result<(), String> {
        Err("trim on a regular file is not supported by `ferrite fio`".into())
    }
    fn sync(&self) -> Result<(), String> {
        self.file.sync_all().map_err(|e| e.to_string())
    }

    fn disk_util(&self) -> Option<DiskUtil> {
        self.disk.as_ref().and_then(DiskWatch::util)
    }
}

/// Patterns that write (the target must be writable).
pub fn writes(rw: RwPattern) -> bool {
    rw.has(super::options::Ddir::Write)
}
