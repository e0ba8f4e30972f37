//! The closed-loop workload of one case: keep `qd` requests of 4 KiB outstanding at uniformly
//! random addresses of the region for the duration, timing each from submit to completion.
//! Both systems run this same loop through [`Target`], with the same seed, so they see the same
//! address sequence.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::stats::{Histogram, StallTracker};

/// After the duration, how long outstanding requests may take to complete before they are
/// counted as errors: far above any retransmission timer of SRD, far below TCP's give-up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

impl Op {
    pub fn workload_name(self) -> &'static str {
        match self {
            Op::Read => "randread",
            Op::Write => "randwrite",
        }
    }
}

/// A block device a case drives: one 4 KiB request at a time in, completions out in any order.
pub trait Target {
    /// Starts a 4 KiB read or write of block `lba`; returns its tag. An error means the target is
    /// unusable (the case ends).
    fn submit(&mut self, op: Op, lba: u64) -> Result<u64, String>;
    /// The next completion, as (tag, succeeded), or None if nothing completed within `timeout`
    /// (a target may wait less, never much more). An error means the target is unusable.
    fn wait_any(&mut self, timeout: Duration) -> Result<Option<(u64, bool)>, String>;
}

/// What one case measured.
#[derive(Debug, Default)]
pub struct CaseOutcome {
    pub completed: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram,
    pub max_stall_ns: u64,
    /// When the longest stall began, since the case started.
    pub max_stall_since_ns: u64,
    /// CPU time of this process during the run, if /proc tells (`process_cpu_ms`).
    pub cpu_ms: Option<u64>,
    /// The longest stall overlapping the event window, if the case had one.
    pub max_stall_ns_at_event: Option<u64>,
    /// Why the case ended early or requests were given up on, if they were.
    pub failure: Option<String>,
}

/// How long after an event (the black hole) a stall still counts as the event's: detecting a
/// dead path and moving its packets takes a few retransmission timeouts, milliseconds.
pub const EVENT_WINDOW: Duration = Duration::from_millis(100);

/// The shape of one case.
#[derive(Clone, Copy, Debug)]
pub struct CaseSpec {
    pub op: Op,
    pub qd: usize,
    pub region_blocks: u64,
    pub duration: Duration,
    pub seed: u64,
    /// When the scenario's event happens, since the start; stalls overlapping it and the
    /// following [`EVENT_WINDOW`] are reported apart.
    pub event_at: Option<Duration>,
}

/// Runs the case from `start` (the instant a timeline of impairments is aligned with) for its
/// duration, then drains for at most [`DRAIN_TIMEOUT`].
pub fn run_case(target: &mut dyn Target, spec: CaseSpec, start: Instant) -> CaseOutcome {
    let cpu_ms_before = process_cpu_ms();
    let mut out = run_case_inner(target, spec, start);
    out.cpu_ms = cpu_ms_before
        .zip(process_cpu_ms())
        .map(|(before, after)| after.saturating_sub(before));
    out
}

/// User and system CPU time of this process so far, in ms (/proc/self/stat counts clock ticks
/// of 1/100 s, Linux's USER_HZ); None where /proc does not tell.
pub fn process_cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state); utime is field 14, stime 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?) * 10)
}

fn run_case_inner(target: &mut dyn Target, spec: CaseSpec, start: Instant) -> CaseOutcome {
    let CaseSpec {
        op,
        qd,
        region_blocks,
        duration,
        seed,
        event_at,
    } = spec;
    let mut out = CaseOutcome::default();
    if region_blocks == 0 || qd == 0 {
        out.failure = Some("an empty region or a zero queue depth: nothing to run".into());
        return out;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let deadline = start + duration;
    let give_up = deadline + DRAIN_TIMEOUT;
    let since = |t: Instant| t.saturating_duration_since(start).as_nanos() as u64;
    let mut outstanding: HashMap<u64, Instant> = HashMap::with_capacity(qd);
    let mut stall = match event_at {
        Some(at) => {
            StallTracker::with_window(at.as_nanos() as u64, (at + EVENT_WINDOW).as_nanos() as u64)
        }
        None => StallTracker::default(),
    };
    out.max_stall_ns_at_event = event_at.map(|_| 0);
    loop {
        let now = Instant::now();
        while now < deadline && outstanding.len() < qd {
            let lba = rng.random_range(0..region_blocks);
            let issued = Instant::now();
            match target.submit(op, lba) {
                Ok(tag) => {
                    stall.on_submit(since(issued), outstanding.len());
                    outstanding.insert(tag, issued);
                }
                Err(e) => {
                    out.errors += 1;
                    return finish(out, stall, &outstanding, start, e);
                }
            }
        }
        if outstanding.is_empty() {
            break;
        }
        if now >= give_up {
            let why = format!(
                "{} requests still outstanding {} ms after the end of the run",
                outstanding.len(),
                DRAIN_TIMEOUT.as_millis()
            );
            return finish(out, stall, &outstanding, start, why);
        }
        match target.wait_any(give_up - now) {
            Ok(Some((tag, ok))) => {
                let done = Instant::now();
                let Some(issued) = outstanding.remove(&tag) else {
                    continue;
                };
                stall.on_complete(since(done), outstanding.len());
                out.latency
                    .record_ns(done.duration_since(issued).as_nanos() as u64);
                if ok {
                    out.completed += 1;
                } else {
                    out.errors += 1;
                }
            }
            Ok(None) => {}
            Err(e) => return finish(out, stall, &outstanding, start, e),
        }
    }
    out.elapsed = start.elapsed();
    stall.finish(since(Instant::now()));
    record_stalls(&mut out, &stall);
    out
}

fn record_stalls(out: &mut CaseOutcome, stall: &StallTracker) {
    out.max_stall_ns = stall.max_ns();
    out.max_stall_since_ns = stall.max_since_ns();
    if out.max_stall_ns_at_event.is_some() {
        out.max_stall_ns_at_event = Some(stall.max_in_window_ns());
    }
}

/// Ends a case early: the `abandoned` requests count as errors, and in the latency figures with
/// the time they had waited (a lower bound: leaving them out would make a stalled system look
/// fast); the stall runs to now.
fn finish(
    mut out: CaseOutcome,
    mut stall: StallTracker,
    abandoned: &HashMap<u64, Instant>,
    start: Instant,
    why: String,
) -> CaseOutcome {
    let now = Instant::now();
    for issued in abandoned.values() {
        out.latency
            .record_ns(now.duration_since(*issued).as_nanos() as u64);
    }
    out.errors += abandoned.len() as u64;
    out.elapsed = start.elapsed();
    stall.finish(out.elapsed.as_nanos() as u64);
    record_stalls(&mut out, &stall);
    out.failure = Some(why);
    out
}

/// Writes every block of the region once, `qd` at a time, so reads find mapped data and writes
/// overwrite (the steady state of a used volume). Not measured.
pub fn prefill(
    target: &mut dyn Target,
    region_blocks: u64,
    qd: usize,
    timeout: Duration,
) -> Result<(), String> {
    if qd == 0 {
        return Err("prefill at queue depth 0".into());
    }
    let mut next = 0u64;
    let mut outstanding = 0usize;
    let give_up = Instant::now() + timeout;
    while next < region_blocks || outstanding > 0 {
        while next < region_blocks && outstanding < qd {
            target.submit(Op::Write, next)?;
            next += 1;
            outstanding += 1;
        }
        let now = Instant::now();
        if now >= give_up {
            return Err(format!(
                "prefill of {region_blocks} blocks not done in {} s",
                timeout.as_secs()
            ));
        }
        match target.wait_any(give_up - now)? {
            Some((_, true)) => outstanding -= 1,
            Some((tag, false)) => return Err(format!("prefill write {tag} failed")),
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Completes requests in order after a fixed service time; fails every `fail_every`th; stops
    /// answering after `dead_after` requests.
    struct Fake {
        next_tag: u64,
        queue: VecDeque<(u64, Instant)>,
        service: Duration,
        fail_every: u64,
        dead_after: u64,
    }

    impl Target for Fake {
        fn submit(&mut self, _op: Op, _lba: u64) -> Result<u64, String> {
            self.next_tag += 1;
            self.queue
                .push_back((self.next_tag, Instant::now() + self.service));
            Ok(self.next_tag)
        }
        fn wait_any(&mut self, timeout: Duration) -> Result<Option<(u64, bool)>, String> {
            let Some(&(tag, due)) = self.queue.front() else {
                return Err("nothing outstanding".into());
            };
            if tag > self.dead_after {
                std::thread::sleep(timeout.min(Duration::from_millis(20)));
                return Ok(None);
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            self.queue.pop_front();
            Ok(Some((tag, tag % self.fail_every != 0)))
        }
    }

    fn spec(op: Op, qd: usize, duration_ms: u64, event_at: Option<Duration>) -> CaseSpec {
        CaseSpec {
            op,
            qd,
            region_blocks: 100,
            duration: Duration::from_millis(duration_ms),
            seed: 1,
            event_at,
        }
    }

    fn fake(dead_after: u64) -> Fake {
        Fake {
            next_tag: 0,
            queue: VecDeque::new(),
            service: Duration::from_micros(200),
            fail_every: 1_000_000,
            dead_after,
        }
    }

    #[test]
    fn process_cpu_time_is_read_and_grows_with_work() {
        let before = process_cpu_ms().expect("/proc/self/stat");
        let spin_until = Instant::now() + Duration::from_millis(60);
        let mut x = 0u64;
        while Instant::now() < spin_until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = process_cpu_ms().expect("/proc/self/stat");
        // 60 ms of spinning is at least 4 ticks of 10 ms, whatever else the process did.
        assert!(after >= before + 40, "{before} -> {after}");
    }

    #[test]
    fn a_healthy_target_runs_the_duration_with_no_errors() {
        let mut t = fake(u64::MAX);
        let out = run_case(&mut t, spec(Op::Read, 4, 100, None), Instant::now());
        assert_eq!(out.errors, 0);
        assert!(out.completed > 10, "{out:?}");
        assert!(out.failure.is_none());
        assert!(out.latency.quantile_ns(0.5) >= 200_000);
        assert!(out.max_stall_ns < 50_000_000, "{}", out.max_stall_ns);
        prefill(&mut t, 50, 8, Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn nothing_to_run_is_said_not_panicked_on() {
        let mut t = fake(u64::MAX);
        let mut s = spec(Op::Read, 4, 10, None);
        s.region_blocks = 0;
        let out = run_case(&mut t, s, Instant::now());
        assert!(out.failure.is_some() && out.completed == 0);
        let out = run_case(&mut t, spec(Op::Read, 0, 10, None), Instant::now());
        assert!(out.failure.is_some());
        assert!(prefill(&mut t, 10, 0, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn failed_requests_count_as_errors() {
        let mut t = fake(u64::MAX);
        t.fail_every = 3;
        let out = run_case(&mut t, spec(Op::Write, 1, 50, None), Instant::now());
        assert!(out.errors > 0 && out.completed > 0, "{out:?}");
        assert!(prefill(&mut t, 10, 1, Duration::from_secs(5)).is_err());
    }

    #[test]
    fn a_dead_target_is_given_up_on_after_the_drain() {
        let mut t = fake(20);
        let start = Instant::now();
        let event = Some(Duration::from_millis(60));
        let out = run_case(&mut t, spec(Op::Read, 4, 100, event), start);
        assert_eq!(out.completed, 20);
        assert_eq!(out.errors, 4);
        // The abandoned ones are in the latency figures, with the time they waited.
        assert_eq!(out.latency.count(), 24);
        assert!(out.latency.max_ns() >= DRAIN_TIMEOUT.as_nanos() as u64);
        assert!(out.failure.is_some());
        // Stalled from the 20th completion to the give-up, past the drain timeout.
        assert!(
            out.max_stall_ns >= DRAIN_TIMEOUT.as_nanos() as u64,
            "{}",
            out.max_stall_ns
        );
    }
}
