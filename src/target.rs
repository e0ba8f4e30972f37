//! The seam between the CLI and the FTL: the traits `sim` and `bench ftl` drive, and the error and
//! statistics types they see. `ftl::Ftl` implements these through a few lines of glue
//! (see `glue.rs`); the in-memory fakes in `fake/` implement them for tests.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use ftl::nand::{Nand, PowerRail};
use serde::Serialize;
use thiserror::Error;

/// The FTL errors the harnesses tell apart (mirrors `ftl::FtlError`; the rest go to `Other`).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Spare blocks exhausted: the FTL no longer accepts writes.
    #[error("read-only: spare blocks exhausted")]
    ReadOnly,
    #[error("media error at lpa {lpa}")]
    Media { lpa: u64 },
    #[error("lpa {lpa} out of range")]
    OutOfRange { lpa: u64 },
    /// The NAND power rail tripped during the operation.
    #[error("power lost")]
    PowerLost,
    #[error("{0}")]
    Other(String),
}

/// Garbage-collection policy (mirrors `ftl::GcPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GcChoice {
    Greedy,
    CostBenefit,
}

impl fmt::Display for GcChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GcChoice::Greedy => "greedy",
            GcChoice::CostBenefit => "cost-benefit",
        })
    }
}

/// The FTL settings the CLI chooses (the glue maps them onto `ftl::FtlConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FtlOptions {
    pub op_ratio: f64,
    pub static_wear_leveling: bool,
    pub stream_separation: bool,
    pub gc_policy: GcChoice,
}

impl Default for FtlOptions {
    fn default() -> Self {
        Self {
            op_ratio: 0.125,
            static_wear_leveling: true,
            stream_separation: true,
            gc_policy: GcChoice::Greedy,
        }
    }
}

/// FTL statistics (mirrors `ftl::FtlStats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TargetStats {
    pub host_pages_written: u64,
    pub nand_pages_written: u64,
    pub gc_runs: u64,
    pub gc_pages_moved: u64,
    /// Host writes that waited for foreground GC.
    pub foreground_gc_stalls: u64,
    pub erase_count_min: u64,
    pub erase_count_max: u64,
    pub erase_count_mean: f64,
    pub erase_count_stddev: f64,
    pub free_blocks: u64,
    pub bad_blocks: u64,
    pub percentage_used: f64,
    pub available_spare: f64,
}

/// A block device of 4 KiB logical pages, as `sim` drives it.
pub trait SimTarget {
    fn logical_pages(&self) -> u64;
    /// Never-written or trimmed pages read as zeroes.
    fn read(&self, lpa: u64, buf: &mut [u8]) -> Result<(), TargetError>;
    /// `durable`: force unit access (the write is durable when it returns).
    fn write(&self, lpa: u64, data: &[u8], durable: bool) -> Result<(), TargetError>;
    fn trim(&self, lpa: u64, count: u64) -> Result<(), TargetError>;
    fn write_zeroes(&self, lpa: u64, count: u64) -> Result<(), TargetError>;
    /// Every acknowledged write and trim is durable when this returns.
    fn flush(&self) -> Result<(), TargetError>;
}

/// What `bench ftl` needs on top of [`SimTarget`].
pub trait BenchTarget: SimTarget {
    fn stats(&self) -> TargetStats;
    /// Reads `lpas` into `out` (4 KiB each, in order), as a client with that many reads queued
    /// would issue them; a target may overlap their work. The default reads them one by one.
    fn read_many(&self, lpas: &[u64], out: &mut [u8]) -> Result<(), TargetError> {
        for (&lpa, buf) in lpas.iter().zip(out.chunks_mut(ftl::LOGICAL_PAGE_BYTES)) {
            self.read(lpa, buf)?;
        }
        Ok(())
    }
}

/// What one simulated machine is made of: its devices (all on one power rail) and FTL settings.
#[derive(Debug)]
pub struct SimEnv {
    pub devices: Vec<Arc<dyn Nand>>,
    pub rail: Arc<PowerRail>,
    pub options: FtlOptions,
    /// The simulation seed (fakes use it for their own choices).
    pub seed: u64,
}

/// Creates, reopens and cleanly closes targets over a [`SimEnv`]. A crash is the harness dropping
/// the target without `close`, cutting power on the devices and calling `open` again.
pub trait SimFactory {
    type Target: SimTarget;
    fn format(&mut self, env: &SimEnv) -> Result<Self::Target, TargetError>;
    /// Recovers after a clean close or a crash.
    fn open(&mut self, env: &SimEnv) -> Result<Self::Target, TargetError>;
    fn close(&mut self, target: Self::Target) -> Result<(), TargetError>;
}

/// A [`SimFactory`] made of three functions, for targets (like `ftl::Ftl`) whose state lives
/// entirely on the devices.
pub struct FnFactory<T, Fmt, Open, Close> {
    format: Fmt,
    open: Open,
    close: Close,
    _target: PhantomData<fn() -> T>,
}

impl<T, Fmt, Open, Close> fmt::Debug for FnFactory<T, Fmt, Open, Close> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnFactory")
    }
}

impl<T, Fmt, Open, Close> FnFactory<T, Fmt, Open, Close>
where
    T: SimTarget,
    Fmt: FnMut(Vec<Arc<dyn Nand>>, &FtlOptions) -> Result<T, TargetError>,
    Open: FnMut(Vec<Arc<dyn Nand>>, &FtlOptions) -> Result<T, TargetError>,
    Close: FnMut(T) -> Result<(), TargetError>,
{
    pub fn new(format: Fmt, open: Open, close: Close) -> Self {
        Self {
            format,
            open,
            close,
            _target: PhantomData,
        }
    }
}

impl<T, Fmt, Open, Close> SimFactory for FnFactory<T, Fmt, Open, Close>
where
    T: SimTarget,
    Fmt: FnMut(Vec<Arc<dyn Nand>>, &FtlOptions) -> Result<T, TargetError>,
    Open: FnMut(Vec<Arc<dyn Nand>>, &FtlOptions) -> Result<T, TargetError>,
    Close: FnMut(T) -> Result<(), TargetError>,
{
    type Target = T;

    fn format(&mut self, env: &SimEnv) -> Result<T, TargetError> {
        (self.format)(env.devices.clone(), &env.options)
    }

    fn open(&mut self, env: &SimEnv) -> Result<T, TargetError> {
        (self.open)(env.devices.clone(), &env.options)
    }

    fn close(&mut self, target: T) -> Result<(), TargetError> {
        (self.close)(target)
    }
}
