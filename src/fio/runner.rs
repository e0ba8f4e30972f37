//! Runs jobs: stonewall phases one after another, the jobs of a phase at once (each after its
//! `wait_for` job and its `startdelay`), each job with `iodepth` worker threads.
//!
//! Queue depth: every engine is synchronous, so a job with iodepth=N runs N worker threads, each
//! with one I/O in flight; latencies are measured per I/O around the engine call (clat) and from
//! the moment the worker starts preparing the I/O (lat). There is no submission stage, so slat
//! has no samples, as with fio's psync engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::engine::{DiskUtil, IoTarget, Targets};
use super::error::JobError;
use super::jobs::{Job, JobSet};
use super::options::{Ddir, JobOptions, VerifyKind};
use super::stats::{CpuUsage, JobStats, depth_bucket};
use super::verify::{HeaderFields, check_block, seal_block};
use super::workload::{IoPlan, Next, Workload, min_bs};

/// fio's bandwidth and IOPS sampling window (bw_avg_time / iops_avg_time default).
const SAMPLE_WINDOW: Duration = Duration::from_millis(500);
/// errno values fio reports in "error".
const EIO: i32 = 5;
const EILSEQ: i32 = 84;

/// One job's outcome.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub job: Job,
    pub stats: JobStats,
    /// Seconds from the start of the run to the end of the job.
    pub elapsed_s: u64,
}

#[derive(Debug)]
pub struct RunResult {
    pub results: Vec<JobResult>,
    pub disk_util: Vec<DiskUtil>,
    pub started: SystemTime,
}

impl RunResult {
    pub fn any_error(&self) -> bool {
        self.results.iter().any(|r| r.stats.error != 0)
    }
}

/// Live counters of a running job, for bandwidth samples and the progress line.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub bytes: [AtomicU64; 3],
    pub ios: [AtomicU64; 3],
}

/// Jobs that have finished, by name (for `wait_for`), with a condition to wait on.
#[derive(Debug, Default)]
struct Finished {
    remaining: Mutex<HashMap<String, u32>>,
    changed: Condvar,
}

impl Finished {
    fn wait_for(&self, name: &str) {
        let Ok(mut remaining) = self.remaining.lock() else {
            return;
        };
        while remaining.get(name).copied().unwrap_or(0) > 0 {
            remaining = match self.changed.wait(remaining) {
                Ok(r) => r,
                Err(_) => return,
            };
        }
    }

    fn done(&self, name: &str) {
        if let Ok(mut remaining) = self.remaining.lock()
            && let Some(n) = remaining.get_mut(name)
        {
            *n = n.saturating_sub(1);
        }
        self.changed.notify_all();
    }
}

/// Observes the run (the progress line).
pub trait Observer: Sync {
    fn job_started(&self, job_index: usize, job: &Job, counters: Arc<LiveCounters>);
    fn job_finished(&self, job_index: usize);
}

/// An observer that does nothing.
#[derive(Debug)]
pub struct Quiet;

impl Observer for Quiet {
    fn job_started(&self, _: usize, _: &Job, _: Arc<LiveCounters>) {}
    fn job_finished(&self, _: usize) {}
}

/// Runs every job of `set`.
pub fn run(set: &JobSet, observer: &dyn Observer) -> Result<RunResult, JobError> {
    let started = SystemTime::now();
    let run_start = Instant::now();
    let targets = Targets::default();
    let finished = Finished::default();
    if let Ok(mut remaining) = finished.remaining.lock() {
        for job in &set.jobs {
            *remaining.entry(job.name.clone()).or_default() += 1;
        }
    }
    // Open every target first, so that option errors surface before anything runs.
    for job in &set.jobs {
        check_job(job, targets.open(job)?.as_ref())?;
    }
    let mut results: Vec<Option<JobResult>> = vec![None; set.jobs.len()];
    let mut phase_start = 0;
    while phase_start < set.jobs.len() {
        let phase_end = (phase_start + 1..set.jobs.len())
            .find(|&i| set.jobs[i].options.stonewall && set.jobs[i].clone_index == 0)
            .unwrap_or(set.jobs.len());
        let phase: Vec<(usize, Result<JobResult, JobError>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (phase_start..phase_end)
                .map(|i| {
                    let job = &set.jobs[i];
                    let (targets, finished) = (&targets, &finished);
                    let handle = scope.spawn(move || {
                        if let Some(other) = &job.options.wait_for {
                            finished.wait_for(other);
                        }
                        let result = run_job(job, i, targets, run_start, observer);
                        finished.done(&job.name);
                        observer.job_finished(i);
                        result
                    });
                    (i, handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err(JobError::plain("a job thread panicked")));
                    (i, r)
                })
                .collect()
        });
        for (i, r) in phase {
            results[i] = Some(r?);
        }
        phase_start = phase_end;
    }
    targets.finish_all().map_err(JobError::plain)?;
    Ok(RunResult {
        results: results.into_iter().flatten().collect(),
        disk_util: targets.disk_utils(),
        started,
    })
}

/// Checks what only the target can tell: alignment and fit.
fn check_job(job: &Job, target: &dyn IoTarget) -> Result<(), JobError> {
    let o = &job.options;
    let g = target.granularity_bytes();
    for ddir in Ddir::ALL {
        if !o.rw.has(ddir) {
            continue;
        }
        let option = if o.bssplit.is_some() {
            "bssplit"
        } else if o.bsrange_bytes.is_some() {
            "bsrange"
        } else {
            "bs"
        };
        if !min_bs(o, ddir).is_multiple_of(g) {
            return Err(job.error(
                option,
                format!(
                    "{} block size {} is not a multiple of the target's {g}-byte unit",
                    ddir.name(),
                    min_bs(o, ddir)
                ),
            ));
        }
        if let Some(split) = &o.bssplit
            && let Some(e) = split
                .get(ddir)
                .iter()
                .find(|e| !e.bs_bytes.is_multiple_of(g))
        {
            return Err(job.error(
                "bssplit",
                format!("block size {} is not a multiple of {g}", e.bs_bytes),
            ));
        }
    }
    let (start, end) = region(o, target.size_bytes());
    if start >= end {
        return Err(job.error(
            "offset",
            format!(
                "the job's region starts at {start}, past the end of the {}-byte target",
                target.size_bytes()
            ),
        ));
    }
    if !start.is_multiple_of(g) {
        return Err(job.error("offset", format!("offset {start} is not a multiple of {g}")));
    }
    if o.verify_only && o.time_based {
        return Err(job.error("verify_only", "verify_only cannot replay a time_based job"));
    }
    if o.verify != VerifyKind::None {
        if !target.keeps_data() {
            return Err(job.error("verify", "this engine keeps no data to verify"));
        }
        if (o.verify == VerifyKind::Pattern || o.verify_pattern.is_some())
            && o.verify_pattern.is_none()
        {
            return Err(job.error("verify", "verify=pattern needs verify_pattern="));
        }
        if o.verify != VerifyKind::Pattern
            && min_bs(o, Ddir::Write) < super::verify::header_size(o.verify) as u64
        {
            return Err(job.error("bs", "a block is smaller than fio's verify header"));
        }
    }
    Ok(())
}

/// The job's byte range on a target of `target_bytes`: [offset, offset + size).
fn region(o: &JobOptions, target_bytes: u64) -> (u64, u64) {
    let start = o.offset.resolve(target_bytes);
    let size = match o.size {
        Some(s) => s.resolve(target_bytes),
        None => target_bytes.saturating_sub(start),
    };
    (start, start.saturating_add(size).min(target_bytes))
}

/// Shared state of one job's workers.
struct JobShared<'a> {
    job: &'a Job,
    job_number: u16,
    target: Arc<dyn IoTarget>,
    workload: Mutex<Workload>,
    /// Rate limiting: the earliest time (ns since job start) the next I/O of each direction may
    /// start.
    next_issue_ns: Mutex<[u64; 3]>,
    /// Blocks written, for the verify phase (offset -> (len, rand_seed)).
    written: Mutex<BTreeMap<u64, (u64, u64)>>,
    numberio: AtomicU64,
    in_flight: AtomicU64,
    stop: AtomicBool,
    job_start: Instant,
    /// Stats count from here on (after ramp_time).
    measure_from: Instant,
    deadline: Option<Instant>,
    counters: Arc<LiveCounters>,
}

fn run_job(
    job: &Job,
    index: usize,
    targets: &Targets,
    run_start: Instant,
    observer: &dyn Observer,
) -> Result<JobResult, JobError> {
    let o = &job.options;
    if o.startdelay_us > 0 {
        std::thread::sleep(Duration::from_micros(o.startdelay_us));
    }
    let target = targets.open(job)?;
    let (start, end) = region(o, target.size_bytes());
    let seed = if o.randrepeat {
        o.randseed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    } else {
        // randrepeat=0: a different sequence every run.
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    let job_start = Instant::now();
    let runtime = o.runtime_us.map(Duration::from_micros);
    let ramp = Duration::from_micros(o.ramp_time_us);
    let counters = Arc::new(LiveCounters::default());
    observer.job_started(index, job, counters.clone());
    let shared = JobShared {
        job,
        job_number: (index + 1).min(usize::from(u16::MAX)) as u16,
        target: target.clone(),
        workload: Mutex::new(Workload::new(
            o,
            start,
            end,
            target.granularity_bytes(),
            seed,
        )),
        next_issue_ns: Mutex::new([0; 3]),
        written: Mutex::new(BTreeMap::new()),
        numberio: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        job_start,
        measure_from: job_start + ramp,
        deadline: runtime.map(|r| job_start + ramp + r),
        counters,
    };
    let mut stats = JobStats::default();
    if !o.verify_only {
        stats = run_workers(&shared, o.iodepth, seed, Phase::Workload);
    }
    let verify_wanted =
        o.verify != VerifyKind::None && (o.verify_only || (o.do_verify && o.rw.has(Ddir::Write)));
    if verify_wanted && stats.error == 0 {
        if o.verify_only {
            // Replay the write offsets the job would have written.
            let mut replay = Workload::new(o, start, end, target.granularity_bytes(), seed);
            let mut written = shared
                .written
                .lock()
                .map_err(|_| JobError::plain("poisoned"))?;
            loop {
                match replay.next_io() {
                    Next::Io(p) if p.ddir == Ddir::Write => {
                        written.insert(p.offset, (p.len, 0));
                    }
                    Next::Done => break,
                    Next::Io(_) | Next::Sync => {}
                }
            }
        }
        shared.stop.store(false, Ordering::Relaxed);
        let verify_stats = run_workers(&shared, o.iodepth, seed, Phase::Verify);
        stats.merge(&verify_stats);
    }
    if o.end_fsync && stats.error == 0 && o.rw.has(Ddir::Write) && !o.verify_only {
        // Not an I/O in fio's accounting: its sync stats count fsync=N syncs only.
        if let Err(e) = target.sync() {
            stats.error = EIO;
            stats.error_message = Some(format!("end_fsync: {e}"));
        }
    }
    let measured_from = shared.measure_from.min(Instant::now());
    stats.job_runtime_ns = measured_from.elapsed().as_nanos() as u64;
    for d in &mut stats.dirs {
        if d.total_ios > 0 {
            d.runtime_ns = stats.job_runtime_ns;
        }
    }
    Ok(JobResult {
        job: job.clone(),
        stats,
        elapsed_s: run_start.elapsed().as_secs_f64().round() as u64,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Workload,
    Verify,
}

fn run_workers(shared: &JobShared<'_>, workers: u32, seed: u64, phase: Phase) -> JobStats {
    let verify_queue: Mutex<Vec<(u64, u64, u64)>> = Mutex::new(match phase {
        Phase::Verify => shared
            .written
            .lock()
            .map(|w| w.iter().rev().map(|(o, (l, s))| (*o, *l, *s)).collect())
            .unwrap_or_default(),
        Phase::Workload => Vec::new(),
    });
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let verify_queue = &verify_queue;
                scope.spawn(move || worker(shared, seed ^ u64::from(w) << 32, phase, verify_queue))
            })
            .collect();
        // This thread takes bandwidth and IOPS samples while the workers run.
        let sampler = scope.spawn(|| sample_bandwidth(shared, &done));
        let mut stats = JobStats::default();
        for h in handles {
            match h.join() {
                Ok(s) => stats.merge(&s),
                Err(_) => {
                    stats.error = EIO;
                    stats.error_message = Some("a worker thread panicked".into());
                }
            }
        }
        done.store(true, Ordering::Relaxed);
        if let Ok(samples) = sampler.join() {
            for (d, (bw, iops)) in stats.dirs.iter_mut().zip(samples) {
                d.bw_kib_samples.merge(&bw);
                d.iops_samples.merge(&iops);
            }
        }
        stats
    })
}

type Samples = [(super::stats::Running, super::stats::Running); 3];

fn sample_bandwidth(shared: &JobShared<'_>, done: &AtomicBool) -> Samples {
    let mut samples: Samples = Default::default();
    let mut last = [(0u64, 0u64); 3];
    let mut window_start = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = window_start.elapsed();
        if elapsed < SAMPLE_WINDOW || Instant::now() < shared.measure_from {
            continue;
        }
        for (i, (bw, iops)) in samples.iter_mut().enumerate() {
            let bytes = shared.counters.bytes[i].load(Ordering::Relaxed);
            let ios = shared.counters.ios[i].load(Ordering::Relaxed);
            let (db, di) = (bytes - last[i].0, ios - last[i].1);
            last[i] = (bytes, ios);
            if bytes > 0 {
                let secs = elapsed.as_secs_f64();
                bw.add((db as f64 / 1024.0 / secs) as u64);
                iops.add((di as f64 / secs) as u64);
            }
        }
        window_start = Instant::now();
    }
    samples
}

fn worker(
    shared: &JobShared<'_>,
    seed: u64,
    phase: Phase,
    verify_queue: &Mutex<Vec<(u64, u64, u64)>>,
) -> JobStats {
    let o = &shared.job.options;
    let cpu_start = CpuUsage::this_thread();
    let mut stats = JobStats::default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let max_bs = Ddir::ALL.iter().map(|d| o.max_bs(*d)).max().unwrap_or(4096) as usize;
    let mut aligned = AlignedBuf::new(max_bs);
    let buf = aligned.as_mut_slice();
    if !o.zero_buffers {
        fill_random(buf, &mut rng, o.buffer_compress_percentage);
    }
    let interval = min_bs(o, Ddir::Write).max(1) as usize;
    loop {
        if shared.stop.load(Ordering::Relaxed)
            || shared.deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        let next = match phase {
            Phase::Workload => match shared.workload.lock() {
                Ok(mut w) => w.next_io(),
                Err(_) => break,
            },
            Phase::Verify => match verify_queue.lock().ok().and_then(|mut q| q.pop()) {
                Some((offset, len, _seed)) => Next::Io(IoPlan {
                    ddir: Ddir::Read,
                    offset,
                    len,
                }),
                None => Next::Done,
            },
        };
        let plan = match next {
            Next::Done => break,
            Next::Sync => {
                let t = Instant::now();
                if let Err(e) = shared.target.sync() {
                    fail(shared, &mut stats, EIO, format!("fsync: {e}"));
                    break;
                }
                if t >= shared.measure_from {
                    stats.sync_lat.add(t.elapsed().as_nanos() as u64);
                }
                continue;
            }
            Next::Io(plan) => plan,
        };
        wait_for_rate(shared, &plan);
        let lat_start = Instant::now();
        let len = plan.len as usize;
        let data = &mut buf[..len];
        let result = match plan.ddir {
            Ddir::Write => {
                let rand_seed = if o.refill_buffers || o.verify != VerifyKind::None {
                    let s = rng.next_u64();
                    if !o.zero_buffers && o.verify_pattern.is_none() {
                        let mut fill = ChaCha8Rng::seed_from_u64(s);
                        fill_random(data, &mut fill, o.buffer_compress_percentage);
                    }
                    s
                } else {
                    0
                };
                if o.verify != VerifyKind::None {
                    let since = shared.job_start.elapsed();
                    let numberio = shared.numberio.fetch_add(1, Ordering::Relaxed);
                    let seed_in_header = if o.verify_pattern.is_some() {
                        0
                    } else {
                        rand_seed
                    };
                    seal_block(
                        data,
                        o.verify,
                        interval,
                        o.verify_pattern.as_deref(),
                        HeaderFields {
                            rand_seed: seed_in_header,
                            offset: plan.offset,
                            time_sec: since.as_secs() as u32,
                            time_nsec: since.subsec_nanos(),
                            thread: shared.job_number,
                            numberio: numberio as u16,
                        },
                    );
                    if let Ok(mut w) = shared.written.lock() {
                        w.insert(plan.offset, (plan.len, rand_seed));
                    }
                }
                timed(shared, &mut stats, || {
                    shared.target.write(plan.offset, data)
                })
            }
            Ddir::Read => timed(shared, &mut stats, || shared.target.read(plan.offset, data)),
            Ddir::Trim => timed(shared, &mut stats, || {
                shared.target.trim(plan.offset, plan.len)
            }),
        };
        let (clat_ns, outcome) = result;
        if let Err(e) = outcome {
            fail(
                shared,
                &mut stats,
                EIO,
                format!(
                    "{} at offset {} of {} bytes: {e}",
                    plan.ddir.name(),
                    plan.offset,
                    plan.len
                ),
            );
            break;
        }
        // The verify phase checks what it reads back; so does a read job with verify= set
        // (reading data another run or real fio wrote).
        let checks =
            phase == Phase::Verify || (plan.ddir == Ddir::Read && o.verify != VerifyKind::None);
        if checks
            && let Err(e) = check_block(
                data,
                plan.offset,
                o.verify,
                interval,
                o.verify_pattern.as_deref(),
            )
        {
            stats.verify_errors += 1;
            fail(shared, &mut stats, EILSEQ, e);
            break;
        }
        let lat_ns = lat_start.elapsed().as_nanos() as u64;
        if lat_start >= shared.measure_from {
            let d = &mut stats.dirs[plan.ddir.index()];
            d.io_bytes += plan.len;
            d.total_ios += 1;
            d.clat.add(clat_ns);
            d.lat.add(lat_ns);
            stats.latency_buckets.add(lat_ns);
            shared.counters.bytes[plan.ddir.index()].fetch_add(plan.len, Ordering::Relaxed);
            shared.counters.ios[plan.ddir.index()].fetch_add(1, Ordering::Relaxed);
        }
        if o.thinktime_us > 0 {
            std::thread::sleep(Duration::from_micros(o.thinktime_us));
        }
    }
    stats.cpu = CpuUsage::this_thread().since(cpu_start);
    stats
}

/// Runs one engine call, counting the depth in flight at submission; returns (clat ns, result).
fn timed(
    shared: &JobShared<'_>,
    stats: &mut JobStats,
    call: impl FnOnce() -> Result<(), String>,
) -> (u64, Result<(), String>) {
    let depth = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    stats.depth_counts[depth_bucket(depth as u32)] += 1;
    let t = Instant::now();
    let r = call();
    let clat = t.elapsed().as_nanos() as u64;
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    (clat, r)
}

fn fail(shared: &JobShared<'_>, stats: &mut JobStats, errno: i32, message: String) {
    if stats.error == 0 {
        stats.error = errno;
        stats.error_message = Some(message);
    }
    shared.stop.store(true, Ordering::Relaxed);
}

/// Waits until `rate=` / `rate_iops=` allow this I/O.
fn wait_for_rate(shared: &JobShared<'_>, plan: &IoPlan) {
    let o = &shared.job.options;
    let i = plan.ddir.index();
    let bytes_rate = *o.rate_bytes_per_s.get(plan.ddir);
    let iops_rate = *o.rate_iops.get(plan.ddir);
    if bytes_rate == 0 && iops_rate == 0 {
        return;
    }
    let mut cost_ns = 0u64;
    if bytes_rate > 0 {
        cost_ns = cost_ns.max((plan.len as u128 * 1_000_000_000 / u128::from(bytes_rate)) as u64);
    }
    if let Some(per_io) = 1_000_000_000u64.checked_div(iops_rate) {
        cost_ns = cost_ns.max(per_io);
    }
    let now_ns = shared.job_start.elapsed().as_nanos() as u64;
    let slot = match shared.next_issue_ns.lock() {
        Ok(mut next) => {
            let slot = next[i].max(now_ns);
            next[i] = slot + cost_ns;
            slot
        }
        Err(_) => now_ns,
    };
    if slot > now_ns {
        std::thread::sleep(Duration::from_nanos(slot - now_ns));
    }
}

/// An I/O buffer aligned to 4 KiB, as O_DIRECT (direct=1) needs: a Vec with room to spare,
/// used from its first aligned byte.
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    const ALIGN: usize = 4096;

    fn new(len: usize) -> Self {
        let storage = vec![0u8; len + Self::ALIGN];
        // align_offset may give up (usize::MAX); then the buffer is unaligned and a direct
        // I/O fails with an error the job reports.
        let start = storage.as_ptr().align_offset(Self::ALIGN);
        let start = if start < Self::ALIGN { start } else { 0 };
        Self {
            storage,
            start,
            len,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// Random bytes, with the last `compress_percent` of every 4 KiB zeroed (compressible).
fn fill_random(buf: &mut [u8], rng: &mut ChaCha8Rng, compress_percent: u32) {
    rng.fill_bytes(buf);
    if compress_percent > 0 {
        for chunk in buf.chunks_mut(4096) {
            let keep = chunk.len() * (100 - compress_percent as usize) / 100;
            chunk[keep..].fill(0);
        }
    }
}
