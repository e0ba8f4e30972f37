//! fio's status line on stderr while jobs run (only when stderr is a terminal): jobs running,
//! read/write bandwidth and IOPS over the last second, and the ETA of the run.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::jobs::Job;
use super::runner::{LiveCounters, Observer};

#[derive(Debug)]
struct Running {
    counters: Arc<LiveCounters>,
    started: Instant,
    /// Bytes the job will move (None when it runs for a time instead).
    planned_bytes: Option<u64>,
    runtime: Option<Duration>,
    finished: bool,
}

/// Prints the status line from its own thread; `stop` ends it.
#[derive(Debug, Default)]
pub struct ProgressLine {
    jobs: Mutex<Vec<Option<Running>>>,
}

impl Observer for ProgressLine {
    fn job_started(&self, index: usize, job: &Job, counters: Arc<LiveCounters>) {
        let o = &job.options;
        let planned_bytes = (!o.time_based).then(|| {
            let size = match o.size {
                Some(super::units::SizeValue::Bytes(b)) => b,
                _ => 0,
            };
            o.io_size_bytes.unwrap_or(size).saturating_mul(o.loops)
        });
        if let Ok(mut jobs) = self.jobs.lock() {
            if jobs.len() <= index {
                jobs.resize_with(index + 1, || None);
            }
            jobs[index] = Some(Running {
                counters,
                started: Instant::now(),
                planned_bytes: planned_bytes.filter(|b| *b > 0),
                runtime: o
                    .runtime_us
                    .map(|us| Duration::from_micros(us + o.ramp_time_us)),
                finished: false,
            });
        }
    }

    fn job_finished(&self, index: usize) {
        if let Ok(mut jobs) = self.jobs.lock()
            && let Some(Some(j)) = jobs.get_mut(index)
        {
            j.finished = true;
        }
    }
}

impl ProgressLine {
    /// One status line from the counters now and a second ago.
    fn line(&self, last: &mut [u64; 4], interval: Duration) -> String {
        let Ok(jobs) = self.jobs.lock() else {
            return String::new();
        };
        let running = jobs.iter().flatten().filter(|j| !j.finished).count();
        let mut now = [0u64; 4];
        let mut eta = Duration::ZERO;
        for j in jobs.iter().flatten() {
            let c = &j.counters;
            now[0] += c.bytes[0].load(Ordering::Relaxed);
            now[1] += c.bytes[1].load(Ordering::Relaxed);
            now[2] += c.ios[0].load(Ordering::Relaxed);
            now[3] += c.ios[1].load(Ordering::Relaxed);
            if j.finished {
                continue;
            }
            let elapsed = j.started.elapsed();
            let by_time = j.runtime.map(|r| r.saturating_sub(elapsed));
            let done: u64 = (0..3).map(|i| c.bytes[i].load(Ordering::Relaxed)).sum();
            let by_bytes = j.planned_bytes.filter(|_| done > 0).map(|planned| {
                let left = planned.saturating_sub(done) as f64 / done as f64;
                elapsed.mul_f64(left)
            });
            let job_eta = match (by_time, by_bytes) {
                (Some(t), Some(b)) => t.min(b),
                (Some(t), None) => t,
                (None, Some(b)) => b,
                (None, None) => Duration::ZERO,
            };
            eta = eta.max(job_eta);
        }
        let secs = interval.as_secs_f64().max(1e-3);
        // Rounded up: "00m:00s" only when nothing is left.
        let eta_secs = eta.as_secs_f64().ceil() as u64;
        let rate = |i: usize| (now[i] - last[i]) as f64 / secs;
        let line = format!(
            "Jobs: {running}: [r={:.1}MiB/s,w={:.1}MiB/s][r={:.0},w={:.0} IOPS][eta {:02}m:{:02}s]",
            rate(0) / 1_048_576.0,
            rate(1) / 1_048_576.0,
            rate(2),
            rate(3),
            eta_secs / 60,
            eta_secs % 60
        );
        *last = now;
        line
    }

    /// Prints a line every second until `done` says stop; then clears it.
    pub fn run_until(&self, done: &std::sync::atomic::AtomicBool) {
        let mut last = [0u64; 4];
        let mut tick = Instant::now();
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if tick.elapsed() < Duration::from_secs(1) {
                continue;
            }
            let line = self.line(&mut last, tick.elapsed());
            tick = Instant::now();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
        }
        let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
    }
}
