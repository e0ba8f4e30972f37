//! Typed job options: each supported fio option, parsed from its raw text with fio's rules.
//!
//! `JobOptions::apply` takes one raw option and returns what fio 3.33 would print for it under
//! `--debug=parse` (`out=` values), so the comparison test against real fio checks the very code
//! that fills the typed options. An option fio knows but Ferrite does not run is an error naming
//! it and its line; so is an option nobody knows.

use serde::{Deserialize, Serialize};

use super::error::JobError;
use super::lexer::RawOption;
use super::units::{
    SizeValue, parse_bool, parse_bytes, parse_float, parse_size, parse_time_us, split_parts,
};

/// The three data directions fio reports separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ddir {
    Read,
    Write,
    Trim,
}

impl Ddir {
    pub const ALL: [Ddir; 3] = [Ddir::Read, Ddir::Write, Ddir::Trim];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Ddir::Read => "read",
            Ddir::Write => "write",
            Ddir::Trim => "trim",
        }
    }
}

/// A value per direction (read, write, trim), as fio's `bs=4k,8k,16k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerDir<T> {
    pub read: T,
    pub write: T,
    pub trim: T,
}

impl<T: Clone> PerDir<T> {
    pub fn all(value: T) -> Self {
        Self {
            read: value.clone(),
            write: value.clone(),
            trim: value,
        }
    }

    pub fn get(&self, ddir: Ddir) -> &T {
        match ddir {
            Ddir::Read => &self.read,
            Ddir::Write => &self.write,
            Ddir::Trim => &self.trim,
        }
    }

    fn set(&mut self, ddir: Ddir, value: T) {
        match ddir {
            Ddir::Read => self.read = value,
            Ddir::Write => self.write = value,
            Ddir::Trim => self.trim = value,
        }
    }

    /// Stores parsed parts as fio does: part i sets direction i, and the last part given also
    /// fills the directions after it; an empty part leaves its direction as it was.
    fn set_parts(&mut self, parts: &[Option<T>]) {
        for (i, ddir) in Ddir::ALL.iter().enumerate() {
            let part = if i < parts.len() {
                parts[i].clone()
            } else {
                parts.last().cloned().flatten()
            };
            if let Some(v) = part {
                self.set(*ddir, v);
            }
        }
    }
}

/// `rw=`: the I/O pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RwPattern {
    Read,
    Write,
    Trim,
    RandRead,
    RandWrite,
    RandTrim,
    ReadWrite,
    RandRw,
    TrimWrite,
    RandTrimWrite,
}

impl RwPattern {
    const NAMES: [(&'static str, RwPattern); 11] = [
        ("read", RwPattern::Read),
        ("write", RwPattern::Write),
        ("trim", RwPattern::Trim),
        ("randread", RwPattern::RandRead),
        ("randwrite", RwPattern::RandWrite),
        ("randtrim", RwPattern::RandTrim),
        ("rw", RwPattern::ReadWrite),
        ("readwrite", RwPattern::ReadWrite),
        ("randrw", RwPattern::RandRw),
        ("trimwrite", RwPattern::TrimWrite),
        ("randtrimwrite", RwPattern::RandTrimWrite),
    ];

    pub fn is_random(self) -> bool {
        matches!(
            self,
            RwPattern::RandRead
                | RwPattern::RandWrite
                | RwPattern::RandTrim
                | RwPattern::RandRw
                | RwPattern::RandTrimWrite
        )
    }

    /// Does this pattern issue I/O of direction `ddir`?
    pub fn has(self, ddir: Ddir) -> bool {
        use RwPattern::*;
        match ddir {
            Ddir::Read => matches!(self, Read | RandRead | ReadWrite | RandRw),
            Ddir::Write => matches!(
                self,
                Write | RandWrite | ReadWrite | RandRw | TrimWrite | RandTrimWrite
            ),
            Ddir::Trim => matches!(self, Trim | RandTrim | TrimWrite | RandTrimWrite),
        }
    }

    /// Patterns that mix reads and writes by `rwmixread`.
    pub fn is_mixed_rw(self) -> bool {
        matches!(self, RwPattern::ReadWrite | RwPattern::RandRw)
    }
}

/// `random_distribution=`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Distribution {
    Random,
    Zipf {
        theta: f64,
    },
    Pareto {
        h: f64,
    },
    /// Gaussian around the middle of the range, `dev_percent` its standard deviation in percent
    /// of the range.
    Normal {
        dev_percent: f64,
    },
}

/// `verify=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifyKind {
    None,
    Md5,
    Crc32c,
    Pattern,
}

/// `ioengine=`: where the I/O goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineKind {
    /// In-process against an FTL namespace (`ferrite_*` options).
    Ferrite,
    /// A regular file (`filename=`), positioned reads and writes.
    Psync,
    /// fio's `sync` engine: the same calls as psync here (the seek is folded into the call).
    Sync,
    /// No data at all: every I/O completes at once (fio's `null`).
    Null,
    /// An NBD export (`uri=`), through Ferrite's NBD client.
    Nbd,
    /// A vhost-user-blk backend at `filename=SOCKET`, through libblkio.
    VhostUser,
}

/// `unified_rw_reporting=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnifiedReporting {
    None,
    Mixed,
    Both,
}

/// One `bssplit` entry: blocks of `bs_bytes` for `percent` of the I/Os.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BsSplitEntry {
    pub bs_bytes: u64,
    pub percent: u32,
}

/// Where the ferrite engine keeps its NAND devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FerriteBackend {
    Mem,
    File,
}

/// The `ferrite_*` options (Ferrite's own; real fio does not know them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FerriteOptions {
    /// NAND devices under the FTL.
    pub devices: u32,
    /// Logical capacity of the namespace; by default the job's offset + size.
    pub capacity_bytes: Option<u64>,
    pub pages_per_block: u32,
    /// Over-provisioning ratio of the FTL.
    pub op_ratio: f64,
    pub backend: FerriteBackend,
    /// Directory of the device files (file backend).
    pub dir: Option<String>,
}

impl Default for FerriteOptions {
    fn default() -> Self {
        Self {
            devices: 4,
            capacity_bytes: None,
            pages_per_block: 64,
            op_ratio: 0.125,
            backend: FerriteBackend::Mem,
            dir: None,
        }
    }
}

/// What fio 3.33 prints as `out=` for one part of an option under `--debug=parse`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum TraceValue {
    Int(u64),
    Float(f64),
}

/// fio's default `percentile_list`.
pub const DEFAULT_PERCENTILES: [f64; 17] = [
    1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95,
    99.99,
];

/// fio's default `randseed`.
pub const DEFAULT_RANDSEED: u64 = 0x89;

/// Every option of one job, typed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    pub name: Option<String>,
    pub description: Option<String>,
    pub rw: RwPattern,
    /// `rw=randread:N`: N I/Os at consecutive offsets before a new random offset.
    pub rw_sequential_ios: u64,
    /// `rw=read:N`: a hole of N bytes after each sequential I/O.
    pub rw_skip_bytes: u64,
    pub rwmix_read_percent: u32,
    pub bs_bytes: PerDir<u64>,
    pub bsrange_bytes: Option<PerDir<(u64, u64)>>,
    pub bssplit: Option<PerDir<Vec<BsSplitEntry>>>,
    pub size: Option<SizeValue>,
    pub offset: SizeValue,
    pub io_size_bytes: Option<u64>,
    pub filename: Option<String>,
    /// `uri=`: the NBD export of `ioengine=nbd`.
    pub uri: Option<String>,
    pub iodepth: u32,
    pub ioengine: EngineKind,
    pub direct: bool,
    pub runtime_us: Option<u64>,
    pub time_based: bool,
    pub ramp_time_us: u64,
    pub startdelay_us: u64,
    pub loops: u64,
    pub norandommap: bool,
    pub randrepeat: bool,
    pub randseed: u64,
    pub random_distribution: Distribution,
    pub rate_bytes_per_s: PerDir<u64>,
    pub rate_iops: PerDir<u64>,
    pub thinktime_us: u64,
    /// `fsync=N`: a sync after every N writes (0 = never).
    pub fsync_every_writes: u64,
    pub end_fsync: bool,
    pub verify: VerifyKind,
    pub verify_pattern: Option<Vec<u8>>,
    pub do_verify: bool,
    pub verify_only: bool,
    pub zero_buffers: bool,
    pub refill_buffers: bool,
    pub buffer_compress_percentage: u32,
    pub kb_base: u64,
    pub percentile_list: Vec<f64>,
    pub unified_rw_reporting: UnifiedReporting,
    pub numjobs: u32,
    pub stonewall: bool,
    pub new_group: bool,
    pub wait_for: Option<String>,
    pub group_reporting: bool,
    pub ferrite: FerriteOptions,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            name: None,
            description: None,
            rw: RwPattern::Read,
            rw_sequential_ios: 1,
            rw_skip_bytes: 0,
            rwmix_read_percent: 50,
            bs_bytes: PerDir::all(4096),
            bsrange_bytes: None,
            bssplit: None,
            size: None,
            offset: SizeValue::Bytes(0),
            io_size_bytes: None,
            filename: None,
            uri: None,
            iodepth: 1,
            ioengine: EngineKind::Psync,
            direct: false,
            runtime_us: None,
            time_based: false,
            ramp_time_us: 0,
            startdelay_us: 0,
            loops: 1,
            norandommap: false,
            randrepeat: true,
            randseed: DEFAULT_RANDSEED,
            random_distribution: Distribution::Random,
            rate_bytes_per_s: PerDir::all(0),
            rate_iops: PerDir::all(0),
            thinktime_us: 0,
            fsync_every_writes: 0,
            end_fsync: false,
            verify: VerifyKind::None,
            verify_pattern: None,
            do_verify: true,
            verify_only: false,
            zero_buffers: false,
            refill_buffers: false,
            buffer_compress_percentage: 0,
            kb_base: 1024,
            percentile_list: DEFAULT_PERCENTILES.to_vec(),
            unified_rw_reporting: UnifiedReporting::None,
            numjobs: 1,
            stonewall: false,
            new_group: false,
            wait_for: None,
            group_reporting: false,
            ferrite: FerriteOptions::default(),
        }
    }
}

/// Options fio 3.33 has that Ferrite's runner does not: named so that the error says "not
/// supported" rather than "unknown". Not exhaustive: any other name is "unknown".
const KNOWN_UNSUPPORTED: &[&str] = &[
    "directory",
    "nrfiles",
    "filesize",
    "fill_device",
    "file_service_type",
    "openfiles",
    "blockalign",
    "ba",
    "bs_unaligned",
    "bs_is_seq_rand",
    "zonemode",
    "zonesize",
    "zonerange",
    "zoneskip",
    "iodepth_batch",
    "iodepth_batch_complete",
    "iodepth_low",
    "buffered",
    "sync",
    "fdatasync",
    "sync_file_range",
    "overwrite",
    "create_serialize",
    "create_fsync",
    "invalidate",
    "pre_read",
    "cpus_allowed",
    "cpumask",
    "nice",
    "prio",
    "prioclass",
    "thinktime_spin",
    "thinktime_blocks",
    "rate_min",
    "rate_process",
    "ratecycle",
    "latency_target",
    "max_latency",
    "verify_interval",
    "verify_offset",
    "verify_backlog",
    "verify_async",
    "verify_fatal",
    "verify_dump",
    "verify_state_save",
    "experimental_verify",
    "trim_percentage",
    "write_bw_log",
    "write_lat_log",
    "write_iops_log",
    "write_hist_log",
    "log_avg_msec",
    "per_job_logs",
    "continue_on_error",
    "exitall",
    "exitall_on_error",
    "random_generator",
    "percentage_random",
    "allrandrepeat",
    "lat_percentiles",
    "clat_percentiles",
    "slat_percentiles",
    "dedupe_percentage",
    "buffer_pattern",
    "scramble_buffers",
    "iomem",
    "mem",
    "hugepage-size",
    "clocksource",
    "gtod_reduce",
    "disable_lat",
    "disable_clat",
    "disable_slat",
    "disable_bw_measurement",
];

fn values(o: &RawOption) -> Result<&str, JobError> {
    o.value
        .as_deref()
        .ok_or_else(|| JobError::option(o, "needs a value (name=value)"))
}

fn err(o: &RawOption) -> impl Fn(String) -> JobError + '_ {
    move |m| JobError::option(o, m)
}

impl JobOptions {
    /// Applies one raw option. Returns the values fio 3.33 prints for it as `out=` under
    /// `--debug=parse` (one per part given), or None for the option kinds fio prints none for
    /// (strings, choices, ranges).
    pub fn apply(&mut self, o: &RawOption) -> Result<Option<Vec<TraceValue>>, JobError> {
        let name = o.name.as_str();
        let kb = self.kb_base;
        let e = err(o);
        let int = |v: u64| Some(vec![TraceValue::Int(v)]);
        match name {
            "name" => self.name = Some(values(o)?.to_string()),
            "description" => self.description = Some(values(o)?.to_string()),
            "rw" | "readwrite" => {
                self.apply_rw(o)?;
                return Ok(None);
            }
            "rwmixread" | "rwmixwrite" => {
                let v = parse_u64(values(o)?, kb).map_err(&e)?;
                if v > 100 {
                    return Err(e(format!("{v} is not a percentage (0..=100)")));
                }
                let read = if name == "rwmixread" { v } else { 100 - v };
                self.rwmix_read_percent = read as u32;
                return Ok(int(v));
            }
            "bs" | "blocksize" => {
                let parts = per_dir_parts(values(o)?, |p| parse_bytes(p, kb)).map_err(&e)?;
                if parts.iter().flatten().any(|&b| b == 0) {
                    return Err(e("a block size of 0".into()));
                }
                self.bs_bytes.set_parts(&parts);
                return Ok(Some(trace_ints(&parts)));
            }
            "bsrange" | "blocksize_range" => {
                let mut ranges = Vec::new();
                for part in values(o)?.split(',') {
                    ranges.push(if part.is_empty() {
                        None
                    } else {
                        Some(parse_range(part, kb).map_err(&e)?)
                    });
                }
                let mut per_dir = self
                    .bsrange_bytes
                    .unwrap_or_else(|| self.bs_bytes.map_pairs());
                per_dir.set_parts(&ranges);
                self.bsrange_bytes = Some(per_dir);
                return Ok(None);
            }
            "bssplit" => {
                self.bssplit = Some(parse_bssplit(values(o)?, kb).map_err(&e)?);
                return Ok(None);
            }
            "size" => {
                let v = parse_size(values(o)?, kb).map_err(&e)?;
                self.size = Some(v);
                return Ok(int(v.fio_encoding()));
            }
            "offset" => {
                let v = parse_size(values(o)?, kb).map_err(&e)?;
                self.offset = v;
                return Ok(int(v.fio_encoding()));
            }
            "io_size" | "io_limit" => {
                let v = parse_bytes(values(o)?, kb).map_err(&e)?;
                self.io_size_bytes = Some(v);
                return Ok(int(v));
            }
            "filename" => self.filename = Some(values(o)?.to_string()),
            "uri" => self.uri = Some(values(o)?.to_string()),
            "iodepth" => {
                let v = parse_u64(values(o)?, kb).map_err(&e)?;
                if v == 0 || v > 65536 {
                    return Err(e(format!("iodepth {v} not in 1..=65536")));
                }
                self.iodepth = v as u32;
                return Ok(int(v));
            }
            "ioengine" => self.ioengine = parse_engine(o)?,
            "direct" => {
                self.direct = parse_bool(values(o)?).map_err(&e)?;
                return Ok(int(u64::from(self.direct)));
            }
            "runtime" | "timeout" => {
                let v = parse_time_us(values(o)?, true).map_err(&e)?;
                self.runtime_us = (v > 0).then_some(v);
                return Ok(int(v));
            }
            "ramp_time" => {
                self.ramp_time_us = parse_time_us(values(o)?, true).map_err(&e)?;
                return Ok(int(self.ramp_time_us));
            }
            "startdelay" => {
                self.startdelay_us = parse_time_us(values(o)?, true).map_err(&e)?;
                return Ok(int(self.startdelay_us));
            }
            "thinktime" => {
                self.thinktime_us = parse_time_us(values(o)?, false).map_err(&e)?;
                return Ok(int(self.thinktime_us));
            }
            "loops" => {
                let v = parse_u64(values(o)?, kb).map_err(&e)?;
                if v == 0 {
                    return Err(e("loops must be at least 1".into()));
                }
                self.loops = v;
                return Ok(int(v));
            }
            "time_based" => return flag(o, &mut self.time_based),
            "norandommap" => return flag(o, &mut self.norandommap),
            "zero_buffers" => return flag(o, &mut self.zero_buffers),
            "refill_buffers" => return flag(o, &mut self.refill_buffers),
            "verify_only" => return flag(o, &mut self.verify_only),
            "stonewall" | "wait_for_previous" => return flag(o, &mut self.stonewall),
            "new_group" => return flag(o, &mut self.new_group),
            "group_reporting" => return flag(o, &mut self.group_reporting),
            "randrepeat" | "rand_repeatable" => {
                self.randrepeat = parse_bool(values(o)?).map_err(&e)?;
                return Ok(int(u64::from(self.randrepeat)));
            }
            "end_fsync" => {
                self.end_fsync = parse_bool(values(o)?).map_err(&e)?;
                return Ok(int(u64::from(self.end_fsync)));
            }
            "do_verify" => {
                self.do_verify = parse_bool(values(o)?).map_err(&e)?;
                return Ok(int(u64::from(self.do_verify)));
            }
            "randseed" => {
                self.randseed = parse_u64(values(o)?, kb).map_err(&e)?;
                return Ok(int(self.randseed));
            }
            "random_distribution" => {
                self.random_distribution = parse_distribution(values(o)?).map_err(&e)?;
            }
            "rate" => {
                let parts = per_dir_parts(values(o)?, |p| parse_bytes(p, kb)).map_err(&e)?;
                self.rate_bytes_per_s.set_parts(&parts);
                return Ok(Some(trace_ints(&parts)));
            }
            "rate_iops" => {
                let parts = per_dir_parts(values(o)?, |p| parse_u64(p, kb)).map_err(&e)?;
                self.rate_iops.set_parts(&parts);
                return Ok(Some(trace_ints(&parts)));
            }
            "fsync" => {
                self.fsync_every_writes = parse_u64(values(o)?, kb).map_err(&e)?;
                return Ok(int(self.fsync_every_writes));
            }
            "verify" => self.verify = parse_verify(o)?,
            "verify_pattern" => {
                self.verify_pattern = Some(parse_pattern(values(o)?).map_err(&e)?);
            }
            "buffer_compress_percentage" => {
                let v = parse_u64(values(o)?, kb).map_err(&e)?;
                if v > 100 {
                    return Err(e(format!("{v} is not a percentage (0..=100)")));
                }
                self.buffer_compress_percentage = v as u32;
                return Ok(int(v));
            }
            "kb_base" => {
                self.kb_base = match values(o)? {
                    "1024" => 1024,
                    "1000" => 1000,
                    other => return Err(e(format!("{other:?}: kb_base is 1024 or 1000"))),
                };
            }
            "percentile_list" => {
                let mut list = Vec::new();
                for part in values(o)?.split(':') {
                    let v = parse_float(part).map_err(&e)?;
                    if !(v > 0.0 && v <= 100.0) {
                        return Err(e(format!("percentile {v} not in (0, 100]")));
                    }
                    list.push(v);
                }
                if list.len() > 20 {
                    return Err(e("at most 20 percentiles (fio's limit)".into()));
                }
                let trace = list.iter().map(|&v| TraceValue::Float(v)).collect();
                self.percentile_list = list;
                return Ok(Some(trace));
            }
            "unified_rw_reporting" => {
                self.unified_rw_reporting = match values(o)? {
                    "none" | "0" => UnifiedReporting::None,
                    "mixed" | "1" => UnifiedReporting::Mixed,
                    "both" | "2" => UnifiedReporting::Both,
                    other => return Err(e(format!("{other:?}: expected none, mixed or both"))),
                };
            }
            "numjobs" => {
                let v = parse_u64(values(o)?, kb).map_err(&e)?;
                if v == 0 || v > 4096 {
                    return Err(e(format!("numjobs {v} not in 1..=4096")));
                }
                self.numjobs = v as u32;
                return Ok(int(v));
            }
            "wait_for" => self.wait_for = Some(values(o)?.to_string()),
            "ferrite_devices" => {
                let v = parse_u64(values(o)?, kb).map_err(&e)?;
                if v == 0 || v > 256 {
                    return Err(e(format!("{v} devices: 1..=256")));
                }
                self.ferrite.devices = v as u32;
            }
            "ferrite_capacity" => {
                self.ferrite.capacity_bytes = Some(parse_bytes(values(o)?, kb).map_err(&e)?);
            }
            "ferrite_pages_per_block" => {
                let v = parse_u64(values(o)?, kb).map_err(&e)?;
                self.ferrite.pages_per_block =
                    u32::try_from(v).map_err(|_| e("too large".into()))?;
            }
            "ferrite_op" => {
                let v = parse_float(values(o)?).map_err(&e)?;
                if !(0.01..0.9).contains(&v) {
                    return Err(e(format!("over-provisioning ratio {v} not in [0.01, 0.9)")));
                }
                self.ferrite.op_ratio = v;
            }
            "ferrite_backend" => {
                self.ferrite.backend = match values(o)? {
                    "mem" => FerriteBackend::Mem,
                    "file" => FerriteBackend::File,
                    other => return Err(e(format!("{other:?}: expected mem or file"))),
                };
            }
            "ferrite_dir" => self.ferrite.dir = Some(values(o)?.to_string()),
            other if KNOWN_UNSUPPORTED.contains(&other) => {
                return Err(JobError::option(
                    o,
                    "is a fio option that `ferrite fio` does not support",
                ));
            }
            _ => return Err(JobError::option(o, "unknown option")),
        }
        Ok(None)
    }

    fn apply_rw(&mut self, o: &RawOption) -> Result<(), JobError> {
        let text = values(o)?;
        let (pattern, postfix) = match text.split_once(':') {
            Some((p, n)) => (p, Some(n)),
            None => (text, None),
        };
        let rw = RwPattern::NAMES
            .iter()
            .find(|(n, _)| *n == pattern)
            .map(|(_, rw)| *rw)
            .ok_or_else(|| {
                JobError::option(
                    o,
                    format!(
                        "{pattern:?} is not an I/O pattern (read, write, trim, randread, \
                         randwrite, randtrim, rw, readwrite, randrw, trimwrite, randtrimwrite)"
                    ),
                )
            })?;
        self.rw = rw;
        self.rw_sequential_ios = 1;
        self.rw_skip_bytes = 0;
        if let Some(n) = postfix {
            let v = parse_u64(n, self.kb_base).map_err(err(o))?;
            if rw.is_random() {
                if v == 0 || v > u64::from(u32::MAX) {
                    return Err(JobError::option(
                        o,
                        format!("{n:?}: the :N postfix of a random pattern is 1..=4294967295"),
                    ));
                }
                self.rw_sequential_ios = v;
            } else {
                self.rw_skip_bytes = v;
            }
        }
        Ok(())
    }

    /// The block sizes direction `ddir` may use, smallest first (for buffer sizing).
    pub fn max_bs(&self, ddir: Ddir) -> u64 {
        let mut max = *self.bs_bytes.get(ddir);
        if let Some(r) = &self.bsrange_bytes {
            max = max.max(r.get(ddir).1);
        }
        if let Some(split) = &self.bssplit {
            max = split
                .get(ddir)
                .iter()
                .map(|e| e.bs_bytes)
                .fold(max, u64::max);
        }
        max
    }
}

impl PerDir<u64> {
    fn map_pairs(self) -> PerDir<(u64, u64)> {
        PerDir {
            read: (self.read, self.read),
            write: (self.write, self.write),
            trim: (self.trim, self.trim),
        }
    }
}

/// A flag option (fio's STR_SET): bare means on, `=0` off, `=1` on.
fn flag(o: &RawOption, field: &mut bool) -> Result<Option<Vec<TraceValue>>, JobError> {
    *field = match o.value.as_deref() {
        None => true,
        Some(v) => parse_bool(v).map_err(err(o))?,
    };
    Ok(Some(vec![TraceValue::Int(u64::from(*field))]))
}

/// An integer option: fio reads these with its size parser (so `1k` is 1024), no percentages.
fn parse_u64(text: &str, kb_base: u64) -> Result<u64, String> {
    parse_bytes(text, kb_base)
}

fn per_dir_parts<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<Option<T>>, String> {
    let parts = split_parts(text);
    if parts.len() > 3 {
        return Err(format!(
            "{text:?} has {} values; at most 3 (read,write,trim)",
            parts.len()
        ));
    }
    if parts.iter().all(|p| p.is_empty()) {
        return Err("needs a value".into());
    }
    parts
        .into_iter()
        .map(|p| {
            if p.is_empty() {
                Ok(None)
            } else {
                parse(p).map(Some)
            }
        })
        .collect()
}

fn trace_ints(parts: &[Option<u64>]) -> Vec<TraceValue> {
    parts
        .iter()
        .flatten()
        .map(|&v| TraceValue::Int(v))
        .collect()
}

/// `4k-16k` (or `4k:16k`); fio swaps the ends when the first is larger.
fn parse_range(text: &str, kb_base: u64) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once('-')
        .or_else(|| text.split_once(':'))
        .ok_or_else(|| format!("{text:?} is not a range (min-max)"))?;
    let (a, b) = (parse_bytes(a, kb_base)?, parse_bytes(b, kb_base)?);
    if a == 0 || b == 0 {
        return Err(format!("{text:?}: a block size of 0"));
    }
    Ok((a.min(b), a.max(b)))
}

/// `bssplit=4k/50:8k/50,16k/100`: per direction (comma), entries `size/percent` (colon). An entry
/// with no percentage shares what the others leave of 100. One list applies to every direction.
fn parse_bssplit(text: &str, kb_base: u64) -> Result<PerDir<Vec<BsSplitEntry>>, String> {
    let lists: Vec<&str> = text.split(',').collect();
    if lists.len() > 3 {
        return Err(format!("{text:?}: at most 3 lists (read,write,trim)"));
    }
    let mut parsed = Vec::new();
    for list in &lists {
        if list.is_empty() {
            parsed.push(None);
            continue;
        }
        let mut entries = Vec::new();
        let mut missing = 0u32;
        let mut total = 0u32;
        for entry in list.split(':') {
            let (size, percent) = match entry.split_once('/') {
                Some((s, p)) => {
                    let p: u32 = p
                        .parse()
                        .map_err(|_| format!("{entry:?}: percentage {p:?} is not a number"))?;
                    total += p;
                    (s, Some(p))
                }
                None => {
                    missing += 1;
                    (entry, None)
                }
            };
            let bs = parse_bytes(size, kb_base)?;
            if bs == 0 {
                return Err(format!("{entry:?}: a block size of 0"));
            }
            entries.push((bs, percent));
        }
        if total > 100 {
            return Err(format!(
                "{list:?}: percentages add up to {total}, more than 100"
            ));
        }
        let share = (100 - total).checked_div(missing).unwrap_or(0);
        let mut entries: Vec<BsSplitEntry> = entries
            .into_iter()
            .map(|(bs_bytes, p)| BsSplitEntry {
                bs_bytes,
                percent: p.unwrap_or(share),
            })
            .collect();
        entries.sort_by_key(|e| e.percent);
        parsed.push(Some(entries));
    }
    let first = parsed
        .iter()
        .flatten()
        .next()
        .cloned()
        .ok_or_else(|| "needs a value".to_string())?;
    let mut per_dir = PerDir::all(first);
    per_dir.set_parts(&parsed);
    Ok(per_dir)
}

fn parse_distribution(text: &str) -> Result<Distribution, String> {
    let (kind, arg) = match text.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (text, None),
    };
    let arg_value = || -> Result<f64, String> {
        let a = arg.ok_or_else(|| format!("{kind} needs a parameter, e.g. {kind}:1.2"))?;
        parse_float(a)
    };
    match kind {
        "random" if arg.is_none() => Ok(Distribution::Random),
        "zipf" => {
            let theta = arg_value()?;
            if theta <= 0.0 || theta == 1.0 {
                return Err(format!("zipf theta {theta}: must be > 0 and not 1"));
            }
            Ok(Distribution::Zipf { theta })
        }
        "pareto" => {
            let h = arg_value()?;
            if !(h > 0.0 && h < 1.0) {
                return Err(format!("pareto h {h}: must be in (0, 1)"));
            }
            Ok(Distribution::Pareto { h })
        }
        "normal" => {
            let dev_percent = arg_value()?;
            if !(dev_percent > 0.0 && dev_percent <= 100.0) {
                return Err(format!("normal deviation {dev_percent}% not in (0, 100]"));
            }
            Ok(Distribution::Normal { dev_percent })
        }
        _ => Err(format!(
            "{text:?}: expected random, zipf:THETA, pareto:H or normal:DEV (zoned and gauss are \
             not supported)"
        )),
    }
}

fn parse_engine(o: &RawOption) -> Result<EngineKind, JobError> {
    match values(o)? {
        "ferrite" => Ok(EngineKind::Ferrite),
        "psync" | "pvsync" => Ok(EngineKind::Psync),
        "sync" => Ok(EngineKind::Sync),
        "null" => Ok(EngineKind::Null),
        "nbd" => Ok(EngineKind::Nbd),
        "vhost-user" => Ok(EngineKind::VhostUser),
        e @ "libblkio" => Err(JobError::option(
            o,
            format!(
                "ioengine={e} is not built yet in `ferrite fio` (use ferrite, nbd, vhost-user, \
                 psync, sync or null)"
            ),
        )),
        other => Err(JobError::option(
            o,
            format!(
                "ioengine={other} is not supported (ferrite, nbd, vhost-user, psync, sync or null)"
            ),
        )),
    }
}

fn parse_verify(o: &RawOption) -> Result<VerifyKind, JobError> {
    match values(o)? {
        "0" | "null" => Ok(VerifyKind::None),
        "md5" => Ok(VerifyKind::Md5),
        "crc32c" | "crc32c-intel" => Ok(VerifyKind::Crc32c),
        "pattern" => Ok(VerifyKind::Pattern),
        other => Err(JobError::option(
            o,
            format!("verify={other} is not supported (crc32c, md5, pattern)"),
        )),
    }
}

/// `verify_pattern`: hexadecimal (`0xdeadbeef`, bytes in the order written) and quoted strings
/// (`"abc"`), one after the other.
pub fn parse_pattern(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(hex) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            let digits = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
            if digits == 0 {
                return Err(format!("{text:?}: 0x with no hexadecimal digits"));
            }
            let digits_str = &hex[..digits];
            // An odd count gets a leading zero, as fio does.
            let padded = if digits % 2 == 1 {
                format!("0{digits_str}")
            } else {
                digits_str.to_string()
            };
            for pair in padded.as_bytes().chunks(2) {
                let s = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
                out.push(u8::from_str_radix(s, 16).map_err(|e| e.to_string())?);
            }
            rest = &hex[digits..];
        } else if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| format!("{text:?}: unterminated string"))?;
            out.extend_from_slice(&quoted.as_bytes()[..end]);
            rest = &quoted[end + 1..];
        } else {
            return Err(format!(
                "{text:?}: expected 0xHEX or \"string\" parts (decimal numbers and %o are not \
                 supported)"
            ));
        }
    }
    if out.is_empty() {
        return Err("empty pattern".into());
    }
    Ok(out)
}
