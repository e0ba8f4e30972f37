//! Runs one seed: builds the devices and the target, drives the seed's operations, crashes and
//! reopens the target, and checks every read against the model. Any disagreement fails the seed.

use std::sync::Arc;

use ftl::nand::{MemNand, Nand, PowerRail, mix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::Model;
use super::page::{self, PAGE_SIZE};
use super::plan::{SeedPlan, Weights};
use crate::target::{SimEnv, SimFactory, SimTarget, TargetError};
use crate::workload::Workload;

/// What one seed did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub ops: u64,
    pub crashes: u64,
    /// Crashes injected while the target was recovering from a previous one.
    pub recovery_crashes: u64,
    pub clean_reopens: u64,
    pub reads_checked: u64,
    pub media_errors: u64,
    /// The target went read-only (spares exhausted) and the seed stopped writing.
    pub read_only: bool,
    /// The seed ran NAND pages of several logical pages (16 KiB).
    pub multi_slot_pages: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Write,
    Read,
    Trim,
    WriteZeroes,
    Flush,
    CloseReopen,
    Crash,
    ArmPowerCut,
}

fn op_table(w: &Weights) -> Vec<(Op, u32)> {
    vec![
        (Op::Write, w.write),
        (Op::Read, w.read),
        (Op::Trim, w.trim),
        (Op::WriteZeroes, w.write_zeroes),
        (Op::Flush, w.flush),
        (Op::CloseReopen, w.close_reopen),
        (Op::Crash, w.crash_between),
        (Op::ArmPowerCut, w.crash_mid_op),
    ]
}

struct Run<'a, F: SimFactory> {
    factory: &'a mut F,
    plan: SeedPlan,
    weights: Weights,
    env: SimEnv,
    mems: Vec<Arc<MemNand>>,
    target: Option<F::Target>,
    model: Model,
    workload: Workload,
    rng: ChaCha8Rng,
    buf: Vec<u8>,
    report: SeedReport,
    op_index: u64,
    verbose: bool,
}

/// Runs seed `seed` against targets made by `factory`. `Err` carries a human-readable reason.
pub fn run_seed<F: SimFactory>(
    factory: &mut F,
    seed: u64,
    verbose: bool,
) -> Result<SeedReport, String> {
    let plan = SeedPlan::new(seed);
    if verbose {
        eprintln!("{plan}");
    }
    let rail = Arc::new(PowerRail::new());
    let mut mems = Vec::with_capacity(plan.devices as usize);
    for i in 0..plan.devices {
        let dev = MemNand::new(plan.geometry, plan.faults.for_device(i), Some(rail.clone()))
            .map_err(|e| format!("device {i}: {e}"))?;
        mems.push(Arc::new(dev));
    }
    let env = SimEnv {
        devices: mems.iter().map(|m| m.clone() as Arc<dyn Nand>).collect(),
        rail,
        options: plan.options,
        seed,
    };
    let target = factory
        .format(&env)
        .map_err(|e| format!("format failed: {e}"))?;
    let pages = target.logical_pages();
    let workload = Workload::new(&plan.mix.workload(), pages, mix(seed ^ 0x776b))
        .map_err(|e| format!("workload: {e}"))?;
    let mut run = Run {
        factory,
        weights: plan.mix.weights(),
        plan,
        env,
        mems,
        target: Some(target),
        model: Model::new(pages),
        workload,
        rng: ChaCha8Rng::seed_from_u64(mix(seed ^ 0x6f70)),
        buf: vec![0; PAGE_SIZE],
        report: SeedReport::default(),
        op_index: 0,
        verbose,
    };
    run.run()
        .map_err(|why| format!("op {}: {why}", run.op_index))?;
    run.report.multi_slot_pages = run.plan.geometry.page_size > PAGE_SIZE as u32;
    Ok(run.report)
}

impl<F: SimFactory> Run<'_, F> {
    fn log(&self, line: impl FnOnce() -> String) {
        if self.verbose {
            eprintln!("  [{}] {}", self.op_index, line());
        }
    }

    fn target(&self) -> Result<&F::Target, String> {
        self.target
            .as_ref()
            .ok_or_else(|| "no open target".to_string())
    }

    fn pages(&self) -> u64 {
        self.model.pages()
    }

    fn run(&mut self) -> Result<(), String> {
        let table = op_table(&self.weights);
        let total: u32 = table.iter().map(|(_, w)| w).sum();
        for i in 0..u64::from(self.plan.ops) {
            self.op_index = i;
            if self.report.read_only {
                break;
            }
            let mut draw = self.rng.random_range(0..total);
            let op = table
                .iter()
                .find(|(_, w)| {
                    let hit = draw < *w;
                    draw = draw.saturating_sub(*w);
                    hit
                })
                .map_or(Op::Read, |(op, _)| *op);
            self.step(op)?;
            self.report.ops += 1;
            if self.env.rail.is_lost() {
                self.crash()?;
            }
        }
        self.op_index = u64::from(self.plan.ops);
        self.finish()
    }

    fn step(&mut self, op: Op) -> Result<(), String> {
        match op {
            Op::Write => self.write(),
            Op::Read => {
                let lpa = if self.rng.random_bool(0.5) {
                    self.workload.next_lpa()
                } else {
                    self.rng.random_range(0..self.pages())
                };
                self.read_checked(lpa, false)
            }
            Op::Trim | Op::WriteZeroes => self.zero(op == Op::Trim),
            Op::Flush => {
                self.log(|| "flush".into());
                match self.target()?.flush() {
                    Ok(()) => {
                        self.model.flush();
                        Ok(())
                    }
                    Err(e) => self.op_failed("flush", e),
                }
            }
            Op::CloseReopen => self.close_reopen(),
            Op::Crash => self.crash(),
            Op::ArmPowerCut => {
                let k = self.rng.random_range(0..32);
                self.log(|| format!("arm power cut at the {k}th NAND mutation from now"));
                self.env.rail.arm(k);
                Ok(())
            }
        }
    }

    fn write(&mut self) -> Result<(), String> {
        let lpa = self.workload.next_lpa();
        let v = self.model.next_version();
        let fua = self.rng.random_bool(self.weights.fua_prob);
        page::encode(lpa, v, &mut self.buf);
        self.log(|| format!("write lpa {lpa} v{v}{}", if fua { " fua" } else { "" }));
        match self.target()?.write(lpa, &self.buf, fua) {
            Ok(()) => {
                self.model.write(lpa, v, fua);
                Ok(())
            }
            Err(e) => {
                self.model.maybe_write(lpa, v);
                self.op_failed("write", e)
            }
        }
    }

    fn zero(&mut self, trim: bool) -> Result<(), String> {
        let lpa = self.workload.next_lpa();
        let count = self
            .rng
            .random_range(1..=self.weights.max_range)
            .min(self.pages() - lpa);
        let what = if trim { "trim" } else { "write-zeroes" };
        self.log(|| format!("{what} lpa {lpa} count {count}"));
        let target = self.target()?;
        let result = if trim {
            target.trim(lpa, count)
        } else {
            target.write_zeroes(lpa, count)
        };
        match result {
            Ok(()) => {
                self.model.zero(lpa, count);
                Ok(())
            }
            Err(e) => {
                self.model.maybe_zero(lpa, count);
                self.op_failed(what, e)
            }
        }
    }

    /// A mutating operation failed; the model already counts it as "may have happened".
    fn op_failed(&mut self, what: &str, e: TargetError) -> Result<(), String> {
        self.log(|| format!("{what} failed: {e}"));
        match e {
            TargetError::PowerLost if self.env.rail.is_lost() => Ok(()),
            TargetError::PowerLost => Err(format!("{what} reported power loss, but power is on")),
            TargetError::ReadOnly => {
                self.report.read_only = true;
                Ok(())
            }
            e => Err(format!("{what} failed: {e}")),
        }
    }

    fn read_checked(&mut self, lpa: u64, recovered: bool) -> Result<(), String> {
        let target = self.target.as_ref().ok_or("no open target")?;
        match target.read(lpa, &mut self.buf) {
            Ok(()) => {
                let got = page::decode(lpa, &self.buf);
                // In a full scan only the pages with a choice are worth a line.
                if !recovered || self.model.allowed(lpa).len() > 1 {
                    self.log(|| {
                        format!(
                            "read lpa {lpa} -> {got} (allowed {:?})",
                            self.model.allowed(lpa)
                        )
                    });
                }
                self.report.reads_checked += 1;
                let checked = if recovered {
                    self.model.check_recovered(lpa, &got)
                } else {
                    self.model.check_read(lpa, &got)
                };
                checked.map_err(|v| v.to_string())
            }
            Err(TargetError::Media { .. }) if self.plan.media_errors_possible() => {
                self.log(|| format!("read lpa {lpa}: media error (faults inject them)"));
                self.report.media_errors += 1;
                Ok(())
            }
            Err(TargetError::PowerLost) if !recovered && self.env.rail.is_lost() => Ok(()),
            Err(e) => Err(format!("read of lpa {lpa} failed: {e}")),
        }
    }

    fn verify_all(&mut self, recovered: bool) -> Result<(), String> {
        for lpa in 0..self.pages() {
            self.read_checked(lpa, recovered)?;
        }
        self.log(|| format!("verified all {} pages", self.pages()));
        Ok(())
    }

    /// Drops what was not durable on every device and powers the rail back on.
    fn power_cut(&mut self) -> Result<(), String> {
        let cut_seed =
            mix(self.plan.seed ^ (self.report.crashes + self.report.recovery_crashes) << 20);
        for (i, m) in self.mems.iter().enumerate() {
            m.power_cut(cut_seed ^ i as u64)
                .map_err(|e| format!("power cut of device {i}: {e}"))?;
        }
        self.env.rail.restore();
        Ok(())
    }

    /// Power fails now (or already failed mid-operation): drop the target, cut, reopen, verify.
    fn crash(&mut self) -> Result<(), String> {
        self.log(|| "CRASH".into());
        if !self.env.rail.is_lost() {
            // Whatever the dropped target still tries to do must not reach the media.
            self.env.rail.arm(0);
        }
        drop(self.target.take());
        self.power_cut()?;
        self.model.crash();
        self.report.crashes += 1;
        self.reopen()
    }

    fn close_reopen(&mut self) -> Result<(), String> {
        self.log(|| "close".into());
        let target = self.target.take().ok_or("no open target")?;
        match self.factory.close(target) {
            Ok(()) => {
                self.model.flush();
                if self.env.rail.is_lost() {
                    self.power_cut()?;
                    self.model.crash();
                    self.report.crashes += 1;
                } else {
                    self.report.clean_reopens += 1;
                }
                self.reopen()
            }
            Err(TargetError::PowerLost) if self.env.rail.is_lost() => {
                self.power_cut()?;
                self.model.crash();
                self.report.crashes += 1;
                self.reopen()
            }
            Err(TargetError::ReadOnly) if self.report.read_only => Ok(()),
            Err(e) => Err(format!("close failed: {e}")),
        }
    }

    /// Opens the target again (sometimes crashing it during recovery first) and reads every page.
    fn reopen(&mut self) -> Result<(), String> {
        for attempt in 0.. {
            if attempt < 2 && self.rng.random_bool(0.2) {
                let k = self.rng.random_range(0..64);
                self.log(|| format!("open, with a power cut at its {k}th NAND mutation"));
                self.env.rail.arm(k);
            } else {
                self.log(|| "open".into());
            }
            match self.factory.open(&self.env) {
                Ok(target) if !self.env.rail.is_lost() => {
                    self.env.rail.disarm();
                    if target.logical_pages() != self.pages() {
                        return Err(format!(
                            "reopened with {} logical pages instead of {}",
                            target.logical_pages(),
                            self.pages()
                        ));
                    }
                    self.target = Some(target);
                    break;
                }
                Ok(target) => drop(target),
                Err(TargetError::PowerLost) if self.env.rail.is_lost() => {}
                Err(e) => return Err(format!("open failed: {e}")),
            }
            self.log(|| "CRASH during recovery".into());
            self.report.recovery_crashes += 1;
            self.power_cut()?;
        }
        self.verify_all(true)
    }

    /// End of the seed: flush, check every page, close cleanly, reopen, check again, close.
    fn finish(&mut self) -> Result<(), String> {
        if !self.env.rail.is_lost() {
            self.env.rail.disarm();
        }
        if !self.report.read_only {
            match self.target()?.flush() {
                Ok(()) => self.model.flush(),
                Err(e) => self.op_failed("final flush", e)?,
            }
            if self.env.rail.is_lost() {
                self.crash()?;
            }
        }
        self.verify_all(false)?;
        self.close_reopen()?;
        if let Some(target) = self.target.take() {
            match self.factory.close(target) {
                Ok(()) | Err(TargetError::ReadOnly) => {}
                Err(e) => return Err(format!("final close failed: {e}")),
            }
        }
        Ok(())
    }
}
