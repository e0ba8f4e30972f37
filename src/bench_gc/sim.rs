//! The event loop of `bench gc`: volumes of timed devices, preconditioning, the measured window.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use ftl::nand::timing::{Clock, TimedNand};
use ftl::nand::{FaultConfig, MemNand, Nand};
use ftl::{Ftl, FtlConfig, GcTiming, GcWork};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::GcBenchParams;
use super::clock::RequestClock;
use super::probe::{Probe, ProbeNand, ReadCause, tail_causes};
use super::report::{GcBenchReport, LatencySummary, ModeReport, RatioSet, Ratios};
use crate::progress::Progress;

const PAGE_BYTES: usize = 4096;
/// Background GC units issued at one instant at most (each is one erase or one page move; the
/// scheduler runs out of idle dies long before this).
const GC_UNITS_PER_EVENT: u32 = 64;
/// A write held back by admission is issued anyway after this long (foreground GC then makes
/// room), so admission can delay writes but never stall them for good.
const MAX_DEFER_NS: u64 = 100_000_000;
/// Held writes released at one instant at most.
const RELEASE_PER_EVENT: u32 = 2;
/// Where the loop looks next when GC or a held write waits and no die has an event coming.
const IDLE_STEP_NS: u64 = 10_000;
/// No-gc sizing: the device holds the fill plus this many times the writes of the other modes.
const NO_GC_WRITE_HEADROOM: f64 = 1.5;
/// No-gc sizing, at least: room for this many times the logical space (its window may end
/// before the duration if it writes faster; the report says how long it ran).
const NO_GC_MIN_SPACE_LOGICAL: u64 = 8;
/// How often (in completions) the no-gc run checks that it still has not needed GC.
const NO_GC_CHECK_EVERY: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Coordinated,
    Independent,
    NoGc,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Coordinated => "coordinated",
            Mode::Independent => "independent",
            Mode::NoGc => "no-gc",
        }
    }
}

/// Counters summed over a volume's FTLs.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    host_pages_written: u64,
    nand_pages_written: u64,
    foreground_gc_stalls: u64,
    gc_runs: u64,
    gc_pages_moved: u64,
}

/// The devices of one mode and the FTLs over them.
struct Volume {
    ftls: Vec<Ftl>,
    devices: Vec<Arc<TimedNand>>,
    clock: Arc<RequestClock>,
    /// With `--explain-tail`: what each host read waited behind.
    probe: Option<Arc<Probe>>,
}

impl Volume {
    fn build(mode: Mode, params: &GcBenchParams, blocks_per_die: u32) -> anyhow::Result<Self> {
        let geometry = params.geometry(blocks_per_die)?;
        let clock = Arc::new(RequestClock::default());
        let mut devices = Vec::new();
        for i in 0..params.devices {
            let mem = MemNand::new(geometry, FaultConfig::none().for_device(i), None)
                .with_context(|| format!("device {i}"))?;
            let clock = clock.clone() as Arc<dyn Clock>;
            let timed = TimedNand::new(Arc::new(mem), &params.timing, clock)
                .with_context(|| format!("timing of device {i}"))?;
            devices.push(Arc::new(timed));
        }
        let config = FtlConfig {
            op_ratio: params.op_ratio,
            gc_die_share: params.gc_die_share,
            static_wear_leveling: params.static_wear_leveling,
            ..FtlConfig::default()
        };
        let probe = params
            .explain_tail
            .then(|| Probe::new(params.devices, geometry.dies()));
        let nands: Vec<Arc<dyn Nand>> = devices
            .iter()
            .enumerate()
            .map(|(i, d)| match &probe {
                Some(p) => {
                    Arc::new(ProbeNand::new(d.clone(), i as u32, p.clone())) as Arc<dyn Nand>
                }
                None => d.clone() as Arc<dyn Nand>,
            })
            .collect();
        let ftls = match mode {
            Mode::Independent => nands
                .into_iter()
                .map(|d| Ftl::format(vec![d], config.clone()))
                .collect::<Result<Vec<_>, _>>()
                .context("format one FTL per device")?,
            Mode::Coordinated | Mode::NoGc => {
                vec![Ftl::format(nands, config).context("format one FTL over all devices")?]
            }
        };
        Ok(Self {
            ftls,
            devices,
            clock,
            probe,
        })
    }

    /// Logical pages of the volume: a striped volume is as large as N times its smallest member.
    fn capacity(&self) -> u64 {
        let smallest = self.ftls.iter().map(Ftl::logical_pages).min().unwrap_or(0);
        smallest * self.ftls.len() as u64
    }

    fn route(&self, lpa: u64) -> (&Ftl, u64) {
        let n = self.ftls.len() as u64;
        (&self.ftls[(lpa % n) as usize], lpa / n)
    }

    fn read(&self, lpa: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        let (ftl, local) = self.route(lpa);
        ftl.read(local, buf)
            .with_context(|| format!("read of lpa {lpa}"))
    }

    fn write(&self, lpa: u64, buf: &[u8]) -> anyhow::Result<()> {
        let (ftl, local) = self.route(lpa);
        ftl.write(local, buf, false)
            .with_context(|| format!("write of lpa {lpa}"))
    }

    fn write_admitted(&self) -> bool {
        self.ftls.iter().all(Ftl::write_admitted)
    }

    fn background_gc(&self) -> anyhow::Result<GcWork> {
        self.set_gc_call(true);
        let work = match self.ftls.as_slice() {
            [one] => one.background_gc().map_err(anyhow::Error::from),
            _ => Ok(GcWork::Idle),
        };
        self.set_gc_call(false);
        work
    }

    fn set_gc_call(&self, gc: bool) {
        if let Some(p) = &self.probe {
            p.set_gc_call(gc);
        }
    }

    fn attach_scheduler(&self) -> anyhow::Result<()> {
        let models = self.devices.iter().map(|d| d.model().clone()).collect();
        let clock = self.clock.clone() as Arc<dyn Clock>;
        match self.ftls.as_slice() {
            [one] => Ok(one.attach_gc_scheduler(GcTiming { models, clock })?),
            _ => bail!("the scheduler needs one FTL over every device"),
        }
    }

    fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for ftl in &self.ftls {
            let s = ftl.stats();
            t.host_pages_written += s.host_pages_written;
            t.nand_pages_written += s.nand_pages_written;
            t.foreground_gc_stalls += s.foreground_gc_stalls;
            t.gc_runs += s.gc_runs;
            t.gc_pages_moved += s.gc_pages_moved;
        }
        t
    }

    /// When every die and channel has finished all the work charged so far.
    fn all_idle_ns(&self) -> u64 {
        let mut latest = self.clock.call_end_ns().max(self.clock.now_ns());
        for d in &self.devices {
            let m = d.model().lock();
            for die in 0..m.dies() {
                latest = latest.max(m.die_busy_until_ns(die));
            }
        }
        latest
    }

    fn next_event_after_ns(&self, after_ns: u64) -> Option<u64> {
        self.devices
            .iter()
            .filter_map(|d| d.model().lock().next_event_after_ns(after_ns))
            .min()
    }
}

fn stamp(buf: &mut [u8], lpa: u64, n: u64) {
    buf[..8].copy_from_slice(&lpa.to_le_bytes());
    buf[8..16].copy_from_slice(&n.to_le_bytes());
}

/// Fills the logical space sequentially, then overwrites it at random, each request issued when
/// the one before completed (the devices then start the window idle, in GC steady state).
fn precondition(
    vol: &Volume,
    logical: u64,
    overwrites: u64,
    seed: u64,
    progress: &mut Progress,
    name: &str,
) -> anyhow::Result<()> {
    let mut buf = vec![0x5au8; PAGE_BYTES];
    for lpa in 0..logical {
        stamp(&mut buf, lpa, lpa);
        vol.clock.set(vol.clock.call_end_ns());
        vol.write(lpa, &buf)?;
        progress.percent(&format!("{name}: fill"), lpa, logical);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7072_6563);
    for n in 0..overwrites {
        let lpa = rng.random_range(0..logical);
        stamp(&mut buf, lpa, logical + n);
        vol.clock.set(vol.clock.call_end_ns());
        vol.write(lpa, &buf)?;
        progress.percent(&format!("{name}: precondition"), n, overwrites);
    }
    Ok(())
}

/// A request in flight, ordered by completion (then issue order, so ties are deterministic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    complete_ns: u64,
    seq: u64,
    issue_ns: u64,
    read: bool,
}

/// The measured window of one mode.
struct Window<'a> {
    vol: &'a Volume,
    logical: u64,
    read_pct: u32,
    rng: ChaCha8Rng,
    buf: Vec<u8>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    held_writes: VecDeque<(u64, u64)>,
    seq: u64,
    read_latency_ns: Vec<u64>,
    write_latency_ns: Vec<u64>,
    held_write_count: u64,
    /// With `--explain-tail`: each read's latency and what it waited behind.
    read_causes: Vec<(u64, ReadCause)>,
}

impl Window<'_> {
    /// A new request at `t_ns`: its kind and page come from the seeded stream, the same in every
    /// mode.
    fn issue(&mut self, t_ns: u64) -> anyhow::Result<()> {
        let read = self.rng.random_range(0..100) < self.read_pct;
        let lpa = self.rng.random_range(0..self.logical);
        if read {
            self.execute(t_ns, t_ns, lpa, true)
        } else if self.held_writes.is_empty() && self.vol.write_admitted() {
            self.execute(t_ns, t_ns, lpa, false)
        } else {
            self.held_write_count += 1;
            self.held_writes.push_back((t_ns, lpa));
            Ok(())
        }
    }

    fn execute(&mut self, t_ns: u64, issue_ns: u64, lpa: u64, read: bool) -> anyhow::Result<()> {
        self.vol.clock.set(t_ns);
        if read {
            self.vol.read(lpa, &mut self.buf)?;
        } else {
            stamp(&mut self.buf, lpa, self.seq);
            self.vol.write(lpa, &self.buf)?;
        }
        let complete_ns = self.vol.clock.call_end_ns().max(t_ns);
        if let (true, Some(probe)) = (read, &self.vol.probe)
            && let Some(cause) = probe.take_read_cause()
        {
            self.read_causes.push((complete_ns - issue_ns, cause));
        }
        self.seq += 1;
        self.in_flight.push(Reverse(InFlight {
            complete_ns,
            seq: self.seq,
            issue_ns,
            read,
        }));
        Ok(())
    }

    /// Held writes that admission now lets through (or that waited too long).
    fn release_held(&mut self, t_ns: u64) -> anyhow::Result<()> {
        // A few per event: a burst of released writes would queue programs on every die.
        for _ in 0..RELEASE_PER_EVENT {
            let Some(&(issue_ns, lpa)) = self.held_writes.front() else {
                break;
            };
            if !self.vol.write_admitted() && t_ns - issue_ns < MAX_DEFER_NS {
                break;
            }
            self.held_writes.pop_front();
            self.execute(t_ns, issue_ns, lpa, false)?;
        }
        Ok(())
    }

    /// Background GC at `t_ns`; true if GC is needed but had to wait for a die.
    fn background_gc(&mut self, t_ns: u64) -> anyhow::Result<bool> {
        for _ in 0..GC_UNITS_PER_EVENT {
            self.vol.clock.set(t_ns);
            match self.vol.background_gc()? {
                GcWork::Moved | GcWork::Erased | GcWork::Checkpointed => {}
                GcWork::Blocked => return Ok(true),
                GcWork::Idle => return Ok(false),
            }
        }
        Ok(true)
    }
}

struct ModeRun {
    report: ModeReport,
    read_latency_ns: Vec<u64>,
}

fn run_window(
    mode: Mode,
    vol: &Volume,
    params: &GcBenchParams,
    logical: u64,
    progress: &mut Progress,
) -> anyhow::Result<ModeRun> {
    let name = mode.name();
    if mode != Mode::Independent {
        vol.attach_scheduler()?;
    }
    let t0_ns = vol.all_idle_ns();
    let end_ns = t0_ns + params.duration_ns;
    let before = vol.totals();
    let mut w = Window {
        vol,
        logical,
        read_pct: params.workload.read_pct,
        rng: ChaCha8Rng::seed_from_u64(params.seed),
        buf: vec![0u8; PAGE_BYTES],
        in_flight: BinaryHeap::new(),
        held_writes: VecDeque::new(),
        seq: 0,
        read_latency_ns: Vec::new(),
        write_latency_ns: Vec::new(),
        held_write_count: 0,
        read_causes: Vec::new(),
    };
    for _ in 0..params.qd {
        w.issue(t0_ns)?;
    }
    let mut t_ns = t0_ns;
    let mut stop_ns = end_ns;
    let mut completions: u64 = 0;
    // Every turn moves time forward by at least 1 ns or completes a request.
    let turns_max = params.duration_ns.saturating_mul(2);
    for _ in 0..turns_max {
        let gc_waiting = w.background_gc(t_ns)?;
        w.release_held(t_ns)?;
        let next_completion = w.in_flight.peek().map(|r| r.0.complete_ns);
        let wake = if gc_waiting || !w.held_writes.is_empty() {
            Some(vol.next_event_after_ns(t_ns).unwrap_or(t_ns + IDLE_STEP_NS))
        } else {
            None
        };
        let Some(next_ns) = [next_completion, wake].into_iter().flatten().min() else {
            bail!("{name}: nothing in flight and nothing to wait for at {t_ns} ns");
        };
        // Completions and die events lie after `t_ns` (every operation takes time).
        t_ns = next_ns.max(t_ns + 1);
        if t_ns >= end_ns {
            break;
        }
        while let Some(Reverse(done)) = w.in_flight.peek().copied() {
            if done.complete_ns > t_ns {
                break;
            }
            w.in_flight.pop();
            let latency_ns = done.complete_ns - done.issue_ns;
            if done.read {
                w.read_latency_ns.push(latency_ns);
            } else {
                w.write_latency_ns.push(latency_ns);
            }
            completions += 1;
            w.issue(t_ns)?;
        }
        progress.tick(|| {
            let done = (t_ns - t0_ns) as f64 / params.duration_ns as f64;
            format!(
                "{name}: {:.1}% of the window, {} requests",
                100.0 * done,
                completions
            )
        });
        if mode == Mode::NoGc
            && completions.is_multiple_of(NO_GC_CHECK_EVERY)
            && vol.totals().gc_runs > before.gc_runs
        {
            // The reference must never collect: the window ends where GC began.
            stop_ns = t_ns;
            break;
        }
    }
    let window_ns = (stop_ns.min(end_ns) - t0_ns).max(1);
    let after = vol.totals();
    let host = after.host_pages_written - before.host_pages_written;
    let nand = after.nand_pages_written - before.nand_pages_written;
    let sched = vol.ftls.first().and_then(Ftl::gc_sched_stats);
    let window_s = window_ns as f64 / 1e9;
    let mut read_latency_ns = std::mem::take(&mut w.read_latency_ns);
    read_latency_ns.sort_unstable();
    let mut write_latency_ns = std::mem::take(&mut w.write_latency_ns);
    write_latency_ns.sort_unstable();
    let report = ModeReport {
        mode: name.to_string(),
        window_s,
        logical_pages: logical,
        blocks_per_die: 0,
        reads: read_latency_ns.len() as u64,
        writes: write_latency_ns.len() as u64,
        iops: (read_latency_ns.len() + write_latency_ns.len()) as f64 / window_s,
        waf: if host == 0 {
            0.0
        } else {
            nand as f64 / host as f64
        },
        read: LatencySummary::of_sorted(&read_latency_ns),
        write: LatencySummary::of_sorted(&write_latency_ns),
        host_pages_written: host,
        nand_pages_written: nand,
        gc_runs: after.gc_runs - before.gc_runs,
        gc_pages_moved: after.gc_pages_moved - before.gc_pages_moved,
        foreground_gc_stalls: after.foreground_gc_stalls - before.foreground_gc_stalls,
        held_writes: w.held_write_count,
        sched,
        read_tail_causes: vol.probe.as_ref().map(|_| {
            let p999_ns = super::report::quantile_ns(&read_latency_ns, 0.999);
            tail_causes(&w.read_causes, p999_ns)
        }),
    };
    Ok(ModeRun {
        report,
        read_latency_ns,
    })
}

/// Blocks per die for the no-gc devices: room for the fill and `writes` more pages with the
/// free-block watermarks, open blocks and spares never touched.
fn no_gc_blocks_per_die(params: &GcBenchParams, logical: u64, writes: u64) -> u32 {
    let dies = u64::from(params.devices * params.channels * params.dies_per_channel);
    let data_pages = u64::from(params.pages_per_block - 1);
    let pages = logical + (writes as f64 * NO_GC_WRITE_HEADROOM) as u64;
    let blocks = pages
        .max(logical * NO_GC_MIN_SPACE_LOGICAL)
        .div_ceil(data_pages * dies);
    // Watermarks and open blocks per die, spares and the checkpoint area: a generous margin.
    (blocks as f64 * 1.05) as u32 + 24
}

/// Each mode's name and its sorted read latencies (ns), for the CDF plot.
pub type ReadLatencies = Vec<(String, Vec<u64>)>;

/// Runs the three modes and returns the report and each mode's sorted read latencies.
pub fn run(params: &GcBenchParams) -> anyhow::Result<(GcBenchReport, ReadLatencies)> {
    params.validate()?;
    let started = Instant::now();
    let mut progress = Progress::new(params.progress);
    let coordinated = Volume::build(Mode::Coordinated, params, params.blocks_per_die)?;
    let independent = Volume::build(Mode::Independent, params, params.blocks_per_die)?;
    // The same volume size in both: the smaller of the two.
    let logical = coordinated.capacity().min(independent.capacity());
    if logical == 0 {
        bail!("the volume has no logical pages");
    }
    let overwrites = (logical as f64 * params.precondition_overwrites).round() as u64;
    let mut runs = Vec::new();
    for (mode, vol) in [
        (Mode::Coordinated, coordinated),
        (Mode::Independent, independent),
    ] {
        precondition(
            &vol,
            logical,
            overwrites,
            params.seed,
            &mut progress,
            mode.name(),
        )?;
        let mut run = run_window(mode, &vol, params, logical, &mut progress)?;
        run.report.blocks_per_die = params.blocks_per_die;
        progress.say(format_args!(
            "{}: {:.0} IOPS, read p99.9 {:.0} us",
            mode.name(),
            run.report.iops,
            run.report.read.p999_us
        ));
        runs.push(run);
    }
    let writes = runs
        .iter()
        .map(|r| r.report.host_pages_written)
        .max()
        .unwrap_or(0);
    let blocks = no_gc_blocks_per_die(params, logical, writes);
    let vol = Volume::build(Mode::NoGc, params, blocks)?;
    precondition(&vol, logical, 0, params.seed, &mut progress, "no-gc")?;
    let mut run = run_window(Mode::NoGc, &vol, params, logical, &mut progress)?;
    run.report.blocks_per_die = blocks;
    progress.say(format_args!(
        "no-gc: {:.0} IOPS, read p99.9 {:.0} us",
        run.report.iops, run.report.read.p999_us
    ));
    runs.push(run);
    drop(vol);

    let by_mode = |name: &str| runs.iter().find(|r| r.report.mode == name);
    let (Some(c), Some(i), Some(n)) = (
        by_mode("coordinated"),
        by_mode("independent"),
        by_mode("no-gc"),
    ) else {
        bail!("a mode is missing from the run");
    };
    let ratios = Ratios {
        coordinated_over_no_gc: RatioSet::of(&c.report, &n.report),
        independent_over_coordinated: RatioSet::of(&i.report, &c.report),
    };
    let report = GcBenchReport {
        workload: params.workload.to_string(),
        devices: params.devices,
        channels_per_device: params.channels,
        dies_per_channel: params.dies_per_channel,
        pages_per_block: params.pages_per_block,
        qd: params.qd,
        duration_s: params.duration_ns as f64 / 1e9,
        seed: params.seed,
        op: params.op_ratio,
        gc_die_share: params.gc_die_share,
        static_wear_leveling: params.static_wear_leveling,
        timing: params.timing,
        modes: runs.iter().map(|r| r.report.clone()).collect(),
        ratios,
        wall_s: started.elapsed().as_secs_f64(),
    };
    let cdfs = runs
        .into_iter()
        .map(|r| (r.report.mode, r.read_latency_ns))
        .collect();
    Ok((report, cdfs))
}
